/*
 * test_flow.c - the flow key parser and hash that the log's flow index and
 * `replay --flow` rely on.
 */
#include <arpa/inet.h>
#include <string.h>

#include "rw_flow.h"
#include "testutil.h"

/* Ethernet + IPv4 + TCP header with the given endpoints. */
static size_t make_v4(uint8_t *p, const char *src, uint16_t sp, const char *dst, uint16_t dp)
{
    memset(p, 0, 64);
    p[12] = 0x08;
    p[14] = 0x45;
    p[23] = 6;
    inet_pton(AF_INET, src, p + 26);
    inet_pton(AF_INET, dst, p + 30);
    p[34] = (uint8_t)(sp >> 8), p[35] = (uint8_t)sp;
    p[36] = (uint8_t)(dp >> 8), p[37] = (uint8_t)dp;
    return 54;
}

static void test_v4_both_directions(void)
{
    uint8_t a[64], b[64];
    struct rw_flow fa, fb, q;
    make_v4(a, "10.0.0.1", 1234, "10.0.0.2", 80);
    make_v4(b, "10.0.0.2", 80, "10.0.0.1", 1234);
    CU_ASSERT_TRUE(rw_flow_parse(a, 54, &fa));
    CU_ASSERT_TRUE(rw_flow_parse(b, 54, &fb));
    CU_ASSERT_EQUAL(fa.sport, 1234);
    CU_ASSERT_EQUAL(fa.dport, 80);
    CU_ASSERT_EQUAL(rw_flow_hash(&fa), rw_flow_hash(&fb));
    CU_ASSERT_TRUE(rw_flow_match(&fa, &fb));
    struct rw_err e;
    CU_ASSERT_EQUAL(rw_flow_from_string("tcp 10.0.0.2:80 10.0.0.1:1234", &q, &e), 0);
    CU_ASSERT_TRUE(rw_flow_match(&q, &fa));
    CU_ASSERT_EQUAL(rw_flow_hash(&q), rw_flow_hash(&fa));
    make_v4(b, "10.0.0.2", 81, "10.0.0.1", 1234);
    CU_ASSERT_TRUE(rw_flow_parse(b, 54, &fb));
    CU_ASSERT_FALSE(rw_flow_match(&fa, &fb));
}

/* Known answers, computed outside rewind (lookup3's hashword over the key as
 * big-endian words, per docs/log-format.md). The log's flow index stores these
 * values, so every build (Debug, Release, any compiler or host) must give exactly
 * them: a Release build that drops the port stores (issue 10) fails here. */
static uint32_t hash_of(const char *spec)
{
    struct rw_flow f;
    struct rw_err e;
    CU_ASSERT_EQUAL_FATAL(rw_flow_from_string(spec, &f, &e), 0);
    return rw_flow_hash(&f);
}

static void test_flow_hash_known_answers(void)
{
    CU_ASSERT_EQUAL(hash_of("tcp 10.0.0.1:1234 10.0.0.2:80"), 0x71b1f04du);
    CU_ASSERT_EQUAL(hash_of("tcp 10.0.0.2:80 10.0.0.1:1234"), 0x71b1f04du);
    CU_ASSERT_EQUAL(hash_of("tcp 10.0.0.1:1235 10.0.0.2:80"), 0x957a8bebu);
    CU_ASSERT_EQUAL(hash_of("udp 10.0.0.1:1234 10.0.0.2:80"), 0xfbc73bbfu);
    CU_ASSERT_EQUAL(hash_of("udp [2001:db8::1]:5000 [2001:db8::2]:53"), 0x3a262ce7u);
    CU_ASSERT_EQUAL(hash_of("udp [2001:db8::2]:53 [2001:db8::1]:5000"), 0x3a262ce7u);
    struct rw_flow none;
    memset(&none, 0, sizeof(none)); /* what the parser leaves for a non-IP frame */
    CU_ASSERT_EQUAL(rw_flow_hash(&none), 0x4101ee79u);
}

/* The same through the parser and the flowspaces the splitters partition by. */
static void test_flowspace_known_answers(void)
{
    uint8_t a[64], b[64];
    make_v4(a, "10.0.0.1", 1234, "10.0.0.2", 80);
    make_v4(b, "10.0.0.2", 80, "10.0.0.1", 1234);
    CU_ASSERT_EQUAL(rw_flowspace_hash(a, 54, RW_FS_5TUPLE), 0x71b1f04du);
    CU_ASSERT_EQUAL(rw_flowspace_hash(b, 54, RW_FS_5TUPLE), 0x71b1f04du);
    CU_ASSERT_EQUAL(rw_flowspace_hash(a, 54, RW_FS_HOST_PAIR), 0x31e9611bu);
    CU_ASSERT_EQUAL(rw_flowspace_hash(b, 54, RW_FS_HOST_PAIR), 0x31e9611bu);
    CU_ASSERT_EQUAL(rw_flowspace_hash(a, 54, RW_FS_SRC), 0xd485433eu);
    CU_ASSERT_EQUAL(rw_flowspace_hash(a, 54, RW_FS_DST), 0x0b3b0d68u);
    CU_ASSERT_EQUAL(rw_flowspace_hash(b, 54, RW_FS_DST), 0xd485433eu);
    make_v4(b, "10.0.0.1", 1235, "10.0.0.2", 80); /* same hosts, another connection */
    CU_ASSERT_EQUAL(rw_flowspace_hash(b, 54, RW_FS_5TUPLE), 0x957a8bebu);
    CU_ASSERT_EQUAL(rw_flowspace_hash(b, 54, RW_FS_HOST_PAIR), 0x31e9611bu);
    a[12] = 0x08, a[13] = 0x06; /* ARP: not IP, every flowspace hashes it to 0 */
    CU_ASSERT_EQUAL(rw_flowspace_hash(a, 54, RW_FS_5TUPLE), 0);
    CU_ASSERT_EQUAL(rw_flowspace_hash(a, 54, RW_FS_SRC), 0);
}

static void test_truncated_and_bad_headers(void)
{
    uint8_t a[64];
    struct rw_flow f;
    make_v4(a, "10.0.0.1", 1, "10.0.0.2", 2);
    CU_ASSERT_FALSE(rw_flow_parse(a, 13, &f));
    CU_ASSERT_FALSE(rw_flow_parse(a, 20, &f)); /* IP header cut */
    a[14] = 0x44;                              /* IHL 4: below the minimum */
    CU_ASSERT_FALSE(rw_flow_parse(a, 54, &f));
    a[14] = 0x4f; /* IHL 15 = 60 bytes, more than the frame holds */
    CU_ASSERT_FALSE(rw_flow_parse(a, 54, &f));
    a[14] = 0x45;
    CU_ASSERT_TRUE(rw_flow_parse(a, 36, &f)); /* ports cut: IP-level key */
    CU_ASSERT_EQUAL(f.sport, 0);
    a[12] = 0x08, a[13] = 0x06; /* ARP */
    CU_ASSERT_FALSE(rw_flow_parse(a, 54, &f));
}

static void test_fragment_has_no_ports(void)
{
    uint8_t a[64];
    struct rw_flow f;
    make_v4(a, "10.0.0.1", 1, "10.0.0.2", 2);
    a[20] = 0x00, a[21] = 0x10; /* fragment offset 16 */
    CU_ASSERT_TRUE(rw_flow_parse(a, 54, &f));
    CU_ASSERT_EQUAL(f.sport, 0);
    CU_ASSERT_EQUAL(f.dport, 0);
}

static void test_vlan_and_v6(void)
{
    uint8_t p[96];
    struct rw_flow f, q;
    memset(p, 0, sizeof(p));
    p[12] = 0x81, p[13] = 0x00; /* one VLAN tag */
    p[16] = 0x86, p[17] = 0xdd;
    p[18] = 0x60;
    p[24] = 17; /* next header UDP */
    inet_pton(AF_INET6, "2001:db8::1", p + 26);
    inet_pton(AF_INET6, "2001:db8::2", p + 42);
    p[58] = 0x13, p[59] = 0x88; /* 5000 */
    p[60] = 0x00, p[61] = 0x35; /* 53 */
    CU_ASSERT_TRUE(rw_flow_parse(p, 66, &f));
    CU_ASSERT_EQUAL(f.family, 6);
    CU_ASSERT_EQUAL(f.sport, 5000);
    struct rw_err e;
    CU_ASSERT_EQUAL(rw_flow_from_string("udp [2001:db8::2]:53 [2001:db8::1]:5000", &q, &e), 0);
    CU_ASSERT_TRUE(rw_flow_match(&q, &f));
}

/* Tags do not change a flow (rw_pkt_decode: 0x9100 is walked as the outer tag
 * of QinQ since issue 13), and IPv6 behind AH keeps the key the log's hashes were
 * made with: protocol 51, no ports. */
static void test_tags_and_ah(void)
{
    uint8_t a[64], q[72], p[128];
    struct rw_flow fa, fq;
    make_v4(a, "10.0.0.1", 1234, "10.0.0.2", 80);
    memcpy(q, a, 12);
    q[12] = 0x91, q[13] = 0x00, q[14] = 0x01, q[15] = 0x2c; /* outer 0x9100, VLAN 300 */
    q[16] = 0x81, q[17] = 0x00, q[18] = 0x00, q[19] = 0x64; /* inner 802.1Q, VLAN 100 */
    memcpy(q + 20, a + 12, 42);
    CU_ASSERT_TRUE(rw_flow_parse(a, 54, &fa));
    CU_ASSERT_TRUE(rw_flow_parse(q, 62, &fq));
    CU_ASSERT_EQUAL(rw_flow_hash(&fq), 0x71b1f04du);
    CU_ASSERT_TRUE(rw_flow_match(&fa, &fq));
    memset(p, 0, sizeof(p));
    p[12] = 0x86, p[13] = 0xdd, p[14] = 0x60;
    p[20] = 51; /* AH, 16 bytes, then UDP */
    inet_pton(AF_INET6, "2001:db8::1", p + 22);
    inet_pton(AF_INET6, "2001:db8::2", p + 38);
    p[54] = 17, p[55] = 2;
    p[70] = 0x13, p[71] = 0x88, p[72] = 0x00, p[73] = 0x35;
    CU_ASSERT_TRUE(rw_flow_parse(p, 78, &fq));
    CU_ASSERT_TRUE(fq.family == 6 && fq.proto == 51 && fq.sport == 0 && fq.dport == 0);
}

static void test_flow_string_errors(void)
{
    struct rw_flow q;
    struct rw_err e;
    CU_ASSERT_NOT_EQUAL(rw_flow_from_string("tcp 10.0.0.1:80", &q, &e), 0);
    CU_ASSERT_NOT_EQUAL(rw_flow_from_string("tcp 10.0.0.1 10.0.0.2", &q, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "needs both ports"));
    CU_ASSERT_NOT_EQUAL(rw_flow_from_string("udp 10.0.0.1:53 10.0.0.2:0", &q, &e), 0);
    CU_ASSERT_EQUAL(rw_flow_from_string("icmp 10.0.0.1 10.0.0.2", &q, &e), 0);
    CU_ASSERT_NOT_EQUAL(rw_flow_from_string("xyz 10.0.0.1:1 10.0.0.2:2", &q, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "unknown protocol"));
    CU_ASSERT_EQUAL(e.code, RW_EINVAL);
    CU_ASSERT_NOT_EQUAL(rw_flow_from_string("tcp 10.0.0.1:99999 10.0.0.2:2", &q, &e), 0);
    CU_ASSERT_NOT_EQUAL(rw_flow_from_string("tcp 10.0.0.1:1 [::1]:2", &q, &e), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "mix"));
}

static void add(CU_pSuite s)
{
    CU_add_test(s, "IPv4 flow matches and hashes alike in both directions",
                test_v4_both_directions);
    CU_add_test(s, "the flow hash gives its known answers on every build",
                test_flow_hash_known_answers);
    CU_add_test(s, "flowspace hashes give their known answers on every build",
                test_flowspace_known_answers);
    CU_add_test(s, "truncated and malformed headers are refused, not read past",
                test_truncated_and_bad_headers);
    CU_add_test(s, "later IPv4 fragments carry no ports", test_fragment_has_no_ports);
    CU_add_test(s, "VLAN-tagged IPv6 UDP parses and matches a flow string", test_vlan_and_v6);
    CU_add_test(s, "QinQ tags leave the flow alone; IPv6 behind AH keys on protocol 51",
                test_tags_and_ah);
    CU_add_test(s, "bad flow strings are refused with a reason", test_flow_string_errors);
}

int main(void)
{
    return tu_main("flow", add);
}
