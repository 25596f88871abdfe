/*
 * rw_flow.c - flow keys and their hashes (see rw_flow.h). The packet is decoded
 * by rw_pkt.c, the one decoder every part uses.
 */
#include "rw_flow.h"
#include "rw_common.h"
#include "rw_pkt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <rte_jhash.h>

void rw_flow_of_pkt(const struct rw_pkt *p, struct rw_flow *f)
{
    memset(f, 0, sizeof(*f));
    f->family = p->family;
    f->proto = p->proto;
    memcpy(f->src, p->src, p->family == 4 ? 4 : 16);
    memcpy(f->dst, p->dst, p->family == 4 ? 4 : 16);
    f->sport = p->sport;
    f->dport = p->dport;
}

bool rw_flow_parse(const uint8_t *frame, size_t len, struct rw_flow *f)
{
    struct rw_pkt p;
    if (!rw_pkt_decode(frame, len, &p)) {
        memset(f, 0, sizeof(*f));
        return false;
    }
    rw_flow_of_pkt(&p, f);
    return true;
}

/* Endpoint ordering makes the key, and so the hash, direction-independent. */
static int endpoint_cmp(const uint8_t *a, uint16_t ap, const uint8_t *b, uint16_t bp)
{
    int c = memcmp(a, b, 16);
    if (c)
        return c;
    return (int)ap - (int)bp;
}

/* Keys are serialised to bytes and hashed as big-endian words composed byte by
 * byte. Handing rte_jhash a struct of u8/u16 fields made it read them through a
 * uint32_t pointer: the optimiser may assume such loads do not see the field
 * stores, and at -O2 it dropped the ports and protocol (issue 10), so Debug and
 * Release built different flow indexes. A value defined by the key's bytes alone
 * is the same on every build and host, which the log's flow index needs. */
#define FLOW_KEY_LEN  40 /* lo addr 16, hi addr 16, lo port 2, hi port 2, family, proto, 0, 0 */
#define FLOW_KEY_SEED 0x72657764u

static uint32_t hash_key(const uint8_t *key, size_t len, uint32_t seed)
{
    uint32_t w[FLOW_KEY_LEN / 4];
    for (size_t i = 0; i < len / 4; i++)
        w[i] = rw_get_be32(key + 4 * i);
    return rte_jhash_32b(w, (uint32_t)(len / 4), seed);
}

uint32_t rw_flow_hash(const struct rw_flow *f)
{
    uint8_t k[FLOW_KEY_LEN] = {0};
    bool swap = endpoint_cmp(f->src, f->sport, f->dst, f->dport) > 0;
    uint16_t lop = swap ? f->dport : f->sport, hip = swap ? f->sport : f->dport;
    memcpy(k, swap ? f->dst : f->src, 16);
    memcpy(k + 16, swap ? f->src : f->dst, 16);
    k[32] = (uint8_t)(lop >> 8), k[33] = (uint8_t)lop;
    k[34] = (uint8_t)(hip >> 8), k[35] = (uint8_t)hip;
    k[36] = f->family;
    k[37] = f->proto;
    return hash_key(k, sizeof(k), FLOW_KEY_SEED);
}

bool rw_flow_match(const struct rw_flow *a, const struct rw_flow *b)
{
    if (a->family != b->family || a->proto != b->proto)
        return false;
    if (!memcmp(a->src, b->src, 16) && !memcmp(a->dst, b->dst, 16) && a->sport == b->sport &&
        a->dport == b->dport)
        return true;
    return !memcmp(a->src, b->dst, 16) && !memcmp(a->dst, b->src, 16) && a->sport == b->dport &&
           a->dport == b->sport;
}

uint32_t rw_flowspace_hash(const uint8_t *frame, size_t len, enum rw_flowspace fs)
{
    struct rw_flow f;
    if (!rw_flow_parse(frame, len, &f))
        return 0;
    switch (fs) {
    case RW_FS_SRC:
        return hash_key(f.src, 16, f.family);
    case RW_FS_DST:
        return hash_key(f.dst, 16, f.family);
    case RW_FS_HOST_PAIR:
        f.proto = 0;
        f.sport = f.dport = 0;
        return rw_flow_hash(&f);
    default:
        return rw_flow_hash(&f);
    }
}

static int parse_proto(const char *s, uint8_t *proto)
{
    if (!strcasecmp(s, "tcp"))
        *proto = IPPROTO_TCP;
    else if (!strcasecmp(s, "udp"))
        *proto = IPPROTO_UDP;
    else if (!strcasecmp(s, "icmp"))
        *proto = IPPROTO_ICMP;
    else if (!strcasecmp(s, "icmp6"))
        *proto = IPPROTO_ICMPV6;
    else if (!strcasecmp(s, "sctp"))
        *proto = IPPROTO_SCTP;
    else {
        char *end;
        long v = strtol(s, &end, 10);
        if (*s == '\0' || *end != '\0' || v < 0 || v > 255)
            return -1;
        *proto = (uint8_t)v;
    }
    return 0;
}

/* "1.2.3.4:80" or "[2001:db8::1]:80"; the port may be omitted (0). */
static int parse_endpoint(char *s, uint8_t *family, uint8_t addr[16], uint16_t *port)
{
    char *host = s, *portstr = NULL;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close)
            return -1;
        *close = '\0';
        host = s + 1;
        if (close[1] == ':')
            portstr = close + 2;
        else if (close[1] != '\0')
            return -1;
    } else {
        char *colon = strrchr(s, ':');
        if (colon && strchr(s, ':') == colon) {
            *colon = '\0';
            portstr = colon + 1;
        }
    }
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, host, addr) == 1)
        *family = 4;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        *family = 6;
    else
        return -1;
    *port = 0;
    if (portstr) {
        char *end;
        long v = strtol(portstr, &end, 10);
        if (*portstr == '\0' || *end != '\0' || v < 0 || v > 65535)
            return -1;
        *port = (uint16_t)v;
    }
    return 0;
}

int rw_flow_from_string(const char *s, struct rw_flow *f, struct rw_err *e)
{
    char buf[256], proto[32], a[128], b[128], extra[8];
    memset(f, 0, sizeof(*f));
    snprintf(buf, sizeof(buf), "%s", s);
    int n = sscanf(buf, "%31s %127s %127s %7s", proto, a, b, extra);
    if (n != 3) {
        return rw_errf(e, RW_EINVAL, "expected 'PROTO SRC:PORT DST:PORT', got '%s'", s);
    }
    if (parse_proto(proto, &f->proto) < 0) {
        return rw_errf(e, RW_EINVAL, "unknown protocol '%s' (tcp, udp, icmp, icmp6, sctp or 0-255)",
                       proto);
    }
    uint8_t fa, fb;
    if (parse_endpoint(a, &fa, f->src, &f->sport) < 0 ||
        parse_endpoint(b, &fb, f->dst, &f->dport) < 0) {
        return rw_errf(e, RW_EINVAL, "bad endpoint in '%s' (use ADDR:PORT or [ADDR6]:PORT)", s);
    }
    if (fa != fb) {
        return rw_errf(e, RW_EINVAL, "endpoints of '%s' mix IPv4 and IPv6", s);
    }
    /* Port 0 is no port a TCP, UDP or SCTP flow has: a flow given without ports
     * matched nothing, and the query said so with 0 packets and exit 0. */
    bool ported = f->proto == 6 || f->proto == 17 || f->proto == 132;
    if (ported && (!f->sport || !f->dport)) {
        return rw_errf(e, RW_EINVAL,
                       "'%s': a %s flow needs both ports (PROTO SRC:PORT DST:PORT); for every "
                       "packet between two hosts use --filter 'host A and host B'",
                       s, proto);
    }
    f->family = fa;
    return 0;
}
