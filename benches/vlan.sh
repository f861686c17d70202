#!/usr/bin/env bash
# VLAN benchmark: the same 802.1Q setups built twice in one run, once with vswitchd and once
# with Open vSwitch's userspace datapath (datapath_type=netdev, userspace TSO), measured the
# same way, side by side.
#
#   sudo bash benches/vlan.sh             # full run (iperf3 5 s, 200 pings): about 1 minute
#   sudo bash benches/vlan.sh --quick     # smoke run (iperf3 1 s, 20 pings), saves nothing
#   bash benches/vlan.sh --table benches/results/vlan-<date>-<time>.json   # markdown table again
#
# Setups (h1 and h2 are host namespaces, each joined to a switch namespace by a veth pair):
#   access        one switch; h1p and h2p both access ports of VLAN 10
#                 (vswitchd: vsctl add-vlan br0 hNp 10 --access; OVS: tag=10)
#   trunk         two switches A and B, each in its own namespace with its own daemon(s):
#                 h1 on an access port of VLAN 10 on A, h2 the same on B, and a trunk port
#                 "trk" on each carrying VLANs 10 and 20 (vswitchd: add-vlan br0 trk 10,20;
#                 OVS: trunks=10,20), the two trunks joined by a veth pair
# Before measuring, it checks that h1 and h2 reach each other and that the switches learned
# the hosts' MACs in VLAN 10 (on B: h1's MAC on the trunk, so the frames crossed it tagged).
# Measured h1 -> h2 with the interfaces' default offloads: iperf3 TCP, 1 stream; ping RTT
# p50 (and p99, in the JSON).
#
# Everything (namespaces vv<pid>-*, a temp dir, the daemons it starts) is removed on exit,
# also on Ctrl-C or SIGTERM. It never touches a system Open vSwitch. Shares its helpers with
# benches/run.sh (benches/lib/common.sh) and parses ping, iperf3 and ip output with
# benches/lib/bench.py.
set -euo pipefail
START_SECS="$(date +%s)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LIB="$ROOT/benches/lib/bench.py"
RESULTS="$ROOT/benches/results"
SCRIPT_NAME=vlan.sh
# shellcheck source=benches/lib/common.sh
. "$ROOT/benches/lib/common.sh"

usage() {
    cat <<'EOF'
usage: sudo bash benches/vlan.sh [--quick] [--only vswitchd|ovs] [--no-build]
                                 [--save|--no-save] [--vswitchd-args "ARGS"]
       bash benches/vlan.sh --table FILE    print a saved result as a markdown table

  --quick              smoke run: iperf3 1 s, 20 pings (default: iperf3 5 s, 200 pings)
  --only LIST          comma-separated subset of vswitchd,ovs (default: both)
  --no-build           use the existing target/release binaries instead of running cargo build
  --save / --no-save   write benches/results/vlan-<date>-<time>.json (default: save unless
                       --quick, and only when both switches ran)
  --vswitchd-args ARGS extra arguments for every vswitchd, e.g. "--workers 1"
EOF
}

# ---- the report (python, also used by --table) ----------------------------------------------
# report RAW OUT: aggregate the raw JSON lines and the BENCH_* metadata into OUT, print a table.
# table FILE: print the markdown table of a saved result.
report_py() {
    python3 - "$@" <<'PY'
import json, os, sys

TOPOS = [("access", "access -> access, 1 switch"),
         ("trunk", "access -> trunk -> access, 2 switches")]
METRICS = [("tcp_gbps", "TCP 1 stream (Gbit/s)", "{:.2f}"),
           ("ping_p50_ms", "ping RTT p50 (ms)", "{:.3f}")]
SWITCHES = ["vswitchd", "ovs"]


def render(res, markdown):
    header = ["setup", "metric", "vswitchd", "OVS", "vswitchd/OVS"]
    rows = []
    for topo, title in TOPOS:
        t = res["results"].get(topo)
        if not t:
            continue
        for n, (key, label, f) in enumerate(METRICS):
            cells = [title if n == 0 or markdown else "", label]
            vals = [t.get(s, {}).get(key) for s in SWITCHES]
            cells += [f.format(v) if v is not None else "-" for v in vals]
            r = t.get("ratio_vswitchd_over_ovs", {}).get(key)
            cells.append(f"{r:.2f}" if r is not None else "-")
            rows.append(cells)
    out = []
    if markdown:
        out.append("| " + " | ".join(header) + " |")
        out.append("| --- | --- |" + " ---: |" * 3)
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        w = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for n, r in enumerate([header] + rows):
            out.append("  ".join([r[0].ljust(w[0]), r[1].ljust(w[1])] +
                                 [c.rjust(x) for c, x in zip(r[2:], w[2:])]))
            if n == 0:
                out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def report(raw, out_path):
    e = os.environ
    results = {}
    with open(raw, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            entry = results.setdefault(r["topo"], {}).setdefault(r["switch"], {})
            if "metric" in r:
                entry[r["metric"]] = r["value"]
            else:
                entry.setdefault("details", []).append(r["detail"])
    for t in results.values():
        v, o = t.get("vswitchd", {}), t.get("ovs", {})
        t["ratio_vswitchd_over_ovs"] = {
            k: v[k] / o[k] for k, _, _ in METRICS if v.get(k) is not None and o.get(k)}
    res = {
        "benchmark": "vlan",
        "date": e["BENCH_DATE"],
        "machine": {"cpus": int(e["BENCH_CPUS"]), "cpu_model": e["BENCH_CPU_MODEL"],
                    "kernel": e["BENCH_KERNEL"], "uptime_start": e["BENCH_UPTIME_START"],
                    "uptime_end": e["BENCH_UPTIME_END"]},
        "vswitch_commit": e["BENCH_COMMIT"],
        "vswitch_dirty": e["BENCH_DIRTY"] == "true",
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "options": {"quick": e["BENCH_QUICK"] == "1", "switches": e["BENCH_SWITCHES"].split(),
                    "tcp_seconds": int(e["BENCH_TCP_SECS"]), "tcp_streams": 1,
                    "pings": int(e["BENCH_PINGS"]),
                    "ping_interval_s": float(e["BENCH_PING_INTERVAL"]),
                    "ovs": "two ovs-vswitchd instances (one per switch namespace), "
                           "datapath_type=netdev, other_config:userspace-tso-enable=true"},
        "setups": {
            "access": "h1p, h2p: access ports of VLAN 10 on one switch "
                      "(vsctl add-vlan br0 hNp 10 --access / ovs tag=10)",
            "trunk": "switch A: h1p access VLAN 10, trk trunk 10,20; switch B: h2p access "
                     "VLAN 10, trk trunk 10,20; A's trk and B's trk joined by a veth "
                     "(vsctl add-vlan br0 trk 10,20 / ovs trunks=10,20)"},
        "tools": {"iperf3": e["BENCH_IPERF3"], "ovs": e["BENCH_OVS"]},
        "elapsed_s": int(e["BENCH_ELAPSED"]),
        "build_s": int(e["BENCH_BUILD_S"]),
        "results": results,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    print(render(res, markdown=False))


def main(a):
    if a[0] == "report":
        report(a[1], a[2])
    elif a[0] == "table":
        with open(a[1], encoding="utf-8") as f:
            print(render(json.load(f), markdown=True))
    elif a[0] == "fdb-has":  # FILE MAC VLAN PORT: vsctl --json fdb-show has the entry
        with open(a[1], encoding="utf-8") as f:
            d = json.load(f)
        ok = any(x["mac"].lower() == a[2].lower() and x["vlan"] == int(a[3])
                 and x["port"] == a[4] for x in d["entries"])
        sys.exit(0 if ok else 1)
    else:
        sys.exit("unknown subcommand " + a[0])


main(sys.argv[1:])
PY
}

# ---- options -------------------------------------------------------------------------------
parse_setup_opts "vswitchd,ovs" "$@"

SWITCHES=()
IFS=',' read -r -a only_list <<<"$ONLY"
for s in vswitchd ovs; do
    for t in "${only_list[@]}"; do
        case "$t" in vswitchd | ovs) ;; *) die "--only: unknown switch '$t' (vswitchd, ovs)" ;; esac
        if [ "$s" = "$t" ]; then
            SWITCHES+=("$s")
            break
        fi
    done
done
[ "${#SWITCHES[@]}" -gt 0 ] || die "--only selected nothing"
has_switch() {
    local s
    for s in "${SWITCHES[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

if [ "$QUICK" = 1 ]; then
    TCP_SECS=1 PINGS=20
else
    TCP_SECS=5 PINGS=200
fi
PING_INTERVAL=0.002
[ -n "$SAVE" ] || SAVE=$((1 - QUICK))

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, Open vSwitch): sudo bash benches/vlan.sh"

# ---- state, cleanup --------------------------------------------------------------------------
ID=$$
P="vv$ID"
H1="$P-h1"
H2="$P-h2"
NET="10.252.$((ID % 250 + 1))"
IP1="$NET.1"
IP2="$NET.2"
TMP="$(mktemp -d /tmp/vswitch-vlan-bench.XXXXXX)"
RAW="$TMP/raw.jsonl"
: >"$RAW"
bench_state
CONNECT_VIA="the switch(es)"

# ---- dependencies ----------------------------------------------------------------------------
say "dependencies"
declare -A PKG=(
    [ip]=iproute2 [ping]=iputils-ping [iperf3]=iperf3 [ss]=iproute2
    [python3]=python3 [timeout]=coreutils [awk]=gawk
)
if has_switch ovs; then
    pkg_add_ovs
fi
install_deps

# ---- build -----------------------------------------------------------------------------------
VSWITCHD="$ROOT/target/release/vswitchd"
VSCTL="$ROOT/target/release/vsctl"
BUILD_SECS=0
if has_switch vswitchd; then
    build_release
fi

# ---- helpers ---------------------------------------------------------------------------------
record() { # TOPO SWITCH METRIC VALUE
    printf '{"topo":"%s","switch":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" "$4" >>"$RAW"
}
record_detail() { # TOPO SWITCH JSON
    printf '{"topo":"%s","switch":"%s","detail":%s}\n' "$1" "$2" "$3" >>"$RAW"
}
host_up() { # N SWITCH_NS: host namespace P-hN, veth hNp (switch side) <-> eth0 (host side)
    local n="$1" sw="$2"
    mkns "$P-h$n"
    ip -n "$sw" link add "h${n}p" type veth peer name eth0 netns "$P-h$n"
    ip -n "$sw" link set "h${n}p" up
    ip -n "$P-h$n" addr add "$NET.$n/24" dev eth0
    ip -n "$P-h$n" link set eth0 up
}

# The namespaces of one topology. access: one switch namespace P-sw with h1p and h2p.
# trunk: P-swa with h1p and trk, P-swb with h2p and trk, the two trk joined by a veth pair.
topo_up() { # TOPO
    case "$1" in
        access)
            mkns "$P-sw"
            host_up 1 "$P-sw"
            host_up 2 "$P-sw"
            ;;
        trunk)
            mkns "$P-swa"
            mkns "$P-swb"
            host_up 1 "$P-swa"
            host_up 2 "$P-swb"
            ip -n "$P-swa" link add trk type veth peer name trk netns "$P-swb"
            ip -n "$P-swa" link set trk up
            ip -n "$P-swb" link set trk up
            ;;
    esac
}

topo_down() {
    local pid ns
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    for ns in "${NSES[@]}"; do del_ns "$ns"; done
}

# ---- measurements ----------------------------------------------------------------------------
measure_ping() { # TOPO SWITCH
    local out="$TMP/$1-$2-ping.txt" p50 p99 got sent
    run_wait timeout 120 ip netns exec "$H1" ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 "$IP2" >"$out" 2>&1 ||
        die "$1/$2: ping failed: $(tail -n 3 "$out")"
    read -r p50 p99 got sent < <(python3 "$LIB" ping "$out")
    [ "$got" -ge $((PINGS * 95 / 100)) ] || die "$1/$2: only $got of $sent pings answered"
    record "$1" "$2" ping_p50_ms "$p50"
    record "$1" "$2" ping_p99_ms "$p99"
    record "$1" "$2" ping_replies "$got"
    info "ping x$PINGS at ${PING_INTERVAL}s: p50 $(dec 3 "$p50") ms, p99 $(dec 3 "$p99") ms ($got/$sent replies)"
}

measure_tcp() { # TOPO SWITCH
    local port json srv gbps retr
    port=$((5201 + RANDOM % 2000))
    json="$TMP/$1-$2-tcp.json"
    timeout $((TCP_SECS + 40)) ip netns exec "$H2" iperf3 -s -1 -B "$IP2" -p "$port" >"$TMP/iperf3-server.log" 2>&1 &
    srv=$!
    PIDS+=("$srv")
    wait_for 100 sh -c "ip netns exec '$H2' ss -Hltn 'sport = :$port' | grep -q ." ||
        die "$1/$2: iperf3 server did not start"
    run_wait timeout $((TCP_SECS + 30)) ip netns exec "$H1" iperf3 -c "$IP2" -p "$port" -t "$TCP_SECS" -P 1 -J >"$json" 2>&1 ||
        die "$1/$2: iperf3 failed: $(head -c 600 "$json")"
    wait "$srv" 2>/dev/null || true
    forget_pid "$srv"
    read -r gbps retr < <(python3 "$LIB" iperf "$json") || die "$1/$2: cannot read iperf3 result $json"
    awk -v g="$gbps" 'BEGIN { exit !(g > 0) }' || die "$1/$2: iperf3 moved nothing"
    record "$1" "$2" tcp_gbps "$gbps"
    record "$1" "$2" tcp_retransmits "$retr"
    info "TCP ${TCP_SECS}s, 1 stream: $(dec 2 "$gbps") Gbit/s ($retr retransmits)"
}

measure() { # TOPO SWITCH
    # A few pings so ARP and the MAC tables are warm.
    timeout 10 ip netns exec "$H1" ping -n -q -c 3 -i 0.05 "$IP2" >/dev/null
    measure_ping "$1" "$2"
    measure_tcp "$1" "$2"
}

# ---- vswitchd --------------------------------------------------------------------------------
VSW_SOCKS=()
vsw_start() { # NS NAME -> appends the socket to VSW_SOCKS
    local ns="$1" d="$TMP/vsw-$2" pid
    mkdir -p "$d"
    LOGS+=("$d/vswitchd.log")
    ip netns exec "$ns" "$VSWITCHD" --sock "$d/vswitchd.sock" --db "$d/conf.json" "${VSW_ARGS[@]}" 2>"$d/vswitchd.log" &
    pid=$!
    PIDS+=("$pid")
    wait_for 100 "$VSCTL" --sock "$d/vswitchd.sock" show || die "vswitchd $2 does not answer on $d/vswitchd.sock"
    VSW_SOCKS+=("$d/vswitchd.sock")
}
vsctl_at() { # SOCK ARGS... (output shown on failure)
    local sock="$1" out
    shift
    out="$(timeout 10 "$VSCTL" --sock "$sock" "$@" 2>&1)" || die "vsctl $* failed: $out"
    printf '%s' "$out"
}
vsw_ports_up() { # SOCK
    wait_for 100 sh -c "! timeout 10 '$VSCTL' --sock '$1' show | grep -q ' down'" ||
        die "vswitchd ports not up: $(vsctl_at "$1" show)"
}
vsw_fdb_check() { # SOCK MAC VLAN PORT WHAT
    local f="$TMP/fdb.json"
    for _ in $(seq 50); do
        vsctl_at "$1" --json fdb-show br0 >"$f"
        report_py fdb-has "$f" "$2" "$3" "$4" && return 0
        sleep 0.1
    done
    die "vswitchd did not learn $5 ($2) in VLAN $3 on $4: $(vsctl_at "$1" fdb-show br0)"
}

run_vswitchd() { # TOPO
    local topo="$1" s1 s2 mac1 mac2 n
    VSW_SOCKS=()
    mac1="$(mac_of "$H1" eth0)"
    mac2="$(mac_of "$H2" eth0)"
    if [ "$topo" = access ]; then
        vsw_start "$P-sw" sw
        s1="${VSW_SOCKS[0]}"
        vsctl_at "$s1" add-br br0 >/dev/null
        for n in 1 2; do
            vsctl_at "$s1" add-port br0 "h${n}p" >/dev/null
            vsctl_at "$s1" add-vlan br0 "h${n}p" 10 --access >/dev/null
        done
        vsw_ports_up "$s1"
        info "$(vsctl_at "$s1" list-vlans br0 | tr '\n' ';' | tr -s ' ')"
        connectivity "access/vswitchd"
        vsw_fdb_check "$s1" "$mac1" 10 h1p h1
        vsw_fdb_check "$s1" "$mac2" 10 h2p h2
    else
        vsw_start "$P-swa" swa
        vsw_start "$P-swb" swb
        s1="${VSW_SOCKS[0]}"
        s2="${VSW_SOCKS[1]}"
        for n in 1 2; do
            local s="${VSW_SOCKS[$((n - 1))]}"
            vsctl_at "$s" add-br br0 >/dev/null
            vsctl_at "$s" add-port br0 "h${n}p" >/dev/null
            vsctl_at "$s" add-port br0 trk >/dev/null
            vsctl_at "$s" add-vlan br0 "h${n}p" 10 --access >/dev/null
            vsctl_at "$s" add-vlan br0 trk 10,20 >/dev/null
            vsw_ports_up "$s"
        done
        info "A: $(vsctl_at "$s1" list-vlans br0 | tr '\n' ';' | tr -s ' ')"
        info "B: $(vsctl_at "$s2" list-vlans br0 | tr '\n' ';' | tr -s ' ')"
        connectivity "trunk/vswitchd"
        vsw_fdb_check "$s1" "$mac1" 10 h1p "h1 on A"
        vsw_fdb_check "$s1" "$mac2" 10 trk "h2 on A"
        vsw_fdb_check "$s2" "$mac1" 10 trk "h1 on B"
        vsw_fdb_check "$s2" "$mac2" 10 h2p "h2 on B"
    fi
    info "checked: h1 <-> h2 ping; MACs learned in VLAN 10"
    measure "$topo" vswitchd
    local s i=0 st
    for s in "${VSW_SOCKS[@]}"; do
        st="$(timeout 10 "$VSCTL" --sock "$s" --json stats br0 2>/dev/null | tr -d '\n')"
        [ -z "$st" ] || record_detail "$topo" vswitchd "{\"kind\":\"vsctl_stats\",\"switch\":$i,\"stats\":$st}"
        i=$((i + 1))
    done
}

# ---- Open vSwitch (userspace datapath) -------------------------------------------------------
# One ovsdb-server + ovs-vswitchd per switch namespace (ovs_start, in benches/lib/common.sh).
OVS_DIRS=()
ovs_up() { # NS NAME -> appends its directory to OVS_DIRS
    ovs_start "$1" "$TMP/ovs-$2" "ovs $2"
    OVS_DIRS+=("$TMP/ovs-$2")
}
ovs_fdb_check() { # DIR MAC VLAN PORT WHAT
    local d="$1" ofport out
    ofport="$(ovs_vsctl "$d" get Interface "$4" ofport)"
    for _ in $(seq 50); do
        out="$(ovs_appctl "$d" fdb/show br0 2>&1 || true)"
        awk -v p="$ofport" -v v="$3" -v m="${2,,}" '$1 == p && $2 == v && tolower($3) == m { f = 1 } END { exit !f }' <<<"$out" &&
            return 0
        sleep 0.1
    done
    die "ovs did not learn $5 ($2) in VLAN $3 on $4 (ofport $ofport): $out"
}

run_ovs() { # TOPO
    local topo="$1" d mac1 mac2 kmod_before=false kmod_after=false
    [ -d /sys/module/openvswitch ] && kmod_before=true
    OVS_DIRS=()
    mac1="$(mac_of "$H1" eth0)"
    mac2="$(mac_of "$H2" eth0)"
    if [ "$topo" = access ]; then
        ovs_up "$P-sw" sw
        d="${OVS_DIRS[0]}"
        ovs_vsctl "$d" add-br br0 -- set bridge br0 datapath_type=netdev \
            -- add-port br0 h1p tag=10 -- add-port br0 h2p tag=10
        ovs_check_netdev "$d"
        connectivity "access/ovs"
        ovs_fdb_check "$d" "$mac1" 10 h1p h1
        ovs_fdb_check "$d" "$mac2" 10 h2p h2
    else
        ovs_up "$P-swa" swa
        ovs_up "$P-swb" swb
        local n
        for n in 1 2; do
            d="${OVS_DIRS[$((n - 1))]}"
            ovs_vsctl "$d" add-br br0 -- set bridge br0 datapath_type=netdev \
                -- add-port br0 "h${n}p" tag=10 -- add-port br0 trk trunks=10,20
            ovs_check_netdev "$d"
        done
        connectivity "trunk/ovs"
        ovs_fdb_check "${OVS_DIRS[0]}" "$mac1" 10 h1p "h1 on A"
        ovs_fdb_check "${OVS_DIRS[0]}" "$mac2" 10 trk "h2 on A"
        ovs_fdb_check "${OVS_DIRS[1]}" "$mac1" 10 trk "h1 on B"
        ovs_fdb_check "${OVS_DIRS[1]}" "$mac2" 10 h2p "h2 on B"
    fi
    info "checked: netdev datapath, userspace TSO on; h1 <-> h2 ping; MACs learned in VLAN 10"
    measure "$topo" ovs
    [ -d /sys/module/openvswitch ] && kmod_after=true
    record_detail "$topo" ovs "{\"kind\":\"ovs\",\"instances\":${#OVS_DIRS[@]},\"datapath\":\"netdev\",\"userspace_tso\":true,\"kernel_module_loaded_before\":$kmod_before,\"kernel_module_loaded_after\":$kmod_after}"
}

# ---- run -------------------------------------------------------------------------------------
UPTIME_START="$(uptime)"
say "plan: ${SWITCHES[*]} on access and trunk; TCP ${TCP_SECS}s 1 stream, ping x$PINGS; subnet $NET.0/24"
info "uptime at start: $UPTIME_START"
for topo in access trunk; do
    for sw in "${SWITCHES[@]}"; do
        case "$topo" in
            access) title="access -> access on one switch (VLAN 10)" ;;
            trunk) title="access -> trunk (10,20) -> access across two switches" ;;
        esac
        say "$topo / $sw: $title"
        topo_up "$topo"
        "run_$sw" "$topo"
        topo_down
    done
done

# ---- report ----------------------------------------------------------------------------------
export BENCH_DATE BENCH_CPUS BENCH_CPU_MODEL BENCH_KERNEL BENCH_UPTIME_START BENCH_UPTIME_END \
    BENCH_COMMIT BENCH_DIRTY BENCH_VSWITCHD_ARGS BENCH_QUICK BENCH_SWITCHES BENCH_TCP_SECS \
    BENCH_PINGS BENCH_PING_INTERVAL BENCH_IPERF3 BENCH_OVS BENCH_ELAPSED BENCH_BUILD_S
BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BENCH_CPUS="$(nproc)"
BENCH_CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
BENCH_KERNEL="$(uname -r)"
BENCH_UPTIME_START="$UPTIME_START"
BENCH_UPTIME_END="$(uptime)"
BENCH_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
BENCH_DIRTY=false
[ -z "$(git -C "$ROOT" status --porcelain -- vswitch ctl Cargo.toml Cargo.lock 2>/dev/null)" ] || BENCH_DIRTY=true
BENCH_VSWITCHD_ARGS="$VSW_EXTRA"
BENCH_QUICK="$QUICK"
BENCH_SWITCHES="${SWITCHES[*]}"
BENCH_TCP_SECS="$TCP_SECS"
BENCH_PINGS="$PINGS"
BENCH_PING_INTERVAL="$PING_INTERVAL"
BENCH_IPERF3="$( (iperf3 --version 2>/dev/null || true) | awk 'NR == 1 { print $2 }')"
BENCH_OVS="$( (ovs-vswitchd --version 2>/dev/null || true) | awk '/Open vSwitch/ { print $NF; exit }')"
BENCH_ELAPSED=$(($(date +%s) - START_SECS))
BENCH_BUILD_S="$BUILD_SECS"

say "results (vswitchd/OVS: above 1 is better for TCP, below 1 for ping RTT)"
out="$TMP/results.json"
if [ "$SAVE" = 1 ] && [ "${#SWITCHES[@]}" -eq 2 ]; then
    mkdir -p "$RESULTS"
    out="$RESULTS/vlan-$(date +%Y%m%d-%H%M%S).json"
fi
report_py report "$RAW" "$out"
[ "$out" = "$TMP/results.json" ] || printf '\nraw results: %s (markdown: bash benches/vlan.sh --table %s)\n' "${out#"$ROOT"/}" "${out#"$ROOT"/}"
echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL)"
echo "uptime at start: $UPTIME_START"
echo "uptime at end:   $BENCH_UPTIME_END"
