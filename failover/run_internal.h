/*
 * run_internal.h - the coordinator's state, shared by its files (run.c: the
 * run; run_spawn.c: worker processes, heartbeats, failover; run_chaos.c: the
 * fault schedule of `rewind chaos`; run_report.c: report and alerts).
 */
#ifndef RW_RUN_INTERNAL_H
#define RW_RUN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "failover.h"
#include "nfs.h"
#include "nfworker.h"
#include "root.h"
#include "sink.h"

/* One worker process: a slot's instance, or a spare (slot -1) until assigned.
 * procs[i] is the process of status block i; a block is used again once its
 * process is reaped and its figures are folded into the run's totals. */
struct run_proc {
    uv_process_t proc;
    struct run *r;
    bool used;        /* a process holds the block (until its handle is closed) */
    uint32_t index;   /* its status block */
    int64_t failover; /* the failover record it replaces a worker for, or -1 */
    bool replacement; /* given a failed slot (its recovery may not be done) */
    int slot;         /* global slot index, -1 while a spare */
    int nf;           /* the slot's NF, -1 while a spare */
    int spare_nf;     /* a spare's NF: it holds that NF's links only */
    bool running;
    bool hung;          /* killed for missing heartbeats */
    bool hung_starting; /* ... before its loop ever started */
    uint64_t fault_ns;  /* when chaos killed it (0: a fault of its own) */
    uint64_t last_beat; /* heartbeat counter at the last check */
    unsigned missed;    /* checks in a row without a beat */
    int64_t exit_status;
    int term_signal;
    int pid;
    /* Stragglers (run_straggler.c). */
    bool is_clone;     /* a clone beside its slot's worker (slot set, not slots[].proc) */
    bool retired;      /* killed by the coordinator as the slower copy of its slot */
    bool straggler;    /* killed as a straggler (action restart): failed over */
    bool slowed;       /* chaos made it slow (--slow, --slow-every) */
    int64_t clone_rec; /* a clone's record in r->clones, or -1 */
    uint64_t prev_wall, prev_cpu; /* its busy figures at the last check */
    double share;                 /* CPU share while it had input, last check (-1: not busy) */
};

struct run_slot {
    uint32_t nf, instance;
    struct run_proc *proc; /* serving it now (NULL while its failover waits) */
    unsigned errors;       /* workers in a row that exited with an error (not a signal) */
    unsigned quick;        /* replacements in a row lost before any progress */
    uint64_t w_at_assign;  /* its W when the last replacement was given the slot */
    bool waiting;          /* its failover waits: a back-off, or a free status block */
    int64_t wait_rec;      /* ... and its failover record (-1: past the log) */
    uv_timer_t backoff;
    unsigned deaths; /* crashes in a row at one input (run_quarantine.c) */
    uint64_t death_clock;
    uint16_t death_sub;
    /* Stragglers (run_straggler.c). */
    struct run_proc *clone; /* a clone beside proc, or NULL */
    uint64_t slow_since, fast_since;
    uint64_t slow_seen; /* the last check that found its worker slow */
};

/* One straggler handled, for report.json. */
struct run_clone {
    uint32_t slot;
    double share, ref;    /* its CPU share and the reference it was held to */
    uint64_t detected_ns; /* slow for for_ms */
    uint64_t started_ns;  /* the clone assigned (0: never: the worker did not ack) */
    uint64_t live_ns;     /* the clone on live traffic (took the slot) */
    uint64_t ended_ns;    /* one copy retired */
    uint64_t replayed;    /* packets the clone replayed */
    const char *outcome;  /* "clone", "worker", "clone lost", "restart", ... */
};

/* One failover, for report.json. */
struct run_failover {
    uint32_t slot;
    const char *reason;
    uint64_t fault_ns, detected_ns; /* fault: the chaos kill, else the detection */
    uint64_t recovered_ns;          /* the replacement's, once it is reaped */
    uint64_t replayed;
    unsigned backoff_ms; /* waited before the replacement was given the slot */
};

/* What every process that served an NF counted, summed as they are reaped. */
struct run_nf_total {
    uint64_t pkts_in, pkts_out, dropped, dups;
    uint64_t store_ops, store_batches, store_local_reads;
    uint64_t lat[RW_LAT_BUCKETS];
    unsigned ncounters;
    char names[NF_COUNTERS * 4][24];
    int64_t sums[NF_COUNTERS * 4];
};

/* Failover records kept for the report beyond which only counts grow, so that
 * a storm of any length keeps the coordinator's memory bounded. */
#define RUN_FAILOVER_LOG 65536

/* One fault `rewind chaos` injected, for chaos.json. */
struct run_fault {
    uint64_t at_ns;
    char action[8]; /* kill, stall, slow */
    uint32_t slot;
    int pid;
    unsigned ms; /* stall length; a slow worker's factor */
};

/* Broken invariants' messages kept for report.json. */
#define RUN_STATE_MSGS 8

struct run {
    const struct run_opts *o;
    struct chain *chain;
    char store_url[4200];
    struct link ***links; /* [edge][from instance * to instances + to instance] */
    void *region;         /* shared header, then status blocks */
    size_t region_len;
    struct worker_shared *shared;
    struct worker_status *status;
    uint32_t status_cap; /* status blocks: the processes that may live at once */
    int status_fd;
    uint32_t nworkers; /* slots */
    struct run_slot *slots;
    uint32_t *slot_base;         /* per NF: its first slot */
    struct run_proc *procs;      /* [status_cap], by status block */
    _Atomic uint32_t nprocs;     /* processes started (blocks reused: may exceed the cap) */
    struct run_nf_total *totals; /* [nnfs] */
    unsigned spares_target;
    uint32_t spare_next; /* the NF the next spare goes to, on a tie */
    uv_loop_t loop;
    uv_timer_t beat_timer;
    uv_async_t quit; /* ends the loop's own handles when the run is over */
    uv_async_t calm; /* SIGINT/SIGTERM: no more faults, so the drain can end */
    bool chaos_stopped;
    uint64_t chaos_stopped_ns;  /* when no more faults could start (chaos.json) */
    const char *chaos_stop_why; /* "signal" or "end of run" */
    unsigned beat_ms, beat_misses;
    uv_thread_t uv_tid;
    bool uv_started;
    bool ending; /* loop thread: the input is over: no more faults or spares */
    _Atomic uint32_t exited;
    _Atomic int failed; /* a worker died and could not be replaced */
    int fail_code;      /* RW_E* of that failure */
    char fail_msg[256];
    struct run_failover *failovers; /* the first RUN_FAILOVER_LOG */
    uint32_t nfailovers, cap_failovers;
    uint32_t backoffs;         /* failovers that waited: faults outpaced recovery */
    _Atomic uint32_t nwaiting; /* slots whose failover waits */
    struct run_clone *clones;  /* stragglers handled (the first RUN_FAILOVER_LOG) */
    uint32_t nclones, cap_clones;
    uint32_t clones_won, workers_won, clones_lost, restarts;
    uint64_t cpu_idle, cpu_total; /* /proc/stat at the last straggler check */
    double idle_cpus;             /* CPUs idle on average since the check before (-1: unknown) */
    struct run_fault *faults;
    uint32_t nfaults, cap_faults;
    uv_timer_t kill_timer, stall_timer, slow_timer;
    int slow_slot; /* --slow: the slot made slow at the start (-1: none) */
    unsigned slow_factor, slow_ms;
    uint64_t rng;
    struct link_edge *redges;
    unsigned nredges;
    const char *in_trace, *in_port; /* the input actually used */
    struct root_trace trace;
    struct root_stats root_st;
    struct log_writer *input_log, *output;
    bool eal_up;
    volatile int stop; /* the run is abandoned (a worker died, the sink failed) */
    struct link **sink_in;
    struct sink_opts sink_opts;
    struct sink_stats sink_st;
    pthread_t sink_tid;
    bool sink_started;
    int sink_rc;
    struct rw_err sink_err;
    uint64_t t0_ns; /* the run's start, for chaos.json times */
    /* After a stop signal: the drain's last progress (the sink's exit clock, and
     * when it last moved). A drain that stops moving is given up (run_spawn.c). */
    uint64_t drain_exit, drain_moved_ns;
    uint64_t pipeline_ns; /* first rx to last release: excludes start-up */
    /* The end-of-run state audit (run_state.c). */
    bool state_run;         /* it was attempted */
    uint32_t state_checked; /* NFs whose state was read and summarised */
    uint32_t state_broken;  /* invariants broken, over those NFs */
    char state_note[300];   /* why it was not checked or written ("" if it was) */
    char state_msgs[RUN_STATE_MSGS][300];
    uint32_t state_nmsgs;
};

struct link *run_link(const struct run *r, uint32_t k, unsigned i, unsigned j);

/* How long the drain after SIGINT/SIGTERM/SIGHUP may go without the chain
 * releasing anything before the run gives it up: a worker blocked on a stalled
 * store (its timeout may be long) or failed over and over must not hold a stop
 * the operator asked for. What was read stays in the input log. */
#define RUN_STOP_STUCK_MS 5000

/* Status blocks beyond two per slot (one serving, one dying) and the spares:
 * the margin for spares dying and replacements started while others die. A
 * block is used again once its process is reaped; a failover that finds none
 * free waits for the next reap (run_spawn.c). */
#define RUN_EXTRA_PROCS 8

/* What one worker process is given (run_spawn.c builds it, run_plan.c checks a
 * chain against it before anything starts). */
#define RUN_WORKER_ARGS      16 /* options on its command line */
#define RUN_WORKER_FIXED_FDS 4  /* stdin, stdout, stderr, the status region */
/* --links=k:i:n:fd,...: one argument, under the kernel's 128 KiB
 * (MAX_ARG_STRLEN) for a single argument string. */
#define RUN_LINKS_ARG_MAX (96u << 10)
#define RUN_LINKS_ENTRY   32 /* room for one "k:i:n:fd," */

/* The descriptors such a worker inherits. */
unsigned run_proc_fds(const struct chain *c, uint32_t nf, int inst);
/* run_plan.c: before anything is created: raises the descriptor limit (soft to
 * hard) and checks every bound of the run against the chain: slots, a worker's
 * tables, its command line, the descriptors of the coordinator and of each
 * worker, the process limit. RW_EINVAL naming the limit and the numbers; it
 * leaves nothing behind (a raised soft limit stays raised). */
int run_plan(struct run *r, struct rw_err *e);
/* run_outdir.c: creates --out (0700), refuses one that holds a previous run
 * (RW_EINVAL, naming what it holds) or, with --force, removes that run's files. */
int run_prepare_out(struct run *r, struct rw_err *e);
int run_store_url(struct run *r, struct rw_err *e);
/* The store URL as messages may show it: no password. */
void run_store_name(const struct run *r, char *buf, size_t cap);
int run_spawn_workers(struct run *r, struct rw_err *e);
/* Waits up to timeout_ms for every worker to exit (0: kill them now). */
int run_wait_workers(struct run *r, int timeout_ms, struct rw_err *e);
/* Takes the room of report.json and alerts.json (OUT/.NAME.tmp, preallocated)
 * before anything else is written, so that a disk that fills up during the run
 * still leaves both whole, and allocates r->totals. RW_ENOSPC or RW_EIO when it
 * cannot (the temp files stay: --force removes them), RW_ENOMEM. */
int run_reserve_outputs(struct run *r, struct rw_err *e);
/* Writes OUT/alerts.json and OUT/report.json (with rc and e: the run's result),
 * each whole or not at all. Returns rc, or when rc is 0 the first failure to
 * write them (RW_ENOSPC: no room, RW_EIO), then also in e. */
int run_write_outputs(struct run *r, const struct run_result *res, int rc, struct rw_err *e);
/* buf as OUT/name, whole or not at all: into its room (OUT/.NAME.tmp, made now
 * if run_reserve_outputs took none), cut to length, synced and renamed. On
 * failure (RW_ENOSPC, RW_EIO, in e) the temp file is removed and OUT/name is not
 * touched. */
int run_write_whole(const struct run *r, const char *name, const char *buf, size_t len,
                    struct rw_err *e);
/* Writes s as a JSON string (escaped), or null. */
void run_json_string(FILE *f, const char *s);

/* run_quarantine.c (loop thread): after slot worker p crashed (a signal chaos
 * did not send), quarantines the input it was processing if the slot's previous
 * worker died at the same one. Returns 1 when it did, 0 when not, -1 when the
 * run holds WORKER_MAX_QUARANTINE packets of death already. */
int run_quarantine_death(struct run *r, const struct run_proc *p);
uint32_t run_quarantined(const struct run *r);
/* Writes OUT/quarantine.pcapng (0600; only when something was quarantined).
 * RW_EIO when it cannot be written completely. */
int run_quarantine_write(struct run *r, struct rw_err *e);
/* Checks --poison (FT only, compiles, fits) and hands it to the workers through
 * the shared block; RW_EINVAL naming what is wrong. */
int run_poison_set(struct run *r, struct rw_err *e);
/* Main thread, on SIGINT/SIGTERM: `rewind chaos` stops injecting faults. */
void run_calm(struct run *r);

/* run_state.c: after every worker finished (FT): each NF's audit hook over the
 * final store; writes OUT/state.json (0600) and fills r->state_*. Returns 0, or
 * RW_ECORRUPT when an invariant is broken (e says which). A store it cannot read
 * (Redis cannot list objects yet) is noted in r->state_note, not an error. */
int run_audit_state(struct run *r, struct rw_err *e);

/* run_straggler.c (loop thread). Every heartbeat check: finds stragglers and
 * clones (or restarts) them, retires the slower copy of a cloned slot. */
void run_stragglers_check(struct run *r);
/* A reaped process that was a clone, or a slot's worker that had one: returns
 * true when it handled the exit (no failover: the clone takes the slot, or a
 * lost clone leaves it to its worker). */
bool run_stragglers_exit(struct run *r, struct run_proc *p, bool clean);
/* Records a clone assigned by run_straggler.c's request (assign_clone). */
struct run_proc *run_spare_of(struct run *r, uint32_t nf);
void run_wake(struct run *r, struct run_proc *p, uint32_t assign);
int64_t run_record_failover(struct run *r, const struct run_proc *dead, uint64_t now);
void run_top_up_spares(struct run *r);

/* run_chaos.c: starts the fault timers on the loop (loop thread), stops them (no
 * fault starts after; why: "signal" or "end of run", in chaos.json), and writes
 * OUT/chaos.json. */
void run_chaos_start(struct run *r);
void run_chaos_stop(struct run *r, const char *why);
void run_chaos_write(struct run *r);
/* Checks --slow's NF[I] against the chain: RW_EINVAL naming what is wrong. */
int run_slow_check(struct run *r, struct rw_err *e);

#endif
