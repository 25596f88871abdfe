/*
 * verify.h - comparing two runs of the same chain on the same input (design.md: The guarantee).
 *
 * Chain output equivalence is what rewind promises: under failures, clones and
 * re-runs, each input clock has the same fate, the same output bytes and the same
 * alerts as in a fault-free run. This part checks it after the fact, from what
 * `rewind run` wrote (DIR/output, a log in (clock, sub) order, and DIR/alerts.json),
 * so users can run it after their own chaos tests.
 *
 * Values that the interleaving of NF instances legitimately picks (a NAT's
 * external ports, a load balancer's backends) are renamed by order of first
 * appearance, separately in each run, before comparing; checksums, which change
 * with those values, are then masked. Nothing here prints: differences go to a
 * callback and the counts to struct verify_result.
 */
#ifndef RW_VERIFY_H
#define RW_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rw_common.h"

#define VERIFY_MAX_CANON 32

/* What to canonicalise. */
enum verify_canon_kind {
    VERIFY_CANON_PORTS, /* TCP/UDP ports (and ICMP echo ids) at one IPv4 address */
    VERIFY_CANON_ADDRS, /* IPv4 addresses inside a prefix */
    VERIFY_CANON_CONNS, /* per-connection picks (lb backends): one name for all, and
                           affinity checked instead (a connection keeps its pick) */
};

struct verify_canon {
    enum verify_canon_kind kind;
    uint32_t addr; /* host order */
    uint8_t plen;  /* prefix length (32 for ports) */
    uint8_t group; /* rules of one group share one renaming (one spec, one lb's backends) */
};

enum verify_diff_kind {
    VERIFY_DIFF_LOST,       /* a (clock, sub) of REF is not in RUN */
    VERIFY_DIFF_DUPLICATED, /* a (clock, sub) of RUN is not in REF (extra or duplicate) */
    VERIFY_DIFF_CHANGED,    /* both have it, with different bytes */
    VERIFY_DIFF_ALERT_MISSING,
    VERIFY_DIFF_ALERT_EXTRA,
    VERIFY_DIFF_ALERT_CHANGED,
    VERIFY_DIFF_DAMAGE,    /* a damaged log block or alert line (clock may be 0) */
    VERIFY_DIFF_INVARIANT, /* a run breaks an invariant (a connection changed backend, or
                              DIR/state.json lists one its NFs' state breaks) */
    VERIFY_DIFF_STATE,     /* a line of the NFs' final state summary (DIR/state.json) is in
                              one run only: state applied twice, or lost */
};

struct verify_diff {
    enum verify_diff_kind kind;
    uint64_t clock;
    uint16_t sub;
    bool has_sub;
    char what[400]; /* human-readable, e.g. "bytes differ at offset 26 (0x1f vs 0x20)" */
};

struct verify_opts {
    const char *ref_dir, *run_dir; /* directories written by `rewind run` */
    struct verify_canon canon[VERIFY_MAX_CANON];
    size_t ncanon;
    unsigned ngroups;
    unsigned max_diffs; /* report at most this many differences (counts go on) */
    void (*diff)(void *ctx, const struct verify_diff *d);
    void (*progress)(void *ctx, uint64_t clock, uint64_t last_clock); /* optional */
    void *ctx;
};

struct verify_result {
    uint64_t ref_packets, run_packets;
    uint64_t lost, duplicated, changed;
    uint64_t ref_alerts, run_alerts;
    uint64_t alerts_missing, alerts_extra;     /* a changed alert counts once in each */
    uint64_t damaged;                          /* damaged blocks and unreadable alert lines */
    uint64_t broken;                           /* invariants broken, in either run */
    uint64_t ref_quarantined, run_quarantined; /* packets of death each run skipped: their
                                                  events are not compared (a REF filters
                                                  them out at its input edge instead) */
    bool state_compared;                       /* both runs wrote DIR/state.json */
    uint64_t ref_state, run_state;             /* its summary lines */
    uint64_t state_diffs;                      /* lines in one run only (each counts once) */
    bool equivalent; /* nothing lost, extra, changed, damaged, broken or in one state only */
};

/* Fills o with defaults: no canonicalisation, 10 differences. */
void verify_opts_default(struct verify_opts *o);

/* Adds the rules of spec to o: "none" (clears them), "ports:ADDR",
 * "addrs:PREFIX[,PREFIX...]" or "conns:PREFIX[,PREFIX...]" (an address alone is a
 * /32); the prefixes of one spec share one renaming. RW_EINVAL for a spec it
 * does not understand, naming it; o may then hold the spec's rules before the bad
 * one (the command line gives up). */
int verify_canon_parse(struct verify_opts *o, const char *spec, struct rw_err *e);

/* Adds the defaults for the chain file at path: ports at each nat NF's `external`
 * address, conns for each lb NF's `backends` (with several instances an lb's picks
 * depend on interleaving beyond a renaming, so only affinity can be checked).
 * The errors of chain_load (RW_EINVAL for a bad chain file, RW_ENOENT, RW_EIO). */
int verify_canon_from_chain(struct verify_opts *o, const char *path, struct rw_err *e);

/* Compares RUN against REF: outputs, alerts and, when both runs wrote one (a
 * fault-tolerant `rewind run` does), the NFs' final state summaries in
 * DIR/state.json, whose lines must be the same set. Returns 0 with r filled (r->equivalent says the
 * verdict), or an error when a run cannot be read at all (RW_ENOENT, RW_ECORRUPT,
 * RW_EIO, RW_ENOMEM). */
int verify_runs(const struct verify_opts *o, struct verify_result *r, struct rw_err *e);

const char *verify_diff_kind_name(enum verify_diff_kind k);

#endif
