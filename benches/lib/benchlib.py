"""What the python helpers of the bench scripts share (bench.py for run.sh, nat.py, vlan.py,
vxlan.py, docker.py, soak.py): parsers of ping and iperf3 output, the raw samples the scripts
write (one JSON line per measurement), the metadata every result starts with, the table
renderer, the side-by-side reports that reports.json describes (Report) and the subcommand
dispatcher. Imported, never run.
"""

import json
import math
import os
import re
import statistics
import sys


def die(msg):
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(1)


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    return s[max(1, math.ceil(p / 100.0 * len(s))) - 1]


def read_jsonl(path, strict=True):
    """The JSON lines of PATH ([] if it does not exist); strict=False skips broken lines."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                if strict:
                    raise
    return out


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---- tool output ----------------------------------------------------------------------------
def ping_times(path, stamped=False):
    """From `ping -n` output: the RTTs in ms (with -D: (stamp, seq, ms) triples) and the count
    of the summary's "N packets transmitted" (None without a summary)."""
    times, sent = [], None
    line_re = re.compile(r"\[([0-9.]+)\].*icmp_seq=(\d+).*time=([0-9.]+) ms" if stamped
                         else r".*time=([0-9.]+) ms")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = line_re.match(line)
                if m:
                    times.append((float(m.group(1)), int(m.group(2)), float(m.group(3)))
                                 if stamped else float(m.group(1)))
                m = re.match(r"(\d+) packets transmitted", line)
                if m:
                    sent = int(m.group(1))
    return times, sent


def iperf_result(path):
    """{"gbps", "retransmits"} of an `iperf3 -J` client run, or {"error"}."""
    try:
        j = load(path)
    except (OSError, ValueError):
        return {"error": "no JSON result"}
    if "error" in j:
        return {"error": j["error"]}
    try:
        return {"gbps": round(j["end"]["sum_received"]["bits_per_second"] / 1e9, 4),
                "retransmits": j["end"].get("sum_sent", {}).get("retransmits", 0)}
    except KeyError:
        return {"error": "incomplete JSON result"}


def cmd_ping(path):
    """"p50 p99 replies sent" (ms) of a `ping -n` run."""
    times, sent = ping_times(path)
    if not times:
        die(f"no ping replies in {path}")
    print(f"{percentile(times, 50):.4f} {percentile(times, 99):.4f} {len(times)} {sent or 0}")


def cmd_iperf(path):
    """"Gbit/s-received retransmits" of an `iperf3 -J` client run."""
    d = load(path)
    if "error" in d:
        die(f"iperf3 reported an error: {d['error']}")
    bps = d["end"]["sum_received"]["bits_per_second"]
    print(f"{bps / 1e9:.4f} {d['end'].get('sum_sent', {}).get('retransmits', 0)}")


def cmd_mac(path):
    """The MAC address in `ip -j link show dev IF` output."""
    print(load(path)[0]["address"])


def cmd_json_string():
    """Standard input as one JSON string."""
    print(json.dumps(sys.stdin.read()))


# ---- raw samples ----------------------------------------------------------------------------
def read_raw(path):
    """{setup: {metric: [values]}} and {setup: [details]} from the raw JSON lines that the
    scripts' record and record_detail write."""
    samples, details = {}, {}
    for r in read_jsonl(path):
        if "metric" in r:
            samples.setdefault(r["setup"], {}).setdefault(r["metric"], []).append(r["value"])
        if "detail" in r:
            details.setdefault(r["setup"], []).append(r["detail"])
    return samples, details


def medians(path):
    """{setup: {metric: median, ..., "samples": {...}, "details": [...]}} of the raw file."""
    samples, details = read_raw(path)
    results = {}
    for s, metrics in samples.items():
        entry = {m: statistics.median(v) for m, v in metrics.items()}
        entry["samples"] = metrics
        entry["details"] = details.get(s, [])
        results[s] = entry
    return results


def lasts(path):
    """{setup: {metric: value, ..., "details": [...] if any}} of the raw file (one run: the
    last value of each metric)."""
    samples, details = read_raw(path)
    results = {}
    for s in dict.fromkeys(list(samples) + list(details)):
        results[s] = {m: v[-1] for m, v in samples.get(s, {}).items()}
        if s in details:
            results[s]["details"] = details[s]
    return results


def ratios(v, base, metrics):
    """{metric: v / base} for every metric (key, label, format) both have (base non-zero)."""
    return {m: v[m] / base[m] for m, _, _ in metrics if v.get(m) is not None and base.get(m)}


# ---- metadata -------------------------------------------------------------------------------
# What a result may say about the run, from the BENCH_* environment that bench_meta (measure.sh)
# exports.
FIELDS = {
    "cpus": lambda e: int(e["BENCH_CPUS"]),
    "cpu_model": lambda e: e["BENCH_CPU_MODEL"],
    "kernel": lambda e: e["BENCH_KERNEL"],
    "kernel_vxlan": lambda e: e["BENCH_KERNEL_VXLAN"],
    "mem_mib": lambda e: int(e["BENCH_MEM_MIB"]),
    "uptime_start": lambda e: e["BENCH_UPTIME_START"],
    "uptime_end": lambda e: e["BENCH_UPTIME_END"],
    "loadavg_start": lambda e: e["BENCH_LOADAVG_START"],
    "loadavg_end": lambda e: e["BENCH_LOADAVG_END"],
    "quick": lambda e: e["BENCH_QUICK"] == "1",
    "setups": lambda e: e["BENCH_SETUPS"].split(),
    "switches": lambda e: e["BENCH_SETUPS"].split(),
    "tcp_seconds": lambda e: int(e["BENCH_TCP_SECS"]),
    "runs": lambda e: int(e["BENCH_RUNS"]),
    "pings": lambda e: int(e["BENCH_PINGS"]),
    "ping_interval_s": lambda e: float(e["BENCH_PING_INTERVAL"]),
}


def pick(*items, e=os.environ):
    """A dict in the order of ITEMS: a name of FIELDS (its value from the environment), a
    (key, value) pair or a {key: value} of one pair."""
    return dict(next(iter(x.items())) if isinstance(x, dict) else
                x if isinstance(x, tuple) else (x, FIELDS[x](e)) for x in items)


def expand(x, e=os.environ):
    """X with {NAME} in its strings replaced by the environment variable NAME."""
    if isinstance(x, str):
        return x.format_map(e)
    if isinstance(x, dict):
        return {k: expand(v, e) for k, v in x.items()}
    if isinstance(x, list):
        return [expand(v, e) for v in x]
    return x


def result(first, machine, body, results=None, e=os.environ):
    """The layout results share: FIRST (a (key, value) pair such as ("benchmark", "nat"), or
    None), date, MACHINE, the vswitch commit, BODY's keys, run and build time, RESULTS."""
    res = dict([first] if first else [])
    res.update(date=e["BENCH_DATE"], machine=machine, vswitch_commit=e["BENCH_COMMIT"],
               vswitch_dirty=e["BENCH_DIRTY"] == "true")
    res.update(body)
    res.update(elapsed_s=int(e["BENCH_ELAPSED"]), build_s=int(e["BENCH_BUILD_S"]))
    if results is not None:
        res["results"] = results
    return res


def save(res, out_path, render):
    """Write RES to OUT_PATH (indented JSON) and print its table."""
    write_json(out_path, json.dumps(res, indent=2) + "\n")
    print(render(res, markdown=False))


# ---- tables ---------------------------------------------------------------------------------
def render_table(header, rows, markdown, left=1):
    """HEADER and ROWS (lists of strings) as a markdown table or as aligned text: the first
    LEFT columns left-aligned, the rest right-aligned, a rule under the header."""
    out = []
    if markdown:
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + " --- |" * left + " ---: |" * (len(header) - left))
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        w = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for n, r in enumerate([header] + rows):
            out.append("  ".join([c.ljust(x) for c, x in zip(r[:left], w[:left])] +
                                 [c.rjust(x) for c, x in zip(r[left:], w[left:])]))
            if n == 0:
                out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def cell(v, f="{:.2f}"):
    return f.format(v) if v is not None else "-"


def metric_rows(results, setups, metrics, ratio_cols):
    """One row per metric (key, label, format): the label, each setup's value, then for each
    (setup, ratio key) of RATIO_COLS that setup's ratio."""
    rows = []
    for key, label, f in metrics:
        cells = [label] + [cell(results.get(s, {}).get(key), f) for s, _ in setups]
        cells += [cell(results.get(s, {}).get(rk, {}).get(key)) for s, rk in ratio_cols]
        rows.append(cells)
    return rows


# ---- side-by-side reports ------------------------------------------------------------------
class Report:
    """The result and the table of one bench script, as reports.json describes them (KIND: the
    script's name): setups side by side, one row per metric, ratio columns."""

    def __init__(self, kind):
        self.kind = kind
        self.spec = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "reports.json"))[kind]
        self.setups = [tuple(x) for x in self.spec["setups"]]
        self.metrics = [tuple(x) for x in self.spec["metrics"]]
        self.ratios = [tuple(x) for x in self.spec["ratios"]]

    def results(self, raw):
        """The raw samples aggregated (median or last), each ratio setup's ratio_over_<base>."""
        results = (medians if self.spec["aggregate"] == "median" else lasts)(raw)
        for s, base, _ in self.ratios:
            if s in results and results.get(base):
                results[s]["ratio_over_" + base] = ratios(results[s], results[base], self.metrics)
        return results

    def render(self, res, markdown):
        header = ["metric"] + [t for _, t in self.setups] + [t for _, _, t in self.ratios]
        cols = [(s, "ratio_over_" + base) for s, base, _ in self.ratios]
        return render_table(header, metric_rows(res["results"], self.setups, self.metrics, cols),
                            markdown)

    def result(self, results, before=(), after=(), e=os.environ):
        """The whole result: the shared head, BEFORE's pairs, vswitchd's arguments, the options,
        AFTER's pairs, the fixed parts of reports.json, then RESULTS."""
        body = dict(before)
        body.update(vswitchd_args=e["BENCH_VSWITCHD_ARGS"], options=pick(*self.spec["options"]))
        body.update(after)
        body.update(expand(self.spec["fixed"], e))
        return result(("benchmark", self.kind), pick(*self.spec["machine"]), body, results)

    def commands(self, more, render=None):
        """The subcommands: report RAW OUT, table FILE, the common ones and MORE's."""
        render = render or self.render
        return {"report": lambda raw, out: save(self.result(self.results(raw)), out, render),
                "table": table_cmd(render), **COMMON_COMMANDS, **more}


# ---- the command line -----------------------------------------------------------------------
def table_cmd(render):
    """The "table FILE" subcommand: a saved result as a markdown table."""
    return lambda path: print(render(load(path), markdown=True))


def main(commands, argv=None):
    """Run the subcommand argv[1] of COMMANDS ({name: function of the remaining arguments})."""
    a = sys.argv[1:] if argv is None else argv
    if not a or a[0] not in commands:
        die("unknown subcommand " + (a[0] if a else "(none)") + "; one of " + ", ".join(commands))
    commands[a[0]](*a[1:])


COMMON_COMMANDS = {"ping": cmd_ping, "iperf": cmd_iperf, "mac": cmd_mac,
                   "json-string": cmd_json_string}
