/*
 * rw_pkt.c - the packet decoder (rw_pkt.h).
 *
 * Its rules are the flow key's (rw_flow.c hashes what it finds, and the log
 * stores those hashes, so they must not move): ports are read from the frame
 * whenever 4 bytes of a TCP, UDP or SCTP header are there; the IPv6 walk follows
 * the same four extension headers, at most 8 of them, and a later fragment has
 * no L4 header.
 */
#include "rw_pkt.h"

#include <string.h>

#define IPPROTO_HOPOPTS_  0
#define IPPROTO_TCP_      6
#define IPPROTO_UDP_      17
#define IPPROTO_ROUTING_  43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_DSTOPTS_  60
#define IPPROTO_SCTP_     132
#define IPV6_MAX_EXT      8

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void ports(const uint8_t *frame, size_t len, struct rw_pkt *p)
{
    if (p->proto != IPPROTO_TCP_ && p->proto != IPPROTO_UDP_ && p->proto != IPPROTO_SCTP_)
        return;
    if (!p->l4 || len - p->l4 < 4)
        return; /* the IP-level key stands; ports unknown */
    p->sport = rd16(frame + p->l4);
    p->dport = rd16(frame + p->l4 + 2);
}

static uint32_t end_of(size_t len, uint32_t l3, uint32_t ip_len)
{
    /* 0: a length the capture did not fill in (segmentation offload) */
    return ip_len && (size_t)l3 + ip_len < len ? l3 + ip_len : (uint32_t)len;
}

static bool ipv4(const uint8_t *frame, size_t len, struct rw_pkt *p)
{
    const uint8_t *ip = frame + p->l3;
    size_t left = len - p->l3;
    if (left < 20 || (ip[0] >> 4) != 4)
        return false;
    uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > left)
        return false;
    p->family = 4;
    p->ip_hlen = ihl;
    p->proto = ip[9];
    p->src = ip + 12;
    p->dst = ip + 16;
    p->l3_end = end_of(len, p->l3, rd16(ip + 2));
    uint16_t off = rd16(ip + 6) & 0x1fff;
    bool more = rd16(ip + 6) & 0x2000;
    p->frag = off ? RW_PKT_LATER_FRAG : more ? RW_PKT_FIRST_FRAG : RW_PKT_WHOLE;
    if (off)
        return true; /* a later fragment: no L4 header */
    p->l4 = p->l3 + ihl;
    ports(frame, len, p);
    return true;
}

static bool is_ext(uint8_t nh)
{
    return nh == IPPROTO_HOPOPTS_ || nh == IPPROTO_ROUTING_ || nh == IPPROTO_DSTOPTS_ ||
           nh == IPPROTO_FRAGMENT_;
}

static bool ipv6(const uint8_t *frame, size_t len, struct rw_pkt *p)
{
    const uint8_t *ip = frame + p->l3;
    size_t left = len - p->l3;
    if (left < 40 || (ip[0] >> 4) != 6)
        return false;
    p->family = 6;
    p->ip_hlen = 40;
    p->src = ip + 8;
    p->dst = ip + 24;
    p->l3_end = end_of(len, p->l3, 40u + rd16(ip + 4));
    uint8_t nh = ip[6];
    size_t off = 40;
    for (int hops = 0; is_ext(nh) && hops < IPV6_MAX_EXT; hops++) {
        if (off + 8 > left) {
            p->proto = nh;
            return true;
        }
        if (nh == IPPROTO_FRAGMENT_) { /* ports only in the first fragment */
            bool first = (rd16(ip + off + 2) & 0xfff8) == 0;
            p->frag = first ? RW_PKT_FIRST_FRAG : RW_PKT_LATER_FRAG;
            nh = ip[off];
            off += 8;
            if (!first) {
                p->proto = nh;
                return true;
            }
            continue;
        }
        size_t hlen = ((size_t)ip[off + 1] + 1) * 8;
        nh = ip[off];
        off += hlen;
    }
    p->proto = nh;
    if (off > left)
        return true;
    p->l4 = p->l3 + (uint32_t)off;
    ports(frame, len, p);
    return true;
}

bool rw_pkt_decode(const uint8_t *frame, size_t len, struct rw_pkt *p)
{
    memset(p, 0, sizeof(*p));
    if (len < 14)
        return false;
    size_t off = 12;
    uint16_t type = rd16(frame + off);
    while (rw_pkt_is_tag(type) && p->ntags < RW_PKT_MAX_TAGS) {
        off += 4;
        if (off + 2 > len)
            return false;
        type = rd16(frame + off);
        p->ntags++;
    }
    p->ethertype = type;
    p->l3 = (uint32_t)off + 2;
    if (type == 0x0800)
        return ipv4(frame, len, p);
    if (type == 0x86dd)
        return ipv6(frame, len, p);
    return false;
}
