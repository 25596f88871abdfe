/*
 * nf_nat.c - source NAT (NAPT) for IPv4 TCP, UDP and ICMP echo: hosts of the
 * `inside` prefix reach the rest of the world from one `external` address, each
 * flow from a port of its own, and the replies find their way back.
 *
 * Why it looks like this (design.md: Invariants): every decision depends only on the packets,
 * nf_now() and state read through nf_*, so a replay reproduces it and a --no-ft run
 * gives the same output.
 *
 * State:
 *   - the port pool (SHARED): a counter of ports never handed out yet (`cursor`,
 *     a sync nf_incr: its op identity makes the pool "filled" exactly once, lazily,
 *     with no init flag) and a FIFO of returned ports (nf_push / nf_pop). Fresh
 *     ports go first, then the port returned longest ago, so reuse is as late as
 *     possible. A returned port carries its release time: an instance behind in
 *     packet time does not take it (the chain's output is in packet order).
 *   - per flow (FLOW, owned by the instance's slot): the outbound mapping, keyed by
 *     the inside 5-tuple (external port, FIN seen each way, last packet time), and
 *     the inbound mapping, keyed by protocol, external port and remote endpoint.
 *   - the slot's age queue of outbound keys (nf_age): NFs run only on packets, so
 *     each new flow looks at the two oldest mappings and releases those idle for
 *     longer than the timeout; a flow that never sends again still gives its port
 *     back, and the mappings stay bounded by the live flows.
 *   - counters (SHARED integers): drops per reason, and translated packets per
 *     protocol and direction (blind increments).
 *
 * A port returns to the pool on RST, on the ACK after FIN both ways, or after
 * idle_timeout (tcp_closed_timeout once FIN was seen both ways) of packet time,
 * noticed lazily by the flow's next packet or by the age queue.
 *
 * Directions: src in `inside` (dst not) is outbound, dst == `external` inbound.
 * A packet from outside addressed straight to an inside host is the return traffic
 * of a trace captured inside the NAT: with untranslated_return: pass it follows
 * the mapping of its flow (passes unchanged, updates FIN/RST/idle state) and is
 * dropped when there is none.
 *
 * config:
 *   inside: CIDR (required)          external: IPv4 address (required)
 *   ports: N-M (1024-65535)          idle_timeout: SECONDS (300)
 *   tcp_closed_timeout: SECONDS (10) non_ipv4: allow | drop (allow)
 *   untranslated_return: pass | drop (pass)
 */
#include "nf.h"
#include "rw_flow.h"
#include "rw_pkt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ip.h>

#include "chain.h"
#include "store.h"

#define NAT_OBJ_CURSOR 1 /* SHARED int: ports handed out fresh so far */
#define NAT_OBJ_FREE   2 /* SHARED list of uint16 ports */
#define NAT_OBJ_OUT    3 /* FLOW: inside 5-tuple -> struct nat_map */
#define NAT_OBJ_IN     4 /* FLOW: (proto, ext port, remote) -> struct nat_back */
#define NAT_OBJ_AGE    5 /* the slot's age queue of outbound keys (nf_age) */
#define NAT_OBJ_DROPS  6 /* SHARED int per drop reason */
#define NAT_OBJ_PKTS   7 /* SHARED int per (protocol, direction): translated packets */

#define NAT_TOUCH_NS 1000000000ull /* last-seen is kept to the second */
/* Key lengths are multiples of 4 and key buffers 4-aligned: --no-ft's local map
 * hashes with rte_jhash, which reads whole 32-bit words. */
#define NAT_OKEY 16 /* proto, inside ip, port, remote ip, port, 3 zero bytes */
#define NAT_IKEY 12 /* proto, ext port, remote ip, port, 3 zero bytes */

struct nat {
    uint8_t inside[4], ext[4];
    uint32_t inside_mask; /* host order */
    uint16_t lo, hi;
    uint64_t idle_ns, closed_ns;
    bool non_ipv4_allow, return_pass;
    uint8_t buf[65536]; /* the rewritten packet */
};

/* Outbound mapping as stored. */
struct nat_map {
    uint64_t last_ns;
    uint64_t ticket; /* its age-queue entry */
    uint16_t ext_port;
    uint8_t fin_out, fin_in;
    uint8_t pad[4];
};

/* Inbound mapping as stored: the inside endpoint. */
struct nat_back {
    uint8_t ip[4];
    uint16_t port;
    uint8_t pad[2];
};

/* A returned port as the free list holds it. */
struct nat_free {
    uint64_t released_ns;
    uint16_t port;
    uint8_t pad[6];
};

/* A parsed IPv4 packet: offsets into the frame and the flow's endpoints. */
struct view {
    size_t l3, l4, l4len; /* l4len: L4 bytes per the IP header */
    bool full;            /* the capture holds every L4 byte */
    uint8_t proto, flags; /* TCP flags */
    uint8_t icmp_type;
    const uint8_t *src, *dst;
    uint16_t sport, dport; /* ICMP echo: the id in both */
};

enum drop_reason { DR_TRUNCATED, DR_IHL, DR_FRAGMENT, DR_OPTIONS, DR_EXHAUSTED, DR_NREASONS };
static const char *const drop_names[] = {"truncated", "bad_ihl", "fragment", "ip_options",
                                         "ports_exhausted"};

/* ---- configuration ---- */

static int parse_ipv4(const struct chain_node *c, const char *key, bool cidr, uint8_t a[4],
                      unsigned *bits, struct rw_err *e)
{
    struct chain_addr x;
    int rc = chain_node_addr(c, key, 1, CHAIN_ADDR_V4 | (cidr ? CHAIN_ADDR_PREFIX : 0), &x, e);
    if (rc)
        return rc;
    memcpy(a, x.addr, 4);
    if (bits)
        *bits = x.bits;
    return 0;
}

static int parse_range(const struct chain_node *c, struct nat *n, struct rw_err *e)
{
    n->lo = 1024, n->hi = 65535;
    return chain_node_ports(c, "ports", 1, 65535, &n->lo, &n->hi, e);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool in_prefix(const struct nat *n, const uint8_t *a)
{
    return (be32(a) & n->inside_mask) == (be32(n->inside) & n->inside_mask);
}

static int nat_init(void *self, const struct chain_node *cfg, struct rw_err *e)
{
    static const char *const keys[] = {
        "inside",       "external",           "ports", "non_ipv4", "untranslated_return",
        "idle_timeout", "tcp_closed_timeout", NULL};
    static const char *const verdicts[] = {"drop", "allow", NULL};
    static const char *const ret[] = {"drop", "pass", NULL};
    struct nat *n = self;
    unsigned bits;
    int nonip, rp, rc;
    uint64_t idle, closed;
    if (!cfg)
        return rw_errf(e, RW_EINVAL, "nat: config with inside and external is required");
    if ((rc = chain_node_want(cfg, CHAIN_MAP, e)) || (rc = chain_node_keys(cfg, keys, e)) ||
        (rc = parse_ipv4(cfg, "inside", true, n->inside, &bits, e)) ||
        (rc = parse_ipv4(cfg, "external", false, n->ext, NULL, e)) ||
        (rc = parse_range(cfg, n, e)) ||
        (rc = chain_node_enum(cfg, "non_ipv4", verdicts, 1, &nonip, e)) ||
        (rc = chain_node_enum(cfg, "untranslated_return", ret, 1, &rp, e)) ||
        (rc = chain_node_u64(cfg, "idle_timeout", 1, 86400 * 7, 300, &idle, e)) ||
        (rc = chain_node_u64(cfg, "tcp_closed_timeout", 1, 3600, 10, &closed, e)))
        return rc;
    n->inside_mask = bits ? ~0u << (32 - bits) : 0;
    if (in_prefix(n, n->ext))
        return chain_node_errf(cfg, "external", e, "the external address is inside 'inside'");
    n->non_ipv4_allow = nonip == 1;
    n->return_pass = rp == 1;
    n->idle_ns = idle * 1000000000ull;
    n->closed_ns = closed * 1000000000ull;
    return 0;
}

/* ---- parsing ---- */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

/* Offset of the IPv4 header behind the frame's tags (the one decoder's answer),
 * 0 when not IPv4. The header itself is checked by parse(), which names what is
 * wrong with it (truncated, bad IHL, options, fragment) in the drop counters. */
static size_t l3_offset(const uint8_t *d, uint32_t len)
{
    struct rw_pkt pk;
    rw_pkt_decode(d, len, &pk);
    return pk.ethertype == 0x0800 ? pk.l3 : 0;
}

/* Checks the IPv4 and L4 headers; returns -1 when fine, else the drop reason. */
static int parse_l4(const uint8_t *d, uint32_t len, struct view *v)
{
    const uint8_t *l4 = d + v->l4;
    size_t have = len - v->l4;
    if (v->proto == IPPROTO_TCP) {
        if (have < 20 || (l4[12] >> 4) < 5 || (size_t)(l4[12] >> 4) * 4 > v->l4len)
            return DR_TRUNCATED;
        v->sport = be16(l4), v->dport = be16(l4 + 2), v->flags = l4[13];
    } else if (v->proto == IPPROTO_UDP) {
        if (have < 8 || v->l4len < 8)
            return DR_TRUNCATED;
        v->sport = be16(l4), v->dport = be16(l4 + 2);
    } else if (v->proto == IPPROTO_ICMP) {
        if (have < 8 || v->l4len < 8)
            return DR_TRUNCATED;
        v->icmp_type = l4[0];
        v->sport = v->dport = be16(l4 + 4);
    }
    return -1;
}

static int parse(const uint8_t *d, uint32_t len, size_t l3, struct view *v)
{
    memset(v, 0, sizeof(*v));
    v->l3 = l3;
    if (len < l3 + 20 || len > 65536)
        return DR_TRUNCATED;
    const uint8_t *ip = d + l3;
    v->proto = ip[9];
    v->src = ip + 12, v->dst = ip + 16;
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4, tot = be16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || ihl > tot || len < l3 + ihl)
        return DR_IHL;
    if (ihl > 20)
        return DR_OPTIONS;
    if (be16(ip + 6) & 0x3fff)
        return DR_FRAGMENT;
    v->l4 = l3 + ihl;
    v->l4len = tot - ihl;
    v->full = len >= l3 + tot;
    return parse_l4(d, len, v);
}

/* ---- keys and events ---- */

static void out_key(uint8_t k[NAT_OKEY], uint8_t proto, const uint8_t *in_ip, uint16_t in_port,
                    const uint8_t *rem_ip, uint16_t rem_port)
{
    memset(k, 0, NAT_OKEY);
    k[0] = proto;
    memcpy(k + 1, in_ip, 4);
    put16(k + 5, in_port);
    memcpy(k + 7, rem_ip, 4);
    put16(k + 11, rem_port);
}

static void in_key(uint8_t k[NAT_IKEY], const uint8_t okey[NAT_OKEY], uint16_t ext_port)
{
    memset(k, 0, NAT_IKEY);
    k[0] = okey[0];
    put16(k + 1, ext_port);
    memcpy(k + 3, okey + 7, 6);
}

static struct store_key skey(uint8_t scope, uint16_t obj, const void *b, size_t len)
{
    return (struct store_key){.scope = scope, .object = obj, .bytes = b, .len = len};
}

static const char *proto_name(uint8_t p)
{
    return p == IPPROTO_TCP ? "tcp" : p == IPPROTO_UDP ? "udp" : "icmp";
}

static void endpoint(char *buf, size_t n, const uint8_t *ip, uint16_t port)
{
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, ip, a, sizeof(a));
    snprintf(buf, n, "%s:%u", a, port);
}

/* nat.map / nat.unmap: protocol, internal, external and remote endpoints. */
static int map_event(const struct nat *n, struct nf_env *env, const char *type,
                     const uint8_t okey[NAT_OKEY], uint16_t ext_port, const char *reason)
{
    char in[32], ex[32], rem[32], f[256];
    endpoint(in, sizeof(in), okey + 1, be16(okey + 5));
    endpoint(ex, sizeof(ex), n->ext, ext_port);
    endpoint(rem, sizeof(rem), okey + 7, be16(okey + 11));
    snprintf(
        f, sizeof(f),
        "\"proto\": \"%s\", \"internal\": \"%s\", \"external\": \"%s\", \"remote\": \"%s\"%s%s%s",
        proto_name(okey[0]), in, ex, rem, reason ? ", \"reason\": \"" : "", reason ? reason : "",
        reason ? "\"" : "");
    return nf_alert(env, type, f);
}

/* Counts a drop (SHARED counter) and raises nat.drop with the running total. */
static int drop(struct nf_env *env, enum drop_reason r, const struct view *v)
{
    uint32_t kb = (uint32_t)r;
    struct store_key k = skey(STORE_SHARED, NAT_OBJ_DROPS, &kb, 4);
    int64_t total;
    int rc = nf_incr(env, &k, 1, &total);
    if (rc || (rc = nf_count(env, drop_names[r], 1)))
        return rc;
    char f[160], src[32] = "?";
    if (v && v->src)
        endpoint(src, sizeof(src), v->src, v->sport);
    snprintf(f, sizeof(f), "\"reason\": \"%s\", \"source\": \"%s\", \"count\": %lld", drop_names[r],
             src, (long long)total);
    return nf_alert(env, "nat.drop", f);
}

#define DQ_NO_MAPPING 100
#define DQ_NOT_NAT    101
#define DQ_NON_IPV4   102
#define DQ_ICMP_OTHER 103

/* Drops counted blind, without an event: unmatched inbound, unsupported ICMP... */
static int drop_quiet(struct nf_env *env, uint32_t code)
{
    struct store_key k = skey(STORE_SHARED, NAT_OBJ_DROPS, &code, 4);
    int rc = nf_incr(env, &k, 1, NULL);
    return rc ? rc : nf_count(env, code == DQ_NO_MAPPING ? "no_mapping" : "unsupported", 1);
}

/* ---- the port pool and mappings ---- */

/* A returned port, oldest first. Its release time must not be later than this
 * packet's: with several instances, one that lags in packet time must not take a
 * port another released "in its future", or the two flows would overlap on that
 * port in the chain's output, which is in packet order. Such a port goes back to
 * the tail and counts as none. */
static int pop_free(struct nf_env *env, uint16_t *port, bool *got)
{
    uint32_t z = 0;
    struct store_key k = skey(STORE_SHARED, NAT_OBJ_FREE, &z, 4);
    struct nat_free f;
    size_t len;
    int rc = nf_pop(env, &k, &f, sizeof(f), &len, got);
    if (rc || !*got)
        return rc;
    if (len != sizeof(f) || f.released_ns > nf_now(env)) {
        *got = false;
        return len == sizeof(f) ? nf_push(env, &k, &f, sizeof(f)) : 0;
    }
    *port = f.port;
    return 0;
}

static int port_alloc(const struct nat *n, struct nf_env *env, uint16_t *port, bool *got)
{
    uint32_t z = 0;
    struct store_key k = skey(STORE_SHARED, NAT_OBJ_CURSOR, &z, 4);
    int64_t used;
    int rc = nf_incr(env, &k, 1, &used);
    if (rc)
        return rc;
    if (used >= 1 && used <= (int64_t)n->hi - n->lo + 1) {
        *port = (uint16_t)(n->lo + used - 1);
        *got = true;
        return 0;
    }
    return pop_free(env, port, got);
}

static int release(const struct nat *n, struct nf_env *env, const uint8_t okey[NAT_OKEY],
                   uint16_t ext_port, const char *reason)
{
    _Alignas(4) uint8_t ik[NAT_IKEY];
    uint32_t z = 0;
    in_key(ik, okey, ext_port);
    struct nat_free b = {.released_ns = nf_now(env), .port = ext_port};
    struct store_key ko = skey(STORE_FLOW, NAT_OBJ_OUT, okey, NAT_OKEY),
                     ki = skey(STORE_FLOW, NAT_OBJ_IN, ik, NAT_IKEY),
                     kf = skey(STORE_SHARED, NAT_OBJ_FREE, &z, 4);
    int rc;
    if ((rc = nf_del(env, &ko)) || (rc = nf_del(env, &ki)) ||
        (rc = nf_push(env, &kf, &b, sizeof(b))))
        return rc;
    return map_event(n, env, "nat.unmap", okey, ext_port, reason);
}

static bool expired(const struct nat *n, const struct nat_map *m, uint64_t now)
{
    uint64_t limit = m->fin_out && m->fin_in ? n->closed_ns : n->idle_ns;
    return nf_quiet(now, m->last_ns, limit);
}

static int get_map(struct nf_env *env, const uint8_t okey[NAT_OKEY], struct nat_map *m, bool *found)
{
    struct store_key k = skey(STORE_FLOW, NAT_OBJ_OUT, okey, NAT_OKEY);
    size_t len;
    int rc = nf_get(env, &k, m, sizeof(*m), &len, found);
    if (!rc && *found && len != sizeof(*m))
        *found = false;
    return rc;
}

/* An old outbound key of the age queue: alive, or released now when idle (its
 * port goes back to the pool, nat.unmap says so). */
static int nat_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                     enum nf_age_verdict *v)
{
    struct store_key k = skey(STORE_FLOW, NAT_OBJ_OUT, key, len);
    struct nat_map m;
    bool cur;
    int rc = nf_age_object(env, &k, &m, sizeof(m), offsetof(struct nat_map, ticket), ticket, &cur);
    *v = cur && !expired(self, &m, nf_now(env)) ? NF_AGE_KEEP : NF_AGE_GONE;
    return rc || !cur || *v == NF_AGE_KEEP || len != NAT_OKEY
               ? rc
               : release(self, env, key, m.ext_port, "idle");
}

static const struct nf_aging nat_aging = {.object = NAT_OBJ_AGE, .judge = nat_judge};

/* A new outbound flow: a port, both mappings, the age entry, nat.map. */
static int map_new(struct nat *n, struct nf_env *env, const struct view *v,
                   const uint8_t okey[NAT_OKEY], struct nat_map *m, bool *ok)
{
    int rc;
    uint16_t port = 0;
    *m = (struct nat_map){.last_ns = nf_now(env)};
    /* The age queue first: idle flows it releases may give this one its port. */
    if ((rc = nf_age(env, &nat_aging, n, okey, NAT_OKEY, &m->ticket)) ||
        (rc = port_alloc(n, env, &port, ok)) || !*ok)
        return rc;
    m->ext_port = port;
    struct nat_back b = {.port = v->sport};
    memcpy(b.ip, v->src, 4);
    _Alignas(4) uint8_t ik[NAT_IKEY];
    in_key(ik, okey, port);
    struct store_key ko = skey(STORE_FLOW, NAT_OBJ_OUT, okey, NAT_OKEY),
                     ki = skey(STORE_FLOW, NAT_OBJ_IN, ik, NAT_IKEY);
    if ((rc = nf_put(env, &ko, m, sizeof(*m))) || (rc = nf_put(env, &ki, &b, sizeof(b))))
        return rc;
    return map_event(n, env, "nat.map", okey, port, NULL);
}

/* Applies a packet of the flow to its state: FIN flags, last-seen, and whether
 * the flow ends with it (*end: the reason). */
static int track(struct nf_env *env, const uint8_t okey[NAT_OKEY], struct nat_map *m,
                 const struct view *v, bool outbound, const char **end)
{
    *end = NULL;
    if (v->proto == IPPROTO_TCP && (v->flags & 0x04)) {
        *end = "reset";
        return 0;
    }
    bool closing = m->fin_out && m->fin_in;
    uint8_t *fin = outbound ? &m->fin_out : &m->fin_in;
    bool newfin = v->proto == IPPROTO_TCP && (v->flags & 0x01) && !*fin;
    if (closing && v->proto == IPPROTO_TCP && (v->flags & 0x11) == 0x10) {
        *end = "closed";
        return 0;
    }
    if (newfin)
        *fin = 1;
    uint64_t now = nf_now(env);
    bool stale = now > m->last_ns && now - m->last_ns >= NAT_TOUCH_NS;
    if (stale)
        m->last_ns = now;
    struct store_key k = skey(STORE_FLOW, NAT_OBJ_OUT, okey, NAT_OKEY);
    return newfin || stale ? nf_put(env, &k, m, sizeof(*m)) : 0;
}

/* ---- rewriting ---- */

/* RFC 1624 eqn. 3 over 16-bit words: the checksum at ck after old -> new. */
static void cksum_adjust(uint8_t *ck, const uint8_t *old, const uint8_t *new, size_t n)
{
    uint32_t s = (uint16_t)~be16(ck);
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint16_t)~be16(old + i) + (uint32_t)be16(new + i);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    put16(ck, (uint16_t)~s);
}

/* Sets the L4 checksum after the addresses/ports changed: recomputed over the
 * whole segment with DPDK's helpers, or adjusted when the capture is cut short. */
static void l4_cksum(uint8_t *d, const struct view *v, const uint8_t old[12], const uint8_t new[12])
{
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(void *)(d + v->l3);
    uint8_t *l4 = d + v->l4;
    size_t off = v->proto == IPPROTO_TCP ? 16 : v->proto == IPPROTO_UDP ? 6 : 2;
    if (v->proto == IPPROTO_UDP && !be16(l4 + 6))
        return; /* no checksum */
    if (!v->full) {
        if (v->proto == IPPROTO_ICMP)
            cksum_adjust(l4 + 2, old + 8, new + 8, 2); /* the echo id */
        else
            cksum_adjust(l4 + off, old, new, 12); /* addresses and ports */
        return;
    }
    memset(l4 + off, 0, 2);
    uint16_t ck = v->proto == IPPROTO_ICMP ? (uint16_t)~rte_raw_cksum(l4, v->l4len)
                                           : rte_ipv4_udptcp_cksum(ip, l4);
    memcpy(l4 + off, &ck, 2);
}

/* Copies the packet, rewrites src (outbound) or dst (inbound) address and port,
 * fixes the checksums and emits it. */
static int rewrite(struct nat *n, struct nf_env *env, const struct nf_pkt *p, const struct view *v,
                   bool outbound, const uint8_t *ip4, uint16_t port)
{
    uint8_t *d = n->buf;
    memcpy(d, p->data, p->len);
    uint8_t *addr = d + v->l3 + (outbound ? 12 : 16), *l4 = d + v->l4;
    uint8_t *pp = v->proto == IPPROTO_ICMP ? l4 + 4 : l4 + (outbound ? 0 : 2);
    uint8_t old[12], new[12]; /* src, dst, and the two port words (ICMP: id twice) */
    memcpy(old, d + v->l3 + 12, 8);
    memcpy(old + 8, v->proto == IPPROTO_ICMP ? l4 + 4 : l4, 2);
    memcpy(old + 10, v->proto == IPPROTO_ICMP ? l4 + 4 : l4 + 2, 2);
    memcpy(addr, ip4, 4);
    put16(pp, port);
    memcpy(new, d + v->l3 + 12, 8);
    memcpy(new + 8, v->proto == IPPROTO_ICMP ? l4 + 4 : l4, 2);
    memcpy(new + 10, v->proto == IPPROTO_ICMP ? l4 + 4 : l4 + 2, 2);
    struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(void *)(d + v->l3);
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    l4_cksum(d, v, old, new);
    uint32_t ck = (uint32_t)v->proto << 8 | outbound;
    struct store_key k = skey(STORE_SHARED, NAT_OBJ_PKTS, &ck, 4);
    int rc = nf_incr(env, &k, 1, NULL); /* blind */
    return rc ? rc : nf_emit(env, d, p->len, p->wire_len);
}

/* ---- directions ---- */

static bool opens(const struct view *v)
{
    if (v->proto == IPPROTO_TCP)
        return !(v->flags & 0x04); /* loose: flows that began before the capture too */
    return v->proto == IPPROTO_UDP || v->icmp_type == 8;
}

static int outbound(struct nat *n, struct nf_env *env, const struct nf_pkt *p, const struct view *v)
{
    if (v->proto == IPPROTO_ICMP && v->icmp_type != 8)
        return drop_quiet(env, DQ_ICMP_OTHER);
    _Alignas(4) uint8_t okey[NAT_OKEY];
    uint16_t rport = v->proto == IPPROTO_ICMP ? 0 : v->dport;
    out_key(okey, v->proto, v->src, v->sport, v->dst, rport);
    struct nat_map m;
    bool found, ok = true;
    int rc = get_map(env, okey, &m, &found);
    if (!rc && found && expired(n, &m, nf_now(env))) {
        rc = release(n, env, okey, m.ext_port, "idle");
        found = false;
    }
    if (rc)
        return rc;
    if (!found) {
        if (!opens(v))
            return drop_quiet(env, DQ_NO_MAPPING);
        if ((rc = map_new(n, env, v, okey, &m, &ok)))
            return rc;
        if (!ok)
            return drop(env, DR_EXHAUSTED, v);
    }
    const char *end;
    if ((rc = track(env, okey, &m, v, true, &end)) ||
        (rc = rewrite(n, env, p, v, true, n->ext, m.ext_port)))
        return rc;
    return end ? release(n, env, okey, m.ext_port, end) : 0;
}

/* Return traffic of the flow okey: state, then translated (or passed as is when
 * it already carries the inside address). */
static int inbound_flow(struct nat *n, struct nf_env *env, const struct nf_pkt *p,
                        const struct view *v, const uint8_t okey[NAT_OKEY], uint16_t ext_port,
                        bool translate)
{
    struct nat_map m;
    bool found;
    int rc = get_map(env, okey, &m, &found);
    if (rc)
        return rc;
    if (!found || (ext_port && m.ext_port != ext_port))
        return drop_quiet(env, DQ_NO_MAPPING);
    if (expired(n, &m, nf_now(env))) {
        if ((rc = release(n, env, okey, m.ext_port, "idle")))
            return rc;
        return drop_quiet(env, DQ_NO_MAPPING);
    }
    const char *end;
    if ((rc = track(env, okey, &m, v, false, &end)))
        return rc;
    rc = translate ? rewrite(n, env, p, v, false, okey + 1, be16(okey + 5))
                   : nf_emit(env, p->data, p->len, p->wire_len);
    if (rc)
        return rc;
    return end ? release(n, env, okey, m.ext_port, end) : 0;
}

static int inbound(struct nat *n, struct nf_env *env, const struct nf_pkt *p, const struct view *v)
{
    if (v->proto == IPPROTO_ICMP && v->icmp_type != 0)
        return drop_quiet(env, DQ_ICMP_OTHER);
    uint16_t rport = v->proto == IPPROTO_ICMP ? 0 : v->sport;
    _Alignas(4) uint8_t ik[NAT_IKEY] = {0};
    ik[0] = v->proto;
    put16(ik + 1, v->dport);
    memcpy(ik + 3, v->src, 4);
    put16(ik + 7, rport);
    struct store_key k = skey(STORE_FLOW, NAT_OBJ_IN, ik, NAT_IKEY);
    struct nat_back b;
    size_t len;
    bool found;
    int rc = nf_get(env, &k, &b, sizeof(b), &len, &found);
    if (rc == STORE_EOWNER) /* mapped by another instance (several: see nat_check) */
        return drop_quiet(env, DQ_NO_MAPPING);
    if (rc)
        return rc;
    if (!found || len != sizeof(b))
        return drop_quiet(env, DQ_NO_MAPPING);
    _Alignas(4) uint8_t okey[NAT_OKEY];
    out_key(okey, v->proto, b.ip, b.port, v->src, rport);
    return inbound_flow(n, env, p, v, okey, v->dport, true);
}

/* Return traffic seen before translation (a trace captured inside). */
static int untranslated(struct nat *n, struct nf_env *env, const struct nf_pkt *p,
                        const struct view *v)
{
    if (v->proto == IPPROTO_ICMP && v->icmp_type != 0)
        return drop_quiet(env, DQ_ICMP_OTHER);
    _Alignas(4) uint8_t okey[NAT_OKEY];
    uint16_t rport = v->proto == IPPROTO_ICMP ? 0 : v->sport;
    out_key(okey, v->proto, v->dst, v->dport, v->src, rport);
    return inbound_flow(n, env, p, v, okey, 0, false);
}

static int nat_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    struct nat *n = self;
    size_t l3 = l3_offset(p->data, p->len);
    if (!l3)
        return n->non_ipv4_allow ? nf_emit(env, p->data, p->len, p->wire_len)
                                 : drop_quiet(env, DQ_NON_IPV4);
    struct view v;
    int bad = parse(p->data, p->len, l3, &v);
    if (bad >= 0)
        return drop(env, (enum drop_reason)bad, &v);
    bool src_in = in_prefix(n, v.src), dst_in = in_prefix(n, v.dst);
    bool l4ok = v.proto == IPPROTO_TCP || v.proto == IPPROTO_UDP || v.proto == IPPROTO_ICMP;
    if (src_in && dst_in) /* inside to inside: not the NAT's business */
        return nf_emit(env, p->data, p->len, p->wire_len);
    if (!l4ok)
        return drop_quiet(env, DQ_NOT_NAT);
    if (src_in)
        return outbound(n, env, p, &v);
    if (!memcmp(v.dst, n->ext, 4))
        return inbound(n, env, p, &v);
    if (dst_in && n->return_pass)
        return untranslated(n, env, p, &v);
    return drop_quiet(env, DQ_NOT_NAT);
}

/* Return traffic to the external address carries nothing that names the
 * instance holding its mapping, so no flowspace sends it where the outbound
 * packets went: several instances only work on a trace captured inside the NAT
 * (untranslated_return: pass), where replies still carry the inside address and
 * 5tuple keeps a connection together. On a border, one instance. */
static int nat_check(const struct chain_nf *nf, struct rw_err *e)
{
    static const char *const ret[] = {"drop", "pass", NULL};
    int rp = 1;
    if (nf->instances <= 1)
        return 0;
    struct rw_err ignored; /* a bad value is init's to report, with its line */
    if (nf->config && chain_node_enum(nf->config, "untranslated_return", ret, 1, &rp, &ignored))
        return 0;
    if (!rp)
        return rw_errf(e, RW_EINVAL,
                       "instances: %u NAT instances with untranslated_return: drop (a border): "
                       "return traffic to the external address carries nothing that names the "
                       "instance holding its mapping; use one instance",
                       nf->instances);
    static const int ok[] = {RW_FS_5TUPLE};
    return nf_require_flowspace(nf, ok, 1, "a connection's two directions", e);
}

/* ---- audit (nf_def.audit) ---- */

/* What the NAT's objects say, gathered by one store_scan. */
struct nat_seen {
    const struct nat *n;
    struct nf_audit *a;
    int64_t cursor;
    uint8_t *uses; /* per pool port: how often free or mapped (saturates at 255) */
    uint64_t nfree, nmapped, nback, outside;
    int rc;
};

static void use_port(struct nat_seen *s, uint16_t port)
{
    if (port < s->n->lo || port > s->n->hi) {
        s->outside++;
        return;
    }
    uint8_t *u = &s->uses[port - s->n->lo];
    *u += *u < 255;
}

static int nat_seen_obj(void *arg, const struct store_obj *o)
{
    struct nat_seen *s = arg;
    char in[32], rem[32];
    uint32_t code = 0;
    if (o->klen == 4)
        memcpy(&code, o->key, 4);
    int rc = 0;
    if (o->object == NAT_OBJ_CURSOR && o->type == STORE_T_INT)
        s->cursor = o->i;
    else if (o->object == NAT_OBJ_FREE && o->type == STORE_T_LIST && o->nelem) {
        struct nat_free f;
        if (o->len == sizeof(f)) {
            memcpy(&f, o->val, sizeof(f));
            use_port(s, f.port);
            s->nfree++;
        }
    } else if (o->object == NAT_OBJ_OUT && o->type == STORE_T_BYTES && o->klen == NAT_OKEY &&
               o->len == sizeof(struct nat_map)) {
        /* Summarised by the inside flow, not by the port the pool happened to give. */
        const uint8_t *k = o->key;
        struct nat_map m;
        memcpy(&m, o->val, sizeof(m));
        use_port(s, m.ext_port);
        s->nmapped++;
        endpoint(in, sizeof(in), k + 1, be16(k + 5));
        endpoint(rem, sizeof(rem), k + 7, be16(k + 11));
        rc = nf_audit_line(s->a, "map %s %s %s fin %u/%u last %llu", proto_name(k[0]), in, rem,
                           m.fin_out, m.fin_in, (unsigned long long)m.last_ns);
    } else if (o->object == NAT_OBJ_IN && o->type == STORE_T_BYTES)
        s->nback++;
    else if (o->object == NAT_OBJ_DROPS && o->type == STORE_T_INT)
        rc = nf_audit_line(s->a, "drops %s %lld",
                           code < DR_NREASONS      ? drop_names[code]
                           : code == DQ_NO_MAPPING ? "no_mapping"
                           : code == DQ_NOT_NAT    ? "not_nat"
                           : code == DQ_NON_IPV4   ? "non_ipv4"
                                                   : "icmp_other",
                           (long long)o->i);
    else if (o->object == NAT_OBJ_PKTS && o->type == STORE_T_INT)
        rc = nf_audit_line(s->a, "packets %s %s %lld", proto_name((uint8_t)(code >> 8)),
                           code & 1 ? "out" : "in", (long long)o->i);
    return rc;
}

/* Invariant: the ports handed out fresh (the cursor, up to the pool's size) are
 * each either in the free list or held by one live mapping: never both, never
 * twice, never neither (a leak); no other port is anywhere; and every outbound
 * mapping has its inbound one and no inbound one is left without. */
static int nat_audit(void *self, struct store_client *c, struct nf_audit *a, struct rw_err *e)
{
    const struct nat *n = self;
    uint64_t pool = (uint64_t)n->hi - n->lo + 1;
    struct nat_seen s = {.n = n, .a = a, .uses = calloc(pool, 1)};
    if (!s.uses)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    int rc = store_scan(c, nat_seen_obj, &s);
    if (rc) {
        free(s.uses);
        return rc == RW_ENOMEM ? rw_errf(e, rc, "out of memory")
                               : rw_errf(e, RW_EIO, "%s", store_client_errmsg(c));
    }
    uint64_t handed = s.cursor < 0 ? 0 : (uint64_t)s.cursor < pool ? (uint64_t)s.cursor : pool;
    uint64_t leaked = 0, twice = 0, unhanded = 0;
    long first_leak = -1, first_twice = -1;
    for (uint64_t i = 0; i < pool; i++) {
        if (i < handed && !s.uses[i] && ++leaked == 1)
            first_leak = (long)(n->lo + i);
        if (s.uses[i] > 1 && ++twice == 1)
            first_twice = (long)(n->lo + i);
        if (i >= handed && s.uses[i])
            unhanded++;
    }
    free(s.uses);
    rc = nf_audit_line(a, "ports handed %llu free %llu mapped %llu", (unsigned long long)handed,
                       (unsigned long long)s.nfree, (unsigned long long)s.nmapped);
    if (!rc && leaked)
        rc = nf_audit_broken(a,
                             "nat: %llu of the %llu ports handed out are neither free nor mapped "
                             "(leaked; first %ld)",
                             (unsigned long long)leaked, (unsigned long long)handed, first_leak);
    if (!rc && twice)
        rc = nf_audit_broken(a, "nat: %llu ports are free or mapped more than once (first %ld)",
                             (unsigned long long)twice, first_twice);
    if (!rc && (unhanded || s.outside))
        rc = nf_audit_broken(a,
                             "nat: %llu ports free or mapped that were never handed out, %llu "
                             "outside the pool",
                             (unsigned long long)unhanded, (unsigned long long)s.outside);
    if (!rc && s.nback != s.nmapped)
        rc = nf_audit_broken(a, "nat: %llu outbound mappings but %llu inbound ones",
                             (unsigned long long)s.nmapped, (unsigned long long)s.nback);
    return rc ? rw_errf(e, rc, "out of memory") : 0;
}

/* The external ports are picked from a pool several instances share: verify
 * renames them (by order of first appearance) before it compares runs. */
static int nat_canon(const struct chain_node *config, char *spec, size_t cap, struct rw_err *e)
{
    const char *ext = NULL;
    int rc = chain_node_string(config, "external", 0, &ext, e);
    if (rc)
        return rc;
    int n = snprintf(spec, cap, "%s%s", ext ? "ports:" : "", ext ? ext : "");
    return n < 0 || (size_t)n >= cap ? rw_errf(e, RW_EINVAL, "nat: canon spec too long") : 0;
}

const struct nf_def nf_nat = {
    .type = "nat",
    .check = nat_check,
    .self_size = sizeof(struct nat),
    .init = nat_init,
    .process = nat_process,
    .audit = nat_audit,
    .canon = nat_canon,
};
