#!/usr/bin/env python3
"""The report of benches/docker.sh (reports.json: "docker"): report RAW OUT, table FILE, and
stats-summary STATS, one line of `vsctl --json stats`. The result also says which binaries ran
and whether Docker's bridge network could be measured."""

import json
import os
import sys

sys.dont_write_bytecode = True  # importing benchlib leaves no __pycache__ in benches/lib
from benchlib import Report, load, main, save  # noqa: E402

REPORT = Report("docker")


def render(res, markdown):
    out = REPORT.render(res, markdown)
    if not res.get("bridge_available", True):
        out += ("\n\nDocker's bridge network was not measured: dockerd's bridge driver cannot be "
                "enabled here (" + (res.get("bridge_unavailable_reason") or "unknown") + ").")
    return out


def report(raw, out_path):
    e = os.environ
    ok = e["BENCH_BRIDGE_OK"] == "1"
    res = REPORT.result(REPORT.results(raw), before={"binaries": json.loads(e["BENCH_BINARIES"])},
                        after={"bridge_available": ok,
                               "bridge_unavailable_reason": None if ok else e["BENCH_BRIDGE_REASON"]})
    save(res, out_path, render)


def stats_summary(path):
    """One line from `vsctl --json stats`: per-port rx/tx and drops."""
    d = load(path)
    parts = []
    for br in d.get("bridges", []):
        for p in br.get("ports", []):
            parts.append(f"{br.get('name')}/{p.get('name')} rx {p.get('rx_packets')} "
                         f"tx {p.get('tx_packets')} drops {p.get('drops') or 'none'}")
    print("; ".join(parts) or json.dumps(d)[:300])


if __name__ == "__main__":
    main(REPORT.commands({"report": report, "stats-summary": stats_summary}, render))
