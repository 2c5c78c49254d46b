#!/bin/sh
# The manual move from Docker to CRI-O, as an operator types it from CRI-O's install docs
# (install/configure CRI-O, point the kubelet at its socket) and the Kubernetes documentation's
# order for a runtime change (stop the kubelet, stop and disable Docker, start the new runtime,
# start the kubelet); the benchmark runs it inside a node where CRI-O is installed (its bundle,
# tests/e2e/lib.sh install_crio). Prints the time its last step finished.
#   manual-procedure-crio TEST_IMAGE PAUSE_IMAGE REGISTRY MIRROR
set -eu
systemctl stop kubelet
systemctl disable --now docker.socket docker.service
# CRI-O's configuration for this node: the kubelet's cgroup driver, the mirror's pause image (a
# node that cannot reach registry.k8s.io), conmon and pinns where they are, the node's CNI
# network (the bundle's example bridge sorts before it), the CNI plugins' directory.
mkdir -p /etc/crio/crio.conf.d /etc/containers/registries.conf.d
cat >/etc/crio/crio.conf.d/20-node.conf <<CONF
[crio.runtime]
cgroup_manager = "systemd"
conmon_cgroup = "pod"
conmon = "/usr/bin/conmon"
pinns_path = "/usr/local/bin/pinns"
[crio.image]
pause_image = "$2"
[crio.network]
cni_default_network = "pods"
plugin_dirs = ["/opt/cni/bin"]
CONF
cat >/etc/containers/registries.conf.d/20-node.conf <<CONF
[[registry]]
location = "$3"
insecure = true
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "$4"
insecure = true
CONF
systemctl enable --now crio
sed -i 's|--network-plugin=cni|--container-runtime=remote --container-runtime-endpoint=unix:///var/run/crio/crio.sock|' \
    /var/lib/kubelet/kubeadm-flags.env
systemctl start kubelet
# The operator's check: the kubelet up, and an image pulled through CRI.
i=0
until [ "$(systemctl is-active kubelet)" = active ] && journalctl -u kubelet -n 30 -o cat | grep -q 'ready on'; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { echo "kubelet did not come up" >&2; exit 1; }
    sleep 0.1
done
cri-migrate verify --no-sandbox --endpoint unix:///var/run/crio/crio.sock --image "$1" >/dev/null
date +%s.%N
