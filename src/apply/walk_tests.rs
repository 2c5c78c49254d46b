//! The walk and its undo in-process, with recording fakes: at every step boundary a signal
//! (SIGINT, SIGTERM, SIGHUP), and at every unit call a failure. Afterwards the node's files are
//! byte-identical to before or fully migrated, the unit calls are the ones expected (none for
//! steps never reached), and the outcome carries the documented exit code.

use super::backup::{content_digest, Backup, Effect, Mark, State, StoredFile, StoredPlan};
use super::*;
use crate::cri::{Condition, PulledImage, RuntimeVersion};
use crate::error::exit;
use crate::plan::Target;
use crate::system::exits::NoExits;
use crate::system::systemd::UnitState;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGHUP: i32 = 1;

/// The units of a Docker node, each enabled and active, and a unit of the node's own that is
/// bound to Docker (`BindsTo=docker.service`: systemd stops it with Docker).
const UNITS: [&str; 5] = [
    "kubelet.service",
    "docker.socket",
    "docker.service",
    "containerd.service",
    "app.service",
];

/// Each unit's requirements (`Requires=`, `BindsTo=`), as Debian's docker.io and Docker's own
/// unit have them: docker.service requires docker.socket.
const REQUIRES: [(&str, &str); 2] = [
    ("docker.service", "docker.socket"),
    ("app.service", "docker.service"),
];

/// The unit calls of a whole migration, in order.
const HAPPY: [&str; 8] = [
    "stop kubelet.service",
    "stop docker.socket",
    "stop docker.service",
    "restart containerd.service",
    "start kubelet.service",
    "disable docker.socket",
    "disable docker.service",
    "enable containerd.service",
];

/// systemd as a model of units, not a list: a stop propagates to the units that require the
/// stopped one (transitively), a start pulls in the units the started one requires.
struct FakeSystemd {
    units: RefCell<BTreeMap<String, (String, String)>>,
    requires: Vec<(String, String)>,
    calls: RefCell<Vec<String>>,
    /// The n-th changing call fails (1-based).
    fail_at: Option<usize>,
    /// At the n-th changing call, this path becomes a directory (the journal can no longer be
    /// saved: a directory where `manifest.json.tmp` must be written).
    break_at: RefCell<Option<(usize, std::path::PathBuf)>>,
    /// The n-th changing call hits systemd's start limit (a retry after reset-failed works).
    limit_at: Cell<Option<usize>>,
    /// `active_states` cannot be read (what systemd did along with a step goes unrecorded).
    blind: Cell<bool>,
    /// A unit whose start "succeeds" and leaves it inactive (a service that exits at once).
    stuck: RefCell<Option<String>>,
    /// A call (`VERB UNIT`) that always fails.
    refuse: RefCell<Option<String>>,
    /// Stops that may go on past their step (`stop_until`): the units stay `deactivating` until
    /// `wait_stops`, as Docker's do while dockerd shuts down after its containers.
    early: Cell<bool>,
    /// Units left deactivating by an early stop.
    stopping: RefCell<Vec<String>>,
    /// `wait_stops` fails (Docker's shutdown went wrong after its containers exited).
    late_failure: Cell<bool>,
    /// The kubelet's start gate: installed (and loaded), armed.
    gate: Cell<(bool, bool)>,
    /// A later drop-in resets `ExecStartPre=`: the gate installed is not in the loaded unit.
    gate_dropped: Cell<bool>,
}

impl FakeSystemd {
    fn new(fail_at: Option<usize>) -> FakeSystemd {
        FakeSystemd {
            units: RefCell::new(
                UNITS
                    .iter()
                    .map(|u| (u.to_string(), ("enabled".into(), "active".into())))
                    .collect(),
            ),
            requires: REQUIRES
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            calls: RefCell::new(vec![]),
            fail_at,
            break_at: RefCell::new(None),
            limit_at: Cell::new(None),
            blind: Cell::new(false),
            stuck: RefCell::new(None),
            refuse: RefCell::new(None),
            early: Cell::new(false),
            stopping: RefCell::new(vec![]),
            late_failure: Cell::new(false),
            gate: Cell::new((false, false)),
            gate_dropped: Cell::new(false),
        }
    }
    fn initial() -> BTreeMap<String, (String, String)> {
        FakeSystemd::new(None).units.into_inner()
    }
    /// The unit and every unit systemd stops with it (those that require it, transitively).
    fn stopped_with(&self, unit: &str) -> Vec<String> {
        self.closure(unit, |(a, b)| (b, a))
    }
    /// The unit and every unit a start of it pulls in (what it requires, transitively).
    fn started_with(&self, unit: &str) -> Vec<String> {
        self.closure(unit, |(a, b)| (a, b))
    }
    /// `unit` and whatever `edge` leads to from it, each (from, to) pair made of a
    /// (requirer, required) one.
    fn closure<'a>(
        &'a self,
        unit: &str,
        edge: impl Fn((&'a String, &'a String)) -> (&'a String, &'a String),
    ) -> Vec<String> {
        let mut out = vec![unit.to_string()];
        let mut i = 0;
        while i < out.len() {
            for (from, to) in self.requires.iter().map(|(a, b)| edge((a, b))) {
                if *from == out[i] && !out.contains(to) {
                    out.push(to.clone());
                }
            }
            i += 1;
        }
        out
    }
}

impl crate::system::systemd::Systemd for FakeSystemd {
    fn act(&self, verb: &str, unit: Option<&str>) -> Result<()> {
        let mut calls = self.calls.borrow_mut();
        calls.push(format!(
            "{verb}{}",
            unit.map(|u| format!(" {u}")).unwrap_or_default()
        ));
        if self.fail_at == Some(calls.len())
            || self.refuse.borrow().as_deref() == calls.last().map(String::as_str)
        {
            anyhow::bail!("Job for {} failed.", unit.unwrap_or(""));
        }
        if self.limit_at.get() == Some(calls.len()) {
            anyhow::bail!(
                "Job for {} failed because start of the service was attempted too often.",
                unit.unwrap_or("")
            );
        }
        if let Some((n, path)) = self.break_at.borrow().as_ref() {
            if *n == calls.len() {
                std::fs::create_dir_all(path).unwrap();
            }
        }
        if let Some(u) = unit {
            let mut units = self.units.borrow_mut();
            let mut set = |u: &str, active: &str| {
                let s = units.entry(u.to_string()).or_default();
                s.1 = active.into();
            };
            match verb {
                "stop" => {
                    for w in self.stopped_with(u) {
                        set(&w, "inactive");
                    }
                }
                "start" | "restart" => {
                    for w in self.started_with(u) {
                        let stuck = self.stuck.borrow().as_deref() == Some(w.as_str());
                        set(&w, if stuck { "inactive" } else { "active" });
                    }
                }
                "enable" => units.entry(u.to_string()).or_default().0 = "enabled".into(),
                "disable" => units.entry(u.to_string()).or_default().0 = "disabled".into(),
                _ => {}
            }
        }
        Ok(())
    }
    fn state(&self, unit: &str) -> Result<UnitState> {
        let (enabled, active) = self
            .units
            .borrow()
            .get(unit)
            .cloned()
            .unwrap_or(("not-found".into(), "inactive".into()));
        Ok(UnitState {
            unit: unit.into(),
            enabled,
            active,
            dependents: vec![],
        })
    }
    fn journal(&self, _: &str, _: usize) -> String {
        String::new()
    }
    fn dependents(&self, unit: &str) -> Result<Vec<String>> {
        Ok(self
            .requires
            .iter()
            .filter(|(_, b)| b == unit)
            .map(|(a, _)| a.clone())
            .collect())
    }
    fn stop_until(&self, unit: &str, gone: &dyn Fn() -> bool) -> Result<bool> {
        self.act("stop", Some(unit))?;
        if !self.early.get() {
            return Ok(true);
        }
        let with = self.stopped_with(unit);
        for w in &with {
            self.units.borrow_mut().entry(w.clone()).or_default().1 = "deactivating".into();
        }
        if !gone() {
            return Ok(true);
        }
        self.stopping.borrow_mut().extend(with);
        Ok(false)
    }
    fn wait_stops(&self, _: Duration) -> Result<()> {
        self.calls.borrow_mut().push("wait-stops".into());
        if self.late_failure.get() {
            anyhow::bail!("`systemctl stop docker.socket` failed (exit status: 1): Job for docker.service failed.");
        }
        for u in self.stopping.borrow_mut().drain(..) {
            self.units.borrow_mut().entry(u).or_default().1 = "inactive".into();
        }
        Ok(())
    }
    fn queue_start(&self, unit: &str) -> Result<()> {
        self.act("queue-start", Some(unit))?;
        // Held at the gate while it is armed; started at once otherwise.
        let held = self.gate.get().1;
        self.units
            .borrow_mut()
            .entry(unit.to_string())
            .or_default()
            .1 = if held { "activating" } else { "active" }.into();
        Ok(())
    }
    fn show(&self, unit: &str, props: &[&str]) -> Result<String> {
        let mut out = String::new();
        for p in props {
            let value = match *p {
                "ExecStartPre" if self.gate.get().0 && !self.gate_dropped.get() => format!(
                    "{{ path=/bin/sh ; argv[]=/bin/sh -c g={}; ... ; ignore_errors=no }}",
                    crate::system::gate::FIFO
                ),
                "Requires" => self
                    .requires
                    .iter()
                    .filter(|(a, _)| a == unit)
                    .map(|(_, b)| b.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            out.push_str(&format!("{p}={value}\n"));
        }
        Ok(out)
    }
    fn active_states(&self, units: &[String]) -> Result<Vec<String>> {
        if self.blind.get() {
            anyhow::bail!("Failed to connect to bus: Connection timed out");
        }
        units
            .iter()
            .map(|u| self.state(u).map(|s| s.active))
            .collect()
    }
}

/// The gate in the same model: its calls among systemd's (each may fail as they do), a held
/// start of the kubelet let through when it opens.
impl crate::system::gate::Gate for FakeSystemd {
    fn install(&self) -> Result<()> {
        self.act("gate-install", None)?;
        self.gate.set((true, true));
        Ok(())
    }
    fn open(&self) -> Result<bool> {
        let (installed, armed) = self.gate.get();
        if !armed {
            return Ok(false);
        }
        self.act("gate-open", None)?;
        self.gate.set((installed, false));
        let mut units = self.units.borrow_mut();
        if let Some(k) = units
            .get_mut("kubelet.service")
            .filter(|k| k.1 == "activating")
        {
            k.1 = "active".into();
        }
        Ok(true)
    }
    fn remove(&self) -> Result<()> {
        self.act("gate-remove", None)?;
        self.gate.set((false, false));
        Ok(())
    }
}

struct FakeCri {
    sandbox_fails: bool,
}
impl cri::sandbox::PodRuntime for FakeCri {
    fn cgroup_driver(&self) -> Result<Option<String>> {
        Ok(None)
    }
    fn run_pod_sandbox(&self, _: &k8s_cri::v1::PodSandboxConfig, _: &str) -> Result<String> {
        if self.sandbox_fails {
            anyhow::bail!("failed to setup network for sandbox \"pod\": plugin type=\"bridge\" failed (add): failed to find plugin \"bridge\" in path [/opt/cni/bin]");
        }
        Ok("pod".into())
    }
    fn pod_sandbox_info(&self, _: &str) -> Result<std::collections::HashMap<String, String>> {
        Ok(Default::default())
    }
    fn create_container(
        &self,
        _: &str,
        _: &k8s_cri::v1::ContainerConfig,
        _: &k8s_cri::v1::PodSandboxConfig,
    ) -> Result<String> {
        Ok("ctr".into())
    }
    fn start_container(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn container_state(&self, _: &str) -> Result<cri::sandbox::ContainerState> {
        Ok(cri::sandbox::ContainerState {
            state: "CONTAINER_RUNNING".into(),
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
        })
    }
    fn stop_container(&self, _: &str, _: i64) -> Result<()> {
        Ok(())
    }
    fn remove_container(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn stop_pod_sandbox(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn remove_pod_sandbox(&self, _: &str) -> Result<()> {
        Ok(())
    }
    fn pod_sandboxes_labelled(&self, _: &str, _: &str) -> Result<Vec<String>> {
        Ok(vec![])
    }
}
impl Cri for FakeCri {
    fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion {
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20".into(),
            runtime_api_version: "v1".into(),
        })
    }
    fn status(&self) -> Result<Vec<Condition>> {
        Ok(vec![])
    }
    fn pull(&self, image: &str, _: Option<&cri::credentials::Credential>) -> Result<PulledImage> {
        Ok(PulledImage {
            image: image.into(),
            image_ref: "sha256:1".into(),
            repo_digests: vec![],
            size: 1,
            credential: None,
            duration_ms: 1,
        })
    }
    fn image_present(&self, _: &str) -> Result<bool> {
        Ok(true)
    }
}

/// A node's files: path -> (mode, content).
type Files = BTreeMap<String, (u32, Vec<u8>)>;

const FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";
const CONFIG: &str = "/etc/containerd/config.toml";
const CRICTL: &str = "/etc/crictl.d/crictl.yaml";

/// A node folder with Docker-era files, and the plan that moves it.
fn node() -> (tempfile::TempDir, Node, StoredPlan) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path());
    node.write_atomic(
        FLAGS,
        b"KUBELET_KUBEADM_ARGS=\"--network-plugin=cni\"\n",
        0o644,
        None,
    )
    .unwrap();
    node.write_atomic(CONFIG, b"disabled_plugins = [\"cri\"]\n", 0o644, None)
        .unwrap();
    let file = |path: &str, content: &str| StoredFile {
        path: path.into(),
        mode: 0o644,
        content: content.into(),
        planned_from: Some(content_digest(node.read(path).unwrap().as_deref())),
        // As a plan stored by an earlier version: grouped by path (the test below gives each
        // its group), and not saying whether it is a unit file.
        group: None,
        unit_file: None,
    };
    let unit = |u: &str| u.to_string();
    let plan = StoredPlan {
        target: Target::Containerd,
        endpoint: "unix:///run/containerd/containerd.sock".into(),
        test_image: "registry.k8s.io/pause:3.9".into(),
        files: vec![
            file(
                FLAGS,
                "KUBELET_KUBEADM_ARGS=\"--container-runtime=remote\"\n",
            ),
            file(CONFIG, "version = 2\n"),
            file(
                CRICTL,
                "runtime-endpoint: unix:///run/containerd/containerd.sock\n",
            ),
        ],
        actions: vec![
            Action::Stop {
                unit: unit("kubelet.service"),
                until_exited: None,
            },
            Action::Stop {
                unit: unit("docker.socket"),
                until_exited: None,
            },
            Action::Stop {
                unit: unit("docker.service"),
                until_exited: None,
            },
            Action::Restart {
                unit: unit("containerd.service"),
            },
            Action::WaitForSocket {
                endpoint: "unix:///run/containerd/containerd.sock".into(),
                timeout_secs: 1,
            },
            Action::VerifyPull {
                endpoint: "unix:///run/containerd/containerd.sock".into(),
                image: "registry.k8s.io/pause:3.9".into(),
                providers: None,
            },
            Action::Start {
                unit: unit("kubelet.service"),
            },
            Action::WaitActive {
                unit: unit("kubelet.service"),
                timeout_secs: 1,
            },
            Action::Disable {
                unit: unit("docker.socket"),
            },
            Action::Disable {
                unit: unit("docker.service"),
            },
            Action::Enable {
                unit: unit("containerd.service"),
            },
        ],
        check_images: vec![],
    };
    (dir, node, plan)
}

/// The node's files (not cri-migrate's own), with their modes.
fn files(node: &Node) -> Files {
    let mut out = BTreeMap::new();
    for path in [FLAGS, CONFIG, CRICTL] {
        if let Ok(m) = std::fs::metadata(node.path(path)) {
            use std::os::unix::fs::MetadataExt;
            out.insert(
                path.to_string(),
                (m.mode() & 0o7777, std::fs::read(node.path(path)).unwrap()),
            );
        }
    }
    out
}

fn migrated(plan: &StoredPlan) -> Files {
    plan.files
        .iter()
        .map(|f| (f.path.clone(), (f.mode, f.content.clone().into_bytes())))
        .collect()
}

struct Run {
    outcome: WalkOutcome,
    calls: Vec<String>,
    units: BTreeMap<String, (String, String)>,
    files: Files,
    state: State,
}

/// Walk the plan with a signal from the `signal_at`-th boundary on (the walk asks once before
/// each step), or the `fail_at`-th unit call failing.
fn walk(signal_at: Option<(usize, i32)>, fail_at: Option<usize>) -> (Run, StoredPlan, Files) {
    walk_with(false, signal_at, fail_at, false)
}

/// The same node, in the order that checks the runtime beside Docker before the cutover.
fn beside(mut plan: StoredPlan) -> StoredPlan {
    let a = |s: &str| -> Action {
        plan.actions
            .iter()
            .find(|a| a.to_string().starts_with(s))
            .unwrap()
            .clone()
    };
    let sandbox = Action::CheckSandbox {
        endpoint: "unix:///run/containerd/containerd.sock".into(),
        image: "registry.k8s.io/pause:3.9".into(),
        cgroup_driver: "systemd".into(),
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: Some("cluster.local".into()),
        runtime_handler: None,
    };
    plan.actions = vec![
        Action::WriteFiles {
            group: crate::plan::FileGroup::Runtime,
        },
        a("restart containerd"),
        a("wait up to 1s until CRI"),
        a("pull"),
        sandbox,
        a("stop kubelet"),
        a("stop docker.socket"),
        a("stop docker.service"),
        Action::WriteFiles {
            group: crate::plan::FileGroup::Kubelet,
        },
        a("start kubelet"),
        Action::CheckRuntime {
            endpoint: "unix:///run/containerd/containerd.sock".into(),
        },
        a("wait up to 1s until kubelet"),
        a("disable docker.socket"),
        a("disable docker.service"),
        a("enable containerd"),
    ];
    plan
}

/// The unit calls of a whole migration in the beside order.
const HAPPY_BESIDE: [&str; 8] = [
    "restart containerd.service",
    "stop kubelet.service",
    "stop docker.socket",
    "stop docker.service",
    "start kubelet.service",
    "disable docker.socket",
    "disable docker.service",
    "enable containerd.service",
];

fn walk_with(
    check_beside: bool,
    signal_at: Option<(usize, i32)>,
    fail_at: Option<usize>,
    sandbox_fails: bool,
) -> (Run, StoredPlan, Files) {
    let (_dir, node, plan) = node();
    let plan = if check_beside {
        beside(plan)
    } else if sandbox_fails {
        // The cutover-first order with its test pod after the pull.
        let mut plan = plan;
        let at = plan
            .actions
            .iter()
            .position(|a| matches!(a, Action::VerifyPull { .. }))
            .unwrap();
        let sandbox = beside(plan.clone())
            .actions
            .into_iter()
            .find(|a| matches!(a, Action::CheckSandbox { .. }))
            .unwrap();
        plan.actions.insert(at + 1, sandbox);
        plan
    } else {
        plan
    };
    let before = files(&node);
    let systemd = FakeSystemd::new(fail_at);
    let asked = Cell::new(0usize);
    let interrupted = || {
        asked.set(asked.get() + 1);
        signal_at.and_then(|(at, sig)| (asked.get() >= at).then_some(sig))
    };
    let connect =
        |_: &str, _: Duration| -> Result<Box<dyn Cri>> { Ok(Box::new(FakeCri { sandbox_fails })) };
    let fx = Effects {
        systemd: &systemd,
        kubectl: None,
        cri: &connect,
        labels: &FakeLabels,
        interrupted: &interrupted,
        exits: &NoExits,
        gate: &systemd,
    };
    let mut b = Backup::create(&node, plan.clone(), states(&systemd), true).unwrap();
    let outcome = run(&node, &mut b, &fx, &opts(), &mut Quiet);
    let state = Backup::open(&node, &b.node_dir).unwrap().manifest.state;
    let r = Run {
        outcome,
        calls: systemd.calls.borrow().clone(),
        units: systemd.units.borrow().clone(),
        files: files(&node),
        state,
    };
    (r, plan, before)
}

fn code(o: &WalkOutcome) -> i32 {
    o.error.as_ref().map(Failure::exit_code).unwrap_or(exit::OK)
}

/// The names of the walk's steps, in order (the boundaries a signal can land on).
fn step_names(plan: &StoredPlan) -> Vec<String> {
    steps_of(plan, None).iter().map(Step::name).collect()
}

#[test]
fn the_whole_way_without_a_signal() {
    let (r, plan, _) = walk(None, None);
    assert!(r.outcome.error.is_none(), "{:?}", r.outcome.error);
    assert_eq!(r.calls, HAPPY);
    assert_eq!(r.files, migrated(&plan));
    assert_eq!(r.state, State::Done);
}

#[test]
fn a_signal_at_every_boundary_rolls_back_or_finishes() {
    let (_dir, _node, plan) = node();
    let names = step_names(&plan);
    // The step after which the kubelet runs verified on the new runtime.
    let commit = names
        .iter()
        .position(|n| n.contains("until kubelet.service is active"))
        .unwrap();
    for (k, sig) in (1..=names.len()).flat_map(|k| [(k, SIGINT), (k, SIGTERM), (k, SIGHUP)]) {
        let (r, plan, before) = walk(Some((k, sig)), None);
        let ran = k - 1; // steps done before the signal was seen
        let at = format!("signal {sig} before step {k} ({})", names[k - 1]);
        if ran == 0 {
            // Before the first change: nothing to undo, nothing to resume.
            assert_eq!(code(&r.outcome), exit::INTERRUPTED, "{at}");
            assert!(r.calls.is_empty(), "{at}: {:?}", r.calls);
            assert_eq!(r.files, before, "{at}");
            assert_eq!(r.state, State::Abandoned, "{at}");
        } else if ran > commit {
            // The kubelet runs verified on containerd: the migration finishes.
            assert_eq!(code(&r.outcome), exit::OK, "{at}");
            assert_eq!(r.calls, HAPPY, "{at}");
            assert_eq!(r.files, migrated(&plan), "{at}");
            assert!(r.outcome.finished_despite.is_some(), "{at}");
            assert_eq!(r.state, State::Done, "{at}");
        } else {
            assert_eq!(
                code(&r.outcome),
                exit::INTERRUPTED_ROLLED_BACK,
                "{at}: {:?}",
                r.outcome.error
            );
            assert_eq!(r.files, before, "{at}: files byte-identical to before");
            assert_eq!(r.units, FakeSystemd::initial(), "{at}: units as they were");
            assert_eq!(r.state, State::RolledBack, "{at}");
            // The walk's calls are the migration's first ones; the undo's touch only units the
            // walk touched.
            let walked = HAPPY
                .iter()
                .take_while(|c| r.calls.contains(&c.to_string()))
                .count();
            assert_eq!(r.calls[..walked], HAPPY[..walked], "{at}");
            // ... or that systemd stopped along with them.
            let model = FakeSystemd::new(None);
            for undo in &r.calls[walked..] {
                let unit = undo.split(' ').nth(1).unwrap();
                assert!(
                    HAPPY[..walked].iter().any(|c| {
                        let (verb, walked_unit) = c.split_once(' ').unwrap();
                        walked_unit == unit
                            || verb == "stop"
                                && model.stopped_with(walked_unit).iter().any(|w| w == unit)
                    }),
                    "{at}: the undo touched {unit}, which the walk never touched: {:?}",
                    r.calls
                );
            }
        }
    }
}

#[test]
fn a_signal_right_after_the_kubelet_stops_restarts_only_the_kubelet() {
    let (r, _, before) = walk(Some((2, SIGTERM)), None);
    assert_eq!(code(&r.outcome), exit::INTERRUPTED_ROLLED_BACK);
    assert_eq!(r.calls, ["stop kubelet.service", "restart kubelet.service"]);
    assert_eq!(r.files, before);
}

#[test]
fn a_failure_at_every_unit_call_leaves_the_node_as_it_was() {
    for n in 1..=HAPPY.len() {
        let (r, _, before) = walk(None, Some(n));
        let at = format!("failing `{}`", HAPPY[n - 1]);
        assert_eq!(
            code(&r.outcome),
            exit::ROLLED_BACK,
            "{at}: {:?}",
            r.outcome.error
        );
        assert_eq!(r.files, before, "{at}");
        assert_eq!(r.calls[..n], HAPPY[..n], "{at}");
        // The fake's failed call changed nothing; every unit is back as it was.
        assert_eq!(r.units, FakeSystemd::initial(), "{at}: {:?}", r.calls);
        assert_eq!(r.state, State::RolledBack, "{at}");
    }
    // The first unit call failed: the kubelet still runs as it did; nothing else to do.
    let (r, _, _) = walk(None, Some(1));
    assert_eq!(r.calls, ["stop kubelet.service"]);
}

#[test]
fn a_file_that_cannot_be_written_is_not_restored() {
    let (_dir, node, plan) = node();
    let systemd = FakeSystemd::new(None);
    let mut b = Backup::create(&node, plan, states(&systemd), true).unwrap();
    // The first file the walk writes is a directory by then: its write fails.
    std::fs::remove_file(node.path(FLAGS)).unwrap();
    std::fs::create_dir(node.path(FLAGS)).unwrap();
    let o = quick_walk(&systemd, &node, &mut b);
    assert_eq!(code(&o), exit::ROLLED_BACK, "{:?}", o.error);
    assert!(node.path(FLAGS).is_dir(), "left as found");
    assert_eq!(
        *systemd.calls.borrow(),
        [
            "stop kubelet.service",
            "stop docker.socket",
            "stop docker.service",
            "restart docker.socket",
            "restart docker.service",
            "restart app.service",
            "restart kubelet.service"
        ]
    );
    assert_eq!(*systemd.units.borrow(), FakeSystemd::initial());
    assert!(o
        .rollback
        .unwrap()
        .iter()
        .all(|s| !s.step.contains("restore")));
}

#[test]
fn a_file_changed_since_the_plan_is_not_overwritten() {
    let (_dir, node, plan) = node();
    let systemd = FakeSystemd::new(None);
    let units = states(&systemd);
    // Changed before the backup: refused, nothing made.
    node.write_atomic(CONFIG, b"# managed by puppet\n", 0o644, None)
        .unwrap();
    let err = Backup::create(&node, plan.clone(), units.clone(), true)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("/etc/containerd/config.toml changed since the plan was made")
    );
    assert!(!node.exists(super::backup::BACKUPS));
    // Changed after the backup, while the kubelet and Docker were stopping: the walk stops
    // there and rolls back; the new content stays.
    node.write_atomic(CONFIG, b"disabled_plugins = [\"cri\"]\n", 0o644, None)
        .unwrap();
    let mut b = Backup::create(&node, plan, units, true).unwrap();
    node.write_atomic(CONFIG, b"# managed by puppet\n", 0o644, None)
        .unwrap();
    let o = quick_walk(&systemd, &node, &mut b);
    assert_eq!(code(&o), exit::ROLLED_BACK);
    assert!(o
        .error
        .unwrap()
        .to_string()
        .contains("changed since the plan was made"));
    assert_eq!(node.read(CONFIG).unwrap().unwrap(), "# managed by puppet\n");
    assert_eq!(
        node.read(FLAGS).unwrap().unwrap(),
        "KUBELET_KUBEADM_ARGS=\"--network-plugin=cni\"\n",
        "the file written before it is restored"
    );
    assert_eq!(*systemd.units.borrow(), FakeSystemd::initial());
}

#[test]
fn effects_are_recorded_begun_then_marked() {
    let (_dir, node, plan) = node();
    let systemd = FakeSystemd::new(Some(4));
    let mut b = Backup::create(&node, plan, states(&systemd), true).unwrap();
    quick_walk(&systemd, &node, &mut b);
    let m = Backup::open(&node, &b.node_dir).unwrap().manifest;
    let marks: Vec<(Effect, Mark)> = m
        .effects
        .iter()
        .map(|r| (r.effect.clone(), r.mark))
        .collect();
    let unit = |verb: &str, u: &str| Effect::Unit {
        verb: verb.into(),
        unit: u.into(),
    };
    assert_eq!(
        marks,
        [
            (unit("stop", "kubelet.service"), Mark::Done),
            (unit("stop", "docker.socket"), Mark::Done),
            // What systemd stopped along with the socket: the service that requires it, and
            // the node's unit bound to that.
            (unit("stop", "docker.service"), Mark::Done),
            (unit("stop", "app.service"), Mark::Done),
            (unit("stop", "docker.service"), Mark::Done),
            (
                Effect::Write {
                    path: FLAGS.into(),
                    unit_file: None
                },
                Mark::Done
            ),
            (
                Effect::Write {
                    path: CONFIG.into(),
                    unit_file: None
                },
                Mark::Done
            ),
            (
                Effect::Write {
                    path: CRICTL.into(),
                    unit_file: None
                },
                Mark::Done
            ),
            (unit("restart", "containerd.service"), Mark::Failed),
        ]
    );
    assert_eq!(
        m.effects[3].step,
        "stop docker.socket (systemd, along with it)"
    );
    assert_eq!(m.state, State::RolledBack);
    assert!(
        !node.exists("/etc/crictl.d"),
        "the directory the run created is gone"
    );
}

thread_local! {
    /// What the fake labeller was asked, in order (each test runs on its own thread).
    static LABELS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct FakeLabels;

impl crate::system::selinux::Labels for FakeLabels {
    fn add_equivalence(&self, path: &str, like: &str) -> Result<()> {
        LABELS.with(|l| l.borrow_mut().push(format!("add {path}={like}")));
        Ok(())
    }
    fn remove_equivalence(&self, path: &str, like: &str) -> Result<()> {
        LABELS.with(|l| l.borrow_mut().push(format!("remove {path}={like}")));
        Ok(())
    }
    fn relabel(&self, path: &str) -> Result<()> {
        LABELS.with(|l| l.borrow_mut().push(format!("relabel {path}")));
        Ok(())
    }
}

#[test]
fn a_moved_root_is_labelled_before_the_runtime_starts_and_the_rule_goes_with_a_rollback() {
    let (_dir, node, plan) = node();
    let mut plan = beside(plan);
    let at = plan
        .actions
        .iter()
        .position(|a| matches!(a, Action::Restart { .. }))
        .unwrap();
    plan.actions.insert(
        at,
        Action::SelinuxLabels {
            path: "/data/containerd".into(),
            like: "/var/lib/containerd".into(),
        },
    );
    // The test pod fails: the run rolls back by itself.
    let at = plan
        .actions
        .iter()
        .position(|a| matches!(a, Action::CheckSandbox { .. }))
        .unwrap();
    let systemd = FakeSystemd::new(None);
    let connect = |_: &str, _: Duration| -> Result<Box<dyn Cri>> {
        Ok(Box::new(FakeCri {
            sandbox_fails: true,
        }))
    };
    let fx = Effects {
        systemd: &systemd,
        kubectl: None,
        cri: &connect,
        labels: &FakeLabels,
        interrupted: &|| None,
        exits: &NoExits,
        gate: &systemd,
    };
    let mut b = Backup::create(&node, plan.clone(), states(&systemd), true).unwrap();
    let outcome = run(&node, &mut b, &fx, &opts(), &mut Quiet);
    assert_ne!(code(&outcome), 0);
    assert!(at > 0);
    assert_eq!(
        LABELS.with(|l| l.borrow().clone()),
        [
            "add /data/containerd=/var/lib/containerd",
            "relabel /data/containerd",
            "remove /data/containerd=/var/lib/containerd"
        ]
    );
    // Labelled before the runtime restarted.
    let journal = std::fs::read_to_string(node.path(&format!("{}/journal.log", b.node_dir)))
        .unwrap_or_default();
    let label = journal.find("label /data/containerd").unwrap_or(usize::MAX);
    let restart = journal.find("restart containerd").unwrap_or(0);
    assert!(label < restart, "{journal}");
}

/// A live walk with a 1 s bound on the checks.
fn opts() -> ApplyOptions {
    ApplyOptions {
        live: true,
        socket_timeout: Duration::from_secs(1),
        no_rollback: false,
        cri_endpoint: None,
        drain: None,
    }
}

/// The units' states as the fake has them, with the units systemd stops along with them (what
/// a migration records before it starts).
fn states(systemd: &FakeSystemd) -> Vec<UnitState> {
    crate::system::systemd::states_with_dependents(systemd, &super::backup::UNITS).unwrap()
}

/// The fakes as the walk's effects: this systemd, a CRI that works, signals as `interrupted`
/// says.
fn with_fakes<T>(
    systemd: &FakeSystemd,
    interrupted: &dyn Fn() -> Option<i32>,
    f: impl FnOnce(&Effects) -> T,
) -> T {
    let connect = |_: &str, _: Duration| -> Result<Box<dyn Cri>> {
        Ok(Box::new(FakeCri {
            sandbox_fails: false,
        }))
    };
    f(&Effects {
        systemd,
        kubectl: None,
        cri: &connect,
        labels: &FakeLabels,
        interrupted,
        exits: &NoExits,
        gate: systemd,
    })
}

fn quick_walk(systemd: &FakeSystemd, node: &Node, b: &mut Backup) -> WalkOutcome {
    with_fakes(systemd, &|| None, |fx| {
        run(node, b, fx, &opts(), &mut Quiet)
    })
}

#[test]
fn a_journal_that_cannot_be_written_stops_before_the_cutover_and_is_reported_after() {
    // Before the first change: the run stops there, nothing done.
    let (_dir, node, plan) = node();
    let before = files(&node);
    let systemd = FakeSystemd::new(None);
    let mut b = Backup::create(&node, plan, states(&systemd), true).unwrap();
    std::fs::create_dir(node.path(&b.node_dir).join("manifest.json.tmp")).unwrap();
    let o = quick_walk(&systemd, &node, &mut b);
    let e = o.error.expect("the run stops");
    assert!(
        e.to_string().contains("cannot record the first change"),
        "{e}"
    );
    assert!(systemd.calls.borrow().is_empty(), "nothing was changed");
    assert_eq!(files(&node), before);

    // Once the cutover began (at the restart of containerd): the run goes on, and says so.
    let (_dir2, node, plan) = self::node();
    let systemd = FakeSystemd::new(None);
    let mut b = Backup::create(&node, plan.clone(), states(&systemd), true).unwrap();
    *systemd.break_at.borrow_mut() = Some((4, node.path(&b.node_dir).join("manifest.json.tmp")));
    let o = quick_walk(&systemd, &node, &mut b);
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(*systemd.calls.borrow(), HAPPY);
    assert_eq!(files(&node), migrated(&plan));
    assert!(!o.journal_errors.is_empty());
    assert!(
        o.journal_errors
            .iter()
            .any(|e| e.contains("restart containerd.service")),
        "{:?}",
        o.journal_errors
    );
}

#[test]
fn beside_docker_the_runtime_files_go_first_and_the_kubelet_files_at_the_cutover() {
    let (_dir, _node, plan) = node();
    let names = step_names(&beside(plan));
    let at = |s: &str| names.iter().position(|n| n.contains(s)).unwrap();
    assert!(at(&format!("write {CONFIG}")) < at("restart containerd"));
    assert!(at("test pod") < at("stop kubelet"));
    assert!(at(&format!("write {FLAGS}")) > at("stop docker.service"));
    assert!(at("still ready") < at("until kubelet.service is active"));

    let (r, plan, _) = walk_with(true, None, None, false);
    assert!(r.outcome.error.is_none(), "{:?}", r.outcome.error);
    assert_eq!(r.calls, HAPPY_BESIDE);
    assert_eq!(r.files, migrated(&plan));
    assert_eq!(r.state, State::Done);
}

#[test]
fn a_failed_test_pod_before_the_cutover_leaves_the_kubelet_and_docker_alone() {
    let (r, _, before) = walk_with(true, None, None, true);
    assert_eq!(code(&r.outcome), exit::ROLLED_BACK, "{:?}", r.outcome.steps);
    // containerd restarted with the new config, then with the old one; nothing else.
    assert_eq!(
        r.calls,
        ["restart containerd.service", "restart containerd.service"]
    );
    assert_eq!(r.files, before);
    assert_eq!(r.units, FakeSystemd::initial());
    let msg = r.outcome.error.as_ref().unwrap().to_string();
    assert!(msg.contains("never stopped"), "{msg}");
    assert!(msg.contains("CNI plugin"), "{msg}");
    // The same test pod failing in the other order costs the whole round trip.
    let (r, _, before) = walk_with(false, None, None, true);
    assert_eq!(code(&r.outcome), exit::ROLLED_BACK);
    assert!(r.calls.contains(&"stop kubelet.service".to_string()));
    assert_eq!(r.files, before);
    assert_eq!(r.units, FakeSystemd::initial());
}

#[test]
fn beside_docker_a_signal_at_every_boundary_or_a_failure_at_every_call_leaves_a_whole_node() {
    let (_dir, _node, plan) = node();
    let names = step_names(&beside(plan));
    let commit = names
        .iter()
        .position(|n| n.contains("until kubelet.service is active"))
        .unwrap();
    let kubelet_stop = names
        .iter()
        .position(|n| n.contains("stop kubelet"))
        .unwrap();
    for k in 1..=names.len() {
        let (r, plan, before) = walk_with(true, Some((k, SIGTERM)), None, false);
        let ran = k - 1;
        let at = format!("signal before step {k} ({})", names[k - 1]);
        if ran == 0 {
            assert_eq!(code(&r.outcome), exit::INTERRUPTED, "{at}");
            assert_eq!(r.files, before, "{at}");
        } else if ran > commit {
            assert_eq!(code(&r.outcome), exit::OK, "{at}");
            assert_eq!(r.files, migrated(&plan), "{at}");
        } else {
            assert_eq!(code(&r.outcome), exit::INTERRUPTED_ROLLED_BACK, "{at}");
            assert_eq!(r.files, before, "{at}");
            assert_eq!(r.units, FakeSystemd::initial(), "{at}");
            if ran <= kubelet_stop {
                assert!(
                    !r.calls.iter().any(|c| c.contains("kubelet")),
                    "{at}: {:?}",
                    r.calls
                );
            }
        }
    }
    for n in 1..=HAPPY_BESIDE.len() {
        let (r, plan, before) = walk_with(true, None, Some(n), false);
        let at = format!("failure at call {n} ({})", HAPPY_BESIDE[n - 1]);
        let _ = plan;
        assert_eq!(code(&r.outcome), exit::ROLLED_BACK, "{at}");
        assert_eq!(r.files, before, "{at}");
        assert_eq!(r.units, FakeSystemd::initial(), "{at}");
    }
}

#[test]
fn a_start_limit_is_cleared_and_the_restart_tried_again() {
    let (_dir, node, plan) = node();
    let systemd = FakeSystemd::new(None);
    systemd.limit_at.set(Some(4)); // restart containerd.service
    let mut b = Backup::create(&node, plan.clone(), states(&systemd), true).unwrap();
    let o = quick_walk(&systemd, &node, &mut b);
    assert!(o.error.is_none(), "{:?}", o.error);
    let calls = systemd.calls.borrow().clone();
    assert_eq!(
        calls[3..6],
        [
            "restart containerd.service",
            "reset-failed containerd.service",
            "restart containerd.service"
        ]
    );
    assert_eq!(files(&node), migrated(&plan));
}

#[test]
fn released_addresses_come_back_with_a_rollback() {
    let (_dir2, node2, mut plan2) = node();
    let (_dir, node, mut plan) = node();
    let path = "/var/lib/cni/networks/pods/10.88.0.9";
    node.write_atomic(path, b"dockerid\neth0\n", 0o644, None)
        .unwrap();
    let at = plan
        .actions
        .iter()
        .position(|a| matches!(a, Action::Stop { unit, .. } if unit == "docker.service"))
        .unwrap();
    plan.actions.insert(
        at + 1,
        Action::ReleaseAddresses {
            reservations: vec![(path.into(), "dockerid".into())],
        },
    );
    // The kubelet fails to start: everything goes back, the reservation too.
    let systemd = FakeSystemd::new(Some(5)); // start kubelet.service
    let mut b = Backup::create(&node, plan.clone(), states(&systemd), true).unwrap();
    let o = quick_walk(&systemd, &node, &mut b);
    assert_eq!(code(&o), exit::ROLLED_BACK, "{:?}", o.error);
    assert!(o
        .steps
        .iter()
        .any(|s| s.step.starts_with("release the 1 host-local")
            && s.detail.as_deref() == Some("1 released")));
    assert_eq!(
        node.read(path).unwrap().as_deref(),
        Some("dockerid\neth0\n")
    );
    // A whole migration: released, kept in the backup.
    node2
        .write_atomic(path, b"dockerid\neth0\n", 0o644, None)
        .unwrap();
    plan2.actions.insert(
        at + 1,
        Action::ReleaseAddresses {
            reservations: vec![(path.into(), "dockerid".into())],
        },
    );
    let systemd = FakeSystemd::new(None);
    let mut b = Backup::create(&node2, plan2, states(&systemd), true).unwrap();
    let o = quick_walk(&systemd, &node2, &mut b);
    assert!(o.error.is_none(), "{:?}", o.error);
    assert!(!node2.exists(path));
    assert!(node2.exists(&format!("{}/released{path}", b.node_dir)));
}

/// Walk the plan on this fake with a signal before step `k` (the walk asks once before each).
fn walk_on(systemd: &FakeSystemd, k: usize) -> (WalkOutcome, Backup, Node, tempfile::TempDir) {
    let (dir, node, plan) = node();
    let mut b = Backup::create(&node, plan, states(systemd), true).unwrap();
    let asked = Cell::new(0usize);
    let interrupted = || {
        asked.set(asked.get() + 1);
        (asked.get() >= k).then_some(SIGTERM)
    };
    let o = with_fakes(systemd, &interrupted, |fx| {
        run(&node, &mut b, fx, &opts(), &mut Quiet)
    });
    (o, b, node, dir)
}

#[test]
fn what_systemd_stopped_with_the_socket_is_back_even_when_its_record_was_lost() {
    // systemctl cannot say what happened along with each stop: the undo still compares every
    // unit with the backup and starts what ran before (never restarting what it did not touch).
    let systemd = FakeSystemd::new(None);
    systemd.blind.set(true);
    let (o, b, _node, _dir) = walk_on(&systemd, 3); // right after `stop docker.socket`
    assert_eq!(code(&o), exit::INTERRUPTED_ROLLED_BACK, "{:?}", o.error);
    assert_eq!(*systemd.units.borrow(), FakeSystemd::initial());
    assert_eq!(
        *systemd.calls.borrow(),
        [
            "stop kubelet.service",
            "stop docker.socket",
            "restart docker.socket",
            "start docker.service",
            "start app.service",
            "restart kubelet.service"
        ]
    );
    let journal = b.journal_lines().join("\n");
    assert!(
        journal.contains("the units' states cannot be read"),
        "{journal}"
    );
    let check = o.rollback.as_ref().unwrap().last().unwrap().clone();
    assert!(check.step.contains("check every unit"), "{check:?}");
    assert_eq!(check.detail.as_deref(), Some("5 unit(s) as before the run"));
}

#[test]
fn a_unit_that_does_not_come_back_is_named_with_its_fix() {
    let systemd = FakeSystemd::new(None);
    *systemd.stuck.borrow_mut() = Some("app.service".into());
    let (o, _b, _node, _dir) = walk_on(&systemd, 3);
    assert_eq!(code(&o), exit::ROLLBACK_FAILED, "{:?}", o.error);
    let msg = o.error.unwrap().to_string();
    assert!(
        msg.contains("1 unit(s) not as before the run: app.service is inactive but was active before the run (mend: systemctl start app.service)"),
        "{msg}"
    );
    assert!(!msg.contains("each checked after the rollback"), "{msg}");
    // Everything else came back.
    assert_active(
        &systemd,
        &["docker.socket", "docker.service", "kubelet.service"],
    );
}

#[test]
fn a_link_left_changed_is_named_with_its_fix() {
    // A whole migration, then a rollback by hand where systemd refuses to enable the socket.
    let (_dir, node, plan) = node();
    let systemd = FakeSystemd::new(None);
    let mut b = Backup::create(&node, plan, states(&systemd), true).unwrap();
    let o = quick_walk(&systemd, &node, &mut b);
    assert!(o.error.is_none(), "{:?}", o.error);
    *systemd.refuse.borrow_mut() = Some("enable docker.socket".into());
    let (_, r) = with_fakes(&systemd, &|| None, |fx| {
        undo::undo(&node, &mut b, fx, &mut Quiet)
    });
    let msg = format!("{:#}", r.unwrap_err());
    assert!(
        msg.contains("docker.socket is disabled but was enabled before the run (mend: systemctl enable docker.socket)"),
        "{msg}"
    );
    // The rest is back: Docker runs (its service started the socket), the kubelet too.
    assert_active(
        &systemd,
        &[
            "docker.socket",
            "docker.service",
            "app.service",
            "kubelet.service",
        ],
    );
}

/// These units are active in the fake systemd.
fn assert_active(systemd: &FakeSystemd, which: &[&str]) {
    let units = systemd.units.borrow();
    for u in which {
        assert_eq!(units[*u].1, "active", "{u}: {units:?}");
    }
}

/// What the first step whose name starts with `prefix` said ("" if none or nothing).
fn step_detail(outcome: &WalkOutcome, prefix: &str) -> String {
    outcome
        .steps
        .iter()
        .find(|s| s.step.starts_with(prefix))
        .and_then(|s| s.detail.clone())
        .unwrap_or_default()
}

/// Docker's containers as the walk watches them: `noted` live ones, all exited or not.
struct FakeExits {
    noted: Result<usize, String>,
    exited: bool,
}

impl crate::system::exits::Exits for FakeExits {
    fn note(&self, _: &str) -> Result<usize> {
        self.noted.clone().map_err(|e| anyhow::anyhow!(e))
    }
    fn all_exited(&self) -> bool {
        self.exited
    }
    fn stop_all(&self, exited: &dyn Fn()) -> Result<crate::system::exits::Stopped> {
        use crate::system::exits::Stopped;
        Ok(match (&self.noted, self.exited) {
            (Ok(n), true) if *n > 0 => {
                exited();
                Stopped::Exited {
                    count: *n,
                    killed: 0,
                }
            }
            _ => Stopped::Left("a restart policy".into()),
        })
    }
    fn none_restart(&self) -> bool {
        false
    }
}

/// The beside order as planned for Docker's stops: each goes on once Docker's containers have
/// exited, and Docker's own shutdown is waited for after the kubelet's start.
fn early_plan(plan: StoredPlan) -> StoredPlan {
    let mut plan = beside(plan);
    for a in plan.actions.iter_mut() {
        if let Action::Stop { unit, until_exited } = a {
            if unit.starts_with("docker.") {
                *until_exited = Some("/var/run/docker.sock".into());
            }
        }
    }
    let at = plan
        .actions
        .iter()
        .position(|a| matches!(a, Action::CheckRuntime { .. }))
        .unwrap();
    plan.actions.insert(
        at + 1,
        Action::WaitStopped {
            units: vec!["docker.socket".into(), "docker.service".into()],
            timeout_secs: 1,
        },
    );
    plan
}

fn walk_early(systemd: &FakeSystemd, exits: &FakeExits) -> (WalkOutcome, Files, Files, StoredPlan) {
    let (outcome, after, before, plan, _) = walk_shaped(systemd, early_plan, exits, &|| None);
    (outcome, after, before, plan)
}

/// The node's plan shaped by `shape`, walked with Docker's stops going on past their step, these
/// exits and signals; the outcome, the files after and before, the plan and the journal.
fn walk_shaped(
    systemd: &FakeSystemd,
    shape: fn(StoredPlan) -> StoredPlan,
    exits: &FakeExits,
    interrupted: &dyn Fn() -> Option<i32>,
) -> (WalkOutcome, Files, Files, StoredPlan, String) {
    let (_dir, node, plan) = node();
    let plan = shape(plan);
    let before = files(&node);
    systemd.early.set(true);
    let connect = |_: &str, _: Duration| -> Result<Box<dyn Cri>> {
        Ok(Box::new(FakeCri {
            sandbox_fails: false,
        }))
    };
    let fx = Effects {
        systemd,
        kubectl: None,
        cri: &connect,
        labels: &FakeLabels,
        interrupted,
        exits,
        gate: systemd,
    };
    let mut b = Backup::create(&node, plan.clone(), states(systemd), true).unwrap();
    let outcome = run(&node, &mut b, &fx, &opts(), &mut Quiet);
    let journal = std::fs::read_to_string(node.path(&format!("{}/journal.log", b.node_dir)))
        .unwrap_or_default();
    (outcome, files(&node), before, plan, journal)
}

#[test]
fn the_kubelet_starts_once_dockers_containers_exited_and_dockers_shutdown_is_waited_for_after() {
    let systemd = FakeSystemd::new(None);
    let exits = FakeExits {
        noted: Ok(3),
        exited: true,
    };
    let (outcome, after, _, plan) = walk_early(&systemd, &exits);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(after, migrated(&plan));
    // docker.service stops along with docker.socket (it requires it): no call of its own; the
    // kubelet starts while Docker still shuts down, and the wait comes after.
    assert_eq!(
        *systemd.calls.borrow(),
        [
            "restart containerd.service",
            "stop kubelet.service",
            "stop docker.socket",
            "start kubelet.service",
            "wait-stops",
            "disable docker.socket",
            "disable docker.service",
            "enable containerd.service",
        ]
    );
    let detail = |prefix: &str| step_detail(&outcome, prefix);
    assert!(detail("stop docker.socket").contains("Docker's 3 container(s) exited"));
    assert!(detail("stop docker.service").contains("already stopping along with the step before"));
    assert_eq!(systemd.units.borrow()["docker.service"].1, "inactive");
}

#[test]
fn dockers_containers_still_running_make_the_stop_wait_whole() {
    // Not all exited (or nothing to watch): each stop is waited for as before, docker.service's
    // own call included.
    for exits in [
        FakeExits {
            noted: Ok(3),
            exited: false,
        },
        FakeExits {
            noted: Err("container 0123456789ab runs in the host's PID namespace".into()),
            exited: false,
        },
    ] {
        let systemd = FakeSystemd::new(None);
        let (outcome, _, _, _) = walk_early(&systemd, &exits);
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        let calls = systemd.calls.borrow();
        let stop = calls
            .iter()
            .position(|c| c == "stop docker.service")
            .unwrap();
        let start = calls
            .iter()
            .position(|c| c == "start kubelet.service")
            .unwrap();
        assert!(stop < start, "{calls:?}");
        if exits.noted.is_err() {
            let said = step_detail(&outcome, "stop docker.socket");
            assert!(said.contains("waited for the whole stop"), "{said}");
        }
    }
}

#[test]
fn dockers_shutdown_failing_after_its_containers_rolls_back() {
    let systemd = FakeSystemd::new(None);
    systemd.late_failure.set(true);
    let exits = FakeExits {
        noted: Ok(2),
        exited: true,
    };
    let (outcome, after, before, _) = walk_early(&systemd, &exits);
    assert_eq!(code(&outcome), exit::ROLLED_BACK, "{:?}", outcome.error);
    assert!(format!("{:?}", outcome.error).contains("Job for docker.service failed"));
    assert_eq!(after, before, "every file as it was");
    assert_active(
        &systemd,
        &["kubelet.service", "docker.socket", "docker.service"],
    );
}

#[test]
fn a_files_group_decides_when_it_is_written_not_its_path() {
    let (_dir, _node, plan) = node();
    let mut plan = beside(plan);
    // The kubelet's credentials file sits under /var/lib/kubelet but goes with the runtime's
    // files (the check before the cutover pulls with them); a runtime file that names the
    // kubelet in its path is still the runtime's. The stored group says so, not the path.
    for f in plan.files.iter_mut() {
        f.group = Some(FileGroup::Runtime);
    }
    let names = step_names(&plan);
    let first_stop = names
        .iter()
        .position(|n| n.starts_with("stop kubelet"))
        .unwrap();
    for f in &plan.files {
        let at = names
            .iter()
            .position(|n| *n == format!("write {}", f.path))
            .unwrap();
        assert!(
            at < first_stop,
            "{} written before the cutover: {names:?}",
            f.path
        );
    }
    // Without a stored group (an earlier version's plan), the path decides as it did then.
    for f in plan.files.iter_mut() {
        f.group = None;
    }
    let names = step_names(&plan);
    let first_stop = names
        .iter()
        .position(|n| n.starts_with("stop kubelet"))
        .unwrap();
    let flags = names
        .iter()
        .position(|n| *n == format!("write {FLAGS}"))
        .unwrap();
    assert!(flags > first_stop, "{names:?}");
}

/// The beside order with the kubelet held at its gate, as planned where Docker's stops go on
/// once its containers exited: the gate before the kubelet stops, its files and its held start
/// before Docker's stop, the gate gone once the kubelet runs.
fn held_plan(plan: StoredPlan) -> StoredPlan {
    let mut plan = early_plan(plan);
    let kubelet = || "kubelet.service".to_string();
    let at = |plan: &StoredPlan, s: &str| {
        plan.actions
            .iter()
            .position(|a| a.to_string().starts_with(s))
            .unwrap()
    };
    let files = plan.actions.remove(at(&plan, "write the kubelet's files"));
    let stop = at(&plan, "stop kubelet");
    plan.actions
        .insert(stop, Action::InstallGate { unit: kubelet() });
    plan.actions.insert(stop + 2, files);
    plan.actions
        .insert(stop + 3, Action::StartHeld { unit: kubelet() });
    plan.actions.insert(
        stop + 4,
        Action::StopContainers {
            socket: "/var/run/docker.sock".into(),
        },
    );
    let active = at(&plan, "wait up to 1s until kubelet");
    plan.actions
        .insert(active + 1, Action::RemoveGate { unit: kubelet() });
    plan
}

/// The held plan walked with Docker's containers watched exiting, a signal or a failing call
/// as asked.
fn walk_held(
    systemd: &FakeSystemd,
    signal_at: Option<(usize, i32)>,
) -> (WalkOutcome, Files, Files, StoredPlan, String) {
    let exits = FakeExits {
        noted: Ok(3),
        exited: true,
    };
    let asked = Cell::new(0usize);
    let interrupted = || {
        asked.set(asked.get() + 1);
        signal_at.and_then(|(at, sig)| (asked.get() >= at).then_some(sig))
    };
    walk_shaped(systemd, held_plan, &exits, &interrupted)
}

#[test]
fn the_held_kubelet_starts_the_moment_dockers_containers_exited() {
    let systemd = FakeSystemd::new(None);
    let (outcome, after, _, plan, journal) = walk_held(&systemd, None);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(after, migrated(&plan));
    // The gate loaded before the kubelet stops; its start queued before Docker's stop and let
    // through by it; the gate gone once the kubelet runs.
    assert_eq!(
        *systemd.calls.borrow(),
        [
            "restart containerd.service",
            "gate-install",
            "daemon-reload",
            "stop kubelet.service",
            "queue-start kubelet.service",
            "gate-open",
            "stop docker.socket",
            "start kubelet.service",
            "wait-stops",
            "gate-remove",
            "daemon-reload",
            "disable docker.socket",
            "disable docker.service",
            "enable containerd.service",
        ]
    );
    // The kubelet's files were written before Docker stopped, held by the gate.
    let line = |s: &str| journal.find(s).unwrap_or_else(|| panic!("{s}: {journal}"));
    assert!(line(&format!("done write {FLAGS}")) < line("done stop docker.socket"));
    let detail = |prefix: &str| step_detail(&outcome, prefix);
    assert!(
        detail("stop Docker's containers")
            .contains("3 container(s) exited; the kubelet's gate opened then"),
        "{:?}",
        outcome.steps
    );
    assert_eq!(systemd.gate.get(), (false, false));
    assert_active(&systemd, &["kubelet.service", "containerd.service"]);
}

/// Migrated, or every file, unit and the gate as before.
fn held_whole(
    systemd: &FakeSystemd,
    outcome: &WalkOutcome,
    (after, before): (Files, Files),
    plan: &StoredPlan,
    at: &str,
) {
    if code(outcome) == exit::OK {
        assert_eq!(after, migrated(plan), "{at}");
    } else {
        assert_eq!(after, before, "{at}: {:?}", outcome.rollback);
        assert_eq!(*systemd.units.borrow(), FakeSystemd::initial(), "{at}");
        // Nothing holds the kubelet's starts after a rollback.
        assert_eq!(systemd.gate.get(), (false, false), "{at}");
    }
}

#[test]
fn held_a_signal_at_every_boundary_or_a_failure_at_every_call_leaves_a_whole_node() {
    let (_dir, _node, plan) = node();
    let names = step_names(&held_plan(plan));
    let commit = names
        .iter()
        .position(|n| n.contains("until kubelet.service is active"))
        .unwrap();
    for k in 1..=names.len() {
        let systemd = FakeSystemd::new(None);
        let (outcome, after, before, plan, _) = walk_held(&systemd, Some((k, SIGTERM)));
        let at = format!("signal before step {k} ({})", names[k - 1]);
        let expected = match k - 1 {
            0 => exit::INTERRUPTED,
            ran if ran > commit => exit::OK,
            _ => exit::INTERRUPTED_ROLLED_BACK,
        };
        assert_eq!(code(&outcome), expected, "{at}");
        held_whole(&systemd, &outcome, (after, before), &plan, &at);
    }
    let happy = {
        let systemd = FakeSystemd::new(None);
        walk_held(&systemd, None);
        let calls = systemd.calls.borrow().clone();
        calls
    };
    for n in 1..=happy.len() {
        let systemd = FakeSystemd::new(Some(n));
        let (outcome, after, before, plan, _) = walk_held(&systemd, None);
        let at = format!("failure at call {n} ({})", happy[n - 1]);
        held_whole(&systemd, &outcome, (after, before), &plan, &at);
        // Opening the gate at the exits may fail: the kubelet's start opens it then. Removing
        // it once the kubelet runs (the file, the reload) may fail: said, not undone.
        if happy[n - 1] == "wait-stops" {
            // Not a call that fails by number (`late_failure` is that test).
            continue;
        }
        let removal = happy.iter().position(|c| c == "gate-remove").unwrap();
        if happy[n - 1] == "gate-open" || n - 1 == removal || n - 1 == removal + 1 {
            assert_eq!(code(&outcome), exit::OK, "{at}: {:?}", outcome.error);
        } else {
            assert_eq!(code(&outcome), exit::ROLLED_BACK, "{at}");
        }
    }
}

#[test]
fn a_gate_systemd_did_not_load_stops_before_the_kubelet_does() {
    let systemd = FakeSystemd::new(None);
    systemd.gate_dropped.set(true);
    let (outcome, after, before, _, _) = walk_held(&systemd, None);
    assert_eq!(code(&outcome), exit::ROLLED_BACK);
    let msg = format!("{}", outcome.error.as_ref().unwrap());
    assert!(
        msg.contains("resets ExecStartPre") && msg.contains("never stopped"),
        "{msg}"
    );
    assert_eq!(after, before);
    assert!(!systemd.calls.borrow().iter().any(|c| c.contains("kubelet")));
    assert_eq!(systemd.gate.get(), (false, false));
}

#[test]
fn a_kubelet_still_tied_to_docker_is_not_started_ahead() {
    let mut systemd = FakeSystemd::new(None);
    systemd
        .requires
        .push(("kubelet.service".into(), "docker.service".into()));
    let (outcome, _, _, _, _) = walk_held(&systemd, None);
    let calls = systemd.calls.borrow();
    assert!(
        !calls.iter().any(|c| c.starts_with("queue-start")),
        "{calls:?}"
    );
    let said = step_detail(&outcome, "queue the start of kubelet");
    assert!(said.contains("Requires=docker.service"), "{said}");
}
