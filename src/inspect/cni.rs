//! Where the CNI configuration and plugins are: the runtime must be pointed at them, or pods get
//! no network after the move.

use super::kubelet::Kubelet;
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

pub fn inspect(node: &Node, kubelet: &Kubelet) -> Cni {
    let flag = |name: &str| kubelet.flag(name).and_then(|f| f.value.clone()).filter(|v| !v.is_empty());
    let (conf_dir, conf_dir_source) = match flag("cni-conf-dir") {
        Some(d) => (d, "the kubelet's --cni-conf-dir".to_string()),
        None => (DEFAULT_CONF_DIR.to_string(), "the default".to_string()),
    };
    let conf_files = node
        .list(&conf_dir)
        .into_iter()
        .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
        .collect();
    // --cni-bin-dir took a comma-separated list.
    let (candidates, from_flag): (Vec<String>, bool) = match flag("cni-bin-dir") {
        Some(d) => (d.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(), true),
        None => (BIN_DIR_CANDIDATES.iter().map(|s| s.to_string()).collect(), false),
    };
    let holding: Vec<String> = candidates.iter().filter(|d| !node.list(d).is_empty()).cloned().collect();
    let (bin_dirs, bin_dir_source) = match (from_flag, holding.is_empty()) {
        (true, _) => {
            let mut dirs = holding.clone();
            dirs.extend(candidates.iter().filter(|d| !holding.contains(d)).cloned());
            (dirs, "the kubelet's --cni-bin-dir".to_string())
        }
        (false, false) => (holding.clone(), "where the plugins are".to_string()),
        (false, true) => (vec![BIN_DIR_CANDIDATES[0].to_string()], "the default (no plugins found)".to_string()),
    };
    let plugins = node.list(&bin_dirs[0]);
    Cni { conf_dir, conf_dir_source, conf_files, bin_dirs, bin_dir_source, plugins }
}
