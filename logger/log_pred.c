/*
 * log_pred.c - a tcpdump filter turned into a predicate over the keys index.
 *
 * libpcap compiles a filter to BPF bytecode and keeps its parse tree to itself,
 * so the part of pcap-filter(7) that the index can answer is parsed again here,
 * by hand: host, net (/len, mask, a.b.c), port, portrange, the proto keywords
 * (tcp, udp, sctp, icmp, icmp6, ip, ip6, arp, rarp, `ip proto N`), the src/dst
 * qualifiers, and/or/not (&&, ||, !) with parentheses. Its rules are pcap's: `and`
 * and `or` bind equally, left to right; `not` binds tightest; a bare id takes the
 * qualifiers of the primitive before it (`port 80 or 443`).
 *
 * Soundness over reach: anything else (vlan, ether, len, tcp[13], names instead
 * of numbers, an octal-looking 010) makes the whole filter unanswerable here, and
 * the scan reads every block. A negation or a prefix shorter than /8 is "true"
 * (the index cannot rule a block out for it). The filter has already been
 * compiled by libpcap, which rejects what pcap-filter(7) does not allow.
 */
#include "log_keys.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_MAX 64

enum qproto { Q_NONE, Q_IP, Q_IP6, Q_ARP, Q_TCP, Q_UDP, Q_SCTP };
/* T_PROTO: after `ip proto 6`, a bare `or 17` is a protocol too; T_ERR: after a
 * protocol keyword alone (`tcp`), libpcap refuses a bare id. */
enum qtype { T_NONE, T_HOST, T_NET, T_PORT, T_PORTRANGE, T_PROTO, T_ERR };

struct parser {
    const char *s;
    char tok[TOK_MAX];
    bool fail; /* something the index cannot answer, or out of memory */
    bool nomem;
    enum qproto last_proto; /* the qualifiers a bare id inherits */
    enum qtype last_type;
    bool have_last;
};

/* ---- tokens ---- */

static bool word_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == ':' || c == '/' || c == '-' || c == '_';
}

/* Reads the next token into p->tok ("" at the end); an unknown character fails. */
static void next(struct parser *p)
{
    while (isspace((unsigned char)*p->s))
        p->s++;
    p->tok[0] = 0;
    if (!*p->s)
        return;
    if (*p->s == '(' || *p->s == ')' || (*p->s == '!' && p->s[1] != '=')) {
        p->tok[0] = *p->s++;
        p->tok[1] = 0;
        return;
    }
    if ((p->s[0] == '&' && p->s[1] == '&') || (p->s[0] == '|' && p->s[1] == '|')) {
        p->tok[0] = p->s[0];
        p->tok[1] = p->s[1];
        p->tok[2] = 0;
        p->s += 2;
        return;
    }
    size_t n = 0;
    while (word_char(*p->s) && n + 1 < TOK_MAX)
        p->tok[n++] = *p->s++;
    p->tok[n] = 0;
    if (!n || word_char(*p->s))
        p->fail = true; /* an operator, a bracket, a backslash, or a word too long */
}

static bool is(const struct parser *p, const char *w)
{
    return strcmp(p->tok, w) == 0;
}

static bool at_end_of_primitive(const struct parser *p)
{
    return !p->tok[0] || is(p, ")") || is(p, "and") || is(p, "or") || is(p, "&&") || is(p, "||");
}

/* ---- predicate nodes ---- */

static struct log_pred *node(struct parser *p, enum log_pred_op op, uint32_t key,
                             struct log_pred *a, struct log_pred *b)
{
    struct log_pred *n = p->fail ? NULL : calloc(1, sizeof(*n));
    if (!n) {
        if (!p->fail)
            p->nomem = true;
        p->fail = true;
        log_pred_free(a);
        log_pred_free(b);
        return NULL;
    }
    n->op = op;
    n->key = key;
    n->a = a;
    n->b = b;
    return n;
}

static struct log_pred *key(struct parser *p, uint32_t k)
{
    return node(p, LOG_PRED_KEY, k, NULL, NULL);
}

void log_pred_free(struct log_pred *p)
{
    if (!p)
        return;
    log_pred_free(p->a);
    log_pred_free(p->b);
    free(p);
}

/* ---- numbers and addresses ---- */

/* A decimal number without leading zeros (pcap reads 010 as octal). */
static bool decimal(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    if (!n || n > 10 || (s[0] == '0' && n > 1))
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Dotted IPv4 with 1 to 4 parts (pcap's net shorthand: "10.64" is 10.64.0.0/16);
 * *parts says how many were given. */
static bool ipv4(const char *s, uint8_t a[4], int *parts)
{
    memset(a, 0, 4);
    int n = 0;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        unsigned long v;
        if (n == 4 || !decimal(s, len, 255, &v))
            return false;
        a[n++] = (uint8_t)v;
        if (!dot)
            break;
        s = dot + 1;
        if (!*s)
            return false;
    }
    *parts = n;
    return n > 0;
}

static struct log_pred *host_pred(struct parser *p, const char *id)
{
    uint8_t a[16];
    int parts;
    if (ipv4(id, a, &parts) && parts == 4)
        return key(p, log_key_host(4, a));
    if (strchr(id, ':') && inet_pton(AF_INET6, id, a) == 1)
        return key(p, log_key_host(6, a));
    p->fail = true; /* a name (resolved by libpcap), or a net written as a host */
    return NULL;
}

/* The longest indexed prefix that contains the net: /8, /16, /24 (IPv4), /32,
 * /48, /64 (IPv6), or the host itself; shorter nets cannot be answered. */
static struct log_pred *net_pred(struct parser *p, int family, const uint8_t *a, unsigned plen)
{
    unsigned full = family == 4 ? 32 : 128;
    if (plen == full)
        return key(p, log_key_host(family, a));
    static const unsigned v4[] = {24, 16, 8}, v6[] = {64, 48, 32};
    const unsigned *lens = family == 4 ? v4 : v6;
    for (int i = 0; i < 3; i++)
        if (plen >= lens[i])
            return key(p, log_key_net(family, a, lens[i]));
    return node(p, LOG_PRED_TRUE, 0, NULL, NULL);
}

static bool mask_len(const uint8_t m[4], unsigned *plen)
{
    uint32_t v = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
    unsigned n = 0;
    while (n < 32 && (v & (0x80000000u >> n)))
        n++;
    if (n < 32 && (v << n))
        return false; /* not contiguous */
    *plen = n;
    return true;
}

static struct log_pred *net_id(struct parser *p, const char *id)
{
    char buf[TOK_MAX];
    snprintf(buf, sizeof(buf), "%s", id);
    char *slash = strchr(buf, '/');
    unsigned long plen = 0;
    if (slash)
        *slash = 0;
    uint8_t a[16];
    int parts;
    if (ipv4(buf, a, &parts)) {
        if (slash) {
            if (parts != 4 || !decimal(slash + 1, strlen(slash + 1), 32, &plen))
                goto fail;
        } else if (is(p, "mask")) {
            next(p);
            uint8_t m[4];
            unsigned ml;
            if (!ipv4(p->tok, m, &parts) || parts != 4 || !mask_len(m, &ml))
                goto fail;
            next(p);
            return net_pred(p, 4, a, ml);
        } else {
            plen = 8ul * (unsigned long)parts;
        }
        return net_pred(p, 4, a, (unsigned)plen);
    }
    if (strchr(buf, ':') && inet_pton(AF_INET6, buf, a) == 1) {
        if (slash && !decimal(slash + 1, strlen(slash + 1), 128, &plen))
            goto fail;
        return net_pred(p, 6, a, slash ? (unsigned)plen : 128);
    }
fail:
    p->fail = true;
    return NULL;
}

static struct log_pred *proto_key(struct parser *p, enum qproto q)
{
    switch (q) {
    case Q_TCP:
        return key(p, log_key_proto(6));
    case Q_UDP:
        return key(p, log_key_proto(17));
    case Q_SCTP:
        return key(p, log_key_proto(132));
    default:
        return node(p, LOG_PRED_TRUE, 0, NULL, NULL);
    }
}

static struct log_pred *port_pred(struct parser *p, enum qproto q, const char *id, bool range)
{
    unsigned long lo, hi;
    const char *dash = range ? strchr(id, '-') : NULL;
    if (range ? !dash || !decimal(id, (size_t)(dash - id), 65535, &lo) ||
                    !decimal(dash + 1, strlen(dash + 1), 65535, &hi)
              : !decimal(id, strlen(id), 65535, &lo)) {
        p->fail = true; /* a service name */
        return NULL;
    }
    if (!range)
        hi = lo;
    if (hi < lo) {
        unsigned long t = lo;
        lo = hi;
        hi = t;
    }
    struct log_pred *r = NULL;
    if (hi - lo >= 64) {
        r = node(p, LOG_PRED_TRUE, 0, NULL, NULL); /* too wide to list its ports */
    } else {
        for (unsigned long v = lo; v <= hi && !p->fail; v++) {
            struct log_pred *k = key(p, log_key_port((uint16_t)v));
            r = r ? node(p, LOG_PRED_OR, 0, r, k) : k;
        }
    }
    if (q == Q_TCP || q == Q_UDP || q == Q_SCTP)
        r = node(p, LOG_PRED_AND, 0, r, proto_key(p, q));
    return r;
}

/* ---- the grammar ---- */

static struct log_pred *expr(struct parser *p);

static bool proto_word(const struct parser *p, enum qproto *q)
{
    static const struct {
        const char *w;
        enum qproto q;
    } words[] = {{"ip", Q_IP},   {"ip6", Q_IP6}, {"arp", Q_ARP},  {"rarp", Q_ARP},
                 {"tcp", Q_TCP}, {"udp", Q_UDP}, {"sctp", Q_SCTP}};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (is(p, words[i].w)) {
            *q = words[i].q;
            return true;
        }
    return false;
}

/* A protocol keyword alone: tcp, udp, sctp, icmp, icmp6, ip, ip6, arp, rarp. */
static struct log_pred *proto_alone(struct parser *p, const char *w)
{
    if (!strcmp(w, "icmp"))
        return key(p, log_key_proto(1));
    if (!strcmp(w, "icmp6"))
        return key(p, log_key_proto(58));
    if (!strcmp(w, "tcp"))
        return key(p, log_key_proto(6));
    if (!strcmp(w, "udp"))
        return key(p, log_key_proto(17));
    if (!strcmp(w, "sctp"))
        return key(p, log_key_proto(132));
    if (!strcmp(w, "ip"))
        return key(p, log_key_l3(0x0800));
    if (!strcmp(w, "ip6"))
        return key(p, log_key_l3(0x86dd));
    if (!strcmp(w, "arp"))
        return key(p, log_key_l3(0x0806));
    if (!strcmp(w, "rarp"))
        return key(p, log_key_l3(0x8035));
    p->fail = true;
    return NULL;
}

/* What an id means under its qualifiers. */
static struct log_pred *id_pred(struct parser *p, enum qproto q, enum qtype t)
{
    char id[TOK_MAX];
    snprintf(id, sizeof(id), "%s", p->tok);
    if (!id[0] || at_end_of_primitive(p) || is(p, "(") || is(p, "!") || is(p, "not")) {
        p->fail = true;
        return NULL;
    }
    next(p);
    p->last_proto = q;
    p->last_type = t;
    p->have_last = true;
    unsigned long v;
    switch (t) {
    case T_PROTO:
        if (!decimal(id, strlen(id), 255, &v)) {
            p->fail = true;
            return NULL;
        }
        return key(p, log_key_proto((uint8_t)v));
    case T_ERR:
        p->fail = true;
        return NULL;
    case T_NET:
        return net_id(p, id);
    case T_PORT:
        return port_pred(p, q, id, false);
    case T_PORTRANGE:
        return port_pred(p, q, id, true);
    default:
        return host_pred(p, id);
    }
}

static struct log_pred *primitive(struct parser *p)
{
    enum qproto q = Q_NONE;
    enum qtype t = T_NONE;
    bool qualified = false;
    if (is(p, "icmp") || is(p, "icmp6")) {
        char w[TOK_MAX];
        snprintf(w, sizeof(w), "%s", p->tok);
        next(p);
        p->last_type = T_ERR, p->have_last = true;
        return proto_alone(p, w);
    }
    if (proto_word(p, &q)) {
        char w[TOK_MAX];
        snprintf(w, sizeof(w), "%s", p->tok);
        next(p);
        if (at_end_of_primitive(p)) {
            p->last_type = T_ERR, p->have_last = true;
            return proto_alone(p, w);
        }
        qualified = true;
    }
    if (is(p, "proto")) { /* ip proto N, ip6 proto N, proto N */
        next(p);
        if (q != Q_NONE && q != Q_IP && q != Q_IP6) {
            p->fail = true;
            return NULL;
        }
        return id_pred(p, q, T_PROTO);
    }
    if (is(p, "src") || is(p, "dst")) { /* the index keeps no direction: both sides */
        next(p);
        qualified = true;
        if (is(p, "or") || is(p, "and")) { /* src or dst, src and dst */
            struct parser peek = *p;
            next(&peek);
            if (!peek.fail && (is(&peek, "src") || is(&peek, "dst")))
                *p = peek, next(p);
        }
    }
    if (is(p, "host"))
        t = T_HOST;
    else if (is(p, "net"))
        t = T_NET;
    else if (is(p, "port"))
        t = T_PORT;
    else if (is(p, "portrange"))
        t = T_PORTRANGE;
    if (t != T_NONE) {
        next(p);
        qualified = true;
    }
    if (!qualified && p->have_last) { /* a bare id: the qualifiers before it */
        q = p->last_proto;
        t = p->last_type;
    }
    return id_pred(p, q, t);
}

static struct log_pred *term(struct parser *p)
{
    if (p->fail)
        return NULL;
    if (is(p, "not") || is(p, "!")) {
        next(p);
        log_pred_free(term(p)); /* parsed for its qualifiers and its errors */
        return node(p, LOG_PRED_TRUE, 0, NULL, NULL);
    }
    if (is(p, "(")) {
        /* pcap: a parenthesised expression passes on the qualifiers from before
         * it, not those inside it (`port 80 or (tcp port 53) or 443`: port 443) */
        enum qproto lp = p->last_proto;
        enum qtype lt = p->last_type;
        bool hl = p->have_last;
        next(p);
        struct log_pred *e = expr(p);
        if (!is(p, ")"))
            p->fail = true;
        next(p);
        p->last_proto = lp, p->last_type = lt, p->have_last = hl;
        return e;
    }
    return primitive(p);
}

static struct log_pred *expr(struct parser *p)
{
    struct log_pred *l = term(p);
    while (!p->fail) {
        enum log_pred_op op;
        if (is(p, "and") || is(p, "&&"))
            op = LOG_PRED_AND;
        else if (is(p, "or") || is(p, "||"))
            op = LOG_PRED_OR;
        else
            break;
        next(p);
        struct log_pred *r = term(p);
        l = node(p, op, 0, l, r);
    }
    return l;
}

int log_pred_compile(const char *bpf, struct log_pred **out)
{
    *out = NULL;
    if (!bpf || !*bpf)
        return 0;
    struct parser p = {.s = bpf};
    next(&p);
    struct log_pred *r = expr(&p);
    if (p.tok[0])
        p.fail = true;
    if (p.fail) {
        log_pred_free(r);
        return p.nomem ? RW_ENOMEM : 0; /* not understood: read every block */
    }
    *out = r;
    return 0;
}
