//! Layouts cri-migrate does not migrate in place, recognised rather than mangled: a
//! distribution that runs the kubelet itself with its own runtime and its own switch for it
//! (k3s, RKE2, MicroK8s), a kubelet run in a Docker container (RKE1), a Docker from a snap.
//! Each is refused with that distribution's own way named; never are kubeadm's files written
//! where nothing reads them.

use crate::node::Node;
use crate::unit::Unit;
use anyhow::Result;
use serde::Serialize;

/// A layout that is not migrated here: what it is, what shows it, and what to do instead.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Layout {
    pub name: &'static str,
    pub evidence: String,
    pub fix: String,
}

/// The first layout of the node that cri-migrate leaves to its own tools, if any.
pub fn detect(node: &Node) -> Result<Option<Layout>> {
    // k3s: its own containerd, Docker only with `--docker` (its unit or its config file).
    for name in ["k3s.service", "k3s-agent.service"] {
        let Some(unit) = Unit::load(node, name)? else {
            continue;
        };
        let exec = unit
            .command(node)?
            .map(|c| c.args().join(" "))
            .unwrap_or_default();
        let config = "/etc/rancher/k3s/config.yaml";
        let in_config = node.read(config).ok().flatten().is_some_and(|t| {
            t.lines()
                .any(|l| l.trim().replace(' ', "") == "docker:true")
        });
        let on_docker = exec.split_whitespace().any(|w| w == "--docker") || in_config;
        let (evidence, fix) = if on_docker {
            (
                format!(
                    "k3s runs this node's kubelet ({name}), on Docker because of {}",
                    if in_config { format!("`docker: true` in {config}") } else { format!("`--docker` in {name}'s ExecStart=") }
                ),
                format!(
                    "As the k3s documentation says, k3s brings its own containerd: remove {} and restart k3s (`systemctl restart {name}`); images are pulled again",
                    if in_config { format!("`docker: true` from {config}") } else { format!("`--docker` from {name}'s ExecStart= (`systemctl edit {name}`)") }
                ),
            )
        } else {
            (
                format!("k3s runs this node's kubelet ({name}) on its own containerd"),
                "Nothing to migrate: k3s does not use Docker here".to_string(),
            )
        };
        return Ok(Some(Layout {
            name: "k3s",
            evidence,
            fix,
        }));
    }
    for name in ["rke2-server.service", "rke2-agent.service"] {
        if Unit::load(node, name)?.is_some() {
            return Ok(Some(Layout {
                name: "RKE2",
                evidence: format!("RKE2 runs this node's kubelet ({name}) on its own containerd"),
                fix: "Nothing to migrate: RKE2 never uses Docker".into(),
            }));
        }
    }
    if node.is_dir("/snap/microk8s") || node.is_dir("/var/snap/microk8s") {
        return Ok(Some(Layout {
            name: "MicroK8s",
            evidence: "MicroK8s (a snap, /snap/microk8s) runs this node's kubelet on its own containerd".into(),
            fix: "Nothing to migrate: MicroK8s manages its runtime itself (/var/snap/microk8s/current/args/containerd-template.toml)".into(),
        }));
    }
    // RKE1: the kubelet is a Docker container, with RKE's certificates on the node.
    let rke1 = "/etc/kubernetes/ssl/kubecfg-kube-node.yaml";
    if node.is_file(rke1) && Unit::load(node, "kubelet.service")?.is_none() {
        return Ok(Some(Layout {
            name: "RKE1",
            evidence: format!("RKE1 runs this node's kubelet in a Docker container ({rke1}, no kubelet.service)"),
            fix: "RKE1 supports only Docker: move the cluster to RKE2 or another distribution as Rancher documents (no in-place runtime switch exists for RKE1)".into(),
        }));
    }
    // Docker from a snap: its settings and data are the snap's, not /etc/docker's.
    if node.is_dir("/snap/docker") || Unit::load(node, "snap.docker.dockerd.service")?.is_some() {
        let data = "/var/snap/docker/common/var-lib-docker";
        return Ok(Some(Layout {
            name: "Docker snap",
            evidence: format!(
                "Docker here is the snap (snap.docker.dockerd.service; its settings in /var/snap/docker/current/config/daemon.json, its data in {data}), not a package cri-migrate reads"
            ),
            fix: format!(
                "Replace the snap with Docker's packages first (`snap remove docker`, then docker-ce or docker.io, its daemon.json in /etc/docker), then run cri-migrate; or install containerd from the distribution's packages and move the kubelet by hand, carrying the mirrors and registries of the snap's daemon.json. {data} stays the snap's until it is removed"
            ),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::node::test_node as node;

    #[test]
    fn distributions_with_their_own_switch_are_recognised() {
        // k3s on Docker through its config file; on its own containerd, nothing to do.
        let (_d, n) = node(&[
            (
                "/etc/systemd/system/k3s-agent.service",
                "[Service]\nExecStart=/usr/local/bin/k3s agent\n",
            ),
            (
                "/etc/rancher/k3s/config.yaml",
                "docker: true\nnode-label: [a=b]\n",
            ),
        ]);
        let l = detect(&n).unwrap().unwrap();
        assert_eq!(l.name, "k3s");
        assert!(
            l.evidence
                .contains("`docker: true` in /etc/rancher/k3s/config.yaml"),
            "{}",
            l.evidence
        );
        let (_d, n) = node(&[(
            "/etc/systemd/system/k3s.service",
            "[Service]\nExecStart=/usr/local/bin/k3s server\n",
        )]);
        assert!(detect(&n)
            .unwrap()
            .unwrap()
            .fix
            .starts_with("Nothing to migrate"));
        let (_d, n) = node(&[(
            "/usr/local/lib/systemd/system/rke2-agent.service",
            "[Service]\nExecStart=/usr/local/bin/rke2 agent\n",
        )]);
        assert_eq!(detect(&n).unwrap().unwrap().name, "RKE2");
        // RKE1's kubelet in a container: RKE's files and no kubelet unit.
        let (_d, n) = node(&[(
            "/etc/kubernetes/ssl/kubecfg-kube-node.yaml",
            "apiVersion: v1\n",
        )]);
        assert_eq!(detect(&n).unwrap().unwrap().name, "RKE1");
        // Docker from a snap names the snap's own files.
        let (_d, n) = node(&[(
            "/etc/systemd/system/snap.docker.dockerd.service",
            "[Service]\nExecStart=/usr/bin/snap run docker.dockerd\n",
        )]);
        let l = detect(&n).unwrap().unwrap();
        assert!(l
            .evidence
            .contains("/var/snap/docker/current/config/daemon.json"));
        // A kubeadm node is none of these.
        let (_d, n) = node(&[(
            "/lib/systemd/system/kubelet.service",
            "[Service]\nExecStart=/usr/bin/kubelet\n",
        )]);
        assert!(detect(&n).unwrap().is_none());
    }
}
