#!/bin/sh
# The Kubernetes documentation's manual move from Docker to containerd ("Changing the container
# runtime on a node from Docker Engine to containerd"), as an operator would type it; the
# benchmark runs it inside the node. Prints the time its last step finished.
#   manual-procedure TEST_IMAGE PAUSE_IMAGE
set -eu
systemctl stop kubelet
systemctl disable --now docker.socket docker.service
containerd config default >/etc/containerd/config.toml
sed -i 's/SystemdCgroup = false/SystemdCgroup = true/' /etc/containerd/config.toml
# A node that cannot reach registry.k8s.io: the mirror's pause image (containerd 1.x:
# sandbox_image; 2.x: pinned_images.sandbox).
sed -i -e "s|sandbox_image = .*|sandbox_image = \"$2\"|" -e "s|^\( *\)sandbox = .*|\1sandbox = \"$2\"|" /etc/containerd/config.toml
# This machine's root lacks CAP_SYS_RESOURCE (tests/e2e/lib.sh): kept as the node had it.
sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
systemctl restart containerd
sed -i 's|--network-plugin=cni|--container-runtime=remote --container-runtime-endpoint=unix:///run/containerd/containerd.sock|' \
    /var/lib/kubelet/kubeadm-flags.env
systemctl start kubelet
# The operator's check: the kubelet up, and an image pulled through CRI.
i=0
until [ "$(systemctl is-active kubelet)" = active ] && journalctl -u kubelet -n 30 -o cat | grep -q 'ready on'; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { echo "kubelet did not come up" >&2; exit 1; }
    sleep 0.1
done
cri-migrate verify --no-sandbox --image "$1" >/dev/null
date +%s.%N
