//! `cri-migrate verify` against a real containerd, configured by what cri-migrate renders, and
//! real registries on 127.0.0.1 (Debian's docker-registry) holding images the test builds:
//! a plain pull, a pull that needs the kubelet's credentials, pulls that must fail.

mod common;

use common::services::World;
use common::*;

/// The pulls only: the World's containerd uses the systemd cgroup driver, and this machine has
/// no systemd as PID 1 (the test pod is tested in tests/sandbox_real.rs and on the e2e node).
fn verify(w: &World, root: &std::path::Path, image: &str, json: bool) -> std::process::Output {
    let mut c = bin();
    // --live: the node folder stands for the running system (verify connects to nothing under a
    // plain --root).
    c.arg("--root").arg(root).arg("--live").args([
        "verify",
        "--no-sandbox",
        "--endpoint",
        &w.containerd.endpoint(),
        "--image",
        image,
    ]);
    if json {
        c.args(["--output", "json"]);
    }
    c.output().unwrap()
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn verify_pulls_through_cri_as_the_kubelet_would() {
    let Some(w) = World::new() else { return };

    // A plain pull through the hosts.toml cri-migrate wrote for the insecure registry.
    let out = verify(&w, w.node.path(), &w.image, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        w.containerd.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &v["verification"];
    assert_eq!(v["version"]["runtime_name"], "containerd");
    assert_eq!(
        v["digest"],
        w.digest.as_str(),
        "the resolved digest is reported"
    );
    assert!(v["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "RuntimeReady" && c["status"] == true));
    assert!(v["pull"]["credential"].is_null());

    // The text report names the digest too.
    let out = verify(&w, w.node.path(), &w.image, false);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&w.digest));

    // Pinned by digest: it must match.
    let pinned = format!("{}@{}", w.image.rsplit_once(':').unwrap().0, w.digest);
    assert_eq!(
        verify(&w, w.node.path(), &pinned, false).status.code(),
        Some(0)
    );
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn verify_sends_the_kubelets_credentials() {
    let Some(w) = World::new() else { return };
    let out = verify(&w, w.node.path(), &w.private_image, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "with the kubelet's credentials for {}",
            w.private.addr
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret") && !stdout.contains("cm9ib3Q6czNjcmV0"));

    // Without the kubelet's config.json the same pull is refused by the registry.
    std::fs::remove_file(w.node.path().join("var/lib/kubelet/config.json")).unwrap();
    let out = verify(&w, w.node.path(), &w.private_image, false);
    assert_eq!(out.status.code(), Some(10));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("401") || err.contains("authorization"),
        "{err}"
    );
}

#[test]
#[ignore = "needs root, containerd, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn failed_pulls_are_reported_clearly() {
    let Some(w) = World::new() else { return };
    let missing = format!("{}/test/no-such-image:1", w.registry.addr);
    let out = verify(&w, w.node.path(), &missing, true);
    assert_eq!(out.status.code(), Some(10));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["result"], "verify-failed");
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&missing) && msg.contains("PullImage"), "{msg}");
    assert!(msg.contains("not found"), "{msg}");

    // A digest that is not what the registry serves.
    let wrong = format!(
        "{}@sha256:{}",
        w.image.rsplit_once(':').unwrap().0,
        "0".repeat(64)
    );
    assert_eq!(
        verify(&w, w.node.path(), &wrong, false).status.code(),
        Some(10)
    );

    // No runtime at all.
    let out = bin()
        .args([
            "verify",
            "--endpoint",
            "unix:///nonexistent/cri.sock",
            "--image",
            "x",
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cri.sock"));
}
