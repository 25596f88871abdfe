/*
 * test_limits.c - issue 12: a chain's size against the run's limits, and a
 * disk that fills up during a run.
 *
 * Limits: chains as large as the parser and the descriptor limit allow run to
 * the end with every packet counted; larger ones are refused before anything
 * starts (exit 2, the limit and the numbers named, no --out made). A full disk:
 * whatever fills first (the log at the start or mid-run, the output, the store)
 * the run ends with exit 4 within a bound, leaves report.json (parseable, the
 * error saying "No space left on device") and alerts.json, and no worker;
 * SIGTERM while the disk fills ends it too. The small disks are tmpfs mounted
 * in a mount namespace of the test's own (unshare -m): they vanish with it,
 * even when the test fails or is killed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "itest.h"

/* nnfs firewalls that pass everything, input -> fw1 -> ... -> output. */
static void chain(const char *dir, unsigned nnfs, unsigned inst, const char *store, char *path,
                  size_t cap)
{
    snprintf(path, cap, "%s/fw%ux%u.yaml", dir, nnfs, inst);
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "name: big\nstore: %s\nnfs:\n", store ? store : "lmdb:store");
    for (unsigned k = 0; k < nnfs; k++)
        fprintf(f, "  - {name: fw%u, type: firewall, instances: %u, config: {default: allow}}\n", k,
                inst);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Workers of the run into out still alive after its coordinator exited: they
 * die with it (PDEATHSIG), so this polls a bounded while for them to go. */
static int workers_left(const char *out)
{
    int n = 0;
    for (int i = 0; i < 200 && (n = it_count_workers(out)) != 0; i++)
        usleep(50000);
    return n;
}

/* The run's figure "key": N in report.json, or -1. */
static long long report_num(const char *report, const char *key)
{
    size_t len;
    char *s = tu_slurp(report, &len), pat[64];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = s ? strstr(s, pat) : NULL;
    long long v = p ? atoll(p + strlen(pat)) : -1;
    free(s);
    return v;
}

/* A whole JSON document: one object, brackets balanced outside strings, and
 * nothing after it but a newline. Enough to tell a cut or empty file. */
static bool json_whole(const char *path)
{
    size_t len = 0;
    char *s = tu_slurp(path, &len);
    int depth = 0;
    bool in_str = false, ok = s && len > 2 && s[0] == '{';
    size_t i = 0;
    for (; ok && i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            break;
        } else if (depth < 0) {
            ok = false;
        }
    }
    ok = ok && depth == 0 && !in_str && i + 1 >= len - 1;
    free(s);
    return ok;
}

static void runs_to_the_end(const char *d, unsigned nnfs, unsigned inst)
{
    char c[4200], out[4200], trace[4096], log[4300], report[4300];
    chain(d, nnfs, inst, NULL, c, sizeof(c));
    snprintf(out, sizeof(out), "%s/out%ux%u", d, nnfs, inst);
    snprintf(log, sizeof(log), "%s/run%ux%u", d, nnfs, inst);
    tu_trace("irc.pcap", trace, sizeof(trace));
    int rc = tu_sh(log, "timeout -s KILL 600 '%s' run '%s' --trace '%s' --out '%s'", tu_bin(), c,
                   trace, out);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        fprintf(stderr, "%ux%u: exit %d, see %s.stderr\n", nnfs, inst, rc, log);
    snprintf(report, sizeof(report), "%s/report.json", out);
    CU_ASSERT_EQUAL(report_num(report, "packets_in"), 98); /* irc.pcap */
    CU_ASSERT_EQUAL(report_num(report, "packets_out"), 98);
    struct it_outs o;
    it_read_output(out, &o);
    CU_ASSERT_EQUAL(o.n, 98);
    it_free_outs(&o);
    CU_ASSERT_EQUAL(workers_left(out), 0);
}

/* 2 x 16 firewalls crashed the coordinator (stdio[512] overflowed: every spare
 * inherited every link); 2 x 64 is the parser's largest pair of NFs, and fits
 * in descriptors when the hard limit allows ~17,000. */
static void test_big_chains_run(void)
{
    char *d = tu_mkdtemp("limits");
    runs_to_the_end(d, 2, 16);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_max >= 17000)
        runs_to_the_end(d, 2, 64);
    else
        fprintf(stderr, "2 x 64 not run: the hard descriptor limit is below 17,000\n");
    tu_rmrf(d);
    free(d);
}

/* exit 2 with every needle in stderr, and no --out: nothing started. */
static void refused(const char *d, const char *c, const char *prefix, const char *n1,
                    const char *n2)
{
    char out[4200], log[4300], err[4400], trace[4096];
    snprintf(out, sizeof(out), "%s/refused", d);
    snprintf(log, sizeof(log), "%s/refused", d);
    snprintf(err, sizeof(err), "%s.stderr", log);
    tu_trace("irc.pcap", trace, sizeof(trace));
    int rc = tu_sh(log, "%s timeout -s KILL 120 '%s' run '%s' --trace '%s' --out '%s'", prefix,
                   tu_bin(), c, trace, out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT_TRUE(it_file_has(err, n1) > 0);
    CU_ASSERT_TRUE(it_file_has(err, n2) > 0);
    CU_ASSERT_FALSE(exists(out));
    if (rc != 2 || exists(out) || it_file_has(err, n1) <= 0 || it_file_has(err, n2) <= 0)
        tu_sh(NULL, "cat '%s' >&2", err);
    tu_rmrf(out);
}

static void test_too_big_refused(void)
{
    char *d = tu_mkdtemp("limits");
    char c[4200];
    /* 4 x 64: 12,416 links; the coordinator holds two descriptors each. */
    chain(d, 4, 64, NULL, c, sizeof(c));
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_max < 41348)
        refused(d, c, "", "descriptors in the coordinator (12,416 links)", "(ulimit -n)");
    /* 2 x 16 under a limit of 1,024 (soft and hard: it cannot be raised). */
    chain(d, 2, 16, NULL, c, sizeof(c));
    refused(d, c, "ulimit -n 1024 &&", "the limit is 1,024 (ulimit -n)",
            "fewer instances or a higher limit");
    /* 17 x 64 slots: the shared block has 1,024. */
    chain(d, 17, 64, NULL, c, sizeof(c));
    refused(d, c, "", "1088 instances in all", "at most 1024");
    /* Nine edges out of one NF: a worker's table has eight. */
    snprintf(c, sizeof(c), "%s/fanout.yaml", d);
    FILE *f = fopen(c, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "name: fan\nnfs:\n  - {name: a, type: firewall, config: {default: allow}}\n");
    for (int k = 0; k < 9; k++)
        fprintf(f, "  - {name: b%d, type: firewall, config: {default: allow}}\n", k);
    fprintf(f, "edges:\n  - {from: input, to: a}\n");
    for (int k = 0; k < 9; k++)
        fprintf(f, "  - {from: a, to: b%d}\n  - {from: b%d, to: output}\n", k, k);
    fclose(f);
    refused(d, c, "", "NF a has 9 edges out", "at most 8");
    tu_rmrf(d);
    free(d);
}

/* One run on a disk of `size` (a tmpfs at d/mnt<tag>, in a mount namespace of
 * its own); the store on a second tmpfs of store_size when not NULL. sigterm:
 * SIGTERM once the output exists. Returns the exit code; report.json and
 * alerts.json are copied to d/<tag>.report.json, d/<tag>.alerts.json. */
static int full_disk_run(const char *d, const char *tag, const char *size, const char *store_size,
                         const char *cmd, const char *extra, bool sigterm)
{
    char mnt[4200], smnt[4200], c[4400], out[4400], trace[4096], log[4300];
    snprintf(mnt, sizeof(mnt), "%s/mnt%s", d, tag);
    snprintf(smnt, sizeof(smnt), "%s/store%s", d, tag);
    snprintf(out, sizeof(out), "%s/out", mnt);
    snprintf(log, sizeof(log), "%s/%s", d, tag);
    mkdir(mnt, 0700);
    mkdir(smnt, 0700);
    char store[4500];
    snprintf(store, sizeof(store), "lmdb:%s/s", smnt);
    chain(d, 1, 3, store_size ? store : NULL, c, sizeof(c));
    char renamed[4400];
    snprintf(renamed, sizeof(renamed), "%s/%s.yaml", d, tag);
    rename(c, renamed);
    tu_trace("external/real.pcap", trace, sizeof(trace));
    char stop[5000] = "";
    if (sigterm) /* wait (bounded) for the output, then SIGTERM the run */
        snprintf(stop, sizeof(stop),
                 "i=0; while [ ! -e \"%s/output\" ] && [ $i -lt 600 ] && kill -0 $p 2>/dev/null; "
                 "do i=$((i+1)); sleep 0.05; done; kill -TERM $p;",
                 out);
    int rc =
        tu_sh(log,
              "unshare -m --propagation private sh -c '"
              "mount -t tmpfs -o size=%s tmpfs \"%s\" || exit 99; "
              "if [ -n \"%s\" ]; then mount -t tmpfs -o size=%s tmpfs \"%s\" || exit 99; fi; "
              "timeout -s KILL 120 \"%s\" %s \"%s\" --trace \"%s\" --out \"%s\" %s & p=$!; %s "
              "wait $p; rc=$?; "
              "cp \"%s/report.json\" \"%s.report.json\"; cp \"%s/alerts.json\" \"%s.alerts.json\"; "
              "n=0; while pgrep -f \"rewind [w]orker.*%s\" >/dev/null && [ $n -lt 200 ]; "
              "do n=$((n+1)); sleep 0.05; done; "
              "pgrep -f \"rewind [w]orker.*%s\" >/dev/null && exit 98; exit $rc'",
              size, mnt, store_size ? store_size : "", store_size ? store_size : "0", smnt,
              tu_bin(), cmd, renamed, trace, out, extra, stop, out, log, out, log, out, out);
    if (rc != 4 && !(sigterm && (rc == 0 || rc == 128 + 15)))
        fprintf(stderr, "%s: exit %d (137: hung, killed; 98: workers left), see %s.stderr\n", tag,
                rc, log);
    return rc;
}

static void check_reports(const char *d, const char *tag, bool must_fail)
{
    char report[4400], alerts[4400];
    snprintf(report, sizeof(report), "%s/%s.report.json", d, tag);
    snprintf(alerts, sizeof(alerts), "%s/%s.alerts.json", d, tag);
    CU_ASSERT_TRUE(json_whole(report));
    CU_ASSERT_TRUE(exists(alerts));
    if (must_fail) {
        CU_ASSERT_TRUE(it_file_has(report, "No space left on device") > 0);
        CU_ASSERT_TRUE(it_file_has(report, "\"ok\": false") > 0);
    }
    if (!json_whole(report))
        tu_sh(NULL, "echo '%s:' >&2; head -c 600 '%s' >&2", tag, report);
}

/* The disk fills at the start (the log's manifest), in the input log early and
 * late, in the output (--no-ft: no input log), in the store (a tmpfs of its
 * own: LMDB's map faults with SIGBUS), and under chaos kills (failovers whose
 * replacements wait for a log that cannot grow: 3 of 15 runs hung before). */
static void test_full_disk(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "full disk: not root, cannot mount a small disk; not run\n");
        return;
    }
    char *d = tu_mkdtemp("limits");
    static const struct {
        const char *tag, *size, *store, *cmd, *extra;
    } cases[] = {
        {"start", "1200k", NULL, "run", ""},
        {"log-early", "1600k", NULL, "run", ""},
        {"log-late", "3000k", NULL, "run", ""},
        {"output", "2400k", NULL, "run", "--no-ft"},
        {"store", "8m", "160k", "run", ""},
        {"chaos", "2400k", NULL, "chaos", "--kill-every 20"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = full_disk_run(d, cases[i].tag, cases[i].size, cases[i].store, cases[i].cmd,
                               cases[i].extra, false);
        CU_ASSERT_EQUAL(rc, 4);
        check_reports(d, cases[i].tag, true);
    }
    tu_rmrf(d);
    free(d);
}

/* SIGTERM while the disk fills (and chaos kills): the run ends, within the
 * bound, whole reports, no worker left; 143 (a trace cut short by SIGTERM) or 0
 * (the trace was over) if the signal's drain won, 4 if the disk did. */
static void test_sigterm_full_disk(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "full disk: not root, cannot mount a small disk; not run\n");
        return;
    }
    char *d = tu_mkdtemp("limits");
    int rc = full_disk_run(d, "term", "3000k", NULL, "chaos", "--kill-every 20 --rate 20000", true);
    CU_ASSERT_TRUE(rc == 0 || rc == 4 || rc == 128 + 15);
    check_reports(d, "term", rc == 4);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "chains up to the descriptor limit run to the end", test_big_chains_run);
    CU_add_test(s, "a chain past a limit is refused before anything starts", test_too_big_refused);
    CU_add_test(s, "a full disk ends the run with exit 4 and whole reports", test_full_disk);
    CU_add_test(s, "SIGTERM while the disk fills ends the run", test_sigterm_full_disk);
}

int main(void)
{
    return tu_main("limits", add);
}
