/*
 * nf_localstate.c - NF state kept inside the worker process, for --no-ft: what a
 * traditional NF does, and the baseline rewind's overhead is measured against.
 * No op identities, no emulation, lost when the process dies.
 *
 * A chained hash map keyed by (scope, object, key bytes), written by hand for
 * the same reason as dedup.c (no EAL in workers).
 */
#include "nf_localstate.h"

#include <stdlib.h>
#include <string.h>

#include <rte_jhash.h>

struct lentry {
    struct lentry *next;
    uint32_t hash, klen, vlen, vcap;
    uint8_t scope;
    uint16_t object;
    uint8_t *val;
    uint8_t key[];
};

int lstate_init(struct lstate *s)
{
    s->nb = 1024;
    s->n = 0;
    s->buckets = calloc(s->nb, sizeof(*s->buckets));
    return s->buckets ? 0 : RW_ENOMEM;
}

void lstate_free(struct lstate *s)
{
    for (size_t i = 0; i < s->nb; i++)
        for (struct lentry *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e->val);
            free(e);
        }
    free(s->buckets);
    s->buckets = NULL;
}

/* rte_jhash reads whole aligned words: hash a zero-padded aligned copy, never
 * the caller's bytes (which may be short or unaligned). */
static uint32_t hash_of(const struct store_key *k)
{
    uint32_t w[(STORE_KEY_MAX + 3) / 4];
    size_t len = k->len <= STORE_KEY_MAX ? k->len : STORE_KEY_MAX;
    memset(w, 0, (len + 3) & ~(size_t)3);
    memcpy(w, k->bytes, len);
    return rte_jhash(w, (uint32_t)len, ((uint32_t)k->scope << 16) | k->object);
}

static struct lentry **find(struct lstate *s, const struct store_key *k, uint32_t h)
{
    struct lentry **p = &s->buckets[h & (s->nb - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->scope == k->scope && (*p)->object == k->object &&
            (*p)->klen == k->len && !memcmp((*p)->key, k->bytes, k->len))
            break;
    return p;
}

static void grow(struct lstate *s)
{
    size_t nb = s->nb * 2;
    struct lentry **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* stay at this size: slower, still correct */
    for (size_t i = 0; i < s->nb; i++)
        for (struct lentry *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nb = nb;
}

int lstate_get(struct lstate *s, const struct store_key *k, void *buf, size_t cap, size_t *len,
               bool *found)
{
    struct lentry *e = *find(s, k, hash_of(k));
    *found = e != NULL;
    *len = e ? e->vlen : 0;
    if (e && e->vlen > cap)
        return STORE_ETOOBIG;
    if (e && e->vlen)
        memcpy(buf, e->val, e->vlen);
    return 0;
}

int lstate_put(struct lstate *s, const struct store_key *k, const void *val, size_t len)
{
    uint32_t h = hash_of(k);
    struct lentry **p = find(s, k, h), *e = *p;
    if (!e) {
        e = calloc(1, sizeof(*e) + k->len);
        if (!e)
            return STORE_ENOMEM;
        e->hash = h;
        e->scope = k->scope;
        e->object = k->object;
        e->klen = (uint32_t)k->len;
        memcpy(e->key, k->bytes, k->len);
        *p = e;
        if (++s->n > s->nb * 2)
            grow(s);
    }
    if (len > e->vcap) {
        uint8_t *v = realloc(e->val, len);
        if (!v)
            return STORE_ENOMEM;
        e->val = v;
        e->vcap = (uint32_t)len;
    }
    if (len)
        memcpy(e->val, val, len);
    e->vlen = (uint32_t)len;
    return 0;
}

int lstate_del(struct lstate *s, const struct store_key *k)
{
    struct lentry **p = find(s, k, hash_of(k)), *e = *p;
    if (e) {
        *p = e->next;
        free(e->val);
        free(e);
        s->n--;
    }
    return 0;
}

int lstate_incr(struct lstate *s, const struct store_key *k, int64_t delta, int64_t *result)
{
    int64_t v = 0;
    size_t len;
    bool found;
    int rc = lstate_get(s, k, &v, sizeof(v), &len, &found);
    if (rc || (found && len != sizeof(v)))
        return rc ? rc : STORE_ETYPE;
    v += delta;
    if (result)
        *result = v;
    return lstate_put(s, k, &v, sizeof(v));
}

/* Lists: items as (u32 length, bytes) one after the other, with a read offset at
 * the front of the value so a pop is O(1) until the consumed part is compacted. */
int lstate_push(struct lstate *s, const struct store_key *k, const void *val, size_t len)
{
    uint32_t h = hash_of(k);
    struct lentry **p = find(s, k, h), *e = *p;
    if (!e) {
        uint32_t head = 4;
        int rc = lstate_put(s, k, &head, sizeof(head));
        if (rc)
            return rc;
        e = *find(s, k, h);
    }
    size_t need = e->vlen + 4 + len;
    if (need > e->vcap) {
        size_t cap = e->vcap ? e->vcap : 64;
        while (cap < need)
            cap *= 2;
        uint8_t *v = realloc(e->val, cap);
        if (!v)
            return STORE_ENOMEM;
        e->val = v;
        e->vcap = (uint32_t)cap;
    }
    uint32_t l = (uint32_t)len;
    memcpy(e->val + e->vlen, &l, 4);
    memcpy(e->val + e->vlen + 4, val, len);
    e->vlen = (uint32_t)need;
    return 0;
}

int lstate_pop(struct lstate *s, const struct store_key *k, void *buf, size_t cap, size_t *len,
               bool *found)
{
    struct lentry *e = *find(s, k, hash_of(k));
    uint32_t head, l;
    *found = false;
    *len = 0;
    if (!e || e->vlen < 4)
        return 0;
    memcpy(&head, e->val, 4);
    if (head + 4 > e->vlen)
        return 0; /* empty */
    memcpy(&l, e->val + head, 4);
    if (l > cap)
        return STORE_ETOOBIG;
    memcpy(buf, e->val + head + 4, l);
    *len = l;
    *found = true;
    head += 4 + l;
    if (head > 4096 && head * 2 > e->vlen) { /* compact the consumed front */
        memmove(e->val + 4, e->val + head, e->vlen - head);
        e->vlen -= head - 4;
        head = 4;
    }
    memcpy(e->val, &head, 4);
    return 0;
}
