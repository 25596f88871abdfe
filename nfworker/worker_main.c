/*
 * worker_main.c - `rewind worker`: one NF instance, or a hot spare, spawned by
 * `rewind run`.
 *
 * Every worker inherits the descriptors of the links it may use (a slot's, or
 * for a spare every link of its NF), the status region and the shared region,
 * and re-reads the chain file. A worker started for a slot (--nf, --instance)
 * attaches to that slot's links and runs; a spare (--spare=NF) does everything
 * that can be done before it knows its slot (chain, links, store) and then
 * waits on its status block until the coordinator gives it a failed slot of
 * its NF: it then takes the slot over (nfworker/recover.c) and runs.
 * That is what keeps exec, chain parsing and store opening off a failover's
 * critical path. A worker dies with its coordinator (PR_SET_PDEATHSIG): it must
 * never outlive the process that owns its links.
 */
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "nfs.h"
#include "nfworker.h"
#include "store.h"

#define MAX_LINKS WORKER_MAX_IN

struct wargs {
    const char *chain, *store, *out_dir, *links;
    unsigned nf, instance, status_index, status_cap, spare_nf;
    int status_fd;
    bool no_ft, no_dedup, spare, has_nf;
};

static int parse_args(int argc, char **argv, struct wargs *a)
{
    memset(a, 0, sizeof(*a));
    a->status_fd = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strncmp(s, "--chain=", 8))
            a->chain = s + 8;
        else if (!strncmp(s, "--nf=", 5))
            a->nf = (unsigned)atoi(s + 5), a->has_nf = true;
        else if (!strncmp(s, "--instance=", 11))
            a->instance = (unsigned)atoi(s + 11);
        else if (!strncmp(s, "--status=", 9))
            sscanf(s + 9, "%d:%u:%u", &a->status_fd, &a->status_index, &a->status_cap);
        else if (!strncmp(s, "--store=", 8))
            a->store = s + 8;
        else if (!strncmp(s, "--out-dir=", 10))
            a->out_dir = s + 10;
        else if (!strncmp(s, "--links=", 8))
            a->links = s + 8;
        else if (!strcmp(s, "--no-ft"))
            a->no_ft = true;
        else if (!strcmp(s, "--no-dedup"))
            a->no_dedup = true;
        else if (!strncmp(s, "--spare=", 8))
            a->spare_nf = (unsigned)atoi(s + 8), a->spare = true;
        else if (!strcmp(s, "--help"))
            return 1;
        else
            return -1;
    }
    bool ok = a->chain && a->status_fd >= 0 && a->status_index < a->status_cap && a->links &&
              a->out_dir && (a->spare != a->has_nf);
    return ok ? 0 : -1;
}

struct wstate {
    struct chain *chain;
    const char *store_url; /* --store (by hand), else the run's shared block */
    struct link ***edge;   /* [edge][run_link index]: the links given, NULL elsewhere */
    uint32_t *slot_base;   /* per NF: its first slot */
    struct link *in[MAX_LINKS];
    int in_producer[MAX_LINKS]; /* the producer's slot, -1 for the root */
    unsigned nin;
    struct link *outl[WORKER_MAX_OUT][CHAIN_MAX_INSTANCES];
    struct link_edge out[WORKER_MAX_OUT]; /* open: the first nout */
    unsigned nout;
    void *region;
    struct worker_status *st;
    struct worker_shared *shared;
    struct store *store;
    char alerts[PATH_MAX], log_dir[PATH_MAX];
};

/* "k:i:n:fd,..." (links k[i..i+n) at fds fd, fd+1, ...: memfd, eventfd) ->
 * attached links, checked against the chain. */
static int attach_all(const char *s, struct wstate *w, struct rw_err *e)
{
    const struct chain *c = w->chain;
    w->edge = calloc(c->nedges ? c->nedges : 1, sizeof(*w->edge));
    w->slot_base = calloc(c->nnfs ? c->nnfs : 1, sizeof(uint32_t));
    if (!w->edge || !w->slot_base)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    for (uint32_t k = 0, n = 0; k < c->nnfs; n += c->nfs[k++].instances)
        w->slot_base[k] = n;
    while (s && *s) {
        unsigned k, i, n;
        int fd, used;
        if (sscanf(s, "%u:%u:%u:%d%n", &k, &i, &n, &fd, &used) != 4 || k >= c->nedges ||
            n > chain_edge_links(c, &c->edges[k]) || i > chain_edge_links(c, &c->edges[k]) - n ||
            fd < 0)
            return rw_errf(e, RW_EINVAL, "bad link list '%.40s'", s);
        if (!w->edge[k] && !(w->edge[k] = calloc(chain_edge_from_n(c, &c->edges[k]) *
                                                     chain_edge_to_n(c, &c->edges[k]),
                                                 sizeof(struct link *))))
            return rw_errf(e, RW_ENOMEM, "out of memory");
        for (unsigned j = 0; j < n; j++) {
            int rc = link_attach(fd + 2 * (int)j, fd + 2 * (int)j + 1, &w->edge[k][i + j], e);
            if (rc)
                return rc;
        }
        s += used;
        if (*s == ',')
            s++;
    }
    return 0;
}

/* NULL when the coordinator did not give it. */
static struct link *link_of(const struct wstate *w, uint32_t k, unsigned i, unsigned j)
{
    return w->edge[k] ? w->edge[k][chain_link_index(w->chain, &w->chain->edges[k], i, j)] : NULL;
}

/* The slot's links: inputs from every instance of every edge into the NF, and
 * one output per edge out of it (to each instance of the target). */
static int pick_links(struct wstate *w, unsigned nf, unsigned inst, bool take, struct rw_err *e)
{
    const struct chain *c = w->chain;
    w->nin = w->nout = 0;
    for (uint32_t k = 0; k < c->nedges; k++) {
        const struct chain_edge *ed = &c->edges[k];
        for (unsigned s = 0; ed->to == (int)nf && s < chain_edge_from_n(c, ed); s++) {
            if (w->nin == MAX_LINKS)
                return rw_errf(e, RW_EINVAL, "%s: more than %d links in", c->nfs[nf].name,
                               MAX_LINKS);
            w->in_producer[w->nin] =
                ed->from == CHAIN_INPUT ? -1 : (int)(w->slot_base[ed->from] + s);
            if (!(w->in[w->nin++] = link_of(w, k, s, inst)))
                return rw_errf(e, RW_EINVAL, "%s[%u]: a link of edge %u was not given",
                               c->nfs[nf].name, inst, k);
        }
        if (ed->from != (int)nf)
            continue;
        if (w->nout == WORKER_MAX_OUT)
            return rw_errf(e, RW_EINVAL, "%s: more than %d edges out", c->nfs[nf].name,
                           WORKER_MAX_OUT);
        unsigned n = chain_edge_to_n(c, ed);
        for (unsigned t = 0; t < n; t++)
            if (!(w->outl[w->nout][t] = link_of(w, k, inst, t)))
                return rw_errf(e, RW_EINVAL, "%s[%u]: a link of edge %u was not given",
                               c->nfs[nf].name, inst, k);
        enum rw_flowspace fs = chain_edge_flowspace(c, ed);
        int rc = link_edge_open(&w->out[w->nout], w->outl[w->nout], n, fs, ed->filter, e);
        if (rc)
            return rc;
        w->nout++;
    }
    for (unsigned i = 0; take && i < w->nin; i++)
        link_take_consumer(w->in[i]);
    for (unsigned j = 0; take && j < w->nout; j++)
        for (unsigned t = 0; t < w->out[j].n; t++)
            link_take_producer(w->out[j].links[t]);
    return 0;
}

static int map_region(const struct wargs *a, struct wstate *w, struct rw_err *e)
{
    size_t len = worker_region_size(a->status_cap);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, a->status_fd, 0);
    if (p == MAP_FAILED)
        return rw_errf(e, RW_EINVAL, "bad status region");
    w->region = p;
    w->shared = p;
    w->st = worker_region_status(p) + a->status_index;
    w->store_url = a->store ? a->store : w->shared->store_url;
    return 0;
}

/* A spare sleeps on its status block's assign word (a futex on the shared
 * mapping) and keeps its heartbeat going meanwhile. */
static uint32_t wait_assignment(struct worker_status *st, const struct worker_shared *sh)
{
    atomic_store(&st->state, WORKER_SPARE);
    for (;;) {
        uint32_t v = atomic_load(&st->assign);
        if (v)
            return v;
        if (atomic_load(&sh->run_over))
            return WORKER_QUIT;
        atomic_fetch_add(&st->heartbeat, 1);
        struct timespec ts = {0, 50000000};
        syscall(SYS_futex, (uint32_t *)&st->assign, FUTEX_WAIT, 0, &ts, NULL, 0);
    }
}

static int run_slot(const struct wargs *a, struct wstate *w, unsigned nf, unsigned inst,
                    struct rw_err *e)
{
    const struct chain *c = w->chain;
    if (nf >= c->nnfs || inst >= c->nfs[nf].instances)
        return rw_errf(e, RW_EINVAL, "no slot %u[%u] in %s", nf, inst, a->chain);
    /* A clone leaves the links to the slot's worker until it takes the slot. */
    bool clone = a->spare && atomic_load(&w->st->clone);
    int rc = pick_links(w, nf, inst, a->spare && !clone, e);
    if (rc)
        return rc;
    const struct chain_nf *cn = &c->nfs[nf];
    /* A clone writes beside the slot's worker: a file of its own (the run
     * merges every file and drops the alerts both raised). */
    if (clone)
        snprintf(w->alerts, sizeof(w->alerts), "%s/alerts/%s-%u.clone-%d.jsonl", a->out_dir,
                 cn->name, inst, (int)getpid());
    else
        snprintf(w->alerts, sizeof(w->alerts), "%s/alerts/%s-%u.jsonl", a->out_dir, cn->name, inst);
    snprintf(w->log_dir, sizeof(w->log_dir), "%s/log", a->out_dir);
    struct worker_opts wo = {.def = nf_find(cn->type),
                             .config = cn->config,
                             .nf_name = cn->name,
                             .vertex = nf + 1,
                             .instance = (uint16_t)inst,
                             .slot = (uint16_t)inst,
                             .ft = !a->no_ft,
                             .store_url = w->store_url,
                             .store = w->store,
                             .in = w->in,
                             .nin = w->nin,
                             .out = w->out,
                             .nout = w->nout,
                             .status = w->st,
                             .alerts_path = w->alerts,
                             .no_dedup = a->no_dedup,
                             .recover = a->spare,
                             .chain = c,
                             .nf_index = nf,
                             .shared = w->shared,
                             .slot_base = w->slot_base,
                             .log_dir = w->log_dir,
                             .in_producer = w->in_producer,
                             .clone = clone};
    return worker_run(&wo, e);
}

static int run_one(const struct wargs *a, struct wstate *w, struct rw_err *e)
{
    int rc = chain_load(a->chain, nf_types(), &w->chain, e);
    if (rc || (rc = map_region(a, w, e)) || (rc = attach_all(a->links, w, e)))
        return rc;
    if (!a->spare)
        return run_slot(a, w, a->nf, a->instance, e);
    if (!a->no_ft && (rc = store_open(w->store_url, &w->store, e)))
        return rc;
    uint32_t v = wait_assignment(w->st, w->shared);
    if (v == WORKER_QUIT)
        return 0;
    v -= 1;
    if (v >> 16 != a->spare_nf)
        return rw_errf(e, RW_EINVAL, "a spare of NF %u was given a slot of NF %u", a->spare_nf,
                       v >> 16);
    return run_slot(a, w, v >> 16, v & 0xffff, e);
}

/* The LMDB store is mapped with MDB_WRITEMAP: on a disk that is full the kernel
 * cannot back a page of the map, and the write faults (SIGBUS, BUS_ADRERR)
 * where a write(2) would have said ENOSPC. That is a full disk, not a crash to
 * fail over to a spare that would meet it again: the worker exits as such, and
 * the coordinator ends the run (exit 4). Any other SIGBUS stays a crash. */
static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (si->si_code == BUS_ADRERR) {
        static const char msg[] = "rewind worker: the disk under the state store is full "
                                  "(No space left on device: SIGBUS writing its map)\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(WORKER_EXIT_DISK);
    }
    signal(sig, SIG_DFL); /* the access faults again, and kills */
}

int worker_main(int argc, char **argv)
{
    struct wargs a;
    int p = parse_args(argc, argv, &a);
    if (p) {
        fprintf(p > 0 ? stdout : stderr,
                "usage: rewind worker --chain=FILE --status=FD:IDX:CAP --links=K:I:N:FD,... "
                "--out-dir=DIR (--nf=K --instance=I | --spare=K) [--store=URL] [--no-ft] "
                "[--no-dedup]\n\n"
                "One NF instance of a chain, or a hot spare that waits for a failed slot.\n"
                "Internal: `rewind run` starts these with the descriptors of every link;\n"
                "it is not meant to be run by hand.\n");
        return p > 0 ? 0 : 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;            /* the coordinator is already gone */
    signal(SIGINT, SIG_IGN); /* the coordinator decides when the chain stops */
    struct sigaction sa = {.sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO};
    sigaction(SIGBUS, &sa, NULL);
    static struct wstate w;
    struct rw_err e = {0};
    int rc = run_one(&a, &w, &e);
    if (rc)
        fprintf(stderr, "rewind worker %s: %s\n", a.spare ? "(spare)" : "", e.msg);
    if (w.store)
        store_close(w.store);
    for (unsigned j = 0; j < w.nout; j++)
        link_edge_close(&w.out[j]);
    for (uint32_t k = 0; w.edge && w.chain && k < w.chain->nedges; k++) {
        const struct chain_edge *ed = &w.chain->edges[k];
        for (unsigned i = 0; w.edge[k] && i < chain_edge_links(w.chain, ed); i++)
            link_close(w.edge[k][i]);
        free(w.edge[k]);
    }
    free(w.edge);
    if (w.chain)
        chain_free(w.chain);
    free(w.slot_base);
    return rc == RW_ENOSPC     ? WORKER_EXIT_FULL
           : rc == RW_ESTALLED ? WORKER_EXIT_STALLED
           : rc                ? 1
                               : 0;
}
