#!/usr/bin/env bash
# Carrying Docker's images over to containerd: `cri-migrate images --to containerd --images all`
# against `docker save IMAGES | ctr -n k8s.io images import -`, on the same node in a box, in the
# same run, RUNS runs each, after emptying containerd's k8s.io namespace each time; and the disk's
# raw write speed (dd, direct I/O) for scale. The images: COUNT images, each with the busybox
# layer, a SHARED_MB layer they all share and a UNIQUE_MB layer of its own (incompressible).
#   bench/images.sh [RUNS] [COUNT] [SHARED_MB] [UNIQUE_MB]     defaults 5 20 200 40 (~1 GB)
set -uo pipefail
source "$(dirname "$0")/../tests/e2e/lib.sh"
RUNS=${1:-5}
COUNT=${2:-20}
SHARED_MB=${3:-200}
UNIQUE_MB=${4:-40}

require_tools
command -v openssl >/dev/null || die "openssl is needed to make the image data"
WORK=$(mktemp -d /var/tmp/cri-migrate-bench.XXXXXX)
trap cleanup EXIT
(cd "$REPO" && cargo build --release --workspace --bins --quiet) || die "cargo build --release failed"
build_rootfs
setup_registries
log "pushing $COUNT images ($SHARED_MB MB shared, $UNIQUE_MB MB each)"
IMAGES=()
for i in $(seq "$COUNT"); do
    push_image "$REGISTRY" "bench/img$i" 1 "shared=$SHARED_MB" "unique$i=$UNIQUE_MB" >/dev/null || die "push failed"
    IMAGES+=("$REGISTRY/bench/img$i:1")
done

NODE=bench
make_node "$NODE" 1.23.17 "--network-plugin=cni"
install -m 0755 "$REPO/target/release/cri-migrate" "$WORK/$NODE/usr/local/bin/cri-migrate"
boot_node "$NODE"
wait_active docker.service 60 || die "Docker did not start"
log "docker pull of the images"
for img in "${IMAGES[@]}"; do in_node timeout 300 docker pull -q "$img" >/dev/null || die "docker pull $img failed"; done
# The data to carry: each layer once (Docker's per-image sizes count the shared layer each time).
BYTES=$(((SHARED_MB + COUNT * UNIQUE_MB) * 1048576))

# Images, content and snapshots: an unpacked layer left from the run before would be skipped.
empty_k8s_io() {
    in_node sh -c 'ctr -n k8s.io images ls -q | xargs -r ctr -n k8s.io images rm --sync >/dev/null
        ctr -n k8s.io content ls -q | xargs -r ctr -n k8s.io content rm >/dev/null
        for pass in 1 2 3 4 5 6 7 8 9 10; do
            keys=$(ctr -n k8s.io snapshots ls | awk "NR > 1 { print \$1 }")
            [ -n "$keys" ] || break
            for k in $keys; do ctr -n k8s.io snapshots rm "$k" 2>/dev/null; done
        done' 2>/dev/null
    [ "$(in_node ctr -n k8s.io snapshots ls | wc -l)" -le 1 ] || die "k8s.io still has snapshots"
    in_node sync
}

seconds() { # seconds COMMAND...: wall time of a command run in the node
    local t0 t1
    t0=$(date +%s.%N)
    in_node "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; die "failed: $*"; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

declare -a TOOL PIPE
for i in $(seq "$RUNS"); do
    empty_k8s_io
    TOOL+=("$(seconds cri-migrate images --to containerd --images all --output json)")
    empty_k8s_io
    PIPE+=("$(seconds sh -c "docker save ${IMAGES[*]} | ctr -n k8s.io images import - ")")
    printf 'run %s: cri-migrate %.1f s, docker save | ctr import %.1f s\n' "$i" "${TOOL[-1]}" "${PIPE[-1]}" >&2
done
DD=$(in_node sh -c 'dd if=/dev/zero of=/var/lib/containerd/dd.test bs=1M count=1024 oflag=direct 2>&1; rm -f /var/lib/containerd/dd.test' | awk '/copied/ { print $(NF-1), $NF }')

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
mt=$(median "${TOOL[@]}")
mp=$(median "${PIPE[@]}")
mb=$(echo "$BYTES / 1000000" | bc)
echo "| | runs | median (s) | MB/s | all runs (s) |"
echo "|---|---|---|---|---|"
printf '| cri-migrate images | %s | %.1f | %.0f | %s |\n' "$RUNS" "$mt" "$(echo "$mb / $mt" | bc -l)" "$(printf '%.1f ' "${TOOL[@]}")"
printf '| docker save \\| ctr import | %s | %.1f | %.0f | %s |\n' "$RUNS" "$mp" "$(echo "$mb / $mp" | bc -l)" "$(printf '%.1f ' "${PIPE[@]}")"
printf '\n%s images, %s MB of image data; ratio (pipeline / cri-migrate): %.2f; dd to the same disk: %s\n' "$COUNT" "$mb" "$(echo "$mp / $mt" | bc -l)" "$DD"
printf 'machine: %s cores, %s, kernel %s; %s\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(uname -r)" "$(date -u +%Y-%m-%d)"
