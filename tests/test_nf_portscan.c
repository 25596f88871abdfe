/*
 * test_nf_portscan.c - the port-scan detector under the real `rewind run`: the
 * scanning host of real nmap and hping3 captures is flagged once and nobody else;
 * benign captures flag nobody; a scan whose answers are filtered away is flagged
 * through timeouts, at the packet the lazy timeout bound names; `block: true`
 * removes the scanner's packets after detection and nothing else; FT, --no-ft and
 * 3 instances agree; malformed packets pass or drop as configured and never crash
 * the NF; bad parameters are refused with line and key.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "itest.h"
#include "log.h"

#define SCANNER "10.200.0.1"

/* A one-NF portscan chain with `instances` and extra config lines (YAML, each
 * "      key: value\n"). */
static void chain(const char *dir, const char *name, int instances, const char *extra, char *path,
                  size_t n)
{
    snprintf(path, n, "%s/%s.yaml", dir, name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f,
            "nfs:\n"
            "  - name: scan\n"
            "    type: portscan\n"
            "    instances: %d\n"
            "    flowspace: host-pair\n"
            "    config:\n"
            "      timeout: 5\n%s",
            instances, extra ? extra : "");
    fclose(f);
}

static int run(const char *dir, const char *chain_path, const char *trace, const char *out,
               const char *extra)
{
    char o[4200];
    snprintf(o, sizeof(o), "%s/run", dir);
    return tu_sh(o, "'%s' run '%s' --trace '%s' --out '%s' %s", tu_bin(), chain_path, trace, out,
                 extra ? extra : "");
}

static char *alerts(const char *out)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/alerts.json", out);
    size_t len;
    char *s = tu_slurp(path, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    return s;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Exactly one alert, scan.detected for SCANNER, with every field; its clock. */
static uint64_t one_detection(const char *al)
{
    CU_ASSERT_EQUAL(count(al, "\n"), 1);
    CU_ASSERT_EQUAL(count(al, "\"type\": \"scan.detected\""), 1);
    CU_ASSERT_EQUAL(count(al, "\"host\": \"" SCANNER "\""), 1);
    CU_ASSERT_EQUAL(count(al, "\"nf\": \"scan\""), 1);
    CU_ASSERT_EQUAL(count(al, "\"ts\": "), 1);
    CU_ASSERT_EQUAL(count(al, "\"attempts\": "), 1);
    CU_ASSERT_EQUAL(count(al, "\"failures\": "), 1);
    unsigned long long clock = ~0ull;
    const char *c = strstr(al, "\"clock\": ");
    CU_ASSERT_TRUE(c && sscanf(c, "\"clock\": %llu", &clock) == 1);
    return clock;
}

static bool from_host(const uint8_t *d, uint32_t len, const char *host)
{
    uint8_t a[4];
    inet_pton(AF_INET, host, a);
    return len >= 34 && d[12] == 0x08 && d[13] == 0x00 && !memcmp(d + 26, a, 4);
}

/* ---- the scans ---- */

/* FT with 1 and 3 instances and --no-ft: one alert for the scanner, identical. */
static void scan_flagged(const char *trace_name)
{
    char *d = tu_mkdtemp("scan");
    char trace[4096], c1[4200], c3[4200], o1[4200], o3[4200], on[4200];
    tu_trace(trace_name, trace, sizeof(trace));
    chain(d, "one", 1, NULL, c1, sizeof(c1));
    chain(d, "three", 3, NULL, c3, sizeof(c3));
    snprintf(o1, sizeof(o1), "%s/one", d);
    snprintf(o3, sizeof(o3), "%s/three", d);
    snprintf(on, sizeof(on), "%s/noft", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, o1, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, on, "--no-ft"), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c3, trace, o3, NULL), 0);
    char *a1 = alerts(o1), *an = alerts(on), *a3 = alerts(o3);
    uint64_t clock = one_detection(a1);
    CU_ASSERT_TRUE(clock < 20); /* every probe is refused: 4 failures decide (ln 99 / ln 4) */
    CU_ASSERT_EQUAL(count(a1, "\"attempts\": 4, \"failures\": 4"), 1);
    CU_ASSERT_STRING_EQUAL(a1, an);
    CU_ASSERT_STRING_EQUAL(a1, a3);
    struct it_outs x, y, z;
    it_read_output(o1, &x);
    it_read_output(on, &y);
    it_read_output(o3, &z);
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_EQUAL(x.n, ref.n); /* without block, everything passes */
    CU_ASSERT_TRUE(it_same_outs(&x, &y));
    CU_ASSERT_TRUE(it_same_outs(&x, &z));
    tu_pcap_free(&ref);
    it_free_outs(&x);
    it_free_outs(&y);
    it_free_outs(&z);
    free(a1), free(an), free(a3);
    tu_rmrf(d);
    free(d);
}

static void test_nmap(void)
{
    scan_flagged("nmap_sT_top1000.pcap");
}

static void test_hping3(void)
{
    scan_flagged("hping3.pcap");
}

/* ---- benign traffic ---- */

static void test_benign(void)
{
    const char *traces[] = {"trojan_sequence.pcap", "irc.pcap", "external/real.pcap"};
    char *d = tu_mkdtemp("benign");
    char c1[4200];
    chain(d, "one", 1, NULL, c1, sizeof(c1));
    for (int i = 0; i < 3; i++) {
        char trace[4096], out[4200];
        tu_trace(traces[i], trace, sizeof(trace));
        snprintf(out, sizeof(out), "%s/out%d", d, i);
        CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, out, NULL), 0);
        char *al = alerts(out);
        if (*al)
            fprintf(stderr, "  %s flagged:\n%s", traces[i], al);
        CU_ASSERT_EQUAL(count(al, "scan.detected"), 0);
        struct it_outs o;
        it_read_output(out, &o);
        struct tu_pcap ref;
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
        CU_ASSERT_EQUAL(o.n, ref.n);
        tu_pcap_free(&ref);
        it_free_outs(&o);
        free(al);
    }
    tu_rmrf(d);
    free(d);
}

/* ---- timeouts ---- */

/* The nmap scan with every answer removed (a filtered host) and the probes spread
 * 250 ms apart: only timeouts can fail them. */
static void filtered_scan(const struct tu_pcap *src, struct tu_pcap *out)
{
    out->pkts = calloc(src->n, sizeof(*out->pkts));
    out->n = 0;
    uint64_t t0 = src->pkts[0].ts_ns;
    for (size_t i = 0; i < src->n; i++) {
        const struct tu_pkt *p = &src->pkts[i];
        if (!from_host(p->data, p->caplen, SCANNER))
            continue;
        struct tu_pkt *q = &out->pkts[out->n];
        *q = *p;
        q->data = malloc(p->caplen);
        memcpy(q->data, p->data, p->caplen);
        q->ts_ns = t0 + out->n * 250000000ull;
        out->n++;
    }
}

/* The packet at which the 4th first contact times out: the first packet of the
 * pair at or after its SYN's time + 5 s (the bound docs/nfs-portscan.md states). */
static size_t expected_decision(const struct tu_pcap *p)
{
    uint8_t seen[65536] = {0};
    int firsts = 0;
    uint64_t deadline = 0;
    for (size_t i = 0; i < p->n; i++) {
        const uint8_t *d = p->pkts[i].data;
        size_t ihl = (size_t)(d[14] & 0x0f) * 4;
        if (deadline && p->pkts[i].ts_ns >= deadline)
            return i;
        if (deadline || d[23] != 6 || (d[14 + ihl + 13] & 0x16) != 0x02)
            continue;
        uint16_t port = (uint16_t)(d[14 + ihl + 2] << 8 | d[14 + ihl + 3]);
        if (!seen[port]++ && ++firsts == 4)
            deadline = p->pkts[i].ts_ns + 5000000000ull;
    }
    return (size_t)-1;
}

static void test_timeouts(void)
{
    char *d = tu_mkdtemp("timeout");
    char trace[4096], mod[4200], c1[4200], o1[4200], on[4200];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    struct tu_pcap ref, f;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    filtered_scan(&ref, &f);
    snprintf(mod, sizeof(mod), "%s/filtered.pcap", d);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(mod, &f), 0);
    chain(d, "one", 1, NULL, c1, sizeof(c1));
    snprintf(o1, sizeof(o1), "%s/one", d);
    snprintf(on, sizeof(on), "%s/noft", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, mod, o1, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, mod, on, "--no-ft"), 0);
    char *a1 = alerts(o1), *an = alerts(on);
    size_t want = expected_decision(&f);
    CU_ASSERT_TRUE(want > 20 && want < f.n);
    CU_ASSERT_EQUAL(one_detection(a1), want);
    CU_ASSERT_EQUAL(count(a1, "\"attempts\": 4, \"failures\": 4"), 1);
    CU_ASSERT_STRING_EQUAL(a1, an);
    free(a1), free(an);
    tu_pcap_free(&f);
    tu_pcap_free(&ref);
    tu_rmrf(d);
    free(d);
}

/* ---- block ---- */

static void test_block(void)
{
    char *d = tu_mkdtemp("block");
    char trace[4096], c1[4200], o1[4200], on[4200];
    tu_trace("hping3.pcap", trace, sizeof(trace));
    chain(d, "block", 1, "      block: true\n", c1, sizeof(c1));
    snprintf(o1, sizeof(o1), "%s/one", d);
    snprintf(on, sizeof(on), "%s/noft", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, o1, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, on, "--no-ft"), 0);
    char *al = alerts(o1);
    uint64_t at = one_detection(al);
    struct it_outs o, n;
    it_read_output(o1, &o);
    it_read_output(on, &n);
    CU_ASSERT_TRUE(it_same_outs(&o, &n));
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    /* Walk input and output together: each input is out unchanged unless it is the
     * scanner's after the deciding packet. */
    size_t j = 0, dropped = 0;
    for (size_t i = 0; i < ref.n; i++) {
        const struct tu_pkt *p = &ref.pkts[i];
        bool gone = i > at && from_host(p->data, p->caplen, SCANNER);
        bool out = j < o.n && o.p[j].clock == i;
        CU_ASSERT_EQUAL(out, !gone);
        if (out) {
            CU_ASSERT_TRUE(o.p[j].len == p->caplen && !memcmp(o.p[j].data, p->data, p->caplen));
            j++;
        }
        dropped += gone;
    }
    CU_ASSERT_EQUAL(j, o.n);
    CU_ASSERT_TRUE(dropped > 4000); /* the rest of the scan and the whole flood */
    tu_pcap_free(&ref);
    it_free_outs(&o);
    it_free_outs(&n);
    free(al);
    tu_rmrf(d);
    free(d);
}

/* ---- malformed packets ---- */

static void add_pkt(struct tu_pcap *p, const struct tu_pkt *like, uint32_t caplen,
                    void (*edit)(uint8_t *d))
{
    struct tu_pkt *q = &p->pkts[p->n++];
    *q = *like;
    q->caplen = q->len = caplen;
    q->data = calloc(1, caplen > like->caplen ? caplen : like->caplen);
    memcpy(q->data, like->data, caplen < like->caplen ? caplen : like->caplen);
    if (edit)
        edit(q->data);
}

static void ihl3(uint8_t *d)
{
    d[14] = 0x43;
}
static void ihl15(uint8_t *d)
{
    d[14] = 0x4f;
}
static void more_frags(uint8_t *d)
{
    d[20] |= 0x20;
}
static void frag_offset(uint8_t *d)
{
    d[21] = 0x10;
}
static void tcp_doff2(uint8_t *d)
{
    d[14 + 20 + 12] = 0x20;
}
static void vlan_cut(uint8_t *d)
{
    d[12] = 0x81, d[13] = 0x00;
}

/* A SYN with 4 bytes of IP options (NOPs): well-formed, must pass in both modes. */
static void add_with_options(struct tu_pcap *p, const struct tu_pkt *syn)
{
    struct tu_pkt *q = &p->pkts[p->n++];
    *q = *syn;
    q->caplen = q->len = syn->caplen + 4;
    q->data = calloc(1, q->caplen);
    memcpy(q->data, syn->data, 34);
    memset(q->data + 34, 1, 4);
    memcpy(q->data + 38, syn->data + 34, syn->caplen - 34);
    q->data[14] = 0x46;
    uint16_t tot = (uint16_t)(syn->data[16] << 8 | syn->data[17]) + 4;
    q->data[16] = (uint8_t)(tot >> 8), q->data[17] = (uint8_t)tot;
}

/* irc.pcap with 9 broken packets and one with IP options appended. */
static size_t malformed_trace(const struct tu_pcap *src, struct tu_pcap *out)
{
    out->pkts = calloc(src->n + 16, sizeof(*out->pkts));
    out->n = 0;
    const struct tu_pkt *tcp = NULL;
    for (size_t i = 0; i < src->n; i++) {
        const struct tu_pkt *p = &src->pkts[i];
        add_pkt(out, p, p->caplen, NULL);
        if (!tcp && p->caplen >= 54 && p->data[23] == 6 && (p->data[47] & 0x12) == 0x02)
            tcp = p;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(tcp);
    size_t n0 = out->n;
    add_pkt(out, tcp, 10, NULL);                 /* not even Ethernet */
    add_pkt(out, tcp, 14 + 12, NULL);            /* IP header cut */
    add_pkt(out, tcp, tcp->caplen, ihl3);        /* IHL below 5 */
    add_pkt(out, tcp, 14 + 40, ihl15);           /* IHL past the end */
    add_pkt(out, tcp, tcp->caplen, more_frags);  /* first fragment (the root drops it) */
    add_pkt(out, tcp, tcp->caplen, frag_offset); /* later fragment (likewise) */
    add_pkt(out, tcp, 14 + 20 + 10, NULL);       /* TCP header cut */
    add_pkt(out, tcp, tcp->caplen, tcp_doff2);   /* TCP data offset 2 */
    add_pkt(out, tcp, 15, vlan_cut);             /* VLAN tag cut */
    add_with_options(out, tcp);
    return out->n - n0 - 1;
}

static void test_malformed(void)
{
    char *d = tu_mkdtemp("malformed");
    char trace[4096], mod[4200], cp[4200], cd[4200], op[4200], od[4200], on[4200];
    tu_trace("irc.pcap", trace, sizeof(trace));
    struct tu_pcap ref, m;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    size_t bad = malformed_trace(&ref, &m);
    snprintf(mod, sizeof(mod), "%s/malformed.pcap", d);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(mod, &m), 0);
    chain(d, "pass", 1, "      malformed: pass\n", cp, sizeof(cp));
    chain(d, "drop", 1, "      malformed: drop\n", cd, sizeof(cd));
    snprintf(op, sizeof(op), "%s/pass", d);
    snprintf(od, sizeof(od), "%s/drop", d);
    snprintf(on, sizeof(on), "%s/noft", d);
    CU_ASSERT_EQUAL_FATAL(run(d, cp, mod, op, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, cd, mod, od, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, cd, mod, on, "--no-ft"), 0);
    struct it_outs a, b, c;
    it_read_output(op, &a);
    it_read_output(od, &b);
    it_read_output(on, &c);
    /* The two fragments never complete: the root drops them before they get a
     * clock (report.json "fragments"), so the NF sees 2 packets fewer. */
    size_t whole = m.n - 2;
    CU_ASSERT_EQUAL(a.n, whole);
    CU_ASSERT_EQUAL(b.n, whole - (bad - 2));
    CU_ASSERT_TRUE(it_same_outs(&b, &c));
    for (size_t i = 0; i < b.n; i++) /* what is dropped is exactly the broken ones */
        CU_ASSERT_TRUE(b.p[i].clock < ref.n || b.p[i].clock == whole - 1);
    it_free_outs(&a);
    it_free_outs(&b);
    it_free_outs(&c);
    tu_pcap_free(&m);
    tu_pcap_free(&ref);
    tu_rmrf(d);
    free(d);
}

/* ---- benign, then a scan ---- */

/* trojan_sequence.pcap (5 first contacts of 10.200.0.1, all answered) followed by
 * the nmap scan from the same host: the walk reached eta0 (benign) and started
 * again, so the scan is flagged as fast as from a fresh host. */
static void test_benign_then_scan(void)
{
    char *d = tu_mkdtemp("later");
    char t1[4096], t2[4096], mod[4200], c1[4200], o1[4200];
    tu_trace("trojan_sequence.pcap", t1, sizeof(t1));
    tu_trace("nmap_sT_top1000.pcap", t2, sizeof(t2));
    struct tu_pcap a, b, cat;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(t1, &a), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(t2, &b), 0);
    cat.n = 0;
    cat.pkts = calloc(a.n + b.n, sizeof(*cat.pkts));
    for (size_t i = 0; i < a.n; i++)
        add_pkt(&cat, &a.pkts[i], a.pkts[i].caplen, NULL);
    uint64_t shift = a.pkts[a.n - 1].ts_ns + 1000000000ull - b.pkts[0].ts_ns;
    for (size_t i = 0; i < b.n; i++) {
        add_pkt(&cat, &b.pkts[i], b.pkts[i].caplen, NULL);
        cat.pkts[cat.n - 1].ts_ns += shift;
    }
    snprintf(mod, sizeof(mod), "%s/later.pcap", d);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(mod, &cat), 0);
    chain(d, "one", 1, NULL, c1, sizeof(c1));
    snprintf(o1, sizeof(o1), "%s/one", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, mod, o1, NULL), 0);
    char *al = alerts(o1);
    CU_ASSERT_TRUE(one_detection(al) >= a.n);
    /* 5 successes (the 4th reaches eta0: restart), then 5 refused probes: ln 4 * 4
     * - ln 4 >= ln 99. Without the restart it would take 9 failures. */
    CU_ASSERT_EQUAL(count(al, "\"attempts\": 10, \"failures\": 5"), 1);
    free(al);
    tu_pcap_free(&cat);
    tu_pcap_free(&a);
    tu_pcap_free(&b);
    tu_rmrf(d);
    free(d);
}

/* ---- config ---- */

static void test_bad_config(void)
{
    static const struct {
        const char *extra, *says;
    } bad[] = {
        {"      theta1: 0.9\n", "bad.yaml:8: nfs[0].config.theta1: theta1 (0.9) must be below"},
        {"      pd: 1.5\n", "bad.yaml:8: nfs[0].config.pd: expected a probability"},
        {"      pf: x\n", "bad.yaml:8: nfs[0].config.pf: expected a probability"},
        {"      timeout: 0\n", "bad.yaml:7: nfs[0].config.timeout"},
        {"      block: yes\n", "bad.yaml:8: nfs[0].config.block"},
        {"      malformed: eat\n", "bad.yaml:8: nfs[0].config.malformed"},
        {"      eta: 3\n", "bad.yaml:8: nfs[0].config.eta: unknown key"},
    };
    char *d = tu_mkdtemp("badcfg");
    char trace[4096], c[4200], out[4200], err[4200];
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        chain(d, "bad", 1, bad[i].extra, c, sizeof(c));
        if (strstr(bad[i].extra, "timeout"))
            CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "sed -i '7d' '%s'", c), 0); /* one timeout key */
        CU_ASSERT_EQUAL(run(d, c, trace, out, NULL), 2);
        int has = it_file_has(err, bad[i].says);
        if (has < 1)
            fprintf(stderr, "  wanted '%s'\n", bad[i].says);
        CU_ASSERT_TRUE(has >= 1);
        struct stat st;
        CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    }
    tu_rmrf(d);
    free(d);
}

/* The documented chain runs as its comment says. */
static void test_doc_chain(void)
{
    char *d = tu_mkdtemp("doc");
    char trace[4096], chain_path[4200], out[4200];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    snprintf(chain_path, sizeof(chain_path), "%s/docs/chains/portscan.yaml", getenv("RW_SRC"));
    snprintf(out, sizeof(out), "%s/out", d);
    CU_ASSERT_EQUAL_FATAL(run(d, chain_path, trace, out, NULL), 0);
    char *al = alerts(out);
    one_detection(al);
    free(al);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "nmap -sT: the scanner is flagged once, FT = --no-ft = 3 instances", test_nmap);
    CU_add_test(s, "hping3 SYN scan: the scanner is flagged once, FT = --no-ft = 3 instances",
                test_hping3);
    CU_add_test(s, "benign traces flag nobody and pass everything", test_benign);
    CU_add_test(s, "a host benign first and scanning later is flagged", test_benign_then_scan);
    CU_add_test(s, "unanswered probes fail by timeout at the documented packet", test_timeouts);
    CU_add_test(s, "block: the scanner's later packets are gone, nothing else", test_block);
    CU_add_test(s, "malformed packets pass or drop as configured, never crash", test_malformed);
    CU_add_test(s, "bad parameters are refused with line and key", test_bad_config);
    CU_add_test(s, "docs/chains/portscan.yaml runs on the nmap scan", test_doc_chain);
}

int main(void)
{
    return tu_main("nf_portscan", add);
}
