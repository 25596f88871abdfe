/*
 * nf_lb.c - the load balancer: connections to a virtual IP and port (VIP) go to
 * one of several backends, the one with the fewest active connections when the
 * connection starts; every later packet of the connection goes to the same
 * backend (affinity); the backend's replies are rewritten to come from the VIP;
 * a connection's slot is released when it ends (RST; the last ACK after FIN both
 * ways, so that ACK still reaches the same backend; or idle).
 *
 * State (design.md: Invariants), all in the store:
 *   - per backend, its number of active connections: shared counters, read to
 *     choose (recorded reads, so a replay chooses the same) and updated with
 *     blind increments;
 *   - per connection, its backend and FIN state, keyed by the client's endpoint:
 *     shared scope, because the two directions of a connection hash to different
 *     instances under every flowspace (the backend is not the VIP), and each must
 *     find the mapping.
 * Instances choosing at the same moment may pick the same backend: balance is
 * kept within a bound, not exactly (the counters are shared and exact).
 *
 * config:
 *   vip: ADDRESS, port: N (0: any), proto: tcp | udp
 *   backends: [ADDRESS, ...]      (IPv4, 1..32)
 *   idle_timeout: SECONDS         (300)
 */
#include "nf.h"
#include "rw_flow.h"
#include "rw_pkt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <rte_ip.h>
#include <rte_jhash.h>

#include "chain.h"
#include "store.h"

#define LB_OBJ_ACTIVE   1 /* per backend: active connections */
#define LB_OBJ_CONN     2 /* per connection: its backend */
#define LB_OBJ_AGE      3 /* the slot's age queue of connections */
#define LB_MAX_BACKENDS 32

struct lb {
    uint8_t vip[4];
    uint16_t port;
    uint8_t proto;
    uint8_t backends[LB_MAX_BACKENDS][4];
    unsigned n;
    uint64_t idle_ns;
    uint8_t buf[65536]; /* the rewritten packet: any frame a link carries (max_frame) */
};

struct lb_conn {
    uint64_t last_ns;
    uint64_t ticket; /* its age-queue entry */
    uint8_t backend;
    uint8_t fin_client, fin_backend;
    uint8_t pad[5];
};

/* ---- configuration ---- */

static int parse_addr(const struct chain_node *map, const char *key, const struct chain_node *n,
                      uint8_t out[4], struct rw_err *e)
{
    struct chain_addr a;
    int rc = chain_node_addr_of(map, key, n, CHAIN_ADDR_V4, &a, e);
    if (!rc)
        memcpy(out, a.addr, 4);
    return rc;
}

static int lb_init(void *self, const struct chain_node *cfg, struct rw_err *e)
{
    static const char *const keys[] = {"vip", "port", "proto", "backends", "idle_timeout", NULL};
    static const char *const protos[] = {"tcp", "udp", NULL};
    struct lb *lb = self;
    int proto, rc;
    uint64_t port, idle;
    if (!cfg)
        return rw_errf(e, RW_EINVAL, "lb: config with vip and backends is required");
    if ((rc = chain_node_want(cfg, CHAIN_MAP, e)) || (rc = chain_node_keys(cfg, keys, e)) ||
        (rc = chain_node_u64(cfg, "port", 0, 65535, 0, &port, e)) ||
        (rc = chain_node_enum(cfg, "proto", protos, 0, &proto, e)) ||
        (rc = chain_node_u64(cfg, "idle_timeout", 1, 86400 * 7, 300, &idle, e)))
        return rc;
    const struct chain_node *vip = chain_node_get(cfg, "vip"),
                            *be = chain_node_get(cfg, "backends");
    if (!vip || !be)
        return chain_node_errf(cfg, vip ? "backends" : "vip", e, "missing required key");
    if ((rc = parse_addr(cfg, "vip", vip, lb->vip, e)) || (rc = chain_node_want(be, CHAIN_SEQ, e)))
        return rc;
    if (chain_node_count(be) < 1 || chain_node_count(be) > LB_MAX_BACKENDS)
        return chain_node_errf(cfg, "backends", e, "1 to %d backends", LB_MAX_BACKENDS);
    for (size_t i = 0; i < chain_node_count(be); i++)
        if ((rc = parse_addr(cfg, "backends", chain_node_item(be, i), lb->backends[lb->n++], e)))
            return rc;
    lb->port = (uint16_t)port;
    lb->proto = proto == 0 ? IPPROTO_TCP : IPPROTO_UDP;
    lb->idle_ns = idle * 1000000000ull;
    return 0;
}

/* ---- packets ---- */

struct view {
    struct rte_ipv4_hdr *ip;
    uint32_t l3; /* offset of the IP header in the frame */
    uint8_t *l4;
    uint16_t sport, dport;
    uint8_t flags; /* TCP flags */
};

/* The IPv4 TCP/UDP headers of a writable copy of the packet, where the one
 * decoder finds them (behind VLAN tags, after IPv4 options); a later fragment
 * has none. */
static bool parse(uint8_t *d, uint32_t len, uint8_t proto, struct view *v)
{
    struct rw_pkt pk;
    if (!rw_pkt_decode(d, len, &pk) || pk.family != 4 || pk.proto != proto || !pk.l4 ||
        len - pk.l4 < (proto == IPPROTO_TCP ? 20u : 8u))
        return false;
    v->ip = (struct rte_ipv4_hdr *)(d + pk.l3);
    v->l3 = pk.l3;
    v->l4 = d + pk.l4;
    v->sport = pk.sport;
    v->dport = pk.dport;
    v->flags = rw_pkt_tcp_flags(&pk, d);
    return true;
}

/* Rewrites an address and recomputes the IPv4 and L4 checksums (DPDK's helpers
 * over the whole packet: exact, and packets here are small). */
static void rewrite(struct view *v, uint8_t proto, bool dst, const uint8_t addr[4], uint32_t len)
{
    memcpy(dst ? (void *)&v->ip->dst_addr : (void *)&v->ip->src_addr, addr, 4);
    v->ip->hdr_checksum = 0;
    v->ip->hdr_checksum = rte_ipv4_cksum(v->ip);
    uint8_t *ck = proto == IPPROTO_TCP ? v->l4 + 16 : v->l4 + 6;
    uint16_t tot = rte_be_to_cpu_16(v->ip->total_length);
    size_t ihl = (size_t)(((const uint8_t *)v->ip)[0] & 0x0f) * 4;
    if (v->l3 + (size_t)tot > len || tot < ihl)
        return; /* truncated capture: the L4 checksum cannot be recomputed */
    if (proto == IPPROTO_UDP && !ck[0] && !ck[1])
        return; /* UDP without a checksum stays without */
    ck[0] = ck[1] = 0;
    uint16_t c = rte_ipv4_udptcp_cksum(v->ip, v->l4);
    memcpy(ck, &c, 2);
}

static struct store_key conn_key(const uint8_t client[4], uint16_t cport, uint8_t kb[8])
{
    memcpy(kb, client, 4);
    kb[4] = (uint8_t)(cport >> 8), kb[5] = (uint8_t)cport, kb[6] = kb[7] = 0;
    return (struct store_key){.scope = STORE_SHARED, .object = LB_OBJ_CONN, .bytes = kb, .len = 8};
}

static struct store_key active_key(const uint8_t *backend_index)
{
    return (struct store_key){
        .scope = STORE_SHARED, .object = LB_OBJ_ACTIVE, .bytes = backend_index, .len = 1};
}

/* Least active connections; a tie (all idle, often, with short connections) is
 * broken by the client endpoint's hash, so idle backends share new clients evenly
 * rather than the first one taking them all. */
static int choose(const struct lb *lb, struct nf_env *env, uint32_t client_hash, uint8_t *out)
{
    int64_t load[LB_MAX_BACKENDS], best = INT64_MAX;
    for (unsigned i = 0; i < lb->n; i++) {
        uint8_t idx = (uint8_t)i;
        struct store_key k = active_key(&idx);
        bool found;
        int rc = nf_get_int(env, &k, &load[i], &found);
        if (rc)
            return rc;
        best = load[i] < best ? load[i] : best;
    }
    unsigned ties = 0;
    for (unsigned i = 0; i < lb->n; i++)
        ties += load[i] == best;
    unsigned pick = client_hash % ties;
    for (unsigned i = 0; i < lb->n; i++)
        if (load[i] == best && pick-- == 0) {
            *out = (uint8_t)i;
            break;
        }
    return 0;
}

static int release(struct nf_env *env, const struct store_key *ck, uint8_t backend)
{
    struct store_key ak = active_key(&backend);
    int rc = nf_incr(env, &ak, -1, NULL);
    return rc ? rc : nf_del(env, ck);
}

/* The connection's mapping, if it has one. */
static int lookup(struct nf_env *env, const struct store_key *ck, struct lb_conn *c, bool *found)
{
    size_t len;
    int rc = nf_get(env, ck, c, sizeof(*c), &len, found);
    *found = *found && len == sizeof(*c);
    return rc;
}

/* Records one side's FIN; releases the connection once it has ended (RST, or the
 * first pure ACK after FIN from both sides: the close's last packet, which this
 * packet's caller still sends to the connection's backend), else stores it. */
static int track_end(struct nf_env *env, const struct store_key *ck, struct lb_conn *c,
                     uint8_t flags, bool from_client)
{
    bool closing = c->fin_client && c->fin_backend;
    if (flags & 0x01)
        *(from_client ? &c->fin_client : &c->fin_backend) = 1;
    bool ended = (flags & 0x04) || (closing && (flags & 0x11) == 0x10);
    return ended ? release(env, ck, c->backend) : nf_put(env, ck, c, sizeof(*c));
}

static bool idle(const struct lb *lb, const struct lb_conn *c, uint64_t now)
{
    return nf_quiet(now, c->last_ns, lb->idle_ns);
}

/* An old connection of the age queue: alive, or released now when idle (its
 * backend's count goes down), so a client that vanished does not hold a share of
 * a backend, nor the store, for ever. */
static int lb_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                    enum nf_age_verdict *v)
{
    struct store_key ck = {.scope = STORE_SHARED, .object = LB_OBJ_CONN, .bytes = key, .len = len};
    struct lb_conn c;
    bool cur;
    int rc = nf_age_object(env, &ck, &c, sizeof(c), offsetof(struct lb_conn, ticket), ticket, &cur);
    *v = cur && !idle(self, &c, nf_now(env)) ? NF_AGE_KEEP : NF_AGE_GONE;
    return rc || !cur || *v == NF_AGE_KEEP ? rc : release(env, &ck, c.backend);
}

static const struct nf_aging lb_aging = {.object = LB_OBJ_AGE, .judge = lb_judge};

/* A client packet to the VIP: find or make its mapping, send it to the backend. */
static int forward(const struct lb *lb, struct nf_env *env, const struct nf_pkt *p, uint8_t *d,
                   struct view *v)
{
    uint8_t kb[8];
    struct store_key ck = conn_key((const uint8_t *)&v->ip->src_addr, v->sport, kb);
    struct lb_conn c;
    bool found;
    int rc = lookup(env, &ck, &c, &found);
    if (rc)
        return rc;
    uint64_t now = nf_now(env);
    if (found && idle(lb, &c, now)) {
        if ((rc = release(env, &ck, c.backend)))
            return rc;
        found = false;
    }
    if (!found) {
        memset(&c, 0, sizeof(c));
        if ((rc = nf_age(env, &lb_aging, (void *)lb, kb, sizeof(kb), &c.ticket)))
            return rc;
        /* words composed from the bytes: rte_jhash would read kb through a uint32_t
         * pointer, which the optimiser may order before the stores (rw_flow.c) */
        uint32_t h = rte_jhash_2words(rw_get_be32(kb), rw_get_be32(kb + 4), 0x6c62);
        if ((rc = choose(lb, env, h, &c.backend)))
            return rc;
        struct store_key ak = active_key(&c.backend);
        if ((rc = nf_incr(env, &ak, 1, NULL)))
            return rc;
    }
    c.last_ns = now;
    if ((rc = track_end(env, &ck, &c, v->flags, true)))
        return rc;
    rewrite(v, lb->proto, true, lb->backends[c.backend], p->len);
    return nf_emit(env, d, p->len, p->wire_len);
}

/* A reply to a client (from a backend, or from the VIP in a capture taken before
 * the balancer): from the VIP, and it ends the connection on RST or final FIN. */
static int reply(const struct lb *lb, struct nf_env *env, const struct nf_pkt *p, uint8_t *d,
                 struct view *v)
{
    uint8_t kb[8];
    struct store_key ck = conn_key((const uint8_t *)&v->ip->dst_addr, v->dport, kb);
    struct lb_conn c;
    bool found;
    int rc = lookup(env, &ck, &c, &found);
    if (!rc && found && ((v->flags & 0x05) || (c.fin_client && c.fin_backend)))
        rc = track_end(env, &ck, &c, v->flags, false);
    if (rc)
        return rc;
    if (memcmp(&v->ip->src_addr, lb->vip, 4))
        rewrite(v, lb->proto, false, lb->vip, p->len);
    return nf_emit(env, d, p->len, p->wire_len);
}

static bool is_backend(const struct lb *lb, const void *addr)
{
    for (unsigned i = 0; i < lb->n; i++)
        if (!memcmp(lb->backends[i], addr, 4))
            return true;
    return false;
}

static int lb_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    struct lb *lb = self;
    uint8_t *d = lb->buf;
    struct view v;
    if (p->len > sizeof(lb->buf) || (memcpy(d, p->data, p->len), !parse(d, p->len, lb->proto, &v)))
        return nf_emit(env, p->data, p->len, p->wire_len); /* not for the VIP */
    bool to_vip = !memcmp(&v.ip->dst_addr, lb->vip, 4) && (!lb->port || v.dport == lb->port);
    bool from_vip = (!memcmp(&v.ip->src_addr, lb->vip, 4) && (!lb->port || v.sport == lb->port)) ||
                    is_backend(lb, &v.ip->src_addr);
    if (to_vip)
        return forward(lb, env, p, d, &v);
    if (from_vip)
        return reply(lb, env, p, d, &v);
    return nf_emit(env, p->data, p->len, p->wire_len);
}

/* ---- audit (nf_def.audit) ---- */

struct lb_seen {
    const struct lb *lb;
    struct nf_audit *a;
    int64_t active[LB_MAX_BACKENDS]; /* the counters */
    int64_t live[LB_MAX_BACKENDS];   /* connections that name the backend */
    uint64_t conns, bad;
};

static int lb_seen_obj(void *arg, const struct store_obj *o)
{
    struct lb_seen *s = arg;
    const uint8_t *k = o->key;
    if (o->object == LB_OBJ_ACTIVE && o->type == STORE_T_INT && o->klen == 1 && k[0] < s->lb->n) {
        s->active[k[0]] = o->i;
        return 0;
    }
    if (o->object != LB_OBJ_CONN || o->type != STORE_T_BYTES || o->klen != 8)
        return 0;
    struct lb_conn c;
    if (o->len != sizeof(c) || (memcpy(&c, o->val, sizeof(c)), c.backend >= s->lb->n)) {
        s->bad++;
        return 0;
    }
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, k, ip, sizeof(ip));
    s->live[c.backend]++;
    s->conns++;
    /* Which backend a connection got is an interleaving's pick with several
     * instances (verify checks affinity instead): not in the summary. */
    return nf_audit_line(s->a, "conn %s:%u fin %u/%u last %llu", ip, (unsigned)(k[4] << 8 | k[5]),
                         c.fin_client, c.fin_backend, (unsigned long long)c.last_ns);
}

/* Invariant: each backend's active count is the number of live connections on it
 * (an increment applied twice, or a release lost, breaks it). */
static int lb_audit(void *self, struct store_client *c, struct nf_audit *a, struct rw_err *e)
{
    struct lb_seen s = {.lb = self, .a = a};
    int rc = store_scan(c, lb_seen_obj, &s);
    if (rc)
        return rc == RW_ENOMEM ? rw_errf(e, rc, "out of memory")
                               : rw_errf(e, RW_EIO, "%s", store_client_errmsg(c));
    rc = nf_audit_line(a, "connections %llu", (unsigned long long)s.conns);
    for (unsigned b = 0; !rc && b < s.lb->n; b++) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, s.lb->backends[b], ip, sizeof(ip));
        if (s.active[b] != s.live[b])
            rc = nf_audit_broken(a, "lb: backend %s counts %lld active connections, %lld are live",
                                 ip, (long long)s.active[b], (long long)s.live[b]);
    }
    if (!rc && s.bad)
        rc = nf_audit_broken(a, "lb: %llu connection records are malformed",
                             (unsigned long long)s.bad);
    return rc ? rw_errf(e, rc, "out of memory") : 0;
}

/* Which backend a connection gets depends on the other instances' counts:
 * verify renames the backends per connection before it compares runs. */
static int lb_canon(const struct chain_node *config, char *spec, size_t cap, struct rw_err *e)
{
    const struct chain_node *b = chain_node_get(config, "backends");
    size_t used = 0;
    spec[0] = '\0';
    for (size_t i = 0; b && i < chain_node_count(b); i++) {
        const char *s = chain_node_scalar(chain_node_item(b, i));
        int n = s ? snprintf(spec + used, cap - used, "%s%s", used ? "," : "conns:", s) : 0;
        if (n < 0 || (size_t)n >= cap - used)
            return rw_errf(e, RW_EINVAL, "lb: canon spec too long");
        used += (size_t)n;
    }
    return 0;
}

const struct nf_def nf_lb = {
    .type = "lb",
    .self_size = sizeof(struct lb),
    .init = lb_init,
    .process = lb_process,
    .audit = lb_audit,
    .canon = lb_canon,
};
