/*
 * replay_port.c - log selection out of a DPDK port, paced or at top speed.
 *
 * Pacing: each packet is due at start + (ts - ts0) / speed, computed from the
 * first packet so that rounding and scheduling delays never accumulate. The
 * thread sleeps while the next packet is more than 200 µs away and spins on the
 * TSC for the rest; packets already due go out together in one burst.
 */
#include "replay.h"
#include "replay_filter.h"

#include <string.h>
#include <time.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pause.h>

#define PORT_BURST     32
#define SLEEP_ABOVE_NS 200000ull

struct port_out {
    struct replay_filter filt;
    uint16_t port;
    struct rte_mempool *pool;
    double speed;
    bool started;
    uint64_t t0, ts0;
    struct rte_mbuf *burst[PORT_BURST];
    unsigned n;
    struct replay_stats *st;
    struct rw_err *e;
};

static void flush(struct port_out *p)
{
    unsigned sent = 0;
    while (sent < p->n) {
        sent += rte_eth_tx_burst(p->port, 0, p->burst + sent, (uint16_t)(p->n - sent));
        if (sent < p->n)
            rte_pause();
    }
    p->n = 0;
}

/* Copies a record into a (possibly chained) mbuf. */
static struct rte_mbuf *to_mbuf(struct rte_mempool *pool, const struct log_rec *r)
{
    struct rte_mbuf *head = NULL;
    uint32_t off = 0;
    do {
        struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
        if (!m)
            break;
        uint32_t room = rte_pktmbuf_tailroom(m);
        uint32_t n = r->cap_len - off < room ? r->cap_len - off : room;
        memcpy(rte_pktmbuf_append(m, (uint16_t)n), r->data + off, n);
        off += n;
        if (!head)
            head = m;
        else if (rte_pktmbuf_chain(head, m)) {
            rte_pktmbuf_free(m);
            break;
        }
    } while (off < r->cap_len);
    if (head && off < r->cap_len) {
        rte_pktmbuf_free(head);
        return NULL;
    }
    return head;
}

static void wait_until(uint64_t due)
{
    for (;;) {
        uint64_t now = rw_now_ns();
        if (now >= due)
            return;
        if (due - now > SLEEP_ABOVE_NS) {
            uint64_t ns = due - now - SLEEP_ABOVE_NS / 2;
            struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
            nanosleep(&ts, NULL);
        } else {
            rte_pause();
        }
    }
}

static int send_rec(void *ctx, const struct log_rec *r)
{
    struct port_out *p = ctx;
    if (!replay_filter_match(&p->filt, r))
        return 0;
    if (!p->started) {
        p->started = true;
        p->t0 = rw_now_ns();
        p->ts0 = r->meta.ts_ns;
    }
    if (p->speed > 0) {
        double rel = r->meta.ts_ns >= p->ts0 ? (double)(r->meta.ts_ns - p->ts0) : 0;
        uint64_t due = p->t0 + (uint64_t)(rel / p->speed);
        if (rw_now_ns() < due) {
            flush(p);
            wait_until(due);
        } else if (rw_now_ns() > due + 1000000) {
            p->st->late++;
        }
    }
    struct rte_mbuf *m = to_mbuf(p->pool, r);
    if (!m)
        return rw_errf(p->e, RW_ENOMEM, "out of mbufs replaying clock %llu",
                       (unsigned long long)r->meta.clock);
    p->burst[p->n++] = m;
    p->st->packets++;
    p->st->bytes += r->cap_len;
    if (p->n == PORT_BURST)
        flush(p);
    return 0;
}

int replay_to_port(const char *logdir, uint16_t port, struct rte_mempool *pool, double speed,
                   const struct replay_opts *o, struct replay_stats *st, struct rw_err *e)
{
    struct replay_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    struct port_out p = {.port = port, .pool = pool, .speed = speed, .st = st, .e = e};
    int rc = replay_filter_init(&p.filt, o->bpf, e);
    if (rc)
        return rc;
    struct log_reader *r;
    if (!(rc = log_reader_open(logdir, &r, e))) {
        rc = replay_scan(r, o, send_rec, &p, &st->scan, e);
        flush(&p);
        log_reader_close(r);
    }
    replay_filter_fini(&p.filt);
    return rc;
}
