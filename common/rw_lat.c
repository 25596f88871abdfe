/*
 * rw_lat.c - see rw_lat.h. Atomic loads because a histogram in shared memory is
 * read while its worker writes it.
 */
#include "rw_lat.h"

#include <stdatomic.h>

unsigned rw_lat_bucket(uint64_t ns)
{
    if (ns < 4)
        return (unsigned)ns;
    unsigned top = 63 - (unsigned)__builtin_clzll(ns); /* ns in [2^top, 2^(top+1)) */
    unsigned b = top * 4 + (unsigned)((ns >> (top - 2)) & 3);
    return b < RW_LAT_BUCKETS ? b : RW_LAT_BUCKETS - 1;
}

static uint64_t bucket_mid(unsigned b)
{
    if (b < 4)
        return b;
    unsigned top = b / 4, q = b % 4;
    uint64_t lo = (1ull << top) + ((uint64_t)q << (top - 2));
    return lo + (1ull << (top - 2)) / 2;
}

uint64_t rw_lat_percentile(const _Atomic uint64_t *hist, double pct)
{
    uint64_t total = 0, seen = 0;
    for (int b = 0; b < RW_LAT_BUCKETS; b++)
        total += atomic_load(&hist[b]);
    if (!total)
        return 0;
    uint64_t want = (uint64_t)((double)total * pct / 100.0);
    for (int b = 0; b < RW_LAT_BUCKETS; b++) {
        seen += atomic_load(&hist[b]);
        if (seen > want || seen == total)
            return bucket_mid((unsigned)b);
    }
    return 0;
}
