#!/usr/bin/env python3
"""Never a pod twice at once: the kubelet started on the new runtime only after every pod
container Docker ran had exited (Docker's own record of each exit, the shim's time), though
cri-migrate goes on without waiting for dockerd's shutdown after them.

    started_after_exits.py JOURNAL.json DOCKER_CONTAINERS_DIR SINCE

JOURNAL.json is `journalctl -u kubelet.service -o json` of the node. Exits 0 when the start of
the kubelet that ran the pods again (the last start before its first pod line since SINCE) came
after the last exit of the pod containers (k8s_app_pod-*) since SINCE; prints the times either
way. The journal and Docker's records are read as the cutover
benchmark reads them (bench/timeline.py).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from timeline import journal_entries, pod_containers  # noqa: E402


def main():
    journal, containers, since = sys.argv[1], sys.argv[2], float(sys.argv[3])
    # The start of the kubelet that ran the pods again: the last one before its first pod line
    # (the journal's SINCE is whole seconds: a start of the scenario before, in the same
    # second, must not be taken for it).
    entries = [(t, msg) for t, msg in journal_entries(journal) if t >= since]
    first_pod = next((t for t, msg in entries if msg.startswith("pod default/pod-")), None)
    starts = [t for t, msg in entries
              if msg.startswith("Started kubelet") and (first_pod is None or t <= first_pod)]
    started = starts[-1] if starts else None
    exits = [exited for _, exited in pod_containers(containers, since)]
    if started is None or not exits:
        sys.exit(f"not found: kubelet start {started}, {len(exits)} pod container exit(s)")
    last = max(exits)
    print(f"last pod container exit {last:.3f}, kubelet started {started:.3f} ({started - last:+.3f} s)")
    sys.exit(0 if started > last else 1)


if __name__ == "__main__":
    main()
