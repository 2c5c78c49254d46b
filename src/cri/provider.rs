//! The kubelet's image credential providers (`--image-credential-provider-config`,
//! `--image-credential-provider-bin-dir`, KEP-2133): exec plugins that the kubelet runs for an
//! image its config matches, a `CredentialProviderRequest` on their stdin, a
//! `CredentialProviderResponse` on their stdout. The pull before the cutover gets its
//! credentials the same way (the EKS AMI's pause image comes from ECR through
//! `ecr-credential-provider`). Run on the live node only; the secrets stay in memory, are
//! registered for redaction, and are never printed.

use super::credentials::Credential;
use crate::node::{join, Node};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where the kubelet's providers are: its config file and its plugin directory (node paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub config: String,
    pub bin_dir: String,
}

/// One provider of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub name: String,
    #[serde(default)]
    pub match_images: Vec<String>,
    /// The API version of the request the plugin takes (`credentialprovider.kubelet.k8s.io/v1`).
    pub api_version: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
struct Config {
    kind: String,
    #[serde(default)]
    providers: Vec<Provider>,
}

/// The providers of a CredentialProviderConfig (YAML or JSON).
pub fn read_config(node: &Node, path: &str) -> Result<Vec<Provider>> {
    let text = node.read(path)?.with_context(|| {
        format!("{path} (the kubelet's --image-credential-provider-config) is missing")
    })?;
    let c: Config = serde_norway::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{path} is not a CredentialProviderConfig"))?;
    if c.kind != "CredentialProviderConfig" {
        bail!("{path} is a {}, not a CredentialProviderConfig", c.kind);
    }
    Ok(c.providers)
}

/// `host[:port]` and path of an image or pattern, as the kubelet parses them (a URL without
/// its scheme).
fn split(s: &str) -> (&str, Option<&str>, &str) {
    let s = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
    let (hostport, path) = s.split_once('/').unwrap_or((s, ""));
    match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p), path),
        _ => (hostport, None, path),
    }
}

/// A shell-style glob of one name segment (`*` any run, `?` one character), matched with
/// backtracking to the last `*` only: at most pattern × text steps, whatever the pattern.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) && p[i] != '*' {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Whether `pattern` (a `matchImages` entry, or a key of a response's `auth`) matches
/// `image`, as the kubelet's `URLsMatchStr`: the same number of host segments, each matched as a
/// glob (`*.dkr.ecr.*.amazonaws.com`); the same port (none on both, or the same one); the
/// pattern's path a prefix of the image's.
pub fn matches(pattern: &str, image: &str) -> bool {
    let (ph, pp, ppath) = split(pattern);
    let (ih, ip, ipath) = split(image);
    let (ps, is): (Vec<&str>, Vec<&str>) = (ph.split('.').collect(), ih.split('.').collect());
    ps.len() == is.len()
        && ps.iter().zip(&is).all(|(p, i)| glob(p, i))
        && pp == ip
        && ipath.starts_with(ppath)
}

// No Debug: it holds secrets.
#[derive(Deserialize)]
struct Response {
    kind: String,
    #[serde(default)]
    auth: std::collections::BTreeMap<String, AuthConfig>,
}

#[derive(Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The most of a provider's answer read: a response holds a few credentials.
const MAX_RESPONSE: usize = 1 << 20;

/// A provider's plugin, run for `image` as the kubelet runs it: the request on its stdin, its
/// environment with the provider's `env` on top, its `args`; the most specific `auth` entry
/// that matches the image. `None` where it gives none.
pub fn run(node: &Node, source: &Source, p: &Provider, image: &str) -> Result<Option<Credential>> {
    // The kubelet gives a plugin a minute.
    call(node, source, p, image, Duration::from_secs(60))
}

fn call(
    node: &Node,
    source: &Source,
    p: &Provider,
    image: &str,
    timeout: Duration,
) -> Result<Option<Credential>> {
    if p.name.contains('/') || p.name.starts_with('.') {
        bail!("the provider name {:?} is not a file name", p.name);
    }
    let plugin = node.path(&join(&source.bin_dir, &p.name));
    let request = serde_json::json!({
        "apiVersion": p.api_version,
        "kind": "CredentialProviderRequest",
        "image": image,
    });
    let mut cmd = std::process::Command::new(&plugin);
    cmd.args(&p.args)
        .envs(p.env.iter().map(|e| (e.name.as_str(), e.value.as_str())));
    // A response is a few kilobytes.
    let bounds = crate::system::Bounds {
        timeout,
        stdout: MAX_RESPONSE,
        stderr: 64 << 10,
    };
    let ran = crate::system::run_bounded(&mut cmd, Some(request.to_string().into_bytes()), bounds)
        .with_context(|| format!("cannot run the credential provider {}", plugin.display()))?;
    let out = match ran {
        crate::system::Bounded::Done(r) if r.success => r.stdout,
        // What it printed is never quoted: a response, or a part of one, may hold a secret.
        crate::system::Bounded::Done(r) => bail!(
            "the credential provider {} failed ({})",
            p.name,
            r.code
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed by a signal".into())
        ),
        crate::system::Bounded::TimedOut => bail!(
            "the credential provider {} did not answer within {}s (or left a process holding its output): it was stopped with its process group",
            p.name,
            bounds.timeout.as_secs()
        ),
        crate::system::Bounded::TooMuchOutput => bail!(
            "the credential provider {} wrote more than {} KiB, which is no CredentialProviderResponse: it was stopped",
            p.name,
            MAX_RESPONSE >> 10
        ),
    };
    // serde's message quotes the value it could not take (a password where a table was
    // expected): only where the problem is, never what.
    let r: Response = serde_json::from_str(&out).map_err(|e| {
        anyhow::anyhow!(
            "the credential provider {} gave no CredentialProviderResponse (its answer does not parse as one: line {}, column {}, a {} problem)",
            p.name,
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Io => "read",
                serde_json::error::Category::Syntax => "JSON syntax",
                serde_json::error::Category::Data => "field type",
                serde_json::error::Category::Eof => "truncated JSON",
            }
        )
    })?;
    if r.kind != "CredentialProviderResponse" {
        bail!("the credential provider {} gave a {}", p.name, r.kind);
    }
    for a in r.auth.values() {
        crate::secrets::register(&a.password);
    }
    let best = r
        .auth
        .iter()
        .filter(|(k, _)| matches(k, image))
        .max_by_key(|(k, _)| k.len());
    Ok(best.map(|(key, a)| Credential {
        registry: key.clone(),
        file: format!("the kubelet's credential provider {}", p.name),
        username: a.username.clone(),
        password: a.password.clone(),
        identity_token: String::new(),
        registry_token: String::new(),
    }))
}

/// The credential the kubelet's providers give for `image`: the first provider whose
/// `matchImages` match it and whose plugin gives one.
pub fn lookup(node: &Node, source: &Source, image: &str) -> Result<Option<Credential>> {
    for p in read_config(node, &source.config)? {
        if p.match_images.iter().any(|m| matches(m, image)) {
            if let Some(c) = run(node, source, &p, image)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_as_the_kubelet_matches_them() {
        let ecr = "*.dkr.ecr.*.amazonaws.com";
        assert!(matches(
            ecr,
            "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/pause:3.5"
        ));
        assert!(!matches(
            ecr,
            "602401143452.dkr.ecr.us-east-1.amazonaws.com.evil.io/eks/pause"
        ));
        assert!(!matches(ecr, "dkr.ecr.us-east-1.amazonaws.com/x"));
        assert!(matches("127.0.0.1:5000", "127.0.0.1:5000/test/img:1"));
        assert!(!matches("127.0.0.1:5000", "127.0.0.1:5001/test/img:1"));
        assert!(!matches("registry.example", "registry.example:443/x"));
        assert!(matches("registry.example", "registry.example/x"));
        assert!(matches(
            "registry.example/team",
            "registry.example/team/app:1"
        ));
        assert!(!matches(
            "registry.example/team",
            "registry.example/other/app:1"
        ));
        assert!(matches("https://*.example.com", "a.example.com/x"));
        assert!(glob("a*b?c*", "axxbycz") && !glob("a*b?c", "abc") && glob("*", ""));
        // A pattern that would take exponential time with naive backtracking.
        let t = std::time::Instant::now();
        assert!(!glob(&"*a".repeat(40), &"a".repeat(39)));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }

    /// A plugin written as a shell script into a node's plugin directory.
    fn plugin(script: &str) -> (tempfile::TempDir, Source, Provider) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let f = bin.join("p");
        std::fs::write(&f, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let source = Source {
            config: "/c.yaml".into(),
            bin_dir: "/bin".into(),
        };
        let p = Provider {
            name: "p".into(),
            match_images: vec!["reg.local".into()],
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            args: vec![],
            env: vec![],
        };
        (dir, source, p)
    }

    fn refused(r: Result<Option<Credential>>) -> String {
        match r {
            Err(e) => format!("{e:#}"),
            Ok(_) => panic!("the call was not refused"),
        }
    }

    fn call_within(script: &str, timeout: Duration) -> (Result<Option<Credential>>, Duration) {
        let (dir, source, p) = plugin(script);
        let t = std::time::Instant::now();
        let r = call(
            &Node::new(dir.path()),
            &source,
            &p,
            "reg.local/app:1",
            timeout,
        );
        (r, t.elapsed())
    }

    #[test]
    fn a_providers_answer_is_never_quoted_in_an_error() {
        let (r, _) = call_within(
            r#"cat >/dev/null; echo '{"kind":"CredentialProviderResponse","auth":{"reg.local":"S3cr3tWrongType"}}'"#,
            Duration::from_secs(20),
        );
        let e = refused(r);
        assert!(!e.contains("S3cr3t"), "{e}");
        assert!(e.contains("line 1, column"), "{e}");
        let (r, _) = call_within(
            "echo 'S3cr3tOnStderr' >&2; echo 'S3cr3tOnStdout'; exit 3",
            Duration::from_secs(20),
        );
        let e = refused(r);
        assert!(!e.contains("S3cr3t") && e.contains("exit 3"), "{e}");
    }

    #[test]
    fn a_provider_is_bounded_in_time_and_output() {
        let ok = r#"{"kind":"CredentialProviderResponse","auth":{"reg.local":{"username":"u","password":"pw-ok-1234"}}}"#;
        // A child left in the background holding stdout: the call ends at its deadline, with
        // the whole group stopped.
        let (r, took) = call_within(
            &format!("cat >/dev/null; echo '{ok}'; sleep 300 &"),
            Duration::from_secs(2),
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let e = refused(r);
        assert!(e.contains("did not answer within 2s"), "{e}");
        // 200 KB on stderr: read at once, so the plugin never blocks on it.
        let (r, took) = call_within(
            &format!("cat >/dev/null; head -c 200000 /dev/zero | tr '\\0' x >&2; echo '{ok}'"),
            Duration::from_secs(20),
        );
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(r.unwrap().unwrap().password, "pw-ok-1234");
        // Gigabytes on stdout: stopped past the bound, never held.
        let (r, took) = call_within("cat >/dev/null; yes", Duration::from_secs(20));
        assert!(took < Duration::from_secs(10), "took {took:?}");
        let e = refused(r);
        assert!(e.contains("wrote more than 1024 KiB"), "{e}");
    }

    #[test]
    fn the_config_is_read_in_yaml_or_json() {
        let dir = tempfile::tempdir().unwrap();
        let n = Node::new(dir.path());
        n.write_atomic(
            "/etc/eks/image-credential-provider/config.json",
            br#"{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[{"name":"ecr-credential-provider","matchImages":["*.dkr.ecr.*.amazonaws.com"],"defaultCacheDuration":"12h","apiVersion":"credentialprovider.kubelet.k8s.io/v1","args":["get-credentials"],"env":[{"name":"AWS_PROFILE","value":"x"}]}]}"#,
            0o644,
            None,
        )
        .unwrap();
        let p = read_config(&n, "/etc/eks/image-credential-provider/config.json").unwrap();
        assert_eq!(p[0].name, "ecr-credential-provider");
        assert_eq!(p[0].args, ["get-credentials"]);
        assert_eq!(p[0].env[0].name, "AWS_PROFILE");
        n.write_atomic("/c.yaml", b"kind: KubeletConfiguration\n", 0o644, None)
            .unwrap();
        assert!(read_config(&n, "/c.yaml").is_err());
    }
}
