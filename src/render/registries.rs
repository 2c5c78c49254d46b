//! Docker's registry settings as containerd hosts.toml files or a containers-registries.conf
//! drop-in for CRI-O (runtime-facts §2, §5).

use crate::inspect::docker::{CertDir, DockerSettings};
use serde::Serialize;
use std::collections::BTreeMap;

/// Docker Hub's registry as Docker names it, and where its pulls really go.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostEntry {
    pub url: String,
    pub capabilities: Vec<&'static str>,
    pub skip_verify: bool,
    pub ca: Vec<String>,
    pub client: Vec<(String, String)>,
}

/// One `certs.d/<host>/hosts.toml`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RegistryHost {
    pub host: String,
    pub server: String,
    pub hosts: Vec<HostEntry>,
    pub origin: String,
}

/// `https://mirror.local:5000/` -> (`https`, `mirror.local:5000`, path)
fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let rest = rest.trim_end_matches('/');
    match rest.split_once('/') {
        Some((host, path)) => (scheme, host, path),
        None => (scheme, rest, ""),
    }
}

/// Registry host names from daemon.json's insecure-registries (CIDR ranges cannot be carried).
fn insecure_hosts(settings: &DockerSettings) -> Vec<String> {
    settings
        .insecure_registries
        .iter()
        .filter(|r| !r.contains('/') || r.contains("://"))
        .map(|r| split_url(r).1.to_string())
        .collect()
}

fn certs_for<'a>(certs: &'a [CertDir], host: &str) -> Option<&'a CertDir> {
    certs.iter().find(|c| c.host == host)
}

fn entry(
    url: String,
    capabilities: Vec<&'static str>,
    skip_verify: bool,
    certs: Option<&CertDir>,
) -> HostEntry {
    HostEntry {
        url,
        capabilities,
        skip_verify,
        ca: certs.map(|c| c.ca.clone()).unwrap_or_default(),
        client: certs.map(|c| c.client.clone()).unwrap_or_default(),
    }
}

/// The hosts.toml files containerd needs for what Docker had: Docker Hub mirrors, insecure
/// registries, per-registry certificates, and mirrors moved out of an old config.toml.
pub fn containerd_hosts(
    settings: &DockerSettings,
    certs: &[CertDir],
    moved_mirrors: &[(String, Vec<String>)],
) -> Vec<RegistryHost> {
    let insecure = insecure_hosts(settings);
    let mut out: BTreeMap<String, RegistryHost> = BTreeMap::new();
    let mirror_entry = |m: &str| {
        let (scheme, host, path) = split_url(m);
        let url = if path.is_empty() {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}/{path}")
        };
        entry(
            url,
            vec!["pull", "resolve"],
            insecure.iter().any(|h| h == host),
            certs_for(certs, host),
        )
    };
    if !settings.registry_mirrors.is_empty() {
        out.insert(
            DOCKER_HUB.into(),
            RegistryHost {
                host: DOCKER_HUB.into(),
                server: DOCKER_HUB_SERVER.into(),
                hosts: settings
                    .registry_mirrors
                    .iter()
                    .map(|m| mirror_entry(m))
                    .collect(),
                origin: "/etc/docker/daemon.json registry-mirrors".into(),
            },
        );
    }
    for (host, endpoints) in moved_mirrors {
        let server = if host == DOCKER_HUB {
            DOCKER_HUB_SERVER.to_string()
        } else {
            format!("https://{host}")
        };
        let rh = out.entry(host.clone()).or_insert_with(|| RegistryHost {
            host: host.clone(),
            server,
            hosts: vec![],
            origin: "registry.mirrors in /etc/containerd/config.toml".into(),
        });
        for e in endpoints {
            let e = mirror_entry(e);
            // The upstream itself listed as a mirror is the server, not a host entry.
            if e.url != rh.server && !rh.hosts.iter().any(|h| h.url == e.url) {
                rh.hosts.push(e);
            }
        }
    }
    for host in &insecure {
        if out.contains_key(host) {
            continue;
        }
        // An http:// host with TLS settings on a port other than 80 is tried over HTTPS (without
        // verification) first, then plain HTTP: what Docker does for insecure registries.
        let url = format!("http://{host}");
        out.insert(
            host.clone(),
            RegistryHost {
                host: host.clone(),
                server: url.clone(),
                hosts: vec![entry(
                    url,
                    vec!["pull", "resolve", "push"],
                    true,
                    certs_for(certs, host),
                )],
                origin: "/etc/docker/daemon.json insecure-registries".into(),
            },
        );
    }
    for c in certs {
        if out.contains_key(&c.host) || (c.ca.is_empty() && c.client.is_empty()) {
            continue;
        }
        let url = format!("https://{}", c.host);
        out.insert(
            c.host.clone(),
            RegistryHost {
                host: c.host.clone(),
                server: url.clone(),
                hosts: vec![entry(url, vec!["pull", "resolve", "push"], false, Some(c))],
                origin: format!("/etc/docker/certs.d/{}", c.host),
            },
        );
    }
    out.into_values().collect()
}

pub fn hosts_toml(h: &RegistryHost) -> String {
    super::template("hosts.toml", h)
}

#[derive(Debug, Clone, Serialize)]
struct Mirror {
    location: String,
    insecure: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Registry {
    prefix: String,
    location: String,
    insecure: bool,
    mirrors: Vec<Mirror>,
}

/// A registries.conf.d drop-in for CRI-O, or None when Docker had nothing to carry.
pub fn crio_registries(settings: &DockerSettings) -> Option<String> {
    let insecure = insecure_hosts(settings);
    let mut regs = Vec::new();
    if !settings.registry_mirrors.is_empty() {
        regs.push(Registry {
            prefix: DOCKER_HUB.into(),
            location: DOCKER_HUB.into(),
            insecure: false,
            mirrors: settings
                .registry_mirrors
                .iter()
                .map(|m| {
                    let (scheme, host, path) = split_url(m);
                    Mirror {
                        location: if path.is_empty() {
                            host.to_string()
                        } else {
                            format!("{host}/{path}")
                        },
                        insecure: scheme == "http" || insecure.iter().any(|h| h == host),
                    }
                })
                .collect(),
        });
    }
    for host in insecure.iter().filter(|h| *h != DOCKER_HUB) {
        regs.push(Registry {
            prefix: host.clone(),
            location: host.clone(),
            insecure: true,
            mirrors: vec![],
        });
    }
    (!regs.is_empty())
        .then(|| super::template("registries.conf", serde_json::json!({ "registries": regs })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> DockerSettings {
        DockerSettings {
            registry_mirrors: vec![
                "https://mirror.local:5000/".into(),
                "http://10.1.2.3:5001".into(),
            ],
            insecure_registries: vec![
                "10.1.2.3:5001".into(),
                "reg.local:5000".into(),
                "10.0.0.0/8".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn mirrors_and_insecure_registries_become_hosts_files() {
        let certs = vec![CertDir {
            host: "secure.local".into(),
            ca: vec!["/etc/docker/certs.d/secure.local/ca.crt".into()],
            client: vec![],
        }];
        let hosts = containerd_hosts(&settings(), &certs, &[]);
        let names: Vec<&str> = hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(
            names,
            [
                "10.1.2.3:5001",
                "docker.io",
                "reg.local:5000",
                "secure.local"
            ]
        );
        let hub = &hosts[1];
        assert_eq!(hub.server, "https://registry-1.docker.io");
        assert_eq!(hub.hosts[0].url, "https://mirror.local:5000");
        assert!(!hub.hosts[0].skip_verify);
        assert!(
            hub.hosts[1].skip_verify,
            "an insecure mirror skips verification"
        );
        let text = hosts_toml(&hosts[2]);
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(doc["server"].as_str(), Some("http://reg.local:5000"));
        assert_eq!(
            doc["host"]["http://reg.local:5000"]["skip_verify"].as_bool(),
            Some(true)
        );
        let secure: toml_edit::DocumentMut = hosts_toml(&hosts[3]).parse().unwrap();
        assert_eq!(
            secure["host"]["https://secure.local"]["ca"].as_str(),
            Some("/etc/docker/certs.d/secure.local/ca.crt")
        );
    }

    #[test]
    fn crio_drop_in_lists_mirrors_without_schemes() {
        let text = crio_registries(&settings()).unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        let regs = doc["registry"].as_array_of_tables().unwrap();
        assert_eq!(regs.len(), 3);
        let hub = regs.get(0).unwrap();
        let mirrors = hub["mirror"].as_array_of_tables().unwrap();
        assert_eq!(
            mirrors.get(0).unwrap()["location"].as_str(),
            Some("mirror.local:5000")
        );
        assert_eq!(mirrors.get(1).unwrap()["insecure"].as_bool(), Some(true));
        assert!(crio_registries(&DockerSettings::default()).is_none());
    }
}
