"""Helpers of benches/cluster.sh: waiting on vswitchd's view of the cluster (polled with
vsctl, timed from a given start), writing simulated nodes and endpoints into etcd through
its JSON gateway (/v3/kv/txn: no client library needed), and the statistics.

  cluster.py wait-gone T0 VTEP VSCTL SOCK...   until no SOCK has an FDB entry behind VTEP
                                               and none lists that node up; prints seconds since T0
  cluster.py wait-fdb T0 N BRIDGE VSCTL SOCK   until BRIDGE has >= N entries behind a remote
  cluster.py fill URL OVERLAY NODES EPS        writes NODES fake nodes with EPS endpoints each,
                                               10 nodes to a transaction
  cluster.py stats FILE                        median, p99, min, max of the numbers in FILE
"""

import base64
import json
import math
import subprocess
import sys
import time
import urllib.request


def vsctl(vsctl_bin, sock, *args):
    out = subprocess.run([vsctl_bin, "--sock", sock, "--json", *args],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def remote_entries(vsctl_bin, sock, bridge=None, vtep=None):
    """FDB entries behind a remote VTEP (behind `vtep` if given) on one daemon."""
    bridges = [bridge] if bridge else [
        b["name"] for b in (vsctl(vsctl_bin, sock, "show") or {}).get("bridges", [])]
    n = 0
    for b in bridges:
        d = vsctl(vsctl_bin, sock, "fdb-show", b) or {}
        for e in d.get("entries", []):
            r = e.get("remote")
            if r and (vtep is None or r == vtep):
                n += 1
    return n


def node_up(vsctl_bin, sock, vtep):
    d = vsctl(vsctl_bin, sock, "list-nodes") or {}
    return any(n["vtep"] == vtep and n["state"] == "up" for n in d.get("nodes", []))


def wait_gone(t0, vtep, vsctl_bin, socks, timeout=60):
    """Seconds from t0 until every daemon lost the node at `vtep` and its endpoints."""
    left = set(socks)
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        for s in sorted(left):
            if not node_up(vsctl_bin, s, vtep) and remote_entries(vsctl_bin, s, vtep=vtep) == 0:
                left.discard(s)
        if left:
            time.sleep(0.02)
    if left:
        sys.exit(f"still there after {timeout}s on {sorted(left)}")
    print(f"{time.time() - t0:.3f}")


def wait_fdb(t0, n, bridge, vsctl_bin, sock, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if remote_entries(vsctl_bin, sock, bridge=bridge) >= n:
            print(f"{time.time() - t0:.3f}")
            return
        time.sleep(0.05)
    sys.exit(f"{bridge}: fewer than {n} remote FDB entries after {timeout}s")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def fill(url, overlay, nodes, eps, per_txn=10):
    """Each fake node's record and its endpoints' two keys each, as a node that joins
    with its containers writes them, `per_txn` nodes to a transaction (so that etcd's
    commits, not the writer, set the pace less). VTEPs 198.18.X.Y, endpoint addresses
    10.128.0.0/16 in order, MACs 02:42 + the address."""
    started = int(time.time())
    k = 0
    t0 = time.time()
    ops = []
    for i in range(nodes):
        name = f"fake-{i:03d}"
        vtep = f"198.18.{1 + i // 250}.{1 + i % 250}"
        ops.append({"requestPut": {"key": b64(f"/vswitch/v1/nodes/{name}"), "value": b64(json.dumps(
            {"name": name, "vtep": vtep, "started": started}))}})
        for _ in range(eps):
            k += 1
            # From 10.128.0.2: .0 is the network, .1 the gateway.
            ip = f"10.128.{(k + 1) // 256}.{(k + 1) % 256}"
            o = [int(x) for x in ip.split(".")]
            mac = "02:42:%02x:%02x:%02x:%02x" % tuple(o)
            rec = b64(json.dumps({"overlay": overlay, "mac": mac, "ip": ip, "node": name,
                                  "container": f"c{k}"}))
            ops.append({"requestPut": {"key": b64(f"/vswitch/v1/endpoints/{overlay}/{mac}"),
                                       "value": rec}})
            ops.append({"requestPut": {"key": b64(f"/vswitch/v1/ipam/{overlay}/{ip}"),
                                       "value": rec}})
        if (i + 1) % per_txn == 0 or i + 1 == nodes:
            req = urllib.request.Request(url + "/v3/kv/txn", data=json.dumps({"success": ops}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=20) as r:
                if not json.loads(r.read()).get("succeeded"):
                    sys.exit(f"txn up to {name} failed")
            ops = []
    print(f"{time.time() - t0:.3f}")


def stats(path):
    v = sorted(float(x) for x in open(path).read().split())
    if not v:
        sys.exit(f"no samples in {path}")
    med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    p99 = v[min(len(v) - 1, math.ceil(0.99 * len(v)) - 1)]
    print(f"{med:.3f} {p99:.3f} {v[0]:.3f} {v[-1]:.3f} {len(v)}")


def main():
    a = sys.argv[1:]
    if a[0] == "wait-gone":
        wait_gone(float(a[1]), a[2], a[3], a[4:])
    elif a[0] == "wait-fdb":
        wait_fdb(float(a[1]), int(a[2]), a[3], a[4], a[5])
    elif a[0] == "fill":
        fill(a[1], a[2], int(a[3]), int(a[4]))
    elif a[0] == "stats":
        stats(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
