//! Helpers shared by the black-box tests: fixture nodes, running the built binary, tree hashes.
#![allow(dead_code)]

pub mod services;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cri-migrate"));
    c.env("NO_COLOR", "1").env_remove("CLICOLOR_FORCE");
    c
}

/// One fixture: `<dir>/case.toml` is the command and what it must give, `<dir>/node` the node
/// (or, for the README's examples, the repository path that `node =` names).
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub node: PathBuf,
    pub args: Vec<String>,
    pub exit: i32,
    pub stderr_contains: Option<String>,
    /// A secret the case's node holds: never in the output.
    pub stdout_lacks: Option<String>,
}

impl Case {
    pub fn node(&self) -> PathBuf {
        self.node.clone()
    }
    pub fn run(&self, extra: &[&str]) -> Output {
        self.run_at(&self.node(), extra)
    }
    pub fn run_at(&self, root: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        run_under(root, &args)
    }
}

/// The binary on a node at `root` with `args`.
/// A test's helper program run to its end, which must succeed: its output, or a failure that
/// says what it printed.
pub fn succeeded(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

pub fn run_under(root: &Path, args: &[&str]) -> Output {
    bin().arg("--root").arg(root).args(args).output().unwrap()
}

/// Every fixture node. The README's examples are among them, with `node = "examples/nodes/..."`.
pub fn cases() -> Vec<Case> {
    let base = "tests/fixtures/nodes";
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join(base))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("case.toml").exists())
        .collect();
    dirs.sort();
    let out: Vec<Case> = dirs
        .into_iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("case.toml")).unwrap();
            let doc: toml_edit::DocumentMut = text.parse().unwrap();
            Case {
                name: format!("{base}/{}", dir.file_name().unwrap().to_string_lossy()),
                node: match doc.get("node").and_then(|v| v.as_str()) {
                    Some(p) => repo().join(p),
                    None => dir.join("node"),
                },
                args: doc["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
                exit: doc["exit"].as_integer().unwrap() as i32,
                stderr_contains: doc
                    .get("stderr_contains")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                stdout_lacks: doc
                    .get("stdout_lacks")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                dir,
            }
        })
        .collect();
    assert!(
        out.len() >= 10,
        "expected at least 10 fixture nodes, found {}",
        out.len()
    );
    out
}

/// Path -> (mode, content) of every file below `root`: equal maps mean an untouched tree.
pub fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(rel + "/", (meta.permissions().mode(), vec![]));
                walk(&p, root, out);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, (0, target.display().to_string().into_bytes()));
            } else if meta.is_file() {
                out.insert(rel, (meta.permissions().mode(), std::fs::read(&p).unwrap()));
            }
            // Sockets (a fake Docker's) are not node files.
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, (mode, content)) in tree(from) {
        let dst = to.join(rel.trim_end_matches('/'));
        if rel.ends_with('/') {
            std::fs::create_dir_all(&dst).unwrap();
        } else {
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            let src = from.join(&rel);
            if std::fs::symlink_metadata(&src)
                .unwrap()
                .file_type()
                .is_symlink()
            {
                std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
                continue;
            }
            std::fs::write(&dst, content).unwrap();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// The JSON plan of a successful dry run.
pub fn json_plan(case: &Case, root: &Path) -> serde_json::Value {
    let out = case.run_at(root, &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The new content of one planned file.
pub fn planned<'a>(plan: &'a serde_json::Value, path: &str) -> Option<&'a str> {
    plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .map(|f| f["content"].as_str().unwrap())
}

/// containerd's planned config: the file its unit loads (`-c`, kOps's config-kops.toml), else
/// /etc/containerd/config.toml — a `.toml` directly in /etc/containerd.
pub fn planned_containerd_config(plan: &serde_json::Value) -> Option<&str> {
    plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["path"].as_str().is_some_and(|p| {
                p.strip_prefix("/etc/containerd/")
                    .is_some_and(|n| n.ends_with(".toml") && !n.contains('/'))
            })
        })
        .map(|f| f["content"].as_str().unwrap())
}

/// CRI-O's planned drop-in (`99-cri-migrate.conf`), in the directory CRI-O's unit reads
/// (`--config-dir`, else /etc/crio/crio.conf.d): its path and text.
pub fn planned_crio_drop_in(plan: &serde_json::Value) -> Option<(&str, &str)> {
    plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/etc/crio/") && p.ends_with("/99-cri-migrate.conf"))
        })
        .map(|f| (f["path"].as_str().unwrap(), f["content"].as_str().unwrap()))
}

/// Write a plan's files into a node, as applying will.
pub fn write_plan(plan: &serde_json::Value, root: &Path) {
    for f in plan["files"].as_array().unwrap() {
        let dst = root.join(f["path"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::write(&dst, f["content"].as_str().unwrap()).unwrap();
        let mode = u32::from_str_radix(f["mode"].as_str().unwrap(), 8).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}
