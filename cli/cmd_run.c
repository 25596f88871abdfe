/*
 * cmd_run.c - `rewind run CHAIN.yaml` and the internal `rewind worker`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "failover.h"

/* Set by SIGINT/SIGTERM: the run drains and finishes (see cmd_log.c). */
static volatile int run_stop;

static void on_run_signal(int sig)
{
    (void)sig;
    run_stop = 1;
}

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: rewind run CHAIN.yaml [--trace PCAP | --port DEVARGS] [--out DIR] [--no-ft] "
            "[-- EAL args]\n\n"
            "Runs a chain of NFs (docs/chain-file.md): the root splitter and the logger in this\n"
            "process, one worker process per NF instance, the sink. Runs until the input ends\n"
            "(or SIGINT/SIGTERM for a port) and every packet has left the chain or been\n"
            "dropped. Writes DIR/output/ (a log: `rewind replay DIR/output --to-pcap F`),\n"
            "DIR/alerts.json, DIR/report.json, and with FT the input log DIR/log/ and the\n"
            "store.\n\n"
            "  --trace PCAP, --port DEVARGS   override the chain's input\n"
            "  --out DIR                      output directory (default: out)\n"
            "  --no-ft                        traditional NFs: state local to each process, no\n"
            "                                 log, no clock checks (the overhead baseline)\n"
            "  --progress                     progress lines when stderr is not a terminal\n"
            "  --heartbeat-ms N               check workers' heartbeats every N ms (100)\n"
            "  --heartbeat-misses N           a worker that misses N checks in a row is hung:\n"
            "                                 it is killed and the run fails (20)\n\n"
            "Exit: 0 ok; 1 the run failed (a worker died, I/O, DPDK); 2 usage or a bad chain\n"
            "file; 3 the trace is damaged or not a capture; 4 out of disk space.\n");
}

static int parse_run(int argc, char **argv, struct run_opts *o)
{
    static const struct option opts[] = {{"trace", required_argument, 0, 't'},
                                         {"port", required_argument, 0, 'p'},
                                         {"out", required_argument, 0, 'o'},
                                         {"no-ft", no_argument, 0, 'n'},
                                         {"progress", no_argument, 0, 'P'},
                                         {"help", no_argument, 0, 'h'},
                                         {"heartbeat-ms", required_argument, 0, 'B'},
                                         {"heartbeat-misses", required_argument, 0, 'M'},
                                         {0, 0, 0, 0}};
    memset(o, 0, sizeof(*o));
    o->out_dir = "out";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            o->trace = optarg;
            break;
        case 'p':
            o->port = optarg;
            break;
        case 'o':
            o->out_dir = optarg;
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
        case 'h':
            run_usage(stdout);
            exit(EXIT_OK);
        default:
            run_usage(stderr);
            return -1;
        }
    }
    if (optind < argc && strcmp(argv[optind - 1], "--"))
        o->chain_path = argv[optind++];
    if (optind < argc && strcmp(argv[optind - 1], "--"))
        return cli_error("run: unexpected argument '%s'", argv[optind]), -1;
    o->eal_argc = argc - optind;
    o->eal_argv = argv + optind;
    if (!o->chain_path)
        return cli_error("run: the chain file is required (see docs/chains/)"), -1;
    if (o->trace && o->port)
        return cli_error("run: give at most one of --trace and --port"), -1;
    return 0;
}

int cmd_run(int argc, char **argv)
{
    struct run_opts o;
    if (parse_run(argc, argv, &o))
        return EXIT_USAGE;
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
    signal(SIGPIPE, SIG_IGN);
    struct run_result res;
    struct rw_err e = {0};
    int rc = run_chain(&o, &res, &e);
    if (rc) {
        cli_error("run: %s", e.msg);
        return cli_exit_code(rc);
    }
    printf("%s: %" PRIu64 " packets in, %" PRIu64 " out, %" PRIu64
           " duplicates suppressed, %.2f s (%.0f packets/s); %s/report.json\n",
           o.no_ft ? "run (no-ft)" : "run", res.packets_in, res.packets_out, res.duplicates,
           res.seconds, res.seconds > 0 ? (double)res.packets_in / res.seconds : 0.0, o.out_dir);
    return EXIT_OK;
}

int cmd_worker(int argc, char **argv)
{
    return run_worker_main(argc, argv);
}
