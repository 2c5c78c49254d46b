//! The node seen through `--root`: every node path is a path relative to the root prefix, so a
//! folder can stand for a whole node (tests, offline migration of a mounted image).

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where [`Node::path`] points a node path that cannot be resolved: a name under the root that
/// nothing creates, so that every operation on it finds nothing.
const UNRESOLVABLE: &str = ".cri-migrate-unresolvable-path";

/// The most a configuration file may hold: more is not a configuration (a link to /dev/zero, a
/// log mistaken for one) and is refused before it fills the memory.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A node path made plain, as the kernel would read it under a chroot at `/`: `.` and empty
/// components dropped, `..` taken back but never above the root. Lexical only (no links): for
/// naming, such as a file's copy in a backup.
pub fn clean(node_path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in node_path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
}

/// A file as found on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub content: String,
    pub mode: u32,
}

impl Node {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Node { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is this machine's `/`: only then may inspection run the node's
    /// programs (`kubelet --version`) or talk to its services.
    pub fn is_live(&self) -> bool {
        self.root
            .canonicalize()
            .map(|p| p == Path::new("/"))
            .unwrap_or(false)
    }

    /// The host path of a node path such as `/etc/containerd/config.toml`, resolved as inside a
    /// chroot at the root: `..` stops at the root, and every symbolic link — absolute or
    /// relative, the last component included — is followed relative to the root. So a node
    /// image's `/etc/containerd -> /etc/containerd` or `daemon.json -> /dev/zero` never reaches
    /// the host, and a write to a symlinked config goes to its target, the link kept. A path
    /// that cannot be resolved (a link loop) maps to a name under the root that does not exist;
    /// [`Node::resolve`] says why.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.resolve(node_path).unwrap_or_else(|_| {
            self.root
                .join(UNRESOLVABLE)
                .join(clean(node_path).trim_start_matches('/'))
        })
    }

    /// [`Node::path`], with an error for a path whose links loop (or nest deeper than the
    /// kernel allows, 40).
    pub fn resolve(&self, node_path: &str) -> Result<PathBuf> {
        use std::collections::VecDeque;
        use std::ffi::OsString;
        use std::path::Component;
        let mut todo: VecDeque<OsString> = Path::new(node_path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect();
        let mut done: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop_front() {
            if c == ".." {
                done.pop();
                continue;
            }
            let mut here = self.root.clone();
            here.extend(&done);
            here.push(&c);
            match std::fs::symlink_metadata(&here) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > 40 {
                        anyhow::bail!(
                            "{node_path}: too many levels of symbolic links under {}",
                            self.root.display()
                        );
                    }
                    let target = std::fs::read_link(&here)
                        .with_context(|| format!("cannot read the link {}", here.display()))?;
                    if target.is_absolute() {
                        done.clear();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => todo.push_front(n.to_os_string()),
                            Component::ParentDir => todo.push_front("..".into()),
                            _ => {}
                        }
                    }
                }
                _ => done.push(c),
            }
        }
        let mut out = self.root.clone();
        out.extend(&done);
        Ok(out)
    }

    /// Open a node path in one step, resolved by the kernel inside the root (openat2 with
    /// `RESOLVE_IN_ROOT`: `..` stops at the root, every symbolic link — absolute or relative —
    /// is followed relative to it, `/proc`'s magic links are refused), so that nothing swapped
    /// in between a check and the open can lead out of the root. `extra` adds resolve flags
    /// (`RESOLVE_NO_SYMLINKS` for a path already resolved). Where the kernel has no openat2
    /// (before 5.6), the lexical resolution of [`Node::resolve`], then an open. `Ok(None)` when
    /// it does not exist.
    fn open_in_root(
        &self,
        node_path: &str,
        flags: nix::fcntl::OFlag,
        extra: nix::fcntl::ResolveFlag,
    ) -> Result<Option<std::fs::File>> {
        use nix::errno::Errno;
        use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
        use std::os::fd::{AsRawFd, FromRawFd};
        let root = std::fs::File::open(&self.root)
            .with_context(|| format!("cannot open the node's root {}", self.root.display()))?;
        let rel = node_path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        // openat2 refuses any flag beside O_PATH but these three (EINVAL).
        let flags = if flags.contains(OFlag::O_PATH) {
            flags & (OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW)
        } else {
            flags | OFlag::O_NOCTTY
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | extra);
        match openat2(root.as_raw_fd(), rel, how) {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            Ok(fd) => Ok(Some(unsafe { std::fs::File::from_raw_fd(fd) })),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Ok(None),
            Err(Errno::ELOOP) => Err(crate::error::Failure::bad_input(
                node_path,
                format!(
                    "too many levels of symbolic links under {}",
                    self.root.display()
                ),
                "Fix the symbolic links on the node so that the path leads to a file.",
            )
            .into()),
            // No openat2 (before 5.6), or a seccomp filter that refuses it (EPERM).
            Err(Errno::ENOSYS) | Err(Errno::EPERM) => {
                use std::os::unix::fs::OpenOptionsExt;
                let path = self.resolve(node_path)?;
                let mut o = std::fs::OpenOptions::new();
                let flags = flags & !OFlag::O_ACCMODE;
                o.read(true).custom_flags(flags.bits());
                match o.open(&path) {
                    Ok(f) => Ok(Some(f)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("cannot open {node_path}")),
                }
            }
            Err(e) => Err(anyhow::Error::from(e))
                .with_context(|| format!("cannot open {node_path} under {}", self.root.display())),
        }
    }

    /// What is at a node path (links followed inside the root), without opening it for reading.
    fn stat(&self, node_path: &str) -> Option<std::fs::Metadata> {
        self.open_in_root(
            node_path,
            nix::fcntl::OFlag::O_PATH,
            nix::fcntl::ResolveFlag::empty(),
        )
        .ok()
        .flatten()
        .and_then(|f| f.metadata().ok())
    }

    pub fn exists(&self, node_path: &str) -> bool {
        self.stat(node_path).is_some()
    }

    pub fn is_dir(&self, node_path: &str) -> bool {
        self.stat(node_path).is_some_and(|m| m.is_dir())
    }

    pub fn is_file(&self, node_path: &str) -> bool {
        self.stat(node_path).is_some_and(|m| m.is_file())
    }

    /// An executable regular file (a runtime's binary).
    pub fn is_executable(&self, node_path: &str) -> bool {
        self.stat(node_path)
            .is_some_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    /// The text of a file, `None` when it does not exist. Any other problem (permissions, not
    /// UTF-8) is an error naming the file.
    pub fn read(&self, node_path: &str) -> Result<Option<String>> {
        Ok(self.snapshot(node_path)?.map(|s| s.content))
    }

    pub fn snapshot(&self, node_path: &str) -> Result<Option<Snapshot>> {
        let Some((bytes, mode)) = self.regular_file(
            node_path,
            MAX_CONFIG_BYTES,
            "A configuration file is never that large: check what the file is.",
        )?
        else {
            return Ok(None);
        };
        let content = String::from_utf8(bytes).map_err(|_| {
            crate::error::Failure::bad_input(
                node_path,
                "the file is not UTF-8 text",
                "Check the file; it should be a text configuration file.",
            )
        })?;
        // A credential in any file, found by the file's structure (a URL's password, a proxy
        // with or without a scheme, a secret-named variable, a credential header): never
        // printed.
        crate::secrets::from_file(&content);
        Ok(Some(Snapshot { content, mode }))
    }

    /// The bytes of a regular file of at most `max` bytes (a manifest, containerd's metadata),
    /// `None` when it does not exist; anything else is an error naming it, as for a config.
    pub fn read_bytes(&self, node_path: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let too_large = "Check what the file is.";
        Ok(self
            .regular_file(node_path, max, too_large)?
            .map(|(bytes, _)| bytes))
    }

    /// A regular file's bytes and mode, read through the root. A directory, a FIFO (a read
    /// would wait for a writer for ever), a device or more than `max` bytes is an error.
    fn regular_file(
        &self,
        node_path: &str,
        max: u64,
        too_large: &str,
    ) -> Result<Option<(Vec<u8>, u32)>> {
        let Some((file, meta)) = self.open_regular(node_path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        {
            use std::io::Read;
            file.take(max + 1)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {node_path}"))?;
        }
        if bytes.len() as u64 > max {
            return Err(too_big(node_path, max, too_large).into());
        }
        Ok(Some((bytes, meta.permissions().mode() & 0o7777)))
    }

    /// A regular file opened for reading through the root, with what it is. What it is is
    /// seen first without opening it for reading (a device's open can act), then the open
    /// file is checked again (`fstat`): the same inode, still a regular file, so that a link
    /// flipped to `/dev/zero` or a FIFO in between is refused rather than read for ever. A
    /// directory, a FIFO, a device is an error naming the file; `None` when it does not exist.
    fn open_regular(&self, node_path: &str) -> Result<Option<(std::fs::File, std::fs::Metadata)>> {
        use nix::fcntl::OFlag;
        let Some(meta) = self.stat_checked(node_path)? else {
            return Ok(None);
        };
        if meta.is_dir() {
            return Err(crate::error::Failure::bad_input(
                node_path,
                "it is a directory where a file was expected",
                "Move the directory aside (the program that reads this file would fail on it too).",
            )
            .into());
        }
        if !meta.is_file() {
            return Err(crate::error::Failure::bad_input(
                node_path,
                format!(
                    "it is not a regular file ({})",
                    describe(&meta.file_type())
                ),
                "Only regular files are read as configuration; replace it with the file it stands for.",
            )
            .into());
        }
        let file = self
            .open_in_root(
                node_path,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK,
                nix::fcntl::ResolveFlag::empty(),
            )?
            .with_context(|| format!("{node_path} went away while it was read"))?;
        let now = file
            .metadata()
            .with_context(|| format!("cannot read {node_path}"))?;
        {
            use std::os::unix::fs::MetadataExt;
            if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) || !now.is_file() {
                return Err(crate::error::Failure::bad_input(
                    node_path,
                    "it changed while it was read (another file, or not a regular file any more)",
                    "Run again once nothing changes the node's files; a link that keeps changing is not read.",
                )
                .into());
            }
        }
        Ok(Some((file, now)))
    }

    /// Copy a regular file of at most `max` bytes out of the node to `dest` (a path of the
    /// tool's own, created new), streamed: never more than a buffer in memory. The file is
    /// opened as every node file is ([`Node::open_regular`]). `Ok(false)` when it does not
    /// exist.
    pub fn copy_out(&self, node_path: &str, dest: &Path, max: u64) -> Result<bool> {
        use std::io::Read;
        let Some((file, meta)) = self.open_regular(node_path)? else {
            return Ok(false);
        };
        if meta.len() > max {
            return Err(too_big(node_path, max, "Check what the file is.").into());
        }
        let mut out = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest)
        }
        .with_context(|| format!("cannot create {}", dest.display()))?;
        let copied = std::io::copy(&mut file.take(max + 1), &mut out)
            .with_context(|| format!("cannot copy {node_path}"))?;
        if copied > max {
            return Err(too_big(node_path, max, "Check what the file is.").into());
        }
        Ok(true)
    }

    /// The `len` bytes that follow the first `magic` in a regular file of at most `max` bytes,
    /// read in chunks, `None` when the file or the magic is not there. A larger file is an
    /// error naming it (a 1 TiB sparse file is not scanned).
    pub fn find_after(
        &self,
        node_path: &str,
        magic: &[u8],
        len: usize,
        max: u64,
    ) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let Some((file, meta)) = self.open_regular(node_path)? else {
            return Ok(None);
        };
        if meta.len() > max {
            return Err(too_big(node_path, max, "Give the version with a flag instead.").into());
        }
        let mut f = file.take(max);
        let mut window: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            window.extend_from_slice(&chunk[..n]);
            if let Some(i) = window.windows(magic.len()).position(|w| w == magic) {
                let mut out = window.split_off(i + magic.len());
                while out.len() < len {
                    let n = f.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&chunk[..n]);
                }
                out.truncate(len);
                return Ok(Some(out));
            }
            // Keep the tail that may hold the start of the magic.
            let keep = window.len().saturating_sub(magic.len());
            window.drain(..keep);
        }
    }

    /// [`Node::stat`], with the errors a read must say (links that loop, no permission).
    fn stat_checked(&self, node_path: &str) -> Result<Option<std::fs::Metadata>> {
        match self.open_in_root(
            node_path,
            nix::fcntl::OFlag::O_PATH,
            nix::fcntl::ResolveFlag::empty(),
        )? {
            Some(f) => Ok(Some(
                f.metadata()
                    .with_context(|| format!("cannot read {node_path}"))?,
            )),
            None => Ok(None),
        }
    }

    /// Names in a directory, sorted; empty when it does not exist.
    pub fn list(&self, node_dir: &str) -> Vec<String> {
        use nix::fcntl::OFlag;
        let dir = self
            .open_in_root(
                node_dir,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                nix::fcntl::ResolveFlag::empty(),
            )
            .ok()
            .flatten();
        let mut names: Vec<String> = dir
            .and_then(|f| {
                use std::os::fd::IntoRawFd;
                // Dir takes the descriptor over (and closes it).
                nix::dir::Dir::from_fd(f.into_raw_fd()).ok()
            })
            .map(|mut d| {
                d.iter()
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
                    .filter(|n| n != "." && n != "..")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Node {
    /// A node path's directory, opened, and its last name: the path resolved inside the root
    /// first (its links followed there), then the directory opened with no link allowed on the
    /// way (`RESOLVE_NO_SYMLINKS`), so that a link swapped in since fails the open rather than
    /// lead out. With `create`, missing directories are made on the way, one `mkdirat` at a
    /// time under the one before, and returned (node paths, outermost first).
    fn parent_of(
        &self,
        node_path: &str,
        create: bool,
    ) -> Result<(std::fs::File, String, Vec<String>)> {
        use nix::fcntl::{OFlag, ResolveFlag};
        use std::os::fd::AsRawFd;
        let resolved = self.resolve(node_path)?;
        let rel = resolved
            .strip_prefix(&self.root)
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{node_path} names no file"))?
            .to_string();
        let mut created = Vec::new();
        let mut dir = String::from("/");
        let open = |d: &str| {
            self.open_in_root(
                d,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                ResolveFlag::RESOLVE_NO_SYMLINKS,
            )
        };
        let mut fd = open(&dir)?.context("the node's root is gone")?;
        for c in rel.parent().into_iter().flat_map(|p| p.components()) {
            let c = c.as_os_str().to_str().context("a path that is not UTF-8")?;
            let next = join(&dir, c);
            let f = match open(&next)? {
                Some(f) => f,
                None if create => {
                    nix::sys::stat::mkdirat(
                        Some(fd.as_raw_fd()),
                        c,
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    )
                    .with_context(|| format!("cannot create directory {next}"))?;
                    created.push(next.clone());
                    open(&next)?.with_context(|| format!("{next} went away"))?
                }
                None => anyhow::bail!("{next} does not exist"),
            };
            fd = f;
            dir = next;
        }
        Ok((fd, name, created))
    }

    /// Replace a file atomically: a temp file in the same directory, written and fsynced, then
    /// renamed over the target, then the directory fsynced. A reader (or a crash) sees the old
    /// file or the new one, never half of one. Every step is made relative to the directory
    /// opened inside the root ([`Node::parent_of`]). Missing parent directories are created and
    /// returned (node paths, outermost first) so that a rollback can remove them.
    pub fn write_atomic(
        &self,
        node_path: &str,
        content: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<Vec<String>> {
        use nix::fcntl::{openat, renameat, OFlag};
        use nix::sys::stat::Mode;
        use std::io::Write;
        use std::os::fd::{AsRawFd, FromRawFd};
        let (dir, name, created) = self.parent_of(node_path, true)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp_name = format!(".cri-migrate.{name}.{}.{nanos}.{seq}", std::process::id());
        let fd = openat(
            Some(dir.as_raw_fd()),
            tmp_name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .with_context(|| format!("cannot create a temporary file beside {node_path}"))?;
        // SAFETY: openat returned a new descriptor that nothing else owns.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        let unlink = || {
            let _ = nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                tmp_name.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        };
        let written = (|| -> Result<()> {
            f.write_all(content)
                .with_context(|| format!("cannot write {node_path}"))?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                // Only root may give a file away; keep what we can otherwise.
                if nix::unistd::Uid::effective().is_root() {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                        .with_context(|| format!("cannot set the owner of {node_path}"))?;
                }
            }
            f.sync_all()
                .with_context(|| format!("cannot flush {node_path} to disk"))?;
            renameat(
                Some(dir.as_raw_fd()),
                tmp_name.as_str(),
                Some(dir.as_raw_fd()),
                name.as_str(),
            )
            .with_context(|| format!("cannot move the new {node_path} into place"))?;
            Ok(())
        })();
        if written.is_err() {
            unlink();
        }
        written?;
        dir.sync_all()
            .with_context(|| format!("cannot flush the directory of {node_path}"))?;
        Ok(created)
    }

    /// Owner of a file, if it exists.
    pub fn owner(&self, node_path: &str) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        self.stat(node_path).map(|m| (m.uid(), m.gid()))
    }

    /// What is at a node path (links followed inside the root), if anything.
    pub fn metadata(&self, node_path: &str) -> Option<std::fs::Metadata> {
        self.stat(node_path)
    }

    /// Remove a file (a rollback of one that did not exist); a missing one is fine.
    pub fn remove(&self, node_path: &str) -> Result<()> {
        self.unlink(node_path, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .with_context(|| format!("cannot remove {node_path}"))
    }

    /// Remove an empty directory; a missing or non-empty one is left (`Ok(false)`).
    pub fn remove_dir(&self, node_path: &str) -> Result<bool> {
        match self.unlink(node_path, nix::unistd::UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(e)
                if e.downcast_ref::<nix::errno::Errno>() == Some(&nix::errno::Errno::ENOTEMPTY) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn unlink(&self, node_path: &str, how: nix::unistd::UnlinkatFlags) -> Result<()> {
        use std::os::fd::AsRawFd;
        let (dir, name) = match self.parent_of(node_path, false) {
            Ok((d, n, _)) => (d, n),
            // Its directory is not there: neither is it.
            Err(_) if !self.exists(node_path) => return Ok(()),
            Err(e) => return Err(e),
        };
        match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name.as_str(), how) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Move a file from one node path to another (`rename`, or a copy and a removal across
    /// file systems), each side's directory opened inside the root; the target's directories
    /// are made.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        use std::os::fd::AsRawFd;
        let (fdir, fname, _) = self.parent_of(from, false)?;
        let (tdir, tname, _) = self.parent_of(to, true)?;
        match nix::fcntl::renameat(
            Some(fdir.as_raw_fd()),
            fname.as_str(),
            Some(tdir.as_raw_fd()),
            tname.as_str(),
        ) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EXDEV) => {
                let meta = self
                    .stat_checked(from)?
                    .with_context(|| format!("{from} is gone"))?;
                let bytes = self
                    .read_bytes(from, MAX_CONFIG_BYTES)?
                    .with_context(|| format!("{from} is gone"))?;
                self.write_atomic(to, &bytes, meta.permissions().mode() & 0o7777, None)?;
                self.remove(from)
            }
            Err(e) => {
                Err(anyhow::Error::from(e)).with_context(|| format!("cannot move {from} to {to}"))
            }
        }
    }
}

/// What a file that is not a regular file is, for a message.
/// A node file over a size bound, refused naming it.
fn too_big(node_path: &str, max: u64, fix: &str) -> crate::error::Failure {
    crate::error::Failure::bad_input(
        node_path,
        format!("it holds more than {} MiB", max >> 20),
        fix,
    )
}

fn describe(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link that leads nowhere"
    } else {
        "not a file"
    }
}

/// A node made of these files in a temporary directory (kept alive by the `TempDir`), for
/// tests.
#[cfg(test)]
pub fn test_node(files: &[(&str, &str)]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new(dir.path());
    for (p, text) in files {
        node.write_atomic(p, text.as_bytes(), 0o644, None).unwrap();
    }
    (dir, node)
}

/// Join a node directory and a name into a node path.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(target: &str, at: &Path) {
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, at).unwrap();
    }

    #[test]
    fn links_and_dotdot_resolve_inside_the_root() {
        let (dir, n) = test_node(&[("/real/containerd/config.toml", "version = 2\n")]);
        let root = dir.path();
        // An absolute link to a directory: followed inside the root, not on the host.
        link("/real/containerd", &root.join("etc/containerd"));
        assert_eq!(
            n.path("/etc/containerd/config.toml"),
            root.join("real/containerd/config.toml")
        );
        assert_eq!(
            n.read("/etc/containerd/config.toml").unwrap().as_deref(),
            Some("version = 2\n")
        );
        // `..` stops at the root, however many.
        assert_eq!(
            n.path("/var/lib/kubelet/../../../../../etc/passwd"),
            root.join("etc/passwd")
        );
        assert_eq!(
            n.read("/var/lib/kubelet/../../../../../etc/passwd")
                .unwrap(),
            None
        );
        // A relative link climbing out of the root stops at it too.
        link(
            "../../../../../../../../etc/os-release",
            &root.join("etc/hostname"),
        );
        assert_eq!(n.path("/etc/hostname"), root.join("etc/os-release"));
        // A link to itself: an error, and `path` leads nowhere on the host.
        link("/etc/loop", &root.join("etc/loop"));
        assert!(format!("{:#}", n.resolve("/etc/loop/x").unwrap_err()).contains("too many levels"));
        assert!(n.path("/etc/loop/x").starts_with(root.join(UNRESOLVABLE)));
        let err = n.read("/etc/loop/x").unwrap_err();
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::exit::BAD_INPUT
        );
    }

    #[test]
    fn only_regular_files_of_a_sane_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let n = Node::new(root);
        std::fs::create_dir_all(root.join("etc/docker")).unwrap();
        nix::unistd::mkfifo(
            &root.join("etc/docker/daemon.json"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        let err = format!("{:#}", n.read("/etc/docker/daemon.json").unwrap_err());
        assert!(err.contains("not a regular file (a FIFO)"), "{err}");
        // `daemon.json -> /dev/zero` looks for the node's /dev/zero, which an image has not.
        std::fs::remove_file(root.join("etc/docker/daemon.json")).unwrap();
        link("/dev/zero", &root.join("etc/docker/daemon.json"));
        assert_eq!(n.read("/etc/docker/daemon.json").unwrap(), None);
        let big = std::fs::File::create(root.join("etc/big.toml")).unwrap();
        big.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let err = n.read("/etc/big.toml").unwrap_err();
        assert!(format!("{err:#}").contains("more than 16 MiB"), "{err:#}");
    }

    #[test]
    fn writes_go_through_a_link_to_its_target() {
        let (dir, n) = test_node(&[("/opt/cfg/config.toml", "old\n")]);
        let root = dir.path();
        link(
            "../../opt/cfg/config.toml",
            &root.join("etc/containerd/config.toml"),
        );
        n.write_atomic("/etc/containerd/config.toml", b"new\n", 0o644, None)
            .unwrap();
        assert!(
            std::fs::symlink_metadata(root.join("etc/containerd/config.toml"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(root.join("opt/cfg/config.toml")).unwrap(),
            "new\n"
        );
        // A dangling link: the write creates its target; removing "the file" removes the target
        // and leaves the link as it was.
        link("/opt/cfg/crictl.yaml", &root.join("etc/crictl.yaml"));
        n.write_atomic("/etc/crictl.yaml", b"x\n", 0o644, None)
            .unwrap();
        assert!(root.join("opt/cfg/crictl.yaml").is_file());
        n.remove("/etc/crictl.yaml").unwrap();
        assert!(!root.join("opt/cfg/crictl.yaml").exists());
        assert!(std::fs::symlink_metadata(root.join("etc/crictl.yaml")).is_ok());
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/var/lib/kubelet/../../../../etc/x"), "/etc/x");
        assert_eq!(clean("a//./b/"), "/a/b");
        assert_eq!(clean(".."), "/");
    }

    #[test]
    fn paths_are_under_the_root() {
        let n = Node::new("/tmp/node");
        assert_eq!(n.path("/etc/x"), PathBuf::from("/tmp/node/etc/x"));
        assert_eq!(n.path("etc/x"), PathBuf::from("/tmp/node/etc/x"));
    }

    #[test]
    fn missing_file_is_none_and_mode_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let n = Node::new(dir.path());
        assert_eq!(n.read("/nope").unwrap(), None);
        std::fs::write(dir.path().join("f"), "x").unwrap();
        std::fs::set_permissions(dir.path().join("f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let s = n.snapshot("/f").unwrap().unwrap();
        assert_eq!((s.content.as_str(), s.mode), ("x", 0o600));
        assert!(!n.is_live());
    }

    #[test]
    fn atomic_write_creates_dirs_keeps_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let n = Node::new(dir.path());
        let created = n
            .write_atomic(
                "/etc/containerd/certs.d/docker.io/hosts.toml",
                b"a",
                0o640,
                None,
            )
            .unwrap();
        assert_eq!(
            created,
            [
                "/etc",
                "/etc/containerd",
                "/etc/containerd/certs.d",
                "/etc/containerd/certs.d/docker.io"
            ]
        );
        let s = n
            .snapshot("/etc/containerd/certs.d/docker.io/hosts.toml")
            .unwrap()
            .unwrap();
        assert_eq!((s.content.as_str(), s.mode), ("a", 0o640));
        assert!(n
            .write_atomic(
                "/etc/containerd/certs.d/docker.io/hosts.toml",
                b"b",
                0o644,
                None
            )
            .unwrap()
            .is_empty());
        assert_eq!(n.list("/etc/containerd/certs.d/docker.io"), ["hosts.toml"]);
        n.remove("/etc/containerd/certs.d/docker.io/hosts.toml")
            .unwrap();
        n.remove("/etc/containerd/certs.d/docker.io/hosts.toml")
            .unwrap();
    }

    #[test]
    fn a_directory_swapped_for_a_link_mid_run_never_lets_a_write_or_read_out() {
        // A hostile image flips /etc/cni between a directory and a link to a host directory
        // while the tool writes and reads under it: every open is resolved inside the root in
        // one step (or refused), so nothing lands on, or is read from, the host.
        let dir = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("secret"), "host\n").unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let n = Node::new(&root);
        std::fs::create_dir(root.join("etc/cni")).unwrap();
        std::fs::write(root.join("etc/cni/secret"), "node\n").unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("etc/cni.link")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (root, stop) = (root.clone(), stop.clone());
            std::thread::spawn(move || {
                let (d, link, away) = (
                    root.join("etc/cni"),
                    root.join("etc/cni.link"),
                    root.join("etc/cni.away"),
                );
                let pause = || std::thread::sleep(std::time::Duration::from_micros(100));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // The link takes the directory's place, then gives it back.
                    let _ = std::fs::rename(&d, &away);
                    let _ = std::fs::rename(&link, &d);
                    pause();
                    let _ = std::fs::rename(&d, &link);
                    let _ = std::fs::rename(&away, &d);
                    pause();
                }
            })
        };
        for i in 0..3000 {
            let _ = n.write_atomic(&format!("/etc/cni/f{}", i % 7), b"x", 0o644, None);
            if let Ok(Some(t)) = n.read("/etc/cni/secret") {
                assert_eq!(t, "node\n", "a read reached the host");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().unwrap();
        let leaked: Vec<_> = std::fs::read_dir(host.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n != "secret")
            .collect();
        assert!(leaked.is_empty(), "written on the host: {leaked:?}");
    }
}
