/*
 * catalog.c - the NF types a chain file may name: one per nfworker/nf_<type>.c,
 * listed in the generated nf_list.h (see nfworker/CMakeLists.txt).
 */
#include <stdio.h>
#include <string.h>

#include "chain.h"
#include "nfworker.h"

#define NF(t) extern const struct nf_def nf_##t;
#include "nf_list.h"
#undef NF

static const struct nf_def *const catalog[] = {
#define NF(t) &nf_##t,
#include "nf_list.h"
#undef NF
};

static const char *const names[] = {
#define NF(t) #t,
#include "nf_list.h"
#undef NF
    NULL};

const struct nf_def *nf_find(const char *type)
{
    for (size_t i = 0; i < sizeof(catalog) / sizeof(catalog[0]); i++)
        if (!strcmp(catalog[i]->type, type))
            return catalog[i];
    return NULL;
}

const char *const *nf_types(void)
{
    return names;
}

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
                 chain_flowspace_name((enum chain_flowspace)ok[i]));
    }
    return rw_errf(e, RW_EINVAL, "flowspace: %s with %u instances splits %s; use %s",
                   chain_flowspace_name(nf->flowspace), nf->instances, why, allowed);
}
