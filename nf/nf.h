/*
 * nf.h - the nf part's API: what an NF of the catalog is written against, and
 * the NF instance the runtimes drive.
 *
 * An NF sees one packet at a time through an nf_env: state ops (with FT, ops on
 * the state store tagged with the packet's clock and the op's sequence, so a
 * re-run is answered from the store's records; without, a local map), output
 * (nf_emit), alerts, statistics and time (the packet's arrival time, never the
 * wall clock). That contract is what makes an NF deterministic, and so
 * replayable. The catalog of NFs is the nfs part; the worker (nfworker), its
 * recovery replay and the in-process harness (nf_local) all run an NF through
 * one type, struct nf_inst, so the three can never differ in how an NF sees a
 * packet.
 */
#ifndef RW_NF_H
#define RW_NF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "rw_common.h"
#include "store.h"

struct chain;
struct chain_node;
struct store;
struct store_key;

/* What the runtime offers an NF while it processes one packet: state ops (the
 * store, tagged with the packet's clock and the op's sequence, or local state in
 * --no-ft mode), output, alerts and time. The state calls return the store's
 * codes (store.h: STORE_EOWNER, STORE_ETOOBIG... and a batch's answer) or, in
 * --no-ft mode, STORE_ENOMEM/STORE_ETYPE/STORE_ETOOBIG from local state; the
 * runtime reports the message with the NF's name and instance. */
struct nf_env;

int nf_get(struct nf_env *env, const struct store_key *k, void *buf, size_t cap, size_t *len,
           bool *found);
/* An integer object (one nf_incr works on); *v is 0 when absent. */
int nf_get_int(struct nf_env *env, const struct store_key *k, int64_t *v, bool *found);
int nf_put(struct nf_env *env, const struct store_key *k, const void *val, size_t len);
int nf_del(struct nf_env *env, const struct store_key *k);
/* Blind when result is NULL. */
int nf_incr(struct nf_env *env, const struct store_key *k, int64_t delta, int64_t *result);
/* Lists (FIFO): push appends (blind); pop removes the head, *found false when empty. */
int nf_push(struct nf_env *env, const struct store_key *k, const void *val, size_t len);
int nf_pop(struct nf_env *env, const struct store_key *k, void *buf, size_t cap, size_t *len,
           bool *found);
/* Emits an output packet for the current input (sub numbers follow emit order).
 * RW_EINVAL: more than 8 for one input, or bigger than the next link's room. */
int nf_emit(struct nf_env *env, const uint8_t *data, uint32_t len, uint32_t wire_len);
/* Raises an alert: a JSON object's members, e.g. "\"host\": \"10.0.0.1\"". Always 0:
 * a run without an alerts file drops them. */
int nf_alert(struct nf_env *env, const char *type, const char *fields_json);
/* Adds delta to one of the instance's named statistics (up to 16 names of up to
 * 23 characters), shown per NF in report.json: drop reasons, malformed packets.
 * Operational counts, not state: they are not in the store, so after a failover a
 * replayed packet may be counted twice. */
int nf_count(struct nf_env *env, const char *name, int64_t delta);
/* The packet's arrival time at the root (ns): an NF's only clock. */
uint64_t nf_now(const struct nf_env *env);

/* Whether more than limit_ns of packet time passed since last_ns. Packet time
 * may step back (a trace out of order): then nothing has gone quiet. */
static inline bool nf_quiet(uint64_t now, uint64_t last_ns, uint64_t limit_ns)
{
    return now > last_ns && now - last_ns > limit_ns;
}
/* The instance's slot: an NF's age queues are per slot. */
uint16_t nf_slot(const struct nf_env *env);

/* ---- bounded state: age queues (age.c) ---- */

/* What a look at an old key of an age queue decided. */
enum nf_age_verdict {
    NF_AGE_KEEP, /* its object is alive: the key goes to the back of the queue */
    NF_AGE_GONE  /* absent, replaced (its ticket differs) or ended by the judge now */
};

/* Judges an old key: KEEP while its object lives; GONE when the object is absent,
 * holds another ticket (it is a later object under the same key), or has expired,
 * in which case the judge ends it now, as the NF ends objects (deletes it, raises
 * its events, gives resources back). It runs inside the current packet's
 * processing: nf_now() is that packet's time, its ops that packet's. */
typedef int (*nf_age_fn)(void *self, struct nf_env *env, const void *key, size_t len,
                         uint64_t ticket, enum nf_age_verdict *v);

struct nf_aging {
    uint16_t object; /* the queue's object id, among the NF's own */
    nf_age_fn judge;
};

/* Puts key (of an object the NF has just created) at the back of the slot's age
 * queue a, after looking at the queue's two oldest keys (a->judge). *ticket is
 * this entry's: keep it in the object, for the judge. What keeps an NF's state
 * bounded by its live flows and hosts on a long run. The state calls' codes (a
 * judge's own error too); the queue is then as the ops issued so far left it,
 * which a re-run of the packet replays. */
int nf_age(struct nf_env *env, const struct nf_aging *a, void *self, const void *key, size_t len,
           uint64_t *ticket);
/* For judges: reads the object k names into obj (size bytes) and says whether it is
 * the one the entry was made for (*current: found, of that size, holding ticket at
 * byte ticket_off). The state calls' codes. */
int nf_age_object(struct nf_env *env, const struct store_key *k, void *obj, size_t size,
                  size_t ticket_off, uint64_t ticket, bool *current);

struct nf_pkt {
    struct rw_meta meta;
    const uint8_t *data;
    uint32_t len, wire_len;
};

/* An NF type of the catalog. Deterministic by contract (design.md: Invariants): output depends
 * only on input packets, state read through nf_*, and nf_now(). The worker hands
 * it its slot's packets in (clock, sub) order, merging several input links by
 * their marks, so timers and cross-flow state see the same sequence in every
 * run. */
struct chain_nf;
struct store_client;

/* ---- auditing an NF's stored state after a run (audit.c) ---- */

/* What an audit hook writes: canonical lines and broken invariants. */
struct nf_audit;

struct nf_audit *nf_audit_new(void); /* NULL: out of memory */
void nf_audit_free(struct nf_audit *a);
/* Adds one line of the canonical summary: a fact about the NF's state that every
 * run on the same input must share, whatever its faults and interleaving (so no
 * value the interleaving picks, like a NAT's external port). Characters that
 * JSON would need escaped become '?'. 0 or RW_ENOMEM. */
int nf_audit_line(struct nf_audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a broken invariant, with what breaks it. 0 or RW_ENOMEM. */
int nf_audit_broken(struct nf_audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sorts the lines (a hook may add them in any order). */
void nf_audit_sort(struct nf_audit *a);
/* The lines, and the broken invariants' messages: counts, and arrays owned by a. */
size_t nf_audit_lines(const struct nf_audit *a, const char *const **lines);
size_t nf_audit_broken_list(const struct nf_audit *a, const char *const **msgs);
/* For NFs whose state is counters: one line "LABEL KEYHEX VALUE" per integer object
 * of the objects listed (labels[i] names objects[i]), as is: a blind increment
 * applied twice shows as a count above the fault-free run's. 0, or RW_ENOMEM /
 * RW_EIO (the store could not be read; e says why). */
int nf_audit_counters(struct store_client *c, struct nf_audit *a, const uint16_t *objects,
                      const char *const *labels, size_t n, struct rw_err *e);

struct nf_def {
    const char *type;
    size_t self_size; /* private per-instance memory, zeroed */
    int (*init)(void *self, const struct chain_node *config, struct rw_err *e);
    int (*process)(void *self, struct nf_env *env, const struct nf_pkt *p);
    void (*fini)(void *self);
    /* Optional: refuses a placement its state cannot work with (a flowspace that
     * splits packets it must see together, more instances than it can run).
     * Called by the coordinator before anything starts; the message starts with
     * the key it is about ("flowspace: ...", "instances: ..."). */
    int (*check)(const struct chain_nf *nf, struct rw_err *e);
    /* Optional: after a fault-tolerant run, when every worker has finished and the
     * store is final, reads the NF's objects back (store_scan on c, a client of the
     * NF's vertex; self is init'ed from the config) and adds to a its canonical
     * summary and its broken invariants. Returns 0 (broken invariants are not an
     * error), or the store's error when it cannot read them (a is then partial). */
    int (*audit)(void *self, struct store_client *c, struct nf_audit *a, struct rw_err *e);
    /* Optional: what `rewind verify --chain` must rename in this NF's output before
     * comparing two runs clock by clock: values the interleaving of its instances
     * picks, not the packets (a NAT's external ports, a load balancer's backend
     * per connection). Writes verify's canon specs ("ports:ADDR",
     * "conns:ADDR,ADDR...", docs/operator.md), one per line, into spec (cap
     * bytes). 0, or RW_EINVAL when they do not fit. */
    int (*canon)(const struct chain_node *config, char *spec, size_t cap, struct rw_err *e);
};

/* For check hooks: refuses nf's flowspace unless it is one of ok (n entries) or
 * the NF runs as a single instance. 0, or RW_EINVAL with "flowspace: ..." in e. */
int nf_require_flowspace(const struct chain_nf *nf, const int *ok, unsigned n, const char *why,
                         struct rw_err *e);

/* ---- an NF in-process, for fuzzing and unit tests ---- */

/* An NF instance with local state (as --no-ft) and no links: what it emits is
 * counted, not sent. */
struct nf_local;

/* nf_inst_open's codes; nothing left behind on failure. */
int nf_local_open(const struct nf_def *def, const struct chain_node *config, struct nf_local **out,
                  struct rw_err *e);
/* Runs the NF on one packet; *emitted is how many packets it emitted for it.
 * The NF's error (nf_inst_process), the instance still usable. */
int nf_local_process(struct nf_local *l, const struct rw_meta *meta, const uint8_t *data,
                     uint32_t len, unsigned *emitted);
void nf_local_close(struct nf_local *l);

/* ---- an NF instance, for the runtimes (worker, recovery, nf_local) ---- */

/* Named statistics of an instance (nf_count): in the worker's status block, so
 * the coordinator can sum them for report.json. */
#define NF_COUNTERS 16
struct nf_counter {
    char name[24]; /* written once before its value is used */
    _Atomic int64_t value;
};

/* Where nf_emit sends a packet: the worker routes it over its edges, a recovery
 * replays it into the next NF, nf_local counts it. in is the input being
 * processed, sub the output's index. 0 or an RW_E* code (e says why). */
typedef int (*nf_emit_fn)(void *ctx, const struct rw_meta *in, uint16_t sub, const uint8_t *data,
                          uint32_t len, uint32_t wire_len, struct rw_err *e);

struct nf_inst_opts {
    const struct nf_def *def;
    const struct chain_node *config;
    const char *name;            /* the NF's name in the chain (alerts, messages) */
    bool ft;                     /* state in the store (a client, nf_inst_set_client) or local */
    uint16_t slot;               /* the instance: its age queues are its own */
    struct nf_counter *counters; /* NF_COUNTERS of them, or NULL: the instance's own */
    FILE *alerts;                /* JSON lines, or NULL: alerts not kept */
    nf_emit_fn emit;             /* NULL: emitted packets only counted */
    void *emit_ctx;
};

struct nf_inst;

/* Creates an instance and runs the NF's init on its config. 0, RW_ENOMEM, or
 * the NF's init error (a config it refuses: RW_EINVAL, e says which key).
 * Nothing is left behind on failure. */
int nf_inst_open(const struct nf_inst_opts *o, struct nf_inst **out, struct rw_err *e);
/* The store client FT ops go to (the worker changes it after a claim or a
 * fence); NULL before any packet is an error at the first op. */
void nf_inst_set_client(struct nf_inst *n, struct store_client *sc);
/* Runs the NF on one packet. 0, or the NF's error: RW_E* or STORE_E* (e.g.
 * STORE_EFENCED: the slot changed hands), with e saying which NF and clock. The
 * ops it issued before the error stay issued (the store's record answers a
 * re-run). *emitted (may be NULL): packets it emitted for this input. */
int nf_inst_process(struct nf_inst *n, const struct rw_meta *meta, const uint8_t *data,
                    uint32_t len, uint32_t wire_len, unsigned *emitted, struct rw_err *e);
/* Runs the NF's fini and frees the instance (NULL is fine). */
void nf_inst_close(struct nf_inst *n);

#endif
