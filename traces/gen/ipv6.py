#!/usr/bin/python3
"""ipv6.py - makes rewind's IPv6 trace with extension headers, with scapy
(python3-scapy).

Why: rack traffic is IPv6 too, with hop-by-hop, routing and destination-option
headers between the IP header and TCP/UDP/ICMPv6. An NF that reads the L4
header at a fixed offset, or only for IPv4, misjudges it: a firewall that allowed
IPv6 HTTP never saw the SYN (issue 13: 160 packets in, 0 out). Every NF that
claims IPv6 is tested on this trace (tests/test_decode.c).

  ipv6_ext.pcap  over 2001:db8::/64, server 2001:db8::80:
    - 20 HTTP connections from 2001:db8::1 (8 packets each: handshake, GET,
      answer, FIN both ways): connections 0, 3, 6, ... carry a hop-by-hop header,
      1, 4, 7, ... hop-by-hop + routing (type 0, no segments left) + destination
      options, the others none
    - 10 DNS queries and answers (UDP 53) from 2001:db8::1 with a destination
      options header
    - 10 ICMPv6 echo requests and replies between 2001:db8::1 and the server,
      with a hop-by-hop header
    - a SYN scan of 100 ports of the server from 2001:db8::bad, each answered
      by RST+ACK, every other probe with a hop-by-hop header
    - a trojan's steps from 2001:db8::66 to the server: an SSH banner (22),
      GET /update.exe (80), IRC JOIN (6667), each in its own connection

usage: ipv6.py OUT_DIR
"""
import sys

from scapy.all import (ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, TCP, UDP, Ether, Raw,
                       wrpcap)

CLI_MAC, SRV_MAC = "02:00:00:00:00:01", "02:00:00:00:00:80"
CLI, SRV, SCANNER, TROJAN = "2001:db8::1", "2001:db8::80", "2001:db8::bad", "2001:db8::66"
T0 = 1700000000.0


class Clock:
    def __init__(self):
        self.t = T0

    def next(self, dt=0.001):
        self.t += dt
        return self.t


def eth(pkt, t, to_server=True):
    p = (Ether(src=CLI_MAC, dst=SRV_MAC) if to_server else Ether(src=SRV_MAC, dst=CLI_MAC)) / pkt
    p.time = t
    return p


def ip6(src, dst, ext):
    h = IPv6(src=src, dst=dst)
    if ext == "hbh":
        return h / IPv6ExtHdrHopByHop()
    if ext == "all":
        return h / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(type=0, segleft=0, addresses=[]) / \
            IPv6ExtHdrDestOpt()
    if ext == "dst":
        return h / IPv6ExtHdrDestOpt()
    return h


def tcp_conn(clk, cli, sport, dport, req, resp, ext):
    """A whole TCP connection: handshake, one request, one answer, FIN both ways."""
    c, s = 1000, 5000
    out = []
    def up(flags, seq, ack, data=b""):
        p = ip6(cli, SRV, ext) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        out.append(eth(p / Raw(data) if data else p, clk.next(), True))
    def down(flags, seq, ack, data=b""):
        p = ip6(SRV, cli, ext) / TCP(sport=dport, dport=sport, flags=flags, seq=seq, ack=ack)
        out.append(eth(p / Raw(data) if data else p, clk.next(), False))
    up("S", c, 0)
    down("SA", s, c + 1)
    up("A", c + 1, s + 1)
    up("PA", c + 1, s + 1, req)
    down("PA", s + 1, c + 1 + len(req), resp)
    up("FA", c + 1 + len(req), s + 1 + len(resp))
    down("FA", s + 1 + len(resp), c + 2 + len(req))
    up("A", c + 2 + len(req), s + 2 + len(resp))
    return out


def main(out_dir):
    clk = Clock()
    pkts = []
    exts = ["hbh", "all", None]
    for i in range(20):
        pkts += tcp_conn(clk, CLI, 40000 + i, 80, b"GET /index.html HTTP/1.1\r\nHost: s\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", exts[i % 3])
    for i in range(10):
        q = ip6(CLI, SRV, "dst") / UDP(sport=50000 + i, dport=53) / Raw(b"\x12\x34" + bytes(10))
        a = ip6(SRV, CLI, "dst") / UDP(sport=53, dport=50000 + i) / Raw(b"\x12\x34\x81\x80" + bytes(20))
        pkts += [eth(q, clk.next()), eth(a, clk.next(), False)]
    for i in range(10):
        q = ip6(CLI, SRV, "hbh") / ICMPv6EchoRequest(id=7, seq=i)
        a = ip6(SRV, CLI, "hbh") / ICMPv6EchoReply(id=7, seq=i)
        pkts += [eth(q, clk.next()), eth(a, clk.next(), False)]
    for port in range(1, 101):
        ext = "hbh" if port % 2 else None
        syn = ip6(SCANNER, SRV, ext) / TCP(sport=61000, dport=port, flags="S", seq=77)
        rst = ip6(SRV, SCANNER, ext) / TCP(sport=port, dport=61000, flags="RA", seq=0, ack=78)
        pkts += [eth(syn, clk.next()), eth(rst, clk.next(), False)]
    clk.next(1.0)
    pkts += tcp_conn(clk, TROJAN, 41000, 22, b"SSH-2.0-OpenSSH_8.4\r\n",
                     b"SSH-2.0-OpenSSH_9.2\r\n", "hbh")
    pkts += tcp_conn(clk, TROJAN, 41001, 80, b"GET /update.exe HTTP/1.1\r\nHost: s\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nMZ", "all")
    pkts += tcp_conn(clk, TROJAN, 41002, 6667, b"NICK bot\r\nJOIN #cc\r\n",
                     b":s 001 bot :hi\r\n", None)
    wrpcap(out_dir + "/ipv6_ext.pcap", pkts)
    print(len(pkts), "packets")


if __name__ == "__main__":
    main(sys.argv[1])
