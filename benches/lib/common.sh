# shellcheck shell=bash
# Shell helpers shared by benches/run.sh and benches/vlan.sh (sourced, not run).
#
# The sourcing script sets, before sourcing: START_SECS (date +%s at start) and SCRIPT_NAME
# (run.sh, vlan.sh: prefixes die's messages and names the policy-rc.d it may write). Before
# calling bench_state it sets TMP; bench_state creates the state the cleanup works on (PIDS,
# NSES, LOGS, POLICY_RC_D) and installs the EXIT/INT/TERM traps.

say() { printf '\n\033[1m==> %s\033[0m  [%ss]\n' "$*" "$(($(date +%s) - START_SECS))"; }
info() { printf '    %s\n' "$*"; }
die() {
    echo "$SCRIPT_NAME: $*" >&2
    exit 1
}

# ---- state, cleanup --------------------------------------------------------------------------
bench_state() {
    PIDS=()        # every background process this script started
    NSES=()        # every namespace this script created (and not yet deleted)
    LOGS=()        # daemon logs worth showing when something fails
    POLICY_RC_D="" # set when we created /usr/sbin/policy-rc.d for the apt-get install
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# True while PID runs (a child that exited but is not reaped yet, a zombie, does not count).
pid_alive() {
    local st
    st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() { # PID [SIGNAL]: signal (default TERM), wait up to 3 s, then KILL; reap it
    local pid="$1"
    if pid_alive "$pid"; then
        kill "-${2:-TERM}" "$pid" 2>/dev/null || true
        for _ in $(seq 30); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    return 0
}

# Forget a reaped PID, so that cleanup never signals a later process that reuses the number.
forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Run a command in the background and wait for it: a TERM (or INT) then interrupts the wait at
# once and the cleanup kills the command, instead of bash deferring the trap until it ends.
run_wait() {
    local p rc=0
    "$@" &
    p=$!
    PIDS+=("$p")
    wait "$p" || rc=$?
    forget_pid "$p"
    return "$rc"
}

del_ns() {
    local ns="$1" pids
    pids="$(ip netns pids "$ns" 2>/dev/null || true)"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    local keep=() n
    for n in "${NSES[@]}"; do [ "$n" = "$ns" ] || keep+=("$n"); done
    NSES=("${keep[@]}")
    return 0
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local pid ns log
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ "$rc" -ne 0 ]; then
        for log in "${LOGS[@]}"; do
            [ -s "$log" ] || continue
            echo "---- last lines of $log ----" >&2
            tail -n 25 "$log" >&2
        done
    fi
    for ns in "${NSES[@]}"; do del_ns "$ns"; done
    [ -z "$POLICY_RC_D" ] || rm -f "$POLICY_RC_D"
    rm -rf "$TMP"
    exit "$rc"
}

in_ns() {
    local ns="$1"
    shift
    ip netns exec "$ns" "$@"
}

# ---- dependencies ----------------------------------------------------------------------------
# The caller declares the associative array PKG (command -> Debian package); pkg_add_ovs adds
# the Open vSwitch tools to it.
pkg_add_ovs() {
    PKG["ovs-vswitchd"]=openvswitch-switch
    PKG["ovsdb-server"]=openvswitch-switch
    PKG["ovsdb-tool"]=openvswitch-common
    PKG["ovs-vsctl"]=openvswitch-common
    PKG["ovs-appctl"]=openvswitch-common
}

# Install the packages of the commands in PKG that are missing, then add /usr/sbin and /sbin
# to PATH.
install_deps() {
    local missing=() cmd pkgs
    for cmd in "${!PKG[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${PKG[$cmd]}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
        info "installing ${pkgs[*]}"
        # Installing openvswitch-switch must not start (or enable the start of) the system
        # service: a policy-rc.d that says "no" for the duration of the install, unless the
        # host already has one (then it already decides).
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            POLICY_RC_D=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\n# created by vswitch benches/%s for one apt-get install\nexit 101\n' "$SCRIPT_NAME" >"$POLICY_RC_D"
            chmod 755 "$POLICY_RC_D"
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${pkgs[@]}" >/dev/null
        if [ -n "$POLICY_RC_D" ]; then
            rm -f "$POLICY_RC_D"
            POLICY_RC_D=""
        fi
    else
        info "all tools present"
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
}

# ---- build -----------------------------------------------------------------------------------
# With BUILD=1, cargo build --workspace --release (BUILD_SECS: how long it took); then VSWITCHD
# and VSCTL must exist.
build_release() {
    local cargo build_t0
    if [ "$BUILD" = 1 ]; then
        say "cargo build --workspace --release"
        cargo="$(command -v cargo || true)"
        [ -n "$cargo" ] || cargo="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
        [ -x "$cargo" ] || die "cargo not found (install Rust, or pass --no-build with built binaries)"
        build_t0="$(date +%s)"
        "$cargo" build --workspace --release
        # shellcheck disable=SC2034 # used by the sourcing script
        BUILD_SECS=$(($(date +%s) - build_t0))
    fi
    { [ -x "$VSWITCHD" ] && [ -x "$VSCTL" ]; } || die "missing $VSWITCHD or $VSCTL (build: cargo build --workspace --release)"
}

# ---- helpers ---------------------------------------------------------------------------------
dec() { awk -v x="$2" "BEGIN { printf \"%.$1f\", x }"; } # DIGITS VALUE
wait_for() { # TRIES CMD... : retry every 0.1 s
    local n="$1"
    shift
    for _ in $(seq "$n"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
mac_of() { # NS IFACE
    ip -n "$1" -j link show dev "$2" >"$TMP/link.json"
    python3 "$LIB" mac "$TMP/link.json"
}

mkns() {
    ip netns add "$1"
    NSES+=("$1")
    ip -n "$1" link set lo up
    # No IPv6: no router solicitations or ND chatter in the counters.
    in_ns "$1" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# h1 (IP1 in H1) and h2 (IP2 in H2) ping each other; WHAT names the setup in the error,
# CONNECT_VIA what connects them (default: the switch).
connectivity() { # WHAT
    for _ in $(seq 40); do
        if timeout 5 ip netns exec "$H1" ping -n -q -c 1 -W 1 "$IP2" >/dev/null 2>&1 &&
            timeout 5 ip netns exec "$H2" ping -n -q -c 1 -W 1 "$IP1" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.25
    done
    die "$1: h1 and h2 cannot ping each other through ${CONNECT_VIA:-the switch}"
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
ovs_start() { # NS DIR WHAT -> OVS_VSWITCHD_PID (WHAT names it in errors)
    local ns="$1" d="$2" what="$3" pid
    mkdir -p "$d"
    LOGS+=("$d/ovsdb-server.log" "$d/ovs-vswitchd.log")
    ovs_env "$d" ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    env OVS_RUNDIR="$d" OVS_LOGDIR="$d" OVS_DBDIR="$d" OVS_SYSCONFDIR="$d" \
        ip netns exec "$ns" ovsdb-server "$d/conf.db" \
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
        ip netns exec "$ns" ovs-vswitchd "unix:$d/db.sock" \
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

# parse_setup_opts DEFAULT_ONLY ARGS...: the options vlan.sh and vxlan.sh share (--quick,
# --only, --no-build, --save/--no-save, --vswitchd-args, --table, --help). Sets QUICK, ONLY,
# BUILD, SAVE, VSW_EXTRA and VSW_ARGS; --table and --help call the sourcing script's report_py and
# usage and exit.
# shellcheck disable=SC2034 # the variables are the sourcing script's
parse_setup_opts() {
    QUICK=0
    ONLY="$1"
    shift
    BUILD=1
    SAVE=""
    VSW_EXTRA=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --quick) QUICK=1 ;;
            --only)
                [ $# -ge 2 ] || die "--only needs a list"
                ONLY="$2"
                shift
                ;;
            --only=*) ONLY="${1#*=}" ;;
            --no-build) BUILD=0 ;;
            --save) SAVE=1 ;;
            --no-save) SAVE=0 ;;
            --vswitchd-args)
                [ $# -ge 2 ] || die "--vswitchd-args needs a string"
                VSW_EXTRA="$2"
                shift
                ;;
            --vswitchd-args=*) VSW_EXTRA="${1#*=}" ;;
            --table)
                [ $# -ge 2 ] || die "--table needs a results file"
                report_py table "$2"
                exit 0
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                usage >&2
                die "unknown argument: $1"
                ;;
        esac
        shift
    done
    read -r -a VSW_ARGS <<<"$VSW_EXTRA"
}
