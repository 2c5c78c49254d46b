//! Planning: a pure function from [`Facts`] and the options to a [`Plan`] — the files to write
//! (old and new text) and the ordered service actions. The dry run prints it; apply walks it.
//!
//! [`plan`] is a short sequence of named phases, each a pure function with its tests beside it:
//! the versions (`versions.rs`), the settings carried with where each came from
//! (`settings.rs`), the runtime's files (`runtime_files.rs`), the kubelet's side
//! (`kubelet_files.rs`), the files settled (unchanged ones dropped, each read back), the order
//! and the service actions (`actions.rs`), the checks said with the plan (`checks.rs`), and
//! whether Docker's images are carried (`images.rs`).

mod actions;
pub mod checks;
pub mod crio_node;
pub mod images;
mod kubelet_files;
pub mod kubenet;
mod runtime_files;
mod settings;
#[cfg(test)]
mod test_facts;
mod versions;
pub mod workloads;

pub use actions::order;
pub use kubelet_files::runtime_flags_owner;

use crate::error::Failure;
use crate::flags::{FileKind, VarsFile};
use crate::inspect::kubelet::{EXEC_START, EXTRA_ARGS_FILES, KUBEADM_FLAGS};
use crate::inspect::runtimes::{CRICTL_YAML, INSTANCE_CONFIG, REGISTRIES_DROP_IN};
use crate::inspect::{require_kubelet, Facts, Finding, RuntimeKind};
use crate::node::join;
use crate::render::{self, kubelet::Rules};
use crate::version::Version;
use serde::{Serialize, Serializer};
use std::fmt;

/// The runtime to move to: described once in `src/runtime.rs`.
pub use crate::runtime::Target;

/// The inspection's name for a target.
pub fn kind_of(target: Target) -> RuntimeKind {
    match target {
        Target::Containerd => RuntimeKind::Containerd,
        Target::Crio => RuntimeKind::Crio,
    }
}

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

/// A carried-over setting and where its value came from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub from: String,
}

fn setting<T>(value: T, from: impl Into<String>) -> Setting<T> {
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
    pub workloads: workloads::Workloads,
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
    pub images: images::ImagesPlan,
    /// Whether the node is drained first (cordoned, its pods evicted; uncordoned after).
    pub drain: bool,
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

pub fn plan(facts: &Facts, opts: &PlanOptions) -> Result<Plan, Failure> {
    require_kubelet(facts)?;
    let target = opts.target;
    let endpoint = endpoint(facts, target)?;
    let mut warnings: Vec<Finding> = Vec::new();
    let v = versions::versions(facts, opts, &mut warnings)?;
    let mut settings = settings::carried(facts, opts, target, &mut warnings);
    let mut files = runtime_files::runtime_files(facts, &v, target, &mut settings, &mut warnings)?;
    files.extend(kubenet::kubenet_files(
        facts,
        opts,
        &settings,
        &mut warnings,
    )?);
    let pause = settings.sandbox_image.as_ref().map(|s| s.value.as_str());
    files.extend(kubelet_files::kubelet_side(
        facts,
        v.kv,
        target,
        &endpoint,
        pause,
        &mut warnings,
    )?);
    checks::cni_plugins(facts, &files)?;
    let files = settle(files, v.from, target, &endpoint)?;
    let (order, actions) =
        actions::service_actions(facts, &v, opts, &endpoint, &files, &settings, &mut warnings);
    checks::closing_warnings(facts, &v, target, &settings, &mut warnings);
    let images = images::decide(facts, target, opts.images, settings.runtime_root.is_some());
    checks::every_file_is_read(facts, &files, &settings)?;
    Ok(Plan {
        images,
        drain: opts.drain,
        from: v.from,
        target,
        runtime_version: v.rv,
        kubelet_version: v.kv,
        config_schema: v.config_schema,
        endpoint,
        settings,
        files,
        actions,
        order,
        warnings,
    })
}

/// The files settled: those that would not change dropped, each read back as its program reads
/// it; nothing left to write on a node already on the target is "nothing to do".
fn settle(
    mut files: Vec<FileChange>,
    from: RuntimeKind,
    target: Target,
    endpoint: &str,
) -> Result<Vec<FileChange>, Failure> {
    files.retain(|f| f.old.as_deref() != Some(f.new.as_str()));
    for f in &files {
        parse_back(f)?;
    }

    if from == kind_of(target) && files.is_empty() {
        return Err(Failure::NothingToDo(format!(
            "the kubelet already uses {} ({endpoint}) and every file cri-migrate manages is as it would write it",
            target.name(),
        )));
    }
    Ok(files)
}

/// Every rendered file is read back the way its program reads it before it joins the plan: a
/// value from the node that the format cannot hold is a refusal naming the file, never a file
/// the runtime or systemd would misread.
fn parse_back(f: &FileChange) -> Result<(), Failure> {
    let refuse = |problem: String| {
        Failure::bad_input(
            &f.path,
            format!("the file cri-migrate would write does not read back ({problem})"),
            "A value carried from the node cannot be written in this format: check the values the plan names for it (a control character in a path or a registry name?) and fix them on the node, or pass them as flags.",
        )
    };
    let yaml = |text: &str| {
        serde_norway::from_str::<serde_norway::Value>(text.trim_start_matches('\u{feff}'))
            .map(|_| ())
            .map_err(|e| refuse(e.to_string()))
    };
    match f.format {
        Format::Unit => {
            crate::flags::VarsFile::parse(crate::flags::FileKind::DropIn, &f.new)
                .map_err(refuse)?;
        }
        Format::Yaml => yaml(&f.new)?,
        Format::Toml => {
            f.new
                .parse::<toml_edit::DocumentMut>()
                .map_err(|e| refuse(crate::error::toml_problem(&f.new, &e)))?;
        }
        Format::Json => {
            serde_json::from_str::<serde_json::Value>(&f.new).map_err(|e| refuse(e.to_string()))?;
        }
        Format::EnvFile => {
            crate::flags::VarsFile::parse(crate::flags::FileKind::EnvFile, &f.new)
                .map_err(refuse)?;
        }
    }
    Ok(())
}

/// A planned file, with its group and format as the phase that made it says.
fn change(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::runtimes::CONTAINERD_CONFIG;

    fn file(path: &str, format: Format, old: Option<&str>, new: &str) -> FileChange {
        FileChange {
            path: path.into(),
            mode: 0o644,
            old: old.map(str::to_string),
            new: new.into(),
            why: String::new(),
            unit_file: format == Format::Unit,
            format,
            group: FileGroup::Runtime,
        }
    }

    #[test]
    fn settling_drops_what_would_not_change_and_reads_the_rest_back() {
        let same = file(CRICTL_YAML, Format::Yaml, Some("a: b\n"), "a: b\n");
        let new = file(CRICTL_YAML, Format::Yaml, None, "a: b\n");
        // Nothing to write on a node already on the target: nothing to do.
        let e = settle(
            vec![same.clone()],
            RuntimeKind::Containerd,
            Target::Containerd,
            Target::Containerd.endpoint(),
        );
        assert!(matches!(e, Err(Failure::NothingToDo(_))));
        // Leaving Docker with every file as it is: the service actions still stand.
        assert!(settle(
            vec![same.clone()],
            RuntimeKind::Dockershim,
            Target::Containerd,
            Target::Containerd.endpoint(),
        )
        .unwrap()
        .is_empty());
        assert_eq!(
            settle(
                vec![same, new.clone()],
                RuntimeKind::Containerd,
                Target::Containerd,
                Target::Containerd.endpoint(),
            )
            .unwrap(),
            [new]
        );
        // A file its program would misread is refused, naming it.
        for bad in [
            file(CONTAINERD_CONFIG, Format::Toml, None, "[plugins\n"),
            file(CRICTL_YAML, Format::Yaml, None, "a: [b\n"),
            file(
                "/etc/systemd/system/kubelet.service.d/x.conf",
                Format::Unit,
                None,
                "Environment=\"A=b\n",
            ),
            file(
                KUBEADM_FLAGS,
                Format::EnvFile,
                None,
                "KUBELET_KUBEADM_ARGS=\"--a\n",
            ),
        ] {
            let e = settle(
                vec![bad.clone()],
                RuntimeKind::Dockershim,
                Target::Containerd,
                Target::Containerd.endpoint(),
            )
            .unwrap_err();
            assert!(e.to_string().contains(&bad.path), "{e}");
        }
    }

    /// Issue 33 point 2: a runtime whose unit moves its socket is pointed at where it listens —
    /// the kubelet's flag, crictl, every check — and a value that is no socket path is refused,
    /// naming where it is set.
    #[test]
    fn a_runtime_on_another_socket_is_followed_there() {
        let mut f = super::test_facts::facts("kubeadm-1.20-docker");
        f.other_sockets = vec![crate::inspect::runtimes::OtherSocket {
            unit: "containerd.service".into(),
            flag: "-a/--address".into(),
            value: "/run/site/containerd.sock".into(),
            at: "/etc/sysconfig/containerd:1 ($OPTS)".into(),
        }];
        let p = plan(&f, &super::test_facts::opts(Target::Containerd)).unwrap();
        let ep = "unix:///run/site/containerd.sock";
        assert_eq!(p.endpoint, ep);
        let flags = p.files.iter().find(|x| x.path == KUBEADM_FLAGS).unwrap();
        assert!(
            flags
                .new
                .contains(&format!("--container-runtime-endpoint={ep}")),
            "{}",
            flags.new
        );
        let crictl = p.files.iter().find(|x| x.path == CRICTL_YAML).unwrap();
        assert!(
            crictl.new.contains(&format!("runtime-endpoint: \"{ep}\"")),
            "{}",
            crictl.new
        );
        for a in &p.actions {
            let json = serde_json::to_value(a).unwrap();
            if let Some(e) = json.get("endpoint") {
                assert_eq!(e, ep, "{a}");
            }
        }
        // (containerd's template shows its default socket in a comment only.)
        for x in &p.files {
            assert!(
                !x.new.lines().any(|l| !l.trim_start().starts_with('#')
                    && l.contains("/run/containerd/containerd.sock")),
                "{}: {}",
                x.path,
                x.new
            );
        }
        // Another runtime's unit is not this target's business.
        if let Ok(p) = plan(&f, &super::test_facts::opts(Target::Crio)) {
            assert_eq!(p.endpoint, "unix:///var/run/crio/crio.sock");
        }
        f.other_sockets[0].value = "/run/x.sock\n--v=9".into();
        let e = plan(&f, &super::test_facts::opts(Target::Containerd)).unwrap_err();
        assert!(e.to_string().contains("/etc/sysconfig/containerd"), "{e}");
        f.other_sockets[0].value = "tcp://10.0.0.1:1234".into();
        assert!(plan(&f, &super::test_facts::opts(Target::Containerd)).is_err());
    }

    /// Issue 33 point 2: a file nothing reads is refused, naming it.
    #[test]
    fn a_file_nothing_reads_is_refused() {
        let f = super::test_facts::facts("kubeadm-1.20-docker");
        let o = super::test_facts::opts(Target::Containerd);
        assert!(plan(&f, &o).is_ok());
        // kubelet.service no longer loads kubeadm-flags.env: its flags would be lost.
        let mut g = f.clone();
        if let Some(kc) = g.kubelet_command.as_mut() {
            kc.env_files.retain(|e| e != KUBEADM_FLAGS);
        }
        let e = plan(&g, &o).unwrap_err().to_string();
        assert!(
            e.contains(KUBEADM_FLAGS) && e.contains("loads no such file"),
            "{e}"
        );
        // containerd loads another file than the one written.
        let mut h = f.clone();
        h.containerd_config_path.path = "/etc/containerd/other.toml".into();
        h.containerd_config_path.from = Some("a test".into());
        let mut files = plan(&f, &o).unwrap().files;
        let settings = plan(&f, &o).unwrap().settings;
        assert!(checks::every_file_is_read(&h, &files, &settings).is_err());
        files.retain(|x| !x.path.starts_with("/etc/containerd/"));
        assert!(checks::every_file_is_read(&h, &files, &settings).is_ok());
    }
}
