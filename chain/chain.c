/*
 * chain.c - parses and validates a chain file (docs/chain-file.md).
 *
 * libyaml's event parser builds a small tree of our own (struct chain_node) that
 * keeps every node's line and key path, refuses duplicate keys and aliases, and
 * outlives parsing so NFs can read their `config` with messages that point at the
 * file. The chain sections are then read from the tree with the typed helpers and
 * the edges are checked as a graph (every NF fed, no cycle, a way out). Nothing
 * here starts, creates or prints anything.
 */
#include "chain.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_DEPTH     64
#define MAX_FILE      (16u << 20)
#define DEFAULT_STORE "lmdb:store"

struct chain_node {
    enum chain_kind kind;
    int line;
    int plain;          /* scalar written without quotes */
    char *str;          /* scalar text */
    char *path;         /* key path from the root */
    const char *origin; /* file name, owned by the chain */
    size_t n, cap;
    char **keys; /* map keys */
    int *klines; /* map key lines */
    struct chain_node **vals;
};

/* ---- messages ---- */

static int verrat(struct rw_err *e, const char *origin, int line, const char *path, const char *key,
                  const char *fmt, va_list ap)
{
    if (!e)
        return RW_EINVAL;
    const char *sep = (path && *path && key) ? "." : "";
    const char *p = path ? path : "", *k = key ? key : "";
    const char *colon = (*p || *k) ? ": " : "";
    int n = snprintf(e->msg, sizeof(e->msg), "%s:%d: %s%s%s%s", origin, line, p, sep, k, colon);
    if (n >= 0 && (size_t)n < sizeof(e->msg))
        vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, ap);
    e->code = RW_EINVAL;
    return RW_EINVAL;
}

static int errat(struct rw_err *e, const char *origin, int line, const char *path, const char *key,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int errat(struct rw_err *e, const char *origin, int line, const char *path, const char *key,
                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verrat(e, origin, line, path, key, fmt, ap);
    va_end(ap);
    return RW_EINVAL;
}

static int nomem(struct rw_err *e)
{
    return rw_errf(e, RW_ENOMEM, "chain: out of memory");
}

/* "a, b, c" from a NULL-terminated list. */
static void join(const char *const *names, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; names && names[i] && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
}

static char *str_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ---- the tree ---- */

static void node_free(struct chain_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->vals[i]);
    }
    free(n->keys);
    free(n->klines);
    free(n->vals);
    free(n->str);
    free(n->path);
    free(n);
}

static struct chain_node *node_new(enum chain_kind kind, int line, char *path, const char *origin)
{
    struct chain_node *n = calloc(1, sizeof(*n));
    if (!n || !path) {
        free(n);
        free(path);
        return NULL;
    }
    n->kind = kind;
    n->line = line;
    n->path = path;
    n->origin = origin;
    return n;
}

/* Appends (key, val) to a map or val to a sequence; takes both on success. */
static int node_push(struct chain_node *n, char *key, int kline, struct chain_node *val)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 4;
        struct chain_node **v = realloc(n->vals, cap * sizeof(*v));
        if (!v)
            return RW_ENOMEM;
        n->vals = v;
        if (n->kind == CHAIN_MAP) {
            char **k = realloc(n->keys, cap * sizeof(*k));
            if (!k)
                return RW_ENOMEM;
            n->keys = k;
            int *l = realloc(n->klines, cap * sizeof(*l));
            if (!l)
                return RW_ENOMEM;
            n->klines = l;
        }
        n->cap = cap;
    }
    if (n->kind == CHAIN_MAP) {
        n->keys[n->n] = key;
        n->klines[n->n] = kline;
    }
    n->vals[n->n++] = val;
    return RW_OK;
}

static long member_index(const struct chain_node *map, const char *key)
{
    if (!map || map->kind != CHAIN_MAP)
        return -1;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return (long)i;
    return -1;
}

static const struct chain_node *member(const struct chain_node *map, const char *key)
{
    long i = member_index(map, key);
    return i < 0 ? NULL : map->vals[i];
}

/* ---- building the tree from libyaml events ---- */

struct builder {
    yaml_parser_t p;
    const unsigned char *text; /* the whole file, to place reader errors on a line */
    size_t len;
    const char *origin;
    struct rw_err *e;
};

static int line_of(const yaml_event_t *ev)
{
    return (int)ev->start_mark.line + 1;
}

static int next_event(struct builder *b, yaml_event_t *ev)
{
    if (yaml_parser_parse(&b->p, ev))
        return RW_OK;
    if (b->p.error == YAML_MEMORY_ERROR)
        return nomem(b->e);
    if (b->p.error == YAML_READER_ERROR) {
        /* libyaml's reader gives only a byte offset: an operator wants FILE:LINE:COL
         * (binary or mis-encoded text is found before any token has a mark). */
        size_t off = b->p.problem_offset < b->len ? b->p.problem_offset : b->len, col = 1;
        int line = 1;
        for (size_t i = 0; i < off; i++, col++)
            if (b->text[i] == '\n')
                line++, col = 0;
        char what[64] = "";
        if (off < b->len)
            snprintf(what, sizeof(what), " (byte 0x%02x)", b->text[off]);
        return errat(b->e, b->origin, line, NULL, NULL, "column %zu%s: %s; not a text chain file",
                     col, what, b->p.problem ? b->p.problem : "unreadable input");
    }
    int line = (int)b->p.problem_mark.line + 1;
    if (b->p.context)
        return errat(b->e, b->origin, line, NULL, NULL,
                     "YAML syntax error: %s %s started on line %d", b->p.problem, b->p.context,
                     (int)b->p.context_mark.line + 1);
    const char *problem = b->p.problem ? b->p.problem : "unknown problem";
    const char *hint = strstr(problem, "mapping values are not allowed")
                           ? " (quote values that contain ': ' or end in ':', e.g. \"mem:\")"
                           : "";
    return errat(b->e, b->origin, line, NULL, NULL, "YAML syntax error: %s%s", problem, hint);
}

static int parse_node(struct builder *b, yaml_event_t *ev, char *path, int depth,
                      struct chain_node **out);

static char *child_path(const char *parent, const char *key)
{
    return *parent ? str_fmt("%s.%s", parent, key) : str_fmt("%s", key);
}

static int parse_scalar(struct builder *b, yaml_event_t *ev, char *path, struct chain_node **out)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(v, '\0', len)) {
        errat(b->e, b->origin, line_of(ev), path, NULL, "text must not contain a NUL character");
        free(path);
        return RW_EINVAL;
    }
    struct chain_node *n = node_new(CHAIN_SCALAR, line_of(ev), path, b->origin);
    if (!n || !(n->str = strndup(v, len)))
        return node_free(n), nomem(b->e);
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    *out = n;
    return RW_OK;
}

/* Reads one key event of a mapping into *key; refuses non-scalar and repeated keys. */
static int map_key(struct builder *b, struct chain_node *map, yaml_event_t *ev, char **key)
{
    int line = line_of(ev);
    if (ev->type != YAML_SCALAR_EVENT)
        return errat(b->e, b->origin, line, map->path, NULL, "keys must be plain strings");
    *key = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
    if (!*key)
        return nomem(b->e);
    long dup = member_index(map, *key);
    if (dup >= 0) {
        errat(b->e, b->origin, line, map->path, *key, "duplicate key (first on line %d)",
              map->klines[dup]);
        free(*key);
        return RW_EINVAL;
    }
    return RW_OK;
}

static int parse_pair(struct builder *b, struct chain_node *map, yaml_event_t *kev, int depth)
{
    char *key = NULL;
    int kline = line_of(kev);
    int rc = map_key(b, map, kev, &key);
    yaml_event_delete(kev);
    if (rc)
        return rc;
    yaml_event_t vev;
    struct chain_node *val = NULL;
    if ((rc = next_event(b, &vev)) ||
        (rc = parse_node(b, &vev, child_path(map->path, key), depth + 1, &val))) {
        free(key);
        return rc;
    }
    if (node_push(map, key, kline, val)) {
        free(key);
        node_free(val);
        return nomem(b->e);
    }
    return RW_OK;
}

static int parse_item(struct builder *b, struct chain_node *seq, yaml_event_t *ev, int depth)
{
    struct chain_node *val = NULL;
    char *path = str_fmt("%s[%zu]", seq->path, seq->n);
    int rc = parse_node(b, ev, path, depth + 1, &val);
    if (rc)
        return rc;
    if (node_push(seq, NULL, 0, val)) {
        node_free(val);
        return nomem(b->e);
    }
    return RW_OK;
}

/* A mapping or sequence: children until the matching end event. */
static int parse_collection(struct builder *b, yaml_event_t *ev, char *path, int depth,
                            struct chain_node **out)
{
    int is_map = ev->type == YAML_MAPPING_START_EVENT;
    yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    struct chain_node *n = node_new(is_map ? CHAIN_MAP : CHAIN_SEQ, line_of(ev), path, b->origin);
    if (!n)
        return nomem(b->e);
    int rc = RW_OK;
    for (;;) {
        yaml_event_t cev;
        if ((rc = next_event(b, &cev)))
            break;
        if (cev.type == end) {
            yaml_event_delete(&cev);
            break;
        }
        rc = is_map ? parse_pair(b, n, &cev, depth) : parse_item(b, n, &cev, depth);
        if (rc)
            break;
    }
    if (rc)
        node_free(n);
    else
        *out = n;
    return rc;
}

/* Turns the event ev (consumed) and what follows it into a node at path (taken). */
static int parse_node(struct builder *b, yaml_event_t *ev, char *path, int depth,
                      struct chain_node **out)
{
    int rc;
    if (!path)
        rc = nomem(b->e);
    else if (depth > MAX_DEPTH)
        rc = errat(b->e, b->origin, line_of(ev), path, NULL, "nested more than %d levels deep",
                   MAX_DEPTH);
    else if (ev->type == YAML_SCALAR_EVENT)
        rc = parse_scalar(b, ev, path, out), path = NULL;
    else if (ev->type == YAML_MAPPING_START_EVENT || ev->type == YAML_SEQUENCE_START_EVENT)
        rc = parse_collection(b, ev, path, depth, out), path = NULL;
    else if (ev->type == YAML_ALIAS_EVENT)
        rc = errat(b->e, b->origin, line_of(ev), path, NULL, "YAML aliases (*%s) are not supported",
                   (const char *)ev->data.alias.anchor);
    else
        rc = errat(b->e, b->origin, line_of(ev), path, NULL, "unexpected YAML event");
    free(path);
    yaml_event_delete(ev);
    return rc;
}

/* Expects the event of type t next (stream and document framing). */
static int expect(struct builder *b, yaml_event_type_t t, yaml_event_t *ev)
{
    int rc = next_event(b, ev);
    if (rc)
        return rc;
    if (ev->type == t)
        return RW_OK;
    int line = line_of(ev);
    yaml_event_type_t got = ev->type;
    yaml_event_delete(ev);
    if (got == YAML_STREAM_END_EVENT)
        return errat(b->e, b->origin, line, NULL, NULL,
                     "the file is empty; expected a mapping with at least 'nfs'");
    if (got == YAML_DOCUMENT_START_EVENT)
        return errat(b->e, b->origin, line, NULL, NULL, "only one YAML document is allowed");
    return errat(b->e, b->origin, line, NULL, NULL, "unexpected YAML structure");
}

static int build_doc(struct builder *b, struct chain_node **root)
{
    yaml_event_t ev;
    int rc = expect(b, YAML_STREAM_START_EVENT, &ev);
    if (rc)
        return rc;
    yaml_event_delete(&ev);
    if ((rc = expect(b, YAML_DOCUMENT_START_EVENT, &ev)))
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next_event(b, &ev)) || (rc = parse_node(b, &ev, str_fmt("%s", ""), 0, root)))
        return rc;
    if (!(rc = expect(b, YAML_DOCUMENT_END_EVENT, &ev))) {
        yaml_event_delete(&ev);
        if (!(rc = expect(b, YAML_STREAM_END_EVENT, &ev)))
            yaml_event_delete(&ev);
    }
    if (rc) {
        node_free(*root);
        *root = NULL;
    }
    return rc;
}

static int build_tree(const char *text, size_t len, const char *origin, struct chain_node **root,
                      struct rw_err *e)
{
    struct builder b = {.text = (const unsigned char *)text, .len = len, .origin = origin, .e = e};
    if (!yaml_parser_initialize(&b.p))
        return nomem(e);
    yaml_parser_set_input_string(&b.p, (const unsigned char *)text, len);
    int rc = build_doc(&b, root);
    yaml_parser_delete(&b.p);
    return rc;
}

/* ---- node accessors ---- */

enum chain_kind chain_node_kind(const struct chain_node *n)
{
    return n->kind;
}

int chain_node_line(const struct chain_node *n)
{
    return n->line;
}

const char *chain_node_path(const struct chain_node *n)
{
    return n->path;
}

const char *chain_node_scalar(const struct chain_node *n)
{
    return n && n->kind == CHAIN_SCALAR ? n->str : NULL;
}

int chain_node_is_null(const struct chain_node *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (!n || n->kind != CHAIN_SCALAR || !n->plain)
        return 0;
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(n->str, nulls[i]) == 0)
            return 1;
    return 0;
}

size_t chain_node_count(const struct chain_node *n)
{
    return n && n->kind != CHAIN_SCALAR ? n->n : 0;
}

const struct chain_node *chain_node_item(const struct chain_node *n, size_t i)
{
    return i < chain_node_count(n) ? n->vals[i] : NULL;
}

const char *chain_node_key(const struct chain_node *map, size_t i)
{
    return map && map->kind == CHAIN_MAP && i < map->n ? map->keys[i] : NULL;
}

const struct chain_node *chain_node_get(const struct chain_node *map, const char *key)
{
    const struct chain_node *v = member(map, key);
    return chain_node_is_null(v) ? NULL : v;
}

/* ---- typed helpers ---- */

int chain_node_errf(const struct chain_node *map, const char *key, struct rw_err *e,
                    const char *fmt, ...)
{
    const struct chain_node *v = key ? member(map, key) : NULL;
    va_list ap;
    va_start(ap, fmt);
    if (v)
        verrat(e, v->origin, v->line, v->path, NULL, fmt, ap);
    else if (!map)
        verrat(e, "chain", 0, NULL, key, fmt, ap);
    else
        verrat(e, map->origin, map->line, map->path, key, fmt, ap);
    va_end(ap);
    return RW_EINVAL;
}

static const char *kind_name(enum chain_kind k)
{
    return k == CHAIN_MAP ? "a mapping" : k == CHAIN_SEQ ? "a sequence" : "a scalar";
}

int chain_node_want(const struct chain_node *n, enum chain_kind k, struct rw_err *e)
{
    if (!n)
        return rw_errf(e, RW_EINVAL, "chain: expected %s, got nothing", kind_name(k));
    if (n->kind == k)
        return RW_OK;
    if (n->kind == CHAIN_SCALAR)
        return chain_node_errf(n, NULL, e, "expected %s, got '%s'", kind_name(k), n->str);
    return chain_node_errf(n, NULL, e, "expected %s, got %s", kind_name(k), kind_name(n->kind));
}

int chain_node_keys(const struct chain_node *map, const char *const *allowed, struct rw_err *e)
{
    for (size_t i = 0; map && map->kind == CHAIN_MAP && i < map->n; i++) {
        size_t j = 0;
        while (allowed[j] && strcmp(allowed[j], map->keys[i]) != 0)
            j++;
        if (allowed[j])
            continue;
        char list[256];
        join(allowed, list, sizeof(list));
        return errat(e, map->origin, map->klines[i], map->path, map->keys[i],
                     "unknown key (allowed: %s)", list);
    }
    return RW_OK;
}

int chain_node_string(const struct chain_node *map, const char *key, int required, const char **out,
                      struct rw_err *e)
{
    const struct chain_node *v = chain_node_get(map, key);
    *out = NULL;
    if (!v)
        return required ? chain_node_errf(map, key, e, "missing required key") : RW_OK;
    if (v->kind != CHAIN_SCALAR)
        return chain_node_errf(map, key, e, "expected a string, got %s", kind_name(v->kind));
    *out = v->str;
    return RW_OK;
}

static int parse_u64(const char *s, uint64_t *v)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno == ERANGE)
        return -1;
    *v = x;
    return 0;
}

int chain_node_u64(const struct chain_node *map, const char *key, uint64_t lo, uint64_t hi,
                   uint64_t def, uint64_t *out, struct rw_err *e)
{
    const struct chain_node *v = chain_node_get(map, key);
    *out = def;
    if (!v)
        return RW_OK;
    uint64_t x;
    if (v->kind != CHAIN_SCALAR)
        return chain_node_errf(map, key, e, "expected an integer, got %s", kind_name(v->kind));
    if (parse_u64(v->str, &x) || x < lo || x > hi)
        return chain_node_errf(map, key, e, "expected an integer in %llu..%llu, got '%s'",
                               (unsigned long long)lo, (unsigned long long)hi, v->str);
    *out = x;
    return RW_OK;
}

int chain_node_addr_of(const struct chain_node *map, const char *key, const struct chain_node *n,
                       unsigned accept, struct chain_addr *out, struct rw_err *e)
{
    const char *s = n && n->kind == CHAIN_SCALAR ? n->str : NULL;
    const char *what = (accept & (CHAIN_ADDR_V4 | CHAIN_ADDR_V6)) == CHAIN_ADDR_V4   ? "IPv4 "
                       : (accept & (CHAIN_ADDR_V4 | CHAIN_ADDR_V6)) == CHAIN_ADDR_V6 ? "IPv6 "
                                                                                     : "";
    const char *form = accept & CHAIN_ADDR_PREFIX ? "address or CIDR prefix" : "address";
    *out = (struct chain_addr){0};
    char buf[64];
    if (!s || strlen(s) >= sizeof(buf))
        return chain_node_errf(map, key, e, "'%.64s' is not an %s%s", s ? s : "?", what, form);
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/'), *end = NULL;
    if (slash)
        *slash = '\0';
    uint8_t fam = (accept & CHAIN_ADDR_V4) && inet_pton(AF_INET, buf, out->addr) == 1    ? 4
                  : (accept & CHAIN_ADDR_V6) && inet_pton(AF_INET6, buf, out->addr) == 1 ? 6
                                                                                         : 0;
    long max = fam == 4 ? 32 : 128, bits = max;
    if (slash && (accept & CHAIN_ADDR_PREFIX)) {
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
    }
    if (!fam || (slash && !(accept & CHAIN_ADDR_PREFIX)) || (end && (*end || end == slash + 1)) ||
        bits < 0 || bits > max)
        return chain_node_errf(map, key, e, "'%s' is not an %s%s", s, what, form);
    out->family = fam;
    out->bits = (uint8_t)bits;
    return RW_OK;
}

int chain_node_addr(const struct chain_node *map, const char *key, int required, unsigned accept,
                    struct chain_addr *out, struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(map, key, required, &s, e);
    *out = (struct chain_addr){0};
    if (rc || !s)
        return rc;
    return chain_node_addr_of(map, key, chain_node_get(map, key), accept, out, e);
}

int chain_node_ports(const struct chain_node *map, const char *key, uint16_t lo, uint16_t hi,
                     uint16_t *from, uint16_t *to, struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(map, key, 0, &s, e);
    if (rc || !s)
        return rc;
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = a;
    if (*end == '-')
        b = strtol(end + 1, &end, 10);
    if (*end || end == s || errno || a < lo || b > hi || a > b)
        return chain_node_errf(map, key, e, "'%s' is not a port or range N-M within %u-%u", s, lo,
                               hi);
    *from = (uint16_t)a;
    *to = (uint16_t)b;
    return RW_OK;
}

int chain_node_enum(const struct chain_node *map, const char *key, const char *const *names,
                    int def, int *out, struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(map, key, 0, &s, e);
    *out = def;
    if (rc || !s)
        return rc;
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return *out = i, RW_OK;
    char list[256];
    join(names, list, sizeof(list));
    return chain_node_errf(map, key, e, "bad value '%s' (expected one of: %s)", s, list);
}

/* ---- chain sections ---- */

static const char *const top_keys[] = {"name", "input", "store",      "log", "max_frame",
                                       "nfs",  "edges", "stragglers", NULL};
static const char *const input_keys[] = {"trace", "port", NULL};
static const char *const log_keys[] = {"durability", "segment_mb", NULL};
static const char *const nf_keys[] = {"name", "type", "instances", "flowspace", "config", NULL};
static const char *const edge_keys[] = {"from", "to", "filter", NULL};
static const char *const fs_names[] = {"5tuple", "src", "dst", "host-pair", NULL};
static const char *const dur_names[] = {"none", "process", "power", NULL};
static const char *const straggler_keys[] = {"factor", "for_ms", "action", NULL};
static const char *const straggler_actions[] = {"clone", "restart", "off", NULL};

const char *chain_straggler_action_name(enum chain_straggler_action a)
{
    return (unsigned)a < 3 ? straggler_actions[a] : "?";
}

const char *chain_flowspace_name(enum rw_flowspace fs)
{
    return (unsigned)fs < 4 ? fs_names[fs] : "?";
}

const char *chain_durability_name(enum rw_durability d)
{
    return (unsigned)d < 3 ? dur_names[d] : "?";
}

static int name_ok(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr(extra, s[i])))
            return 0;
    return 1;
}

/* The chain's name: given, or the file name without directory and .yaml/.yml. */
static int sec_name(struct chain *c, struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(c->root, "name", 0, &s, e);
    if (rc)
        return rc;
    if (s) {
        if (!name_ok(s, sizeof(c->name) - 1, "_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
            return chain_node_errf(c->root, "name", e,
                                   "'%s' is not a name ([A-Za-z0-9_.-], 1 to %zu characters)", s,
                                   sizeof(c->name) - 1);
        snprintf(c->name, sizeof(c->name), "%s", s);
        return RW_OK;
    }
    const char *base = strrchr(c->origin, '/');
    base = base ? base + 1 : c->origin;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".yaml") == 0)
        n -= 5;
    else if (n > 4 && strcmp(base + n - 4, ".yml") == 0)
        n -= 4;
    snprintf(c->name, sizeof(c->name), "%.*s", (int)n, base);
    return RW_OK;
}

/* A relative trace is relative to the chain file's directory. */
static char *resolve(const char *origin, const char *file)
{
    const char *slash = strrchr(origin, '/');
    if (file[0] == '/' || !slash)
        return strdup(file);
    return str_fmt("%.*s/%s", (int)(slash - origin), origin, file);
}

static int sec_input(struct chain *c, struct rw_err *e)
{
    const struct chain_node *in = chain_node_get(c->root, "input");
    const char *trace, *port;
    int rc;
    if (!in)
        return RW_OK;
    if ((rc = chain_node_want(in, CHAIN_MAP, e)) || (rc = chain_node_keys(in, input_keys, e)) ||
        (rc = chain_node_string(in, "trace", 0, &trace, e)) ||
        (rc = chain_node_string(in, "port", 0, &port, e)))
        return rc;
    if (!trace == !port)
        return chain_node_errf(in, NULL, e, "give exactly one of 'trace' and 'port'");
    if (trace && !*trace)
        return chain_node_errf(in, "trace", e, "must not be empty");
    if (port && !*port)
        return chain_node_errf(in, "port", e, "must not be empty");
    if (trace && !(c->trace = resolve(c->origin, trace)))
        return nomem(e);
    if (port && !(c->port = strdup(port)))
        return nomem(e);
    return RW_OK;
}

/* Checks the scheme and that there is something after it; store_open checks the rest. */
static const char *store_problem(const char *url)
{
    if (strncmp(url, "lmdb:", 5) == 0)
        return url[5] ? NULL : "lmdb: needs a path (lmdb:PATH)";
    if (strncmp(url, "redis://", 8) == 0)
        return url[8] && url[8] != '/' ? NULL : "redis:// needs a host (redis://HOST:PORT[/DB])";
    if (strncmp(url, "mem:", 4) == 0)
        return url[4] ? "mem: takes nothing after the colon" : NULL;
    return "unknown scheme (expected lmdb:PATH, redis://HOST:PORT[/DB] or mem:)";
}

static int sec_store(struct chain *c, struct rw_err *e)
{
    const char *url;
    int rc = chain_node_string(c->root, "store", 0, &url, e);
    if (rc)
        return rc;
    if (!url)
        url = DEFAULT_STORE;
    const char *why = store_problem(url);
    if (why)
        return chain_node_errf(c->root, "store", e, "bad store URL '%s': %s", url, why);
    return (c->store_url = strdup(url)) ? RW_OK : nomem(e);
}

/* The largest frame the links carry: jumbo by default (racks run 9,000-byte
 * MTUs; 9,216 is the common switch maximum), up to a whole IP datagram. */
static int sec_max_frame(struct chain *c, struct rw_err *e)
{
    uint64_t v;
    int rc = chain_node_u64(c->root, "max_frame", CHAIN_MAX_FRAME_MIN, CHAIN_MAX_FRAME_MAX,
                            CHAIN_MAX_FRAME_DEFAULT, &v, e);
    c->max_frame = (uint32_t)v;
    return rc;
}

/* Defaults: a worker given a quarter of the CPU its peers get, for 200 ms while
 * it has work, is cloned. 200 ms is two heartbeat checks' worth of samples
 * more than a scheduler's hiccup; a factor of 4 leaves room for a loaded host
 * where every worker gets less than a core. */
static int sec_stragglers(struct chain *c, struct rw_err *e)
{
    const struct chain_node *m = chain_node_get(c->root, "stragglers");
    uint64_t factor = 4, for_ms = 200;
    int act = CHAIN_STRAGGLER_CLONE, rc;
    if (m &&
        ((rc = chain_node_want(m, CHAIN_MAP, e)) || (rc = chain_node_keys(m, straggler_keys, e)) ||
         (rc = chain_node_u64(m, "factor", 2, 1000, factor, &factor, e)) ||
         (rc = chain_node_u64(m, "for_ms", 10, 3600000, for_ms, &for_ms, e)) ||
         (rc = chain_node_enum(m, "action", straggler_actions, act, &act, e))))
        return rc;
    c->stragglers = (struct chain_stragglers){.factor = (uint32_t)factor,
                                              .for_ms = (uint32_t)for_ms,
                                              .action = (enum chain_straggler_action)act};
    return RW_OK;
}

static int sec_log(struct chain *c, struct rw_err *e)
{
    const struct chain_node *log = chain_node_get(c->root, "log");
    int dur = RW_DUR_PROCESS, rc;
    uint64_t mb = 256;
    if (log &&
        ((rc = chain_node_want(log, CHAIN_MAP, e)) || (rc = chain_node_keys(log, log_keys, e)) ||
         (rc = chain_node_enum(log, "durability", dur_names, dur, &dur, e)) ||
         (rc = chain_node_u64(log, "segment_mb", 1, 1u << 20, mb, &mb, e))))
        return rc;
    c->durability = (enum rw_durability)dur;
    c->segment_mb = (uint32_t)mb;
    return RW_OK;
}

static int nf_name(struct chain *c, uint32_t i, const struct chain_node *m, struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(m, "name", 1, &s, e);
    if (rc)
        return rc;
    if (!name_ok(s, sizeof(c->nfs[i].name) - 1, "_-"))
        return chain_node_errf(m, "name", e, "'%s' is not an NF name ([a-z0-9_-], 1 to 31)", s);
    if (strcmp(s, "input") == 0 || strcmp(s, "output") == 0)
        return chain_node_errf(m, "name", e, "'%s' is reserved for the chain's ends", s);
    for (uint32_t j = 0; j < i; j++)
        if (strcmp(c->nfs[j].name, s) == 0)
            return chain_node_errf(m, "name", e, "duplicate NF name '%s' (also nfs[%u], line %d)",
                                   s, j, c->nfs[j].line);
    snprintf(c->nfs[i].name, sizeof(c->nfs[i].name), "%s", s);
    return RW_OK;
}

static int nf_type(struct chain_nf *nf, const struct chain_node *m, const char *const *known,
                   struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(m, "type", 1, &s, e);
    if (rc)
        return rc;
    size_t i = 0;
    while (known && known[i] && strcmp(known[i], s) != 0)
        i++;
    if (known && !known[i]) {
        char list[256];
        join(known, list, sizeof(list));
        return chain_node_errf(m, "type", e, "unknown NF type '%s' (known: %s)", s, list);
    }
    if (!*s || strlen(s) >= sizeof(nf->type))
        return chain_node_errf(m, "type", e, "'%s' is not an NF type (1 to 31 characters)", s);
    snprintf(nf->type, sizeof(nf->type), "%s", s);
    return RW_OK;
}

static int nf_one(struct chain *c, uint32_t i, const struct chain_node *m, const char *const *known,
                  struct rw_err *e)
{
    struct chain_nf *nf = &c->nfs[i];
    uint64_t inst;
    int fs, rc;
    nf->line = m->line;
    if ((rc = chain_node_want(m, CHAIN_MAP, e)) || (rc = chain_node_keys(m, nf_keys, e)) ||
        (rc = nf_name(c, i, m, e)) || (rc = nf_type(nf, m, known, e)) ||
        (rc = chain_node_u64(m, "instances", 1, CHAIN_MAX_INSTANCES, 1, &inst, e)) ||
        (rc = chain_node_enum(m, "flowspace", fs_names, RW_FS_5TUPLE, &fs, e)))
        return rc;
    nf->instances = (uint32_t)inst;
    nf->flowspace = (enum rw_flowspace)fs;
    nf->config = chain_node_get(m, "config");
    return nf->config ? chain_node_want(nf->config, CHAIN_MAP, e) : RW_OK;
}

static int sec_nfs(struct chain *c, const char *const *known, struct rw_err *e)
{
    const struct chain_node *nfs = chain_node_get(c->root, "nfs");
    int rc;
    if (!nfs)
        return chain_node_errf(c->root, "nfs", e, "missing required key (the list of NFs)");
    if ((rc = chain_node_want(nfs, CHAIN_SEQ, e)))
        return rc;
    if (nfs->n == 0 || nfs->n > UINT16_MAX)
        return chain_node_errf(nfs, NULL, e, "must list 1 to %u NFs", UINT16_MAX);
    if (!(c->nfs = calloc(nfs->n, sizeof(*c->nfs))))
        return nomem(e);
    for (c->nnfs = 0; c->nnfs < nfs->n; c->nnfs++)
        if ((rc = nf_one(c, c->nnfs, nfs->vals[c->nnfs], known, e)))
            return rc;
    return RW_OK;
}

/* ---- edges ---- */

static int edge_end(const struct chain *c, const struct chain_node *m, const char *key, int *out,
                    struct rw_err *e)
{
    const char *s;
    int rc = chain_node_string(m, key, 1, &s, e);
    int is_from = key[0] == 'f';
    if (rc)
        return rc;
    if (strcmp(s, "input") == 0 || strcmp(s, "output") == 0) {
        *out = s[0] == 'i' ? CHAIN_INPUT : CHAIN_OUTPUT;
        if (is_from && *out == CHAIN_OUTPUT)
            return chain_node_errf(m, key, e, "no edge can leave 'output' (the chain's exit)");
        if (!is_from && *out == CHAIN_INPUT)
            return chain_node_errf(m, key, e, "no edge can enter 'input' (the chain's entry)");
        return RW_OK;
    }
    if ((*out = chain_nf_index(c, s)) >= 0)
        return RW_OK;
    return chain_node_errf(m, key, e, "unknown NF '%s' (not in nfs, nor input/output)", s);
}

static int filter_check(const struct chain_node *m, const char *f, struct rw_err *e)
{
    pcap_t *p = pcap_open_dead(DLT_EN10MB, 65535);
    struct bpf_program prog;
    if (!p)
        return nomem(e);
    int rc = RW_OK;
    if (!*f)
        rc = chain_node_errf(m, "filter", e, "must not be empty (leave it out to pass all)");
    else if (pcap_compile(p, &prog, f, 1, PCAP_NETMASK_UNKNOWN) != 0)
        rc = chain_node_errf(m, "filter", e, "bad BPF filter '%s': %s", f, pcap_geterr(p));
    else
        pcap_freecode(&prog);
    pcap_close(p);
    return rc;
}

static int edge_one(struct chain *c, struct chain_edge *ed, const struct chain_node *m,
                    struct rw_err *e)
{
    const char *f;
    int rc;
    ed->line = m->line;
    if ((rc = chain_node_want(m, CHAIN_MAP, e)) || (rc = chain_node_keys(m, edge_keys, e)) ||
        (rc = edge_end(c, m, "from", &ed->from, e)) || (rc = edge_end(c, m, "to", &ed->to, e)) ||
        (rc = chain_node_string(m, "filter", 0, &f, e)))
        return rc;
    for (struct chain_edge *o = c->edges; o < ed; o++)
        if (o->from == ed->from && o->to == ed->to)
            return chain_node_errf(m, NULL, e, "the same edge as on line %d", o->line);
    if (f && (rc = filter_check(m, f, e)))
        return rc;
    if (f && !(ed->filter = strdup(f)))
        return nomem(e);
    return RW_OK;
}

/* No `edges`: input -> nfs[0] -> ... -> nfs[n-1] -> output. */
static int edges_default(struct chain *c, struct rw_err *e)
{
    if (!(c->edges = calloc(c->nnfs + 1, sizeof(*c->edges))))
        return nomem(e);
    for (uint32_t i = 0; i <= c->nnfs; i++) {
        c->edges[i].from = i == 0 ? CHAIN_INPUT : (int)i - 1;
        c->edges[i].to = i == c->nnfs ? CHAIN_OUTPUT : (int)i;
        c->edges[i].line = c->nfs[i == c->nnfs ? i - 1 : i].line;
    }
    c->nedges = c->nnfs + 1;
    return RW_OK;
}

static int sec_edges(struct chain *c, struct rw_err *e)
{
    const struct chain_node *es = chain_node_get(c->root, "edges");
    int rc;
    if (!es)
        return edges_default(c, e);
    if ((rc = chain_node_want(es, CHAIN_SEQ, e)))
        return rc;
    if (es->n == 0)
        return chain_node_errf(es, NULL, e, "empty (leave 'edges' out for a straight line)");
    if (!(c->edges = calloc(es->n, sizeof(*c->edges))))
        return nomem(e);
    for (c->nedges = 0; c->nedges < es->n; c->nedges++)
        if ((rc = edge_one(c, &c->edges[c->nedges], es->vals[c->nedges], e)))
            return rc;
    return RW_OK;
}

/* ---- the graph ---- */

static const struct chain_node *nf_node(const struct chain *c, uint32_t i)
{
    return chain_node_item(chain_node_get(c->root, "nfs"), i);
}

static int check_fed(const struct chain *c, struct rw_err *e)
{
    for (uint32_t i = 0; i < c->nnfs; i++) {
        uint32_t k = 0;
        while (k < c->nedges && c->edges[k].to != (int)i)
            k++;
        if (k == c->nedges)
            return chain_node_errf(nf_node(c, i), NULL, e,
                                   "NF '%s' has no input edge (no edge has to: %s)", c->nfs[i].name,
                                   c->nfs[i].name);
    }
    return RW_OK;
}

/* Index of an edge from a still-unordered NF into v, or -1. */
static long pred_edge(const struct chain *c, const uint32_t *indeg, uint32_t v)
{
    for (uint32_t k = 0; k < c->nedges; k++)
        if (c->edges[k].to == (int)v && c->edges[k].from >= 0 && indeg[c->edges[k].from])
            return k;
    return -1;
}

/* Every NF left over by the topological sort has a leftover predecessor: walking
 * back from one of them must come round to a node seen before, which closes a
 * cycle. Fills cyc with it forwards, from its first NF in the file; returns its
 * length. walk and seen have room for nnfs entries. */
static uint32_t find_cycle(const struct chain *c, const uint32_t *indeg, uint32_t *walk, long *seen,
                           uint32_t *cyc)
{
    uint32_t v = 0, n = 0;
    for (uint32_t i = 0; i < c->nnfs; i++)
        seen[i] = -1;
    while (!indeg[v])
        v++;
    while (seen[v] < 0) {
        seen[v] = n;
        walk[n++] = v;
        v = (uint32_t)c->edges[pred_edge(c, indeg, v)].from;
    }
    /* walk[i+1] -> walk[i] are edges, and walk[j] -> walk[n-1] closes the cycle. */
    uint32_t j = (uint32_t)seen[v], len = n - j, start = n - 1;
    for (uint32_t i = j; i < n; i++)
        if (walk[i] < walk[start])
            start = i;
    for (uint32_t s = 0; s < len; s++)
        cyc[s] = walk[j + ((start - j) + len - s) % len];
    return len;
}

static int report_cycle(const struct chain *c, const uint32_t *indeg, struct rw_err *e)
{
    uint32_t *buf = malloc(2 * c->nnfs * sizeof(*buf));
    long *seen = malloc(c->nnfs * sizeof(*seen));
    if (!buf || !seen)
        return free(buf), free(seen), nomem(e);
    uint32_t *cyc = buf + c->nnfs, len = find_cycle(c, indeg, buf, seen, cyc);
    char names[RW_ERR_MSG_MAX] = "";
    size_t used = 0;
    for (uint32_t s = 0; s <= len && used < sizeof(names); s++)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", s ? " -> " : "",
                                 c->nfs[cyc[s % len]].name);
    /* Point at the closing edge: from the last NF listed into the first. */
    uint32_t k = 0;
    while (!(c->edges[k].from == (int)cyc[len - 1] && c->edges[k].to == (int)cyc[0]))
        k++;
    free(buf);
    free(seen);
    const struct chain_node *edge = chain_node_item(chain_node_get(c->root, "edges"), k);
    return errat(e, c->origin, c->edges[k].line, edge ? edge->path : "edges", NULL, "cycle: %s",
                 names);
}

/* Kahn's algorithm in file order; leaves NFs on a cycle with in-degree > 0. */
static int toposort(struct chain *c, struct rw_err *e)
{
    uint32_t *indeg = calloc(c->nnfs, sizeof(*indeg));
    if (!indeg || !(c->order = malloc(c->nnfs * sizeof(*c->order))))
        return free(indeg), nomem(e);
    for (uint32_t k = 0; k < c->nedges; k++)
        if (c->edges[k].from >= 0 && c->edges[k].to >= 0)
            indeg[c->edges[k].to]++;
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->nnfs; i++)
        if (!indeg[i])
            c->order[n++] = i;
    for (uint32_t h = 0; h < n; h++)
        for (uint32_t k = 0; k < c->nedges; k++)
            if (c->edges[k].from == (int)c->order[h] && c->edges[k].to >= 0 &&
                --indeg[c->edges[k].to] == 0)
                c->order[n++] = (uint32_t)c->edges[k].to;
    int rc = n == c->nnfs ? RW_OK : report_cycle(c, indeg, e);
    free(indeg);
    return rc;
}

/* Walks the order backwards: an NF reaches output directly or through a later NF. */
static int check_exits(const struct chain *c, struct rw_err *e)
{
    char *out = calloc(c->nnfs, 1);
    if (!out)
        return nomem(e);
    for (uint32_t h = c->nnfs; h-- > 0;) {
        uint32_t v = c->order[h];
        for (uint32_t k = 0; k < c->nedges && !out[v]; k++)
            if (c->edges[k].from == (int)v)
                out[v] =
                    c->edges[k].to == CHAIN_OUTPUT || (c->edges[k].to >= 0 && out[c->edges[k].to]);
    }
    int rc = RW_OK;
    for (uint32_t i = 0; i < c->nnfs && !rc; i++)
        if (!out[i])
            rc = chain_node_errf(nf_node(c, i), NULL, e,
                                 "NF '%s' has no path to output (its packets would never leave)",
                                 c->nfs[i].name);
    free(out);
    return rc;
}

/* ---- chain ---- */

int chain_nf_index(const struct chain *c, const char *name)
{
    for (uint32_t i = 0; i < c->nnfs; i++)
        if (strcmp(c->nfs[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int chain_read(struct chain *c, const char *const *known, struct rw_err *e)
{
    int rc;
    if (c->root->kind != CHAIN_MAP)
        return errat(e, c->origin, c->root->line, NULL, NULL,
                     "the top level must be a mapping with the keys nfs (required), name, "
                     "input, store, log, edges; got %s",
                     kind_name(c->root->kind));
    if ((rc = chain_node_keys(c->root, top_keys, e)) || (rc = sec_name(c, e)) ||
        (rc = sec_input(c, e)) || (rc = sec_store(c, e)) || (rc = sec_log(c, e)) ||
        (rc = sec_max_frame(c, e)) || (rc = sec_stragglers(c, e)) || (rc = sec_nfs(c, known, e)) ||
        (rc = sec_edges(c, e)) || (rc = check_fed(c, e)) || (rc = toposort(c, e)) ||
        (rc = check_exits(c, e)))
        return rc;
    return RW_OK;
}

int chain_parse(const char *yaml_text, size_t len, const char *origin,
                const char *const *known_types, struct chain **out, struct rw_err *e)
{
    struct chain *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (!c || !(c->origin = strdup(origin ? origin : "chain")))
        return free(c), nomem(e);
    int rc = build_tree(yaml_text, len, c->origin, &c->root, e);
    if (!rc)
        rc = chain_read(c, known_types, e);
    if (rc)
        chain_free(c);
    else
        *out = c;
    return rc;
}

int chain_load(const char *path, const char *const *known_types, struct chain **out,
               struct rw_err *e)
{
    *out = NULL;
    /* Non-blocking, then refused unless regular: a FIFO or a device given as the
     * chain file would block open() or read() for ever, deaf to signals. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return rw_errf(e, errno == ENOENT ? RW_ENOENT : RW_EIO, "%s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        const char *what = S_ISDIR(sb.st_mode)    ? "a directory"
                           : S_ISFIFO(sb.st_mode) ? "a FIFO"
                           : S_ISSOCK(sb.st_mode) ? "a socket"
                                                  : "a device";
        close(fd);
        return rw_errf(e, RW_EINVAL, "%s: not a regular file (%s)", path, what);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return nomem(e);
    }
    char *buf = malloc(MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    int rc;
    if (!buf)
        rc = nomem(e);
    else if (bad)
        rc = rw_errf(e, RW_EIO, "%s: cannot read", path);
    else if (n > MAX_FILE)
        rc =
            rw_errf(e, RW_EINVAL, "%s: larger than %u MiB; not a chain file", path, MAX_FILE >> 20);
    else
        rc = chain_parse(buf, n, path, known_types, out, e);
    free(buf);
    return rc;
}

void chain_free(struct chain *c)
{
    if (!c)
        return;
    for (uint32_t k = 0; k < c->nedges; k++)
        free(c->edges[k].filter);
    free(c->edges);
    free(c->nfs);
    free(c->order);
    free(c->trace);
    free(c->port);
    free(c->store_url);
    node_free(c->root);
    free(c->origin);
    free(c);
}

/* ---- the link layout ---- */

unsigned chain_slot_links(const struct chain *c, uint32_t nf, int inst,
                          void (*fn)(void *ctx, uint32_t k, unsigned i, unsigned n), void *ctx)
{
    unsigned total = 0;
    for (uint32_t k = 0; k < c->nedges; k++) {
        const struct chain_edge *ed = &c->edges[k];
        unsigned nfrom = chain_edge_from_n(c, ed), nto = chain_edge_to_n(c, ed);
        if (ed->to == (int)nf && inst < 0) {
            total += nfrom * nto;
            if (fn)
                fn(ctx, k, 0, nfrom * nto);
        } else if (ed->to == (int)nf) {
            for (unsigned s = 0; s < nfrom; s++, total++)
                if (fn)
                    fn(ctx, k, chain_link_index(c, ed, s, (unsigned)inst), 1);
        }
        if (ed->from == (int)nf) {
            unsigned first = inst < 0 ? 0 : (unsigned)inst * nto, n = inst < 0 ? nfrom * nto : nto;
            total += n;
            if (fn)
                fn(ctx, k, first, n);
        }
    }
    return total;
}
