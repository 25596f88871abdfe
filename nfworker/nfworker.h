/*
 * nfworker.h - the NF worker part's public API. Today: the link, the
 * shared-memory channel that carries packets and their metadata between the
 * processes of a chain on one host (DESIGN §5). The worker runtime and the NF
 * catalog build on it (open issues).
 *
 * A link is one memfd that its owner (the coordinator side) creates and maps:
 * a header, two DPDK rte_rings used as single-producer/single-consumer queues of
 * slot numbers (filled: producer -> consumer; free: consumer -> producer), and
 * the packet slots. The rings hold slot numbers, not pointers, so every process
 * may map the region anywhere. One eventfd wakes a consumer that went to sleep
 * after finding the link empty; a producer only writes it when the consumer said
 * it sleeps, so the busy path makes no syscall.
 *
 * When either peer dies, the owner calls link_reset(): both rings are rebuilt, all
 * slots are free again, the generation advances, and the replacement attaches to
 * the same memfd. Nothing in the region belongs to a process's allocator, so a
 * dead peer cannot leave the survivor with dangling memory: at worst a slot it
 * held is lost until the reset.
 */
#ifndef RW_NFWORKER_H
#define RW_NFWORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "rw_common.h"

/* One packet in a slot. */
struct link_pkt {
    struct rw_meta meta;
    uint32_t len;      /* bytes in data */
    uint32_t wire_len; /* length on the wire */
    uint8_t data[];    /* link_data_room() bytes */
};

struct link_opts {
    uint32_t slots;     /* power of two, 2..65536 */
    uint32_t data_room; /* bytes per slot for packet data */
};

struct link;

/* Owner side: creates the memfd and the eventfd, initialises the region. */
int link_create(const char *name, const struct link_opts *o, struct link **out, struct rw_err *e);

/* The descriptors a peer needs (inherit them across fork/exec, or send them). */
int link_memfd(const struct link *l);
int link_eventfd(const struct link *l);

/* Peer side: maps a link created elsewhere. */
int link_attach(int memfd, int eventfd, struct link **out, struct rw_err *e);

uint32_t link_data_room(const struct link *l);
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

/* Unmaps; the owner also closes the descriptors. */
void link_close(struct link *l);

#endif
