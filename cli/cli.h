/*
 * cli.h - what the subcommands of the `rewind` executable share: exit codes,
 * option parsing helpers, progress output, and the crash guard.
 */
#ifndef RW_CLI_H
#define RW_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "rw_common.h"

/* Exit codes (docs/operator.md); rw_error.h's table says which code gives which. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,    /* the command could not do its work */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_DAMAGE = 3,  /* damaged data found; what was intact was kept/used */
    EXIT_NOSPACE = 4, /* out of disk space; everything committed before is intact */
};

/* The exit status for an RW_E* or STORE_E* code (rw_exit_code). */
int cli_exit_code(int rw_code);

/* "1.5", "250ms", "10us", "2s", "1h", "7d" as nanoseconds. */
int cli_parse_duration(const char *s, uint64_t *out);
/* Epoch seconds ("1795343910.976"); RFC 3339 "2026-11-22T10:00[:00[.frac]]" with
 * Z, +HH:MM, -HH:MM, +HHMM or nothing (UTC), T or a space in the middle; or a
 * date "2026-11-22" (its midnight UTC). -1: none of these, or out of range. */
int cli_parse_time(const char *s, uint64_t *out_ns);
int cli_parse_u64(const char *s, uint64_t *out);
/* Formats ns since the epoch as UTC ISO 8601 with nanoseconds. */
const char *cli_fmt_time(uint64_t ns, char *buf, unsigned len);

/* ---- the log selection (cli_select.c) ----
 * Commands that read the log take the same selection options: add
 * CLI_SELECT_OPTIONS to the getopt_long table, hand every option to
 * cli_select_opt, then call cli_select_check and cli_select_resolve. */
enum {
    CLI_SEL_FROM = 0x1000,
    CLI_SEL_TO,
    CLI_SEL_SINCE,
    CLI_SEL_UNTIL,
    CLI_SEL_LAST,
    CLI_SEL_FLOW,
    CLI_SEL_FILTER,
};
#define CLI_SELECT_OPTIONS                                                                         \
    {"from-clock", required_argument, 0, CLI_SEL_FROM},                                            \
        {"to-clock", required_argument, 0, CLI_SEL_TO},                                            \
        {"since", required_argument, 0, CLI_SEL_SINCE},                                            \
        {"until", required_argument, 0, CLI_SEL_UNTIL},                                            \
        {"last", required_argument, 0, CLI_SEL_LAST},                                              \
        {"flow", required_argument, 0, CLI_SEL_FLOW},                                              \
    {                                                                                              \
        "filter", required_argument, 0, CLI_SEL_FILTER                                             \
    }
#define CLI_SELECT_USAGE                                                                           \
    "selection (all inclusive, combined with AND):\n"                                              \
    "  --from-clock N --to-clock N\n"                                                              \
    "  --since T --until T   T: epoch seconds (1795343910.97), RFC 3339\n"                         \
    "                        (2026-11-22T11:00:00+01:00; no offset: UTC) or a date\n"              \
    "  --last DUR            the last DUR (90s, 5m, 2h, 1d) before the log's last packet\n"        \
    "  --flow 'PROTO SRC:PORT DST:PORT'   both directions; IPv6 as [ADDR]:PORT\n"                  \
    "  --filter 'BPF'        tcpdump filter syntax (libpcap); host/net/port/proto terms\n"         \
    "                        use the log's keys index\n"

struct cli_select {
    struct log_query q;
    const char *bpf;  /* --filter, or NULL */
    uint64_t last_ns; /* --last, until cli_select_resolve turns it into since_ns */
    char typed[1024]; /* the selection as typed (cli_select_check) */
};

void cli_select_init(struct cli_select *s);
/* 1: c was a selection option, taken; 0: not one; -1: a bad value (said). */
int cli_select_opt(struct cli_select *s, int c, const char *arg);
/* After parsing: -1 (said) for contradictions; records argv[1..end) but dir as typed. */
int cli_select_check(struct cli_select *s, const char *cmd, char **argv, int end, const char *dir);
/* Turns --last into a window ending at the log's last packet; log_reader_open's errors. */
int cli_select_resolve(struct cli_select *s, const char *dir, struct rw_err *e);

/* Prints s on stdout as a JSON string: quoted, with ", \ and control characters escaped. */
void cli_print_json_string(const char *s);

/* Prints "rewind: " + message to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True when stderr is a terminal (progress lines are drawn only then). */
bool cli_tty(void);

/* Runs fn(arg) in a child process so that a crash while reading damaged data
 * becomes an error message and EXIT_DAMAGE instead of a core dump. */
int cli_guarded(int (*fn)(void *), void *arg, const char *what);
/* The same without the message: returns fn's exit code, or -1 with *sig set to
 * the signal that killed the child (SIGINT/SIGTERM give 128+N as above). */
int cli_isolated(int (*fn)(void *), void *arg, int *sig);

int cmd_log(int argc, char **argv);
/* `log flows` (hosts false) and `log hosts` (cmd_log_flows.c). */
int cmd_log_flows(int argc, char **argv, bool hosts);
int cmd_replay(int argc, char **argv);
int cmd_nat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chaos(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_verify_runs(int argc, char **argv); /* cmd_log.c has a static cmd_verify */

/* bench_chain.c, for the benchmarks beside it: copies of the capture `in`,
 * each shifted in time past the one before, until n packets, written to out;
 * and the source tree (RW_SRC, or above the binary). -1 on failure. */
int bench_repeat_trace(const char *in, const char *out, uint64_t n);
int bench_find_repo(const char *self, char *out, size_t cap);

/* bench_log.c: wall time of a shell command, best of three (-1: it failed); the
 * packets in a capture (-1: unreadable). */
double bench_time_cmd(const char *cmd);
int bench_count_pcap(const char *path);

/* bench_log_query.c: the forensic queries of `bench log` on `trace` repeated to
 * n packets, one row per query (bench_log_nqueries() of them), printed as text
 * when print. -1 (with a message) when a step fails or an answer differs from
 * tcpdump's. */
struct bench_query_row {
    uint64_t packets;
    const char *kind, *filter;
    int matched;
    uint64_t blocks_read, blocks_total;
    double rewind_s, tcpdump_s, speedup;
};
int bench_log_nqueries(void);

/* bench_log_query.c: paced replays (x1, x10) of n packets 50 us apart. */
#define BENCH_PACING_SPEEDS 2
struct bench_pacing_row {
    double speed, elapsed_s, scheduled_s, pps, drift_ms, drift_pct, max_late_ms;
    uint64_t packets, late;
};
int bench_log_pacing(const char *self, const char *tmp, uint64_t n, struct bench_pacing_row *rows,
                     bool print);
int bench_log_queries(const char *self, const char *trace, const char *tmp, uint64_t n,
                      struct bench_query_row *rows, bool print);

#endif
