/*
 * test_nf_lb.c - the load balancer on pathspider's real LAN capture, whose ~3,600
 * connections to 10.151.119.2:10050 are balanced over three backends: every
 * connection keeps its backend, the spread stays within ±10% of even, rewritten
 * packets carry correct checksums (recomputed here, RFC 1071), other traffic is
 * untouched, and FT, --no-ft and 3 instances agree on affinity.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

#define NBACK 3

static uint16_t sum16(const uint8_t *p, size_t n, uint32_t acc)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        acc += (uint32_t)(p[n - 1] << 8);
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

/* IPv4 header and TCP checksums both verify (sum of all words is 0xffff). */
static bool checksums_ok(const struct tu_pkt *k)
{
    const uint8_t *ip = k->data + 14;
    size_t ihl = (size_t)(ip[0] & 15) * 4, tot = (size_t)(ip[2] << 8 | ip[3]);
    if (14 + tot > k->caplen)
        return true; /* truncated by the capture: nothing to check against */
    if (sum16(ip, ihl, 0) != 0xffff)
        return false;
    uint32_t pseudo = (uint32_t)(ip[12] << 8 | ip[13]) + (uint32_t)(ip[14] << 8 | ip[15]) +
                      (uint32_t)(ip[16] << 8 | ip[17]) + (uint32_t)(ip[18] << 8 | ip[19]) + 6 +
                      (uint32_t)(tot - ihl);
    return sum16(ip + ihl, tot - ihl, pseudo) == 0xffff;
}

static bool tcp_to(const struct tu_pkt *k, const char *dst, int port)
{
    const uint8_t *d = k->data;
    if (k->caplen < 54 || d[12] != 8 || d[23] != 6)
        return false;
    char a[16];
    snprintf(a, sizeof(a), "%u.%u.%u.%u", d[30], d[31], d[32], d[33]);
    size_t ihl = (size_t)(d[14] & 15) * 4;
    return (!dst || !strcmp(a, dst)) && (d[14 + ihl + 2] << 8 | d[14 + ihl + 3]) == port;
}

static int backend_of(const struct tu_pkt *k)
{
    const uint8_t *d = k->data;
    if (d[30] == 10 && d[31] == 151 && d[32] == 120 && d[33] >= 1 && d[33] <= NBACK)
        return d[33] - 1;
    return -1;
}

static uint16_t client_port(const struct tu_pkt *k)
{
    size_t ihl = (size_t)(k->data[14] & 15) * 4;
    return (uint16_t)(k->data[14 + ihl] << 8 | k->data[14 + ihl + 1]);
}

/* Runs the chain; checks affinity, checksums, untouched traffic; returns the
 * number of connections per backend. */
static void run_and_check(const char *d, const char *chain, const char *name, const char *extra,
                          int per[NBACK])
{
    char trace[4096], out[4300], o[4400], pcap[4400];
    tu_trace("external/real.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/%s", d, name);
    snprintf(o, sizeof(o), "%s/run", d);
    snprintf(pcap, sizeof(pcap), "%s.pcap", out);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(o, "'%s' run '%s' --trace '%s' --out '%s' %s", tu_bin(), chain, trace, out, extra),
        0);
    char log[4400];
    snprintf(log, sizeof(log), "%s/output", out);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, pcap, NULL), 0);
    struct tu_pcap in, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &in), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(pcap, &got), 0);
    CU_ASSERT_EQUAL_FATAL(got.n, in.n); /* a balancer drops nothing */
    static int16_t seen[65536];
    memset(seen, -1, sizeof(seen));
    int broken = 0, bad_sum = 0, changed = 0;
    memset(per, 0, NBACK * sizeof(int));
    for (size_t i = 0; i < in.n; i++) {
        if (!tcp_to(&in.pkts[i], "10.151.119.2", 10050)) {
            changed += it_diff(&in, i, &got, i, 1, 1) != -1; /* not for the VIP: as is */
            continue;
        }
        int b = backend_of(&got.pkts[i]);
        uint16_t cp = client_port(&in.pkts[i]);
        if (b < 0 || (seen[cp] >= 0 && seen[cp] != b && !(in.pkts[i].data[47] & 0x02)))
            broken++; /* same connection, other backend (a new SYN may reuse a port) */
        if (b >= 0 && (in.pkts[i].data[47] & 0x12) == 0x02) {
            seen[cp] = (int16_t)b;
            per[b]++;
        }
        bad_sum += !checksums_ok(&got.pkts[i]);
    }
    CU_ASSERT_EQUAL(broken, 0);
    CU_ASSERT_EQUAL(bad_sum, 0);
    CU_ASSERT_EQUAL(changed, 0);
    tu_pcap_free(&in);
    tu_pcap_free(&got);
}

static void test_affinity_balance_checksums(void)
{
    char *d = tu_mkdtemp("lb");
    char chain[4200];
    snprintf(chain, sizeof(chain), "%s/docs/chains/lb.yaml", getenv("RW_SRC"));
    int ft[NBACK], noft[NBACK];
    run_and_check(d, chain, "ft", "", ft);
    run_and_check(d, chain, "noft", "--no-ft", noft);
    int total = 0;
    for (int b = 0; b < NBACK; b++)
        total += ft[b];
    CU_ASSERT_TRUE(total > 3000);
    for (int b = 0; b < NBACK; b++) {
        CU_ASSERT_TRUE(ft[b] * 10 >= total / NBACK * 9 && ft[b] * 10 <= total / NBACK * 11);
        CU_ASSERT_EQUAL(ft[b], noft[b]); /* the same choices without FT */
    }
    tu_rmrf(d);
    free(d);
}

/* Three instances choose concurrently: the choices may differ from one instance's,
 * but every connection keeps its backend and the spread stays within ±25%. */
static void test_three_instances(void)
{
    char *d = tu_mkdtemp("lb3");
    char src[4096], chain[4200];
    snprintf(src, sizeof(src), "%s/docs/chains/lb.yaml", getenv("RW_SRC"));
    snprintf(chain, sizeof(chain), "%s/lb3.yaml", d);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "sed 's/    type: lb/    type: lb\\n    instances: 3/' '%s' > '%s'",
                                src, chain),
                          0);
    int per[NBACK], total = 0;
    run_and_check(d, chain, "three", "", per);
    for (int b = 0; b < NBACK; b++)
        total += per[b];
    CU_ASSERT_TRUE(total > 3000);
    /* Concurrent choosers read counters the others have not flushed yet: the bound is
     * wider than one instance's (measured: within 12%; stated: 25%). */
    for (int b = 0; b < NBACK; b++)
        CU_ASSERT_TRUE(per[b] * 4 >= total / NBACK * 3 && per[b] * 4 <= total / NBACK * 5);
    char rep[4400];
    snprintf(rep, sizeof(rep), "%s/three/report.json", d);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"instances\": 3"), 1);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "affinity, balance within 10%, checksums, others untouched; FT = no-FT",
                test_affinity_balance_checksums);
    CU_add_test(s, "three instances keep affinity and balance within 25%", test_three_instances);
}

int main(void)
{
    return tu_main("lb", add);
}
