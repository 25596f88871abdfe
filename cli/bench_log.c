/*
 * bench_log.c - `rewind bench log`: the logger's speed as ratios to baselines
 * measured in the same run, on the same records:
 *
 *  1. ingest: log_writer_append of N synthetic packets (64 B and 1500 B, many
 *     flows) per durability mode, against a raw LMDB append of the same records
 *     (one put per record, MDB_APPEND, same group-commit window and sync mode).
 *     Both run on one core in this thread: this is the logger thread's budget.
 *  2. export: a one-flow query of the log with `rewind replay --flow` against
 *     `tcpdump -r FULL.pcap -w OUT FILTER` over the same packets, both timed as
 *     commands; for flows with lifetimes (as in real traffic) and for the worst
 *     case, every flow spread evenly over the whole capture.
 *  3. queries: host, subnet, port and protocol filters on real traffic at 1 M and
 *     8 M packets against tcpdump (bench_log_query.c).
 *
 * The figures are measured into structs first, then printed as text or, with
 * --json, as one object (docs/benchmarks.md).
 */
#include <getopt.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "cli.h"
#include "log.h"
#include "replay.h"

#define BENCH_FLOWS 4096

struct bench_pkts {
    uint64_t n;
    uint32_t size;
    uint8_t *data; /* n * size bytes */
};

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Which flow packet i belongs to. Uniform: every flow spread over the whole
 * capture (the worst case for any block index). Sessions: 64 flows live at a
 * time, each for 2048 packets, as connections come and go in real traffic. */
enum flow_mix { MIX_UNIFORM, MIX_SESSIONS };

static uint32_t flow_of(enum flow_mix mix, uint64_t i, uint64_t *seed)
{
    uint32_t r = (uint32_t)xorshift(seed);
    if (mix == MIX_UNIFORM)
        return r % BENCH_FLOWS;
    return (uint32_t)((i / 2048) * 64 + r % 64) % 65536;
}

/* Ethernet/IPv4/UDP packets; payload pseudo-random. */
static int make_pkts(struct bench_pkts *b, uint64_t n, uint32_t size, enum flow_mix mix)
{
    b->n = n;
    b->size = size;
    b->data = malloc(n * size);
    if (!b->data)
        return -1;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *p = b->data + i * size;
        uint32_t f = flow_of(mix, i, &seed);
        memset(p, 0, 42);
        memcpy(p, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00", 14);
        p[14] = 0x45;
        p[16] = (uint8_t)((size - 14) >> 8), p[17] = (uint8_t)(size - 14);
        p[22] = 64, p[23] = 17;
        memcpy(p + 26, (uint8_t[]){10, 0, (uint8_t)(f >> 8), (uint8_t)f}, 4);
        memcpy(p + 30, (uint8_t[]){10, 1, 0, 1}, 4);
        p[34] = (uint8_t)((1024 + f) >> 8), p[35] = (uint8_t)(1024 + f);
        p[36] = 0x00, p[37] = 53;
        for (uint32_t j = 42; j < size; j += 8) {
            uint64_t r = xorshift(&seed);
            memcpy(p + j, &r, size - j < 8 ? size - j : 8);
        }
    }
    return 0;
}

static struct log_rec rec_of(const struct bench_pkts *b, uint64_t i)
{
    struct log_rec r = {.meta = {.clock = i, .ts_ns = 1795343910000000000ull + i * 1000},
                        .orig_len = b->size,
                        .cap_len = b->size,
                        .data = b->data + i * b->size};
    return r;
}

static double run_writer(const char *dir, const struct bench_pkts *b, enum rw_durability d)
{
    struct log_opts o;
    log_opts_default(&o);
    o.durability = d;
    o.segment_bytes = 4ull << 30;
    struct log_writer *w;
    struct rw_err e;
    if (log_writer_open(dir, &o, &w, &e))
        return cli_error("bench: %s", e.msg), -1;
    uint64_t t0 = rw_now_ns();
    for (uint64_t i = 0; i < b->n; i++) {
        struct log_rec r = rec_of(b, i);
        if (log_writer_append(w, &r, &e) || ((i & 255) == 0 && log_writer_tick(w, rw_now_ns(), &e)))
            return cli_error("bench: %s", e.msg), -1;
    }
    if (log_writer_close(w, &e))
        return cli_error("bench: %s", e.msg), -1;
    return (double)(rw_now_ns() - t0) / 1e9;
}

/* The baseline: the same records, one LMDB put each, committed on the same 1 ms
 * group-commit window, with the same sync mode. */
static double run_raw(const char *dir, const struct bench_pkts *b, enum rw_durability d)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    mkdir(dir, 0755);
    mdb_env_create(&env);
    mdb_env_set_mapsize(env, 8ull << 30);
    if (mdb_env_open(env, dir, d == RW_DUR_POWER ? 0 : MDB_NOSYNC, 0644))
        return -1;
    uint64_t t0 = rw_now_ns(), last = t0;
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, NULL, 0, &dbi);
    uint8_t rec[64 + 2048];
    for (uint64_t i = 0; i < b->n; i++) {
        uint8_t k[8];
        rw_put_be64(k, i);
        /* clock, ts, lengths, bytes: what a log record carries */
        uint64_t ts = 1795343910000000000ull + i * 1000;
        memcpy(rec, &ts, 8);
        memcpy(rec + 8, &b->size, 4);
        memcpy(rec + 12, b->data + i * b->size, b->size);
        MDB_val kv = {8, k}, vv = {12 + b->size, rec};
        if (mdb_put(txn, dbi, &kv, &vv, MDB_APPEND))
            return -1;
        if ((i & 255) == 0 && rw_now_ns() - last >= 1000000) {
            mdb_txn_commit(txn);
            mdb_txn_begin(env, NULL, 0, &txn);
            last = rw_now_ns();
        }
    }
    mdb_txn_commit(txn);
    double s = (double)(rw_now_ns() - t0) / 1e9;
    mdb_env_close(env);
    return s;
}

static void rm_tree(const char *d)
{
    char cmd[8300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    if (system(cmd) != 0)
        cli_error("bench: could not remove %s", d);
}

#define BENCH_REPS 3

static double median3(const double *v)
{
    double a = v[0], b = v[1], c = v[2];
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

/* One durability mode of one packet size: medians, rates and their ratio. */
struct ingest_row {
    uint32_t size;
    uint64_t n;
    enum rw_durability dur;
    double pps, mbs, raw_pps, raw_mbs, ratio;
};

#define LOG_DURS (RW_DUR_POWER - RW_DUR_NONE + 1)

static int bench_ingest(const char *tmp, uint64_t n, uint32_t size, struct ingest_row *rows)
{
    struct bench_pkts b;
    if (make_pkts(&b, n, size, MIX_UNIFORM))
        return -1;
    for (int d = RW_DUR_NONE; d <= RW_DUR_POWER; d++) {
        double ta[BENCH_REPS], tr[BENCH_REPS];
        for (int rep = 0; rep < BENCH_REPS; rep++) { /* alternate, so drift hits both */
            char a[4096], r[4096];
            snprintf(a, sizeof(a), "%s/log-%u-%d", tmp, size, d);
            snprintf(r, sizeof(r), "%s/raw-%u-%d", tmp, size, d);
            ta[rep] = run_writer(a, &b, (enum rw_durability)d);
            tr[rep] = run_raw(r, &b, (enum rw_durability)d);
            rm_tree(a);
            rm_tree(r);
            if (ta[rep] <= 0 || tr[rep] <= 0) {
                free(b.data);
                return -1;
            }
        }
        double mta = median3(ta), mtr = median3(tr);
        double mb = (double)n * size / 1e6;
        rows[d - RW_DUR_NONE] = (struct ingest_row){.size = size,
                                                    .n = n,
                                                    .dur = (enum rw_durability)d,
                                                    .pps = (double)n / mta,
                                                    .mbs = mb / mta,
                                                    .raw_pps = (double)n / mtr,
                                                    .raw_mbs = mb / mtr,
                                                    .ratio = mtr / mta};
    }
    free(b.data);
    return 0;
}

static void print_ingest(const struct ingest_row *rows)
{
    printf("ingest, %u-byte packets, %" PRIu64 " packets (median of %d alternating runs):\n",
           rows[0].size, rows[0].n, BENCH_REPS);
    printf("  %-8s %12s %10s %12s %10s %8s\n", "mode", "rewind pps", "MB/s", "raw LMDB pps", "MB/s",
           "ratio");
    for (int i = 0; i < LOG_DURS; i++)
        printf("  %-8s %12.0f %10.1f %12.0f %10.1f %8.2f\n", log_durability_name(rows[i].dur),
               rows[i].pps, rows[i].mbs, rows[i].raw_pps, rows[i].raw_mbs, rows[i].ratio);
}

static int write_pcap(const char *path, const struct bench_pkts *b)
{
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 65535);
    pcap_dumper_t *d = pcap_dump_open(dead, path);
    if (!d)
        return -1;
    for (uint64_t i = 0; i < b->n; i++) {
        struct log_rec r = rec_of(b, i);
        struct pcap_pkthdr h = {.caplen = b->size, .len = b->size};
        h.ts.tv_sec = (time_t)(r.meta.ts_ns / 1000000000ull);
        h.ts.tv_usec = (suseconds_t)(r.meta.ts_ns % 1000000000ull / 1000);
        pcap_dump((u_char *)d, &h, r.data);
    }
    pcap_dump_close(d);
    pcap_close(dead);
    return 0;
}

/* Wall time of a shell command, best of three. */
double bench_time_cmd(const char *cmd)
{
    double best = 1e30;
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = rw_now_ns();
        if (system(cmd) != 0)
            return -1;
        double t = (double)(rw_now_ns() - t0) / 1e9;
        best = t < best ? t : best;
    }
    return best;
}

int bench_count_pcap(const char *path)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(path, err);
    if (!p)
        return -1;
    struct pcap_pkthdr *h;
    const u_char *d;
    int n = 0;
    while (pcap_next_ex(p, &h, &d) == 1)
        n++;
    pcap_close(p);
    return n;
}

/* The whole path: DPDK net_pcap -> root (clock, reservation) -> logger thread;
 * ratio: to the raw LMDB append in power mode. */
struct e2e_result {
    double pps, ratio;
};

static int bench_end_to_end(const char *self, const char *pcap, const char *tmp, uint64_t n,
                            double raw_power_pps, struct e2e_result *res)
{
    char cmd[16384];
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s/e2e' && '%s' log ingest --log '%s/e2e' --trace '%s' --durability power "
             "-q",
             tmp, self, tmp, pcap);
    double t = bench_time_cmd(cmd);
    if (t <= 0)
        return cli_error("bench: end-to-end ingest failed"), -1;
    res->pps = (double)n / t;
    res->ratio = res->pps / raw_power_pps;
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/e2e", tmp);
    rm_tree(dir);
    return 0;
}

static void print_e2e(const struct e2e_result *e)
{
    printf("end to end, `rewind log ingest --trace` (DPDK net_pcap, power), 64-byte packets:\n");
    printf("  %.0f pps including process start and trace scan; %.2f of the raw LMDB append "
           "(power) above\n",
           e->pps, e->ratio);
}

/* Both sides run as commands on the same packets: `rewind replay --flow` on the
 * log and `tcpdump -r -w FILTER` on the same capture; both must select the same
 * number of packets for the figure to count. */
struct export_result {
    enum flow_mix mix;
    uint64_t n;
    int matched;
    double ours_s, tcpdump_s, speedup;
};

/* With session flows it also measures end to end (into *e2e) on the same capture. */
static int bench_export(const char *self, const char *tmp, uint64_t n, enum flow_mix mix,
                        double raw_power_pps, struct export_result *res, struct e2e_result *e2e)
{
    struct bench_pkts b;
    char logdir[4096], pcap[4096], out1[4096], out2[4096], cmd[16384];
    if (make_pkts(&b, n, 64, mix))
        return -1;
    snprintf(logdir, sizeof(logdir), "%s/export-log", tmp);
    snprintf(pcap, sizeof(pcap), "%s/full.pcap", tmp);
    snprintf(out1, sizeof(out1), "%s/flow.pcap", tmp);
    snprintf(out2, sizeof(out2), "%s/tcpdump.pcap", tmp);
    if (run_writer(logdir, &b, RW_DUR_PROCESS) < 0 || write_pcap(pcap, &b)) {
        free(b.data);
        return -1;
    }
    free(b.data);
    /* flow 7 of make_pkts: 10.0.0.7:1031 <-> 10.1.0.1:53 */
    snprintf(cmd, sizeof(cmd),
             "'%s' replay '%s' --to-pcap '%s' --flow 'udp 10.0.0.7:1031 10.1.0.1:53' 2>/dev/null",
             self, logdir, out1);
    double ours = bench_time_cmd(cmd);
    snprintf(cmd, sizeof(cmd),
             "tcpdump -r '%s' -w '%s' 'udp and host 10.0.0.7 and port 1031 and host 10.1.0.1 "
             "and port 53' 2>/dev/null",
             pcap, out2);
    double td = bench_time_cmd(cmd);
    if (mix == MIX_SESSIONS && bench_end_to_end(self, pcap, tmp, n, raw_power_pps, e2e))
        return -1;
    int a = bench_count_pcap(out1), t = bench_count_pcap(out2);
    if (ours <= 0 || td <= 0 || a < 0 || a != t)
        return cli_error("bench: export failed or disagrees with tcpdump (%d vs %d packets)", a, t),
               -1;
    *res = (struct export_result){
        .mix = mix, .n = n, .matched = a, .ours_s = ours, .tcpdump_s = td, .speedup = td / ours};
    rm_tree(logdir);
    unlink(pcap);
    unlink(out1);
    unlink(out2);
    return 0;
}

static void print_export(const struct export_result *x)
{
    printf("one-flow export from %" PRIu64 " packets, %s flows (%d packets match):\n", x->n,
           x->mix == MIX_UNIFORM ? "uniform (worst case)" : "session", x->matched);
    printf("  rewind replay --flow %.4f s, tcpdump -r -w FILTER %.4f s, speed-up %.1fx\n",
           x->ours_s, x->tcpdump_s, x->speedup);
}

/* One object: {"packets", "runs", "ingest": [...], "end_to_end": {...}, "export": [...]},
 * the figures of the text output. */
static void print_log_json(uint64_t n, const struct ingest_row *in, int nin,
                           const struct e2e_result *e2e, const struct export_result *ex, int nex,
                           const struct bench_query_row *q, int nq,
                           const struct bench_pacing_row *pr, int npr)
{
    printf("{\"packets\": %" PRIu64 ", \"runs\": %d, \"ingest\": [", n, BENCH_REPS);
    for (int i = 0; i < nin; i++)
        printf("%s{\"bytes\": %u, \"packets\": %" PRIu64 ", \"durability\": \"%s\", "
               "\"pps\": %.0f, \"mb_s\": %.1f, \"raw_pps\": %.0f, \"raw_mb_s\": %.1f, "
               "\"ratio\": %.4g}",
               i ? ", " : "", in[i].size, in[i].n, log_durability_name(in[i].dur), in[i].pps,
               in[i].mbs, in[i].raw_pps, in[i].raw_mbs, in[i].ratio);
    printf("], \"end_to_end\": {\"pps\": %.0f, \"ratio\": %.4g}, \"export\": [", e2e->pps,
           e2e->ratio);
    for (int i = 0; i < nex; i++)
        printf("%s{\"flows\": \"%s\", \"packets\": %" PRIu64 ", \"matched\": %d, "
               "\"rewind_s\": %.6f, \"tcpdump_s\": %.6f, \"speedup\": %.4g}",
               i ? ", " : "", ex[i].mix == MIX_UNIFORM ? "uniform" : "session", ex[i].n,
               ex[i].matched, ex[i].ours_s, ex[i].tcpdump_s, ex[i].speedup);
    printf("], \"queries\": [");
    for (int i = 0; i < nq; i++)
        printf("%s{\"packets\": %" PRIu64 ", \"kind\": \"%s\", \"filter\": \"%s\", "
               "\"matched\": %d, \"blocks_read\": %" PRIu64 ", \"blocks_total\": %" PRIu64 ", "
               "\"rewind_s\": %.6f, \"tcpdump_s\": %.6f, \"speedup\": %.4g}",
               i ? ", " : "", q[i].packets, q[i].kind, q[i].filter, q[i].matched, q[i].blocks_read,
               q[i].blocks_total, q[i].rewind_s, q[i].tcpdump_s, q[i].speedup);
    printf("], \"pacing\": [");
    for (int i = 0; i < npr; i++)
        printf("%s{\"speed\": %g, \"packets\": %" PRIu64 ", \"elapsed_s\": %.6f, "
               "\"scheduled_s\": %.6f, \"drift_ms\": %.3f, \"drift_pct\": %.4f, "
               "\"late\": %" PRIu64 ", \"max_late_ms\": %.3f}",
               i ? ", " : "", pr[i].speed, pr[i].packets, pr[i].elapsed_s, pr[i].scheduled_s,
               pr[i].drift_ms, pr[i].drift_pct, pr[i].late, pr[i].max_late_ms);
    printf("]}\n");
}

/* "1000000,8000000" into at most max sizes; "0" or "" gives none. */
static int parse_sizes(const char *s, uint64_t *out, int max, int *n)
{
    *n = 0;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (cli_parse_u64(t, &v) || *n == max)
            return -1;
        if (v)
            out[(*n)++] = v;
    }
    return 0;
}

#define MAX_QUERY_SIZES 4

int cmd_bench_log(int argc, char **argv)
{
    static const struct option opts[] = {
        {"packets", required_argument, 0, 'n'}, {"query-packets", required_argument, 0, 'Q'},
        {"trace", required_argument, 0, 't'},   {"pacing-packets", required_argument, 0, 'P'},
        {"dir", required_argument, 0, 'd'},     {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    uint64_t n = 1000000, qsizes[MAX_QUERY_SIZES] = {1000000, 8000000};
    int nq = 2;
    uint64_t npace = 100000;
    const char *dir = NULL, *trace = NULL;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'n' && !cli_parse_u64(optarg, &n) && n > 0)
            continue;
        if (c == 'Q' && !parse_sizes(optarg, qsizes, MAX_QUERY_SIZES, &nq))
            continue;
        if (c == 'P' && !cli_parse_u64(optarg, &npace))
            continue;
        if (c == 'j') {
            json = true;
            continue;
        }
        if (c == 'd' || c == 't') {
            *(c == 'd' ? &dir : &trace) = optarg;
            continue;
        }
        FILE *f = c == 'h' ? stdout : stderr;
        fprintf(f,
                "usage: rewind bench log [--packets N] [--query-packets N[,N...]] [--trace PCAP]\n"
                "                        [--pacing-packets N] [--dir DIR] [--json]\n\n"
                "Ingest rate of the logger vs a raw LMDB append of the same records (64 and\n"
                "1500-byte packets, each durability mode), a one-flow export vs tcpdump, and\n"
                "host, subnet, port and protocol queries vs tcpdump on real traffic.\n"
                "Build with -DCMAKE_BUILD_TYPE=Release for meaningful numbers.\n"
                "  --packets N          synthetic packets (default 1000000; N/4 of 1500 bytes)\n"
                "  --query-packets L    sizes of the query logs (default 1000000,8000000; 0:\n"
                "                       no queries)\n"
                "  --trace PCAP         the real traffic, repeated and shifted in time to each\n"
                "                       size (default traces/external/real.pcap, the LAN hour)\n"
                "  --pacing-packets N   packets of the paced replays at x1 and x10 (default\n"
                "                       100000; 0: none)\n"
                "  --dir DIR            where the logs and captures go (default: a new\n"
                "                       /tmp/rewind-bench-XXXXXX)\n"
                "--json: one object {packets, runs, ingest: [{bytes, packets, durability,\n"
                "pps, mb_s, raw_pps, raw_mb_s, ratio}], end_to_end {pps, ratio},\n"
                "export: [{flows, packets, matched, rewind_s, tcpdump_s, speedup}],\n"
                "queries: [{packets, kind, filter, matched, blocks_read, blocks_total,\n"
                "rewind_s, tcpdump_s, speedup}], pacing: [{speed, packets, elapsed_s,\n"
                "scheduled_s, drift_ms, drift_pct, late, max_late_ms}]} (docs/benchmarks.md).\n");
        return c == 'h' ? EXIT_OK : EXIT_USAGE;
    }
    char self[4096], repo[4096], real[4200];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0)
        return cli_error("bench: cannot find the rewind binary"), EXIT_FAIL;
    self[sl] = '\0';
    if (nq && !trace) {
        if (bench_find_repo(self, repo, sizeof(repo)))
            return cli_error("bench: cannot find the source tree for traces/external/real.pcap "
                             "(set RW_SRC, or pass --trace)"),
                   EXIT_FAIL;
        snprintf(real, sizeof(real), "%s/traces/external/real.pcap", repo);
        trace = real;
    }
    if (nq && access(trace, R_OK))
        return cli_error("bench: cannot read %s (tools/setup.sh fetches the LAN hour)", trace),
               EXIT_FAIL;
    char tmpl[] = "/tmp/rewind-bench-XXXXXX";
    char *tmp = dir ? (char *)dir : mkdtemp(tmpl);
    if (!tmp)
        return cli_error("bench: cannot make a scratch directory"), EXIT_FAIL;
    struct ingest_row in[2 * LOG_DURS];
    struct e2e_result e2e = {0};
    struct export_result ex[2];
    int per = bench_log_nqueries();
    struct bench_query_row *qrows = calloc((size_t)(nq * per + 1), sizeof(*qrows));
    if (!qrows)
        return cli_error("bench: out of memory"), EXIT_FAIL;
    int rc = bench_ingest(tmp, n, 64, in);
    if (!rc && !json)
        print_ingest(in);
    if (!rc)
        rc = bench_ingest(tmp, n / 4 ? n / 4 : 1, 1500, in + LOG_DURS);
    if (!rc && !json)
        print_ingest(in + LOG_DURS);
    /* ratios to the raw append of 64-byte packets, power */
    double raw_power_pps = in[RW_DUR_POWER - RW_DUR_NONE].raw_pps;
    if (!rc)
        rc = bench_export(self, tmp, n, MIX_SESSIONS, raw_power_pps, &ex[0], &e2e);
    if (!rc && !json) {
        print_e2e(&e2e);
        print_export(&ex[0]);
    }
    if (!rc)
        rc = bench_export(self, tmp, n, MIX_UNIFORM, raw_power_pps, &ex[1], NULL);
    if (!rc && !json)
        print_export(&ex[1]);
    for (int i = 0; i < nq && !rc; i++)
        rc = bench_log_queries(self, trace, tmp, qsizes[i], qrows + i * per, !json);
    struct bench_pacing_row pace[BENCH_PACING_SPEEDS];
    int npr = npace ? BENCH_PACING_SPEEDS : 0;
    if (!rc && npace)
        rc = bench_log_pacing(self, tmp, npace, pace, !json);
    if (!rc && json)
        print_log_json(n, in, 2 * LOG_DURS, &e2e, ex, 2, qrows, nq * per, pace, npr);
    free(qrows);
    if (!dir)
        rm_tree(tmp);
    return rc ? EXIT_FAIL : EXIT_OK;
}
