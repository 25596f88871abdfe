/*
 * rw_common.h - the small set of types every part of rewind shares.
 *
 * A packet's identity in rewind is its logical clock, handed out by the root
 * splitter once per input packet, plus a sub-index for the 0..n packets an NF
 * emits for it. Everything downstream (the log, the store's op records, the
 * duplicate filters, the verifier) keys on (clock, sub), so the metadata struct
 * lives here rather than in any one part.
 *
 * Errors: public functions return 0 or a negative RW_E* code and, when given a
 * struct rw_err, fill in a message that names what failed and where. Nothing
 * deep inside a part prints; the command line decides what the operator sees.
 */
#ifndef RW_COMMON_H
#define RW_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "rw_error.h"

/* Packet flags carried with the metadata (design.md: A packet's life). */
enum rw_pkt_flag {
    RW_F_REPLAY = 1u << 0,      /* re-sent from the log to a recovering instance */
    RW_F_LAST_REPLAY = 1u << 1, /* last packet of a replay */
    RW_F_CLONE = 1u << 2,       /* replicated to a straggler's clone */
    RW_F_MOVE_LAST = 1u << 3,   /* last packet of moved flows to the old instance */
    RW_F_MOVE_FIRST = 1u << 4,  /* first packet of moved flows to the new instance */
    RW_F_REPEAT = 1u << 5,      /* in a log: the previous record's (clock, sub) again, a
                                   duplicate kept on purpose (a run with --no-dedup) */
    RW_F_MARK = 1u << 15,       /* not a packet: its sender has sent everything below
                                   meta.clock on this link (progress for merges) */
};

/* Metadata that travels with a packet through the chain. */
struct rw_meta {
    uint64_t clock; /* logical clock from the root */
    uint64_t ts_ns; /* root arrival time, ns since the epoch */
    uint16_t sub;   /* output index for packets an NF emits for one input */
    uint16_t port;  /* DPDK port the packet arrived on */
    uint16_t flags; /* enum rw_pkt_flag */
    uint16_t slot;  /* target slot for replays */
};

/* How durable the root's log is before output that depends on it may leave:
 * the chain file's `durability`, the log's commit policy. */
enum rw_durability {
    RW_DUR_NONE,    /* D advances at append: nothing waits for storage */
    RW_DUR_PROCESS, /* committed to the page cache: survives a process crash */
    RW_DUR_POWER,   /* fsync'd: survives power loss */
};

#define RW_ERR_MSG_MAX 512

struct rw_err {
    int code;
    char msg[RW_ERR_MSG_MAX];
};

/* Records code and a printf-style message in e (which may be NULL); returns code
 * so callers can write `return rw_errf(e, RW_EIO, "...")`. */
int rw_errf(struct rw_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes e->msg with more context ("segment 3: " + old message); returns
 * e->code (RW_OK for a NULL e), the message cut to RW_ERR_MSG_MAX. */
int rw_err_prefix(struct rw_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic nanoseconds, for group-commit ages and pacing (never stored). */
uint64_t rw_now_ns(void);

/* Big-endian u64 keys sort in numeric order under LMDB's default memcmp. */
static inline void rw_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t rw_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Composing a word from bytes, rather than reading the bytes through a uint32_t
 * pointer, keeps word-wise hashing of byte keys defined C (rw_flow.c). */
static inline uint32_t rw_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
