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
# on Ctrl-C or SIGTERM. Uses the shell helpers of benches/lib/common.sh and the parsers of
# benches/lib/bench.py.
set -euo pipefail
START_SECS="$(date +%s)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LIB="$ROOT/benches/lib/bench.py"
RESULTS="$ROOT/benches/results"
SCRIPT_NAME=docker.sh
# shellcheck source=benches/lib/common.sh
. "$ROOT/benches/lib/common.sh"

usage() {
    cat <<'EOF'
usage: sudo bash benches/docker.sh [--time S] [--runs N] [--pings N] [--quick] [--only LIST]
                                   [--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
       bash benches/docker.sh --table FILE    print a saved result as a markdown table

  --time S             iperf3 seconds per measurement (default 5; --quick: 1)
  --runs N             repeat every measurement N times, report medians (default 3; --quick: 1)
  --pings N            pings per run (default 200; --quick: 20)
  --quick              smoke run: iperf3 1 s, 1 run, 20 pings; saves nothing
  --only LIST          comma-separated subset of vsw,bridge (also vswitch; default: both)
  --no-build           never build; without it, cargo build --release runs only when
                       target/release lacks vswitchd, vsctl or vswitch-docker
  --save / --no-save   write benches/results/docker-<date>-<time>.json (default: save unless
                       --quick or --only)
  --vswitchd-args ARGS extra arguments for vswitchd, e.g. "--workers 1"
EOF
}

# ---- the report (python, also used by --table) -----------------------------------------------
report_py() {
    python3 - "$@" <<'PY'
import json, os, statistics, sys

SETUPS = [("vsw", "vswitch network"), ("bridge", "Docker bridge network")]
METRICS = [("tcp_ab_gbps", "TCP A->B, 1 stream (Gbit/s)", "{:.2f}"),
           ("tcp_ba_gbps", "TCP B->A (-R), 1 stream (Gbit/s)", "{:.2f}"),
           ("ping_p50_ms", "ping A->B RTT p50 (ms)", "{:.3f}"),
           ("ping_p99_ms", "ping A->B RTT p99 (ms)", "{:.3f}")]


def render(res, markdown):
    r = res["results"]
    header = ["metric"] + [t for _, t in SETUPS] + ["vswitch / bridge"]
    rows = []
    for key, label, f in METRICS:
        cells = [label]
        for s, _ in SETUPS:
            v = r.get(s, {}).get(key)
            cells.append(f.format(v) if v is not None else "-")
        x = r.get("vsw", {}).get("ratio_over_bridge", {}).get(key)
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
    if not res.get("bridge_available", True):
        out.append("")
        out.append("Docker's bridge network was not measured: dockerd's bridge driver cannot be "
                   "enabled here (" + (res.get("bridge_unavailable_reason") or "unknown") + ").")
    return "\n".join(out)


def report(raw, out_path):
    e = os.environ
    samples, details = {}, {}
    with open(raw, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            x = json.loads(line)
            if "metric" in x:
                samples.setdefault(x["setup"], {}).setdefault(x["metric"], []).append(x["value"])
            else:
                details.setdefault(x["setup"], []).append(x["detail"])
    results = {}
    for s, metrics in samples.items():
        entry = {m: statistics.median(v) for m, v in metrics.items()}
        entry["samples"] = metrics
        entry["details"] = details.get(s, [])
        results[s] = entry
    b = results.get("bridge", {})
    if "vsw" in results and b:
        v = results["vsw"]
        v["ratio_over_bridge"] = {m: v[m] / b[m] for m, _, _ in METRICS
                                  if v.get(m) is not None and b.get(m)}
    bridge_ok = e["BENCH_BRIDGE_OK"] == "1"
    res = {
        "benchmark": "docker",
        "date": e["BENCH_DATE"],
        "machine": {"cpus": int(e["BENCH_CPUS"]), "cpu_model": e["BENCH_CPU_MODEL"],
                    "kernel": e["BENCH_KERNEL"],
                    "uptime_start": e["BENCH_UPTIME_START"],
                    "uptime_end": e["BENCH_UPTIME_END"],
                    "loadavg_start": e["BENCH_LOADAVG_START"],
                    "loadavg_end": e["BENCH_LOADAVG_END"]},
        "vswitch_commit": e["BENCH_COMMIT"],
        "vswitch_dirty": e["BENCH_DIRTY"] == "true",
        "binaries": json.loads(e["BENCH_BINARIES"]),
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "options": {"quick": e["BENCH_QUICK"] == "1", "setups": e["BENCH_SETUPS"].split(),
                    "tcp_seconds": int(e["BENCH_TCP_SECS"]), "tcp_streams": 1,
                    "runs": int(e["BENCH_RUNS"]), "statistic": "median of runs",
                    "order": "setups alternate within each run (run 1: vsw then bridge, ...)",
                    "pings": int(e["BENCH_PINGS"]),
                    "ping_interval_s": float(e["BENCH_PING_INTERVAL"]),
                    "offloads": "interface defaults (no ethtool)",
                    "tools_in_containers": "host ping and iperf3 run in each container's "
                                           "network namespace (nsenter --net=/proc/PID/ns/net)"},
        "bridge_available": bridge_ok,
        "bridge_unavailable_reason": None if bridge_ok else e["BENCH_BRIDGE_REASON"],
        "docker": {"dockerd": e["BENCH_DOCKERD"],
                   "dockerd_args": e["BENCH_DOCKERD_ARGS"],
                   "started_with": "unshare --mount --propagation private nsenter "
                                   "--net=/var/run/netns/NS dockerd ...",
                   "image": "busybox imported from Debian's busybox-static (" + e["BENCH_BUSYBOX"] + ")"},
        "network": {"namespace": "one namespace for vswitchd, vswitch-docker and dockerd",
                    "vsw": "docker network create -d " + e["BENCH_DRIVER"] +
                           " --subnet 172.30.0.0/24 --gateway 172.30.0.1 vs1",
                    "bridge": "docker network create -d bridge --subnet 172.31.0.0/24 br1"},
        "setups": {
            "vsw": "containers A and B on vs1: the vswitch-docker plugin's veths as afpacket "
                   "ports of vswitchd's bridge for the network",
            "bridge": "containers A and B on br1: Docker's bridge driver, a Linux bridge "
                      "(dockerd --iptables=false --ip-forward=false; "
                      "bridge-nf-call-iptables in the namespace: " + e["BENCH_BR_NF"] + ")"},
        "tools": {"iperf3": e["BENCH_IPERF3"], "ping": e["BENCH_PING"]},
        "elapsed_s": int(e["BENCH_ELAPSED"]),
        "build_s": int(e["BENCH_BUILD_S"]),
        "results": results,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    print(render(res, markdown=False))


def stats_summary(path):
    """One line from `vsctl --json stats`: per-port rx/tx and drops."""
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    parts = []
    for br in d.get("bridges", []):
        for p in br.get("ports", []):
            parts.append(f"{br.get('name')}/{p.get('name')} rx {p.get('rx_packets')} "
                         f"tx {p.get('tx_packets')} drops {p.get('drops') or 'none'}")
    print("; ".join(parts) or json.dumps(d)[:300])


def main(a):
    if a[0] == "report":
        report(a[1], a[2])
    elif a[0] == "table":
        with open(a[1], encoding="utf-8") as f:
            print(render(json.load(f), markdown=True))
    elif a[0] == "stats-summary":
        stats_summary(a[1])
    elif a[0] == "json-string":
        print(json.dumps(sys.stdin.read()))
    else:
        sys.exit("unknown subcommand " + a[0])


main(sys.argv[1:])
PY
}

# ---- options ---------------------------------------------------------------------------------
# --time, --runs and --pings are this script's; the rest are the options every setup benchmark
# shares (parse_setup_opts in lib/common.sh).
TCP_SECS="" RUNS="" PINGS=""
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --time | --runs | --pings)
            [ $# -ge 2 ] || die "$1 needs a number"
            case "$1" in
                --time) TCP_SECS="$2" ;;
                --runs) RUNS="$2" ;;
                --pings) PINGS="$2" ;;
            esac
            shift
            ;;
        --time=*) TCP_SECS="${1#*=}" ;;
        --runs=*) RUNS="${1#*=}" ;;
        --pings=*) PINGS="${1#*=}" ;;
        *) rest+=("$1") ;;
    esac
    shift
done
parse_setup_opts "vsw,bridge" "${rest[@]+"${rest[@]}"}"

SETUPS=()
IFS=',' read -r -a only_list <<<"$ONLY"
for t in "${only_list[@]}"; do
    case "$t" in
        vsw | vswitch | bridge) ;;
        *) die "--only: unknown setup '$t' (vsw, bridge)" ;;
    esac
done
for s in vsw bridge; do
    for t in "${only_list[@]}"; do
        [ "$t" != vswitch ] || t=vsw
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
drop_setup() {
    local keep=() s
    for s in "${SETUPS[@]}"; do [ "$s" = "$1" ] || keep+=("$s"); done
    SETUPS=("${keep[@]}")
}
ONLY_GIVEN=0
[ "${#SETUPS[@]}" -eq 2 ] || ONLY_GIVEN=1

if [ "$QUICK" = 1 ]; then
    : "${TCP_SECS:=1}" "${RUNS:=1}" "${PINGS:=20}"
else
    : "${TCP_SECS:=5}" "${RUNS:=3}" "${PINGS:=200}"
fi
for v in time:TCP_SECS runs:RUNS pings:PINGS; do
    n="${v#*:}"
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "--${v%%:*} must be a whole number >= 1, not '${!n}'"
done
[ "$TCP_SECS" -le 600 ] || die "--time $TCP_SECS: at most 600 s"
PING_INTERVAL=0.005
if [ -z "$SAVE" ]; then
    SAVE=0
    [ "$QUICK" = 1 ] || [ "$ONLY_GIVEN" = 1 ] || SAVE=1
fi

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, dockerd): sudo bash benches/docker.sh"

# ---- state, cleanup --------------------------------------------------------------------------
P="dk$$"
NS="$P-sw"
DRIVER="vswitch-$P"
PLUGIN_DIR=/run/docker/plugins
PLUGIN_SOCK="$PLUGIN_DIR/$DRIVER.sock"
IMAGE="vswitch-bb:bench"
VS_NET=vs1 BR_NET=br1
IPERF_PORT=5201
TMP="$(mktemp -d /tmp/vswitch-docker-bench.XXXXXX)"
RAW="$TMP/raw.jsonl"
: >"$RAW"
export DOCKER_HOST="unix://$TMP/docker.sock"
export DOCKER_API_VERSION=1.41 # dockerd 20.10's API; a newer client talks down to it
export DOCKER_CONFIG="$TMP/docker-config"
DOCKERD_PID="" PLUGIN_PID="" VSW_PID=""
CPIDS=()           # the containers' init processes (killed if dockerd could not stop them)
PLUGIN_SOCK_OURS=0 # set once the plugin created its socket
bench_state

# Docker's part of the teardown, before common.sh's cleanup (which stops what is left in PIDS,
# deletes the namespace with everything still in it, and removes TMP): containers and networks
# through Docker (so the plugin removes its ports and veths), then dockerd (it stops containerd
# and the shims), the plugin (it removes its socket), and whatever survived.
docker_cleanup() {
    local rc=$? pid m pids
    set +e
    trap - EXIT INT TERM
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
    (exit "$rc")
    cleanup
}
trap docker_cleanup EXIT

# ---- dependencies ----------------------------------------------------------------------------
say "dependencies"
# shellcheck disable=SC2034 # read by install_deps
declare -A PKG=(
    [ip]=iproute2 [ping]=iputils-ping [iperf3]=iperf3 [ss]=iproute2 [nsenter]=util-linux
    [unshare]=util-linux [python3]=python3 [timeout]=coreutils [awk]=gawk [tar]=tar
)
install_deps
command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed (apt-get install docker.io)"
command -v docker >/dev/null 2>&1 || die "the docker client is not installed"
[ -x /bin/busybox ] || die "missing /bin/busybox: apt-get install busybox-static"
file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || [ ! -x "$(command -v file)" ] ||
    die "/bin/busybox is not statically linked (apt-get install busybox-static)"
info "$(dockerd --version), client $(docker --version 2>/dev/null | sed 's/^Docker version //')"

# ---- build -----------------------------------------------------------------------------------
VSWITCHD="$ROOT/target/release/vswitchd"
VSCTL="$ROOT/target/release/vsctl"
PLUGIN="$ROOT/target/release/vswitch-docker"
BUILD_SECS=0
if has_setup vsw; then
    if [ "$BUILD" = 1 ] && ! { [ -x "$VSWITCHD" ] && [ -x "$VSCTL" ] && [ -x "$PLUGIN" ]; }; then
        say "cargo build --release (target/release lacks a binary)"
        cargo="$(command -v cargo || true)"
        [ -n "$cargo" ] || cargo="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
        [ -x "$cargo" ] || die "cargo not found (install Rust, or build the workspace first)"
        build_t0="$(date +%s)"
        "$cargo" build --release
        BUILD_SECS=$(($(date +%s) - build_t0))
    fi
    for b in "$VSWITCHD" "$VSCTL" "$PLUGIN"; do
        [ -x "$b" ] || die "missing $b (build: cargo build --release)"
    done
fi
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
record() { # SETUP METRIC VALUE
    printf '{"setup":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" >>"$RAW"
}
record_detail() { # SETUP JSON
    printf '{"setup":"%s","detail":%s}\n' "$1" "$2" >>"$RAW"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
json_string() { report_py json-string; }
dk() { timeout 120 docker "$@"; }
dk_ok() { # ARGS... (output shown on failure)
    local out
    out="$(dk "$@" 2>&1)" || die "docker $* failed: $out"
    printf '%s' "$out"
}
vsctl_at() { # ARGS... (output shown on failure)
    local out
    out="$(timeout 10 "$VSCTL" --sock "$VSW_SOCK" "$@" 2>&1)" || die "vsctl $* failed: $out"
    printf '%s' "$out"
}

# ---- the namespace, vswitchd and the plugin --------------------------------------------------
VSW_SOCK="$TMP/vswitchd.sock"
start_switch() {
    LOGS+=("$TMP/vswitchd.log" "$TMP/plugin.log")
    ip netns exec "$NS" "$VSWITCHD" --sock "$VSW_SOCK" --db "$TMP/conf.json" "${VSW_ARGS[@]}" \
        >"$TMP/vswitchd.log" 2>&1 &
    VSW_PID=$!
    PIDS+=("$VSW_PID")
    wait_for 150 "$VSCTL" --sock "$VSW_SOCK" show || die "vswitchd does not answer on $VSW_SOCK"
    mkdir -p "$PLUGIN_DIR"
    [ ! -e "$PLUGIN_SOCK" ] || die "$PLUGIN_SOCK exists already (another run with the same pid?)"
    ip netns exec "$NS" env VSWITCH_SOCK="$VSW_SOCK" "$PLUGIN" --plugin-sock "$PLUGIN_SOCK" \
        >"$TMP/plugin.log" 2>&1 &
    PLUGIN_PID=$!
    PIDS+=("$PLUGIN_PID")
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
    : >"$log"
    DOCKERD_ARGS=(--iptables=false --ip-forward=false "$@"
        --data-root "$TMP/data" --exec-root "$TMP/exec" -H "$DOCKER_HOST" --pidfile "$TMP/docker.pid")
    # unshare and nsenter exec (no fork): the PID is dockerd's.
    unshare --mount --propagation private nsenter --net="/var/run/netns/$NS" \
        dockerd "${DOCKERD_ARGS[@]}" >>"$log" 2>&1 &
    DOCKERD_PID=$!
    PIDS+=("$DOCKERD_PID")
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
in_c() { # NAME CMD...: CMD in container NAME's network namespace
    local p="${CPID[$1]}"
    shift
    nsenter --net="/proc/$p/ns/net" "$@"
}
pings_once() { # FROM TO_IP
    timeout 5 nsenter --net="/proc/${CPID[$1]}/ns/net" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1
}
connected() { # SETUP A B -> 0 when A and B ping each other within 10 s
    for _ in $(seq 40); do
        if pings_once "$2" "${CIP[$3]}" && pings_once "$3" "${CIP[$2]}"; then
            return 0
        fi
        sleep 0.25
    done
    return 1
}

# ---- measurements ----------------------------------------------------------------------------
measure_ping() { # SETUP RUN A B
    local s="$1" r="$2" a="$3" b="$4" out p50 p99 got sent
    out="$TMP/$s-ping-$r.txt"
    run_wait timeout 120 nsenter --net="/proc/${CPID[$a]}/ns/net" \
        ping -n -c "$PINGS" -i "$PING_INTERVAL" -W 1 "${CIP[$b]}" >"$out" 2>&1 ||
        die "$s: ping A -> B failed: $(tail -n 3 "$out")"
    read -r p50 p99 got sent < <(python3 "$LIB" ping "$out")
    [ "$got" -ge $((PINGS * 95 / 100)) ] || die "$s: only $got of $sent pings answered"
    record "$s" ping_p50_ms "$p50"
    record "$s" ping_p99_ms "$p99"
    info "run $r: ping A -> B x$PINGS at ${PING_INTERVAL}s: p50 $(dec 3 "$p50") ms, p99 $(dec 3 "$p99") ms ($got/$sent replies)"
}

measure_tcp() { # SETUP RUN KEY A B REVERSE(0|1) WHAT
    local s="$1" r="$2" key="$3" a="$4" b="$5" rev="$6" what="$7" json srv gbps retr extra=()
    json="$TMP/$s-$key-$r.json"
    [ "$rev" = 0 ] || extra=(-R)
    timeout $((TCP_SECS + 40)) nsenter --net="/proc/${CPID[$b]}/ns/net" \
        iperf3 -s -1 -p "$IPERF_PORT" >"$TMP/iperf3-server.log" 2>&1 &
    srv=$!
    PIDS+=("$srv")
    wait_for 100 sh -c "nsenter --net=/proc/${CPID[$b]}/ns/net ss -Hltn 'sport = :$IPERF_PORT' | grep -q ." ||
        die "$s: iperf3 server in B did not start: $(cat "$TMP/iperf3-server.log")"
    run_wait timeout $((TCP_SECS + 30)) nsenter --net="/proc/${CPID[$a]}/ns/net" \
        iperf3 -c "${CIP[$b]}" -p "$IPERF_PORT" -t "$TCP_SECS" -P 1 "${extra[@]}" -J >"$json" 2>&1 ||
        die "$s: iperf3 $what failed: $(head -c 600 "$json")"
    wait "$srv" 2>/dev/null || true
    forget_pid "$srv"
    read -r gbps retr < <(python3 "$LIB" iperf "$json") || die "$s: cannot read iperf3 result $json"
    awk -v g="$gbps" 'BEGIN { exit !(g > 0) }' || die "$s: iperf3 $what moved nothing"
    record "$s" "$key" "$gbps"
    record "$s" "${key%_gbps}_retransmits" "$retr"
    info "run $r: TCP $what ${TCP_SECS}s, 1 stream: $(dec 2 "$gbps") Gbit/s ($retr retransmits)"
}

# ---- run -------------------------------------------------------------------------------------
UPTIME_START="$(uptime)"
LOADAVG_START="$(loadavg)"
say "plan: ${SETUPS[*]}; $RUNS run(s) of ping x$PINGS at ${PING_INTERVAL}s and TCP ${TCP_SECS}s A->B and B->A; namespace $NS"
info "uptime at start: $UPTIME_START"

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
    connected vsw va vb || die "vsw: va (${CIP[va]}) and vb (${CIP[vb]}) cannot ping each other: $(vsctl_at show)"
    info "A = va ${CIP[va]} (pid ${CPID[va]}), B = vb ${CIP[vb]} (pid ${CPID[vb]}); they ping each other"
    info "vswitchd: $(vsctl_at show | tr -s ' ' | tr '\n' ';' | cut -c1-400)"
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
        timeout 10 nsenter --net="/proc/${CPID[$a]}/ns/net" ping -n -q -c 3 -i 0.05 "${CIP[$b]}" >/dev/null || true
        measure_ping "$s" "$r" "$a" "$b"
        measure_tcp "$s" "$r" tcp_ab_gbps "$a" "$b" 0 "A -> B"
        measure_tcp "$s" "$r" tcp_ba_gbps "$a" "$b" 1 "B -> A (-R)"
    done
done

if has_setup vsw; then
    stats="$TMP/vsw-stats.json"
    vsctl_at --json stats >"$stats"
    hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$VSW_PID/status" 2>/dev/null || true)"
    record_detail vsw "{\"kind\":\"vswitchd\",\"vmhwm_kib\":${hwm:-null},\"stats\":$(tr -d '\n' <"$stats")}"
    info "vswitchd: $(report_py stats-summary "$stats" | cut -c1-600); peak RSS ${hwm:-?} KiB"
fi

# ---- report ----------------------------------------------------------------------------------
export BENCH_DATE BENCH_CPUS BENCH_CPU_MODEL BENCH_KERNEL BENCH_UPTIME_START BENCH_UPTIME_END \
    BENCH_LOADAVG_START BENCH_LOADAVG_END BENCH_COMMIT BENCH_DIRTY BENCH_BINARIES \
    BENCH_VSWITCHD_ARGS BENCH_QUICK BENCH_SETUPS BENCH_TCP_SECS BENCH_RUNS BENCH_PINGS \
    BENCH_PING_INTERVAL BENCH_IPERF3 BENCH_PING BENCH_ELAPSED BENCH_BUILD_S BENCH_BRIDGE_OK \
    BENCH_BRIDGE_REASON BENCH_DOCKERD BENCH_DOCKERD_ARGS BENCH_BUSYBOX BENCH_DRIVER BENCH_BR_NF
BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BENCH_CPUS="$(nproc)"
BENCH_CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
BENCH_KERNEL="$(uname -r)"
BENCH_UPTIME_START="$UPTIME_START"
BENCH_UPTIME_END="$(uptime)"
BENCH_LOADAVG_START="$LOADAVG_START"
BENCH_LOADAVG_END="$(loadavg)"
BENCH_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
BENCH_DIRTY=false
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- vswitch ctl nat docker Cargo.toml Cargo.lock 2>/dev/null)" ] || BENCH_DIRTY=true
BENCH_BINARIES="$(binaries_json)"
BENCH_VSWITCHD_ARGS="$VSW_EXTRA"
BENCH_QUICK="$QUICK"
BENCH_SETUPS="${SETUPS[*]}"
BENCH_TCP_SECS="$TCP_SECS"
BENCH_RUNS="$RUNS"
BENCH_PINGS="$PINGS"
BENCH_PING_INTERVAL="$PING_INTERVAL"
BENCH_IPERF3="$( (iperf3 --version 2>/dev/null || true) | awk 'NR == 1 { print $2 }')"
BENCH_PING="$( (ping -V 2>/dev/null || true) | head -n 1)"
BENCH_ELAPSED=$(($(date +%s) - START_SECS))
BENCH_BUILD_S="$BUILD_SECS"
BENCH_BRIDGE_OK="$BRIDGE_OK"
BENCH_BRIDGE_REASON="$BRIDGE_REASON"
BENCH_DOCKERD="$(dockerd --version)"
BENCH_DOCKERD_ARGS="${DOCKERD_ARGS[*]//$TMP/<tmp>}"
BENCH_BUSYBOX="$(dpkg-query -W -f '${Package} ${Version}' busybox-static 2>/dev/null || echo /bin/busybox)"
BENCH_DRIVER="$DRIVER"
BENCH_BR_NF="$BR_NF"

say "results (medians of $RUNS run(s); vswitch / bridge: above 1 is better for TCP, below 1 for ping RTT)"
out="$TMP/results.json"
if [ "$SAVE" = 1 ]; then
    mkdir -p "$RESULTS"
    out="$RESULTS/docker-$(date +%Y%m%d-%H%M%S).json"
fi
report_py report "$RAW" "$out"
[ "$out" = "$TMP/results.json" ] || printf '\nraw results: %s (markdown: bash benches/docker.sh --table %s)\n' "${out#"$ROOT"/}" "${out#"$ROOT"/}"
echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL)"
echo "uptime at start: $UPTIME_START"
echo "uptime at end:   $BENCH_UPTIME_END"
