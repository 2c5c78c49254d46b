//! Where the CNI configuration and plugins are: the runtime must be pointed at them, or pods get
//! no network after the move.

use super::kubelet::Kubelet;
use super::runtimes::{ContainerdConfig, CrioConfig};
use crate::node::Node;
use serde::Serialize;

const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// kubeadm's place first, then the distributions' (Debian's containerd defaults to /usr/lib/cni).
const BIN_DIR_CANDIDATES: [&str; 3] = ["/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni"];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cni {
    pub conf_dir: String,
    pub conf_dir_source: String,
    pub conf_files: Vec<String>,
    /// The plugin directories, first the one that holds the plugins.
    pub bin_dirs: Vec<String>,
    pub bin_dir_source: String,
    pub plugins: Vec<String>,
}

/// Where the directories are set: the kubelet's old dockershim flags first, then a runtime's
/// config (a node that was migrated before), else the defaults.
pub fn inspect(
    node: &Node,
    kubelet: &Kubelet,
    cri_dockerd: &[super::kubelet::FoundFlag],
    containerd: Option<&ContainerdConfig>,
    crio: &CrioConfig,
) -> Cni {
    // The kubelet's dockershim flags, else cri-dockerd's (which took them over from 1.24).
    let flag_from = |name: &str| {
        let set = |f: &super::kubelet::FoundFlag| f.value.clone().filter(|v| !v.is_empty());
        kubelet
            .flag(name)
            .and_then(set)
            .map(|v| (v, format!("the kubelet's --{name}")))
            .or_else(|| {
                cri_dockerd
                    .iter()
                    .rev()
                    .find(|f| f.name == name)
                    .and_then(set)
                    .map(|v| (v, format!("cri-dockerd's --{name}")))
            })
    };
    let runtime_conf = containerd
        .and_then(|c| c.cni_conf_dir.clone().map(|d| (d, c.path.clone())))
        .or_else(|| {
            crio.network_dir
                .clone()
                .map(|d| (d, "CRI-O's network_dir".to_string()))
        });
    // A containerd config that never served CRI (Docker's containerd, CRI disabled) holds
    // defaults, not the operator's choices: its plugin directory is taken only where it holds
    // the plugins the CNI config names.
    let runtime_bins = containerd
        .filter(|c| !c.cni_bin_dirs.is_empty())
        .filter(|c| !c.cri_disabled)
        .map(|c| (c.cni_bin_dirs.join(","), c.path.clone()))
        .or_else(|| {
            (!crio.plugin_dirs.is_empty()).then(|| {
                (
                    crio.plugin_dirs.join(","),
                    "CRI-O's plugin_dirs".to_string(),
                )
            })
        });
    let (conf_dir, conf_dir_source) = match (flag_from("cni-conf-dir"), runtime_conf) {
        (Some(d), _) => d,
        (None, Some((d, from))) => (d, from),
        (None, None) => (DEFAULT_CONF_DIR.to_string(), "the default".to_string()),
    };
    let conf_files: Vec<String> = node
        .list(&conf_dir)
        .into_iter()
        .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
        .collect();
    let wanted = plugin_types(node, &conf_dir, &conf_files);
    let unserved = containerd
        .filter(|c| c.cri_disabled && !c.cni_bin_dirs.is_empty())
        .map(|c| (c.cni_bin_dirs.clone(), c.path.clone()))
        .filter(|(dirs, _)| dirs.iter().any(|d| holds(node, d, &wanted)))
        .map(|(dirs, path)| {
            (
                dirs.join(","),
                format!("{path}, which never served CRI: checked, its directory holds the plugins"),
            )
        });
    let listed = |d: &str| -> Vec<String> {
        d.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    // --cni-bin-dir took a comma-separated list; one that names no directory (`,`) is no setting.
    let set = flag_from("cni-bin-dir")
        .filter(|(d, _)| d.split(',').any(|s| !s.trim().is_empty()))
        .or(runtime_bins)
        .or(unserved);
    // A setting that names no directory (`,`, blanks) is no setting.
    let set = set.filter(|(d, _)| !listed(d).is_empty());
    let (candidates, set_source): (Vec<String>, Option<String>) = match set {
        Some((d, from)) => (listed(&d), Some(from)),
        None => (
            BIN_DIR_CANDIDATES.iter().map(|s| s.to_string()).collect(),
            None,
        ),
    };
    let holding: Vec<String> = candidates
        .iter()
        .filter(|d| !node.list(d).is_empty())
        .cloned()
        .collect();
    let (bin_dirs, bin_dir_source) = match (set_source, holding.is_empty()) {
        (Some(from), _) => {
            let mut dirs = holding.clone();
            dirs.extend(candidates.iter().filter(|d| !holding.contains(d)).cloned());
            (dirs, from)
        }
        (None, false) => (holding.clone(), "where the plugins are".to_string()),
        (None, true) => (
            vec![BIN_DIR_CANDIDATES[0].to_string()],
            "the default (no plugins found)".to_string(),
        ),
    };
    let plugins = bin_dirs.first().map(|d| node.list(d)).unwrap_or_default();
    Cni {
        conf_dir,
        conf_dir_source,
        conf_files,
        bin_dirs,
        bin_dir_source,
        plugins,
    }
}

/// The plugin types the CNI config files name (`type`, or each of a list's `plugins`).
fn plugin_types(node: &Node, dir: &str, files: &[String]) -> Vec<String> {
    let mut types = Vec::new();
    for f in files {
        let Ok(Some(text)) = node.read(&crate::node::join(dir, f)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
        else {
            continue;
        };
        let mut add = |p: &serde_json::Value| {
            if let Some(t) = p["type"].as_str() {
                if !types.iter().any(|x| x == t) {
                    types.push(t.to_string());
                }
            }
        };
        match v["plugins"].as_array() {
            Some(list) => list.iter().for_each(&mut add),
            None => add(&v),
        }
    }
    types
}

/// Whether a directory holds the plugins (with none named: any plugin at all).
fn holds(node: &Node, dir: &str, wanted: &[String]) -> bool {
    let have = node.list(dir);
    if wanted.is_empty() {
        return !have.is_empty();
    }
    wanted.iter().all(|w| have.contains(w))
}
