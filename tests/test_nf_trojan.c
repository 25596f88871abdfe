/*
 * test_nf_trojan.c - the multi-step trojan detector on the bundled capture made
 * with real tools (ssh, then an HTTP download of payload.exe, then IRC): one alert
 * at the right clocks; none when the steps are out of order or one is missing; the
 * same verdict when one upstream firewall instance is stalled mid-run (the NF's
 * inputs are merged by clock); the same with and without FT.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"

/* TCP payload of an Ethernet/IPv4 packet, and the destination port. */
static const uint8_t *payload(const struct tu_pkt *p, size_t *len, int *dport)
{
    const uint8_t *d = p->data;
    if (p->caplen < 54 || d[12] != 0x08 || d[13] != 0 || d[23] != 6)
        return NULL;
    size_t ihl = (size_t)(d[14] & 15) * 4, thl = (size_t)(d[14 + ihl + 12] >> 4) * 4;
    size_t tot = (size_t)(d[16] << 8 | d[17]), end = 14 + tot < p->caplen ? 14 + tot : p->caplen;
    *dport = d[14 + ihl + 2] << 8 | d[14 + ihl + 3];
    *len = end > 14 + ihl + thl ? end - (14 + ihl + thl) : 0;
    return d + 14 + ihl + thl;
}

/* The steps' packets found independently: first SSH client banner, first GET of
 * a .exe, first IRC JOIN. Their indexes are their clocks (one run from clock 0). */
static void expected_steps(const struct tu_pcap *t, long steps[3])
{
    steps[0] = steps[1] = steps[2] = -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t len;
        int port;
        const uint8_t *pl = payload(&t->pkts[i], &len, &port);
        if (!pl)
            continue;
        if (steps[0] < 0 && port == 22 && len > 4 && !memcmp(pl, "SSH-", 4))
            steps[0] = (long)i;
        else if (steps[0] >= 0 && steps[1] < 0 && port == 80 && len > 4 && !memcmp(pl, "GET ", 4) &&
                 memmem(pl, len, ".exe ", 5))
            steps[1] = (long)i;
        else if (steps[1] >= 0 && steps[2] < 0 && port == 6667 && memmem(pl, len, "JOIN ", 5))
            steps[2] = (long)i;
    }
}

static int run(const char *d, const char *trace, const char *out, const char *extra)
{
    char chain[4200], o[4300];
    snprintf(chain, sizeof(chain), "%s/docs/chains/trojan.yaml", getenv("RW_SRC"));
    snprintf(o, sizeof(o), "%s/run", d);
    return tu_sh(o, "'%s' run '%s' --trace '%s' --out '%s' %s", tu_bin(), chain, trace, out,
                 extra ? extra : "");
}

static char *alerts_of(const char *out)
{
    char p[4300];
    snprintf(p, sizeof(p), "%s/alerts.json", out);
    char *s = tu_slurp(p, NULL);
    return s ? s : strdup("");
}

static void test_one_alert_at_the_right_clocks(void)
{
    char *d = tu_mkdtemp("tj");
    char trace[4096], out[4200];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(out, sizeof(out), "%s/out", d);
    struct tu_pcap t;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &t), 0);
    long st[3];
    expected_steps(&t, st);
    CU_ASSERT_TRUE_FATAL(st[2] > st[1] && st[1] > st[0] && st[0] >= 0);
    CU_ASSERT_EQUAL_FATAL(run(d, trace, out, NULL), 0);
    char *a = alerts_of(out), want[256];
    snprintf(want, sizeof(want), "\"clock\": %ld,", st[2]);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, want));
    snprintf(want, sizeof(want), "\"host\": \"10.200.0.1\", \"steps\": [%ld, %ld, %ld]", st[0],
             st[1], st[2]);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, want));
    int n = 0;
    for (char *p = a; (p = strstr(p, "trojan.detected")); p++)
        n++;
    CU_ASSERT_EQUAL(n, 1);
    free(a);
    tu_pcap_free(&t);
    tu_rmrf(d);
    free(d);
}

/* Writes the capture with packets kept by keep() and, when late() says so, moved
 * to the end (their timestamps with them). */
static void rewrite(const struct tu_pcap *t, const char *path, int (*keep)(const struct tu_pkt *),
                    int (*late)(const struct tu_pkt *))
{
    struct tu_pcap o = {.pkts = calloc(t->n, sizeof(struct tu_pkt))};
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < t->n; i++)
            if (keep(&t->pkts[i]) && (late && late(&t->pkts[i])) == (pass == 1))
                o.pkts[o.n++] = t->pkts[i];
    CU_ASSERT_EQUAL(tu_pcap_write(path, &o), 0);
    free(o.pkts);
}

static int port_of(const struct tu_pkt *p)
{
    const uint8_t *d = p->data;
    if (p->caplen < 38 || d[12] != 0x08 || (d[23] != 6 && d[23] != 17))
        return -1;
    size_t ihl = (size_t)(d[14] & 15) * 4;
    int s = d[14 + ihl] << 8 | d[14 + ihl + 1], t = d[14 + ihl + 2] << 8 | d[14 + ihl + 3];
    return s < t ? s : t; /* the service port of the lab's connections */
}

static int all(const struct tu_pkt *p)
{
    (void)p;
    return 1;
}

static int not_http(const struct tu_pkt *p)
{
    return port_of(p) != 80;
}

static int ssh(const struct tu_pkt *p)
{
    return port_of(p) == 22;
}

static void test_out_of_order_or_missing(void)
{
    char *d = tu_mkdtemp("tj");
    char trace[4096], t1[4200], t2[4200], out[4200];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(t1, sizeof(t1), "%s/ssh_last.pcap", d);
    snprintf(t2, sizeof(t2), "%s/no_http.pcap", d);
    struct tu_pcap t;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(trace, &t), 0);
    rewrite(&t, t1, all, ssh);       /* the ssh session after everything else */
    rewrite(&t, t2, not_http, NULL); /* the download step gone */
    const char *cases[] = {t1, t2};
    for (int i = 0; i < 2; i++) {
        snprintf(out, sizeof(out), "%s/out%d", d, i);
        CU_ASSERT_EQUAL_FATAL(run(d, cases[i], out, NULL), 0);
        char *a = alerts_of(out);
        CU_ASSERT_PTR_NULL(strstr(a, "trojan.detected"));
        free(a);
    }
    tu_pcap_free(&t);
    tu_rmrf(d);
    free(d);
}

static int find_worker(const char *tag, int instance)
{
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "pgrep -f 'rewind [w]orker.*--nf=0 --instance=%d .*%s'", instance,
             tag);
    FILE *p = popen(cmd, "r");
    int pid = 0;
    if (p) {
        if (fscanf(p, "%d", &pid) != 1)
            pid = 0;
        pclose(p);
    }
    return pid;
}

/* Each firewall instance in turn is stopped as soon as it starts and resumed
 * 400 ms later: the packets it carries reach the detector late, after others. */
static void test_stalled_upstream(void)
{
    char *d = tu_mkdtemp("tj");
    char trace[4096], ref[4200], out[4200];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(ref, sizeof(ref), "%s/ref", d);
    CU_ASSERT_EQUAL_FATAL(run(d, trace, ref, NULL), 0);
    char *want = alerts_of(ref);
    CU_ASSERT_PTR_NOT_NULL(strstr(want, "trojan.detected"));
    for (int inst = 0; inst < 3; inst++) {
        snprintf(out, sizeof(out), "%s/stall%d", d, inst);
        pid_t pid = fork();
        if (pid == 0)
            _exit(run(d, trace, out, NULL));
        int w = 0;
        for (int i = 0; i < 2000 && !(w = find_worker(out, inst)); i++)
            usleep(1000);
        CU_ASSERT_TRUE(w > 0);
        if (w > 0) {
            kill(w, SIGSTOP);
            usleep(400000);
            kill(w, SIGCONT);
        }
        int st;
        waitpid(pid, &st, 0);
        CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        char *got = alerts_of(out);
        CU_ASSERT_STRING_EQUAL(got, want);
        free(got);
    }
    free(want);
    tu_rmrf(d);
    free(d);
}

static void test_ft_and_no_ft(void)
{
    char *d = tu_mkdtemp("tj");
    char trace[4096], a[4200], b[4200], c[4200], src[4096], chain3[4200], o[4300];
    tu_trace("trojan_sequence.pcap", trace, sizeof(trace));
    snprintf(a, sizeof(a), "%s/ft", d);
    snprintf(b, sizeof(b), "%s/noft", d);
    snprintf(c, sizeof(c), "%s/three", d);
    CU_ASSERT_EQUAL_FATAL(run(d, trace, a, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(run(d, trace, b, "--no-ft"), 0);
    /* and with three detector instances (flowspace src: a host stays on one) */
    snprintf(src, sizeof(src), "%s/docs/chains/trojan.yaml", getenv("RW_SRC"));
    snprintf(chain3, sizeof(chain3), "%s/trojan3.yaml", d);
    snprintf(o, sizeof(o), "%s/run", d);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(NULL, "sed 's/    type: trojan/    type: trojan\\n    instances: 3/' '%s' > '%s'",
              src, chain3),
        0);
    CU_ASSERT_EQUAL_FATAL(
        tu_sh(o, "'%s' run '%s' --trace '%s' --out '%s'", tu_bin(), chain3, trace, c), 0);
    char *x = alerts_of(a), *y = alerts_of(b), *z = alerts_of(c);
    CU_ASSERT_STRING_EQUAL(x, y);
    CU_ASSERT_STRING_EQUAL(x, z);
    CU_ASSERT_PTR_NOT_NULL(strstr(x, "trojan.detected"));
    free(x);
    free(y);
    free(z);
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "the capture raises one alert at the steps' clocks",
                test_one_alert_at_the_right_clocks);
    CU_add_test(s, "steps out of order, or one missing, raise none", test_out_of_order_or_missing);
    CU_add_test(s, "a stalled upstream instance changes nothing", test_stalled_upstream);
    CU_add_test(s, "FT, --no-ft and three instances raise the same alerts", test_ft_and_no_ft);
}

int main(void)
{
    return tu_main("trojan", add);
}
