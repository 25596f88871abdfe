/*
 * test_log.c - the log's writer and reader in-process: round trip, group commit
 * and the durable watermark, rotation, retention, clock recovery, each index,
 * the flow hash version a log records, and damage detection.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>

#include "itest.h"
#include "log.h"

#define BASE_TS 1795343910000000000ull

struct gen {
    size_t n;
    struct log_rec *r;
    uint8_t **bufs;
};

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A UDP packet of flow `flow` (direction by `reverse`), `len` bytes, payload
 * random (incompressible) or zero. */
static uint8_t *make_pkt(uint32_t flow, int reverse, uint32_t len, int random, uint64_t *seed)
{
    uint8_t *p = calloc(1, len);
    p[12] = 0x08;
    p[14] = 0x45;
    p[23] = 17;
    uint8_t a[4] = {10, 0, (uint8_t)(flow >> 8), (uint8_t)flow}, b[4] = {10, 1, 0, 1};
    memcpy(p + 26, reverse ? b : a, 4);
    memcpy(p + 30, reverse ? a : b, 4);
    uint16_t sp = (uint16_t)(1000 + flow), dp = 53;
    uint16_t s = reverse ? dp : sp, d = reverse ? sp : dp;
    p[34] = (uint8_t)(s >> 8), p[35] = (uint8_t)s, p[36] = (uint8_t)(d >> 8), p[37] = (uint8_t)d;
    for (uint32_t i = 42; random && i < len; i++)
        p[i] = (uint8_t)rnd(seed);
    return p;
}

/* n records over `flows` flows, clocks from c0, ts 1 µs apart (or shuffled). */
static void gen_make(struct gen *g, size_t n, uint64_t c0, uint32_t flows, int random,
                     int shuffle_ts)
{
    uint64_t seed = 0x1234567 + n;
    g->n = n;
    g->r = calloc(n, sizeof(*g->r));
    g->bufs = calloc(n, sizeof(*g->bufs));
    for (size_t i = 0; i < n; i++) {
        uint32_t len = 60 + (uint32_t)(rnd(&seed) % 400);
        g->bufs[i] = make_pkt((uint32_t)(i % flows), (int)(i / flows) & 1, len, random, &seed);
        g->r[i].meta.clock = c0 + i;
        g->r[i].meta.ts_ns = BASE_TS + (shuffle_ts ? rnd(&seed) % (n * 1000) : i * 1000);
        g->r[i].meta.port = (uint16_t)(i % 3);
        g->r[i].orig_len = len + (uint32_t)(i % 2) * 100;
        g->r[i].cap_len = len;
        g->r[i].data = g->bufs[i];
    }
}

static void gen_free(struct gen *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->bufs[i]);
    free(g->bufs);
    free(g->r);
}

static struct log_writer *open_w(const char *dir, struct log_opts *o)
{
    struct log_writer *w = NULL;
    struct rw_err e;
    int rc = log_writer_open(dir, o, &w, &e);
    if (rc)
        fprintf(stderr, "open: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return w;
}

static void write_all(const char *dir, struct log_opts *o, const struct gen *g)
{
    struct log_writer *w = open_w(dir, o);
    struct rw_err e;
    for (size_t i = 0; i < g->n; i++)
        CU_ASSERT_EQUAL_FATAL(log_writer_append(w, &g->r[i], &e), 0);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
}

/* What most tests start from: a scratch directory, n records over `flows` flows
 * (gen_make from clock 0) and the default log options. fx_done removes it all. */
struct fx {
    char *d;
    struct gen g;
    struct log_opts o;
};

static void fx_init(struct fx *f, size_t n, uint32_t flows, int random, int shuffle_ts)
{
    f->d = tu_mkdtemp("log");
    gen_make(&f->g, n, 0, flows, random, shuffle_ts);
    log_opts_default(&f->o);
}

static void fx_done(struct fx *f)
{
    gen_free(&f->g);
    tu_rmrf(f->d);
    free(f->d);
}

/* Everything a scan returns, copied. */
struct got {
    size_t n, cap;
    struct log_rec *r;
    uint8_t **bufs;
};

static int collect(void *ctx, const struct log_rec *r)
{
    struct got *g = ctx;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->r = realloc(g->r, g->cap * sizeof(*g->r));
        g->bufs = realloc(g->bufs, g->cap * sizeof(*g->bufs));
    }
    g->bufs[g->n] = malloc(r->cap_len);
    memcpy(g->bufs[g->n], r->data, r->cap_len);
    g->r[g->n] = *r;
    g->r[g->n].data = g->bufs[g->n];
    g->n++;
    return 0;
}

static void got_free(struct got *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->bufs[i]);
    free(g->bufs);
    free(g->r);
    memset(g, 0, sizeof(*g));
}

static int scan(const char *dir, const struct log_query *q, struct got *out,
                struct log_scan_stats *st, log_damage_fn damage)
{
    struct log_reader *r;
    struct rw_err e;
    memset(out, 0, sizeof(*out));
    int rc = log_reader_open(dir, &r, &e);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    struct log_scan_cbs cb = {.visit = collect, .damage = damage, .ctx = out};
    rc = log_scan(r, q, &cb, st, &e);
    if (rc && !damage)
        fprintf(stderr, "scan: %s\n", e.msg);
    log_reader_close(r);
    return rc;
}

static int same_rec(const struct log_rec *a, const struct log_rec *b)
{
    return a->meta.clock == b->meta.clock && a->meta.ts_ns == b->meta.ts_ns &&
           a->meta.port == b->meta.port && a->orig_len == b->orig_len && a->cap_len == b->cap_len &&
           !memcmp(a->data, b->data, a->cap_len);
}

/* Records of g that q selects, by brute force. */
static size_t expect(const struct gen *g, const struct log_query *q, size_t *idx)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++) {
        const struct log_rec *r = &g->r[i];
        if (r->meta.clock < q->from_clock || r->meta.clock > q->to_clock ||
            r->meta.ts_ns < q->since_ns || r->meta.ts_ns > q->until_ns)
            continue;
        if (q->has_flow) {
            struct rw_flow f;
            if (!rw_flow_parse(r->data, r->cap_len, &f) || !rw_flow_match(&f, &q->flow))
                continue;
        }
        idx[n++] = i;
    }
    return n;
}

static void check_query(const char *dir, const struct gen *g, const struct log_query *q,
                        struct log_scan_stats *st)
{
    struct got got;
    size_t *idx = malloc(g->n * sizeof(size_t));
    size_t n = expect(g, q, idx);
    int rc = scan(dir, q, &got, st, NULL);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(got.n, n);
    for (size_t i = 0; i < n && i < got.n; i++)
        CU_ASSERT_TRUE(same_rec(&got.r[i], &g->r[idx[i]]));
    free(idx);
    got_free(&got);
}

static void verify_ok(const char *dir)
{
    struct log_verify_cbs cb = {0};
    struct log_verify_stats st;
    struct rw_err e;
    CU_ASSERT_EQUAL(log_verify(dir, &cb, &st, &e), 0);
    CU_ASSERT_EQUAL(st.problems, 0);
}

/* The fixture's records, all written to its directory with its options. */
static void fx_write(struct fx *f)
{
    write_all(f->d, &f->o, &f->g);
}

/* A query over the fixture's log returns exactly the records it selects. */
static void fx_check(struct fx *f, const struct log_query *q, struct log_scan_stats *st)
{
    check_query(f->d, &f->g, q, st);
}

static void test_round_trip(void)
{
    struct fx f;
    fx_init(&f, 5000, 50, 1, 0);
    fx_write(&f);
    struct log_query q;
    log_query_all(&q);
    fx_check(&f, &q, NULL);
    verify_ok(f.d);
    fx_done(&f);
}

static uint64_t committed_packets(const char *dir)
{
    struct log_reader *r;
    struct rw_err e;
    if (log_reader_open(dir, &r, &e))
        return UINT64_MAX;
    uint64_t n = 0;
    for (uint32_t i = 0; i < log_reader_nsegments(r); i++)
        n += log_reader_segment(r, i)->packets;
    log_reader_close(r);
    return n;
}

static void test_group_commit_watermark(void)
{
    struct fx f;
    fx_init(&f, 10, 2, 0, 0);
    f.o.commit_ns = 10ull * 1000000000ull; /* nothing commits on its own */
    struct log_writer *w = open_w(f.d, &f.o);
    struct rw_err e;
    for (size_t i = 0; i < f.g.n; i++)
        CU_ASSERT_EQUAL(log_writer_append(w, &f.g.r[i], &e), 0);
    CU_ASSERT_EQUAL(log_writer_durable(w), 0);
    CU_ASSERT_EQUAL(log_writer_tick(w, rw_now_ns(), &e), 0); /* younger than commit_ns */
    CU_ASSERT_EQUAL(log_writer_durable(w), 0);
    CU_ASSERT_EQUAL(committed_packets(f.d), 0);
    CU_ASSERT_EQUAL(log_writer_tick(w, rw_now_ns() + f.o.commit_ns, &e),
                    0); /* aged: group commits */
    CU_ASSERT_EQUAL(log_writer_durable(w), 10);
    CU_ASSERT_EQUAL(committed_packets(f.d), 10);
    log_writer_close(w, &e);
    tu_rmrf(f.d);

    f.o.durability = RW_DUR_NONE; /* D moves at append */
    w = open_w(f.d, &f.o);
    CU_ASSERT_EQUAL(log_writer_append(w, &f.g.r[0], &e), 0);
    CU_ASSERT_EQUAL(log_writer_durable(w), 1);
    CU_ASSERT_EQUAL(committed_packets(f.d), 0);
    log_writer_close(w, &e);
    CU_ASSERT_EQUAL(committed_packets(f.d), 1);
    fx_done(&f);
}

static void test_rotation(void)
{
    struct fx f;
    fx_init(&f, 20000, 64, 1, 0); /* ~5 MB of incompressible records */
    f.o.segment_bytes = 1u << 20;
    fx_write(&f);
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(f.d, &r, &e), 0);
    uint32_t n = log_reader_nsegments(r);
    CU_ASSERT_TRUE(n >= 4);
    for (uint32_t i = 0; i + 1 < n; i++) {
        CU_ASSERT_TRUE(log_reader_segment(r, i)->sealed);
        CU_ASSERT_EQUAL(log_reader_segment(r, i)->last_clock + 1,
                        log_reader_segment(r, i + 1)->first_clock);
    }
    log_reader_close(r);
    struct log_query q;
    log_query_all(&q);
    fx_check(&f, &q, NULL);
    q.from_clock = 7000, q.to_clock = 13000; /* across segment boundaries */
    fx_check(&f, &q, NULL);
    verify_ok(f.d);
    fx_done(&f);
}

static void test_retention(void)
{
    struct fx f;
    fx_init(&f, 20000, 64, 1, 0);
    f.o.segment_bytes = 1u << 20;
    f.o.retain_bytes = 2u << 20;
    f.o.trim_floor = 15000; /* segments holding clocks >= 15000 are needed */
    fx_write(&f);
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(f.d, &r, &e), 0);
    const struct log_seg_info *first = log_reader_segment(r, 0);
    CU_ASSERT_TRUE(first->id > 1); /* old segments went */
    CU_ASSERT_TRUE(first->first_clock > 0);
    uint64_t stored = 0;
    for (uint32_t i = 0; i < log_reader_nsegments(r); i++)
        stored += log_reader_segment(r, i)->stored_bytes;
    CU_ASSERT_TRUE(stored <= (4u << 20)); /* budget + the open segment + one group */
    uint64_t from = first->first_clock;
    log_reader_close(r);
    struct log_query q;
    log_query_all(&q);
    q.from_clock = from; /* what is left is a contiguous suffix */
    fx_check(&f, &q, NULL);
    verify_ok(f.d);
    tu_rmrf(f.d);

    f.o.trim_floor = 0; /* everything is still needed: nothing may go */
    fx_write(&f);
    CU_ASSERT_EQUAL_FATAL(log_reader_open(f.d, &r, &e), 0);
    CU_ASSERT_EQUAL(log_reader_segment(r, 0)->id, 1);
    log_reader_close(r);
    fx_done(&f);
}

static void test_reopen_clocks(void)
{
    struct fx f;
    fx_init(&f, 100, 4, 0, 0);
    struct rw_err e;
    /* A writer that dies without closing, after reserving clocks below 70000. */
    pid_t pid = fork();
    if (pid == 0) {
        struct log_writer *w;
        if (log_writer_open(f.d, &f.o, &w, &e) || log_writer_reserve(w, 70000, &e))
            _exit(1);
        for (size_t i = 0; i < f.g.n; i++)
            if (log_writer_append(w, &f.g.r[i], &e))
                _exit(1);
        if (log_writer_commit(w, &e))
            _exit(1);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE_FATAL(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct log_writer *w = open_w(f.d, &f.o);
    CU_ASSERT_EQUAL(log_writer_next_clock(w), 70000);
    CU_ASSERT_EQUAL(log_writer_durable(w), 70000);
    struct log_rec r = f.g.r[5];
    CU_ASSERT_EQUAL(log_writer_append(w, &r, &e), RW_EINVAL); /* below the next clock */
    r.meta.clock = 70000;
    CU_ASSERT_EQUAL(log_writer_append(w, &r, &e), RW_EINVAL); /* not reserved yet */
    CU_ASSERT_EQUAL(log_writer_reserve(w, 70000 + 65536, &e), 0);
    CU_ASSERT_EQUAL(log_writer_append(w, &r, &e), 0);
    CU_ASSERT_EQUAL(log_writer_append(w, &r, &e), RW_EINVAL); /* not increasing */
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
    CU_ASSERT_EQUAL(committed_packets(f.d), 101);
    verify_ok(f.d);
    fx_done(&f);
}

static void test_time_index(void)
{
    struct fx f;
    fx_init(&f, 20000, 50, 0, 0);
    fx_write(&f);
    struct log_query q;
    log_query_all(&q);
    q.since_ns = BASE_TS + 5000 * 1000ull;
    q.until_ns = BASE_TS + 6000 * 1000ull - 1;
    struct log_scan_stats st;
    fx_check(&f, &q, &st);
    CU_ASSERT_STRING_EQUAL(st.index, "time");
    CU_ASSERT_TRUE(st.blocks_read <= 3); /* 1000 packets: two or three blocks, not all */
    CU_ASSERT_TRUE(st.blocks_total >= 19);
    fx_done(&f);
}

static void test_time_index_unordered(void)
{
    struct fx f;
    fx_init(&f, 8000, 50, 0, 1); /* timestamps jump around */
    fx_write(&f);
    struct log_query q;
    log_query_all(&q);
    q.since_ns = BASE_TS + 2000 * 1000ull;
    q.until_ns = BASE_TS + 2500 * 1000ull;
    fx_check(&f, &q, NULL); /* still exact when the index cannot stop early */
    fx_done(&f);
}

/* q selects one flow, in both directions. */
static void flow_query(struct log_query *q, const char *flow)
{
    struct rw_err e;
    log_query_all(q);
    CU_ASSERT_EQUAL_FATAL(rw_flow_from_string(flow, &q->flow, &e), 0);
    q->has_flow = true;
}

/* Moves every flow of g onto one host pair (10.0.0.9 and 10.1.0.1), keeping its
 * ports and direction, so that only the ports tell the flows apart. */
static void one_host_pair(struct gen *g)
{
    for (size_t i = 0; i < g->n; i++) {
        uint8_t *p = g->bufs[i];
        uint8_t *client = p[27] == 0 ? p + 26 : p + 30; /* 10.0.x.y; the server is 10.1.0.1 */
        client[2] = 0, client[3] = 9;
    }
}

/* 20000 packets of 50 flows, and one rare flow in three blocks, once reversed. */
static void flow_index_case(bool one_pair, const char *flow)
{
    struct fx f;
    fx_init(&f, 20000, 50, 0, 0);
    uint64_t seed = 99;
    size_t rare[3] = {100, 9000, 19990}; /* flow 4000 appears three times, once reversed */
    for (int i = 0; i < 3; i++) {
        free(f.g.bufs[rare[i]]);
        f.g.bufs[rare[i]] = make_pkt(4000, i == 1, 80, 0, &seed);
        f.g.r[rare[i]].data = f.g.bufs[rare[i]];
        f.g.r[rare[i]].cap_len = f.g.r[rare[i]].orig_len = 80;
    }
    if (one_pair)
        one_host_pair(&f.g);
    fx_write(&f);
    struct log_query q;
    flow_query(&q, flow);
    struct log_scan_stats st;
    fx_check(&f, &q, &st);
    CU_ASSERT_STRING_EQUAL(st.index, "flow");
    CU_ASSERT_EQUAL(st.packets_matched, 3);
    /* three blocks hold it; a Bloom false positive may add a read, not a packet */
    CU_ASSERT_TRUE(st.blocks_read >= 3 && st.blocks_read <= 5);
    CU_ASSERT_TRUE(st.blocks_total >= 19);
    fx_done(&f);
}

static void test_flow_index(void)
{
    flow_index_case(false, "udp 10.0.15.160:5000 10.1.0.1:53");
}

/* Every block holds this host pair: a hash that lost the ports (issue 10: the
 * Release build's did) reads them all. */
static void test_flow_index_ports(void)
{
    flow_index_case(true, "udp 10.0.0.9:5000 10.1.0.1:53");
}

/* A write transaction on one table of segment 1, to leave it as damage or an
 * older build would: seg1_open, changes through s->txn and s->dbi, seg1_commit. */
struct seg1 {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
};

static void seg1_open(const char *dir, const char *table, struct seg1 *s)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/seg-00000001", dir);
    CU_ASSERT_EQUAL_FATAL(mdb_env_create(&s->env), 0);
    mdb_env_set_maxdbs(s->env, 8);
    CU_ASSERT_EQUAL_FATAL(mdb_env_open(s->env, path, 0, 0644), 0);
    CU_ASSERT_EQUAL_FATAL(mdb_txn_begin(s->env, NULL, 0, &s->txn), 0);
    CU_ASSERT_EQUAL_FATAL(mdb_dbi_open(s->txn, table, 0, &s->dbi), 0);
}

static void seg1_commit(struct seg1 *s)
{
    CU_ASSERT_EQUAL(mdb_txn_commit(s->txn), 0);
    mdb_env_close(s->env);
}

/* Sets the version byte of every flow filter of segment 1, as a build from before
 * flow hash version 2 would have written them. */
static void set_filter_version(const char *dir, uint8_t version)
{
    struct seg1 g;
    MDB_cursor *cur;
    MDB_val k, v;
    seg1_open(dir, "flow", &g);
    CU_ASSERT_EQUAL_FATAL(mdb_cursor_open(g.txn, g.dbi, &cur), 0);
    int n = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        uint8_t *b = malloc(v.mv_size);
        memcpy(b, v.mv_data, v.mv_size);
        b[0] = version;
        MDB_val nv = {v.mv_size, b};
        CU_ASSERT_EQUAL(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT), 0);
        free(b);
    }
    CU_ASSERT_TRUE(n > 0);
    mdb_cursor_close(cur);
    seg1_commit(&g);
}

/* A flow query on a log whose flow index this build cannot trust must fail with
 * the log and the version named, reading nothing. */
static void check_refused(const char *dir, const struct log_query *q, const char *why)
{
    struct log_reader *r;
    struct rw_err e;
    struct log_scan_stats st;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(dir, &r, &e), 0);
    struct log_scan_cbs cb = {0};
    CU_ASSERT_EQUAL(log_scan(r, q, &cb, &st, &e), RW_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, why));
    CU_ASSERT_EQUAL(st.blocks_read, 0);
    log_reader_close(r);
}

static void test_flow_hash_version(void)
{
    char *d = tu_mkdtemp("log");
    struct gen g, more;
    gen_make(&g, 3000, 0, 50, 0, 0);
    gen_make(&more, 100, 3000, 50, 0, 0);
    struct log_opts o;
    log_opts_default(&o);
    write_all(d, &o, &g);
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(d, &r, &e), 0);
    CU_ASSERT_EQUAL(log_reader_flow_hash(r), RW_FLOW_HASH_VERSION);
    log_reader_close(r);
    struct log_query q, all;
    flow_query(&q, "udp 10.0.0.7:1007 10.1.0.1:53");
    log_query_all(&all);
    check_query(d, &g, &q, NULL);

    /* A newer rewind's log: no flow query, no append of other filters into it. */
    CU_ASSERT_EQUAL_FATAL(it_set_flow_hash(d, 7), 0);
    check_refused(d, &q, "flow hash version 7, which this build does not know");
    check_query(d, &g, &all, NULL); /* what needs no flow filter still works */
    struct log_writer *w;
    CU_ASSERT_EQUAL(log_writer_open(d, &o, &w, &e), RW_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "version 7"));

    /* A log from before the record: refused, and appending leaves it unrecorded. */
    CU_ASSERT_EQUAL_FATAL(it_set_flow_hash(d, 0), 0);
    check_refused(d, &q, "no flow hash version recorded");
    write_all(d, &o, &more);
    CU_ASSERT_EQUAL_FATAL(log_reader_open(d, &r, &e), 0);
    CU_ASSERT_EQUAL(log_reader_flow_hash(r), 0);
    log_reader_close(r);
    check_refused(d, &q, "no flow hash version recorded");
    verify_ok(d);
    gen_free(&g);
    gen_free(&more);
    tu_rmrf(d);
    free(d);
}

/* Filters of the pre-version-2 hash inside a version 2 log (a build from before
 * the fix appended to it) are never trusted: their blocks are read. */
static void test_old_filters_are_read(void)
{
    struct fx f;
    fx_init(&f, 3000, 50, 0, 0);
    f.o.block_pkts = 100;
    fx_write(&f);
    struct log_query q;
    flow_query(&q, "udp 10.9.9.9:1 10.1.0.1:53"); /* a flow the log does not hold */
    struct log_scan_stats st;
    fx_check(&f, &q, &st);
    CU_ASSERT_TRUE(st.blocks_total >= 30);
    CU_ASSERT_TRUE(st.blocks_read <= 2);
    set_filter_version(f.d, 1);
    fx_check(&f, &q, &st);
    CU_ASSERT_EQUAL(st.blocks_read, st.blocks_total);
    verify_ok(f.d); /* the filters are intact, only not trusted */
    fx_done(&f);
}

static void test_compression_where_it_helps(void)
{
    char *d = tu_mkdtemp("log");
    struct gen g;
    struct log_opts o;
    log_opts_default(&o);
    struct log_reader *r;
    struct rw_err e;
    gen_make(&g, 4000, 0, 8, 0, 0); /* zero payloads: lz4 pays */
    write_all(d, &o, &g);
    CU_ASSERT_EQUAL_FATAL(log_reader_open(d, &r, &e), 0);
    CU_ASSERT_TRUE(log_reader_segment(r, 0)->stored_bytes * 4 <
                   log_reader_segment(r, 0)->raw_bytes);
    log_reader_close(r);
    gen_free(&g);
    tu_rmrf(d);
    gen_make(&g, 4000, 0, 8, 1, 0); /* random payloads: stored raw, not inflated */
    write_all(d, &o, &g);
    CU_ASSERT_EQUAL_FATAL(log_reader_open(d, &r, &e), 0);
    const struct log_seg_info *s = log_reader_segment(r, 0);
    CU_ASSERT_TRUE(s->stored_bytes <= s->raw_bytes + s->blocks * 64);
    log_reader_close(r);
    struct log_query q;
    log_query_all(&q);
    check_query(d, &g, &q, NULL);
    gen_free(&g);
    tu_rmrf(d);
    free(d);
}

/* Flips one byte of the file where `needle` occurs; returns 0 when found. */
static int flip_in_file(const char *path, const uint8_t *needle, size_t n)
{
    size_t len;
    char *buf = tu_slurp(path, &len);
    if (!buf)
        return -1;
    char *hit = memmem(buf, len, needle, n);
    int rc = -1;
    if (hit) {
        int fd = open(path, O_WRONLY);
        uint8_t b = (uint8_t)(hit[n / 2] ^ 0x5a);
        rc = pwrite(fd, &b, 1, (off_t)(hit - buf) + (off_t)n / 2) == 1 ? 0 : -1;
        close(fd);
    }
    free(buf);
    return rc;
}

struct problems {
    int n;
    uint32_t seg;
    uint64_t clock;
};

static void on_problem(void *ctx, uint32_t seg, uint64_t clock, const char *what)
{
    struct problems *p = ctx;
    (void)what;
    if (!p->n++) {
        p->seg = seg;
        p->clock = clock;
    }
}

static void on_damage(void *ctx, uint32_t seg, uint64_t clock, const char *why)
{
    (void)ctx, (void)seg, (void)clock, (void)why;
}

/* Rewrites segment 1's time-order bound ("late" in its info table): `late` ns,
 * and `delta` added to the blocks it covers (-1: as when a build without the
 * bound appended a block). */
static void set_late(const char *dir, uint64_t late, int64_t delta)
{
    struct seg1 g;
    MDB_val k = {4, "late"}, v;
    seg1_open(dir, "info", &g);
    CU_ASSERT_EQUAL_FATAL(mdb_get(g.txn, g.dbi, &k, &v), 0);
    CU_ASSERT_EQUAL_FATAL(v.mv_size, 16);
    uint8_t b[16];
    memcpy(b, v.mv_data, 16);
    uint64_t blocks = 0;
    for (int i = 7; i >= 0; i--)
        blocks = blocks << 8 | b[8 + i];
    blocks += (uint64_t)delta;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(late >> (8 * i)), b[8 + i] = (uint8_t)(blocks >> (8 * i));
    MDB_val nv = {16, b};
    CU_ASSERT_EQUAL(mdb_put(g.txn, g.dbi, &k, &nv, 0), 0);
    seg1_commit(&g);
}

/* One packet written 4.9 ms after its time: a window around its time ends its
 * scan by the segment's time-order bound, and still holds it. A bound that does
 * not cover every block (a build without it appended) is not used; one below
 * the blocks' (damage) is named by verify. */
static void test_time_index_late_packet(void)
{
    struct fx f;
    fx_init(&f, 8000, 50, 0, 0);
    f.g.r[5000].meta.ts_ns = BASE_TS + 100 * 1000ull;
    fx_write(&f);
    struct log_query q;
    log_query_all(&q);
    q.since_ns = BASE_TS + 50 * 1000ull;
    q.until_ns = BASE_TS + 150 * 1000ull;
    struct log_scan_stats st;
    fx_check(&f, &q, &st); /* record 5000 among them */
    CU_ASSERT_TRUE(st.blocks_read < st.blocks_total);
    verify_ok(f.d);
    /* stale: covers one block fewer than the segment has, so read to the end */
    set_late(f.d, 0, -1);
    fx_check(&f, &q, &st);
    CU_ASSERT_EQUAL(st.blocks_read, st.blocks_total);
    verify_ok(f.d);
    /* a bound of 0 over every block: verify says the time windows could miss */
    set_late(f.d, 0, 1);
    struct problems pr = {0};
    struct log_verify_cbs cb = {.problem = on_problem, .ctx = &pr};
    struct log_verify_stats vs;
    struct rw_err e;
    log_verify(f.d, &cb, &vs, &e);
    CU_ASSERT_EQUAL(pr.n, 1);
    fx_done(&f);
}

/* The bound survives a writer's restart: a segment reopened after packets in
 * order takes a late one and its windows stay exact, by time alone and with a
 * flow (the flow index stops at the same block). */
static void test_time_bound_reopened(void)
{
    struct fx f;
    fx_init(&f, 8000, 50, 0, 0);
    f.g.r[7000].meta.ts_ns = BASE_TS + 100 * 1000ull; /* flow 0, 10.0.0.0:1000 > 10.1.0.1:53 */
    struct log_writer *w = open_w(f.d, &f.o);
    struct rw_err e;
    for (size_t i = 0; i < 6000; i++)
        CU_ASSERT_EQUAL_FATAL(log_writer_append(w, &f.g.r[i], &e), 0);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
    w = open_w(f.d, &f.o);
    for (size_t i = 6000; i < f.g.n; i++)
        CU_ASSERT_EQUAL_FATAL(log_writer_append(w, &f.g.r[i], &e), 0);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
    struct log_query q;
    log_query_all(&q);
    q.since_ns = BASE_TS + 50 * 1000ull;
    q.until_ns = BASE_TS + 150 * 1000ull;
    struct log_scan_stats st;
    fx_check(&f, &q, &st);
    CU_ASSERT_EQUAL(st.packets_matched, 102); /* 50..150 and record 7000 */
    flow_query(&q, "udp 10.0.0.0:1000 10.1.0.1:53");
    q.since_ns = BASE_TS + 50 * 1000ull;
    q.until_ns = BASE_TS + 150 * 1000ull;
    fx_check(&f, &q, &st);
    CU_ASSERT_EQUAL(st.packets_matched, 4); /* 50, 100, 150 (both ways) and 7000 */
    /* flow 0 is in every block: the stop, not the flow index, spares the last */
    q.until_ns = BASE_TS + 90 * 1000ull;
    fx_check(&f, &q, &st);
    CU_ASSERT_EQUAL(st.packets_matched, 1);
    CU_ASSERT_TRUE(st.blocks_read < st.blocks_total);
    verify_ok(f.d);
    fx_done(&f);
}

/* Rewrites the key of segment 1's time entry for the block at clock c to a
 * running max of ts (as damage, or a writer bug, would). */
static void set_time_key(const char *dir, uint64_t c, uint64_t ts)
{
    struct seg1 g;
    MDB_cursor *cur;
    MDB_val k, v;
    seg1_open(dir, "time", &g);
    CU_ASSERT_EQUAL_FATAL(mdb_cursor_open(g.txn, g.dbi, &cur), 0);
    int found = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !found;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        found = rw_get_be64(v.mv_data) == c;
    CU_ASSERT_EQUAL_FATAL(found, 1);
    CU_ASSERT_EQUAL(mdb_cursor_get(cur, &k, &v, MDB_PREV), 0);
    CU_ASSERT_EQUAL(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
    uint8_t kb[16], vb[8];
    rw_put_be64(kb, ts);
    rw_put_be64(kb + 8, c);
    rw_put_be64(vb, c);
    MDB_val nk = {16, kb}, nv = {8, vb};
    CU_ASSERT_EQUAL(mdb_put(g.txn, g.dbi, &nk, &nv, 0), 0);
    seg1_commit(&g);
}

/* A time index entry whose running max is not the blocks' is named by verify:
 * too large, it would end a window's scan before packets in it. */
static void test_time_index_damaged_key(void)
{
    struct fx f;
    fx_init(&f, 8000, 50, 0, 0);
    fx_write(&f);
    verify_ok(f.d);
    struct rw_err e;
    set_time_key(f.d, 0, BASE_TS + 7999 * 1000ull); /* the first block "reaches" the end */
    struct problems pr = {0};
    struct log_verify_cbs cb = {.problem = on_problem, .ctx = &pr};
    struct log_verify_stats vs;
    log_verify(f.d, &cb, &vs, &e);
    CU_ASSERT_EQUAL(pr.n, 1);
    CU_ASSERT_EQUAL(pr.clock, 0);
    fx_done(&f);
}

/* ---- the keys index (host, net, port, protocol) ---- */

/* Blocks 0..3: 16 UDP packets each from 10.0.B.0..3 (ports 1000 + B*256 + 0..3) to
 * 10.1.0.1:53; block 4: one IPv4 packet cut inside its header (the index cannot
 * describe it); block 5: one ARP request from 10.7.7.7 for 10.7.7.8. */
static void keys_log(struct fx *f)
{
    fx_init(f, 0, 1, 0, 0);
    f->o.block_pkts = 16;
    free(f->g.r);
    free(f->g.bufs);
    f->g.r = calloc(96, sizeof(*f->g.r));
    f->g.bufs = calloc(96, sizeof(*f->g.bufs));
    uint64_t seed = 1;
    for (uint32_t b = 0; b < 4; b++)
        for (uint32_t i = 0; i < 16; i++) {
            size_t n = f->g.n++;
            f->g.bufs[n] = make_pkt(b * 256 + i % 4, 0, 64, 0, &seed);
            f->g.r[n] = (struct log_rec){.meta = {.clock = n, .ts_ns = BASE_TS + n * 1000},
                                         .orig_len = 64,
                                         .cap_len = 64,
                                         .data = f->g.bufs[n]};
        }
    uint8_t *cut = make_pkt(0, 0, 64, 0, &seed); /* 34 bytes of it are logged */
    cut[14] = 0x4f; /* IHL 15: a 60-byte header in a 20-byte frame remainder */
    cut[26] = 10, cut[27] = 9, cut[28] = 9, cut[29] = 9;
    uint8_t *arp = calloc(1, 60);
    arp[12] = 0x08, arp[13] = 0x06;
    memcpy(arp + 14, "\x00\x01\x08\x00\x06\x04\x00\x01", 8);
    memcpy(arp + 28, "\x0a\x07\x07\x07", 4);
    memcpy(arp + 38, "\x0a\x07\x07\x08", 4);
    uint8_t *extra[2] = {cut, arp};
    for (int i = 0; i < 2; i++) {
        size_t n = f->g.n++;
        f->g.bufs[n] = extra[i];
        uint32_t len = i ? 60 : 34;
        f->g.r[n] = (struct log_rec){.meta = {.clock = n + (i ? 16 : 0), .ts_ns = BASE_TS + n},
                                     .orig_len = len,
                                     .cap_len = len,
                                     .data = extra[i]};
        if (!i) /* the cut packet alone in block 4: the ARP one starts block 5 */
            for (int k = 0; k < 15; k++) {
                size_t m = f->g.n++;
                f->g.bufs[m] = make_pkt(9, 0, 64, 0, &seed);
                f->g.bufs[m][14] = 0x4f;
                f->g.r[m] = (struct log_rec){.meta = {.clock = m, .ts_ns = BASE_TS + m},
                                             .orig_len = 34,
                                             .cap_len = 34,
                                             .data = f->g.bufs[m]};
            }
    }
    write_all(f->d, &f->o, &f->g);
}

/* Scans f's log with the keys predicate of bpf; returns the blocks read. */
static uint64_t keys_scan_on(struct fx *f, const char *bpf, size_t *packets, const char *index,
                             uint64_t total)
{
    struct log_pred *p = NULL;
    CU_ASSERT_EQUAL_FATAL(log_pred_compile(bpf, &p), 0);
    if (!p)
        fprintf(stderr, "  '%s' was not understood\n", bpf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    struct log_query q;
    log_query_all(&q);
    q.keys = p;
    struct got got;
    struct log_scan_stats st;
    CU_ASSERT_EQUAL(scan(f->d, &q, &got, &st, NULL), 0);
    CU_ASSERT_STRING_EQUAL(st.index, index);
    CU_ASSERT_EQUAL(st.blocks_total, total);
    if (packets)
        *packets = got.n;
    got_free(&got);
    log_pred_free(p);
    return st.blocks_read;
}

static uint64_t keys_scan(struct fx *f, const char *bpf, size_t *packets)
{
    return keys_scan_on(f, bpf, packets, "keys", 6);
}

static void test_keys_index(void)
{
    struct fx f;
    keys_log(&f);
    size_t n;
    /* Block 4 (the cut packet) is read by every query: 1 block + it. */
    CU_ASSERT_EQUAL(keys_scan(&f, "host 10.0.2.1", &n), 2);
    CU_ASSERT_EQUAL(n, 32); /* both blocks' packets are visited; libpcap filters them */
    CU_ASSERT_EQUAL(keys_scan(&f, "src net 10.0.3.0/24", NULL), 2);
    CU_ASSERT_EQUAL(keys_scan(&f, "net 10.0.3 and udp", NULL), 2);
    CU_ASSERT_EQUAL(keys_scan(&f, "udp port 1514", NULL), 2);
    CU_ASSERT_EQUAL(keys_scan(&f, "portrange 1256-1259", NULL), 2);
    CU_ASSERT_EQUAL(keys_scan(&f, "host 10.0.1.1 or host 10.0.3.2", NULL), 3);
    CU_ASSERT_EQUAL(keys_scan(&f, "host 10.0.1.1 or 10.0.3.2", NULL), 3); /* pcap's bare id */
    CU_ASSERT_EQUAL(keys_scan(&f, "host 10.0.1.1 and port 1514", NULL), 1);
    CU_ASSERT_EQUAL(keys_scan(&f, "tcp", NULL), 1);
    CU_ASSERT_EQUAL(keys_scan(&f, "udp", NULL), 5);
    CU_ASSERT_EQUAL(keys_scan(&f, "not host 10.0.1.1", NULL), 6);
    CU_ASSERT_EQUAL(keys_scan(&f, "net 10.0.0.0/12", NULL), 6); /* as /8: the ARP block too */
    CU_ASSERT_EQUAL(keys_scan(&f, "net 10.0.0.0/16", NULL), 5);
    CU_ASSERT_EQUAL(keys_scan(&f, "dst host 10.1.0.1 && (port 53)", NULL), 5);
    /* ARP sender and target addresses are hosts, as libpcap's `host` reads them. */
    CU_ASSERT_EQUAL(keys_scan(&f, "host 10.7.7.8", NULL), 2);
    CU_ASSERT_EQUAL(keys_scan(&f, "arp", NULL), 2);
    fx_done(&f);
}

/* Packets whose keys lie off the common path, each alone in a block: UDP between
 * ports 0; UDP cut after 2 bytes of its header (source port 80); an ARP request cut
 * before its target address (sender 10.7.7.7); IPv6 whose fixed header is followed
 * by a fragment header, then destination options (60), then UDP. */
static void test_keys_edges(void)
{
    struct fx f;
    fx_init(&f, 0, 1, 0, 0);
    f.o.block_pkts = 1;
    free(f.g.r);
    free(f.g.bufs);
    f.g.r = calloc(8, sizeof(*f.g.r));
    f.g.bufs = calloc(8, sizeof(*f.g.bufs));
    uint64_t seed = 1;
    uint8_t *zero = make_pkt(0, 0, 64, 0, &seed);
    memcpy(zero + 26, "\x0a\x09\x00\x01\x0a\x09\x00\x02", 8);
    memset(zero + 34, 0, 4);
    uint8_t *cut = make_pkt(0, 0, 64, 0, &seed);
    cut[34] = 0, cut[35] = 80;
    uint8_t *arp = calloc(1, 64);
    arp[12] = 0x08, arp[13] = 0x06;
    memcpy(arp + 14, "\x00\x01\x08\x00\x06\x04\x00\x01", 8);
    memcpy(arp + 28, "\x0a\x07\x07\x07", 4);
    uint8_t *v6 = calloc(1, 128);
    v6[12] = 0x86, v6[13] = 0xdd, v6[14] = 0x60;
    v6[19] = 24, v6[20] = 44, v6[21] = 64;     /* payload 24: frag 8, dstopts 8, udp 8 */
    v6[37] = 1, v6[53] = 2;                    /* 2001::... addresses: ::1 and ::2 */
    v6[54] = 60;                               /* fragment header: next = dest opts, offset 0 */
    v6[62] = 17;                               /* destination options: next = UDP, 8 bytes */
    v6[70] = 0x13, v6[71] = 0x88, v6[73] = 53; /* UDP 5000 -> 53 */
    struct {
        uint8_t *p;
        uint32_t len;
    } pk[] = {{zero, 64}, {cut, 36}, {arp, 34}, {v6, 78}, {make_pkt(1, 0, 64, 0, &seed), 64}};
    for (size_t i = 0; i < 5; i++) {
        f.g.bufs[i] = pk[i].p;
        f.g.r[i] = (struct log_rec){.meta = {.clock = i, .ts_ns = BASE_TS + i},
                                    .orig_len = pk[i].len,
                                    .cap_len = pk[i].len,
                                    .data = pk[i].p};
        f.g.n++;
    }
    write_all(f.d, &f.o, &f.g);
    /* Blocks 1 and 2 (cut UDP, cut ARP) are read for every query. */
    CU_ASSERT_EQUAL(keys_scan_on(&f, "udp port 0", NULL, "keys", 5), 3);
    CU_ASSERT_EQUAL(keys_scan_on(&f, "host 10.7.7.7", NULL, "keys", 5), 2);
    CU_ASSERT_EQUAL(keys_scan_on(&f, "ip6 proto 60", NULL, "keys", 5), 3);
    CU_ASSERT_EQUAL(keys_scan_on(&f, "port 80 or (tcp port 22) or 53", NULL, "keys", 5), 4);
    CU_ASSERT_EQUAL(keys_scan_on(&f, "port 9 or ip proto 6 or 17", NULL, "keys", 5), 5);
    CU_ASSERT_EQUAL(keys_scan_on(&f, "tcp", NULL, "keys", 5), 2);
    fx_done(&f);
}

/* What the index can answer compiles; anything else reads every block. */
static void test_keys_pred_compile(void)
{
    static const char *understood[] = {"host 10.1.2.3",
                                       "src host 10.1.2.3",
                                       "dst or src host 10.1.2.3",
                                       "src or dst net 10.64.0.0/16",
                                       "ip host 10.1.2.3",
                                       "host 2001:db8::1",
                                       "ip6 net 2001:db8::/48",
                                       "net 10.0.0.0 mask 255.255.0.0",
                                       "net 10.64",
                                       "port 80 or 443",
                                       "tcp dst port 22",
                                       "portrange 6000-6063",
                                       "portrange 1-65535",
                                       "ip proto 47",
                                       "proto 17",
                                       "icmp or icmp6",
                                       "arp or rarp",
                                       "ip6 and not tcp",
                                       "!(host 10.1.2.3 || port 53) && udp",
                                       "sctp and ( host 10.0.0.1 or host 10.0.0.2 )"};
    static const char *not_understood[] = {"",
                                           "vlan and host 10.1.2.3",
                                           "tcp[13] & 2 != 0",
                                           "host gateway.example",
                                           "port http",
                                           "port 010",
                                           "ether host 00:11:22:33:44:55",
                                           "len > 100",
                                           "host 10.1.2.3 and greater 64",
                                           "net 10.0.0.0 mask 255.0.255.0",
                                           "ip proto \\tcp",
                                           "(host 10.1.2.3",
                                           "host 10.1.2.3 )",
                                           "mpls and port 80"};
    for (size_t i = 0; i < sizeof(understood) / sizeof(understood[0]); i++) {
        struct log_pred *p = NULL;
        CU_ASSERT_EQUAL(log_pred_compile(understood[i], &p), 0);
        if (!p)
            fprintf(stderr, "  not understood: '%s'\n", understood[i]);
        CU_ASSERT_PTR_NOT_NULL(p);
        log_pred_free(p);
    }
    for (size_t i = 0; i < sizeof(not_understood) / sizeof(not_understood[0]); i++) {
        struct log_pred *p = NULL;
        CU_ASSERT_EQUAL(log_pred_compile(not_understood[i], &p), 0);
        if (p)
            fprintf(stderr, "  understood but should not be: '%s'\n", not_understood[i]);
        CU_ASSERT_PTR_NULL(p);
        log_pred_free(p);
    }
}

/* A segment begun by a build without the keys index (its table dropped here) is
 * read whole by a keys query, and still verifies. */
static void test_keys_index_missing(void)
{
    struct fx f;
    keys_log(&f);
    struct seg1 g;
    seg1_open(f.d, "keys", &g);
    CU_ASSERT_EQUAL_FATAL(mdb_drop(g.txn, g.dbi, 1), 0);
    seg1_commit(&g);
    CU_ASSERT_EQUAL(keys_scan_on(&f, "host 10.0.2.1", NULL, "clock", 6), 6);
    struct log_verify_cbs cb = {0};
    struct log_verify_stats vs;
    struct rw_err e;
    CU_ASSERT_EQUAL(log_verify(f.d, &cb, &vs, &e), 0);
    fx_done(&f);
}

static void test_damaged_block(void)
{
    struct fx f;
    fx_init(&f, 5000, 16, 1, 0);
    fx_write(&f);
    char path[4096];
    snprintf(path, sizeof(path), "%s/seg-00000001/data.mdb", f.d);
    size_t k = 2500; /* somewhere in the third block */
    CU_ASSERT_EQUAL_FATAL(flip_in_file(path, f.g.r[k].data + 42, 16), 0);

    struct problems p = {0};
    struct log_verify_cbs cb = {.problem = on_problem, .ctx = &p};
    struct log_verify_stats vst;
    struct rw_err e;
    CU_ASSERT_EQUAL(log_verify(f.d, &cb, &vst, &e), RW_ECORRUPT);
    CU_ASSERT_TRUE(p.n >= 1);
    CU_ASSERT_EQUAL(p.seg, 1);
    CU_ASSERT_TRUE(p.clock <= k && k - p.clock < 1024); /* the first clock of k's block */

    struct log_query q;
    log_query_all(&q);
    struct got got;
    struct log_scan_stats st;
    CU_ASSERT_EQUAL(scan(f.d, &q, &got, &st, NULL), RW_ECORRUPT); /* no damage handler: fails */
    got_free(&got);
    CU_ASSERT_EQUAL(scan(f.d, &q, &got, &st, on_damage), 0); /* with one: skips the block */
    CU_ASSERT_EQUAL(st.blocks_damaged, 1);
    size_t missing = f.g.n - got.n; /* exactly the damaged block, every other record intact */
    CU_ASSERT_TRUE(missing > 0 && missing <= 1024 && k < p.clock + missing);
    size_t j = 0;
    for (size_t i = 0; i < f.g.n && j < got.n; i++) {
        if (i >= p.clock && i < p.clock + missing)
            continue;
        CU_ASSERT_TRUE(same_rec(&got.r[j], &f.g.r[i]));
        j++;
    }
    got_free(&got);
    fx_done(&f);
}

static void test_not_a_log(void)
{
    char *d = tu_mkdtemp("log");
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL(log_reader_open(d, &r, &e), RW_ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "not a rewind log"));
    tu_rmrf(d);
    free(d);
}

/* Two segments, the first sealed: what a lost manifest must not hide. */
static void write_two_segments(const char *d, struct gen *g)
{
    gen_make(g, 6000, 0, 16, 1, 0); /* ~1.5 MB of incompressible records */
    struct log_opts o;
    log_opts_default(&o);
    o.segment_bytes = 1u << 20;
    write_all(d, &o, g);
}

static void set_size(const char *path, off_t size)
{
    CU_ASSERT_EQUAL_FATAL(truncate(path, size), 0);
}

static void test_empty_manifest(void)
{
    char *d = tu_mkdtemp("log");
    struct gen g;
    write_two_segments(d, &g);
    char man[4096];
    snprintf(man, sizeof(man), "%s/manifest.mdb", d);
    set_size(man, 0);

    struct log_opts o;
    log_opts_default(&o);
    struct log_writer *w = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL(log_writer_open(d, &o, &w, &e), RW_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, man));
    struct stat st;
    CU_ASSERT_TRUE(!stat(man, &st) && st.st_size == 0); /* refused, nothing rewritten */
    struct log_reader *r;
    CU_ASSERT_EQUAL(log_reader_open(d, &r, &e), RW_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, man));
    CU_ASSERT_PTR_NULL(strstr(e.msg, "Bad file descriptor"));

    unlink(man); /* a missing manifest beside segments is no new log either */
    CU_ASSERT_EQUAL(log_writer_open(d, &o, &w, &e), RW_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "missing"));
    CU_ASSERT_NOT_EQUAL(access(man, F_OK), 0);
    gen_free(&g);
    tu_rmrf(d);
    free(d);
}

/* `rewind log verify` on a manifest LMDB cannot read: damage, named, exit 3. */
static void test_verify_damaged_manifest(void)
{
    char *d = tu_mkdtemp("log");
    struct gen g;
    write_two_segments(d, &g);
    char man[4096], out[4096], err[4096];
    snprintf(man, sizeof(man), "%s/manifest.mdb", d);
    snprintf(out, sizeof(out), "%s/verify", d);
    snprintf(err, sizeof(err), "%s/verify.stderr", d);
    size_t len;
    char *intact = tu_slurp(man, &len);
    CU_ASSERT_FATAL(intact && len > 8192);
    set_size(man, 4096); /* truncated to its first page */
    CU_ASSERT_EQUAL(tu_sh(out, "'%s' log verify '%s'", tu_bin(), d), 3);
    CU_ASSERT_EQUAL(it_file_has(err, "manifest.mdb"), 1);

    memset(intact, 0, 8192); /* both meta pages zeroed, size intact */
    int fd = open(man, O_WRONLY | O_TRUNC);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, intact, len), (ssize_t)len);
    close(fd);
    CU_ASSERT_EQUAL(tu_sh(out, "'%s' log verify '%s'", tu_bin(), d), 3);
    CU_ASSERT_EQUAL(it_file_has(err, "manifest.mdb"), 1);
    free(intact);
    gen_free(&g);
    tu_rmrf(d);
    free(d);
}

/* Replays DIR to DIR/out.pcapng; returns the exit code, *n the packets in it
 * (-1 when libpcap cannot read the file to its end). */
static int export_count(const char *d, long *n)
{
    char out[4096];
    snprintf(out, sizeof(out), "%s/out.pcapng", d);
    unlink(out);
    int rc = it_export(d, d, out, NULL);
    struct tu_pcap p = {0};
    *n = tu_pcap_read(out, &p) ? -1 : (long)p.n;
    tu_pcap_free(&p);
    return rc;
}

/* Replay skips what is damaged and exports the rest, whole packets only, with
 * exit 3 and the skipped segment named. */
static void test_replay_skips_segments(void)
{
    char *d = tu_mkdtemp("log");
    struct gen g;
    write_two_segments(d, &g);
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(d, &r, &e), 0);
    CU_ASSERT_EQUAL_FATAL(log_reader_nsegments(r), 2);
    long n1 = (long)log_reader_segment(r, 0)->packets, n2 = (long)log_reader_segment(r, 1)->packets;
    CU_ASSERT_TRUE_FATAL(log_reader_segment(r, 0)->sealed && n1 > 0 && n2 > 0);
    log_reader_close(r);
    char seg[2][4096], copy[4096], err[4096];
    for (int k = 0; k < 2; k++)
        snprintf(seg[k], sizeof(seg[k]), "%s/seg-%08d/data.mdb", d, k + 1);
    snprintf(copy, sizeof(copy), "%s/data.copy", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    long n;
    CU_ASSERT_EQUAL(export_count(d, &n), 0);
    CU_ASSERT_EQUAL(n, n1 + n2);

    struct stat st;
    for (int k = 0; k < 2; k++) { /* a truncated sealed segment, then the open one */
        CU_ASSERT_FATAL(!stat(seg[k], &st));
        CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "cp '%s' '%s'", seg[k], copy), 0);
        set_size(seg[k], st.st_size / 2);
        CU_ASSERT_EQUAL(export_count(d, &n), 3);
        CU_ASSERT_EQUAL(n, k ? n1 : n2);
        CU_ASSERT_TRUE(it_file_has(err, k ? "segment 2" : "segment 1") > 0);
        CU_ASSERT_TRUE(it_file_has(err, "truncated") > 0);
        CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "mv '%s' '%s'", copy, seg[k]), 0);
    }
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "rm -rf '%s/seg-00000001'", d), 0); /* a missing one */
    CU_ASSERT_EQUAL(export_count(d, &n), 3);
    CU_ASSERT_EQUAL(n, n2);
    CU_ASSERT_TRUE(it_file_has(err, "segment 1") > 0);
    gen_free(&g);
    tu_rmrf(d);
    free(d);
}

/* One writer per log: a second is refused naming the first; the lock dies with
 * its holder, however it dies. */
static void test_one_writer(void)
{
    char *d = tu_mkdtemp("log");
    char log[4096], trace[4096];
    snprintf(log, sizeof(log), "%s/log", d);
    struct log_opts o;
    log_opts_default(&o);
    struct log_writer *w = open_w(log, &o), *w2 = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL(log_writer_open(log, &o, &w2, &e), RW_EINVAL);
    char want[256];
    snprintf(want, sizeof(want), "being written by another rewind (pid %ld)", (long)getpid());
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, want));
    /* the command line says so too, with exit 2, not a raw MDB_KEYEXIST */
    CU_ASSERT_EQUAL(it_ingest(d, tu_trace("hping3.pcap", trace, sizeof(trace)), log, NULL), 2);
    char err[4096];
    snprintf(err, sizeof(err), "%s/ingest.stderr", d);
    CU_ASSERT_EQUAL(it_file_has(err, want), 1);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);

    int ready[2];
    CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct log_writer *cw;
        if (log_writer_open(log, &o, &cw, &e))
            _exit(1);
        (void)!write(ready[1], "x", 1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c;
    CU_ASSERT_EQUAL_FATAL(read(ready[0], &c, 1), 1); /* the child holds the log */
    close(ready[0]);
    CU_ASSERT_EQUAL(log_writer_open(log, &o, &w2, &e), RW_EINVAL);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    w2 = NULL;
    CU_ASSERT_EQUAL(log_writer_open(log, &o, &w2, &e), 0);
    if (w2)
        log_writer_close(w2, &e);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "records come back exactly as appended", test_round_trip);
    CU_add_test(s, "durable watermark moves only when a group commits",
                test_group_commit_watermark);
    CU_add_test(s, "segments rotate at their size and scans cross them", test_rotation);
    CU_add_test(s, "retention deletes oldest sealed segments, never needed ones", test_retention);
    CU_add_test(s, "after a crash the next clock is above the reservation", test_reopen_clocks);
    CU_add_test(s, "a time window reads only the blocks the time index names", test_time_index);
    CU_add_test(s, "time windows stay exact when timestamps are unordered",
                test_time_index_unordered);
    CU_add_test(s, "a packet written late is in its time window; a stale bound is not used",
                test_time_index_late_packet);
    CU_add_test(s, "a reopened segment keeps its time-order bound; flow windows stop too",
                test_time_bound_reopened);
    CU_add_test(s, "a time index entry off the blocks' running max is named by verify",
                test_time_index_damaged_key);
    CU_add_test(s, "a flow query reads only the blocks holding the flow", test_flow_index);
    CU_add_test(s, "flows of one host pair are told apart by their ports", test_flow_index_ports);
    CU_add_test(s, "a log records its flow hash version; flow queries refuse any other",
                test_flow_hash_version);
    CU_add_test(s, "filters of the pre-version-2 hash are read, never trusted",
                test_old_filters_are_read);
    CU_add_test(s, "lz4 is used where it helps and skipped where it does not",
                test_compression_where_it_helps);
    CU_add_test(s, "the keys index reads only blocks with the host, net, port or protocol",
                test_keys_index);
    CU_add_test(s, "filters the keys index cannot answer read every block", test_keys_pred_compile);
    CU_add_test(s, "port 0, cut headers, IPv6 fragment headers and pcap's qualifiers",
                test_keys_edges);
    CU_add_test(s, "a segment without a keys index is read whole", test_keys_index_missing);
    CU_add_test(s, "a damaged block is named by verify and skipped by scans", test_damaged_block);
    CU_add_test(s, "a directory without a manifest is not a log", test_not_a_log);
    CU_add_test(s, "an empty or missing manifest beside segments is refused, named",
                test_empty_manifest);
    CU_add_test(s, "log verify reports a damaged manifest: exit 3, named",
                test_verify_damaged_manifest);
    CU_add_test(s, "one writer per log: a second is refused, a killed one frees it",
                test_one_writer);
    CU_add_test(s, "replay skips damaged or missing segments and exports the rest",
                test_replay_skips_segments);
}

int main(void)
{
    return tu_main("log", add);
}
