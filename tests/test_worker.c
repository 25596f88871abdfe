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

#include "nfworker.h"
#include "store.h"
#include "testutil.h"

static void send_udp(struct link *l, uint64_t clock, uint16_t sub)
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
    uint8_t a[4] = {10, 0, 0, (uint8_t)clock}, b[4] = {10, 1, 0, 1};
    memcpy(p->data + 26, a, 4);
    memcpy(p->data + 30, b, 4);
    p->data[35] = 99, p->data[37] = 53;
    link_send(l, p);
}

static void wait_in(struct worker_status *st, uint64_t n)
{
    for (int i = 0; i < 500 && atomic_load(&st->pkts_in) < n; i++)
        usleep(10000);
    CU_ASSERT_EQUAL_FATAL(atomic_load(&st->pkts_in), n);
    usleep(50000); /* let it pass its marks on and flush */
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

static int64_t dropped_count(const char *url)
{
    struct store *s;
    struct store_client *c;
    struct rw_err e;
    int64_t v = -1;
    bool found = false;
    struct store_key k = {.scope = STORE_SHARED, .object = 2, .bytes = "dropped", .len = 7};
    if (store_open(url, &s, &e) == 0) {
        if (store_client_open(s, 1, 0, &c, &e) == 0) {
            store_get_int(c, NULL, &k, &v, &found);
            store_client_close(c);
        }
        store_close(s);
    }
    return found ? v : -1;
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
    pid_t pid = fork();
    if (pid == 0) { /* the worker: firewall with its defaults (drop all new flows) */
        struct worker_out wo = {.links = out, .n = 1, .fs = RW_FS_5TUPLE};
        struct worker_opts o = {.def = nf_find("firewall"),
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
    send_udp(in[0], 10, 0);
    send_udp(in[0], 12, 0);
    link_send_mark(in[0], 13);
    wait_in(st, 2);
    uint64_t w = watermark(url);
    CU_ASSERT_TRUE(w == 0 || w < 3); /* clock 3 is still to come on the other link */
    send_udp(in[1], 3, 0);
    send_udp(in[1], 3, 1); /* two packets of one clock */
    link_send_mark(in[1], 13);
    wait_in(st, 4);
    CU_ASSERT_EQUAL(watermark(url), 12);
    link_send_mark(in[0], UINT64_MAX);
    link_send_mark(in[1], UINT64_MAX);
    int status;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(dropped_count(url), 4); /* (3,1) was counted, not emulated */
    for (int i = 0; i < 2; i++)
        link_close(in[i]);
    link_close(out[0]);
    munmap(st, sizeof(*st));
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "W waits for every input link; one clock's packets are distinct ops",
                test_watermark_and_identities);
}

int main(void)
{
    return tu_main("worker", add);
}
