/*
 * rw_mbuf.h - where rewind keeps a packet's metadata inside a DPDK mbuf: the
 * mbuf's private area (the pool is created with RW_MBUF_PRIV_SIZE). Using the
 * private area rather than a registered dynfield needs no process-wide offset
 * variable, and it travels with the mbuf through rings to the logger thread.
 */
#ifndef RW_MBUF_H
#define RW_MBUF_H

#include <rte_mbuf.h>

#include "rw_common.h"

struct rw_mbuf_priv {
    struct rw_meta meta;
    uint32_t wire_len; /* length on the wire (a trace's orig len), >= pkt_len */
    uint32_t reserved;
};

#define RW_MBUF_PRIV_SIZE RTE_ALIGN(sizeof(struct rw_mbuf_priv), RTE_MBUF_PRIV_ALIGN)

static inline struct rw_mbuf_priv *rw_mbuf_priv(struct rte_mbuf *m)
{
    return (struct rw_mbuf_priv *)rte_mbuf_to_priv(m);
}

#endif
