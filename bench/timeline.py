#!/usr/bin/env python3
"""One cutover's timeline, from the node's journal (`journalctl -o json`) and Docker's own
records of its pod containers (config.v2.json and the json-file log under
/var/lib/docker/containers).

    timeline.py JOURNAL.json DOCKER_CONTAINERS_DIR PODS SINCE [RUNTIME [CHECK_END]]

RUNTIME is containerd (the default) or crio: the socket the kubelet reports ready on and the
unit whose restart is looked for. The pods' command logs a line when SIGTERM reaches it
(bench/cutover.sh: `term`), so each container's stop request is in its own log, with Docker's
time; its exit is Docker's `State.FinishedAt`.

Prints one JSON object (seconds) whose keys are, in the order of the window:
    pods_down          first pod told to stop (SIGTERM) -> every pod running again (the kubelet
                       stand-in's "pod default/pod-N running" lines)
    pods_down_exit     first pod container exited -> every pod running (the older figure)
    kubelet_stop       the kubelet's stop job ("Stopping kubelet" -> "Stopped kubelet")
    between_stops      kubelet stopped -> the stop of Docker's containers begins: Docker's first
                       stop job, or the first pod's SIGTERM where that comes first (cri-migrate
                       signals them itself, before Docker's stop) (the tool's own calls)
    docker_to_term     that -> the first pod gets SIGTERM (0 where the pods are signalled first)
    term_spread        first -> last pod's SIGTERM
    workload           the slowest pod's own shutdown (its SIGTERM -> its exit)
    docker_after_exit  the last pod exited -> docker.service stopped (dockerd's own shutdown)
    to_kubelet_start   the moment the kubelet could start (every pod exited and, unless the
                       kubelet started before it, Docker stopped) -> kubelet started
    kubelet_to_ready   kubelet started -> it reports the runtime ready
    sandboxes          runtime ready -> the last pod running (sandboxes, containers)
    floor              workload + sandboxes: what neither contender can remove
    over_floor         pods_down - floor
    kubelet_down       "Stopping kubelet" -> ready again, or to CHECK_END (the manual procedure's
                       check pull) when that is later
    runtime_restart    the runtime's restart (or first start) inside the window, 0 when none
"""
import datetime
import glob
import json
import os
import sys


def ts_journal(entry):
    return int(entry["__REALTIME_TIMESTAMP"]) / 1e6


def ts_docker(s):
    # 2026-11-26T16:02:06.472541830Z: Python takes microseconds.
    if not s or s.startswith("0001-"):
        return None
    date, _, frac = s.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(date, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + (float("0." + frac[:9]) if frac else 0.0)


def first(entries, pred, after=0.0):
    for t, msg in entries:
        if t >= after and pred(msg):
            return t
    return None


def json_lines(path):
    """Each JSON object of a file of one a line (journalctl -o json, Docker's json-file log);
    a line that is not one is passed over."""
    with open(path) as f:
        for line in f:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def journal_entries(path):
    entries = [(ts_journal(e), e["MESSAGE"]) for e in json_lines(path) if isinstance(e.get("MESSAGE"), str)]
    entries.sort()
    return entries


def pod_containers(containers, since):
    """(SIGTERM time or None, exit time) of each pod container that exited since SINCE."""
    out = []
    for cfg in glob.glob(containers + "/*/config.v2.json"):
        with open(cfg) as f:
            c = json.load(f)
        if not c.get("Name", "").startswith("/k8s_app_pod-"):
            continue
        exited = ts_docker(c.get("State", {}).get("FinishedAt"))
        if exited is None or exited < since:
            continue
        term = None
        log = os.path.join(os.path.dirname(cfg), c.get("ID", "") + "-json.log")
        try:
            for rec in json_lines(log):
                t = ts_docker(rec.get("time"))
                if rec.get("log", "").strip() == "term" and t is not None and since <= t <= exited:
                    term = t
        except OSError:
            pass
        out.append((term, exited))
    return out


def main():
    journal, containers, pods, since = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    runtime = sys.argv[5] if len(sys.argv) > 5 else "containerd"
    check_end = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    socket, unit = {
        "containerd": ("unix:///run/containerd", "containerd"),
        "crio": ("unix:///var/run/crio", "crio"),
    }[runtime]
    entries = journal_entries(journal)
    stops = pod_containers(containers, since)
    terms = [t for t, _ in stops if t is not None]
    exits = [e for _, e in stops]
    kubelet_stop = first(entries, lambda m: m.startswith("Stopping kubelet"))
    kubelet_stopped = first(entries, lambda m: m.startswith("Stopped kubelet"), kubelet_stop or 0)
    docker_stopping = first(entries, lambda m: m.startswith("Stopping docker.s") or m.startswith("Closed docker.socket"),
                            kubelet_stop or 0)
    docker_stopped = first(entries, lambda m: m.startswith("Stopped docker.service"), kubelet_stop or 0)
    kubelet_started = first(entries, lambda m: m.startswith("Started kubelet"), kubelet_stopped or 0)
    # A kubelet released from its gate may say it is ready before systemd logs "Started" (systemd
    # forks it, then writes the line): its start is then its first line.
    ready = first(entries, lambda m: "ready on " + socket in m, kubelet_stopped or 0)
    if kubelet_started is not None and ready is not None:
        kubelet_started = min(kubelet_started, ready)
    running = [first(entries, lambda m, i=i: m.startswith(f"pod default/pod-{i} running"), ready or 0)
               for i in range(1, pods + 1)]
    missing = [name for name, v in [("kubelet stop", kubelet_stop), ("kubelet stopped", kubelet_stopped),
                                    ("docker stopping", docker_stopping), ("docker stopped", docker_stopped),
                                    ("kubelet start", kubelet_started), ("kubelet ready", ready)] if v is None]
    missing += [f"pod-{i + 1} running" for i, v in enumerate(running) if v is None]
    if len(stops) < pods:
        missing.append(f"{pods - len(stops)} pod container exit(s)")
    if len(terms) < len(stops):
        missing.append(f"{len(stops) - len(terms)} pod container SIGTERM line(s)")
    if missing:
        sys.exit("timeline: not found: " + ", ".join(missing))
    all_running = max(running)
    workload = max(e - t for t, e in stops)
    sandboxes = all_running - ready
    # The kubelet may start once every pod has exited; it need not wait for dockerd's own end.
    could_start = max(exits) if kubelet_started < docker_stopped else max(max(exits), docker_stopped)
    restart_start = first(entries, lambda m: m.startswith("Stopping " + unit) or m.startswith("Starting " + unit),
                          min(terms))
    restart_end = first(entries, lambda m: m.startswith("Started " + unit), restart_start or 0)
    restart = (restart_end - restart_start) if restart_start and restart_end and restart_end <= all_running else 0.0
    pods_down = all_running - min(terms)
    out = {
        "pods_down": pods_down,
        "pods_down_exit": all_running - min(exits),
        "kubelet_stop": kubelet_stopped - kubelet_stop,
        "between_stops": min(docker_stopping, min(terms)) - kubelet_stopped,
        "docker_to_term": min(terms) - min(docker_stopping, min(terms)),
        "term_spread": max(terms) - min(terms),
        "workload": workload,
        "docker_after_exit": docker_stopped - max(exits),
        "to_kubelet_start": kubelet_started - could_start,
        "kubelet_to_ready": ready - kubelet_started,
        "sandboxes": sandboxes,
        "floor": workload + sandboxes,
        "over_floor": pods_down - workload - sandboxes,
        "kubelet_down": max(ready, check_end) - kubelet_stop,
        "runtime_restart": restart,
    }
    print(json.dumps({k: round(v, 3) for k, v in out.items()}))


if __name__ == "__main__":
    main()
