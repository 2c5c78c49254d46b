#!/usr/bin/env python3
"""Never a pod twice at once: the kubelet started on the new runtime only after every pod
container Docker ran had exited (Docker's own record of each exit, the shim's time), though
cri-migrate goes on without waiting for dockerd's shutdown after them.

    started_after_exits.py JOURNAL.json DOCKER_CONTAINERS_DIR SINCE

JOURNAL.json is `journalctl -u kubelet.service -o json` of the node. Exits 0 when the kubelet's
first start since SINCE came after the last exit of the pod containers (k8s_app_pod-*) since
SINCE; prints the times either way.
"""
import datetime
import glob
import json
import sys


def ts_docker(s):
    if not s or s.startswith("0001-"):
        return None
    date, _, frac = s.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(date, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac[:9]) if frac else 0.0)


def main():
    journal, containers, since = sys.argv[1], sys.argv[2], float(sys.argv[3])
    started = None
    with open(journal) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            t = int(e["__REALTIME_TIMESTAMP"]) / 1e6
            msg = e.get("MESSAGE")
            if isinstance(msg, str) and msg.startswith("Started kubelet") and t >= since:
                started = t if started is None else min(started, t)
    exits = []
    for cfg in glob.glob(containers + "/*/config.v2.json"):
        with open(cfg) as f:
            c = json.load(f)
        if c.get("Name", "").startswith("/k8s_app_pod-"):
            t = ts_docker(c.get("State", {}).get("FinishedAt"))
            if t is not None and t >= since:
                exits.append(t)
    if started is None or not exits:
        sys.exit(f"not found: kubelet start {started}, {len(exits)} pod container exit(s)")
    last = max(exits)
    print(f"last pod container exit {last:.3f}, kubelet started {started:.3f} ({started - last:+.3f} s)")
    sys.exit(0 if started > last else 1)


if __name__ == "__main__":
    main()
