//! Checks before any change; all of them are reported together, and a failure changes nothing.

use super::backup::{StoredPlan, BACKUPS};
use crate::error::Failure;
use crate::inspect::Facts;
use crate::node::Node;
use crate::plan::Target;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;

pub const LOCK: &str = "/run/cri-migrate.lock";

/// Hold the lock for the whole run, so that two runs cannot interleave.
pub fn lock(node: &Node) -> Result<Flock<File>, Failure> {
    let path = node.path(LOCK);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Failure::preflight(
                format!("cannot open the lock file {} ({e})", path.display()),
                "Run as root.",
            )
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        Failure::preflight(
            format!(
                "another cri-migrate is running on this node (it holds {})",
                path.display()
            ),
            "Wait for it to finish.",
        )
    })
}

/// Root, systemd, the target's binary, room for the backups.
pub fn check(
    node: &Node,
    facts: &Facts,
    target: Target,
    plan: &StoredPlan,
    live: bool,
) -> Result<(), Failure> {
    let mut problems: Vec<String> = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    if live && !nix::unistd::Uid::effective().is_root() {
        problems.push("changing the node needs root".into());
        fixes.push("Run it with sudo.".into());
    }
    let systemctl = which::which("systemctl").is_ok();
    // systemd's own test for a booted system (sd_booted), on the node.
    if live && (!systemctl || !node.exists("/run/systemd/system")) {
        problems.push(
            "systemd is not running on this node (no systemctl, or no /run/systemd/system)".into(),
        );
        fixes.push("cri-migrate drives the services through systemd; on other init systems migrate by hand.".into());
    }
    if !live && !systemctl {
        problems.push("systemctl is not installed here, and it is needed to enable and disable units under --root".into());
        fixes.push("Install systemd (for systemctl --root).".into());
    }
    let (bin, installed) = match target {
        Target::Containerd => ("containerd", &facts.runtimes.containerd),
        Target::Crio => ("crio", &facts.runtimes.crio),
    };
    // On the node: its binary, or its package (a node image under --root may be checked
    // without its binaries having been looked at); live, also whatever PATH finds.
    let found = installed.installed || (live && which::which(bin).is_ok());
    if !found {
        problems.push(format!(
            "{} is not installed ({bin} not found)",
            target.name()
        ));
        fixes.push("Install it first, or run with --install-runtime.".into());
    }
    // The backups: a copy of every file the plan touches, and some room to spare.
    let need: u64 = plan
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(node.path(&f.path)).ok())
        .map(|m| m.len())
        .sum::<u64>()
        + (1 << 20);
    let mut probe = node.path(BACKUPS);
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    match nix::sys::statvfs::statvfs(&probe) {
        Ok(st) => {
            // fsblkcnt_t and c_ulong are not u64 on every platform.
            #[allow(clippy::unnecessary_cast)]
            let free = st.blocks_available() as u64 * st.fragment_size() as u64;
            if free < need {
                problems.push(format!("not enough room for the backups under {BACKUPS}: {free} bytes free, {need} needed"));
                fixes.push(format!(
                    "Free some space on the file system of {}.",
                    probe.display()
                ));
            }
        }
        Err(e) => problems.push(format!(
            "cannot tell the free space under {} ({e})",
            probe.display()
        )),
    }
    if !live {
        let probe_file = node.path("/.cri-migrate-write-test");
        match std::fs::write(&probe_file, b"") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe_file);
            }
            Err(e) => {
                problems.push(format!(
                    "cannot write under --root {} ({e})",
                    node.root().display()
                ));
                fixes.push("Mount the node image read-write and run as root.".into());
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    fixes.dedup();
    Err(Failure::preflight(
        format!("preflight failed: {}", problems.join("; ")),
        fixes.join(" "),
    ))
}
