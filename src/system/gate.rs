//! The kubelet's start held at a gate during the cutover. Its start job is queued while Docker
//! still stops its containers; systemd runs the gate (an `ExecStartPre=` of a runtime drop-in)
//! and only starts the kubelet itself once the gate opens, which the walk does the moment every
//! container Docker ran has exited. What a start costs systemd while it tears Docker's scopes
//! down (queueing the job, forking, the unit's earlier `ExecStartPre=` lines) then happens
//! before the pods are gone instead of after; and any start of the kubelet during the cutover,
//! the walk's or anyone's, waits at the gate, so its files can be written before Docker stops
//! without a kubelet ever running beside Docker's pods.
//!
//! The gate is a FIFO. It is armed when it exists without its `.open` mark: a start then blocks
//! reading it until the walk writes `open` into it. The walk makes the mark before it writes,
//! and the gate looks for the mark after opening the FIFO, so a gate that starts at any moment
//! sees one or the other. Without the FIFO (never armed, or removed) the gate passes at once; a
//! gate that cannot open the FIFO fails its start.

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The unit whose starts the gate holds.
pub const UNIT: &str = "kubelet.service";
/// The runtime drop-in (under /run: gone at the next boot even if nothing removes it).
pub const DROP_IN: &str = "/run/systemd/system/kubelet.service.d/zz-cri-migrate-gate.conf";
/// The gate's FIFO; its mark is the same path with `.open`.
pub const FIFO: &str = "/run/cri-migrate/kubelet-gate";

/// The drop-in's text: the gate as the kubelet unit's last `ExecStartPre=` (drop-ins append to
/// it, in the order of their names: this one's sorts last). `$$` is systemd's `$`.
pub fn drop_in() -> String {
    format!(
        "# Written by cri-migrate during a migration, removed after it (and gone at reboot):\n\
         # the kubelet's start waits here until every container Docker ran has exited.\n\
         [Service]\n\
         ExecStartPre=/bin/sh -c 'g={FIFO}; [ -p \"$$g\" ] || exit 0; [ -e \"$$g.open\" ] && exit 0; exec 3<>\"$$g\"; [ -e \"$$g.open\" ] && exit 0; read -r w <&3; [ \"$$w\" = open ]'\n"
    )
}

/// The gate, swappable in tests.
pub trait Gate {
    /// Write the drop-in and arm the gate (systemd loads the drop-in at the caller's
    /// daemon-reload).
    fn install(&self) -> Result<()>;
    /// Open an armed gate: a start waiting at it goes on, and any later one passes. False when
    /// there was nothing to open (not armed, or already open).
    fn open(&self) -> Result<bool>;
    /// The drop-in, the FIFO and its mark gone (the caller reloads systemd).
    fn remove(&self) -> Result<()>;
}

/// No gate (runs that never hold the kubelet): installing one is an error.
pub struct NoGate;

impl Gate for NoGate {
    fn install(&self) -> Result<()> {
        bail!("no gate in this run")
    }
    fn open(&self) -> Result<bool> {
        Ok(false)
    }
    fn remove(&self) -> Result<()> {
        Ok(())
    }
}

/// The gate on the live node: its paths under the node's root (`/`, or the host's root mounted
/// at `--root` with `--live`), where the node's systemd sees them at their absolute paths.
pub struct RealGate {
    pub root: PathBuf,
}

impl RealGate {
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
    fn mark(&self) -> PathBuf {
        self.path(&format!("{FIFO}.open"))
    }
}

/// A directory of root's, made if missing; an error for anything else at the path (a symlink
/// is not followed).
fn own_dir(dir: &Path, mode: u32) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!("{} is not a directory", dir.display()),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display())),
    }
}

fn remove_if_there(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", p.display()))
        }
        _ => Ok(()),
    }
}

impl Gate for RealGate {
    fn install(&self) -> Result<()> {
        let fifo = self.path(FIFO);
        let unit_file = self.path(DROP_IN);
        let (Some(fifo_dir), Some(drop_in_dir)) = (fifo.parent(), unit_file.parent()) else {
            bail!("the gate's paths have no directory");
        };
        // Readable by all, the FIFO root's alone: a gate of a kubelet unit run as another user
        // sees it armed and fails to open it (its start fails: never a start let through
        // early), and passes once the mark is there.
        own_dir(fifo_dir, 0o755)?;
        own_dir(drop_in_dir, 0o755)?;
        // Armed afresh: an earlier run's mark or FIFO (or anything else there) gone first.
        remove_if_there(&self.mark())?;
        remove_if_there(&fifo)?;
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("cannot make the FIFO {}", fifo.display()))?;
        let tmp = unit_file.with_extension("conf.tmp");
        remove_if_there(&tmp)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(drop_in().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &unit_file)
            .with_context(|| format!("cannot write {}", unit_file.display()))?;
        Ok(())
    }

    fn open(&self) -> Result<bool> {
        let fifo = self.path(FIFO);
        let armed = std::fs::symlink_metadata(&fifo)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        if !armed || std::fs::symlink_metadata(self.mark()).is_ok() {
            return Ok(false);
        }
        // The mark first: a gate that opens the FIFO after the write below finds it.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(self.mark())
            .with_context(|| format!("cannot mark {} open", fifo.display()))?;
        // A gate waiting now holds the FIFO open: it reads the word. None waiting (ENXIO): the
        // mark is enough.
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
            .open(&fifo)
        {
            Ok(mut w) => {
                // A pipe's write this short is whole or fails; a gate that failed to read it
                // is started again and finds the mark.
                let _ = w.write_all(b"open\n");
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", fifo.display())),
        }
        Ok(true)
    }

    fn remove(&self) -> Result<()> {
        // The FIFO first: from then on the gate passes, whatever else is left.
        let fifo = self.path(FIFO);
        let drop_in = self.path(DROP_IN);
        remove_if_there(&fifo)?;
        remove_if_there(&self.mark())?;
        remove_if_there(&drop_in)?;
        // Their directories too where nothing else is in them (an empty drop-in directory says
        // nothing).
        for dir in [fifo.parent(), drop_in.parent()].into_iter().flatten() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn gate(dir: &Path) -> RealGate {
        RealGate {
            root: dir.to_path_buf(),
        }
    }

    /// The drop-in's command, as systemd would run it: its one `ExecStartPre=` line split into
    /// words (`$$` to `$`), with the FIFO moved under `root`.
    fn gate_command(root: &Path) -> Vec<String> {
        let text = drop_in();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStartPre="))
            .unwrap();
        crate::unit::words(line, true)
            .into_iter()
            .map(|w| {
                w.replace("$$", "$").replace(
                    FIFO,
                    &root.join(FIFO.trim_start_matches('/')).to_string_lossy(),
                )
            })
            .collect()
    }

    fn spawn_gate(root: &Path) -> std::process::Child {
        let argv = gate_command(root);
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn exits_within(child: &mut std::process::Child, d: Duration) -> Option<bool> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s.success());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn the_drop_in_is_one_exec_start_pre_line_that_names_the_fifo() {
        let text = drop_in();
        crate::flags::VarsFile::parse(crate::flags::FileKind::DropIn, &text).unwrap();
        let argv = gate_command(Path::new("/"));
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert!(
            argv[2].contains(FIFO) && !argv[2].contains("$$"),
            "{argv:?}"
        );
    }

    #[test]
    fn an_unarmed_gate_passes_an_armed_one_waits_until_opened() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        // Never armed: passes at once; opening it is nothing.
        let mut c = spawn_gate(dir.path());
        assert_eq!(exits_within(&mut c, Duration::from_secs(10)), Some(true));
        assert!(!g.open().unwrap());

        g.install().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(DROP_IN.trim_start_matches('/'))).unwrap(),
            drop_in()
        );
        let mut waiting = spawn_gate(dir.path());
        assert_eq!(
            exits_within(&mut waiting, Duration::from_millis(300)),
            None,
            "an armed gate waits"
        );
        assert!(g.open().unwrap());
        assert_eq!(
            exits_within(&mut waiting, Duration::from_secs(10)),
            Some(true)
        );
        assert!(!g.open().unwrap(), "already open");
        // A start after the opening passes (the mark).
        let mut later = spawn_gate(dir.path());
        assert_eq!(
            exits_within(&mut later, Duration::from_secs(10)),
            Some(true)
        );

        // Armed again by the next install; removed, it passes.
        g.install().unwrap();
        let mut held = spawn_gate(dir.path());
        assert_eq!(exits_within(&mut held, Duration::from_millis(200)), None);
        held.kill().unwrap();
        let _ = held.wait();
        g.remove().unwrap();
        assert!(!dir.path().join(DROP_IN.trim_start_matches('/')).exists());
        assert!(
            !dir.path().join("run/cri-migrate").exists(),
            "its directory too"
        );
        let mut free = spawn_gate(dir.path());
        assert_eq!(exits_within(&mut free, Duration::from_secs(10)), Some(true));
        g.remove().unwrap();
    }

    #[test]
    fn a_gate_that_reads_anything_but_open_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path());
        g.install().unwrap();
        let mut waiting = spawn_gate(dir.path());
        assert_eq!(exits_within(&mut waiting, Duration::from_millis(200)), None);
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(FIFO.trim_start_matches('/')))
            .unwrap();
        w.write_all(b"closed\n").unwrap();
        assert_eq!(
            exits_within(&mut waiting, Duration::from_secs(10)),
            Some(false)
        );
    }
}
