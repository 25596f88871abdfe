/*
 * cmd_run.c - `rewind run CHAIN.yaml`, `rewind chaos CHAIN.yaml` (the same run
 * with a fault schedule) and the internal `rewind worker`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pcap/pcap.h>
#include <sys/stat.h>

#include "cli.h"
#include "failover.h"
#include "nfworker.h"
#include "replay.h"

/* Set by SIGINT/SIGTERM/SIGHUP to the signal's number: the run drains and
 * finishes (see cmd_log.c); a trace run cut short exits 128 + that number, as a
 * shell reports a command killed by it. The first signal is the one reported:
 * a second (an impatient ^C after a TERM) must not change the exit code under
 * the message that named the first. SIGHUP (a closed terminal, a supervisor's
 * reload) used to kill the run by default, leaving no report. */
static volatile sig_atomic_t run_stop;

static void on_run_signal(int sig)
{
    if (!run_stop)
        run_stop = sig;
}

static const char run_options[] =
    "  --trace PCAP, --port DEVARGS   override the chain's input\n"
    "  --from-log DIR [selection]     the input: packets of a rewind log (a run's DIR/log,\n"
    "                                 or `log ingest`'s), with their clocks and arrival\n"
    "                                 times; selection: --since/--until/--last,\n"
    "                                 --from-clock/--to-clock, --flow, --filter (as for\n"
    "                                 `rewind replay`). Over a run's own input log the\n"
    "                                 output is what `rewind verify` finds equivalent\n"
    "  --out DIR                      output directory (default: out); one that holds\n"
    "                                 a previous run is refused\n"
    "  --force                        replace the previous run in --out (its log,\n"
    "                                 output, alerts, reports and store inside it)\n"
    "  --no-ft                        traditional NFs: state local to each process, no\n"
    "                                 log, no clock checks, no failover (the baseline)\n"
    "  --progress                     progress lines when stderr is not a terminal\n"
    "  --heartbeat-ms N               check workers' heartbeats every N ms (100)\n"
    "  --heartbeat-misses N           a worker that misses N checks in a row is hung:\n"
    "                                 it is killed and its slot failed over (20)\n"
    "  --spares N                     hot spares kept ready for failover (2)\n"
    "  --rate PPS                     pace the input to PPS packets per second\n"
    "  --max-in-flight N              clocks the chain may hold between the root and\n"
    "                                 its exit; above it the input waits (65536; FT)\n"
    "  --stragglers ACTION            clone, restart or off: what is done about a slow\n"
    "                                 worker, instead of the chain's `stragglers:`\n"
    "                                 (off while a debugger holds workers: they look slow)\n"
    "  --no-dedup                     debug: no duplicate suppression (shows what it\n"
    "                                 prevents: failovers then duplicate output)\n";

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: rewind run CHAIN.yaml [--trace PCAP | --port DEVARGS] [--out DIR] [--no-ft] "
            "[options] [-- EAL args]\n\n"
            "Runs a chain of NFs (docs/chain-file.md): the root splitter and the logger in this\n"
            "process, one worker process per NF instance, the sink. Runs until the input ends\n"
            "(or SIGINT/SIGTERM/SIGHUP for a port) and every packet has left the chain or been\n"
            "dropped. Writes DIR/output/ (a log: `rewind replay DIR/output --to-pcap F`),\n"
            "DIR/alerts.json, DIR/report.json, and with FT the input log DIR/log/ and the\n"
            "store. A worker that dies or hangs is replaced by a hot spare, which replays\n"
            "its slot from the log (report.json: failovers, detection and recovery times).\n\n"
            "%s\n"
            "Exit: 0 ok; 1 the run failed (a worker died with --no-ft or could not be\n"
            "replaced, I/O, DPDK); 2 usage, a bad chain file, or --out holds a previous run;\n"
            "3 the trace is damaged or not a capture, or the NFs' final state breaks an\n"
            "invariant (a state op applied twice or lost: DIR/state.json); 4 out of disk\n"
            "space, or the store is full; 128+N a trace run stopped by signal N (SIGINT,\n"
            "SIGTERM, SIGHUP) before the end of its trace (report.json: \"interrupted\": true).\n"
            "A missing trace exits 1; a trace that is not a regular file (a FIFO) exits 2.\n",
            run_options);
}

static void chaos_usage(FILE *f)
{
    fprintf(f,
            "usage: rewind chaos CHAIN.yaml --trace PCAP --out DIR [--kill-every MS]\n"
            "       [--stall-every MS --stall-ms N] [--slow 'NF[I]:FACTOR[:MS]']\n"
            "       [--slow-every MS [--slow-factor F]] [--seed S] [--poison BPF]\n"
            "       [run options] [-- EAL args]\n\n"
            "Runs the chain like `rewind run` while killing (SIGKILL) a random worker every\n"
            "--kill-every ms and stopping one (SIGSTOP, then SIGCONT after --stall-ms) every\n"
            "--stall-every ms. Victims are drawn from a generator seeded by --seed. Writes\n"
            "DIR/chaos.json (every fault: time, NF, instance, pid) besides what run writes.\n"
            "Check the result against a fault-free run with `rewind verify REF DIR`.\n"
            "A short trace finishes before many faults land: slow it with --rate.\n\n"
            "  --kill-every MS     SIGKILL a random worker every MS ms\n"
            "  --stall-every MS    SIGSTOP a random worker every MS ms ...\n"
            "  --stall-ms N        ... for N ms (default 50; longer than the heartbeat\n"
            "                      budget, it is a hang: killed and failed over)\n"
            "  --slow NF[I]:FACTOR[:MS]\n"
            "                      make that worker FACTOR times slower (2..1000) for the\n"
            "                      whole run, or for its first MS ms: SIGSTOP/SIGCONT on a\n"
            "                      FACTOR ms cycle, 1 ms running; it keeps its heartbeat,\n"
            "                      so only the straggler policy (`stragglers:` in the\n"
            "                      chain file) acts on it\n"
            "  --slow-every MS     make a random worker slow every MS ms (until it dies) ...\n"
            "  --slow-factor F     ... F times slower (default 10)\n"
            "  --seed S            the victims' generator seed (default 1)\n"
            "  --poison BPF        packets of death: a worker aborts (SIGABRT) on a packet\n"
            "                      matching the tcpdump expression BPF; after two deaths of a\n"
            "                      slot on one packet it is quarantined: skipped (dropped),\n"
            "                      kept in DIR/quarantine.pcapng, an event in alerts.json\n"
            "%s\n"
            "Exit: as `rewind run` (a quarantine is not an error); 2 also when no fault is\n"
            "asked for.\n",
            run_options);
}

/* `--from-log DIR [selection]`: the input read back out of a log. */
struct from_log {
    const char *dir;
    struct cli_select sel;
    bool selected;  /* a selection option was given */
    char tmp[4200]; /* a private directory for the selection's capture */
    char pcap[4300];
    uint64_t *clocks, n, cap;
    pcap_t *dead;
    pcap_dumper_t *dump;
    int bad; /* a record that cannot keep its clock */
    uint64_t bad_clock;
};

static int parse_num(const char *name, const char *arg, uint64_t lo, uint64_t hi, uint64_t *v)
{
    if (cli_parse_u64(arg, v) || *v < lo || *v > hi)
        return cli_error("--%s: '%s' is not in %" PRIu64 "..%" PRIu64, name, arg, lo, hi), -1;
    return 0;
}

static int parse_run(int argc, char **argv, struct run_opts *o, bool chaos, struct from_log *fl)
{
    static const struct option opts[] = {{"trace", required_argument, 0, 't'},
                                         {"port", required_argument, 0, 'p'},
                                         {"out", required_argument, 0, 'o'},
                                         {"force", no_argument, 0, 'F'},
                                         {"no-ft", no_argument, 0, 'n'},
                                         {"progress", no_argument, 0, 'P'},
                                         {"help", no_argument, 0, 'h'},
                                         {"heartbeat-ms", required_argument, 0, 'B'},
                                         {"heartbeat-misses", required_argument, 0, 'M'},
                                         {"spares", required_argument, 0, 'S'},
                                         {"rate", required_argument, 0, 'R'},
                                         {"max-in-flight", required_argument, 0, 'I'},
                                         {"no-dedup", no_argument, 0, 'D'},
                                         {"kill-every", required_argument, 0, 'K'},
                                         {"stall-every", required_argument, 0, 'T'},
                                         {"stall-ms", required_argument, 0, 'L'},
                                         {"seed", required_argument, 0, 'E'},
                                         {"poison", required_argument, 0, 'X'},
                                         {"slow", required_argument, 0, 'W'},
                                         {"slow-every", required_argument, 0, 'Y'},
                                         {"slow-factor", required_argument, 0, 'Z'},
                                         {"stragglers", required_argument, 0, 'G'},
                                         {"from-log", required_argument, 0, 'g'},
                                         CLI_SELECT_OPTIONS,
                                         {0, 0, 0, 0}};
    void (*usage)(FILE *) = chaos ? chaos_usage : run_usage;
    memset(o, 0, sizeof(*o));
    o->out_dir = "out";
    o->seed = 1;
    o->spares = 2;
    memset(fl, 0, sizeof(*fl));
    cli_select_init(&fl->sel);
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int taken = cli_select_opt(&fl->sel, c, optarg);
        if (taken < 0)
            return -1;
        if (taken) {
            fl->selected = true;
            continue;
        }
        switch (c) {
        case 'g':
            fl->dir = optarg;
            break;
        case 't':
            o->trace = optarg;
            break;
        case 'p':
            o->port = optarg;
            break;
        case 'o':
            o->out_dir = optarg;
            break;
        case 'F':
            o->force = true;
            break;
        case 'n':
            o->no_ft = true;
            break;
        case 'P':
            o->progress = true;
            break;
        case 'B':
        case 'M': {
            uint64_t v;
            if (cli_parse_u64(optarg, &v) || v < 1 || v > 60000)
                return cli_error("--%s: '%s' is not in 1..60000",
                                 c == 'B' ? "heartbeat-ms" : "heartbeat-misses", optarg),
                       -1;
            *(c == 'B' ? &o->heartbeat_ms : &o->heartbeat_misses) = (unsigned)v;
            break;
        }
        case 'S':
            if (parse_num("spares", optarg, 0, 64, &v))
                return -1;
            o->spares = (unsigned)v;
            break;
        case 'R':
            if (parse_num("rate", optarg, 1, 100000000, &v))
                return -1;
            o->rate_pps = v;
            break;
        case 'I':
            if (parse_num("max-in-flight", optarg, 64, 1u << 24, &v))
                return -1;
            o->max_in_flight = v;
            break;
        case 'D':
            o->no_dedup = true;
            break;
        case 'K':
        case 'T':
        case 'L':
            if (!chaos)
                return cli_error("run: --%s is a `rewind chaos` option", c == 'K'   ? "kill-every"
                                                                         : c == 'T' ? "stall-every"
                                                                                    : "stall-ms"),
                       -1;
            if (parse_num(c == 'K'   ? "kill-every"
                          : c == 'T' ? "stall-every"
                                     : "stall-ms",
                          optarg, 1, 3600000, &v))
                return -1;
            *(c == 'K'   ? &o->kill_every_ms
              : c == 'T' ? &o->stall_every_ms
                         : &o->stall_ms) = (unsigned)v;
            break;
        case 'E':
            if (!chaos)
                return cli_error("run: --seed is a `rewind chaos` option"), -1;
            if (parse_num("seed", optarg, 0, UINT64_MAX, &v))
                return -1;
            o->seed = v;
            break;
        case 'X':
            if (!chaos)
                return cli_error("run: --poison is a `rewind chaos` option"), -1;
            if (!optarg[strspn(optarg, " \t\n")])
                return cli_error("chaos: --poison needs a BPF expression (an empty one "
                                 "would match every packet)"),
                       -1;
            o->poison = optarg;
            break;
        case 'G': {
            static const char *const acts[] = {"clone", "restart", "off"};
            int k = 0;
            while (k < 3 && strcmp(optarg, acts[k]))
                k++;
            if (k == 3)
                return cli_error("--stragglers: '%s' is not clone, restart or off", optarg), -1;
            o->stragglers = k + 1;
            break;
        }
        case 'W':
        case 'Y':
        case 'Z': {
            const char *name = c == 'W' ? "slow" : c == 'Y' ? "slow-every" : "slow-factor";
            if (!chaos)
                return cli_error("run: --%s is a `rewind chaos` option", name), -1;
            if (c == 'W') { /* checked against the chain by the run (run_slow_check) */
                if (!strstr(optarg, "]:"))
                    return cli_error("chaos: --slow '%s': expected NF[I]:FACTOR[:MS], e.g. "
                                     "fw[1]:10",
                                     optarg),
                           -1;
                o->slow = optarg;
                break;
            }
            if (parse_num(name, optarg, c == 'Y' ? 1 : 2, c == 'Y' ? 3600000 : 1000, &v))
                return -1;
            *(c == 'Y' ? &o->slow_every_ms : &o->slow_factor) = (unsigned)v;
            break;
        }
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc && strcmp(argv[optind - 1], "--"))
        o->chain_path = argv[optind++];
    if (optind < argc && strcmp(argv[optind - 1], "--"))
        return cli_error("run: unexpected argument '%s'", argv[optind]), -1;
    o->eal_argc = argc - optind;
    o->eal_argv = argv + optind;
    const char *cmd = chaos ? "chaos" : "run";
    if (!o->chain_path)
        return cli_error("%s: the chain file is required (see docs/chains/)", cmd), -1;
    if (!!o->trace + !!o->port + !!fl->dir > 1)
        return cli_error("%s: give at most one of --trace, --port and --from-log", cmd), -1;
    if (fl->selected && !fl->dir)
        return cli_error("%s: a selection (--since, --filter...) needs --from-log DIR", cmd), -1;
    if (fl->dir && cli_select_check(&fl->sel, cmd, argv, optind, o->chain_path))
        return -1;
    if (chaos && !o->kill_every_ms && !o->stall_every_ms && !o->poison && !o->slow &&
        !o->slow_every_ms)
        return cli_error("chaos: give --kill-every, --stall-every, --slow, --slow-every and/or "
                         "--poison"),
               -1;
    if (chaos && o->no_ft)
        return cli_error("chaos: --no-ft has no failover; every fault would fail the run"), -1;
    if (o->stall_every_ms && !o->stall_ms)
        o->stall_ms = 50;
    return 0;
}

static int keep_rec(void *ctx, const struct log_rec *r)
{
    struct from_log *fl = ctx;
    if (r->meta.sub || (fl->n && r->meta.clock <= fl->clocks[fl->n - 1])) {
        fl->bad = 1; /* an output log's emits share their packet's clock */
        fl->bad_clock = r->meta.clock;
        return RW_EINVAL;
    }
    if (fl->n == fl->cap) {
        uint64_t nc = fl->cap ? fl->cap * 2 : 65536;
        uint64_t *q = realloc(fl->clocks, nc * sizeof(*q));
        if (!q)
            return RW_ENOMEM;
        fl->clocks = q;
        fl->cap = nc;
    }
    fl->clocks[fl->n++] = r->meta.clock;
    struct pcap_pkthdr h = {.caplen = r->cap_len, .len = r->orig_len};
    h.ts.tv_sec = (time_t)(r->meta.ts_ns / 1000000000ull);
    h.ts.tv_usec = (suseconds_t)(r->meta.ts_ns % 1000000000ull);
    pcap_dump((u_char *)fl->dump, &h, r->data);
    return 0;
}

static void from_log_damage(void *ctx, uint32_t seg, uint64_t clock, const char *why)
{
    (void)ctx;
    cli_error("run: --from-log: skipped damaged block (segment %u, clock %" PRIu64 "): %s", seg,
              clock, why);
}

/* Writes the selection to a private capture (nanosecond pcap) and its clocks
 * beside it: the root reads the capture as a trace and stamps each packet with
 * its clock (root.h, root_trace.clocks). */
static int from_log_prepare(struct from_log *fl, struct run_opts *o)
{
    const char *td = getenv("TMPDIR");
    snprintf(fl->tmp, sizeof(fl->tmp), "%s/rewind-from-log-XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(fl->tmp))
        return cli_error("run: --from-log: cannot make a directory in %s", td ? td : "/tmp"),
               EXIT_FAIL;
    snprintf(fl->pcap, sizeof(fl->pcap), "%s/input.pcap", fl->tmp);
    struct rw_err e = {0};
    int rc = cli_select_resolve(&fl->sel, fl->dir, &e);
    if (rc)
        return cli_error("run: --from-log %s: %s", fl->dir, e.msg), cli_exit_code(rc);
    fl->dead = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, 262144, PCAP_TSTAMP_PRECISION_NANO);
    fl->dump = fl->dead ? pcap_dump_open(fl->dead, fl->pcap) : NULL;
    if (!fl->dump)
        return cli_error("run: --from-log: cannot write %s", fl->pcap), EXIT_FAIL;
    struct replay_opts ro;
    replay_opts_default(&ro);
    ro.q = fl->sel.q;
    ro.bpf = fl->sel.bpf;
    ro.damage = from_log_damage;
    struct replay_stats st;
    rc = replay_each(fl->dir, &ro, keep_rec, fl, &st, &e);
    bool werr = pcap_dump_flush(fl->dump) != 0;
    pcap_dump_close(fl->dump);
    fl->dump = NULL;
    if (fl->bad)
        return cli_error("run: --from-log %s: clock %" PRIu64 " comes twice (an output log, whose "
                         "emits share their packet's clock?): give an input log (a run's DIR/log)",
                         fl->dir, fl->bad_clock),
               EXIT_USAGE;
    if (rc)
        return cli_error("run: --from-log %s: %s", fl->dir, e.msg), cli_exit_code(rc);
    if (werr)
        return cli_error("run: --from-log: cannot write %s", fl->pcap), EXIT_NOSPACE;
    if (!fl->n)
        return cli_error("run: --from-log %s: the selection holds no packet", fl->dir), EXIT_FAIL;
    fprintf(stderr,
            "run: input: %" PRIu64 " packets of %s (clocks %" PRIu64 "..%" PRIu64
            "; %s index, %" PRIu64 " of %" PRIu64 " blocks read)\n",
            fl->n, fl->dir, fl->clocks[0], fl->clocks[fl->n - 1], st.scan.index,
            st.scan.blocks_read, st.scan.blocks_total);
    o->trace = fl->pcap;
    o->trace_clocks = fl->clocks;
    o->ntrace_clocks = fl->n;
    return 0;
}

static void from_log_done(struct from_log *fl)
{
    if (fl->dump)
        pcap_dump_close(fl->dump);
    if (fl->dead)
        pcap_close(fl->dead);
    if (fl->pcap[0])
        remove(fl->pcap);
    if (fl->tmp[0])
        rmdir(fl->tmp);
    free(fl->clocks);
}

static int run_main(int argc, char **argv, bool chaos)
{
    struct run_opts o;
    static struct from_log fl;
    if (parse_run(argc, argv, &o, chaos, &fl))
        return EXIT_USAGE;
    if (fl.dir) {
        int prc = from_log_prepare(&fl, &o);
        if (prc) {
            from_log_done(&fl);
            return prc;
        }
    }
    static char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return cli_error("run: cannot find the rewind executable"), EXIT_FAIL;
    self[n] = '\0';
    o.self_exe = self;
    o.progress = o.progress || cli_tty();
    o.stop = &run_stop;
    signal(SIGINT, on_run_signal);
    signal(SIGTERM, on_run_signal);
    signal(SIGHUP, on_run_signal);
    signal(SIGPIPE, SIG_IGN);
    struct run_result res;
    struct rw_err e = {0};
    int rc = run_chain(&o, &res, &e);
    from_log_done(&fl);
    if (rc) {
        cli_error("%s: %s", chaos ? "chaos" : "run", e.msg);
        return rc == RW_EINTR ? 128 + run_stop : cli_exit_code(rc);
    }
    printf("%s: %" PRIu64 " packets in, %" PRIu64 " out, %" PRIu64
           " duplicates suppressed, %u failovers, %.2f s (%.0f packets/s); %s/report.json\n",
           chaos     ? "chaos"
           : o.no_ft ? "run (no-ft)"
                     : "run",
           res.packets_in, res.packets_out, res.duplicates, res.failovers, res.seconds,
           res.seconds > 0 ? (double)res.packets_in / res.seconds : 0.0, o.out_dir);
    if (chaos)
        printf("chaos: %u kills, %u stalls; %s/chaos.json\n", res.kills, res.stalls, o.out_dir);
    if (res.oversize) /* never lost without a word (they are in the input log) */
        fprintf(stderr,
                "rewind: %s: warning: %" PRIu64 " packets larger than max_frame (%u bytes) were "
                "not carried by the chain%s (report.json: oversize)\n",
                chaos ? "chaos" : "run", res.oversize, res.max_frame,
                o.no_ft ? "" : "; they are in the input log");
    if (res.quarantined)
        printf("%s: %u packets of death quarantined; %s/quarantine.pcapng\n",
               chaos ? "chaos" : "run", res.quarantined, o.out_dir);
    return EXIT_OK;
}

int cmd_run(int argc, char **argv)
{
    return run_main(argc, argv, false);
}

int cmd_chaos(int argc, char **argv)
{
    return run_main(argc, argv, true);
}

int cmd_worker(int argc, char **argv)
{
    return worker_main(argc, argv);
}
