/*
 * log_writer.c - appending to the log: blocks, group commit, segment rotation,
 * retention and crash recovery.
 *
 * Packets go into an open block; a block closes when it is full or commit_ns
 * old, and closed blocks wait (at most commit_ns) to be committed together in
 * one LMDB transaction, so an fsync is paid per group, not per packet. Blocks are
 * kept in memory until their transaction commits: if the segment's map fills,
 * the transaction is aborted, the segment sealed, and the same blocks go into a
 * new segment, so nothing appended is dropped by a rotation.
 *
 * Crash recovery is LMDB's: a transaction is there whole or not at all. The only
 * state outside transactions is the clock reservation, synced before use.
 */
#include "log_internal.h"
#include "log_block.h"
#include "log_keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#define LOG_GROUP_MAX_BYTES  (8u << 20) /* commit early past this much pending data */
#define LOG_GROUP_MAX_BLOCKS 64

struct pending_block {
    uint8_t *v;
    size_t len;
    uint64_t first_clock, last_clock, min_ts, max_ts, first_ts;
    uint64_t count, raw, wire;
    bool monotonic;
    uint8_t *bloom; /* the block's flow filter (log_bloom.c) */
    size_t bloom_len;
    uint8_t *keys; /* its host/port/protocol filter (log_keys.c) */
    size_t keys_len;
};

struct log_writer {
    char dir[4096];
    struct log_opts o;
    struct log_manifest man;
    struct log_seg seg;
    struct log_block_builder bb;
    struct pending_block *pend;
    size_t npend, pend_cap, pend_bytes;
    uint64_t pend_since_ns; /* when the oldest pending packet was appended */
    uint64_t durable, reserved, next_clock;
    bool have_last;
    uint64_t last_clock;
    uint16_t last_sub;
    uint64_t newest_ts;
};

void log_opts_default(struct log_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->durability = RW_DUR_PROCESS;
    o->segment_bytes = 256ull << 20;
    o->trim_floor = UINT64_MAX;
    o->block_pkts = 1024;
    o->block_bytes = 256u << 10;
    o->commit_ns = 1000000;
}

int log_durability_parse(const char *s, enum rw_durability *d)
{
    static const char *names[] = {"none", "process", "power"};
    for (int i = 0; i < 3; i++)
        if (!strcasecmp(s, names[i])) {
            *d = (enum rw_durability)i;
            return 0;
        }
    return RW_EINVAL;
}

const char *log_durability_name(enum rw_durability d)
{
    return d == RW_DUR_NONE ? "none" : d == RW_DUR_POWER ? "power" : "process";
}

static uint64_t seg_mapsize(const struct log_opts *o)
{
    return o->segment_bytes + o->segment_bytes / 2 + (64ull << 20);
}

/* Starts segment `id`: listed in the manifest first, so a crash never leaves a
 * segment directory the manifest does not know. */
static int start_segment(struct log_writer *w, uint32_t id, struct rw_err *e)
{
    struct log_seg_info si = {.id = id, .ts_monotonic = true};
    int rc = log_manifest_put(&w->man, &si, e);
    if (rc)
        return rc;
    rc = log_seg_open(w->dir, id, true, w->o.durability, seg_mapsize(&w->o), &w->seg, e);
    if (rc)
        return rc;
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(w->seg.env, NULL, MDB_RDONLY, &txn)))
        return log_mdb_err(e, rc, "begin", w->dir);
    rc = log_seg_load_info(&w->seg, txn, id, e);
    mdb_txn_abort(txn);
    return rc;
}

/* No sync here: in `power` mode every commit was synced already, and `process`
 * mode promises only the page cache (a 256 MiB flush would stall the logger). */
static int seal_segment(struct log_writer *w, struct rw_err *e)
{
    w->seg.si.sealed = true;
    int rc = log_manifest_put(&w->man, &w->seg.si, e);
    log_seg_close(&w->seg);
    return rc;
}

static bool retention_due(const struct log_writer *w, const struct log_seg_info *s, uint64_t total)
{
    if (!s->sealed || s->last_clock >= w->o.trim_floor)
        return false;
    if (w->o.retain_bytes && total > w->o.retain_bytes)
        return true;
    return w->o.retain_ns && s->packets && s->max_ts + w->o.retain_ns < w->newest_ts;
}

/* Deletes the oldest sealed segments that the retention policy lets go. The
 * manifest entry goes first: a crash in between leaves files nobody lists,
 * never a listed segment without files. */
static int apply_retention(struct log_writer *w, struct rw_err *e)
{
    if (!w->o.retain_bytes && !w->o.retain_ns)
        return 0;
    struct log_seg_info *segs;
    uint32_t n;
    int rc = log_manifest_list(&w->man, &segs, &n, e);
    if (rc)
        return rc;
    uint64_t total = w->seg.si.stored_bytes;
    for (uint32_t i = 0; i < n; i++)
        if (segs[i].id != w->seg.si.id)
            total += segs[i].stored_bytes;
    for (uint32_t i = 0; i < n && !rc; i++) {
        if (segs[i].id == w->seg.si.id || !retention_due(w, &segs[i], total))
            break;
        rc = log_manifest_del(&w->man, segs[i].id, e);
        if (!rc)
            rc = log_seg_remove(w->dir, segs[i].id, e);
        total -= segs[i].stored_bytes;
    }
    free(segs);
    return rc;
}

static int rotate(struct log_writer *w, struct rw_err *e)
{
    uint32_t next = w->seg.si.id + 1;
    int rc = seal_segment(w, e);
    if (!rc)
        rc = start_segment(w, next, e);
    if (!rc)
        rc = apply_retention(w, e);
    return rc;
}

static int recover(struct log_writer *w, struct rw_err *e)
{
    struct log_seg_info *segs;
    uint32_t n;
    int rc = log_manifest_list(&w->man, &segs, &n, e);
    if (rc)
        return rc;
    uint64_t next = w->reserved;
    for (uint32_t i = 0; i < n; i++)
        if (segs[i].packets && segs[i].last_clock + 1 > next)
            next = segs[i].last_clock + 1;
    uint32_t last_id = n ? segs[n - 1].id : 0;
    bool reopen = n && !segs[n - 1].sealed;
    free(segs);
    rc = start_segment(w, reopen ? last_id : last_id + 1, e);
    if (rc)
        return rc;
    if (w->seg.si.packets) {
        if (w->seg.si.last_clock + 1 > next)
            next = w->seg.si.last_clock + 1;
        w->newest_ts = w->seg.si.max_ts;
    }
    w->next_clock = next;
    w->durable = next;
    if (reopen && w->seg.si.stored_bytes >= w->o.segment_bytes)
        return rotate(w, e);
    return 0;
}

/* A new log records the flow hash its filters are built with. A log that has none
 * recorded predates version 2: blocks appended to it are indexed with version 2,
 * but its older filters still cannot be trusted, so it stays unrecorded and flow
 * queries keep refusing it. Filters of another version are never mixed into a log. */
static int record_flow_hash(struct log_writer *w, struct rw_err *e)
{
    uint32_t v;
    int rc = log_manifest_flow_hash(&w->man, &v, e);
    if (rc || v == RW_FLOW_HASH_VERSION)
        return rc;
    if (v)
        return rw_errf(e, RW_ECORRUPT,
                       "%s: its flow index uses flow hash version %u, which this build does not "
                       "know (it writes version %u); append with a rewind that knows version %u, "
                       "or write a new log",
                       w->dir, v, RW_FLOW_HASH_VERSION, v);
    struct log_seg_info *segs;
    uint32_t n;
    if ((rc = log_manifest_list(&w->man, &segs, &n, e)))
        return rc;
    free(segs);
    return n ? 0 : log_manifest_set_flow_hash(&w->man, RW_FLOW_HASH_VERSION, e);
}

int log_writer_open(const char *dir, const struct log_opts *o, struct log_writer **out,
                    struct rw_err *e)
{
    if (strlen(dir) >= sizeof(((struct log_writer *)0)->dir))
        return rw_errf(e, RW_EINVAL, "log directory path too long");
    if (!o->block_pkts || !o->block_bytes || o->segment_bytes < (1u << 20))
        return rw_errf(e, RW_EINVAL, "log options: blocks need a size, segments >= 1 MiB");
    struct log_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    snprintf(w->dir, sizeof(w->dir), "%s", dir);
    w->o = *o;
    log_bb_init(&w->bb);
    int rc = log_manifest_open(dir, true, &w->man, e);
    if (!rc)
        rc = log_manifest_reserved(&w->man, &w->reserved, e);
    if (!rc)
        rc = record_flow_hash(w, e);
    if (!rc)
        rc = recover(w, e);
    if (rc) {
        log_seg_close(&w->seg);
        log_manifest_close(&w->man);
        log_bb_free(&w->bb);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

static int close_block(struct log_writer *w)
{
    struct log_block_builder *b = &w->bb;
    if (w->npend == w->pend_cap) {
        size_t n = w->pend_cap ? w->pend_cap * 2 : 16;
        struct pending_block *q = realloc(w->pend, n * sizeof(*q));
        if (!q)
            return RW_ENOMEM;
        w->pend = q;
        w->pend_cap = n;
    }
    struct pending_block *p = &w->pend[w->npend];
    memset(p, 0, sizeof(*p));
    if (log_bb_encode(b, &p->v, &p->len))
        return RW_ENOMEM;
    if (log_bloom_build(b->flows, b->nflows, &p->bloom, &p->bloom_len)) {
        free(p->v);
        return RW_ENOMEM;
    }
    if (log_keys_build(b, &p->keys, &p->keys_len)) {
        free(p->v);
        free(p->bloom);
        return RW_ENOMEM;
    }
    p->first_clock = b->first_clock;
    p->last_clock = b->last_clock;
    p->min_ts = b->min_ts;
    p->max_ts = b->max_ts;
    p->first_ts = b->first_ts;
    p->count = b->count;
    p->raw = b->raw_len;
    p->wire = b->wire_bytes;
    p->monotonic = b->monotonic;
    if (w->npend++ == 0)
        w->pend_since_ns = b->opened_ns;
    w->pend_bytes += p->len;
    log_bb_reset(b);
    return 0;
}

static void account(struct log_seg_info *si, const struct pending_block *p)
{
    /* The time-order bound: how far a block's earliest packet lies behind the
     * latest one of the blocks before it (log_reader.c, time_stop, says why
     * that is all a scan needs). */
    if (si->ts_late != LOG_LATE_UNKNOWN && si->packets && si->max_ts > p->min_ts &&
        si->max_ts - p->min_ts > si->ts_late)
        si->ts_late = si->max_ts - p->min_ts;
    si->ts_monotonic =
        si->ts_monotonic && p->monotonic && (!si->packets || p->first_ts >= si->max_ts);
    if (!si->packets) {
        si->first_clock = p->first_clock;
        si->min_ts = p->min_ts;
        si->max_ts = p->max_ts;
    }
    si->last_clock = p->last_clock;
    if (p->min_ts < si->min_ts)
        si->min_ts = p->min_ts;
    if (p->max_ts > si->max_ts)
        si->max_ts = p->max_ts;
    si->packets += p->count;
    si->blocks++;
    si->raw_bytes += p->raw;
    si->stored_bytes += p->len;
    si->wire_bytes += p->wire;
}

static int put_block(MDB_txn *txn, struct log_seg *s, const struct pending_block *p)
{
    uint8_t kb[8], tk[16];
    rw_put_be64(kb, p->first_clock);
    MDB_val k = {8, kb}, v = {p->len, p->v};
    int rc = mdb_put(txn, s->blocks, &k, &v, MDB_APPEND);
    if (rc)
        return rc;
    uint64_t running_max = s->si.packets && s->si.max_ts > p->max_ts ? s->si.max_ts : p->max_ts;
    rw_put_be64(tk, running_max);
    rw_put_be64(tk + 8, p->first_clock);
    MDB_val tkv = {16, tk}, tv = {8, kb};
    if ((rc = mdb_put(txn, s->time, &tkv, &tv, MDB_APPEND)))
        return rc;
    MDB_val fv = {p->bloom_len, p->bloom};
    if ((rc = mdb_put(txn, s->flow, &k, &fv, MDB_APPEND)))
        return rc;
    MDB_val kv = {p->keys_len, p->keys};
    if ((rc = mdb_put(txn, s->keys, &k, &kv, MDB_APPEND)))
        return rc;
    account(&s->si, p);
    return 0;
}

/* Writes every pending block and the updated summary in one transaction. On
 * failure the summary is restored and the blocks stay pending. */
static int try_commit(struct log_writer *w)
{
    struct log_seg_info saved = w->seg.si;
    MDB_txn *txn;
    int rc = mdb_txn_begin(w->seg.env, NULL, 0, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < w->npend && !rc; i++)
        rc = put_block(txn, &w->seg, &w->pend[i]);
    if (!rc) {
        uint8_t vb[LOG_SEG_INFO_LEN];
        log_seg_info_encode(&w->seg.si, vb);
        MDB_val k = {4, "info"}, v = {sizeof(vb), vb};
        rc = mdb_put(txn, w->seg.info, &k, &v, 0);
    }
    if (!rc) {
        uint8_t lb[LOG_LATE_LEN];
        log_seg_late_encode(&w->seg.si, lb);
        MDB_val k = {4, "late"}, v = {sizeof(lb), lb};
        rc = mdb_put(txn, w->seg.info, &k, &v, 0);
    }
    if (rc)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc)
        w->seg.si = saved;
    return rc;
}

static void drop_pending(struct log_writer *w)
{
    for (size_t i = 0; i < w->npend; i++) {
        free(w->pend[i].v);
        free(w->pend[i].bloom);
        free(w->pend[i].keys);
    }
    w->npend = 0;
    w->pend_bytes = 0;
}

/* LMDB reports a short write (the usual form of a full disk) as EIO; tell the
 * operator what it most likely is. */
static bool disk_full(const struct log_writer *w)
{
    struct statvfs vs;
    if (statvfs(w->dir, &vs))
        return false;
    return (uint64_t)vs.f_bavail * vs.f_frsize < w->pend_bytes + (1u << 20);
}

static int commit_pending(struct log_writer *w, struct rw_err *e)
{
    if (!w->npend)
        return 0;
    int rc = try_commit(w);
    if (rc == MDB_MAP_FULL && w->seg.si.packets) {
        if ((rc = rotate(w, e)))
            return rc;
        rc = try_commit(w);
    }
    if (rc == EIO && disk_full(w))
        rc = ENOSPC;
    if (rc) {
        char where[128];
        snprintf(where, sizeof(where), "segment %u, clocks %llu..%llu not stored", w->seg.si.id,
                 (unsigned long long)w->pend[0].first_clock,
                 (unsigned long long)w->pend[w->npend - 1].last_clock);
        return log_mdb_err(e, rc, "commit", where);
    }
    uint64_t last = w->pend[w->npend - 1].last_clock;
    drop_pending(w);
    if (w->o.durability != RW_DUR_NONE)
        w->durable = last + 1;
    if (w->seg.si.stored_bytes >= w->o.segment_bytes)
        return rotate(w, e);
    return 0;
}

int log_writer_append(struct log_writer *w, const struct log_rec *r, struct rw_err *e)
{
    const struct rw_meta *m = &r->meta;
    if (w->have_last &&
        (m->clock < w->last_clock ||
         (m->clock == w->last_clock &&
          (m->sub < w->last_sub ||
           (m->sub == w->last_sub && !(w->o.allow_repeats && (m->flags & RW_F_REPEAT)))))))
        return rw_errf(e, RW_EINVAL, "append: clock %llu.%u is not above the last logged %llu.%u",
                       (unsigned long long)m->clock, m->sub, (unsigned long long)w->last_clock,
                       w->last_sub);
    if (!w->have_last && m->clock < w->next_clock && w->seg.si.packets)
        return rw_errf(e, RW_EINVAL, "append: clock %llu is below the log's next clock %llu",
                       (unsigned long long)m->clock, (unsigned long long)w->next_clock);
    if (w->reserved && m->clock >= w->reserved)
        return rw_errf(e, RW_EINVAL, "append: clock %llu is not reserved (reserved below %llu)",
                       (unsigned long long)m->clock, (unsigned long long)w->reserved);
    int rc = log_bb_add(&w->bb, r, w->bb.count ? w->bb.opened_ns : rw_now_ns());
    if (rc)
        return rw_errf(e, rc, "append: out of memory");
    w->have_last = true;
    w->last_clock = m->clock;
    w->last_sub = m->sub;
    if (m->ts_ns > w->newest_ts)
        w->newest_ts = m->ts_ns;
    if (w->o.durability == RW_DUR_NONE)
        w->durable = m->clock + 1;
    if (w->bb.count < w->o.block_pkts && w->bb.raw_len < w->o.block_bytes)
        return 0;
    if ((rc = close_block(w)))
        return rw_errf(e, rc, "append: out of memory");
    /* A group also stays well below a segment, so rotation keeps segments near
     * their configured size. */
    uint64_t group_max =
        w->o.segment_bytes / 8 < LOG_GROUP_MAX_BYTES ? w->o.segment_bytes / 8 : LOG_GROUP_MAX_BYTES;
    if (w->pend_bytes >= group_max || w->npend >= LOG_GROUP_MAX_BLOCKS)
        return commit_pending(w, e);
    return 0;
}

int log_writer_tick(struct log_writer *w, uint64_t now_ns, struct rw_err *e)
{
    int rc;
    if (w->bb.count && now_ns - w->bb.opened_ns >= w->o.commit_ns && (rc = close_block(w)))
        return rw_errf(e, rc, "commit: out of memory");
    if (w->npend && now_ns - w->pend_since_ns >= w->o.commit_ns)
        return commit_pending(w, e);
    return 0;
}

int log_writer_commit(struct log_writer *w, struct rw_err *e)
{
    int rc;
    if (w->bb.count && (rc = close_block(w)))
        return rw_errf(e, rc, "commit: out of memory");
    return commit_pending(w, e);
}

uint64_t log_writer_durable(const struct log_writer *w)
{
    return w->durable;
}

uint64_t log_writer_next_clock(const struct log_writer *w)
{
    return w->next_clock;
}

int log_writer_reserve(struct log_writer *w, uint64_t upto, struct rw_err *e)
{
    if (upto <= w->reserved)
        return 0;
    int rc = log_manifest_reserve(&w->man, upto, e);
    if (!rc)
        w->reserved = upto;
    return rc;
}

uint64_t log_writer_reserved(const struct log_writer *w)
{
    return w->reserved;
}

int log_writer_close(struct log_writer *w, struct rw_err *e)
{
    if (!w)
        return 0;
    int rc = log_writer_commit(w, e);
    drop_pending(w);
    free(w->pend);
    log_bb_free(&w->bb);
    log_seg_close(&w->seg);
    log_manifest_close(&w->man);
    free(w);
    return rc;
}
