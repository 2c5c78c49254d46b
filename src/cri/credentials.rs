//! The credentials the kubelet would send with a pull (k8s pkg/credentialprovider): docker-style
//! `config.json` in the kubelet's root dir, its working dir (`/`), and `/.docker`; the most
//! specific matching registry entry wins. Secrets stay in memory, never in output.

use crate::node::Node;
use base64::Engine;
use serde_json::Value;

/// The kubelet's own credentials file (in its root directory).
pub const KUBELET_CONFIG_JSON: &str = "/var/lib/kubelet/config.json";

/// Where the kubelet looks, in order (`.dockercfg` is the older format).
pub const SEARCH: [&str; 6] = [
    KUBELET_CONFIG_JSON,
    "/config.json",
    "/.docker/config.json",
    "/var/lib/kubelet/.dockercfg",
    "/.dockercfg",
    "/.docker/.dockercfg",
];

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The registry key it was found under (no secret).
    pub registry: String,
    /// The file it came from.
    pub file: String,
    pub username: String,
    pub password: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credential {{ registry: {:?}, file: {:?}, secrets: <redacted> }}",
            self.registry, self.file
        )
    }
}

/// `docker.io/library/busybox:1` -> `docker.io/library/busybox`; `registry:5000/a/b@sha256:..`
/// -> `registry:5000/a/b`. A name without a registry host is Docker Hub's.
pub fn repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    // A tag is the part after the last ':' that comes after the last '/'.
    let name = match (name.rfind(':'), name.rfind('/')) {
        (Some(c), Some(s)) if c > s => &name[..c],
        (Some(c), None) => &name[..c],
        _ => name,
    };
    let first = name.split('/').next().unwrap_or("");
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// A config.json key as a `host/path` prefix: `https://index.docker.io/v1/` -> `docker.io`.
fn normalize_key(key: &str) -> String {
    let k = key.split_once("://").map(|(_, r)| r).unwrap_or(key);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => k.to_string(),
    }
}

/// `*.example.com` style globs are allowed in the host part, as in the kubelet.
fn key_matches(key: &str, repo: &str) -> bool {
    let (khost, kpath) = key.split_once('/').unwrap_or((key, ""));
    let (rhost, rpath) = repo.split_once('/').unwrap_or((repo, ""));
    let host_ok = match khost.strip_prefix("*.") {
        Some(suffix) => rhost.ends_with(&format!(".{suffix}")),
        None => khost == rhost,
    };
    host_ok && (kpath.is_empty() || rpath == kpath || rpath.starts_with(&format!("{kpath}/")))
}

/// The credential the kubelet would use for `image`, if any. Unreadable files are skipped, as
/// the kubelet skips them.
pub fn lookup(node: &Node, image: &str) -> Option<Credential> {
    let repo = repository(image);
    let mut best: Option<(usize, Credential)> = None;
    for path in SEARCH {
        let Ok(Some(text)) = node.read(path) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let auths = if path.ends_with(".dockercfg") {
            Some(&json)
        } else {
            json.get("auths")
        };
        let Some(auths) = auths.and_then(Value::as_object) else {
            continue;
        };
        for (key, entry) in auths {
            let norm = normalize_key(key);
            if !key_matches(&norm, &repo) {
                continue;
            }
            let s = |k: &str| {
                entry
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let (mut username, mut password) = (s("username"), s("password"));
            if let Some(decoded) = Some(s("auth"))
                .filter(|a| !a.is_empty())
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
                .and_then(|b| String::from_utf8(b).ok())
            {
                if let Some((u, p)) = decoded.split_once(':') {
                    username = u.to_string();
                    password = p.to_string();
                }
            }
            let cred = Credential {
                registry: key.clone(),
                file: path.to_string(),
                username,
                password,
                identity_token: s("identitytoken"),
                registry_token: s("registrytoken"),
            };
            // The first file that has a match wins over later files; within it, the longest key.
            let score = norm.len();
            match &best {
                Some((s, c)) if c.file != cred.file || *s >= score => {}
                _ => best = Some((score, cred)),
            }
        }
        if best.is_some() {
            break;
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        assert_eq!(repository("busybox"), "docker.io/library/busybox");
        assert_eq!(
            repository("library/busybox:1.36"),
            "docker.io/library/busybox"
        );
        assert_eq!(
            repository("127.0.0.1:5000/test/img:1"),
            "127.0.0.1:5000/test/img"
        );
        assert_eq!(repository("reg.local/a/b@sha256:abc"), "reg.local/a/b");
        assert_eq!(repository("localhost/x"), "localhost/x");
    }

    #[test]
    fn kubelet_style_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::new(dir.path());
        std::fs::create_dir_all(dir.path().join("var/lib/kubelet")).unwrap();
        std::fs::write(
            dir.path().join("var/lib/kubelet/config.json"),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnB3"},
                "reg.local:5000":{"username":"u","password":"p"},
                "reg.local:5000/team":{"auth":"dGVhbTpzZWNyZXQ="},
                "*.corp.example":{"auth":"Y29ycDpwdw=="}}}"#,
        )
        .unwrap();
        let c = lookup(&node, "busybox:1").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("hub", "pw"));
        assert_eq!(
            lookup(&node, "reg.local:5000/other/x").unwrap().username,
            "u"
        );
        assert_eq!(
            lookup(&node, "reg.local:5000/team/x:1").unwrap().username,
            "team"
        );
        assert_eq!(lookup(&node, "a.corp.example/x").unwrap().username, "corp");
        assert!(lookup(&node, "quay.io/x").is_none());
        assert!(!format!("{:?}", lookup(&node, "busybox").unwrap()).contains("pw"));
    }
}
