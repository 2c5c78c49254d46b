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
    /// The variable that holds it, or `ExecStart` for a flag written on the unit's command
    /// line itself.
    pub var: String,
    /// The line of `file` that holds it (0 where not known).
    #[serde(default)]
    pub line: usize,
}

/// The name a flag written on the `ExecStart=` line itself has for its "variable".
pub const EXEC_START: &str = "ExecStart";

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The drop-ins of the kubelet's `--config-dir` (1.28+) that were read, in the order they
    /// apply (each overrides the fields it sets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropins: Vec<String>,
    /// The file whose `containerRuntimeEndpoint` is in force: the last drop-in that sets it,
    /// else the config file itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_log_max_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_log_max_files: Option<u64>,
    /// The fields a drop-in decides, with the drop-in (the last that sets each).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_in: BTreeMap<String, String>,
}

impl KubeletConfig {
    /// A drop-in of `--config-dir` read over this config: each field it sets wins, and is
    /// recorded as set there.
    fn overlay(&mut self, path: String, d: KubeletConfig) {
        /// `b` over `a` where it is set; whether it was.
        fn take<T>(a: &mut Option<T>, b: Option<T>) -> bool {
            let set = b.is_some();
            if set {
                *a = b;
            }
            set
        }
        let dns = !d.cluster_dns.is_empty();
        if dns {
            self.cluster_dns = d.cluster_dns;
        }
        let set = [
            (
                "cgroupDriver",
                take(&mut self.cgroup_driver, d.cgroup_driver),
            ),
            (
                "containerRuntimeEndpoint",
                take(
                    &mut self.container_runtime_endpoint,
                    d.container_runtime_endpoint,
                ),
            ),
            (
                "imageServiceEndpoint",
                take(&mut self.image_service_endpoint, d.image_service_endpoint),
            ),
            (
                "staticPodPath",
                take(&mut self.static_pod_path, d.static_pod_path),
            ),
            (
                "clusterDomain",
                take(&mut self.cluster_domain, d.cluster_domain),
            ),
            ("podCIDR", take(&mut self.pod_cidr, d.pod_cidr)),
            (
                "containerLogMaxSize",
                take(&mut self.container_log_max_size, d.container_log_max_size),
            ),
            (
                "containerLogMaxFiles",
                take(&mut self.container_log_max_files, d.container_log_max_files),
            ),
            ("clusterDNS", dns),
        ];
        for (field, _) in set.iter().filter(|(_, set)| *set) {
            if *field == "containerRuntimeEndpoint" {
                self.endpoint_file = Some(path.clone());
            }
            self.set_in.insert(field.to_string(), path.clone());
        }
        self.dropins.push(path);
    }

    /// The file that decides a field: the last drop-in that sets it, else the config file.
    pub fn file_of(&self, field: &str) -> &str {
        self.set_in
            .get(field)
            .map(String::as_str)
            .unwrap_or(&self.path)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Kubelet {
    #[serde(flatten)]
    pub installed: Installed,
    pub flag_files: Vec<FlagFile>,
    /// Every flag, in the order the kubelet sees them (a later one wins).
    pub flags: Vec<FoundFlag>,
    /// The `ExecStart=` in force, where the unit runs the kubelet (read through the unit model);
    /// `None` where the node has no kubelet unit and kubeadm's files were read instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_start: Option<crate::unit::Origin>,
    /// The variables that line expands as words of their own: where flags can be added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_vars: Vec<String>,
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

    /// Whether the kubelet runs on kubenet (`--network-plugin=kubenet`), dockershim's own
    /// network plugin, which no CRI runtime has.
    pub fn on_kubenet(&self) -> bool {
        self.flag("network-plugin").and_then(|f| f.value.as_deref()) == Some("kubenet")
    }

    /// The pod CIDR the kubelet's own files give (`--pod-cidr`, else `podCIDR` in its config),
    /// with where it is set.
    pub fn pod_cidr(&self) -> Option<(String, String)> {
        match (
            self.flag("pod-cidr").and_then(|f| f.value.clone()),
            &self.config.pod_cidr,
        ) {
            (Some(c), _) => Some((c, "the kubelet's --pod-cidr".into())),
            (None, Some(c)) => Some((
                c.clone(),
                format!("podCIDR in {}", self.config.file_of("podCIDR")),
            )),
            (None, None) => None,
        }
    }

    /// The kubelet's image credential providers, where its flags name them (both the config
    /// and the plugin directory: the kubelet needs both).
    pub fn credential_providers(&self) -> Option<crate::cri::provider::Source> {
        let v = |n: &str| {
            self.flag(n)
                .and_then(|f| f.value.clone())
                .filter(|v| !v.is_empty())
        };
        Some(crate::cri::provider::Source {
            config: v("image-credential-provider-config")?,
            bin_dir: v("image-credential-provider-bin-dir")?,
        })
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
    let read = match from_unit(node, files)? {
        Some(r) => r,
        None => from_kubeadm_files(node, files)?,
    };
    let Sources {
        flag_files,
        flags,
        ignored_lines,
        exec_start,
        exec_vars,
    } = read;

    let config_path = flags
        .iter()
        .rev()
        .find(|f| f.name == "config")
        .and_then(|f| f.value.clone())
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    let mut config = read_config(node, &config_path, files)?;
    // The drop-in directory (1.28+): its `*.conf` files, by name, each over the one before.
    if let Some(dir) = flags
        .iter()
        .rev()
        .find(|f| f.name == "config-dir")
        .and_then(|f| f.value.clone())
        .filter(|d| !d.is_empty())
    {
        for name in node.list(&dir).into_iter().filter(|n| n.ends_with(".conf")) {
            let path = join(&dir, &name);
            let d = read_config(node, &path, files)?;
            if !d.exists {
                continue;
            }
            config.overlay(path, d);
        }
    }

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
        exec_start,
        exec_vars,
        config,
        ignored_lines,
    })
}

/// Where the kubelet's flags were read from, and the flags.
struct Sources {
    flag_files: Vec<FlagFile>,
    flags: Vec<FoundFlag>,
    ignored_lines: Vec<String>,
    exec_start: Option<crate::unit::Origin>,
    exec_vars: Vec<String>,
}

/// The flags as the node's `kubelet.service` runs them (the unit model, `src/unit.rs`): each
/// word of its command line with the file, line and variable it came from — kubeadm's
/// drop-in and kubeadm-flags.env, Kubespray's kubelet.env, flags on the unit's own
/// `ExecStart=`, a distribution's /etc/sysconfig/kubelet alike. `None` without a kubelet unit
/// or an `ExecStart=` in it.
fn from_unit(node: &Node, files: &mut BTreeMap<String, Snapshot>) -> Result<Option<Sources>> {
    let Some(unit) = crate::unit::Unit::load(node, "kubelet.service")? else {
        return Ok(None);
    };
    let Some(exec) = unit.exec_start.last().map(|e| e.origin.clone()) else {
        return Ok(None);
    };
    let Some(command) = unit.command(node)? else {
        return Ok(None);
    };
    let unit_files: Vec<&String> = unit.fragment.iter().chain(&unit.dropins).collect();
    // Every file the unit reads its environment from must be one we can edit back.
    let mut ignored_lines = Vec::new();
    let mut kinds: BTreeMap<String, FileKind> = BTreeMap::new();
    for f in &unit.environment_files {
        let path = f.value.trim_start_matches('-').trim().to_string();
        let Some(snap) = node.snapshot(&path)? else {
            continue;
        };
        let file = VarsFile::parse(FileKind::EnvFile, &snap.content).map_err(|e| {
            Failure::bad_input(&path, e, "Fix the file: each line must be KEY=\"value\" with balanced quotes (see systemd.exec(5), EnvironmentFile=).")
        })?;
        ignored_lines.extend(file.ignored.iter().map(|w| format!("{path}: {w}")));
        kinds.insert(path.clone(), FileKind::EnvFile);
        files.insert(path, snap);
    }
    for path in &unit_files {
        let Some(snap) = node.snapshot(path)? else {
            continue;
        };
        VarsFile::parse(FileKind::DropIn, &snap.content).map_err(|e| {
            Failure::bad_input(
                path.as_str(),
                e,
                "Fix the quoting of its Environment= line (see systemd.exec(5)).",
            )
        })?;
        kinds.entry(path.to_string()).or_insert(FileKind::DropIn);
        files.insert(path.to_string(), snap);
    }

    let flags = flags_of(&command);

    // The sources: each variable the line expands, in the file that sets it; kubeadm's file
    // even when it sets nothing yet (the runtime flags belong there); the line itself when it
    // holds flags.
    let (env, _) = unit.env(node)?;
    let mut by_file: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in &command.expands {
        if let Some((_, s)) = env.iter().find(|(n, _)| n == name) {
            let vars = by_file.entry(s.origin.file.clone()).or_default();
            if !vars.contains(name) {
                vars.push(name.clone());
            }
        }
    }
    if kinds.contains_key(KUBEADM_FLAGS) {
        by_file.entry(KUBEADM_FLAGS.to_string()).or_default();
    }
    let mut flag_files: Vec<FlagFile> = by_file
        .into_iter()
        .filter_map(|(path, vars)| {
            kinds.get(&path).map(|kind| FlagFile {
                path,
                kind: *kind,
                vars,
            })
        })
        .collect();
    if flags.iter().any(|f| f.var == EXEC_START) {
        flag_files.push(FlagFile {
            path: exec.file.clone(),
            kind: FileKind::ExecStart,
            vars: vec![EXEC_START.into()],
        });
    }
    Ok(Some(Sources {
        flag_files,
        flags,
        ignored_lines,
        exec_start: Some(exec),
        exec_vars: command.expands.clone(),
    }))
}

/// Without a kubelet unit on the node: kubeadm's files and the distributions' EXTRA_ARGS
/// files, as kubeadm's drop-in would read them.
fn from_kubeadm_files(node: &Node, files: &mut BTreeMap<String, Snapshot>) -> Result<Sources> {
    let mut flag_files = Vec::new();
    let mut flags = Vec::new();
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
                    line: 0,
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

    Ok(Sources {
        flag_files,
        flags,
        ignored_lines,
        exec_start: None,
        exec_vars: vec![],
    })
}

/// cri-dockerd's flags, from the command line its `cri-docker.service` runs (read as systemd
/// reads it), each with where it is set: its `--pod-infra-container-image`, `--network-plugin`,
/// `--cni-bin-dir` and `--cni-conf-dir` are what dockershim's were. Empty without the unit.
pub fn cri_dockerd_flags(node: &Node) -> Result<Vec<FoundFlag>> {
    let Some(unit) = crate::unit::Unit::load(node, "cri-docker.service")? else {
        return Ok(vec![]);
    };
    let Some(command) = unit.command(node)? else {
        return Ok(vec![]);
    };
    Ok(flags_of(&command))
}

/// The flags of a command line after its program, each with where it is set: the variable a
/// `$VAR` word was split from (where the variable was set), else the `ExecStart=` line (a
/// `${VAR}` inside a word belongs to the line). `--flag value` takes its value from the same
/// place only: a `$VAR` after a bare flag of the line stands for flags of its own.
fn flags_of(command: &crate::unit::Command) -> Vec<FoundFlag> {
    let source = |w: &crate::unit::Word| match &w.variable {
        Some(v) if v.set_at == w.origin => (v.set_at.file.clone(), v.name.clone(), v.set_at.line),
        _ => (w.origin.file.clone(), EXEC_START.to_string(), w.origin.line),
    };
    let words: Vec<(&str, (String, String, usize))> = command
        .argv
        .iter()
        .skip(1)
        .map(|w| (w.text.as_str(), source(w)))
        .collect();
    let mut flags = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (text, src) = &words[i];
        i += 1;
        let Some(body) = text.strip_prefix("--").or_else(|| text.strip_prefix('-')) else {
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => match words
                .get(i)
                .filter(|(t, s)| !t.starts_with('-') && s == src)
            {
                Some((t, _)) => {
                    i += 1;
                    (body.to_string(), Some(t.to_string()))
                }
                None => (body.to_string(), None),
            },
        };
        flags.push(FoundFlag {
            name,
            value,
            file: src.0.clone(),
            var: src.1.clone(),
            line: src.2,
        });
    }
    flags
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
        pod_cidr: s("podCIDR"),
        container_log_max_size: s("containerLogMaxSize"),
        container_log_max_files: value.get("containerLogMaxFiles").and_then(|v| v.as_u64()),
        ..Default::default()
    };
    files.insert(path.to_string(), snap);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_dir_drop_in_wins_for_each_field_it_sets_and_is_named_for_it() {
        let mut c = KubeletConfig {
            path: "/var/lib/kubelet/config.yaml".into(),
            cgroup_driver: Some("cgroupfs".into()),
            container_log_max_size: Some("10Mi".into()),
            ..KubeletConfig::default()
        };
        let d = KubeletConfig {
            cgroup_driver: Some("systemd".into()),
            container_log_max_files: Some(3),
            container_runtime_endpoint: Some("unix:///run/containerd/containerd.sock".into()),
            ..KubeletConfig::default()
        };
        c.overlay("/etc/kubernetes/kubelet.conf.d/10-a.conf".into(), d);
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(c.container_log_max_size.as_deref(), Some("10Mi"));
        assert_eq!(c.container_log_max_files, Some(3));
        for field in [
            "cgroupDriver",
            "containerLogMaxFiles",
            "containerRuntimeEndpoint",
        ] {
            assert_eq!(
                c.file_of(field),
                "/etc/kubernetes/kubelet.conf.d/10-a.conf",
                "{field}"
            );
        }
        assert_eq!(
            c.file_of("containerLogMaxSize"),
            "/var/lib/kubelet/config.yaml"
        );
        assert_eq!(
            c.endpoint_file.as_deref(),
            Some("/etc/kubernetes/kubelet.conf.d/10-a.conf")
        );
        assert_eq!(c.dropins, ["/etc/kubernetes/kubelet.conf.d/10-a.conf"]);
    }
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
                    line: 0,
                })
                .collect(),
            exec_start: None,
            exec_vars: vec![],
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
