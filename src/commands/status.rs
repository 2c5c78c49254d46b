//! `cri-migrate status`: the state of the last (or current) migration on this node, from the
//! journal in its backup directory and the lock — what fleet engines read (docs/fleet.md once
//! it exists, docs/json.md now). Read-only: it never takes the lock, so it answers while a
//! migration runs.

use super::NodeAccess;
use crate::apply::backup::{Backup, Effect, Mark, State};
use crate::apply::preflight;
use crate::cli::{Output, StatusArgs};
use crate::error::exit;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// What `status` says, one of six states.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Said {
    /// No migration was ever started here (or none that changed anything).
    None,
    /// A run holds the lock now.
    InProgress,
    /// A run began its changes and ended before finishing (kill -9, power loss).
    Interrupted,
    Migrated,
    RolledBack,
    /// The rollback did not complete, or `--no-rollback` left it: a person must look.
    NeedsAPerson,
}

impl Said {
    pub fn exit_code(self) -> i32 {
        match self {
            Said::Migrated => exit::OK,
            Said::RolledBack => exit::ROLLED_BACK,
            Said::NeedsAPerson => exit::ROLLBACK_FAILED,
            Said::InProgress | Said::Interrupted => exit::STATUS_IN_PROGRESS,
            Said::None => exit::STATUS_NONE,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub state: Said,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// When the run started (its backup), and for a migrated node when it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The step the run is at (or was at when it ended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a node that needs a person: each file to put back from the backup, each unit the run
    /// touched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore: Vec<String>,
    pub next: String,
}

/// The time of the journal's last line that ends with `suffix`.
fn journal_time(b: &Backup, suffix: &str) -> Option<String> {
    b.journal_line(suffix)?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

fn last_step(b: &Backup) -> Option<String> {
    b.manifest.effects.last().map(|r| {
        let mark = match r.mark {
            Mark::Begun => "in flight",
            Mark::Done => "done",
            Mark::Failed => "failed",
        };
        format!("{} ({mark})", r.step)
    })
}

pub fn status_of(t: &NodeAccess) -> Result<Status> {
    let mut st = Status {
        state: Said::None,
        target: None,
        backup: None,
        started: None,
        finished: None,
        step: None,
        pid: None,
        command_line: None,
        reason: None,
        restore: vec![],
        next: String::new(),
    };
    let holder = preflight::holder(t.node);
    // The newest run that changed something (a run set aside changed nothing).
    let mut found = None;
    for dir in Backup::all(t.node)? {
        let b = Backup::open(t.node, &dir)?;
        if b.manifest.state == State::Abandoned
            || (b.manifest.state == State::InProgress && !b.began_changes() && holder.is_none())
        {
            continue;
        }
        found = Some(b);
        break;
    }
    if let Some(h) = &holder {
        st.state = Said::InProgress;
        st.pid = Some(h.pid);
        st.command_line = Some(h.command.clone());
        st.started = Some(h.since.clone());
    }
    let Some(b) = found else {
        st.next = match st.state {
            Said::InProgress => "a run is preparing (inspecting, carrying images); nothing has changed yet".into(),
            _ => "nothing recorded: `cri-migrate migrate --to containerd --dry-run` shows what a migration would do".into(),
        };
        return Ok(st);
    };
    st.target = Some(b.manifest.plan.target.name().to_string());
    st.backup = Some(b.node_dir.clone());
    st.started.get_or_insert(b.manifest.created.clone());
    st.step = last_step(&b);
    st.reason = b.manifest.reason.clone();
    if st.state == Said::InProgress {
        st.next = format!("wait for pid {} to end", st.pid.unwrap_or_default());
        return Ok(st);
    }
    match b.manifest.state {
        State::Done => {
            st.state = Said::Migrated;
            st.finished = journal_time(&b, "state done");
            st.next = format!("to go back: cri-migrate rollback --backup {}", b.node_dir);
        }
        State::RolledBack => {
            st.state = Said::RolledBack;
            st.finished = journal_time(&b, "state rolled-back");
            st.next = "the node runs as it did before the migration".into();
        }
        // A failed rollback, or a failure `--no-rollback` left as it was.
        State::RollbackFailed | State::InProgress if b.manifest.reason.is_some() => {
            st.state = Said::NeedsAPerson;
            st.restore = restore_list(&b);
            st.next = format!(
                "a person must look: `cri-migrate rollback --backup {}` tries again; by hand, see docs/operations.md",
                b.node_dir
            );
        }
        _ => {
            st.state = Said::Interrupted;
            st.next = "`cri-migrate migrate` finishes it; `cri-migrate rollback` undoes it".into();
        }
    }
    Ok(st)
}

/// What a person must put back: each file the run wrote, each unit it touched.
fn restore_list(b: &Backup) -> Vec<String> {
    let mut out = Vec::new();
    for r in b.records_to_undo() {
        let line = match &r.effect {
            Effect::Equivalence { path, like } => {
                format!(
                    "SELinux equivalence {path} = {like}: {}",
                    crate::names::shell_line(&[
                        "semanage", "fcontext", "-d", "-e", like, "--", path
                    ])
                )
            }
            Effect::Gate { unit } => format!(
                "the start gate of {unit}: remove {} and {}, then run `systemctl daemon-reload`",
                crate::system::gate::DROP_IN,
                crate::system::gate::FIFO
            ),
            Effect::Release { paths } => format!(
                "address reservations {}: move back from {}/released",
                paths.join(", "),
                b.node_dir
            ),
            Effect::Write { path, .. } => {
                let f = b.manifest.files.iter().find(|f| &f.path == path);
                match f {
                    Some(f) if f.existed => format!(
                        "file {path}: copy back {}/files{} (mode {:04o}, owner {}:{})",
                        b.node_dir,
                        crate::node::clean(path),
                        f.mode,
                        f.uid,
                        f.gid
                    ),
                    _ => format!("file {path}: did not exist before; remove it"),
                }
            }
            Effect::Unit { verb, unit } => {
                let was = b.manifest.units.iter().find(|u| &u.unit == unit);
                match was {
                    Some(u) => format!(
                        "unit {unit} ({verb} by the run): was {} and {}",
                        u.enabled, u.active
                    ),
                    None => format!("unit {unit} ({verb} by the run)"),
                }
            }
            Effect::Cordon { node } => format!("node {node}: cordoned by the run; uncordon it"),
            Effect::DaemonReload => continue,
        };
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

pub fn run(t: &NodeAccess, args: &StatusArgs, out: &mut dyn Write) -> Result<i32> {
    let st = status_of(t)?;
    match args.output {
        Output::Json => {
            let doc = crate::error::envelope("status", serde_json::to_value(&st)?);
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Output::Text => {
            let state = serde_json::to_value(st.state)?;
            writeln!(out, "state      {}", state.as_str().unwrap_or(""))?;
            for (k, v) in [
                ("target", st.target.clone()),
                ("backup", st.backup.clone()),
                ("started", st.started.clone()),
                ("finished", st.finished.clone()),
                ("step", st.step.clone()),
                ("pid", st.pid.map(|p| p.to_string())),
                ("command", st.command_line.clone()),
                ("reason", st.reason.clone()),
            ] {
                if let Some(v) = v {
                    writeln!(out, "{k:<10} {v}")?;
                }
            }
            for r in &st.restore {
                writeln!(out, "restore    {r}")?;
            }
            writeln!(out, "next       {}", st.next)?;
        }
    }
    Ok(st.state.exit_code())
}
