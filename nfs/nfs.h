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

/* ---- NAT attribution (nat/nat_who.c) ---- */

/* One mapping of an external port, from a run's nat.map event and the nat.unmap
 * that ended it. Held over [from_ns, until_ns); released false: no unmap in the
 * events (still held when they end; until_ns 0). */
struct nat_hold {
    char proto[8], nf[64], reason[16];
    char internal[64], external[64], remote[64]; /* address:port */
    uint64_t from_ns, until_ns, map_clock;
    bool released;
};

/* Which inside endpoint(s) held external port `port` of protocol `proto` (6, 17,
 * 1; 0: any) at at_ns, one per NAT of the run, from RUN_DIR/alerts.json through the
 * index RUN_DIR/nat-events.mdb (created 0600 or brought up to date first). Fills
 * out[0..*n), at most max. RW_ENOENT: no alerts.json; RW_ECORRUPT: a nat event
 * line that does not parse (byte offset named); RW_EIO, RW_ENOSPC, RW_ENOMEM:
 * the index is left as its last commit had it. */
int nat_who(const char *run_dir, uint16_t port, uint8_t proto, uint64_t at_ns, struct nat_hold *out,
            size_t max, size_t *n, struct rw_err *e);

#endif
