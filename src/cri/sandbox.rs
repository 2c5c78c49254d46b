//! A test pod the way the kubelet runs one: `RunPodSandbox` with the kubelet's cgroup parent,
//! DNS and network mode, a container of the test image started and stopped in it, then
//! everything removed (the CNI address released by `StopPodSandbox`). It proves what a pull
//! cannot: the cgroup driver, the CNI plugin directory and config, the sandbox image.

use anyhow::{anyhow, Result};
use k8s_cri::v1::{
    security_profile::ProfileType, ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SecurityProfile,
};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A label every object of the check carries (its pod UID), beside the kubelet's own labels.
pub const CHECK_LABEL: &str = "io.cri-migrate.check";
pub const POD_NAME: &str = "cri-migrate-check";
pub const POD_NAMESPACE: &str = "cri-migrate";
const CONTAINER_NAME: &str = "check";

/// The low-level CRI calls the check makes; the real client and the tests' fakes implement it.
pub trait PodRuntime {
    /// CRI `RuntimeConfig`: the runtime's cgroup driver ("systemd"/"cgroupfs"); `None` where the
    /// runtime does not implement the call (containerd 1.6, older CRI-O).
    fn cgroup_driver(&self) -> Result<Option<String>>;
    /// `handler`: the runtime handler (a RuntimeClass's), empty for the runtime's default.
    fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> Result<String>;
    /// `PodSandboxStatus` with verbose: the runtime's `info` map.
    fn pod_sandbox_info(&self, id: &str) -> Result<HashMap<String, String>>;
    fn create_container(
        &self,
        pod: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String>;
    fn start_container(&self, id: &str) -> Result<()>;
    fn container_state(&self, id: &str) -> Result<ContainerState>;
    fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()>;
    fn remove_container(&self, id: &str) -> Result<()>;
    fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    /// Sandboxes carrying `label=value`.
    fn pod_sandboxes_labelled(&self, label: &str, value: &str) -> Result<Vec<String>>;
    /// Of those, the ready ones (the kubelet starts a pod again when its sandbox is not ready).
    fn ready_pod_sandboxes_labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        self.pod_sandboxes_labelled(label, value)
    }
    /// Sandboxes created at or after `since` (Unix nanoseconds): the pods a kubelet ran on this
    /// runtime during a migration, which a rollback removes.
    fn pod_sandboxes_since(&self, _since_unix_nanos: i64) -> Result<Vec<String>> {
        Ok(vec![])
    }
    /// Remove the pod-level cgroup a cgroupfs runtime made for the test pod (the kubelet removes
    /// its pods' cgroups itself; the runtime removes only the containers'). Best effort.
    fn remove_pod_cgroup(&self, _parent: &str) {}
    /// Make the pod's log directory and its container's, as the kubelet does before it asks
    /// for them (CRI-O's conmon does not create them: without them the container is refused).
    fn make_log_dirs(&self, _pod_dir: &str, _container: &str) -> Result<()> {
        Ok(())
    }
    /// Remove the pod's log directory, as the kubelet's garbage collection does.
    fn remove_log_dir(&self, _pod_dir: &str) {}
}

/// `rmdir` the pod's cgroup in every hierarchy mounted under /sys/fs/cgroup (cgroup v1
/// controllers, the hybrid `unified` one, or cgroup v2 itself). rmdir only takes an empty
/// cgroup, so nothing still running is touched.
pub fn remove_pod_cgroup_dirs(sys_fs_cgroup: &std::path::Path, parent: &str) {
    let rel = parent.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") || !rel.starts_with("kubepods/") {
        return;
    }
    let mut roots = vec![sys_fs_cgroup.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(sys_fs_cgroup) {
        roots.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    for r in roots {
        let _ = std::fs::remove_dir(r.join(rel));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerState {
    /// CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, CONTAINER_UNKNOWN
    pub state: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

impl CgroupDriver {
    /// The kubelet's driver: its flag or config, else its default (cgroupfs).
    pub fn of_kubelet(value: Option<&str>) -> CgroupDriver {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("systemd") => CgroupDriver::Systemd,
            _ => CgroupDriver::Cgroupfs,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        }
    }
}

/// Where the kubelet puts a BestEffort pod: `kubepods-besteffort-pod<uid>.slice` (systemd) or
/// `/kubepods/besteffort/pod<uid>` (cgroupfs).
pub fn cgroup_parent(driver: CgroupDriver, uid: &str) -> String {
    match driver {
        CgroupDriver::Systemd => format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_")),
        CgroupDriver::Cgroupfs => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// DNS as the kubelet sets it for a pod-network pod of `namespace` with `dnsPolicy:
/// ClusterFirst`; none without cluster DNS servers.
pub fn cluster_first_dns(
    servers: &[String],
    domain: Option<&str>,
    namespace: &str,
) -> Option<DnsConfig> {
    if servers.is_empty() {
        return None;
    }
    Some(DnsConfig {
        servers: servers.to_vec(),
        searches: domain
            .map(|d| {
                vec![
                    format!("{namespace}.svc.{d}"),
                    format!("svc.{d}"),
                    d.to_string(),
                ]
            })
            .unwrap_or_default(),
        options: vec!["ndots:5".into()],
    })
}

/// What the test pod looks like; built from the node's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxSpec {
    pub uid: String,
    pub cgroup_driver: CgroupDriver,
    /// Attach the pod network through CNI; false: a host-network sandbox.
    pub pod_network: bool,
    /// The kubelet's clusterDNS and clusterDomain (ClusterFirst), when it has them.
    pub cluster_dns: Vec<String>,
    pub cluster_domain: Option<String>,
    /// The image of the test container (the sandbox image is the runtime's own setting).
    pub image: String,
    /// The runtime handler the pod runs on (a RuntimeClass's handler); empty: the default.
    pub runtime_handler: String,
}

impl SandboxSpec {
    /// `kubepods-besteffort-pod<uid>.slice` (systemd) or `/kubepods/besteffort/pod<uid>`
    /// (cgroupfs): where the kubelet puts a BestEffort pod.
    pub fn cgroup_parent(&self) -> String {
        cgroup_parent(self.cgroup_driver, &self.uid)
    }

    pub fn log_directory(&self) -> String {
        format!("/var/log/pods/{POD_NAMESPACE}_{POD_NAME}_{}", self.uid)
    }

    fn labels(&self) -> HashMap<String, String> {
        [
            ("io.kubernetes.pod.name", POD_NAME),
            ("io.kubernetes.pod.namespace", POD_NAMESPACE),
            ("io.kubernetes.pod.uid", self.uid.as_str()),
            (CHECK_LABEL, self.uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// DNS as the kubelet sets it for `dnsPolicy: ClusterFirst`; none for a host-network pod
    /// (the runtime gives it the node's resolv.conf, as the kubelet's `Default` policy does).
    fn dns(&self) -> Option<DnsConfig> {
        self.pod_network
            .then(|| {
                cluster_first_dns(
                    &self.cluster_dns,
                    self.cluster_domain.as_deref(),
                    POD_NAMESPACE,
                )
            })
            .flatten()
    }

    /// The pod's namespaces as the kubelet derives them (`namespacesForPod`): network from
    /// hostNetwork, a PID namespace per container (no shareProcessNamespace), IPC the pod's.
    /// The same options go on the sandbox and on each container: CRI-O (with `drop_infra_ctr`,
    /// its default) refuses a container that asks for the pod's PID namespace when the sandbox
    /// has none.
    fn namespace_options(&self) -> NamespaceOption {
        let network = if self.pod_network {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Node
        };
        NamespaceOption {
            network: network as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }

    pub fn sandbox_config(&self) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: POD_NAME.into(),
                uid: self.uid.clone(),
                namespace: POD_NAMESPACE.into(),
                attempt: 0,
            }),
            // The kubelet names a pod-network pod's host after the pod; a host-network pod keeps
            // the node's name (left empty, the runtime gives it the host's).
            hostname: if self.pod_network {
                POD_NAME.into()
            } else {
                String::new()
            },
            log_directory: self.log_directory(),
            dns_config: self.dns(),
            labels: self.labels(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespace_options()),
                    // The kubelet's default (no seccompDefault): unconfined.
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The test container as the kubelet makes a BestEffort pod's container
    /// (`generateContainerConfig`): the image with the name the user gave
    /// (`user_specified_image`, which CRI-O 1.3x needs to check signatures; its
    /// `runtime_handler` stays empty, as the kubelet leaves it without the alpha
    /// RuntimeClassInImageCriApi gate), the log path under the pod's log directory, the pod's
    /// namespaces, the default masked and read-only paths, seccomp unconfined, and a BestEffort
    /// pod's resources (2 CPU shares, oom_score_adj 1000).
    pub fn container_config(&self) -> ContainerConfig {
        let mut labels = self.labels();
        labels.insert("io.kubernetes.container.name".into(), CONTAINER_NAME.into());
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: CONTAINER_NAME.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                user_specified_image: self.image.clone(),
                ..Default::default()
            }),
            log_path: format!("{CONTAINER_NAME}/0.log"),
            labels,
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_shares: 2,
                    cpu_period: 100_000,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(self.namespace_options()),
                    masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

fn unconfined() -> SecurityProfile {
    SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        ..Default::default()
    }
}

/// The kubelet's default masked and read-only paths (`securitycontext`'s defaults for the
/// Default procMount).
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What went wrong, by what an operator must look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    CgroupDriver,
    CniPlugin,
    CniConfig,
    SandboxImage,
    TestImage,
    /// A limit the node does not let the runtime set: a nested node without CAP_SYS_RESOURCE
    /// (oom_score_adj below the runtime's, an rlimit above the node's hard limit).
    Capability,
    Runtime,
}

impl Cause {
    /// What it usually means, and the fix.
    pub fn hint(self) -> &'static str {
        match self {
            Cause::CgroupDriver => "the runtime's cgroup driver does not match the kubelet's: pods would restart forever. Set containerd's SystemdCgroup (runc options) or CRI-O's cgroup_manager to the kubelet's cgroupDriver, or change the kubelet's",
            Cause::CniPlugin => "a CNI plugin named in the CNI config is not in the runtime's CNI plugin directory: every pod would fail to start. Point the runtime's CNI bin dir (containerd: cni bin_dir/bin_dirs; CRI-O: plugin_dirs) at the directory that holds the plugins, usually /opt/cni/bin",
            Cause::CniConfig => "the runtime cannot use the CNI configuration: check the config directory it reads (containerd: cni conf_dir; CRI-O: network_dir) and the files in it",
            Cause::SandboxImage => "the sandbox (pause) image cannot be pulled or cannot run: check the runtime's sandbox image setting (containerd: sandbox_image / pinned_images.sandbox; CRI-O: pause_image), that the node can pull it, and the runtime's log",
            Cause::TestImage => "the test container did not run: check the test image",
            Cause::Capability => "the runtime was refused a limit this node does not allow: a node without CAP_SYS_RESOURCE in its bounding set (a nested container: LXC/LXD, Proxmox) cannot set a pod's oom_score_adj below the runtime's own (containerd: restrict_oom_score_adj = true, which cri-migrate sets where it finds the capability missing) nor raise an rlimit above its own hard limit (lower Docker's default-ulimits, or raise the node's limit from outside it)",
            Cause::Runtime => "the runtime refused or could not run the pod as the kubelet would ask for it (the message is the runtime's own): see its log (journalctl -u the runtime's unit)",
        }
    }
}

/// Read a CRI error as a cause. The texts are containerd's, CRI-O's, runc's and libcni's own.
pub fn classify(stage: Stage, message: &str) -> Cause {
    let m = message.to_ascii_lowercase();
    if m.contains("oom_score_adj")
        || (m.contains("setrlimit") && (m.contains("not permitted") || m.contains("permission")))
    {
        Cause::Capability
    } else if m.contains("failed to find plugin")
        || (m.contains("executable file not found") && m.contains("cni"))
    {
        Cause::CniPlugin
    } else if m.contains("cgroupspath")
        || (m.contains("cgroup") && (m.contains("systemd") || m.contains(".slice")))
    {
        Cause::CgroupDriver
    } else if m.contains("cni") || m.contains("network for sandbox") || m.contains("plugin type") {
        Cause::CniConfig
    } else if stage == Stage::RunPodSandbox {
        // What RunPodSandbox starts is the sandbox image; the rest was ruled out above.
        Cause::SandboxImage
    } else if matches!(
        stage,
        Stage::CreateContainer | Stage::StartContainer | Stage::ContainerExited
    ) && (stage == Stage::ContainerExited || about_the_image(&m))
    {
        Cause::TestImage
    } else {
        Cause::Runtime
    }
}

/// Whether a runtime's refusal of a container is about its image (not found, not pullable,
/// no such program in it) rather than about how the pod was asked for.
fn about_the_image(m: &str) -> bool {
    // CRI-O 1.3x's refusal of a container without the kubelet's user_specified_image is about
    // the request.
    (m.contains("image") && !m.contains("user specified image"))
        || m.contains("manifest")
        || m.contains("executable file not found")
        || m.contains("exec format error")
        || (m.contains("exec") && m.contains("no such file"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    RuntimeConfig,
    RunPodSandbox,
    Placement,
    CreateContainer,
    StartContainer,
    ContainerExited,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::RuntimeConfig => "RuntimeConfig",
            Stage::RunPodSandbox => "RunPodSandbox",
            Stage::Placement => "the sandbox's cgroup",
            Stage::CreateContainer => "CreateContainer",
            Stage::StartContainer => "StartContainer",
            Stage::ContainerExited => "the test container",
        }
    }
}

/// A failed check, typed so the migration can say what it means.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxFailure {
    pub stage: Stage,
    pub cause: Cause,
    pub message: String,
    /// Objects the cleanup could not remove (named, so a person can).
    pub leftovers: Vec<String>,
}

impl std::fmt::Display for SandboxFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the test pod failed at {}: {} — likely cause: {}",
            self.stage.name(),
            self.message,
            self.cause.hint()
        )?;
        if !self.leftovers.is_empty() {
            write!(
                f,
                " (left in the runtime: {}. A runtime that cannot tear down a pod's network keeps it; the next check removes it once the cause is fixed, or `crictl rmp -f ID`)",
                self.leftovers.join(", ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for SandboxFailure {}

/// The key under which [`PodRuntime::pod_sandbox_info`] gives the pod's address.
pub const POD_IP_KEY: &str = "cri-migrate.pod-ip";

#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    pub cgroup_driver: CgroupDriver,
    pub cgroup_parent: String,
    /// How the cgroup driver was checked: "RuntimeConfig", "runtime spec", or "not checked".
    pub driver_checked_by: String,
    pub network: String,
    /// Why the sandbox ran on the host network, when it did.
    pub network_note: Option<String>,
    pub image: String,
    pub container_state: String,
    pub duration_ms: u64,
    /// The handler the pod ran on ("the default" when none was asked), and what the runtime
    /// says ran it (containerd: its runtime type and BinaryName).
    #[serde(default)]
    pub runtime_handler: String,
    /// Test pods an earlier attempt left (their network could not be torn down) that could not
    /// be removed now either: said, never in this check's way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_leftovers: Vec<String>,
}

/// Whether a runtime spec's `linux.cgroupsPath` is shaped for `driver`: runc's systemd driver
/// takes `slice:prefix:name`, its cgroupfs driver a path.
pub fn cgroups_path_driver(path: &str) -> CgroupDriver {
    if path.split(':').count() == 3 && !path.contains('/') {
        CgroupDriver::Systemd
    } else {
        CgroupDriver::Cgroupfs
    }
}

/// The driver a sandbox actually got, from its verbose info. containerd says which runc options
/// ran it (`runtimeOptions.systemd_cgroup`, absent when false): its OCI spec's cgroupsPath alone
/// does not tell, as containerd shapes that path by the parent's name (`.slice` or not) whatever
/// runc's driver. CRI-O shapes the path by its own `cgroup_manager`, so there the path tells.
/// None where the runtime does not say.
pub fn driver_from_info(info: &HashMap<String, String>) -> Option<(CgroupDriver, String)> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let runtime_type = v.get("runtimeType").and_then(|t| t.as_str());
    if let Some(rt) = runtime_type {
        if !rt.starts_with("io.containerd.runc.") {
            return None; // another OCI runtime (kata, gVisor...): its options are its own
        }
        let opts = v.get("runtimeOptions").filter(|o| o.is_object())?;
        let systemd = opts
            .get("systemd_cgroup")
            .or_else(|| opts.get("SystemdCgroup"))
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
        let d = if systemd {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        };
        return Some((d, format!("runc options of {rt}: SystemdCgroup={systemd}")));
    }
    let path = v
        .pointer("/runtimeSpec/linux/cgroupsPath")
        .and_then(|p| p.as_str())?;
    Some((cgroups_path_driver(path), format!("cgroupsPath {path}")))
}

/// The check as the kubelet would give the pod: its cgroup driver (the kubelet's flag or
/// config, else its default), its cluster DNS, and the pod network where the runtime reports
/// CNI config ready in `conditions` (CRI Status); else the host network, said in the report.
pub fn check_as_kubelet(
    rt: &dyn PodRuntime,
    conditions: &[super::Condition],
    kubelet_driver: Option<&str>,
    cluster_dns: &[String],
    cluster_domain: Option<&str>,
    image: &str,
    runtime_handler: Option<&str>,
) -> Result<SandboxReport> {
    let (pod_network, note) = network_mode(conditions);
    let spec = SandboxSpec {
        uid: new_uid()?,
        cgroup_driver: CgroupDriver::of_kubelet(kubelet_driver),
        pod_network,
        cluster_dns: cluster_dns.to_vec(),
        cluster_domain: cluster_domain.map(str::to_string),
        image: image.to_string(),
        runtime_handler: runtime_handler.unwrap_or_default().to_string(),
    };
    let mut r = check(rt, &spec)?;
    r.network_note = note;
    Ok(r)
}

/// Run the check; whatever happens, remove what it created.
pub fn check(rt: &dyn PodRuntime, spec: &SandboxSpec) -> Result<SandboxReport, SandboxFailure> {
    let start = Instant::now();
    // What an earlier attempt left goes first; what cannot go is said, not in the way: this
    // check's pod has its own UID.
    let earlier = clean_up_objects(rt, None, None);
    let mut pod: Option<String> = None;
    let mut container: Option<String> = None;
    let result = run(rt, spec, &mut pod, &mut container);
    let leftovers = clean_up(rt, spec, pod.as_deref(), container.as_deref());
    let leftovers: Vec<String> = leftovers
        .into_iter()
        .filter(|l| !earlier.contains(l))
        .collect();
    match result {
        Ok(mut r) => {
            r.earlier_leftovers = earlier;
            if !leftovers.is_empty() {
                return Err(SandboxFailure {
                    stage: Stage::ContainerExited,
                    cause: Cause::Runtime,
                    message: "the test pod ran, but could not be removed".into(),
                    leftovers,
                });
            }
            r.duration_ms = start.elapsed().as_millis() as u64;
            Ok(r)
        }
        Err(mut f) => {
            f.leftovers = leftovers;
            Err(f)
        }
    }
}

fn fail(stage: Stage, e: impl std::fmt::Display) -> SandboxFailure {
    let mut message = format!("{e:#}");
    let mut cause = classify(stage, &message);
    // runc's init dying before it reports (dockershim's sandbox asks for oom_score_adj -998,
    // which it cannot set without CAP_SYS_RESOURCE): the runtime's message hides why, the
    // node's bounding set tells.
    if message.contains("final child's PID from pipe") && cap_sys_resource() == Some(false) {
        cause = Cause::Capability;
    }
    if cause == Cause::Capability {
        // The real reason the runtime's message hides: what this node's processes may do.
        message.push_str(match cap_sys_resource() {
            Some(false) => " [this node's bounding set lacks CAP_SYS_RESOURCE (CapBnd in /proc/self/status): a nested container]",
            Some(true) => " [this node's bounding set holds CAP_SYS_RESOURCE: look at the runtime's own limits (its unit's LimitNOFILE)]",
            None => "",
        });
    }
    SandboxFailure {
        stage,
        cause,
        message,
        leftovers: vec![],
    }
}

/// Whether CAP_SYS_RESOURCE is in this process's bounding set (`CapBnd` of /proc/self/status):
/// without it (a nested container) runc cannot lower oom_score_adj nor raise a hard rlimit.
pub fn cap_sys_resource() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))?
        .trim();
    let bits = u64::from_str_radix(hex, 16).ok()?;
    Some(bits & (1 << 24) != 0)
}

fn mismatch(spec: &SandboxSpec, runtime: CgroupDriver, how: &str) -> SandboxFailure {
    SandboxFailure {
        stage: Stage::Placement,
        cause: Cause::CgroupDriver,
        message: format!(
            "the kubelet uses the {} cgroup driver, the runtime {} ({how})",
            spec.cgroup_driver.name(),
            runtime.name()
        ),
        leftovers: vec![],
    }
}

fn run(
    rt: &dyn PodRuntime,
    spec: &SandboxSpec,
    pod: &mut Option<String>,
    container: &mut Option<String>,
) -> Result<SandboxReport, SandboxFailure> {
    let mut checked_by = "not checked (the runtime does not say)".to_string();
    match rt.cgroup_driver() {
        Ok(Some(d)) => {
            let runtime = CgroupDriver::of_kubelet(Some(&d));
            if runtime != spec.cgroup_driver {
                return Err(mismatch(spec, runtime, "CRI RuntimeConfig"));
            }
            checked_by = "CRI RuntimeConfig".into();
        }
        Ok(None) => {}
        Err(e) => return Err(fail(Stage::RuntimeConfig, e)),
    }
    let sandbox = spec.sandbox_config();
    rt.make_log_dirs(&spec.log_directory(), CONTAINER_NAME)
        .map_err(|e| fail(Stage::RunPodSandbox, e))?;
    let id = rt
        .run_pod_sandbox(&sandbox, &spec.runtime_handler)
        .map_err(|e| fail(Stage::RunPodSandbox, e))?;
    *pod = Some(id.clone());
    let info = rt.pod_sandbox_info(&id).ok();
    let pod_ip = info.as_ref().and_then(|i| i.get(POD_IP_KEY).cloned());
    if checked_by.starts_with("not") {
        if let Some((runtime, path)) = info.as_ref().and_then(driver_from_info) {
            if runtime != spec.cgroup_driver {
                return Err(mismatch(
                    spec,
                    runtime,
                    &format!("the sandbox ran with {path}"),
                ));
            }
            checked_by = format!("the sandbox's status ({path})");
        }
    }
    let cid = rt
        .create_container(&id, &spec.container_config(), &sandbox)
        .map_err(|e| fail(Stage::CreateContainer, e))?;
    *container = Some(cid.clone());
    rt.start_container(&cid)
        .map_err(|e| fail(Stage::StartContainer, e))?;
    let state = rt
        .container_state(&cid)
        .map_err(|e| fail(Stage::ContainerExited, e))?;
    // Running (a pause-like image) or done with 0 (a shell with nothing to do) both prove it ran.
    if state.state == "CONTAINER_EXITED" && state.exit_code != 0 {
        return Err(fail(
            Stage::ContainerExited,
            format!(
                "exited with code {} ({} {})",
                state.exit_code, state.reason, state.message
            ),
        ));
    }
    Ok(SandboxReport {
        cgroup_driver: spec.cgroup_driver,
        cgroup_parent: spec.cgroup_parent(),
        driver_checked_by: checked_by,
        network: if spec.pod_network {
            match &pod_ip {
                Some(ip) => format!("pod network (CNI), address {ip}"),
                None => "pod network (CNI)".into(),
            }
        } else {
            "host network".into()
        },
        network_note: None,
        image: spec.image.clone(),
        container_state: state.state,
        duration_ms: 0,
        runtime_handler: ran_by(&spec.runtime_handler, info.as_ref()),
        earlier_leftovers: vec![],
    })
}

/// The handler a pod ran on, with what containerd says ran it (`runtimeType`, and for the runc
/// shim its `BinaryName`): "crun (io.containerd.runc.v2, /usr/bin/crun)".
pub fn ran_by(handler: &str, info: Option<&HashMap<String, String>>) -> String {
    let name = if handler.is_empty() {
        "the default handler"
    } else {
        handler
    };
    let v: Option<serde_json::Value> = info
        .and_then(|i| i.get("info"))
        .and_then(|t| serde_json::from_str(t).ok());
    let Some(v) = v else {
        return name.to_string();
    };
    let mut said = vec![];
    if let Some(h) = v
        .get("runtimeHandler")
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
    {
        if handler.is_empty() {
            said.push(format!("handler {h}"));
        }
    }
    if let Some(t) = v.get("runtimeType").and_then(|t| t.as_str()) {
        said.push(t.to_string());
    }
    if let Some(b) = v
        .get("runtimeOptions")
        .and_then(|o| o.get("binary_name").or_else(|| o.get("BinaryName")))
        .and_then(|b| b.as_str())
        .filter(|b| !b.is_empty())
    {
        said.push(b.to_string());
    }
    if said.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", said.join(", "))
    }
}

/// Stop and remove the container and the sandbox (the sandbox's stop releases its CNI address),
/// then any sandbox left with this check's label. Returns what could not be removed.
fn clean_up(
    rt: &dyn PodRuntime,
    spec: &SandboxSpec,
    pod: Option<&str>,
    container: Option<&str>,
) -> Vec<String> {
    let left = clean_up_objects(rt, pod, container);
    if spec.cgroup_driver == CgroupDriver::Cgroupfs && pod.is_some() {
        rt.remove_pod_cgroup(&spec.cgroup_parent());
    }
    rt.remove_log_dir(&spec.log_directory());
    left
}

/// How long the test container may take to be seen stopped before it is left behind.
const REMOVE_BOUND: Duration = Duration::from_secs(30);

/// Stop the test container with no grace (it has nothing to save, and an image whose PID 1 has
/// no SIGTERM handler would hold the check for the whole period), then remove it. A runtime
/// that has not yet seen the kill take effect when its stop returns (containerd waits a fixed
/// time for its event monitor, which lags on a busy node) refuses the removal while the
/// container still runs: asked again until it is seen stopped, within `bound`. So is a removal
/// refused as "still running" of a container whose status already says exited (a container that
/// exited by itself as it was stopped: containerd 2.1 then fails the stop, `ttrpc: closed`, and
/// refuses the removal until its exit event is handled a moment later).
fn remove_container(rt: &dyn PodRuntime, c: &str, bound: Duration) -> Result<()> {
    let deadline = Instant::now() + bound;
    loop {
        let stopped = rt.stop_container(c, 0);
        let removed = rt.remove_container(c);
        let Err(e) = removed else {
            return Ok(());
        };
        let running = rt
            .container_state(c)
            .is_ok_and(|s| s.state == "CONTAINER_RUNNING")
            || format!("{e:#}").contains("still running");
        if !running || Instant::now() >= deadline {
            return Err(match stopped {
                Err(s) => e.context(format!("{s:#}")),
                Ok(()) => e,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn clean_up_objects(
    rt: &dyn PodRuntime,
    pod: Option<&str>,
    container: Option<&str>,
) -> Vec<String> {
    let mut left = Vec::new();
    if let Some(c) = container {
        if let Err(e) = remove_container(rt, c, REMOVE_BOUND) {
            left.push(format!("container {c} ({e:#})"));
        }
    }
    let mut pods: Vec<String> = pod.map(|p| vec![p.to_string()]).unwrap_or_default();
    // Every sandbox of the namespace is a check's: one an earlier check could not remove (its
    // network could not be torn down) goes now, once the cause is fixed.
    if let Ok(found) = rt.pod_sandboxes_labelled("io.kubernetes.pod.namespace", POD_NAMESPACE) {
        for p in found {
            if !pods.contains(&p) {
                pods.push(p);
            }
        }
    }
    for p in pods {
        let stopped = rt.stop_pod_sandbox(&p);
        if let Err(e) = rt.remove_pod_sandbox(&p) {
            let why = match stopped {
                Err(s) => format!("{s:#}; {e:#}"),
                Ok(()) => format!("{e:#}"),
            };
            left.push(format!("pod sandbox {p} ({why})"));
        }
    }
    left
}

/// A fresh pod UID (random, as the API server gives them).
pub fn new_uid() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| anyhow!("cannot read /dev/urandom: {e}"))
}

/// A sandbox on the pod network needs CNI config the runtime has found; the runtime's
/// `NetworkReady` condition says whether it has. The note says why the host network was used.
pub fn network_mode(conditions: &[super::Condition]) -> (bool, Option<String>) {
    match conditions.iter().find(|c| c.kind == "NetworkReady") {
        Some(c) if c.status => (true, None),
        Some(c) => (
            false,
            Some(format!(
                "the runtime reports no usable CNI config yet (NetworkReady false: {} {}); the test pod ran on the host network, so the CNI plugins were not exercised",
                c.reason, c.message
            )),
        ),
        None => (
            false,
            Some("the runtime does not report NetworkReady; the test pod ran on the host network".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn spec(driver: CgroupDriver, pod_network: bool) -> SandboxSpec {
        SandboxSpec {
            uid: "0b5e7a52-1c3d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            cgroup_driver: driver,
            pod_network,
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: Some("cluster.local".into()),
            image: "registry.k8s.io/pause:3.10".into(),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn cgroup_parent_is_shaped_as_the_kubelet_makes_it() {
        assert_eq!(
            spec(CgroupDriver::Systemd, true).cgroup_parent(),
            "kubepods-besteffort-pod0b5e7a52_1c3d_4e5f_8a9b_0c1d2e3f4a5b.slice"
        );
        assert_eq!(
            spec(CgroupDriver::Cgroupfs, true).cgroup_parent(),
            "/kubepods/besteffort/pod0b5e7a52-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
        );
        assert_eq!(CgroupDriver::of_kubelet(None), CgroupDriver::Cgroupfs);
        assert_eq!(
            CgroupDriver::of_kubelet(Some("systemd")),
            CgroupDriver::Systemd
        );
        assert_eq!(
            CgroupDriver::of_kubelet(Some(" Systemd ")),
            CgroupDriver::Systemd
        );
    }

    #[test]
    fn sandbox_request_has_kubelet_labels_dns_and_namespaces() {
        let s = spec(CgroupDriver::Systemd, true);
        let c = s.sandbox_config();
        let m = c.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str()),
            (POD_NAME, POD_NAMESPACE)
        );
        assert_eq!(m.uid, s.uid);
        assert_eq!(c.labels["io.kubernetes.pod.uid"], s.uid);
        assert_eq!(c.labels["io.kubernetes.pod.name"], POD_NAME);
        assert_eq!(c.labels[CHECK_LABEL], s.uid);
        assert_eq!(c.hostname, POD_NAME);
        assert_eq!(
            c.log_directory,
            format!("/var/log/pods/cri-migrate_cri-migrate-check_{}", s.uid)
        );
        let dns = c.dns_config.unwrap();
        assert_eq!(dns.servers, vec!["10.96.0.10"]);
        assert_eq!(
            dns.searches,
            vec![
                "cri-migrate.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(dns.options, vec!["ndots:5"]);
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, s.cgroup_parent());
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);

        let cc = s.container_config();
        assert_eq!(cc.image.unwrap().image, s.image);
        assert_eq!(cc.log_path, "check/0.log");
        assert_eq!(cc.labels["io.kubernetes.container.name"], "check");
        assert_eq!(cc.labels[CHECK_LABEL], s.uid);
    }

    #[test]
    fn host_network_sandbox_keeps_the_node_name_and_resolv_conf() {
        let c = spec(CgroupDriver::Cgroupfs, false).sandbox_config();
        assert_eq!(c.hostname, "");
        assert!(c.dns_config.is_none());
        let ns = c
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, NamespaceMode::Node as i32);
        // No cluster DNS known: no DNS config even on the pod network.
        let mut s = spec(CgroupDriver::Cgroupfs, true);
        s.cluster_dns.clear();
        assert!(s.sandbox_config().dns_config.is_none());
    }

    #[test]
    fn errors_are_read_as_their_cause() {
        let cases = [
            (Stage::RunPodSandbox, "failed to setup network for sandbox \"abc\": plugin type=\"bridge\" failed (add): failed to find plugin \"bridge\" in path [/opt/cni/bin]", Cause::CniPlugin),
            (Stage::RunPodSandbox, "failed to create containerd task: OCI runtime create failed: expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got \"/kubepods/besteffort/pod1/abc\" instead", Cause::CgroupDriver),
            (Stage::RunPodSandbox, "failed to setup network for sandbox \"abc\": invalid CNI config: plugin type \"x\"", Cause::CniConfig),
            (Stage::RunPodSandbox, "failed to get sandbox image \"registry.k8s.io/pause:3.10\": failed to pull image", Cause::SandboxImage),
            (Stage::RunPodSandbox, "failed to create containerd task: exec: \"/pause\": stat /pause: no such file or directory", Cause::SandboxImage),
            (Stage::StartContainer, "exec: \"/bin/true\": no such file", Cause::TestImage),
            (Stage::RuntimeConfig, "deadline", Cause::Runtime),
            // CRI-O's refusals of the pod as asked for are the runtime's, not the image's.
            (Stage::CreateContainer, "Pod level PID namespace requested for the container, but pod sandbox was not similarly configured, and does not have an infra container", Cause::Runtime),
            (Stage::CreateContainer, "container create failed: unknown version specified", Cause::Runtime),
            (Stage::CreateContainer, "failed to get image: image not known", Cause::TestImage),
            (Stage::CreateContainer, "user specified image not specified, cannot verify image signature", Cause::Runtime),
            (Stage::RunPodSandbox, "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: write /proc/self/oom_score_adj: permission denied: unknown", Cause::Capability),
            (Stage::StartContainer, "OCI runtime create failed: setrlimit `RLIMIT_NOFILE`: Operation not permitted: unknown", Cause::Capability),
        ];
        for (stage, msg, cause) in cases {
            assert_eq!(classify(stage, msg), cause, "{msg}");
        }
    }

    #[test]
    fn cgroups_path_shapes() {
        assert_eq!(
            cgroups_path_driver("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            CgroupDriver::Systemd
        );
        assert_eq!(
            cgroups_path_driver("kubepods-besteffort-pod1.slice/abc"),
            CgroupDriver::Cgroupfs
        );
        assert_eq!(
            cgroups_path_driver("/kubepods/besteffort/pod1/abc"),
            CgroupDriver::Cgroupfs
        );
        let info: HashMap<String, String> = [(
            "info".to_string(),
            r#"{"pid":12,"runtimeSpec":{"linux":{"cgroupsPath":"kubepods-besteffort-pod1.slice/abc"}}}"#
                .to_string(),
        )]
        .into_iter()
        .collect();
        assert_eq!(driver_from_info(&info).unwrap().0, CgroupDriver::Cgroupfs);
        assert!(driver_from_info(&HashMap::new()).is_none());
    }

    /// A runtime that records every call and fails the one named in `fail_at`.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<String>>,
        fail_at: Option<&'static str>,
        driver: Option<&'static str>,
        info_path: Option<&'static str>,
        exit: Option<i32>,
        /// A sandbox a previous attempt left behind, found by label.
        stray: bool,
        /// Removals of the test container refused as "still running" before one succeeds.
        refusals: std::cell::Cell<usize>,
    }
    impl Fake {
        fn step(&self, name: &str) -> Result<()> {
            self.calls.borrow_mut().push(name.to_string());
            if self.fail_at == Some(name) {
                anyhow::bail!("{name} failed: boom");
            }
            Ok(())
        }
        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }
    impl PodRuntime for Fake {
        fn cgroup_driver(&self) -> Result<Option<String>> {
            self.step("RuntimeConfig")?;
            Ok(self.driver.map(str::to_string))
        }
        fn run_pod_sandbox(&self, _: &PodSandboxConfig, _: &str) -> Result<String> {
            self.step("RunPodSandbox")?;
            Ok("pod1".into())
        }
        fn pod_sandbox_info(&self, _: &str) -> Result<HashMap<String, String>> {
            self.step("PodSandboxStatus")?;
            Ok(self
                .info_path
                .map(|p| {
                    [(
                        "info".to_string(),
                        format!(r#"{{"runtimeSpec":{{"linux":{{"cgroupsPath":"{p}"}}}}}}"#),
                    )]
                    .into_iter()
                    .collect()
                })
                .unwrap_or_default())
        }
        fn create_container(
            &self,
            _: &str,
            _: &ContainerConfig,
            _: &PodSandboxConfig,
        ) -> Result<String> {
            self.step("CreateContainer")?;
            Ok("ctr1".into())
        }
        fn start_container(&self, _: &str) -> Result<()> {
            self.step("StartContainer")
        }
        fn container_state(&self, _: &str) -> Result<ContainerState> {
            self.step("ContainerStatus")?;
            Ok(ContainerState {
                state: if self.exit.is_some() && self.refusals.get() == 0 {
                    "CONTAINER_EXITED"
                } else {
                    "CONTAINER_RUNNING"
                }
                .into(),
                exit_code: self.exit.unwrap_or(0),
                reason: String::new(),
                message: String::new(),
            })
        }
        fn stop_container(&self, _: &str, _: i64) -> Result<()> {
            self.step("StopContainer")
        }
        fn remove_container(&self, _: &str) -> Result<()> {
            self.step("RemoveContainer")?;
            if self.refusals.get() > 0 {
                self.refusals.set(self.refusals.get() - 1);
                anyhow::bail!("failed to set removing state for container \"ctr1\": container is still running, to stop first");
            }
            Ok(())
        }
        fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
            self.step(&format!("StopPodSandbox {id}"))
        }
        fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
            self.step(&format!("RemovePodSandbox {id}"))
        }
        fn pod_sandboxes_labelled(&self, _: &str, _: &str) -> Result<Vec<String>> {
            let ran = self.calls().iter().any(|c| c == "RunPodSandbox");
            self.step("ListPodSandbox")?;
            let mut out = vec![];
            if self.stray {
                if ran {
                    out.push("pod1".to_string());
                }
                out.push("stray".into());
            }
            Ok(out)
        }
    }

    #[test]
    fn a_container_still_seen_running_after_its_stop_is_stopped_again_until_it_goes() {
        let once = ["StopContainer", "RemoveContainer", "ContainerStatus"];
        for (refusals, exit, calls) in [
            // Seen running after each refused removal: asked again until it goes.
            (
                2,
                None,
                [&once[..], &once[..], &["StopContainer", "RemoveContainer"]].concat(),
            ),
            // Refused as still running though the status already says exited (its exit
            // event handled when the refusal is read): asked again too.
            (
                1,
                Some(0),
                [&once[..], &["StopContainer", "RemoveContainer"]].concat(),
            ),
        ] {
            let f = Fake {
                refusals: std::cell::Cell::new(refusals),
                exit,
                ..Default::default()
            };
            remove_container(&f, "ctr1", Duration::from_secs(5)).unwrap();
            assert_eq!(f.calls(), calls, "{refusals} refusal(s), exit {exit:?}");
        }
        // Past the bound it is left, with the runtime's words.
        let f = Fake {
            refusals: std::cell::Cell::new(1000),
            ..Default::default()
        };
        let e = remove_container(&f, "ctr1", Duration::from_millis(300)).unwrap_err();
        assert!(format!("{e:#}").contains("still running"), "{e:#}");
    }

    #[test]
    fn a_removal_that_fails_for_another_reason_is_not_tried_again() {
        let f = Fake {
            fail_at: Some("RemoveContainer"),
            exit: Some(0),
            ..Default::default()
        };
        let e = remove_container(&f, "ctr1", Duration::from_secs(5)).unwrap_err();
        assert!(format!("{e:#}").contains("boom"), "{e:#}");
        assert_eq!(
            f.calls(),
            ["StopContainer", "RemoveContainer", "ContainerStatus"]
        );
    }

    #[test]
    fn a_passing_check_removes_everything_in_order() {
        let f = Fake::default();
        let r = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap();
        assert_eq!(r.container_state, "CONTAINER_RUNNING");
        assert!(r.driver_checked_by.starts_with("not checked"));
        assert_eq!(
            f.calls(),
            vec![
                "ListPodSandbox",
                "RuntimeConfig",
                "RunPodSandbox",
                "PodSandboxStatus",
                "CreateContainer",
                "StartContainer",
                "ContainerStatus",
                "StopContainer",
                "RemoveContainer",
                "ListPodSandbox",
                "StopPodSandbox pod1",
                "RemovePodSandbox pod1"
            ]
        );
    }

    #[test]
    fn every_failing_call_still_removes_what_was_created() {
        let stages = [
            "RuntimeConfig",
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer",
            "ContainerStatus",
        ];
        for at in stages {
            let f = Fake {
                fail_at: Some(at),
                ..Default::default()
            };
            let e = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap_err();
            assert!(e.message.contains("boom"), "{at}: {e}");
            let calls = f.calls();
            let ran = |name: &str| calls.iter().position(|c| c == name);
            // Option's order: None (never called) sorts before Some.
            let created_pod = ran("RunPodSandbox").is_some() && ran("RunPodSandbox") < ran(at);
            let created_ctr = ran("CreateContainer").is_some() && ran("CreateContainer") < ran(at);
            // A container that was created is removed; a sandbox that was run is stopped and
            // removed; the label sweep always runs.
            assert_eq!(
                calls.contains(&"RemoveContainer".to_string()),
                created_ctr,
                "{at}: {calls:?}"
            );
            assert_eq!(
                calls.contains(&"RemovePodSandbox pod1".to_string()),
                created_pod,
                "{at}: {calls:?}"
            );
            assert!(calls.contains(&"ListPodSandbox".to_string()), "{at}");
            assert!(e.leftovers.is_empty(), "{at}: {:?}", e.leftovers);
        }
    }

    #[test]
    fn a_failing_removal_is_named() {
        let f = Fake {
            fail_at: Some("RemovePodSandbox pod1"),
            ..Default::default()
        };
        let e = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap_err();
        assert_eq!(e.leftovers.len(), 1);
        assert!(e.to_string().contains("pod sandbox pod1"), "{e}");
        // A failed container stop still tries the removal.
        let f = Fake {
            fail_at: Some("StopContainer"),
            ..Default::default()
        };
        assert!(check(&f, &spec(CgroupDriver::Systemd, true)).is_ok());
        assert!(f.calls().contains(&"RemoveContainer".to_string()));
    }

    #[test]
    fn a_stray_sandbox_of_the_check_is_swept() {
        let f = Fake {
            stray: true,
            ..Default::default()
        };
        check(&f, &spec(CgroupDriver::Systemd, true)).unwrap();
        assert!(f.calls().contains(&"RemovePodSandbox stray".to_string()));
        assert_eq!(
            f.calls()
                .iter()
                .filter(|c| *c == "RemovePodSandbox pod1")
                .count(),
            1
        );
    }

    #[test]
    fn a_sandbox_an_earlier_attempt_could_not_remove_is_said_not_in_the_way() {
        let f = Fake {
            stray: true,
            fail_at: Some("RemovePodSandbox stray"),
            ..Default::default()
        };
        let r = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap();
        assert_eq!(r.earlier_leftovers.len(), 1, "{:?}", r.earlier_leftovers);
        assert!(r.earlier_leftovers[0].contains("stray"));
        // Tried before the check's own pod, and again after it.
        let calls = f.calls();
        assert_eq!(
            calls
                .iter()
                .filter(|c| *c == "RemovePodSandbox stray")
                .count(),
            2
        );
        assert!(
            calls.iter().position(|c| c == "RemovePodSandbox stray")
                < calls.iter().position(|c| c == "RunPodSandbox")
        );
    }

    #[test]
    fn the_handler_a_pod_ran_on_is_said_as_containerd_tells_it() {
        let info: HashMap<String, String> = [(
            "info".to_string(),
            r#"{"runtimeHandler":"crun","runtimeType":"io.containerd.runc.v2","runtimeOptions":{"binary_name":"/usr/bin/crun","systemd_cgroup":true}}"#.to_string(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            ran_by("", Some(&info)),
            "the default handler (handler crun, io.containerd.runc.v2, /usr/bin/crun)"
        );
        assert_eq!(
            ran_by("crun", Some(&info)),
            "crun (io.containerd.runc.v2, /usr/bin/crun)"
        );
        assert_eq!(ran_by("kata", None), "kata");
    }

    #[test]
    fn a_cgroup_driver_mismatch_is_caught() {
        // Through RuntimeConfig, before any sandbox runs.
        let f = Fake {
            driver: Some("cgroupfs"),
            ..Default::default()
        };
        let e = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap_err();
        assert_eq!(e.cause, Cause::CgroupDriver);
        assert!(!f.calls().contains(&"RunPodSandbox".to_string()));
        // Through the sandbox's runtime spec where RuntimeConfig is not implemented.
        let f = Fake {
            info_path: Some("kubepods-besteffort-pod1.slice/abc"),
            ..Default::default()
        };
        let e = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap_err();
        assert_eq!(e.cause, Cause::CgroupDriver);
        assert!(e.message.contains("kubepods-besteffort-pod1.slice/abc"));
        assert!(f.calls().contains(&"RemovePodSandbox pod1".to_string()));
        // Matching: said how it was checked.
        let f = Fake {
            info_path: Some("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            ..Default::default()
        };
        let r = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap();
        assert!(r.driver_checked_by.starts_with("the sandbox's status"));
        let f = Fake {
            driver: Some("systemd"),
            ..Default::default()
        };
        let r = check(&f, &spec(CgroupDriver::Systemd, true)).unwrap();
        assert_eq!(r.driver_checked_by, "CRI RuntimeConfig");
    }

    #[test]
    fn a_container_that_fails_is_a_failure_one_that_finished_is_not() {
        let f = Fake {
            exit: Some(0),
            ..Default::default()
        };
        assert!(check(&f, &spec(CgroupDriver::Cgroupfs, false)).is_ok());
        let f = Fake {
            exit: Some(127),
            ..Default::default()
        };
        let e = check(&f, &spec(CgroupDriver::Cgroupfs, false)).unwrap_err();
        assert_eq!(e.cause, Cause::TestImage);
        assert!(e.message.contains("127"));
    }

    #[test]
    fn network_mode_follows_network_ready() {
        let c = |status: bool| super::super::Condition {
            kind: "NetworkReady".into(),
            status,
            reason: "NetworkPluginNotReady".into(),
            message: "cni config uninitialized".into(),
        };
        assert_eq!(network_mode(&[c(true)]), (true, None));
        let (pod, note) = network_mode(&[c(false)]);
        assert!(!pod);
        assert!(note.unwrap().contains("cni config uninitialized"));
        assert!(!network_mode(&[]).0);
    }

    #[test]
    fn pod_cgroups_are_removed_only_when_empty_and_only_under_kubepods() {
        let d = tempfile::tempdir().unwrap();
        let parent = "/kubepods/besteffort/pod1";
        for h in ["cpu", "memory", "unified"] {
            std::fs::create_dir_all(d.path().join(h).join("kubepods/besteffort/pod1")).unwrap();
        }
        // A cgroup with something in it stays (here: a file, as rmdir of a non-empty dir fails).
        std::fs::write(d.path().join("memory/kubepods/besteffort/pod1/x"), "").unwrap();
        remove_pod_cgroup_dirs(d.path(), parent);
        assert!(!d.path().join("cpu/kubepods/besteffort/pod1").exists());
        assert!(!d.path().join("unified/kubepods/besteffort/pod1").exists());
        assert!(d.path().join("memory/kubepods/besteffort/pod1").exists());
        assert!(d.path().join("cpu/kubepods/besteffort").exists());
        std::fs::create_dir_all(d.path().join("cpu/other")).unwrap();
        remove_pod_cgroup_dirs(d.path(), "/other");
        remove_pod_cgroup_dirs(d.path(), "/kubepods/../other");
        assert!(d.path().join("cpu/other").exists());
    }

    #[test]
    fn uids_are_uuids() {
        let a = new_uid().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_uid().unwrap());
    }
}
