//! Applying a plan: preflight, backup, then a walk over the plan's files and actions, each step
//! journalled; on failure, an automatic rollback (src/rollback.rs).

pub mod backup;
pub mod preflight;

use crate::cri::{self, Cri, Verification};
use crate::error::Failure;
use crate::node::Node;
use crate::plan::Action;
use crate::system::kubectl::Kubectl;
use crate::system::systemd::{diagnose, Systemd};
use anyhow::{anyhow, Result};
use backup::{Backup, State};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Connects to a CRI endpoint and waits until it answers, up to a timeout.
pub type CriConnect<'a> = &'a dyn Fn(&str, Duration) -> Result<Box<dyn Cri>>;

/// Every side effect the walk has, swappable in tests.
pub struct Effects<'a> {
    pub systemd: &'a dyn Systemd,
    pub kubectl: Option<&'a dyn Kubectl>,
    pub cri: CriConnect<'a>,
}

pub struct ApplyOptions {
    /// Start and stop services and pull through CRI (false for an offline `--root` node).
    pub live: bool,
    /// For reaching the runtime in the checks after it answered (the waits are in the plan).
    pub socket_timeout: Duration,
    pub no_rollback: bool,
    /// Where to reach the runtime for the checks, when not at the plan's endpoint.
    pub cri_endpoint: Option<String>,
    /// `--drain`: the node's name in the API.
    pub drain: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Done,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub status: StepStatus,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Shows steps as they run: a progress line per step on a terminal, log lines otherwise.
pub trait Progress {
    fn begin(&mut self, step: &str);
    fn end(&mut self, report: &StepReport);
}

/// For JSON output: nothing on the terminal.
pub struct Quiet;
impl Progress for Quiet {
    fn begin(&mut self, _: &str) {}
    fn end(&mut self, _: &StepReport) {}
}

pub struct Outcome {
    pub steps: Vec<StepReport>,
    pub verification: Option<Verification>,
    pub backup: String,
    pub rollback: Option<Vec<StepReport>>,
    pub error: Option<Failure>,
}

enum Step<'p> {
    Cordon(String),
    Drain(String),
    Write(&'p backup::StoredFile),
    Act(&'p Action),
    CheckImages(&'p [String]),
    Uncordon(String),
}

impl Step<'_> {
    /// Offline (`--root`), only what changes files and unit links runs: nothing is started,
    /// stopped or asked over CRI.
    fn runs_offline(&self) -> bool {
        match self {
            Step::Cordon(_) | Step::Drain(_) | Step::Uncordon(_) | Step::Write(_) => true,
            Step::Act(a) => matches!(a, Action::Enable { .. } | Action::Disable { .. }),
            Step::CheckImages(_) => false,
        }
    }

    fn name(&self) -> String {
        match self {
            Step::Cordon(n) => format!("cordon node {n}"),
            Step::Drain(n) => format!("drain node {n}"),
            Step::Write(f) => format!("write {}", f.path),
            Step::Act(a) => a.to_string(),
            Step::CheckImages(names) => {
                format!("find the {} carried image name(s) through CRI", names.len())
            }
            Step::Uncordon(n) => format!("uncordon node {n}"),
        }
    }
}

/// Walk the backup's stored plan. Files already as planned are left alone, so an interrupted
/// run can be walked again (every service action is idempotent).
pub fn run(
    node: &Node,
    b: &mut Backup,
    fx: &Effects,
    opts: &ApplyOptions,
    progress: &mut dyn Progress,
) -> Outcome {
    let plan = b.manifest.plan.clone();
    let mut steps: Vec<Step> = Vec::new();
    if let Some(n) = &opts.drain {
        steps.push(Step::Cordon(n.clone()));
        steps.push(Step::Drain(n.clone()));
    }
    // Files change once the kubelet (and Docker) are stopped, so that a kubelet restarting on
    // its own in between never starts on half a migration.
    let stops = plan
        .actions
        .iter()
        .take_while(|a| matches!(a, Action::Stop { .. }))
        .count();
    steps.extend(plan.actions[..stops].iter().map(Step::Act));
    steps.extend(plan.files.iter().map(Step::Write));
    for a in &plan.actions[stops..] {
        steps.push(Step::Act(a));
        // The carried images are checked where the kubelet will look for them, before it starts.
        if matches!(a, Action::VerifyPull { .. }) && !plan.check_images.is_empty() {
            steps.push(Step::CheckImages(&plan.check_images));
        }
    }
    if let Some(n) = &opts.drain {
        steps.push(Step::Uncordon(n.clone()));
    }

    let mut out = Outcome {
        steps: vec![],
        verification: None,
        backup: b.node_dir.clone(),
        rollback: None,
        error: None,
    };
    pause_point(b, "backup");
    for step in &steps {
        let name = step.name();
        progress.begin(&name);
        let t0 = Instant::now();
        let (status, detail, err) = if !opts.live && !step.runs_offline() {
            (
                StepStatus::Skipped,
                Some("offline: --root".to_string()),
                None,
            )
        } else {
            match exec(node, b, fx, opts, step, &plan, &mut out.verification) {
                Ok(detail) => (StepStatus::Done, detail, None),
                Err(e) => (StepStatus::Failed, Some(format!("{e:#}")), Some(e)),
            }
        };
        let report = StepReport {
            step: name.clone(),
            status,
            duration_ms: t0.elapsed().as_millis() as u64,
            detail,
        };
        progress.end(&report);
        let _ = b.journal(&format!(
            "{} {name}",
            serde_json::to_value(status).unwrap().as_str().unwrap()
        ));
        out.steps.push(report);
        pause_point(b, &name);
        if let Some(e) = err {
            let reason = format!("{name}: {e:#}");
            if opts.no_rollback {
                out.error = Some(Failure::RollbackFailed {
                    reason,
                    rollback: "not attempted, as --no-rollback asked".into(),
                    backup: b.node_dir.clone(),
                });
                return out;
            }
            let (reports, undo) = crate::rollback::undo(node, b, fx, progress);
            out.rollback = Some(reports);
            out.error = Some(match undo {
                Ok(()) => Failure::RolledBack {
                    reason,
                    backup: b.node_dir.clone(),
                },
                Err(re) => Failure::RollbackFailed {
                    reason,
                    rollback: format!("{re:#}"),
                    backup: b.node_dir.clone(),
                },
            });
            return out;
        }
    }
    if let Err(e) = b.set_state(State::Done) {
        out.error = Some(Failure::RollbackFailed {
            reason: format!("the migration finished but its record could not be saved: {e:#}"),
            rollback: "not attempted: the node is migrated".into(),
            backup: b.node_dir.clone(),
        });
    }
    out
}

/// A test hook for the end-to-end test's `kill -9` scenarios: with CRI_MIGRATE_PAUSE_AFTER set,
/// the run stops for good after the first step whose name contains it, so that it can be killed
/// at a known point.
fn pause_point(b: &Backup, step: &str) {
    if let Ok(at) = std::env::var("CRI_MIGRATE_PAUSE_AFTER") {
        if !at.is_empty() && step.contains(&at) {
            let _ = b.journal(&format!("paused after {step} (CRI_MIGRATE_PAUSE_AFTER)"));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn unit_failure(fx: &Effects, unit: &str, what: String) -> anyhow::Error {
    let journal = fx.systemd.journal(unit, 20);
    let mut msg = what;
    if !journal.trim().is_empty() {
        msg.push_str(&format!(
            "; last lines of `journalctl -u {unit}`:\n{}",
            journal.trim_end()
        ));
    }
    for hint in diagnose(&journal) {
        msg.push_str(&format!("\nthis usually means: {hint}"));
    }
    anyhow!(msg)
}

fn exec(
    node: &Node,
    b: &mut Backup,
    fx: &Effects,
    opts: &ApplyOptions,
    step: &Step,
    plan: &backup::StoredPlan,
    verification: &mut Option<Verification>,
) -> Result<Option<String>> {
    let kubectl = || {
        fx.kubectl
            .ok_or_else(|| anyhow!("--drain needs kubectl and a kubeconfig"))
    };
    match step {
        Step::Cordon(n) => {
            kubectl()?.run(&["cordon", n])?;
            b.manifest.cordoned = Some(n.clone());
            b.save()?;
            Ok(None)
        }
        Step::Drain(n) => kubectl()?
            .run(&[
                "drain",
                n,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=600s",
            ])
            .map(|_| None),
        Step::Uncordon(n) => {
            kubectl()?.run(&["uncordon", n])?;
            b.manifest.cordoned = None;
            b.save()?;
            Ok(None)
        }
        Step::Write(f) => {
            if node.read(&f.path)?.as_deref() == Some(f.content.as_str()) {
                return Ok(Some("already as planned".into()));
            }
            let record = b.manifest.files.iter().find(|r| r.path == f.path);
            // Mode and owner of the file it replaces; a new file is root's.
            let (mode, owner) = match record {
                Some(r) if r.existed => (r.mode, (r.uid, r.gid)),
                _ => (f.mode, (0, 0)),
            };
            let created = node.write_atomic(&f.path, f.content.as_bytes(), mode, Some(owner))?;
            b.record_created_dirs(created)?;
            Ok(None)
        }
        Step::CheckImages(names) => {
            let endpoint = opts
                .cri_endpoint
                .clone()
                .unwrap_or_else(|| plan.endpoint.clone());
            let cri = (fx.cri)(&endpoint, opts.socket_timeout)?;
            let mut missing = Vec::new();
            for n in names.iter() {
                if !cri.image_present(n)? {
                    missing.push(n.as_str());
                }
            }
            if !missing.is_empty() {
                anyhow::bail!(
                    "the runtime does not find carried image(s) {} through CRI",
                    missing.join(", ")
                );
            }
            Ok(Some(format!("{} name(s) found", names.len())))
        }
        Step::Act(a) => {
            let endpoint = opts
                .cri_endpoint
                .clone()
                .unwrap_or_else(|| plan.endpoint.clone());
            match a {
                Action::Enable { unit } | Action::Disable { unit } => {
                    let verb = if matches!(a, Action::Enable { .. }) {
                        "enable"
                    } else {
                        "disable"
                    };
                    fx.systemd.act(verb, Some(unit)).map(|_| None)
                }
                Action::Stop { unit } => fx.systemd.act("stop", Some(unit)).map(|_| None),
                Action::DaemonReload => fx.systemd.act("daemon-reload", None).map(|_| None),
                Action::Restart { unit } | Action::Start { unit } => {
                    let verb = if matches!(a, Action::Restart { .. }) {
                        "restart"
                    } else {
                        "start"
                    };
                    fx.systemd
                        .act(verb, Some(unit))
                        .map_err(|e| {
                            unit_failure(fx, unit, format!("{unit} did not {verb}: {e:#}"))
                        })
                        .map(|_| None)
                }
                Action::WaitForSocket { timeout_secs, .. } => {
                    let cri =
                        (fx.cri)(&endpoint, Duration::from_secs(*timeout_secs)).map_err(|e| {
                            let unit = plan.target.unit();
                            unit_failure(fx, unit, format!("{e:#}"))
                        })?;
                    let v = cri.version()?;
                    Ok(Some(format!(
                        "{} {} answers on {endpoint}",
                        v.runtime_name, v.runtime_version
                    )))
                }
                Action::VerifyPull { image, .. } => {
                    let image = if plan.test_image.is_empty() {
                        image.clone()
                    } else {
                        plan.test_image.clone()
                    };
                    let cri = (fx.cri)(&endpoint, opts.socket_timeout)?;
                    let cred = cri::credentials::lookup(node, &image);
                    let v = match cri::verify(cri.as_ref(), &endpoint, &image, cred.as_ref()) {
                        Ok(v) => v,
                        // An air-gapped node cannot pull, and needs not: the image was carried
                        // over from Docker, and the runtime has it where the kubelet looks.
                        Err(e)
                            if plan
                                .check_images
                                .contains(&crate::images::normalize(&image))
                                && cri.image_present(&image).unwrap_or(false) =>
                        {
                            return Ok(Some(format!(
                                "{image} could not be pulled ({e:#}), but the runtime has it, carried over from Docker"
                            )));
                        }
                        Err(e) => return Err(e),
                    };
                    let detail = format!(
                        "pulled {image}{} in {} ms{}",
                        v.digest
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default(),
                        v.pull.duration_ms,
                        v.pull
                            .credential
                            .as_deref()
                            .map(|c| format!(", with the kubelet's credentials for {c}"))
                            .unwrap_or_default()
                    );
                    *verification = Some(v);
                    Ok(Some(detail))
                }
                Action::WaitActive { unit, timeout_secs } => {
                    wait_active(fx, unit, Duration::from_secs(*timeout_secs)).map(|_| None)
                }
            }
        }
    }
}

/// Active, and still active a little later: a kubelet that crashes at start is `active` for a
/// moment before systemd marks it failed.
fn wait_active(fx: &Effects, unit: &str, timeout: Duration) -> Result<()> {
    let settle = (timeout / 8).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let deadline = Instant::now() + timeout;
    let mut active_since: Option<Instant> = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = fx.systemd.state(unit).active;
        if last == "active" {
            let since = *active_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= settle {
                return Ok(());
            }
        } else {
            active_since = None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(unit_failure(
        fx,
        unit,
        format!(
            "{unit} is not active after {}s (it is {last})",
            timeout.as_secs()
        ),
    ))
}

/// Ask the API whether the kubeadm CRI socket record needs updating, and update it. Returns a
/// line for the report, or the exact command to run when the API cannot be reached.
pub fn update_cri_socket_record(
    kubectl: Option<&dyn Kubectl>,
    node_name: &str,
    endpoint: &str,
) -> String {
    const KEY: &str = "kubeadm.alpha.kubernetes.io/cri-socket";
    let cmd = format!("kubectl annotate node {node_name} {KEY}={endpoint} --overwrite");
    let Some(k) = kubectl else {
        return format!("no kubectl or kubeconfig here; if the node has a kubeadm CRI socket annotation, run: {cmd}");
    };
    let path = "jsonpath={.metadata.annotations.kubeadm\\.alpha\\.kubernetes\\.io/cri-socket}";
    match k.run(&["get", "node", node_name, "-o", path]) {
        Err(e) => format!("the API could not be reached ({e:#}); run: {cmd}"),
        Ok(v) if v.trim().is_empty() => {
            "the node has no kubeadm CRI socket annotation: nothing to update".into()
        }
        Ok(v) if v.trim() == endpoint => {
            format!("the kubeadm CRI socket annotation already says {endpoint}")
        }
        Ok(v) => match k.run(&[
            "annotate",
            "node",
            node_name,
            &format!("{KEY}={endpoint}"),
            "--overwrite",
        ]) {
            Ok(_) => format!(
                "kubeadm CRI socket annotation updated from {} to {endpoint}",
                v.trim()
            ),
            Err(e) => {
                format!("could not update the kubeadm CRI socket annotation ({e:#}); run: {cmd}")
            }
        },
    }
}
