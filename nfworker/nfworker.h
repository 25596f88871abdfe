/*
 * nfworker.h - the nfworker part's API: the worker that runs one instance (a
 * slot) of an NF of the chain, and what it shares with the coordinator.
 *
 * A worker takes packets from its input links in (clock, sub) order, drops the
 * ones already seen, runs its NF (an nf_inst), routes what the NF emits along
 * the edges out of it, and passes progress marks on. A replacement takes a
 * failed slot over by replaying it from the root's log through the upstream
 * NFs (worker_opts.recover, recover.c). The coordinator watches each worker
 * through its status block (heartbeat, counters, its state as an enum
 * worker_state) and talks to every worker of a run through the shared block.
 * `rewind worker` (worker_main.c) is the process the coordinator spawns for a
 * slot or a hot spare.
 */
#ifndef RW_NFWORKER_H
#define RW_NFWORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"
#include "nf.h"
#include "rw_common.h"
#include "rw_flow.h"
#include "rw_lat.h"

/* ---- worker status: heartbeat and stats, in shared memory the coordinator reads ---- */

/* Where a worker is in its life, for the coordinator (which only ever reads it;
 * the worker writes it). */
enum worker_state {
    WORKER_STARTING = 0, /* exec'd, setting up (chain, links, store) */
    WORKER_RUNNING = 1,  /* in its loop on live traffic: past any replay */
    WORKER_FINISHED = 2, /* saw every input's final mark; its store watermark is final */
    WORKER_FAILED = 3,   /* stopped on an error (its exit code says which) */
    WORKER_SPARE = 4,    /* a hot spare, ready, waiting for a slot */
};

/* Its name in messages ("running"); "?" for a value no worker writes. */
static inline const char *worker_state_name(uint32_t s)
{
    static const char *const names[] = {"starting", "running", "finished", "failed", "spare"};
    return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

struct worker_status {
    _Atomic uint64_t heartbeat; /* bumped every loop turn and every wake-up */
    _Atomic uint64_t pkts_in, pkts_out, dropped, dups, errors;
    _Atomic uint64_t queue_depth;         /* input packets seen waiting at the last turn */
    _Atomic uint64_t mark;                /* progress: every input below it is processed */
    _Atomic uint64_t lat[RW_LAT_BUCKETS]; /* per-NF processing time histogram */
    _Atomic uint32_t state;               /* enum worker_state */
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
    struct nf_counter counters[NF_COUNTERS]; /* nf_count */
    /* The slot's state ops (FT): handed to the store in batches, and reads the
     * worker answered itself (the cache: its own objects, never sent). */
    _Atomic uint64_t store_ops, store_batches, store_local_reads;
    /* Stragglers (design.md: Stragglers). What the CPU gave the worker while it
     * had input waiting: wall time and the thread's CPU time over the same
     * stretches (the coordinator compares their ratio with its peers'). */
    _Atomic uint64_t busy_wall_ns, busy_cpu_ns;
    /* Coordinator, before assign: the spare runs as a clone beside the slot's
     * worker (1), and later: that worker is gone, the clone takes the slot (1). */
    _Atomic uint32_t clone, takeover;
    /* Clone: how far it has replayed (every input below it processed). */
    _Atomic uint64_t clone_pos;
};

#define WORKER_ASSIGN(nf, inst) ((((uint32_t)(nf)) << 16 | (uint32_t)(inst)) + 1)
#define WORKER_QUIT             UINT32_MAX

/* What the processes of a run share besides links and status blocks: the root's
 * progress (a replacement replays up to the root's clock once the log holds it)
 * and, per slot, whether its worker has finished (its store watermark is then
 * final) and the store watermark it last flushed. Slot index: the NF's first
 * slot plus the instance.
 *
 * Trim watermark (design.md: Invariants): G = the lowest slot_w over the run's nslots slots.
 * Every replay starts above some slot's W, so above G: op records below G are
 * never asked for again, and the first instance of each NF trims its NF's
 * records below G as the run goes, which keeps the store bounded. */
#define WORKER_MAX_SLOTS 1024

/* A packet of death (design.md: Invariants, Recovery): an input that killed its slot's worker
 * twice. The coordinator fills slot, clock and sub and sets state 1 before it gives the slot to a
 * replacement; the replacement skips that input (its fate: dropped) and copies it here (state 2),
 * for OUT/quarantine.pcapng. */
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
    /* Stragglers: the slot's output mark, which its worker writes: every input
     * below it is processed (its ops issued) and every output sent. A clone
     * replays no further (it never writes the slot's objects ahead of the
     * worker, whose reads of them are then right) and drops what it held
     * below it. */
    _Atomic uint64_t slot_mark[WORKER_MAX_SLOTS];
    /* A clone's replay position + 1 (0: none): G stays below it, since the
     * slot's worker, ahead, moves its W past what the clone has yet to replay. */
    _Atomic uint64_t slot_hold[WORKER_MAX_SLOTS];
};

/* ---- the worker ---- */

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
    struct link_edge *out; /* the edges out of the NF, open */
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
    /* Straggler clone (with recover): replay beside the slot's worker, tailing
     * the log, with outputs held, until the coordinator says takeover; then
     * claim the slot, take its links and go on as a replacement (recover.c). */
    bool clone;
};

/* Runs until every input link has delivered its final mark (UINT64_MAX). */
int worker_run(const struct worker_opts *o, struct rw_err *e);

/* ---- `rewind worker`: the process the coordinator spawns (worker_main.c) ---- */

/* The run's region, one memfd every process of the run maps: the shared block,
 * then cap status blocks (one per worker process). */
size_t worker_region_size(uint32_t cap);
struct worker_status *worker_region_status(void *region);

/* A worker's fixed tables: input links of one instance, edges out of one NF
 * (the coordinator refuses a chain past them before anything starts). */
#define WORKER_MAX_IN  1024
#define WORKER_MAX_OUT 8

/* Exit statuses of a worker process the coordinator acts on (any other non-zero
 * status is a failure to fail over). */
/* Its store (or disk) is full: the run ends with exit 4 instead of failing the
 * slot over to a spare that would meet the same wall. */
#define WORKER_EXIT_FULL 4
/* ... the disk under its LMDB store is full (a SIGBUS writing the map). */
#define WORKER_EXIT_DISK 5
/* ... its store did not answer in time: a replacement would wait on the same
 * server, so the run stops with the store's name instead of failing over. */
#define WORKER_EXIT_STALLED 6

/* `rewind worker ...` (argv as the coordinator builds it, run_spawn.c): runs a
 * slot, or waits as a hot spare for one. Returns the process's exit status. */
int worker_main(int argc, char **argv);

#endif
