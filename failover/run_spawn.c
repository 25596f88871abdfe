/*
 * run_spawn.c - the worker processes of a run: spawned with libuv (each in its
 * own session, so a Ctrl-C on `rewind run` reaches only the coordinator, which
 * then drains the chain), watched by heartbeat, reaped by the loop thread, and
 * replaced when they fail.
 *
 * Failover (design.md: Invariants, Recovery): a slot's worker that dies (exit, signal) or stops
 * answering (missed heartbeats: it is SIGKILLed, so every failure is fail-stop)
 * is replaced by a hot spare: a `rewind worker --spare` that already loaded the
 * chain, mapped every link and opened the store. The coordinator writes the
 * slot into the spare's status block and wakes it (a futex); the spare claims
 * the slot in the store and replays (nfworker/recover.c). The pool is then
 * topped up. With no spare ready, a fresh one is started already assigned:
 * slower (an exec on the critical path), never a lost slot. With --no-ft there
 * is no state to recover and a failure fails the run, as before.
 *
 * Storms: a status block is used again once its process is reaped (its figures
 * folded into the run's totals), so a run survives any number of failovers
 * with a fixed number of blocks, which is also the cap on live processes. A
 * failover that finds no free block waits for the next reap. A slot whose
 * replacements keep dying before they make any progress (recovered, or W
 * moved by a replay checkpoint) waits a back-off (10 ms doubling to 1 s) before
 * the next: faults that outpace recovery do not turn into a fork storm, and
 * report.json counts the waits.
 */
#include "run_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_ERRORS_IN_ROW 3
#define QUICK_BEFORE_WAIT 3 /* replacements lost before recovering, then back-off */
#define BACKOFF_FIRST_MS  10
#define BACKOFF_MAX_MS    1000

void run_store_name(const struct run *r, char *buf, size_t cap)
{
    const char *u = r->store_url, *at = strchr(u, '@');
    if (!strncmp(u, "redis://", 8) && at) /* never a password in a message */
        snprintf(buf, cap, "redis://%s", at + 1);
    else
        snprintf(buf, cap, "%.*s", (int)strcspn(u, "?"), u);
}

int run_store_url(struct run *r, struct rw_err *e)
{
    const char *u = r->chain->store_url;
    if (!strncmp(u, "lmdb:", 5) && u[5] != '/')
        snprintf(r->store_url, sizeof(r->store_url), "lmdb:%s/%s", r->o->out_dir, u + 5);
    else
        snprintf(r->store_url, sizeof(r->store_url), "%s", u);
    (void)e;
    return 0;
}

/* Arguments and inherited descriptors of one worker, built together: links
 * k[i..i+n) land at child fds fd, fd+1 (memfd, eventfd of k[i]), fd+2, ..., named
 * in --links as k:i:n:fd. A worker gets only the links it can ever use (its
 * slot's, or a spare's NF's: see chain_slot_links), so the descriptors a process
 * needs do not grow with the whole chain. Sizes come from run_plan.c, which
 * refused every chain whose lists would not fit. */
struct spawn_args {
    char *argv[RUN_WORKER_ARGS + 1];
    int nargs;
    uv_stdio_container_t *stdio; /* [run_proc_fds] */
    int nfds, cap_fds;
    char buf[RUN_WORKER_ARGS][PATH_MAX + 64];
    char *links; /* [RUN_LINKS_ARG_MAX] */
    size_t nlinks;
};

static char *arg(struct spawn_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *arg(struct spawn_args *a, const char *fmt, ...)
{
    if (a->nargs >= RUN_WORKER_ARGS)
        abort(); /* a fixed list of options: a programming error, not input */
    char *b = a->buf[a->nargs];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(a->buf[0]), fmt, ap);
    va_end(ap);
    a->argv[a->nargs++] = b;
    return b;
}

static int add_fd(struct spawn_args *a, int fd)
{
    if (a->nfds >= a->cap_fds)
        abort(); /* run_proc_fds counted them: a programming error */
    a->stdio[a->nfds].flags = UV_INHERIT_FD;
    a->stdio[a->nfds].data.fd = fd;
    return a->nfds++;
}

unsigned run_proc_fds(const struct chain *c, uint32_t nf, int inst)
{
    return RUN_WORKER_FIXED_FDS + 2 * chain_slot_links(c, nf, inst, NULL, NULL);
}

struct links_ctx {
    struct run *r;
    struct spawn_args *a;
};

static void add_links(void *ctx, uint32_t k, unsigned i, unsigned n)
{
    struct links_ctx *lc = ctx;
    struct spawn_args *a = lc->a;
    int first = -1;
    for (unsigned j = i; j < i + n; j++) {
        int m = add_fd(a, link_memfd(lc->r->links[k][j]));
        add_fd(a, link_eventfd(lc->r->links[k][j]));
        first = first < 0 ? m : first;
    }
    int w = snprintf(a->links + a->nlinks, RUN_LINKS_ARG_MAX - a->nlinks, "%s%u:%u:%u:%d",
                     a->links[a->nlinks - 1] == '=' ? "" : ",", k, i, n, first);
    if (w < 0 || (size_t)w >= RUN_LINKS_ARG_MAX - a->nlinks)
        abort(); /* run_plan.c refused chains whose lists do not fit */
    a->nlinks += (size_t)w;
}

/* 0, or RW_ENOMEM (nothing to free: free_args is safe either way). */
static int build_args(struct run *r, const struct run_proc *p, struct spawn_args *a)
{
    const struct chain *c = r->chain;
    memset(a, 0, sizeof(*a));
    uint32_t nf = p->slot < 0 ? (uint32_t)p->spare_nf : r->slots[p->slot].nf;
    int inst = p->slot < 0 ? -1 : (int)r->slots[p->slot].instance;
    a->cap_fds = (int)run_proc_fds(c, nf, inst);
    a->stdio = calloc((size_t)a->cap_fds, sizeof(*a->stdio));
    a->links = malloc(RUN_LINKS_ARG_MAX);
    if (!a->stdio || !a->links)
        return RW_ENOMEM;
    for (int fd = 0; fd < 3; fd++)
        add_fd(a, fd);
    a->argv[a->nargs++] = (char *)r->o->self_exe;
    a->argv[a->nargs++] = "worker";
    arg(a, "--chain=%s", r->o->chain_path);
    if (p->slot < 0) {
        arg(a, "--spare=%u", nf);
    } else {
        arg(a, "--nf=%u", nf);
        arg(a, "--instance=%d", inst);
    }
    arg(a, "--status=%d:%u:%u", add_fd(a, r->status_fd), p->index, r->status_cap);
    arg(a, "--out-dir=%s", r->o->out_dir);
    if (r->o->no_ft)
        arg(a, "--no-ft");
    if (r->o->no_dedup)
        arg(a, "--no-dedup");
    a->nlinks = (size_t)snprintf(a->links, RUN_LINKS_ARG_MAX, "--links=");
    chain_slot_links(c, nf, inst, add_links, &(struct links_ctx){.r = r, .a = a});
    a->argv[a->nargs++] = a->links;
    a->argv[a->nargs] = NULL;
    return 0;
}

static void free_args(struct spawn_args *a)
{
    free(a->stdio);
    free(a->links);
    free(a);
}

static void on_close(uv_handle_t *h)
{
    (void)h;
}

static void end_loop_when_idle(struct run *r);
static void assign_slot(struct run *r, uint32_t slot);

/* The block is free again: a failover that found none takes it. */
static void on_proc_close(uv_handle_t *h)
{
    struct run_proc *p = h->data;
    struct run *r = p->r;
    p->used = false;
    for (uint32_t s = 0; s < r->nworkers; s++)
        assign_slot(r, s);
    end_loop_when_idle(r);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig);

static struct run_proc *free_block(struct run *r)
{
    for (uint32_t i = 0; i < r->status_cap; i++)
        if (!r->procs[i].used)
            return &r->procs[i];
    return NULL;
}

/* Starts a worker process for slot (or a spare of NF spare_nf: slot -1;
 * assigned: a spare that is given its slot before it even starts). Loop thread
 * (or before it runs). */
static struct run_proc *spawn_proc(struct run *r, int slot, uint32_t spare_nf, uint32_t assign,
                                   struct rw_err *e)
{
    struct run_proc *p = free_block(r);
    if (!p) {
        rw_errf(e, RW_EIO, "%u worker processes alive, the most this run allows", r->status_cap);
        return NULL;
    }
    struct spawn_args *a = malloc(sizeof(*a));
    if (!a) {
        rw_errf(e, RW_ENOMEM, "out of memory");
        return NULL;
    }
    uint32_t n = (uint32_t)(p - r->procs);
    *p = (struct run_proc){.r = r,
                           .index = n,
                           .slot = slot,
                           .nf = -1,
                           .spare_nf = (int)spare_nf,
                           .failover = -1,
                           .clone_rec = -1,
                           .share = -1};
    if (slot >= 0)
        p->nf = (int)r->slots[slot].nf;
    p->proc.data = p;
    memset(&r->status[n], 0, sizeof(r->status[n]));
    atomic_store(&r->status[n].assign, assign);
    if (build_args(r, p, a)) {
        free_args(a);
        rw_errf(e, RW_ENOMEM, "out of memory");
        return NULL;
    }
    uv_process_options_t po = {.file = r->o->self_exe,
                               .args = a->argv,
                               .exit_cb = on_exit_cb,
                               /* Not UV_PROCESS_DETACHED: a session of its own is
                                * an autogroup of its own, and with the kernel's
                                * autogroups (6.18 here) a killed worker then sat
                                * runnable, unscheduled, for seconds beside two
                                * CPU hogs: failovers waited for its exit. Workers
                                * ignore the terminal's SIGINT themselves. */
                               .flags = 0,
                               .stdio_count = a->nfds,
                               .stdio = a->stdio};
    int u = uv_spawn(&r->loop, &p->proc, &po);
    free_args(a);
    if (u) {
        rw_errf(e, RW_EIO, "cannot start a worker: %s", uv_strerror(u));
        return NULL;
    }
    p->used = true;
    p->running = true;
    p->pid = p->proc.pid;
    atomic_fetch_add(&r->nprocs, 1);
    return p;
}

/* Spares alive, in all (nf < 0) or of one NF. */
static unsigned spares_ready(const struct run *r, int nf)
{
    unsigned n = 0;
    for (uint32_t i = 0; i < r->status_cap; i++)
        n += r->procs[i].used && r->procs[i].running && r->procs[i].slot < 0 &&
             (nf < 0 || r->procs[i].spare_nf == nf);
    return n;
}

/* A spare serves one NF (it holds only that NF's links): the pool is spread over
 * the NFs, the next spare going to the NF with the fewest, the NFs after the
 * last one served first on a tie, so that fewer spares than NFs still rotate. */
static void top_up_spares(struct run *r)
{
    struct rw_err e;
    uint32_t nnfs = r->chain->nnfs;
    while (!r->ending && !r->o->no_ft && nnfs && spares_ready(r, -1) < r->spares_target) {
        uint32_t best = r->spare_next % nnfs;
        unsigned fewest = spares_ready(r, (int)best);
        for (uint32_t j = 1; j < nnfs && fewest; j++) {
            uint32_t k = (r->spare_next + j) % nnfs;
            unsigned m = spares_ready(r, (int)k);
            if (m < fewest)
                best = k, fewest = m;
        }
        if (!spawn_proc(r, -1, best, 0, &e))
            return; /* no room: failovers will start spares assigned */
        r->spare_next = best + 1;
    }
}

void run_top_up_spares(struct run *r)
{
    top_up_spares(r);
}

/* A spare of NF nf that is up and waiting (a clone must not wait for an exec). */
struct run_proc *run_spare_of(struct run *r, uint32_t nf)
{
    for (uint32_t i = 0; i < r->status_cap && !r->ending; i++) {
        struct run_proc *p = &r->procs[i];
        if (p->used && p->running && p->slot < 0 && p->spare_nf == (int)nf &&
            atomic_load(&r->status[p->index].state) == WORKER_SPARE)
            return p;
    }
    return NULL;
}

/* Hands a spare its slot: the assignment word, and a wake-up on it. */
void run_wake(struct run *r, struct run_proc *p, uint32_t assign)
{
    atomic_store(&r->status[p->index].assigned_ns, rw_now_ns());
    atomic_store(&r->status[p->index].assign, assign);
    syscall(SYS_futex, (uint32_t *)&r->status[p->index].assign, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void fail_run(struct run *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Loop thread. Once the run has failed, every beat check does it again: a
 * process started while the flag went up (a failover that had begun) is not
 * left waiting for a log or a mark that will never come. */
static void kill_all(struct run *r)
{
    for (uint32_t j = 0; j < r->status_cap; j++)
        if (r->procs[j].used && r->procs[j].running)
            uv_process_kill(&r->procs[j].proc, SIGKILL);
}

/* Ends the run with code (RW_EIO: a failure; RW_ENOSPC: a full store or disk). */
static void fail_run(struct run *r, int code, const char *fmt, ...)
{
    if (atomic_exchange(&r->failed, 1))
        return;
    r->fail_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail_msg, sizeof(r->fail_msg), fmt, ap);
    va_end(ap);
    r->stop = 1;
    atomic_store(&r->shared->run_over, 1);
    kill_all(r);
}

static void describe_death(const struct run *r, const struct run_proc *p, char *buf, size_t cap)
{
    const struct run_slot *s = &r->slots[p->slot];
    const char *name = r->chain->nfs[s->nf].name;
    if (p->hung)
        snprintf(buf, cap, "%s[%u] %s (%u ms) and was killed", name, s->instance,
                 p->hung_starting ? "did not finish starting" : "stopped answering",
                 p->missed * r->beat_ms);
    else
        snprintf(buf, cap, "%s[%u] %s %d before the end of the run", name, s->instance,
                 p->term_signal ? "was killed by signal" : "exited with status",
                 p->term_signal ? p->term_signal : (int)p->exit_status);
}

/* Logs a failover (the first RUN_FAILOVER_LOG; later ones are only counted);
 * returns its record or -1. */
int64_t run_record_failover(struct run *r, const struct run_proc *dead, uint64_t now)
{
    uint32_t i = r->nfailovers++;
    if (i >= RUN_FAILOVER_LOG)
        return -1;
    if (i == r->cap_failovers) {
        uint32_t cap = r->cap_failovers ? r->cap_failovers * 2 : 64;
        void *v = realloc(r->failovers, cap * sizeof(*r->failovers));
        if (!v)
            return -1;
        r->failovers = v;
        r->cap_failovers = cap;
    }
    const char *reason = dead->hung                     ? "hung"
                         : dead->straggler              ? "straggler"
                         : dead->term_signal == SIGKILL ? "killed"
                         : dead->term_signal            ? "crashed"
                                                        : "exited";
    r->failovers[i] = (struct run_failover){.slot = (uint32_t)dead->slot,
                                            .reason = reason,
                                            .fault_ns = dead->fault_ns ? dead->fault_ns : now,
                                            .detected_ns = now};
    return i;
}

/* Gives a waiting slot to a spare (or a fresh process already assigned). Stays
 * waiting when no status block is free: the next reap tries again. */
static void assign_slot(struct run *r, uint32_t slot)
{
    struct run_slot *s = &r->slots[slot];
    if (!s->waiting || atomic_load(&r->failed) || uv_is_active((uv_handle_t *)&s->backoff))
        return;
    uint32_t assign = WORKER_ASSIGN(s->nf, s->instance);
    struct run_proc *to = NULL;
    /* Once the input is over, the spares have been told to quit and may have
     * read it already: an assignment written now could be missed. The
     * replacement is then a fresh process, given its slot before it starts. */
    for (uint32_t i = 0; i < r->status_cap && !to && !r->ending; i++) {
        struct run_proc *p = &r->procs[i];
        if (p->used && p->running && p->slot < 0 && p->spare_nf == (int)s->nf &&
            atomic_load(&r->status[p->index].state) == WORKER_SPARE)
            to = p;
    }
    for (uint32_t i = 0; i < r->status_cap && !to && !r->ending; i++)
        if (r->procs[i].used && r->procs[i].running && r->procs[i].slot < 0 &&
            r->procs[i].spare_nf == (int)s->nf)
            to = &r->procs[i]; /* still starting: it reads the assignment once up */
    struct rw_err e = {0};
    if (!to && !free_block(r))
        return; /* every block is in use: on_proc_close calls again */
    if (!to && !(to = spawn_proc(r, -1, s->nf, assign, &e))) {
        fail_run(r, RW_EIO, "%s[%u] failed, and no replacement could be started: %s",
                 r->chain->nfs[s->nf].name, s->instance, e.msg);
        return;
    }
    to->slot = (int)slot;
    to->nf = (int)s->nf;
    to->replacement = true;
    to->failover = s->wait_rec;
    run_wake(r, to, assign);
    s->proc = to;
    s->w_at_assign = atomic_load(&r->shared->slot_w[slot]);
    s->waiting = false;
    atomic_fetch_sub(&r->nwaiting, 1);
    top_up_spares(r);
}

static void on_backoff(uv_timer_t *t)
{
    struct run *r = t->loop->data;
    assign_slot(r, (uint32_t)((struct run_slot *)t->data - r->slots));
}

/* The dead worker's slot waits for a replacement: at once, or after a back-off
 * when its replacements keep dying before they recover. */
static void fail_over(struct run *r, struct run_proc *dead, bool progress)
{
    uint64_t now = rw_now_ns();
    struct run_slot *s = &r->slots[dead->slot];
    /* Quick: lost before it recovered and without moving W (a replay checkpoints
     * W as it goes, so a replacement killed mid-replay still made progress), and
     * not on a packet just quarantined (the next one will get past it). */
    bool quick = !progress && dead->replacement &&
                 !atomic_load(&r->status[dead->index].recovered_ns) &&
                 atomic_load(&r->shared->slot_w[dead->slot]) == s->w_at_assign;
    s->quick = quick ? s->quick + 1 : 0;
    s->proc = NULL;
    s->waiting = true;
    s->wait_rec = run_record_failover(r, dead, now);
    atomic_fetch_add(&r->nwaiting, 1);
    if (s->quick >= QUICK_BEFORE_WAIT) {
        unsigned k = s->quick - QUICK_BEFORE_WAIT, ms = BACKOFF_FIRST_MS;
        while (k-- && ms < BACKOFF_MAX_MS)
            ms *= 2;
        ms = ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
        r->backoffs++;
        if (s->wait_rec >= 0)
            r->failovers[s->wait_rec].backoff_ms = ms;
        uv_timer_start(&s->backoff, on_backoff, ms, 0);
        return;
    }
    assign_slot(r, (uint32_t)dead->slot);
}

/* A reaped process's figures go into its NF's totals, and its replay's into
 * the failover it served, before its status block is used again. */
static void fold(struct run *r, struct run_proc *p)
{
    const struct worker_status *st = &r->status[p->index];
    if (p->failover >= 0) {
        r->failovers[p->failover].recovered_ns = atomic_load(&st->recovered_ns);
        r->failovers[p->failover].replayed = atomic_load(&st->replayed);
    }
    if (p->clone_rec >= 0 && (uint32_t)p->clone_rec < r->nclones &&
        p->clone_rec < RUN_FAILOVER_LOG) {
        r->clones[p->clone_rec].replayed = atomic_load(&st->replayed);
        if (!p->is_clone && atomic_load(&st->recovered_ns)) /* it took the slot: live since */
            r->clones[p->clone_rec].live_ns = atomic_load(&st->recovered_ns);
    }
    if (p->nf < 0)
        return;
    struct run_nf_total *t = &r->totals[p->nf];
    t->pkts_in += atomic_load(&st->pkts_in);
    t->pkts_out += atomic_load(&st->pkts_out);
    t->dropped += atomic_load(&st->dropped);
    t->dups += atomic_load(&st->dups);
    t->store_ops += atomic_load(&st->store_ops);
    t->store_batches += atomic_load(&st->store_batches);
    t->store_local_reads += atomic_load(&st->store_local_reads);
    for (int b = 0; b < RW_LAT_BUCKETS; b++)
        t->lat[b] += atomic_load(&st->lat[b]);
    for (int c = 0; c < NF_COUNTERS && st->counters[c].name[0]; c++) {
        unsigned j = 0;
        while (j < t->ncounters && strncmp(t->names[j], st->counters[c].name, sizeof(t->names[0])))
            j++;
        if (j == t->ncounters && j < NF_COUNTERS * 4) {
            memcpy(t->names[j], st->counters[c].name, sizeof(t->names[0]));
            t->names[j][sizeof(t->names[0]) - 1] = '\0';
            t->sums[t->ncounters++] = 0;
        }
        if (j < t->ncounters)
            t->sums[j] += atomic_load(&st->counters[c].value);
    }
}

/* The loop ends once every process is reaped, not when the input ends: the
 * heartbeat timer, its last handle, stays until then, so that a worker that
 * hangs in the drain is still caught and failed over. */
static void end_loop_when_idle(struct run *r)
{
    if (!r->ending || uv_is_closing((uv_handle_t *)&r->beat_timer))
        return;
    for (uint32_t i = 0; i < r->status_cap; i++)
        if (r->procs[i].used)
            return;
    for (uint32_t s = 0; s < r->nworkers; s++)
        if (r->slots[s].waiting && !atomic_load(&r->failed))
            return;
    uv_close((uv_handle_t *)&r->beat_timer, on_close);
    for (uint32_t s = 0; s < r->nworkers; s++)
        uv_close((uv_handle_t *)&r->slots[s].backoff, on_close);
}

static void on_exit_cb(uv_process_t *pp, int64_t status, int sig)
{
    struct run_proc *p = pp->data;
    struct run *r = p->r;
    p->running = false;
    p->exit_status = status;
    p->term_signal = sig;
    fold(r, p);
    /* A worker that had finished its slot (final marks sent, store watermark
     * final) may die without consequence. Any other slot's worker lost, even in
     * the drain after the input ended, is failed over: until the flag is up,
     * nothing says the slot's store and marks are complete. */
    bool finished = p->slot >= 0 && atomic_load(&r->shared->slot_finished[p->slot]);
    bool clean = (!status && !sig) || finished;
    int q;
    if (p->slot >= 0 && r->slots[p->slot].proc == p)
        r->slots[p->slot].proc = NULL; /* its block will serve another process */
    if (!atomic_load(&r->failed) && run_stragglers_exit(r, p, clean)) {
        /* a clone's exit, or a cloned worker's: its clone has the slot now */
    } else if (!clean && !atomic_load(&r->failed)) {
        if (p->slot < 0) {
            top_up_spares(r); /* a spare died: only the pool is short */
        } else if (r->o->no_ft) {
            char why[200];
            describe_death(r, p, why, sizeof(why));
            fail_run(r, RW_EIO, "%s", why);
        } else if (!sig && (status == WORKER_EXIT_FULL || status == WORKER_EXIT_DISK)) {
            /* A replacement would meet the same full store: the run stops. */
            const struct run_slot *s = &r->slots[p->slot];
            char where[200];
            run_store_name(r, where, sizeof(where));
            if (status == WORKER_EXIT_DISK)
                fail_run(r, RW_ENOSPC,
                         "%s[%u]: the disk under the state store %s is full (No space left on "
                         "device); free room on it and run again",
                         r->chain->nfs[s->nf].name, s->instance, where);
            else
                fail_run(r, RW_ENOSPC,
                         "%s[%u]: the state store %s is full; give it more room (?map=MiB in the "
                         "chain's store URL for LMDB, maxmemory for Redis) and run again",
                         r->chain->nfs[s->nf].name, s->instance, where);
        } else if (!sig && status == WORKER_EXIT_STALLED) {
            const struct run_slot *s = &r->slots[p->slot];
            char where[200];
            run_store_name(r, where, sizeof(where));
            fail_run(r, RW_ESTALLED,
                     "%s[%u]: the state store %s did not answer in time (stalled or "
                     "overloaded); the run stops rather than fail over to a worker that would "
                     "wait on it too",
                     r->chain->nfs[s->nf].name, s->instance, where);
        } else if (!sig && ++r->slots[p->slot].errors >= MAX_ERRORS_IN_ROW) {
            /* A worker that reports an error (not a kill) would most likely do it
             * again: a few tries, then the run fails instead of looping. */
            char why[200];
            describe_death(r, p, why, sizeof(why));
            fail_run(r, RW_EIO, "%s (%u times in a row; the workers' messages say why)", why,
                     r->slots[p->slot].errors);
        } else if ((q = run_quarantine_death(r, p)) < 0) {
            const struct run_slot *s = &r->slots[p->slot];
            fail_run(r, RW_EIO,
                     "%s[%u] keeps crashing on its input: %d packets of death quarantined "
                     "already, the most a run takes (see quarantine.pcapng)",
                     r->chain->nfs[s->nf].name, s->instance, WORKER_MAX_QUARANTINE);
        } else {
            fail_over(r, p, q > 0);
        }
    }
    atomic_fetch_add(&r->exited, 1);
    uv_close((uv_handle_t *)pp, on_proc_close);
}

/* From run_wait_workers, through uv_async: no more faults or spares; spares are
 * told to leave; the loop ends once every process is reaped. */
static void on_quit(uv_async_t *a)
{
    struct run *r = a->data;
    r->ending = true;
    run_chaos_stop(r, "end of run");
    for (uint32_t i = 0; i < r->status_cap; i++) {
        struct run_proc *p = &r->procs[i];
        if (p->used && p->running && p->slot < 0) {
            atomic_store(&r->status[p->index].assign, WORKER_QUIT);
            syscall(SYS_futex, (uint32_t *)&r->status[p->index].assign, FUTEX_WAKE, 1, NULL, NULL,
                    0);
        }
    }
    uv_close((uv_handle_t *)a, on_close);
    uv_close((uv_handle_t *)&r->calm, on_close);
    end_loop_when_idle(r);
}

static void on_calm(uv_async_t *a)
{
    run_chaos_stop(a->data, "signal");
}

void run_calm(struct run *r)
{
    if (r->uv_started)
        uv_async_send(&r->calm);
}

/* ": fw[0] (pid 12, running), a spare (pid 14)": the processes still there, for
 * a message about a run that could not end. */
static void still_there(const struct run *r, char *who, size_t cap)
{
    size_t n = 0;
    who[0] = '\0';
    for (uint32_t j = 0; j < r->status_cap && n < cap; j++) {
        const struct run_proc *p = &r->procs[j];
        if (!p->used || !p->running)
            continue;
        const struct run_slot *s = p->slot >= 0 ? &r->slots[p->slot] : NULL;
        int k = s ? snprintf(who + n, cap - n, "%s %s[%u] (pid %d, %s)", n ? "," : ":",
                             r->chain->nfs[s->nf].name, s->instance, p->pid,
                             worker_state_name(atomic_load(&r->status[p->index].state)))
                  : snprintf(who + n, cap - n, "%s a spare (pid %d)", n ? "," : ":", p->pid);
        n += k > 0 ? (size_t)k : 0;
    }
}

/* SIGINT/SIGTERM/SIGHUP: the drain goes on while the chain releases output; one
 * that releases nothing for RUN_STOP_STUCK_MS is given up (the sink stops, the
 * workers are killed), with RW_EINTR: the stop the operator asked for, and why
 * it could not drain. */
static void check_stop(struct run *r)
{
    if (!r->o->stop || !*r->o->stop)
        return;
    run_chaos_stop(r, "signal");
    uint64_t now = rw_now_ns(), exit_clock = atomic_load(&r->sink_st.exit_clock);
    if (!r->drain_moved_ns || exit_clock != r->drain_exit) {
        r->drain_exit = exit_clock;
        r->drain_moved_ns = now;
        return;
    }
    if (now - r->drain_moved_ns < (uint64_t)RUN_STOP_STUCK_MS * 1000000ull ||
        atomic_load(&r->failed))
        return;
    char who[200];
    still_there(r, who, sizeof(who));
    fail_run(r, RW_EINTR,
             "interrupted by signal %d (%s); the drain released nothing for %d ms and was given "
             "up%s",
             *r->o->stop, strsignal(*r->o->stop), RUN_STOP_STUCK_MS, who);
}

/* Heartbeats: a running worker bumps its counter every loop turn and at least
 * every 100 ms while idle (a spare every 50 ms). One that misses `misses` checks
 * in a row is hung: it is killed, and its exit is then a failure like any other. */
static void on_beat_check(uv_timer_t *t)
{
    struct run *r = t->data;
    /* SIGINT/SIGTERM/SIGHUP at any moment (start-up, the drain): the main thread
     * may be blocked joining the sink, so the loop looks for itself. */
    check_stop(r);
    if (atomic_load(&r->failed)) {
        kill_all(r);
        end_loop_when_idle(r);
        return;
    }
    for (uint32_t j = 0; j < r->status_cap; j++) {
        struct run_proc *p = &r->procs[j];
        if (!p->used)
            continue;
        const struct worker_status *st = &r->status[p->index];
        uint64_t beat = atomic_load(&st->heartbeat);
        bool started = atomic_load(&st->state) != WORKER_STARTING;
        if (p->slot >= 0 && atomic_load(&st->state) == WORKER_RUNNING)
            r->slots[p->slot].errors = 0; /* it got past its replay */
        if (!p->running || (started && beat != p->last_beat)) {
            p->last_beat = beat;
            p->missed = 0;
            continue;
        }
        /* Starting up (chain file, store) may take longer than a loop turn: it gets
         * ten times the budget, but a worker stuck there is hung all the same. */
        unsigned limit = started ? r->beat_misses : r->beat_misses * 10;
        if (++p->missed == limit) {
            p->hung = true;
            p->hung_starting = !started;
            uv_process_kill(&p->proc, SIGKILL);
        }
    }
    run_stragglers_check(r);
    end_loop_when_idle(r); /* a run given up while a failover waited */
}

static void loop_thread(void *arg)
{
    struct run *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
}

int run_spawn_workers(struct run *r, struct rw_err *e)
{
    if (uv_loop_init(&r->loop))
        return rw_errf(e, RW_EIO, "libuv loop");
    r->loop.data = r;
    r->procs = calloc(r->status_cap, sizeof(*r->procs));
    if (!r->procs || !r->totals)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    for (uint32_t s = 0; s < r->nworkers; s++) {
        uv_timer_init(&r->loop, &r->slots[s].backoff);
        r->slots[s].backoff.data = &r->slots[s];
    }
    int rc = 0;
    for (uint32_t s = 0; s < r->nworkers && !rc; s++) {
        struct run_proc *p = spawn_proc(r, (int)s, 0, 0, e);
        if (!p)
            rc = RW_EIO;
        else
            r->slots[s].proc = p;
    }
    r->spares_target = r->o->no_ft ? 0 : r->o->spares;
    if (!rc)
        top_up_spares(r);
    r->beat_ms = r->o->heartbeat_ms ? r->o->heartbeat_ms : 100;
    r->beat_misses = r->o->heartbeat_misses ? r->o->heartbeat_misses : 20;
    uv_timer_init(&r->loop, &r->beat_timer);
    r->beat_timer.data = r;
    uv_async_init(&r->loop, &r->quit, on_quit);
    r->quit.data = r;
    uv_async_init(&r->loop, &r->calm, on_calm);
    r->calm.data = r;
    uv_timer_start(&r->beat_timer, on_beat_check, r->beat_ms, r->beat_ms);
    run_chaos_start(r);
    if (uv_thread_create(&r->uv_tid, loop_thread, r))
        return rc ? rc : rw_errf(e, RW_EIO, "cannot start the libuv thread");
    r->uv_started = true;
    return rc;
}

/* The drain took too long: the run fails, naming who was still there. The flag
 * goes up before the kills, so that no exit they cause starts a replacement;
 * one the loop thread was starting meanwhile is killed by a later pass. Main
 * thread: kill(2), not libuv. */
static void give_up(struct run *r, int timeout_ms)
{
    char who[200];
    still_there(r, who, sizeof(who));
    if (!atomic_exchange(&r->failed, 1) && (r->fail_code = RW_EIO))
        snprintf(r->fail_msg, sizeof(r->fail_msg),
                 "workers did not finish within %d ms of the end of input%s", timeout_ms, who);
    atomic_store(&r->shared->run_over, 1);
    while (atomic_load(&r->exited) < atomic_load(&r->nprocs)) {
        for (uint32_t j = 0; j < r->status_cap; j++)
            if (r->procs[j].used && r->procs[j].running && r->procs[j].pid > 0)
                kill(r->procs[j].pid, SIGKILL);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

int run_wait_workers(struct run *r, int timeout_ms, struct rw_err *e)
{
    if (!r->uv_started)
        return 0;
    uv_async_send(&r->quit);
    uint64_t deadline = rw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while ((atomic_load(&r->exited) < atomic_load(&r->nprocs) || atomic_load(&r->nwaiting)) &&
           rw_now_ns() < deadline) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&r->exited) < atomic_load(&r->nprocs) || atomic_load(&r->nwaiting))
        give_up(r, timeout_ms);
    uv_thread_join(&r->uv_tid);
    uv_loop_close(&r->loop);
    if (atomic_load(&r->failed))
        return rw_errf(e, r->fail_code, "%s", r->fail_msg);
    return 0;
}
