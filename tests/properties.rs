//! Property tests (proptest): no parser panics on any input — daemon.json, env files and
//! drop-ins, the kubelet's config.yaml, containerd's and CRI-O's TOML, the dpkg database — and
//! for any node built from hostile values, inspection and planning never panic, every rendered
//! file reads back, and no secret reaches the plan's output. The number of cases is bounded
//! (PROPTEST_CASES overrides it) so that CI stays quick.

mod common;

use common::*;
use cri_migrate::flags::{FileKind, VarsFile};
use cri_migrate::inspect::{self, InspectOptions};
use cri_migrate::node::Node;
use cri_migrate::plan::{self, PlanOptions, Target};
use cri_migrate::system::NoCommands;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128)
}

/// Text with the characters that break parsers: quotes, backslashes, controls, BOM, CR,
/// non-ASCII, `=`, `#`, brackets.
fn nasty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\''),
            Just('\\'),
            Just('\n'),
            Just('\r'),
            Just('\t'),
            Just('\u{0}'),
            Just('\u{7f}'),
            Just('\u{85}'),
            Just('\u{feff}'),
            Just('='),
            Just('#'),
            Just('['),
            Just(']'),
            Just('{'),
            Just('$'),
            Just('/'),
            Just('.'),
            Just(':'),
            Just(','),
            Just('é'),
            any::<char>(),
            "[a-z0-9 _-]".prop_map(|s: String| s.chars().next().unwrap_or('a')),
        ],
        0..60,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// The hostile values a node is built from.
#[derive(Debug)]
struct Hostile {
    mirror: String,
    insecure: String,
    data_root: String,
    cni: String,
    flag: String,
    containerd: String,
    crio: String,
    yaml: String,
}

fn hostile() -> impl Strategy<Value = Hostile> {
    (
        nasty(),
        nasty(),
        nasty(),
        nasty(),
        nasty(),
        nasty(),
        nasty(),
        nasty(),
    )
        .prop_map(
            |(mirror, insecure, data_root, cni, flag, containerd, crio, yaml)| Hostile {
                mirror,
                insecure,
                data_root,
                cni,
                flag,
                containerd,
                crio,
                yaml,
            },
        )
}

/// A copy of a fixture node with the hostile values in daemon.json, the kubelet's flags and
/// config, containerd's and CRI-O's configs.
/// The options of `migrate --to TARGET --runtime-version VERSION`.
fn plan_options(target: Target, version: &str) -> PlanOptions {
    PlanOptions {
        runtime_version: cri_migrate::version::Version::parse(version),
        ..PlanOptions::new(target)
    }
}

fn hostile_node(h: &Hostile) -> tempfile::TempDir {
    let Hostile {
        mirror,
        insecure,
        data_root,
        cni,
        flag,
        containerd,
        crio,
        yaml,
    } = h;
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node"),
        tmp.path(),
    );
    let w = |p: &str, s: &str| {
        let path = tmp.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, s).unwrap();
    };
    w("etc/docker/daemon.json", &serde_json::json!({
        "exec-opts": ["native.cgroupdriver=systemd"],
        "registry-mirrors": [format!("https://user:S3cretPassw0rd@{mirror}"), mirror],
        "insecure-registries": [insecure],
        "data-root": data_root,
        // Hostile runtime names, paths and options become handlers in TOML files.
        "runtimes": {
            mirror.clone(): {"path": data_root, "runtimeArgs": [insecure]},
            format!("{flag}-shim"): {"runtimeType": cni, "options": {flag.clone(): yaml, "n": null, "a": [1, {"b": flag}]}},
        },
        "default-runtime": mirror,
        "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 4096}},
        "selinux-enabled": true,
    }).to_string());
    w(
        "var/lib/kubelet/kubeadm-flags.env",
        &format!(
            "KUBELET_KUBEADM_ARGS={}\n",
            serde_json::to_string(&format!(
                "--network-plugin=cni --cni-bin-dir={cni} --node-labels={flag}"
            ))
            .unwrap()
        ),
    );
    // The hostile values inside valid documents, so that inspection gets past the syntax.
    let mut ctd = toml_edit::DocumentMut::new();
    ctd["version"] = toml_edit::value(2);
    ctd["disabled_plugins"] = toml_edit::value(toml_edit::Array::new());
    let cri = &mut ctd["plugins"]["io.containerd.grpc.v1.cri"];
    cri["sandbox_image"] = toml_edit::value(containerd.as_str());
    cri["cni"]["bin_dir"] = toml_edit::value(cni.as_str());
    cri["cni"]["conf_dir"] = toml_edit::value(containerd.as_str());
    cri["registry"]["configs"]["reg.local"]["auth"]["password"] =
        toml_edit::value("S3cretPassw0rd");
    w("etc/containerd/config.toml", &ctd.to_string());
    let mut cr = toml_edit::DocumentMut::new();
    cr["crio"]["runtime"]["cgroup_manager"] = toml_edit::value(crio.as_str());
    cr["crio"]["image"]["pause_image"] = toml_edit::value(crio.as_str());
    w("etc/crio/crio.conf.d/10-x.conf", &cr.to_string());
    let config = serde_norway::to_string(&serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "staticPodPath": yaml,
        "containerRuntimeEndpoint": yaml,
    }))
    .unwrap();
    w("var/lib/kubelet/config.yaml", &config);
    tmp
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn env_files_and_drop_ins_never_panic_and_round_trip(text in nasty()) {
        for kind in [FileKind::EnvFile, FileKind::DropIn] {
            if let Ok(f) = VarsFile::parse(kind, &text) {
                // Unchanged lines are written back byte for byte.
                prop_assert_eq!(f.render(), text.clone());
            }
        }
    }

    #[test]
    fn daemon_json_never_panics(text in nasty(), mirror in nasty(), root in nasty()) {
        let _ = inspect::docker::parse_daemon_json(&text);
        let doc = serde_json::json!({
            "registry-mirrors": [mirror],
            "insecure-registries": [mirror],
            "data-root": root,
            "exec-opts": [format!("native.cgroupdriver={root}")],
        });
        let _ = inspect::docker::parse_daemon_json(&doc.to_string());
    }

    #[test]
    fn runtime_configs_never_panic(text in nasty()) {
        let tmp = tempfile::tempdir().unwrap();
        let node = Node::new(tmp.path());
        node.write_atomic("/etc/containerd/config.toml", text.as_bytes(), 0o644, None).unwrap();
        node.write_atomic("/etc/crio/crio.conf.d/10-x.conf", text.as_bytes(), 0o644, None).unwrap();
        node.write_atomic("/var/lib/kubelet/config.yaml", text.as_bytes(), 0o644, None).unwrap();
        node.write_atomic("/var/lib/kubelet/kubeadm-flags.env", text.as_bytes(), 0o644, None).unwrap();
        let _ = inspect::inspect(&node, &NoCommands, &InspectOptions::default());
    }

    #[test]
    fn dpkg_database_never_panics(text in nasty(), version in nasty()) {
        let _ = inspect::packages::Packages::parse(&text).find(&["kubelet"]);
        let db = format!("Package: kubelet\nStatus: install ok installed\nVersion: {version}\n");
        let _ = inspect::packages::Packages::parse(&db).find(&["kubelet"]);
    }

    /// Any node built from hostile values — in daemon.json, the kubelet's flags and config,
    /// containerd's and CRI-O's configs — inspects and plans without a panic; every file the
    /// plan writes reads back in its format; a secret the node holds is never in the output.
    #[test]
    fn any_node_plans_without_panic_and_every_file_parses(
        mirror in nasty(),
        insecure in nasty(),
        data_root in nasty(),
        cni in nasty(),
        flag in nasty(),
        containerd in nasty(),
        crio in nasty(),
        yaml in nasty(),
    ) {
        let tmp = hostile_node(&Hostile { mirror, insecure, data_root, cni, flag, containerd, crio, yaml });
        let node = Node::new(tmp.path());
        let facts = match inspect::inspect(&node, &NoCommands, &InspectOptions::default()) {
            Ok(f) => f,
            // A refusal is an answer (exit 4 or 5), not a panic.
            Err(e) => {
                prop_assert!(cri_migrate::error::exit_code_of(&e) != 1 || format!("{e:#}").contains("directory"), "an unexpected error: {e:#}");
                return Ok(());
            }
        };
        for target in [Target::Containerd, Target::Crio] {
            let opts = plan_options(target, if target == Target::Crio { "1.28.0" } else { "1.6.20" });
            let Ok(plan) = plan::plan(&facts, &opts) else { continue };
            for f in &plan.files {
                if f.path.ends_with(".toml") || (f.path.ends_with(".conf") && !f.path.contains("/systemd/")) {
                    prop_assert!(f.new.parse::<toml_edit::DocumentMut>().is_ok(), "{} does not parse:\n{}", f.path, f.new);
                }
                if f.path.ends_with(".yaml") {
                    prop_assert!(serde_norway::from_str::<serde_norway::Value>(&f.new).is_ok(), "{}", f.path);
                }
            }
            let text = cri_migrate::report::plan_text(&plan, false);
            prop_assert!(!text.contains("S3cretPassw0rd"), "the secret reached the plan:\n{}", text);
            let json = serde_json::to_string(&cri_migrate::report::plan_json(&plan, &facts, true)).unwrap();
            prop_assert!(!cri_migrate::secrets::redact(&json).contains("S3cretPassw0rd"));
        }
    }
}

/// The CRI-O builds of the real-service tests (`CRI_MIGRATE_CRIO_124`, `CRI_MIGRATE_CRIO_136`,
/// else ../shared/runtimes): every one must be there.
fn crios() -> Vec<std::path::PathBuf> {
    [
        ("CRI_MIGRATE_CRIO_124", "1.24.6"),
        ("CRI_MIGRATE_CRIO_136", "1.36.3"),
    ]
    .iter()
    .map(|(var, v)| {
        let d = std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo().join(format!("../shared/runtimes/crio-{v}")));
        assert!(
            d.join("crio").exists(),
            "CRI-O {v} is not here: set {var} (ignored by a plain `cargo test`; .ci/run sets it)"
        );
        d
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases().min(48), failure_persistence: None, .. ProptestConfig::default() })]

    /// Issue 32: the CRI-O drop-in planned for any hostile node is read by `crio config` of
    /// both versions, nothing refused, the carried cgroup manager in effect.
    #[test]
    #[ignore = "needs CRI-O 1.24.6 and 1.36.3 (CRI_MIGRATE_CRIO_124, CRI_MIGRATE_CRIO_136) (cargo test -- --include-ignored)"]
    fn every_crio_plan_of_a_hostile_node_loads_in_crio(h in hostile()) {
        crio_reads_the_plan_of(&h)?;
    }
}

/// CI's first find (shrunk): a U+FFFD in a runtime's name, raw in the drop-in, made CRI-O 1.24's
/// TOML reader refuse the whole file as "invalid UTF-8".
#[test]
#[ignore = "needs CRI-O 1.24.6 and 1.36.3 (CRI_MIGRATE_CRIO_124, CRI_MIGRATE_CRIO_136) (cargo test -- --include-ignored)"]
fn a_replacement_character_in_a_runtime_name_loads_in_crio() {
    let h = Hostile {
        mirror: "\u{fffd}".into(),
        insecure: String::new(),
        data_root: String::new(),
        cni: String::new(),
        flag: "\"\\$\u{e9}=.\"=,]\u{7f}{.\0-.#".into(),
        containerd: "=\\'$\t{],".into(),
        crio: "[##\u{feff}\u{85}{\u{7f}\t\n'=]\u{fffd}".into(),
        yaml: "/{\n'\u{feff}[$\\,/$\0\r\t#]:\r[]:\u{feff}\t\r".into(),
    };
    match crio_reads_the_plan_of(&h) {
        Ok(read) => assert_eq!(read, 2, "the node planned for neither CRI-O"),
        Err(e) => panic!("{e}"),
    }
}

/// The CRI-O drop-in planned for the node `h` is read by `crio config` of both versions,
/// nothing refused, the carried cgroup manager in effect. How many versions had a plan to read
/// (a refusal to plan is an answer too).
fn crio_reads_the_plan_of(h: &Hostile) -> Result<usize, TestCaseError> {
    let tmp = hostile_node(h);
    let Ok(facts) = inspect::inspect(
        &Node::new(tmp.path()),
        &NoCommands,
        &InspectOptions::default(),
    ) else {
        return Ok(0);
    };
    let mut read = 0;
    for (dir, version) in crios().iter().zip(["1.24.6", "1.36.3"]) {
        let opts = plan_options(Target::Crio, version);
        let Ok(plan) = plan::plan(&facts, &opts) else {
            continue;
        };
        let conf = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(conf.path().join("d")).unwrap();
        std::fs::write(conf.path().join("crio.conf"), "").unwrap();
        for f in plan
            .files
            .iter()
            .filter(|f| f.path.starts_with("/etc/crio/crio.conf.d/"))
        {
            std::fs::write(
                conf.path()
                    .join("d")
                    .join(f.path.rsplit('/').next().unwrap()),
                &f.new,
            )
            .unwrap();
        }
        let out = std::process::Command::new(dir.join("crio"))
            .arg("--config")
            .arg(conf.path().join("crio.conf"))
            .arg("--config-dir")
            .arg(conf.path().join("d"))
            .arg("config")
            .output()
            .unwrap();
        let drop_in = plan
            .files
            .iter()
            .find(|f| f.path.starts_with("/etc/crio/crio.conf.d/"))
            .map(|f| f.new.clone())
            .unwrap_or_default();
        prop_assert!(
            out.status.success(),
            "CRI-O {} refused the plan:\n{}\n{}",
            version,
            String::from_utf8_lossy(&out.stderr),
            drop_in
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        prop_assert!(
            printed.contains("cgroup_manager = \"systemd\""),
            "CRI-O {} does not read the cgroup manager:\n{}",
            version,
            drop_in
        );
        read += 1;
    }
    Ok(read)
}
