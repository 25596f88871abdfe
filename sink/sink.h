/*
 * sink.h - the sink part's API: the chain's exit. It takes the last NFs'
 * outputs, drops duplicates by (clock, sub), holds each packet until its input
 * is durable in the root's log (output commit) and releases in (clock, sub)
 * order to the chain's output log. It runs as a thread of the coordinator.
 */
#ifndef RW_SINK_H
#define RW_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"
#include "rw_common.h"
#include "rw_lat.h"

struct log_writer;

struct sink_opts {
    struct link **in;
    unsigned nin;
    bool ft;                   /* drop duplicates, hold until durable */
    bool keep_dups;            /* debug (--no-dedup): release duplicates too */
    _Atomic uint64_t *durable; /* the root's durable watermark (FT) */
    struct log_writer *output; /* chain output log (may be NULL) */
    const volatile int *stop;  /* set when the run is abandoned */
};

struct sink_stats {
    _Atomic uint64_t released;   /* readable while the sink runs */
    _Atomic uint64_t exit_clock; /* every clock below it has left the chain (readable) */
    uint64_t dups, held_max;
    uint64_t lat[RW_LAT_BUCKETS]; /* root send -> sink release */
    uint64_t clocks_done;         /* final mark */
};

/* Runs until every input has delivered its final mark and every packet has been
 * released in (clock, sub) order, or *o->stop is set (0: what was committed to
 * the output log stays; the held rest is dropped). RW_ENOMEM (holding packets),
 * or the output log's error (RW_EIO, RW_ENOSPC): output up to the last commit is
 * in the log, st->released counts only that. */
int sink_run(const struct sink_opts *o, struct sink_stats *st, struct rw_err *e);

#endif
