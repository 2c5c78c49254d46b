//! Applying a migration, with fake `systemctl`, `journalctl`, `kubectl` and `apt-get` first on
//! PATH (tests/fakes) and a real containerd and registry for the CRI checks: the happy path,
//! a failure at every systemctl step (each ends with the node as it was), failed checks,
//! --no-rollback, offline mode, preflight, the lock, an interrupted run, --drain,
//! --install-runtime, and the guided mode driven through a pseudo-terminal.

mod common;

use common::services::{self, fakes_path, World};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// The units as Docker's node has them before the move.
const INITIAL: [(&str, &str, &str); 4] = [
    ("kubelet.service", "enabled", "active"),
    ("docker.socket", "enabled", "active"),
    ("docker.service", "enabled", "active"),
    ("containerd.service", "enabled", "active"),
];

fn reset_fakes(state: &Path) {
    let _ = std::fs::remove_dir_all(state);
    std::fs::create_dir_all(state.join("units")).unwrap();
    for (u, e, a) in INITIAL {
        std::fs::write(state.join(format!("units/{u}.enabled")), format!("{e}\n")).unwrap();
        std::fs::write(state.join(format!("units/{u}.active")), format!("{a}\n")).unwrap();
    }
    // As Debian's docker.io and Docker's own unit: docker.service has Requires=docker.socket, so
    // systemd stops it with the socket (the fake does too).
    std::fs::write(
        state.join("units/docker.socket.RequiredBy"),
        "docker.service\n",
    )
    .unwrap();
}

fn units(state: &Path) -> BTreeMap<String, (String, String)> {
    INITIAL
        .iter()
        .map(|(u, _, _)| {
            let r = |k: &str| {
                std::fs::read_to_string(state.join(format!("units/{u}.{k}")))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            (u.to_string(), (r("enabled"), r("active")))
        })
        .collect()
}

fn initial_units() -> BTreeMap<String, (String, String)> {
    INITIAL
        .iter()
        .map(|(u, e, a)| (u.to_string(), (e.to_string(), a.to_string())))
        .collect()
}

fn log(state: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(state.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The node's files, without cri-migrate's own backups and lock.
fn node_files(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut t = tree(root);
    t.retain(|k, _| {
        !k.starts_with("var/lib/cri-migrate") && !k.starts_with("run/cri-migrate.lock")
    });
    t
}

/// The binary with the fakes first on PATH, on the node at `root`.
fn with_fakes(root: &Path, state: &Path) -> Command {
    let mut c = bin();
    c.env("PATH", fakes_path())
        .env("FAKE_STATE", state)
        .env("FAKE_NODE", root)
        .arg("--root")
        .arg(root);
    c
}

fn cmd(w: &World, state: &Path) -> Command {
    with_fakes(w.node.path(), state)
}

/// `cri-migrate --live migrate --to containerd --yes` on the World's node, its checks against the
/// World's containerd.
fn migrate_cmd(w: &World, state: &Path, test_image: &str) -> Command {
    let mut c = cmd(w, state);
    c.args([
        "--live",
        "migrate",
        "--no-sandbox",
        "--to",
        "containerd",
        "--yes",
        "--timeout",
        "4",
    ])
    .args([
        "--cri-endpoint",
        &w.containerd.endpoint(),
        "--test-image",
        test_image,
    ]);
    c
}

fn migrate(w: &World, state: &Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    migrate_cmd(w, state, &w.image)
        .envs(env.iter().copied())
        .args(extra)
        .output()
        .unwrap()
}

fn rollback(w: &World, state: &Path) -> Output {
    cmd(w, state)
        .args(["--live", "rollback", "--yes"])
        .output()
        .unwrap()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const HAPPY: [&str; 8] = [
    "stop kubelet.service",
    "stop docker.socket",
    "stop docker.service",
    "restart containerd.service",
    "start kubelet.service",
    "disable docker.socket",
    "disable docker.service",
    "enable containerd.service",
];

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn migrate_then_rollback_then_rollback_again() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let before = node_files(w.node.path());

    let out = migrate(&w, state.path(), &[], &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        s(&out.stdout),
        s(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "migrated");
    assert_eq!(log(state.path(), "systemctl.log"), HAPPY);
    assert_eq!(report["verification"]["pull"]["image"], w.image.as_str());
    assert_eq!(report["verification"]["digest"], w.digest.as_str());
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "done" && s["duration_ms"].is_u64()));
    let backup = report["backup"].as_str().unwrap();
    assert!(w
        .node
        .path()
        .join(backup.trim_start_matches('/'))
        .join("manifest.json")
        .exists());
    let flags =
        std::fs::read_to_string(w.node.path().join("var/lib/kubelet/kubeadm-flags.env")).unwrap();
    assert!(
        flags.contains("--container-runtime-endpoint=unix:///run/containerd/containerd.sock"),
        "{flags}"
    );
    assert_eq!(
        units(state.path())["docker.service"],
        ("disabled".into(), "inactive".into())
    );

    // Nothing left to do: exit 3 and no service touched.
    let n = log(state.path(), "systemctl.log").len();
    assert_eq!(migrate(&w, state.path(), &[], &[]).status.code(), Some(3));
    assert_eq!(log(state.path(), "systemctl.log").len(), n);

    let out = rollback(&w, state.path());
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert_eq!(
        node_files(w.node.path()),
        before,
        "every file byte-identical after the rollback"
    );
    assert_eq!(units(state.path()), initial_units());
    let out = rollback(&w, state.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second rollback is harmless: {}",
        s(&out.stderr)
    );
    assert!(s(&out.stdout).contains("restored again"));
    assert_eq!(node_files(w.node.path()), before);
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_failure_at_any_systemctl_step_leaves_the_node_as_it_was() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let before = node_files(w.node.path());
    for n in 1..=HAPPY.len() {
        reset_fakes(state.path());
        let at = n.to_string();
        let out = migrate(&w, state.path(), &[("FAKE_FAIL_AT", &at)], &[]);
        let err = s(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(7),
            "failing `{}`: {err}",
            HAPPY[n - 1]
        );
        assert!(
            err.contains("rolled back") && err.contains(HAPPY[n - 1].split(' ').nth(1).unwrap()),
            "{err}"
        );
        assert_eq!(
            node_files(w.node.path()),
            before,
            "failing `{}`: files differ after the rollback",
            HAPPY[n - 1]
        );
        assert_eq!(
            units(state.path()),
            initial_units(),
            "failing `{}`: units differ after the rollback",
            HAPPY[n - 1]
        );
        let calls = log(state.path(), "systemctl.log");
        assert_eq!(
            calls[..n],
            HAPPY[..n],
            "the steps up to the failure ran in order"
        );
        // The undo reverses exactly what was done: a unit never stopped is not restarted,
        // a link never changed is not set again.
        let restart_all = [
            "restart containerd.service",
            "restart docker.socket",
            "restart docker.service",
            "restart kubelet.service",
        ];
        let undo: Vec<&str> = match n {
            1 => vec![],
            2 => vec!["restart kubelet.service"],
            // The failed `stop docker.service` changed nothing, but the socket's stop before it
            // had stopped docker.service already (it requires the socket): brought back too.
            3 => vec![
                "restart docker.socket",
                "restart docker.service",
                "restart kubelet.service",
            ],
            4 => restart_all.to_vec(),
            5 => [&["stop kubelet.service"][..], &restart_all].concat(),
            6 => [
                &["stop kubelet.service", "enable docker.socket"][..],
                &restart_all,
            ]
            .concat(),
            7 => [
                &[
                    "stop kubelet.service",
                    "enable docker.service",
                    "enable docker.socket",
                ][..],
                &restart_all,
            ]
            .concat(),
            _ => [
                &[
                    "stop kubelet.service",
                    "enable containerd.service",
                    "enable docker.service",
                    "enable docker.socket",
                ][..],
                &restart_all,
            ]
            .concat(),
        };
        assert_eq!(calls[n..], undo, "failing `{}`: the undo", HAPPY[n - 1]);
    }
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn failed_checks_roll_back_with_the_reason() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let before = node_files(w.node.path());

    // The runtime never answers CRI: the message carries the unit's journal.
    reset_fakes(state.path());
    let out = cmd(&w, state.path())
        .env(
            "FAKE_JOURNAL",
            "level=error msg=\"invalid disabled plugin URI \\\"cri\\\" expect io.containerd.x.vx\"",
        )
        .args([
            "--live",
            "migrate",
            "--no-sandbox",
            "--to",
            "containerd",
            "--yes",
            "--timeout",
            "1",
            "--cri-endpoint",
            "unix:///nonexistent/containerd.sock",
        ])
        .output()
        .unwrap();
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains("/nonexistent/containerd.sock")
            && err.contains("journalctl -u containerd.service"),
        "{err}"
    );
    assert!(
        err.contains(
            "this usually means: containerd's disabled_plugins holds a schema-1 short name"
        ),
        "{err}"
    );
    assert_eq!(node_files(w.node.path()), before);
    assert_eq!(units(state.path()), initial_units());

    // The test pull fails.
    reset_fakes(state.path());
    let missing = format!("{}/test/missing:1", w.registry.addr);
    let out = migrate_cmd(&w, state.path(), &missing).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(s(&out.stderr).contains(&missing));
    assert_eq!(node_files(w.node.path()), before);

    // The kubelet does not stay up.
    reset_fakes(state.path());
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_KUBELET", "crash")],
        &["--output", "json"],
    );
    assert_eq!(out.status.code(), Some(7));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "rolled-back");
    assert!(report["error"]["message"]
        .as_str()
        .unwrap()
        .contains("kubelet.service is not active"));
    assert!(!report["rollback_steps"].as_array().unwrap().is_empty());
    assert_eq!(node_files(w.node.path()), before);
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn no_rollback_leaves_it_for_a_person_and_rollback_restores() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let before = node_files(w.node.path());
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_KUBELET", "crash")],
        &["--no-rollback"],
    );
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains("not attempted, as --no-rollback asked")
            && err.contains("cri-migrate rollback --backup"),
        "{err}"
    );
    assert_ne!(node_files(w.node.path()), before);
    // An interrupted (in-progress) migration blocks a new one to another runtime.
    let out = cmd(&w, state.path())
        .args(["--live", "migrate", "--no-sandbox", "--to", "crio", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(s(&out.stderr).contains("an interrupted migration to containerd is pending"));
    let out = rollback(&w, state.path());
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert_eq!(node_files(w.node.path()), before);
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn an_interrupted_run_is_finished_by_migrate_and_undone_by_rollback() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let before = node_files(w.node.path());
    for hang_at in [1, 3, 7] {
        reset_fakes(state.path());
        let at = hang_at.to_string();
        let mut c = migrate_cmd(&w, state.path(), &w.image);
        c.env("FAKE_HANG_AT", &at)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while log(state.path(), "systemctl.log").len() < hang_at {
            assert!(
                std::time::Instant::now() < deadline,
                "the run never reached call {hang_at}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // kill -9 the tool and the hanging fake with it.
        nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = child.wait();
        // The fake runs in a process group of its own (as every child of cri-migrate does).
        if let Ok(pid) = std::fs::read_to_string(state.path().join("hang.pid")) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.trim().parse().unwrap()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }

        // Run migrate again: it finishes the job from the stored plan.
        let out = migrate(&w, state.path(), &[], &[]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "resume after call {hang_at}: {}",
            s(&out.stderr)
        );
        assert!(s(&out.stderr).contains("An interrupted migration to containerd was found"));
        assert_eq!(units(state.path())["kubelet.service"].1, "active");
        assert_eq!(
            units(state.path())["docker.service"],
            ("disabled".into(), "inactive".into())
        );
        let out = rollback(&w, state.path());
        assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
        assert_eq!(
            node_files(w.node.path()),
            before,
            "rollback after an interruption at call {hang_at}"
        );
        assert_eq!(units(state.path()), initial_units());
    }
}

#[test]
fn offline_migration_writes_files_and_only_enables_and_disables() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.21-registries/node"),
        tmp.path(),
    );
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let out = with_fakes(tmp.path(), state.path())
        .args(["migrate", "--to", "containerd", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(s(&out.stdout).contains("offline"));
    let calls = log(state.path(), "systemctl.log");
    assert_eq!(
        calls,
        [
            "--root disable docker.socket",
            "--root disable docker.service",
            "--root enable containerd.service"
        ]
    );
    assert!(
        s(&out.stderr).contains("[skip] stop kubelet.service"),
        "{}",
        s(&out.stderr)
    );
    let hosts = std::fs::read_to_string(
        tmp.path()
            .join("etc/containerd/certs.d/docker.io/hosts.toml"),
    )
    .unwrap();
    assert!(hosts.contains("https://mirror.corp.local"));
    // Offline, a second run has nothing to do either.
    let again = with_fakes(tmp.path(), state.path())
        .args(["migrate", "--to", "containerd", "--yes"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3));
}

#[test]
fn preflight_and_lock_failures_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        tmp.path(),
    );
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let before = tree(tmp.path());
    // --live without a booted systemd on the node.
    let out = with_fakes(tmp.path(), state.path())
        .args([
            "--live",
            "migrate",
            "--no-sandbox",
            "--to",
            "containerd",
            "--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        s(&out.stderr).contains("systemd is not running on this node"),
        "{}",
        s(&out.stderr)
    );
    assert!(
        !tmp.path().join("var/lib/cri-migrate").exists(),
        "no backup was made"
    );
    let mut after = tree(tmp.path());
    after.retain(|k, _| !k.starts_with("run/"));
    assert_eq!(after, before);
    assert!(log(state.path(), "systemctl.log").is_empty());

    // Another run holds the lock.
    std::fs::create_dir_all(tmp.path().join("run")).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(tmp.path().join("run/cri-migrate.lock"))
        .unwrap();
    let _held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = with_fakes(tmp.path(), state.path())
        .args(["migrate", "--to", "containerd", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(14), "{}", s(&out.stderr));
    assert!(
        s(&out.stderr).contains("another cri-migrate is working on this node"),
        "{}",
        s(&out.stderr)
    );
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn runtime_classes_are_checked_against_the_carried_handlers() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    std::fs::create_dir_all(w.node.path().join("etc/kubernetes")).unwrap();
    std::fs::write(
        w.node.path().join("etc/kubernetes/admin.conf"),
        "apiVersion: v1\nkind: Config\n",
    )
    .unwrap();
    let dj = w.node.path().join("etc/docker/daemon.json");
    let before = std::fs::read_to_string(&dj).ok();
    std::fs::create_dir_all(dj.parent().unwrap()).unwrap();
    std::fs::write(&dj, r#"{"runtimes": {"crun": {"path": "/usr/bin/crun"}}}"#).unwrap();
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_RUNTIMECLASSES", "crun crun\ngvisor runsc\n")],
        &["--dry-run"],
    );
    match before {
        Some(t) => std::fs::write(&dj, t).unwrap(),
        None => std::fs::remove_file(&dj).unwrap(),
    }
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let said = s(&out.stdout);
    assert!(
        said.contains("[runtimeclass-handler-missing] RuntimeClass gvisor names handler runsc"),
        "{said}"
    );
    assert!(!said.contains("RuntimeClass crun"), "{said}");
    assert!(log(state.path(), "kubectl.log")[0].starts_with("get runtimeclasses.node.k8s.io"));
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn drain_and_the_kubeadm_cri_socket_record() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    std::fs::write(w.node.path().join("etc/hostname"), "Worker-1\n").unwrap();
    std::fs::create_dir_all(w.node.path().join("etc/kubernetes")).unwrap();
    std::fs::write(
        w.node.path().join("etc/kubernetes/admin.conf"),
        "apiVersion: v1\nkind: Config\n",
    )
    .unwrap();
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_CRI_SOCKET", "/var/run/dockershim.sock")],
        &["--drain"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let calls = log(state.path(), "kubectl.log");
    assert_eq!(
        calls[0], "get node -o name --request-timeout=20s -- worker-1",
        "the API is asked before anything changes"
    );
    // Every name after `--`: nothing built from the node's files can be read as an option.
    assert_eq!(calls[1], "cordon -- worker-1");
    assert!(calls[2].starts_with("drain --ignore-daemonsets") && calls[2].ends_with("-- worker-1"));
    assert_eq!(calls[3], "uncordon -- worker-1");
    assert!(calls[4].starts_with("get node -o jsonpath") && calls[4].ends_with("-- worker-1"));
    assert_eq!(calls[5], "annotate node --overwrite -- worker-1 kubeadm.alpha.kubernetes.io/cri-socket=unix:///run/containerd/containerd.sock");
    assert!(s(&out.stdout)
        .contains("kubeadm CRI socket annotation updated from /var/run/dockershim.sock"));
    rollback(&w, state.path());

    // The API is not reachable: the exact command is printed instead.
    reset_fakes(state.path());
    let out = migrate(&w, state.path(), &[("FAKE_KUBECTL_FAIL", "get")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(s(&out.stdout).contains("run: kubectl annotate node worker-1 kubeadm.alpha.kubernetes.io/cri-socket=unix:///run/containerd/containerd.sock --overwrite"), "{}", s(&out.stdout));
    rollback(&w, state.path());

    // A failed drain rolls back and uncordons.
    reset_fakes(state.path());
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_KUBECTL_FAIL", "drain")],
        &["--drain"],
    );
    assert_eq!(out.status.code(), Some(7), "{}", s(&out.stderr));
    assert_eq!(
        log(state.path(), "kubectl.log").last().unwrap(),
        "uncordon -- worker-1"
    );
    assert!(
        log(state.path(), "systemctl.log").is_empty(),
        "a failed drain stopped nothing, so nothing is restarted"
    );
    assert_eq!(units(state.path()), initial_units());

    // The API cannot be reached: --drain is refused before any backup, nothing runs, and the
    // next plain run plans afresh instead of resuming.
    reset_fakes(state.path());
    let backups = |w: &World| {
        std::fs::read_dir(w.node.path().join("var/lib/cri-migrate/backups"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = backups(&w);
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_KUBECTL_FAIL", "get")],
        &["--drain"],
    );
    assert_eq!(out.status.code(), Some(5), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("--drain: the API server cannot be asked"));
    assert_eq!(backups(&w), before, "no backup for a refused run");
    assert!(log(state.path(), "systemctl.log").is_empty());
    let out = migrate(&w, state.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(!s(&out.stderr).contains("interrupted migration"));
    assert!(
        !log(state.path(), "kubectl.log")
            .iter()
            .any(|c| c.starts_with("cordon") || c.starts_with("drain")),
        "the fresh run has no --drain, and nothing of the refused one was resumed"
    );
    rollback(&w, state.path());

    // A hostname that reads as a kubectl option: refused before kubectl hears of it.
    reset_fakes(state.path());
    std::fs::write(
        w.node.path().join("etc/hostname"),
        "--selector=kubernetes.io/os=linux\n",
    )
    .unwrap();
    let before = backups(&w);
    let out = migrate(&w, state.path(), &[], &["--drain"]);
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("/etc/hostname") && err.contains("is not a node name"),
        "{err}"
    );
    assert!(
        log(state.path(), "kubectl.log").is_empty(),
        "kubectl was called"
    );
    assert_eq!(backups(&w), before);
    std::fs::write(w.node.path().join("etc/hostname"), "Worker-1\n").unwrap();
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn install_runtime_only_with_consent() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    // Take containerd off the node.
    let status = w.node.path().join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status).unwrap();
    let kept: Vec<&str> = text
        .split("\n\n")
        .filter(|p| !p.contains("Package: containerd"))
        .collect();
    std::fs::write(&status, kept.join("\n\n")).unwrap();
    let before = node_files(w.node.path());

    let out = migrate(&w, state.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", s(&out.stderr));
    assert!(s(&out.stderr).contains("containerd is not installed"));
    assert!(
        log(state.path(), "packages.log").is_empty(),
        "nothing installed without consent"
    );
    assert_eq!(node_files(w.node.path()), before);

    let out = migrate(&w, state.path(), &[], &["--install-runtime"]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert_eq!(
        log(state.path(), "packages.log"),
        ["apt-get install -y --no-install-recommends containerd"]
    );
}

/// A prompt switches the terminal to raw mode after drawing itself, which drops keys typed
/// before: answer a moment after the prompt shows, as a person would.
fn answer_after_render(p: &mut rexpect::session::PtySession, answer: &str) {
    std::thread::sleep(std::time::Duration::from_millis(400));
    p.send(answer).unwrap();
    p.flush().unwrap();
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn guided_mode_through_a_terminal() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let before = node_files(w.node.path());
    let guided = |answers: &[(&str, &str)]| -> rexpect::session::PtySession {
        let mut c = cmd(&w, state.path());
        c.args([
            "--live",
            "migrate",
            "--no-sandbox",
            "--timeout",
            "4",
            "--cri-endpoint",
            &w.containerd.endpoint(),
            "--test-image",
            &w.image,
        ]);
        let mut p = rexpect::session::spawn_command(c, Some(60_000)).unwrap();
        for (prompt, answer) in answers {
            p.exp_string(prompt).unwrap();
            answer_after_render(&mut p, answer);
        }
        p
    };

    // Enter at every question: the question that changes the node defaults to no (as
    // `kubeadm reset` does), and the answer is echoed. Nothing changes, exit 9.
    reset_fakes(state.path());
    let mut p = guided(&[
        ("Move the kubelet to which runtime?", "\r"),
        ("Carry these settings over?", "\r"),
        ("Apply these changes now?", "\r"),
    ]);
    p.exp_regex("Apply these changes now\\? A backup is made first.*no")
        .unwrap();
    p.exp_string("cancelled").unwrap();
    let status = p.process.wait().unwrap();
    assert!(
        matches!(status, rexpect::process::wait::WaitStatus::Exited(_, 9)),
        "{status:?}"
    );
    assert_eq!(node_files(w.node.path()), before);

    // Yes all the way: what inspection found, the risks, the settings, the diff, the steps.
    reset_fakes(state.path());
    let mut p = guided(&[]);
    p.exp_string("dockershim (Docker Engine)").unwrap();
    p.exp_string("Risks").unwrap();
    p.exp_string("Move the kubelet to which runtime?").unwrap();
    answer_after_render(&mut p, "\r");
    p.exp_string("Carried over").unwrap();
    p.exp_string("Carry these settings over?").unwrap();
    answer_after_render(&mut p, "y");
    p.exp_string("+++ b/etc/containerd/config.toml").unwrap();
    p.exp_string("Apply these changes now?").unwrap();
    answer_after_render(&mut p, "y");
    p.exp_string("restart containerd.service").unwrap();
    p.exp_string("Migrated to containerd").unwrap();
    p.exp_string("To go back: sudo cri-migrate rollback --backup")
        .unwrap();
    let status = p.process.wait().unwrap();
    assert!(
        matches!(status, rexpect::process::wait::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
    assert_eq!(log(state.path(), "systemctl.log"), HAPPY);
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn images_that_cannot_be_carried_stop_the_cutover_unless_forced() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    // Docker says a container uses one image, and fails to export it.
    let images =
        r#"[{"Id":"sha256:aaa","RepoTags":["127.0.0.1:1/app:1"],"RepoDigests":[],"Size":10}]"#;
    let containers = r#"[{"Image":"127.0.0.1:1/app:1","ImageID":"sha256:aaa"}]"#;
    let _docker = services::FakeDocker::start(
        &w.node.path().join("var/run/docker.sock"),
        images,
        containers,
    );
    let before = node_files(w.node.path());

    // No containerd to take them: refused before anything changes.
    let out = migrate(&w, state.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(5), "{}", s(&out.stderr));
    assert!(
        s(&out.stderr).contains("Start containerd"),
        "{}",
        s(&out.stderr)
    );
    assert_eq!(node_files(w.node.path()), before);

    // containerd answers, the export fails: the in-use image is missing, the cutover refused.
    w.containerd.serve_node(w.node.path());
    let before = node_files(w.node.path());
    let out = migrate(&w, state.path(), &[], &["--output", "json"]);
    assert_eq!(out.status.code(), Some(5), "{}", s(&out.stderr));
    let err = s(&out.stderr);
    assert!(
        err.contains("in-use image(s) could not be carried over to containerd:")
            && err.contains("export failed (fake Docker)"),
        "{err}"
    );
    assert!(
        log(state.path(), "systemctl.log").is_empty(),
        "no service touched"
    );
    assert_eq!(node_files(w.node.path()), before);

    // --force goes ahead without it.
    let out = migrate(&w, state.path(), &[], &["--force", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"][0]["result"], "failed");
    assert_eq!(report["images"][0]["in_use"], true);
    rollback(&w, state.path());
    std::fs::remove_file(w.node.path().join("run/containerd/containerd.sock")).unwrap();
}

/// Images that would not fit under containerd's store (leaving the kubelet's 15 % reserve) are
/// refused before the carry starts and before any backup; the migration goes on only with
/// `--force`.
#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn images_that_would_fill_the_disk_are_refused_before_anything() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    // An in-use image of a petabyte.
    let images = r#"[{"Id":"sha256:bbb","RepoTags":["127.0.0.1:1/big:1"],"RepoDigests":[],"Size":1000000000000000}]"#;
    let containers = r#"[{"Image":"127.0.0.1:1/big:1","ImageID":"sha256:bbb"}]"#;
    let _docker = services::FakeDocker::start(
        &w.node.path().join("var/run/docker.sock"),
        images,
        containers,
    );
    w.containerd.serve_node(w.node.path());
    let before = node_files(w.node.path());
    let backups = count_backups(&w);
    let out = migrate(&w, state.path(), &[], &[]);
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("not enough room for the images under")
            && err.contains("var/lib/containerd")
            && err.contains("docker image prune"),
        "{err}"
    );
    assert_eq!(count_backups(&w), backups, "no backup");
    assert!(log(state.path(), "systemctl.log").is_empty());
    assert_eq!(node_files(w.node.path()), before);
    let out = migrate(&w, state.path(), &[], &["--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    rollback(&w, state.path());
    std::fs::remove_file(w.node.path().join("run/containerd/containerd.sock")).unwrap();
}

/// Docker 28 on containerd's image store, on the node's containerd: `migrate` shares the image a
/// container uses into k8s.io before the cutover (no export), and finds it through CRI after.
#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn docker_on_containerds_store_shares_the_images_before_the_cutover() {
    let Some(w) = World::new() else { return };
    let Some(dockerd) = services::dockerd_28() else {
        services::skip_unless(false, "Docker 28 is not fetched (tests/tools/fetch-sid.sh docker28 usr/sbin/dockerd docker.io docker-cli)");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    w.containerd.serve_node(w.node.path());
    let docker = services::Dockerd::start(
        &dockerd,
        &w.containerd.socket(),
        &w.node.path().join("var/run/docker.sock"),
        true,
    );
    docker.ok(&["pull", "--quiet", &w.image]);
    docker.ok(&["create", "--name", "app", &w.image]);

    let out = migrate(&w, state.path(), &[], &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == w.image.as_str())
        })
        .unwrap_or_else(|| panic!("{} not carried: {report:#}", w.image));
    assert_eq!(
        (&image["result"], &image["via"], &image["in_use"]),
        (
            &serde_json::json!("imported"),
            &serde_json::json!("containerd-share"),
            &serde_json::json!(true)
        ),
        "{report:#}"
    );
    assert!(
        report
            .to_string()
            .contains("carried image name(s) through CRI"),
        "{report:#}"
    );
    assert_eq!(rollback(&w, state.path()).status.code(), Some(0));
    drop(docker);
    std::fs::remove_file(w.node.path().join("run/containerd/containerd.sock")).unwrap();
}

/// The newest backup directory of the World's node.
fn newest_backup(w: &World) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(w.node.path().join("var/lib/cri-migrate/backups"))
        .ok()?
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn count_backups(w: &World) -> usize {
    std::fs::read_dir(w.node.path().join("var/lib/cri-migrate/backups"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT delivered to the running binary (by the fake systemctl,
/// right after a unit call): during the cutover the run finishes the step, rolls back by itself
/// and exits 13; once the kubelet runs verified on containerd it finishes and exits 0; before
/// any change it stops at once with exit 12 and nothing made.
#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn signals_roll_back_finish_or_stop_cleanly() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    let before = node_files(w.node.path());
    // After the kubelet stopped (call 1), after Docker's socket stopped (call 2: systemd stopped
    // docker.service with it) and after Docker stopped (call 3).
    for (at, sig) in [
        (1, "INT"),
        (1, "TERM"),
        (2, "TERM"),
        (2, "HUP"),
        (3, "HUP"),
        (3, "QUIT"),
        (3, "INT"),
    ] {
        reset_fakes(state.path());
        let spec = format!("{at}:{sig}");
        // The last one twice: a second Ctrl-C says what is going on and abandons nothing.
        let twice = if (at, sig) == (3, "INT") { "1" } else { "" };
        let out = migrate(
            &w,
            state.path(),
            &[("FAKE_SIGNAL_AT", &spec), ("FAKE_SIGNAL_TWICE", twice)],
            &[],
        );
        let backup = newest_backup(&w).unwrap();
        // After SIGHUP the terminal is gone: the rest of the output is in the backup.
        let said = if sig == "HUP" {
            std::fs::read_to_string(backup.join("output.log")).unwrap()
        } else {
            s(&out.stderr)
        };
        assert_eq!(
            out.status.code(),
            Some(13),
            "SIG{sig} after call {at}: {said}"
        );
        assert!(said.contains(&format!("interrupted by SIG{sig}")), "{said}");
        if !twice.is_empty() {
            assert!(
                said.contains("SIGINT received again: still finishing the step in flight")
                    && said.contains("exits by itself once the node is consistent"),
                "{said}"
            );
        }
        assert!(said.contains("rolled back"), "{said}");
        assert_eq!(
            node_files(w.node.path()),
            before,
            "SIG{sig} after call {at}"
        );
        assert_eq!(
            units(state.path()),
            initial_units(),
            "SIG{sig} after call {at}"
        );
        let calls = log(state.path(), "systemctl.log");
        assert_eq!(
            calls[..at],
            HAPPY[..at],
            "SIG{sig}: the walk stopped after the step"
        );
        assert!(
            !calls.contains(&"restart containerd.service".to_string()),
            "containerd was never touched: {calls:?}"
        );
        let manifest = std::fs::read_to_string(backup.join("manifest.json")).unwrap();
        assert!(
            manifest.contains("\"state\": \"rolled-back\""),
            "{manifest}"
        );
    }
    // A second migrate after an interrupted and rolled-back one plans afresh.
    reset_fakes(state.path());
    let out = migrate(&w, state.path(), &[("FAKE_SIGNAL_AT", "6:TERM")], &[]);
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("An interrupted migration"), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(
        s(&out.stdout).contains("the migration finished"),
        "{}",
        s(&out.stdout)
    );
    assert_eq!(log(state.path(), "systemctl.log"), HAPPY);
    let out = rollback(&w, state.path());
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert_eq!(node_files(w.node.path()), before);

    // Before any change (while the units' states are read): exit 12, no backup, no call.
    let backups = count_backups(&w);
    reset_fakes(state.path());
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_SIGNAL_QUERY", "INT")],
        &["--output", "json"],
    );
    assert_eq!(out.status.code(), Some(12), "{}", s(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "interrupted", "{doc}");
    assert_eq!(count_backups(&w), backups);
    assert!(log(state.path(), "systemctl.log").is_empty());
    assert_eq!(node_files(w.node.path()), before);
}

/// A unit state systemctl cannot tell is a refusal before the backup, not "unknown".
#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn unreadable_unit_states_are_refused_before_the_backup() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let backups = count_backups(&w);
    let out = migrate(
        &w,
        state.path(),
        &[("FAKE_QUERY_HANG", "docker.service")],
        &[],
    );
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("the state of some units cannot be read") && err.contains("docker.service"),
        "{err}"
    );
    assert_eq!(count_backups(&w), backups);
    assert!(log(state.path(), "systemctl.log").is_empty());
}

/// Two runs at once: the second is refused at once, naming the first; the first, interrupted
/// before its first change, stops with exit 12 and leaves nothing to resume.
#[cfg(feature = "test-hooks")]
#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_second_run_is_refused_while_the_first_holds_the_lock() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let before = node_files(w.node.path());
    let mut first = migrate_cmd(&w, state.path(), &w.image);
    first
        .env("CRI_MIGRATE_PAUSE_AFTER", "backup")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let first = first.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let paused = newest_backup(&w)
            .and_then(|b| std::fs::read_to_string(b.join("journal.log")).ok())
            .is_some_and(|j| j.contains("paused after backup"));
        if paused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never paused"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for args in [
        &[
            "--live",
            "migrate",
            "--no-sandbox",
            "--to",
            "containerd",
            "--yes",
        ][..],
        &["--live", "rollback", "--yes"],
        &["--live", "images", "--to", "containerd"],
    ] {
        let t0 = std::time::Instant::now();
        let out = cmd(&w, state.path()).args(args).output().unwrap();
        let err = s(&out.stderr);
        assert_eq!(out.status.code(), Some(14), "{args:?}: {err}");
        assert!(
            err.contains(&format!("pid {}", first.id()))
                && err.contains("migrate --no-sandbox --to containerd"),
            "{args:?}: {err}"
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "refused at once"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", s(&out.stderr));
    assert!(log(state.path(), "systemctl.log").is_empty());
    assert_eq!(node_files(w.node.path()), before);
    let manifest =
        std::fs::read_to_string(newest_backup(&w).unwrap().join("manifest.json")).unwrap();
    assert!(manifest.contains("\"state\": \"abandoned\""), "{manifest}");
    // Nothing to resume: the next run plans afresh and migrates.
    let out = migrate(&w, state.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert!(!s(&out.stderr).contains("An interrupted migration"));
    rollback(&w, state.path());
}

/// kubeadm-flags.env made immutable (`chattr +i`): its write fails; the rollback restarts what
/// was stopped, does not try to restore the file it never wrote, and reports the node as rolled
/// back (7), not "a person must look" (8).
#[test]
#[ignore = "needs root, chattr on the test's file system, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_file_that_cannot_be_written_is_rolled_back_not_left_for_a_person() {
    let Some(w) = World::new() else { return };
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let before = node_files(w.node.path());
    let flags = w.node.path().join("var/lib/kubelet/kubeadm-flags.env");
    let chattr = |flag: &str| {
        let st = std::process::Command::new("chattr")
            .arg(flag)
            .arg(&flags)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "chattr {flag} failed: the test's file system must take it"
        );
    };
    chattr("+i");
    let out = migrate(&w, state.path(), &[], &[]);
    chattr("-i");
    let err = s(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("kubeadm-flags.env"), "{err}");
    assert_eq!(node_files(w.node.path()), before);
    assert_eq!(units(state.path()), initial_units());
    assert!(
        !log(state.path(), "systemctl.log").contains(&"restart containerd.service".to_string()),
        "containerd was never touched"
    );
}

/// `status` through a node's life, offline with the fake systemctl: nothing yet (16), migrated
/// (0), rolled back and why (7), a failure left by --no-rollback with what to restore (8), an
/// interrupted run (15), a run holding the lock (15, with its pid and command line).
#[test]
fn status_tells_the_state_of_the_last_migration() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        tmp.path(),
    );
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let status = || {
        let out = with_fakes(tmp.path(), state.path())
            .args(["status", "--output", "json"])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", s(&out.stdout), s(&out.stderr)));
        (out.status.code(), doc)
    };
    let (code, doc) = status();
    assert_eq!(
        (code, doc["state"].as_str()),
        (Some(16), Some("none")),
        "{doc}"
    );

    let out = with_fakes(tmp.path(), state.path())
        .args(["migrate", "--to", "containerd", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let (code, doc) = status();
    assert_eq!(
        (code, doc["state"].as_str()),
        (Some(0), Some("migrated")),
        "{doc}"
    );
    assert_eq!(doc["target"], "containerd");
    assert!(
        doc["finished"].is_string() && doc["backup"].is_string(),
        "{doc}"
    );

    let out = with_fakes(tmp.path(), state.path())
        .args(["rollback", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    let (code, doc) = status();
    assert_eq!(
        (code, doc["state"].as_str()),
        (Some(7), Some("rolled-back")),
        "{doc}"
    );
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .contains("cri-migrate rollback"),
        "{doc}"
    );

    // The first unit call fails and --no-rollback leaves it: a person must look.
    reset_fakes(state.path());
    let out = with_fakes(tmp.path(), state.path())
        .env("FAKE_FAIL_AT", "1")
        .args(["migrate", "--to", "containerd", "--yes", "--no-rollback"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", s(&out.stderr));
    let (code, doc) = status();
    assert_eq!(
        (code, doc["state"].as_str()),
        (Some(8), Some("needs-a-person")),
        "{doc}"
    );
    let restore = doc["restore"].to_string();
    assert!(
        restore.contains("file /etc/containerd/config.toml: copy back")
            && restore.contains("unit docker.socket"),
        "{doc}"
    );
    let text = with_fakes(tmp.path(), state.path())
        .args(["status"])
        .output()
        .unwrap();
    assert!(
        s(&text.stdout).contains("state      needs-a-person"),
        "{}",
        s(&text.stdout)
    );
    let out = with_fakes(tmp.path(), state.path())
        .args(["rollback", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));

    // A run that began its changes and was killed: interrupted.
    reset_fakes(state.path());
    let out = with_fakes(tmp.path(), state.path())
        .args(["migrate", "--to", "containerd", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let backups = tmp.path().join("var/lib/cri-migrate/backups");
    let mut dirs: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let manifest = dirs.last().unwrap().join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("\"state\": \"done\"", "\"state\": \"in-progress\""),
    )
    .unwrap();
    let (code, doc) = status();
    assert_eq!(
        (code, doc["state"].as_str()),
        (Some(15), Some("interrupted")),
        "{doc}"
    );
    assert!(doc["step"].as_str().unwrap().contains("(done)"), "{doc}");

    // A run holding the lock: in progress, with who.
    std::fs::create_dir_all(tmp.path().join("run")).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(tmp.path().join("run/cri-migrate.lock"))
        .unwrap();
    let mut held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    use std::io::Write;
    writeln!(
        held,
        r#"{{"pid": 4242, "command": "cri-migrate migrate --to containerd --yes", "since": "2026-11-26T12:00:00Z"}}"#
    )
    .unwrap();
    let (code, doc) = status();
    assert_eq!(
        (code, doc["state"].as_str()),
        (Some(15), Some("in-progress")),
        "{doc}"
    );
    assert_eq!(doc["pid"], 4242);
    assert_eq!(
        doc["command_line"],
        "cri-migrate migrate --to containerd --yes"
    );
}

/// The unit calls of a whole migration where containerd keeps Docker's containers through a
/// restart (KillMode=process): the runtime first, the cutover after.
/// Beside Docker: the runtime's restart and check, then the gate loaded (a daemon-reload), the
/// kubelet stopped and its start queued (held), Docker's units (no Docker runs here: nothing to
/// watch, each stop waited for whole), the kubelet's start joined, the gate removed (a reload).
const HAPPY_BESIDE: [&str; 11] = [
    "restart containerd.service",
    "daemon-reload",
    "stop kubelet.service",
    "start --no-block kubelet.service",
    "stop docker.socket",
    "stop docker.service",
    "start kubelet.service",
    "daemon-reload",
    "disable docker.socket",
    "disable docker.service",
    "enable containerd.service",
];

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn beside_docker_a_failed_check_never_stops_the_kubelet() {
    let Some(w) = World::new() else { return };
    std::fs::write(
        w.node.path().join("lib/systemd/system/containerd.service"),
        "[Service]\nExecStart=/usr/bin/containerd\nKillMode=process\n",
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    reset_fakes(state.path());
    let before = node_files(w.node.path());

    // An image the registry does not have: the pull fails before the cutover.
    let missing = format!("{}/no/such:1", w.registry.addr);
    let out = migrate_cmd(&w, state.path(), &missing)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(7), "{report}");
    let msg = report["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
        + report["error"].to_string().as_str();
    assert!(msg.contains("never stopped"), "{msg}");
    // containerd got the new config and the old one back; the kubelet and Docker were never
    // touched.
    assert_eq!(
        log(state.path(), "systemctl.log"),
        ["restart containerd.service", "restart containerd.service"]
    );
    assert_eq!(node_files(w.node.path()), before);
    assert_eq!(units(state.path()), initial_units());
    let steps: Vec<String> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !steps.iter().any(|s| s.contains("kubeadm-flags.env")),
        "the kubelet's files are written at the cutover only: {steps:?}"
    );

    // With a good image: the runtime's check, then the cutover.
    reset_fakes(state.path());
    let out = migrate(&w, state.path(), &[], &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert_eq!(log(state.path(), "systemctl.log"), HAPPY_BESIDE);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["order"]["check_before_cutover"], true, "{report}");
    // The gate was loaded from the node's /run and is gone after the migration.
    let gate = w
        .node
        .path()
        .join("run/systemd/system/kubelet.service.d/zz-cri-migrate-gate.conf");
    assert!(!gate.exists(), "{}", gate.display());
    assert!(!w.node.path().join("run/cri-migrate/kubelet-gate").exists());
    let out = rollback(&w, state.path());
    assert_eq!(out.status.code(), Some(0), "{}", s(&out.stderr));
    assert_eq!(node_files(w.node.path()), before);
}
