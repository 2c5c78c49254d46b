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
    containerd: Option<&ContainerdConfig>,
    crio: &CrioConfig,
) -> Cni {
    let flag = |name: &str| {
        kubelet
            .flag(name)
            .and_then(|f| f.value.clone())
            .filter(|v| !v.is_empty())
    };
    let runtime_conf = containerd
        .and_then(|c| c.cni_conf_dir.clone().map(|d| (d, c.path.clone())))
        .or_else(|| {
            crio.network_dir
                .clone()
                .map(|d| (d, "CRI-O's network_dir".to_string()))
        });
    let runtime_bins = containerd
        .filter(|c| !c.cni_bin_dirs.is_empty())
        .map(|c| (c.cni_bin_dirs.join(","), c.path.clone()))
        .or_else(|| {
            (!crio.plugin_dirs.is_empty()).then(|| {
                (
                    crio.plugin_dirs.join(","),
                    "CRI-O's plugin_dirs".to_string(),
                )
            })
        });
    let (conf_dir, conf_dir_source) = match (flag("cni-conf-dir"), runtime_conf) {
        (Some(d), _) => (d, "the kubelet's --cni-conf-dir".to_string()),
        (None, Some((d, from))) => (d, from),
        (None, None) => (DEFAULT_CONF_DIR.to_string(), "the default".to_string()),
    };
    let conf_files = node
        .list(&conf_dir)
        .into_iter()
        .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
        .collect();
    // --cni-bin-dir took a comma-separated list.
    let set = flag("cni-bin-dir")
        .map(|d| (d, "the kubelet's --cni-bin-dir".to_string()))
        .or(runtime_bins);
    let (candidates, set_source): (Vec<String>, Option<String>) = match set {
        Some((d, from)) => (
            d.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            Some(from),
        ),
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
    let plugins = node.list(&bin_dirs[0]);
    Cni {
        conf_dir,
        conf_dir_source,
        conf_files,
        bin_dirs,
        bin_dir_source,
        plugins,
    }
}
