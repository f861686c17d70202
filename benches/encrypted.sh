#!/usr/bin/env bash
# Encrypted overlay benchmark: container to container over VXLAN inside WireGuard, four
# ways in one run, on the same kind of namespaces, measured the same way:
#
#   enc      vswitchd <-> vswitchd, encrypted   add-tunnel … --encrypt --public-key (each other's)
#   mixed    vswitchd <-> wireguard-go          host B: wireguard-go (TUN wg0, set up by wg), a
#                                               kernel vxlan device on wg0 and a kernel bridge
#   wgo      wireguard-go <-> wireguard-go      both hosts as B above (the reference)
#   plain    vswitchd <-> vswitchd, cleartext   add-tunnel … (no encryption)
#
#   sudo bash benches/encrypted.sh            # iperf3 3 s, 100 pings per setup
#   sudo bash benches/encrypted.sh --quick    # iperf3 1 s, 20 pings
#
# Namespaces ew<pid>-{A,B,cA,cB}: hosts A and B joined by an underlay veth "ul"
# (198.51.100.1/24, .2, MTU 1500); containers cA, cB (10.77.0.1/24, .2) with a veth "ctr"
# to their host, MTU 1370 (a 1420-byte WireGuard interface less the vxlan device's 50, so
# all four setups carry the same packets). Inner VTEP addresses 192.0.2.1 and .2. Measured
# with default offloads: iperf3 TCP 1 stream cA -> cB, and the ping RTT p50 (5 ms apart).
# Prints one table; ratios against wireguard-go <-> wireguard-go and against cleartext.
#: usage: sudo bash benches/encrypted.sh [--quick] [--no-build]
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

TCP_SECS=3 PINGS=100 BUILD=auto
for a in "$@"; do
    case "$a" in
        --quick) TCP_SECS=1 PINGS=20 ;;
        --no-build) BUILD=0 ;;
        --help | -h) usage; exit 0 ;;
        *) die "unknown option $a" ;;
    esac
done
PING_INTERVAL=0.005
VSW_ARGS=()
need_root "network namespaces"
P="ew$$"
HA="$P-A" HB="$P-B" CA="$P-cA" CB="$P-cB"
UL_A=198.51.100.1 UL_B=198.51.100.2 IN_A=192.0.2.1 IN_B=192.0.2.2
IP_CA=10.77.0.1 IP_CB=10.77.0.2 MTU=1370 VNI=42 PORT=51820
bench_state vswitch-encrypted-bench
H1="$CA" H2="$CB" IP1="$IP_CA" IP2="$IP_CB" CONNECT_VIA="the encrypted tunnel"
IPERF_BIND=1
install_deps wireguard-go=wireguard-go wg=wireguard-tools
build_release --release -p vswitch -p vswitch-ctl -p testlab

net_up() {
    mkns "$HA" "$HB" "$CA" "$CB"
    ns_link "$HA" ul "$HB" ul "$UL_A/24" "$UL_B/24"
    host_link "$HA" ctr "$CA" "$IP_CA/24" "$MTU"
    host_link "$HB" ctr "$CB" "$IP_CB/24" "$MTU"
}

other() { if [ "$1" = A ]; then echo B; else echo A; fi; }
ul_of() { if [ "$1" = A ]; then echo "$UL_A"; else echo "$UL_B"; fi; }
in_of() { if [ "$1" = A ]; then echo "$IN_A"; else echo "$IN_B"; fi; }

# vswitchd on host H: br0 with ctr; no tunnel yet. -> SOCK_<H>, its key in KEY_<H>.
vsw_up() { # SETUP H
    vsw_launch "$P-$2" "$TMP/vsw-$1-$2" "vswitchd on $2"
    printf -v "SOCK_$2" '%s' "$VSW_SOCK"
    vsctl_at "$VSW_SOCK" add-br br0 >/dev/null
    vsctl_at "$VSW_SOCK" add-port br0 ctr >/dev/null
    printf -v "KEY_$2" '%s' "$(vsctl_at "$VSW_SOCK" show | sed -n 's/^public-key //p')"
}

vsw_tunnel() { # H [--encrypt]
    local h="$1" o sock key
    o="$(other "$h")"
    sock="SOCK_$h" key="KEY_$o"
    if [ "${2:-}" = --encrypt ]; then
        vsctl_at "${!sock}" add-tunnel br0 vx --vni "$VNI" --remote "$(ul_of "$o")" --encrypt \
            --public-key "${!key}" --inner-local "$(in_of "$h")" --inner-remote "$(in_of "$o")" >/dev/null
    else
        vsctl_at "${!sock}" add-tunnel br0 vx --vni "$VNI" --remote "$(ul_of "$o")" >/dev/null
    fi
    vsw_ports_up "${!sock}" "vswitchd on $h"
}

# wireguard-go on host H (TUN wg<pid><H>) with a key of its own -> KEY_<H>; its peer set later.
wgo_up() { # H
    local ns="$P-$1"
    (umask 077 && wg genkey >"$TMP/wg-$1.key")
    printf -v "KEY_$1" '%s' "$(wg pubkey <"$TMP/wg-$1.key")"
    spawn "$TMP/wgo-$1.log" ip netns exec "$ns" wireguard-go -f "wg$$$1"
    wait_for 100 ip -n "$ns" link show "wg$$$1" || die "wireguard-go on $1 made no TUN device"
}

# wireguard-go on H: its peer (key KEY_<other>), address, the kernel vxlan device and bridge.
wgo_peer() { # H
    local h="$1" ns="$P-$1" o key dev
    o="$(other "$h")" key="KEY_$(other "$h")"
    dev="wg$$$h"
    ip netns exec "$ns" wg set "wg$$$h" private-key "$TMP/wg-$h.key" listen-port "$PORT" \
        peer "${!key}" endpoint "$(ul_of "$o"):$PORT" allowed-ips "$(in_of "$o")/32"
    ip -n "$ns" addr add "$(in_of "$h")/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" link add vx0 type vxlan id "$VNI" local "$(in_of "$h")" remote "$(in_of "$o")" dstport 4789 dev "$dev"
    ip -n "$ns" link add kbr0 type bridge
    ip -n "$ns" link set vx0 master kbr0
    ip -n "$ns" link set ctr master kbr0
    ip -n "$ns" link set vx0 up
    ip -n "$ns" link set kbr0 up
}

declare -A TCP=() P50=()
IDLE_CPU=""

# CPU time (utime + stime, clock ticks) of PID.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The idle vswitchd's CPU over 5 s, in % of one core (the timer thread wakes 4 times a
# second; nothing else runs).
idle_cpu() { # PID
    local t0 t1 hz
    hz="$(getconf CLK_TCK)"
    t0="$(cpu_ticks "$1")"
    sleep 5
    t1="$(cpu_ticks "$1")"
    IDLE_CPU="$(calc "($t1 - $t0) * 100 / $hz / 5")"
}
measure() { # SETUP
    local s="$1"
    connectivity "$s"
    warm_up "$CA" "$IP_CB" || true
    ping_run "$s" "cA -> cB" "$CA" "$IP_CB" "$TMP/$s-ping.txt"
    P50[$s]="$P50"
    iperf_run "$s" - "cA -> cB" "$CB" "$CA" "$IP_CB" $((5201 + RANDOM % 2000)) "$TMP/$s-tcp.json" -P 1
    TCP[$s]="$GBPS"
    info "$s: TCP $TCP_TEXT; ping $PING_TEXT"
}

run_setup() {
    local s="$1"
    say "setup $s"
    net_up
    case "$s" in
        enc)
            vsw_up "$s" A
            vsw_up "$s" B
            vsw_tunnel A --encrypt
            vsw_tunnel B --encrypt
            connectivity "$s"
            idle_cpu "$VSW_PID"
            info "idle vswitchd with an encrypted tunnel (a session up): $(dec 2 "$IDLE_CPU")% of a core over 5 s"
            ;;
        mixed)
            vsw_up "$s" A
            wgo_up B
            vsw_tunnel A --encrypt
            wgo_peer B
            ;;
        wgo)
            wgo_up A
            wgo_up B
            wgo_peer A
            wgo_peer B
            ;;
        plain)
            vsw_up "$s" A
            vsw_up "$s" B
            vsw_tunnel A
            vsw_tunnel B
            ;;
    esac
    measure "$s"
    teardown
}

say "encrypted overlays: TCP ${TCP_SECS}s 1 stream cA -> cB, $PINGS pings; load $(loadavg)"
for s in enc mixed wgo plain; do run_setup "$s"; done
say "results ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), load $(loadavg))"
printf '    %-34s %10s %12s %10s %10s\n' setup "TCP Gbit/s" "ping p50 ms" "TCP / wgo" "TCP / plain"
declare -A NAME=([enc]="vswitchd <-> vswitchd, encrypted" [mixed]="vswitchd <-> wireguard-go"
    [wgo]="wireguard-go <-> wireguard-go" [plain]="vswitchd <-> vswitchd, cleartext")
for s in enc mixed wgo plain; do
    printf '    %-34s %10s %12s %10s %10s\n' "${NAME[$s]}" "$(dec 2 "${TCP[$s]}")" "$(dec 3 "${P50[$s]}")" \
        "$(dec 2 "$(calc "${TCP[$s]} / ${TCP[wgo]}")")" "$(dec 2 "$(calc "${TCP[$s]} / ${TCP[plain]}")")"
done
info "idle vswitchd with an encrypted tunnel: $(dec 2 "$IDLE_CPU")% of a core"
