//! Workloads that depend on Docker itself: static pods (and, on the live node, Docker
//! containers) that mount Docker's socket or data.

use super::kubelet::Kubelet;
use crate::node::{join, Node};
use crate::system::Commands;
use serde::Serialize;

const DEFAULT_MANIFESTS: &str = "/etc/kubernetes/manifests";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StaticPod {
    pub file: String,
    pub name: Option<String>,
    pub host_paths: Vec<String>,
    /// The images its containers and init containers run.
    pub images: Vec<String>,
    /// Set when the manifest could not be read as YAML (the kubelet skips it too).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DockerContainer {
    pub name: String,
    pub image: String,
    pub mounts: Vec<String>,
}

/// Paths whose mounting ties a workload to Docker: its socket, dockershim's, all of /var/run,
/// or Docker's data (log collectors read /var/lib/docker/containers).
pub fn docker_bound(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    matches!(
        p,
        "/var/run/docker.sock"
            | "/run/docker.sock"
            | "/var/run/dockershim.sock"
            | "/run/dockershim.sock"
            | "/var/run"
            | "/run"
            | "/var/lib/docker"
    ) || p.starts_with("/var/lib/docker/")
}

pub fn static_pods(node: &Node, kubelet: &Kubelet) -> Vec<StaticPod> {
    let dir = kubelet
        .flag("pod-manifest-path")
        .and_then(|f| f.value.clone())
        .or_else(|| kubelet.config.static_pod_path.clone())
        .unwrap_or_else(|| DEFAULT_MANIFESTS.to_string());
    let mut pods = Vec::new();
    for name in node.list(&dir) {
        if !(name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")) {
            continue;
        }
        let file = join(&dir, &name);
        let text = match node.read(&file) {
            Ok(Some(t)) => t,
            _ => continue,
        };
        let mut pod = StaticPod {
            file,
            name: None,
            host_paths: vec![],
            images: vec![],
            error: None,
        };
        match serde_norway::from_str::<serde_norway::Value>(&text) {
            Ok(v) => {
                pod.name = v
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .map(str::to_string);
                for key in ["containers", "initContainers"] {
                    if let Some(cs) = v
                        .get("spec")
                        .and_then(|s| s.get(key))
                        .and_then(|c| c.as_sequence())
                    {
                        pod.images.extend(
                            cs.iter()
                                .filter_map(|c| c.get("image")?.as_str().map(str::to_string)),
                        );
                    }
                }
                if let Some(vols) = v
                    .get("spec")
                    .and_then(|s| s.get("volumes"))
                    .and_then(|v| v.as_sequence())
                {
                    pod.host_paths = vols
                        .iter()
                        .filter_map(|vol| {
                            vol.get("hostPath")?
                                .get("path")?
                                .as_str()
                                .map(str::to_string)
                        })
                        .collect();
                }
            }
            Err(e) => pod.error = Some(e.to_string()),
        }
        pods.push(pod);
    }
    pods
}

/// Running Docker containers that mount Docker-bound paths (live node only).
pub fn docker_containers(cmds: &dyn Commands) -> Vec<DockerContainer> {
    let Some(ids) = cmds.output("docker", &["ps", "-q", "--no-trunc"]) else {
        return vec![];
    };
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return vec![];
    }
    let mut args = vec![
        "inspect",
        "--format",
        "{{.Name}}\t{{.Config.Image}}\t{{range .Mounts}}{{.Source}},{{end}}",
    ];
    args.extend(ids);
    let Some(out) = cmds.output("docker", &args) else {
        return vec![];
    };
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let name = parts.next()?.trim_start_matches('/').to_string();
            let image = parts.next()?.to_string();
            let mounts: Vec<String> = parts
                .next()?
                .split(',')
                .filter(|m| docker_bound(m))
                .map(str::to_string)
                .collect();
            (!mounts.is_empty()).then_some(DockerContainer {
                name,
                image,
                mounts,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_bound_paths() {
        for p in [
            "/var/run/docker.sock",
            "/var/run/",
            "/var/lib/docker/containers",
            "/run/dockershim.sock",
        ] {
            assert!(docker_bound(p), "{p}");
        }
        for p in [
            "/var/run/secrets",
            "/var/lib/dockerish",
            "/etc/kubernetes/pki",
        ] {
            assert!(!docker_bound(p), "{p}");
        }
    }
}
