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
# sysctl). The binaries are copied into the temp dir at the start, so a rebuild of
# target/release during the run changes nothing; the JSON names HEAD, whether vswitch's
# sources had uncommitted changes, and the vswitchd binary's sha256.
#
# Tools: ip, iperf3, ping, curl, python3, ss, timeout, awk, sha256sum (checked with command -v;
# nothing is installed), a kernel with vxlan for K (else --no-kernel-peer), root.
set -euo pipefail
START_SECS="$(date +%s)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
RESULTS="$ROOT/benches/results"
SCRIPT_NAME=soak.sh
# shellcheck source=benches/lib/common.sh
. "$ROOT/benches/lib/common.sh"

usage() {
    cat <<'EOF'
usage: sudo bash benches/soak.sh [--time S] [--interval S] [--quick] [--rate R] [--tcp-seconds S]
                                 [--curls N] [--udps N] [--macs N] [--no-kernel-peer]
                                 [--build|--no-build] [--save|--no-save] [--vswitchd-args "ARGS"]
                                 [--keep DIR]
       bash benches/soak.sh --summary FILE      print a saved result's report again

  --time S             how long the traffic runs (default 600; --quick: 60)
  --interval S         seconds between samples (default 10; --quick: 5)
  --quick              smoke run: 60 s, a sample every 5 s; saves nothing unless --save
  --rate R             iperf3 -b of every TCP run (default 500M; 0 = unlimited)
  --tcp-seconds S      iperf3 -t of every TCP run (default 3)
  --curls N            short HTTP connections per NAT cycle and direction (default 20)
  --udps N             short UDP flows per NAT cycle outbound (default 20; inbound half)
  --macs N             fresh source MACs per L2 cycle (default 100)
  --no-kernel-peer     no kernel vxlan peer K (only vswitchd <-> vswitchd VXLAN)
  --build / --no-build cargo build --release --workspace first: --build always, --no-build
                       never; by default only when target/release/vswitchd or vsctl is missing
  --save / --no-save   write benches/results/soak-all-<date>-<time>.json (default: save,
                       except with --quick)
  --vswitchd-args ARGS extra arguments for both vswitchds, e.g. "--workers 1"
  --keep DIR           copy the raw files (iperf3 JSON, ping output, stats, vswitchd logs,
                       server logs) to DIR before the temp dir is removed
EOF
}

# ---- the python side: helpers for the traffic, the per-sample line and the report -----------
write_py() { # PATH
    cat >"$1" <<'PY'
import json, math, os, random, re, socket, statistics, struct, sys, time


def percentile(values, p):
    s = sorted(values)
    return s[max(1, math.ceil(p / 100.0 * len(s))) - 1]


def read_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    return out


# ---- traffic helpers (run inside the namespaces) ----
def udp_echo(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def udp_churn(host, port, n):
    """n UDP flows, each from a fresh socket (a fresh source port): send, wait for the echo."""
    ok = 0
    for i in range(int(n)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        try:
            msg = b"soak %d %d" % (os.getpid(), i)
            s.sendto(msg, (host, int(port)))
            data, _ = s.recvfrom(2048)
            ok += data == msg
        except OSError:
            pass
        finally:
            s.close()
    print(ok, n)


def mac_churn(iface, n):
    """n broadcast frames (ethertype 0x88b5, local experimental) from fresh random locally
    administered unicast MACs: each is a new FDB entry on the switch."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    sent = 0
    for _ in range(int(n)):
        mac = bytes([0x02 | (random.randrange(256) & 0xFC)] + [random.randrange(256) for _ in range(5)])
        frame = b"\xff" * 6 + mac + struct.pack("!H", 0x88B5) + b"vswitch soak mac churn".ljust(46, b"\0")
        try:
            s.send(frame)
            sent += 1
        except OSError:
            pass
    print(sent, n)


# ---- samples ----
def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("State", "VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                    v = v.split()
                    out[k] = v[0] if k == "State" else int(v[0])
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    if out.get("State") in ("Z", "X", None) or "VmRSS" not in out:
        return None
    return out


def stats_digest(path):
    """From `vsctl --json stats`: FDB size per bridge, conntrack, and every non-zero drop
    counter keyed "bridge/port:reason", "vtep local:port:reason" or "gateway:reason"."""
    try:
        with open(path, encoding="utf-8") as f:
            st = json.load(f)
    except (OSError, ValueError):
        return None
    st = st.get("data", st)
    d = {"fdb": {}, "drops": {}, "conntrack": None, "mappings": None, "ct_refused": None}
    for b in st.get("bridges", []):
        d["fdb"][b["name"]] = b.get("fdb_entries")
        for p in b.get("ports", []):
            for k, v in (p.get("drops") or {}).items():
                if v:
                    d["drops"][f"{b['name']}/{p['name']}:{k}"] = v
    for v in st.get("vteps", []) or []:
        for k, n in (v.get("drops") or {}).items():
            if n:
                d["drops"][f"vtep {v.get('local')}:{v.get('dstport')}:{k}"] = n
    g = st.get("gateway")
    if g:
        d["conntrack"] = g.get("conntrack")
        d["mappings"] = g.get("mappings")
        d["ct_refused"] = g.get("ct_refused")
        for k, n in (g.get("drops") or {}).items():
            if n:
                d["drops"][f"gateway:{k}"] = n
    return d


def cycle_counts(sd):
    out = {}
    for f in ("l2", "vlan", "vxlan", "nat"):
        rows = read_jsonl(os.path.join(sd, f"loop-{f}.jsonl"))
        out[f] = [sum(1 for r in rows if r.get("ok")), len(rows)]
    return out


def cmd_sample(t, at, out_path, loops, *daemons):
    """daemons: NAME PID STATS ... -> a JSON line appended to OUT_PATH and one line on stdout
    (with the cycle counts of the loops in directory LOOPS, unless it is "-"). Exit 3 if a
    vswitchd is gone."""
    with open("/proc/loadavg", encoding="utf-8") as f:
        load = [float(x) for x in f.read().split()[:3]]
    row = {"t": float(t), "at": float(at), "loadavg": load, "daemons": {}}
    gone = []
    parts = [f"t={float(t):5.0f}s load {load[0]:4.2f}"]
    for name, pid, stats in zip(daemons[0::3], daemons[1::3], daemons[2::3]):
        p = proc_status(pid)
        if p is None:
            gone.append(name)
            row["daemons"][name] = {"alive": False}
            parts.append(f"{name}: DEAD")
            continue
        dg = stats_digest(stats) or {"fdb": {}, "drops": {}, "conntrack": None}
        e = dict(p, alive=True, **dg)
        row["daemons"][name] = e
        fdb = " ".join(f"{k}={v}" for k, v in sorted(dg["fdb"].items()))
        s = (f"{name}: rss {p['VmRSS'] / 1024:6.2f} (anon {p.get('RssAnon', 0) / 1024:5.2f}) "
             f"hwm {p['VmHWM'] / 1024:6.2f} MiB "
             f"fds {p['fds']} fdb {fdb}")
        if dg.get("conntrack") is not None:
            s += f" ct {dg['conntrack']}"
        s += f" drops {sum(dg['drops'].values())}"
        parts.append(s)
    if loops != "-":
        cc = cycle_counts(loops)
        row["cycles"] = cc
        parts.append("ok " + " ".join(f"{k} {v[0]}/{v[1]}" for k, v in cc.items()))
    with open(out_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print("    " + " | ".join(parts), flush=True)
    sys.exit(3 if gone else 0)


# ---- the report ----
def ping_stats(path, t0, interval):
    """`ping -D -O`: -O prints "no answer yet" for a reply still missing when the next echo
    goes out (10 ms later), so a late reply is not a loss: lost = sequence numbers reported
    missing that never got a reply (plus, after an interrupted ping, none)."""
    stamps, times, sent, pending, answered, maxseq = [], [], None, {}, set(), 0
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"\[([0-9.]+)\].*icmp_seq=(\d+).*time=([0-9.]+) ms", line)
                if m:
                    stamps.append(float(m.group(1)))
                    times.append(float(m.group(3)))
                    answered.add(int(m.group(2)))
                    maxseq = max(maxseq, int(m.group(2)))
                    continue
                m = re.match(r"\[([0-9.]+)\] no answer yet for icmp_seq=(\d+)", line)
                if m:
                    pending.setdefault(int(m.group(2)), float(m.group(1)))
                    maxseq = max(maxseq, int(m.group(2)))
                    continue
                m = re.match(r"(\d+) packets transmitted", line)
                if m:
                    sent = int(m.group(1))
    res = {"sent": sent if sent is not None else maxseq, "replies": len(times),
           "summary_line": sent is not None}
    sent = res["sent"]
    lost_at = [ts for seq, ts in pending.items() if seq not in answered]
    res["late_replies"] = sum(1 for seq in pending if seq in answered)
    if sent:
        res["loss_pct"] = round(100.0 * max(sent - len(times), 0) / sent, 3)
    if times:
        gaps = [b - a for a, b in zip([t0] + stamps, stamps)]
        res.update(p50_ms=percentile(times, 50), p99_ms=percentile(times, 99), max_ms=max(times),
                   longest_without_reply_s=round(max(gaps), 3))
    buckets = {}
    for x in lost_at:
        k = int((x - t0) // interval * interval)
        buckets[k] = buckets.get(k, 0) + 1
    res["lost_by_interval"] = {str(k): v for k, v in sorted(buckets.items())}
    return res


def iperf_result(path):
    try:
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
    except (OSError, ValueError):
        return {"error": "no JSON result"}
    if "error" in j:
        return {"error": j["error"]}
    try:
        return {"gbps": round(j["end"]["sum_received"]["bits_per_second"] / 1e9, 4),
                "retransmits": j["end"].get("sum_sent", {}).get("retransmits", 0)}
    except KeyError:
        return {"error": "incomplete JSON result"}


def warmup_s(seconds):
    return min(max(0.2 * seconds, 60.0), seconds / 2.0)


def mib(k):
    return round(k / 1024, 3) if k is not None else None


def build(sd):
    e = os.environ
    seconds = float(e["SOAK_TIME"])
    interval = float(e["SOAK_INTERVAL"])
    t0 = float(e["SOAK_T0"])
    warm = warmup_s(seconds)
    limit = 5.0
    samples = read_jsonl(os.path.join(sd, "samples.jsonl"))
    idle = read_jsonl(os.path.join(sd, "idle.jsonl"))
    after = read_jsonl(os.path.join(sd, "after.jsonl"))
    names = json.loads(e["SOAK_DAEMONS"])  # {"A": {"pid":..,"role":..}, ...}
    daemons = {}
    verdict_reasons = []
    for name, info in names.items():
        series = []
        for s in samples:
            d = s["daemons"].get(name, {})
            if not d.get("alive"):
                continue
            series.append({"t": s["t"], "rss_kib": d["VmRSS"], "hwm_kib": d["VmHWM"],
                           "rss_anon_kib": d.get("RssAnon"), "rss_file_kib": d.get("RssFile"),
                           "threads": d.get("Threads"), "fds": d.get("fds"),
                           "fdb": d.get("fdb"), "conntrack": d.get("conntrack"),
                           "mappings": d.get("mappings"),
                           "drops_total": sum((d.get("drops") or {}).values()),
                           "drops": d.get("drops") or {}})
        died = any(not s["daemons"].get(name, {}).get("alive", True) for s in samples) or \
            e.get("SOAK_DIED_" + name) == "1"
        ent = {"pid": info["pid"], "role": info["role"], "died": died, "series": series}
        if idle and idle[0]["daemons"].get(name, {}).get("alive"):
            ent["idle_rss_kib"] = idle[0]["daemons"][name]["VmRSS"]
        if after and after[0]["daemons"].get(name, {}).get("alive"):
            ent["after_traffic_rss_kib"] = after[0]["daemons"][name]["VmRSS"]
            ent["after_traffic_hwm_kib"] = after[0]["daemons"][name]["VmHWM"]
        w = [r["rss_kib"] for r in series if r["t"] <= warm]
        post = [r for r in series if r["t"] > warm]
        if w and post:
            level = max(w)
            final = series[-1]["rss_kib"]
            peak = max(post, key=lambda r: r["rss_kib"])
            ent.update(warmup_level_kib=level, final_rss_kib=final, final_t=series[-1]["t"],
                       final_hwm_kib=series[-1]["hwm_kib"],
                       max_after_warmup_kib=peak["rss_kib"], max_after_warmup_t=peak["t"],
                       growth_final_pct=round(100.0 * (final - level) / level, 3),
                       growth_max_pct=round(100.0 * (peak["rss_kib"] - level) / level, 3))
            aw = [r["rss_anon_kib"] for r in series if r["t"] <= warm and r["rss_anon_kib"] is not None]
            if aw and series[-1]["rss_anon_kib"] is not None:
                ent.update(anon_warmup_level_kib=max(aw), anon_final_kib=series[-1]["rss_anon_kib"],
                           anon_max_after_warmup_kib=max(r["rss_anon_kib"] or 0 for r in post),
                           anon_growth_final_pct=round(100.0 * (series[-1]["rss_anon_kib"] - max(aw)) / max(aw), 3))
            fd_w = max(r["fds"] for r in series if r["t"] <= warm)
            ent["fds_warmup_max"] = fd_w
            ent["fds_max_after_warmup"] = max(r["fds"] for r in post)
            ent["pass"] = ent["growth_max_pct"] <= limit and not died
            if ent["growth_max_pct"] > limit:
                verdict_reasons.append(f"vswitchd {name}: RSS grew {ent['growth_max_pct']:.2f} % "
                                       f"past its warm-up level (limit {limit:g} %)")
        else:
            ent["pass"] = False
            verdict_reasons.append(f"vswitchd {name}: not enough samples for a verdict")
        if died:
            verdict_reasons.append(f"vswitchd {name} died")
        # drops: at the end of the warm-up, at the end, and what grew after the warm-up
        dsam = [s["daemons"][name] for s in samples if s["daemons"].get(name, {}).get("alive")]
        tsam = [s["t"] for s in samples if s["daemons"].get(name, {}).get("alive")]
        dw = {}
        for t, d in zip(tsam, dsam):
            if t <= warm:
                dw = d.get("drops") or {}
        dend = (dsam[-1].get("drops") or {}) if dsam else {}
        ent["drops_end"] = dict(sorted(dend.items()))
        ent["drops_after_warmup"] = {k: v - dw.get(k, 0) for k, v in sorted(dend.items())
                                     if v - dw.get(k, 0)}
        fs = os.path.join(sd, f"stats-final-{name}.json")
        if os.path.exists(fs):
            try:
                with open(fs, encoding="utf-8") as f:
                    ent["stats_final"] = json.load(f)
            except ValueError:
                pass
        daemons[name] = ent

    traffic = {}
    for f in ("l2", "vlan", "vxlan", "nat"):
        rows = read_jsonl(os.path.join(sd, f"loop-{f}.jsonl"))
        legs = {}
        extras = {}
        for r in rows:
            r["start_s"] = round(r.pop("t0") - t0, 3)
            r["end_s"] = round(r.pop("t1") - t0, 3)
            ip = r.pop("iperf_file", None)
            if ip:
                r["iperf"] = iperf_result(os.path.join(sd, ip))
                lg = legs.setdefault(r["leg"], {"runs": 0, "failed": 0, "gbps": []})
                lg["runs"] += 1
                if r["iperf_rc"] != 0 or "gbps" not in r["iperf"]:
                    lg["failed"] += 1
                else:
                    lg["gbps"].append(r["iperf"]["gbps"])
            r.pop("feature", None)
            for k in ("curl_out", "curl_in", "hairpin", "udp_out", "udp_in", "macs"):
                if k in r:
                    x = extras.setdefault(k, [0, 0])
                    x[0] += r[k][0]
                    x[1] += r[k][1]
        for lg in legs.values():
            g = lg.pop("gbps")
            lg["median_gbps"] = statistics.median(g) if g else None
            lg["min_gbps"] = min(g) if g else None
        traffic[f] = {"cycles": len(rows), "ok": sum(1 for r in rows if r.get("ok")),
                      "legs": legs, "extras": extras, "cycle_log": rows}
        ok = sum(1 for r in rows if r.get("ok"))
        if not rows or ok < 0.8 * len(rows):
            verdict_reasons.append(f"{f}: only {ok} of {len(rows)} cycles fully succeeded "
                                   "(at least 80 % must)")
        for k, v in legs.items():
            if v["runs"] and v["failed"] == v["runs"]:
                verdict_reasons.append(f"{f}: every iperf3 run of leg {k} failed")
    pings = {}
    for line in open(os.path.join(sd, "pings.tsv"), encoding="utf-8"):
        feat, label, path = line.rstrip("\n").split("\t")
        p = ping_stats(path, t0, interval)
        p["feature"] = feat
        pings[label] = p
        if not p["replies"]:
            verdict_reasons.append(f"ping {label}: no replies")
    checks = read_jsonl(os.path.join(sd, "checks.jsonl"))
    for c in checks:
        if not c["ok"]:
            verdict_reasons.append(f"check failed ({c['phase']}): {c['check']}")
    verdict = "PASS" if not verdict_reasons else "FAIL"
    res = {
        "benchmark": "soak-all",
        "date": e["BENCH_DATE"],
        "machine": {"cpus": int(e["BENCH_CPUS"]), "cpu_model": e["BENCH_CPU_MODEL"],
                    "kernel": e["BENCH_KERNEL"], "mem_mib": int(e["BENCH_MEM_MIB"]),
                    "uptime_start": e["BENCH_UPTIME_START"], "uptime_end": e["BENCH_UPTIME_END"],
                    "loadavg_start": e["BENCH_LOAD_START"], "loadavg_end": e["BENCH_LOAD_END"],
                    "loadavg_samples": [[s["t"], s["loadavg"][0]] for s in samples]},
        "vswitch_commit": e["BENCH_COMMIT"],
        "vswitch_dirty": e["BENCH_DIRTY"] == "true",
        "vswitchd_binary": e["BENCH_VSWITCHD_BIN"],
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "options": {"time_s": seconds, "interval_s": interval, "quick": e["SOAK_QUICK"] == "1",
                    "rate": e["SOAK_RATE"], "tcp_seconds": int(e["SOAK_TCP_S"]),
                    "curls": int(e["SOAK_CURLS"]), "udps": int(e["SOAK_UDPS"]),
                    "macs": int(e["SOAK_MACS"]), "kernel_peer": e["SOAK_KPEER"] == "1",
                    "ping_interval_s": 0.01, "l2_aging_s": 30},
        "rule": {"warmup_s": warm,
                 "warmup": "the first 20 % of the run or the first 60 s, whichever is longer, "
                           "at most half the run; warm-up level = largest VmRSS sampled in it "
                           "(idle sample excluded)",
                 "limit_pct": limit,
                 "pass_if": "for every vswitchd: max VmRSS after the warm-up <= warm-up level "
                            "* 1.05; no vswitchd died; at least 80 % of each feature's cycles "
                            "fully succeeded and no iperf3 leg always failed; every ping got "
                            "replies; every check passed"},
        "namespaces_prefix": e["SOAK_PREFIX"],
        "topology": e["SOAK_TOPOLOGY"],
        "verdict": verdict,
        "verdict_reasons": verdict_reasons,
        "daemons": daemons,
        "traffic": traffic,
        "pings": pings,
        "checks": checks,
        "samples": [{"t": s["t"], "at": s["at"], "loadavg": s["loadavg"],
                     "cycles_ok_total": s.get("cycles")} for s in samples],
        "idle_sample": idle[0] if idle else None,
        "after_traffic_sample": after[0] if after else None,
        "elapsed_s": int(e["BENCH_ELAPSED"]),
        "build_s": int(e["BENCH_BUILD_S"]),
    }
    return res


def render(res):
    out = []
    w = res["rule"]["warmup_s"]
    out.append(f"warm-up: first {w:g} s ({res['rule']['warmup']})")
    for name, d in res["daemons"].items():
        out.append("")
        out.append(f"vswitchd {name} (pid {d['pid']}; {d['role']}):")
        if "idle_rss_kib" in d:
            out.append(f"  idle before the traffic: VmRSS {d['idle_rss_kib'] / 1024:.2f} MiB")
        ser = d["series"]
        for i in range(0, len(ser), 6):
            out.append("  RSS " + "  ".join(
                f"{r['t']:4.0f}s {r['rss_kib'] / 1024:6.2f}" for r in ser[i:i + 6]))
        if "warmup_level_kib" in d:
            out.append(f"  warm-up level {d['warmup_level_kib'] / 1024:.2f} MiB, final "
                       f"{d['final_rss_kib'] / 1024:.2f} MiB (t={d['final_t']:g} s, VmHWM "
                       f"{d['final_hwm_kib'] / 1024:.2f}), growth {d['growth_final_pct']:+.2f} % "
                       f"final, {d['growth_max_pct']:+.2f} % at the largest sample after the "
                       f"warm-up ({d['max_after_warmup_kib'] / 1024:.2f} MiB at "
                       f"{d['max_after_warmup_t']:g} s): {'PASS' if d['pass'] else 'FAIL'}")
            if "anon_warmup_level_kib" in d:
                out.append(f"  of which RssAnon (heap; the rest is mostly the mmap'ed packet rings): "
                           f"warm-up level {d['anon_warmup_level_kib'] / 1024:.2f} MiB, final "
                           f"{d['anon_final_kib'] / 1024:.2f} MiB ({d['anon_growth_final_pct']:+.2f} %), "
                           f"max after the warm-up {d['anon_max_after_warmup_kib'] / 1024:.2f} MiB")
            out.append(f"  open fds: warm-up max {d['fds_warmup_max']}, after "
                       f"{d['fds_max_after_warmup']}")
        if "after_traffic_rss_kib" in d:
            out.append(f"  after the traffic stopped: VmRSS {d['after_traffic_rss_kib'] / 1024:.2f}"
                       f" MiB, VmHWM {d['after_traffic_hwm_kib'] / 1024:.2f} MiB")
        if d["died"]:
            out.append("  DIED during the run")
        fdb_keys = sorted({k for r in ser for k in (r["fdb"] or {})})
        for k in fdb_keys:
            vals = [(r["fdb"] or {}).get(k) for r in ser]
            vv = [v for v in vals if v is not None]
            if vv:
                out.append(f"  FDB {k}: min {min(vv)} max {max(vv)} final {vv[-1]}  series "
                           + " ".join(str(v) for v in vals))
        cts = [r["conntrack"] for r in ser if r["conntrack"] is not None]
        if cts:
            out.append(f"  conntrack: min {min(cts)} max {max(cts)} final {cts[-1]}  series "
                       + " ".join(str(v) for v in cts))
        if d["drops_end"]:
            out.append("  drops at the end (total; of which after the warm-up):")
            for k, v in d["drops_end"].items():
                out.append(f"    {k}: {v} ({d['drops_after_warmup'].get(k, 0)})")
        else:
            out.append("  drops at the end: none")
    out.append("")
    out.append("traffic:")
    for f, t in res["traffic"].items():
        legs = "; ".join(
            f"{k}: {v['runs'] - v['failed']}/{v['runs']} ok"
            + (f", median {v['median_gbps']:.2f} Gbit/s" if v["median_gbps"] is not None else "")
            for k, v in t["legs"].items())
        ex = "; ".join(f"{k} {a}/{b}" for k, (a, b) in t["extras"].items())
        out.append(f"  {f}: {t['ok']}/{t['cycles']} cycles fully ok; {legs}" + (f"; {ex}" if ex else ""))
    for label, p in res["pings"].items():
        s = f"  ping {label}: {p['replies']}/{p['sent']} replies"
        if "loss_pct" in p:
            s += f" ({p['loss_pct']:.2f} % lost)"
        if p.get("p50_ms") is not None:
            s += (f", p50 {p['p50_ms']:.3f} ms, p99 {p['p99_ms']:.3f} ms, max {p['max_ms']:.1f} ms,"
                  f" longest without reply {p['longest_without_reply_s']:.2f} s")
        if p["lost_by_interval"]:
            s += ", lost by interval " + ", ".join(
                f"{k}s:{v}" for k, v in p["lost_by_interval"].items())
        out.append(s)
    bad = [c for c in res["checks"] if not c["ok"]]
    out.append(f"checks: {len(res['checks']) - len(bad)}/{len(res['checks'])} passed"
               + ("".join(f"\n  FAILED ({c['phase']}) {c['check']}: {c.get('detail', '')}" for c in bad)))
    m = res["machine"]
    out.append(f"load average: start {m['loadavg_start']}, end {m['loadavg_end']}; "
               f"1-min over the run min {min((x[1] for x in m['loadavg_samples']), default=0):.2f} "
               f"max {max((x[1] for x in m['loadavg_samples']), default=0):.2f}")
    out.append("")
    out.append(f"VERDICT: {res['verdict']} (RSS must not grow past its warm-up level by more than "
               f"{res['rule']['limit_pct']:g} %)")
    for r in res["verdict_reasons"]:
        out.append(f"  - {r}")
    return "\n".join(out)


def pretty(obj, ind=""):
    """JSON with one line per small object or list (a sample, a cycle), indented above that."""
    flat = json.dumps(obj)
    if len(flat) <= 160 or not isinstance(obj, (dict, list)) or not obj:
        return flat
    inner = ind + "  "
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {pretty(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + ind + "}"
    return "[\n" + ",\n".join(inner + pretty(v, inner) for v in obj) + "\n" + ind + "]"


def cmd_report(sd, out_path):
    res = build(sd)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(pretty(res) + "\n")
    print(render(res))
    sys.exit(0 if res["verdict"] == "PASS" else 1)


def cmd_summary(path):
    with open(path, encoding="utf-8") as f:
        print(render(json.load(f)))


def main(a):
    cmds = {"udp-echo": udp_echo, "udp-churn": udp_churn, "mac-churn": mac_churn,
            "sample": cmd_sample, "report": cmd_report, "summary": cmd_summary}
    if not a or a[0] not in cmds:
        sys.exit("soak.py: unknown subcommand")
    cmds[a[0]](*a[1:])


main(sys.argv[1:])
PY
}

# ---- options ---------------------------------------------------------------------------------
SOAK_TIME="" INTERVAL="" QUICK=0 RATE=500M TCP_S=3 CURLS=20 UDPS=20 MACS=100 KPEER=1
BUILD=auto SAVE="" VSW_EXTRA="" SUMMARY="" KEEP=""
num_opt() { # NAME VALUE
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a whole number >= 1, not '$2'"
}
while [ $# -gt 0 ]; do
    case "$1" in
        --time | --interval | --rate | --tcp-seconds | --curls | --udps | --macs | --vswitchd-args | --summary | --keep)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --time) SOAK_TIME="$2" ;;
                --interval) INTERVAL="$2" ;;
                --rate) RATE="$2" ;;
                --tcp-seconds) TCP_S="$2" ;;
                --curls) CURLS="$2" ;;
                --udps) UDPS="$2" ;;
                --macs) MACS="$2" ;;
                --vswitchd-args) VSW_EXTRA="$2" ;;
                --summary) SUMMARY="$2" ;;
                --keep) KEEP="$2" ;;
            esac
            shift
            ;;
        --time=*) SOAK_TIME="${1#*=}" ;;
        --interval=*) INTERVAL="${1#*=}" ;;
        --rate=*) RATE="${1#*=}" ;;
        --tcp-seconds=*) TCP_S="${1#*=}" ;;
        --curls=*) CURLS="${1#*=}" ;;
        --udps=*) UDPS="${1#*=}" ;;
        --macs=*) MACS="${1#*=}" ;;
        --vswitchd-args=*) VSW_EXTRA="${1#*=}" ;;
        --summary=*) SUMMARY="${1#*=}" ;;
        --keep=*) KEEP="${1#*=}" ;;
        --quick) QUICK=1 ;;
        --no-kernel-peer) KPEER=0 ;;
        --build) BUILD=1 ;;
        --no-build) BUILD=0 ;;
        --save) SAVE=1 ;;
        --no-save) SAVE=0 ;;
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

if [ -n "$SUMMARY" ]; then
    command -v python3 >/dev/null || die "python3 is missing"
    t="$(mktemp /tmp/vswitch-soak-py.XXXXXX)"
    write_py "$t"
    rc=0
    python3 "$t" summary "$SUMMARY" || rc=$?
    rm -f "$t"
    exit "$rc"
fi

if [ "$QUICK" = 1 ]; then
    : "${SOAK_TIME:=60}" "${INTERVAL:=5}"
else
    : "${SOAK_TIME:=600}" "${INTERVAL:=10}"
fi
num_opt --time "$SOAK_TIME"
num_opt --interval "$INTERVAL"
num_opt --tcp-seconds "$TCP_S"
num_opt --curls "$CURLS"
num_opt --udps "$UDPS"
num_opt --macs "$MACS"
[[ "$RATE" =~ ^[0-9]+[KMG]?$ ]] || die "--rate must look like 500M, 1G or 0, not '$RATE'"
[ "$SOAK_TIME" -ge 20 ] || die "--time $SOAK_TIME: at least 20 s"
[ "$INTERVAL" -le $((SOAK_TIME / 4)) ] || die "--interval $INTERVAL: at most a quarter of --time"
[ -n "$SAVE" ] || SAVE=$((1 - QUICK))

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): sudo bash benches/soak.sh"

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
VSWITCHD="$ROOT/target/release/vswitchd"
VSCTL="$ROOT/target/release/vsctl"
BUILD_SECS=0
if [ "$BUILD" = auto ]; then
    BUILD=0
    { [ -x "$VSWITCHD" ] && [ -x "$VSCTL" ]; } || BUILD=1
fi
build_release # (common.sh) cargo build --workspace --release when BUILD=1; checks the binaries
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
TMP="$(mktemp -d /tmp/vswitch-soak.XXXXXX)"
SD="$TMP/soak"
mkdir -p "$SD" "$TMP/bin" "$TMP/www"
bench_state
# --keep DIR: the raw files are copied out before the cleanup removes the temp dir.
soak_exit() {
    local rc=$?
    set +e
    if [ -n "$KEEP" ] && [ -d "$SD" ]; then
        mkdir -p "$KEEP" && cp -r "$SD/." "$KEEP/" && cp -r "$TMP"/vsw-* "$KEEP/" 2>/dev/null
    fi
    (exit "$rc")
    cleanup
}
trap soak_exit EXIT
SOAKPY="$TMP/soak.py"
write_py "$SOAKPY"
soak_py() { "$PY" "$SOAKPY" "$@"; }
echo "vswitch soak" >"$TMP/www/index.html"
: >"$SD/pings.tsv"
: >"$SD/checks.jsonl"

# What runs, copied now: others may rebuild target/release while the soak runs.
cp "$VSWITCHD" "$VSCTL" "$TMP/bin/"
VSWITCHD="$TMP/bin/vswitchd"
VSCTL="$TMP/bin/vsctl"
BENCH_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
BENCH_DIRTY=false
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no -- vswitch ctl vxlan nat Cargo.toml Cargo.lock 2>/dev/null)" ] || BENCH_DIRTY=true
BENCH_VSWITCHD_BIN="built $(date -u -d "@$(stat -c %Y "$ROOT/target/release/vswitchd")" +%Y-%m-%dT%H:%M:%SZ), sha256 $(sha256sum "$VSWITCHD" | cut -c1-16)"

now() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
check() { # PHASE OK(0/1) WHAT [DETAIL]
    local ok=false detail="${4:-}"
    [ "$2" = 1 ] && ok=true
    printf '{"phase":"%s","ok":%s,"check":"%s","detail":"%s"}\n' "$1" "$ok" "$3" "${detail//\"/\'}" >>"$SD/checks.jsonl"
    if [ "$2" = 1 ]; then info "ok: $3${detail:+ ($detail)}"; else info "FAILED: $3${detail:+ ($detail)}"; fi
}

# ---- namespaces and links --------------------------------------------------------------------
host_link() { # SWITCH_NS IFACE HOST_NS IP [MTU]: veth IFACE (switch side) <-> eth0 (host side)
    local mtu="${5:-1500}"
    ip -n "$1" link add "$2" mtu "$mtu" type veth peer name eth0 mtu "$mtu" netns "$3"
    ip -n "$1" link set "$2" up
    ip -n "$3" addr add "$4/24" dev eth0
    ip -n "$3" link set eth0 up
}

net_up() {
    local ns
    for ns in "$NS_A" "$NS_B" "$WAN" "$H1" "$H2" "$H3" "$V1" "$V2" "$V3" "$V4" "$CA" "$CB" "$N1" "$N2"; do
        mkns "$ns"
    done
    [ "$KPEER" = 0 ] || mkns "$NS_K"
    # L2: two afpacket hosts (the TAP host h3 gets its interface from vswitchd later)
    host_link "$NS_A" h1p "$H1" "$L2NET.1"
    host_link "$NS_A" h2p "$H2" "$L2NET.2"
    # VLAN: access hosts on A and B, a trunk between them
    host_link "$NS_A" v1p "$V1" "$VLNET.1"
    host_link "$NS_A" v2p "$V2" "$VLNET.2"
    host_link "$NS_B" v3p "$V3" "$VLNET.3"
    host_link "$NS_B" v4p "$V4" "$VLNET.4"
    ip -n "$NS_A" link add trk type veth peer name trk netns "$NS_B"
    ip -n "$NS_A" link set trk up
    ip -n "$NS_B" link set trk up
    # VXLAN: containers (MTU 1450) and the underlay(s)
    host_link "$NS_A" ctr "$CA" "$OVNET.1" 1450
    host_link "$NS_B" ctr "$CB" "$OVNET.2" 1450
    ip -n "$NS_A" link add ul type veth peer name ul netns "$NS_B"
    ip -n "$NS_A" addr add "$UL_A/28" dev ul
    ip -n "$NS_B" addr add "$UL_B/28" dev ul
    ip -n "$NS_A" link set ul up
    ip -n "$NS_B" link set ul up
    if [ "$KPEER" = 1 ]; then
        ip -n "$NS_A" link add ulk type veth peer name ulk netns "$NS_K"
        ip -n "$NS_A" addr add "$ULK_A/28" dev ulk
        ip -n "$NS_K" addr add "$ULK_K/28" dev ulk
        ip -n "$NS_A" link set ulk up
        ip -n "$NS_K" link set ulk up
        ip -n "$NS_K" link add vx0 type vxlan id "$VNI" remote "$ULK_A" local "$ULK_K" dstport 4789 dev ulk ||
            die "cannot create a kernel vxlan device (no CONFIG_VXLAN?): run with --no-kernel-peer"
        ip -n "$NS_K" addr add "$OVNET.3/24" dev vx0
        ip -n "$NS_K" link set vx0 up
    fi
    # NAT: two containers behind B's gateway, wan behind B's uplink
    host_link "$NS_B" n1p "$N1" "$IP_N1"
    host_link "$NS_B" n2p "$N2" "$IP_N2"
    ip -n "$N1" route add default via "$NAT_GW"
    ip -n "$N2" route add default via "$NAT_GW"
    ip -n "$NS_B" link add up0 type veth peer name eth0 netns "$WAN"
    ip -n "$NS_B" link set up0 up
    ip -n "$WAN" addr add "$IP_WAN/26" dev eth0
    ip -n "$WAN" link set eth0 up
    timeout 10 ip netns exec "$NS_A" ping -n -q -c 1 -W 2 "$UL_B" >/dev/null ||
        die "the underlay does not work: A ($UL_A) cannot ping B ($UL_B)"
}

# ---- vswitchd --------------------------------------------------------------------------------
declare -A VSW_SOCK=() VSW_PID=()
vsctl_at() { # NAME ARGS... (output shown on failure)
    local name="$1" out
    shift
    out="$(timeout 10 "$VSCTL" --sock "${VSW_SOCK[$name]}" "$@" 2>&1)" || die "vswitchd $name: vsctl $* failed: $out"
    printf '%s' "$out"
}
vsw_start() { # NAME NS
    local d="$TMP/vsw-$1" pid
    mkdir -p "$d"
    LOGS+=("$d/vswitchd.log")
    ip netns exec "$2" "$VSWITCHD" --sock "$d/vswitchd.sock" --db "$d/conf.json" "${VSW_ARGS[@]}" 2>"$d/vswitchd.log" &
    pid=$!
    PIDS+=("$pid")
    VSW_SOCK[$1]="$d/vswitchd.sock"
    VSW_PID[$1]="$pid"
    wait_for 100 "$VSCTL" --sock "$d/vswitchd.sock" show || die "vswitchd $1 does not answer on $d/vswitchd.sock"
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = vswitchd ] || die "pid $pid is not vswitchd"
}
vsw_up() { # NAME: every port and the uplink up
    wait_for 100 sh -c "! timeout 10 '$VSCTL' --sock '${VSW_SOCK[$1]}' show | grep -q ' down'" ||
        die "vswitchd $1: a port is not up: $(vsctl_at "$1" show)"
}

vsw_config() {
    local remotes=(--remote "$UL_B")
    [ "$KPEER" = 0 ] || remotes+=(--remote "$ULK_K")
    vsw_start A "$NS_A"
    vsctl_at A add-br l2 >/dev/null
    vsctl_at A set-aging l2 30 >/dev/null
    vsctl_at A add-port l2 h1p >/dev/null
    vsctl_at A add-port l2 h2p >/dev/null
    vsctl_at A add-port l2 tap3 --type tap >/dev/null
    wait_for 100 ip -n "$NS_A" link show tap3 || die "vswitchd A did not create TAP tap3"
    ip -n "$NS_A" link set tap3 netns "$H3"
    ip -n "$H3" addr add "$L2NET.3/24" dev tap3
    ip -n "$H3" link set tap3 up
    vsctl_at A add-br vl >/dev/null
    vsctl_at A add-port vl v1p >/dev/null
    vsctl_at A add-port vl v2p >/dev/null
    vsctl_at A add-port vl trk >/dev/null
    vsctl_at A add-vlan vl v1p 10 --access >/dev/null
    vsctl_at A add-vlan vl v2p 20 --access >/dev/null
    vsctl_at A add-vlan vl trk 10,20 >/dev/null
    vsctl_at A add-br ov >/dev/null
    vsctl_at A add-port ov ctr >/dev/null
    vsctl_at A add-tunnel ov vx --vni "$VNI" "${remotes[@]}" >/dev/null
    vsw_up A

    vsw_start B "$NS_B"
    vsctl_at B add-br vl >/dev/null
    vsctl_at B add-port vl v3p >/dev/null
    vsctl_at B add-port vl v4p >/dev/null
    vsctl_at B add-port vl trk >/dev/null
    vsctl_at B add-vlan vl v3p 10 --access >/dev/null
    vsctl_at B add-vlan vl v4p 20 --access >/dev/null
    vsctl_at B add-vlan vl trk 10,20 >/dev/null
    vsctl_at B add-br ov >/dev/null
    vsctl_at B add-port ov ctr >/dev/null
    vsctl_at B add-tunnel ov vx --vni "$VNI" --remote "$UL_A" >/dev/null
    vsctl_at B add-br nat >/dev/null
    vsctl_at B add-net nat "$NAT_SUBNET" --gateway "$NAT_GW" >/dev/null
    vsctl_at B add-port nat n1p >/dev/null
    vsctl_at B add-port nat n2p >/dev/null
    vsctl_at B set-uplink up0 --ip "$IP_UP/26" --gw "$IP_WAN" >/dev/null
    vsctl_at B publish tcp 8080 "$IP_N1:80" >/dev/null
    vsctl_at B publish tcp 5201 "$IP_N1:5201" >/dev/null
    vsctl_at B publish udp 5353 "$IP_N1:5353" >/dev/null
    vsw_up B
    local n
    for n in A B; do
        info "vswitchd $n (pid ${VSW_PID[$n]}):"
        vsctl_at "$n" show | sed 's/^/        /'
        echo
    done
}

# ---- servers ---------------------------------------------------------------------------------
spawn() { # LOG CMD...: a background process we own
    local log="$1"
    shift
    "$@" >"$log" 2>&1 &
    PIDS+=("$!")
}
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
        wait_for 100 sh -c "ip netns exec '$ns' ss -Hltn 'sport = :5201' | grep -q ." ||
            die "iperf3 server in $ns did not start"
    done
    wait_for 100 sh -c "ip netns exec '$WAN' ss -Hltn 'sport = :80' | grep -q ." || die "http server in wan did not start"
    wait_for 100 sh -c "ip netns exec '$N1' ss -Hltn 'sport = :80' | grep -q ." || die "http server in n1 did not start"
    wait_for 100 sh -c "ip netns exec '$N1' ss -Hlun 'sport = :5353' | grep -q ." || die "udp echo in n1 did not start"
    wait_for 100 sh -c "ip netns exec '$WAN' ss -Hlun 'sport = :5353' | grep -q ." || die "udp echo in wan did not start"
}

# ---- checks ----------------------------------------------------------------------------------
reach() { # NS IP: 40 tries
    local i
    for i in $(seq 40); do
        timeout 5 ip netns exec "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    return 1
}
unreach() { # NS IP: no reply to 3 pings
    ! timeout 10 ip netns exec "$1" ping -n -q -c 3 -i 0.3 -W 1 "$2" >/dev/null 2>&1
}
http_from() { # CLIENT_NS URL SERVER_LOG: the client address the server logged for this request
    local tag="soak-check-$RANDOM$RANDOM"
    timeout 10 ip netns exec "$1" curl -s --http1.0 -o /dev/null -w '%{http_code}' --max-time 5 "$2?$tag" | grep -q 200 || return 1
    sleep 0.2
    grep "$tag" "$3" | tail -n 1 | awk '{ print $1 }'
}
checks() { # PHASE
    local ph="$1" pair ns ip seen ok r
    for pair in "$H1 $L2NET.2 l2 h1->h2" "$H1 $L2NET.3 l2 h1->h3(tap)" "$H2 $L2NET.3 l2 h2->h3(tap)" \
        "$V1 $VLNET.3 vlan10 v1->v3 (trunk)" "$V2 $VLNET.4 vlan20 v2->v4 (trunk)" \
        "$CA $OVNET.2 vxlan cA->cB" "$N1 $IP_WAN nat n1->wan" "$N2 $IP_WAN nat n2->wan"; do
        read -r ns ip r <<<"$pair"
        ok=0
        reach "$ns" "$ip" && ok=1
        check "$ph" "$ok" "ping $r"
    done
    if [ "$KPEER" = 1 ]; then
        ok=0
        reach "$CA" "$OVNET.3" && ok=1
        check "$ph" "$ok" "ping vxlan cA->K (kernel vxlan)"
    fi
    for pair in "$V1 $VLNET.2 v1(vlan10)->v2(vlan20)" "$V1 $VLNET.4 v1(vlan10)->v4(vlan20)" "$V3 $VLNET.2 v3(vlan10)->v2(vlan20)"; do
        read -r ns ip r <<<"$pair"
        ok=0
        unreach "$ns" "$ip" && ok=1
        check "$ph" "$ok" "vlan isolation: no ping $r"
    done
    seen="$(http_from "$N2" "http://$IP_WAN/" "$SD/http-wan.log" || true)"
    ok=0
    [ "$seen" = "$IP_UP" ] && ok=1
    check "$ph" "$ok" "nat masquerade: wan sees n2's connection from $IP_UP" "seen '${seen:-no answer}'"
    seen="$(http_from "$WAN" "http://$IP_UP:8080/" "$SD/http-n1.log" || true)"
    ok=0
    [ "$seen" = "$IP_WAN" ] && ok=1
    check "$ph" "$ok" "nat published tcp 8080: n1 sees wan's connection from $IP_WAN" "seen '${seen:-no answer}'"
    seen="$(http_from "$N2" "http://$IP_UP:8080/" "$SD/http-n1.log" || true)"
    ok=0
    [ "$seen" = "$NAT_GW" ] && ok=1
    check "$ph" "$ok" "nat hairpin: n2 -> $IP_UP:8080 reaches n1 from $NAT_GW" "seen '${seen:-no answer}'"
    read -r r _ < <(timeout 10 ip netns exec "$N2" "$PY" "$SOAKPY" udp-churn "$IP_WAN" 5353 3 || echo 0 3)
    ok=0
    [ "${r:-0}" -ge 1 ] && ok=1
    check "$ph" "$ok" "nat udp out: n2 -> wan:5353 echoed" "$r/3"
    read -r r _ < <(timeout 10 ip netns exec "$WAN" "$PY" "$SOAKPY" udp-churn "$IP_UP" 5353 3 || echo 0 3)
    ok=0
    [ "${r:-0}" -ge 1 ] && ok=1
    check "$ph" "$ok" "nat published udp 5353: wan -> $IP_UP:5353 echoed by n1" "$r/3"
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
        timeout 10 "$VSCTL" --sock "${VSW_SOCK[$n]}" --json stats >"$SD/stats-$n-cur.json" 2>/dev/null || : >"$SD/stats-$n-cur.json"
        args+=("$n" "${VSW_PID[$n]}" "$SD/stats-$n-cur.json")
    done
    [ "$2" != samples ] || loops="$SD"
    soak_py sample "$t" "$at" "$SD/$2.jsonl" "$loops" "${args[@]}"
}

# ---- run -------------------------------------------------------------------------------------
UPTIME_START="$(uptime)"
LOAD_START="$(loadavg)"
say "soak through every feature: ${SOAK_TIME}s of traffic, a sample every ${INTERVAL}s; namespaces $P-*"
info "uptime at start: $UPTIME_START"
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l >= 0.5) }'; then
    info "note: the machine is busy (load $LOAD_START): fine for an RSS growth measurement, not for throughput"
fi
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
    info "vswitchd $n idle before the traffic: $(awk '/^VmRSS/ { printf "VmRSS %.2f MiB", $2 / 1024 }' "/proc/${VSW_PID[$n]}/status")"
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
        for n in A B; do pid_alive "${VSW_PID[$n]}" || DIED="$DIED $n"; done
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
    if pid_alive "${VSW_PID[$n]}"; then
        timeout 10 "$VSCTL" --sock "${VSW_SOCK[$n]}" --json stats >"$SD/stats-final-$n.json" 2>/dev/null || true
    fi
done
if [ -z "$DIED" ]; then
    run_wait sleep 3
    sample "$(awk -v a="$SOAK_T0" -v n="$(now)" 'BEGIN { printf "%.1f", n - a }')" after || true
    checks end
fi
UPTIME_END="$(uptime)"

# ---- report ----------------------------------------------------------------------------------
export BENCH_DATE BENCH_CPUS BENCH_CPU_MODEL BENCH_KERNEL BENCH_MEM_MIB BENCH_UPTIME_START \
    BENCH_UPTIME_END BENCH_LOAD_START BENCH_LOAD_END BENCH_COMMIT BENCH_DIRTY BENCH_VSWITCHD_BIN \
    BENCH_VSWITCHD_ARGS BENCH_ELAPSED BENCH_BUILD_S SOAK_TIME SOAK_INTERVAL SOAK_T0 SOAK_QUICK \
    SOAK_RATE SOAK_TCP_S SOAK_CURLS SOAK_UDPS SOAK_MACS SOAK_KPEER SOAK_PREFIX SOAK_TOPOLOGY \
    SOAK_DAEMONS SOAK_DIED_A SOAK_DIED_B
BENCH_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
BENCH_CPUS="$(nproc)"
BENCH_CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
BENCH_KERNEL="$(uname -r)"
BENCH_MEM_MIB="$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo)"
BENCH_UPTIME_START="$UPTIME_START"
BENCH_UPTIME_END="$UPTIME_END"
BENCH_LOAD_START="$LOAD_START"
BENCH_LOAD_END="$(loadavg)"
BENCH_VSWITCHD_ARGS="$VSW_EXTRA"
BENCH_ELAPSED=$(($(date +%s) - START_SECS))
BENCH_BUILD_S="$BUILD_SECS"
SOAK_INTERVAL="$INTERVAL"
SOAK_QUICK="$QUICK"
SOAK_RATE="$RATE"
SOAK_TCP_S="$TCP_S"
SOAK_CURLS="$CURLS"
SOAK_UDPS="$UDPS"
SOAK_MACS="$MACS"
SOAK_KPEER="$KPEER"
SOAK_PREFIX="$P"
SOAK_DIED_A=0 SOAK_DIED_B=0
[[ "$DIED" != *A* ]] || SOAK_DIED_A=1
[[ "$DIED" != *B* ]] || SOAK_DIED_B=1
SOAK_DAEMONS="{\"A\":{\"pid\":${VSW_PID[A]},\"role\":\"l2 (h1p, h2p afpacket, tap3 TAP), vl (access 10/20, trunk to B), ov (VXLAN to B$([ "$KPEER" = 0 ] || echo ' and the kernel peer K'))\"},\"B\":{\"pid\":${VSW_PID[B]},\"role\":\"vl (access 10/20, trunk to A), ov (VXLAN to A), nat (add-net, uplink, 3 published ports)\"}}"
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
echo "run time: ${BENCH_ELAPSED}s (of which cargo build ${BUILD_SECS}s) on $BENCH_CPUS cores ($BENCH_CPU_MODEL)"
echo "uptime at start: $UPTIME_START"
echo "uptime at end:   $UPTIME_END"
[ -z "$DIED" ] || rc=1
exit "$rc"
