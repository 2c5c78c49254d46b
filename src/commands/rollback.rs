//! `cri-migrate rollback`: restore the latest (or the named) backup.

use super::{connect_cri, kubectl_ref, report_failure, Console, NodeAccess};
use crate::apply::backup::{Backup, State};
use crate::apply::{Effects, Progress, Quiet};
use crate::cli::{Output, RollbackArgs};
use crate::error::{exit, Failure};
use crate::guided;
use crate::progress::{Bars, Lines};
use anyhow::Result;
use serde_json::json;
use std::io::Write;

pub fn run(
    t: &NodeAccess,
    args: &RollbackArgs,
    console: Console,
    out: &mut dyn Write,
) -> Result<i32> {
    // A node with no backup at all has nothing to roll back (and gets no lock file).
    if args.backup.is_none() && t.node.list(crate::apply::backup::BACKUPS).is_empty() {
        return Err(Failure::preflight(
            "there is no cri-migrate backup on this node (/var/lib/cri-migrate/backups is empty)",
            "Nothing to roll back.",
        )
        .into());
    }
    // Then the lock: nothing is read or asked while another run works.
    let _lock = crate::apply::preflight::lock(t.node)?;
    let mut b = match &args.backup {
        // Accept the directory as on the node or as a host path under --root.
        Some(dir) => {
            let rel = std::path::Path::new(dir).strip_prefix(t.node.root()).map(|p| format!("/{}", p.display())).unwrap_or_else(|_| dir.clone());
            Backup::open(t.node, &rel).map_err(|e| Failure::preflight(format!("{e:#}"), "Name a directory under /var/lib/cri-migrate/backups."))?
        }
        None => Backup::latest(t.node)?.ok_or_else(|| Failure::preflight("there is no cri-migrate backup on this node (/var/lib/cri-migrate/backups is empty)", "Nothing to roll back."))?,
    };
    if !args.yes {
        if !console.interactive() {
            return Err(Failure::Usage("there is no terminal to ask on: run with --yes to roll back unattended. Nothing was changed.".into()).into());
        }
        let state = serde_json::to_value(b.manifest.state)?;
        guided::confirm_or_cancel(
            &format!(
                "Restore the node from {} (taken {}, state {})?",
                b.node_dir,
                b.manifest.created,
                state.as_str().unwrap_or("")
            ),
            "the node was left as it is",
            false,
        )?;
    }
    if b.manifest.live && !t.live {
        return Err(Failure::preflight(
            format!("{} was taken on the live node; restoring it under --root would not restore the services", b.node_dir),
            "Run the rollback on the node itself.",
        )
        .into());
    }
    let was = b.manifest.state;
    crate::signals::set_phase(crate::signals::Phase::RollingBack);
    let systemd = t.systemd();
    let kubectl = t.kubectl(None);
    let fx = Effects {
        systemd: &systemd,
        kubectl: kubectl_ref(&kubectl),
        cri: &connect_cri,
        labels: &crate::system::selinux::RealLabels,
        interrupted: &crate::signals::caught,
        exits: &crate::system::exits::NoExits,
        gate: &crate::system::gate::RealGate {
            root: t.node.root().to_path_buf(),
        },
    };
    let mut progress: Box<dyn Progress> = match args.output {
        Output::Json => Box::new(Quiet),
        Output::Text if console.stderr_tty => Box::new(Bars::default()),
        Output::Text => Box::new(Lines),
    };
    b.manifest
        .reason
        .get_or_insert_with(|| "rolled back by `cri-migrate rollback`".to_string());
    let (steps, r) = crate::apply::undo::undo(t.node, &mut b, &fx, progress.as_mut());
    let failure = r.err().map(|e| Failure::RollbackFailed {
        reason: "rollback requested".into(),
        rollback: format!("{e:#}"),
        backup: b.node_dir.clone(),
    });
    match args.output {
        Output::Json => crate::error::write_envelope(
            out,
            "rollback",
            json!({
                "result": failure.as_ref().map(|f| f.kind()).unwrap_or("rolled-back"),
                "backup": b.node_dir,
                "state_before": was,
                "steps": steps,
                "error": failure.as_ref().map(Failure::json),
            }),
        )?,
        Output::Text if failure.is_none() => {
            let again = if was == State::RolledBack {
                " (it had been rolled back before; restored again)"
            } else {
                ""
            };
            writeln!(out, "Restored the node from {}{again}.", b.node_dir)?;
        }
        Output::Text => {}
    }
    Ok(match &failure {
        None => exit::OK,
        Some(f) => report_failure(f),
    })
}
