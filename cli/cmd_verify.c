/*
 * cmd_verify.c - `rewind verify REF_DIR RUN_DIR`: the operator's check of chain
 * output equivalence (design.md: The guarantee) between two runs of `rewind run`, e.g. a
 * fault-free one and a chaos one. The comparison is verify/verify.c; this file
 * parses the command line, prints the differences and the summary, and maps the
 * verdict to an exit code.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

#include "cli.h"
#include "verify.h"

static void verify_usage(FILE *f)
{
    fprintf(
        f, "usage: rewind verify REF_DIR RUN_DIR [--chain FILE] [--canon SPEC]... [--max-diffs N]\n"
           "                     [--progress]\n\n"
           "Compares two runs of the same chain on the same input (directories written by\n"
           "`rewind run --out`), clock by clock: which (clock, sub) outputs exist (a clock's\n"
           "fate), their bytes (DIR/output), and the alerts and events (DIR/alerts.json).\n"
           "Quarantine events (packets of death a run skipped) are counted, not compared:\n"
           "compare with a REF whose input edge filters those packets out.\n\n"
           "  --chain FILE     take the canonicalisation from the chain file: ports at each\n"
           "                   nat NF's `external` address, conns for each lb NF's `backends`\n"
           "  --canon SPEC     what to canonicalise (repeatable, added to --chain's):\n"
           "                     ports:ADDR          TCP/UDP ports and ICMP echo ids at ADDR\n"
           "                     addrs:PREFIX[,..]   IPv4 addresses in PREFIX (A.B.C.D[/LEN])\n"
           "                     conns:PREFIX[,..]   per-connection picks (lb backends): one\n"
           "                                         name for all, and each run must keep a\n"
           "                                         connection on its pick (affinity)\n"
           "                     none                nothing (drops the rules given before)\n"
           "  --max-diffs N    print the first N differences (default 10)\n"
           "  --progress       progress lines also when stderr is not a terminal\n\n"
           "Canonicalised values are renamed by order of first appearance, separately in\n"
           "each run (and separately in packets and in alerts). When any rule is given,\n"
           "packets are compared with their IPv4 header checksum and TCP/UDP/ICMP checksum\n"
           "fields masked, since those change with the renamed fields.\n\n"
           "Prints each difference (clock, sub, what), then\n"
           "  lost L, duplicated D, changed C, alerts missing A, extra E\n"
           "(a changed alert counts as one missing and one extra), then\n"
           "  state: REF R lines, RUN U lines, in one run only S\n"
           "comparing the NFs' final state summaries (DIR/state.json, written by a\n"
           "fault-tolerant run): a line in one run only (state applied twice, or lost)\n"
           "and a broken invariant listed there make the runs not equivalent.\n"
           "Exit: 0 equivalent; 1 not equivalent (or a run cannot be read); 2 usage;\n"
           "3 a log or alert file is damaged.\n");
}

struct verify_cli {
    struct verify_opts o;
    volatile int *finished; /* shared with the comparing child: set when it got through */
    const char *chain;
    bool progress;
    int lastpct;
};

static void print_diff(void *ctx, const struct verify_diff *d)
{
    struct verify_cli *c = ctx;
    if (c->progress)
        fprintf(stderr, "\r\033[K");
    if (d->has_sub)
        printf("clock %" PRIu64 " sub %u: %s\n", d->clock, d->sub, d->what);
    else if (d->kind == VERIFY_DIFF_DAMAGE || d->kind == VERIFY_DIFF_STATE ||
             (d->kind == VERIFY_DIFF_INVARIANT && !d->clock)) /* state has no clock */
        printf("%s\n", d->what);
    else
        printf("clock %" PRIu64 ": %s\n", d->clock, d->what);
}

static void print_progress(void *ctx, uint64_t clock, uint64_t last)
{
    struct verify_cli *c = ctx;
    int pct = last ? (int)(clock * 100 / last) : 100;
    if (!c->progress || pct == c->lastpct)
        return;
    c->lastpct = pct;
    fprintf(stderr, "\rverify: clock %" PRIu64 " of %" PRIu64 " (%d%%)", clock, last, pct);
    fflush(stderr);
}

/* Collects --canon specs until the end, applied after --chain's. */
static int parse_args(int argc, char **argv, struct verify_cli *c, const char **specs, int *nspecs)
{
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},        {"chain", required_argument, 0, 'c'},
        {"canon", required_argument, 0, 'C'}, {"max-diffs", required_argument, 0, 'm'},
        {"progress", no_argument, 0, 'P'},    {0, 0, 0, 0}};
    int ch;
    uint64_t v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (ch == 'h')
            return verify_usage(stdout), -1;
        else if (ch == 'c')
            c->chain = optarg;
        else if (ch == 'C' && *nspecs < VERIFY_MAX_CANON)
            specs[(*nspecs)++] = optarg;
        else if (ch == 'm' && !cli_parse_u64(optarg, &v) && v <= 1000000)
            c->o.max_diffs = (unsigned)v;
        else if (ch == 'P')
            c->progress = true;
        else
            return verify_usage(stderr), EXIT_USAGE;
    }
    if (argc - optind != 2)
        return verify_usage(stderr), EXIT_USAGE;
    c->o.ref_dir = argv[optind];
    c->o.run_dir = argv[optind + 1];
    return 0;
}

static int setup(int argc, char **argv, struct verify_cli *c)
{
    const char *specs[VERIFY_MAX_CANON];
    int nspecs = 0;
    verify_opts_default(&c->o);
    c->progress = cli_tty();
    c->lastpct = -1;
    int rc = parse_args(argc, argv, c, specs, &nspecs);
    if (rc)
        return rc;
    struct rw_err e = {0};
    if (c->chain && (rc = verify_canon_from_chain(&c->o, c->chain, &e)) != 0) {
        cli_error("%s", e.msg);
        return rc == RW_EINVAL ? EXIT_USAGE : EXIT_FAIL;
    }
    for (int i = 0; i < nspecs; i++)
        if (verify_canon_parse(&c->o, specs[i], &e)) {
            cli_error("%s", e.msg);
            return EXIT_USAGE;
        }
    c->o.diff = print_diff;
    c->o.progress = print_progress;
    c->o.ctx = c;
    return 0;
}

/* The comparison and its report, in a child (cli_isolated): LMDB maps the logs,
 * and a damaged page can take the reader down with SIGBUS or SIGSEGV. */
static int compare(void *arg)
{
    struct verify_cli c = *(struct verify_cli *)arg;
    c.o.ctx = &c;
    struct verify_result r;
    struct rw_err e = {0};
    int rc = verify_runs(&c.o, &r, &e);
    if (c.progress)
        fprintf(stderr, "\r\033[K");
    if (rc) {
        *c.finished = 1;
        cli_error("%s", e.msg);
        return rc == RW_ECORRUPT ? EXIT_DAMAGE : EXIT_FAIL;
    }
    printf("REF %" PRIu64 " packets, %" PRIu64 " alerts; RUN %" PRIu64 " packets, %" PRIu64
           " alerts\n",
           r.ref_packets, r.ref_alerts, r.run_packets, r.run_alerts);
    printf("lost %" PRIu64 ", duplicated %" PRIu64 ", changed %" PRIu64 ", alerts missing %" PRIu64
           ", extra %" PRIu64 "\n",
           r.lost, r.duplicated, r.changed, r.alerts_missing, r.alerts_extra);
    if (r.state_compared)
        printf("state: REF %" PRIu64 " lines, RUN %" PRIu64 " lines, in one run only %" PRIu64 "\n",
               r.ref_state, r.run_state, r.state_diffs);
    else
        printf("state: not compared (a run has no state.json, or a damaged one)\n");
    if (r.broken)
        printf("invariants broken: %" PRIu64 "\n", r.broken);
    if (r.ref_quarantined || r.run_quarantined)
        printf("quarantined: REF %" PRIu64 ", RUN %" PRIu64
               " packets of death (events not compared)\n",
               r.ref_quarantined, r.run_quarantined);
    if (r.damaged)
        printf("damaged: %" PRIu64 " (log blocks or alert lines)\n", r.damaged);
    printf("%s\n", r.equivalent ? "equivalent" : "NOT equivalent");
    *c.finished = 1;
    return r.damaged ? EXIT_DAMAGE : r.equivalent ? EXIT_OK : EXIT_FAIL;
}

/* Whether DIR/output is damaged: log_verify in a child of its own, so that the
 * page that stopped the comparison cannot stop this check too. */
static int check_output(void *arg)
{
    struct log_verify_cbs cb = {0};
    struct rw_err e = {0};
    return log_verify(arg, &cb, NULL, &e) ? EXIT_DAMAGE : EXIT_OK;
}

int cmd_verify_runs(int argc, char **argv)
{
    struct verify_cli c = {0};
    int rc = setup(argc, argv, &c);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    /* A child that did not get through died reading: by a signal, or by the
     * sanitizer's handler of one (which exits 1). */
    c.finished = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c.finished == MAP_FAILED)
        return cli_error("verify: mmap: %s", strerror(errno)), EXIT_FAIL;
    *c.finished = 0;
    int sig;
    rc = cli_isolated(compare, &c, &sig);
    bool done = *c.finished;
    munmap((void *)c.finished, sizeof(int));
    if (done || rc >= 128)
        return rc;
    const char *how = sig ? strsignal(sig) : "a fault";
    if (c.progress)
        fprintf(stderr, "\r\033[K");
    const char *dirs[2] = {c.o.ref_dir, c.o.run_dir}, *names[2] = {"REF", "RUN"};
    bool named = false;
    for (int k = 0; k < 2; k++) {
        char out[4096];
        snprintf(out, sizeof(out), "%s/output", dirs[k]);
        int s2;
        if (cli_isolated(check_output, out, &s2) == EXIT_OK)
            continue;
        cli_error("verify: %s log damaged: %s (reading it stopped the comparison with %s); "
                  "`rewind log verify %s` names the segment",
                  names[k], out, how, out);
        named = true;
    }
    if (!named)
        cli_error("verify: stopped by %s while reading %s/output or %s/output: their LMDB "
                  "pages are damaged; `rewind log verify` on each names the segment",
                  how, c.o.ref_dir, c.o.run_dir);
    printf("damaged: the comparison was stopped by a damaged log\nNOT equivalent\n");
    return EXIT_DAMAGE;
}
