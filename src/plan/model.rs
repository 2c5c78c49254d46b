//! What a plan is made of: its options, the settings carried, the files and the service
//! actions, and the versions it is for. Below every phase and every runtime's module
//! (`runtime::containerd`, `runtime::crio`), which make these and never the plan's order.

use crate::error::Failure;
use crate::images::Selection;
use crate::inspect::docker::Ulimit;
use crate::inspect::{Facts, Finding, RuntimeKind};
use crate::render::Handler;
use crate::runtime::Target;
use crate::version::Version;
use serde::{Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub target: Target,
    pub runtime_version: Option<Version>,
    pub sandbox_image: Option<String>,
    /// How long to wait for the runtime's CRI socket; the kubelet gets twice that.
    pub timeout_secs: u64,
    /// No test pod in the checks (`--no-sandbox`).
    pub no_sandbox: bool,
    /// Which of Docker's images to carry (`--images`).
    pub images: crate::images::Selection,
    /// Drain the node first (`--drain`).
    pub drain: bool,
    /// The node's pod CIDR (`--pod-cidr`), for a kubelet on kubenet.
    pub pod_cidr: Option<String>,
}

impl PlanOptions {
    /// A plain `migrate --to TARGET`: every option at its default.
    pub fn new(target: Target) -> PlanOptions {
        PlanOptions {
            target,
            runtime_version: None,
            sandbox_image: None,
            timeout_secs: 60,
            no_sandbox: false,
            images: Default::default(),
            drain: false,
            pod_cidr: None,
        }
    }
}

/// A carried-over setting and where its value came from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub from: String,
}

pub fn setting<T>(value: T, from: impl Into<String>) -> Setting<T> {
    Setting {
        value,
        from: from.into(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Carried {
    pub cgroup_driver: Setting<String>,
    pub sandbox_image: Option<Setting<String>>,
    pub cni_conf_dir: Setting<String>,
    pub cni_bin_dirs: Setting<Vec<String>>,
    pub registries: Vec<String>,
    pub runtime_root: Option<Setting<String>>,
    pub snapshotter: Option<Setting<String>>,
    pub max_concurrent_downloads: Option<Setting<u64>>,
    /// Docker's runtimes, default runtime, default ulimits, SELinux.
    #[serde(flatten)]
    pub workloads: Workloads,
}

/// One file the plan writes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    #[serde(skip)]
    pub old: Option<String>,
    #[serde(skip)]
    pub new: String,
    pub why: String,
    /// A systemd unit file or drop-in: systemd must reload.
    pub unit_file: bool,
    /// How the file is written and read back, said by the phase that made it.
    #[serde(skip)]
    pub format: Format,
    /// When it is written (the runtime's files, or the kubelet's at the cutover).
    #[serde(skip)]
    pub group: FileGroup,
}

/// A planned file's format, as its program reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    /// YAML, or JSON read as YAML (a kubelet config drop-in may be either).
    Yaml,
    Json,
    /// `KEY="value"` lines read through `EnvironmentFile=`.
    EnvFile,
    /// A systemd unit file or drop-in.
    Unit,
}

fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// One service step, in order.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Stop {
        unit: String,
        /// Docker's API socket: the walk goes on once the containers Docker runs have exited
        /// (its own shutdown after them overlaps what follows; [`Action::WaitStopped`] joins it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until_exited: Option<String>,
    },
    /// Docker's containers stopped as Docker stops them (each its stop signal, SIGKILL after
    /// its stop timeout), all at once, before Docker's own stop; going on once they have
    /// exited. Where Docker could start one again, left to Docker's stop, said why.
    StopContainers {
        /// Docker's API socket (the containers are noted through it).
        socket: String,
    },
    /// The stops that went on past their step, finished (and the units inactive).
    WaitStopped {
        units: Vec<String>,
        timeout_secs: u64,
    },
    Disable {
        unit: String,
    },
    DaemonReload,
    Enable {
        unit: String,
    },
    Restart {
        unit: String,
    },
    WaitForSocket {
        endpoint: String,
        timeout_secs: u64,
    },
    VerifyPull {
        endpoint: String,
        image: String,
        /// The kubelet's image credential providers, which the pull asks as the kubelet would.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        providers: Option<crate::cri::provider::Source>,
    },
    /// A test pod through CRI as the kubelet would run it (`cri::sandbox`).
    CheckSandbox {
        endpoint: String,
        /// The test container's image (the sandbox image is the runtime's own setting).
        image: String,
        /// The kubelet's cgroup driver, which the pod's cgroup parent is shaped for.
        cgroup_driver: String,
        #[serde(default)]
        cluster_dns: Vec<String>,
        #[serde(default)]
        cluster_domain: Option<String>,
        /// The runtime handler the pod runs on (one carried from Docker); none: the default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runtime_handler: Option<String>,
    },
    /// The runtime still answers and is ready (after the cutover, with the kubelet on it).
    CheckRuntime {
        endpoint: String,
    },
    /// Release host-local's address reservations of the pods Docker ran (they cannot release
    /// them once stopped): each file moved into the backup, if it still names that container.
    ReleaseAddresses {
        /// (reservation file, the container it must still name)
        reservations: Vec<(String, String)>,
    },
    /// Write the plan's files of a group; a plan without these markers writes every file right
    /// after its leading stops (plans stored by earlier versions).
    WriteFiles {
        group: FileGroup,
    },
    /// The runtime's root moved beside Docker's data-root on an SELinux node: the equivalence
    /// rule that gives it the default root's labels, and the relabel (before the runtime starts
    /// there).
    SelinuxLabels {
        path: String,
        like: String,
    },
    Start {
        unit: String,
    },
    /// The kubelet's starts held at a gate until Docker's containers have exited
    /// (`system::gate`): its runtime drop-in written, systemd reloaded, the gate proved loaded.
    InstallGate {
        unit: String,
    },
    /// The unit's start queued, held at its gate: systemd starts it the moment the gate opens,
    /// which the stop of Docker does once its containers have exited.
    StartHeld {
        unit: String,
    },
    /// The gate gone once the kubelet runs (and systemd reloaded).
    RemoveGate {
        unit: String,
    },
    WaitActive {
        unit: String,
        timeout_secs: u64,
    },
}

/// Which files go when: the runtime's before the cutover (where the runtime is checked beside
/// Docker), the kubelet's during it.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FileGroup {
    Runtime,
    Kubelet,
    All,
}

impl FileGroup {
    /// Whether a file of group `g` is written with this group's `WriteFiles`.
    pub fn contains(self, g: FileGroup) -> bool {
        self == FileGroup::All || self == g
    }

    /// The group of a file of a plan stored by an earlier version, which did not record it:
    /// the kubelet's files (flags, config, its unit's drop-ins) and crictl.yaml, by their paths,
    /// as that version grouped them; the kubelet's credentials went with the runtime's files.
    pub fn of_stored_path(path: &str) -> FileGroup {
        let kubelet = (path.contains("kubelet") || path == crate::inspect::runtimes::CRICTL_YAML)
            && path != crate::cri::credentials::KUBELET_CONFIG_JSON;
        if kubelet {
            FileGroup::Kubelet
        } else {
            FileGroup::Runtime
        }
    }
}

/// Whether the target runtime is brought up and checked while the kubelet still runs on
/// Docker, and why (or why not).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Order {
    pub check_before_cutover: bool,
    pub why: String,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Stop {
                unit,
                until_exited: None,
            } => write!(f, "stop {unit}"),
            Action::Stop {
                unit,
                until_exited: Some(_),
            } => write!(
                f,
                "stop {unit}, going on once Docker's containers have exited"
            ),
            Action::StopContainers { .. } => write!(
                f,
                "stop Docker's containers as Docker stops them (each its stop signal, SIGKILL after its stop timeout), all at once, going on once they have exited (where Docker could start one again, Docker's own stop does it)"
            ),
            Action::WaitStopped {
                units,
                timeout_secs,
            } => write!(
                f,
                "wait up to {timeout_secs}s until {} stopped (Docker's own shutdown, after its containers)",
                units.join(" and ")
            ),
            Action::Disable { unit } => write!(
                f,
                "disable {unit} (its packages and data stay, for rollback)"
            ),
            Action::DaemonReload => write!(f, "systemctl daemon-reload (a unit file changed)"),
            Action::Enable { unit } => write!(f, "enable {unit}"),
            Action::Restart { unit } => write!(f, "restart {unit}"),
            Action::WaitForSocket {
                endpoint,
                timeout_secs,
            } => write!(
                f,
                "wait up to {timeout_secs}s until CRI answers on {endpoint}"
            ),
            Action::VerifyPull {
                endpoint,
                image,
                providers,
            } => write!(
                f,
                "pull {image} through CRI on {endpoint} (as the kubelet would{})",
                providers
                    .as_ref()
                    .map(|p| format!(", its credential providers of {} asked", p.config))
                    .unwrap_or_default()
            ),
            Action::CheckSandbox {
                endpoint,
                image,
                cgroup_driver,
                runtime_handler,
                ..
            } => write!(
                f,
                "run a test pod through CRI on {endpoint} ({}, {cgroup_driver} cgroup parent, the node's CNI and sandbox image, a container of {image}), then remove it",
                match runtime_handler {
                    Some(h) => format!("runtime handler {h}"),
                    None => "the default runtime handler".into(),
                }
            ),
            Action::CheckRuntime { endpoint } => {
                write!(f, "check that the runtime on {endpoint} is still ready")
            }
            Action::ReleaseAddresses { reservations } => write!(
                f,
                "release the {} host-local address(es) of the pods Docker ran (kept in the backup)",
                reservations.len()
            ),
            Action::WriteFiles { group } => match group {
                FileGroup::Runtime => write!(f, "write the runtime's files"),
                FileGroup::Kubelet => write!(f, "write the kubelet's files"),
                FileGroup::All => write!(f, "write the files"),
            },
            Action::SelinuxLabels { path, like } => write!(
                f,
                "label {path} as {like} for SELinux ({})",
                crate::names::selinux_label_line(like, path)
            ),
            Action::Start { unit } => write!(f, "start {unit}"),
            Action::InstallGate { unit } => write!(
                f,
                "hold every start of {unit} at a gate until Docker's containers have exited ({}, then systemctl daemon-reload)",
                crate::system::gate::DROP_IN
            ),
            Action::StartHeld { unit } => write!(
                f,
                "queue the start of {unit}, held at its gate (it runs the moment Docker's containers have exited)"
            ),
            Action::RemoveGate { unit } => write!(
                f,
                "remove the gate of {unit} ({}), then systemctl daemon-reload",
                crate::system::gate::DROP_IN
            ),
            Action::WaitActive { unit, timeout_secs } => {
                write!(f, "wait up to {timeout_secs}s until {unit} is active")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub from: RuntimeKind,
    pub target: Target,
    pub runtime_version: Version,
    pub kubelet_version: Version,
    /// containerd's config schema written (2, 3 or 4); none for CRI-O.
    pub config_schema: Option<u8>,
    pub endpoint: String,
    pub settings: Carried,
    pub files: Vec<FileChange>,
    pub actions: Vec<Action>,
    pub order: Order,
    pub warnings: Vec<Finding>,
    /// Whether Docker's images are carried, and if not why.
    pub images: ImagesPlan,
    /// Whether the node is drained first (cordoned, its pods evicted; uncordoned after).
    pub drain: bool,
}

/// What a phase of planning made, and what it found to say (in the order found): a phase
/// returns its warnings; the plan says them in the order the phases ran.
#[derive(Debug)]
#[must_use]
pub struct Said<T> {
    pub value: T,
    pub warnings: Vec<Finding>,
}

impl<T> Said<T> {
    /// A value with nothing to say.
    pub fn quiet(value: T) -> Said<T> {
        Said {
            value,
            warnings: Vec::new(),
        }
    }
    /// The value, its warnings added to `all`.
    pub fn said_to(self, all: &mut Vec<Finding>) -> T {
        all.extend(self.warnings);
        self.value
    }
}

/// The runtime's files, and the registries they hold (the plan's `settings.registries`).
#[derive(Debug, Default)]
pub struct RuntimeFiles {
    pub files: Vec<FileChange>,
    pub registries: Vec<String>,
}

/// A planned file, with its group and format as the phase that made it says.
pub fn change(
    facts: &Facts,
    (group, format): (FileGroup, Format),
    path: &str,
    new: String,
    why: &str,
) -> FileChange {
    let old = facts.files.get(path);
    // A file that holds a credential (an old config.toml's registry auth, kept by the merge)
    // is readable by root only.
    let mode = old.map(|s| s.mode).unwrap_or(0o644);
    let mode = if crate::secrets::holds(&new) {
        mode & 0o600
    } else {
        mode
    };
    FileChange {
        path: path.to_string(),
        mode,
        old: old.map(|s| s.content.clone()),
        new,
        why: why.to_string(),
        unit_file: format == Format::Unit,
        format,
        group,
    }
}

/// The versions a plan is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub kv: Version,
    pub rv: Version,
    pub from: RuntimeKind,
    pub config_schema: Option<u8>,
}

/// Docker's runtimes, default runtime, default ulimits and SELinux setting, as the plan carries
/// them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Workloads {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handlers: Vec<Handler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_handler: Option<Setting<String>>,
    /// `nofile=65536:1048576`, each with where it is set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux: Option<Setting<bool>>,
    /// The moved runtime root to label as the default one (path, like): a plan action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relabel: Option<(String, String)>,
}

/// Whether Docker's images are carried.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImagesPlan {
    pub selection: Selection,
    /// Why they are not, when they are not.
    pub why_not: Option<String>,
}

impl ImagesPlan {
    pub fn carried(&self) -> bool {
        self.why_not.is_none()
    }
}

/// Registry settings that could not be carried: one warning each, naming the value (never a
/// credential) and why.
pub fn skipped_registries(skipped: &[String], warnings: &mut Vec<Finding>) {
    for why in skipped {
        warnings.push(Finding::warning(
            "registry-not-carried",
            why.clone(),
            "fix the value on the node (or leave it: the rest is carried), then run cri-migrate again",
        ));
    }
}

/// The runtime's CRI socket as its own unit sets it (containerd's `--address`, CRI-O's
/// `--listen`), else its default: where the kubelet, crictl and the checks are pointed. A value
/// that is no plain socket path is refused, naming where it is set.
pub fn endpoint(facts: &Facts, target: Target) -> Result<String, Failure> {
    let Some(o) = facts.other_sockets.iter().find(|o| o.unit == target.unit()) else {
        return Ok(target.endpoint().to_string());
    };
    let path = o.value.strip_prefix("unix://").unwrap_or(&o.value);
    let plain = path.starts_with('/')
        && !path.contains("/../")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+@:".contains(c));
    if !plain {
        return Err(Failure::bad_input(
            &o.at,
            format!(
                "{} listens on {:?} ({}), which is not a plain unix socket path cri-migrate can point the kubelet, crictl and its checks at",
                o.unit, o.value, o.flag
            ),
            format!(
                "Give {} of {} an absolute socket path (letters, digits, / . _ - + @ :), or remove it for the runtime's default {}, then run cri-migrate again.",
                o.flag,
                o.unit,
                target.endpoint()
            ),
        ));
    }
    Ok(format!("unix://{path}"))
}
