/*
 * nf_local.c - an NF run in-process on packets, with local state and no links:
 * the harness the NF fuzz targets and unit tests use (an NF's packet parsing is
 * in its process(), which needs a runtime around it). A thin wrapper over
 * nf_inst, so tests run the NF exactly as the worker does.
 */
#include "nf.h"

#include <stdlib.h>

struct nf_local {
    struct nf_inst *n;
};

int nf_local_open(const struct nf_def *def, const struct chain_node *config, struct nf_local **out,
                  struct rw_err *e)
{
    struct nf_local *l = calloc(1, sizeof(*l));
    if (!l)
        return rw_errf(e, RW_ENOMEM, "out of memory");
    struct nf_inst_opts o = {.def = def, .config = config, .name = def->type};
    int rc = nf_inst_open(&o, &l->n, e);
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
    return nf_inst_process(l->n, meta, data, len, len, emitted, NULL);
}

void nf_local_close(struct nf_local *l)
{
    if (!l)
        return;
    nf_inst_close(l->n);
    free(l);
}
