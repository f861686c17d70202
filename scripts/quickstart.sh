#!/usr/bin/env bash
# Quick start: install what is missing, build vswitch, and run topologies/quickstart.yaml
# through `vstopo test` (three hosts on one vswitchd bridge: two on afpacket ports, one on
# a TAP port; checks pingall, iperf3 and learned MACs). Then bring the same topology up
# with `vstopo up`, measure TCP throughput and ping RTT between two hosts, print what the
# switch shows, put a Linux bridge in vswitchd's place on the same namespaces and print a
# side-by-side table.
#
#   sudo bash scripts/quickstart.sh
#
# Everything it creates is removed on exit (success, failure, Ctrl-C): vstopo tears its
# runs down itself, and the exit trap runs `vstopo down` for the measured run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() {
    echo "quickstart: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): sudo bash scripts/quickstart.sh"

say "dependencies"
bash scripts/deps.sh

say "cargo build --workspace --release"
cargo build --workspace --release
VSTOPO="$PWD/target/release/vstopo"
for b in vstopo vswitchd vsctl; do
    [ -x "target/release/$b" ] || die "release binary $b missing after the build"
done
TOPO=topologies/quickstart.yaml

say "vstopo test $TOPO"
echo "+ vstopo test $TOPO"
"$VSTOPO" test "$TOPO"

# ---- the same topology, kept up for measurements ------------------------------------------
# A state directory of our own: this run never meets a `vstopo up` of the same file that
# someone else has running.
VSTOPO_STATE_DIR="$(mktemp -d /tmp/vswitch-quickstart.XXXXXX)"
export VSTOPO_STATE_DIR
TMP="$VSTOPO_STATE_DIR"

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    "$VSTOPO" down "$TOPO" >/dev/null
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Names and addresses as topologies/quickstart.yaml writes them.
IP2=10.0.0.2
in_node() { "$VSTOPO" exec "$TOPO" "$@"; }
show() {
    echo "+ vstopo exec $TOPO $*"
    in_node "$@"
}

say "vstopo up $TOPO"
echo "+ vstopo up $TOPO"
"$VSTOPO" up "$TOPO"

# measure LABEL: TCP throughput h1->h2 (5 s) and RTT of 200 pings h1->h2, into TCP_<LABEL>,
# RTTMIN_<LABEL>, RTTAVG_<LABEL>, RTTMAX_<LABEL>.
measure() {
    local label="$1" port json rtt
    port=$((5201 + RANDOM % 1000))
    in_node h2 -- timeout 60 iperf3 -s -1 -B "$IP2" -p "$port" >/dev/null 2>&1 &
    for _ in $(seq 100); do
        in_node h2 -- ss -Hltn | grep -q ":$port " && break
        sleep 0.05
    done
    json="$TMP/iperf3-$label.json"
    in_node h1 -- timeout 40 iperf3 -c "$IP2" -p "$port" -t 5 -J >"$json" || die "iperf3 ($label) failed: $(head -c 500 "$json")"
    printf -v "TCP_$label" '%s' "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$json")"
    rtt="$(in_node h1 -- timeout 30 ping -n -q -c 200 -i 0.01 -w 20 "$IP2" | awk -F'[/ =]+' '/^rtt|^round-trip/ {print $6, $7, $8}')"
    [ -n "$rtt" ] || die "ping ($label) printed no RTT summary"
    read -r "RTTMIN_$label" "RTTAVG_$label" "RTTMAX_$label" <<<"$rtt"
    local t="TCP_$label" mn="RTTMIN_$label" av="RTTAVG_$label" mx="RTTMAX_$label"
    echo "$label: TCP h1->h2 ${!t} Gbit/s; ping h1->h2 rtt min/avg/max ${!mn}/${!av}/${!mx} ms"
}

say "measure through vswitchd: iperf3 TCP h1->h2 5 s, 200 pings h1->h2 at 10 ms"
measure vsw

say "what the switch shows"
show sw1 -- vsctl show
show sw1 -- vsctl fdb-show br0
show sw1 -- vsctl stats

say "replace vswitchd by a Linux bridge on the same namespaces"
# vswitchd lets go of the veths (its bridge and ports go); a kernel bridge takes them.
show sw1 -- vsctl del-br br0
show sw1 -- ip link add qsbr type bridge
show sw1 -- ip link set h1-eth0 master qsbr
show sw1 -- ip link set h2-eth0 master qsbr
show sw1 -- ip link set qsbr up
in_node h1 -- timeout 15 ping -n -q -c 3 -i 0.2 -w 10 "$IP2" >/dev/null || die "h1 cannot ping h2 through the Linux bridge"
echo "h1 -> h2 through the Linux bridge: ok"

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
echo "Write your own topology: topologies/README.md; run it: target/release/vstopo test FILE"
