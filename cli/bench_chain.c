/*
 * bench_chain.c - `rewind bench chain`: a 1-NF and a 2-NF firewall chain, each
 * run with fault tolerance and with --no-ft (traditional NFs: local state, no
 * log, no clock checks) on the same trace, alternating, median of 3. Each run is
 * the real `rewind run`; the figures come from its report.json:
 *   throughput: packets over the pipeline time (first rx to last release, so
 *     process start-up is not counted), FT as a ratio of --no-ft;
 *   latency: root send to sink release (median, p99) at full load, so it is
 *     mostly queueing and, with FT, the wait for durability (output commit);
 *   per-NF latency: the NF's own time per packet in its worker (median), FT minus
 *     --no-ft: what the store and the duplicate filter add to an NF.
 *
 * `rewind bench failover`: the same kind of chain (a firewall with 2 instances)
 * healthy and under a kill storm (`rewind chaos --kill-every MS`), alternating,
 * median of 3: throughput under the storm as a ratio of the healthy run's, and
 * detection and recovery times (p50, p99) from the chaos runs' report.json.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pcap/pcap.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define REPS 3

struct figures {
    double pps;
    double p50, p99; /* chain latency, ns */
    double nf_p50[2];
};

static int write_trace(const char *path, uint64_t n)
{
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 65535);
    pcap_dumper_t *d = pcap_dump_open(dead, path);
    if (!d)
        return -1;
    uint8_t p[64] = {0};
    p[12] = 0x08, p[14] = 0x45, p[17] = 50, p[22] = 64, p[23] = 17;
    p[26] = 10, p[30] = 10, p[31] = 1, p[33] = 1, p[37] = 53;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint32_t f = (uint32_t)((i / 2048) * 64 + seed % 64) & 0xffff; /* flows come and go */
        p[28] = (uint8_t)(f >> 8), p[29] = (uint8_t)f, p[34] = (uint8_t)(f >> 8),
        p[35] = (uint8_t)f;
        struct pcap_pkthdr h = {.caplen = 64, .len = 64};
        h.ts.tv_sec = (time_t)(1795343910 + i / 1000000);
        h.ts.tv_usec = (suseconds_t)(i % 1000000);
        pcap_dump((u_char *)d, &h, p);
    }
    pcap_dump_close(d);
    pcap_close(dead);
    return 0;
}

/* A scratch directory with a synthetic trace of n packets, and this binary. */
struct bench_env {
    char self[PATH_MAX], dir[64], trace[PATH_MAX];
};

static int bench_env_open(struct bench_env *b, const char *tag, uint64_t n);
static void bench_env_close(struct bench_env *b);

/* Reads dir/out/report.json into buf (NUL-terminated). */
static int read_report(const char *dir, char *buf, size_t cap)
{
    char rep[4200];
    snprintf(rep, sizeof(rep), "%s/out/report.json", dir);
    FILE *in = fopen(rep, "r");
    if (!in)
        return -1;
    size_t n = fread(buf, 1, cap - 1, in);
    fclose(in);
    buf[n] = '\0';
    return 0;
}

static int write_chain(const char *path, int nfs, int instances)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "name: bench%d\nstore: lmdb:store\nlog: {durability: process}\nnfs:\n", nfs);
    for (int i = 0; i < nfs; i++)
        fprintf(f,
                "  - {name: fw%d, type: firewall, instances: %d, flowspace: 5tuple, config: "
                "{default: allow}}\n",
                i, instances);
    return fclose(f);
}

static double json_num(const char *s, const char *key, int nth)
{
    const char *p = s;
    for (int i = 0; p && i <= nth; i++)
        if ((p = strstr(p, key)))
            p += strlen(key);
    return p ? strtod(p, NULL) : -1;
}

static int run_once(const char *self, const char *dir, const char *chain, const char *trace,
                    bool noft, int nfs, struct figures *f)
{
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s/out' && '%s' run '%s' --trace '%s' --out '%s/out' %s >/dev/null", dir,
             self, chain, trace, dir, noft ? "--no-ft" : "");
    static char buf[65536];
    if (system(cmd) != 0 || read_report(dir, buf, sizeof(buf)))
        return -1;
    f->pps = json_num(buf, "\"throughput_pps\": ", 0);
    f->p50 = json_num(buf, "\"p50\": ", 0);
    f->p99 = json_num(buf, "\"p99\": ", 0);
    /* Each NF's own figure, from its entry of the report's "nfs" list: a bare
     * "the i-th p50" would pick other sections' (detection_ms...). */
    const char *nf = strstr(buf, "\"nfs\": [");
    for (int i = 0; i < nfs; i++) {
        nf = nf ? strstr(nf + 1, "\"packets_in\": ") : NULL;
        const char *lat = nf ? strstr(nf, "\"latency_ns\": ") : NULL;
        f->nf_p50[i] = lat ? json_num(lat, "\"p50\": ", 0) : -1;
        if (f->nf_p50[i] <= 0)
            return -1; /* a figure never 0 by accident */
    }
    return 0;
}

/* ---- failover ---- */

struct fo_figures {
    double pps, failovers, det50, det99, rec50, rec99;
};

static int fo_once(const char *self, const char *dir, const char *chain, const char *trace,
                   unsigned kill_ms, struct fo_figures *f)
{
    char cmd[16384], chaos[64] = "run";
    if (kill_ms)
        snprintf(chaos, sizeof(chaos), "chaos --kill-every %u", kill_ms);
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s/out' && '%s' %s '%s' --trace '%s' --out '%s/out' >/dev/null", dir, self,
             chaos, chain, trace, dir);
    static char buf[1 << 20];
    if (system(cmd) != 0 || read_report(dir, buf, sizeof(buf)))
        return -1;
    f->pps = json_num(buf, "\"throughput_pps\": ", 0);
    f->failovers = json_num(buf, "\"failovers\": ", 0);
    const char *d = strstr(buf, "\"detection_ms\": "), *r = strstr(buf, "\"recovery_ms\": ");
    f->det50 = d ? json_num(d, "\"p50\": ", 0) : 0;
    f->det99 = d ? json_num(d, "\"p99\": ", 0) : 0;
    f->rec50 = r ? json_num(r, "\"p50\": ", 0) : 0;
    f->rec99 = r ? json_num(r, "\"p99\": ", 0) : 0;
    return 0;
}

static double med(double *v);

/* Median over the REPS runs of one field. */
static double fo_med(const struct fo_figures *runs, size_t off)
{
    double v[REPS];
    for (int r = 0; r < REPS; r++)
        v[r] = *(const double *)((const char *)&runs[r] + off);
    return med(v);
}

static int bench_failover(const char *self, const char *dir, const char *trace, unsigned kill_ms,
                          bool json)
{
    char chain[4200];
    snprintf(chain, sizeof(chain), "%s/fo.yaml", dir);
    if (write_chain(chain, 1, 2))
        return -1;
    struct fo_figures ok[REPS], st[REPS];
    for (int r = 0; r < REPS; r++)
        if (fo_once(self, dir, chain, trace, 0, &ok[r]) ||
            fo_once(self, dir, chain, trace, kill_ms, &st[r]))
            return cli_error("bench: `rewind run`/`rewind chaos` failed"), -1;
    double pps_ok = fo_med(ok, offsetof(struct fo_figures, pps));
    double pps_st = fo_med(st, offsetof(struct fo_figures, pps));
    if (json) {
        printf("{\"chain\": \"firewall x2\", \"kill_every_ms\": %u, \"runs\": %d, "
               "\"healthy_pps\": %.0f, \"storm_pps\": %.0f, \"ratio\": %.3f, "
               "\"failovers\": %.0f, \"detection_ms\": {\"p50\": %.3f, \"p99\": %.3f}, "
               "\"recovery_ms\": {\"p50\": %.3f, \"p99\": %.3f}}\n",
               kill_ms, REPS, pps_ok, pps_st, pps_st / pps_ok,
               fo_med(st, offsetof(struct fo_figures, failovers)),
               fo_med(st, offsetof(struct fo_figures, det50)),
               fo_med(st, offsetof(struct fo_figures, det99)),
               fo_med(st, offsetof(struct fo_figures, rec50)),
               fo_med(st, offsetof(struct fo_figures, rec99)));
        return 0;
    }
    printf("firewall, 2 instances, kill storm every %u ms (median of %d runs each):\n", kill_ms,
           REPS);
    printf("  healthy     %12.0f packets/s\n", pps_ok);
    printf("  kill storm  %12.0f packets/s  (%.0f failovers per run): ratio %.2f\n", pps_st,
           fo_med(st, offsetof(struct fo_figures, failovers)), pps_st / pps_ok);
    printf("  detection   p50 %7.2f ms   p99 %7.2f ms\n",
           fo_med(st, offsetof(struct fo_figures, det50)),
           fo_med(st, offsetof(struct fo_figures, det99)));
    printf("  recovery    p50 %7.2f ms   p99 %7.2f ms   (fault -> replacement on live traffic)\n",
           fo_med(st, offsetof(struct fo_figures, rec50)),
           fo_med(st, offsetof(struct fo_figures, rec99)));
    return 0;
}

static double med(double *v)
{
    double a = v[0], b = v[1], c = v[2];
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

static void median_figures(struct figures *runs, int nfs, struct figures *out)
{
    double v[REPS];
#define MED(field)                                                                                 \
    do {                                                                                           \
        for (int r = 0; r < REPS; r++)                                                             \
            v[r] = runs[r].field;                                                                  \
        out->field = med(v);                                                                       \
    } while (0)
    MED(pps);
    MED(p50);
    MED(p99);
    for (int i = 0; i < nfs; i++)
        MED(nf_p50[i]);
#undef MED
}

/* One chain's medians, FT and --no-ft. */
struct chain_result {
    int nfs;
    struct figures ft, no;
    double added_ns; /* per NF, FT minus --no-ft */
};

static int bench_one(const char *self, const char *dir, const char *trace, int nfs,
                     struct chain_result *res)
{
    char chain[4200];
    snprintf(chain, sizeof(chain), "%s/chain%d.yaml", dir, nfs);
    if (write_chain(chain, nfs, 1))
        return -1;
    struct figures ft[REPS], no[REPS];
    for (int r = 0; r < REPS; r++) /* alternate, so drift hits both */
        if (run_once(self, dir, chain, trace, false, nfs, &ft[r]) ||
            run_once(self, dir, chain, trace, true, nfs, &no[r]))
            return cli_error("bench: `rewind run` failed for the %d-NF chain", nfs), -1;
    res->nfs = nfs;
    median_figures(ft, nfs, &res->ft);
    median_figures(no, nfs, &res->no);
    double added = 0;
    for (int i = 0; i < nfs; i++)
        added += res->ft.nf_p50[i] - res->no.nf_p50[i];
    res->added_ns = added / nfs;
    return 0;
}

static const char *chain_name(int nfs)
{
    return nfs > 1 ? "firewall -> firewall" : "firewall";
}

static void print_chain(const struct chain_result *c)
{
    const struct figures *ft = &c->ft, *no = &c->no;
    printf("%d-NF chain (%s):\n", c->nfs, chain_name(c->nfs));
    printf("  %-6s %12s %14s %14s\n", "mode", "packets/s", "latency p50", "latency p99");
    printf("  %-6s %12.0f %11.1f us %11.1f us\n", "FT", ft->pps, ft->p50 / 1e3, ft->p99 / 1e3);
    printf("  %-6s %12.0f %11.1f us %11.1f us\n", "no-FT", no->pps, no->p50 / 1e3, no->p99 / 1e3);
    printf("  FT/no-FT throughput %.2f; per-NF median time %.2f us (FT) vs %.2f us (no-FT): "
           "%+.2f us per NF\n",
           ft->pps / no->pps, ft->nf_p50[0] / 1e3, no->nf_p50[0] / 1e3, c->added_ns / 1e3);
}

/* One object: {"packets", "runs", "chains": [...]}, the figures of print_chain. */
static void print_chains_json(uint64_t n, const struct chain_result *c, int count)
{
    printf("{\"packets\": %" PRIu64 ", \"runs\": %d, \"chains\": [", n, REPS);
    for (int i = 0; i < count; i++) {
        const struct figures *ft = &c[i].ft, *no = &c[i].no;
        printf("%s{\"chain\": \"%s\", \"nfs\": %d, \"ft_pps\": %.0f, \"noft_pps\": %.0f, "
               "\"ratio\": %.4g, \"nf_added_us\": %.3f, \"latency_us\": {\"p50\": %.1f, "
               "\"p99\": %.1f}, \"noft_latency_us\": {\"p50\": %.1f, \"p99\": %.1f}, "
               "\"nf_p50_us\": {\"ft\": %.3f, \"noft\": %.3f}}",
               i ? ", " : "", chain_name(c[i].nfs), c[i].nfs, ft->pps, no->pps, ft->pps / no->pps,
               c[i].added_ns / 1e3, ft->p50 / 1e3, ft->p99 / 1e3, no->p50 / 1e3, no->p99 / 1e3,
               ft->nf_p50[0] / 1e3, no->nf_p50[0] / 1e3);
    }
    printf("]}\n");
}

int cmd_bench_failover(int argc, char **argv)
{
    static const struct option opts[] = {{"packets", required_argument, 0, 'n'},
                                         {"kill-every", required_argument, 0, 'k'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    uint64_t n = 1000000, k = 50;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = true;
            continue;
        }
        if ((c == 'n' && !cli_parse_u64(optarg, &n) && n > 0) ||
            (c == 'k' && !cli_parse_u64(optarg, &k) && k > 0 && k < 100000))
            continue;
        FILE *f = c == 'h' ? stdout : stderr;
        fprintf(f, "usage: rewind bench failover [--packets N] [--kill-every MS] [--json]\n\n"
                   "A firewall chain with 2 instances, healthy and under `rewind chaos\n"
                   "--kill-every MS` (default 50), on the same synthetic trace (default 1000000\n"
                   "packets), median of 3 alternating runs: throughput ratio, detection and\n"
                   "recovery times (p50, p99). --json: one object with healthy_pps, storm_pps,\n"
                   "ratio, failovers, detection_ms and recovery_ms ({p50, p99}).\n");
        return c == 'h' ? EXIT_OK : EXIT_USAGE;
    }
    struct bench_env b;
    if (bench_env_open(&b, "fo", n))
        return EXIT_FAIL;
    if (!json)
        printf("failover benchmark, %" PRIu64 " packets of 64 bytes:\n", n);
    int rc = bench_failover(b.self, b.dir, b.trace, (unsigned)k, json);
    bench_env_close(&b);
    return rc ? EXIT_FAIL : EXIT_OK;
}

int cmd_bench_chain(int argc, char **argv)
{
    static const struct option opts[] = {{"packets", required_argument, 0, 'n'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    uint64_t n = 300000;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = true;
            continue;
        }
        if (c == 'n' && !cli_parse_u64(optarg, &n) && n > 0)
            continue;
        FILE *f = c == 'h' ? stdout : stderr;
        fprintf(f, "usage: rewind bench chain [--packets N] [--json]\n\n"
                   "Throughput and latency of a 1-NF and a 2-NF firewall chain, fault tolerant\n"
                   "vs --no-ft, on the same synthetic trace (64-byte UDP, flows that come and\n"
                   "go), median of 3 alternating runs of `rewind run`. Default 300000 packets.\n"
                   "--json: one object {packets, runs, chains: [{chain, nfs, ft_pps, noft_pps,\n"
                   "ratio, nf_added_us, latency_us {p50, p99}, noft_latency_us {p50, p99},\n"
                   "nf_p50_us {ft, noft}}]} (docs/benchmarks.md).\n");
        return c == 'h' ? EXIT_OK : EXIT_USAGE;
    }
    struct bench_env b;
    if (bench_env_open(&b, "chain", n))
        return EXIT_FAIL;
    if (!json)
        printf("chain benchmark, %" PRIu64 " packets of 64 bytes, median of %d runs each:\n", n,
               REPS);
    struct chain_result res[2];
    int rc = 0, done = 0;
    for (; done < 2 && !rc; done++) {
        rc = bench_one(b.self, b.dir, b.trace, done + 1, &res[done]);
        if (!rc && !json)
            print_chain(&res[done]);
    }
    if (!rc && json)
        print_chains_json(n, res, done);
    bench_env_close(&b);
    return rc ? EXIT_FAIL : EXIT_OK;
}

static int bench_env_open(struct bench_env *b, const char *tag, uint64_t n)
{
    snprintf(b->dir, sizeof(b->dir), "/tmp/rewind-bench-%s-XXXXXX", tag);
    ssize_t sl = readlink("/proc/self/exe", b->self, sizeof(b->self) - 1);
    if (sl <= 0 || !mkdtemp(b->dir))
        return cli_error("bench: cannot set up"), -1;
    b->self[sl] = '\0';
    snprintf(b->trace, sizeof(b->trace), "%s/trace.pcap", b->dir);
    if (write_trace(b->trace, n)) {
        bench_env_close(b);
        return cli_error("bench: cannot write %s", b->trace), -1;
    }
    return 0;
}

static void bench_env_close(struct bench_env *b)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        cli_error("bench: could not remove %s", b->dir);
}
