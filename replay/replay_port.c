/*
 * replay_port.c - log selection out of a DPDK port, paced or at top speed.
 *
 * Pacing: each packet is due at start + (ts - ts0) / speed, computed from the
 * first packet so that rounding and scheduling delays never accumulate. The
 * thread sleeps while the next packet is more than 200 µs away and spins on the
 * TSC for the rest; packets already due go out together in one burst.
 *
 * The root reassembles IP fragments before it logs (docs/design-notes.md, "IP
 * fragments"), so a log may hold datagrams larger than the port's MTU: those
 * leave in fragments cut to the MTU by DPDK's rte_ip_frag, as a router would
 * forward them, unless IPv4's DF forbids it.
 */
#include "replay.h"
#include "replay_filter.h"

#include <string.h>
#include <time.h>

#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_ip_frag.h>
#include <rte_mbuf.h>
#include <rte_pause.h>

#include "rw_pkt.h"

#define PORT_BURST     32
#define SLEEP_ABOVE_NS 200000ull
#define PORT_MAX_FRAGS 64 /* a 65,535-byte datagram at an MTU of 1,100 and up */
#define PORT_MAX_L2    22 /* Ethernet and two VLAN tags */

struct port_out {
    struct replay_filter filt;
    uint16_t port, mtu;
    uint32_t frag_id; /* IPv6 fragment ids: rte_ip_frag leaves them 0 */
    struct rte_mempool *pool;
    double speed;
    bool started;
    uint64_t t0, ts0, last_sent, last_due;
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

static void queue(struct port_out *p, struct rte_mbuf *m)
{
    p->burst[p->n++] = m;
    if (p->n == PORT_BURST)
        flush(p);
}

/* Queues m whole, or in fragments when it is an IP datagram larger than the
 * MTU. Fails only when the pool runs dry (m is freed). */
static int send_pkt(struct port_out *p, struct rte_mbuf *m)
{
    uint8_t buf[PORT_MAX_L2 + 2], l2h[PORT_MAX_L2];
    uint32_t len = rte_pktmbuf_pkt_len(m);
    const uint8_t *d = rte_pktmbuf_read(m, 0, RTE_MIN(len, (uint32_t)sizeof(buf)), buf);
    struct rw_pkt pk;
    if (d)
        rw_pkt_decode(d, RTE_MIN(len, (uint32_t)sizeof(buf)), &pk);
    uint16_t type = d ? pk.ethertype : 0;
    size_t l2 = d ? pk.l3 : 0;
    if ((type != 0x0800 && type != 0x86dd) || len - l2 <= p->mtu || l2 > PORT_MAX_L2 ||
        rte_pktmbuf_data_len(m) < l2 + (type == 0x0800 ? 20 : 40)) {
        queue(p, m);
        return 0;
    }
    memcpy(l2h, d, l2);
    rte_pktmbuf_adj(m, (uint16_t)l2); /* rte_ip_frag cuts from the IP header on */
    struct rte_mbuf *frags[PORT_MAX_FRAGS];
    int n = type == 0x0800
                ? rte_ipv4_fragment_packet(m, frags, PORT_MAX_FRAGS, p->mtu, p->pool, p->pool)
                : rte_ipv6_fragment_packet(m, frags, PORT_MAX_FRAGS, p->mtu, p->pool, p->pool);
    if (n == -ENOMEM) {
        rte_pktmbuf_free(m);
        return rw_errf(p->e, RW_ENOMEM, "out of mbufs fragmenting a datagram to the MTU");
    }
    if (n < 0) { /* DF, or too many pieces: sent as logged, the port may drop it */
        memcpy(rte_pktmbuf_prepend(m, (uint16_t)l2), l2h, l2);
        p->st->too_big++;
        queue(p, m);
        return 0;
    }
    rte_pktmbuf_free(m); /* the fragments hold their own references to its data */
    p->st->fragmented++;
    p->frag_id++;
    for (int i = 0; i < n; i++) {
        char *h = rte_pktmbuf_prepend(frags[i], (uint16_t)l2);
        if (!h) {
            rte_pktmbuf_free_bulk(frags + i, (unsigned)(n - i));
            return rw_errf(p->e, RW_ENOMEM, "no headroom for a fragment's Ethernet header");
        }
        memcpy(h, l2h, l2);
        if (type == 0x0800) { /* rte_ip_frag leaves the sum to an offload */
            struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(h + l2);
            ip->hdr_checksum = 0;
            ip->hdr_checksum = rte_ipv4_cksum(ip);
        } else { /* each datagram an id of its own, or receivers mix them up */
            struct rte_ipv6_fragment_ext *fh = (struct rte_ipv6_fragment_ext *)(h + l2 + 40);
            fh->id = rte_cpu_to_be_32(p->frag_id);
        }
        queue(p, frags[i]);
    }
    return 0;
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
    uint64_t now = rw_now_ns(), due = now;
    if (p->speed > 0) {
        double rel = r->meta.ts_ns >= p->ts0 ? (double)(r->meta.ts_ns - p->ts0) : 0;
        due = p->t0 + (uint64_t)(rel / p->speed);
        if (now < due) {
            flush(p);
            wait_until(due);
            now = rw_now_ns();
        }
        if (now > due + 1000000)
            p->st->late++;
        if (now > due && now - due > p->st->max_late_ns)
            p->st->max_late_ns = now - due;
    }
    p->last_sent = now;
    p->last_due = due;
    struct rte_mbuf *m = to_mbuf(p->pool, r);
    if (!m)
        return rw_errf(p->e, RW_ENOMEM, "out of mbufs replaying clock %llu",
                       (unsigned long long)r->meta.clock);
    p->st->packets++;
    p->st->bytes += r->cap_len;
    return send_pkt(p, m);
}

int replay_to_port(const char *logdir, uint16_t port, struct rte_mempool *pool, double speed,
                   const struct replay_opts *o, struct replay_stats *st, struct rw_err *e)
{
    struct replay_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    struct port_out p = {.port = port, .pool = pool, .speed = speed, .st = st, .e = e};
    if (rte_eth_dev_get_mtu(port, &p.mtu) || p.mtu < RTE_ETHER_MIN_MTU)
        p.mtu = RTE_ETHER_MTU;
    int rc = replay_filter_init(&p.filt, o->bpf, e);
    if (rc)
        return rc;
    struct log_reader *r;
    if (!(rc = log_reader_open(logdir, &r, e))) {
        rc = replay_scan(r, o, &p.filt, send_rec, &p, &st->scan, e);
        flush(&p);
        log_reader_close(r);
    }
    if (p.started && speed > 0) {
        st->elapsed_ns = p.last_sent - p.t0;
        st->scheduled_ns = p.last_due - p.t0;
        st->drift_ns = (int64_t)st->elapsed_ns - (int64_t)st->scheduled_ns;
    }
    replay_filter_fini(&p.filt);
    return rc;
}
