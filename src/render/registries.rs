//! Docker's registry settings as containerd hosts.toml files or a containers-registries.conf
//! drop-in for CRI-O (runtime-facts §2, §5).

use crate::inspect::docker::{CertDir, DockerSettings};
use crate::names::{RegistryName, RegistryUrl};
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
    pub host: RegistryName,
    pub server: String,
    pub hosts: Vec<HostEntry>,
    pub origin: String,
}

/// What the registry settings become, and what could not be carried (each a warning that names
/// the value and why).
#[derive(Debug, Default)]
pub struct WithSkipped<T> {
    pub value: T,
    pub skipped: Vec<String>,
}

/// The registries Docker treats as insecure, by name: each entry of daemon.json's
/// insecure-registries that is a host (with or without a scheme); CIDR ranges cannot be carried
/// (containerd and CRI-O name hosts), names that are not names are skipped with a warning.
fn insecure_hosts(settings: &DockerSettings, skipped: &mut Vec<String>) -> Vec<RegistryName> {
    let mut out = Vec::new();
    for r in &settings.insecure_registries {
        if r.contains('/') && !r.contains("://") && is_cidr(r) {
            continue;
        }
        let parsed = if r.contains("://") {
            RegistryUrl::parse(r).map(|u| u.host)
        } else {
            RegistryName::parse(r)
        };
        match parsed {
            Ok(h) if !out.contains(&h) => out.push(h),
            Ok(_) => {}
            Err(e) => skipped.push(format!(
                "{}: {e}; skipped",
                settings.source("insecure-registries")
            )),
        }
    }
    out
}

/// `10.0.0.0/8`, `fd00::/8`: a range, which no runtime takes.
fn is_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
    })
}

fn certs_for<'a>(certs: &'a [CertDir], host: &RegistryName) -> Option<&'a CertDir> {
    certs.iter().find(|c| c.host == host.as_str())
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

/// A mirror URL checked, its credentials (never carried) said.
fn mirror_url(m: &str, origin: &str, skipped: &mut Vec<String>) -> Option<RegistryUrl> {
    match RegistryUrl::parse(m) {
        Ok(u) => {
            if u.had_credentials {
                skipped.push(format!(
                    "the mirror {} in {origin} has credentials in its URL; they are not carried (a hosts.toml takes no credentials): give them to the kubelet (a config.json, or a credential provider) instead",
                    u.url()
                ));
            }
            Some(u)
        }
        Err(e) => {
            skipped.push(format!("a mirror in {origin}: {e}; skipped"));
            None
        }
    }
}

/// Docker Hub's mirrors from daemon.json, checked.
fn daemon_mirrors(settings: &DockerSettings, skipped: &mut Vec<String>) -> Vec<RegistryUrl> {
    settings
        .registry_mirrors
        .iter()
        .filter_map(|m| mirror_url(m, &settings.source("registry-mirrors"), skipped))
        .collect()
}

/// The hosts.toml files containerd needs for what Docker had: Docker Hub mirrors, insecure
/// registries, per-registry certificates, and mirrors moved out of an old config.toml.
pub fn containerd_hosts(
    settings: &DockerSettings,
    certs: &[CertDir],
    moved_mirrors: &[(String, Vec<String>)],
    moved_tls: &[crate::render::containerd::MovedTls],
) -> WithSkipped<Vec<RegistryHost>> {
    let mut skipped = Vec::new();
    let insecure = insecure_hosts(settings, &mut skipped);
    let mut out = Hosts::new();
    let mirror_entry = |u: &RegistryUrl| {
        entry(
            u.url(),
            vec!["pull", "resolve"],
            insecure.contains(&u.host),
            certs_for(certs, &u.host),
        )
    };
    let hub = RegistryName::parse(DOCKER_HUB).expect("docker.io is a host name");
    let mirrors = daemon_mirrors(settings, &mut skipped);
    if !mirrors.is_empty() {
        out.insert(
            hub.clone(),
            RegistryHost {
                host: hub.clone(),
                server: DOCKER_HUB_SERVER.into(),
                hosts: mirrors.iter().map(&mirror_entry).collect(),
                origin: settings.source("registry-mirrors"),
            },
        );
    }
    add_moved_mirrors(&mut out, moved_mirrors, &hub, &mirror_entry, &mut skipped);
    add_insecure(&mut out, &insecure, certs, settings);
    add_certs(&mut out, certs, &mut skipped);
    add_moved_tls(&mut out, moved_tls, &mut skipped);
    WithSkipped {
        value: out.into_values().collect(),
        skipped,
    }
}

/// The hosts.toml files being made, by registry.
type Hosts = BTreeMap<RegistryName, RegistryHost>;

/// A registry name from the node, or none with why it was skipped.
fn host_or_skip(host: &str, from: &str, skipped: &mut Vec<String>) -> Option<RegistryName> {
    RegistryName::parse(host)
        .map_err(|e| skipped.push(format!("{from}: {e}; skipped")))
        .ok()
}

/// An old config.toml's registry.mirrors: each registry's mirrors as its hosts.
fn add_moved_mirrors(
    out: &mut Hosts,
    moved_mirrors: &[(String, Vec<String>)],
    hub: &RegistryName,
    mirror_entry: &dyn Fn(&RegistryUrl) -> HostEntry,
    skipped: &mut Vec<String>,
) {
    let moved_origin = "registry.mirrors in /etc/containerd/config.toml";
    for (host, endpoints) in moved_mirrors {
        let Some(host) = host_or_skip(host, moved_origin, skipped) else {
            continue;
        };
        let server = if &host == hub {
            DOCKER_HUB_SERVER.to_string()
        } else {
            format!("https://{host}")
        };
        let endpoints: Vec<RegistryUrl> = endpoints
            .iter()
            .filter_map(|e| mirror_url(e, moved_origin, skipped))
            .collect();
        let rh = out.entry(host.clone()).or_insert_with(|| RegistryHost {
            host: host.clone(),
            server,
            hosts: vec![],
            origin: moved_origin.into(),
        });
        for e in &endpoints {
            let e = mirror_entry(e);
            // The upstream itself listed as a mirror is the server, not a host entry.
            if e.url != rh.server && !rh.hosts.iter().any(|h| h.url == e.url) {
                rh.hosts.push(e);
            }
        }
    }
}

/// Docker's insecure registries that have no file yet. An http:// host with TLS settings on a
/// port other than 80 is tried over HTTPS (without verification) first, then plain HTTP: what
/// Docker does for insecure registries.
fn add_insecure(
    out: &mut Hosts,
    insecure: &[RegistryName],
    certs: &[CertDir],
    settings: &DockerSettings,
) {
    for host in insecure {
        if out.contains_key(host) {
            continue;
        }
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
                origin: settings.source("insecure-registries"),
            },
        );
    }
}

/// Docker's certs.d directories with certificates, for registries that have no file yet.
fn add_certs(out: &mut Hosts, certs: &[CertDir], skipped: &mut Vec<String>) {
    for c in certs {
        let Some(host) = host_or_skip(&c.host, "a directory in /etc/docker/certs.d", skipped)
        else {
            continue;
        };
        if out.contains_key(&host) || (c.ca.is_empty() && c.client.is_empty()) {
            continue;
        }
        let url = format!("https://{host}");
        out.insert(
            host.clone(),
            RegistryHost {
                origin: format!("/etc/docker/certs.d/{host}"),
                host,
                server: url.clone(),
                hosts: vec![entry(url, vec!["pull", "resolve", "push"], false, Some(c))],
            },
        );
    }
}

/// TLS from an old config.toml's registry.configs: onto every entry that talks to that host,
/// or a hosts.toml of its own when none does.
fn add_moved_tls(
    out: &mut Hosts,
    moved_tls: &[crate::render::containerd::MovedTls],
    skipped: &mut Vec<String>,
) {
    let tls_origin = "registry.configs TLS in /etc/containerd/config.toml";
    for t in moved_tls {
        let Some(host) = host_or_skip(&t.host, tls_origin, skipped) else {
            continue;
        };
        let apply = |e: &mut HostEntry| {
            if let Some(ca) = &t.ca {
                if !e.ca.contains(ca) {
                    e.ca.push(ca.clone());
                }
            }
            if let Some(c) = &t.client {
                if !e.client.contains(c) {
                    e.client.push(c.clone());
                }
            }
            e.skip_verify |= t.skip_verify;
        };
        let mut matched = false;
        for rh in out.values_mut() {
            for e in rh.hosts.iter_mut() {
                if RegistryUrl::parse(&e.url).is_ok_and(|u| u.host == host) {
                    apply(e);
                    matched = true;
                }
            }
        }
        if !matched {
            let url = format!("https://{host}");
            let mut e = entry(url.clone(), vec!["pull", "resolve", "push"], false, None);
            apply(&mut e);
            let rh = out.entry(host.clone()).or_insert_with(|| RegistryHost {
                host: host.clone(),
                server: url.clone(),
                hosts: vec![],
                origin: tls_origin.into(),
            });
            rh.hosts.push(e);
        }
    }
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
pub fn crio_registries(settings: &DockerSettings) -> WithSkipped<Option<String>> {
    let mut skipped = Vec::new();
    let insecure = insecure_hosts(settings, &mut skipped);
    let mut regs = Vec::new();
    let mirrors = daemon_mirrors(settings, &mut skipped);
    if !mirrors.is_empty() {
        regs.push(Registry {
            prefix: DOCKER_HUB.into(),
            location: DOCKER_HUB.into(),
            insecure: false,
            mirrors: mirrors
                .iter()
                .map(|u| Mirror {
                    location: u.location(),
                    insecure: u.scheme == "http" || insecure.contains(&u.host),
                })
                .collect(),
        });
    }
    for host in insecure.iter().filter(|h| h.as_str() != DOCKER_HUB) {
        regs.push(Registry {
            prefix: host.to_string(),
            location: host.to_string(),
            insecure: true,
            mirrors: vec![],
        });
    }
    WithSkipped {
        value: (!regs.is_empty())
            .then(|| super::template("registries.conf", serde_json::json!({ "registries": regs }))),
        skipped,
    }
}

/// The registry names Docker's settings carry (for the plan's summary).
pub fn registry_names(settings: &DockerSettings) -> Vec<String> {
    let mut skipped = Vec::new();
    let mut names: Vec<String> = Vec::new();
    if !settings.registry_mirrors.is_empty() {
        names.push(DOCKER_HUB.into());
    }
    names.extend(
        insecure_hosts(settings, &mut skipped)
            .iter()
            .map(|h| h.to_string()),
    );
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_skipped_and_said() {
        let s = DockerSettings {
            registry_mirrors: vec![
                "https://robot:s3cret@mirror.local".into(),
                "https://bad\"mirror".into(),
            ],
            insecure_registries: vec![
                "..".into(),
                "reg\"\n[x]".into(),
                "ok.local:5000".into(),
                "10.0.0.0/8".into(),
            ],
            ..Default::default()
        };
        let certs = vec![CertDir {
            host: "a b".into(),
            ca: vec!["/etc/docker/certs.d/a b/ca.crt".into()],
            client: vec![],
        }];
        let r = containerd_hosts(
            &s,
            &certs,
            &[("x/../y".into(), vec!["https://m".into()])],
            &[],
        );
        let names: Vec<&str> = r.value.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["docker.io", "ok.local:5000"]);
        assert_eq!(r.value[0].hosts[0].url, "https://mirror.local");
        for h in &r.value {
            hosts_toml(h).parse::<toml_edit::DocumentMut>().unwrap();
        }
        let all = r.skipped.join("\n");
        assert_eq!(r.skipped.len(), 6, "{all}");
        assert!(!all.contains("s3cret"), "{all}");
        assert!(all.contains("credentials in its URL"), "{all}");
        let crio = crio_registries(&s);
        crio.value
            .unwrap()
            .parse::<toml_edit::DocumentMut>()
            .unwrap();
        assert!(!crio.skipped.join(" ").contains("s3cret"));
    }

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
        let hosts = containerd_hosts(&settings(), &certs, &[], &[]).value;
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
        let text = crio_registries(&settings()).value.unwrap();
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
        assert!(crio_registries(&DockerSettings::default()).value.is_none());
    }

    #[test]
    fn tls_from_registry_configs_lands_on_the_hosts_that_talk_to_that_host() {
        use crate::render::containerd::MovedTls;
        let s = DockerSettings {
            registry_mirrors: vec!["https://mirror.corp:5000".into()],
            ..Default::default()
        };
        let tls = [
            // The mirror's CA: onto docker.io's mirror entry.
            MovedTls {
                host: "mirror.corp:5000".into(),
                ca: Some("/etc/certs/mirror-ca.pem".into()),
                ..Default::default()
            },
            // A registry nothing else names: a hosts.toml of its own.
            MovedTls {
                host: "reg.corp".into(),
                client: Some(("/c.pem".into(), "/c.key".into())),
                skip_verify: true,
                ..Default::default()
            },
        ];
        let hosts = containerd_hosts(&s, &[], &[], &tls).value;
        let hub = hosts
            .iter()
            .find(|h| h.host.as_str() == "docker.io")
            .unwrap();
        assert_eq!(hub.hosts[0].ca, vec!["/etc/certs/mirror-ca.pem"]);
        let corp = hosts
            .iter()
            .find(|h| h.host.as_str() == "reg.corp")
            .unwrap();
        assert_eq!(corp.server, "https://reg.corp");
        assert_eq!(corp.hosts.len(), 1);
        assert!(corp.hosts[0].skip_verify);
        assert_eq!(
            corp.hosts[0].client,
            vec![("/c.pem".into(), "/c.key".into())]
        );
        let text = hosts_toml(corp);
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(
            doc["host"]["https://reg.corp"]["skip_verify"].as_bool(),
            Some(true),
            "{text}"
        );
    }
}
