//! A corpus of malformed and hostile nodes, each built from the kubeadm 1.20 Docker fixture by one
//! change: links that lead out of `--root` (absolute, relative, looping), files that are not
//! files, names that are not names, credentials, configs the runtime would refuse or misread,
//! real variants (BOM, CRLF, `export` lines, several package records), values that once made the
//! tool panic. Each case has its expected outcome — handled (exit 0, with what it must say or
//! write) or refused (exit 4 or 5, naming the file) — and every case checks that:
//!
//! - nothing outside the root was touched: a sentinel tree outside it (where the hostile links
//!   point) is byte-identical afterwards, and its marker text is in no output;
//! - on a refusal, no file of the node changed;
//! - no credential the node holds is printed.
//!
//! The offline `migrate --yes` cases run with the fake systemctl first on PATH (tests/fakes).

mod common;

use common::services::fakes_path;
use common::*;
use std::path::Path;
use std::process::Output;

const MARKER: &str = "SENTINEL-OUTSIDE-THE-ROOT";
const SECRET: &str = "Hostile5ecret";

#[derive(Clone, Copy)]
enum How {
    /// `migrate --to containerd --dry-run`
    DryRun,
    /// `migrate --to containerd --yes` offline (files written under the root, units enabled and
    /// disabled with the fake systemctl).
    Apply,
}

struct Case {
    name: &'static str,
    setup: fn(&Path, &Path),
    run: How,
    extra: &'static [&'static str],
    exit: i32,
    /// Text the output (stdout and stderr) must hold: the file named, the warning given.
    says: &'static [&'static str],
    /// A check of the node after the run.
    after: Option<fn(&Path, &Path)>,
}

fn write(root: &Path, p: &str, s: &[u8]) {
    let path = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    std::fs::write(path, s).unwrap();
}

fn link(root: &Path, p: &str, target: &str) {
    let path = root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(&path).unwrap();
    } else {
        let _ = std::fs::remove_file(&path);
    }
    std::os::unix::fs::symlink(target, path).unwrap();
}

fn out_path(outside: &Path, p: &str) -> String {
    outside.join(p).display().to_string()
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap_or_default()
}

const DAEMON: &str = "/etc/docker/daemon.json";
const CONTAINERD: &str = "/etc/containerd/config.toml";
const FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";
const CONFIG: &str = "/var/lib/kubelet/config.yaml";
const DPKG: &str = "/var/lib/dpkg/status";

fn daemon(root: &Path, json: serde_json::Value) {
    write(root, DAEMON, json.to_string().as_bytes());
}

fn flags(root: &Path, args: &str) {
    write(
        root,
        FLAGS,
        format!("KUBELET_KUBEADM_ARGS=\"{args}\"\n").as_bytes(),
    );
}

fn corpus() -> Vec<Case> {
    let ok = |name, setup, says| Case {
        name,
        setup,
        run: How::DryRun,
        extra: &[],
        exit: 0,
        says,
        after: None,
    };
    let refused = |name, setup, exit, says| Case {
        name,
        setup,
        run: How::DryRun,
        extra: &[],
        exit,
        says,
        after: None,
    };
    vec![
        // --- links and paths that lead out of the root -----------------------------------
        ok("containerd's directory links to an absolute path outside", |r, o| {
            link(r, "/etc/containerd", &out_path(o, "etc/containerd"));
        }, &["+++ b/etc/containerd/config.toml"]),
        Case {
            name: "offline apply through an absolute directory link writes inside the root",
            setup: |r, o| link(r, "/etc/containerd", &out_path(o, "etc/containerd")),
            run: How::Apply,
            extra: &[],
            exit: 0,
            says: &[],
            after: Some(|r, o| {
                let inside = r.join(o.strip_prefix("/").unwrap()).join("etc/containerd/config.toml");
                assert!(inside.is_file(), "written where the link leads inside the root");
            }),
        },
        refused("containerd's directory links to itself", |r, _| {
            link(r, "/etc/containerd", "/etc/containerd");
        }, 4, &["/etc/containerd/config.toml", "too many levels of symbolic links"]),
        ok("daemon.json links to /dev/zero", |r, _| link(r, DAEMON, "/dev/zero"), &[]),
        refused("daemon.json is a FIFO", |r, _| {
            let _ = std::fs::remove_file(r.join("etc/docker/daemon.json"));
            nix::unistd::mkfifo(&r.join("etc/docker/daemon.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        }, 4, &["/etc/docker/daemon.json", "not a regular file"]),
        refused("daemon.json is larger than any config", |r, _| {
            let f = std::fs::File::create(r.join("etc/docker/daemon.json")).unwrap();
            f.set_len(17 << 20).unwrap();
        }, 4, &["/etc/docker/daemon.json", "more than 16 MiB"]),
        refused("containerd's config is a directory", |r, _| {
            std::fs::remove_file(r.join("etc/containerd/config.toml")).unwrap();
            std::fs::create_dir(r.join("etc/containerd/config.toml")).unwrap();
        }, 4, &["/etc/containerd/config.toml", "directory"]),
        ok("daemon.json climbs out with a relative link", |r, o| {
            link(r, DAEMON, &format!("../../../../../../../../../..{}", out_path(o, "etc/docker/daemon.json")));
        }, &[]),
        ok("the kubelet's --config climbs out with ..", |r, o| {
            flags(r, &format!("--network-plugin=cni --config=../../../../../../../../..{}", out_path(o, "config.yaml")));
        }, &[]),
        ok("a drop-in's EnvironmentFile= names a file outside", |r, o| {
            write(r, "/etc/systemd/system/kubelet.service.d/20-env.conf", format!("[Service]\nEnvironmentFile=-{}\n", out_path(o, "flags.env")).as_bytes());
        }, &[]),
        ok("a drop-in's EnvironmentFile= climbs out with ..", |r, o| {
            write(r, "/etc/systemd/system/kubelet.service.d/20-env.conf", format!("[Service]\nEnvironmentFile=-/var/lib/kubelet/../../../../../../..{}\n", out_path(o, "flags.env")).as_bytes());
        }, &[]),
        Case {
            name: "a symlinked config is written through its link, the link kept",
            setup: |r, _| {
                let text = read(r, CONTAINERD);
                write(r, "/opt/cfg/config.toml", text.as_bytes());
                link(r, CONTAINERD, "../../opt/cfg/config.toml");
            },
            run: How::Apply,
            extra: &[],
            exit: 0,
            says: &[],
            after: Some(|r, _| {
                assert!(r.join("etc/containerd/config.toml").is_symlink());
                assert!(read(r, "/opt/cfg/config.toml").contains("SystemdCgroup = true"));
            }),
        },
        Case {
            name: "a dangling symlinked config gets its target; the link stays",
            setup: |r, _| link(r, "/etc/crictl.yaml", "/opt/cfg/crictl.yaml"),
            run: How::Apply,
            extra: &[],
            exit: 0,
            says: &[],
            after: Some(|r, _| {
                assert!(r.join("etc/crictl.yaml").is_symlink());
                assert!(read(r, "/opt/cfg/crictl.yaml").contains("containerd.sock"));
            }),
        },
        Case {
            name: "the record directory is a link: refused, never followed",
            setup: |r, o| link(r, "/var/lib/cri-migrate", &out_path(o, "cri-migrate")),
            run: How::Apply,
            extra: &[],
            exit: 4,
            says: &["/var/lib/cri-migrate", "symbolic link"],
            after: None,
        },
        // --- names that are not names ---------------------------------------------------------
        ok("an insecure registry named ..", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "insecure-registries": [".."]}));
        }, &["registry-not-carried", "\"..\" is not a registry host name"]),
        ok("an insecure registry with a quote and a newline", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "insecure-registries": ["reg\"\n[x]", "ok.local:5000"]}));
        }, &["registry-not-carried", "+++ b/etc/containerd/certs.d/ok.local:5000/hosts.toml"]),
        ok("an insecure registry with a path", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "insecure-registries": ["reg.local/x"]}));
        }, &["registry-not-carried"]),
        ok("an IPv6 registry", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "insecure-registries": ["[fd00::1]:5000"]}));
        }, &["+++ b/etc/containerd/certs.d/[fd00::1]:5000/hosts.toml"]),
        ok("a certs.d directory whose name has a space", |r, _| {
            write(r, "/etc/docker/certs.d/bad name/ca.crt", b"x");
        }, &["registry-not-carried"]),
        ok("a mirror URL with a password", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "registry-mirrors": [format!("https://user:{SECRET}@mirror.local")]}));
        }, &["credentials in its URL", "https://mirror.local"]),
        // --- credentials ------------------------------------------------------------------------
        ok("an old containerd config with an inline auth table", |r, _| {
            write(r, CONTAINERD, format!("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.local\"]\n  auth = {{ username = \"u\", password = \"{SECRET}\" }}\n").as_bytes());
        }, &["(mode 0600)"]),
        ok("the kubelet's config.json with registry auth", |r, _| {
            use base64::Engine;
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("robot:{SECRET}"));
            write(r, "/var/lib/kubelet/config.json", format!("{{\"auths\": {{\"r.local\": {{\"auth\": \"{auth}\"}}}}}}").as_bytes());
        }, &[]),
        ok("a proxy with a password in a drop-in", |r, _| {
            write(r, "/etc/systemd/system/kubelet.service.d/20-proxy.conf", format!("[Service]\nEnvironment=\"HTTPS_PROXY=http://u:{SECRET}@proxy:3128\"\n").as_bytes());
        }, &[]),
        // --- configs the runtime would refuse or misread --------------------------------------
        refused("disabled_plugins is a string", |r, _| write(r, CONTAINERD, b"version = 2\ndisabled_plugins = \"cri\"\n"), 4, &["/etc/containerd/config.toml", "disabled_plugins"]),
        refused("version = 99", |r, _| write(r, CONTAINERD, b"version = 99\n"), 4, &["/etc/containerd/config.toml", "version = 99"]),
        refused("version is a string", |r, _| write(r, CONTAINERD, b"version = \"2\"\n"), 4, &["/etc/containerd/config.toml", "must be a number"]),
        refused("plugins is not a table", |r, _| write(r, CONTAINERD, b"version = 2\nplugins = \"cri\"\n"), 4, &["/etc/containerd/config.toml", "`plugins` must be a table"]),
        refused("a schema 3 file on containerd 1.x", |r, _| write(r, CONTAINERD, b"version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n"), 4, &["/etc/containerd/config.toml", "cannot read"]),
        Case {
            name: "a version 4 file on containerd 2.3 stays version 4",
            setup: |r, _| write(r, CONTAINERD, b"version = 4\n"),
            run: How::DryRun,
            extra: &["--runtime-version", "2.3.0", "--kubelet-version", "1.31.4"],
            exit: 0,
            says: &["config schema 4", "version = 4"],
            after: None,
        },
        Case {
            name: "a kubelet that speaks only CRI v1alpha2, onto containerd 2.x",
            setup: |_, _| {},
            run: How::DryRun,
            extra: &["--runtime-version", "2.1.4"],
            exit: 5,
            says: &["speaks CRI v1alpha2 only", "Upgrade the kubelet first"],
            after: None,
        },
        refused("an import that disables CRI again", |r, _| {
            write(r, CONTAINERD, b"version = 2\nimports = [\"/etc/containerd/conf.d/90-site.toml\"]\n");
            write(r, "/etc/containerd/conf.d/90-site.toml", b"disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
        }, 4, &["/etc/containerd/conf.d/90-site.toml", "disables the CRI plugin again"]),
        refused("a broken import", |r, _| {
            write(r, CONTAINERD, b"version = 2\nimports = [\"/etc/containerd/conf.d/90-site.toml\"]\n");
            write(r, "/etc/containerd/conf.d/90-site.toml", b"[[[\n");
        }, 4, &["/etc/containerd/conf.d/90-site.toml", "not valid TOML"]),
        refused("imports is not a list", |r, _| write(r, CONTAINERD, b"version = 2\nimports = 3\n"), 4, &["`imports` must be a list"]),
        refused("malformed containerd TOML", |r, _| write(r, CONTAINERD, b"version = \n"), 4, &["/etc/containerd/config.toml", "not valid TOML"]),
        refused("malformed daemon.json", |r, _| write(r, DAEMON, b"{\"exec-opts\": [}"), 4, &["/etc/docker/daemon.json", "not valid JSON"]),
        refused("daemon.json is a list", |r, _| write(r, DAEMON, b"[1, 2]"), 4, &["/etc/docker/daemon.json", "not a JSON object"]),
        refused("malformed config.yaml", |r, _| write(r, CONFIG, b"cgroupDriver: [systemd\n"), 4, &["/var/lib/kubelet/config.yaml"]),
        refused("unbalanced quotes in the kubelet's flags", |r, _| write(r, FLAGS, b"KUBELET_KUBEADM_ARGS=\"--network-plugin=cni\n"), 4, &["/var/lib/kubelet/kubeadm-flags.env"]),
        refused("an unsupported containerd version", |r, _| {
            let db = read(r, DPKG).replace("Version: 1.6.21-1", "Version: 9.0.0-1");
            write(r, DPKG, db.as_bytes());
        }, 5, &["containerd 9.0.0 is newer than cri-migrate knows"]),
        refused("no kubelet at all", |r, _| {
            let db = read(r, DPKG).replacen("Package: kubelet", "Package: kubelet-was-here", 1);
            write(r, DPKG, db.as_bytes());
            let _ = std::fs::remove_file(r.join("lib/systemd/system/kubelet.service"));
        }, 5, &["kubelet"]),
        // --- real variants --------------------------------------------------------------------
        ok("daemon.json with a UTF-8 BOM", |r, _| {
            let text = read(r, DAEMON);
            write(r, DAEMON, format!("\u{feff}{text}").as_bytes());
        }, &[]),
        ok("config.yaml with a UTF-8 BOM and CRLF", |r, _| {
            let text = read(r, CONFIG).replace('\n', "\r\n");
            write(r, CONFIG, format!("\u{feff}{text}").as_bytes());
        }, &[]),
        ok("kubeadm-flags.env with CRLF", |r, _| {
            write(r, FLAGS, b"KUBELET_KUBEADM_ARGS=\"--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.2\"\r\n");
        }, &["+KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=k8s.gcr.io/pause:3.2 --container-runtime=remote", "containerd.sock\"\\r\n"]),
        ok("kubeadm-flags.env with an export line", |r, _| {
            write(r, FLAGS, b"export KUBELET_KUBEADM_ARGS=\"--network-plugin=cni\"\n");
        }, &["env-line-ignored", "+KUBELET_KUBEADM_ARGS=\"--container-runtime=remote"]),
        ok("an env file line without =", |r, _| {
            write(r, FLAGS, b"# kubeadm\nnot an assignment\nKUBELET_KUBEADM_ARGS=\"--network-plugin=cni\"\n");
        }, &["env-line-ignored"]),
        refused("two installed kubelet records of different versions", |r, _| {
            let db = read(r, DPKG);
            write(r, DPKG, format!("{db}\nPackage: kubelet\nStatus: install ok installed\nVersion: 1.22.0-00\n").as_bytes());
        }, 5, &["more than one version"]),
        ok("a removed kubelet record beside the installed one", |r, _| {
            let db = read(r, DPKG);
            write(r, DPKG, format!("{db}\nPackage: kubelet\nStatus: deinstall ok config-files\nVersion: 1.19.0-00\n").as_bytes());
        }, &["package-records"]),
        // --- values that once panicked or broke a file ----------------------------------------
        ok("--cni-bin-dir=,", |r, _| flags(r, "--network-plugin=cni --cni-bin-dir=,"), &[]),
        ok("a DEL character in data-root", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "data-root": "/data/do\u{7f}cker"}));
        }, &["+++ b/etc/containerd/config.toml"]),
        ok("a newline and a quote in data-root", |r, _| {
            daemon(r, serde_json::json!({"exec-opts": ["native.cgroupdriver=systemd"], "data-root": "/data/\"x\n[plugins]"}));
        }, &["+++ b/etc/containerd/config.toml"]),
        // --- values from a config that never served CRI ---------------------------------------
        ok("Docker's containerd config names an empty plugin directory", |r, _| {
            write(r, CONTAINERD, b"disabled_plugins = [\"cri\"]\n[plugins.cri.cni]\n  bin_dir = \"/usr/lib/cni\"\n");
        }, &["CNI plugins     /opt/cni/bin"]),
    ]
}

fn run_case(c: &Case, root: &Path, state: &Path) -> Output {
    let r = root.display().to_string();
    let mut cmd = bin();
    let args: Vec<&str> = match c.run {
        How::DryRun => vec!["--root", &r, "migrate", "--to", "containerd", "--dry-run"],
        How::Apply => vec!["--root", &r, "migrate", "--to", "containerd", "--yes"],
    };
    if matches!(c.run, How::Apply) {
        std::fs::create_dir_all(state.join("units")).unwrap();
        cmd.env("PATH", fakes_path())
            .env("FAKE_STATE", state)
            .env("FAKE_NODE", root);
    }
    cmd.args(args).args(c.extra).output().unwrap()
}

#[test]
fn the_hostile_corpus() {
    let cases = corpus();
    assert!(cases.len() >= 40, "the corpus holds {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        copy_tree(
            &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
            root.path(),
        );
        // The sentinel: what the hostile links point at, outside the root.
        for p in [
            "etc/containerd/config.toml",
            "etc/docker/daemon.json",
            "config.yaml",
            "flags.env",
            "etc/crictl.yaml",
        ] {
            write(
                outside.path(),
                p,
                format!("# {MARKER}\nKUBELET_KUBEADM_ARGS=\"--{MARKER}\"\n").as_bytes(),
            );
        }
        std::fs::create_dir_all(outside.path().join("cri-migrate")).unwrap();
        (c.setup)(root.path(), outside.path());
        let node_before = tree(root.path());
        let outside_before = tree(outside.path());
        let out = run_case(c, root.path(), state.path());
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut problems = Vec::new();
        if out.status.code() != Some(c.exit) {
            problems.push(format!("exit {:?}, wanted {}", out.status.code(), c.exit));
        }
        for s in c.says {
            if !all.contains(s) {
                problems.push(format!("the output does not say {s:?}"));
            }
        }
        if tree(outside.path()) != outside_before {
            problems.push("a file outside the root changed".into());
        }
        if all.contains(MARKER) {
            problems.push("a file outside the root was printed".into());
        }
        if all.contains(SECRET) {
            problems.push("a secret was printed".into());
        }
        if c.exit != 0 {
            let mut after = tree(root.path());
            after.retain(|k, _| !k.starts_with("run/"));
            let mut before = node_before.clone();
            before.retain(|k, _| !k.starts_with("run/"));
            if after != before {
                problems.push("a refused run changed the node".into());
            }
        }
        if problems.is_empty() {
            if let Some(check) = c.after {
                if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    check(root.path(), outside.path())
                })) {
                    problems.push(format!("the check after failed: {e:?}"));
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{all}", c.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// A symlinked managed file (and a dangling one): the migration writes through to the targets,
/// the links kept; the rollback puts back the links and the targets byte for byte (the dangling
/// link dangles again: the target it gave is removed).
#[test]
fn symlinked_files_are_restored_link_and_target() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("units")).unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        root.path(),
    );
    let r = root.path();
    let text = read(r, CONTAINERD);
    write(r, "/opt/cfg/config.toml", text.as_bytes());
    link(r, CONTAINERD, "../../opt/cfg/config.toml");
    link(r, "/etc/crictl.yaml", "/opt/cfg/crictl.yaml");
    let before = tree(r);
    let with_fakes = |args: &[&str]| {
        bin()
            .env("PATH", fakes_path())
            .env("FAKE_STATE", state.path())
            .env("FAKE_NODE", r)
            .arg("--root")
            .arg(r)
            .args(args)
            .output()
            .unwrap()
    };
    let out = with_fakes(&["migrate", "--to", "containerd", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r.join("etc/containerd/config.toml").is_symlink());
    assert!(r.join("etc/crictl.yaml").is_symlink());
    assert!(read(r, "/opt/cfg/config.toml").contains("SystemdCgroup = true"));
    assert!(read(r, "/opt/cfg/crictl.yaml").contains("containerd.sock"));
    let out = with_fakes(&["rollback", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut after = tree(r);
    after.retain(|k, _| !k.starts_with("run/") && !k.starts_with("var/lib/cri-migrate"));
    assert_eq!(after, before, "links and targets as they were");
    assert!(r.join("etc/containerd/config.toml").is_symlink());
    assert!(
        !r.join("opt/cfg/crictl.yaml").exists(),
        "the dangling link dangles again"
    );
}
