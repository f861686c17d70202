#!/usr/bin/env python3
"""The report of benches/nat.sh (reports.json: "nat"): report RAW OUT, table FILE, and
gateway-summary STATS, one line of `vsctl --json stats`."""

import sys

sys.dont_write_bytecode = True  # importing benchlib leaves no __pycache__ in benches/lib
from benchlib import Report, load, main  # noqa: E402


def gateway_summary(stats_path):
    """One line from `vsctl --json stats`: the gateway's conntrack, counters and drops."""
    g = load(stats_path).get("gateway") or {}
    print(f"conntrack {g.get('conntrack')} (limit {g.get('ct_limit')}), mappings "
          f"{g.get('mappings')}, counters {g.get('counters') or {}}, drops {g.get('drops') or 'none'}")


if __name__ == "__main__":
    main(Report("nat").commands({"gateway-summary": gateway_summary}))
