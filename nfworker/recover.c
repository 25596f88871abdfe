/*
 * recover.c - a replacement takes a failed slot over (design.md: Invariants; Invariants
 * (recovery)).
 *
 * The replacement has claimed the slot in the store (the failed worker, should it
 * still run, is fenced) and reads the slot's store watermark W: every op of every
 * packet with clock <= W is applied. It takes what the slot's links hold (the
 * failed worker never took it) and bounds R from their heads and the root's
 * clock: every packet the failed worker may have taken has a clock below R
 * (replay_end). Once the
 * input log holds every clock below R, and every upstream slot's watermark has
 * reached R - 1 (their ops for those clocks are applied), it reads the logged
 * packets in (W, R) and runs them through the upstream NFs in-process: each op
 * they issue carries the identity the live upstream worker used, so the store
 * answers it from its record, and they emit exactly what they emitted then.
 * What reaches this slot is processed by its NF in clock order: ops the failed
 * worker had applied are emulated, the rest applied now.
 *
 * Live traffic keeps arriving on the slot's links meanwhile; it is buffered (the
 * upstream must not block on a full link: it could not advance its watermark,
 * which this replay waits for) and handled after the replay. Live packets below
 * R were either processed by the failed worker or are in the replay: the
 * duplicate filter, filled by the replay, drops them. Outputs the failed worker
 * had already sent are sent again; the next NF and the sink drop them.
 *
 * Replaying through the upstream NFs here, rather than asking the live upstream
 * workers to re-process old packets, leaves the healthy part of the chain
 * untouched: no old clocks on live links, no second store client beside a
 * live worker's cache. The price is that the replacement runs the upstream NFs'
 * code, which the catalog provides anyway.
 */
#include "worker_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chain.h"
#include "log.h"
#include "nfs.h"

#define REC_POLL_NS    500000 /* while waiting for the log and the upstream slots */
#define REC_CHECKPOINT 2048   /* logged packets between two W checkpoints of a replay */

struct up_inst {
    struct store_client *sc;
    struct nf_inst *nf;
};

/* An NF upstream of the slot, run in-process on replayed packets. */
struct up_nf {
    struct recovery *rec;
    uint32_t index;
    const struct nf_def *def;
    const char *name;
    struct up_inst *inst;
    uint32_t n;
    bool needed; /* on a path from the input to the slot's NF */
};

struct recovery {
    struct worker *w;
    const struct chain *c;
    struct up_nf *nfs;
    struct link_edge *edges; /* the chain's edges, to pick instances as the senders do */
    uint32_t room;
    uint64_t replayed, seen;
    uint64_t from; /* the replay's first clock: every NF's state is read as of it */
    struct rw_err *e;
    bool failed; /* e holds the first error: the NFs it unwinds through keep it */
};

static int rec_err(struct recovery *rec, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int rec_err(struct recovery *rec, int rc, const char *fmt, ...)
{
    if (rec->failed)
        return rc;
    rec->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->e->msg, sizeof(rec->e->msg), fmt, ap);
    va_end(ap);
    rec->e->code = rc;
    return rc;
}

/* ---- the upstream NFs ---- */

static void mark_needed(struct recovery *rec)
{
    const struct chain *c = rec->c;
    for (bool grew = true; grew;) {
        grew = false;
        for (uint32_t k = 0; k < c->nedges; k++) {
            const struct chain_edge *ed = &c->edges[k];
            if (ed->from < 0 || ed->to < 0 || rec->nfs[ed->from].needed)
                continue;
            if ((uint32_t)ed->to == rec->w->o->nf_index || rec->nfs[ed->to].needed)
                grew = rec->nfs[ed->from].needed = true;
        }
    }
}

static int open_up_nf(struct recovery *rec, struct up_nf *u, struct rw_err *e);

static int open_upstream(struct recovery *rec, struct rw_err *e)
{
    const struct chain *c = rec->c;
    rec->nfs = calloc(c->nnfs, sizeof(*rec->nfs));
    rec->edges = calloc(c->nedges ? c->nedges : 1, sizeof(*rec->edges));
    if (!rec->nfs || !rec->edges)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    mark_needed(rec);
    for (uint32_t k = 0; k < c->nedges; k++) {
        const struct chain_edge *ed = &c->edges[k];
        int rc = link_edge_open(&rec->edges[k], NULL, chain_edge_to_n(c, ed),
                                chain_edge_flowspace(c, ed), ed->filter, e);
        if (rc)
            return rc;
    }
    for (uint32_t k = 0; k < c->nnfs; k++) {
        int rc = rec->nfs[k].needed ? open_up_nf(rec, &rec->nfs[k], e) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

static int capture(void *ctx, const struct rw_meta *in, uint16_t sub, const uint8_t *data,
                   uint32_t len, uint32_t wire_len, struct rw_err *e);

/* One client per upstream slot, no claim (the live worker keeps the slot) and no
 * cache: every op is answered by the store's record. */
static int open_up_nf(struct recovery *rec, struct up_nf *u, struct rw_err *e)
{
    const struct chain_nf *nf = &rec->c->nfs[u - rec->nfs];
    u->rec = rec;
    u->index = (uint32_t)(u - rec->nfs);
    u->def = nf_find(nf->type);
    u->name = nf->name;
    u->n = nf->instances;
    u->inst = calloc(u->n, sizeof(*u->inst));
    if (!u->def || !u->inst)
        return rw_errf(e, RW_ENOMEM, "NF %s: cannot set up its replay", nf->name);
    for (uint32_t j = 0; j < u->n; j++) {
        struct up_inst *x = &u->inst[j];
        int rc = store_client_open(rec->w->st, u->index + 1, (uint16_t)j, &x->sc, e);
        if (rc || (rc = store_client_sole(x->sc, worker_sole(rec->c, u->index))))
            return rc;
        struct nf_inst_opts no = {.def = u->def,
                                  .config = nf->config,
                                  .name = nf->name,
                                  .ft = true,
                                  .slot = (uint16_t)j,
                                  .emit = capture,
                                  .emit_ctx = u};
        if ((rc = nf_inst_open(&no, &x->nf, e)))
            return rc;
        nf_inst_set_client(x->nf, x->sc);
    }
    return 0;
}

static void close_upstream(struct recovery *rec)
{
    for (uint32_t k = 0; rec->nfs && k < rec->c->nnfs; k++) {
        struct up_nf *u = &rec->nfs[k];
        for (uint32_t j = 0; u->inst && j < u->n; j++) {
            nf_inst_close(u->inst[j].nf);
            if (u->inst[j].sc)
                store_client_close(u->inst[j].sc);
        }
        free(u->inst);
    }
    for (uint32_t k = 0; rec->edges && k < rec->c->nedges; k++)
        link_edge_close(&rec->edges[k]);
    free(rec->nfs);
    free(rec->edges);
}

/* ---- the replay ---- */

static int deliver(struct recovery *rec, int from, const struct rw_meta *m, const uint8_t *data,
                   uint32_t len, uint32_t wire_len);

static struct link_pkt *make_pkt(const struct rw_meta *m, const uint8_t *data, uint32_t len,
                                 uint32_t wire_len)
{
    struct link_pkt *p = malloc(sizeof(*p) + len);
    if (!p)
        return NULL;
    p->meta = *m;
    p->meta.flags = 0;
    p->sent_ns = 0;
    p->len = len;
    p->wire_len = wire_len;
    memcpy(p->data, data, len);
    return p;
}

static int capture(void *ctx, const struct rw_meta *in, uint16_t sub, const uint8_t *data,
                   uint32_t len, uint32_t wire_len, struct rw_err *e)
{
    struct up_nf *u = ctx;
    (void)e; /* the first error is kept in the recovery's own record */
    struct rw_meta m = *in;
    m.sub = sub;
    return deliver(u->rec, (int)u->index, &m, data, len, wire_len);
}

/* The upstream slot was failed over since its client was opened (the claim
 * fences older clients): a new client joins the new epoch. */
static int up_reopen(struct recovery *rec, struct up_nf *u, uint32_t j)
{
    struct up_inst *x = &u->inst[j];
    struct store_client *old = x->sc;
    struct rw_err e = {0};
    int rc = store_client_open(rec->w->st, u->index + 1, (uint16_t)j, &x->sc, &e);
    if (rc == STORE_OK) /* the state as of where the replay is, not as of W again */
        rc = store_client_asof_move(x->sc, old);
    if (rc == STORE_OK)
        rc = store_client_sole(x->sc, worker_sole(rec->c, u->index));
    else
        x->sc = NULL;
    store_client_close(old);
    nf_inst_set_client(x->nf, x->sc);
    return rc;
}

/* The upstream NFs' state as of W (store_client_asof): their live workers are
 * past R by now (wait_ready), so the store holds their later writes. */
static int upstream_asof(struct recovery *rec)
{
    for (uint32_t k = 0; k < rec->c->nnfs; k++) {
        struct up_nf *u = &rec->nfs[k];
        for (uint32_t j = 0; u->needed && j < u->n; j++) {
            int rc = store_client_asof(u->inst[j].sc, rec->from);
            if (rc)
                return rec_err(rec, rc, "%s[%u]: store: %s", u->name, j,
                               store_client_errmsg(u->inst[j].sc));
        }
    }
    return 0;
}

#define REC_FENCED_TRIES 100

/* Runs upstream NF u's instance j on one packet, as its live worker did. When the
 * slot changes hands meanwhile, the packet is run again on a new client: its ops
 * are emulated, and what it had emitted already is dropped as a duplicate. */
static int run_up(struct recovery *rec, struct up_nf *u, uint32_t j, struct link_pkt *p)
{
    /* A packet of death quarantined at that slot was skipped there: here too. */
    const struct worker_opts *wo = rec->w->o;
    if (wo->slot_base &&
        worker_quarantined(wo->shared, (int)(wo->slot_base[u->index] + j), &p->meta))
        return 0;
    struct rw_err err = {0};
    int rc;
    for (int tries = 0;; tries++) {
        rc = nf_inst_process(u->inst[j].nf, &p->meta, p->data, p->len, p->wire_len, NULL, &err);
        if (rc != STORE_EFENCED || tries == REC_FENCED_TRIES || up_reopen(rec, u, j))
            break;
        store_client_asof_undo(u->inst[j].sc, p->meta.clock, p->meta.sub);
        rec->failed = false;
    }
    if (rc)
        rec_err(rec, rc, "replay through %s[%u], clock %" PRIu64 ": %s", u->name, j, p->meta.clock,
                err.msg);
    return rc;
}

/* The slot's own NF: a replayed input, processed now, in clock order. */
static int feed_self(struct recovery *rec, struct link_pkt *p)
{
    struct worker *w = rec->w;
    int rc = worker_duplicate(w, p);
    if (rc == 0 && (rc = worker_process_one(w, p)))
        rec_err(rec, rc, "%s[%u]: replay of clock %" PRIu64 ": %s", w->o->nf_name, w->o->instance,
                p->meta.clock, w->err.msg);
    rec->replayed += rc == 0;
    return rc < 0 ? rc : 0;
}

/* Sends a packet along the edges out of `from` (an upstream NF or the input), as
 * the root's splitter and nf_emit do, keeping only what leads to the slot. */
static int deliver(struct recovery *rec, int from, const struct rw_meta *m, const uint8_t *data,
                   uint32_t len, uint32_t wire_len)
{
    const struct worker_opts *o = rec->w->o;
    for (uint32_t k = 0; k < rec->c->nedges; k++) {
        const struct chain_edge *ed = &rec->c->edges[k];
        if (ed->from != from || ed->to < 0)
            continue;
        bool mine = (uint32_t)ed->to == o->nf_index;
        if (!mine && !rec->nfs[ed->to].needed)
            continue;
        if (from == CHAIN_INPUT && len > rec->room)
            continue; /* the root does not send what does not fit a slot */
        int pick = link_edge_pick(&rec->edges[k], data, len, wire_len);
        if (pick < 0)
            continue;
        uint32_t j = (uint32_t)pick;
        if (mine && j != o->instance)
            continue;
        struct link_pkt *p = make_pkt(m, data, len, wire_len);
        if (!p)
            return rec_err(rec, RW_ENOMEM, "out of memory");
        int rc = mine ? feed_self(rec, p) : run_up(rec, &rec->nfs[ed->to], j, p);
        free(p);
        if (rc)
            return rc;
    }
    return 0;
}

/* Every 256 logged packets: keep the heartbeat and drain the live links (a
 * clone leaves them to the slot's worker). */
static int keep_alive(struct recovery *rec)
{
    atomic_fetch_add(&rec->w->o->status->heartbeat, 1);
    int rc = rec->w->holding ? 0 : worker_buffer_links(rec->w);
    return rc ? rec_err(rec, rc, "out of memory buffering live traffic") : 0;
}

/* The upstream NFs' queued ops go to the store: before W (or a clone's hold)
 * moves past them, or G would, and the store would refuse them as trimmed. */
static int flush_upstream(struct recovery *rec)
{
    for (uint32_t k = 0; rec->nfs && k < rec->c->nnfs; k++) {
        struct up_nf *u = &rec->nfs[k];
        for (uint32_t j = 0; u->needed && u->inst && j < u->n; j++) {
            int rc = u->inst[j].sc ? store_flush(u->inst[j].sc) : 0;
            if (rc)
                return rec_err(rec, rc, "%s[%u]: store: %s", u->name, j,
                               store_client_errmsg(u->inst[j].sc));
        }
    }
    return 0;
}

/* Every REC_CHECKPOINT logged packets: W moves to just below the next one (all
 * before it are replayed, their ops applied or emulated, their outputs sent),
 * so that a replacement killed while it replays leaves its progress behind.
 * Without it, under kills more frequent than a long replay lasts, every
 * replacement started over from the same W and the slot never caught up
 * (measured: kills every 20 ms, 98 k packets in 120 s). */
static int checkpoint(struct recovery *rec, uint64_t clock)
{
    struct worker *w = rec->w;
    /* A clone's outputs are held, not sent: its W must not pass what the
     * slot's worker sent (a replacement would replay from there). */
    if (!clock || clock - 1 <= w->done || w->holding)
        return 0;
    if (flush_upstream(rec))
        return rec->e->code;
    int rc = store_done(w->sc, clock - 1);
    if (!rc)
        rc = store_flush(w->sc);
    if (rc)
        return rec_err(rec, rc, "store: %s", store_client_errmsg(w->sc));
    w->done = w->flushed_done = clock - 1;
    worker_publish_w(w);
    atomic_store(&w->o->status->replayed, rec->replayed);
    return 0;
}

static int on_record(void *ctx, const struct log_rec *r)
{
    struct recovery *rec = ctx;
    if ((++rec->seen & 255) == 0 && keep_alive(rec))
        return RW_ENOMEM;
    if ((rec->seen & (REC_CHECKPOINT - 1)) == 0 && checkpoint(rec, r->meta.clock))
        return rec->e->code;
    struct rw_meta m = r->meta;
    m.sub = 0;
    m.flags = 0;
    return deliver(rec, CHAIN_INPUT, &m, r->data, r->cap_len, r->orig_len);
}

/* ---- waiting until the replay can be exact ---- */

/* How far a replay can be exact now: what the log holds, and what every
 * upstream slot has applied (their ops are then answered from the records);
 * 0 when the store does not answer. */
static uint64_t ready_end(struct recovery *rec)
{
    const struct worker_opts *o = rec->w->o;
    uint64_t t = atomic_load(&o->shared->durable);
    for (uint32_t k = 0; k < rec->c->nnfs; k++) {
        struct up_nf *u = &rec->nfs[k];
        for (uint32_t j = 0; u->needed && j < u->n; j++) {
            if (atomic_load(&o->shared->slot_finished[o->slot_base[k] + j]))
                continue;
            uint64_t wm = 0;
            int rc = store_watermark(u->inst[j].sc, (uint16_t)j, &wm);
            if (rc == STORE_EFENCED && !up_reopen(rec, u, j))
                rc = store_watermark(u->inst[j].sc, (uint16_t)j, &wm);
            if (rc)
                return 0;
            t = wm + 1 < t ? wm + 1 : t;
        }
    }
    return t;
}

static bool upstream_ready(struct recovery *rec, uint64_t r_clock)
{
    return ready_end(rec) >= r_clock;
}

/* Ways out: the run given up, or a root that ended (its durable watermark is then
 * final) below R: a log that could not grow (a full disk) never will. */
static int wait_ready(struct recovery *rec, uint64_t r_clock)
{
    const struct worker_shared *sh = rec->w->o->shared;
    while (!upstream_ready(rec, r_clock)) {
        if (atomic_load(&sh->run_over))
            return rec_err(rec, RW_EIO, "the run was given up while the replay waited");
        bool ended = atomic_load(&sh->root_finished); /* first: durable is then final */
        uint64_t durable = atomic_load(&sh->durable);
        if (ended && durable < r_clock)
            return rec_err(rec, RW_EIO,
                           "the input log ended at clock %" PRIu64
                           ", below the replay's end %" PRIu64 " (the root stopped early)",
                           durable, r_clock);
        int rc = keep_alive(rec);
        if (rc)
            return rc;
        struct timespec ts = {0, REC_POLL_NS};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int replay(struct recovery *rec, uint64_t from, uint64_t below)
{
    if (below <= from)
        return 0;
    struct log_reader *lr;
    int rc = log_reader_open(rec->w->o->log_dir, &lr, rec->e);
    if (rc)
        return rc;
    struct log_query q;
    log_query_all(&q);
    q.from_clock = from;
    q.to_clock = below - 1;
    struct log_scan_cbs cb = {.visit = on_record, .ctx = rec};
    struct log_scan_stats st;
    rc = log_scan(lr, &q, &cb, &st, rec->e);
    log_reader_close(lr);
    return rc;
}

static bool producer_finished(const struct worker_opts *o, unsigned i)
{
    int s = o->in_producer ? o->in_producer[i] : -2;
    if (s == -1)
        return atomic_load(&o->shared->root_finished) != 0;
    return s >= 0 && atomic_load(&o->shared->slot_finished[s]) != 0;
}

/* A producer that has finished sent its final mark: it is either still on the
 * link or was taken by the failed worker, which may have died before it could
 * say it had finished. The producer's flag is read before the link is drained:
 * a final mark not found then was taken, and counts as received. */
static int take_final_marks(struct worker *w)
{
    const struct worker_opts *o = w->o;
    bool *fin = calloc(o->nin, sizeof(bool));
    if (!fin)
        return RW_ENOMEM;
    for (unsigned i = 0; i < o->nin; i++)
        fin[i] = producer_finished(o, i);
    int rc = worker_buffer_links(w);
    for (unsigned i = 0; !rc && i < o->nin; i++) {
        const struct backlog *b = &w->backlog[i];
        bool seen = false;
        for (size_t k = 0; k < b->n && !seen; k++) {
            const struct link_pkt *x = b->a[(b->head + k) % b->cap];
            seen = (x->meta.flags & RW_F_MARK) && x->meta.clock == UINT64_MAX;
        }
        if (fin[i] && !seen)
            w->in_mark[i] = UINT64_MAX;
    }
    free(fin);
    return rc;
}

/* The replay's end: every packet the failed worker took off a link is below it.
 * What is still on a link was never taken; a link's packets are in clock order,
 * so what the worker took from it is below the first data packet left there (a
 * link with none left: below R, the root's clock). The replay must cover the
 * highest of these bounds; packets between a lower link's head and it are then
 * both replayed and live, and the live copies are duplicates. For the common
 * one-input slot, this replays only what the failed worker held, not the
 * whole queue it left behind (measured: ~2,600 packets a failover at 150 k
 * packets/s with R alone, each replayed from the log at several µs). */
static uint64_t replay_end(struct worker *w, uint64_t r_clock)
{
    uint64_t end = 0;
    for (unsigned i = 0; i < w->o->nin; i++) {
        const struct backlog *b = &w->backlog[i];
        uint64_t head = r_clock;
        for (size_t k = 0; k < b->n; k++) {
            const struct link_pkt *x = b->a[(b->head + k) % b->cap];
            if (!(x->meta.flags & RW_F_MARK)) {
                head = x->meta.clock < r_clock ? x->meta.clock : r_clock;
                break;
            }
        }
        end = head > end ? head : end;
    }
    return end;
}

/* ---- a straggler's clone (design.md: Stragglers) ---- */

#define CLONE_CHUNK    16384 /* clocks replayed between two looks at the coordinator */
#define CLONE_HELD_MAX 32768 /* held outputs: the clone waits for the takeover beyond */

static int slot_index(const struct worker_opts *o)
{
    return (int)(o->slot_base[o->nf_index] + o->instance);
}

/* The clone tails the log beside the slot's worker: every logged packet from
 * its replay's start, through the upstream NFs, into its own NF, outputs held
 * (the slot's worker is still the links' producer and sends the same ones),
 * the ones below that worker's mark dropped as it sends them. The coordinator
 * says takeover once the worker is gone (it overtook it, or it died); *pos is
 * then the first clock not replayed. */
static int tail(struct recovery *rec, uint64_t *pos)
{
    struct worker *w = rec->w;
    const struct worker_opts *o = w->o;
    struct worker_status *st = o->status;
    int slot = slot_index(o);
    for (;;) {
        if (atomic_load(&o->shared->run_over))
            return rec_err(rec, RW_EIO, "the run was given up while the clone replayed");
        if (atomic_load(&st->takeover))
            return 0;
        worker_trim_held(w, atomic_load(&o->shared->slot_mark[slot]));
        /* Never past what the worker has applied (its flushed W): below it the
         * store holds every write of the worker's, and the clone reads as of
         * its position; the worker's queued writes above it are not there yet
         * (measured: a load balancer's connection read as absent, its put
         * still queued, and the clone took another path). */
        uint64_t applied = atomic_load(&o->shared->slot_w[slot]) + 1;
        uint64_t t = w->held_n < CLONE_HELD_MAX ? ready_end(rec) : 0;
        t = t < applied ? t : applied;
        if (t > *pos) {
            t = t - *pos > CLONE_CHUNK ? *pos + CLONE_CHUNK : t;
            int rc = replay(rec, *pos, t);
            if (!rc && !(rc = flush_upstream(rec)) && (rc = store_flush(w->sc)))
                rec_err(rec, rc, "store: %s", store_client_errmsg(w->sc));
            if (rc)
                return rc;
            *pos = t;
            atomic_store(&o->shared->slot_hold[slot], t + 1);
            atomic_store(&st->clone_pos, t);
            atomic_store(&st->replayed, rec->replayed);
            continue;
        }
        atomic_fetch_add(&st->heartbeat, 1);
        struct timespec ts = {0, REC_POLL_NS};
        nanosleep(&ts, NULL);
    }
}

/* The slot's worker is gone: the clone claims the slot (fencing it), becomes
 * its links' consumer and producer, sends what it held (what that worker sent
 * already is dropped downstream as a duplicate) and moves W to where it is. */
static int take_slot(struct recovery *rec, uint64_t pos)
{
    struct worker *w = rec->w;
    const struct worker_opts *o = w->o;
    int rc = store_claim(w->sc);
    if (rc)
        return rec_err(rec, rc, "store: %s", store_client_errmsg(w->sc));
    for (unsigned i = 0; i < o->nin; i++)
        link_take_consumer(o->in[i]);
    for (unsigned j = 0; j < o->nout; j++)
        for (unsigned t = 0; t < o->out[j].n; t++)
            link_take_producer(o->out[j].links[t]);
    worker_trim_held(w, atomic_load(&o->shared->slot_mark[slot_index(o)]));
    worker_release_held(w);
    if (pos > 0 && pos - 1 > w->done) {
        if ((rc = store_done(w->sc, pos - 1)) || (rc = store_flush(w->sc)))
            return rec_err(rec, rc, "store: %s", store_client_errmsg(w->sc));
        w->done = w->flushed_done = pos - 1;
        worker_publish_w(w);
    }
    atomic_store(&o->shared->slot_hold[slot_index(o)], 0); /* its W holds G now */
    return 0;
}

int worker_recover(struct worker *w, struct rw_err *e)
{
    const struct worker_opts *o = w->o;
    if (!o->chain || !o->shared || !o->slot_base || !o->log_dir || !o->nin)
        return rw_errf(e, RW_EINVAL, "%s[%u]: recovery needs the chain, the log and the links",
                       o->nf_name, o->instance);
    struct recovery rec = {.w = w, .c = o->chain, .room = link_data_room(o->in[0]), .e = e};
    uint64_t wm = 0;
    int rc = store_watermark(w->sc, o->slot, &wm);
    /* The failed worker may have gone past W: its writes after W are in the
     * store (it is fenced now, so the overlay is final). */
    /* W = 0 also means "nothing applied": the replay then starts at clock 0. */
    rec.from = wm ? wm + 1 : 0;
    if (rc || (rc = store_client_asof(w->sc, rec.from)))
        return rw_errf(e, rc, "store: %s", store_client_errmsg(w->sc));
    w->done = w->flushed_done = wm;
    /* Clock 0 replayed is emulated and its outputs dropped downstream, never lost. */
    uint64_t from = rec.from;
    /* A clone first tails the log beside the slot's worker, then takes the slot
     * from where it got to: the rest is a replacement's recovery from there. */
    if (o->clone) /* the op records from W on stay until it has replayed them */
        atomic_store(&o->shared->slot_hold[slot_index(o)], from + 1);
    if (o->clone && !(rc = open_upstream(&rec, e)) && !(rc = upstream_asof(&rec)) &&
        !(rc = tail(&rec, &from)))
        rc = take_slot(&rec, from);
    if (rc) {
        close_upstream(&rec);
        return rc;
    }
    /* The failed worker is gone (reaped, and fenced by the claim): what its links
     * hold now was never taken. Buffer it first, then read R: every clock on a
     * link is below R. */
    if ((rc = worker_buffer_links(w))) {
        close_upstream(&rec);
        return rw_errf(e, rc, "out of memory buffering live traffic");
    }
    uint64_t r_clock = replay_end(w, atomic_load(&o->shared->root_clock));
    if (r_clock < from)
        r_clock = from; /* W never goes back; a clone has replayed up to from */
    if (!o->clone)
        rc = open_upstream(&rec, e);
    if (!rc)
        rc = wait_ready(&rec, r_clock);
    if (!rc && !o->clone)
        rc = upstream_asof(&rec);
    if (!rc)
        rc = replay(&rec, from, r_clock);
    close_upstream(&rec);
    if (!rc && r_clock > 0 && ((rc = store_done(w->sc, r_clock - 1)) || (rc = store_flush(w->sc))))
        rw_errf(e, rc, "store: %s", store_client_errmsg(w->sc)); /* full stays full */
    if (!rc && r_clock > 0) {
        w->done = w->flushed_done = r_clock - 1; /* W never goes back */
        worker_publish_w(w);
        /* Every input below R was in the replay (a live copy is a duplicate), so
         * each link's mark is at least R. The mark that said so may have died
         * with the failed worker, and a root that is paused (chain full) or idle
         * sends no newer one: without this the chain's exit would wait forever. */
        for (unsigned i = 0; i < o->nin; i++)
            if (w->in_mark[i] < r_clock)
                w->in_mark[i] = r_clock;
    }
    if (!rc)
        rc = take_final_marks(w);
    atomic_store(&o->status->replayed, rec.replayed);
    atomic_store(&o->status->recovered_ns, rw_now_ns());
    return rc;
}
