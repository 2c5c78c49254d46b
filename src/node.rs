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
}
