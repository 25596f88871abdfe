/*
 * run_spawn.c - the worker processes of a run: spawned with libuv (each in its
 * own session, so a Ctrl-C on `rewind run` reaches only the coordinator, which
 * then drains the chain), reaped by the loop thread, and the other half: the
 * body of `rewind worker`, which attaches to the descriptors it inherited.
 */
#include "run_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 512

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

/* Arguments and inherited descriptors of one worker, built together: a link's
 * pair of descriptors lands at child fds k, k+1, named in the arguments. */
struct spawn_args {
    char *argv[64];
    int nargs;
    uv_stdio_container_t stdio[MAX_FDS];
    int nfds;
    char buf[64][256];
    char big[8][8192];
};

static char *arg(struct spawn_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *arg(struct spawn_args *a, const char *fmt, ...)
{
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
    a->stdio[a->nfds].flags = UV_INHERIT_FD;
    a->stdio[a->nfds].data.fd = fd;
    return a->nfds++;
}

/* Appends "memfd:eventfd" child descriptor pairs for a link to a list. */
static void add_link(struct spawn_args *a, char *list, size_t cap, struct link *l)
{
    int m = add_fd(a, link_memfd(l)), v = add_fd(a, link_eventfd(l));
    size_t n = strlen(list);
    snprintf(list + n, cap - n, "%s%d:%d", n && list[n - 1] != '=' ? "," : "", m, v);
}

static void build_args(struct run *r, uint32_t k, uint32_t i, uint32_t index, struct spawn_args *a)
{
    const struct chain *c = r->chain;
    memset(a, 0, sizeof(*a));
    for (int fd = 0; fd < 3; fd++)
        add_fd(a, fd);
    a->argv[a->nargs++] = (char *)r->o->self_exe;
    a->argv[a->nargs++] = "worker";
    arg(a, "--chain=%s", r->o->chain_path);
    arg(a, "--nf=%u", k);
    arg(a, "--instance=%u", i);
    arg(a, "--status=%d:%u", add_fd(a, r->status_fd), index);
    arg(a, "--store=%s", r->store_url);
    arg(a, "--alerts=%s/alerts/%s-%u.jsonl", r->o->out_dir, c->nfs[k].name, i);
    if (r->o->no_ft)
        arg(a, "--no-ft");
    char *in = a->big[0];
    strcpy(in, "--in=");
    for (uint32_t ed = 0; ed < c->nedges; ed++) {
        const struct chain_edge *x = &c->edges[ed];
        unsigned nfrom = x->from == CHAIN_INPUT ? 1 : c->nfs[x->from].instances;
        if (x->to == (int)k)
            for (unsigned s = 0; s < nfrom; s++)
                add_link(a, in, sizeof(a->big[0]), run_link(r, ed, s, i));
    }
    a->argv[a->nargs++] = in;
    for (uint32_t ed = 0, n = 1; ed < c->nedges && n < 8; ed++) {
        const struct chain_edge *x = &c->edges[ed];
        if (x->from != (int)k)
            continue;
        char *out = a->big[n++];
        snprintf(out, sizeof(a->big[0]), "--out=%u=", ed);
        unsigned nto = x->to == CHAIN_OUTPUT ? 1 : c->nfs[x->to].instances;
        for (unsigned t = 0; t < nto; t++)
            add_link(a, out, sizeof(a->big[0]), run_link(r, ed, i, t));
        a->argv[a->nargs++] = out;
    }
    a->argv[a->nargs] = NULL;
}

static void on_close(uv_handle_t *h)
{
    (void)h;
}

static void on_worker_exit(uv_process_t *p, int64_t status, int sig)
{
    struct run_worker *w = p->data;
    struct run *r = w->r;
    w->running = false;
    w->exit_status = status;
    w->term_signal = sig;
    if ((status || sig) && !atomic_exchange(&r->failed, 1)) {
        if (w->hung)
            snprintf(r->fail_msg, sizeof(r->fail_msg), "%s[%u] %s (%u ms) and was killed",
                     r->chain->nfs[w->nf].name, w->instance,
                     w->hung_starting ? "did not finish starting" : "stopped answering",
                     w->missed * r->beat_ms);
        else
            snprintf(r->fail_msg, sizeof(r->fail_msg), "%s[%u] %s %d before the end of the run",
                     r->chain->nfs[w->nf].name, w->instance,
                     sig ? "was killed by signal" : "exited with status", sig ? sig : (int)status);
        r->stop = 1;
        for (uint32_t j = 0; j < r->nworkers; j++)
            if (r->workers[j].running)
                uv_process_kill(&r->workers[j].proc, SIGKILL);
    }
    uv_close((uv_handle_t *)p, on_close);
    atomic_fetch_add(&r->exited, 1);
}

/* From run_wait_workers, through uv_async: the loop may end once the processes are
 * reaped; the timer and this handle would otherwise keep it alive. */
static void on_quit(uv_async_t *a)
{
    struct run *r = a->data;
    uv_close((uv_handle_t *)&r->beat_timer, on_close);
    uv_close((uv_handle_t *)a, on_close);
}

/* Heartbeats: a running worker bumps its counter every loop turn and at least
 * every 100 ms while idle. One that misses `misses` checks in a row is hung: it
 * is killed, so that the failure is a clean exit the run can report. */
static void on_beat_check(uv_timer_t *t)
{
    struct run *r = t->data;
    for (uint32_t j = 0; j < r->nworkers; j++) {
        struct run_worker *w = &r->workers[j];
        uint64_t beat = atomic_load(&r->status[w->index].heartbeat);
        bool started = atomic_load(&r->status[w->index].state) != 0;
        if (!w->running || (started && beat != w->last_beat)) {
            w->last_beat = beat;
            w->missed = 0;
            continue;
        }
        /* Starting up (chain file, store) may take longer than a loop turn: it gets
         * ten times the budget, but a worker stuck there is hung all the same. */
        unsigned limit = started ? r->beat_misses : r->beat_misses * 10;
        if (++w->missed == limit) {
            w->hung = true;
            w->hung_starting = !started;
            uv_process_kill(&w->proc, SIGKILL);
        }
    }
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
    struct spawn_args *a = malloc(sizeof(*a));
    if (!a)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    int rc = 0;
    uint32_t index = 0;
    for (uint32_t k = 0; k < r->chain->nnfs && !rc; k++)
        for (uint32_t i = 0; i < r->chain->nfs[k].instances && !rc; i++, index++) {
            struct run_worker *w = &r->workers[index];
            *w = (struct run_worker){.r = r, .nf = k, .instance = i, .index = index};
            w->proc.data = w;
            build_args(r, k, i, index, a);
            uv_process_options_t po = {.file = r->o->self_exe,
                                       .args = a->argv,
                                       .exit_cb = on_worker_exit,
                                       .flags = UV_PROCESS_DETACHED,
                                       .stdio_count = a->nfds,
                                       .stdio = a->stdio};
            int u = uv_spawn(&r->loop, &w->proc, &po);
            if (u)
                rc = rw_errf(e, RW_EIO, "cannot start %s[%u]: %s", r->chain->nfs[k].name, i,
                             uv_strerror(u));
            else
                w->running = true;
        }
    free(a);
    r->beat_ms = r->o->heartbeat_ms ? r->o->heartbeat_ms : 100;
    r->beat_misses = r->o->heartbeat_misses ? r->o->heartbeat_misses : 20;
    uv_timer_init(&r->loop, &r->beat_timer);
    r->beat_timer.data = r;
    uv_async_init(&r->loop, &r->quit, on_quit);
    r->quit.data = r;
    uv_timer_start(&r->beat_timer, on_beat_check, r->beat_ms, r->beat_ms);
    if (uv_thread_create(&r->uv_tid, loop_thread, r))
        return rc ? rc : rw_errf(e, RW_EIO, "cannot start the libuv thread");
    r->uv_started = true;
    return rc;
}

int run_wait_workers(struct run *r, int timeout_ms, struct rw_err *e)
{
    if (!r->uv_started)
        return 0;
    uint64_t deadline = rw_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (atomic_load(&r->exited) < r->nworkers && rw_now_ns() < deadline) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    bool late = atomic_load(&r->exited) < r->nworkers;
    for (uint32_t j = 0; late && j < r->nworkers; j++)
        if (r->workers[j].running && r->workers[j].proc.pid > 0)
            kill(r->workers[j].proc.pid, SIGKILL); /* from this thread: kill(2), not libuv */
    uv_async_send(&r->quit);
    uv_thread_join(&r->uv_tid);
    uv_loop_close(&r->loop);
    if (atomic_load(&r->failed))
        return rw_errf(e, RW_EIO, "%s", r->fail_msg);
    if (late && timeout_ms)
        return rw_errf(e, RW_EIO, "workers did not finish within %d ms of the end of input",
                       timeout_ms);
    return 0;
}
