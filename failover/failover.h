/*
 * failover.h - the coordinator's public API (with chain.h, the chain file).
 *
 * `rewind run` is the coordinator: it loads the chain, creates the links between
 * the processes (it owns them, design.md: A packet's life), spawns and watches one worker process
 * per NF instance with libuv, runs the root splitter and the logger in its own
 * process, and the sink in a thread of it. It detects a worker's death (its exit)
 * and a hang (missed heartbeats: the worker is then SIGKILLed, so every failure is
 * fail-stop). A failed slot is given to a hot spare, which replays the slot's
 * logged packets from its store watermark and takes the live links over
 * (design.md: Invariants, Recovery; nfworker/recover.c). `rewind chaos` is a run with a fault
 * schedule: SIGKILL and SIGSTOP/SIGCONT of random workers.
 */
#ifndef RW_FAILOVER_H
#define RW_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "rw_common.h"

struct run_opts {
    const char *chain_path;
    const char *trace, *port; /* override the chain's input */
    /* With trace: packet i keeps clock trace_clocks[i] (a log's selection re-run,
     * `run --from-log`); ntrace_clocks must be the trace's packet count. */
    const uint64_t *trace_clocks;
    uint64_t ntrace_clocks;
    const char *out_dir;
    bool force;           /* --out may hold a previous run: replace its files */
    const char *self_exe; /* the rewind binary, to spawn `rewind worker` */
    bool no_ft;           /* traditional NFs: local state, no log, no clock checks */
    bool progress;        /* progress lines on stderr */
    int eal_argc;
    char **eal_argv;
    volatile const int *stop;  /* the signal's number when SIGINT/SIGTERM came: drain and
                                  finish (a trace cut short: RW_EINTR) */
    unsigned heartbeat_ms;     /* how often workers' heartbeats are checked (default 100) */
    unsigned heartbeat_misses; /* missed checks before a worker counts as hung (default 20) */
    unsigned spares;           /* hot spares kept ready (FT only; `rewind run` gives 2) */
    bool no_dedup;             /* debug: no duplicate suppression anywhere */
    uint64_t rate_pps;         /* pace the input (0: as fast as it comes) */
    /* Clocks the chain may hold between the root and its exit (0: 65536). Bounds
     * the sink's hold, and so the coordinator's memory, whatever the failovers:
     * while a failing-over slot holds its mark back the input waits. */
    uint64_t max_in_flight;
    /* chaos: faults on a schedule (0: none) */
    unsigned kill_every_ms, stall_every_ms, stall_ms;
    uint64_t seed;
    /* chaos: a worker aborts on a packet matching this BPF (a packet of death,
     * to prove the quarantine), or NULL */
    const char *poison;
    /* chaos: "NF[I]:FACTOR", one worker made FACTOR times slower for the whole
     * run (a duty cycle of SIGSTOP/SIGCONT), or NULL; and every slow_every_ms a
     * random one, slow_factor times (default 10). */
    const char *slow;
    unsigned slow_every_ms, slow_factor;
    /* --stragglers: 0 the chain file's action, else 1 + enum chain_straggler_action
     * (off for a run whose workers a debugger holds: they look slow) */
    int stragglers;
};

struct run_result {
    uint64_t packets_in, packets_out, duplicates;
    uint32_t failovers, kills, stalls;
    uint32_t clones, clones_won; /* stragglers cloned, and clones that took the slot */
    uint32_t quarantined;        /* packets of death skipped */
    uint64_t oversize;           /* input packets larger than max_frame: logged, not carried */
    uint32_t max_frame;
    double seconds;
};

/* Runs the chain to the end of its input; writes OUT/output (a log),
 * OUT/alerts.json and OUT/report.json. Besides the failures of its parts, returns
 * RW_EINPUT when the trace had a damaged tail (its intact packets were run) and
 * RW_EINTR when *o->stop came before the end of a trace; both leave every output
 * written, report.json saying so. */
int run_chain(const struct run_opts *o, struct run_result *res, struct rw_err *e);

#endif
