//! Side effects on the system, each behind a small trait so that tests can swap it: running
//! read-only programs for inspection, systemd, kubectl, the package manager. Production uses the
//! real programs, found on PATH with `which`; the black-box tests put fakes first on PATH.

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
    let mut child = crate::signals::spawn(
        Command::new(&path)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| anyhow!("cannot run {}: {e}", path.display()))?;
    let pid = child.id();
    // Read the pipes on threads so a chatty program cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut so, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut se, &mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            crate::signals::forget_child(pid);
            break status;
        }
        if Instant::now() >= deadline {
            // The whole group: a child's own children would keep the pipes open.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            crate::signals::forget_child(pid);
            bail!(
                "`{program} {}` did not finish within {}s and was stopped",
                args.join(" "),
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Ran {
        success: status.success(),
        code: status.code(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
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
