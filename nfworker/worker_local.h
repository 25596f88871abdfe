/*
 * worker_local.h - the worker side of nf_local (local_nf.c): a worker with no
 * links, driven one packet at a time. Internal to nfworker.
 */
#ifndef RW_WORKER_LOCAL_H
#define RW_WORKER_LOCAL_H

#include "nfworker.h"

struct nf_local_run;
int worker_local_start(const struct worker_opts *o, struct nf_local_run **out, struct rw_err *e);
int worker_local_packet(struct nf_local_run *r, const struct rw_meta *meta, const uint8_t *data,
                        uint32_t len, unsigned *emitted);
void worker_local_stop(struct nf_local_run *r);

#endif
