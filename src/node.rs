//! The node seen through `--root`: every node path is a path relative to the root prefix, so a
//! folder can stand for a whole node (tests, offline migration of a mounted image).

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

    /// The host path of a node path such as `/etc/containerd/config.toml`.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.root.join(node_path.trim_start_matches('/'))
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
        let path = self.path(node_path);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read {node_path} ({})", path.display()))
            }
        };
        if meta.is_dir() {
            anyhow::bail!(
                "{node_path} is a directory where a file was expected ({})",
                path.display()
            );
        }
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read {node_path} ({})", path.display()))?;
        let content = String::from_utf8(bytes).map_err(|_| {
            crate::error::Failure::bad_input(
                node_path,
                "the file is not UTF-8 text",
                "Check the file; it should be a text configuration file.",
            )
        })?;
        Ok(Some(Snapshot {
            content,
            mode: meta.permissions().mode() & 0o7777,
        }))
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

/// Join a node directory and a name into a node path.
pub fn join(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
