/*
 * rw_pkt.h - the one packet decoder: where a frame's L3 and L4 headers are.
 *
 * Every part that looks into a packet (the flow key and so the log's index and
 * the splitters' flowspaces, each NF, verify, the root's reassembly, replay's
 * re-fragmentation) asks this decoder, once per packet, instead of walking the
 * Ethernet and IP headers itself. Five hand-written walks with different rules
 * (two VLAN tags here, one there, none in the load balancer; the IP header at
 * byte 14 in the firewall) made an 802.1Q trunk or IPv6 TCP look different to
 * each of them (issue 13). Rack traffic carries 802.1Q and QinQ tags, IPv6
 * extension headers and fragments: one answer for all of them.
 *
 * Written by hand because DPDK's rte_net_get_ptype() needs an mbuf, and the log,
 * replay and the NFs work on raw bytes. It reads only what it has checked is in
 * the frame and allocates nothing.
 */
#ifndef RW_PKT_H
#define RW_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* VLAN tags skipped at most: a QinQ frame's two (TPIDs 0x8100, 0x88a8, 0x9100). */
#define RW_PKT_MAX_TAGS 2

/* Where an IP datagram stands in its fragmentation. */
enum rw_pkt_frag {
    RW_PKT_WHOLE,      /* not a fragment */
    RW_PKT_FIRST_FRAG, /* the first fragment: its L4 header is here */
    RW_PKT_LATER_FRAG, /* a later fragment: no L4 header (l4 is 0) */
};

struct rw_pkt {
    uint16_t ethertype;       /* after the tags; 0 when the frame is too short to say */
    uint8_t ntags;            /* VLAN tags skipped (0..RW_PKT_MAX_TAGS) */
    uint8_t family;           /* 4 or 6 when the IP header is whole in the frame; else 0 */
    uint32_t l3;              /* offset of the IP header (with a family) */
    uint32_t l3_end;          /* end of the datagram in the frame: the IP length, cut to the
                                 frame (Ethernet padding is not payload) */
    uint32_t ip_hlen;         /* IPv4: the header with its options (IHL x 4); IPv6: 40 */
    uint8_t proto;            /* the L4 protocol (IPv6: after the extension headers); where
                                 the walk stopped when l4 is 0 */
    uint8_t frag;             /* enum rw_pkt_frag */
    uint32_t l4;              /* offset of the L4 header; 0 when there is none in the frame
                                 (a later fragment, extension headers past its end) */
    const uint8_t *src, *dst; /* the addresses in the frame (4 or 16 bytes), or NULL */
    uint16_t sport, dport;    /* TCP, UDP, SCTP with 4 bytes of L4 in the frame; else 0 */
};

/* Decodes frame (len bytes): true for an IPv4 or IPv6 packet whose IP header is
 * whole (p->family set), false otherwise (p->ethertype and p->l3 may still say
 * what it is). IPv6 extension headers followed: hop-by-hop, routing, destination
 * options, fragment (at most 8 of them). Never reads past len. */
bool rw_pkt_decode(const uint8_t *frame, size_t len, struct rw_pkt *p);

/* Bytes of L4 header and payload in the frame (up to l3_end); 0 without l4. */
static inline uint32_t rw_pkt_l4_len(const struct rw_pkt *p)
{
    return p->l4 && p->l3_end > p->l4 ? p->l3_end - p->l4 : 0;
}

/* The TCP flags byte of a TCP packet whose header reaches it; 0 otherwise. */
static inline uint8_t rw_pkt_tcp_flags(const struct rw_pkt *p, const uint8_t *frame)
{
    return p->proto == 6 && p->l4 && rw_pkt_l4_len(p) >= 14 ? frame[p->l4 + 13] : 0;
}

/* True for the TPIDs of 802.1Q (0x8100) and 802.1ad/QinQ (0x88a8, 0x9100) tags. */
static inline bool rw_pkt_is_tag(uint16_t tpid)
{
    return tpid == 0x8100 || tpid == 0x88a8 || tpid == 0x9100;
}

#endif
