"""Where the switch's busiest thread ran against the traffic's senders, during one measurement.

A worker that shares a CPU with the sender halves TCP on two cores (README, "What limits
it"), and the scheduler decides that placement run by run; this lets each run say how much
of it it had.

  python3 placement.py sample OUT PID...   # until TERM: every 40 ms, the CPU each thread
                                           # of PID... and each sender last ran on
  python3 placement.py summary OUT         # "0.63": the share of samples in which the
                                           # busiest switch thread was on a sender's CPU

Senders are iperf3 clients and trafgen, found by name every half second; a run whose
senders send the other way (iperf3 -R) is not told apart. Prints nothing when the file
holds too little to say.
"""

import json
import os
import signal
import sys
import time

INTERVAL = 0.04
RESCAN = 0.5
MAX_THREADS = 4


def cpu_ticks(path):
    """(CPU last run on, utime + stime) from a /proc stat file, or None if it is gone."""
    try:
        with open(path) as f:
            # The fields after the command name, which may hold spaces.
            st = f.read().rsplit(")", 1)[1].split()
        return int(st[36]), int(st[11]) + int(st[12])
    except (OSError, IndexError, ValueError):
        return None


def senders(seen):
    """Senders among the processes, reading only those not looked at before (`seen`)."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/comm") as f:
                comm = f.read().strip()
            if comm == "trafgen":
                found.append(p)
            elif comm == "iperf3":
                with open(f"/proc/{p}/cmdline") as f:
                    if "-c" in f.read().split("\0"):
                        found.append(p)
        except OSError:
            continue
    return found


def sample(out, pids):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    tasks = []
    for p in pids:
        try:
            tasks += [f"/proc/{p}/task/{t}/stat" for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue
    # Reading a thread's stat costs about 30 µs: only the threads that ran in the last half
    # second are sampled (an idle OVS handler is not), so the sampler stays under 1% of a core.
    watched, ticks = list(tasks), {}
    snd, seen, rescan = [], set(), 0.0
    with open(out, "w") as f:
        while not stop:
            now = time.monotonic()
            if now >= rescan:
                snd = [p for p in snd if os.path.exists(f"/proc/{p}")] + senders(seen)
                ran = []
                for path in tasks:
                    got = cpu_ticks(path)
                    if got:
                        if path in ticks and got[1] != ticks[path]:
                            ran.append(path)
                        ticks[path] = got[1]
                watched = ran[:MAX_THREADS]
                rescan = now + RESCAN
            rec = {"sw": [], "snd": []}
            for key, paths in (("sw", watched), ("snd", [f"/proc/{p}/stat" for p in snd])):
                for path in paths:
                    got = cpu_ticks(path)
                    if got:
                        rec[key].append([path, *got])
            f.write(json.dumps(rec) + "\n")
            time.sleep(INTERVAL)


def growth(recs, key):
    """{path: CPU ticks it gained between its first and last sample} for `key`'s entries."""
    span = {}
    for r in recs:
        for p, _, t in r[key]:
            lo, _ = span.get(p, (t, t))
            span[p] = (min(lo, t), t)
    return {p: hi - lo for p, (lo, hi) in span.items()}


def summary(out):
    try:
        with open(out) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return
    if len(recs) < 10:
        return
    # The thread whose CPU time grew most while it was sampled.
    grown = sorted(((g, p) for p, g in growth(recs, "sw").items()), reverse=True)
    if not grown or grown[0][0] <= 0:
        return
    busiest = grown[0][1]
    # Senders that used CPU during the window (an idle iperf3 left over is not one).
    busy = {p for p, g in growth(recs, "snd").items() if g > 0}
    n = beside = 0
    for r in recs:
        cpu = {p: c for p, c, _ in r["sw"]}
        snd = {c for p, c, _ in r["snd"] if p in busy}
        if busiest not in cpu or not snd:
            continue
        n += 1
        beside += cpu[busiest] in snd
    if n >= 10:
        print(f"{beside / n:.2f}")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "sample":
        sample(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        sys.exit("usage: placement.py sample OUT PID... | summary OUT")


if __name__ == "__main__":
    main()
