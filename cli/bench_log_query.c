/*
 * bench_log_query.c - `rewind bench log`'s forensic queries: host, subnet, port
 * and protocol filters answered from the log (its keys index, log_keys.h) against
 * `tcpdump -r CAPTURE -w OUT FILTER` on the capture the log was ingested from.
 *
 * The traffic is real: the LAN hour of traces/external/ repeated, each copy
 * shifted in time past the one before (bench_repeat_trace), to N packets. Both
 * sides run as commands, best of three, and must write the same number of
 * packets for a figure to count. A narrow query should cost what its answer
 * costs, so its ratio grows with the log; a broad one streams every block.
 *
 * Replay pacing: a paced `--to-port` replay of evenly spaced packets to DPDK's
 * null PMD at x1 and x10, its drift (elapsed minus scheduled) as the replay
 * reports it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

#include "cli.h"

/* The filters, one per kind the issue names; the host is one of the LAN hour's
 * quieter ones (70 packets an hour), the subnet its /24. */
static const struct {
    const char *kind, *filter;
} queries[] = {
    {"host", "host 10.64.93.174"},
    {"host+proto", "tcp and host 10.64.93.174"},
    {"subnet", "net 10.64.93.0/24"},
    {"port", "port 139"},
    {"proto", "icmp"},
};
#define NQUERIES (sizeof(queries) / sizeof(queries[0]))

int bench_log_nqueries(void)
{
    return (int)NQUERIES;
}

/* A fresh log of the capture, as `rewind log ingest` writes it. */
static int ingest(const char *self, const char *pcap, const char *logdir)
{
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s' && '%s' log ingest --log '%s' --trace '%s' --durability none -q "
             ">/dev/null 2>&1",
             logdir, self, logdir, pcap);
    if (system(cmd) != 0)
        return cli_error("bench: ingest of %s failed", pcap), -1;
    return 0;
}

/* "..., keys index, 7 of 981 blocks read" from the replay's last line. */
static void blocks_of(const char *errfile, struct bench_query_row *r)
{
    FILE *f = fopen(errfile, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, " index, ");
        unsigned long long a, b;
        if (p && sscanf(p, " index, %llu of %llu blocks", &a, &b) == 2)
            r->blocks_read = a, r->blocks_total = b;
    }
    if (f)
        fclose(f);
}

int bench_log_queries(const char *self, const char *trace, const char *tmp, uint64_t n,
                      struct bench_query_row *rows, bool print)
{
    char pcap[4200], logdir[4200], out1[4200], out2[4200], err[4200], cmd[20000];
    snprintf(pcap, sizeof(pcap), "%s/lan-%llu.pcap", tmp, (unsigned long long)n);
    snprintf(logdir, sizeof(logdir), "%s/lan-log", tmp);
    snprintf(out1, sizeof(out1), "%s/q-rewind.pcap", tmp);
    snprintf(out2, sizeof(out2), "%s/q-tcpdump.pcap", tmp);
    snprintf(err, sizeof(err), "%s/q-rewind.err", tmp);
    if (bench_repeat_trace(trace, pcap, n))
        return cli_error("bench: cannot repeat %s to %llu packets", trace, (unsigned long long)n),
               -1;
    if (ingest(self, pcap, logdir))
        return -1;
    if (print)
        printf(
            "queries, %llu packets of the LAN hour (copies shifted in time), vs tcpdump -r -w:\n",
            (unsigned long long)n);
    for (size_t i = 0; i < NQUERIES; i++) {
        struct bench_query_row *r = &rows[i];
        memset(r, 0, sizeof(*r));
        r->packets = n;
        r->kind = queries[i].kind;
        r->filter = queries[i].filter;
        snprintf(cmd, sizeof(cmd), "'%s' replay '%s' --to-pcap '%s' --filter '%s' 2>'%s'", self,
                 logdir, out1, r->filter, err);
        r->rewind_s = bench_time_cmd(cmd);
        snprintf(cmd, sizeof(cmd), "tcpdump -r '%s' -w '%s' '%s' 2>/dev/null", pcap, out2,
                 r->filter);
        r->tcpdump_s = bench_time_cmd(cmd);
        int a = bench_count_pcap(out1), t = bench_count_pcap(out2);
        if (r->rewind_s <= 0 || r->tcpdump_s <= 0 || a < 0 || a != t)
            return cli_error("bench: query '%s' failed or disagrees with tcpdump (%d vs %d "
                             "packets)",
                             r->filter, a, t),
                   -1;
        r->matched = a;
        r->speedup = r->tcpdump_s / r->rewind_s;
        blocks_of(err, r);
        if (print)
            printf("  %-10s %-28s %7d packets  rewind %.4f s (%llu of %llu blocks)  tcpdump "
                   "%.4f s  %.1fx\n",
                   r->kind, r->filter, r->matched, r->rewind_s, (unsigned long long)r->blocks_read,
                   (unsigned long long)r->blocks_total, r->tcpdump_s, r->speedup);
    }
    remove(pcap);
    remove(out1);
    remove(out2);
    remove(err);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", logdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- replay pacing ---- */

/* n UDP packets 50 µs apart (20,000 a second: a busy link's pace at x1, and
 * 200,000 at x10, which net_null takes without back-pressure). */
static int write_paced(const char *path, uint64_t n)
{
    pcap_t *dead =
        pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 65535, PCAP_TSTAMP_PRECISION_NANO);
    pcap_dumper_t *d = dead ? pcap_dump_open(dead, path) : NULL;
    if (!d) {
        if (dead)
            pcap_close(dead);
        return -1;
    }
    uint8_t p[128] = {0};
    memcpy(p, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00\x45", 15);
    p[17] = 114, p[22] = 64, p[23] = 17;
    memcpy(p + 26, "\x0a\x00\x00\x01\x0a\x00\x00\x02", 8);
    p[35] = 99, p[37] = 53, p[39] = 94;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = 1795343910000000000ull + i * 50000ull;
        struct pcap_pkthdr h = {.caplen = sizeof(p), .len = sizeof(p)};
        h.ts.tv_sec = (time_t)(t / 1000000000ull);
        h.ts.tv_usec = (suseconds_t)(t % 1000000000ull);
        p[42] = (uint8_t)i, p[43] = (uint8_t)(i >> 8);
        pcap_dump((u_char *)d, &h, p);
    }
    pcap_dump_close(d);
    pcap_close(dead);
    return 0;
}

/* "replay: paced x10: N packets in E s (R pps), schedule S s, drift D ms (P%), L late
 * by more than 1 ms (max M ms)" from the replay's stderr. */
static int parse_paced(const char *errfile, struct bench_pacing_row *r)
{
    FILE *f = fopen(errfile, "r");
    char line[1024];
    int ok = 0;
    while (f && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "replay: paced x");
        double sp, el, pps, sch, dms, dpct, maxms;
        unsigned long long pk, late;
        if (p && sscanf(p,
                        "replay: paced x%lf: %llu packets in %lf s (%lf pps), schedule %lf s, "
                        "drift %lf ms (%lf%%), %llu late by more than 1 ms (max %lf ms)",
                        &sp, &pk, &el, &pps, &sch, &dms, &dpct, &late, &maxms) == 9) {
            r->packets = pk, r->elapsed_s = el, r->pps = pps, r->scheduled_s = sch;
            r->drift_ms = dms, r->drift_pct = dpct, r->late = late, r->max_late_ms = maxms;
            ok = 1;
        }
    }
    if (f)
        fclose(f);
    return ok ? 0 : -1;
}

int bench_log_pacing(const char *self, const char *tmp, uint64_t n, struct bench_pacing_row *rows,
                     bool print)
{
    static const double speeds[] = {1, 10};
    char pcap[4200], logdir[4200], err[4200], cmd[16384];
    snprintf(pcap, sizeof(pcap), "%s/paced.pcap", tmp);
    snprintf(logdir, sizeof(logdir), "%s/paced-log", tmp);
    snprintf(err, sizeof(err), "%s/paced.err", tmp);
    if (write_paced(pcap, n))
        return cli_error("bench: cannot write %s", pcap), -1;
    if (ingest(self, pcap, logdir))
        return -1;
    if (print)
        printf("replay pacing, %llu packets 50 us apart, `rewind replay --to-port net_null0`:\n",
               (unsigned long long)n);
    for (int i = 0; i < BENCH_PACING_SPEEDS; i++) {
        struct bench_pacing_row *r = &rows[i];
        memset(r, 0, sizeof(*r));
        r->speed = speeds[i];
        snprintf(cmd, sizeof(cmd), "'%s' replay '%s' --to-port net_null0 --speed %g 2>'%s'", self,
                 logdir, speeds[i], err);
        if (system(cmd) != 0 || parse_paced(err, r) || r->packets != n)
            return cli_error("bench: paced replay at x%g failed (%s)", speeds[i], err), -1;
        if (print)
            printf("  x%-3g %llu packets in %.4f s (schedule %.4f s): drift %+.3f ms (%+.4f%%), "
                   "%llu late by > 1 ms (max %.3f ms)\n",
                   r->speed, (unsigned long long)r->packets, r->elapsed_s, r->scheduled_s,
                   r->drift_ms, r->drift_pct, (unsigned long long)r->late, r->max_late_ms);
    }
    remove(pcap);
    remove(err);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", logdir);
    return system(cmd) == 0 ? 0 : -1;
}
