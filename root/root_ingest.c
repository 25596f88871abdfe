/*
 * root_ingest.c - the root's rx loop: give each packet its arrival time,
 * reassemble IP fragments (root_frag.c), stamp what comes out with its clock,
 * hand it to the logger thread.
 *
 * The loop follows DPDK's l2fwd shape: rx burst, per-packet work, hand-off in a
 * burst. Clock reservation is asked for half a block ahead so the loop only
 * stalls on it if the logger cannot sync the manifest for 32k packets' time.
 */
#include "root.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_pause.h>

#include <pcap/pcap.h>
#include <stdatomic.h>

#include "link.h"
#include "root_frag.h"
#include "rw_eal.h"
#include "rw_mbuf.h"

#define ROOT_BURST         32
#define ROOT_RING          16384
#define ROOT_CLOCK_BLOCK   (1ull << 16)
#define ROOT_TRACE_IDLE_NS 3000000000ull /* a trace PMD silent this long has stopped */
#define ROOT_PROGRESS_NS   100000000ull
#define ROOT_MARK_EVERY    256            /* packets between progress marks on the edges */
#define ROOT_FRAG_TIMEOUT  30000000000ull /* Linux's ipfrag_time */

struct root_run {
    const struct root_ingest_opts *o;
    struct log_thread *lt; /* NULL in --no-ft mode */
    uint64_t since_mark;
    bool full; /* paused by chain_full */
    struct root_stats *st;
    uint64_t clock;
    uint64_t asked; /* reservation requested up to here */
    uint64_t pace_t0, paced;
    int ts_off;
    uint64_t ts_flag;
    struct root_frag frag;
    struct rw_err *e;
};

/* Blocks until clock is inside the durable reservation. */
static int ensure_reserved(struct root_run *r)
{
    if (!r->lt)
        return 0; /* --no-ft: clocks live in memory only */
    if (r->clock + ROOT_CLOCK_BLOCK / 2 >= r->asked) {
        r->asked = r->clock + ROOT_CLOCK_BLOCK;
        log_thread_want_reserve(r->lt, r->asked);
    }
    while (r->clock >= log_thread_reserved(r->lt)) {
        if (log_thread_failed(r->lt))
            return RW_EIO;
        rte_pause();
    }
    return 0;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Arrival time: the trace's own timestamp, else the PMD's rx stamp, else now.
 * Every packet read gets one, fragments included: reassembly times out by it. */
static int arrive(struct root_run *r, struct rte_mbuf *m, uint64_t now)
{
    struct rw_mbuf_priv *p = rw_mbuf_priv(m);
    const struct root_trace *t = r->o->trace;
    memset(p, 0, sizeof(*p));
    p->meta.port = m->port;
    p->wire_len = m->pkt_len;
    if (t) {
        uint64_t i = r->st->packets;
        if (i >= t->n || t->pkts[i].cap_len != m->pkt_len)
            return rw_errf(r->e, RW_EINPUT,
                           "trace packet %llu: DPDK delivered %u bytes, the trace holds %u",
                           (unsigned long long)i, m->pkt_len, i < t->n ? t->pkts[i].cap_len : 0);
        p->meta.ts_ns = t->pkts[i].ts_ns;
        p->wire_len = t->pkts[i].wire_len;
    } else if (r->ts_off >= 0 && (m->ol_flags & r->ts_flag)) {
        p->meta.ts_ns = *RTE_MBUF_DYNFIELD(m, r->ts_off, uint64_t *) * 1000ull;
    } else {
        p->meta.ts_ns = now;
    }
    r->st->packets++;
    r->st->bytes += m->pkt_len;
    return 0;
}

/* Reassembles, then gives what is whole its clock. A datagram takes the arrival
 * time of the fragment that completed it (when it could first have been
 * delivered) and is as long on the wire as it is: every piece was captured
 * whole. Returns NULL when m was held or dropped. */
static struct rte_mbuf *take(struct root_run *r, struct rte_mbuf *m)
{
    uint64_t ts = rw_mbuf_priv(m)->meta.ts_ns;
    uint64_t whole = r->st->frag.reassembled;
    m = root_frag_take(&r->frag, m, ts);
    if (!m)
        return NULL;
    struct rw_mbuf_priv *p = rw_mbuf_priv(m);
    if (r->st->frag.reassembled != whole) {
        p->meta.ts_ns = ts;
        p->wire_len = rte_pktmbuf_pkt_len(m);
    }
    p->meta.clock = r->clock++;
    r->st->stamped++;
    return m;
}

static void hand_off(struct root_run *r, struct rte_mbuf **pkts, unsigned n)
{
    if (!r->lt) {
        rte_pktmbuf_free_bulk(pkts, n);
        return;
    }
    unsigned done = log_thread_submit(r->lt, pkts, n);
    if (done < n)
        r->st->ring_waits++;
    while (done < n) {
        rte_pause();
        done += log_thread_submit(r->lt, pkts + done, n - done);
    }
}

static bool finished(const struct root_run *r, uint64_t expected)
{
    const volatile int *stop = r->o->stop, *abort = r->o->abort;
    return r->st->packets >= expected || (stop && *stop) || (abort && *abort) ||
           (r->lt && log_thread_failed(r->lt));
}

static void publish_durable(struct root_run *r)
{
    r->st->durable = r->lt ? log_thread_durable(r->lt) : r->clock;
    if (r->o->durable_out)
        atomic_store(r->o->durable_out, r->st->durable);
}

/* ---- the splitter ---- */

/* The instance is behind: wait for it (a trace); a NIC would drop instead. */
static struct link_pkt *alloc_slot(struct root_run *r, struct link *l)
{
    struct link_pkt *p = link_alloc(l);
    if (!p) {
        r->st->link_waits++;
        p = link_alloc_wait(l, r->o->abort);
    }
    return p;
}

/* sent_ns: the burst's send time (one clock read per burst, not per packet). */
static void split_one(struct root_run *r, struct rte_mbuf *m, uint8_t *scratch, uint64_t sent_ns)
{
    uint32_t len = rte_pktmbuf_pkt_len(m);
    const struct rw_mbuf_priv *mp = rw_mbuf_priv(m);
    const uint8_t *data = rte_pktmbuf_read(m, 0, len, scratch);
    bool counted = false;
    for (unsigned i = 0; i < r->o->nedges; i++) {
        const struct link_edge *ed = &r->o->edges[i];
        int j = link_edge_pick(ed, data, len, mp->wire_len);
        if (j < 0)
            continue;
        struct link *l = ed->links[j];
        if (len > link_data_room(l)) { /* logged, not carried: counted once a packet */
            r->st->oversize += !counted;
            counted = true;
            continue;
        }
        struct link_pkt *p = alloc_slot(r, l);
        if (!p)
            return;
        p->meta = mp->meta;
        p->sent_ns = sent_ns;
        p->len = len;
        p->wire_len = mp->wire_len;
        memcpy(p->data, data, len);
        link_send(l, p);
    }
}

static void send_marks(struct root_run *r, uint64_t clock)
{
    for (unsigned i = 0; i < r->o->nedges; i++)
        for (unsigned j = 0; j < r->o->edges[i].n; j++)
            if (link_send_mark(r->o->edges[i].links[j], clock, r->o->abort))
                return;
    r->since_mark = 0;
}

/* --rate: sleeps until the packets taken so far are due (chaos runs slow a
 * short trace down so that faults land while it flows). */
static void pace(struct root_run *r, unsigned n)
{
    if (!r->o->rate_pps)
        return;
    if (!r->pace_t0)
        r->pace_t0 = rw_now_ns();
    r->paced += n;
    uint64_t due = r->pace_t0 + r->paced * 1000000000ull / r->o->rate_pps;
    uint64_t now = rw_now_ns();
    if (due > now) {
        struct timespec ts = {(time_t)((due - now) / 1000000000ull),
                              (long)((due - now) % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
}

/* Whether the chain holds max_in_flight clocks already; while it does, the
 * root keeps publishing D and marks (the chain can only release what they
 * cover) and takes no input: a trace waits, a NIC's queue overflows (counted by
 * the port as missed). */
static bool chain_full(struct root_run *r)
{
    if (!r->o->exit_clock)
        return false;
    uint64_t out = atomic_load(r->o->exit_clock);
    out = out < r->st->first_clock ? r->st->first_clock : out;
    if (r->clock <= out || r->clock - out <= r->o->max_in_flight)
        return r->full = false;
    r->st->full_waits += !r->full;
    r->full = true;
    publish_durable(r);
    if (r->since_mark)
        send_marks(r, r->clock);
    struct timespec ts = {0, 20000};
    nanosleep(&ts, NULL);
    return true;
}

static int rx_loop(struct root_run *r, uint64_t expected)
{
    static _Thread_local uint8_t scratch[65536];
    struct rte_mbuf *pkts[ROOT_BURST];
    uint64_t last_rx = rw_now_ns(), last_progress = 0;
    while (!finished(r, expected)) {
        if (chain_full(r)) {
            last_rx = rw_now_ns(); /* a pause is not DPDK going quiet */
            continue;
        }
        uint16_t n = rte_eth_rx_burst(r->o->port, 0, pkts, ROOT_BURST);
        uint64_t mono = rw_now_ns();
        if (n == 0) {
            if (r->o->trace && mono - last_rx > ROOT_TRACE_IDLE_NS)
                return rw_errf(r->e, RW_EINPUT,
                               "DPDK stopped delivering the trace after %llu "
                               "of %llu packets",
                               (unsigned long long)r->st->packets, (unsigned long long)expected);
            publish_durable(r);
            if (r->since_mark)
                send_marks(r, r->clock); /* idle: let the chain release what it holds */
            struct timespec ts = {0, 10000};
            nanosleep(&ts, NULL);
            continue;
        }
        last_rx = mono;
        pace(r, n);
        uint64_t now = r->o->trace ? 0 : wall_ns();
        uint16_t kept = 0; /* pkts[0, kept): stamped, whole */
        for (uint16_t i = 0; i < n; i++) {
            const struct root_trace *t = r->o->trace;
            if (t && t->clocks && r->st->packets < t->n)
                r->clock = t->clocks[r->st->packets]; /* its clock in the log it came from */
            int rc = ensure_reserved(r);
            if (!rc)
                rc = arrive(r, pkts[i], now);
            if (rc) {
                rte_pktmbuf_free_bulk(pkts + i, n - i);
                hand_off(r, pkts, kept);
                return rc;
            }
            struct rte_mbuf *m = take(r, pkts[i]);
            if (m)
                pkts[kept++] = m;
        }
        if (r->o->clock_out)
            atomic_store(r->o->clock_out, r->clock);
        if (r->o->nedges) {
            for (uint16_t i = 0; i < kept; i++)
                split_one(r, pkts[i], scratch, mono);
            /* Paced input is slow: a mark per burst keeps the chain's release
             * (and a replacement's wait for the upstream) from lagging. */
            if ((r->since_mark += kept) >= ROOT_MARK_EVERY || r->o->rate_pps)
                send_marks(r, r->clock);
        }
        if (kept)
            hand_off(r, pkts, kept);
        publish_durable(r);
        if (r->o->progress && mono - last_progress > ROOT_PROGRESS_NS) {
            last_progress = mono;
            r->o->progress(r->o->ctx, r->st, expected);
        }
    }
    return 0;
}

/* Starts the logger side: the first clock block reserved before the thread
 * starts, so nothing is stamped with a clock the manifest does not cover. */
static int start_logging(struct root_run *r, struct log_writer *w, struct rw_err *e)
{
    uint64_t upto = r->clock + ROOT_CLOCK_BLOCK;
    const struct root_trace *t = r->o->trace;
    /* Kept clocks (--from-log) may jump: one reservation covers them all, instead
     * of one durable manifest write per jump. */
    if (t && t->clocks && t->n && t->clocks[t->n - 1] + 1 > upto)
        upto = t->clocks[t->n - 1] + 1;
    int rc = log_writer_reserve(w, upto, e);
    if (rc)
        return rc;
    r->asked = upto;
    return log_thread_start(w, ROOT_RING, &r->lt, e);
}

int root_ingest(const struct root_ingest_opts *o, struct log_writer *w, struct root_stats *st,
                struct rw_err *e)
{
    memset(st, 0, sizeof(*st));
    struct root_run r = {.o = o, .st = st, .e = e};
    r.clock = st->first_clock = w ? log_writer_next_clock(w) : 0;
    if (o->trace && o->trace->clocks && o->trace->n) {
        if (o->trace->clocks[0] < r.clock)
            return rw_errf(e, RW_EINVAL,
                           "the input keeps its clocks from %llu on, but the run's log already "
                           "handed out clocks up to %llu",
                           (unsigned long long)o->trace->clocks[0], (unsigned long long)r.clock);
        r.clock = st->first_clock = o->trace->clocks[0];
    }
    r.ts_off = rw_rx_timestamp(&r.ts_flag);
    int rc = root_frag_init(&r.frag, o->frag_timeout_ns ? o->frag_timeout_ns : ROOT_FRAG_TIMEOUT,
                            &st->frag, e);
    if (!rc && w)
        rc = start_logging(&r, w, e);
    if (rc) {
        root_frag_fini(&r.frag);
        return rc;
    }
    uint64_t expected = o->trace ? o->trace->n : UINT64_MAX;
    struct rw_err loop_err = {0};
    r.e = &loop_err;
    int loop_rc = rx_loop(&r, expected);
    root_frag_fini(&r.frag);
    struct rw_err thread_err = {0};
    rc = r.lt ? log_thread_stop(r.lt, &thread_err) : 0;
    r.lt = NULL;
    st->next_clock = r.clock;
    /* Everything stamped is durable now (or was never going to be): publish, then
     * end the edges, so the sink can release the rest and the chain can finish. */
    if (w)
        st->durable = log_writer_durable(w);
    else
        st->durable = r.clock;
    if (o->durable_out)
        atomic_store(o->durable_out, rc ? st->durable : UINT64_MAX);
    if (o->nedges)
        send_marks(&r, UINT64_MAX);
    if (o->progress)
        o->progress(o->ctx, st, expected);
    if (rc) /* the logger's error explains a loop that stopped because of it */
        *e = thread_err;
    else if (loop_rc)
        *e = loop_err;
    return rc ? rc : loop_rc;
}
