/*
 * rw_eal.h - starting DPDK the way every rewind command does: the EAL with the
 * container-friendly defaults (no hugepages, no PCI scan, no shared config, a
 * per-process file prefix) unless the operator passes EAL arguments after `--`,
 * a port named by devargs (a vdev such as net_pcap0,rx_pcap=FILE, or a PCI
 * address), and a packet pool with room for rewind's metadata.
 */
#ifndef RW_EAL_H
#define RW_EAL_H

#include <stdbool.h>
#include <stdint.h>

#include "rw_common.h"

struct rte_mempool;

/* Initialises the EAL once per process. user_argv are the arguments after `--`
 * (may be empty: then the defaults apply); devargs names the port to attach.
 * RW_EINVAL: too many arguments; RW_EDPDK: the EAL refused or no such port. */
int rw_eal_init(int user_argc, char **user_argv, const char *devargs, struct rw_err *e);

/* Configures and starts the port attached by rw_eal_init with one rx and one tx
 * queue; pool feeds rx (may be NULL for tx-only use). Registers the rx timestamp
 * dynfield first so PMDs that can stamp packets (net_pcap does) do it.
 * max_frame (0: the port's default): the largest frame rx must take whole; the
 * MTU is raised to it and rx scatters frames over chained mbufs where the PMD
 * can. RW_EDPDK with the port's limit when it cannot take such frames; a failure
 * leaves the port configured but not started. */
int rw_port_start(uint16_t port, struct rte_mempool *pool, uint32_t max_frame, struct rw_err *e);

/* The rx timestamp dynfield (offset, flag) registered by rw_port_start, or -1. */
int rw_rx_timestamp(uint64_t *flag);

/* NULL with RW_EDPDK in e when DPDK has no room for n mbufs. */
struct rte_mempool *rw_pool_create(const char *name, unsigned n, struct rw_err *e);

/* Stops and closes the port, then cleans up the EAL. */
void rw_eal_fini(uint16_t port);

#endif
