#!/usr/bin/env bash
# Quick start: build vswitch, run vswitchd in a network namespace with two hosts on
# afpacket ports and one host on a TAP port, push traffic through it, then replace it by a
# Linux bridge on the same namespaces and compare.
#
#   sudo bash scripts/quickstart.sh
#
# Everything it creates (namespaces qs<pid>-*, a temp dir) is removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "quickstart: needs root (network namespaces): sudo bash scripts/quickstart.sh" >&2
    exit 1
fi

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() {
    echo "quickstart: $*" >&2
    exit 1
}

say "dependencies"
bash scripts/deps.sh

say "cargo build --workspace --release"
cargo build --workspace --release
VSWITCHD="$PWD/target/release/vswitchd"
VSCTL="$PWD/target/release/vsctl"
[ -x "$VSWITCHD" ] && [ -x "$VSCTL" ] || die "release binaries missing after the build"

# ---- names, all unique to this run ------------------------------------------------------
ID=$$
P="qs$ID"
SW="$P-sw"
H1="$P-h1"
H2="$P-h2"
H3="$P-h3"
NET="10.250.$((ID % 250 + 1))"
IP1="$NET.1"
IP2="$NET.2"
IP3="$NET.3"
TAP="qtap$((ID % 100000))"
LBR="qbr$((ID % 100000))"
TMP="$(mktemp -d /tmp/vswitch-quickstart.XXXXXX)"
SOCK="$TMP/vswitchd.sock"
DB="$TMP/conf.json"
LOG="$TMP/vswitchd.log"
DAEMON_PID=""
NSES=()

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    if [ "$rc" -ne 0 ] && [ -s "$LOG" ]; then
        echo "---- last lines of the vswitchd log ----" >&2
        tail -n 40 "$LOG" >&2
    fi
    local ns pids
    for ns in "${NSES[@]}"; do
        pids="$(ip netns pids "$ns" 2>/dev/null)"
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

vsctl() { timeout 10 "$VSCTL" --sock "$SOCK" "$@"; }
in_ns() {
    local ns="$1"
    shift
    ip netns exec "$ns" "$@"
}

mkns() {
    ip netns add "$1"
    NSES+=("$1")
    ip -n "$1" link set lo up
    in_ns "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# ---- topology -----------------------------------------------------------------------------
say "topology: switch namespace $SW, hosts $H1 $H2 (afpacket) and $H3 (TAP), subnet $NET.0/24"
mkns "$SW"
for n in 1 2 3; do mkns "$P-h$n"; done
for n in 1 2; do
    ip -n "$SW" link add "h${n}p" type veth peer name eth0 netns "$P-h$n"
    ip -n "$P-h$n" addr add "$NET.$n/24" dev eth0
    ip -n "$P-h$n" link set eth0 up
    ip -n "$SW" link set "h${n}p" up
done

say "start vswitchd in $SW"
ip netns exec "$SW" "$VSWITCHD" --sock "$SOCK" --db "$DB" 2>"$LOG" &
DAEMON_PID=$!
for _ in $(seq 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || die "vswitchd exited during start-up"
    vsctl show >/dev/null 2>&1 && break
    sleep 0.1
done
vsctl show >/dev/null || die "vswitchd does not answer on $SOCK"

say "configure: one bridge, two afpacket ports, one TAP port"
show_vsctl() {
    echo "+ vsctl $*"
    vsctl "$@"
}
show_vsctl add-br br0
show_vsctl add-port br0 h1p
show_vsctl add-port br0 h2p
show_vsctl add-port br0 "$TAP" --type tap
for _ in $(seq 100); do ip -n "$SW" link show "$TAP" >/dev/null 2>&1 && break; sleep 0.1; done
ip -n "$SW" link set "$TAP" netns "$H3"
ip -n "$H3" addr add "$IP3/24" dev "$TAP"
ip -n "$H3" link set "$TAP" up
for _ in $(seq 100); do vsctl show | grep -q ' down' || break; sleep 0.1; done

say "ping all pairs"
for a in 1 2 3; do
    for b in 1 2 3; do
        [ "$a" = "$b" ] && continue
        if timeout 15 ip netns exec "$P-h$a" ping -n -q -c 3 -i 0.2 -w 10 "$NET.$b" >/dev/null; then
            echo "h$a -> h$b ($NET.$b): ok"
        else
            die "h$a cannot ping h$b"
        fi
    done
done

# measure LABEL: TCP throughput h1->h2 (5 s) and RTT of 200 pings h1->h2, into TCP_<LABEL>,
# RTTMIN_<LABEL>, RTTAVG_<LABEL>, RTTMAX_<LABEL>.
measure() {
    local label="$1" port json rtt
    port=$((5201 + RANDOM % 1000))
    timeout 60 ip netns exec "$H2" iperf3 -s -1 -B "$IP2" -p "$port" >/dev/null 2>&1 &
    for _ in $(seq 100); do
        in_ns "$H2" ss -Hltn | grep -q ":$port " && break
        sleep 0.05
    done
    json="$TMP/iperf3-$label.json"
    timeout 40 ip netns exec "$H1" iperf3 -c "$IP2" -p "$port" -t 5 -J >"$json" || die "iperf3 ($label) failed: $(head -c 500 "$json")"
    printf -v "TCP_$label" '%s' "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$json")"
    rtt="$(timeout 30 ip netns exec "$H1" ping -n -q -c 200 -i 0.01 -w 20 "$IP2" | awk -F'[/ =]+' '/^rtt|^round-trip/ {print $6, $7, $8}')"
    [ -n "$rtt" ] || die "ping ($label) printed no RTT summary"
    read -r "RTTMIN_$label" "RTTAVG_$label" "RTTMAX_$label" <<<"$rtt"
    local t="TCP_$label" mn="RTTMIN_$label" av="RTTAVG_$label" mx="RTTMAX_$label"
    echo "$label: TCP h1->h2 ${!t} Gbit/s; ping h1->h2 rtt min/avg/max ${!mn}/${!av}/${!mx} ms"
}

say "measure through vswitchd: iperf3 TCP h1->h2 5 s, 200 pings h1->h2 at 10 ms"
measure vsw

say "vsctl show"
vsctl show
say "vsctl fdb-show br0"
vsctl fdb-show br0
say "vsctl stats"
vsctl stats

say "replace vswitchd by a Linux bridge on the same namespaces"
kill -TERM "$DAEMON_PID"
for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
ip -n "$SW" link add "$LBR" type bridge
ip -n "$SW" link set h1p master "$LBR"
ip -n "$SW" link set h2p master "$LBR"
ip -n "$SW" link set "$LBR" up
timeout 15 ip netns exec "$H1" ping -n -q -c 3 -i 0.2 -w 10 "$IP2" >/dev/null || die "h1 cannot ping h2 through the Linux bridge"
echo "h1 -> h2 through $LBR: ok"

say "measure through the Linux bridge"
measure lbr

say "vswitchd vs Linux bridge (h1 -> h2)"
awk -v t1="$TCP_vsw" -v t2="$TCP_lbr" \
    -v a1="$RTTAVG_vsw" -v a2="$RTTAVG_lbr" -v m1="$RTTMIN_vsw" -v m2="$RTTMIN_lbr" \
    -v x1="$RTTMAX_vsw" -v x2="$RTTMAX_lbr" 'BEGIN {
    printf "%-24s %12s %14s %8s\n", "", "vswitchd", "linux bridge", "ratio"
    r = (t2 > 0) ? sprintf("%.2f", t1 / t2) : "-"
    printf "%-24s %12s %14s %8s\n", "TCP throughput (Gbit/s)", t1, t2, r
    r = (a2 > 0) ? sprintf("%.2f", a1 / a2) : "-"
    printf "%-24s %12s %14s %8s\n", "ping RTT avg (ms)", a1, a2, r
    r = (m2 > 0) ? sprintf("%.2f", m1 / m2) : "-"
    printf "%-24s %12s %14s %8s\n", "ping RTT min (ms)", m1, m2, r
    r = (x2 > 0) ? sprintf("%.2f", x1 / x2) : "-"
    printf "%-24s %12s %14s %8s\n", "ping RTT max (ms)", x1, x2, r
}'
echo
echo "(ratio = vswitchd / linux bridge; for throughput higher is better, for RTT lower is better)"
