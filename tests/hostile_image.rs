//! A node image built by an attacker, run offline (`--root`) on a host: each reproduction of
//! issue 22 drives the real binary on a crafted tree, with the fakes of tests/fakes first on
//! PATH (a kubectl that logs every call, a systemctl that keeps states in a folder), and checks
//! that nothing outside the tree changed, that nothing of the image ran (kubectl was never
//! called: it would run a kubeconfig's credential plugin), that no secret was printed.

mod common;

use common::services::fakes_path;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SECRET: &str = "Hostile5ecret";
const DRY_RUN: [&str; 4] = ["migrate", "--to", "containerd", "--dry-run"];
const DRY_RUN_JSON: [&str; 6] = [
    "migrate",
    "--to",
    "containerd",
    "--dry-run",
    "--output",
    "json",
];

struct Image {
    root: tempfile::TempDir,
    /// Stands for the host: what the image's links point at.
    host: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Image {
    fn new(fixture: &str) -> Image {
        let img = Image {
            root: tempfile::tempdir().unwrap(),
            host: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        copy_tree(
            &repo().join(format!("tests/fixtures/nodes/{fixture}/node")),
            img.root.path(),
        );
        std::fs::create_dir_all(img.state.path().join("units")).unwrap();
        for (p, text) in [("cron", "host cron\n"), ("profile.sh", "host profile\n")] {
            std::fs::write(img.host.path().join(p), text).unwrap();
        }
        let secret = img.host.path().join("shadow");
        std::fs::write(&secret, format!("root:{SECRET}:0\n")).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A kubeconfig whose credential plugin would run a command of the image's choosing.
        let marker = img.host.path().join("plugin-ran");
        img.write(
            "/etc/kubernetes/admin.conf",
            &format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: https://127.0.0.1:1}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\nusers:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"touch {}\"]\n",
                marker.display()
            ),
        );
        img.write("/etc/hostname", "worker-1\n");
        img
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }

    fn write(&self, p: &str, text: &str) {
        let path = self.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.env("PATH", fakes_path())
            .env("FAKE_STATE", self.state.path())
            .env("FAKE_NODE", self.root.path())
            .arg("--root")
            .arg(self.root.path())
            .args(args);
        c
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        c.envs(env.iter().copied());
        output_within(c, Duration::from_secs(60))
    }

    fn kubectl_calls(&self) -> String {
        std::fs::read_to_string(self.state.path().join("kubectl.log")).unwrap_or_default()
    }

    /// The host stand-in as it is now (to compare: nothing there may change).
    fn host_now(&self) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
        tree(self.host.path())
    }

    fn backup(&self) -> PathBuf {
        let dir = self.path("/var/lib/cri-migrate/backups");
        let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        all.sort();
        all.pop().expect("a backup")
    }

    /// A migration left in progress (a failed `systemctl --root enable` and --no-rollback),
    /// its manifest then made to record a cordon, as a hostile image would ship it.
    fn in_progress_with_a_cordon(&self) -> PathBuf {
        let out = self.run(
            &["migrate", "--to", "containerd", "--yes", "--no-rollback"],
            &[("FAKE_FAIL_AT", "1")],
        );
        assert_eq!(out.status.code(), Some(8), "{}", s(&out.stderr));
        let b = self.backup();
        let m = b.join("manifest.json");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
        assert_eq!(doc["state"], "in-progress");
        doc["cordoned"] = "worker-1".into();
        doc["effects"].as_array_mut().unwrap().insert(
            0,
            serde_json::json!({"step": "cordon node worker-1", "effect": "cordon", "node": "worker-1", "mark": "done"}),
        );
        std::fs::write(&m, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        std::fs::remove_file(self.state.path().join("count")).ok();
        b
    }
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run, killing it past `limit` (a hang is a failure, not a stuck test).
fn output_within(mut c: Command, limit: Duration) -> Output {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let watcher = std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                return false;
            }
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        true
    });
    let out = child.wait_with_output().unwrap();
    let killed = watcher.join().unwrap();
    assert!(!killed, "the run did not end within {limit:?}: it hung");
    out
}

#[test]
fn the_images_kubeconfig_never_runs_offline() {
    let img = Image::new("kubeadm-1.20-docker");
    img.in_progress_with_a_cordon();
    let host = img.host_now();
    // Resumed, and failing again: the undo would uncordon — never offline.
    let out = img.run(
        &["migrate", "--to", "containerd", "--yes"],
        &[("FAKE_FAIL_AT", "1")],
    );
    let err = s(&out.stderr);
    assert!(out.status.code() != Some(0), "{err}");
    assert!(
        err.contains("offline (--root): nothing talks to the cluster"),
        "{err}"
    );
    // A rollback by hand: the same.
    let out = img.run(&["rollback", "--yes"], &[]);
    assert_eq!(out.status.code(), Some(8), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("kubectl uncordon -- worker-1"));
    // --drain under --root: refused before anything.
    let out = img.run(&["migrate", "--to", "containerd", "--yes", "--drain"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("under --root nothing does"));
    assert_eq!(img.kubectl_calls(), "", "kubectl ran offline");
    assert!(!img.host.path().join("plugin-ran").exists());
    assert_eq!(img.host_now(), host);
}

#[test]
fn links_in_the_backup_directory_are_refused_never_followed() {
    let img = Image::new("kubeadm-1.20-docker");
    let b = img.in_progress_with_a_cordon();
    let link = |name: &str, to: &str| {
        let p = b.join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(img.host.path().join(to), p).unwrap();
    };
    link("journal.log", "cron");
    link("manifest.json.tmp", "profile.sh");
    link("output.log", "cron");
    let host = img.host_now();
    for args in [
        &["migrate", "--to", "containerd", "--yes"][..],
        &["rollback", "--yes"],
        &["status"],
    ] {
        let out = img.run(args, &[]);
        let all = format!("{}{}", s(&out.stdout), s(&out.stderr));
        assert_ne!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(all.contains("symbolic link"), "{args:?}: {all}");
        assert_eq!(img.host_now(), host, "{args:?} wrote through a link");
    }
    // A backup copy that is a link to a host file (0600): never copied into the image.
    std::fs::remove_file(b.join("journal.log")).unwrap();
    std::fs::remove_file(b.join("manifest.json.tmp")).unwrap();
    std::fs::remove_file(b.join("output.log")).unwrap();
    let copy = b.join("files/var/lib/kubelet/kubeadm-flags.env");
    std::fs::remove_file(&copy).unwrap();
    std::os::unix::fs::symlink(img.host.path().join("shadow"), &copy).unwrap();
    let out = img.run(&["rollback", "--yes"], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let flags = std::fs::read_to_string(img.path("/var/lib/kubelet/kubeadm-flags.env")).unwrap();
    assert!(
        !flags.contains(SECRET),
        "a host file was copied into the image"
    );
    assert!(!s(&out.stderr).contains(SECRET));
    // The whole backup directory as a link to a host directory: refused.
    let moved = b.with_extension("real");
    std::fs::rename(&b, &moved).unwrap();
    std::os::unix::fs::symlink(img.host.path(), &b).unwrap();
    let out = img.run(&["status"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", s(&out.stderr));
    assert_eq!(img.host_now(), host);
    assert_eq!(img.kubectl_calls(), "");
}

#[test]
fn a_fifo_or_a_device_as_a_record_is_refused_at_once() {
    for (what, make) in [("a FIFO", 0), ("a link to /dev/zero", 1)] {
        let img = Image::new("kubeadm-1.20-docker");
        let b = img.path("/var/lib/cri-migrate/backups/20260101T000000.000Z");
        std::fs::create_dir_all(&b).unwrap();
        for d in [
            img.path("/var/lib/cri-migrate"),
            img.path("/var/lib/cri-migrate/backups"),
            b.clone(),
        ] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        if make == 0 {
            nix::unistd::mkfifo(&b.join("manifest.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        } else {
            std::os::unix::fs::symlink("/dev/zero", b.join("manifest.json")).unwrap();
        }
        for args in [&["status"][..], &["migrate", "--to", "containerd", "--yes"]] {
            let out = img.run(args, &[]);
            assert_eq!(
                out.status.code(),
                Some(4),
                "{what}, {args:?}: {}",
                s(&out.stderr)
            );
            assert!(
                s(&out.stderr).contains("manifest.json"),
                "{}",
                s(&out.stderr)
            );
        }
    }
}

#[test]
fn verify_under_root_connects_to_nothing() {
    let img = Image::new("kubeadm-1.20-docker");
    // A "runtime" on the host, which the image's kubelet flags name.
    let sock = img.host.path().join("host-cri.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    img.write(
        "/var/lib/kubelet/kubeadm-flags.env",
        &format!(
            "KUBELET_KUBEADM_ARGS=\"--container-runtime=remote --container-runtime-endpoint=unix://{}\"\n",
            sock.display()
        ),
    );
    let out = img.run(&["verify", "--timeout", "2"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("under --root nothing is connected to"));
    assert!(
        listener.accept().is_err(),
        "verify connected to the host's socket"
    );
}

#[test]
fn names_from_the_image_never_become_options() {
    let img = Image::new("kubeadm-1.20-docker");
    // --node-name is checked as the API checks node names.
    let out = img.run(
        &[
            "migrate",
            "--to",
            "containerd",
            "--dry-run",
            "--node-name=--selector=kubernetes.io/os=linux",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("is not a node name"));
    assert_eq!(img.kubectl_calls(), "");
}

#[test]
fn secrets_the_redaction_did_not_know_stay_hidden() {
    let img = Image::new("kubeadm-1.21-registries");
    // A proxy without a scheme and a secret-named variable, in the flags file the plan rewrites
    // (its lines are the diff's context); a credential header in a hosts.toml it replaces.
    let flags = std::fs::read_to_string(img.path("/var/lib/kubelet/kubeadm-flags.env")).unwrap();
    img.write(
        "/var/lib/kubelet/kubeadm-flags.env",
        &format!(
            "HTTPS_PROXY=robot:{SECRET}Proxy@proxy.corp:3128\nAWS_SECRET_ACCESS_KEY={SECRET}Aws\n{flags}"
        ),
    );
    img.write(
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        &format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"https://mirror.corp.local\"]\n  capabilities = [\"pull\"]\n  [host.\"https://mirror.corp.local\".header]\n    Authorization = \"Basic {SECRET}Header\"\n"
        ),
    );
    for args in [&DRY_RUN[..], &DRY_RUN_JSON] {
        let out = img.run(args, &[]);
        let all = format!("{}{}", s(&out.stdout), s(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert!(all.contains("kubeadm-flags.env"), "{all}");
        assert!(!all.contains(SECRET), "{args:?} printed a secret:\n{all}");
    }
}

#[test]
fn control_characters_from_the_image_are_escaped() {
    let img = Image::new("kubeadm-1.20-docker");
    img.write(
        "/var/lib/kubelet/kubeadm-flags.env",
        "KUBELET_KUBEADM_ARGS=\"--network-plugin=cni --node-labels=a=\x1b]0;owned\x07LABEL\"\n",
    );
    img.write(
        "/etc/docker/daemon.json",
        r#"{"exec-opts": ["native.cgroupdriver=systemd"], "data-root": "/data/\u001b[2J\rFORGED"}"#,
    );
    let out = img.run(&["inspect"], &[]);
    let text = s(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(text.contains("FORGED") && text.contains("LABEL"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    // fleet: a report named by a node with escape sequences and a carriage return.
    let dir = tempfile::tempdir().unwrap();
    let report = img.run(&DRY_RUN_JSON, &[]);
    let name = dir.path().join("evil\x1b[2J\rnode-9.json");
    std::fs::write(&name, &report.stdout).unwrap();
    let out = bin().arg("fleet").arg(&name).output().unwrap();
    let text = s(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(text.contains("node-9"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
}

#[test]
fn durations_out_of_range_are_usage_errors_not_panics() {
    let img = Image::new("kubeadm-1.20-docker");
    for args in [
        &[
            "migrate",
            "--to",
            "containerd",
            "--dry-run",
            "--timeout",
            "18446744073709551615",
        ][..],
        &[
            "migrate",
            "--to",
            "containerd",
            "--dry-run",
            "--timeout",
            "0",
        ],
        &["verify", "--timeout", "99999999"],
        &["images", "--to", "containerd", "--parallel", "100000"],
    ] {
        let out = img.run(args, &[]);
        let err = s(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn records_are_0700_and_0600_under_umask_000() {
    let img = Image::new("kubeadm-1.20-docker");
    let mut c = img.cmd(&["migrate", "--to", "containerd", "--yes"]);
    unsafe {
        use std::os::unix::process::CommandExt;
        c.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        });
    }
    let out = output_within(c, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    let home = img.path("/var/lib/cri-migrate");
    let b = img.backup();
    for d in [home.clone(), home.join("backups"), b.clone()] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in ["manifest.json", "journal.log"] {
        assert_eq!(mode(&b.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&img.path("/run/cri-migrate.lock")), 0o600);
    // A record directory others may write is refused.
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = img.run(&["status"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("others may write"));
}

// Issue 30: what the second review found.

/// Each reproduction of issue 30 is bounded by this: a hang is a failure.
const BOUND: Duration = Duration::from_secs(30);

impl Image {
    fn run_within(&self, args: &[&str]) -> (Output, Duration) {
        let t = Instant::now();
        let out = output_within(self.cmd(args), BOUND);
        (out, t.elapsed())
    }
}

/// An rpm database whose path is an rpm macro: before, `rpm --dbpath` expanded `%(...)` and
/// ran its command as root on the host. Now rpm only ever sees a copy in a plain-named
/// directory of the tool's own.
#[test]
fn an_rpm_macro_in_the_database_path_never_runs() {
    let img = Image::new("kubeadm-1.20-docker");
    let marker = img.host.path().join("owned");
    let evil = format!("/%(touch {})", marker.display());
    std::fs::create_dir_all(img.path(&evil)).unwrap();
    std::fs::write(img.path(&format!("{evil}/Packages")), b"").unwrap();
    std::fs::create_dir_all(img.path("/var/lib")).unwrap();
    std::os::unix::fs::symlink(&evil, img.path("/var/lib/rpm")).unwrap();
    for args in [&["inspect"][..], &DRY_RUN, &["inspect", "--output", "json"]] {
        let (out, _) = img.run_within(args);
        assert!(!marker.exists(), "{args:?}: rpm ran the image's macro");
        let all = format!("{}{}", s(&out.stdout), s(&out.stderr));
        assert!(all.contains("the rpm database /var/lib/rpm"), "{all}");
    }
}

/// The database's files are links to the host (with a file of the same name inside the root,
/// which the check before rpm saw): before, rpm read the host's database and wrote its -shm
/// and -wal beside it; a link to a host FIFO blocked a minute.
#[test]
fn rpm_database_links_to_the_host_are_read_inside_the_root() {
    let img = Image::new("kubeadm-1.20-docker");
    let host_db = img.host.path().join("rpmdb.sqlite");
    std::fs::write(&host_db, b"SQLite format 3\0 the host's database").unwrap();
    let fifo = img.host.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // The same names inside the root, as regular files.
    for p in [&host_db, &fifo] {
        let inside = img.path(&p.display().to_string());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(inside, b"").unwrap();
    }
    std::fs::create_dir_all(img.path("/usr/lib/sysimage/rpm")).unwrap();
    std::os::unix::fs::symlink(&host_db, img.path("/usr/lib/sysimage/rpm/rpmdb.sqlite")).unwrap();
    std::fs::create_dir_all(img.path("/var/lib/rpm")).unwrap();
    std::os::unix::fs::symlink(&fifo, img.path("/var/lib/rpm/Packages")).unwrap();
    let before = img.host_now();
    for args in [&["inspect"][..], &DRY_RUN] {
        let (out, took) = img.run_within(args);
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
        let all = format!("{}{}", s(&out.stdout), s(&out.stderr));
        assert!(all.contains("rpm database"), "{all}");
    }
    assert_eq!(img.host_now(), before, "a host file was written or created");
    for extra in ["rpmdb.sqlite-shm", "rpmdb.sqlite-wal"] {
        assert!(
            !img.host.path().join(extra).exists(),
            "{extra} made on the host"
        );
    }
}

/// A binary too large to be one (a 1 TiB sparse file) is not scanned for its build
/// information; before, the scan read it for ever.
#[test]
fn a_huge_binary_is_not_scanned() {
    let img = Image::new("kubeadm-1.20-docker");
    // No package database gives the versions: only then is a binary scanned at all.
    img.write("/var/lib/dpkg/status", "");
    for bin in ["/usr/bin/kubelet", "/usr/bin/containerd"] {
        img.write(bin, "");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(img.path(bin))
            .unwrap();
        f.set_len(1 << 40).unwrap();
        std::fs::set_permissions(img.path(bin), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (out, took) = img.run_within(&["inspect"]);
    let all = format!("{}{}", s(&out.stdout), s(&out.stderr));
    assert!(took < Duration::from_secs(20), "took {took:?}: {all}");
    assert!(all.contains("more than 512 MiB"), "{all}");
}

/// A binary flipped between a regular file and a device (`/dev/zero` inside the root) while it
/// is scanned: the open file is checked again, so a read never starts on the device.
#[test]
fn a_file_flipped_to_a_device_is_never_read_for_ever() {
    let img = Image::new("kubeadm-1.20-docker");
    img.write("/var/lib/dpkg/status", "");
    std::fs::create_dir_all(img.path("/dev")).unwrap();
    if nix::sys::stat::mknod(
        &img.path("/dev/zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 5),
    )
    .is_err()
    {
        // Not root (no CAP_MKNOD): a FIFO stands in, which a read would wait on as well.
        nix::unistd::mkfifo(&img.path("/dev/zero"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    img.write("/usr/bin/kubelet.real", "\x7fELF not a Go binary\n");
    let link = img.path("/usr/bin/kubelet");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, link, dir) = (stop.clone(), link.clone(), img.path("/usr/bin"));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tmp = dir.join(format!(".flip{i}"));
                let target = if i % 2 == 0 {
                    "/dev/zero"
                } else {
                    "/usr/bin/kubelet.real"
                };
                let _ = std::os::unix::fs::symlink(target, &tmp);
                let _ = std::fs::rename(&tmp, &link);
                i += 1;
            }
        })
    };
    for _ in 0..150 {
        let (_, took) = img.run_within(&["inspect", "--output", "json"]);
        assert!(took < Duration::from_secs(20), "took {took:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
}

/// A unit of 600 000 continued lines is read in linear time (it took minutes: each line copied
/// the whole value joined so far).
#[test]
fn a_unit_of_many_continued_lines_is_read_in_linear_time() {
    let img = Image::new("kubeadm-1.20-docker");
    let mut unit = String::from("[Unit]\nDescription=kubelet \\\n");
    for _ in 0..600_000 {
        unit.push_str("  x \\\n");
    }
    unit.push_str("  end\n");
    assert!(unit.len() < 16 << 20);
    img.write("/etc/systemd/system/kubelet.service.d/90-long.conf", &unit);
    let (out, took) = img.run_within(&["inspect", "--output", "json"]);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
}

/// A variable expanded many times is bounded: a refusal naming the unit's file, in little
/// time and memory (before: 5 GB and an abort, or 8 GB tried).
#[test]
fn a_command_line_that_expands_without_bound_is_refused() {
    let words = vec!["w"; 50_000].join(" ");
    let big = "x".repeat(1 << 20);
    for (value, use_) in [(words.as_str(), "$A"), (big.as_str(), "${A}")] {
        let img = Image::new("kubeadm-1.20-docker");
        let mut unit =
            format!("[Service]\nEnvironment=\"A={value}\"\nExecStart=\nExecStart=/usr/bin/kubelet");
        for _ in 0..20_000 {
            unit.push(' ');
            unit.push_str(use_);
        }
        unit.push('\n');
        img.write(
            "/etc/systemd/system/kubelet.service.d/90-expand.conf",
            &unit,
        );
        let mut c = img.cmd(&DRY_RUN);
        // A few hundred MB at most: more is an allocation failure, not a pass.
        c.env("CRI_MIGRATE_TEST_UNUSED", "1");
        let t = Instant::now();
        let out = output_within(limited(c, 512 << 20), BOUND);
        let err = s(&out.stderr);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{use_}: took {:?}",
            t.elapsed()
        );
        assert!(out.status.code().is_some_and(|c| c != 0), "{use_}: {err}");
        assert!(
            err.contains("90-expand.conf") && err.contains("expands to more than 4 MiB"),
            "{use_}: {err}"
        );
    }
}

/// A command run under an address-space limit (`prlimit --as`), so that an allocation beyond
/// it fails the run instead of taking the machine.
fn limited(c: Command, bytes: u64) -> Command {
    let mut l = Command::new("prlimit");
    l.arg(format!("--as={bytes}"))
        .arg("--")
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => l.env(k, v),
            None => l.env_remove(k),
        };
    }
    l
}

/// One 1 MB import listed 1 000 times is read once (containerd loads a path once too); more
/// files than any real config imports are refused naming the config.
#[test]
fn containerd_imports_are_read_once_and_bounded() {
    let img = Image::new("kubeadm-1.20-docker");
    let mut big = String::from("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n");
    let mut i = 0;
    while big.len() < 1 << 20 {
        big.push_str(&format!("  key_{i} = \"{}\"\n", "v".repeat(40)));
        i += 1;
    }
    img.write("/etc/containerd/big.toml", &big);
    let list = vec!["\"/etc/containerd/big.toml\""; 1000].join(", ");
    img.write(
        "/etc/containerd/config.toml",
        &format!("version = 2\nimports = [{list}]\n"),
    );
    let (out, took) = img.run_within(&DRY_RUN_JSON);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    // 300 distinct files: refused, naming the config.
    for n in 0..300 {
        img.write(
            &format!("/etc/containerd/conf.d/{n:03}.toml"),
            "version = 2\n",
        );
    }
    img.write(
        "/etc/containerd/config.toml",
        "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n",
    );
    let (out, took) = img.run_within(&DRY_RUN);
    let err = s(&out.stderr);
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(out.status.code().is_some_and(|c| c != 0), "{err}");
    assert!(
        err.contains("/etc/containerd/config.toml") && err.contains("more than 256 files"),
        "{err}"
    );
}

/// A data-root that would inject a command into the advised SELinux line, or become an option:
/// the line is shell-quoted (pasted, it runs semanage on that path and nothing else), and a
/// relative one, or one starting with `-`, is not carried at all.
#[test]
fn node_data_never_reaches_a_command_line_unquoted() {
    let img = Image::new("rocky8-selinux-docker");
    let marker = img.host.path().join("injected");
    let evil = format!("/data/$(touch {});#docker x", marker.display());
    let daemon = std::fs::read_to_string(img.path("/etc/docker/daemon.json")).unwrap();
    let set = |v: &str| {
        let mut j: serde_json::Value = serde_json::from_str(&daemon).unwrap();
        j["data-root"] = serde_json::Value::String(v.to_string());
        img.write("/etc/docker/daemon.json", &j.to_string());
    };
    set(&evil);
    let args = [
        &DRY_RUN[..],
        &[
            "--kubelet-version",
            "1.27.16",
            "--runtime-version",
            "1.6.28",
        ],
    ]
    .concat();
    let (out, _) = img.run_within(&args);
    let text = s(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let line = text
        .lines()
        .find(|l| l.contains("semanage fcontext -a -e"))
        .unwrap_or_else(|| panic!("no SELinux line: {text}"));
    let cmd = &line[line.find("semanage fcontext").unwrap()..line.rfind('`').unwrap()];
    // Run as a shell would, with the programs replaced by one that records its words.
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("argv");
    for p in ["semanage", "mkdir", "restorecon"] {
        let f = bin.path().join(p);
        std::fs::write(
            &f,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" >> {}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ran = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("PATH", bin.path())
        .output()
        .unwrap();
    assert!(ran.status.success(), "{cmd}: {}", s(&ran.stderr));
    assert!(!marker.exists(), "pasting `{cmd}` ran the injected command");
    let argv = std::fs::read_to_string(&log).unwrap();
    let root = "/data/$(touch ".to_string() + &marker.display().to_string() + ");#docker x";
    let parent = root
        .rsplit_once('/')
        .map(|(p, _)| p)
        .unwrap_or("/")
        .to_string();
    assert!(
        argv.contains(&format!("--\n{parent}/containerd\n")),
        "{argv}"
    );
    // Relative, or an option: not carried.
    for bad in ["data/docker", "-rf", "/data/\ndocker"] {
        set(bad);
        let (out, _) = img.run_within(&args);
        let text = s(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{bad}: {}", s(&out.stderr));
        assert!(text.contains("data-root-not-carried"), "{bad}: {text}");
        assert!(!text.contains("semanage"), "{bad}: {text}");
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{text:?}"
        );
    }
}

/// A newline, a carriage return or an escape sequence in node data never reaches the text of
/// `migrate` raw (only inspect escaped it before).
#[test]
fn migrate_text_escapes_as_inspect_does() {
    let img = Image::new("kubeadm-1.20-docker");
    img.write(
        "/etc/docker/daemon.json",
        "{\"exec-opts\": [\"native.cgroupdriver=systemd\"], \"registry-mirrors\": [\"https://m.local/\\u001b[2J\\rFORGED\"], \"unknown-key\\u001b]0;t\\u0007\": 1}",
    );
    let (out, _) = img.run_within(&DRY_RUN);
    let text = s(&out.stdout);
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(text.contains("FORGED"), "{text}");
    for t in [&text, &err] {
        assert!(
            !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{t:?}"
        );
    }
}

/// Credentials by their shape, wherever Docker keeps them: log-opts tokens, unknown keys named
/// like a secret, a mirror's query token, a registry address with userinfo and no scheme.
#[test]
fn secrets_by_shape_are_hidden_in_every_output() {
    let img = Image::new("kubeadm-1.20-docker");
    img.write(
        "/etc/docker/daemon.json",
        &format!(
            r#"{{"exec-opts": ["native.cgroupdriver=systemd"],
  "log-driver": "splunk",
  "log-opts": {{"splunk-token": "{SECRET}Splunk", "logentries-token": "{SECRET}Logentries", "splunk-url": "https://splunk.local:8088"}},
  "api_key": "{SECRET}ApiKey",
  "registry-mirrors": ["https://mirror.local/v2?token={SECRET}Query&x=1"],
  "tlskey": "/etc/docker/key.pem"
}}"#
        ),
    );
    img.write(
        "/etc/systemd/system/docker.service.d/flags.conf",
        &format!("[Service]\nExecStart=\nExecStart=/usr/bin/dockerd -H fd:// --insecure-registry=robot:{SECRET}Userinfo@reg.local:5000\n"),
    );
    for args in [
        &["inspect"][..],
        &["inspect", "--output", "json"],
        &DRY_RUN,
        &DRY_RUN_JSON,
    ] {
        let (out, _) = img.run_within(args);
        let all = format!("{}{}", s(&out.stdout), s(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {all}");
        assert!(
            all.contains("reg.local:5000") || all.contains("mirror.local"),
            "{args:?}: {all}"
        );
        assert!(!all.contains(SECRET), "{args:?} printed a secret:\n{all}");
    }
}
