/*
 * log_keys.c - the per-block host/port/protocol filter (see log_keys.h).
 *
 * Stenographer keeps a sorted index file per protocol, port and address; each
 * query then reads every index file of the window. Here the same keys go into one
 * small Bloom filter per block, stored beside the flow filter and walked in clock
 * order with one LMDB cursor: a narrow query reads a few KB of filters per MB of
 * packets and then only the blocks that may hold its answer.
 *
 * Keys are gathered once per flow per block (the block builder keeps its flows as
 * an exact set) and kept in an open-addressed set of their hashes, so the filter
 * is sized by distinct keys, not packets.
 */
#include "log_keys.h"

#include <stdlib.h>
#include <string.h>

#define KEYS_PROBES   4
#define KEYS_MIN_LOG2 9  /* 512 bits */
#define KEYS_MAX_LOG2 17 /* 128 Kibit = 16 KiB */
#define KEYS_HDR      4  /* version | flags | probes | log2(bits) */

static uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint32_t log_key_hash(uint64_t head, const uint8_t *addr6)
{
    uint64_t h = fmix64(head ^ LOG_KEY_SEED);
    if (addr6) {
        uint64_t w0 = 0, w1 = 0;
        for (int i = 0; i < 8; i++) {
            w0 = w0 << 8 | addr6[i];
            w1 = w1 << 8 | addr6[8 + i];
        }
        h = fmix64(fmix64(h ^ w0) ^ w1);
    }
    return (uint32_t)h;
}

static uint32_t be32(const uint8_t *a)
{
    return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

uint32_t log_key_net(int family, const uint8_t *addr, unsigned plen)
{
    if (family == 4)
        return log_key_hash(LOG_KEY(LOG_KEY_NET4, plen, be32(addr) & (~0u << (32 - plen))), NULL);
    uint8_t a[16];
    for (unsigned i = 0; i < 16; i++) {
        unsigned bits = plen > 8 * i ? plen - 8 * i : 0;
        a[i] = addr[i] & (bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits)));
    }
    return log_key_hash(LOG_KEY(LOG_KEY_NET6, plen, 0), a);
}

uint32_t log_key_host(int family, const uint8_t *addr)
{
    if (family == 4)
        return log_key_hash(LOG_KEY(LOG_KEY_HOST4, 32, be32(addr)), NULL);
    return log_key_hash(LOG_KEY(LOG_KEY_HOST6, 128, 0), addr);
}

uint32_t log_key_port(uint16_t port)
{
    return log_key_hash(LOG_KEY(LOG_KEY_PORT, 0, port), NULL);
}

uint32_t log_key_proto(uint8_t proto)
{
    return log_key_hash(LOG_KEY(LOG_KEY_PROTO, 0, proto), NULL);
}

uint32_t log_key_l3(uint16_t ethertype)
{
    return log_key_hash(LOG_KEY(LOG_KEY_L3, 0, ethertype), NULL);
}

/* ---- the block's key set ----
 *
 * Gathering costs per packet what the flow index costs, so it is kept to a few
 * cheap steps (the first packet of each flow in the block only; the builder's
 * exact flow set sees to that): protocols, L3 types and ports set a bit in a
 * bitmap; IPv4 keys are packed into 64-bit values (exact, so a host already in the
 * set says its networks are too) and kept in an open-addressed set hashed by one
 * multiply; IPv6 keys, too long to pack, go into a set of their format hashes.
 * The format hash (log_key_hash) is computed once per distinct key, when the
 * block closes. */

static size_t slot_of(uint64_t v, size_t cap)
{
    return (size_t)((v * 0x9e3779b97f4a7c15ull) >> 40) & (cap - 1);
}

static int v4_grow(struct log_block_builder *b)
{
    size_t ncap = b->v4_cap ? b->v4_cap * 2 : 1024;
    uint64_t *n = calloc(ncap, sizeof(*n));
    if (!n)
        return RW_ENOMEM;
    for (size_t i = 0; i < b->v4_cap; i++) {
        uint64_t v = b->v4[i];
        if (!v)
            continue;
        size_t j = slot_of(v, ncap);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = v;
    }
    free(b->v4);
    b->v4 = n;
    b->v4_cap = ncap;
    return 0;
}

/* 1: added, 0: already there, RW_ENOMEM. Values are never 0 (their type is not). */
static int v4_add(struct log_block_builder *b, uint64_t v)
{
    if (2 * (b->nv4 + 1) > b->v4_cap && v4_grow(b))
        return RW_ENOMEM;
    size_t j = slot_of(v, b->v4_cap);
    for (; b->v4[j]; j = (j + 1) & (b->v4_cap - 1))
        if (b->v4[j] == v)
            return 0;
    b->v4[j] = v;
    b->nv4++;
    return 1;
}

static int v6_grow(struct log_block_builder *b)
{
    size_t ncap = b->keys_cap ? b->keys_cap * 2 : 256;
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

/* An IPv6 key's format hash; slot value 0 means empty, so the hash 0 is a flag. */
static int v6_add(struct log_block_builder *b, uint32_t h)
{
    if (!h) {
        b->key_zero = true;
        return 0;
    }
    if (2 * (b->nkeys + 1) > b->keys_cap && v6_grow(b))
        return RW_ENOMEM;
    size_t j = h & (b->keys_cap - 1);
    for (; b->keys[j]; j = (j + 1) & (b->keys_cap - 1))
        if (b->keys[j] == h)
            return 0;
    b->keys[j] = h;
    b->nkeys++;
    return 0;
}

static const unsigned NET4_LENS[] = {8, 16, 24};
static const unsigned NET6_LENS[] = {32, 48, 64};

static int add_addr(struct log_block_builder *b, int family, const uint8_t *a)
{
    if (family == 4) {
        /* A host's networks go in with it, longest first, so a host already in
         * the set has its networks there, and a network there has its shorter
         * ones: a new host in a known /24 costs two probes. */
        uint32_t v = be32(a);
        int rc = v4_add(b, LOG_KEY(LOG_KEY_HOST4, 32, v));
        for (int i = 2; i >= 0 && rc == 1; i--)
            rc = v4_add(b, LOG_KEY(LOG_KEY_NET4, NET4_LENS[i], v & (~0u << (32 - NET4_LENS[i]))));
        return rc < 0 ? rc : 0;
    }
    int rc = v6_add(b, log_key_host(6, a));
    for (int i = 0; i < 3 && !rc; i++)
        rc = v6_add(b, log_key_net(6, a, NET6_LENS[i]));
    return rc;
}

static void set_bit(uint64_t *map, unsigned i)
{
    map[i / 64] |= 1ull << (i % 64);
}

/* The L3 types the index knows, by bit. */
static const uint16_t L3_TYPES[] = {0x0800, 0x86dd, 0x0806, 0x8035};

static void add_l3(struct log_block_builder *b, uint16_t type)
{
    for (unsigned i = 0; i < 4; i++)
        if (L3_TYPES[i] == type)
            b->l3_map |= (uint8_t)(1u << i);
}

/* Where libpcap's port tests read: the first 4 bytes of a TCP, UDP or SCTP
 * header. 1: all there; -1: the header starts in the frame but is cut inside
 * them (`port 80` may still match on the source port); 0: no header here. */
int log_keys_ports(const struct rw_pkt *p, size_t len)
{
    if ((p->proto != 6 && p->proto != 17 && p->proto != 132) || !p->l4 || p->l4 >= len)
        return 0;
    return len - p->l4 >= 4 ? 1 : -1;
}

/* IPv6: what `ip6 proto N` reads besides the fixed header's next header: the next
 * header of a fragment header right after it (libpcap looks there too). */
int log_keys_frag6_next(const struct rw_pkt *p, const uint8_t *frame, size_t len)
{
    if (p->family != 6 || frame[p->l3 + 6] != 44 || len <= (size_t)p->l3 + 40)
        return -1;
    return frame[p->l3 + 40];
}

static int add_ip(struct log_block_builder *b, const struct rw_pkt *p, const uint8_t *frame,
                  size_t len)
{
    add_l3(b, p->ethertype);
    set_bit(b->proto_map, p->proto);
    if (p->family == 6) { /* what `ip6 proto N` reads: the fixed header's, and past it */
        set_bit(b->proto_map, frame[p->l3 + 6]);
        int nf = log_keys_frag6_next(p, frame, len);
        if (nf >= 0)
            set_bit(b->proto_map, (unsigned)nf);
    }
    int ports = log_keys_ports(p, len);
    if (ports > 0) { /* port 0 is a port too */
        set_bit(b->port_map, p->sport);
        set_bit(b->port_map, p->dport);
    } else if (ports < 0) {
        b->keys_all = true;
    }
    int rc = add_addr(b, p->family, p->src);
    return rc ? rc : add_addr(b, p->family, p->dst);
}

/* ARP and RARP: `host X` also matches their sender and target protocol
 * addresses (libpcap reads them at fixed offsets of an Ethernet/IPv4 ARP). A
 * message cut before the target's address may still match on the sender's. */
static int add_arp(struct log_block_builder *b, const struct rw_pkt *p, const uint8_t *frame,
                   size_t len)
{
    add_l3(b, p->ethertype);
    if (len < (size_t)p->l3 + 28) {
        b->keys_all = len >= (size_t)p->l3 + 18 || b->keys_all;
        return 0;
    }
    int rc = add_addr(b, 4, frame + p->l3 + 14);
    return rc ? rc : add_addr(b, 4, frame + p->l3 + 24);
}

int log_keys_add(struct log_block_builder *b, const struct rw_pkt *p, bool ip, const uint8_t *frame,
                 size_t len)
{
    if (b->keys_all)
        return 0;
    int rc = 0;
    if (ip)
        rc = add_ip(b, p, frame, len);
    else if (p->ethertype == 0x0800 || p->ethertype == 0x86dd)
        b->keys_all = true; /* an IP header cut short: what it holds is unknown here */
    else if (p->ethertype == 0x0806 || p->ethertype == 0x8035)
        rc = add_arp(b, p, frame, len);
    if (rc)
        b->keys_all = true;
    return rc;
}

void log_keys_reset(struct log_block_builder *b)
{
    if (b->nkeys)
        memset(b->keys, 0, b->keys_cap * sizeof(*b->keys));
    if (b->nv4)
        memset(b->v4, 0, b->v4_cap * sizeof(*b->v4));
    memset(b->port_map, 0, sizeof(b->port_map));
    memset(b->proto_map, 0, sizeof(b->proto_map));
    b->l3_map = 0;
    b->nkeys = b->nv4 = 0;
    b->key_zero = false;
    b->keys_all = false;
}

void log_keys_free(struct log_block_builder *b)
{
    free(b->keys);
    free(b->v4);
    b->keys = NULL;
    b->v4 = NULL;
    b->keys_cap = b->nkeys = b->v4_cap = b->nv4 = 0;
}

/* ---- the stored filter ---- */

/* A blocked Bloom filter: a key's four bits all lie in one 64-bit word (the
 * low bits of its hash pick the word, four 6-bit fields of a second mix the
 * bits), so adding or testing a key touches one word. At 12 bits per key about
 * 1.5% false positives, each costing one block read, never a wrong answer. */
static uint32_t second_hash(uint32_t h)
{
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    h *= 0x297a2d39u;
    h ^= h >> 15;
    return h;
}

static uint64_t key_mask(uint32_t h, unsigned probes)
{
    uint32_t h2 = second_hash(h);
    uint64_t m = 0;
    for (unsigned k = 0; k < probes; k++)
        m |= 1ull << ((h2 >> (6 * k)) & 63);
    return m;
}

/* Words are stored little-endian: the filter's bytes do not depend on the host. */
static uint64_t le64(uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

static void set_bits(uint8_t *bits, unsigned lg, uint32_t h)
{
    uint8_t *w = bits + 8 * (h & ((1u << (lg - 6)) - 1));
    uint64_t v;
    memcpy(&v, w, 8);
    v |= le64(key_mask(h, KEYS_PROBES));
    memcpy(w, &v, 8);
}

static unsigned popcount_map(const uint64_t *map, size_t words)
{
    unsigned n = 0;
    for (size_t i = 0; i < words; i++)
        n += (unsigned)__builtin_popcountll(map[i]);
    return n;
}

int log_keys_build(const struct log_block_builder *b, uint8_t **out, size_t *out_len)
{
    size_t words = sizeof(b->port_map) / sizeof(b->port_map[0]);
    size_t n = b->nkeys + (b->key_zero ? 1 : 0) + b->nv4 + popcount_map(b->port_map, words) +
               popcount_map(b->proto_map, 4) + (size_t)__builtin_popcount(b->l3_map);
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
    uint8_t *bits = v + KEYS_HDR;
    for (size_t i = 0; i < b->keys_cap; i++)
        if (b->keys[i])
            set_bits(bits, lg, b->keys[i]);
    if (b->key_zero)
        set_bits(bits, lg, 0);
    for (size_t i = 0; i < b->v4_cap; i++)
        if (b->v4[i])
            set_bits(bits, lg, log_key_hash(b->v4[i], NULL));
    for (size_t w = 0; w < words; w++)
        for (uint64_t m = b->port_map[w]; m; m &= m - 1)
            set_bits(bits, lg, log_key_port((uint16_t)(w * 64 + (unsigned)__builtin_ctzll(m))));
    for (size_t w = 0; w < 4; w++)
        for (uint64_t m = b->proto_map[w]; m; m &= m - 1)
            set_bits(bits, lg, log_key_proto((uint8_t)(w * 64 + (unsigned)__builtin_ctzll(m))));
    for (unsigned i = 0; i < 4; i++)
        if (b->l3_map & (1u << i))
            set_bits(bits, lg, log_key_l3(L3_TYPES[i]));
    *out = v;
    *out_len = KEYS_HDR + bytes;
    return 0;
}

bool log_keys_valid(const uint8_t *v, size_t len)
{
    return len >= KEYS_HDR && v[0] == LOG_KEYS_VERSION && (v[1] & ~LOG_KEYS_ALL) == 0 &&
           v[2] >= 1 && v[2] <= 5 && v[3] >= KEYS_MIN_LOG2 && v[3] <= KEYS_MAX_LOG2 &&
           len == KEYS_HDR + ((size_t)1 << v[3]) / 8;
}

static bool has_key(const uint8_t *v, uint32_t h)
{
    uint64_t m = le64(key_mask(h, v[2])), got;
    memcpy(&got, v + KEYS_HDR + 8 * (h & ((1u << (v[3] - 6)) - 1)), 8);
    return (got & m) == m;
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
