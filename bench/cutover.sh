#!/usr/bin/env bash
# Cutover downtime, from the kubelet stopping until it is up on containerd with a test image
# pulled through CRI: cri-migrate against the Kubernetes documentation's manual procedure
# (bench/manual-procedure.sh), on the same node in a box, in the same run, RUNS runs each.
# Both are timed the same way, from the node's journal: "Stopping kubelet" to the kubelet
# stand-in's "ready" line (and, for the manual procedure, to the end of its check pull, which
# comes after; cri-migrate pulls before it starts the kubelet). Needs root.
#   bench/cutover.sh [RUNS]       default 5; prints a table (record it in docs/performance.md)
#   BENCH_DEBUG=1 bench/cutover.sh   also prints the kubelet's and containerd's journal per run
set -uo pipefail
source "$(dirname "$0")/../tests/e2e/lib.sh"
RUNS=${1:-5}

require_tools
WORK=$(mktemp -d /var/tmp/cri-migrate-bench.XXXXXX)
trap cleanup EXIT
(cd "$REPO" && cargo build --release --workspace --bins --quiet) || die "cargo build --release failed"
build_rootfs
setup_registries

NODE=bench
# No private pause image here: the manual procedure writes containerd's default sandbox image,
# and the stand-in would (rightly) refuse it. Both runs pull $TEST_IMAGE as their check.
make_node "$NODE" 1.23.17 "--network-plugin=cni"
rm -f "$WORK/$NODE/etc/kubelet-standin/sandbox-image"
install -m 0755 "$REPO/target/release/cri-migrate" "$WORK/$NODE/usr/local/bin/cri-migrate"
install -m 0755 "$REPO/target/release/kubelet-standin" "$WORK/$NODE/usr/bin/kubelet"
install -m 0755 "$REPO/bench/manual-procedure.sh" "$WORK/$NODE/usr/local/bin/manual-procedure"
boot_node "$NODE"
wait_active docker.service 60 && wait_active kubelet.service 60 || die "the node did not come up"
docker_pull_images || die "Docker could not pull the test images"

# A point in time for the journal, after everything before it: journalctl takes whole seconds.
mark() {
    since=$(($(date +%s) + 1))
    sleep 1.2
}

# Seconds between "Stopping kubelet" and the stand-in's ready line after it, both since $1.
journal_downtime() {
    in_node journalctl --no-pager -u kubelet.service --since "@$1" -o short-unix | awk '
        /Stopping kubelet/ && !t0 { t0 = $1 }
        t0 && /ready on unix:\/\/\/run\/containerd/ { print t0 " " $1; exit }'
}

back_to_docker() {
    wait_active kubelet.service 60 || die "the kubelet did not come back on Docker"
}

declare -a TOOL MANUAL
for i in $(seq "$RUNS"); do
    # cri-migrate
    mark
    in_node cri-migrate migrate --to containerd --yes --test-image "$TEST_IMAGE" --output json >"$WORK/run.json" ||
        die "cri-migrate failed in run $i: $(cat "$WORK/run.json")"
    read -r t0 t1 <<<"$(journal_downtime "$since")"
    TOOL+=("$(echo "$t1 - $t0" | bc -l)")
    [ -n "${BENCH_DEBUG:-}" ] && in_node journalctl --no-pager -u kubelet.service -u containerd.service --since "@$since" -o short-precise | grep -v 'level=info' | tail -25 >&2
    # Where cri-migrate's time went, for the slow runs.
    python3 -c 'import json,sys; [print("   ", s["duration_ms"], "ms", s["step"], file=sys.stderr) for s in json.load(open(sys.argv[1]))["steps"] if s["duration_ms"] >= 100]' "$WORK/run.json"
    in_node cri-migrate rollback --yes >/dev/null 2>&1 || die "rollback failed in run $i"
    back_to_docker

    # the manual procedure, from a snapshot it is restored from afterwards
    tar -C "$WORK/$NODE" -cf "$WORK/snap.tar" etc/containerd var/lib/kubelet
    mark
    pulled=$(in_node manual-procedure "$TEST_IMAGE") || die "the manual procedure failed in run $i"
    read -r t0 t1 <<<"$(journal_downtime "$since")"
    end=$(echo "if ($pulled > $t1) $pulled else $t1" | bc -l)
    MANUAL+=("$(echo "$end - $t0" | bc -l)")
    in_node systemctl stop kubelet
    tar -C "$WORK/$NODE" -xf "$WORK/snap.tar"
    in_node systemctl restart containerd
    in_node systemctl enable --now docker.socket docker.service >/dev/null 2>&1
    in_node systemctl start kubelet
    back_to_docker
    printf 'run %s: cri-migrate %.2f s, manual %.2f s\n' "$i" "${TOOL[-1]}" "${MANUAL[-1]}" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mt=$(median "${TOOL[@]}")
mm=$(median "${MANUAL[@]}")
{
    echo "| | runs | median downtime (s) | all runs (s) |"
    echo "|---|---|---|---|"
    printf '| cri-migrate | %s | %.2f | %s |\n' "$RUNS" "$mt" "$(printf '%.2f ' "${TOOL[@]}")"
    printf '| manual procedure | %s | %.2f | %s |\n' "$RUNS" "$mm" "$(printf '%.2f ' "${MANUAL[@]}")"
    printf '\nratio (manual / cri-migrate): %.2f\n' "$(echo "$mm / $mt" | bc -l)"
    printf '\nmachine: %s cores, %s, kernel %s; %s\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(uname -r)" "$(date -u +%Y-%m-%d)"
}
