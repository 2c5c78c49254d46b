//! Undo a migration from its backup: every file byte for byte, the recorded unit states, the
//! cordon. Each step is tried even when one before it failed; the failures are reported
//! together. Running it twice is harmless: every step is idempotent.

use crate::apply::backup::{restore_files, Backup, State};
use crate::apply::{Effects, Progress, StepReport, StepStatus};
use crate::node::Node;
use anyhow::{anyhow, Result};
use std::time::Instant;

/// The order to bring services back in: the runtimes first (Docker needs containerd), the
/// kubelet last.
const RESTORE_ORDER: [&str; 7] = [
    "containerd.service",
    "crio.service",
    "docker.socket",
    "docker.service",
    "cri-docker.socket",
    "cri-docker.service",
    "kubelet.service",
];

pub fn undo(
    node: &Node,
    b: &mut Backup,
    fx: &Effects,
    progress: &mut dyn Progress,
) -> (Vec<StepReport>, Result<()>) {
    let live = b.manifest.live;
    let mut reports = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut step = |name: String, f: &mut dyn FnMut() -> Result<()>, b: &Backup| {
        progress.begin(&name);
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
            detail: r.as_ref().err().map(|e| format!("{e:#}")),
        };
        progress.end(&report);
        let _ = b.journal(&format!(
            "rollback {} {name}",
            if r.is_ok() { "done" } else { "failed" }
        ));
        if let Err(e) = r {
            errors.push(format!("{name}: {e:#}"));
        }
        reports.push(report);
    };

    if live {
        step(
            "rollback: stop kubelet.service".into(),
            &mut || fx.systemd.act("stop", Some("kubelet.service")),
            b,
        );
    }
    step(
        format!(
            "rollback: restore {} file(s) from {}",
            b.manifest.files.len(),
            b.node_dir
        ),
        &mut || restore_files(node, b),
        b,
    );
    if live
        && b.manifest
            .files
            .iter()
            .any(|f| f.path.contains("/systemd/"))
    {
        step(
            "rollback: systemctl daemon-reload".into(),
            &mut || fx.systemd.act("daemon-reload", None),
            b,
        );
    }
    let units = b.manifest.units.clone();
    for u in units.iter().filter(|u| u.exists()) {
        let verb = match u.enabled.as_str() {
            "enabled" | "enabled-runtime" => "enable",
            "disabled" => "disable",
            _ => continue, // static, masked, indirect: never changed by a migration
        };
        let unit = u.unit.clone();
        step(
            format!("rollback: {verb} {unit}"),
            &mut || fx.systemd.act(verb, Some(&unit)),
            b,
        );
    }
    if live {
        for name in RESTORE_ORDER {
            let Some(u) = units.iter().find(|u| u.unit == name && u.exists()) else {
                continue;
            };
            if u.was_active() {
                // restart: a runtime reloads its restored config; a stopped unit starts.
                step(
                    format!("rollback: restart {name}"),
                    &mut || fx.systemd.act("restart", Some(name)),
                    b,
                );
            } else if fx.systemd.state(name).active == "active" {
                step(
                    format!("rollback: stop {name}"),
                    &mut || fx.systemd.act("stop", Some(name)),
                    b,
                );
            }
        }
    }
    if let Some(n) = b.manifest.cordoned.clone() {
        step(
            format!("rollback: uncordon node {n}"),
            &mut || {
                fx.kubectl
                    .ok_or_else(|| anyhow!("no kubectl to uncordon with"))?
                    .run(&["uncordon", &n])
                    .map(|_| ())
            },
            b,
        );
        if errors.is_empty() {
            b.manifest.cordoned = None;
        }
    }
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
