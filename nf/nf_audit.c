/*
 * nf_audit.c - what an NF's audit hook (struct nf_def.audit) writes into: the
 * canonical summary of the NF's stored state and the invariants it found broken.
 *
 * Why it exists: output equivalence alone cannot see an op applied twice when
 * the NF canonicalises its visible effect away (a replayed NAT pop takes a second
 * port that verify renames; a leaked port never shows in the output). At the end
 * of a run the coordinator asks each NF to read its objects back (store_scan)
 * and say, in lines that must be equal in every run on the same input, what it
 * holds, and whether its own invariants hold (ports free or mapped exactly
 * once). The lines are sorted here, so a hook may add them in store order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf.h"
#include "store.h"

struct nf_audit {
    char **lines, **broken;
    size_t nlines, caplines, nbroken, capbroken;
};

struct nf_audit *nf_audit_new(void)
{
    return calloc(1, sizeof(struct nf_audit));
}

void nf_audit_free(struct nf_audit *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nlines; i++)
        free(a->lines[i]);
    for (size_t i = 0; i < a->nbroken; i++)
        free(a->broken[i]);
    free(a->lines);
    free(a->broken);
    free(a);
}

static int add(char ***v, size_t *n, size_t *cap, const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return RW_ENOMEM;
    /* JSON-safe by construction: the lines are written as JSON strings as is. */
    for (char *p = s; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '?';
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **nv = realloc(*v, nc * sizeof(*nv));
        if (!nv) {
            free(s);
            return RW_ENOMEM;
        }
        *v = nv, *cap = nc;
    }
    (*v)[(*n)++] = s;
    return 0;
}

int nf_audit_line(struct nf_audit *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = add(&a->lines, &a->nlines, &a->caplines, fmt, ap);
    va_end(ap);
    return rc;
}

int nf_audit_broken(struct nf_audit *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = add(&a->broken, &a->nbroken, &a->capbroken, fmt, ap);
    va_end(ap);
    return rc;
}

static int by_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

void nf_audit_sort(struct nf_audit *a)
{
    if (a->nlines)
        qsort(a->lines, a->nlines, sizeof(char *), by_str);
}

size_t nf_audit_lines(const struct nf_audit *a, const char *const **lines)
{
    *lines = (const char *const *)a->lines;
    return a->nlines;
}

size_t nf_audit_broken_list(const struct nf_audit *a, const char *const **msgs)
{
    *msgs = (const char *const *)a->broken;
    return a->nbroken;
}

struct counters {
    struct nf_audit *a;
    const uint16_t *objects;
    const char *const *labels;
    size_t n;
};

static int counter_line(void *arg, const struct store_obj *o)
{
    const struct counters *c = arg;
    char hex[2 * STORE_KEY_MAX + 1];
    if (o->type != STORE_T_INT)
        return 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->objects[i] != o->object)
            continue;
        for (size_t j = 0; j < o->klen; j++)
            snprintf(hex + 2 * j, 3, "%02x", ((const uint8_t *)o->key)[j]);
        hex[2 * o->klen] = 0;
        return nf_audit_line(c->a, "%s %s %lld", c->labels[i], hex, (long long)o->i);
    }
    return 0;
}

int nf_audit_counters(struct store_client *sc, struct nf_audit *a, const uint16_t *objects,
                      const char *const *labels, size_t n, struct rw_err *e)
{
    struct counters c = {.a = a, .objects = objects, .labels = labels, .n = n};
    int rc = store_scan(sc, counter_line, &c);
    if (rc == RW_ENOMEM)
        return rw_errf(e, rc, "out of memory");
    return rc ? rw_errf(e, RW_EIO, "%s", store_client_errmsg(sc)) : 0;
}
