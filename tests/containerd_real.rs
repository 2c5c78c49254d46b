//! Every containerd config that cri-migrate renders for a fixture node must load in a real
//! containerd with the CRI plugin enabled: schema 2 in Debian 12's containerd 1.6, schema 3 in
//! containerd 2.1 (from Debian unstable, fetched by tests/tools/fetch-sid.sh).
//!
//! Each containerd runs as a child process with a private root, state dir and socket. The test
//! needs root. Outside CI a missing binary or root skips it loudly; under CI=true it fails.

mod common;

use common::services::{containerd_1, containerd_2, is_root, skip_unless, Containerd};
use common::*;
use cri_migrate::inspect::runtimes::strings;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `ctr plugins ls` beside the daemon binary: (type, id) -> status.
fn plugins(bin: &Path, d: &Containerd) -> Vec<(String, String, String)> {
    let ctr = bin.with_file_name("ctr");
    let ctr = if ctr.exists() {
        ctr
    } else {
        which::which("ctr").unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(&ctr)
            .arg("--address")
            .arg(d.socket())
            .args(["plugins", "ls"])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout)
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w.len() >= 4).then(|| {
                        (
                            w[0].to_string(),
                            w[1].to_string(),
                            w[w.len() - 1].to_string(),
                        )
                    })
                })
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "ctr plugins ls failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The CRI plugins a schema needs, all "ok".
fn assert_cri_ok(bin: &Path, d: &Containerd, schema: i64, what: &str) {
    let list = plugins(bin, d);
    let need: &[(&str, &str)] = if schema == 3 {
        &[
            ("io.containerd.cri.v1", "images"),
            ("io.containerd.cri.v1", "runtime"),
            ("io.containerd.grpc.v1", "cri"),
        ]
    } else {
        &[("io.containerd.grpc.v1", "cri")]
    };
    for (ty, id) in need {
        let status = list
            .iter()
            .find(|(t, i, _)| t == ty && i == id)
            .map(|p| p.2.as_str());
        assert_eq!(
            status,
            Some("ok"),
            "{what}: plugin {ty}.{id} is {status:?}\n{}",
            d.log()
        );
    }
}

/// `containerd config dump`: the configuration as containerd understood it.
fn dump(bin: &Path, config: &str) -> toml_edit::DocumentMut {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        common::services::private_config(config, dir.path(), None),
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&path)
        .args(["config", "dump"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "config dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

fn get<'a>(doc: &'a toml_edit::DocumentMut, path: &[&str]) -> Option<&'a toml_edit::Item> {
    path.iter().try_fold(doc.as_item(), |i, k| i.get(k))
}

#[test]
#[ignore = "needs root, containerd 1.x and 2.x (cargo test -- --include-ignored)"]
fn rendered_configs_load_in_real_containerd_with_cri() {
    let (c1, c2) = (containerd_1(), containerd_2());
    if skip_unless(is_root(), "not root")
        || skip_unless(c1.is_some() && c2.is_some(), "containerd 1.x (apt-get install containerd) or 2.x (tests/tools/fetch-sid.sh) is missing")
    {
        return;
    }
    let (c1, c2) = (c1.unwrap(), c2.unwrap());
    eprintln!(
        "schema 2 against {}\nschema 3 against {}",
        version_of(&c1),
        version_of(&c2)
    );
    let mut tested = [0, 0];
    let mut kept_v2 = 0;
    for case in cases()
        .into_iter()
        .filter(|c| c.exit == 0 && c.args.contains(&"containerd".to_string()))
    {
        let plan = json_plan(&case, &case.node());
        let config = planned_containerd_config(&plan).unwrap();
        // The base spec the plan writes beside the config (Docker's default-ulimits): containerd
        // refuses to load CRI without it, so it is written and the config pointed at it.
        let spec_dir = tempfile::tempdir().unwrap();
        let spec = planned(&plan, "/etc/containerd/base-runtime-spec.json");
        let config_text = match spec {
            Some(spec) => {
                let p = spec_dir.path().join("base-runtime-spec.json");
                std::fs::write(&p, spec).unwrap();
                config.replace(
                    "\"/etc/containerd/base-runtime-spec.json\"",
                    &format!("{:?}", p.display().to_string()),
                )
            }
            None => config.to_string(),
        };
        let config = config_text.as_str();
        // The layout containerd reads it into: 2.x migrates a version 2 file to 3 at load.
        let two = plan["runtime_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2."));
        let schema = if two { 3 } else { 2 };
        let bin = if two { &c2 } else { &c1 };
        let d = Containerd::start(bin, config, None);
        assert_cri_ok(bin, &d, schema, &case.name);
        drop(d);

        // What containerd made of it: the settings cri-migrate carried over.
        let doc = dump(bin, config);
        let systemd = plan["settings"]["cgroup_driver"]["value"] == "systemd";
        let sandbox = plan["settings"]["sandbox_image"]["value"].as_str();
        let (rt, img, sb): (Vec<&str>, Vec<&str>, Vec<&str>) = if schema == 3 {
            (
                vec!["plugins", "io.containerd.cri.v1.runtime"],
                vec!["plugins", "io.containerd.cri.v1.images"],
                vec![
                    "plugins",
                    "io.containerd.cri.v1.images",
                    "pinned_images",
                    "sandbox",
                ],
            )
        } else {
            (
                vec!["plugins", "io.containerd.grpc.v1.cri"],
                vec!["plugins", "io.containerd.grpc.v1.cri"],
                vec!["plugins", "io.containerd.grpc.v1.cri", "sandbox_image"],
            )
        };
        let sc = get(
            &doc,
            &[
                &rt[..],
                &["containerd", "runtimes", "runc", "options", "SystemdCgroup"],
            ]
            .concat(),
        )
        .and_then(|v| v.as_bool());
        assert_eq!(
            sc,
            Some(systemd),
            "{}: SystemdCgroup as containerd reads it",
            case.name
        );
        // Docker's runtimes as containerd reads them: each handler, its runtime type, the
        // default; and the base spec on runc where Docker had default ulimits.
        for h in plan["settings"]["handlers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = h["name"].as_str().unwrap();
            let ty = get(
                &doc,
                &[&rt[..], &["containerd", "runtimes", name, "runtime_type"]].concat(),
            )
            .and_then(|v| v.as_str());
            assert_eq!(
                ty,
                h["runtime_type"].as_str(),
                "{}: handler {name}",
                case.name
            );
        }
        if let Some(d) = plan["settings"]["default_handler"]["value"].as_str() {
            let got = get(
                &doc,
                &[&rt[..], &["containerd", "default_runtime_name"]].concat(),
            )
            .and_then(|v| v.as_str());
            assert_eq!(got, Some(d), "{}: default_runtime_name", case.name);
        }
        if spec.is_some() {
            let got = get(
                &doc,
                &[
                    &rt[..],
                    &["containerd", "runtimes", "runc", "base_runtime_spec"],
                ]
                .concat(),
            )
            .and_then(|v| v.as_str());
            assert!(
                got.is_some_and(|p| p.ends_with("base-runtime-spec.json")),
                "{}: base_runtime_spec {got:?}",
                case.name
            );
        }
        let cp =
            get(&doc, &[&img[..], &["registry", "config_path"]].concat()).and_then(|v| v.as_str());
        assert_eq!(
            cp,
            Some("/etc/containerd/certs.d"),
            "{}: config_path as containerd reads it",
            case.name
        );
        // CNI directories: ours, not the runtime's default (Debian's 2.1 defaults bin_dirs to
        // ['/usr/lib/cni', '/opt/cni/bin'], 1.6 to bin_dir '/opt/cni/bin').
        let want_bins: Vec<&str> = plan["settings"]["cni_bin_dirs"]["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let cni = get(&doc, &[&rt[..], &["cni"]].concat()).unwrap();
        if schema == 3 {
            // Every 2.x fixture targets 2.1, which takes a list (bin_dirs), also in a version 2
            // file kept as it was.
            assert_eq!(
                strings(cni.get("bin_dirs")),
                want_bins,
                "{}: CNI plugin dirs as containerd reads them",
                case.name
            );
        } else {
            assert_eq!(
                cni.get("bin_dir").and_then(|v| v.as_str()),
                Some(want_bins[0]),
                "{}: CNI plugin dir as containerd reads it",
                case.name
            );
        }
        assert_eq!(
            cni.get("conf_dir").and_then(|v| v.as_str()),
            plan["settings"]["cni_conf_dir"]["value"].as_str(),
            "{}: CNI conf dir",
            case.name
        );
        if let Some(s) = sandbox {
            assert_eq!(
                get(&doc, &sb).and_then(|v| v.as_str()),
                Some(s),
                "{}: sandbox image as containerd reads it",
                case.name
            );
        }
        tested[(schema - 2) as usize] += 1;
        if plan["config_schema"] == 2 && two {
            kept_v2 += 1;
        }
    }
    assert!(
        kept_v2 >= 1,
        "no version 2 file kept for containerd 2.x was loaded"
    );
    assert!(
        tested[0] >= 3 && tested[1] >= 2,
        "too few configs tested: {tested:?}"
    );
}

/// The control: Docker's containerd.io file as found has no CRI, so the check above can fail.
#[test]
#[ignore = "needs root and containerd (cargo test -- --include-ignored)"]
fn dockers_own_config_has_no_cri() {
    let c1 = containerd_1();
    if skip_unless(is_root(), "not root") || skip_unless(c1.is_some(), "containerd 1.x is missing")
    {
        return;
    }
    let c1 = c1.unwrap();
    let found = std::fs::read_to_string(
        repo().join("tests/fixtures/nodes/kubeadm-1.20-docker/node/etc/containerd/config.toml"),
    )
    .unwrap();
    let d = Containerd::start(&c1, &found, None);
    let list = plugins(&c1, &d);
    let cri = list
        .iter()
        .find(|(t, i, _)| t == "io.containerd.grpc.v1" && i == "cri");
    assert!(
        cri.is_none_or(|p| p.2 != "ok"),
        "CRI should be disabled in Docker's file: {cri:?}"
    );
}
