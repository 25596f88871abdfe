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
    uint16_t object;
    uint8_t klen;
    uint8_t key[STORE_KEY_MAX];
    int64_t i;
    uint8_t *val;
    size_t vlen;
};

struct store_cache {
    unsigned mask;
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

static void forget(struct centry *e)
{
    free(e->val);
    memset(e, 0, offsetof(struct centry, key));
    e->val = NULL;
    e->vlen = 0;
}

void store_cache_clear(struct store_cache *sc)
{
    for (unsigned i = 0; sc && i <= sc->mask; i++)
        if (sc->e[i].used)
            forget(&sc->e[i]);
}

void store_cache_free(struct store_cache *sc)
{
    store_cache_clear(sc);
    free(sc);
}

static struct centry *slot_of(struct store_cache *sc, const struct store_key *k)
{
    uint64_t h = 1469598103934665603ull ^ k->object;
    const uint8_t *p = k->bytes;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return &sc->e[h & sc->mask];
}

static bool same(const struct centry *e, const struct store_key *k)
{
    return e->used && e->object == k->object && e->klen == k->len &&
           !memcmp(e->key, k->bytes, k->len);
}

bool store_cache_get(struct store_cache *sc, const struct store_key *k, struct store_cval *v)
{
    if (!sc || k->scope != STORE_FLOW)
        return false;
    struct centry *e = slot_of(sc, k);
    if (!same(e, k))
        return false;
    *v = (struct store_cval){e->type, e->i, e->val, e->vlen};
    return true;
}

void store_cache_set(struct store_cache *sc, const struct store_key *k, const struct store_cval *v)
{
    if (!sc || k->scope != STORE_FLOW)
        return;
    struct centry *e = slot_of(sc, k);
    uint8_t *nv = NULL;
    if (v->type == 's' && !(nv = malloc(v->len ? v->len : 1))) {
        forget(e);
        return;
    }
    if (nv && v->len)
        memcpy(nv, v->bytes, v->len);
    forget(e);
    *e = (struct centry){.used = true,
                         .type = v->type,
                         .object = k->object,
                         .klen = (uint8_t)k->len,
                         .i = v->i,
                         .val = nv,
                         .vlen = nv ? v->len : 0};
    if (k->len)
        memcpy(e->key, k->bytes, k->len);
}

void store_cache_drop(struct store_cache *sc, const struct store_key *k)
{
    if (!sc || k->scope != STORE_FLOW)
        return;
    struct centry *e = slot_of(sc, k);
    if (same(e, k))
        forget(e);
}
