//! Schema 1 images held by Docker, told on real parts: Debian 12's Docker 20.10 on a real
//! containerd (1.6, and 2.1 from Debian unstable; its `moby` namespace), a docker-registry that
//! still serves schema 1 manifests (skopeo `--format v2s1` puts one there), then the registry
//! gone, as on an air-gapped node. Three pulls: one from a schema 1 manifest, one from schema
//! 2, and one whose lease and kept manifest are taken away, as a pull by Docker before 20.10
//! left it. `inspect --live` must call them schema 1, schema 2 and unknown; the dry run onto
//! containerd 2.1 warns of the first only, onto 1.7 not at all. An offline inspection of a copy
//! of the node with containerd's content store only calls nothing schema 1 and still knows
//! schema 2 from the kept manifest; with containerd's `meta.db` too, its leases read from the
//! file tell as the API did.
//! Needs root; fails loudly without its parts under `--include-ignored`.

mod common;

use common::services::{self, skip_unless, Containerd, Dockerd, Registry};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn parts_missing() -> bool {
    services::docker_20_on_containerd_missing()
        || skip_unless(
            services::have("docker-registry")
                && services::have("skopeo")
                && services::have("busybox")
                && services::have("ctr"),
            "docker-registry, skopeo, busybox-static or ctr is not installed",
        )
}

/// A one-layer image in Docker (`docker import` of busybox and a file named `name`), pushed to
/// the registry as `base/NAME:1` (schema 2, as Docker 20.10 pushes), then removed from Docker.
fn push_base(docker: &Dockerd, registry: &Registry, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(which::which("busybox").unwrap(), rootfs.join("bin/busybox")).unwrap();
    std::fs::write(rootfs.join(name), name).unwrap();
    let tar = dir.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let base = format!("{}/base/{name}:1", registry.addr);
    docker.ok(&[
        "import",
        "--change",
        "CMD [\"/bin/busybox\",\"sh\"]",
        tar.to_str().unwrap(),
        &base,
    ]);
    docker.ok(&["push", &base]);
    docker.ok(&["rmi", &base]);
    base
}

fn cli(root: &Path, args: &[&str]) -> Value {
    let out = common::bin()
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cri-migrate {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (a, b) of each object in a JSON array: (reference, schema) of the pulled images, (code,
/// message) of findings.
fn pairs(array: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    array
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o[a].as_str().unwrap().to_string(),
                o[b].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn schemas(facts: &Value) -> BTreeMap<String, String> {
    pairs(&facts["docker_manifests"]["pulled"], "reference", "schema")
        .into_iter()
        .collect()
}

fn codes(findings: &Value) -> Vec<(String, String)> {
    pairs(findings, "code", "message")
}

#[test]
#[ignore = "needs root, containerd, Docker 20.10, docker-registry, skopeo and busybox-static (cargo test -- --include-ignored)"]
fn schema_1_pulls_are_told_on_containerd_1() {
    if parts_missing() {
        return;
    }
    told(&services::containerd_1().unwrap(), "version = 2\n");
}

#[test]
#[ignore = "needs root, containerd 2.x, Docker 20.10, docker-registry, skopeo and busybox-static (cargo test -- --include-ignored)"]
fn schema_1_pulls_are_told_on_containerd_2() {
    if parts_missing() || services::containerd_2_missing() {
        return;
    }
    told(&services::containerd_2().unwrap(), "version = 3\n");
}

/// Docker 20.10 on this containerd pulls the three images; each is told live, then offline.
fn told(containerd: &Path, config: &str) {
    let node = tempfile::Builder::new()
        .prefix("cri-migrate-node")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = node.path();
    common::copy_tree(
        &common::repo().join("examples/nodes/kubelet-1.28-cri-dockerd"),
        root,
    );
    let containerd = Containerd::start(containerd, config, None);
    containerd.serve_node(root);
    let docker = Dockerd::start_in(
        &services::dockerd_20().unwrap(),
        &containerd.socket(),
        &root.join("var/run/docker.sock"),
        false,
        Some(&root.join("var/lib/docker")),
    );
    let registry = Registry::start_schema1();

    let old = push_base(&docker, &registry, "old");
    let new = push_base(&docker, &registry, "new");
    let pre = push_base(&docker, &registry, "pre");
    let old1 = registry.put_schema1(&format!("docker://{old}"), "s1/old:1");
    for r in [&old1, &new, &pre] {
        docker.ok(&["pull", "--quiet", r]);
    }
    // `pre`, as Docker before 20.10 left it: no lease on its image, no manifest kept.
    let pre_id = docker.ok(&["image", "inspect", "--format", "{{.Id}}", &pre]);
    let pre_digest = docker.ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &pre,
    ]);
    let pre_digest = pre_digest.split_once('@').unwrap().1.to_string();
    // The manifest's record first, then the lease with a synchronous garbage collection: the
    // blob leaves the disk too (else it would still tell its kind, rightly).
    for args in [
        vec!["content", "rm", pre_digest.as_str()],
        vec![
            "leases",
            "delete",
            "--sync",
            &format!("moby-image-{pre_id}"),
        ],
    ] {
        let out = containerd.ctr_in("moby", &args).unwrap();
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let blob = containerd
        .dir
        .path()
        .join("root/io.containerd.content.v1.content/blobs/sha256")
        .join(pre_digest.trim_start_matches("sha256:"));
    assert!(
        !blob.exists(),
        "{} outlived the garbage collection",
        blob.display()
    );
    drop(registry); // air-gapped from here

    let digest_of = |r: &str| {
        let d = docker.ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            r,
        ]);
        assert!(d.contains('@'), "{r} has no repo digest: {d}");
        d
    };
    let (old_ref, new_ref, pre_ref) = (digest_of(&old1), digest_of(&new), digest_of(&pre));

    // Docker's containerd gives the kept manifest, and nothing (not an error) for the others.
    let client = cri_migrate::containerd::Containerd::connect(&containerd.socket()).unwrap();
    let blob = |r: &str| client.blob("moby", r.split_once('@').unwrap().1).unwrap();
    let kept: Value = serde_json::from_slice(&blob(&new_ref).expect("no kept manifest")).unwrap();
    assert_eq!(kept["schemaVersion"], 2, "{kept}");
    assert!(blob(&pre_ref).is_none() && blob(&old_ref).is_none());
    drop(client);

    // Live: leases read through Docker's containerd.
    let facts = &cli(root, &["--live", "inspect", "--output", "json"])["facts"];
    let got = schemas(facts);
    assert_eq!(
        got,
        BTreeMap::from([
            (old_ref.clone(), "schema1".to_string()),
            (new_ref.clone(), "schema2".to_string()),
            (pre_ref.clone(), "unknown".to_string()),
        ]),
        "{:#}",
        facts["docker_manifests"]
    );
    let old_entry = facts["docker_manifests"]["pulled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["reference"] == old_ref.as_str())
        .unwrap();
    assert_eq!(old_entry["tags"][0], old1.as_str());
    let risks = codes(&facts["risks"]);
    let schema1: Vec<&(String, String)> = risks
        .iter()
        .filter(|(c, _)| c == "schema1-images")
        .collect();
    assert_eq!(schema1.len(), 1, "{risks:?}");
    assert!(
        schema1[0].1.contains(&old_ref) && !schema1[0].1.contains(&new_ref),
        "{}",
        schema1[0].1
    );
    assert!(
        risks
            .iter()
            .any(|(c, m)| c == "image-schema-unknown" && m.contains(&pre_ref)),
        "{risks:?}"
    );

    // The text report counts them.
    let text = common::bin()
        .arg("--root")
        .arg(root)
        .args(["--live", "inspect"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("3 repo digest(s): 1 schema 2 or OCI, 1 schema 1, 1 unknown"),
        "{text}"
    );

    // The dry run onto containerd 2.1 warns of the schema 1 image; onto 1.7 it says nothing.
    let plan = |version: &str| {
        cli(
            root,
            &[
                "--live",
                "migrate",
                "--dry-run",
                "--to",
                "containerd",
                "--runtime-version",
                version,
                "--images",
                "none",
                "--output",
                "json",
            ],
        )
    };
    let warnings = codes(&plan("2.1.4")["warnings"]);
    let w = warnings
        .iter()
        .find(|(c, _)| c == "schema1-images")
        .expect("no schema1-images warning");
    assert!(
        w.1.contains(&old_ref) && w.1.contains("containerd 2.1"),
        "{}",
        w.1
    );
    let on_17 = codes(&plan("1.7.27")["warnings"]);
    assert!(
        !on_17.iter().any(|(c, _)| c == "schema1-images"),
        "{on_17:?}"
    );

    // Offline, a copy of the node. First with containerd's content store only (copied into
    // the node's /var/lib/containerd): no leases, so nothing is called schema 1, and the kept
    // manifest still tells schema 2.
    let copy = tempfile::Builder::new()
        .prefix("cri-migrate-node")
        .tempdir_in("/var/tmp")
        .unwrap();
    for dir in [
        "etc",
        "lib",
        "usr",
        "var/lib/dpkg",
        "var/lib/kubelet",
        "opt",
    ] {
        if root.join(dir).exists() {
            common::copy_tree(&root.join(dir), &copy.path().join(dir));
        }
    }
    let cp = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success(), "cp {} {}", from.display(), to.display());
    };
    cp(
        &root.join("var/lib/docker/image/overlay2"),
        &copy.path().join("var/lib/docker/image"),
    );
    let ctd_root = containerd.dir.path().join("root");
    let node_ctd = copy.path().join("var/lib/containerd");
    cp(
        &ctd_root.join("io.containerd.content.v1.content"),
        &node_ctd,
    );
    let facts = &cli(copy.path(), &["inspect", "--output", "json"])["facts"];
    assert_eq!(
        schemas(facts),
        BTreeMap::from([
            (old_ref.clone(), "unknown".to_string()),
            (new_ref.clone(), "schema2".to_string()),
            (pre_ref.clone(), "unknown".to_string()),
        ])
    );
    let leases = facts["docker_manifests"]["leases"].as_str().unwrap();
    assert!(
        leases.contains("offline") && leases.contains("meta.db"),
        "{leases}"
    );

    // Then with containerd's metadata (meta.db, copied as containerd left it after the pulls):
    // its leases, read from the file, tell as the live node's API did.
    cp(&ctd_root.join("io.containerd.metadata.v1.bolt"), &node_ctd);
    let facts = &cli(copy.path(), &["inspect", "--output", "json"])["facts"];
    assert_eq!(
        schemas(facts),
        BTreeMap::from([
            (old_ref, "schema1".to_string()),
            (new_ref, "schema2".to_string()),
            (pre_ref, "unknown".to_string()),
        ]),
        "{:#}",
        facts["docker_manifests"]
    );
    let leases = facts["docker_manifests"]["leases"].as_str().unwrap();
    assert!(leases.contains("on disk"), "{leases}");
}
