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
# 198.51.100.2:5201 come from 198.51.100.1 (the client address kept). After measuring it
# records vswitchd's `vsctl --json stats` (gateway counters, drops) and peak RSS, or the
# kernel's iptables counters and conntrack count.
#
# Everything it creates (namespaces nt<pid>-*, a temp dir, the daemons and servers) is removed
# on exit, also on Ctrl-C or SIGTERM; the iptables rules live and die with the gw namespace.
# Uses the shell helpers of benches/lib/common.sh and the parsers of benches/lib/bench.py.
set -euo pipefail
START_SECS="$(date +%s)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LIB="$ROOT/benches/lib/bench.py"
RESULTS="$ROOT/benches/results"
SCRIPT_NAME=nat.sh
# shellcheck source=benches/lib/common.sh
. "$ROOT/benches/lib/common.sh"

usage() {
    cat <<'EOF'
usage: sudo bash benches/nat.sh [--time S] [--runs N] [--pings N] [--quick] [--only LIST]
                                [--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
       bash benches/nat.sh --table FILE    print a saved result as a markdown table

  --time S             iperf3 seconds per measurement (default 5; --quick: 1)
  --runs N             repeat every measurement N times, report medians (default 3; --quick: 1)
  --pings N            pings per run (default 200; --quick: 20)
  --quick              smoke run: iperf3 1 s, 1 run, 20 pings; saves nothing
  --only LIST          comma-separated subset of vsw,kernel (also vswitchd; default: both)
  --no-build           use the existing target/release binaries instead of running
                       cargo build --release -p vswitch -p vswitch-ctl
  --save / --no-save   write benches/results/nat-<date>-<time>.json (default: save unless
                       --quick, and only when both setups ran)
  --vswitchd-args ARGS extra arguments for vswitchd, e.g. "--workers 1"
EOF
}

# ---- the report (python, also used by --table) -----------------------------------------------
report_py() {
    python3 - "$@" <<'PY'
import json, os, statistics, sys

SETUPS = [("vsw", "vswitchd gateway"), ("kernel", "kernel (bridge + iptables)")]
METRICS = [("tcp_out_gbps", "TCP out c1->wan, masquerade, 1 stream (Gbit/s)", "{:.2f}"),
           ("tcp_in_gbps", "TCP in wan->c1, published port, 1 stream (Gbit/s)", "{:.2f}"),
           ("ping_p50_ms", "ping c1->wan RTT p50 (ms)", "{:.3f}"),
           ("ping_p99_ms", "ping c1->wan RTT p99 (ms)", "{:.3f}")]


def render(res, markdown):
    r = res["results"]
    header = ["metric"] + [t for _, t in SETUPS] + ["vswitchd / kernel"]
    rows = []
    for key, label, f in METRICS:
        cells = [label]
        for s, _ in SETUPS:
            v = r.get(s, {}).get(key)
            cells.append(f.format(v) if v is not None else "-")
        x = r.get("vsw", {}).get("ratio_over_kernel", {}).get(key)
        cells.append(f"{x:.2f}" if x is not None else "-")
        rows.append(cells)
    out = []
    if markdown:
        out.append("| " + " | ".join(header) + " |")
        out.append("| --- |" + " ---: |" * (len(header) - 1))
        out += ["| " + " | ".join(c) + " |" for c in rows]
    else:
        w = [max(len(x[i]) for x in [header] + rows) for i in range(len(header))]
        for n, c in enumerate([header] + rows):
            out.append("  ".join([c[0].ljust(w[0])] + [x.rjust(y) for x, y in zip(c[1:], w[1:])]))
            if n == 0:
                out.append("  ".join("-" * y for y in w))
    return "\n".join(out)


def report(raw, out_path):
    e = os.environ
    samples, details = {}, {}
    with open(raw, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            x = json.loads(line)
            if "metric" in x:
                samples.setdefault(x["setup"], {}).setdefault(x["metric"], []).append(x["value"])
            else:
                details.setdefault(x["setup"], []).append(x["detail"])
    results = {}
    for s, metrics in samples.items():
        entry = {m: statistics.median(v) for m, v in metrics.items()}
        entry["samples"] = metrics
        entry["details"] = details.get(s, [])
        results[s] = entry
    k = results.get("kernel", {})
    if "vsw" in results and k:
        v = results["vsw"]
        v["ratio_over_kernel"] = {m: v[m] / k[m] for m, _, _ in METRICS
                                  if v.get(m) is not None and k.get(m)}
    res = {
        "benchmark": "nat",
        "date": e["BENCH_DATE"],
        "machine": {"cpus": int(e["BENCH_CPUS"]), "cpu_model": e["BENCH_CPU_MODEL"],
                    "kernel": e["BENCH_KERNEL"],
                    "uptime_start": e["BENCH_UPTIME_START"],
                    "uptime_end": e["BENCH_UPTIME_END"],
                    "loadavg_start": e["BENCH_LOADAVG_START"],
                    "loadavg_end": e["BENCH_LOADAVG_END"]},
        "vswitch_commit": e["BENCH_COMMIT"],
        "vswitch_dirty": e["BENCH_DIRTY"] == "true",
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "options": {"quick": e["BENCH_QUICK"] == "1", "setups": e["BENCH_SETUPS"].split(),
                    "tcp_seconds": int(e["BENCH_TCP_SECS"]), "tcp_streams": 1,
                    "runs": int(e["BENCH_RUNS"]), "statistic": "median of runs",
                    "pings": int(e["BENCH_PINGS"]),
                    "ping_interval_s": float(e["BENCH_PING_INTERVAL"]),
                    "offloads": "interface defaults (no ethtool)"},
        "network": {"c1": "container namespace, eth0 172.18.0.2/24, default via 172.18.0.1",
                    "gw": "gateway namespace: ctr (veth to c1), up0 (veth to wan)",
                    "wan": "outside namespace, eth0 198.51.100.1/24, no route to 172.18.0.0/24",
                    "uplink_address": "198.51.100.2/24",
                    "published": "tcp 198.51.100.2:5201 -> 172.18.0.2:5201"},
        "setups": {
            "vsw": "vswitchd in gw: add-br br0; add-net br0 172.18.0.0/24 --gateway "
                   "172.18.0.1; add-port br0 ctr (afpacket); set-uplink up0 --ip "
                   "198.51.100.2/24 --gw 198.51.100.1; publish tcp 5201 172.18.0.2:5201. "
                   "No kernel address on ctr or up0, ip_forward 0, no iptables",
            "kernel": "gw as Docker's bridge driver: Linux bridge br0 172.18.0.1/24 with "
                      "ctr, 198.51.100.2/24 on up0, ip_forward=1, dockerd's iptables rules "
                      "for one network and -p 5201:5201 (" + e["BENCH_IPTABLES"] + ")"},
        "tools": {"iperf3": e["BENCH_IPERF3"], "iptables": e["BENCH_IPTABLES"]},
        "elapsed_s": int(e["BENCH_ELAPSED"]),
        "build_s": int(e["BENCH_BUILD_S"]),
        "results": results,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    print(render(res, markdown=False))


def gateway_summary(stats_path):
    """One line from `vsctl --json stats`: the gateway's conntrack, counters and drops."""
    with open(stats_path, encoding="utf-8") as f:
        g = json.load(f).get("gateway") or {}
    print(f"conntrack {g.get('conntrack')} (limit {g.get('ct_limit')}), mappings "
          f"{g.get('mappings')}, counters {g.get('counters') or {}}, drops {g.get('drops') or 'none'}")


def main(a):
    if a[0] == "report":
        report(a[1], a[2])
    elif a[0] == "table":
        with open(a[1], encoding="utf-8") as f:
            print(render(json.load(f), markdown=True))
    elif a[0] == "gateway-summary":
        gateway_summary(a[1])
    elif a[0] == "json-string":
        print(json.dumps(sys.stdin.read()))
    else:
        sys.exit("unknown subcommand " + a[0])


main(sys.argv[1:])
PY
}

# ---- options ---------------------------------------------------------------------------------
# --time, --runs and --pings are this script's; the rest are the options every setup benchmark
# shares (parse_setup_opts in lib/common.sh).
TCP_SECS="" RUNS="" PINGS=""
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --time | --runs | --pings)
            [ $# -ge 2 ] || die "$1 needs a number"
            case "$1" in
                --time) TCP_SECS="$2" ;;
                --runs) RUNS="$2" ;;
                --pings) PINGS="$2" ;;
            esac
            shift
            ;;
        --time=*) TCP_SECS="${1#*=}" ;;
        --runs=*) RUNS="${1#*=}" ;;
        --pings=*) PINGS="${1#*=}" ;;
        *) rest+=("$1") ;;
    esac
    shift
done
parse_setup_opts "vsw,kernel" "${rest[@]+"${rest[@]}"}"

SETUPS=()
IFS=',' read -r -a only_list <<<"$ONLY"
for t in "${only_list[@]}"; do
    case "$t" in
        vsw | vswitchd | kernel) ;;
        *) die "--only: unknown setup '$t' (vsw, kernel)" ;;
    esac
done
for s in vsw kernel; do
    for t in "${only_list[@]}"; do
        [ "$t" != vswitchd ] || t=vsw
        if [ "$s" = "$t" ]; then
            SETUPS+=("$s")
            break
        fi
    done
done
[ "${#SETUPS[@]}" -gt 0 ] || die "--only selected nothing"
has_setup() {
    local s
    for s in "${SETUPS[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

if [ "$QUICK" = 1 ]; then
    : "${TCP_SECS:=1}" "${RUNS:=1}" "${PINGS:=20}"
else
    : "${TCP_SECS:=5}" "${RUNS:=3}" "${PINGS:=200}"
fi
for v in time:TCP_SECS runs:RUNS pings:PINGS; do
    n="${v#*:}"
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "--${v%%:*} must be a whole number >= 1, not '${!n}'"
done
[ "$TCP_SECS" -le 600 ] || die "--time $TCP_SECS: at most 600 s"
PING_INTERVAL=0.005
if [ -z "$SAVE" ]; then
    SAVE=0
    [ "$QUICK" = 1 ] || [ "${#SETUPS[@]}" -ne 2 ] || SAVE=1
fi

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): sudo bash benches/nat.sh"

# ---- state, cleanup --------------------------------------------------------------------------
P="nt$$"
C1="$P-c1" GW="$P-gw" WAN="$P-wan"
IP_C1=172.18.0.2 IP_GW=172.18.0.1 SUBNET=172.18.0.0/24
IP_WAN=198.51.100.1 IP_UP=198.51.100.2
PUB_PORT=5201 OUT_PORT=5301
TMP="$(mktemp -d /tmp/vswitch-nat-bench.XXXXXX)"
RAW="$TMP/raw.jsonl"
: >"$RAW"
bench_state

# ---- dependencies ----------------------------------------------------------------------------
say "dependencies"
# shellcheck disable=SC2034 # read by install_deps
declare -A PKG=(
    [ip]=iproute2 [ping]=iputils-ping [iperf3]=iperf3 [ss]=iproute2
    [python3]=python3 [timeout]=coreutils [awk]=gawk
)
if has_setup kernel; then
    # shellcheck disable=SC2034 # read by install_deps
    PKG[iptables]=iptables PKG[iptables-restore]=iptables
fi
install_deps
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

# ---- build -----------------------------------------------------------------------------------
VSWITCHD="$ROOT/target/release/vswitchd"
VSCTL="$ROOT/target/release/vsctl"
BUILD_SECS=0
if has_setup vsw; then
    if [ "$BUILD" = 1 ]; then
        say "cargo build --release -p vswitch -p vswitch-ctl"
        cargo="$(command -v cargo || true)"
        [ -n "$cargo" ] || cargo="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
        [ -x "$cargo" ] || die "cargo not found (install Rust, or pass --no-build with built binaries)"
        build_t0="$(date +%s)"
        "$cargo" build --release -p vswitch -p vswitch-ctl
        BUILD_SECS=$(($(date +%s) - build_t0))
    fi
    { [ -x "$VSWITCHD" ] && [ -x "$VSCTL" ]; } ||
        die "missing $VSWITCHD or $VSCTL (build: cargo build --release -p vswitch -p vswitch-ctl)"
    "$VSCTL" --help 2>&1 | grep -q set-uplink || die "$VSCTL has no set-uplink: build a vswitch with the gateway"
fi

# ---- helpers ---------------------------------------------------------------------------------
record() { # SETUP METRIC VALUE
    printf '{"setup":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" >>"$RAW"
}
record_detail() { # SETUP JSON
    printf '{"setup":"%s","detail":%s}\n' "$1" "$2" >>"$RAW"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
json_string() { report_py json-string; }

# c1, gw and wan with the two veth pairs; nothing in gw is configured yet.
net_up() {
    mkns "$C1"
    mkns "$GW"
    mkns "$WAN"
    ip -n "$GW" link add ctr type veth peer name eth0 netns "$C1"
    ip -n "$GW" link add up0 type veth peer name eth0 netns "$WAN"
    ip -n "$GW" link set ctr up
    ip -n "$GW" link set up0 up
    ip -n "$C1" addr add "$IP_C1/24" dev eth0
    ip -n "$C1" link set eth0 up
    ip -n "$C1" route add default via "$IP_GW"
    ip -n "$WAN" addr add "$IP_WAN/24" dev eth0
    ip -n "$WAN" link set eth0 up
}

net_down() {
    local pid ns
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    for ns in "${NSES[@]}"; do del_ns "$ns"; done
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
VSW_SOCK="" VSW_PID=""
vsctl_at() { # ARGS... (output shown on failure)
    local out
    out="$(timeout 10 "$VSCTL" --sock "$VSW_SOCK" "$@" 2>&1)" || die "vsctl $* failed: $out"
    printf '%s' "$out"
}
vsw_gw() {
    local d="$TMP/vsw" pid
    mkdir -p "$d"
    VSW_SOCK="$d/vswitchd.sock"
    LOGS+=("$d/vswitchd.log")
    ip netns exec "$GW" "$VSWITCHD" --sock "$VSW_SOCK" --db "$d/conf.json" "${VSW_ARGS[@]}" 2>"$d/vswitchd.log" &
    pid=$!
    PIDS+=("$pid")
    VSW_PID="$pid"
    wait_for 100 "$VSCTL" --sock "$VSW_SOCK" show || die "vswitchd does not answer on $VSW_SOCK"
    vsctl_at add-br br0 >/dev/null
    vsctl_at add-net br0 "$SUBNET" --gateway "$IP_GW" >/dev/null
    vsctl_at add-port br0 ctr >/dev/null
    vsctl_at set-uplink up0 --ip "$IP_UP/24" --gw "$IP_WAN" >/dev/null
    vsctl_at publish tcp "$PUB_PORT" "$IP_C1:$PUB_PORT" >/dev/null
    wait_for 100 sh -c "! timeout 10 '$VSCTL' --sock '$VSW_SOCK' show | grep -q ' down'" ||
        die "vswitchd: a port or the uplink is not up: $(vsctl_at show)"
    info "gw: vswitchd (pid $pid): $(vsctl_at show | tr -s ' ' | tr '\n' ';')"
}

# The address a TCP server in SERVER_NS on PORT sees a connection from CLIENT_NS to DST:PORT
# come from (the server picks a free port on its side when it is the published one).
peer_seen() { # SERVER_NS LISTEN_PORT CLIENT_NS DST_IP DST_PORT
    local out="$TMP/peer.txt" srv
    : >"$out"
    timeout 15 ip netns exec "$1" python3 -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("listening", flush=True)
c, a = s.accept()
print(a[0], flush=True)
' "$2" >"$out" 2>&1 &
    srv=$!
    PIDS+=("$srv")
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
measure_ping() { # SETUP RUN
    local out="$TMP/$1-ping-$2.txt" p50 p99 got sent
    run_wait timeout 120 ip netns exec "$C1" ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 "$IP_WAN" >"$out" 2>&1 ||
        die "$1: ping c1 -> wan failed: $(tail -n 3 "$out")"
    read -r p50 p99 got sent < <(python3 "$LIB" ping "$out")
    [ "$got" -ge $((PINGS * 95 / 100)) ] || die "$1: only $got of $sent pings answered"
    record "$1" ping_p50_ms "$p50"
    record "$1" ping_p99_ms "$p99"
    info "run $2: ping c1 -> wan x$PINGS at ${PING_INTERVAL}s: p50 $(dec 3 "$p50") ms, p99 $(dec 3 "$p99") ms ($got/$sent replies)"
}

measure_tcp() { # SETUP RUN KEY SERVER_NS LISTEN_PORT CLIENT_NS DST_IP WHAT
    local s="$1" run="$2" key="$3" sns="$4" port="$5" cns="$6" dst="$7" what="$8" json srv gbps retr
    json="$TMP/$s-$key-$run.json"
    timeout $((TCP_SECS + 40)) ip netns exec "$sns" iperf3 -s -1 -p "$port" >"$TMP/iperf3-server.log" 2>&1 &
    srv=$!
    PIDS+=("$srv")
    wait_for 100 sh -c "ip netns exec '$sns' ss -Hltn 'sport = :$port' | grep -q ." ||
        die "$s: iperf3 server in $sns did not start: $(cat "$TMP/iperf3-server.log")"
    run_wait timeout $((TCP_SECS + 30)) ip netns exec "$cns" iperf3 -c "$dst" -p "$port" -t "$TCP_SECS" -P 1 -J >"$json" 2>&1 ||
        die "$s: iperf3 $what failed: $(head -c 600 "$json")"
    wait "$srv" 2>/dev/null || true
    forget_pid "$srv"
    read -r gbps retr < <(python3 "$LIB" iperf "$json") || die "$s: cannot read iperf3 result $json"
    awk -v g="$gbps" 'BEGIN { exit !(g > 0) }' || die "$s: iperf3 $what moved nothing"
    record "$s" "$key" "$gbps"
    record "$s" "${key%_gbps}_retransmits" "$retr"
    info "run $run: TCP $what ${TCP_SECS}s, 1 stream: $(dec 2 "$gbps") Gbit/s ($retr retransmits)"
}

# Both setups must do NAT as Docker does before their figures mean anything.
check_nat() { # SETUP
    local seen ok=0
    for _ in $(seq 40); do
        if timeout 5 ip netns exec "$C1" ping -n -q -c 1 -W 1 "$IP_WAN" >/dev/null 2>&1; then
            ok=1
            break
        fi
        sleep 0.25
    done
    [ "$ok" = 1 ] || die "$1: c1 cannot ping wan ($IP_WAN) through the gateway"
    seen="$(peer_seen "$WAN" "$OUT_PORT" "$C1" "$IP_WAN" "$OUT_PORT")"
    [ "$seen" = "$IP_UP" ] || die "$1: wan saw c1's connection come from '$seen', not the uplink address $IP_UP (no masquerade)"
    info "checked: c1 -> wan:$OUT_PORT arrives from $seen (masqueraded)"
    seen="$(peer_seen "$C1" "$PUB_PORT" "$WAN" "$IP_UP" "$PUB_PORT")"
    [ "$seen" = "$IP_WAN" ] || die "$1: c1 saw wan's connection to $IP_UP:$PUB_PORT come from '$seen', not $IP_WAN"
    info "checked: wan -> $IP_UP:$PUB_PORT reaches c1:$PUB_PORT from $seen (published, client kept)"
}

# After the measurements: what the gateway counted.
record_gw() { # SETUP
    local s="$1" stats hwm summary
    if [ "$s" = vsw ]; then
        stats="$TMP/vsw-stats.json"
        vsctl_at --json stats >"$stats"
        hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$VSW_PID/status" 2>/dev/null || true)"
        record_detail "$s" "{\"kind\":\"vswitchd\",\"vmhwm_kib\":${hwm:-null},\"stats\":$(tr -d '\n' <"$stats")}"
        summary="$(report_py gateway-summary "$stats")"
        info "vswitchd: $summary; peak RSS ${hwm:-?} KiB"
    else
        record_detail "$s" "{\"kind\":\"iptables\",\"nat\":$(in_ns "$GW" iptables-save -c -t nat | json_string),\"conntrack_count\":$(in_ns "$GW" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo null)}"
        in_ns "$GW" iptables -t nat -L -v -n -x | awk '/MASQUERADE|DNAT/ { print "    iptables: " $0 }'
    fi
}

run_setup() { # SETUP
    local s="$1" r
    net_up
    case "$s" in
        vsw) vsw_gw ;;
        kernel) kernel_gw ;;
    esac
    check_nat "$s"
    for r in $(seq "$RUNS"); do
        timeout 10 ip netns exec "$C1" ping -n -q -c 3 -i 0.05 "$IP_WAN" >/dev/null || true
        measure_ping "$s" "$r"
        measure_tcp "$s" "$r" tcp_out_gbps "$WAN" "$OUT_PORT" "$C1" "$IP_WAN" "out c1 -> wan (masquerade)"
        measure_tcp "$s" "$r" tcp_in_gbps "$C1" "$PUB_PORT" "$WAN" "$IP_UP" "in wan -> $IP_UP:$PUB_PORT (published)"
    done
    record_gw "$s"
    net_down
}

# ---- run -------------------------------------------------------------------------------------
UPTIME_START="$(uptime)"
LOADAVG_START="$(loadavg)"
say "plan: ${SETUPS[*]}; $RUNS run(s) of TCP ${TCP_SECS}s 1 stream out and in, ping x$PINGS at ${PING_INTERVAL}s; namespaces $P-*"
info "uptime at start: $UPTIME_START"
for s in "${SETUPS[@]}"; do
    case "$s" in
        vsw) title="vswitchd gateway (add-net, set-uplink, publish)" ;;
        kernel) title="kernel gateway (Linux bridge, ip_forward, dockerd's iptables rules)" ;;
    esac
    say "$s: $title"
    run_setup "$s"
done

# ---- report ----------------------------------------------------------------------------------
export BENCH_DATE BENCH_CPUS BENCH_CPU_MODEL BENCH_KERNEL BENCH_UPTIME_START BENCH_UPTIME_END \
    BENCH_LOADAVG_START BENCH_LOADAVG_END BENCH_COMMIT BENCH_DIRTY BENCH_VSWITCHD_ARGS \
    BENCH_QUICK BENCH_SETUPS BENCH_TCP_SECS BENCH_RUNS BENCH_PINGS BENCH_PING_INTERVAL \
    BENCH_IPERF3 BENCH_IPTABLES BENCH_ELAPSED BENCH_BUILD_S
BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BENCH_CPUS="$(nproc)"
BENCH_CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
BENCH_KERNEL="$(uname -r)"
BENCH_UPTIME_START="$UPTIME_START"
BENCH_UPTIME_END="$(uptime)"
BENCH_LOADAVG_START="$LOADAVG_START"
BENCH_LOADAVG_END="$(loadavg)"
BENCH_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
BENCH_DIRTY=false
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- vswitch ctl nat Cargo.toml Cargo.lock 2>/dev/null)" ] || BENCH_DIRTY=true
BENCH_VSWITCHD_ARGS="$VSW_EXTRA"
BENCH_QUICK="$QUICK"
BENCH_SETUPS="${SETUPS[*]}"
BENCH_TCP_SECS="$TCP_SECS"
BENCH_RUNS="$RUNS"
BENCH_PINGS="$PINGS"
BENCH_PING_INTERVAL="$PING_INTERVAL"
BENCH_IPERF3="$( (iperf3 --version 2>/dev/null || true) | awk 'NR == 1 { print $2 }')"
BENCH_IPTABLES="${IPTABLES_VERSION:-not used}"
BENCH_ELAPSED=$(($(date +%s) - START_SECS))
BENCH_BUILD_S="$BUILD_SECS"

say "results (medians of $RUNS run(s); vswitchd / kernel: above 1 is better for TCP, below 1 for ping RTT)"
out="$TMP/results.json"
if [ "$SAVE" = 1 ]; then
    mkdir -p "$RESULTS"
    out="$RESULTS/nat-$(date +%Y%m%d-%H%M%S).json"
fi
report_py report "$RAW" "$out"
[ "$out" = "$TMP/results.json" ] || printf '\nraw results: %s (markdown: bash benches/nat.sh --table %s)\n' "${out#"$ROOT"/}" "${out#"$ROOT"/}"
echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL)"
echo "uptime at start: $UPTIME_START"
echo "uptime at end:   $BENCH_UPTIME_END"
