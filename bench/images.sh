#!/usr/bin/env bash
# Carrying Docker's images over to containerd, three ways on the same node in a box, in the same
# run, RUNS runs each after emptying containerd's k8s.io namespace: `cri-migrate images` as it
# goes by default (Docker's overlay2 layers hard-linked into containerd's snapshots), the same
# with --copy-images (Docker's export streamed in), and `docker save IMAGES | ctr -n k8s.io
# images import -`; the time of each and the disk space it took (df before and after). Two
# cases: COUNT images each with the busybox layer, a SHARED_MB layer they all share and a
# UNIQUE_MB layer of its own (incompressible); then FCOUNT images each with FILES small files
# (1 KB). The disk's raw write speed (dd, direct I/O) for scale.
#   bench/images.sh [RUNS] [COUNT] [SHARED_MB] [UNIQUE_MB] [FCOUNT] [FILES]
#                                   defaults 3 20 200 40 4 10000 (~1 GB; 40000 files)
set -uo pipefail
source "$(dirname "$0")/../tests/e2e/lib.sh"
RUNS=${1:-3}
COUNT=${2:-20}
SHARED_MB=${3:-200}
UNIQUE_MB=${4:-40}
FCOUNT=${5:-4}
FILES=${6:-10000}

require_tools
command -v openssl >/dev/null || die "openssl is needed to make the image data"
WORK=$(mktemp -d /var/tmp/cri-migrate-bench.XXXXXX)
trap cleanup EXIT
(cd "$REPO" && cargo build --release --workspace --bins --quiet) || die "cargo build --release failed"
build_rootfs
setup_registries
log "pushing $COUNT images ($SHARED_MB MB shared, $UNIQUE_MB MB each) and $FCOUNT images of $FILES files"
BIG=()
for i in $(seq "$COUNT"); do
    push_image "$REGISTRY" "bench/img$i" 1 "shared=$SHARED_MB" "unique$i=$UNIQUE_MB" >/dev/null || die "push failed"
    BIG+=("$REGISTRY/bench/img$i:1")
done
MANY=()
for i in $(seq "$FCOUNT"); do
    push_image "$REGISTRY" "bench/files$i" 1 "files$i#$FILES" >/dev/null || die "push failed"
    MANY+=("$REGISTRY/bench/files$i:1")
done

NODE=bench
make_node "$NODE" 1.23.17 "--network-plugin=cni"
install -m 0755 "$REPO/target/release/cri-migrate" "$WORK/$NODE/usr/local/bin/cri-migrate"
boot_node "$NODE"
wait_active docker.service 60 || die "Docker did not start"

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

used() { in_node sh -c 'sync; df -B1 --output=used /var/lib/containerd | tail -n 1'; }

# measure COMMAND...: "SECONDS BYTES", the wall time of a command run in the node and the disk
# space it took.
measure() {
    local t0 t1 u0 u1
    u0=$(used)
    t0=$(date +%s.%N)
    in_node "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; die "failed: $*"; }
    t1=$(date +%s.%N)
    u1=$(used)
    echo "$(echo "$t1 - $t0" | bc -l) $((u1 - u0))"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# bench_case NAME BYTES FILES IMAGE...: pull, measure the three ways, print a table, remove
# (FILES: how many small files the images hold, or empty).
bench_case() {
    local name=$1 bytes=$2 nfiles=$3
    shift 3
    local images=("$@") i
    log "$name: docker pull of ${#images[@]} images"
    for img in "${images[@]}"; do in_node timeout 600 docker pull -q "$img" >/dev/null || die "docker pull $img failed"; done
    # The default way must be the linked one here, for every image.
    empty_k8s_io
    in_node cri-migrate images --to containerd --images all --output json >"$WORK/check.json" || die "cri-migrate images failed"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); bad=[i["names"] for i in r["images"] if i.get("via")!="linked"]; sys.exit("not linked: %s" % bad if bad else 0)' "$WORK/check.json" || die "the images were not linked"
    local -a LT LD CT CD PT PD
    for i in $(seq "$RUNS"); do
        empty_k8s_io
        read -r t d <<<"$(measure cri-migrate images --to containerd --images all --output json)"
        LT+=("$t"); LD+=("$d")
        empty_k8s_io
        read -r t d <<<"$(measure cri-migrate images --to containerd --images all --copy-images --output json)"
        CT+=("$t"); CD+=("$d")
        empty_k8s_io
        read -r t d <<<"$(measure sh -c "docker save ${images[*]} | ctr -n k8s.io images import - ")"
        PT+=("$t"); PD+=("$d")
        printf '%s run %s: linked %.2f s, copied %.2f s, docker save | ctr import %.2f s\n' "$name" "$i" "${LT[-1]}" "${CT[-1]}" "${PT[-1]}" >&2
    done
    local mb lt ct pt
    mb=$(echo "$bytes / 1000000" | bc)
    lt=$(median "${LT[@]}"); ct=$(median "${CT[@]}"); pt=$(median "${PT[@]}")
    echo
    echo "$name: ${#images[@]} images, $mb MB of image data${nfiles:+, $nfiles files}"
    echo
    echo "| | runs | median (s) | MB/s | disk taken (MB, median) | all runs (s) |"
    echo "|---|---|---|---|---|---|"
    printf '| cri-migrate images (linked) | %s | %.2f | %.0f | %.1f | %s |\n' "$RUNS" "$lt" "$(echo "$mb / $lt" | bc -l)" "$(echo "$(median "${LD[@]}") / 1000000" | bc -l)" "$(printf '%.2f ' "${LT[@]}")"
    printf '| cri-migrate images --copy-images | %s | %.2f | %.0f | %.1f | %s |\n' "$RUNS" "$ct" "$(echo "$mb / $ct" | bc -l)" "$(echo "$(median "${CD[@]}") / 1000000" | bc -l)" "$(printf '%.2f ' "${CT[@]}")"
    printf '| docker save \\| ctr import | %s | %.2f | %.0f | %.1f | %s |\n' "$RUNS" "$pt" "$(echo "$mb / $pt" | bc -l)" "$(echo "$(median "${PD[@]}") / 1000000" | bc -l)" "$(printf '%.2f ' "${PT[@]}")"
    printf '\nratio pipeline / linked: %.1f; copied / linked: %.1f; linked disk / data: %.2f %%\n' "$(echo "$pt / $lt" | bc -l)" "$(echo "$ct / $lt" | bc -l)" "$(echo "100 * $(median "${LD[@]}") / $bytes" | bc -l)"
    empty_k8s_io
    for img in "${images[@]}"; do in_node docker rmi -f "$img" >/dev/null; done
}

# The data to carry: each layer once (Docker's per-image sizes count the shared layer each time).
bench_case "1 GB case" $(((SHARED_MB + COUNT * UNIQUE_MB) * 1048576)) "" "${BIG[@]}"
bench_case "many-files case" $((FCOUNT * FILES * 1024)) "$((FCOUNT * FILES))" "${MANY[@]}"
DD=$(in_node sh -c 'dd if=/dev/zero of=/var/lib/containerd/dd.test bs=1M count=1024 oflag=direct 2>&1; rm -f /var/lib/containerd/dd.test' | awk '/copied/ { print $(NF-1), $NF }')
printf '\ndd to the same disk: %s\n' "$DD"
printf 'machine: %s cores, %s, kernel %s; %s\n' "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(uname -r)" "$(date -u +%Y-%m-%d)"
