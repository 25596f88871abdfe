/*
 * run.c - `rewind run`: the coordinator of a chain on one host.
 *
 * Process layout: this process runs the root (DPDK rx, clocks, the logger on its
 * own lcore) and the sink (a thread); every NF instance is a `rewind worker`
 * process. All links are memfds created here and passed to the workers as
 * inherited descriptors, so this process owns every piece of shared memory, and
 * a worker's death can never leave the others with memory they cannot trust.
 *
 * libuv runs in a thread of its own: it spawns the workers (the first ones
 * before DPDK starts), checks heartbeats, reaps them and fails their slots over
 * to hot spares (run_spawn.c). Spares started later are forked from this DPDK
 * process: libuv execs right after the fork, and the child inherits only the
 * descriptors it is given. With --no-ft a worker that dies fails the run: the
 * root and the sink are told to stop, the other workers are killed, and the
 * error says which instance died and how.
 */
#include "failover.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <rte_ethdev.h>

#include "log.h"
#include "nfworker.h"
#include "root.h"
#include "run_internal.h"
#include "rw_eal.h"
#include "store.h"

#define LINK_SLOTS       1024
#define DRAIN_TIMEOUT_MS 20000
/* Clocks the chain may hold between the root and the sink. A healthy chain holds
 * a few links' worth (1024 slots each); a slot that is failing over holds back
 * the sink's release, and without a bound the sink's hold (and the replay of
 * the next replacement) grew with the run: 6 GB after 200 s of a kill storm. */
#define MAX_IN_FLIGHT 65536

/* ---- links ---- */

static int make_links(struct run *r, struct rw_err *e)
{
    const struct chain *c = r->chain;
    r->links = calloc(c->nedges, sizeof(*r->links));
    if (!r->links)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    struct link_opts lo = {.slots = LINK_SLOTS, .data_room = r->chain->max_frame};
    for (uint32_t k = 0; k < c->nedges; k++) {
        unsigned n = chain_edge_links(c, &c->edges[k]);
        r->links[k] = calloc(n, sizeof(struct link *));
        if (!r->links[k])
            return rw_errf(e, RW_ENOMEM, "out of memory");
        for (unsigned i = 0; i < n; i++) {
            char name[48];
            snprintf(name, sizeof(name), "e%u-%u", k, i);
            int rc = link_create(name, &lo, &r->links[k][i], e);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Link of edge k between instance i of its source and instance j of its target. */
struct link *run_link(const struct run *r, uint32_t k, unsigned i, unsigned j)
{
    return r->links[k][chain_link_index(r->chain, &r->chain->edges[k], i, j)];
}

static void free_links(struct run *r)
{
    for (uint32_t k = 0; r->links && k < r->chain->nedges; k++) {
        unsigned n = chain_edge_from_n(r->chain, &r->chain->edges[k]) *
                     chain_edge_to_n(r->chain, &r->chain->edges[k]);
        for (unsigned i = 0; r->links[k] && i < n; i++)
            link_close(r->links[k][i]);
        free(r->links[k]);
    }
    free(r->links);
}

/* The shared header and the status blocks of every worker, one region. */
static int make_status(struct run *r, struct rw_err *e)
{
    const struct chain *c = r->chain;
    r->slot_base = calloc(c->nnfs ? c->nnfs : 1, sizeof(uint32_t));
    if (!r->slot_base)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < c->nnfs; k++) {
        r->slot_base[k] = r->nworkers;
        r->nworkers += c->nfs[k].instances;
    }
    if (r->nworkers > WORKER_MAX_SLOTS) /* run_plan refused it */
        return rw_errf(e, RW_EINVAL, "%s: %u instances in all; at most %d", r->o->chain_path,
                       r->nworkers, WORKER_MAX_SLOTS);
    r->slots = calloc(r->nworkers ? r->nworkers : 1, sizeof(*r->slots));
    if (!r->slots)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < c->nnfs; k++)
        for (uint32_t i = 0; i < c->nfs[k].instances; i++)
            r->slots[r->slot_base[k] + i] = (struct run_slot){.nf = k, .instance = i};
    r->status_cap = 2 * r->nworkers + r->o->spares + RUN_EXTRA_PROCS; /* run_plan checked it */
    r->region_len = worker_region_size(r->status_cap);
    r->status_fd = memfd_create("rw-status", MFD_CLOEXEC);
    if (r->status_fd < 0 || ftruncate(r->status_fd, (off_t)r->region_len))
        return rw_errf(e, RW_EIO, "status region: %s", strerror(errno));
    r->region = mmap(NULL, r->region_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->status_fd, 0);
    if (r->region == MAP_FAILED) {
        r->region = NULL;
        return rw_errf(e, RW_EIO, "status region: %s", strerror(errno));
    }
    r->shared = r->region;
    r->shared->nslots = r->nworkers;
    snprintf(r->shared->store_url, sizeof(r->shared->store_url), "%s", r->store_url);
    r->status = worker_region_status(r->region);
    int rc = run_poison_set(r, e);
    return rc ? rc : run_slow_check(r, e);
}

/* ---- the sink thread ---- */

static void *sink_thread(void *arg)
{
    struct run *r = arg;
    r->sink_rc = sink_run(&r->sink_opts, &r->sink_st, &r->sink_err);
    if (r->sink_rc)
        r->stop = 1;
    return NULL;
}

static int start_sink(struct run *r, struct rw_err *e)
{
    const struct chain *c = r->chain;
    unsigned n = 0;
    for (uint32_t k = 0; k < c->nedges; k++)
        if (c->edges[k].to == CHAIN_OUTPUT)
            n += chain_edge_from_n(c, &c->edges[k]);
    r->sink_in = calloc(n ? n : 1, sizeof(struct link *));
    if (!r->sink_in)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    n = 0;
    for (uint32_t k = 0; k < c->nedges; k++)
        if (c->edges[k].to == CHAIN_OUTPUT)
            for (unsigned i = 0; i < chain_edge_from_n(c, &c->edges[k]); i++)
                r->sink_in[n++] = run_link(r, k, i, 0);
    r->sink_opts = (struct sink_opts){.in = r->sink_in,
                                      .nin = n,
                                      .ft = !r->o->no_ft,
                                      .keep_dups = r->o->no_dedup,
                                      .durable = &r->shared->durable,
                                      .output = r->output,
                                      .stop = &r->stop};
    if (pthread_create(&r->sink_tid, NULL, sink_thread, r))
        return rw_errf(e, RW_EIO, "cannot start the sink thread");
    r->sink_started = true;
    return 0;
}

/* ---- the root ---- */

static int make_root_edges(struct run *r, struct rw_err *e)
{
    const struct chain *c = r->chain;
    r->redges = calloc(c->nedges, sizeof(*r->redges));
    if (!r->redges)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < c->nedges; k++) {
        const struct chain_edge *ed = &c->edges[k];
        if (ed->from != CHAIN_INPUT)
            continue;
        enum rw_flowspace fs = chain_edge_flowspace(c, ed);
        int rc = link_edge_open(&r->redges[r->nredges], &r->links[k][0], chain_edge_to_n(c, ed), fs,
                                ed->filter, e);
        if (rc)
            return rc;
        r->nredges++;
    }
    return 0;
}

static void root_progress(void *ctx, const struct root_stats *st, uint64_t expected)
{
    struct run *r = ctx;
    r->root_st = *st;
    if (!r->o->progress)
        return;
    /* "out" is what the sink counts as released: committed to DIR/output. */
    uint64_t out = atomic_load(&r->sink_st.released);
    if (expected != UINT64_MAX)
        fprintf(stderr, "\rrun: %" PRIu64 "/%" PRIu64 " packets in, %" PRIu64 " out   ",
                st->packets, expected, out);
    else
        fprintf(stderr, "\rrun: %" PRIu64 " packets in, %" PRIu64 " out   ", st->packets, out);
}

/* The input: the run's --trace/--port, else the chain's. A trace is scanned here,
 * before anything is created or started, so a bad one is refused cleanly. */
static int resolve_input(struct run *r, struct rw_err *e)
{
    r->in_trace = r->o->trace ? r->o->trace : r->o->port ? NULL : r->chain->trace;
    r->in_port = r->o->port ? r->o->port : r->in_trace ? NULL : r->chain->port;
    if (!r->in_trace && !r->in_port)
        return rw_errf(e, RW_EINVAL, "the chain has no input: give --trace or --port");
    int rc = r->in_trace ? root_trace_scan(r->in_trace, &r->trace, e) : 0;
    if (!rc && r->o->trace_clocks) {
        if (r->trace.n != r->o->ntrace_clocks)
            return rw_errf(e, RW_EINPUT, "%s: %llu packets, but %llu clocks were given for it",
                           r->in_trace, (unsigned long long)r->trace.n,
                           (unsigned long long)r->o->ntrace_clocks);
        r->trace.clocks = r->o->trace_clocks;
    }
    return rc;
}

/* A run that ended well may still not have read its whole trace: a damaged tail
 * (its intact packets were run) is damage, exit 3; a signal before the end is an
 * interruption. Either way the report must not say a partial input was whole. */
static int input_verdict(struct run *r, struct rw_err *e)
{
    if (!r->in_trace)
        return 0; /* a port ends with a signal: that is its normal end */
    if (r->o->stop && *r->o->stop && r->root_st.packets < r->trace.n)
        return rw_errf(e, RW_EINTR,
                       "interrupted by signal %d (%s) after %" PRIu64 " of the trace's %" PRIu64
                       " packets (what was read went through the chain)",
                       *r->o->stop, strsignal(*r->o->stop), r->root_st.packets, r->trace.n);
    if (r->trace.damaged)
        return rw_errf(e, RW_EINPUT, "%s; its %" PRIu64 " intact packets went through the chain",
                       r->trace.problem, r->trace.n);
    return 0;
}

static int run_root(struct run *r, struct rw_err *e)
{
    char dev[4200];
    snprintf(dev, sizeof(dev), r->in_trace ? "net_pcap0,rx_pcap=%s" : "%s",
             r->in_trace ? r->in_trace : r->in_port);
    int rc = rw_eal_init(r->o->eal_argc, r->o->eal_argv, dev, e);
    if (rc)
        return rc;
    r->eal_up = true;
    struct rte_mempool *pool = rw_pool_create("rw_rx", 32767, e);
    if (!pool || (rc = rw_port_start(0, pool, r->chain->max_frame, e)))
        return rc ? rc : RW_EDPDK;
    struct root_ingest_opts ro = {.trace = r->in_trace ? &r->trace : NULL,
                                  .port = 0,
                                  .stop = r->o->stop,
                                  .abort = &r->stop,
                                  .progress = root_progress,
                                  .ctx = r,
                                  .edges = r->redges,
                                  .nedges = r->nredges,
                                  .durable_out = &r->shared->durable,
                                  .clock_out = &r->shared->root_clock,
                                  .rate_pps = r->o->rate_pps,
                                  .exit_clock = &r->sink_st.exit_clock,
                                  .max_in_flight =
                                      r->o->max_in_flight ? r->o->max_in_flight : MAX_IN_FLIGHT};
    r->pipeline_ns = rw_now_ns();
    rc = root_ingest(&ro, r->input_log, &r->root_st, e);
    if (r->o->progress)
        fputc('\n', stderr);
    return rc;
}

/* ---- logs ---- */

static int open_logs(struct run *r, struct rw_err *e)
{
    char path[PATH_MAX];
    struct log_opts lo;
    log_opts_default(&lo);
    lo.durability = (enum rw_durability)r->chain->durability;
    lo.segment_bytes = (uint64_t)r->chain->segment_mb << 20;
    int rc = 0;
    if (!r->o->no_ft) {
        snprintf(path, sizeof(path), "%s/log", r->o->out_dir);
        rc = log_writer_open(path, &lo, &r->input_log, e);
    }
    if (rc)
        return rc;
    /* Output is released once committed (sink.c): at least process durability, and
     * power when the chain asks for it. */
    if (lo.durability == RW_DUR_NONE)
        lo.durability = RW_DUR_PROCESS;
    lo.allow_repeats = r->o->no_dedup;
    snprintf(path, sizeof(path), "%s/output", r->o->out_dir);
    return log_writer_open(path, &lo, &r->output, e);
}

/* ---- the run ---- */

/* Each NF reads its own config; doing it here first means a bad rule is refused
 * with its line and key before any process starts. */
static int check_nf_configs(const struct chain *c, struct rw_err *e)
{
    for (uint32_t k = 0; k < c->nnfs; k++) {
        const struct nf_def *def = nf_find(c->nfs[k].type);
        int rc = def->check ? def->check(&c->nfs[k], e) : 0;
        if (rc)
            return rw_err_prefix(e, "%s:%d: nfs[%u].", c->origin, c->nfs[k].line, k);
        void *self = calloc(1, def->self_size ? def->self_size : 1);
        if (!self)
            return rw_errf(e, RW_ENOMEM, "out of memory");
        rc = def->init(self, c->nfs[k].config, e);
        if (!rc && def->fini)
            def->fini(self);
        free(self);
        if (rc)
            return rc;
    }
    return 0;
}

/* The store holds this run's state only: one that holds an earlier run's is
 * refused (exit 2) or, with --force, cleared. A store inside --out is new (see
 * run_outdir.c); this is for an absolute LMDB path and for Redis. */
static int bind_store(struct run *r, struct rw_err *e)
{
    char run[PATH_MAX + 256], when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    snprintf(run, sizeof(run), "rewind run %s --out %s, started %s, pid %d", r->o->chain_path,
             r->o->out_dir, when, (int)getpid());
    struct store *st;
    int rc = store_open(r->store_url, &st, e);
    if (!rc) {
        rc = store_bind_run(st, run, r->o->force, e);
        store_close(st);
    }
    /* The store's code stays: rw_error.h's table makes a URL the chain got wrong
     * or a store in use exit 2, a full one exit 4. */
    return rc;
}

static int prepare(struct run *r, struct rw_err *e)
{
    int rc = chain_load(r->o->chain_path, nf_types(), &r->chain, e);
    if (!rc && r->o->stragglers) /* --stragglers overrides the chain file's action */
        r->chain->stragglers.action = (enum chain_straggler_action)(r->o->stragglers - 1);
    if (!rc)
        rc = check_nf_configs(r->chain, e);
    if (!rc)
        rc = resolve_input(r, e);
    if (!rc) /* before --out, the store or any link: a chain that cannot fit leaves nothing */
        rc = run_plan(r, e);
    if (rc)
        return rc;
    if (!r->o->no_ft && !strcmp(r->chain->store_url, "mem:"))
        return rw_errf(e, RW_EINVAL,
                       "%s: store mem: is in-process only; a chain needs lmdb: "
                       "or redis://",
                       r->o->chain_path);
    if ((rc = run_prepare_out(r, e)) || (rc = run_reserve_outputs(r, e)) ||
        (rc = run_store_url(r, e)) || (!r->o->no_ft && (rc = bind_store(r, e))) ||
        (rc = make_links(r, e)) || (rc = make_status(r, e)) || (rc = make_root_edges(r, e)) ||
        (rc = open_logs(r, e)))
        return rc;
    return 0;
}

static void cleanup(struct run *r)
{
    if (r->eal_up)
        rw_eal_fini(0);
    root_trace_free(&r->trace);
    log_writer_close(r->input_log, NULL);
    log_writer_close(r->output, NULL);
    free_links(r);
    free(r->sink_in);
    for (unsigned i = 0; r->redges && i < r->nredges; i++)
        link_edge_close(&r->redges[i]);
    free(r->redges);
    if (r->region)
        munmap(r->region, r->region_len);
    if (r->status_fd > 0)
        close(r->status_fd);
    free(r->procs);
    free(r->totals);
    free(r->slots);
    free(r->slot_base);
    free(r->failovers);
    free(r->clones);
    free(r->faults);
    if (r->chain)
        chain_free(r->chain);
}

int run_chain(const struct run_opts *o, struct run_result *res, struct rw_err *e)
{
    struct run r = {.o = o, .status_fd = -1};
    memset(res, 0, sizeof(*res));
    uint64_t t0 = r.t0_ns = rw_now_ns();
    int rc = prepare(&r, e);
    if (!rc)
        rc = run_spawn_workers(&r, e); /* before DPDK: nothing forks a DPDK process */
    if (!rc)
        rc = start_sink(&r, e);
    if (!rc && (rc = run_root(&r, e)))
        r.stop = 1;
    if (o->stop && *o->stop)
        run_calm(&r); /* stopped by a signal: a storm must not hold the drain */
    if (r.shared)     /* the root sent its final marks */
        atomic_store(&r.shared->root_finished, 1);
    if (r.sink_started)
        pthread_join(r.sink_tid, NULL);
    r.pipeline_ns = r.pipeline_ns ? rw_now_ns() - r.pipeline_ns : 0;
    if (!rc && r.sink_rc) {
        rc = r.sink_rc;
        *e = r.sink_err;
    }
    int wrc = run_wait_workers(&r, rc ? 0 : DRAIN_TIMEOUT_MS, rc ? NULL : e);
    if (!rc)
        rc = wrc;
    if (!rc && !o->no_ft) { /* every worker finished: the store is final */
        r.state_run = true;
        rc = run_audit_state(&r, e);
    }
    if (!rc)
        rc = input_verdict(&r, e);
    /* The logs' last commit, before the report: a full disk met there fails the
     * run like any other write. Left to cleanup() it was dropped, and a run whose
     * output log held nothing readable exited 0. */
    struct rw_err le = {0};
    int lrc = log_writer_close(r.output, &le);
    r.output = NULL;
    if (!lrc)
        lrc = log_writer_close(r.input_log, &le);
    else
        log_writer_close(r.input_log, NULL);
    r.input_log = NULL;
    if (!rc && lrc) {
        rc = lrc;
        *e = le;
    }
    res->seconds = (double)(rw_now_ns() - t0) / 1e9;
    res->packets_in = r.root_st.packets;
    res->packets_out = r.sink_st.released;
    res->duplicates = r.sink_st.dups;
    res->failovers = r.nfailovers;
    res->quarantined = run_quarantined(&r);
    res->oversize = r.root_st.oversize;
    res->max_frame = r.chain ? r.chain->max_frame : 0;
    for (uint32_t i = 0; i < r.nfaults; i++)
        if (r.faults[i].action[1] != 'l') /* a slow worker is neither */
            *(r.faults[i].action[0] == 'k' ? &res->kills : &res->stalls) += 1;
    res->clones = r.nclones - r.restarts;
    res->clones_won = r.clones_won;
    if (r.chain && r.region && r.procs && r.totals) {
        struct rw_err qe = {0};
        int qrc = run_quarantine_write(&r, rc ? &qe : e);
        rc = rc ? rc : qrc;
        rc = run_write_outputs(&r, res, rc, e);
        run_chaos_write(&r);
    } else if (r.totals) { /* failed while starting (a full disk): the report says why */
        rc = run_write_outputs(&r, res, rc, e);
    }
    cleanup(&r);
    return rc;
}
