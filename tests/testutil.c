/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"

#include "failalloc.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The program's own arguments, read back from /proc/self/cmdline so that every
 * test's `int main(void)` stays as it is. Returns argc; argv points into a static
 * buffer. */
static int own_args(char ***argv)
{
    static char buf[8192];
    static char *args[64];
    static int n = -1;
    if (n < 0) {
        n = 0;
        FILE *f = fopen("/proc/self/cmdline", "rb");
        size_t len = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
        if (f)
            fclose(f);
        buf[len] = '\0';
        for (size_t i = 0; i < len && n < 64; i += strlen(buf + i) + 1)
            args[n++] = buf + i;
    }
    *argv = args;
    return n;
}

bool tu_listing(void)
{
    char **argv;
    int argc = own_args(&argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--list"))
            return true;
    return false;
}

/* --case NAME: the one test of that exact name. */
static const char *case_arg(void)
{
    char **argv;
    int argc = own_args(&argv);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--case"))
            return argv[i + 1];
    return NULL;
}

/* RW_FAILALLOC: each active test runs between fa_env_arm and fa_env_report, so
 * that only the test body's allocations count, never CUnit's. CUnit runs the
 * active tests in their order; armed_test calls the next one's own function. */
#define TU_MAX_TESTS 256
static CU_TestFunc fa_funcs[TU_MAX_TESTS];
static int fa_n, fa_next;

static void armed_test(void)
{
    CU_TestFunc f = fa_next < fa_n ? fa_funcs[fa_next++] : NULL;
    if (!f)
        return;
    fa_env_arm();
    f();
    fa_env_report();
}

static void arm_tests(CU_pSuite s)
{
    for (CU_pTest t = s->pTest; t && fa_n < TU_MAX_TESTS; t = t->pNext)
        if (t->fActive && t->pTestFunc) {
            fa_funcs[fa_n++] = t->pTestFunc;
            t->pTestFunc = armed_test;
        }
}

int tu_main(const char *suite, void (*add)(CU_pSuite))
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    if (!s)
        return 2;
    add(s);
    if (tu_listing()) { /* one name a line, for ctest (tests/cmake/discover.cmake) */
        for (CU_pTest t = s->pTest; t; t = t->pNext)
            printf("%s\n", t->pName);
        CU_cleanup_registry();
        return 0;
    }
    /* RW_TEST=WORDS runs only the tests whose name contains WORDS; --case NAME only
     * the test named NAME. */
    const char *only = getenv("RW_TEST");
    const char *exact = case_arg();
    CU_set_fail_on_inactive(CU_FALSE);
    for (CU_pTest t = s->pTest; t; t = t->pNext) {
        bool on =
            (!only || !*only || strstr(t->pName, only)) && (!exact || !strcmp(t->pName, exact));
        CU_set_test_active(t, on ? CU_TRUE : CU_FALSE);
    }
    if (fa_env())
        arm_tests(s);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned fails = CU_get_number_of_failures();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return (fails || run == 0) ? 1 : 0;
}

char *tu_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/rw-%s-XXXXXX", base ? base : "/tmp", tag);
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void tu_rmrf(const char *path)
{
    if (path && getenv("RW_KEEP")) { /* debugging a failure: look at what it left */
        fprintf(stderr, "RW_KEEP: left %s\n", path);
        return;
    }
    if (path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_bin(void)
{
    const char *b = getenv("RW_BIN");
    return b ? b : "rewind";
}

const char *tu_trace(const char *name, char *buf, size_t len)
{
    const char *d = getenv("RW_TRACES");
    snprintf(buf, len, "%s/%s", d ? d : "traces", name);
    return buf;
}

int tu_sh(const char *out, const char *fmt, ...)
{
    char cmd[8192], full[9000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (out)
        snprintf(full, sizeof(full), "( %s ) >'%s.stdout' 2>'%s.stderr'", cmd, out, out);
    else
        snprintf(full, sizeof(full), "%s", cmd);
    int st = system(full);
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

int tu_count_dir(const char *path)
{
    DIR *d = opendir(path);
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

char *tu_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int tu_pcap_read(const char *path, struct tu_pcap *out)
{
    char err[PCAP_ERRBUF_SIZE];
    memset(out, 0, sizeof(*out));
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, err);
    if (!p)
        return -1;
    size_t cap = 1024;
    out->pkts = malloc(cap * sizeof(*out->pkts));
    struct pcap_pkthdr *h;
    const u_char *d;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) {
        if (out->n == cap) {
            cap *= 2;
            out->pkts = realloc(out->pkts, cap * sizeof(*out->pkts));
        }
        struct tu_pkt *k = &out->pkts[out->n++];
        k->ts_ns = (uint64_t)h->ts.tv_sec * 1000000000ull + (uint64_t)h->ts.tv_usec;
        k->caplen = h->caplen;
        k->len = h->len;
        k->data = malloc(h->caplen ? h->caplen : 1);
        memcpy(k->data, d, h->caplen);
    }
    pcap_close(p);
    return rc == PCAP_ERROR_BREAK ? 0 : -1;
}

void tu_pcap_free(struct tu_pcap *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->pkts[i].data);
    free(p->pkts);
    memset(p, 0, sizeof(*p));
}

int tu_pcap_write(const char *path, const struct tu_pcap *p)
{
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    pcap_dumper_t *dd = pcap_dump_open(dead, path);
    if (!dd) {
        pcap_close(dead);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++) {
        struct pcap_pkthdr h;
        h.ts.tv_sec = (time_t)(p->pkts[i].ts_ns / 1000000000ull);
        h.ts.tv_usec = (suseconds_t)((p->pkts[i].ts_ns % 1000000000ull) / 1000);
        h.caplen = p->pkts[i].caplen;
        h.len = p->pkts[i].len;
        pcap_dump((u_char *)dd, &h, p->pkts[i].data);
    }
    pcap_dump_close(dd);
    pcap_close(dead);
    return 0;
}
