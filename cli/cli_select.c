/*
 * cli_select.c - the selection every command that reads the log takes: clocks,
 * time window (--since/--until/--last), flow and BPF filter. `rewind replay`,
 * `log flows` and `log hosts` parse it here, so the same words mean the same
 * packets in each of them.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

void cli_select_init(struct cli_select *s)
{
    memset(s, 0, sizeof(*s));
    log_query_all(&s->q);
}

int cli_select_opt(struct cli_select *s, int c, const char *arg)
{
    struct rw_err e;
    switch (c) {
    case CLI_SEL_FROM:
        if (cli_parse_u64(arg, &s->q.from_clock))
            return cli_error("--from-clock: '%s' is not a clock", arg), -1;
        return 1;
    case CLI_SEL_TO:
        if (cli_parse_u64(arg, &s->q.to_clock))
            return cli_error("--to-clock: '%s' is not a clock", arg), -1;
        return 1;
    case CLI_SEL_SINCE:
        if (cli_parse_time(arg, &s->q.since_ns))
            return cli_error("--since: '%s' is not a time", arg), -1;
        return 1;
    case CLI_SEL_UNTIL:
        if (cli_parse_time(arg, &s->q.until_ns))
            return cli_error("--until: '%s' is not a time", arg), -1;
        return 1;
    case CLI_SEL_LAST:
        if (cli_parse_duration(arg, &s->last_ns) || !s->last_ns)
            return cli_error("--last: '%s' is not a duration (90s, 5m, 2h, 1d)", arg), -1;
        return 1;
    case CLI_SEL_FLOW:
        if (rw_flow_from_string(arg, &s->q.flow, &e))
            return cli_error("--flow: %s", e.msg), -1;
        s->q.has_flow = true;
        return 1;
    case CLI_SEL_FILTER:
        s->bpf = arg;
        return 1;
    default:
        return 0;
    }
}

int cli_select_check(struct cli_select *s, const char *cmd, char **argv, int end, const char *dir)
{
    if (s->last_ns && s->q.since_ns)
        return cli_error("%s: give one of --since and --last", cmd), -1;
    if (s->q.from_clock > s->q.to_clock || s->q.since_ns > s->q.until_ns)
        return cli_error("%s: the selection is empty (from > to)", cmd), -1;
    /* What was asked, as typed (quoted where it has spaces): a capture's comment. */
    size_t n = 0;
    for (int i = 1; i < end && n < sizeof(s->typed) - 1; i++) {
        if (argv[i] == dir || !strcmp(argv[i], "--"))
            continue;
        bool q1 = strchr(argv[i], ' ') != NULL;
        int w = snprintf(s->typed + n, sizeof(s->typed) - n, "%s%s%s%s", n ? " " : "",
                         q1 ? "'" : "", argv[i], q1 ? "'" : "");
        n = w < 0 ? n : n + (size_t)w;
    }
    return 0;
}

/* --last: the window ends at the log's last packet (its latest timestamp: a
 * trace need not be in time order), as `tail` ends at a file's last line. */
int cli_select_resolve(struct cli_select *s, const char *dir, struct rw_err *e)
{
    if (!s->last_ns)
        return 0;
    struct log_reader *r;
    int rc = log_reader_open(dir, &r, e);
    if (rc)
        return rc;
    uint64_t max = 0;
    for (uint32_t i = 0; i < log_reader_nsegments(r); i++) {
        const struct log_seg_info *si = log_reader_segment(r, i);
        if (si->packets && si->max_ts > max)
            max = si->max_ts;
    }
    log_reader_close(r);
    s->q.since_ns = max > s->last_ns ? max - s->last_ns : 0;
    return 0;
}
