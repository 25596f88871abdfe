/*
 * test_chain.c - the chain file parser: the full example becomes the right
 * structure (NFs, edges, config reachable as a tree with lines and key paths),
 * defaults fill a minimal file, every bad file in tests/chains/bad/ is refused
 * with the FILE:LINE: KEY.PATH: message its first line expects, cycles are
 * named, large chains sort topologically, and parsing creates nothing.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "testutil.h"

static const char *const known[] = {"firewall", "nat", "portscan", "trojan", "lb", NULL};

static struct chain *parse_ok(const char *text, const char *origin)
{
    struct chain *c = NULL;
    struct rw_err e = {0};
    int rc = chain_parse(text, strlen(text), origin, known, &c, &e);
    if (rc)
        fprintf(stderr, "unexpected error: %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return c;
}

/* The message for a text that must be refused (static buffer per call site is
 * avoided: the caller owns e). */
static int parse_bad(const char *text, const char *origin, struct rw_err *e)
{
    struct chain *c = (struct chain *)1;
    int rc = chain_parse(text, strlen(text), origin, known, &c, e);
    CU_ASSERT_PTR_NULL(c);
    return rc;
}

static void test_full_example(void)
{
    struct chain *c = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL_FATAL(chain_load(RW_CHAINS_DIR "/good/firewall.yaml", known, &c, &e), 0);
    CU_ASSERT_STRING_EQUAL(c->name, "firewall");
    CU_ASSERT_STRING_EQUAL(c->trace, RW_CHAINS_DIR "/good/traces/trojan_sequence.pcap");
    CU_ASSERT_PTR_NULL(c->port);
    CU_ASSERT_STRING_EQUAL(c->store_url, "lmdb:store");
    CU_ASSERT_EQUAL(c->durability, RW_DUR_POWER);
    CU_ASSERT_EQUAL(c->segment_mb, 64);
    CU_ASSERT_EQUAL(c->max_frame, 9216);
    CU_ASSERT_EQUAL_FATAL(c->nnfs, 2);
    CU_ASSERT_STRING_EQUAL(c->nfs[0].name, "fw");
    CU_ASSERT_STRING_EQUAL(c->nfs[0].type, "firewall");
    CU_ASSERT_EQUAL(c->nfs[0].instances, 3);
    CU_ASSERT_EQUAL(c->nfs[0].flowspace, RW_FS_5TUPLE);
    CU_ASSERT_EQUAL(c->nfs[0].line, 10);
    CU_ASSERT_STRING_EQUAL(c->nfs[1].name, "ids");
    CU_ASSERT_STRING_EQUAL(c->nfs[1].type, "trojan");
    CU_ASSERT_EQUAL(c->nfs[1].instances, 1);
    CU_ASSERT_EQUAL(c->nfs[1].flowspace, RW_FS_HOST_PAIR);
    CU_ASSERT_PTR_NULL(c->nfs[1].config);
    CU_ASSERT_EQUAL(chain_nf_index(c, "ids"), 1);
    CU_ASSERT_EQUAL(chain_nf_index(c, "nope"), -1);

    CU_ASSERT_EQUAL_FATAL(c->nedges, 3);
    CU_ASSERT(c->edges[0].from == CHAIN_INPUT && c->edges[0].to == 0);
    CU_ASSERT(c->edges[1].from == 0 && c->edges[1].to == 1);
    CU_ASSERT(c->edges[2].from == 1 && c->edges[2].to == CHAIN_OUTPUT);
    CU_ASSERT_PTR_NULL(c->edges[0].filter);
    CU_ASSERT_STRING_EQUAL(c->edges[1].filter, "tcp or udp");
    CU_ASSERT_EQUAL(c->edges[1].line, 24);
    CU_ASSERT(c->order[0] == 0 && c->order[1] == 1);
    chain_free(c);
}

static void test_config_tree(void)
{
    struct chain *c = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL_FATAL(chain_load(RW_CHAINS_DIR "/good/firewall.yaml", known, &c, &e), 0);
    const struct chain_node *cfg = c->nfs[0].config;
    CU_ASSERT_EQUAL_FATAL(chain_node_kind(cfg), CHAIN_MAP);
    CU_ASSERT_EQUAL(chain_node_count(cfg), 2);
    CU_ASSERT_STRING_EQUAL(chain_node_key(cfg, 0), "default");
    CU_ASSERT_STRING_EQUAL(chain_node_scalar(chain_node_get(cfg, "default")), "drop");
    CU_ASSERT_EQUAL(chain_node_line(chain_node_get(cfg, "default")), 15);
    const struct chain_node *rules = chain_node_get(cfg, "rules");
    CU_ASSERT_EQUAL_FATAL(chain_node_kind(rules), CHAIN_SEQ);
    CU_ASSERT_EQUAL_FATAL(chain_node_count(rules), 2);
    const struct chain_node *r1 = chain_node_item(rules, 1);
    CU_ASSERT_EQUAL(chain_node_line(r1), 18);
    CU_ASSERT_STRING_EQUAL(chain_node_path(r1), "nfs[0].config.rules[1]");
    CU_ASSERT_STRING_EQUAL(chain_node_scalar(chain_node_get(r1, "proto")), "udp");
    uint64_t port = 0;
    CU_ASSERT_EQUAL(chain_node_u64(r1, "dst_port", 1, 65535, 0, &port, &e), 0);
    CU_ASSERT_EQUAL(port, 53);
    CU_ASSERT_PTR_NULL(chain_node_item(rules, 2));
    CU_ASSERT_PTR_NULL(chain_node_get(cfg, "absent"));
    CU_ASSERT_PTR_NULL(chain_node_get(NULL, "absent"));

    /* An NF's own checks name the line and the key path. */
    CU_ASSERT_EQUAL(chain_node_u64(r1, "dst_port", 1, 50, 0, &port, &e), RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg,
                           RW_CHAINS_DIR "/good/firewall.yaml:18: "
                                         "nfs[0].config.rules[1].dst_port: expected an integer in "
                                         "1..50, got '53'");
    static const char *const rule_keys[] = {"action", "proto", NULL};
    CU_ASSERT_EQUAL(chain_node_keys(r1, rule_keys, &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, ":18: nfs[0].config.rules[1].dst_port: unknown key "
                                         "(allowed: action, proto)"));
    const char *s;
    CU_ASSERT_EQUAL(chain_node_string(cfg, "mode", 1, &s, &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, ":15: nfs[0].config.mode: missing required key"));
    CU_ASSERT_EQUAL(chain_node_want(rules, CHAIN_MAP, &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, ":17: nfs[0].config.rules: expected a mapping, got a "
                                         "sequence"));
    chain_free(c);
}

/* The typed getters every NF uses for addresses, prefixes and port ranges. */
static void test_addr_and_port_getters(void)
{
    static const char text[] = "nfs:\n"
                               "  - name: fw\n"
                               "    type: firewall\n"
                               "    config:\n"
                               "      v4: 10.1.0.0/16\n"
                               "      v6: \"2001:db8::/32\"\n"
                               "      host: 10.1.2.3\n"
                               "      wide: 10.0.0.0/33\n"
                               "      junk: 10.0.0.0/8x\n"
                               "      one: 80\n"
                               "      range: 1024-2047\n"
                               "      back: 9-3\n"
                               "      list: [10.0.0.1, \"2001:db8::1\"]\n";
    struct chain *c = parse_ok(text, "g.yaml");
    const struct chain_node *cfg = c->nfs[0].config;
    const unsigned any = CHAIN_ADDR_V4 | CHAIN_ADDR_V6 | CHAIN_ADDR_PREFIX;
    struct chain_addr a;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "v4", 1, any, &a, &e), 0);
    CU_ASSERT_TRUE(a.family == 4 && a.bits == 16 && a.addr[0] == 10 && a.addr[1] == 1);
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "v6", 1, any, &a, &e), 0);
    CU_ASSERT_TRUE(a.family == 6 && a.bits == 32 && a.addr[0] == 0x20 && a.addr[1] == 0x01);
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "host", 1, CHAIN_ADDR_V4, &a, &e), 0);
    CU_ASSERT_EQUAL(a.bits, 32);
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "absent", 0, any, &a, &e), 0);
    CU_ASSERT_EQUAL(a.family, 0);
    /* What a key does not accept is refused with what it does. */
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "v6", 1, CHAIN_ADDR_V4 | CHAIN_ADDR_PREFIX, &a, &e),
                    RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(e.msg, "config.v6: '2001:db8::/32' is not an IPv4 address or CIDR prefix"));
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "v4", 1, CHAIN_ADDR_V4, &a, &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "'10.1.0.0/16' is not an IPv4 address"));
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "wide", 1, any, &a, &e), RW_EINVAL);
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "junk", 1, any, &a, &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(
        e.msg, "g.yaml:9: nfs[0].config.junk: '10.0.0.0/8x' is not an address or CIDR prefix"));
    CU_ASSERT_EQUAL(chain_node_addr(cfg, "absent", 1, any, &a, &e), RW_EINVAL);
    const struct chain_node *list = chain_node_get(cfg, "list");
    CU_ASSERT_EQUAL(chain_node_addr_of(cfg, "list", chain_node_item(list, 1), any, &a, &e), 0);
    CU_ASSERT_EQUAL(a.family, 6);
    CU_ASSERT_EQUAL(
        chain_node_addr_of(cfg, "list", chain_node_item(list, 1), CHAIN_ADDR_V4, &a, &e),
        RW_EINVAL);

    uint16_t lo = 7, hi = 8;
    CU_ASSERT_EQUAL(chain_node_ports(cfg, "absent", 0, 65535, &lo, &hi, &e), 0);
    CU_ASSERT_TRUE(lo == 7 && hi == 8); /* the caller's default stays */
    CU_ASSERT_EQUAL(chain_node_ports(cfg, "one", 0, 65535, &lo, &hi, &e), 0);
    CU_ASSERT_TRUE(lo == 80 && hi == 80);
    CU_ASSERT_EQUAL(chain_node_ports(cfg, "range", 0, 65535, &lo, &hi, &e), 0);
    CU_ASSERT_TRUE(lo == 1024 && hi == 2047);
    CU_ASSERT_EQUAL(chain_node_ports(cfg, "range", 1100, 65535, &lo, &hi, &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(e.msg, "'1024-2047' is not a port or range N-M within 1100-65535"));
    CU_ASSERT_EQUAL(chain_node_ports(cfg, "back", 0, 65535, &lo, &hi, &e), RW_EINVAL);
    CU_ASSERT_EQUAL(chain_node_ports(cfg, "v4", 0, 65535, &lo, &hi, &e), RW_EINVAL);
    chain_free(c);
}

static void test_defaults_straight_line(void)
{
    struct chain *c = parse_ok("nfs:\n"
                               "  - {name: a, type: nat}\n"
                               "  - {name: b, type: firewall, config: }\n"
                               "  - {name: c, type: lb}\n",
                               "some/dir/straight.yml");
    CU_ASSERT_STRING_EQUAL(c->name, "straight");
    CU_ASSERT_PTR_NULL(c->trace);
    CU_ASSERT_PTR_NULL(c->port);
    CU_ASSERT_STRING_EQUAL(c->store_url, "lmdb:store");
    CU_ASSERT_EQUAL(c->durability, RW_DUR_PROCESS);
    CU_ASSERT_EQUAL(c->segment_mb, 256);
    CU_ASSERT_EQUAL(c->max_frame, CHAIN_MAX_FRAME_DEFAULT);
    CU_ASSERT_EQUAL_FATAL(c->nnfs, 3);
    for (uint32_t i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(c->nfs[i].instances, 1);
        CU_ASSERT_EQUAL(c->nfs[i].flowspace, RW_FS_5TUPLE);
        CU_ASSERT_PTR_NULL(c->nfs[i].config);
        CU_ASSERT_EQUAL(c->order[i], i);
    }
    CU_ASSERT_EQUAL_FATAL(c->nedges, 4);
    int want[4][2] = {{CHAIN_INPUT, 0}, {0, 1}, {1, 2}, {2, CHAIN_OUTPUT}};
    for (int k = 0; k < 4; k++) {
        CU_ASSERT_EQUAL(c->edges[k].from, want[k][0]);
        CU_ASSERT_EQUAL(c->edges[k].to, want[k][1]);
        CU_ASSERT_PTR_NULL(c->edges[k].filter);
    }
    chain_free(c);
}

static void test_inputs_and_urls(void)
{
    struct chain *c = parse_ok("input: {port: 'net_pcap0,rx_pcap=/x.pcap'}\nstore: 'mem:'\n"
                               "nfs: [{name: a, type: nat}]\n",
                               "chain.yaml");
    CU_ASSERT_STRING_EQUAL(c->name, "chain");
    CU_ASSERT_STRING_EQUAL(c->port, "net_pcap0,rx_pcap=/x.pcap");
    CU_ASSERT_PTR_NULL(c->trace);
    CU_ASSERT_STRING_EQUAL(c->store_url, "mem:");
    chain_free(c);
    c = parse_ok("input: {trace: /abs/t.pcap}\nstore: 'redis://127.0.0.1:6379/2'\n"
                 "log: {durability: none}\nnfs: [{name: a, type: nat, flowspace: src}]\n",
                 "/etc/rewind/c.yaml");
    CU_ASSERT_STRING_EQUAL(c->trace, "/abs/t.pcap");
    CU_ASSERT_STRING_EQUAL(c->store_url, "redis://127.0.0.1:6379/2");
    CU_ASSERT_EQUAL(c->durability, RW_DUR_NONE);
    CU_ASSERT_EQUAL(c->nfs[0].flowspace, RW_FS_SRC);
    chain_free(c);
    c = parse_ok("input: {trace: rel.pcap}\nnfs: [{name: a, type: nat}]\n", "c.yaml");
    CU_ASSERT_STRING_EQUAL(c->trace, "rel.pcap");
    chain_free(c);
}

/* Each fixture's first line is "# expect: LINE: PATH: message" (a prefix of it). */
static void check_bad_file(const char *path)
{
    char *text = tu_slurp(path, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char want[RW_ERR_MSG_MAX + 64];
    const char *tag = "# expect: ";
    CU_ASSERT_FATAL(strncmp(text, tag, strlen(tag)) == 0);
    size_t n = strcspn(text + strlen(tag), "\n");
    snprintf(want, sizeof(want), "%s:%.*s", path, (int)n, text + strlen(tag));
    free(text);
    struct chain *c = (struct chain *)1;
    struct rw_err e = {0};
    int rc = chain_load(path, known, &c, &e);
    CU_ASSERT_EQUAL(rc, RW_EINVAL);
    CU_ASSERT_PTR_NULL(c);
    if (strncmp(e.msg, want, strlen(want)) != 0) {
        fprintf(stderr, "\n  want: %s\n  got:  %s\n", want, e.msg);
        CU_FAIL("message differs from the fixture's expectation");
    }
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_yaml(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

static void test_bad_files(void)
{
    struct dirent **list;
    int n = scandir(RW_CHAINS_DIR "/bad", &list, is_yaml, by_name);
    CU_ASSERT_FATAL(n >= 30);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/bad/%s", RW_CHAINS_DIR, list[i]->d_name);
        check_bad_file(path);
        free(list[i]);
    }
    free(list);
}

static void test_bad_inline(void)
{
    struct rw_err e = {0};
    /* Wrong kinds, and scalars that YAML reads but a chain refuses. */
    CU_ASSERT_EQUAL(parse_bad("nfs: [{name: a, type: nat}]\nname: [x]\n", "t.yaml", &e), RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg, "t.yaml:2: name: expected a string, got a sequence");
    CU_ASSERT_EQUAL(parse_bad("nfs: [{name: a, type: nat}]\nname: 'a b'\n", "t.yaml", &e),
                    RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "t.yaml:2: name: 'a b' is not a name"));
    CU_ASSERT_EQUAL(parse_bad("nfs: [{name: a, type: nat}]\nstore: 'mem:x'\n", "t.yaml", &e),
                    RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "t.yaml:2: store: bad store URL 'mem:x'"));
    CU_ASSERT_EQUAL(parse_bad("nfs: [{name: a, type: nat, instances: 0}]\n", "t.yaml", &e),
                    RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg,
                           "t.yaml:1: nfs[0].instances: expected an integer in 1..64, got '0'");
    /* Binary in a chain file: libyaml's reader knows only a byte offset. */
    CU_ASSERT_EQUAL(parse_bad("name: x\nnfs: [{name: a, type: nat}]\n  \x01\x02\n", "t.yaml", &e),
                    RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg, "t.yaml:3: column 3 (byte 0x01): control characters are not "
                                  "allowed; not a text chain file");
    CU_ASSERT_EQUAL(parse_bad("nfs: []\n", "t.yaml", &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "t.yaml:1: nfs: must list 1 to"));
    CU_ASSERT_EQUAL(
        parse_bad("nfs: [{name: a, type: nat}]\nedges: [{from: input, to: a}]\n", "t.yaml", &e),
        RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg, "t.yaml:1: nfs[0]: NF 'a' has no path to output (its packets "
                                  "would never leave)");
    /* A self-loop is the shortest cycle. */
    CU_ASSERT_EQUAL(parse_bad("nfs: [{name: a, type: nat}]\nedges:\n  - {from: input, to: a}\n"
                              "  - {from: a, to: a}\n  - {from: a, to: output}\n",
                              "t.yaml", &e),
                    RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg, "t.yaml:4: edges[1]: cycle: a -> a");
    /* A cycle found from an NF downstream of it; listed from its first NF in the file. */
    CU_ASSERT_EQUAL(parse_bad("nfs: [{name: d, type: nat}, {name: a, type: nat}, "
                              "{name: c, type: nat}, {name: b, type: nat}]\n"
                              "edges:\n  - {from: input, to: a}\n  - {from: a, to: b}\n"
                              "  - {from: b, to: c}\n  - {from: c, to: b}\n"
                              "  - {from: c, to: d}\n  - {from: d, to: output}\n",
                              "t.yaml", &e),
                    RW_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg, "t.yaml:5: edges[2]: cycle: c -> b -> c");
    /* Hostile nesting is refused, not recursed into without bound. */
    char deep[512];
    snprintf(deep, sizeof(deep), "nfs: [{name: a, type: nat, config: {x: %.*s%.*s}}]\n", 200,
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
             200,
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
             "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    CU_ASSERT_EQUAL(parse_bad(deep, "t.yaml", &e), RW_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "nested more than 64 levels deep"));
    /* Any type goes without a list of known types. */
    struct chain *c = NULL;
    const char *t = "nfs: [{name: a, type: whatever}]\n";
    CU_ASSERT_EQUAL(chain_parse(t, strlen(t), "t.yaml", NULL, &c, &e), 0);
    chain_free(c);
    CU_ASSERT_EQUAL(chain_load("/nonexistent/chain.yaml", known, &c, &e), RW_ENOENT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "/nonexistent/chain.yaml"));
}

/* 20 NFs: a fan-out to ten branches that join again, edges listed backwards. */
static void test_large_chain(void)
{
    size_t cap = 8192, used = 0;
    char *y = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    used += (size_t)snprintf(y + used, cap - used, "nfs:\n");
    for (int i = 0; i < 20; i++)
        used += (size_t)snprintf(y + used, cap - used,
                                 "  - {name: nf%02d, type: lb, instances: %d}\n", i, 1 + i % 64);
    used += (size_t)snprintf(y + used, cap - used, "edges:\n  - {from: nf19, to: output}\n");
    for (int b = 1; b <= 9; b++) /* nf00 -> nf{b} -> nf{b+9} -> nf19 */
        used += (size_t)snprintf(y + used, cap - used,
                                 "  - {from: nf%02d, to: nf19}\n  - {from: nf%02d, to: nf%02d}\n"
                                 "  - {from: nf00, to: nf%02d, filter: 'tcp port %d'}\n",
                                 b + 9, b, b + 9, b, 1000 + b);
    snprintf(y + used, cap - used, "  - {from: input, to: nf00}\n");
    struct chain *c = parse_ok(y, "large.yaml");
    free(y);
    CU_ASSERT_EQUAL(c->nnfs, 20);
    CU_ASSERT_EQUAL(c->nedges, 29);
    CU_ASSERT_EQUAL(c->nfs[19].instances, 20);
    uint32_t pos[20];
    for (uint32_t h = 0; h < c->nnfs; h++)
        pos[c->order[h]] = h;
    for (uint32_t k = 0; k < c->nedges; k++)
        if (c->edges[k].from >= 0 && c->edges[k].to >= 0)
            CU_ASSERT(pos[c->edges[k].from] < pos[c->edges[k].to]);
    CU_ASSERT_EQUAL(c->order[0], 0);
    CU_ASSERT_EQUAL(c->order[19], 19);
    chain_free(c);
}

/* Loading a chain with a relative lmdb store and a trace touches no file. */
static void test_parse_creates_nothing(void)
{
    char *dir = tu_mkdtemp("chain");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char cwd[1024];
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof(cwd)));
    CU_ASSERT_EQUAL_FATAL(chdir(dir), 0);
    struct chain *c = NULL;
    struct rw_err e = {0};
    CU_ASSERT_EQUAL(chain_load(RW_CHAINS_DIR "/good/firewall.yaml", known, &c, &e), 0);
    chain_free(c);
    struct dirent **list;
    int n = scandir(".", &list, NULL, NULL);
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    CU_ASSERT_EQUAL(n, 2); /* . and .. */
    CU_ASSERT_EQUAL(chdir(cwd), 0);
    tu_rmrf(dir);
    free(dir);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "the full example parses to the right structure", test_full_example);
    CU_add_test(s, "config is a tree with lines and paths; NF checks name them", test_config_tree);
    CU_add_test(s, "addresses, prefixes and port ranges: one getter each",
                test_addr_and_port_getters);
    CU_add_test(s, "a minimal chain gets the defaults and a straight line",
                test_defaults_straight_line);
    CU_add_test(s, "port input, absolute and relative traces, store URLs", test_inputs_and_urls);
    CU_add_test(s, "every bad fixture gives its FILE:LINE: KEY.PATH: message", test_bad_files);
    CU_add_test(s, "bad inline chains: kinds, ranges, self-loop, nesting, missing file",
                test_bad_inline);
    CU_add_test(s, "a 20-NF fan-out/fan-in chain sorts topologically", test_large_chain);
    CU_add_test(s, "parsing creates no file", test_parse_creates_nothing);
}

int main(void)
{
    return tu_main("chain", add);
}
