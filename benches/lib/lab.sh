# shellcheck shell=bash
# The lab of the bench scripts (sourced by common.sh): namespaces and links, vswitchd, Open
# vSwitch. Everything it creates is on the lists the cleanup works on (NSES, PIDS, LOGS).
#
# A place to run a command ("WHERE") is a namespace name or, for a namespace without a name
# (a container's), its /proc/PID/ns/net.

# ---- namespaces and links --------------------------------------------------------------------
in_ns() {
    local ns="$1"
    shift
    ip netns exec "$ns" "$@"
}

nsx() { # WHERE -> NSX: the command prefix that runs a command there
    case "$1" in
        /*) NSX=(nsenter --net="$1") ;;
        *) NSX=(ip netns exec "$1") ;;
    esac
}

# The lab's set-up and teardown are the testlab CLI (testlab/src/bin/testlab.rs): the same
# functions the Rust tests use. It is built with vswitchd and vsctl (BINS); a setup that builds
# nothing else still gets it built here the first time it is needed (unless --no-build).
lab() { # testlab ARGS...
    if [ ! -x "$TESTLAB" ]; then
        local -a args
        mapfile -t args < <(profiled --release -p testlab --bin testlab)
        [ "$BUILD" != 0 ] || die "missing $TESTLAB (build: cargo build ${args[*]})"
        say "cargo build ${args[*]}"
        "$(command -v cargo || echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo")" build "${args[@]}"
    fi
    "$TESTLAB" "$@"
}

mkns() { # NS...: fresh quiet namespaces: lo up, no IPv6 (no router solicitations or ND chatter), no forwarding
    local ns
    for ns in "$@"; do
        lab netns add "$ns" || die "cannot create namespace $ns"
        NSES+=("$ns")
    done
}

del_ns() { # NS: kill what runs in it, delete it
    local ns="$1"
    lab netns del "$ns" || true
    local keep=() n
    for n in "${NSES[@]}"; do [ "$n" = "$ns" ] || keep+=("$n"); done
    NSES=("${keep[@]}")
    return 0
}

teardown() { # the end of one setup: its processes, then its namespaces
    local pid ns
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    PIDS=()
    for ns in "${NSES[@]}"; do del_ns "$ns"; done
}

# host_link SWITCH_NS IFACE HOST_NS ADDR/LEN [MTU]: a veth pair, IFACE up in SWITCH_NS, eth0
# with ADDR/LEN up in HOST_NS (both ends MTU when given).
host_link() {
    lab veth "$1" "$2" "$3" eth0 --addr-b "$4" ${5:+--mtu "$5"}
    host_napi "$3"
}

# host_napi NS: with BENCH_HOST_NAPI=gro (or threaded), the host's eth0 receives in veth's
# NAPI mode (GRO on: the sender's xmit only queues the frame) and, threaded, in a kernel
# thread of its own instead of the sender's softirq; with BENCH_HOST_NAPI=rps, frames to
# the host are steered over every CPU's backlog (RPS) instead of the sender's: issue 20's
# lever for moving the receiving stack off the switch's thread. Default: the kernel's.
host_napi() {
    case "${BENCH_HOST_NAPI:-}" in
    "") return 0 ;;
    gro | threaded) ;;
    rps)
        ip netns exec "$1" sh -c "printf %x $(((1 << $(nproc)) - 1)) >/sys/class/net/eth0/queues/rx-0/rps_cpus" ||
            die "$1: cannot set eth0's RPS CPUs"
        return 0
        ;;
    *) die "BENCH_HOST_NAPI must be gro, threaded or rps, not $BENCH_HOST_NAPI" ;;
    esac
    # rx-udp-gro-forwarding: veth bypasses NAPI for frames from a TSO-capable sender (the
    # switch's end) unless the receiver has it or rx-gro-list (veth_skb_is_eligible_for_gro).
    ip netns exec "$1" ethtool -K eth0 gro on rx-udp-gro-forwarding on >/dev/null || die "$1: cannot turn GRO on"
    [ "$BENCH_HOST_NAPI" = threaded ] || return 0
    ip netns exec "$1" sh -c 'echo 1 >/sys/class/net/eth0/threaded' || die "$1: cannot make eth0's NAPI threaded"
}

# ns_link NS_A IF_A NS_B IF_B [ADDR_A/LEN ADDR_B/LEN]: a veth pair between two namespaces, both
# ends up (with the addresses when given).
ns_link() {
    lab veth "$1" "$2" "$3" "$4" ${5:+--addr-a "$5"} ${6:+--addr-b "$6"}
}

reach() { # WHERE IP: a ping from WHERE to IP answered within 40 tries (about 10 s)
    nsx "$1"
    for _ in $(seq 40); do
        timeout 5 "${NSX[@]}" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}

# connectivity WHAT: h1 (IP1 in H1) and h2 (IP2 in H2) ping each other; WHAT names the setup
# in the error, CONNECT_VIA what connects them (default: the switch).
connectivity() {
    { reach "$H1" "$IP2" && reach "$H2" "$IP1"; } ||
        die "$1: h1 and h2 cannot ping each other through ${CONNECT_VIA:-the switch}"
}

wait_listen() { # WHERE PORT [u]: until a TCP (u: UDP) socket listens on PORT there, 10 s at most
    nsx "$1"
    wait_for 100 sh -c "$(printf '%q ' "${NSX[@]}")ss -Hl${3:-t}n 'sport = :$2' | grep -q ."
}

mac_of() { # NS IFACE
    ip -n "$1" -j link show dev "$2" >"$TMP/link.json"
    python3 "$LIB" mac "$TMP/link.json"
}

# ---- vswitchd --------------------------------------------------------------------------------
# vsw_launch NS DIR WHAT: vswitchd in NS with its socket, database and log in DIR and the
# --vswitchd-args; waits until it answers. -> VSW_PID, VSW_SOCK. WHAT names it in errors.
vsw_launch() {
    mkdir -p "$2"
    VSW_SOCK="$2/vswitchd.sock"
    LOGS+=("$2/vswitchd.log")
    spawn "$2/vswitchd.log" ip netns exec "$1" "$VSWITCHD" --sock "$VSW_SOCK" --db "$2/conf.json" "${VSW_ARGS[@]}"
    VSW_PID="$SPAWNED"
    lab vswitchd wait --sock "$VSW_SOCK" --pid "$VSW_PID" --vsctl "$VSCTL" --timeout-secs 15 || die "$3 does not answer on $VSW_SOCK"
}

vsctl_at() { # SOCK ARGS...: vsctl's output; its output is shown when it fails
    local sock="$1" out
    shift
    out="$(timeout 10 "$VSCTL" --sock "$sock" "$@" 2>&1)" || die "vsctl $* failed: $out"
    printf '%s' "$out"
}

vsw_ports_up() { # SOCK WHAT: until every port (and the uplink) of that vswitchd is up
    wait_for 100 sh -c "! timeout 10 '$VSCTL' --sock '$1' show | grep -q ' down'" ||
        die "$2: a port is not up: $(vsctl_at "$1" show)"
}

vsw_stats() { # SOCK [BRIDGE]: `vsctl --json stats` on one line, empty if it fails
    timeout 10 "$VSCTL" --sock "$1" --json stats ${2:+"$2"} 2>/dev/null | tr -d '\n'
}

# vsw_record SETUP SOCK PID [PRE [POST]]: vswitchd's `vsctl --json stats` (in VSW_STATS) and
# peak RSS (VSW_HWM, KiB; empty if unknown) as a detail {"kind":"vswitchd", PRE "vmhwm_kib",
# POST "stats"} of SETUP; PRE and POST: more fields, each with its trailing comma.
vsw_record() {
    VSW_STATS="$TMP/$1-stats-$3.json"
    vsctl_at "$2" --json stats >"$VSW_STATS"
    VSW_HWM="$(awk '/^VmHWM/ { print $2 }' "/proc/$3/status" 2>/dev/null || true)"
    record_detail "$1" "{\"kind\":\"vswitchd\",${4:-}\"vmhwm_kib\":${VSW_HWM:-null},${5:-}\"stats\":$(tr -d '\n' <"$VSW_STATS")}"
}

# ---- Open vSwitch (userspace datapath) -------------------------------------------------------
# One ovsdb-server + ovs-vswitchd with database, sockets, pidfiles and logs in a private
# directory (OVS_RUNDIR and friends point there too): neither the daemons nor ovs-vsctl or
# ovs-appctl go near /var/run/openvswitch, /etc/openvswitch or a system OVS. The daemons are
# started with env, not ovs_env: a backgrounded shell function would be a subshell whose PID
# is not the daemon's, and stop_pid would signal the wrong process.
ovs_env() { # DIR CMD...
    local d="$1"
    shift
    env OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d" "$@"
}
ovs_vsctl() { # DIR ARGS...
    local d="$1"
    shift
    ovs_env "$d" timeout 30 ovs-vsctl --db="unix:$d/db.sock" --timeout=20 "$@"
}
ovs_appctl() { # DIR ARGS...
    local d="$1"
    shift
    ovs_env "$d" timeout 10 ovs-appctl -t "$d/ovs-vswitchd.ctl" "$@"
}
# Both daemons at the niceness Debian's ovs-ctl starts them with (-10), as vswitchd's
# workers run by default (--worker-nice): like is compared with like.
OVS_NICE=-10
ovs_start() { # NS DIR WHAT -> OVS_VSWITCHD_PID (WHAT names it in errors)
    local ns="$1" d="$2" what="$3" pid
    mkdir -p "$d"
    LOGS+=("$d/ovsdb-server.log" "$d/ovs-vswitchd.log")
    ovs_env "$d" ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    env OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d" \
        ip netns exec "$ns" nice -n "$OVS_NICE" ovsdb-server "$d/conf.db" \
        --remote="punix:$d/db.sock" --unixctl="$d/ovsdb-server.ctl" \
        --pidfile="$d/ovsdb-server.pid" --log-file="$d/ovsdb-server.log" --no-chdir \
        -vconsole:off -vsyslog:off -vfile:info 2>>"$d/ovsdb-server.stderr" &
    pid=$!
    PIDS+=("$pid")
    wait_for 100 test -S "$d/db.sock" || die "$what: ovsdb-server did not create $d/db.sock"
    ovs_vsctl "$d" --no-wait init
    # Userspace TSO before ovs-vswitchd starts: without it TCP does not pass with the veths'
    # default offloads.
    ovs_vsctl "$d" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true
    env OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d" \
        ip netns exec "$ns" nice -n "$OVS_NICE" ovs-vswitchd "unix:$d/db.sock" \
        --unixctl="$d/ovs-vswitchd.ctl" --pidfile="$d/ovs-vswitchd.pid" \
        --log-file="$d/ovs-vswitchd.log" --no-chdir -vconsole:off -vsyslog:off -vfile:info \
        2>>"$d/ovs-vswitchd.stderr" &
    pid=$!
    PIDS+=("$pid")
    wait_for 100 test -S "$d/ovs-vswitchd.ctl" || die "$what: ovs-vswitchd did not create its control socket"
    # shellcheck disable=SC2034 # used by the sourcing script
    OVS_VSWITCHD_PID="$pid"
}
# The bridge is on the userspace (netdev) datapath with userspace TSO on; OVS_DPIF: the
# dpif/show output.
ovs_check_netdev() { # DIR
    OVS_DPIF="$(ovs_appctl "$1" dpif/show 2>&1 || true)"
    grep -q 'netdev@ovs-netdev' <<<"$OVS_DPIF" || die "ovs: bridge is not on the userspace (netdev) datapath: $OVS_DPIF"
    grep -q 'Userspace TCP Segmentation Offloading support enabled' "$1/ovs-vswitchd.log" ||
        die "ovs: ovs-vswitchd did not enable userspace TSO (see $1/ovs-vswitchd.log)"
}
ovs_kmod() { # true/false: the kernel's openvswitch module is loaded (we never load it)
    if [ -d /sys/module/openvswitch ]; then echo true; else echo false; fi
}
