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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s' && '%s' log ingest --log '%s' --trace '%s' --durability none -q "
             ">/dev/null 2>&1",
             logdir, self, logdir, pcap);
    if (system(cmd) != 0)
        return cli_error("bench: ingest of %s failed", pcap), -1;
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
