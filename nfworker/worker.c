/*
 * worker.c - the NF worker's loop: take packets from the input links, drop the
 * ones already seen, run the NF, send what it emits to the next NF's instances
 * (by that NF's flowspace) or the sink, and pass progress marks on.
 *
 * Progress marks: a mark with clock C on a link says "nothing below C will come
 * on this link any more". A worker has processed every input below the minimum
 * of its inputs' marks, so it forwards that minimum on every output after the
 * packets it emitted for them; the sink uses the marks to release output in
 * clock order. The final mark (UINT64_MAX) ends the run.
 *
 * State: with FT every op goes to the store with the op identity (vertex, clock,
 * seq); in --no-ft mode to a local map (traditional NFs, the baseline).
 */
#include "nfworker.h"
#include "worker_int.h"

#include "chain.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "store.h"

#define WORKER_BURST 64

int worker_store_err(struct worker *w, int rc)
{
    if (rc)
        rw_errf(&w->err, rc, "store: %s", store_client_errmsg(w->sc));
    return rc;
}

void worker_publish_store(struct worker *w)
{
    struct store_stats s = {0};
    if (w->sc)
        store_client_stats(w->sc, &s);
    struct worker_status *st = w->o->status;
    atomic_store(&st->store_ops, w->store_base.ops + s.ops);
    atomic_store(&st->store_batches, w->store_base.batches + s.batches);
    atomic_store(&st->store_local_reads, w->store_base.cache_hits + s.cache_hits);
}

void worker_set_client(struct worker *w, struct store_client *sc)
{
    if (w->sc) { /* its figures stay counted: it is being replaced */
        struct store_stats s;
        store_client_stats(w->sc, &s);
        w->store_base.ops += s.ops;
        w->store_base.batches += s.batches;
        w->store_base.cache_hits += s.cache_hits;
    }
    w->sc = sc;
    nf_inst_set_client(w->nf, sc);
}

/* Copies a packet into a slot of the chosen link, waiting while it is full. */
static void send_to(struct worker *w, struct link *l, const struct link_pkt *in, uint16_t sub,
                    const uint8_t *data, uint32_t len, uint32_t wire_len)
{
    struct link_pkt *p = link_alloc(l);
    if (!p) { /* the next NF is behind: waiting on it is not this worker's slowness */
        uint64_t t0 = rw_now_ns();
        p = link_alloc_wait(l, NULL);
        w->blocked_ns += rw_now_ns() - t0;
    }
    p->meta = in->meta;
    p->meta.sub = sub;
    p->meta.flags = 0;
    p->sent_ns = in->sent_ns;
    p->len = len;
    p->wire_len = wire_len;
    memcpy(p->data, data, len);
    link_send(l, p);
}

/* A clone's output, kept until it takes the slot over: its straggler, still the
 * links' producer, sends the same outputs meanwhile. */
static int hold(struct worker *w, unsigned edge, int inst, uint16_t sub, const uint8_t *data,
                uint32_t len, uint32_t wire_len)
{
    if (w->held_head + w->held_n == w->held_cap) {
        if (w->held_head) { /* room at the front: slide down first */
            memmove(w->held, w->held + w->held_head, w->held_n * sizeof(*w->held));
            w->held_head = 0;
        }
        if (w->held_n == w->held_cap) {
            size_t cap = w->held_cap ? w->held_cap * 2 : 1024;
            struct held_out *a = realloc(w->held, cap * sizeof(*a));
            if (!a)
                return RW_ENOMEM;
            w->held = a;
            w->held_cap = cap;
        }
    }
    struct link_pkt *p = malloc(sizeof(*p) + len);
    if (!p)
        return RW_ENOMEM;
    p->meta = w->cur->meta;
    p->meta.sub = sub;
    p->meta.flags = 0;
    p->sent_ns = w->cur->sent_ns;
    p->len = len;
    p->wire_len = wire_len;
    memcpy(p->data, data, len);
    w->held[w->held_head + w->held_n++] = (struct held_out){p, (uint16_t)edge, (uint16_t)inst};
    return 0;
}

void worker_trim_held(struct worker *w, uint64_t mark)
{
    while (w->held_n && w->held[w->held_head].p->meta.clock < mark) {
        free(w->held[w->held_head].p);
        w->held_head++;
        w->held_n--;
    }
    if (!w->held_n)
        w->held_head = 0;
}

void worker_release_held(struct worker *w)
{
    for (size_t k = 0; k < w->held_n; k++) {
        const struct held_out *h = &w->held[w->held_head + k];
        send_to(w, w->o->out[h->edge].links[h->inst], h->p, h->p->meta.sub, h->p->data, h->p->len,
                h->p->wire_len);
        free(h->p);
    }
    free(w->held);
    w->held = NULL;
    w->held_head = w->held_n = w->held_cap = 0;
    w->holding = false;
}

/* nf_emit's way out of the worker: along every edge out of the NF that takes
 * the packet, to the instance its flowspace picks (a clone holds it). */
static int emit(void *ctx, const struct rw_meta *in, uint16_t sub, const uint8_t *data,
                uint32_t len, uint32_t wire_len, struct rw_err *e)
{
    struct worker *w = ctx;
    (void)in;
    for (unsigned i = 0; i < w->o->nout; i++) {
        const struct link_edge *ed = &w->o->out[i];
        if (len > link_data_room(ed->links[0]))
            return rw_errf(e, RW_EINVAL, "emitted packet of %u bytes is too big", len);
        int j = link_edge_pick(ed, data, len, wire_len);
        if (j >= 0 && w->holding && hold(w, i, j, sub, data, len, wire_len))
            return rw_errf(e, RW_ENOMEM, "out of memory holding a clone's output");
        if (j >= 0 && !w->holding)
            send_to(w, ed->links[j], w->cur, sub, data, len, wire_len);
    }
    return 0;
}

/* ---- the loop ---- */

static void record_latency(struct worker_status *st, uint64_t ns)
{
    atomic_fetch_add(&st->lat[rw_lat_bucket(ns)], 1);
}

int worker_duplicate(struct worker *w, const struct link_pkt *p)
{
    if (!w->o->ft || w->o->no_dedup)
        return 0;
    int seen = dedup_seen(&w->dd, p->meta.clock, p->meta.sub);
    if (seen > 0)
        atomic_fetch_add(&w->o->status->dups, 1);
    return seen;
}

struct worker_quarantine *worker_quarantined(struct worker_shared *sh, int slot,
                                             const struct rw_meta *m)
{
    if (!sh || slot < 0)
        return NULL;
    uint32_t n = atomic_load_explicit(&sh->nquarantine, memory_order_acquire);
    for (uint32_t i = 0; i < n && i < WORKER_MAX_QUARANTINE; i++) {
        struct worker_quarantine *q = &sh->quarantine[i];
        if (q->slot == (uint32_t)slot && q->clock == m->clock && q->sub == m->sub)
            return q;
    }
    return NULL;
}

/* A packet of death is skipped: its fate is "dropped", and the first worker to
 * skip it leaves a copy for OUT/quarantine.pcapng. */
static void skip_quarantined(struct worker *w, struct worker_quarantine *q,
                             const struct link_pkt *p)
{
    uint32_t expect = 1;
    if (atomic_load(&q->state) == 1) {
        q->len = p->len < WORKER_QUARANTINE_SNAP ? p->len : WORKER_QUARANTINE_SNAP;
        q->wire_len = p->wire_len;
        q->ts_ns = p->meta.ts_ns;
        memcpy(q->data, p->data, q->len);
        atomic_compare_exchange_strong(&q->state, &expect, 2);
    }
    if (p->meta.clock > w->max_clock)
        w->max_clock = p->meta.clock;
    atomic_fetch_add(&w->o->status->pkts_in, 1);
    atomic_fetch_add(&w->o->status->dropped, 1);
}

/* `rewind chaos --poison`: the crash of a parser bug, on purpose. No core file:
 * the point is the death, not its post-mortem. */
static void die_of_poison(void)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    abort();
}

int worker_process_one(struct worker *w, const struct link_pkt *p)
{
    struct worker_status *st = w->o->status;
    struct worker_quarantine *q = worker_quarantined(w->o->shared, w->qslot, &p->meta);
    if (q) {
        skip_quarantined(w, q, p);
        return 0;
    }
    uint64_t t0 = rw_now_ns();
    w->cur = p;
    /* What the coordinator reads if this packet kills the process (relaxed: it
     * reads them after the process is reaped). */
    atomic_store_explicit(&st->cur_clock, p->meta.clock, memory_order_relaxed);
    atomic_store_explicit(&st->cur_sub, p->meta.sub, memory_order_relaxed);
    atomic_store_explicit(&st->busy, 1, memory_order_relaxed);
    if (w->poisoned) {
        struct pcap_pkthdr h = {.caplen = p->len, .len = p->wire_len};
        if (pcap_offline_filter(&w->poison, &h, p->data))
            die_of_poison();
    }
    unsigned emits = 0;
    int rc = nf_inst_process(w->nf, &p->meta, p->data, p->len, p->wire_len, &emits, &w->err);
    atomic_store_explicit(&st->busy, 0, memory_order_relaxed);
    if (rc)
        return rc;
    if (p->meta.clock > w->max_clock)
        w->max_clock = p->meta.clock;
    atomic_fetch_add(&st->pkts_in, 1);
    atomic_fetch_add(emits ? &st->pkts_out : &st->dropped, emits ? emits : 1);
    record_latency(st, rw_now_ns() - t0);
    return 0;
}

static void send_marks(struct worker *w, uint64_t mark)
{
    for (unsigned i = 0; i < w->o->nout; i++)
        for (unsigned j = 0; j < w->o->out[i].n; j++)
            link_send_mark(w->o->out[i].links[j], mark, NULL);
    w->sent_mark = mark;
    atomic_store(&w->o->status->mark, mark);
    if (w->qslot >= 0)
        atomic_store(&w->o->shared->slot_mark[w->qslot], mark);
}

/* Every NF sees its slot's inputs in (clock, sub) order (design.md: Invariants): its timers,
 * expiry and cross-flow state then act on the same packet in every run, however
 * parallel upstream instances interleave. One input link is already in clock
 * order (every producer emits in the order it processes, and it processes in
 * clock order); several are merged: a packet is held until every link's mark has
 * passed it. Holding copies (rather than leaving packets in their links) keeps
 * the links draining, so a slow link can never block the producer of another. */
static bool merges(const struct worker *w)
{
    return w->o->nin > 1;
}

/* A new input: processed now, or held until every link's mark has passed it. */
static int take_input(struct worker *w, const struct link_pkt *p)
{
    if (!merges(w))
        return worker_process_one(w, p);
    struct link_pkt *x = link_pkt_copy(p);
    if (!x || link_heap_push(&w->pending, x)) {
        free(x);
        return RW_ENOMEM;
    }
    return 0;
}

/* Processes the held inputs below the lowest mark, in clock order. */
static int process_ready(struct worker *w, uint64_t mark)
{
    while (w->pending.n && w->pending.a[0]->meta.clock < mark) {
        struct link_pkt *x = link_heap_pop(&w->pending);
        int rc = worker_process_one(w, x);
        free(x);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- the backlog (live traffic buffered during a recovery) ---- */

static int backlog_push(struct backlog *b, const struct link_pkt *p)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct link_pkt **a = malloc(cap * sizeof(*a));
        if (!a)
            return RW_ENOMEM;
        for (size_t i = 0; i < b->n; i++)
            a[i] = b->a[(b->head + i) % (b->cap ? b->cap : 1)];
        free(b->a);
        b->a = a;
        b->cap = cap;
        b->head = 0;
    }
    struct link_pkt *x = link_pkt_copy(p);
    if (!x)
        return RW_ENOMEM;
    b->a[(b->head + b->n++) % b->cap] = x;
    return 0;
}

static struct link_pkt *backlog_pop(struct backlog *b)
{
    if (!b || !b->n)
        return NULL;
    struct link_pkt *x = b->a[b->head];
    b->head = (b->head + 1) % b->cap;
    b->n--;
    return x;
}

static void backlog_free(struct worker *w)
{
    for (unsigned i = 0; w->backlog && i < w->o->nin; i++) {
        struct link_pkt *x;
        while ((x = backlog_pop(&w->backlog[i])))
            free(x);
        free(w->backlog[i].a);
    }
    free(w->backlog);
    w->backlog = NULL;
}

int worker_buffer_links(struct worker *w)
{
    if (!w->backlog && !(w->backlog = calloc(w->o->nin ? w->o->nin : 1, sizeof(*w->backlog))))
        return RW_ENOMEM;
    for (unsigned i = 0; i < w->o->nin; i++) {
        struct link_pkt *p;
        while ((p = link_recv(w->o->in[i]))) {
            int rc = backlog_push(&w->backlog[i], p);
            link_release(w->o->in[i], p);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* One input: a mark moves the link's mark (never back: a replacement upstream
 * may repeat an older one), a packet is dropped as a duplicate or taken. */
static int handle(struct worker *w, unsigned i, const struct link_pkt *p)
{
    if (p->meta.flags & RW_F_MARK) {
        if (p->meta.clock > w->in_mark[i])
            w->in_mark[i] = p->meta.clock;
        return 0;
    }
    int rc = worker_duplicate(w, p);
    if (rc == 0)
        rc = take_input(w, p);
    return rc > 0 ? 0 : rc;
}

/* The next input of link i: what recovery buffered first, then the link. */
static int next_input(struct worker *w, unsigned i)
{
    struct link_pkt *x = backlog_pop(w->backlog ? &w->backlog[i] : NULL);
    if (x) {
        int rc = handle(w, i, x);
        free(x);
        return rc ? rc : 1;
    }
    struct link_pkt *p = link_recv(w->o->in[i]);
    if (!p)
        return 0;
    if (w->waited_ns && !w->wake_sent) /* the first input after a wait (busy_sample) */
        w->wake_sent = p->sent_ns;
    int rc = handle(w, i, p);
    link_release(w->o->in[i], p);
    return rc ? rc : 1;
}

/* Drains up to a burst from each input; returns packets handled or an error. */
static int one_turn(struct worker *w)
{
    int handled = 0;
    uint64_t depth = 0;
    for (unsigned i = 0; i < w->o->nin; i++) {
        depth += link_count(w->o->in[i]) + (w->backlog ? w->backlog[i].n : 0);
        int rc = 0;
        for (int n = 0; n < WORKER_BURST && (rc = next_input(w, i)) > 0; n++)
            handled++;
        if (rc < 0)
            return rc;
    }
    atomic_store(&w->o->status->queue_depth, depth);
    w->depth = depth;
    return handled;
}

static uint64_t min_mark(const struct worker *w)
{
    uint64_t m = UINT64_MAX;
    for (unsigned i = 0; i < w->o->nin; i++)
        m = w->in_mark[i] < m ? w->in_mark[i] : m;
    return m;
}

/* W goes with the next batch; when no batch fills for a while (a quiet slot,
 * blind ops answered by the cache), a flush carries it, so that a replacement
 * downstream, which waits for every upstream slot's W, is not kept waiting. */
#define WORKER_FLUSH_NS 2000000ull
/* Clocks G must have advanced by before the next trim: each trim is one write
 * transaction over the records between, so fewer, larger ones cost less. */
#define WORKER_TRIM_STEP 4096

/* The slot's index in the run's shared block, or -1 outside a run (unit tests). */
static int shared_index(const struct worker_opts *o)
{
    return o->shared && o->slot_base ? (int)(o->slot_base[o->nf_index] + o->instance) : -1;
}

void worker_publish_w(struct worker *w)
{
    int i = shared_index(w->o);
    if (i >= 0)
        atomic_store(&w->o->shared->slot_w[i], w->flushed_done);
}

/* The first instance of each NF forgets its NF's op records below G (design.md: Invariants):
 * no replay starts at or below any slot's W, so none asks for them again. */
static int trim(struct worker *w)
{
    const struct worker_opts *o = w->o;
    if (o->instance != 0 || shared_index(o) < 0 || w->flushed_done < w->trimmed + WORKER_TRIM_STEP)
        return 0;
    uint64_t g = UINT64_MAX;
    for (uint32_t s = 0; s < o->shared->nslots && s < WORKER_MAX_SLOTS; s++) {
        uint64_t v = atomic_load(&o->shared->slot_w[s]);
        uint64_t hold = atomic_load(&o->shared->slot_hold[s]); /* a clone replays there */
        g = v < g ? v : g;
        g = hold && hold - 1 < g ? hold - 1 : g;
    }
    if (g == UINT64_MAX || g < w->trimmed + WORKER_TRIM_STEP)
        return 0;
    int rc = store_trim(w->sc, g);
    if (rc)
        return worker_store_err(w, rc);
    w->trimmed = g;
    return 0;
}

static int advance_watermark(struct worker *w, uint64_t m, bool idle)
{
    if (!w->o->ft || m == 0)
        return 0;
    /* Inputs arrive in clock order per link, not across links: only below the
     * lowest mark is every input processed, so only that far may W go. */
    uint64_t done = m == UINT64_MAX ? w->max_clock : m - 1;
    int rc = done > w->done ? store_done(w->sc, done) : 0;
    if (rc)
        return worker_store_err(w, rc);
    w->done = done > w->done ? done : w->done;
    uint64_t now = rw_now_ns();
    bool due = w->done > w->flushed_done &&
               (idle || now - w->last_flush_ns > WORKER_FLUSH_NS || m == UINT64_MAX);
    if (due || m == UINT64_MAX) {
        if ((rc = store_flush(w->sc)))
            return worker_store_err(w, rc);
        w->flushed_done = w->done;
        w->last_flush_ns = now;
        worker_publish_w(w);
        worker_publish_store(w);
        return trim(w);
    }
    return 0;
}

/* The CPU the worker got while it had input waiting (design.md: Stragglers):
 * wall and thread CPU time over busy stretches, sampled at most every 1 ms (a
 * CPU-time read is a system call). An idle turn ends the stretch: a worker
 * that keeps up sleeps between packets, and its sleep is not slowness. */
#define WORKER_BUSY_SAMPLE_NS 1000000ull

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Woken late: a worker that waited for input and found this many inputs at
 * once, or one sent this long before it woke (a packet the root sent while it
 * waited), did not answer its link's wake-up in time (a healthy one wakes at the
 * first input, within microseconds). The wait then counts as busy from when the
 * input was there: a straggler stopped while its link was momentarily empty
 * looks just so, and with fast NFs or little traffic its link is always empty
 * the moment it runs. */
#define WORKER_WOKE_BEHIND 256
#define WORKER_WOKE_LATE_NS 1000000ull

static void busy_sample(struct worker *w, int handled)
{
    uint64_t waited = w->waited_ns, first = w->wake_sent;
    w->waited_ns = w->wake_sent = 0;
    if (handled <= 0) {
        w->busy_t0 = 0;
        return;
    }
    uint64_t now = rw_now_ns();
    if (!w->busy_t0) {
        bool late = waited && first > waited && now - first >= WORKER_WOKE_LATE_NS;
        bool behind = waited && w->depth >= WORKER_WOKE_BEHIND;
        w->blocked_ns = 0;
        if (late || behind) { /* backdated: sampled now, the wait counted */
            w->busy_t0 = late ? first : waited;
            w->busy_c0 = w->waited_cpu;
        } else {
            w->busy_t0 = now;
            w->busy_c0 = thread_cpu_ns();
            return;
        }
    }
    if (now - w->busy_t0 < WORKER_BUSY_SAMPLE_NS)
        return;
    uint64_t c = thread_cpu_ns(), wall = now - w->busy_t0;
    /* Time blocked on a full output link (backpressure) is left out of both:
     * an NF upstream of a straggler waits on it, and is not slow itself. */
    wall = wall > w->blocked_ns ? wall - w->blocked_ns : 0;
    uint64_t cpu = c > w->busy_c0 ? c - w->busy_c0 : 0;
    atomic_fetch_add(&w->o->status->busy_wall_ns, wall);
    atomic_fetch_add(&w->o->status->busy_cpu_ns, cpu < wall ? cpu : wall);
    w->busy_t0 = now;
    w->busy_c0 = c;
    w->blocked_ns = 0;
}

static void slot_finished(struct worker *w)
{
    const struct worker_opts *o = w->o;
    if (o->shared && o->slot_base)
        atomic_store(&o->shared->slot_finished[o->slot_base[o->nf_index] + o->instance], 1);
}

static int loop(struct worker *w)
{
    struct worker_status *st = w->o->status;
    atomic_store(&st->state, WORKER_RUNNING);
    for (;;) {
        atomic_fetch_add(&st->heartbeat, 1);
        if (w->o->shared && atomic_load(&w->o->shared->run_over))
            return RW_EIO; /* given up: no final mark is coming */
        int n = one_turn(w);
        if (n < 0)
            return n;
        busy_sample(w, n);
        uint64_t m = min_mark(w);
        int rc = merges(w) ? process_ready(w, m) : 0;
        if (rc)
            return rc;
        bool moved = m > w->sent_mark || (m == UINT64_MAX && w->sent_mark != UINT64_MAX);
        if ((moved || n == 0) && (rc = advance_watermark(w, m, n == 0)))
            return rc;
        if (moved) {
            send_marks(w, m);
            if (w->o->ft && m != UINT64_MAX)
                dedup_trim(&w->dd, m);
        }
        if (m == UINT64_MAX) {
            slot_finished(w);
            return 0;
        }
        if (n == 0) {
            w->waited_ns = rw_now_ns();
            w->waited_cpu = thread_cpu_ns();
            link_wait_any(w->o->in, w->o->nin, 100);
        }
    }
}

/* BPF for Ethernet frames, as tcpdump compiles it (optimised). */
static int compile_bpf(const char *expr, struct bpf_program *prog)
{
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    int rc = dead && pcap_compile(dead, prog, expr, 1, PCAP_NETMASK_UNKNOWN) == 0 ? 0 : -1;
    if (dead)
        pcap_close(dead);
    return rc;
}

static int setup(struct worker *w, struct rw_err *e)
{
    const struct worker_opts *o = w->o;
    w->in_mark = calloc(o->nin ? o->nin : 1, sizeof(uint64_t));
    if (!w->in_mark)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    w->qslot = shared_index(o);
    if (w->qslot >= 0 && o->shared->poison[0]) {
        if (compile_bpf(o->shared->poison, &w->poison))
            return rw_errf(e, RW_EINVAL, "--poison '%s' does not compile", o->shared->poison);
        w->poisoned = true;
    }
    if (o->alerts_path && !(w->alerts = fopen(o->alerts_path, "a")))
        return rw_errf(e, RW_EIO, "%s: %s", o->alerts_path, strerror(errno));
    if (o->ft && dedup_init(&w->dd, 14))
        return rw_errf(e, RW_ENOMEM, "out of memory");
    struct nf_inst_opts no = {.def = o->def,
                              .config = o->config,
                              .name = o->nf_name,
                              .ft = o->ft,
                              .slot = o->slot,
                              .counters = o->status->counters,
                              .alerts = w->alerts,
                              .emit = emit,
                              .emit_ctx = w};
    return nf_inst_open(&no, &w->nf, e);
}

bool worker_sole(const struct chain *c, uint32_t nf_index)
{
    return c && nf_index < c->nnfs && c->nfs[nf_index].instances == 1;
}

/* The client the loop uses. The slot's own per-flow objects are read from the
 * cache after the first time: the store still records every op (queued blind),
 * without a round trip per packet. */
static int open_client(struct worker *w, bool claim, struct rw_err *e)
{
    struct store_client *sc = NULL;
    int rc = store_client_open(w->st, w->o->vertex, w->o->slot, &sc, e);
    worker_set_client(w, sc);
    if (!rc && ((claim && (rc = store_claim(w->sc))) || (rc = store_client_cache(w->sc, 1 << 16)) ||
                (rc = store_client_sole(w->sc, worker_sole(w->o->chain, w->o->nf_index)))))
        rw_errf(e, rc, "store: %s", store_client_errmsg(w->sc));
    return rc;
}

/* A replacement replays on a client without the cache: replayed ops are answered
 * by the store's records, in whatever order the failed worker issued them, which
 * a cache filled in replay order would not reproduce. The loop then gets a fresh
 * client with the cache, opened after the claim, so it joins the new epoch. */
static int open_store(struct worker *w, struct rw_err *e)
{
    int rc = w->o->store ? 0 : store_open(w->o->store_url, &w->st, e);
    if (rc)
        return rc;
    if (w->o->store)
        w->st = w->o->store;
    if (!w->o->recover)
        return open_client(w, true, e);
    struct store_client *sc = NULL;
    rc = store_client_open(w->st, w->o->vertex, w->o->slot, &sc, e);
    worker_set_client(w, sc);
    /* A clone joins the slot beside its worker and claims it only at takeover. */
    if (!rc && ((!w->o->clone && (rc = store_claim(w->sc))) ||
                (rc = store_client_sole(w->sc, worker_sole(w->o->chain, w->o->nf_index)))))
        rw_errf(e, rc, "store: %s", store_client_errmsg(w->sc));
    w->holding = w->o->clone;
    if (!rc)
        rc = worker_recover(w, e);
    if (rc)
        return rc;
    struct store_client *replayed = w->sc;
    worker_set_client(w, NULL); /* keeps its figures */
    store_client_close(replayed);
    return open_client(w, false, e);
}

static void teardown(struct worker *w)
{
    nf_inst_close(w->nf);
    w->nf = NULL;
    if (w->poisoned)
        pcap_freecode(&w->poison);
    if (w->alerts)
        fclose(w->alerts);
    if (w->o->ft)
        dedup_free(&w->dd);
    link_heap_clear(&w->pending);
    backlog_free(w);
    worker_trim_held(w, UINT64_MAX);
    free(w->held);
    free(w->in_mark);
}

/* The run's code for a store's answer: a full store is a full disk to the
 * operator (exit 4), any other refusal a failure. */
static int run_code(int rc)
{
    if (rc == STORE_EFULL)
        return RW_ENOSPC;
    if (rc == STORE_ESTALLED)
        return RW_ESTALLED;
    return rc <= STORE_EINVAL ? RW_EIO : rc;
}

int worker_run(const struct worker_opts *o, struct rw_err *e)
{
    struct worker w = {.o = o};
    int rc = setup(&w, e);
    if (!rc && o->ft)
        rc = open_store(&w, e);
    if (!rc && (rc = loop(&w)))
        rw_errf(e, rc, "%s[%u]: %s", o->nf_name, o->instance, w.err.msg);
    if (rc && e)
        e->code = run_code(rc);
    rc = run_code(rc);
    if (w.sc) {
        worker_publish_store(&w);
        store_client_close(w.sc);
    }
    if (w.st && !o->store)
        store_close(w.st);
    atomic_store(&o->status->state, rc ? WORKER_FAILED : WORKER_FINISHED);
    teardown(&w);
    return rc;
}

/* ---- the run's region ---- */

size_t worker_region_size(uint32_t cap)
{
    size_t head = (sizeof(struct worker_shared) + 63) & ~(size_t)63;
    return head + (size_t)cap * sizeof(struct worker_status);
}

struct worker_status *worker_region_status(void *region)
{
    return (struct worker_status *)((char *)region + worker_region_size(0));
}
