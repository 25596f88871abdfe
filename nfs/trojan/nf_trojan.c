/*
 * nf_trojan.c - the multi-step trojan detector: per host, an ordered sequence of
 * steps (default: an SSH session, then a download of an HTML, ZIP or EXE file over
 * HTTP or FTP, then IRC activity), as in the multi-step detectors of the chain
 * literature. A host that completes the steps in order raises `trojan.detected`
 * with the clock of each step; its progress lasts `window` seconds of packet time
 * after its last step, so a host quiet that long starts again (and may alert again).
 *
 * Order is the clock's, not arrival's: like every NF, it gets its inputs merged
 * by clock across upstream instances (worker.c), so a delay in one upstream
 * instance cannot reorder the steps (design.md: Invariants, Recovery, chain-wide order).
 *
 * State: one per-host object (the host that sends the requests), written only when
 * the host completes a step; packets that match no step cost no store op. Chains
 * partition it by flowspace `src`, so a host's requests reach one instance. A
 * host's progress lasts `window` seconds of packet time after its last step: a
 * later step starts the sequence again, and the slot's age queue (nf_age) forgets
 * hosts gone quiet, so the table holds the hosts of the last window, not every
 * host ever seen.
 *
 * config:
 *   steps: [ {kind: ssh}, {kind: download, extensions: [html, zip, exe]}, {kind: irc} ]
 *   ports: {ssh: 22, http: 80, ftp: 21, irc: 6667}
 *   window: SECONDS (86400)
 */
#include "nf.h"
#include "rw_flow.h"
#include "rw_pkt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "chain.h"
#include "store.h"

#define TJ_OBJ_HOST  1
#define TJ_OBJ_AGE   2 /* the slot's age queue of hosts */
#define TJ_MAX_STEPS 8
#define TJ_MAX_EXT   8

enum tj_kind { TJ_SSH, TJ_DOWNLOAD, TJ_IRC };

struct tj_step {
    enum tj_kind kind;
    char ext[TJ_MAX_EXT][8];
    unsigned next;
};

struct trojan {
    struct tj_step steps[TJ_MAX_STEPS];
    unsigned nsteps;
    uint16_t ssh, http, ftp, irc;
    uint64_t window_ns;
};

/* A host's progress as stored. */
struct tj_host {
    uint8_t done; /* steps completed */
    uint8_t alerted;
    uint8_t pad[6];
    uint64_t last_ns; /* packet time of its last step */
    uint64_t ticket;  /* its age-queue entry */
    uint64_t clocks[TJ_MAX_STEPS];
};

/* ---- configuration ---- */

static int parse_exts(const struct chain_node *step, struct tj_step *s, struct rw_err *e)
{
    const struct chain_node *l = chain_node_get(step, "extensions");
    if (!l) {
        static const char *const def[] = {"html", "zip", "exe"};
        for (unsigned i = 0; i < 3; i++)
            snprintf(s->ext[s->next++], sizeof(s->ext[0]), "%s", def[i]);
        return 0;
    }
    int rc = chain_node_want(l, CHAIN_SEQ, e);
    for (size_t i = 0; !rc && i < chain_node_count(l); i++) {
        const char *x = chain_node_scalar(chain_node_item(l, i));
        if (!x || !*x || strlen(x) >= sizeof(s->ext[0]) || s->next == TJ_MAX_EXT)
            return chain_node_errf(step, "extensions", e,
                                   "extensions are up to %d names of 1-7 characters", TJ_MAX_EXT);
        snprintf(s->ext[s->next++], sizeof(s->ext[0]), "%s", x);
    }
    return rc;
}

static int parse_step(const struct chain_node *n, struct tj_step *s, struct rw_err *e)
{
    static const char *const keys[] = {"kind", "extensions", NULL};
    static const char *const kinds[] = {"ssh", "download", "irc", NULL};
    int kind, rc;
    if ((rc = chain_node_want(n, CHAIN_MAP, e)) || (rc = chain_node_keys(n, keys, e)) ||
        (rc = chain_node_enum(n, "kind", kinds, -1, &kind, e)))
        return rc;
    if (kind < 0)
        return chain_node_errf(n, "kind", e, "a step needs a kind (ssh, download or irc)");
    s->kind = (enum tj_kind)kind;
    return s->kind == TJ_DOWNLOAD ? parse_exts(n, s, e) : 0;
}

static int parse_ports(struct trojan *t, const struct chain_node *cfg, struct rw_err *e)
{
    static const char *const keys[] = {"ssh", "http", "ftp", "irc", NULL};
    const struct chain_node *p = chain_node_get(cfg, "ports");
    uint64_t v[4];
    int rc = p ? chain_node_want(p, CHAIN_MAP, e) : 0;
    if (!rc && p)
        rc = chain_node_keys(p, keys, e);
    static const uint64_t def[] = {22, 80, 21, 6667};
    for (int i = 0; i < 4 && !rc; i++)
        rc = chain_node_u64(p, keys[i], 1, 65535, def[i], &v[i], e);
    if (rc)
        return rc;
    t->ssh = (uint16_t)v[0], t->http = (uint16_t)v[1], t->ftp = (uint16_t)v[2];
    t->irc = (uint16_t)v[3];
    return 0;
}

static int tj_init(void *self, const struct chain_node *cfg, struct rw_err *e)
{
    static const char *const keys[] = {"steps", "ports", "window", NULL};
    struct trojan *t = self;
    uint64_t window;
    int rc = 0;
    if (cfg && ((rc = chain_node_want(cfg, CHAIN_MAP, e)) || (rc = chain_node_keys(cfg, keys, e))))
        return rc;
    if ((rc = parse_ports(t, cfg, e)) ||
        (rc = chain_node_u64(cfg, "window", 1, 86400 * 365, 86400, &window, e)))
        return rc;
    t->window_ns = window * 1000000000ull;
    const struct chain_node *steps = chain_node_get(cfg, "steps");
    if (!steps) {
        t->steps[0].kind = TJ_SSH;
        t->steps[1].kind = TJ_DOWNLOAD;
        parse_exts(NULL, &t->steps[1], e);
        t->steps[2].kind = TJ_IRC;
        t->nsteps = 3;
        return 0;
    }
    if ((rc = chain_node_want(steps, CHAIN_SEQ, e)))
        return rc;
    if (chain_node_count(steps) < 1 || chain_node_count(steps) > TJ_MAX_STEPS)
        return chain_node_errf(cfg, "steps", e, "1 to %d steps", TJ_MAX_STEPS);
    for (size_t i = 0; i < chain_node_count(steps) && !rc; i++)
        rc = parse_step(chain_node_item(steps, i), &t->steps[t->nsteps++], e);
    return rc;
}

/* ---- matching ---- */

/* The TCP payload of an IPv4 or IPv6 packet (behind any VLAN tags, options and
 * extension headers: the one decoder's offsets), and its destination port. */
static bool tcp_payload(const struct nf_pkt *p, const uint8_t **pl, size_t *len, uint16_t *dport,
                        struct rw_flow *f)
{
    struct rw_pkt pk;
    if (!rw_pkt_decode(p->data, p->len, &pk) || pk.proto != IPPROTO_TCP || !pk.l4 ||
        !rw_flow_parse(p->data, p->len, f))
        return false;
    uint32_t l4len = rw_pkt_l4_len(&pk); /* Ethernet padding is not payload */
    if (l4len < 20)
        return false;
    size_t thl = (size_t)(p->data[pk.l4 + 12] >> 4) * 4;
    if (thl < 20 || thl > l4len)
        return false;
    *pl = p->data + pk.l4 + thl;
    *len = l4len - thl;
    *dport = f->dport;
    return *len > 0;
}

static bool starts(const uint8_t *pl, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len >= n && !memcmp(pl, s, n);
}

/* Does the name (up to a space, '?', CR or end) end in ".ext" for one of s->ext? */
static bool has_ext(const struct tj_step *s, const uint8_t *name, size_t len)
{
    size_t n = 0;
    while (n < len && name[n] != ' ' && name[n] != '?' && name[n] != '\r' && name[n] != '\n')
        n++;
    for (unsigned i = 0; i < s->next; i++) {
        size_t el = strlen(s->ext[i]);
        if (n > el && name[n - el - 1] == '.' &&
            !strncasecmp((const char *)name + n - el, s->ext[i], el))
            return true;
    }
    return false;
}

/* IRC activity: a line starting with JOIN anywhere in the segment. */
static bool irc_join(const uint8_t *pl, size_t len)
{
    for (size_t i = 0; i + 5 <= len; i++)
        if ((i == 0 || pl[i - 1] == '\n') && !memcmp(pl + i, "JOIN ", 5))
            return true;
    return false;
}

static bool step_matches(const struct trojan *t, const struct tj_step *s, const uint8_t *pl,
                         size_t len, uint16_t dport)
{
    switch (s->kind) {
    case TJ_SSH:
        return dport == t->ssh && starts(pl, len, "SSH-");
    case TJ_DOWNLOAD:
        if (dport == t->http && starts(pl, len, "GET "))
            return has_ext(s, pl + 4, len - 4);
        if (dport == t->ftp && starts(pl, len, "RETR "))
            return has_ext(s, pl + 5, len - 5);
        return false;
    case TJ_IRC:
        return dport == t->irc && irc_join(pl, len);
    }
    return false;
}

/* Could this packet be any step at all? (Most cannot: no store op for them.) */
static bool any_step(const struct trojan *t, const uint8_t *pl, size_t len, uint16_t dport)
{
    for (unsigned i = 0; i < t->nsteps; i++)
        if (step_matches(t, &t->steps[i], pl, len, dport))
            return true;
    return false;
}

/* ---- the packet path ---- */

static int alert(struct nf_env *env, const struct trojan *t, const struct rw_flow *f,
                 const struct tj_host *h)
{
    char host[INET6_ADDRSTRLEN], fields[512];
    inet_ntop(f->family == 4 ? AF_INET : AF_INET6, f->src, host, sizeof(host));
    int n = snprintf(fields, sizeof(fields), "\"host\": \"%s\", \"steps\": [", host);
    for (unsigned i = 0; i < t->nsteps && n < (int)sizeof(fields); i++)
        n += snprintf(fields + n, sizeof(fields) - (size_t)n, "%s%llu", i ? ", " : "",
                      (unsigned long long)h->clocks[i]);
    if (n < (int)sizeof(fields))
        snprintf(fields + n, sizeof(fields) - (size_t)n, "]");
    return nf_alert(env, "trojan.detected", fields);
}

static bool quiet(const struct trojan *t, const struct tj_host *h, uint64_t now)
{
    return nf_quiet(now, h->last_ns, t->window_ns);
}

/* An old host of the age queue: kept while its last step is within the window. */
static int tj_judge(void *self, struct nf_env *env, const void *key, size_t len, uint64_t ticket,
                    enum nf_age_verdict *v)
{
    struct store_key k = {.scope = STORE_FLOW, .object = TJ_OBJ_HOST, .bytes = key, .len = len};
    struct tj_host h;
    bool cur;
    int rc = nf_age_object(env, &k, &h, sizeof(h), offsetof(struct tj_host, ticket), ticket, &cur);
    *v = cur && !quiet(self, &h, nf_now(env)) ? NF_AGE_KEEP : NF_AGE_GONE;
    return rc || !cur || *v == NF_AGE_KEEP ? rc : nf_del(env, &k);
}

static const struct nf_aging tj_aging = {.object = TJ_OBJ_AGE, .judge = tj_judge};

static int advance(const struct trojan *t, struct nf_env *env, const struct nf_pkt *p,
                   const struct rw_flow *f, const uint8_t *pl, size_t len, uint16_t dport)
{
    /* An IPv4 host's key is its 4 bytes, an IPv6 host's its 16: never alike. */
    struct store_key k = {.scope = STORE_FLOW,
                          .object = TJ_OBJ_HOST,
                          .bytes = f->src,
                          .len = f->family == 4 ? 4 : 16};
    struct tj_host h;
    size_t hl;
    bool found;
    int rc = nf_get(env, &k, &h, sizeof(h), &hl, &found);
    if (rc)
        return rc;
    found = found && hl == sizeof(h);
    uint64_t ticket = found ? h.ticket : 0;
    if (!found || quiet(t, &h, nf_now(env))) /* a quiet host starts again */
        memset(&h, 0, sizeof(h));
    if (h.alerted || h.done >= t->nsteps || !step_matches(t, &t->steps[h.done], pl, len, dport))
        return 0;
    if (!found && (rc = nf_age(env, &tj_aging, (void *)t, k.bytes, k.len, &ticket)))
        return rc;
    h.ticket = ticket;
    h.last_ns = nf_now(env);
    h.clocks[h.done++] = p->meta.clock;
    if (h.done == t->nsteps) {
        h.alerted = 1;
        if ((rc = alert(env, t, f, &h)))
            return rc;
    }
    return nf_put(env, &k, &h, sizeof(h));
}

static int tj_process(void *self, struct nf_env *env, const struct nf_pkt *p)
{
    const struct trojan *t = self;
    struct rw_flow f;
    const uint8_t *pl;
    size_t len;
    uint16_t dport;
    int rc = 0;
    if (tcp_payload(p, &pl, &len, &dport, &f) && any_step(t, pl, len, dport))
        rc = advance(t, env, p, &f, pl, len, dport);
    return rc ? rc : nf_emit(env, p->data, p->len, p->wire_len); /* a detector passes all */
}

/* A host's requests (to every server) must meet in one instance. */
static int tj_check(const struct chain_nf *nf, struct rw_err *e)
{
    static const int ok[] = {RW_FS_SRC};
    return nf_require_flowspace(nf, ok, 1, "a host's requests to different servers", e);
}

const struct nf_def nf_trojan = {
    .check = tj_check,
    .type = "trojan",
    .self_size = sizeof(struct trojan),
    .init = tj_init,
    .process = tj_process,
};
