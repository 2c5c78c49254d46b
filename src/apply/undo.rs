//! Undo a migration from its journal: exactly the changes it recorded, in reverse — the files it
//! wrote (each checked against the backup first: one already as it was is left alone), the unit
//! links it changed, the units it stopped, started or restarted, the cordon. A unit the run never
//! touched is never restarted. Each step is tried even when one before it failed; the failures
//! are reported together. Running it twice is harmless: every step is idempotent.

use super::backup::{remove_created_dirs, restore_file, Backup, Effect, EffectRecord, Mark, State};
use super::{Effects, Progress, StepDone, StepReport, StepStatus};
use crate::node::Node;
use crate::runtime::{self, DOCKER_UNITS};
use crate::system::gate;
use crate::system::systemd::{running, UnitState};
use anyhow::{anyhow, Result};
use std::time::Instant;

/// The order to bring services back in: the runtimes first (Docker needs containerd), then
/// Docker's units (sockets before their services), the kubelet last. The same units as the
/// backup's, from the same descriptions (src/runtime/mod.rs).
const RESTORE_ORDER: [&str; 7] = [
    runtime::ALL[0].unit,
    runtime::ALL[1].unit,
    DOCKER_UNITS[0],
    DOCKER_UNITS[1],
    DOCKER_UNITS[2],
    DOCKER_UNITS[3],
    "kubelet.service",
];

/// What the recorded effects ask of the undo.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UndoPlan {
    /// The kubelet was started or restarted on the new runtime: stop it before the files go back.
    pub stop_kubelet_first: bool,
    /// Files written (or maybe written), newest first, each once.
    pub files: Vec<String>,
    pub daemon_reload: bool,
    /// Unit links changed, newest first, each unit once.
    pub links: Vec<String>,
    /// Units stopped, started or restarted, in the order to bring them back.
    pub units: Vec<String>,
    /// Of those, the units whose only change was a stop that failed: brought back only if they
    /// are not running as they were (a unit that was never stopped is not restarted).
    pub failed_stops: Vec<String>,
    pub uncordon: bool,
    /// Address reservations moved into the backup, to move back.
    pub released: Vec<String>,
    /// SELinux equivalence rules added: (path, like), to delete.
    pub equivalences: Vec<(String, String)>,
    /// The kubelet's start gate installed: removed, with a daemon-reload.
    pub gate: bool,
}

impl UndoPlan {
    pub fn from_records(records: &[EffectRecord], cordoned: bool) -> UndoPlan {
        let mut p = UndoPlan {
            uncordon: cordoned,
            ..UndoPlan::default()
        };
        let mut touched = Vec::new();
        let mut surely_touched = Vec::new();
        for r in records.iter().rev() {
            if let Effect::Unit { verb, unit } = &r.effect {
                if !(verb == "stop" && r.mark == Mark::Failed) {
                    surely_touched.push(unit.clone());
                }
            }
            match &r.effect {
                Effect::Cordon { .. } => p.uncordon = true,
                Effect::Write { path, unit_file } => {
                    if !p.files.contains(path) {
                        p.files.push(path.clone());
                    }
                    // A record of an earlier version does not say: judged by the path, as
                    // that version did.
                    if unit_file.unwrap_or_else(|| path.contains("/systemd/")) {
                        p.daemon_reload = true;
                    }
                }
                Effect::DaemonReload => p.daemon_reload = true,
                Effect::Gate { .. } => {
                    p.gate = true;
                    p.daemon_reload = true;
                }
                Effect::Equivalence { path, like } => {
                    // Recorded before the rule is added: one that failed to be added is not
                    // deleted (it may be the operator's).
                    let pair = (path.clone(), like.clone());
                    if r.mark == Mark::Done && !p.equivalences.contains(&pair) {
                        p.equivalences.push(pair);
                    }
                }
                Effect::Release { paths } => {
                    for path in paths {
                        if !p.released.contains(path) {
                            p.released.push(path.clone());
                        }
                    }
                }
                Effect::Unit { verb, unit } => match verb.as_str() {
                    "enable" | "disable" => {
                        if !p.links.contains(unit) {
                            p.links.push(unit.clone());
                        }
                    }
                    _ => {
                        if unit == "kubelet.service" && verb != "stop" {
                            p.stop_kubelet_first = true;
                        }
                        touched.push(unit.clone());
                    }
                },
            }
        }
        p.failed_stops = touched
            .iter()
            .filter(|u| !surely_touched.contains(u))
            .cloned()
            .collect();
        p.failed_stops.dedup();
        // In the order to bring them back (units this build does not know of last but one,
        // before the kubelet).
        p.units = restore_order(&[], &touched);
        p
    }
}

/// The order to bring units back in: the runtimes first (Docker needs containerd), sockets
/// before their services, units this build does not know of after those, the kubelet last; and
/// whatever that says, each unit after every unit it depends on (it is among their recorded
/// `dependents`: it requires them, is bound to them or part of them).
pub fn restore_order(states: &[UnitState], touched: &[String]) -> Vec<String> {
    let mut names: Vec<String> = states
        .iter()
        .filter(|u| u.exists())
        .map(|u| u.unit.clone())
        .collect();
    for t in touched {
        if !names.contains(t) {
            names.push(t.clone());
        }
    }
    let rank = |n: &str| -> (usize, String) {
        let at = RESTORE_ORDER.iter().position(|u| *u == n);
        let r = match at {
            Some(i) if n == "kubelet.service" => 2 * i + 2,
            Some(i) => 2 * i,
            None => 2 * (RESTORE_ORDER.len() - 1) - 1,
        };
        (r, n.to_string())
    };
    names.sort_by_key(|n| rank(n));
    let needs = |n: &str| -> Vec<&str> {
        states
            .iter()
            .filter(|u| u.unit != n && u.dependents.iter().any(|d| d == n))
            .map(|u| u.unit.as_str())
            .filter(|u| names.iter().any(|x| x == u))
            .collect()
    };
    let mut out: Vec<String> = Vec::new();
    while out.len() < names.len() {
        let rest: Vec<&String> = names.iter().filter(|n| !out.contains(n)).collect();
        // The first whose prerequisites are all placed; a cycle (never in a sane node) takes
        // the first as it comes.
        let next = rest
            .iter()
            .find(|n| needs(n).iter().all(|p| out.iter().any(|o| o == p)))
            .unwrap_or(&rest[0]);
        out.push((*next).clone());
    }
    out
}

/// After an undo: each recorded unit compared with its state in the backup. Live, a unit that
/// ran before must run again, and one the run touched that did not run must not; live or not,
/// its enablement must be the one it had. Each difference is named with the command that mends
/// it.
fn check_units(fx: &Effects, units: &[UnitState], touched: &[String], live: bool) -> StepDone {
    let mut differ = Vec::new();
    let mut notes = Vec::new();
    let mut checked = 0;
    for u in units.iter().filter(|u| u.exists()) {
        let now = match fx.systemd.state(&u.unit) {
            Ok(s) => s,
            Err(e) => {
                differ.push(format!(
                    "{}: its state cannot be read ({e:#}); check it with `systemctl status {}`",
                    u.unit, u.unit
                ));
                continue;
            }
        };
        checked += 1;
        if now.enabled != u.enabled {
            differ.push(format!(
                "{} is {} but was {} before the run{}",
                u.unit,
                now.enabled,
                u.enabled,
                u.link_verb()
                    .map(|v| format!(" (mend: systemctl {v} {})", u.unit))
                    .unwrap_or_default()
            ));
        }
        if !live {
            continue;
        }
        match (u.was_active(), running(&now.active)) {
            (true, false) => differ.push(format!(
                "{} is {} but was {} before the run (mend: systemctl start {})",
                u.unit, now.active, u.active, u.unit
            )),
            (false, true) if touched.contains(&u.unit) => differ.push(format!(
                "{} is {} but was {} before the run (mend: systemctl stop {})",
                u.unit, now.active, u.active, u.unit
            )),
            // Running now though it did not before, and the run never touched it: started by
            // something else meanwhile (socket activation, an operator): said, left alone.
            (false, true) => notes.push(format!(
                "{} is {} (it was {}; not started by this run, left alone)",
                u.unit, now.active, u.active
            )),
            _ => {}
        }
    }
    if !differ.is_empty() {
        anyhow::bail!(
            "{} unit(s) not as before the run: {}",
            differ.len(),
            differ.join("; ")
        );
    }
    Ok(Some(format!(
        "{checked} unit(s) as before the run{}",
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    )))
}

/// Stop and remove every sandbox the runtime made since the migration began. A runtime that no
/// longer answers ran no pods worth removing (its failure is why the rollback runs).
fn remove_new_pods(fx: &Effects, endpoint: &str, since: i64) -> StepDone {
    let cri = match (fx.cri)(endpoint, std::time::Duration::from_secs(5)) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Some(format!(
                "the runtime does not answer ({e:#}): no pods to remove"
            )))
        }
    };
    let pods = match cri.pod_sandboxes_since(since) {
        Ok(p) => p,
        Err(e) => return Ok(Some(format!("cannot list its pods ({e:#}): none removed"))),
    };
    let mut failed = Vec::new();
    for p in &pods {
        let _ = cri.stop_pod_sandbox(p);
        if let Err(e) = cri.remove_pod_sandbox(p) {
            failed.push(format!("{p}: {e:#}"));
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} pod(s) could not be removed (remove with `crictl rmp -f ID`): {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(Some(format!("{} pod(s) removed", pods.len())))
}

/// The rollback's steps as they run: each said to the operator, timed, journaled, and its
/// error kept (a failed step does not stop the others: the rest of the node still goes back).
struct Steps<'p> {
    progress: &'p mut dyn Progress,
    reports: Vec<StepReport>,
    errors: Vec<String>,
}

impl Steps<'_> {
    fn run(&mut self, name: String, b: &Backup, f: &mut dyn FnMut() -> StepDone) {
        self.progress.begin(&name);
        let t0 = Instant::now();
        let r = f();
        let report = StepReport {
            step: name.clone(),
            status: if r.is_ok() {
                StepStatus::Done
            } else {
                StepStatus::Failed
            },
            duration_ms: t0.elapsed().as_millis() as u64,
            detail: match &r {
                Ok(d) => d.clone(),
                Err(e) => Some(format!("{e:#}")),
            },
        };
        self.progress.end(&report);
        let _ = b.journal(&format!(
            "rollback {} {name}",
            if r.is_ok() { "done" } else { "failed" }
        ));
        if let Err(e) = r {
            self.errors.push(format!("{name}: {e:#}"));
        }
        self.reports.push(report);
    }
}

/// A systemctl verb as a step's outcome.
fn act(fx: &Effects, verb: &str, unit: Option<&str>) -> StepDone {
    fx.systemd.act(verb, unit).map(|_| None)
}

/// Bringing a unit back must not fail on systemd's start limit (a unit started several times
/// in a short while, as Docker's unit allows 3 starts a minute): clear it and try once more.
fn bring_back(fx: &Effects, verb: &str, unit: &str) -> StepDone {
    match fx.systemd.act(verb, Some(unit)) {
        Ok(()) => Ok(None),
        Err(first) => {
            let _ = fx.systemd.act("reset-failed", Some(unit));
            std::thread::sleep(std::time::Duration::from_secs(1));
            fx.systemd
                .act(verb, Some(unit))
                .map(|_| {
                    Some(format!(
                        "after `systemctl reset-failed {unit}`: the first try failed ({first:#})"
                    ))
                })
                .map_err(|e| {
                    e.context(format!(
                        "also before `systemctl reset-failed {unit}`: {first:#}"
                    ))
                })
        }
    }
}

/// Puts the node back as the backup has it, every step tried even where one before failed;
/// the steps' reports, and an error naming each step that failed.
pub fn undo(
    node: &Node,
    b: &mut Backup,
    fx: &Effects,
    progress: &mut dyn Progress,
) -> (Vec<StepReport>, Result<()>) {
    let live = b.manifest.live;
    let plan = UndoPlan::from_records(&b.records_to_undo(), b.manifest.cordoned.is_some());
    let mut steps = Steps {
        progress,
        reports: Vec::new(),
        errors: Vec::new(),
    };
    if live && plan.stop_kubelet_first {
        stop_the_new_pods(&mut steps, b, fx);
    }
    restore_files(&mut steps, node, b, fx, &plan);
    let units = b.manifest.units.clone();
    restore_links(&mut steps, b, fx, &plan, &units);
    if live {
        restore_units(&mut steps, b, fx, &plan, &units);
    }
    // The report is checked, not assumed: every recorded unit as the backup has it.
    steps.run(
        "rollback: check every unit against the state it had before the run".into(),
        b,
        &mut || check_units(fx, &units, &plan.units, live),
    );
    if plan.uncordon {
        uncordon(&mut steps, b, fx);
    }
    let Steps {
        reports, errors, ..
    } = steps;
    let result = if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    };
    let _ = b.set_state(if result.is_ok() {
        State::RolledBack
    } else {
        State::RollbackFailed
    });
    (reports, result)
}

/// The kubelet stopped, then the pods it ran on the new runtime removed: their shims outlive
/// it, and back on Docker the kubelet runs them again, so these would be twins.
fn stop_the_new_pods(steps: &mut Steps, b: &Backup, fx: &Effects) {
    steps.run("rollback: stop kubelet.service".into(), b, &mut || {
        act(fx, "stop", Some("kubelet.service"))
    });
    let endpoint = b.manifest.plan.endpoint.clone();
    let since = b
        .manifest
        .created
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_nanosecond() as i64)
        .unwrap_or(i64::MAX);
    steps.run(
        format!("rollback: remove the pods the kubelet ran on {endpoint}"),
        b,
        &mut || remove_new_pods(fx, &endpoint, since),
    );
}

/// Every file as it was, the directories the run made gone, the addresses it released put
/// back, the SELinux equivalences it added removed, and systemd told of restored units.
fn restore_files(steps: &mut Steps, node: &Node, b: &Backup, fx: &Effects, plan: &UndoPlan) {
    let live = b.manifest.live;
    for path in &plan.files {
        steps.run(format!("rollback: restore {path}"), b, &mut || {
            restore_file(node, b, path)
                .map(|changed| (!changed).then(|| "already as it was".to_string()))
        });
    }
    remove_created_dirs(node, b);
    if !plan.released.is_empty() {
        steps.run(
            format!(
                "rollback: put back {} host-local address reservation(s)",
                plan.released.len()
            ),
            b,
            &mut || super::release::put_back(node, &b.node_dir, &plan.released),
        );
    }
    for (path, like) in plan.equivalences.iter().filter(|_| live) {
        steps.run(
            format!(
                "rollback: {}",
                crate::names::shell_line(&["semanage", "fcontext", "-d", "-e", like, "--", path])
            ),
            b,
            &mut || fx.labels.remove_equivalence(path, like).map(|_| None),
        );
    }
    if live && plan.gate {
        steps.run(
            format!(
                "rollback: remove the kubelet's start gate ({})",
                gate::DROP_IN
            ),
            b,
            &mut || remove_gate(fx),
        );
    }
    if live && plan.daemon_reload {
        steps.run("rollback: systemctl daemon-reload".into(), b, &mut || {
            act(fx, "daemon-reload", None)
        });
    }
}

/// The gate gone. A start of the kubelet still waiting at it (this run's own was stopped first)
/// is stopped, not let through: it would run on the unit systemd loaded before the reload.
fn remove_gate(fx: &Effects) -> StepDone {
    let held = fx
        .systemd
        .active_states(&[gate::UNIT.to_string()])
        .is_ok_and(|s| s.iter().any(|a| a == "activating"));
    if held {
        act(fx, "stop", Some(gate::UNIT))?;
    }
    fx.gate.remove()?;
    Ok(held.then(|| format!("{} was held at it: stopped", gate::UNIT)))
}

/// Each unit's enablement as the backup has it (static, masked, indirect: never changed by a
/// migration).
fn restore_links(
    steps: &mut Steps,
    b: &Backup,
    fx: &Effects,
    plan: &UndoPlan,
    units: &[UnitState],
) {
    for unit in &plan.links {
        let Some(u) = units.iter().find(|u| &u.unit == unit && u.exists()) else {
            continue;
        };
        let Some(verb) = u.link_verb() else {
            continue;
        };
        steps.run(format!("rollback: {verb} {unit}"), b, &mut || {
            act(fx, verb, Some(unit))
        });
    }
}

/// Each unit active or not as the backup has it, in the order they depend on each other.
fn restore_units(
    steps: &mut Steps,
    b: &Backup,
    fx: &Effects,
    plan: &UndoPlan,
    units: &[UnitState],
) {
    for name in restore_order(units, &plan.units) {
        let Some(u) = units.iter().find(|u| u.unit == name && u.exists()) else {
            continue;
        };
        let now_active = || fx.systemd.state(&name).is_ok_and(|s| running(&s.active));
        if !plan.units.contains(&name) {
            // Not recorded as touched, yet stopped since the backup: systemd stopped it
            // along with a unit the run stopped (and the record of that was lost: a run
            // killed in between, an older version). Started, never restarted.
            if u.was_active() && !now_active() {
                steps.run(
                    format!("rollback: start {name} (it was active before the run)"),
                    b,
                    &mut || bring_back(fx, "start", &name),
                );
            }
            continue;
        }
        if plan.failed_stops.contains(&name) && u.was_active() == now_active() {
            continue;
        }
        if u.was_active() {
            // restart: a runtime reloads its restored config; a stopped unit starts.
            steps.run(format!("rollback: restart {name}"), b, &mut || {
                bring_back(fx, "restart", &name)
            });
        } else if now_active() {
            steps.run(format!("rollback: stop {name}"), b, &mut || {
                act(fx, "stop", Some(&name))
            });
        }
    }
}

/// The node the run cordoned, uncordoned. The name is the backup's (the node's file): checked
/// before it reaches kubectl. Offline nothing talks to the cluster: the step is said, not run.
fn uncordon(steps: &mut Steps, b: &mut Backup, fx: &Effects) {
    let n = b.manifest.cordoned.clone().or_else(|| {
        b.manifest.effects.iter().find_map(|r| match &r.effect {
            Effect::Cordon { node } => Some(node.clone()),
            _ => None,
        })
    });
    let Some(n) = n else {
        return;
    };
    let live = b.manifest.live;
    let name = crate::names::NodeName::parse(&n);
    steps.run(
        format!("rollback: uncordon node {}", n.escape_debug()),
        b,
        &mut || match &name {
            Err(e) => Err(anyhow!("the backup's cordoned node: {e}; not uncordoned")),
            Ok(_) if !live => Err(anyhow!(
                "offline (--root): nothing talks to the cluster; run `kubectl uncordon -- {n}` where kubectl reaches it"
            )),
            Ok(n) => fx
                .kubectl
                .ok_or_else(|| anyhow!("no kubectl to uncordon with"))?
                .run(&["uncordon", "--", n.as_str()])
                .map(|_| None),
        },
    );
    if steps.errors.is_empty() {
        b.manifest.cordoned = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(verb: &str, unit: &str) -> Effect {
        Effect::Unit {
            verb: verb.into(),
            unit: unit.into(),
        }
    }

    fn done(effects: &[Effect]) -> Vec<EffectRecord> {
        effects
            .iter()
            .map(|e| EffectRecord {
                step: String::new(),
                effect: e.clone(),
                mark: Mark::Done,
            })
            .collect()
    }

    fn write(path: &str, unit_file: Option<bool>) -> Effect {
        Effect::Write {
            path: path.into(),
            unit_file,
        }
    }

    impl UndoPlan {
        fn from_effects(effects: &[Effect], cordoned: bool) -> UndoPlan {
            UndoPlan::from_records(&done(effects), cordoned)
        }
    }

    #[test]
    fn only_what_was_done_is_undone() {
        // A failed drain: nothing but the cordon.
        let p = UndoPlan::from_effects(&[Effect::Cordon { node: "n".into() }], false);
        assert_eq!(
            p,
            UndoPlan {
                uncordon: true,
                ..UndoPlan::default()
            }
        );
        // Stopped the kubelet and Docker, then the first write failed.
        let p = UndoPlan::from_effects(
            &[
                unit("stop", "kubelet.service"),
                unit("stop", "docker.socket"),
                unit("stop", "docker.service"),
                write("/var/lib/kubelet/kubeadm-flags.env", Some(false)),
            ],
            false,
        );
        assert!(!p.stop_kubelet_first, "the kubelet was never started again");
        assert_eq!(p.files, ["/var/lib/kubelet/kubeadm-flags.env"]);
        assert_eq!(
            p.units,
            ["docker.socket", "docker.service", "kubelet.service"],
            "containerd was never touched: not restarted"
        );
        assert!(p.links.is_empty());
        // The whole way: the kubelet started on containerd first, files newest first.
        let p = UndoPlan::from_effects(
            &[
                unit("stop", "kubelet.service"),
                unit("stop", "docker.service"),
                write("/a", Some(false)),
                write("/etc/systemd/system/x.conf", Some(true)),
                Effect::DaemonReload,
                unit("restart", "containerd.service"),
                unit("start", "kubelet.service"),
                unit("disable", "docker.service"),
                unit("enable", "containerd.service"),
            ],
            false,
        );
        assert!(p.stop_kubelet_first);
        assert_eq!(p.files, ["/etc/systemd/system/x.conf", "/a"]);
        assert!(p.daemon_reload);
        assert_eq!(p.links, ["containerd.service", "docker.service"]);
        assert_eq!(
            p.units,
            ["containerd.service", "docker.service", "kubelet.service"]
        );
        assert!(p.failed_stops.is_empty());
        // A unit file written, and the run killed before its daemon-reload: the record says
        // it is one, wherever it lives; a record of an earlier version is judged by its path.
        for (w, reload) in [
            (
                write("/usr/local/lib/systemd/x.service", Some(false)),
                false,
            ),
            (
                write("/run/kubelet-units/kubelet.service", Some(true)),
                true,
            ),
            (write("/etc/systemd/system/x.conf", None), true),
            (write("/etc/default/kubelet", None), false),
        ] {
            assert_eq!(
                UndoPlan::from_effects(std::slice::from_ref(&w), false).daemon_reload,
                reload,
                "{w:?}"
            );
        }
        // A stop that failed: the unit may still run as it did.
        let mut r = done(&[
            unit("stop", "kubelet.service"),
            unit("stop", "docker.socket"),
        ]);
        r[1].mark = Mark::Failed;
        let p = UndoPlan::from_records(&r, false);
        assert_eq!(p.units, ["docker.socket", "kubelet.service"]);
        assert_eq!(p.failed_stops, ["docker.socket"]);
    }

    fn state(unit: &str, dependents: &[&str]) -> UnitState {
        UnitState {
            unit: unit.into(),
            enabled: "enabled".into(),
            active: "active".into(),
            dependents: dependents.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn units_come_back_after_what_they_depend_on() {
        // EKS-like: the kubelet requires docker.service; a node's unit requires the kubelet;
        // another is bound to Docker; Docker's service requires its socket.
        let states = [
            state("kubelet.service", &["watch-kubelet.service"]),
            state("docker.service", &["kubelet.service", "app.service"]),
            state("docker.socket", &["docker.service"]),
            state("containerd.service", &[]),
            state("app.service", &[]),
            state("watch-kubelet.service", &[]),
        ];
        assert_eq!(
            restore_order(&states, &[]),
            [
                "containerd.service",
                "docker.socket",
                "docker.service",
                "app.service",
                "kubelet.service",
                "watch-kubelet.service"
            ]
        );
        // A unit that requires a unit systemd would otherwise bring back later waits for it.
        let states = [
            state("containerd.service", &["docker.socket"]),
            state("docker.socket", &["docker.service"]),
            state("docker.service", &["containerd.service"]),
        ];
        assert_eq!(restore_order(&states, &[]).len(), 3, "a cycle still ends");
    }
}
