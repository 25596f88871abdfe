/*
 * rw_lat.h - latency histograms: 4 buckets per power of two of nanoseconds
 * (about 19% wide), enough to tell 1 µs added from 2. Workers fill them in shared
 * memory, the sink in its own stats; the report and the benches read
 * percentiles. One bucket scheme for all, so their figures compare.
 */
#ifndef RW_LAT_H
#define RW_LAT_H

#include <stdint.h>

#define RW_LAT_BUCKETS 160

/* The bucket of a latency in ns. */
unsigned rw_lat_bucket(uint64_t ns);
/* Percentile (0..100) of a histogram in ns (the bucket's midpoint); 0 when empty. */
uint64_t rw_lat_percentile(const _Atomic uint64_t *hist, double pct);

#endif
