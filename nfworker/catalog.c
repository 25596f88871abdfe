/*
 * catalog.c - the NF types a chain file may name.
 */
#include <string.h>

#include "nfworker.h"

extern const struct nf_def nf_firewall;

static const struct nf_def *const catalog[] = {&nf_firewall};
static const char *const names[] = {"firewall", NULL};

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
