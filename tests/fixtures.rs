//! Golden tests over the fixture nodes: each dry run's text output, exit code and error, that
//! nothing on the node changes, that the rendered files parse and hold what they must, and that
//! a migrated node plans nothing.

mod common;

use common::*;
use pretty_assertions::assert_eq;

#[test]
fn dry_runs_match_their_golden_output_and_touch_nothing() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let before = tree(&case.node());
        let out = case.run(&[]);
        assert_eq!(
            tree(&case.node()),
            before,
            "{}: the dry run changed the node",
            case.name
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        if out.status.code() != Some(case.exit) {
            failures.push(format!(
                "{}: exit {:?}, expected {}\n{stderr}",
                case.name,
                out.status.code(),
                case.exit
            ));
            continue;
        }
        if let Some(want) = &case.stderr_contains {
            if !stderr.contains(want.as_str()) {
                failures.push(format!("{}: stderr lacks {want:?}:\n{stderr}", case.name));
            }
            // One paragraph: what, which file, what to do.
            if stderr.trim_end().lines().count() != 1 || !stderr.contains("Nothing was changed.") {
                failures.push(format!(
                    "{}: error is not one paragraph ending in \"Nothing was changed.\":\n{stderr}",
                    case.name
                ));
            }
        }
        if let Some(secret) = &case.stdout_lacks {
            if stdout.contains(secret.as_str()) || stderr.contains(secret.as_str()) {
                failures.push(format!("{}: the output shows {secret:?}", case.name));
            }
        }
        let golden = case.dir.join("expected/stdout.txt");
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &stdout).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                panic!(
                    "{}: no golden {} (run with UPDATE_GOLDEN=1)",
                    case.name,
                    golden.display()
                )
            });
            if want != stdout {
                assert_eq!(
                    want,
                    stdout,
                    "{}: output differs from {}",
                    case.name,
                    golden.display()
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_same_node_always_gives_the_same_plan() {
    for case in cases().into_iter().filter(|c| c.exit == 0) {
        let a = case.run(&["--output", "json"]);
        let b = case.run(&["--output", "json"]);
        assert_eq!(
            String::from_utf8(a.stdout).unwrap(),
            String::from_utf8(b.stdout).unwrap(),
            "{}",
            case.name
        );
    }
}

#[test]
fn a_migrated_node_has_nothing_to_do() {
    for case in cases().into_iter().filter(|c| c.exit == 0) {
        let tmp = tempfile::tempdir().unwrap();
        copy_tree(&case.node(), tmp.path());
        if case.stdout_lacks.is_some() {
            // A node with a secret: the JSON plan shows it redacted, so the files are written by
            // the offline migration itself.
            let args: Vec<&str> = case
                .args
                .iter()
                .map(|a| {
                    if a == "--dry-run" {
                        "--yes"
                    } else {
                        a.as_str()
                    }
                })
                .collect();
            let out = run_under(tmp.path(), &args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                case.name,
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let plan = json_plan(&case, tmp.path());
            write_plan(&plan, tmp.path());
        }
        let again = case.run_at(tmp.path(), &[]);
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert_eq!(
            again.status.code(),
            Some(3),
            "{}: second plan is not empty:\n{stdout}\n{}",
            case.name,
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(
            stdout.starts_with("nothing to do:"),
            "{}: {stdout}",
            case.name
        );
    }
}

fn toml(text: &str, what: &str) -> toml_edit::DocumentMut {
    text.parse()
        .unwrap_or_else(|e| panic!("{what} is not valid TOML: {e}\n{text}"))
}

fn p(base: &[&'static str], rest: &[&'static str]) -> Vec<&'static str> {
    [base, rest].concat()
}

fn at<'a>(doc: &'a toml_edit::DocumentMut, path: &[&str]) -> Option<&'a toml_edit::Item> {
    path.iter().try_fold(doc.as_item(), |i, k| i.get(k))
}

#[test]
fn rendered_files_parse_and_hold_the_required_keys() {
    for case in cases().into_iter().filter(|c| c.exit == 0) {
        let plan = json_plan(&case, &case.node());
        let name = &case.name;
        let systemd = plan["settings"]["cgroup_driver"]["value"] == "systemd";
        let sandbox = plan["settings"]["sandbox_image"]["value"].as_str();
        for f in plan["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            let content = f["content"].as_str().unwrap();
            // A kubelet config drop-in (`--config-dir`) is a KubeletConfiguration, not TOML.
            let kubelet_conf = path.contains("kubelet") && path.ends_with(".conf");
            if path.ends_with(".toml")
                || path.ends_with(".conf") && !path.contains("systemd") && !kubelet_conf
            {
                toml(content, path);
            }
            if path.ends_with(".yaml") || kubelet_conf && !path.contains("systemd") {
                serde_norway::from_str::<serde_norway::Value>(content)
                    .unwrap_or_else(|e| panic!("{name}: {path}: {e}"));
            }
            assert!(
                content.is_empty() || content.ends_with('\n'),
                "{name}: {path} does not end in a newline"
            );
        }
        match plan["target"].as_str().unwrap() {
            "containerd" => {
                let doc = toml(
                    planned_containerd_config(&plan).expect("containerd's config is planned"),
                    "config.toml",
                );
                let schema = plan["config_schema"].as_i64().unwrap();
                assert_eq!(doc["version"].as_integer(), Some(schema), "{name}");
                let disabled = doc
                    .get("disabled_plugins")
                    .and_then(|d| d.as_array())
                    .map(|a| a.len())
                    .unwrap_or(0);
                assert_eq!(disabled, 0, "{name}: the CRI plugin stays disabled");
                let (rt, img) = if schema == 3 {
                    (
                        vec!["plugins", "io.containerd.cri.v1.runtime"],
                        vec!["plugins", "io.containerd.cri.v1.images"],
                    )
                } else {
                    (
                        vec!["plugins", "io.containerd.grpc.v1.cri"],
                        vec!["plugins", "io.containerd.grpc.v1.cri"],
                    )
                };
                let sc = at(
                    &doc,
                    &p(
                        &rt,
                        &["containerd", "runtimes", "runc", "options", "SystemdCgroup"],
                    ),
                )
                .and_then(|v| v.as_bool());
                assert_eq!(sc, Some(systemd), "{name}: SystemdCgroup");
                let cp = at(&doc, &p(&img, &["registry", "config_path"])).and_then(|v| v.as_str());
                assert_eq!(cp, Some("/etc/containerd/certs.d"), "{name}: config_path");
                let sb = if schema == 3 {
                    at(&doc, &p(&img, &["pinned_images", "sandbox"]))
                } else {
                    at(&doc, &p(&img, &["sandbox_image"]))
                };
                assert_eq!(
                    sb.and_then(|v| v.as_str()),
                    sandbox,
                    "{name}: sandbox image"
                );
                assert!(
                    at(&doc, &p(&rt, &["cni", "conf_dir"])).is_some(),
                    "{name}: CNI conf_dir"
                );
                assert!(
                    at(&doc, &p(&img, &["registry", "mirrors"])).is_none(),
                    "{name}: mirrors conflict with config_path"
                );
            }
            "crio" => {
                let doc = toml(
                    planned_crio_drop_in(&plan).expect("drop-in planned").1,
                    "drop-in",
                );
                let cm = at(&doc, &["crio", "runtime", "cgroup_manager"]).and_then(|v| v.as_str());
                assert_eq!(
                    cm,
                    Some(if systemd { "systemd" } else { "cgroupfs" }),
                    "{name}"
                );
                assert_eq!(
                    at(&doc, &["crio", "image", "pause_image"]).and_then(|v| v.as_str()),
                    sandbox,
                    "{name}"
                );
            }
            t => panic!("unknown target {t}"),
        }
        // The kubelet's flags must suit its version.
        let kv: Vec<u32> = plan["kubelet_version"]
            .as_str()
            .unwrap()
            .split('.')
            .map(|n| n.parse().unwrap())
            .collect();
        let kv = (kv[0], kv[1]);
        for f in plan["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            let content = f["content"].as_str().unwrap();
            if !(path.ends_with(".env")
                || path.starts_with("/etc/default/")
                || path.contains("kubelet.service"))
            {
                continue;
            }
            for gone in [
                "--network-plugin",
                "--cni-bin-dir",
                "--cni-conf-dir",
                "--docker-endpoint",
            ] {
                assert!(!content.contains(gone), "{name}: {path} still has {gone}");
            }
            if kv >= (1, 27) {
                assert!(
                    !content.contains("--container-runtime="),
                    "{name}: {path} has --container-runtime on 1.27+"
                );
            }
            if kv >= (1, 35) {
                assert!(
                    !content.contains("--pod-infra-container-image"),
                    "{name}: {path} has --pod-infra-container-image on 1.35+"
                );
            }
        }
        let endpoint = plan["endpoint"].as_str().unwrap();
        // Wherever the node keeps them: kubeadm's files, Kubespray's kubelet.env, the unit's own
        // ExecStart= (or a drop-in over a package's unit).
        let kubelet_files = |config: bool| -> String {
            plan["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| {
                    let path = f["path"].as_str().unwrap();
                    let is_config = path.ends_with(".yaml")
                        || path.ends_with(".json")
                        || path.contains("kubelet.conf.d/");
                    path.contains("kubelet") && is_config == config
                })
                .map(|f| f["content"].as_str().unwrap().to_string())
                .collect()
        };
        let (flags, config) = (kubelet_files(false), kubelet_files(true));
        if kv >= (1, 27) {
            assert!(
                config.contains(&format!("containerRuntimeEndpoint: {endpoint}")),
                "{name}: config.yaml endpoint"
            );
        } else {
            assert!(
                flags.contains(&format!("--container-runtime-endpoint={endpoint}")),
                "{name}: endpoint flag"
            );
            // Set in place: `--container-runtime docker` becomes `--container-runtime remote`.
            assert!(
                flags.contains("--container-runtime=remote")
                    || flags.contains("--container-runtime remote"),
                "{name}: --container-runtime=remote"
            );
        }
        assert!(
            planned(&plan, "/etc/crictl.yaml")
                .unwrap()
                .contains(endpoint),
            "{name}: crictl.yaml"
        );
    }
}
