#!/usr/bin/env bash
# Gateway/NAT benchmark: a container behind a NAT gateway, built two ways in one run, on the
# same namespaces, measured the same way, side by side:
#
#   vsw      vswitchd is the gateway: in the switch namespace, vswitchd with bridge br0
#            (the container's veth "ctr" as an afpacket port), vsctl add-net br0
#            172.18.0.0/24 --gateway 172.18.0.1, vsctl set-uplink up0 --ip 198.51.100.2/24
#            --gw 198.51.100.1, vsctl publish tcp 5201 172.18.0.2:5201; no kernel address,
#            no forwarding, no iptables in that namespace
#   kernel   the kernel is the gateway, as Docker's bridge driver sets it up: a Linux bridge
#            br0 with 172.18.0.1/24 and "ctr" in it, 198.51.100.2/24 on up0,
#            net.ipv4.ip_forward=1, and the iptables rules dockerd installs for one network
#            and `-p 5201:5201` (nat: DOCKER chain from PREROUTING/OUTPUT for local
#            addresses, MASQUERADE of 172.18.0.0/24 out of anything but br0, the hairpin
#            MASQUERADE, DNAT tcp 5201 -> 172.18.0.2:5201; filter: FORWARD policy DROP,
#            DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2, conntrack RELATED,ESTABLISHED, the
#            DOCKER accept for the published port), loaded with iptables-restore
#
#   sudo bash benches/nat.sh                      # full run: iperf3 5 s, 3 runs, 200 pings
#   sudo bash benches/nat.sh --time 3 --runs 3    # iperf3 3 s, 3 runs
#   sudo bash benches/nat.sh --quick              # smoke run (1 s, 1 run, 20 pings), saves nothing
#   sudo bash benches/nat.sh --quick --only kernel
#   bash benches/nat.sh --table benches/results/nat-<date>-<time>.json   # markdown again
#
# Namespaces (all named nt<pid>-*): c1 (eth0 172.18.0.2/24, default via 172.18.0.1), gw
# (the gateway: "ctr" to c1, "up0" to wan) and wan (eth0 198.51.100.1/24, the outside; it
# has no route to 172.18.0.0/24, as a machine on the Internet has none).
#
# Measured with the interfaces' default offloads (no ethtool), each RUNS times (medians in
# the table, every sample in the JSON): iperf3 TCP, 1 stream, outbound c1 -> wan
# 198.51.100.1 (masqueraded to 198.51.100.2) and inbound wan -> 198.51.100.2:5201 (the
# published port, DNAT to c1:5201); ping RTT p50/p99 c1 -> wan of PINGS pings at 5 ms.
# Before measuring, each setup must show NAT as Docker does it: a TCP server in wan sees
# c1's connection come from 198.51.100.2, and a server in c1 sees wan's connection to
# 198.51.100.2:5201 come from 198.51.100.1 (the client address kept). Next to each TCP
# figure: vswitchd's CPU (utime + stime from /proc) per Gbit/s. After measuring it
# records vswitchd's `vsctl --json stats` (gateway counters, drops) and peak RSS, or the
# kernel's iptables counters and conntrack count.
#
# Everything it creates (namespaces nt<pid>-*, a temp dir, the daemons and servers) is removed
# on exit, also on Ctrl-C or SIGTERM; the iptables rules live and die with the gw namespace.
# Uses the option parser and the helpers of benches/lib (common.sh); the report is
# benches/lib/nat.py.
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/nat.sh [--time S] [--runs N] [--pings N] [--quick] [--only LIST]
#:                                 [--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
#:        bash benches/nat.sh --table FILE    print a saved result as a markdown table
#:
#:   --time S             iperf3 seconds per measurement (default 5; --quick: 1)
#:   --runs N             repeat every measurement N times, report medians (default 3; --quick: 1)
#:   --pings N            pings per run (default 200; --quick: 20)
#:   --quick              smoke run: iperf3 1 s, 1 run, 20 pings; saves nothing
#:   --only LIST          comma-separated subset of vsw,kernel (also vswitchd; default: both)
#:   --no-build           use the existing target/release binaries instead of running
#:                        cargo build --release -p vswitch -p vswitch-ctl
#:   --save / --no-save   write benches/results/nat-<date>-<time>.json (default: save unless
#:                        --quick, and only when both setups ran)
#:   --vswitchd-args ARGS extra arguments for vswitchd, e.g. "--workers 1"
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---- options ---------------------------------------------------------------------------------
OPTS=(time runs pings quick only no-build save vswitchd-args table)
ONLY="vsw,kernel"
parse_opts "$@"
pick_setups setup "vsw kernel" vswitchd=vsw
time_runs_pings
PING_INTERVAL=0.005
save_default 2
need_root "network namespaces"

# ---- state, cleanup --------------------------------------------------------------------------
P="nt$$"
C1="$P-c1" GW="$P-gw" WAN="$P-wan"
IP_C1=172.18.0.2 IP_GW=172.18.0.1 SUBNET=172.18.0.0/24
IP_WAN=198.51.100.1 IP_UP=198.51.100.2
PUB_PORT=5201 OUT_PORT=5301
bench_state vswitch-nat-bench

# ---- dependencies ----------------------------------------------------------------------------
pkgs=()
! has_setup kernel || pkgs+=(iptables=iptables iptables-restore=iptables)
install_deps "${pkgs[@]}"
IPTABLES_VERSION=""
if has_setup kernel; then
    # iptables (nf_tables backend on Debian 12, as dockerd uses it there) must work in a fresh
    # namespace, with the nat table and the matches and targets dockerd's rules need.
    mkns "$P-probe"
    in_ns "$P-probe" iptables -t nat -L -n >/dev/null 2>"$TMP/ipt.err" ||
        die "iptables -t nat does not work in a network namespace: $(cat "$TMP/ipt.err")"
    if ! {
        in_ns "$P-probe" iptables -t nat -A POSTROUTING -s "$SUBNET" ! -o br0 -j MASQUERADE &&
            in_ns "$P-probe" iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 1 \
                -j DNAT --to-destination "$IP_C1:1" &&
            in_ns "$P-probe" iptables -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    } 2>"$TMP/ipt.err"; then
        die "iptables cannot add dockerd's kind of rules (MASQUERADE, addrtype, DNAT, conntrack): $(cat "$TMP/ipt.err")"
    fi
    del_ns "$P-probe"
    IPTABLES_VERSION="$(iptables --version 2>/dev/null | head -n 1)"
    info "kernel gateway: $IPTABLES_VERSION"
fi
export BENCH_IPTABLES="${IPTABLES_VERSION:-not used}"

# ---- build -----------------------------------------------------------------------------------
if has_setup vsw; then
    build_release --release -p vswitch -p vswitch-ctl -p testlab
    grep -q set-uplink <<<"$("$VSCTL" --help 2>&1)" || die "$VSCTL has no set-uplink: build a vswitch with the gateway"
fi

# ---- the network -----------------------------------------------------------------------------
# c1, gw and wan with the two veth pairs; nothing in gw is configured yet.
net_up() {
    mkns "$C1" "$GW" "$WAN"
    host_link "$GW" ctr "$C1" "$IP_C1/24"
    host_link "$GW" up0 "$WAN" "$IP_WAN/24"
    ip -n "$C1" route add default via "$IP_GW"
}

# The kernel as the gateway, the way dockerd sets up a bridge network with one published port.
kernel_gw() {
    ip -n "$GW" link add br0 type bridge
    ip -n "$GW" link set ctr master br0
    ip -n "$GW" addr add "$IP_GW/24" dev br0
    ip -n "$GW" link set br0 up
    ip -n "$GW" addr add "$IP_UP/24" dev up0
    in_ns "$GW" sysctl -q -w net.ipv4.ip_forward=1
    # dockerd loads br_netfilter and sets this (per namespace on this kernel, if present).
    in_ns "$GW" sysctl -q -w net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
    # What `iptables-save` shows on a Docker host with one bridge network (here br0) and a
    # container 172.18.0.2 run with -p 5201:5201 (docker-proxy aside).
    in_ns "$GW" iptables-restore <<EOF
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s $SUBNET ! -o br0 -j MASQUERADE
-A POSTROUTING -s $IP_C1/32 -d $IP_C1/32 -p tcp -m tcp --dport $PUB_PORT -j MASQUERADE
-A DOCKER -i br0 -j RETURN
-A DOCKER ! -i br0 -p tcp -m tcp --dport $PUB_PORT -j DNAT --to-destination $IP_C1:$PUB_PORT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o br0 -j DOCKER
-A FORWARD -i br0 ! -o br0 -j ACCEPT
-A FORWARD -i br0 -o br0 -j ACCEPT
-A DOCKER -d $IP_C1/32 ! -i br0 -o br0 -p tcp -m tcp --dport $PUB_PORT -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i br0 ! -o br0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o br0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
EOF
    info "gw: kernel bridge br0 $IP_GW/24 (ctr), up0 $IP_UP/24, ip_forward=1, $(in_ns "$GW" iptables-save | grep -c '^-A') iptables rules as dockerd's"
}

# vswitchd as the gateway; its socket, database and log in a directory of their own.
vsw_gw() {
    vsw_launch "$GW" "$TMP/vsw" vswitchd
    vsctl_at "$VSW_SOCK" add-br br0 >/dev/null
    vsctl_at "$VSW_SOCK" add-net br0 "$SUBNET" --gateway "$IP_GW" >/dev/null
    vsctl_at "$VSW_SOCK" add-port br0 ctr >/dev/null
    vsctl_at "$VSW_SOCK" set-uplink up0 --ip "$IP_UP/24" --gw "$IP_WAN" >/dev/null
    vsctl_at "$VSW_SOCK" publish tcp "$PUB_PORT" "$IP_C1:$PUB_PORT" >/dev/null
    vsw_ports_up "$VSW_SOCK" vswitchd
    info "gw: vswitchd (pid $VSW_PID): $(vsctl_at "$VSW_SOCK" show | tr -s ' ' | tr '\n' ';')"
}

# The address a TCP server in SERVER_NS on PORT sees a connection from CLIENT_NS to DST:PORT
# come from (the server picks a free port on its side when it is the published one).
peer_seen() { # SERVER_NS LISTEN_PORT CLIENT_NS DST_IP DST_PORT
    local out="$TMP/peer.txt" srv
    spawn "$out" timeout 15 ip netns exec "$1" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("listening", flush=True)
c, a = s.accept()
print(a[0], flush=True)
' "$2"
    srv="$SPAWNED"
    wait_for 100 grep -q listening "$out" || die "peer check: the server in $1 did not start: $(cat "$out")"
    timeout 10 ip netns exec "$3" python3 -c '
import socket, sys
socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()
' "$4" "$5" || die "peer check: $3 cannot connect to $4:$5"
    wait "$srv" 2>/dev/null || true
    forget_pid "$srv"
    sed -n 2p "$out"
}

# ---- measurements ----------------------------------------------------------------------------
# Both setups must do NAT as Docker does before their figures mean anything.
check_nat() { # SETUP
    local seen
    reach "$C1" "$IP_WAN" || die "$1: c1 cannot ping wan ($IP_WAN) through the gateway"
    seen="$(peer_seen "$WAN" "$OUT_PORT" "$C1" "$IP_WAN" "$OUT_PORT")"
    [ "$seen" = "$IP_UP" ] || die "$1: wan saw c1's connection come from '$seen', not the uplink address $IP_UP (no masquerade)"
    info "checked: c1 -> wan:$OUT_PORT arrives from $seen (masqueraded)"
    seen="$(peer_seen "$C1" "$PUB_PORT" "$WAN" "$IP_UP" "$PUB_PORT")"
    [ "$seen" = "$IP_WAN" ] || die "$1: c1 saw wan's connection to $IP_UP:$PUB_PORT come from '$seen', not $IP_WAN"
    info "checked: wan -> $IP_UP:$PUB_PORT reaches c1:$PUB_PORT from $seen (published, client kept)"
}

# After the measurements: what the gateway counted.
record_gw() { # SETUP
    local s="$1"
    if [ "$s" = vsw ]; then
        vsw_record "$s" "$VSW_SOCK" "$VSW_PID"
        info "vswitchd: $(report_py gateway-summary "$VSW_STATS"); peak RSS ${VSW_HWM:-?} KiB"
    else
        record_detail "$s" "{\"kind\":\"iptables\",\"nat\":$(in_ns "$GW" iptables-save -c -t nat | report_py json-string),\"conntrack_count\":$(in_ns "$GW" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo null)}"
        in_ns "$GW" iptables -t nat -L -v -n -x | awk '/MASQUERADE|DNAT/ { print "    iptables: " $0 }'
    fi
}

tcp_run() { # SETUP RUN KEY WHAT SERVER_NS CLIENT_NS DST_IP PORT
    iperf_run "$1" "$3" "$4" "$5" "$6" "$7" "$8" "$TMP/$1-$3-$2.json" -P 1
    info "run $2: TCP $4 ${TCP_SECS}s, 1 stream: $TCP_TEXT"
}

declare -A TITLE=([vsw]="vswitchd gateway (add-net, set-uplink, publish)"
    [kernel]="kernel gateway (Linux bridge, ip_forward, dockerd's iptables rules)")
run_setup() { # SETUP
    local s="$1" r
    net_up
    CPU_PIDS=()
    case "$s" in
        vsw)
            vsw_gw
            CPU_PIDS=("$VSW_PID")
            ;;
        kernel) kernel_gw ;;
    esac
    check_nat "$s"
    for r in $(seq "$RUNS"); do
        warm_up "$C1" "$IP_WAN" || true
        ping_run "$s" "c1 -> wan" "$C1" "$IP_WAN" "$TMP/$s-ping-$r.txt"
        info "run $r: ping c1 -> wan x$PINGS at ${PING_INTERVAL}s: $PING_TEXT"
        tcp_run "$s" "$r" tcp_out_gbps "out c1 -> wan (masquerade)" "$WAN" "$C1" "$IP_WAN" "$OUT_PORT"
        tcp_run "$s" "$r" tcp_in_gbps "in wan -> $IP_UP:$PUB_PORT (published)" "$C1" "$WAN" "$IP_UP" "$PUB_PORT"
    done
    record_gw "$s"
    teardown
}

# ---- run, report -----------------------------------------------------------------------------
bench_run "plan: ${SETUPS[*]}; $RUNS run(s) of TCP ${TCP_SECS}s 1 stream out and in, ping x$PINGS at ${PING_INTERVAL}s; namespaces $P-*"
bench_report "results (medians of $RUNS run(s); vswitchd / kernel: above 1 is better for TCP, below 1 for ping RTT)" \
    --untracked-files=no -- vswitch ctl nat Cargo.toml Cargo.lock
