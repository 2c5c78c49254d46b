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
    /// Stop every noted container the way Docker stops it — its stop signal to its main
    /// process, then SIGKILL once its stop timeout has passed — all at once, and wait until
    /// all have exited, calling `exited` at that moment. Where Docker could start one again
    /// (a restart policy) or the stop cannot be done as Docker does it, nothing is sent:
    /// [`Stopped::Left`] says why, and Docker's own stop does it.
    fn stop_all(&self, exited: &dyn Fn()) -> Result<Stopped>;
    /// Whether Docker would start none of the noted containers again once exited (every
    /// restart policy `no`): their exits then need no dockerd in its shutdown to be final.
    fn none_restart(&self) -> bool;
}

/// What [`Exits::stop_all`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing sent: Docker's own stop stops them, for this reason.
    Left(String),
    /// Every container exited: how many, and how many of them were killed at their timeout.
    Exited { count: usize, killed: usize },
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
    fn stop_all(&self, _: &dyn Fn()) -> Result<Stopped> {
        Ok(Stopped::Left("Docker's containers are not watched".into()))
    }
    fn none_restart(&self) -> bool {
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

struct Noted {
    socket: Option<String>,
    procs: Vec<Proc>,
    /// How each is stopped, in the same order; why the cutover cannot stop them itself.
    stops: std::result::Result<Vec<HowStopped>, String>,
    /// Every restart policy `no`.
    restart_none: bool,
}

impl Default for Noted {
    fn default() -> Self {
        Noted {
            socket: None,
            procs: vec![],
            stops: Ok(vec![]),
            restart_none: false,
        }
    }
}

impl Default for HowStopped {
    fn default() -> Self {
        HowStopped {
            signal: nix::libc::SIGTERM,
            timeout: Some(Duration::from_secs(DOCKER_STOP_TIMEOUT as u64)),
        }
    }
}

/// A container's stop as Docker makes it: the signal, then SIGKILL after the timeout (none: no
/// limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HowStopped {
    signal: i32,
    timeout: Option<Duration>,
}

/// Docker's own default stop timeout (`docker stop`, dockerd's shutdown).
const DOCKER_STOP_TIMEOUT: i64 = 10;
/// The longest the cutover waits for containers it stopped (a container with no stop timeout
/// included): the same bound as a unit's stop.
const STOPPED_BOUND: Duration = Duration::from_secs(180);

/// How the cutover can stop each live container as Docker would; an error naming the first
/// one it cannot: Docker could start it again (a restart policy other than `no`: only
/// dockerd's shutdown turns those off), it is frozen, or its stop signal is not one this build
/// reads.
fn how_stopped(live: &[LiveContainer]) -> std::result::Result<Vec<HowStopped>, String> {
    live.iter()
        .map(|c| {
            let short: String = c.id.chars().take(12).collect();
            if restarts(c) {
                return Err(format!(
                    "container {short} has restart policy {}: Docker would start it again",
                    c.restart_policy
                ));
            }
            if c.paused {
                return Err(format!("container {short} is paused"));
            }
            let signal = if c.stop_signal.is_empty() {
                nix::libc::SIGTERM
            } else {
                signal_number(&c.stop_signal).ok_or_else(|| {
                    format!(
                        "container {short}'s stop signal {} is not read here",
                        c.stop_signal
                    )
                })?
            };
            let secs = c.stop_timeout.unwrap_or(DOCKER_STOP_TIMEOUT);
            Ok(HowStopped {
                signal,
                timeout: u64::try_from(secs).ok().map(Duration::from_secs),
            })
        })
        .collect()
}

/// Whether Docker would start the container again once it exited (a restart policy other than
/// `no`; dockerd's shutdown alone turns that off).
fn restarts(c: &LiveContainer) -> bool {
    !matches!(c.restart_policy.as_str(), "" | "no")
}

/// A stop signal as Docker reads one: a number, a name with or without `SIG`, or
/// `RTMIN+N`/`RTMAX-N`.
fn signal_number(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=nix::libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let offset = |base: i32, rest: &str, sign: i32| -> Option<i32> {
        let n = if rest.is_empty() {
            0
        } else {
            rest.parse::<i32>().ok()?
        };
        let v = base + sign * n;
        (nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX())
            .contains(&v)
            .then_some(v)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return offset(nix::libc::SIGRTMIN(), rest.trim_start_matches('+'), 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return offset(nix::libc::SIGRTMAX(), rest.trim_start_matches('-'), -1);
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// Send `signal` to the process if it is still the one noted: through a pidfd, so that a PID
/// reused between the check and the signal is never hit (a kernel without pidfds: kill(2)
/// right after the check). False when it has exited already.
fn signal_proc(proc_root: &Path, p: &Proc, signal: i32) -> Result<bool> {
    use nix::libc;
    // SAFETY: plain syscalls on integers; the descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(false);
        }
        if e.raw_os_error() != Some(libc::ENOSYS) {
            bail!("cannot reach process {}: {e}", p.pid);
        }
        if !alive(proc_root, p) {
            return Ok(false);
        }
        return nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid as i32),
            nix::sys::signal::Signal::try_from(signal)?,
        )
        .map(|_| true)
        .map_err(|e| anyhow::anyhow!("cannot signal process {}: {e}", p.pid));
    }
    let fd = fd as libc::c_int;
    // The descriptor names the process from here on: check that it is the one noted.
    let r = if alive(proc_root, p) {
        // SAFETY: as above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(true)
        } else {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                Ok(false)
            } else {
                Err(anyhow::anyhow!("cannot signal process {}: {e}", p.pid))
            }
        }
    } else {
        Ok(false)
    };
    // SAFETY: the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    r
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
            s.stops = how_stopped(&live);
            s.restart_none = !live.iter().any(restarts);
            s.socket = Some(docker_socket.to_string());
        }
        Ok(s.procs.len())
    }

    fn none_restart(&self) -> bool {
        let s = crate::sync::locked(&self.state);
        s.socket.is_some() && !s.procs.is_empty() && s.restart_none
    }

    fn stop_all(&self, exited: &dyn Fn()) -> Result<Stopped> {
        let (procs, stops) = {
            let s = crate::sync::locked(&self.state);
            if s.socket.is_none() || s.procs.is_empty() {
                return Ok(Stopped::Left("no container of Docker's noted".into()));
            }
            match &s.stops {
                Ok(h) => (s.procs.clone(), h.clone()),
                Err(why) => return Ok(Stopped::Left(why.clone())),
            }
        };
        stop_and_wait(&self.proc_root, &procs, &stops, exited)
    }

    fn all_exited(&self) -> bool {
        let s = crate::sync::locked(&self.state);
        s.socket.is_some()
            && !s.procs.is_empty()
            && !s.procs.iter().any(|p| alive(&self.proc_root, p))
    }
}

/// Every process sent its stop signal at once, each killed once its timeout has passed, until
/// none is left (`exited` called then), within [`STOPPED_BOUND`].
fn stop_and_wait(
    proc_root: &Path,
    procs: &[Proc],
    stops: &[HowStopped],
    exited: &dyn Fn(),
) -> Result<Stopped> {
    let sent = std::time::Instant::now();
    for (p, how) in procs.iter().zip(stops) {
        signal_proc(proc_root, p, how.signal)?;
    }
    let mut killed = vec![false; procs.len()];
    loop {
        let living: Vec<usize> = (0..procs.len())
            .filter(|&i| alive(proc_root, &procs[i]))
            .collect();
        if living.is_empty() {
            exited();
            return Ok(Stopped::Exited {
                count: procs.len(),
                killed: killed.iter().filter(|k| **k).count(),
            });
        }
        let waited = sent.elapsed();
        if waited >= STOPPED_BOUND {
            bail!(
                "{} of Docker's containers still run {} s after their stop signal",
                living.len(),
                STOPPED_BOUND.as_secs()
            );
        }
        for i in living {
            let overdue = stops[i].timeout.is_some_and(|t| waited >= t);
            if overdue && !killed[i] {
                killed[i] = signal_proc(proc_root, &procs[i], nix::libc::SIGKILL)?;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
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
            paused: false,
            restart_policy: "no".into(),
            stop_signal: String::new(),
            stop_timeout: None,
        }
    }

    #[test]
    fn stop_signals_are_read_as_docker_reads_them() {
        use nix::libc::{SIGKILL, SIGQUIT, SIGRTMAX, SIGRTMIN, SIGTERM, SIGUSR1};
        for (text, want) in [
            ("SIGTERM", Some(SIGTERM)),
            ("TERM", Some(SIGTERM)),
            ("sigquit", Some(SIGQUIT)),
            ("9", Some(SIGKILL)),
            ("10", Some(SIGUSR1)),
            ("SIGRTMIN+3", Some(SIGRTMIN() + 3)),
            ("RTMIN", Some(SIGRTMIN())),
            ("SIGRTMAX-2", Some(SIGRTMAX() - 2)),
            ("SIGRTMIN+99", None),
            ("0", None),
            ("SIGNOPE", None),
            ("", None),
        ] {
            assert_eq!(signal_number(text), want, "{text}");
        }
    }

    #[test]
    fn only_containers_docker_would_not_start_again_are_stopped_here() {
        let mut c = live(7, "");
        c.stop_signal = "SIGQUIT".into();
        c.stop_timeout = Some(30);
        let mut forever = live(8, "");
        forever.stop_timeout = Some(-1);
        assert_eq!(
            how_stopped(&[c.clone(), live(9, ""), forever]).unwrap(),
            [
                HowStopped {
                    signal: nix::libc::SIGQUIT,
                    timeout: Some(Duration::from_secs(30))
                },
                HowStopped::default(),
                HowStopped {
                    signal: nix::libc::SIGTERM,
                    timeout: None
                },
            ]
        );
        for (policy, paused, signal) in [
            ("always", false, ""),
            ("unless-stopped", false, ""),
            ("on-failure", false, ""),
            ("no", true, ""),
            ("", false, "SIGBOGUS"),
        ] {
            let mut c = live(7, "");
            c.restart_policy = policy.into();
            c.paused = paused;
            c.stop_signal = signal.into();
            let why = how_stopped(&[live(9, ""), c]).unwrap_err();
            assert!(why.contains("0123456789ab"), "{why}");
        }
    }

    /// Real processes (children of the test, as a container's main process is of its shim):
    /// each gets its signal, one that ignores it is killed at its timeout, and `exited` is
    /// called once, when the last is gone.
    #[test]
    fn every_process_is_signalled_at_once_and_the_stubborn_one_killed_at_its_timeout() {
        let spawn = |script: &str| {
            std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .spawn()
                .unwrap()
        };
        let mut polite = spawn("trap 'exit 0' TERM; while :; do sleep 0.05; done");
        let mut stubborn = spawn("trap '' TERM; while :; do sleep 0.05; done");
        std::thread::sleep(Duration::from_millis(200));
        let proc_root = Path::new("/proc");
        let procs: Vec<Proc> = [&polite, &stubborn]
            .iter()
            .map(|c| {
                let pid = c.id() as i64;
                Proc {
                    pid,
                    start: start_time(proc_root, pid).unwrap(),
                }
            })
            .collect();
        // The processes are reaped by a thread of ours, as a shim reaps its container's.
        let reaper = std::thread::spawn(move || {
            polite.wait().unwrap();
            stubborn.wait().unwrap();
        });
        let stops = [
            HowStopped::default(),
            HowStopped {
                signal: nix::libc::SIGTERM,
                timeout: Some(Duration::from_millis(300)),
            },
        ];
        let called = std::cell::Cell::new(0);
        let t0 = std::time::Instant::now();
        let r = stop_and_wait(proc_root, &procs, &stops, &|| called.set(called.get() + 1)).unwrap();
        assert_eq!(
            r,
            Stopped::Exited {
                count: 2,
                killed: 1
            }
        );
        assert_eq!(called.get(), 1);
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
        reaper.join().unwrap();
        // Gone already: nothing is sent again.
        assert!(!signal_proc(proc_root, &procs[0], nix::libc::SIGTERM).unwrap());
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
