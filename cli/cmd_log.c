/*
 * cmd_log.c - `rewind log ingest|stat|verify`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rte_ethdev.h>

#include "cli.h"
#include "log.h"
#include "root.h"
#include "rw_eal.h"

/* Set by SIGINT/SIGTERM to end a live capture cleanly: a signal handler can only
 * reach process-wide state, so this is the one such variable. */
static volatile int ingest_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    ingest_stop = 1;
}

static void ingest_usage(FILE *f)
{
    fprintf(f,
            "usage: rewind log ingest --log DIR (--trace PCAP | --port DEVARGS) [options] "
            "[-- EAL args]\n\n"
            "Reads packets through DPDK, stamps each with a logical clock and arrival time,\n"
            "and appends them to the durable log in DIR (created if needed; an existing\n"
            "log is appended to, with clocks above every clock it ever handed out).\n\n"
            "  --trace PCAP          read a capture through DPDK's net_pcap driver; arrival\n"
            "                        times are the capture's timestamps\n"
            "  --port DEVARGS        read a DPDK port (vdev args or PCI address) until\n"
            "                        SIGINT/SIGTERM; arrival time is the rx time\n"
            "  --durability MODE     none | process (default) | power\n"
            "                          none: nothing waits for storage\n"
            "                          process: committed to the page cache (survives kill -9)\n"
            "                          power: fsync'd (survives power loss)\n"
            "  --segment-mb N        rotate segments at N MiB (default 256)\n"
            "  --retain-mb N         delete oldest sealed segments beyond N MiB (default: keep)\n"
            "  --retain-age DUR      delete sealed segments older than DUR in packet time\n"
            "  --block-packets N     packets per block (default 1024)\n"
            "  --commit-us N         group-commit window in microseconds (default 1000)\n"
            "  --progress            print progress lines even when stderr is not a terminal\n"
            "  -q, --quiet           no summary\n"
            "  -- EAL args           replace the default EAL arguments (--no-huge -m 256\n"
            "                        --no-shconf --no-pci)\n\n"
            "Exit: 0 ok; 1 failed; 2 usage; 3 the trace is damaged (its intact packets were\n"
            "logged); 4 out of disk space (everything below the durable clock is kept).\n");
}

struct ingest_args {
    const char *log, *trace, *port;
    struct log_opts lo;
    bool progress, quiet;
    int eal_argc;
    char **eal_argv;
};

static int parse_ingest(int argc, char **argv, struct ingest_args *a)
{
    static const struct option opts[] = {{"log", required_argument, 0, 'l'},
                                         {"trace", required_argument, 0, 't'},
                                         {"port", required_argument, 0, 'p'},
                                         {"durability", required_argument, 0, 'd'},
                                         {"segment-mb", required_argument, 0, 's'},
                                         {"retain-mb", required_argument, 0, 'r'},
                                         {"retain-age", required_argument, 0, 'a'},
                                         {"block-packets", required_argument, 0, 'b'},
                                         {"commit-us", required_argument, 0, 'c'},
                                         {"progress", no_argument, 0, 'P'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof(*a));
    log_opts_default(&a->lo);
    uint64_t v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            a->log = optarg;
            break;
        case 't':
            a->trace = optarg;
            break;
        case 'p':
            a->port = optarg;
            break;
        case 'd':
            if (log_durability_parse(optarg, &a->lo.durability))
                return cli_error("--durability: '%s' is not none, process or power", optarg), -1;
            break;
        case 's':
            if (cli_parse_u64(optarg, &v) || v < 1 || v > (1u << 20))
                return cli_error("--segment-mb: '%s' is not a size in MiB (1..1048576)", optarg),
                       -1;
            a->lo.segment_bytes = v << 20;
            break;
        case 'r':
            if (cli_parse_u64(optarg, &v))
                return cli_error("--retain-mb: '%s' is not a number", optarg), -1;
            a->lo.retain_bytes = v << 20;
            break;
        case 'a':
            if (cli_parse_duration(optarg, &a->lo.retain_ns))
                return cli_error("--retain-age: '%s' is not a duration (e.g. 7d, 12h)", optarg), -1;
            break;
        case 'b':
            if (cli_parse_u64(optarg, &v) || v < 1 || v > 65536)
                return cli_error("--block-packets: '%s' is not in 1..65536", optarg), -1;
            a->lo.block_pkts = (uint32_t)v;
            break;
        case 'c':
            if (cli_parse_u64(optarg, &v) || v > 10000000)
                return cli_error("--commit-us: '%s' is not in 0..10000000", optarg), -1;
            a->lo.commit_ns = v * 1000;
            break;
        case 'P':
            a->progress = true;
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'h':
            ingest_usage(stdout);
            exit(EXIT_OK);
        default:
            ingest_usage(stderr);
            return -1;
        }
    }
    a->eal_argc = argc - optind;
    a->eal_argv = argv + optind;
    if (optind > 0 && optind < argc && strcmp(argv[optind - 1], "--"))
        return cli_error("unexpected argument '%s' (EAL arguments go after --)", argv[optind]), -1;
    if (!a->log)
        return cli_error("log ingest: --log DIR is required"), -1;
    if (!a->trace == !a->port)
        return cli_error("log ingest: give exactly one of --trace PCAP and --port DEVARGS"), -1;
    if (a->trace && strchr(a->trace, ','))
        return cli_error("log ingest: the trace path may not contain ',' (DPDK devargs)"), -1;
    return 0;
}

struct progress_ctx {
    bool on;
};

static void ingest_progress(void *ctx, const struct root_stats *st, uint64_t expected)
{
    struct progress_ctx *p = ctx;
    if (!p->on)
        return;
    if (expected != UINT64_MAX)
        fprintf(stderr,
                "\ringest: %" PRIu64 "/%" PRIu64 " packets (%.0f%%), durable below clock %" PRIu64
                "   ",
                st->packets, expected,
                expected ? 100.0 * (double)st->packets / (double)expected : 100.0, st->durable);
    else
        fprintf(stderr, "\ringest: %" PRIu64 " packets, durable below clock %" PRIu64 "   ",
                st->packets, st->durable);
    if (!cli_tty())
        fputc('\n', stderr);
}

static uint16_t first_port(void)
{
    uint16_t pid;
    RTE_ETH_FOREACH_DEV(pid)
    return pid;
    return 0;
}

static int run_ingest(struct ingest_args *a, struct root_trace *tr, struct root_stats *st,
                      bool *opened, struct rw_err *e)
{
    struct log_writer *w;
    int rc = log_writer_open(a->log, &a->lo, &w, e);
    if (rc)
        return rc;
    *opened = true;
    char dev[4200];
    if (a->trace)
        snprintf(dev, sizeof(dev), "net_pcap0,rx_pcap=%s", a->trace);
    else
        snprintf(dev, sizeof(dev), "%s", a->port);
    if ((rc = rw_eal_init(a->eal_argc, a->eal_argv, dev, e))) {
        log_writer_close(w, NULL);
        return rc;
    }
    uint16_t port = first_port();
    struct rte_mempool *pool = rw_pool_create("rw_rx", 32767, e);
    rc = pool ? rw_port_start(port, pool, 0, e) : RW_EDPDK;
    if (!rc) {
        signal(SIGINT, on_stop_signal);
        signal(SIGTERM, on_stop_signal);
        signal(SIGHUP, on_stop_signal);
        struct progress_ctx pc = {.on = a->progress || cli_tty()};
        struct root_ingest_opts ro = {.trace = a->trace ? tr : NULL,
                                      .port = port,
                                      .stop = &ingest_stop,
                                      .progress = ingest_progress,
                                      .ctx = &pc};
        rc = root_ingest(&ro, w, st, e);
        if (pc.on && cli_tty())
            fputc('\n', stderr);
    }
    struct rw_err ce;
    int crc = log_writer_close(w, &ce);
    if (!rc && crc) {
        rc = crc;
        *e = ce;
    }
    rw_eal_fini(port);
    return rc;
}

static int cmd_ingest(int argc, char **argv)
{
    struct ingest_args a;
    if (parse_ingest(argc, argv, &a))
        return EXIT_USAGE;
    struct root_trace tr = {0};
    struct rw_err e = {0};
    if (a.trace && root_trace_scan(a.trace, &tr, &e)) {
        cli_error("log ingest: %s", e.msg);
        return cli_exit_code(e.code);
    }
    if (tr.damaged)
        cli_error("log ingest: warning: %s; logging the %" PRIu64 " intact packets", tr.problem,
                  tr.n);
    struct root_stats st = {0};
    bool opened = false;
    int rc = run_ingest(&a, &tr, &st, &opened, &e);
    if (rc && opened)
        cli_error("log ingest: %s; the log keeps every packet below clock %" PRIu64, e.msg,
                  st.durable);
    else if (rc)
        cli_error("log ingest: %s", e.msg);
    else if (!a.quiet)
        printf("ingested %" PRIu64 " packets (%" PRIu64 " bytes), clocks %" PRIu64 "..%" PRIu64
               ", durable below %" PRIu64 ", into %s\n",
               st.packets, st.bytes, st.first_clock, st.next_clock ? st.next_clock - 1 : 0,
               st.durable, a.log);
    bool damaged = tr.damaged;
    root_trace_free(&tr);
    if (rc)
        return cli_exit_code(rc);
    return damaged ? EXIT_DAMAGE : EXIT_OK;
}

/* ---- stat ---- */

struct stat_args {
    const char *dir;
    bool json;
};

static void print_segment(const struct log_seg_info *s, bool json, bool last)
{
    char a[48], b[48];
    if (json) {
        printf("    {\"id\": %u, \"sealed\": %s, \"packets\": %" PRIu64 ", \"blocks\": %" PRIu64
               ", \"first_clock\": %" PRIu64 ", \"last_clock\": %" PRIu64 ", \"min_ts\": %" PRIu64
               ", \"max_ts\": %" PRIu64 ", \"raw_bytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64
               ", \"wire_bytes\": %" PRIu64 "}%s\n",
               s->id, s->sealed ? "true" : "false", s->packets, s->blocks, s->first_clock,
               s->last_clock, s->min_ts, s->max_ts, s->raw_bytes, s->stored_bytes, s->wire_bytes,
               last ? "" : ",");
        return;
    }
    if (!s->packets) {
        printf("  seg %-6u %-6s empty\n", s->id, s->sealed ? "sealed" : "open");
        return;
    }
    printf("  seg %-6u %-6s clocks %" PRIu64 "..%" PRIu64 "  %" PRIu64 " packets  %s .. %s\n",
           s->id, s->sealed ? "sealed" : "open", s->first_clock, s->last_clock, s->packets,
           cli_fmt_time(s->min_ts, a, sizeof(a)), cli_fmt_time(s->max_ts, b, sizeof(b)));
}

/* The flow index's hash version, and whether this build can use the index. */
static void print_flow_hash(uint32_t v)
{
    if (v == RW_FLOW_HASH_VERSION)
        printf("flow     hash version %u\n", v);
    else if (!v)
        printf("flow     no hash version recorded (written before version %u): replay --flow "
               "refuses this log\n",
               RW_FLOW_HASH_VERSION);
    else
        printf("flow     hash version %u, unknown to this build (it knows %u): replay --flow "
               "refuses this log\n",
               v, RW_FLOW_HASH_VERSION);
}

static int do_stat(void *arg)
{
    struct stat_args *a = arg;
    struct log_reader *r;
    struct rw_err e;
    if (log_reader_open(a->dir, &r, &e)) {
        cli_error("log stat: %s", e.msg);
        return cli_exit_code(e.code);
    }
    struct log_seg_info t = {0};
    bool any = false;
    uint32_t n = log_reader_nsegments(r);
    if (a->json) {
        printf("{\n  \"dir\": ");
        cli_print_json_string(a->dir);
        printf(",\n  \"segments\": [\n");
    } else
        printf("log %s\n", a->dir);
    for (uint32_t i = 0; i < n; i++) {
        const struct log_seg_info *s = log_reader_segment(r, i);
        print_segment(s, a->json, i + 1 == n);
        if (!s->packets)
            continue;
        if (!any || s->min_ts < t.min_ts)
            t.min_ts = s->min_ts;
        if (!any || s->max_ts > t.max_ts)
            t.max_ts = s->max_ts;
        if (!any)
            t.first_clock = s->first_clock;
        any = true;
        t.last_clock = s->last_clock;
        t.packets += s->packets;
        t.blocks += s->blocks;
        t.raw_bytes += s->raw_bytes;
        t.stored_bytes += s->stored_bytes;
        t.wire_bytes += s->wire_bytes;
    }
    double ratio = t.stored_bytes ? (double)t.raw_bytes / (double)t.stored_bytes : 1.0;
    char a1[48], a2[48];
    if (a->json) {
        printf("  ],\n  \"packets\": %" PRIu64 ", \"blocks\": %" PRIu64
               ", \"first_clock\": %" PRIu64 ", \"last_clock\": %" PRIu64 ", \"min_ts\": %" PRIu64
               ", \"max_ts\": %" PRIu64 ", \"wire_bytes\": %" PRIu64 ", \"raw_bytes\": %" PRIu64
               ", \"stored_bytes\": %" PRIu64
               ", \"compression\": %.3f, \"clock_reserved\": %" PRIu64 ", \"flow_hash\": %u\n}\n",
               t.packets, t.blocks, t.first_clock, t.last_clock, t.min_ts, t.max_ts, t.wire_bytes,
               t.raw_bytes, t.stored_bytes, ratio, log_reader_reserved(r), log_reader_flow_hash(r));
    } else if (any) {
        printf("segments %u, packets %" PRIu64 ", blocks %" PRIu64 "\n", n, t.packets, t.blocks);
        printf("clocks   %" PRIu64 "..%" PRIu64 " (reserved below %" PRIu64 ")\n", t.first_clock,
               t.last_clock, log_reader_reserved(r));
        printf("time     %s .. %s\n", cli_fmt_time(t.min_ts, a1, sizeof(a1)),
               cli_fmt_time(t.max_ts, a2, sizeof(a2)));
        printf("bytes    %" PRIu64 " on the wire, %" PRIu64 " records, %" PRIu64
               " stored (compression %.2fx)\n",
               t.wire_bytes, t.raw_bytes, t.stored_bytes, ratio);
    } else {
        printf("segments %u, no packets\n", n);
    }
    if (!a->json)
        print_flow_hash(log_reader_flow_hash(r));
    log_reader_close(r);
    return EXIT_OK;
}

static int cmd_stat(int argc, char **argv)
{
    struct stat_args a = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: rewind log stat DIR [--json]\n\nSegments, clock range, time range, "
                   "packets, bytes, compression ratio and flow hash version\n(0 in JSON: none "
                   "recorded) of a log.\n");
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--json"))
            a.json = true;
        else if (argv[i][0] == '-')
            return cli_error("log stat: unknown option '%s'", argv[i]), EXIT_USAGE;
        else if (a.dir)
            return cli_error("log stat: one DIR only"), EXIT_USAGE;
        else
            a.dir = argv[i];
    }
    if (!a.dir)
        return cli_error("usage: rewind log stat DIR [--json]"), EXIT_USAGE;
    return cli_guarded(do_stat, &a, "log stat");
}

/* ---- verify ---- */

/* Verification runs in a child that reports through a pipe, one line per event;
 * if LMDB crashes on a damaged page, the parent names the segment and carries
 * on with the next one. */
static void v_problem(void *ctx, uint32_t seg, uint64_t clock, const char *what)
{
    dprintf(*(int *)ctx, "P %u %" PRIu64 " %s\n", seg, clock, what);
}

static void v_segment(void *ctx, uint32_t id)
{
    dprintf(*(int *)ctx, "S %u\n", id);
}

static void verify_child(const char *dir, uint32_t from, int fd)
{
    struct log_verify_cbs cb = {
        .problem = v_problem, .segment = v_segment, .ctx = &fd, .from_segment = from};
    struct log_verify_stats st;
    struct rw_err e = {0};
    int rc = log_verify(dir, &cb, &st, &e);
    /* RW_ECORRUPT with no problem counted is a log that could not be opened at all
     * (a damaged manifest): that is fatal too, not "ok: 0 segments". */
    if (rc && (rc != RW_ECORRUPT || !st.problems))
        dprintf(fd, "F %d %s\n", rc, e.msg);
    dprintf(fd, "E %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", st.segments, st.blocks,
            st.packets, st.problems);
    fflush(NULL);
    _exit(0);
}

struct verify_totals {
    uint64_t segments, blocks, packets, problems;
    int fatal;
};

/* Reads one child's report; returns the segment it was in if it crashed, else -1. */
static long read_report(FILE *in, struct verify_totals *t)
{
    char line[1024];
    long current = -1;
    bool ended = false;
    while (fgets(line, sizeof(line), in)) {
        line[strcspn(line, "\n")] = 0;
        unsigned seg;
        uint64_t a, b, c, d;
        int off = 0;
        if (sscanf(line, "S %u", &seg) == 1) {
            current = seg;
        } else if (sscanf(line, "P %u %" SCNu64 " %n", &seg, &a, &off) == 2) {
            printf("segment %u, clock %" PRIu64 ": %s\n", seg, a, line + off);
        } else if (sscanf(line, "F %d %n", &t->fatal, &off) == 1) {
            cli_error("log verify: %s", line + off);
        } else if (sscanf(line, "E %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &c, &d) ==
                   4) {
            t->segments += a, t->blocks += b, t->packets += c, t->problems += d;
            ended = true;
        }
    }
    return ended ? -1 : current;
}

static int cmd_log_verify(int argc, char **argv)
{
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: rewind log verify DIR\n\nReads every block of every segment and "
                   "checks checksums, records, clock order,\nsummaries, indexes and the clock "
                   "reservation. Prints each problem with its\nsegment and clock.\n\nExit: 0 "
                   "sound; 3 damaged; 1 could not be read at all; 2 usage.\n");
            return EXIT_OK;
        } else if (argv[i][0] == '-')
            return cli_error("log verify: unknown option '%s'", argv[i]), EXIT_USAGE;
        else
            dir = argv[i];
    }
    if (!dir)
        return cli_error("usage: rewind log verify DIR"), EXIT_USAGE;
    struct verify_totals t = {0};
    uint32_t from = 0;
    for (;;) {
        int fds[2];
        if (pipe(fds))
            return cli_error("log verify: pipe failed"), EXIT_FAIL;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            verify_child(dir, from, fds[1]);
        }
        close(fds[1]);
        FILE *in = fdopen(fds[0], "r");
        long crashed = read_report(in, &t);
        fclose(in);
        int st;
        waitpid(pid, &st, 0);
        if (crashed < 0 && WIFEXITED(st))
            break;
        printf("segment %ld: LMDB structure damaged: reading it stopped the checker (%s)\n",
               crashed, WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "no report");
        t.problems++;
        if (crashed < 0)
            break;
        from = (uint32_t)crashed + 1;
    }
    if (t.fatal)
        return cli_exit_code(t.fatal);
    if (t.problems) {
        printf("DAMAGED: %" PRIu64 " problem(s); %" PRIu64 " segments, %" PRIu64
               " intact blocks checked\n",
               t.problems, t.segments, t.blocks);
        return EXIT_DAMAGE;
    }
    printf("ok: %" PRIu64 " segments, %" PRIu64 " blocks, %" PRIu64 " packets\n", t.segments,
           t.blocks, t.packets);
    return EXIT_OK;
}

int cmd_log(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: rewind log (ingest|stat|verify|flows|hosts) ...\n\n"
                   "  ingest   read packets through DPDK into a durable, clock-stamped log\n"
                   "  stat     segments, clock and time ranges, packets, bytes, compression\n"
                   "  verify   check every block; name the segment and clock of any damage\n"
                   "  flows    the conversations of a selection (tshark -z conv)\n"
                   "  hosts    the hosts of a selection, top talkers with --by bytes\n");
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "ingest"))
        return cmd_ingest(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stat"))
        return cmd_stat(argc - 1, argv + 1);
    if (!strcmp(argv[1], "verify"))
        return cmd_log_verify(argc - 1, argv + 1);
    if (!strcmp(argv[1], "flows") || !strcmp(argv[1], "hosts"))
        return cmd_log_flows(argc - 1, argv + 1, argv[1][0] == 'h');
    cli_error("log: unknown subcommand '%s'", argv[1]);
    return EXIT_USAGE;
}
