/*
 * test_crash.c - `kill -9` at random instants during ingest. After every kill:
 * `log verify` passes, every packet below the last durable clock the process
 * reported is in the log and equal to the trace, what was committed is a prefix
 * of the trace, and the next run's clocks start above every clock handed out.
 *
 * RW_CRASH_ROUNDS sets the number of mid-run kills (default 8; the soak runs more).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "rw_common.h"

/* Four copies of the LAN trace, so an ingest lasts long enough to be hit. */
static void make_big(const char *path, struct tu_pcap *big)
{
    char real[4096];
    struct tu_pcap one;
    tu_trace("external/real.pcap", real, sizeof(real));
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(real, &one), 0);
    big->n = one.n * 4;
    big->pkts = calloc(big->n, sizeof(*big->pkts));
    uint64_t span = one.pkts[one.n - 1].ts_ns - one.pkts[0].ts_ns + 1000;
    for (size_t c = 0; c < 4; c++)
        for (size_t i = 0; i < one.n; i++) {
            struct tu_pkt *p = &big->pkts[c * one.n + i];
            *p = one.pkts[i];
            p->ts_ns += c * span;
            p->data = malloc(p->caplen);
            memcpy(p->data, one.pkts[i].data, p->caplen);
        }
    tu_pcap_free(&one);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(path, big), 0);
}

static uint64_t json_u64(const char *path, const char *key)
{
    char *s = tu_slurp(path, NULL);
    char *p = s ? strstr(s, key) : NULL;
    uint64_t v = p ? strtoull(p + strlen(key), NULL, 10) : UINT64_MAX;
    free(s);
    return v;
}

/* The last "durable below clock D" a progress line reported (0 if none). */
static uint64_t last_durable(const char *path)
{
    char *s = tu_slurp(path, NULL);
    uint64_t d = 0;
    const char *key = "durable below clock ";
    for (char *p = s; p && (p = strstr(p, key)); p += strlen(key))
        d = strtoull(p + strlen(key), NULL, 10);
    free(s);
    return d;
}

static pid_t spawn_ingest(const char *trace, const char *log, const char *mode, const char *err)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(err, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(127);
        execl(tu_bin(), "rewind", "log", "ingest", "--log", log, "--trace", trace, "--durability",
              mode, "--progress", "--commit-us", "500", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static uint64_t stat_reserved(const char *d, const char *log)
{
    char o[4200], js[4300];
    snprintf(o, sizeof(o), "%s/stat", d);
    snprintf(js, sizeof(js), "%s.stdout", o);
    if (tu_sh(o, "'%s' log stat '%s' --json", tu_bin(), log) != 0)
        return 0; /* no log yet */
    return json_u64(js, "\"clock_reserved\": ");
}

/* Checks the run that started at clock `from`: the log's packets from there on
 * are a prefix of the trace covering every durable clock. */
static void check_run(const char *d, const char *log, uint64_t from, uint64_t durable,
                      const struct tu_pcap *big, size_t *kept)
{
    char out[4200], args[64];
    snprintf(out, sizeof(out), "%s/run.pcap", d);
    snprintf(args, sizeof(args), "--from-clock %llu", (unsigned long long)from);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, out, args), 0);
    struct tu_pcap got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    if (durable > from)
        CU_ASSERT_TRUE(got.n >= durable - from);
    CU_ASSERT_TRUE(got.n <= big->n);
    CU_ASSERT_EQUAL(it_diff(big, 0, &got, 0, got.n <= big->n ? got.n : 0, 1), -1);
    *kept = got.n;
    tu_pcap_free(&got);
}

/* Microseconds from an ingest's first progress line to its exit. */
static useconds_t data_phase_us(const char *trace, const char *log, const char *err)
{
    pid_t pid = spawn_ingest(trace, log, "process", err);
    for (int w = 0; w < 5000 && !it_file_has(err, "ingest: "); w++)
        usleep(1000);
    uint64_t t0 = rw_now_ns();
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_FATAL(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint64_t us = (rw_now_ns() - t0) / 1000;
    return (useconds_t)(us > 2000 ? us : 2000);
}

static void test_kill_during_ingest(void)
{
    char *d = tu_mkdtemp("crash");
    char trace[4200], log[4200], err[4200];
    snprintf(trace, sizeof(trace), "%s/big.pcap", d);
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(err, sizeof(err), "%s/ingest.err", d);
    struct tu_pcap big;
    make_big(trace, &big);
    const char *env = getenv("RW_CRASH_ROUNDS");
    int rounds = env ? atoi(env) : 8;
    /* Kill instants scale with how long the data phase (first progress line to
     * exit) takes on this machine; start-up is excluded, it varies most. */
    char calib[4300], cerr[4300];
    snprintf(calib, sizeof(calib), "%s/calibration", d);
    snprintf(cerr, sizeof(cerr), "%s/calibration.err", d);
    useconds_t span = data_phase_us(trace, calib, cerr);
    tu_rmrf(calib);
    unsigned seed = (unsigned)time(NULL);
    fprintf(stderr, "  crash test: %d kills, seed %u, %zu packets, the data phase takes %u ms\n",
            rounds, seed, big.n, span / 1000);
    srand(seed);
    uint64_t prev_end = 0;
    int killed = 0, midway = 0;
    /* A kill that lands after the end (the machine got faster than calibrated)
     * still checks the log, and halves the window for the next round, so the
     * rounds that count are mid-run on any machine. */
    for (int r = 0; r < 3 * rounds && midway < rounds; r++) {
        uint64_t from = stat_reserved(d, log);
        CU_ASSERT_TRUE(from >= prev_end); /* never below a clock handed out before */
        const char *mode = r % 3 == 2 ? "power" : "process";
        unlink(err); /* so the wait below sees this round's progress, not the last one's */
        pid_t pid = spawn_ingest(trace, log, mode, err);
        /* Kill in the data phase: after its first progress line, at a random point
         * of the first three quarters of it. */
        for (int w = 0; w < 5000 && !it_file_has(err, "ingest: "); w++)
            usleep(2000);
        usleep((useconds_t)rand() % (span * 3 / 4 + 1));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        killed += WIFSIGNALED(st);
        uint64_t durable = last_durable(err);
        CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s' >/dev/null", tu_bin(), log), 0);
        size_t kept = 0;
        check_run(d, log, from, durable, &big, &kept);
        fprintf(stderr, "  round %d (%s): killed=%d from %llu, durable %llu, kept %zu\n", r, mode,
                WIFSIGNALED(st), (unsigned long long)from, (unsigned long long)durable, kept);
        prev_end = from + kept;
        if (kept > 0 && kept < big.n)
            midway++;
        else if (kept == big.n)
            span /= 2;
    }
    CU_ASSERT_TRUE(killed >= rounds); /* the kills really landed mid-run */
    CU_ASSERT_EQUAL(midway, rounds);  /* ...while packets were being logged */
    /* And a run left alone still completes on the recovered log. */
    uint64_t from = stat_reserved(d, log);
    CU_ASSERT_TRUE(from >= prev_end);
    CU_ASSERT_EQUAL(it_ingest(d, trace, log, NULL), 0);
    size_t kept = 0;
    check_run(d, log, from, from + big.n, &big, &kept);
    CU_ASSERT_EQUAL(kept, big.n);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s' >/dev/null", tu_bin(), log), 0);
    tu_pcap_free(&big);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "kill -9 at random instants loses nothing committed", test_kill_during_ingest);
}

int main(void)
{
    return tu_main("crash", add);
}
