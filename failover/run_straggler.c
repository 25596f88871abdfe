/*
 * run_straggler.c - slow workers (design.md: Stragglers): found, cloned, and
 * the slower copy retired.
 *
 * A straggler keeps answering heartbeats, so failover never sees it, yet the
 * whole chain waits for it: its marks hold the merge of every NF after it and
 * the sink's release. What makes a worker slow without its input being heavier
 * is the CPU it is given (a noisy neighbour, a throttled cgroup, a sick core),
 * so that is what is measured: each worker adds up the wall time and the CPU
 * time of the stretches it had input waiting (worker.c, busy_sample), and at
 * every heartbeat check the coordinator turns the increments into a share.
 * A worker whose share stays `factor` times below the reference for `for_ms`
 * is a straggler. The reference is the median share of the run's other busy
 * workers (a machine that is loaded as a whole slows everyone alike and flags
 * no one), or when no other worker is busy (one instance: its own NF has no
 * peer to compare with) what the machine could have given it (reference()).
 *
 * Clone (the default action): a hot spare of the NF is assigned as a clone: it
 * tails the input log from the slot's W, through the upstream NFs, with its
 * outputs held (nfworker/recover.c), and never past what the worker has
 * applied (its flushed W), so it never writes the slot's objects ahead of the
 * worker (whose plain reads of them stay right) and never reads them before
 * the worker's writes are in the store (it reads as of its position, as any
 * replay). Having started behind, a clone that reaches that W is the faster
 * copy: the worker is retired (SIGKILL, the fail-stop every failure here is)
 * and, once it is reaped, the clone takes the slot (claim, links, held
 * outputs, W) and replays what is left like any replacement. A worker that is
 * fast again for 4 x for_ms before that retires the clone. A worker that dies
 * for any reason while cloned hands its slot to the clone, not to a new spare;
 * a clone that dies leaves the slot to its worker.
 *
 * Restart: the straggler is killed and failed over to a spare (reason
 * "straggler"): enough when the slowness is the process's own, and one
 * process's CPU cheaper than a clone's replay.
 */
#include "run_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A worker busy less than this part of a check interval has no share worth
 * judging: it kept up, or it was just given input. */
#define BUSY_MIN_PART 0.5
/* A clone is retired when its worker is fast again for this many for_ms. */
#define FAST_AGAIN_FOR 4

static int64_t clone_record(struct run *r, uint32_t slot, double share, double ref)
{
    uint32_t i = r->nclones++;
    if (i >= RUN_FAILOVER_LOG)
        return -1;
    if (i == r->cap_clones) {
        uint32_t cap = r->cap_clones ? r->cap_clones * 2 : 16;
        void *v = realloc(r->clones, cap * sizeof(*r->clones));
        if (!v)
            return -1;
        r->clones = v;
        r->cap_clones = cap;
    }
    r->clones[i] = (struct run_clone){
        .slot = slot, .share = share, .ref = ref, .detected_ns = rw_now_ns(), .outcome = "asked"};
    return i;
}

static struct run_clone *rec_of(struct run *r, int64_t i)
{
    return i >= 0 && (uint32_t)i < r->nclones ? &r->clones[i] : NULL;
}

static void end_record(struct run *r, int64_t i, const char *outcome)
{
    struct run_clone *c = rec_of(r, i);
    if (c && !c->ended_ns) {
        c->ended_ns = rw_now_ns();
        c->outcome = outcome;
    }
}

/* The share of CPU p got while busy since the last check, or -1. */
static void sample(struct run *r, struct run_proc *p)
{
    const struct worker_status *st = &r->status[p->index];
    uint64_t wall = atomic_load(&st->busy_wall_ns), cpu = atomic_load(&st->busy_cpu_ns);
    uint64_t dw = wall - p->prev_wall, dc = cpu - p->prev_cpu;
    p->prev_wall = wall;
    p->prev_cpu = cpu;
    p->share = (double)dw >= BUSY_MIN_PART * r->beat_ms * 1e6 ? (double)dc / (double)dw : -1;
}

static int by_share(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* How many CPUs the machine left idle, on average, since the last check
 * (/proc/stat: idle and iowait over all). */
static void sample_machine(struct run *r)
{
    r->idle_cpus = -1;
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                       &v[4], &v[5], &v[6], &v[7])
              : 0;
    if (f)
        fclose(f);
    if (n < 5)
        return;
    uint64_t idle = v[3] + v[4], total = 0;
    for (int i = 0; i < n; i++)
        total += v[i];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (r->cpu_total && total > r->cpu_total && cpus > 0)
        r->idle_cpus = (double)(idle - r->cpu_idle) / (double)(total - r->cpu_total) * (double)cpus;
    r->cpu_idle = idle;
    r->cpu_total = total;
}

/* The median share of the busy slot workers other than slot s; with none (one
 * worker in the run), what the machine could have given one process: a CPU
 * when it left half a CPU idle meanwhile (a straggler that is stopped, or
 * starved by its own cgroup, leaves the machine idle around it), else the CPUs
 * over the processes that want them (a 2-core host running 8 gives each about
 * a quarter: a lone worker there is not slow). A load average does not serve:
 * it remembers the last minute, and after a busy minute a lone straggler on an
 * idle host was not told apart (a test run, nothing cloned). */
static double reference(struct run *r, uint32_t s, double *buf)
{
    unsigned n = 0;
    for (uint32_t k = 0; k < r->nworkers; k++) {
        const struct run_proc *p = r->slots[k].proc;
        if (k != s && p && p->running && p->share >= 0)
            buf[n++] = p->share;
    }
    if (!n) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (r->idle_cpus < 0 || r->idle_cpus >= 0.5 || cpus < 1)
            return 1.0;
        unsigned running = 0, all = 0;
        FILE *f = fopen("/proc/loadavg", "r"); /* its 4th field: runnable now / all */
        if (!f || fscanf(f, "%*f %*f %*f %u/%u", &running, &all) != 2)
            running = 0;
        if (f)
            fclose(f);
        return running > (unsigned)cpus ? (double)cpus / running : 1.0;
    }
    qsort(buf, n, sizeof(*buf), by_share);
    return n % 2 ? buf[n / 2] : (buf[n / 2 - 1] + buf[n / 2]) / 2;
}

/* A spare of the straggler's NF becomes its clone. */
static void start_clone(struct run *r, uint32_t s, struct run_proc *c, double share, double ref)
{
    struct run_slot *sl = &r->slots[s];
    c->slot = (int)s;
    c->nf = (int)sl->nf;
    c->is_clone = true;
    c->clone_rec = clone_record(r, s, share, ref);
    sl->clone = c;
    sl->fast_since = 0;
    struct run_clone *rec = rec_of(r, c->clone_rec);
    if (rec) {
        rec->started_ns = rw_now_ns();
        rec->outcome = "running";
    }
    atomic_store(&r->status[c->index].clone, 1);
    run_wake(r, c, WORKER_ASSIGN(sl->nf, sl->instance));
    run_top_up_spares(r);
}

static void retire(struct run_proc *p)
{
    p->retired = true;
    uv_process_kill(&p->proc, SIGKILL);
}

/* A cloned slot: the copy ahead stays. */
static void watch_clone(struct run *r, uint32_t s, bool slow, uint64_t now)
{
    struct run_slot *sl = &r->slots[s];
    struct run_proc *w = sl->proc, *c = sl->clone;
    if (!w || !c->running || c->retired || w->retired)
        return;
    uint64_t pos = atomic_load(&r->status[c->index].clone_pos);
    uint64_t mark = atomic_load(&r->shared->slot_w[s]) + 1; /* what the worker applied */
    /* Caught up: it started behind, at the slot's W, so reaching the worker's
     * W again shows it is the faster. It may not go ahead (it would write the
     * slot's objects before the worker reads them), and could not by much: the
     * input is held back by the straggler, so the log it tails grows at the
     * straggler's pace (measured: the clone at the log's head, within one
     * replay chunk of the worker's mark). */
    if (pos && pos >= mark && !sl->fast_since) {
        retire(w);
        return;
    }
    sl->fast_since = slow || pos >= mark ? 0 : sl->fast_since ? sl->fast_since : now;
    if (sl->fast_since &&
        now - sl->fast_since >= (uint64_t)FAST_AGAIN_FOR * r->chain->stragglers.for_ms * 1000000ull)
        retire(c);
}

void run_stragglers_check(struct run *r)
{
    const struct chain_stragglers *pol = &r->chain->stragglers;
    if (r->o->no_ft || pol->action == CHAIN_STRAGGLER_OFF || atomic_load(&r->failed))
        return;
    double buf[WORKER_MAX_SLOTS];
    sample_machine(r);
    for (uint32_t s = 0; s < r->nworkers; s++)
        if (r->slots[s].proc && r->slots[s].proc->running)
            sample(r, r->slots[s].proc);
    uint64_t now = rw_now_ns(), for_ns = (uint64_t)pol->for_ms * 1000000ull;
    for (uint32_t s = 0; s < r->nworkers; s++) {
        struct run_slot *sl = &r->slots[s];
        struct run_proc *p = sl->proc;
        bool live = p && p->running && !p->retired && !p->straggler &&
                    atomic_load(&r->status[p->index].state) == WORKER_RUNNING &&
                    !atomic_load(&r->shared->slot_finished[s]);
        double ref = live ? reference(r, s, buf) : 1.0;
        bool slow = live && p->share >= 0 && p->share * pol->factor < ref;
        if (sl->clone) {
            watch_clone(r, s, slow, now);
            continue;
        }
        /* A check with no share (busy under half the interval) is no evidence
         * either way: a lone straggler that is stopped most of the time, with
         * the input paused behind it, publishes its stretches in bursts, and
         * every other check saw none (measured: a 50x NAT never flagged in
         * 27 s). It resets only once a whole for_ms passes without a slow one
         * (the input ended, or the worker caught up). */
        bool unknown = live && p->share < 0 && sl->slow_since && now - sl->slow_seen < for_ns;
        if (unknown)
            continue;
        if (!slow || r->ending) {
            sl->slow_since = 0;
            continue;
        }
        sl->slow_seen = now;
        if (!sl->slow_since)
            sl->slow_since = now;
        if (now - sl->slow_since < for_ns)
            continue;
        sl->slow_since = 0;
        if (pol->action == CHAIN_STRAGGLER_RESTART) {
            end_record(r, clone_record(r, s, p->share, ref), "restart");
            r->restarts++;
            p->straggler = true;
            uv_process_kill(&p->proc, SIGKILL);
            continue;
        }
        struct run_proc *c = run_spare_of(r, sl->nf);
        if (c) /* else no spare of its NF is up yet: the next check */
            start_clone(r, s, c, p->share, ref);
    }
}

bool run_stragglers_exit(struct run *r, struct run_proc *p, bool clean)
{
    if (p->slot < 0)
        return false;
    uint32_t s = (uint32_t)p->slot;
    struct run_slot *sl = &r->slots[s];
    if (p->is_clone) { /* gone before it took the slot: its worker keeps it */
        struct run_clone *rec = rec_of(r, p->clone_rec);
        if (rec)
            rec->replayed = atomic_load(&r->status[p->index].replayed);
        if (sl->clone == p) {
            sl->clone = NULL;
            atomic_store(&r->shared->slot_hold[s], 0);
        }
        *(p->retired ? &r->workers_won : &r->clones_lost) += 1;
        end_record(r, p->clone_rec, p->retired ? "worker" : "clone lost");
        return true;
    }
    struct run_proc *c = sl->clone;
    if (!c || sl->proc)
        return false;
    if (clean || !c->running) { /* the slot is done: the clone has nothing to take */
        if (c->running)
            retire(c);
        return false;
    }
    /* The worker is gone (retired, or a fault of its own): the clone has the
     * slot; it claims it, takes the links and goes live (recover.c, take_slot). */
    if (!p->retired && p->term_signal && p->term_signal != SIGKILL)
        run_quarantine_death(r, p); /* a packet of death: the clone skips it too */
    sl->clone = NULL;
    sl->proc = c;
    c->is_clone = false;
    c->replacement = true;
    if (!p->retired)
        c->failover = run_record_failover(r, p, rw_now_ns());
    struct run_clone *rec = rec_of(r, c->clone_rec);
    if (rec)
        rec->live_ns = rw_now_ns();
    r->clones_won++;
    end_record(r, c->clone_rec, p->retired ? "clone" : "clone (worker died)");
    atomic_store(&r->status[c->index].takeover, 1);
    sl->w_at_assign = atomic_load(&r->shared->slot_w[s]);
    return true;
}
