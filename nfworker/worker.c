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
#include "worker_local.h"

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
#define MAX_EMITS    8 /* per input per NF: sub = in_sub * 8 + emit index */

static int env_err(struct nf_env *env, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int env_err(struct nf_env *env, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(env->err.msg, sizeof(env->err.msg), fmt, ap);
    va_end(ap);
    env->err.code = rc;
    return rc;
}

uint64_t nf_now(const struct nf_env *env)
{
    return env->in->meta.ts_ns;
}

/* An op's identity: the input's clock, and a sequence that starts at sub << 16,
 * so that two packets with one clock (an upstream NF's several outputs for one
 * input) never share op identities. */
static int next_id(struct nf_env *env, struct store_opid *id)
{
    if (env->seq > 0xffff) /* the next would take another output's identities */
        return env_err(env, STORE_EINVAL, "%s: more than 65536 store ops for packet %" PRIu64,
                       env->o->nf_name, env->in->meta.clock);
    uint32_t seq = ((uint32_t)env->in->meta.sub << 16) | env->seq++;
    *id = (struct store_opid){.clock = env->in->meta.clock, .seq = seq};
    return 0;
}

int worker_store_err(struct nf_env *env, int rc)
{
    if (rc)
        env_err(env, rc, "store: %s", store_client_errmsg(env->sc));
    return rc;
}

int nf_get(struct nf_env *env, const struct store_key *k, void *buf, size_t cap, size_t *len,
           bool *found)
{
    if (!env->o->ft)
        return lstate_get(&env->ls, k, buf, cap, len, found);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_get(env->sc, &id, k, buf, cap, len, found));
}

int nf_get_int(struct nf_env *env, const struct store_key *k, int64_t *v, bool *found)
{
    *v = 0;
    if (!env->o->ft) {
        size_t len;
        int rc = lstate_get(&env->ls, k, v, sizeof(*v), &len, found);
        if (!rc && *found && len != sizeof(*v))
            rc = STORE_ETYPE;
        return rc;
    }
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_get_int(env->sc, &id, k, v, found));
}

int nf_put(struct nf_env *env, const struct store_key *k, const void *val, size_t len)
{
    if (!env->o->ft)
        return lstate_put(&env->ls, k, val, len);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_put(env->sc, &id, k, val, len));
}

int nf_del(struct nf_env *env, const struct store_key *k)
{
    if (!env->o->ft)
        return lstate_del(&env->ls, k);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_del(env->sc, &id, k));
}

int nf_incr(struct nf_env *env, const struct store_key *k, int64_t delta, int64_t *result)
{
    if (!env->o->ft)
        return lstate_incr(&env->ls, k, delta, result);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_incr(env->sc, &id, k, delta, result));
}

int nf_push(struct nf_env *env, const struct store_key *k, const void *val, size_t len)
{
    if (!env->o->ft)
        return lstate_push(&env->ls, k, val, len);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_push(env->sc, &id, k, val, len));
}

int nf_pop(struct nf_env *env, const struct store_key *k, void *buf, size_t cap, size_t *len,
           bool *found)
{
    if (!env->o->ft)
        return lstate_pop(&env->ls, k, buf, cap, len, found);
    struct store_opid id;
    int rc = next_id(env, &id);
    if (rc)
        return rc;
    return worker_store_err(env, store_pop(env->sc, &id, k, buf, cap, len, found));
}

int nf_count(struct nf_env *env, const char *name, int64_t delta)
{
    struct worker_status *st = env->o->status;
    for (int i = 0; i < WORKER_COUNTERS; i++) {
        if (!st->counters[i].name[0])
            snprintf(st->counters[i].name, sizeof(st->counters[i].name), "%s", name);
        if (!strncmp(st->counters[i].name, name, sizeof(st->counters[i].name) - 1)) {
            atomic_fetch_add(&st->counters[i].value, delta);
            return 0;
        }
    }
    return 0; /* more names than slots: statistics only, never an error */
}

int nf_alert(struct nf_env *env, const char *type, const char *fields_json)
{
    if (!env->alerts)
        return 0;
    fprintf(env->alerts, "{\"clock\": %llu, \"ts\": %llu, \"nf\": \"%s\", \"type\": \"%s\"%s%s}\n",
            (unsigned long long)env->in->meta.clock, (unsigned long long)env->in->meta.ts_ns,
            env->o->nf_name, type, fields_json && *fields_json ? ", " : "",
            fields_json ? fields_json : "");
    /* Now, not at exit: a worker may be killed at any instant, and its store
     * watermark may pass this packet as soon as the NF returns. */
    fflush(env->alerts);
    return 0;
}

/* Copies a packet into a slot of the chosen link, waiting while it is full. */
static void send_to(struct link *l, const struct link_pkt *in, uint16_t sub, const uint8_t *data,
                    uint32_t len, uint32_t wire_len)
{
    struct link_pkt *p = link_alloc_wait(l, NULL);
    p->meta = in->meta;
    p->meta.sub = sub;
    p->meta.flags = 0;
    p->sent_ns = in->sent_ns;
    p->len = len;
    p->wire_len = wire_len;
    memcpy(p->data, data, len);
    link_send(l, p);
}

int nf_emit(struct nf_env *env, const uint8_t *data, uint32_t len, uint32_t wire_len)
{
    if (env->emits >= MAX_EMITS)
        return env_err(env, RW_EINVAL, "more than %d packets emitted for one input", MAX_EMITS);
    uint16_t sub = (uint16_t)(env->in->meta.sub * MAX_EMITS + env->emits++);
    if (env->capture)
        return env->capture(env->capture_ctx, env, data, len, wire_len, sub);
    for (unsigned i = 0; i < env->o->nout; i++) {
        struct out_edge *oe = &env->outs[i];
        if (len > link_data_room(oe->w->links[0]))
            return env_err(env, RW_EINVAL, "emitted packet of %u bytes is too big", len);
        if (oe->filtered) {
            struct pcap_pkthdr h = {.caplen = len, .len = wire_len};
            if (!pcap_offline_filter(&oe->prog, &h, data))
                continue;
        }
        uint32_t hsh = rw_flowspace_hash(data, len, oe->w->fs);
        send_to(oe->w->links[hsh % oe->w->n], env->in, sub, data, len, wire_len);
    }
    return 0;
}

/* ---- the loop ---- */

unsigned worker_lat_bucket(uint64_t ns)
{
    if (ns < 4)
        return (unsigned)ns;
    unsigned top = 63 - (unsigned)__builtin_clzll(ns); /* ns in [2^top, 2^(top+1)) */
    unsigned b = top * 4 + (unsigned)((ns >> (top - 2)) & 3);
    return b < WORKER_LAT_BUCKETS ? b : WORKER_LAT_BUCKETS - 1;
}

static uint64_t bucket_mid(unsigned b)
{
    if (b < 4)
        return b;
    unsigned top = b / 4, q = b % 4;
    uint64_t lo = (1ull << top) + ((uint64_t)q << (top - 2));
    return lo + (1ull << (top - 2)) / 2;
}

static void record_latency(struct worker_status *st, uint64_t ns)
{
    atomic_fetch_add(&st->lat[worker_lat_bucket(ns)], 1);
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
    struct nf_env *env = &w->env;
    env->in = p;
    env->seq = 0;
    env->emits = 0;
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
    struct nf_pkt np = {.meta = p->meta, .data = p->data, .len = p->len, .wire_len = p->wire_len};
    int rc = w->o->def->process(w->self, env, &np);
    atomic_store_explicit(&st->busy, 0, memory_order_relaxed);
    if (rc)
        return rc;
    if (p->meta.clock > w->max_clock)
        w->max_clock = p->meta.clock;
    atomic_fetch_add(&st->pkts_in, 1);
    atomic_fetch_add(env->emits ? &st->pkts_out : &st->dropped, env->emits ? env->emits : 1);
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
}

/* Every NF sees its slot's inputs in (clock, sub) order (DESIGN §6): its timers,
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
    struct link_pkt *x = held_copy(p);
    if (!x || heap_push(&w->pending, x)) {
        free(x);
        return RW_ENOMEM;
    }
    return 0;
}

/* Processes the held inputs below the lowest mark, in clock order. */
static int process_ready(struct worker *w, uint64_t mark)
{
    while (w->pending.n && w->pending.a[0]->meta.clock < mark) {
        struct link_pkt *x = heap_pop(&w->pending);
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
    struct link_pkt *x = held_copy(p);
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

/* The first instance of each NF forgets its NF's op records below G (DESIGN §6):
 * no replay starts at or below any slot's W, so none asks for them again. */
static int trim(struct worker *w)
{
    const struct worker_opts *o = w->o;
    if (o->instance != 0 || shared_index(o) < 0 || w->flushed_done < w->trimmed + WORKER_TRIM_STEP)
        return 0;
    uint64_t g = UINT64_MAX;
    for (uint32_t s = 0; s < o->shared->nslots && s < WORKER_MAX_SLOTS; s++) {
        uint64_t v = atomic_load(&o->shared->slot_w[s]);
        g = v < g ? v : g;
    }
    if (g == UINT64_MAX || g < w->trimmed + WORKER_TRIM_STEP)
        return 0;
    int rc = store_trim(w->env.sc, g);
    if (rc)
        return worker_store_err(&w->env, rc);
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
    int rc = done > w->done ? store_done(w->env.sc, done) : 0;
    if (rc)
        return worker_store_err(&w->env, rc);
    w->done = done > w->done ? done : w->done;
    uint64_t now = rw_now_ns();
    bool due = w->done > w->flushed_done &&
               (idle || now - w->last_flush_ns > WORKER_FLUSH_NS || m == UINT64_MAX);
    if (due || m == UINT64_MAX) {
        if ((rc = store_flush(w->env.sc)))
            return worker_store_err(&w->env, rc);
        w->flushed_done = w->done;
        w->last_flush_ns = now;
        worker_publish_w(w);
        return trim(w);
    }
    return 0;
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
    atomic_store(&st->state, 1);
    for (;;) {
        atomic_fetch_add(&st->heartbeat, 1);
        if (w->o->shared && atomic_load(&w->o->shared->run_over))
            return RW_EIO; /* given up: no final mark is coming */
        int n = one_turn(w);
        if (n < 0)
            return n;
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
        if (n == 0)
            link_wait_any(w->o->in, w->o->nin, 100);
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
    w->env.o = o;
    w->env.slot = o->slot;
    w->env.outs = calloc(o->nout ? o->nout : 1, sizeof(*w->env.outs));
    w->in_mark = calloc(o->nin ? o->nin : 1, sizeof(uint64_t));
    w->self = calloc(1, o->def->self_size ? o->def->self_size : 1);
    if (!w->env.outs || !w->in_mark || !w->self)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    for (unsigned i = 0; i < o->nout; i++) {
        struct out_edge *oe = &w->env.outs[i];
        oe->w = &o->out[i];
        if (!oe->w->filter || !*oe->w->filter)
            continue;
        if (compile_bpf(oe->w->filter, &oe->prog))
            return rw_errf(e, RW_EINVAL, "edge filter '%s' does not compile", oe->w->filter);
        oe->filtered = true;
    }
    w->qslot = shared_index(o);
    if (w->qslot >= 0 && o->shared->poison[0]) {
        if (compile_bpf(o->shared->poison, &w->poison))
            return rw_errf(e, RW_EINVAL, "--poison '%s' does not compile", o->shared->poison);
        w->poisoned = true;
    }
    if (o->alerts_path && !(w->env.alerts = fopen(o->alerts_path, "a")))
        return rw_errf(e, RW_EIO, "%s: %s", o->alerts_path, strerror(errno));
    int rc = o->ft ? dedup_init(&w->dd, 14) : lstate_init(&w->env.ls);
    if (rc)
        return rw_errf(e, rc, "out of memory");
    return o->def->init(w->self, o->config, e);
}

/* The client the loop uses. The slot's own per-flow objects are read from the
 * cache after the first time: the store still records every op (queued blind),
 * without a round trip per packet. */
static int open_client(struct worker *w, bool claim, struct rw_err *e)
{
    int rc = store_client_open(w->env.st, w->o->vertex, w->o->slot, &w->env.sc, e);
    if (!rc &&
        ((claim && (rc = store_claim(w->env.sc))) || (rc = store_client_cache(w->env.sc, 1 << 16))))
        rw_errf(e, rc, "store: %s", store_client_errmsg(w->env.sc));
    return rc;
}

/* A replacement replays on a client without the cache: replayed ops are answered
 * by the store's records, in whatever order the failed worker issued them, which
 * a cache filled in replay order would not reproduce. The loop then gets a fresh
 * client with the cache, opened after the claim, so it joins the new epoch. */
static int open_store(struct worker *w, struct rw_err *e)
{
    int rc = w->o->store ? 0 : store_open(w->o->store_url, &w->env.st, e);
    if (rc)
        return rc;
    if (w->o->store)
        w->env.st = w->o->store;
    if (!w->o->recover)
        return open_client(w, true, e);
    rc = store_client_open(w->env.st, w->o->vertex, w->o->slot, &w->env.sc, e);
    if (!rc && (rc = store_claim(w->env.sc)))
        rw_errf(e, rc, "store: %s", store_client_errmsg(w->env.sc));
    if (!rc)
        rc = worker_recover(w, e);
    if (rc)
        return rc;
    store_client_close(w->env.sc);
    w->env.sc = NULL;
    return open_client(w, false, e);
}

static void teardown(struct worker *w)
{
    if (w->self && w->o->def->fini)
        w->o->def->fini(w->self);
    for (unsigned i = 0; w->env.outs && i < w->o->nout; i++)
        if (w->env.outs[i].filtered)
            pcap_freecode(&w->env.outs[i].prog);
    if (w->poisoned)
        pcap_freecode(&w->poison);
    if (w->env.alerts)
        fclose(w->env.alerts);
    if (w->o->ft)
        dedup_free(&w->dd);
    else
        lstate_free(&w->env.ls);
    heap_clear(&w->pending);
    backlog_free(w);
    free(w->env.outs);
    free(w->in_mark);
    free(w->self);
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
        rw_errf(e, rc, "%s[%u]: %s", o->nf_name, o->instance, w.env.err.msg);
    if (rc && e)
        e->code = run_code(rc);
    rc = run_code(rc);
    if (w.env.sc)
        store_client_close(w.env.sc);
    if (w.env.st && !o->store)
        store_close(w.env.st);
    atomic_store(&o->status->state, rc ? 3 : 2);
    teardown(&w);
    return rc;
}

uint64_t worker_lat_percentile(const _Atomic uint64_t *hist, double pct)
{
    uint64_t total = 0, seen = 0;
    for (int b = 0; b < WORKER_LAT_BUCKETS; b++)
        total += atomic_load(&hist[b]);
    if (!total)
        return 0;
    uint64_t want = (uint64_t)((double)total * pct / 100.0);
    for (int b = 0; b < WORKER_LAT_BUCKETS; b++) {
        seen += atomic_load(&hist[b]);
        if (seen > want || seen == total)
            return bucket_mid((unsigned)b);
    }
    return 0;
}

/* ---- a worker with no links (local_nf.c) ---- */

struct nf_local_run {
    struct worker w;
    struct link_pkt *pkt; /* one slot's worth, reused */
    uint32_t cap;
};

int worker_local_start(const struct worker_opts *o, struct nf_local_run **out, struct rw_err *e)
{
    struct nf_local_run *r = calloc(1, sizeof(*r));
    if (!r)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    r->w.o = o;
    int rc = setup(&r->w, e);
    if (rc) {
        teardown(&r->w);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int worker_local_packet(struct nf_local_run *r, const struct rw_meta *meta, const uint8_t *data,
                        uint32_t len, unsigned *emitted)
{
    if (!r->pkt || len > r->cap) {
        struct link_pkt *p = realloc(r->pkt, sizeof(*p) + len);
        if (!p)
            return RW_ENOMEM;
        r->pkt = p;
        r->cap = len;
    }
    r->pkt->meta = *meta;
    r->pkt->sent_ns = 0;
    r->pkt->len = r->pkt->wire_len = len;
    memcpy(r->pkt->data, data, len);
    int rc = worker_process_one(&r->w, r->pkt);
    *emitted = r->w.env.emits;
    return rc;
}

void worker_local_stop(struct nf_local_run *r)
{
    if (!r)
        return;
    teardown(&r->w);
    free(r->pkt);
    free(r);
}
