//! The linked carry-over, proven on real parts: Debian 12's Docker 20.10 (overlay2) on a real
//! containerd (1.6, and 2.1 from Debian unstable), one file system. An image built to hold what
//! a copy gets wrong — a file deleted in an upper layer (whiteout), an opaque directory, a hard
//! link, a symlink, a setuid file, a file with a capability, a user extended attribute, a fifo,
//! a character device, odd owners and modes, a sticky directory — is loaded into Docker, carried
//! (`via: linked`), and its root file system seen from a container on each runtime
//! (`/proc/PID/root`: path, type, mode, owner, size, extended attributes, content hash, times,
//! hard-link groups) must be identical, and identical to `docker export` (which keeps only
//! `security.capability` of the extended attributes). Then the sharing is put to the test: a
//! container on containerd that writes, deletes and chmods leaves Docker's view as it was; a
//! Docker container that does the same leaves containerd's; `docker rmi` and
//! `docker system prune -a` leave containerd's image whole.
//! Needs root; fails loudly without Docker 20.10 (see `dockerd_20`) under `--include-ignored`.

mod common;

use common::services::{self, skip_unless, Containerd, Dockerd};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Its name in Docker and, as it is already fully qualified, in containerd.
const IMAGE: &str = "cri-migrate.test/odd:1";
/// Paths each runtime makes or mounts in a container of its own: not the image's.
const RUNTIME_PATHS: [&str; 6] = ["dev", "proc", "sys", "run", "etc", ".dockerenv"];
/// One time for every entry: times must come over too.
const MTIME: u64 = 1_600_000_000;

fn parts_missing() -> bool {
    services::docker_20_on_containerd_missing()
        || skip_unless(
            services::have("busybox") && services::have("runc") && services::have("ctr"),
            "busybox-static, runc or ctr is not installed",
        )
}

/// What a path is, as a container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    target: String,
    device: (u64, u64),
    xattrs: BTreeMap<String, Vec<u8>>,
    sha256: String,
    /// The smallest path with the same inode (hard links), or the path itself.
    group: String,
}

type Listing = BTreeMap<String, Entry>;

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn excluded(path: &str) -> bool {
    let top = path.split('/').next().unwrap_or(path);
    RUNTIME_PATHS.contains(&top)
}

/// A container's root file system through `/proc/PID/root`.
fn walk_root(pid: u32) -> Listing {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut out = Listing::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if excluded(&rel) {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let ft = m.file_type();
            use std::os::unix::fs::FileTypeExt;
            let kind = if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else {
                'f'
            };
            if kind == 'd' {
                stack.push(path.clone());
            }
            let mut xattrs = BTreeMap::new();
            for name in xattr::list(&path).unwrap() {
                let name = name.to_string_lossy().into_owned();
                if let Some(v) = xattr::get(&path, &name).unwrap() {
                    xattrs.insert(name, v);
                }
            }
            let group = if kind != 'd' && m.nlink() > 1 {
                let g = inodes.entry((m.dev(), m.ino())).or_insert(rel.clone());
                if rel < *g {
                    *g = rel.clone();
                }
                String::new()
            } else {
                rel.clone()
            };
            out.insert(
                rel.clone(),
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid() as u64,
                    gid: m.gid() as u64,
                    size: if kind == 'f' { m.size() } else { 0 },
                    mtime: m.mtime(),
                    target: if kind == 'l' {
                        std::fs::read_link(&path)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned()
                    } else {
                        String::new()
                    },
                    device: if matches!(kind, 'c' | 'b') {
                        (
                            nix::sys::stat::major(m.rdev()),
                            nix::sys::stat::minor(m.rdev()),
                        )
                    } else {
                        (0, 0)
                    },
                    xattrs,
                    sha256: if kind == 'f' {
                        sha256(&std::fs::read(&path).unwrap())
                    } else {
                        String::new()
                    },
                    group,
                },
            );
        }
    }
    // Hard links: each name names its group's smallest path.
    let groups: BTreeMap<String, String> = {
        let mut by_inode: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for (rel, _) in out.iter().filter(|(_, e)| e.group.is_empty()) {
            let m = std::fs::symlink_metadata(root.join(rel)).unwrap();
            by_inode
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        by_inode
            .values()
            .flat_map(|names| {
                let min = names.iter().min().unwrap().clone();
                names.iter().map(move |n| (n.clone(), min.clone()))
            })
            .collect()
    };
    for (rel, e) in out.iter_mut() {
        if let Some(g) = groups.get(rel) {
            e.group = g.clone();
        }
    }
    out
}

/// `docker export` of a container of the image: its entries as the same listing (the export
/// keeps `security.capability` only, so the listing compared with it keeps only that too).
fn export_listing(docker: &Dockerd, container: &str) -> Listing {
    let out = Command::new(&docker.cli)
        .arg("--host")
        .arg(format!("unix://{}", docker.socket.display()))
        .args(["export", container])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = tar::Archive::new(out.stdout.as_slice());
    let mut listing = Listing::new();
    let mut links: Vec<(String, String)> = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let rel = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_matches('/')
            .to_string();
        if rel.is_empty() || excluded(&rel) {
            continue;
        }
        let h = e.header().clone();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        let t = h.entry_type();
        if t.is_hard_link() {
            let target = e
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_matches('/')
                .to_string();
            links.push((rel, target));
            continue;
        }
        let kind = match t {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Fifo => 'p',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            _ => 'f',
        };
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        listing.insert(
            rel.clone(),
            Entry {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: if kind == 'f' { data.len() as u64 } else { 0 },
                mtime: h.mtime().unwrap() as i64,
                target: if kind == 'l' {
                    h.link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                } else {
                    String::new()
                },
                device: if matches!(kind, 'c' | 'b') {
                    (
                        h.device_major().unwrap().unwrap() as u64,
                        h.device_minor().unwrap().unwrap() as u64,
                    )
                } else {
                    (0, 0)
                },
                xattrs,
                sha256: if kind == 'f' {
                    sha256(&data)
                } else {
                    String::new()
                },
                group: rel,
            },
        );
    }
    for (name, target) in links {
        let mut e = listing[&target].clone();
        let min = std::cmp::min(name.clone(), target.clone());
        e.group = min.clone();
        listing.get_mut(&target).unwrap().group = min;
        listing.insert(name, e);
    }
    listing
}

/// Only `security.capability` among the extended attributes (what `docker export` keeps).
fn as_exported(listing: &Listing) -> Listing {
    listing
        .iter()
        .map(|(k, e)| {
            let mut e = e.clone();
            e.xattrs.retain(|k, _| k == "security.capability");
            (k.clone(), e)
        })
        .collect()
}

/// A layer tar: (path, kind, mode, uid, gid, content or link target, xattrs).
struct Item<'a> {
    path: &'a str,
    kind: tar::EntryType,
    mode: u32,
    owner: (u64, u64),
    data: &'a [u8],
    xattrs: &'a [(&'a str, &'a [u8])],
}

fn item<'a>(path: &'a str, kind: tar::EntryType, mode: u32, data: &'a [u8]) -> Item<'a> {
    Item {
        path,
        kind,
        mode,
        owner: (0, 0),
        data,
        xattrs: &[],
    }
}

fn layer(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for it in items {
        if !it.xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = it
                .xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(it.kind);
        h.set_mode(it.mode);
        h.set_uid(it.owner.0);
        h.set_gid(it.owner.1);
        h.set_mtime(MTIME);
        let link = matches!(it.kind, tar::EntryType::Symlink | tar::EntryType::Link);
        if link {
            h.set_link_name(std::str::from_utf8(it.data).unwrap())
                .unwrap();
        }
        if it.kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        let data: &[u8] = if it.kind == tar::EntryType::Regular {
            it.data
        } else {
            &[]
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, it.path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// The odd image as a `docker save` archive: busybox, then the files, then the changes.
fn odd_image() -> Vec<u8> {
    use tar::EntryType::{Char, Directory as Dir, Fifo, Link, Regular as File, Symlink};
    let busybox = std::fs::read(which::which("busybox").unwrap()).unwrap();
    // cap_net_bind_service+ep, as `setcap` writes it (VFS_CAP_REVISION_2, effective).
    let cap: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let l0 = layer(&[
        item("bin", Dir, 0o755, b""),
        item("bin/busybox", File, 0o755, &busybox),
        item("bin/sh", Symlink, 0o777, b"busybox"),
        item("bin/sleep", Symlink, 0o777, b"busybox"),
    ]);
    let l1 = layer(&[
        item("gone", File, 0o644, b"deleted above\n"),
        item("opq", Dir, 0o755, b""),
        item(
            "opq/old",
            File,
            0o644,
            b"hidden by the opaque directory above\n",
        ),
        Item {
            owner: (1234, 5678),
            ..item("keep", Dir, 0o2750, b"")
        },
        Item {
            owner: (1234, 5678),
            ..item("keep/a", File, 0o640, b"kept\n")
        },
    ]);
    let l2 = layer(&[
        item(".wh.gone", File, 0o644, b""),
        item("opq", Dir, 0o711, b""),
        item("opq/.wh..wh..opq", File, 0o644, b""),
        item("opq/new", File, 0o600, b"new\n"),
        item("data", Dir, 0o755, b""),
        item("data/f", File, 0o644, b"one inode, two names\n"),
        item("data/f2", Link, 0o644, b"data/f"),
        item("link", Symlink, 0o777, b"/keep/a"),
        item("setuid", File, 0o4755, b"#!/bin/sh\n"),
        Item {
            xattrs: &[("security.capability", cap)],
            ..item("cap", File, 0o755, b"capable\n")
        },
        Item {
            xattrs: &[("user.note", b"hello")],
            ..item("noted", File, 0o644, b"noted\n")
        },
        item("fifo", Fifo, 0o620, b""),
        item("devices", Dir, 0o755, b""),
        item("devices/null", Char, 0o666, b""),
        item("shared", Dir, 0o1777, b""),
        Item {
            owner: (42, 43),
            ..item("odd", Dir, 0o751, b"")
        },
        Item {
            owner: (65534, 65534),
            ..item("odd/mode", File, 0o604, b"odd\n")
        },
        item("empty", File, 0o000, b""),
    ]);
    let layers = [l0, l1, l2];
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256(l)))
        .collect();
    let history: Vec<serde_json::Value> = ["busybox", "files", "changes"]
        .iter()
        .map(|l| serde_json::json!({"created": "2020-09-13T12:26:40Z", "created_by": l}))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sleep", "100000"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "created": "2020-09-13T12:26:40Z",
        // One entry per layer: a schema 1 manifest is made from them.
        "history": history,
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256(&config));
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("l{i}/layer.tar");
        add(&name, l);
        names.push(name);
    }
    add(&config_name, &config);
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": [IMAGE], "Layers": names}]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.into_inner().unwrap()
}

struct Node {
    docker: Dockerd,
    containerd: Containerd,
    root: tempfile::TempDir,
}

impl Node {
    /// A container ID of this test alone: runc keeps containerd's containers under one root
    /// for the whole machine (`/run/containerd/runc/<namespace>`), whichever containerd.
    fn id(&self, name: &str) -> String {
        let dir = self
            .containerd
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy();
        format!("{}-{name}", dir.to_lowercase())
    }
}

impl Drop for Node {
    /// The test's containers go before their runtimes (a shim outlives its containerd).
    fn drop(&mut self) {
        for name in ["view", "after-containerd"] {
            let _ = self.docker.docker(&["rm", "-f", name]);
        }
        for id in ["first", "second", "third"].map(|n| self.id(n)) {
            let id = id.as_str();
            for args in [
                &["tasks", "kill", "--signal", "SIGKILL", id][..],
                &["tasks", "delete", "--force", id],
                &["containers", "delete", id],
            ] {
                let _ = self.containerd.ctr_in("k8s.io", args);
            }
        }
    }
}

/// Where Docker gets the image from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `docker load` of the archive.
    Load,
    /// A pull of it as a schema 1 manifest from a registry that still serves them (then the
    /// registry is stopped): Docker keeps a config it made up from the manifest.
    Schema1,
}

fn node_from(containerd: &Path, config: &str, source: Source) -> Node {
    let root = tempfile::tempdir().unwrap();
    let containerd = Containerd::start(containerd, config, None);
    containerd.serve_node(root.path());
    let docker = Dockerd::start(
        &services::dockerd_20().unwrap(),
        &containerd.socket(),
        &root.path().join("var/run/docker.sock"),
        false,
    );
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), odd_image()).unwrap();
    let archive = archive.path().to_str().unwrap();
    match source {
        Source::Load => {
            docker.ok(&["load", "--quiet", "--input", archive]);
        }
        Source::Schema1 => {
            let registry = services::Registry::start_schema1();
            let remote =
                registry.put_schema1(&format!("docker-archive:{archive}"), "odd/schema1:1");
            docker.ok(&["pull", "--quiet", &remote]);
            docker.ok(&["tag", &remote, IMAGE]);
            drop(registry);
        }
    }
    Node {
        docker,
        containerd,
        root,
    }
}

fn ctr(node: &Node, args: &[&str]) -> String {
    node.containerd.ctr(args)
}

/// A container of the image on containerd (`ctr run`), its PID once it runs.
fn run_on_containerd(node: &Node, id: &str) -> u32 {
    ctr(
        node,
        &["run", "-d", "--net-host", IMAGE, id, "/bin/sleep", "100000"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = ctr(node, &["tasks", "ls"]);
        if let Some(pid) = tasks
            .lines()
            .find(|l| l.starts_with(id) && l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "{id} does not run:\n{tasks}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_on_containerd(node: &Node, id: &str) {
    ctr(node, &["tasks", "kill", "--signal", "SIGKILL", id]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctr(node, &["tasks", "ls"])
        .lines()
        .any(|l| l.starts_with(id) && l.contains("RUNNING"))
    {
        assert!(Instant::now() < deadline, "{id} does not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    ctr(node, &["tasks", "delete", id]);
    ctr(node, &["containers", "delete", id]);
}

/// A container of the image on Docker, its PID.
fn run_on_docker(node: &Node, name: &str) -> u32 {
    node.docker
        .ok(&["run", "-d", "--name", name, "--network", "none", IMAGE]);
    node.docker
        .ok(&["inspect", "--format", "{{.State.Pid}}", name])
        .parse()
        .unwrap()
}

/// What each container does to the files it was given: append, chmod, delete, create.
const WRITES: &str =
    "echo more >> /keep/a && chmod 0777 /setuid && rm /data/f2 && echo x > /opq/made && chmod 0700 /odd";

fn carried_and_identical(containerd: &Path, config: &str) {
    carried_and_identical_from(containerd, config, Source::Load)
}

fn carried_and_identical_from(containerd: &Path, config: &str, source: Source) {
    let node = node_from(containerd, config, source);
    // Docker's views: a running container, and its export.
    let pid = run_on_docker(&node, "view");
    let docker_view = walk_root(pid);
    let exported = export_listing(&node.docker, "view");
    node.docker.ok(&["rm", "-f", "view"]);
    // The image holds what it claims.
    assert!(
        !docker_view.contains_key("gone"),
        "the whiteout did not apply"
    );
    assert!(!docker_view.contains_key("opq/old") && docker_view.contains_key("opq/new"));
    assert_eq!(docker_view["data/f2"].group, "data/f");
    assert_eq!(docker_view["setuid"].mode, 0o4755);
    assert_eq!(docker_view["keep"].mode, 0o2750);
    assert_eq!(
        (docker_view["keep/a"].uid, docker_view["keep/a"].gid),
        (1234, 5678)
    );
    assert!(docker_view["cap"]
        .xattrs
        .contains_key("security.capability"));
    assert_eq!(docker_view["noted"].xattrs["user.note"], b"hello");
    assert_eq!(docker_view["fifo"].kind, 'p');
    assert_eq!(docker_view["devices/null"].device, (1, 3));
    assert_eq!(docker_view["odd/mode"].mtime, MTIME as i64);
    assert_eq!(
        as_exported(&docker_view),
        exported,
        "Docker's export and its container's view differ"
    );

    // The carry: linked.
    let out = common::bin()
        .arg("--root")
        .arg(node.root.path())
        .args([
            "--live",
            "images",
            "--to",
            "containerd",
            "--images",
            "all",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{report:#}",
        String::from_utf8_lossy(&out.stderr)
    );
    for image in report["images"].as_array().unwrap() {
        assert_eq!(image["via"], "linked", "{report:#}");
    }

    // containerd's view: identical.
    let pid = run_on_containerd(&node, &node.id("first"));
    assert_eq!(
        walk_root(pid),
        docker_view,
        "containerd's container differs from Docker's"
    );
    // Writes, a chmod and deletions in containerd's container: into its own upper layer.
    ctr(
        &node,
        &[
            "tasks",
            "exec",
            "--exec-id",
            "w",
            &node.id("first"),
            "/bin/sh",
            "-c",
            WRITES,
        ],
    );
    assert_ne!(walk_root(pid), docker_view, "the writes did not happen");
    let pid = run_on_docker(&node, "after-containerd");
    assert_eq!(
        walk_root(pid),
        docker_view,
        "a containerd container's writes reached Docker's image"
    );
    // And the other way: a Docker container's writes do not reach containerd's image.
    node.docker
        .ok(&["exec", "after-containerd", "/bin/sh", "-c", WRITES]);
    remove_on_containerd(&node, &node.id("first"));
    let pid = run_on_containerd(&node, &node.id("second"));
    assert_eq!(
        walk_root(pid),
        docker_view,
        "a Docker container's writes reached containerd's image"
    );
    remove_on_containerd(&node, &node.id("second"));

    // Docker forgets the image entirely: containerd's stays whole.
    node.docker.ok(&["rm", "-f", "after-containerd"]);
    let names = node
        .docker
        .ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    for name in names.lines() {
        node.docker.ok(&["rmi", name]);
    }
    node.docker.ok(&["system", "prune", "--all", "--force"]);
    let overlay2 = node.docker.dir.path().join("root/overlay2");
    let left: Vec<_> = std::fs::read_dir(&overlay2)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "l")
        .collect();
    assert!(left.is_empty(), "Docker kept layers: {left:?}");
    let pid = run_on_containerd(&node, &node.id("third"));
    assert_eq!(
        walk_root(pid),
        docker_view,
        "containerd's image changed after docker rmi"
    );
    remove_on_containerd(&node, &node.id("third"));
}

#[test]
#[ignore = "needs root, containerd, Docker 20.10, runc and busybox-static (cargo test -- --include-ignored)"]
fn linked_images_are_identical_and_independent_on_containerd_1() {
    if parts_missing() {
        return;
    }
    carried_and_identical(&services::containerd_1().unwrap(), "version = 2\n");
}

#[test]
#[ignore = "needs root, containerd 2.x, Docker 20.10, runc and busybox-static (cargo test -- --include-ignored)"]
fn linked_images_are_identical_and_independent_on_containerd_2() {
    if parts_missing() || services::containerd_2_missing() {
        return;
    }
    carried_and_identical(&services::containerd_2().unwrap(), "version = 3\n");
}

/// containerd 2.1 can no longer pull schema 1 images (removed in 2.1), but Docker 20.10 still
/// has them: the linked carry-over brings one over as it is on disk (its made-up config and a
/// schema 2 manifest), and containerd 2.1 runs it, identical to Docker's view, with the registry
/// gone.
#[test]
#[ignore = "needs root, containerd 2.x, Docker 20.10, docker-registry, skopeo, runc and busybox-static (cargo test -- --include-ignored)"]
fn schema_1_images_in_docker_are_linked_onto_containerd_2_and_run_there() {
    if parts_missing()
        || services::containerd_2_missing()
        || skip_unless(
            services::have("docker-registry") && services::have("skopeo"),
            "docker-registry or skopeo is not installed",
        )
    {
        return;
    }
    carried_and_identical_from(
        &services::containerd_2().unwrap(),
        "version = 3\n",
        Source::Schema1,
    );
}
