#!/bin/sh
# Build a small OCI image layout from Debian's busybox-static, with no network and no Docker:
#   make-test-image.sh OUT_DIR TAG [LABEL...]
# Layer 1 holds /bin/busybox and /bin/sh; each LABEL adds a layer with /labels/LABEL, so images
# with different labels have different digests and share the busybox layer. A LABEL written
# NAME=MB also holds MB megabytes of incompressible data derived from NAME: the same NAME gives
# the same layer, so images can share big layers (the benchmarks use it). A LABEL written
# NAME#N holds N small files (1 KB each, derived from NAME and their number) under
# /labels/NAME.d/: the many-files case of the benchmarks.
# IMAGE_CMD (a JSON array) replaces the image's command, /bin/sh by default: e.g.
# '["/bin/busybox","sleep","2147483647"]' makes a pause-like image that keeps a sandbox up.
set -eu

main() {
    [ $# -ge 2 ] || { echo "usage: make-test-image.sh OUT_DIR TAG [LABEL...]" >&2; return 2; }
    out=$1
    tag=$2
    shift 2
    busybox=$(command -v busybox) || { echo "make-test-image.sh: busybox-static is not installed" >&2; return 1; }
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$out/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"

    layers=""
    diff_ids=""
    # One history entry a layer: skopeo can then write the image as a schema 1 manifest too.
    history=""
    mkdir -p "$work/l0/bin"
    cp "$busybox" "$work/l0/bin/busybox"
    ln -s busybox "$work/l0/bin/sh"
    add_layer "$work/l0"
    for label in "$@"; do
        name=${label%%=*}
        name=${name%%#*}
        mkdir -p "$work/l-$name/labels"
        printf '%s\n' "$name" >"$work/l-$name/labels/$name"
        case "$label" in
            *'#'*)
                python3 - "$work/l-$name/labels/$name.d" "$name" "${label#*#}" <<'PY'
import hashlib, os, sys
d, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    sub = os.path.join(d, "%03d" % (i // 1000))
    os.makedirs(sub, exist_ok=True)
    seed = hashlib.sha256(("%s/%d" % (name, i)).encode()).digest()
    with open(os.path.join(sub, "f%05d" % i), "wb") as f:
        f.write(seed * 32)
PY
                ;;
            *=*)
                # AES-CTR over zeros with a fixed key: deterministic, and gzip cannot shrink it.
                openssl enc -aes-256-ctr -nosalt -pbkdf2 -pass "pass:$name" </dev/zero 2>/dev/null |
                    head -c "$((${label#*=} * 1048576))" >"$work/l-$name/labels/$name.data"
                ;;
        esac
        add_layer "$work/l-$name"
    done

    config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":${IMAGE_CMD:-[\"/bin/sh\"]},\"Labels\":{\"cri-migrate.test\":\"$tag\"}},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[${diff_ids}]},\"history\":[${history}]}"
    printf '%s' "$config" >"$work/config"
    cdigest=$(blob "$work/config")
    csize=$(wc -c <"$work/config")
    manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cdigest\",\"size\":$csize},\"layers\":[${layers}]}"
    printf '%s' "$manifest" >"$work/manifest"
    mdigest=$(blob "$work/manifest")
    msize=$(wc -c <"$work/manifest")
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$mdigest" "$msize" "$tag" >"$out/index.json"
}

# Store a file as a blob; print its digest.
blob() {
    d=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$out/blobs/sha256/$d"
    echo "$d"
}

add_layer() {
    # Reproducible: sorted names, fixed times and owners, gzip without a timestamp.
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$work/layer.tar" .
    diff=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
    gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"
    ldigest=$(blob "$work/layer.tar.gz")
    lsize=$(wc -c <"$work/layer.tar.gz")
    sep=""
    [ -n "$layers" ] && sep=","
    layers="$layers$sep{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$ldigest\",\"size\":$lsize}"
    diff_ids="$diff_ids$sep\"sha256:$diff\""
    history="$history$sep{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"make-test-image.sh\"}"
}

main "$@"
