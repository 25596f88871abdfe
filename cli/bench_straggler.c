/*
 * bench_straggler.c - `rewind bench straggler`: what a slow worker costs the
 * chain and what cloning it wins back (design.md: Stragglers).
 *
 * A firewall with 2 instances on the LAN capture (traces/external/real.pcap)
 * repeated with shifted time to N packets, three ways, alternating, median of
 * --runs: healthy (`rewind run`); fw[1] made FACTOR times slower with the
 * straggler policy off (`rewind chaos --slow`, `stragglers: {action: off}`);
 * and the same with the default policy, which clones it. Throughput is the
 * report's (packets over the pipeline time); the slow runs as ratios of the
 * healthy one. detect_ms: from the slow fault to its detection (chaos.json's
 * fault time, report.json's clone_log).
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_RUNS 9

struct strag_fig {
    double pps, clones, detect_ms;
};

static int slurp(const char *path, char *buf, size_t cap)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return -1;
    size_t n = fread(buf, 1, cap - 1, in);
    fclose(in);
    buf[n] = '\0';
    return 0;
}

static double num_after(const char *s, const char *key)
{
    const char *p = s ? strstr(s, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

static int write_chain(const char *path, const char *policy)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "name: straggler\nstore: lmdb:store\nlog: {durability: process}\n%s"
            "nfs:\n  - {name: fw, type: firewall, instances: 2, flowspace: 5tuple, config: "
            "{default: allow}}\n",
            policy);
    return fclose(f);
}

/* One run: how = "run", or a chaos with the slow fault. */
static int once(const char *self, const char *dir, const char *chain, const char *trace,
                unsigned factor, bool slow, struct strag_fig *f)
{
    char cmd[16384], how[64] = "run";
    if (slow)
        snprintf(how, sizeof(how), "chaos --slow 'fw[1]:%u'", factor);
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s/out' && '%s' %s '%s' --trace '%s' --out '%s/out' >/dev/null", dir, self,
             how, chain, trace, dir);
    static char rep[1 << 20], chaos[1 << 16];
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/out/report.json", dir);
    if (system(cmd) != 0 || slurp(path, rep, sizeof(rep)))
        return -1;
    f->pps = num_after(rep, "\"throughput_pps\": ");
    f->clones = num_after(rep, "\"clones\": ");
    f->detect_ms = -1;
    snprintf(path, sizeof(path), "%s/out/chaos.json", dir);
    const char *log = strstr(rep, "\"clone_log\": [");
    if (slow && log && strstr(log, "\"detected_ms\": ") && !slurp(path, chaos, sizeof(chaos))) {
        const char *fault = strstr(chaos, "\"action\": \"slow\"");
        /* the fault's at_ms comes just before its action in its object */
        const char *at = fault;
        while (at && at > chaos && strncmp(at, "\"at_ms\": ", 9))
            at--;
        if (at && at > chaos)
            f->detect_ms = num_after(log, "\"detected_ms\": ") - strtod(at + 9, NULL);
    }
    return f->pps > 0 ? 0 : -1;
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const struct strag_fig *v, int n, size_t off)
{
    double x[MAX_RUNS];
    for (int i = 0; i < n; i++)
        x[i] = *(const double *)((const char *)&v[i] + off);
    qsort(x, (size_t)n, sizeof(double), by_double);
    return x[n / 2];
}

int cmd_bench_straggler(int argc, char **argv)
{
    static const struct option opts[] = {
        {"packets", required_argument, 0, 'n'}, {"factor", required_argument, 0, 'f'},
        {"runs", required_argument, 0, 'r'},    {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    uint64_t n = 1000000, factor = 10, runs = 3;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = true;
            continue;
        }
        if ((c == 'n' && !cli_parse_u64(optarg, &n) && n > 0) ||
            (c == 'f' && !cli_parse_u64(optarg, &factor) && factor >= 2 && factor <= 1000) ||
            (c == 'r' && !cli_parse_u64(optarg, &runs) && runs >= 1 && runs <= MAX_RUNS))
            continue;
        FILE *f = c == 'h' ? stdout : stderr;
        fprintf(f,
                "usage: rewind bench straggler [--packets N] [--factor F] [--runs R] [--json]\n\n"
                "A firewall with 2 instances on traces/external/real.pcap repeated to N packets\n"
                "(default 1000000): healthy; with fw[1] F times slower (default 10: `rewind\n"
                "chaos --slow`) and the straggler policy off; and with the default policy,\n"
                "which clones it. Median of R alternating runs (default 3, at most %d).\n"
                "--json: {healthy_pps, slow_pps, clone_pps, ratio_clone, ratio_no_clone,\n"
                "clones, detect_ms} (docs/benchmarks.md).\n",
                MAX_RUNS);
        return c == 'h' ? EXIT_OK : EXIT_USAGE;
    }
    char self[PATH_MAX], repo[PATH_MAX], dir[] = "/tmp/rewind-bench-straggler-XXXXXX";
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0 || !mkdtemp(dir))
        return cli_error("bench straggler: cannot set up"), EXIT_FAIL;
    self[sl] = '\0';
    char input[PATH_MAX + 64], trace[PATH_MAX], on[PATH_MAX], off[PATH_MAX];
    snprintf(trace, sizeof(trace), "%s/trace.pcap", dir);
    snprintf(on, sizeof(on), "%s/clone.yaml", dir);
    snprintf(off, sizeof(off), "%s/off.yaml", dir);
    int rc = 0;
    if (bench_find_repo(self, repo, sizeof(repo)) ||
        snprintf(input, sizeof(input), "%s/traces/external/real.pcap", repo) >=
            (int)sizeof(input) ||
        access(input, R_OK))
        cli_error("bench straggler: no traces/external/real.pcap (make setup fetches it; set "
                  "RW_SRC to the source tree)"),
            rc = -1;
    else if (bench_repeat_trace(input, trace, n) || write_chain(on, "") ||
             write_chain(off, "stragglers: {action: off}\n"))
        cli_error("bench straggler: cannot write its trace and chains in %s", dir), rc = -1;
    struct strag_fig ok[MAX_RUNS], slow[MAX_RUNS], cl[MAX_RUNS];
    if (!json && !rc)
        printf("straggler benchmark: firewall x2, fw[1] %" PRIu64 "x slow, %" PRIu64
               " packets of the LAN capture, median of %" PRIu64 " runs:\n",
               factor, n, runs);
    for (int r = 0; !rc && r < (int)runs; r++) {
        fflush(stdout);
        if (once(self, dir, on, trace, 0, false, &ok[r]) ||
            once(self, dir, off, trace, (unsigned)factor, true, &slow[r]) ||
            once(self, dir, on, trace, (unsigned)factor, true, &cl[r]))
            cli_error("bench straggler: `rewind run`/`rewind chaos` failed (run %d)", r + 1),
                rc = -1;
    }
    if (!rc) {
        int k = (int)runs;
        double h = median(ok, k, offsetof(struct strag_fig, pps));
        double s = median(slow, k, offsetof(struct strag_fig, pps));
        double cpps = median(cl, k, offsetof(struct strag_fig, pps));
        double clones = median(cl, k, offsetof(struct strag_fig, clones));
        double det = median(cl, k, offsetof(struct strag_fig, detect_ms));
        if (json)
            printf("{\"chain\": \"firewall x2\", \"packets\": %" PRIu64 ", \"factor\": %" PRIu64
                   ", \"runs\": %" PRIu64 ", \"healthy_pps\": %.0f, \"slow_pps\": %.0f, "
                   "\"clone_pps\": %.0f, \"ratio_clone\": %.3f, \"ratio_no_clone\": %.3f, "
                   "\"clones\": %.0f, \"detect_ms\": %.1f}\n",
                   n, factor, runs, h, s, cpps, cpps / h, s / h, clones, det);
        else
            printf("  healthy              %10.0f packets/s\n"
                   "  slow, no clone       %10.0f packets/s   ratio %.2f\n"
                   "  slow, cloned         %10.0f packets/s   ratio %.2f  (%.0f clone(s), "
                   "detected in %.0f ms)\n",
                   h, s, s / h, cpps, cpps / h, clones, det);
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cli_error("bench: could not remove %s", dir);
    return rc ? EXIT_FAIL : EXIT_OK;
}
