/*
 * root.h - the root splitter's public API.
 *
 * The root is where a packet enters rewind: it reads bursts from a DPDK port,
 * gives each packet its logical clock and arrival time, and hands it to the
 * logger thread (and, in a chain, to the first NF's instances). Clocks come from
 * durably reserved blocks, so after any crash the root starts above every clock
 * it ever handed out (design.md: A packet's life). IP fragments are reassembled before the clock
 * (root_frag.c): a datagram is one packet, one clock, in the log and the chain.
 *
 * Reading a trace: the trace is scanned with libpcap first. That gives the number
 * of packets to expect (net_pcap returns nothing at end of file, which looks the
 * same as an idle port), each packet's wire length and nanosecond timestamp
 * (DPDK keeps neither: mbufs carry the captured bytes and a microsecond stamp),
 * and finds truncation or damage before anything is logged.
 */
#ifndef RW_ROOT_H
#define RW_ROOT_H

#include <stdbool.h>
#include <stdint.h>

#include "link.h"
#include "log.h"
#include "rw_common.h"
#include "rw_flow.h"

/* One packet's header as the trace scan saw it. */
struct root_trace_pkt {
    uint64_t ts_ns;
    uint32_t wire_len, cap_len;
};

struct root_trace {
    struct root_trace_pkt *pkts;
    uint64_t n;
    /* A log's selection replayed as the input (`rewind run --from-log`): packet i
     * keeps clocks[i], its clock in that log, instead of a fresh one (strictly
     * increasing; not owned). NULL: fresh clocks. */
    const uint64_t *clocks;
    bool damaged;      /* libpcap stopped before the end of the file */
    char problem[256]; /* what was wrong, and where */
};

/* Scans a pcap/pcapng. Fails with RW_ENOENT/RW_EIO when it cannot be opened,
 * RW_EINVAL when it is not a regular file (a FIFO would hang the second read),
 * RW_EINPUT when it is not a capture or not Ethernet. A damaged tail is not a
 * failure: t->damaged says how far it got (the caller reports it, exit 3).
 * On failure t holds nothing to free. */
int root_trace_scan(const char *path, struct root_trace *t, struct rw_err *e);
void root_trace_free(struct root_trace *t);

/* IP reassembly at the root (docs/operator.md, "IP fragments"). "in" and the
 * drops count fragments, "reassembled" whole datagrams; at the end of a run
 * every fragment was either part of a reassembled datagram or dropped. */
struct root_frag_stats {
    uint64_t in;                 /* IPv4/IPv6 fragments read */
    uint64_t reassembled;        /* whole datagrams made of them, each one clock */
    uint64_t dropped_overlap;    /* of datagrams with overlapping, repeated or gapped pieces */
    uint64_t dropped_timeout;    /* of datagrams not whole in time, or at the input's end */
    uint64_t dropped_table_full; /* that found no free entry in the table */
    uint64_t dropped_invalid;    /* no payload, cut short, past 65,535 bytes, bad layout */
};

struct root_stats {
    uint64_t packets; /* read from the port (a trace's packets; fragments counted one by one) */
    uint64_t bytes;   /* captured bytes read */
    uint64_t stamped; /* given a clock and logged: packets, less fragments, plus datagrams */
    uint64_t first_clock, next_clock;
    uint64_t durable;    /* durable watermark at the end */
    uint64_t ring_waits; /* bursts that waited for room in the logger ring */
    uint64_t link_waits; /* packets that waited for room in an NF's link */
    uint64_t oversize;   /* packets larger than the links' slots (the chain's max_frame):
                            logged, not sent to any NF; report.json says how many */
    uint64_t full_waits; /* pauses of the input: the chain held max_in_flight clocks */
    struct root_frag_stats frag;
};

typedef void (*root_progress_fn)(void *ctx, const struct root_stats *st, uint64_t expected);

/* The splitter: where packets go after stamping. One edge per chain edge out of
 * the input: its target NF's instances (one link each), the flowspace that picks
 * the instance, and an optional BPF filter. */
struct link;

struct root_ingest_opts {
    const struct root_trace *trace; /* when reading a trace (port 0 is its net_pcap) */
    uint16_t port;
    volatile const int *stop;  /* set asynchronously to end a live capture */
    volatile const int *abort; /* set when the run is abandoned: stop waiting on links */
    root_progress_fn progress; /* called about every 100 ms */
    void *ctx;
    const struct link_edge *edges; /* open; NULL: log only (rewind log ingest) */
    unsigned nedges;
    _Atomic uint64_t *durable_out; /* published durable watermark (for the sink) */
    _Atomic uint64_t *clock_out;   /* published next clock, before a burst is sent
                                      (a replacement replays up to it) */
    uint64_t rate_pps;             /* at most this many packets per second (0: no limit) */
    /* Admission: the root takes no more input while its clock is more than
     * max_in_flight past *exit_clock (everything below it has left the chain).
     * What the chain holds, and what a replacement must replay, stays bounded
     * when faults outpace recovery. NULL: no bound. */
    const _Atomic uint64_t *exit_clock;
    uint64_t max_in_flight;
    /* A fragmented datagram not whole this long after its first fragment
     * arrived (arrival times, a trace's own) is dropped. 0: 30 s. */
    uint64_t frag_timeout_ns;
};

/* Runs the rx loop until the trace is consumed (or *stop), logging every packet
 * (a fragment only as part of its reassembled datagram) through a logger thread
 * on w (w NULL: --no-ft, no log, clocks kept in memory) and sending it along the
 * edges. The EAL and the port must be started. At the end every edge gets the
 * final progress mark, and fragments still incomplete are dropped (st->frag).
 * Fails with RW_ENOMEM when DPDK has no memory for the reassembly table,
 * RW_EINVAL for an edge filter that does not compile, RW_EDPDK/RW_EIO when the
 * logger thread cannot start, RW_EINPUT when DPDK delivers other packets than the
 * trace holds (or stops), and the logger's error (RW_ENOSPC, RW_EIO...) first:
 * then the log holds every packet below st->durable and the edges got their
 * final marks all the same. */
int root_ingest(const struct root_ingest_opts *o, struct log_writer *w, struct root_stats *st,
                struct rw_err *e);

#endif
