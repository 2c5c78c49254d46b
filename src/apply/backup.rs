//! The backup of a migration, kept on the node in `/var/lib/cri-migrate/backups/<timestamp>/`
//! so that an operator can recover by hand after a crash: a copy of every file the plan touches
//! (and a record of those that did not exist), the units' states, the plan itself (to resume),
//! and a journal of the steps done.

use crate::node::Node;
use crate::plan::{Action, Plan, Target};
use crate::system::systemd::UnitState;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

pub const BACKUPS: &str = "/var/lib/cri-migrate/backups";

/// The units whose state a migration may change, recorded before and restored by a rollback.
pub const UNITS: [&str; 7] = [
    "kubelet.service",
    "docker.socket",
    "docker.service",
    "cri-docker.socket",
    "cri-docker.service",
    "containerd.service",
    "crio.service",
];

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Changes may have been made; `migrate` resumes, `rollback` undoes.
    InProgress,
    Done,
    RolledBack,
    RollbackFailed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    pub existed: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredFile {
    pub path: String,
    pub mode: u32,
    pub content: String,
}

/// What `migrate` needs to resume an interrupted run without planning again (a half-migrated
/// node plans differently).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredPlan {
    pub target: Target,
    pub endpoint: String,
    pub test_image: String,
    pub files: Vec<StoredFile>,
    pub actions: Vec<Action>,
    /// Images carried over from Docker: checked through CRI once the runtime serves it.
    #[serde(default)]
    pub check_images: Vec<String>,
}

impl StoredPlan {
    pub fn from_plan(plan: &Plan, test_image: &str) -> StoredPlan {
        StoredPlan {
            target: plan.target,
            endpoint: plan.endpoint.clone(),
            test_image: test_image.to_string(),
            files: plan
                .files
                .iter()
                .map(|f| StoredFile {
                    path: f.path.clone(),
                    mode: f.mode,
                    content: f.new.clone(),
                })
                .collect(),
            actions: plan.actions.clone(),
            check_images: vec![],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub created: String,
    pub state: State,
    /// Whether services were touched (false for an offline `--root` migration).
    pub live: bool,
    pub files: Vec<FileRecord>,
    /// Directories the migration created, outermost first; a rollback removes them when empty.
    pub created_dirs: Vec<String>,
    pub units: Vec<UnitState>,
    /// The node was cordoned by `--drain` and must be uncordoned on the way back.
    #[serde(default)]
    pub cordoned: Option<String>,
    pub plan: StoredPlan,
}

/// An open backup directory.
pub struct Backup {
    /// The directory as a node path (`/var/lib/cri-migrate/backups/...`).
    pub node_dir: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn backup_name(path: &str) -> String {
    format!("files{path}")
}

impl Backup {
    /// Copy every file the plan touches before the first change. The manifest is written last:
    /// a directory without one is an interrupted backup and is ignored.
    pub fn create(
        node: &Node,
        plan: StoredPlan,
        units: Vec<UnitState>,
        live: bool,
    ) -> Result<Backup> {
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
        let node_dir = format!("{BACKUPS}/{stamp}");
        let dir = node.path(&node_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
        // Originals may hold secrets (registry auth in an old config.toml).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let mut files = Vec::new();
        for f in &plan.files {
            let snap = node.snapshot(&f.path)?;
            let (uid, gid) = node.owner(&f.path).unwrap_or((0, 0));
            if let Some(snap) = &snap {
                let dst = dir.join(backup_name(&f.path));
                std::fs::create_dir_all(dst.parent().unwrap())?;
                write_synced(&dst, snap.content.as_bytes())?;
            }
            files.push(FileRecord {
                path: f.path.clone(),
                existed: snap.is_some(),
                mode: snap.as_ref().map(|s| s.mode).unwrap_or(0),
                uid,
                gid,
            });
        }
        let manifest = Manifest {
            version: 1,
            created: now.to_string(),
            state: State::InProgress,
            live,
            files,
            created_dirs: vec![],
            units,
            cordoned: None,
            plan,
        };
        let b = Backup {
            node_dir,
            dir,
            manifest,
        };
        b.save()?;
        b.journal("backup complete")?;
        Ok(b)
    }

    pub fn open(node: &Node, node_dir: &str) -> Result<Backup> {
        let dir = node.path(node_dir);
        let text = std::fs::read_to_string(dir.join("manifest.json")).with_context(|| {
            format!("{node_dir} is not a cri-migrate backup (no readable manifest.json)")
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{node_dir}/manifest.json is damaged"))?;
        Ok(Backup {
            node_dir: node_dir.to_string(),
            dir,
            manifest,
        })
    }

    /// The newest complete backup, if any.
    pub fn latest(node: &Node) -> Result<Option<Backup>> {
        let mut names = node.list(BACKUPS);
        names.retain(|n| node.exists(&format!("{BACKUPS}/{n}/manifest.json")));
        match names.last() {
            Some(n) => Ok(Some(Backup::open(node, &format!("{BACKUPS}/{n}"))?)),
            None => Ok(None),
        }
    }

    pub fn save(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.manifest)?;
        let tmp = self.dir.join("manifest.json.tmp");
        write_synced(&tmp, text.as_bytes())?;
        std::fs::rename(&tmp, self.dir.join("manifest.json"))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }

    pub fn set_state(&mut self, state: State) -> Result<()> {
        self.manifest.state = state;
        self.save()?;
        self.journal(&format!(
            "state {}",
            serde_json::to_value(state)?.as_str().unwrap_or("")
        ))
    }

    /// Append one line to the journal, on disk before the next step starts.
    pub fn journal(&self, line: &str) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("journal.log"))?;
        writeln!(f, "{} {line}", jiff::Timestamp::now())?;
        f.sync_all()?;
        Ok(())
    }

    #[cfg(test)]
    pub fn journal_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("journal.log"))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The original content of a file that existed.
    pub fn original(&self, path: &str) -> Result<Vec<u8>> {
        let p = self.dir.join(backup_name(path));
        std::fs::read(&p)
            .with_context(|| format!("the backup copy of {path} is missing ({})", p.display()))
    }

    pub fn record_created_dirs(&mut self, dirs: Vec<String>) -> Result<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        self.manifest.created_dirs.extend(dirs);
        self.save()
    }
}

fn write_synced(path: &std::path::Path, content: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(content)?;
    f.sync_all()?;
    Ok(())
}

/// Restore every file byte for byte (mode and owner too), remove those that did not exist and
/// the directories the migration created. Every file is tried; the errors are reported together.
pub fn restore_files(node: &Node, b: &Backup) -> Result<()> {
    let mut errors = Vec::new();
    for f in &b.manifest.files {
        let r = if f.existed {
            b.original(&f.path).and_then(|content| {
                node.write_atomic(&f.path, &content, f.mode, Some((f.uid, f.gid)))
                    .map(|_| ())
            })
        } else {
            node.remove(&f.path)
        };
        if let Err(e) = r {
            errors.push(format!("{}: {e:#}", f.path));
        }
    }
    for d in b.manifest.created_dirs.iter().rev() {
        // Only when empty: something else may have been put there since.
        let _ = std::fs::remove_dir(node.path(d));
    }
    if !errors.is_empty() {
        bail!("could not restore {}", errors.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_then_restore_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path());
        node.write_atomic("/etc/a.toml", b"old a\n", 0o600, None)
            .unwrap();
        let plan = StoredPlan {
            target: Target::Containerd,
            endpoint: "unix:///x".into(),
            test_image: "img".into(),
            files: vec![
                StoredFile {
                    path: "/etc/a.toml".into(),
                    mode: 0o600,
                    content: "new a\n".into(),
                },
                StoredFile {
                    path: "/etc/new/b.toml".into(),
                    mode: 0o644,
                    content: "b\n".into(),
                },
            ],
            actions: vec![],
            check_images: vec![],
        };
        let mut b = Backup::create(&node, plan.clone(), vec![], false).unwrap();
        for f in &plan.files {
            let created = node
                .write_atomic(&f.path, f.content.as_bytes(), f.mode, None)
                .unwrap();
            b.record_created_dirs(created).unwrap();
        }
        let b = Backup::open(&node, &b.node_dir).unwrap();
        assert_eq!(b.manifest.state, State::InProgress);
        assert_eq!(b.manifest.created_dirs, ["/etc/new"]);
        restore_files(&node, &b).unwrap();
        assert_eq!(node.snapshot("/etc/a.toml").unwrap().unwrap().mode, 0o600);
        assert_eq!(node.read("/etc/a.toml").unwrap().unwrap(), "old a\n");
        assert!(!node.exists("/etc/new"));
        assert_eq!(Backup::latest(&node).unwrap().unwrap().node_dir, b.node_dir);
        assert!(b.journal_lines()[0].ends_with("backup complete"));
    }
}
