/*
 * test_soundness.c - the guarantee where it used to break (issue 10):
 *
 * - order: firewall x2 -> port-scan x2 -> NAT on the LAN hour; two FT runs, a
 *   --no-ft run and a chaos run must all be `rewind verify --chain` equivalent
 *   (the NAT's idle expiry used to land on whatever packet arrived first from
 *   the two port-scan instances);
 * - a long run keeps its store bounded: the LAN hour repeated (timestamps
 *   shifted by the hour) through a 2-instance firewall in a 4 MiB LMDB map
 *   (16 copies, 1 M packets, in 24 MiB with RW_LONG=1), equal to --no-ft; the
 *   op records used to grow ~67 B a packet until the map was full;
 * - NF state bounded by live flows and hosts: a synthetic trace of thousands
 *   of short-lived flows from distinct hosts over hours of packet time, through
 *   every NF of the catalog, leaves only the last minutes' objects in the store,
 *   and the output equals --no-ft's.
 *
 * Store objects are counted with lmdb-utils' mdb_stat (an independent reader).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"

static bool long_run(void)
{
    const char *v = getenv("RW_LONG");
    return v && *v && strcmp(v, "0");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* rewind run CHAIN --trace TRACE --out DIR/NAME EXTRA; its exit status. */
static int run(const char *d, const char *chain, const char *trace, const char *name,
               const char *extra)
{
    char log[4300];
    snprintf(log, sizeof(log), "%s/%s-run", d, name);
    return tu_sh(log, "'%s' %s '%s' --trace '%s' --out '%s/%s' %s", tu_bin(),
                 extra && !strncmp(extra, "--kill", 6) ? "chaos" : "run", chain, trace, d, name,
                 extra ? extra : "");
}

static int verify(const char *d, const char *a, const char *b, const char *chain)
{
    char log[4300];
    snprintf(log, sizeof(log), "%s/verify-%s-%s", d, a, b);
    return tu_sh(log, "'%s' verify '%s/%s' '%s/%s' --chain '%s'", tu_bin(), d, a, d, b, chain);
}

/* Entries of the store's main DB (every object, queue entry and watermark), or
 * -1 when mdb_stat cannot say. */
static long store_objects(const char *d, const char *run_name)
{
    char out[4300], path[4400];
    snprintf(out, sizeof(out), "%s/stat-%s", d, run_name);
    if (tu_sh(out,
              "mdb_stat -a '%s/%s/store' | awk '/^Status of Main DB/ {m=1} m && /Entries:/ "
              "{print $2; exit}'",
              d, run_name))
        return -1;
    snprintf(path, sizeof(path), "%s.stdout", out);
    char *s = tu_slurp(path, NULL);
    long n = s && *s ? strtol(s, NULL, 10) : -1;
    free(s);
    return n;
}

/* ---- order across parallel instances ---- */

static const char lan_chain[] = "name: lan\n"
                                "store: lmdb:store\n"
                                "log: {durability: process}\n"
                                "nfs:\n"
                                "  - {name: fw, type: firewall, instances: 2, flowspace: 5tuple,\n"
                                "     config: {default: allow}}\n"
                                "  - {name: scan, type: portscan, instances: 2,\n"
                                "     flowspace: host-pair}\n"
                                "  - {name: nat, type: nat, config: {inside: 10.64.0.0/16,\n"
                                "     external: 192.0.2.1, idle_timeout: 60}}\n"
                                "edges:\n"
                                "  - {from: input, to: fw}\n"
                                "  - {from: fw, to: scan}\n"
                                "  - {from: scan, to: nat}\n"
                                "  - {from: nat, to: output}\n";

static void test_parallel_order(void)
{
    char *d = tu_mkdtemp("order");
    char chain[4200], trace[4096], alerts[4300];
    snprintf(chain, sizeof(chain), "%s/lan.yaml", d);
    write_file(chain, lan_chain);
    tu_trace("external/real.pcap", trace, sizeof(trace));
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, "a", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, "b", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, "n", "--no-ft"), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, "c", "--kill-every 150 --seed 5"), 0);
    snprintf(alerts, sizeof(alerts), "%s/a/alerts.json", d);
    /* the NAT's idle expiry is what depended on arrival order */
    CU_ASSERT_TRUE(it_file_has(alerts, "\"reason\": \"idle\"") > 50);
    CU_ASSERT_EQUAL(verify(d, "a", "b", chain), 0);
    CU_ASSERT_EQUAL(verify(d, "a", "n", chain), 0);
    CU_ASSERT_EQUAL(verify(d, "a", "c", chain), 0);
    tu_rmrf(d);
    free(d);
}

/* ---- a long run in a small store ---- */

/* The LAN hour `copies` times, each copy an hour later. */
static void repeat_trace(const char *src, int copies, const char *dst)
{
    struct tu_pcap in, out;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(src, &in), 0);
    out.n = in.n * (size_t)copies;
    out.pkts = calloc(out.n, sizeof(*out.pkts));
    CU_ASSERT_PTR_NOT_NULL_FATAL(out.pkts);
    uint64_t span = in.pkts[in.n - 1].ts_ns - in.pkts[0].ts_ns + 1000000000ull;
    for (int k = 0; k < copies; k++)
        for (size_t i = 0; i < in.n; i++) {
            struct tu_pkt *p = &out.pkts[(size_t)k * in.n + i];
            *p = in.pkts[i];
            p->ts_ns += (uint64_t)k * span;
        }
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(dst, &out), 0);
    free(out.pkts); /* the data belongs to in */
    tu_pcap_free(&in);
}

static void test_long_run_small_store(void)
{
    bool lng = long_run();
    char *d = tu_mkdtemp("longrun");
    char chain[4200], trace[4096], big[4200], text[1024];
    snprintf(chain, sizeof(chain), "%s/fw.yaml", d);
    snprintf(text, sizeof(text),
             "name: fw\nstore: lmdb:store?map=%d\nlog: {durability: process}\n"
             "nfs:\n  - {name: fw, type: firewall, instances: 2, flowspace: 5tuple,\n"
             "     config: {default: allow}}\n"
             "edges:\n  - {from: input, to: fw}\n  - {from: fw, to: output}\n",
             lng ? 24 : 4);
    write_file(chain, text);
    tu_trace("external/real.pcap", trace, sizeof(trace));
    snprintf(big, sizeof(big), "%s/lan-x%d.pcap", d, lng ? 16 : 2);
    repeat_trace(trace, lng ? 16 : 2, big);
    CU_ASSERT_EQUAL_FATAL(run(d, chain, big, "ft", NULL), 0); /* no MDB_MAP_FULL */
    CU_ASSERT_EQUAL_FATAL(run(d, chain, big, "noft", "--no-ft"), 0);
    CU_ASSERT_EQUAL(verify(d, "ft", "noft", chain), 0);
    long objs = store_objects(d, "ft");
    fprintf(stderr, "  %s: %ld store objects after %d copies of the LAN hour\n", "fw x2", objs,
            lng ? 16 : 2);
    CU_ASSERT_TRUE(objs >= 0 && objs < 20000);
    tu_rmrf(d);
    free(d);
}

/* ---- NF state bounded by live flows and hosts ---- */

struct gen {
    struct tu_pcap t;
    size_t cap;
    uint64_t ts;
};

static void ip4(uint8_t *a, const char *s)
{
    CU_ASSERT_EQUAL_FATAL(inet_pton(AF_INET, s, a), 1);
}

static uint16_t csum(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* One Ethernet/IPv4 TCP or UDP packet, 1 ms after the previous one. */
static void pkt(struct gen *g, const uint8_t src[4], const uint8_t dst[4], uint8_t proto,
                uint16_t sport, uint16_t dport, uint8_t flags, const char *payload)
{
    if (g->t.n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4096;
        g->t.pkts = realloc(g->t.pkts, g->cap * sizeof(*g->t.pkts));
    }
    size_t pl = payload ? strlen(payload) : 0, l4 = proto == 6 ? 20 : 8;
    size_t len = 14 + 20 + l4 + pl;
    uint8_t *f = calloc(1, len < 60 ? 60 : len);
    f[12] = 0x08;
    uint8_t *ip = f + 14;
    ip[0] = 0x45, ip[2] = (uint8_t)((20 + l4 + pl) >> 8), ip[3] = (uint8_t)(20 + l4 + pl);
    ip[8] = 64, ip[9] = proto;
    memcpy(ip + 12, src, 4);
    memcpy(ip + 16, dst, 4);
    uint16_t c = csum(ip, 20);
    ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
    uint8_t *l = ip + 20;
    l[0] = (uint8_t)(sport >> 8), l[1] = (uint8_t)sport, l[2] = (uint8_t)(dport >> 8);
    l[3] = (uint8_t)dport;
    if (proto == 6) {
        l[12] = 0x50, l[13] = flags, l[14] = 0x20;
    } else {
        l[4] = (uint8_t)((8 + pl) >> 8), l[5] = (uint8_t)(8 + pl);
    }
    if (pl)
        memcpy(l + l4, payload, pl);
    g->ts += 1000000;
    g->t.pkts[g->t.n++] = (struct tu_pkt){.ts_ns = g->ts,
                                          .caplen = (uint32_t)(len < 60 ? 60 : len),
                                          .len = (uint32_t)(len < 60 ? 60 : len),
                                          .data = f};
}

/* flows short flows, one every half second of packet time, each from a host of
 * its own in 10.64.0.0/16 to 198.51.100.10: closed ones, ones that just stop,
 * SSH banners (the trojan detector's first step), DNS over UDP, and probes of
 * closed ports (the port-scan detector's failures). */
static void churn_trace(const char *path, int flows)
{
    struct gen g = {.ts = 1800000000ull * 1000000000ull};
    uint8_t srv[4], dns[4];
    ip4(srv, "198.51.100.10");
    ip4(dns, "198.51.100.53");
    for (int i = 0; i < flows; i++) {
        uint8_t cl[4] = {10, 64, (uint8_t)(i / 250), (uint8_t)(i % 250 + 1)};
        uint16_t cp = (uint16_t)(20000 + i % 40000);
        g.ts += 500000000ull;
        switch (i % 10) {
        case 0: /* an SSH session that closes */
        case 1:
        case 2:
        case 3:
        case 4:
        case 5: {
            uint16_t port = i % 10 == 0 ? 22 : 80;
            const char *req =
                port == 22 ? "SSH-2.0-OpenSSH_9.2\r\n" : "GET /index.html HTTP/1.1\r\n";
            pkt(&g, cl, srv, 6, cp, port, 0x02, NULL);
            pkt(&g, srv, cl, 6, port, cp, 0x12, NULL);
            pkt(&g, cl, srv, 6, cp, port, 0x18, req);
            pkt(&g, cl, srv, 6, cp, port, 0x11, NULL);
            pkt(&g, srv, cl, 6, port, cp, 0x11, NULL);
            pkt(&g, cl, srv, 6, cp, port, 0x10, NULL);
            break;
        }
        case 6: /* connections that just stop */
        case 7:
            pkt(&g, cl, srv, 6, cp, 80, 0x02, NULL);
            pkt(&g, srv, cl, 6, 80, cp, 0x12, NULL);
            pkt(&g, cl, srv, 6, cp, 80, 0x18, "GET /a.html HTTP/1.1\r\n");
            break;
        case 8: /* DNS */
            pkt(&g, cl, dns, 17, cp, 53, 0, "query");
            pkt(&g, dns, cl, 17, 53, cp, 0, "answer");
            break;
        default: /* a probe of a closed port, and one nobody answers */
            pkt(&g, cl, srv, 6, cp, (uint16_t)(1000 + i % 500), 0x02, NULL);
            pkt(&g, srv, cl, 6, (uint16_t)(1000 + i % 500), cp, 0x14, NULL);
            pkt(&g, cl, srv, 6, (uint16_t)(cp + 1), 7, 0x02, NULL);
            break;
        }
    }
    CU_ASSERT_EQUAL_FATAL(tu_pcap_write(path, &g.t), 0);
    tu_pcap_free(&g.t);
}

/* Each chain, and the most store objects it may hold at the end. Every flow
 * leaves at least one object when nothing ages (a connection; for the trojan
 * detector, its 800 SSH hosts); what lives is the last two minutes' flows
 * (about 240; a dozen objects each in the full chain: connection, attempts, a
 * host's six counters, NAT mappings, their queue entries) and the NAT's free
 * list (at most its 500 ports), whatever the length of the run. */
struct churn_chain {
    const char *name, *nfs;
    long max_objects;
};

static const struct churn_chain churn_chains[] = {
    {"firewall",
     "  - {name: fw, type: firewall, instances: 2, flowspace: 5tuple,\n"
     "     config: {default: allow, idle_timeout: 60}}\n",
     1000},
    {"full",
     "  - {name: fw, type: firewall, instances: 2, flowspace: 5tuple,\n"
     "     config: {default: allow, idle_timeout: 60}}\n"
     "  - {name: scan, type: portscan, instances: 2, flowspace: host-pair,\n"
     "     config: {memory: 120, block: true}}\n"
     "  - {name: nat, type: nat, config: {inside: 10.64.0.0/16, external: 192.0.2.1,\n"
     "     ports: 20000-20499, idle_timeout: 60}}\n",
     3500},
    {"trojan",
     "  - {name: tj, type: trojan, instances: 2, flowspace: src, config: {window: 120}}\n", 400},
    {"lb",
     "  - {name: lb, type: lb, config: {vip: 198.51.100.10, port: 80, proto: tcp,\n"
     "     backends: [10.1.0.1, 10.1.0.2], idle_timeout: 60}}\n",
     1000},
};

/* The chain's NFs one after the other, input to output. */
static void churn_chain(const char *path, const char *nfs)
{
    char text[2048], edges[512] = "";
    int n = 0;
    for (const char *p = nfs; (p = strstr(p, "name: ")); p += 6)
        n++;
    const char *names[4];
    char buf[4][16];
    const char *p = nfs;
    for (int i = 0; i < n; i++) {
        p = strstr(p, "name: ") + 6;
        sscanf(p, "%15[^,]", buf[i]);
        names[i] = buf[i];
    }
    size_t m = 0;
    for (int i = 0; i <= n; i++)
        m += (size_t)snprintf(edges + m, sizeof(edges) - m, "  - {from: %s, to: %s}\n",
                              i ? names[i - 1] : "input", i < n ? names[i] : "output");
    snprintf(text, sizeof(text),
             "name: churn\nstore: lmdb:store\nlog: {durability: process}\nnfs:\n%sedges:\n%s", nfs,
             edges);
    write_file(path, text);
}

static void test_state_bounded(void)
{
    int flows = long_run() ? 60000 : 8000;
    char *d = tu_mkdtemp("churn");
    char trace[4200], chain[4200], ft[64], noft[64];
    snprintf(trace, sizeof(trace), "%s/churn.pcap", d);
    churn_trace(trace, flows);
    for (size_t c = 0; c < sizeof(churn_chains) / sizeof(churn_chains[0]); c++) {
        const struct churn_chain *cc = &churn_chains[c];
        snprintf(chain, sizeof(chain), "%s/%s.yaml", d, cc->name);
        churn_chain(chain, cc->nfs);
        snprintf(ft, sizeof(ft), "%s-ft", cc->name);
        snprintf(noft, sizeof(noft), "%s-noft", cc->name);
        CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, ft, NULL), 0);
        CU_ASSERT_EQUAL_FATAL(run(d, chain, trace, noft, "--no-ft"), 0);
        CU_ASSERT_EQUAL(verify(d, ft, noft, chain), 0);
        long objs = store_objects(d, ft);
        fprintf(stderr, "  %s: %ld store objects after %d flows from %d hosts\n", cc->name, objs,
                flows, flows);
        CU_ASSERT_TRUE(objs >= 0 && objs <= cc->max_objects);
    }
    tu_rmrf(d);
    free(d);
}

/* A store too small for what the run must keep (a week's idle timeout: every
 * connection of the churn lives) ends it with exit 4, a full disk's code, the
 * message naming the store and how to grow it; no spare is sent against the
 * same wall, and no worker is left behind. */
static void test_store_full(void)
{
    char *d = tu_mkdtemp("full");
    char trace[4200], chain[4200], err[4300];
    snprintf(trace, sizeof(trace), "%s/churn.pcap", d);
    churn_trace(trace, 8000);
    snprintf(chain, sizeof(chain), "%s/fw.yaml", d);
    write_file(chain, "name: fw\nstore: lmdb:store?map=1\nlog: {durability: process}\nnfs:\n"
                      "  - {name: fw, type: firewall, config: {default: allow, idle_timeout: "
                      "604800}}\nedges:\n  - {from: input, to: fw}\n  - {from: fw, to: output}\n");
    CU_ASSERT_EQUAL(run(d, chain, trace, "out", NULL), 4);
    snprintf(err, sizeof(err), "%s/out-run.stderr", d);
    CU_ASSERT_TRUE(it_file_has(err, "rewind: run: fw[0]: the state store lmdb:") == 1);
    CU_ASSERT_TRUE(it_file_has(err, "/out/store is full; give it more room (?map=MiB") == 1);
    CU_ASSERT_EQUAL(it_file_has(err, "replay of clock"), 0); /* no failover tried */
    CU_ASSERT_EQUAL(it_count_workers(d), 0);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "parallel instances before the NAT: FT, FT, --no-ft and chaos are equivalent",
                test_parallel_order);
    CU_add_test(s, "a long run in a small LMDB map completes and equals --no-ft",
                test_long_run_small_store);
    CU_add_test(s, "NF state stays bounded by the live flows and hosts", test_state_bounded);
    CU_add_test(s, "a full store ends the run with exit 4 and says how to grow it",
                test_store_full);
}

int main(void)
{
    return tu_main("soundness", add);
}
