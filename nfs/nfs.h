/*
 * nfs.h - the NF catalog's API: look an NF type up by the name a chain file
 * gives it. Each NF lives in its own folder, nfs/<type>/: its code
 * (nf_<type>.c, defining `const struct nf_def nf_<type>`), its documentation
 * (README.md) and an example chain (chain.yaml), as a VPP plugin keeps its
 * parts together.
 */
#ifndef RW_NFS_H
#define RW_NFS_H

#include "nf.h"

/* The NF of that type, or NULL when the catalog has none. */
const struct nf_def *nf_find(const char *type);
/* NULL-terminated list of the catalog's types (for the chain parser). */
const char *const *nf_types(void);

#endif
