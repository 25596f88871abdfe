/*
 * chain.h - the chain file: a YAML description of a chain of NFs (input, NFs with
 * type, instances, flowspace and config, edges with optional BPF filters, store
 * URL, log settings), parsed with libyaml and checked before anything starts.
 *
 * The coordinator loads a chain once, validates all of it (so a bad file is
 * refused with FILE:LINE: KEY.PATH: what is wrong and nothing is spawned), and
 * hands each NF its `config` subtree as a generic YAML tree (struct chain_node),
 * which the NF reads with the typed helpers below so its own errors name the
 * line and key too. Parsing starts nothing, creates nothing and prints nothing.
 * The format is described in docs/chain-file.md.
 */
#ifndef RW_CHAIN_H
#define RW_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "rw_common.h"
#include "rw_flow.h"

/* ---- the generic YAML tree ---- */

enum chain_kind { CHAIN_SCALAR, CHAIN_MAP, CHAIN_SEQ };

/* One YAML node with its line (1-based) and its key path from the root, e.g.
 * "nfs[0].config.rules[1]". Owned by the chain (or tree) it came from. */
struct chain_node;

enum chain_kind chain_node_kind(const struct chain_node *n);
int chain_node_line(const struct chain_node *n);
const char *chain_node_path(const struct chain_node *n);
/* The text of a scalar (NULL for maps and sequences). */
const char *chain_node_scalar(const struct chain_node *n);
/* Non-zero for an unquoted empty, `~` or `null` scalar. */
int chain_node_is_null(const struct chain_node *n);
/* Items of a sequence or pairs of a map (0 for scalars). */
size_t chain_node_count(const struct chain_node *n);
/* Item i of a sequence, or the value of pair i of a map (NULL when out of range). */
const struct chain_node *chain_node_item(const struct chain_node *n, size_t i);
/* The key of pair i of a map (NULL when out of range or not a map). */
const char *chain_node_key(const struct chain_node *map, size_t i);
/* The value under key in map; NULL when map is NULL or not a map, the key is
 * absent, or its value is null. */
const struct chain_node *chain_node_get(const struct chain_node *map, const char *key);

/* Records RW_EINVAL and "FILE:LINE: PATH: message" in e. With key, the location is
 * that key's value (or the map itself when the key is absent) and the path ends
 * in key. Returns RW_EINVAL. All helpers take a NULL map as an empty one. */
int chain_node_errf(const struct chain_node *map, const char *key, struct rw_err *e,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Checks that n is of kind k ("expected a mapping, got a sequence"): RW_EINVAL. */
int chain_node_want(const struct chain_node *n, enum chain_kind k, struct rw_err *e);
/* Refuses keys of map not in the NULL-terminated list allowed, naming those allowed
 * (RW_EINVAL). */
int chain_node_keys(const struct chain_node *map, const char *const *allowed, struct rw_err *e);

/* Typed getters. An absent or null key gives the default (or, for a required
 * string, an error); a value of the wrong kind, out of range or not among
 * names is an error naming the line and the key path: RW_EINVAL, with *out the
 * default (NULL for a string). */
int chain_node_string(const struct chain_node *map, const char *key, int required, const char **out,
                      struct rw_err *e);
int chain_node_u64(const struct chain_node *map, const char *key, uint64_t lo, uint64_t hi,
                   uint64_t def, uint64_t *out, struct rw_err *e);
/* *out is the index in the NULL-terminated list names. */
int chain_node_enum(const struct chain_node *map, const char *key, const char *const *names,
                    int def, int *out, struct rw_err *e);

/* Addresses and prefixes, the way every NF's config writes them. accept: the
 * families a key takes, and whether a CIDR prefix ("10.0.0.0/8") is allowed. */
enum { CHAIN_ADDR_V4 = 1, CHAIN_ADDR_V6 = 2, CHAIN_ADDR_PREFIX = 4 };
struct chain_addr {
    uint8_t family; /* 4 or 6; 0 when the key is absent */
    uint8_t bits;   /* prefix length: 32 or 128 for a plain address */
    uint8_t addr[16];
};
/* The address under key ("10.1.2.3", "2001:db8::/32"). Absent and not required:
 * out->family is 0. A value not accepted: "'V' is not an IPv4 address or CIDR
 * prefix" (naming what accept allows), RW_EINVAL. */
int chain_node_addr(const struct chain_node *map, const char *key, int required, unsigned accept,
                    struct chain_addr *out, struct rw_err *e);
/* The same for a scalar node n of map's key (an item of a list under key). */
int chain_node_addr_of(const struct chain_node *map, const char *key, const struct chain_node *n,
                       unsigned accept, struct chain_addr *out, struct rw_err *e);
/* A port "N" or range "N-M" within lo..hi under key. Absent: *from and *to are
 * left as they are (the caller's default). Otherwise RW_EINVAL naming the key. */
int chain_node_ports(const struct chain_node *map, const char *key, uint16_t lo, uint16_t hi,
                     uint16_t *from, uint16_t *to, struct rw_err *e);

/* ---- the chain ---- */

#define CHAIN_INPUT         (-1) /* edge endpoint: the root splitter */
#define CHAIN_OUTPUT        (-2) /* edge endpoint: the sink */
#define CHAIN_MAX_INSTANCES 64

struct chain_nf {
    char name[32]; /* [a-z0-9_-]{1,31}, unique, not "input" or "output" */
    char type[32]; /* one of the caller's known types */
    uint32_t instances;
    enum rw_flowspace flowspace;
    const struct chain_node *config; /* a mapping, or NULL when not given */
    int line;
};

struct chain_edge {
    int from, to; /* NF index, CHAIN_INPUT or CHAIN_OUTPUT */
    char *filter; /* BPF expression accepted by pcap_compile, or NULL */
    int line;
};

#define CHAIN_MAX_FRAME_MIN     1518
#define CHAIN_MAX_FRAME_DEFAULT 9216
#define CHAIN_MAX_FRAME_MAX     65600 /* a 65,535-byte datagram behind QinQ tags */

/* What the coordinator does about a straggler: a worker that keeps running but
 * gets a fraction of the CPU its peers get (docs/chain-file.md, stragglers). */
enum chain_straggler_action {
    CHAIN_STRAGGLER_CLONE = 0, /* a spare replays beside it; the faster copy stays */
    CHAIN_STRAGGLER_RESTART,   /* it is killed and its slot failed over to a spare */
    CHAIN_STRAGGLER_OFF,       /* nothing: it is only replaced once it stops answering */
};

struct chain_stragglers {
    uint32_t factor; /* slow: its share of CPU this many times below the reference */
    uint32_t for_ms; /* ... for this long, while it has input waiting */
    enum chain_straggler_action action;
};

struct chain {
    char name[64];
    char *origin;    /* the file name used in messages */
    char *trace;     /* input trace (a relative one joined to the file's directory), or NULL */
    char *port;      /* input DPDK devargs, or NULL; at most one of trace and port is set */
    char *store_url; /* as written (default "lmdb:store"); the scheme is checked */
    enum rw_durability durability;
    uint32_t segment_mb;
    uint32_t max_frame; /* bytes: the largest frame a link carries (default 9,216) */
    struct chain_stragglers stragglers;
    uint32_t nnfs, nedges;
    struct chain_nf *nfs;
    struct chain_edge *edges;
    uint32_t *order; /* the nnfs NF indexes in topological order: senders first */
    struct chain_node *root;
};

/* Reads and parses the chain file at path. known_types is a NULL-terminated list of
 * NF types (NULL: accept any type). Returns 0 with *out set, or RW_EINVAL (bad
 * file), RW_ENOENT/RW_EIO (cannot read), RW_ENOMEM, with the reason in e. */
int chain_load(const char *path, const char *const *known_types, struct chain **out,
               struct rw_err *e);
/* The same over text; origin names the file in messages and gives the directory
 * relative trace paths are resolved against. RW_EINVAL (bad text, with
 * FILE:LINE), RW_ENOMEM; on failure *out is NULL and nothing is left to free. */
int chain_parse(const char *yaml_text, size_t len, const char *origin,
                const char *const *known_types, struct chain **out, struct rw_err *e);
void chain_free(struct chain *c);

/* The chain's links, one layout for the coordinator that creates them and every
 * worker that attaches to them: edge k joins each of its chain_edge_from_n
 * senders (the root counts as one) to each of its chain_edge_to_n receivers (the
 * sink counts as one); link (i, j) of edge k is number i * to_n + j of the edge,
 * and packets on it are routed by the receiving NF's flowspace. */
static inline unsigned chain_edge_from_n(const struct chain *c, const struct chain_edge *ed)
{
    return ed->from == CHAIN_INPUT ? 1 : c->nfs[ed->from].instances;
}
static inline unsigned chain_edge_to_n(const struct chain *c, const struct chain_edge *ed)
{
    return ed->to == CHAIN_OUTPUT ? 1 : c->nfs[ed->to].instances;
}
static inline enum rw_flowspace chain_edge_flowspace(const struct chain *c,
                                                     const struct chain_edge *ed)
{
    return ed->to < 0 ? RW_FS_5TUPLE : c->nfs[ed->to].flowspace;
}

/* The links of edge ed. */
static inline unsigned chain_edge_links(const struct chain *c, const struct chain_edge *ed)
{
    return chain_edge_from_n(c, ed) * chain_edge_to_n(c, ed);
}
/* Link (i, j) of edge ed: its index among the edge's from_n * to_n links. */
static inline unsigned chain_link_index(const struct chain *c, const struct chain_edge *ed,
                                        unsigned i, unsigned j)
{
    return i * chain_edge_to_n(c, ed) + j;
}
/* Calls fn (if not NULL) for each run of links [k][i, i+n) that a worker of NF nf
 * uses: instance inst's (its inputs from every sender, its outputs to every
 * receiver), or (inst < 0) a hot spare's, every instance's, as it may be given
 * any slot of its NF. Returns how many links in all. The coordinator hands a
 * worker exactly these; the plan counts their descriptors. */
unsigned chain_slot_links(const struct chain *c, uint32_t nf, int inst,
                          void (*fn)(void *ctx, uint32_t k, unsigned i, unsigned n), void *ctx);

/* Index of the NF called name, or -1. */
int chain_nf_index(const struct chain *c, const char *name);
const char *chain_flowspace_name(enum rw_flowspace fs);
const char *chain_durability_name(enum rw_durability d);
const char *chain_straggler_action_name(enum chain_straggler_action a);

#endif
