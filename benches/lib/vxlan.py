#!/usr/bin/env python3
"""The report of benches/vxlan.sh (reports.json: "vxlan"): report RAW OUT, table FILE,
tunnel-summary SHOW STATS (per-remote counters, VTEP drops; exit 1 without tunnel traffic both
ways) and link-stats FILE (`ip -s -j link` counters as JSON)."""

import json
import sys

sys.dont_write_bytecode = True  # importing benchlib leaves no __pycache__ in benches/lib
from benchlib import Report, load, main  # noqa: E402


def tunnel_summary(show_path, stats_path):
    """One line per remote (counters), one per VTEP (drops); exit 1 if no tunnel traffic."""
    show, stats = load(show_path), load(stats_path)
    ok = False
    for b in show.get("bridges", []):
        for p in b.get("ports", []):
            t = p.get("tunnel")
            if p.get("type") != "vxlan" or not t:
                continue
            for r in t.get("remotes", []):
                print(f"{p['name']} vni {t['vni']} remote {r['ip']} (mtu {r['mtu']}): "
                      f"tx {r['tx_packets']} pkts {r['tx_bytes']} B, "
                      f"rx {r['rx_packets']} pkts {r['rx_bytes']} B")
                ok = ok or (r["tx_packets"] > 0 and r["rx_packets"] > 0)
    for v in stats.get("vteps", []):
        drops = {k: n for k, n in v.get("drops", {}).items() if n}
        print(f"vtep {v['local']}:{v['dstport']}: rx {v['rx_datagrams']} datagrams, "
              f"drops {drops or 'none'}")
    raise SystemExit(0 if ok else 1)


def link_stats(path):
    """ip -s -j link show DEV -> {rx,tx}_{packets,bytes,dropped} as a JSON object."""
    d = load(path)[0]
    s = d.get("stats64", d.get("stats", {}))
    out = {f"{dir}_{k}": s.get(dir, {}).get(k) for dir in ("rx", "tx")
           for k in ("packets", "bytes", "dropped")}
    out["mtu"] = d.get("mtu")
    print(json.dumps(out))


if __name__ == "__main__":
    main(Report("vxlan").commands({"tunnel-summary": tunnel_summary, "link-stats": link_stats}))
