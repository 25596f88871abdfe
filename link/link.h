/*
 * link.h - the link part's API: the shared-memory channel that carries packets
 * and their metadata between the processes of a chain on one host, and the two
 * things every receiver of clocked packets needs: the duplicate filter (drop a
 * (clock, sub) already seen) and the heap that holds packets in (clock, sub)
 * order (the sink's release queue, a worker's merge of several input links).
 *
 * A link is one memfd that its owner (the coordinator side) creates and maps:
 * a header, two DPDK rte_rings used as single-producer/single-consumer queues of
 * slot numbers (filled: producer -> consumer; free: consumer -> producer), and
 * the packet slots. The rings hold slot numbers, not pointers, so every process
 * may map the region anywhere. One eventfd wakes a consumer that went to sleep
 * after finding the link empty; a producer only writes it when the consumer said
 * it sleeps, so the busy path makes no syscall.
 *
 * When a peer dies, its replacement attaches to the same memfd and heals its side
 * of the rings (link_take_consumer/producer); link_reset() rebuilds a quiet link
 * with every slot free. Nothing in the region belongs to a process's allocator,
 * so a dead peer cannot leave the survivor with dangling memory: at worst a slot
 * it held is lost until a reset. A replacement takes a failed slot over by
 * replaying it from the log (nfworker/recover.c).
 */
#ifndef RW_LINK_H
#define RW_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rw_common.h"
#include "rw_flow.h"

struct bpf_program;

/* One packet in a slot. */
struct link_pkt {
    struct rw_meta meta;
    uint64_t sent_ns;  /* CLOCK_MONOTONIC when the root sent its input (latency) */
    uint32_t len;      /* bytes in data */
    uint32_t wire_len; /* length on the wire */
    uint8_t data[];    /* link_data_room() bytes */
};

struct link_opts {
    uint32_t slots;     /* power of two, 2..65536 */
    uint32_t data_room; /* bytes per slot for packet data */
};

struct link;

/* Owner side: creates the memfd and the eventfd, initialises the region.
 * RW_EINVAL (bad slots or room), RW_EIO (memfd, eventfd, mmap), RW_ENOMEM; a
 * failure leaves no descriptor open. */
int link_create(const char *name, const struct link_opts *o, struct link **out, struct rw_err *e);

/* The descriptors a peer needs (inherit them across fork/exec, or send them). */
int link_memfd(const struct link *l);
int link_eventfd(const struct link *l);

/* Peer side: maps a link created elsewhere. RW_EINVAL: memfd is not a rewind
 * link; RW_EIO, RW_ENOMEM. The descriptors stay the caller's. */
int link_attach(int memfd, int eventfd, struct link **out, struct rw_err *e);

/* Bytes of packet data a slot holds (the chain's max_frame). */
uint32_t link_data_room(const struct link *l);
/* How many times the link was reset (a peer's replacement sees it moved). */
uint32_t link_generation(const struct link *l);

/* Producer: a free slot to fill (NULL when the consumer is behind or gone),
 * then link_send to publish it. */
struct link_pkt *link_alloc(struct link *l);
void link_send(struct link *l, struct link_pkt *p);

/* Consumer: the next packet (NULL when empty), then link_release when done. */
struct link_pkt *link_recv(struct link *l);
void link_release(struct link *l, struct link_pkt *p);

/* Consumer: sleeps until a packet may be there, at most timeout_ms (-1: no
 * limit). Returns 1 when woken for data, 0 on timeout, negative on error. */
int link_wait(struct link *l, int timeout_ms);

/* Owner: after a peer died, make the link new again (all slots free, rings
 * empty) and advance the generation. The surviving peer must not be using the
 * link during the reset (the coordinator pauses it first). */
void link_reset(struct link *l);

/* A replacement becomes the link's consumer (or producer) after its peer on
 * that side died, possibly inside a ring operation: that side's ring state is
 * made consistent again. Packets the dead consumer had taken stay lost from the
 * link (the replacement replays them from the log), and so do their slots until
 * link_reset. */
void link_take_consumer(struct link *l);
void link_take_producer(struct link *l);

/* Unmaps; the owner also closes the descriptors. */
void link_close(struct link *l);

/* Packets waiting on the link (queue depth). */
unsigned link_count(const struct link *l);

/* Sleeps until any of the links (every one of the n) may have a packet, at most
 * timeout_ms. 1 when one may have, 0 on timeout, -errno on error (-ENOMEM). */
int link_wait_any(struct link **links, unsigned n, int timeout_ms);

/* A free slot, waiting with short sleeps while the consumer is behind; NULL only
 * when *stop (may be NULL) becomes set. */
struct link_pkt *link_alloc_wait(struct link *l, const volatile int *stop);

/* Sends a progress mark (RW_F_MARK): everything below clock was sent. Waits for a
 * slot like link_alloc_wait; returns -1 only when stopped. */
int link_send_mark(struct link *l, uint64_t clock, const volatile int *stop);

/* ---- duplicate filter (dedup.c) ---- */

struct dedup {
    uint64_t *keys;
    uint64_t mask, n;
    uint64_t floor; /* keys below it count as seen: (G << 16) */
};

/* RW_ENOMEM: d holds nothing to free. */
int dedup_init(struct dedup *d, uint32_t cap_log2);
/* 1 when (clock, sub) was seen (or is below the trim watermark), 0 when it is new
 * (and is now remembered), negative on allocation failure. */
int dedup_seen(struct dedup *d, uint64_t clock, uint16_t sub);
/* Forgets everything below clock g. RW_ENOMEM: d is as it was. */
int dedup_trim(struct dedup *d, uint64_t g);
void dedup_free(struct dedup *d);

/* ---- an edge of the chain, as its sender sees it (link_edge.c) ---- */

/* Where a packet goes next: an optional BPF filter (which packets take the
 * edge), the next NF's flowspace (which instance gets a packet) and the links to
 * its instances. One type for every sender, the root's splitter, a worker's
 * nf_emit, and a recovery's replay (which only needs the instance: links NULL),
 * so all of them route a packet alike. */
struct link_edge {
    struct link **links; /* one per instance of the target, or NULL */
    unsigned n;          /* instances of the target */
    enum rw_flowspace fs;
    struct bpf_program *filter; /* compiled, or NULL: every packet takes the edge */
};

/* Compiles filter (NULL or "" for none). 0, RW_ENOMEM, or RW_EINVAL when the
 * filter does not compile (e says which), leaving nothing to close. */
int link_edge_open(struct link_edge *ed, struct link **links, unsigned n, enum rw_flowspace fs,
                   const char *filter, struct rw_err *e);
/* The instance (0..n-1) that takes the packet, or -1 when the filter refuses it. */
int link_edge_pick(const struct link_edge *ed, const uint8_t *data, uint32_t len,
                   uint32_t wire_len);
void link_edge_close(struct link_edge *ed);

/* ---- packets held in (clock, sub) order (link_heap.c) ---- */

struct link_heap {
    struct link_pkt **a;
    size_t n, cap;
};

/* A copy of a link packet out of its slot (malloc'd), or NULL. */
struct link_pkt *link_pkt_copy(const struct link_pkt *p);
/* 0, or RW_ENOMEM (x is not held: the caller still owns it). */
int link_heap_push(struct link_heap *h, struct link_pkt *x);
/* The lowest (clock, sub), or NULL when empty; the caller frees it. */
struct link_pkt *link_heap_pop(struct link_heap *h);
/* Frees every held packet and the array. */
void link_heap_clear(struct link_heap *h);

#endif
