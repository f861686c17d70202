#!/usr/bin/env bash
# VXLAN benchmark: the same container-to-container overlay built five ways in one run, on
# the same kind of namespaces, measured the same way, side by side:
#
#   vsw      vswitchd <-> vswitchd   each host runs its own vswitchd (--no-vxlan-gso-tap:
#                                    super-frames segmented in the switch): bridge br0, the
#                                    container's veth as an afpacket port, and
#                                    vsctl add-tunnel br0 vx --vni 42 --remote <other host>
#   mixed    vswitchd <-> kernel     host A as above; host B plain Linux: a kernel vxlan
#                                    device (ip link add vx0 type vxlan id 42 remote A
#                                    local B dstport 4789 dev ul) and the container's veth
#                                    in a kernel bridge
#   kernel   kernel <-> kernel       both hosts as B above (the reference)
#   vsw-gso, mixed-gso                as vsw and mixed, every vswitchd with its default
#                                    (TCP super-frames leave encapsulated whole through a
#                                    TAP whose filter hands them to the underlay device)
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
# super-packets from the kernel), with the CPU the vswitchds used per Gbit/s (utime + stime
# from /proc, both hosts' summed); ping RTT p50 and p99 of 200 pings at 5 ms. Before
# measuring it checks that cA and cB ping each other through the tunnel. After each
# vswitchd setup it records `vsctl --json show` (per-remote counters) and `vsctl --json
# stats` (VTEP drops), and for every setup the underlay's packet counters.
#
# Everything it creates (namespaces vx<pid>-*, a temp dir, the daemons) is removed on exit,
# also on Ctrl-C or SIGTERM. Uses the option parser and the helpers of benches/lib (common.sh);
# the report is benches/lib/vxlan.py.
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/vxlan.sh [--quick] [--only LIST] [--no-build] [--save|--no-save]
#:                                   [--vswitchd-args "ARGS"]
#:        bash benches/vxlan.sh --table FILE    print a saved result as a markdown table
#:
#:   --quick              smoke run: iperf3 1 s, 20 pings (default: iperf3 5 s, 200 pings)
#:   --only LIST          comma-separated subset of vsw,vsw-gso,mixed,mixed-gso,kernel (also
#:                        vsw-vsw, vsw-kernel, kernel-kernel, gso = vsw-gso,mixed-gso;
#:                        default: all five)
#:   --no-build           use the existing target/release binaries instead of running
#:                        cargo build --release -p vswitch -p vswitch-ctl
#:   --save / --no-save   write benches/results/vxlan-<date>-<time>.json (default: save unless
#:                        --quick, and only when all five setups ran)
#:   --vswitchd-args ARGS extra arguments for every vswitchd, e.g. "--workers 1"
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---- options -------------------------------------------------------------------------------
OPTS=(quick only no-build save vswitchd-args table)
ONLY="vsw,vsw-gso,mixed,mixed-gso,kernel"
parse_opts "$@"
pick_setups setup "vsw vsw-gso mixed mixed-gso kernel" vsw-vsw=vsw vswitchd=vsw vsw-kernel=mixed \
    kernel-vsw=mixed kernel-kernel=kernel gso=vsw-gso,mixed-gso
set_defaults "TCP_SECS=1 PINGS=20" "TCP_SECS=5 PINGS=200"
PING_INTERVAL=0.005
save_default 5
need_root "network namespaces"

# ---- state, cleanup --------------------------------------------------------------------------
ID=$$
P="vx$ID"
HA="$P-A" HB="$P-B" CA="$P-cA" CB="$P-cB"
UL_A=198.51.100.1 UL_B=198.51.100.2
IP_CA=10.77.0.1 IP_CB=10.77.0.2
VNI=42 DSTPORT=4789
bench_state vswitch-vxlan-bench
# connectivity (lab.sh) pings between H1/IP1 and H2/IP2.
H1="$CA" H2="$CB" IP1="$IP_CA" IP2="$IP_CB"
CONNECT_VIA="the VXLAN tunnel"
IPERF_BIND=1

# ---- dependencies ----------------------------------------------------------------------------
install_deps
KERNEL_VXLAN="$( (zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null || true) | grep -E '^CONFIG_VXLAN=' || true)"
if [ -z "$KERNEL_VXLAN" ]; then
    modprobe vxlan 2>/dev/null || die "the kernel has no vxlan (CONFIG_VXLAN): the kernel setups cannot run"
    KERNEL_VXLAN="module vxlan (modprobe)"
fi
info "kernel vxlan: $KERNEL_VXLAN"
export BENCH_KERNEL_VXLAN="$KERNEL_VXLAN"

# ---- build -----------------------------------------------------------------------------------
if has_setup vsw || has_setup mixed || has_setup vsw-gso || has_setup mixed-gso; then
    build_release --release -p vswitch -p vswitch-ctl -p testlab
    "$VSCTL" add-tunnel --help >/dev/null 2>&1 || grep -q add-tunnel <<<"$("$VSCTL" --help 2>&1)" ||
        die "$VSCTL has no add-tunnel: build a vswitch with tunnel ports"
fi

# ---- the network -----------------------------------------------------------------------------
# Host namespaces A and B with the underlay between them, container namespaces cA and cB
# with a veth each to their host (host end "ctr", not yet attached to anything).
net_up() {
    mkns "$HA" "$HB" "$CA" "$CB"
    ns_link "$HA" ul "$HB" ul "$UL_A/24" "$UL_B/24"
    host_link "$HA" ctr "$CA" "$IP_CA/24" 1450
    host_link "$HB" ctr "$CB" "$IP_CB/24" 1450
    timeout 10 ip netns exec "$HA" ping -n -q -c 1 -W 2 "$UL_B" >/dev/null ||
        die "the underlay does not work: A ($UL_A) cannot ping B ($UL_B)"
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
# its socket, database and log in a directory of its own per setup; the -gso setups' as
# vswitchd starts by default, the others' with --no-vxlan-gso-tap.
declare -A SOCK_OF=() PID_OF=()
vsw_host() { # SETUP A|B
    local h="$2" remote_ip="$UL_A"
    [ "$h" = B ] || remote_ip="$UL_B"
    local saved=("${VSW_ARGS[@]}")
    [[ "$1" == *-gso ]] || VSW_ARGS+=(--no-vxlan-gso-tap)
    vsw_launch "$P-$h" "$TMP/vsw-$1-$h" "vswitchd on $h"
    VSW_ARGS=("${saved[@]}")
    SOCK_OF[$h]="$VSW_SOCK"
    PID_OF[$h]="$VSW_PID"
    vsctl_at "$VSW_SOCK" add-br br0 >/dev/null
    vsctl_at "$VSW_SOCK" add-port br0 ctr >/dev/null
    vsctl_at "$VSW_SOCK" add-tunnel br0 vx --vni "$VNI" --remote "$remote_ip" >/dev/null
    vsw_ports_up "$VSW_SOCK" "vswitchd on $h"
    info "host $h: vswitchd (pid $VSW_PID): $(vsctl_at "$VSW_SOCK" show | tr -s ' ' | tr '\n' ';')"
}

# After the measurements: record each vswitchd's show/stats (per-remote counters, VTEP drops)
# and its peak RSS; print the counters; fail if a tunnel moved nothing.
vsw_record_all() { # SETUP
    local s="$1" h sock show summary rc line
    for h in A B; do
        sock="${SOCK_OF[$h]:-}"
        [ -n "$sock" ] || continue
        show="$TMP/$s-$h-show.json"
        vsctl_at "$sock" --json show >"$show"
        vsw_record "$s" "$sock" "${PID_OF[$h]}" "\"host\":\"$h\"," "\"show\":$(tr -d '\n' <"$show"),"
        rc=0
        summary="$(report_py tunnel-summary "$show" "$VSW_STATS")" || rc=$?
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

# A -gso setup's figures are the TAP's only if every vswitchd of it sent super-frames
# through its TAP and uses it still.
gso_used() { # SETUP
    local h st
    for h in "${!SOCK_OF[@]}"; do
        st="$(vsctl_at "${SOCK_OF[$h]}" --json stats)"
        python3 -c 'import json,sys; g=json.loads(sys.argv[1])["vteps"][0].get("gso_tap") or {}; sys.exit(0 if g.get("whole") and g.get("packets",0)>0 else 1)' "$st" ||
            die "$1: vswitchd on $h did not send whole through its TAP: $(vsctl_at "${SOCK_OF[$h]}" stats | grep '^vtep')"
        info "vswitchd $h: $(vsctl_at "${SOCK_OF[$h]}" stats | grep -o 'gso-tap .*')"
    done
}

# ---- measurements ----------------------------------------------------------------------------
measure() { # SETUP
    local s="$1" rev key what
    # CPU per Gbit/s: every vswitchd of the setup, summed (none for kernel<->kernel).
    CPU_PIDS=("${PID_OF[@]}")
    warm_up "$CA" "$IP_CB" || true
    ping_run "$s" "cA -> cB" "$CA" "$IP_CB" "$TMP/$s-ping.txt"
    record "$s" ping_replies "$GOT"
    info "ping x$PINGS at ${PING_INTERVAL}s: $PING_TEXT"
    for rev in "" -R; do
        key=tcp_gbps what="cA -> cB"
        [ -z "$rev" ] || key=tcp_rev_gbps what="cB -> cA (-R)"
        # shellcheck disable=SC2086 # $rev: empty or -R
        iperf_run "$s" "$key" "$what" "$CB" "$CA" "$IP_CB" $((5201 + RANDOM % 2000)) "$TMP/$s-$key.json" -P 1 $rev
        info "TCP $what ${TCP_SECS}s, 1 stream: $TCP_TEXT"
    done
}

declare -A TITLE=([vsw]="vswitchd <-> vswitchd, --no-vxlan-gso-tap"
    [mixed]="vswitchd (A, --no-vxlan-gso-tap) <-> kernel vxlan + bridge (B)"
    [vsw-gso]="vswitchd <-> vswitchd, default (gso-tap)"
    [mixed-gso]="vswitchd (A, default: gso-tap) <-> kernel vxlan + bridge (B)"
    [kernel]="kernel vxlan + bridge <-> kernel vxlan + bridge")
run_setup() { # SETUP
    local s="$1"
    SOCK_OF=()
    PID_OF=()
    net_up
    case "$s" in
        vsw | vsw-gso)
            vsw_host "$s" A
            vsw_host "$s" B
            ;;
        mixed | mixed-gso)
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
    [[ "$s" != *-gso ]] || gso_used "$s"
    link_record "$s"
    [ "$s" = kernel ] || vsw_record_all "$s"
    teardown
}

# ---- run, report -----------------------------------------------------------------------------
bench_run "plan: ${SETUPS[*]}; TCP ${TCP_SECS}s 1 stream each way, ping x$PINGS at ${PING_INTERVAL}s; namespaces $P-*"
bench_report "results (ratios over kernel<->kernel: above 1 is better for TCP, below 1 for ping RTT)" \
    --untracked-files=no -- vswitch ctl vxlan Cargo.toml Cargo.lock
