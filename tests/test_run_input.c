/*
 * test_run_input.c - what `rewind run` does with an input that is not whole or
 * not a file, and who can read what it writes: a truncated trace runs its intact
 * packets and exits 3, saying so in report.json; a missing trace exits 1 and a
 * FIFO or a directory is refused (exit 2) before anything is created, instead of
 * hanging on the second read; SIGTERM before the end of a trace exits 128+15 with
 * report.json saying "interrupted"; every file and directory a run or an ingest
 * writes is private to its user unless `--umask` says otherwise; no DPDK runtime
 * directory is left behind.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

static void chain_path(char *buf, size_t n)
{
    snprintf(buf, n, "%s/docs/chains/firewall.yaml", getenv("RW_SRC"));
}

/* rewind run CHAIN --trace TRACE --out OUT EXTRA, outputs in d/run.std{out,err},
 * bounded by `timeout` so a hang fails the test instead of holding the suite. */
static int run(const char *d, const char *trace, const char *out, const char *extra)
{
    char chain[4096], o[4200];
    chain_path(chain, sizeof(chain));
    snprintf(o, sizeof(o), "%s/run", d);
    return tu_sh(o, "timeout -s KILL 120 '%s' run '%s' --trace '%s' --out '%s' %s", tu_bin(), chain,
                 trace, out, extra ? extra : "");
}

static void test_truncated_trace(void)
{
    char *d = tu_mkdtemp("rin");
    char src[4096], trace[4200], out[4200], rep[4300], err[4300];
    tu_trace("nmap_sT_top1000.pcap", src, sizeof(src));
    snprintf(trace, sizeof(trace), "%s/cut.pcap", d);
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "head -c 30000 '%s' > '%s'", src, trace), 0);
    struct tu_pcap ref;
    CU_ASSERT_NOT_EQUAL(tu_pcap_read(trace, &ref), 0); /* libpcap agrees it is cut */
    CU_ASSERT_TRUE_FATAL(ref.n > 100);
    CU_ASSERT_EQUAL(run(d, trace, out, NULL), 3);
    CU_ASSERT_EQUAL(it_file_has(err, "damaged after packet"), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"ok\": false"), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "damaged after packet"), 1);
    char want[64];
    snprintf(want, sizeof(want), "\"packets_in\": %zu,", ref.n);
    CU_ASSERT_EQUAL(it_file_has(rep, want), 2); /* every intact packet ran */
    tu_pcap_free(&ref);
    tu_rmrf(d);
    free(d);
}

static void test_missing_fifo_dir(void)
{
    char *d = tu_mkdtemp("rin");
    char trace[4200], out[4200], err[4300];
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    struct stat st;
    snprintf(trace, sizeof(trace), "%s/missing.pcap", d);
    CU_ASSERT_EQUAL(run(d, trace, out, NULL), 1);
    CU_ASSERT_EQUAL(it_file_has(err, "missing.pcap: cannot open the trace"), 1);
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    /* A FIFO: the scan would drain it and DPDK's driver would wait for ever. A
     * writer is kept open so that, unfixed, the run hangs (timeout: exit 137). */
    snprintf(trace, sizeof(trace), "%s/fifo", d);
    CU_ASSERT_EQUAL_FATAL(mkfifo(trace, 0600), 0);
    char src[4096];
    tu_trace("hping3.pcap", src, sizeof(src));
    CU_ASSERT_EQUAL(tu_sh(NULL, "(timeout 120 cat '%s' > '%s' &)", src, trace), 0);
    CU_ASSERT_EQUAL(run(d, trace, out, NULL), 2);
    CU_ASSERT_EQUAL(it_file_has(err, "not a regular file (a FIFO)"), 1);
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    int fd = open(trace, O_RDONLY | O_NONBLOCK); /* lets the writer open, fail and exit */
    if (fd >= 0)
        close(fd);
    CU_ASSERT_EQUAL(run(d, d, out, NULL), 2);
    CU_ASSERT_EQUAL(it_file_has(err, "not a regular file (a directory)"), 1);
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    tu_rmrf(d);
    free(d);
}

/* A FIFO or a directory as the chain file: refused (exit 2) naming what it is.
 * Unfixed, open() of the FIFO blocks for ever, deaf to signals (timeout: 137). */
static void test_chain_not_a_file(void)
{
    char *d = tu_mkdtemp("rin");
    char fifo[4200], out[4200], o[4200], err[4300], trace[4096];
    tu_trace("hping3.pcap", trace, sizeof(trace));
    snprintf(fifo, sizeof(fifo), "%s/chain.yaml", d);
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(o, sizeof(o), "%s/run", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
    CU_ASSERT_EQUAL(tu_sh(o, "timeout -s KILL 60 '%s' run '%s' --trace '%s' --out '%s'", tu_bin(),
                          fifo, trace, out),
                    2);
    CU_ASSERT_EQUAL(it_file_has(err, "chain.yaml: not a regular file (a FIFO)"), 1);
    CU_ASSERT_EQUAL(tu_sh(o, "timeout -s KILL 60 '%s' run '%s' --trace '%s' --out '%s'", tu_bin(),
                          d, trace, out),
                    2);
    CU_ASSERT_EQUAL(it_file_has(err, "not a regular file (a directory)"), 1);
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    tu_rmrf(d);
    free(d);
}

/* A trace run stopped by SIGTERM once its progress shows packets going in. */
/* Sends the signals named in sigs (pkill names, in order) to a run once its
 * progress shows packets going in; the first one decides: exit 128 + first,
 * its number in the message, report.json saying "interrupted". */
static void stop_mid_trace(const char *const *sigs, int first)
{
    char *d = tu_mkdtemp("rin");
    char trace[4096], out[4200], rep[4300], err[4300];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    char chain[4096], cmd[32768];
    chain_path(chain, sizeof(chain));
    snprintf(cmd, sizeof(cmd),
             "timeout -s KILL 120 '%s' run '%s' --trace '%s' --out '%s' --rate 200 --progress "
             "2> '%s'",
             tu_bin(), chain, trace, out, err);
    pid_t pid = it_spawn_sh(cmd);
    CU_ASSERT_TRUE_FATAL(pid > 0);
    bool seen = it_wait_progress(err, 1, 0); /* the input is being read */
    CU_ASSERT_TRUE(seen);
    CU_ASSERT_EQUAL(tu_sh(NULL, "pkill -%s -f 'rewind [r]un .*%s'", sigs[0], out), 0);
    for (int i = 1; sigs[i]; i++) /* it may have ended already: no check */
        tu_sh(NULL, "pkill -%s -f 'rewind [r]un .*%s'", sigs[i], out);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 128 + first);
    char want[64];
    snprintf(want, sizeof(want), "interrupted by signal %d ", first);
    CU_ASSERT_EQUAL(it_file_has(err, want), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"interrupted\": true"), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"ok\": false"), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"packets_in\": 2012,"), 0);
    tu_rmrf(d);
    free(d);
}

static void test_sigterm_mid_trace(void)
{
    static const char *const sigs[] = {"TERM", NULL};
    stop_mid_trace(sigs, SIGTERM);
}

/* SIGHUP (a closed terminal) killed the run by default: no report at all. */
static void test_sighup_mid_trace(void)
{
    static const char *const sigs[] = {"HUP", NULL};
    stop_mid_trace(sigs, SIGHUP);
}

/* A ^C after a TERM: the exit code said 130 under a message that said 15. */
static void test_term_then_int(void)
{
    static const char *const sigs[] = {"TERM", "INT", NULL};
    stop_mid_trace(sigs, SIGTERM);
}

/* Entries under dir whose mode has a bit of `bits` (printed when `show`). */
static int with_bits(const char *dir, int bits, bool show)
{
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "find '%s' -perm /%03o", dir, bits);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    char line[4400];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (show)
            fprintf(stderr, "  mode has %03o: %s", bits, line);
        n++;
    }
    pclose(f);
    return n;
}

static void test_private_by_default(void)
{
    char *d = tu_mkdtemp("rin");
    char trace[4096], out[4200], log[4200], err[4300];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    /* umask 022, the common default, would give 0755/0644 */
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "umask 022; '%s' log ingest --log '%s' --trace '%s' -q", tu_bin(), log, trace),
        0);
    CU_ASSERT_EQUAL(with_bits(log, 077, true), 0);
    char cmd[8400];
    chain_path(cmd, sizeof(cmd));
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "umask 022; '%s' run '%s' --trace '%s' --out '%s' >/dev/null",
                                tu_bin(), cmd, trace, out),
                          0);
    CU_ASSERT_TRUE(tu_count_dir(out) >= 5);
    CU_ASSERT_EQUAL(with_bits(out, 077, true), 0);
    /* --umask 027: the operator's group may read, nobody else */
    tu_rmrf(out);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "umask 022; '%s' --umask 027 run '%s' --trace '%s' --out '%s' >/dev/null",
              tu_bin(), cmd, trace, out),
        0);
    CU_ASSERT_TRUE(with_bits(out, 040, false) >= 3);
    CU_ASSERT_EQUAL(with_bits(out, 007, true), 0);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' --umask 8 run '%s' 2>'%s'", tu_bin(), cmd, err), 2);
    CU_ASSERT_EQUAL(it_file_has(err, "not an octal mode"), 1);
    tu_rmrf(d);
    free(d);
}

/* The EAL makes /var/run/dpdk/rewind-PID (or under $XDG_RUNTIME_DIR) even with
 * --no-shconf; every command used to leave it. */
static void test_no_dpdk_dir_left(void)
{
    char *d = tu_mkdtemp("rin");
    char trace[4096], out[4200], pidf[4300];
    tu_trace("hping3.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(pidf, sizeof(pidf), "%s/pid", d);
    char chain[4096];
    chain_path(chain, sizeof(chain));
    /* A directory a dead rewind left (kill -9), with the telemetry socket older
     * builds kept there: the next run removes it. Root's EAL uses /var/run/dpdk. */
    char dead[4200] = "";
    if (geteuid() == 0) {
        pid_t child = fork();
        if (child == 0)
            _exit(0);
        waitpid(child, NULL, 0);
        snprintf(dead, sizeof(dead), "/var/run/dpdk/rewind-%d", (int)child);
        mkdir("/var/run/dpdk", 0700);
        CU_ASSERT_EQUAL(mkdir(dead, 0700), 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%.60s/dpdk_telemetry.v2", dead);
        int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        CU_ASSERT_EQUAL(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        close(fd);
    }
    time_t t0 = time(NULL);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "sh -c 'echo $$ > \"%s\"; exec \"%s\" run \"%s\" --trace \"%s\" "
                                "--out \"%s\"' >/dev/null",
                                pidf, tu_bin(), chain, trace, out),
                          0);
    size_t len;
    char *pid = tu_slurp(pidf, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pid);
    pid[strcspn(pid, "\n")] = '\0';
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char a[4200], b[4200];
    snprintf(a, sizeof(a), "/var/run/dpdk/rewind-%s", pid);
    snprintf(b, sizeof(b), "%s/dpdk/rewind-%s", xdg ? xdg : "/nonexistent", pid);
    /* A directory of the same pid may be older: left by a process of an earlier
     * boot or run that had this pid (the machine keeps thousands). */
    struct stat st;
    CU_ASSERT_FALSE(!stat(a, &st) && st.st_mtime >= t0);
    CU_ASSERT_FALSE(!stat(b, &st) && st.st_mtime >= t0);
    CU_ASSERT_TRUE(!*dead || stat(dead, &st) != 0);
    free(pid);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "a truncated trace: intact packets run, exit 3, report says damaged",
                test_truncated_trace);
    CU_add_test(s, "a missing trace exits 1; a FIFO or a directory is refused up front",
                test_missing_fifo_dir);
    CU_add_test(s, "SIGTERM before the end of a trace: exit 143, report says interrupted",
                test_sigterm_mid_trace);
    CU_add_test(s, "SIGHUP stops a trace run like SIGTERM: exit 129, report written",
                test_sighup_mid_trace);
    CU_add_test(s, "TERM then INT: the first signal names the exit code and the message",
                test_term_then_int);
    CU_add_test(s, "what run and ingest write is private; --umask 027 shares with the group",
                test_private_by_default);
    CU_add_test(s, "no DPDK runtime directory is left behind, nor one of a dead run",
                test_no_dpdk_dir_left);
    CU_add_test(s, "a FIFO or a directory as the chain file is refused, exit 2",
                test_chain_not_a_file);
}

int main(void)
{
    return tu_main("run_input", add);
}
