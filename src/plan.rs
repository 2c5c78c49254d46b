//! Planning: a pure function from [`Facts`] and the options to a [`Plan`] — the files to write
//! (old and new text) and the ordered service actions. The dry run prints it; apply walks it.

use crate::error::Failure;
use crate::flags::{FileKind, VarsFile};
use crate::inspect::kubelet::{EXEC_START, EXTRA_ARGS_FILES, KUBEADM_FLAGS};
use crate::inspect::runtimes::{
    CONTAINERD_CONFIG, CRICTL_YAML, CRIO_DROP_IN, INSTANCE_CONFIG, REGISTRIES_DROP_IN,
};
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
    /// The kubelet's files (flags, config, its unit's drop-ins) and crictl.yaml, which the
    /// operator's tools follow at the cutover; everything else is the runtime's.
    pub fn holds(self, path: &str) -> bool {
        // The kubelet's credentials go with the runtime's files: the check before the cutover
        // pulls with them.
        let kubelet = (path.contains("kubelet") || path == crate::inspect::runtimes::CRICTL_YAML)
            && path != crate::cri::credentials::KUBELET_CONFIG_JSON;
        match self {
            FileGroup::All => true,
            FileGroup::Kubelet => kubelet,
            FileGroup::Runtime => !kubelet,
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
            Action::Stop { unit } => write!(f, "stop {unit}"),
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
            Action::VerifyPull { endpoint, image } => write!(
                f,
                "pull {image} through CRI on {endpoint} (as the kubelet would)"
            ),
            Action::CheckSandbox {
                endpoint,
                image,
                cgroup_driver,
                ..
            } => write!(
                f,
                "run a test pod through CRI on {endpoint} ({cgroup_driver} cgroup parent, the node's CNI and sandbox image, a container of {image}), then remove it"
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
}

/// The oldest kubelet cri-migrate plans for, and the newest whose flag rules it knows.
const OLDEST_KUBELET: Version = Version::new(1, 20, 0);
const NEWEST_KNOWN_KUBELET: (u32, u32) = (1, 35);

pub fn plan(facts: &Facts, opts: &PlanOptions) -> Result<Plan, Failure> {
    require_kubelet(facts)?;
    let target = opts.target;
    let mut warnings: Vec<Finding> = Vec::new();

    let kv = facts.kubelet.installed.version.ok_or_else(|| {
        Failure::preflight(
            match &facts.kubelet.installed.package_note {
                Some(note) => format!("cannot tell the kubelet's version: {note}"),
                None => "cannot tell the kubelet's version (no `kubelet --version` on this node, no kubelet package in /var/lib/dpkg/status)".to_string(),
            },
            "Pass it with --kubelet-version, e.g. --kubelet-version 1.23.17.",
        )
    })?;
    if kv < OLDEST_KUBELET {
        return Err(Failure::preflight(
            format!("kubelet {kv} is older than {OLDEST_KUBELET}, the oldest cri-migrate supports"),
            "Upgrade the node's Kubernetes first (kubeadm upgrade), or pass the right --kubelet-version if it was misread.",
        ));
    }
    let (major, minor) = NEWEST_KNOWN_KUBELET;
    if kv.at_least(major, minor + 1) {
        warnings.push(Finding::warning(
            "kubelet-newer-than-known",
            format!("kubelet {kv} is newer than the flag rules cri-migrate knows (up to {major}.{minor}); the {major}.{minor} rules are used"),
            "check the kubelet's changelog for removed flags before applying",
        ));
    }
    let from = facts.current_runtime.kind;
    if from == RuntimeKind::Unknown {
        return Err(Failure::preflight(
            format!("cannot tell which runtime the kubelet uses now: {}", facts.current_runtime.reason),
            "Check the kubelet's --container-runtime-endpoint flag and config.yaml; pass --kubelet-version if the version is missing.",
        ));
    }

    let installed = match target {
        Target::Containerd => &facts.runtimes.containerd,
        Target::Crio => &facts.runtimes.crio,
    };
    let install_hint = match target {
        Target::Containerd => "apt-get install containerd (Debian, Ubuntu), dnf install containerd.io (Docker's repository)",
        Target::Crio => "the cri-o package matching the kubelet's minor version, from the CRI-O repositories",
    };
    let rv = match (opts.runtime_version, installed.version, installed.installed) {
        (Some(v), _, true) => v,
        (Some(v), _, false) => {
            warnings.push(Finding::warning(
                "runtime-not-installed",
                format!("{} is not installed; the plan assumes version {v}", target.name()),
                format!("install it before applying: {install_hint}"),
            ));
            v
        }
        (None, Some(v), true) => v,
        (None, None, true) => {
            return Err(Failure::preflight(
                format!("{} is installed but its version cannot be read", target.name()),
                "Pass it with --runtime-version, e.g. --runtime-version 1.6.20.",
            ))
        }
        (None, _, false) => {
            return Err(Failure::preflight(
                format!("{} is not installed on this node (no binary, no package)", target.name()),
                format!("Install it first ({install_hint}), or pass --runtime-version to plan for a node where it will be."),
            ))
        }
    };
    let config_schema = match target {
        Target::Containerd => Some(containerd_schema(
            rv,
            kv,
            facts.containerd_config.as_ref(),
            &mut warnings,
        )?),
        Target::Crio => {
            if (rv.major, rv.minor) != (kv.major, kv.minor) {
                warnings.push(Finding::warning(
                    "crio-version-skew",
                    format!("CRI-O {rv} does not match kubelet {kv}: CRI-O's minor version follows Kubernetes'"),
                    format!("install cri-o {}.{}", kv.major, kv.minor),
                ));
            }
            None
        }
    };

    let settings = carried(facts, opts, target, &mut warnings);
    let endpoint = target.endpoint().to_string();
    let mut files = Vec::new();
    let mut settings = settings;

    match target {
        Target::Containerd => {
            let schema = config_schema.unwrap();
            let cs = render::containerd::Settings {
                schema,
                cni_bin_dirs_list: rv.at_least(2, 1),
                move_credentials: rv.major >= 2,
                systemd_cgroup: settings.cgroup_driver.value == "systemd",
                sandbox_image: settings.sandbox_image.as_ref().map(|s| s.value.clone()),
                cni_bin_dirs: settings.cni_bin_dirs.value.clone(),
                cni_conf_dir: settings.cni_conf_dir.value.clone(),
                config_path: render::containerd::CERTS_D.into(),
                root: settings.runtime_root.as_ref().map(|s| s.value.clone()),
                snapshotter: settings.snapshotter.as_ref().map(|s| s.value.clone()),
                max_concurrent_downloads: settings
                    .max_concurrent_downloads
                    .as_ref()
                    .map(|s| s.value),
            };
            let old = facts.files.get(CONTAINERD_CONFIG);
            let r = render::containerd::render(old.map(|s| s.content.as_str()), &cs).map_err(
                |problem| {
                    Failure::bad_input(
                        CONTAINERD_CONFIG,
                        format!("the merged config cannot be made: {problem}"),
                        "Fix the file (or the value carried into it), or move it aside so that cri-migrate writes a new one.",
                    )
                },
            )?;
            if settings.sandbox_image.is_none() {
                settings.sandbox_image = r
                    .existing_sandbox_image
                    .clone()
                    .map(|v| setting(v, "the existing config.toml"));
            }
            for note in &r.notes {
                warnings.push(Finding::info(
                    "containerd-config-converted",
                    note.clone(),
                    "review the diff of /etc/containerd/config.toml",
                ));
            }
            files.push(change(facts, CONTAINERD_CONFIG, r.text, "containerd's config: CRI plugin on, cgroup driver, sandbox image, CNI and registry directories"));
            let carried_hosts = render::registries::containerd_hosts(
                &facts.docker.settings,
                &facts.docker.certs,
                &r.moved_mirrors,
                &r.moved_tls,
            );
            skipped_registries(&carried_hosts.skipped, &mut warnings);
            let hosts = carried_hosts.value;
            for h in &hosts {
                let path = join(
                    &join(render::containerd::CERTS_D, h.host.as_str()),
                    "hosts.toml",
                );
                let rendered = render::registries::hosts_toml(h);
                let new = match facts.files.get(&path) {
                    Some(old) => merge_toml(&path, &old.content, &rendered)?,
                    None => rendered,
                };
                files.push(change(
                    facts,
                    &path,
                    new,
                    &format!("registry {} from {}", h.host, h.origin),
                ));
            }
            settings.registries = hosts.iter().map(|h| h.host.to_string()).collect();
            if !r.moved_auths.is_empty() {
                files.push(kubelet_credentials(facts, &r.moved_auths, &mut warnings)?);
            }
            limits_drop_in(facts, rv, &mut files, &mut warnings);
        }
        Target::Crio => {
            let cs = render::crio::Settings {
                cgroup_manager: settings.cgroup_driver.value.clone(),
                sandbox_image: settings.sandbox_image.as_ref().map(|s| s.value.clone()),
                cni_conf_dir: settings.cni_conf_dir.value.clone(),
                cni_bin_dirs: settings.cni_bin_dirs.value.clone(),
                root: settings.runtime_root.as_ref().map(|s| s.value.clone()),
                storage_driver: settings.snapshotter.as_ref().map(|s| s.value.clone()),
            };
            files.push(change(
                facts,
                CRIO_DROP_IN,
                render::crio::drop_in(&cs),
                "CRI-O drop-in: cgroup manager, pause image, CNI directories",
            ));
            let carried_regs = render::registries::crio_registries(&facts.docker.settings);
            skipped_registries(&carried_regs.skipped, &mut warnings);
            if let Some(text) = carried_regs.value {
                if facts.crio.registries_conf_v1 {
                    warnings.push(Finding::warning(
                        "registries-conf-v1",
                        "/etc/containers/registries.conf uses the v1 format, which cannot be mixed with v2 drop-ins: Docker's mirrors and insecure registries are not carried over",
                        "convert registries.conf to the v2 format ([[registry]] tables) and run cri-migrate again",
                    ));
                } else {
                    files.push(change(
                        facts,
                        REGISTRIES_DROP_IN,
                        text,
                        "registry mirrors and insecure registries from daemon.json",
                    ));
                    settings.registries =
                        render::registries::registry_names(&facts.docker.settings);
                }
            }
            for c in facts
                .docker
                .certs
                .iter()
                .filter(|c| !c.ca.is_empty() || !c.client.is_empty())
            {
                warnings.push(Finding::warning(
                    "certs-not-carried",
                    format!("certificates for {} in /etc/docker/certs.d are not carried over to CRI-O", c.host),
                    format!("copy /etc/docker/certs.d/{}/ to /etc/containers/certs.d/{}/ (same file names)", c.host, c.host),
                ));
            }
            if rv.at_least(1, 35) {
                for f in &facts.crio.insecure_registries_in {
                    warnings.push(Finding::warning(
                        "crio-insecure-registries",
                        format!("{f} sets insecure_registries, which CRI-O {rv} ignores"),
                        "list them in /etc/containers/registries.conf.d/ with insecure = true",
                    ));
                }
            }
        }
    }

    // crictl talks to the new runtime.
    let crictl = match facts.files.get(CRICTL_YAML) {
        Some(old) => ["runtime-endpoint", "image-endpoint"]
            .iter()
            .try_fold(old.content.clone(), |text, key| {
                render::yaml::set_top_level(&text, key, &endpoint)
            })
            .map_err(|e| {
                Failure::bad_input(
                    CRICTL_YAML,
                    e,
                    "Fix the YAML, or move the file aside so that cri-migrate writes a new one.",
                )
            })?,
        None => render::template("crictl.yaml", serde_json::json!({ "endpoint": endpoint })),
    };
    files.push(change(
        facts,
        CRICTL_YAML,
        crictl,
        "crictl talks to the new runtime",
    ));

    files.extend(kubelet_files(facts, kv, target, &mut warnings)?);
    // kubeadm's record of the node's CRI socket, where kubeadm keeps it in a file (1.34+).
    if let Some(old) = facts.files.get(INSTANCE_CONFIG) {
        let new = render::yaml::set_top_level(&old.content, "containerRuntimeEndpoint", &endpoint)
            .map_err(|e| {
                Failure::bad_input(
                    INSTANCE_CONFIG,
                    e,
                    "Fix the file, or restore it with `kubeadm upgrade node`.",
                )
            })?;
        files.push(change(
            facts,
            INSTANCE_CONFIG,
            new,
            "kubeadm's record of the node's CRI socket",
        ));
    }
    files.retain(|f| f.old.as_deref() != Some(f.new.as_str()));
    for f in &files {
        parse_back(f)?;
    }

    if from == kind_of(target) && files.is_empty() {
        return Err(Failure::NothingToDo(format!(
            "the kubelet already uses {} ({endpoint}) and every file cri-migrate manages is as it would write it",
            target.name()
        )));
    }

    if settings.sandbox_image.is_none() {
        warnings.push(Finding::info(
            "sandbox-image-default",
            format!("no pause image was configured; {} uses its default ({})", target.name(), default_pause(target, rv)),
            "on a node that cannot reach registry.k8s.io, pass --sandbox-image with the mirror's pause image",
        ));
    }

    let order = order(facts, target, from);
    if !order.check_before_cutover && from.is_docker() {
        warnings.push(Finding::info(
            "checked-after-cutover",
            format!(
                "{} is checked after the kubelet and Docker stop: {}",
                target.name(),
                order.why
            ),
            "a failed check then rolls back to Docker; the kubelet is down meanwhile",
        ));
    }
    let actions = actions(
        facts,
        target,
        from,
        &files,
        &settings,
        rv,
        opts.timeout_secs,
        &order,
    );
    let actions: Vec<Action> = if opts.no_sandbox {
        warnings.push(Finding::info(
            "sandbox-check-skipped",
            "no test pod runs (--no-sandbox): the runtime is checked by Version, Status and a pull, which prove neither the cgroup driver nor CNI nor the sandbox image",
            "run `cri-migrate verify` once the kubelet is back",
        ));
        actions
            .into_iter()
            .filter(|a| !matches!(a, Action::CheckSandbox { .. }))
            .collect()
    } else {
        actions
    };
    // Schema 1 matters by the target: said again here for it, in place of inspection's words.
    let by_target = crate::inspect::manifests::findings(
        &facts.docker_manifests,
        (target == Target::Containerd).then_some(rv),
    );
    warnings.extend(
        facts
            .risks
            .iter()
            .filter(|r| !crate::inspect::manifests::CODES.contains(&r.code))
            .cloned(),
    );
    warnings.extend(by_target);
    Ok(Plan {
        from,
        target,
        runtime_version: rv,
        kubelet_version: kv,
        config_schema,
        endpoint,
        settings,
        files,
        actions,
        order,
        warnings,
    })
}

/// Can the target runtime come up with its new config while the kubelet still runs on Docker?
pub fn order(facts: &Facts, target: Target, from: RuntimeKind) -> Order {
    let no = |why: String| Order {
        check_before_cutover: false,
        why,
    };
    if !from.is_docker() {
        return no(format!(
            "the kubelet runs on {}, not Docker: the runtimes cannot be told apart before the cutover",
            from.name()
        ));
    }
    let installed = match target {
        Target::Containerd => &facts.runtimes.containerd,
        Target::Crio => &facts.runtimes.crio,
    };
    if !installed.units.iter().any(|u| u == target.unit()) {
        return no(format!("{} has no unit on this node yet", target.unit()));
    }
    // Docker on the system's containerd passes `--containerd=` (its unit, or daemon.json's
    // `containerd`); without it, dockerd runs a containerd of its own under /run/docker.
    let docker_own_containerd = facts
        .runtimes
        .docker
        .exec_start
        .as_deref()
        .is_some_and(|e| !e.contains("--containerd"))
        && !facts.docker.settings.other.contains_key("containerd");
    match target {
        Target::Containerd => match installed.kill_mode.as_deref() {
            Some("process") => Order {
                check_before_cutover: true,
                why: "containerd.service has KillMode=process: Docker's containers (their shims) outlive its restart, so containerd is restarted with the new config and checked while the kubelet still runs on Docker".into(),
            },
            _ if docker_own_containerd => Order {
                check_before_cutover: true,
                why: "Docker runs a containerd of its own (no --containerd in its unit or daemon.json): containerd.service is a separate daemon on its own socket, so it is restarted with the new config and checked while the kubelet still runs on Docker".into(),
            },
            other => no(format!(
                "containerd.service has KillMode={}: restarting it beside Docker would stop Docker's containers",
                other.unwrap_or("control-group (systemd's default)")
            )),
        },
        Target::Crio => Order {
            check_before_cutover: true,
            why: "CRI-O runs beside Docker on its own socket: it is started with the new config and checked while the kubelet still runs on Docker".into(),
        },
    }
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
    let path = f.path.as_str();
    if path.contains("/systemd/") {
        crate::flags::VarsFile::parse(crate::flags::FileKind::DropIn, &f.new).map_err(refuse)?;
    } else if path.ends_with(".toml") || path.ends_with(".conf") {
        f.new
            .parse::<toml_edit::DocumentMut>()
            .map_err(|e| refuse(crate::error::toml_problem(&f.new, &e)))?;
    } else if path.ends_with(".json") {
        serde_json::from_str::<serde_json::Value>(&f.new).map_err(|e| refuse(e.to_string()))?;
    } else if path.ends_with(".yaml") || path.ends_with(".yml") {
        serde_norway::from_str::<serde_norway::Value>(&f.new).map_err(|e| refuse(e.to_string()))?;
    } else {
        crate::flags::VarsFile::parse(crate::flags::FileKind::EnvFile, &f.new).map_err(refuse)?;
    }
    Ok(())
}

fn containerd_schema(
    rv: Version,
    kv: Version,
    existing: Option<&crate::inspect::runtimes::ContainerdConfig>,
    warnings: &mut Vec<Finding>,
) -> Result<u8, Failure> {
    // The newest config version the installed containerd reads: 2 for 1.x, 3 for 2.0 to 2.2,
    // 4 from 2.3 (containerd RELEASES.md; version 1 is gone from 2.0: containerd#8275).
    let readable: u8 = if rv.at_least(2, 3) {
        4
    } else if rv.major >= 2 {
        3
    } else {
        2
    };
    if let Some(c) = existing {
        // A file written for a newer containerd than the one installed: the installed one cannot
        // read it, and rewriting it down would leave the newer tables in, misread.
        if c.schema > i64::from(readable) {
            return Err(Failure::bad_input(
                &c.path,
                format!(
                    "it is written as config version {}, which containerd {rv} cannot read (it reads up to version {readable})",
                    c.schema
                ),
                "Install the containerd the file was written for (or pass --runtime-version if the version was misread), or move the file aside so that cri-migrate writes one for this containerd.",
            ));
        }
    }
    if rv.major >= 3 {
        return Err(Failure::preflight(
            format!("containerd {rv} is newer than cri-migrate knows (config version 2 for 1.x, 3 for 2.0 to 2.2, 4 for 2.3 and later)"),
            "Use a cri-migrate release that knows it, or pass --runtime-version if the version was misread.",
        ));
    }
    if !rv.at_least(1, 5) {
        return Err(Failure::preflight(
            format!("containerd {rv} is too old: registry hosts (config_path) need 1.5"),
            "Upgrade containerd to 1.6 or later first.",
        ));
    }
    // containerd 2.0 removed CRI v1alpha2; the kubelet speaks CRI v1 from 1.23 (CRI stable).
    if rv.major >= 2 && !kv.at_least(1, 23) {
        return Err(Failure::preflight(
            format!("kubelet {kv} speaks CRI v1alpha2 only, which containerd {rv} no longer serves (removed in containerd 2.0)"),
            "Upgrade the kubelet first (1.23 or later speaks CRI v1; containerd lists 2.x for Kubernetes 1.30 and later), or target containerd 1.7 (install it, or pass --runtime-version 1.7.x for a node where it will be).",
        ));
    }
    if kv.at_least(1, 26) && !rv.at_least(1, 6) {
        return Err(Failure::preflight(
            format!("kubelet {kv} needs CRI v1, which containerd {rv} does not serve"),
            "Upgrade containerd to 1.6 or later first.",
        ));
    }
    // An existing file keeps its version where the installed containerd reads it (containerd
    // migrates older versions in memory at load); only a version it cannot read, or no file,
    // gets the newest. A file moved to a newer version cannot go back to an older containerd.
    let schema = match existing.map(|c| c.schema) {
        Some(v) if (2..=i64::from(readable)).contains(&v) => v as u8,
        _ => readable,
    };
    // (1.x's version 1 to 2 needs no word: every containerd cri-migrate plans for reads 2.)
    if let Some(c) = existing.filter(|c| c.schema < i64::from(schema) && schema >= 3) {
        let older = if schema == 4 {
            "containerd before 2.3"
        } else {
            "containerd 1.x"
        };
        warnings.push(Finding::info(
            "containerd-config-version",
            format!(
                "{} goes from config version {} to {schema}{}; {older} cannot read version {schema}",
                c.path,
                c.schema.max(1),
                if c.schema < 2 && rv.major >= 2 {
                    format!(" (containerd {rv} no longer reads version 1)")
                } else {
                    String::new()
                }
            ),
            "to put an older containerd back later (a package downgrade), put the file back too: the backup keeps it, and `cri-migrate rollback` restores it",
        ));
    }
    Ok(schema)
}

/// The kubelet's config.json with the credentials taken out of containerd's config added: the
/// kubelet sends them with each pull. An entry the file already has for a registry is kept (it
/// is what the kubelet sent so far), said.
fn kubelet_credentials(
    facts: &Facts,
    moved: &[(String, serde_json::Value)],
    warnings: &mut Vec<Finding>,
) -> Result<FileChange, Failure> {
    use crate::cri::credentials::KUBELET_CONFIG_JSON as PATH;
    let mut doc: serde_json::Value = match facts.files.get(PATH) {
        Some(snap) => serde_json::from_str(&snap.content).map_err(|e| {
            Failure::bad_input(
                PATH,
                format!("not valid JSON ({e})"),
                "Fix it (image pulls that need its credentials fail while it is broken), then run cri-migrate again.",
            )
        })?,
        None => serde_json::json!({}),
    };
    let Some(obj) = doc.as_object_mut() else {
        return Err(Failure::bad_input(
            PATH,
            "not a JSON object",
            "It must be a docker config.json: {\"auths\": {...}}.",
        ));
    };
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Failure::bad_input(
            PATH,
            "its `auths` is not an object",
            "Fix it: `auths` maps registry hosts to credentials.",
        ));
    };
    for (host, entry) in moved {
        if auths.contains_key(host) {
            warnings.push(Finding::warning(
                "credentials-kept",
                format!("{PATH} already has credentials for {host}; those stay (the kubelet sent them so far), the ones from containerd's registry.configs are dropped"),
                format!("check that the credentials for {host} in {PATH} are the current ones"),
            ));
        } else {
            auths.insert(host.clone(), entry.clone());
        }
    }
    let mut c = change(
        facts,
        PATH,
        format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON")),
        "registry credentials taken out of containerd's config (registry.configs, deprecated in 2.x): the kubelet sends them with each pull",
    );
    // Credentials: root only, whatever the file's mode was.
    c.mode &= 0o600;
    Ok(c)
}

/// containerd 2.x's unit sets no `LimitNOFILE` (containerd#8924): the containers it starts get a
/// soft limit of 1024 open files. Where Docker's unit gave its containers a limit, a drop-in keeps
/// it; where neither sets one, nothing changes for the workloads, and that is said.
fn limits_drop_in(
    facts: &Facts,
    rv: Version,
    files: &mut Vec<FileChange>,
    warnings: &mut Vec<Finding>,
) {
    let containerd = &facts.runtimes.containerd;
    if rv.major < 2 || !containerd.units.iter().any(|u| u == "containerd.service") {
        return;
    }
    // Set already (its unit, a drop-in of the operator's, or ours from an earlier run).
    if containerd.limit_nofile.is_some() {
        return;
    }
    match facts.runtimes.docker.limit_nofile.as_deref() {
        Some(limit) if render::containerd::valid_limit(limit) => {
            warnings.push(Finding::info(
                "containerd-limit-nofile",
                format!("containerd {rv}'s unit sets no LimitNOFILE, so its containers would get a soft limit of 1024 open files; Docker's unit gave them LimitNOFILE={limit}"),
                format!("the plan adds {} keeping Docker's limit", render::containerd::LIMITS_DROP_IN),
            ));
            files.push(change(
                facts,
                render::containerd::LIMITS_DROP_IN,
                render::containerd::limits_drop_in(limit, "Docker's unit (docker.service)"),
                "containerd 2.x's unit sets no LimitNOFILE: keep Docker's open-files limit for the containers",
            ));
        }
        Some(limit) => warnings.push(Finding::warning(
            "containerd-limit-nofile",
            format!("containerd {rv}'s unit sets no LimitNOFILE (containers get a soft limit of 1024 open files), and Docker's LimitNOFILE={limit:?} is not a value cri-migrate can carry"),
            "set LimitNOFILE in a drop-in under /etc/systemd/system/containerd.service.d/",
        )),
        None => warnings.push(Finding::info(
            "containerd-limit-nofile",
            format!("containerd {rv}'s unit sets no LimitNOFILE, nor does Docker's: containers get systemd's default soft limit of 1024 open files, as they did"),
            "workloads that need more open files: a LimitNOFILE drop-in under /etc/systemd/system/containerd.service.d/",
        )),
    }
}

/// The pause image a runtime uses when none is configured (runtime-facts §1).
fn default_pause(target: Target, rv: Version) -> String {
    match target {
        Target::Containerd if rv.major >= 2 => "registry.k8s.io/pause:3.10".into(),
        Target::Containerd if rv.at_least(1, 7) => "registry.k8s.io/pause:3.8".into(),
        Target::Containerd => "registry.k8s.io/pause:3.6".into(),
        Target::Crio => "its built-in pause image".into(),
    }
}

/// Registry settings that could not be carried: one warning each, naming the value (never a
/// credential) and why.
fn skipped_registries(skipped: &[String], warnings: &mut Vec<Finding>) {
    for why in skipped {
        warnings.push(Finding::warning(
            "registry-not-carried",
            why.clone(),
            "fix the value on the node (or leave it: the rest is carried), then run cri-migrate again",
        ));
    }
}

fn carried(
    facts: &Facts,
    opts: &PlanOptions,
    target: Target,
    warnings: &mut Vec<Finding>,
) -> Carried {
    let k = &facts.kubelet;
    let d = &facts.docker.settings;
    let cgroup_driver = match (&k.cgroup_driver, &d.cgroup_driver) {
        (Some(c), _) if k.flag("cgroup-driver").is_some() => {
            setting(c.clone(), "the kubelet's --cgroup-driver")
        }
        (Some(c), _) => setting(c.clone(), format!("cgroupDriver in {}", k.config.path)),
        (None, Some(c)) => setting(
            c.clone(),
            "daemon.json exec-opts native.cgroupdriver (the kubelet sets none)",
        ),
        (None, None) => setting(
            "cgroupfs".to_string(),
            "the kubelet's default (nothing sets a cgroup driver)",
        ),
    };
    let sandbox_image = opts
        .sandbox_image
        .clone()
        .map(|v| setting(v, "--sandbox-image"))
        .or_else(|| {
            k.pod_infra_container_image
                .clone()
                .map(|v| setting(v, "the kubelet's --pod-infra-container-image"))
        });
    let root_parent = d
        .data_root
        .as_deref()
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| *r != "/var/lib/docker" && !r.is_empty())
        .and_then(|r| {
            std::path::Path::new(r)
                .parent()
                .map(|p| p.display().to_string())
        });
    let runtime_root = root_parent.map(|parent| {
        let dir = match target {
            Target::Containerd => "containerd",
            Target::Crio => "containers/storage",
        };
        setting(
            join(&parent, dir),
            format!(
                "beside Docker's data-root {}",
                d.data_root.as_deref().unwrap_or_default()
            ),
        )
    });
    let snapshotter = d.storage_driver.as_deref().and_then(|sd| {
        let mapped = match (target, sd) {
            (_, "overlay2" | "overlay") => return None, // both runtimes default to overlay
            (Target::Containerd, "btrfs") => "btrfs",
            (Target::Containerd, "zfs") => "zfs",
            (Target::Containerd, "vfs") => "native",
            (Target::Crio, "btrfs" | "zfs" | "vfs") => sd,
            _ => {
                warnings.push(Finding::warning(
                    "storage-driver-dropped",
                    format!("Docker's storage driver {sd} has no ready equivalent in {}", target.name()),
                    "the runtime uses overlay; configure its snapshotter by hand if the node needs another",
                ));
                return None;
            }
        };
        Some(setting(mapped.to_string(), format!("daemon.json storage-driver {sd}")))
    });
    let max_concurrent_downloads = d.max_concurrent_downloads.and_then(|n| match target {
        Target::Containerd => Some(setting(n, "daemon.json max-concurrent-downloads")),
        Target::Crio => {
            warnings.push(Finding::info(
                "max-downloads-dropped",
                format!("daemon.json max-concurrent-downloads ({n}) has no CRI-O equivalent"),
                "nothing to do; CRI-O pulls layers in parallel by default",
            ));
            None
        }
    });
    Carried {
        cgroup_driver,
        sandbox_image,
        cni_conf_dir: setting(
            facts.cni.conf_dir.clone(),
            facts.cni.conf_dir_source.clone(),
        ),
        // Never empty: the renderers name the first.
        cni_bin_dirs: if facts.cni.bin_dirs.is_empty() {
            setting(vec!["/opt/cni/bin".to_string()], "the default".to_string())
        } else {
            setting(facts.cni.bin_dirs.clone(), facts.cni.bin_dir_source.clone())
        },
        registries: vec![],
        runtime_root,
        snapshotter,
        max_concurrent_downloads,
    }
}

fn merge_toml(path: &str, old: &str, rendered: &str) -> Result<String, Failure> {
    let mut doc: toml_edit::DocumentMut = old.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(
            path,
            crate::error::toml_problem(old, &e),
            "Fix it, or move it aside so that cri-migrate writes a new one.",
        )
    })?;
    let tpl: toml_edit::DocumentMut = rendered.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(
            path,
            format!(
                "the registry settings do not render as TOML ({})",
                crate::error::toml_problem(rendered, &e)
            ),
            "Check the registry names and URLs carried into it.",
        )
    })?;
    render::toml_merge::merge(&mut doc, &tpl);
    Ok(doc.to_string())
}

fn change(facts: &Facts, path: &str, new: String, why: &str) -> FileChange {
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
        unit_file: path.contains("/systemd/"),
    }
}

/// Where the kubelet's runtime flags go: kubeadm's variable where the unit expands it, else
/// where the runtime flags are now, else the distribution's `KUBELET_EXTRA_ARGS`, else the
/// variable that holds the kubelet's own `--kubeconfig`/`--config` (Kubespray's
/// `KUBELET_ARGS`), else the `ExecStart=` line itself. `(file, variable)`; the variable is
/// [`EXEC_START`] for the line.
pub fn runtime_flags_owner(k: &crate::inspect::kubelet::Kubelet) -> Option<(String, String)> {
    let expanded = |var: &str| k.exec_start.is_none() || k.exec_vars.iter().any(|v| v == var);
    let file_of = |var: &str| {
        k.flag_files
            .iter()
            .find(|f| f.vars.iter().any(|v| v == var))
            .map(|f| (f.path.clone(), var.to_string()))
    };
    let kubeadm = k
        .flag_files
        .iter()
        .find(|f| f.path == KUBEADM_FLAGS)
        .filter(|_| expanded("KUBELET_KUBEADM_ARGS"))
        .map(|f| (f.path.clone(), "KUBELET_KUBEADM_ARGS".to_string()));
    let where_flag = |names: &[&str]| {
        k.flags
            .iter()
            .rev()
            .find(|f| names.contains(&f.name.as_str()))
            .map(|f| (f.file.clone(), f.var.clone()))
    };
    let extra = || match k.exec_start {
        // Without a unit, kubeadm's drop-in is assumed: it reads these files.
        None => k
            .flag_files
            .iter()
            .find(|f| EXTRA_ARGS_FILES.contains(&f.path.as_str()))
            .map(|f| (f.path.clone(), "KUBELET_EXTRA_ARGS".to_string())),
        Some(_) => file_of("KUBELET_EXTRA_ARGS"),
    };
    kubeadm
        .or_else(|| where_flag(&["container-runtime-endpoint", "container-runtime"]))
        .or_else(extra)
        .or_else(|| where_flag(&["kubeconfig", "config", "bootstrap-kubeconfig"]))
        .or_else(|| {
            k.exec_start
                .as_ref()
                .map(|o| (o.file.clone(), EXEC_START.to_string()))
        })
}

/// A unit file systemd's packages own (under /usr or /lib): edited through a drop-in in
/// /etc/systemd/system, never in place (systemd.unit(5): "the files in /usr ... are owned by
/// the package").
fn vendor_unit_file(path: &str) -> bool {
    [
        "/usr/lib/systemd/",
        "/lib/systemd/",
        "/usr/local/lib/systemd/",
    ]
    .iter()
    .any(|d| path.starts_with(d))
}

/// The drop-in that carries a package's kubelet unit file's changed flags (`old` → `new`):
/// the variables its `Environment=` lines changed, and its `ExecStart=` (reset first, as
/// systemd.service(5) asks of a drop-in that replaces the command).
fn override_drop_in(
    facts: &Facts,
    path: &str,
    old: &str,
    new: &str,
) -> Result<FileChange, Failure> {
    let bad = |e: String| {
        Failure::bad_input(
            path,
            e,
            "Fix the unit file's Environment= and ExecStart= lines.",
        )
    };
    let vars = |text: &str| {
        VarsFile::parse(FileKind::DropIn, text)
            .map(|f| f.vars())
            .map_err(bad)
    };
    let (before, after) = (vars(old)?, vars(new)?);
    let mut body = String::new();
    for (k, v) in &after {
        if !before.iter().any(|(bk, bv)| bk == k && bv == v) {
            let word = format!("{k}={v}")
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            body.push_str(&format!("Environment=\"{word}\"\n"));
        }
    }
    if let Some(exec) = facts.kubelet.exec_start.as_ref().filter(|o| o.file == path) {
        let value = |text: &str| crate::unit::exec_start_value(text, exec.line).map_err(bad);
        let (was, now) = (value(old)?, value(new)?);
        if was != now {
            body.push_str(&format!("ExecStart=\nExecStart={now}\n"));
        }
    }
    // Last among the unit's drop-ins, so that its settings win.
    let names: Vec<String> = facts
        .kubelet_command
        .iter()
        .flat_map(|c| c.dropins.iter())
        .filter_map(|d| d.rsplit('/').next().map(str::to_string))
        .collect();
    let mut name = String::from("99-cri-migrate.conf");
    // A `z` more each round: after a name's length in `z`s, ours sorts after it.
    while names
        .iter()
        .any(|n| *n > name && !n.ends_with("cri-migrate.conf"))
    {
        name.insert(0, 'z');
    }
    let target = format!("/etc/systemd/system/kubelet.service.d/{name}");
    let text = format!("# Written by cri-migrate: the kubelet's flags for its new runtime, over {path}\n# (a package's file, left as it is). The rollback removes this file.\n[Service]\n{body}");
    Ok(change(facts, &target, text, "kubelet flags"))
}

/// The kubelet's flags files and config.yaml, rewritten for its version.
fn kubelet_files(
    facts: &Facts,
    kv: Version,
    target: Target,
    warnings: &mut Vec<Finding>,
) -> Result<Vec<FileChange>, Failure> {
    let endpoint = target.endpoint();
    let k = &facts.kubelet;
    let rules = Rules::for_version(kv, endpoint, k.config.exists);
    let needs_flag = rules.runtime_remote_flag || !rules.endpoint_in_config;
    let owner = runtime_flags_owner(k).filter(|_| needs_flag);
    if needs_flag && owner.is_none() {
        return Err(Failure::preflight(
            format!("kubelet {kv} takes its runtime endpoint as a flag, but the node has no kubelet unit and no kubelet flags file ({KUBEADM_FLAGS}, {})", EXTRA_ARGS_FILES.join(", ")),
            "Create /etc/default/kubelet (or /etc/sysconfig/kubelet) with KUBELET_EXTRA_ARGS=\"\" and make the kubelet unit read it with EnvironmentFile=, then run cri-migrate again.",
        ));
    }
    // Each file's new text, edit after edit (a unit file may hold both an Environment= of
    // flags and the ExecStart= line), in the order first met.
    let mut edited: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut sources: Vec<(String, FileKind, Vec<String>)> = k
        .flag_files
        .iter()
        .map(|f| (f.path.clone(), f.kind, f.vars.clone()))
        .collect();
    if let (Some((file, var)), Some(_)) = (&owner, &k.exec_start) {
        if var == EXEC_START && !sources.iter().any(|s| s.1 == FileKind::ExecStart) {
            sources.push((file.clone(), FileKind::ExecStart, vec![EXEC_START.into()]));
        }
    }
    for (path, kind, vars) in &sources {
        let at = match edited.iter().position(|e| e.0 == *path) {
            Some(at) => at,
            None => {
                let old = facts
                    .files
                    .get(path)
                    .map(|s| s.content.clone())
                    .unwrap_or_default();
                edited.push((path.clone(), old, vec![]));
                edited.len() - 1
            }
        };
        let text = &edited[at].1;
        let owner_var = owner
            .as_ref()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.as_str());
        let (new, removed) = match kind {
            FileKind::ExecStart => {
                let line = k.exec_start.as_ref().map(|o| o.line).unwrap_or(0);
                render::kubelet::rewrite_exec_start(
                    text,
                    line,
                    owner_var == Some(EXEC_START),
                    &rules,
                )
            }
            _ => render::kubelet::rewrite_flags_file(
                *kind,
                text,
                vars,
                owner_var.filter(|v| *v != EXEC_START),
                &rules,
            ),
        }
        .map_err(|e| Failure::bad_input(path, e, "Fix the kubelet's flags."))?;
        edited[at].1 = new;
        edited[at].2.extend(removed);
    }
    // The unit's dependencies on Docker's units follow the runtime: a kubelet that Requires=
    // docker.service would start Docker again, and be stopped with it.
    let unit_files: Vec<String> = facts
        .kubelet_command
        .iter()
        .flat_map(|c| c.unit.iter().chain(&c.dropins))
        .cloned()
        .collect();
    let mut deps_changed: Vec<(String, Vec<String>)> = Vec::new();
    for path in &unit_files {
        let Some(snap) = facts.files.get(path) else {
            continue;
        };
        let at = match edited.iter().position(|e| e.0 == *path) {
            Some(at) => at,
            None => {
                edited.push((path.clone(), snap.content.clone(), vec![]));
                edited.len() - 1
            }
        };
        let (new, said) = crate::unit::replace_dependencies(
            &edited[at].1,
            &crate::runtime::DOCKER_UNITS,
            target.unit(),
        );
        if !said.is_empty() {
            edited[at].1 = new;
            deps_changed.push((path.clone(), said));
        }
    }
    let mut out = Vec::new();
    for (path, new, removed) in edited {
        let Some(old) = facts.files.get(&path) else {
            continue;
        };
        if new == old.content {
            continue;
        }
        let deps = deps_changed
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| s);
        let mut why = String::from(if removed.is_empty() && deps.is_none() {
            "kubelet flags for its version"
        } else {
            "kubelet"
        });
        if !removed.is_empty() {
            why.push_str(&format!(
                " flags for its version; removes {}",
                removed.join(" ")
            ));
        }
        if let Some(deps) = deps {
            why.push_str(&format!("; {}", deps.join(", ")));
        }
        if vendor_unit_file(&path) && deps.is_some() {
            // systemd.unit(5): dependencies cannot be reset by a drop-in; the whole file is
            // overridden by a copy in /etc/systemd/system (a drop-in by one of the same name).
            let name = path.rsplit('/').next().unwrap_or_default();
            let copy = match path.rsplit_once("/kubelet.service.d/") {
                Some(_) => format!("/etc/systemd/system/kubelet.service.d/{name}"),
                None => format!("/etc/systemd/system/{name}"),
            };
            warnings.push(Finding::info(
                "kubelet-unit-overridden",
                format!("{path} belongs to a package and its dependencies on Docker change, which only a whole copy can do: {copy} overrides it"),
                format!("after a package upgrade of the kubelet, compare {copy} with {path}"),
            ));
            let mut c = change(facts, &copy, new, &format!("{why} (a copy of {path})"));
            c.mode = old.mode;
            out.push(c);
            continue;
        }
        if vendor_unit_file(&path) {
            let drop_in = override_drop_in(facts, &path, &old.content, &new)?;
            warnings.push(Finding::info(
                "kubelet-unit-overridden",
                format!("{path} belongs to a package: its changed kubelet flags go to {} (a package upgrade keeps them)", drop_in.path),
                "systemd reloads its units",
            ));
            out.push(FileChange {
                why: format!("{why} (overrides {path})"),
                ..drop_in
            });
            continue;
        }
        if path.contains("/systemd/") {
            warnings.push(Finding::info(
                "kubelet-drop-in-edited",
                format!("{path} sets kubelet flags that go; it is edited"),
                "systemd reloads its units",
            ));
        }
        out.push(change(facts, &path, new, &why));
    }
    if rules.endpoint_in_config {
        let path = &k.config.path;
        let old = &facts.files[path].content;
        let new = render::kubelet::rewrite_config(old, &rules)
            .map_err(|e| Failure::bad_input(path, e, "Fix the KubeletConfiguration file."))?;
        out.push(change(
            facts,
            path,
            new,
            "containerRuntimeEndpoint (a KubeletConfiguration field from 1.27)",
        ));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn actions(
    facts: &Facts,
    target: Target,
    from: RuntimeKind,
    files: &[FileChange],
    settings: &Carried,
    rv: Version,
    timeout: u64,
    order: &Order,
) -> Vec<Action> {
    let unit = |u: &str| u.to_string();
    let mut docker_units: Vec<&str> = Vec::new();
    if from.is_docker() && from != kind_of(target) {
        if from == RuntimeKind::CriDockerd {
            docker_units.extend(
                ["cri-docker.socket", "cri-docker.service"]
                    .iter()
                    .filter(|u| facts.runtimes.cri_dockerd.units.iter().any(|x| x == *u)),
            );
        }
        // The socket first, or socket activation starts Docker again.
        let present = |u: &str| facts.runtimes.docker.units.iter().any(|x| x == u);
        if present("docker.socket") {
            docker_units.push("docker.socket");
        }
        if present("docker.service") || facts.runtimes.docker.installed {
            docker_units.push("docker.service");
        }
    }
    let mut stops: Vec<Action> = std::iter::once("kubelet.service")
        .chain(docker_units.iter().copied())
        .map(|u| Action::Stop { unit: unit(u) })
        .collect();
    // Once Docker is down its pods are gone, and nothing else frees their addresses.
    if !docker_units.is_empty() && !facts.leftovers.ipam_reservations.is_empty() {
        stops.push(Action::ReleaseAddresses {
            reservations: facts
                .leftovers
                .ipam_reservations
                .iter()
                .map(|r| (r.path.clone(), r.container.clone()))
                .collect(),
        });
    }
    let reload = |group: FileGroup| {
        files
            .iter()
            .any(|f| f.unit_file && group.holds(&f.path))
            .then_some(Action::DaemonReload)
    };
    let image = settings
        .sandbox_image
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(|| default_pause(target, rv));
    // Version, pull, test pod: everything the kubelet will ask of the runtime.
    let checks = vec![
        Action::Restart {
            unit: unit(target.unit()),
        },
        Action::WaitForSocket {
            endpoint: target.endpoint().into(),
            timeout_secs: timeout,
        },
        Action::VerifyPull {
            endpoint: target.endpoint().into(),
            image: image.clone(),
        },
        Action::CheckSandbox {
            endpoint: target.endpoint().into(),
            image,
            cgroup_driver: crate::cri::sandbox::CgroupDriver::of_kubelet(
                facts.kubelet.cgroup_driver.as_deref(),
            )
            .name()
            .into(),
            cluster_dns: facts.kubelet.cluster_dns.clone(),
            cluster_domain: facts.kubelet.cluster_domain.clone(),
        },
    ];
    let start_kubelet = Action::Start {
        unit: unit("kubelet.service"),
    };
    let wait_kubelet = Action::WaitActive {
        unit: unit("kubelet.service"),
        timeout_secs: timeout * 2,
    };
    let mut a = Vec::new();
    if order.check_before_cutover {
        // The runtime first, checked while the kubelet still runs on Docker; only then the
        // cutover, which then holds no more than the kubelet's restart on the new socket.
        a.push(Action::WriteFiles {
            group: FileGroup::Runtime,
        });
        a.extend(reload(FileGroup::Runtime));
        a.extend(checks);
        a.extend(stops);
        a.push(Action::WriteFiles {
            group: FileGroup::Kubelet,
        });
        a.extend(reload(FileGroup::Kubelet));
        a.push(start_kubelet);
        a.push(Action::CheckRuntime {
            endpoint: target.endpoint().into(),
        });
        a.push(wait_kubelet);
    } else {
        // Files change once the kubelet (and Docker) are stopped, so that a kubelet restarting
        // on its own in between never starts on half a migration.
        a.extend(stops);
        a.push(Action::WriteFiles {
            group: FileGroup::All,
        });
        a.extend(reload(FileGroup::All));
        a.extend(checks);
        a.push(start_kubelet);
        a.push(wait_kubelet);
    }
    // What the next boot starts changes once the kubelet is back.
    a.extend(
        docker_units
            .iter()
            .map(|u| Action::Disable { unit: unit(u) }),
    );
    a.push(Action::Enable {
        unit: unit(target.unit()),
    });
    a
}
