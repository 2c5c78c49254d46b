#!/usr/bin/env bash
# Cutover downtime with running pods: cri-migrate against the Kubernetes documentation's manual
# procedure (bench/manual-procedure.sh), on the same node in a box, in the same run, RUNS runs
# each. PODS pods run in Docker before each run (as dockershim ran them) and as static pods that
# the kubelet stand-in runs through CRI once it is on containerd.
# What users feel: from the first pod's SIGTERM until every pod runs again on the new runtime
# (the stand-in's "pod ... running" lines), split into the phases of the window from the
# journal, Docker's records and the pods' own logs (bench/timeline.py), with the floor no tool
# can go under (the slowest pod's own shutdown plus the runtime creating the pods) and the
# kubelet-only figure ("Stopping kubelet" to ready; for the manual procedure, to the end of its
# check pull, which comes after); cri-migrate's own steps in the window from its report.
# Needs root.
#   bench/cutover.sh [RUNS] [PODS]   default 6 runs, 3 pods; prints tables for docs/performance.md
#   BENCH_DEBUG=1 bench/cutover.sh   also prints the kubelet's and containerd's journal per run
#   BENCH_CONTAINERD2=1 bench/cutover.sh   the node's containerd is 2.x (Debian unstable's)
#   BENCH_TARGET=crio bench/cutover.sh     to CRI-O (BENCH_CRIO=1.24.6 or 1.36.3, from its bundle:
#                                          tests/e2e/lib.sh install_crio), against the manual
#                                          procedure for CRI-O (bench/manual-procedure-crio.sh)
#   BENCH_SHUTDOWN=0.3 bench/cutover.sh    each pod's own shutdown on SIGTERM, in seconds (fixed,
#                                          so that runs compare; default 0.3)
set -uo pipefail
SHUTDOWN=${BENCH_SHUTDOWN:-0.3}
[[ "$SHUTDOWN" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "BENCH_SHUTDOWN is a number of seconds, not $SHUTDOWN" >&2; exit 2; }
# The pods' process: on SIGTERM it says so (its log line, with Docker's time, is the stop
# request in bench/timeline.py) and ends after exactly SHUTDOWN seconds.
POD_SH="trap 'echo term; sleep $SHUTDOWN; exit 0' TERM INT; while :; do sleep 3600 & wait \$!; done"
source "$(dirname "$0")/../tests/e2e/lib.sh"
RUNS=${1:-6}
PODS=${2:-3}
TARGET=${BENCH_TARGET:-containerd}
case "$TARGET" in
    containerd) true ;;
    crio) true ;;
    *) die "BENCH_TARGET is containerd or crio, not $TARGET" ;;
esac

require_tools
WORK=$(mktemp -d /var/tmp/cri-migrate-bench.XXXXXX)
trap cleanup EXIT
(cd "$REPO" && cargo build --release --workspace --bins --quiet) || die "cargo build --release failed"
build_rootfs
setup_registries

NODE=bench
# Both set the node's pause image from the local registry (the manual procedure with sed, as an
# operator of a node that cannot reach registry.k8s.io would); both pull $TEST_IMAGE as a check.
make_node "$NODE" 1.23.17 "--network-plugin=cni"
rm -f "$WORK/$NODE/etc/kubelet-standin/sandbox-image"
for p in $(seq "$PODS"); do
    write_static_pod "$NODE" "$p"
done
if [ -n "${BENCH_CONTAINERD2:-}" ]; then
    have_containerd2 || die "containerd 2.x is missing: tests/tools/fetch-sid.sh containerd2 usr/bin/containerd containerd"
    install_containerd2 "$NODE"
fi
install -m 0755 "$REPO/target/release/cri-migrate" "$WORK/$NODE/usr/local/bin/cri-migrate"
install -m 0755 "$REPO/target/release/kubelet-standin" "$WORK/$NODE/usr/bin/kubelet"
install -m 0755 "$REPO/bench/manual-procedure.sh" "$WORK/$NODE/usr/local/bin/manual-procedure"
if [ "$TARGET" = crio ]; then
    have_crio "${BENCH_CRIO:-1.24.6}" || die "CRI-O ${BENCH_CRIO:-1.24.6} is missing (CRI_MIGRATE_CRIO_124 / CRI_MIGRATE_CRIO_136)"
    install_crio "$NODE" "${BENCH_CRIO:-1.24.6}"
    install -m 0755 "$REPO/bench/manual-procedure-crio.sh" "$WORK/$NODE/usr/local/bin/manual-procedure"
fi
boot_node "$NODE"
wait_active docker.service 60 && wait_active kubelet.service 60 || die "the node did not come up"
docker_pull_images || die "Docker could not pull the test images"
# The pods as dockershim ran them: no restart policy (the kubelet restarted them), so after each
# run they are started again here, as the kubelet back on Docker would.
for p in $(seq "$PODS"); do
    run_docker_pod "$p" no || die "docker run failed"
done
pods_back_on_docker() {
    local i exited
    for i in $(seq 120); do
        [ "$(in_node docker ps -q --filter name=k8s_app_pod | wc -l)" = "$PODS" ] && return 0
        exited=$(in_node docker ps -aq --filter name=k8s_app_pod --filter status=exited)
        [ -n "$exited" ] && in_node docker start $exited >/dev/null 2>&1
        sleep 0.5
    done
    die "the pods did not come back on Docker"
}
# The pods the kubelet ran on containerd, removed after the manual procedure (cri-migrate's
# rollback removes them itself): by their task and container in containerd's CRI namespace.
remove_cri_pods() {
    local c
    for c in $(in_node ctr -n k8s.io containers ls -q); do
        in_node ctr -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1
    done
    sleep 1
    for c in $(in_node ctr -n k8s.io containers ls -q); do
        in_node ctr -n k8s.io tasks delete -f "$c" >/dev/null 2>&1
        in_node ctr -n k8s.io containers delete "$c" >/dev/null 2>&1
    done
}
# CRI-O's pods after the manual procedure: the pods' slices stopped (conmon runs in them), CRI-O
# stopped and its storage and state wiped (the next cri-migrate run carries the images again,
# before its cutover).
remove_crio_pods() {
    in_node systemctl stop kubepods.slice >/dev/null 2>&1
    in_node systemctl disable --now crio >/dev/null 2>&1
    in_node crio wipe -f >/dev/null 2>&1
    in_node sh -c 'rm -rf /var/lib/crio /var/run/crio /var/log/pods/*'
}
# timeline SINCE [CHECK_END]: one JSON line of the run's phases (bench/timeline.py).
timeline() {
    in_node journalctl --no-pager -u kubelet.service -u docker.service -u docker.socket -u containerd.service -u crio.service --since "@$1" -o json >"$WORK/journal.json"
    python3 "$REPO/bench/timeline.py" "$WORK/journal.json" "$WORK/$NODE/var/lib/docker/containers" "$PODS" "$1" "$TARGET" "${2:-0}"
}

# A point in time for the journal, after everything before it: journalctl takes whole seconds.
mark() {
    since=$(($(date +%s) + 1))
    sleep 1.2
}

# Every pod runs on containerd (the stand-in logs each), bounded.
wait_pods_on_containerd() {
    local i
    for i in $(seq 120); do
        [ "$(in_node journalctl --no-pager -u kubelet.service --since "@$since" -o cat | grep -c 'pod default/pod-[0-9]* running')" -ge "$PODS" ] && return 0
        sleep 0.5
    done
    die "the pods did not come up on $TARGET"
}

back_to_docker() {
    wait_active kubelet.service 60 || die "the kubelet did not come back on Docker"
}

: >"$WORK/tool.jsonl"
: >"$WORK/manual.jsonl"
: >"$WORK/steps.jsonl"
# The pods-down figure of the last line of a timelines file.
last_down() { tail -n 1 "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pods_down"])'; }
for i in $(seq "$RUNS"); do
    # cri-migrate
    pods_back_on_docker
    mark
    in_node cri-migrate migrate --to "$TARGET" --yes --test-image "$TEST_IMAGE" --sandbox-image "$PAUSE" --output json >"$WORK/run.json" ||
        die "cri-migrate failed in run $i: $(cat "$WORK/run.json")"
    wait_pods_on_containerd
    timeline "$since" >>"$WORK/tool.jsonl" || die "no timeline for cri-migrate's run $i"
    [ -n "${BENCH_DEBUG:-}" ] && cat "$(ls -d "$WORK/$NODE"/var/lib/cri-migrate/backups/*/ | tail -n 1)/journal.log" >&2
    [ -n "${BENCH_DEBUG:-}" ] && in_node journalctl --no-pager -u kubelet.service -u containerd.service -u crio.service --since "@$since" -o short-precise | grep -v 'level=info' | tail -25 >&2
    python3 -c 'import json,sys; print(json.dumps([{"step": s["step"], "duration_ms": s["duration_ms"], "detail": s.get("detail")} for s in json.load(open(sys.argv[1]))["steps"]]))' "$WORK/run.json" >>"$WORK/steps.jsonl"
    in_node cri-migrate rollback --yes >/dev/null 2>&1 || die "rollback failed in run $i"
    back_to_docker
    pods_back_on_docker

    # the manual procedure, from a snapshot it is restored from afterwards
    tar -C "$WORK/$NODE" -cf "$WORK/snap.tar" etc/containerd etc/crio etc/containers var/lib/kubelet 2>/dev/null
    mark
    pulled=$(in_node manual-procedure "$TEST_IMAGE" "$PAUSE" "$REGISTRY" "$MIRROR") || die "the manual procedure failed in run $i"
    wait_pods_on_containerd
    timeline "$since" "$pulled" >>"$WORK/manual.jsonl" || die "no timeline for the manual run $i"
    in_node systemctl stop kubelet
    if [ "$TARGET" = crio ]; then
        remove_crio_pods
        rm -f "$WORK/$NODE/etc/crio/crio.conf.d/20-node.conf" "$WORK/$NODE/etc/containers/registries.conf.d/20-node.conf"
    else
        remove_cri_pods
    fi
    tar -C "$WORK/$NODE" -xf "$WORK/snap.tar"
    in_node systemctl restart containerd
    in_node systemctl enable --now docker.socket docker.service >/dev/null 2>&1
    in_node systemctl start kubelet
    back_to_docker
    printf 'run %s: pods down: cri-migrate %s s, manual %s s\n' "$i" "$(last_down "$WORK/tool.jsonl")" "$(last_down "$WORK/manual.jsonl")" >&2
done

{
    python3 "$REPO/bench/summary.py" "$TARGET" "$PODS" "$SHUTDOWN" "$WORK/tool.jsonl" "$WORK/manual.jsonl" "$WORK/steps.jsonl" ||
        die "no summary"
    printf '\nmachine: %s cores, %s, kernel %s; %s\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(uname -r)" "$(date -u +%Y-%m-%d)"
}
