/*
 * run_chaos.c - `rewind chaos`: faults on a schedule while the chain runs.
 *
 * Two libuv timers on the coordinator's loop: every --kill-every ms a random
 * slot's worker gets SIGKILL; every --stall-every ms one gets SIGSTOP, and
 * SIGCONT --stall-ms later (a stall longer than the heartbeat budget becomes a
 * hang, which the coordinator turns into a kill). Victims are drawn from a
 * xorshift generator seeded by --seed, so a schedule can be repeated; which
 * packet a fault lands on still depends on timing. Every fault is written to
 * OUT/chaos.json with its time, victim and pid.
 *
 * A slow worker (--slow NF[I]:F, --slow-every MS) is a straggler on purpose:
 * a timer of its own stops it for F - 1 ms and lets it run for 1 ms, over and
 * over, until it dies (the slowness belongs to the process, as a sick core's
 * or a throttled cgroup's would), the faults stop, or --slow's MS have passed
 * (a straggler that gets well by itself). It keeps beating within
 * the heartbeat budget, so failover never sees it: only the straggler policy.
 */
#include "run_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct stall {
    uv_timer_t t;
    struct run_proc *p;
};

static uint64_t next_rand(struct run *r)
{
    uint64_t x = r->rng ? r->rng : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->rng = x;
}

/* A random slot's worker, running and past its start-up: in its loop, or a
 * replacement still replaying (state 4: a spare given the slot). Not one
 * already killed and not yet reaped (an ASan process can take longer to die
 * than a kill period): a second kill would count a fault that is not one. */
#define CHAOS_QUICK 3

static struct run_proc *victim(struct run *r)
{
    if (!r->nworkers)
        return NULL;
    /* One random slot; a period whose slot has no worker to take the fault
     * passes without one. So each slot sees a fault every nworkers periods on
     * average, whatever the others do: always picking an available slot instead
     * turned a storm on 8 slots into one on the last slot left, killed every
     * period until it could never finish its replay on a loaded machine. */
    uint32_t s = (uint32_t)(next_rand(r) % r->nworkers);
    struct run_proc *p = r->slots[s].proc;
    uint32_t st = p ? atomic_load(&r->status[p->index].state) : 0;
    if (!p || !p->used || p->slot != (int)s || !p->running || p->fault_ns ||
        (st != WORKER_RUNNING && st != WORKER_SPARE))
        return NULL;
    /* A slot that has finished (final marks sent) is not a target: its worker
     * may exit without consequence (run_spawn.c, on_exit_cb), so a kill there is
     * no fault. While some slots drain after the input ended, a loaded machine
     * otherwise spent several kills on finished workers. */
    if (atomic_load(&r->shared->slot_finished[s]))
        return NULL;
    /* After CHAOS_QUICK replacements in a row were lost before moving the
     * slot's W, the next one is spared until it moves W: each started from the
     * same W, and a single-instance NF in Debug on a loaded host was killed
     * every period for ever (portscan, 19 min: the input never ended, so
     * neither did the storm). Kills during a replay still happen before that. */
    if (p->replacement && r->slots[s].quick >= CHAOS_QUICK &&
        atomic_load(&r->shared->slot_w[s]) == r->slots[s].w_at_assign)
        return NULL;
    return p;
}

static void note(struct run *r, const char *action, const struct run_proc *p, unsigned ms)
{
    if (r->nfaults == r->cap_faults) {
        uint32_t cap = r->cap_faults ? r->cap_faults * 2 : 64;
        void *v = realloc(r->faults, cap * sizeof(*r->faults));
        if (!v)
            return;
        r->faults = v;
        r->cap_faults = cap;
    }
    struct run_fault *f = &r->faults[r->nfaults++];
    *f = (struct run_fault){
        .at_ns = rw_now_ns(), .slot = (uint32_t)p->slot, .pid = p->pid, .ms = ms};
    snprintf(f->action, sizeof(f->action), "%s", action);
}

static void on_kill(uv_timer_t *t)
{
    struct run *r = t->data;
    struct run_proc *p = r->ending ? NULL : victim(r);
    if (!p)
        return;
    note(r, "kill", p, 0);
    p->fault_ns = rw_now_ns();
    uv_process_kill(&p->proc, SIGKILL);
}

static void on_stall_close(uv_handle_t *h)
{
    free(h->data);
}

static void on_resume(uv_timer_t *t)
{
    struct stall *s = t->data;
    if (s->p->running)
        uv_process_kill(&s->p->proc, SIGCONT);
    uv_close((uv_handle_t *)t, on_stall_close);
}

static void on_stall(uv_timer_t *t)
{
    struct run *r = t->data;
    struct run_proc *p = r->ending ? NULL : victim(r);
    struct stall *s = p ? calloc(1, sizeof(*s)) : NULL;
    if (!s)
        return;
    note(r, "stall", p, r->o->stall_ms);
    s->p = p;
    uv_timer_init(&r->loop, &s->t);
    s->t.data = s;
    uv_process_kill(&p->proc, SIGSTOP);
    uv_timer_start(&s->t, on_resume, r->o->stall_ms ? r->o->stall_ms : 1, 0);
}

struct slow {
    uv_timer_t t;
    struct run *r;
    struct run_proc *p;
    int pid;
    unsigned factor;
    uint64_t until_ns; /* it recovers then (0: never) */
    bool stopped;
};

static void on_slow_close(uv_handle_t *h)
{
    free(h->data);
}

/* One step of the duty cycle: run 1 ms, stopped factor - 1 ms. */
static void on_slow_tick(uv_timer_t *t)
{
    struct slow *w = t->data;
    bool alive = w->p->used && w->p->running && w->p->pid == w->pid;
    if (!alive || w->r->chaos_stopped || (w->until_ns && rw_now_ns() >= w->until_ns)) {
        if (alive && w->stopped)
            uv_process_kill(&w->p->proc, SIGCONT);
        uv_close((uv_handle_t *)t, on_slow_close);
        return;
    }
    /* Slow in its loop, not while it starts: a start-up 10 times slower only
     * delays the run, and nothing can be cloned before the slot runs. */
    if (!w->stopped && atomic_load(&w->r->status[w->p->index].state) == WORKER_STARTING) {
        uv_timer_start(t, on_slow_tick, 1, 0);
        return;
    }
    w->stopped = !w->stopped;
    uv_process_kill(&w->p->proc, w->stopped ? SIGSTOP : SIGCONT);
    uv_timer_start(t, on_slow_tick, w->stopped ? w->factor - 1 : 1, 0);
}

static void make_slow(struct run *r, struct run_proc *p, unsigned factor, unsigned ms)
{
    struct slow *w = calloc(1, sizeof(*w));
    if (!w)
        return;
    *w = (struct slow){.r = r,
                       .p = p,
                       .pid = p->pid,
                       .factor = factor,
                       .until_ns = ms ? rw_now_ns() + ms * 1000000ull : 0};
    note(r, "slow", p, factor);
    p->slowed = true;
    uv_timer_init(&r->loop, &w->t);
    w->t.data = w;
    uv_timer_start(&w->t, on_slow_tick, 1, 0);
}

static void on_slow_every(uv_timer_t *t)
{
    struct run *r = t->data;
    struct run_proc *p = r->ending ? NULL : victim(r);
    if (p && !p->slowed)
        make_slow(r, p, r->o->slow_factor ? r->o->slow_factor : 10, 0);
}

int run_slow_check(struct run *r, struct rw_err *e)
{
    r->slow_slot = -1;
    const char *s = r->o->slow;
    if (!s)
        return 0;
    const char *br = strchr(s, '[');
    char *end = NULL, *fend = NULL;
    unsigned long inst = br ? strtoul(br + 1, &end, 10) : 0;
    unsigned long factor = end && end[0] == ']' && end[1] == ':' ? strtoul(end + 2, &fend, 10) : 0;
    unsigned long ms = fend && *fend == ':' ? strtoul(fend + 1, &fend, 10) : 0;
    if (!br || end == br + 1 || factor < 2 || factor > 1000 || !fend || *fend || (fend[-1] == ':'))
        return rw_errf(e, RW_EINVAL, "--slow '%s': expected NF[I]:FACTOR[:MS]", s);
    r->slow_factor = (unsigned)factor;
    r->slow_ms = (unsigned)ms;
    for (uint32_t k = 0; k < r->chain->nnfs; k++) {
        const struct chain_nf *nf = &r->chain->nfs[k];
        if (strlen(nf->name) != (size_t)(br - s) || strncmp(nf->name, s, (size_t)(br - s)))
            continue;
        if (inst >= nf->instances)
            return rw_errf(e, RW_EINVAL, "--slow '%s': %s has %u instance%s", s, nf->name,
                           nf->instances, nf->instances == 1 ? "" : "s");
        r->slow_slot = (int)(r->slot_base[k] + inst);
        return 0;
    }
    return rw_errf(e, RW_EINVAL, "--slow '%s': the chain has no NF named '%.*s'", s, (int)(br - s),
                   s);
}

void run_chaos_start(struct run *r)
{
    r->rng = r->o->seed * 0x2545f4914f6cdd1dull + 1;
    uv_timer_init(&r->loop, &r->kill_timer);
    uv_timer_init(&r->loop, &r->stall_timer);
    uv_timer_init(&r->loop, &r->slow_timer);
    r->kill_timer.data = r->stall_timer.data = r->slow_timer.data = r;
    if (r->slow_slot >= 0 && r->slots[r->slow_slot].proc)
        make_slow(r, r->slots[r->slow_slot].proc, r->slow_factor, r->slow_ms);
    if (r->o->slow_every_ms)
        uv_timer_start(&r->slow_timer, on_slow_every, r->o->slow_every_ms, r->o->slow_every_ms);
    if (r->o->kill_every_ms)
        uv_timer_start(&r->kill_timer, on_kill, r->o->kill_every_ms, r->o->kill_every_ms);
    if (r->o->stall_every_ms)
        uv_timer_start(&r->stall_timer, on_stall, r->o->stall_every_ms, r->o->stall_every_ms);
}

/* Loop thread, once the input is over: a stalled worker is resumed at once by
 * its pending timer (they stay armed); no new fault starts. */
void run_chaos_stop(struct run *r, const char *why)
{
    if (r->chaos_stopped)
        return;
    r->chaos_stopped = true;
    r->chaos_stopped_ns = rw_now_ns();
    r->chaos_stop_why = why;
    uv_close((uv_handle_t *)&r->kill_timer, NULL);
    uv_close((uv_handle_t *)&r->stall_timer, NULL);
    uv_close((uv_handle_t *)&r->slow_timer, NULL);
}

void run_chaos_write(struct run *r)
{
    if (!r->o->kill_every_ms && !r->o->stall_every_ms && !r->o->poison && !r->o->slow &&
        !r->o->slow_every_ms)
        return;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len); /* written whole or not at all */
    if (!f)
        return;
    unsigned kills = 0, stalls = 0, slows = 0;
    for (uint32_t i = 0; i < r->nfaults; i++)
        *(r->faults[i].action[0] == 'k'   ? &kills
          : r->faults[i].action[1] == 'l' ? &slows
                                          : &stalls) += 1;
    fprintf(f,
            "{\n  \"seed\": %" PRIu64 ",\n  \"kill_every_ms\": %u,\n  \"stall_every_ms\": %u,\n"
            "  \"stall_ms\": %u,\n  \"kills\": %u,\n  \"stalls\": %u,\n  \"failovers\": %u,\n"
            "  \"quarantined\": %u,\n  \"poison\": ",
            r->o->seed, r->o->kill_every_ms, r->o->stall_every_ms, r->o->stall_ms, kills, stalls,
            r->nfailovers, run_quarantined(r));
    run_json_string(f, r->o->poison);
    fprintf(f, ",\n  \"slow\": ");
    run_json_string(f, r->o->slow);
    fprintf(f, ",\n  \"slow_every_ms\": %u,\n  \"slows\": %u,\n  \"clones\": %u",
            r->o->slow_every_ms, slows, r->nclones - r->restarts);
    /* When the faults stopped, on the faults' clock: none starts after it. */
    if (r->chaos_stopped)
        fprintf(f, ",\n  \"stopped_ms\": %.3f,\n  \"stopped_by\": \"%s\"",
                (double)(r->chaos_stopped_ns - r->t0_ns) / 1e6, r->chaos_stop_why);
    fprintf(f, ",\n  \"faults\": [\n");
    for (uint32_t i = 0; i < r->nfaults; i++) {
        const struct run_fault *x = &r->faults[i];
        const struct run_slot *s = &r->slots[x->slot];
        fprintf(f,
                "    {\"at_ms\": %.3f, \"action\": \"%s\", \"nf\": \"%s\", \"instance\": %u, "
                "\"pid\": %d",
                (double)(x->at_ns - r->t0_ns) / 1e6, x->action, r->chain->nfs[s->nf].name,
                s->instance, x->pid);
        if (x->ms)
            fprintf(f, ", \"%s\": %u", x->action[1] == 'l' ? "factor" : "ms", x->ms);
        fprintf(f, "}%s\n", i + 1 < r->nfaults ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    struct rw_err e;
    if (!fclose(f))
        run_write_whole(r, "chaos.json", buf, len, &e);
    free(buf);
}
