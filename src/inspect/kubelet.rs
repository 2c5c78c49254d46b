//! The kubelet: version, flags (env files and unit drop-ins), config.yaml.

use super::{Installed, RuntimeKind};
use crate::error::Failure;
use crate::flags::{FileKind, FlagList, VarsFile};
use crate::node::{join, Node, Snapshot};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

pub const KUBEADM_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const DEFAULT_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// Where the kubelet's `EXTRA_ARGS` live on the Debian and RHEL families.
pub const EXTRA_ARGS_FILES: [&str; 2] = ["/etc/default/kubelet", "/etc/sysconfig/kubelet"];
const DROP_IN_DIRS: [&str; 3] = [
    "/etc/systemd/system/kubelet.service.d",
    "/usr/lib/systemd/system/kubelet.service.d",
    "/lib/systemd/system/kubelet.service.d",
];

/// A flag and where it was found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FoundFlag {
    pub name: String,
    pub value: Option<String>,
    pub file: String,
    pub var: String,
}

/// A file that holds kubelet flags in `KUBELET_*ARGS` variables.
#[derive(Debug, Clone, Serialize)]
pub struct FlagFile {
    pub path: String,
    pub kind: FileKind,
    pub vars: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KubeletConfig {
    pub path: String,
    pub exists: bool,
    pub cgroup_driver: Option<String>,
    pub container_runtime_endpoint: Option<String>,
    pub image_service_endpoint: Option<String>,
    pub static_pod_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kubelet {
    #[serde(flatten)]
    pub installed: Installed,
    pub flag_files: Vec<FlagFile>,
    /// Every flag, in the order the kubelet sees them (a later one wins).
    pub flags: Vec<FoundFlag>,
    /// Flags written straight into an `ExecStart=` line, which cri-migrate does not edit.
    pub exec_start_flags: Vec<String>,
    pub config: KubeletConfig,
    /// Effective values: a flag wins over config.yaml.
    pub cgroup_driver: Option<String>,
    pub runtime_endpoint: Option<String>,
    pub pod_infra_container_image: Option<String>,
    /// The cluster's DNS as pods get it (`--cluster-dns`/`clusterDNS`, `--cluster-domain`/
    /// `clusterDomain`): the test pod's DNS settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    /// Lines of the env files that systemd does not read as assignments (`export KEY=...`):
    /// `FILE: line N (why)`. Their flags were never the kubelet's.
    #[serde(default)]
    pub ignored_lines: Vec<String>,
}

impl Kubelet {
    /// The value of the last occurrence of a flag.
    pub fn flag(&self, name: &str) -> Option<&FoundFlag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    /// Which runtime the kubelet talks to now, and why we think so.
    pub fn current_runtime(&self) -> (RuntimeKind, String) {
        let version = self.installed.version;
        let runtime_flag = self.flag("container-runtime").and_then(|f| f.value.clone());
        let below_124 = version.map(|v| !v.at_least(1, 24));
        if let Some(endpoint) = &self.runtime_endpoint {
            if below_124 != Some(true) || runtime_flag.as_deref() == Some("remote") {
                return (
                    RuntimeKind::from_endpoint(endpoint),
                    format!("the kubelet's runtime endpoint is {endpoint}"),
                );
            }
        }
        match (below_124, runtime_flag.as_deref()) {
            (Some(true), Some("remote")) => (RuntimeKind::Unknown, "--container-runtime=remote without an endpoint".into()),
            (Some(true), _) => (RuntimeKind::Dockershim, format!("kubelet {} uses its built-in dockershim unless --container-runtime=remote", version.unwrap())),
            (Some(false), _) => (
                RuntimeKind::Containerd,
                "no runtime endpoint is set; since 1.24 the kubelet's default is unix:///run/containerd/containerd.sock".into(),
            ),
            (None, _) => (RuntimeKind::Unknown, "the kubelet's version is unknown and no runtime endpoint is set".into()),
        }
    }
}

/// Read the kubelet's side of the node. `files` collects the text of every file the planner
/// may rewrite.
pub fn inspect(
    node: &Node,
    installed: Installed,
    files: &mut BTreeMap<String, Snapshot>,
) -> Result<Kubelet> {
    let mut flag_files = Vec::new();
    let mut flags = Vec::new();
    let mut exec_start_flags = Vec::new();
    let mut env_files: Vec<String> = Vec::new();
    let mut ignored_lines: Vec<String> = Vec::new();

    // Drop-ins: one name in /etc hides the same name in /usr/lib (systemd's rule).
    let mut drop_ins: BTreeMap<String, String> = BTreeMap::new();
    for dir in DROP_IN_DIRS.iter().rev() {
        for name in node.list(dir).into_iter().filter(|n| n.ends_with(".conf")) {
            drop_ins.insert(name.clone(), join(dir, &name));
        }
    }
    let mut parsed = Vec::new();
    for path in drop_ins.values() {
        let Some(snap) = node.snapshot(path)? else {
            continue;
        };
        let file = VarsFile::parse(FileKind::DropIn, &snap.content).map_err(|e| {
            Failure::bad_input(
                path,
                e,
                "Fix the quoting of its Environment= line (see systemd.exec(5)).",
            )
        })?;
        for f in file.directives("EnvironmentFile") {
            let f = f.trim_start_matches('-').to_string();
            if !env_files.contains(&f) {
                env_files.push(f);
            }
        }
        for exec in file.directives("ExecStart") {
            exec_start_flags.extend(
                exec.split_whitespace()
                    .filter(|w| w.starts_with('-'))
                    .map(str::to_string),
            );
        }
        parsed.push((path.clone(), snap, file));
    }
    for f in std::iter::once(KUBEADM_FLAGS).chain(EXTRA_ARGS_FILES) {
        if !env_files.iter().any(|e| e == f) {
            env_files.push(f.to_string());
        }
    }
    for path in &env_files {
        let Some(snap) = node.snapshot(path)? else {
            continue;
        };
        let file = VarsFile::parse(FileKind::EnvFile, &snap.content).map_err(|e| {
            Failure::bad_input(path, e, "Fix the file: each line must be KEY=\"value\" with balanced quotes (see systemd.exec(5), EnvironmentFile=).")
        })?;
        ignored_lines.extend(file.ignored.iter().map(|w| format!("{path}: {w}")));
        parsed.push((path.clone(), snap, file));
    }

    for (path, snap, file) in parsed {
        let mut vars = Vec::new();
        for (var, value) in file.vars() {
            if !is_flags_var(&var) {
                continue;
            }
            let list = FlagList::parse(&value).map_err(|e| {
                Failure::bad_input(
                    &path,
                    format!("{var}: {e}"),
                    "Balance the quotes in the kubelet's flags.",
                )
            })?;
            for flag in list.flags() {
                flags.push(FoundFlag {
                    name: flag.name,
                    value: flag.value,
                    file: path.clone(),
                    var: var.clone(),
                });
            }
            vars.push(var);
        }
        // kubeadm-flags.env is where the runtime flags belong, even when it holds none yet.
        if !vars.is_empty() || path == KUBEADM_FLAGS {
            files.insert(path.clone(), snap);
            flag_files.push(FlagFile {
                path,
                kind: file.kind,
                vars,
            });
        }
    }

    let config_path = flags
        .iter()
        .rev()
        .find(|f| f.name == "config")
        .and_then(|f| f.value.clone())
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    let config = read_config(node, &config_path, files)?;

    let last = |name: &str| {
        flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .and_then(|f| f.value.clone())
    };
    Ok(Kubelet {
        installed,
        cgroup_driver: last("cgroup-driver").or_else(|| config.cgroup_driver.clone()),
        runtime_endpoint: last("container-runtime-endpoint")
            .or_else(|| config.container_runtime_endpoint.clone()),
        pod_infra_container_image: last("pod-infra-container-image"),
        cluster_dns: last("cluster-dns")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| config.cluster_dns.clone()),
        cluster_domain: last("cluster-domain").or_else(|| config.cluster_domain.clone()),
        flag_files,
        flags,
        exec_start_flags,
        config,
        ignored_lines,
    })
}

/// `KUBELET_KUBEADM_ARGS`, `KUBELET_EXTRA_ARGS`, and the older kubeadm drop-ins'
/// `KUBELET_NETWORK_ARGS`, `KUBELET_CGROUP_ARGS`...
pub fn is_flags_var(name: &str) -> bool {
    name.starts_with("KUBELET_") && name.ends_with("ARGS")
}

fn read_config(
    node: &Node,
    path: &str,
    files: &mut BTreeMap<String, Snapshot>,
) -> Result<KubeletConfig> {
    let Some(snap) = node.snapshot(path)? else {
        return Ok(KubeletConfig {
            path: path.to_string(),
            ..Default::default()
        });
    };
    // The kubelet's YAML reader skips a byte order mark; so do we.
    let text = snap
        .content
        .strip_prefix('\u{feff}')
        .unwrap_or(&snap.content);
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
        Failure::bad_input(path, format!("not valid YAML ({e})"), "Fix the KubeletConfiguration file, or restore it from `kubeadm init phase kubelet-start`.")
    })?;
    if !(value.is_mapping() || value.is_null()) {
        return Err(Failure::bad_input(
            path,
            "not a YAML mapping",
            "It must be a KubeletConfiguration document.",
        )
        .into());
    }
    let s = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let config = KubeletConfig {
        path: path.to_string(),
        exists: true,
        cgroup_driver: s("cgroupDriver"),
        container_runtime_endpoint: s("containerRuntimeEndpoint"),
        image_service_endpoint: s("imageServiceEndpoint"),
        static_pod_path: s("staticPodPath"),
        cluster_dns: value
            .get("clusterDNS")
            .and_then(|v| v.as_sequence())
            .map(|seq| {
                seq.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        cluster_domain: s("clusterDomain"),
    };
    files.insert(path.to_string(), snap);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::Version;

    fn kubelet(version: &str, flags: &[(&str, &str)]) -> Kubelet {
        Kubelet {
            installed: Installed {
                installed: true,
                version: Version::parse(version),
                ..Default::default()
            },
            flag_files: vec![],
            flags: flags
                .iter()
                .map(|(n, v)| FoundFlag {
                    name: n.to_string(),
                    value: Some(v.to_string()),
                    file: KUBEADM_FLAGS.into(),
                    var: "KUBELET_KUBEADM_ARGS".into(),
                })
                .collect(),
            exec_start_flags: vec![],
            ignored_lines: vec![],
            config: KubeletConfig::default(),
            cluster_dns: vec![],
            cluster_domain: None,
            cgroup_driver: None,
            runtime_endpoint: flags
                .iter()
                .find(|f| f.0 == "container-runtime-endpoint")
                .map(|f| f.1.to_string()),
            pod_infra_container_image: None,
        }
    }

    #[test]
    fn tells_the_current_runtime() {
        assert_eq!(
            kubelet("1.23.1", &[("network-plugin", "cni")])
                .current_runtime()
                .0,
            RuntimeKind::Dockershim
        );
        assert_eq!(
            kubelet(
                "1.23.1",
                &[
                    ("container-runtime", "remote"),
                    (
                        "container-runtime-endpoint",
                        "unix:///run/containerd/containerd.sock"
                    )
                ]
            )
            .current_runtime()
            .0,
            RuntimeKind::Containerd
        );
        assert_eq!(
            kubelet(
                "1.24.3",
                &[("container-runtime-endpoint", "unix:///run/cri-dockerd.sock")]
            )
            .current_runtime()
            .0,
            RuntimeKind::CriDockerd
        );
        assert_eq!(
            kubelet("1.27.3", &[]).current_runtime().0,
            RuntimeKind::Containerd
        );
        assert_eq!(kubelet("", &[]).current_runtime().0, RuntimeKind::Unknown);
    }
}
