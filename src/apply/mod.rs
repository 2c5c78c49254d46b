//! A migration as one transaction: preflight (`preflight.rs`), the backup and its journal of
//! effects (`backup.rs`, `Backup` is "a migration in progress"), the walk over the plan's files
//! and actions (here: each change recorded before it is made and marked when made), and its
//! undo, the reverse walk over what was recorded (`undo.rs`). A failed step or a signal before
//! the kubelet runs verified on the new runtime rolls back by itself.

pub mod backup;
pub mod preflight;
pub mod release;
pub mod undo;

use crate::cri::{self, Cri, Verification};
use crate::error::Failure;
use crate::node::Node;
use crate::plan::{Action, FileGroup};
use crate::signals::{self, Phase};
use crate::system::exits::Stopped;
use crate::system::gate;
use crate::system::kubectl::Kubectl;
use crate::system::systemd::{diagnose, running, Systemd};
use anyhow::{anyhow, Result};
use backup::{content_digest, Backup, Effect, Mark, State};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Connects to a CRI endpoint and waits until it answers, up to a timeout.
pub type CriConnect<'a> = &'a dyn Fn(&str, Duration) -> Result<Box<dyn Cri>>;

/// Every side effect the walk has, swappable in tests.
pub struct Effects<'a> {
    pub systemd: &'a dyn Systemd,
    pub kubectl: Option<&'a dyn Kubectl>,
    pub cri: CriConnect<'a>,
    /// SELinux labels of a moved runtime root (`semanage`, `restorecon`).
    pub labels: &'a dyn crate::system::selinux::Labels,
    /// The first signal caught since changes began (`signals::caught` in production).
    pub interrupted: &'a dyn Fn() -> Option<i32>,
    /// Docker's containers watched exiting while Docker stops (`Action::Stop::until_exited`).
    pub exits: &'a dyn crate::system::exits::Exits,
    /// The kubelet's start held until they have (`Action::InstallGate`).
    pub gate: &'a dyn crate::system::gate::Gate,
}

pub struct ApplyOptions {
    /// Start and stop services and pull through CRI (false for an offline `--root` node).
    pub live: bool,
    /// For reaching the runtime in the checks after it answered (the waits are in the plan).
    pub socket_timeout: Duration,
    pub no_rollback: bool,
    /// Where to reach the runtime for the checks, when not at the plan's endpoint.
    pub cri_endpoint: Option<String>,
    /// `--drain`: the node's name in the API (checked: it cannot be read as an option).
    pub drain: Option<crate::names::NodeName>,
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

pub struct WalkOutcome {
    pub steps: Vec<StepReport>,
    pub verification: Option<Verification>,
    pub backup: String,
    pub rollback: Option<Vec<StepReport>>,
    pub error: Option<Failure>,
    /// A signal that arrived once the kubelet ran verified on the new runtime: the migration
    /// finished anyway. (One that arrived before is in `error`.)
    pub finished_despite: Option<String>,
    /// Journal writes that failed after the cutover began (it went on without them).
    pub journal_errors: Vec<String>,
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
            Step::Write(_) => true,
            // Nothing talks to the cluster from an offline node: its kubeconfig is the image's.
            Step::Cordon(_) | Step::Drain(_) | Step::Uncordon(_) => false,
            // Files under the root, like the writes: an offline node's reservations go too.
            Step::Act(a) => matches!(
                a,
                Action::Enable { .. } | Action::Disable { .. } | Action::ReleaseAddresses { .. }
            ),
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

    /// The change this step makes, recorded before it is made. Checks make none.
    fn effect(&self) -> Option<Effect> {
        let unit = |verb: &str, unit: &str| {
            Some(Effect::Unit {
                verb: verb.into(),
                unit: unit.into(),
            })
        };
        match self {
            Step::Cordon(n) => Some(Effect::Cordon { node: n.clone() }),
            Step::Write(f) => Some(Effect::Write {
                path: f.path.clone(),
                unit_file: f.unit_file,
            }),
            Step::Act(Action::Stop { unit: u, .. }) => unit("stop", u),
            Step::Act(Action::Start { unit: u } | Action::StartHeld { unit: u }) => {
                unit("start", u)
            }
            Step::Act(Action::InstallGate { unit: u }) => Some(Effect::Gate { unit: u.clone() }),
            Step::Act(Action::Restart { unit: u }) => unit("restart", u),
            Step::Act(Action::Enable { unit: u }) => unit("enable", u),
            Step::Act(Action::Disable { unit: u }) => unit("disable", u),
            Step::Act(Action::DaemonReload) => Some(Effect::DaemonReload),
            Step::Act(Action::ReleaseAddresses { reservations }) => Some(Effect::Release {
                paths: reservations.iter().map(|(p, _)| p.clone()).collect(),
            }),
            Step::Act(Action::SelinuxLabels { path, like }) => Some(Effect::Equivalence {
                path: path.clone(),
                like: like.clone(),
            }),
            _ => None,
        }
    }

    /// Once this check passes, the kubelet runs verified on the new runtime: from here a signal
    /// lets the migration finish instead of undoing it.
    fn commits(&self) -> bool {
        matches!(self, Step::Act(Action::WaitActive { unit, .. }) if unit == "kubelet.service")
    }
}

/// The steps of a stored plan, in order.
fn steps_of<'p>(plan: &'p backup::StoredPlan, drain: Option<&str>) -> Vec<Step<'p>> {
    let mut steps: Vec<Step> = Vec::new();
    if let Some(n) = drain {
        steps.push(Step::Cordon(n.to_string()));
        steps.push(Step::Drain(n.to_string()));
    }
    let carried_check = |a: &Action| {
        // The carried images are checked where the kubelet will look for them, before it starts.
        matches!(a, Action::VerifyPull { .. }) && !plan.check_images.is_empty()
    };
    if plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::WriteFiles { .. }))
    {
        for a in &plan.actions {
            match a {
                Action::WriteFiles { group } => steps.extend(
                    plan.files
                        .iter()
                        .filter(|f| {
                            group.contains(
                                f.group
                                    .unwrap_or_else(|| FileGroup::of_stored_path(&f.path)),
                            )
                        })
                        .map(Step::Write),
                ),
                a => {
                    steps.push(Step::Act(a));
                    if carried_check(a) {
                        steps.push(Step::CheckImages(&plan.check_images));
                    }
                }
            }
        }
    } else {
        // A plan stored by an earlier version: the files right after the leading stops.
        let stops = plan
            .actions
            .iter()
            .take_while(|a| matches!(a, Action::Stop { .. }))
            .count();
        steps.extend(plan.actions[..stops].iter().map(Step::Act));
        steps.extend(plan.files.iter().map(Step::Write));
        for a in &plan.actions[stops..] {
            steps.push(Step::Act(a));
            if carried_check(a) {
                steps.push(Step::CheckImages(&plan.check_images));
            }
        }
    }
    if let Some(n) = drain {
        steps.push(Step::Uncordon(n.to_string()));
    }
    steps
}

/// Walk the backup's stored plan. Files already as planned are left alone, so an interrupted
/// run can be walked again (every service action is idempotent, and is run again: a reboot in
/// between may have started what the first run stopped). A run resumed from the journal does
/// not cordon and drain a second time.
pub fn run(
    node: &Node,
    b: &mut Backup,
    fx: &Effects,
    opts: &ApplyOptions,
    progress: &mut dyn Progress,
) -> WalkOutcome {
    let plan = b.manifest.plan.clone();
    let steps = steps_of(&plan, opts.drain.as_ref().map(|n| n.as_str()));
    let w = Walk {
        node,
        fx,
        opts,
        plan: &plan,
    };
    let mut out = WalkOutcome {
        steps: vec![],
        verification: None,
        backup: b.node_dir.clone(),
        rollback: None,
        error: None,
        finished_despite: None,
        journal_errors: vec![],
    };
    match b.rec.append("output.log") {
        Ok(f) => signals::set_log(f, format!("{}/output.log", b.node_dir)),
        Err(e) => journal(b, &format!("no output.log for a hung-up terminal: {e:#}")),
    }
    pause_point(b, fx, "backup");
    let mut committed = false;
    for step in &steps {
        let name = step.name();
        if let Some(sig) = (fx.interrupted)() {
            if !committed {
                stop_on_signal(&w, b, progress, &mut out, sig);
                return out;
            }
            out.finished_despite
                .get_or_insert_with(|| signals::name(sig));
        }
        if matches!(step, Step::Cordon(_) | Step::Drain(_)) && done_before(b, step) {
            let report = StepReport {
                step: name.clone(),
                status: StepStatus::Skipped,
                duration_ms: 0,
                detail: Some("done by the interrupted run".into()),
            };
            progress.end(&report);
            out.steps.push(report);
            continue;
        }
        progress.begin(&name);
        let t0 = Instant::now();
        let (status, detail, err) = if !opts.live && !step.runs_offline() {
            (
                StepStatus::Skipped,
                Some("offline: --root".to_string()),
                None,
            )
        } else {
            match exec_recorded(&w, b, step, &mut out.verification) {
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
        let word = match status {
            StepStatus::Done => "done",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
        };
        journal(b, &format!("{word} {name}"));
        out.steps.push(report);
        if err.is_none() && step.commits() {
            committed = true;
            signals::set_phase(Phase::Finishing);
        }
        pause_point(b, fx, &name);
        if let Some(e) = err {
            let reason = format!("{name}: {e:#}");
            roll_back(&w, b, progress, &mut out, reason, None);
            return out;
        }
    }
    b.manifest.reason = None;
    if let Err(e) = b.set_state(State::Done) {
        b.journal_errors.push(format!(
            "the migration finished but its record could not be saved: {e:#}"
        ));
    }
    out.journal_errors = std::mem::take(&mut b.journal_errors);
    out
}

/// Whether an earlier (interrupted) run of this backup did this step: its effect is marked done
/// (the cordon), or the journal says so (the drain, which makes no effect of its own).
fn done_before(b: &Backup, step: &Step) -> bool {
    let name = step.name();
    b.manifest
        .effects
        .iter()
        .any(|r| r.step == name && r.mark == Mark::Done)
        || b.journal_line(&format!("done {name}")).is_some()
}

/// A journal line; a failed write is kept for the report (the run goes on: stopping in the
/// middle of the cutover would be worse than a missing line).
fn journal(b: &mut Backup, line: &str) {
    if let Err(e) = b.journal(line) {
        b.journal_errors
            .push(format!("journal line \"{line}\" not written: {e:#}"));
    }
}

/// A step done: what it has to say for the report, if anything; or why it failed.
pub(crate) type StepDone = Result<Option<String>>;

/// What every step of a walk works with: the node, the side effects, the run's options and the
/// stored plan being walked.
#[derive(Clone, Copy)]
struct Walk<'a> {
    node: &'a Node,
    fx: &'a Effects<'a>,
    opts: &'a ApplyOptions,
    plan: &'a backup::StoredPlan,
}

impl Walk<'_> {
    /// The CRI endpoint the checks talk to: `--endpoint` where given, else the plan's.
    fn endpoint(&self) -> String {
        self.opts
            .cri_endpoint
            .clone()
            .unwrap_or_else(|| self.plan.endpoint.clone())
    }
}

/// Record the step's change before making it, make it, mark it. Before the first change, a
/// journal that cannot be written stops the run (nothing changed); after, the error is kept for
/// the report and the run goes on (the record is still in memory for an undo in this process).
fn exec_recorded(w: &Walk, b: &mut Backup, step: &Step, v: &mut Option<Verification>) -> StepDone {
    let Walk { node, fx, opts, .. } = *w;
    // States read after a unit step stay the next one's "before" across file writes only.
    if !matches!(step, Step::Write(_)) && acted_unit(step).is_none() {
        b.states_seen = None;
    }
    if let Some(said) = already_stopping(b, fx, step) {
        return Ok(Some(said));
    }
    let Some(effect) = step.effect() else {
        return exec(w, b, step, v);
    };
    if let Step::Write(f) = step {
        // Nothing to record for a file that needs no change (or must not be changed).
        if let Some(detail) = check_write(node, f)? {
            return Ok(Some(detail));
        }
    }
    let first = b.manifest.effects.is_empty();
    let (i, saved) = b.begin(&step.name(), effect);
    if let Err(e) = saved {
        if first {
            b.manifest.effects.pop();
            return Err(e.context(format!(
                "cannot record the first change in {}/manifest.json: stopping before it",
                b.node_dir
            )));
        }
        b.journal_errors
            .push(format!("recording \"{}\": {e:#}", step.name()));
    }
    // What systemd stops or starts along with a unit (a service that `Requires=` the socket
    // the step stops) is recorded too, so that the undo brings it back.
    let acted = acted_unit(step).filter(|_| opts.live);
    let tracked = acted.map(|_| tracked_units(b)).unwrap_or_default();
    let seen = b
        .states_seen
        .take()
        .filter(|(units, _)| *units == tracked)
        .map(|(_, states)| states);
    let before = match acted.map(|_| seen.map_or_else(|| fx.systemd.active_states(&tracked), Ok)) {
        Some(Err(e)) => {
            journal(
                b,
                &format!(
                    "before {}: the units' states cannot be read ({e:#}); what systemd does along with it goes unrecorded (the undo compares every unit with the backup)",
                    step.name()
                ),
            );
            None
        }
        Some(Ok(states)) => Some(states),
        None => None,
    };
    let r = exec(w, b, step, v);
    let mark = if r.is_ok() { Mark::Done } else { Mark::Failed };
    if let Err(e) = b.mark(i, mark) {
        b.journal_errors
            .push(format!("marking \"{}\" {mark:?}: {e:#}", step.name()));
    }
    if let (Some(acted), Some(before)) = (acted, before) {
        record_along(b, fx, &step.name(), acted, &tracked, &before);
    }
    r
}

/// The unit a stop, start or restart acts on: its step reads the units' states before and
/// after.
fn acted_unit<'s>(step: &'s Step) -> Option<&'s str> {
    match step {
        Step::Act(
            Action::Stop { unit, .. } | Action::Start { unit } | Action::Restart { unit },
        ) => Some(unit),
        _ => None,
    }
}

/// The units whose states the backup recorded (the migration's and those systemd stops with
/// them).
fn tracked_units(b: &Backup) -> Vec<String> {
    b.manifest
        .units
        .iter()
        .filter(|u| u.exists())
        .map(|u| u.unit.clone())
        .collect()
}

/// After a stop, start or restart: every tracked unit whose running state changed with it is
/// recorded as stopped or started (by systemd, along with the step's unit), and said in the
/// journal. A state that cannot be read now is said there too; the undo still compares every
/// unit with the backup's states.
fn record_along(
    b: &mut Backup,
    fx: &Effects,
    name: &str,
    acted: &str,
    tracked: &[String],
    before: &[String],
) {
    let after = match fx.systemd.active_states(tracked) {
        Ok(a) => a,
        Err(e) => {
            journal(
                b,
                &format!("after {name}: the units' states cannot be read ({e:#})"),
            );
            return;
        }
    };
    b.states_seen = Some((tracked.to_vec(), after.clone()));
    for ((unit, was), now) in tracked.iter().zip(before).zip(&after) {
        if unit == acted || running(was) == running(now) {
            continue;
        }
        let (verb, done) = if running(now) {
            ("start", "started")
        } else {
            ("stop", "stopped")
        };
        let line = format!("systemd {done} {unit} along with {name} (it was {was}, it is {now})");
        journal(b, &line);
        let effect = Effect::Unit {
            verb: verb.into(),
            unit: unit.clone(),
        };
        if let Err(e) = b.record_done(&format!("{name} (systemd, along with it)"), effect) {
            b.journal_errors
                .push(format!("recording \"{line}\": {e:#}"));
        }
    }
}

/// Before a file is written: `Some(detail)` when it needs no write (already as planned); an
/// error when it holds something else than what the plan was computed from.
fn check_write(node: &Node, f: &backup::StoredFile) -> StepDone {
    let now = node.read(&f.path)?;
    if now.as_deref() == Some(f.content.as_str()) {
        return Ok(Some("already as planned".into()));
    }
    if let Some(from) = &f.planned_from {
        if content_digest(now.as_deref()) != *from {
            return Err(backup::changed_since_planned(&f.path).into());
        }
    }
    Ok(None)
}

/// A signal before the kubelet ran verified on the new runtime: undo what was done.
fn stop_on_signal(
    w: &Walk,
    b: &mut Backup,
    progress: &mut dyn Progress,
    out: &mut WalkOutcome,
    sig: i32,
) {
    let signal = signals::name(sig);
    journal(b, &format!("interrupted by {signal}"));
    if !b.began_changes() {
        // Nothing was changed: nothing to undo, nothing to resume.
        let _ = b.set_state(State::Abandoned);
        out.error = Some(Failure::Interrupted { signal });
        out.journal_errors = std::mem::take(&mut b.journal_errors);
        return;
    }
    let reason = format!("interrupted by {signal}");
    roll_back(w, b, progress, out, reason, Some(signal));
}

fn roll_back(
    w: &Walk,
    b: &mut Backup,
    progress: &mut dyn Progress,
    out: &mut WalkOutcome,
    reason: String,
    signal: Option<String>,
) {
    let Walk { node, fx, opts, .. } = *w;
    let kubelet_touched = b
        .manifest
        .effects
        .iter()
        .any(|r| matches!(&r.effect, Effect::Unit { unit, .. } if unit == "kubelet.service"));
    let reason = if kubelet_touched || !b.manifest.live {
        reason
    } else {
        format!("{reason} — caught before the cutover: the kubelet was never stopped and the node stays on Docker")
    };
    if opts.no_rollback {
        b.manifest.reason = Some(format!("{reason}; not rolled back, as --no-rollback asked"));
        if let Err(e) = b.save() {
            b.journal_errors
                .push(format!("recording the failure: {e:#}"));
        }
        out.error = Some(Failure::RollbackFailed {
            reason,
            rollback: "not attempted, as --no-rollback asked".into(),
            backup: b.node_dir.clone(),
        });
        out.journal_errors = std::mem::take(&mut b.journal_errors);
        return;
    }
    signals::set_phase(Phase::RollingBack);
    b.manifest.reason = Some(reason.clone());
    let (reports, undone) = undo::undo(node, b, fx, progress);
    out.rollback = Some(reports);
    out.error = Some(match (undone, signal) {
        (Ok(()), Some(signal)) => Failure::InterruptedRolledBack {
            signal,
            backup: b.node_dir.clone(),
        },
        (Ok(()), None) => Failure::RolledBack {
            reason,
            backup: b.node_dir.clone(),
        },
        (Err(re), _) => Failure::RollbackFailed {
            reason,
            rollback: format!("{re:#}"),
            backup: b.node_dir.clone(),
        },
    });
    out.journal_errors = std::mem::take(&mut b.journal_errors);
}

/// A test hook for the end-to-end test's interruptions (builds with the test-hooks feature
/// only): with CRI_MIGRATE_PAUSE_AFTER set, the run waits after the first step whose name
/// contains it, until a signal arrives (or a `kill -9`), or until a file named `continue`
/// appears in the backup directory (to change a file under a paused run), so that it can be
/// interrupted at a known point.
#[cfg(feature = "test-hooks")]
fn pause_point(b: &Backup, fx: &Effects, step: &str) {
    if let Ok(at) = std::env::var("CRI_MIGRATE_PAUSE_AFTER") {
        if !at.is_empty() && step.contains(&at) {
            let _ = b.journal(&format!("paused after {step} (CRI_MIGRATE_PAUSE_AFTER)"));
            while (fx.interrupted)().is_none() && !b.rec.has("continue") {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
fn pause_point(_: &Backup, _: &Effects, _: &str) {}

/// One of Docker's stops that systemd already makes along with the step before (docker.service,
/// which requires docker.socket), Docker's containers gone: nothing to ask of systemd, nothing
/// to record (the step before recorded it), no time spent inside the cutover.
fn already_stopping(b: &Backup, fx: &Effects, step: &Step) -> Option<String> {
    let Step::Act(Action::Stop {
        unit,
        until_exited: Some(_),
    }) = step
    else {
        return None;
    };
    let (units, states) = b.states_seen.as_ref()?;
    let stopping = units
        .iter()
        .zip(states)
        .any(|(u, s)| u == unit && !running(s));
    (stopping && fx.exits.all_exited()).then(|| {
        "already stopping along with the step before, Docker's containers exited".to_string()
    })
}

/// Stop one of Docker's units, going on once every container Docker ran has exited (its
/// shutdown after that is waited for by `Action::WaitStopped`). Where they cannot be watched
/// (Docker does not answer, a container shares the host's PID namespace, none runs), the stop
/// is waited for whole, as any other.
fn stop_until_exited(fx: &Effects, unit: &str, socket: &str) -> StepDone {
    let watched = match fx.exits.note(socket) {
        Ok(n) if n > 0 => n,
        Ok(_) => return fx.systemd.act("stop", Some(unit)).map(|_| None),
        Err(e) => {
            fx.systemd.act("stop", Some(unit))?;
            return Ok(Some(format!(
                "waited for the whole stop: Docker's containers cannot be watched ({e:#})"
            )));
        }
    };
    // Exited, and dockerd shutting down (its unit no longer active): from then on it starts no
    // container again (restart policies end with its shutdown), unless none has one. Its unit
    // leaves `active` as the stop begins, long before the containers exit: read until seen, not
    // at the exits.
    let docker_stopping = std::cell::Cell::new(false);
    let opened: std::cell::RefCell<Option<Result<bool>>> = Default::default();
    let gone = || {
        // With no restart policy, an exit is final whatever dockerd does (the containers stopped
        // by `stop_containers` have exited before this stop began).
        if fx.exits.none_restart() && fx.exits.all_exited() {
            docker_stopping.set(true);
        }
        if !docker_stopping.get() {
            docker_stopping.set(
                fx.systemd
                    .active_states(&["docker.service".to_string()])
                    .is_ok_and(|s| s.iter().all(|a| !running(a))),
            );
        }
        let gone = docker_stopping.get() && fx.exits.all_exited();
        if gone && opened.borrow().is_none() {
            // The kubelet held at its gate starts now, before any bookkeeping here.
            *opened.borrow_mut() = Some(fx.gate.open());
        }
        gone
    };
    let finished = fx.systemd.stop_until(unit, &gone)?;
    let gate = gate_said(opened.into_inner());
    Ok((!finished).then(|| {
        format!("Docker's {watched} container(s) exited{gate}; its own shutdown goes on meanwhile")
    }))
}

/// Docker's containers stopped here, as Docker stops them but all at once (dockerd's shutdown
/// sends the signals one container after another: a tenth of a second at 30 containers), the
/// kubelet's gate opened the moment the last has exited. Where they cannot be (not noted, a
/// restart policy, ...), Docker's stop that follows stops them, as before.
fn stop_containers(fx: &Effects, socket: &str) -> StepDone {
    match fx.exits.note(socket) {
        Ok(0) => return Ok(Some("Docker runs no container".into())),
        Ok(_) => {}
        Err(e) => return Ok(Some(format!("left to Docker's stop: {e:#}"))),
    }
    let opened: std::cell::RefCell<Option<Result<bool>>> = Default::default();
    let stopped = fx
        .exits
        .stop_all(&|| *opened.borrow_mut() = Some(fx.gate.open()))?;
    Ok(Some(match stopped {
        Stopped::Left(why) => format!("left to Docker's stop: {why}"),
        Stopped::Exited { count, killed } => format!(
            "{count} container(s) exited{}{}",
            if killed > 0 {
                format!(", {killed} of them killed at their stop timeout")
            } else {
                String::new()
            },
            gate_said(opened.into_inner())
        ),
    }))
}

/// What opening the kubelet's gate at the exits did, for the step's line. One that failed is
/// opened again by the kubelet's start, which says it if that fails too.
fn gate_said(opened: Option<Result<bool>>) -> &'static str {
    match opened {
        Some(Ok(true)) => "; the kubelet's gate opened then",
        Some(Err(_)) => "; the kubelet's gate could not be opened then",
        _ => "",
    }
}

/// The dependencies that would tie a held start of the kubelet to Docker's units: a start job
/// that pulls one in (or waits for its stop) while Docker stops.
const HELD_DEPS: [&str; 7] = [
    "Requires",
    "Requisite",
    "BindsTo",
    "PartOf",
    "Wants",
    "Upholds",
    "After",
];

/// The gate written, systemd reloaded, and the gate proved in the unit as systemd loaded it
/// (a later drop-in that resets `ExecStartPre=` would leave it out): armed from here on.
fn install_gate(fx: &Effects, unit: &str) -> StepDone {
    if unit != gate::UNIT {
        anyhow::bail!("only {} has a gate, not {unit}", gate::UNIT);
    }
    fx.gate.install()?;
    fx.systemd.act("daemon-reload", None)?;
    let loaded = fx.systemd.show(unit, &["ExecStartPre"])?;
    if !loaded.contains(gate::FIFO) {
        anyhow::bail!(
            "systemd did not load the gate {} into {unit} (`systemctl show -p ExecStartPre {unit}` says {}): a drop-in of {unit} whose name sorts after it probably resets ExecStartPre=; `systemctl cat {unit}` shows which",
            gate::DROP_IN,
            loaded.trim()
        );
    }
    Ok(Some(format!("{} loaded", gate::DROP_IN)))
}

/// The held start queued, unless the unit (as systemd loaded it, its files written) still
/// depends on one of Docker's units: its start would then pull Docker in or wait for its stop,
/// so it starts once Docker's containers have exited instead, as any other.
fn start_held(fx: &Effects, unit: &str) -> StepDone {
    let deps = fx.systemd.show(unit, &HELD_DEPS)?;
    let tied = deps.lines().find_map(|l| {
        let (prop, value) = l.split_once('=')?;
        let u = value
            .split_whitespace()
            .find(|u| crate::runtime::DOCKER_UNITS.contains(u))?;
        Some(format!("{prop}={u}"))
    });
    if let Some(tie) = tied {
        return Ok(Some(format!(
            "not queued: {unit} has {tie}; it starts once Docker's containers have exited"
        )));
    }
    fx.systemd.queue_start(unit)?;
    Ok(Some("queued; systemd runs it when the gate opens".into()))
}

/// The gate gone, the kubelet running: what cannot be removed is said (every start passes a
/// gate without its FIFO), never a reason to undo the migration.
fn remove_gate(fx: &Effects, unit: &str) -> String {
    match fx
        .gate
        .remove()
        .and_then(|_| fx.systemd.act("daemon-reload", None))
    {
        Ok(()) => format!("{} removed", gate::DROP_IN),
        Err(e) => format!(
            "not removed ({e:#}); it lets every start of {unit} pass: remove {} and run `systemctl daemon-reload`",
            gate::DROP_IN
        ),
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

fn exec(w: &Walk, b: &mut Backup, step: &Step, v: &mut Option<Verification>) -> StepDone {
    let Walk { node, fx, opts, .. } = *w;
    let kubectl = || {
        fx.kubectl
            .ok_or_else(|| anyhow!("--drain needs kubectl and a kubeconfig"))
    };
    match step {
        Step::Cordon(n) => {
            kubectl()?.run(&["cordon", "--", n])?;
            b.manifest.cordoned = Some(n.clone());
            b.save()?;
            Ok(None)
        }
        Step::Drain(n) => kubectl()?
            .run(&[
                "drain",
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--timeout=600s",
                "--",
                n,
            ])
            .map(|_| None),
        Step::Uncordon(n) => {
            kubectl()?.run(&["uncordon", "--", n])?;
            b.manifest.cordoned = None;
            b.save()?;
            Ok(None)
        }
        Step::Write(f) => {
            let record = b.manifest.files.iter().find(|r| r.path == f.path);
            // Mode and owner of the file it replaces, the mode narrowed by the plan's (0600 for
            // a file that holds a credential); a new file is root's.
            let (mode, owner) = match record {
                Some(r) if r.existed => (r.mode & (f.mode | !0o777), (r.uid, r.gid)),
                _ => (f.mode, (0, 0)),
            };
            let created = node.write_atomic(&f.path, f.content.as_bytes(), mode, Some(owner))?;
            b.record_created_dirs(created)?;
            Ok(None)
        }
        Step::CheckImages(names) => {
            let cri = (fx.cri)(&w.endpoint(), opts.socket_timeout)?;
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
        Step::Act(a) => act(w, &b.node_dir, a, v),
    }
}

/// A service action of the plan, done.
fn act(w: &Walk, node_dir: &str, a: &Action, verification: &mut Option<Verification>) -> StepDone {
    let (node, fx, opts, plan) = (w.node, w.fx, w.opts, w.plan);
    let endpoint = w.endpoint();
    match a {
        Action::Enable { unit } | Action::Disable { unit } => {
            let verb = if matches!(a, Action::Enable { .. }) {
                "enable"
            } else {
                "disable"
            };
            fx.systemd.act(verb, Some(unit)).map(|_| None)
        }
        Action::Stop {
            unit,
            until_exited: None,
        } => fx.systemd.act("stop", Some(unit)).map(|_| None),
        Action::Stop {
            unit,
            until_exited: Some(socket),
        } => stop_until_exited(fx, unit, socket),
        Action::StopContainers { socket } => stop_containers(fx, socket),
        Action::WaitStopped {
            units,
            timeout_secs,
        } => wait_stopped(fx, units, Duration::from_secs(*timeout_secs)),
        Action::DaemonReload => fx.systemd.act("daemon-reload", None).map(|_| None),
        Action::Restart { unit } => start_unit(fx, "restart", unit),
        Action::Start { unit } => {
            // A start held at the gate goes on now if the stop of Docker did not open it
            // (its containers could not be watched); `systemctl start` then joins that job.
            let opened = if unit == gate::UNIT {
                fx.gate.open()?
            } else {
                false
            };
            start_unit(fx, "start", unit).map(|d| {
                d.or(opened.then(|| "its gate opened here: Docker stopped whole".to_string()))
            })
        }
        Action::InstallGate { unit } => install_gate(fx, unit),
        Action::StartHeld { unit } => start_held(fx, unit),
        Action::RemoveGate { unit } => Ok(Some(remove_gate(fx, unit))),
        Action::WaitForSocket { timeout_secs, .. } => {
            wait_for_socket(w, &endpoint, Duration::from_secs(*timeout_secs))
        }
        Action::VerifyPull {
            image, providers, ..
        } => verify_pull(w, &endpoint, image, providers.as_ref(), verification),
        Action::CheckSandbox {
            image,
            cgroup_driver,
            cluster_dns,
            cluster_domain,
            runtime_handler,
            ..
        } => {
            let cri = (fx.cri)(&endpoint, opts.socket_timeout)?;
            let r = cri::sandbox::check_as_kubelet(
                cri.as_ref(),
                &cri.status()?,
                Some(cgroup_driver),
                cluster_dns,
                cluster_domain.as_deref(),
                &test_image(plan, image),
                runtime_handler.as_deref(),
            )?;
            let detail = sandbox_detail(&r);
            if let Some(v) = verification.as_mut() {
                // The default handler's pod is the verification's; the others are said.
                if runtime_handler.is_none() {
                    v.sandbox = Some(r);
                }
            }
            Ok(Some(detail))
        }
        Action::CheckRuntime { .. } => {
            let cri = (fx.cri)(&endpoint, opts.socket_timeout)?;
            cri::require_ready(&cri.status()?, &endpoint)?;
            Ok(Some("ready".into()))
        }
        Action::WriteFiles { .. } => Ok(None),
        Action::SelinuxLabels { path, like } => {
            fx.labels.add_equivalence(path, like)?;
            fx.labels.relabel(path)?;
            Ok(Some(format!("{path} labelled as {like}")))
        }
        Action::ReleaseAddresses { reservations } => {
            release::release(node, node_dir, reservations).map(Some)
        }
        Action::WaitActive { unit, timeout_secs } => {
            wait_active(fx, unit, Duration::from_secs(*timeout_secs)).map(|_| None)
        }
    }
}

/// The runtime answering CRI on its socket, said with its version; where it does not, the
/// runtime's unit and journal say why.
fn wait_for_socket(w: &Walk, endpoint: &str, timeout: Duration) -> StepDone {
    let cri = (w.fx.cri)(endpoint, timeout).map_err(|e| {
        let unit = w.plan.target.unit();
        unit_failure(w.fx, unit, format!("{e:#}"))
    })?;
    let v = cri.version()?;
    Ok(Some(format!(
        "{} {} answers on {endpoint}",
        v.runtime_name, v.runtime_version
    )))
}

/// The check's pull through CRI, as the kubelet pulls (its credential providers asked). On an
/// air-gapped node a pull that fails is no failure when the runtime has the image, carried over
/// from Docker.
fn verify_pull(
    w: &Walk,
    endpoint: &str,
    image: &str,
    providers: Option<&crate::cri::provider::Source>,
    verification: &mut Option<Verification>,
) -> StepDone {
    let (node, fx, opts, plan) = (w.node, w.fx, w.opts, w.plan);
    let image = test_image(plan, image);
    let cri = (fx.cri)(endpoint, opts.socket_timeout)?;
    let cred = cri::credentials_for(node, providers, &image)?;
    let v = match cri::verify(cri.as_ref(), endpoint, &image, cred.as_ref()) {
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
    let detail = pull_detail(&image, &v);
    *verification = Some(v);
    Ok(Some(detail))
}

/// Docker's stops that went on past their step, joined; a unit still running after is a
/// failure named with it.
fn wait_stopped(fx: &Effects, units: &[String], timeout: Duration) -> StepDone {
    fx.systemd.wait_stops(timeout).map_err(|e| {
        let unit = units.first().map_or("docker.service", String::as_str);
        unit_failure(fx, unit, format!("{e:#}"))
    })?;
    let states = fx.systemd.active_states(units)?;
    match units.iter().zip(&states).find(|(_, s)| running(s)) {
        Some((u, s)) => Err(unit_failure(fx, u, format!("{u} is {s} after its stop"))),
        None => Ok(None),
    }
}

/// `systemctl start` or `restart` of a unit. systemd's start limit (5 starts in 10 s by
/// default), hit by a migration right after another one or its rollback, is not the unit's
/// fault: it is cleared and the start tried once more.
fn start_unit(fx: &Effects, verb: &str, unit: &str) -> StepDone {
    match fx.systemd.act(verb, Some(unit)) {
        Ok(()) => Ok(None),
        Err(e) if format!("{e:#}").contains("attempted too often") => {
            let _ = fx.systemd.act("reset-failed", Some(unit));
            fx.systemd
                .act(verb, Some(unit))
                .map(|_| {
                    Some(format!(
                        "after `systemctl reset-failed {unit}` (start limit hit)"
                    ))
                })
                .map_err(|e| unit_failure(fx, unit, format!("{unit} did not {verb}: {e:#}")))
        }
        Err(e) => Err(unit_failure(
            fx,
            unit,
            format!("{unit} did not {verb}: {e:#}"),
        )),
    }
}

/// The check's pull, said: the image, its digest, the time, whose credentials.
fn pull_detail(image: &str, v: &Verification) -> String {
    format!(
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
    )
}

/// The test pod, said: where it ran, how its cgroup driver was checked, what it left.
fn sandbox_detail(r: &cri::sandbox::SandboxReport) -> String {
    format!(
        "test pod ran and was removed in {} ms on {}: {} under {} (cgroup driver {}), {}{}{}",
        r.duration_ms,
        r.runtime_handler,
        r.network,
        r.cgroup_parent,
        r.driver_checked_by,
        r.container_state,
        r.network_note
            .as_deref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default(),
        if r.earlier_leftovers.is_empty() {
            String::new()
        } else {
            format!(
                "; left by an earlier attempt and still not removable: {} (`crictl rmp -f ID` once the cause is fixed)",
                r.earlier_leftovers.join(", ")
            )
        }
    )
}

/// The image a check pulls and runs: `--test-image` when given, else the plan's (the pause image).
fn test_image(plan: &backup::StoredPlan, planned: &str) -> String {
    if plan.test_image.is_empty() {
        planned.to_string()
    } else {
        plan.test_image.clone()
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
        // A state systemctl could not tell in time is not "active": wait on.
        last = fx
            .systemd
            .active_states(&[unit.to_string()])
            .map(|s| s.concat())
            .unwrap_or_else(|e| format!("unknown ({e:#})"));
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
    node_name: &crate::names::NodeName,
    endpoint: &str,
) -> String {
    const KEY: &str = "kubeadm.alpha.kubernetes.io/cri-socket";
    let cmd = format!("kubectl annotate node {node_name} {KEY}={endpoint} --overwrite");
    let Some(k) = kubectl else {
        return format!("no kubectl or kubeconfig here; if the node has a kubeadm CRI socket annotation, run: {cmd}");
    };
    let path = "jsonpath={.metadata.annotations.kubeadm\\.alpha\\.kubernetes\\.io/cri-socket}";
    match k.run(&["get", "node", "-o", path, "--", node_name.as_str()]) {
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
            "--overwrite",
            "--",
            node_name.as_str(),
            &format!("{KEY}={endpoint}"),
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

#[cfg(test)]
mod walk_tests;
