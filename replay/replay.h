/*
 * replay.h - reading the log back out (the replay part's public API).
 *
 * A replay selects packets by clock range, time window, flow and BPF filter (the
 * log's indexes narrow the blocks read; libpcap's BPF compiler does the rest) and
 * sends them to a capture file (pcapng with the clock in each packet's comment,
 * or classic pcap) or to a DPDK port at the recorded pace or at top speed. Later,
 * the same selection feeds recovering NF instances.
 */
#ifndef RW_REPLAY_H
#define RW_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

struct rte_mempool;

struct replay_opts {
    struct log_query q;
    const char *bpf;          /* optional tcpdump-style filter */
    bool pcap_nanosecond;     /* classic pcap output with ns timestamps (default µs) */
    const char *query;        /* pcapng: what was asked (the section's comment) */
    log_progress_fn progress; /* optional */
    log_damage_fn damage;     /* damaged blocks are skipped and reported here */
    void *ctx;
};

struct replay_stats {
    struct log_scan_stats scan;
    uint64_t packets, bytes;
    uint64_t late;       /* port replay: packets sent after their due time (pacing) */
    uint64_t fragmented; /* port replay: datagrams sent in fragments (larger than the MTU) */
    uint64_t too_big;    /* port replay: larger than the MTU, not fragmentable, sent whole */
    /* Port replay, paced: how well the schedule was kept. Elapsed runs from the
     * first packet's send to the last one's, scheduled from the first's to the last
     * one's due time ((last ts - first ts) / speed when timestamps only grow; a
     * packet stamped before the first is due at once); drift = elapsed - scheduled
     * (positive: the replay ran late); a packet is late when it left more than 1 ms
     * after its due time. */
    uint64_t elapsed_ns, scheduled_ns, max_late_ns;
    int64_t drift_ns;
};

void replay_opts_default(struct replay_opts *o);

/* Writes the selection to path ("-": standard output): classic pcap when it ends
 * in .pcap, else pcapng, whose section names the log and o->query.
 * RW_EINVAL: a BPF filter that does not compile; log_reader_open's and
 * log_scan's errors (RW_ECORRUPT for a damaged block without o->damage); RW_EIO,
 * RW_ENOSPC writing: path is left with what was written (replay_trim_capture
 * cuts it back to its last whole packet). */
int replay_to_file(const char *logdir, const char *path, const struct replay_opts *o,
                   struct replay_stats *st, struct rw_err *e);

/* Calls fn(ctx, record) for each packet of the selection, in clock order (the
 * BPF filter applied): what `rewind log flows` and `log hosts` summarise. Returns
 * 0, fn's non-zero value, RW_EINVAL (a BPF filter that does not compile), or
 * log_reader_open's and log_scan's errors; fn may have seen some records. */
int replay_each(const char *logdir, const struct replay_opts *o, log_visit_fn fn, void *ctx,
                struct replay_stats *st, struct rw_err *e);

/* Cuts a capture that replay_to_file left unfinished (its process died mid-write)
 * back to its last whole packet, read with libpcap, so that what stays is a
 * valid capture. *kept: the whole packets left. RW_ECORRUPT when not even the
 * file's header is whole (the file is left as it is), RW_EIO. */
int replay_trim_capture(const char *path, uint64_t *kept, struct rw_err *e);

/* Sends the selection out of a started DPDK port. speed 1.0 = recorded pace,
 * 2.0 = twice as fast, 0 = as fast as the port takes them. Each packet is due at
 * start + (ts - first ts) / speed: scheduling against the first packet, not the
 * previous one, keeps errors from adding up. RW_EINVAL (the filter), RW_ENOMEM
 * (out of mbufs), and log_reader_open's and log_scan's errors; the packets sent
 * before a failure are gone. */
int replay_to_port(const char *logdir, uint16_t port, struct rte_mempool *pool, double speed,
                   const struct replay_opts *o, struct replay_stats *st, struct rw_err *e);

/* ---- pcapng writer (pcapng.c) ----
 * A minimal pcapng writer (section header, one Ethernet interface with
 * nanosecond resolution, enhanced packet blocks with a comment), used by replay
 * and by the coordinator's quarantine file. Written by hand because libpcap only
 * writes classic pcap, and pcapng is what carries the clock to Wireshark as a
 * per-packet comment. */

struct pcapng {
    FILE *f;
    bool to_stdout;
};

/* What the section and its one interface say about the capture (each optional):
 * Wireshark shows them in Statistics > Capture File Properties. */
struct pcapng_info {
    const char *application; /* shb_userappl: "rewind 1.2" */
    const char *comment;     /* the section's comment: which log, which query */
    const char *if_name;     /* if_name */
    const char *if_description;
};

/* path "-": standard output (left open by pcapng_close). info may be NULL. -1
 * with errno when the file cannot be opened or its header written. */
int pcapng_open(struct pcapng *w, const char *path, const struct pcapng_info *info);
int pcapng_write(struct pcapng *w, uint64_t ts_ns, uint32_t cap_len, uint32_t wire_len,
                 const uint8_t *data, const char *comment);
/* Returns 0 when every byte reached the file. */
int pcapng_close(struct pcapng *w);

#endif
