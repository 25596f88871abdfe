/*
 * link_dedup.c - the duplicate filter at an input: has (clock, sub) been seen?
 *
 * Replays, clones and re-runs deliver some packets twice; every worker input and
 * the sink drop the second copy. Memory stays bounded because entries below the
 * trim watermark G are forgotten (nothing below G is ever sent again).
 *
 * Written by hand: DPDK's rte_hash would need the EAL (and its memory) in every
 * worker process, and this is an open-addressing set of u64 keys with a trim.
 */
#include "link.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY UINT64_MAX

static uint64_t key_of(uint64_t clock, uint16_t sub)
{
    return (clock << 16) | sub; /* clocks stay below 2^48 */
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

int dedup_init(struct dedup *d, uint32_t cap_log2)
{
    memset(d, 0, sizeof(*d));
    d->mask = (1ull << cap_log2) - 1;
    d->keys = malloc((d->mask + 1) * sizeof(uint64_t));
    if (!d->keys)
        return RW_ENOMEM;
    memset(d->keys, 0xff, (d->mask + 1) * sizeof(uint64_t));
    return 0;
}

void dedup_free(struct dedup *d)
{
    free(d->keys);
    d->keys = NULL;
}

static void insert(struct dedup *d, uint64_t k)
{
    for (uint64_t i = mix(k) & d->mask;; i = (i + 1) & d->mask)
        if (d->keys[i] == EMPTY) {
            d->keys[i] = k;
            d->n++;
            return;
        }
}

/* Keeps keys >= floor, in a table of twice the needed size. */
static int rebuild(struct dedup *d, uint64_t floor)
{
    uint64_t live = 0;
    for (uint64_t i = 0; i <= d->mask; i++)
        live += d->keys[i] != EMPTY && d->keys[i] >= floor;
    uint64_t cap = 1024;
    while (cap < live * 4)
        cap *= 2;
    struct dedup n = {.floor = floor};
    n.mask = cap - 1;
    n.keys = malloc(cap * sizeof(uint64_t));
    if (!n.keys)
        return RW_ENOMEM;
    memset(n.keys, 0xff, cap * sizeof(uint64_t));
    for (uint64_t i = 0; i <= d->mask; i++)
        if (d->keys[i] != EMPTY && d->keys[i] >= floor)
            insert(&n, d->keys[i]);
    free(d->keys);
    *d = n;
    return 0;
}

int dedup_seen(struct dedup *d, uint64_t clock, uint16_t sub)
{
    uint64_t k = key_of(clock, sub);
    if (k < d->floor)
        return 1; /* below G: seen long ago by definition */
    uint64_t i = mix(k) & d->mask;
    for (; d->keys[i] != EMPTY; i = (i + 1) & d->mask)
        if (d->keys[i] == k)
            return 1;
    if ((d->n + 1) * 2 > d->mask + 1) { /* keep the load under one half */
        if (rebuild(d, d->floor))
            return RW_ENOMEM;
        return dedup_seen(d, clock, sub);
    }
    d->keys[i] = k;
    d->n++;
    return 0;
}

int dedup_trim(struct dedup *d, uint64_t g)
{
    uint64_t floor = key_of(g, 0);
    if (floor <= d->floor)
        return 0;
    if (d->n < 4096) { /* cheap enough to keep until there is something to win */
        d->floor = floor;
        return 0;
    }
    return rebuild(d, floor);
}
