//! `migrate --detach`: the migration as a transient systemd unit on the host, so that it
//! survives the caller — a shell that closes, a Kubernetes Job whose pod dies when the runtime
//! under it is switched. The first call starts `cri-migrate.service` and returns at once (exit
//! 15, in progress). The same command again waits while the unit works and exits with the
//! migration's result (from `status`): a Job recreated on the new runtime succeeds once the
//! node is migrated.

use super::status::{status_of, Said};
use super::NodeAccess;
use crate::cli::{MigrateArgs, Output};
use crate::error::{exit, Failure};
use crate::records::RecordDir;
use crate::system::run;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

pub const UNIT: &str = "cri-migrate.service";
/// Where the binary goes on the host when the caller is not on it (a pod with the host at /host).
const HOST_BIN: &str = "/var/lib/cri-migrate/bin/cri-migrate";
/// Written when a detached run starts, removed when its result is reported.
/// In `/var/lib/cri-migrate` (a record like the backups: see src/records.rs).
const MARKER: &str = "detached";
/// How long a re-run waits for the unit (a migration with a drain and a large carry is long).
const WAIT: Duration = Duration::from_secs(3 * 3600);

/// The command line for the unit: this one, without --detach, --root and --live (the unit runs
/// on the host, whose root is `/`).
fn unit_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--detach" | "--live" => {}
            "--root" | "--host-pid" => {
                args.next();
            }
            _ if a.starts_with("--root=") || a.starts_with("--host-pid=") => {}
            _ => out.push(a),
        }
    }
    out
}

/// A program on the host (systemctl, systemd-run): directly, or through the host's namespaces
/// from a pod.
fn host(t: &NodeAccess, pid: i32, program: &str, args: &[&str]) -> Result<crate::system::Ran> {
    if t.node.is_live() {
        return run(program, args, &[], Duration::from_secs(60));
    }
    let pid = pid.to_string();
    let mut all = vec![
        "-t",
        pid.as_str(),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "--",
        program,
    ];
    all.extend(args);
    run("nsenter", &all, &[], Duration::from_secs(60))
}

fn unit_active(t: &NodeAccess, pid: i32) -> Result<bool> {
    let r = host(t, pid, "systemctl", &["is-active", UNIT])?;
    Ok(matches!(
        r.stdout.trim(),
        "active" | "activating" | "deactivating" | "reloading"
    ))
}

pub fn run_detached(t: &NodeAccess, args: &MigrateArgs, out: &mut dyn Write) -> Result<i32> {
    let pid = args.host_pid;
    if unit_active(t, pid)? {
        eprintln!("{}", crate::secrets::shown(&format!("{UNIT} is migrating this node: waiting for it to end (`cri-migrate status` follows it)")));
        let t0 = Instant::now();
        while unit_active(t, pid)? {
            if t0.elapsed() > WAIT {
                return Err(Failure::preflight(
                    format!(
                        "{UNIT} is still running after {} minutes",
                        WAIT.as_secs() / 60
                    ),
                    "Follow it with `cri-migrate status` and `journalctl -u cri-migrate`.",
                )
                .into());
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        return report(t, args, out);
    }
    // Finished earlier (this is the re-run of a Job whose first pod started it): its result. A
    // node migrated to this target is a success whoever migrated it; a rollback is the answer
    // only to the detached run that ended in it.
    let st = status_of(t)?;
    let same_target = st.target.as_deref() == args.to.map(|to| to.name());
    if same_target
        && (st.state == Said::Migrated
            || (matches!(st.state, Said::RolledBack | Said::NeedsAPerson) && detached_before(t)))
    {
        return report(t, args, out);
    }
    if st.state == Said::InProgress {
        return Err(Failure::Locked {
            holder: format!(
                "pid {} (`{}`) is migrating this node outside {UNIT}",
                st.pid.unwrap_or_default(),
                st.command_line.unwrap_or_default()
            ),
        }
        .into());
    }
    // Start it. The binary the host runs: this one, copied under the host's root when the
    // caller is not on the host.
    let bin = if t.node.is_live() {
        std::env::current_exe()
            .context("cannot tell where this binary is")?
            .display()
            .to_string()
    } else {
        let dst = t.node.path(HOST_BIN);
        let me = std::env::current_exe().context("cannot tell where this binary is")?;
        let bytes = std::fs::read(&me).with_context(|| format!("cannot read {}", me.display()))?;
        t.node
            .write_atomic(HOST_BIN, &bytes, 0o755, Some((0, 0)))
            .with_context(|| format!("cannot put the binary on the host at {}", dst.display()))?;
        HOST_BIN.to_string()
    };
    let mut cmd: Vec<String> = vec![
        format!("--unit={UNIT}"),
        "--collect".into(),
        "--property=Type=exec".into(),
        "--description=cri-migrate: move the kubelet off Docker Engine".into(),
        bin,
    ];
    cmd.extend(unit_args());
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    // Mark the unit's runs so that a re-run knows its result is the unit's.
    let home = RecordDir::open(t.node, crate::records::HOME, true)?
        .context("the records' directory was just made")?;
    let r = host(t, pid, "systemd-run", &cmd)?;
    if !r.success {
        return Err(Failure::preflight(
            format!("systemd-run could not start {UNIT}: {}", r.stderr.trim()),
            "Check that systemd runs on the host (and, from a pod, that it is privileged with the host's PID namespace), or run without --detach.",
        )
        .into());
    }
    let _ = home.write_atomic(MARKER, jiff::Timestamp::now().to_string().as_bytes());
    match args.output {
        Output::Json => crate::error::write_envelope(out, "migrate", json!({
                "result": "started",
                "unit": UNIT,
                "next": "run the same command again to wait for the result, or follow it with `cri-migrate status`",
            }))?,
        Output::Text => writeln!(
            out,
            "Started {UNIT}: the migration runs on the host. Run the same command again to wait for its result, or follow it with `cri-migrate status` and `journalctl -u cri-migrate`."
        )?,
    }
    Ok(exit::STATUS_IN_PROGRESS)
}

/// Whether a detached run was started and its result not yet reported.
fn detached_before(t: &NodeAccess) -> bool {
    RecordDir::open(t.node, crate::records::HOME, false)
        .ok()
        .flatten()
        .is_some_and(|d| d.has(MARKER))
}

/// The unit's result, as `status` reads it.
fn report(t: &NodeAccess, args: &MigrateArgs, out: &mut dyn Write) -> Result<i32> {
    let st = status_of(t)?;
    if let Ok(Some(home)) = RecordDir::open(t.node, crate::records::HOME, false) {
        let _ = home.remove(MARKER);
    }
    match args.output {
        Output::Json => {
            let mut doc = crate::error::envelope("migrate", serde_json::to_value(&st)?);
            doc["unit"] = UNIT.into();
            doc["result"] = match st.state {
                Said::Migrated => "migrated",
                Said::RolledBack => "rolled-back",
                Said::NeedsAPerson => "rollback-failed",
                _ => "in-progress",
            }
            .into();
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Output::Text => {
            let state = serde_json::to_value(st.state)?;
            writeln!(
                out,
                "{UNIT} ended: {}{}",
                state.as_str().unwrap_or(""),
                st.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )?;
            writeln!(out, "{}", st.next)?;
        }
    }
    Ok(st.state.exit_code())
}
