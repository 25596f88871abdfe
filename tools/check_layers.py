#!/usr/bin/env python3
"""check_layers.py - the parts of rewind and the order they may depend in.

Each folder is one part; a part may include the public header of a part on a
lower layer (or its own headers), never one above or beside it on the same
layer. So the dependency graph has no cycle, and no part below the coordinator
includes a coordinator header. Run by ctest (test `layers`); prints each
offending include as FILE:LINE and exits 1.
"""
import os
import re
import sys

# Lowest first. Parts on one layer do not include each other.
LAYERS = [
    ["common"],
    ["chain", "link", "logger", "store"],
    ["nf", "root", "replay", "sink"],
    ["nfs"],
    ["nfworker", "verify"],
    ["failover"],
    ["cli"],
]
PUBLIC = {
    "common": ["rw_common.h", "rw_error.h", "rw_eal.h", "rw_flow.h", "rw_lat.h", "rw_mbuf.h", "rw_pkt.h"],
    "chain": ["chain.h"], "link": ["link.h"], "logger": ["log.h"], "store": ["store.h"],
    "nf": ["nf.h"], "root": ["root.h"], "replay": ["replay.h"], "sink": ["sink.h"],
    "nfs": ["nfs.h"], "nfworker": ["nfworker.h"], "verify": ["verify.h"],
    "failover": ["failover.h"], "cli": [],
}


def main(src):
    layer = {p: i for i, ps in enumerate(LAYERS) for p in ps}
    owner = {h: p for p, hs in PUBLIC.items() for h in hs}
    bad = 0
    for part in layer:
        for root, _, files in os.walk(os.path.join(src, part)):
            for f in sorted(files):
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(root, f)
                own = set(os.listdir(os.path.join(src, part)))
                with open(path, encoding="utf-8") as fh:
                    for n, line in enumerate(fh, 1):
                        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                        if not m or m.group(1) in own:
                            continue
                        h = m.group(1)
                        to = owner.get(h)
                        if to is None:
                            if os.path.exists(os.path.join(root, h)) or h.endswith("_list.h") or h.endswith("_lua.h"):
                                continue  # beside it, or generated for it
                            print(f"{os.path.relpath(path, src)}:{n}: {h} is no part's public header")
                            bad += 1
                        elif to != part and layer[to] >= layer[part]:
                            print(f"{os.path.relpath(path, src)}:{n}: {part} (layer {layer[part]}) "
                                  f"includes {h} of {to} (layer {layer[to]})")
                            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
