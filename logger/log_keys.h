/*
 * log_keys.h - the per-block host/port/protocol index and the predicates that
 * query it. Internal to the logger (log.h has the public side: log_pred_compile
 * and log_query.keys).
 *
 * Each block gets one filter in the segment's `keys` table (key = the block's
 * first clock, like the flow filter): a Bloom filter over the keys of its packets
 * (hosts, their /8, /16, /24 or /32, /48, /64 networks, ports, IP protocols and
 * L3 types). A tcpdump filter built from host/net/port/portrange/proto primitives
 * is compiled into a predicate over those keys (log_pred.c); a block whose filter
 * says the predicate cannot hold is not read. Bloom filters only err towards
 * "may hold", and a block holding a packet the index cannot describe (an IP
 * header cut short, a TCP/UDP/SCTP header cut inside its ports, an ARP message
 * cut before its target) is marked to be read for every query, so the blocks skipped
 * never hold a packet the BPF filter would match: libpcap still filters every
 * packet read, so the answer is tcpdump's.
 */
#ifndef RW_LOG_KEYS_H
#define RW_LOG_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log_block.h"
#include "rw_pkt.h"

/* Key kinds: the first byte of a key (docs/log-format.md defines every key). */
enum {
    LOG_KEY_HOST4 = 1, /* 4 address bytes */
    LOG_KEY_NET4 = 2,  /* prefix length (8, 16, 24), 4 address bytes with host bits 0 */
    LOG_KEY_HOST6 = 3, /* 16 address bytes */
    LOG_KEY_NET6 = 4,  /* prefix length (32, 48, 64), 16 address bytes with host bits 0 */
    LOG_KEY_PORT = 5,  /* 2 bytes, big-endian: a TCP, UDP or SCTP source or destination */
    LOG_KEY_PROTO = 6, /* 1 byte: the IP protocol (IPv6: after the extension headers, and
                          the fixed header's next header) */
    LOG_KEY_L3 = 7,    /* 2 bytes, big-endian: the ethertype of IPv4, IPv6, ARP, RARP */
};

#define LOG_KEYS_VERSION 2    /* 1: a plain Bloom filter over FNV-1a hashes (never released) */
#define LOG_KEYS_ALL     0x01 /* flags: a packet the index cannot describe; always read */

/* A key is a 64-bit head, type << 40 | prefix length << 32 | value (an IPv4
 * address or network, a port, a protocol, an ethertype; prefix length 32 for an
 * IPv4 host, 0 where there is none), plus for IPv6 the 16 address bytes (the
 * head's value 0, prefix length 128 for a host). Its hash, which the filters
 * hold: fmix64 (murmur3's finaliser) of head ^ LOG_KEY_SEED, then for IPv6 two
 * more rounds, xoring in each half of the address read big-endian; the low 32
 * bits. Written out here because its value is part of the format (it must never
 * change with the build, issue 10); docs/log-format.md says the same. */
#define LOG_KEY(type, plen, value)                                                                 \
    ((uint64_t)(type) << 40 | (uint64_t)(plen) << 32 | (uint64_t)(uint32_t)(value))
#define LOG_KEY_SEED 0x72657764u /* "rewd" */
uint32_t log_key_hash(uint64_t head, const uint8_t *addr6);

/* The keys of a network prefix as the index stores them (plen one of the indexed
 * lengths); used by the writer and by the predicate compiler alike. */
uint32_t log_key_net(int family, const uint8_t *addr, unsigned plen);
uint32_t log_key_host(int family, const uint8_t *addr);
uint32_t log_key_port(uint16_t port);
uint32_t log_key_proto(uint8_t proto);
uint32_t log_key_l3(uint16_t ethertype);

/* Adds one packet's keys to the block under construction (p from rw_pkt_decode,
 * ip its result); the builder calls it for the first packet of each flow in the
 * block (and every non-IP packet). RW_ENOMEM: the block is then marked LOG_KEYS_ALL (read by every
 * query), so the index stays sound and the caller may go on. */
int log_keys_add(struct log_block_builder *b, const struct rw_pkt *p, bool ip, const uint8_t *frame,
                 size_t len);
void log_keys_reset(struct log_block_builder *b);
/* What else than the flow a packet's keys depend on (the builder's flow set keeps
 * them, so that a packet differing only there adds its keys): whether its ports
 * are whole (1), cut (-1) or absent (0), and IPv6's next header past a fragment
 * header (-1: none). */
int log_keys_ports(const struct rw_pkt *p, size_t len);
int log_keys_frag6_next(const struct rw_pkt *p, const uint8_t *frame, size_t len);
void log_keys_free(struct log_block_builder *b);

/* The stored filter of the builder's block (malloc'd). RW_ENOMEM. */
int log_keys_build(const struct log_block_builder *b, uint8_t **out, size_t *out_len);
/* Structural check of a stored filter. */
bool log_keys_valid(const uint8_t *v, size_t len);

/* A compiled predicate: a tree of keys under and/or; "true" where the index
 * cannot say (a negation, a prefix shorter than /8). */
enum log_pred_op { LOG_PRED_TRUE, LOG_PRED_KEY, LOG_PRED_AND, LOG_PRED_OR };
struct log_pred {
    enum log_pred_op op;
    uint32_t key;
    struct log_pred *a, *b;
};

/* True when the block whose filter is v may hold a packet for which p holds; an
 * invalid filter answers true (read the block rather than miss it). */
bool log_keys_may_match(const struct log_pred *p, const uint8_t *v, size_t len);

#endif
