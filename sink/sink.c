/*
 * sink.c - the chain's exit.
 *
 * Packets from the last NFs' instances arrive interleaved; each link is in
 * clock order and carries progress marks. The sink keeps arrivals in a min-heap
 * by (clock, sub) and releases the front while it is below both the lowest mark
 * of its inputs (nothing earlier can still come) and, with FT, the root's durable
 * watermark (output commit: nothing leaves before its input is durable). Output
 * therefore leaves in (clock, sub) order, which is also what makes duplicates
 * easy: a copy of what was already released is dropped on arrival, and so is a
 * copy of what is held (a set of the held (clock, sub), trimmed as the front
 * moves): replays under a kill storm resend the same packets many times, and a
 * hold of copies would grow past the root's in-flight bound (measured: 912 k
 * packets held with a bound of 65,536, kills every 20 ms).
 */
#include "sink.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "link.h"

struct sink {
    const struct sink_opts *o;
    struct sink_stats *st;
    struct link_heap h;
    struct dedup held; /* (clock, sub) of what the heap holds (FT) */
    uint64_t *mark;
    bool released_any;
    uint64_t last_clock;
    uint16_t last_sub;
    /* Appended to the output log but not yet committed: not counted as released
     * (nor passed by exit_clock) until a commit makes them survive a crash. */
    uint64_t unc, unc_first_clock, unc_since_ns;
    uint64_t bound; /* the last release bound, published once its output is committed */
};

#define SINK_COMMIT_NS 1000000ull /* group commit window of the output log */
#define SINK_DOZE_NS   100000     /* a nap while held output waits (a tenth of a commit) */

static bool already_released(const struct sink *s, const struct rw_meta *m)
{
    return s->released_any &&
           (m->clock < s->last_clock || (m->clock == s->last_clock && m->sub <= s->last_sub));
}

static int take(struct sink *s, const struct link_pkt *p)
{
    if (s->o->ft && !s->o->keep_dups) {
        int seen =
            already_released(s, &p->meta) ? 1 : dedup_seen(&s->held, p->meta.clock, p->meta.sub);
        if (seen < 0)
            return seen;
        if (seen) {
            s->st->dups++;
            return 0;
        }
    }
    struct link_pkt *x = link_pkt_copy(p);
    if (!x)
        return RW_ENOMEM;
    int rc = link_heap_push(&s->h, x);
    if (rc)
        free(x);
    if (s->h.n > s->st->held_max)
        s->st->held_max = s->h.n;
    return rc;
}

static int release(struct sink *s, struct link_pkt *x, struct rw_err *e)
{
    bool repeat = s->released_any && x->meta.clock == s->last_clock && x->meta.sub == s->last_sub;
    /* With keep_dups (debug) a copy right behind its original is released too; one
     * that comes after later clocks cannot be put in the ordered output log. */
    if (s->o->ft && already_released(s, &x->meta) && !(s->o->keep_dups && repeat)) {
        s->st->dups++; /* both copies were held: the second reaches the front */
        return 0;
    }
    s->released_any = true;
    s->last_clock = x->meta.clock;
    s->last_sub = x->meta.sub;
    s->st->lat[rw_lat_bucket(x->sent_ns ? rw_now_ns() - x->sent_ns : 0)]++;
    if (!s->o->output) {
        atomic_fetch_add(&s->st->released, 1);
        return 0;
    }
    struct log_rec r = {
        .meta = x->meta, .orig_len = x->wire_len, .cap_len = x->len, .data = x->data};
    r.meta.flags = repeat ? RW_F_REPEAT : 0;
    if (!s->unc++) {
        s->unc_first_clock = x->meta.clock;
        s->unc_since_ns = rw_now_ns();
    }
    return log_writer_append(s->o->output, &r, e);
}

/* Commits the output appended so far when it has waited a commit window (or
 * now, when forced: the sink is about to wait or end), and only then counts it
 * as released: what the run reports as out is in the output log. One commit per
 * window keeps the cost of a transaction off each packet. */
static int commit_output(struct sink *s, bool force, struct rw_err *e)
{
    if (!s->unc || (!force && rw_now_ns() - s->unc_since_ns < SINK_COMMIT_NS))
        return 0;
    int rc = log_writer_commit(s->o->output, e);
    if (rc)
        return rc;
    atomic_fetch_add(&s->st->released, s->unc);
    s->unc = 0;
    return 0;
}

static void publish_exit(struct sink *s, uint64_t b)
{
    if (s->unc && s->unc_first_clock < b)
        b = s->unc_first_clock;
    if (b > atomic_load(&s->st->exit_clock))
        atomic_store(&s->st->exit_clock, b);
}

static uint64_t bound(const struct sink *s)
{
    uint64_t m = UINT64_MAX;
    for (unsigned i = 0; i < s->o->nin; i++)
        m = s->mark[i] < m ? s->mark[i] : m;
    if (s->o->ft) {
        uint64_t d = atomic_load(s->o->durable);
        m = d < m ? d : m;
    }
    return m;
}

/* Releases every held packet below the bound; returns how many or an error. */
static int release_ready(struct sink *s, struct rw_err *e)
{
    uint64_t b = bound(s);
    int n = 0;
    while (s->h.n && (s->h.a[0]->meta.clock < b || b == UINT64_MAX)) {
        struct link_pkt *x = link_heap_pop(&s->h);
        int rc = release(s, x, e);
        free(x);
        if (rc)
            return rc;
        n++;
    }
    int rc = commit_output(s, false, e);
    if (rc)
        return rc;
    s->bound = b;
    publish_exit(s, b);
    if (s->o->ft && !s->o->keep_dups && b != UINT64_MAX && dedup_trim(&s->held, b))
        return rw_errf(e, RW_ENOMEM, "sink: out of memory");
    return n;
}

static int drain_links(struct sink *s)
{
    int n = 0;
    for (unsigned i = 0; i < s->o->nin; i++) {
        struct link_pkt *p;
        for (int k = 0; k < 256 && (p = link_recv(s->o->in[i])); k++, n++) {
            int rc = 0;
            if (p->meta.flags & RW_F_MARK)
                s->mark[i] = p->meta.clock;
            else
                rc = take(s, p);
            link_release(s->o->in[i], p);
            if (rc)
                return rc;
        }
    }
    return n;
}

static bool finished(const struct sink *s)
{
    for (unsigned i = 0; i < s->o->nin; i++)
        if (s->mark[i] != UINT64_MAX)
            return false;
    return s->h.n == 0;
}

int sink_run(const struct sink_opts *o, struct sink_stats *st, struct rw_err *e)
{
    /* released and exit_clock are read by other threads while the sink runs: set
     * atomically, never by memset (a data race ThreadSanitizer found) */
    atomic_store(&st->released, 0);
    atomic_store(&st->exit_clock, 0);
    st->dups = st->held_max = st->clocks_done = 0;
    memset(st->lat, 0, sizeof(st->lat));
    struct sink s = {.o = o, .st = st};
    s.mark = calloc(o->nin ? o->nin : 1, sizeof(uint64_t));
    if (!s.mark || dedup_init(&s.held, 12)) {
        free(s.mark);
        return rw_errf(e, RW_ENOMEM, "out of memory");
    }
    int rc = 0;
    while (!finished(&s) && !(o->stop && *o->stop)) {
        int got = drain_links(&s);
        int rel = got < 0 ? got : release_ready(&s, e);
        if (got < 0 || rel < 0) {
            rc = got < 0 ? rw_errf(e, got, "sink: out of memory") : rel;
            break;
        }
        if (!got && !rel) { /* wait for packets, or for the durable watermark */
            if ((rc = commit_output(&s, true, e)))
                break;
            publish_exit(&s, s.bound);
            if (o->ft && s.h.n) {
                /* Held output waits for the log's next group commit: sleep without
                 * asking the NFs to wake us, which costs them a write(2) and a
                 * wake-up per packet while the sink dozes (7% of a chain's CPU). */
                struct timespec ts = {0, SINK_DOZE_NS};
                nanosleep(&ts, NULL);
            } else {
                link_wait_any(o->in, o->nin, s.h.n ? 1 : 100);
            }
        }
    }
    if (!rc && !(o->stop && *o->stop) && (rc = commit_output(&s, true, e)) == 0)
        publish_exit(&s, s.bound);
    st->clocks_done = UINT64_MAX;
    link_heap_clear(&s.h);
    dedup_free(&s.held);
    free(s.mark);
    return rc;
}
