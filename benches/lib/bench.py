#!/usr/bin/env python3
"""Helpers of benches/run.sh: parse tool outputs, aggregate raw samples, print the table.

Subcommands (all print to stdout):
  iperf FILE                      "Gbit/s-received retransmits" from `iperf3 -J` output
  ping FILE                       "p50 p99 replies sent" (ms) from `ping -n` per-reply lines
  trafgen FILE                    packets trafgen reports as sent ("N packets outgoing")
  mac NS_JSON                     MAC address from `ip -j link show dev IF`
  meta OUT                        run metadata from the BENCH_* environment variables
  report RAW META OUT [--latest F] [--markdown F]
                                  aggregate RAW (JSON lines) into OUT, print the table
  table FILE [--markdown]         print the table of a saved results file
"""

import json
import math
import os
import re
import statistics
import sys

SETUPS = [
    ("bridge", "bridge"),
    ("ovs", "OVS"),
    ("vswitchd-afpacket", "vsw afpacket"),
    ("vswitchd-tap", "vsw tap"),
]

# metric key, label, unit scale/format, higher_is_better
METRICS = [
    ("tcp1_gbps", "TCP 1 stream (Gbit/s)", "{:.2f}"),
    ("tcp4_gbps", "TCP 4 streams (Gbit/s)", "{:.2f}"),
    ("udp64_delivered_kpps", "UDP 64 B delivered to h2 (kpps)", "{:.0f}"),
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
]


def die(msg):
    print(f"bench.py: {msg}", file=sys.stderr)
    sys.exit(1)


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[k - 1]


def cmd_iperf(path):
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    if "error" in d:
        die(f"iperf3 reported an error: {d['error']}")
    bps = d["end"]["sum_received"]["bits_per_second"]
    retr = d["end"].get("sum_sent", {}).get("retransmits", 0)
    print(f"{bps / 1e9:.4f} {retr}")


def cmd_ping(path):
    times = []
    sent = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.search(r"time=([0-9.]+) ms", line)
            if m:
                times.append(float(m.group(1)))
            m = re.match(r"(\d+) packets transmitted", line)
            if m:
                sent = int(m.group(1))
    if not times:
        die(f"no ping replies in {path}")
    print(f"{percentile(times, 50):.4f} {percentile(times, 99):.4f} {len(times)} {sent or 0}")


def cmd_trafgen(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    m = re.search(r"(\d+)\s+packets outgoing", text)
    if not m:
        die(f"no 'packets outgoing' line in trafgen output {path}")
    print(m.group(1))


def cmd_mac(path):
    with open(path, encoding="utf-8") as f:
        print(json.load(f)[0]["address"])


def cmd_meta(out_path):
    e = os.environ

    def num(key):
        v = e[key]
        return float(v) if "." in v else int(v)

    meta = {
        "date": e["BENCH_DATE"],
        "machine": {
            "cpus": num("BENCH_CPUS"),
            "cpu_model": e["BENCH_CPU_MODEL"],
            "kernel": e["BENCH_KERNEL"],
            "mem_mib": num("BENCH_MEM_MIB"),
            "loadavg_start": e["BENCH_LOAD_START"],
            "loadavg_end": e["BENCH_LOAD_END"],
        },
        "vswitch_commit": e["BENCH_COMMIT"],
        "vswitch_dirty": e["BENCH_DIRTY"] == "true",
        "vswitchd_args": e["BENCH_VSWITCHD_ARGS"],
        "options": {
            "quick": e["BENCH_QUICK"] == "1",
            "setups": e["BENCH_SETUPS"].split(),
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
        "tools": {"iperf3": e["BENCH_IPERF3"], "trafgen": e["BENCH_TRAFGEN"]},
        "elapsed_s": num("BENCH_ELAPSED"),
        "build_s": num("BENCH_BUILD_S"),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(meta, f)


def aggregate(raw_path):
    """{setup: {metric: [values]}} and {setup: [details]} from the raw JSON lines."""
    samples = {}
    details = {}
    with open(raw_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            setup = r["setup"]
            if "metric" in r:
                samples.setdefault(setup, {}).setdefault(r["metric"], []).append(r["value"])
            if "detail" in r:
                details.setdefault(setup, []).append(r["detail"])
    return samples, details


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
    out = []
    if markdown:
        out.append("| " + " | ".join(header) + " |")
        out.append("| --- |" + " ---: |" * (len(header) - 1))
        for row in rows:
            out.append("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for n, row in enumerate([header] + rows):
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
            out.append("  ".join(cells))
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def cmd_report(raw_path, meta_path, out_path, latest=None, markdown_path=None):
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    samples, details = aggregate(raw_path)
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
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    print(render(results, markdown=False))
    if markdown_path:
        with open(markdown_path, "w", encoding="utf-8") as f:
            f.write(render(results, markdown=True) + "\n")


def cmd_table(path, markdown):
    with open(path, encoding="utf-8") as f:
        print(render(json.load(f), markdown))


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
    else:
        die(__doc__)


if __name__ == "__main__":
    main(sys.argv)
