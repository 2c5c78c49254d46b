//! Docker on containerd's image store (Docker 28 from Debian unstable with
//! `features.containerd-snapshotter`, on Debian's containerd 1.6 with CRI): `cri-migrate images`
//! shares each image from the `moby` namespace into `k8s.io` by digest and unpacks it, and the
//! kubelet's path (CRI `ImageStatus`) finds it under every name, with the registry gone. With
//! containerd's content sharing turned off ("isolated"), the same images go the export way; on
//! Docker's own store (overlay2) the export is streamed in; and CRI-O gets them with skopeo.
//! Needs root; skips loudly without Docker 28 (tests/tools/fetch-sid.sh) outside CI.

mod common;

use common::services::{self, skip_unless, Containerd, Dockerd, Registry};
use cri_migrate::cri::{Cri, GrpcCri};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Fields drop in order: Docker before the containerd it runs on.
struct Node {
    _docker: Dockerd,
    containerd: Containerd,
    root: tempfile::TempDir,
    /// Every name each image must have in k8s.io, and its layers' diff IDs.
    images: Vec<(Vec<String>, Vec<String>)>,
}

fn parts_missing() -> bool {
    skip_unless(services::is_root(), "not root")
        || skip_unless(
            services::containerd_1().is_some(),
            "containerd is not installed (apt-get install containerd)",
        )
        || skip_unless(
            services::dockerd_28().is_some(),
            "Docker 28 is not fetched (tests/tools/fetch-sid.sh docker28 usr/sbin/dockerd docker.io docker-cli)",
        )
        || skip_unless(
            services::have("docker-registry") && services::have("skopeo") && services::have("busybox"),
            "docker-registry, skopeo or busybox-static is not installed",
        )
}

/// A live node in a folder: containerd (CRI on) at run/containerd/containerd.sock, Docker 28
/// on it at var/run/docker.sock keeping its images in containerd, and images Docker pulled from
/// a registry that is stopped before the carry-over.
fn node(containerd_config: &str, containerd_store: bool) -> Node {
    node_on(
        &services::containerd_1().unwrap(),
        containerd_config,
        containerd_store,
    )
}

fn node_on(containerd: &Path, containerd_config: &str, containerd_store: bool) -> Node {
    node_with(
        Containerd::start(containerd, containerd_config, None),
        containerd_config,
        containerd_store,
    )
}

/// The node on a given containerd; its config is the node's /etc/containerd/config.toml too.
fn node_with(containerd: Containerd, containerd_config: &str, containerd_store: bool) -> Node {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/containerd")).unwrap();
    std::fs::write(
        root.path().join("etc/containerd/config.toml"),
        containerd_config,
    )
    .unwrap();
    containerd.serve_node(root.path());
    let docker = Dockerd::start(
        &services::dockerd_28().unwrap(),
        &containerd.socket(),
        &root.path().join("var/run/docker.sock"),
        containerd_store,
    );
    let info = docker.ok(&["info", "--format", "{{json .DriverStatus}}"]);
    assert_eq!(
        info.contains("io.containerd.snapshotter.v1"),
        containerd_store,
        "{info}"
    );

    let registry = Registry::start(None);
    // Several layers, a layer two images share, two tags on one, one known only by digest.
    let (app, _) = registry.push("test/app", "1", &["base", "app"]);
    let (tool, _) = registry.push("test/tool", "2", &["base", "tool"]);
    let (pinned, digest) = registry.push("test/pinned", "3", &["pinned"]);
    let pinned = format!("{}@{digest}", pinned.rsplit_once(':').unwrap().0);
    for r in [&app, &tool, &pinned] {
        docker.ok(&["pull", "--quiet", r]);
    }
    let app_too = format!("{}/test/app:also", registry.addr);
    docker.ok(&["tag", &app, &app_too]);
    // A container keeps `app` in use.
    docker.ok(&["create", "--name", "app", &app]);
    drop(registry);

    let diff_ids = |r: &str| -> Vec<String> {
        serde_json::from_str(&docker.ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            r,
        ]))
        .unwrap()
    };
    let digest_name = |r: &str| -> String {
        docker.ok(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            r,
        ])
    };
    let images = vec![
        (
            vec![app.clone(), app_too, digest_name(&app)],
            diff_ids(&app),
        ),
        (vec![tool.clone(), digest_name(&tool)], diff_ids(&tool)),
        (vec![pinned.clone()], diff_ids(&pinned)),
    ];
    Node {
        root,
        containerd,
        _docker: docker,
        images,
    }
}

fn carry(node: &Node) -> serde_json::Value {
    carry_with(node, &[])
}

fn carry_with(node: &Node, env: &[(&str, &str)]) -> serde_json::Value {
    images(node, "containerd", env, 0)
}

/// The copying way (`--copy-images`), where the default would link.
fn copy(node: &Node) -> serde_json::Value {
    images_with(node, "containerd", &["--copy-images"], &[], 0)
}

/// `cri-migrate images --to TO --images all --output json` on the node; it must exit `code`.
fn images(node: &Node, to: &str, env: &[(&str, &str)], code: i32) -> serde_json::Value {
    images_with(node, to, &[], env, code)
}

/// The same with more arguments.
fn images_with(
    node: &Node,
    to: &str,
    args: &[&str],
    env: &[(&str, &str)],
    code: i32,
) -> serde_json::Value {
    let out = common::bin()
        .envs(env.iter().copied())
        .arg("--root")
        .arg(node.root.path())
        .args([
            "--live", "images", "--to", to, "--images", "all", "--output", "json",
        ])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}\ncontainerd:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        node.containerd.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ctr(node: &Node, args: &[&str]) -> String {
    node.containerd.ctr(args)
}

/// Every name answers CRI ImageStatus, and every layer stack is unpacked in k8s.io.
fn check_carried(node: &Node) {
    let cri = GrpcCri::connect(&node.containerd.endpoint(), Duration::from_secs(10)).unwrap();
    let snapshots = ctr(node, &["snapshots", "ls"]);
    for (names, diff_ids) in &node.images {
        for name in names {
            assert!(cri.image_present(name).unwrap(), "CRI does not find {name}");
        }
        let top = cri_migrate::containerd::chain_ids(diff_ids);
        assert!(
            snapshots.contains(top.last().unwrap().as_str()),
            "{names:?} is not unpacked in k8s.io:\n{snapshots}"
        );
    }
}

/// Every image imported, each the given way.
fn all_came(report: &serde_json::Value, way: &str) {
    for (result, via, _) in results(report) {
        assert_eq!(
            (result.as_str(), via.as_str()),
            ("imported", way),
            "{report:#}"
        );
    }
}

fn results(report: &serde_json::Value) -> Vec<(String, String, bool)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["result"].as_str().unwrap().to_string(),
                i["via"].as_str().unwrap_or("").to_string(),
                i["in_use"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn docker_on_the_containerd_store_shares_its_images_into_k8s_io() {
    if parts_missing() {
        return;
    }
    let node = node("version = 2\n", true);
    let report = carry(&node);
    let mut r = results(&report);
    r.sort();
    assert_eq!(
        r,
        [
            ("imported".into(), "containerd-share".into(), false),
            ("imported".into(), "containerd-share".into(), false),
            ("imported".into(), "containerd-share".into(), true),
        ],
        "{report:#}"
    );
    check_carried(&node);
    // Shared, not copied: each blob is on disk once, however many namespaces hold it.
    let blobs = node
        .containerd
        .dir
        .path()
        .join("root/io.containerd.content.v1.content/blobs/sha256");
    let moby = node
        .containerd
        .ctr_in("moby", &["content", "ls", "-q"])
        .unwrap();
    assert_eq!(
        std::fs::read_dir(&blobs).unwrap().count(),
        String::from_utf8_lossy(&moby.stdout).lines().count(),
        "blobs on disk vs blobs in moby"
    );

    // Again: everything is there already.
    let again = results(&carry(&node));
    assert!(again.iter().all(|(r, _, _)| r == "present"), "{again:?}");
}

/// Both ways on containerd 2.1 (Docker 28's usual partner), whose content service differs.
#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn both_ways_work_on_containerd_2_too() {
    if parts_missing() || services::containerd_2_missing() {
        return;
    }
    for (store, way) in [
        (true, "containerd-share"),
        (false, "linked"),
        (false, "docker-save"),
    ] {
        let node = node_on(&services::containerd_2().unwrap(), "version = 3\n", store);
        let report = if way == "docker-save" {
            copy(&node)
        } else {
            carry(&node)
        };
        all_came(&report, way);
        check_carried(&node);
    }
}

#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn without_content_sharing_the_images_go_the_export_way() {
    if parts_missing() {
        return;
    }
    let node = node(
        "version = 2\n[plugins.\"io.containerd.metadata.v1.bolt\"]\ncontent_sharing_policy = \"isolated\"\n",
        true,
    );
    let report = carry(&node);
    all_came(&report, "docker-save");
    check_carried(&node);
}

/// Docker's own store (overlay2): the export is read into containerd as it streams, each
/// uncompressed layer unpacked on the way.
#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn dockers_own_store_is_streamed_into_k8s_io() {
    if parts_missing() {
        return;
    }
    let node = node("version = 2\n", false);
    let report = copy(&node);
    all_came(&report, "docker-save");
    check_carried(&node);
    let again = results(&copy(&node));
    assert!(again.iter().all(|(r, _, _)| r == "present"), "{again:?}");

    // A name containerd has for another image (a tag moved since): carried again, repointed.
    let (app, tool) = (&node.images[0].0, &node.images[1].0);
    ctr(&node, &["images", "tag", "--force", &tool[0], &app[0]]);
    let report = copy(&node);
    let moved: Vec<_> = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["names"][0].as_str().unwrap().to_string(),
                i["result"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(_, r)| r != "present")
        .collect();
    assert_eq!(
        moved,
        [(app[0].clone(), "imported".to_string())],
        "{report:#}"
    );
    let digest_of = |name: &str| {
        ctr(&node, &["images", "ls", &format!("name=={name}")])
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
            .unwrap()
    };
    assert_eq!(
        digest_of(&app[0]),
        digest_of(&app[1]),
        "{} was not repointed",
        app[0]
    );
    assert_ne!(digest_of(&app[0]), digest_of(&tool[0]));
}

/// Docker's own store (overlay2) beside containerd's overlayfs on one file system: the layers
/// are hard-linked into snapshots, nothing copied; a second run finds them there.
#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn dockers_own_store_is_linked_into_k8s_io() {
    if parts_missing() {
        return;
    }
    let node = node("version = 2\n", false);
    let report = carry(&node);
    all_came(&report, "linked");
    check_carried(&node);
    let again = results(&carry(&node));
    assert!(again.iter().all(|(r, _, _)| r == "present"), "{again:?}");
    // No layer blob was written: the content store holds the configs and manifests only.
    let content = ctr(&node, &["content", "ls", "-q"]);
    assert_eq!(content.lines().count(), 6, "{content}");
}

/// Where linking cannot apply, each image is copied and the report says why: containerd's CRI
/// snapshotter is not overlayfs; containerd's root is another file system than Docker's; the
/// overlayfs snapshotter is set to chown snapshots.
#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn where_links_cannot_apply_the_images_are_copied_and_the_report_says_why() {
    if parts_missing() {
        return;
    }
    let fallbacks = |report: &serde_json::Value| -> Vec<String> {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["fallback"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let native =
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nsnapshotter = \"native\"\n";
    let other = node(native, false);
    let report = carry(&other);
    all_came(&report, "docker-save");
    assert!(
        fallbacks(&report)
            .iter()
            .all(|f| f.contains("snapshotter is native, not overlayfs")),
        "{report:#}"
    );

    let config = "version = 2\n";
    let containerd = Containerd::start_on_tmpfs(&services::containerd_1().unwrap(), config);
    let apart = node_with(containerd, config, false);
    let report = carry(&apart);
    all_came(&report, "docker-save");
    assert!(
        fallbacks(&report)
            .iter()
            .all(|f| f.starts_with("linking: ") && f.contains("different file systems")),
        "{report:#}"
    );
    check_carried(&apart);
    drop(apart);

    let chown =
        "version = 2\n[plugins.\"io.containerd.snapshotter.v1.overlayfs\"]\nslow_chown = true\n";
    // containerd 1.6 does not know the setting (it warns and goes on); the node's file says it.
    let chowning = node(chown, false);
    let report = carry(&chowning);
    all_came(&report, "docker-save");
    assert!(
        fallbacks(&report).iter().all(|f| f.contains("slow_chown")),
        "{report:#}"
    );
}

/// The fallback (and escape hatch): the same export through `ctr images import`, the digests
/// named with `ctr images tag`.
/// It reaches the fallback through a test hook: it exists in builds with `--features test-hooks`.
#[cfg(feature = "test-hooks")]
#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn ctr_images_import_remains_the_fallback() {
    if parts_missing() {
        return;
    }
    let node = node("version = 2\n", false);
    let report = images_with(
        &node,
        "containerd",
        &["--copy-images"],
        &[("CRI_MIGRATE_IMPORTER", "ctr")],
        0,
    );
    all_came(&report, "ctr-import");
    check_carried(&node);
}

/// CRI-O: each image into containers-storage (a private one here) by skopeo, from Docker's
/// export in a file: Docker 28 refuses the API version skopeo's own `docker-daemon:` speaks
/// (1.22). The image known only by digest is reported, not faked.
#[test]
#[ignore = "needs root, containerd, Docker 28, docker-registry and skopeo (cargo test -- --include-ignored)"]
fn crio_gets_them_through_skopeo_from_any_docker() {
    if parts_missing() {
        return;
    }
    let node = node("version = 2\n", false);
    let store = tempfile::tempdir().unwrap();
    let conf = store.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/graph\"\n",
            store.path().display()
        ),
    )
    .unwrap();
    let env = [("CONTAINERS_STORAGE_CONF", conf.to_str().unwrap())];
    let report = images(&node, "crio", &env, 11);
    let mut r = results(&report);
    r.sort();
    assert_eq!(
        r,
        [
            ("failed".into(), "skopeo".into(), false),
            ("imported".into(), "skopeo".into(), false),
            ("imported".into(), "skopeo".into(), true),
        ],
        "{report:#}"
    );
    assert!(
        report.to_string().contains("known only by digest"),
        "{report:#}"
    );
    for name in node
        .images
        .iter()
        .flat_map(|(n, _)| n)
        .filter(|n| !n.contains('@'))
    {
        let out = Command::new("skopeo")
            .env("CONTAINERS_STORAGE_CONF", &conf)
            .args(["inspect", "--raw", &format!("containers-storage:{name}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} is not in containers-storage: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Again: the store has them, each name for this very image.
    let again = images(&node, "crio", &env, 11);
    let mut r: Vec<String> = results(&again).into_iter().map(|(r, _, _)| r).collect();
    r.sort();
    assert_eq!(r, ["failed", "present", "present"], "{again:#}");
}
