/*
 * test_jumbo.c - jumbo frames (racks run 9,000-byte MTUs). A chain used to carry
 * only 2 KiB link slots: bigger frames were counted in a root counter nobody
 * saw, and report.json said 7 in, 4 out, 0 dropped. Now links carry frames up to
 * the chain's max_frame (default 9,216); anything larger is counted as oversize
 * in report.json and on stderr, and stays in the input log. The load balancer
 * rewrote only frames that fit its 2 KiB buffer and passed bigger ones to the
 * VIP untranslated.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

/* An IDS that passes every packet (the port-scan detector; one instance: the
 * output keeps the trace's order). The firewall drops these packets of
 * connections it never saw open (not_new), which test_jumbo_every_nf covers. */
static void pass_all(const char *d, const char *extra, char *path, size_t n)
{
    snprintf(path, n, "%s/pass.yaml", d);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f,
            "name: pass\n%s"
            "nfs:\n  - {name: ids, type: portscan}\n"
            "edges:\n  - {from: input, to: ids}\n  - {from: ids, to: output}\n",
            extra ? extra : "");
    fclose(f);
}

static int run(const char *d, const char *chain, const char *trace, const char *out)
{
    char o[4200];
    snprintf(o, sizeof(o), "%s/run", d);
    return tu_sh(o, "timeout -s KILL 120 '%s' run '%s' --trace '%s' --out '%s'", tu_bin(), chain,
                 trace, out);
}

/* The first `n` output packets are input packets 0..n-1, byte for byte. */
static void check_prefix(const struct it_outs *o, const struct tu_pcap *in, size_t n)
{
    CU_ASSERT_EQUAL_FATAL(o->n, n);
    for (size_t i = 0; i < n; i++)
        CU_ASSERT_TRUE(o->p[i].clock == i && o->p[i].len == in->pkts[i].caplen &&
                       !memcmp(o->p[i].data, in->pkts[i].data, o->p[i].len));
}

static void test_jumbo_carried(void)
{
    char *d = tu_mkdtemp("jumbo");
    char trace[4096], chain[4200], out[4200], rep[4300], err[4300], back[4300];
    tu_trace("jumbo.pcap", trace, sizeof(trace));
    struct tu_pcap in, logged;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &in), 0);
    CU_ASSERT_EQUAL_FATAL(in.n, 7);
    CU_ASSERT_EQUAL(in.pkts[4].caplen, 9216);
    CU_ASSERT_TRUE(in.pkts[5].caplen > 9216 && in.pkts[6].caplen > 9216);
    pass_all(d, NULL, chain, sizeof(chain));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, out), 0);
    struct it_outs o;
    it_read_output(out, &o);
    check_prefix(&o, &in, 5); /* 1,514 .. 9,216 bytes, tagged or not */
    it_free_outs(&o);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"max_frame\": 9216,"), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"oversize\": 2,"), 1);
    CU_ASSERT_EQUAL(it_file_has(err, "warning: 2 packets larger than max_frame (9216 bytes)"), 1);
    /* what the chain could not carry is in the input log, whole */
    snprintf(back, sizeof(back), "%s/log.pcap", d);
    char log[4300];
    snprintf(log, sizeof(log), "%s/log", out);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, back, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(back, &logged), 0);
    CU_ASSERT_EQUAL(logged.n, 7);
    if (logged.n == 7)
        CU_ASSERT_EQUAL(it_diff(&in, 0, &logged, 0, 7, 0), -1);
    tu_pcap_free(&logged);

    /* A smaller max_frame in the chain file: the limit moves with it. */
    tu_rmrf(out);
    pass_all(d, "max_frame: 4000\n", chain, sizeof(chain));
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, out), 0);
    it_read_output(out, &o);
    check_prefix(&o, &in, 2);
    it_free_outs(&o);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"oversize\": 5,"), 1);
    pass_all(d, "max_frame: 1000\n", chain, sizeof(chain));
    CU_ASSERT_EQUAL(run(d, chain, trace, out), 2);
    CU_ASSERT_EQUAL(it_file_has(err, "pass.yaml:2: max_frame: expected an integer in 1518..65600"),
                    1);
    tu_pcap_free(&in);
    tu_rmrf(d);
    free(d);
}

/* The load balancer rewrites a jumbo frame to the VIP like any other. */
static void test_jumbo_lb(void)
{
    char *d = tu_mkdtemp("jumbo");
    char trace[4096], chain[4096], out[4200];
    tu_trace("jumbo_lb.pcap", trace, sizeof(trace));
    snprintf(chain, sizeof(chain), "%s/docs/chains/lb.yaml", getenv("RW_SRC"));
    snprintf(out, sizeof(out), "%s/out", d);
    struct tu_pcap in;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &in), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, out), 0);
    struct it_outs o;
    it_read_output(out, &o);
    CU_ASSERT_EQUAL(o.n, in.n);
    size_t big = 0;
    for (size_t i = 0; i < o.n; i++) {
        if (o.p[i].len != 9000)
            continue;
        big++;
        char dst[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, o.p[i].data + 14 + 16, dst, sizeof(dst));
        CU_ASSERT_EQUAL(strncmp(dst, "10.151.120.", 11), 0); /* a backend, not the VIP */
    }
    CU_ASSERT_TRUE(big >= 10);
    it_free_outs(&o);
    tu_pcap_free(&in);
    tu_rmrf(d);
    free(d);
}

/* Every NF of docs/chains: what came in went out or was dropped, and the root's
 * oversize accounts for the rest. */
static void test_jumbo_every_nf(void)
{
    static const char *const chains[] = {"nat.yaml", "lb.yaml", "portscan.yaml", "trojan.yaml",
                                         "full.yaml"};
    char *d = tu_mkdtemp("jumbo");
    char trace[4096];
    tu_trace("jumbo.pcap", trace, sizeof(trace));
    for (size_t c = 0; c < sizeof(chains) / sizeof(chains[0]); c++) {
        char chain[4096], out[4200], rep[4300];
        snprintf(chain, sizeof(chain), "%s/docs/chains/%s", getenv("RW_SRC"), chains[c]);
        snprintf(out, sizeof(out), "%s/out-%zu", d, c);
        snprintf(rep, sizeof(rep), "%s/report.json", out);
        CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, out), 0);
        CU_ASSERT_EQUAL(it_file_has(rep, "\"oversize\": 2,"), 1);
        size_t len;
        char *txt = tu_slurp(rep, &len), *p = txt ? strstr(txt, "\"nfs\"") : NULL;
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        unsigned nfs = 0;
        while ((p = strstr(p, "\"packets_in\": "))) {
            unsigned long long pin = strtoull(p + 14, NULL, 10);
            char *q = strstr(p, "\"packets_out\": "), *r = strstr(p, "\"dropped\": ");
            CU_ASSERT_PTR_NOT_NULL_FATAL(q);
            CU_ASSERT_PTR_NOT_NULL_FATAL(r);
            unsigned long long pout = strtoull(q + 15, NULL, 10), drop = strtoull(r + 11, NULL, 10);
            if (pin != pout + drop || (nfs == 0 && pin != 5))
                fprintf(stderr, "  %s: an NF took %llu, sent %llu, dropped %llu\n", chains[c], pin,
                        pout, drop);
            CU_ASSERT_EQUAL(pin, pout + drop);
            if (nfs++ == 0)
                CU_ASSERT_EQUAL(pin, 5); /* the first NF got every frame it could carry */
            p = r;
        }
        CU_ASSERT_TRUE(nfs >= 1);
        free(txt);
    }
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "jumbo frames up to max_frame are carried; bigger ones counted and logged",
                test_jumbo_carried);
    CU_add_test(s, "a jumbo connection to the VIP is balanced like any other", test_jumbo_lb);
    CU_add_test(s, "jumbo frames through every NF: in = out + dropped", test_jumbo_every_nf);
}

int main(void)
{
    return tu_main("jumbo", add);
}
