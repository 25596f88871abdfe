/*
 * run_internal.h - the coordinator's state, shared by its files (run.c: the
 * run; run_spawn.c: worker processes; run_report.c: report and alerts).
 */
#ifndef RW_RUN_INTERNAL_H
#define RW_RUN_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "failover.h"
#include "nfworker.h"
#include "root.h"

struct run_worker {
    uv_process_t proc;
    struct run *r;
    uint32_t nf, instance, index;
    bool running;
    bool hung;          /* killed for missing heartbeats */
    bool hung_starting; /* ... before its loop ever started */
    uint64_t last_beat; /* heartbeat counter at the last check */
    unsigned missed;    /* checks in a row without a beat */
    int64_t exit_status;
    int term_signal;
};

struct run {
    const struct run_opts *o;
    struct chain *chain;
    char store_url[4200];
    struct link ***links; /* [edge][from instance * to instances + to instance] */
    struct worker_status *status;
    size_t status_len;
    int status_fd;
    struct run_worker *workers;
    uint32_t nworkers;
    uv_loop_t loop;
    uv_timer_t beat_timer;
    uv_async_t quit; /* ends the loop's own handles when the run is over */
    unsigned beat_ms, beat_misses;
    uv_thread_t uv_tid;
    bool uv_started;
    _Atomic uint32_t exited;
    _Atomic int failed; /* a worker died before the end */
    char fail_msg[256];
    struct root_edge *redges;
    unsigned nredges;
    const char *in_trace, *in_port; /* the input actually used */
    struct root_trace trace;
    struct root_stats root_st;
    struct log_writer *input_log, *output;
    bool eal_up;
    volatile int stop; /* the run is abandoned (a worker died, the sink failed) */
    _Atomic uint64_t durable;
    struct link **sink_in;
    struct sink_opts sink_opts;
    struct sink_stats sink_st;
    pthread_t sink_tid;
    bool sink_started;
    int sink_rc;
    struct rw_err sink_err;
    uint64_t pipeline_ns; /* first rx to last release: excludes start-up */
};

struct link *run_link(const struct run *r, uint32_t k, unsigned i, unsigned j);
int run_store_url(struct run *r, struct rw_err *e);
int run_spawn_workers(struct run *r, struct rw_err *e);
/* Waits up to timeout_ms for every worker to exit (0: kill them now). */
int run_wait_workers(struct run *r, int timeout_ms, struct rw_err *e);
void run_write_outputs(struct run *r, const struct run_result *res, int rc, struct rw_err *e);

#endif
