#!/usr/bin/env bash
# Services benchmark: names and a VIP over three backends, built two ways in one run on
# the same namespaces, measured the same way, side by side:
#
#   vsw      vswitchd is the gateway of bridge br0 (10.77.1.0/24, gateway .1): the client
#            and the three backends are afpacket ports; `vsctl add-service br0 web --vip
#            10.77.1.100 --port tcp:80 --port tcp:9000 --backend .11 .12 .13` (round
#            robin, TCP health checks); the gateway's DNS answers `web` (a local name)
#   kernel   the kernel does the same: a Linux bridge br0 with 10.77.1.1/24 and the VIP as
#            a /32 on it, ip_forward, iptables DNAT of VIP:80 and VIP:9000 spread over the
#            backends with the `statistic` match (nth 3, nth 2, the rest: an even round
#            robin, as kube-proxy's iptables mode does), plus the MASQUERADE kube-proxy
#            adds for hairpin traffic (--random-fully: keeping the client's port collided
#            with the backends' TIME_WAIT and connections timed out) (client and backends share the bridge, and without
#            br_netfilter the backend's reply would bypass conntrack); dnsmasq (Debian's
#            dnsmasq-base) on 10.77.1.1 serving the same name (`--host-record=web,VIP`)
#
# Measured from the client namespace (10.77.1.2), each RUNS times, medians in the table:
#   - DNS: QUERIES sequential UDP queries for `web` (one outstanding): answers per second,
#     p50 and p99 latency;
#   - VIP connections per second: CONNS sequential short TCP connections to VIP:80 (each
#     backend's server sends one line naming itself and closes), and the spread over the
#     backends (each within 10% of a third is the target);
#   - TCP throughput through the VIP: one connection to VIP:9000 (so one backend) sending
#     for TIME seconds into a sink that counts what it read.
# Default offloads, no ethtool. The load average is printed with the figures.
#
#   sudo bash benches/services.sh                     # 3 runs, 3000 connections, 5000 queries, 3 s
#   sudo bash benches/services.sh --quick             # 1 run, 600 connections, 1000 queries, 1 s
#   sudo bash benches/services.sh --runs 3 --no-build
#
# Everything it creates (namespaces sv<pid>-*, the daemons and servers, a temp dir) is
# removed on exit, also on Ctrl-C; the iptables rules live and die with the sw namespace.
set -euo pipefail

RUNS=3 CONNS=3000 QUERIES=5000 TIME=3 BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --queries) QUERIES=$2; shift ;;
        --time) TIME=$2; shift ;;
        --quick) RUNS=1 CONNS=600 QUERIES=1000 TIME=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "services.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "services.sh: run as root (network namespaces)" >&2; exit 1; }
for t in ip iptables dnsmasq python3; do
    command -v "$t" >/dev/null || { echo "services.sh: $t is missing (bash scripts/deps.sh)" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# BENCH_PROFILE=NAME: another cargo profile's binaries (as benches/lib/common.sh).
PROFILE=${BENCH_PROFILE:-release}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --profile "$PROFILE" -q -p vswitch -p vswitch-ctl)
fi
P="sv$$"
SW="$P-sw" CL="$P-cl"
NET=10.77.1 VIP=10.77.1.100
BACKENDS=(11 12 13)
TMP=$(mktemp -d /tmp/services-bench.XXXXXX)
SOCK="$TMP/vswitchd.sock"
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for ns in "$SW" "$CL" "${BACKENDS[@]/#/$P-b}"; do
        if ip netns pids "$ns" >/dev/null 2>&1; then
            ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

nsx() { ip netns exec "$@"; }
mkns() {
    ip netns add "$1"
    nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$1" link set lo up
}
bg_in() { # NS LOG CMD...: start CMD in NS in the background, remember its pid
    local ns=$1 log=$2; shift 2
    # Not through nsx: a backgrounded function is a subshell, and its pid is not CMD's
    # (killing it left vswitchd running, and switching, next to the kernel's bridge).
    # `ip netns exec` execs CMD, so $! is CMD itself.
    ip netns exec "$ns" "$@" >"$TMP/$log" 2>&1 &
    PIDS+=($!)
}

SERVER='
import socket, sys, threading
name = sys.argv[1]
def line(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1024)
    while True:
        c, a = s.accept()
        try: c.sendall((name + " " + a[0] + "\n").encode())
        except OSError: pass
        c.close()
def sink(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    buf = bytearray(1 << 20)
    while True:
        c, a = s.accept()
        n = 0
        while True:
            k = c.recv_into(buf)
            if not k: break
            n += k
        c.sendall(b"%d\n" % n); c.close()
threading.Thread(target=sink, args=(9000,), daemon=True).start()
line(80)
'
CLIENT='
import json, socket, struct, sys, time
mode = sys.argv[1]
if mode == "dns":
    server, name, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
    lat, ok = [], 0
    t0 = time.time()
    for i in range(n):
        m = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + q
        t = time.perf_counter(); s.sendto(m, (server, 53))
        try:
            while True:
                r = s.recv(2048)
                if r[:2] == m[:2]: break
            ok += 1; lat.append(time.perf_counter() - t)
        except socket.timeout:
            pass
    el = time.time() - t0; lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else -1
    print(json.dumps({"qps": ok / el, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "answered": ok}))
elif mode == "conns":
    addr, n = sys.argv[2], int(sys.argv[3])
    counts, peers, errors, first = {}, set(), 0, []
    t0 = time.time()
    for i in range(n):
        try:
            s = socket.create_connection((addr, 80), timeout=2); d = b""
            while True:
                x = s.recv(256)
                if not x: break
                d += x
            s.close(); name, peer = d.decode().split()
            counts[name] = counts.get(name, 0) + 1; peers.add(peer)
        except Exception as e:
            errors += 1
            first = (first + ["%d: %r" % (i, e)])[:5]
    el = time.time() - t0
    print(json.dumps({"cps": (n - errors) / el, "counts": counts, "peers": sorted(peers), "errors": errors, "first_errors": first}))
else:
    addr, secs = sys.argv[2], float(sys.argv[3])
    buf = b"\0" * (1 << 20)
    t0 = time.time()
    try:
        s = socket.create_connection((addr, 9000), timeout=10)
        while time.time() - t0 < secs:
            s.sendall(buf)
        s.shutdown(socket.SHUT_WR)
        n = int(s.recv(64).decode().strip()); el = time.time() - t0
        print(json.dumps({"gbps": n * 8 / el / 1e9}))
    except Exception as e:
        print(json.dumps({"gbps": None, "error": repr(e)}))
'

# ---- namespaces: client and backends, each a veth to the switch namespace ----
mkns "$SW"; mkns "$CL"
ip link add cl-p netns "$SW" type veth peer name eth0 netns "$CL"
ip -n "$CL" addr add "$NET.2/24" dev eth0; ip -n "$CL" link set eth0 up
ip -n "$SW" link set cl-p up
ip -n "$CL" route add default via "$NET.1" 2>/dev/null || true
for h in "${BACKENDS[@]}"; do
    ns="$P-b$h"; mkns "$ns"
    ip link add "b$h-p" netns "$SW" type veth peer name eth0 netns "$ns"
    ip -n "$ns" addr add "$NET.$h/24" dev eth0; ip -n "$ns" link set eth0 up
    ip -n "$SW" link set "b$h-p" up
    bg_in "$ns" "srv$h.log" python3 -c "$SERVER" "b$h"
done
ip -n "$CL" route replace default via "$NET.1"
for h in "${BACKENDS[@]}"; do ip -n "$P-b$h" route replace default via "$NET.1"; done
sleep 0.5

client() { nsx "$CL" python3 -c "$CLIENT" "$@"; }
wait_for() { # WHAT CMD...: until CMD succeeds, 15 s at most
    local what=$1; shift
    for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "services.sh: $what never happened" >&2; exit 1
}

declare -A R
measure() { # SETUP: RUNS rounds of the three measurements into R[SETUP.metric.run]
    local s=$1 r
    for r in $(seq "$RUNS"); do
        local d c t
        d=$(client dns "$NET.1" web "$QUERIES")
        c=$(client conns "$VIP" "$CONNS")
        t=$(client bulk "$VIP" "$TIME")
        R[$s.dns.$r]=$d R[$s.conns.$r]=$c R[$s.bulk.$r]=$t
        echo "  $s run $r: dns $d" >&2
        echo "  $s run $r: conns $c" >&2
        echo "  $s run $r: bulk $t" >&2
    done
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# ---- vswitchd ----
bg_in "$SW" vswitchd.log "$BIN/vswitchd" --sock "$SOCK" --db "$TMP/conf.json"
VSD=${PIDS[-1]}
vsctl() { nsx "$SW" "$BIN/vsctl" --sock "$SOCK" "$@"; }
wait_for "vswitchd answering" vsctl show
vsctl add-br br0
for p in cl-p "${BACKENDS[@]/#/b}"; do
    [ "$p" = cl-p ] && vsctl add-port br0 cl-p && continue
    vsctl add-port br0 "$p-p"
done
vsctl add-net br0 "$NET.0/24" --gateway "$NET.1"
vsctl add-service br0 web --vip "$VIP" --port tcp:80 --port tcp:9000 --backend "${BACKENDS[@]/#/$NET.}"
wait_for "the VIP answering" nsx "$CL" python3 -c "import socket; socket.create_connection(('$VIP', 80), timeout=1).recv(64)"
measure vsw
vsctl list-services >&2
kill "$VSD"; wait "$VSD" 2>/dev/null || true
# Its sockets on the veths must be gone before the kernel takes over.
if [ -n "$(ip netns pids "$SW")" ]; then
    echo "services.sh: vswitchd still runs in $SW after being stopped" >&2; exit 1
fi
# The hosts' ARP entries name vswitchd's gateway MAC: forget them.
for ns in "$CL" "${BACKENDS[@]/#/$P-b}"; do
    ip -n "$ns" neigh flush all
    # A router sending back out of the interface a packet came in on says "ICMP
    # redirect: go straight to the backend", which breaks a VIP: neither side takes it.
    nsx "$ns" sysctl -qw net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.eth0.accept_redirects=0
done

# ---- kernel: bridge, iptables DNAT + statistic, dnsmasq ----
nsx "$SW" sh -ec "
ip link add br0 type bridge; ip link set br0 up
for p in cl-p b11-p b12-p b13-p; do ip link set \$p master br0; done
ip addr add $NET.1/24 dev br0; ip addr add $VIP/32 dev br0
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.br0.send_redirects=0
# With br_netfilter loaded on the host, bridged frames go through iptables too and a
# DNAT to a port of the same bridge is bridged rather than routed; VIP traffic here is
# routed (to br0's MAC), so keep the bridge out of iptables, as on a host without it.
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then sysctl -qw net.bridge.bridge-nf-call-iptables=0; fi
for port in 80 9000; do
  iptables -t nat -A PREROUTING -d $VIP -p tcp --dport \$port -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination $NET.11:\$port
  iptables -t nat -A PREROUTING -d $VIP -p tcp --dport \$port -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination $NET.12:\$port
  iptables -t nat -A PREROUTING -d $VIP -p tcp --dport \$port -j DNAT --to-destination $NET.13:\$port
done
iptables -t nat -A POSTROUTING -s $NET.0/24 -d $NET.0/24 -m conntrack --ctstate DNAT -j MASQUERADE --random-fully
"
bg_in "$SW" dnsmasq.log dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
    --listen-address="$NET.1" --host-record="web,$VIP" --user=root --conf-file=/dev/null \
    --pid-file="$TMP/dnsmasq.pid"
wait_for "dnsmasq answering" client dns "$NET.1" web 1
wait_for "the kernel VIP answering" nsx "$CL" python3 -c "import socket; socket.create_connection(('$VIP', 80), timeout=1).recv(64)"
measure kernel
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# ---- the table ----
{
    for k in "${!R[@]}"; do printf '%s\t%s\n' "$k" "${R[$k]}"; done
} | python3 -c '
import json, statistics, sys
r = {}
for line in sys.stdin:
    k, v = line.rstrip("\n").split("\t", 1)
    s, m, _ = k.split(".")
    r.setdefault((s, m), []).append(json.loads(v))
def med(s, m, f):
    v = [x[f] for x in r[(s, m)] if x.get(f) is not None]
    return statistics.median(v) if v else None
def spread(s):
    worst = 0.0
    for x in r[(s, "conns")]:
        third = sum(x["counts"].values()) / 3 or 1
        for b in ("b11", "b12", "b13"):
            worst = max(worst, abs(x["counts"].get(b, 0) - third) / third)
    last = r[(s, "conns")][-1]["counts"]
    return "/".join(str(last.get(b, 0)) for b in ("b11", "b12", "b13")), worst * 100
rows = [
    ("DNS queries/s for a local name", "dns", "qps", "%.0f", True),
    ("DNS latency p50 (ms)", "dns", "p50_ms", "%.3f", False),
    ("DNS latency p99 (ms)", "dns", "p99_ms", "%.3f", False),
    ("VIP connections/s (3 backends)", "conns", "cps", "%.0f", True),
    ("TCP through the VIP, 1 connection (Gbit/s)", "bulk", "gbps", "%.2f", True),
]
print("| metric | vswitchd | kernel (iptables + dnsmasq) | vswitchd / kernel |")
print("| --- | ---: | ---: | ---: |")
for name, m, f, fmt, _ in rows:
    a, b = med("vsw", m, f), med("kernel", m, f)
    show = lambda x: "failed" if x is None else fmt % x
    ratio = "%.2f" % (a / b) if a is not None and b else "-"
    print("| %s | %s | %s | %s |" % (name, show(a), show(b), ratio))
for s in ("vsw", "kernel"):
    c, w = spread(s)
    print("| spread over backends, %s (last run; worst deviation from a third, all runs) | %s | %.1f%% | |" % (s, c, w))
errs = {s: sum(x["errors"] for x in r[(s, "conns")]) for s in ("vsw", "kernel")}
print("\nconnection errors: %s; runs: %d" % (errs, len(r[("vsw", "dns")])))
'
