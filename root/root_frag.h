/*
 * root_frag.h - the root's IP reassembly (private to root/): fragments go in,
 * whole datagrams come out, before the clock stamp (see root_frag.c for why).
 */
#ifndef RW_ROOT_FRAG_H
#define RW_ROOT_FRAG_H

#include <stdint.h>

#include <rte_ip_frag.h>

#include "root.h"

struct root_frag {
    struct rte_ip_frag_tbl *tbl;
    struct rte_ip_frag_death_row dr;
    uint64_t tms; /* the table's clock: the highest arrival time seen (ns) */
    struct root_frag_stats *st;
};

/* A datagram whose first fragment arrived more than timeout_ns (arrival time)
 * before its last is dropped. Fails with RW_ENOMEM when DPDK has no memory for
 * the table; f then holds nothing. */
int root_frag_init(struct root_frag *f, uint64_t timeout_ns, struct root_frag_stats *st,
                   struct rw_err *e);

/* Takes one packet that arrived at ts_ns. Returns m itself when it is not a
 * fragment, the whole datagram (a chained mbuf, with the first fragment's
 * mbuf as its head) when m completed one, NULL when m is held or was dropped
 * (freed, and counted in st). Never fails. */
struct rte_mbuf *root_frag_take(struct root_frag *f, struct rte_mbuf *m, uint64_t ts_ns);

/* End of input: what is still incomplete is dropped as timed out, the table is
 * freed. Safe on a failed or finished init. */
void root_frag_fini(struct root_frag *f);

#endif
