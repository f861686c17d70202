#!/usr/bin/env bash
# Soak through every feature at once (issue 10): two vswitchd "machines" A and B, each in a
# network namespace of its own, carry L2, VLAN, VXLAN and NAT traffic side by side for
# --time seconds while every --interval seconds the script samples each vswitchd's memory
# (VmRSS/VmHWM from /proc/PID/status), open file descriptors, FDB sizes, conntrack size and
# drop counters by reason (vsctl --json stats). At the end it prints the RSS series, the
# warm-up level, the final RSS, the growth and a verdict:
#
#   PASS when no vswitchd's RSS, after the warm-up, ever exceeds its warm-up level by more
#   than 5 %, no vswitchd died, every feature carried its traffic (at least 80 % of its
#   cycles fully succeeded, no iperf3 leg always failed, every ping got replies) and the
#   checks before and after the traffic passed.
#
#   sudo bash benches/soak.sh                    # 600 s, a sample every 10 s
#   sudo bash benches/soak.sh --time 1800 --interval 30
#   sudo bash benches/soak.sh --quick            # smoke run: 60 s, a sample every 5 s, saves nothing
#   bash benches/soak.sh --summary benches/results/soak-all-<date>-<time>.json   # report again
#
# What is built (all namespaces named <prefix>-*, the prefix "sk" + 6 random hex digits; every
# address lives only inside them; vswitchd runs with `ip netns exec` in A or B, never in the
# root namespace, with its socket, database and log in a private temp dir):
#
#   A  vswitchd A                              B  vswitchd B
#      bridge l2 (aging 30 s): h1p, h2p           bridge vl: v3p (access 10), v4p (access 20),
#        (afpacket), tap3 (TAP moved into h3)        trk (trunk 10,20)
#      bridge vl: v1p (access 10), v2p (access    bridge ov: ctr (cB), tunnel vx VNI 42 ->
#        20), trk (trunk 10,20)  <--- veth --->      198.51.100.1
#      bridge ov: ctr (cA), tunnel vx VNI 42 ->   bridge nat: n1p, n2p; add-net 172.18.0.0/24
#        198.51.100.2 (B) and 198.51.100.18 (K)      --gateway 172.18.0.1; set-uplink up0 --ip
#      ul 198.51.100.1/28 <--- underlay ---> ul      198.51.100.66/26 --gw 198.51.100.65;
#      ulk 198.51.100.17/28 <-> K                    publish tcp 8080 -> n1:80, tcp 5201 ->
#                                                    n1:5201, udp 5353 -> n1:5353
#   K   a kernel VXLAN peer: vx0 (VNI 42, remote 198.51.100.17) with 10.91.42.3/24
#   wan the outside behind B's uplink: 198.51.100.65/26, no route to 172.18.0.0/24
#   hosts: h1 10.91.1.1, h2 .2, h3 .3 (on the TAP); v1 10.91.10.1 (VLAN 10, A), v2 .2 (VLAN
#   20, A), v3 .3 (VLAN 10, B), v4 .4 (VLAN 20, B), all in one subnet so that VLAN isolation
#   is checked by ARP; cA 10.91.42.1, cB .2 (MTU 1450); n1 172.18.0.2, n2 .3 (default via .1)
#
# The traffic, bounded per cycle so that a 2-core machine stays usable. Four loops run at
# once, one per feature; each cycle is one iperf3 TCP run of --tcp-seconds (default 3) at
# --rate (default 500M, iperf3 -b), the "leg" rotating as listed, then the feature's extras
# and a 1 s pause:
#   l2     h1->h2, h2->h1 (-R), h3(TAP)->h1, h1->h3(TAP) (-R); extras: h2 sends --macs
#          (default 100) broadcast frames from fresh random MACs, so the FDB of l2 churns
#          (aging 30 s: learned, aged out, compacted)
#   vlan   v1->v3 (VLAN 10 over the trunk), -R, v2->v4 (VLAN 20), -R
#   vxlan  cA->cB (vswitchd to vswitchd), -R, cA->K (vswitchd to the kernel vxlan device),
#          -R (kernel to vswitchd: whole super-packets)
#   nat    n1->wan (masqueraded), -R, wan->198.51.100.66:5201->n1 (published), -R; extras:
#          --curls (default 20) short HTTP/1.0 connections n2->wan:80 (masquerade) and as
#          many wan->198.51.100.66:8080->n1:80 (published), 5 hairpin n2->198.51.100.66:8080,
#          --udps (default 20) UDP flows n2->wan:5353 and half as many wan->198.51.100.66:5353
#          (each from a fresh socket, answered by an echo server): conntrack entries are
#          made all the time and expire (TCP TIME_WAIT 120 s, UDP 30/120 s), so the table
#          churns at a steady size of some thousands
#   and, for the whole run, ping -i 0.01 h1->h3 (TAP), v2->v4 (VLAN 20 over the trunk),
#   cA->cB and cA->K (VXLAN), n2->wan (NAT), with -D -O so that losses are timed (a loss is
#   an echo never answered: -O also names replies that are merely later than 10 ms).
# Before the traffic it checks every pair pings, that VLAN 10 and 20 are isolated (v1 cannot
# reach v2 or v4 in the same subnet), that wan sees n2's connections from the uplink address
# (masquerade), that n1 sees wan's connections to the published port from wan's own address,
# and that a hairpinned connection reaches n1 from the gateway; after the traffic it checks
# reachability and isolation again.
#
# Warm-up: the first 20 % of the run or the first 60 s, whichever is longer, but at most half
# the run (so --time 600 has 120 s, --quick 30 s): long enough for conntrack to approach its
# steady size (TIME_WAIT 120 s) and the aged FDB to turn over a few times. The warm-up level
# of each vswitchd is its largest VmRSS sampled within the warm-up (idle sample excluded);
# growth = (VmRSS - warm-up level) / warm-up level, reported for the final sample and for the
# largest sample after the warm-up; the verdict uses the latter (5 % limit). VmRSS includes
# the afpacket ports' mmap'ed RX/TX rings (RssFile, most of it: 4 MiB per ring, touched as
# frames pass); RssAnon (the heap) is printed beside it and reported with its own growth,
# for information. Open file descriptors are sampled too (a leak would show there).
#
# Each sample line: t, the 1-min load average, then per vswitchd VmRSS (RssAnon) and VmHWM,
# open fds, FDB entries per bridge, conntrack entries (B), the sum of all drop counters, and
# the cycles fully ok so far per feature. The machine may be shared (others' builds): the
# load average is printed at the start, in every sample and at the end, and saved.
#
# Output: one line per sample, then the series and the verdict; the JSON (per vswitchd every
# sample with its non-zero drop counters by port and reason and its final `vsctl --json
# stats`, every traffic cycle, ping statistics, the checks, machine, load average, vswitch
# commit and binary hash) goes to benches/results/soak-all-<date>-<time>.json
# unless --no-save (--quick saves nothing unless --save). Exit status 0 on PASS, 1 on FAIL or
# if a vswitchd died (the soak stops at the first sample that finds one gone). Everything it
# made (namespaces, the temp dir /tmp/vswitch-soak.*, processes) is removed on exit, error,
# Ctrl-C or SIGTERM; nothing else is touched (no root-namespace interface, address, route or
# sysctl). The binaries (and the python helper benches/lib/soak.py) are copied into the temp
# dir at the start, so a rebuild of target/release during the run changes nothing; the JSON
# names HEAD, whether vswitch's sources had uncommitted changes, and the vswitchd binary's
# sha256. Uses the option parser and the helpers of benches/lib (common.sh).
#
# Tools: ip, iperf3, ping, curl, python3, ss, timeout, awk, sha256sum (checked with command -v;
# nothing is installed), a kernel with vxlan for K (else --no-kernel-peer), root.
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/soak.sh [--time S] [--interval S] [--quick] [--rate R] [--tcp-seconds S]
#:                                  [--curls N] [--udps N] [--macs N] [--no-kernel-peer]
#:                                  [--build|--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
#:                                  [--keep DIR]
#:        bash benches/soak.sh --summary FILE      print a saved result's report again
#:
#:   --time S             how long the traffic runs (default 600; --quick: 60)
#:   --interval S         seconds between samples (default 10; --quick: 5)
#:   --quick              smoke run: 60 s, a sample every 5 s; saves nothing unless --save
#:   --rate R             iperf3 -b of every TCP run (default 500M; 0 = unlimited)
#:   --tcp-seconds S      iperf3 -t of every TCP run (default 3)
#:   --curls N            short HTTP connections per NAT cycle and direction (default 20)
#:   --udps N             short UDP flows per NAT cycle outbound (default 20; inbound half)
#:   --macs N             fresh source MACs per L2 cycle (default 100)
#:   --no-kernel-peer     no kernel vxlan peer K (only vswitchd <-> vswitchd VXLAN)
#:   --build / --no-build cargo build --release --workspace first: --build always, --no-build
#:                        never; by default only when target/release/vswitchd or vsctl is missing
#:   --save / --no-save   write benches/results/soak-all-<date>-<time>.json (default: save,
#:                        except with --quick)
#:   --vswitchd-args ARGS extra arguments for both vswitchds, e.g. "--workers 1"
#:   --keep DIR           copy the raw files (iperf3 JSON, ping output, stats, vswitchd logs,
#:                        server logs) to DIR before the temp dir is removed
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---- options ---------------------------------------------------------------------------------
OPTS=("--time=SOAK_TIME" "--interval=INTERVAL" quick "--rate=RATE" "--tcp-seconds=TCP_S"
    "--curls=CURLS" "--udps=UDPS" "--macs=MACS" "--no-kernel-peer:KPEER=0" build no-build save
    vswitchd-args "--summary=TABLE" "--keep=KEEP")
SOAK_TIME="" INTERVAL="" RATE=500M TCP_S=3 CURLS=20 UDPS=20 MACS=100 KPEER=1 BUILD=auto KEEP=""
parse_opts "$@" # --summary FILE: soak.py table FILE prints the saved result again
set_defaults "SOAK_TIME=60 INTERVAL=5" "SOAK_TIME=600 INTERVAL=10"
for v in time:SOAK_TIME interval:INTERVAL tcp-seconds:TCP_S curls:CURLS udps:UDPS macs:MACS; do
    n="${v#*:}"
    need_num "--${v%%:*}" "${!n}"
done
[[ "$RATE" =~ ^[0-9]+[KMG]?$ ]] || die "--rate must look like 500M, 1G or 0, not '$RATE'"
[ "$SOAK_TIME" -ge 20 ] || die "--time $SOAK_TIME: at least 20 s"
[ "$INTERVAL" -le $((SOAK_TIME / 4)) ] || die "--interval $INTERVAL: at most a quarter of --time"
save_default
need_root "network namespaces"

# ---- tools -----------------------------------------------------------------------------------
missing=()
for cmd in ip iperf3 ping curl python3 ss timeout awk sha256sum; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ "${#missing[@]}" -eq 0 ] || die "missing tools: ${missing[*]} (on Debian: apt-get install iproute2 iperf3 iputils-ping curl python3 coreutils gawk)"
# The interpreter itself, not a version manager's shim: the loops start python every cycle.
PY="$(python3 -c 'import sys; print(sys.executable)')"
[ -x "$PY" ] || die "cannot find the python3 interpreter (sys.executable: '$PY')"

# ---- build -----------------------------------------------------------------------------------
build_release --workspace --release
VSCTL_HELP="$("$VSCTL" --help 2>&1 || true)"
for verb in add-tunnel add-vlan add-net set-uplink publish; do
    grep -q " $verb " <<<"$VSCTL_HELP" || die "$VSCTL has no $verb: build a current vswitch"
done

# ---- state, cleanup --------------------------------------------------------------------------
while :; do
    P="sk$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
    ip netns list 2>/dev/null | grep -q "^$P-" || break
done
NS_A="$P-a" NS_B="$P-b" NS_K="$P-k" WAN="$P-wan"
H1="$P-h1" H2="$P-h2" H3="$P-h3"
V1="$P-v1" V2="$P-v2" V3="$P-v3" V4="$P-v4"
CA="$P-ca" CB="$P-cb" N1="$P-n1" N2="$P-n2"
L2NET=10.91.1 VLNET=10.91.10 OVNET=10.91.42
UL_A=198.51.100.1 UL_B=198.51.100.2 ULK_A=198.51.100.17 ULK_K=198.51.100.18
NAT_SUBNET=172.18.0.0/24 NAT_GW=172.18.0.1 IP_N1=172.18.0.2 IP_N2=172.18.0.3
IP_WAN=198.51.100.65 IP_UP=198.51.100.66
VNI=42
bench_state vswitch-soak
SD="$TMP/soak"
mkdir -p "$SD" "$TMP/bin" "$TMP/www"
# --keep DIR: the raw files are copied out before the cleanup removes the temp dir.
pre_cleanup() {
    if [ -n "$KEEP" ] && [ -d "$SD" ]; then
        mkdir -p "$KEEP" && cp -r "$SD/." "$KEEP/" && cp -r "$TMP"/vsw-* "$KEEP/" 2>/dev/null
    fi
}
echo "vswitch soak" >"$TMP/www/index.html"
: >"$SD/pings.tsv"
: >"$SD/checks.jsonl"

# What runs, copied now: others may rebuild target/release while the soak runs.
cp "$VSWITCHD" "$VSCTL" "$LIBDIR/soak.py" "$LIBDIR/benchlib.py" "$TMP/bin/"
BENCH_VSWITCHD_BIN="built $(date -u -d "@$(stat -c %Y "$VSWITCHD")" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$VSWITCHD" | cut -c1-16)"
VSWITCHD="$TMP/bin/vswitchd"
VSCTL="$TMP/bin/vsctl"
SOAKPY="$TMP/bin/soak.py"
soak_py() { "$PY" "$SOAKPY" "$@"; }
bench_commit --untracked-files=no -- vswitch ctl vxlan nat Cargo.toml Cargo.lock

check() { # PHASE OK(0/1) WHAT [DETAIL]
    local ok=false detail="${4:-}"
    [ "$2" = 1 ] && ok=true
    printf '{"phase":"%s","ok":%s,"check":"%s","detail":"%s"}\n' "$1" "$ok" "$3" "${detail//\"/\'}" >>"$SD/checks.jsonl"
    if [ "$2" = 1 ]; then info "ok: $3${detail:+ ($detail)}"; else info "FAILED: $3${detail:+ ($detail)}"; fi
}

# ---- namespaces and links --------------------------------------------------------------------
net_up() {
    mkns "$NS_A" "$NS_B" "$WAN" "$H1" "$H2" "$H3" "$V1" "$V2" "$V3" "$V4" "$CA" "$CB" "$N1" "$N2"
    [ "$KPEER" = 0 ] || mkns "$NS_K"
    # L2: two afpacket hosts (the TAP host h3 gets its interface from vswitchd later)
    host_link "$NS_A" h1p "$H1" "$L2NET.1/24"
    host_link "$NS_A" h2p "$H2" "$L2NET.2/24"
    # VLAN: access hosts on A and B, a trunk between them
    host_link "$NS_A" v1p "$V1" "$VLNET.1/24"
    host_link "$NS_A" v2p "$V2" "$VLNET.2/24"
    host_link "$NS_B" v3p "$V3" "$VLNET.3/24"
    host_link "$NS_B" v4p "$V4" "$VLNET.4/24"
    ns_link "$NS_A" trk "$NS_B" trk
    # VXLAN: containers (MTU 1450) and the underlay(s)
    host_link "$NS_A" ctr "$CA" "$OVNET.1/24" 1450
    host_link "$NS_B" ctr "$CB" "$OVNET.2/24" 1450
    ns_link "$NS_A" ul "$NS_B" ul "$UL_A/28" "$UL_B/28"
    if [ "$KPEER" = 1 ]; then
        ns_link "$NS_A" ulk "$NS_K" ulk "$ULK_A/28" "$ULK_K/28"
        ip -n "$NS_K" link add vx0 type vxlan id "$VNI" remote "$ULK_A" local "$ULK_K" dstport 4789 dev ulk ||
            die "cannot create a kernel vxlan device (no CONFIG_VXLAN?): run with --no-kernel-peer"
        ip -n "$NS_K" addr add "$OVNET.3/24" dev vx0
        ip -n "$NS_K" link set vx0 up
    fi
    # NAT: two containers behind B's gateway, wan behind B's uplink
    host_link "$NS_B" n1p "$N1" "$IP_N1/24"
    host_link "$NS_B" n2p "$N2" "$IP_N2/24"
    ip -n "$N1" route add default via "$NAT_GW"
    ip -n "$N2" route add default via "$NAT_GW"
    host_link "$NS_B" up0 "$WAN" "$IP_WAN/26"
    timeout 10 ip netns exec "$NS_A" ping -n -q -c 1 -W 2 "$UL_B" >/dev/null ||
        die "the underlay does not work: A ($UL_A) cannot ping B ($UL_B)"
}

# ---- vswitchd --------------------------------------------------------------------------------
declare -A SOCK_OF=() PID_OF=()
cfg() { vsctl_at "${SOCK_OF[$1]}" "${@:2}" >/dev/null; } # NAME ARGS...: configure vswitchd NAME

vl_bridge() { # NAME ACCESS10 ACCESS20: bridge vl with an access port of VLAN 10, one of 20, trunk trk
    local p
    cfg "$1" add-br vl
    for p in "$2" "$3" trk; do cfg "$1" add-port vl "$p"; done
    cfg "$1" add-vlan vl "$2" 10 --access
    cfg "$1" add-vlan vl "$3" 20 --access
    cfg "$1" add-vlan vl trk 10,20
}
ov_bridge() { # NAME REMOTE...: bridge ov with ctr and the VXLAN tunnel vx to the REMOTEs
    local n="$1" r remotes=()
    shift
    for r in "$@"; do remotes+=(--remote "$r"); done
    cfg "$n" add-br ov
    cfg "$n" add-port ov ctr
    cfg "$n" add-tunnel ov vx --vni "$VNI" "${remotes[@]}"
}

vsw_config() {
    local n p remotes=("$UL_B")
    [ "$KPEER" = 0 ] || remotes+=("$ULK_K")
    vsw_launch "$NS_A" "$TMP/vsw-A" "vswitchd A"
    SOCK_OF[A]="$VSW_SOCK" PID_OF[A]="$VSW_PID"
    cfg A add-br l2
    cfg A set-aging l2 30
    for p in h1p h2p; do cfg A add-port l2 "$p"; done
    cfg A add-port l2 tap3 --type tap
    wait_for 100 ip -n "$NS_A" link show tap3 || die "vswitchd A did not create TAP tap3"
    ip -n "$NS_A" link set tap3 netns "$H3"
    ip -n "$H3" addr add "$L2NET.3/24" dev tap3
    ip -n "$H3" link set tap3 up
    vl_bridge A v1p v2p
    ov_bridge A "${remotes[@]}"
    vsw_ports_up "$VSW_SOCK" "vswitchd A"

    vsw_launch "$NS_B" "$TMP/vsw-B" "vswitchd B"
    SOCK_OF[B]="$VSW_SOCK" PID_OF[B]="$VSW_PID"
    vl_bridge B v3p v4p
    ov_bridge B "$UL_A"
    cfg B add-br nat
    cfg B add-net nat "$NAT_SUBNET" --gateway "$NAT_GW"
    for p in n1p n2p; do cfg B add-port nat "$p"; done
    cfg B set-uplink up0 --ip "$IP_UP/26" --gw "$IP_WAN"
    for p in "tcp 8080 $IP_N1:80" "tcp 5201 $IP_N1:5201" "udp 5353 $IP_N1:5353"; do
        # shellcheck disable=SC2086 # PROTO PORT TARGET
        cfg B publish $p
    done
    vsw_ports_up "$VSW_SOCK" "vswitchd B"
    for n in A B; do
        info "vswitchd $n (pid ${PID_OF[$n]}):"
        vsctl_at "${SOCK_OF[$n]}" show | sed 's/^/        /'
        echo
    done
}

# ---- servers ---------------------------------------------------------------------------------
servers_up() {
    local ns
    # iperf3 servers: one per namespace that is ever a server
    IPERF_NS=("$H1" "$H2" "$V3" "$V4" "$CB" "$WAN" "$N1")
    [ "$KPEER" = 0 ] || IPERF_NS+=("$NS_K")
    for ns in "${IPERF_NS[@]}"; do
        spawn "$SD/iperf3-server-${ns#"$P"-}.log" ip netns exec "$ns" iperf3 -s -p 5201 --rcv-timeout 15000
    done
    spawn "$SD/http-wan.log" ip netns exec "$WAN" "$PY" -u -m http.server --bind "$IP_WAN" --directory "$TMP/www" 80
    spawn "$SD/http-n1.log" ip netns exec "$N1" "$PY" -u -m http.server --bind "$IP_N1" --directory "$TMP/www" 80
    spawn "$SD/udp-wan.log" ip netns exec "$WAN" "$PY" "$SOAKPY" udp-echo "$IP_WAN" 5353
    spawn "$SD/udp-n1.log" ip netns exec "$N1" "$PY" "$SOAKPY" udp-echo "$IP_N1" 5353
    for ns in "${IPERF_NS[@]}"; do
        wait_listen "$ns" 5201 || die "iperf3 server in $ns did not start"
    done
    wait_listen "$WAN" 80 || die "http server in wan did not start"
    wait_listen "$N1" 80 || die "http server in n1 did not start"
    wait_listen "$N1" 5353 u || die "udp echo in n1 did not start"
    wait_listen "$WAN" 5353 u || die "udp echo in wan did not start"
}

# ---- checks ----------------------------------------------------------------------------------
unreach() { # NS IP: no reply to 3 pings
    ! timeout 10 ip netns exec "$1" ping -n -q -c 3 -i 0.3 -W 1 "$2" >/dev/null 2>&1
}
http_from() { # CLIENT_NS URL SERVER_LOG: the client address the server logged for this request
    local tag="soak-check-$RANDOM$RANDOM"
    timeout 10 ip netns exec "$1" curl -s --http1.0 -o /dev/null -w '%{http_code}' --max-time 5 "$2?$tag" | grep -q 200 || return 1
    sleep 0.2
    grep "$tag" "$3" | tail -n 1 | awk '{ print $1 }'
}
check_seen() { # PHASE WHAT WANT CLIENT_NS URL SERVER_LOG: the server saw the client come from WANT
    local seen
    seen="$(http_from "$4" "$5" "$6" || true)"
    check "$1" "$([ "$seen" = "$3" ] && echo 1 || echo 0)" "$2" "seen '${seen:-no answer}'"
}
check_echo() { # PHASE WHAT CLIENT_NS DST: 3 UDP flows to DST:5353, at least one echoed
    local r
    read -r r _ < <(timeout 10 ip netns exec "$3" "$PY" "$SOAKPY" udp-churn "$4" 5353 3 || echo 0 3)
    check "$1" "$([ "${r:-0}" -ge 1 ] && echo 1 || echo 0)" "$2" "$r/3"
}
checks() { # PHASE
    local ph="$1" pair ns ip r
    for pair in "$H1 $L2NET.2 l2 h1->h2" "$H1 $L2NET.3 l2 h1->h3(tap)" "$H2 $L2NET.3 l2 h2->h3(tap)" \
        "$V1 $VLNET.3 vlan10 v1->v3 (trunk)" "$V2 $VLNET.4 vlan20 v2->v4 (trunk)" \
        "$CA $OVNET.2 vxlan cA->cB" "$N1 $IP_WAN nat n1->wan" "$N2 $IP_WAN nat n2->wan"; do
        read -r ns ip r <<<"$pair"
        check "$ph" "$(reach "$ns" "$ip" && echo 1 || echo 0)" "ping $r"
    done
    if [ "$KPEER" = 1 ]; then
        check "$ph" "$(reach "$CA" "$OVNET.3" && echo 1 || echo 0)" "ping vxlan cA->K (kernel vxlan)"
    fi
    for pair in "$V1 $VLNET.2 v1(vlan10)->v2(vlan20)" "$V1 $VLNET.4 v1(vlan10)->v4(vlan20)" "$V3 $VLNET.2 v3(vlan10)->v2(vlan20)"; do
        read -r ns ip r <<<"$pair"
        check "$ph" "$(unreach "$ns" "$ip" && echo 1 || echo 0)" "vlan isolation: no ping $r"
    done
    check_seen "$ph" "nat masquerade: wan sees n2's connection from $IP_UP" "$IP_UP" "$N2" "http://$IP_WAN/" "$SD/http-wan.log"
    check_seen "$ph" "nat published tcp 8080: n1 sees wan's connection from $IP_WAN" "$IP_WAN" "$WAN" "http://$IP_UP:8080/" "$SD/http-n1.log"
    check_seen "$ph" "nat hairpin: n2 -> $IP_UP:8080 reaches n1 from $NAT_GW" "$NAT_GW" "$N2" "http://$IP_UP:8080/" "$SD/http-n1.log"
    check_echo "$ph" "nat udp out: n2 -> wan:5353 echoed" "$N2" "$IP_WAN"
    check_echo "$ph" "nat published udp 5353: wan -> $IP_UP:5353 echoed by n1" "$WAN" "$IP_UP"
}

# ---- the traffic loops -----------------------------------------------------------------------
# One iperf3 leg per cycle, rotating: "CLIENT_NS SERVER_IP LABEL [-R]".
LEGS_l2=("$H1 $L2NET.2 h1->h2" "$H1 $L2NET.2 h2->h1 -R" "$H3 $L2NET.1 h3(tap)->h1" "$H3 $L2NET.1 h1->h3(tap) -R")
LEGS_vlan=("$V1 $VLNET.3 v1->v3(vlan10)" "$V1 $VLNET.3 v3->v1(vlan10) -R" "$V2 $VLNET.4 v2->v4(vlan20)" "$V2 $VLNET.4 v4->v2(vlan20) -R")
LEGS_vxlan=("$CA $OVNET.2 cA->cB" "$CA $OVNET.2 cB->cA -R")
[ "$KPEER" = 0 ] || LEGS_vxlan+=("$CA $OVNET.3 cA->K(kernel)" "$CA $OVNET.3 K(kernel)->cA -R")
LEGS_nat=("$N1 $IP_WAN n1->wan(masq)" "$N1 $IP_WAN wan->n1(masq,-R) -R" "$WAN $IP_UP wan->up:5201->n1(published)" "$WAN $IP_UP n1->wan(published,-R) -R")

curl_burst() { # NS URL N -> "OK N"
    timeout 30 ip netns exec "$1" curl -s --http1.0 --max-time 3 -o /dev/null -w '%{http_code}\n' "$2?c=[1-$3]" 2>/dev/null |
        awk -v n="$3" '$1 == 200 { ok++ } END { print ok + 0, n }'
}
py_pair() { # NS ARGS... -> "OK N" (python helper), "0 N" if it failed
    local ns="$1" out n="${*: -1}"
    shift
    out="$(timeout 30 ip netns exec "$ns" "$PY" "$SOAKPY" "$@" 2>/dev/null)" || out=""
    [ -n "$out" ] || out="0 $n"
    echo "$out"
}

feature_loop() { # FEATURE END
    local f="$1" end="$2" n=0 leg cns dst label rev t0 t1 rc ok extra a b c d e g
    local -n legs="LEGS_$f"
    trap - EXIT INT TERM
    set +e
    while [ "$(date +%s)" -lt "$end" ]; do
        n=$((n + 1))
        leg="${legs[$(((n - 1) % ${#legs[@]}))]}"
        read -r cns dst label rev <<<"$leg"
        t0="$(now)"
        # --rcv-timeout: a receiving client gives up after 10 s without data (only with -R)
        # shellcheck disable=SC2086 # $rev: empty or -R
        timeout $((TCP_S + 20)) ip netns exec "$cns" iperf3 -c "$dst" -p 5201 -t "$TCP_S" -b "$RATE" \
            ${rev:+-R --rcv-timeout 10000} --connect-timeout 3000 -J >"$SD/iperf-$f-$n.json" 2>&1
        rc=$?
        ok=true
        [ "$rc" = 0 ] || ok=false
        extra=""
        case "$f" in
            l2)
                read -r a b < <(py_pair "$H2" mac-churn eth0 "$MACS")
                extra=",\"macs\":[$a,$b]"
                [ "$a" = "$b" ] || ok=false
                ;;
            nat)
                read -r a b < <(curl_burst "$N2" "http://$IP_WAN/" "$CURLS")
                read -r c d < <(curl_burst "$WAN" "http://$IP_UP:8080/" "$CURLS")
                read -r e g < <(curl_burst "$N2" "http://$IP_UP:8080/" 5)
                extra=",\"curl_out\":[$a,$b],\"curl_in\":[$c,$d],\"hairpin\":[$e,$g]"
                [ "$a" = "$b" ] && [ "$c" = "$d" ] && [ "$e" = "$g" ] || ok=false
                read -r a b < <(py_pair "$N2" udp-churn "$IP_WAN" 5353 "$UDPS")
                read -r c d < <(py_pair "$WAN" udp-churn "$IP_UP" 5353 $(((UDPS + 1) / 2)))
                extra="$extra,\"udp_out\":[$a,$b],\"udp_in\":[$c,$d]"
                # UDP has no retransmission: one lost datagram of a cycle is not a failure.
                [ "$a" -ge $((b - 1)) ] && [ "$c" -ge $((d - 1)) ] || ok=false
                ;;
        esac
        t1="$(now)"
        printf '{"feature":"%s","n":%d,"t0":%s,"t1":%s,"leg":"%s","iperf_rc":%d,"iperf_file":"iperf-%s-%d.json"%s,"ok":%s}\n' \
            "$f" "$n" "$t0" "$t1" "$label" "$rc" "$f" "$n" "$extra" "$ok" >>"$SD/loop-$f.jsonl"
        sleep 1
    done
}

start_ping() { # FEATURE LABEL NS DST
    local file="$SD/ping-$1-${2//[^a-zA-Z0-9]/_}.txt"
    spawn "$file" ip netns exec "$3" ping -n -D -O -i 0.01 -W 1 -w $((SOAK_TIME + 1)) "$4"
    printf '%s\t%s\t%s\n' "$1" "$2" "$file" >>"$SD/pings.tsv"
}

sample() { # T FILE(samples|idle|after): vsctl stats of each daemon, then one line; 3 if one died
    local t="$1" at n args=() loops=-
    at="$(now)"
    for n in A B; do
        timeout 10 "$VSCTL" --sock "${SOCK_OF[$n]}" --json stats >"$SD/stats-$n-cur.json" 2>/dev/null || : >"$SD/stats-$n-cur.json"
        args+=("$n" "${PID_OF[$n]}" "$SD/stats-$n-cur.json")
    done
    [ "$2" != samples ] || loops="$SD"
    soak_py sample "$t" "$at" "$SD/$2.jsonl" "$loops" "${args[@]}"
}

# ---- run -------------------------------------------------------------------------------------
bench_begin "soak through every feature: ${SOAK_TIME}s of traffic, a sample every ${INTERVAL}s; namespaces $P-*" \
    note "fine for an RSS growth measurement, not for throughput"
info "vswitchd: $BENCH_VSWITCHD_BIN (HEAD $BENCH_COMMIT, working tree dirty: $BENCH_DIRTY)"
say "namespaces and links"
net_up
say "vswitchd A and B"
vsw_config
say "servers and checks"
servers_up
checks start
if grep -q '"ok":false' "$SD/checks.jsonl"; then
    die "a check failed before the soak started (see above)"
fi
sample -1 idle >/dev/null || die "a vswitchd is gone before the soak started"
for n in A B; do
    info "vswitchd $n idle before the traffic: $(awk '/^VmRSS/ { printf "VmRSS %.2f MiB", $2 / 1024 }' "/proc/${PID_OF[$n]}/status")"
done

say "traffic: 4 loops (iperf3 -t $TCP_S -b $RATE per cycle + extras), 5-6 pings at 10 ms"
SOAK_T0="$(now)"
END=$((${SOAK_T0%.*} + SOAK_TIME))
start_ping l2 "h1->h3(tap)" "$H1" "$L2NET.3"
start_ping vlan "v2->v4(vlan20)" "$V2" "$VLNET.4"
start_ping vxlan "cA->cB" "$CA" "$OVNET.2"
[ "$KPEER" = 0 ] || start_ping vxlan "cA->K(kernel)" "$CA" "$OVNET.3"
start_ping nat "n2->wan" "$N2" "$IP_WAN"
LOOP_PIDS=()
for f in l2 vlan vxlan nat; do
    : >"$SD/loop-$f.jsonl"
    feature_loop "$f" "$END" &
    LOOP_PIDS+=("$!")
    PIDS+=("$!")
done

times=()
for ((t = 0; t <= SOAK_TIME; t += INTERVAL)); do times+=("$t"); done
[ "${times[-1]}" = "$SOAK_TIME" ] || times+=("$SOAK_TIME")
DIED=""
for t in "${times[@]}"; do
    delay="$(awk -v a="$SOAK_T0" -v t="$t" -v n="$(now)" 'BEGIN { d = a + t - n; printf "%.3f", (d > 0 ? d : 0) }')"
    [ "$delay" = 0.000 ] || run_wait sleep "$delay"
    rc=0
    sample "$t" samples || rc=$?
    if [ "$rc" = 3 ]; then
        for n in A B; do pid_alive "${PID_OF[$n]}" || DIED="$DIED $n"; done
        info "vswitchd${DIED} died at t=${t}s: stopping the soak"
        break
    fi
done

say "end of the traffic"
for p in "${LOOP_PIDS[@]}"; do
    if [ -n "$DIED" ]; then stop_pid "$p"; else wait "$p" 2>/dev/null || true; fi
    forget_pid "$p"
done
for n in A B; do
    if pid_alive "${PID_OF[$n]}"; then
        timeout 10 "$VSCTL" --sock "${SOCK_OF[$n]}" --json stats >"$SD/stats-final-$n.json" 2>/dev/null || true
    fi
done
if [ -z "$DIED" ]; then
    run_wait sleep 3
    sample "$(awk -v a="$SOAK_T0" -v n="$(now)" 'BEGIN { printf "%.1f", n - a }')" after || true
    checks end
fi
UPTIME_END="$(uptime)"

# ---- report ----------------------------------------------------------------------------------
bench_meta
export BENCH_VSWITCHD_BIN SOAK_TIME SOAK_INTERVAL SOAK_T0 SOAK_QUICK SOAK_RATE SOAK_TCP_S \
    SOAK_CURLS SOAK_UDPS SOAK_MACS SOAK_KPEER SOAK_PREFIX SOAK_TOPOLOGY SOAK_DAEMONS SOAK_DIED_A \
    SOAK_DIED_B
SOAK_INTERVAL="$INTERVAL" SOAK_QUICK="$QUICK" SOAK_RATE="$RATE" SOAK_TCP_S="$TCP_S"
SOAK_CURLS="$CURLS" SOAK_UDPS="$UDPS" SOAK_MACS="$MACS" SOAK_KPEER="$KPEER" SOAK_PREFIX="$P"
SOAK_DIED_A=0 SOAK_DIED_B=0
[[ "$DIED" != *A* ]] || SOAK_DIED_A=1
[[ "$DIED" != *B* ]] || SOAK_DIED_B=1
SOAK_DAEMONS="{\"A\":{\"pid\":${PID_OF[A]},\"role\":\"l2 (h1p, h2p afpacket, tap3 TAP), vl (access 10/20, trunk to B), ov (VXLAN to B$([ "$KPEER" = 0 ] || echo ' and the kernel peer K'))\"},\"B\":{\"pid\":${PID_OF[B]},\"role\":\"vl (access 10/20, trunk to A), ov (VXLAN to A), nat (add-net, uplink, 3 published ports)\"}}"
SOAK_TOPOLOGY="A: l2 [h1p h2p afpacket, tap3 TAP in h3, aging 30 s], vl [v1p access 10, v2p access 20, trk trunk 10,20], ov [ctr, vx VNI 42 -> $UL_B$([ "$KPEER" = 0 ] || echo ", $ULK_K")]; B: vl [v3p access 10, v4p access 20, trk], ov [ctr, vx -> $UL_A], nat [n1p n2p, net $NAT_SUBNET gw $NAT_GW, uplink up0 $IP_UP/26 via $IP_WAN, publish tcp 8080->$IP_N1:80 tcp 5201->$IP_N1:5201 udp 5353->$IP_N1:5353]; K: kernel vxlan vx0 $OVNET.3; wan $IP_WAN"

say "soak results"
if [ "$SAVE" = 1 ]; then
    mkdir -p "$RESULTS"
    out="$RESULTS/soak-all-$(date +%Y%m%d-%H%M%S).json"
else
    out="$SD/soak-all.json"
fi
rc=0
soak_py report "$SD" "$out" || rc=$?
echo
if [ "$SAVE" = 1 ]; then
    echo "raw results: ${out#"$ROOT"/}   (again: bash benches/soak.sh --summary ${out#"$ROOT"/})"
else
    echo "not saved (--quick or --no-save; --save to keep one)"
fi
bench_footer
[ -z "$DIED" ] || rc=1
exit "$rc"
