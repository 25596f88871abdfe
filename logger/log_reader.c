/*
 * log_reader.c - reading the log back: segment summaries and indexed scans.
 *
 * A scan picks the narrowest index the query allows: the flow index when a flow
 * is given (only the blocks that hold it are read), else the time index when a
 * time window is given, else the block table by clock. Each block is checked
 * (CRC) before it is decoded; a damaged one is reported and skipped, so one bad
 * page does not hide the rest of the log from an analyst. A flow query is refused
 * on a log whose flow filters were built by a hash this build does not compute.
 */
#include "log_internal.h"
#include "log_block.h"
#include "log_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_PAST_WINDOW 0x7fff0001 /* internal: a monotonic segment has passed until_ns */

struct log_reader {
    char dir[4096];
    struct log_seg_info *segs;
    uint32_t n;
    uint64_t reserved;
    uint32_t flow_hash; /* RW_FLOW_HASH_VERSION of the flow filters; 0: none recorded */
    struct log_block_buf buf;
    char (*bad)[RW_ERR_MSG_MAX]; /* per segment: why its live summary is unreadable, or "" */
};

void log_query_all(struct log_query *q)
{
    memset(q, 0, sizeof(*q));
    q->to_clock = UINT64_MAX;
    q->until_ns = UINT64_MAX;
}

/* The open segment's summary in the manifest is a placeholder; its live one is
 * in the segment. A segment whose environment never got created is empty. */
static int load_live_info(struct log_reader *r, struct log_seg_info *si, struct rw_err *e)
{
    struct log_seg s;
    int rc = log_seg_open(r->dir, si->id, false, RW_DUR_NONE, 0, &s, e);
    if (rc == RW_ENOENT)
        return 0;
    if (rc)
        return rc;
    MDB_txn *txn;
    rc = mdb_txn_begin(s.env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        log_seg_close(&s);
        return log_mdb_err(e, rc, "begin", "segment");
    }
    rc = log_seg_load_info(&s, txn, si->id, e);
    mdb_txn_abort(txn);
    log_seg_close(&s);
    if (!rc)
        *si = s.si;
    return rc;
}

int log_reader_open(const char *dir, struct log_reader **out, struct rw_err *e)
{
    struct log_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    struct log_manifest m;
    int rc = log_manifest_open(dir, false, &m, e);
    if (rc) {
        free(r);
        return rc;
    }
    rc = log_manifest_list(&m, &r->segs, &r->n, e);
    if (!rc)
        rc = log_manifest_reserved(&m, &r->reserved, e);
    if (!rc)
        rc = log_manifest_flow_hash(&m, &r->flow_hash, e);
    log_manifest_close(&m);
    if (!rc && !(r->bad = calloc(r->n ? r->n : 1, sizeof(*r->bad))))
        rc = rw_errf(e, RW_ENOMEM, "out of memory");
    /* A damaged open segment must not hide the sealed ones: it is kept, empty,
     * and each scan reports it as damage. */
    for (uint32_t i = 0; i < r->n && !rc; i++) {
        struct rw_err se = {0};
        if (r->segs[i].sealed || !load_live_info(r, &r->segs[i], &se))
            continue;
        if (se.code != RW_ECORRUPT) {
            rc = rw_errf(e, se.code, "%s", se.msg);
            break;
        }
        snprintf(r->bad[i], sizeof(r->bad[i]), "%s", se.msg);
        r->segs[i].packets = 0;
    }
    if (rc) {
        free(r->bad);
        free(r->segs);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void log_reader_close(struct log_reader *r)
{
    if (!r)
        return;
    free(r->segs);
    free(r->bad);
    free(r->buf.p);
    free(r);
}

uint32_t log_reader_nsegments(const struct log_reader *r)
{
    return r->n;
}

const struct log_seg_info *log_reader_segment(const struct log_reader *r, uint32_t i)
{
    return i < r->n ? &r->segs[i] : NULL;
}

uint64_t log_reader_reserved(const struct log_reader *r)
{
    return r->reserved;
}

uint32_t log_reader_flow_hash(const struct log_reader *r)
{
    return r->flow_hash;
}

/* Filters built by another hash than the query's would answer "not here" for
 * blocks that hold the flow: refuse rather than return nothing. */
int log_query_check(const struct log_reader *r, const struct log_query *q, struct rw_err *e)
{
    if (!q->has_flow || r->flow_hash == RW_FLOW_HASH_VERSION)
        return 0;
    if (!r->flow_hash)
        return rw_errf(e, RW_ECORRUPT,
                       "%s: no flow hash version recorded: the log was written before flow hash "
                       "version %u, by a hash that differed between builds, so its flow index "
                       "cannot answer a flow query; re-ingest the capture into a new log, or "
                       "select with a BPF filter alone (--filter), which reads every block",
                       r->dir, RW_FLOW_HASH_VERSION);
    return rw_errf(e, RW_ECORRUPT,
                   "%s: its flow index uses flow hash version %u, which this build does not know "
                   "(it knows %u), so it cannot answer a flow query; use a rewind that knows "
                   "version %u, or select with a BPF filter alone (--filter), which reads every "
                   "block",
                   r->dir, r->flow_hash, RW_FLOW_HASH_VERSION, r->flow_hash);
}

static bool seg_overlaps(const struct log_seg_info *s, const struct log_query *q)
{
    return s->packets && s->last_clock >= q->from_clock && s->first_clock <= q->to_clock &&
           s->max_ts >= q->since_ns && s->min_ts <= q->until_ns;
}

/* Per-scan state handed to the record filter. */
struct scan {
    struct log_reader *r;
    const struct log_query *q;
    const struct log_scan_cbs *cb;
    struct log_scan_stats *st;
    const struct log_seg_info *seg;
    uint64_t stop_clock; /* no block after the one starting here can be in the window */
    bool ts_monotonic;   /* the segment's, as of the scan's transaction */
    struct rw_err *e;
};

static int filter_rec(void *ctx, const struct log_rec *rec)
{
    struct scan *s = ctx;
    const struct log_query *q = s->q;
    s->st->packets_seen++;
    if (rec->meta.clock < q->from_clock || rec->meta.clock > q->to_clock ||
        rec->meta.ts_ns < q->since_ns || rec->meta.ts_ns > q->until_ns)
        return 0;
    if (q->has_flow) {
        struct rw_flow f;
        if (!rw_flow_parse(rec->data, rec->cap_len, &f) || !rw_flow_match(&f, &q->flow))
            return 0;
    }
    s->st->packets_matched++;
    return s->cb->visit ? s->cb->visit(s->cb->ctx, rec) : 0;
}

/* Checks, filters and decodes one stored block. */
static int visit_block(struct scan *s, const MDB_val *v, uint64_t key)
{
    struct log_block_hdr h;
    struct rw_err be;
    s->st->blocks_read++;
    if (s->cb->progress && (s->st->blocks_read & 63) == 0)
        s->cb->progress(s->cb->ctx, s->st->blocks_read, s->st->blocks_total);
    int rc = log_block_check(v->mv_data, v->mv_size, &h, &be);
    if (!rc && h.first_clock != key)
        rc = rw_errf(&be, RW_ECORRUPT, "block header says clock %llu",
                     (unsigned long long)h.first_clock);
    if (!rc) {
        if (s->ts_monotonic && h.min_ts > s->q->until_ns)
            return SCAN_PAST_WINDOW;
        if (h.last_clock < s->q->from_clock || h.first_clock > s->q->to_clock ||
            h.max_ts < s->q->since_ns || h.min_ts > s->q->until_ns)
            return 0;
        rc = log_block_decode(v->mv_data, v->mv_size, &h, &s->r->buf, filter_rec, s, &be);
        if (rc != RW_ECORRUPT)
            return rc;
    }
    s->st->blocks_damaged++;
    if (!s->cb->damage)
        return rw_errf(s->e, RW_ECORRUPT, "segment %u, block at clock %llu: %s", s->seg->id,
                       (unsigned long long)key, be.msg);
    s->cb->damage(s->cb->ctx, s->seg->id, key, be.msg);
    return 0;
}

static int get_block(struct scan *s, MDB_txn *txn, MDB_dbi dbi, uint64_t clock, const char *index)
{
    uint8_t kb[8];
    rw_put_be64(kb, clock);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return rw_errf(s->e, RW_ECORRUPT, "segment %u: %s index names missing block %llu",
                       s->seg->id, index, (unsigned long long)clock);
    if (rc)
        return log_mdb_err(s->e, rc, "read block", "log");
    return visit_block(s, &v, clock);
}

/* Walks the per-block flow filters in clock order and reads the blocks that may
 * hold the flow. */
static int scan_flow(struct scan *s, MDB_txn *txn, struct log_seg *seg)
{
    uint32_t h = rw_flow_hash(&s->q->flow);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, seg->flow, &cur);
    if (rc)
        return log_mdb_err(s->e, rc, "cursor", "flow index");
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !ret;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) {
            ret = rw_errf(s->e, RW_ECORRUPT, "segment %u: bad flow index key", s->seg->id);
            break;
        }
        uint64_t c = rw_get_be64(k.mv_data);
        if (c > s->q->to_clock || c > s->stop_clock)
            break;
        if (log_bloom_may_hold(v.mv_data, v.mv_size, h))
            ret = get_block(s, txn, seg->blocks, c, "flow");
    }
    if (ret == SCAN_PAST_WINDOW)
        ret = 0, rc = 0;
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = log_mdb_err(s->e, rc, "read", "flow index");
    mdb_cursor_close(cur);
    return ret;
}

/* First block to read for a time window: the time index is keyed by the running
 * maximum of packet time, so the first entry >= since is the first block that can
 * hold a packet at or after since. */
static int time_start(struct scan *s, MDB_txn *txn, struct log_seg *seg, uint64_t *clock)
{
    uint8_t tk[16];
    rw_put_be64(tk, s->q->since_ns);
    rw_put_be64(tk + 8, 0);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, seg->time, &cur);
    if (rc)
        return log_mdb_err(s->e, rc, "cursor", "time index");
    MDB_val k = {16, tk}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        *clock = UINT64_MAX;
        return 0;
    }
    if (rc || k.mv_size != 16)
        return log_mdb_err(s->e, rc ? rc : MDB_CORRUPTED, "read", "time index");
    uint64_t c = rw_get_be64((uint8_t *)k.mv_data + 8);
    *clock = c > s->q->from_clock ? c : s->q->from_clock;
    return 0;
}

/* The first block of the segment after which no packet can be at or before
 * --until, however the trace was ordered. With R(b) the latest ts up to block b
 * (the time index's key) and late the segment's bound (log_seg_info.ts_late),
 * every packet of a block f has ts >= R(f-1) - late. So once a block e has
 * R(e) > until + late, every later block f has ts >= R(f-1) - late >= R(e) - late
 * > until: e is the last block to read. */
static void time_stop(struct scan *s, MDB_txn *txn, struct log_seg *seg, uint64_t late,
                      uint64_t *clock)
{
    *clock = UINT64_MAX;
    uint64_t until = s->q->until_ns;
    if (late == LOG_LATE_UNKNOWN || until >= UINT64_MAX - late)
        return;
    uint8_t tk[16];
    rw_put_be64(tk, until + late + 1);
    rw_put_be64(tk + 8, 0);
    MDB_cursor *cur;
    MDB_val k = {16, tk}, v;
    if (mdb_cursor_open(txn, seg->time, &cur))
        return;
    /* an entry that does not read only costs the early stop, not the segment */
    if (!mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) && k.mv_size == 16)
        *clock = rw_get_be64((uint8_t *)k.mv_data + 8);
    mdb_cursor_close(cur);
}

/* Reads blocks in clock order from the block holding `start`: every block, or
 * (keys) only those whose keys filter the query's predicate does not rule out. */
static int scan_range(struct scan *s, MDB_txn *txn, struct log_seg *seg, uint64_t start, bool keys)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, keys ? seg->keys : seg->blocks, &cur);
    if (rc)
        return log_mdb_err(s->e, rc, "cursor", keys ? "keys index" : "blocks");
    uint8_t kb[8];
    rw_put_be64(kb, start);
    MDB_val k = {8, kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND || (rc == 0 && rw_get_be64(k.mv_data) > start)) {
        int prc = mdb_cursor_get(cur, &k, &v, MDB_PREV); /* the block holding start */
        if (prc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        else
            rc = prc;
    }
    int ret = 0;
    for (; rc == 0 && !ret; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) {
            ret = rw_errf(s->e, RW_ECORRUPT, "segment %u: bad block key", s->seg->id);
            break;
        }
        uint64_t c = rw_get_be64(k.mv_data);
        if (c > s->q->to_clock || c > s->stop_clock)
            break;
        if (!keys)
            ret = visit_block(s, &v, c);
        else if (log_keys_may_match(s->q->keys, v.mv_data, v.mv_size))
            ret = get_block(s, txn, seg->blocks, c, "keys");
    }
    if (ret == SCAN_PAST_WINDOW)
        ret = 0, rc = 0;
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = log_mdb_err(s->e, rc, "read", keys ? "keys index" : "blocks");
    mdb_cursor_close(cur);
    return ret;
}

/* The keys index answers for a segment only when it has a filter for every block
 * (a segment begun by a build without it has fewer: read its blocks). */
static bool keys_complete(MDB_txn *txn, struct log_seg *seg)
{
    MDB_stat ks, bs;
    return seg->has_keys && !mdb_stat(txn, seg->keys, &ks) && !mdb_stat(txn, seg->blocks, &bs) &&
           ks.ms_entries == bs.ms_entries;
}

static int scan_segment(struct scan *s)
{
    struct log_seg seg;
    int rc = log_seg_open(s->r->dir, s->seg->id, false, RW_DUR_NONE, 0, &seg, s->e);
    if (rc)
        return rw_err_prefix(s->e, "segment %u: ", s->seg->id);
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(seg.env, NULL, MDB_RDONLY, &txn))) {
        log_seg_close(&seg);
        return log_mdb_err(s->e, rc, "begin", "segment");
    }
    const struct log_query *q = s->q;
    bool keys = !q->has_flow && q->keys && keys_complete(txn, &seg);
    if (keys)
        s->st->index = "keys";
    /* The summary as of this transaction (a writer may have appended since the
     * reader opened): trusted for the time bounds only when it counts every
     * block (a lost or stale summary gives no bound). */
    struct rw_err ie;
    MDB_stat bs;
    bool whole = !log_seg_load_info(&seg, txn, s->seg->id, &ie) &&
                 !mdb_stat(txn, seg.blocks, &bs) && bs.ms_entries == seg.si.blocks;
    s->ts_monotonic = whole && seg.si.ts_monotonic;
    time_stop(s, txn, &seg, whole ? seg.si.ts_late : LOG_LATE_UNKNOWN, &s->stop_clock);
    if (q->has_flow) {
        rc = scan_flow(s, txn, &seg);
    } else if (q->since_ns > 0) {
        uint64_t start = UINT64_MAX;
        rc = time_start(s, txn, &seg, &start);
        if (!rc && start != UINT64_MAX)
            rc = scan_range(s, txn, &seg, start, keys);
    } else {
        rc = scan_range(s, txn, &seg, q->from_clock, keys);
    }
    mdb_txn_abort(txn);
    log_seg_close(&seg);
    return rc;
}

/* Reports a segment that could not be read at all; without a damage handler
 * that is the scan's error. */
static int seg_damaged(struct scan *s, const struct log_seg_info *si, const char *why)
{
    s->st->blocks_damaged++;
    if (!s->cb->damage)
        return rw_errf(s->e, RW_ECORRUPT, "segment %u: %s", si->id, why);
    char msg[RW_ERR_MSG_MAX + 32];
    snprintf(msg, sizeof(msg), "whole segment skipped: %s", why);
    s->cb->damage(s->cb->ctx, si->id, si->first_clock, msg);
    return 0;
}

int log_scan(struct log_reader *r, const struct log_query *q, const struct log_scan_cbs *cb,
             struct log_scan_stats *st, struct rw_err *e)
{
    struct log_scan_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    /* "keys" once a segment's keys filters were used (older segments are read whole) */
    st->index = q->has_flow ? "flow" : q->since_ns > 0 ? "time" : "clock";
    int rc = log_query_check(r, q, e);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < r->n; i++)
        if (seg_overlaps(&r->segs[i], q))
            st->blocks_total += r->segs[i].blocks;
    struct scan s = {.r = r, .q = q, .cb = cb, .st = st, .e = e};
    for (uint32_t i = 0; i < r->n && !rc; i++) {
        if (r->bad[i][0]) {
            rc = seg_damaged(&s, &r->segs[i], r->bad[i]);
            continue;
        }
        if (!seg_overlaps(&r->segs[i], q))
            continue;
        s.seg = &r->segs[i];
        rc = scan_segment(&s);
        /* A segment LMDB cannot open or walk is skipped like a damaged block,
         * so one bad segment does not hide the others. */
        if ((rc == RW_ECORRUPT || rc == RW_ENOENT) && cb->damage)
            rc = seg_damaged(&s, &r->segs[i], e ? e->msg : "unreadable");
    }
    if (cb->progress)
        cb->progress(cb->ctx, st->blocks_read, st->blocks_total);
    return rc;
}
