/*
 * nf_flowspace.c - the check an NF's check hook uses to refuse a placement its
 * state cannot work with: several instances fed by a flowspace that splits
 * packets the NF must see together.
 */
#include "nf.h"

#include <stdio.h>
#include <string.h>

#include "chain.h"

int nf_require_flowspace(const struct chain_nf *nf, const int *ok, unsigned n, const char *why,
                         struct rw_err *e)
{
    if (nf->instances <= 1)
        return 0;
    char allowed[128] = "";
    for (unsigned i = 0; i < n; i++) {
        if ((int)nf->flowspace == ok[i])
            return 0;
        size_t l = strlen(allowed);
        snprintf(allowed + l, sizeof(allowed) - l, "%s%s", i ? " or " : "",
                 chain_flowspace_name((enum rw_flowspace)ok[i]));
    }
    return rw_errf(e, RW_EINVAL, "flowspace: %s with %u instances splits %s; use %s",
                   chain_flowspace_name(nf->flowspace), nf->instances, why, allowed);
}
