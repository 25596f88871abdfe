/*
 * test_nf_nat.c - the NAT NF through the real `rewind run`, on the bundled traces
 * and the real LAN hour: every translated packet carries the external address and
 * the port its nat.map event names, everything else in it is unchanged, and its
 * checksums are valid (recomputed here with a plain RFC 1071 sum); return traffic
 * addressed to the external address is translated back to exactly what the inside
 * host saw; no port is held by two live flows; ports come back; exhaustion is a
 * counted drop, not a crash; malformed packets are counted and dropped; FT and
 * --no-ft give the same output.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"
#include "log.h"

#define EXT "192.0.2.1"

/* ---- output log ---- */

/* ---- running the chain ---- */

/* docs/chains/nat.yaml with inside and ports replaced, written to dir/name. */
static void chain_with(const char *dir, const char *name, const char *inside, const char *ports,
                       char *path, size_t n)
{
    char src[4096];
    snprintf(src, sizeof(src), "%s/docs/chains/nat.yaml", getenv("RW_SRC"));
    snprintf(path, n, "%s/%s", dir, name);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "sed -e 's#inside: 10.200.0.1/32#inside: %s#' "
                                "-e 's#ports: 20000-21023#ports: %s#' '%s' > '%s'",
                                inside, ports, src, path),
                          0);
}

static int run(const char *dir, const char *chain, const char *trace, const char *out,
               const char *extra)
{
    char o[4200];
    snprintf(o, sizeof(o), "%s/run", dir);
    return tu_sh(o, "'%s' run '%s' --trace '%s' --out '%s' %s", tu_bin(), chain, trace, out,
                 extra ? extra : "");
}

/* What each test starts from: a scratch directory (TAG) with a NAT chain in it
 * (chain_with's NAME, INSIDE, PORTS) and a bundled trace. */
struct fx {
    char *d;
    char chain[4200], trace[4096];
};

static void fx_init(struct fx *f, const char *tag, const char *name, const char *inside,
                    const char *ports, const char *trace)
{
    f->d = tu_mkdtemp(tag);
    chain_with(f->d, name, inside, ports, f->chain, sizeof(f->chain));
    tu_trace(trace, f->trace, sizeof(f->trace));
}

static void fx_done(struct fx *f)
{
    tu_rmrf(f->d);
    free(f->d);
}

/* fx's dir/name, in out. */
static const char *fx_path(const struct fx *f, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", f->d, name);
    return out;
}

/* ---- an independent packet parser and RFC 1071 checksums ---- */

struct pv {
    bool ok;
    size_t l3, l4, l4len;
    bool full;
    uint8_t proto, flags, icmp_type;
    uint8_t src[4], dst[4];
    uint16_t sport, dport; /* ICMP: the echo id in both */
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static struct pv pparse(const uint8_t *d, size_t len)
{
    struct pv v = {0};
    if (len < 34 || rd16(d + 12) != 0x0800 || d[14] != 0x45 || (rd16(d + 20) & 0x3fff))
        return v;
    v.l3 = 14;
    v.l4 = 34;
    v.l4len = rd16(d + 16) - 20u;
    v.full = len >= 14 + (size_t)rd16(d + 16);
    v.proto = d[23];
    memcpy(v.src, d + 26, 4);
    memcpy(v.dst, d + 30, 4);
    if (len < v.l4 + 8)
        return v;
    if (v.proto == 6 || v.proto == 17) {
        v.sport = rd16(d + 34), v.dport = rd16(d + 36);
        v.flags = v.proto == 6 && len >= 48 ? d[47] : 0;
    } else if (v.proto == 1) {
        v.icmp_type = d[34];
        v.sport = v.dport = rd16(d + 38);
    }
    v.ok = true;
    return v;
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += rd16(p + i);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* 1 valid, 0 invalid, -1 cannot tell (not IPv4 TCP/UDP/ICMP, or cut short). */
static int cksums_ok(const uint8_t *d, size_t len)
{
    struct pv v = pparse(d, len);
    if (!v.ok || !v.full || (v.proto != 6 && v.proto != 17 && v.proto != 1))
        return -1;
    if (fold(sum16(d + 14, 20, 0)) != 0xffff)
        return 0;
    const uint8_t *l4 = d + v.l4;
    if (v.proto == 1)
        return fold(sum16(l4, v.l4len, 0)) == 0xffff;
    if (v.proto == 17 && rd16(l4 + 6) == 0)
        return 1;
    uint32_t s = sum16(d + 26, 8, 0) + v.proto + (uint32_t)v.l4len;
    return fold(sum16(l4, v.l4len, s)) == 0xffff;
}

/* Writes both checksums (the test's own, for the return-traffic trace). */
static void set_cksums(uint8_t *d, size_t len)
{
    struct pv v = pparse(d, len);
    if (!v.ok || !v.full)
        return;
    d[24] = d[25] = 0;
    uint16_t c = (uint16_t)~fold(sum16(d + 14, 20, 0));
    d[24] = (uint8_t)(c >> 8), d[25] = (uint8_t)c;
    uint8_t *l4 = d + v.l4;
    size_t off = v.proto == 6 ? 16 : v.proto == 17 ? 6 : 2;
    if (v.proto == 17 && rd16(l4 + 6) == 0)
        return;
    l4[off] = l4[off + 1] = 0;
    uint32_t s = v.proto == 1 ? 0 : sum16(d + 26, 8, 0) + v.proto + (uint32_t)v.l4len;
    c = (uint16_t)~fold(sum16(l4, v.l4len, s));
    if (v.proto == 17 && c == 0)
        c = 0xffff;
    l4[off] = (uint8_t)(c >> 8), l4[off + 1] = (uint8_t)c;
}

static bool in_net(const uint8_t *a, const char *net, int bits)
{
    uint8_t n[4];
    inet_pton(AF_INET, net, n);
    uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    uint32_t y = (uint32_t)n[0] << 24 | (uint32_t)n[1] << 16 | (uint32_t)n[2] << 8 | n[3];
    uint32_t m = bits ? ~0u << (32 - bits) : 0;
    return (x & m) == (y & m);
}

static void ep(char *b, size_t n, const uint8_t *ip, uint16_t port)
{
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, ip, a, sizeof(a));
    snprintf(b, n, "%s:%u", a, port);
}

/* ---- nat.map / nat.unmap events ---- */

struct ev {
    uint64_t clock;
    int phase; /* 0 idle unmap, 1 map, 3 other unmap (packets are phase 2) */
    uint16_t port;
    char flow[96]; /* "proto internal remote" */
};

struct evs {
    size_t n, cap;
    struct ev *v;
    size_t exhausted_alerts;
    long long exhausted_count; /* the highest nat.drop count for ports_exhausted */
    size_t malformed[4];       /* truncated, bad_ihl, fragment, ip_options */
    size_t idle, closed, reset;
};

static bool field(const char *line, const char *key, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": \"", key);
    const char *s = strstr(line, pat);
    if (!s)
        return false;
    s += strlen(pat);
    const char *e = strchr(s, '"');
    if (!e || (size_t)(e - s) >= n)
        return false;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return true;
}

static void add_ev(struct evs *x, const char *line)
{
    char proto[8], in[32], ex[32], rem[32], reason[24] = "";
    bool map = strstr(line, "\"type\": \"nat.map\"") != NULL;
    if (!field(line, "proto", proto, sizeof(proto)) || !field(line, "internal", in, sizeof(in)) ||
        !field(line, "external", ex, sizeof(ex)) || !field(line, "remote", rem, sizeof(rem)))
        return;
    field(line, "reason", reason, sizeof(reason));
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 1024;
        x->v = realloc(x->v, x->cap * sizeof(*x->v));
    }
    struct ev *e = &x->v[x->n++];
    e->clock = strtoull(strstr(line, "\"clock\": ") + 9, NULL, 10);
    e->phase = map ? 1 : !strcmp(reason, "idle") ? 0 : 3;
    e->port = (uint16_t)atoi(strrchr(ex, ':') + 1);
    snprintf(e->flow, sizeof(e->flow), "%s %s %s", proto, in, rem);
    x->idle += !map && !strcmp(reason, "idle");
    x->closed += !map && !strcmp(reason, "closed");
    x->reset += !map && !strcmp(reason, "reset");
}

static int by_order(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->clock != y->clock)
        return x->clock < y->clock ? -1 : 1;
    return x->phase - y->phase;
}

static void read_events(const char *out, struct evs *x)
{
    static const char *const bad[] = {"truncated", "bad_ihl", "fragment", "ip_options"};
    char path[4300], line[1024];
    snprintf(path, sizeof(path), "%s/alerts.json", out);
    memset(x, 0, sizeof(*x));
    FILE *f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "\"nat.map\"") || strstr(line, "\"nat.unmap\""))
            add_ev(x, line);
        else if (strstr(line, "\"ports_exhausted\"")) {
            x->exhausted_alerts++;
            long long n = atoll(strstr(line, "\"count\": ") + 9);
            if (n > x->exhausted_count) /* instances interleave: the highest */
                x->exhausted_count = n;
        }
        for (int i = 0; i < 4; i++)
            x->malformed[i] += strstr(line, "\"nat.drop\"") && strstr(line, bad[i]);
    }
    fclose(f);
    qsort(x->v, x->n, sizeof(*x->v), by_order); /* stable enough: distinct phases */
}

/* ---- the consistency check: events and output packets in order ---- */

struct check {
    size_t maps, collisions, mismatches; /* from the events */
    size_t translated, bad_map, changed, bad_ck, cks_checked, max_live, ports_used;
    size_t syn_in, syn_out; /* outbound SYNs in the input, translated in the output */
};

struct ctx {
    const char *inside;
    int bits;
    uint16_t lo, hi;
};

/* The flow string of an outbound input packet, as its nat.map would name it. */
static void flow_of(const struct pv *v, char *b, size_t n)
{
    char in[32], rem[32];
    ep(in, sizeof(in), v->src, v->sport);
    ep(rem, sizeof(rem), v->dst, v->proto == 1 ? 0 : v->dport);
    snprintf(b, n, "%s %s %s", v->proto == 6 ? "tcp" : v->proto == 17 ? "udp" : "icmp", in, rem);
}

static void apply_ev(const struct ev *e, char (*live)[96], size_t *nlive, bool *used,
                     struct check *c)
{
    if (e->phase == 1) {
        c->maps++;
        c->collisions += live[e->port][0] != '\0';
        snprintf(live[e->port], 96, "%s", e->flow);
        used[e->port] = true;
        if (++*nlive > c->max_live)
            c->max_live = *nlive;
    } else {
        c->mismatches += strcmp(live[e->port], e->flow) != 0;
        live[e->port][0] = '\0';
        --*nlive;
    }
}

/* An outbound packet: translated, mapped as the events say, the rest unchanged. */
static void check_outbound(const struct ctx *cx, const struct tu_pkt *in, const struct it_pkt *o,
                           const struct pv *iv, char (*live)[96], struct check *c)
{
    struct pv ov = pparse(o->data, o->len);
    uint8_t ext[4];
    inet_pton(AF_INET, EXT, ext);
    char flow[96];
    flow_of(iv, flow, sizeof(flow));
    c->translated++;
    if (!ov.ok || memcmp(ov.src, ext, 4) || ov.sport < cx->lo || ov.sport > cx->hi ||
        strcmp(live[ov.sport], flow)) {
        c->bad_map++;
        return;
    }
    if (iv->proto == 6 && (iv->flags & 0x12) == 0x02)
        c->syn_out++;
    uint8_t *m = malloc(o->len); /* the output with the translated fields put back */
    memcpy(m, o->data, o->len);
    memcpy(m + 26, in->data + 26, 4);
    memcpy(m + 24, in->data + 24, 2);
    size_t pf = iv->proto == 1 ? 38 : 34, ck = iv->proto == 6 ? 50 : iv->proto == 17 ? 40 : 36;
    memcpy(m + pf, in->data + pf, 2);
    if (o->len >= ck + 2)
        memcpy(m + ck, in->data + ck, 2);
    c->changed += o->len != in->caplen || memcmp(m, in->data, o->len) != 0;
    free(m);
}

static void check_run(const struct ctx *cx, const struct tu_pcap *ref, const struct it_outs *o,
                      const struct evs *x, struct check *c)
{
    memset(c, 0, sizeof(*c));
    char(*live)[96] = calloc(65536, 96);
    bool *used = calloc(65536, 1);
    size_t e = 0, nlive = 0;
    for (size_t i = 0; i < ref->n; i++) {
        struct pv iv = pparse(ref->pkts[i].data, ref->pkts[i].caplen);
        bool out =
            iv.ok && in_net(iv.src, cx->inside, cx->bits) && !in_net(iv.dst, cx->inside, cx->bits);
        c->syn_in += out && iv.proto == 6 && (iv.flags & 0x12) == 0x02;
    }
    for (size_t k = 0; k <= o->n; k++) {
        uint64_t clock = k < o->n ? o->p[k].clock : UINT64_MAX;
        for (; e < x->n && (x->v[e].clock < clock || (x->v[e].clock == clock && x->v[e].phase < 2));
             e++)
            apply_ev(&x->v[e], live, &nlive, used, c);
        if (k == o->n)
            break;
        CU_ASSERT_FATAL(clock < ref->n);
        const struct tu_pkt *in = &ref->pkts[clock];
        const struct it_pkt *op = &o->p[k];
        struct pv iv = pparse(in->data, in->caplen);
        bool outbound =
            iv.ok && in_net(iv.src, cx->inside, cx->bits) && !in_net(iv.dst, cx->inside, cx->bits);
        if (outbound)
            check_outbound(cx, in, op, &iv, live, c);
        else
            c->changed += op->len != in->caplen || memcmp(op->data, in->data, op->len) != 0;
        if (cksums_ok(in->data, in->caplen) == 1) {
            c->cks_checked++;
            c->bad_ck += cksums_ok(op->data, op->len) != 1;
        }
    }
    for (int p = 0; p < 65536; p++)
        c->ports_used += used[p];
    free(live);
    free(used);
}

static void expect_clean(const struct check *c)
{
    CU_ASSERT_EQUAL(c->collisions, 0); /* no port given to two live flows */
    CU_ASSERT_EQUAL(c->mismatches, 0); /* every unmap ends the mapping it names */
    CU_ASSERT_EQUAL(c->bad_map, 0);    /* every translated packet as its nat.map says */
    CU_ASSERT_EQUAL(c->changed, 0);    /* nothing else changed */
    CU_ASSERT_EQUAL(c->bad_ck, 0);     /* checksums valid */
    CU_ASSERT_TRUE(c->translated > 0);
    CU_ASSERT_TRUE(c->cks_checked > 0);
    if (c->collisions || c->mismatches || c->bad_map || c->changed || c->bad_ck)
        fprintf(stderr, "  collisions %zu mismatches %zu bad_map %zu changed %zu bad_ck %zu\n",
                c->collisions, c->mismatches, c->bad_map, c->changed, c->bad_ck);
}

/* What a run left in its --out: the packets that left the chain and the NAT's
 * events. */
struct left {
    struct it_outs o;
    struct evs x;
};

static void left_read(const char *out, struct left *l)
{
    it_read_output(out, &l->o);
    read_events(out, &l->x);
}

static void left_free(struct left *l)
{
    it_free_outs(&l->o);
    free(l->x.v);
}

/* Crafted packets t written as fx's dir/name and run through its chain into
 * dir/out; what left in l. */
static void fx_run_crafted(const struct fx *f, const struct tu_pcap *t, const char *name,
                           struct left *l)
{
    char path[4200], out[4200];
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(fx_path(f, name, path, sizeof(path)), t), 0);
    fx_path(f, "out", out, sizeof(out));
    CU_ASSERT_EQUAL_FATAL(run(f->d, f->chain, path, out, NULL), 0);
    left_read(out, l);
}

/* ---- tests ---- */

static const struct ctx lab = {"10.200.0.1", 32, 20000, 21023};

static void test_translation(void)
{
    const char *traces[] = {"trojan_sequence.pcap", "irc.pcap", "nmap_sT_top1000.pcap"};
    struct fx f;
    fx_init(&f, "nat", "nat.yaml", "10.200.0.1/32", "20000-21023", traces[0]);
    char out[4200], name[16];
    for (int i = 0; i < 3; i++) {
        fprintf(stderr, "  %s\n", traces[i]);
        tu_trace(traces[i], f.trace, sizeof(f.trace));
        snprintf(name, sizeof(name), "out%d", i);
        fx_path(&f, name, out, sizeof(out));
        CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, out, NULL), 0);
        struct tu_pcap ref;
        struct left l;
        struct check c;
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
        left_read(out, &l);
        check_run(&lab, &ref, &l.o, &l.x, &c);
        expect_clean(&c);
        CU_ASSERT_EQUAL(l.o.n, ref.n); /* a big pool: every packet has its flow's mapping */
        CU_ASSERT_EQUAL(c.syn_out, c.syn_in);
        tu_pcap_free(&ref);
        left_free(&l);
    }
    fx_done(&f);
}

/* The return traffic of ref as it would reach the NAT from outside: addressed to
 * the external address and the port that run 1's events gave its flow. */
static size_t outside_view(const struct tu_pcap *ref, const struct evs *x, struct tu_pcap *t2)
{
    t2->n = ref->n;
    t2->pkts = calloc(ref->n, sizeof(*t2->pkts));
    char(*live)[96] = calloc(65536, 96);
    size_t e = 0, rewritten = 0;
    uint8_t ext[4];
    inet_pton(AF_INET, EXT, ext);
    for (size_t i = 0; i < ref->n; i++) {
        for (; e < x->n && (x->v[e].clock < i || (x->v[e].clock == i && x->v[e].phase < 2)); e++)
            snprintf(live[x->v[e].port], 96, "%s", x->v[e].phase == 1 ? x->v[e].flow : "");
        struct tu_pkt *p = &t2->pkts[i];
        *p = ref->pkts[i];
        p->data = malloc(p->caplen);
        memcpy(p->data, ref->pkts[i].data, p->caplen);
        struct pv v = pparse(p->data, p->caplen);
        if (!v.ok || !in_net(v.dst, "10.200.0.1", 32) || in_net(v.src, "10.200.0.1", 32))
            continue;
        struct pv back = v; /* the flow seen from inside */
        memcpy(back.src, v.dst, 4), memcpy(back.dst, v.src, 4);
        back.sport = v.dport, back.dport = v.sport;
        char flow[96];
        flow_of(&back, flow, sizeof(flow));
        for (int port = 1; port < 65536; port++)
            if (!strcmp(live[port], flow)) {
                memcpy(p->data + 30, ext, 4);
                size_t at = v.proto == 1 ? 38 : 36;
                p->data[at] = (uint8_t)(port >> 8), p->data[at + 1] = (uint8_t)port;
                set_cksums(p->data, p->caplen);
                rewritten++;
                break;
            }
    }
    free(live);
    return rewritten;
}

static void test_return_translated_back(void)
{
    const char *traces[] = {"trojan_sequence.pcap", "nmap_sT_top1000.pcap"};
    struct fx f;
    fx_init(&f, "natback", "nat.yaml", "10.200.0.1/32", "20000-21023", "trojan_sequence.pcap");
    char o1[4200], o2[4200], t2p[4200];
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "  %s\n", traces[i]);
        tu_trace(traces[i], f.trace, sizeof(f.trace));
        snprintf(o1, sizeof(o1), "%s/inside%d", f.d, i);
        snprintf(o2, sizeof(o2), "%s/outside%d", f.d, i);
        snprintf(t2p, sizeof(t2p), "%s/outside%d.pcap", f.d, i);
        CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, o1, NULL), 0);
        struct tu_pcap ref, t2;
        struct evs x1, x2;
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
        read_events(o1, &x1);
        size_t rewritten = outside_view(&ref, &x1, &t2);
        CU_ASSERT_TRUE(rewritten > 100); /* the replies of every mapped flow */
        CU_ASSERT_EQUAL_FATAL(tu_pcap_write(t2p, &t2), 0);
        CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, t2p, o2, NULL), 0);
        struct it_outs a, b;
        it_read_output(o1, &a);
        it_read_output(o2, &b);
        /* translated back to exactly what the inside host received, checksums included */
        CU_ASSERT_TRUE(it_same_outs(&a, &b));
        read_events(o2, &x2);
        CU_ASSERT_EQUAL(x2.n, x1.n); /* and the same mappings came and went */
        tu_pcap_free(&ref);
        tu_pcap_free(&t2);
        it_free_outs(&a);
        it_free_outs(&b);
        free(x1.v);
        free(x2.v);
    }
    fx_done(&f);
}

static void test_ports_come_back(void)
{
    struct fx f;
    fx_init(&f, "natpool", "nat8.yaml", "10.200.0.1/32", "20000-20007", "nmap_sT_top1000.pcap");
    char out[4200];
    fx_path(&f, "out", out, sizeof(out));
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, out, NULL), 0);
    struct tu_pcap ref;
    struct left l;
    struct check c;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
    left_read(out, &l);
    struct ctx cx = lab;
    cx.hi = 20007;
    check_run(&cx, &ref, &l.o, &l.x, &c);
    expect_clean(&c);
    CU_ASSERT_TRUE(c.syn_in >= 900);      /* a thousand connection attempts... */
    CU_ASSERT_EQUAL(c.syn_out, c.syn_in); /* ...all translated, through 8 ports */
    CU_ASSERT_TRUE(c.maps >= 900);
    CU_ASSERT_TRUE(c.ports_used <= 8);
    CU_ASSERT_TRUE(l.x.reset >= 900); /* returned on the server's RST */
    CU_ASSERT_EQUAL(l.x.exhausted_alerts, 0);
    tu_pcap_free(&ref);
    left_free(&l);
    fx_done(&f);
}

/* rewind nat who against an independent reading of alerts.json (python): 1000
 * connections through 8 ports, so each port was held by a hundred flows in turn.
 * Then the index catches up with a grown file, and refuses a broken line. */
static void test_nat_who(void)
{
    struct fx f;
    fx_init(&f, "natwho", "nat8.yaml", "10.200.0.1/32", "20000-20007", "nmap_sT_top1000.pcap");
    char out[4200];
    fx_path(&f, "out", out, sizeof(out));
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, out, NULL), 0);
    int rc = tu_sh(NULL,
                   "python3 - '%s' '%s' <<'PYEOF'\n"
                   "import json, random, subprocess, sys\n"
                   "rw, out = sys.argv[1], sys.argv[2]\n"
                   "ev = [json.loads(l) for l in open(out + '/alerts.json') if '\"nat.' in l]\n"
                   "ev = [e for e in ev if e['type'] in ('nat.map', 'nat.unmap')]\n"
                   "held = {}\n"
                   "spans = []\n"
                   "for e in ev:\n"
                   "    p = int(e['external'].rsplit(':', 1)[1])\n"
                   "    if e['type'] == 'nat.map':\n"
                   "        held[p] = e\n"
                   "    else:\n"
                   "        m = held.pop(p)\n"
                   "        spans.append((p, m['ts'], e['ts'], m['internal']))\n"
                   "spans += [(p, m['ts'], None, m['internal']) for p, m in held.items()]\n"
                   "assert len(spans) >= 900, len(spans)\n"
                   "def who(p, t):\n"
                   "    r = subprocess.run([rw, 'nat', 'who', out, '--port', str(p), '--at',\n"
                   "                        '%%d.%%09d' %% divmod(t, 10**9), '--json'], "
                   "capture_output=True, text=True)\n"
                   "    assert r.returncode == 0, r.stderr\n"
                   "    return [x['internal'] for x in json.loads(r.stdout)]\n"
                   "random.seed(7)\n"
                   "for p, a, b, internal in random.sample(spans, 40):\n"
                   "    assert who(p, a) == [internal], (p, a, who(p, a), internal)\n"
                   "    if b is not None and b > a:\n"
                   "        assert who(p, (a + b) // 2) == [internal]\n"
                   "        later = [s for s in spans if s[0] == p and s[1] <= b and (s[2] is None "
                   "or s[2] > b)]\n"
                   "        assert who(p, b) == [s[3] for s in later], (p, b, who(p, b), later)\n"
                   "print(len(spans), 'mappings; 40 checked', file=sys.stderr)\n"
                   "PYEOF",
                   tu_bin(), out);
    CU_ASSERT_EQUAL(rc, 0);
    /* The file grows (a run still writing): the index catches up. */
    char alerts[4300], o[4300], js[4400];
    snprintf(alerts, sizeof(alerts), "%s/alerts.json", out);
    snprintf(o, sizeof(o), "%s/who", f.d);
    snprintf(js, sizeof(js), "%s/who.stdout", f.d);
    CU_ASSERT_EQUAL(tu_sh(NULL,
                          "echo '{\"clock\": 99999, \"ts\": 4000000000000000000, \"nf\": \"nat\", "
                          "\"type\": \"nat.map\", \"proto\": \"udp\", \"internal\": "
                          "\"10.200.0.9:5353\", \"external\": \"192.0.2.1:20005\", \"remote\": "
                          "\"10.200.0.2:53\"}' >> '%s'",
                          alerts),
                    0);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' nat who '%s' --port 20005 --at 4000000001 --proto udp --json",
                          tu_bin(), out),
                    0);
    CU_ASSERT_EQUAL(it_file_has(js, "\"internal\": \"10.200.0.9:5353\""), 1);
    CU_ASSERT_EQUAL(it_file_has(js, "\"until\": null"), 1);
    /* Names that need escaping still give JSON. */
    CU_ASSERT_EQUAL(tu_sh(NULL,
                          "printf '%%s\\n' '{\"clock\": 99998, \"ts\": 4000000000000000000, "
                          "\"nf\": \"n\\\"a\\\\t\", \"type\": \"nat.map\", \"proto\": "
                          "\"udp\", \"internal\": \"10.200.0.8:1\", \"external\": "
                          "\"192.0.2.1:20005\", \"remote\": \"10.200.0.2:53\"}' >> '%s'",
                          alerts),
                    0);
    CU_ASSERT_EQUAL(
        tu_sh(o, "'%s' nat who '%s' --port 20005 --at 4000000001 --json", tu_bin(), out), 0);
    CU_ASSERT_EQUAL(tu_sh(NULL,
                          "python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); "
                          "assert sorted(x[\"nf\"] for x in d) == [\"n\\\"a\\\\t\", \"nat\"], d' "
                          "'%s'",
                          js),
                    0);
    /* A nat event that does not parse: exit 3, its byte offset named. */
    CU_ASSERT_EQUAL(tu_sh(NULL, "echo '{\"type\": \"nat.map\", \"ts\": ' >> '%s'", alerts), 0);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' nat who '%s' --port 20005 --at 4000000001", tu_bin(), out), 3);
    snprintf(js, sizeof(js), "%s/who.stderr", f.d);
    CU_ASSERT_EQUAL(it_file_has(js, "not a readable nat event"), 1);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' nat who '%s' --port 0 --at 1", tu_bin(), out), 2);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' nat who '%s' --port 80", tu_bin(), out), 2);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' nat who '%s/nowhere' --port 80 --at 1", tu_bin(), f.d), 1);
    fx_done(&f);
}

static void test_exhaustion_real(void)
{
    struct fx f;
    fx_init(&f, "natex", "nat4.yaml", "10.64.0.0/16", "20000-20003", "external/real.pcap");
    char ft[4200], noft[4200], full[4200], rep[4300];
    snprintf(ft, sizeof(ft), "%s/ft", f.d);
    snprintf(noft, sizeof(noft), "%s/noft", f.d);
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, ft, NULL), 0); /* exit 0, no crash */
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, noft, "--no-ft"), 0);
    snprintf(rep, sizeof(rep), "%s/report.json", ft);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"ok\": true"), 1);
    struct tu_pcap ref;
    struct it_outs a, b;
    struct evs x;
    struct check c;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
    it_read_output(ft, &a);
    it_read_output(noft, &b);
    CU_ASSERT_TRUE(it_same_outs(&a, &b)); /* FT and --no-ft agree */
    read_events(ft, &x);
    struct ctx cx = {"10.64.0.0", 16, 20000, 20003};
    check_run(&cx, &ref, &a, &x, &c);
    expect_clean(&c);
    CU_ASSERT_TRUE(c.max_live <= 4);
    CU_ASSERT_TRUE(x.idle > 0); /* idle flows found by later packets give ports back */
    CU_ASSERT_TRUE(x.exhausted_alerts > 1000);
    CU_ASSERT_EQUAL(x.exhausted_count, (long long)x.exhausted_alerts); /* the counter */
    CU_ASSERT_TRUE(a.n + (size_t)x.exhausted_count <= ref.n);
    /* the full range on the same trace: a mapping for (nearly) every flow */
    chain_with(f.d, "natreal.yaml", "10.64.0.0/16", "1024-65535", f.chain, sizeof(f.chain));
    snprintf(full, sizeof(full), "%s/full", f.d);
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, full, NULL), 0);
    struct left lf;
    left_read(full, &lf);
    cx.lo = 1024, cx.hi = 65535;
    check_run(&cx, &ref, &lf.o, &lf.x, &c);
    expect_clean(&c);
    CU_ASSERT_EQUAL(lf.x.exhausted_alerts, 0);
    CU_ASSERT_EQUAL(c.syn_out, c.syn_in);
    CU_ASSERT_TRUE(c.maps > 3000);
    tu_pcap_free(&ref);
    it_free_outs(&a);
    it_free_outs(&b);
    left_free(&lf);
    free(x.v);
    fx_done(&f);
}

static void test_ft_equals_noft(void)
{
    struct fx f;
    fx_init(&f, "natft", "nat.yaml", "10.200.0.1/32", "20000-20003", "trojan_sequence.pcap");
    char ft[4200], noft[4200], a1[4300], a2[4300];
    fx_path(&f, "ft", ft, sizeof(ft));
    fx_path(&f, "noft", noft, sizeof(noft));
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, ft, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, noft, "--no-ft"), 0);
    struct it_outs a, b;
    it_read_output(ft, &a);
    it_read_output(noft, &b);
    CU_ASSERT_TRUE(a.n > 0);
    CU_ASSERT_TRUE(it_same_outs(&a, &b));
    snprintf(a1, sizeof(a1), "%s/alerts.json", ft);
    snprintf(a2, sizeof(a2), "%s/alerts.json", noft);
    CU_ASSERT_EQUAL(tu_sh(NULL, "cmp -s '%s' '%s'", a1, a2), 0); /* same events */
    CU_ASSERT_TRUE(it_file_has(a1, "\"nat.map\"") > 0);
    it_free_outs(&a);
    it_free_outs(&b);
    fx_done(&f);
}

/* Three instances share the pool (FT: one store). Ports are picked by whichever
 * instance asks first, so outputs are compared after the port (design.md: The guarantee): the
 * same packets leave, each translated as its nat.map says, nothing else changed,
 * and no port is held by two live flows. */
static void test_three_instances(void)
{
    struct fx f;
    fx_init(&f, "nat3", "nat.yaml", "10.64.0.0/16", "1024-65535", "external/real.pcap");
    char c3[4300], one[4200], three[4200];
    snprintf(c3, sizeof(c3), "%s/nat3.yaml", f.d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's/instances: 1/instances: 3/' '%s' > '%s'", f.chain, c3), 0);
    snprintf(one, sizeof(one), "%s/one", f.d);
    snprintf(three, sizeof(three), "%s/three", f.d);
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, one, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(f.d, c3, f.trace, three, NULL), 0);
    struct tu_pcap ref;
    struct it_outs a, b;
    struct evs x;
    struct check c;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
    it_read_output(one, &a);
    it_read_output(three, &b);
    CU_ASSERT_EQUAL(a.n, b.n);
    size_t fate = 0;
    for (size_t i = 0; i < a.n && i < b.n; i++)
        fate += a.p[i].clock != b.p[i].clock;
    CU_ASSERT_EQUAL(fate, 0);
    read_events(three, &x);
    struct ctx cx = {"10.64.0.0", 16, 1024, 65535};
    check_run(&cx, &ref, &b, &x, &c);
    expect_clean(&c);
    CU_ASSERT_EQUAL(c.syn_out, c.syn_in);
    it_free_outs(&b);
    free(x.v);
    /* 8 ports: reuse all the time, by instances at different points in packet
     * time; which flows find the pool empty depends on the interleaving, the
     * invariants do not */
    chain_with(f.d, "nat8.yaml", "10.64.0.0/16", "1024-1031", f.chain, sizeof(f.chain));
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "sed -i 's/instances: 1/instances: 3/' '%s'", f.chain), 0);
    snprintf(three, sizeof(three), "%s/three8", f.d);
    CU_ASSERT_EQUAL_FATAL(run(f.d, f.chain, f.trace, three, NULL), 0);
    it_read_output(three, &b);
    read_events(three, &x);
    cx.hi = 1031;
    check_run(&cx, &ref, &b, &x, &c);
    expect_clean(&c);
    CU_ASSERT_TRUE(c.maps > 8 * 10); /* ports were reused */
    CU_ASSERT_TRUE(c.max_live <= 8);
    CU_ASSERT_EQUAL(x.exhausted_count, (long long)x.exhausted_alerts);
    tu_pcap_free(&ref);
    it_free_outs(&a);
    it_free_outs(&b);
    free(x.v);
    fx_done(&f);
}

/* A copy of pkt with changes, appended to t. */
static struct tu_pkt *add_pkt(struct tu_pcap *t, const struct tu_pkt *pkt, uint32_t caplen)
{
    struct tu_pkt *p = &t->pkts[t->n++];
    *p = *pkt;
    p->ts_ns += t->n * 1000;
    p->data = calloc(1, pkt->caplen + 8);
    memcpy(p->data, pkt->data, pkt->caplen);
    p->caplen = caplen;
    p->len = caplen > pkt->len ? caplen : pkt->len;
    return p;
}

static void test_malformed(void)
{
    struct fx f;
    fx_init(&f, "natbad", "nat.yaml", "10.200.0.1/32", "20000-21023", "trojan_sequence.pcap");
    struct tu_pcap ref, t = {0};
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
    const struct tu_pkt *syn = &ref.pkts[0]; /* 10.200.0.1 -> server, SYN */
    t.pkts = calloc(16, sizeof(*t.pkts));
    add_pkt(&t, syn, 14 + 12);                      /* IP header cut */
    add_pkt(&t, syn, 14 + 20 + 10);                 /* TCP header cut */
    add_pkt(&t, syn, syn->caplen)->data[14] = 0x44; /* IHL 4 */
    add_pkt(&t, syn, syn->caplen)->data[20] = 0x20; /* MF: a fragment */
    struct tu_pkt *fo = add_pkt(&t, syn, syn->caplen);
    fo->data[20] = 0x00, fo->data[21] = 0x10;               /* a later fragment */
    struct tu_pkt *opt = add_pkt(&t, syn, syn->caplen + 4); /* IP options: IHL 6 */
    memmove(opt->data + 38, opt->data + 34, syn->caplen - 34);
    memset(opt->data + 34, 1, 4); /* NOPs */
    opt->data[14] = 0x46;
    add_pkt(&t, syn, 14 + 40)->data[14] = 0x4f;           /* IHL 15 beyond the packet */
    add_pkt(&t, syn, 10);                                 /* not even an Ethernet header */
    add_pkt(&t, syn, syn->caplen);                        /* and a good one */
    const struct tu_pkt *data = &ref.pkts[3];             /* its flow's first data, 41 bytes */
    add_pkt(&t, data, 14 + 20 + 32 + 8)->len = data->len; /* captured short */
    struct left l;
    fx_run_crafted(&f, &t, "bad.pcap", &l);
    struct it_outs o = l.o;
    struct evs x = l.x;
    /* the runt Ethernet frame is not IPv4 (non_ipv4: allow); the good SYN is translated */
    CU_ASSERT_EQUAL_FATAL(o.n, 3);
    /* The two fragments never complete: the root drops them (report.json
     * "fragments") before they get a clock, so the good SYN's clock is 2 lower. */
    CU_ASSERT_EQUAL(o.p[1].clock, t.n - 4);
    /* the short capture: checksum adjusted to what the whole segment would give */
    uint8_t *full = malloc(data->caplen);
    memcpy(full, data->data, data->caplen);
    inet_pton(AF_INET, EXT, full + 26);
    memcpy(full + 34, o.p[2].data + 34, 2); /* the port it was given */
    set_cksums(full, data->caplen);
    CU_ASSERT_EQUAL(o.p[2].len, 14 + 20 + 32 + 8);
    CU_ASSERT_EQUAL(memcmp(o.p[2].data, full, o.p[2].len), 0);
    CU_ASSERT_EQUAL(memcmp(o.p[2].data + 34, o.p[1].data + 34, 2), 0); /* same flow, port */
    free(full);
    CU_ASSERT_EQUAL(x.malformed[0], 2); /* truncated */
    CU_ASSERT_EQUAL(x.malformed[1], 2); /* bad IHL: 4, and 15 past the end */
    CU_ASSERT_EQUAL(x.malformed[2], 0); /* fragments: none reach the NAT */
    CU_ASSERT_EQUAL(x.malformed[3], 1); /* options */
    CU_ASSERT_EQUAL(x.n, 1);            /* one nat.map: the good SYN */
    tu_pcap_free(&ref);
    tu_pcap_free(&t);
    left_free(&l);
    fx_done(&f);
}

/* Flows that go quiet without FIN or RST give their port back to later new
 * flows (the age queue), not only to their own later packets. */
static void test_idle_ports_come_back(void)
{
    struct fx f;
    fx_init(&f, "natidle", "nat2.yaml", "10.200.0.1/32", "20000-20001", "trojan_sequence.pcap");
    struct tu_pcap ref, t = {0};
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
    t.pkts = calloc(4, sizeof(*t.pkts));
    for (int i = 0; i < 4; i++) { /* SYNs from 4 source ports; the last 301 s later */
        struct tu_pkt *p = add_pkt(&t, &ref.pkts[0], ref.pkts[0].caplen);
        p->data[34] = 0x90, p->data[35] = (uint8_t)i;
        p->ts_ns += i == 3 ? 301000000000ull : 0;
        set_cksums(p->data, p->caplen);
    }
    struct left l;
    fx_run_crafted(&f, &t, "idle.pcap", &l);
    CU_ASSERT_EQUAL_FATAL(l.o.n, 3);
    CU_ASSERT_EQUAL(l.o.p[2].clock, 3);       /* the late flow got a port... */
    CU_ASSERT_EQUAL(l.x.exhausted_alerts, 1); /* ...the third, at once, did not */
    CU_ASSERT_TRUE(l.x.idle >= 1);            /* released by the age queue */
    tu_pcap_free(&ref);
    tu_pcap_free(&t);
    left_free(&l);
    fx_done(&f);
}

/* An ICMP echo packet built on the Ethernet header of base. */
static void echo(struct tu_pcap *t, const struct tu_pkt *base, const char *src, const char *dst,
                 uint8_t type, uint16_t id)
{
    struct tu_pkt *p = add_pkt(t, base, 14 + 20 + 16);
    uint8_t *d = p->data;
    p->len = 14 + 20 + 16;
    memset(d + 14, 0, 36);
    d[14] = 0x45, d[17] = 36, d[22] = 64, d[23] = 1;
    inet_pton(AF_INET, src, d + 26);
    inet_pton(AF_INET, dst, d + 30);
    d[34] = type, d[38] = (uint8_t)(id >> 8), d[39] = (uint8_t)id, d[41] = 1;
    memcpy(d + 42, "rewind!!", 8);
    set_cksums(d, p->caplen);
}

/* ICMP echo: the id is the port; the reply comes back to the inside id. */
static void test_icmp_echo(void)
{
    struct fx f;
    fx_init(&f, "naticmp", "nat.yaml", "10.200.0.1/32", "20000-21023", "trojan_sequence.pcap");
    struct tu_pcap ref, t = {0};
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(f.trace, &ref), 0);
    t.pkts = calloc(4, sizeof(*t.pkts));
    echo(&t, &ref.pkts[0], "10.200.0.1", "198.51.100.7", 8, 0x1234); /* request */
    echo(&t, &ref.pkts[0], "198.51.100.7", EXT, 0, 20000);           /* reply from outside */
    echo(&t, &ref.pkts[0], "198.51.100.7", EXT, 0, 20001);           /* no such mapping */
    struct left l;
    fx_run_crafted(&f, &t, "echo.pcap", &l);
    struct it_outs o = l.o;
    struct evs x = l.x;
    CU_ASSERT_EQUAL_FATAL(o.n, 2);
    struct pv rq = pparse(o.p[0].data, o.p[0].len), rp = pparse(o.p[1].data, o.p[1].len);
    char a[32], b[32];
    ep(a, sizeof(a), rq.src, rq.sport);
    ep(b, sizeof(b), rp.dst, rp.dport);
    CU_ASSERT_STRING_EQUAL(a, EXT ":20000");
    CU_ASSERT_STRING_EQUAL(b, "10.200.0.1:4660"); /* 0x1234 */
    CU_ASSERT_EQUAL(cksums_ok(o.p[0].data, o.p[0].len), 1);
    CU_ASSERT_EQUAL(cksums_ok(o.p[1].data, o.p[1].len), 1);
    CU_ASSERT_EQUAL(memcmp(o.p[1].data + 42, "rewind!!", 8), 0);
    CU_ASSERT_EQUAL(x.n, 1);
    CU_ASSERT_STRING_EQUAL(x.n ? x.v[0].flow : "", "icmp 10.200.0.1:4660 198.51.100.7:0");
    tu_pcap_free(&ref);
    tu_pcap_free(&t);
    left_free(&l);
    fx_done(&f);
}

static void test_bad_config(void)
{
    struct fx f;
    fx_init(&f, "natcfg", "badports.yaml", "10.200.0.1/32", "20000-70000", "irc.pcap");
    char out[4200], err[4300];
    fx_path(&f, "out", out, sizeof(out));
    fx_path(&f, "run.stderr", err, sizeof(err));
    CU_ASSERT_EQUAL(run(f.d, f.chain, f.trace, out, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "badports.yaml:27: nfs[0].config.ports") >= 1);
    chain_with(f.d, "badinside.yaml", "10.200.0.300/32", "1024-65535", f.chain, sizeof(f.chain));
    CU_ASSERT_EQUAL(run(f.d, f.chain, f.trace, out, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "badinside.yaml:25: nfs[0].config.inside") >= 1);
    /* several instances on a border: replies could not find their mapping */
    chain_with(f.d, "border.yaml", "10.200.0.1/32", "1024-65535", f.chain, sizeof(f.chain));
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "sed -i -e 's/instances: 1/instances: 2/' -e "
                                "'s/idle_timeout: 300/untranslated_return: drop/' '%s'",
                                f.chain),
                          0);
    CU_ASSERT_EQUAL(run(f.d, f.chain, f.trace, out, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "nfs[0].instances: 2 NAT instances with "
                                    "untranslated_return: drop") >= 1);
    fx_done(&f);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "outbound translated as nat.map says, the rest unchanged, checksums valid",
                test_translation);
    CU_add_test(s, "return traffic to the external address is translated back",
                test_return_translated_back);
    CU_add_test(s, "ports come back: 1000 connections through 8 ports", test_ports_come_back);
    CU_add_test(s, "nat who names who held a port at a time, from indexed events", test_nat_who);
    CU_add_test(s, "real LAN hour: 4 ports exhaust cleanly; full range maps every flow",
                test_exhaustion_real);
    CU_add_test(s, "3 instances: same fates, consistent mappings, no shared port",
                test_three_instances);
    CU_add_test(s, "FT and --no-ft give the same output and events", test_ft_equals_noft);
    CU_add_test(s, "idle flows give their ports to later flows", test_idle_ports_come_back);
    CU_add_test(s, "ICMP echo: the id is the port, replies come back", test_icmp_echo);
    CU_add_test(s, "malformed packets are counted and dropped", test_malformed);
    CU_add_test(s, "bad config is refused with line and key", test_bad_config);
}

int main(void)
{
    return tu_main("nf_nat", add);
}
