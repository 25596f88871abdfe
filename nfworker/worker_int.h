/*
 * worker_int.h - the worker's state, shared by worker.c (the loop) and
 * recover.c (taking a failed slot over). Internal to nfworker.
 */
#ifndef RW_WORKER_INT_H
#define RW_WORKER_INT_H

#include <stdio.h>

#include "nf.h"
#include "nfworker.h"
#include "link.h"
#include "store.h"

#include <pcap/pcap.h>

/* Packets a worker took off a link but has not handled yet (recovery buffers
 * live traffic while it replays): a FIFO per input link. */
struct backlog {
    struct link_pkt **a;
    size_t head, n, cap;
};

/* An output a clone holds until it takes the slot (its straggler sends them
 * meanwhile): the packet, and the edge and instance it goes to. */
struct held_out {
    struct link_pkt *p;
    uint16_t edge, inst;
};

struct worker {
    const struct worker_opts *o;
    struct nf_inst *nf;         /* the slot's NF */
    struct store *st;           /* FT: the run's store */
    struct store_client *sc;    /* ... and the slot's client (the NF's ops go to it) */
    const struct link_pkt *cur; /* the input being processed (its outputs copy sent_ns) */
    FILE *alerts;
    struct rw_err err; /* why the loop stopped */
    struct dedup dd;
    uint64_t *in_mark;
    uint64_t sent_mark;
    uint64_t max_clock;       /* highest input clock processed */
    struct link_heap pending; /* several input links: inputs waiting for every link's mark */
    struct backlog *backlog;
    struct store_stats store_base; /* of the clients closed before sc */
    uint64_t done;                 /* last clock given to store_done */
    uint64_t flushed_done;         /* ... and the last one flushed */
    uint64_t last_flush_ns;        /* store flushes carry W even when no batch fills */
    uint64_t trimmed;              /* G of the last trim (the first instance of an NF trims) */
    int qslot;                     /* its index in the shared block's quarantine (-1: none) */
    bool poisoned;                 /* `rewind chaos --poison`: abort on a packet matching poison */
    struct bpf_program poison;
    /* Stragglers: a clone's held outputs (a FIFO in clock order). */
    bool holding;
    struct held_out *held;
    size_t held_head, held_n, held_cap;
    uint64_t busy_t0, busy_c0;      /* the busy stretch's start: wall and CPU time */
    uint64_t blocked_ns;            /* ... and the time since spent waiting on a full output link */
    uint64_t waited_ns, waited_cpu; /* the last wait for input began (0: none since) */
    uint64_t wake_sent;             /* ... and the first input after it was sent */
    uint64_t depth;                 /* inputs waiting at the start of the last turn */
};

/* Processes one input (live or replayed); a quarantined one is skipped. */
int worker_process_one(struct worker *w, const struct link_pkt *p);
/* The quarantine entry of input m at slot (a packet of death to skip), or NULL.
 * Costs one load while the run has none; NULL outside a run (sh NULL, slot < 0). */
struct worker_quarantine *worker_quarantined(struct worker_shared *sh, int slot,
                                             const struct rw_meta *m);
/* 1 when p was seen already (a duplicate, dropped), 0 when new, or an error. */
int worker_duplicate(struct worker *w, const struct link_pkt *p);
/* Records a store error of the worker's own (trim, flush) in w->err; returns rc. */
int worker_store_err(struct worker *w, int rc);
/* Makes sc the slot's client, for the worker and its NF's ops. */
void worker_set_client(struct worker *w, struct store_client *sc);

/* Tells the run the W this worker last flushed (a lower bound of the slot's W in
 * the store), from which the trim watermark G is derived. */
void worker_publish_w(struct worker *w);

/* Copies everything waiting on the input links into the backlog. */
int worker_buffer_links(struct worker *w);

/* recover.c: replays the slot's packets in (W, R) and leaves live traffic that
 * arrived meanwhile in the backlog. With o->clone, first tails the log beside
 * the slot's worker (outputs held) until the coordinator says takeover. */
int worker_recover(struct worker *w, struct rw_err *e);

/* A clone sends what it held (after taking the slot's links) and stops holding. */
void worker_release_held(struct worker *w);
/* Drops held outputs of inputs below mark (the slot's worker sent them). */
void worker_trim_held(struct worker *w, uint64_t mark);

/* Whether the NF at nf_index runs one instance: its slot then alone changes the
 * NF's objects, shared ones included (store_client_sole). */
bool worker_sole(const struct chain *c, uint32_t nf_index);

/* Puts the slot's store figures (every client it used) in its status block. */
void worker_publish_store(struct worker *w);

#endif
