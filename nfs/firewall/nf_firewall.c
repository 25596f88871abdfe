/*
 * nf_firewall.c - the stateful firewall: connection tracking, "allow established
 * and related", and first-match rules from the chain file for new connections.
 *
 * State (design.md: Invariants): one per-flow object per connection in the store, keyed by the
 * connection's endpoints in a fixed order, holding which sides sent FIN and the
 * time of the last packet (packet time, from nf_now). A packet of a tracked
 * connection passes; ICMP errors that quote a tracked connection pass (related);
 * anything else is judged by the rules, and only a packet that can open a
 * connection (TCP SYN without ACK, UDP, ICMP echo request) creates an entry. A
 * connection ends on RST, or after idle_timeout of packet time; FIN on both sides
 * only shortens that to close_timeout, so the last ACK still passes.
 *
 * config:
 *   default: allow | drop          (drop)
 *   non_ip: allow | drop           (allow: ARP and friends)
 *   idle_timeout: SECONDS          (300)
 *   rules: [ {action, proto: tcp|udp|icmp|any, src: CIDR, dst: CIDR,
 *             src_port: N | N-M, dst_port: N | N-M} ]
 */
#include "nf.h"
#include "rw_flow.h"
#include "rw_pkt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "store.h"

#define FW_OBJ_CONN         1
#define FW_OBJ_AGE          2 /* the slot's age queue of connections */
#define FW_MAX_RULES        256
#define FW_CLOSE_TIMEOUT_NS 10000000000ull
#define FW_TOUCH_NS         1000000000ull /* last-seen is kept to the second: timeouts are seconds */

struct fw_rule {
    bool allow;
    uint8_t proto; /* 0: any */
    uint8_t family;
    uint8_t src[16], dst[16];
    uint8_t src_bits, dst_bits; /* prefix lengths; 0 matches all */
    uint16_t sport_lo, sport_hi, dport_lo, dport_hi;
};

struct firewall {
    bool default_allow, non_ip_allow;
    uint64_t idle_ns;
    struct fw_rule rules[FW_MAX_RULES];
    unsigned nrules;
};

/* A tracked connection as stored. */
struct fw_conn {
    uint64_t last_ns;
    uint64_t ticket;        /* its age-queue entry (nf_age) */
    uint8_t fin_lo, fin_hi; /* FIN seen from the lower / higher endpoint */
    uint8_t pad[6];
};

/* ---- configuration ---- */

/* src or dst of a rule: an address or prefix, of the rule's one family. */
static int parse_cidr(const struct chain_node *r, const char *key, uint8_t *family,
                      uint8_t addr[16], uint8_t *bits, struct rw_err *e)
{
    struct chain_addr a;
    int rc = chain_node_addr(r, key, 0, CHAIN_ADDR_V4 | CHAIN_ADDR_V6 | CHAIN_ADDR_PREFIX, &a, e);
    if (rc || !a.family)
        return rc;
    if (*family && *family != a.family)
        return chain_node_errf(r, key, e, "'%s' is not of the family of the rule's other address",
                               chain_node_scalar(chain_node_get(r, key)));
    *family = a.family;
    memcpy(addr, a.addr, 16);
    *bits = a.bits;
    return 0;
}

static int parse_rule(const struct chain_node *r, struct fw_rule *fr, struct rw_err *e)
{
    static const char *const keys[] = {"action",   "proto",    "src", "dst",
                                       "src_port", "dst_port", NULL};
    static const char *const actions[] = {"drop", "allow", NULL};
    static const char *const protos[] = {"any", "tcp", "udp", "icmp", NULL};
    static const uint8_t proto_num[] = {0, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP};
    int action, proto, rc;
    if ((rc = chain_node_want(r, CHAIN_MAP, e)) || (rc = chain_node_keys(r, keys, e)) ||
        (rc = chain_node_enum(r, "action", actions, -1, &action, e)) ||
        (rc = chain_node_enum(r, "proto", protos, 0, &proto, e)))
        return rc;
    if (action < 0)
        return chain_node_errf(r, "action", e, "a rule needs an action (allow or drop)");
    fr->allow = action == 1;
    fr->proto = proto_num[proto];
    fr->sport_lo = fr->dport_lo = 0;
    fr->sport_hi = fr->dport_hi = 65535;
    if ((rc = parse_cidr(r, "src", &fr->family, fr->src, &fr->src_bits, e)) ||
        (rc = parse_cidr(r, "dst", &fr->family, fr->dst, &fr->dst_bits, e)) ||
        (rc = chain_node_ports(r, "src_port", 0, 65535, &fr->sport_lo, &fr->sport_hi, e)) ||
        (rc = chain_node_ports(r, "dst_port", 0, 65535, &fr->dport_lo, &fr->dport_hi, e)))
        return rc;
    return 0;
}

static int fw_init(void *self, const struct chain_node *cfg, struct rw_err *e)
{
    static const char *const keys[] = {"default", "non_ip", "idle_timeout", "rules", NULL};
    static const char *const verdicts[] = {"drop", "allow", NULL};
    struct firewall *fw = self;
    int def, nonip, rc;
    uint64_t idle;
    if ((cfg &&
         ((rc = chain_node_want(cfg, CHAIN_MAP, e)) || (rc = chain_node_keys(cfg, keys, e)))) ||
        (rc = chain_node_enum(cfg, "default", verdicts, 0, &def, e)) ||
        (rc = chain_node_enum(cfg, "non_ip", verdicts, 1, &nonip, e)) ||
        (rc = chain_node_u64(cfg, "idle_timeout", 1, 86400 * 7, 300, &idle, e)))
        return rc;
    fw->default_allow = def == 1;
    fw->non_ip_allow = nonip == 1;
    fw->idle_ns = idle * 1000000000ull;
    const struct chain_node *rules = chain_node_get(cfg, "rules");
    if (!rules)
        return 0;
    if ((rc = chain_node_want(rules, CHAIN_SEQ, e)))
        return rc;
    if (chain_node_count(rules) > FW_MAX_RULES)
        return chain_node_errf(cfg, "rules", e, "at most %d rules", FW_MAX_RULES);
    for (size_t i = 0; i < chain_node_count(rules); i++)
        if ((rc = parse_rule(chain_node_item(rules, i), &fw->rules[fw->nrules++], e)))
            return rc;
    return 0;
}

/* ---- the packet path ---- */

static bool prefix_match(const uint8_t *a, const uint8_t *p, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, p, full))
        return false;
    return !rest || ((a[full] ^ p[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static bool rule_match(const struct fw_rule *r, const struct rw_flow *f)
{
    if ((r->proto && r->proto != f->proto) || (r->family && r->family != f->family))
        return false;
    if (!prefix_match(f->src, r->src, r->src_bits) || !prefix_match(f->dst, r->dst, r->dst_bits))
        return false;
    return f->sport >= r->sport_lo && f->sport <= r->sport_hi && f->dport >= r->dport_lo &&
           f->dport <= r->dport_hi;
}

static bool rules_allow(const struct firewall *fw, const struct rw_flow *f)
{
    for (unsigned i = 0; i < fw->nrules; i++)
        if (rule_match(&fw->rules[i], f))
            return fw->rules[i].allow;
    return fw->default_allow;
}

/* The connection key: protocol and both endpoints, lower endpoint first. */
static size_t conn_key(const struct rw_flow *f, uint8_t out[40], bool *from_lo)
{
    int c = memcmp(f->src, f->dst, 16);
    *from_lo = c < 0 || (c == 0 && f->sport <= f->dport);
    const uint8_t *lo = *from_lo ? f->src : f->dst, *hi = *from_lo ? f->dst : f->src;
    uint16_t lp = *from_lo ? f->sport : f->dport, hp = *from_lo ? f->dport : f->sport;
    out[0] = f->family;
    out[1] = f->proto;
    memcpy(out + 2, lo, 16);
    memcpy(out + 18, hi, 16);
    out[34] = (uint8_t)(lp >> 8), out[35] = (uint8_t)lp;
    out[36] = (uint8_t)(hp >> 8), out[37] = (uint8_t)hp;
    return 38;
}

/* Whether a packet may open a connection: a TCP SYN without ACK, an ICMP echo
 * request, any UDP datagram or ICMPv6 message (neighbour discovery included). Decoded where the
 * frame says its headers are (VLAN tags, IPv4 options, IPv6 extension headers), IPv4 and IPv6
 * alike: the IP header read at byte 14 misread every tagged frame and all of IPv6 TCP. */
static bool can_open(const struct rw_pkt *pk, const uint8_t *d)
{
    if (pk->proto == IPPROTO_TCP)
        return (rw_pkt_tcp_flags(pk, d) & 0x12) == 0x02;
    if (pk->proto == IPPROTO_ICMP)
        return rw_pkt_l4_len(pk) >= 1 && d[pk->l4] == 8;
    return pk->proto == IPPROTO_UDP || pk->proto == IPPROTO_ICMPV6;
}

/* For an ICMP or ICMPv6 error (unreachable, time exceeded, parameter problem; ICMPv6
 * packet too big too), the connection it quotes: the quoted IP header and the start
 * of its L4 header, rebuilt as a frame to decode. */
static bool icmp_quoted_flow(const struct rw_pkt *pk, const uint8_t *d, struct rw_flow *q)
{
    uint32_t n = rw_pkt_l4_len(pk);
    if (n < 8 + 20)
        return false;
    uint8_t type = d[pk->l4];
    bool error = pk->proto == IPPROTO_ICMP     ? type == 3 || type == 11 || type == 12
                 : pk->proto == IPPROTO_ICMPV6 ? type >= 1 && type <= 4
                                               : false;
    if (!error)
        return false;
    uint8_t frame[14 + 128];
    size_t inner = n - 8 < sizeof(frame) - 14 ? n - 8 : sizeof(frame) - 14;
    memset(frame, 0, 14);
    frame[12] = pk->proto == IPPROTO_ICMP ? 0x08 : 0x86;
    frame[13] = pk->proto == IPPROTO_ICMP ? 0x00 : 0xdd;
    memcpy(frame + 14, d + pk->l4 + 8, inner);
    return rw_flow_parse(frame, 14 + inner, q);
}

static int lookup(struct nf_env *env, const struct rw_flow *f, struct store_key *k, uint8_t kb[40],
                  bool *from_lo, struct fw_conn *c, bool *found)
{
    k->scope = STORE_FLOW;
    k->object = FW_OBJ_CONN;
    k->bytes = kb;
    k->len = conn_key(f, kb, from_lo);
    size_t len;
    int rc = nf_get(env, k, c, sizeof(*c), &len, found);
    if (!rc && *found && len != sizeof(*c))
        *found = false;
    return rc;
}

/* Verdict counts are the worker's (its status block counts packets in, out and
 * dropped per instance): a store counter per packet would cost a store op per
 * packet for what the runtime already knows. */
static int pass(struct nf_env *env, const struct nf_pkt *p)
{
    return nf_emit(env, p->data, p->len, p->wire_len);
}

/* A packet of a tracked connection: update FIN/RST/idle state and pass it. */
static int established(const struct firewall *fw, struct nf_env *env, const struct nf_pkt *p,
                       const struct rw_pkt *pk, struct store_key *k, bool from_lo,
                       struct fw_conn *c)
{
    (void)fw;
    uint8_t fl = rw_pkt_tcp_flags(pk, p->data);
    int rc;
    if (fl & 0x04) { /* RST ends it */
        rc = nf_del(env, k);
    } else {
        bool fin = (fl & 0x01) && !*(from_lo ? &c->fin_lo : &c->fin_hi);
        if (fin)
            *(from_lo ? &c->fin_lo : &c->fin_hi) = 1;
        bool stale = nf_now(env) > c->last_ns && nf_now(env) - c->last_ns >= FW_TOUCH_NS;
        if (stale)
            c->last_ns = nf_now(env);
        rc = fin || stale ? nf_put(env, k, c, sizeof(*c)) : 0;
    }
    return rc ? rc : pass(env, p);
}

static bool expired(const struct firewall *fw, const struct fw_conn *c, uint64_t now)
{
    uint64_t limit = c->fin_lo && c->fin_hi ? FW_CLOSE_TIMEOUT_NS : fw->idle_ns;
    return nf_quiet(now, c->last_ns, limit);
}

/* An old connection of the age queue: alive, or ended now when idle (a
 * connection that just stopped sending would otherwise stay for ever). */
static int fw_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                    enum nf_age_verdict *v)
{
    struct store_key k = {.scope = STORE_FLOW, .object = FW_OBJ_CONN, .bytes = key, .len = len};
    struct fw_conn c;
    bool cur;
    int rc = nf_age_object(env, &k, &c, sizeof(c), offsetof(struct fw_conn, ticket), ticket, &cur);
    *v = cur && !expired(self, &c, nf_now(env)) ? NF_AGE_KEEP : NF_AGE_GONE;
    return rc || !cur || *v == NF_AGE_KEEP ? rc : nf_del(env, &k);
}

static const struct nf_aging fw_aging = {.object = FW_OBJ_AGE, .judge = fw_judge};

static int fw_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    struct firewall *fw = self;
    struct rw_flow f, q;
    struct rw_pkt pk;
    if (!rw_pkt_decode(p->data, p->len, &pk) || !rw_flow_parse(p->data, p->len, &f))
        return fw->non_ip_allow ? pass(env, p) : nf_count(env, "non_ip", 1);
    struct store_key k;
    uint8_t kb[40];
    bool from_lo, found;
    struct fw_conn c;
    int rc = lookup(env, &f, &k, kb, &from_lo, &c, &found);
    if (rc)
        return rc;
    if (found && !expired(fw, &c, nf_now(env)))
        return established(fw, env, p, &pk, &k, from_lo, &c);
    if (icmp_quoted_flow(&pk, p->data, &q)) { /* related */
        struct store_key qk;
        uint8_t qkb[40];
        bool qlo, qfound;
        struct fw_conn qc;
        /* The error travels on its own addresses, so the flowspace may have sent
         * it to another instance than its connection's: that table is not ours
         * to read (the store refuses), and the error is judged as unrelated. */
        rc = lookup(env, &q, &qk, qkb, &qlo, &qc, &qfound);
        if (rc && rc != STORE_EOWNER)
            return rc;
        if (!rc && qfound)
            return pass(env, p);
    }
    if (!rules_allow(fw, &f))
        return nf_count(env, "denied", 1);
    if (!can_open(&pk, p->data))
        return nf_count(env, "not_new", 1); /* allowed, but not a connection's start */
    /* An expired entry is taken over with its place in the age queue. */
    struct fw_conn nc = {.last_ns = nf_now(env), .ticket = found ? c.ticket : 0};
    if ((!found && (rc = nf_age(env, &fw_aging, fw, k.bytes, k.len, &nc.ticket))) ||
        (rc = nf_put(env, &k, &nc, sizeof(nc))))
        return rc;
    return pass(env, p);
}

/* A connection's two directions must meet in one instance's table. */
static int fw_check(const struct chain_nf *nf, struct rw_err *e)
{
    static const int ok[] = {RW_FS_5TUPLE, RW_FS_HOST_PAIR};
    return nf_require_flowspace(nf, ok, 2, "a connection's two directions", e);
}

const struct nf_def nf_firewall = {
    .check = fw_check,
    .type = "firewall",
    .self_size = sizeof(struct firewall),
    .init = fw_init,
    .process = fw_process,
};
