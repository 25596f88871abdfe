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
 *
 * Both are written by hand: the keys are the store's own (object, bytes), the
 * values need their type and owner, and neither needs more than a hash table.
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

/* The as-of overlay (store_client_asof): the per-flow objects the client's slot
 * wrote after the watermark it replays from, with their value as of the point
 * the replay has reached. Unlike the cache it never forgets an entry: a
 * forgotten one would be read back from the store, which holds a later value. */
struct store_oval {
    uint8_t type; /* 's', 'i', or 0: absent */
    bool mine;    /* owned by the client's slot (else: another slot's, or absent) */
    int64_t i;
    const uint8_t *bytes;
    size_t len;
};

struct store_asof *store_asof_new(void); /* NULL: out of memory */
void store_asof_free(struct store_asof *a);
size_t store_asof_size(const struct store_asof *a);
/* Adds k unless it is there (the first write after the watermark holds the value
 * as of it). STORE_OK or STORE_ENOMEM (nothing added). */
int store_asof_add(struct store_asof *a, const struct store_key *k, const struct store_oval *v);
/* True and *v filled (bytes valid until the next change) when k is in the overlay. */
bool store_asof_get(const struct store_asof *a, const struct store_key *k, struct store_oval *v);
/* A type: the key was first written by this client past what the overlay knew
 * (beyond the first run's progress), so the store holds its value. */
#define STORE_ASOF_FOLLOW 'F'
/* Sets k's value (adding k) as written by the packet (clock, sub), keeping the
 * value before that packet's first write for store_asof_undo. STORE_OK or
 * STORE_ENOMEM (k unchanged). */
int store_asof_set(struct store_asof *a, const struct store_key *k, const struct store_oval *v,
                   uint64_t clock, uint16_t sub);
/* Takes back what the packet (clock, sub) wrote: it is to be run again. */
void store_asof_undo(struct store_asof *a, uint64_t clock, uint16_t sub);

#endif
