/*
 * local_nf.c - an NF run in-process on packets, with local state and no links:
 * the harness the NF fuzz targets and unit tests use (an NF's packet parsing is
 * in its process(), which needs a runtime around it).
 */
#include "nfworker.h"
#include "worker_local.h"

#include <stdlib.h>
#include <string.h>

struct nf_local {
    struct worker_status status;
    struct worker_opts o;
    struct nf_local_run *run;
};

int nf_local_open(const struct nf_def *def, const struct chain_node *config, struct nf_local **out,
                  struct rw_err *e)
{
    struct nf_local *l = calloc(1, sizeof(*l));
    if (!l)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    l->o = (struct worker_opts){
        .def = def, .config = config, .nf_name = def->type, .ft = false, .status = &l->status};
    int rc = worker_local_start(&l->o, &l->run, e);
    if (rc) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int nf_local_process(struct nf_local *l, const struct rw_meta *meta, const uint8_t *data,
                     uint32_t len, unsigned *emitted)
{
    return worker_local_packet(l->run, meta, data, len, emitted);
}

void nf_local_close(struct nf_local *l)
{
    if (!l)
        return;
    worker_local_stop(l->run);
    free(l);
}
