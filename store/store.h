/*
 * store.h - the state store: NF workers keep all their state here, so that a
 * replacement or a clone can take over a failed or slow one (design.md: Invariants, store.md).
 *
 * Every mutating op (and every read whose result must be the same at replay)
 * carries an op identity (vertex, clock, seq). The store applies an op once and
 * records its result; a repeat of the same identity returns the recorded result
 * and changes nothing (emulation). That is what makes replaying logged packets
 * through an NF safe.
 *
 * A `struct store` is one open backend (an LMDB environment, a Redis address, an
 * in-process map); a `struct store_client` is one worker's handle on it, bound to
 * a (vertex, slot). Blind updates are queued on the client and applied in batches;
 * ops whose result is used apply the queue and themselves at once. A batch is all
 * or nothing and carries the slot's store watermark.
 *
 * Errors: functions return STORE_OK or a negative STORE_E* code (rw_error.h); the
 * message is in store_client_errmsg() (or the struct rw_err given to the open
 * functions). Any op that sends a batch may also fail with the batch's answer:
 * STORE_EBACKEND, STORE_ESTALLED (Redis), STORE_EFULL, STORE_EFENCED,
 * STORE_ETRIMMED, STORE_ECONFLICT, STORE_ECORRUPT, STORE_ENOMEM; a batch is all or
 * nothing, so a failed one changed nothing and its queued ops are dropped.
 */
#ifndef RW_STORE_H
#define RW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rw_common.h"

/* The store's codes (STORE_E*, -101...) are rows of the one table in rw_error.h:
 * distinct from RW_E* so a caller can tell a store refusal from an I/O error. */
enum { STORE_OK = RW_OK };

enum store_scope {
    STORE_SHARED = 0, /* any slot of the vertex may change it (port pool, counters) */
    STORE_FLOW = 1    /* owned by the slot that created it; others are refused */
};

#define STORE_KEY_MAX   200   /* key bytes */
#define STORE_VAL_MAX   65536 /* value bytes */
#define STORE_SLOT_MAX  4096  /* slots are 0..STORE_SLOT_MAX-1 */
#define STORE_BATCH_DEF 256   /* queued ops that trigger a batch */

/* A key is (vertex of the client, scope, object, bytes). */
struct store_key {
    uint8_t scope;     /* enum store_scope */
    uint16_t object;   /* which table of the NF (NAT map, port pool...) */
    const void *bytes; /* key bytes within the object */
    size_t len;        /* <= STORE_KEY_MAX */
};

/* Op identity within the client's vertex: the packet's clock and the index of the
 * op among the ops that packet issued in this NF. */
struct store_opid {
    uint64_t clock;
    uint32_t seq;
};

struct store;
struct store_client;

/* Opens `lmdb:PATH[?map=MiB]`, `redis://[:PASSWORD@]HOST:PORT[/DB]` or `mem:`.
 * STORE_EURL: not understood; STORE_EBACKEND: cannot open or reach it (the message
 * never shows a password); STORE_EFULL, STORE_ENOMEM, STORE_EINVAL (NULL). */
int store_open(const char *url, struct store **st, struct rw_err *err);
void store_close(struct store *st);

/* A handle bound to (vertex, slot) that joins the slot's current epoch: a clone
 * attaches beside the instance it shadows without fencing it. STORE_EINVAL (bad
 * slot), STORE_ENOMEM, STORE_EBACKEND: no client is left open. */
int store_client_open(struct store *st, uint32_t vertex, uint16_t slot, struct store_client **c,
                      struct rw_err *err);
/* Closes without flushing: queued ops not flushed are dropped. */
void store_client_close(struct store_client *c);
const char *store_client_errmsg(const struct store_client *c);
/* Queued ops that trigger a batch (1..65536); STORE_EINVAL out of range (unchanged). */
int store_client_set_batch(struct store_client *c, unsigned n);

/* Turns the per-flow cache on with about n entries (0: off, the default). The
 * cache answers reads with an id and sync increments of STORE_FLOW objects that
 * this client already knows, without a round trip: a read queues nothing (a
 * slot's reads of its own per-flow objects are not recorded, see
 * store_client_asof), an increment is queued blind, so the store still applies
 * and records it. With the cache on, a client must not repeat an op identity
 * itself (replays run on a fresh client). STORE_EINVAL, STORE_ENOMEM: the cache
 * is as it was. */
int store_client_cache(struct store_client *c, unsigned n);

/* Makes the client read its slot's per-flow objects as of just before clock
 * from: what a replay of the slot's packets from there needs (a replacement
 * replays from W + 1, or from 0 when W is 0; a recovery re-runs upstream NFs
 * from the same clock), when the store may already hold later writes to them
 * (the failed worker went past W, the live upstream worker is past it). Reads
 * of a slot's own per-flow objects are never recorded (that is what makes them
 * cost what a local read costs); instead every write to one keeps the object's
 * value before it in its op record, and this call gathers, per object, the
 * value before its first write at a clock from `from` on. The client then
 * answers reads of those objects from that overlay, kept current by its own
 * writes (emulated or not). Call it before the client's first op. STORE_EINVAL
 * (a backend without it), STORE_ENOMEM, STORE_EBACKEND, STORE_ESTALLED,
 * STORE_ECORRUPT: the client reads the store as before. */
int store_client_asof(struct store_client *c, uint64_t from);
/* Says whether the client's slot is the only one that changes the objects of
 * its vertex (its NF runs one instance). Its shared objects are then as much its
 * own as its per-flow ones, as CHC treats state that one instance uses: cached,
 * read without a record, written with the value before in the record, read as
 * of a clock in a replay. Lists are not: pop stays a recorded op. A vertex with
 * several slots must not set it (a read's answer would not be reproduced).
 * STORE_EINVAL only for a NULL client. */
int store_client_sole(struct store_client *c, bool sole);
/* Moves from's overlay (and its clock) to c, a new client of the same
 * (vertex, slot): a replay that must open a new client midway (the slot was
 * fenced) goes on from where it was. STORE_EINVAL (NULL, another slot). */
int store_client_asof_move(struct store_client *c, struct store_client *from);
/* Takes back what the packet (clock, sub) wrote to the overlay, before it is run
 * again (its ops were dropped with a fenced batch). */
void store_client_asof_undo(struct store_client *c, uint64_t clock, uint16_t sub);

struct store_stats {
    uint64_t batches;    /* batches handed to the backend */
    uint64_t ops;        /* ops in them */
    uint64_t cache_hits; /* ops answered by the per-flow cache */
};
void store_client_stats(const struct store_client *c, struct store_stats *s);

/* Reads. With id, a repeat returns what the first read saw: from its record
 * (a shared object, or a per-flow one found absent), or, for a per-flow object
 * of the client's slot, by reading it again as of the same point (not recorded:
 * see store_client_asof); with id NULL it is a plain read of the current value. STORE_EINVAL (bad
 * key), STORE_ETOOBIG (*len says how big; the read is recorded), STORE_EOWNER,
 * STORE_ETYPE, or a batch's answer. */
int store_get(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              void *buf, size_t cap, size_t *len, bool *found);
int store_get_int(struct store_client *c, const struct store_opid *id, const struct store_key *k,
                  int64_t *v, bool *found);

/* Blind updates: queued, applied with the next batch, sync op or flush.
 * STORE_EINVAL (bad key or value: not queued), or, when the op fills a batch, that
 * batch's answer (STORE_EREFUSED for a refusal of an op queued before). */
int store_put(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              const void *val, size_t len);
int store_del(struct store_client *c, const struct store_opid *id, const struct store_key *k);
int store_push(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               const void *val, size_t len);

/* Adds delta to an integer object (absent counts as 0). With result NULL the op is
 * blind (queued); otherwise it is applied now and *result is the new value.
 * As store_put when blind; else also STORE_EOWNER, STORE_ETYPE, STORE_EREFUSED. */
int store_incr(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               int64_t delta, int64_t *result);
int store_decr(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               int64_t delta, int64_t *result);

/* Removes the head of a list (FIFO with store_push); *found is false when empty.
 * Errors as store_get. */
int store_pop(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              void *buf, size_t cap, size_t *len, bool *found);

/* Sets k to nv if its bytes equal expect (expect NULL: if k is absent). Errors as
 * store_get (but not STORE_ETOOBIG). */
int store_cas(struct store_client *c, const struct store_opid *id, const struct store_key *k,
              const void *expect, size_t elen, const void *nv, size_t nlen, bool *swapped);

/* Fills buf with a generated value (0 or negative error). */
typedef int (*store_gen_fn)(void *arg, void *buf, size_t cap, size_t *len);

/* Returns the value recorded for id; when none is recorded, calls gen once and
 * records its value, unless another instance recorded one first (then that one).
 * gen's error (nothing recorded), STORE_ETOOBIG, or a batch's answer. */
int store_nondet(struct store_client *c, const struct store_opid *id, store_gen_fn gen, void *arg,
                 void *buf, size_t cap, size_t *len);

/* Says every op of packets with clock <= clock has been issued on this client; the
 * next batch records it as the slot's watermark (a clock below the last one
 * given is ignored). STORE_EINVAL only for a NULL client. */
int store_done(struct store_client *c, uint64_t clock);
/* Applies every queued op (and the watermark) and waits for the result: a batch's
 * answer, STORE_EREFUSED when one of the ops was refused. */
int store_flush(struct store_client *c);

/* Called once every batch queued before store_flush_async is applied (rc 0) or
 * when that cannot be known (the first refusal, or STORE_EBACKEND). */
typedef void (*store_flush_cb)(void *arg, int rc);

/* Redis only: blind batches go over an async connection on a libuv loop (the
 * caller runs it) and never wait for the server. Sync ops and store_flush still
 * block, on the client's other connection, after resending every batch not yet
 * acknowledged (applied or emulated: the order of the client's ops holds). The
 * process must ignore SIGPIPE. Other backends: STORE_EINVAL. */
struct uv_loop_s;
int store_client_uv(struct store_client *c, struct uv_loop_s *loop);
/* Sends the queue and returns at once; cb runs from the loop when it is applied
 * (or at once, from this call, when nothing is in flight). Backends without uv
 * mode flush synchronously and call cb before returning. */
int store_flush_async(struct store_client *c, store_flush_cb cb, void *arg);

/* Highest clock whose ops are all applied for (client's vertex, slot); 0 if none.
 * STORE_EINVAL (bad slot), STORE_EBACKEND, STORE_ESTALLED, STORE_ECORRUPT. */
int store_watermark(struct store_client *c, uint16_t slot, uint64_t *w);

/* Ownership. claim: a new instance takes the client's slot over and fences every
 * client attached before (a zombie). transfer: every object owned by from is owned
 * by to, in O(1) (one slot-table entry), and from's clients are fenced. move: one
 * per-flow object goes to another slot (scaling); only its owner may move it.
 * STORE_EINVAL (bad slot, a slot already transferred), STORE_EOWNER (move: not
 * the owner), STORE_EFENCED, STORE_EBACKEND, STORE_ESTALLED: ownership unchanged. */
int store_claim(struct store_client *c);
int store_transfer(struct store_client *c, uint16_t from, uint16_t to);
int store_move(struct store_client *c, const struct store_opid *id, const struct store_key *k,
               uint16_t to);

/* Forgets the op records of the client's vertex with clock < g (the trim
 * watermark G); later ops of that vertex below g fail with STORE_ETRIMMED.
 * STORE_EBACKEND, STORE_ESTALLED, STORE_EFULL: one transaction, so nothing is
 * forgotten. */
int store_trim(struct store_client *c, uint64_t g);

/* A store holds one run's state: op records, watermarks and objects of two
 * runs would mix (the second meets the first's records and trusts them). Binds
 * an open store to the run described by `run` (a line saying which run: it is
 * shown to whoever meets the store later). A store that holds any state, bound
 * or written before binding existed, is refused with STORE_EINUSE and a message
 * that names it and says what to do; with force its rewind state is cleared
 * first (nothing else the database holds). Call it once, before any worker
 * opens the store. */
int store_bind_run(struct store *st, const char *run, bool force, struct rw_err *e);

/* ---- reading a vertex's objects back (audits: rewind run's state check) ---- */

enum store_obj_type {
    STORE_T_BYTES = 's', /* store_put / store_cas */
    STORE_T_INT = 'i',   /* store_incr */
    STORE_T_LIST = 'l'   /* store_push / store_pop */
};

/* One live object as store_scan shows it. Pointers are valid during the call
 * only. A list is shown once per element, head first (val, len: the element;
 * elem: its place from the head; nelem: the list's length), and an empty list
 * once with nelem 0 and len 0. */
struct store_obj {
    uint8_t scope;   /* enum store_scope */
    uint16_t object; /* as in struct store_key */
    const void *key; /* key bytes within the object */
    size_t klen;
    uint8_t type;    /* enum store_obj_type */
    int64_t i;       /* STORE_T_INT: the value */
    const void *val; /* STORE_T_BYTES: the value; STORE_T_LIST: one element */
    size_t len;
    uint64_t elem, nelem; /* STORE_T_LIST */
};

/* Called once per object (per list element); nonzero stops the scan. It must not
 * call the store. */
typedef int (*store_scan_fn)(void *arg, const struct store_obj *o);

/* Calls fn for every live object of the client's vertex, both scopes and every
 * slot's, from one consistent view of the store, ordered by scope, object, key
 * length, key bytes on mem and LMDB (Redis: its keys' byte order, and one view only
 * when nothing writes, as at the end of a run). Only what NFs stored: never op records,
 * watermarks, the slot table or the trim mark. Ops queued on c are not applied
 * first (store_flush them). Reads only: the store is unchanged whatever happens.
 * Returns STORE_OK once every object was shown, fn's first nonzero return (the
 * scan stops there), or a STORE_E* error, after which fn may have seen only some
 * objects: a caller must treat what it gathered as incomplete. */
int store_scan(struct store_client *c, store_scan_fn fn, void *arg);

#endif
