/*
 * store_int.h - what the client layer (store.c) and the backends share: the
 * queued op format, the result of an applied batch, and the backend vtable.
 *
 * The client layer only queues and dispatches; the semantics (emulation,
 * ownership, fencing, watermark, trim) live once in C for the key-value backends
 * (store_kv.c, used by mem and LMDB) and once in Lua for Redis, and the
 * conformance suite holds the two to the same behaviour.
 */
#ifndef RW_STORE_INT_H
#define RW_STORE_INT_H

#include "store.h"

enum store_opkind {
    SOP_GET = 1, /* bytes of an 's' object */
    SOP_GETI,    /* value of an 'i' object */
    SOP_PUT,
    SOP_DEL,
    SOP_PUSH,
    SOP_INCR,
    SOP_POP,
    SOP_CAS,
    SOP_NDLOOK, /* read a nondet record, record nothing */
    SOP_NDSET,  /* record a nondet value unless one is recorded */
    SOP_MOVE,
    SOP_NOTE, /* records a read's answer unless it is recorded: kind | found << 8 in
               * to, the int in delta, the bytes in a (store.c: view_read) */
};

/* One queued op; key and argument bytes live in the batch's byte arena. */
struct store_op {
    uint8_t kind;
    uint8_t scope;
    uint8_t has_id;
    uint8_t has_a; /* cas: expect given (else "expect absent") */
    uint8_t owned; /* the client's slot alone changes it (store.c: owned) */
    uint16_t object;
    uint16_t to; /* move target slot */
    uint32_t seq;
    uint64_t clock;
    int64_t delta;
    uint32_t koff, klen, aoff, alen, boff, blen;
};

struct store_batch {
    struct store_op *ops;
    size_t n, cap;
    uint8_t *bytes;
    size_t nb, capb;
};

/* Result of the last op of a batch; buf is owned by the client and grows. */
struct store_res {
    bool found;
    bool swapped;
    bool recorded;  /* answered from the op's record */
    uint64_t stamp; /* reads: the clock of the last op with an id that wrote it */
    int64_t i;
    uint8_t *buf;
    size_t len, cap;
};

struct store_client;
struct store_asof;

/* A write to a per-flow object as its op record keeps it: the op identity and
 * the object's value before the op (what a read as of an earlier clock sees). */
struct store_pre {
    uint64_t clock;
    uint32_t seq;
    uint8_t scope;
    uint16_t object;
    const uint8_t *key;
    size_t klen;
    uint8_t type;   /* 's', 'i' (the value before), or 0: absent before */
    uint16_t owner; /* its owner slot before (when type is not 0) */
    int64_t i;
    const uint8_t *val;
    size_t len;
};
typedef int (*store_pre_fn)(void *arg, const struct store_pre *p);

struct store_backend {
    int (*open)(struct store *st, const char *rest, struct rw_err *e);
    void (*close)(struct store *st);
    int (*client_open)(struct store_client *c);
    void (*client_close)(struct store_client *c);
    /* Applies b atomically with watermark wm (0: none). sync: wait and fill res with
     * the last op's result; otherwise the backend may return before it is applied. */
    int (*apply)(struct store_client *c, const struct store_batch *b, uint64_t wm, bool sync,
                 struct store_res *res);
    /* Waits until every batch handed to apply is applied. */
    int (*wait)(struct store_client *c);
    int (*claim)(struct store_client *c);
    int (*transfer)(struct store_client *c, uint16_t from, uint16_t to);
    int (*watermark)(struct store_client *c, uint16_t slot, uint64_t *w);
    int (*trim)(struct store_client *c, uint64_t g);
    /* Optional (NULL: the backend applies batches synchronously). */
    int (*uv)(struct store_client *c, void *loop);
    int (*flush_async)(struct store_client *c, store_flush_cb cb, void *arg);
    /* store_bind_run, on a client of vertex 0 (for its connection). */
    int (*bind_run)(struct store_client *c, const char *run, bool force);
    /* store_scan: the client's vertex's live objects, one snapshot. */
    int (*scan)(struct store_client *c, store_scan_fn fn, void *arg);
    /* Optional: a read with an id answered from a read-only view, writing
     * nothing (the client queues an SOP_NOTE when the answer must be recorded). Fills res as
     * apply's sync op would, with recorded set when the answer is the op's record. NULL: reads go
     * through apply. */
    int (*read)(struct store_client *c, const struct store_op *o, const uint8_t *key,
                struct store_res *res);
    /* store_client_asof: calls fn for every write to a per-flow object that the
     * client's slot made at a clock from w on, with the object's value before it,
     * in (clock, seq) order, from one snapshot. */
    int (*since)(struct store_client *c, uint64_t w, store_pre_fn fn, void *arg);
};

struct store {
    const struct store_backend *be;
    void *impl;
};

struct store_client {
    struct store *st;
    uint32_t vertex;
    uint16_t slot;
    uint64_t epoch; /* slot epoch seen at attach or claim */
    unsigned batch_max;
    uint64_t done;      /* watermark to send with the next batch */
    uint64_t done_sent; /* last watermark handed to the backend */
    struct store_batch q;
    struct store_res res;
    struct rw_err err;
    struct store_cache *cache; /* NULL when off */
    uint64_t qkeys[16];        /* keys with an op in q (a Bloom filter) */
    bool sole;                 /* store_client_sole */
    struct store_asof *asof;   /* store_client_asof's overlay, or NULL */
    uint64_t asof_from;        /* and the clock it is as of (just before) */
    struct store_stats stats;
    void *impl;
};

extern const struct store_backend store_be_mem;
extern const struct store_backend store_be_lmdb;
extern const struct store_backend store_be_redis;

/* Sets c->err and returns rc. */
int store_errf(struct store_client *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int store_res_set(struct store_res *r, const void *p, size_t len);

static inline const uint8_t *store_op_key(const struct store_batch *b, const struct store_op *o)
{
    return b->bytes + o->koff;
}

#define STORE_NO_SLOT 0xFFFFu

#endif
