//! The test pod (`verify`'s RunPodSandbox, container, removal) against a real containerd 1.6 on
//! this machine: CNI from Debian's containernetworking-plugins (bridge + host-local, a private
//! bridge and address range per test), a pause-like image in a registry on 127.0.0.1, and each
//! failure the check exists for: a CNI plugin missing from the plugin directory, a cgroup driver
//! that does not match the kubelet's, a sandbox image that cannot run.
//!
//! The runtime uses the cgroupfs driver here: this machine has no systemd as PID 1, so runc's
//! systemd driver cannot run (the systemd driver runs on the e2e node, tests/e2e/run.sh). This
//! machine's root also lacks CAP_SYS_RESOURCE, so the runtime is told not to lower a sandbox's
//! oom_score_adj below its own (`restrict_oom_score_adj`, what rootless setups use).

mod common;

use common::services::*;
use common::*;
use std::path::Path;

struct Pods {
    containerd: Containerd,
    // Kept for its lifetime: the pause image is pulled from it.
    _registry: Registry,
    node: tempfile::TempDir,
    cni: tempfile::TempDir,
    pause: String,
    bridge: String,
}

const PAUSE_CMD: &str = r#"["/bin/busybox","sleep","2147483647"]"#;

impl Pods {
    /// containerd with the kubelet's cgroup driver `kubelet_driver` and the runtime's
    /// `systemd_cgroup`; `sandbox_cmd` replaces the sandbox image's command.
    fn start(
        kubelet_driver: &str,
        systemd_cgroup: bool,
        sandbox_cmd: Option<&str>,
    ) -> Option<Pods> {
        let c1 = containerd_1();
        if skip_unless(is_root(), "not root")
            || skip_unless(
                c1.is_some(),
                "containerd is not installed (apt-get install containerd)",
            )
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
        let registry = Registry::start(None);
        let (pause, _) = registry.push_cmd(
            "pause/pause",
            "3.9",
            &["pause"],
            Some(sandbox_cmd.unwrap_or(PAUSE_CMD)),
        );
        let cni = tempfile::tempdir().unwrap();
        let certs = cni.path().join("certs.d").join(&registry.addr);
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(
            certs.join("hosts.toml"),
            format!(
                "server = \"http://{0}\"\n[host.\"http://{0}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                registry.addr
            ),
        )
        .unwrap();
        // A bridge of this test's own (the registry's port makes it unique on the machine).
        let port: u32 = registry.addr.rsplit(':').next().unwrap().parse().unwrap();
        let bridge = format!("crm{port}");
        let subnet = format!("10.{}.{}.0/24", 200 + (port % 50), port % 250);
        std::fs::create_dir_all(cni.path().join("net.d")).unwrap();
        std::fs::write(
            cni.path().join("net.d/10-test.conflist"),
            format!(
                r#"{{"cniVersion":"0.4.0","name":"test","plugins":[{{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"dataDir":"{}"}}}},{{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
                cni.path().join("ipam").display()
            ),
        )
        .unwrap();
        let config = format!(
            r#"version = 2
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "{}"
restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/usr/lib/cni"
conf_dir = "{}"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = {systemd_cgroup}
"#,
            pause,
            cni.path().join("net.d").display()
        );
        let containerd =
            Containerd::start(&c1.unwrap(), &config, Some(&cni.path().join("certs.d")));
        let node = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(node.path().join("var/lib/kubelet")).unwrap();
        std::fs::write(
            node.path().join("var/lib/kubelet/config.yaml"),
            format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: {kubelet_driver}\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\n"),
        )
        .unwrap();
        let p = Pods {
            containerd,
            _registry: registry,
            node,
            cni,
            pause,
            bridge,
        };
        p.wait_network_ready();
        Some(p)
    }

    /// containerd finds the CNI config a moment after it starts.
    fn wait_network_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let v = self.verify(&["--no-sandbox", "--output", "json"]);
            let json: serde_json::Value =
                serde_json::from_slice(&v.stdout).unwrap_or(serde_json::Value::Null);
            let ready = json["verification"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["kind"] == "NetworkReady" && c["status"] == true)
                });
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "containerd never reported NetworkReady:\n{}",
                self.containerd.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn verify(&self, extra: &[&str]) -> std::process::Output {
        bin()
            .arg("--root")
            .arg(self.node.path())
            .arg("--live")
            .args([
                "verify",
                "--endpoint",
                &self.containerd.endpoint(),
                "--image",
                &self.pause,
            ])
            .args(extra)
            .output()
            .unwrap()
    }

    fn sandboxes(&self) -> String {
        let out = self
            .containerd
            .ctr_in("k8s.io", &["containers", "ls", "-q"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Addresses host-local holds (files named by IP in its data dir).
    fn reserved_ips(&self) -> Vec<String> {
        std::fs::read_dir(self.cni.path().join("ipam/test"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn set_plugin(&self, from: &str, to: &str) {
        let f = self.cni.path().join("net.d/10-test.conflist");
        let s = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, s.replace(from, to)).unwrap();
    }
}

impl Drop for Pods {
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

#[test]
#[ignore = "needs root, containerd, containernetworking-plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_test_pod_runs_on_the_pod_network_and_leaves_nothing() {
    let Some(p) = Pods::start("cgroupfs", false, None) else {
        return;
    };
    let out = p.verify(&["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out),
        p.containerd.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["verification"]["sandbox"];
    // The pod's address, from the test's own host-local range (see Pods::start).
    let port: u32 = p.bridge.trim_start_matches("crm").parse().unwrap();
    let prefix = format!(
        "pod network (CNI), address 10.{}.{}.",
        200 + (port % 50),
        port % 250
    );
    assert!(
        s["network"].as_str().unwrap().starts_with(&prefix),
        "{s}, wanted {prefix}…"
    );
    assert_eq!(s["cgroup_driver"], "cgroupfs");
    assert!(s["cgroup_parent"]
        .as_str()
        .unwrap()
        .starts_with("/kubepods/besteffort/pod"));
    assert!(
        s["driver_checked_by"]
            .as_str()
            .unwrap()
            .contains("runc options of io.containerd.runc.v2: SystemdCgroup=false"),
        "containerd 1.6 has no RuntimeConfig; the sandbox's status tells: {s}"
    );
    assert_eq!(
        s["container_state"], "CONTAINER_RUNNING",
        "the pause-like image keeps running"
    );
    // Nothing left: no container, no sandbox, no address, no pod cgroup.
    assert_eq!(p.sandboxes(), "", "left in containerd");
    assert!(p.reserved_ips().is_empty(), "{:?}", p.reserved_ips());
    let parent = s["cgroup_parent"].as_str().unwrap().trim_start_matches('/');
    for h in ["cpu", "memory", "pids", "unified", ""] {
        let d = Path::new("/sys/fs/cgroup").join(h).join(parent);
        assert!(!d.exists(), "{} left", d.display());
    }
    // --no-sandbox: no test pod at all.
    let out = p.verify(&["--no-sandbox"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("test pod: skipped (--no-sandbox)"));
}

#[test]
#[ignore = "needs root, containerd, containernetworking-plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_missing_cni_plugin_is_named_and_its_leftover_goes_once_fixed() {
    let Some(p) = Pods::start("cgroupfs", false, None) else {
        return;
    };
    p.set_plugin("\"portmap\"", "\"no-such-plugin\"");
    // containerd reads the changed config on its own (it watches the directory).
    let mut out = p.verify(&[]);
    for _ in 0..50 {
        if text(&out).contains("no-such-plugin") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        out = p.verify(&[]);
    }
    let t = text(&out);
    assert_eq!(out.status.code(), Some(10), "{t}");
    assert!(
        t.contains("failed to find plugin \"no-such-plugin\""),
        "{t}"
    );
    assert!(
        t.contains("CNI plugin directory"),
        "the cause is named: {t}"
    );
    // containerd cannot tear down a network whose plugin is missing: the sandbox is named.
    assert!(t.contains("left in the runtime"), "{t}");
    // Fixed: the next check removes the leftover and releases its address.
    p.set_plugin("\"no-such-plugin\"", "\"portmap\"");
    let mut out = p.verify(&[]);
    for _ in 0..50 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        out = p.verify(&[]);
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(p.sandboxes(), "");
    assert!(p.reserved_ips().is_empty(), "{:?}", p.reserved_ips());
}

#[test]
#[ignore = "needs root, containerd, containernetworking-plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_cgroup_driver_mismatch_is_caught() {
    // The kubelet uses systemd, the runtime cgroupfs: the pod would start, in the wrong place.
    let Some(p) = Pods::start("systemd", false, None) else {
        return;
    };
    let out = p.verify(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(10), "{t}");
    assert!(
        t.contains("the kubelet uses the systemd cgroup driver, the runtime cgroupfs"),
        "{t}"
    );
    assert!(t.contains("SystemdCgroup"), "the fix is named: {t}");
    assert_eq!(p.sandboxes(), "");
    assert!(p.reserved_ips().is_empty());
}

#[test]
#[ignore = "needs root, containerd, containernetworking-plugins, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn a_sandbox_image_that_cannot_run_is_caught() {
    // A sandbox image whose command does not exist: pulled fine, never runs.
    let Some(p) = Pods::start("cgroupfs", false, Some(r#"["/no/such/pause"]"#)) else {
        return;
    };
    let out = p.verify(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(10), "{t}");
    assert!(t.contains("RunPodSandbox"), "{t}");
    assert!(
        t.contains("sandbox (pause) image"),
        "the cause is named: {t}"
    );
    assert_eq!(p.sandboxes(), "");
    assert!(p.reserved_ips().is_empty(), "{:?}", p.reserved_ips());
}
