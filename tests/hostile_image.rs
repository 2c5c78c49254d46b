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
