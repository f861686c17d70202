#!/usr/bin/env bash
# Docker benchmark: two containers on one Docker network, on two kinds of network in one run,
# on the same private dockerd, measured the same way, side by side:
#
#   vsw      docker network create -d vswitch-<unique> --subnet 172.30.0.0/24
#            --gateway 172.30.0.1 vs1: the vswitch-docker plugin, with vswitchd as the
#            switch (the containers' veths are afpacket ports of vswitchd's bridge)
#   bridge   docker network create -d bridge --subnet 172.31.0.0/24 br1: Docker's own
#            bridge driver (a Linux bridge br-<id> made by dockerd)
#
#   sudo bash benches/docker.sh                     # full run: iperf3 5 s, 3 runs, 200 pings
#   sudo bash benches/docker.sh --time 3 --runs 3   # iperf3 3 s, 3 runs
#   sudo bash benches/docker.sh --quick             # smoke run (1 s, 1 run, 20 pings), saves nothing
#   sudo bash benches/docker.sh --quick --only vsw
#   bash benches/docker.sh --table benches/results/docker-<date>-<time>.json   # markdown again
#
# One network namespace dk<pid>-sw holds vswitchd, the plugin and one private dockerd (the
# plugin's veths must be where both daemons are). dockerd starts through
# `unshare --mount --propagation private nsenter --net=/var/run/netns/dk<pid>-sw` (not
# `ip netns exec`, whose fresh /sys hides the cgroups dockerd needs; the private mount
# namespace keeps its overlay and netns mounts away from the host's), with its data root,
# exec root, API socket and pidfile in a temporary directory, WITHOUT --bridge=none (so its
# bridge driver works) but with --iptables=false --ip-forward=false: two containers on one
# Linux bridge need neither. The plugin answers on /run/docker/plugins/vswitch-dk<pid>.sock
# (driver vswitch-dk<pid>). If dockerd cannot run its bridge driver here, the script says so,
# starts dockerd with --bridge=none, measures the vswitch network alone and records why in the
# JSON (bridge_available false, bridge_unavailable_reason).
#
# The containers run a busybox image imported from Debian's busybox-static (/bin/busybox, no
# registry): A and B on vs1 (vsw), A and B on br1 (bridge). busybox has no iperf3, so the
# host's iperf3 and ping run in the containers' network namespaces with
# `nsenter --net=/proc/<pid>/ns/net` (pid from docker inspect): the same packets on the same
# path as from inside the container. Default offloads (no ethtool). Each run measures, for
# each setup in turn (the setups alternate run by run): ping RTT p50/p99 of PINGS pings at
# 5 ms A -> B, iperf3 TCP 1 stream A -> B (A sends) and B -> A (iperf3 -R: B sends), TIME
# seconds each. The table shows medians of RUNS runs and vswitch / bridge; the JSON has
# every sample, vswitchd's `vsctl --json stats` and peak RSS after the runs.
#
# Everything it creates (containers, networks, dockerd and its containerd and shims, vswitchd,
# the plugin and its socket, the namespace, the temporary directory) is removed on exit, also
# on Ctrl-C or SIGTERM. Uses the option parser and the helpers of benches/lib (common.sh); the
# report is benches/lib/docker.py.
#
# --help prints the lines that start with "#:":
#: usage: sudo bash benches/docker.sh [--time S] [--runs N] [--pings N] [--quick] [--only LIST]
#:                                    [--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
#:        bash benches/docker.sh --table FILE    print a saved result as a markdown table
#:
#:   --time S             iperf3 seconds per measurement (default 5; --quick: 1)
#:   --runs N             repeat every measurement N times, report medians (default 3; --quick: 1)
#:   --pings N            pings per run (default 200; --quick: 20)
#:   --quick              smoke run: iperf3 1 s, 1 run, 20 pings; saves nothing
#:   --only LIST          comma-separated subset of vsw,bridge (also vswitch; default: both)
#:   --no-build           never build; without it, cargo build --release runs only when
#:                        target/release lacks vswitchd, vsctl or vswitch-docker
#:   --save / --no-save   write benches/results/docker-<date>-<time>.json (default: save unless
#:                        --quick or --only)
#:   --vswitchd-args ARGS extra arguments for vswitchd, e.g. "--workers 1"
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# ---- options ---------------------------------------------------------------------------------
OPTS=(time runs pings quick only no-build save vswitchd-args table)
ONLY="vsw,bridge"
BUILD=auto # without --no-build: cargo build --release only when a binary is missing
parse_opts "$@"
pick_setups setup "vsw bridge" vswitch=vsw
time_runs_pings
PING_INTERVAL=0.005
save_default 2
need_root "network namespaces, dockerd"

# ---- state, cleanup --------------------------------------------------------------------------
P="dk$$"
NS="$P-sw"
DRIVER="vswitch-$P"
PLUGIN_DIR=/run/docker/plugins
PLUGIN_SOCK="$PLUGIN_DIR/$DRIVER.sock"
IMAGE="vswitch-bb:bench"
VS_NET=vs1 BR_NET=br1
IPERF_PORT=5201
DOCKERD_PID="" PLUGIN_PID="" VSW_PID=""
CPIDS=()           # the containers' init processes (killed if dockerd could not stop them)
PLUGIN_SOCK_OURS=0 # set once the plugin created its socket
bench_state vswitch-docker-bench
export DOCKER_HOST="unix://$TMP/docker.sock"
export DOCKER_API_VERSION=1.41 # dockerd 20.10's API; a newer client talks down to it
export DOCKER_CONFIG="$TMP/docker-config"

# Docker's part of the teardown, before the rest of the cleanup (which stops what is left in
# PIDS, deletes the namespace with everything still in it, and removes TMP): containers and
# networks through Docker (so the plugin removes its ports and veths), then dockerd (it stops
# containerd and the shims), the plugin (it removes its socket), and whatever survived.
pre_cleanup() {
    local pid m pids c n
    if [ -n "$DOCKERD_PID" ] && pid_alive "$DOCKERD_PID"; then
        for c in $(timeout 30 docker ps -aq 2>/dev/null); do timeout 60 docker rm -f "$c" >/dev/null 2>&1; done
        for n in "$VS_NET" "$BR_NET"; do timeout 30 docker network rm "$n" >/dev/null 2>&1; done
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 200); do
            pid_alive "$DOCKERD_PID" || break
            sleep 0.1
        done
    fi
    if [ -n "$DOCKERD_PID" ]; then
        stop_pid "$DOCKERD_PID" KILL
        forget_pid "$DOCKERD_PID"
    fi
    if [ -n "$PLUGIN_PID" ]; then
        stop_pid "$PLUGIN_PID" TERM
        forget_pid "$PLUGIN_PID"
    fi
    if [ -n "$VSW_PID" ]; then
        stop_pid "$VSW_PID" TERM
        forget_pid "$VSW_PID"
    fi
    for pid in "${CPIDS[@]}"; do
        # Only a process still in a network namespace of its own (not a reused PID of ours).
        if pid_alive "$pid" && [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ]; then
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    [ "$PLUGIN_SOCK_OURS" = 0 ] || rm -f "$PLUGIN_SOCK"
    # containerd and the shims are in NS: del_ns (in cleanup) kills them; wait for them here so
    # their private mount namespace is gone before TMP is removed.
    pids="$(ip netns pids "$NS" 2>/dev/null)"
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null
        for _ in $(seq 50); do
            [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    # Mounts under TMP in the host's mount namespace (none expected: dockerd's are private).
    while read -r m; do umount -l "$m" 2>/dev/null; done < <(awk -v d="$TMP" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

# ---- dependencies ----------------------------------------------------------------------------
install_deps nsenter=util-linux unshare=util-linux tar=tar
command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed (apt-get install docker.io)"
command -v docker >/dev/null 2>&1 || die "the docker client is not installed"
[ -x /bin/busybox ] || die "missing /bin/busybox: apt-get install busybox-static"
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || [ ! -x "$(command -v file)" ] ||
    die "/bin/busybox is not statically linked (apt-get install busybox-static)"
info "$(dockerd --version), client $(docker --version 2>/dev/null | sed 's/^Docker version //')"

# ---- build -----------------------------------------------------------------------------------
PLUGIN="$BIN/vswitch-docker"
BINS+=(vswitch-docker)
! has_setup vsw || build_release --release
binaries_json() {
    local b sep="" out="{"
    for b in "$VSWITCHD" "$VSCTL" "$PLUGIN"; do
        [ -x "$b" ] || continue
        out+="$sep\"$(basename "$b")\":{\"mtime\":\"$(date -u -r "$b" +%Y-%m-%dT%H:%M:%SZ)\",\"sha256_prefix\":\"$(sha256sum "$b" | cut -c1-16)\"}"
        sep=","
    done
    printf '%s}' "$out"
}

# ---- helpers ---------------------------------------------------------------------------------
dk() { timeout 120 docker "$@"; }
dk_ok() { # ARGS... (output shown on failure)
    local out
    out="$(dk "$@" 2>&1)" || die "docker $* failed: $out"
    printf '%s' "$out"
}

# ---- the namespace, vswitchd and the plugin --------------------------------------------------
start_switch() {
    vsw_launch "$NS" "$TMP/vsw" vswitchd
    mkdir -p "$PLUGIN_DIR"
    [ ! -e "$PLUGIN_SOCK" ] || die "$PLUGIN_SOCK exists already (another run with the same pid?)"
    LOGS+=("$TMP/plugin.log")
    spawn "$TMP/plugin.log" ip netns exec "$NS" env VSWITCH_SOCK="$VSW_SOCK" "$PLUGIN" --plugin-sock "$PLUGIN_SOCK"
    PLUGIN_PID="$SPAWNED"
    wait_for 100 test -S "$PLUGIN_SOCK" || die "the plugin did not create $PLUGIN_SOCK"
    PLUGIN_SOCK_OURS=1
    info "vswitchd (pid $VSW_PID) and vswitch-docker (pid $PLUGIN_PID, driver $DRIVER) in $NS"
}

# ---- dockerd ---------------------------------------------------------------------------------
# start_dockerd ARGS...: a private dockerd in NS; returns 1 (log in $TMP/dockerd.log) when it
# exits or does not answer within 60 s.
DOCKERD_ARGS=()
start_dockerd() {
    local log="$TMP/dockerd.log"
    DOCKERD_ARGS=(--iptables=false --ip-forward=false "$@"
        --data-root "$TMP/data" --exec-root "$TMP/exec" -H "$DOCKER_HOST" --pidfile "$TMP/docker.pid")
    # unshare and nsenter exec (no fork): the PID is dockerd's.
    spawn "$log" unshare --mount --propagation private nsenter --net="/var/run/netns/$NS" \
        dockerd "${DOCKERD_ARGS[@]}"
    DOCKERD_PID="$SPAWNED"
    for _ in $(seq 300); do
        pid_alive "$DOCKERD_PID" || break
        if timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    stop_pid "$DOCKERD_PID"
    forget_pid "$DOCKERD_PID"
    DOCKERD_PID=""
    # A dockerd that died leaves its pidfile; containerd stays in NS: kill it.
    rm -f "$TMP/docker.pid"
    local pids
    pids="$(ip netns pids "$NS" 2>/dev/null | grep -vx -e "$VSW_PID" -e "$PLUGIN_PID" || true)"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    return 1
}
log_tail() { grep -v '^$' "$TMP/dockerd.log" | tail -n 3 | tr '\n' ' ' | cut -c1-600; }

import_image() {
    local r="$TMP/rootfs" a
    mkdir -p "$r/bin" "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do
        [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
    done
    tar -C "$r" -cf "$TMP/rootfs.tar" .
    dk_ok import "$TMP/rootfs.tar" "$IMAGE" >/dev/null
}

# ---- containers ------------------------------------------------------------------------------
declare -A CPID=() CIP=()
run_container() { # NAME NETWORK
    local name="$1" net="$2" f
    dk_ok run -d --name "$name" --network "$net" "$IMAGE" sleep 1000000 >/dev/null
    CPID[$name]="$(dk_ok inspect -f '{{.State.Pid}}' "$name")"
    CPIDS+=("${CPID[$name]}")
    f="{{(index .NetworkSettings.Networks \"$net\").IPAddress}}"
    CIP[$name]="$(dk_ok inspect -f "$f" "$name")"
}
netns_of() { echo "/proc/${CPID[$1]}/ns/net"; } # NAME: where to run a command in that container's network
connected() { # SETUP A B: A and B ping each other
    reach "$(netns_of "$2")" "${CIP[$3]}" && reach "$(netns_of "$3")" "${CIP[$2]}"
}

# ---- run -------------------------------------------------------------------------------------
bench_begin "plan: ${SETUPS[*]}; $RUNS run(s) of ping x$PINGS at ${PING_INTERVAL}s and TCP ${TCP_SECS}s A->B and B->A; namespace $NS"

mkns "$NS"
if has_setup vsw; then
    say "vswitchd and the plugin"
    start_switch
fi

BRIDGE_OK=0 BRIDGE_REASON="not requested (--only)" BR_NF="n/a"
say "dockerd (private, in $NS)"
if has_setup bridge; then
    # The bridge driver on: no --bridge=none. dockerd makes docker0 at start; if it cannot,
    # it does not start at all, and then it runs with --bridge=none for the vswitch network.
    if start_dockerd; then
        BRIDGE_OK=1 BRIDGE_REASON=""
        info "dockerd (pid $DOCKERD_PID) with its bridge driver: $(ip -n "$NS" -br link show type bridge | awk '{ print $1 }' | tr '\n' ' ')"
    else
        BRIDGE_REASON="dockerd without --bridge=none did not start: $(log_tail)"
        info "Docker's bridge driver cannot be enabled here: $BRIDGE_REASON"
        drop_setup bridge
        has_setup vsw || die "nothing left to measure"
        start_dockerd --bridge=none || die "dockerd did not start with --bridge=none either: $(log_tail)"
        info "dockerd (pid $DOCKERD_PID) with --bridge=none: measuring the vswitch network only"
    fi
else
    start_dockerd --bridge=none || die "dockerd did not start: $(log_tail)"
    info "dockerd (pid $DOCKERD_PID) with --bridge=none (--only vsw)"
fi
LOGS+=("$TMP/dockerd.log")
import_image
info "image $IMAGE: /bin/busybox ($(dpkg-query -W -f '${Package} ${Version}' busybox-static 2>/dev/null || echo busybox))"

if has_setup vsw; then
    say "vsw: network $VS_NET (-d $DRIVER), containers va and vb"
    dk_ok network create -d "$DRIVER" --subnet 172.30.0.0/24 --gateway 172.30.0.1 "$VS_NET" >/dev/null
    run_container va "$VS_NET"
    run_container vb "$VS_NET"
    connected vsw va vb || die "vsw: va (${CIP[va]}) and vb (${CIP[vb]}) cannot ping each other: $(vsctl_at "$VSW_SOCK" show)"
    info "A = va ${CIP[va]} (pid ${CPID[va]}), B = vb ${CIP[vb]} (pid ${CPID[vb]}); they ping each other"
    info "vswitchd: $(vsctl_at "$VSW_SOCK" show | tr -s ' ' | tr '\n' ';' | cut -c1-400)"
fi
if has_setup bridge; then
    say "bridge: network $BR_NET (-d bridge), containers ba and bb"
    if ! out="$(dk network create -d bridge --subnet 172.31.0.0/24 "$BR_NET" 2>&1)"; then
        BRIDGE_OK=0 BRIDGE_REASON="docker network create -d bridge failed: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"
        info "Docker's bridge network cannot be made here: $BRIDGE_REASON"
        drop_setup bridge
    else
        run_container ba "$BR_NET"
        run_container bb "$BR_NET"
        if ! connected bridge ba bb; then
            BRIDGE_OK=0 BRIDGE_REASON="containers on Docker's bridge network cannot ping each other"
            info "$BRIDGE_REASON"
            drop_setup bridge
        else
            BR_DEV="br-${out:0:12}"
            BR_NF="$(ip netns exec "$NS" sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null || echo 'not present')"
            info "A = ba ${CIP[ba]} (pid ${CPID[ba]}), B = bb ${CIP[bb]} (pid ${CPID[bb]}); they ping each other"
            info "Linux bridge $BR_DEV: $(ip -n "$NS" -br link show master "$BR_DEV" 2>/dev/null | awk '{ print $1 }' | tr '\n' ' ')(bridge-nf-call-iptables $BR_NF)"
        fi
    fi
fi
[ "${#SETUPS[@]}" -gt 0 ] || die "nothing left to measure"

for r in $(seq "$RUNS"); do
    for s in "${SETUPS[@]}"; do
        case "$s" in
            vsw) a=va b=vb title="vswitch network" ;;
            bridge) a=ba b=bb title="Docker bridge network" ;;
        esac
        say "run $r/$RUNS: $s ($title)"
        warm_up "$(netns_of "$a")" "${CIP[$b]}" || true
        ping_run "$s" "A -> B" "$(netns_of "$a")" "${CIP[$b]}" "$TMP/$s-ping-$r.txt"
        info "run $r: ping A -> B x$PINGS at ${PING_INTERVAL}s: $PING_TEXT"
        for key in tcp_ab_gbps tcp_ba_gbps; do
            what="A -> B" rev=()
            [ "$key" = tcp_ab_gbps ] || what="B -> A (-R)" rev=(-R)
            iperf_run "$s" "$key" "$what" "$(netns_of "$b")" "$(netns_of "$a")" "${CIP[$b]}" "$IPERF_PORT" "$TMP/$s-$key-$r.json" -P 1 "${rev[@]}"
            info "run $r: TCP $what ${TCP_SECS}s, 1 stream: $TCP_TEXT"
        done
    done
done

if has_setup vsw; then
    vsw_record vsw "$VSW_SOCK" "$VSW_PID"
    info "vswitchd: $(report_py stats-summary "$VSW_STATS" | cut -c1-600); peak RSS ${VSW_HWM:-?} KiB"
fi

# ---- report ----------------------------------------------------------------------------------
export BENCH_BINARIES BENCH_PING BENCH_BRIDGE_OK BENCH_BRIDGE_REASON BENCH_DOCKERD BENCH_DOCKERD_ARGS \
    BENCH_BUSYBOX BENCH_DRIVER BENCH_BR_NF
BENCH_BINARIES="$(binaries_json)"
BENCH_PING="$( (ping -V 2>/dev/null || true) | head -n 1)"
BENCH_BRIDGE_OK="$BRIDGE_OK"
BENCH_BRIDGE_REASON="$BRIDGE_REASON"
BENCH_DOCKERD="$(dockerd --version)"
BENCH_DOCKERD_ARGS="${DOCKERD_ARGS[*]//$TMP/<tmp>}"
BENCH_BUSYBOX="$(dpkg-query -W -f '${Package} ${Version}' busybox-static 2>/dev/null || echo /bin/busybox)"
BENCH_DRIVER="$DRIVER"
BENCH_BR_NF="$BR_NF"
bench_report "results (medians of $RUNS run(s); vswitch / bridge: above 1 is better for TCP, below 1 for ping RTT)" \
    --untracked-files=no -- vswitch ctl nat docker Cargo.toml Cargo.lock
