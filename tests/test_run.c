/*
 * test_run.c - `rewind run` end to end with the firewall chain: the same trace
 * through 1 and 3 instances and through --no-ft gives the same output, packet
 * for packet (clock, sub, bytes); the firewall's verdicts are the ones its rules
 * say; every process exits and nothing is left behind; bad chain files are
 * refused before anything starts; with --no-ft (no state to recover) a worker
 * killed or hung mid-run fails the run cleanly. Failover with FT: test_failover.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "log.h"

/* docs/chains/firewall.yaml with `instances` set, written to dir. */
static void chain_with(const char *dir, int instances, char *path, size_t n)
{
    char src[4096];
    snprintf(src, sizeof(src), "%s/docs/chains/firewall.yaml", getenv("RW_SRC"));
    snprintf(path, n, "%s/fw%d.yaml", dir, instances);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's/instances: 3/instances: %d/' '%s' > '%s'", instances, src, path), 0);
}

static int run(const char *dir, const char *chain, const char *trace, const char *out,
               const char *extra)
{
    char o[4200];
    snprintf(o, sizeof(o), "%s/run", dir);
    return tu_sh(o, "'%s' run '%s' --trace '%s' --out '%s' %s", tu_bin(), chain, trace, out,
                 extra ? extra : "");
}

static void equivalence(const char *trace_name)
{
    char *d = tu_mkdtemp("run");
    char trace[4096], c1[4200], c3[4200], o1[4200], o3[4200], on[4200];
    tu_trace(trace_name, trace, sizeof(trace));
    chain_with(d, 1, c1, sizeof(c1));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(o1, sizeof(o1), "%s/one", d);
    snprintf(o3, sizeof(o3), "%s/three", d);
    snprintf(on, sizeof(on), "%s/noft", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c3, trace, o3, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, o1, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c3, trace, on, "--no-ft"), 0);
    struct it_outs a, b, c;
    it_read_output(o3, &a);
    it_read_output(o1, &b);
    it_read_output(on, &c);
    CU_ASSERT_TRUE(a.n > 0);
    CU_ASSERT_TRUE(it_same_outs(&a, &b));
    CU_ASSERT_TRUE(it_same_outs(&a, &c));
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    for (size_t i = 0; i < a.n; i++) /* each output is its input, unchanged */
        CU_ASSERT_TRUE(a.p[i].clock < ref.n && a.p[i].len == ref.pkts[a.p[i].clock].caplen &&
                       !memcmp(a.p[i].data, ref.pkts[a.p[i].clock].data, a.p[i].len));
    char rep[4300];
    snprintf(rep, sizeof(rep), "%s/report.json", o3);
    char want[64];
    snprintf(want, sizeof(want), "\"packets_in\": %zu,", ref.n);
    CU_ASSERT_EQUAL(it_file_has(rep, want), 2); /* the chain's and its one NF's */
    CU_ASSERT_EQUAL(it_file_has(rep, "\"ok\": true"), 1);
    tu_pcap_free(&ref);
    it_free_outs(&a);
    it_free_outs(&b);
    it_free_outs(&c);
    tu_rmrf(d);
    free(d);
}

static void test_equivalent_outputs(void)
{
    const char *traces[] = {"nmap_sT_top1000.pcap", "hping3.pcap", "trojan_sequence.pcap"};
    for (int i = 0; i < 3; i++) {
        fprintf(stderr, "  %s\n", traces[i]);
        equivalence(traces[i]);
    }
}

/* TCP SYN (without ACK) from client to server, and its destination port. */
static bool is_syn_to_server(const struct it_pkt *p, uint16_t *dport)
{
    const uint8_t *d = p->data;
    if (p->len < 54 || d[12] != 0x08 || d[13] != 0x00 || d[23] != 6)
        return false;
    size_t ihl = (size_t)(d[14] & 0x0f) * 4;
    uint8_t srv[4];
    inet_pton(AF_INET, "10.200.0.2", srv);
    if (memcmp(d + 30, srv, 4) || 14 + ihl + 14 > p->len)
        return false;
    *dport = (uint16_t)(d[14 + ihl + 2] << 8 | d[14 + ihl + 3]);
    return (d[14 + ihl + 13] & 0x12) == 0x02;
}

static void test_firewall_verdicts(void)
{
    char *d = tu_mkdtemp("fw");
    char trace[4096], c3[4200], out[4200];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(out, sizeof(out), "%s/out", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c3, trace, out, NULL), 0);
    struct it_outs o;
    it_read_output(out, &o);
    int allowed_low = 0, refused_low = 0;
    for (size_t i = 0; i < o.n; i++) {
        uint16_t port;
        if (!is_syn_to_server(&o.p[i], &port) || port >= 1024)
            continue;
        if (port == 21 || port == 22 || port == 80)
            allowed_low++;
        else
            refused_low++; /* the rules allow no other port below 1024 */
    }
    CU_ASSERT_EQUAL(refused_low, 0);
    CU_ASSERT_TRUE(allowed_low >= 2); /* the scan does try ssh and http */
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_TRUE(o.n < ref.n); /* and it does drop */
    /* report.json: the NF's drop reasons add up to its drops and to what went missing */
    char rep[4300];
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    char *js = tu_slurp(rep, NULL);
    const char *dr = js ? strstr(js, "\"dropped\": ") : NULL,
               *de = js ? strstr(js, "\"denied\": ") : NULL,
               *nn = js ? strstr(js, "\"not_new\": ") : NULL;
    CU_ASSERT_PTR_NOT_NULL(dr);
    unsigned long long dropped = dr ? strtoull(dr + 11, NULL, 10) : 0;
    unsigned long long denied = de ? strtoull(de + 10, NULL, 10) : 0;
    unsigned long long notnew = nn ? strtoull(nn + 11, NULL, 10) : 0;
    CU_ASSERT_TRUE(dropped > 0);
    CU_ASSERT_EQUAL(denied + notnew, dropped);
    CU_ASSERT_EQUAL(dropped, ref.n - o.n);
    free(js);
    tu_pcap_free(&ref);
    it_free_outs(&o);
    tu_rmrf(d);
    free(d);
}

static unsigned long long report_num(const char *js, const char *after, const char *key)
{
    const char *p = js && after ? strstr(js, after) : js;
    p = p ? strstr(p, key) : NULL;
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* The firewall reads its connection on every packet. Those reads are of its
 * slot's own objects: its workers answer them and they never reach the store
 * (design.md, Invariants: reads of owned state are not recorded); only writes
 * do, a few per connection. Recording each read again fails this. */
static void test_own_reads_stay_local(void)
{
    char *d = tu_mkdtemp("fwreads");
    char trace[4096], c1[4200], out[4200], rep[4300];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    chain_with(d, 1, c1, sizeof(c1));
    snprintf(out, sizeof(out), "%s/out", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, out, NULL), 0);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    char *js = tu_slurp(rep, NULL);
    const char *nf = "\"type\": \"firewall\"";
    unsigned long long pkts = report_num(js, nf, "\"packets_in\": ");
    unsigned long long ops = report_num(js, nf, "\"store\": {\"ops\": ");
    unsigned long long local = report_num(js, nf, "\"local_reads\": ");
    CU_ASSERT_TRUE(pkts > 1000);
    CU_ASSERT_TRUE(local >= pkts * 9 / 10);
    CU_ASSERT_TRUE(ops > 0 && ops * 10 < pkts);
    /* --no-ft has no store */
    snprintf(out, sizeof(out), "%s/noft", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, out, "--no-ft"), 0);
    free(js);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    js = tu_slurp(rep, NULL);
    CU_ASSERT_EQUAL(report_num(js, nf, "\"local_reads\": "), 0);
    free(js);
    tu_rmrf(d);
    free(d);
}

static void test_clean_exit(void)
{
    char *d = tu_mkdtemp("clean");
    char trace[4096], c3[4200], out[4200];
    tu_trace("hping3.pcap", trace, sizeof(trace));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(out, sizeof(out), "%s/out", d);
    int shm = tu_count_dir("/dev/shm");
    CU_ASSERT_EQUAL(run(d, c3, trace, out, NULL), 0);
    CU_ASSERT_EQUAL(it_count_workers(out), 0); /* every worker exited */
    CU_ASSERT_EQUAL(tu_count_dir("/dev/shm"), shm);
    char alerts[4300];
    snprintf(alerts, sizeof(alerts), "%s/alerts.json", out);
    struct stat st;
    CU_ASSERT_EQUAL(stat(alerts, &st), 0);
    tu_rmrf(d);
    free(d);
}

static void test_bad_chains(void)
{
    static const struct {
        const char *file, *says;
    } bad[] = {{"unknown_type.yaml", "unknown NF type"},
               {"cycle.yaml", "cycle"},
               {"missing_type.yaml", "type"},
               {"store_scheme.yaml", "store"},
               {"syntax.yaml", ":"}};
    char *d = tu_mkdtemp("badchain");
    char trace[4096], out[4200], err[4200], chain[4300];
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(chain, sizeof(chain), "%s/tests/chains/bad/%s", getenv("RW_SRC"), bad[i].file);
        CU_ASSERT_EQUAL(run(d, chain, trace, out, NULL), 2);
        CU_ASSERT_TRUE(it_file_has(err, bad[i].file) >= 1); /* FILE:LINE: ... */
        CU_ASSERT_TRUE(it_file_has(err, bad[i].says) >= 1);
        struct stat st;
        CU_ASSERT_NOT_EQUAL(stat(out, &st), 0); /* nothing was created or started */
    }
    /* An NF's own config is checked before anything starts, with line and key. */
    char src[4096];
    snprintf(src, sizeof(src), "%s/docs/chains/firewall.yaml", getenv("RW_SRC"));
    snprintf(chain, sizeof(chain), "%s/badrule.yaml", d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's/dst_port: 6667/dst_port: 70000/' '%s' > '%s'", src, chain), 0);
    CU_ASSERT_EQUAL(run(d, chain, trace, out, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "badrule.yaml:23: nfs[0].config.rules[3].dst_port") >= 1);
    /* A trace that is not a capture: exit 3, nothing created. */
    struct stat st;
    char empty[4300];
    snprintf(empty, sizeof(empty), "%s/empty.pcap", d);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, ": > '%s'", empty), 0);
    CU_ASSERT_EQUAL(run(d, src, empty, out, NULL), 3);
    CU_ASSERT_TRUE(it_file_has(err, "not a readable capture") >= 1);
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    /* So is a flowspace that would split a connection across the instances. */
    snprintf(chain, sizeof(chain), "%s/badfs.yaml", d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's/flowspace: 5tuple/flowspace: src/' '%s' > '%s'", src, chain), 0);
    CU_ASSERT_EQUAL(run(d, chain, trace, out, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "nfs[0].flowspace: src with 3 instances splits") >= 1);
    CU_ASSERT_NOT_EQUAL(stat(out, &st), 0);
    tu_rmrf(d);
    free(d);
}

/* Starts `rewind run` in a child, its input paced (62,781 packets at 5000/s:
 * 12 s, far longer than any test waits), and returns once its progress shows
 * packets coming out of the chain: every worker is in its loop. */
static pid_t run_in_background(const char *d, const char *chain, const char *trace, const char *out,
                               const char *extra)
{
    char args[512], err[4300];
    snprintf(args, sizeof(args), "%s --rate 5000 --progress", extra);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    pid_t pid = fork();
    if (pid == 0)
        _exit(run(d, chain, trace, out, args));
    CU_ASSERT_TRUE(it_wait_progress(err, 1, 1));
    return pid;
}

/* --no-ft has no failover: a dead worker fails the run, naming the instance. */
static void test_worker_killed(void)
{
    char *d = tu_mkdtemp("kill");
    char trace[4096], c3[4200], out[4200], err[4300];
    tu_trace("external/real.pcap", trace, sizeof(trace));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    pid_t pid = run_in_background(d, c3, trace, out, "--no-ft");
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "pkill -9 -f 'rewind [w]orker.*instance=1 .*%s'", out);
    CU_ASSERT_EQUAL(tu_sh(NULL, "%s", cmd), 0);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1); /* failed, did not hang or crash */
    CU_ASSERT_TRUE(it_file_has(err, "fw[1] was killed by signal 9") >= 1);
    /* and the report, read alone, says the same (valid JSON, the message escaped) */
    char rep[4300];
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"ok\": false"), 1);
    CU_ASSERT_EQUAL(it_file_has(rep, "fw[1] was killed by signal 9"), 1);
    CU_ASSERT_EQUAL(tu_sh(NULL, "python3 -m json.tool '%s' > /dev/null", rep), 0);
    CU_ASSERT_EQUAL(it_count_workers(out), 0); /* the others were stopped */
    tu_rmrf(d);
    free(d);
}

/* A port has no end: SIGINT ends the input, the chain drains, and what left it is
 * what the same packets give as a trace. */
static void test_port_until_sigint(void)
{
    char *d = tu_mkdtemp("port");
    char trace[4096], c3[4200], out[4200], ref[4200], dev[8400];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(out, sizeof(out), "%s/port", d);
    snprintf(ref, sizeof(ref), "%s/trace", d);
    snprintf(dev, sizeof(dev), "net_pcap0,rx_pcap=%s", trace);
    CU_ASSERT_EQUAL_FATAL(run(d, c3, trace, ref, NULL), 0);
    pid_t pid = fork();
    if (pid == 0) {
        execl(tu_bin(), "rewind", "run", c3, "--port", dev, "--out", out, (char *)NULL);
        _exit(127);
    }
    struct it_outs a, b;
    it_read_output(ref, &a);
    char rep[4300];
    snprintf(rep, sizeof(rep), "%s/log", out);
    for (int i = 0; i < 1500; i++) { /* until the input log holds every packet */
        usleep(20000);
        if (tu_sh(NULL, "'%s' log stat '%s' --json 2>/dev/null | grep -q '\"packets\": 2012,'",
                  tu_bin(), rep) == 0)
            break;
    }
    kill(pid, SIGINT);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    it_read_output(out, &b);
    CU_ASSERT_TRUE(it_same_outs(&a, &b));
    CU_ASSERT_EQUAL(it_count_workers(out), 0);
    it_free_outs(&a);
    it_free_outs(&b);
    tu_rmrf(d);
    free(d);
}

/* The catalog's chain, firewall -> port-scan detector (blocking) -> NAT, on the nmap
 * scan: the scanner is detected once and blocked, what leaves is translated, and
 * a second run leaves exactly the same. */
static void test_full_chain(void)
{
    char *d = tu_mkdtemp("full");
    char trace[4096], chain[4200], a[4200], b[4200], al[4300];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    snprintf(chain, sizeof(chain), "%s/docs/chains/full.yaml", getenv("RW_SRC"));
    snprintf(a, sizeof(a), "%s/a", d);
    snprintf(b, sizeof(b), "%s/b", d);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, a, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, b, NULL), 0);
    snprintf(al, sizeof(al), "%s/alerts.json", a);
    CU_ASSERT_EQUAL(it_file_has(al, "\"type\": \"scan.detected\""), 1);
    CU_ASSERT_EQUAL(it_file_has(al, "\"host\": \"10.200.0.1\""), 1);
    CU_ASSERT_TRUE(it_file_has(al, "nat.map") >= 1);
    struct it_outs x, y;
    it_read_output(a, &x);
    it_read_output(b, &y);
    CU_ASSERT_TRUE(x.n > 0 && x.n < 100); /* blocked once detected */
    CU_ASSERT_TRUE(it_same_outs(&x, &y));
    uint8_t ext[4] = {192, 0, 2, 1};
    for (size_t i = 0; i < x.n; i++) /* every client packet that left was translated */
        if (x.p[i].len >= 34 && x.p[i].data[12] == 0x08 && x.p[i].data[29] != 2)
            CU_ASSERT_EQUAL(memcmp(x.p[i].data + 26, ext, 4), 0);
    it_free_outs(&x);
    it_free_outs(&y);
    tu_rmrf(d);
    free(d);
}

/* The first line of path holding what, copied (empty when none). */
static void line_with(const char *path, const char *what, char *out, size_t n)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    char line[2048];
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, what)) {
            snprintf(out, n, "%s", line);
            break;
        }
    if (f)
        fclose(f);
}

/* Offline forensic replay: the full chain re-run over its own input log keeps the
 * packets' clocks and times, so its output is what verify finds equivalent and its
 * detection names the same clock and time; a selection keeps its clocks too. */
static void test_run_from_log(void)
{
    char *d = tu_mkdtemp("fromlog");
    char trace[4096], chain[4200], a[4200], b[4200], c[4200], o[4300], f1[4400], f2[4400];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    snprintf(chain, sizeof(chain), "%s/docs/chains/full.yaml", getenv("RW_SRC"));
    snprintf(a, sizeof(a), "%s/a", d);
    snprintf(b, sizeof(b), "%s/b", d);
    snprintf(c, sizeof(c), "%s/c", d);
    snprintf(o, sizeof(o), "%s/cmd", d);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, a, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(o, "'%s' run '%s' --from-log '%s/log' --out '%s'", tu_bin(), chain, a, b), 0);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' verify '%s' '%s'", tu_bin(), a, b), 0);
    char la[2048], lb[2048];
    snprintf(f1, sizeof(f1), "%s/alerts.json", a);
    snprintf(f2, sizeof(f2), "%s/alerts.json", b);
    line_with(f1, "scan.detected", la, sizeof(la));
    line_with(f2, "scan.detected", lb, sizeof(lb));
    CU_ASSERT_TRUE(la[0] != '\0');
    CU_ASSERT_STRING_EQUAL(la, lb); /* same clock, same ts, same host */
    /* A selection: from clock 500 on, its clocks kept in the new run's log. */
    CU_ASSERT_EQUAL_FATAL(tu_sh(o, "'%s' run '%s' --from-log '%s/log' --from-clock 500 --out '%s'",
                                tu_bin(), chain, a, c),
                          0);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log stat '%s/log' --json", tu_bin(), c), 0);
    snprintf(f1, sizeof(f1), "%s.stdout", o);
    CU_ASSERT_EQUAL(it_file_has(f1, "\"first_clock\": 500,"), 2); /* the segment and the log */
    /* Refused: two inputs, a selection without a log, an empty selection. */
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' run '%s' --from-log '%s/log' --trace '%s' --out '%s/x'",
                          tu_bin(), chain, a, trace, d),
                    2);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' run '%s' --since 2026-01-01 --out '%s/x'", tu_bin(), chain, d),
                    2);
    CU_ASSERT_EQUAL(tu_sh(o,
                          "'%s' run '%s' --from-log '%s/log' --filter 'host 1.2.3.4' --out '%s/x'",
                          tu_bin(), chain, a, d),
                    1);
    snprintf(f1, sizeof(f1), "%s.stderr", o);
    CU_ASSERT_EQUAL(it_file_has(f1, "the selection holds no packet"), 1);
    tu_rmrf(d);
    free(d);
}

/* The same chain with its state in a real redis-server (started here on loopback
 * and stopped at the end) leaves the same output as with LMDB. */
static void test_redis_store(void)
{
    char *d = tu_mkdtemp("redis");
    int port;
    pid_t rs = it_redis_start(d, &port);
    CU_ASSERT_TRUE_FATAL(rs > 0);
    char trace[4096], c3[4200], cr[4200], a[4200], b[4200];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(cr, sizeof(cr), "%s/fw-redis.yaml", d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's#store: lmdb:store#store: redis://127.0.0.1:%d#' '%s' > '%s'", port, c3,
              cr),
        0);
    snprintf(a, sizeof(a), "%s/lmdb", d);
    snprintf(b, sizeof(b), "%s/redis", d);
    CU_ASSERT_EQUAL(run(d, c3, trace, a, NULL), 0);
    CU_ASSERT_EQUAL(run(d, cr, trace, b, NULL), 0);
    struct it_outs x, y;
    it_read_output(a, &x);
    it_read_output(b, &y);
    CU_ASSERT_TRUE(x.n > 0);
    CU_ASSERT_TRUE(it_same_outs(&x, &y));
    CU_ASSERT_TRUE(tu_sh(NULL, "redis-cli -p %d dbsize | grep -qv '^0$'", port) ==
                   0); /* it was used */
    /* A second run on the database, on other traffic, would meet the first's op
     * records at the same clocks and take their answers: refused, naming the
     * first run, until --force clears it; then it equals the same run on LMDB. */
    char t2[4096], a2[4200], c[4200], err[4300];
    tu_trace("trojan_sequence.pcap", t2, sizeof(t2));
    snprintf(a2, sizeof(a2), "%s/lmdb2", d);
    snprintf(c, sizeof(c), "%s/redis2", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    CU_ASSERT_EQUAL(run(d, cr, t2, c, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "holds the state of another run") == 1);
    CU_ASSERT_TRUE(it_file_has(err, "/redis, started") == 1);
    CU_ASSERT_EQUAL(run(d, cr, t2, c, "--force"), 0);
    CU_ASSERT_EQUAL(run(d, c3, t2, a2, NULL), 0);
    it_free_outs(&x);
    it_free_outs(&y);
    it_read_output(a2, &x);
    it_read_output(c, &y);
    CU_ASSERT_TRUE(x.n > 0 && it_same_outs(&x, &y));
    kill(rs, SIGTERM);
    waitpid(rs, NULL, 0);
    it_free_outs(&x);
    it_free_outs(&y);
    tu_rmrf(d);
    free(d);
}

/* A run's directory holds one run: a second run into it would continue the
 * first's clocks and store and mix its output with the first's. It is refused
 * (exit 2, saying what the directory holds) until --force replaces exactly the
 * run's files. */
static void test_out_reused(void)
{
    char *d = tu_mkdtemp("reuse");
    char trace[4096], c1[4200], out[4200], err[4300], mine[4300], first[4200];
    tu_trace("nmap_sT_top1000.pcap", trace, sizeof(trace));
    chain_with(d, 1, c1, sizeof(c1));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(first, sizeof(first), "%s/first", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    snprintf(mine, sizeof(mine), "%s/out/notes.txt", d);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, first, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, c1, trace, out, NULL), 0);
    struct stat st;
    CU_ASSERT_TRUE(stat(out, &st) == 0 && (st.st_mode & 0777) == 0700);
    FILE *f = fopen(mine, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    CU_ASSERT_EQUAL(run(d, c1, trace, out, NULL), 2);
    CU_ASSERT_TRUE(it_file_has(err, "holds a previous run (log, output, alerts, alerts.json, "
                                    "report.json, state.json, store)") == 1);
    CU_ASSERT_TRUE(it_file_has(err, "--force") == 1);
    /* the quarantine of an earlier run is that run's: --force removes it too */
    char q[4300];
    snprintf(q, sizeof(q), "%s/out/quarantine.pcapng", d);
    CU_ASSERT_EQUAL(tu_sh(NULL, ": > '%s'", q), 0);
    CU_ASSERT_EQUAL(run(d, c1, trace, out, "--force"), 0);
    CU_ASSERT_EQUAL(access(mine, F_OK), 0); /* not the run's: left alone */
    CU_ASSERT_NOT_EQUAL(access(q, F_OK), 0);
    struct it_outs a, b; /* clocks from 0 again, nothing of the first run */
    it_read_output(first, &a);
    it_read_output(out, &b);
    CU_ASSERT_TRUE(a.n > 0 && it_same_outs(&a, &b));
    it_free_outs(&b);
    /* A store beside --out (lmdb:../x) is not --out's to remove: --force clears
     * its state (the store refuses another run without it) and leaves the rest
     * of the parent alone; lmdb:./x is inside. */
    const char *stores[] = {"../beside", "./inside"};
    for (int i = 0; i < 2; i++) {
        char cs[4300], o2[4300];
        snprintf(cs, sizeof(cs), "%s/store%d.yaml", d, i);
        snprintf(o2, sizeof(o2), "%s/out%d", d, i);
        CU_ASSERT_EQUAL_FATAL(
            tu_sh(NULL, "sed 's#store: lmdb:store#store: lmdb:%s#' '%s' > '%s'", stores[i], c1, cs),
            0);
        CU_ASSERT_EQUAL(run(d, cs, trace, o2, NULL), 0);
        CU_ASSERT_EQUAL(run(d, cs, trace, o2, NULL), 2);
        CU_ASSERT_EQUAL(run(d, cs, trace, o2, "--force"), 0);
        CU_ASSERT_EQUAL(access(first, F_OK), 0); /* a sibling of --out survives */
        it_read_output(o2, &b);
        CU_ASSERT_TRUE(it_same_outs(&a, &b));
        it_free_outs(&b);
    }
    char beside[4300];
    snprintf(beside, sizeof(beside), "%s/beside", d);
    CU_ASSERT_EQUAL(access(beside, F_OK), 0);
    it_free_outs(&a);
    tu_rmrf(d);
    free(d);
}

/* A Redis password in the chain's store URL reaches the workers through the run's
 * shared block, never a command line (anyone may read /proc/PID/cmdline), and no
 * message or report shows it. */
static void test_store_password_private(void)
{
    char *d = tu_mkdtemp("secret");
    int port;
    pid_t rs = it_redis_start(d, &port);
    CU_ASSERT_TRUE_FATAL(rs > 0);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "redis-cli -p %d config set requirepass s3cr3t-pw >/dev/null", port), 0);
    char trace[4096], c1[4200], cr[4200], bad[4200], out[4200], err[4300], rep[4300];
    tu_trace("external/real.pcap", trace, sizeof(trace));
    chain_with(d, 1, c1, sizeof(c1));
    snprintf(cr, sizeof(cr), "%s/pw.yaml", d);
    snprintf(bad, sizeof(bad), "%s/badpw.yaml", d);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "sed 's#store: lmdb:store#store: redis://:s3cr3t-pw@127.0.0.1:%d#' "
                                "'%s' > '%s' && sed 's#:%d#:notaport#' '%s' > '%s'",
                                port, c1, cr, port, cr, bad),
                          0);
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    snprintf(rep, sizeof(rep), "%s/out/report.json", d);
    pid_t pid = fork();
    if (pid == 0)
        _exit(run(d, cr, trace, out, "--rate 20000"));
    for (int i = 0; i < 3000 && it_count_workers(out) < 3; i++) /* its worker and 2 spares */
        usleep(10000);
    CU_ASSERT_TRUE(it_count_workers(out) >= 3);
    /* [t]: grep's own command line must not match itself */
    CU_ASSERT_NOT_EQUAL(tu_sh(NULL, "grep -l 's3cr3[t]-pw' /proc/[0-9]*/cmdline 2>/dev/null"), 0);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_EQUAL(it_file_has(rep, "s3cr3t"), 0);
    CU_ASSERT_EQUAL(run(d, bad, trace, out, "--force"), 2);
    CU_ASSERT_TRUE(it_file_has(err, "notaport") == 1);
    CU_ASSERT_EQUAL(it_file_has(err, "s3cr3t"), 0);
    kill(rs, SIGTERM);
    waitpid(rs, NULL, 0);
    tu_rmrf(d);
    free(d);
}

/* A hung worker (stopped, not dead) misses its heartbeats: the coordinator kills
 * it, so the failure is fail-stop and the run ends instead of waiting forever
 * (--no-ft: with FT the slot is failed over, test_failover.c). */
static void test_worker_hung(void)
{
    char *d = tu_mkdtemp("hung");
    char trace[4096], c3[4200], out[4200], err[4300];
    tu_trace("external/real.pcap", trace, sizeof(trace));
    chain_with(d, 3, c3, sizeof(c3));
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(err, sizeof(err), "%s/run.stderr", d);
    pid_t pid =
        run_in_background(d, c3, trace, out, "--no-ft --heartbeat-ms 50 --heartbeat-misses 10");
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "pkill -STOP -f 'rewind [w]orker.*instance=2 .*%s'", out);
    CU_ASSERT_EQUAL(tu_sh(NULL, "%s", cmd), 0);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    /* stopped while running, or (on a slow machine) while still starting up */
    CU_ASSERT_TRUE(it_file_has(err, "fw[2] stopped answering (500 ms) and was killed") +
                       it_file_has(err, "fw[2] did not finish starting (5000 ms) and was killed") ==
                   1);
    CU_ASSERT_EQUAL(it_count_workers(out), 0);
    tu_rmrf(d);
    free(d);
}

/* Edge filters split an NF's output (fan-out) and the sink merges two NFs' outputs
 * (fan-in): every packet leaves once, web traffic rewritten by the balancer, the
 * rest unchanged. */
static void test_branches(void)
{
    char *d = tu_mkdtemp("branch");
    char trace[4096], chain[4200], out[4200];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(chain, sizeof(chain), "%s/tests/chains/good/branch.yaml", getenv("RW_SRC"));
    snprintf(out, sizeof(out), "%s/out", d);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, out, NULL), 0);
    struct it_outs o;
    it_read_output(out, &o);
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(o.n, ref.n);
    int web = 0, other_changed = 0;
    for (size_t i = 0; i < o.n; i++) {
        const struct tu_pkt *in = &ref.pkts[o.p[i].clock];
        const uint8_t *x = in->data;
        size_t ihl = (size_t)(x[14] & 15) * 4;
        bool to_web = in->caplen > 14 + ihl + 4 && x[12] == 8 && x[23] == 6 &&
                      (x[14 + ihl + 2] << 8 | x[14 + ihl + 3]) == 80 && x[33] == 2;
        if (to_web) { /* to the VIP's port 80: sent to a backend 10.200.9.x */
            web++;
            CU_ASSERT_TRUE(o.p[i].data[32] == 9 && (o.p[i].data[33] == 1 || o.p[i].data[33] == 2));
        } else if (!(x[23] == 6 && (x[14 + ihl] << 8 | x[14 + ihl + 1]) == 80)) {
            other_changed += o.p[i].len != in->caplen || memcmp(o.p[i].data, in->data, in->caplen);
        }
    }
    CU_ASSERT_TRUE(web > 10);
    CU_ASSERT_EQUAL(other_changed, 0);
    tu_pcap_free(&ref);
    it_free_outs(&o);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "edge filters fan out, the sink fans in", test_branches);
    CU_add_test(s, "--no-ft: a hung worker is detected by its heartbeats and killed",
                test_worker_hung);
    CU_add_test(s, "state in Redis gives the same output as in LMDB; one run per database",
                test_redis_store);
    CU_add_test(s, "a second run into the same --out is refused; --force replaces it",
                test_out_reused);
    CU_add_test(s, "a Redis password is on no command line and in no message",
                test_store_password_private);
    CU_add_test(s, "the full chain detects, blocks and translates, the same every run",
                test_full_chain);
    CU_add_test(s, "a port until SIGINT drains and matches the trace run", test_port_until_sigint);
    CU_add_test(s, "a chain re-run over its input log keeps clocks and times: verify equivalent",
                test_run_from_log);
    CU_add_test(s, "1 and 3 instances and --no-ft give the same output", test_equivalent_outputs);
    CU_add_test(s, "the firewall passes and drops what its rules say", test_firewall_verdicts);
    CU_add_test(s, "reads of a connection's own state never reach the store",
                test_own_reads_stay_local);
    CU_add_test(s, "every process exits and nothing is left behind", test_clean_exit);
    CU_add_test(s, "bad chain files are refused before anything starts", test_bad_chains);
    CU_add_test(s, "--no-ft: a worker killed mid-run fails the run cleanly", test_worker_killed);
}

int main(void)
{
    return tu_main("run", add);
}
