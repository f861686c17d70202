#!/usr/bin/env python3
"""Helpers of benches/run.sh: parse tool outputs, aggregate raw samples, print the table
(the parsers and the table renderer are benchlib's, shared with the other bench scripts).

Subcommands (all print to stdout):
  iperf FILE                      "Gbit/s-received retransmits" from `iperf3 -J` output
  ping FILE                       "p50 p99 replies sent" (ms) from `ping -n` per-reply lines
  trafgen FILE                    packets trafgen reports as sent ("N packets outgoing")
  mac NS_JSON                     MAC address from `ip -j link show dev IF`
  meta OUT                        run metadata from the BENCH_* environment variables
  report RAW META OUT [--latest F] [--markdown F]
                                  aggregate RAW (JSON lines) into OUT, print the table
  table FILE [--markdown]         print the table of a saved results file
  soak-report DIR OUT             build a soak result (run.sh --soak) from DIR's samples,
                                  load phases, pings and vsctl stats plus the BENCH_*/SOAK_*
                                  environment; write OUT, print the summary
  soak-table FILE [--markdown]    print the summary of a saved soak result
  series FILE...                  issue 20's ratios in each saved run (vswitchd-afpacket's
                                  median over the bridge's, or OVS's for 64-byte UDP) and
                                  their median over the runs
"""

import json
import os
import re
import statistics
import sys

sys.dont_write_bytecode = True  # importing benchlib leaves no __pycache__ in benches/lib
from benchlib import (cmd_iperf, cmd_mac, cmd_ping, die, load, percentile, pick,  # noqa: E402
                      ping_times, read_jsonl, read_raw, render_table, result, write_json)

SETUPS = [
    ("bridge", "bridge"),
    ("ovs", "OVS"),
    ("vswitchd-afpacket", "vsw afpacket"),
    ("vswitchd-tap", "vsw tap"),
    ("vswitchd-afxdp", "vsw afxdp"),
]

# metric key, label, unit scale/format, higher_is_better
METRICS = [
    ("tcp1_gbps", "TCP 1 stream (Gbit/s)", "{:.2f}"),
    ("tcp1_cpu_pct_per_gbps", "  switch CPU per Gbit/s (% of a core)", "{:.1f}"),
    ("tcp4_gbps", "TCP 4 streams (Gbit/s)", "{:.2f}"),
    ("tcp4_cpu_pct_per_gbps", "  switch CPU per Gbit/s (% of a core)", "{:.1f}"),
    ("flows4_gbps", "TCP 4 host pairs at once, sum (Gbit/s)", "{:.2f}"),
    ("flows4_cpu_pct_per_gbps", "  switch CPU per Gbit/s (% of a core)", "{:.1f}"),
    ("flows8_gbps", "TCP 8 host pairs at once, sum (Gbit/s)", "{:.2f}"),
    ("flows8_cpu_pct_per_gbps", "  switch CPU per Gbit/s (% of a core)", "{:.1f}"),
    ("udp64_delivered_kpps", "UDP 64 B delivered to h2 (kpps)", "{:.0f}"),
    ("udp64_cpu_pct_per_mpps", "  switch CPU per Mpps (% of a core)", "{:.0f}"),
    ("udp64_offered_kpps", "UDP 64 B offered by h1 (kpps)", "{:.0f}"),
    ("ping_p50_ms", "ping RTT p50 (ms)", "{:.3f}"),
    ("ping_p99_ms", "ping RTT p99 (ms)", "{:.3f}"),
    ("start_rss_mb", "switch RSS at start (MiB)", "{:.1f}"),
    ("idle_rss_mb", "switch RSS idle, ports up (MiB)", "{:.1f}"),
    ("peak_rss_mb", "switch peak RSS, VmHWM (MiB)", "{:.1f}"),
]

RATIOS = [
    ("vswitchd-afpacket", "ovs", "afp/OVS"),
    ("vswitchd-afpacket", "bridge", "afp/bridge"),
    ("vswitchd-tap", "ovs", "tap/OVS"),
    ("vswitchd-tap", "bridge", "tap/bridge"),
    ("vswitchd-afxdp", "vswitchd-afpacket", "xdp/afp"),
    ("vswitchd-afxdp", "bridge", "xdp/bridge"),
]


def cmd_trafgen(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = re.search(r"(\d+)\s+packets outgoing", text)
    if not m:
        die(f"no 'packets outgoing' line in trafgen output {path}")
    print(m.group(1))


def num(key, e=os.environ):
    v = e[key]
    return float(v) if "." in v else int(v)


def cmd_meta(out_path):
    machine = pick("cpus", "cpu_model", "kernel", "mem_mib", "loadavg_start", "loadavg_end")
    body = {
        "vswitchd_args": os.environ["BENCH_VSWITCHD_ARGS"],
        "options": {
            "quick": os.environ["BENCH_QUICK"] == "1",
            "setups": os.environ["BENCH_SETUPS"].split(),
            "tcp_seconds": num("BENCH_TCP_SECS"),
            "tcp_repeats": num("BENCH_R_TCP"),
            "pings": num("BENCH_PINGS"),
            "ping_interval_s": num("BENCH_PING_INTERVAL"),
            "ping_repeats": num("BENCH_R_SHORT"),
            "udp_seconds": num("BENCH_UDP_SECS"),
            "udp_warmup_s": num("BENCH_UDP_WARMUP"),
            "udp_repeats": num("BENCH_R_SHORT"),
            "udp_frame_bytes": 64,
            "udp_generator_processes": num("BENCH_UDP_PROCS"),
        },
        "tools": {"iperf3": os.environ["BENCH_IPERF3"], "trafgen": os.environ["BENCH_TRAFGEN"]},
    }
    write_json(out_path, json.dumps(result(None, machine, body)))


def fmt(metric, value):
    if value is None:
        return "-"
    for key, _, f in METRICS:
        if key == metric:
            return f.format(value)
    return f"{value}"


def render(results, markdown):
    med = {s: results["setups"].get(s, {}).get("median", {}) for s, _ in SETUPS}
    header = ["metric"] + [label for _, label in SETUPS] + [r[2] for r in RATIOS]
    rows = []
    for key, label, _ in METRICS:
        row = [label]
        for s, _ in SETUPS:
            row.append(fmt(key, med[s].get(key)))
        for a, b, _ in RATIOS:
            va, vb = med[a].get(key), med[b].get(key)
            row.append(f"{va / vb:.2f}" if va is not None and vb else "-")
        rows.append(row)
    return render_table(header, rows, markdown)


def cmd_report(raw_path, meta_path, out_path, latest=None, markdown_path=None):
    meta = load(meta_path)
    samples, details = read_raw(raw_path)
    setups = {}
    for s, _ in SETUPS:
        if s not in samples and s not in details:
            continue
        entry = {"samples": samples.get(s, {}), "median": {}}
        for metric, values in samples.get(s, {}).items():
            entry["median"][metric] = statistics.median(values)
        if s in details:
            entry["details"] = details[s]
        setups[s] = entry
    results = dict(meta)
    results["setups"] = setups
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    for path in [out_path] + ([latest] if latest else []):
        write_json(path, text)
    print(render(results, markdown=False))
    if markdown_path:
        write_json(markdown_path, render(results, markdown=True) + "\n")


def cmd_table(path, markdown):
    print(render(load(path), markdown))


# Issue 20's targets, as (label, metric, baseline setup): the ratio is the run's median of
# vswitchd-afpacket over the baseline's median of the same metric.
SERIES = [
    ("TCP 1 stream / bridge", "tcp1_gbps", "bridge"),
    ("4 host pairs / bridge", "flows4_gbps", "bridge"),
    ("8 host pairs / bridge", "flows8_gbps", "bridge"),
    ("64-byte UDP delivered / OVS", "udp64_delivered_kpps", "ovs"),
    ("ping p50 / bridge", "ping_p50_ms", "bridge"),
]


def cmd_series(paths):
    """Each run's ratios, then the median, lowest and highest of each over the runs that
    have it: what README's "over all runs" figures are."""
    per = {label: [] for label, _, _ in SERIES}
    print("run              " + "  ".join(f"{label:>27}" for label, _, _ in SERIES))
    for path in paths:
        setups = load(path).get("setups", {})
        ours = setups.get("vswitchd-afpacket", {}).get("median", {})
        cells = []
        for label, metric, base in SERIES:
            theirs = setups.get(base, {}).get("median", {})
            a, b = ours.get(metric), theirs.get(metric)
            if a is None or not b:
                cells.append(f"{'-':>27}")
                continue
            r = a / b
            per[label].append(r)
            cells.append(f"{r:>27.2f}")
        print(f"{os.path.basename(path)[:16]:<17}" + "  ".join(cells))
    for label, _, _ in SERIES:
        xs = per[label]
        if xs:
            print(f"{label}: median {statistics.median(xs):.2f} over {len(xs)} runs "
                  f"({min(xs):.2f}-{max(xs):.2f})")


# ---- soak (run.sh --soak) ------------------------------------------------------------------

GROWTH_LIMIT_PCT = 5.0


def soak_warmup_s(seconds, every):
    """The warm-up window: the first 60 s, or the first 20% of runs shorter than 300 s, but at
    least one sample interval (so that it holds a sample under load, not only the idle one)."""
    return 60.0 if seconds >= 300 else max(0.2 * seconds, float(every))


def soak_ping(path, t0):
    """Replies, sent, p50/p99 RTT and the longest stretch without a reply from `ping -D`."""
    replies, sent = ping_times(path, stamped=True)
    stamps, times = [r[0] for r in replies], [r[2] for r in replies]
    res = {"sent": sent, "replies": len(times)}
    if times:
        gaps = [b - a for a, b in zip([t0] + stamps, stamps)]
        res.update(
            p50_ms=percentile(times, 50),
            p99_ms=percentile(times, 99),
            max_ms=max(times),
            longest_without_reply_s=round(max(gaps), 3),
        )
    return res


def soak_phase(d, t0, directory):
    """One load phase of load.jsonl, with its iperf3 result and counter rates."""
    dur = d["end"] - d["start"]
    p = {
        "n": d["n"],
        "phase": d["phase"],
        "seconds": d["seconds"],
        "start_s": round(d["start"] - t0, 3),
        "end_s": round(d["end"] - t0, 3),
    }
    if d["phase"] in ("tcp", "mixed"):
        p["iperf3_rc"] = d["iperf3_rc"]
        path = os.path.join(directory, f"phase-{d['n']}.iperf.json")
        try:
            with open(path, encoding="utf-8") as f:
                j = json.load(f)
            if "error" in j:
                p["iperf3_error"] = j["error"]
            else:
                p["tcp_gbps"] = round(j["end"]["sum_received"]["bits_per_second"] / 1e9, 4)
                p["tcp_retransmits"] = j["end"].get("sum_sent", {}).get("retransmits", 0)
        except (OSError, ValueError, KeyError) as e:
            p["iperf3_error"] = f"unreadable result: {e.__class__.__name__}"
    if d["phase"] in ("udp", "mixed"):
        # timeout's 124: trafgen ran until it was stopped, as intended
        p["trafgen_rc"] = d["trafgen_rc"]
    c0, c1 = d["counters_before"], d["counters_after"]
    if dur > 0 and None not in c0 and None not in c1:
        p["h1_offered_kpps"] = round((c1[0] - c0[0] + c1[1] - c0[1]) / dur / 1000, 1)
        p["h2_rx_kpps"] = round((c1[2] - c0[2]) / dur / 1000, 1)
        p["h2_rx_gbps"] = round((c1[3] - c0[3]) * 8 / dur / 1e9, 4)
    return p


def mean(xs):
    return round(sum(xs) / len(xs), 4) if xs else None


def cmd_soak_report(directory, out_path):
    e = os.environ
    seconds = int(e["SOAK"])
    t0 = float(e["SOAK_T0"])
    warmup = soak_warmup_s(seconds, num("SOAK_EVERY"))

    series = []
    prev = None
    for s in read_jsonl(os.path.join(directory, "samples.jsonl")):
        c = s["counters"]
        row = {
            "t": s["t"],
            "rss_kib": s["VmRSS"],
            "hwm_kib": s["VmHWM"],
            "rss_anon_kib": s.get("RssAnon"),
            "rss_file_kib": s.get("RssFile"),
            "rss_shmem_kib": s.get("RssShmem"),
            "threads": s.get("Threads"),
            "h1_tx_packets": c[0],
            "h1_tx_dropped": c[1],
            "h2_rx_packets": c[2],
            "h2_rx_bytes": c[3],
        }
        if prev is not None and None not in c and None not in prev["counters"]:
            dt = s["at"] - prev["at"]
            if dt > 0:
                row["h2_rx_kpps"] = round((c[2] - prev["counters"][2]) / dt / 1000, 1)
                row["h2_rx_gbps"] = round((c[3] - prev["counters"][3]) * 8 / dt / 1e9, 4)
        series.append(row)
        prev = s
    if not series:
        die(f"soak-report: no samples in {directory}")

    def mib(kib):
        return round(kib / 1024, 3) if kib is not None else None

    warm = [r for r in series if r["t"] <= warmup]
    after = [r for r in series if r["t"] > warmup]
    level = max(r["rss_kib"] for r in warm)
    rss = {
        "start": mib(int(e["SOAK_START_KIB"])),
        "idle_ports_up": mib(int(e["SOAK_IDLE_KIB"])),
        "warmup_level": mib(level),
        "final": mib(series[-1]["rss_kib"]),
        "max_after_warmup": None,
        "max_after_warmup_t": None,
        "min_after_warmup": None,
        "end_after_load": mib(int(e["SOAK_END_KIB"])),
        "peak_hwm": mib(int(e["SOAK_HWM_KIB"])),
    }
    growth = None
    if after:
        top = max(after, key=lambda r: r["rss_kib"])
        rss["max_after_warmup"] = mib(top["rss_kib"])
        rss["max_after_warmup_t"] = top["t"]
        rss["min_after_warmup"] = mib(min(r["rss_kib"] for r in after))
        growth = round((top["rss_kib"] - level) / level * 100, 2)

    phases = [soak_phase(d, t0, directory) for d in read_jsonl(os.path.join(directory, "load.jsonl"))]
    phases.sort(key=lambda p: p["start_s"])
    gaps = []
    edge = 0.0
    for p in phases:
        gaps.append(p["start_s"] - edge)
        edge = max(edge, p["end_s"])
    tail = seconds - edge  # > 0: the load ended before the last sample
    if tail > 0:
        gaps.append(tail)
    tcp = [p for p in phases if p["phase"] == "tcp"]
    udp = [p for p in phases if p["phase"] == "udp"]
    mixed = [p for p in phases if p["phase"] == "mixed"]
    intervals = [r for r in series if "h2_rx_kpps" in r]
    load = {
        "phases": phases,
        "summary": {
            "phases": len(phases),
            "tcp_runs": len(tcp) + len(mixed),
            "tcp_runs_failed": sum(1 for p in tcp + mixed if "tcp_gbps" not in p),
            "tcp_alone_gbps_mean": mean([p["tcp_gbps"] for p in tcp if "tcp_gbps" in p]),
            "tcp_alone_gbps_min": min([p["tcp_gbps"] for p in tcp if "tcp_gbps" in p], default=None),
            "tcp_retransmits": sum(p.get("tcp_retransmits", 0) for p in tcp + mixed),
            "udp_alone_offered_kpps_mean": mean([p["h1_offered_kpps"] for p in udp if "h1_offered_kpps" in p]),
            "udp_alone_delivered_kpps_mean": mean([p["h2_rx_kpps"] for p in udp if "h2_rx_kpps" in p]),
            "mixed_tcp_gbps_mean": mean([p["tcp_gbps"] for p in mixed if "tcp_gbps" in p]),
            "mixed_h2_rx_kpps_mean": mean([p["h2_rx_kpps"] for p in mixed if "h2_rx_kpps" in p]),
            "longest_pause_between_phases_s": round(max(gaps), 3) if gaps else None,
            "load_end_s": round(edge, 3),
            "min_interval_h2_rx_kpps": min((r["h2_rx_kpps"] for r in intervals), default=None),
            "min_interval_h2_rx_gbps": min((r["h2_rx_gbps"] for r in intervals), default=None),
        },
        "ping": soak_ping(os.path.join(directory, "ping.txt"), t0),
    }

    stats = None
    try:
        with open(os.path.join(directory, "stats.json"), encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        pass

    binary = e.get("BENCH_VSWITCHD_BIN", "").split()
    machine = pick("cpus", "cpu_model", "kernel", "mem_mib", "loadavg_start", "loadavg_end",
                   ("uptime_start", e["BENCH_UPTIME_START"].strip()),
                   ("uptime_end", e["BENCH_UPTIME_END"].strip()))
    body = {
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "vswitchd_binary": {
            "mtime": binary[0] if binary else None,
            "sha256_prefix": binary[1] if len(binary) > 1 else None,
        },
        "setup": "vswitchd-afpacket",
        "options": {
            "seconds": seconds,
            "sample_every_s": num("SOAK_EVERY"),
            "warmup_s": warmup,
            "warmup_rule": "first 60 s, or first 20% of runs under 300 s (at least one sample interval)",
            "growth_limit_pct": GROWTH_LIMIT_PCT,
            "cycle": [
                {"phase": "tcp", "seconds": num("SOAK_TCP_S"), "streams": num("SOAK_STREAMS")},
                {"phase": "udp", "seconds": num("SOAK_UDP_S"), "frame_bytes": 64},
                {"phase": "mixed", "seconds": num("SOAK_MIX_S"), "udp_rate": e["SOAK_MIX_RATE"]},
            ],
            "udp_generator_processes": num("BENCH_UDP_PROCS"),
            "ping_interval_s": num("SOAK_PING_INTERVAL"),
        },
        "tools": {"iperf3": e["BENCH_IPERF3"], "trafgen": e["BENCH_TRAFGEN"]},
        "rss_mib": rss,
        "growth_pct": growth,
        "verdict": None if growth is None else ("no growth" if growth <= GROWTH_LIMIT_PCT else "growth"),
        "series": series,
        "load": load,
        "vsctl_stats": stats,
    }
    res = result(("kind", "soak"), machine, body)
    write_json(out_path, json.dumps(res, indent=2) + "\n")
    print(render_soak(res, markdown=False))


def fnum(v, f):
    return "-" if v is None else f.format(v)


def soak_ports(res):
    """(bridge, port, rx, tx, drops dict) from the vsctl --json stats of the result."""
    rows = []
    for br in (res.get("vsctl_stats") or {}).get("bridges", []):
        for p in br.get("ports", []):
            rows.append((br.get("name"), p.get("name"), p.get("rx_packets"), p.get("tx_packets"), p.get("drops") or {}))
    return rows


def render_soak(res, markdown):
    o = res["options"]
    rss = res["rss_mib"]
    ls = res["load"]["summary"]
    ping = res["load"]["ping"]
    series = res["series"]
    w = o["warmup_s"]
    growth = res["growth_pct"]
    cyc = {c["phase"]: c for c in o["cycle"]}
    head = (
        f"vswitchd, afpacket ports, {o['seconds']} s at full load: cycles of iperf3 TCP -P {cyc['tcp']['streams']} "
        f"{cyc['tcp']['seconds']} s, 64-byte UDP flood {cyc['udp']['seconds']} s, "
        f"both {cyc['mixed']['seconds']} s (UDP at {cyc['mixed'].get('udp_rate', 'full rate')}), "
        f"pings every {o['ping_interval_s']} s; VmRSS every {o['sample_every_s']} s"
    )
    verdict = "-" if growth is None else f"{growth:+.2f} % -> {res['verdict']} (limit {o['growth_limit_pct']:.0f} %)"
    rows = [
        ("VmRSS at start (MiB)", fnum(rss["start"], "{:.2f}")),
        ("VmRSS idle, ports up, before load (MiB)", fnum(rss["idle_ports_up"], "{:.2f}")),
        (f"warm-up level: max VmRSS, t <= {w:g} s (MiB)", fnum(rss["warmup_level"], "{:.2f}")),
        ("max VmRSS after warm-up (MiB)",
         fnum(rss["max_after_warmup"], "{:.2f}") + (f" (t = {rss['max_after_warmup_t']} s)" if rss["max_after_warmup_t"] is not None else "")),
        ("min VmRSS after warm-up (MiB)", fnum(rss["min_after_warmup"], "{:.2f}")),
        (f"final VmRSS, t = {series[-1]['t']} s (MiB)", fnum(rss["final"], "{:.2f}")),
        ("growth after warm-up", verdict),
        ("peak VmHWM at end (MiB)", fnum(rss["peak_hwm"], "{:.2f}")),
        ("TCP alone, per run (Gbit/s)",
         f"mean {fnum(ls['tcp_alone_gbps_mean'], '{:.2f}')}, min {fnum(ls['tcp_alone_gbps_min'], '{:.2f}')}; "
         f"{ls['tcp_runs']} iperf3 runs, {ls['tcp_runs_failed']} failed, {ls['tcp_retransmits']} retransmits"),
        ("UDP 64 B alone (kpps)",
         f"offered {fnum(ls['udp_alone_offered_kpps_mean'], '{:.0f}')}, delivered {fnum(ls['udp_alone_delivered_kpps_mean'], '{:.0f}')}"),
        ("both at once",
         f"TCP {fnum(ls['mixed_tcp_gbps_mean'], '{:.2f}')} Gbit/s, h2 rx {fnum(ls['mixed_h2_rx_kpps_mean'], '{:.0f}')} kpps"),
        ("lowest 5 s rates at h2 (any interval)",
         f"{fnum(ls['min_interval_h2_rx_gbps'], '{:.2f}')} Gbit/s, {fnum(ls['min_interval_h2_rx_kpps'], '{:.0f}')} kpps"),
        ("longest pause between load phases (s)", fnum(ls["longest_pause_between_phases_s"], "{:.2f}")),
        ("pings", f"{ping['replies']}/{ping['sent']} replies, p50 {fnum(ping.get('p50_ms'), '{:.3f}')} ms, "
                  f"p99 {fnum(ping.get('p99_ms'), '{:.3f}')} ms, longest without reply {fnum(ping.get('longest_without_reply_s'), '{:.2f}')} s"),
        ("load average, start -> end", f"{res['machine']['loadavg_start']} -> {res['machine']['loadavg_end']}"),
    ]
    b = res.get("vswitchd_binary") or {}
    binary = (f"binary of {b['mtime']}, sha256 {b['sha256_prefix']}..." if b.get("sha256_prefix")
              else "binary unknown" + (" (see provenance_note)" if res.get("provenance_note") else ""))
    tree = {True: " + uncommitted changes", False: "", None: " (tree state unknown)"}[res.get("vswitch_dirty")]
    rows.append(("vswitchd", f"commit {res['vswitch_commit']}{tree}, {binary}"))
    for br, port, rx, tx, drops in soak_ports(res):
        d = ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none"
        rows.append((f"port {br}/{port}: rx / tx packets, drops", f"{rx} / {tx}; drops: {d}"))

    out = []
    if markdown:
        out.append(f"Soak, {res['date']}, vswitch at `{res['vswitch_commit']}`{' (dirty tree)' if res['vswitch_dirty'] else ''}: {head}.")
        out.append("")
        out.append("| metric | value |")
        out.append("| --- | --- |")
        for k, v in rows:
            out.append(f"| {k} | {v} |")
        step = max(o["sample_every_s"], 30 if o["seconds"] >= 150 else o["sample_every_s"])
        pick = [r for r in series if r["t"] % step == 0 or r is series[-1]]
        out.append("")
        out.append("| t (s) | " + " | ".join(str(r["t"]) for r in pick) + " |")
        out.append("| --- |" + " ---: |" * len(pick))
        out.append("| VmRSS (MiB) | " + " | ".join(f"{r['rss_kib'] / 1024:.1f}" for r in pick) + " |")
    else:
        out.append(head)
        out.append("")
        out.append("series (t s: VmRSS MiB):")
        cells = [f"{r['t']:>4}: {r['rss_kib'] / 1024:6.2f}" for r in series]
        for i in range(0, len(cells), 6):
            out.append("    " + "   ".join(cells[i:i + 6]))
        out.append("")
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            out.append(f"{k.ljust(width)}  {v}")
    return "\n".join(out)


def cmd_soak_table(path, markdown):
    res = load(path)
    if res.get("kind") != "soak":
        die(f"{path} is not a soak result (run.sh --soak)")
    print(render_soak(res, markdown))


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "iperf" and len(args) == 1:
        cmd_iperf(args[0])
    elif cmd == "ping" and len(args) == 1:
        cmd_ping(args[0])
    elif cmd == "trafgen" and len(args) == 1:
        cmd_trafgen(args[0])
    elif cmd == "mac" and len(args) == 1:
        cmd_mac(args[0])
    elif cmd == "meta" and len(args) == 1:
        cmd_meta(args[0])
    elif cmd == "report" and len(args) >= 3:
        opts = {"--latest": None, "--markdown": None}
        rest = args[3:]
        while rest:
            if rest[0] in opts and len(rest) >= 2:
                opts[rest[0]] = rest[1]
                rest = rest[2:]
            else:
                die(f"report: unexpected argument {rest[0]}")
        cmd_report(args[0], args[1], args[2], opts["--latest"], opts["--markdown"])
    elif cmd == "table" and len(args) in (1, 2):
        cmd_table(args[0], markdown=len(args) == 2 and args[1] == "--markdown")
    elif cmd == "series" and args:
        cmd_series(args)
    elif cmd == "soak-report" and len(args) == 2:
        cmd_soak_report(args[0], args[1])
    elif cmd == "soak-table" and len(args) in (1, 2):
        cmd_soak_table(args[0], markdown=len(args) == 2 and args[1] == "--markdown")
    else:
        die(__doc__)


if __name__ == "__main__":
    main(sys.argv)
