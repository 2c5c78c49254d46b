//! Checks before any change; all of them are reported together, and a failure changes nothing.

use super::backup::{StoredPlan, BACKUPS};
use crate::error::Failure;
use crate::inspect::Facts;
use crate::node::Node;
use crate::plan::Target;
use crate::records::RecordDir;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;

pub const LOCK: &str = "/run/cri-migrate.lock";

/// Who holds the lock, written into the lock file by the holder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    pub since: String,
}

impl Holder {
    /// What a lock file says of its holder, if it says it.
    fn read(file: &mut File) -> Option<Holder> {
        use std::io::Read;
        let mut text = String::new();
        // Bounded: the holder's line is short; the file is the node's.
        file.take(4096).read_to_string(&mut text).ok()?;
        serde_json::from_str(text.trim()).ok()
    }
}

/// The node's `/run`, where the lock lives (resolved through the root, never created above it).
fn lock_dir(node: &Node, create: bool) -> Result<Option<RecordDir>, Failure> {
    RecordDir::open(node, "/run", create).map_err(|e| {
        Failure::preflight(
            format!(
                "cannot open the lock's directory {} ({e:#})",
                node.path("/run").display()
            ),
            "Run as root.",
        )
    })
}

const LOCK_NAME: &str = "cri-migrate.lock";

/// Hold the lock for the whole run, so that two runs cannot interleave: taken before anything
/// is read, planned or asked. Refused at once (exit 14) with who holds it. The lock file is a
/// record like the others: opened without following a link, a regular file of ours, 0600.
pub fn lock(node: &Node) -> Result<Flock<File>, Failure> {
    use std::io::{Seek, Write};
    let dir = lock_dir(node, true)?.ok_or_else(|| {
        Failure::preflight(
            format!("{} is missing", node.path("/run").display()),
            "Run as root.",
        )
    })?;
    let file = dir.lock_file(LOCK_NAME).map_err(|e| {
        Failure::preflight(
            format!("cannot open the lock file {LOCK} ({e:#})"),
            "Run as root; if the file is not a regular file of root's, move it aside.",
        )
    })?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut file, _)) => {
            let holder = match Holder::read(&mut file) {
                Some(h) => format!(
                    "pid {} (`{}`) holds {} since {}",
                    h.pid,
                    h.command,
                    node.path(LOCK).display(),
                    h.since
                ),
                None => format!("a process holds {}", node.path(LOCK).display()),
            };
            return Err(Failure::Locked { holder });
        }
    };
    let me = Holder {
        pid: std::process::id(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        since: jiff::Timestamp::now().to_string(),
    };
    // Best effort: the flock is what excludes; the text only names the holder.
    let _ = lock.set_len(0);
    let _ = lock.rewind();
    let _ = writeln!(lock, "{}", serde_json::to_string(&me).unwrap_or_default());
    let _ = lock.sync_all();
    Ok(lock)
}

/// Who holds the lock now, without taking it (for `status`): None when nobody does.
pub fn holder(node: &Node) -> Option<Holder> {
    let dir = lock_dir(node, false).ok()??;
    let mut file = dir.lock_file_existing(LOCK_NAME).ok()??;
    let said = Holder::read(&mut file);
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Free: whatever the file says is from a run that has ended.
        Ok(_) => None,
        Err(_) => Some(said.unwrap_or(Holder {
            pid: 0,
            command: "unknown".into(),
            since: "unknown".into(),
        })),
    }
}

/// The units' states before the change, with every unit systemd would stop along with one of
/// them (`Requires=`, `BindsTo=`, `Requisite=`, `PartOf=`, transitively): a rollback brings
/// those back too. A state systemctl cannot tell is a refusal: the undo would not know what to
/// bring back.
pub fn unit_states(
    systemd: &dyn crate::system::systemd::Systemd,
    units: &[&str],
) -> Result<Vec<crate::system::systemd::UnitState>, Failure> {
    crate::system::systemd::states_with_dependents(systemd, units).map_err(|e| {
        Failure::preflight(
            format!(
                "preflight failed: the state of some units cannot be read ({e:#}), and a rollback would not know what to bring back"
            ),
            "Check that systemd answers (`systemctl is-enabled UNIT`, `systemctl is-active UNIT`, `systemctl show -p RequiredBy UNIT`) and run again.",
        )
    })
}

/// `--drain`: kubectl, a kubeconfig and an API server that knows the node, all before the
/// backup exists.
pub fn drain(
    kubectl: Option<&dyn crate::system::kubectl::Kubectl>,
    node: &crate::names::NodeName,
) -> Result<(), Failure> {
    let Some(k) = kubectl else {
        return Err(Failure::preflight(
            "--drain needs kubectl and a kubeconfig (--kubeconfig, $KUBECONFIG, root's ~/.kube/config, /etc/kubernetes/admin.conf or kubelet.conf)",
            "Install kubectl, or pass --kubeconfig, or migrate without --drain (drain it from elsewhere first).",
        ));
    };
    k.run(&[
        "get",
        "node",
        "-o",
        "name",
        "--request-timeout=20s",
        "--",
        node.as_str(),
    ])
        .map(|_| ())
        .map_err(|e| {
            Failure::preflight(
                format!("--drain: the API server cannot be asked about node {node} ({e:#})"),
                "Check the kubeconfig and that the API server is reachable, or migrate without --drain.",
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
    let (bin, installed) = (
        target.about().binary,
        crate::runtime::registry::of(target).installed(facts),
    );
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
        .filter_map(|f| node.metadata(&f.path))
        .map(|m| m.len())
        .sum::<u64>()
        + (1 << 20);
    match crate::images::room::space(&node.path(BACKUPS)) {
        Ok(s) => {
            let free = s.available;
            if free < need {
                problems.push(format!("not enough room for the backups under {BACKUPS}: {free} bytes free, {need} needed"));
                fixes.push(format!(
                    "Free some space on the file system of {}.",
                    s.at.display()
                ));
            }
        }
        Err(e) => problems.push(e),
    }
    if !live {
        let probe_file = "/.cri-migrate-write-test";
        match node.write_atomic(probe_file, b"", 0o600, None) {
            Ok(_) => {
                let _ = node.remove(probe_file);
            }
            Err(e) => {
                problems.push(format!(
                    "cannot write under --root {} ({e:#})",
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
