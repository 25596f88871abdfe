/*
 * run_plan.c - a chain's needs checked against the run's limits before anything
 * is created or started. The parser accepts any chain within its own bounds (64
 * instances an NF, any number of NFs and edges), but the run has more: slots in
 * the shared block, a worker's fixed tables, the kernel's limit on one argument,
 * processes, and above all descriptors, which grow with the links (instances
 * times instances per edge). A chain past one of them used to start and then
 * corrupt memory or fail half-way with "Too many open files"; here it is refused
 * up front (exit 2) with the limit and the numbers, and --out is not touched.
 */
#include "run_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* Descriptors beyond the links, measured on a run and doubled: a worker's store
 * (LMDB: 3), alerts file, log reader (a replay opens segments), ASan; the
 * coordinator's logs, DPDK (EAL, pcap), libuv (epoll, asyncs), the status
 * region, the store check, report files. */
#define WORKER_FD_MARGIN 64
#define COORD_FD_MARGIN  128

/* 1234567 -> "1,234,567": the limits' messages are read by people. */
static const char *grouped(unsigned long long v, char *buf, size_t cap)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%llu", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Soft up to hard: the chain's needs are checked against what this process may
 * have, and the workers inherit it. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit up = {rl.rlim_max, rl.rlim_max};
        if (!setrlimit(RLIMIT_NOFILE, &up))
            rl.rlim_cur = rl.rlim_max;
    }
    return rl.rlim_cur;
}

int run_plan(struct run *r, struct rw_err *e)
{
    const struct chain *c = r->chain;
    const char *path = r->o->chain_path;
    char a[32], b[32];
    uint32_t slots = 0;
    for (uint32_t k = 0; k < c->nnfs; k++)
        slots += c->nfs[k].instances;
    if (slots > WORKER_MAX_SLOTS)
        return rw_errf(e, RW_EINVAL, "%s: %u instances in all; at most %d", path, slots,
                       WORKER_MAX_SLOTS);

    /* A worker's tables and command line, and the descriptors of the largest. */
    unsigned long long links = 0, worker_fds = 0;
    const char *worst = "";
    for (uint32_t k = 0; k < c->nedges; k++) {
        const struct chain_edge *ed = &c->edges[k];
        links += (unsigned long long)chain_edge_links(c, ed);
    }
    for (uint32_t k = 0; k < c->nnfs; k++) {
        unsigned in = 0, out = 0, entries_slot = 0, entries_spare = 0;
        for (uint32_t j = 0; j < c->nedges; j++) {
            const struct chain_edge *ed = &c->edges[j];
            if (ed->to == (int)k) {
                unsigned from = chain_edge_from_n(c, ed);
                in += from;
                entries_slot += from;
                entries_spare++;
            }
            if (ed->from == (int)k)
                out++, entries_slot++, entries_spare++;
        }
        const char *name = c->nfs[k].name;
        if (out > WORKER_MAX_OUT)
            return rw_errf(e, RW_EINVAL, "%s: NF %s has %u edges out; at most %d", path, name, out,
                           WORKER_MAX_OUT);
        if (in > WORKER_MAX_IN)
            return rw_errf(e, RW_EINVAL,
                           "%s: each instance of NF %s has %u links in; at most %d "
                           "(fewer instances before it)",
                           path, name, in, WORKER_MAX_IN);
        unsigned entries = entries_slot > entries_spare ? entries_slot : entries_spare;
        if (16 + (unsigned long long)entries * RUN_LINKS_ENTRY > RUN_LINKS_ARG_MAX)
            return rw_errf(e, RW_EINVAL,
                           "%s: a worker of NF %s would be given %u link lists; at most %u", path,
                           name, entries, (RUN_LINKS_ARG_MAX - 16) / RUN_LINKS_ENTRY);
        /* A spare holds every instance's links, a slot's worker its own only. */
        unsigned spare = run_proc_fds(c, k, -1), slot = run_proc_fds(c, k, 0);
        unsigned most = r->o->no_ft ? slot : spare;
        if (most > worker_fds)
            worker_fds = most, worst = r->o->no_ft ? "worker" : "spare";
    }

    /* Descriptors: every worker's, and the coordinator's, which holds every link
     * and, in a child between fork and exec, the child's own on top. */
    rlim_t limit = raise_nofile();
    unsigned long long need_w = worker_fds + WORKER_FD_MARGIN;
    unsigned long long need_c = 2 * links + worker_fds + COORD_FD_MARGIN;
    if (need_w > limit)
        return rw_errf(e, RW_EINVAL,
                       "%s: the chain needs %s descriptors per %s, the limit is %s (ulimit -n); "
                       "fewer instances or a higher limit",
                       path, grouped(need_w, a, sizeof(a)), worst,
                       grouped((unsigned long long)limit, b, sizeof(b)));
    if (need_c > limit)
        return rw_errf(e, RW_EINVAL,
                       "%s: the chain needs %s descriptors in the coordinator (%s links), the "
                       "limit is %s (ulimit -n); fewer instances or a higher limit",
                       path, grouped(need_c, a, sizeof(a)), grouped(links, b, sizeof(b)),
                       grouped((unsigned long long)limit, (char[32]){0}, 32));

    /* Processes alive at once: see make_status (run.c). */
    unsigned long long procs = 2ull * slots + r->o->spares + RUN_EXTRA_PROCS;
    struct rlimit np;
    if (!getrlimit(RLIMIT_NPROC, &np) && np.rlim_cur != RLIM_INFINITY && procs > np.rlim_cur)
        return rw_errf(e, RW_EINVAL,
                       "%s: %u instances and %u spares may need %llu worker processes at once; "
                       "the process limit (ulimit -u) is %llu",
                       path, slots, r->o->spares, procs, (unsigned long long)np.rlim_cur);
    return 0;
}
