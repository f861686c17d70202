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
# also on Ctrl-C or SIGTERM. It never touches a system Open vSwitch. Uses the option parser and
# the helpers of benches/lib (common.sh); the report is benches/lib/vlan.py.
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/vlan.sh [--quick] [--only vswitchd|ovs] [--no-build]
#:                                  [--save|--no-save] [--vswitchd-args "ARGS"]
#:        bash benches/vlan.sh --table FILE    print a saved result as a markdown table
#:
#:   --quick              smoke run: iperf3 1 s, 20 pings (default: iperf3 5 s, 200 pings)
#:   --only LIST          comma-separated subset of vswitchd,ovs (default: both)
#:   --no-build           use the existing target/release binaries instead of running cargo build
#:   --save / --no-save   write benches/results/vlan-<date>-<time>.json (default: save unless
#:                        --quick, and only when both switches ran)
#:   --vswitchd-args ARGS extra arguments for every vswitchd, e.g. "--workers 1"
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---- options -------------------------------------------------------------------------------
OPTS=(quick only no-build save vswitchd-args table)
ONLY="vswitchd,ovs"
parse_opts "$@"
pick_setups switch "vswitchd ovs"
set_defaults "TCP_SECS=1 PINGS=20" "TCP_SECS=5 PINGS=200"
PING_INTERVAL=0.002
save_default 2
need_root "network namespaces, Open vSwitch"

# ---- state, cleanup --------------------------------------------------------------------------
ID=$$
P="vv$ID"
H1="$P-h1"
H2="$P-h2"
NET="10.252.$((ID % 250 + 1))"
IP1="$NET.1"
IP2="$NET.2"
bench_state vswitch-vlan-bench
CONNECT_VIA="the switch(es)"
IPERF_BIND=1

# ---- dependencies, build ---------------------------------------------------------------------
pkgs=()
! has_setup ovs || pkgs+=("${OVS_PKGS[@]}")
install_deps "${pkgs[@]}"
export BENCH_OVS
BENCH_OVS="$( (ovs-vswitchd --version 2>/dev/null || true) | awk '/Open vSwitch/ { print $NF; exit }')"
! has_setup vswitchd || build_release --workspace --release

# ---- the topologies --------------------------------------------------------------------------
# The switches of TOPO, one line each: its namespace, its name and its ports (h1p, h2p: access
# ports of VLAN 10; trk: the trunk of VLANs 10 and 20). access: one switch P-sw with h1p and
# h2p. trunk: P-swa with h1p and trk, P-swb with h2p and trk, the two trk joined by a veth pair.
switches() { # TOPO
    case "$1" in
        access) echo "$P-sw sw h1p h2p" ;;
        trunk) printf '%s\n' "$P-swa swa h1p trk" "$P-swb swb h2p trk" ;;
    esac
}

topo_up() { # TOPO: the namespaces and links; SWS: its switches; MAC1, MAC2: the hosts' MACs
    local sw
    mapfile -t SWS < <(switches "$1")
    for sw in "${SWS[@]}"; do mkns "${sw%% *}"; done
    mkns "$H1" "$H2"
    if [ "$1" = access ]; then
        host_link "$P-sw" h1p "$H1" "$IP1/24"
        host_link "$P-sw" h2p "$H2" "$IP2/24"
    else
        host_link "$P-swa" h1p "$H1" "$IP1/24"
        host_link "$P-swb" h2p "$H2" "$IP2/24"
        ns_link "$P-swa" trk "$P-swb" trk
    fi
    MAC1="$(mac_of "$H1" eth0)"
    MAC2="$(mac_of "$H2" eth0)"
}

# learned TOPO CHECK FIRST [SECOND]: CHECK (vsw_fdb_check or ovs_fdb_check) that the switch
# FIRST (and on the trunk SECOND, switch B) learned h1's and h2's MACs in VLAN 10 on the right
# ports: on the trunk, each switch has the other host behind trk (the frames crossed it tagged).
learned() {
    if [ "$1" = access ]; then
        "$2" "$3" "$MAC1" 10 h1p h1
        "$2" "$3" "$MAC2" 10 h2p h2
    else
        "$2" "$3" "$MAC1" 10 h1p "h1 on A"
        "$2" "$3" "$MAC2" 10 trk "h2 on A"
        "$2" "$4" "$MAC1" 10 trk "h1 on B"
        "$2" "$4" "$MAC2" 10 h2p "h2 on B"
    fi
}

# ---- measurements ----------------------------------------------------------------------------
measure() { # TOPO SWITCH
    local s="$1/$2"
    warm_up "$H1" "$IP2"
    ping_run "$s" "" "$H1" "$IP2" "$TMP/$1-$2-ping.txt"
    record "$s" ping_replies "$GOT"
    info "ping x$PINGS at ${PING_INTERVAL}s: $PING_TEXT"
    iperf_run "$s" tcp_gbps "h1 -> h2" "$H2" "$H1" "$IP2" $((5201 + RANDOM % 2000)) "$TMP/$1-$2-tcp.json" -P 1
    info "TCP ${TCP_SECS}s, 1 stream: $TCP_TEXT"
}

# ---- vswitchd --------------------------------------------------------------------------------
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
    local topo="$1" ns name ports p sw st socks=() i=0
    for sw in "${SWS[@]}"; do
        read -r ns name ports <<<"$sw"
        vsw_launch "$ns" "$TMP/vsw-$name" "vswitchd $name"
        socks+=("$VSW_SOCK")
        vsctl_at "$VSW_SOCK" add-br br0 >/dev/null
        for p in $ports; do
            vsctl_at "$VSW_SOCK" add-port br0 "$p" >/dev/null
            if [ "$p" = trk ]; then
                vsctl_at "$VSW_SOCK" add-vlan br0 trk 10,20 >/dev/null
            else
                vsctl_at "$VSW_SOCK" add-vlan br0 "$p" 10 --access >/dev/null
            fi
        done
        vsw_ports_up "$VSW_SOCK" "vswitchd $name"
        info "$name: $(vsctl_at "$VSW_SOCK" list-vlans br0 | tr '\n' ';' | tr -s ' ')"
    done
    connectivity "$topo/vswitchd"
    learned "$topo" vsw_fdb_check "${socks[@]}"
    info "checked: h1 <-> h2 ping; MACs learned in VLAN 10"
    measure "$topo" vswitchd
    for p in "${socks[@]}"; do
        st="$(vsw_stats "$p" br0)"
        [ -z "$st" ] || record_detail "$topo/vswitchd" "{\"kind\":\"vsctl_stats\",\"switch\":$i,\"stats\":$st}"
        i=$((i + 1))
    done
}

# ---- Open vSwitch (userspace datapath) -------------------------------------------------------
# One ovsdb-server + ovs-vswitchd per switch namespace (ovs_start, in benches/lib/lab.sh).
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
    local topo="$1" ns name ports p sw dirs=() add kmod_before
    kmod_before="$(ovs_kmod)"
    for sw in "${SWS[@]}"; do
        read -r ns name ports <<<"$sw"
        ovs_start "$ns" "$TMP/ovs-$name" "ovs $name"
        dirs+=("$TMP/ovs-$name")
        add=()
        for p in $ports; do
            if [ "$p" = trk ]; then add+=(-- add-port br0 trk trunks=10,20); else add+=(-- add-port br0 "$p" tag=10); fi
        done
        ovs_vsctl "$TMP/ovs-$name" add-br br0 -- set bridge br0 datapath_type=netdev "${add[@]}"
        ovs_check_netdev "$TMP/ovs-$name"
    done
    connectivity "$topo/ovs"
    learned "$topo" ovs_fdb_check "${dirs[@]}"
    info "checked: netdev datapath, userspace TSO on; h1 <-> h2 ping; MACs learned in VLAN 10"
    measure "$topo" ovs
    record_detail "$topo/ovs" "{\"kind\":\"ovs\",\"instances\":${#dirs[@]},\"datapath\":\"netdev\",\"userspace_tso\":true,\"kernel_module_loaded_before\":$kmod_before,\"kernel_module_loaded_after\":$(ovs_kmod)}"
}

# ---- run -------------------------------------------------------------------------------------
bench_begin "plan: ${SETUPS[*]} on access and trunk; TCP ${TCP_SECS}s 1 stream, ping x$PINGS; subnet $NET.0/24"
declare -A TITLE=([access]="access -> access on one switch (VLAN 10)"
    [trunk]="access -> trunk (10,20) -> access across two switches")
for topo in access trunk; do
    for sw in "${SETUPS[@]}"; do
        say "$topo / $sw: ${TITLE[$topo]}"
        topo_up "$topo"
        "run_$sw" "$topo"
        teardown
    done
done
bench_report "results (vswitchd/OVS: above 1 is better for TCP, below 1 for ping RTT)" -- vswitch ctl Cargo.toml Cargo.lock
