#!/usr/bin/env bash
# VXLAN benchmark: the same container-to-container overlay built three ways in one run, on
# the same kind of namespaces, measured the same way, side by side:
#
#   vsw      vswitchd <-> vswitchd   each host runs its own vswitchd: bridge br0, the
#                                    container's veth as an afpacket port, and
#                                    vsctl add-tunnel br0 vx --vni 42 --remote <other host>
#   mixed    vswitchd <-> kernel     host A as above; host B plain Linux: a kernel vxlan
#                                    device (ip link add vx0 type vxlan id 42 remote A
#                                    local B dstport 4789 dev ul) and the container's veth
#                                    in a kernel bridge
#   kernel   kernel <-> kernel       both hosts as B above (the reference)
#
#   sudo bash benches/vxlan.sh              # full run (iperf3 5 s each way, 200 pings)
#   sudo bash benches/vxlan.sh --quick      # smoke run (iperf3 1 s, 20 pings), saves nothing
#   sudo bash benches/vxlan.sh --quick --only kernel
#   bash benches/vxlan.sh --table benches/results/vxlan-<date>-<time>.json   # markdown again
#
# Namespaces (all named vx<pid>-*): hosts A and B joined by an underlay veth pair "ul"
# (MTU 1500, 198.51.100.1/24 on A, .2 on B); containers cA and cB, each joined to its host
# by a veth pair (eth0 in the container, "ctr" on the host, both MTU 1450), 10.77.0.1/24
# and 10.77.0.2/24. VNI 42, UDP port 4789. Every vswitchd runs inside its host namespace
# (ip netns exec) with its own --sock and --db in a temporary directory.
#
# Measured cA -> cB with the interfaces' default offloads (no ethtool): iperf3 TCP, 1 stream,
# in both directions (cA sends; then iperf3 -R, cB sends): in the mixed setup the first
# is vswitchd encap + kernel decap, the second kernel encap + vswitchd decap (whole
# super-packets from the kernel); ping RTT p50 and p99 of 200 pings at 5 ms. Before
# measuring it checks that cA and cB ping each other through the tunnel. After each
# vswitchd setup it records `vsctl --json show` (per-remote counters) and `vsctl --json
# stats` (VTEP drops), and for every setup the underlay's packet counters.
#
# Everything it creates (namespaces vx<pid>-*, a temp dir, the daemons) is removed on exit,
# also on Ctrl-C or SIGTERM. Uses the shell helpers of benches/lib/common.sh.
set -euo pipefail
START_SECS="$(date +%s)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LIB="$ROOT/benches/lib/bench.py" # used by common.sh's mac_of only
RESULTS="$ROOT/benches/results"
SCRIPT_NAME=vxlan.sh
# shellcheck source=benches/lib/common.sh
. "$ROOT/benches/lib/common.sh"

usage() {
    cat <<'EOF'
usage: sudo bash benches/vxlan.sh [--quick] [--only LIST] [--no-build] [--save|--no-save]
                                  [--vswitchd-args "ARGS"]
       bash benches/vxlan.sh --table FILE    print a saved result as a markdown table

  --quick              smoke run: iperf3 1 s, 20 pings (default: iperf3 5 s, 200 pings)
  --only LIST          comma-separated subset of vsw,mixed,kernel (also vsw-vsw, vsw-kernel,
                       kernel-kernel; default: all three)
  --no-build           use the existing target/release binaries instead of running
                       cargo build --release -p vswitch -p vswitch-ctl
  --save / --no-save   write benches/results/vxlan-<date>-<time>.json (default: save unless
                       --quick, and only when all three setups ran)
  --vswitchd-args ARGS extra arguments for every vswitchd, e.g. "--workers 1"
EOF
}

# ---- parsing and the report (python, also used by --table) ---------------------------------
report_py() {
    python3 - "$@" <<'PY'
import json, math, os, re, sys

SETUPS = [("vsw", "vsw<->vsw"), ("mixed", "vsw<->kernel"), ("kernel", "kernel<->kernel")]
METRICS = [("tcp_gbps", "TCP cA->cB, 1 stream (Gbit/s)", "{:.2f}"),
           ("tcp_rev_gbps", "TCP cB->cA (-R), 1 stream (Gbit/s)", "{:.2f}"),
           ("ping_p50_ms", "ping RTT p50 (ms)", "{:.3f}"),
           ("ping_p99_ms", "ping RTT p99 (ms)", "{:.3f}")]
RATIOS = [("vsw", "vsw/kernel"), ("mixed", "mixed/kernel")]


def percentile(values, p):
    s = sorted(values)
    return s[max(1, math.ceil(p / 100.0 * len(s))) - 1]


def render(res, markdown):
    r = res["results"]
    header = ["metric"] + [t for _, t in SETUPS] + ["vsw<->vsw / kernel", "vsw<->kernel / kernel"]
    rows = []
    for key, label, f in METRICS:
        cells = [label]
        for s, _ in SETUPS:
            v = r.get(s, {}).get(key)
            cells.append(f.format(v) if v is not None else "-")
        for s, _ in RATIOS:
            x = r.get(s, {}).get("ratio_over_kernel", {}).get(key)
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
    results = {}
    with open(raw, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            x = json.loads(line)
            entry = results.setdefault(x["setup"], {})
            if "metric" in x:
                entry[x["metric"]] = x["value"]
            else:
                entry.setdefault("details", []).append(x["detail"])
    k = results.get("kernel", {})
    for s, _ in RATIOS:
        if s in results and k:
            v = results[s]
            v["ratio_over_kernel"] = {m: v[m] / k[m] for m, _, _ in METRICS
                                      if v.get(m) is not None and k.get(m)}
    res = {
        "benchmark": "vxlan",
        "date": e["BENCH_DATE"],
        "machine": {"cpus": int(e["BENCH_CPUS"]), "cpu_model": e["BENCH_CPU_MODEL"],
                    "kernel": e["BENCH_KERNEL"],
                    "kernel_vxlan": e["BENCH_KERNEL_VXLAN"],
                    "uptime_start": e["BENCH_UPTIME_START"],
                    "uptime_end": e["BENCH_UPTIME_END"],
                    "loadavg_start": e["BENCH_LOADAVG_START"],
                    "loadavg_end": e["BENCH_LOADAVG_END"]},
        "vswitch_commit": e["BENCH_COMMIT"],
        "vswitch_dirty": e["BENCH_DIRTY"] == "true",
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "options": {"quick": e["BENCH_QUICK"] == "1", "setups": e["BENCH_SETUPS"].split(),
                    "tcp_seconds": int(e["BENCH_TCP_SECS"]), "tcp_streams": 1,
                    "pings": int(e["BENCH_PINGS"]),
                    "ping_interval_s": float(e["BENCH_PING_INTERVAL"]),
                    "offloads": "interface defaults (no ethtool)"},
        "network": {"underlay": "veth pair ul between host namespaces A and B, MTU 1500, "
                                "198.51.100.1/24 (A), 198.51.100.2/24 (B)",
                    "containers": "cA, cB: eth0 MTU 1450, 10.77.0.1/24, 10.77.0.2/24; "
                                  "host end 'ctr', MTU 1450",
                    "vni": 42, "dstport": 4789},
        "setups": {
            "vsw": "A and B each run vswitchd (in the host namespace): add-br br0; "
                   "add-port br0 ctr (afpacket); add-tunnel br0 vx --vni 42 --remote <other>",
            "mixed": "A: vswitchd as in vsw; B: ip link add vx0 type vxlan id 42 remote A "
                     "local B dstport 4789 dev ul, vx0 and ctr in a kernel bridge br0. "
                     "cA->cB: vswitchd encap, kernel decap; cB->cA: kernel encap, "
                     "vswitchd decap",
            "kernel": "A and B both as B in mixed (kernel vxlan device + kernel bridge)"},
        "reference": {"kernel_before_tunnel_code": {"tcp_gbps": 24.2, "ping_p50_ms": 0.045,
                      "note": "kernel<->kernel measured on this machine before any tunnel "
                              "code existed (issue 7)"}},
        "tools": {"iperf3": e["BENCH_IPERF3"]},
        "elapsed_s": int(e["BENCH_ELAPSED"]),
        "build_s": int(e["BENCH_BUILD_S"]),
        "results": results,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    print(render(res, markdown=False))


def ping(path):
    times, sent = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.search(r"time=([0-9.]+) ms", line)
            if m:
                times.append(float(m.group(1)))
            m = re.match(r"(\d+) packets transmitted", line)
            if m:
                sent = int(m.group(1))
    if not times:
        sys.exit(f"no ping replies in {path}")
    print(f"{percentile(times, 50):.4f} {percentile(times, 99):.4f} {len(times)} {sent}")


def iperf(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    if "error" in d:
        sys.exit(f"iperf3 reported an error: {d['error']}")
    end = d["end"]
    print(f"{end['sum_received']['bits_per_second'] / 1e9:.4f} "
          f"{end.get('sum_sent', {}).get('retransmits', 0)}")


def tunnel_summary(show_path, stats_path):
    """One line per remote (counters), one per VTEP (drops); exit 1 if no tunnel traffic."""
    with open(show_path, encoding="utf-8") as f:
        show = json.load(f)
    with open(stats_path, encoding="utf-8") as f:
        stats = json.load(f)
    ok = False
    for b in show.get("bridges", []):
        for p in b.get("ports", []):
            t = p.get("tunnel")
            if p.get("type") != "vxlan" or not t:
                continue
            for r in t.get("remotes", []):
                print(f"{p['name']} vni {t['vni']} remote {r['ip']} (mtu {r['mtu']}): "
                      f"tx {r['tx_packets']} pkts {r['tx_bytes']} B, "
                      f"rx {r['rx_packets']} pkts {r['rx_bytes']} B")
                ok = ok or (r["tx_packets"] > 0 and r["rx_packets"] > 0)
    for v in stats.get("vteps", []):
        drops = {k: n for k, n in v.get("drops", {}).items() if n}
        print(f"vtep {v['local']}:{v['dstport']}: rx {v['rx_datagrams']} datagrams, "
              f"drops {drops or 'none'}")
    sys.exit(0 if ok else 1)


def link_stats(path):
    """ip -s -j link show DEV -> {rx,tx}_{packets,bytes,dropped} as a JSON object."""
    with open(path, encoding="utf-8") as f:
        d = json.load(f)[0]
    s = d.get("stats64", d.get("stats", {}))
    out = {f"{dir}_{k}": s.get(dir, {}).get(k) for dir in ("rx", "tx")
           for k in ("packets", "bytes", "dropped")}
    out["mtu"] = d.get("mtu")
    print(json.dumps(out))


def main(a):
    if a[0] == "report":
        report(a[1], a[2])
    elif a[0] == "table":
        with open(a[1], encoding="utf-8") as f:
            print(render(json.load(f), markdown=True))
    elif a[0] == "ping":
        ping(a[1])
    elif a[0] == "iperf":
        iperf(a[1])
    elif a[0] == "tunnel-summary":
        tunnel_summary(a[1], a[2])
    elif a[0] == "link-stats":
        link_stats(a[1])
    else:
        sys.exit("unknown subcommand " + a[0])


main(sys.argv[1:])
PY
}

# ---- options -------------------------------------------------------------------------------
parse_setup_opts "vsw,mixed,kernel" "$@"

SETUPS=()
IFS=',' read -r -a only_list <<<"$ONLY"
for t in "${only_list[@]}"; do
    case "$t" in
        vsw | vsw-vsw | vswitchd) ;;
        mixed | vsw-kernel | kernel-vsw) ;;
        kernel | kernel-kernel) ;;
        *) die "--only: unknown setup '$t' (vsw, mixed, kernel)" ;;
    esac
done
for s in vsw mixed kernel; do
    for t in "${only_list[@]}"; do
        case "$t" in
            vsw-vsw | vswitchd) t=vsw ;;
            vsw-kernel | kernel-vsw) t=mixed ;;
            kernel-kernel) t=kernel ;;
        esac
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
    TCP_SECS=1 PINGS=20
else
    TCP_SECS=5 PINGS=200
fi
PING_INTERVAL=0.005
if [ -z "$SAVE" ]; then
    SAVE=0
    [ "$QUICK" = 1 ] || [ "${#SETUPS[@]}" -ne 3 ] || SAVE=1
fi

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): sudo bash benches/vxlan.sh"

# ---- state, cleanup --------------------------------------------------------------------------
ID=$$
P="vx$ID"
HA="$P-A" HB="$P-B" CA="$P-cA" CB="$P-cB"
UL_A=198.51.100.1 UL_B=198.51.100.2
IP_CA=10.77.0.1 IP_CB=10.77.0.2
VNI=42 DSTPORT=4789
TMP="$(mktemp -d /tmp/vswitch-vxlan-bench.XXXXXX)"
RAW="$TMP/raw.jsonl"
: >"$RAW"
bench_state
# connectivity (common.sh) pings between H1/IP1 and H2/IP2.
H1="$CA" H2="$CB" IP1="$IP_CA" IP2="$IP_CB"
CONNECT_VIA="the VXLAN tunnel"

# ---- dependencies ----------------------------------------------------------------------------
say "dependencies"
# shellcheck disable=SC2034 # read by install_deps
declare -A PKG=(
    [ip]=iproute2 [ping]=iputils-ping [iperf3]=iperf3 [ss]=iproute2
    [python3]=python3 [timeout]=coreutils [awk]=gawk
)
install_deps
KERNEL_VXLAN="$( (zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null || true) | grep -E '^CONFIG_VXLAN=' || true)"
if [ -z "$KERNEL_VXLAN" ]; then
    modprobe vxlan 2>/dev/null || die "the kernel has no vxlan (CONFIG_VXLAN): the kernel setups cannot run"
    KERNEL_VXLAN="module vxlan (modprobe)"
fi
info "kernel vxlan: $KERNEL_VXLAN"

# ---- build -----------------------------------------------------------------------------------
VSWITCHD="$ROOT/target/release/vswitchd"
VSCTL="$ROOT/target/release/vsctl"
BUILD_SECS=0
if has_setup vsw || has_setup mixed; then
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
    "$VSCTL" add-tunnel --help >/dev/null 2>&1 || "$VSCTL" --help 2>&1 | grep -q add-tunnel ||
        die "$VSCTL has no add-tunnel: build a vswitch with tunnel ports"
fi

# ---- helpers ---------------------------------------------------------------------------------
record() { # SETUP METRIC VALUE
    printf '{"setup":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" >>"$RAW"
}
record_detail() { # SETUP JSON
    printf '{"setup":"%s","detail":%s}\n' "$1" "$2" >>"$RAW"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Host namespaces A and B with the underlay between them, container namespaces cA and cB
# with a veth each to their host (host end "ctr", not yet attached to anything).
net_up() {
    local h c ip
    mkns "$HA"
    mkns "$HB"
    mkns "$CA"
    mkns "$CB"
    ip -n "$HA" link add ul mtu 1500 type veth peer name ul mtu 1500 netns "$HB"
    ip -n "$HA" addr add "$UL_A/24" dev ul
    ip -n "$HB" addr add "$UL_B/24" dev ul
    for h in A B; do
        if [ "$h" = A ]; then c="$CA" ip="$IP_CA"; else c="$CB" ip="$IP_CB"; fi
        ip -n "$P-$h" link set ul up
        ip -n "$P-$h" link add ctr mtu 1450 type veth peer name eth0 mtu 1450 netns "$c"
        ip -n "$P-$h" link set ctr up
        ip -n "$c" addr add "$ip/24" dev eth0
        ip -n "$c" link set eth0 up
    done
    timeout 10 ip netns exec "$HA" ping -n -q -c 1 -W 2 "$UL_B" >/dev/null ||
        die "the underlay does not work: A ($UL_A) cannot ping B ($UL_B)"
}

net_down() {
    local pid ns
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    for ns in "${NSES[@]}"; do del_ns "$ns"; done
}

# Host H (A or B) as plain Linux: a kernel vxlan device to the other host and a kernel
# bridge with it and the container's veth.
kernel_host() { # A|B
    local ns="$P-$1" local_ip remote_ip
    if [ "$1" = A ]; then local_ip="$UL_A" remote_ip="$UL_B"; else local_ip="$UL_B" remote_ip="$UL_A"; fi
    ip -n "$ns" link add vx0 type vxlan id "$VNI" remote "$remote_ip" local "$local_ip" dstport "$DSTPORT" dev ul
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set vx0 master br0
    ip -n "$ns" link set ctr master br0
    ip -n "$ns" link set vx0 up
    ip -n "$ns" link set br0 up
    info "host $1: kernel vxlan vx0 (mtu $(ip -n "$ns" -o link show vx0 | sed 's/.* mtu \([0-9]*\).*/\1/'), vni $VNI, remote $remote_ip, local $local_ip, dstport $DSTPORT) + ctr in kernel bridge br0"
}

# Host H (A or B) running vswitchd in its namespace: br0, ctr as afpacket port, tunnel vx;
# its socket, database and log in a directory of its own per setup.
declare -A VSW_SOCK=() VSW_PID=()
vsctl_at() { # SOCK ARGS... (output shown on failure)
    local sock="$1" out
    shift
    out="$(timeout 10 "$VSCTL" --sock "$sock" "$@" 2>&1)" || die "vsctl $* failed: $out"
    printf '%s' "$out"
}
vsw_host() { # SETUP A|B
    local h="$2" ns="$P-$2" d="$TMP/vsw-$1-$2" remote_ip pid sock
    if [ "$h" = A ]; then remote_ip="$UL_B"; else remote_ip="$UL_A"; fi
    mkdir -p "$d"
    sock="$d/vswitchd.sock"
    LOGS+=("$d/vswitchd.log")
    ip netns exec "$ns" "$VSWITCHD" --sock "$sock" --db "$d/conf.json" "${VSW_ARGS[@]}" 2>"$d/vswitchd.log" &
    pid=$!
    PIDS+=("$pid")
    wait_for 100 "$VSCTL" --sock "$sock" show || die "vswitchd on $h does not answer on $sock"
    VSW_SOCK[$h]="$sock"
    VSW_PID[$h]="$pid"
    vsctl_at "$sock" add-br br0 >/dev/null
    vsctl_at "$sock" add-port br0 ctr >/dev/null
    vsctl_at "$sock" add-tunnel br0 vx --vni "$VNI" --remote "$remote_ip" >/dev/null
    wait_for 100 sh -c "! timeout 10 '$VSCTL' --sock '$sock' show | grep -q ' down'" ||
        die "vswitchd on $h: ports not up: $(vsctl_at "$sock" show)"
    info "host $h: vswitchd (pid $pid): $(vsctl_at "$sock" show | tr -s ' ' | tr '\n' ';')"
}

# After the measurements: record each vswitchd's show/stats (per-remote counters, VTEP drops)
# and its peak RSS; print the counters; fail if a tunnel moved nothing.
vsw_record() { # SETUP
    local s="$1" h sock show stats pid hwm
    for h in A B; do
        sock="${VSW_SOCK[$h]:-}"
        [ -n "$sock" ] || continue
        show="$TMP/$s-$h-show.json"
        stats="$TMP/$s-$h-stats.json"
        vsctl_at "$sock" --json show >"$show"
        vsctl_at "$sock" --json stats >"$stats"
        pid="${VSW_PID[$h]}"
        hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
        record_detail "$s" "{\"kind\":\"vswitchd\",\"host\":\"$h\",\"vmhwm_kib\":${hwm:-null},\"show\":$(tr -d '\n' <"$show"),\"stats\":$(tr -d '\n' <"$stats")}"
        local summary rc=0
        summary="$(report_py tunnel-summary "$show" "$stats")" || rc=$?
        while IFS= read -r line; do info "vswitchd $h: $line"; done <<<"$summary"
        [ "$rc" -eq 0 ] || die "$s: vswitchd on $h: the tunnel shows no traffic both ways"
    done
}

# The underlay's counters on A, and the kernel vxlan devices' where there are some.
link_record() { # SETUP
    local s="$1" h
    ip -n "$HA" -s -j link show dev ul >"$TMP/link.json"
    record_detail "$s" "{\"kind\":\"underlay_a\",\"link\":$(report_py link-stats "$TMP/link.json")}"
    for h in A B; do
        ip -n "$P-$h" link show dev vx0 >/dev/null 2>&1 || continue
        ip -n "$P-$h" -s -j link show dev vx0 >"$TMP/link.json"
        record_detail "$s" "{\"kind\":\"kernel_vx0\",\"host\":\"$h\",\"link\":$(report_py link-stats "$TMP/link.json")}"
    done
}

# ---- measurements ----------------------------------------------------------------------------
measure_ping() { # SETUP
    local out="$TMP/$1-ping.txt" p50 p99 got sent
    run_wait timeout 120 ip netns exec "$CA" ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 "$IP_CB" >"$out" 2>&1 ||
        die "$1: ping cA -> cB failed: $(tail -n 3 "$out")"
    read -r p50 p99 got sent < <(report_py ping "$out")
    [ "$got" -ge $((PINGS * 95 / 100)) ] || die "$1: only $got of $sent pings answered"
    record "$1" ping_p50_ms "$p50"
    record "$1" ping_p99_ms "$p99"
    record "$1" ping_replies "$got"
    info "ping x$PINGS at ${PING_INTERVAL}s: p50 $(dec 3 "$p50") ms, p99 $(dec 3 "$p99") ms ($got/$sent replies)"
}

measure_tcp() { # SETUP KEY [-R]
    local s="$1" key="$2" rev="${3:-}" port json srv gbps retr what
    what="cA -> cB"
    [ -z "$rev" ] || what="cB -> cA (-R)"
    port=$((5201 + RANDOM % 2000))
    json="$TMP/$s-$key.json"
    timeout $((TCP_SECS + 40)) ip netns exec "$CB" iperf3 -s -1 -B "$IP_CB" -p "$port" >"$TMP/iperf3-server.log" 2>&1 &
    srv=$!
    PIDS+=("$srv")
    wait_for 100 sh -c "ip netns exec '$CB' ss -Hltn 'sport = :$port' | grep -q ." ||
        die "$s: iperf3 server did not start"
    # shellcheck disable=SC2086 # $rev: empty or -R
    run_wait timeout $((TCP_SECS + 30)) ip netns exec "$CA" iperf3 -c "$IP_CB" -p "$port" -t "$TCP_SECS" -P 1 $rev -J >"$json" 2>&1 ||
        die "$s: iperf3 $what failed: $(head -c 600 "$json")"
    wait "$srv" 2>/dev/null || true
    forget_pid "$srv"
    read -r gbps retr < <(report_py iperf "$json") || die "$s: cannot read iperf3 result $json"
    awk -v g="$gbps" 'BEGIN { exit !(g > 0) }' || die "$s: iperf3 $what moved nothing"
    record "$s" "$key" "$gbps"
    record "$s" "${key%_gbps}_retransmits" "$retr"
    info "TCP $what ${TCP_SECS}s, 1 stream: $(dec 2 "$gbps") Gbit/s ($retr retransmits)"
}

measure() { # SETUP
    # A few pings so ARP and the forwarding tables are warm.
    timeout 10 ip netns exec "$CA" ping -n -q -c 3 -i 0.05 "$IP_CB" >/dev/null || true
    measure_ping "$1"
    measure_tcp "$1" tcp_gbps
    measure_tcp "$1" tcp_rev_gbps -R
}

run_setup() { # SETUP
    local s="$1"
    VSW_SOCK=()
    VSW_PID=()
    net_up
    case "$s" in
        vsw)
            vsw_host "$s" A
            vsw_host "$s" B
            ;;
        mixed)
            vsw_host "$s" A
            kernel_host B
            ;;
        kernel)
            kernel_host A
            kernel_host B
            ;;
    esac
    connectivity "$s"
    info "checked: cA ($IP_CA) <-> cB ($IP_CB) ping through the tunnel"
    measure "$s"
    link_record "$s"
    [ "$s" = kernel ] || vsw_record "$s"
    net_down
}

# ---- run -------------------------------------------------------------------------------------
UPTIME_START="$(uptime)"
LOADAVG_START="$(loadavg)"
say "plan: ${SETUPS[*]}; TCP ${TCP_SECS}s 1 stream each way, ping x$PINGS at ${PING_INTERVAL}s; namespaces $P-*"
info "uptime at start: $UPTIME_START"
for s in "${SETUPS[@]}"; do
    case "$s" in
        vsw) title="vswitchd <-> vswitchd" ;;
        mixed) title="vswitchd (A) <-> kernel vxlan + bridge (B)" ;;
        kernel) title="kernel vxlan + bridge <-> kernel vxlan + bridge" ;;
    esac
    say "$s: $title"
    run_setup "$s"
done

# ---- report ----------------------------------------------------------------------------------
export BENCH_DATE BENCH_CPUS BENCH_CPU_MODEL BENCH_KERNEL BENCH_KERNEL_VXLAN BENCH_UPTIME_START \
    BENCH_UPTIME_END BENCH_LOADAVG_START BENCH_LOADAVG_END BENCH_COMMIT BENCH_DIRTY \
    BENCH_VSWITCHD_ARGS BENCH_QUICK BENCH_SETUPS BENCH_TCP_SECS BENCH_PINGS BENCH_PING_INTERVAL \
    BENCH_IPERF3 BENCH_ELAPSED BENCH_BUILD_S
BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BENCH_CPUS="$(nproc)"
BENCH_CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
BENCH_KERNEL="$(uname -r)"
BENCH_KERNEL_VXLAN="$KERNEL_VXLAN"
BENCH_UPTIME_START="$UPTIME_START"
BENCH_UPTIME_END="$(uptime)"
BENCH_LOADAVG_START="$LOADAVG_START"
BENCH_LOADAVG_END="$(loadavg)"
BENCH_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
BENCH_DIRTY=false
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- vswitch ctl vxlan Cargo.toml Cargo.lock 2>/dev/null)" ] || BENCH_DIRTY=true
BENCH_VSWITCHD_ARGS="$VSW_EXTRA"
BENCH_QUICK="$QUICK"
BENCH_SETUPS="${SETUPS[*]}"
BENCH_TCP_SECS="$TCP_SECS"
BENCH_PINGS="$PINGS"
BENCH_PING_INTERVAL="$PING_INTERVAL"
BENCH_IPERF3="$( (iperf3 --version 2>/dev/null || true) | awk 'NR == 1 { print $2 }')"
BENCH_ELAPSED=$(($(date +%s) - START_SECS))
BENCH_BUILD_S="$BUILD_SECS"

say "results (ratios over kernel<->kernel: above 1 is better for TCP, below 1 for ping RTT)"
out="$TMP/results.json"
if [ "$SAVE" = 1 ]; then
    mkdir -p "$RESULTS"
    out="$RESULTS/vxlan-$(date +%Y%m%d-%H%M%S).json"
fi
report_py report "$RAW" "$out"
[ "$out" = "$TMP/results.json" ] || printf '\nraw results: %s (markdown: bash benches/vxlan.sh --table %s)\n' "${out#"$ROOT"/}" "${out#"$ROOT"/}"
echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL)"
echo "uptime at start: $UPTIME_START"
echo "uptime at end:   $BENCH_UPTIME_END"
