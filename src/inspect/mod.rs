//! Inspection: read the node (through `--root`) into [`Facts`], plain data that planning uses
//! without reading the node again.

pub mod bolt;
pub mod cni;
pub mod docker;
pub mod docker_options;
pub mod kubelet;
pub mod layouts;
pub mod leftovers;
pub mod manifests;
pub mod packages;
pub mod pods;
pub mod provisioners;
pub mod risks;
pub mod runtimes;

use crate::error::Failure;
use crate::node::{Node, Snapshot};
use crate::system::Commands;
use crate::version::Version;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// Where the kubelet runs now (a runtime of `crate::runtime`'s, or Docker's two ways).
pub use crate::runtime::RuntimeKind;

/// A piece of software on the node and how we know.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Installed {
    pub installed: bool,
    pub version: Option<Version>,
    /// Where the version came from: a flag, `PROGRAM --version`, or a package.
    pub version_source: Option<String>,
    pub binary: Option<String>,
    pub package: Option<String>,
    pub units: Vec<String>,
    pub socket: Option<String>,
    /// The package database's records disagree or are several (see `packages::Found`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_note: Option<String>,
    /// `KillMode=` of its service unit (unit file and drop-ins), where set: `process` lets the
    /// containers' shims outlive a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_mode: Option<String>,
    /// `ExecStart=` of its service unit, where found (Docker's tells whether it runs on the
    /// system's containerd: `--containerd=...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_start: Option<String>,
    /// `LimitNOFILE=` of its service unit, where set (containerd 2.x's unit has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_nofile: Option<String>,
    /// The runtimes' units its service unit is tied to so that their stop or restart stops or
    /// restarts it (`Requires=`, `BindsTo=`, `PartOf=`, drop-ins included). docker-ce
    /// 18.09–19.03 binds Docker to containerd.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tied_to: Vec<runtimes::Tie>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurrentRuntime {
    pub kind: RuntimeKind,
    pub endpoint: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runtimes {
    pub docker: Installed,
    pub cri_dockerd: Installed,
    pub containerd: Installed,
    pub crio: Installed,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
}

/// A risk found on the node, or a setting the plan cannot carry over: one line of what, one of
/// what to do.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn warning(
        code: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            code,
            severity: Severity::Warning,
            message: message.into(),
            fix: fix.into(),
        }
    }
    pub fn info(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            code,
            severity: Severity::Info,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

fn is_default_crio_paths(p: &runtimes::CrioPaths) -> bool {
    *p == runtimes::CrioPaths::default()
}

/// The config file containerd loads, and where its unit says so (`None`: containerd's default).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerdConfigPath {
    pub path: String,
    pub from: Option<String>,
}

impl Default for ContainerdConfigPath {
    fn default() -> Self {
        ContainerdConfigPath {
            path: runtimes::CONTAINERD_CONFIG.to_string(),
            from: None,
        }
    }
}

impl ContainerdConfigPath {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub root: String,
    pub live: bool,
    pub os: Option<String>,
    pub kubelet: kubelet::Kubelet,
    pub current_runtime: CurrentRuntime,
    pub runtimes: Runtimes,
    pub docker: docker::Docker,
    pub credentials: Vec<docker::Credentials>,
    pub containerd_config: Option<runtimes::ContainerdConfig>,
    /// The file containerd loads (its unit's `-c`, else the default): where its config is read
    /// and written.
    #[serde(skip_serializing_if = "ContainerdConfigPath::is_default")]
    pub containerd_config_path: ContainerdConfigPath,
    /// A kubenet node's pod CIDR found on the live node where its files do not hold it (the
    /// Node object's `.spec.podCIDR`, else kubenet's `cbr0` bridge), with where it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubenet_pod_cidr: Option<(String, String)>,
    /// Where CRI-O reads its config (its unit's `--config`, `--config-dir`) and where our
    /// drop-in goes.
    #[serde(skip_serializing_if = "is_default_crio_paths")]
    pub crio_paths: runtimes::CrioPaths,
    /// Runtimes' units that make them listen off their default socket.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_sockets: Vec<runtimes::OtherSocket>,
    pub crio: runtimes::CrioConfig,
    /// runc, crun, conmon and pinns as found on the node (what CRI-O will run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<runtimes::Tool>,
    pub cni: cni::Cni,
    pub static_pods: Vec<pods::StaticPod>,
    /// Docker containers (live node only) that mount Docker's socket or data.
    pub docker_containers: Vec<pods::DockerContainer>,
    /// What Docker leaves behind (IPAM reservations, live-restore, iptables chains).
    pub leftovers: leftovers::Leftovers,
    /// The manifests Docker's repo digests name (schema 1 cannot be pulled by containerd 2.1+).
    pub docker_manifests: manifests::Manifests,
    /// The command line `kubelet.service` runs, read as systemd reads the unit (src/unit.rs),
    /// each word with the file, line and variable it comes from.
    pub kubelet_command: Option<KubeletCommand>,
    /// cri-dockerd's flags (`cri-docker.service`), each with where it is set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cri_dockerd_flags: Vec<kubelet::FoundFlag>,
    /// A layout cri-migrate leaves to its own tools (k3s, RKE, MicroK8s, a Docker snap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<layouts::Layout>,
    /// The package databases read, said ("/var/lib/dpkg/status", "the rpm database /var/lib/rpm"),
    /// or that there were none.
    pub package_databases: String,
    /// Whether this node's processes may hold CAP_SYS_RESOURCE (bit 24 of the bounding set in
    /// /proc/self/status); known on the live node only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_sys_resource: Option<bool>,
    /// SELinux on the node: ("enforcing" | "permissive", where that is read), when not off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<(String, String)>,
    /// The node has `semanage` and `restorecon` (policycoreutils), to label a moved data root.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub selinux_tools: bool,
    /// SELinux equivalence rules the node has (`file_contexts.subs`: PATH, LIKE).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selinux_equivalences: Vec<(String, String)>,
    /// The node's services were asked (a live node: `InspectOptions::talk`).
    pub talk: bool,
    /// Docker's API socket is there to carry images from (a live node only).
    pub docker_socket: bool,
    /// skopeo, which carries images to CRI-O, is installed (a live node only).
    pub skopeo: bool,
    pub risks: Vec<Finding>,
    /// The node's host name, lowercased as the kubelet takes it, and where it was read: its
    /// `/etc/hostname`, else (the live node only) this machine's name. Never the host's under
    /// `--root`.
    #[serde(skip)]
    pub hostname: Option<(String, &'static str)>,
    /// The text of every file the planner may rewrite, as found.
    #[serde(skip)]
    pub files: BTreeMap<String, Snapshot>,
}

/// The system's name, from os-release.
fn os_name(node: &Node) -> Option<String> {
    node.read("/etc/os-release").ok().flatten().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// The manifests Docker's images came with. Docker on containerd's image store keeps no
/// repositories.json of its own (one left from before is stale), and containerd converted any
/// schema 1 it pulled.
fn docker_manifests(
    node: &Node,
    installed: &Installed,
    d: &docker::DockerSettings,
    containerd_config: Option<&runtimes::ContainerdConfig>,
    talk: bool,
) -> manifests::Manifests {
    if !installed.installed || d.containerd_snapshotter {
        return manifests::Manifests::default();
    }
    let other = |k: &str| d.other.get(k).and_then(|v| v.as_str());
    manifests::inspect(
        node,
        &manifests::DockerPlaces {
            data_root: d.data_root.as_deref(),
            storage_driver: d.storage_driver.as_deref(),
            exec_root: other("exec-root"),
            containerd: other("containerd"),
            namespace: other("containerd-namespace"),
            exec_start: installed.exec_start.as_deref(),
            containerd_root: containerd_config.and_then(|c| c.root.as_deref()),
        },
        talk,
    )
}

/// `semanage` and `restorecon` (policycoreutils), to label a moved data root.
fn selinux_tools(node: &Node) -> bool {
    ["/usr/sbin/semanage", "/sbin/semanage"]
        .iter()
        .any(|p| node.exists(p))
        && ["/usr/sbin/restorecon", "/sbin/restorecon"]
            .iter()
            .any(|p| node.exists(p))
}

fn hostname(node: &Node, live: bool) -> Option<(String, &'static str)> {
    let name = |h: &str| Some(h.trim().to_lowercase()).filter(|h| !h.is_empty());
    if let Some(h) = node
        .read("/etc/hostname")
        .ok()
        .flatten()
        .and_then(|h| name(&h))
    {
        return Some((h, "/etc/hostname"));
    }
    let own = live.then(nix::unistd::gethostname).and_then(Result::ok)?;
    Some((name(own.to_str()?)?, "this machine's hostname"))
}

/// The kubelet's unit and the command line it runs.
#[derive(Debug, Clone, Serialize)]
pub struct KubeletCommand {
    pub unit: Option<String>,
    pub dropins: Vec<String>,
    /// The files of its `EnvironmentFile=` lines (`-` dropped, specifiers left), loaded or not.
    #[serde(skip)]
    pub env_files: Vec<String>,
    #[serde(flatten)]
    pub command: crate::unit::Command,
}

impl KubeletCommand {
    /// As systemd would run it; `None` without a unit or an `ExecStart=`, or where its files
    /// cannot be read (the kubelet's flags are read and refused on their own).
    pub fn read(node: &Node) -> Option<KubeletCommand> {
        let unit = crate::unit::Unit::load(node, "kubelet.service").ok()??;
        let command = unit.command(node).ok()??;
        Some(KubeletCommand {
            unit: unit.fragment.clone(),
            dropins: unit.dropins.clone(),
            env_files: unit.env_file_paths().map(|(_, p)| p.to_string()).collect(),
            command,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    pub kubelet_version: Option<Version>,
    /// Ask the node's services what its files cannot tell (containerd's leases): a live node.
    pub talk: bool,
}

/// Read the node. Fails only on files that cannot be understood (typed [`Failure::BadInput`]);
/// everything else that is odd becomes a [`Finding`].
pub fn inspect(node: &Node, cmds: &dyn Commands, opts: &InspectOptions) -> Result<Facts> {
    let live = node.is_live();
    let pkgs = packages::Packages::read(node)?;
    let mut files = BTreeMap::new();

    let (kubelet, current_runtime) = kubelet_and_runtime(node, cmds, &pkgs, opts, &mut files)?;

    let runtimes = Runtimes::detect(node, cmds, &pkgs);
    let docker = docker::inspect(node)?;
    let credentials = docker::credentials(node)?;
    // The kubelet's credentials file, which a migration onto containerd 2.x may add to.
    if let Some(snap) = node.snapshot(crate::cri::credentials::KUBELET_CONFIG_JSON)? {
        files.insert(
            crate::cri::credentials::KUBELET_CONFIG_JSON.to_string(),
            snap,
        );
    }
    let RuntimeConfigs {
        containerd_config_path,
        containerd_config,
        crio_paths,
        crio,
        other_sockets,
    } = RuntimeConfigs::read(node, &mut files)?;
    let cri_dockerd_flags = kubelet::cri_dockerd_flags(node)?;
    let cni = cni::inspect(
        node,
        &kubelet,
        &cri_dockerd_flags,
        containerd_config.as_ref(),
        &crio,
    );
    let static_pods = pods::static_pods(node, &kubelet);
    let docker_containers = if live && runtimes.docker.installed {
        pods::docker_containers(cmds)
    } else {
        vec![]
    };
    runtimes::snapshot_owned_files(node, &mut files)?;

    let os = os_name(node);
    let leftovers = if runtimes.docker.installed {
        leftovers::inspect(
            node,
            cmds,
            docker.settings.data_root.as_deref(),
            &docker.settings.other,
        )
    } else {
        leftovers::Leftovers::default()
    };
    let docker_manifests = docker_manifests(
        node,
        &runtimes.docker,
        &docker.settings,
        containerd_config.as_ref(),
        opts.talk,
    );
    let mut facts = Facts {
        root: node.root().display().to_string(),
        live,
        os,
        kubelet,
        current_runtime,
        runtimes,
        docker,
        credentials,
        containerd_config,
        kubenet_pod_cidr: None,
        crio_paths,
        other_sockets,
        containerd_config_path,
        crio,
        tools: runtimes::tools(node, cmds, &pkgs),
        cni,
        static_pods,
        docker_containers,
        leftovers,
        docker_manifests,
        kubelet_command: KubeletCommand::read(node),
        layout: layouts::detect(node)?,
        package_databases: pkgs.said(),
        talk: opts.talk,
        cap_sys_resource: live.then(crate::cri::sandbox::cap_sys_resource).flatten(),
        selinux: selinux(node, live),
        selinux_equivalences: selinux_equivalences(node),
        selinux_tools: selinux_tools(node),
        cri_dockerd_flags,
        docker_socket: opts.talk && node.exists(crate::images::docker::SOCKET),
        skopeo: opts.talk && which::which("skopeo").is_ok(),
        risks: vec![],
        hostname: hostname(node, live),
        files,
    };
    facts.risks = risks::assess(&facts);
    facts.risks.extend(provisioners::findings(node));
    facts.risks.extend(package_notes(&pkgs));
    Ok(facts)
}

/// The kubelet (its version from `--kubelet-version` where given) and the runtime it uses now.
fn kubelet_and_runtime(
    node: &Node,
    cmds: &dyn Commands,
    pkgs: &packages::Packages,
    opts: &InspectOptions,
    files: &mut BTreeMap<String, Snapshot>,
) -> Result<(kubelet::Kubelet, CurrentRuntime)> {
    let mut installed = runtimes::detect(node, cmds, pkgs, &runtimes::KUBELET);
    if let Some(v) = opts.kubelet_version {
        installed.version = Some(v);
        installed.version_source = Some("--kubelet-version".into());
    }
    let kubelet = kubelet::inspect(node, installed, files)?;
    let (kind, reason) = kubelet.current_runtime();
    let current_runtime = CurrentRuntime {
        kind,
        endpoint: kubelet.runtime_endpoint.clone(),
        reason,
    };
    Ok((kubelet, current_runtime))
}

/// What a package database could not tell (an rpm database refused or unreadable).
fn package_notes(pkgs: &packages::Packages) -> impl Iterator<Item = Finding> + '_ {
    pkgs.notes.iter().map(|n| {
        Finding::info(
            "package-database",
            n.clone(),
            "versions not found in a package database come from the binaries or the flags --kubelet-version and --runtime-version",
        )
    })
}

impl Runtimes {
    fn detect(node: &Node, cmds: &dyn Commands, pkgs: &packages::Packages) -> Runtimes {
        Runtimes {
            docker: runtimes::detect(node, cmds, pkgs, &runtimes::DOCKER),
            cri_dockerd: runtimes::detect(node, cmds, pkgs, &runtimes::CRI_DOCKERD),
            containerd: runtimes::detect(node, cmds, pkgs, &runtimes::CONTAINERD),
            crio: runtimes::detect(node, cmds, pkgs, &runtimes::CRIO),
        }
    }
}

/// The CRI runtimes' configs as their units load them.
struct RuntimeConfigs {
    containerd_config_path: ContainerdConfigPath,
    containerd_config: Option<runtimes::ContainerdConfig>,
    crio_paths: runtimes::CrioPaths,
    crio: runtimes::CrioConfig,
    other_sockets: Vec<runtimes::OtherSocket>,
}

impl RuntimeConfigs {
    /// The runtimes' commands as their units run them, read once: what they load and where
    /// they listen.
    fn read(node: &Node, files: &mut BTreeMap<String, Snapshot>) -> Result<RuntimeConfigs> {
        let containerd_command = runtimes::unit_command(node, "containerd.service")?;
        let crio_command = runtimes::unit_command(node, "crio.service")?;
        let (path, from) = runtimes::containerd_config_path(containerd_command.as_ref())?;
        let containerd_config = runtimes::containerd_config(node, &path, files)?;
        let crio_paths = runtimes::crio_paths(crio_command.as_ref())?;
        let crio = runtimes::crio_config(node, &crio_paths, files)?;
        let other_sockets = runtimes::other_sockets(
            containerd_command.as_ref(),
            crio_command.as_ref(),
            containerd_config.as_ref(),
            Some(&crio),
        );
        Ok(RuntimeConfigs {
            containerd_config_path: ContainerdConfigPath { path, from },
            containerd_config,
            crio_paths,
            crio,
            other_sockets,
        })
    }
}

/// SELinux's mode: the running kernel's (`/sys/fs/selinux/enforce`) on a live node, else the
/// one the node boots with (`SELINUX=` of /etc/selinux/config). None where it is off.
fn selinux(node: &Node, live: bool) -> Option<(String, String)> {
    if live {
        const ENFORCE: &str = "/sys/fs/selinux/enforce";
        let v = node.read(ENFORCE).ok().flatten()?;
        let mode = if v.trim() == "1" {
            "enforcing"
        } else {
            "permissive"
        };
        return Some((mode.into(), ENFORCE.into()));
    }
    const CONFIG: &str = "/etc/selinux/config";
    let text = node.read(CONFIG).ok().flatten()?;
    let mode = text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("SELINUX=")
            .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
    })?;
    matches!(mode.as_str(), "enforcing" | "permissive").then(|| (mode, CONFIG.to_string()))
}

/// The local equivalence rules of every policy (`semanage fcontext -a -e` writes them to
/// /etc/selinux/POLICY/contexts/files/file_contexts.subs as `PATH LIKE`).
fn selinux_equivalences(node: &Node) -> Vec<(String, String)> {
    let mut out = vec![];
    for policy in node.list("/etc/selinux") {
        let f = format!("/etc/selinux/{policy}/contexts/files/file_contexts.subs");
        let Ok(Some(text)) = node.read(&f) else {
            continue;
        };
        for l in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let mut w = l.split_whitespace();
            if let (Some(p), Some(like)) = (w.next(), w.next()) {
                out.push((p.to_string(), like.to_string()));
            }
        }
    }
    out
}

/// Inspection that needs a kubelet: migration does.
pub fn require_kubelet(facts: &Facts) -> Result<(), Failure> {
    if let Some(l) = &facts.layout {
        return Err(Failure::preflight(
            format!(
                "{}: cri-migrate does not migrate {} nodes in place",
                l.evidence, l.name
            ),
            format!("{}.", l.fix),
        ));
    }
    if !facts.kubelet.installed.installed && facts.kubelet.flag_files.is_empty() {
        return Err(Failure::preflight(
            format!(
                "no kubelet found on the node at {} (no binary, unit, package or flags file)",
                facts.root
            ),
            "Run cri-migrate on a Kubernetes node, or point --root at a node's root file system.",
        ));
    }
    Ok(())
}
