/*
 * itest.c - see itest.h.
 */
#include "itest.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int it_ingest(const char *scratch, const char *trace, const char *log, const char *extra)
{
    char out[4096];
    snprintf(out, sizeof(out), "%s/ingest", scratch);
    return tu_sh(out, "'%s' log ingest --log '%s' --trace '%s' -q %s", tu_bin(), log, trace,
                 extra ? extra : "");
}

int it_export(const char *scratch, const char *log, const char *out, const char *extra)
{
    char o[4096];
    snprintf(o, sizeof(o), "%s/replay", scratch);
    return tu_sh(o, "'%s' replay '%s' --to-pcap '%s' %s", tu_bin(), log, out, extra ? extra : "");
}

long it_diff(const struct tu_pcap *a, size_t ao, const struct tu_pcap *b, size_t bo, size_t n,
             int check_ts)
{
    for (size_t i = 0; i < n; i++) {
        const struct tu_pkt *x = &a->pkts[ao + i], *y = &b->pkts[bo + i];
        if ((check_ts && x->ts_ns != y->ts_ns) || x->caplen != y->caplen || x->len != y->len ||
            memcmp(x->data, y->data, x->caplen)) {
            fprintf(stderr, "packet %zu differs (ts %llu/%llu caplen %u/%u len %u/%u)\n", i,
                    (unsigned long long)x->ts_ns, (unsigned long long)y->ts_ns, x->caplen,
                    y->caplen, x->len, y->len);
            return (long)i;
        }
    }
    return -1;
}

int it_file_has(const char *path, const char *needle)
{
    char *s = tu_slurp(path, NULL);
    int n = 0;
    for (char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}

static int collect(void *ctx, const struct log_rec *r)
{
    struct it_outs *o = ctx;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 1024;
        o->p = realloc(o->p, o->cap * sizeof(*o->p));
    }
    struct it_pkt *x = &o->p[o->n++];
    x->clock = r->meta.clock;
    x->sub = r->meta.sub;
    x->len = r->cap_len;
    x->data = malloc(r->cap_len ? r->cap_len : 1);
    memcpy(x->data, r->data, r->cap_len);
    return 0;
}

void it_read_output(const char *run_dir, struct it_outs *o)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/output", run_dir);
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

void it_free_outs(struct it_outs *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->p[i].data);
    free(o->p);
    memset(o, 0, sizeof(*o));
}

bool it_same_outs(const struct it_outs *a, const struct it_outs *b)
{
    if (a->n != b->n)
        return fprintf(stderr, "  outputs differ: %zu vs %zu packets\n", a->n, b->n), false;
    for (size_t i = 0; i < a->n; i++)
        if (a->p[i].clock != b->p[i].clock || a->p[i].sub != b->p[i].sub ||
            a->p[i].len != b->p[i].len || memcmp(a->p[i].data, b->p[i].data, a->p[i].len))
            return fprintf(stderr, "  outputs differ at packet %zu (clock %llu)\n", i,
                           (unsigned long long)a->p[i].clock),
                   false;
    return true;
}
