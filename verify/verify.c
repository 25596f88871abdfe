/*
 * verify.c - `rewind verify`'s engine: compares the output logs and alert files
 * of two runs clock by clock (design.md: The guarantee), after canonicalising the values that
 * instance interleaving picks (verify.h).
 *
 * Output logs are read in windows of clocks, the same window from both runs, so
 * memory stays bounded however long the runs were. Alert files are read whole
 * (they are small next to the packets).
 */
#include "verify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "log.h"
#include "nfs.h"
#include "rw_pkt.h"

#define VERIFY_WINDOW (1ull << 16) /* clocks per window */
#define NPROTO        3            /* tcp, udp, other (icmp ids) */

/* A connection's pick: (src addr, src port, dst port) and protocol -> backend. */
struct vconn {
    uint64_t key;
    uint32_t val;
    uint8_t proto, used;
};

/* Per group of rules, per run: the renaming by order of first appearance. */
struct vmap {
    struct vconn *conns; /* open addressing, for VERIFY_CANON_CONNS */
    size_t nconns, ccap;
    uint32_t *ports[NPROTO]; /* port -> index + 1, allocated on first use */
    uint32_t nports[NPROTO];
    uint32_t *addrs; /* seen addresses, index = canonical name */
    size_t naddrs, cap;
};

struct vcanon {
    const struct verify_opts *o;
    struct vmap map[VERIFY_MAX_CANON];
};

struct vpkt {
    uint64_t clock;
    uint16_t sub;
    uint32_t len, orig;
    uint8_t *data;
};

struct vwin {
    struct vpkt *p;
    size_t n, cap;
};

/* One run being compared. */
struct vside {
    const char *name; /* "REF" or "RUN" */
    char dir[4096];
    struct log_reader *lr;
    struct vcanon pc, ac; /* packets and alerts are renamed separately */
    struct vwin win;
    struct vstate *st;
    uint64_t quarantined; /* quarantine events in its alerts.json (not compared) */
};

struct vstate {
    const struct verify_opts *o;
    struct verify_result *r;
    unsigned reported;
    struct rw_err *e;
};

/* ---- options ---- */

void verify_opts_default(struct verify_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->max_diffs = 10;
}

static int add_rule(struct verify_opts *o, enum verify_canon_kind k, const char *text,
                    struct rw_err *e)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", text);
    int plen = 32;
    char *slash = strchr(buf, '/');
    if (slash) {
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (*end || v < 0 || v > 32 || k == VERIFY_CANON_PORTS)
            return rw_errf(e, RW_EINVAL, "canon: bad prefix length in '%s'", text);
        plen = (int)v;
        *slash = 0;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1)
        return rw_errf(e, RW_EINVAL, "canon: '%s' is not an IPv4 address", text);
    if (o->ncanon == VERIFY_MAX_CANON || o->ngroups > VERIFY_MAX_CANON)
        return rw_errf(e, RW_EINVAL, "canon: more than %d rules", VERIFY_MAX_CANON);
    uint32_t mask = plen ? ~0u << (32 - plen) : 0;
    o->canon[o->ncanon++] = (struct verify_canon){.kind = k,
                                                  .addr = ntohl(a.s_addr) & mask,
                                                  .plen = (uint8_t)plen,
                                                  .group = (uint8_t)(o->ngroups - 1)};
    return 0;
}

int verify_canon_parse(struct verify_opts *o, const char *spec, struct rw_err *e)
{
    if (!strcmp(spec, "none")) {
        o->ncanon = o->ngroups = 0;
        return 0;
    }
    enum verify_canon_kind k;
    if (!strncmp(spec, "ports:", 6))
        k = VERIFY_CANON_PORTS;
    else if (!strncmp(spec, "addrs:", 6))
        k = VERIFY_CANON_ADDRS;
    else if (!strncmp(spec, "conns:", 6))
        k = VERIFY_CANON_CONNS;
    else
        return rw_errf(
            e, RW_EINVAL,
            "canon: '%s': expected none, ports:ADDR, addrs:PREFIX,... or conns:PREFIX,...", spec);
    char list[1024];
    snprintf(list, sizeof(list), "%s", spec + 6);
    char *save = NULL;
    o->ngroups += k != VERIFY_CANON_PORTS;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        o->ngroups += k == VERIFY_CANON_PORTS; /* each address its own ports */
        int rc = add_rule(o, k, t, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* What an NF of the chain says verify must rename (its nf_def's canon hook). */
static int chain_nf_canon(struct verify_opts *o, const struct chain_nf *nf, struct rw_err *e)
{
    const struct nf_def *def = nf_find(nf->type);
    if (!def || !def->canon)
        return 0;
    char spec[2048], *save = NULL;
    int rc = def->canon(nf->config, spec, sizeof(spec), e);
    for (char *t = strtok_r(spec, "\n", &save); !rc && t; t = strtok_r(NULL, "\n", &save))
        rc = verify_canon_parse(o, t, e);
    return rc;
}

int verify_canon_from_chain(struct verify_opts *o, const char *path, struct rw_err *e)
{
    struct chain *c;
    int rc = chain_load(path, NULL, &c, e);
    if (rc)
        return rc;
    for (uint32_t i = 0; !rc && i < c->nnfs; i++)
        rc = chain_nf_canon(o, &c->nfs[i], e);
    chain_free(c);
    return rc;
}

const char *verify_diff_kind_name(enum verify_diff_kind k)
{
    static const char *const names[] = {"lost",          "duplicated",  "changed",
                                        "alert missing", "alert extra", "alert changed",
                                        "damaged",       "invariant",   "state"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* ---- canonical names ---- */

static void vcanon_free(struct vcanon *c)
{
    for (size_t i = 0; i < VERIFY_MAX_CANON; i++) {
        for (int p = 0; p < NPROTO; p++)
            free(c->map[i].ports[p]);
        free(c->map[i].addrs);
        free(c->map[i].conns);
    }
}

/* The canonical index of port in rule i's map (1-based; 0 when out of memory). */
static uint32_t canon_port(struct vcanon *c, size_t i, int proto, uint16_t port)
{
    struct vmap *m = &c->map[c->o->canon[i].group];
    if (!m->ports[proto] && !(m->ports[proto] = calloc(65536, sizeof(uint32_t))))
        return 0;
    if (!m->ports[proto][port])
        m->ports[proto][port] = ++m->nports[proto];
    return m->ports[proto][port];
}

static uint32_t canon_addr(struct vcanon *c, size_t i, uint32_t a)
{
    struct vmap *m = &c->map[c->o->canon[i].group];
    for (size_t k = 0; k < m->naddrs; k++)
        if (m->addrs[k] == a)
            return (uint32_t)k + 1;
    if (m->naddrs == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        uint32_t *n = realloc(m->addrs, cap * sizeof(*n));
        if (!n)
            return 0;
        m->addrs = n, m->cap = cap;
    }
    m->addrs[m->naddrs++] = a;
    return (uint32_t)m->naddrs;
}

static bool in_rule(const struct verify_canon *r, uint32_t a)
{
    uint32_t mask = r->plen ? ~0u << (32 - r->plen) : 0;
    return (a & mask) == r->addr;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16), put16(p + 2, v);
}

/* Where an IPv4 packet's parts are, or ip < 0 when it is not one. */
struct vlayout {
    int ip, l4, proto; /* proto: 0 tcp, 1 udp, 2 icmp echo, -1 none */
};

/* Where the renamed fields are: IPv4 (the renaming rules are IPv4 addresses)
 * behind any VLAN tags, as the one decoder finds it. */
static struct vlayout layout(const uint8_t *p, uint32_t len)
{
    struct vlayout l = {-1, -1, -1};
    struct rw_pkt pk;
    if (!rw_pkt_decode(p, len, &pk) || pk.family != 4)
        return l;
    l.ip = (int)pk.l3;
    if (!pk.l4 || len < pk.l4 + 8)
        return l;
    l.l4 = (int)pk.l4;
    if (pk.proto == 6 && len >= pk.l4 + 18)
        l.proto = 0;
    else if (pk.proto == 17)
        l.proto = 1;
    else if (pk.proto == 1 && (p[pk.l4] == 8 || p[pk.l4] == 0))
        l.proto = 2;
    return l;
}

static void canon_ports(struct vcanon *c, size_t i, uint8_t *p, const struct vlayout *l,
                        uint32_t src, uint32_t dst)
{
    const struct verify_canon *r = &c->o->canon[i];
    uint8_t *l4 = p + l->l4;
    if (l->proto == 2) { /* an echo id names the mapping both ways */
        if (src == r->addr || dst == r->addr)
            put16(l4 + 4, canon_port(c, i, 2, (uint16_t)(l4[4] << 8 | l4[5])));
        return;
    }
    if (src == r->addr)
        put16(l4, canon_port(c, i, l->proto, (uint16_t)(l4[0] << 8 | l4[1])));
    if (dst == r->addr)
        put16(l4 + 2, canon_port(c, i, l->proto, (uint16_t)(l4[2] << 8 | l4[3])));
}

static uint64_t conn_hash(uint64_t k, uint8_t proto)
{
    k = (k ^ proto) * 0x9e3779b97f4a7c15ull;
    return k ^ (k >> 29);
}

static int conn_grow(struct vmap *m);

/* The slot of (key, proto): its entry, or an empty one; NULL when out of memory. */
static struct vconn *conn_slot(struct vmap *m, uint64_t key, uint8_t proto)
{
    if (2 * (m->nconns + 1) > m->ccap && conn_grow(m))
        return NULL;
    size_t mask = m->ccap - 1;
    for (size_t i = conn_hash(key, proto) & mask;; i = (i + 1) & mask) {
        struct vconn *c = &m->conns[i];
        if (!c->used || (c->key == key && c->proto == proto))
            return c;
    }
}

static int conn_grow(struct vmap *m)
{
    size_t oc = m->ccap, cap = oc ? oc * 2 : 1024;
    struct vconn *old = m->conns, *n = calloc(cap, sizeof(*n));
    if (!n)
        return -1;
    m->conns = n, m->ccap = cap, m->nconns = 0;
    for (size_t i = 0; i < oc; i++)
        if (old[i].used) {
            *conn_slot(m, old[i].key, old[i].proto) = old[i];
            m->nconns++;
        }
    free(old);
    return 0;
}

static const char *ip_str(uint32_t a, char *buf)
{
    snprintf(buf, 16, "%u.%u.%u.%u", a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255);
    return buf;
}

/* A packet to backend dst: a TCP SYN (or the first packet) of a connection records
 * its pick, later ones must keep it. Returns false (and why) when one does not. */
static bool affinity(struct vcanon *c, size_t i, const uint8_t *p, const struct vlayout *l,
                     uint32_t src, uint32_t dst, char *why, size_t n)
{
    if (l->proto != 0 && l->proto != 1)
        return true;
    const uint8_t *l4 = p + l->l4;
    uint32_t sport = (uint32_t)l4[0] << 8 | l4[1], dport = (uint32_t)l4[2] << 8 | l4[3];
    uint64_t key = (uint64_t)src << 32 | sport << 16 | dport;
    struct vmap *m = &c->map[c->o->canon[i].group];
    struct vconn *s = conn_slot(m, key, (uint8_t)l->proto);
    bool syn = l->proto == 0 && (l4[13] & 0x12) == 0x02;
    if (!s || s->val == dst)
        return true;
    if (!s->used || syn) {
        m->nconns += !s->used;
        *s = (struct vconn){.key = key, .val = dst, .proto = (uint8_t)l->proto, .used = 1};
        return true;
    }
    char a[16], b[16], x[16];
    snprintf(why, n, "connection %s:%u -> :%u moved from backend %s to %s (affinity broken)",
             ip_str(src, x), sport, dport, ip_str(s->val, a), ip_str(dst, b));
    return false; /* the pick stays the first one, so one stray packet counts once */
}

/* Renames in place; canonical addresses are 240.0.0.0 + index (reserved space). */
static bool canon_packet(struct vcanon *c, uint8_t *p, uint32_t len, char *why, size_t n)
{
    const struct verify_opts *o = c->o;
    struct vlayout l = layout(p, len);
    bool ok = true;
    if (!o->ncanon || l.ip < 0)
        return ok;
    uint8_t *ip = p + l.ip;
    uint32_t src = get32(ip + 12), dst = get32(ip + 16);
    for (size_t i = 0; i < o->ncanon; i++)
        if (o->canon[i].kind == VERIFY_CANON_PORTS && l.proto >= 0)
            canon_ports(c, i, p, &l, src, dst);
    bool s_done = false, d_done = false; /* the first matching rule renames */
    for (size_t i = 0; i < o->ncanon; i++) {
        const struct verify_canon *r = &o->canon[i];
        if (r->kind == VERIFY_CANON_PORTS)
            continue;
        bool conns = r->kind == VERIFY_CANON_CONNS;
        if (conns && !d_done && in_rule(r, dst) && !affinity(c, i, p, &l, src, dst, why, n))
            ok = false;
        uint32_t base = 0xf0000000u + (uint32_t)r->group * 65536;
        if (!s_done && (s_done = in_rule(r, src)))
            put32(ip + 12, base + (conns ? 0 : canon_addr(c, i, src)));
        if (!d_done && (d_done = in_rule(r, dst)))
            put32(ip + 16, base + (conns ? 0 : canon_addr(c, i, dst)));
    }
    put16(ip + 10, 0); /* checksums follow the renamed fields: masked */
    if (l.proto == 0)
        put16(p + l.l4 + 16, 0);
    else if (l.proto == 1)
        put16(p + l.l4 + 6, 0);
    else if (l.proto == 2)
        put16(p + l.l4 + 2, 0);
    return ok;
}

/* ---- reporting ---- */

static void report(struct vstate *st, enum verify_diff_kind k, uint64_t clock, int sub,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(struct vstate *st, enum verify_diff_kind k, uint64_t clock, int sub,
                   const char *fmt, ...)
{
    if (st->reported >= st->o->max_diffs || !st->o->diff)
        return;
    st->reported++;
    struct verify_diff d = {
        .kind = k, .clock = clock, .sub = (uint16_t)(sub < 0 ? 0 : sub), .has_sub = sub >= 0};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d.what, sizeof(d.what), fmt, ap);
    va_end(ap);
    st->o->diff(st->o->ctx, &d);
}

/* ---- packets ---- */

static void win_clear(struct vwin *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->p[i].data);
    w->n = 0;
}

static int visit(void *ctx, const struct log_rec *rec)
{
    struct vside *s = ctx;
    struct vwin *w = &s->win;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        struct vpkt *n = realloc(w->p, cap * sizeof(*n));
        if (!n)
            return RW_ENOMEM;
        w->p = n, w->cap = cap;
    }
    uint8_t *data = malloc(rec->cap_len ? rec->cap_len : 1);
    if (!data)
        return RW_ENOMEM;
    memcpy(data, rec->data, rec->cap_len);
    char why[200];
    if (!canon_packet(&s->pc, data, rec->cap_len, why, sizeof(why))) {
        s->st->r->broken++;
        report(s->st, VERIFY_DIFF_INVARIANT, rec->meta.clock, rec->meta.sub, "%s: %s", s->name,
               why);
    }
    w->p[w->n++] = (struct vpkt){rec->meta.clock, rec->meta.sub, rec->cap_len, rec->orig_len, data};
    return 0;
}

static void on_damage(void *ctx, uint32_t seg, uint64_t clock, const char *why)
{
    struct vside *s = ctx;
    s->st->r->damaged++;
    report(s->st, VERIFY_DIFF_DAMAGE, clock, -1,
           "%s log damaged: segment %u, block at clock %llu: %s", s->name, seg,
           (unsigned long long)clock, why);
}

static int load_window(struct vside *s, uint64_t from, uint64_t to, struct rw_err *e)
{
    win_clear(&s->win);
    struct log_query q;
    log_query_all(&q);
    q.from_clock = from, q.to_clock = to;
    struct log_scan_cbs cb = {.visit = visit, .damage = on_damage, .ctx = s};
    int rc = log_scan(s->lr, &q, &cb, NULL, e);
    if (rc)
        rw_err_prefix(e, "%s %s: ", s->name, s->dir);
    return rc;
}

static bool same_bytes(const struct vpkt *a, const struct vpkt *b)
{
    return a->len == b->len && a->orig == b->orig && !memcmp(a->data, b->data, a->len);
}

static void changed(struct vstate *st, const struct vpkt *a, const struct vpkt *b)
{
    st->r->changed++;
    uint32_t n = a->len < b->len ? a->len : b->len, off = 0;
    while (off < n && a->data[off] == b->data[off])
        off++;
    if (off < n)
        report(st, VERIFY_DIFF_CHANGED, a->clock, a->sub,
               "bytes differ at offset %u (0x%02x in REF, 0x%02x in RUN)", off, a->data[off],
               b->data[off]);
    else
        report(st, VERIFY_DIFF_CHANGED, a->clock, a->sub,
               "length differs (%u/%u bytes in REF, %u/%u in RUN)", a->len, a->orig, b->len,
               b->orig);
}

/* An output of RUN that REF does not have: a duplicate when its bytes are those of
 * another output of the same clock. */
static void extra(struct vstate *st, const struct vwin *w, size_t j)
{
    st->r->duplicated++;
    const struct vpkt *x = &w->p[j];
    for (size_t k = 0; k < w->n; k++)
        if (k != j && w->p[k].clock == x->clock && same_bytes(&w->p[k], x)) {
            report(st, VERIFY_DIFF_DUPLICATED, x->clock, x->sub,
                   "duplicated in RUN (same bytes as sub %u)", w->p[k].sub);
            return;
        }
    report(st, VERIFY_DIFF_DUPLICATED, x->clock, x->sub, "extra in RUN (not in REF)");
}

static int key_cmp(const struct vpkt *a, const struct vpkt *b)
{
    if (a->clock != b->clock)
        return a->clock < b->clock ? -1 : 1;
    return a->sub < b->sub ? -1 : a->sub > b->sub;
}

static void compare_window(struct vstate *st, const struct vwin *a, const struct vwin *b)
{
    size_t i = 0, j = 0;
    st->r->ref_packets += a->n, st->r->run_packets += b->n;
    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1 : j == b->n ? -1 : key_cmp(&a->p[i], &b->p[j]);
        if (c < 0) {
            st->r->lost++;
            report(st, VERIFY_DIFF_LOST, a->p[i].clock, a->p[i].sub, "missing in RUN");
            i++;
        } else if (c > 0) {
            extra(st, b, j++);
        } else {
            if (!same_bytes(&a->p[i], &b->p[j]))
                changed(st, &a->p[i], &b->p[j]);
            i++, j++;
        }
    }
}

/* The lowest clock >= c that either log may hold, or UINT64_MAX. */
static uint64_t next_clock(struct vside *s[2], uint64_t c)
{
    uint64_t best = UINT64_MAX;
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < log_reader_nsegments(s[k]->lr); i++) {
            const struct log_seg_info *g = log_reader_segment(s[k]->lr, i);
            if (!g->packets || g->last_clock < c)
                continue;
            uint64_t f = g->first_clock > c ? g->first_clock : c;
            best = f < best ? f : best;
        }
    return best;
}

static uint64_t last_clock(struct vside *s[2])
{
    uint64_t last = 0;
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < log_reader_nsegments(s[k]->lr); i++) {
            const struct log_seg_info *g = log_reader_segment(s[k]->lr, i);
            if (g->packets && g->last_clock > last)
                last = g->last_clock;
        }
    return last;
}

static int compare_packets(struct vstate *st, struct vside *s[2])
{
    uint64_t last = last_clock(s);
    for (uint64_t c = next_clock(s, 0); c != UINT64_MAX && c <= last;) {
        uint64_t to = c + VERIFY_WINDOW - 1 < last ? c + VERIFY_WINDOW - 1 : last;
        int rc = load_window(s[0], c, to, st->e);
        if (!rc)
            rc = load_window(s[1], c, to, st->e);
        if (rc)
            return rc;
        compare_window(st, &s[0]->win, &s[1]->win);
        if (st->o->progress)
            st->o->progress(st->o->ctx, to, last);
        if (to == last)
            break;
        c = next_clock(s, to + 1);
    }
    return 0;
}

/* ---- alerts ---- */

struct valert {
    uint64_t clock;
    char *text; /* canonical */
    bool matched;
};

struct valerts {
    struct valert *a;
    size_t n;
};

static char *slurp(const char *path, size_t *len, int *rc)
{
    FILE *f = fopen(path, "rb");
    *rc = 0;
    if (!f) {
        *len = 0;
        *rc = errno == ENOENT ? 0 : RW_EIO;
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb)
                free(buf);
            buf = nb, cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        *rc = RW_ENOMEM;
    else
        buf[n] = 0;
    *len = n;
    return buf;
}

/* Appends s[0..n) to the growing string *out. */
static void put(char **out, size_t *len, const char *s, size_t n)
{
    memcpy(*out + *len, s, n);
    *len += n;
}

/* Lines are not terminated inside the file's buffer: search within n bytes only
 * (strstr would read on into the next lines, and take their fields for this one's). */
static const char *find(const char *line, size_t n, const char *what)
{
    return memmem(line, n, what, strlen(what));
}

static int alert_proto(const char *line, size_t n)
{
    if (find(line, n, "\"proto\": \"udp\""))
        return 1;
    if (find(line, n, "\"proto\": \"icmp\""))
        return 2;
    return 0;
}

/* Renames addresses and ports inside one quoted string value ("A.B.C.D" or
 * "A.B.C.D:PORT") into out; returns the characters consumed from q. */
static size_t canon_quoted(struct vcanon *c, int proto, const char *q, char **out, size_t *len)
{
    size_t n = strcspn(q, "\"\n");
    size_t alen = strspn(q, "0123456789.");
    char a[20];
    struct in_addr in;
    if (alen < 7 || alen > 15 || (alen != n && q[alen] != ':'))
        return 0;
    memcpy(a, q, alen), a[alen] = 0;
    if (inet_pton(AF_INET, a, &in) != 1)
        return 0;
    uint32_t addr = ntohl(in.s_addr);
    char tmp[64];
    int t = snprintf(tmp, sizeof(tmp), "%s", a);
    for (size_t i = 0; i < c->o->ncanon; i++) {
        const struct verify_canon *r = &c->o->canon[i];
        if (r->kind == VERIFY_CANON_ADDRS && in_rule(r, addr)) {
            t = snprintf(tmp, sizeof(tmp), "#addr%u.%u", r->group, canon_addr(c, i, addr));
            break;
        }
        if (r->kind == VERIFY_CANON_CONNS && in_rule(r, addr)) {
            t = snprintf(tmp, sizeof(tmp), "#pick%u", r->group);
            break;
        }
    }
    const char *rest = q + alen;
    size_t rlen = n - alen;
    for (size_t i = 0; rlen > 1 && i < c->o->ncanon; i++) {
        const struct verify_canon *r = &c->o->canon[i];
        if (r->kind == VERIFY_CANON_PORTS && r->addr == addr) {
            unsigned long p = strtoul(rest + 1, NULL, 10);
            t += snprintf(tmp + t, sizeof(tmp) - (size_t)t, ":#port%u",
                          canon_port(c, i, proto, (uint16_t)p));
            rlen = 0;
        }
    }
    put(out, len, tmp, (size_t)t);
    put(out, len, rest, rlen);
    return n;
}

static char *canon_line(struct vcanon *c, const char *line, size_t n)
{
    char *out = malloc(n * 2 + 64);
    size_t len = 0;
    if (!out)
        return NULL;
    int proto = alert_proto(line, n);
    for (size_t i = 0; i < n;) {
        put(&out, &len, line + i, 1);
        if (line[i++] != '"' || !c->o->ncanon)
            continue;
        size_t used = canon_quoted(c, proto, line + i, &out, &len);
        i += used;
    }
    out[len] = 0;
    return out;
}

static int alert_cmp(const void *x, const void *y)
{
    const struct valert *a = x, *b = y;
    if (a->clock != b->clock)
        return a->clock < b->clock ? -1 : 1;
    return strcmp(a->text, b->text);
}

static void valerts_free(struct valerts *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->a[i].text);
    free(v->a);
}

/* The clock of an alert line, or -1 when it has none. */
static int alert_clock(const char *line, size_t n, uint64_t *clock)
{
    const char *k = find(line, n, "\"clock\": ");
    if (!k || k + 10 > line + n || k[9] < '0' || k[9] > '9')
        return -1;
    char *end;
    errno = 0;
    *clock = strtoull(k + 9, &end, 10);
    return errno || end > line + n ? -1 : 0;
}

static int parse_alert(struct vside *s, const char *line, size_t n, struct valerts *v)
{
    struct valert *a = &v->a[v->n];
    if (alert_clock(line, n, &a->clock)) {
        s->st->r->damaged++;
        report(s->st, VERIFY_DIFF_DAMAGE, 0, -1, "%s alerts.json: unreadable line '%.*s'", s->name,
               (int)(n < 60 ? n : 60), line);
        return 0;
    }
    /* A quarantine is the runtime's event (run_quarantine.c), not an NF's alert:
     * the fault-free REF filters such packets out at its input edge instead. */
    static const char qtype[] = "\"type\": \"quarantine\"";
    if (memmem(line, n, qtype, sizeof(qtype) - 1)) {
        s->quarantined++;
        return 0;
    }
    a->matched = false;
    a->text = canon_line(&s->ac, line, n);
    if (!a->text)
        return RW_ENOMEM;
    v->n++;
    return 0;
}

static int load_alerts(struct vside *s, struct valerts *v, struct rw_err *e)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/alerts.json", s->dir);
    size_t len;
    int rc;
    char *buf = slurp(path, &len, &rc);
    memset(v, 0, sizeof(*v));
    if (rc)
        return rw_errf(e, rc, "%s: cannot read: %s", path, rw_strerror(rc));
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    v->a = calloc(lines, sizeof(*v->a));
    for (size_t i = 0; !rc && v->a && i < len;) {
        size_t n = strcspn(buf + i, "\n");
        if (n)
            rc = parse_alert(s, buf + i, n, v);
        i += n + 1;
    }
    free(buf);
    if (!v->a && lines)
        rc = RW_ENOMEM;
    if (rc)
        return rw_errf(e, rc, "%s: %s", path, rw_strerror(rc));
    qsort(v->a, v->n, sizeof(*v->a), alert_cmp);
    return 0;
}

/* The "type" value of an alert line, for pairing changed alerts. */
static size_t alert_type(const char *t, const char **p)
{
    const char *k = strstr(t, "\"type\": \"");
    *p = k ? k + 9 : "";
    return k ? strcspn(*p, "\"") : 0;
}

static bool same_type(const char *a, const char *b)
{
    const char *pa, *pb;
    size_t na = alert_type(a, &pa), nb = alert_type(b, &pb);
    return na == nb && !memcmp(pa, pb, na);
}

/* Alerts of one clock: [ai, an) of REF and [bi, bn) of RUN, each sorted by text. */
static void compare_clock(struct vstate *st, struct valert *a, size_t an, struct valert *b,
                          size_t bn)
{
    for (size_t i = 0, j = 0; i < an && j < bn;) {
        int c = strcmp(a[i].text, b[j].text);
        if (!c)
            a[i].matched = b[j].matched = true;
        i += c <= 0, j += c >= 0;
    }
    for (size_t i = 0; i < an; i++) {
        if (a[i].matched)
            continue;
        st->r->alerts_missing++;
        size_t j = 0;
        while (j < bn && (b[j].matched || !same_type(a[i].text, b[j].text)))
            j++;
        if (j == bn) {
            report(st, VERIFY_DIFF_ALERT_MISSING, a[i].clock, -1, "alert missing in RUN: %.300s",
                   a[i].text);
            continue;
        }
        b[j].matched = true;
        st->r->alerts_extra++;
        report(st, VERIFY_DIFF_ALERT_CHANGED, a[i].clock, -1,
               "alert changed: REF %.180s RUN %.180s", a[i].text, b[j].text);
    }
    for (size_t j = 0; j < bn; j++)
        if (!b[j].matched) {
            st->r->alerts_extra++;
            report(st, VERIFY_DIFF_ALERT_EXTRA, b[j].clock, -1, "alert extra in RUN: %.300s",
                   b[j].text);
        }
}

static void compare_alerts(struct vstate *st, struct valerts *a, struct valerts *b)
{
    size_t i = 0, j = 0;
    st->r->ref_alerts = a->n, st->r->run_alerts = b->n;
    while (i < a->n || j < b->n) {
        uint64_t c = i == a->n                       ? b->a[j].clock
                     : j == b->n                     ? a->a[i].clock
                     : a->a[i].clock < b->a[j].clock ? a->a[i].clock
                                                     : b->a[j].clock;
        size_t i2 = i, j2 = j;
        while (i2 < a->n && a->a[i2].clock == c)
            i2++;
        while (j2 < b->n && b->a[j2].clock == c)
            j2++;
        compare_clock(st, a->a + i, i2 - i, b->a + j, j2 - j);
        i = i2, j = j2;
    }
}

/* ---- the whole comparison ---- */

static int side_open(struct vside *s, const char *name, const char *dir, struct vstate *st,
                     struct rw_err *e)
{
    memset(s, 0, sizeof(*s));
    s->name = name, s->st = st;
    s->pc.o = s->ac.o = st->o;
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    char out[4200];
    snprintf(out, sizeof(out), "%s/output", dir);
    int rc = log_reader_open(out, &s->lr, e);
    if (rc)
        rw_err_prefix(e, "%s: ", name);
    return rc;
}

static void side_close(struct vside *s)
{
    if (s->lr)
        log_reader_close(s->lr);
    win_clear(&s->win);
    free(s->win.p);
    vcanon_free(&s->pc);
    vcanon_free(&s->ac);
}

static int compare_all(struct vstate *st, struct vside *s[2], struct rw_err *e)
{
    int rc = compare_packets(st, s);
    if (rc)
        return rc;
    struct valerts a, b;
    rc = load_alerts(s[0], &a, e);
    if (!rc) {
        rc = load_alerts(s[1], &b, e);
        if (!rc)
            compare_alerts(st, &a, &b);
        if (!rc)
            valerts_free(&b);
    }
    valerts_free(&a);
    return rc;
}

/* ---- the NFs' final state (DIR/state.json, written by run_state.c) ---- */

struct vlines {
    char **v;
    size_t n, cap;
};

static int by_line(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The strings of state.json's "state" arrays (one per line, as run_state.c writes
 * them) into st; those of its "broken" arrays into br. 1 when there is no file. */
/* Adds a copy of line to l. */
static int vlines_add(struct vlines *l, const char *line)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, nc * sizeof(*nv));
        if (!nv)
            return RW_ENOMEM;
        l->v = nv, l->cap = nc;
    }
    return (l->v[l->n] = strdup(line)) ? (l->n++, 0) : RW_ENOMEM;
}

/* DIR/state.json as run_state.c writes it, one value per line: anything else
 * (truncated, overwritten, reformatted) is damage, never "state lost".
 * Returns 0, 1 when the run has none, RW_ECORRUPT with the line in *bad, or an
 * error. */
static int load_state(const char *dir, struct vlines *st, struct vlines *br, unsigned *bad,
                      struct rw_err *e)
{
    char path[4200];
    size_t len;
    int rc;
    snprintf(path, sizeof(path), "%s/state.json", dir);
    char *buf = slurp(path, &len, &rc);
    if (!buf)
        return rc ? rw_errf(e, rc, "%s: cannot read", path) : 1; /* 0: no such file */
    struct vlines *in = NULL;
    char *save = NULL;
    unsigned ln = 0, nfs = 0, closed = 0;
    long checked = -1;
    bool open = false, last_brace = false;
    for (char *line = strtok_r(buf, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        ln++;
        while (*line == ' ')
            line++;
        last_brace = !strcmp(line, "}");
        if (ln == 1)
            open = !strcmp(line, "{");
        else if (!strncmp(line, "\"checked\": ", 11))
            checked = strtol(line + 11, NULL, 10);
        else if (!strncmp(line, "{\"name\": ", 9))
            nfs++;
        else if (!strncmp(line, "\"state\": [", 10) || !strncmp(line, "\"broken\": [", 11))
            in = line[1] == 's' ? st : br;
        else if (*line == ']' && in)
            in = NULL, closed++;
        else if (in && *line == '"') {
            char *end = strrchr(line, '"');
            if (end == line || (end[1] && strcmp(end + 1, ",")))
                rc = RW_ECORRUPT;
            else
                *end = 0,
                rc = vlines_add(in, line + 1) ? rw_errf(e, RW_ENOMEM, "out of memory") : 0;
        } else if (in)
            rc = RW_ECORRUPT;
    }
    free(buf);
    if (!rc && (!open || !last_brace || checked < 0 || (unsigned long)checked != nfs ||
                closed != 2 * nfs || in))
        rc = RW_ECORRUPT;
    if (rc == RW_ECORRUPT)
        *bad = ln;
    if (!rc && st->n)
        qsort(st->v, st->n, sizeof(char *), by_line);
    return rc;
}

static void vlines_free(struct vlines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Two sorted sets of lines: each line in one only is a difference. */
static void compare_state_lines(struct vstate *st, const struct vlines *a, const struct vlines *b)
{
    size_t i = 0, j = 0;
    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->v[i], b->v[j]);
        if (c == 0) {
            i++, j++;
            continue;
        }
        st->r->state_diffs++;
        if (c < 0)
            report(st, VERIFY_DIFF_STATE, 0, -1, "state in REF only: %.300s", a->v[i++]);
        else
            report(st, VERIFY_DIFF_STATE, 0, -1, "state in RUN only: %.300s", b->v[j++]);
    }
}

static int compare_state(struct vstate *st, struct rw_err *e)
{
    struct vlines s[2] = {{0}}, br[2] = {{0}};
    const char *dirs[2] = {st->o->ref_dir, st->o->run_dir}, *names[2] = {"REF", "RUN"};
    int rc = 0, missing = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        unsigned bad = 0;
        int got = load_state(dirs[k], &s[k], &br[k], &bad, e);
        if (got == RW_ECORRUPT) { /* damage, like a damaged block: counted, the rest goes on */
            st->r->damaged++;
            report(st, VERIFY_DIFF_DAMAGE, 0, -1,
                   "%s state.json: not as rewind writes it (at line %u): state not compared",
                   names[k], bad);
            missing++;
            continue;
        }
        rc = got < 0 ? got : 0;
        missing += got == 1;
        for (size_t i = 0; !rc && i < br[k].n; i++) {
            st->r->broken++;
            report(st, VERIFY_DIFF_INVARIANT, 0, -1, "%s state: %.300s", names[k], br[k].v[i]);
        }
    }
    if (!rc && !missing) { /* a run without one (--no-ft, older) has nothing to compare */
        st->r->state_compared = true;
        st->r->ref_state = s[0].n;
        st->r->run_state = s[1].n;
        compare_state_lines(st, &s[0], &s[1]);
    }
    for (int k = 0; k < 2; k++)
        vlines_free(&s[k]), vlines_free(&br[k]);
    return rc;
}

int verify_runs(const struct verify_opts *o, struct verify_result *r, struct rw_err *e)
{
    memset(r, 0, sizeof(*r));
    struct vstate st = {.o = o, .r = r, .e = e};
    struct vside *s[2] = {calloc(1, sizeof(struct vside)), calloc(1, sizeof(struct vside))};
    int rc = s[0] && s[1] ? 0 : rw_errf(e, RW_ENOMEM, "verify: out of memory");
    if (!rc)
        rc = side_open(s[0], "REF", o->ref_dir, &st, e);
    if (!rc)
        rc = side_open(s[1], "RUN", o->run_dir, &st, e);
    if (!rc)
        rc = compare_all(&st, s, e);
    if (!rc)
        r->ref_quarantined = s[0]->quarantined, r->run_quarantined = s[1]->quarantined;
    if (!rc)
        rc = compare_state(&st, e);
    for (int k = 0; k < 2; k++)
        if (s[k])
            side_close(s[k]), free(s[k]);
    r->equivalent = !rc && !r->lost && !r->duplicated && !r->changed && !r->alerts_missing &&
                    !r->alerts_extra && !r->damaged && !r->broken && !r->state_diffs;
    return rc;
}
