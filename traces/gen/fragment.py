#!/usr/bin/python3
"""fragment.py - makes rewind's IP fragment traces with scapy (python3-scapy).

Why: an IDS that inspects fragments one by one is blind to a fragmented scan
(`nmap -f`), and a firewall or NAT that drops them breaks large UDP answers.
The root reassembles before it splits (docs/design-notes.md, "IP fragments");
these traces test that. They are derived from the real capture
nmap_sT_top1000.pcap where they can be, and otherwise built from the lab's
addresses (client 10.200.0.1 / fd00:c8::1, server 10.200.0.2 / fd00:c8::2).

  frag_nmap_sT.pcap  nmap_sT_top1000.pcap with every SYN probe of the scanner
                     cut into 8-byte IP fragments and DF cleared, as `nmap -f` sends
  frag_udp.pcap      a DNS-like exchange over IPv4 and over IPv6: a small query,
                     then a 3,000-byte answer in 3 fragments (IPv6: fragment
                     extension header, fragments sent last first), larger than a
                     standard 1,500-byte MTU as a large DNS answer is
  frag_bad.pcap      overlapping, repeated, incomplete, timed-out and malformed
                     fragments around one good fragmented datagram (counts in
                     traces/README.md)

usage: fragment.py IN_DIR OUT_DIR   (IN_DIR holds nmap_sT_top1000.pcap)
"""
import sys

from scapy.all import (IP, UDP, TCP, Ether, IPv6, IPv6ExtHdrFragment, Raw,
                       fragment, fragment6, rdpcap, wrpcap)

CLI_MAC, SRV_MAC = "02:00:0a:c8:00:01", "02:00:0a:c8:00:02"
CLI4, SRV4 = "10.200.0.1", "10.200.0.2"
CLI6, SRV6 = "fd00:c8::1", "fd00:c8::2"
T0 = 1700000000.0


def eth(src_mac, dst_mac, pkt, t):
    p = Ether(src=src_mac, dst=dst_mac) / pkt
    p.time = t
    return p


def frag_scan(src):
    out, ids = [], set()
    for p in rdpcap(src):
        ip = p.getlayer(IP)
        tcp = p.getlayer(TCP)
        if ip is None or tcp is None or ip.src != CLI4 or (int(tcp.flags) & 0x12) != 0x02:
            out.append(p)
            continue
        whole = ip.copy()
        # The kernel's connect() SYNs carry DF and repeat IP ids; nmap's raw
        # probes carry no DF and an id of their own per probe.
        whole.flags = 0
        whole.id = 0x1000 + len(ids)
        ids.add(whole.id)
        del whole.chksum
        for f in fragment(IP(bytes(whole)), fragsize=8):
            out.append(eth(p[Ether].src, p[Ether].dst, f, p.time))
    return out


def frag_udp():
    t, out = T0, []
    answer = bytes((i * 7) & 0xff for i in range(3000))
    q4 = IP(src=CLI4, dst=SRV4, id=0x4001) / UDP(sport=40000, dport=53) / Raw(b"q" * 40)
    a4 = IP(src=SRV4, dst=CLI4, id=0x1234) / UDP(sport=53, dport=40000) / Raw(answer)
    out.append(eth(CLI_MAC, SRV_MAC, q4, t))
    v4 = fragment(IP(bytes(a4)), fragsize=1008)
    assert len(v4) == 3
    for i, f in enumerate(v4):
        out.append(eth(SRV_MAC, CLI_MAC, f, t + 0.001 * (i + 1)))
    q6 = IPv6(src=CLI6, dst=SRV6) / UDP(sport=40001, dport=53) / Raw(b"q" * 40)
    a6 = IPv6(src=SRV6, dst=CLI6) / IPv6ExtHdrFragment(id=0xabcd) / UDP(sport=53, dport=40001) / Raw(answer)
    out.append(eth(CLI_MAC, SRV_MAC, q6, t + 0.01))
    frags = fragment6(IPv6(bytes(a6)), 1100)
    assert len(frags) == 3
    for i, f in enumerate(reversed(frags)):
        out.append(eth(SRV_MAC, CLI_MAC, f, t + 0.011 + 0.001 * i))
    return out


def piece(ident, ofs8, more, data, t):
    ip = IP(src=CLI4, dst=SRV4, id=ident, proto=17, frag=ofs8, flags="MF" if more else 0)
    return eth(CLI_MAC, SRV_MAC, ip / Raw(data), t)


def frag_bad():
    t, out = T0, []
    udp = bytes(UDP(sport=5000, dport=5001, len=32) / Raw(b"x" * 24))
    udp = udp[:6] + b"\0\0" + udp[8:]  # no checksum: the pieces below disagree anyway
    # overlap: [0,16) [8,24) [24,32): 40 bytes claimed for 32 -> 3 dropped
    out += [piece(100, 0, 1, udp[:16], t), piece(100, 1, 1, udp[8:24], t + .001),
            piece(100, 3, 0, udp[24:], t + .002)]
    # the first piece twice -> 2 dropped; its last piece then waits alone (timeout)
    out += [piece(101, 0, 1, udp[:16], t + .003), piece(101, 0, 1, udp[:16], t + .004),
            piece(101, 2, 0, udp[16:], t + .005)]
    # incomplete: the first piece only (timeout at the end of the input)
    out += [piece(102, 0, 1, udp[:16], t + .006)]
    # a middle piece that is not a multiple of 8 bytes -> invalid
    out += [piece(104, 1, 1, udp[8:20], t + .007)]
    # one good datagram in two pieces -> reassembled
    good = bytes(UDP(sport=5000, dport=5002) / Raw(b"g" * 24))
    out += [piece(105, 0, 1, good[:16], t + .008), piece(105, 2, 0, good[16:], t + .009)]
    # timed out: 40 s between its pieces (the root's timeout is 30 s) -> the
    # first expires; the second waits alone until the end
    out += [piece(103, 0, 1, udp[:16], t + 1), piece(103, 2, 0, udp[16:], t + 41)]
    whole = IP(src=CLI4, dst=SRV4, id=106) / UDP(sport=5000, dport=5003) / Raw(b"w" * 8)
    out.append(eth(CLI_MAC, SRV_MAC, whole, t + 42))
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    wrpcap(f"{dst}/frag_nmap_sT.pcap", frag_scan(f"{src}/nmap_sT_top1000.pcap"))
    wrpcap(f"{dst}/frag_udp.pcap", frag_udp())
    wrpcap(f"{dst}/frag_bad.pcap", frag_bad())


if __name__ == "__main__":
    main()
