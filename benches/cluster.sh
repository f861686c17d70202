#!/usr/bin/env bash
# Cluster benchmark (issue 17's numbers): three vswitchd nodes on one etcd, in namespaces.
#
#   attach   from `vsctl attach` of a container on n1 to the first echo a container on n2,
#            and one on n3, gets from it (each a sample; ARP included: the pingers' ARP
#            retry is 10 ms, so the kernel's 1 s retry does not hide ours; they send one
#            echo at a time, each waiting 0.1 s at most)
#   kill     from `kill -9` of n3's vswitchd to its node and endpoints gone on n1 and n2
#            (lease TTL --ttl, default 3 s), then n3 restarted and back
#   idle     etcd traffic of one idle node (lease and gRPC keepalives only): bytes/s on its
#            underlay interface over 30 s, both directions
#   scale    200 simulated nodes x 50 endpoints written into etcd (ten nodes to a
#            transaction; fake VTEPs 198.18.0.0/15 behind a veth of n1): n1's time until
#            its FDB holds all 10,000 remote endpoints, and its RSS before and after
#
#   sudo bash benches/cluster.sh              # 20 tries each
#   sudo bash benches/cluster.sh --quick      # 5 tries, 50 nodes x 20 endpoints
#   sudo bash benches/cluster.sh --scale-only # the scale part alone
#
# Profiling n1 through the scale part: --wrap-n1 puts a command in front of its vswitchd
# (split on spaces), --after-sync runs a shell command once n1 has synced, with n1's PID
# in $N1_PID; e.g. a heap profile of the synced daemon:
#   --wrap-n1 'valgrind --tool=massif --massif-out-file=/tmp/m.out' \
#   --after-sync 'vgdb --pid=$N1_PID detailed_snapshot /tmp/synced.massif'
#
# Namespaces cb<pid>-{U,H1,H2,H3,...}: U holds the underlay bridge and etcd
# (198.51.100.254, client port 2379); Hn is node nN at 198.51.100.N; containers are
# namespaces of their own, attached with `vsctl attach` to overlay bov (10.99.0.0/16).
# Prints median and p99 of each figure, with the load average.
#: usage: sudo bash benches/cluster.sh [--quick] [--scale-only] [--tries N] [--ttl SECS] [--keep-logs DIR] [--no-build]
#:        [--wrap-n1 CMD] [--after-sync CMD]
set -euo pipefail
# shellcheck source=benches/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

TRIES=20 TTL=3 BUILD=auto FAKE_NODES=200 FAKE_EPS=50 IDLE_SECS=30 KEEP_LOGS=
SCALE_ONLY=0 WRAP_N1=() AFTER_SYNC=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) TRIES=5 FAKE_NODES=50 FAKE_EPS=20 IDLE_SECS=10 ;;
        --tries) TRIES="$2"; shift ;;
        --ttl) TTL="$2"; shift ;;
        --no-build) BUILD=0 ;;
        --scale-only) SCALE_ONLY=1 ;;
        --wrap-n1) read -r -a WRAP_N1 <<<"$2"; shift ;;
        --after-sync) AFTER_SYNC="$2"; shift ;;
        --keep-logs) KEEP_LOGS="$2"; shift ;;
        --help | -h) usage; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done
need_root "network namespaces"
P="cb$$"
U="$P-U"
ETCD_IP=198.51.100.254
STORE="etcd://$ETCD_IP:2379"
bench_state vswitch-cluster-bench
install_deps etcd=etcd-server etcdctl=etcd-client
build_release --release -p vswitch -p vswitch-ctl -p testlab
py() { python3 "$LIBDIR/cluster.py" "$@"; }
pre_cleanup() { # --keep-logs: the daemons' logs survive the run
    [ -z "$KEEP_LOGS" ] || { mkdir -p "$KEEP_LOGS" && for n in 1 2 3; do cp "$TMP/n$n/vswitchd.log" "$KEEP_LOGS/n$n.log"; done 2>/dev/null; }
    return 0
}

declare -A SOCK=() PID=()

node_up() { # N: vswitchd nN in HN (started again with the same files if it ran before)
    local n="$1" d="$TMP/n$1"
    VSW_ARGS=(--workers 1 --cluster-store "$STORE" --cluster-advertise "198.51.100.$n"
        --node "n$n" --cluster-ttl "$TTL")
    if [ "$n" = 1 ] && [ ${#WRAP_N1[@]} -gt 0 ]; then
        # What vsw_launch does, with the wrapper in front (and its PID, not vswitchd's).
        mkdir -p "$d"
        VSW_SOCK="$d/vswitchd.sock"
        LOGS+=("$d/vswitchd.log")
        spawn "$d/vswitchd.log" ip netns exec "$P-H$n" "${WRAP_N1[@]}" "$VSWITCHD" \
            --sock "$VSW_SOCK" --db "$d/conf.json" "${VSW_ARGS[@]}"
        VSW_PID="$SPAWNED"
        wait_for 600 "$VSCTL" --sock "$VSW_SOCK" show || die "vswitchd n$n does not answer"
    else
        vsw_launch "$P-H$n" "$d" "vswitchd n$n"
    fi
    SOCK[$n]="$VSW_SOCK" PID[$n]="$VSW_PID"
}

net_up() {
    mkns "$U"
    # A MAC of its own: a bridge without one takes its lowest port's, and would change
    # it under the nodes already talking to etcd as later hosts are plugged in.
    ip -n "$U" link add ul address 02:00:00:00:00:fe type bridge
    ip -n "$U" addr add "$ETCD_IP/24" dev ul
    ip -n "$U" link set ul up
    spawn "$TMP/etcd.log" ip netns exec "$U" etcd --name bench --data-dir "$TMP/etcd" \
        --listen-client-urls "http://$ETCD_IP:2379" --advertise-client-urls "http://$ETCD_IP:2379" \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster bench=http://127.0.0.1:2380 --log-level warn --max-txn-ops 2048
    LOGS+=("$TMP/etcd.log")
    wait_for 150 ip netns exec "$U" etcdctl --endpoints "$ETCD_IP:2379" endpoint health ||
        die "etcd did not come up: $(tail -n 5 "$TMP/etcd.log")"
    for n in 1 2 3; do
        mkns "$P-H$n"
        ns_link "$P-H$n" ul0 "$U" "u$n" "198.51.100.$n/24"
        ip -n "$U" link set "u$n" master ul
        node_up "$n"
    done
}

container() { # N NAME [ATTACH ARGS...]: namespace NAME attached to bov on node N
    local n="$1" c="$2"
    shift 2
    mkns "$c"
    vsctl_at "${SOCK[$n]}" attach bov "$c" --mtu 1450 "$@"
    # A failed ARP is retried after 10 ms, not the default 1 s.
    ip netns exec "$c" sysctl -qw net.ipv4.neigh.eth0.retrans_time_ms=10
}

say "cluster: 3 nodes, TTL ${TTL}s, $TRIES tries; load $(loadavg)"
net_up
vsctl_at "${SOCK[1]}" add-overlay bov --subnet 10.99.0.0/16 >/dev/null
for n in 1 2 3; do
    wait_for 100 sh -c "'$VSCTL' --sock '${SOCK[$n]}' list-overlays | grep -q '^bov '" ||
        die "n$n does not carry overlay bov"
done
if [ "$SCALE_ONLY" = 0 ]; then # every part but the scale one
container 2 "$P-p2" >/dev/null
container 3 "$P-p3" >/dev/null

# ---- attach -> first ping ----------------------------------------------------------------
say "attach on n1 -> first echo from n2 and n3"
: >"$TMP/attach.txt"
: >"$TMP/attach-cmd.txt"
for i in $(seq "$TRIES"); do
    # An address of its own each try: a detached container's address may take a moment
    # to be free again.
    TARGET="10.99.1.$i"
    c="$P-t$i"
    for n in 2 3; do
        ip -n "$P-p$n" neigh flush all
        # One echo at a time (ping -c 1 would end at the first "host unreachable" while
        # ARP fails), until one comes back.
        spawn "$TMP/ping-$n.txt" timeout 20 ip netns exec "$P-p$n" sh -c \
            "until ping -n -q -c 1 -W 0.1 $TARGET >/dev/null 2>&1; do sleep 0.005; done; date +%s.%N"
        printf -v "PP$n" '%s' "$SPAWNED"
    done
    mkns "$c"
    sleep 0.3
    t0="$(now)"
    vsctl_at "${SOCK[1]}" attach bov "$c" --ip "$TARGET/16" --mtu 1450 >/dev/null
    t1="$(now)"
    calc "$t1 - $t0" >>"$TMP/attach-cmd.txt"
    echo >>"$TMP/attach-cmd.txt"
    for n in 2 3; do
        pp="PP$n"
        wait "${!pp}" || die "try $i: no echo from $TARGET on n$n"
        forget_pid "${!pp}"
        calc "$(cat "$TMP/ping-$n.txt") - $t0" >>"$TMP/attach.txt"
        echo >>"$TMP/attach.txt"
    done
    vsctl_at "${SOCK[1]}" detach bov "$c" >/dev/null
    del_ns "$c"
done
read -r A_MED A_P99 A_MIN A_MAX A_N < <(py stats "$TMP/attach.txt")
read -r AC_MED AC_P99 _ _ _ < <(py stats "$TMP/attach-cmd.txt")
info "attach -> first echo: median $(dec 3 "$A_MED") s, p99 $(dec 3 "$A_P99") s (min $A_MIN, max $A_MAX, $A_N samples); the attach itself: median $(dec 3 "$AC_MED") s"

# ---- idle traffic ----------------------------------------------------------------------------
say "etcd traffic of idle node n2 over ${IDLE_SECS}s"
bytes() { ip -n "$P-H2" -j -s link show ul0 | python3 -c \
    'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["rx"]["bytes"], s["tx"]["bytes"])'; }
read -r rx0 tx0 < <(bytes)
sleep "$IDLE_SECS"
read -r rx1 tx1 < <(bytes)
IDLE_RX="$(calc "($rx1 - $rx0) / $IDLE_SECS")" IDLE_TX="$(calc "($tx1 - $tx0) / $IDLE_SECS")"
info "idle node: $(dec 0 "$IDLE_TX") B/s to etcd, $(dec 0 "$IDLE_RX") B/s from it (interface counters: an upper bound)"

# ---- kill -9 -> gone elsewhere ---------------------------------------------------------------
say "kill -9 of n3 -> its node and endpoints gone on n1 and n2"
: >"$TMP/kill.txt"
for i in $(seq "$TRIES"); do
    wait_for 200 sh -c "'$VSCTL' --sock '${SOCK[1]}' --json fdb-show bov | grep -q '\"remote\": *\"198.51.100.3\"'" ||
        die "try $i: n1 has no endpoint of n3"
    t0="$(now)"
    stop_pid "${PID[3]}" KILL
    forget_pid "${PID[3]}"
    py wait-gone "$t0" 198.51.100.3 "$VSCTL" "${SOCK[1]}" "${SOCK[2]}" >>"$TMP/kill.txt" ||
        die "try $i: n3 not dropped"
    node_up 3
done
read -r K_MED K_P99 K_MIN K_MAX K_N < <(py stats "$TMP/kill.txt")
info "kill -9 -> gone elsewhere: median $(dec 3 "$K_MED") s, p99 $(dec 3 "$K_P99") s (min $K_MIN, max $K_MAX, $K_N samples; TTL ${TTL}s)"
fi

# ---- scale -------------------------------------------------------------------------------------
say "scale: $FAKE_NODES simulated nodes x $FAKE_EPS endpoints into etcd; n1's sync and RSS"
# The dummy underlay: a veth pair inside n1 (this kernel may lack the dummy driver);
# nothing answers behind it.
ip -n "$P-H1" link add fake0 type veth peer name fake1
ip -n "$P-H1" addr add 198.18.0.254/15 dev fake0
ip -n "$P-H1" link set fake1 up
ip -n "$P-H1" link set fake0 up
vsctl_at "${SOCK[1]}" add-overlay sov --subnet 10.128.0.0/16 >/dev/null
wait_for 100 sh -c "'$VSCTL' --sock '${SOCK[1]}' list-overlays | grep -q '^sov .* sov '" || die "n1 does not carry sov"
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
RSS0="$(rss "${PID[1]}")"
N=$((FAKE_NODES * FAKE_EPS))
t0="$(now)"
WRITE="$(ip netns exec "$U" python3 "$LIBDIR/cluster.py" fill "http://$ETCD_IP:2379" sov "$FAKE_NODES" "$FAKE_EPS")"
SYNC="$(py wait-fdb "$t0" "$N" sov "$VSCTL" "${SOCK[1]}")" || die "n1 did not sync"
sleep 1
[ -z "$AFTER_SYNC" ] || N1_PID="${PID[1]}" sh -c "$AFTER_SYNC" || die "--after-sync failed"
RSS1="$(rss "${PID[1]}")"
REMOTES="$(vsctl_at "${SOCK[1]}" --json list-overlays | python3 -c \
    'import json,sys; print(next(len(o["remotes"]) for o in json.load(sys.stdin)["overlays"] if o["name"]=="sov"))')"
AFTER="$(calc "$SYNC - $WRITE")"
info "writing took $(dec 2 "$WRITE") s; n1 had all $N endpoints of $REMOTES remote VTEPs in its FDB $(dec 2 "$SYNC") s after the first write, $(dec 2 "$AFTER") s after the last"
info "n1 RSS $((RSS0 / 1024)) MiB -> $((RSS1 / 1024)) MiB (+$(((RSS1 - RSS0) / 1024)) MiB)"

say "results ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), load $(loadavg))"
if [ "$SCALE_ONLY" = 0 ]; then # every part but the scale one
printf '    %-44s %10s %10s\n' figure median p99
printf '    %-44s %10s %10s\n' "attach -> first echo from another host (s)" "$(dec 3 "$A_MED")" "$(dec 3 "$A_P99")"
printf '    %-44s %10s %10s\n' "kill -9 -> endpoints gone elsewhere (s)" "$(dec 3 "$K_MED")" "$(dec 3 "$K_P99")"
info "idle node etcd traffic: $(dec 0 "$IDLE_TX") B/s out, $(dec 0 "$IDLE_RX") B/s in"
fi
info "scale $FAKE_NODES x $FAKE_EPS: sync $(dec 2 "$SYNC") s from the first write ($(dec 2 "$WRITE") s of writing), $(dec 2 "$AFTER") s after the last; RSS +$(((RSS1 - RSS0) / 1024)) MiB ($((RSS0 / 1024)) -> $((RSS1 / 1024)) MiB)"
