//! SIGINT, SIGTERM, SIGHUP and SIGQUIT, caught by one thread (signal-hook), so that no signal
//! leaves a node half-migrated (docs/operations.md, "Signals").
//!
//! - Before the first change (the phase is `Safe`): the thread stops the children it knows of,
//!   removes the temporary files registered with it, and ends the process with exit 12.
//!   Nothing was changed, so nothing needs undoing.
//! - Once changes may have begun: the thread only records the signal. The walk finishes the step
//!   in flight, then rolls back — or finishes, once the kubelet is up on the new runtime and
//!   verified — and exits with a code that says which (13, or 0).
//! - Every further signal says what is going on instead of abandoning the node.
//! - SIGHUP means the terminal is gone: standard output and error are sent to a log file in the
//!   backup directory (writing to a hung-up terminal fails), and the work goes on.
//!
//! Children (systemctl, ctr, kubectl, skopeo) run in their own process group (see
//! `system::run`), so a Ctrl-C at the terminal reaches only cri-migrate, which decides.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;

/// What a signal does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing changed yet: a signal ends the process at once (exit 12).
    Safe,
    /// Changes may have begun: a signal is recorded, the walk decides.
    Changing,
    /// Rolling back: a signal is recorded and changes nothing.
    RollingBack,
    /// The kubelet is up on the new runtime and verified: the last steps finish.
    Finishing,
}

static PHASE: Mutex<Phase> = Mutex::new(Phase::Safe);
static CAUGHT: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Where output goes after SIGHUP (the backup directory's `output.log` once there is one).
static LOG: Mutex<Option<(std::fs::File, String)>> = Mutex::new(None);
static LOG_OPENER: Mutex<Option<LogOpener>> = Mutex::new(None);
static TEMP: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
static CHILDREN: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// With `--output json`: the command whose JSON error document an early exit prints.
static JSON: Mutex<Option<String>> = Mutex::new(None);

pub(crate) use crate::sync::locked;

pub const HANDLED: [i32; 4] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
];

/// Start catching the four signals. Called once, by the commands that change the node.
pub fn install() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new(HANDLED)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })?;
    Ok(())
}

/// A signal's name, for messages and reports.
pub fn name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

fn say(msg: &str) {
    // Never panic on a terminal that is gone.
    let _ = writeln!(std::io::stderr(), "\ncri-migrate: {msg}");
}

fn on_signal(sig: i32) {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    // Held while deciding, so that the main thread cannot begin changes in between.
    let phase = locked(&PHASE);
    if sig == signal_hook::consts::SIGHUP && *phase != Phase::Safe {
        redirect_output();
    }
    match *phase {
        Phase::Safe => {
            say(&format!(
                "interrupted by {} before any change: stopping. Nothing was changed.",
                name(sig)
            ));
            stop_children();
            remove_temp_files();
            if let Some(command) = locked(&JSON).as_deref() {
                let doc = crate::error::error_json(
                    command,
                    "interrupted",
                    &format!(
                        "interrupted by {} before any change. Nothing was changed.",
                        name(sig)
                    ),
                    crate::error::exit::INTERRUPTED,
                );
                // Straight to the descriptor: the main thread may hold stdout's lock.
                let _ = nix::unistd::write(std::io::stdout(), format!("{doc}\n").as_bytes());
            }
            // A prompt may have hidden the cursor.
            if console::Term::stderr().is_term() {
                let _ = console::Term::stderr().show_cursor();
            }
            std::process::exit(crate::error::exit::INTERRUPTED);
        }
        _ if n == 1 => {
            CAUGHT.store(sig, Ordering::SeqCst);
            let next = match *phase {
                Phase::Finishing => {
                    "the kubelet already runs on the new runtime and was verified: finishing the last steps"
                }
                Phase::RollingBack => "the rollback goes on until the node is as it was",
                _ => "finishing the step in flight, then rolling the node back to what it was",
            };
            say(&format!("interrupted by {}: {next}.", name(sig)));
        }
        p => {
            let doing = match p {
                Phase::Finishing => "finishing the migration",
                Phase::RollingBack => "rolling the node back",
                _ => "finishing the step in flight before rolling back",
            };
            say(&format!(
                "{} received again: still {doing}; cri-migrate exits by itself once the node is consistent. Killing it now (kill -9) would leave the node half-migrated until `cri-migrate migrate` or `rollback` runs again.",
                name(sig)
            ));
        }
    }
}

/// The first signal caught since changes began, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

pub fn set_phase(p: Phase) {
    *locked(&PHASE) = p;
}

pub fn phase() -> Phase {
    *locked(&PHASE)
}

/// With `--output json`, an early exit prints the command's error document on stdout.
pub fn set_json(command: &str) {
    *locked(&JSON) = Some(command.to_string());
}

/// Where output goes if the terminal hangs up: the backup's `output.log`, opened by the caller
/// through the records' directory (never a path followed later), and its node path.
pub fn set_log(file: std::fs::File, node_path: String) {
    *locked(&LOG) = Some((file, node_path));
}

/// Opens where output goes before a backup exists (the caller's: the node's own
/// `/var/lib/cri-migrate/output.log`, under `--root` too, never the host's), if the terminal
/// hangs up then.
pub type LogOpener = Box<dyn Fn() -> Option<(std::fs::File, String)> + Send>;

pub fn set_log_opener(open: LogOpener) {
    *locked(&LOG_OPENER) = Some(open);
}

fn redirect_output() {
    let mut log = locked(&LOG);
    if log.is_none() {
        *log = locked(&LOG_OPENER).as_ref().and_then(|open| open());
    }
    let Some((f, path)) = log.as_ref() else {
        // Nowhere to write: what follows is lost rather than ending the run on a write error.
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
            let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
        }
        return;
    };
    let _ = nix::unistd::dup2(f.as_raw_fd(), 1);
    let _ = nix::unistd::dup2(f.as_raw_fd(), 2);
    let _ = writeln!(
        std::io::stderr(),
        "cri-migrate: the terminal hung up (SIGHUP); the rest of this run's output is in {path}"
    );
}

/// A temporary file or directory to remove if a signal ends the process early.
pub fn register_temp(path: PathBuf) {
    locked(&TEMP).insert(path);
}

pub fn forget_temp(path: &std::path::Path) {
    locked(&TEMP).remove(path);
}

fn remove_temp_files() {
    for p in locked(&TEMP).iter() {
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(p);
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A running child, in a process group of its own, to stop if a signal ends the process early.
pub fn register_child(pid: u32) {
    locked(&CHILDREN).insert(pid as i32);
}

pub fn forget_child(pid: u32) {
    locked(&CHILDREN).remove(&(pid as i32));
}

fn stop_children() {
    for pid in locked(&CHILDREN).iter() {
        // The child leads its own group: stop it and whatever it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Spawn a command in a process group of its own (the terminal's Ctrl-C reaches only
/// cri-migrate), registered so that an early exit stops it.
pub fn spawn(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let child = cmd.process_group(0).spawn()?;
    register_child(child.id());
    Ok(child)
}
