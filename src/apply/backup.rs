//! The backup of a migration, kept on the node in `/var/lib/cri-migrate/backups/<timestamp>/`
//! so that an operator can recover by hand after a crash: a copy of every file the plan touches
//! (and a record of those that did not exist), the units' states, the plan itself (to resume),
//! and a journal of the steps done: in `journal.log` for people, and as the manifest's list of
//! effects (each marked begun, then done or failed, on disk before the next step) for the undo.

use crate::node::Node;
use crate::plan::{Action, Plan, Target};
use crate::records::RecordDir;
use crate::runtime::{self, DOCKER_UNITS};
use crate::system::systemd::UnitState;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;

pub const BACKUPS: &str = "/var/lib/cri-migrate/backups";

/// The units whose state a migration may change, recorded before and restored by a rollback:
/// the kubelet, Docker's (and cri-dockerd's), every runtime's (src/runtime/mod.rs).
pub const UNITS: [&str; 7] = [
    "kubelet.service",
    DOCKER_UNITS[0],
    DOCKER_UNITS[1],
    DOCKER_UNITS[2],
    DOCKER_UNITS[3],
    runtime::ALL[0].unit,
    runtime::ALL[1].unit,
];

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Changes may have been made; `migrate` resumes, `rollback` undoes.
    InProgress,
    Done,
    RolledBack,
    RollbackFailed,
    /// The run ended before its first change (refused, or interrupted): nothing to finish or
    /// undo.
    Abandoned,
}

/// One change the walk makes, recorded before it is made and marked when it has been: the
/// undo reverses exactly these.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum Effect {
    Cordon {
        node: String,
    },
    Write {
        path: String,
        /// A systemd unit file or drop-in: restoring it needs a daemon-reload. None in a
        /// record of an earlier version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit_file: Option<bool>,
    },
    /// `systemctl VERB UNIT`: stop, start, restart, enable, disable.
    Unit {
        verb: String,
        unit: String,
    },
    DaemonReload,
    /// host-local address reservations moved into the backup (`released/` under it).
    Release {
        paths: Vec<String>,
    },
    /// An SELinux equivalence rule added (`semanage fcontext -a -e LIKE PATH`).
    Equivalence {
        path: String,
        like: String,
    },
    /// The gate holding the unit's starts installed (`system::gate`): removed by the undo.
    Gate {
        unit: String,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// Recorded before the change; still so if the process died during it.
    Begun,
    Done,
    /// The change was refused (a unit that did not stop, a file that could not be written).
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EffectRecord {
    /// The walk's step that made it.
    pub step: String,
    #[serde(flatten)]
    pub effect: Effect,
    pub mark: Mark,
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
    /// What the plan was computed from: `sha256:HEX` of the file's content then, or `absent`.
    /// A file that holds something else by the time it is written is not overwritten.
    #[serde(default)]
    pub planned_from: Option<String>,
    /// When it is written (`WriteFiles`); a plan stored by an earlier version has none, and
    /// its files are grouped by path as that version did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::plan::FileGroup>,
    /// A systemd unit file or drop-in (systemd must reload); none in a plan stored by an
    /// earlier version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_file: Option<bool>,
}

/// The digest a [`StoredFile::planned_from`] holds for a content (None: no file).
pub fn content_digest(content: Option<&str>) -> String {
    use sha2::Digest;
    match content {
        None => "absent".into(),
        Some(c) => format!("sha256:{:x}", sha2::Sha256::digest(c.as_bytes())),
    }
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
                    planned_from: Some(content_digest(f.old.as_deref())),
                    group: Some(f.group),
                    unit_file: Some(f.unit_file),
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
    /// Every change made, in order (manifest version 2; version 1 had none and is undone whole).
    #[serde(default)]
    pub effects: Vec<EffectRecord>,
    /// Why the migration was rolled back (a failed step, a signal, a request), for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The manifest version this build writes.
pub const MANIFEST_VERSION: u32 = 2;

/// An open backup directory.
pub struct Backup {
    /// The directory as a node path (`/var/lib/cri-migrate/backups/...`).
    pub node_dir: String,
    /// The directory itself, opened without following a link (src/records.rs).
    pub rec: RecordDir,
    pub manifest: Manifest,
    /// Journal writes that failed once the cutover had begun (it goes on; they are reported).
    pub journal_errors: Vec<String>,
    /// The tracked units' `ActiveState`s read after the last unit step, while no other step
    /// than file writes came since: the next unit step's "before" (one `systemctl` call less
    /// inside the cutover). Never stored.
    pub states_seen: Option<(Vec<String>, Vec<String>)>,
}

/// Where a file's original goes in the backup: `files/` and the path made plain, so that no
/// `..` in a path read from the node's own files leads out of the backup directory.
fn backup_name(path: &str) -> String {
    format!("files{}", crate::node::clean(path))
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
        // The plan was shown from what the files held then; refuse before any change if one
        // moved since (configuration management, a second operator).
        for f in &plan.files {
            if let Some(from) = &f.planned_from {
                let now = content_digest(node.read(&f.path)?.as_deref());
                if &now != from {
                    return Err(changed_since_planned(&f.path).into());
                }
            }
        }
        let now = jiff::Timestamp::now();
        let stamp = now.strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
        let node_dir = format!("{BACKUPS}/{stamp}");
        // 0700 and 0600 throughout: originals may hold secrets (registry auth in an old
        // config.toml).
        let rec = RecordDir::open(node, BACKUPS, true)
            .and_then(|b| {
                b.context("the backups' directory was just made")?
                    .create_subdir(&stamp)
            })
            .with_context(|| format!("cannot create the backup directory {node_dir}"))?;
        let mut files = Vec::new();
        for f in &plan.files {
            let snap = node.snapshot(&f.path)?;
            let (uid, gid) = node.owner(&f.path).unwrap_or((0, 0));
            if let Some(snap) = &snap {
                let copy = backup_name(&f.path);
                let (d, name) = rec
                    .walk(&copy, true)?
                    .context("a backup copy's directory was just made")?;
                d.write_atomic(name, snap.content.as_bytes())?;
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
            version: MANIFEST_VERSION,
            created: now.to_string(),
            state: State::InProgress,
            live,
            files,
            created_dirs: vec![],
            units,
            cordoned: None,
            plan,
            effects: vec![],
            reason: None,
        };
        let b = Backup {
            node_dir,
            rec,
            manifest,
            journal_errors: vec![],
            states_seen: None,
        };
        b.save()?;
        b.journal("backup complete")?;
        Ok(b)
    }

    pub fn open(node: &Node, node_dir: &str) -> Result<Backup> {
        let not_one =
            || format!("{node_dir} is not a cri-migrate backup (no readable manifest.json)");
        let rec = RecordDir::open(node, node_dir, false)?.with_context(not_one)?;
        // Links, FIFOs, another user's files: refused before any of it is read or written.
        rec.check_tree()?;
        let text = rec.read_string("manifest.json")?.with_context(not_one)?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{node_dir}/manifest.json is damaged"))?;
        Ok(Backup {
            node_dir: node_dir.to_string(),
            rec,
            manifest,
            journal_errors: vec![],
            states_seen: None,
        })
    }

    /// Every complete backup, newest first. An entry that is not a directory of the tool's own
    /// (a link, a file, one another user owns or others may write) is refused with the reason:
    /// never followed, never skipped in silence.
    pub fn all(node: &Node) -> Result<Vec<String>> {
        let Some(backups) = RecordDir::open(node, BACKUPS, false)? else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for n in backups.list().into_iter().rev() {
            // A file someone left there (notes, an archive) is no backup and harms nothing;
            // a link or a FIFO is refused by `subdir`.
            if n.ends_with(".tmp") || backups.is_file(&n) {
                continue;
            }
            let d = backups.subdir(&n, false)?;
            if d.is_some_and(|d| d.has("manifest.json")) {
                out.push(format!("{BACKUPS}/{n}"));
            }
        }
        Ok(out)
    }

    /// The newest complete backup, if any.
    pub fn latest(node: &Node) -> Result<Option<Backup>> {
        Backup::all(node)?
            .first()
            .map(|dir| Backup::open(node, dir))
            .transpose()
    }

    /// The manifest on disk, 0600, replaced atomically. The reason it stores is redacted: it
    /// quotes errors, which may quote the node's files.
    pub fn save(&self) -> Result<()> {
        let text = if self.manifest.reason.is_some() {
            let mut m = self.manifest.clone();
            m.reason = m.reason.map(|r| crate::secrets::redact(&r));
            serde_json::to_string_pretty(&m)?
        } else {
            serde_json::to_string_pretty(&self.manifest)?
        };
        self.rec.write_atomic("manifest.json", text.as_bytes())
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
        let mut f = self.rec.append("journal.log")?;
        writeln!(
            f,
            "{} {}",
            jiff::Timestamp::now(),
            crate::secrets::redact(line)
        )?;
        f.sync_all()?;
        Ok(())
    }

    /// The journal's last line that ends with `suffix`.
    pub fn journal_line(&self, suffix: &str) -> Option<String> {
        let text = self.rec.read_string("journal.log").ok()??;
        text.lines()
            .rev()
            .find(|l| l.ends_with(suffix))
            .map(str::to_string)
    }

    #[cfg(test)]
    pub fn journal_lines(&self) -> Vec<String> {
        self.rec
            .read_string("journal.log")
            .ok()
            .flatten()
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The original content of a file that existed.
    pub fn original(&self, path: &str) -> Result<Vec<u8>> {
        let name = backup_name(path);
        let missing = || {
            format!(
                "the backup copy of {path} is missing ({}/{name})",
                self.node_dir
            )
        };
        let (d, last) = self.rec.walk(&name, false)?.with_context(missing)?;
        d.read(last)?.with_context(missing)
    }

    /// Record a change about to be made; returns its index for [`Backup::mark`]. Kept in memory
    /// even when the manifest cannot be saved (the error is returned: the caller decides).
    pub fn begin(&mut self, step: &str, effect: Effect) -> (usize, Result<()>) {
        self.manifest.effects.push(EffectRecord {
            step: step.to_string(),
            effect,
            mark: Mark::Begun,
        });
        (self.manifest.effects.len() - 1, self.save())
    }

    /// A change already made, recorded done at once: what systemd did along with a step (a
    /// unit stopped with the one the step stopped).
    pub fn record_done(&mut self, step: &str, effect: Effect) -> Result<()> {
        self.manifest.effects.push(EffectRecord {
            step: step.to_string(),
            effect,
            mark: Mark::Done,
        });
        self.save()
    }

    pub fn mark(&mut self, index: usize, mark: Mark) -> Result<()> {
        if let Some(r) = self.manifest.effects.get_mut(index) {
            r.mark = mark;
        }
        self.save()
    }

    /// Whether this run began changing the node (a backup without effects changed nothing).
    pub fn began_changes(&self) -> bool {
        self.manifest.version < 2 || !self.manifest.effects.is_empty()
    }

    /// The effects to undo, in the order they were made: those done, those begun (the process
    /// died during them) and those failed (a failed stop may have stopped; a failed write is
    /// checked against the backup before anything is restored). A version 1 manifest recorded
    /// none: every file and every unit then.
    pub fn records_to_undo(&self) -> Vec<EffectRecord> {
        if self.manifest.version >= 2 {
            return self.manifest.effects.clone();
        }
        let mut all: Vec<Effect> = self
            .manifest
            .files
            .iter()
            .map(|f| Effect::Write {
                path: f.path.clone(),
                unit_file: None,
            })
            .collect();
        for u in self.manifest.units.iter().filter(|u| u.exists()) {
            for verb in ["stop", "disable"] {
                all.push(Effect::Unit {
                    verb: verb.into(),
                    unit: u.unit.clone(),
                });
            }
        }
        all.into_iter()
            .map(|effect| EffectRecord {
                step: "recorded by a version 1 manifest".into(),
                effect,
                mark: Mark::Begun,
            })
            .collect()
    }

    pub fn record_created_dirs(&mut self, dirs: Vec<String>) -> Result<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        self.manifest.created_dirs.extend(dirs);
        self.save()
    }
}

/// A file that holds something else than what the plan was computed from.
pub fn changed_since_planned(path: &str) -> crate::error::Failure {
    crate::error::Failure::preflight(
        format!("{path} changed since the plan was made (something else wrote it in between)"),
        "Run cri-migrate again to plan from what it holds now, and find what else manages it (configuration management?) so that the two do not fight.",
    )
}

/// Put one file back as it was, byte for byte (mode and owner too), or remove it if it did not
/// exist. A file already as it was is left alone: `Ok(false)`.
pub fn restore_file(node: &Node, b: &Backup, path: &str) -> Result<bool> {
    let Some(f) = b.manifest.files.iter().find(|f| f.path == path) else {
        bail!("{path} is not in the backup's manifest");
    };
    let now = node.metadata(path);
    if !f.existed {
        if now.is_none() {
            return Ok(false);
        }
        node.remove(path)?;
        return Ok(true);
    }
    let content = b.original(path)?;
    if let Some(m) = &now {
        use std::os::unix::fs::MetadataExt;
        let same = m.is_file()
            && m.mode() & 0o7777 == f.mode
            && (m.uid(), m.gid()) == (f.uid, f.gid)
            && node
                .read_bytes(path, crate::node::MAX_CONFIG_BYTES)
                .is_ok_and(|c| c.as_deref() == Some(content.as_slice()));
        if same {
            return Ok(false);
        }
    }
    node.write_atomic(path, &content, f.mode, Some((f.uid, f.gid)))?;
    Ok(true)
}

/// Remove the directories the migration created, innermost first, when empty (something else
/// may have been put there since).
pub fn remove_created_dirs(node: &Node, b: &Backup) {
    for d in b.manifest.created_dirs.iter().rev() {
        let _ = node.remove_dir(d);
    }
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
                    planned_from: Some(content_digest(Some("old a\n"))),
                    group: None,
                    unit_file: None,
                },
                StoredFile {
                    path: "/etc/new/b.toml".into(),
                    mode: 0o644,
                    content: "b\n".into(),
                    planned_from: Some(content_digest(None)),
                    group: None,
                    unit_file: None,
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
        for f in &plan.files {
            assert!(restore_file(&node, &b, &f.path).unwrap());
            assert!(
                !restore_file(&node, &b, &f.path).unwrap(),
                "already as it was"
            );
        }
        remove_created_dirs(&node, &b);
        assert_eq!(node.snapshot("/etc/a.toml").unwrap().unwrap().mode, 0o600);
        assert_eq!(node.read("/etc/a.toml").unwrap().unwrap(), "old a\n");
        assert!(!node.exists("/etc/new"));
        assert_eq!(Backup::latest(&node).unwrap().unwrap().node_dir, b.node_dir);
        assert!(b.journal_lines()[0].ends_with("backup complete"));
    }
}
