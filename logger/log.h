/*
 * log.h - the durable, clock-stamped packet log (the logger part's public API).
 *
 * Every packet that enters a chain is appended here with its clock before its
 * effects may leave the chain; failover replays from it and analysts query it
 * for forensics. A log is a directory:
 *
 *   DIR/manifest.mdb       LMDB: the segment table, the root's clock reservation
 *                          and the flow hash version of the flow index
 *   DIR/seg-NNNNNNNN/      one LMDB environment per segment:
 *       blocks  key = first clock of a block (u64 BE) -> encoded block (log_block.h)
 *       time    key = running max ts (u64 BE) + first clock (u64 BE) -> block clock
 *       flow    key = first clock of a block (u64 BE) -> Bloom filter of its flows
 *       keys    key = first clock of a block (u64 BE) -> Bloom filter of its hosts,
 *               networks, ports and protocols (log_keys.h)
 *       info    the segment's summary, updated in the same transaction as its blocks
 *
 * Appends collect packets into blocks (compressed with lz4 when that helps); full
 * or aged blocks are committed in groups, one LMDB transaction per group, so the
 * cost of a commit (an fsync in `power` mode) is shared by many packets. The
 * durable watermark D says which clocks are on stable storage: every clock < D.
 *
 * Writers: one per log (a log_writer, usually driven by a log_thread). Readers:
 * any number, in any process, at the same time as the writer.
 */
#ifndef RW_LOG_H
#define RW_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "rw_common.h"
#include "rw_flow.h"

/* How far a commit goes before D advances past its packets. */

struct log_opts {
    enum rw_durability durability;
    uint64_t segment_bytes; /* rotate when a segment holds this many stored bytes */
    uint64_t retain_bytes;  /* delete oldest sealed segments beyond this (0: keep all) */
    uint64_t retain_ns;     /* delete sealed segments older than this in packet time (0: keep) */
    uint64_t trim_floor;    /* never delete a segment holding clocks >= this */
    uint32_t block_pkts;    /* close a block at this many packets */
    uint32_t block_bytes;   /* ... or this many raw bytes */
    uint64_t commit_ns;     /* commit a closed or open block at most this old */
    bool allow_repeats;     /* debug: accept the last (clock, sub) again (the output of a
                               run with --no-dedup, where duplicates are the point) */
};

/* Fills o with the defaults: process durability, 256 MiB segments, keep all,
 * 1024-packet / 256 KiB blocks, 1 ms group commit. */
void log_opts_default(struct log_opts *o);
/* RW_EINVAL for a name that is not a durability mode (*d unchanged). */
int log_durability_parse(const char *s, enum rw_durability *d);
const char *log_durability_name(enum rw_durability d);

/* One packet record, as appended and as read back. */
struct log_rec {
    struct rw_meta meta;
    uint32_t orig_len; /* length on the wire */
    uint32_t cap_len;  /* bytes stored */
    const uint8_t *data;
};

/* ---- writing ---- */

struct log_writer;

/* Opens DIR (creating it if needed) for appending; recovers after a crash:
 * committed blocks stay, and log_writer_next_clock() is above every clock ever
 * handed out (the last reservation). RW_EINVAL: bad options, or another
 * rewind writes DIR (its pid named); RW_ENOENT/RW_ECORRUPT: DIR holds segments
 * but no sound manifest; RW_ENOSPC, RW_EIO, RW_ENOMEM. A failure leaves the
 * committed blocks as they were. */
int log_writer_open(const char *dir, const struct log_opts *o, struct log_writer **out,
                    struct rw_err *e);

/* Appends one record; clocks must increase. May commit (group commit).
 * RW_EINVAL: a clock not above the last, or not reserved (nothing appended);
 * RW_ENOSPC, RW_EIO, RW_ENOMEM from the commit: the log is unchanged past the last
 * committed block (the durable watermark). */
int log_writer_append(struct log_writer *w, const struct log_rec *r, struct rw_err *e);

/* Commits what has waited commit_ns or longer; call it often when idle.
 * RW_ENOSPC, RW_EIO, RW_ENOMEM: the log is unchanged past the last committed block. */
int log_writer_tick(struct log_writer *w, uint64_t now_ns, struct rw_err *e);

/* Closes the open block and commits everything now. RW_ENOSPC, RW_EIO,
 * RW_ENOMEM: the log is unchanged past the last committed block. */
int log_writer_commit(struct log_writer *w, struct rw_err *e);

/* The durable watermark: every clock below it is stored per the durability mode. */
uint64_t log_writer_durable(const struct log_writer *w);

/* The lowest clock that may be handed out: above the last reservation and above
 * every logged clock. */
uint64_t log_writer_next_clock(const struct log_writer *w);

/* Durably records that clocks below `upto` may be in use (always fsync'd,
 * whatever the durability mode: a clock must never be handed out twice).
 * RW_ENOSPC, RW_EIO: the reservation stays where it was (hand out no clock past it). */
int log_writer_reserve(struct log_writer *w, uint64_t upto, struct rw_err *e);
uint64_t log_writer_reserved(const struct log_writer *w);

/* Commits, seals nothing, closes (w is freed whatever happens). Returns the
 * first error of the final commit (RW_ENOSPC, RW_EIO, RW_ENOMEM): the blocks
 * committed before it stay. */
int log_writer_close(struct log_writer *w, struct rw_err *e);

/* ---- the logger thread ---- */

/* The logger runs beside the packet path: the root hands it mbufs (metadata in
 * their private area, rw_mbuf.h) through a single-producer ring, and reads the
 * durable watermark and clock reservation back as atomics. Needs the DPDK EAL. */
struct rte_mbuf;
struct log_thread;

/* RW_EDPDK: no ring; RW_EIO: no thread; RW_ENOMEM. On failure nothing runs and w
 * stays the caller's. */
int log_thread_start(struct log_writer *w, unsigned ring_size, struct log_thread **out,
                     struct rw_err *e);
/* Takes ownership of up to n mbufs (freed once copied into a block); returns how
 * many were accepted (fewer when the ring is full). Single producer. */
unsigned log_thread_submit(struct log_thread *t, struct rte_mbuf **pkts, unsigned n);
uint64_t log_thread_durable(const struct log_thread *t);
/* Asks the thread to reserve clocks below upto; log_thread_reserved() says when
 * it is durable. */
void log_thread_want_reserve(struct log_thread *t, uint64_t upto);
uint64_t log_thread_reserved(const struct log_thread *t);
/* True once the thread has hit an error and stopped logging. */
bool log_thread_failed(const struct log_thread *t);
/* Drains the ring, commits, joins. Returns the thread's first error (those of
 * log_writer_append/commit/reserve): the log holds what was committed before it. */
int log_thread_stop(struct log_thread *t, struct rw_err *e);

/* ---- reading ---- */

struct log_seg_info {
    uint32_t id;
    bool sealed;
    bool ts_monotonic; /* every packet's ts >= the previous one's */
    /* The most a block's earliest ts lies behind the latest ts of the blocks
     * before it (0 when monotonic). LOG_LATE_UNKNOWN when not known: a segment
     * an older build wrote to, or a summary read from the manifest (the bound
     * is kept in the segment only). */
    uint64_t ts_late;
    uint64_t first_clock, last_clock;
    uint64_t min_ts, max_ts;
    uint64_t packets, blocks;
    uint64_t raw_bytes;    /* packet records before compression */
    uint64_t stored_bytes; /* block bytes as stored */
    uint64_t wire_bytes;   /* sum of orig_len */
};

#define LOG_LATE_UNKNOWN UINT64_MAX

struct log_reader;

/* Reads only. RW_ENOENT: not a log; RW_ECORRUPT: an empty, missing or unreadable
 * manifest beside segments; RW_EIO, RW_ENOMEM. A segment whose summary cannot be
 * read is not an error here: log_scan reports it. */
int log_reader_open(const char *dir, struct log_reader **out, struct rw_err *e);
void log_reader_close(struct log_reader *r);
uint32_t log_reader_nsegments(const struct log_reader *r);
const struct log_seg_info *log_reader_segment(const struct log_reader *r, uint32_t i);
uint64_t log_reader_reserved(const struct log_reader *r);
/* The RW_FLOW_HASH_VERSION recorded for the log's flow index; 0 when none is (a
 * log written before version 2). */
uint32_t log_reader_flow_hash(const struct log_reader *r);

/* A predicate over the log's per-block host/port/protocol index (log_keys.h),
 * compiled from a tcpdump filter. It only rules blocks out: a block it skips holds
 * no packet the filter matches, and the caller still filters every packet read
 * (libpcap), so the answer is the filter's. */
struct log_pred;

/* Compiles the index's share of a tcpdump filter: host, net, port, portrange, the
 * protocol keywords, src/dst, and/or/not. *out is NULL (returning 0) when the
 * filter uses anything else: a scan without a predicate reads every block (of its
 * clock and time bounds). The filter should already have compiled with libpcap.
 * RW_ENOMEM (*out NULL). */
int log_pred_compile(const char *bpf, struct log_pred **out);
void log_pred_free(struct log_pred *p);

/* A query: all bounds inclusive; the zero query plus log_query_all() matches all. */
struct log_query {
    uint64_t from_clock, to_clock;
    uint64_t since_ns, until_ns;
    bool has_flow;
    struct rw_flow flow;         /* matched in both directions */
    const struct log_pred *keys; /* optional: skip blocks it rules out (not owned) */
};

void log_query_all(struct log_query *q);

/* What a scan did, so callers (and tests) can see which index it used. */
struct log_scan_stats {
    const char *index; /* "clock", "time", "flow" or "keys" */
    uint64_t blocks_read, blocks_total;
    uint64_t packets_seen, packets_matched;
    uint64_t blocks_damaged;
};

/* Called for each matching record in clock order; a non-zero return stops the
 * scan and is returned by log_scan. */
typedef int (*log_visit_fn)(void *ctx, const struct log_rec *r);

/* Called after a damaged block was skipped (segment, its first clock, why). */
typedef void (*log_damage_fn)(void *ctx, uint32_t seg, uint64_t clock, const char *why);

/* Called now and then with blocks read so far and the total to expect. */
typedef void (*log_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct log_scan_cbs {
    log_visit_fn visit;
    log_damage_fn damage;     /* optional; without it a damaged block fails the scan */
    log_progress_fn progress; /* optional */
    void *ctx;
};

/* Reads only. Returns 0, visit's non-zero value, or: RW_ECORRUPT (a flow query the
 * log's flow hash version cannot serve; without a damage callback, a damaged block
 * or segment), RW_ENOENT (a missing segment, without a damage callback), RW_EIO.
 * After a failure visit may have seen some of the matching records. */
int log_scan(struct log_reader *r, const struct log_query *q, const struct log_scan_cbs *cb,
             struct log_scan_stats *st, struct rw_err *e);

/* What log_scan says before reading anything: RW_ECORRUPT, naming the log and the
 * version, for a flow query on a log whose flow hash version is not this build's
 * (its filters would hide blocks that hold the flow); else 0. Callers that produce
 * output can ask first and produce none. */
int log_query_check(const struct log_reader *r, const struct log_query *q, struct rw_err *e);

/* ---- checking ---- */

/* Called for each problem log_verify finds. */
typedef void (*log_problem_fn)(void *ctx, uint32_t seg, uint64_t clock, const char *what);

struct log_verify_stats {
    uint64_t segments, blocks, packets, problems;
};

struct log_verify_cbs {
    log_problem_fn problem;
    void (*segment)(void *ctx, uint32_t id); /* optional: a segment's check starts */
    void *ctx;
    uint32_t from_segment; /* skip segments with a lower id */
};

/* Checks every block (structure, checksum, clocks, indexes) of every segment.
 * Returns 0 when the log is sound, RW_ECORRUPT when problems were found (each
 * reported through cb->problem), or an error opening the manifest (RW_ENOENT,
 * RW_ECORRUPT, RW_EIO). Reads only. */
int log_verify(const char *dir, const struct log_verify_cbs *cb, struct log_verify_stats *st,
               struct rw_err *e);

#endif
