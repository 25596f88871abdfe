/*
 * test_badinput.c - damaged input and hostile conditions: truncated and garbage
 * captures, damaged log pages, a full disk, bad flags, a flow index built by a
 * hash this build does not know. Each must give a clear
 * error and a meaningful exit code, never a crash, and keep what was committed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

static char *copy_trace(const char *d, const char *name, char *dst, size_t n)
{
    char src[4096];
    tu_trace(name, src, sizeof(src));
    snprintf(dst, n, "%s/%s", d, name);
    tu_sh(NULL, "cp '%s' '%s'", src, dst);
    return dst;
}

static void test_truncated_pcap(void)
{
    char *d = tu_mkdtemp("bad");
    char trace[4200], log[4200], out[4200], err[4200];
    copy_trace(d, "trojan_sequence.pcap", trace, sizeof(trace));
    CU_ASSERT_EQUAL(truncate(trace, 1300000), 0); /* mid-packet */
    struct tu_pcap ref, got;
    CU_ASSERT_NOT_EQUAL(tu_pcap_read(trace, &ref), 0); /* libpcap agrees it is cut */
    CU_ASSERT_TRUE_FATAL(ref.n > 100);
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(out, sizeof(out), "%s/out.pcap", d);
    snprintf(err, sizeof(err), "%s/ingest.stderr", d);
    CU_ASSERT_EQUAL(it_ingest(d, trace, log, NULL), 3);
    CU_ASSERT_EQUAL(it_file_has(err, "damaged after packet"), 1);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s' >/dev/null", tu_bin(), log), 0);
    CU_ASSERT_EQUAL(it_export(d, log, out, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    CU_ASSERT_EQUAL(got.n, ref.n); /* every intact packet, nothing invented */
    if (got.n == ref.n)
        CU_ASSERT_EQUAL(it_diff(&ref, 0, &got, 0, ref.n, 1), -1);
    tu_pcap_free(&ref);
    tu_pcap_free(&got);
    tu_rmrf(d);
    free(d);
}

static void test_garbage_and_missing_trace(void)
{
    char *d = tu_mkdtemp("bad");
    char trace[4200], log[4200], err[4200];
    snprintf(trace, sizeof(trace), "%s/garbage.pcap", d);
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(err, sizeof(err), "%s/ingest.stderr", d);
    tu_sh(NULL, "head -c 100000 /dev/urandom > '%s'", trace);
    CU_ASSERT_EQUAL(it_ingest(d, trace, log, NULL), 3);
    CU_ASSERT_EQUAL(it_file_has(err, "not a readable capture"), 1);
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(log, &st), 0); /* refused before anything was created */
    snprintf(trace, sizeof(trace), "%s/missing.pcap", d);
    CU_ASSERT_NOT_EQUAL(it_ingest(d, trace, log, NULL), 0);
    CU_ASSERT_TRUE(it_file_has(err, "missing.pcap") >= 1);
    tu_rmrf(d);
    free(d);
}

/* Writes `n` bytes of `byte` at `off` in path. */
static void scribble(const char *path, off_t off, size_t n, int byte)
{
    uint8_t *buf = malloc(n);
    memset(buf, byte, n);
    int fd = open(path, O_WRONLY);
    CU_ASSERT_EQUAL(pwrite(fd, buf, n, off), (ssize_t)n);
    close(fd);
    free(buf);
}

static void test_damaged_block_in_log(void)
{
    char *d = tu_mkdtemp("bad");
    char trace[4096], log[4200], data[4300], out[4200], vout[4200];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(data, sizeof(data), "%s/seg-00000001/data.mdb", log);
    snprintf(out, sizeof(out), "%s/out.pcap", d);
    snprintf(vout, sizeof(vout), "%s/verify", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(stat(data, &st), 0);
    /* The middle of the file is block payload (the big transfer's packets). */
    scribble(data, st.st_size / 2, 64, 0xa5);
    CU_ASSERT_EQUAL(tu_sh(vout, "'%s' log verify '%s'", tu_bin(), log), 3);
    snprintf(vout, sizeof(vout), "%s/verify.stdout", d);
    CU_ASSERT_EQUAL(it_file_has(vout, ": checksum mismatch"), 1);
    CU_ASSERT_EQUAL(it_file_has(vout, "segment 1, clock "), 1); /* one problem, no echoes */
    CU_ASSERT_EQUAL(it_export(d, log, out, NULL), 3);           /* exports the rest, says so */
    snprintf(vout, sizeof(vout), "%s/replay.stderr", d);
    CU_ASSERT_EQUAL(it_file_has(vout, "skipped damaged block (segment 1, clock "), 1);
    struct tu_pcap ref, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    CU_ASSERT_TRUE(got.n < ref.n && got.n + 1024 >= ref.n);
    /* What came out is the trace minus one contiguous block. */
    size_t head = 0;
    while (head < got.n && ref.pkts[head].caplen == got.pkts[head].caplen &&
           !memcmp(ref.pkts[head].data, got.pkts[head].data, got.pkts[head].caplen))
        head++;
    size_t gap = ref.n - got.n;
    CU_ASSERT_EQUAL(it_diff(&ref, head + gap, &got, head, got.n - head, 1), -1);
    tu_pcap_free(&ref);
    tu_pcap_free(&got);
    tu_rmrf(d);
    free(d);
}

static void test_damaged_lmdb_structure(void)
{
    char *d = tu_mkdtemp("bad");
    char trace[4096], log[4200], data[4300], out[4200], o[4200];
    tu_trace("hping3.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(data, sizeof(data), "%s/seg-00000001/data.mdb", log);
    snprintf(out, sizeof(out), "%s/out.pcap", d);
    snprintf(o, sizeof(o), "%s/verify", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    /* Garbage over the pages after the two meta pages: B-tree pages. */
    scribble(data, 2 * 4096, 6 * 4096, 0xff);
    int rc = tu_sh(o, "'%s' log verify '%s'", tu_bin(), log);
    CU_ASSERT_EQUAL(rc, 3);
    snprintf(o, sizeof(o), "%s/verify.stdout", d);
    CU_ASSERT_TRUE(it_file_has(o, "segment 1") >= 1);
    rc = it_export(d, log, out, NULL);
    CU_ASSERT_TRUE(rc == 3 || rc == 1); /* an error, never a crash (>= 128) */
    /* A data file cut short. */
    CU_ASSERT_EQUAL(truncate(data, 3 * 4096), 0);
    snprintf(o, sizeof(o), "%s/verify2", d);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log verify '%s'", tu_bin(), log), 3);
    rc = tu_sh(NULL, "'%s' log stat '%s' >/dev/null 2>&1", tu_bin(), log);
    CU_ASSERT_TRUE(rc < 128);
    tu_rmrf(d);
    free(d);
}

static void test_full_disk(void)
{
    char *d = tu_mkdtemp("full");
    char mnt[4200], trace[4096], log[4300], out[4200], err[4200];
    snprintf(mnt, sizeof(mnt), "%s/small", d);
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1536k")) {
        perror("mount tmpfs (the full-disk test needs root)");
        CU_FAIL_FATAL("cannot mount a small tmpfs");
    }
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace)); /* 2.2 MB: does not fit */
    snprintf(log, sizeof(log), "%s/log", mnt);
    snprintf(out, sizeof(out), "%s/out.pcap", d);
    snprintf(err, sizeof(err), "%s/ingest.stderr", d);
    CU_ASSERT_EQUAL(it_ingest(d, trace, log, "--durability power --block-packets 64"), 4);
    CU_ASSERT_TRUE(it_file_has(err, "space") >= 1);
    char *msg = tu_slurp(err, NULL);
    char *p = msg ? strstr(msg, "keeps every packet below clock ") : NULL;
    CU_ASSERT_PTR_NOT_NULL(p);
    unsigned long long durable =
        p ? strtoull(p + strlen("keeps every packet below clock "), NULL, 10) : 0;
    free(msg);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s' >/dev/null", tu_bin(), log), 0);
    CU_ASSERT_EQUAL(it_export(d, log, out, NULL), 0);
    struct tu_pcap ref, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    CU_ASSERT_TRUE(durable > 0);
    CU_ASSERT_TRUE(got.n >= durable && got.n < ref.n); /* all durable packets, a prefix */
    CU_ASSERT_EQUAL(it_diff(&ref, 0, &got, 0, got.n, 1), -1);
    tu_pcap_free(&ref);
    tu_pcap_free(&got);
    umount(mnt);
    tu_rmrf(d);
    free(d);
}

/* A log whose flow index this build cannot use (one from before flow hash
 * version 2, or from a newer rewind): `replay --flow` must refuse it, name the log
 * and the version and say what to do, and never answer "0 packets" with exit 0;
 * a BPF filter alone still answers; `log stat` shows the version. */
static void test_unknown_flow_hash(void)
{
    static const struct {
        uint32_t version;
        const char *stat, *replay;
    } cases[] = {
        {2, "flow     hash version 2\n", NULL},
        {7, "hash version 7, unknown to this build (it knows 2)",
         "flow hash version 7, which this build does not know"},
        {0, "no hash version recorded", "no flow hash version recorded"},
    };
    const char *flow = "--flow 'tcp 10.200.0.2:22 10.200.0.1:53044'";
    const char *bpf = "tcp and host 10.200.0.1 and port 53044 and host 10.200.0.2 and port 22";
    char *d = tu_mkdtemp("bad");
    char trace[4096], log[4200], out[4200], err[4200], o[4200], stat[4200], args[512];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(out, sizeof(out), "%s/ssh.pcap", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    snprintf(o, sizeof(o), "%s/stat", d);
    snprintf(stat, sizeof(stat), "%s/stat.stdout", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, "--block-packets 64"), 0);
    struct tu_pcap got;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].version != 2)
            CU_ASSERT_EQUAL_FATAL(it_set_flow_hash(log, cases[i].version), 0);
        CU_ASSERT_EQUAL(tu_sh(o, "'%s' log stat '%s'", tu_bin(), log), 0);
        CU_ASSERT_EQUAL(it_file_has(stat, cases[i].stat), 1);
        CU_ASSERT_EQUAL(tu_sh(o, "'%s' log stat '%s' --json", tu_bin(), log), 0);
        snprintf(args, sizeof(args), "\"flow_hash\": %u\n", cases[i].version);
        CU_ASSERT_EQUAL(it_file_has(stat, args), 1);
        unlink(out);
        if (!cases[i].replay) {
            CU_ASSERT_EQUAL(it_export(d, log, out, flow), 0);
            CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
            CU_ASSERT_EQUAL(got.n, 43);
            tu_pcap_free(&got);
            continue;
        }
        CU_ASSERT_EQUAL(it_export(d, log, out, flow), 3);
        CU_ASSERT_EQUAL(it_file_has(err, cases[i].replay), 1);
        CU_ASSERT_EQUAL(it_file_has(err, log), 1);
        CU_ASSERT_EQUAL(it_file_has(err, "--filter"), 1);
        CU_ASSERT_EQUAL(access(out, F_OK), -1); /* no empty capture to mistake for an answer */
        snprintf(args, sizeof(args), "--filter '%s'", bpf);
        CU_ASSERT_EQUAL(it_export(d, log, out, args), 0);
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
        CU_ASSERT_EQUAL(got.n, 43);
        tu_pcap_free(&got);
    }
    tu_rmrf(d);
    free(d);
}

struct bad_flag {
    const char *args;
    int code;
    const char *says;
};

static void test_bad_flags(void)
{
    static const struct bad_flag cases[] = {
        {"frobnicate", 2, "unknown command"},
        {"log ingest --trace x.pcap", 2, "--log DIR is required"},
        {"log ingest --log /tmp/x", 2, "exactly one of --trace"},
        {"log ingest --log /tmp/x --trace a.pcap --port net_null0", 2, "exactly one of --trace"},
        {"log ingest --log /tmp/x --trace a.pcap --durability sometimes", 2,
         "none, process or power"},
        {"log ingest --log /tmp/x --trace a.pcap --segment-mb 0", 2, "--segment-mb"},
        {"log ingest --log /tmp/x --trace a.pcap --bogus", 2, "unrecognized option"},
        {"log stat", 2, "usage"},
        {"log verify /nonexistent/log", 1, "not a rewind log"},
        {"log ingest --log /proc/rewind/log --trace /dev/null", 2, "not a regular file"},
        {"log ingest --log /proc/rewind/log --trace \"$RW_TRACES/irc.pcap\"", 1, "mkdir"},
        {"replay /tmp", 2, "exactly one of --to-pcap"},
        {"replay /tmp --to-pcap o.pcap --flow 'tcp 1.2.3.4'", 2, "PROTO SRC:PORT DST:PORT"},
        {"replay /tmp --to-pcap o.pcap --since yesterday", 2, "not a time"},
        {"replay /tmp --to-pcap o.pcap --since 2026-11-22T10:00+25:00", 2, "not a time"},
        {"replay /tmp --to-pcap o.pcap --since 2026-02-30", 2, "not a time"},
        {"replay /tmp --to-pcap o.pcap --since 2026-11-22T10:00:00.Z", 2, "not a time"},
        {"replay /tmp --to-pcap o.pcap --last 0", 2, "not a duration"},
        {"replay /tmp --to-pcap o.pcap --last 5m --since 2026-11-22", 2, "one of --since"},
        {"replay /tmp --to-pcap o.pcap --from-clock 9 --to-clock 3", 2, "empty"},
        {"replay /tmp --to-pcap o.pcap --speed -1", 2, "--speed"},
        {"replay /nonexistent --to-pcap /tmp/o.pcap", 1, "not a rewind log"},
    };
    char *d = tu_mkdtemp("flags");
    char o[4200], err[4200];
    snprintf(o, sizeof(o), "%s/run", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = tu_sh(o, "'%s' %s", tu_bin(), cases[i].args);
        if (rc != cases[i].code || !it_file_has(err, cases[i].says))
            fprintf(stderr, "  `rewind %s` gave %d\n", cases[i].args, rc);
        CU_ASSERT_EQUAL(rc, cases[i].code);
        CU_ASSERT_TRUE(it_file_has(err, cases[i].says) >= 1);
        CU_ASSERT_EQUAL(it_file_has(err, "keeps every packet below clock 0"), 0);
    }
    /* A BPF syntax error names the filter. */
    char trace[4096], log[4200];
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    CU_ASSERT_EQUAL(
        tu_sh(o, "'%s' replay '%s' --to-pcap '%s/x.pcap' --filter 'tcp port ('", tu_bin(), log, d),
        2);
    CU_ASSERT_TRUE(it_file_has(err, "filter 'tcp port ('") >= 1);
    tu_rmrf(d);
    free(d);
}

/* A replay whose reading child dies mid-write (here: SIGKILL, as a fault in
 * damaged pages would) leaves a capture of whole packets only, and exits 3. */
static void test_replay_killed_midwrite(void)
{
    char *d = tu_mkdtemp("bad");
    char trace[4096], log[4200], out[4200], err[4200], cmd[16384];
    tu_trace("external/real.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(out, sizeof(out), "%s/out.pcapng", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    snprintf(cmd, sizeof(cmd), "exec '%s' replay '%s' --to-pcap '%s' 2> '%s'", tu_bin(), log, out,
             err);
    bool caught = false;
    for (int attempt = 0; attempt < 30 && !caught; attempt++) {
        unlink(out);
        pid_t pid = it_spawn_sh(cmd);
        CU_ASSERT_TRUE_FATAL(pid > 0);
        /* Each pass ends in one of three ways: the replay exits before the
         * capture is big enough, the child is killed, or pkill finds no child
         * (it had finished and been reaped): never two kills in one pass. */
        bool killed = false, reaped = false;
        struct stat st;
        int status = 0;
        /* at least 30 s of polling: a replay that has not ended by then hangs */
        bool hung = false;
        for (int i = 0;; i++) {
            if (i == 600000) {
                hung = true;
                tu_sh(NULL, "pkill -KILL -P %d", (int)pid);
                kill(pid, SIGKILL);
                break;
            }
            if (waitpid(pid, &status, WNOHANG) == pid) {
                reaped = true; /* done before it was caught: try again */
                break;
            }
            if (!stat(out, &st) && st.st_size > 65536) {
                /* the child is writing: kill it (not the parent, which must clean up) */
                killed = tu_sh(NULL, "pkill -KILL -P %d", (int)pid) == 0;
                break;
            }
            usleep(50);
        }
        if (!reaped)
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (hung) {
            CU_FAIL("the replay neither ended nor grew its capture past 64 KiB in 30 s");
            break;
        }
        /* exit 0: the child had written all and was exiting (pkill signals a
         * zombie without effect, and succeeds): not caught, try again */
        caught = killed && !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (caught)
            CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3);
    }
    CU_ASSERT_TRUE_FATAL(caught);
    CU_ASSERT_EQUAL(it_file_has(err, "whole packets written before"), 1);
    struct tu_pcap got;
    CU_ASSERT_EQUAL(tu_pcap_read(out, &got), 0); /* libpcap reads it to its end */
    CU_ASSERT_TRUE(got.n > 0);
    tu_pcap_free(&got);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "a truncated pcap: intact packets logged, exit 3, damage named",
                test_truncated_pcap);
    CU_add_test(s, "a garbage or missing trace is refused before a log is made",
                test_garbage_and_missing_trace);
    CU_add_test(s, "a damaged block: verify names it, replay exports the rest",
                test_damaged_block_in_log);
    CU_add_test(s, "damaged or cut LMDB pages: errors, never a crash", test_damaged_lmdb_structure);
    CU_add_test(s, "a full disk: exit 4, every durable packet kept", test_full_disk);
    CU_add_test(s, "bad flags: usage errors with exit 2", test_bad_flags);
    CU_add_test(s, "a replay killed mid-write leaves whole packets only, exit 3",
                test_replay_killed_midwrite);
    CU_add_test(s, "a flow index of an unknown hash: --flow refused, exit 3, stat says so",
                test_unknown_flow_hash);
}

int main(void)
{
    return tu_main("badinput", add);
}
