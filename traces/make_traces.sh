#!/usr/bin/env bash
# make_traces.sh: makes rewind's packet captures with real tools.
#
# Why: rewind's network functions must be tested on traffic that real stacks and
# real programs produce (handshakes, retransmits, FTP data channels, IRC chatter),
# not on hand-written packets. This script makes such traffic where it harms no
# one and can be repeated: two network namespaces it creates itself (client
# 10.200.0.1, server 10.200.0.2) joined by a veth pair with offloads off, so every
# frame is <= 1514 bytes with valid checksums. Servers run in the foreground with
# configs in a temp dir (templates in traces/gen/); tcpdump writes Ethernet pcap
# with microsecond timestamps. No system service or /etc config is touched, and
# no packet goes to any other address. Everything is torn down on exit.
# The IP fragment traces (frag_*.pcap) are derived from these by gen/fragment.py,
# the jumbo ones (jumbo*.pcap) by gen/jumbo.py
# (scapy, no network): see README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GEN=$HERE/gen
ALL=(nmap_sS nmap_sT http ssh ftp irc trojan)
CLI_IP=10.200.0.1
SRV_IP=10.200.0.2
CLI_NS=rwtr-cli-$$
SRV_NS=rwtr-srv-$$
CLI_IF=veth-cli
SRV_IF=veth-srv
PATH=$PATH:/usr/sbin:/sbin
unset http_proxy https_proxy ftp_proxy all_proxy no_proxy \
      HTTP_PROXY HTTPS_PROXY FTP_PROXY ALL_PROXY NO_PROXY SSH_AUTH_SOCK

OUT=""
ONLY=()
INSTALL=0
RUN=""          # temp dir with configs, keys, served files, logs
PIDS=()         # daemons started for the current trace
TCPDUMP_PID=""
SUMMARY=()

usage() {
    cat <<EOF
usage: $(basename "$0") [--only NAME[,NAME...]] [--install] [OUTDIR]

Makes packet captures with real tools in two network namespaces it creates
(client $CLI_IP, server $SRV_IP, veth pair, offloads off). Needs root.
OUTDIR defaults to traces/out. Traces (NAME.pcap):
  nmap_sS  nmap SYN scan of the top 1000 ports (sshd and nginx listening)
  nmap_sT  nmap connect scan of the top 1000 ports
  http     curl fetching .html, .zip and .exe files from nginx
  ssh      ssh running uname with a key made for the run, then scp -O of 64 KiB
  ftp      anonymous passive RETR against vsftpd: curl EPSV, curl PASV, tnftp
  irc      two clients joining a channel on ngircd and talking
  trojan   one client: ssh, HTTP .exe .zip .html, FTP RETR, IRC JOIN, in that order

  --only LIST  make only these traces (comma-separated names from above)
  --install    apt-get install the missing tools (nmap, nginx-light or nginx,
               openssh-server, openssh-client, vsftpd, ngircd, curl, tnftp,
               tcpdump, ethtool, iproute2). On a host running systemd Debian starts
               the newly installed daemons; this script never uses them.
  -h, --help   this text
EOF
}

log() { printf 'make_traces: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            -h|--help) usage; exit 0 ;;
            --install) INSTALL=1 ;;
            --only) [ $# -ge 2 ] || die "--only needs a list"; IFS=, read -ra ONLY <<<"$2"; shift ;;
            --only=*) IFS=, read -ra ONLY <<<"${1#--only=}" ;;
            -*) die "unknown option $1 (see --help)" ;;
            *) [ -z "$OUT" ] || die "one output directory only"; OUT=$1 ;;
        esac
        shift
    done
    [ ${#ONLY[@]} -gt 0 ] || ONLY=("${ALL[@]}")
    local n
    for n in "${ONLY[@]}"; do
        [[ " ${ALL[*]} " == *" $n "* ]] || die "unknown trace '$n' (known: ${ALL[*]})"
    done
}

# --- tools -----------------------------------------------------------------

# Commands a trace needs; "a|b" means either will do.
tools_for() {
    case $1 in
        nmap_*) echo "nmap sshd ssh-keygen nginx" ;;
        http) echo "nginx curl" ;;
        ssh) echo "sshd ssh scp ssh-keygen" ;;
        ftp) echo "vsftpd curl tnftp|ftp" ;;
        irc) echo "ngircd timeout" ;;
        trojan) echo "sshd ssh ssh-keygen nginx curl vsftpd ngircd timeout" ;;
    esac
}

pkg_for() {
    case $1 in
        nginx) apt-cache show nginx-light >/dev/null 2>&1 && echo nginx-light || echo nginx ;;
        sshd) echo openssh-server ;;
        ssh|scp|ssh-keygen) echo openssh-client ;;
        tnftp\|ftp) echo tnftp ;;
        ip) echo iproute2 ;;
        timeout) echo coreutils ;;
        *) echo "$1" ;;
    esac
}

have() {
    local alt
    for alt in ${1//|/ }; do command -v "$alt" >/dev/null 2>&1 && return 0; done
    return 1
}

missing_tools() {
    local t n
    local -A seen=()
    for n in ip tcpdump ethtool $(for t in "${ONLY[@]}"; do tools_for "$t"; done); do
        [ -n "${seen[$n]:-}" ] && continue
        seen[$n]=1
        have "$n" || echo "$n"
    done
}

check_tools() {
    local missing pkgs=() m
    mapfile -t missing < <(missing_tools)
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$INSTALL" -eq 1 ] || die "missing tools: ${missing[*]} (run with --install, or apt-get install them)"
    apt-get update -qq
    for m in "${missing[@]}"; do pkgs+=("$(pkg_for "$m")"); done
    log "installing ${pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    mapfile -t missing < <(missing_tools)
    [ ${#missing[@]} -eq 0 ] || die "still missing after install: ${missing[*]}"
}

# --- namespaces --------------------------------------------------------------

cli() { ip netns exec "$CLI_NS" "$@"; }
srv() { ip netns exec "$SRV_NS" "$@"; }

offloads_off() {
    local ns=$1 dev=$2 f
    for f in tx rx sg tso gso gro lro ufo tx-checksumming rx-checksumming \
             tx-tcp-segmentation tx-tcp6-segmentation tx-udp-segmentation rx-gro-list; do
        ip netns exec "$ns" ethtool -K "$dev" "$f" off >/dev/null 2>&1 || true
    done
    if ip netns exec "$ns" ethtool -k "$dev" | grep -Eq \
        '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload): on'; then
        die "could not turn offloads off on $dev in $ns"
    fi
}

end_up() {
    local ns=$1 dev=$2 addr=$3
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
    ip -n "$ns" link set lo up
    offloads_off "$ns" "$dev"
    ip -n "$ns" addr add "$addr/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
}

net_up() {
    ip netns add "$CLI_NS"
    ip netns add "$SRV_NS"
    ip link add "$CLI_IF" netns "$CLI_NS" address 02:00:0a:c8:00:01 \
        type veth peer name "$SRV_IF" netns "$SRV_NS" address 02:00:0a:c8:00:02
    end_up "$CLI_NS" "$CLI_IF" "$CLI_IP"
    end_up "$SRV_NS" "$SRV_IF" "$SRV_IP"
}

# Stops (TERM, then KILL after 3 s) the given pids; they are all ours.
stop_pids() {
    local p i
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for i in $(seq 30); do
        for p in "$@"; do kill -0 "$p" 2>/dev/null && break; p=""; done
        [ -z "${p:-}" ] && break
        sleep 0.1
    done
    kill -KILL "$@" 2>/dev/null || true
}

net_down() {
    local ns pids
    if [ ${#PIDS[@]} -gt 0 ]; then
        stop_pids "${PIDS[@]}"
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
    PIDS=()
    for ns in "$CLI_NS" "$SRV_NS"; do
        [ -e "/run/netns/$ns" ] || continue
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
        stop_pids "${pids[@]}"
        ip netns del "$ns" 2>/dev/null || log "warning: could not delete namespace $ns"
    done
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$TCPDUMP_PID" ] && stop_pids "$TCPDUMP_PID"
    net_down
    [ -n "$RUN" ] && rm -rf "$RUN"
    [ "$rc" -eq 0 ] || log "failed (exit $rc); namespaces and daemons removed"
    exit "$rc"
}

# --- servers -----------------------------------------------------------------

render() { sed "s|@RUN@|$RUN|g" "$GEN/$1" >"$RUN/$1"; }

wait_listen() {
    local port=$1 pid=$2 i
    for i in $(seq 50); do
        srv ss -Hltn "sport = :$port" | grep -q . && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    die "server for port $port did not start; its log: $(tail -5 "$RUN/log/$port.log")"
}

# start_daemon PORT CMD...: runs CMD in the server namespace, waits until it listens.
start_daemon() {
    local port=$1; shift
    ip netns exec "$SRV_NS" "$@" >"$RUN/log/$port.log" 2>&1 &    # $! is the daemon itself
    PIDS+=($!)
    wait_listen "$port" "$!"
}

start_nginx() {
    mkdir -p "$RUN/nginx"
    render nginx.conf
    start_daemon 80 nginx -e "$RUN/nginx/error.log" -p "$RUN/nginx" \
        -c "$RUN/nginx.conf" -g 'daemon off;'
}

start_sshd() {
    render sshd_config
    mkdir -p /run/sshd    # privilege-separation dir sshd insists on (runtime, not config)
    start_daemon 22 "$(command -v sshd)" -D -e -f "$RUN/sshd_config"
}

start_vsftpd() {
    getent passwd ftp >/dev/null || die "vsftpd needs the user ftp (Debian's vsftpd package makes it)"
    render vsftpd.conf
    start_daemon 21 vsftpd "$RUN/vsftpd.conf"
}
start_ngircd() { render ngircd.conf; start_daemon 6667 ngircd -n -f "$RUN/ngircd.conf"; }

# --- files served ------------------------------------------------------------

make_zip() {
    local zip=$1; shift
    if command -v zip >/dev/null; then (cd "$(dirname "$1")" && zip -q -j "$zip" "$@")
    elif command -v python3 >/dev/null; then python3 -m zipfile -c "$zip" "$@"
    else { printf 'PK\003\004'; cat "$@"; } >"$zip"
    fi
}

prepare_files() {
    local w=$RUN/www
    mkdir -p "$RUN/log" "$RUN/ssh" "$RUN/empty" "$RUN/ftp/pub" "$w/files" "$RUN/src"
    {
        printf '<!doctype html>\n<html><head><title>rewind</title></head><body>\n'
        for i in $(seq 120); do printf '<p>line %d of a page served for rewind traces</p>\n' "$i"; done
        printf '</body></html>\n'
    } >"$w/index.html"
    head -c 120000 /dev/urandom >"$RUN/src/tools.bin"
    base64 -w 76 <"$RUN/src/tools.bin" >"$RUN/src/README.txt"
    make_zip "$w/files/tools.zip" "$RUN/src/tools.bin" "$RUN/src/README.txt"
    { printf 'MZ\220\000'; head -c 250000 /dev/urandom; } >"$w/files/setup.exe"
    head -c 200000 /dev/urandom >"$RUN/ftp/pub/data.bin"
    head -c 65536 /dev/urandom >"$RUN/src/upload.bin"
    ssh-keygen -q -t ed25519 -N '' -C rwtr-host -f "$RUN/ssh/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C rwtr-client -f "$RUN/ssh/id_ed25519"
    cp "$RUN/ssh/id_ed25519.pub" "$RUN/ssh/authorized_keys"
    chmod -R a+rX "$RUN"             # nginx and vsftpd serve as nobody
    chmod 600 "$RUN"/ssh/*_ed25519
}

# --- clients (run in the client namespace) -------------------------------------

SSH_OPTS=()
ssh_opts() {
    SSH_OPTS=(-F /dev/null -i "$RUN/ssh/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
              -o UserKnownHostsFile="$RUN/ssh/known_hosts" -o StrictHostKeyChecking=accept-new
              -o ConnectTimeout=5 -o LogLevel=ERROR)
}

ssh_uname() { ssh_opts; cli ssh "${SSH_OPTS[@]}" "root@$SRV_IP" uname -a | sed 's/^/  ssh: /' >&2; }

scp_upload() {
    ssh_opts
    cli scp -O -q "${SSH_OPTS[@]}" "$RUN/src/upload.bin" "root@$SRV_IP:$RUN/log/uploaded.bin"
}

# http_get PATH...: one curl invocation (one keep-alive connection) per call.
http_get() {
    local args=() p
    for p in "$@"; do args+=(-o /dev/null "http://$SRV_IP/$p"); done
    cli curl -sS --fail --noproxy '*' --max-time 10 \
        -w '  HTTP %{http_code} %{size_download} bytes %{url_effective}\n' "${args[@]}" >&2
}

# ftp_get [CURL OPTION...]: anonymous passive RETR of pub/data.bin.
ftp_get() {
    cli curl -sS --fail --noproxy '*' --max-time 10 --ftp-pasv "$@" \
        -w '  FTP %{response_code} %{size_download} bytes\n' \
        -o /dev/null "ftp://$SRV_IP/pub/data.bin" >&2
}

ftp_tnftp() {
    local ftp
    ftp=$(command -v tnftp || command -v ftp)
    printf 'user anonymous rewind@\nbinary\nget pub/data.bin /dev/null\nquit\n' |
        cli timeout 20 "$ftp" -n -p "$SRV_IP" >"$RUN/log/tnftp.log" 2>&1
}

# irc_client NICK CHANNEL LOG [WHEN MESSAGE]...: a tiny IRC client on bash's
# /dev/tcp. It registers, joins, says each MESSAGE when WHEN is met (a number:
# after so many seconds; =TEXT: once TEXT has come from the server), parts and
# quits, and reads everything the server sends so the close is a clean FIN.
irc_client() {
    local nick=$1 chan=$2 log=$3 reader
    shift 3
    exec 3<>"/dev/tcp/$IRC_SERVER/6667"
    timeout 15 cat <&3 >"$log" &
    reader=$!
    printf 'NICK %s\r\nUSER %s 0 * :rewind %s\r\n' "$nick" "$nick" "$nick" >&3
    irc_wait "$log" " 001 $nick "
    printf 'JOIN %s\r\n' "$chan" >&3
    irc_wait "$log" " 366 $nick "
    while [ $# -ge 2 ]; do
        case $1 in
            =*) irc_wait "$log" "${1#=}" ;;
            *) sleep "$1" ;;
        esac
        printf 'PRIVMSG %s :%s\r\n' "$chan" "$2" >&3
        shift 2
    done
    printf 'PART %s :bye\r\nQUIT :done\r\n' "$chan" >&3
    wait "$reader" || true
    exec 3>&-
}

irc_wait() {
    local i
    for i in $(seq 100); do grep -qF -- "$2" "$1" && return 0; sleep 0.05; done
    echo "irc_client: no '$2' from server" >&2
    return 1
}

# irc NICK [DELAY MESSAGE]...: irc_client in the client namespace, channel #rewind.
irc() {
    local nick=$1; shift
    cli env IRC_SERVER="$SRV_IP" bash -c "set -euo pipefail; $(declare -f irc_client irc_wait); irc_client \"\$@\"" \
        irc_client "$nick" '#rewind' "$RUN/log/irc-$nick.log" "$@"
}

# --- capture -----------------------------------------------------------------

capture_start() {
    local i
    ip netns exec "$SRV_NS" tcpdump -i "$SRV_IF" -U --immediate-mode -s 0 -n -Z root -w "$RUN/$1.pcap" \
        >"$RUN/log/tcpdump.log" 2>&1 &
    TCPDUMP_PID=$!
    for i in $(seq 50); do
        grep -q 'listening on' "$RUN/log/tcpdump.log" && { sleep 0.2; return 0; }
        sleep 0.1
    done
    die "tcpdump did not start: $(cat "$RUN/log/tcpdump.log")"
}

capture_stop() {
    local name=$1 n max
    sleep 0.5                       # let the last FIN/ACKs in
    kill -INT "$TCPDUMP_PID"
    wait "$TCPDUMP_PID" || true
    TCPDUMP_PID=""
    mv "$RUN/$name.pcap" "$OUT/$name.pcap"
    n=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$RUN/log/tcpdump.log")
    max=$(tcpdump -nn -e -r "$OUT/$name.pcap" 2>/dev/null |
          sed -n 's/^[^,]*, ethertype [^,]*, length \([0-9]*\):.*/\1/p' | sort -n | tail -1)
    [ "${max:-0}" -le 1514 ] || log "warning: $name.pcap has a $max-byte frame"
    SUMMARY+=("$(printf '%-8s %6s packets %9s bytes  largest frame %s' \
        "$name" "$n" "$(stat -c %s "$OUT/$name.pcap")" "$max")")
    log "$name.pcap: $n packets, largest frame $max bytes"
}

# --- traces ------------------------------------------------------------------

nmap_scan() {
    start_sshd
    start_nginx
    capture_start "$1"
    cli nmap "$2" -n -T4 --top-ports 1000 -e "$CLI_IF" "$SRV_IP" >"$RUN/log/nmap.txt"
    grep -E '^[0-9]+/tcp' "$RUN/log/nmap.txt" >&2 || true
    capture_stop "$1"
}

trace_nmap_sS() { nmap_scan nmap_sS -sS; }
trace_nmap_sT() { nmap_scan nmap_sT -sT; }

trace_http() {
    start_nginx
    capture_start http
    http_get index.html files/tools.zip files/setup.exe
    http_get files/setup.exe
    http_get index.html
    capture_stop http
}

trace_ssh() {
    start_sshd
    capture_start ssh
    ssh_uname
    scp_upload
    capture_stop ssh
}

trace_ftp() {
    start_vsftpd
    capture_start ftp
    ftp_get                     # EPSV
    ftp_get --disable-epsv      # PASV
    ftp_tnftp
    capture_stop ftp
}

trace_irc() {
    local first
    start_ngircd
    capture_start irc
    irc alice '=:bob!' 'hello bob' 0.5 'see you after the build' &
    first=$!
    sleep 0.5
    irc bob '=hello bob' 'hi alice, all green here' '=see you' 'bye'
    wait "$first"
    capture_stop irc
}

# The multi-step signature: ssh, then HTTP .exe .zip .html, then FTP RETR, then IRC JOIN.
trace_trojan() {
    start_sshd
    start_nginx
    start_vsftpd
    start_ngircd
    capture_start trojan
    ssh_uname
    sleep 0.5
    http_get files/setup.exe
    http_get files/tools.zip
    http_get index.html
    sleep 0.5
    ftp_get
    sleep 0.5
    irc bot4711 0.5 'ready'
    capture_stop trojan
}

make_trace() {
    log "== $1"
    net_up
    "trace_$1"
    net_down
}

main() {
    parse_args "$@"
    [ "$(id -u)" -eq 0 ] || die "must run as root: it creates network namespaces and runs daemons"
    check_tools
    if [ -z "$OUT" ]; then
        OUT=$HERE/out
        mkdir -p "$OUT"
        [ -e "$OUT/.gitignore" ] || echo '*' >"$OUT/.gitignore"
    fi
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    RUN=$(mktemp -d /tmp/rwtr-run.XXXXXX)
    chmod 755 "$RUN"
    prepare_files
    local t
    for t in "${ONLY[@]}"; do make_trace "$t"; done
    log "done, in $OUT:"
    printf '  %s\n' "${SUMMARY[@]}" >&2
}

main "$@"
