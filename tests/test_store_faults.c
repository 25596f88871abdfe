/*
 * test_store_faults.c - a Redis store that stops answering (SIGSTOP: the kernel
 * still accepts connections, nothing replies). Before, every worker that waited
 * on it was taken for hung or failed, and replaced by one that waited again: a
 * silent failover storm, and SIGTERM waited for Redis to come back. Now a store
 * that does not answer within its timeout (?timeout=MS) is one error that names
 * it and ends the run, with at most the failover already under way, and SIGTERM
 * during the stall ends the run within the timeout.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

struct stalled {
    char *d;
    char out[4200], err[4300], rep[4300];
    pid_t rs, run;
};

/* Starts Redis and a paced firewall run on it; returns once the progress line
 * shows packets out. */
static void start(struct stalled *s, int timeout_ms)
{
    s->d = tu_mkdtemp("stall");
    int port;
    s->rs = it_redis_start(s->d, &port);
    CU_ASSERT_TRUE_FATAL(s->rs > 0);
    char src[4096], chain[4200], trace[4096], cmd[32768];
    snprintf(src, sizeof(src), "%s/docs/chains/firewall.yaml", getenv("RW_SRC"));
    snprintf(chain, sizeof(chain), "%s/fw.yaml", s->d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's|^store: .*|store: redis://127.0.0.1:%d?timeout=%d|' '%s' > '%s'", port,
              timeout_ms, src, chain),
        0);
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    snprintf(s->out, sizeof(s->out), "%s/out", s->d);
    snprintf(s->err, sizeof(s->err), "%s/run.stderr", s->d);
    snprintf(s->rep, sizeof(s->rep), "%s/report.json", s->out);
    /* timeout: unfixed, a run that never ends fails the test (137) */
    snprintf(cmd, sizeof(cmd),
             "exec timeout -s KILL 60 '%s' run '%s' --trace '%s' --out '%s' --rate 300 "
             "--progress 2> '%s'",
             tu_bin(), chain, trace, s->out, s->err);
    s->run = it_spawn_sh(cmd);
    CU_ASSERT_TRUE_FATAL(s->run > 0);
    bool out = it_wait_progress(s->err, 1, 1); /* the workers are using the store */
    CU_ASSERT_TRUE(out);
}

static int finish(struct stalled *s)
{
    int st;
    waitpid(s->run, &st, 0);
    kill(s->rs, SIGCONT);
    kill(s->rs, SIGTERM);
    waitpid(s->rs, NULL, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void done(struct stalled *s)
{
    CU_ASSERT_EQUAL(tu_sh(NULL, "pgrep -f 'rewind [w]orker.*%s' >/dev/null", s->out), 1);
    tu_rmrf(s->d);
    free(s->d);
}

static void test_stalled_redis(void)
{
    struct stalled s;
    start(&s, 500);
    CU_ASSERT_EQUAL(kill(s.rs, SIGSTOP), 0);
    int rc = finish(&s);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_TRUE(it_file_has(s.err, "did not answer within 500 ms") >= 1);
    CU_ASSERT_EQUAL(it_file_has(s.err, "did not answer in time (stalled or overloaded)"), 1);
    CU_ASSERT_EQUAL(it_file_has(s.rep, "did not answer in time (stalled or overloaded)"), 1);
    /* one error, not a storm: at most a failover that was under way */
    CU_ASSERT_EQUAL(
        it_file_has(s.rep, "\"failovers\": 0,") + it_file_has(s.rep, "\"failovers\": 1,"), 1);
    done(&s);
}

static void test_sigterm_during_stall(void)
{
    struct stalled s;
    /* A store timeout longer than the time SIGTERM may take: the run must not
     * wait for the store's answer (unfixed: it hung until Redis came back). */
    start(&s, 30000);
    CU_ASSERT_EQUAL(kill(s.rs, SIGSTOP), 0);
    CU_ASSERT_EQUAL(tu_sh(NULL, "pkill -TERM -f 'rewind [r]un .*%s'", s.out), 0);
    int rc = finish(&s);
    CU_ASSERT_EQUAL(rc, 143);
    CU_ASSERT_EQUAL(it_file_has(s.err, "interrupted by signal 15"), 1);
    CU_ASSERT_EQUAL(it_file_has(s.err, "the drain released nothing for"), 1);
    CU_ASSERT_EQUAL(it_file_has(s.rep, "\"interrupted\": true"), 1);
    done(&s);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "a stalled Redis is one error naming it, not a failover storm",
                test_stalled_redis);
    CU_add_test(s, "SIGTERM during a long Redis stall ends the run once the drain is stuck",
                test_sigterm_during_stall);
}

int main(void)
{
    return tu_main("store_faults", add);
}
