/*
 * store_cache.h - the worker-side cache of per-flow objects (STORE_FLOW). Only
 * the owner slot may change such an object, so the worker can know its value
 * without asking: reads with an op identity and sync increments of cached
 * objects are answered locally and their op queued blind (the store still
 * records it, so a replay sees the same value).
 *
 * The cache is filled only from op results (recorded or live), never from plain
 * reads: it then mirrors the state at the client's position in its own op
 * sequence, which is also what replay reproduces. Any error empties it.
 */
#ifndef RW_STORE_CACHE_H
#define RW_STORE_CACHE_H

#include "store_int.h"

struct store_cache;

struct store_cache *store_cache_new(unsigned n);
void store_cache_free(struct store_cache *sc);
void store_cache_clear(struct store_cache *sc);

/* A cached object: type 's' or 'i', or 0 when known absent. */
struct store_cval {
    uint8_t type;
    int64_t i;
    const uint8_t *bytes;
    size_t len;
};

/* True and *v filled when k is cached (v->bytes valid until the next set). */
bool store_cache_get(struct store_cache *sc, const struct store_key *k, struct store_cval *v);
/* Records k's value (type 0: absent); a failed allocation forgets k instead. */
void store_cache_set(struct store_cache *sc, const struct store_key *k, const struct store_cval *v);
void store_cache_drop(struct store_cache *sc, const struct store_key *k);

#endif
