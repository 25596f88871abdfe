/*
 * test_sink.c - the chain exit in-process, through real links: output commit
 * (nothing is released before its clock is durable), release in (clock, sub)
 * order across interleaved inputs using progress marks, duplicates dropped;
 * and, through `rewind run`, what a kill -9 leaves in the output log.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sink.h"
#include "itest.h"

struct sink_run {
    struct sink_opts o;
    struct sink_stats st;
    int rc;
};

static void *sink_thread(void *arg)
{
    struct sink_run *s = arg;
    struct rw_err e;
    s->rc = sink_run(&s->o, &s->st, &e);
    return NULL;
}

static void send(struct link *l, uint64_t clock, uint16_t sub)
{
    struct link_pkt *p = link_alloc(l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memset(&p->meta, 0, sizeof(p->meta));
    p->meta.clock = clock;
    p->meta.sub = sub;
    p->meta.ts_ns = 1000 + clock;
    p->sent_ns = 0;
    p->len = p->wire_len = 64;
    memset(p->data, (int)clock, 64);
    link_send(l, p);
}

static uint64_t wait_released(struct sink_run *s, uint64_t want)
{
    for (int i = 0; i < 300 && atomic_load(&s->st.released) < want; i++)
        usleep(10000);
    return atomic_load(&s->st.released);
}

static int check_order(void *ctx, const struct log_rec *r)
{
    uint64_t *prev = ctx;
    uint64_t key = (r->meta.clock << 16) | r->meta.sub;
    CU_ASSERT_TRUE(*prev == UINT64_MAX || key > *prev);
    CU_ASSERT_EQUAL(r->data[0], (uint8_t)r->meta.clock);
    *prev = key;
    return 0;
}

static void test_output_commit_order_and_dups(void)
{
    char *d = tu_mkdtemp("sink");
    struct link_opts lo = {.slots = 256, .data_room = 256};
    struct link *in[2];
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("a", &lo, &in[0], &e), 0);
    CU_ASSERT_EQUAL_FATAL(link_create("b", &lo, &in[1], &e), 0);
    struct log_opts o;
    log_opts_default(&o);
    struct log_writer *w;
    CU_ASSERT_EQUAL_FATAL(log_writer_open(d, &o, &w, &e), 0);
    _Atomic uint64_t durable = 50;
    struct sink_run s = {.o = {.in = in, .nin = 2, .ft = true, .durable = &durable, .output = w}};
    pthread_t t;
    pthread_create(&t, NULL, sink_thread, &s);
    for (uint64_t c = 0; c < 100; c++) /* even clocks on one link, odd on the other */
        send(in[c & 1], c, 0);
    send(in[0], 40, 1); /* a second output of input 40 */
    link_send_mark(in[0], 100, NULL);
    link_send_mark(in[1], 100, NULL);
    CU_ASSERT_EQUAL(wait_released(&s, 51), 51); /* clocks 0..49 and (40, 1) */
    usleep(100000);
    CU_ASSERT_EQUAL(atomic_load(&s.st.released), 51); /* and not one more */
    send(in[1], 41, 0);                               /* a duplicate of something released */
    atomic_store(&durable, UINT64_MAX);
    link_send_mark(in[0], UINT64_MAX, NULL);
    link_send_mark(in[1], UINT64_MAX, NULL);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(s.rc, 0);
    CU_ASSERT_EQUAL(atomic_load(&s.st.released), 101);
    CU_ASSERT_EQUAL(s.st.dups, 1);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
    struct log_reader *r;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(d, &r, &e), 0);
    struct log_query q;
    log_query_all(&q);
    uint64_t prev = UINT64_MAX;
    struct log_scan_cbs cb = {.visit = check_order, .ctx = &prev};
    struct log_scan_stats st;
    CU_ASSERT_EQUAL(log_scan(r, &q, &cb, &st, &e), 0);
    CU_ASSERT_EQUAL(st.packets_matched, 101);
    log_reader_close(r);
    link_close(in[0]);
    link_close(in[1]);
    tu_rmrf(d);
    free(d);
}

static void test_no_ft_releases_at_marks(void)
{
    struct link_opts lo = {.slots = 64, .data_room = 256};
    struct link *in[1];
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("c", &lo, &in[0], &e), 0);
    _Atomic uint64_t durable = 0; /* ignored without FT */
    struct sink_run s = {.o = {.in = in, .nin = 1, .ft = false, .durable = &durable}};
    pthread_t t;
    pthread_create(&t, NULL, sink_thread, &s);
    for (uint64_t c = 0; c < 10; c++)
        send(in[0], c, 0);
    usleep(100000);
    CU_ASSERT_EQUAL(atomic_load(&s.st.released), 0); /* no mark yet: held */
    link_send_mark(in[0], 5, NULL);
    CU_ASSERT_EQUAL(wait_released(&s, 5), 5);
    link_send_mark(in[0], UINT64_MAX, NULL);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(atomic_load(&s.st.released), 10);
    link_close(in[0]);
}

static void test_latency_histogram(void)
{
    static _Atomic uint64_t h[RW_LAT_BUCKETS];
    for (int i = 0; i < 90; i++)
        atomic_fetch_add(&h[rw_lat_bucket(1000)], 1);
    for (int i = 0; i < 10; i++)
        atomic_fetch_add(&h[rw_lat_bucket(250000)], 1);
    uint64_t p50 = rw_lat_percentile(h, 50), p99 = rw_lat_percentile(h, 99);
    CU_ASSERT_TRUE(p50 >= 900 && p50 <= 1150); /* within the ~19% bucket */
    CU_ASSERT_TRUE(p99 >= 225000 && p99 <= 290000);
    CU_ASSERT_TRUE(rw_lat_bucket(1000) < rw_lat_bucket(1200)); /* finer than 2x */
}

/* Records in the output log as another process sees it (a child that reads it,
 * as `rewind replay` would after a kill -9 of the run): what is committed. */
static int committed_records(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct log_reader *r;
        struct rw_err e;
        if (log_reader_open(dir, &r, &e))
            _exit(255);
        uint64_t n = 0;
        for (uint32_t i = 0; i < log_reader_nsegments(r); i++)
            n += log_reader_segment(r, i)->packets;
        _exit(n > 254 ? 254 : (int)n);
    }
    int st;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* What the sink counts as released is in the output log for any other process
 * to read while the run still goes on: a kill -9 at that instant loses none of
 * it (the sink used to count it when it was only in the writer's memory). */
static void test_released_is_committed(void)
{
    char *d = tu_mkdtemp("sink");
    struct link_opts lo = {.slots = 256, .data_room = 256};
    struct link *in[1];
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(link_create("r", &lo, &in[0], &e), 0);
    struct log_opts o;
    log_opts_default(&o);
    struct log_writer *w;
    CU_ASSERT_EQUAL_FATAL(log_writer_open(d, &o, &w, &e), 0);
    _Atomic uint64_t durable = UINT64_MAX;
    struct sink_run s = {.o = {.in = in, .nin = 1, .ft = true, .durable = &durable, .output = w}};
    pthread_t t;
    pthread_create(&t, NULL, sink_thread, &s);
    for (uint64_t c = 0; c < 42; c++)
        send(in[0], c, 0);
    link_send_mark(in[0], 42, NULL);
    CU_ASSERT_EQUAL(wait_released(&s, 42), 42);
    CU_ASSERT_EQUAL(committed_records(d), (int)atomic_load(&s.st.released));
    link_send_mark(in[0], UINT64_MAX, NULL);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(s.rc, 0);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
    link_close(in[0]);
    tu_rmrf(d);
    free(d);
}

/* The last "N out" of a run's progress lines (-1 when there is none). */
/* kill -9 of a run's coordinator mid-run: every packet its progress line had
 * counted out (released by the sink) is in DIR/output, and the log opens clean. */
static void test_kill9_keeps_released(void)
{
    char *d = tu_mkdtemp("sinkkill");
    char chain[4096], trace[4096], out[4200], err[4200], outlog[4300], cmd[32768];
    snprintf(chain, sizeof(chain), "%s/docs/chains/firewall.yaml", getenv("RW_SRC"));
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/run", d);
    snprintf(err, sizeof(err), "%s/run.err", d);
    snprintf(outlog, sizeof(outlog), "%s/output", out);
    snprintf(cmd, sizeof(cmd),
             "timeout -s KILL 120 '%s' run '%s' --trace '%s' --out '%s' --rate 2000 --progress "
             "2> '%s' > /dev/null",
             tu_bin(), chain, trace, out, err);
    pid_t pid = it_spawn_sh(cmd);
    CU_ASSERT_TRUE_FATAL(pid > 0);
    bool seen = it_wait_progress(err, 0, 100);
    CU_ASSERT_TRUE(seen);
    CU_ASSERT_EQUAL(tu_sh(NULL, "pkill -KILL -f 'rewind [r]un .*%s'", out), 0);
    int st;
    waitpid(pid, &st, 0);
    long in, released; /* printed before the kill: at most what was out */
    it_progress(err, &in, &released);
    tu_sh(NULL, "pkill -KILL -f 'rewind [w]orker.*%s'", out); /* orphans of the kill */
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(outlog, &r, &e), 0);
    uint64_t n = 0;
    for (uint32_t i = 0; i < log_reader_nsegments(r); i++)
        n += log_reader_segment(r, i)->packets;
    log_reader_close(r);
    fprintf(stderr, " (%ld counted out, %llu in output/) ", released, (unsigned long long)n);
    CU_ASSERT_TRUE(released > 0 && n >= (uint64_t)released);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s'", tu_bin(), outlog), 0);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "latency percentiles land in the right bucket", test_latency_histogram);
    CU_add_test(s, "output waits for durability, leaves in clock order, once",
                test_output_commit_order_and_dups);
    CU_add_test(s, "without FT, marks alone release output", test_no_ft_releases_at_marks);
    CU_add_test(s, "what the sink counts as released is committed to the output log",
                test_released_is_committed);
    CU_add_test(s, "kill -9 of a run keeps every packet it had counted out",
                test_kill9_keeps_released);
}

int main(void)
{
    return tu_main("sink", add);
}
