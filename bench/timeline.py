#!/usr/bin/env python3
"""One cutover's timeline, from the node's journal (`journalctl -o json`) and Docker's own
records of its containers (config.v2.json under /var/lib/docker/containers).

    timeline.py JOURNAL.json DOCKER_CONTAINERS_DIR PODS SINCE [RUNTIME]

RUNTIME is containerd (the default) or crio: the socket the kubelet reports ready on and the
unit whose restart is looked for.

Prints one line of seconds, space-separated:
    downtime docker_stop to_kubelet_start kubelet_to_ready sandboxes kubelet_only runtime_restart
where
    downtime          first pod container stopped by Docker -> every pod running again
                      (the kubelet stand-in's "pod default/pod-N running" lines)
    docker_stop       first pod container stopped -> docker.service stopped
    to_kubelet_start  docker.service stopped -> kubelet started (files, runtime restart...)
    kubelet_to_ready  kubelet started -> it reports the runtime ready
    sandboxes         runtime ready -> the last pod running (sandboxes, containers)
    kubelet_only      "Stopping kubelet" -> ready again (the figure without pods)
    runtime_restart   the runtime's restart (or start) inside the downtime window, 0 when it had
                      none
"""
import datetime
import glob
import json
import sys


def ts_journal(entry):
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def ts_docker(s):
    # 2026-11-26T16:02:06.472541830Z: Python takes microseconds.
    if not s or s.startswith("0001-"):
        return None
    date, _, frac = s.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(date, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def first(entries, pred, after=0.0):
    for t, msg in entries:
        if t >= after and pred(msg):
            return t
    return None


def main():
    journal, containers, pods, since = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    runtime = sys.argv[5] if len(sys.argv) > 5 else "containerd"
    socket, unit = {
        "containerd": ("unix:///run/containerd", "containerd"),
        "crio": ("unix:///var/run/crio", "crio"),
    }[runtime]
    entries = []
    with open(journal) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            msg = e.get("MESSAGE")
            if isinstance(msg, str):
                entries.append((ts_journal(e), msg))
    entries.sort()
    stops = []
    for cfg in glob.glob(containers + "/*/config.v2.json"):
        with open(cfg) as f:
            c = json.load(f)
        if c.get("Name", "").startswith("/k8s_app_pod-"):
            t = ts_docker(c.get("State", {}).get("FinishedAt"))
            if t is not None and t >= since:
                stops.append(t)
    kubelet_stop = first(entries, lambda m: m.startswith("Stopping kubelet"))
    first_stop = min(stops) if stops else None
    docker_stopped = first(entries, lambda m: m.startswith("Stopped docker.service"), kubelet_stop or 0)
    kubelet_started = first(entries, lambda m: m.startswith("Started kubelet"), docker_stopped or 0)
    ready = first(entries, lambda m: "ready on " + socket in m, kubelet_started or 0)
    running = [first(entries, lambda m, i=i: m.startswith(f"pod default/pod-{i} running"), ready or 0)
               for i in range(1, pods + 1)]
    missing = [name for name, v in [("kubelet stop", kubelet_stop), ("a pod container stop", first_stop),
                                    ("docker stopped", docker_stopped), ("kubelet start", kubelet_started),
                                    ("kubelet ready", ready)] if v is None]
    missing += [f"pod-{i + 1} running" for i, v in enumerate(running) if v is None]
    if missing:
        sys.exit("timeline: not found in the journal: " + ", ".join(missing))
    all_running = max(running)
    # A restart, or (CRI-O in the manual procedure) its first start, inside the window.
    restart_start = first(entries, lambda m: m.startswith("Stopping " + unit) or m.startswith("Starting " + unit), first_stop)
    restart_end = first(entries, lambda m: m.startswith("Started " + unit), restart_start or 0)
    restart = (restart_end - restart_start) if restart_start and restart_end and restart_end <= all_running else 0.0
    print(" ".join(f"{x:.3f}" for x in [
        all_running - first_stop,
        docker_stopped - first_stop,
        kubelet_started - docker_stopped,
        ready - kubelet_started,
        all_running - ready,
        ready - kubelet_stop,
        restart,
    ]))


if __name__ == "__main__":
    main()
