/*
 * test_store_conf.c - the store's conformance suite. The same tests are built
 * once per backend (STORE_BACKEND is "mem", "lmdb" or "redis"), so the C engine
 * and the Redis Lua script are held to one behaviour: every op, emulation of
 * repeats, nondet, ownership, transfer, watermark, trim, batch atomicity, and
 * for the shared backends concurrent processes and a client killed mid-batch.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"
#include "testutil.h"

#ifndef STORE_BACKEND
#error "STORE_BACKEND must name the backend under test"
#endif

/* The backend under test, set up once for the whole run. */
static struct sfx fx;

static struct store_key mkkey(uint8_t scope, uint16_t obj, const char *s)
{
    struct store_key k = {scope, obj, s, strlen(s)};
    return k;
}

static struct store *fresh(void)
{
    struct store *st = NULL;
    CU_ASSERT_EQUAL_FATAL(sfx_fresh(&fx, &st), 0);
    return st;
}

#define OK(expr)       CU_ASSERT_EQUAL_FATAL((expr), STORE_OK)
#define ID(clock, seq) (&(struct store_opid){(clock), (seq)})

static struct store_client *client(struct store *st, uint32_t v, uint16_t slot)
{
    struct store_client *c = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL_FATAL(store_client_open(st, v, slot, &c, &e), STORE_OK);
    return c;
}

static int64_t geti(struct store_client *c, const struct store_key *k)
{
    int64_t v = -999;
    bool found;
    CU_ASSERT_EQUAL(store_get_int(c, NULL, k, &v, &found), STORE_OK);
    return v;
}

/* Reads a string value; returns "" when absent. */
static const char *gets(struct store_client *c, const struct store_key *k, char *buf, size_t cap)
{
    size_t len = 0;
    bool found = false;
    CU_ASSERT_EQUAL(store_get(c, NULL, k, buf, cap - 1, &len, &found), STORE_OK);
    buf[found ? len : 0] = 0;
    return buf;
}

static void test_ops(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 1, 0);
    struct store_key s = mkkey(STORE_SHARED, 1, "name"), n = mkkey(STORE_SHARED, 2, "ctr"),
                     l = mkkey(STORE_SHARED, 3, "ports");
    char buf[64];
    size_t len;
    bool found, sw;
    int64_t v;

    CU_ASSERT_STRING_EQUAL(gets(c, &s, buf, sizeof(buf)), "");
    OK(store_put(c, ID(1, 0), &s, "alpha", 5));
    CU_ASSERT_STRING_EQUAL(gets(c, &s, buf, sizeof(buf)), "alpha");
    OK(store_incr(c, ID(1, 1), &n, 5, &v));
    CU_ASSERT_EQUAL(v, 5);
    OK(store_decr(c, ID(1, 2), &n, 2, NULL));
    CU_ASSERT_EQUAL(geti(c, &n), 3);
    OK(store_push(c, ID(1, 3), &l, "p1", 2));
    OK(store_push(c, ID(1, 4), &l, "p2", 2));
    OK(store_pop(c, ID(1, 5), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && len == 2 && !memcmp(buf, "p1", 2));
    OK(store_pop(c, ID(1, 6), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && !memcmp(buf, "p2", 2));
    OK(store_pop(c, ID(1, 7), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(!found);
    OK(store_cas(c, ID(2, 0), &s, "beta", 4, "gamma", 5, &sw));
    CU_ASSERT(!sw);
    OK(store_cas(c, ID(2, 1), &s, "alpha", 5, "gamma", 5, &sw));
    CU_ASSERT(sw);
    CU_ASSERT_STRING_EQUAL(gets(c, &s, buf, sizeof(buf)), "gamma");
    struct store_key fresh_k = mkkey(STORE_SHARED, 1, "new");
    OK(store_cas(c, ID(2, 2), &fresh_k, NULL, 0, "x", 1, &sw));
    CU_ASSERT(sw);
    OK(store_del(c, ID(2, 3), &s));
    CU_ASSERT_STRING_EQUAL(gets(c, &s, buf, sizeof(buf)), "");
    /* A value larger than the buffer says how big it is. */
    CU_ASSERT_EQUAL(store_get(c, NULL, &fresh_k, buf, 0, &len, &found), STORE_ETOOBIG);
    CU_ASSERT_EQUAL(len, 1);
    store_client_close(c);
    store_close(st);
}

static void test_types_and_atomic_batch(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 1, 0);
    struct store_key s = mkkey(STORE_SHARED, 1, "str"), n = mkkey(STORE_SHARED, 2, "n");
    int64_t v;
    OK(store_put(c, ID(1, 0), &s, "x", 1));
    OK(store_flush(c));
    CU_ASSERT_EQUAL(store_incr(c, ID(2, 0), &s, 1, &v), STORE_ETYPE);
    CU_ASSERT(strlen(store_client_errmsg(c)) > 0);
    /* A batch whose third op is refused applies nothing. */
    OK(store_incr(c, ID(3, 0), &n, 1, NULL));
    OK(store_incr(c, ID(3, 1), &n, 1, NULL));
    OK(store_push(c, ID(3, 2), &s, "y", 1));
    CU_ASSERT_EQUAL(store_flush(c), STORE_ETYPE);
    CU_ASSERT_EQUAL(geti(c, &n), 0);
    /* The refused ops left no record: the same ids apply now. */
    OK(store_incr(c, ID(3, 0), &n, 1, &v));
    CU_ASSERT_EQUAL(v, 1);
    /* An op identity reused for another kind of op is a conflict, not a result. */
    CU_ASSERT_EQUAL(store_get_int(c, ID(3, 0), &n, &v, &(bool){0}), STORE_ECONFLICT);
    store_client_close(c);
    store_close(st);
}

static void test_emulation(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 2, 0);
    struct store_key s = mkkey(STORE_SHARED, 1, "s"), n = mkkey(STORE_SHARED, 2, "n"),
                     l = mkkey(STORE_SHARED, 3, "l"), d = mkkey(STORE_SHARED, 1, "d");
    char buf[64];
    size_t len;
    bool found, sw;
    int64_t v;

    /* put: a repeat of an older put does not overwrite a newer value. */
    OK(store_put(c, ID(1, 0), &s, "v1", 2));
    OK(store_put(c, ID(2, 0), &s, "v2", 2));
    OK(store_put(c, ID(1, 0), &s, "v1", 2));
    CU_ASSERT_STRING_EQUAL(gets(c, &s, buf, sizeof(buf)), "v2");
    /* incr: same result, no second effect (blind and sync). */
    OK(store_incr(c, ID(3, 0), &n, 3, &v));
    OK(store_incr(c, ID(3, 0), &n, 3, &v));
    CU_ASSERT_EQUAL(v, 3);
    OK(store_incr(c, ID(3, 1), &n, 10, NULL));
    OK(store_incr(c, ID(3, 1), &n, 10, NULL));
    CU_ASSERT_EQUAL(geti(c, &n), 13);
    /* push and pop. */
    OK(store_push(c, ID(4, 0), &l, "a", 1));
    OK(store_push(c, ID(4, 0), &l, "a", 1));
    OK(store_push(c, ID(4, 1), &l, "b", 1));
    OK(store_pop(c, ID(5, 0), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && buf[0] == 'a');
    OK(store_pop(c, ID(5, 0), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && len == 1 && buf[0] == 'a');
    OK(store_pop(c, ID(5, 1), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && buf[0] == 'b');
    OK(store_pop(c, ID(5, 2), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(!found);
    OK(store_pop(c, ID(5, 1), &l, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && buf[0] == 'b');
    /* cas: the recorded outcome, even after the value moved on. */
    OK(store_cas(c, ID(6, 0), &s, "v2", 2, "v3", 2, &sw));
    CU_ASSERT(sw);
    OK(store_put(c, ID(6, 1), &s, "v4", 2));
    OK(store_cas(c, ID(6, 0), &s, "v2", 2, "v3", 2, &sw));
    CU_ASSERT(sw);
    CU_ASSERT_STRING_EQUAL(gets(c, &s, buf, sizeof(buf)), "v4");
    /* del: a repeat does not delete what was put since. */
    OK(store_put(c, ID(7, 0), &d, "x", 1));
    OK(store_del(c, ID(7, 1), &d));
    OK(store_put(c, ID(7, 2), &d, "y", 1));
    OK(store_del(c, ID(7, 1), &d));
    CU_ASSERT_STRING_EQUAL(gets(c, &d, buf, sizeof(buf)), "y");
    /* Reads with an id return what the first read saw. */
    OK(store_get(c, ID(8, 0), &s, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && len == 2 && !memcmp(buf, "v4", 2));
    OK(store_get_int(c, ID(8, 1), &n, &v, &found));
    CU_ASSERT_EQUAL(v, 13);
    OK(store_put(c, ID(9, 0), &s, "v5", 2));
    OK(store_incr(c, ID(9, 1), &n, 1, NULL));
    OK(store_get(c, ID(8, 0), &s, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && !memcmp(buf, "v4", 2));
    OK(store_get_int(c, ID(8, 1), &n, &v, &found));
    CU_ASSERT_EQUAL(v, 13);
    CU_ASSERT_EQUAL(geti(c, &n), 14);
    /* Another instance of the slot (a clone) gets the same emulated results. */
    struct store_client *clone = client(st, 2, 0);
    OK(store_incr(clone, ID(3, 0), &n, 3, &v));
    CU_ASSERT_EQUAL(v, 3);
    CU_ASSERT_EQUAL(geti(clone, &n), 14);
    store_client_close(clone);
    store_client_close(c);
    store_close(st);
}

/*
 * Repeats of blind ops. Each blind op keeps its own record, so that these hold
 * whatever order the ops arrive in and whichever slot repeats them. A cheaper
 * rule (a per-slot high mark of the last applied (clock, seq), see
 * docs/store.md "Why blind ops keep one record each") fails the out-of-order and
 * the cross-slot cases below; the other two pin down what any rule must keep.
 */

/* Packet clk of a 3-op blind sequence: +1 on counters s0, s1, s2. */
static void blind_packet(struct store_client *c, uint64_t clk, int from_seq)
{
    static const char *names[3] = {"s0", "s1", "s2"};
    for (int s = from_seq; s < 3; s++) {
        struct store_key k = mkkey(STORE_SHARED, 1, names[s]);
        OK(store_incr(c, ID(clk, (uint32_t)s), &k, 1, NULL));
    }
}

static void expect_blind_counts(struct store_client *c, int64_t want)
{
    struct store_key s0 = mkkey(STORE_SHARED, 1, "s0"), s1 = mkkey(STORE_SHARED, 1, "s1"),
                     s2 = mkkey(STORE_SHARED, 1, "s2");
    CU_ASSERT_EQUAL(geti(c, &s0), want);
    CU_ASSERT_EQUAL(geti(c, &s1), want);
    CU_ASSERT_EQUAL(geti(c, &s2), want);
}

/* A worker with several input links takes packets in arrival order, not in
 * clock order: a late lower clock is a first application, not a repeat. */
static void test_blind_out_of_order(void)
{
    static const uint64_t clocks[] = {5, 9, 12, 3, 7, 11};
    struct store *st = fresh();
    struct store_client *c = client(st, 10, 0);
    OK(store_client_set_batch(c, 3));
    for (int round = 0; round < 2; round++) { /* the second round only repeats */
        for (size_t i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++)
            blind_packet(c, clocks[i], 0);
        OK(store_flush(c));
        expect_blind_counts(c, 6);
    }
    store_client_close(c);
    store_close(st);
}

/* A clone of the slot issues the same sequence (blind ops, and now and then a
 * sync one whose result it uses); the two interleave batch by batch, either one
 * ahead. Each op is applied once and both copies see the same results. */
static void clone_run(struct store_client *c, uint64_t from, uint64_t to, int64_t *seen)
{
    struct store_key m = mkkey(STORE_SHARED, 2, "m");
    for (uint64_t clk = from; clk <= to; clk++) {
        blind_packet(c, clk, 0);
        if (clk % 7 == 0) {
            int64_t v = 0;
            OK(store_incr(c, ID(clk, 3), &m, 1, &v));
            if (seen[clk / 7] == 0)
                seen[clk / 7] = v;
            CU_ASSERT_EQUAL(v, seen[clk / 7]);
        }
        OK(store_done(c, clk));
    }
}

static void test_blind_clone_interleaved(void)
{
    struct store *st = fresh();
    struct store_client *orig = client(st, 11, 2), *clone = client(st, 11, 2);
    struct store_key m = mkkey(STORE_SHARED, 2, "m");
    int64_t seen[8] = {0};
    uint64_t w = 0;
    OK(store_client_set_batch(orig, 5));
    OK(store_client_set_batch(clone, 4));
    clone_run(orig, 1, 10, seen);
    clone_run(clone, 1, 15, seen); /* catches up, then leads */
    clone_run(orig, 11, 20, seen);
    for (uint64_t clk = 16; clk <= 30; clk++) { /* packet by packet */
        clone_run(clone, clk, clk, seen);
        clone_run(orig, clk, clk, seen);
    }
    OK(store_flush(orig));
    OK(store_flush(clone));
    expect_blind_counts(orig, 30);
    CU_ASSERT_EQUAL(geti(orig, &m), 4);
    CU_ASSERT_EQUAL(seen[1] + seen[2] + seen[3] + seen[4], 1 + 2 + 3 + 4);
    OK(store_watermark(orig, 2, &w));
    CU_ASSERT_EQUAL(w, 30);
    store_client_close(clone);
    store_client_close(orig);
    store_close(st);
}

/* Failover: the instance died after a batch that held half of packet 7. The
 * replacement replays from the slot's watermark W = 6: packet 7's applied ops
 * are emulated, its missing one and the later packets applied. */
static void test_blind_replay_half_packet(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 12, 1), *next;
    uint64_t w = 0;
    OK(store_client_set_batch(c, 4)); /* batch 5 = packet 6's last two ops, packet 7's first two */
    for (uint64_t clk = 1; clk <= 6; clk++) {
        blind_packet(c, clk, 0);
        OK(store_done(c, clk));
    }
    struct store_key s0 = mkkey(STORE_SHARED, 1, "s0"), s1 = mkkey(STORE_SHARED, 1, "s1");
    OK(store_incr(c, ID(7, 0), &s0, 1, NULL));
    OK(store_incr(c, ID(7, 1), &s1, 1, NULL)); /* fills batch 5: sent */
    OK(store_flush(c));                        /* waits for it; nothing else queued */
    store_client_close(c);                     /* dies before packet 7's last op */
    next = client(st, 12, 1);
    OK(store_claim(next));
    OK(store_watermark(next, 1, &w));
    CU_ASSERT_EQUAL_FATAL(w, 6);
    CU_ASSERT_EQUAL(geti(next, &s0), 7);
    for (uint64_t clk = w + 1; clk <= 10; clk++) {
        blind_packet(next, clk, 0);
        OK(store_done(next, clk));
    }
    OK(store_flush(next));
    expect_blind_counts(next, 10);
    OK(store_watermark(next, 1, &w));
    CU_ASSERT_EQUAL(w, 10);
    store_client_close(next);
    store_close(st);
}

/* An op identity is the vertex's, not the slot's: a packet applied by slot 1
 * and repeated by slot 2 after a transfer (a replay routed by the new owner)
 * is emulated, though slot 2's own ops are at lower clocks. */
static void test_blind_repeat_other_slot(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 13, 1), *b = client(st, 13, 2), *admin = client(st, 13, 0);
    struct store_key x = mkkey(STORE_SHARED, 1, "x");
    OK(store_incr(a, ID(10, 0), &x, 1, NULL));
    OK(store_incr(a, ID(50, 0), &x, 1, NULL));
    OK(store_flush(a));
    OK(store_incr(b, ID(20, 0), &x, 1, NULL));
    OK(store_flush(b));
    OK(store_transfer(admin, 1, 2));
    OK(store_incr(b, ID(50, 0), &x, 1, NULL));
    OK(store_incr(b, ID(10, 0), &x, 1, NULL));
    OK(store_flush(b));
    CU_ASSERT_EQUAL(geti(b, &x), 3);
    store_client_close(admin);
    store_client_close(b);
    store_client_close(a);
    store_close(st);
}

struct gen {
    int calls;
    char val[16];
};

static int gen_fn(void *arg, void *buf, size_t cap, size_t *len)
{
    struct gen *g = arg;
    g->calls++;
    *len = strlen(g->val);
    if (*len > cap)
        return STORE_ETOOBIG;
    memcpy(buf, g->val, *len);
    return 0;
}

static void test_nondet(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 3, 0), *clone = client(st, 3, 0);
    struct gen g1 = {0, "port-4711"}, g2 = {0, "port-9"};
    char buf[32];
    size_t len;
    OK(store_nondet(c, ID(10, 0), gen_fn, &g1, buf, sizeof(buf), &len));
    CU_ASSERT(len == 9 && !memcmp(buf, "port-4711", 9));
    CU_ASSERT_EQUAL(g1.calls, 1);
    OK(store_nondet(c, ID(10, 0), gen_fn, &g1, buf, sizeof(buf), &len));
    CU_ASSERT_EQUAL(g1.calls, 1);
    OK(store_nondet(clone, ID(10, 0), gen_fn, &g2, buf, sizeof(buf), &len));
    CU_ASSERT(len == 9 && !memcmp(buf, "port-4711", 9));
    CU_ASSERT_EQUAL(g2.calls, 0);
    OK(store_nondet(clone, ID(10, 1), gen_fn, &g2, buf, sizeof(buf), &len));
    CU_ASSERT(len == 6 && g2.calls == 1);
    store_client_close(clone);
    store_client_close(c);
    store_close(st);
}

static void test_ownership(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 4, 1), *b = client(st, 4, 2);
    struct store_key f = mkkey(STORE_FLOW, 1, "flow-1"), sh = mkkey(STORE_SHARED, 2, "total");
    char buf[16];
    size_t len;
    bool found;
    int64_t v;
    OK(store_put(a, ID(1, 0), &f, "nat", 3));
    OK(store_incr(a, ID(1, 1), &sh, 1, NULL));
    OK(store_flush(a));
    CU_ASSERT_EQUAL(store_get(b, NULL, &f, buf, sizeof(buf), &len, &found), STORE_EOWNER);
    CU_ASSERT_EQUAL(store_put(b, ID(2, 0), &f, "x", 1), STORE_OK); /* queued */
    CU_ASSERT_EQUAL(store_flush(b), STORE_EOWNER);
    OK(store_incr(b, ID(2, 1), &sh, 1, &v));
    CU_ASSERT_EQUAL(v, 2);
    /* A per-flow move hands the object to b. */
    OK(store_move(a, ID(3, 0), &f, 2));
    CU_ASSERT_EQUAL(store_get(a, NULL, &f, buf, sizeof(buf), &len, &found), STORE_EOWNER);
    OK(store_get(b, NULL, &f, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && len == 3 && !memcmp(buf, "nat", 3));
    OK(store_put(b, ID(4, 0), &f, "nat2", 4));
    OK(store_flush(b));
    store_client_close(a);
    store_client_close(b);
    store_close(st);
}

/* A read refused for its key (another slot's object) is that read's answer: the
 * blind ops queued before it, from earlier packets, and W are applied anyway. */
static void test_refused_read_keeps_queue(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 5, 1), *b = client(st, 5, 2);
    struct store_key f = mkkey(STORE_FLOW, 1, "a's flow"), n = mkkey(STORE_SHARED, 2, "n"),
                     mine = mkkey(STORE_FLOW, 3, "b's flow");
    char buf[16];
    size_t len;
    bool found;
    uint64_t w = 0;
    OK(store_put(a, ID(1, 0), &f, "x", 1));
    OK(store_flush(a));
    OK(store_incr(b, ID(2, 0), &n, 5, NULL));
    OK(store_put(b, ID(2, 1), &mine, "y", 1));
    OK(store_done(b, 2));
    CU_ASSERT_EQUAL(store_get(b, ID(3, 0), &f, buf, sizeof(buf), &len, &found), STORE_EOWNER);
    CU_ASSERT_PTR_NOT_NULL(strstr(store_client_errmsg(b), "owned by slot 1"));
    CU_ASSERT_EQUAL(geti(b, &n), 5);
    CU_ASSERT_STRING_EQUAL(gets(b, &mine, buf, sizeof(buf)), "y");
    OK(store_watermark(b, 2, &w));
    CU_ASSERT_EQUAL(w, 2);
    store_client_close(a);
    store_client_close(b);
    store_close(st);
}

static void test_transfer_and_claim(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 5, 1), *b = client(st, 5, 2), *admin = client(st, 5, 0);
    struct store_key f1 = mkkey(STORE_FLOW, 1, "f1"), f2 = mkkey(STORE_FLOW, 1, "f2"),
                     sh = mkkey(STORE_SHARED, 2, "n");
    int64_t v;
    bool found;
    OK(store_incr(a, ID(1, 0), &f1, 7, NULL));
    OK(store_incr(a, ID(1, 1), &f2, 8, NULL));
    OK(store_flush(a));
    OK(store_transfer(admin, 1, 2));
    /* The old instance of slot 1 is fenced from everything, shared objects too. */
    CU_ASSERT_EQUAL(store_incr(a, ID(2, 0), &sh, 1, &v), STORE_EFENCED);
    OK(store_get_int(b, NULL, &f1, &v, &found));
    CU_ASSERT(found && v == 7);
    OK(store_incr(b, ID(2, 1), &f2, 1, &v));
    CU_ASSERT_EQUAL(v, 9);
    /* A newcomer on the emptied slot owns nothing any more. */
    struct store_client *a2 = client(st, 5, 1);
    CU_ASSERT_EQUAL(store_get_int(a2, NULL, &f1, &v, &found), STORE_EOWNER);
    OK(store_incr(a2, ID(3, 0), &sh, 1, &v));
    /* Transferring back revives slot 1 with everything of slot 2. */
    OK(store_transfer(admin, 2, 1));
    CU_ASSERT_EQUAL(store_get_int(b, NULL, &f1, &v, &found), STORE_EFENCED);
    OK(store_get_int(a2, NULL, &f1, &v, &found));
    CU_ASSERT(found && v == 7);
    CU_ASSERT_EQUAL(store_transfer(admin, 2, 3), STORE_EINVAL);
    /* claim: a replacement fences the instance it replaces; a clone does not. */
    struct store_client *clone = client(st, 5, 1), *spare = client(st, 5, 1);
    OK(store_incr(clone, ID(4, 0), &f1, 1, &v));
    OK(store_claim(spare));
    CU_ASSERT_EQUAL(store_incr(a2, ID(4, 1), &f1, 1, &v), STORE_EFENCED);
    CU_ASSERT_EQUAL(store_incr(clone, ID(4, 1), &f1, 1, &v), STORE_EFENCED);
    OK(store_incr(spare, ID(4, 0), &f1, 1, &v));
    CU_ASSERT_EQUAL(v, 8);
    store_client_close(clone);
    store_client_close(spare);
    store_client_close(a2);
    store_client_close(admin);
    store_client_close(a);
    store_client_close(b);
    store_close(st);
}

static void test_watermark_and_batches(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 6, 3), *obs = client(st, 6, 0);
    struct store_key n = mkkey(STORE_SHARED, 1, "n");
    uint64_t w = 99;
    OK(store_client_set_batch(c, 4));
    OK(store_watermark(obs, 3, &w));
    CU_ASSERT_EQUAL(w, 0);
    /* Queued ops are not applied before their batch is full or flushed. */
    OK(store_incr(c, ID(1, 0), &n, 1, NULL));
    OK(store_done(c, 1));
    CU_ASSERT_EQUAL(geti(obs, &n), 0);
    for (uint64_t clk = 2; clk <= 10; clk++) {
        OK(store_incr(c, ID(clk, 0), &n, 1, NULL));
        if (clk < 10)
            OK(store_done(c, clk));
    }
    /* Packet 10 is not done: its op is applied but the watermark stays at 9. */
    OK(store_flush(c));
    CU_ASSERT_EQUAL(geti(obs, &n), 10);
    OK(store_watermark(obs, 3, &w));
    CU_ASSERT_EQUAL(w, 9);
    OK(store_done(c, 10));
    OK(store_flush(c));
    OK(store_watermark(obs, 3, &w));
    CU_ASSERT_EQUAL(w, 10);
    /* A slower instance of the slot (a clone) does not pull it back. */
    struct store_client *clone = client(st, 6, 3);
    OK(store_done(clone, 4));
    OK(store_flush(clone));
    OK(store_watermark(obs, 3, &w));
    CU_ASSERT_EQUAL(w, 10);
    store_client_close(clone);
    store_client_close(c);
    store_client_close(obs);
    store_close(st);
}

static void test_trim(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 7, 0), *other = client(st, 8, 0);
    struct store_key n = mkkey(STORE_SHARED, 1, "n");
    int64_t v;
    for (uint64_t clk = 1; clk <= 10; clk++)
        OK(store_incr(c, ID(clk, 0), &n, 1, NULL));
    OK(store_incr(other, ID(3, 0), &n, 1, NULL));
    OK(store_flush(c));
    OK(store_flush(other));
    OK(store_trim(c, 6));
    CU_ASSERT_EQUAL(store_incr(c, ID(3, 0), &n, 1, &v), STORE_ETRIMMED);
    OK(store_incr(c, ID(8, 0), &n, 1, &v));
    CU_ASSERT_EQUAL(v, 8); /* the recorded result */
    OK(store_incr(c, ID(12, 0), &n, 1, &v));
    CU_ASSERT_EQUAL(v, 11);
    /* Another vertex keeps its records. */
    OK(store_incr(other, ID(3, 0), &n, 1, &v));
    CU_ASSERT_EQUAL(v, 1);
    /* Trimming past every record empties the record table. */
    OK(store_trim(c, 1000));
    CU_ASSERT_EQUAL(store_incr(c, ID(12, 0), &n, 1, &v), STORE_ETRIMMED);
    OK(store_incr(c, ID(1000, 0), &n, 1, &v));
    CU_ASSERT_EQUAL(v, 12);
    /* ... also when they are the last keys of the store (the highest vertex). */
    OK(store_flush(c));
    OK(store_trim(other, 1000));
    OK(store_trim(c, 2000));
    CU_ASSERT_EQUAL(store_incr(other, ID(3, 0), &n, 1, &v), STORE_ETRIMMED);
    store_client_close(other);
    store_client_close(c);
    store_close(st);
}

static void test_flow_cache(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 9, 1), *spare;
    struct store_key f = mkkey(STORE_FLOW, 1, "flow"), g = mkkey(STORE_FLOW, 1, "ctr");
    struct store_stats s0, s1;
    char buf[8];
    size_t len;
    bool found;
    int64_t v;
    OK(store_client_cache(c, 64));
    OK(store_put(c, ID(1, 0), &f, "A", 1));
    OK(store_incr(c, ID(1, 1), &g, 5, NULL));
    OK(store_flush(c));
    store_client_stats(c, &s0);
    OK(store_get(c, ID(2, 0), &f, buf, sizeof(buf), &len, &found)); /* known since the put */
    CU_ASSERT(found && len == 1 && buf[0] == 'A');
    OK(store_get_int(c, ID(2, 1), &g, &v, &found)); /* not known: asks the store */
    CU_ASSERT(found && v == 5);
    OK(store_incr(c, ID(2, 2), &g, 2, &v)); /* known now */
    CU_ASSERT_EQUAL(v, 7);
    store_client_stats(c, &s1);
    CU_ASSERT_EQUAL(s1.cache_hits - s0.cache_hits, 2);
    CU_ASSERT(s1.batches - s0.batches <= 1); /* the miss (LMDB, mem: a read-only view) */
    OK(store_flush(c));
    /* A replay from W = 1 sees what the first run saw: the increment from its
     * record, the read (not recorded) as of W, from the put's record of "B". */
    OK(store_put(c, ID(3, 0), &f, "B", 1));
    OK(store_incr(c, ID(3, 1), &g, 1, NULL));
    OK(store_flush(c));
    struct store_client *replay = client(st, 9, 1);
    OK(store_get(replay, ID(2, 0), &f, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && buf[0] == 'B'); /* without store_client_asof: the store now */
    store_client_close(replay);
    replay = client(st, 9, 1);
    OK(store_client_asof(replay, 2)); /* W = 1: the replay starts at clock 2 */
    OK(store_get(replay, ID(2, 0), &f, buf, sizeof(buf), &len, &found));
    CU_ASSERT(found && buf[0] == 'A');
    OK(store_incr(replay, ID(2, 2), &g, 2, &v));
    CU_ASSERT_EQUAL(v, 7);
    CU_ASSERT_EQUAL(geti(replay, &g), 8);
    /* Once fenced, the error empties the cache: nothing is answered locally. */
    spare = client(st, 9, 1);
    OK(store_claim(spare));
    OK(store_incr(c, ID(4, 0), &g, 1, &v));
    CU_ASSERT_EQUAL(store_flush(c), STORE_EFENCED);
    CU_ASSERT_EQUAL(store_get_int(c, ID(4, 1), &g, &v, &found), STORE_EFENCED);
    CU_ASSERT_EQUAL(geti(spare, &g), 8);
    store_client_close(spare);
    store_client_close(replay);
    store_client_close(c);
    store_close(st);
}

static void get_s(struct store_client *c, uint64_t clock, uint32_t seq, const struct store_key *k,
                  char *out, size_t cap, bool *found)
{
    size_t len = 0;
    OK(store_get(c, ID(clock, seq), k, out, cap - 1, &len, found));
    out[*found ? len : 0] = '\0';
}

/* A slot's reads of its own per-flow objects are not recorded; a replay from W
 * reads them as of W anyway: objects changed, deleted or created after W by the
 * first run, and also (an upstream NF re-run in a recovery, beside its live
 * worker) changed or deleted after the replay started. */
static void test_asof_reads(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 4, 2), *r;
    struct store_key f = mkkey(STORE_FLOW, 1, "f"), d = mkkey(STORE_FLOW, 1, "d"),
                     n = mkkey(STORE_FLOW, 1, "n"), h = mkkey(STORE_FLOW, 1, "h"),
                     d2 = mkkey(STORE_FLOW, 1, "d2"), i = mkkey(STORE_FLOW, 2, "i");
    char b[16];
    bool found;
    int64_t v;
    OK(store_put(c, ID(1, 0), &f, "A", 1));
    OK(store_put(c, ID(1, 1), &d, "D", 1));
    OK(store_put(c, ID(1, 2), &h, "H", 1));
    OK(store_put(c, ID(1, 3), &d2, "E", 1));
    OK(store_incr(c, ID(1, 4), &i, 10, NULL));
    OK(store_done(c, 1));
    OK(store_flush(c)); /* W = 1 */
    /* The first run goes on past W and dies (its last batch applied). */
    get_s(c, 2, 0, &n, b, sizeof(b), &found); /* absent: recorded */
    CU_ASSERT(!found);
    OK(store_put(c, ID(3, 0), &n, "N", 1));
    get_s(c, 4, 0, &d, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "D"));
    OK(store_del(c, ID(4, 1), &d));
    get_s(c, 5, 0, &f, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "A"));
    OK(store_put(c, ID(5, 1), &f, "B", 1));
    OK(store_incr(c, ID(5, 2), &i, 5, NULL));
    OK(store_get_int(c, ID(5, 3), &i, &v, &found));
    CU_ASSERT(found && v == 15);
    get_s(c, 6, 0, &h, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "H"));
    get_s(c, 6, 1, &d2, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "E"));
    OK(store_flush(c));
    r = client(st, 4, 2);
    OK(store_client_asof(r, 2)); /* W = 1 */
    /* Written after the overlay was gathered (the live worker beside a re-run). */
    OK(store_put(c, ID(7, 0), &h, "X", 1));
    OK(store_del(c, ID(8, 0), &d2));
    OK(store_flush(c));
    /* The replay, op for op. */
    get_s(r, 2, 0, &n, b, sizeof(b), &found);
    CU_ASSERT(!found); /* from the record: the store holds "N" now */
    OK(store_put(r, ID(3, 0), &n, "N", 1));
    get_s(r, 4, 0, &d, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "D")); /* deleted in the store */
    OK(store_del(r, ID(4, 1), &d));
    get_s(r, 5, 0, &f, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "A")); /* "B" in the store */
    OK(store_put(r, ID(5, 1), &f, "B", 1));
    OK(store_incr(r, ID(5, 2), &i, 5, NULL));
    OK(store_get_int(r, ID(5, 3), &i, &v, &found));
    CU_ASSERT(found && v == 15);
    get_s(r, 6, 0, &h, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "H")); /* "X" since the overlay was made */
    get_s(r, 6, 1, &d2, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "E")); /* deleted since */
    /* The replay changed nothing: every write was emulated. */
    OK(store_flush(r));
    CU_ASSERT_EQUAL(geti(c, &i), 15);
    store_client_close(r);
    store_client_close(c);
    store_close(st);
}

/* W = 0 may mean nothing is applied: a replay then starts at clock 0, and what
 * clock 0 wrote must not show before it writes it (it did once: a replacement
 * read clock 0's last value at clock 0's first read and took another path). */
static void test_asof_from_zero(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 5, 0), *r;
    struct store_key k = mkkey(STORE_FLOW, 1, "k");
    char b[8];
    bool found;
    get_s(c, 0, 0, &k, b, sizeof(b), &found);
    CU_ASSERT(!found);
    OK(store_put(c, ID(0, 1), &k, "a", 1));
    OK(store_put(c, ID(3, 0), &k, "b", 1));
    OK(store_flush(c));
    r = client(st, 5, 0);
    OK(store_client_asof(r, 0));
    get_s(r, 0, 0, &k, b, sizeof(b), &found);
    CU_ASSERT(!found); /* as of clock 1 it would be "a", mine */
    OK(store_put(r, ID(0, 1), &k, "a", 1));
    get_s(r, 1, 0, &k, b, sizeof(b), &found);
    CU_ASSERT(found && !strcmp(b, "a")); /* "b" in the store */
    store_client_close(r);
    store_client_close(c);
    store_close(st);
}

/* A per-flow key read as absent is not cached: absence is no ownership, and
 * another slot may create the object (a lookup across flows, like the connection
 * an ICMP error quotes). The next read asks the store and is refused, and the
 * client's queue is applied without it. */
static void test_flow_cache_absent(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 9, 1), *b = client(st, 9, 2);
    struct store_key f = mkkey(STORE_FLOW, 1, "quoted"), mine = mkkey(STORE_FLOW, 2, "mine");
    char buf[8];
    size_t len;
    bool found = true;
    OK(store_client_cache(b, 64));
    OK(store_get(b, ID(1, 0), &f, buf, sizeof(buf), &len, &found));
    CU_ASSERT_FALSE(found);
    OK(store_put(a, ID(2, 0), &f, "A", 1));
    OK(store_flush(a));
    OK(store_put(b, ID(3, 0), &mine, "m", 1));
    CU_ASSERT_EQUAL(store_get(b, ID(3, 1), &f, buf, sizeof(buf), &len, &found), STORE_EOWNER);
    OK(store_flush(b));
    CU_ASSERT_STRING_EQUAL(gets(b, &mine, buf, sizeof(buf)), "m");
    store_client_close(a);
    store_client_close(b);
    store_close(st);
}

/* Nor after the client's own delete: the key may be created by another slot next. */
static void test_flow_cache_deleted(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 10, 1), *b = client(st, 10, 2);
    struct store_key f = mkkey(STORE_FLOW, 1, "port 7");
    char buf[8];
    size_t len;
    bool found;
    OK(store_client_cache(b, 64));
    OK(store_put(b, ID(1, 0), &f, "b", 1));
    OK(store_del(b, ID(2, 0), &f));
    OK(store_flush(b));
    OK(store_put(a, ID(3, 0), &f, "a", 1));
    OK(store_flush(a));
    CU_ASSERT_EQUAL(store_get(b, ID(4, 0), &f, buf, sizeof(buf), &len, &found), STORE_EOWNER);
    OK(store_flush(b));
    store_client_close(a);
    store_client_close(b);
    store_close(st);
}

/* A read whose batch holds an earlier op that is refused does not get that
 * refusal as its own answer (a caller may take EOWNER for "not mine"): the
 * earlier op's batch is lost, and the read says so. */
static void test_refusal_not_mine(void)
{
    struct store *st = fresh();
    struct store_client *a = client(st, 11, 1), *b = client(st, 11, 2);
    struct store_key f = mkkey(STORE_FLOW, 1, "a's"), g = mkkey(STORE_FLOW, 1, "b's");
    char buf[8];
    size_t len;
    bool found;
    OK(store_put(a, ID(1, 0), &f, "a", 1));
    OK(store_flush(a));
    OK(store_put(b, ID(2, 0), &f, "x", 1)); /* queued: will be refused */
    /* Sent with the read (Redis): the read says its batch is lost; read from a
     * view (LMDB, mem): it answers, and the put's refusal comes with the next
     * batch. Never EOWNER as the read's own answer. */
    int rc = store_get(b, ID(3, 0), &g, buf, sizeof(buf), &len, &found);
    CU_ASSERT(rc == STORE_EREFUSED || (rc == STORE_OK && !found));
    if (rc == STORE_OK)
        CU_ASSERT_NOT_EQUAL(store_flush(b), STORE_OK);
    store_client_close(a);
    store_client_close(b);
    store_close(st);
}

static void test_bad_url(void)
{
    struct store *st = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL(store_open("ftp://x", &st, &e), STORE_EURL);
    CU_ASSERT(strstr(e.msg, "ftp://x") != NULL);
    CU_ASSERT_EQUAL(store_open("lmdb:", &st, &e), STORE_EURL);
    CU_ASSERT_EQUAL(store_open("lmdb:/tmp/x?mapp=3", &st, &e), STORE_EURL);
    CU_ASSERT_EQUAL(store_open("redis://", &st, &e), STORE_EURL);
    CU_ASSERT_EQUAL(store_open("redis://127.0.0.1:notaport", &st, &e), STORE_EURL);
    CU_ASSERT_EQUAL(store_open("mem:junk", &st, &e), STORE_EURL);
    CU_ASSERT_EQUAL(store_open("redis://a:1,b:2", &st, &e), STORE_EURL);
    CU_ASSERT_EQUAL(store_open("redis://h:1/x", &st, &e), STORE_EURL);
}

/* What store_scan shows, one line per object or list element. */
struct scan_seen {
    char text[2048];
    size_t n;
    int stop_after; /* nonzero: return 7 once this many were seen */
};

static int scan_line(void *arg, const struct store_obj *o)
{
    struct scan_seen *s = arg;
    size_t at = strlen(s->text);
    snprintf(s->text + at, sizeof(s->text) - at, "%u/%u/%.*s:%c", o->scope, o->object, (int)o->klen,
             (const char *)o->key, o->type);
    at = strlen(s->text);
    if (o->type == STORE_T_INT)
        snprintf(s->text + at, sizeof(s->text) - at, "=%lld;", (long long)o->i);
    else if (o->type == STORE_T_LIST)
        snprintf(s->text + at, sizeof(s->text) - at, "[%llu/%llu]=%.*s;",
                 (unsigned long long)o->elem, (unsigned long long)o->nelem, (int)o->len,
                 (const char *)o->val);
    else
        snprintf(s->text + at, sizeof(s->text) - at, "=%.*s;", (int)o->len, (const char *)o->val);
    return ++s->n == (size_t)s->stop_after ? 7 : 0;
}

/* store_scan lists the live objects of the client's vertex, whoever owns them,
 * from one view: not other vertices', not deleted ones, not op records,
 * watermarks or slot entries (all of which exist by now). */
static void test_scan(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 30, 0), *c1 = client(st, 30, 1), *other = client(st, 31, 0);
    struct store_key s = mkkey(STORE_SHARED, 2, "str"), n = mkkey(STORE_SHARED, 1, "n"),
                     l = mkkey(STORE_SHARED, 3, "l"), e = mkkey(STORE_SHARED, 3, "empty"),
                     f = mkkey(STORE_FLOW, 1, "flow"), gone = mkkey(STORE_SHARED, 2, "gone");
    char buf[8];
    size_t len;
    bool found;
    OK(store_put(c, ID(1, 0), &s, "v", 1));
    OK(store_incr(c, ID(1, 1), &n, 5, NULL));
    OK(store_push(c, ID(1, 2), &l, "a", 1));
    OK(store_push(c, ID(1, 3), &l, "b", 1));
    OK(store_push(c, ID(1, 4), &l, "c", 1));
    OK(store_pop(c, ID(1, 5), &l, buf, sizeof(buf), &len, &found));
    OK(store_push(c, ID(1, 6), &e, "x", 1));
    OK(store_pop(c, ID(1, 7), &e, buf, sizeof(buf), &len, &found));
    OK(store_put(c, ID(1, 8), &gone, "g", 1));
    OK(store_del(c, ID(1, 9), &gone));
    OK(store_done(c, 1));
    OK(store_flush(c));
    OK(store_put(c1, ID(2, 0), &f, "mine", 4)); /* slot 1's per-flow object */
    OK(store_flush(c1));
    OK(store_put(other, ID(1, 0), &s, "other vertex", 12));
    OK(store_flush(other));
    /* Ops still queued are not shown until flushed. */
    OK(store_incr(c, ID(3, 0), &n, 1, NULL));
    struct scan_seen seen = {{0}, 0, 0};
    OK(store_scan(c, scan_line, &seen));
#ifdef STORE_BACKEND_REDIS
    /* Redis shows them in its keys' byte order (rw:{vN}:d:SCOPE:OBJECT:KEY). */
    CU_ASSERT_STRING_EQUAL(seen.text, "0/1/n:i=5;0/2/str:s=v;0/3/empty:l[0/0]=;0/3/l:l[0/2]=b;"
                                      "0/3/l:l[1/2]=c;1/1/flow:s=mine;");
#else
    CU_ASSERT_STRING_EQUAL(seen.text, "0/1/n:i=5;0/2/str:s=v;0/3/l:l[0/2]=b;0/3/l:l[1/2]=c;"
                                      "0/3/empty:l[0/0]=;1/1/flow:s=mine;");
#endif
    /* The callback's nonzero return stops the scan and is its answer. */
    struct scan_seen some = {{0}, 0, 2};
    CU_ASSERT_EQUAL(store_scan(c, scan_line, &some), 7);
    CU_ASSERT_EQUAL(some.n, 2);
    CU_ASSERT_EQUAL(store_scan(c, NULL, NULL), STORE_EINVAL);
    /* A vertex with nothing stored: no calls. */
    struct store_client *empty = client(st, 32, 0);
    struct scan_seen none = {{0}, 0, 0};
    OK(store_scan(empty, scan_line, &none));
    CU_ASSERT_EQUAL(none.n, 0);
    store_client_close(empty);
    store_client_close(other);
    store_client_close(c1);
    store_client_close(c);
    store_close(st);
}

static void flushed_now(void *arg, int rc)
{
    *(int *)arg = rc + 1000;
}

/* uv mode is Redis's; elsewhere store_flush_async is a flush and a call. */
static void test_flush_async(void)
{
    struct store *st = fresh();
    struct store_client *c = client(st, 26, 0);
    struct store_key n = mkkey(STORE_SHARED, 1, "n");
    int got = 0;
    OK(store_incr(c, ID(1, 0), &n, 3, NULL));
#ifndef STORE_BACKEND_REDIS
    CU_ASSERT_EQUAL(store_client_uv(c, (struct uv_loop_s *)&got), STORE_EINVAL);
    OK(store_flush_async(c, flushed_now, &got));
    CU_ASSERT_EQUAL(got, 1000);
#else
    CU_ASSERT_EQUAL(store_flush_async(c, flushed_now, &got), STORE_EINVAL);
    OK(store_flush(c));
#endif
    CU_ASSERT_EQUAL(geti(c, &n), 3);
    store_client_close(c);
    store_close(st);
}

#include "test_store_shared.inc"

static void add(CU_pSuite s)
{
    CU_add_test(s, "ops", test_ops);
    CU_add_test(s, "types and atomic batch", test_types_and_atomic_batch);
    CU_add_test(s, "emulation of repeats", test_emulation);
    CU_add_test(s, "blind ops out of clock order", test_blind_out_of_order);
    CU_add_test(s, "blind ops: clone interleaved", test_blind_clone_interleaved);
    CU_add_test(s, "blind ops: replay of a half packet", test_blind_replay_half_packet);
    CU_add_test(s, "blind ops: repeat from another slot", test_blind_repeat_other_slot);
    CU_add_test(s, "nondet recorded once", test_nondet);
    CU_add_test(s, "ownership and moves", test_ownership);
    CU_add_test(s, "a refused read keeps the queue", test_refused_read_keeps_queue);
    CU_add_test(s, "transfer and claim", test_transfer_and_claim);
    CU_add_test(s, "watermark and batches", test_watermark_and_batches);
    CU_add_test(s, "trim", test_trim);
    CU_add_test(s, "per-flow cache", test_flow_cache);
    CU_add_test(s, "per-flow cache: absence is not cached", test_flow_cache_absent);
    CU_add_test(s, "per-flow cache: nor after a delete", test_flow_cache_deleted);
    CU_add_test(s, "reads as of a watermark", test_asof_reads);
    CU_add_test(s, "reads as of clock 0", test_asof_from_zero);
    CU_add_test(s, "a refusal of an earlier op is not a read's answer", test_refusal_not_mine);
    CU_add_test(s, "bad URLs", test_bad_url);
    CU_add_test(s, "flush_async without a loop", test_flush_async);
    CU_add_test(s, "scan: the vertex's live objects only", test_scan);
    add_shared(s);
}

int main(void)
{
    if (tu_listing()) /* the names only: no backend to start */
        return tu_main("store-" STORE_BACKEND, add);
    if (sfx_start(&fx, STORE_BACKEND)) {
        fprintf(stderr, "cannot set up the %s backend\n", STORE_BACKEND);
        sfx_stop(&fx);
        return 1;
    }
    int rc = tu_main("store-" STORE_BACKEND, add);
    sfx_stop(&fx);
    return rc;
}
