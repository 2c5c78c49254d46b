//! Docker's containers watched from the host while Docker stops them. The cutover needs every
//! old container gone before the kubelet starts its pods again on the new runtime (never a pod
//! twice at once); it does not need dockerd's own shutdown after that (closing its stores,
//! its network, its containerd client: a tenth of a second and more), which then overlaps the
//! kubelet's start instead of sitting in the pods' downtime.
//!
//! A container's processes are gone when its main process is: it is PID 1 of its own PID
//! namespace (or of the sandbox's it joins, itself watched), and the kernel ends every other
//! process of a namespace before its PID 1 is done exiting. A container in the host's PID
//! namespace has no such guarantee: then nothing is watched and the cutover waits for Docker's
//! whole stop, as it does when Docker cannot be asked or a container is between two runs of
//! its restart policy. A container Docker starts again after the note is not seen here: the
//! walk also needs dockerd in its shutdown (its unit deactivating), which starts none.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::images::docker::{Docker, LiveContainer};

/// The watch, swappable in tests.
pub trait Exits {
    /// Take note of Docker's live containers at `docker_socket`, once (a later call keeps the
    /// first note: by then Docker may be stopping and no longer answer). The number noted; an
    /// error when they cannot be listed or one cannot be watched from the host.
    fn note(&self, docker_socket: &str) -> Result<usize>;
    /// Whether every noted container has exited (false before a note, or with none noted).
    fn all_exited(&self) -> bool;
}

/// Nothing to watch (tests, and runs whose stops are not Docker's): the stop is waited for.
pub struct NoExits;

impl Exits for NoExits {
    fn note(&self, _: &str) -> Result<usize> {
        Ok(0)
    }
    fn all_exited(&self) -> bool {
        false
    }
}

/// A process, told apart from a later one with the same PID by its start time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    pid: i64,
    start: u64,
}

/// The note itself, before the stop: Docker answers it as any other call.
const NOTE_BOUND: Duration = Duration::from_secs(10);

pub struct RealExits {
    proc_root: PathBuf,
    state: Mutex<Noted>,
}

#[derive(Default)]
struct Noted {
    socket: Option<String>,
    procs: Vec<Proc>,
}

impl RealExits {
    pub fn new() -> RealExits {
        RealExits {
            proc_root: PathBuf::from("/proc"),
            state: Mutex::new(Noted::default()),
        }
    }
}

impl Default for RealExits {
    fn default() -> Self {
        Self::new()
    }
}

impl Exits for RealExits {
    fn note(&self, docker_socket: &str) -> Result<usize> {
        let mut s = crate::sync::locked(&self.state);
        if s.socket.is_none() {
            let live = Docker::new(docker_socket.into())?.live_containers(NOTE_BOUND)?;
            s.procs = watchable(&self.proc_root, &live)?;
            s.socket = Some(docker_socket.to_string());
        }
        Ok(s.procs.len())
    }

    fn all_exited(&self) -> bool {
        let s = crate::sync::locked(&self.state);
        s.socket.is_some()
            && !s.procs.is_empty()
            && !s.procs.iter().any(|p| alive(&self.proc_root, p))
    }
}

/// The main process of each live container; an error for one whose processes its main
/// process's exit does not end (the host's PID namespace), or that has none now (restarting).
fn watchable(proc_root: &Path, live: &[LiveContainer]) -> Result<Vec<Proc>> {
    live.iter()
        .map(|c| {
            let short: String = c.id.chars().take(12).collect();
            if c.pid_mode == "host" {
                bail!("container {short} runs in the host's PID namespace");
            }
            if c.restarting || c.pid <= 0 {
                bail!("container {short} has no process now (restarting)");
            }
            let Some(start) = start_time(proc_root, c.pid) else {
                bail!("container {short}'s process {} cannot be read", c.pid);
            };
            Ok(Proc { pid: c.pid, start })
        })
        .collect()
}

/// The process's start time (field 22 of /proc/PID/stat) if it lives and is not a zombie.
fn start_time(proc_root: &Path, pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn alive(proc_root: &Path, p: &Proc) -> bool {
    start_time(proc_root, p.pid) == Some(p.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(dir: &Path, pid: i64, name: &str, state: &str, start: u64) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        let mut fields = vec!["0"; 20];
        fields[0] = state;
        let start = start.to_string();
        fields[19] = &start;
        std::fs::write(
            d.join("stat"),
            format!("{pid} ({name}) {}\n", fields.join(" ")),
        )
        .unwrap();
    }

    fn live(pid: i64, pid_mode: &str) -> LiveContainer {
        LiveContainer {
            id: "0123456789abcdef".into(),
            pid,
            restarting: false,
            pid_mode: pid_mode.into(),
        }
    }

    #[test]
    fn a_process_is_alive_until_it_exits_or_is_a_zombie_or_its_pid_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        stat(dir.path(), 42, "sh) S (odd", "S", 1000);
        let p = Proc {
            pid: 42,
            start: 1000,
        };
        assert!(alive(dir.path(), &p));
        stat(dir.path(), 42, "sh", "Z", 1000);
        assert!(!alive(dir.path(), &p));
        stat(dir.path(), 42, "sh", "S", 2000);
        assert!(!alive(dir.path(), &p), "another process with the same PID");
        std::fs::remove_dir_all(dir.path().join("42")).unwrap();
        assert!(!alive(dir.path(), &p));
    }

    #[test]
    fn a_container_in_the_hosts_pid_namespace_or_restarting_cannot_be_watched() {
        let dir = tempfile::tempdir().unwrap();
        stat(dir.path(), 7, "pause", "S", 5);
        stat(dir.path(), 8, "app", "S", 6);
        let ok = watchable(dir.path(), &[live(7, ""), live(8, "container:abc")]).unwrap();
        assert_eq!(ok, [Proc { pid: 7, start: 5 }, Proc { pid: 8, start: 6 }]);
        let host = watchable(dir.path(), &[live(7, ""), live(8, "host")]).unwrap_err();
        assert!(format!("{host}").contains("host's PID namespace"), "{host}");
        let mut restarting = live(0, "");
        restarting.restarting = true;
        assert!(watchable(dir.path(), &[restarting]).is_err());
        assert!(
            watchable(dir.path(), &[live(9, "")]).is_err(),
            "no such process"
        );
    }

    #[test]
    fn nothing_noted_is_never_all_exited() {
        assert!(!RealExits::new().all_exited());
        assert!(!NoExits.all_exited());
    }
}
