//! Side effects on the live system, behind small traits so tests can swap them.
//! Inspection only runs read-only programs (`kubelet --version`, `docker ps`), and only on the
//! live node (`--root /`).

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
        let path = which::which(program).ok()?;
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // A hung program (a stuck docker daemon) must not hang inspection.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    let out = child.wait_with_output().ok()?;
                    return status
                        .success()
                        .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }
}

/// For nodes under `--root`: never runs anything.
pub struct NoCommands;

impl Commands for NoCommands {
    fn output(&self, _: &str, _: &[&str]) -> Option<String> {
        None
    }
}
