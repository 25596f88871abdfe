/*
 * log_block.h - the on-disk block: a group of packet records, optionally lz4-
 * compressed, guarded by a CRC-32. Internal to the logger.
 *
 * Layout (little-endian):
 *   u32 magic "RWB1" | u8 version | u8 codec | u16 reserved
 *   u32 count | u32 raw_len | u32 stored_len | u32 crc32 (header with crc=0, then payload)
 *   u64 first_clock | u64 last_clock | u64 min_ts | u64 max_ts | u64 first_ts
 *   payload: stored_len bytes (raw records, or their lz4 compression)
 * Records: varint clock delta (from the previous clock; first from first_clock),
 * varint sub, zigzag varint ts delta (from the previous ts; first from first_ts),
 * varint port, varint flags, varint orig_len, varint cap_len, cap_len bytes.
 *
 * LMDB checks its page structure but not the data in it, so the CRC is what lets
 * `log verify` name a damaged block instead of replaying garbage.
 */
#ifndef RW_LOG_BLOCK_H
#define RW_LOG_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define LOG_BLOCK_MAGIC   0x31425752u /* "RWB1" */
#define LOG_BLOCK_VERSION 1
#define LOG_BLOCK_HDR     64
#define LOG_CODEC_RAW     0
#define LOG_CODEC_LZ4     1
#define LOG_REC_MAX_HDR   (10 * 7) /* seven varints at most 10 bytes each */

struct log_block_hdr {
    uint32_t count, raw_len, stored_len, crc;
    uint8_t codec;
    uint64_t first_clock, last_clock, min_ts, max_ts, first_ts;
};

struct log_bb_flow {
    struct rw_flow f;
    uint8_t nh6;  /* IPv6: the fixed header's next header (a key of its own) */
    int16_t nh6f; /* IPv6: the next header after a fragment header there; -1: none */
    int8_t ports; /* log_keys_ports: whole, cut or absent */
};

/* A block under construction: raw records appended into a growing buffer. */
struct log_block_builder {
    uint8_t *raw;
    size_t raw_len, raw_cap;
    uint32_t count;
    uint64_t first_clock, last_clock, prev_ts, min_ts, max_ts, first_ts;
    uint64_t wire_bytes;
    uint64_t opened_ns;        /* monotonic time of the first append, for group commit */
    uint32_t *flows;           /* the hashes of the block's distinct flows, for the flow index */
    struct log_bb_flow *fkeys; /* those flows (log_block.c: add_flow) */
    size_t nflows, flows_cap;
    uint32_t *fslots; /* their set: index + 1, 0 an empty slot */
    size_t fslots_cap;
    /* The keys index's share (log_keys.c: "the block's key set"). */
    uint64_t *v4; /* IPv4 host and net keys, packed: an open-addressed set, 0 empty */
    size_t v4_cap, nv4;
    uint32_t *keys; /* IPv6 keys' format hashes: an open-addressed set, 0 empty */
    size_t keys_cap, nkeys;
    uint64_t port_map[1024]; /* ports seen, by bit */
    uint64_t proto_map[4];   /* IP protocols seen, by bit */
    uint8_t l3_map;          /* IPv4, IPv6, ARP, RARP seen */
    bool key_zero;           /* the hash 0 is in the IPv6 set */
    bool keys_all;           /* a packet the keys cannot describe: read for every query */
    bool monotonic;          /* ts never went backwards inside the block */
    uint32_t lz4_skip;       /* blocks left to store raw without trying lz4 */
};

void log_bb_init(struct log_block_builder *b);
void log_bb_free(struct log_block_builder *b);
void log_bb_reset(struct log_block_builder *b);
int log_bb_add(struct log_block_builder *b, const struct log_rec *r, uint64_t now_ns);

/* Encodes the builder into out (malloc'd, *out_len bytes): lz4 when it saves at
 * least an eighth, raw otherwise. After a block that did not compress, the next
 * 15 are stored raw without trying (encrypted or random payloads would only burn
 * a compression pass each); the 16th tries again. */
int log_bb_encode(struct log_block_builder *b, uint8_t **out, size_t *out_len);

/* Per-block flow filter: a Bloom filter over the block's flow hashes, so that a
 * flow query reads only blocks that may hold the flow (see log_bloom.c). */
int log_bloom_build(const uint32_t *hashes, size_t n, uint8_t **out, size_t *out_len);
bool log_bloom_may_hold(const uint8_t *bloom, size_t len, uint32_t hash);
/* Structural check of a stored filter. */
bool log_bloom_valid(const uint8_t *bloom, size_t len);

/* Parses and checks the header and CRC of a stored block. Returns 0 or a
 * RW_ECORRUPT with the reason in e. */
int log_block_check(const uint8_t *v, size_t len, struct log_block_hdr *h, struct rw_err *e);

/* Decodes a checked block's records into buf (grown as needed); calls fn for each
 * record. Returns 0, fn's non-zero value, or RW_ECORRUPT with the reason in e. */
struct log_block_buf {
    uint8_t *p;
    size_t cap;
};
int log_block_decode(const uint8_t *v, size_t len, const struct log_block_hdr *h,
                     struct log_block_buf *buf, log_visit_fn fn, void *ctx, struct rw_err *e);

#endif
