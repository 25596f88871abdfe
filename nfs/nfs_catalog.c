/*
 * nfs_catalog.c - the NF types a chain file may name: one per nfs/<type>/
 * folder, listed in the generated nf_list.h (see nfs/CMakeLists.txt), so adding
 * an NF is adding its folder.
 */
#include <string.h>

#include "nfs.h"

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
