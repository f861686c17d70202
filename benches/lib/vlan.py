#!/usr/bin/env python3
"""The report of benches/vlan.sh (reports.json: "vlan"): report RAW OUT, table FILE, and
fdb-has FILE MAC VLAN PORT (exit 0 when `vsctl --json fdb-show` has the entry). The raw
samples' setup is "TOPOLOGY/SWITCH"; the result nests them the same way, one row per
topology and metric, the switches side by side."""

import sys

sys.dont_write_bytecode = True  # importing benchlib leaves no __pycache__ in benches/lib
from benchlib import Report, cell, lasts, load, main, ratios, render_table, save  # noqa: E402

REPORT = Report("vlan")  # setups: the topologies; ratios: the switches
SWITCH, BASE, RATIO_TITLE = REPORT.ratios[0]


def render(res, markdown):
    header = ["setup", "metric", "vswitchd", "OVS", RATIO_TITLE]
    rows = []
    for topo, title in REPORT.setups:
        t = res["results"].get(topo)
        if not t:
            continue
        for n, (key, label, f) in enumerate(REPORT.metrics):
            rows.append([title if n == 0 or markdown else "", label] +
                        [cell(t.get(s, {}).get(key), f) for s in (SWITCH, BASE)] +
                        [cell(t.get("ratio_vswitchd_over_ovs", {}).get(key))])
    return render_table(header, rows, markdown, left=2)


def report(raw, out_path):
    results = {}
    for setup, entry in lasts(raw).items():
        topo, switch = setup.split("/")
        results.setdefault(topo, {})[switch] = entry
    for t in results.values():
        t["ratio_vswitchd_over_ovs"] = ratios(t.get(SWITCH, {}), t.get(BASE, {}), REPORT.metrics)
    save(REPORT.result(results), out_path, render)


def fdb_has(path, mac, vlan, port):
    """Exit 0 when `vsctl --json fdb-show` in PATH has MAC in VLAN on PORT."""
    ok = any(x["mac"].lower() == mac.lower() and x["vlan"] == int(vlan) and x["port"] == port
             for x in load(path)["entries"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(REPORT.commands({"report": report, "fdb-has": fdb_has}, render))
