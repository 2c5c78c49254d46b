//! The tool's own records on the node — `/var/lib/cri-migrate` (backups: manifests, journals,
//! output logs, copies of files) and the lock in `/run` — read and written as node files that
//! may be hostile (a node image under `--root` is someone else's). Where the records live is
//! found through the root as any node path ([`Node::resolve`]: links followed inside it); from
//! there on nothing is followed: each directory is opened from its parent with
//! `O_NOFOLLOW|O_DIRECTORY`, each file with `O_NOFOLLOW|O_NONBLOCK` (a FIFO neither blocks nor
//! is read), and only then checked on the descriptor itself (`fstat`): a regular file, owned by
//! this user, of a bounded size. Directories are made 0700 and files 0600 whatever the umask; a
//! record directory writable by others, or owned by another user, is refused: whoever can write
//! there could make the tool write or undo what they chose.

use crate::error::Failure;
use crate::node::Node;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Where the tool keeps its records.
pub const HOME: &str = "/var/lib/cri-migrate";

/// The most a record may hold: a manifest or a journal is never near that.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// An open directory of the tool's records.
#[derive(Debug)]
pub struct RecordDir {
    fd: OwnedFd,
    /// Its node path, for messages.
    pub node_path: String,
}

fn refused(node_path: &str, problem: impl std::fmt::Display, fix: &str) -> anyhow::Error {
    Failure::bad_input(node_path, problem, fix).into()
}

/// A name inside a record directory: one component, not `.` or `..`.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        anyhow::bail!("{name:?} is not a record name");
    }
    Ok(())
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The type bits of a status (`S_IFREG`, `S_IFDIR`, `S_IFLNK`...).
fn file_type(st: &nix::sys::stat::FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Open an existing directory `name` under `parent` without following a link.
fn open_dir_at(parent: RawFd, name: &str) -> nix::Result<OwnedFd> {
    openat(
        Some(parent),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(owned)
}

impl RecordDir {
    /// The directory `node_dir` (`/var/lib/cri-migrate` or below it, or another directory the
    /// tool owns such as `/run`'s parent of the lock), `None` when it does not exist and `create`
    /// is false. Everything from `/var/lib/cri-migrate` down is opened link by link without
    /// following; the part above it is resolved through the root.
    pub fn open(node: &Node, node_dir: &str, create: bool) -> Result<Option<RecordDir>> {
        let clean = crate::node::clean(node_dir);
        let (above, below) = match clean.strip_prefix(HOME) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                ("/var/lib", format!("cri-migrate{rest}"))
            }
            _ => (clean.as_str(), String::new()),
        };
        let base = node.resolve(above).map_err(|e| {
            refused(
                above,
                format!("{e:#}"),
                "Fix the symbolic links on the node so that the path leads to a directory.",
            )
        })?;
        if create {
            std::fs::create_dir_all(&base)
                .with_context(|| format!("cannot create {above} ({})", base.display()))?;
        }
        let fd = match nix::fcntl::open(
            &base,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => owned(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => {
                return Err(refused(
                    above,
                    format!("it cannot be opened as a directory ({e})"),
                    "Check what the path is on the node.",
                ))
            }
        };
        let mut dir = RecordDir {
            fd,
            node_path: above.to_string(),
        };
        for name in below.split('/').filter(|c| !c.is_empty()) {
            match dir.subdir(name, create)? {
                Some(d) => dir = d,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn child(&self, name: &str) -> String {
        crate::node::join(&self.node_path, name)
    }

    /// A directory of records under this one, made 0700 when `create` and missing. A link, a
    /// file, or a directory that another user owns or others may write is refused; one of ours
    /// that others may only read (made by an earlier version under the umask) is narrowed to
    /// 0700.
    pub fn subdir(&self, name: &str, create: bool) -> Result<Option<RecordDir>> {
        check_name(name)?;
        let path = self.child(name);
        let fd = match open_dir_at(self.raw(), name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(Some(self.raw()), name, Mode::S_IRWXU) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => {
                        return Err(anyhow::anyhow!("cannot create {path}: {e}"));
                    }
                }
                open_dir_at(self.raw(), name).map_err(|e| self.not_a_dir(&path, e))?
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(self.not_a_dir(&path, e)),
        };
        let st = fstat(fd.as_raw_fd()).with_context(|| format!("cannot read {path}"))?;
        let me = nix::unistd::geteuid().as_raw();
        if st.st_uid != me {
            return Err(refused(
                &path,
                format!(
                    "it belongs to user {} (cri-migrate runs as {me}): its records could have been written by someone else",
                    st.st_uid
                ),
                "Move the directory aside after checking it; cri-migrate makes a new one.",
            ));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(refused(
                &path,
                format!(
                    "group or others may write to it (mode {:o}): its records could have been replaced",
                    st.st_mode & 0o7777
                ),
                "Check its content, then `chmod 700` it (cri-migrate makes its directories 0700).",
            ));
        }
        if st.st_mode & 0o7777 != 0o700 {
            fchmod(fd.as_raw_fd(), Mode::S_IRWXU)
                .with_context(|| format!("cannot narrow {path} to 0700"))?;
        }
        Ok(Some(RecordDir {
            fd,
            node_path: path,
        }))
    }

    /// A new directory of records under this one, 0700: refused if anything stands at that
    /// name already (a backup is never written into a directory it did not make).
    pub fn create_subdir(&self, name: &str) -> Result<RecordDir> {
        check_name(name)?;
        let path = self.child(name);
        mkdirat(Some(self.raw()), name, Mode::S_IRWXU).map_err(|e| match e {
            Errno::EEXIST => refused(
                &path,
                "it exists already, and cri-migrate writes a new backup only into a directory it made",
                "Move it aside after checking it, then run again.",
            ),
            e => anyhow::anyhow!("cannot create {path}: {e}"),
        })?;
        self.subdir(name, false)?
            .with_context(|| format!("{path} vanished as it was made"))
    }

    fn not_a_dir(&self, path: &str, e: Errno) -> anyhow::Error {
        match e {
            Errno::ELOOP | Errno::ENOTDIR => refused(
                path,
                "it is a symbolic link or not a directory, where cri-migrate keeps its own records",
                "Move it aside after checking it; cri-migrate never follows a link there.",
            ),
            e => anyhow::anyhow!("cannot open {path}: {e}"),
        }
    }

    /// Open a file of this directory without following a link and without waiting on a FIFO,
    /// then require a regular file of ours.
    fn open_file(&self, name: &str, flags: OFlag, create: bool) -> Result<Option<File>> {
        check_name(name)?;
        let path = self.child(name);
        let mut flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT;
        }
        let fd = match openat(Some(self.raw()), name, flags, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(fd) => owned(fd),
            Err(Errno::ENOENT) if !create => return Ok(None),
            Err(Errno::ELOOP) | Err(Errno::ENXIO) | Err(Errno::EISDIR) => {
                return Err(self.not_regular(&path, "a symbolic link, a FIFO or a directory"))
            }
            Err(e) => return Err(anyhow::anyhow!("cannot open {path}: {e}")),
        };
        let st = fstat(fd.as_raw_fd()).with_context(|| format!("cannot read {path}"))?;
        if file_type(&st) != SFlag::S_IFREG {
            return Err(self.not_regular(&path, "not a regular file"));
        }
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(refused(
                &path,
                format!("it belongs to user {}, not to cri-migrate", st.st_uid),
                "Move it aside after checking it.",
            ));
        }
        let file = File::from(fd);
        // Back to blocking for a regular file (no effect on it, but plain semantics after).
        let _ = nix::fcntl::fcntl(
            file.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(flags & OFlag::O_APPEND),
        );
        Ok(Some(file))
    }

    fn not_regular(&self, path: &str, what: &str) -> anyhow::Error {
        refused(
            path,
            format!("it is {what}, where cri-migrate keeps a record of its own"),
            "Move it aside after checking it; cri-migrate reads and writes only regular files there.",
        )
    }

    /// A record's bytes, `None` when there is none; more than `MAX_RECORD_BYTES` is refused.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(f) = self.open_file(name, OFlag::O_RDONLY, false)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", self.child(name)))?;
        if bytes.len() as u64 > MAX_RECORD_BYTES {
            return Err(refused(
                &self.child(name),
                format!("it holds more than {} MiB", MAX_RECORD_BYTES >> 20),
                "A record of cri-migrate is never that large: check what the file is.",
            ));
        }
        Ok(Some(bytes))
    }

    pub fn read_string(&self, name: &str) -> Result<Option<String>> {
        self.read(name)?
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", self.child(name)))
            })
            .transpose()
    }

    /// An entry's status, not following a link; `None` when there is none.
    fn stat(&self, name: &str) -> Option<nix::sys::stat::FileStat> {
        check_name(name).ok()?;
        nix::sys::stat::fstatat(
            Some(self.raw()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ok()
    }

    /// Whether an entry of that name exists (a link counts: it is not followed).
    pub fn has(&self, name: &str) -> bool {
        self.stat(name).is_some()
    }

    /// Whether an entry is a plain file (not followed: a link is not one).
    pub fn is_file(&self, name: &str) -> bool {
        self.stat(name)
            .is_some_and(|st| file_type(&st) == SFlag::S_IFREG)
    }

    /// Replace a record atomically, 0600: a fresh temporary file (whatever stood at its name is
    /// removed first, never followed), written and synced, renamed over the record, the
    /// directory synced.
    pub fn write_atomic(&self, name: &str, content: &[u8]) -> Result<()> {
        check_name(name)?;
        let tmp = format!("{name}.tmp");
        match unlinkat(Some(self.raw()), tmp.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot remove {} to write {}: {e}",
                    self.child(&tmp),
                    self.child(name)
                ))
            }
        }
        self.create_new(&tmp, content)?;
        renameat(Some(self.raw()), tmp.as_str(), Some(self.raw()), name)
            .with_context(|| format!("cannot move {} into place", self.child(name)))?;
        self.sync()
    }

    /// A new record (refused if anything stands at that name), 0600, synced.
    pub fn create_new(&self, name: &str, content: &[u8]) -> Result<()> {
        check_name(name)?;
        let fd = openat(
            Some(self.raw()),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map(owned)
        .with_context(|| format!("cannot create {}", self.child(name)))?;
        // The umask may have narrowed it further; never wider than 0600.
        fchmod(fd.as_raw_fd(), Mode::S_IRUSR | Mode::S_IWUSR)?;
        let mut f = File::from(fd);
        f.write_all(content)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", self.child(name)))
    }

    /// A record to append to (created 0600), such as the journal or the output log.
    pub fn append(&self, name: &str) -> Result<File> {
        self.open_or_create(name, OFlag::O_WRONLY | OFlag::O_APPEND)
    }

    /// A lock file (created 0600), open for reading and writing.
    pub fn lock_file(&self, name: &str) -> Result<File> {
        self.open_or_create(name, OFlag::O_RDWR)
    }

    /// A record opened as [`RecordDir::open_file`] opens it, created if missing, and 0600
    /// whatever it was (the umask, an earlier version).
    fn open_or_create(&self, name: &str, flags: OFlag) -> Result<File> {
        let f = self.open_file(name, flags, true)?.expect("created");
        fchmod(f.as_raw_fd(), Mode::S_IRUSR | Mode::S_IWUSR)?;
        Ok(f)
    }

    /// An existing lock file, read only; `None` when there is none.
    pub fn lock_file_existing(&self, name: &str) -> Result<Option<File>> {
        self.open_file(name, OFlag::O_RDONLY, false)
    }

    /// The names in this directory, sorted (links and all: the caller opens each as a record).
    pub fn list(&self) -> Vec<String> {
        let Ok(fd) = nix::unistd::dup(self.raw()) else {
            return vec![];
        };
        let Ok(mut dir) = nix::dir::Dir::from_fd(fd) else {
            return vec![];
        };
        let mut names: Vec<String> = dir
            .iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        names
    }

    pub fn sync(&self) -> Result<()> {
        nix::unistd::fsync(self.raw()).with_context(|| format!("cannot flush {}", self.node_path))
    }

    /// Remove a record (a missing one is fine), never following a link.
    pub fn remove(&self, name: &str) -> Result<()> {
        check_name(name)?;
        match unlinkat(Some(self.raw()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("cannot remove {}: {e}", self.child(name))),
        }
    }

    /// The whole tree under this directory holds only directories and regular files of ours
    /// that no one else may write: a backup shipped with a node image (links to the host, a
    /// FIFO, another user's file) is refused before anything of it is read or written.
    pub fn check_tree(&self) -> Result<()> {
        self.check_tree_at(0, &mut 0)
    }

    fn check_tree_at(&self, depth: usize, seen: &mut usize) -> Result<()> {
        use nix::fcntl::AtFlags;
        if depth > 64 {
            return Err(refused(
                &self.node_path,
                "its directories nest deeper than any backup does",
                "Check what the directory is.",
            ));
        }
        let me = nix::unistd::geteuid().as_raw();
        for name in self.list() {
            *seen += 1;
            if *seen > 100_000 {
                return Err(refused(
                    &self.node_path,
                    "it holds more entries than any backup does",
                    "Check what the directory is.",
                ));
            }
            let path = self.child(&name);
            let st = nix::sys::stat::fstatat(
                Some(self.raw()),
                name.as_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .with_context(|| format!("cannot read {path}"))?;
            match file_type(&st) {
                SFlag::S_IFDIR => {
                    let d = self.subdir(&name, false)?.context("listed just now")?;
                    d.check_tree_at(depth + 1, seen)?;
                }
                SFlag::S_IFREG => {
                    if st.st_uid != me || st.st_mode & 0o022 != 0 {
                        return Err(refused(
                            &path,
                            format!(
                                "it belongs to user {} with mode {:o}: not a record cri-migrate wrote",
                                st.st_uid,
                                st.st_mode & 0o7777
                            ),
                            "Move the backup aside after checking it.",
                        ));
                    }
                }
                SFlag::S_IFLNK => {
                    return Err(self.not_regular(&path, "a symbolic link"));
                }
                _ => return Err(self.not_regular(&path, "not a regular file")),
            }
        }
        Ok(())
    }

    /// The directory of a relative path's parent (`files/etc/containerd` for
    /// `files/etc/containerd/config.toml`), each level opened (or made) as a record directory,
    /// and the last name.
    pub fn walk<'a>(&self, rel: &'a str, create: bool) -> Result<Option<(RecordDir, &'a str)>> {
        let mut parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let last = parts.pop().context("an empty record path")?;
        let mut dir = RecordDir {
            fd: self.fd.try_clone()?,
            node_path: self.node_path.clone(),
        };
        for p in parts {
            match dir.subdir(p, create)? {
                Some(d) => dir = d,
                None => return Ok(None),
            }
        }
        Ok(Some((dir, last)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn records_are_made_0700_and_0600_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path());
        let old = nix::sys::stat::umask(Mode::empty());
        let r = RecordDir::open(&node, "/var/lib/cri-migrate/backups/b1", true);
        let d = r.unwrap().unwrap();
        d.write_atomic("manifest.json", b"{}").unwrap();
        writeln!(d.append("journal.log").unwrap(), "x").unwrap();
        nix::sys::stat::umask(old);
        let home = dir.path().join("var/lib/cri-migrate");
        for p in ["", "backups", "backups/b1"] {
            assert_eq!(mode(&home.join(p)), 0o700, "{p}");
        }
        for p in ["manifest.json", "journal.log"] {
            assert_eq!(mode(&home.join("backups/b1").join(p)), 0o600, "{p}");
        }
        assert_eq!(d.read_string("manifest.json").unwrap().unwrap(), "{}");
        assert_eq!(d.list(), ["journal.log", "manifest.json"]);
        // An earlier version's 0755 directory of ours is narrowed, not refused.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        RecordDir::open(&node, HOME, false).unwrap().unwrap();
        assert_eq!(mode(&home), 0o700);
    }

    #[test]
    fn links_fifos_and_loose_directories_are_refused_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path());
        let d = RecordDir::open(&node, "/var/lib/cri-migrate/backups/b1", true)
            .unwrap()
            .unwrap();
        let b1 = dir.path().join("var/lib/cri-migrate/backups/b1");
        // The journal as a link to a host file: refused, the host file untouched.
        let host = outside.path().join("cron");
        std::os::unix::fs::symlink(&host, b1.join("journal.log")).unwrap();
        let e = format!("{:#}", d.append("journal.log").unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!host.exists());
        // The temporary manifest as a link: removed (the link, not its target), then written.
        std::fs::write(&host, "host\n").unwrap();
        std::os::unix::fs::symlink(&host, b1.join("manifest.json.tmp")).unwrap();
        d.write_atomic("manifest.json", b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&host).unwrap(), "host\n");
        // The manifest as a link to /dev/zero or as a FIFO: refused at once.
        std::fs::remove_file(b1.join("manifest.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", b1.join("manifest.json")).unwrap();
        assert!(d.read("manifest.json").is_err());
        std::fs::remove_file(b1.join("manifest.json")).unwrap();
        nix::unistd::mkfifo(&b1.join("manifest.json"), Mode::S_IRWXU).unwrap();
        let e = format!("{:#}", d.read("manifest.json").unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        // A backup directory that is a link to a host directory: refused.
        std::os::unix::fs::symlink(outside.path(), b1.parent().unwrap().join("b2")).unwrap();
        let e = format!(
            "{:#}",
            RecordDir::open(&node, "/var/lib/cri-migrate/backups/b2", false).unwrap_err()
        );
        assert!(e.contains("symbolic link"), "{e}");
        // A new backup is never written into a directory already there (an image could ship
        // one under the name the next run would take).
        let backups = RecordDir::open(&node, "/var/lib/cri-migrate/backups", false)
            .unwrap()
            .unwrap();
        let e = format!("{:#}", backups.create_subdir("b1").unwrap_err());
        assert!(e.contains("exists already"), "{e}");
        assert!(backups.create_subdir("b9").is_ok());
        std::fs::write(b1.parent().unwrap().join("notes.txt"), "x").unwrap();
        assert!(backups.is_file("notes.txt") && !backups.is_file("b1") && !backups.is_file("b2"));
        // A world-writable one: refused.
        std::fs::create_dir(b1.parent().unwrap().join("b3")).unwrap();
        std::fs::set_permissions(
            b1.parent().unwrap().join("b3"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let e = format!(
            "{:#}",
            RecordDir::open(&node, "/var/lib/cri-migrate/backups/b3", false).unwrap_err()
        );
        assert!(e.contains("others may write"), "{e}");
        // Another user's: refused.
        std::fs::create_dir(b1.parent().unwrap().join("b4")).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(b1.parent().unwrap().join("b4"), Some(4242), Some(4242))
                .unwrap();
            let e = format!(
                "{:#}",
                RecordDir::open(&node, "/var/lib/cri-migrate/backups/b4", false).unwrap_err()
            );
            assert!(e.contains("belongs to user 4242"), "{e}");
        }
    }
}
