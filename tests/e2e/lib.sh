# Shared by tests/e2e/run.sh and bench/cutover.sh: a Debian 12 node in a box (debootstrap +
# systemd-nspawn) running Docker and a kubelet stand-in, and registries on 127.0.0.1.
# Sourced by bash; every wait is bounded.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${CRI_MIGRATE_E2E_CACHE:-/var/cache/cri-migrate-e2e}
PACKAGES=systemd,systemd-sysv,dbus,docker.io,containerd,runc,ca-certificates,iproute2,procps
# Installed after debootstrap (its postinst fails inside debootstrap's minbase): skopeo, for
# carrying images into CRI-O's containers-storage (there is no CRI-O package here).
# man-db: the package test reads `man cri-migrate` in a fresh node; python3: Ansible targets;
# crun: Docker's default runtime in scenario 21, carried as a containerd handler.
# conmon and libsqlite3-0: CRI-O (scenario 22) runs its containers under conmon; 1.36 links
# sqlite.
EXTRA_PACKAGES="skopeo man-db python3 crun conmon libsqlite3-0"
NODES=()
REGISTRY_PIDS=()

log() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Scenarios and checks, shared by run.sh and ansible.sh; `summary` ends a script with
# `N passed, M failed` (what .ci/run counts) and its status.
PASSED=0
FAILED=0
FAILURES=()

# check DESCRIPTION COMMAND...: one check, said as ok or FAIL.
check() {
    local desc=$1
    shift
    if "$@"; then
        printf '    ok   %s\n' "$desc" >&2
        return 0
    fi
    printf '    FAIL %s\n' "$desc" >&2
    return 1
}

# scenario NAME FUNCTION: one scenario, counted. E2E_ONLY="9 11" runs only the scenarios whose
# names start with these numbers (while working on them).
scenario() {
    local name=$1
    shift
    if [ -n "${E2E_ONLY:-}" ] && [[ " $E2E_ONLY " != *" ${name%%.*} "* ]]; then
        return 0
    fi
    log "scenario: $name"
    if "$@"; then
        PASSED=$((PASSED + 1))
        printf 'PASS %s\n' "$name" >&2
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$name")
        printf 'FAIL %s\n' "$name" >&2
    fi
}

summary() {
    echo
    local f
    for f in "${FAILURES[@]}"; do echo "failed: $f"; done
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

# Skip loudly where the test cannot run, fail under CI.
require_tools() {
    local missing=()
    [ "$(id -u)" = 0 ] || missing+=("root")
    for t in debootstrap systemd-nspawn nsenter docker-registry skopeo busybox sha256sum; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "${CI:-}" = true ]; then
            die "CI=true and the end-to-end test cannot run: missing ${missing[*]}"
        fi
        printf '\n*** SKIPPED end-to-end test: missing %s ***\n' "${missing[*]}" >&2
        exit 0
    fi
}

# The Debian 12 root file system, built once and cached outside the repository.
build_rootfs() {
    local stamp="$CACHE/rootfs/.cri-migrate-e2e-$PACKAGES,$EXTRA_PACKAGES"
    if [ -e "$stamp" ]; then
        return 0
    fi
    log "debootstrap Debian 12 into $CACHE/rootfs (cached for later runs)"
    mkdir -p "$CACHE"
    rm -rf "$CACHE/rootfs.tmp" "$CACHE/rootfs"
    local mirror
    mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')
    [ -n "$mirror" ] || mirror=$(grep -hs '^deb ' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*"
    timeout 1200 debootstrap --variant=minbase --include="$PACKAGES" bookworm "$CACHE/rootfs.tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    timeout 900 systemd-nspawn --quiet --register=no --keep-unit -D "$CACHE/rootfs.tmp" --pipe sh -c \
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $EXTRA_PACKAGES" \
        >>"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "installing $EXTRA_PACKAGES into the node failed"; }
    mv "$CACHE/rootfs.tmp" "$CACHE/rootfs"
    touch "$stamp"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry DIR PORT: Debian's docker-registry on 127.0.0.1:PORT.
start_registry() {
    local dir=$1 port=$2
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
compatibility:
  schema1:
    enabled: true
YML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    REGISTRY_PIDS+=($!)
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$dir/log" >&2
    die "docker-registry on 127.0.0.1:$port did not start"
}

# push_image ADDR REPO TAG LABEL...: build a small image (tests/tools/make-test-image.sh), push
# it, print its manifest digest. PUSH_FORMAT=v2s1 pushes it as a schema 1 manifest (as old
# registries served them; the registries here accept them).
push_image() {
    local addr=$1 repo=$2 tag=$3
    shift 3
    local layout
    layout=$(mktemp -d)
    "$REPO/tests/tools/make-test-image.sh" "$layout" "$tag" "$@"
    timeout 120 skopeo copy --quiet ${PUSH_FORMAT:+--format "$PUSH_FORMAT"} --dest-tls-verify=false --digestfile "$layout/digest" "oci:$layout:$tag" "docker://$addr/$repo:$tag"
    cat "$layout/digest"
    rm -rf "$layout"
}

# Docker's containerd.io ships this config.toml: the CRI plugin disabled. One line is this
# machine's: its root lacks CAP_SYS_RESOURCE, so runc cannot lower a sandbox's oom_score_adj
# below containerd's own; `restrict_oom_score_adj` (what rootless setups use) keeps it there.
# The migration must keep it (an unrelated key in the CRI plugin's table).
DOCKER_CONTAINERD_TOML='#   Copyright 2018-2022 Docker Inc.

#   Licensed under the Apache License, Version 2.0 (the "License");
#   you may not use this file except in compliance with the License.

disabled_plugins = ["cri"]

#root = "/var/lib/containerd"
#state = "/run/containerd"

[plugins.cri]
  restrict_oom_score_adj = true
'

# A pod's process: PID 1 of its container, ending on SIGTERM as a real workload does (a process
# without a handler ignores SIGTERM as PID 1, and every stop would wait its grace period); it says
# `term` in its log when the signal reaches it and ends a little later (a second signal meanwhile
# would say it again). As a shell line, and as an image command (JSON). The benchmark gives its
# own (a fixed shutdown time).
POD_SH=${POD_SH:-"trap 'echo term; sleep 0.2; exit 0' TERM INT; while :; do sleep 1; done"}
POD_CMD='["/bin/sh","-c","'"$POD_SH"'"]'

# write_static_pod NAME I: pod-I, a static pod of the node's kubelet running $TEST_IMAGE (the
# stand-in runs it through CRI once it is on a CRI runtime).
write_static_pod() {
    local dir="$WORK/$1/etc/kubernetes/manifests"
    mkdir -p "$dir"
    cat >"$dir/pod-$2.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: pod-$2
  namespace: default
spec:
  containers:
  - name: app
    image: $TEST_IMAGE
    command: ["/bin/sh", "-c", "$POD_SH"]
YAML
}

# run_docker_pod I [RESTART]: pod-I's container in the booted node's Docker. Restart policy
# RESTART, `always` by default (Docker brings it back whenever it starts again: the tests' Docker
# after a rollback); `no` is as dockershim ran a pod's containers (the kubelet restarted them).
run_docker_pod() {
    in_node docker run -d --restart "${2:-always}" --network none --name "k8s_app_pod-$1" "$TEST_IMAGE" \
        /bin/sh -c "$POD_SH" >/dev/null
}
# Nodes made so far: each gets its own CNI bridge and address range (nodes share the host's
# network namespace).
NODE_COUNT=0

# The test nodes run real containers (runtime-facts §11): systemd-nspawn mounts the cgroup v1
# controllers read-only inside, so this unit remounts them writable before any runtime starts.
CGROUP_RW_UNIT='[Unit]
Description=Writable cgroup controllers for containers (cri-migrate e2e test node)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service docker.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c '"'"'for c in /sys/fs/cgroup/*/; do mountpoint -q "$c" && mount -o remount,bind,rw "$c"; done; true'"'"'

[Install]
WantedBy=sysinit.target
'

# make_node NAME KUBELET_VERSION KUBEADM_ARGS: a copy of the root file system, set up as a kubeadm
# node on Docker with the kubelet stand-in.
make_node() {
    local name=$1 version=$2 args=$3
    local root="$WORK/$name"
    log "node $name: kubelet $version on Docker"
    cp -a "$CACHE/rootfs" "$root"
    echo "$name" >"$root/etc/hostname"
    mkdir -p "$root/etc/docker" "$root/etc/containerd" "$root/var/lib/kubelet" "$root/etc/kubelet-standin" \
        "$root/etc/systemd/system/kubelet.service.d" "$root/etc/cni/net.d" "$root/opt/cni/bin" "$root/usr/local/bin"
    cat >"$root/etc/docker/daemon.json" <<JSON
{
  "iptables": false,
  "ip-forward": false,
  "bridge": "none",
  "exec-opts": ["native.cgroupdriver=systemd"],
  "registry-mirrors": ["http://$MIRROR"],
  "insecure-registries": ["$REGISTRY"],
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m"}
}
JSON
    printf '%s' "$DOCKER_CONTAINERD_TOML" >"$root/etc/containerd/config.toml"
    # kubeadm's kubelet unit and drop-in, as the kubelet and kubeadm packages install them.
    cat >"$root/lib/systemd/system/kubelet.service" <<'UNIT'
[Unit]
Description=kubelet: The Kubernetes Node Agent (cri-migrate e2e stand-in)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=2

[Install]
WantedBy=multi-user.target
UNIT
    cat >"$root/etc/systemd/system/kubelet.service.d/10-kubeadm.conf" <<'DROPIN'
# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
DROPIN
    ln -sf /lib/systemd/system/kubelet.service "$root/etc/systemd/system/multi-user.target.wants/kubelet.service"
    printf 'KUBELET_KUBEADM_ARGS="%s"\n' "$args" >"$root/var/lib/kubelet/kubeadm-flags.env"
    cat >"$root/var/lib/kubelet/config.yaml" <<'YAML'
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
staticPodPath: /etc/kubernetes/manifests
YAML
    echo "$version" >"$root/etc/kubelet-standin/version"
    echo "$PAUSE" >"$root/etc/kubelet-standin/sandbox-image"
    printf '\nPackage: kubelet\nStatus: install ok installed\nPriority: optional\nVersion: %s-00\n' "$version" >>"$root/var/lib/dpkg/status"
    install -m 0755 "$REPO/target/debug/kubelet-standin" "$root/usr/bin/kubelet"
    install -m 0755 "$REPO/target/debug/cri-migrate" "$root/usr/local/bin/cri-migrate"
    # Real CNI plugins (Debian's containernetworking-plugins) and a bridge network of the node's
    # own: test pods and the stand-in's pods attach to it.
    NODE_COUNT=$((NODE_COUNT + 1))
    cp /usr/lib/cni/* "$root/opt/cni/bin/"
    cat >"$root/etc/cni/net.d/10-pods.conflist" <<JSON
{"cniVersion":"0.4.0","name":"pods","plugins":[{"type":"bridge","bridge":"crm-$name","isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.$((200 + NODE_COUNT % 50)).0.0/24"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
    echo "crm-$name" >"$WORK/$name.bridge"
    printf '%s' "$CGROUP_RW_UNIT" >"$root/etc/systemd/system/cgroup-rw.service"
    mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
    ln -sf /etc/systemd/system/cgroup-rw.service "$root/etc/systemd/system/sysinit.target.wants/cgroup-rw.service"
}

# containerd 2.x from Debian unstable (tests/tools/fetch-sid.sh, which .ci/run runs first), for
# nodes that move onto it.
CONTAINERD2_ROOT=${CRI_MIGRATE_CONTAINERD2_ROOT:-/var/cache/cri-migrate/containerd2/root}
have_containerd2() { [ -x "$CONTAINERD2_ROOT/usr/bin/containerd" ]; }

# install_containerd2 NAME: the node's containerd becomes 2.x, as its package would install it:
# binaries, its unit (which sets no LimitNOFILE), and the package database's version. Docker
# 20.10 runs on it (the node's Docker keeps --containerd=/run/containerd/containerd.sock).
install_containerd2() {
    local root="$WORK/$1" v
    cp "$CONTAINERD2_ROOT"/usr/bin/containerd "$CONTAINERD2_ROOT"/usr/bin/containerd-shim-runc-v2 "$CONTAINERD2_ROOT"/usr/bin/ctr "$root/usr/bin/"
    cp "$CONTAINERD2_ROOT"/usr/lib/systemd/system/containerd.service "$root/lib/systemd/system/containerd.service"
    v=$("$CONTAINERD2_ROOT/usr/bin/containerd" --version | awk '{print $3}')
    sed -i "/^Package: containerd\$/,/^\$/ s/^Version: .*/Version: $v/" "$root/var/lib/dpkg/status"
}

# CRI-O builds (../shared/runtimes, or where .ci/run copied them): crio and pinns.
crio_dir() { # crio_dir VERSION
    case "$1" in
        1.24*) echo "${CRI_MIGRATE_CRIO_124:-$REPO/../shared/runtimes/crio-1.24.6}" ;;
        *) echo "${CRI_MIGRATE_CRIO_136:-$REPO/../shared/runtimes/crio-1.36.3}" ;;
    esac
}
have_crio() { [ -x "$(crio_dir "$1")/crio" ] && [ -x "$(crio_dir "$1")/pinns" ]; }

# install_crio NAME VERSION: CRI-O installed into the node as its release bundle lays it, not
# started: crio and pinns in /usr/local/bin, the upstream crio.service in /etc/systemd/system
# (not enabled), an empty /etc/crio/crio.conf, the containers policy, and the bundle's example
# bridge network in the CNI config directory (first by name: CRI-O would load it, not the
# node's, unless told). conmon is Debian's (the node's packages).
install_crio() {
    local root="$WORK/$1" dir
    dir=$(crio_dir "$2")
    install -m 0755 "$dir/crio" "$dir/pinns" "$root/usr/local/bin/"
    install -m 0644 "$dir/crio.service" "$root/etc/systemd/system/crio.service"
    mkdir -p "$root/etc/crio" "$root/etc/containers"
    : >"$root/etc/crio/crio.conf"
    echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$root/etc/containers/policy.json"
    cat >"$root/etc/cni/net.d/10-crio-bridge.conflist" <<'JSON'
{"cniVersion":"0.4.0","name":"crio","plugins":[{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"hairpinMode":true,"ipam":{"type":"host-local","routes":[{"dst":"0.0.0.0/0"}],"ranges":[[{"subnet":"10.85.0.0/16"}]]}}]}
JSON
}

# cri-dockerd 0.4.3 (../shared/runtimes, or where .ci/run copied it).
CRI_DOCKERD_DIR=${CRI_MIGRATE_CRI_DOCKERD:-$REPO/../shared/runtimes/cri-dockerd-0.4.3}
have_cri_dockerd() { [ -x "$CRI_DOCKERD_DIR/cri-dockerd" ]; }

# install_cri_dockerd NAME: the real cri-dockerd as its packages install it — the binary in
# /usr/bin, its upstream cri-docker.service and cri-docker.socket in /lib/systemd/system, both
# enabled — with the administrator's drop-in its install docs show (CNI, the node's pause
# image).
install_cri_dockerd() {
    local root="$WORK/$1"
    install -m 0755 "$CRI_DOCKERD_DIR/cri-dockerd" "$root/usr/bin/cri-dockerd"
    install -m 0644 "$CRI_DOCKERD_DIR/cri-docker.service" "$CRI_DOCKERD_DIR/cri-docker.socket" "$root/lib/systemd/system/"
    mkdir -p "$root/etc/systemd/system/cri-docker.service.d" "$root/etc/systemd/system/sockets.target.wants"
    cat >"$root/etc/systemd/system/cri-docker.service.d/10-cni.conf" <<UNIT
[Service]
ExecStart=
ExecStart=/usr/bin/cri-dockerd --container-runtime-endpoint fd:// --network-plugin=cni --pod-infra-container-image=$PAUSE
UNIT
    ln -sf /lib/systemd/system/cri-docker.service "$root/etc/systemd/system/multi-user.target.wants/cri-docker.service"
    ln -sf /lib/systemd/system/cri-docker.socket "$root/etc/systemd/system/sockets.target.wants/cri-docker.socket"
    printf '\nPackage: cri-dockerd\nStatus: install ok installed\nPriority: optional\nVersion: 0.4.3.3-0.debian-bookworm\n' >>"$root/var/lib/dpkg/status"
}

# boot_node NAME: systemd as PID 1 in the node; sets NODE_PID (PID 1 seen from the host).
boot_node() {
    local name=$1 root="$WORK/$1"
    # All capabilities and the key and bpf system calls: Docker and containerd run containers
    # in the node (runtime-facts §11).
    systemd-nspawn --boot --register=no --keep-unit --quiet -D "$root" --machine="$name" \
        --capability=all --system-call-filter='add_key keyctl request_key bpf' >"$WORK/$name.console" 2>&1 &
    local nspawn=$!
    echo "$nspawn" >"$WORK/$name.nspawn"
    NODES+=("$name")
    local i
    NODE_PID=""
    # The container's systemd, not a helper nspawn forks on the way.
    for i in $(seq 200); do
        local p
        for p in $(ps --ppid "$nspawn" -o pid=); do
            if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ]; then
                NODE_PID=$p
            fi
        done
        [ -n "$NODE_PID" ] && break
        sleep 0.1
    done
    [ -n "$NODE_PID" ] || { cat "$WORK/$name.console" >&2; die "node $name did not start"; }
    echo "$NODE_PID" >"$WORK/$name.pid"
    local state
    state=$(timeout 120 nsenter -t "$NODE_PID" -a systemctl is-system-running --wait 2>/dev/null || true)
    log "node $name booted (PID 1 is $NODE_PID on the host): $state"
}

in_node() { nsenter -t "$NODE_PID" -a -- env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# Wait until a unit is active (bounded).
wait_active() {
    local unit=$1 i
    for i in $(seq "${2:-60}"); do
        [ "$(in_node systemctl is-active "$unit" 2>/dev/null)" = active ] && return 0
        sleep 1
    done
    return 1
}

stop_node() {
    local name=$1
    local nspawn pid
    nspawn=$(cat "$WORK/$name.nspawn" 2>/dev/null) || return 0
    pid=$(cat "$WORK/$name.pid" 2>/dev/null) || true
    if kill -0 "$nspawn" 2>/dev/null; then
        # SIGTERM to systemd-nspawn does not stop it here: ask systemd inside.
        [ -n "$pid" ] && nsenter -t "$pid" -a systemctl poweroff >/dev/null 2>&1 || true
        local i
        for i in $(seq 60); do
            kill -0 "$nspawn" 2>/dev/null || break
            sleep 1
        done
        kill -9 "$nspawn" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$WORK/$name.nspawn"
    # The node's CNI bridge lives in the host's network namespace.
    [ -e "$WORK/$name.bridge" ] && ip link delete "$(cat "$WORK/$name.bridge")" >/dev/null 2>&1
    rm -f "$WORK/$name.bridge"
    return 0
}

cleanup() {
    local n
    for n in "${NODES[@]}"; do stop_node "$n"; done
    # The host's forwarding as it was before the test set it.
    [ -n "${FORWARD_WAS:-}" ] && echo "$FORWARD_WAS" >/proc/sys/net/ipv4/ip_forward 2>/dev/null
    for n in "${REGISTRY_PIDS[@]}"; do kill "$n" 2>/dev/null || true; done
    # Never delete a node's root while it runs: only after its nspawn is gone.
    if [ -n "${WORK:-}" ] && [ -z "${KEEP_WORK:-}" ]; then
        local busy=0
        for n in "${NODES[@]}"; do [ -e "$WORK/$n.nspawn" ] && busy=1; done
        [ "$busy" = 0 ] && rm -rf "$WORK"
    fi
}

# The node's /etc and /var/lib/kubelet: paths, modes, owners and contents, one line each.
node_state() {
    local root="$WORK/$1"
    (cd "$root" && find etc var/lib/kubelet \( -type f -o -type l \) ! -path 'etc/machine-id' -print0 | sort -z |
        xargs -0 stat -c '%n %a %u:%g %s' && find etc var/lib/kubelet -type f ! -path 'etc/machine-id' -print0 | sort -z | xargs -0 sha256sum)
}

# Registries on the host's loopback (the node shares the host's network): one insecure registry
# with the test images and the pause image, and a Docker Hub mirror holding an image found
# nowhere else.
setup_registries() {
    local rp mp
    # The nodes share the host's network namespace, where /proc/sys is read-only to them: the
    # CNI bridge plugin of a test pod (isGateway) enables forwarding only if it is off, so it is
    # turned on here (as a running dockerd would have) and put back by cleanup.
    FORWARD_WAS=$(cat /proc/sys/net/ipv4/ip_forward)
    echo 1 >/proc/sys/net/ipv4/ip_forward
    rp=$(free_port)
    mp=$(free_port)
    REGISTRY=127.0.0.1:$rp
    MIRROR=127.0.0.1:$mp
    start_registry "$WORK/registry" "$rp"
    start_registry "$WORK/mirror" "$mp"
    push_image "$REGISTRY" test/busybox 1 plain >/dev/null
    IMAGE_CMD=$POD_CMD push_image "$REGISTRY" pause/pause 3.9 pause >/dev/null
    # A sandbox image that pulls but cannot run (its command does not exist).
    IMAGE_CMD='["/no/such/pause"]' push_image "$REGISTRY" pause/broken 1 broken >/dev/null
    push_image "$MIRROR" library/mirroronly 1 mirror >/dev/null
    # An image pods pin by digest: Docker holds it with no tag at all.
    PINNED=$REGISTRY/test/pinned@$(push_image "$REGISTRY" test/pinned 1 pinned extra-layer)
    # An image only a schema 1 manifest brings (containerd 2.1 cannot pull it).
    PUSH_FORMAT=v2s1 push_image "$REGISTRY" test/schema1 1 schema1 >/dev/null
    SCHEMA1_IMAGE=$REGISTRY/test/schema1:1
    PAUSE=$REGISTRY/pause/pause:3.9
    TEST_IMAGE=$REGISTRY/test/busybox:1
    log "registries: $REGISTRY (insecure), $MIRROR (Docker Hub mirror)"
}

# Cut the node off: no registry answers until restart_registries.
stop_registries() {
    local p
    for p in "${REGISTRY_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${REGISTRY_PIDS[@]}"; do
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    done
    REGISTRY_PIDS=()
}

restart_registries() {
    start_registry "$WORK/registry" "${REGISTRY##*:}"
    start_registry "$WORK/mirror" "${MIRROR##*:}"
}

# Docker holds the images before the migration, one of them pulled through the mirror.
docker_pull_images() {
    in_node timeout 120 docker pull -q "$TEST_IMAGE" >/dev/null
    in_node timeout 120 docker pull -q "$PAUSE" >/dev/null
    in_node timeout 120 docker pull -q mirroronly:1 >/dev/null
}

journal() {
    in_node journalctl --no-pager -n "${2:-40}" -u "$1" 2>/dev/null || true
}
