/*
 * test_frag.c - IP fragments end to end: the root reassembles before it splits,
 * so a scan cut into 8-byte fragments (`nmap -f`) is detected like the whole
 * one, a fragmented UDP answer (IPv4, and IPv6 with a fragment header) passes
 * the firewall and the NAT whole, overlapping, incomplete and malformed
 * fragments are dropped and counted in report.json, and a run with fragments
 * whose workers are killed gives the fault-free run's output. Traces:
 * traces/frag_*.pcap (traces/gen/fragment.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

/* A firewall letting UDP to the lab server (v4 and v6) through, answers
 * following as established. */
static const char fw_chain[] = "name: fwfrag\n"
                               "store: lmdb:store\n"
                               "log:\n"
                               "  durability: process\n"
                               "nfs:\n"
                               "  - name: fw\n"
                               "    type: firewall\n"
                               "    instances: 3\n"
                               "    flowspace: 5tuple\n"
                               "    config:\n"
                               "      default: drop\n"
                               "      rules:\n"
                               "        - {action: allow, proto: udp, dst: 10.200.0.2}\n"
                               "        - {action: allow, proto: udp, dst: \"fd00:c8::2\"}\n"
                               "edges:\n"
                               "  - {from: input, to: fw}\n"
                               "  - {from: fw, to: output}\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* rewind run CHAIN --trace traces/TRACE --out OUT EXTRA, bounded by `timeout`;
 * its output in OUT.std{out,err}. CHAIN: absolute, or under docs/chains/; TRACE:
 * absolute, or under traces/. */
static int run(const char *cmd, const char *chain, const char *trace, const char *out,
               const char *extra)
{
    char c[4096], t[4096], log[4200];
    if (chain[0] == '/')
        snprintf(c, sizeof(c), "%s", chain);
    else
        snprintf(c, sizeof(c), "%s/docs/chains/%s", getenv("RW_SRC"), chain);
    if (trace[0] == '/')
        snprintf(t, sizeof(t), "%s", trace);
    else
        tu_trace(trace, t, sizeof(t));
    snprintf(log, sizeof(log), "%s", out);
    return tu_sh(log, "timeout -s KILL 300 '%s' %s '%s' --trace '%s' --out '%s' %s", tu_bin(), cmd,
                 c, t, out, extra ? extra : "");
}

/* The alerts.json line of the scan.detected alert for host (NULL: none). */
static char *scan_alert(const char *out, const char *host)
{
    char path[4200], want[128];
    snprintf(path, sizeof(path), "%s/alerts.json", out);
    snprintf(want, sizeof(want), "\"host\": \"%s\"", host);
    size_t len;
    char *s = tu_slurp(path, &len);
    char *found = NULL;
    for (char *line = s ? strtok(s, "\n") : NULL; line && !found; line = strtok(NULL, "\n"))
        if (strstr(line, "\"scan.detected\"") && strstr(line, want))
            found = strdup(line);
    free(s);
    return found;
}

static void test_fragmented_scan_detected(void)
{
    char *d = tu_mkdtemp("frag");
    char whole[4200], frag[4200], rep[4300];
    snprintf(whole, sizeof(whole), "%s/whole", d);
    snprintf(frag, sizeof(frag), "%s/frag", d);
    snprintf(rep, sizeof(rep), "%s/report.json", frag);
    CU_ASSERT_EQUAL_FATAL(run("run", "portscan.yaml", "nmap_sT_top1000.pcap", whole, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run("run", "portscan.yaml", "frag_nmap_sT.pcap", frag, NULL), 0);
    char *a = scan_alert(whole, "10.200.0.1"), *b = scan_alert(frag, "10.200.0.1");
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_PTR_NOT_NULL(b);
    /* The same alert at the same clock: each probe is one datagram, one clock. */
    if (a && b)
        CU_ASSERT_STRING_EQUAL(a, b);
    /* 1,000 SYN probes in 5 fragments each. */
    CU_ASSERT_EQUAL(it_file_has(rep, "\"fragments\": {\"in\": 5000, \"reassembled\": 1000, "
                                     "\"dropped_overlap\": 0, \"dropped_timeout\": 0"),
                    1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"packets_in\": 6012,\n"), 1);
    free(a);
    free(b);
    tu_rmrf(d);
    free(d);
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* The whole answers of frag_udp.pcap: 3,008 UDP bytes from port 53, over IPv4
 * (not a fragment any more) and over IPv6 (no fragment header left). */
static void count_answers(const struct it_outs *o, int *v4, int *v6)
{
    *v4 = *v6 = 0;
    for (size_t i = 0; i < o->n; i++) {
        const uint8_t *p = o->p[i].data;
        if (o->p[i].len == 14 + 20 + 3008 && rd16(p + 12) == 0x0800 && p[23] == 17 &&
            (rd16(p + 20) & 0x3fff) == 0 && rd16(p + 16) == 20 + 3008 && rd16(p + 34) == 53)
            (*v4)++;
        if (o->p[i].len == 14 + 40 + 3008 && rd16(p + 12) == 0x86dd && p[20] == 17 &&
            rd16(p + 18) == 3008 && rd16(p + 54) == 53)
            (*v6)++;
    }
}

static void test_fragmented_udp_passes(void)
{
    char *d = tu_mkdtemp("frag");
    char chain[4200], fw[4200], nat[4200];
    snprintf(chain, sizeof(chain), "%s/fw.yaml", d);
    snprintf(fw, sizeof(fw), "%s/fw", d);
    snprintf(nat, sizeof(nat), "%s/nat", d);
    write_file(chain, fw_chain);
    CU_ASSERT_EQUAL_FATAL(run("run", chain, "frag_udp.pcap", fw, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run("run", "nat.yaml", "frag_udp.pcap", nat, NULL), 0);
    struct it_outs o = {0};
    int v4, v6;
    it_read_output(fw, &o);
    count_answers(&o, &v4, &v6);
    CU_ASSERT_EQUAL(o.n, 4); /* two queries, two whole answers */
    CU_ASSERT_EQUAL(v4, 1);
    CU_ASSERT_EQUAL(v6, 1);
    it_free_outs(&o);
    it_read_output(nat, &o);
    count_answers(&o, &v4, &v6);
    CU_ASSERT_EQUAL(v4, 1);
    CU_ASSERT_EQUAL(v6, 1);
    /* The IPv4 query left from the external address and a pool port. */
    int translated = 0;
    for (size_t i = 0; i < o.n; i++) {
        const uint8_t *p = o.p[i].data;
        static const uint8_t ext[4] = {192, 0, 2, 1};
        if (o.p[i].len >= 42 && rd16(p + 12) == 0x0800 && !memcmp(p + 26, ext, 4) &&
            rd16(p + 34) >= 20000 && rd16(p + 34) <= 21023 && rd16(p + 36) == 53)
            translated++;
    }
    CU_ASSERT_EQUAL(translated, 1);
    it_free_outs(&o);
    tu_rmrf(d);
    free(d);
}

static void test_bad_fragments_counted(void)
{
    char *d = tu_mkdtemp("frag");
    char chain[4200], out[4200], rep[4300];
    snprintf(chain, sizeof(chain), "%s/fw.yaml", d);
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    write_file(chain, fw_chain);
    /* traces/README.md lists what frag_bad.pcap holds and what each piece costs. */
    CU_ASSERT_EQUAL_FATAL(run("run", chain, "frag_bad.pcap", out, NULL), 0);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"fragments\": {\"in\": 12, \"reassembled\": 1, "
                                     "\"dropped_overlap\": 5, \"dropped_timeout\": 4, "
                                     "\"dropped_table_full\": 0, \"dropped_invalid\": 1}"),
                    1);
    /* Only the good datagram and the whole packet go on; no piece does. */
    struct it_outs o = {0};
    it_read_output(out, &o);
    CU_ASSERT_EQUAL(o.n, 2);
    for (size_t i = 0; i < o.n; i++) {
        const uint8_t *p = o.p[i].data;
        CU_ASSERT_TRUE(o.p[i].len >= 42 && (rd16(p + 20) & 0x3fff) == 0);
        CU_ASSERT_TRUE(o.p[i].len >= 42 && (rd16(p + 36) == 5002 || rd16(p + 36) == 5003));
    }
    it_free_outs(&o);
    tu_rmrf(d);
    free(d);
}

/* The output log holds whole datagrams; `rewind replay --to-port` cuts those
 * larger than the port's MTU (net_pcap: 1,500) into fragments again. */
static void test_replay_refragments(void)
{
    char *d = tu_mkdtemp("frag");
    char chain[4200], out[4200], tx[4200], log[4200];
    snprintf(chain, sizeof(chain), "%s/fw.yaml", d);
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(tx, sizeof(tx), "%s/tx.pcap", d);
    snprintf(log, sizeof(log), "%s/replay", d);
    write_file(chain, fw_chain);
    CU_ASSERT_EQUAL_FATAL(run("run", chain, "frag_udp.pcap", out, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(tu_sh(log,
                                "timeout -s KILL 120 '%s' replay '%s/output' --to-port "
                                "net_pcap0,tx_pcap='%s' --speed max",
                                tu_bin(), out, tx),
                          0);
    struct tu_pcap t;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(tx, &t), 0);
    /* two queries whole, each answer in three pieces no larger than the MTU */
    CU_ASSERT_EQUAL(t.n, 8);
    size_t v4 = 0, v6 = 0, v4_bytes = 0, v6_bytes = 0;
    for (size_t i = 0; i < t.n; i++) {
        const uint8_t *p = t.pkts[i].data;
        CU_ASSERT_TRUE(t.pkts[i].caplen <= 14 + 1500);
        if (t.pkts[i].caplen >= 34 && rd16(p + 12) == 0x0800 && (rd16(p + 20) & 0x3fff))
            v4++, v4_bytes += rd16(p + 16) - 20u;
        if (t.pkts[i].caplen >= 62 && rd16(p + 12) == 0x86dd && p[20] == 44)
            v6++, v6_bytes += rd16(p + 18) - 8u;
    }
    CU_ASSERT_EQUAL(v4, 3);
    CU_ASSERT_EQUAL(v6, 3);
    CU_ASSERT_EQUAL(v4_bytes, 8 + 3000); /* every byte of each UDP datagram */
    CU_ASSERT_EQUAL(v6_bytes, 8 + 3000);
    tu_pcap_free(&t);
    tu_rmrf(d);
    free(d);
}

/* More datagrams in flight than the table holds (1,024): first pieces whose
 * rest never comes, made here. The table stays bounded, what finds no room is
 * counted, the rest times out at the end; nothing reaches the NFs. */
static void test_table_full(void)
{
    char *d = tu_mkdtemp("frag");
    char trace[4200], chain[4200], out[4200], rep[4300];
    snprintf(trace, sizeof(trace), "%s/firsts.pcap", d);
    snprintf(chain, sizeof(chain), "%s/fw.yaml", d);
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    write_file(chain, fw_chain);
    enum { N = 1100, LEN = 14 + 20 + 16 };
    struct tu_pcap t = {.n = N, .pkts = calloc(N, sizeof(struct tu_pkt))};
    CU_ASSERT_PTR_NOT_NULL_FATAL(t.pkts);
    static const uint8_t head[] = {2,    0,    10,   200, 0, 2,  2,  0,   10,   200, 0,  1,
                                   0x08, 0x00, 0x45, 0,   0, 36, 0,  0,   0x20, 0,   64, 17,
                                   0,    0,    10,   200, 0, 1,  10, 200, 0,    2};
    for (size_t i = 0; i < N; i++) {
        struct tu_pkt *p = &t.pkts[i];
        p->ts_ns = 1700000000000000000ull + i * 1000ull;
        p->caplen = p->len = LEN;
        p->data = calloc(1, LEN);
        memcpy(p->data, head, sizeof(head));
        p->data[18] = (uint8_t)(i >> 8), p->data[19] = (uint8_t)i; /* IP id */
    }
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(trace, &t), 0);
    tu_pcap_free(&t);
    CU_ASSERT_EQUAL_FATAL(run("run", chain, trace, out, NULL), 0);
    size_t len;
    char *r = tu_slurp(rep, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    unsigned long long in = 0, whole = 1, ov = 1, to = 0, full = 0, bad = 1;
    const char *f = strstr(r, "\"fragments\": {");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(sscanf(f,
                           "\"fragments\": {\"in\": %llu, \"reassembled\": %llu, "
                           "\"dropped_overlap\": %llu, \"dropped_timeout\": %llu, "
                           "\"dropped_table_full\": %llu, \"dropped_invalid\": %llu}",
                           &in, &whole, &ov, &to, &full, &bad),
                    6);
    CU_ASSERT_EQUAL(in, N);
    CU_ASSERT_EQUAL(whole + ov + bad, 0);
    CU_ASSERT_TRUE(full >= N - 1024);
    CU_ASSERT_EQUAL(to + full, N);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"packets_out\": 0,\n"), 1);
    free(r);
    tu_rmrf(d);
    free(d);
}

/* Workers killed while fragmented probes flow through the whole chain: the
 * replacements replay whole datagrams from the log, so the output equals the
 * fault-free run's. */
static void test_fragments_failover(void)
{
    char *d = tu_mkdtemp("frag");
    char ref[4200], run_dir[4200], log[4300], rep[4300];
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run_dir, sizeof(run_dir), "%s/chaos", d);
    snprintf(log, sizeof(log), "%s.verify", run_dir);
    snprintf(rep, sizeof(rep), "%s/report.json", run_dir);
    CU_ASSERT_EQUAL_FATAL(run("run", "full.yaml", "frag_nmap_sT.pcap", ref, NULL), 0);
    int rc = run("chaos", "full.yaml", "frag_nmap_sT.pcap", run_dir,
                 "--rate 2400 --kill-every 150 --seed 7");
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_TRUE(it_file_has(rep, "\"reason\": \"killed\"") >= 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"in\": 5000, \"reassembled\": 1000,"), 1);
    char *a = scan_alert(ref, "10.200.0.1");
    CU_ASSERT_PTR_NOT_NULL(a);
    free(a);
    rc = tu_sh(log, "timeout -s KILL 300 '%s' verify '%s' '%s'", tu_bin(), ref, run_dir);
    CU_ASSERT_EQUAL(rc, 0);
    char out[4400];
    snprintf(out, sizeof(out), "%s.stdout", log);
    CU_ASSERT_EQUAL(it_file_has(out, "lost 0, duplicated 0, changed 0, alerts missing 0, extra 0"),
                    1);
    if (rc)
        tu_sh(NULL, "cat '%s' >&2", out);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "a scan in 8-byte fragments is detected like the whole one",
                test_fragmented_scan_detected);
    CU_add_test(s, "a fragmented UDP answer (IPv4, IPv6) passes firewall and NAT whole",
                test_fragmented_udp_passes);
    CU_add_test(s, "overlapping, incomplete and malformed fragments: dropped, counted, exit 0",
                test_bad_fragments_counted);
    CU_add_test(s, "replay --to-port cuts datagrams larger than the MTU into fragments",
                test_replay_refragments);
    CU_add_test(s, "more datagrams in flight than the table holds: counted, bounded",
                test_table_full);
    CU_add_test(s, "fragments under worker kills: output equals the fault-free run's",
                test_fragments_failover);
}

int main(void)
{
    return tu_main("frag", add);
}
