/*
 * store_cache.c - see store_cache.h. A direct-mapped table: a collision evicts,
 * which costs a round trip later, never a wrong value.
 */
#include "store_cache.h"

#include <stdlib.h>
#include <string.h>

struct centry {
    bool used;
    uint8_t type;
    uint32_t object; /* scope << 16 | object: a key's identity is all three */
    uint8_t klen;
    uint8_t key[STORE_KEY_MAX];
    int64_t i;
    uint8_t *val;
    size_t vlen;
};

struct store_cache {
    unsigned mask;
    unsigned live; /* used entries: a clear stops when none is left */
    struct centry e[];
};

struct store_cache *store_cache_new(unsigned n)
{
    unsigned p = 1;
    while (p < n)
        p <<= 1;
    struct store_cache *sc = calloc(1, sizeof(*sc) + p * sizeof(struct centry));
    if (sc)
        sc->mask = p - 1;
    return sc;
}

static void forget(struct store_cache *sc, struct centry *e)
{
    if (e->used)
        sc->live--;
    free(e->val);
    memset(e, 0, offsetof(struct centry, key));
    e->val = NULL;
    e->vlen = 0;
}

/* Every worker clears its cache when it starts and at each recovery step; a
 * walk of all 64 Ki entries (16 MB, faulted in page by page on a fresh table)
 * was a tenth of a Debug replacement's start-up under a kill storm. */
void store_cache_clear(struct store_cache *sc)
{
    for (unsigned i = 0; sc && sc->live && i <= sc->mask; i++)
        if (sc->e[i].used)
            forget(sc, &sc->e[i]);
}

void store_cache_free(struct store_cache *sc)
{
    store_cache_clear(sc);
    free(sc);
}

static uint32_t ident(const struct store_key *k)
{
    return (uint32_t)k->scope << 16 | k->object;
}

/* FNV-1a over the key's identity and bytes: the cache's and the overlay's hash. */
static uint64_t khash(const struct store_key *k)
{
    uint64_t h = 1469598103934665603ull ^ ident(k);
    const uint8_t *p = k->bytes;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static struct centry *slot_of(struct store_cache *sc, const struct store_key *k)
{
    return &sc->e[khash(k) & sc->mask];
}

static bool same(const struct centry *e, const struct store_key *k)
{
    return e->used && e->object == ident(k) && e->klen == k->len &&
           !memcmp(e->key, k->bytes, k->len);
}

bool store_cache_get(struct store_cache *sc, const struct store_key *k, struct store_cval *v)
{
    if (!sc)
        return false;
    struct centry *e = slot_of(sc, k);
    if (!same(e, k))
        return false;
    *v = (struct store_cval){e->type, e->i, e->val, e->vlen};
    return true;
}

void store_cache_set(struct store_cache *sc, const struct store_key *k, const struct store_cval *v)
{
    if (!sc)
        return;
    struct centry *e = slot_of(sc, k);
    uint8_t *nv = NULL;
    if (v->type == 's' && !(nv = malloc(v->len ? v->len : 1))) {
        forget(sc, e);
        return;
    }
    if (nv && v->len)
        memcpy(nv, v->bytes, v->len);
    forget(sc, e);
    sc->live++;
    *e = (struct centry){.used = true,
                         .type = v->type,
                         .object = ident(k),
                         .klen = (uint8_t)k->len,
                         .i = v->i,
                         .val = nv,
                         .vlen = nv ? v->len : 0};
    if (k->len)
        memcpy(e->key, k->bytes, k->len);
}

void store_cache_drop(struct store_cache *sc, const struct store_key *k)
{
    if (!sc)
        return;
    struct centry *e = slot_of(sc, k);
    if (same(e, k))
        forget(sc, e);
}

/* ---- the as-of overlay: a chained hash table that grows ---- */

struct aentry {
    struct aentry *next;
    struct store_oval v;
    uint8_t *val;
    struct store_oval before; /* the value before the marked packet's first write */
    uint8_t *bval;
    uint64_t mclock; /* the packet (clock, sub) that wrote it last */
    uint32_t msub;   /* with 1 << 16: none yet */
    uint32_t object; /* scope << 16 | object */
    uint8_t klen;
    uint8_t key[];
};

struct store_asof {
    struct aentry **tab;
    size_t nb, n;
};

struct store_asof *store_asof_new(void)
{
    struct store_asof *a = calloc(1, sizeof(*a));
    if (a && !(a->tab = calloc(a->nb = 64, sizeof(*a->tab)))) {
        free(a);
        return NULL;
    }
    return a;
}

void store_asof_free(struct store_asof *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nb; i++)
        for (struct aentry *e = a->tab[i], *nx; e; e = nx) {
            nx = e->next;
            free(e->val);
            free(e->bval);
            free(e);
        }
    free(a->tab);
    free(a);
}

size_t store_asof_size(const struct store_asof *a)
{
    return a ? a->n : 0;
}

static struct aentry **afind(const struct store_asof *a, const struct store_key *k)
{
    struct aentry **pp = &a->tab[khash(k) & (a->nb - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->object == ident(k) && (*pp)->klen == k->len &&
            !memcmp((*pp)->key, k->bytes, k->len))
            break;
    return pp;
}

/* Copies v's bytes into e (the old ones freed only once the copy is made). */
static int aval(struct aentry *e, const struct store_oval *v)
{
    uint8_t *nv = NULL;
    if (v->type == 's' && !(nv = malloc(v->len ? v->len : 1)))
        return STORE_ENOMEM;
    if (nv && v->len)
        memcpy(nv, v->bytes, v->len);
    free(e->val);
    e->val = nv;
    e->v = *v;
    e->v.bytes = nv;
    if (!nv)
        e->v.len = 0;
    return STORE_OK;
}

static void agrow(struct store_asof *a)
{
    size_t nb = a->nb * 2;
    struct aentry **t = calloc(nb, sizeof(*t));
    if (!t)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < a->nb; i++)
        for (struct aentry *e = a->tab[i], *nx; e; e = nx) {
            nx = e->next;
            struct store_key k = {(uint8_t)(e->object >> 16), (uint16_t)e->object, e->key, e->klen};
            struct aentry **pp = &t[khash(&k) & (nb - 1)];
            e->next = *pp;
            *pp = e;
        }
    free(a->tab);
    a->tab = t;
    a->nb = nb;
}

int store_asof_add(struct store_asof *a, const struct store_key *k, const struct store_oval *v)
{
    struct aentry **pp = afind(a, k);
    if (*pp)
        return STORE_OK;
    struct aentry *e = calloc(1, sizeof(*e) + k->len);
    if (!e || aval(e, v)) {
        free(e);
        return STORE_ENOMEM;
    }
    e->msub = 1u << 16;
    e->object = ident(k);
    e->klen = (uint8_t)k->len;
    if (k->len)
        memcpy(e->key, k->bytes, k->len);
    *pp = e;
    if (++a->n > a->nb)
        agrow(a);
    return STORE_OK;
}

bool store_asof_get(const struct store_asof *a, const struct store_key *k, struct store_oval *v)
{
    if (!a)
        return false;
    struct aentry *e = *afind(a, k);
    if (e)
        *v = e->v;
    return e != NULL;
}

int store_asof_set(struct store_asof *a, const struct store_key *k, const struct store_oval *v,
                   uint64_t clock, uint16_t sub)
{
    if (!a)
        return STORE_OK;
    static const struct store_oval follow = {.type = STORE_ASOF_FOLLOW};
    int rc = store_asof_add(a, k, &follow); /* undone, a new key follows the store */
    struct aentry *e = *afind(a, k);
    if (rc)
        return rc;
    if (e->mclock != clock || e->msub != sub) {
        uint8_t *nb = NULL;
        if (e->v.type == 's' && !(nb = malloc(e->v.len ? e->v.len : 1)))
            return STORE_ENOMEM;
        if (nb && e->v.len)
            memcpy(nb, e->v.bytes, e->v.len);
        free(e->bval);
        e->bval = nb;
        e->before = e->v;
        e->before.bytes = nb;
        e->mclock = clock;
        e->msub = sub;
    }
    return aval(e, v);
}

void store_asof_undo(struct store_asof *a, uint64_t clock, uint16_t sub)
{
    for (size_t i = 0; a && i < a->nb; i++)
        for (struct aentry *e = a->tab[i]; e; e = e->next) {
            if (e->mclock != clock || e->msub != sub)
                continue;
            free(e->val);
            e->val = e->bval;
            e->v = e->before;
            e->bval = NULL;
            e->msub = 1u << 16;
        }
}
