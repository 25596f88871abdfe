#!/usr/bin/python3
"""jumbo.py - makes rewind's jumbo-frame traces with scapy (python3-scapy).

Why: racks run 9,000-byte MTUs, and a chain that carried only 2 KiB frames
dropped bigger ones without a word (issue 12). These are real packets of
irc.pcap with their payloads grown (the payload repeated), lengths and
checksums recomputed.

  jumbo.pcap     data packets of irc.pcap grown to frames of 1,514, 4,000, 9,014
                 and 9,216 bytes, a 9,216-byte one behind an 802.1Q tag, then two
                 larger than the default max_frame (9,217 and 16,000 bytes)
  jumbo_lb.pcap  the first IRC connection of irc.pcap moved to the load
                 balancer's VIP (docs/chains/lb.yaml: 10.151.119.2:10050), its
                 client data packets grown to 9,000-byte frames

usage: jumbo.py IN_DIR OUT_DIR   (IN_DIR holds irc.pcap)
"""
import sys

from scapy.all import IP, TCP, Dot1Q, Ether, Raw, rdpcap, wrpcap


def grow(pkt, frame_len):
    """pkt with its TCP payload repeated so that the frame is frame_len bytes."""
    p = pkt.copy()
    data = bytes(p[Raw].load)
    need = frame_len - (len(p) - len(data))
    p[Raw].load = (data * (need // len(data) + 1))[:need]
    del p[IP].len, p[IP].chksum, p[TCP].chksum
    p = Ether(bytes(p))
    p.time = pkt.time
    assert len(p) == frame_len, (len(p), frame_len)
    return p


def tagged(pkt, vid):
    e = pkt[Ether]
    t = Ether(src=e.src, dst=e.dst) / Dot1Q(vlan=vid) / e.payload.copy()
    t.time = pkt.time
    return t


def main(src, dst):
    irc = rdpcap(src + "/irc.pcap")
    data = [p for p in irc if TCP in p and Raw in p and len(p[Raw].load) >= 8]
    sizes = [1514, 4000, 9014, 9216]
    out = [grow(data[i], n) for i, n in enumerate(sizes)]
    v = tagged(data[4], 100)
    out.append(grow(v, 9216))
    out += [grow(data[5], 9217), grow(data[6], 16000)]
    wrpcap(dst + "/jumbo.pcap", out)

    first = data[0][TCP].sport
    conn = [p for p in irc if TCP in p and first in (p[TCP].sport, p[TCP].dport)]
    lb = []
    for p in conn:
        q = p.copy()
        if q[TCP].dport == 6667:
            q[IP].dst, q[TCP].dport = "10.151.119.2", 10050
        else:
            q[IP].src, q[TCP].sport = "10.151.119.2", 10050
        del q[IP].chksum, q[TCP].chksum
        q = Ether(bytes(q))
        q.time = p.time
        if Raw in q and q[TCP].dport == 10050:
            q = grow(q, 9000)
        lb.append(q)
    wrpcap(dst + "/jumbo_lb.pcap", lb)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
