/*
 * cmd_replay.c - `rewind replay DIR (--to-pcap OUT | --to-port DEVARGS) [selection]`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ethdev.h>

#include "cli.h"
#include "replay.h"
#include "rw_eal.h"

static void replay_usage(FILE *f)
{
    fprintf(f, "usage: rewind replay DIR (--to-pcap OUT | --to-port DEVARGS) [selection] "
               "[-- EAL args]\n\n"
               "Reads packets back out of the log in DIR, in clock order.\n\n"
               "targets:\n"
               "  --to-pcap OUT         pcapng (clock in each packet's comment; the log and the\n"
               "                        query in its section's), or classic pcap when OUT ends\n"
               "                        in .pcap (microseconds; --nanosecond for ns); - : stdout\n"
               "  --to-port DEVARGS     send through a DPDK port (e.g. net_pcap0,tx_pcap=F.pcap)\n"
               "  --speed X|max         port pace: X times the recorded pace (default 1), or "
               "max\n\n" CLI_SELECT_USAGE "\n"
               "Uses the log's flow, keys and time indexes, so a narrow query reads few blocks.\n"
               "Damaged blocks are skipped and reported; the exit code is then 3. --flow is\n"
               "refused (exit 3) on a log whose flow hash version is not this build's\n"
               "(`rewind log stat` shows it).\n"
               "Exit: 0 ok; 1 failed; 2 usage; 3 damaged blocks skipped, or a flow index this\n"
               "build cannot use; 4 out of disk space.\n");
}

struct replay_args {
    const char *dir, *to_pcap, *to_port;
    double speed;
    struct cli_select sel;
    struct replay_opts ro;
    bool verbose;
    int eal_argc;
    char **eal_argv;
    uint64_t damaged;
};

static int parse_speed(const char *s, double *out)
{
    if (!strcmp(s, "max")) {
        *out = 0;
        return 0;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || v > 1e6)
        return -1;
    *out = v;
    return 0;
}

static int parse_replay(int argc, char **argv, struct replay_args *a)
{
    static const struct option opts[] = {{"to-pcap", required_argument, 0, 'o'},
                                         {"to-port", required_argument, 0, 'p'},
                                         {"speed", required_argument, 0, 'S'},
                                         {"nanosecond", no_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_SELECT_OPTIONS,
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof(*a));
    a->speed = 1.0;
    replay_opts_default(&a->ro);
    cli_select_init(&a->sel);
    /* DIR first, as the usage has it: after a "--", getopt would move it among
     * the EAL arguments, where it can no longer be told from them. */
    int first = 0;
    if (argc > 1 && argv[1][0] != '-') {
        a->dir = argv[1];
        first = 1;
    }
    int c;
    optind = 1 + first;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int taken = cli_select_opt(&a->sel, c, optarg);
        if (taken < 0)
            return -1;
        if (taken)
            continue;
        switch (c) {
        case 'o':
            a->to_pcap = optarg;
            break;
        case 'p':
            a->to_port = optarg;
            break;
        case 'S':
            if (parse_speed(optarg, &a->speed))
                return cli_error("--speed: '%s' is not a positive number or 'max'", optarg), -1;
            break;
        case 'n':
            a->ro.pcap_nanosecond = true;
            break;
        case 'h':
            replay_usage(stdout);
            exit(EXIT_OK);
        default:
            replay_usage(stderr);
            return -1;
        }
    }
    if (!a->dir && optind < argc && strcmp(argv[optind - 1], "--"))
        a->dir = argv[optind++];
    if (optind < argc && strcmp(argv[optind - 1], "--"))
        return cli_error("replay: unexpected argument '%s'", argv[optind]), -1;
    a->eal_argc = argc - optind;
    a->eal_argv = argv + optind;
    if (!a->dir)
        return cli_error("replay: the log DIR is required"), -1;
    if (!a->to_pcap == !a->to_port)
        return cli_error("replay: give exactly one of --to-pcap OUT and --to-port DEVARGS"), -1;
    if (cli_select_check(&a->sel, "replay", argv, optind, a->dir))
        return -1;
    a->ro.q = a->sel.q;
    a->ro.bpf = a->sel.bpf;
    a->ro.query = a->sel.typed;
    return 0;
}

static void on_damage(void *ctx, uint32_t seg, uint64_t clock, const char *why)
{
    struct replay_args *a = ctx;
    a->damaged++;
    cli_error("replay: skipped damaged block (segment %u, clock %" PRIu64 "): %s", seg, clock, why);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    (void)ctx;
    fprintf(stderr, "\rreplay: %" PRIu64 "/%" PRIu64 " blocks   ", done, total);
}

static int to_port(struct replay_args *a, struct replay_stats *st, struct rw_err *e)
{
    int rc = rw_eal_init(a->eal_argc, a->eal_argv, a->to_port, e);
    if (rc)
        return rc;
    uint16_t port = 0, pid;
    RTE_ETH_FOREACH_DEV(pid)
    {
        port = pid;
        break;
    }
    struct rte_mempool *pool = rw_pool_create("rw_tx", 8191, e);
    rc = pool ? rw_port_start(port, NULL, 0, e) : RW_EDPDK;
    if (!rc)
        rc = replay_to_port(a->dir, port, pool, a->speed, &a->ro, st, e);
    rw_eal_fini(port);
    return rc;
}

static int do_replay(void *arg)
{
    struct replay_args *a = arg;
    struct replay_stats st;
    struct rw_err e = {0};
    int rc = cli_select_resolve(&a->sel, a->dir, &e);
    a->ro.q.since_ns = a->sel.q.since_ns;
    if (rc) {
        cli_error("replay: %s", e.msg);
        return cli_exit_code(rc);
    }
    a->ro.damage = on_damage;
    a->ro.progress = cli_tty() ? on_progress : NULL;
    a->ro.ctx = a;
    rc = a->to_pcap ? replay_to_file(a->dir, a->to_pcap, &a->ro, &st, &e) : to_port(a, &st, &e);
    if (a->ro.progress)
        fputc('\n', stderr);
    if (rc) {
        cli_error("replay: %s", e.msg);
        return cli_exit_code(rc);
    }
    fprintf(stderr,
            "replay: %" PRIu64 " packets (%" PRIu64 " bytes) to %s; %s index, %" PRIu64
            " of %" PRIu64 " blocks read\n",
            st.packets, st.bytes, a->to_pcap ? a->to_pcap : a->to_port, st.scan.index,
            st.scan.blocks_read, st.scan.blocks_total);
    if (a->to_port && st.packets) {
        double el = (double)st.elapsed_ns / 1e9;
        if (a->speed > 0)
            fprintf(stderr,
                    "replay: paced x%g: %" PRIu64 " packets in %.6f s (%.0f pps), schedule %.6f s, "
                    "drift %+.3f ms (%+.4f%%), %" PRIu64 " late by more than 1 ms (max %.3f ms)\n",
                    a->speed, st.packets, el, el > 0 ? (double)st.packets / el : 0,
                    (double)st.scheduled_ns / 1e9, (double)st.drift_ns / 1e6,
                    st.scheduled_ns ? 100.0 * (double)st.drift_ns / (double)st.scheduled_ns : 0,
                    st.late, (double)st.max_late_ns / 1e6);
    }
    if (st.fragmented || st.too_big)
        fprintf(stderr,
                "replay: %" PRIu64
                " datagrams larger than the port's MTU sent in fragments, %" PRIu64
                " sent whole (DF set)\n",
                st.fragmented, st.too_big);
    return a->damaged ? EXIT_DAMAGE : EXIT_OK;
}

int cmd_replay(int argc, char **argv)
{
    struct replay_args a;
    if (parse_replay(argc, argv, &a))
        return EXIT_USAGE;
    int sig;
    int rc = cli_isolated(do_replay, &a, &sig);
    if (!sig)
        return rc;
    cli_error("replay stopped by %s while reading stored data: the log's LMDB pages are "
              "damaged in a way LMDB cannot detect; run `rewind log verify` to locate it",
              strsignal(sig));
    /* What the child wrote may end mid-packet: keep the whole packets only. */
    uint64_t kept;
    struct rw_err e = {0};
    if (a.to_pcap && !strcmp(a.to_pcap, "-"))
        cli_error("replay: what reached standard output may end mid-packet");
    else if (a.to_pcap && replay_trim_capture(a.to_pcap, &kept, &e))
        cli_error("replay: %s", e.msg);
    else if (a.to_pcap)
        cli_error("replay: %s keeps the %" PRIu64 " whole packets written before", a.to_pcap, kept);
    return EXIT_DAMAGE;
}
