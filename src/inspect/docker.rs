//! Docker Engine: daemon.json, certs.d, and which registries have credentials (never the
//! secrets themselves).

use crate::error::Failure;
use crate::node::{join, Node};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const CERTS_D: &str = "/etc/docker/certs.d";

/// daemon.json keys cri-migrate knows what to do with; every other key is reported.
const HANDLED_KEYS: [&str; 13] = [
    "runtimes",
    "default-runtime",
    "default-ulimits",
    "selinux-enabled",
    "registry-mirrors",
    "insecure-registries",
    "exec-opts",
    "data-root",
    "graph",
    "storage-driver",
    "max-concurrent-downloads",
    "log-driver",
    "log-opts",
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct DockerSettings {
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub cgroup_driver: Option<String>,
    pub data_root: Option<String>,
    pub storage_driver: Option<String>,
    pub max_concurrent_downloads: Option<u64>,
    pub log_driver: Option<String>,
    pub log_opts: BTreeMap<String, String>,
    /// Docker already keeps its images in containerd (`features.containerd-snapshotter`).
    pub containerd_snapshotter: bool,
    /// Keys with no counterpart in a CRI runtime, with their JSON value.
    pub other: BTreeMap<String, Value>,
    /// Where each daemon.json key's value came from, when not from daemon.json: dockerd's
    /// flag, file, line and variable ("--registry-mirror in /etc/systemd/system/
    /// docker.service.d/docker-options.conf:2 ($DOCKER_OPTS)").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub from: BTreeMap<String, String>,
    /// dockerd's flags cri-migrate does not carry, each with where it is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_flags: Vec<(String, String)>,
    /// The proxy Docker pulls through: (variable, value, where it is set) — its unit's
    /// environment (Docker's documented `http-proxy.conf` drop-in) or daemon.json's `proxies`.
    /// The values may hold credentials: serialized redacted, never printed.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "redacted_proxies"
    )]
    pub proxies: Vec<(String, String, String)>,
    /// Runtimes Docker knows besides its own runc: daemon.json `runtimes`, `--add-runtime`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<DockerRuntime>,
    /// daemon.json `default-runtime` / `--default-runtime`, when not Docker's own runc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_runtime: Option<String>,
    /// daemon.json `default-ulimits` / `--default-ulimit`: every container's rlimits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_ulimits: Vec<Ulimit>,
    /// daemon.json `selinux-enabled` / `--selinux-enabled`: containers run confined.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub selinux_enabled: bool,
}

/// One OCI runtime Docker can run containers with, as daemon.json's `runtimes` or dockerd's
/// `--add-runtime NAME=PATH` names it, and what the node has of it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DockerRuntime {
    pub name: String,
    /// `path`: a runc-compatible binary (nvidia-container-runtime, crun, runsc, kata-runtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `runtimeArgs`: arguments Docker gives the binary (no CRI runtime passes them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime_args: Vec<String>,
    /// `runtimeType` (Docker 23+): a containerd shim, `io.containerd.NAME.vN` or its path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_type: Option<String>,
    /// `options` of that shim (e.g. kata's ConfigPath).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, Value>,
    /// Where it is set.
    pub from: String,
    /// The binary `path` names, found on the node (a bare name looked up in the usual
    /// directories, as dockerd looks it up in its PATH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// The containerd shim of this runtime found on the node, with its runtime type
    /// (`containerd-shim-kata-v2` → `io.containerd.kata.v2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shim: Option<(String, String)>,
}

/// A resource limit: daemon.json `{"nofile": {"Name": "nofile", "Soft": 65536, "Hard":
/// 1048576}}` or `--default-ulimit nofile=65536:1048576`. -1 is unlimited.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
    pub from: String,
}

impl Ulimit {
    /// `nofile=65536:1048576` (soft only: both the same), as dockerd and CRI-O read it.
    pub fn parse(text: &str, from: &str) -> Option<Ulimit> {
        let (name, limits) = text.split_once('=')?;
        let (soft, hard) = match limits.split_once(':') {
            Some((s, h)) => (s.trim().parse().ok()?, h.trim().parse().ok()?),
            None => {
                let v = limits.trim().parse().ok()?;
                (v, v)
            }
        };
        let name = name.trim().to_ascii_lowercase();
        RLIMITS.contains(&name.as_str()).then(|| Ulimit {
            name,
            soft,
            hard,
            from: from.to_string(),
        })
    }
    /// The OCI name: RLIMIT_NOFILE.
    pub fn oci_type(&self) -> String {
        format!("RLIMIT_{}", self.name.to_ascii_uppercase())
    }
    /// The OCI value: -1 (unlimited) is RLIM_INFINITY.
    pub fn oci_value(v: i64) -> u64 {
        if v < 0 {
            u64::MAX
        } else {
            v as u64
        }
    }
    /// Soft at most hard, -1 (unlimited) above every number: what setrlimit takes.
    pub fn valid(&self) -> bool {
        Ulimit::oci_value(self.soft) <= Ulimit::oci_value(self.hard)
    }
    /// `nofile=65536:1048576`, CRI-O's `default_ulimits` form.
    pub fn to_flag(&self) -> String {
        format!("{}={}:{}", self.name, self.soft, self.hard)
    }
}

/// The resource limits Docker takes (go-units' ulimit names).
pub const RLIMITS: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Docker's own runtime names: nothing to carry (every CRI runtime has runc).
pub fn is_dockers_runc(name: &str) -> bool {
    matches!(
        name,
        "runc" | "io.containerd.runc.v2" | "io.containerd.runtime.v1.linux"
    )
}

/// Where dockerd looks for a runtime's bare binary name (its unit's PATH), and where Kata's
/// installer puts its binaries.
const BINARY_DIRS: [&str; 7] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/opt/kata/bin",
];

fn find_binary(node: &Node, name: &str) -> Option<String> {
    if name.starts_with('/') {
        return node.exists(name).then(|| name.to_string());
    }
    if name.contains('/') || name.is_empty() {
        return None;
    }
    BINARY_DIRS
        .iter()
        .map(|d| join(d, name))
        .find(|p| node.exists(p))
}

/// The containerd shim of a Docker runtime, where the node has one: the runtime type Docker
/// names, else a shim named after the runtime or its binary (kata-runtime's is
/// containerd-shim-kata-v2, runsc's containerd-shim-runsc-v1).
fn find_shim(node: &Node, r: &DockerRuntime) -> Option<(String, String)> {
    let shim_of = |rt: &str| -> Option<String> {
        // io.containerd.NAME.vN → containerd-shim-NAME-vN, as containerd resolves it.
        let rest = rt.strip_prefix("io.containerd.")?;
        let (name, v) = rest.rsplit_once('.')?;
        Some(format!("containerd-shim-{name}-{v}"))
    };
    if let Some(rt) = &r.runtime_type {
        if rt.starts_with('/') {
            return node.exists(rt).then(|| (rt.clone(), rt.clone()));
        }
        return shim_of(rt)
            .and_then(|b| find_binary(node, &b))
            .map(|p| (rt.clone(), p));
    }
    let base = r
        .path
        .as_deref()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_default();
    let mut names = vec![];
    for n in [r.name.as_str(), base.as_str()] {
        let n = n.strip_suffix("-runtime").unwrap_or(n);
        if !n.is_empty() {
            names.push(n.to_string());
        }
    }
    for n in &names {
        // runc-compatible wrappers keep the runc shim; a shim of their own name means a VM or
        // user-space kernel runtime (Kata, gVisor) that containerd runs through it.
        if n.starts_with("runc") || n.starts_with("nvidia") || n == "crun" || n == "youki" {
            continue;
        }
        for v in ["v2", "v1"] {
            let rt = format!("io.containerd.{n}.{v}");
            if let Some(p) = shim_of(&rt).and_then(|b| find_binary(node, &b)) {
                return Some((rt, p));
            }
        }
    }
    None
}

fn redacted_proxies<S: serde::Serializer>(
    p: &[(String, String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(p.len()))?;
    for (k, _, from) in p {
        seq.serialize_element(&(k, crate::secrets::REDACTED, from))?;
    }
    seq.end()
}

/// The variables that carry a proxy, as Docker (Go's net/http) reads them.
pub const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// Docker's proxy: daemon.json's `proxies` (Docker 23+, which wins), else its unit's
/// environment.
fn proxies(
    node: &Node,
    unit: Option<&crate::unit::Unit>,
    in_json: Option<&Value>,
) -> Result<Vec<(String, String, String)>> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    if let Some(p) = in_json.and_then(Value::as_object) {
        for (key, var) in [
            ("http-proxy", "HTTP_PROXY"),
            ("https-proxy", "HTTPS_PROXY"),
            ("no-proxy", "NO_PROXY"),
        ] {
            if let Some(v) = p.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()) {
                crate::secrets::register_proxy(v);
                out.push((var.into(), v.into(), format!("{DAEMON_JSON} proxies.{key}")));
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    let Some(unit) = unit else {
        return Ok(out);
    };
    let (env, _) = unit.env(node)?;
    for (name, s) in env {
        if PROXY_VARS.contains(&name.as_str()) && !s.value.is_empty() {
            crate::secrets::register_proxy(&s.value);
            out.push((
                name,
                s.value.clone(),
                format!("{}:{}", s.origin.file, s.origin.line),
            ));
        }
    }
    Ok(out)
}

impl DockerSettings {
    /// Where the value of a daemon.json key came from, for the plan: the file, or dockerd's
    /// flag and where it is set.
    pub fn source(&self, key: &str) -> String {
        self.from
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{DAEMON_JSON} {key}"))
    }
}

/// One of dockerd's flags on its command line, and where it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerdFlag {
    pub name: String,
    pub value: Option<String>,
    /// `FILE:LINE`, with the variable it was expanded from.
    pub at: String,
}

/// dockerd's flags that take a value (`--flag value` as well as `--flag=value`), short forms
/// given their long names. From `dockerd --help` (Docker 20.10 to 28).
const DOCKERD_VALUE_FLAGS: [(&str, &str); 38] = [
    ("add-runtime", "add-runtime"),
    (
        "allow-nondistributable-artifacts",
        "allow-nondistributable-artifacts",
    ),
    ("authorization-plugin", "authorization-plugin"),
    ("bip", "bip"),
    ("b", "bridge"),
    ("bridge", "bridge"),
    ("cgroup-parent", "cgroup-parent"),
    ("config-file", "config-file"),
    ("containerd", "containerd"),
    ("containerd-namespace", "containerd-namespace"),
    ("data-root", "data-root"),
    ("g", "data-root"),
    ("graph", "data-root"),
    ("default-runtime", "default-runtime"),
    ("default-ulimit", "default-ulimit"),
    ("dns", "dns"),
    ("dns-opt", "dns-opt"),
    ("dns-search", "dns-search"),
    ("exec-opt", "exec-opt"),
    ("exec-root", "exec-root"),
    ("group", "group"),
    ("G", "group"),
    ("H", "host"),
    ("host", "host"),
    ("insecure-registry", "insecure-registry"),
    ("label", "label"),
    ("log-driver", "log-driver"),
    ("log-level", "log-level"),
    ("l", "log-level"),
    ("log-opt", "log-opt"),
    ("max-concurrent-downloads", "max-concurrent-downloads"),
    ("max-concurrent-uploads", "max-concurrent-uploads"),
    ("mtu", "mtu"),
    ("pidfile", "pidfile"),
    ("p", "pidfile"),
    ("registry-mirror", "registry-mirror"),
    ("s", "storage-driver"),
    ("storage-driver", "storage-driver"),
];

/// dockerd's flags that mean nothing to a CRI runtime (its API socket, its own networking, its
/// logging level, its process): read, not carried, not warned about.
const DOCKERD_OWN_FLAGS: [&str; 16] = [
    "host",
    "containerd",
    "containerd-namespace",
    "pidfile",
    "exec-root",
    "group",
    "log-level",
    "debug",
    "D",
    "iptables",
    "ip6tables",
    "ip-forward",
    "ip-masq",
    "bridge",
    "bip",
    "mtu",
];

/// dockerd's flags from the command line its unit runs (`docker.service`, read as systemd
/// reads it: drop-ins, `Environment=`, `EnvironmentFile=` such as `/etc/sysconfig/docker`'s
/// `OPTIONS` or Kubespray's `DOCKER_OPTS`), each with where it is set. Empty without a unit.
pub fn dockerd_flags(node: &Node, unit: Option<&crate::unit::Unit>) -> Result<Vec<DockerdFlag>> {
    let Some(unit) = unit else {
        return Ok(vec![]);
    };
    let Some(command) = unit.command(node)? else {
        return Ok(vec![]);
    };
    let words: Vec<&crate::unit::Word> = command.argv.iter().skip(1).collect();
    // `docker daemon` and `docker -d` (before Docker 1.12) run the daemon as a subcommand.
    let words: Vec<&crate::unit::Word> = match words.first().map(|w| w.text.as_str()) {
        Some("daemon") | Some("-d") => words[1..].to_vec(),
        _ => words,
    };
    let at = |w: &crate::unit::Word| match &w.variable {
        Some(v) => format!("{}:{} (${})", v.set_at.file, v.set_at.line, v.name),
        None => format!("{}:{}", w.origin.file, w.origin.line),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        i += 1;
        let Some(body) = w
            .text
            .strip_prefix("--")
            .or_else(|| w.text.strip_prefix('-'))
        else {
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let long = DOCKERD_VALUE_FLAGS
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, l)| *l);
        let value = match (inline, long) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => {
                let v = words.get(i).map(|n| n.text.clone());
                i += 1;
                v
            }
            (None, None) => None,
        };
        out.push(DockerdFlag {
            name: long.unwrap_or(name).to_string(),
            value,
            at: at(w),
        });
    }
    Ok(out)
}

/// dockerd's flags laid over daemon.json's settings (dockerd refuses to start when one is set
/// in both, so either is the truth), each with where it is set.
fn apply_flags(s: &mut DockerSettings, flags: &[DockerdFlag]) {
    for f in flags {
        let said = format!("dockerd --{} ({})", f.name, f.at);
        let v = f.value.clone().unwrap_or_default();
        let key = match f.name.as_str() {
            "registry-mirror" => {
                s.registry_mirrors.push(v);
                "registry-mirrors"
            }
            "insecure-registry" => {
                s.insecure_registries.push(v);
                "insecure-registries"
            }
            "exec-opt" => match v.strip_prefix("native.cgroupdriver=") {
                Some(d) => {
                    s.cgroup_driver = Some(d.to_string());
                    "exec-opts"
                }
                None => {
                    s.other_flags
                        .push((format!("--exec-opt {v}"), f.at.clone()));
                    continue;
                }
            },
            "data-root" => {
                s.data_root = Some(v);
                "data-root"
            }
            "storage-driver" => {
                s.storage_driver = Some(v);
                "storage-driver"
            }
            "max-concurrent-downloads" => {
                s.max_concurrent_downloads = v.parse().ok();
                "max-concurrent-downloads"
            }
            "log-driver" => {
                s.log_driver = Some(v);
                "log-driver"
            }
            "log-opt" => {
                if let Some((k, val)) = v.split_once('=') {
                    s.log_opts.insert(k.to_string(), val.to_string());
                }
                "log-opts"
            }
            "add-runtime" => {
                // NAME=PATH
                match v.split_once('=') {
                    Some((name, path)) if !name.is_empty() => {
                        s.runtimes.retain(|r| r.name != name);
                        s.runtimes.push(DockerRuntime {
                            name: name.to_string(),
                            path: Some(path.to_string()),
                            from: said.clone(),
                            ..Default::default()
                        });
                    }
                    _ => s
                        .other_flags
                        .push((format!("--add-runtime={v}"), f.at.clone())),
                }
                continue;
            }
            "default-runtime" => {
                s.default_runtime = Some(v).filter(|r| !is_dockers_runc(r));
                "default-runtime"
            }
            "default-ulimit" => {
                match Ulimit::parse(&v, &said) {
                    Some(u) => {
                        s.default_ulimits.retain(|x| x.name != u.name);
                        s.default_ulimits.push(u);
                    }
                    None => s
                        .other_flags
                        .push((format!("--default-ulimit={v}"), f.at.clone())),
                }
                continue;
            }
            "selinux-enabled" => {
                s.selinux_enabled = !matches!(v.as_str(), "false" | "0");
                "selinux-enabled"
            }
            "config-file" => continue,
            n if DOCKERD_OWN_FLAGS.contains(&n) => continue,
            _ => {
                let shown = match &f.value {
                    Some(v) => format!("--{}={v}", f.name),
                    None => format!("--{}", f.name),
                };
                s.other_flags.push((shown, f.at.clone()));
                continue;
            }
        };
        // A list gathered from several flags says the first place it is set.
        s.from.entry(key.to_string()).or_insert(said);
    }
}

/// Certificates for one registry in `/etc/docker/certs.d/<host>/`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertDir {
    pub host: String,
    pub ca: Vec<String>,
    /// (certificate, key) pairs.
    pub client: Vec<(String, String)>,
}

/// A docker-style `config.json` and the registries it holds credentials for.
#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    pub path: String,
    pub registries: Vec<String>,
    pub helpers: Vec<String>,
    /// Whether the kubelet reads this file when it pulls (k8s pkg/credentialprovider).
    pub kubelet_reads: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Docker {
    pub daemon_json: Option<String>,
    pub settings: DockerSettings,
    pub certs: Vec<CertDir>,
    /// Docker's usual env files that set something but that docker.service does not load
    /// (no `EnvironmentFile=` for them): not in effect, so never carried. Each as `FILE
    /// (VAR, VAR)`, values left out (a proxy may hold a credential).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_files_not_loaded: Vec<String>,
}

/// Docker's usual env files (packages and installers write them) that set a variable while
/// docker.service loads none of them: what they set is not in effect.
fn env_files_not_loaded(node: &Node, unit: &crate::unit::Unit) -> Vec<String> {
    const FILES: [&str; 4] = [
        "/etc/default/docker",
        "/etc/sysconfig/docker",
        "/etc/sysconfig/docker-storage",
        "/etc/sysconfig/docker-network",
    ];
    let loaded = |f: &str| unit.env_file_paths().any(|(_, p)| p == f);
    let mut out = Vec::new();
    for file in FILES.iter().filter(|f| !loaded(f)) {
        let Some(text) = node.read(file).ok().flatten() else {
            continue;
        };
        let Ok(parsed) = crate::flags::VarsFile::parse(crate::flags::FileKind::EnvFile, &text)
        else {
            continue;
        };
        let set: Vec<String> = parsed
            .vars()
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, _)| k)
            .collect();
        if !set.is_empty() {
            out.push(format!("{file} ({})", set.join(", ")));
        }
    }
    out
}

pub fn inspect(node: &Node) -> Result<Docker> {
    let mut docker = Docker::default();
    // The unit, read once: dockerd's flags and its environment's proxy.
    let unit = crate::unit::Unit::load(node, "docker.service")?;
    let flags = dockerd_flags(node, unit.as_ref())?;
    // `--config-file` moves daemon.json.
    let config = flags
        .iter()
        .rev()
        .find(|f| f.name == "config-file")
        .and_then(|f| f.value.clone())
        .unwrap_or_else(|| DAEMON_JSON.to_string());
    if let Some(text) = node.read(&config)? {
        docker.settings = parse_daemon_json_at(&config, &text)?;
        docker.daemon_json = Some(config.clone());
        if config != DAEMON_JSON {
            for key in docker.settings.keys_set() {
                docker
                    .settings
                    .from
                    .insert(key.clone(), format!("{config} {key}"));
            }
        }
    }
    apply_flags(&mut docker.settings, &flags);
    if let Some(u) = &unit {
        docker.env_files_not_loaded = env_files_not_loaded(node, u);
    }
    for r in &mut docker.settings.runtimes {
        r.binary = r.path.as_deref().and_then(|p| find_binary(node, p));
        r.shim = find_shim(node, r);
    }
    // daemon.json's `proxies`, as the parse kept it among the keys it does not know.
    let in_json = docker.settings.other.remove("proxies");
    docker.settings.proxies = proxies(node, unit.as_ref(), in_json.as_ref())?;
    for host in node.list(CERTS_D) {
        let dir = join(CERTS_D, &host);
        if !node.is_dir(&dir) {
            continue;
        }
        let names = node.list(&dir);
        let ca = names
            .iter()
            .filter(|n| n.ends_with(".crt"))
            .map(|n| join(&dir, n))
            .collect();
        let client = names
            .iter()
            .filter_map(|n| n.strip_suffix(".cert"))
            .filter(|stem| names.contains(&format!("{stem}.key")))
            .map(|stem| {
                (
                    join(&dir, &format!("{stem}.cert")),
                    join(&dir, &format!("{stem}.key")),
                )
            })
            .collect();
        docker.certs.push(CertDir { host, ca, client });
    }
    Ok(docker)
}

pub fn parse_daemon_json(text: &str) -> Result<DockerSettings> {
    parse_daemon_json_at(DAEMON_JSON, text)
}

impl DockerSettings {
    /// The daemon.json keys that hold a value here.
    fn keys_set(&self) -> Vec<String> {
        let mut k = Vec::new();
        let mut add = |set: bool, key: &str| {
            if set {
                k.push(key.to_string())
            }
        };
        add(!self.registry_mirrors.is_empty(), "registry-mirrors");
        add(!self.insecure_registries.is_empty(), "insecure-registries");
        add(self.cgroup_driver.is_some(), "exec-opts");
        add(self.data_root.is_some(), "data-root");
        add(self.storage_driver.is_some(), "storage-driver");
        add(
            self.max_concurrent_downloads.is_some(),
            "max-concurrent-downloads",
        );
        add(self.log_driver.is_some(), "log-driver");
        add(!self.log_opts.is_empty(), "log-opts");
        add(self.default_runtime.is_some(), "default-runtime");
        add(self.selinux_enabled, "selinux-enabled");
        k
    }
}

/// daemon.json's settings, from the file at `path` (its errors name it).
pub fn parse_daemon_json_at(path: &str, text: &str) -> Result<DockerSettings> {
    // dockerd ignores a UTF-8 byte order mark in daemon.json (Docker 23 and later: moby#44770).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bad = |problem: String| {
        Failure::bad_input(
            path,
            problem,
            "Fix the JSON (dockerd refuses to start with it too), then run cri-migrate again.",
        )
    };
    if text.trim().is_empty() {
        return Ok(DockerSettings::default());
    }
    let json: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    crate::secrets::from_json(&json);
    let obj = json
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let strings = |key: &str| -> Result<Vec<String>, Failure> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("\"{key}\" must be a list of strings")))
                })
                .collect(),
            Some(_) => Err(bad(format!("\"{key}\" must be a list of strings"))),
        }
    };
    let string = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
    let cgroup_driver = strings("exec-opts")?
        .iter()
        .find_map(|o| o.strip_prefix("native.cgroupdriver=").map(str::to_string));
    let log_opts = obj
        .get("log-opts")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let containerd_snapshotter = obj
        .get("features")
        .and_then(|f| f.get("containerd-snapshotter"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let runtimes = json_runtimes(obj, path, &bad)?;
    let limits = obj.get("default-ulimits").and_then(Value::as_object);
    let default_ulimits = json_ulimits(limits, path, &bad)?;
    let other = obj
        .iter()
        .filter(|(k, _)| !HANDLED_KEYS.contains(&k.as_str()))
        .filter(|(k, v)| {
            !(k.as_str() == "features"
                && v.as_object()
                    .is_some_and(|m| m.keys().all(|k| k == "containerd-snapshotter")))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(DockerSettings {
        registry_mirrors: strings("registry-mirrors")?,
        insecure_registries: strings("insecure-registries")?,
        cgroup_driver,
        // `graph` is data-root's name before Docker 17.05.
        data_root: string("data-root").or_else(|| string("graph")),
        storage_driver: string("storage-driver"),
        max_concurrent_downloads: obj.get("max-concurrent-downloads").and_then(Value::as_u64),
        log_driver: string("log-driver"),
        log_opts,
        containerd_snapshotter,
        other,
        from: BTreeMap::new(),
        other_flags: vec![],
        proxies: vec![],
        runtimes,
        default_runtime: string("default-runtime").filter(|r| !is_dockers_runc(r)),
        default_ulimits,
        selinux_enabled: obj
            .get("selinux-enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// daemon.json's `runtimes`, each with where it is set.
fn json_runtimes(
    obj: &serde_json::Map<String, Value>,
    path: &str,
    bad: &dyn Fn(String) -> Failure,
) -> Result<Vec<DockerRuntime>, Failure> {
    let mut runtimes = vec![];
    match obj.get("runtimes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, r) in m {
                let r = r.as_object().ok_or_else(|| {
                    bad(format!("\"runtimes\".\"{name}\" must be an object (\"path\", \"runtimeArgs\", \"runtimeType\", \"options\")"))
                })?;
                let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
                runtimes.push(DockerRuntime {
                    name: name.clone(),
                    path: s("path"),
                    runtime_args: r
                        .get("runtimeArgs")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    runtime_type: s("runtimeType"),
                    options: r
                        .get("options")
                        .and_then(Value::as_object)
                        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                    from: format!("{path} runtimes.{name}"),
                    ..Default::default()
                });
            }
        }
        Some(_) => {
            return Err(bad(
                "\"runtimes\" must be an object of runtimes by name".into()
            ))
        }
    }
    Ok(runtimes)
}

/// daemon.json's `default-ulimits` (`{"nofile": {"Soft": N, "Hard": M}}`), where it is an
/// object.
fn json_ulimits(
    limits: Option<&serde_json::Map<String, Value>>,
    path: &str,
    bad: &dyn Fn(String) -> Failure,
) -> Result<Vec<Ulimit>, Failure> {
    let mut default_ulimits = vec![];
    if let Some(m) = limits {
        for (name, u) in m {
            let n = |k: &str| u.get(k).and_then(Value::as_i64);
            let (Some(soft), Some(hard)) = (n("Soft"), n("Hard")) else {
                return Err(bad(format!(
                    "\"default-ulimits\".\"{name}\" needs \"Soft\" and \"Hard\" numbers"
                )));
            };
            let text = format!("{name}={soft}:{hard}");
            default_ulimits.push(Ulimit::parse(&text, &format!("{path} default-ulimits.{name}")).ok_or_else(|| {
                bad(format!("\"default-ulimits\" names {name:?}, which is not a resource limit dockerd knows"))
            })?);
        }
    }
    Ok(default_ulimits)
}

/// Where docker-style credentials may be, and whether the kubelet reads each place: its root
/// directory, its working directory (`/` under systemd) and `$HOME/.docker`, which is unset
/// for a system service unless the unit sets it.
const CREDENTIAL_FILES: [(&str, bool); 5] = [
    ("/var/lib/kubelet/config.json", true),
    ("/config.json", true),
    ("/.docker/config.json", true),
    ("/root/.docker/config.json", false),
    ("/var/lib/kubelet/.dockercfg", true),
];

pub fn credentials(node: &Node) -> Result<Vec<Credentials>> {
    let mut out = Vec::new();
    for (path, kubelet_reads) in CREDENTIAL_FILES {
        let Some(text) = node.read(path)? else {
            continue;
        };
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::bad_input(
                path,
                format!("not valid JSON ({e})"),
                "Fix it: image pulls that need these credentials fail while it is broken.",
            )
        })?;
        crate::secrets::from_json(&json);
        // `.dockercfg` is the old format: the registries are the top-level keys.
        let auths = if path.ends_with(".dockercfg") {
            Some(&json)
        } else {
            json.get("auths")
        };
        let mut registries: Vec<String> = auths
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        registries.sort();
        let mut helpers: Vec<String> = json
            .get("credHelpers")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(store) = json.get("credsStore").and_then(Value::as_str) {
            helpers.push(format!("credsStore: {store}"));
        }
        out.push(Credentials {
            path: path.to_string(),
            registries,
            helpers,
            kubelet_reads,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_settings_that_matter() {
        let s = parse_daemon_json(
            r#"{"exec-opts":["native.cgroupdriver=systemd"],"registry-mirrors":["https://mirror.local"],
                "insecure-registries":["reg.local:5000","10.0.0.0/8"],"data-root":"/data/docker",
                "storage-driver":"overlay2","max-concurrent-downloads":10,"log-driver":"json-file",
                "log-opts":{"max-size":"100m","max-file":"3"},"live-restore":true}"#,
        )
        .unwrap();
        assert_eq!(s.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(s.insecure_registries.len(), 2);
        assert_eq!(s.max_concurrent_downloads, Some(10));
        assert_eq!(s.log_opts["max-size"], "100m");
        assert_eq!(s.other.keys().collect::<Vec<_>>(), ["live-restore"]);
    }

    #[test]
    fn runtimes_default_ulimits_and_selinux_from_daemon_json_and_flags() {
        let (_d, n) = node(&[
            (
                "/etc/docker/daemon.json",
                r#"{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []},
                    "kata": {"runtimeType": "io.containerd.kata.v2", "options": {"ConfigPath": "/etc/kata/configuration.toml"}}},
                    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 1048576, "Soft": 65536}}, "selinux-enabled": true}"#,
            ),
            ("/usr/bin/nvidia-container-runtime", "#!/bin/sh\n"),
            ("/usr/local/bin/containerd-shim-kata-v2", "#!/bin/sh\n"),
            ("/usr/local/bin/runsc", "#!/bin/sh\n"),
            ("/usr/local/bin/containerd-shim-runsc-v1", "#!/bin/sh\n"),
            (
                "/lib/systemd/system/docker.service",
                "[Service]\nExecStart=/usr/bin/dockerd --add-runtime runsc=/usr/local/bin/runsc --default-ulimit memlock=-1:-1 --default-ulimit nofile=4096\n",
            ),
        ]);
        let s = inspect(&n).unwrap().settings;
        assert_eq!(s.default_runtime.as_deref(), Some("nvidia"));
        assert!(s.selinux_enabled);
        let by = |name: &str| s.runtimes.iter().find(|r| r.name == name).unwrap().clone();
        // A bare name found as dockerd finds it, in its PATH.
        assert_eq!(
            by("nvidia").binary.as_deref(),
            Some("/usr/bin/nvidia-container-runtime")
        );
        assert!(by("nvidia").shim.is_none());
        assert_eq!(
            by("kata").shim,
            Some((
                "io.containerd.kata.v2".into(),
                "/usr/local/bin/containerd-shim-kata-v2".into()
            ))
        );
        assert_eq!(
            by("kata").options["ConfigPath"],
            "/etc/kata/configuration.toml"
        );
        // gVisor's shim found beside its binary.
        assert_eq!(by("runsc").shim.unwrap().0, "io.containerd.runsc.v1");
        // A flag's limit replaces the file's of the same name.
        let flags: Vec<String> = s.default_ulimits.iter().map(|u| u.to_flag()).collect();
        assert_eq!(flags, ["memlock=-1:-1", "nofile=4096:4096"]);
        assert!(s.other.is_empty(), "{:?}", s.other);
        // Malformed: said with the file.
        assert!(parse_daemon_json(r#"{"runtimes": {"x": "/usr/bin/x"}}"#).is_err());
        assert!(parse_daemon_json(r#"{"default-ulimits": {"nofile": {"Soft": 1}}}"#).is_err());
        assert!(
            parse_daemon_json(r#"{"default-ulimits": {"bogus": {"Soft": 1, "Hard": 1}}}"#).is_err()
        );
    }

    #[test]
    fn malformed_json_is_a_bad_input() {
        let e = parse_daemon_json("{\"registry-mirrors\": [").unwrap_err();
        let f = e.downcast_ref::<Failure>().unwrap();
        assert!(matches!(f, Failure::BadInput { .. }));
        assert!(e.to_string().contains(DAEMON_JSON));
        assert!(parse_daemon_json(r#"{"registry-mirrors": "x"}"#).is_err());
    }

    use crate::node::test_node as node;

    #[test]
    fn dockerd_flags_from_a_drop_in_and_an_env_file_are_settings_with_their_source() {
        // Kubespray's docker-options.conf: DOCKER_OPTS continued over lines, expanded by the
        // drop-in's own ExecStart=.
        let (_d, n) = node(&[
            ("/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n"),
            (
                "/etc/systemd/system/docker.service.d/docker-options.conf",
                "[Service]\nEnvironment=\"DOCKER_OPTS= --iptables=false \\\n--exec-opt native.cgroupdriver=systemd \\\n--registry-mirror=https://mirror.example \\\n--insecure-registry=reg.example:5000 \\\n--log-opt max-size=50m --log-opt max-file=5 \\\n--add-runtime nvidia=/usr/bin/nvidia-container-runtime\"\nExecStart=\nExecStart=/usr/bin/dockerd $DOCKER_OPTS\n",
            ),
        ]);
        let d = inspect(&n).unwrap();
        let s = &d.settings;
        assert_eq!(s.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(s.registry_mirrors, ["https://mirror.example"]);
        assert_eq!(s.insecure_registries, ["reg.example:5000"]);
        assert_eq!(s.log_opts["max-size"], "50m");
        assert_eq!(s.log_opts["max-file"], "5");
        let conf = "/etc/systemd/system/docker.service.d/docker-options.conf";
        assert_eq!(
            s.source("registry-mirrors"),
            format!("dockerd --registry-mirror ({conf}:2 ($DOCKER_OPTS))")
        );
        assert_eq!(s.source("data-root"), "/etc/docker/daemon.json data-root");
        // --iptables is Docker's own business; --add-runtime is a runtime, with where it is set
        // (the binary is not on this node).
        assert!(s.other_flags.is_empty(), "{:?}", s.other_flags);
        assert_eq!(s.runtimes.len(), 1);
        let r = &s.runtimes[0];
        assert_eq!(
            (r.name.as_str(), r.path.as_deref(), r.from.as_str()),
            (
                "nvidia",
                Some("/usr/bin/nvidia-container-runtime"),
                format!("dockerd --add-runtime ({conf}:2 ($DOCKER_OPTS))").as_str()
            )
        );
        assert!(r.binary.is_none() && r.shim.is_none());
    }

    /// Issue 33 point 6: an env file the unit does not load is said, never carried.
    #[test]
    fn an_env_file_the_unit_does_not_load_is_not_in_effect() {
        let (_d, n) = crate::node::test_node(&[
            (
                "/lib/systemd/system/docker.service",
                "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
            ),
            (
                "/etc/default/docker",
                "# Docker Upstart and SysVinit configuration file\nDOCKER_OPTS=\"--log-opt max-size=99m --registry-mirror=https://user:S3cret@m.local\"\n",
            ),
        ]);
        let d = inspect(&n).unwrap();
        assert!(d.settings.log_opts.is_empty(), "{:?}", d.settings.log_opts);
        assert!(d.settings.registry_mirrors.is_empty());
        assert_eq!(
            d.env_files_not_loaded,
            ["/etc/default/docker (DOCKER_OPTS)"]
        );
        // Loaded: in effect, nothing said.
        let (_d2, n2) = crate::node::test_node(&[
            (
                "/lib/systemd/system/docker.service",
                "[Service]\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/bin/dockerd -H fd:// $DOCKER_OPTS\n",
            ),
            ("/etc/default/docker", "DOCKER_OPTS=\"--log-opt max-size=99m\"\n"),
        ]);
        let d = inspect(&n2).unwrap();
        assert!(d.env_files_not_loaded.is_empty());
        assert_eq!(
            d.settings.log_opts.get("max-size").map(String::as_str),
            Some("99m")
        );
    }

    #[test]
    fn rhel_sysconfig_options_and_a_config_file_elsewhere() {
        let (_d, n) = node(&[
            (
                "/usr/lib/systemd/system/docker.service",
                "[Service]\nEnvironmentFile=-/etc/sysconfig/docker\nEnvironmentFile=-/etc/sysconfig/docker-storage\nExecStart=/usr/bin/dockerd-current $OPTIONS $DOCKER_STORAGE_OPTIONS --config-file=/etc/docker/alt.json\n",
            ),
            ("/etc/sysconfig/docker", "OPTIONS='--selinux-enabled --log-driver=journald -g /data/docker'\n"),
            ("/etc/sysconfig/docker-storage", "DOCKER_STORAGE_OPTIONS=\"--storage-driver overlay2\"\n"),
            ("/etc/docker/alt.json", "{\"registry-mirrors\": [\"https://m.example\"]}\n"),
        ]);
        let d = inspect(&n).unwrap();
        let s = &d.settings;
        assert_eq!(d.daemon_json.as_deref(), Some("/etc/docker/alt.json"));
        assert_eq!(s.registry_mirrors, ["https://m.example"]);
        assert_eq!(
            s.source("registry-mirrors"),
            "/etc/docker/alt.json registry-mirrors"
        );
        assert_eq!(s.data_root.as_deref(), Some("/data/docker"));
        assert_eq!(s.storage_driver.as_deref(), Some("overlay2"));
        assert_eq!(s.log_driver.as_deref(), Some("journald"));
        assert!(s
            .source("storage-driver")
            .contains("$DOCKER_STORAGE_OPTIONS"));
        assert!(s.other_flags.is_empty(), "{:?}", s.other_flags);
        assert!(s.selinux_enabled);
        assert!(s
            .source("selinux-enabled")
            .contains("/etc/sysconfig/docker:1 ($OPTIONS)"));
        // A broken file named by --config-file is named in the refusal.
        let (_d, n) = node(&[
            (
                "/lib/systemd/system/docker.service",
                "[Service]\nExecStart=/usr/bin/dockerd --config-file /etc/docker/alt.json\n",
            ),
            ("/etc/docker/alt.json", "{"),
        ]);
        assert!(inspect(&n)
            .unwrap_err()
            .to_string()
            .contains("/etc/docker/alt.json"));
    }

    #[test]
    fn dockers_proxy_is_read_from_its_unit_or_daemon_json() {
        // Docker's documented way: a drop-in of docker.service.
        let (_d, n) = node(&[
            ("/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/bin/dockerd\n"),
            (
                "/etc/systemd/system/docker.service.d/http-proxy.conf",
                "[Service]\nEnvironment=\"HTTP_PROXY=http://proxy.example:3128\"\nEnvironment=\"NO_PROXY=localhost,127.0.0.1\" \"OTHER=x\"\n",
            ),
        ]);
        let p = inspect(&n).unwrap().settings.proxies;
        let names: Vec<&str> = p.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(names, ["HTTP_PROXY", "NO_PROXY"]);
        assert!(p[0].2.ends_with("http-proxy.conf:2"));
        // daemon.json's proxies (Docker 23+) win, and are not "not carried".
        let (_d, n) = node(&[
            (
                "/lib/systemd/system/docker.service",
                "[Service]\nEnvironment=HTTP_PROXY=http://unit:1\nExecStart=/usr/bin/dockerd\n",
            ),
            (
                "/etc/docker/daemon.json",
                r#"{"proxies": {"https-proxy": "http://u:Pw0rdX@p.example:8080", "no-proxy": "*.local"}}"#,
            ),
        ]);
        let s = inspect(&n).unwrap().settings;
        assert_eq!(s.proxies.len(), 2);
        assert_eq!(s.proxies[0].0, "HTTPS_PROXY");
        assert!(!s.other.contains_key("proxies"));
        // Serialized redacted.
        assert!(!serde_json::to_string(&s).unwrap().contains("Pw0rdX"));
    }
}
