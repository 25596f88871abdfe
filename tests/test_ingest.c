/*
 * test_ingest.c - the foundation end to end through the `rewind` binary: real
 * captures are read through DPDK's net_pcap driver into the log and read back
 * out; every comparison is made with libpcap or tcpdump, never with rewind's
 * own reader.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

static const char *bundled[] = {"irc.pcap", "nmap_sT_top1000.pcap", "hping3.pcap",
                                "trojan_sequence.pcap", "external/real.pcap"};

static void round_trip(const char *name)
{
    char trace[4096], log[4200], out1[4200], out2[4200];
    char *d = tu_mkdtemp("ingest");
    tu_trace(name, trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(out1, sizeof(out1), "%s/out.pcap", d);
    snprintf(out2, sizeof(out2), "%s/out.pcapng", d);
    struct tu_pcap ref, a, b;
    if (tu_pcap_read(trace, &ref)) {
        fprintf(stderr, "cannot read %s (tools/setup.sh fetches external/real.pcap)\n", trace);
        CU_FAIL_FATAL("trace missing");
    }
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s' >/dev/null", tu_bin(), log), 0);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, out1, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, out2, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out1, &a), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out2, &b), 0);
    CU_ASSERT_EQUAL(a.n, ref.n);
    CU_ASSERT_EQUAL(b.n, ref.n);
    if (a.n == ref.n && b.n == ref.n) {
        CU_ASSERT_EQUAL(it_diff(&ref, 0, &a, 0, ref.n, 1), -1);
        CU_ASSERT_EQUAL(it_diff(&ref, 0, &b, 0, ref.n, 1), -1);
    }
    tu_pcap_free(&ref);
    tu_pcap_free(&a);
    tu_pcap_free(&b);
    tu_rmrf(d);
    free(d);
}

static void test_round_trip_all(void)
{
    for (size_t i = 0; i < sizeof(bundled) / sizeof(bundled[0]); i++) {
        fprintf(stderr, "  round trip %s\n", bundled[i]);
        round_trip(bundled[i]);
    }
}

static void test_append_keeps_clocks_apart(void)
{
    char trace[4096], log[4200], out[4200];
    char *d = tu_mkdtemp("ingest");
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/a\"b/log", d); /* parents are created; JSON-escaped */
    snprintf(out, sizeof(out), "%s/second.pcap", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, "--durability power"), 0);
    /* The second run starts at the first run's reservation, 65536. */
    CU_ASSERT_EQUAL(it_export(d, log, out, "--from-clock 65536"), 0);
    struct tu_pcap ref, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    CU_ASSERT_EQUAL(got.n, ref.n);
    if (got.n == ref.n)
        CU_ASSERT_EQUAL(it_diff(&ref, 0, &got, 0, ref.n, 1), -1);
    tu_pcap_free(&got);
    CU_ASSERT_EQUAL(it_export(d, log, out, "--to-clock 65535"), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    CU_ASSERT_EQUAL(got.n, ref.n);
    char stat[4200];
    snprintf(stat, sizeof(stat), "%s/stat", d);
    CU_ASSERT_EQUAL(tu_sh(stat, "'%s' log stat '%s' --json", tu_bin(), log), 0);
    snprintf(stat, sizeof(stat), "%s/stat.stdout", d);
    CU_ASSERT_TRUE(it_file_has(stat, "\"packets\": 196,") >= 1);
    CU_ASSERT_EQUAL(it_file_has(stat, "a\\\"b/log\""), 1);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' log verify '%s' >/dev/null", tu_bin(), log), 0);
    tu_pcap_free(&ref);
    tu_pcap_free(&got);
    tu_rmrf(d);
    free(d);
}

/* rewind's selection must equal tcpdump's over the original capture. */
static void compare_with_tcpdump(const char *d, const char *trace, const char *log,
                                 const char *rewind_args, const char *bpf, const char *index)
{
    char mine[4200], theirs[4200], err[4200];
    snprintf(mine, sizeof(mine), "%s/mine.pcap", d);
    snprintf(theirs, sizeof(theirs), "%s/theirs.pcap", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, mine, rewind_args), 0);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "tcpdump -r '%s' -w '%s' '%s' 2>/dev/null", trace, theirs, bpf), 0);
    struct tu_pcap a, b;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(mine, &a), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(theirs, &b), 0);
    CU_ASSERT_TRUE(b.n > 0);
    CU_ASSERT_EQUAL(a.n, b.n);
    if (a.n == b.n)
        CU_ASSERT_EQUAL(it_diff(&a, 0, &b, 0, a.n, 1), -1);
    CU_ASSERT_EQUAL(it_file_has(err, index), 1);
    tu_pcap_free(&a);
    tu_pcap_free(&b);
}

static void test_queries_match_tcpdump(void)
{
    char trace[4096], log[4200];
    char *d = tu_mkdtemp("query");
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, "--block-packets 64"), 0);
    /* The ssh session: 43 packets both ways, found through the flow index. */
    compare_with_tcpdump(d, trace, log, "--flow 'tcp 10.200.0.2:22 10.200.0.1:53044'",
                         "tcp and host 10.200.0.1 and port 53044 and host 10.200.0.2 and port 22",
                         "flow index");
    compare_with_tcpdump(d, trace, log, "--filter 'tcp port 21 or tcp port 6667'",
                         "tcp port 21 or tcp port 6667", "keys index");
    compare_with_tcpdump(
        d, trace, log,
        "--flow 'tcp 10.200.0.1:54524 10.200.0.2:80' --filter 'tcp[tcpflags] & tcp-syn != 0'",
        "host 10.200.0.1 and port 54524 and port 80 and tcp[tcpflags] & tcp-syn != 0",
        "flow index");
    tu_rmrf(d);
    free(d);
}

/* The keys index on real traffic: each filter's answer is tcpdump's over the whole
 * log (the log holds reassembled datagrams, so not over the original capture),
 * through the index named, and a narrow one reads at most max_pct of the blocks. */
struct keys_case {
    const char *trace, *bpf, *index;
    unsigned max_pct; /* 0: no bound */
};

static void test_keys_filters_match_tcpdump(void)
{
    static const struct keys_case cases[] = {
        {"external/real.pcap", "host 10.64.93.174", "keys index", 10},
        {"external/real.pcap", "tcp and host 10.64.93.174", "keys index", 10},
        {"external/real.pcap", "host 10.64.93.174 or 10.64.1.1", "keys index", 10},
        {"external/real.pcap", "net 10.64.93.0/24 and not port 80", "keys index", 0},
        {"external/real.pcap", "port 139", "keys index", 0},
        {"external/real.pcap", "udp or icmp", "keys index", 0},
        {"external/real.pcap", "arp", "keys index", 0},
        {"external/real.pcap", "tcp[13] & 2 != 0", "clock index", 0},
        {"frag_nmap_sT.pcap", "tcp port 445", "keys index", 10},
        {"frag_nmap_sT.pcap", "host 10.200.0.2 and tcp", "keys index", 0},
        {"ipv6_ext.pcap", "host 2001:db8::66", "keys index", 50},
        {"ipv6_ext.pcap", "net 2001:db8::/64 and port 6667", "keys index", 20},
        {"ipv6_ext.pcap", "ip6 proto 0", "keys index", 0},
    };
    char *d = tu_mkdtemp("keys");
    const char *cur = "";
    char trace[4096], log[4200], full[4200], mine[4200], theirs[4200], err[4200];
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(full, sizeof(full), "%s/full.pcap", d);
    snprintf(mine, sizeof(mine), "%s/mine.pcap", d);
    snprintf(theirs, sizeof(theirs), "%s/theirs.pcap", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct keys_case *c = &cases[i];
        if (strcmp(cur, c->trace)) {
            cur = c->trace;
            tu_rmrf(log);
            CU_ASSERT_EQUAL_FATAL(
                it_ingest(d, tu_trace(c->trace, trace, sizeof(trace)), log, "--block-packets 64"),
                0);
            CU_ASSERT_EQUAL_FATAL(it_export(d, log, full, NULL), 0);
        }
        char args[256];
        snprintf(args, sizeof(args), "--filter '%s'", c->bpf);
        CU_ASSERT_EQUAL_FATAL(it_export(d, log, mine, args), 0);
        CU_ASSERT_EQUAL_FATAL(
            tu_sh(NULL, "tcpdump -r '%s' -w '%s' '%s' 2>/dev/null", full, theirs, c->bpf), 0);
        struct tu_pcap a, b;
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(mine, &a), 0);
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(theirs, &b), 0);
        char *s = tu_slurp(err, NULL);
        const char *p = s ? strstr(s, c->index) : NULL;
        unsigned long read = 0, total = 0;
        if (p)
            sscanf(p + strlen(c->index), ", %lu of %lu blocks", &read, &total);
        fprintf(stderr, "  %s '%s': %zu packets (tcpdump %zu), %s, %lu of %lu blocks\n", c->trace,
                c->bpf, a.n, b.n, p ? c->index : "OTHER INDEX", read, total);
        CU_ASSERT_TRUE(b.n > 0);
        CU_ASSERT_EQUAL(a.n, b.n);
        if (a.n == b.n)
            CU_ASSERT_EQUAL(it_diff(&a, 0, &b, 0, a.n, 1), -1);
        CU_ASSERT_PTR_NOT_NULL(p);
        CU_ASSERT_TRUE(total > 0);
        if (c->max_pct)
            CU_ASSERT_TRUE(read * 100 <= total * c->max_pct);
        free(s);
        tu_pcap_free(&a);
        tu_pcap_free(&b);
    }
    tu_rmrf(d);
    free(d);
}

/* Packets and wire bytes of what tcpdump selects from capture with bpf. */
static void tcpdump_totals(const char *d, const char *capture, const char *bpf, size_t *n,
                           uint64_t *bytes, char *first_src, size_t cap)
{
    char out[4200];
    snprintf(out, sizeof(out), "%s/tcpdump-totals.pcap", d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "tcpdump -r '%s' -w '%s' '%s' 2>/dev/null", capture, out, bpf), 0);
    struct tu_pcap p;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &p), 0);
    *n = p.n;
    *bytes = 0;
    for (size_t i = 0; i < p.n; i++)
        *bytes += p.pkts[i].len;
    if (first_src && p.n && p.pkts[0].caplen >= 30) { /* untagged IPv4: the source address */
        const uint8_t *a = p.pkts[0].data + 26;
        snprintf(first_src, cap, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
    }
    tu_pcap_free(&p);
}

/* rewind log flows/hosts over a selection: every IP packet and byte of it counted
 * once (in one conversation; as sent by one host and received by one), as tcpdump
 * counts them over the whole log's export. */
static void test_log_flows_and_hosts(void)
{
    char trace[4096], log[4200], full[4200], o[4200], js[4300];
    char *d = tu_mkdtemp("flows");
    tu_trace("external/real.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(full, sizeof(full), "%s/full.pcap", d);
    snprintf(o, sizeof(o), "%s/out", d);
    snprintf(js, sizeof(js), "%s/out.stdout", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, full, NULL), 0);
    size_t n;
    uint64_t bytes;
    tcpdump_totals(d, full, "ip or ip6", &n, &bytes, NULL, 0);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log flows '%s' --json", tu_bin(), log), 0);
    CU_ASSERT_EQUAL(
        tu_sh(NULL,
              "python3 -c 'import json,sys\n"
              "d = json.load(open(sys.argv[1]))\n"
              "for x in d:\n"
              "    assert {\"proto\", \"src\", \"dst\", \"first\", \"last\", \"packets\", "
              "\"bytes\"} <= set(x), x\n"
              "    assert x[\"packets\"] == x[\"src_packets\"] + x[\"dst_packets\"], x\n"
              "    assert x[\"first\"] <= x[\"last\"], x\n"
              "got = (sum(x[\"packets\"] for x in d), sum(x[\"bytes\"] for x in d))\n"
              "assert got == (%zu, %llu), got\n"
              "print(len(d), \"conversations\", file=sys.stderr)' '%s'",
              n, (unsigned long long)bytes, js),
        0);
    /* Hosts: every IP packet sent once and received once. */
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log hosts '%s' --json", tu_bin(), log), 0);
    CU_ASSERT_EQUAL(tu_sh(NULL,
                          "python3 -c 'import json,sys\n"
                          "d = json.load(open(sys.argv[1]))\n"
                          "assert sum(x[\"sent_packets\"] for x in d) == %zu\n"
                          "assert sum(x[\"received_packets\"] for x in d) == %zu\n"
                          "assert sum(x[\"sent_bytes\"] for x in d) == %llu' '%s'",
                          n, n, (unsigned long long)bytes, js),
                    0);
    /* One connection through the flow index: its packets, bytes and initiator. */
    char src[32] = "";
    tcpdump_totals(d, full,
                   "tcp and host 10.151.119.2 and port 2193 and host 10.64.88.105 and port 10051",
                   &n, &bytes, src, sizeof(src));
    CU_ASSERT_EQUAL(
        tu_sh(o, "'%s' log flows '%s' --flow 'tcp 10.64.88.105:10051 10.151.119.2:2193' --json",
              tu_bin(), log),
        0);
    CU_ASSERT_EQUAL(
        tu_sh(NULL,
              "python3 -c 'import json,sys\n"
              "d = json.load(open(sys.argv[1]))\n"
              "assert len(d) == 1, d\n"
              "x = d[0]\n"
              "assert (x[\"packets\"], x[\"bytes\"], x[\"src\"]) == (%zu, %llu, \"%s\"), x' "
              "'%s'",
              n, (unsigned long long)bytes, src, js),
        0);
    /* Top talkers and the largest conversations first; the keys index narrows. */
    CU_ASSERT_EQUAL(
        tu_sh(o, "'%s' log flows '%s' --filter 'host 10.64.93.174' --by bytes --top 3 --json",
              tu_bin(), log),
        0);
    tcpdump_totals(d, full, "host 10.64.93.174", &n, &bytes, NULL, 0);
    CU_ASSERT_EQUAL(tu_sh(NULL,
                          "python3 -c 'import json,sys\n"
                          "d = json.load(open(sys.argv[1]))\n"
                          "b = [x[\"bytes\"] for x in d]\n"
                          "assert len(d) == 3 and b == sorted(b, reverse=True), b\n"
                          "assert sum(b) <= %llu' '%s'",
                          (unsigned long long)bytes, js),
                    0);
    char err[4300];
    snprintf(err, sizeof(err), "%s/out.stderr", d);
    CU_ASSERT_EQUAL(it_file_has(err, "keys index"), 1);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log flows '%s' --top 0", tu_bin(), log), 2);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log hosts '%s' --by size", tu_bin(), log), 2);
    CU_ASSERT_EQUAL(tu_sh(o, "'%s' log hosts '%s' --since 2012-11-23 --last 5m", tu_bin(), log), 2);
    tu_rmrf(d);
    free(d);
}

/* One 12-packet connection on the LAN hour's busiest host pair (10.151.119.2 and
 * 10.64.88.105: 37,462 of its 62,781 packets, in every block). The flow index must
 * read only the block or two that hold it: a hash that lost the ports (issue 10,
 * the Release build's) reads every block, and the answer must still be tcpdump's. */
static void test_flow_on_busiest_host_pair(void)
{
    char trace[4096], log[4200], err[4200];
    char *d = tu_mkdtemp("busy");
    tu_trace("external/real.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    compare_with_tcpdump(d, trace, log, "--flow 'tcp 10.64.88.105:10051 10.151.119.2:2193'",
                         "tcp and host 10.151.119.2 and port 2193 and host 10.64.88.105 and "
                         "port 10051",
                         "flow index");
    char *s = tu_slurp(err, NULL);
    const char *p = s ? strstr(s, "flow index, ") : NULL;
    unsigned long read = 0, total = 0;
    CU_ASSERT_TRUE_FATAL(p && sscanf(p, "flow index, %lu of %lu blocks", &read, &total) == 2);
    fprintf(stderr, "  busiest host pair: %lu of %lu blocks read\n", read, total);
    CU_ASSERT_TRUE(total >= 60); /* 1024-packet blocks at most */
    CU_ASSERT_TRUE(read >= 1 && read <= 4);
    free(s);
    tu_rmrf(d);
    free(d);
}

static void test_time_window(void)
{
    char trace[4096], log[4200], out[4200], args[256];
    char *d = tu_mkdtemp("time");
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(out, sizeof(out), "%s/win.pcapng", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, "--block-packets 32"), 0);
    struct tu_pcap ref, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    uint64_t since = ref.pkts[1500].ts_ns, until = ref.pkts[1700].ts_ns;
    snprintf(
        args, sizeof(args), "--since %llu.%09llu --until %llu.%09llu",
        (unsigned long long)(since / 1000000000ull), (unsigned long long)(since % 1000000000ull),
        (unsigned long long)(until / 1000000000ull), (unsigned long long)(until % 1000000000ull));
    CU_ASSERT_EQUAL_FATAL(it_export(d, log, out, args), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    size_t first = 0, n = 0;
    for (size_t i = 0; i < ref.n; i++)
        if (ref.pkts[i].ts_ns >= since && ref.pkts[i].ts_ns <= until) {
            if (!n)
                first = i;
            n++;
        }
    CU_ASSERT_EQUAL(got.n, n);
    if (got.n == n)
        CU_ASSERT_EQUAL(it_diff(&ref, first, &got, 0, n, 1), -1);
    char err[4200];
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    CU_ASSERT_EQUAL(it_file_has(err, "time index"), 1);
    tu_pcap_free(&ref);
    tu_pcap_free(&got);
    tu_rmrf(d);
    free(d);
}

/* "--since S --until U" in epoch seconds with nanoseconds. */
static void window_args(uint64_t since, uint64_t until, char *buf, size_t cap)
{
    snprintf(
        buf, cap, "--since %llu.%09llu --until %llu.%09llu",
        (unsigned long long)(since / 1000000000ull), (unsigned long long)(since % 1000000000ull),
        (unsigned long long)(until / 1000000000ull), (unsigned long long)(until % 1000000000ull));
}

/* Exports [since, until] of log; checks it holds exactly trace's packets in that
 * window, in log order, and returns the blocks read (-1 when it failed). */
static long window_exact(const char *d, const char *log, const struct tu_pcap *trace,
                         uint64_t since, uint64_t until)
{
    char args[256], out[4200], err[4200];
    window_args(since, until, args, sizeof(args));
    snprintf(out, sizeof(out), "%s/win.pcapng", d);
    snprintf(err, sizeof(err), "%s/replay.stderr", d);
    struct tu_pcap got;
    if (it_export(d, log, out, args) || tu_pcap_read(out, &got)) {
        fprintf(stderr, "  window %s: replay failed\n", args);
        return -1;
    }
    size_t j = 0;
    bool same = true;
    for (size_t i = 0; i < trace->n && same; i++) {
        if (trace->pkts[i].ts_ns < since || trace->pkts[i].ts_ns > until)
            continue;
        same = j < got.n && it_diff(trace, i, &got, j, 1, 1) == -1;
        j++;
    }
    bool exact = same && j == got.n;
    if (!exact)
        fprintf(stderr, "  window %s: %zu packets, %zu expected\n", args, got.n, j);
    tu_pcap_free(&got);
    char *s = tu_slurp(err, NULL);
    const char *p = s ? strstr(s, "index, ") : NULL;
    unsigned long read = 0, total = 0;
    bool parsed = p && sscanf(p, "index, %lu of %lu blocks", &read, &total) == 2;
    free(s);
    return exact && parsed ? (long)read : -1;
}

/* Writes ref as d/NAME.pcap and logs it into d/NAME-log (32-packet blocks,
 * closed by size only, not by the commit timer of a loaded machine); ref is
 * read back, so its timestamps are the capture's (microseconds). */
static void log_copy(const char *d, const char *name, struct tu_pcap *ref, char *log, size_t cap)
{
    char pcap[4200];
    snprintf(pcap, sizeof(pcap), "%s/%s.pcap", d, name);
    snprintf(log, cap, "%s/%s-log", d, name);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(pcap, ref), 0);
    tu_pcap_free(ref);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(pcap, ref), 0);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, pcap, log, "--block-packets 32 --commit-us 10000000"), 0);
}

/* A capture whose timestamps go backwards (packets from several taps merged, a
 * clock stepped back) still has its time windows narrowed by the time index, and
 * keeps every packet of a window, however late it was written: the segment keeps
 * a bound on how far a packet lies behind the latest time before it. */
static void test_time_window_out_of_order(void)
{
    char trace[4096], log[4200];
    char *d = tu_mkdtemp("disorder");
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    CU_ASSERT_TRUE_FATAL(ref.n >= 1500);
    /* one packet a millisecond, every 7th stamped 3 ms early (as from a tap
     * whose clock lags) */
    uint64_t t0 = ref.pkts[0].ts_ns;
    for (size_t i = 0; i < ref.n; i++)
        ref.pkts[i].ts_ns = t0 + i * 1000000 - (i % 7 == 3 ? 3000000 : 0);
    log_copy(d, "jitter", &ref, log, sizeof(log));
    /* windows of about 100 packets (3 blocks) across the capture: a few blocks
     * each, not the rest of the log (which reading to the end would be) */
    for (size_t k = 100; k + 100 < ref.n; k += 400) {
        long read = window_exact(d, log, &ref, ref.pkts[k].ts_ns, ref.pkts[k + 100].ts_ns);
        CU_ASSERT_TRUE(read >= 1 && read <= 8);
        if (read < 1 || read > 8)
            fprintf(stderr, "  window at packet %zu: %ld blocks read\n", k, read);
    }
    /* one packet written long after its time (the middle one stamped as the
     * 10th): a window around its time finds it, far into the log */
    size_t mid = ref.n / 2 / 32 * 32; /* first of its block: late against the blocks before */
    ref.pkts[mid].ts_ns = ref.pkts[10].ts_ns + 1;
    log_copy(d, "late", &ref, log, sizeof(log));
    CU_ASSERT_TRUE(window_exact(d, log, &ref, ref.pkts[5].ts_ns, ref.pkts[20].ts_ns) >= 2);
    tu_pcap_free(&ref);
    tu_rmrf(d);
    free(d);
}

/* ns as RFC 3339 in the zone `off` seconds east of UTC ("...T11:00:00.5+01:00"). */
static void rfc3339(uint64_t ns, long off, char *buf, size_t cap)
{
    time_t t = (time_t)(ns / 1000000000ull) + off;
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    long a = off < 0 ? -off : off;
    snprintf(buf, cap, "%s.%09llu%c%02ld:%02ld", base, (unsigned long long)(ns % 1000000000ull),
             off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
}

/* How many packets replay gives for `args` (-1: it failed). */
static long window_count(const char *d, const char *log, const char *args)
{
    char out[4200];
    snprintf(out, sizeof(out), "%s/w.pcapng", d);
    if (it_export(d, log, out, args))
        return -1;
    struct tu_pcap got;
    if (tu_pcap_read(out, &got))
        return -1;
    long n = (long)got.n;
    tu_pcap_free(&got);
    return n;
}

/* The same window in every form an operator may paste: epoch, RFC 3339 in
 * two zones, a date, and --last counted back from the log's last packet. */
static void test_time_forms(void)
{
    char trace[4096], log[4200], args[512], a[64], b[64];
    char *d = tu_mkdtemp("timeforms");
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, "--block-packets 32"), 0);
    struct tu_pcap ref;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    uint64_t since = ref.pkts[1500].ts_ns, until = ref.pkts[1700].ts_ns, last = 0;
    long n = 0, tail = 0;
    for (size_t i = 0; i < ref.n; i++)
        last = ref.pkts[i].ts_ns > last ? ref.pkts[i].ts_ns : last;
    uint64_t dur = (last - ref.pkts[0].ts_ns) / 3 / 1000000000ull + 1; /* seconds */
    for (size_t i = 0; i < ref.n; i++) {
        n += ref.pkts[i].ts_ns >= since && ref.pkts[i].ts_ns <= until;
        tail += ref.pkts[i].ts_ns >= last - dur * 1000000000ull;
    }
    CU_ASSERT_TRUE_FATAL(n > 0 && tail > 0 && (size_t)tail < ref.n);
    rfc3339(since, 3600, a, sizeof(a));
    rfc3339(until, -5 * 3600 - 1800, b, sizeof(b));
    snprintf(args, sizeof(args), "--since '%s' --until '%s'", a, b);
    CU_ASSERT_EQUAL(window_count(d, log, args), n);
    rfc3339(since, 0, a, sizeof(a)); /* "+00:00" -> "Z", space for T */
    a[10] = ' ';
    strcpy(a + strlen(a) - 6, "Z");
    snprintf(args, sizeof(args), "--since '%s' --until %llu.%09llu", a,
             (unsigned long long)(until / 1000000000ull),
             (unsigned long long)(until % 1000000000ull));
    CU_ASSERT_EQUAL(window_count(d, log, args), n);
    rfc3339(ref.pkts[0].ts_ns, 0, a, sizeof(a)); /* its date: midnight UTC, before all */
    a[10] = 0;
    snprintf(args, sizeof(args), "--since %s", a);
    CU_ASSERT_EQUAL(window_count(d, log, args), (long)ref.n);
    snprintf(args, sizeof(args), "--last %llus", (unsigned long long)dur);
    CU_ASSERT_EQUAL(window_count(d, log, args), tail);
    snprintf(args, sizeof(args), "--last %llus --since %s", (unsigned long long)dur, a);
    CU_ASSERT_EQUAL(window_count(d, log, args), -1); /* one or the other */
    tu_pcap_free(&ref);
    tu_rmrf(d);
    free(d);
}

/* `--to-pcap -` writes pcapng to standard output, byte for byte what a file
 * gets, and its section names the log and the query (Wireshark's capture file
 * properties), its interface the log. */
static void test_pcapng_stdout(void)
{
    char trace[4096], log[4200], file[4200], piped[4200], o[4200];
    char *d = tu_mkdtemp("stdout");
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(file, sizeof(file), "%s/f.pcapng", d);
    snprintf(piped, sizeof(piped), "%s/p.pcapng", d);
    snprintf(o, sizeof(o), "%s/replay", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    CU_ASSERT_EQUAL(
        tu_sh(o, "'%s' replay '%s' --filter 'tcp port 6667' --to-pcap '%s'", tu_bin(), log, file),
        0);
    CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' replay '%s' --filter 'tcp port 6667' --to-pcap - > '%s'",
                          tu_bin(), log, piped),
                    0);
    struct tu_pcap a, b;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(file, &a), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(piped, &b), 0);
    CU_ASSERT_TRUE(a.n > 0);
    CU_ASSERT_EQUAL(a.n, b.n);
    if (a.n == b.n)
        CU_ASSERT_EQUAL(it_diff(&a, 0, &b, 0, a.n, 1), -1);
    size_t len = 0;
    char *bytes = tu_slurp(piped, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    char want[4400];
    snprintf(want, sizeof(want), "rewind log %s; query: --filter 'tcp port 6667' --to-pcap -", log);
    CU_ASSERT_PTR_NOT_NULL(memmem(bytes, len, want, strlen(want)));
    CU_ASSERT_PTR_NOT_NULL(memmem(bytes, len, "rewind:log", 10));
    free(bytes);
    tu_pcap_free(&a);
    tu_pcap_free(&b);
    tu_rmrf(d);
    free(d);
}

static void test_replay_to_port(void)
{
    char trace[4096], log[4200], out[4200], o[4200];
    char *d = tu_mkdtemp("port");
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(out, sizeof(out), "%s/tx.pcap", d);
    snprintf(o, sizeof(o), "%s/port", d);
    CU_ASSERT_EQUAL_FATAL(it_ingest(d, trace, log, NULL), 0);
    struct tu_pcap ref, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    const char *speeds[] = {"max", "50"};
    for (int s = 0; s < 2; s++) {
        CU_ASSERT_EQUAL(tu_sh(o, "'%s' replay '%s' --to-port net_pcap0,tx_pcap=%s --speed %s",
                              tu_bin(), log, out, speeds[s]),
                        0);
        CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
        CU_ASSERT_EQUAL(got.n, ref.n); /* the driver stamps its own send times */
        if (got.n == ref.n)
            CU_ASSERT_EQUAL(it_diff(&ref, 0, &got, 0, ref.n, 0), -1);
        tu_pcap_free(&got);
    }
    /* A paced replay says how well it kept the schedule. */
    char err[4300], want[64];
    snprintf(err, sizeof(err), "%s.stderr", o);
    snprintf(want, sizeof(want), "paced x50: %zu packets in ", ref.n);
    CU_ASSERT_EQUAL(it_file_has(err, want), 1);
    CU_ASSERT_EQUAL(it_file_has(err, "drift "), 1);
    /* DIR first, then EAL arguments after "--", as the usage writes it. */
    CU_ASSERT_EQUAL(tu_sh(o,
                          "'%s' replay '%s' --to-port net_null0 --speed max -- --no-huge -m 256 "
                          "--no-shconf --no-pci",
                          tu_bin(), log),
                    0);
    tu_pcap_free(&ref);
    tu_rmrf(d);
    free(d);
}

static void test_help_everywhere(void)
{
    const char *cmds[] = {"--help",
                          "log --help",
                          "log ingest --help",
                          "log stat --help",
                          "log verify --help",
                          "log flows --help",
                          "log hosts --help",
                          "replay --help",
                          "bench --help",
                          "bench log --help",
                          "bench store --help",
                          "bench chain --help",
                          "bench failover --help",
                          "run --help",
                          "worker --help",
                          "verify --help"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        CU_ASSERT_EQUAL(tu_sh(NULL, "'%s' %s | grep -q usage", tu_bin(), cmds[i]), 0);
}

/* A live port has no end: ingest runs until SIGINT, then commits and exits 0. The
 * port here is net_pcap replaying a capture as if it were a NIC. */
static void test_live_port_until_sigint(void)
{
    char trace[4096], log[4200], dev[8400], out[4200];
    char *d = tu_mkdtemp("live");
    tu_trace("irc.pcap", trace, sizeof(trace));
    snprintf(log, sizeof(log), "%s/log", d);
    snprintf(dev, sizeof(dev), "net_pcap0,rx_pcap=%s", trace);
    snprintf(out, sizeof(out), "%s/live.pcap", d);
    pid_t pid = fork();
    if (pid == 0) {
        execl(tu_bin(), "rewind", "log", "ingest", "--log", log, "--port", dev, "-q", (char *)NULL);
        _exit(127);
    }
    struct tu_pcap ref, got;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &ref), 0);
    /* Committed packets show in the log while it runs; wait for all of them. */
    int seen = 0;
    for (int i = 0; i < 200 && seen < (int)ref.n; i++) {
        usleep(100000);
        if (it_export(d, log, out, NULL) == 0 && tu_pcap_read(out, &got) == 0) {
            seen = (int)got.n;
            tu_pcap_free(&got);
        }
    }
    CU_ASSERT_EQUAL(seen, (int)ref.n);
    kill(pid, SIGINT);
    int st;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_EQUAL(it_export(d, log, out, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(out, &got), 0);
    CU_ASSERT_EQUAL(got.n, ref.n);
    if (got.n == ref.n) /* net_pcap stamps rx with the capture's µs timestamps */
        CU_ASSERT_EQUAL(it_diff(&ref, 0, &got, 0, ref.n, 1), -1);
    tu_pcap_free(&ref);
    tu_pcap_free(&got);
    tu_rmrf(d);
    free(d);
}

/* The benchmark's own behaviour (not its numbers): it runs and agrees with tcpdump. */
static void test_bench_runs(void)
{
    char *d = tu_mkdtemp("bench");
    char o[4200], out[4300];
    snprintf(o, sizeof(o), "%s/bench", d);
    snprintf(out, sizeof(out), "%s.stdout", o);
    CU_ASSERT_EQUAL(
        tu_sh(o, "'%s' bench log --packets 20000 --query-packets 0 --pacing-packets 0 --dir '%s'",
              tu_bin(), d),
        0);
    CU_ASSERT_EQUAL(it_file_has(out, "ratio"), 2);
    CU_ASSERT_EQUAL(it_file_has(out, "  power "), 2);
    CU_ASSERT_EQUAL(it_file_has(out, "end to end"), 1);
    CU_ASSERT_EQUAL(it_file_has(out, "speed-up"), 2);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "every bundled trace round-trips through DPDK, log and pcap/pcapng",
                test_round_trip_all);
    CU_add_test(s, "a second ingest appends above the first run's reservation",
                test_append_keeps_clocks_apart);
    CU_add_test(s, "flow and BPF selections equal tcpdump's", test_queries_match_tcpdump);
    CU_add_test(s, "a flow on the busiest host pair reads only its blocks",
                test_flow_on_busiest_host_pair);
    CU_add_test(s, "host, net, port and proto filters read the blocks the keys index names",
                test_keys_filters_match_tcpdump);
    CU_add_test(s, "log flows and log hosts count every packet of the selection once",
                test_log_flows_and_hosts);
    CU_add_test(s, "a time window returns exactly the packets inside it", test_time_window);
    CU_add_test(s, "a time window in RFC 3339 with offsets, as a date, or --last", test_time_forms);
    CU_add_test(s, "a time window of a trace out of time order: narrowed, and every packet",
                test_time_window_out_of_order);
    CU_add_test(s, "pcapng to stdout names the log and the query", test_pcapng_stdout);
    CU_add_test(s, "replay through a DPDK port sends the logged bytes", test_replay_to_port);
    CU_add_test(s, "a live port is logged until SIGINT, then committed",
                test_live_port_until_sigint);
    CU_add_test(s, "every command answers --help", test_help_everywhere);
    CU_add_test(s, "bench log runs and its export agrees with tcpdump", test_bench_runs);
}

int main(void)
{
    return tu_main("ingest", add);
}
