#!/usr/bin/env bash
# Many-ports benchmark: what idle ports cost vswitchd. For each port count N, one switch
# namespace with one vswitchd and one bridge, N veth pairs in that namespace (one end an
# afpacket port of the bridge, the other end up and silent), then:
#   - RSS of vswitchd with the bridge alone and with the N ports up (VmRSS, /proc), and the
#     growth per port;
#   - CPU of the idle daemon over IDLE seconds (utime + stime from /proc/PID/stat), in % of
#     one core;
#   - then two hosts on two more ports exchange TCP for a few seconds (iperf3), so that
#     their rings grow, and the RSS afterwards shows what a busy port costs.
#
#   sudo bash benches/ports.sh                  # 64 and 256 ports, 10 s idle each
#   sudo bash benches/ports.sh --quick          # 64 ports, 3 s idle
#   sudo bash benches/ports.sh --ports 16,512 --idle 5
#
# Everything (namespaces vp<pid>-*, a temp dir, the daemons) is removed on exit, also on
# Ctrl-C. Uses the helpers of benches/lib (common.sh).
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/ports.sh [--quick] [--ports LIST] [--idle SECONDS] [--no-build]
#:                                   [--vswitchd-args "ARGS"]
#:
#:   --quick              64 ports, 3 s idle, 2 s of iperf3
#:   --ports LIST         comma-separated port counts (default 64,256)
#:   --idle SECONDS       how long the idle CPU is measured (default 10)
#:   --no-build           use the existing target/release binaries instead of running cargo build
#:   --vswitchd-args ARGS extra arguments for vswitchd, e.g. "--rx-ring v3"
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

OPTS=(quick no-build vswitchd-args "--ports=PORT_COUNTS" "--idle=IDLE")
PORT_COUNTS="" IDLE=""
parse_opts "$@"
if [ "$QUICK" = 1 ]; then
    PORT_COUNTS="${PORT_COUNTS:-64}" IDLE="${IDLE:-3}" TCP_SECS=2
else
    PORT_COUNTS="${PORT_COUNTS:-64,256}" IDLE="${IDLE:-10}" TCP_SECS=5
fi
[[ "$PORT_COUNTS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--ports wants numbers like 64,256, not '$PORT_COUNTS'"
[[ "$IDLE" =~ ^[1-9][0-9]*$ ]] || die "--idle wants whole seconds, not '$IDLE'"
need_root "network namespaces"

ID=$$
P="vp$ID"
NET="10.253.$((ID % 250 + 1))"
bench_state vswitch-ports-bench
install_deps
build_release --release --bin vswitchd --bin vsctl --bin testlab

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TCK="$(getconf CLK_TCK)"

printf '\n%-6s %12s %12s %14s %12s %16s\n' ports "RSS bridge" "RSS idle" "per idle port" "idle CPU" "RSS 2 busy"
ROWS=()
for n in ${PORT_COUNTS//,/ }; do
    say "$n idle ports"
    SW="$P-sw" H1="$P-h1" H2="$P-h2"
    mkns "$SW" "$H1" "$H2"
    vsw_launch "$SW" "$TMP/vsw$n" "vswitchd"
    vsctl_at "$VSW_SOCK" add-br br0 >/dev/null
    sleep 1
    rss0="$(rss_kb "$VSW_PID")"
    for i in $(seq "$n"); do
        ip -n "$SW" link add "p$i" type veth peer name "q$i"
        ip -n "$SW" link set "q$i" up
        ip -n "$SW" link set "p$i" up
        vsctl_at "$VSW_SOCK" add-port br0 "p$i" >/dev/null
    done
    vsw_ports_up "$VSW_SOCK" "$n ports"
    sleep 1
    rss1="$(rss_kb "$VSW_PID")"
    t0="$(cpu_ticks "$VSW_PID")" s0="$(now)"
    sleep "$IDLE"
    t1="$(cpu_ticks "$VSW_PID")" s1="$(now)"
    cpu="$(calc "100 * ($t1 - $t0) / $TCK / ($s1 - $s0)")"
    # Two busy ports: their rings grow.
    host_link "$SW" h1p "$H1" "$NET.1/24"
    host_link "$SW" h2p "$H2" "$NET.2/24"
    vsctl_at "$VSW_SOCK" add-port br0 h1p >/dev/null
    vsctl_at "$VSW_SOCK" add-port br0 h2p >/dev/null
    vsw_ports_up "$VSW_SOCK" "busy ports"
    H1="$P-h1" H2="$P-h2" IP1="$NET.1" IP2="$NET.2" connectivity "$n ports"
    spawn "$TMP/iperf3-s.log" ip netns exec "$H2" iperf3 -s -1 -B "$NET.2"
    wait_listen "$H2" 5201
    ip netns exec "$H1" iperf3 -c "$NET.2" -t "$TCP_SECS" >"$TMP/iperf3-c.log" 2>&1 ||
        die "iperf3 failed: $(tail -3 "$TMP/iperf3-c.log")"
    rss2="$(rss_kb "$VSW_PID")"
    per="$(calc "($rss1 - $rss0) / $n")"
    printf '%-6s %9s KB %9s KB %11.0f KB %11s%% %13s KB\n' "$n" "$rss0" "$rss1" "$per" "$(dec 2 "$cpu")" "$rss2"
    ROWS+=("$(printf '%s ports: RSS %s KB with the bridge alone, %s KB with the ports idle (%.0f KB a port), idle CPU %s%% of a core over %s s, %s KB after %s s of TCP between two more ports' \
        "$n" "$rss0" "$rss1" "$per" "$(dec 2 "$cpu")" "$IDLE" "$rss2" "$TCP_SECS")")
    teardown
done
say "summary"
printf '%s\n' "${ROWS[@]}"
