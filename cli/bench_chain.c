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

#define BENCH_NFS 8 /* NFs of a chain the benchmark reads figures for */

struct figures {
    double pps;
    double p50, p99; /* chain latency, ns */
    double nf_p50[BENCH_NFS];
    int nfs; /* NF entries in the report */
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

/* One `rewind run` of chain on trace (FT or --no-ft, at rate packets/s or as
 * fast as it goes) and its figures from report.json. */
static int run_once(const char *self, const char *dir, const char *chain, const char *trace,
                    bool noft, double rate, struct figures *f)
{
    char cmd[16384], pace[64] = "";
    if (rate > 0)
        snprintf(pace, sizeof(pace), "--rate %.0f", rate);
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s/out' && '%s' run '%s' --trace '%s' --out '%s/out' %s %s >/dev/null", dir,
             self, chain, trace, dir, noft ? "--no-ft" : "", pace);
    static char buf[65536];
    if (system(cmd) != 0 || read_report(dir, buf, sizeof(buf)))
        return -1;
    f->pps = json_num(buf, "\"throughput_pps\": ", 0);
    f->p50 = json_num(buf, "\"p50\": ", 0);
    f->p99 = json_num(buf, "\"p99\": ", 0);
    /* Each NF's own figure, from its entry of the report's "nfs" list: a bare
     * "the i-th p50" would pick other sections' (detection_ms...). */
    const char *nf = strstr(buf, "\"nfs\": [");
    f->nfs = 0;
    while (nf && (nf = strstr(nf + 1, "\"packets_in\": ")) && f->nfs < BENCH_NFS) {
        const char *lat = strstr(nf, "\"latency_ns\": ");
        double v = lat ? json_num(lat, "\"p50\": ", 0) : -1;
        if (v <= 0)
            return -1; /* a figure never 0 by accident */
        f->nf_p50[f->nfs++] = v;
    }
    return f->nfs > 0 && f->pps > 0 ? 0 : -1;
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

static void median_figures(struct figures *runs, struct figures *out)
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
    out->nfs = runs[0].nfs;
    for (int i = 0; i < out->nfs; i++)
        MED(nf_p50[i]);
#undef MED
}

/* One catalog chain's medians: FT and --no-ft at full load, FT at half of
 * --no-ft's rate. */
struct chain_result {
    char name[32];
    struct figures ft, no, half;
    double added_ns; /* per NF, FT minus --no-ft, averaged over the chain's NFs */
};

/* The chains of the catalog, in docs/chains/. */
static const char *const catalog[] = {"firewall", "nat", "portscan", "trojan", "lb", "full"};
#define NCATALOG (sizeof(catalog) / sizeof(catalog[0]))

/* The chain's own input (its `trace:` line, relative to the file it is in), or
 * the LAN capture of traces/external/ for a chain without one (lb). */
static int chain_input(const char *repo, const char *chain, char *out, size_t cap)
{
    char real[PATH_MAX], line[PATH_MAX + 64], *t = NULL;
    FILE *f = realpath(chain, real) ? fopen(real, "r") : NULL;
    if (!f)
        return -1;
    while (!t && fgets(line, sizeof(line), f)) {
        char *p = strstr(line, "trace:");
        if (p && line[strspn(line, " ")] != '#') {
            p += 6;
            p += strspn(p, " ");
            p[strcspn(p, " \r\n#")] = '\0';
            t = p;
        }
    }
    fclose(f);
    if (!t)
        return snprintf(out, cap, "%s/traces/external/real.pcap", repo) >= (int)cap ||
                       access(out, R_OK)
                   ? -1
                   : 0;
    char *slash = strrchr(real, '/');
    *slash = '\0';
    return snprintf(out, cap, "%s/%s", real, t) >= (int)cap ? -1 : 0;
}

/* Copies of in, each shifted in time past the one before, until n packets: the
 * chain's own traffic, long enough to measure, with its flows starting over in
 * every copy. */
int bench_repeat_trace(const char *in, const char *out, uint64_t n)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *src = pcap_open_offline_with_tstamp_precision(in, PCAP_TSTAMP_PRECISION_NANO, err);
    if (!src)
        return -1;
    pcap_t *dead = pcap_open_dead_with_tstamp_precision(pcap_datalink(src), 262144,
                                                        PCAP_TSTAMP_PRECISION_NANO);
    pcap_dumper_t *d = dead ? pcap_dump_open(dead, out) : NULL;
    struct pcap_pkthdr *h;
    const u_char *data;
    uint64_t written = 0, shift = 0, first = 0, last = 0;
    int rc = d ? 0 : -1;
    for (int copy = 0; !rc && written < n; copy++) {
        if (copy) {
            pcap_close(src);
            if (!(src =
                      pcap_open_offline_with_tstamp_precision(in, PCAP_TSTAMP_PRECISION_NANO, err)))
                return pcap_dump_close(d), pcap_close(dead), -1;
            shift += last - first + 1000000; /* 1 ms after the copy before */
        }
        uint64_t got = 0;
        int r;
        while (written < n && (r = pcap_next_ex(src, &h, &data)) == 1) {
            uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec;
            if (!copy && !got)
                first = ts;
            if (!copy)
                last = ts > last ? ts : last;
            uint64_t t = ts + shift;
            struct pcap_pkthdr o = *h;
            o.ts.tv_sec = (time_t)(t / 1000000000ull);
            o.ts.tv_usec = (suseconds_t)(t % 1000000000ull);
            pcap_dump((u_char *)d, &o, data);
            got++, written++;
        }
        if (!got)
            rc = -1; /* an empty trace would never reach n */
    }
    pcap_close(src);
    if (d)
        pcap_dump_close(d);
    if (dead)
        pcap_close(dead);
    return rc;
}

static int bench_one(const char *self, const char *dir, const char *repo, const char *name,
                     uint64_t n, struct chain_result *res)
{
    char chain[PATH_MAX + 64], input[PATH_MAX + 64], trace[PATH_MAX];
    if (snprintf(chain, sizeof(chain), "%s/docs/chains/%s.yaml", repo, name) >= (int)sizeof(chain))
        return cli_error("bench: path too long"), -1;
    snprintf(trace, sizeof(trace), "%s/%s.pcap", dir, name);
    if (chain_input(repo, chain, input, sizeof(input)))
        return cli_error("bench: %s: no input trace (for lb: make setup fetches "
                         "traces/external/real.pcap)",
                         chain),
               -1;
    if (bench_repeat_trace(input, trace, n))
        return cli_error("bench: cannot make %s from %s", trace, input), -1;
    struct figures ft[REPS], no[REPS], half[REPS];
    for (int r = 0; r < REPS; r++) /* alternate, so drift hits both */
        if (run_once(self, dir, chain, trace, false, 0, &ft[r]) ||
            run_once(self, dir, chain, trace, true, 0, &no[r]))
            return cli_error("bench: `rewind run` of %s failed", chain), -1;
    snprintf(res->name, sizeof(res->name), "%s", name);
    median_figures(ft, &res->ft);
    median_figures(no, &res->no);
    for (int r = 0; r < REPS; r++)
        if (run_once(self, dir, chain, trace, false, res->no.pps / 2, &half[r]))
            return cli_error("bench: `rewind run --rate` of %s failed", chain), -1;
    median_figures(half, &res->half);
    int nfs = res->ft.nfs < res->no.nfs ? res->ft.nfs : res->no.nfs;
    double added = 0;
    for (int i = 0; i < nfs; i++)
        added += res->ft.nf_p50[i] - res->no.nf_p50[i];
    res->added_ns = nfs ? added / nfs : 0;
    return 0;
}

static void print_chain(const struct chain_result *c)
{
    const struct figures *ft = &c->ft, *no = &c->no, *h = &c->half;
    printf("%s (%d NFs):\n", c->name, ft->nfs);
    printf("  %-13s %12s %14s %14s\n", "mode", "packets/s", "latency p50", "latency p99");
    printf("  %-13s %12.0f %11.1f us %11.1f us\n", "FT", ft->pps, ft->p50 / 1e3, ft->p99 / 1e3);
    printf("  %-13s %12.0f %11.1f us %11.1f us\n", "no-FT", no->pps, no->p50 / 1e3, no->p99 / 1e3);
    printf("  %-13s %12.0f %11.1f us %11.1f us\n", "FT, half rate", h->pps, h->p50 / 1e3,
           h->p99 / 1e3);
    printf("  FT/no-FT throughput %.2f; each NF's median time per packet FT minus no-FT: "
           "%+.2f us\n",
           ft->pps / no->pps, c->added_ns / 1e3);
}

static void json_lat(const char *key, const struct figures *f)
{
    printf(", \"%s\": {\"p50\": %.1f, \"p99\": %.1f}", key, f->p50 / 1e3, f->p99 / 1e3);
}

/* One object: {"packets", "runs", "chains": [...]}, the figures of print_chain. */
static void print_chains_json(uint64_t n, const struct chain_result *c, int count)
{
    printf("{\"packets\": %" PRIu64 ", \"runs\": %d, \"chains\": [", n, REPS);
    for (int i = 0; i < count; i++) {
        const struct figures *ft = &c[i].ft, *no = &c[i].no;
        printf("%s{\"chain\": \"%s\", \"nfs\": %d, \"ft_pps\": %.0f, \"noft_pps\": %.0f, "
               "\"ratio\": %.4g, \"nf_added_us\": %.3f",
               i ? ", " : "", c[i].name, ft->nfs, ft->pps, no->pps, ft->pps / no->pps,
               c[i].added_ns / 1e3);
        json_lat("latency_us", ft);
        json_lat("latency_half_rate_us", &c[i].half);
        json_lat("noft_latency_us", no);
        printf(", \"nf_p50_us\": {\"ft\": [");
        for (int k = 0; k < ft->nfs; k++)
            printf("%s%.3f", k ? ", " : "", ft->nf_p50[k] / 1e3);
        printf("], \"noft\": [");
        for (int k = 0; k < no->nfs; k++)
            printf("%s%.3f", k ? ", " : "", no->nf_p50[k] / 1e3);
        printf("]}}");
    }
    printf("]}\n");
}

/* The source tree the binary was built from (it holds docs/chains/): the first
 * directory above the binary with docs/chains/firewall.yaml, or RW_SRC. */
int bench_find_repo(const char *self, char *out, size_t cap)
{
    const char *env = getenv("RW_SRC");
    char probe[PATH_MAX + 64];
    if (env && snprintf(out, cap, "%s", env) < (int)cap) {
        snprintf(probe, sizeof(probe), "%s/docs/chains/firewall.yaml", out);
        if (!access(probe, R_OK))
            return 0;
    }
    snprintf(out, cap, "%s", self);
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(out, '/');
        if (!slash || slash == out)
            break;
        *slash = '\0';
        snprintf(probe, sizeof(probe), "%s/docs/chains/firewall.yaml", out);
        if (!access(probe, R_OK))
            return 0;
    }
    return -1;
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
                                         {"chain", required_argument, 0, 'c'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    uint64_t n = 300000;
    bool json = false, want[NCATALOG] = {false}, any = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') {
            json = true;
            continue;
        }
        if (c == 'n' && !cli_parse_u64(optarg, &n) && n > 0)
            continue;
        size_t k = 0;
        while (c == 'c' && k < NCATALOG && strcmp(optarg, catalog[k]))
            k++;
        if (c == 'c' && k < NCATALOG) {
            want[k] = any = true;
            continue;
        }
        if (c == 'c')
            cli_error("bench chain: no chain '%s' in the catalog", optarg);
        FILE *f = c == 'h' ? stdout : stderr;
        fprintf(f,
                "usage: rewind bench chain [--packets N] [--chain NAME]... [--json]\n\n"
                "Every chain of the catalog (docs/chains: firewall, nat, portscan, trojan, lb,\n"
                "full), fault tolerant vs --no-ft, on its own input trace repeated with\n"
                "shifted time to N packets (default 300000; lb: traces/external/real.pcap),\n"
                "median of 3 alternating runs of `rewind run`, then FT again at half of\n"
                "--no-ft's rate (--rate). --chain NAME: only that chain (repeatable).\n"
                "--json: one object {packets, runs, chains: [{chain, nfs, ft_pps, noft_pps,\n"
                "ratio, nf_added_us, latency_us {p50, p99}, latency_half_rate_us,\n"
                "noft_latency_us, nf_p50_us {ft: [...], noft: [...]}}]} (docs/benchmarks.md).\n");
        return c == 'h' ? EXIT_OK : EXIT_USAGE;
    }
    struct bench_env b;
    char repo[PATH_MAX];
    if (bench_env_open(&b, "chain", 0))
        return EXIT_FAIL;
    if (bench_find_repo(b.self, repo, sizeof(repo))) {
        bench_env_close(&b);
        return cli_error("bench chain: cannot find docs/chains/ above %s (set RW_SRC to the "
                         "source tree)",
                         b.self),
               EXIT_FAIL;
    }
    if (!json)
        printf("chain benchmark: the catalog's chains on their own traces repeated to %" PRIu64
               " packets, median of %d runs each:\n",
               n, REPS);
    struct chain_result res[NCATALOG];
    int rc = 0, done = 0;
    for (size_t k = 0; k < NCATALOG && !rc; k++) {
        if (any && !want[k])
            continue;
        if (!json)
            fflush(stdout);
        rc = bench_one(b.self, b.dir, repo, catalog[k], n, &res[done]);
        if (!rc && !json)
            print_chain(&res[done]);
        done += !rc;
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
