/*
 * worker_int.h - the worker's state, shared by worker.c (the loop, the NF
 * environment) and recover.c (taking a failed slot over). Internal to nfworker.
 */
#ifndef RW_WORKER_INT_H
#define RW_WORKER_INT_H

#include <stdio.h>

#include "localstate.h"
#include "nfworker.h"
#include "pktheap.h"
#include "store.h"

#include <pcap/pcap.h>

struct out_edge {
    const struct worker_out *w;
    struct bpf_program prog;
    bool filtered;
};

struct nf_env;
/* Where nf_emit sends a packet when set (a replay of an upstream NF) instead of
 * the output links. */
typedef int (*nf_capture_fn)(void *ctx, struct nf_env *env, const uint8_t *data, uint32_t len,
                             uint32_t wire_len, uint16_t sub);

struct nf_env {
    const struct worker_opts *o;
    uint16_t slot; /* whose per-flow objects its ops touch (age queues name it) */
    struct store *st;
    struct store_client *sc;
    struct lstate ls;
    struct out_edge *outs;
    const struct link_pkt *in;
    uint32_t seq;
    unsigned emits;
    FILE *alerts;
    nf_capture_fn capture;
    void *capture_ctx;
    struct rw_err err; /* the last failure of an nf_* call (env_err) */
};

/* Packets a worker took off a link but has not handled yet (recovery buffers
 * live traffic while it replays): a FIFO per input link. */
struct backlog {
    struct link_pkt **a;
    size_t head, n, cap;
};

struct worker {
    const struct worker_opts *o;
    struct nf_env env;
    void *self;
    struct dedup dd;
    uint64_t *in_mark;
    uint64_t sent_mark;
    uint64_t max_clock;  /* highest input clock processed */
    struct heap pending; /* several input links: inputs waiting for every link's mark */
    struct backlog *backlog;
    uint64_t done;          /* last clock given to store_done */
    uint64_t flushed_done;  /* ... and the last one flushed */
    uint64_t last_flush_ns; /* store flushes carry W even when no batch fills */
    uint64_t trimmed;       /* G of the last trim (the first instance of an NF trims) */
    int qslot;              /* its index in the shared block's quarantine (-1: none) */
    bool poisoned;          /* `rewind chaos --poison`: abort on a packet matching poison */
    struct bpf_program poison;
};

/* Processes one input (live or replayed); a quarantined one is skipped. */
int worker_process_one(struct worker *w, const struct link_pkt *p);
/* The quarantine entry of input m at slot (a packet of death to skip), or NULL.
 * Costs one load while the run has none; NULL outside a run (sh NULL, slot < 0). */
struct worker_quarantine *worker_quarantined(struct worker_shared *sh, int slot,
                                             const struct rw_meta *m);
/* 1 when p was seen already (a duplicate, dropped), 0 when new, or an error. */
int worker_duplicate(struct worker *w, const struct link_pkt *p);
int worker_store_err(struct nf_env *env, int rc);

/* Tells the run the W this worker last flushed (a lower bound of the slot's W in
 * the store), from which the trim watermark G is derived. */
void worker_publish_w(struct worker *w);

/* Copies everything waiting on the input links into the backlog. */
int worker_buffer_links(struct worker *w);

/* recover.c: replays the slot's packets in (W, R) and leaves live traffic that
 * arrived meanwhile in the backlog. */
int worker_recover(struct worker *w, struct rw_err *e);

#endif
