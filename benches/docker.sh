#!/usr/bin/env bash
# Two containers on one Docker network, side by side in one run: a vswitch network
# (vswitch-docker plugin + vswitchd) and Docker's own bridge network (the kernel's Linux
# bridge, set up by dockerd). Measures ping p50/p99 and iperf3 TCP both ways between
# the two containers, with the interfaces' default offloads, and prints the ratios.
#
#   sudo bash benches/docker.sh [--time SECONDS] [--runs N] [--pings N]
#
# Everything runs in a namespace of its own (dockerd, vswitchd and the plugin together,
# as the plugin's veths must be where both daemons are), with a private dockerd
# (--data-root/--exec-root/-H under a temporary directory) and its own plugin socket;
# all of it is torn down on exit. busybox has no iperf3: the host's iperf3 runs in each
# container's network namespace (nsenter --net), which measures the same path.
set -euo pipefail

TIME=5
RUNS=3
PINGS=200
while [ $# -gt 0 ]; do
    case "$1" in
        --time) TIME="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --pings) PINGS="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "docker.sh: unknown option $1" >&2; exit 1 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release"
[ "$(id -u)" -eq 0 ] || { echo "docker.sh: run as root" >&2; exit 1; }
for t in dockerd docker iperf3 nsenter ip python3 busybox; do
    command -v "$t" >/dev/null || { echo "docker.sh: $t is missing (bash scripts/deps.sh)" >&2; exit 1; }
done
if [ ! -x "$BIN/vswitchd" ] || [ ! -x "$BIN/vswitch-docker" ]; then
    (cd "$ROOT" && cargo build --release -q)
fi

TAG="dkb$$"
NS="$TAG"
D="$(mktemp -d /tmp/vswitch-dockerbench.XXXXXX)"
PLUGIN_SOCK="/run/docker/plugins/vswitch-$TAG.sock"
DRIVER="vswitch-$TAG"
export DOCKER_HOST="unix://$D/docker.sock"
export VSWITCH_SOCK="$D/vswitchd.sock"
IMAGE="vswitch-bench-bb:$TAG"
PIDS=()

cleanup() {
    set +e
    if [ -S "$D/docker.sock" ]; then
        docker rm -f "$TAG-va" "$TAG-vb" "$TAG-ba" "$TAG-bb" >/dev/null 2>&1
        docker network rm "$TAG-vs" "$TAG-br" >/dev/null 2>&1
    fi
    [ -f "$D/docker.pid" ] && kill "$(cat "$D/docker.pid")" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    # dockerd stops its containers' shims before it exits: give it the time.
    for _ in $(seq 50); do
        kill -0 "${PIDS[2]:-0}" 2>/dev/null || break
        sleep 0.2
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    # containerd and its shims run with the daemon's exec root in their command line.
    pkill -f "$D/exec" 2>/dev/null
    rm -f "$PLUGIN_SOCK"
    ip netns del "$NS" 2>/dev/null
    umount -R "$D/data" 2>/dev/null
    rm -rf "$D"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" "$BIN/vswitchd" --sock "$VSWITCH_SOCK" --db "$D/conf.json" >"$D/vswitchd.log" 2>&1 &
PIDS+=($!)
mkdir -p /run/docker/plugins
ip netns exec "$NS" "$BIN/vswitch-docker" --plugin-sock "$PLUGIN_SOCK" >"$D/plugin.log" 2>&1 &
PIDS+=($!)
# Docker's bridge network needs the bridge driver on: --bridge is left alone, docker0
# gets a private range, and nothing touches iptables or forwarding.
nsenter --net="/var/run/netns/$NS" dockerd --iptables=false --ip-forward=false \
    --bip 172.18.250.1/24 --data-root "$D/data" --exec-root "$D/exec" \
    -H "$DOCKER_HOST" --pidfile "$D/docker.pid" >"$D/dockerd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
    sleep 0.2
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
    echo "docker.sh: dockerd did not start:" >&2; tail -5 "$D/dockerd.log" >&2; exit 1; }
[ -S "$PLUGIN_SOCK" ] || { echo "docker.sh: the plugin did not start" >&2; cat "$D/plugin.log" >&2; exit 1; }

# A busybox image without a registry.
mkdir -p "$D/rootfs/bin" "$D/rootfs/tmp"
cp /bin/busybox "$D/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$D/rootfs/bin/$a"; done
tar -C "$D/rootfs" -cf "$D/rootfs.tar" .
docker import "$D/rootfs.tar" "$IMAGE" >/dev/null

docker network create -d "$DRIVER" --subnet 172.18.10.0/24 --gateway 172.18.10.1 "$TAG-vs" >/dev/null
docker network create -d bridge --subnet 172.18.20.0/24 --gateway 172.18.20.1 "$TAG-br" >/dev/null
for c in va:vs vb:vs ba:br bb:br; do
    docker run -d --name "$TAG-${c%%:*}" --network "$TAG-${c##*:}" "$IMAGE" sleep 100000 >/dev/null
done
pid() { docker inspect -f '{{.State.Pid}}' "$TAG-$1"; }
addr() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$TAG-$1"; }
in_ns() { local p; p="$(pid "$1")"; shift; nsenter --net="/proc/$p/ns/net" "$@"; }

# One setup: ping, then iperf3 both ways, RUNS times; medians.
measure() { # name client server
    local name="$1" a="$2" b="$3" ip
    ip="$(addr "$b")"
    in_ns "$a" ping -c 3 -W 2 "$ip" >/dev/null
    in_ns "$b" iperf3 -s -D -p 5201 --pidfile "$D/iperf-$name.pid" >/dev/null
    sleep 0.3
    for r in $(seq "$RUNS"); do
        in_ns "$a" ping -n -c "$PINGS" -i 0.005 "$ip" >"$D/$name-ping-$r.txt"
        in_ns "$a" iperf3 -c "$ip" -p 5201 -t "$TIME" -J >"$D/$name-fwd-$r.json"
        in_ns "$a" iperf3 -c "$ip" -p 5201 -t "$TIME" -R -J >"$D/$name-rev-$r.json"
        echo "  $name run $r done" >&2
    done
    kill "$(cat "$D/iperf-$name.pid")" 2>/dev/null || true
}
echo "docker.sh: vswitch network (driver $DRIVER) and Docker's bridge network, $RUNS runs, TCP ${TIME}s, $PINGS pings" >&2
measure vswitch va vb
measure bridge ba bb

python3 - "$D" "$RUNS" "$ROOT" "$TIME" "$PINGS" <<'PY'
import json, os, re, statistics, subprocess, sys, time
d, runs, root, secs, pings = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def pct(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
res = {}
for name in ("vswitch", "bridge"):
    p50, p99, fwd, rev = [], [], [], []
    for r in range(1, runs + 1):
        rtts = [float(m) for m in re.findall(r"time=([\d.]+) ms", open(f"{d}/{name}-ping-{r}.txt").read())]
        p50.append(pct(rtts, 0.5)); p99.append(pct(rtts, 0.99))
        for kind, acc in (("fwd", fwd), ("rev", rev)):
            j = json.load(open(f"{d}/{name}-{kind}-{r}.json"))
            acc.append(j["end"]["sum_received"]["bits_per_second"] / 1e9)
    res[name] = {"ping_p50_ms": statistics.median(p50), "ping_p99_ms": statistics.median(p99),
                 "tcp_a_to_b_gbps": statistics.median(fwd), "tcp_b_to_a_gbps": statistics.median(rev),
                 "samples": {"ping_p50_ms": p50, "ping_p99_ms": p99, "tcp_a_to_b_gbps": fwd, "tcp_b_to_a_gbps": rev}}
rows = [("TCP A->B (Gbit/s)", "tcp_a_to_b_gbps"), ("TCP B->A (Gbit/s)", "tcp_b_to_a_gbps"),
        ("ping p50 (ms)", "ping_p50_ms"), ("ping p99 (ms)", "ping_p99_ms")]
print(f"{'metric':<20} {'vswitch net':>12} {'docker bridge':>14} {'ratio':>7}")
for label, k in rows:
    a, b = res["vswitch"][k], res["bridge"][k]
    print(f"{label:<20} {a:>12.3f} {b:>14.3f} {a / b if b else float('nan'):>7.2f}")
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = bool(subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip())
stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
out = {"benchmark": "docker", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "vswitch_commit": commit, "vswitch_dirty": dirty, "loadavg_end": open("/proc/loadavg").read().split()[:3],
       "options": {"tcp_seconds": int(secs), "runs": runs, "pings": int(pings), "ping_interval_s": 0.005,
                   "statistic": "median of runs", "offloads": "interface defaults (no ethtool)"},
       "setups": {"vswitch": "docker network create -d vswitch (vswitch-docker + vswitchd), 172.18.10.0/24",
                  "bridge": "docker network create -d bridge (dockerd 20.10, Linux bridge, --iptables=false), 172.18.20.0/24"},
       "results": res}
path = f"{root}/benches/results/docker-{stamp}.json"
json.dump(out, open(path, "w"), indent=2)
print(f"raw results: {os.path.relpath(path, root)}")
PY
