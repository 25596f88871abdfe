/*
 * replay_filter.h - what every replay target shares: the BPF filter and a scan
 * that routes the log's callbacks to the right contexts. Internal to replay.
 */
#ifndef RW_REPLAY_FILTER_H
#define RW_REPLAY_FILTER_H

#include <pcap/pcap.h>
#include <stdbool.h>

#include "replay.h"

struct replay_filter {
    bool on;
    struct bpf_program prog;
    struct log_pred *pred; /* the filter's share the log's keys index answers; or NULL */
};

int replay_filter_init(struct replay_filter *f, const char *bpf, struct rw_err *e);
bool replay_filter_match(const struct replay_filter *f, const struct log_rec *r);
void replay_filter_fini(struct replay_filter *f);

/* log_scan of o's query narrowed by f's keys predicate, with visit(vctx) for
 * records and o's progress/damage with o->ctx. */
int replay_scan(struct log_reader *r, const struct replay_opts *o, const struct replay_filter *f,
                log_visit_fn visit, void *vctx, struct log_scan_stats *st, struct rw_err *e);

#endif
