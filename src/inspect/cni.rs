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
    /// Plugins the CNI config files name (`type`, `ipam.type`, flannel's `delegate`) that none
    /// of the plugin directories holds: (plugin, the file naming it). Every pod would fail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<(String, String)>,
    /// Every plugin the plugin directories hold (for the plan's own CNI config's check).
    #[serde(skip)]
    pub available: Vec<String>,
    /// The plugins the first config file names, with that file (what pods need).
    #[serde(skip)]
    pub needed: Vec<(String, String)>,
    /// The node's network: the name in its config file (the first by name, passing over a
    /// runtime package's example bridge), and that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<(String, String)>,
    /// A runtime package's example bridge config that sorts before the node's network and so
    /// would be the one loaded (CRI-O's `10-crio-bridge.conf`, `11-crio-ipv4-bridge.conflist`,
    /// podman's): pods would get the example's network, not the cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadowed_by: Option<String>,
}

/// Example networks CRI-O's and podman's packages install into the CNI config directory.
pub fn is_example_network(file: &str) -> bool {
    let f = file.to_ascii_lowercase();
    (f.contains("crio-bridge") || f.contains("crio-ipv4-bridge") || f.starts_with("87-podman"))
        && (f.ends_with(".conf") || f.ends_with(".conflist"))
}

/// The plugin the runtimes themselves run for every pod-network pod, whatever the config says:
/// containerd's CRI and CRI-O bring the pod's `lo` up with it.
pub const LOOPBACK: &str = "loopback";
pub const LOOPBACK_NEED: &str = "the runtime itself, which brings up every pod's lo";

/// Where the directories are set: the kubelet's old dockershim flags first, then a runtime's
/// config (a node that was migrated before), else the defaults.
pub fn inspect(
    node: &Node,
    kubelet: &Kubelet,
    cri_dockerd: &[super::kubelet::FoundFlag],
    containerd: Option<&ContainerdConfig>,
    crio: &CrioConfig,
) -> Cni {
    let flag = |name: &str| flag_from(kubelet, cri_dockerd, name);
    let (conf_dir, conf_dir_source) = conf_dir(flag("cni-conf-dir"), containerd, crio);
    let configs = Configs::read(node, &conf_dir);
    let mut named = plugin_types(node, &conf_dir, &configs.chosen);
    if !configs.files.is_empty() && !named.iter().any(|(t, _)| t == LOOPBACK) {
        named.push((LOOPBACK.to_string(), LOOPBACK_NEED.to_string()));
    }
    let wanted: Vec<String> = named.iter().map(|(t, _)| t.clone()).collect();
    let set = configured_bin_dirs(node, flag("cni-bin-dir"), containerd, crio, &wanted);
    let (bin_dirs, bin_dir_source) = bin_dirs(node, set, &wanted);
    let plugins = bin_dirs.first().map(|d| node.list(d)).unwrap_or_default();
    let mut available: Vec<String> = bin_dirs.iter().flat_map(|d| node.list(d)).collect();
    available.sort();
    available.dedup();
    let missing = named
        .iter()
        .filter(|(t, _)| !available.contains(t))
        .cloned()
        .collect();
    Cni {
        conf_dir,
        conf_dir_source,
        conf_files: configs.files,
        bin_dirs,
        bin_dir_source,
        plugins,
        missing,
        available,
        needed: named,
        network: configs.network,
        shadowed_by: configs.shadowed_by,
    }
}

/// A dockershim flag of the kubelet's, else cri-dockerd's (which took them over from 1.24),
/// with where it was set; an empty value is none.
fn flag_from(
    kubelet: &Kubelet,
    cri_dockerd: &[super::kubelet::FoundFlag],
    name: &str,
) -> Option<(String, String)> {
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
}

/// The CNI config directory and where it was set: the flag, else the runtime's config, else
/// the default.
fn conf_dir(
    flag: Option<(String, String)>,
    containerd: Option<&ContainerdConfig>,
    crio: &CrioConfig,
) -> (String, String) {
    let runtime_conf = containerd
        .and_then(|c| c.cni_conf_dir.clone().map(|d| (d, c.path.clone())))
        .or_else(|| {
            crio.network_dir
                .clone()
                .map(|d| (d, "CRI-O's network_dir".to_string()))
        });
    flag.or(runtime_conf)
        .unwrap_or_else(|| (DEFAULT_CONF_DIR.to_string(), "the default".to_string()))
}

/// The config directory's files, and the one the runtimes will load.
struct Configs {
    files: Vec<String>,
    /// The one loaded, as a list of at most one (what `plugin_types` reads).
    chosen: Vec<String>,
    /// Its network's name, and the file.
    network: Option<(String, String)>,
    /// A package's example bridge that would be first by name, before the node's own network.
    shadowed_by: Option<String>,
}

impl Configs {
    fn read(node: &Node, conf_dir: &str) -> Configs {
        let files: Vec<String> = node
            .list(conf_dir)
            .into_iter()
            .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
            .collect();
        // The runtimes load the first config file by name (containerd's max_conf_num = 1,
        // CRI-O's default network): its plugins are the ones every pod needs.
        let mut sorted = files.clone();
        sorted.sort();
        // A package's example bridge first by name, with the node's own network after it: the
        // node's is the one pods need (the plan selects it by name for CRI-O).
        let shadowed_by = match sorted.as_slice() {
            [first, rest @ ..]
                if is_example_network(first) && rest.iter().any(|f| !is_example_network(f)) =>
            {
                Some(first.clone())
            }
            _ => None,
        };
        let chosen: Vec<String> = sorted
            .iter()
            .find(|f| shadowed_by.is_none() || !is_example_network(f))
            .cloned()
            .into_iter()
            .collect();
        let network = chosen.first().and_then(|f| {
            let text = node.read(&crate::node::join(conf_dir, f)).ok().flatten()?;
            let v: serde_json::Value =
                serde_json::from_str(text.trim_start_matches('\u{feff}')).ok()?;
            v["name"].as_str().map(|n| (n.to_string(), f.clone()))
        });
        Configs {
            files,
            chosen,
            network,
            shadowed_by,
        }
    }
}

/// The plugin directories something sets, as a list, with where: the flag (a comma-separated
/// list), else the runtime's config, else a containerd config that never served CRI whose
/// directory holds the plugins. A setting that names no directory (`,`, blanks) is none.
fn configured_bin_dirs(
    node: &Node,
    flag: Option<(String, String)>,
    containerd: Option<&ContainerdConfig>,
    crio: &CrioConfig,
    wanted: &[String],
) -> Option<(Vec<String>, String)> {
    let listed = |d: &str| -> Vec<String> {
        d.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
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
    let unserved = containerd
        .filter(|c| c.cri_disabled && !c.cni_bin_dirs.is_empty())
        .map(|c| (c.cni_bin_dirs.clone(), c.path.clone()))
        .filter(|(dirs, _)| dirs.iter().any(|d| holds(node, d, wanted)))
        .map(|(dirs, path)| {
            (
                dirs.join(","),
                format!("{path}, which never served CRI: checked, its directory holds the plugins"),
            )
        });
    flag.filter(|(d, _)| !listed(d).is_empty())
        .or(runtime_bins)
        .or(unserved)
        .filter(|(d, _)| !listed(d).is_empty())
        .map(|(d, from)| (listed(&d), from))
}

/// The plugin directories, the one with the plugins first, and where they were set: what is
/// set, else the usual directories that hold plugins. A set directory that holds none of the
/// plugins, where a usual one holds some (a stale --cni-bin-dir, a config's default), gives
/// way to that one, said.
fn bin_dirs(
    node: &Node,
    set: Option<(Vec<String>, String)>,
    wanted: &[String],
) -> (Vec<String>, String) {
    let (candidates, set_source): (Vec<String>, Option<String>) = match set {
        Some((dirs, from)) => (dirs, Some(from)),
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
    let count = |d: &str| {
        let have = node.list(d);
        wanted.iter().filter(|w| have.contains(w)).count()
    };
    let usual_holding = BIN_DIR_CANDIDATES
        .iter()
        .map(|d| (count(d), *d))
        .filter(|(n, _)| *n > 0)
        .rev() // the first of the most-holding ones
        .max_by_key(|(n, _)| *n)
        .map(|(_, d)| d.to_string());
    let holds_none = !wanted.is_empty()
        && !candidates
            .iter()
            .any(|d| wanted.iter().any(|w| node.list(d).contains(w)));
    match (set_source, holding.is_empty(), usual_holding) {
        (Some(from), _, Some(d)) if holds_none => (
            vec![d],
            format!(
                "where the plugins are ({from} names {}, which holds none of them)",
                candidates.join(", ")
            ),
        ),
        (Some(from), _, _) => {
            let mut dirs = holding.clone();
            dirs.extend(candidates.iter().filter(|d| !holding.contains(d)).cloned());
            (dirs, from)
        }
        (None, false, _) => (holding, "where the plugins are".to_string()),
        (None, true, _) => (
            vec![BIN_DIR_CANDIDATES[0].to_string()],
            "the default (no plugins found)".to_string(),
        ),
    }
}

/// The plugin types a CNI config's text names (see [`plugin_types`]).
pub fn plugin_types_of(text: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
    else {
        return vec![];
    };
    types_of(&v)
}

fn types_of(v: &serde_json::Value) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        if !t.is_empty() && !types.iter().any(|x| x == t) {
            types.push(t.to_string());
        }
    };
    let mut plugin = |p: &serde_json::Value| {
        let Some(t) = p["type"].as_str() else {
            return;
        };
        add(t);
        if let Some(i) = p["ipam"]["type"].as_str() {
            add(i);
        }
        if t == "flannel" {
            add(p["delegate"]["type"].as_str().unwrap_or("bridge"));
            add("host-local");
        }
    };
    match v["plugins"].as_array() {
        Some(list) => list.iter().for_each(&mut plugin),
        None => plugin(v),
    }
    types
}

/// The plugin types the CNI config files name — `type`, each of a list's `plugins`, their
/// `ipam.type`, flannel's `delegate.type` (bridge when it names none) — each with its file.
fn plugin_types(node: &Node, dir: &str, files: &[String]) -> Vec<(String, String)> {
    let mut types: Vec<(String, String)> = Vec::new();
    for f in files {
        let Ok(Some(text)) = node.read(&crate::node::join(dir, f)) else {
            continue;
        };
        for t in plugin_types_of(&text) {
            if !types.iter().any(|(x, _)| *x == t) {
                types.push((t, f.clone()));
            }
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
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cni_of(files: &[(&str, &str)]) -> Cni {
        let (_d, n) = crate::node::test_node(files);
        let k =
            super::super::kubelet::inspect(&n, Default::default(), &mut BTreeMap::new()).unwrap();
        inspect(&n, &k, &[], None, &CrioConfig::default())
    }

    #[test]
    fn every_missing_plugin_is_named_and_an_empty_configured_dir_is_not_chosen() {
        let mut files = vec![
            (
                "/etc/cni/net.d/10-flannel.conflist",
                r#"{"name":"cbr0","plugins":[{"type":"flannel","delegate":{"hairpinMode":true}},{"type":"portmap"},{"type":"bandwidth"}]}"#,
            ),
            ("/opt/cni/bin/flannel", "x"),
            ("/opt/cni/bin/portmap", "x"),
            ("/opt/cni/bin/loopback", "x"),
            ("/opt/custom/empty/README", "x"),
        ];
        let c = cni_of(&files);
        assert_eq!(c.bin_dirs, ["/opt/cni/bin"]);
        let missing: Vec<&str> = c.missing.iter().map(|(p, _)| p.as_str()).collect();
        // All of them, not the first the runtime would trip on: the delegate and its IPAM too.
        assert_eq!(missing, ["bridge", "host-local", "bandwidth"]);
        assert_eq!(c.missing[0].1, "10-flannel.conflist");
        // A --cni-bin-dir that holds none of them is not chosen over /opt/cni/bin, and said.
        files.push((
            "/var/lib/kubelet/kubeadm-flags.env",
            "KUBELET_KUBEADM_ARGS=\"--network-plugin=cni --cni-bin-dir=/opt/custom/empty\"\n",
        ));
        let c = cni_of(&files);
        assert_eq!(c.bin_dirs, ["/opt/cni/bin"], "{}", c.bin_dir_source);
        assert!(
            c.bin_dir_source.contains("holds none of them"),
            "{}",
            c.bin_dir_source
        );
    }
}
