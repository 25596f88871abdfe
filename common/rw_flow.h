/*
 * rw_flow.h - the flow key of a packet: protocol and both endpoints.
 *
 * The logger indexes blocks by flow hash, the replay tool matches `--flow`, and
 * the splitters (later) partition by flowspace; all of them must agree on what a
 * packet's flow is, so the bounds-checked parser lives here. Hashes are symmetric
 * (both directions of a connection hash alike) because an analyst asking for a
 * flow wants both halves of the conversation.
 */
#ifndef RW_FLOW_H
#define RW_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rw_common.h"

struct rw_flow {
    uint8_t src[16]; /* IPv4 uses the first 4 bytes */
    uint8_t dst[16];
    uint16_t sport; /* host order; 0 for protocols without ports, later fragments */
    uint16_t dport;
    uint8_t family; /* 4 or 6; 0 when the packet is not IP */
    uint8_t proto;  /* IPPROTO_* */
};

/* The flow of an Ethernet frame (decoded by rw_pkt_decode: VLAN tags, IPv6
 * extension headers). Returns true and fills f for IPv4/IPv6 packets whose IP
 * header is complete; false otherwise. Never reads past len. */
bool rw_flow_parse(const uint8_t *frame, size_t len, struct rw_flow *f);

/* The flow of a packet rw_pkt_decode has already decoded (it returned true), for
 * callers that need the decoded headers as well as the flow. */
struct rw_pkt;
void rw_flow_of_pkt(const struct rw_pkt *p, struct rw_flow *f);

/* Direction-independent hash of a flow: jhash over the ordered endpoints, ports,
 * family and protocol as bytes (docs/log-format.md defines it exactly). The log's
 * flow index stores these hashes, so the value must never depend on the build or
 * host, and any change to it is a new RW_FLOW_HASH_VERSION, which every log
 * records: a reader refuses a flow query on a log whose version it does not know. */
#define RW_FLOW_HASH_VERSION 2
uint32_t rw_flow_hash(const struct rw_flow *f);

/* True when a and b are the same flow in either direction. */
bool rw_flow_match(const struct rw_flow *a, const struct rw_flow *b);

/* Flowspaces: what part of a packet decides which instance of an NF gets it. */
enum rw_flowspace {
    RW_FS_5TUPLE,    /* the connection (both directions alike) */
    RW_FS_SRC,       /* the source host */
    RW_FS_DST,       /* the destination host */
    RW_FS_HOST_PAIR, /* the two hosts, either direction */
};

/* Hash of a packet's flowspace key; non-IP packets hash to 0. */
uint32_t rw_flowspace_hash(const uint8_t *frame, size_t len, enum rw_flowspace fs);

/* Parses "PROTO SRC:PORT DST:PORT" (tcp|udp|icmp|NUMBER; IPv6 as [ADDR]:PORT).
 * RW_EINVAL with the reason in e (f is then zeroed). */
int rw_flow_from_string(const char *s, struct rw_flow *f, struct rw_err *e);

#endif
