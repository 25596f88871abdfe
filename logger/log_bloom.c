/*
 * log_bloom.c - the per-block flow filter.
 *
 * design.md: Formats maps flow hash -> block in a dupsort table. Measured here, that
 * costs one random-key B-tree insert per distinct flow per block — about one
 * per packet on real traffic — and it dominated ingest (docs/design-notes.md).
 * A Bloom filter per block is one appended value per block; a flow query scans
 * the filters (a few KB per block, sequential) and reads only blocks that may
 * hold the flow. Sized at ~16 bits per flow with 4 probes: about 0.25% false
 * positives, each costing one extra block read, never a wrong answer (blocks are
 * filtered record by record afterwards).
 *
 * Layout: u8 version | u8 probes | u8 log2(bits) | u8 reserved | bits/8 bytes.
 * Probes use double hashing (Kirsch-Mitzenmacher) from the 32-bit flow hash.
 * Version 2 filters hold flow hash version 2 (rw_flow.h); version 1 filters, laid
 * out alike, hold the earlier hash, whose values differed between builds. A filter
 * says which so that no reader trusts one built by another hash: this build reads
 * the block of a version 1 filter (a pre-fix build appended it), and builds from
 * before the fix, which only trust version 1, read every block of a newer log
 * instead of answering that the flow is not there.
 */
#include "log_block.h"

#include <stdlib.h>
#include <string.h>

#define BLOOM_VERSION  2
#define BLOOM_V1       1 /* same layout, hashes of another build: checked, never trusted */
#define BLOOM_PROBES   4
#define BLOOM_MIN_LOG2 9  /* 512 bits */
#define BLOOM_MAX_LOG2 16 /* 64 Kibit = 8 KiB */

static uint32_t second_hash(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    return h | 1u;
}

int log_bloom_build(const uint32_t *hashes, size_t n, uint8_t **out, size_t *out_len)
{
    unsigned lg = BLOOM_MIN_LOG2;
    while (lg < BLOOM_MAX_LOG2 && (1ull << lg) < 16ull * n)
        lg++;
    size_t bytes = (1u << lg) / 8;
    uint8_t *b = calloc(1, 4 + bytes);
    if (!b)
        return RW_ENOMEM;
    b[0] = BLOOM_VERSION;
    b[1] = BLOOM_PROBES;
    b[2] = (uint8_t)lg;
    uint32_t mask = (1u << lg) - 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t h1 = hashes[i], h2 = second_hash(hashes[i]);
        for (uint32_t k = 0; k < BLOOM_PROBES; k++) {
            uint32_t bit = (h1 + k * h2) & mask;
            b[4 + bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
    }
    *out = b;
    *out_len = 4 + bytes;
    return 0;
}

bool log_bloom_valid(const uint8_t *b, size_t len)
{
    return len >= 4 && (b[0] == BLOOM_VERSION || b[0] == BLOOM_V1) && b[1] >= 1 && b[1] <= 16 &&
           b[2] >= BLOOM_MIN_LOG2 && b[2] <= BLOOM_MAX_LOG2 && len == 4 + ((size_t)1 << b[2]) / 8;
}

bool log_bloom_may_hold(const uint8_t *b, size_t len, uint32_t hash)
{
    if (!log_bloom_valid(b, len) || b[0] != BLOOM_VERSION)
        return true; /* unreadable or untrusted filter: read the block rather than miss it */
    uint32_t mask = (1u << b[2]) - 1, h2 = second_hash(hash);
    for (uint32_t k = 0; k < b[1]; k++) {
        uint32_t bit = (hash + k * h2) & mask;
        if (!(b[4 + bit / 8] & (1u << (bit % 8))))
            return false;
    }
    return true;
}
