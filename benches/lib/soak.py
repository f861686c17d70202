#!/usr/bin/env python3
"""benches/soak.sh's helpers. For the traffic, run inside the namespaces: udp-echo HOST PORT,
udp-churn HOST PORT N, mac-churn IFACE N. For the samples: sample T AT OUT LOOPS NAME PID
STATS... (one JSON line and one printed line; exit 3 if a vswitchd is gone). For the result:
report DIR OUT (build it from DIR and the BENCH_*/SOAK_* environment, write OUT, print it; exit
1 on FAIL), summary FILE or table FILE (print a saved result again). soak.sh copies this file and benchlib.py
into its temp dir at the start."""
import json
import os
import random
import re
import socket
import statistics
import struct
import sys

sys.dont_write_bytecode = True  # importing benchlib leaves no __pycache__ in benches/lib
from benchlib import (iperf_result, load, percentile, pick, ping_times,  # noqa: E402
                      read_jsonl, result)


def read_lines(path):
    return read_jsonl(path, strict=False)


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
        rows = read_lines(os.path.join(sd, f"loop-{f}.jsonl"))
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
    replies, sent = ping_times(path, stamped=True)
    stamps = [r[0] for r in replies]
    times = [r[2] for r in replies]
    answered = {r[1] for r in replies}
    maxseq = max(answered, default=0)
    pending = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"\[([0-9.]+)\] no answer yet for icmp_seq=(\d+)", line)
                if m:
                    pending.setdefault(int(m.group(2)), float(m.group(1)))
                    maxseq = max(maxseq, int(m.group(2)))
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


def warmup_s(seconds):
    return min(max(0.2 * seconds, 60.0), seconds / 2.0)


def build(sd):
    e = os.environ
    seconds = float(e["SOAK_TIME"])
    interval = float(e["SOAK_INTERVAL"])
    t0 = float(e["SOAK_T0"])
    warm = warmup_s(seconds)
    limit = 5.0
    samples = read_lines(os.path.join(sd, "samples.jsonl"))
    idle = read_lines(os.path.join(sd, "idle.jsonl"))
    after = read_lines(os.path.join(sd, "after.jsonl"))
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
        rows = read_lines(os.path.join(sd, f"loop-{f}.jsonl"))
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
    checks = read_lines(os.path.join(sd, "checks.jsonl"))
    for c in checks:
        if not c["ok"]:
            verdict_reasons.append(f"check failed ({c['phase']}): {c['check']}")
    verdict = "PASS" if not verdict_reasons else "FAIL"
    machine = pick("cpus", "cpu_model", "kernel", "mem_mib", "uptime_start", "uptime_end",
                   "loadavg_start", "loadavg_end",
                   ("loadavg_samples", [[s["t"], s["loadavg"][0]] for s in samples]))
    body = {
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
    }
    res = result(("benchmark", "soak-all"), machine, body)
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
    print(render(load(path)))


if __name__ == "__main__":
    cmds = {"udp-echo": udp_echo, "udp-churn": udp_churn, "mac-churn": mac_churn,
            "sample": cmd_sample, "report": cmd_report, "summary": cmd_summary,
            "table": cmd_summary}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit("soak.py: unknown subcommand")
    cmds[sys.argv[1]](*sys.argv[2:])
