/*
 * test_decode.c - the one packet decoder (common/rw_pkt.c) and what rides on it:
 * every NF of the catalog decides a VLAN-tagged or QinQ frame as it decides the
 * same frame untagged, and IPv6 with extension headers as the catalog claims.
 *
 * Before the decoder, five parsers disagreed: the firewall read the IP header at
 * byte 14 (a tagged trojan_sequence.pcap: 733 of 1,932 packets out), read TCP
 * flags for IPv4 only (20 IPv6 HTTP connections under an allow rule: 0 out), the
 * load balancer took untagged frames only, verify one tag.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "itest.h"
#include "rw_flow.h"
#include "rw_pkt.h"

/* ---- unit: frames built here ---- */

struct frame {
    uint8_t b[256];
    size_t n;
};

static void put(struct frame *f, const void *p, size_t n)
{
    memcpy(f->b + f->n, p, n);
    f->n += n;
}

static void put16(struct frame *f, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(f, b, 2);
}

/* Ethernet addresses, then the tags (TPID, VID) and the EtherType. */
static void ether(struct frame *f, const uint16_t *tpids, unsigned ntags, uint16_t type)
{
    static const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
    f->n = 0;
    put(f, macs, 12);
    for (unsigned i = 0; i < ntags; i++) {
        put16(f, tpids[i]);
        put16(f, (uint16_t)(100 + i));
    }
    put16(f, type);
}

static void tcp(struct frame *f, uint16_t sport, uint16_t dport, uint8_t flags)
{
    uint8_t h[20] = {0};
    h[0] = (uint8_t)(sport >> 8), h[1] = (uint8_t)sport;
    h[2] = (uint8_t)(dport >> 8), h[3] = (uint8_t)dport;
    h[12] = 5 << 4;
    h[13] = flags;
    put(f, h, 20);
}

/* IPv4 with opt_words words of options; frag: the flags+offset field. */
static void ipv4(struct frame *f, uint8_t proto, unsigned opt_words, uint16_t frag,
                 uint16_t payload)
{
    uint8_t h[60] = {0};
    size_t ihl = 20 + 4 * (size_t)opt_words;
    h[0] = (uint8_t)(0x40 | ihl / 4);
    h[2] = (uint8_t)((ihl + payload) >> 8), h[3] = (uint8_t)(ihl + payload);
    h[6] = (uint8_t)(frag >> 8), h[7] = (uint8_t)frag;
    h[8] = 64;
    h[9] = proto;
    h[12] = 10, h[15] = 1;       /* 10.0.0.1 */
    h[16] = 10, h[19] = 2;       /* 10.0.0.2 */
    memset(h + 20, 1, ihl - 20); /* NOPs */
    put(f, h, ihl);
}

/* IPv6 with the extension headers exts (HBH 0, routing 43, dest opts 60,
 * fragment 44: frag_field is the fragment header's offset+M field), then proto. */
static void ipv6(struct frame *f, const uint8_t *exts, unsigned n, uint8_t proto,
                 uint16_t frag_field, uint16_t l4_len)
{
    uint8_t h[40] = {0};
    h[0] = 0x60;
    uint16_t plen = (uint16_t)(8 * n + l4_len);
    h[4] = (uint8_t)(plen >> 8), h[5] = (uint8_t)plen;
    h[6] = n ? exts[0] : proto;
    h[7] = 64;
    h[8] = 0x20, h[9] = 0x01, h[10] = 0x0d, h[11] = 0xb8, h[23] = 1; /* 2001:db8::1 */
    h[24] = 0x20, h[25] = 0x01, h[26] = 0x0d, h[27] = 0xb8, h[39] = 2;
    put(f, h, 40);
    for (unsigned i = 0; i < n; i++) {
        uint8_t e[8] = {0};
        e[0] = i + 1 < n ? exts[i + 1] : proto;
        if (exts[i] == 44) {
            e[2] = (uint8_t)(frag_field >> 8), e[3] = (uint8_t)frag_field;
        } else if (exts[i] == 43) {
            e[2] = 0; /* routing type 0, */
            e[3] = 0; /* no segments left */
        } else {
            e[2] = 1, e[3] = 4; /* PadN of 4 */
        }
        put(f, e, 8);
    }
}

static void test_tags(void)
{
    static const uint16_t tpids[][2] = {{0, 0}, {0x8100, 0}, {0x88a8, 0x8100}, {0x9100, 0x8100}};
    static const unsigned ntags[] = {0, 1, 2, 2};
    for (int i = 0; i < 4; i++) {
        struct frame f;
        ether(&f, tpids[i], ntags[i], 0x0800);
        ipv4(&f, 6, 0, 0, 20);
        tcp(&f, 1234, 80, 0x02);
        struct rw_pkt p;
        CU_ASSERT_TRUE_FATAL(rw_pkt_decode(f.b, f.n, &p));
        CU_ASSERT_EQUAL(p.ntags, ntags[i]);
        CU_ASSERT_EQUAL(p.l3, 14 + 4 * ntags[i]);
        CU_ASSERT_EQUAL(p.l4, 34 + 4 * ntags[i]);
        CU_ASSERT_TRUE(p.family == 4 && p.proto == 6 && p.sport == 1234 && p.dport == 80);
        CU_ASSERT_EQUAL(rw_pkt_tcp_flags(&p, f.b), 0x02);
        CU_ASSERT_EQUAL(rw_pkt_l4_len(&p), 20);
        /* The flow key, and so its hash, is the untagged frame's. */
        struct rw_flow a, b;
        struct frame u;
        ether(&u, NULL, 0, 0x0800);
        ipv4(&u, 6, 0, 0, 20);
        tcp(&u, 1234, 80, 0x02);
        CU_ASSERT_TRUE(rw_flow_parse(f.b, f.n, &a) && rw_flow_parse(u.b, u.n, &b));
        CU_ASSERT_EQUAL(rw_flow_hash(&a), rw_flow_hash(&b));
    }
    /* A third tag is not skipped: not IP. */
    static const uint16_t three[] = {0x88a8, 0x8100, 0x8100};
    struct frame f;
    ether(&f, three, 3, 0x0800);
    ipv4(&f, 6, 0, 0, 20);
    tcp(&f, 1, 2, 0);
    struct rw_pkt p;
    CU_ASSERT_FALSE(rw_pkt_decode(f.b, f.n, &p));
    CU_ASSERT_EQUAL(p.family, 0);
}

static void test_ipv4_options_and_fragments(void)
{
    struct frame f;
    struct rw_pkt p;
    ether(&f, NULL, 0, 0x0800);
    ipv4(&f, 17, 3, 0, 8); /* 12 bytes of options */
    put(&f, "\x00\x35\x13\x88\x00\x08\x00\x00", 8);
    CU_ASSERT_TRUE_FATAL(rw_pkt_decode(f.b, f.n, &p));
    CU_ASSERT_TRUE(p.ip_hlen == 32 && p.l4 == 14 + 32 && p.sport == 53 && p.dport == 5000);
    CU_ASSERT_EQUAL(p.frag, RW_PKT_WHOLE);
    /* First fragment (MF): ports are there. A later one: no L4, no ports. */
    ether(&f, NULL, 0, 0x0800);
    ipv4(&f, 6, 0, 0x2000, 20);
    tcp(&f, 7, 8, 0x02);
    CU_ASSERT_TRUE(rw_pkt_decode(f.b, f.n, &p) && p.frag == RW_PKT_FIRST_FRAG && p.dport == 8);
    ether(&f, NULL, 0, 0x0800);
    ipv4(&f, 6, 0, 0x0003, 20);
    tcp(&f, 7, 8, 0x02);
    CU_ASSERT_TRUE(rw_pkt_decode(f.b, f.n, &p) && p.frag == RW_PKT_LATER_FRAG);
    CU_ASSERT_TRUE(p.l4 == 0 && p.sport == 0 && p.dport == 0 && rw_pkt_tcp_flags(&p, f.b) == 0);
    /* Ethernet padding is not payload: a 40-byte datagram in a 60-byte frame. */
    ether(&f, NULL, 0, 0x0800);
    ipv4(&f, 6, 0, 0, 20);
    tcp(&f, 7, 8, 0x10);
    memset(f.b + f.n, 0, 6);
    f.n = 60;
    CU_ASSERT_TRUE(rw_pkt_decode(f.b, f.n, &p) && p.l3_end == 54 && rw_pkt_l4_len(&p) == 20);
}

static void test_ipv6_extension_headers(void)
{
    static const uint8_t chain[] = {0, 43, 60};
    static const uint16_t qinq[] = {0x88a8, 0x8100};
    struct frame f;
    struct rw_pkt p;
    ether(&f, qinq, 2, 0x86dd);
    ipv6(&f, chain, 3, 6, 0, 20);
    tcp(&f, 40000, 80, 0x02);
    CU_ASSERT_TRUE_FATAL(rw_pkt_decode(f.b, f.n, &p));
    CU_ASSERT_TRUE(p.family == 6 && p.proto == 6 && p.l3 == 22 && p.l4 == 22 + 40 + 24);
    CU_ASSERT_TRUE(p.sport == 40000 && p.dport == 80 && rw_pkt_tcp_flags(&p, f.b) == 0x02);
    CU_ASSERT_EQUAL(p.l3_end, f.n);
    /* A first fragment behind the extension headers has its ports, a later none. */
    static const uint8_t frag[] = {0, 44};
    ether(&f, NULL, 0, 0x86dd);
    ipv6(&f, frag, 2, 17, 0x0001, 8);
    put(&f, "\x00\x35\x13\x88\x00\x08\x00\x00", 8);
    CU_ASSERT_TRUE(rw_pkt_decode(f.b, f.n, &p) && p.frag == RW_PKT_FIRST_FRAG && p.dport == 5000);
    ether(&f, NULL, 0, 0x86dd);
    ipv6(&f, frag, 2, 17, 0x0008, 8);
    put(&f, "\x00\x35\x13\x88\x00\x08\x00\x00", 8);
    CU_ASSERT_TRUE(rw_pkt_decode(f.b, f.n, &p) && p.frag == RW_PKT_LATER_FRAG && p.l4 == 0);
    CU_ASSERT_TRUE(p.proto == 17 && p.dport == 0);
}

/* Every prefix of a frame decodes without reading past it (ASan watches a copy
 * of exactly that many bytes on the heap), and what it says stays inside. */
static void test_truncated_everywhere(void)
{
    static const uint8_t chain[] = {0, 43, 60};
    static const uint16_t qinq[] = {0x88a8, 0x8100};
    struct frame f;
    ether(&f, qinq, 2, 0x86dd);
    ipv6(&f, chain, 3, 6, 0, 20);
    tcp(&f, 40000, 80, 0x12);
    struct frame g;
    ether(&g, qinq, 1, 0x0800);
    ipv4(&g, 6, 2, 0, 20);
    tcp(&g, 1, 2, 0x12);
    const struct frame *fs[] = {&f, &g};
    for (int k = 0; k < 2; k++) {
        for (size_t n = 0; n <= fs[k]->n; n++) {
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, fs[k]->b, n);
            struct rw_pkt p;
            bool ip = rw_pkt_decode(cut, n, &p);
            CU_ASSERT_TRUE(p.l3 <= n && p.l4 <= n && p.l3_end <= n);
            CU_ASSERT_TRUE(!ip || (p.src && p.src + (p.family == 4 ? 4 : 16) <= cut + n));
            if (rw_pkt_tcp_flags(&p, cut))
                CU_ASSERT_TRUE(p.l4 + 14 <= n);
            free(cut);
        }
    }
}

/* ---- integration: the catalog on tagged copies of real captures ---- */

/* Writes in's packets to out behind ntags tags (0: an identical copy, written the
 * same way so the three runs compare on equal timestamps). */
static void tag_copy(const char *in, const char *out, unsigned ntags)
{
    struct tu_pcap p;
    CU_ASSERT_EQUAL_FATAL(tu_pcap_read(in, &p), 0);
    for (size_t i = 0; i < p.n; i++) {
        struct tu_pkt *k = &p.pkts[i];
        uint8_t *d = malloc(k->caplen + 8);
        memcpy(d, k->data, 12);
        static const uint8_t tags[2][4] = {{0x88, 0xa8, 0x00, 0xc8}, {0x81, 0x00, 0x00, 0x64}};
        for (unsigned t = 0; t < ntags; t++)
            memcpy(d + 12 + 4 * t, tags[ntags == 1 ? 1 : t], 4);
        memcpy(d + 12 + 4 * ntags, k->data + 12, k->caplen - 12);
        free(k->data);
        k->data = d;
        k->caplen += 4 * ntags;
        k->len += 4 * ntags;
    }
    CU_ASSERT_EQUAL(tu_pcap_write(out, &p), 0);
    tu_pcap_free(&p);
}

/* Takes the tags out of a chain's output, in place. */
static void untag(struct it_outs *o)
{
    for (size_t i = 0; i < o->n; i++) {
        struct it_pkt *k = &o->p[i];
        while (k->len >= 18 && rw_pkt_is_tag((uint16_t)(k->data[12] << 8 | k->data[13]))) {
            memmove(k->data + 12, k->data + 16, k->len - 16);
            k->len -= 4;
        }
    }
}

static int run_chain(const char *d, const char *chain, const char *trace, const char *out)
{
    char o[4200];
    snprintf(o, sizeof(o), "%s/run", d);
    return tu_sh(o, "timeout -s KILL 300 '%s' run '%s/docs/chains/%s' --trace '%s' --out '%s'",
                 tu_bin(), getenv("RW_SRC"), chain, trace, out);
}

struct catalog_case {
    const char *chain, *trace;
};

static void tagged_like_untagged(const struct catalog_case *c)
{
    char *d = tu_mkdtemp("dec");
    char src[4096], trace[3][4200], out[3][4200], alerts[3][4300];
    tu_trace(c->trace, src, sizeof(src));
    struct it_outs o[3];
    char *al[3];
    for (unsigned t = 0; t < 3; t++) {
        snprintf(trace[t], sizeof(trace[t]), "%s/tags%u.pcap", d, t);
        snprintf(out[t], sizeof(out[t]), "%s/out%u", d, t);
        snprintf(alerts[t], sizeof(alerts[t]), "%s/alerts.json", out[t]);
        tag_copy(src, trace[t], t);
        CU_ASSERT_EQUAL_FATAL(run_chain(d, c->chain, trace[t], out[t]), 0);
        it_read_output(out[t], &o[t]);
        if (t)
            untag(&o[t]);
        size_t n;
        al[t] = tu_slurp(alerts[t], &n);
    }
    CU_ASSERT_TRUE(o[0].n > 0);
    for (unsigned t = 1; t < 3; t++) {
        if (!it_same_outs(&o[0], &o[t]))
            fprintf(stderr, "  %s: %u tag(s) changed the output\n", c->chain, t);
        CU_ASSERT_TRUE(it_same_outs(&o[0], &o[t]));
        CU_ASSERT_TRUE(al[0] && al[t] && !strcmp(al[0], al[t]));
    }
    for (unsigned t = 0; t < 3; t++) {
        it_free_outs(&o[t]);
        free(al[t]);
    }
    tu_rmrf(d);
    free(d);
}

static void test_tagged_firewall(void)
{
    tagged_like_untagged(&(struct catalog_case){"firewall.yaml", "trojan_sequence.pcap"});
}

static void test_tagged_nat(void)
{
    tagged_like_untagged(&(struct catalog_case){"nat.yaml", "trojan_sequence.pcap"});
}

static void test_tagged_portscan(void)
{
    tagged_like_untagged(&(struct catalog_case){"portscan.yaml", "nmap_sT_top1000.pcap"});
}

static void test_tagged_trojan(void)
{
    tagged_like_untagged(&(struct catalog_case){"trojan.yaml", "trojan_sequence.pcap"});
}

static void test_tagged_lb(void)
{
    tagged_like_untagged(&(struct catalog_case){"lb.yaml", "jumbo_lb.pcap"});
}

static void test_tagged_full(void)
{
    tagged_like_untagged(&(struct catalog_case){"full.yaml", "trojan_sequence.pcap"});
}

/* ---- integration: IPv6 with extension headers (traces/ipv6_ext.pcap) ---- */

/* Runs an inline chain (its nfs: and edges: text) on ipv6_ext.pcap. */
static int run_v6(const char *d, const char *nfs, const char *out)
{
    char chain[4200], trace[4096];
    snprintf(chain, sizeof(chain), "%s/v6.yaml", d);
    FILE *f = fopen(chain, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fprintf(f, "name: v6\nstore: lmdb:store\n%s", nfs);
    fclose(f);
    tu_trace("ipv6_ext.pcap", trace, sizeof(trace));
    char o[4200];
    snprintf(o, sizeof(o), "%s/run", d);
    return tu_sh(o, "timeout -s KILL 300 '%s' run '%s' --trace '%s' --out '%s'", tu_bin(), chain,
                 trace, out);
}

static void test_ipv6_firewall(void)
{
    char *d = tu_mkdtemp("dec");
    char out[4200], rep[4300];
    snprintf(out, sizeof(out), "%s/tcp", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    /* The rule: 20 IPv6 HTTP connections from 2001:db8::1, 160 packets,
     * a third of them behind hop-by-hop, routing and destination-option headers. */
    CU_ASSERT_EQUAL(run_v6(d,
                           "nfs:\n  - name: fw\n    type: firewall\n    instances: 2\n"
                           "    config:\n      default: drop\n      rules:\n"
                           "        - {action: allow, proto: tcp, src: \"2001:db8::1/128\", "
                           "dst: \"2001:db8::/64\"}\n"
                           "edges:\n  - {from: input, to: fw}\n  - {from: fw, to: output}\n",
                           out),
                    0);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"packets_out\": 160,"), 2); /* the run's, the NF's */
    snprintf(out, sizeof(out), "%s/all", d);
    snprintf(rep, sizeof(rep), "%s/report.json", out);
    /* UDP and ICMPv6 too: DNS behind destination options, echo behind hop-by-hop. */
    CU_ASSERT_EQUAL(run_v6(d,
                           "nfs:\n  - name: fw\n    type: firewall\n    instances: 2\n"
                           "    config:\n      default: drop\n      rules:\n"
                           "        - {action: allow, proto: udp, src: \"2001:db8::1/128\", "
                           "dst_port: 53}\n"
                           "        - {action: allow, src: \"2001:db8::1/128\", dst: "
                           "\"2001:db8::80\"}\n"
                           "edges:\n  - {from: input, to: fw}\n  - {from: fw, to: output}\n",
                           out),
                    0);
    CU_ASSERT_EQUAL(it_file_has(rep, "\"packets_out\": 200,"), 2); /* 160 + 20 DNS + 20 echo */
    CU_ASSERT_EQUAL(it_file_has(rep, "\"denied\": 224"), 1); /* the scanner's and the trojan's */
    tu_rmrf(d);
    free(d);
}

static void test_ipv6_detectors(void)
{
    char *d = tu_mkdtemp("dec");
    char out[4200], al[4300];
    snprintf(out, sizeof(out), "%s/out", d);
    snprintf(al, sizeof(al), "%s/alerts.json", out);
    CU_ASSERT_EQUAL(run_v6(d,
                           "nfs:\n  - name: scan\n    type: portscan\n    flowspace: host-pair\n"
                           "  - name: trojan\n    type: trojan\n    flowspace: src\n"
                           "    config:\n      steps:\n        - {kind: ssh}\n"
                           "        - {kind: download, extensions: [exe]}\n"
                           "        - {kind: irc}\n"
                           "edges:\n  - {from: input, to: scan}\n  - {from: scan, to: trojan}\n"
                           "  - {from: trojan, to: output}\n",
                           out),
                    0);
    CU_ASSERT_EQUAL(it_file_has(al, "\"type\": \"scan.detected\", \"host\": \"2001:db8::bad\""), 1);
    CU_ASSERT_EQUAL(it_file_has(al, "\"type\": \"trojan.detected\", \"host\": \"2001:db8::66\""),
                    1);
    CU_ASSERT_EQUAL(it_file_has(al, "2001:db8::1\""), 0); /* the HTTP client is no scanner */
    tu_rmrf(d);
    free(d);
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "tags: none, 802.1Q, QinQ (0x88a8, 0x9100); a third is not skipped", test_tags);
    CU_add_test(s, "IPv4 options, fragments, Ethernet padding", test_ipv4_options_and_fragments);
    CU_add_test(s, "IPv6 extension headers and fragments, behind QinQ",
                test_ipv6_extension_headers);
    CU_add_test(s, "every truncation of a frame stays inside it", test_truncated_everywhere);
    CU_add_test(s, "firewall chain: tagged and QinQ copies give the untagged output",
                test_tagged_firewall);
    CU_add_test(s, "nat chain: tagged and QinQ copies give the untagged output", test_tagged_nat);
    CU_add_test(s, "portscan chain: tagged and QinQ copies give the untagged output",
                test_tagged_portscan);
    CU_add_test(s, "trojan chain: tagged and QinQ copies give the untagged output",
                test_tagged_trojan);
    CU_add_test(s, "lb chain: tagged and QinQ copies give the untagged output", test_tagged_lb);
    CU_add_test(s, "full chain: tagged and QinQ copies give the untagged output", test_tagged_full);
    CU_add_test(s, "IPv6 TCP, UDP and ICMPv6 with extension headers through the firewall",
                test_ipv6_firewall);
    CU_add_test(s, "IPv6 scan and trojan steps with extension headers are detected",
                test_ipv6_detectors);
}

int main(void)
{
    return tu_main("decode", add);
}
