/*
 * test_worker.c - the worker runtime against a real store (LMDB), with the
 * firewall NF: the slot's store watermark W never passes an input that is still
 * waiting on another link (inputs are in clock order per link, not across
 * links), and two packets with one clock (an upstream NF's two outputs for one
 * input) issue distinct op identities, so neither is mistaken for a repeat.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chain.h"
#include "nfs.h"
#include "nfworker.h"
#include "store.h"
#include "testutil.h"

/* A UDP packet from 10.0.0.HOST:99 to 10.1.0.1:53. */
static void send_udp(struct link *l, uint64_t clock, uint16_t sub, uint8_t host)
{
    struct link_pkt *p = link_alloc(l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memset(&p->meta, 0, sizeof(p->meta));
    memset(p->data, 0, 64);
    p->meta.clock = clock;
    p->meta.sub = sub;
    p->meta.ts_ns = 1000000 + clock;
    p->len = p->wire_len = 64;
    p->data[12] = 0x08, p->data[14] = 0x45, p->data[23] = 17;
    uint8_t a[4] = {10, 0, 0, host}, b[4] = {10, 1, 0, 1};
    memcpy(p->data + 26, a, 4);
    memcpy(p->data + 30, b, 4);
    p->data[35] = 99, p->data[37] = 53;
    link_send(l, p);
}

/* Waits until the worker has passed mark m on: it has processed every input
 * below m, and flushed W to the store before forwarding the mark. */
static void wait_mark(struct worker_status *st, uint64_t m)
{
    for (int i = 0; i < 30000 && atomic_load(&st->mark) < m; i++)
        usleep(1000);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&st->mark), m);
}

/* Drains a link; the highest mark on it (0: none). */
static uint64_t out_mark(struct link *l)
{
    uint64_t m = 0;
    struct link_pkt *p;
    while ((p = link_recv(l))) {
        if ((p->meta.flags & RW_F_MARK) && p->meta.clock > m)
            m = p->meta.clock;
        link_release(l, p);
    }
    return m;
}

static uint64_t watermark(const char *url)
{
    struct store *s;
    struct store_client *c;
    struct rw_err e;
    uint64_t w = UINT64_MAX;
    if (store_open(url, &s, &e) == 0) {
        if (store_client_open(s, 1, 0, &c, &e) == 0) {
            if (store_watermark(c, 0, &w))
                w = UINT64_MAX;
            store_client_close(c);
        }
        store_close(s);
    }
    return w;
}

/* Whether the firewall's connection entry for 10.0.0.HOST:99 <-> 10.1.0.1:53 is
 * in the store (key layout of nf_firewall.c: family, proto, lower endpoint,
 * higher endpoint, ports). */
static bool conn_stored(const char *url, uint8_t host)
{
    uint8_t k[38] = {4, 17, 10, 0, 0, host};
    k[18] = 10, k[19] = 1, k[20] = 0, k[21] = 1;
    k[35] = 99, k[37] = 53;
    struct store *s;
    struct store_client *c;
    struct rw_err e;
    bool found = false;
    uint8_t v[64];
    size_t len;
    struct store_key key = {.scope = STORE_FLOW, .object = 1, .bytes = k, .len = sizeof(k)};
    if (store_open(url, &s, &e) == 0) {
        if (store_client_open(s, 1, 0, &c, &e) == 0) {
            if (store_get(c, NULL, &key, v, sizeof(v), &len, &found))
                found = false;
            store_client_close(c);
        }
        store_close(s);
    }
    return found;
}

static void test_watermark_and_identities(void)
{
    char *d = tu_mkdtemp("worker");
    char url[4200];
    snprintf(url, sizeof(url), "lmdb:%s/store", d);
    struct link_opts lo = {.slots = 64, .data_room = 256};
    struct link *in[2], *out[1];
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("i0", &lo, &in[0], &e), 0);
    CU_ASSERT_EQUAL_FATAL(link_create("i1", &lo, &in[1], &e), 0);
    CU_ASSERT_EQUAL_FATAL(link_create("o", &lo, &out[0], &e), 0);
    struct worker_status *st =
        mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(st, 0, sizeof(*st));
    static const char yaml[] = "nfs:\n  - {name: fw, type: firewall, config: {default: allow}}\n";
    struct chain *ch;
    CU_ASSERT_EQUAL_FATAL(chain_parse(yaml, sizeof(yaml) - 1, "t.yaml", nf_types(), &ch, &e), 0);
    pid_t pid = fork();
    if (pid == 0) { /* the worker: a firewall that lets new flows in */
        struct link_edge wo = {.links = out, .n = 1, .fs = RW_FS_5TUPLE};
        struct worker_opts o = {.def = nf_find("firewall"),
                                .config = ch->nfs[0].config,
                                .nf_name = "fw",
                                .vertex = 1,
                                .ft = true,
                                .store_url = url,
                                .in = in,
                                .nin = 2,
                                .out = &wo,
                                .nout = 1,
                                .status = st};
        _exit(worker_run(&o, &e) ? 1 : 0);
    }
    send_udp(in[0], 10, 0, 10);
    send_udp(in[0], 12, 0, 12);
    link_send_mark(in[0], 13, NULL);
    link_send_mark(in[1], 3, NULL); /* link 1 may still bring clocks from 3 on */
    wait_mark(st, 3);
    CU_ASSERT_EQUAL(watermark(url), 2);            /* not 12: clock 3 is still to come on link 1 */
    CU_ASSERT_EQUAL(out_mark(out[0]), 3);          /* and downstream hears no mark above link 1's */
    CU_ASSERT_EQUAL(atomic_load(&st->pkts_in), 0); /* 10 and 12 wait for link 1 */
    send_udp(in[1], 3, 0, 3);
    send_udp(in[1], 3, 1, 4); /* two packets of one clock, two flows */
    link_send_mark(in[1], 13, NULL);
    wait_mark(st, 13);
    CU_ASSERT_EQUAL(atomic_load(&st->pkts_in), 4);
    link_send_mark(in[0], UINT64_MAX, NULL);
    link_send_mark(in[1], UINT64_MAX, NULL);
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(watermark(url), 12); /* W goes with a batch: here the final flush */
    CU_ASSERT_TRUE(conn_stored(url, 3));
    CU_ASSERT_TRUE(conn_stored(url, 4)); /* (3,1)'s write was applied, not emulated */
    CU_ASSERT_TRUE(conn_stored(url, 12));
    CU_ASSERT_FALSE(conn_stored(url, 99)); /* and the check can say no */
    chain_free(ch);
    for (int i = 0; i < 2; i++)
        link_close(in[i]);
    link_close(out[0]);
    munmap(st, sizeof(*st));
    tu_rmrf(d);
    free(d);
}

/* A test NF that records the clocks it is given, in order, in shared memory. */
struct order_log {
    _Atomic uint32_t n;
    uint64_t clocks[64];
};

static struct order_log *order_log; /* this test's shared page (set before fork) */

static int rec_init(void *self, const struct chain_node *cfg, struct rw_err *e)
{
    (void)self, (void)cfg, (void)e;
    return 0;
}

static int rec_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    (void)self, (void)env;
    uint32_t i = atomic_fetch_add(&order_log->n, 1);
    if (i < 64)
        order_log->clocks[i] = p->meta.clock;
    return 0;
}

/* Runs a recorder over two links fed out of clock order across them (each link
 * in order, as producers send). */
static void run_recorder(void)
{
    const struct nf_def def = {.type = "recorder", .init = rec_init, .process = rec_process};
    struct link_opts lo = {.slots = 64, .data_room = 256};
    struct link *in[2], *out[1];
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("r0", &lo, &in[0], &e), 0);
    CU_ASSERT_EQUAL_FATAL(link_create("r1", &lo, &in[1], &e), 0);
    CU_ASSERT_EQUAL_FATAL(link_create("ro", &lo, &out[0], &e), 0);
    struct worker_status *st =
        mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(st, 0, sizeof(*st));
    memset(order_log, 0, sizeof(*order_log));
    uint64_t a[] = {2, 5, 9}, b[] = {1, 3, 8};
    for (int i = 0; i < 3; i++) { /* all queued before the worker starts */
        send_udp(in[0], a[i], 0, 1);
        send_udp(in[1], b[i], 0, 2);
    }
    for (int i = 0; i < 2; i++)
        link_send_mark(in[i], UINT64_MAX, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct link_edge wo = {.links = out, .n = 1, .fs = RW_FS_5TUPLE};
        struct worker_opts o = {.def = &def,
                                .nf_name = "rec",
                                .vertex = 1,
                                .ft = false,
                                .in = in,
                                .nin = 2,
                                .out = &wo,
                                .nout = 1,
                                .status = st};
        _exit(worker_run(&o, &e) ? 1 : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(atomic_load(&order_log->n), 6);
    link_close(in[0]);
    link_close(in[1]);
    link_close(out[0]);
    munmap(st, sizeof(*st));
}

static bool sorted(const struct order_log *l)
{
    for (uint32_t i = 1; i < l->n; i++)
        if (l->clocks[i] < l->clocks[i - 1])
            return false;
    return true;
}

/* Arrival order across links is 2 5 9 then 1 3 8 (the worker drains link by
 * link), so an NF fed in arrival order would see them unsorted. */
static void test_ordered_inputs(void)
{
    order_log =
        mmap(NULL, sizeof(*order_log), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    run_recorder();
    CU_ASSERT_TRUE(sorted(order_log)); /* 1 2 3 5 8 9 */
    munmap(order_log, sizeof(*order_log));
}

/* An NF that issues 65,537 increments of one counter for one packet: op identities
 * hold 65,536 ops per (clock, sub), and the next would take op 0's identity, so the
 * store would answer it as a repeat (1, not 65,537). */
static int many_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    (void)self, (void)p;
    static const uint8_t key[1] = {1};
    struct store_key k = {.scope = STORE_SHARED, .object = 1, .bytes = key, .len = 1};
    int64_t v;
    for (int i = 0; i < 65537; i++) {
        int rc = nf_incr(env, &k, 1, &v);
        if (rc)
            return rc;
    }
    return 0;
}

struct many_result {
    int rc;
    char msg[RW_ERR_MSG_MAX];
};

static void test_op_identities_run_out(void)
{
    char *d = tu_mkdtemp("worker");
    char url[4200];
    snprintf(url, sizeof(url), "lmdb:%s/store", d);
    const struct nf_def def = {.type = "many", .init = rec_init, .process = many_process};
    struct link_opts lo = {.slots = 64, .data_room = 256};
    struct link *in[1], *out[1];
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("m0", &lo, &in[0], &e), 0);
    CU_ASSERT_EQUAL_FATAL(link_create("mo", &lo, &out[0], &e), 0);
    struct worker_status *st =
        mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct many_result *res =
        mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(st, 0, sizeof(*st));
    memset(res, 0, sizeof(*res));
    send_udp(in[0], 1, 0, 1);
    link_send_mark(in[0], UINT64_MAX, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct link_edge wo = {.links = out, .n = 1, .fs = RW_FS_5TUPLE};
        struct worker_opts o = {.def = &def,
                                .nf_name = "many",
                                .vertex = 1,
                                .ft = true,
                                .store_url = url,
                                .in = in,
                                .nin = 1,
                                .out = &wo,
                                .nout = 1,
                                .status = st};
        struct rw_err we = {0};
        res->rc = worker_run(&o, &we);
        memcpy(res->msg, we.msg, sizeof(res->msg));
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_NOT_EQUAL(res->rc, 0); /* refused, not answered from op 0's record */
    CU_ASSERT_PTR_NOT_NULL(strstr(res->msg, "more than 65536 store ops"));
    link_close(in[0]);
    link_close(out[0]);
    munmap(st, sizeof(*st));
    munmap(res, sizeof(*res));
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "an NF gets its inputs in clock order across links", test_ordered_inputs);
    CU_add_test(s, "op 65,537 of one packet is refused, never taken for op 0",
                test_op_identities_run_out);
    CU_add_test(s, "W waits for every input link; one clock's packets are distinct ops",
                test_watermark_and_identities);
}

int main(void)
{
    return tu_main("worker", add);
}
