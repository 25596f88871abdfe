/*
 * test_straggler.c - slow workers cloned (design.md: Stragglers): `rewind chaos
 * --slow` makes one worker 50 times slower (SIGSTOP/SIGCONT duty cycle: it
 * keeps its heartbeat, so failover never sees it); the coordinator finds it by
 * the CPU it gets, a hot spare tails the log beside it with its outputs held,
 * and whichever copy is ahead stays. Every case checks the run against a
 * fault-free one with `rewind verify` (nothing lost, nothing twice), and that
 * a clone was in fact made: a slot of each catalog chain (stage 2 in trojan and
 * full: the clone's replay runs the upstream NFs); without duplicate
 * suppression verify fails; a clone killed while it replays; the straggler
 * killed while its clone replays; a straggler that gets well by itself;
 * `action: restart`.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

struct strag_case {
    const char *chain; /* docs/chains/ */
    const char *trace; /* traces/, repeated to about REPEAT_TO packets */
    const char *slow;  /* the slot made slow */
};

#define REPEAT_TO 60000
/* Input paced so that a run lasts seconds in every build (Release empties these
 * traces in a fraction of one), and a worker 50 times slower cannot keep up. */
#define RATE 20000

static const struct strag_case catalog[] = {
    {"firewall.yaml", "external/real.pcap", "fw[1]:50"},
    {"nat.yaml", "nmap_sT_top1000.pcap", "nat[0]:50"},
    {"portscan.yaml", "nmap_sT_top1000.pcap", "scan[0]:50"},
    {"trojan.yaml", "trojan_sequence.pcap", "trojan[0]:50"},
    {"lb.yaml", "external/real.pcap", "lb[0]:50"},
    {"full.yaml", "nmap_sT_top1000.pcap", "scan[1]:50"},
};

/* Copies of the trace, each shifted in time past the one before, up to about
 * REPEAT_TO packets: long enough at full speed for a 10x slow worker to queue. */
static void repeated(const char *d, const char *name, char *out, size_t cap)
{
    char in[4096];
    tu_trace(name, in, sizeof(in));
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    snprintf(out, cap, "%s/x-%s", d, base);
    struct stat st;
    if (!stat(out, &st))
        return;
    struct tu_pcap p, o = {0};
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(in, &p), 0);
    CU_ASSERT_FATAL(p.n > 0);
    size_t copies = (REPEAT_TO + p.n - 1) / p.n;
    o.pkts = calloc(copies * p.n, sizeof(*o.pkts));
    CU_ASSERT_PTR_NOT_NULL_FATAL(o.pkts);
    uint64_t span = p.pkts[p.n - 1].ts_ns - p.pkts[0].ts_ns + 1000000;
    for (size_t c = 0; c < copies; c++)
        for (size_t i = 0; i < p.n; i++) {
            o.pkts[o.n] = p.pkts[i];
            o.pkts[o.n++].ts_ns += c * span;
        }
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(out, &o), 0);
    free(o.pkts);
    tu_pcap_free(&p);
}

static int rw(const char *cmd, const char *chain, const char *trace, const char *out,
              const char *extra)
{
    char log[8192];
    snprintf(log, sizeof(log), "%s.txt", out);
    return tu_sh(log, "'%s' %s '%s/docs/chains/%s' --trace '%s' --out '%s' %s", tu_bin(), cmd,
                 getenv("RW_SRC"), chain, trace, out, extra ? extra : "");
}

/* A number after `"key": ` in DIR/report.json (-1: absent). */
static long report_num(const char *dir, const char *key)
{
    char path[8192], needle[128];
    snprintf(path, sizeof(path), "%s/report.json", dir);
    snprintf(needle, sizeof(needle), "\"%s\": ", key);
    char *s = tu_slurp(path, NULL);
    char *p = s ? strstr(s, needle) : NULL;
    long v = p ? strtol(p + strlen(needle), NULL, 10) : -1;
    free(s);
    return v;
}

/* verify's exit status; its report in RUN.verify.stdout. */
static int verify(const char *ref, const char *run)
{
    char log[8192];
    snprintf(log, sizeof(log), "%s.verify", run);
    return tu_sh(log, "'%s' verify '%s' '%s'", tu_bin(), ref, run);
}

static void check_equivalent(const char *ref, const char *run)
{
    char log[8192];
    snprintf(log, sizeof(log), "%s.verify.stdout", run);
    int rc = verify(ref, run);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(it_file_has(log, "lost 0, duplicated 0, changed 0, alerts missing 0, extra 0"),
                    1);
    CU_ASSERT_EQUAL(report_num(run, "broken"), 0);
    if (rc)
        tu_sh(NULL, "cat '%s' >&2", log);
}

/* Every clone ended one way or another, and the report's counts agree. */
static long check_clones(const char *run)
{
    long clones = report_num(run, "clones");
    long won = report_num(run, "clone_won"), kept = report_num(run, "straggler_won");
    long lost = report_num(run, "clone_lost");
    fprintf(stderr, "  %s: %ld clone(s): %ld took the slot, %ld retired, %ld lost\n", run, clones,
            won, kept, lost);
    CU_ASSERT_TRUE(clones >= 1);
    CU_ASSERT_EQUAL(won + kept + lost, clones);
    return clones;
}

static void ref_run(const char *ref, const struct strag_case *c, const char *trace)
{
    struct stat st;
    if (stat(ref, &st))
        CU_ASSERT_EQUAL_FATAL(rw("run", c->chain, trace, ref, "--spares 2"), 0);
}

static void test_catalog(void)
{
    char *d = tu_mkdtemp("strag");
    for (size_t i = 0; i < sizeof(catalog) / sizeof(catalog[0]); i++) {
        const struct strag_case *c = &catalog[i];
        char trace[4200], ref[4200], run[4300], extra[128];
        repeated(d, c->trace, trace, sizeof(trace));
        snprintf(ref, sizeof(ref), "%s/ref-%s", d, c->chain);
        snprintf(run, sizeof(run), "%s/slow-%s", d, c->chain);
        ref_run(ref, c, trace);
        snprintf(extra, sizeof(extra), "--slow '%s' --rate %u", c->slow, RATE);
        int rc = rw("chaos", c->chain, trace, run, extra);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc)
            tu_sh(NULL, "tail -3 '%s.txt.stderr' >&2", run);
        check_clones(run);
        check_equivalent(ref, run);
    }
    tu_rmrf(d);
    free(d);
}

/* Without duplicate suppression the clone's copies reach the output: verify must
 * see them (so the cases above can fail). A firewall that lets everything through,
 * so that every input the clone handles twice is an output twice. */
static void test_no_dedup(void)
{
    char *d = tu_mkdtemp("strag-nodedup");
    char trace[4200], ref[4200], run[4300], chain[4300], log[8192];
    repeated(d, "external/real.pcap", trace, sizeof(trace));
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/nodedup", d);
    snprintf(chain, sizeof(chain), "%s/allow.yaml", d);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "printf 'name: allow\\nstore: lmdb:store\\nnfs:\\n  - {name: fw, "
                                "type: firewall, instances: 3, flowspace: 5tuple, config: "
                                "{default: allow}}\\n' > '%s'",
                                chain),
                          0);
    snprintf(log, sizeof(log), "%s.txt", ref);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(log, "'%s' run '%s' --trace '%s' --out '%s'", tu_bin(), chain, trace, ref), 0);
    snprintf(log, sizeof(log), "%s.txt", run);
    CU_ASSERT_EQUAL(
        tu_sh(log,
              "'%s' chaos '%s' --trace '%s' --out '%s' --slow 'fw[1]:50' --no-dedup --rate 20000",
              tu_bin(), chain, trace, run),
        0);
    CU_ASSERT_TRUE(report_num(run, "clone_won") >= 1);
    CU_ASSERT_NOT_EQUAL(verify(ref, run), 0);
    snprintf(log, sizeof(log), "%s.verify.stdout", run);
    CU_ASSERT_EQUAL(it_file_has(log, "duplicated 0,"), 0);
    tu_rmrf(d);
    free(d);
}

/* The pid of a clone of run, once one has started (its alerts file is named
 * after it, and opened before it replays), or 0 when the run ended first. */
static pid_t wait_clone(const char *run, pid_t chaos)
{
    char dir[8192];
    snprintf(dir, sizeof(dir), "%s/alerts", run);
    for (;;) {
        DIR *dd = opendir(dir);
        struct dirent *de;
        pid_t pid = 0;
        while (dd && !pid && (de = readdir(dd))) {
            const char *p = strstr(de->d_name, ".clone-");
            pid = p ? (pid_t)atoi(p + 7) : 0;
        }
        if (dd)
            closedir(dd);
        if (pid)
            return pid;
        if (waitpid(chaos, NULL, WNOHANG) == chaos)
            return 0;
        usleep(2000);
    }
}

/* The worker serving slot `what` ("--nf=0 --instance=1") of run: the first. */
static pid_t slot_worker(const char *run, const char *what)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "pgrep -o -f 'rewind [w]orker.*%s.*%s'", what, run);
    FILE *p = popen(cmd, "r");
    int pid = 0;
    if (!p || fscanf(p, "%d", &pid) != 1)
        pid = 0;
    if (p)
        pclose(p);
    return pid;
}

/* A chaos run in the background; once a clone runs, its clone or its straggler
 * is killed. Returns false when the kill came too late to test that (the clone
 * had already caught up and taken the slot): the caller runs it again. */
static bool kill_case_once(const char *d, bool kill_clone)
{
    const struct strag_case *c = &catalog[0];
    char trace[4200], ref[4200], run[4300], cmd[32768];
    repeated(d, c->trace, trace, sizeof(trace));
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/killed", d);
    tu_rmrf(run);
    ref_run(ref, c, trace);
    snprintf(cmd, sizeof(cmd),
             "exec '%s' chaos '%s/docs/chains/%s' --trace '%s' --out '%s' --slow 'fw[1]:50' --rate "
             "20000 "
             ">'%s.txt.stdout' 2>'%s.txt.stderr'",
             tu_bin(), getenv("RW_SRC"), c->chain, trace, run, run, run);
    pid_t chaos = it_spawn_sh(cmd);
    /* The straggler's pid before any clone exists: the kill then takes no
     * more than the clone's alerts file showing up. */
    pid_t slow = 0;
    while (!kill_clone && !(slow = slot_worker(run, "--nf=0 --instance=1 ")) &&
           waitpid(chaos, NULL, WNOHANG) != chaos)
        usleep(2000);
    pid_t clone = wait_clone(run, chaos);
    if (clone <= 0) /* the run ended with no clone: what detection saw */
        tu_sh(NULL, "tail -3 '%s.txt.stderr' >&2; grep -A3 '\"stragglers\"' '%s/report.json' >&2",
              run, run);
    CU_ASSERT_TRUE_FATAL(clone > 0);
    pid_t victim = kill_clone ? clone : slow;
    CU_ASSERT_TRUE(victim > 0);
    if (victim > 0)
        kill(victim, SIGKILL);
    int st = 0;
    waitpid(chaos, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    check_clones(run);
    char report[8192];
    snprintf(report, sizeof(report), "%s/report.json", run);
    bool in_time = kill_clone ? report_num(run, "clone_lost") >= 1
                              : it_file_has(report, "\"outcome\": \"clone (worker died)\"") == 1;
    if (!in_time) {
        fprintf(stderr, "  the clone took the slot before the kill: again\n");
        CU_ASSERT_TRUE(report_num(run, "clone_won") >= 1);
    } else if (!kill_clone) { /* the clone takes the slot: a failover that needed no spare */
        CU_ASSERT_EQUAL(it_file_has(report, "\"reason\": \"killed\""), 1);
    }
    check_equivalent(ref, run);
    return in_time;
}

static void kill_case(const char *tag, bool kill_clone)
{
    char *d = tu_mkdtemp(tag);
    bool done = false;
    for (int attempt = 0; attempt < 4 && !done; attempt++)
        done = kill_case_once(d, kill_clone);
    CU_ASSERT_TRUE(done);
    tu_rmrf(d);
    free(d);
}

static void test_kill_clone(void)
{
    kill_case("strag-killclone", true);
}

static void test_kill_straggler(void)
{
    kill_case("strag-killslow", false);
}

/* Slow for its first 1.5 s only: whichever copy stays, nothing is lost or twice. */
static void test_recovers(void)
{
    char *d = tu_mkdtemp("strag-recovers");
    const struct strag_case *c = &catalog[0];
    char trace[4200], ref[4200], run[4300];
    repeated(d, c->trace, trace, sizeof(trace));
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/recovers", d);
    ref_run(ref, c, trace);
    CU_ASSERT_EQUAL(rw("chaos", c->chain, trace, run, "--slow 'fw[1]:50:1500' --rate 20000"), 0);
    check_equivalent(ref, run);
    tu_rmrf(d);
    free(d);
}

/* `stragglers: {action: restart}`: the straggler is failed over to a spare. */
static void test_restart(void)
{
    char *d = tu_mkdtemp("strag-restart");
    const struct strag_case *c = &catalog[0];
    char trace[4200], ref[4200], run[4300], chain[4300];
    repeated(d, c->trace, trace, sizeof(trace));
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/restart", d);
    ref_run(ref, c, trace);
    snprintf(chain, sizeof(chain), "%s/restart.yaml", d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL,
              "sed 's#\\.\\./\\.\\./traces#%s/traces#' '%s/docs/chains/%s' > '%s' && "
              "echo 'stragglers: {action: restart, for_ms: 100}' >> '%s'",
              getenv("RW_SRC"), getenv("RW_SRC"), c->chain, chain, chain),
        0);
    char log[8192];
    snprintf(log, sizeof(log), "%s.txt", run);
    CU_ASSERT_EQUAL(tu_sh(log,
                          "'%s' chaos '%s' --trace '%s' --out '%s' --slow 'fw[1]:50' --rate 20000",
                          tu_bin(), chain, trace, run),
                    0);
    char report[8192];
    snprintf(report, sizeof(report), "%s/report.json", run);
    CU_ASSERT_TRUE(report_num(run, "restarts") >= 1);
    CU_ASSERT_TRUE(it_file_has(report, "\"reason\": \"straggler\"") >= 1);
    check_equivalent(ref, run);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "a 50x straggler in every catalog chain is cloned, output as without it",
                test_catalog);
    CU_add_test(s, "without duplicate suppression the clone's copies show", test_no_dedup);
    CU_add_test(s, "a clone killed while it replays leaves the slot to its worker",
                test_kill_clone);
    CU_add_test(s, "the straggler killed while its clone replays: the clone takes the slot",
                test_kill_straggler);
    CU_add_test(s, "a straggler that gets well by itself", test_recovers);
    CU_add_test(s, "action restart fails the straggler over", test_restart);
}

int main(void)
{
    return tu_main("straggler", add);
}
