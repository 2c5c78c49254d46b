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

    pub fn exists(&self, node_path: &str) -> bool {
        self.path(node_path).exists()
    }

    pub fn is_dir(&self, node_path: &str) -> bool {
        self.path(node_path).is_dir()
    }

    /// An executable regular file (a runtime's binary).
    pub fn is_executable(&self, node_path: &str) -> bool {
        std::fs::metadata(self.path(node_path))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
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
        crate::secrets::from_file(node_path, &content);
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
        let path = self.resolve(node_path).map_err(|e| {
            crate::error::Failure::bad_input(
                node_path,
                format!("{e:#}"),
                "Fix the symbolic links on the node so that the path leads to a file.",
            )
        })?;
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {node_path} ({})", path.display()))
            }
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
        let mut bytes = Vec::new();
        {
            use std::io::Read;
            std::fs::File::open(&path)
                .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
                .with_context(|| format!("cannot read {node_path} ({})", path.display()))?;
        }
        if bytes.len() as u64 > max {
            return Err(crate::error::Failure::bad_input(
                node_path,
                format!("it holds more than {} MiB", max >> 20),
                too_large,
            )
            .into());
        }
        Ok(Some((bytes, meta.permissions().mode() & 0o7777)))
    }

    /// Names in a directory, sorted; empty when it does not exist.
    pub fn list(&self, node_dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(node_dir))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Node {
    /// Replace a file atomically: a temp file in the same directory, written and fsynced, then
    /// renamed over the target, then the directory fsynced. A reader (or a crash) sees the old
    /// file or the new one, never half of one. Missing parent directories are created and
    /// returned (node paths, outermost first) so that a rollback can remove them.
    pub fn write_atomic(
        &self,
        node_path: &str,
        content: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<Vec<String>> {
        use std::io::Write;
        let target = self.path(node_path);
        let dir = target.parent().context("a file path has a parent")?;
        let mut created = Vec::new();
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d {
            if p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        for p in missing.iter().rev() {
            std::fs::create_dir(p)
                .with_context(|| format!("cannot create directory {}", p.display()))?;
            if let Ok(rel) = p.strip_prefix(&self.root) {
                created.push(format!("/{}", rel.display()));
            }
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".cri-migrate.")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        tmp.write_all(content)
            .with_context(|| format!("cannot write {node_path}"))?;
        let f = tmp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            // Only root may give a file away; keep what we can otherwise.
            if nix::unistd::Uid::effective().is_root() {
                std::os::unix::fs::fchown(f, Some(uid), Some(gid))
                    .with_context(|| format!("cannot set the owner of {node_path}"))?;
            }
        }
        f.sync_all()
            .with_context(|| format!("cannot flush {node_path} to disk"))?;
        tmp.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot move the new {node_path} into place"))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot flush directory {}", dir.display()))?;
        Ok(created)
    }

    /// Owner of a file, if it exists.
    pub fn owner(&self, node_path: &str) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path(node_path))
            .ok()
            .map(|m| (m.uid(), m.gid()))
    }

    /// Remove a file (a rollback of one that did not exist); a missing one is fine.
    pub fn remove(&self, node_path: &str) -> Result<()> {
        match std::fs::remove_file(self.path(node_path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {node_path}"))
            }
            _ => Ok(()),
        }
    }
}

/// What a file that is not a regular file is, for a message.
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
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let n = Node::new(root);
        // An absolute link to a directory: followed inside the root, not on the host.
        std::fs::create_dir_all(root.join("real/containerd")).unwrap();
        std::fs::write(root.join("real/containerd/config.toml"), "version = 2\n").unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let n = Node::new(root);
        std::fs::create_dir_all(root.join("opt/cfg")).unwrap();
        std::fs::write(root.join("opt/cfg/config.toml"), "old\n").unwrap();
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
}
