/*
 * nf_portscan.c - the port-scan detector: Threshold Random Walk (Jung, Paxson,
 * Berger, Balakrishnan, "Fast Portscan Detection Using Sequential Hypothesis
 * Testing", IEEE S&P 2004) over first-contact connection attempts per source host.
 *
 * A first contact is a TCP SYN (without ACK) from a host to a (destination host,
 * port) it has not tried before. Its outcome: success when the SYN-ACK comes back,
 * failure on a RST or an ICMP destination unreachable that quotes it, or when no
 * answer came within `timeout` seconds of packet time. NFs only run on packets, so
 * timeouts are found lazily: every packet of a host pair (either direction) first
 * judges that pair's attempts whose deadline has passed; a pair keeps at most
 * PS_PEND_MAX unanswered attempts, and a new one pushes the oldest out as failed.
 * Each outcome multiplies the source's likelihood ratio by theta1/theta0
 * (success) or (1-theta1)/(1-theta0) (failure); the ratio is kept as a fixed-point
 * logarithm so that the store's atomic incr is the update. At eta1 the host is a
 * scanner (one `scan.detected`, optionally its packets are dropped afterwards); at
 * eta0 it is benign so far and its walk starts again.
 *
 * State (design.md: Invariants): per-flow objects for the attempts and the pending list of a
 * host pair (the chain must split by flowspace host-pair, so that answers reach
 * the instance that saw the SYN), shared objects for the per-host walk, counts
 * and the detected flag (a scanner's attempts span pairs, hence instances).
 *
 * Bounded state: three age queues of the slot (nf_age). A pair whose hosts fall
 * silent has its unanswered attempts judged failed once their timeout has passed
 * (a SYN to a filtered port counts even when nothing more is heard from the
 * pair); an attempt is remembered `memory` seconds, then a contact to that port
 * is a first contact again; a host's walk, counts and flag are forgotten
 * `memory` seconds after its last outcome (a detected scanner is then blocked no
 * more, and must be detected again).
 *
 * config:
 *   theta0: P(success | benign)    (0.8)     theta1: P(success | scanner) (0.2)
 *   pd: detection probability      (0.99)    pf: false positive prob.     (0.01)
 *   timeout: SECONDS               (5)       block: BOOL                  (false)
 *   malformed: pass | drop         (pass)    memory: SECONDS              (3600)
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

#define PS_OBJ_ATTEMPT  1  /* flow: (family, proto, src, dst, dport) -> struct ps_attempt */
#define PS_OBJ_PENDING  2  /* flow: (family, lo, hi) -> struct ps_pend[] */
#define PS_OBJ_WALK     3  /* shared: host -> log(Lambda) * PS_FIX */
#define PS_OBJ_ATTEMPTS 4  /* shared: host -> outcomes counted */
#define PS_OBJ_FAILURES 5  /* shared: host -> failures counted */
#define PS_OBJ_FLAG     6  /* shared: host -> 1 once detected */
#define PS_OBJ_STATS    7  /* shared: "malformed" -> packets */
#define PS_OBJ_SEEN     8  /* shared: host -> packet time of its last outcome */
#define PS_OBJ_TICKET   9  /* shared: host -> the age-queue entry that ages it */
#define PS_OBJ_AGE_ATT  10 /* the slot's age queues: attempts, */
#define PS_OBJ_AGE_PAIR 11 /* pairs with unanswered attempts, */
#define PS_OBJ_AGE_HOST 12 /* and hosts whose first outcome the slot counted */

#define PS_PEND_MAX 256
#define PS_FIX      1000000.0 /* log-likelihoods in millionths */

enum ps_state { PS_PENDING = 1, PS_SUCCESS = 2, PS_FAILURE = 3 };
enum ps_class { PK_NON_IP, PK_BAD, PK_OK };

struct portscan {
    int64_t step_ok, step_fail; /* log(theta1/theta0), log((1-theta1)/(1-theta0)) */
    int64_t up, down;           /* log(eta1), log(eta0) */
    uint64_t timeout_ns, memory_ns;
    bool block, drop_malformed;
};

/* A first-contact attempt as stored. */
struct ps_attempt {
    uint64_t ts;
    uint64_t ticket; /* its age-queue entry */
    uint8_t state;
    uint8_t pad[7];
};

/* An unanswered attempt of a host pair. */
struct ps_pend {
    uint64_t ts;
    uint8_t from_lo; /* the lower address of the pair made it */
    uint8_t proto;
    uint16_t dport;
    uint8_t pad[4];
};

/* The pending list of the current packet's pair, loaded once per packet. Stored
 * as the ticket of its age-queue entry, then the entries. */
struct ps_pair {
    uint8_t key[36]; /* family, 3 zero bytes, lower address, higher address */
    uint64_t ticket;
    struct ps_pend e[PS_PEND_MAX];
    unsigned n;
    bool stored; /* it was in the store when loaded */
    bool dirty;
};

/* What the detector needs of a packet. */
struct ps_pkt {
    uint8_t family, proto, flags, icmp_type;
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    bool quoted; /* an ICMP unreachable quoting q_* */
    uint8_t q_proto, q_src[16], q_dst[16];
    uint16_t q_dport;
};

/* ---- configuration ---- */

/* Natural logarithm without libm: x = m * 2^k, ln m = 2 atanh((m-1)/(m+1)). */
static double ln(double x)
{
    int k = 0;
    while (x > 1.5)
        x /= 2, k++;
    while (x < 0.75)
        x *= 2, k--;
    double y = (x - 1) / (x + 1), y2 = y * y, term = y, sum = 0;
    for (int i = 1; i < 60; i += 2, term *= y2)
        sum += term / i;
    return 2 * sum + k * 0.69314718055994530942;
}

static int64_t fix(double v)
{
    return (int64_t)(v * PS_FIX + (v < 0 ? -0.5 : 0.5));
}

static int get_prob(const struct chain_node *cfg, const char *key, double def, double *out,
                    struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(cfg, key, 0, &s, e);
    *out = def;
    if (rc || !s)
        return rc;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0 && v < 1))
        return chain_node_errf(cfg, key, e,
                               "expected a probability strictly between 0 and 1, got '%s'", s);
    *out = v;
    return 0;
}

static int check_probs(const struct chain_node *cfg, double t0, double t1, double pd, double pf,
                       struct rw_err *e)
{
    if (t1 >= t0)
        return chain_node_errf(
            cfg, chain_node_get(cfg, "theta1") ? "theta1" : "theta0", e,
            "theta1 (%g) must be below theta0 (%g): a scanner succeeds less often", t1, t0);
    if (pf >= pd)
        return chain_node_errf(cfg, chain_node_get(cfg, "pf") ? "pf" : "pd", e,
                               "pf (%g) must be below pd (%g)", pf, pd);
    return 0;
}

static int ps_init(void *self, const struct chain_node *cfg, struct rw_err *e)
{
    static const char *const keys[] = {"theta0", "theta1",    "pd",     "pf", "timeout",
                                       "block",  "malformed", "memory", NULL};
    static const char *const bools[] = {"false", "true", NULL};
    static const char *const verdicts[] = {"drop", "pass", NULL};
    struct portscan *ps = self;
    double t0, t1, pd, pf;
    uint64_t timeout, memory;
    int block, mal, rc;
    if ((cfg &&
         ((rc = chain_node_want(cfg, CHAIN_MAP, e)) || (rc = chain_node_keys(cfg, keys, e)))) ||
        (rc = get_prob(cfg, "theta0", 0.8, &t0, e)) ||
        (rc = get_prob(cfg, "theta1", 0.2, &t1, e)) || (rc = get_prob(cfg, "pd", 0.99, &pd, e)) ||
        (rc = get_prob(cfg, "pf", 0.01, &pf, e)) || (rc = check_probs(cfg, t0, t1, pd, pf, e)) ||
        (rc = chain_node_u64(cfg, "timeout", 1, 3600, 5, &timeout, e)) ||
        (rc = chain_node_u64(cfg, "memory", 1, 86400 * 30, 3600, &memory, e)) ||
        (rc = chain_node_enum(cfg, "block", bools, 0, &block, e)) ||
        (rc = chain_node_enum(cfg, "malformed", verdicts, 1, &mal, e)))
        return rc;
    ps->step_ok = fix(ln(t1 / t0));
    ps->step_fail = fix(ln((1 - t1) / (1 - t0)));
    ps->up = fix(ln(pd / pf));
    ps->down = fix(ln((1 - pd) / (1 - pf)));
    ps->timeout_ns = timeout * 1000000000ull;
    ps->memory_ns = memory * 1000000000ull;
    if (memory < timeout) /* an attempt must outlive its own timeout to be judged */
        return chain_node_errf(cfg, "memory", e,
                               "memory (%llu s) must be at least timeout (%llu s)",
                               (unsigned long long)memory, (unsigned long long)timeout);
    ps->block = block == 1;
    ps->drop_malformed = mal == 0;
    return 0;
}

/* ---- parsing ---- */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* The quoted packet of an ICMP(v6) destination unreachable at q (n bytes). */
static void parse_quoted(const uint8_t *q, size_t n, struct ps_pkt *k)
{
    size_t l4;
    if (k->family == 4 && n >= 20 && q[0] >> 4 == 4 && (q[0] & 0x0f) >= 5) {
        l4 = (size_t)(q[0] & 0x0f) * 4;
        k->q_proto = q[9];
        memcpy(k->q_src, q + 12, 4);
        memcpy(k->q_dst, q + 16, 4);
    } else if (k->family == 6 && n >= 40 && q[0] >> 4 == 6) {
        l4 = 40;
        k->q_proto = q[6];
        memcpy(k->q_src, q + 8, 16);
        memcpy(k->q_dst, q + 24, 16);
    } else {
        return;
    }
    if (l4 + 4 > n)
        return;
    k->q_dport = be16(q + l4 + 2);
    k->quoted = true;
}

static enum ps_class parse_l4(const uint8_t *d, size_t len, size_t l4, struct ps_pkt *k)
{
    if (k->proto == IPPROTO_TCP) {
        if (l4 + 20 > len || d[l4 + 12] >> 4 < 5)
            return PK_BAD;
        k->flags = d[l4 + 13];
    } else if (k->proto == IPPROTO_UDP) {
        if (l4 + 8 > len)
            return PK_BAD;
    } else if (k->proto == IPPROTO_ICMP || k->proto == IPPROTO_ICMPV6) {
        if (l4 + 8 > len)
            return PK_BAD;
        k->icmp_type = d[l4];
        if ((k->proto == IPPROTO_ICMP && d[l4] == 3) || (k->proto == IPPROTO_ICMPV6 && d[l4] == 1))
            parse_quoted(d + l4 + 8, len - l4 - 8, k);
        return PK_OK;
    } else {
        return PK_OK;
    }
    k->sport = be16(d + l4);
    k->dport = be16(d + l4 + 2);
    return PK_OK;
}

/* The one decoder's view: IPv4 (options skipped) or IPv6 (extension headers
 * followed); a fragment counts as malformed (its ports are not all there), and so
 * does an IP header cut short or an IPv4 length shorter than its header. */
static enum ps_class parse(const uint8_t *d, size_t len, struct ps_pkt *k)
{
    memset(k, 0, sizeof(*k));
    struct rw_pkt pk;
    bool ip = rw_pkt_decode(d, len, &pk);
    if (pk.ethertype != 0x0800 && pk.ethertype != 0x86dd)
        return len < 14 || !pk.ethertype ? PK_BAD : PK_NON_IP;
    if (!ip || pk.frag != RW_PKT_WHOLE || !pk.l4)
        return PK_BAD;
    if (pk.family == 4 && be16(d + pk.l3 + 2) < pk.ip_hlen)
        return PK_BAD;
    k->family = pk.family;
    k->proto = pk.proto;
    memcpy(k->src, pk.src, pk.family == 4 ? 4 : 16);
    memcpy(k->dst, pk.dst, pk.family == 4 ? 4 : 16);
    return parse_l4(d, len, pk.l4, k);
}

/* ---- keys ---- */

static struct store_key host_key(uint16_t obj, uint8_t family, const uint8_t *host, uint8_t kb[20])
{
    memset(kb, 0, 4);
    kb[0] = family;
    memcpy(kb + 4, host, 16);
    return (struct store_key){.scope = STORE_SHARED, .object = obj, .bytes = kb, .len = 20};
}

static struct store_key attempt_key(uint8_t family, uint8_t proto, const uint8_t *src,
                                    const uint8_t *dst, uint16_t dport, uint8_t kb[36])
{
    kb[0] = family;
    kb[1] = proto;
    memcpy(kb + 2, src, 16);
    memcpy(kb + 18, dst, 16);
    kb[34] = (uint8_t)(dport >> 8), kb[35] = (uint8_t)dport;
    return (struct store_key){
        .scope = STORE_FLOW, .object = PS_OBJ_ATTEMPT, .bytes = kb, .len = 36};
}

static struct store_key pair_key(const struct ps_pair *pr)
{
    return (struct store_key){
        .scope = STORE_FLOW, .object = PS_OBJ_PENDING, .bytes = pr->key, .len = sizeof(pr->key)};
}

/* ---- the random walk ---- */

/* A host's counter (0 when absent: reading it creates nothing, so a host with
 * no outcome leaves no object behind). */
static int read_int(struct nf_env *env, uint16_t obj, uint8_t family, const uint8_t *host,
                    int64_t *v)
{
    uint8_t kb[20];
    bool found;
    struct store_key k = host_key(obj, family, host, kb);
    return nf_get_int(env, &k, v, &found);
}

static int raise_alert(struct nf_env *env, uint8_t family, const uint8_t *host, int64_t walk)
{
    int64_t att, fail;
    int rc;
    if ((rc = read_int(env, PS_OBJ_ATTEMPTS, family, host, &att)) ||
        (rc = read_int(env, PS_OBJ_FAILURES, family, host, &fail)))
        return rc;
    char addr[64], fields[256];
    if (!inet_ntop(family == 4 ? AF_INET : AF_INET6, host, addr, sizeof(addr)))
        snprintf(addr, sizeof(addr), "?");
    snprintf(fields, sizeof(fields),
             "\"host\": \"%s\", \"attempts\": %lld, \"failures\": %lld, \"log_lambda\": %.3f", addr,
             (long long)att, (long long)fail, (double)walk / PS_FIX);
    return nf_alert(env, "scan.detected", fields);
}

/* A host's objects, all forgotten together. */
static const uint16_t host_objs[] = {PS_OBJ_WALK, PS_OBJ_ATTEMPTS, PS_OBJ_FAILURES,
                                     PS_OBJ_FLAG, PS_OBJ_SEEN,     PS_OBJ_TICKET};

static int host_forget(struct nf_env *env, const uint8_t kb[20])
{
    struct store_key k = {.scope = STORE_SHARED, .bytes = kb, .len = 20};
    int rc = 0;
    for (size_t i = 0; i < sizeof(host_objs) / sizeof(host_objs[0]) && !rc; i++) {
        k.object = host_objs[i];
        rc = nf_del(env, &k);
    }
    return rc;
}

/* *stale: the host's last outcome is more than `memory` ago, so its walk, counts
 * and flag count as absent, whether or not its age queue has reached it yet. */
static int host_stale(const struct portscan *ps, struct nf_env *env, const uint8_t kb[20],
                      bool *stale)
{
    struct store_key k = {.scope = STORE_SHARED, .object = PS_OBJ_SEEN, .bytes = kb, .len = 20};
    uint64_t seen = 0, now = nf_now(env);
    size_t got;
    bool found;
    int rc = nf_get(env, &k, &seen, sizeof(seen), &got, &found);
    *stale = !rc && found && got == sizeof(seen) && nf_quiet(now, seen, ps->memory_ns);
    return rc;
}

/* An old host of the age queue: forgotten `memory` after its last outcome. */
static int host_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                      enum nf_age_verdict *v)
{
    struct store_key k = {.scope = STORE_SHARED, .object = PS_OBJ_TICKET, .bytes = key, .len = len};
    uint64_t t = 0;
    size_t got;
    bool found, stale;
    *v = NF_AGE_GONE;
    if (len != 20)
        return 0;
    int rc = nf_get(env, &k, &t, sizeof(t), &got, &found);
    if (rc || !found || got != sizeof(t) || t != ticket ||
        (rc = host_stale(self, env, key, &stale)))
        return rc;
    if (!stale) {
        *v = NF_AGE_KEEP;
        return 0;
    }
    return host_forget(env, key);
}

static const struct nf_aging host_aging = {.object = PS_OBJ_AGE_HOST, .judge = host_judge};

/* One outcome of a first contact made by host: a step of its walk. The instance
 * that counts a host's first outcome ages the host. */
static int outcome(const struct portscan *ps, struct nf_env *env, uint8_t family,
                   const uint8_t *host, bool ok)
{
    uint8_t kb[20];
    struct store_key flag = host_key(PS_OBJ_FLAG, family, host, kb);
    struct store_key att = host_key(PS_OBJ_ATTEMPTS, family, host, kb);
    struct store_key fail = host_key(PS_OBJ_FAILURES, family, host, kb);
    struct store_key walk = host_key(PS_OBJ_WALK, family, host, kb);
    struct store_key seen = host_key(PS_OBJ_SEEN, family, host, kb);
    struct store_key tk = host_key(PS_OBJ_TICKET, family, host, kb);
    uint64_t now = nf_now(env), ticket;
    int64_t v, f, n;
    bool stale, found;
    int rc = host_stale(ps, env, kb, &stale);
    if (rc || (stale && (rc = host_forget(env, kb))))
        return rc;
    if ((rc = nf_get_int(env, &flag, &f, &found)) || (rc = nf_put(env, &seen, &now, sizeof(now))) ||
        f)
        return rc; /* decided: the walk is over */
    if ((rc = nf_incr(env, &att, 1, &n)) ||
        (n == 1 && ((rc = nf_age(env, &host_aging, (void *)ps, kb, sizeof(kb), &ticket)) ||
                    (rc = nf_put(env, &tk, &ticket, sizeof(ticket))))) ||
        (!ok && (rc = nf_incr(env, &fail, 1, NULL))) ||
        (rc = nf_incr(env, &walk, ok ? ps->step_ok : ps->step_fail, &v)))
        return rc;
    if (v <= ps->down) /* benign so far: start again, so a later scan is still seen */
        return nf_incr(env, &walk, -v, NULL);
    if (v < ps->up)
        return 0;
    if ((rc = nf_incr(env, &flag, 1, &f)) || f != 1)
        return rc; /* another instance decided first */
    return raise_alert(env, family, host, v);
}

/* ---- attempts ---- */

static bool forgotten(const struct portscan *ps, const struct ps_attempt *a, uint64_t now)
{
    return nf_quiet(now, a->ts, ps->memory_ns);
}

/* *found: the attempt is stored and still remembered (one older than `memory`
 * counts as absent, whether or not its age queue has reached it yet). */
static int get_attempt(const struct portscan *ps, struct nf_env *env, const struct store_key *k,
                       struct ps_attempt *a, bool *found)
{
    size_t len;
    int rc = nf_get(env, k, a, sizeof(*a), &len, found);
    if (rc == STORE_EOWNER) /* another instance's pair (an ICMP error from a router) */
        return *found = false, 0;
    if (!rc && *found && (len != sizeof(*a) || forgotten(ps, a, nf_now(env))))
        *found = false;
    return rc;
}

/* An old attempt of the age queue: remembered for `memory` seconds. */
static int att_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                     enum nf_age_verdict *v)
{
    struct store_key k = {.scope = STORE_FLOW, .object = PS_OBJ_ATTEMPT, .bytes = key, .len = len};
    struct ps_attempt a;
    bool cur;
    int rc =
        nf_age_object(env, &k, &a, sizeof(a), offsetof(struct ps_attempt, ticket), ticket, &cur);
    *v = cur && !forgotten(self, &a, nf_now(env)) ? NF_AGE_KEEP : NF_AGE_GONE;
    return rc || !cur || *v == NF_AGE_KEEP ? rc : nf_del(env, &k);
}

static const struct nf_aging att_aging = {.object = PS_OBJ_AGE_ATT, .judge = att_judge};

/* Settles an attempt if it is still pending; *settled says so. */
static int settle(const struct portscan *ps, struct nf_env *env, uint8_t family, uint8_t proto,
                  const uint8_t *src, const uint8_t *dst, uint16_t dport, bool ok, bool *settled)
{
    uint8_t kb[36];
    struct store_key k = attempt_key(family, proto, src, dst, dport, kb);
    struct ps_attempt a;
    bool found;
    int rc = get_attempt(ps, env, &k, &a, &found);
    *settled = false;
    if (rc || !found || a.state != PS_PENDING)
        return rc;
    a.state = ok ? PS_SUCCESS : PS_FAILURE;
    if ((rc = nf_put(env, &k, &a, sizeof(a))))
        return rc;
    *settled = true;
    return outcome(ps, env, family, src, ok);
}

/* ---- the pending list of a pair ---- */

static bool lower(const uint8_t *a, const uint8_t *b)
{
    return memcmp(a, b, 16) < 0;
}

#define PAIR_HEAD 16 /* the ticket, 8 bytes reserved */

/* Reads the pair whose key is in pr->key. */
static int pair_read(struct nf_env *env, struct ps_pair *pr)
{
    uint8_t v[PAIR_HEAD + sizeof(pr->e)];
    struct store_key sk = pair_key(pr);
    size_t len;
    bool found;
    int rc = nf_get(env, &sk, v, sizeof(v), &len, &found);
    pr->stored = !rc && found && len >= PAIR_HEAD;
    pr->n = pr->stored ? (unsigned)((len - PAIR_HEAD) / sizeof(pr->e[0])) : 0;
    pr->ticket = 0;
    if (pr->stored) {
        memcpy(&pr->ticket, v, sizeof(pr->ticket));
        memcpy(pr->e, v + PAIR_HEAD, pr->n * sizeof(pr->e[0]));
    }
    pr->dirty = false;
    return rc;
}

static int pair_load(struct nf_env *env, const struct ps_pkt *k, struct ps_pair *pr)
{
    bool lo = lower(k->src, k->dst);
    memset(pr->key, 0, 4);
    pr->key[0] = k->family;
    memcpy(pr->key + 4, lo ? k->src : k->dst, 16);
    memcpy(pr->key + 20, lo ? k->dst : k->src, 16);
    return pair_read(env, pr);
}

static const struct nf_aging pair_aging;

/* A pair with unanswered attempts is stored (and, when new, aged); one without
 * is deleted. */
static int pair_save(const struct portscan *ps, struct nf_env *env, struct ps_pair *pr)
{
    if (!pr->dirty)
        return 0;
    struct store_key sk = pair_key(pr);
    if (!pr->n)
        return pr->stored ? nf_del(env, &sk) : 0;
    int rc = pr->stored
                 ? 0
                 : nf_age(env, &pair_aging, (void *)ps, pr->key, sizeof(pr->key), &pr->ticket);
    if (rc)
        return rc;
    uint8_t v[PAIR_HEAD + sizeof(pr->e)] = {0};
    memcpy(v, &pr->ticket, sizeof(pr->ticket));
    memcpy(v + PAIR_HEAD, pr->e, pr->n * sizeof(pr->e[0]));
    return nf_put(env, &sk, v, PAIR_HEAD + pr->n * sizeof(pr->e[0]));
}

static void pair_remove(struct ps_pair *pr, unsigned i)
{
    memmove(&pr->e[i], &pr->e[i + 1], (pr->n - i - 1) * sizeof(pr->e[0]));
    pr->n--;
    pr->dirty = true;
}

/* Judges the oldest pending attempt of the pair as failed (if nothing answered it). */
static int fail_oldest(const struct portscan *ps, struct nf_env *env, struct ps_pair *pr)
{
    const uint8_t *lo = pr->key + 4, *hi = pr->key + 20;
    struct ps_pend p = pr->e[0];
    bool settled;
    pair_remove(pr, 0);
    return settle(ps, env, pr->key[0], p.proto, p.from_lo ? lo : hi, p.from_lo ? hi : lo, p.dport,
                  false, &settled);
}

/* Attempts are appended in packet time, so the expired ones are at the front. */
static int expire(const struct portscan *ps, struct nf_env *env, struct ps_pair *pr)
{
    int rc = 0;
    while (!rc && pr->n && nf_now(env) >= pr->e[0].ts + ps->timeout_ns)
        rc = fail_oldest(ps, env, pr);
    return rc;
}

static void pair_drop_answered(struct ps_pair *pr, bool from_lo, uint8_t proto, uint16_t dport)
{
    for (unsigned i = 0; i < pr->n; i++)
        if (pr->e[i].from_lo == from_lo && pr->e[i].proto == proto && pr->e[i].dport == dport)
            return pair_remove(pr, i);
}

/* ---- the packet path ---- */

/* A SYN: a first contact when this (src, dst, port) was never tried. */
static int syn(const struct portscan *ps, struct nf_env *env, const struct ps_pkt *k,
               struct ps_pair *pr)
{
    uint8_t kb[36];
    struct store_key ak = attempt_key(k->family, k->proto, k->src, k->dst, k->dport, kb);
    struct ps_attempt a;
    bool found, stored;
    size_t len;
    int rc = nf_get(env, &ak, &a, sizeof(a), &len, &stored);
    if (rc == STORE_EOWNER) /* the pair's answers go elsewhere: not ours to track */
        return 0;
    if (rc)
        return rc;
    stored = stored && len == sizeof(a);
    found = stored && !forgotten(ps, &a, nf_now(env));
    if (found)
        return 0;
    /* A forgotten attempt is taken over with its place in the age queue. */
    uint64_t ticket = stored ? a.ticket : 0;
    if (!stored && (rc = nf_age(env, &att_aging, (void *)ps, kb, sizeof(kb), &ticket)))
        return rc;
    a = (struct ps_attempt){.ts = nf_now(env), .ticket = ticket, .state = PS_PENDING};
    if ((rc = nf_put(env, &ak, &a, sizeof(a))))
        return rc;
    if (pr->n == PS_PEND_MAX && (rc = fail_oldest(ps, env, pr)))
        return rc;
    pr->e[pr->n++] = (struct ps_pend){
        .ts = nf_now(env), .from_lo = lower(k->src, k->dst), .proto = k->proto, .dport = k->dport};
    pr->dirty = true;
    return 0;
}

/* A SYN-ACK or RST from dst:sport answers an attempt of dst -> src:sport. */
static int answer(const struct portscan *ps, struct nf_env *env, const struct ps_pkt *k,
                  struct ps_pair *pr, bool ok)
{
    bool settled;
    int rc = settle(ps, env, k->family, k->proto, k->dst, k->src, k->sport, ok, &settled);
    if (!rc && settled)
        pair_drop_answered(pr, lower(k->dst, k->src), k->proto, k->sport);
    return rc;
}

static int unreachable(const struct portscan *ps, struct nf_env *env, const struct ps_pkt *k,
                       struct ps_pair *pr)
{
    bool settled;
    int rc =
        settle(ps, env, k->family, k->q_proto, k->q_src, k->q_dst, k->q_dport, false, &settled);
    bool same_pair = !memcmp(k->q_dst, k->src, 16) && !memcmp(k->q_src, k->dst, 16);
    if (!rc && settled && same_pair)
        pair_drop_answered(pr, lower(k->q_src, k->q_dst), k->q_proto, k->q_dport);
    return rc; /* otherwise expire() finds it settled and skips it */
}

/* An old pair of the age queue: its attempts whose timeout has passed are
 * judged failed now, even if the pair never sends again; the pair is kept while
 * attempts are still waiting. */
static int pair_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                      enum nf_age_verdict *v)
{
    struct ps_pair pr;
    *v = NF_AGE_GONE;
    if (len != sizeof(pr.key))
        return 0;
    memcpy(pr.key, key, len);
    int rc = pair_read(env, &pr);
    if (rc || !pr.stored || pr.ticket != ticket)
        return rc;
    if ((rc = expire(self, env, &pr)) || (rc = pair_save(self, env, &pr)))
        return rc;
    *v = pr.n ? NF_AGE_KEEP : NF_AGE_GONE;
    return 0;
}

static const struct nf_aging pair_aging = {.object = PS_OBJ_AGE_PAIR, .judge = pair_judge};

static int track(const struct portscan *ps, struct nf_env *env, const struct ps_pkt *k)
{
    struct ps_pair pr;
    int rc;
    if ((rc = pair_load(env, k, &pr)) || (rc = expire(ps, env, &pr)))
        return rc;
    if (k->proto == IPPROTO_TCP && (k->flags & 0x16) == 0x02) /* SYN, no ACK, no RST */
        rc = syn(ps, env, k, &pr);
    else if (k->proto == IPPROTO_TCP && (k->flags & 0x16) == 0x12) /* SYN-ACK */
        rc = answer(ps, env, k, &pr, true);
    else if (k->proto == IPPROTO_TCP && (k->flags & 0x04))
        rc = answer(ps, env, k, &pr, false);
    else if (k->quoted && k->q_proto == IPPROTO_TCP)
        rc = unreachable(ps, env, k, &pr);
    return rc ? rc : pair_save(ps, env, &pr);
}

static int blocked(const struct portscan *ps, struct nf_env *env, const struct ps_pkt *k,
                   bool *drop)
{
    *drop = false;
    if (!ps->block)
        return 0;
    int64_t f;
    uint8_t kb[20];
    bool stale = false;
    host_key(PS_OBJ_FLAG, k->family, k->src, kb);
    int rc = read_int(env, PS_OBJ_FLAG, k->family, k->src, &f);
    if (!rc && f)
        rc = host_stale(ps, env, kb, &stale); /* a scanner quiet for `memory` is let go */
    *drop = !rc && f && !stale;
    return rc;
}

static int pass(struct nf_env *env, const struct nf_pkt *p)
{
    return nf_emit(env, p->data, p->len, p->wire_len);
}

static int ps_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    struct portscan *ps = self;
    struct ps_pkt k;
    enum ps_class c = parse(p->data, p->len, &k);
    if (c == PK_NON_IP)
        return pass(env, p);
    if (c == PK_BAD) {
        static const uint8_t name[12] = "malformed";
        struct store_key sk = {
            .scope = STORE_SHARED, .object = PS_OBJ_STATS, .bytes = name, .len = sizeof(name)};
        int rc = nf_incr(env, &sk, 1, NULL);
        if (!rc)
            rc = nf_count(env, "malformed", 1);
        return rc || ps->drop_malformed ? rc : pass(env, p);
    }
    bool drop;
    int rc = blocked(ps, env, &k, &drop);
    if (rc || drop)
        return rc;
    return (rc = track(ps, env, &k)) ? rc : pass(env, p);
}

/* A probe and its answer must meet in one instance (per-pair attempt records). */
static int ps_check(const struct chain_nf *nf, struct rw_err *e)
{
    static const int ok[] = {RW_FS_HOST_PAIR};
    return nf_require_flowspace(nf, ok, 1, "probes from their answers", e);
}

/* The per-host walks and counts, and the malformed-packet count, as they are. */
static int ps_audit(void *self, struct store_client *c, struct nf_audit *a, struct rw_err *e)
{
    static const uint16_t objs[] = {PS_OBJ_WALK, PS_OBJ_ATTEMPTS, PS_OBJ_FAILURES, PS_OBJ_FLAG,
                                    PS_OBJ_STATS};
    static const char *const labels[] = {"walk", "attempts", "failures", "flag", "stats"};
    (void)self;
    return nf_audit_counters(c, a, objs, labels, 5, e);
}

const struct nf_def nf_portscan = {
    .audit = ps_audit,
    .check = ps_check,
    .type = "portscan",
    .self_size = sizeof(struct portscan),
    .init = ps_init,
    .process = ps_process,
};
