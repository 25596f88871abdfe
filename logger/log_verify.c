/*
 * log_verify.c - `rewind log verify`: reads every block of every segment and
 * checks what a replay relies on: each block's checksum and records, clocks
 * strictly increasing across the whole log, the summaries matching the blocks,
 * every index entry pointing at a block, and the clock reservation above every
 * logged clock. Problems are reported one by one with segment and clock.
 *
 * LMDB does not checksum its pages, and a damaged branch page can make it read
 * outside its map; the command line runs this in a child process so such damage
 * is reported, not suffered (cli/cli_guard.c).
 */
#include "log_internal.h"
#include "log_block.h"
#include "log_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct verify {
    const char *dir;
    log_problem_fn fn;
    void *ctx;
    struct log_verify_stats *st;
    uint64_t prev_clock;
    uint16_t prev_sub;
    bool any;
    struct log_block_buf buf;
    struct log_seg_info got; /* recomputed from the blocks */
    uint64_t damaged;        /* damaged blocks in the current segment */
    MDB_txn *txn;            /* the current segment's, for its time index */
    MDB_dbi time;
};

static void problem(struct verify *v, uint32_t seg, uint64_t clock, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void problem(struct verify *v, uint32_t seg, uint64_t clock, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    v->st->problems++;
    if (v->fn)
        v->fn(v->ctx, seg, clock, msg);
}

static int check_rec(void *ctx, const struct log_rec *r)
{
    struct verify *v = ctx;
    if (v->any && (r->meta.clock < v->prev_clock ||
                   (r->meta.clock == v->prev_clock && r->meta.sub <= v->prev_sub)))
        return 1; /* reported by the caller with the block's position */
    v->any = true;
    v->prev_clock = r->meta.clock;
    v->prev_sub = r->meta.sub;
    v->got.wire_bytes += r->orig_len;
    return 0;
}

static void check_block(struct verify *v, uint32_t seg, const MDB_val *k, const MDB_val *val)
{
    struct log_block_hdr h;
    struct rw_err be;
    uint64_t key = k->mv_size == 8 ? rw_get_be64(k->mv_data) : 0;
    if (k->mv_size != 8) {
        problem(v, seg, 0, "block key of %zu bytes", k->mv_size);
        return;
    }
    int rc = log_block_check(val->mv_data, val->mv_size, &h, &be);
    if (!rc && h.first_clock != key) {
        problem(v, seg, key, "block header says first clock %llu",
                (unsigned long long)h.first_clock);
        return;
    }
    if (!rc)
        rc = log_block_decode(val->mv_data, val->mv_size, &h, &v->buf, check_rec, v, &be);
    if (rc == 1) {
        problem(v, seg, key, "clocks go backwards (previous %llu)",
                (unsigned long long)v->prev_clock);
        return;
    }
    if (rc) {
        problem(v, seg, key, "%s", be.msg);
        v->damaged++; /* its packets cannot be counted: skip the summary count check */
        v->got.blocks++;
        return;
    }
    struct log_seg_info *g = &v->got;
    if (!g->packets) {
        g->first_clock = h.first_clock;
        g->min_ts = h.min_ts;
        g->max_ts = h.max_ts;
    } else if (g->max_ts > h.min_ts && g->max_ts - h.min_ts > g->ts_late)
        g->ts_late = g->max_ts - h.min_ts; /* as the writer's account() */
    g->last_clock = h.last_clock;
    g->min_ts = h.min_ts < g->min_ts ? h.min_ts : g->min_ts;
    g->max_ts = h.max_ts > g->max_ts ? h.max_ts : g->max_ts;
    g->packets += h.count;
    /* Its time index entry: (running max, first clock). A key too large would
     * end a --until scan before this block, too small start a --since scan
     * after it. Past a damaged block the running max is not known. */
    uint8_t tk[16];
    rw_put_be64(tk, g->max_ts);
    rw_put_be64(tk + 8, h.first_clock);
    MDB_val tkv = {16, tk}, tv;
    if (!v->damaged && (mdb_get(v->txn, v->time, &tkv, &tv) || tv.mv_size != 8 ||
                        rw_get_be64(tv.mv_data) != h.first_clock))
        problem(v, seg, key, "time index has no entry for the block at its running max ts %llu",
                (unsigned long long)g->max_ts);
    g->blocks++;
    g->stored_bytes += val->mv_size;
    v->st->blocks++;
    v->st->packets += h.count;
}

/* Every entry of an index must name an existing block: time index entries carry
 * the block's clock as their value, flow filters as their key. */
static void check_index(struct verify *v, uint32_t seg, MDB_txn *txn, struct log_seg *s,
                        MDB_dbi idx, const char *name, uint64_t *entries)
{
    MDB_cursor *cur;
    MDB_val k, val, bk, bv;
    *entries = 0;
    if (mdb_cursor_open(txn, idx, &cur)) {
        problem(v, seg, 0, "%s index cannot be read", name);
        return;
    }
    int rc;
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        (*entries)++;
        bool by_key = idx == s->flow || (s->has_keys && idx == s->keys);
        bool valid = idx == s->flow ? log_bloom_valid(val.mv_data, val.mv_size)
                     : by_key       ? log_keys_valid(val.mv_data, val.mv_size)
                                    : true;
        if (by_key ? !valid || k.mv_size != 8 : val.mv_size != 8) {
            problem(v, seg, 0, "%s index entry is malformed", name);
            continue;
        }
        bk = by_key ? k : val;
        if (mdb_get(txn, s->blocks, &bk, &bv))
            problem(v, seg, rw_get_be64(bk.mv_data), "%s index names a missing block", name);
    }
    if (rc != MDB_NOTFOUND)
        problem(v, seg, 0, "%s index: %s", name, mdb_strerror(rc));
    mdb_cursor_close(cur);
}

static void compare_info(struct verify *v, const struct log_seg_info *want)
{
    const struct log_seg_info *g = &v->got;
    if (v->damaged) /* already reported; the counts cannot match */
        return;
    if (g->packets != want->packets || g->blocks != want->blocks ||
        (g->packets && (g->first_clock != want->first_clock || g->last_clock != want->last_clock)))
        problem(v, want->id, g->last_clock,
                "summary says %llu packets in %llu blocks (clocks %llu..%llu), blocks hold "
                "%llu in %llu (%llu..%llu)",
                (unsigned long long)want->packets, (unsigned long long)want->blocks,
                (unsigned long long)want->first_clock, (unsigned long long)want->last_clock,
                (unsigned long long)g->packets, (unsigned long long)g->blocks,
                (unsigned long long)g->first_clock, (unsigned long long)g->last_clock);
}

static void verify_segment(struct verify *v, const struct log_seg_info *listed)
{
    struct log_seg s;
    struct rw_err e;
    uint32_t id = listed->id;
    if (log_seg_open(v->dir, id, false, RW_DUR_NONE, 0, &s, &e)) {
        if (e.code != RW_ENOENT || listed->sealed || listed->packets)
            problem(v, id, 0, "cannot open: %s", e.msg);
        return;
    }
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, val;
    if (mdb_txn_begin(s.env, NULL, MDB_RDONLY, &txn) || mdb_cursor_open(txn, s.blocks, &cur)) {
        problem(v, id, 0, "cannot read the block table");
        log_seg_close(&s);
        return;
    }
    memset(&v->got, 0, sizeof(v->got));
    v->damaged = 0;
    v->txn = txn;
    v->time = s.time;
    int rc;
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT))
        check_block(v, id, &k, &val);
    if (rc != MDB_NOTFOUND)
        problem(v, id, v->got.last_clock, "block table: %s", mdb_strerror(rc));
    mdb_cursor_close(cur);
    bool info = !log_seg_load_info(&s, txn, id, &e);
    if (!info)
        problem(v, id, 0, "%s", e.msg);
    else
        compare_info(v, listed->sealed ? listed : &s.si);
    /* a bound below the blocks' would end a --until scan before a packet in it */
    if (info && !v->damaged && s.si.ts_late != LOG_LATE_UNKNOWN && s.si.ts_late < v->got.ts_late)
        problem(v, id, 0,
                "time-order bound says blocks start at most %llu ns behind the blocks before "
                "them, the blocks %llu ns: a time window could miss packets",
                (unsigned long long)s.si.ts_late, (unsigned long long)v->got.ts_late);
    uint64_t tn, fn;
    check_index(v, id, txn, &s, s.time, "time", &tn);
    check_index(v, id, txn, &s, s.flow, "flow", &fn);
    if (fn != v->got.blocks)
        problem(v, id, 0, "flow index has %llu filters for %llu blocks", (unsigned long long)fn,
                (unsigned long long)v->got.blocks);
    if (tn != v->got.blocks)
        problem(v, id, 0, "time index has %llu entries for %llu blocks", (unsigned long long)tn,
                (unsigned long long)v->got.blocks);
    /* Fewer filters than blocks is sound (a segment begun by a build without the
     * keys index: queries read its blocks); more, or one that names no block, is not. */
    if (s.has_keys) {
        uint64_t kn;
        check_index(v, id, txn, &s, s.keys, "keys", &kn);
        if (kn > v->got.blocks)
            problem(v, id, 0, "keys index has %llu filters for %llu blocks", (unsigned long long)kn,
                    (unsigned long long)v->got.blocks);
    }
    mdb_txn_abort(txn);
    log_seg_close(&s);
    v->st->segments++;
}

int log_verify(const char *dir, const struct log_verify_cbs *cb, struct log_verify_stats *st,
               struct rw_err *e)
{
    struct log_verify_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    struct log_manifest m;
    int rc = log_manifest_open(dir, false, &m, e);
    if (rc)
        return rc;
    struct log_seg_info *segs;
    uint32_t n;
    uint64_t reserved = 0;
    rc = log_manifest_list(&m, &segs, &n, e);
    if (!rc)
        rc = log_manifest_reserved(&m, &reserved, e);
    log_manifest_close(&m);
    if (rc)
        return rc;
    struct verify v = {.dir = dir, .fn = cb->problem, .ctx = cb->ctx, .st = st};
    for (uint32_t i = 0; i < n; i++) {
        if (segs[i].id < cb->from_segment)
            continue;
        if (cb->segment)
            cb->segment(cb->ctx, segs[i].id);
        verify_segment(&v, &segs[i]);
    }
    if (reserved && v.any && v.prev_clock >= reserved)
        problem(&v, n ? segs[n - 1].id : 0, v.prev_clock,
                "clock reservation %llu is not above the last logged clock",
                (unsigned long long)reserved);
    free(segs);
    free(v.buf.p);
    if (st->problems)
        return rw_errf(e, RW_ECORRUPT, "%llu problem(s) found", (unsigned long long)st->problems);
    return 0;
}
