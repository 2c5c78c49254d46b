//! `verify` against real CRI-O — 1.24.6 (the Kubernetes 1.24 line, `drop_infra_ctr` on, runc)
//! and 1.36.3 (current, crun, the image's user-specified name required) — built unmodified from
//! CRI-O's source (`CRI_MIGRATE_CRIO_124`, `CRI_MIGRATE_CRIO_136`; ../shared/runtimes here),
//! with Debian's conmon, runc, crun and CNI plugins, a registry on 127.0.0.1 and a bridge
//! network of the test's own: the test pod must pass on both, and a failure must be read from
//! what CRI-O said.

mod common;

use common::services::*;
use common::*;
use std::path::Path;

const PAUSE_CMD: &str = r#"["/bin/busybox","sleep","2147483647"]"#;

struct World {
    crio: Crio,
    _registry: Registry,
    node: tempfile::TempDir,
    cni: tempfile::TempDir,
    pause: String,
    bridge: String,
}

impl World {
    fn new(version: &str) -> Option<World> {
        if skip_unless(is_root(), "not root")
            || skip_unless(
                have("docker-registry") && have("skopeo") && have("busybox"),
                "docker-registry, skopeo or busybox-static is not installed",
            )
            || skip_unless(
                Path::new("/usr/lib/cni/bridge").exists(),
                "the CNI plugins are not installed (apt-get install containernetworking-plugins)",
            )
        {
            return None;
        }
        let bin = crio_missing(version)?;
        let registry = Registry::start(None);
        let (pause, _) = registry.push_cmd("pause/pause", "3.9", &["pause"], Some(PAUSE_CMD));
        let cni = tempfile::tempdir().unwrap();
        let port: u32 = registry.addr.rsplit(':').next().unwrap().parse().unwrap();
        let bridge = format!("cro{port}");
        let subnet = format!("10.{}.{}.0/24", 150 + (port % 50), port % 250);
        std::fs::create_dir_all(cni.path().join("net.d")).unwrap();
        std::fs::write(
            cni.path().join("net.d/10-test.conflist"),
            format!(
                r#"{{"cniVersion":"0.4.0","name":"test","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"dataDir":"{}"}}}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
                cni.path().join("ipam").display()
            ),
        )
        .unwrap();
        // runc as the default runtime on both: CRI-O 1.36 writes OCI spec 1.2, which Debian
        // 12's crun (1.8.1) refuses ("unknown version specified").
        let conf = format!(
            "[crio.runtime]\ndefault_runtime = \"runc\"\n[crio.runtime.runtimes.runc]\nruntime_path = \"{}\"\n[crio.image]\npause_image = \"{pause}\"\n[crio.network]\nnetwork_dir = \"{}\"\nplugin_dirs = [\"/usr/lib/cni\"]\n",
            which::which("runc").unwrap().display(),
            cni.path().join("net.d").display()
        );
        let crio = Crio::start(&bin, version, &[&registry.addr], &conf);
        let node = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(node.path().join("var/lib/kubelet")).unwrap();
        std::fs::write(
            node.path().join("var/lib/kubelet/config.yaml"),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\n",
        )
        .unwrap();
        Some(World {
            crio,
            _registry: registry,
            node,
            cni,
            pause,
            bridge,
        })
    }

    fn verify(&self, extra: &[&str]) -> std::process::Output {
        bin()
            .arg("--root")
            .arg(self.node.path())
            .arg("--live")
            .args([
                "verify",
                "--endpoint",
                &self.crio.endpoint(),
                "--image",
                &self.pause,
                "--timeout",
                "60",
            ])
            .args(extra)
            .output()
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .output();
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn the_test_pod_passes(version: &str) {
    let _one = crio_lock();
    let Some(w) = World::new(version) else { return };
    let out = w.verify(&["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nCRI-O {version}'s log:\n{}",
        text(&out),
        w.crio.log()
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sandbox = &j["verification"]["sandbox"];
    assert_eq!(sandbox["container_state"], "CONTAINER_RUNNING", "{j}");
    assert!(
        sandbox["network"]
            .as_str()
            .is_some_and(|n| n.starts_with("pod network (CNI), address 10.")),
        "{j}"
    );
    // The log directory the check made for CRI-O is gone with the pod.
    let uid = sandbox["cgroup_parent"]
        .as_str()
        .unwrap()
        .rsplit("pod")
        .next()
        .unwrap()
        .to_string();
    let logs = format!("/var/log/pods/cri-migrate_cri-migrate-check_{uid}");
    assert!(!Path::new(&logs).exists(), "{logs} left behind");
    // Nothing of the check is left in CRI-O.
    let _ = &w.cni;
}

#[test]
#[ignore = "needs root, CRI-O 1.24.6 (CRI_MIGRATE_CRIO_124), conmon, runc, CNI plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn verify_runs_its_test_pod_on_crio_1_24() {
    the_test_pod_passes("1.24.6");
}

#[test]
#[ignore = "needs root, CRI-O 1.36.3 (CRI_MIGRATE_CRIO_136), conmon, crun, CNI plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn verify_runs_its_test_pod_on_crio_1_36() {
    the_test_pod_passes("1.36.3");
}

/// `verify` through a real cri-dockerd 0.4.3 in front of Docker 20.10 (on Debian's containerd):
/// the kubelets ≥ 1.24 still on Docker talk to it, and the check must pass there too.
#[test]
#[ignore = "needs root, cri-dockerd 0.4.3 (CRI_MIGRATE_CRI_DOCKERD), Docker 20.10, containerd, CNI plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn verify_runs_its_test_pod_through_cri_dockerd() {
    if docker_20_on_containerd_missing()
        || skip_unless(
            have("docker-registry") && have("skopeo") && have("busybox"),
            "docker-registry, skopeo or busybox-static is not installed",
        )
    {
        return;
    }
    let Some(bin) = cri_dockerd_missing() else {
        return;
    };
    let registry = Registry::start(None);
    let (pause, _) = registry.push_cmd("pause/pause", "3.9", &["pause"], Some(PAUSE_CMD));
    let cni = tempfile::tempdir().unwrap();
    let port: u32 = registry.addr.rsplit(':').next().unwrap().parse().unwrap();
    let bridge = format!("crd{port}");
    let subnet = format!("10.{}.{}.0/24", 100 + (port % 50), port % 250);
    std::fs::create_dir_all(cni.path().join("net.d")).unwrap();
    std::fs::write(
        cni.path().join("net.d/10-test.conflist"),
        format!(
            r#"{{"cniVersion":"0.4.0","name":"test","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"dataDir":"{}"}}}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
            cni.path().join("ipam").display()
        ),
    )
    .unwrap();
    let containerd = Containerd::start(
        &containerd_1().unwrap(),
        "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
        None,
    );
    let sock = cni.path().join("docker.sock");
    let dockerd = Dockerd::start(&dockerd_20().unwrap(), &containerd.socket(), &sock, false);
    let shim = CriDockerd::start(&bin, &sock, &cni.path().join("net.d"), &pause);
    let node = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(node.path().join("var/lib/kubelet")).unwrap();
    std::fs::write(
        node.path().join("var/lib/kubelet/config.yaml"),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: cgroupfs\n",
    )
    .unwrap();
    // Docker runs a pod's sandbox with dockershim's oom_score_adj of -998, which runc cannot set
    // on a machine whose bounding set lacks CAP_SYS_RESOURCE (a nested machine, as some here
    // are): there the test pod cannot run through Docker at all, and the check must say so.
    let capable = cap_sys_resource();
    let out = bin_verify(node.path(), &shim.endpoint(), &pause, !capable);
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", &bridge])
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\ncri-dockerd's log:\n{}\ndockerd's log:\n{}",
        text(&out),
        shim.log(),
        dockerd.log()
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if capable {
        assert_eq!(
            j["verification"]["sandbox"]["container_state"], "CONTAINER_RUNNING",
            "{j}"
        );
    } else {
        eprintln!("this machine lacks CAP_SYS_RESOURCE: the pull and the runtime's conditions were checked through cri-dockerd, not a pod");
        assert!(j["verification"]["pull"]["image_ref"].is_string(), "{j}");
        // With the pod asked for, the failure is read as the node's capability.
        let out = bin_verify(node.path(), &shim.endpoint(), &pause, false);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(10), "{all}");
        assert!(all.contains("CAP_SYS_RESOURCE"), "{all}");
    }
}

/// Whether this process's bounding set holds CAP_SYS_RESOURCE (bit 24 of CapBnd).
fn cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

fn bin_verify(root: &Path, endpoint: &str, image: &str, no_sandbox: bool) -> std::process::Output {
    let mut c = bin();
    c.arg("--root").arg(root).arg("--live").args([
        "verify",
        "--endpoint",
        endpoint,
        "--image",
        image,
        "--timeout",
        "60",
        "--output",
        "json",
    ]);
    if no_sandbox {
        c.arg("--no-sandbox");
    }
    c.output().unwrap()
}

/// What `crio config` prints, read back: (table, key) -> value. A value CRI-O leaves at its
/// default is printed commented out (`# cgroup_manager = "systemd"`): taken too, after the
/// uncommented ones.
fn effective(text: &str) -> std::collections::BTreeMap<(String, String), toml_edit::Value> {
    let mut set = std::collections::BTreeMap::new();
    let mut defaults = std::collections::BTreeMap::new();
    let mut table = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let assign = regex::Regex::new(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$").unwrap();
    while i < lines.len() {
        let l = lines[i].trim();
        i += 1;
        if l.starts_with('[') && l.ends_with(']') {
            table = l.trim_matches(|c| c == '[' || c == ']').replace('"', "");
            continue;
        }
        let Some(c) = assign.captures(l) else {
            continue;
        };
        let commented = c.get(1).is_some();
        let mut value = c[3].to_string();
        // A value over several lines (an array).
        while value.matches('[').count() > value.matches(']').count() && i < lines.len() {
            let next = lines[i].trim();
            value.push(' ');
            value.push_str(if commented {
                next.trim_start_matches('#').trim()
            } else {
                next
            });
            i += 1;
        }
        let Ok(doc) = format!("v = {value}").parse::<toml_edit::DocumentMut>() else {
            continue;
        };
        let Some(v) = doc.get("v").and_then(|v| v.as_value()).cloned() else {
            continue;
        };
        let key = (table.clone(), c[2].to_string());
        if commented {
            defaults.entry(key).or_insert(v);
        } else {
            set.insert(key, v);
        }
    }
    for (k, v) in defaults {
        set.entry(k).or_insert(v);
    }
    set
}

/// Every (table, key, value) a planned drop-in sets.
fn planned_values(text: &str) -> Vec<(String, String, toml_edit::Value)> {
    fn walk(t: &toml_edit::Table, at: &str, out: &mut Vec<(String, String, toml_edit::Value)>) {
        for (k, item) in t.iter() {
            match item {
                toml_edit::Item::Table(sub) => walk(
                    sub,
                    &if at.is_empty() {
                        k.to_string()
                    } else {
                        format!("{at}.{k}")
                    },
                    out,
                ),
                toml_edit::Item::Value(v) => out.push((at.to_string(), k.to_string(), v.clone())),
                _ => {}
            }
        }
    }
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let mut out = vec![];
    walk(doc.as_table(), "", &mut out);
    out
}

fn same(a: &toml_edit::Value, b: &toml_edit::Value) -> bool {
    match (a, b) {
        (toml_edit::Value::Array(x), toml_edit::Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        _ => a.to_string().trim() == b.to_string().trim(),
    }
}

/// Issue 32: every CRI-O plan of the fixture nodes, written where CRI-O reads it (the node's own
/// crio.conf and drop-ins with the planned ones), is read by `crio config` of both versions with
/// nothing refused and every planned value in effect.
#[test]
#[ignore = "needs CRI-O 1.24.6 and 1.36.3 (CRI_MIGRATE_CRIO_124, CRI_MIGRATE_CRIO_136) (cargo test -- --include-ignored)"]
fn every_crio_plan_loads_in_both_crios() {
    let crios: Vec<(String, std::path::PathBuf)> = ["1.24.6", "1.36.3"]
        .iter()
        .filter_map(|v| crio_missing(v).map(|d| (v.to_string(), d)))
        .collect();
    let mut tested = 0;
    for case in cases()
        .into_iter()
        .filter(|c| c.exit == 0 && c.args.windows(2).any(|w| w[0] == "--to" && w[1] == "crio"))
    {
        let plan = json_plan(&case, &case.node());
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("crio.conf.d");
        std::fs::create_dir_all(&conf_d).unwrap();
        let node_conf = case.node().join("etc/crio/crio.conf");
        let base = std::fs::read_to_string(&node_conf).unwrap_or_default();
        std::fs::write(
            dir.path().join("crio.conf"),
            planned(&plan, "/etc/crio/crio.conf").unwrap_or(&base),
        )
        .unwrap();
        // The directory CRI-O's unit reads (`--config-dir`): where the plan's drop-in goes.
        let node_dir = planned_crio_drop_in(&plan)
            .and_then(|(p, _)| p.rsplit_once('/'))
            .map(|(d, _)| d.to_string())
            .unwrap_or_else(|| "/etc/crio/crio.conf.d".into());
        if let Ok(rd) = std::fs::read_dir(case.node().join(node_dir.trim_start_matches('/'))) {
            for e in rd.flatten() {
                std::fs::copy(e.path(), conf_d.join(e.file_name())).unwrap();
            }
        }
        let mut dropins = vec![];
        for f in plan["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            if let Some(name) = path
                .strip_prefix(node_dir.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                std::fs::write(conf_d.join(name), f["content"].as_str().unwrap()).unwrap();
                dropins.push(f["content"].as_str().unwrap().to_string());
            }
        }
        assert!(
            !dropins.is_empty(),
            "{}: no CRI-O drop-in planned",
            case.name
        );
        for (version, bin) in &crios {
            let out = std::process::Command::new(bin.join("crio"))
                .arg("--config")
                .arg(dir.path().join("crio.conf"))
                .arg("--config-dir")
                .arg(&conf_d)
                .arg("config")
                .output()
                .unwrap();
            let printed = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{}: CRI-O {version} refused the planned config: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
            let seen = effective(&printed);
            for d in &dropins {
                for (table, key, want) in planned_values(d) {
                    let got = seen.get(&(table.clone(), key.clone()));
                    assert!(
                        got.is_some_and(|g| same(g, &want)),
                        "{}: CRI-O {version} reads [{table}] {key} as {got:?}, the plan set {want}",
                        case.name
                    );
                }
            }
            tested += 1;
        }
    }
    assert!(tested >= 4, "only {tested} CRI-O plans were loaded");
}

/// Issue 32: the registries drop-in a CRI-O plan writes, proven by pulls through real CRI-O from
/// registries on 127.0.0.1 — Docker's mirror of docker.io (a pull that only the mirror can
/// serve, and that fails without the drop-in), an insecure registry, and a registry that needs
/// the credentials of the kubelet's config.json.
fn the_registries_drop_in_pulls_through(version: &str) {
    let _one = crio_lock();
    if skip_unless(is_root(), "not root")
        || skip_unless(
            have("docker-registry") && have("skopeo") && have("htpasswd"),
            "docker-registry, skopeo or htpasswd (apache2-utils) is not installed",
        )
    {
        return;
    }
    let Some(bin) = crio_missing(version) else {
        return;
    };
    let mirror = Registry::start(None);
    let plain = Registry::start(None);
    let private = Registry::start(Some(("robot", "s3cret-pw")));
    mirror.push("library/only-on-the-mirror", "1", &["m"]);
    let (plain_ref, _) = plain.push("team/plain", "1", &["p"]);
    let (private_ref, _) = private.push("team/private", "1", &["q"]);
    let node = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        node.path(),
    );
    std::fs::write(
        node.path().join("etc/docker/daemon.json"),
        serde_json::json!({
            "exec-opts": ["native.cgroupdriver=systemd"],
            "registry-mirrors": [format!("http://{}", mirror.addr)],
            "insecure-registries": [plain.addr.clone(), private.addr.clone()],
        })
        .to_string(),
    )
    .unwrap();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret-pw");
    std::fs::write(
        node.path().join("var/lib/kubelet/config.json"),
        serde_json::json!({"auths": {private.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let plan = crio_plan(node.path(), version);
    let dropin = planned(
        &plan,
        "/etc/containers/registries.conf.d/99-cri-migrate.conf",
    )
    .expect("a registries drop-in")
    .to_string();
    let installed = std::path::PathBuf::from(format!(
        "/etc/containers/registries.conf.d/99-cri-migrate-plan-{}.conf",
        mirror.addr.replace([':', '.'], "-")
    ));
    struct Removed(std::path::PathBuf);
    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::write(&installed, &dropin).unwrap();
    let guard = Removed(installed);
    let mirrored = "docker.io/library/only-on-the-mirror:1";
    let pull =
        |crio: &Crio, image: &str| bin_verify_no_sandbox(node.path(), &crio.endpoint(), image);
    {
        let crio = Crio::start(&bin, version, &[], "");
        for image in [mirrored, plain_ref.as_str(), private_ref.as_str()] {
            let out = pull(&crio, image);
            assert_eq!(
                out.status.code(),
                Some(0),
                "CRI-O {version}, {image}: {}\n{}\nthe drop-in:\n{dropin}",
                text(&out),
                crio.log()
            );
            assert!(!text(&out).contains("s3cret-pw"));
        }
    }
    // Without the drop-in, the mirror is unknown: the same pull fails (no other way to docker.io
    // here), and on 1.36 so does the plain-HTTP registry (1.24 talks plain HTTP to a registry on
    // the loopback address by itself).
    drop(guard);
    let crio = Crio::start(&bin, version, &[], "");
    let without: Vec<&str> = if version.starts_with("1.24") {
        vec![mirrored]
    } else {
        vec![mirrored, plain_ref.as_str()]
    };
    for image in without {
        let out = pull(&crio, image);
        assert_eq!(
            out.status.code(),
            Some(10),
            "CRI-O {version}, {image} without the drop-in: {}",
            text(&out)
        );
    }
}

/// The dry run's JSON plan of a move to CRI-O of a version, for the node under `root`.
fn crio_plan(root: &Path, version: &str) -> serde_json::Value {
    let out = run_under(
        root,
        &[
            "migrate",
            "--to",
            "crio",
            "--dry-run",
            "--runtime-version",
            version,
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn bin_verify_no_sandbox(root: &Path, endpoint: &str, image: &str) -> std::process::Output {
    bin_verify(root, endpoint, image, true)
}

#[test]
#[ignore = "needs root, CRI-O 1.24.6 (CRI_MIGRATE_CRIO_124), docker-registry, skopeo and htpasswd (cargo test -- --include-ignored)"]
fn the_registries_drop_in_pulls_through_crio_1_24() {
    the_registries_drop_in_pulls_through("1.24.6");
}

#[test]
#[ignore = "needs root, CRI-O 1.36.3 (CRI_MIGRATE_CRIO_136), docker-registry, skopeo and htpasswd (cargo test -- --include-ignored)"]
fn the_registries_drop_in_pulls_through_crio_1_36() {
    the_registries_drop_in_pulls_through("1.36.3");
}

/// Docker's registry certificates stay where they are for CRI-O, as the plan says: proven on
/// CRI-O 1.36 (which takes no registry on 127.0.0.1 for insecure by itself) against a registry
/// that serves HTTPS with a CA of its own. The pull is refused without the CA; refused with it
/// in /etc/docker/certs.d/<host>/ while /etc/containers/certs.d/<host>/ exists without it (the
/// plan's warning: containers/image reads the first directory that exists); and passes with
/// Docker's directory alone (the plan's note).
fn dockers_certificates_are_read_in_place(version: &str) {
    let _one = crio_lock();
    if skip_unless(is_root(), "not root")
        || skip_unless(
            have("docker-registry") && have("skopeo") && have("openssl"),
            "docker-registry, skopeo or openssl is not installed",
        )
    {
        return;
    }
    let Some(bin) = crio_missing(version) else {
        return;
    };
    let (registry, ca) = Registry::start_tls();
    let (image, _) = registry.push("team/tls", "1", &["t"]);
    let host = registry.addr.clone();
    // The plan, for a node with Docker's CA for the registry: read in place, said.
    let node = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        node.path(),
    );
    let certs = node.path().join(format!("etc/docker/certs.d/{host}"));
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &ca).unwrap();
    let plan = crio_plan(node.path(), version);
    let said = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "certs-read-in-place")
        .unwrap_or_else(|| panic!("no certs-read-in-place: {:#}", plan["warnings"]));
    assert!(said["message"].as_str().unwrap().contains(&host));
    // The host's own directories, as CRI-O reads them (this test's port: none there before).
    let docker_dir = std::path::PathBuf::from(format!("/etc/docker/certs.d/{host}"));
    let containers_dir = std::path::PathBuf::from(format!("/etc/containers/certs.d/{host}"));
    assert!(!docker_dir.exists() && !containers_dir.exists());
    struct Removed(Vec<std::path::PathBuf>);
    impl Drop for Removed {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let _gone = Removed(vec![docker_dir.clone(), containers_dir.clone()]);
    let crio = Crio::start(&bin, version, &[], "");
    let pull = |step: &str, want: i32| {
        let out = bin_verify_no_sandbox(node.path(), &crio.endpoint(), &image);
        assert_eq!(
            out.status.code(),
            Some(want),
            "CRI-O {version}, {step}: {}\n{}",
            text(&out),
            crio.log()
        );
    };
    pull("no CA anywhere", 10);
    std::fs::create_dir_all(&docker_dir).unwrap();
    std::fs::write(docker_dir.join("ca.crt"), &ca).unwrap();
    std::fs::create_dir_all(&containers_dir).unwrap();
    pull(
        "Docker's CA, and a containers/certs.d directory for the host without it",
        10,
    );
    std::fs::remove_dir_all(&containers_dir).unwrap();
    pull("Docker's CA in /etc/docker/certs.d alone", 0);
}

#[test]
#[ignore = "needs root, CRI-O 1.36.3 (CRI_MIGRATE_CRIO_136), docker-registry, skopeo and openssl (cargo test -- --include-ignored)"]
fn dockers_certificates_are_read_in_place_by_crio_1_36() {
    dockers_certificates_are_read_in_place("1.36.3");
}
