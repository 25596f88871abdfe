/*
 * nfworker.h - the NF worker part's public API: the link (the shared-memory
 * channel that carries packets and their metadata between the processes of a
 * chain on one host, DESIGN §5), the duplicate filter, the NF interface and its
 * per-packet state API, the worker loop and its status block, the sink, and
 * nf_local (an NF in-process, for fuzzing and tests).
 *
 * A link is one memfd that its owner (the coordinator side) creates and maps:
 * a header, two DPDK rte_rings used as single-producer/single-consumer queues of
 * slot numbers (filled: producer -> consumer; free: consumer -> producer), and
 * the packet slots. The rings hold slot numbers, not pointers, so every process
 * may map the region anywhere. One eventfd wakes a consumer that went to sleep
 * after finding the link empty; a producer only writes it when the consumer said
 * it sleeps, so the busy path makes no syscall.
 *
 * When a peer dies, its replacement attaches to the same memfd and heals its side
 * of the rings (link_take_consumer/producer); link_reset() rebuilds a quiet link
 * with every slot free. Nothing in the region belongs to a process's allocator,
 * so a dead peer cannot leave the survivor with dangling memory: at worst a slot
 * it held is lost until a reset. A replacement takes a failed slot over by
 * replaying it from the log (worker_opts.recover, recover.c).
 */
#ifndef RW_NFWORKER_H
#define RW_NFWORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "rw_common.h"
#include "rw_flow.h"

/* One packet in a slot. */
struct link_pkt {
    struct rw_meta meta;
    uint64_t sent_ns;  /* CLOCK_MONOTONIC when the root sent its input (latency) */
    uint32_t len;      /* bytes in data */
    uint32_t wire_len; /* length on the wire */
    uint8_t data[];    /* link_data_room() bytes */
};

struct link_opts {
    uint32_t slots;     /* power of two, 2..65536 */
    uint32_t data_room; /* bytes per slot for packet data */
};

struct link;

/* Owner side: creates the memfd and the eventfd, initialises the region.
 * RW_EINVAL (bad slots or room), RW_EIO (memfd, eventfd, mmap), RW_ENOMEM; a
 * failure leaves no descriptor open. */
int link_create(const char *name, const struct link_opts *o, struct link **out, struct rw_err *e);

/* The descriptors a peer needs (inherit them across fork/exec, or send them). */
int link_memfd(const struct link *l);
int link_eventfd(const struct link *l);

/* Peer side: maps a link created elsewhere. RW_EINVAL: memfd is not a rewind
 * link; RW_EIO, RW_ENOMEM. The descriptors stay the caller's. */
int link_attach(int memfd, int eventfd, struct link **out, struct rw_err *e);

uint32_t link_data_room(const struct link *l);
uint32_t link_generation(const struct link *l);

/* Producer: a free slot to fill (NULL when the consumer is behind or gone),
 * then link_send to publish it. */
struct link_pkt *link_alloc(struct link *l);
void link_send(struct link *l, struct link_pkt *p);

/* Consumer: the next packet (NULL when empty), then link_release when done. */
struct link_pkt *link_recv(struct link *l);
void link_release(struct link *l, struct link_pkt *p);

/* Consumer: sleeps until a packet may be there, at most timeout_ms (-1: no
 * limit). Returns 1 when woken for data, 0 on timeout, negative on error. */
int link_wait(struct link *l, int timeout_ms);

/* Owner: after a peer died, make the link new again (all slots free, rings
 * empty) and advance the generation. The surviving peer must not be using the
 * link during the reset (the coordinator pauses it first). */
void link_reset(struct link *l);

/* A replacement becomes the link's consumer (or producer) after its peer on
 * that side died, possibly inside a ring operation: that side's ring state is
 * made consistent again. Packets the dead consumer had taken stay lost from the
 * link (the replacement replays them from the log), and so do their slots until
 * link_reset. */
void link_take_consumer(struct link *l);
void link_take_producer(struct link *l);

/* Unmaps; the owner also closes the descriptors. */
void link_close(struct link *l);

/* Packets waiting on the link (queue depth). */
unsigned link_count(const struct link *l);

/* Sleeps until any of the links may have a packet, at most timeout_ms. */
int link_wait_any(struct link **links, unsigned n, int timeout_ms);

/* A free slot, waiting with short sleeps while the consumer is behind; NULL only
 * when *stop (may be NULL) becomes set. */
struct link_pkt *link_alloc_wait(struct link *l, const volatile int *stop);

/* Sends a progress mark (RW_F_MARK): everything below clock was sent. Waits for a
 * slot like link_alloc_wait; returns -1 only when stopped. */
int link_send_mark(struct link *l, uint64_t clock, const volatile int *stop);

/* ---- duplicate filter (dedup.c) ---- */

struct dedup {
    uint64_t *keys;
    uint64_t mask, n;
    uint64_t floor; /* keys below it count as seen: (G << 16) */
};

/* RW_ENOMEM: d holds nothing to free. */
int dedup_init(struct dedup *d, uint32_t cap_log2);
/* 1 when (clock, sub) was seen (or is below the trim watermark), 0 when it is new
 * (and is now remembered), negative on allocation failure. */
int dedup_seen(struct dedup *d, uint64_t clock, uint16_t sub);
/* Forgets everything below clock g. RW_ENOMEM: d is as it was. */
int dedup_trim(struct dedup *d, uint64_t g);
void dedup_free(struct dedup *d);

/* ---- the NF interface ---- */

struct chain;
struct chain_node;
struct store;
struct store_key;

/* What the runtime offers an NF while it processes one packet: state ops (the
 * store, tagged with the packet's clock and the op's sequence, or local state in
 * --no-ft mode), output, alerts and time. The state calls return the store's
 * codes (store.h: STORE_EOWNER, STORE_ETOOBIG... and a batch's answer) or, in
 * --no-ft mode, STORE_ENOMEM/STORE_ETYPE/STORE_ETOOBIG from local state; the
 * worker reports the message with the NF's name and instance. */
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
/* Emits an output packet for the current input (sub numbers follow emit order). */
int nf_emit(struct nf_env *env, const uint8_t *data, uint32_t len, uint32_t wire_len);
/* Raises an alert: a JSON object's members, e.g. "\"host\": \"10.0.0.1\"". */
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
 * bounded by its live flows and hosts on a long run. */
int nf_age(struct nf_env *env, const struct nf_aging *a, void *self, const void *key, size_t len,
           uint64_t *ticket);
/* For judges: reads the object k names into obj (size bytes) and says whether it is
 * the one the entry was made for (*current: found, of that size, holding ticket at
 * byte ticket_off). */
int nf_age_object(struct nf_env *env, const struct store_key *k, void *obj, size_t size,
                  size_t ticket_off, uint64_t ticket, bool *current);

struct nf_pkt {
    struct rw_meta meta;
    const uint8_t *data;
    uint32_t len, wire_len;
};

/* An NF type of the catalog. Deterministic by contract (DESIGN §6): output depends
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
};

/* For check hooks: refuses nf's flowspace unless it is one of ok (n entries) or
 * the NF runs as a single instance. */
int nf_require_flowspace(const struct chain_nf *nf, const int *ok, unsigned n, const char *why,
                         struct rw_err *e);

const struct nf_def *nf_find(const char *type);
/* NULL-terminated list of the catalog's types (for the chain parser). */
const char *const *nf_types(void);

/* ---- an NF in-process, for fuzzing and unit tests ---- */

/* An NF instance with local state (as --no-ft) and no links: what it emits is
 * counted, not sent. */
struct nf_local;

int nf_local_open(const struct nf_def *def, const struct chain_node *config, struct nf_local **out,
                  struct rw_err *e);
/* Runs the NF on one packet; *emitted is how many packets it emitted for it. */
int nf_local_process(struct nf_local *l, const struct rw_meta *meta, const uint8_t *data,
                     uint32_t len, unsigned *emitted);
void nf_local_close(struct nf_local *l);

/* ---- worker status: heartbeat and stats, in shared memory the coordinator reads ---- */

/* Latency histograms: 4 buckets per power of two of nanoseconds (about 19%
 * wide), enough to tell 1 µs added from 2. */
#define WORKER_LAT_BUCKETS 160
#define WORKER_COUNTERS    16

struct worker_status {
    _Atomic uint64_t heartbeat; /* bumped every loop turn and every wake-up */
    _Atomic uint64_t pkts_in, pkts_out, dropped, dups, errors;
    _Atomic uint64_t queue_depth;             /* input packets seen waiting at the last turn */
    _Atomic uint64_t mark;                    /* progress: every input below it is processed */
    _Atomic uint64_t lat[WORKER_LAT_BUCKETS]; /* per-NF processing time histogram */
    _Atomic uint32_t state;                   /* 0 starting, 1 running, 2 finished, 3 failed */
    /* Failover (written by the coordinator before the worker reads them): a spare
     * waits until assign is set, to WORKER_ASSIGN(nf, instance) or WORKER_QUIT. */
    _Atomic uint32_t assign;
    _Atomic uint64_t assigned_ns;  /* CLOCK_MONOTONIC: when the coordinator assigned it */
    _Atomic uint64_t recovered_ns; /* when its replay was done and live traffic began */
    _Atomic uint64_t replayed;     /* packets it replayed from the log */
    /* The input being processed (busy 1) when the worker died: the coordinator
     * tells a packet of death from a fault by two deaths of a slot at one input. */
    _Atomic uint64_t cur_clock;
    _Atomic uint32_t cur_sub, busy;
    struct {
        char name[24]; /* written once by the worker before its value is used */
        _Atomic int64_t value;
    } counters[WORKER_COUNTERS]; /* nf_count */
};

#define WORKER_ASSIGN(nf, inst) ((((uint32_t)(nf)) << 16 | (uint32_t)(inst)) + 1)
#define WORKER_QUIT             UINT32_MAX

/* What the processes of a run share besides links and status blocks: the root's
 * progress (a replacement replays up to the root's clock once the log holds it)
 * and, per slot, whether its worker has finished (its store watermark is then
 * final) and the store watermark it last flushed. Slot index: the NF's first
 * slot plus the instance.
 *
 * Trim watermark (DESIGN §6): G = the lowest slot_w over the run's nslots slots.
 * Every replay starts above some slot's W, so above G: op records below G are
 * never asked for again, and the first instance of each NF trims its NF's
 * records below G as the run goes, which keeps the store bounded. */
#define WORKER_MAX_SLOTS 1024

/* A packet of death (DESIGN §7): an input that killed its slot's worker twice.
 * The coordinator fills slot, clock and sub and sets state 1 before it gives
 * the slot to a replacement; the replacement skips that input (its fate: dropped)
 * and copies it here (state 2), for OUT/quarantine.pcapng. */
#define WORKER_MAX_QUARANTINE 64
/* Bytes of the packet kept: a whole frame of the default max_frame; a bigger one
 * is cut, as tcpdump -s cuts, its whole length still in the pcapng. */
#define WORKER_QUARANTINE_SNAP 9216
struct worker_quarantine {
    _Atomic uint32_t state; /* 0 free, 1 quarantined, 2 packet copied */
    uint32_t slot;
    uint64_t clock;
    uint16_t sub;
    uint32_t len, wire_len;
    uint64_t ts_ns;
    uint8_t data[WORKER_QUARANTINE_SNAP];
};

struct worker_shared {
    _Atomic uint64_t root_clock;    /* the next clock the root hands out */
    _Atomic uint64_t durable;       /* the root's durable watermark */
    _Atomic uint32_t root_finished; /* the root sent its final marks */
    uint32_t nslots;                /* written by the coordinator before any worker starts */
    char store_url[4224];           /* the run's store: here, not on a command line anyone can read
                                       (a Redis URL may carry a password); written before any worker */
    _Atomic uint32_t slot_finished[WORKER_MAX_SLOTS];
    _Atomic uint64_t slot_w[WORKER_MAX_SLOTS]; /* a lower bound of each slot's store W */
    /* `rewind chaos --poison`: a BPF expression; a worker aborts on a matching
     * packet it has not been told to skip. Written before any worker starts. */
    char poison[512];
    _Atomic uint32_t nquarantine; /* entries used (only grows) */
    struct worker_quarantine quarantine[WORKER_MAX_QUARANTINE];
    /* The coordinator gave the run up (a worker lost, a full disk): every wait
     * of a worker (a spare's, a replay's, the loop's) ends instead of waiting
     * for progress that will not come. The coordinator kills them all anyway;
     * this is for one its kill sweep missed. */
    _Atomic uint32_t run_over;
};

/* Bucket of a latency, and percentile (0..100) of a histogram in ns (bucket
 * midpoint). */
unsigned worker_lat_bucket(uint64_t ns);
uint64_t worker_lat_percentile(const _Atomic uint64_t *hist, double pct);

/* ---- the worker ---- */

/* Where an NF's output goes: one edge, to the instances of the next NF (or the
 * sink), chosen by that NF's flowspace. */
struct worker_out {
    struct link **links; /* one per instance of the target */
    unsigned n;
    enum rw_flowspace fs;
    const char *filter; /* optional BPF */
};

struct worker_opts {
    const struct nf_def *def;
    const struct chain_node *config;
    const char *nf_name;
    uint32_t vertex;
    uint16_t instance, slot;
    bool ft;               /* false: --no-ft, local state, no duplicate checks */
    const char *store_url; /* FT state */
    struct link **in;
    unsigned nin;
    struct worker_out *out;
    unsigned nout;
    struct worker_status *status;
    const char *alerts_path; /* JSON lines of this instance's alerts */
    struct store *store;     /* already open (a spare opens it early), or NULL */
    bool no_dedup;           /* debug: keep duplicates (proves the chaos tests can fail) */
    /* Failover: take the slot over. The worker claims it in the store, reads its
     * watermark W, waits until the root's log and every upstream slot have passed
     * the root's clock R, then replays the logged packets in (W, R) through the
     * upstream NFs (their ops emulated by the store) into its own NF, buffering
     * live traffic meanwhile, and goes on with the live links (recover.c). */
    bool recover;
    const struct chain *chain; /* the chain, for the upstream NFs */
    uint32_t nf_index;
    struct worker_shared *shared;
    const uint32_t *slot_base; /* per NF: index of its first slot in shared */
    const char *log_dir;       /* the root's input log */
    const int *in_producer;    /* per input link: the producer's slot, -1 for the root */
};

/* Runs until every input link has delivered its final mark (UINT64_MAX). */
int worker_run(const struct worker_opts *o, struct rw_err *e);

/* ---- the sink (chain exit) ---- */

struct log_writer;

struct sink_opts {
    struct link **in;
    unsigned nin;
    bool ft;                   /* drop duplicates, hold until durable */
    bool keep_dups;            /* debug (--no-dedup): release duplicates too */
    _Atomic uint64_t *durable; /* the root's durable watermark (FT) */
    struct log_writer *output; /* chain output log (may be NULL) */
    const volatile int *stop;  /* set when the run is abandoned */
};

struct sink_stats {
    _Atomic uint64_t released;   /* readable while the sink runs */
    _Atomic uint64_t exit_clock; /* every clock below it has left the chain (readable) */
    uint64_t dups, held_max;
    uint64_t lat[WORKER_LAT_BUCKETS]; /* root send -> sink release */
    uint64_t clocks_done;             /* final mark */
};

/* Runs until every input has delivered its final mark and every packet has been
 * released in (clock, sub) order. */
int sink_run(const struct sink_opts *o, struct sink_stats *st, struct rw_err *e);

#endif
