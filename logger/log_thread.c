/*
 * log_thread.c - the logger thread: takes clock-stamped mbufs from the root
 * through an rte_ring, appends them to the log, ticks group commit, records clock
 * reservations, and publishes the durable watermark.
 *
 * The root never waits for storage: it only waits when the ring is full or when
 * it reaches the end of its clock reservation, which it asks for half a block
 * ahead. When the thread has nothing to do it sleeps briefly (design.md: A packet's life: no two
 * busy pollers on one core). It runs on an EAL worker lcore when one is free: a
 * pthread started after rte_eal_init() inherits the main lcore's pinning and
 * would share the root's core (measured: 1.7 s vs 1.15 s for 1 M packets).
 */
#include "log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

#include "rw_mbuf.h"

#define LOG_THREAD_BURST       64
#define LOG_THREAD_IDLE_NS     20000  /* first sleep when the ring is empty */
#define LOG_THREAD_IDLE_MAX_NS 250000 /* backed off to this: a quarter of the commit window */

struct log_thread {
    struct log_writer *w;
    struct rte_ring *ring;
    unsigned lcore; /* the EAL worker lcore it runs on, or RTE_MAX_LCORE */
    pthread_t tid;  /* when no worker lcore is free */
    atomic_bool stop;
    atomic_bool failed;
    atomic_uint_least64_t durable;
    atomic_uint_least64_t reserved;
    atomic_uint_least64_t want_reserved;
    struct rw_err err; /* first error, read after join */
    uint8_t scratch[65536 + 128];
};

static void fail(struct log_thread *t, const struct rw_err *e)
{
    if (!atomic_load(&t->failed)) {
        t->err = *e;
        atomic_store(&t->failed, true);
    }
}

/* Appends one mbuf's packet; the caller frees the burst in bulk. */
static void append_mbuf(struct log_thread *t, struct rte_mbuf *m)
{
    struct rw_mbuf_priv *p = rw_mbuf_priv(m);
    struct rw_err e;
    uint32_t len = rte_pktmbuf_pkt_len(m);
    if (len > sizeof(t->scratch))
        len = sizeof(t->scratch);
    const uint8_t *data = rte_pktmbuf_read(m, 0, len, t->scratch);
    struct log_rec r = {.meta = p->meta, .orig_len = p->wire_len, .cap_len = len, .data = data};
    if (r.orig_len < len)
        r.orig_len = len;
    if (!atomic_load(&t->failed) && log_writer_append(t->w, &r, &e))
        fail(t, &e);
}

static void housekeeping(struct log_thread *t)
{
    struct rw_err e;
    uint64_t want = atomic_load(&t->want_reserved);
    if (!atomic_load(&t->failed) && want > log_writer_reserved(t->w)) {
        if (log_writer_reserve(t->w, want, &e))
            fail(t, &e);
        atomic_store(&t->reserved, log_writer_reserved(t->w));
    }
    if (!atomic_load(&t->failed) && log_writer_tick(t->w, rw_now_ns(), &e))
        fail(t, &e);
    atomic_store(&t->durable, log_writer_durable(t->w));
}

static int run(void *arg)
{
    struct log_thread *t = arg;
    void *objs[LOG_THREAD_BURST];
    long idle_ns = LOG_THREAD_IDLE_NS;
    for (;;) {
        unsigned n = rte_ring_sc_dequeue_burst(t->ring, objs, LOG_THREAD_BURST, NULL);
        /* The mbufs were last written on the root's core: ask for every header
         * and metadata line of the burst at once, then for data a few ahead. */
        for (unsigned i = 0; i < n; i++) {
            rte_prefetch0(objs[i]);
            rte_prefetch0(rw_mbuf_priv(objs[i]));
        }
        for (unsigned i = 0; i < n; i++) {
            if (i + 4 < n)
                rte_prefetch0(rte_pktmbuf_mtod((struct rte_mbuf *)objs[i + 4], void *));
            append_mbuf(t, objs[i]);
        }
        if (n)
            rte_pktmbuf_free_bulk((struct rte_mbuf **)objs, n);
        housekeeping(t);
        if (n == 0) {
            if (atomic_load(&t->stop) && rte_ring_empty(t->ring))
                break;
            /* Back off while idle: on a machine with few cores every wake-up is
             * taken from the root or a worker. */
            struct timespec ts = {0, idle_ns};
            nanosleep(&ts, NULL);
            idle_ns = idle_ns * 2 < LOG_THREAD_IDLE_MAX_NS ? idle_ns * 2 : LOG_THREAD_IDLE_MAX_NS;
        } else {
            idle_ns = LOG_THREAD_IDLE_NS;
        }
    }
    struct rw_err e;
    if (!atomic_load(&t->failed) && log_writer_commit(t->w, &e))
        fail(t, &e);
    atomic_store(&t->durable, log_writer_durable(t->w));
    return 0;
}

/* Without a free worker lcore: a plain thread, registered with the EAL so that it
 * gets the mempool's per-lcore cache, and allowed on every CPU (it would inherit
 * the main lcore's pinning and share the root's core). */
static void *run_thread(void *arg)
{
    bool registered = rte_thread_register() == 0;
    run(arg);
    if (registered)
        rte_thread_unregister();
    return NULL;
}

static int start_plain_thread(struct log_thread *t)
{
    if (pthread_create(&t->tid, NULL, run_thread, t))
        return -1;
    cpu_set_t all;
    CPU_ZERO(&all);
    for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN) && c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    pthread_setaffinity_np(t->tid, sizeof(all), &all);
    return 0;
}

int log_thread_start(struct log_writer *w, unsigned ring_size, struct log_thread **out,
                     struct rw_err *e)
{
    struct log_thread *t = calloc(1, sizeof(*t));
    if (!t)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    t->w = w;
    atomic_init(&t->durable, log_writer_durable(w));
    atomic_init(&t->reserved, log_writer_reserved(w));
    atomic_init(&t->want_reserved, log_writer_reserved(w));
    t->ring = rte_ring_create("rw_log", ring_size, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!t->ring) {
        free(t);
        return rw_errf(e, RW_EDPDK, "logger ring: %s", rte_strerror(rte_errno));
    }
    /* The logger gets its own core (DPDK's way: an EAL worker lcore). */
    t->lcore = rte_get_next_lcore(-1, 1, 0);
    bool on_lcore = t->lcore < RTE_MAX_LCORE && rte_eal_get_lcore_state(t->lcore) == WAIT &&
                    rte_eal_remote_launch(run, t, t->lcore) == 0;
    if (!on_lcore) {
        t->lcore = RTE_MAX_LCORE;
        if (start_plain_thread(t)) {
            rte_ring_free(t->ring);
            free(t);
            return rw_errf(e, RW_EIO, "cannot start the logger thread");
        }
    }
    *out = t;
    return 0;
}

unsigned log_thread_submit(struct log_thread *t, struct rte_mbuf **pkts, unsigned n)
{
    return rte_ring_sp_enqueue_burst(t->ring, (void **)pkts, n, NULL);
}

uint64_t log_thread_durable(const struct log_thread *t)
{
    return atomic_load(&((struct log_thread *)t)->durable);
}

void log_thread_want_reserve(struct log_thread *t, uint64_t upto)
{
    uint64_t cur = atomic_load(&t->want_reserved);
    while (upto > cur && !atomic_compare_exchange_weak(&t->want_reserved, &cur, upto))
        ;
}

uint64_t log_thread_reserved(const struct log_thread *t)
{
    return atomic_load(&((struct log_thread *)t)->reserved);
}

bool log_thread_failed(const struct log_thread *t)
{
    return atomic_load(&((struct log_thread *)t)->failed);
}

int log_thread_stop(struct log_thread *t, struct rw_err *e)
{
    atomic_store(&t->stop, true);
    if (t->lcore < RTE_MAX_LCORE)
        rte_eal_wait_lcore(t->lcore);
    else
        pthread_join(t->tid, NULL);
    int rc = 0;
    if (atomic_load(&t->failed)) {
        rc = t->err.code;
        if (e)
            *e = t->err;
    }
    rte_ring_free(t->ring);
    free(t);
    return rc;
}
