/*
 * log_keys.c - the per-block host/port/protocol filter (see log_keys.h).
 *
 * Stenographer keeps a sorted index file per protocol, port and address; each
 * query then reads every index file of the window. Here the same keys go into one
 * small Bloom filter per block, stored beside the flow filter and walked in clock
 * order with one LMDB cursor: a narrow query reads a few KB of filters per MB of
 * packets and then only the blocks that may hold its answer.
 *
 * Keys are gathered per packet, but a run of packets of one flow adds them once
 * (the last flow is remembered), and a block's keys are kept in an open-addressed
 * set of their hashes, so the filter is sized by distinct keys, not packets.
 */
#include "log_keys.h"

#include <stdlib.h>
#include <string.h>

#define KEYS_PROBES   4
#define KEYS_MIN_LOG2 9  /* 512 bits */
#define KEYS_MAX_LOG2 17 /* 128 Kibit = 16 KiB */
#define KEYS_HDR      4  /* version | flags | probes | log2(bits) */

uint32_t log_key_hash(const uint8_t *key, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t log_key_net(int family, const uint8_t *addr, unsigned plen)
{
    uint8_t k[18] = {family == 4 ? LOG_KEY_NET4 : LOG_KEY_NET6, (uint8_t)plen};
    size_t alen = family == 4 ? 4 : 16;
    for (size_t i = 0; i < alen; i++) {
        unsigned bits = plen > 8 * i ? plen - 8 * (unsigned)i : 0;
        uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
        k[2 + i] = addr[i] & mask;
    }
    return log_key_hash(k, 2 + alen);
}

uint32_t log_key_host(int family, const uint8_t *addr)
{
    uint8_t k[17] = {family == 4 ? LOG_KEY_HOST4 : LOG_KEY_HOST6};
    size_t alen = family == 4 ? 4 : 16;
    memcpy(k + 1, addr, alen);
    return log_key_hash(k, 1 + alen);
}

uint32_t log_key_port(uint16_t port)
{
    uint8_t k[3] = {LOG_KEY_PORT, (uint8_t)(port >> 8), (uint8_t)port};
    return log_key_hash(k, 3);
}

uint32_t log_key_proto(uint8_t proto)
{
    uint8_t k[2] = {LOG_KEY_PROTO, proto};
    return log_key_hash(k, 2);
}

uint32_t log_key_l3(uint16_t ethertype)
{
    uint8_t k[3] = {LOG_KEY_L3, (uint8_t)(ethertype >> 8), (uint8_t)ethertype};
    return log_key_hash(k, 3);
}

/* ---- the block's key set ---- */

static int set_grow(struct log_block_builder *b)
{
    size_t ncap = b->keys_cap ? b->keys_cap * 2 : 1024;
    uint32_t *n = calloc(ncap, sizeof(*n));
    if (!n)
        return RW_ENOMEM;
    for (size_t i = 0; i < b->keys_cap; i++) {
        uint32_t h = b->keys[i];
        if (!h)
            continue;
        size_t j = h & (ncap - 1);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = h;
    }
    free(b->keys);
    b->keys = n;
    b->keys_cap = ncap;
    return 0;
}

/* Slot value 0 means empty, so the hash 0 is kept as a flag. */
static int set_add(struct log_block_builder *b, uint32_t h)
{
    if (!h) {
        b->key_zero = true;
        return 0;
    }
    if (2 * (b->nkeys + 1) > b->keys_cap && set_grow(b))
        return RW_ENOMEM;
    size_t j = h & (b->keys_cap - 1);
    while (b->keys[j]) {
        if (b->keys[j] == h)
            return 0;
        j = (j + 1) & (b->keys_cap - 1);
    }
    b->keys[j] = h;
    b->nkeys++;
    return 0;
}

static const unsigned NET4_LENS[] = {8, 16, 24};
static const unsigned NET6_LENS[] = {32, 48, 64};

static int add_addr(struct log_block_builder *b, int family, const uint8_t *a)
{
    int rc = set_add(b, log_key_host(family, a));
    const unsigned *lens = family == 4 ? NET4_LENS : NET6_LENS;
    for (int i = 0; i < 3 && !rc; i++)
        rc = set_add(b, log_key_net(family, a, lens[i]));
    return rc;
}

static int add_ip(struct log_block_builder *b, const struct rw_pkt *p, const uint8_t *frame)
{
    int rc = set_add(b, log_key_l3(p->ethertype));
    if (!rc)
        rc = add_addr(b, p->family, p->src);
    if (!rc)
        rc = add_addr(b, p->family, p->dst);
    if (!rc)
        rc = set_add(b, log_key_proto(p->proto));
    if (!rc && p->family == 6) /* what `ip6 proto N` reads: the fixed header's */
        rc = set_add(b, log_key_proto(frame[p->l3 + 6]));
    if (!rc && p->sport)
        rc = set_add(b, log_key_port(p->sport));
    if (!rc && p->dport)
        rc = set_add(b, log_key_port(p->dport));
    return rc;
}

/* ARP and RARP: `host X` also matches their sender and target protocol
 * addresses (libpcap reads them at fixed offsets of an Ethernet/IPv4 ARP). */
static int add_arp(struct log_block_builder *b, const struct rw_pkt *p, const uint8_t *frame,
                   size_t len)
{
    int rc = set_add(b, log_key_l3(p->ethertype));
    if (!rc && len >= (size_t)p->l3 + 28) {
        rc = add_addr(b, 4, frame + p->l3 + 14);
        if (!rc)
            rc = add_addr(b, 4, frame + p->l3 + 24);
    }
    return rc;
}

int log_keys_add(struct log_block_builder *b, const struct rw_pkt *p, bool ip,
                 const uint8_t *frame, size_t len)
{
    if (b->keys_all)
        return 0;
    int rc = 0;
    if (ip) {
        struct rw_flow f;
        rw_flow_of_pkt(p, &f);
        /* The proto key of IPv6 also reads the fixed header, which the flow does
         * not hold: only IPv4 runs are skipped on the flow alone. */
        if (b->key_last_set && p->family == 4 && memcmp(&f, &b->key_last, sizeof(f)) == 0)
            return 0;
        rc = add_ip(b, p, frame);
        b->key_last = f;
        b->key_last_set = !rc;
    } else if (p->ethertype == 0x0800 || p->ethertype == 0x86dd) {
        b->keys_all = true; /* an IP header cut short: what it holds is unknown here */
    } else if (p->ethertype == 0x0806 || p->ethertype == 0x8035) {
        rc = add_arp(b, p, frame, len);
    }
    if (rc)
        b->keys_all = true;
    return rc;
}

void log_keys_reset(struct log_block_builder *b)
{
    if (b->nkeys)
        memset(b->keys, 0, b->keys_cap * sizeof(*b->keys));
    b->nkeys = 0;
    b->key_zero = false;
    b->keys_all = false;
    b->key_last_set = false;
}

void log_keys_free(struct log_block_builder *b)
{
    free(b->keys);
    b->keys = NULL;
    b->keys_cap = b->nkeys = 0;
}

/* ---- the stored filter ---- */

static uint32_t second_hash(uint32_t h)
{
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    h *= 0x297a2d39u;
    h ^= h >> 15;
    return h | 1u;
}

static void set_bits(uint8_t *bits, unsigned lg, uint32_t h)
{
    uint32_t mask = (1u << lg) - 1, h2 = second_hash(h);
    for (uint32_t k = 0; k < KEYS_PROBES; k++) {
        uint32_t bit = (h + k * h2) & mask;
        bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
}

int log_keys_build(const struct log_block_builder *b, uint8_t **out, size_t *out_len)
{
    size_t n = b->nkeys + (b->key_zero ? 1 : 0);
    unsigned lg = KEYS_MIN_LOG2;
    while (lg < KEYS_MAX_LOG2 && (1ull << lg) < 12ull * n)
        lg++;
    size_t bytes = ((size_t)1 << lg) / 8;
    uint8_t *v = calloc(1, KEYS_HDR + bytes);
    if (!v)
        return RW_ENOMEM;
    v[0] = LOG_KEYS_VERSION;
    v[1] = b->keys_all ? LOG_KEYS_ALL : 0;
    v[2] = KEYS_PROBES;
    v[3] = (uint8_t)lg;
    for (size_t i = 0; i < b->keys_cap; i++)
        if (b->keys[i])
            set_bits(v + KEYS_HDR, lg, b->keys[i]);
    if (b->key_zero)
        set_bits(v + KEYS_HDR, lg, 0);
    *out = v;
    *out_len = KEYS_HDR + bytes;
    return 0;
}

bool log_keys_valid(const uint8_t *v, size_t len)
{
    return len >= KEYS_HDR && v[0] == LOG_KEYS_VERSION && (v[1] & ~LOG_KEYS_ALL) == 0 &&
           v[2] >= 1 && v[2] <= 16 && v[3] >= KEYS_MIN_LOG2 && v[3] <= KEYS_MAX_LOG2 &&
           len == KEYS_HDR + ((size_t)1 << v[3]) / 8;
}

static bool has_key(const uint8_t *v, uint32_t h)
{
    unsigned lg = v[3];
    uint32_t mask = (1u << lg) - 1, h2 = second_hash(h);
    for (uint32_t k = 0; k < v[2]; k++) {
        uint32_t bit = (h + k * h2) & mask;
        if (!(v[KEYS_HDR + bit / 8] & (1u << (bit % 8))))
            return false;
    }
    return true;
}

static bool eval(const struct log_pred *p, const uint8_t *v)
{
    switch (p->op) {
    case LOG_PRED_KEY:
        return has_key(v, p->key);
    case LOG_PRED_AND:
        return eval(p->a, v) && eval(p->b, v);
    case LOG_PRED_OR:
        return eval(p->a, v) || eval(p->b, v);
    default:
        return true;
    }
}

bool log_keys_may_match(const struct log_pred *p, const uint8_t *v, size_t len)
{
    if (!p || !log_keys_valid(v, len) || (v[1] & LOG_KEYS_ALL))
        return true;
    return eval(p, v);
}
