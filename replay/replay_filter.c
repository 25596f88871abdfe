/*
 * replay_filter.c - see replay_filter.h.
 */
#include "replay_filter.h"

#include <string.h>

void replay_opts_default(struct replay_opts *o)
{
    memset(o, 0, sizeof(*o));
    log_query_all(&o->q);
}

int replay_filter_init(struct replay_filter *f, const char *bpf, struct rw_err *e)
{
    memset(f, 0, sizeof(*f));
    if (!bpf || !*bpf)
        return 0;
    pcap_t *dead = pcap_open_dead(DLT_EN10MB, 262144);
    if (!dead)
        return rw_errf(e, RW_ENOMEM, "cannot set up the BPF compiler");
    if (pcap_compile(dead, &f->prog, bpf, 1, PCAP_NETMASK_UNKNOWN) < 0) {
        rw_errf(e, RW_EINVAL, "filter '%s': %s", bpf, pcap_geterr(dead));
        pcap_close(dead);
        return RW_EINVAL;
    }
    pcap_close(dead);
    f->on = true;
    if (log_pred_compile(bpf, &f->pred)) {
        replay_filter_fini(f);
        return rw_errf(e, RW_ENOMEM, "out of memory");
    }
    return 0;
}

bool replay_filter_match(const struct replay_filter *f, const struct log_rec *r)
{
    if (!f->on)
        return true;
    struct pcap_pkthdr h;
    memset(&h, 0, sizeof(h));
    h.caplen = r->cap_len;
    h.len = r->orig_len;
    return pcap_offline_filter(&f->prog, &h, r->data) != 0;
}

void replay_filter_fini(struct replay_filter *f)
{
    if (f->on)
        pcap_freecode(&f->prog);
    log_pred_free(f->pred);
    f->pred = NULL;
    f->on = false;
}

struct route {
    const struct replay_opts *o;
    log_visit_fn visit;
    void *vctx;
};

static int route_visit(void *ctx, const struct log_rec *r)
{
    struct route *rt = ctx;
    return rt->visit(rt->vctx, r);
}

static void route_damage(void *ctx, uint32_t seg, uint64_t clock, const char *why)
{
    struct route *rt = ctx;
    rt->o->damage(rt->o->ctx, seg, clock, why);
}

static void route_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct route *rt = ctx;
    rt->o->progress(rt->o->ctx, done, total);
}

int replay_scan(struct log_reader *r, const struct replay_opts *o, const struct replay_filter *f,
                log_visit_fn visit, void *vctx, struct log_scan_stats *st, struct rw_err *e)
{
    struct log_query q = o->q;
    if (!q.keys)
        q.keys = f->pred;
    struct route rt = {.o = o, .visit = visit, .vctx = vctx};
    struct log_scan_cbs cb = {.visit = route_visit,
                              .damage = o->damage ? route_damage : NULL,
                              .progress = o->progress ? route_progress : NULL,
                              .ctx = &rt};
    return log_scan(r, &q, &cb, st, e);
}

struct each {
    const struct replay_filter *filt;
    struct replay_stats *st;
    log_visit_fn fn;
    void *ctx;
};

static int each_rec(void *ctx, const struct log_rec *r)
{
    struct each *x = ctx;
    if (!replay_filter_match(x->filt, r))
        return 0;
    x->st->packets++;
    x->st->bytes += r->orig_len;
    return x->fn(x->ctx, r);
}

int replay_each(const char *logdir, const struct replay_opts *o, log_visit_fn fn, void *ctx,
                struct replay_stats *st, struct rw_err *e)
{
    struct replay_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    struct replay_filter filt;
    int rc = replay_filter_init(&filt, o->bpf, e);
    if (rc)
        return rc;
    struct log_reader *r;
    if (!(rc = log_reader_open(logdir, &r, e))) {
        struct each x = {.filt = &filt, .st = st, .fn = fn, .ctx = ctx};
        if (!(rc = log_query_check(r, &o->q, e)))
            rc = replay_scan(r, o, &filt, each_rec, &x, &st->scan, e);
        log_reader_close(r);
    }
    replay_filter_fini(&filt);
    return rc;
}
