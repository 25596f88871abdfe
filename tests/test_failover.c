/*
 * test_failover.c - failover end to end (design.md: The guarantee; Invariants, Recovery): workers
 * killed or hung mid-run are replaced by hot spares that replay their slots, and `rewind verify`
 * finds the run's output, packet by packet and alert by alert, equal to a fault-free run's. Every
 * catalog chain under `rewind chaos` (>= 10 kills and
 * >= 5 stalls); a kill without duplicate suppression shows duplicates (so the
 * check can fail); kills that land during a replay; two slots at once;
 * the store in a real redis-server; a worker killed while it holds the LMDB
 * write lock, and one killed in the drain at the end before its slot is
 * finished. The single kills that must land at one instant (those two, the one
 * without duplicate suppression) are held there by a hardware watchpoint, not
 * left to timing. RW_LONG=1 runs more seeds and more faults.
 */
#include <fcntl.h>
#include <lmdb.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "nfworker.h"

struct chain_case {
    const char *chain; /* docs/chains/ */
    const char *trace; /* NULL: the chain's own */
    unsigned rate;     /* input pace, so that faults land while it flows */
    long audited;      /* its NFs with a state audit (nf_def.audit) */
};

static const struct chain_case catalog[] = {
    {"firewall.yaml", "external/real.pcap", 20000, 0},
    {"nat.yaml", NULL, 800, 1},
    {"portscan.yaml", NULL, 800, 1},
    {"trojan.yaml", NULL, 800, 0},
    {"lb.yaml", "external/real.pcap", 20000, 1},
    {"full.yaml", "nmap_sT_top1000.pcap", 800, 2},
};

static bool long_run(void)
{
    const char *v = getenv("RW_LONG");
    return v && *v && strcmp(v, "0");
}

static void chain_path(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/docs/chains/%s", getenv("RW_SRC"), name);
}

/* `rewind CMD CHAIN [--trace T] --out OUT EXTRA`; its output in OUT.txt.std{out,err}. */
static int rw_cmd(const char *cmd, const struct chain_case *c, const char *out, const char *extra)
{
    char chain[4096], trace[4200] = "", log[8192];
    chain_path(c->chain, chain, sizeof(chain));
    if (c->trace) {
        char t[4096];
        tu_trace(c->trace, t, sizeof(t));
        snprintf(trace, sizeof(trace), "--trace '%s'", t);
    }
    snprintf(log, sizeof(log), "%s.txt", out);
    return tu_sh(log, "'%s' %s '%s' %s --out '%s' %s", tu_bin(), cmd, chain, trace, out,
                 extra ? extra : "");
}

/* `rewind verify REF RUN`: its exit status; its report in RUN.verify.stdout. */
static int verify(const char *ref, const char *run)
{
    char log[8192];
    snprintf(log, sizeof(log), "%s.verify", run);
    return tu_sh(log, "'%s' verify '%s' '%s'", tu_bin(), ref, run);
}

/* A number after `"key": ` in a JSON file written by rewind (-1: absent). */
static long json_num(const char *dir, const char *file, const char *key)
{
    char path[8192], needle[128];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(needle, sizeof(needle), "\"%s\": ", key);
    size_t len;
    char *s = tu_slurp(path, &len);
    char *p = s ? strstr(s, needle) : NULL;
    long v = p ? strtol(p + strlen(needle), NULL, 10) : -1;
    free(s);
    return v;
}

/* Output, alerts and the NFs' final state all equal to the fault-free run's, and
 * no invariant of that state broken: an op the store applied twice on a replay
 * (a NAT port taken again, a counter counted twice) fails here even where verify
 * canonicalises its effect on the output away. */
static void check_equivalent(const char *ref, const char *run)
{
    char log[8192], report[8192];
    snprintf(log, sizeof(log), "%s.verify.stdout", run);
    snprintf(report, sizeof(report), "%s/report.json", run);
    int rc = verify(ref, run);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(it_file_has(log, "lost 0, duplicated 0, changed 0, alerts missing 0, extra 0"),
                    1);
    CU_ASSERT_EQUAL(it_file_has(log, ", in one run only 0"), 1);
    CU_ASSERT_EQUAL(it_file_has(log, "invariants broken"), 0);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "broken"), 0);
    if (rc)
        tu_sh(NULL, "cat '%s' >&2", log);
}

/* The chains whose NFs summarise their state: their runs must have checked it. */
static void check_state_audited(const char *run, long nfs)
{
    CU_ASSERT_EQUAL(json_num(run, "report.json", "checked"), nfs);
    CU_ASSERT_EQUAL(json_num(run, "state.json", "checked"), nfs);
}

/* ---- chaos over the catalog ---- */

static void chaos_case(const char *d, const struct chain_case *c, unsigned seed, unsigned kill_ms,
                       unsigned stall_ms)
{
    char ref[4200], run[4300], extra[256];
    snprintf(ref, sizeof(ref), "%s/ref-%s", d, c->chain);
    snprintf(run, sizeof(run), "%s/chaos-%s-%u", d, c->chain, seed);
    struct stat st;
    if (stat(ref, &st))
        CU_ASSERT_EQUAL_FATAL(rw_cmd("run", c, ref, NULL), 0);
    snprintf(extra, sizeof(extra),
             "--rate %u --kill-every %u --stall-every %u --stall-ms 40 --seed %u", c->rate, kill_ms,
             stall_ms, seed);
    fprintf(stderr, "  %s seed %u\n", c->chain, seed);
    int rc = rw_cmd("chaos", c, run, extra);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        tu_sh(NULL, "tail -3 '%s.txt.stderr' >&2", run);
    /* Exit 3: the run ended but its state breaks an invariant; verify says more. */
    CU_ASSERT_TRUE_FATAL(rc == 0 || rc == 3);
    check_state_audited(ref, c->audited);
    check_state_audited(run, c->audited);
    long kills = json_num(run, "chaos.json", "kills");
    long stalls = json_num(run, "chaos.json", "stalls");
    /* Enough faults to matter; how many land depends on how many slots have a
     * worker to take one at each period (fewer on a loaded machine). */
    CU_ASSERT_TRUE(kills >= 4);
    CU_ASSERT_TRUE(stalls >= 2);
    /* Every kill is failed over (chaos spares slots that have finished), except
     * one whose slot finished between chaos picking it and the kill landing; and
     * nothing else fails: stalls are shorter than the heartbeat budget. */
    long failovers = json_num(run, "report.json", "failovers");
    char report[8192];
    snprintf(report, sizeof(report), "%s/report.json", run);
    CU_ASSERT_TRUE(failovers <= kills && failovers >= kills - 1);
    CU_ASSERT_EQUAL(it_file_has(report, "\"reason\": \"killed\""), failovers);
    if (failovers != kills)
        fprintf(stderr, "  %ld kills, %ld failovers (see %s)\n", kills, failovers, report);
    check_equivalent(ref, run);
}

static void test_chaos_catalog(void)
{
    char *d = tu_mkdtemp("chaos");
    unsigned seeds = long_run() ? 4 : 1;
    for (size_t i = 0; i < sizeof(catalog) / sizeof(catalog[0]); i++)
        for (unsigned s = 1; s <= seeds; s++)
            chaos_case(d, &catalog[i], (unsigned)(s * 7 + i), long_run() ? 60 : 150,
                       long_run() ? 100 : 250);
    tu_rmrf(d);
    free(d);
}

/* While one instance stalls or fails over (its replacement buffers live input,
 * so the link no longer pushes back), the others' output waits at the sink for
 * its marks: the root stops taking input once the chain holds --max-in-flight
 * clocks, so the sink never holds more (plus the root's last burst). Without
 * the bound the input never pauses (measured under a 50 ms kill storm: 6.3 GB
 * held in 210 s). */
static void test_in_flight_bound(void)
{
    char *d = tu_mkdtemp("inflight");
    const struct chain_case c = {"firewall.yaml", "external/real.pcap", 0, 0};
    char ref[4200], run[4300];
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/bounded", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", &c, ref, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(
        rw_cmd("chaos", &c, run,
               "--kill-every 100 --stall-every 50 --stall-ms 60 --seed 3 --max-in-flight 64"),
        0);
    long held = json_num(run, "report.json", "held_max");
    long pauses = json_num(run, "report.json", "input_pauses");
    fprintf(stderr, "  held at most %ld packets, input paused %ld times\n", held, pauses);
    CU_ASSERT_TRUE(json_num(run, "chaos.json", "stalls") >= 1);
    CU_ASSERT_TRUE(pauses >= 1);
    CU_ASSERT_TRUE(held >= 0 && held <= 64 + 64);
    check_equivalent(ref, run);
    tu_rmrf(d);
    free(d);
}

/* Packets matching poison in trace, counted with libpcap's own filter. */
static size_t count_matching(const struct tu_pcap *t, const char *poison)
{
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    struct bpf_program prog;
    CU_ASSERT_FATAL(dead && pcap_compile(dead, &prog, poison, 1, PCAP_NETMASK_UNKNOWN) == 0);
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct pcap_pkthdr h = {.caplen = t->pkts[i].caplen, .len = t->pkts[i].len};
        n += pcap_offline_filter(&prog, &h, t->pkts[i].data) != 0;
    }
    pcap_freecode(&prog);
    pcap_close(dead);
    return n;
}

/* A packet that kills every worker processing it (--poison: the crash of a
 * parser bug) is quarantined after two deaths of its slot on it: the run goes
 * on and exits 0, with the packet in quarantine.pcapng (0600), an event per
 * packet in alerts.json and the count in report.json; chaos kills landing
 * meanwhile do not count as deaths on a packet. The output equals a fault-free
 * run whose input edge filters those packets out, and differs from one that
 * does not by exactly them (their fate: dropped). */
static void test_packet_of_death(void)
{
    static const char poison[] = "tcp port 80 and tcp[tcpflags] & tcp-push != 0";
    char *d = tu_mkdtemp("poison");
    char chain[4096], trace[4096], ref_chain[4200], ref[4200], plain[4200], run[4200];
    chain_path("firewall.yaml", chain, sizeof(chain));
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(ref_chain, sizeof(ref_chain), "%s/ref.yaml", d);
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(plain, sizeof(plain), "%s/plain", d);
    snprintf(run, sizeof(run), "%s/run", d);
    struct tu_pcap t;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &t), 0);
    size_t n = count_matching(&t, poison);
    tu_pcap_free(&t);
    CU_ASSERT_FATAL(n >= 3);
    /* REF: the same chain, its input edge filtering the poison out. */
    size_t len;
    char *text = tu_slurp(chain, &len);
    static const char edge[] = "- {from: input, to: fw}";
    char *at = text ? strstr(text, edge) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    FILE *f = fopen(ref_chain, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "%.*s- {from: input, to: fw, filter: \"not (%s)\"}%s", (int)(at - text), text,
            poison, at + strlen(edge));
    fclose(f);
    free(text);
    char log[8192];
    snprintf(log, sizeof(log), "%s.txt", ref);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(log, "'%s' run '%s' --trace '%s' --out '%s'", tu_bin(), ref_chain, trace, ref), 0);
    snprintf(log, sizeof(log), "%s.txt", plain);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(log, "'%s' run '%s' --trace '%s' --out '%s'", tu_bin(), chain, trace, plain), 0);
    snprintf(log, sizeof(log), "%s.txt", run);
    /* Without the quarantine the slot would crash-loop for ever: the timeout
     * turns that into a failed assertion. */
    int rc = tu_sh(log,
                   "timeout -k 10 300 '%s' chaos '%s' --trace '%s' --out '%s' --rate 2000 "
                   "--kill-every 150 --seed 5 --poison '%s'",
                   tu_bin(), chain, trace, run, poison);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "quarantined"), (long)n);
    CU_ASSERT_EQUAL(json_num(run, "chaos.json", "quarantined"), (long)n);
    /* Two deaths per packet at least (more when a kill lands meanwhile). */
    CU_ASSERT_TRUE(json_num(run, "report.json", "failovers") >= 2 * (long)n);
    char path[8192];
    snprintf(path, sizeof(path), "%s/report.json", run);
    /* Two crashes per packet; one more when a chaos kill meets a worker already
     * aborting (that death is the kill's, and does not count). */
    int crashed = it_file_has(path, "\"reason\": \"crashed\"");
    CU_ASSERT_TRUE(crashed >= 2 * (int)n &&
                   crashed <= 2 * (int)n + (int)json_num(run, "chaos.json", "kills"));
    snprintf(path, sizeof(path), "%s/alerts.json", run);
    CU_ASSERT_EQUAL(it_file_has(path, "\"type\": \"quarantine\""), (int)n);
    CU_ASSERT_EQUAL(it_file_has(path, "\"nf\": \"fw\", \"type\": \"quarantine\""), (int)n);
    snprintf(path, sizeof(path), "%s/quarantine.pcapng", run);
    struct stat st;
    CU_ASSERT_EQUAL(stat(path, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    struct tu_pcap q;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(path, &q), 0);
    CU_ASSERT_EQUAL(q.n, n);
    CU_ASSERT_EQUAL(count_matching(&q, poison), n);
    tu_pcap_free(&q);
    check_equivalent(ref, run);
    /* Against the unfiltered run: exactly the quarantined packets are lost. */
    CU_ASSERT_NOT_EQUAL(verify(plain, run), 0);
    snprintf(path, sizeof(path), "%s.verify.stdout", run);
    char want[64];
    snprintf(want, sizeof(want), "lost %zu, duplicated 0, changed 0", n);
    CU_ASSERT_EQUAL(it_file_has(path, want), 1);
    tu_rmrf(d);
    free(d);
}

/* Kills every few ms: replacements are killed while they replay, and the spares
 * right after they take over; the report shows failovers that never finished
 * their replay, and the output is still exact. */
static void test_kill_during_replay(void)
{
    char *d = tu_mkdtemp("replaykill");
    char ref[4200], run[4300];
    const struct chain_case *c = &catalog[5]; /* full: replay runs through upstream NFs */
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/run", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", c, ref, NULL), 0);
    int rc = rw_cmd("chaos", c, run, "--rate 800 --kill-every 25 --seed 11");
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        tu_sh(NULL, "tail -5 '%s.txt.stderr' >&2", run);
    char report[8192];
    snprintf(report, sizeof(report), "%s/report.json", run);
    CU_ASSERT_TRUE(it_file_has(report, "\"recovery_ms\": -1.000") >= 1);
    /* More failovers than status blocks (2 x slots + spares + 8): blocks are reused. */
    CU_ASSERT_TRUE(json_num(run, "report.json", "failovers") >= 40);
    check_equivalent(ref, run);
    tu_rmrf(d);
    free(d);
}

/* ---- single faults, from outside ---- */

/* A run started in the background, and its status region (the shared block, then
 * every process's status block, in the order the coordinator started them: the
 * slots' workers, then the spares), mapped from one of its workers. */
struct bg_run {
    pid_t pid; /* the test's child running `rewind run` */
    bool reaped;
    int rc;
    void *region;
    size_t len;
    struct worker_shared *shared;
    struct worker_status *st;
};

static bool bg_running(struct bg_run *b)
{
    int st;
    if (!b->reaped && waitpid(b->pid, &st, WNOHANG) == b->pid) {
        b->reaped = true;
        b->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    return !b->reaped;
}

static int bg_wait(struct bg_run *b)
{
    int st;
    if (!b->reaped && waitpid(b->pid, &st, 0) == b->pid) {
        b->reaped = true;
        b->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (b->region)
        munmap(b->region, b->len);
    b->region = NULL;
    return b->rc;
}

/* A worker of run whose command line has `what` ("--nf=1 --instance=0 ", or ""
 * for any), its status block's index and the descriptor of the status region it
 * inherited (--status=FD:IDX:CAP). 0 when there is none. */
static pid_t find_worker(const char *run, const char *what, uint32_t *idx, uint32_t *cap, int *fd)
{
    char cmd[8192], path[64];
    snprintf(cmd, sizeof(cmd), "pgrep -o -f 'rewind [w]orker.*%s.*%s'", what, run);
    FILE *p = popen(cmd, "r");
    int pid = 0;
    if (!p || fscanf(p, "%d", &pid) != 1)
        pid = 0;
    if (p)
        pclose(p);
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    size_t len = 0;
    char *args = pid > 0 ? tu_slurp(path, &len) : NULL;
    bool found = false;
    for (size_t i = 0; args && i < len && !found; i += strlen(args + i) + 1)
        found = sscanf(args + i, "--status=%d:%u:%u", fd, idx, cap) == 3;
    free(args);
    return found ? pid : 0;
}

/* Maps the status region through /proc/PID/fd: the memfd the coordinator made. */
static bool bg_map(struct bg_run *b, pid_t worker, int fd, uint32_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", worker, fd);
    int f = open(path, O_RDONLY);
    if (f < 0)
        return false;
    b->len = worker_region_size(cap);
    b->region = mmap(NULL, b->len, PROT_READ, MAP_SHARED, f, 0);
    close(f);
    if (b->region == MAP_FAILED) {
        b->region = NULL;
        return false;
    }
    b->shared = b->region;
    b->st = worker_region_status(b->region);
    return true;
}

/* The first n processes are up (a slot's worker in its loop, a spare waiting for
 * a slot) and the root has stamped `packets` packets. */
static bool flowing(const struct bg_run *b, uint32_t n, uint64_t packets)
{
    for (uint32_t i = 0; i < n; i++) {
        uint32_t state = atomic_load(&b->st[i].state);
        if (state != WORKER_RUNNING && state != WORKER_SPARE)
            return false;
    }
    return atomic_load(&b->shared->root_clock) >= packets;
}

/* Starts `rewind run` in a child; returns once its n first processes (the slots'
 * workers, then spares) are up and `packets` packets have entered the chain. */
static void run_bg_cmd(struct bg_run *b, const char *cmd, const struct chain_case *c,
                       const char *out, const char *extra, uint32_t n, uint64_t packets)
{
    memset(b, 0, sizeof(*b));
    b->pid = fork();
    if (b->pid == 0)
        _exit(rw_cmd(cmd, c, out, extra));
    uint32_t idx, cap;
    int fd;
    pid_t w = 0;
    while (bg_running(b) && !(w = find_worker(out, "", &idx, &cap, &fd)))
        usleep(10000);
    if (!w || !bg_map(b, w, fd, cap))
        return;
    while (bg_running(b) && !flowing(b, n, packets))
        usleep(2000);
}

static void run_bg(struct bg_run *b, const struct chain_case *c, const char *out, const char *extra,
                   uint32_t n, uint64_t packets)
{
    run_bg_cmd(b, "run", c, out, extra, n, packets);
}

/* Where process pid maps the file whose path ends with name (offset 0); 0 if it
 * does not. */
static uintptr_t map_base(pid_t pid, const char *name)
{
    char path[64], line[4608];
    snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    FILE *f = fopen(path, "r");
    uintptr_t base = 0;
    while (f && !base && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, off;
        line[strcspn(line, "\n")] = '\0';
        size_t ll = strlen(line), nl = strlen(name);
        if (sscanf(line, "%lx-%lx %*s %lx", &lo, &hi, &off) == 3 && off == 0 && ll >= nl &&
            !strcmp(line + ll - nl, name))
            base = lo;
    }
    if (f)
        fclose(f);
    return base;
}

/* Kills a tracee and reaps it as its tracer: until the tracer has seen the
 * death, the coordinator (its parent) is not told, and would wait for ever. */
static void kill_traced(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, __WALL) == pid && !WIFEXITED(st) && !WIFSIGNALED(st))
        ;
}

static volatile uint64_t probe_word;

/* Whether this machine's ptrace gives hardware watchpoints: a child writes a
 * word under one, and must stop with SIGTRAP. Some virtual machines accept the
 * debug registers and never fire them (seen: a child that just exited); the
 * cases that hold a worker at one instant cannot run there, and say so. */
static bool watchpoints_work(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    int p[2], st;
    if (pipe(p)) {
        known = 0;
        return false;
    }
    pid_t c = fork();
    if (c == 0) {
        char x;
        close(p[1]);
        if (read(p[0], &x, 1) != 1)
            _exit(2);
        probe_word = 42;
        _exit(0);
    }
    close(p[0]);
    unsigned long dr7 = 1ul | 1ul << 16 | 2ul << 18; /* DR0, on writes, 8 bytes */
    bool ok =
        c > 0 && !ptrace(PTRACE_SEIZE, c, 0, 0) && !ptrace(PTRACE_INTERRUPT, c, 0, 0) &&
        waitpid(c, &st, __WALL) == c && WIFSTOPPED(st) &&
        !ptrace(PTRACE_POKEUSER, c, offsetof(struct user, u_debugreg[0]), (void *)&probe_word) &&
        !ptrace(PTRACE_POKEUSER, c, offsetof(struct user, u_debugreg[7]), (void *)dr7) &&
        !ptrace(PTRACE_CONT, c, 0, 0) && write(p[1], "x", 1) == 1 && waitpid(c, &st, __WALL) == c &&
        WIFSTOPPED(st) && WSTOPSIG(st) == SIGTRAP;
    close(p[1]);
    if (c > 0)
        kill_traced(c);
    if (!ok)
        fprintf(stderr, "  NOT RUN: this machine's ptrace gives no hardware watchpoints, so no "
                        "worker can be held at one instant\n");
    known = ok;
    return ok;
}

/* Stops process pid at the instant it writes the word at addr (an address of its
 * own, len 4 or 8 bytes, aligned) so that done(ctx) holds, with an x86-64
 * hardware watchpoint set through ptrace: the instant is the write itself, not a
 * guess. Returns true with pid held in ptrace-stop (the caller kills it and reaps
 * it: kill_traced); false when it could not be traced or ended first (reaped).
 * A traced worker stops at every write of the word: on a loaded machine that is
 * slow enough to miss heartbeats, so runs watched this way get a long budget
 * (--heartbeat-misses 600), and no straggler policy (--stragglers off): a traced
 * worker gets little CPU while it has input, and would be cloned and retired. */
static bool stop_at_write(pid_t pid, uintptr_t addr, size_t len, bool (*done)(const void *),
                          const void *ctx)
{
    int st;
    if (ptrace(PTRACE_SEIZE, pid, 0, 0))
        return false;
    if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) || waitpid(pid, &st, __WALL) != pid ||
        !WIFSTOPPED(st)) {
        kill_traced(pid); /* never leave a tracee whose death nobody reaps */
        return false;
    }
    /* DR7: local enable of DR0 (bit 0), on writes (RW0 = 01), LEN0 = 11 (4 bytes)
     * or 10 (8 bytes). */
    unsigned long dr7 = 1ul | 1ul << 16 | (len == 8 ? 2ul : 3ul) << 18;
    if (ptrace(PTRACE_POKEUSER, pid, offsetof(struct user, u_debugreg[0]), (void *)addr) ||
        ptrace(PTRACE_POKEUSER, pid, offsetof(struct user, u_debugreg[7]), (void *)dr7)) {
        ptrace(PTRACE_DETACH, pid, 0, 0);
        return false;
    }
    int sig = 0;
    for (;;) {
        /* Dead meanwhile (e.g. killed by the coordinator): reaped here, so that
         * its parent learns of it. */
        bool waited =
            !ptrace(PTRACE_CONT, pid, 0, (void *)(long)sig) && waitpid(pid, &st, __WALL) == pid;
        if (!waited || !WIFSTOPPED(st)) {
            if (!waited)
                kill_traced(pid);
            return false;
        }
        bool trap = WSTOPSIG(st) == SIGTRAP && (st >> 16) == 0;
        if (trap && done(ctx))
            return true;
        /* a signal meant for it goes on; a group-stop (event) resumes */
        sig = trap || (st >> 16) ? 0 : WSTOPSIG(st);
    }
}

static void single_fault(const char *tag, const char *signal, const char *victims[], int n,
                         const char *extra, const char *reason)
{
    char *d = tu_mkdtemp(tag);
    char ref[4200], run[4300], all[512];
    const struct chain_case *c = &catalog[5];
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/run", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", c, ref, NULL), 0);
    snprintf(all, sizeof(all), "--rate 1000 %s", extra ? extra : "");
    struct bg_run b;
    run_bg(&b, c, run, all, 6 + 2, 300);
    for (int i = 0; i < n; i++) /* "--nf=K --instance=I" of the victims */
        CU_ASSERT_EQUAL(
            tu_sh(NULL, "pkill -%s -f 'rewind [w]orker.*%s .*%s'", signal, victims[i], run), 0);
    CU_ASSERT_EQUAL(bg_wait(&b), 0);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "failovers"), n);
    char report[8192], want[64];
    snprintf(report, sizeof(report), "%s/report.json", run);
    snprintf(want, sizeof(want), "\"reason\": \"%s\"", reason);
    CU_ASSERT_EQUAL(it_file_has(report, want), n);
    check_equivalent(ref, run);
    CU_ASSERT_EQUAL(it_count_workers(run), 0);
    tu_rmrf(d);
    free(d);
}

static void test_kill_one(void)
{
    const char *v[] = {"--nf=1 --instance=0"};
    single_fault("kill1", "9", v, 1, NULL, "killed");
}

/* fw[1] and nat[0]: an upstream and a downstream slot at once; the NAT's replay
 * waits for the firewall's replacement to pass the cut-off. */
static void test_kill_two_slots(void)
{
    const char *v[] = {"--nf=0 --instance=1", "--nf=2 --instance=0"};
    single_fault("kill2", "9", v, 2, NULL, "killed");
}

static void test_hang_fails_over(void)
{
    const char *v[] = {"--nf=1 --instance=1"};
    /* 0.5 s of silence is a hang: 0.2 s was, for a replacement of a loaded 2-core
     * VM's Debug build too (a second "hung" failover, old code as well) */
    single_fault("hang", "STOP", v, 1, "--heartbeat-ms 50 --heartbeat-misses 10", "hung");
}

/* SIGTERM in the drain of a storm (stalls every 50 ms, kills every 300 ms):
 * faults stop at once, whatever the main thread is doing, and the run drains and
 * ends with its report. chaos.json says what stopped the faults (the signal, not
 * the end of the run) and when, and no fault starts after that. Before, they went
 * on through the drain: 9-60 faults after it, one run 145 s long. */
static void test_sigterm_ends_storm(void)
{
    char *d = tu_mkdtemp("sigterm");
    char run[4300];
    const struct chain_case *c = &catalog[5];
    snprintf(run, sizeof(run), "%s/run", d);
    struct bg_run b;
    /* Stalls of 1 s every 50 ms (not hangs, with this budget) hold the drain
     * open as long as they come: the signal comes once the input is over, while
     * the main thread joins the sink. */
    run_bg_cmd(&b, "chaos", c, run,
               "--rate 800 --kill-every 300 --stall-every 50 --stall-ms 1000 "
               "--heartbeat-misses 600 --stragglers off --seed 3",
               6 + 2, 300);
    while (b.shared && bg_running(&b) && !atomic_load(&b.shared->root_finished))
        usleep(1000);
    CU_ASSERT_TRUE_FATAL(bg_running(&b));
    CU_ASSERT_EQUAL(tu_sh(NULL, "pkill -TERM -f 'rewind [c]haos .*%s'", run), 0);
    int rc = bg_wait(&b);
    CU_ASSERT_EQUAL(rc, 0);
    char path[8192];
    snprintf(path, sizeof(path), "%s/report.json", run);
    CU_ASSERT_EQUAL(it_file_has(path, "\"ok\": true"), 1);
    snprintf(path, sizeof(path), "%s/chaos.json", run);
    size_t len;
    char *txt = tu_slurp(path, &len), *p = txt;
    CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
    /* The signal, not the end of the run, stopped the faults, and none started
     * after (the coordinator's own clock: no guess from the test's). */
    CU_ASSERT_PTR_NOT_NULL(strstr(txt, "\"stopped_by\": \"signal\""));
    char *st = strstr(txt, "\"stopped_ms\": ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    double stopped_ms = strtod(st + 14, NULL);
    unsigned faults = 0, late = 0;
    while ((p = strstr(p, "\"at_ms\": "))) {
        faults++;
        late += strtod(p + 9, NULL) > stopped_ms;
        p += 9;
    }
    fprintf(stderr, "  %u faults, %u after they stopped at %.0f ms\n", faults, late, stopped_ms);
    CU_ASSERT_TRUE(faults >= 1);
    CU_ASSERT_EQUAL(late, 0);
    char *rep = NULL;
    free(rep);
    free(txt);
    tu_rmrf(d);
    free(d);
}

/* ---- the store in Redis ---- */

static void test_redis_chaos(void)
{
    char *d = tu_mkdtemp("redischaos");
    int port;
    pid_t rs = it_redis_start(d, &port);
    CU_ASSERT_TRUE_FATAL(rs > 0);
    /* full.yaml with its store in Redis; the reference keeps LMDB */
    char src[4096], chain[4200], ref[4200], run[4300];
    chain_path("full.yaml", src, sizeof(src));
    snprintf(chain, sizeof(chain), "%s/full-redis.yaml", d);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "sed 's|^store: .*|store: redis://127.0.0.1:%d|' '%s' > '%s'",
                                port, src, chain),
                          0);
    char t[4096];
    tu_trace("nmap_sT_top1000.pcap", t, sizeof(t));
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/run", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", &catalog[5], ref, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL,
              "'%s' chaos '%s' --trace '%s' --out '%s' --rate 800 --kill-every 150 "
              "--stall-every 250 --stall-ms 40 --seed 5 > '%s.txt' 2>&1",
              tu_bin(), chain, t, run, run),
        0);
    CU_ASSERT_TRUE(json_num(run, "chaos.json", "kills") >= 4);
    CU_ASSERT_TRUE(json_num(run, "chaos.json", "stalls") >= 2);
    check_equivalent(ref, run);
    CU_ASSERT_EQUAL(tu_sh(NULL, "redis-cli -p %d dbsize | grep -qv '^0$'", port), 0);
    kill(rs, SIGTERM);
    waitpid(rs, NULL, 0);
    tu_rmrf(d);
    free(d);
}

/* ---- killed in the drain at the end of the run ---- */

/* A word of a status block, and the value a write must leave there. */
struct word64 {
    const _Atomic uint64_t *at;
    uint64_t want;
    bool any; /* any value */
};

static bool word64_is(const void *ctx)
{
    const struct word64 *w = ctx;
    return w->any || atomic_load(w->at) == w->want;
}

/* Holds the first worker of run whose command line has `what` at the instant it
 * writes the field at offset `field` of its own status block, leaving w's value
 * there. Returns its pid (in ptrace-stop: kill_traced) and its status index, or
 * 0 when it could not be held. */
static pid_t hold_at_status_write(struct bg_run *b, const char *run, const char *what, size_t field,
                                  struct word64 *w, uint32_t *idx)
{
    uint32_t cap;
    int fd;
    pid_t pid = b->region ? find_worker(run, what, idx, &cap, &fd) : 0;
    uintptr_t base = pid ? map_base(pid, "/memfd:rw-status (deleted)") : 0;
    if (!base || *idx >= cap)
        return 0;
    w->at = (const _Atomic uint64_t *)((const char *)&b->st[*idx] + field);
    uintptr_t at = base + (uintptr_t)((const char *)w->at - (const char *)b->region);
    return stop_at_write(pid, at, 8, word64_is, w) ? pid : 0;
}

/* fw[1] is held at the instant it has sent its final marks but not yet said its
 * slot is finished (its status block's mark is written in between), and killed
 * once the run drains: every other worker has finished and the spares were told
 * to quit, so the coordinator knows the input is over. The slot is not finished,
 * so it is failed over (to a fresh process: the spares are gone), and the run
 * ends well with the output exact. */
static void test_kill_in_drain(void)
{
    if (!watchpoints_work())
        return;
    char *d = tu_mkdtemp("drainkill");
    char ref[4200], run[4300];
    const struct chain_case *c = &catalog[5];
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/run", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", c, ref, NULL), 0);
    /* held that long, it must not count as hung */
    struct bg_run b;
    run_bg(&b, c, run, "--rate 1000 --heartbeat-misses 600 --stragglers off", 6 + 2, 100);
    uint32_t idx;
    struct word64 final = {.want = UINT64_MAX};
    pid_t victim = hold_at_status_write(&b, run, "--nf=0 --instance=1 ",
                                        offsetof(struct worker_status, mark), &final, &idx);
    bool held = victim > 0;
    CU_ASSERT_TRUE(held);
    /* a slot's first worker has the slot's index */
    CU_ASSERT_EQUAL(held && atomic_load(&b.shared->slot_finished[idx]), 0);
    while (held && bg_running(&b) && it_count_workers(run) > 1)
        usleep(10000);
    if (held)
        kill_traced(victim);
    CU_ASSERT_EQUAL(bg_wait(&b), 0);
    if (b.rc)
        tu_sh(NULL, "tail -3 '%s.txt.stderr' >&2", run);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "failovers"), 1);
    char report[8192];
    snprintf(report, sizeof(report), "%s/report.json", run);
    CU_ASSERT_EQUAL(it_file_has(report, "\"reason\": \"killed\""), 1);
    check_equivalent(ref, run);
    CU_ASSERT_EQUAL(it_count_workers(run), 0);
    tu_rmrf(d);
    free(d);
}

/* ---- duplicates, when their suppression is off ---- */

/* Kills NF 0's instance 0 of run at the instant it counts a packet it emitted
 * (its status block's pkts_out written): that packet has left, and its ops are
 * applied, but the slot's store watermark has not passed it. */
static void kill_at_emit(struct bg_run *b, const char *run)
{
    uint32_t idx;
    struct word64 emitted = {.any = true};
    pid_t victim = hold_at_status_write(b, run, "--nf=0 --instance=0 ",
                                        offsetof(struct worker_status, pkts_out), &emitted, &idx);
    CU_ASSERT_TRUE(victim > 0);
    if (victim > 0)
        kill_traced(victim);
}

/* With duplicate suppression off, a replacement's copies of what the dead worker
 * had sent reach the output, and verify must see them (what the chaos tests
 * would miss if suppression broke). fw[0] is killed at the instant it counts a
 * packet it emitted: sent, but above its store watermark and its last mark, so
 * the replacement sends it again while the sink still holds the first copy. */
static void test_no_dedup_shows_duplicates(void)
{
    if (!watchpoints_work())
        return;
    char *d = tu_mkdtemp("nodedup");
    char ref[4200], run[4300], log[8192];
    const struct chain_case *c = &catalog[0];
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/nodedup", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", c, ref, NULL), 0);
    struct bg_run b;
    run_bg(&b, c, run, "--rate 20000 --no-dedup --heartbeat-misses 600 --stragglers off", 3 + 2,
           1000);
    kill_at_emit(&b, run);
    CU_ASSERT_EQUAL(bg_wait(&b), 0);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "failovers"), 1);
    CU_ASSERT_EQUAL(verify(ref, run), 1);
    snprintf(log, sizeof(log), "%s.verify.stdout", run);
    CU_ASSERT_EQUAL(it_file_has(log, "lost 0, duplicated 0,"), 0);
    CU_ASSERT_EQUAL(it_file_has(log, "lost 0, duplicated "), 1);
    CU_ASSERT_EQUAL(it_file_has(log, "NOT equivalent"), 1);
    tu_rmrf(d);
    free(d);
}

/* nat[0] killed at the instant it counts a packet it emitted: that packet's ops
 * are applied (its port was taken from the pool by a sync op) but it is above the
 * slot's store watermark, so the replacement replays it and the store must
 * emulate what it already applied. Applied twice, the first port would leak from
 * the pool (renamed away in the output by verify): the run's state audit and the
 * state comparison must see it. */
static void test_replayed_ops_applied_once(void)
{
    if (!watchpoints_work())
        return;
    char *d = tu_mkdtemp("natkill");
    char ref[4200], run[4300];
    const struct chain_case c = {"nat.yaml", "nmap_sT_top1000.pcap", 0, 1};
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/run", d);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", &c, ref, NULL), 0);
    struct bg_run b;
    run_bg(&b, &c, run, "--rate 2000 --heartbeat-misses 600 --stragglers off", 1 + 2, 300);
    kill_at_emit(&b, run);
    int rc = bg_wait(&b);
    CU_ASSERT_EQUAL(rc, 0);
    if (rc)
        tu_sh(NULL, "tail -3 '%s.txt.stderr' >&2", run);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "failovers"), 1);
    CU_ASSERT_TRUE(json_num(run, "report.json", "replayed") >= 1);
    check_state_audited(run, 1);
    check_equivalent(ref, run);
    tu_rmrf(d);
    free(d);
}

/* ---- killed inside the store's write transaction ---- */

/* Where LMDB keeps its write mutex's lock word in lock.mdb: a robust mutex holds
 * its owner's thread id, so a write transaction is begun in a scratch
 * environment and the lock file searched for this thread's id. -1 if absent. */
static long wlock_offset(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/probe", dir);
    mkdir(path, 0755);
    MDB_env *env;
    MDB_txn *txn;
    long off = -1;
    if (mdb_env_create(&env))
        return -1;
    if (!mdb_env_open(env, path, MDB_NOSYNC | MDB_NOTLS, 0664) &&
        !mdb_txn_begin(env, NULL, 0, &txn)) {
        snprintf(path, sizeof(path), "%s/probe/lock.mdb", dir);
        size_t len = 0;
        char *lock = tu_slurp(path, &len);
        uint32_t tid = (uint32_t)gettid();
        for (size_t o = 0; lock && o + 4 <= len && o < 4096 && off < 0; o += 4)
            if (!memcmp(lock + o, &tid, 4))
                off = (long)o;
        free(lock);
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return off;
}

struct wlock {
    const _Atomic uint32_t *word;
    uint32_t tid;
};

/* FUTEX_TID_MASK: the owner, without the waiters and owner-died bits */
static bool wlock_owned(const void *ctx)
{
    const struct wlock *w = ctx;
    return (atomic_load(w->word) & 0x3fffffff) == w->tid;
}

/* fw[0] is held at the instant it takes the store's write lock (its write of the
 * lock word) and killed there: LMDB's robust mutex frees the lock, the others
 * go on, the replacement replays, the output is exact. A lock that stayed taken
 * would stop every worker's store flush, and the run would never end. */
static void test_kill_holding_write_lock(void)
{
    if (!watchpoints_work())
        return;
    char *d = tu_mkdtemp("wlock");
    char ref[4200], run[4300], lockf[8192];
    const struct chain_case *c = &catalog[5];
    snprintf(ref, sizeof(ref), "%s/ref", d);
    snprintf(run, sizeof(run), "%s/run", d);
    snprintf(lockf, sizeof(lockf), "%s/store/lock.mdb", run);
    long off = wlock_offset(d);
    CU_ASSERT_FATAL(off >= 0);
    CU_ASSERT_EQUAL_FATAL(rw_cmd("run", c, ref, NULL), 0);
    struct bg_run b;
    run_bg(&b, c, run, "--rate 300 --heartbeat-misses 600 --stragglers off", 6 + 2, 100);
    uint32_t idx, cap;
    int fd;
    pid_t victim = find_worker(run, "--nf=0 --instance=0 ", &idx, &cap, &fd);
    uintptr_t base = victim ? map_base(victim, lockf) : 0;
    int f = open(lockf, O_RDONLY);
    void *lock = f >= 0 ? mmap(NULL, 4096, PROT_READ, MAP_SHARED, f, 0) : MAP_FAILED;
    if (f >= 0)
        close(f);
    CU_ASSERT_FATAL(victim > 0 && base && lock != MAP_FAILED);
    struct wlock w = {.word = (const _Atomic uint32_t *)((char *)lock + off),
                      .tid = (uint32_t)victim};
    bool caught = stop_at_write(victim, base + (uintptr_t)off, 4, wlock_owned, &w);
    CU_ASSERT_TRUE(caught);
    if (caught)
        kill_traced(victim);
    munmap(lock, 4096);
    CU_ASSERT_EQUAL(bg_wait(&b), 0);
    CU_ASSERT_EQUAL(json_num(run, "report.json", "failovers"), 1);
    check_equivalent(ref, run);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "a killed worker is replaced and the output is exact", test_kill_one);
    CU_add_test(s, "two slots killed at once, upstream and downstream", test_kill_two_slots);
    CU_add_test(s, "a hung worker is killed and replaced", test_hang_fails_over);
    CU_add_test(s, "a worker killed holding the LMDB write lock", test_kill_holding_write_lock);
    CU_add_test(s, "a worker killed in the drain before its slot is finished", test_kill_in_drain);
    CU_add_test(s, "kills during replay and right after takeover", test_kill_during_replay);
    CU_add_test(s, "chaos over every catalog chain: verify passes", test_chaos_catalog);
    CU_add_test(s, "a packet of death is quarantined and the run goes on", test_packet_of_death);
    CU_add_test(s, "SIGTERM during a storm stops the faults and ends the run",
                test_sigterm_ends_storm);
    CU_add_test(s, "stalls and kills: the chain holds at most --max-in-flight clocks",
                test_in_flight_bound);
    CU_add_test(s, "a kill without duplicate suppression shows duplicates",
                test_no_dedup_shows_duplicates);
    CU_add_test(s, "chaos with the store in redis-server", test_redis_chaos);
    CU_add_test(s, "a nat killed after applying a packet's ops: replayed, applied once",
                test_replayed_ops_applied_once);
}

int main(void)
{
    return tu_main("failover", add);
}
