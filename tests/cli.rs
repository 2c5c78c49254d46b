//! Black-box tests of the built binary: help, completions, inspect, exit codes, JSON errors, and
//! that nothing is ever written.

mod common;

use common::*;
use std::process::Output;

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cri-migrate --root NODE migrate --to containerd --dry-run EXTRA...`
fn dry_run(node: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--root", node, "migrate", "--to", "containerd", "--dry-run"];
    args.extend(extra);
    run(&args)
}

/// A dry run's JSON plan of the node under `root`, which must plan (exit 0).
fn dry_run_json(root: impl AsRef<std::path::Path>, extra: &[&str]) -> serde_json::Value {
    let root = root.as_ref().to_str().unwrap().to_string();
    let out = dry_run(&root, &[&["--output", "json"][..], extra].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Write `text` at the node path `path` under `root`, making its directories.
fn write_under(root: &std::path::Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Set one key of the node's /etc/docker/daemon.json (created when missing).
fn set_daemon_json(root: &std::path::Path, key: &str, value: serde_json::Value) {
    let path = root.join("etc/docker/daemon.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|_| "{}".into()))
            .unwrap();
    json[key] = value;
    write_under(root, "etc/docker/daemon.json", &json.to_string());
}

/// The plan's warning of this code, as "message -> fix".
fn warning(plan: &serde_json::Value, code: &str) -> Option<String> {
    plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == code)
        .map(|w| {
            format!(
                "{} -> {}",
                w["message"].as_str().unwrap(),
                w["fix"].as_str().unwrap()
            )
        })
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures/nodes")
        .join(name)
        .join("node")
        .display()
        .to_string()
}

#[test]
fn help_names_every_command_with_an_example_and_the_exit_codes() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for cmd in [
        "inspect",
        "migrate",
        "verify",
        "rollback",
        "completions",
        "--root",
    ] {
        assert!(help.contains(cmd), "--help lacks {cmd}:\n{help}");
    }
    assert!(
        help.contains("Exit codes:") && help.contains("3  nothing to do"),
        "{help}"
    );
    for cmd in ["inspect", "migrate", "verify", "rollback", "completions"] {
        let h = text(&run(&[cmd, "--help"]).stdout);
        assert!(h.contains("Example"), "{cmd} --help has no example:\n{h}");
    }
    let h = text(&run(&["migrate", "--help"]).stdout);
    for flag in [
        "--to",
        "--dry-run",
        "--output",
        "--kubelet-version",
        "--runtime-version",
        "--sandbox-image",
    ] {
        assert!(h.contains(flag), "migrate --help lacks {flag}");
    }
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("cri-migrate") && script.contains("migrate"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn inspect_reports_the_node_in_text_and_json() {
    let root = fixture("kubeadm-1.21-registries");
    let out = run(&["--root", &root, "inspect"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for want in [
        "1.21.14 (package kubelet)",
        "dockershim (Docker Engine)",
        "https://mirror.corp.local, http://10.20.0.5:5000",
        "registry.corp.local: 1 CA, 1 client pair(s)",
        "[insecure-cidr]",
        "[docker-live-restore]",
        "static pods etcd",
    ] {
        assert!(report.contains(want), "inspect lacks {want:?}:\n{report}");
    }
    // Credentials: the registries are named, the secrets never shown.
    assert!(
        report.contains(
            "/root/.docker/config.json: https://index.docker.io/v1/, registry.corp.local"
        ),
        "{report}"
    );
    assert!(!report.contains("c2VjcmV0") && !report.contains("aHViOnB3"));

    let out = run(&["--root", &root, "inspect", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema_version"], 1);
    let f = &json["facts"];
    assert_eq!(f["current_runtime"]["kind"], "dockershim");
    assert_eq!(f["kubelet"]["version"], "1.21.14");
    assert_eq!(f["runtimes"]["containerd"]["package"], "containerd.io");
    assert_eq!(f["docker"]["settings"]["data_root"], "/data/docker");
    assert_eq!(f["containerd_config"]["schema"], 1);
    assert_eq!(f["containerd_config"]["cri_disabled"], true);
    assert!(!text(&out.stdout).contains("c2VjcmV0"));
}

#[test]
fn inspect_finds_docker_bound_static_pods() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubeadm-1.20-docker")),
        tmp.path(),
    );
    let manifest = tmp.path().join("etc/kubernetes/manifests/log-agent.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: log-agent\nspec:\n  volumes:\n  - name: sock\n    hostPath:\n      path: /var/run/docker.sock\n  - name: logs\n    hostPath:\n      path: /var/lib/docker/containers\n",
    )
    .unwrap();
    let report = text(&run(&["--root", tmp.path().to_str().unwrap(), "inspect"]).stdout);
    assert!(
        report.contains("[docker-socket-mount] static pod log-agent"),
        "{report}"
    );
    assert!(
        report.contains("[docker-logs-mount] static pod log-agent"),
        "{report}"
    );
}

#[test]
fn without_a_terminal_or_yes_nothing_happens() {
    let root = fixture("kubeadm-1.20-docker");
    let before = tree(std::path::Path::new(&root));
    let out = run(&["--root", &root, "migrate", "--to", "containerd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("run with --yes"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--root", &root, "rollback"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "no backup on this node: {}",
        text(&out.stderr)
    );
    assert_eq!(tree(std::path::Path::new(&root)), before);
    let out = run(&["--root", &root, "migrate", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--to containerd or --to crio"));
}

#[test]
fn errors_in_json_mode_are_json_on_stdout_too() {
    let out = dry_run(&fixture("bad-daemon-json"), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(4));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "bad-input");
    assert_eq!(json["error"]["exit_code"], 4);
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/etc/docker/daemon.json"));
    assert!(text(&out.stderr).starts_with("error: cannot use /etc/docker/daemon.json"));

    let out = dry_run(&fixture("already-migrated"), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"], "nothing-to-do");
    assert!(
        out.stderr.is_empty(),
        "nothing to do is not an error: {}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_and_missing_roots() {
    let out = run(&["--root", "/nonexistent/node", "inspect"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stderr).contains("--root /nonexistent/node is not a directory"));
    let out = run(&["migrate", "--to", "docker", "--dry-run"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown target is a usage error"
    );
    let out = dry_run(
        &fixture("kubeadm-1.20-docker"),
        &["--kubelet-version", "banana"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`banana` is not a version"));
    // With --output json a usage error is one JSON document naming the subcommand: every one
    // of them (fleet was missing from a hand-written list).
    for sub in ["fleet", "status", "migrate"] {
        let out = run(&[sub, "--output", "json", "--bogus"]);
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["command"], sub);
        assert_eq!(doc["result"], "usage");
    }
}

#[test]
fn version_flags_fill_in_what_the_node_cannot_tell() {
    // No kubelet package and no way to run the binary under --root: the flag tells.
    let out = dry_run(
        &fixture("unknown-kubelet-version"),
        &["--kubelet-version", "1.23.17"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("move the kubelet 1.23.17 from dockershim"));
    // A runtime that is not installed can be planned for, with a warning.
    let out = run(&[
        "--root",
        &fixture("target-not-installed"),
        "migrate",
        "--to",
        "crio",
        "--dry-run",
        "--runtime-version",
        "1.23.5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(
        "[runtime-not-installed] CRI-O is not installed; the plan assumes version 1.23.5"
    ));
    // An old containerd is refused with what to do.
    let out = dry_run(
        &fixture("kubeadm-1.20-docker"),
        &["--runtime-version", "1.4.13"],
    );
    assert_eq!(out.status.code(), Some(5));
    assert!(text(&out.stderr).contains("containerd 1.4.13 is too old"));
}

#[test]
fn sandbox_image_flag_wins_and_reaches_the_runtime_config() {
    let out = dry_run(
        &fixture("kubeadm-1.20-docker"),
        &["--sandbox-image", "mirror.local/pause:3.9"],
    );
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(
        s.contains("+  sandbox_image = \"mirror.local/pause:3.9\""),
        "{s}"
    );
    assert!(s.contains("sandbox image   mirror.local/pause:3.9 (from --sandbox-image)"));
}

#[test]
fn secrets_in_an_old_containerd_config_never_reach_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubeadm-1.20-docker")),
        tmp.path(),
    );
    std::fs::write(
        tmp.path().join("etc/containerd/config.toml"),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"reg.local\".auth]\n  username = \"robot\"\n  password = \"s3cr3t-pass\"\n  auth = \"cm9ib3Q6czNjcjN0\"\n",
    )
    .unwrap();
    let root = tmp.path().to_str().unwrap();
    for output in ["text", "json"] {
        let out = dry_run(root, &["--output", output]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(
            !s.contains("s3cr3t-pass") && !s.contains("cm9ib3Q6czNjcjN0"),
            "{output} leaks a secret:\n{s}"
        );
        assert!(s.contains("<redacted>"));
    }
}

#[test]
fn json_plan_has_the_documented_fields() {
    let out = dry_run(&fixture("kubelet-1.24-cri-dockerd"), &["--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "schema_version",
        "command",
        "dry_run",
        "result",
        "node",
        "from",
        "target",
        "runtime_version",
        "kubelet_version",
        "config_schema",
        "order",
        "endpoint",
        "settings",
        "files",
        "actions",
        "warnings",
        "facts",
    ] {
        assert!(json.get(key).is_some(), "no {key}");
    }
    assert_eq!(json["from"], "cri-dockerd");
    let f = &json["files"][0];
    for key in [
        "path",
        "mode",
        "change",
        "why",
        "unit_file",
        "diff",
        "content",
    ] {
        assert!(f.get(key).is_some(), "file lacks {key}");
    }
    let actions: Vec<String> = json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap(),
                a["unit"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        actions,
        // containerd's unit keeps Docker's containers through a restart (KillMode=process): the
        // runtime is checked while the kubelet still runs on Docker, then the cutover: the
        // kubelet's files and its start, held at a gate, before Docker stops; the gate opens
        // once Docker's containers have exited.
        [
            "write-files ",
            "restart containerd.service",
            "wait-for-socket ",
            "verify-pull ",
            "check-sandbox ",
            "install-gate kubelet.service",
            "stop kubelet.service",
            "write-files ",
            "start-held kubelet.service",
            "stop cri-docker.socket",
            "stop cri-docker.service",
            "stop-containers ",
            "stop docker.socket",
            "stop docker.service",
            "start kubelet.service",
            "check-runtime ",
            "wait-stopped ",
            "wait-active kubelet.service",
            "remove-gate kubelet.service",
            "disable cri-docker.socket",
            "disable cri-docker.service",
            "disable docker.socket",
            "disable docker.service",
            "enable containerd.service",
        ]
    );
    // Docker's stops go on once its containers exited (cri-dockerd's are waited for whole), and
    // the wait for Docker's own shutdown names both units.
    let early: Vec<&str> = json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["until_exited"] == "/var/run/docker.sock")
        .map(|a| a["unit"].as_str().unwrap())
        .collect();
    assert_eq!(early, ["docker.socket", "docker.service"]);
    let waited = json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "wait-stopped")
        .unwrap();
    assert_eq!(
        waited["units"],
        serde_json::json!(["docker.socket", "docker.service"])
    );
}

#[test]
fn kubeadm_instance_config_gets_the_new_socket() {
    // kubeadm 1.34+ (NodeLocalCRISocket) keeps the node's CRI socket in a file.
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubelet-1.35-containerd2")),
        tmp.path(),
    );
    std::fs::write(
        tmp.path().join("var/lib/kubelet/instance-config.yaml"),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/cri-dockerd.sock\n",
    )
    .unwrap();
    let out = dry_run(tmp.path().to_str().unwrap(), &["--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let content = planned(&plan, "/var/lib/kubelet/instance-config.yaml")
        .expect("instance-config.yaml is planned");
    assert!(
        content.contains("containerRuntimeEndpoint: unix:///run/containerd/containerd.sock"),
        "{content}"
    );
    assert!(content
        .starts_with("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"));
}

/// Credentials wherever a node holds them — Docker's and the kubelet's config.json, an old
/// containerd config's registry auth (a table and an inline table), a mirror URL and a proxy
/// variable with a password — appear in no output: inspect and dry run, text and JSON. A file
/// that keeps one is planned 0600.
#[test]
fn no_secret_reaches_any_output() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        tmp.path(),
    );
    let w = |p: &str, s: &str| write_under(tmp.path(), p, s);
    w(
        "etc/docker/daemon.json",
        r#"{"exec-opts": ["native.cgroupdriver=systemd"], "registry-mirrors": ["https://mirroruser:Mirr0rPass1@mirror.local"], "proxies": {"http-proxy": "http://p:Pr0xyPass1@proxy:3128"}}"#,
    );
    w(
        "etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"reg.local\".auth]\n  username = \"robot\"\n  password = \"T4blePass1\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"other.local\"]\n  auth = { password = \"Inl1nePass1\", username = \"x\" }\n",
    );
    w(
        "var/lib/kubelet/config.json",
        // base64 of robot:Kub3letPass1
        r#"{"auths": {"reg.local": {"auth": "cm9ib3Q6S3ViM2xldFBhc3Mx"}}}"#,
    );
    w(
        "etc/systemd/system/kubelet.service.d/20-proxy.conf",
        "[Service]\nEnvironment=\"HTTPS_PROXY=http://u:Dr0pInPass1@proxy:3128\"\n",
    );
    let root = tmp.path().display().to_string();
    let secrets = [
        "Mirr0rPass1",
        "Pr0xyPass1",
        "T4blePass1",
        "Inl1nePass1",
        "cm9ib3Q6S3ViM2xldFBhc3Mx",
        "Kub3letPass1",
        "Dr0pInPass1",
    ];
    for args in [
        &["--root", &root, "inspect"][..],
        &["--root", &root, "inspect", "--output", "json"],
        &[
            "--root",
            &root,
            "migrate",
            "--to",
            "containerd",
            "--dry-run",
        ],
        &[
            "--root",
            &root,
            "migrate",
            "--to",
            "containerd",
            "--dry-run",
            "--output",
            "json",
        ],
        &[
            "--root",
            &root,
            "migrate",
            "--to",
            "crio",
            "--runtime-version",
            "1.28.0",
            "--dry-run",
            "--output",
            "json",
        ],
    ] {
        let out = run(args);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.code() == Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        for s in secrets {
            assert!(!all.contains(s), "{args:?} printed {s}:\n{all}");
        }
    }
    let out = dry_run(&root, &["--output", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/containerd/config.toml")
        .unwrap();
    assert_eq!(config["mode"], "0600", "{config}");
    assert!(config["content"].as_str().unwrap().contains("<redacted>"));
}

/// The command lines in the Kubernetes manifests (deploy/) are ones this cri-migrate accepts:
/// a flag renamed here fails this test, not a rollout.
#[test]
fn the_manifests_command_lines_parse() {
    use clap::Parser;
    for (file, pointer) in [
        (
            "deploy/system-upgrade-controller/plan.yaml",
            "/spec/upgrade/args",
        ),
        (
            "deploy/kubernetes/job.yaml",
            "/spec/template/spec/containers/0/args",
        ),
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let doc: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let args: Vec<String> = doc
            .pointer(pointer)
            .and_then(|a| a.as_array())
            .unwrap_or_else(|| panic!("{file}: no {pointer}"))
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let cli = cri_migrate::cli::Cli::try_parse_from(
            std::iter::once("cri-migrate".to_string()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{file}: {args:?} does not parse: {e}"));
        match cli.command {
            cri_migrate::cli::Command::Migrate(m) => {
                assert!(m.detach && m.yes, "{file}: the Job must run --yes --detach");
            }
            _ => panic!("{file}: not a migrate command"),
        }
    }
}

/// Whether the runtime is checked beside Docker before the cutover, and why, from the units.
#[test]
fn the_order_follows_containerds_kill_mode_and_dockers_containerd() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubeadm-1.20-docker")),
        tmp.path(),
    );
    let order = |root: &std::path::Path| -> (bool, String) {
        let v = dry_run_json(root, &[]);
        (
            v["order"]["check_before_cutover"].as_bool().unwrap(),
            v["order"]["why"].as_str().unwrap().to_string(),
        )
    };
    let w = |path: &str, text: &str| write_under(tmp.path(), path, text);
    // containerd's unit has no KillMode: a restart stops every shim in its cgroup.
    let (beside, why) = order(tmp.path());
    assert!(!beside, "{why}");
    assert!(why.contains("KillMode=control-group"), "{why}");
    // Docker on the system's containerd: still not beside.
    w(
        "lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n",
    );
    assert!(!order(tmp.path()).0);
    // Docker with a containerd of its own: the system's containerd is a separate daemon.
    w(
        "lib/systemd/system/docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
    );
    let (beside, why) = order(tmp.path());
    assert!(beside, "{why}");
    assert!(why.contains("a containerd of its own"), "{why}");
    // ... unless daemon.json points it at the system's.
    set_daemon_json(
        tmp.path(),
        "containerd",
        "/run/containerd/containerd.sock".into(),
    );
    assert!(!order(tmp.path()).0);
    // A drop-in that sets KillMode=process wins over the unit file.
    w(
        "etc/systemd/system/containerd.service.d/10-kill-mode.conf",
        "[Service]\nKillMode=process\n",
    );
    let (beside, why) = order(tmp.path());
    assert!(beside, "{why}");
    assert!(why.contains("KillMode=process"), "{why}");
    // A later drop-in takes it back.
    w(
        "etc/systemd/system/containerd.service.d/20-mixed.conf",
        "[Service]\nKillMode=mixed\n",
    );
    let (beside, why) = order(tmp.path());
    assert!(!beside, "{why}");
    assert!(why.contains("KillMode=mixed"), "{why}");
}

/// containerd 2.x removed CRI v1alpha2: a kubelet that speaks only it is refused, with the fix.
#[test]
fn a_kubelet_too_old_for_containerd_2_is_refused() {
    let out = dry_run(
        &fixture("kubeadm-1.20-docker"),
        &["--runtime-version", "2.1.4"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("speaks CRI v1alpha2 only"), "{err}");
    assert!(err.contains("Upgrade the kubelet first"), "{err}");
    assert!(err.contains("target containerd 1.7"), "{err}");
    // The same node onto containerd 1.6 plans.
    dry_run_json(fixture("kubeadm-1.20-docker"), &[]);
}

/// containerd 2.x's unit sets no LimitNOFILE: Docker's limit is kept by a drop-in, which a second
/// plan (the drop-in in place) does not write again.
#[test]
fn containerd_2_gets_dockers_open_files_limit() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubelet-1.30-containerd2-schema2")),
        tmp.path(),
    );
    let plan = |root: &std::path::Path| dry_run_json(root, &[]);
    const DROP_IN: &str = "/etc/systemd/system/containerd.service.d/20-cri-migrate-limits.conf";
    let p = plan(tmp.path());
    let content = planned(&p, DROP_IN).expect("the drop-in is planned");
    assert!(content.contains("\nLimitNOFILE=1048576\n"), "{content}");
    assert!(warning(&p, "containerd-limit-nofile").is_some());
    // A unit file changed: systemd reloads before containerd restarts.
    let actions: Vec<&str> = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    let reload = actions.iter().position(|a| *a == "daemon-reload").unwrap();
    let restart = actions.iter().position(|a| *a == "restart").unwrap();
    assert!(reload < restart, "{actions:?}");
    // With the drop-in in place: not planned again.
    let path = tmp.path().join(DROP_IN.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    assert!(planned(&plan(tmp.path()), DROP_IN).is_none());
    // Docker's unit without a limit (Docker 25 and later): nothing to keep, said as a note.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(
        tmp.path().join("lib/systemd/system/docker.service"),
        "[Service]\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n",
    )
    .unwrap();
    let p = plan(tmp.path());
    assert!(planned(&p, DROP_IN).is_none());
    assert!(warning(&p, "containerd-limit-nofile")
        .unwrap()
        .contains("nor does Docker's"));
    // containerd 1.x: its unit sets the limit; nothing planned.
    let p = dry_run_json(tmp.path(), &["--runtime-version", "1.7.20"]);
    assert!(planned(&p, DROP_IN).is_none());
}

/// The config version follows the installed containerd: a file it reads keeps its version; one
/// it cannot read (version 1 on 2.x), or none, gets the newest it reads, said with what that
/// means for going back to an older containerd.
#[test]
fn the_config_version_is_kept_where_containerd_reads_it() {
    let plan = |fixture_name: &str, extra: &[&str]| dry_run_json(fixture(fixture_name), extra);
    let note = |p: &serde_json::Value| warning(p, "containerd-config-version");
    let version_line = |p: &serde_json::Value| -> String {
        planned(p, "/etc/containerd/config.toml")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("version = "))
            .unwrap()
            .to_string()
    };
    // A version 2 file on containerd 2.1 and on 2.3: kept (containerd migrates it at load).
    for rv in [&[][..], &["--runtime-version", "2.3.1"]] {
        let p = plan("kubelet-1.30-containerd2-schema2", rv);
        assert_eq!(p["config_schema"], 2, "{rv:?}");
        assert_eq!(version_line(&p), "version = 2");
        assert!(note(&p).is_none(), "{rv:?}: {:?}", note(&p));
    }
    // Docker's version 1 file on containerd 2.1: 2.x no longer reads version 1.
    let p = plan("kubelet-1.35-containerd2", &[]);
    assert_eq!(p["config_schema"], 3);
    let n = note(&p).unwrap();
    assert!(
        n.contains("from config version 1 to 3")
            && n.contains("no longer reads version 1")
            && n.contains("containerd 1.x cannot read version 3"),
        "{n}"
    );
    // ... on 2.3: version 4.
    let p = plan("kubelet-1.35-containerd2", &["--runtime-version", "2.3.1"]);
    assert_eq!(p["config_schema"], 4);
    assert_eq!(version_line(&p), "version = 4");
    assert!(note(&p)
        .unwrap()
        .contains("containerd before 2.3 cannot read version 4"));
    // containerd 1.x: version 2, no word (every containerd cri-migrate plans for reads it).
    let p = plan("kubeadm-1.20-docker", &[]);
    assert_eq!(p["config_schema"], 2);
    assert!(note(&p).is_none());
}

/// On containerd 2.x, registry.configs credentials leave containerd's config for the kubelet's
/// config.json (0600), merged with what it has; nothing secret is printed.
#[test]
fn registry_credentials_move_to_the_kubelet_on_containerd_2() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubelet-1.30-containerd2-schema2")),
        tmp.path(),
    );
    let toml = tmp.path().join("etc/containerd/config.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(
        "\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"reg.corp:5000\".auth]\n  username = \"robot\"\n  password = \"Sup3rS3cret\"\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"old.corp\".auth]\n  username = \"x\"\n  password = \"Other5ecret\"\n",
    );
    std::fs::write(&toml, text).unwrap();
    write_under(
        tmp.path(),
        "var/lib/kubelet/config.json",
        r#"{"auths": {"old.corp": {"auth": "a2VlcDprZWVw"}}}"#,
    );
    let text = dry_run(tmp.path().to_str().unwrap(), &[]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode("robot:Sup3rS3cret");
    for secret in [
        "Sup3rS3cret",
        "Other5ecret",
        encoded.as_str(),
        "a2VlcDprZWVw",
    ] {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
    let plan = dry_run_json(tmp.path(), &[]);
    let f = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/var/lib/kubelet/config.json")
        .expect("the kubelet's config.json is planned");
    assert_eq!(f["mode"], "0600");
    // Both registries there (the values show redacted: the report is printed).
    let merged: serde_json::Value = serde_json::from_str(f["content"].as_str().unwrap()).unwrap();
    assert!(
        merged["auths"]["reg.corp:5000"]["auth"].is_string(),
        "{merged}"
    );
    assert!(merged["auths"]["old.corp"]["auth"].is_string(), "{merged}");
    let config = planned(&plan, "/etc/containerd/config.toml").unwrap();
    assert!(
        !config.contains("registry.configs.\"reg.corp:5000\".auth"),
        "{config}"
    );
    assert!(warning(&plan, "credentials-kept")
        .unwrap()
        .contains("old.corp"));
    // On containerd 1.x the credentials stay where they are.
    let plan = dry_run_json(tmp.path(), &["--runtime-version", "1.7.20"]);
    assert!(planned(&plan, "/var/lib/kubelet/config.json").is_none());
}

/// Docker's leftovers said in the plan: addresses its pods hold in host-local, live-restore.
#[test]
fn dockers_leftovers_are_said_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        std::path::Path::new(&fixture("kubeadm-1.22-private-pause")),
        tmp.path(),
    );
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let w = |p: &str, s: &str| write_under(tmp.path(), p, s);
    w(
        &format!("var/lib/docker/containers/{id}/config.v2.json"),
        "{}",
    );
    w(
        "var/lib/cni/networks/cbr0/10.244.3.7",
        &format!("{id}\neth0\n"),
    );
    w("var/lib/cni/networks/cbr0/10.244.3.8", "not-docker\neth0\n");
    set_daemon_json(tmp.path(), "live-restore", true.into());
    let p = dry_run_json(tmp.path(), &[]);
    let w = |code: &str| warning(&p, code);
    let ipam = w("cni-addresses-held").expect("the held address is said");
    assert!(
        ipam.contains("1 address(es)") && ipam.contains("/var/lib/cni/networks/cbr0/10.244.3.7"),
        "{ipam}"
    );
    assert!(!ipam.contains("10.244.3.8"), "{ipam}");
    // ... and released once the kubelet has stopped, before its held start and Docker's stop:
    // nothing allocates addresses until the gate opens, once Docker's pods have exited.
    let actions: Vec<String> = p["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["action"].as_str().unwrap(),
                a["unit"].as_str().unwrap_or("")
            )
        })
        .collect();
    let release = actions
        .iter()
        .position(|a| a.starts_with("release-addresses"))
        .expect("released");
    let at = |s: &str| actions.iter().position(|a| a == s).unwrap();
    assert!(
        at("stop kubelet.service") < release
            && release < at("start-held kubelet.service")
            && release < at("stop docker.socket"),
        "{actions:?}"
    );
    let lr = w("docker-live-restore").expect("live-restore is said");
    assert!(lr.contains("systemctl reload docker"), "{lr}");
    assert_eq!(
        p["facts"]["leftovers"]["ipam_reservations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// `cri-migrate migrate --dry-run ... | head`: the reader goes away, the output ends quietly
/// (no "Broken pipe" error) and the exit code is the command's own.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::process::Stdio;
    let node = fixture("kubeadm-1.21-registries");
    let mut child = bin()
        .args([
            "--root",
            &node,
            "migrate",
            "--to",
            "containerd",
            "--dry-run",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the plan is written (as `head` does once it has its lines).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
}

/// Issue 32: a CNI config naming calico with host-local and an empty plugin directory, and a
/// node with no plugin anywhere: the plan is refused before anything is written, naming every
/// missing plugin — loopback too, which the runtime itself runs for every pod.
#[test]
fn missing_cni_plugins_are_all_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture_node("kubeadm-1.20-docker"), dir.path());
    write_under(
        dir.path(),
        "/etc/cni/net.d/10-calico.conflist",
        r#"{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","ipam":{"type":"host-local","subnet":"usePodCidr"}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
    );
    for p in ["calico", "host-local", "loopback", "bridge", "portmap"] {
        let _ = std::fs::remove_file(dir.path().join("opt/cni/bin").join(p));
    }
    let before = tree(dir.path());
    let root = dir.path().to_str().unwrap();
    for extra in [&[][..], &["--output", "json"]] {
        let out = dry_run(root, extra);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(5), "{all}");
        for p in [
            "calico (10-calico.conflist)",
            "host-local (10-calico.conflist)",
            "portmap (10-calico.conflist)",
            "loopback (the runtime itself",
        ] {
            assert!(all.contains(p), "{p} not named: {all}");
        }
    }
    // Applied (offline), the same refusal, and nothing written.
    let out = run(&["--root", root, "migrate", "--to", "containerd", "--yes"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    // The run's lock (/run/cri-migrate.lock, taken first) is all there is beside the node.
    let mut after = tree(dir.path());
    after.retain(|k, _| !k.starts_with("run/"));
    assert!(after == before, "a file was written");
    // No plugin anywhere: still every one named.
    std::fs::remove_dir_all(dir.path().join("opt/cni/bin")).unwrap();
    let out = dry_run(root, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("calico (") && err.contains("loopback ("),
        "{err}"
    );
}

fn fixture_node(name: &str) -> std::path::PathBuf {
    repo().join(format!("tests/fixtures/nodes/{name}/node"))
}
