/*
 * test_verify.c - `rewind verify` end to end: runs of the bundled chains that must
 * be equivalent (1 vs 3 instances, FT vs --no-ft, NAT port pools that differ only
 * by the ports they pick) pass; copies of a run whose output log or alert file was
 * tampered with fail, naming the right clocks and counting right; without
 * canonicalisation the NAT runs differ; a damaged log gives exit 3.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "itest.h"
#include "log.h"

struct pkts {
    size_t n, cap;
    struct log_rec *r;
};

static int collect(void *ctx, const struct log_rec *r)
{
    struct pkts *o = ctx;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 1024;
        o->r = realloc(o->r, o->cap * sizeof(*o->r));
    }
    uint8_t *d = malloc(r->cap_len + 1);
    memcpy(d, r->data, r->cap_len);
    o->r[o->n] = *r;
    o->r[o->n++].data = d;
    return 0;
}

static void read_log(const char *dir, struct pkts *o)
{
    memset(o, 0, sizeof(*o));
    struct log_reader *r;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_reader_open(dir, &r, &e), 0);
    struct log_query q;
    log_query_all(&q);
    struct log_scan_cbs cb = {.visit = collect, .ctx = o};
    CU_ASSERT_EQUAL(log_scan(r, &q, &cb, NULL, &e), 0);
    log_reader_close(r);
}

static void free_pkts(struct pkts *o)
{
    for (size_t i = 0; i < o->n; i++)
        free((void *)o->r[i].data);
    free(o->r);
}

static void write_log(const char *dir, const struct pkts *p)
{
    struct log_opts o;
    log_opts_default(&o);
    struct log_writer *w;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(log_writer_open(dir, &o, &w, &e), 0);
    for (size_t i = 0; i < p->n; i++)
        CU_ASSERT_EQUAL_FATAL(log_writer_append(w, &p->r[i], &e), 0);
    CU_ASSERT_EQUAL(log_writer_close(w, &e), 0);
}

/* rewind run CHAIN --trace TRACE --out DIR/NAME EXTRA (CHAIN: a bundled one, with
 * sed applied when given). */
static void run(const char *d, const char *chain, const char *sed, const char *trace,
                const char *name, const char *extra)
{
    char c[4200], t[4200], log[4300];
    snprintf(c, sizeof(c), "%s/%s.yaml", d, name);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "sed '%s' '%s/docs/chains/%s' > '%s'", sed ? sed : "",
                                getenv("RW_SRC"), chain, c),
                          0);
    tu_trace(trace, t, sizeof(t));
    snprintf(log, sizeof(log), "%s/%s-run", d, name);
    int rc = tu_sh(log, "'%s' run '%s' --trace '%s' --out '%s/%s' %s", tu_bin(), c, t, d, name,
                   extra ? extra : "");
    CU_ASSERT_EQUAL_FATAL(rc, 0);
}

/* rewind verify D/A D/B EXTRA; stdout left in D/verify.stdout. */
static int verify(const char *d, const char *a, const char *b, const char *extra)
{
    char out[4200];
    snprintf(out, sizeof(out), "%s/verify", d);
    int rc = tu_sh(out, "'%s' verify '%s/%s' '%s/%s' %s", tu_bin(), d, a, d, b, extra ? extra : "");
    tu_sh(NULL, "cat '%s.stdout' '%s.stderr' | head -20 >&2", out, out);
    return rc;
}

static bool said(const char *d, const char *text)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/verify.stdout", d);
    return it_file_has(p, text) > 0;
}

static void test_equivalent_runs(void)
{
    char *d = tu_mkdtemp("verify");
    run(d, "firewall.yaml", NULL, "nmap_sT_top1000.pcap", "fw3", NULL);
    run(d, "firewall.yaml", "s/instances: 3/instances: 1/", "nmap_sT_top1000.pcap", "fw1", NULL);
    run(d, "firewall.yaml", NULL, "nmap_sT_top1000.pcap", "fwn", "--no-ft");
    CU_ASSERT_EQUAL(verify(d, "fw3", "fw1", NULL), 0);
    CU_ASSERT_TRUE(said(d, "lost 0, duplicated 0, changed 0, alerts missing 0, extra 0"));
    CU_ASSERT_EQUAL(verify(d, "fw3", "fwn", NULL), 0);
    char chain[4200];
    snprintf(chain, sizeof(chain), "--chain '%s/%s'", getenv("RW_SRC"),
             "docs/chains/firewall.yaml");
    CU_ASSERT_EQUAL(verify(d, "fw1", "fwn", chain), 0);
    tu_rmrf(d);
    free(d);
}

/* Index of an output packet from the middle on, to a backend, not a SYN (the
 * capture's packets: Ethernet, IPv4 without options, TCP). */
static size_t to_backend(const struct pkts *p)
{
    static const uint8_t net[3] = {10, 151, 120};
    for (size_t i = p->n / 2; i < p->n; i++)
        if (p->r[i].cap_len > 54 && !memcmp(p->r[i].data + 30, net, 3) &&
            !(p->r[i].data[47] & 0x02))
            return i;
    return 0;
}

/* The load balancer: 3 instances pick other backends than 1 (interleaving): equal
 * once picks are canonicalised per connection; renamed backends are equal under
 * first-appearance renaming; a packet sent to another backend than its
 * connection's breaks affinity, and is a changed packet under renaming. */
static void test_lb_canon(void)
{
    char *d = tu_mkdtemp("verify");
    const char *tr = "external/real.pcap";
    run(d, "lb.yaml", NULL, tr, "lb", NULL);
    run(d, "lb.yaml", "s/^    config:/    instances: 3\\n    config:/", tr, "lb3", "--no-ft");
    run(d, "lb.yaml", "s/10[.]151[.]120[.]/10.151.121./g", tr, "lbx", NULL);
    char chain[4200], none[4300];
    snprintf(chain, sizeof(chain), "--chain '%s/docs/chains/lb.yaml'", getenv("RW_SRC"));
    snprintf(none, sizeof(none), "%s --canon none", chain);
    CU_ASSERT_EQUAL(verify(d, "lb", "lb3", chain), 0);
    CU_ASSERT_FALSE(said(d, "REF 0 packets"));
    CU_ASSERT_EQUAL(verify(d, "lb", "lbx", "--canon addrs:10.151.120.0/24,10.151.121.0/24"), 0);
    CU_ASSERT_EQUAL(verify(d, "lb", "lbx", chain), 1);
    if (verify(d, "lb", "lb3", none) == 0) /* choices differed: else nothing to show */
        fprintf(stderr, "  note: 3 instances chose as 1 did\n");

    char out[4200], want[200];
    snprintf(out, sizeof(out), "%s/lb/output", d);
    struct pkts p;
    read_log(out, &p);
    size_t k = to_backend(&p);
    CU_ASSERT_FATAL(k > 0);
    uint8_t *last = (uint8_t *)p.r[k].data + 33; /* another backend: .1 .2 .3 */
    *last = (uint8_t)(*last % 3 + 1);
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL, "mkdir '%s/lbt' && touch '%s/lbt/alerts.json'", d, d), 0);
    snprintf(out, sizeof(out), "%s/lbt/output", d);
    write_log(out, &p);
    CU_ASSERT_EQUAL(verify(d, "lb", "lbt", chain), 1);
    snprintf(want, sizeof(want), "clock %llu sub 0: RUN: connection ",
             (unsigned long long)p.r[k].meta.clock);
    CU_ASSERT_TRUE(said(d, want));
    CU_ASSERT_TRUE(said(d, "(affinity broken)"));
    CU_ASSERT_TRUE(said(d, "lost 0, duplicated 0, changed 0, alerts missing 0, extra 0"));
    CU_ASSERT_TRUE(said(d, "invariants broken: 1"));
    CU_ASSERT_EQUAL(verify(d, "lb", "lbt", "--canon addrs:10.151.120.0/24"), 1);
    snprintf(want, sizeof(want), "clock %llu sub 0: bytes differ at offset 33",
             (unsigned long long)p.r[k].meta.clock);
    CU_ASSERT_TRUE(said(d, want));
    free_pkts(&p);
    tu_rmrf(d);
    free(d);
}

/* A copy of run `from` as `to` whose output log drops record i_lost, repeats
 * record i_dup (as the next sub) and has one byte of record i_flip flipped. */
static void tamper(const char *d, const char *from, const char *to, size_t i_lost, size_t i_dup,
                   size_t i_flip)
{
    char src[4200], dst[4200];
    snprintf(src, sizeof(src), "%s/%s/output", d, from);
    struct pkts p, q = {0};
    read_log(src, &p);
    CU_ASSERT_FATAL(p.n > i_lost && p.n > i_dup + 1 && p.n > i_flip);
    q.r = calloc(p.n + 1, sizeof(*q.r));
    for (size_t i = 0; i < p.n; i++) {
        if (i == i_lost)
            continue;
        q.r[q.n++] = p.r[i];
        if (i == i_flip)
            ((uint8_t *)p.r[i].data)[30] ^= 0x40;
        if (i == i_dup) {
            q.r[q.n] = p.r[i];
            q.r[q.n++].meta.sub++;
        }
    }
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "mkdir -p '%s/%s' && cp '%s/%s/alerts.json' '%s/%s/'", d, to, d, from, d, to),
        0);
    snprintf(dst, sizeof(dst), "%s/%s/output", d, to);
    write_log(dst, &q);
    free(q.r);
    free_pkts(&p);
}

static void test_tampered(void)
{
    char *d = tu_mkdtemp("verify");
    run(d, "firewall.yaml", NULL, "nmap_sT_top1000.pcap", "ref", NULL);
    char out[4200], want[200];
    snprintf(out, sizeof(out), "%s/ref/output", d);
    struct pkts p;
    read_log(out, &p);
    CU_ASSERT_FATAL(p.n > 100);
    tamper(d, "ref", "bad", 10, 20, 30);
    CU_ASSERT_EQUAL(verify(d, "ref", "bad", NULL), 1);
    snprintf(want, sizeof(want), "clock %llu sub 0: missing in RUN",
             (unsigned long long)p.r[10].meta.clock);
    CU_ASSERT_TRUE(said(d, want));
    snprintf(want, sizeof(want), "clock %llu sub 1: duplicated in RUN",
             (unsigned long long)p.r[20].meta.clock);
    CU_ASSERT_TRUE(said(d, want));
    snprintf(want, sizeof(want), "clock %llu sub 0: bytes differ at offset 30",
             (unsigned long long)p.r[30].meta.clock);
    CU_ASSERT_TRUE(said(d, want));
    CU_ASSERT_TRUE(said(d, "lost 1, duplicated 1, changed 1, alerts missing 0, extra 0"));
    CU_ASSERT_EQUAL(verify(d, "ref", "bad", "--max-diffs 1"), 1); /* only the first */
    CU_ASSERT_FALSE(said(d, "duplicated in RUN"));
    CU_ASSERT_EQUAL(verify(d, "bad", "ref", NULL), 1); /* the other way round */
    CU_ASSERT_TRUE(said(d, "lost 1, duplicated 1, changed 1,"));
    free_pkts(&p);
    tu_rmrf(d);
    free(d);
}

/* NAT with two port pools: the same run up to the ports it picks. */
static void test_nat_canon(void)
{
    char *d = tu_mkdtemp("verify");
    const char *tr = "trojan_sequence.pcap";
    run(d, "nat.yaml", NULL, tr, "a", NULL);
    run(d, "nat.yaml", "s/ports: 20000-21023/ports: 30000-31023/", tr, "b", "--no-ft");
    char chain[4200], none[4300];
    snprintf(chain, sizeof(chain), "--chain '%s/docs/chains/nat.yaml'", getenv("RW_SRC"));
    snprintf(none, sizeof(none), "%s --canon none", chain);
    CU_ASSERT_EQUAL(verify(d, "a", "b", chain), 0);
    CU_ASSERT_EQUAL(verify(d, "a", "b", "--canon ports:192.0.2.1"), 0);
    CU_ASSERT_EQUAL(verify(d, "a", "b", none), 1);
    CU_ASSERT_FALSE(said(d, "changed 0,"));
    CU_ASSERT_FALSE(said(d, "extra 0")); /* nat.map events name the ports */
    CU_ASSERT_EQUAL(verify(d, "a", "b", "--canon bogus"), 2);

    /* one alert line dropped: missing, at its clock */
    CU_ASSERT_EQUAL_FATAL(tu_sh(NULL,
                                "mkdir '%s/c' && cp -r '%s/a/output' '%s/c/' && "
                                "sed 2d '%s/a/alerts.json' > '%s/c/alerts.json'",
                                d, d, d, d, d),
                          0);
    CU_ASSERT_EQUAL(verify(d, "a", "c", chain), 1);
    CU_ASSERT_TRUE(said(d, "lost 0, duplicated 0, changed 0, alerts missing 1, extra 0"));
    char a[4200];
    snprintf(a, sizeof(a), "%s/a/alerts.json", d);
    char *txt = tu_slurp(a, NULL);
    const char *l2 = strchr(txt, '\n') + 1;
    char want[64];
    snprintf(want, sizeof(want), "clock %llu: alert missing", strtoull(l2 + 10, NULL, 10));
    CU_ASSERT_TRUE(said(d, want));
    free(txt);
    tu_rmrf(d);
    free(d);
}

/* Flips one byte of the file where needle occurs. */
static int flip_in_file(const char *path, const uint8_t *needle, size_t n)
{
    size_t len;
    char *buf = tu_slurp(path, &len);
    char *hit = buf ? memmem(buf, len, needle, n) : NULL;
    int rc = -1;
    if (hit) {
        int fd = open(path, O_WRONLY);
        uint8_t b = (uint8_t)(hit[n / 2] ^ 0x5a);
        rc = pwrite(fd, &b, 1, (off_t)(hit - buf) + (off_t)n / 2) == 1 ? 0 : -1;
        close(fd);
    }
    free(buf);
    return rc;
}

static void test_damaged(void)
{
    char *d = tu_mkdtemp("verify");
    struct pkts p = {.n = 3000, .r = calloc(3000, sizeof(struct log_rec))};
    srand(7);
    for (size_t i = 0; i < p.n; i++) { /* random bytes: blocks stay uncompressed */
        uint8_t *b = malloc(200);
        for (int k = 0; k < 200; k++)
            b[k] = (uint8_t)rand();
        p.r[i] = (struct log_rec){.meta = {.clock = i}, .orig_len = 200, .cap_len = 200, .data = b};
    }
    char dir[4200];
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof(dir), "%s/%c/output", d, "xy"[k]);
        write_log(dir, &p);
        tu_sh(NULL, "touch '%s/%c/alerts.json'", d, "xy"[k]);
    }
    CU_ASSERT_EQUAL(verify(d, "x", "y", NULL), 0);
    snprintf(dir, sizeof(dir), "%s/y/output/seg-00000001/data.mdb", d);
    CU_ASSERT_EQUAL_FATAL(flip_in_file(dir, p.r[2500].data + 40, 16), 0);
    CU_ASSERT_EQUAL(verify(d, "x", "y", NULL), 3);
    CU_ASSERT_TRUE(said(d, "RUN log damaged"));
    free_pkts(&p);
    tu_rmrf(d);
    free(d);
}

/* A run whose output log's data file is cut short: LMDB maps it and trusts its
 * meta page, so reading the pages past the end used to kill verify with SIGBUS.
 * Now the log is named as damaged, exit 3, whichever way it is caught (the size
 * check on open, or the comparison's child dying). */
static void test_damaged_pages(void)
{
    char *d = tu_mkdtemp("verify");
    struct pkts p = {.n = 3000, .r = calloc(3000, sizeof(struct log_rec))};
    srand(11);
    for (size_t i = 0; i < p.n; i++) {
        uint8_t *b = malloc(200);
        for (int k = 0; k < 200; k++)
            b[k] = (uint8_t)rand();
        p.r[i] = (struct log_rec){.meta = {.clock = i}, .orig_len = 200, .cap_len = 200, .data = b};
    }
    char dir[4200];
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof(dir), "%s/%c/output", d, "xy"[k]);
        write_log(dir, &p);
        tu_sh(NULL, "touch '%s/%c/alerts.json'", d, "xy"[k]);
    }
    snprintf(dir, sizeof(dir), "%s/y/output/seg-00000001/data.mdb", d);
    struct stat st;
    CU_ASSERT_FATAL(!stat(dir, &st) && st.st_size > 4 * 4096);
    CU_ASSERT_EQUAL_FATAL(truncate(dir, st.st_size / 2), 0); /* meta pages kept */
    CU_ASSERT_EQUAL(verify(d, "x", "y", NULL), 3);
    char err[4200], want[4300];
    snprintf(err, sizeof(err), "%s/verify.stderr", d);
    snprintf(want, sizeof(want), "RUN log damaged");
    snprintf(err, sizeof(err), "%s/verify.std%s", d, it_file_has(err, want) > 0 ? "err" : "out");
    CU_ASSERT_TRUE(it_file_has(err, want) > 0);
    CU_ASSERT_TRUE(it_file_has(err, "/y/output") > 0);
    free_pkts(&p);
    tu_rmrf(d);
    free(d);
}

/* A state.json that is not as rewind writes it (truncated, reformatted) is
 * damage (exit 3), never "state in REF only": that would tell an operator that
 * state ops were lost. */
static void test_damaged_state(void)
{
    char *d = tu_mkdtemp("verify");
    run(d, "nat.yaml", NULL, "trojan_sequence.pcap", "a", NULL);
    char chain[4200];
    snprintf(chain, sizeof(chain), "--chain '%s/docs/chains/nat.yaml'", getenv("RW_SRC"));
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL,
              "for x in same cut flat; do mkdir '%s/'$x && cp -r '%s/a/output' "
              "'%s/a/alerts.json' '%s/a/state.json' '%s/'$x/; done && "
              "head -n 6 '%s/a/state.json' > '%s/cut/state.json' && "
              "python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))'"
              " < '%s/a/state.json' > '%s/flat/state.json'",
              d, d, d, d, d, d, d, d, d),
        0);
    CU_ASSERT_EQUAL(verify(d, "a", "same", chain), 0);
    CU_ASSERT_TRUE(said(d, ", in one run only 0"));
    CU_ASSERT_EQUAL(verify(d, "a", "cut", chain), 3);
    CU_ASSERT_TRUE(said(d, "RUN state.json: not as rewind writes it"));
    CU_ASSERT_FALSE(said(d, "state in REF only"));
    CU_ASSERT_EQUAL(verify(d, "flat", "a", chain), 3);
    CU_ASSERT_TRUE(said(d, "REF state.json: not as rewind writes it (at line 1)"));
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "firewall runs (1/3 instances, FT/--no-ft) are equivalent",
                test_equivalent_runs);
    CU_add_test(s, "lb: backends canonicalised; a packet to another backend is named",
                test_lb_canon);
    CU_add_test(s, "a tampered output log is named and counted", test_tampered);
    CU_add_test(s, "NAT port pools: equal with canonicalisation only; a lost alert",
                test_nat_canon);
    CU_add_test(s, "a damaged log gives exit 3", test_damaged);
    CU_add_test(s, "an output log cut short: verify names it, exit 3", test_damaged_pages);
    CU_add_test(s, "a damaged state.json gives exit 3, not lost state", test_damaged_state);
}

int main(void)
{
    return tu_main("verify", add);
}
