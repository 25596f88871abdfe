/*
 * run_quarantine.c - packets of death (design.md: Invariants, Recovery). A malformed packet that
 * crashes every worker that processes it would crash-loop a slot forever:
 * CHC or FTMB would replay it into each replacement. The coordinator tells
 * such a packet from a fault: when the same slot's worker dies twice while
 * processing the same input (clock, sub) - read from its status block after
 * it is reaped - that input is quarantined in the run's shared block before
 * the next replacement gets the slot. Workers skip it (fate: dropped) and the
 * first to do so leaves a copy, which ends in OUT/quarantine.pcapng with its
 * clock; OUT/alerts.json gets a "quarantine" event per packet.
 *
 * Deaths chaos caused (fault_ns set) never count: a kill that lands twice on
 * one input is bad luck, not a bad packet. Exits with an error status do not
 * either: they say why, and MAX_ERRORS_IN_ROW ends those runs.
 */
#include "run_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replay.h"

int run_quarantine_death(struct run *r, const struct run_proc *p)
{
    /* Two deaths on one input need not be consecutive: a chaos kill between
     * them (a fault of its own) does not reset the count. */
    struct run_slot *s = &r->slots[p->slot];
    const struct worker_status *st = &r->status[p->index];
    if (!p->term_signal || p->fault_ns || !atomic_load(&st->busy))
        return 0; /* says nothing about the input: the count stands */
    uint64_t clock = atomic_load(&st->cur_clock);
    uint16_t sub = (uint16_t)atomic_load(&st->cur_sub);
    if (!s->deaths || s->death_clock != clock || s->death_sub != sub) {
        s->deaths = 1;
        s->death_clock = clock;
        s->death_sub = sub;
        return 0;
    }
    s->deaths = 0;
    struct worker_shared *sh = r->shared;
    uint32_t n = atomic_load(&sh->nquarantine);
    if (n == WORKER_MAX_QUARANTINE)
        return -1;
    struct worker_quarantine *q = &sh->quarantine[n];
    q->slot = (uint32_t)p->slot;
    q->clock = clock;
    q->sub = sub;
    atomic_store(&q->state, 1);
    /* Release: a worker that sees the count sees the entry. */
    atomic_store_explicit(&sh->nquarantine, n + 1, memory_order_release);
    return 1;
}

uint32_t run_quarantined(const struct run *r)
{
    return r->shared ? atomic_load(&r->shared->nquarantine) : 0;
}

static int by_clock(const void *a, const void *b)
{
    const struct worker_quarantine *x = *(const struct worker_quarantine *const *)a,
                                   *y = *(const struct worker_quarantine *const *)b;
    return x->clock != y->clock ? (x->clock < y->clock ? -1 : 1)
                                : (x->sub > y->sub) - (x->sub < y->sub);
}

int run_quarantine_write(struct run *r, struct rw_err *e)
{
    uint32_t n = run_quarantined(r);
    if (!n)
        return 0;
    /* Written beside, then renamed: whole or absent, even on a full disk. */
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/quarantine.pcapng", r->o->out_dir);
    snprintf(tmp, sizeof(tmp), "%s/.quarantine.pcapng.tmp", r->o->out_dir);
    struct pcapng w;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* private first */
    int rc = fd < 0 ? -1 : pcapng_open(&w, tmp, NULL);
    if (fd >= 0)
        close(fd);
    if (rc)
        return rw_errf(e, RW_EIO, "%s: cannot create", path);
    /* In clock order, as every other packet file of a run (entries are in the
     * order the deaths revealed them, slot after slot). */
    const struct worker_quarantine *order[WORKER_MAX_QUARANTINE];
    for (uint32_t i = 0; i < n; i++)
        order[i] = &r->shared->quarantine[i];
    qsort(order, n, sizeof(order[0]), by_clock);
    for (uint32_t i = 0; i < n && !rc; i++) {
        const struct worker_quarantine *q = order[i];
        if (atomic_load(&q->state) != 2)
            continue; /* the run ended before a replacement met it again */
        const struct run_slot *s = &r->slots[q->slot];
        char comment[160];
        snprintf(comment, sizeof(comment), "clock %" PRIu64 " sub %u quarantined at %s[%u]",
                 q->clock, q->sub, r->chain->nfs[s->nf].name, s->instance);
        rc = pcapng_write(&w, q->ts_ns, q->len, q->wire_len, q->data, comment);
    }
    errno = 0;
    if (pcapng_close(&w) || rc || rename(tmp, path)) {
        int err = errno;
        unlink(tmp);
        return rw_errf(e, err == ENOSPC || err == EDQUOT ? RW_ENOSPC : RW_EIO, "%s: %s", path,
                       err ? strerror(err) : "write failed");
    }
    return 0;
}

int run_poison_set(struct run *r, struct rw_err *e)
{
    const char *expr = r->o->poison;
    if (!expr)
        return 0;
    if (r->o->no_ft)
        return rw_errf(e, RW_EINVAL, "--poison: a quarantine needs fault tolerance (not --no-ft)");
    if (strlen(expr) >= sizeof(r->shared->poison))
        return rw_errf(e, RW_EINVAL, "--poison: the expression is longer than %zu bytes",
                       sizeof(r->shared->poison) - 1);
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    struct bpf_program prog;
    int bad = !dead || pcap_compile(dead, &prog, expr, 1, PCAP_NETMASK_UNKNOWN) < 0;
    if (!bad)
        pcap_freecode(&prog);
    char why[PCAP_ERRBUF_SIZE + 1];
    snprintf(why, sizeof(why), "%s", dead ? pcap_geterr(dead) : "out of memory");
    if (dead)
        pcap_close(dead);
    if (bad)
        return rw_errf(e, RW_EINVAL, "--poison '%s' does not compile: %s", expr, why);
    snprintf(r->shared->poison, sizeof(r->shared->poison), "%s", expr);
    return 0;
}
