#!/usr/bin/env bash
# Installs the Debian packages rewind needs when any is missing, then fetches the
# pathspider LAN trace used by the larger tests. Idempotent: on a machine that has
# everything it only checks, so `make test` stays fast after the first run.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config
      libdpdk-dev liblmdb-dev lmdb-utils liblz4-dev libuv1-dev libhiredis-dev
      libcunit1-dev libpcap-dev libyaml-dev zlib1g-dev libisal-dev libjson-c-dev redis-server redis-tools tcpdump procps
      iproute2 util-linux python3)

# `setup.sh fuzz` also brings clang and its libFuzzer runtime (make fuzz).
if [ "${1:-}" = fuzz ]; then
    PKGS+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# pathspider ships one hour of a real LAN (tests/data/real.pcap). We take the
# trace out of the .deb without installing the package.
ext=traces/external
if [ ! -s "$ext/real.pcap" ]; then
    mkdir -p "$ext"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if (cd "$tmp" && apt-get download pathspider >/dev/null 2>&1); then
        dpkg -x "$tmp"/pathspider_*.deb "$tmp/x"
        src=$(find "$tmp/x" -name real.pcap -print -quit)
        if [ -n "$src" ]; then
            cp "$src" "$ext/real.pcap"
            echo "setup: pathspider real.pcap -> $ext/real.pcap"
        fi
    fi
    [ -s "$ext/real.pcap" ] || echo "setup: warning: could not fetch pathspider's real.pcap; tests that need it will say so and fail" >&2
fi
