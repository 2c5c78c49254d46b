#!/usr/bin/env python3
"""The tables of bench/cutover.sh, from its runs' timelines (bench/timeline.py, one JSON object a
line) and cri-migrate's own reports of its steps.

    summary.py TARGET PODS SHUTDOWN TOOL.jsonl MANUAL.jsonl STEPS.jsonl

STEPS.jsonl holds one JSON array a run: cri-migrate's steps ({"step", "duration_ms"}).
Medians, with every run's figure beside them: three-run medians on a 2-core machine move by
tenths of a second, so the spread is shown, never only the middle.
"""
import json
import statistics
import sys

PHASES = [
    ("kubelet_stop", "kubelet's stop job"),
    ("between_stops", "kubelet stopped to the stop of Docker's containers"),
    ("docker_to_term", "that stop to the first SIGTERM"),
    ("term_spread", "first to last pod's SIGTERM"),
    ("workload", "slowest pod's own shutdown"),
    ("docker_after_exit", "last pod exited to Docker stopped"),
    ("to_kubelet_start", "pods gone (and Docker stopped, if waited for) to kubelet start"),
    ("kubelet_to_ready", "kubelet start to runtime ready"),
    ("sandboxes", "sandboxes and containers"),
    ("runtime_restart", "runtime (re)start inside the window"),
]


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def spread(runs, key):
    return " ".join(f"{r[key]:.2f}" for r in runs)


def main():
    target, pods, shutdown = sys.argv[1], sys.argv[2], sys.argv[3]
    tool, manual, steps = load(sys.argv[4]), load(sys.argv[5]), load(sys.argv[6])
    n = len(tool)
    print(f"Pods down ({pods} pods, to {target}, each pod's shutdown {shutdown} s): from the first pod's SIGTERM to every pod running on {target}")
    print()
    print("| | runs | median (s) | all runs (s) | floor, median (s) | over the floor, median (s) | all runs (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in [("cri-migrate", tool), ("manual procedure", manual)]:
        print(f"| {name} | {len(runs)} | {med(runs, 'pods_down'):.2f} | {spread(runs, 'pods_down')} | "
              f"{med(runs, 'floor'):.2f} | {med(runs, 'over_floor'):.2f} | {spread(runs, 'over_floor')} |")
    print()
    print(f"ratio (manual / cri-migrate): {med(manual, 'pods_down') / med(tool, 'pods_down'):.2f}")
    print()
    print("Phases, in the order of the window (medians, s; all runs beside)")
    print()
    print("| phase | cri-migrate | all runs | manual procedure | all runs |")
    print("|---|---|---|---|---|")
    for key, label in PHASES:
        print(f"| {label} | {med(tool, key):.3f} | {spread(tool, key)} | {med(manual, key):.3f} | {spread(manual, key)} |")
    print()
    print(f"Kubelet down: \"Stopping kubelet\" to the kubelet ready on {target} (manual: to its check pull)")
    print()
    print("| | runs | median (s) | all runs (s) |")
    print("|---|---|---|---|")
    for name, runs in [("cri-migrate", tool), ("manual procedure", manual)]:
        print(f"| {name} | {len(runs)} | {med(runs, 'kubelet_down'):.2f} | {spread(runs, 'kubelet_down')} |")
    print()
    print(f"ratio (cri-migrate / manual): {med(tool, 'kubelet_down') / med(manual, 'kubelet_down'):.2f}")
    # cri-migrate's own steps from its first stop to the kubelet active: where its calls go.
    window = {}
    details = {}
    for run in steps:
        inside = False
        for s in run:
            if s["step"].startswith("stop kubelet"):
                inside = True
            if inside:
                window.setdefault(s["step"], []).append(s["duration_ms"])
                if s.get("detail"):
                    details.setdefault(s["step"], set()).add(s["detail"])
            if inside and s["step"].startswith("wait up to") and "kubelet.service" in s["step"]:
                break
    if window:
        print()
        print(f"cri-migrate's steps from the kubelet's stop to the kubelet active (its report; median of {n} runs, ms)")
        print()
        print("| step | median (ms) | all runs (ms) |")
        print("|---|---|---|")
        for step, ms in window.items():
            print(f"| {step} | {statistics.median(ms):.0f} | {' '.join(str(m) for m in ms)} |")
        if details:
            print()
            for step, said in details.items():
                for d in sorted(said):
                    print(f"- {step}: {d}")


if __name__ == "__main__":
    main()
