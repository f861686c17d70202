#!/usr/bin/env bash
# Macro benchmark: the Linux bridge, Open vSwitch (userspace datapath) and vswitchd (afpacket
# ports, then TAP ports), measured one after the other on the same two-host setup, in one run.
#
#   sudo bash benches/run.sh                 # full run (about 4 minutes)
#   sudo bash benches/run.sh --quick         # smoke run: short iperf3, fewer pings, 1 repeat
#   sudo bash benches/run.sh --only vswitchd # a subset: bridge,ovs,afpacket,tap,afxdp (vswitchd = afpacket,tap)
#   sudo bash benches/run.sh --soak 300      # memory soak: vswitchd afpacket at full load for 300 s
#
# Each setup gets fresh namespaces: a switch namespace and two hosts h1, h2, each host joined
# to the switch namespace by a veth pair (for the TAP row: by a TAP device vswitchd creates).
# Every daemon (ovsdb-server, ovs-vswitchd, vswitchd, iperf3 -s, trafgen) runs inside those
# namespaces. Measured per setup: ping RTT p50/p99 h1->h2, iperf3 TCP h1->h2 (1 and 4
# streams, default offloads), 64-byte UDP frames from trafgen in h1 (offered = h1's tx,
# delivered = h2's rx), TCP over many flows (4 and 8 host pairs, each its own iperf3, all at
# once: the aggregate), the switch process's RSS, and next to every
# throughput the switch's CPU (utime + stime of vswitchd or ovs-vswitchd over the run) per
# Gbit/s (per Mpps for UDP), and how much of the run its busiest thread spent on the CPU a
# sender (iperf3 client, trafgen) ran on (sampled every 40 ms; "on a sender's CPU N% of the
# time", *_beside_sender in the JSON). Medians over the repeats.
#
# Results: a table on stdout, raw JSON in benches/results/<date>-<time>.json and
# benches/results/latest.json (full runs of all four setups only; --quick saves nothing
# unless --save). Everything it creates (namespaces vb<pid>-*, a temp dir, its processes) is
# removed on exit, also on Ctrl-C. It never touches a system Open vSwitch.
#
# --soak SECONDS builds only the vswitchd afpacket setup and keeps it at full load for SECONDS
# (cycles of iperf3 TCP -P 4 alone, the 64-byte trafgen flood alone, and both at once with the
# flood held to 100 kpps so that TCP still passes, with pings throughout) while it samples vswitchd's VmRSS and VmHWM every 5 s; it reports the RSS
# after warm-up against the warm-up level (growth in percent) and the per-port drop counters,
# into benches/results/soak-<date>-<time>.json (runs of 60 s and more, unless --quick/--no-save).
#
# Uses the option parser and the helpers of benches/lib (common.sh) and the parsers and the
# report of benches/lib/bench.py.
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/run.sh [--quick] [--repeat N] [--only LIST] [--no-build]
#:                                 [--save|--no-save] [--vswitchd-args "ARGS"]
#:        sudo bash benches/run.sh --soak [SECONDS] [--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
#:
#:   --quick              smoke run: iperf3 1 s, 100 pings, 1 s of UDP, one repeat each
#:   --repeat N           run every measurement N times and report medians
#:                        (default: TCP once, ping and UDP 3 times; --quick: all once)
#:   --only LIST          comma-separated subset of bridge,ovs,afpacket,tap,afxdp (vswitchd = afpacket,tap)
#:   --no-build           use the existing target/release binaries instead of running cargo build
#:   --save / --no-save   write the JSON results (default: save unless --quick)
#:   --vswitchd-args ARGS extra arguments for vswitchd, e.g. "--rx-ring v3 --workers 2"
#:   --udp-procs N        trafgen processes in h1, each pinned to a CPU (default 1: one core stays
#:                        free for the switch; trafgen's own default is one per CPU)
#:   --soak [SECONDS]     memory soak instead of the comparison (default 300 s; with --quick 30 s):
#:                        vswitchd with afpacket ports at full load, VmRSS/VmHWM every 5 s, growth
#:                        after warm-up (the first 60 s, or the first 20% of runs under 300 s,
#:                        at least 5 s).
#:                        Saves benches/results/soak-<date>-<time>.json for runs of 60 s and more
#:                        unless --quick or --no-save. Not with --only or --repeat.
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---- options -------------------------------------------------------------------------------
OPTS=(quick "--repeat=REPEAT" only "--soak=SOAK?default" no-build save vswitchd-args "--udp-procs=UDP_PROCS")
REPEAT="" ONLY="bridge,ovs,afpacket,tap" UDP_PROCS=1 SOAK=""
parse_opts "$@"
if [ -n "$REPEAT" ]; then
    [[ "$REPEAT" =~ ^[1-9][0-9]?$ ]] || die "--repeat wants a number 1..99, not '$REPEAT'"
fi
{ [[ "$UDP_PROCS" =~ ^[1-9][0-9]*$ ]] && [ "$UDP_PROCS" -le "$(nproc)" ]; } ||
    die "--udp-procs wants a number 1..$(nproc), not '$UDP_PROCS'"
if [ -n "$SOAK" ]; then
    ! opt_given --only || die "--soak measures vswitchd with afpacket ports only: no --only"
    [ -z "$REPEAT" ] || die "--soak takes no --repeat"
    if [ "$SOAK" = default ]; then
        SOAK=300
        [ "$QUICK" = 0 ] || SOAK=30
    fi
    { [[ "$SOAK" =~ ^[1-9][0-9]*$ ]] && [ "$SOAK" -ge 10 ] && [ "$SOAK" -le 86400 ]; } ||
        die "--soak wants seconds, 10..86400, not '$SOAK'"
    ONLY=afpacket
fi
pick_setups setup "bridge ovs vswitchd-afpacket vswitchd-tap vswitchd-afxdp" linux-bridge=bridge \
    openvswitch=ovs afpacket=vswitchd-afpacket tap=vswitchd-tap afxdp=vswitchd-afxdp \
    vswitchd=vswitchd-afpacket,vswitchd-tap all=bridge,ovs,vswitchd-afpacket,vswitchd-tap,vswitchd-afxdp

if [ "$QUICK" = 1 ]; then
    TCP_SECS=1 PINGS=100 PING_INTERVAL=0.002 UDP_SECS=1 UDP_WARMUP=0.5 R_TCP=1 R_SHORT=1
    FLOW_SECS=1 FLOW_PAIRS="4"
else
    TCP_SECS=10 PINGS=500 PING_INTERVAL=0.002 UDP_SECS=5 UDP_WARMUP=1 R_TCP=1 R_SHORT=3
    FLOW_SECS=3 FLOW_PAIRS="4 8"
fi
if [ -n "$REPEAT" ]; then
    R_TCP="$REPEAT"
    R_SHORT="$REPEAT"
fi
save_default
if [ -n "$SOAK" ] && [ "$SOAK" -lt 60 ] && ! opt_given --save; then SAVE=0; fi
need_root "network namespaces, Open vSwitch, trafgen"

# ---- state, cleanup --------------------------------------------------------------------------
ID=$$
P="vb$ID"
SW="$P-sw"
H1="$P-h1"
H2="$P-h2"
NET="10.251.$((ID % 250 + 1))"
IP1="$NET.1"
IP2="$NET.2"
bench_state vswitch-bench
IPERF_BIND=1
PLACEMENT=1
pause() { run_wait sleep "$1"; }

# ---- dependencies, build ---------------------------------------------------------------------
pkgs=(trafgen=netsniff-ng)
! has_setup ovs || pkgs+=("${OVS_PKGS[@]}")
install_deps "${pkgs[@]}"
if has_setup vswitchd-afpacket || has_setup vswitchd-tap || has_setup vswitchd-afxdp; then
    build_release --workspace --release
fi

# ---- helpers ---------------------------------------------------------------------------------
stat_of() { # NS IFACE COUNTER... : the counters on one line, read by one process
    local ns="$1" dev="$2" c files=()
    shift 2
    for c in "$@"; do files+=("/sys/class/net/$dev/statistics/$c"); done
    in_ns "$ns" cat "${files[@]}" | tr '\n' ' '
    echo
}
rss_kib() { # PID FIELD (VmRSS / VmHWM)
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}
kib_to_mib() { calc "$1 / 1024"; }

# Fresh namespaces for one setup: the switch's, and h1 and h2, each joined to the switch by a
# veth pair (hNp in the switch namespace, eth0 in host N) unless TAP (the TAP row: vswitchd
# makes the hosts' interfaces).
ns_up() { # [TAP]
    mkns "$SW" "$H1" "$H2"
    HIF1=eth0 HIF2=eth0
    [ -z "${1:-}" ] || return 0
    host_link "$SW" h1p "$H1" "$IP1/24"
    host_link "$SW" h2p "$H2" "$IP2/24"
}

# ---- measurements ----------------------------------------------------------------------------
measure_all() { # SETUP
    local s="$1" r n
    warm_up "$H1" "$IP2"
    for r in $(seq "$R_SHORT"); do
        ping_run "$s" "" "$H1" "$IP2" "$TMP/$s-ping-$r.txt"
        record_detail "$s" "{\"kind\":\"ping\",\"sent\":$SENT,\"replies\":$GOT,\"interval_s\":$PING_INTERVAL}"
        info "ping x$PINGS: $PING_TEXT"
    done
    for n in 1 4; do
        for r in $(seq "$R_TCP"); do
            iperf_run "$s" "tcp${n}_gbps" "-P $n" "$H2" "$H1" "$IP2" $((5201 + RANDOM % 2000)) "$TMP/$s-tcp$n-$r.json" -P "$n"
            record_detail "$s" "{\"kind\":\"tcp\",\"streams\":$n,\"seconds\":$TCP_SECS,\"gbps\":$GBPS,\"retransmits\":$RETR,\"switch_cores\":${CPU_CORES:-null}}"
            info "TCP ${TCP_SECS}s -P $n: $TCP_TEXT"
        done
    done
    for r in $(seq "$R_SHORT"); do measure_udp "$s" "$r"; done
}

# ---- many flows: N host pairs through one switch, all at once ------------------------------
# More hosts h3..h(2*max N) on the switch, each by its own veth pair (port hNp in the switch
# namespace; ADD_PORT SETUP PORT attaches it to the setup's switch), then for each N of
# FLOW_PAIRS: pair i is h(2i-1) -> h(2i), each pair its own iperf3 (1 stream, FLOW_SECS), all
# N started together; the aggregate is the sum of what the servers received.
flow_hosts() { # SETUP
    local s="$1" n max=0 p
    for n in $FLOW_PAIRS; do [ "$n" -le "$max" ] || max="$n"; done
    for ((n = 3; n <= 2 * max; n++)); do
        mkns "$P-h$n"
        if [ "$s" = vswitchd-tap ]; then
            tap_host "$s" "$n"
            continue
        fi
        host_link "$SW" "h${n}p" "$P-h$n" "$NET.$n/24"
        "add_port_${s//-/_}" "h${n}p"
    done
    [[ "$s" != vswitchd-* ]] || vsw_ports_up "$VSW_SOCK" "$s"
    for ((p = 1; p <= max; p++)); do
        reach "$P-h$((2 * p - 1))" "$NET.$((2 * p))" || die "$s: h$((2 * p - 1)) cannot ping h$((2 * p)) through the switch"
    done
}
add_port_bridge() { ip -n "$SW" link set "$1" master br0; }
add_port_ovs() { ovs_vsctl "$TMP/ovs" add-port br0 "$1"; }
add_port_vswitchd_afpacket() { vsctl_at "$VSW_SOCK" add-port br0 "$1" >/dev/null; }
# The hosts keep their default offloads: the afxdp port recognises the partial checksums
# they send (OVS asks for `ethtool -K eth0 tx off` on the far end instead).
add_port_vswitchd_afxdp() { vsctl_at "$VSW_SOCK" add-port br0 "$1" --type afxdp >/dev/null; }

measure_flows() { # SETUP
    local s="$1" n p port jsons=() srvs=() clis=() sum g bad r
    flow_hosts "$s"
    for n in $FLOW_PAIRS; do
        for r in $(seq "$R_TCP"); do
            jsons=() srvs=() clis=()
            port=$((5201 + RANDOM % 2000))
            for ((p = 1; p <= n; p++)); do
                spawn "$TMP/flows-srv-$p.log" timeout $((FLOW_SECS + 40)) ip netns exec "$P-h$((2 * p))" iperf3 -s -1 -B "$NET.$((2 * p))" -p "$port"
                srvs+=("$SPAWNED")
            done
            for ((p = 1; p <= n; p++)); do
                wait_listen "$P-h$((2 * p))" "$port" || die "$s: iperf3 server in h$((2 * p)) did not start"
            done
            cpu_begin "$s flows$n"
            for ((p = 1; p <= n; p++)); do
                jsons+=("$TMP/$s-flows$n-$r-$p.json")
                spawn "${jsons[-1]}" timeout $((FLOW_SECS + 30)) ip netns exec "$P-h$((2 * p - 1))" \
                    iperf3 -c "$NET.$((2 * p))" -p "$port" -t "$FLOW_SECS" -J
                clis+=("$SPAWNED")
            done
            bad=0
            for p in "${clis[@]}"; do
                wait "$p" || bad=1
                forget_pid "$p"
            done
            cpu_end
            for p in "${srvs[@]}"; do
                stop_pid "$p"
                forget_pid "$p"
            done
            [ "$bad" = 0 ] || die "$s: an iperf3 of the $n pairs failed: $(head -c 400 "${jsons[0]}")"
            sum=0
            for p in "${jsons[@]}"; do
                read -r g _ < <(python3 "$LIB" iperf "$p") || die "$s: cannot read iperf3 result $p"
                sum="$(calc "$sum + $g")"
            done
            record "$s" "flows${n}_gbps" "$sum"
            cpu_record "$s" "flows${n}_cpu_pct_per_gbps" "$sum"
            record_detail "$s" "{\"kind\":\"flows\",\"pairs\":$n,\"seconds\":$FLOW_SECS,\"gbps\":$sum,\"switch_cores\":${CPU_CORES:-null}}"
            info "TCP ${FLOW_SECS}s, $n host pairs at once (1 stream each): $(dec 2 "$sum") Gbit/s in all$CPU_TEXT"
        done
    done
}

# 64-byte UDP frames (Ethernet header to payload, no FCS) from trafgen on h1's interface to
# h2's MAC and IP, port 9. After a warm-up, the counters are sampled over UDP_SECS: offered =
# h1 tx_packets + tx_dropped, delivered = h2 rx_packets.
trafgen_cfg() { # CFG: write it unless it exists
    local cfg="$1"
    if [ ! -s "$cfg" ]; then
        local mac1 mac2
        mac1="$(mac_of "$H1" "$HIF1")"
        mac2="$(mac_of "$H2" "$HIF2")"
        # 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 22 (payload) = 64 bytes
        cat >"$cfg" <<EOF
{ eth(da=$mac2, sa=$mac1, type=0x0800), ipv4(saddr=$IP1, daddr=$IP2, ttl=64, df), udp(sp=9, dp=9), fill(0x00, 22) }
EOF
    fi
}
measure_udp() { # SETUP REP
    local setup="$1" rep="$2" cfg="$TMP/trafgen.cfg" out="$TMP/$1-trafgen-$2.txt" tg
    local t0 t1 tx0 txd0 rx0 tx1 txd1 rx1 dt offered delivered sent
    trafgen_cfg "$cfg"
    # trafgen forks its senders; timeout signals the whole group (SIGINT: trafgen prints its
    # count) a little after the sampling window closes.
    spawn "$out" timeout -s INT -k 5 "$(calc "$UDP_WARMUP + $UDP_SECS + 0.6")" \
        ip netns exec "$H1" trafgen -o "$HIF1" -i "$cfg" -P "$UDP_PROCS" --no-sock-mem --notouch-irq -C
    tg="$SPAWNED"
    pause "$UDP_WARMUP"
    pid_alive "$tg" || die "$setup: trafgen exited early: $(tail -n 5 "$out")"
    t0="$(now)"
    cpu_begin "$setup udp64"
    read -r tx0 txd0 < <(stat_of "$H1" "$HIF1" tx_packets tx_dropped)
    read -r rx0 < <(stat_of "$H2" "$HIF2" rx_packets)
    pause "$UDP_SECS"
    read -r tx1 txd1 < <(stat_of "$H1" "$HIF1" tx_packets tx_dropped)
    read -r rx1 < <(stat_of "$H2" "$HIF2" rx_packets)
    t1="$(now)"
    # Before cpu_end, whose profiler and sampler take a moment to stop.
    pid_alive "$tg" || info "warning: trafgen stopped before the window closed (machine overloaded?)"
    cpu_end
    [[ "$tx0 $txd0 $rx0 $tx1 $txd1 $rx1" =~ ^[0-9]+( [0-9]+){5}$ ]] ||
        die "$setup: cannot read the interface counters ($tx0 $txd0 $rx0 $tx1 $txd1 $rx1)"
    wait "$tg" 2>/dev/null || true
    forget_pid "$tg"
    dt="$(calc "$t1 - $t0")"
    offered="$(calc "($tx1 - $tx0 + $txd1 - $txd0) / $dt / 1000")"
    delivered="$(calc "($rx1 - $rx0) / $dt / 1000")"
    sent="$(python3 "$LIB" trafgen "$out" 2>/dev/null || echo null)"
    awk -v d="$delivered" 'BEGIN { exit !(d > 0) }' || die "$setup: no UDP frame reached h2"
    record "$setup" udp64_offered_kpps "$offered"
    record "$setup" udp64_delivered_kpps "$delivered"
    CPU_TEXT=""
    if [ -n "$CPU_CORES" ]; then
        # Per Mpps delivered: the per-frame cost, as CPU per Gbit/s is for TCP.
        record "$setup" udp64_cpu_cores "$CPU_CORES"
        record "$setup" udp64_cpu_pct_per_mpps "$(calc "$CPU_CORES * 100 * 1000 / $delivered")"
        CPU_TEXT=", switch $(dec 0 "$(calc "$CPU_CORES * 100")")% of a core, $(dec 0 "$(calc "$CPU_CORES * 100 * 1000 / $delivered")")% per Mpps"
        place_record "$setup" udp64
    fi
    record_detail "$setup" "{\"kind\":\"udp64\",\"window_s\":$dt,\"switch_cores\":${CPU_CORES:-null},\"h1_tx_packets\":$((tx1 - tx0)),\"h1_tx_dropped\":$((txd1 - txd0)),\"h2_rx_packets\":$((rx1 - rx0)),\"trafgen_sent_total\":$sent}"
    info "UDP 64 B ${UDP_SECS}s: offered $(dec 0 "$offered") kpps, delivered $(dec 0 "$delivered") kpps$CPU_TEXT"
}

record_rss() { # SETUP PID WHEN(start|idle|peak) [KIB: the value read earlier]
    local kib="${4:-}" mib
    [ -n "$kib" ] || kib="$(rss_kib "$2" "$([ "$3" = peak ] && echo VmHWM || echo VmRSS)")"
    [ -n "$kib" ] || die "$1: cannot read /proc/$2/status"
    mib="$(kib_to_mib "$kib")"
    record "$1" "${3}_rss_mb" "$mib"
    info "switch process RSS ($3): $(dec 1 "$mib") MiB"
}

# What bench.py's meta and soak-report read besides bench_meta's BENCH_* (measure.sh).
run_meta() {
    export BENCH_R_TCP="$R_TCP" BENCH_R_SHORT="$R_SHORT" BENCH_UDP_SECS="$UDP_SECS" \
        BENCH_UDP_WARMUP="$UDP_WARMUP" BENCH_UDP_PROCS="$UDP_PROCS" BENCH_TRAFGEN
    BENCH_TRAFGEN="$( (trafgen -v 2>/dev/null || true) | awk 'NR == 1 { print $2 }')"
}

# ---- the setups ------------------------------------------------------------------------------
setup_bridge() {
    ns_up
    ip -n "$SW" link add br0 type bridge
    ip -n "$SW" link set h1p master br0
    ip -n "$SW" link set h2p master br0
    ip -n "$SW" link set br0 up
    connectivity bridge
    CPU_PIDS=()
    measure_all bridge
    measure_flows bridge
}

setup_ovs() {
    local d="$TMP/ovs" ovsd kmod_before
    # Private run/log/db/conf directories: neither the daemons nor ovs-vsctl/ovs-appctl go
    # near /var/run/openvswitch, /etc/openvswitch or a system OVS.
    export OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d"
    kmod_before="$(ovs_kmod)"
    ns_up
    ovs_start "$SW" "$d" ovs
    ovsd="$OVS_VSWITCHD_PID"
    record_rss ovs "$ovsd" start
    ovs_vsctl "$d" add-br br0 -- set bridge br0 datapath_type=netdev
    ovs_vsctl "$d" add-port br0 h1p -- add-port br0 h2p
    ovs_check_netdev "$d"
    connectivity ovs
    record_rss ovs "$ovsd" idle
    CPU_PIDS=("$ovsd")
    measure_all ovs
    measure_flows ovs
    CPU_PIDS=()
    record_rss ovs "$ovsd" peak
    record_detail ovs "{\"kind\":\"ovs\",\"version\":\"$(ovs-vswitchd --version | awk '/Open vSwitch/ {print $NF}')\",\"datapath\":\"netdev\",\"userspace_tso\":true,\"kernel_module_loaded_before\":$kmod_before,\"kernel_module_loaded_after\":$(ovs_kmod)}"
    info "datapath: $(grep -o 'netdev@ovs-netdev' <<<"$OVS_DPIF" | head -n 1); kernel openvswitch module loaded: before $kmod_before, after $(ovs_kmod)"
    unset OVS_RUNDIR OVS_LOGDIR OVS_DBDIR OVS_SYSCONFDIR
}

vsctl() { timeout 10 "$VSCTL" --sock "$VSW_SOCK" "$@"; }
# vsw_up SETUP [KIND]: vswitchd in the switch namespace with bridge br0 and the hosts' ports,
# afpacket (or, KIND afxdp, afxdp) ports on the veths or (KIND tap) TAP ports moved into the
# hosts; VSW_START_KIB: its RSS right after the start.
vsw_up() {
    local s="$1" n tap
    if [ "${2:-}" = afxdp ]; then ns_up; else ns_up "${2:-}"; fi
    vsw_launch "$SW" "$TMP/$s" "$s: vswitchd"
    VSW_START_KIB="$(rss_kib "$VSW_PID" VmRSS)"
    vsctl_at "$VSW_SOCK" add-br br0 >/dev/null
    for n in 1 2; do
        if [ "${2:-}" != tap ]; then
            vsctl_at "$VSW_SOCK" add-port br0 "h${n}p" ${2:+--type "$2"} >/dev/null
            continue
        fi
        tap_host "$s" "$n"
        printf -v "HIF$n" '%s' "$TAP_IF"
    done
    vsw_ports_up "$VSW_SOCK" "$s"
    connectivity "$s"
}

# tap_host SETUP N: a TAP port of br0 made by vswitchd, moved into host N as its interface
# (TAP_IF), with host N's address.
tap_host() {
    TAP_IF="vbt$2-$ID"
    vsctl_at "$VSW_SOCK" add-port br0 "$TAP_IF" --type tap >/dev/null
    wait_for 100 ip -n "$SW" link show "$TAP_IF" || die "$1: vswitchd did not create TAP $TAP_IF"
    ip -n "$SW" link set "$TAP_IF" netns "$P-h$2"
    ip -n "$P-h$2" addr add "$NET.$2/24" dev "$TAP_IF"
    ip -n "$P-h$2" link set "$TAP_IF" up
}

setup_vswitchd() { # SETUP [TAP]
    local s="$1" st
    vsw_up "$@"
    record_rss "$s" "$VSW_PID" start "$VSW_START_KIB"
    record_rss "$s" "$VSW_PID" idle
    CPU_PIDS=("$VSW_PID")
    measure_all "$s"
    measure_flows "$s"
    CPU_PIDS=()
    record_rss "$s" "$VSW_PID" peak
    st="$(vsw_stats "$VSW_SOCK" br0)"
    [ -z "$st" ] || record_detail "$s" "{\"kind\":\"vsctl_stats\",\"stats\":$st}"
}
setup_vswitchd_afpacket() { setup_vswitchd vswitchd-afpacket; }
setup_vswitchd_tap() { setup_vswitchd vswitchd-tap tap; }
setup_vswitchd_afxdp() { setup_vswitchd vswitchd-afxdp afxdp; }

# ---- soak (--soak SECONDS) -------------------------------------------------------------------
# vswitchd with afpacket ports (the setup above) at full load for SOAK seconds, VmRSS and VmHWM
# sampled every SOAK_EVERY s. The load is a cycle of phases, back to back: iperf3 TCP with
# SOAK_STREAMS streams alone (TSO super-frames), the 64-byte trafgen flood alone (small frames),
# then both at once, the flood held to SOAK_MIX_RATE (at full rate it overruns h1p's RX ring
# and TCP stalls); pings every SOAK_PING_INTERVAL s throughout.
SOAK_EVERY=5
SOAK_STREAMS=4
SOAK_TCP_S=20
SOAK_UDP_S=10
SOAK_MIX_S=10
SOAK_MIX_RATE=100000pps
SOAK_PING_INTERVAL=0.02

soak_counters() { # h1 tx_packets tx_dropped, h2 rx_packets rx_bytes: "a,b,c,d"
    local a b c d
    read -r a b < <(stat_of "$H1" "$HIF1" tx_packets tx_dropped)
    read -r c d < <(stat_of "$H2" "$HIF2" rx_packets rx_bytes)
    echo "${a:-null},${b:-null},${c:-null},${d:-null}"
}
soak_tcp() { # SECONDS PORT OUT: one iperf3 client run, h1 -> h2
    timeout $(($1 + 20)) ip netns exec "$H1" iperf3 -c "$IP2" -p "$2" -t "$1" -P "$SOAK_STREAMS" -J >"$3" 2>&1
}
soak_trafgen() { # SECONDS OUT [ARGS]: the 64-byte flood from h1 (SIGINT after SECONDS: rc 124)
    local secs="$1" out="$2"
    shift 2
    timeout -s INT -k 5 "$secs" ip netns exec "$H1" trafgen -o "$HIF1" -i "$SD/trafgen.cfg" \
        -P "$UDP_PROCS" --no-sock-mem --notouch-irq -C "$@" >"$out" 2>&1
}

# The load, run in the background until the epoch second END; one JSON line per phase in
# $SD/load.jsonl. It never gives up: a failed run is logged (rc) and the next phase starts.
# The cleanup stops it (TERM) and deleting the namespaces ends what it started there.
soak_load() { # END
    local end="$1" n=0 left d kind t0 t1 c0 c1 rc trc tg out
    trap - EXIT INT TERM
    set +e
    while :; do
        for kind in tcp udp mixed; do
            left=$((end - $(date +%s)))
            [ "$left" -ge 1 ] || return 0
            case "$kind" in
                tcp) d="$SOAK_TCP_S" ;;
                udp) d="$SOAK_UDP_S" ;;
                mixed) d="$SOAK_MIX_S" ;;
            esac
            [ "$d" -le "$left" ] || d="$left"
            n=$((n + 1))
            out="$SD/phase-$n"
            c0="$(soak_counters)"
            t0="$(now)"
            rc=null
            trc=null
            case "$kind" in
                tcp)
                    soak_tcp "$d" "$((SOAK_PORT + n % 2))" "$out.iperf.json"
                    rc=$?
                    ;;
                udp)
                    soak_trafgen "$d" "$out.trafgen.txt"
                    trc=$?
                    ;;
                mixed)
                    soak_trafgen "$d" "$out.trafgen.txt" -b "$SOAK_MIX_RATE" &
                    tg=$!
                    soak_tcp "$d" "$((SOAK_PORT + n % 2))" "$out.iperf.json"
                    rc=$?
                    wait "$tg"
                    trc=$?
                    ;;
            esac
            t1="$(now)"
            c1="$(soak_counters)"
            printf '{"n":%d,"phase":"%s","seconds":%d,"start":%s,"end":%s,"iperf3_rc":%s,"trafgen_rc":%s,"counters_before":[%s],"counters_after":[%s]}\n' \
                "$n" "$kind" "$d" "$t0" "$t1" "$rc" "$trc" "$c0" "$c1" >>"$SD/load.jsonl"
        done
    done
}

# One sample: a JSON line in $SD/samples.jsonl and a line on stdout (with h2's receive rate
# since the previous sample).
SOAK_PREV=""
soak_sample() { # T
    local t="$1" at fields c line
    at="$(now)"
    fields="$(awk '{ k = $1; sub(":", "", k) }
        k ~ /^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem|Threads)$/ { printf "\"%s\":%s,", k, $2 }' \
        "/proc/$VSW_PID/status" 2>/dev/null || true)"
    if [[ "$fields" != *VmRSS* ]] || ! pid_alive "$VSW_PID"; then
        die "vswitchd (pid $VSW_PID) is gone at t=${t}s of the soak"
    fi
    c="$(soak_counters)"
    line="{\"t\":$t,\"at\":$at,${fields}\"counters\":[$c]}"
    echo "$line" >>"$SD/samples.jsonl"
    awk -v t="$t" -v at="$at" -v c="$c" -v prev="$SOAK_PREV" -v f="$fields" 'BEGIN {
        match(f, /"VmRSS":[0-9]+/); rss = substr(f, RSTART + 8, RLENGTH - 8)
        match(f, /"VmHWM":[0-9]+/); hwm = substr(f, RSTART + 8, RLENGTH - 8)
        line = sprintf("t=%4d s  VmRSS %6.2f MiB  VmHWM %6.2f MiB", t, rss / 1024, hwm / 1024)
        if (prev != "") {
            split(prev, p, " "); split(c, n, ",")
            dt = at - p[1]
            if (dt > 0 && n[3] != "null" && p[4] != "null")
                line = line sprintf("  h2 rx %6.2f Gbit/s %5.0f kpps", (n[4] - p[5]) * 8 / dt / 1e9, (n[3] - p[4]) / dt / 1000)
        }
        print "    " line
    }'
    SOAK_PREV="$at ${c//,/ }"
}

run_soak() {
    local s=vswitchd-afpacket t0 end t delay times=() port rc stamp out
    SD="$TMP/soak"
    mkdir -p "$SD"
    bench_begin "soak: vswitchd, afpacket ports ${VSW_EXTRA:+($VSW_EXTRA) }at full load for ${SOAK}s; VmRSS/VmHWM every ${SOAK_EVERY}s; subnet $NET.0/24" \
        note "fine for an RSS growth measurement, not for throughput"
    vsw_up "$s"
    SOAK_START_KIB="$VSW_START_KIB"
    # What runs, taken now: others may commit or rebuild target/release while the soak runs.
    # /proc/PID/exe is the running binary even if the file was replaced since. Tracked changes
    # only: an untracked test file does not change the binary.
    bench_commit --untracked-files=no -- vswitch ctl vxlan Cargo.toml Cargo.lock
    BENCH_VSWITCHD_BIN="$(date -u -d "@$(stat -L -c %Y "/proc/$VSW_PID/exe")" +%Y-%m-%dT%H:%M:%SZ) $(sha256sum "/proc/$VSW_PID/exe" | cut -c1-16)"
    warm_up "$H1" "$IP2"
    SOAK_IDLE_KIB="$(rss_kib "$VSW_PID" VmRSS)"
    info "vswitchd pid $VSW_PID: VmRSS $(dec 2 "$(kib_to_mib "$SOAK_START_KIB")") MiB at start, $(dec 2 "$(kib_to_mib "$SOAK_IDLE_KIB")") MiB idle with the ports up"
    trafgen_cfg "$SD/trafgen.cfg"
    # Two persistent iperf3 servers in h2; the TCP phases alternate between them, so that a
    # run never meets a server still winding up the previous one.
    SOAK_PORT=$((5201 + RANDOM % 2000))
    SOAK_SERVERS=()
    for port in "$SOAK_PORT" "$((SOAK_PORT + 1))"; do
        spawn "$SD/iperf3-server-$port.log" timeout $((SOAK + 120)) ip netns exec "$H2" iperf3 -s -B "$IP2" -p "$port"
        SOAK_SERVERS+=("$SPAWNED")
        wait_listen "$H2" "$port" || die "soak: iperf3 server on port $port did not start"
    done

    info "load: cycles of TCP -P $SOAK_STREAMS ${SOAK_TCP_S}s, UDP 64 B ${SOAK_UDP_S}s, both ${SOAK_MIX_S}s (UDP at $SOAK_MIX_RATE), back to back; ping every ${SOAK_PING_INTERVAL}s"
    t0="$(now)"
    end=$((${t0%.*} + SOAK + 2))
    spawn "$SD/ping.txt" ip netns exec "$H1" ping -n -D -i "$SOAK_PING_INTERVAL" -W 1 -w $((SOAK + 1)) "$IP2"
    SOAK_PING_PID="$SPAWNED"
    soak_load "$end" &
    SOAK_LOAD_PID=$!
    PIDS+=("$SOAK_LOAD_PID")

    for ((t = 0; t <= SOAK; t += SOAK_EVERY)); do times+=("$t"); done
    [ "${times[-1]}" = "$SOAK" ] || times+=("$SOAK")
    for t in "${times[@]}"; do
        delay="$(calc "$t0 + $t - $(now)")"
        if awk -v d="$delay" 'BEGIN { exit !(d > 0) }'; then pause "$delay"; fi
        soak_sample "$t"
        if [ "$t" -lt "$SOAK" ] && ! pid_alive "$SOAK_LOAD_PID"; then
            die "soak: the load generator stopped at t=${t}s"
        fi
    done

    # The last phase ends within ~2 s; ping ends by its deadline.
    rc=0
    wait "$SOAK_LOAD_PID" || rc=$?
    forget_pid "$SOAK_LOAD_PID"
    [ "$rc" = 0 ] || info "warning: the load generator exited with $rc"
    wait "$SOAK_PING_PID" || true
    forget_pid "$SOAK_PING_PID"
    for port in "${SOAK_SERVERS[@]}"; do
        stop_pid "$port"
        forget_pid "$port"
    done
    SOAK_HWM_KIB="$(rss_kib "$VSW_PID" VmHWM)"
    SOAK_END_KIB="$(rss_kib "$VSW_PID" VmRSS)"
    vsctl --json stats >"$SD/stats.json" 2>"$SD/stats.err" || info "warning: vsctl --json stats failed: $(head -c 300 "$SD/stats.err")"
    UPTIME_END="$(uptime)"
    teardown

    # ---- soak report ----
    stamp="$(date +%Y%m%d-%H%M%S)"
    bench_meta
    run_meta
    export SOAK SOAK_T0 SOAK_EVERY SOAK_STREAMS SOAK_TCP_S SOAK_UDP_S SOAK_MIX_S SOAK_MIX_RATE \
        SOAK_PING_INTERVAL SOAK_START_KIB SOAK_IDLE_KIB SOAK_END_KIB SOAK_HWM_KIB BENCH_VSWITCHD_BIN
    SOAK_T0="$t0"
    if [ "$SAVE" = 1 ]; then
        mkdir -p "$RESULTS"
        out="$RESULTS/soak-$stamp.json"
    else
        out="$SD/soak.json"
    fi
    say "soak results"
    python3 "$LIB" soak-report "$SD" "$out"
    echo
    if [ "$SAVE" = 1 ]; then
        echo "raw results: ${out#"$ROOT"/}   (markdown: python3 benches/lib/bench.py soak-table ${out#"$ROOT"/} --markdown)"
    else
        echo "not saved (runs under 60 s, --quick or --no-save; --save to keep one)"
    fi
    bench_footer
}

if [ -n "$SOAK" ]; then
    run_soak
    exit 0
fi

# ---- run -------------------------------------------------------------------------------------
declare -A TITLE=([bridge]="Linux bridge (kernel)"
    [ovs]="Open vSwitch, userspace datapath (datapath_type=netdev, userspace TSO)"
    [vswitchd-afpacket]="vswitchd, afpacket ports ${VSW_EXTRA:+($VSW_EXTRA)}"
    [vswitchd-tap]="vswitchd, TAP ports ${VSW_EXTRA:+($VSW_EXTRA)}"
    [vswitchd-afxdp]="vswitchd, afxdp ports (AF_XDP, copy mode) ${VSW_EXTRA:+($VSW_EXTRA)}")
run_setup() { # SETUP
    rm -f "$TMP/trafgen.cfg"
    "setup_${1//-/_}"
    teardown
}
bench_run "plan: ${SETUPS[*]}; TCP ${TCP_SECS}s x$R_TCP (1 and 4 streams), ping $PINGS at ${PING_INTERVAL}s x$R_SHORT, UDP 64 B ${UDP_SECS}s x$R_SHORT; subnet $NET.0/24" \
    warning "other work competes for the cores, the numbers will be noisy"

# ---- report ----------------------------------------------------------------------------------
bench_meta -- vswitch ctl Cargo.toml Cargo.lock
run_meta
python3 "$LIB" meta "$TMP/meta.json"
say "results (medians; ratios = vswitchd / other: above 1 is better for throughput, below 1 for RTT and RSS)"
if [ "$SAVE" = 1 ]; then
    mkdir -p "$RESULTS"
    out="$RESULTS/$(date +%Y%m%d-%H%M%S).json"
    latest=()
    if [ "$QUICK" = 0 ] && [ "${#SETUPS[@]}" -eq 4 ]; then latest=(--latest "$RESULTS/latest.json"); fi
    python3 "$LIB" report "$RAW" "$TMP/meta.json" "$out" "${latest[@]}"
    echo
    echo "raw results: ${out#"$ROOT"/}${latest[*]:+ and benches/results/latest.json}"
else
    python3 "$LIB" report "$RAW" "$TMP/meta.json" "$TMP/results.json"
fi
echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL); load average at start $LOADAVG_START, at end $BENCH_LOADAVG_END"
