/*
 * root_frag.c - IPv4 and IPv6 reassembly at the root, before a packet gets its
 * clock.
 *
 * Why here: the split picks an NF instance from the ports, which only a
 * datagram's first fragment carries, and the NFs judge a connection by its L4
 * header. Fragments split by flow hash would land on different instances and
 * pass the port-scan detector unseen (`nmap -f`). Reassembling before the stamp
 * gives each datagram one clock, so the log, failover replays and `rewind
 * replay` see whole datagrams and never have to reassemble again
 * (design-notes.md, "IP fragments").
 *
 * The work is DPDK's rte_ip_frag. Its table is driven with the packets' arrival
 * times (a trace's own timestamps) instead of TSC cycles, so a trace reassembles
 * the same at any speed. What it drops lands on its death row; the row is
 * emptied after every call, so how many mbufs it held says what was dropped.
 */
#include "root_frag.h"

#include <string.h>

#include <rte_errno.h>
#include <rte_ip.h>
#include <rte_ip_frag.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "rw_pkt.h"

/* 1,024 datagrams in flight hold at most 7,168 fragments' mbufs: with the
 * logger ring's 16,384 the rx pool (32,767) never runs dry. */
#define FRAG_BUCKETS        256
#define FRAG_BUCKET_ENTRIES 8
#define FRAG_MAX_DATAGRAMS  1024
#define FRAG_PEEK           256 /* enough for L2, IPv4 with options, IPv6 ext headers */

enum frag_kind { NOT_FRAG, FRAG4, FRAG6, FRAG_BAD };

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* What m is. For a fragment it sets m->l2_len and m->l3_len (what rte_ip_frag
 * needs) and trims Ethernet padding. FRAG_BAD: a fragment rte_ip_frag cannot
 * reassemble soundly (see docs/operator.md, "IP fragments"). */
static enum frag_kind classify(struct rte_mbuf *m)
{
    uint8_t buf[FRAG_PEEK];
    uint32_t len = rte_pktmbuf_pkt_len(m);
    uint32_t peek = len < FRAG_PEEK ? len : FRAG_PEEK;
    const uint8_t *d = rte_pktmbuf_read(m, 0, peek, buf);
    struct rw_pkt pk;
    if (d)
        rw_pkt_decode(d, peek, &pk);
    uint16_t type = d ? pk.ethertype : 0;
    size_t l2 = d ? pk.l3 : 0;
    uint32_t l3, ip_len, payload, ofs;
    bool more;
    if (type == 0x0800) {
        if (l2 + 20 > peek || (d[l2] >> 4) != 4)
            return NOT_FRAG;
        uint16_t fo = rd16(d + l2 + 6);
        if (!(fo & 0x3fff))
            return NOT_FRAG;
        l3 = (uint32_t)(d[l2] & 0x0f) * 4;
        ip_len = rd16(d + l2 + 2);
        if (l3 < 20 || ip_len <= l3)
            return FRAG_BAD;
        payload = ip_len - l3;
        ofs = (uint32_t)(fo & 0x1fff) * 8;
        more = fo & 0x2000;
    } else if (type == 0x86dd) {
        if (l2 + 40 > peek || (d[l2] >> 4) != 6)
            return NOT_FRAG;
        uint8_t nh = d[l2 + 6];
        if (nh != 44) {
            /* rte_ip_frag wants the fragment header first: a fragment
             * behind other extension headers cannot be reassembled, and
             * passing it on would be the evasion this file closes. */
            size_t off = l2 + 40;
            for (int hops = 0; (nh == 0 || nh == 43 || nh == 60) && hops < 8; hops++) {
                if (off + 2 > peek)
                    return NOT_FRAG;
                nh = d[off];
                off += ((size_t)d[off + 1] + 1) * 8;
            }
            return nh == 44 ? FRAG_BAD : NOT_FRAG;
        }
        if (l2 + 48 > peek)
            return FRAG_BAD;
        uint16_t fd = rd16(d + l2 + 40 + 2);
        ofs = fd & 0xfff8;
        more = fd & 1;
        if (!ofs && !more)
            return NOT_FRAG; /* an atomic fragment (RFC 6946) is whole */
        l3 = 48;
        ip_len = 40u + rd16(d + l2 + 4);
        if (ip_len <= l3)
            return FRAG_BAD;
        payload = ip_len - l3;
    } else {
        return NOT_FRAG;
    }
    /* Cut short by the snap length, beyond 65,535 bytes, a middle piece that is
     * not a multiple of 8, or headers split across segments. */
    if (len < l2 + ip_len || ofs + payload > 65535 - l3 || (more && payload % 8) ||
        rte_pktmbuf_data_len(m) < l2 + l3)
        return FRAG_BAD;
    if (len > l2 + ip_len)
        rte_pktmbuf_trim(m, (uint16_t)(len - l2 - ip_len));
    m->l2_len = (uint16_t)l2;
    m->l3_len = (uint16_t)l3;
    return type == 0x0800 ? FRAG4 : FRAG6;
}

/* Empties the death row; returns how many mbufs it held. */
static uint32_t bury(struct root_frag *f)
{
    uint32_t n = f->dr.cnt;
    rte_ip_frag_free_death_row(&f->dr, 0);
    return n;
}

/* Drops every datagram older than the timeout at tms. The table stops at a full
 * death row, hence the loop. */
static void expire(struct root_frag *f, uint64_t tms)
{
    for (;;) {
        rte_ip_frag_table_del_expired_entries(f->tbl, &f->dr, tms);
        uint32_t n = bury(f);
        if (!n)
            return;
        f->st->dropped_timeout += n;
    }
}

int root_frag_init(struct root_frag *f, uint64_t timeout_ns, struct root_frag_stats *st,
                   struct rw_err *e)
{
    memset(f, 0, sizeof(*f));
    f->st = st;
    f->tbl = rte_ip_frag_table_create(FRAG_BUCKETS, FRAG_BUCKET_ENTRIES, FRAG_MAX_DATAGRAMS,
                                      timeout_ns, (int)rte_socket_id());
    if (!f->tbl)
        return rw_errf(e, RW_ENOMEM, "IP reassembly table: %s", rte_strerror(rte_errno));
    return 0;
}

struct rte_mbuf *root_frag_take(struct root_frag *f, struct rte_mbuf *m, uint64_t ts_ns)
{
    enum frag_kind k = classify(m);
    if (k == NOT_FRAG)
        return m;
    f->st->in++;
    if (k == FRAG_BAD) {
        f->st->dropped_invalid++;
        rte_pktmbuf_free(m);
        return NULL;
    }
    /* The table's clock never goes back: a trace whose time steps back must
     * not bring an expired datagram back to life. */
    if (ts_ns > f->tms)
        f->tms = ts_ns;
    expire(f, f->tms);
    struct rte_mbuf *out;
    void *ip = rte_pktmbuf_mtod_offset(m, void *, m->l2_len);
    if (k == FRAG4)
        out = rte_ipv4_frag_reassemble_packet(f->tbl, &f->dr, m, f->tms, ip);
    else
        out = rte_ipv6_frag_reassemble_packet(f->tbl, &f->dr, m, f->tms, ip,
                                              (struct rte_ipv6_fragment_ext *)((uint8_t *)ip + 40));
    /* Nothing was stale (expire ran first), so the death row holds either the
     * fragment alone (no room for a new datagram) or a whole datagram that
     * overlapped, repeated a piece or did not add up. */
    bool full = !out && f->dr.cnt == 1 && f->dr.row[0] == m;
    uint32_t dropped = bury(f);
    if (full)
        f->st->dropped_table_full++;
    else
        f->st->dropped_overlap += dropped;
    if (!out)
        return NULL;
    if (rte_pktmbuf_pkt_len(out) - out->l2_len > 65535) {
        /* The first fragment's options pushed it past the length field. */
        f->st->dropped_invalid++;
        rte_pktmbuf_free(out);
        return NULL;
    }
    f->st->reassembled++;
    if (k == FRAG4) {
        /* rte_ip_frag fixes the length and flags but leaves the sum zero. */
        struct rte_ipv4_hdr *h = rte_pktmbuf_mtod_offset(out, struct rte_ipv4_hdr *, out->l2_len);
        h->hdr_checksum = 0;
        h->hdr_checksum = rte_ipv4_cksum(h);
    }
    return out;
}

void root_frag_fini(struct root_frag *f)
{
    if (!f->tbl)
        return;
    expire(f, UINT64_MAX); /* incomplete at the end of the input: timed out */
    rte_ip_frag_table_destroy(f->tbl);
    f->tbl = NULL;
}
