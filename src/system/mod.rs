//! Side effects on the system, each behind a small trait so that tests can swap it: running
//! read-only programs for inspection, systemd, kubectl, the package manager. Production uses the
//! real programs, found on PATH with `which`; the black-box tests put fakes first on PATH.

pub mod exits;
pub mod gate;
pub mod kubectl;
pub mod packages;
pub mod selinux;
pub mod systemd;

use anyhow::{anyhow, bail, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a read-only program and returns its standard output when it succeeded.
pub trait Commands {
    fn output(&self, program: &str, args: &[&str]) -> Option<String>;
}

/// The real thing: looks the program up on PATH, gives it 10 seconds.
pub struct RealCommands;

impl Commands for RealCommands {
    fn output(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = run(program, args, &[], Duration::from_secs(10)).ok()?;
        out.success.then_some(out.stdout)
    }
}

/// For nodes under `--root`: never runs anything.
pub struct NoCommands;

impl Commands for NoCommands {
    fn output(&self, _: &str, _: &[&str]) -> Option<String> {
        None
    }
}

/// What a program did.
#[derive(Debug, Clone)]
pub struct Ran {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run a program found on PATH with a deadline; a program still running then is killed.
pub fn run(program: &str, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Result<Ran> {
    let path = which::which(program)
        .map_err(|_| anyhow!("`{program}` is not installed (not found on PATH)"))?;
    let mut cmd = Command::new(&path);
    cmd.args(args).envs(env.iter().copied());
    let said = || format!("`{program} {}`", args.join(" "));
    match run_bounded(&mut cmd, None, Bounds::of(timeout))
        .map_err(|e| anyhow!("cannot run {}: {e}", path.display()))?
    {
        Bounded::Done(r) => Ok(r),
        Bounded::TimedOut => bail!(
            "{} did not finish within {}s and was stopped",
            said(),
            timeout.as_secs()
        ),
        Bounded::TooMuchOutput => bail!(
            "{} wrote more than {} MiB and was stopped",
            said(),
            MAX_STDOUT >> 20
        ),
    }
}

/// The most of a program's output kept: stdout (a larger answer is refused and the program
/// stopped) and stderr (the rest is read and dropped, so a chatty program never blocks).
pub const MAX_STDOUT: usize = 256 << 20;
pub const MAX_STDERR: usize = 1 << 20;

/// What a bounded run may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// For the whole call: the program, and every process that holds its output open.
    pub timeout: Duration,
    pub stdout: usize,
    pub stderr: usize,
}

impl Bounds {
    pub fn of(timeout: Duration) -> Bounds {
        Bounds {
            timeout,
            stdout: MAX_STDOUT,
            stderr: MAX_STDERR,
        }
    }
}

/// How a bounded run ended.
pub enum Bounded {
    Done(Ran),
    /// The deadline passed (the program, or a process it left holding its output): its whole
    /// process group was killed.
    TimedOut,
    /// More than the bound on stdout: the group was killed.
    TooMuchOutput,
}

/// Run a command in a process group of its own, `stdin` written to it, stdout and stderr read
/// at once on their own threads with bounds, the whole call — the program's exit and the end
/// of its output, which a child it left in the background may hold open — under one deadline,
/// past which the whole group is killed. A descendant that left the group and still holds a
/// pipe is given up on (its reader thread is left behind), never waited for.
pub fn run_bounded(
    cmd: &mut Command,
    stdin: Option<Vec<u8>>,
    b: Bounds,
) -> std::io::Result<Bounded> {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    enum Event {
        Out(Vec<u8>, bool),
        Err(Vec<u8>),
    }
    let mut child = crate::signals::spawn(
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()),
    )?;
    let pid = child.id();
    let kill = || {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    if let (Some(mut w), Some(input)) = (child.stdin.take(), stdin) {
        // A program that never reads its stdin must not block us.
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    let (tx, rx) = mpsc::channel();
    let mut so = child.stdout.take().expect("piped");
    let tx_out = tx.clone();
    let cap_out = b.stdout;
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let over = (&mut so)
            .take(cap_out as u64 + 1)
            .read_to_end(&mut kept)
            .is_ok()
            && kept.len() > cap_out;
        kept.truncate(cap_out);
        let _ = tx_out.send(Event::Out(kept, over));
    });
    let mut se = child.stderr.take().expect("piped");
    let cap_err = b.stderr;
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut se).take(cap_err as u64).read_to_end(&mut kept);
        // The rest is read and dropped: a full pipe would stop the program.
        let _ = std::io::copy(&mut se, &mut std::io::sink());
        let _ = tx.send(Event::Err(kept));
    });
    let deadline = Instant::now() + b.timeout;
    let (mut out, mut err, mut status) = (None, None, None);
    let ended = |kill_first: bool, child: &mut std::process::Child| {
        if kill_first {
            kill();
        }
        let _ = child.wait();
        crate::signals::forget_child(pid);
    };
    loop {
        if status.is_none() {
            if let Some(s) = child.try_wait()? {
                crate::signals::forget_child(pid);
                status = Some(s);
            }
        }
        if status.is_some() && out.is_some() && err.is_some() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            ended(true, &mut child);
            return Ok(Bounded::TimedOut);
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(20))) {
            Ok(Event::Out(_, true)) => {
                ended(true, &mut child);
                return Ok(Bounded::TooMuchOutput);
            }
            Ok(Event::Out(o, false)) => out = Some(o),
            Ok(Event::Err(e)) => err = Some(e),
            Err(_) => {}
        }
    }
    let status = status.expect("ended");
    Ok(Bounded::Done(Ran {
        success: status.success(),
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.unwrap_or_default()).into_owned(),
    }))
}

/// Run and require success; the error quotes the command and what it printed.
pub fn run_ok(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<String> {
    let r = run(program, args, env, timeout)?;
    if !r.success {
        let said = if r.stderr.trim().is_empty() {
            r.stdout.trim()
        } else {
            r.stderr.trim()
        };
        bail!(
            "`{program} {}` failed ({}){}",
            args.join(" "),
            r.code
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed".into()),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        );
    }
    Ok(r.stdout)
}

/// Wait for a child up to `timeout`; past it, its process group is killed and that is an error.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            bail!(
                "did not finish within {}s and was stopped",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
