//! Docker Engine: daemon.json, certs.d, and which registries have credentials (never the
//! secrets themselves).

use crate::error::Failure;
use crate::node::{join, Node};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const CERTS_D: &str = "/etc/docker/certs.d";

/// daemon.json keys cri-migrate knows what to do with; every other key is reported.
const HANDLED_KEYS: [&str; 9] = [
    "registry-mirrors",
    "insecure-registries",
    "exec-opts",
    "data-root",
    "graph",
    "storage-driver",
    "max-concurrent-downloads",
    "log-driver",
    "log-opts",
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct DockerSettings {
    pub registry_mirrors: Vec<String>,
    pub insecure_registries: Vec<String>,
    pub cgroup_driver: Option<String>,
    pub data_root: Option<String>,
    pub storage_driver: Option<String>,
    pub max_concurrent_downloads: Option<u64>,
    pub log_driver: Option<String>,
    pub log_opts: BTreeMap<String, String>,
    /// Docker already keeps its images in containerd (`features.containerd-snapshotter`).
    pub containerd_snapshotter: bool,
    /// Keys with no counterpart in a CRI runtime, with their JSON value.
    pub other: BTreeMap<String, Value>,
}

/// Certificates for one registry in `/etc/docker/certs.d/<host>/`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertDir {
    pub host: String,
    pub ca: Vec<String>,
    /// (certificate, key) pairs.
    pub client: Vec<(String, String)>,
}

/// A docker-style `config.json` and the registries it holds credentials for.
#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    pub path: String,
    pub registries: Vec<String>,
    pub helpers: Vec<String>,
    /// Whether the kubelet reads this file when it pulls (k8s pkg/credentialprovider).
    pub kubelet_reads: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Docker {
    pub daemon_json: Option<String>,
    pub settings: DockerSettings,
    pub certs: Vec<CertDir>,
}

pub fn inspect(node: &Node) -> Result<Docker> {
    let mut docker = Docker::default();
    if let Some(text) = node.read(DAEMON_JSON)? {
        docker.settings = parse_daemon_json(&text)?;
        docker.daemon_json = Some(DAEMON_JSON.to_string());
    }
    for host in node.list(CERTS_D) {
        let dir = join(CERTS_D, &host);
        if !node.is_dir(&dir) {
            continue;
        }
        let names = node.list(&dir);
        let ca = names
            .iter()
            .filter(|n| n.ends_with(".crt"))
            .map(|n| join(&dir, n))
            .collect();
        let client = names
            .iter()
            .filter_map(|n| n.strip_suffix(".cert"))
            .filter(|stem| names.contains(&format!("{stem}.key")))
            .map(|stem| {
                (
                    join(&dir, &format!("{stem}.cert")),
                    join(&dir, &format!("{stem}.key")),
                )
            })
            .collect();
        docker.certs.push(CertDir { host, ca, client });
    }
    Ok(docker)
}

pub fn parse_daemon_json(text: &str) -> Result<DockerSettings> {
    // dockerd ignores a UTF-8 byte order mark in daemon.json (Docker 23 and later: moby#44770).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bad = |problem: String| {
        Failure::bad_input(
            DAEMON_JSON,
            problem,
            "Fix the JSON (dockerd refuses to start with it too), then run cri-migrate again.",
        )
    };
    if text.trim().is_empty() {
        return Ok(DockerSettings::default());
    }
    let json: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    crate::secrets::from_json(&json);
    let obj = json
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let strings = |key: &str| -> Result<Vec<String>, Failure> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("\"{key}\" must be a list of strings")))
                })
                .collect(),
            Some(_) => Err(bad(format!("\"{key}\" must be a list of strings"))),
        }
    };
    let string = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_string);
    let cgroup_driver = strings("exec-opts")?
        .iter()
        .find_map(|o| o.strip_prefix("native.cgroupdriver=").map(str::to_string));
    let log_opts = obj
        .get("log-opts")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let containerd_snapshotter = obj
        .get("features")
        .and_then(|f| f.get("containerd-snapshotter"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let other = obj
        .iter()
        .filter(|(k, _)| !HANDLED_KEYS.contains(&k.as_str()))
        .filter(|(k, v)| {
            !(k.as_str() == "features"
                && v.as_object()
                    .is_some_and(|m| m.keys().all(|k| k == "containerd-snapshotter")))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(DockerSettings {
        registry_mirrors: strings("registry-mirrors")?,
        insecure_registries: strings("insecure-registries")?,
        cgroup_driver,
        // `graph` is data-root's name before Docker 17.05.
        data_root: string("data-root").or_else(|| string("graph")),
        storage_driver: string("storage-driver"),
        max_concurrent_downloads: obj.get("max-concurrent-downloads").and_then(Value::as_u64),
        log_driver: string("log-driver"),
        log_opts,
        containerd_snapshotter,
        other,
    })
}

/// Where docker-style credentials may be, and whether the kubelet reads each place: its root
/// directory, its working directory (`/` under systemd) and `$HOME/.docker`, which is unset
/// for a system service unless the unit sets it.
const CREDENTIAL_FILES: [(&str, bool); 5] = [
    ("/var/lib/kubelet/config.json", true),
    ("/config.json", true),
    ("/.docker/config.json", true),
    ("/root/.docker/config.json", false),
    ("/var/lib/kubelet/.dockercfg", true),
];

pub fn credentials(node: &Node) -> Result<Vec<Credentials>> {
    let mut out = Vec::new();
    for (path, kubelet_reads) in CREDENTIAL_FILES {
        let Some(text) = node.read(path)? else {
            continue;
        };
        let json: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::bad_input(
                path,
                format!("not valid JSON ({e})"),
                "Fix it: image pulls that need these credentials fail while it is broken.",
            )
        })?;
        crate::secrets::from_json(&json);
        // `.dockercfg` is the old format: the registries are the top-level keys.
        let auths = if path.ends_with(".dockercfg") {
            Some(&json)
        } else {
            json.get("auths")
        };
        let mut registries: Vec<String> = auths
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        registries.sort();
        let mut helpers: Vec<String> = json
            .get("credHelpers")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if let Some(store) = json.get("credsStore").and_then(Value::as_str) {
            helpers.push(format!("credsStore: {store}"));
        }
        out.push(Credentials {
            path: path.to_string(),
            registries,
            helpers,
            kubelet_reads,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_settings_that_matter() {
        let s = parse_daemon_json(
            r#"{"exec-opts":["native.cgroupdriver=systemd"],"registry-mirrors":["https://mirror.local"],
                "insecure-registries":["reg.local:5000","10.0.0.0/8"],"data-root":"/data/docker",
                "storage-driver":"overlay2","max-concurrent-downloads":10,"log-driver":"json-file",
                "log-opts":{"max-size":"100m","max-file":"3"},"live-restore":true}"#,
        )
        .unwrap();
        assert_eq!(s.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(s.insecure_registries.len(), 2);
        assert_eq!(s.max_concurrent_downloads, Some(10));
        assert_eq!(s.log_opts["max-size"], "100m");
        assert_eq!(s.other.keys().collect::<Vec<_>>(), ["live-restore"]);
    }

    #[test]
    fn malformed_json_is_a_bad_input() {
        let e = parse_daemon_json("{\"registry-mirrors\": [").unwrap_err();
        let f = e.downcast_ref::<Failure>().unwrap();
        assert!(matches!(f, Failure::BadInput { .. }));
        assert!(e.to_string().contains(DAEMON_JSON));
        assert!(parse_daemon_json(r#"{"registry-mirrors": "x"}"#).is_err());
    }
}
