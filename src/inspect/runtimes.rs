//! Which runtimes are installed (binaries, packages, units, sockets) and the configuration
//! files of containerd and CRI-O as found.

use super::packages::Packages;
use super::Installed;
use crate::error::Failure;
use crate::node::{join, Node, Snapshot};
use crate::system::Commands;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// How to find one piece of software on a node.
pub struct Software {
    pub binaries: &'static [&'static str],
    pub packages: &'static [&'static str],
    pub units: &'static [&'static str],
    pub sockets: &'static [&'static str],
}

pub const KUBELET: Software = Software {
    binaries: &["kubelet"],
    packages: &["kubelet"],
    units: &["kubelet.service"],
    sockets: &[],
};
pub const DOCKER: Software = Software {
    binaries: &["dockerd"],
    packages: &["docker-ce", "docker.io", "moby-engine", "docker-engine"],
    units: &["docker.service", "docker.socket"],
    sockets: &["/var/run/docker.sock", "/run/docker.sock"],
};
pub const CRI_DOCKERD: Software = Software {
    binaries: &["cri-dockerd"],
    packages: &["cri-dockerd"],
    units: &["cri-docker.service", "cri-docker.socket"],
    sockets: &["/run/cri-dockerd.sock", "/var/run/cri-dockerd.sock"],
};
pub const CONTAINERD: Software = Software {
    binaries: &["containerd"],
    packages: &["containerd.io", "containerd"],
    units: &["containerd.service"],
    sockets: &["/run/containerd/containerd.sock"],
};
pub const CRIO: Software = Software {
    binaries: &["crio"],
    packages: &["cri-o"],
    units: &["crio.service"],
    sockets: &["/var/run/crio/crio.sock", "/run/crio/crio.sock"],
};

const BIN_DIRS: [&str; 6] = [
    "/usr/bin",
    "/usr/local/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/opt/bin",
];
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

pub const CONTAINERD_CONFIG: &str = crate::runtime::CONTAINERD.config;
pub const CONTAINERD_CERTS_D: &str = "/etc/containerd/certs.d";
pub const CRICTL_YAML: &str = "/etc/crictl.yaml";
pub const CRIO_CONF: &str = "/etc/crio/crio.conf";
pub const CRIO_CONF_D: &str = "/etc/crio/crio.conf.d";
pub const CRIO_DROP_IN: &str = crate::runtime::CRIO.config;
pub const REGISTRIES_CONF: &str = "/etc/containers/registries.conf";
/// kubeadm 1.34+ (NodeLocalCRISocket) keeps the node's CRI socket here instead of an annotation.
pub const INSTANCE_CONFIG: &str = "/var/lib/kubelet/instance-config.yaml";
pub const REGISTRIES_DROP_IN: &str = "/etc/containers/registries.conf.d/99-cri-migrate.conf";

pub fn detect(node: &Node, cmds: &dyn Commands, pkgs: &Packages, sw: &Software) -> Installed {
    let binary = sw
        .binaries
        .iter()
        .flat_map(|b| BIN_DIRS.iter().map(move |d| join(d, b)))
        .find(|p| node.is_executable(p));
    let units: Vec<String> = sw
        .units
        .iter()
        .filter(|u| UNIT_DIRS.iter().any(|d| node.exists(&join(d, u))))
        .map(|u| u.to_string())
        .collect();
    let socket = sw
        .sockets
        .iter()
        .find(|s| node.exists(s))
        .map(|s| s.to_string());
    let package = pkgs.find(sw.packages);
    // The service unit's settings that the plan needs, its files read once.
    let service = sw
        .units
        .iter()
        .find(|u| u.ends_with(".service"))
        .and_then(|u| crate::unit::Unit::load(node, u).ok().flatten());
    let [kill_mode, exec_start, limit_nofile] =
        unit_settings(service.as_ref(), ["KillMode", "ExecStart", "LimitNOFILE"]);
    let mut installed = Installed {
        installed: binary.is_some() || package.is_some(),
        version: None,
        version_source: None,
        binary: binary.clone(),
        package: package.as_ref().map(|p| p.name.clone()),
        units,
        socket,
        package_note: package.as_ref().and_then(|p| p.note.clone()),
        kill_mode,
        exec_start,
        limit_nofile,
        tied_to: service.as_ref().map(tied_to).unwrap_or_default(),
    };
    // On the live node the binary itself is the truth (it may come from a tarball); under
    // --root nothing is run and the package database tells.
    if node.is_live() {
        if let Some(bin) = &binary {
            if let Some(v) = cmds
                .output(bin, &["--version"])
                .as_deref()
                .and_then(crate::version::Version::find_in)
            {
                installed.version = Some(v);
                installed.version_source = Some(format!("{bin} --version"));
            }
        }
    }
    // Under --root a binary is never run, but a Go binary may carry its version in its build
    // information (a release build; distribution builds mostly do not). Scanned only when no
    // package database gave the version, and only up to a size no real binary reaches.
    if installed.version.is_none()
        && !node.is_live()
        && package.as_ref().and_then(|p| p.version).is_none()
    {
        if let Some(bin) = &binary {
            let magic = crate::version::GO_BUILDINFO_MAGIC;
            match node.find_after(bin, magic, 64 << 10, MAX_BINARY_BYTES) {
                Ok(after) => {
                    if let Some(v) = after.as_deref().and_then(crate::version::from_go_buildinfo) {
                        installed.version = Some(v);
                        installed.version_source = Some(format!("{bin}'s Go build information"));
                    }
                }
                Err(e) => {
                    let said = format!("its build information was not read: {e:#}");
                    installed.package_note = Some(match installed.package_note.take() {
                        Some(n) => format!("{n}; {said}"),
                        None => said,
                    });
                }
            }
        }
    }
    if installed.version.is_none() {
        if let Some(crate::inspect::packages::Found {
            name,
            version: Some(v),
            ..
        }) = package
        {
            installed.version = Some(v);
            installed.version_source = Some(format!("package {name}"));
        }
    }
    installed
}

/// A dependency of a unit on a runtime's unit that makes a stop or restart of the runtime stop
/// or restart it too (`BindsTo=containerd.service`), with the unit's files that hold it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tie {
    pub dependency: &'static str,
    pub unit: String,
    pub files: Vec<String>,
}

impl std::fmt::Display for Tie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} ({})",
            self.dependency,
            self.unit,
            self.files.join(", ")
        )
    }
}

/// The runtimes' units `u` is tied to by `Requires=`, `BindsTo=` or `PartOf=` (its file and
/// drop-ins): a stop or restart of one of them stops or restarts `u` too.
pub fn tied_to(u: &crate::unit::Unit) -> Vec<Tie> {
    const RUNTIME_UNITS: [&str; 2] = ["containerd.service", "crio.service"];
    let files: Vec<String> = u.fragment.iter().chain(&u.dropins).cloned().collect();
    let mut out = Vec::new();
    for (dependency, names) in [
        ("Requires", &u.requires),
        ("BindsTo", &u.binds_to),
        ("PartOf", &u.part_of),
    ] {
        for n in names.iter().filter(|n| RUNTIME_UNITS.contains(&n.as_str())) {
            out.push(Tie {
                dependency,
                unit: n.clone(),
                files: files.clone(),
            });
        }
    }
    out
}

/// `[Service]` settings of a unit as systemd reads them (`src/unit.rs`: the unit file that wins,
/// then its drop-ins by name; the last assignment of a key wins, an empty one resets it).
pub fn unit_settings<const N: usize>(
    loaded: Option<&crate::unit::Unit>,
    keys: [&str; N],
) -> [Option<String>; N] {
    keys.map(|k| {
        let u = loaded?;
        match k {
            // Kept apart by the unit model (its lines, resets and words).
            "ExecStart" => u.exec_start.last().map(|s| s.value.clone()),
            _ => u.service.get(k).cloned(),
        }
    })
}

/// The spec every containerd handler starts its containers from when Docker set default
/// ulimits (the path the EKS AL2023 AMI uses for the same purpose).
pub const CONTAINERD_BASE_SPEC: &str = "/etc/containerd/base-runtime-spec.json";

/// The drop-in that carries Docker's proxy to a runtime's unit.
pub fn proxy_drop_in(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.d/20-cri-migrate-proxy.conf")
}

/// `/etc/containerd/config.toml` as found.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerdConfig {
    pub path: String,
    /// 1 for a file without `version` (Docker's containerd.io ships one), else its version.
    pub schema: i64,
    pub disabled_plugins: Vec<String>,
    pub cri_disabled: bool,
    pub imports: Vec<String>,
    /// Deprecated `registry.mirrors` / `registry.configs` tables (they conflict with config_path).
    pub registry_mirrors: Vec<String>,
    /// The pause image the file sets.
    pub sandbox_image: Option<String>,
    /// The CNI directories the file sets (a node migrated before keeps them).
    pub cni_conf_dir: Option<String>,
    pub cni_bin_dirs: Vec<String>,
    /// The snapshotter CRI unpacks images into, when the file names one (else overlayfs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshotter: Option<String>,
    /// The overlayfs snapshotter's setting that chowns snapshots' files (`slow_chown`, for pods
    /// in user namespaces without idmapped mounts), when set: Docker's layers are then copied,
    /// never linked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chowns_snapshots: Option<String>,
    /// containerd's `root`, when the file moves it from /var/lib/containerd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// `[grpc] address`, when the file sets the CRI socket (the unit's `--address` wins).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_address: Option<String>,
    /// The files `imports` names (globs resolved as containerd resolves them, each in order),
    /// each with what it sets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<Imported>,
}

/// One file containerd's config imports, flattened: containerd merges it over the main file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Imported {
    pub path: String,
    /// Its `version` (1 where it has none).
    pub version: i64,
    /// Every value it sets, by dotted key (`plugins."io.containerd.grpc.v1.cri".sandbox_image`),
    /// as TOML writes the value.
    #[serde(skip)]
    pub values: Vec<(String, String)>,
    /// The plugin tables it has (containerd 1.x replaces the main file's table of that plugin
    /// with the import's whole: containerd#5837).
    pub plugins: Vec<String>,
    /// Runtime handlers it defines (`...containerd.runtimes.NAME`), e.g. nvidia-ctk's drop-in.
    pub handlers: Vec<String>,
}

/// Every value of a TOML document by dotted key, as TOML writes it (keys quoted where needed).
pub fn flatten(doc: &toml_edit::DocumentMut) -> Vec<(String, String)> {
    fn walk(prefix: &str, t: &dyn toml_edit::TableLike, out: &mut Vec<(String, String)>) {
        for (k, item) in t.iter() {
            let key = toml_edit::Key::new(k).display_repr().to_string();
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match item {
                toml_edit::Item::Value(toml_edit::Value::InlineTable(it)) => walk(&path, it, out),
                toml_edit::Item::Value(v) => out.push((path, v.to_string().trim().to_string())),
                toml_edit::Item::Table(tt) => walk(&path, tt, out),
                toml_edit::Item::ArrayOfTables(a) => {
                    out.push((path, format!("[{} tables]", a.len())));
                }
                toml_edit::Item::None => {}
            }
        }
    }
    let mut out = vec![];
    walk("", doc.as_table(), &mut out);
    out
}

/// The files an `imports` entry names: a path relative to the main file's directory, a glob in
/// its last part matched as containerd's filepath.Glob matches it (sorted).
fn resolve_import(node: &Node, entry: &str) -> Vec<String> {
    let path = if entry.starts_with('/') {
        entry.to_string()
    } else {
        join("/etc/containerd", entry)
    };
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
        None => return vec![],
    };
    if !name.contains(['*', '?', '[']) {
        return vec![path];
    }
    let re = format!(
        "^{}$",
        regex::escape(name)
            .replace("\\*", "[^/]*")
            .replace("\\?", "[^/]")
    );
    let Ok(re) = regex::Regex::new(&re) else {
        return vec![];
    };
    let mut out: Vec<String> = node
        .list(dir)
        .into_iter()
        .filter(|n| re.is_match(n))
        .map(|n| join(dir, &n))
        .filter(|p| node.is_file(p))
        .collect();
    out.sort();
    out
}

/// A unit's command as systemd runs it (`ExecStart=`, variables expanded, drop-ins); `None`
/// without the unit or a command. Read once per unit, then asked for its flags.
pub fn unit_command(node: &Node, unit: &str) -> Result<Option<crate::unit::Command>> {
    match crate::unit::Unit::load(node, unit)? {
        Some(u) => u.command(node),
        None => Ok(None),
    }
}

/// The values a unit's command gives to one of `names` (`-c X`, `--config X`, `--config=X`),
/// in order, each with where it is set. Empty without the command or the flag.
pub fn unit_flag(command: Option<&crate::unit::Command>, names: &[&str]) -> Vec<(String, String)> {
    let Some(command) = command else {
        return vec![];
    };
    let words = &command.argv;
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate().skip(1) {
        let value = if names.contains(&w.text.as_str()) {
            words.get(i + 1).map(|n| n.text.clone())
        } else {
            names.iter().find_map(|n| {
                w.text
                    .strip_prefix(n)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::to_string)
            })
        };
        if let Some(v) = value {
            let at = match &w.variable {
                Some(v) => format!("{}:{} (${})", v.set_at.file, v.set_at.line, v.name),
                None => format!("{}:{}", w.origin.file, w.origin.line),
            };
            out.push((v, at));
        }
    }
    out
}

/// A path a runtime's unit (`unit`, its `command`) gives it, checked as a node path: the last
/// one (as the runtimes' flag parsers take it), else `default`, with where it is set.
fn unit_path(
    command: Option<&crate::unit::Command>,
    unit: &str,
    names: &[&str],
    default: &str,
    what: &str,
) -> Result<(String, Option<String>)> {
    let Some((path, at)) = unit_flag(command, names).pop() else {
        return Ok((default.to_string(), None));
    };
    if let Err(why) = crate::names::node_path_value(&path) {
        return Err(Failure::bad_input(
            &at,
            format!("{unit} runs its program with the {what} {path:?}: {why}"),
            format!(
                "Give {} an absolute path in the unit, or remove it for {default}.",
                names.join("/")
            ),
        )
        .into());
    }
    Ok((path, Some(format!("{unit}'s {} ({at})", names[0]))))
}

/// The config file containerd loads: its unit's `-c`/`--config` (kOps runs `containerd -c
/// /etc/containerd/config-kops.toml`), else containerd's default. With where it is set.
/// `command`: containerd.service's (`unit_command`).
pub fn containerd_config_path(
    command: Option<&crate::unit::Command>,
) -> Result<(String, Option<String>)> {
    unit_path(
        command,
        "containerd.service",
        &["-c", "--config", "-config"],
        CONTAINERD_CONFIG,
        "config file",
    )
}

/// CRI-O's config file and drop-in directory as its unit runs it (`--config`/`-c`,
/// `--config-dir`/`-d`), else its defaults. `command`: crio.service's (`unit_command`).
pub fn crio_paths(command: Option<&crate::unit::Command>) -> Result<CrioPaths> {
    let (conf, conf_from) = unit_path(
        command,
        "crio.service",
        &["--config", "-c"],
        CRIO_CONF,
        "config file",
    )?;
    let (conf_dir, dir_from) = unit_path(
        command,
        "crio.service",
        &["--config-dir", "-d"],
        CRIO_CONF_D,
        "config directory",
    )?;
    Ok(CrioPaths {
        drop_in: join(
            &conf_dir,
            CRIO_DROP_IN.rsplit('/').next().unwrap_or_default(),
        ),
        conf,
        conf_dir,
        from: [conf_from, dir_from].into_iter().flatten().collect(),
    })
}

/// Where CRI-O reads its config (`crio_paths`) and where our drop-in goes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CrioPaths {
    pub conf: String,
    pub conf_dir: String,
    pub drop_in: String,
    /// Where the unit sets them, when it does.
    pub from: Vec<String>,
}

impl Default for CrioPaths {
    fn default() -> Self {
        CrioPaths {
            conf: CRIO_CONF.into(),
            conf_dir: CRIO_CONF_D.into(),
            drop_in: CRIO_DROP_IN.into(),
            from: vec![],
        }
    }
}

/// A runtime's unit that makes it listen somewhere else than its default socket, where
/// cri-migrate points the kubelet, crictl and its checks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OtherSocket {
    pub unit: String,
    pub flag: String,
    pub value: String,
    pub at: String,
}

/// The runtimes' units that set a socket other than their default (`--address` for
/// containerd, `--listen` for CRI-O), from their commands (`unit_command`).
pub fn other_sockets(
    containerd: Option<&crate::unit::Command>,
    crio: Option<&crate::unit::Command>,
    containerd_config: Option<&ContainerdConfig>,
    crio_config: Option<&CrioConfig>,
) -> Vec<OtherSocket> {
    let mut out = Vec::new();
    // Their configs may set it too (containerd's `[grpc] address`, CRI-O's `[crio.api]
    // listen`); the command line wins, as in both.
    let ctd_config = containerd_config.and_then(|c| {
        c.grpc_address
            .clone()
            .map(|a| (a, format!("{} ([grpc] address)", c.path), "[grpc] address"))
    });
    let crio_conf =
        crio_config.and_then(|c| c.listen.clone().map(|(l, at)| (l, at, "[crio.api] listen")));
    for (unit, command, names, default) in [
        (
            "containerd.service",
            containerd,
            &["-a", "--address"][..],
            "/run/containerd/containerd.sock",
        ),
        (
            "crio.service",
            crio,
            &["--listen"][..],
            "/var/run/crio/crio.sock",
        ),
    ] {
        let set = unit_flag(command, names)
            .pop()
            .map(|(value, at)| (value, at, names.join("/")))
            .or_else(|| {
                let c = if unit == "containerd.service" {
                    &ctd_config
                } else {
                    &crio_conf
                };
                c.clone()
                    .map(|(value, at, flag)| (value, at, flag.to_string()))
            });
        if let Some((value, at, flag)) = set {
            let same = |p: &str| {
                p.trim_start_matches("unix://")
                    .replace("/var/run/", "/run/")
            };
            if same(&value) != same(default) {
                out.push(OtherSocket {
                    unit: unit.into(),
                    flag,
                    value,
                    at,
                });
            }
        }
    }
    out
}

/// The containerd config file at `path` (`containerd_config_path`), as found.
pub fn containerd_config(
    node: &Node,
    path: &str,
    files: &mut BTreeMap<String, Snapshot>,
) -> Result<Option<ContainerdConfig>> {
    let Some(snap) = node.snapshot(path)? else {
        return Ok(None);
    };
    let doc: toml_edit::DocumentMut = snap.content.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(
            path,
            crate::error::toml_problem(&snap.content, &e),
            "Fix the file (containerd does not start with it either), or move it aside so that cri-migrate writes a new one.",
        )
    })?;
    crate::secrets::from_toml(doc.as_item());
    let schema = check_containerd_meaning(path, &doc)?;
    let disabled_plugins = strings(doc.get("disabled_plugins"));
    let cri_disabled = disabled_plugins.iter().any(|p| is_cri_plugin(p));
    let mut registry_mirrors = Vec::new();
    for cri in [
        "cri",
        "io.containerd.grpc.v1.cri",
        "io.containerd.cri.v1.images",
    ] {
        registry_mirrors.extend(keys_at(doc.get("plugins"), &[cri, "registry", "mirrors"]));
    }
    let (cni_conf_dir, cni_bin_dirs) = cni_dirs(&doc);
    let plugins = doc.get("plugins");
    let snapshotter = [
        &["io.containerd.grpc.v1.cri", "containerd", "snapshotter"][..],
        &["cri", "containerd", "snapshotter"],
        &["io.containerd.cri.v1.images", "snapshotter"],
    ]
    .iter()
    .find_map(|path| text(item_at(plugins, path)));
    let chowns_snapshots = ["io.containerd.snapshotter.v1.overlayfs", "overlayfs"]
        .iter()
        .find_map(|t| {
            plugins?
                .get(t)?
                .get("slow_chown")?
                .as_bool()
                .filter(|on| *on)
                .map(|_| format!("[plugins.\"{t}\"] slow_chown = true"))
        });
    let config = ContainerdConfig {
        root: text(doc.get("root")),
        grpc_address: text(doc.get("grpc").and_then(|g| g.get("address"))),
        sandbox_image: pause_image(plugins),
        snapshotter,
        chowns_snapshots,
        cni_conf_dir,
        cni_bin_dirs,
        path: path.to_string(),
        schema,
        imports: strings(doc.get("imports")),
        imported: imports_of(node, path, &doc)?,
        disabled_plugins,
        cri_disabled,
        registry_mirrors,
    };
    files.insert(path.to_string(), snap);
    Ok(Some(config))
}

/// A string value that says something (not empty).
fn text(item: Option<&toml_edit::Item>) -> Option<String> {
    item.and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The item at `path` below `item` (a table).
pub fn item_at<'a>(
    item: Option<&'a toml_edit::Item>,
    path: &[&str],
) -> Option<&'a toml_edit::Item> {
    path.iter().try_fold(item?, |item, key| item.get(key))
}

/// The keys of the table at `path` below `item`, in order; none where there is no table.
pub fn keys_at(item: Option<&toml_edit::Item>, path: &[&str]) -> Vec<String> {
    item_at(item, path)
        .and_then(|t| t.as_table_like())
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default()
}

/// The strings of a TOML array (other values left out); none where it is no array.
pub fn strings(item: Option<&toml_edit::Item>) -> Vec<String> {
    item.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The CNI directories the CRI plugin's `cni` table sets (schema 2's or 3's): the config
/// directory, and the plugin directories (`bin_dirs`, else `bin_dir`).
fn cni_dirs(doc: &toml_edit::DocumentMut) -> (Option<String>, Vec<String>) {
    let cni = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"]
        .iter()
        .find_map(|p| {
            doc.get("plugins")
                .and_then(|pl| pl.get(p))
                .and_then(|c| c.get("cni"))
        });
    let mut bin_dirs = strings(cni.and_then(|c| c.get("bin_dirs")));
    if bin_dirs.is_empty() {
        bin_dirs.extend(text(cni.and_then(|c| c.get("bin_dir"))));
    }
    (text(cni.and_then(|c| c.get("conf_dir"))), bin_dirs)
}

/// The pause image the file sets, in any schema (1's short `cri`, 2's, 3's pinned image).
fn pause_image(plugins: Option<&toml_edit::Item>) -> Option<String> {
    let p = plugins?;
    p.get("io.containerd.grpc.v1.cri")
        .and_then(|c| c.get("sandbox_image"))
        .or_else(|| p.get("cri").and_then(|c| c.get("sandbox_image")))
        .or_else(|| {
            p.get("io.containerd.cri.v1.images")?
                .get("pinned_images")?
                .get("sandbox")
        })
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// What containerd would refuse or misread in its config, by meaning, not syntax: refused here
/// (exit 4) with the file and the fix, before anything is planned from it. Returns the schema.
fn check_containerd_meaning(path: &str, doc: &toml_edit::DocumentMut) -> Result<i64, Failure> {
    let refuse = |problem: String, fix: &str| Failure::bad_input(path, problem, fix);
    let schema = match doc.get("version") {
        None => 1,
        Some(v) => match v.as_integer() {
            Some(n @ 1..=4) => n,
            Some(n) => {
                return Err(refuse(
                    format!("`version = {n}` is a config version containerd does not know (1 and 2 for containerd 1.x, 3 for 2.0 to 2.2, 4 from 2.3)"),
                    "Set the version the file is written for, or move the file aside so that cri-migrate writes a new one.",
                ))
            }
            None => {
                return Err(refuse(
                    format!("`version` must be a number, not {}", v.type_name()),
                    "Write it as `version = 2` (or 3), without quotes.",
                ))
            }
        },
    };
    if let Some(v) = doc.get("disabled_plugins") {
        match v.as_array() {
            Some(a) if a.iter().all(|x| x.as_str().is_some()) => {}
            _ => {
                return Err(refuse(
                    format!("`disabled_plugins` must be a list of plugin names, not {}", v.type_name()),
                    "Write it as a list, e.g. `disabled_plugins = [\"io.containerd.grpc.v1.cri\"]` (containerd refuses a plain string), or remove it.",
                ))
            }
        }
    }
    if let Some(v) = doc.get("plugins") {
        if !v.is_table_like() {
            return Err(refuse(
                format!("`plugins` must be a table, not {}", v.type_name()),
                "Write the plugins' settings as [plugins.\"...\"] tables, or move the file aside so that cri-migrate writes a new one.",
            ));
        }
    }
    // The imported files themselves are read once, by `imports_of`, which refuses a broken one.
    if let Some(v) = doc.get("imports") {
        if !v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.as_str().is_some()))
        {
            return Err(refuse(
                format!(
                    "`imports` must be a list of file paths, not {}",
                    v.type_name()
                ),
                "Write it as a list of paths, or remove it.",
            ));
        }
    }
    Ok(schema)
}

/// An imported file, read and checked: one that disables CRI again would undo the migration's
/// config behind its back (refused).
fn read_import(node: &Node, path: &str) -> Result<Option<(Imported, usize)>, Failure> {
    let Some(text) = node.read(path).map_err(|e| {
        Failure::bad_input(
            path,
            format!("{e:#}"),
            "Fix the file that /etc/containerd/config.toml imports, or remove it from `imports`.",
        )
    })?
    else {
        return Ok(None);
    };
    let imported: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(
            path,
            crate::error::toml_problem(&text, &e),
            "containerd does not start with a broken import either: fix it, or remove it from `imports` in /etc/containerd/config.toml.",
        )
    })?;
    crate::secrets::from_toml(imported.as_item());
    let disables = imported
        .get("disabled_plugins")
        .and_then(|d| d.as_array())
        .is_some_and(|a| a.iter().filter_map(|x| x.as_str()).any(is_cri_plugin));
    if disables {
        return Err(Failure::bad_input(
            path,
            "it is imported by /etc/containerd/config.toml and disables the CRI plugin again, which would undo the migration's config",
            "Remove the CRI plugin from its `disabled_plugins` (or the file from `imports`), then run cri-migrate again.",
        ));
    }
    let plugins = keys_at(imported.get("plugins"), &[]);
    let mut handlers = vec![];
    for p in [
        "io.containerd.grpc.v1.cri",
        "io.containerd.cri.v1.runtime",
        "cri",
    ] {
        handlers.extend(keys_at(
            imported.get("plugins"),
            &[p, "containerd", "runtimes"],
        ));
    }
    let size = text.len();
    Ok(Some((
        Imported {
            path: path.to_string(),
            version: imported
                .get("version")
                .and_then(|v| v.as_integer())
                .unwrap_or(1),
            values: flatten(&imported),
            plugins,
            handlers,
        },
        size,
    )))
}

/// Every file the config imports, read and checked (`read_import` refuses a broken one).
/// A file imported more than once is read once (containerd loads each path once too), and no
/// more than [`MAX_IMPORTS`] files or [`MAX_IMPORT_BYTES`] in all are read: past that the config
/// is refused, naming it.
fn imports_of(
    node: &Node,
    path: &str,
    doc: &toml_edit::DocumentMut,
) -> Result<Vec<Imported>, Failure> {
    let mut out = vec![];
    let mut seen = std::collections::HashSet::new();
    let mut bytes = 0usize;
    let list = doc.get("imports").and_then(|v| v.as_array());
    let over = |what: String| {
        Failure::bad_input(
            path,
            what,
            "Import fewer files (containerd's own drop-ins are a handful), then run cri-migrate again.",
        )
    };
    for entry in list
        .into_iter()
        .flat_map(|a| a.iter())
        .filter_map(|x| x.as_str())
    {
        for file in resolve_import(node, entry) {
            if !seen.insert(crate::node::clean(&file)) {
                continue;
            }
            if seen.len() > MAX_IMPORTS {
                return Err(over(format!(
                    "its `imports` name more than {MAX_IMPORTS} files"
                )));
            }
            if let Some((i, size)) = read_import(node, &file)? {
                bytes += size;
                if bytes > MAX_IMPORT_BYTES {
                    return Err(over(format!(
                        "the files its `imports` name hold more than {} MiB together",
                        MAX_IMPORT_BYTES >> 20
                    )));
                }
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Bounds on what containerd's `imports` may make the tool read.
const MAX_IMPORTS: usize = 256;
const MAX_IMPORT_BYTES: usize = 32 << 20;

/// The CRI plugin's names across schemas.
pub fn is_cri_plugin(name: &str) -> bool {
    matches!(
        name,
        "cri"
            | "io.containerd.grpc.v1.cri"
            | "io.containerd.cri.v1.images"
            | "io.containerd.cri.v1.runtime"
    )
}

/// The largest binary whose build information is scanned: kubelet, containerd and dockerd are
/// well under 300 MiB; a larger file (a sparse 1 TiB one) is refused, not read.
pub const MAX_BINARY_BYTES: u64 = 512 << 20;

/// CRI-O's configuration files as found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrioConfig {
    pub files: Vec<String>,
    pub cgroup_manager: Option<String>,
    /// Files that still set `insecure_registries` (ignored from CRI-O 1.35).
    pub insecure_registries_in: Vec<String>,
    pub registries_conf: Option<String>,
    /// registries.conf in the v1 format, which cannot be mixed with v2 drop-ins.
    pub registries_conf_v1: bool,
    /// The pause image the files set (the last one wins, as in CRI-O).
    pub pause_image: Option<String>,
    /// The CNI directories the files set.
    pub network_dir: Option<String>,
    pub plugin_dirs: Vec<String>,
    /// What a package's config sets for the programs CRI-O runs (the last file wins):
    /// `conmon`, `pinns_path`, `default_runtime`, and each `[crio.runtime.runtimes.NAME]`'s
    /// `runtime_path` ("" where it names none: CRI-O looks the name up on $PATH) and whether it
    /// sets its own `monitor_path` (conmon).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conmon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinns_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_runtime: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub runtimes: BTreeMap<String, CrioRuntime>,
    /// `[crio.api] listen` (the socket) and the file that sets it last; the unit's `--listen`
    /// wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<(String, String)>,
    /// The registries with a directory of their own in `/etc/containers/certs.d`: for them
    /// CRI-O reads that one, not Docker's in `/etc/docker/certs.d`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certs_d: Vec<String>,
}

/// Where CRI-O (containers/image) looks for a registry's certificates first; Docker's
/// `/etc/docker/certs.d/<host>` where this has no directory for the host.
pub const CONTAINERS_CERTS_D: &str = "/etc/containers/certs.d";

/// A runtime handler a CRI-O config file defines.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CrioRuntime {
    pub runtime_path: String,
    pub monitor_path: bool,
    /// Its runtime_path is an executable on the node (or names none).
    pub present: bool,
}

/// A program CRI-O runs (an OCI runtime, conmon, pinns) as found on the node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<crate::version::Version>,
}

/// Where CRI-O's packages and the upstream bundle put the programs it runs, beside the usual
/// binary directories (CRI-O's own packages: /usr/libexec/crio; Ubuntu's cri-o-runc).
const TOOL_DIRS: [&str; 3] = [
    "/usr/libexec/crio",
    "/usr/lib/cri-o-runc/sbin",
    "/usr/libexec/podman",
];

/// runc, crun, conmon and pinns on the node: each first found, with the version its package
/// database (or, live, the program itself) says for the OCI runtimes.
pub fn tools(
    node: &Node,
    cmds: &dyn Commands,
    pkgs: &crate::inspect::packages::Packages,
) -> Vec<Tool> {
    let mut out = vec![];
    for name in ["runc", "crun", "conmon", "pinns"] {
        let Some(path) = BIN_DIRS
            .iter()
            .chain(TOOL_DIRS.iter())
            .map(|d| join(d, name))
            .find(|p| node.is_executable(p))
        else {
            continue;
        };
        let version = match name {
            "runc" | "crun" => {
                let live = node
                    .is_live()
                    .then(|| cmds.output(&path, &["--version"]))
                    .flatten()
                    .as_deref()
                    .and_then(crate::version::Version::find_in);
                live.or_else(|| pkgs.find(&[name]).and_then(|f| f.version))
            }
            _ => None,
        };
        out.push(Tool {
            name: name.to_string(),
            path,
            version,
        });
    }
    out
}

pub fn crio_config(
    node: &Node,
    at: &CrioPaths,
    files: &mut BTreeMap<String, Snapshot>,
) -> Result<CrioConfig> {
    let mut out = CrioConfig::default();
    let paths = std::iter::once(at.conf.clone()).chain(
        node.list(&at.conf_dir)
            .into_iter()
            .filter(|n| n.ends_with(".conf"))
            .map(|n| join(&at.conf_dir, &n)),
    );
    for path in paths {
        let Some(snap) = node.snapshot(&path)? else {
            continue;
        };
        let doc = parse_toml(
            &path,
            &snap.content,
            "Fix the file (CRI-O does not start with it either).",
        )?;
        // `[crio.TABLE] KEY`, where the file sets it (each file over the ones before).
        let set = |table: &str, key: &str| doc.get("crio")?.get(table)?.get(key);
        let string = |table: &str, key: &str| set(table, key)?.as_str().map(str::to_string);
        if let Some(m) = string("runtime", "cgroup_manager") {
            out.cgroup_manager = Some(m);
        }
        if let Some(p) = string("image", "pause_image") {
            out.pause_image = Some(p);
        }
        if let Some(l) = string("api", "listen").filter(|v| !v.is_empty()) {
            out.listen = Some((l, format!("{path} ([crio.api] listen)")));
        }
        if let Some(d) = string("network", "network_dir") {
            out.network_dir = Some(d);
        }
        // Where the file sets it, over what files before it set.
        if let Some(a) = set("network", "plugin_dirs").filter(|v| v.is_array()) {
            out.plugin_dirs = strings(Some(a));
        }
        // The programs a package configured: our own drop-in is left out (a second run plans
        // the same choices again, from the node).
        packaged_programs(node, &doc, path == at.drop_in, &mut out);
        if set("image", "insecure_registries").is_some() {
            out.insecure_registries_in.push(path.clone());
        }
        out.files.push(path.clone());
        files.insert(path, snap);
    }
    if let Some(text) = node.read(REGISTRIES_CONF)? {
        let doc = parse_toml(
            REGISTRIES_CONF,
            &text,
            "Fix it (see containers-registries.conf(5)).",
        )?;
        out.registries_conf_v1 = doc.get("registries").is_some_and(|r| r.is_table_like());
        out.registries_conf = Some(REGISTRIES_CONF.to_string());
    }
    out.certs_d = node
        .list(CONTAINERS_CERTS_D)
        .into_iter()
        .filter(|host| node.is_dir(&join(CONTAINERS_CERTS_D, host)))
        .collect();
    Ok(out)
}

/// The programs a CRI-O config file names (`conmon`, `pinns_path`, `default_runtime`, each
/// runtime's `runtime_path` and `monitor_path`), over what earlier files named.
fn packaged_programs(node: &Node, doc: &toml_edit::DocumentMut, own: bool, out: &mut CrioConfig) {
    let runtime = doc
        .get("crio")
        .and_then(|c| c.get("runtime"))
        .filter(|_| !own);
    let string = |k: &str| {
        runtime
            .and_then(|r| r.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if let Some(v) = string("conmon").filter(|v| !v.is_empty()) {
        out.conmon = Some(v);
    }
    if let Some(v) = string("pinns_path").filter(|v| !v.is_empty()) {
        out.pinns_path = Some(v);
    }
    if let Some(v) = string("default_runtime").filter(|v| !v.is_empty()) {
        out.default_runtime = Some(v);
    }
    if let Some(t) = runtime
        .and_then(|r| r.get("runtimes"))
        .and_then(|r| r.as_table_like())
    {
        for (name, h) in t.iter() {
            let e = out.runtimes.entry(name.to_string()).or_default();
            if let Some(p) = h.get("runtime_path").and_then(|v| v.as_str()) {
                e.runtime_path = p.to_string();
            }
            e.present = e.runtime_path.is_empty() || node.is_executable(&e.runtime_path);
            if h.get("monitor_path")
                .and_then(|v| v.as_str())
                .is_some_and(|p| !p.is_empty())
            {
                e.monitor_path = true;
            }
        }
    }
}

fn parse_toml(path: &str, text: &str, fix: &str) -> Result<toml_edit::DocumentMut, Failure> {
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(path, crate::error::toml_problem(text, &e), fix)
    })?;
    crate::secrets::from_toml(doc.as_item());
    Ok(doc)
}

/// Files the plan writes whole (ours) or merges, read now so that planning is pure.
pub fn snapshot_owned_files(node: &Node, files: &mut BTreeMap<String, Snapshot>) -> Result<()> {
    let mut paths = vec![
        CRICTL_YAML.to_string(),
        REGISTRIES_DROP_IN.to_string(),
        INSTANCE_CONFIG.to_string(),
        CONTAINERD_BASE_SPEC.to_string(),
    ];
    for t in crate::runtime::ALL.iter() {
        paths.push(proxy_drop_in(t.unit));
    }
    for host in node.list(CONTAINERD_CERTS_D) {
        paths.push(join(&join(CONTAINERD_CERTS_D, &host), "hosts.toml"));
    }
    for path in paths {
        if let Some(snap) = node.snapshot(&path)? {
            files.insert(path, snap);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshotter_of(config: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/containerd")).unwrap();
        std::fs::write(dir.path().join("etc/containerd/config.toml"), config).unwrap();
        let node = Node::new(dir.path());
        containerd_config(&node, CONTAINERD_CONFIG, &mut BTreeMap::new())
            .unwrap()
            .unwrap()
            .snapshotter
    }

    #[test]
    fn the_cri_snapshotter_is_read_in_every_schema() {
        assert_eq!(
            snapshotter_of("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nsnapshotter = \"native\"\n"),
            Some("native".into())
        );
        assert_eq!(
            snapshotter_of("[plugins.cri.containerd]\nsnapshotter = \"zfs\"\n"),
            Some("zfs".into())
        );
        assert_eq!(
            snapshotter_of(
                "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\nsnapshotter = \"btrfs\"\n"
            ),
            Some("btrfs".into())
        );
        assert_eq!(snapshotter_of("version = 2\n"), None);
        let chown = |config: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("etc/containerd")).unwrap();
            std::fs::write(dir.path().join("etc/containerd/config.toml"), config).unwrap();
            containerd_config(
                &Node::new(dir.path()),
                CONTAINERD_CONFIG,
                &mut BTreeMap::new(),
            )
            .unwrap()
            .unwrap()
            .chowns_snapshots
        };
        assert_eq!(
            chown("version = 3\n[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\nslow_chown = true\n")
                .as_deref(),
            Some("[plugins.\"io.containerd.snapshotter.v1.overlayfs\"] slow_chown = true")
        );
        assert_eq!(chown("version = 2\n[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\nslow_chown = false\n"), None);
        assert_eq!(
            snapshotter_of("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nsnapshotter = \"\"\n"),
            None
        );
    }

    #[test]
    fn imports_are_read_as_containerd_resolves_them() {
        let (_d, n) = crate::node::test_node(&[
            (
                "/etc/containerd/config.toml",
                "version = 2\nimports = [\"conf.d/*.toml\", \"/etc/containerd/extra.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/99-nvidia.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\nBinaryName = \"/usr/bin/nvidia-container-runtime\"\n",
            ),
            ("/etc/containerd/conf.d/10-a.toml", "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"x\"\n"),
            ("/etc/containerd/conf.d/readme.txt", "not toml ["),
            ("/etc/containerd/extra.toml", "version = 3\n"),
        ]);
        let mut files = BTreeMap::new();
        let c = containerd_config(&n, CONTAINERD_CONFIG, &mut files)
            .unwrap()
            .unwrap();
        let paths: Vec<&str> = c.imported.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/containerd/conf.d/10-a.toml",
                "/etc/containerd/conf.d/99-nvidia.toml",
                "/etc/containerd/extra.toml"
            ]
        );
        assert_eq!(c.imported[1].handlers, ["nvidia"]);
        assert_eq!(c.imported[2].version, 3);
        assert!(c.imported[0].values.contains(&(
            "plugins.\"io.containerd.grpc.v1.cri\".sandbox_image".into(),
            "\"x\"".into()
        )));
        // A glob's import that disables CRI is refused like a named one.
        let (_d, n) = crate::node::test_node(&[
            (
                "/etc/containerd/config.toml",
                "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
            ),
            (
                "/etc/containerd/conf.d/off.toml",
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
            ),
        ]);
        let e = containerd_config(&n, CONTAINERD_CONFIG, &mut BTreeMap::new()).unwrap_err();
        assert!(format!("{e:#}").contains("off.toml"), "{e:#}");
    }

    #[test]
    fn a_unit_tied_to_a_runtime_by_its_file_or_a_drop_in() {
        let (_d, n) = crate::node::test_node(&[
            (
                "/lib/systemd/system/docker.service",
                "[Unit]\nBindsTo=containerd.service\nRequires=docker.socket\nAfter=containerd.service\n[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
            ),
            (
                "/etc/systemd/system/docker.service.d/10-x.conf",
                "[Unit]\nPartOf=crio.service\n",
            ),
        ]);
        let load = |name: &str| crate::unit::Unit::load(&n, name).unwrap();
        let t: Vec<String> = tied_to(&load("docker.service").unwrap())
            .iter()
            .map(Tie::to_string)
            .collect();
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].starts_with("BindsTo=containerd.service (/lib/systemd/system/docker.service, /etc/systemd/system/docker.service.d/10-x.conf)"), "{t:?}");
        assert!(t[1].starts_with("PartOf=crio.service"));
        assert!(load("nope.service").is_none());
    }

    /// Issue 33 point 2: what a runtime reads comes from its unit's command line.
    #[test]
    fn the_runtimes_units_decide_their_config_and_socket() {
        let (_d, n) = crate::node::test_node(&[
            (
                "/lib/systemd/system/containerd.service",
                "[Service]\nEnvironmentFile=-/etc/sysconfig/containerd\nExecStart=/usr/bin/containerd -c /etc/containerd/config-kops.toml $OPTS\n",
            ),
            ("/etc/sysconfig/containerd", "OPTS=--address /run/other/containerd.sock\n"),
            (
                "/usr/lib/systemd/system/crio.service",
                "[Service]\nExecStart=/usr/local/bin/crio --config=/etc/crio/site.conf -d /etc/crio/site.d --listen /var/run/crio/crio.sock\n",
            ),
            ("/etc/crio/site.d/10-x.conf", "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n"),
            ("/etc/crio/crio.conf.d/10-ignored.conf", "[crio.runtime]\ncgroup_manager = \"systemd\"\n"),
        ]);
        let ctd = unit_command(&n, "containerd.service").unwrap();
        let crio = unit_command(&n, "crio.service").unwrap();
        let (path, from) = containerd_config_path(ctd.as_ref()).unwrap();
        assert_eq!(path, "/etc/containerd/config-kops.toml");
        let from = from.unwrap();
        assert!(
            from.contains("/lib/systemd/system/containerd.service:3"),
            "{from}"
        );
        let p = crio_paths(crio.as_ref()).unwrap();
        assert_eq!(p.conf, "/etc/crio/site.conf");
        assert_eq!(p.conf_dir, "/etc/crio/site.d");
        assert_eq!(p.drop_in, "/etc/crio/site.d/99-cri-migrate.conf");
        let c = crio_config(&n, &p, &mut BTreeMap::new()).unwrap();
        assert_eq!(
            c.cgroup_manager.as_deref(),
            Some("cgroupfs"),
            "the unit's directory, not the default one"
        );
        // containerd's address moved (through a variable); CRI-O's is its default under /var/run.
        let o = other_sockets(ctd.as_ref(), crio.as_ref(), None, None);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].unit, "containerd.service");
        assert_eq!(o[0].value, "/run/other/containerd.sock");
        assert!(o[0].at.contains("/etc/sysconfig/containerd"), "{}", o[0].at);
        // containerd's config may move it too (`[grpc] address`); the command line wins.
        let (_dc, cn) = crate::node::test_node(&[(
            "/etc/containerd/config.toml",
            "version = 2\n[grpc]\n  address = \"/run/k0s/containerd.sock\"\n",
        )]);
        let cfg = containerd_config(&cn, "/etc/containerd/config.toml", &mut BTreeMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            cfg.grpc_address.as_deref(),
            Some("/run/k0s/containerd.sock")
        );
        let by_config = other_sockets(None, None, Some(&cfg), None);
        assert_eq!(by_config.len(), 1);
        assert_eq!(by_config[0].flag, "[grpc] address");
        assert_eq!(by_config[0].value, "/run/k0s/containerd.sock");
        assert!(by_config[0].at.starts_with("/etc/containerd/config.toml"));
        assert_eq!(
            other_sockets(ctd.as_ref(), None, Some(&cfg), None)[0].value,
            "/run/other/containerd.sock"
        );
        // CRI-O's `[crio.api] listen`, the last file that sets it.
        let (_dl, ln) = crate::node::test_node(&[
            (
                "/etc/crio/crio.conf",
                "[crio.api]\nlisten = \"/run/a.sock\"\n",
            ),
            (
                "/etc/crio/crio.conf.d/10-site.conf",
                "[crio.api]\nlisten = \"/run/site/crio.sock\"\n",
            ),
        ]);
        let cc = crio_config(&ln, &CrioPaths::default(), &mut BTreeMap::new()).unwrap();
        let by_crio = other_sockets(None, None, None, Some(&cc));
        assert_eq!(by_crio.len(), 1, "{by_crio:?}");
        assert_eq!(by_crio[0].unit, "crio.service");
        assert_eq!(by_crio[0].value, "/run/site/crio.sock");
        assert_eq!(by_crio[0].flag, "[crio.api] listen");
        assert!(by_crio[0].at.contains("10-site.conf"), "{}", by_crio[0].at);
        // Defaults without units; a relative path refused naming the unit.
        let (_d2, empty) = crate::node::test_node(&[]);
        assert!(unit_command(&empty, "crio.service").unwrap().is_none());
        assert_eq!(crio_paths(None).unwrap(), CrioPaths::default());
        assert_eq!(containerd_config_path(None).unwrap().0, CONTAINERD_CONFIG);
        let (_d3, rel) = crate::node::test_node(&[(
            "/etc/systemd/system/containerd.service",
            "[Service]\nExecStart=/usr/bin/containerd --config=conf/x.toml\n",
        )]);
        let rel_cmd = unit_command(&rel, "containerd.service").unwrap();
        let e = containerd_config_path(rel_cmd.as_ref()).unwrap_err();
        assert!(format!("{e:#}").contains("not an absolute path"), "{e:#}");
    }
}
