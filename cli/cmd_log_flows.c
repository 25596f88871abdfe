/*
 * cmd_log_flows.c - `rewind log flows` and `rewind log hosts`: the conversations
 * and the hosts of a selection of the log, as `tshark -z conv` and Arkime's
 * session list give them, with the log's indexes narrowing what is read.
 *
 * A conversation is a protocol and two endpoints (addresses and ports), both
 * directions together; its source is the sender of its first packet in the
 * selection. A host's packets and bytes are counted as sent and received. Bytes
 * are wire bytes (a packet's original length). Packets that are not IP belong to
 * no conversation and no host; they are counted on stderr.
 *
 * The tables are open-addressed by hand: DPDK's rte_hash needs the EAL's memory,
 * and this is one insert-or-find per packet in a single thread.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "replay.h"
#include "rw_pkt.h"

struct conv_key {
    uint8_t family, proto;
    uint16_t port[2]; /* the endpoints in order (lower address, then port, first) */
    uint8_t addr[2][16];
    uint8_t pad[2]; /* 40 bytes, hashed 8 at a time; always 0 */
};

struct entry {
    struct conv_key k; /* hosts: addr[0] and family only */
    uint32_t hash;
    uint8_t src; /* conversations: which endpoint sent the first packet */
    uint64_t first, last;
    uint64_t pkts[2], bytes[2]; /* sent by endpoint src / by the other (hosts: sent, received) */
};

struct flows {
    bool hosts, json;
    enum { BY_FIRST, BY_PACKETS, BY_BYTES } by;
    uint64_t top;
    struct cli_select sel;
    const char *dir;
    struct entry *e;
    uint32_t *slot; /* index + 1; 0 empty */
    size_t n, cap, scap;
    uint64_t not_ip, damaged;
    int oom;
};

static uint32_t key_hash(const struct conv_key *k)
{
    uint64_t h = 0x72657764u;
    const uint8_t *p = (const uint8_t *)k;
    for (size_t i = 0; i < sizeof(*k); i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h ^= w;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static int grow(struct flows *f)
{
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 1024;
        struct entry *ne = realloc(f->e, nc * sizeof(*ne));
        if (!ne)
            return -1;
        f->e = ne;
        f->cap = nc;
    }
    if (2 * (f->n + 1) > f->scap) {
        size_t nc = f->scap ? f->scap * 2 : 2048;
        uint32_t *ns = calloc(nc, sizeof(*ns));
        if (!ns)
            return -1;
        for (size_t i = 0; i < f->n; i++) {
            size_t j = f->e[i].hash & (nc - 1);
            while (ns[j])
                j = (j + 1) & (nc - 1);
            ns[j] = (uint32_t)i + 1;
        }
        free(f->slot);
        f->slot = ns;
        f->scap = nc;
    }
    return 0;
}

static struct entry *find(struct flows *f, const struct conv_key *k, uint64_t ts, bool *fresh)
{
    if (grow(f))
        return NULL;
    uint32_t h = key_hash(k);
    size_t j = h & (f->scap - 1);
    for (; f->slot[j]; j = (j + 1) & (f->scap - 1)) {
        struct entry *e = &f->e[f->slot[j] - 1];
        if (e->hash == h && !memcmp(&e->k, k, sizeof(*k))) {
            *fresh = false;
            return e;
        }
    }
    struct entry *e = &f->e[f->n];
    memset(e, 0, sizeof(*e));
    e->k = *k;
    e->hash = h;
    e->first = e->last = ts;
    f->slot[j] = (uint32_t)++f->n;
    *fresh = true;
    return e;
}

static void note(struct entry *e, uint64_t ts, int dir, uint32_t len)
{
    if (ts < e->first)
        e->first = ts;
    if (ts > e->last)
        e->last = ts;
    e->pkts[dir]++;
    e->bytes[dir] += len;
}

static int host_visit(struct flows *f, const struct rw_pkt *p, const struct log_rec *r)
{
    size_t alen = p->family == 4 ? 4 : 16;
    for (int d = 0; d < 2; d++) {
        struct conv_key k;
        memset(&k, 0, sizeof(k));
        k.family = p->family;
        memcpy(k.addr[0], d ? p->dst : p->src, alen);
        bool fresh;
        struct entry *e = find(f, &k, r->meta.ts_ns, &fresh);
        if (!e)
            return f->oom = 1, RW_ENOMEM;
        note(e, r->meta.ts_ns, d, r->orig_len);
    }
    return 0;
}

static int visit(void *ctx, const struct log_rec *r)
{
    struct flows *f = ctx;
    struct rw_pkt p;
    if (!rw_pkt_decode(r->data, r->cap_len, &p)) {
        f->not_ip++;
        return 0;
    }
    if (f->hosts)
        return host_visit(f, &p, r);
    size_t alen = p.family == 4 ? 4 : 16;
    struct conv_key k;
    memset(&k, 0, sizeof(k));
    k.family = p.family;
    k.proto = p.proto;
    int c = memcmp(p.src, p.dst, alen);
    int s = c < 0 || (c == 0 && p.sport <= p.dport) ? 0 : 1; /* the sender's place */
    memcpy(k.addr[s], p.src, alen);
    memcpy(k.addr[1 - s], p.dst, alen);
    k.port[s] = p.sport;
    k.port[1 - s] = p.dport;
    bool fresh;
    struct entry *e = find(f, &k, r->meta.ts_ns, &fresh);
    if (!e)
        return f->oom = 1, RW_ENOMEM;
    if (fresh)
        e->src = (uint8_t)s;
    note(e, r->meta.ts_ns, s == e->src ? 0 : 1, r->orig_len);
    return 0;
}

static int cmp_entries(const void *a, const void *b, void *arg)
{
    const struct entry *x = a, *y = b;
    const struct flows *f = arg;
    if (f->by != BY_FIRST) {
        uint64_t vx = f->by == BY_BYTES ? x->bytes[0] + x->bytes[1] : x->pkts[0] + x->pkts[1];
        uint64_t vy = f->by == BY_BYTES ? y->bytes[0] + y->bytes[1] : y->pkts[0] + y->pkts[1];
        if (vx != vy)
            return vx > vy ? -1 : 1;
    }
    if (x->first != y->first)
        return x->first < y->first ? -1 : 1;
    return memcmp(&x->k, &y->k, sizeof(x->k));
}

static const char *proto_name(uint8_t p, char *buf, size_t n)
{
    switch (p) {
    case 1:
        return "icmp";
    case 6:
        return "tcp";
    case 17:
        return "udp";
    case 58:
        return "icmp6";
    case 132:
        return "sctp";
    default:
        snprintf(buf, n, "%u", p);
        return buf;
    }
}

static const char *addr_str(const struct conv_key *k, int i, char *buf, size_t n)
{
    if (!inet_ntop(k->family == 4 ? AF_INET : AF_INET6, k->addr[i], buf, (socklen_t)n))
        snprintf(buf, n, "?");
    return buf;
}

/* "10.0.0.1:80", "[2001:db8::1]:80", or the address alone without ports. */
static const char *endpoint_str(const struct conv_key *k, int i, char *buf, size_t n)
{
    char a[INET6_ADDRSTRLEN];
    addr_str(k, i, a, sizeof(a));
    bool ports = k->port[0] || k->port[1];
    if (!ports)
        snprintf(buf, n, "%s", a);
    else
        snprintf(buf, n, k->family == 6 ? "[%s]:%u" : "%s:%u", a, k->port[i]);
    return buf;
}

static void print_flow(const struct flows *f, const struct entry *e, bool first_row)
{
    char t1[48], t2[48], pn[8], a[64], b[64];
    int s = e->src, d = 1 - e->src;
    const char *proto = proto_name(e->k.proto, pn, sizeof(pn));
    cli_fmt_time(e->first, t1, sizeof(t1));
    cli_fmt_time(e->last, t2, sizeof(t2));
    if (f->json) {
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        printf("%s\n  {\"proto\": \"%s\", \"src\": \"%s\", \"sport\": %u, \"dst\": \"%s\", "
               "\"dport\": %u, \"first\": \"%s\", \"last\": \"%s\", \"packets\": %" PRIu64
               ", \"bytes\": %" PRIu64 ", \"src_packets\": %" PRIu64 ", \"src_bytes\": %" PRIu64
               ", \"dst_packets\": %" PRIu64 ", \"dst_bytes\": %" PRIu64 "}",
               first_row ? "" : ",", proto, addr_str(&e->k, s, sa, sizeof(sa)), e->k.port[s],
               addr_str(&e->k, d, da, sizeof(da)), e->k.port[d], t1, t2, e->pkts[0] + e->pkts[1],
               e->bytes[0] + e->bytes[1], e->pkts[0], e->bytes[0], e->pkts[1], e->bytes[1]);
        return;
    }
    printf("%-6s %-46s %-46s %s %s %9" PRIu64 " %12" PRIu64 " %9" PRIu64 " %12" PRIu64 " %9" PRIu64
           " %12" PRIu64 "\n",
           proto, endpoint_str(&e->k, s, a, sizeof(a)), endpoint_str(&e->k, d, b, sizeof(b)), t1,
           t2, e->pkts[0] + e->pkts[1], e->bytes[0] + e->bytes[1], e->pkts[0], e->bytes[0],
           e->pkts[1], e->bytes[1]);
}

static void print_host(const struct flows *f, const struct entry *e, bool first_row)
{
    char t1[48], t2[48], a[INET6_ADDRSTRLEN];
    cli_fmt_time(e->first, t1, sizeof(t1));
    cli_fmt_time(e->last, t2, sizeof(t2));
    addr_str(&e->k, 0, a, sizeof(a));
    if (f->json)
        printf("%s\n  {\"host\": \"%s\", \"first\": \"%s\", \"last\": \"%s\", \"packets\": %" PRIu64
               ", \"bytes\": %" PRIu64 ", \"sent_packets\": %" PRIu64 ", \"sent_bytes\": %" PRIu64
               ", \"received_packets\": %" PRIu64 ", \"received_bytes\": %" PRIu64 "}",
               first_row ? "" : ",", a, t1, t2, e->pkts[0] + e->pkts[1], e->bytes[0] + e->bytes[1],
               e->pkts[0], e->bytes[0], e->pkts[1], e->bytes[1]);
    else
        printf("%-40s %s %s %9" PRIu64 " %12" PRIu64 " %9" PRIu64 " %12" PRIu64 " %9" PRIu64
               " %12" PRIu64 "\n",
               a, t1, t2, e->pkts[0] + e->pkts[1], e->bytes[0] + e->bytes[1], e->pkts[0],
               e->bytes[0], e->pkts[1], e->bytes[1]);
}

static void on_damage(void *ctx, uint32_t seg, uint64_t clock, const char *why)
{
    struct flows *f = ctx;
    f->damaged++;
    cli_error("log %s: skipped damaged block (segment %u, clock %" PRIu64 "): %s",
              f->hosts ? "hosts" : "flows", seg, clock, why);
}

static int run_flows(void *arg)
{
    struct flows *f = arg;
    const char *cmd = f->hosts ? "log hosts" : "log flows";
    struct rw_err e = {0};
    int rc = cli_select_resolve(&f->sel, f->dir, &e);
    struct replay_opts o;
    replay_opts_default(&o);
    o.q = f->sel.q;
    o.bpf = f->sel.bpf;
    o.damage = on_damage;
    o.ctx = f;
    struct replay_stats st;
    if (!rc)
        rc = replay_each(f->dir, &o, visit, f, &st, &e);
    if (rc) {
        if (f->oom)
            cli_error("%s: out of memory after %zu entries", cmd, f->n);
        else
            cli_error("%s: %s", cmd, e.msg);
        return cli_exit_code(f->oom ? RW_ENOMEM : rc);
    }
    if (f->n)
        qsort_r(f->e, f->n, sizeof(*f->e), cmp_entries, f);
    size_t shown = f->top && f->top < f->n ? (size_t)f->top : f->n;
    if (f->json)
        printf("[");
    else if (f->hosts)
        printf("%-40s %-30s %-30s %9s %12s %9s %12s %9s %12s\n", "HOST", "FIRST", "LAST", "PACKETS",
               "BYTES", "SENT", "SENT_BYTES", "RECEIVED", "RECV_BYTES");
    else
        printf("%-6s %-46s %-46s %-30s %-30s %9s %12s %9s %12s %9s %12s\n", "PROTO", "SRC", "DST",
               "FIRST", "LAST", "PACKETS", "BYTES", "SRC>DST", "BYTES", "DST>SRC", "BYTES");
    for (size_t i = 0; i < shown; i++)
        (f->hosts ? print_host : print_flow)(f, &f->e[i], i == 0);
    if (f->json)
        printf("%s]\n", shown ? "\n" : "");
    fprintf(stderr,
            "%s: %zu %s (%zu shown) in %" PRIu64 " packets, %" PRIu64 " not IP; %s index, %" PRIu64
            " of %" PRIu64 " blocks read\n",
            cmd, f->n, f->hosts ? "hosts" : "conversations", shown, st.packets, f->not_ip,
            st.scan.index, st.scan.blocks_read, st.scan.blocks_total);
    if (fflush(stdout))
        return cli_error("%s: cannot write the output", cmd), EXIT_FAIL;
    return f->damaged ? EXIT_DAMAGE : EXIT_OK;
}

static void usage(FILE *out, bool hosts)
{
    if (hosts)
        fprintf(out, "usage: rewind log hosts DIR [selection] [--top N] [--by packets|bytes] "
                     "[--json]\n\n"
                     "One line per host of the selection: first and last time, packets and bytes\n"
                     "sent and received (wire bytes). --by packets|bytes lists the top talkers\n"
                     "first; else hosts are in the order they were first seen.\n\n");
    else
        fprintf(out, "usage: rewind log flows DIR [selection] [--top N] [--by packets|bytes] "
                     "[--json]\n\n"
                     "One line per conversation of the selection (protocol and both endpoints,\n"
                     "both directions together; SRC sent its first packet): first and last\n"
                     "time, packets and bytes each way (wire bytes), as `tshark -z conv`.\n"
                     "--by packets|bytes lists the largest first; else they are in the order\n"
                     "they began.\n\n");
    fprintf(out,
            "  --top N      only the first N lines\n"
            "  --by KEY     packets or bytes (both directions together)\n"
            "  --json       an array of objects: %s\n\n" CLI_SELECT_USAGE
            "\nExit: 0 ok; 1 failed; 2 usage; 3 damaged blocks skipped (the rest counted).\n",
            hosts ? "host, first, last, packets, bytes, sent_packets,\n"
                    "               sent_bytes, received_packets, received_bytes"
                  : "proto, src, sport, dst, dport, first,\n"
                    "               last, packets, bytes, src_packets, src_bytes, dst_packets,\n"
                    "               dst_bytes");
}

int cmd_log_flows(int argc, char **argv, bool hosts)
{
    static const struct option opts[] = {{"top", required_argument, 0, 'T'},
                                         {"by", required_argument, 0, 'B'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_SELECT_OPTIONS,
                                         {0, 0, 0, 0}};
    const char *cmd = hosts ? "log hosts" : "log flows";
    struct flows f;
    memset(&f, 0, sizeof(f));
    f.hosts = hosts;
    cli_select_init(&f.sel);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int taken = cli_select_opt(&f.sel, c, optarg);
        if (taken < 0)
            return EXIT_USAGE;
        if (taken)
            continue;
        switch (c) {
        case 'T':
            if (cli_parse_u64(optarg, &f.top) || !f.top)
                return cli_error("--top: '%s' is not a positive count", optarg), EXIT_USAGE;
            break;
        case 'B':
            if (!strcmp(optarg, "packets"))
                f.by = BY_PACKETS;
            else if (!strcmp(optarg, "bytes"))
                f.by = BY_BYTES;
            else
                return cli_error("--by: '%s' is not packets or bytes", optarg), EXIT_USAGE;
            break;
        case 'j':
            f.json = true;
            break;
        case 'h':
            usage(stdout, hosts);
            return EXIT_OK;
        default:
            usage(stderr, hosts);
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        f.dir = argv[optind++];
    if (optind < argc)
        return cli_error("%s: unexpected argument '%s'", cmd, argv[optind]), EXIT_USAGE;
    if (!f.dir)
        return cli_error("%s: the log DIR is required", cmd), EXIT_USAGE;
    if (cli_select_check(&f.sel, cmd, argv, optind, f.dir))
        return EXIT_USAGE;
    int sig;
    int rc = cli_isolated(run_flows, &f, &sig);
    free(f.e);
    free(f.slot);
    if (!sig)
        return rc;
    cli_error("%s stopped by %s while reading stored data: the log's LMDB pages are damaged in "
              "a way LMDB cannot detect; run `rewind log verify` to locate it",
              cmd, strsignal(sig));
    return EXIT_DAMAGE;
}
