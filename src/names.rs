//! Names read from the node that become paths and keys in files cri-migrate writes: checked
//! once, here, and carried as types, so that an unchecked string cannot become
//! `certs.d/../hosts.toml` or a TOML key that breaks the file.

use serde::{Serialize, Serializer};
use std::fmt;
use std::net::Ipv6Addr;

/// A checked name's text, the same way for every name here.
macro_rules! checked_name {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A registry host as Docker and containerd name it: `host`, `host:port`, `[v6]` or
/// `[v6]:port`. No `/`, no `..`, no whitespace, quotes or control characters: it is used as a
/// directory name (`certs.d/<host>/`) and inside TOML.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistryName(String);

impl RegistryName {
    pub fn parse(s: &str) -> Result<RegistryName, String> {
        let bad = |why: &str| Err(format!("{:?} is not a registry host name ({why})", s));
        if s.is_empty() {
            return bad("empty");
        }
        if s.len() > 255 {
            return bad("longer than 255 characters");
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((v6, after)) = rest.split_once(']') else {
                return bad("an IPv6 address without its closing ]");
            };
            if v6.parse::<Ipv6Addr>().is_err() {
                return bad("not an IPv6 address between [ ]");
            }
            match after {
                "" => (None, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (None, Some(p)),
                    None => return bad("something after the IPv6 address"),
                },
            }
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) => (Some(h), Some(p)),
                None => (Some(s), None),
            }
        };
        if let Some(p) = port {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5 {
                return bad("its port is not a number");
            }
            match p.parse::<u32>() {
                Ok(1..=65535) => {}
                _ => return bad("its port is not between 1 and 65535"),
            }
        }
        if let Some(h) = host {
            if h.is_empty() {
                return bad("no host before the port");
            }
            for label in h.split('.') {
                if label.is_empty() {
                    return bad("an empty label (`..`, or a dot at an end)");
                }
                if label.len() > 63 {
                    return bad("a label longer than 63 characters");
                }
                if !label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return bad("only letters, digits, `-`, `_` and `.` make a host name");
                }
                if label.starts_with('-') || label.ends_with('-') {
                    return bad("a label starts or ends with `-`");
                }
            }
        }
        Ok(RegistryName(s.to_string()))
    }
}

checked_name!(RegistryName);

impl Serialize for RegistryName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl PartialEq<str> for RegistryName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A registry endpoint URL as Docker's `registry-mirrors` or containerd's old `mirrors` list it:
/// scheme (https when none), a [`RegistryName`], an optional path. Credentials in it
/// (`https://user:pass@mirror`) are taken out: never written, never printed; `had_credentials`
/// says they were there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    pub scheme: String,
    pub host: RegistryName,
    pub path: String,
    pub had_credentials: bool,
}

impl RegistryUrl {
    pub fn parse(s: &str) -> Result<RegistryUrl, String> {
        let (scheme, rest) = match s.split_once("://") {
            Some((sc, rest)) => (sc.to_ascii_lowercase(), rest),
            None => ("https".to_string(), s),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("{} is not an http(s) registry URL", redact_url(s)));
        }
        let rest = rest.trim_end_matches('/');
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (had_credentials, hostport) = match authority.rsplit_once('@') {
            Some((_, h)) => (true, h),
            None => (false, authority),
        };
        let host = RegistryName::parse(hostport).map_err(|e| format!("{}: {e}", redact_url(s)))?;
        if path
            .split('/')
            .any(|seg| seg == ".." || seg == "." || seg.is_empty())
            && !path.is_empty()
        {
            return Err(format!(
                "{}: its path has empty, `.` or `..` parts",
                redact_url(s)
            ));
        }
        if !path.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'%')
        }) {
            return Err(format!(
                "{}: its path holds characters a registry path does not",
                redact_url(s)
            ));
        }
        Ok(RegistryUrl {
            scheme,
            host,
            path: path.to_string(),
            had_credentials,
        })
    }

    /// The URL without credentials.
    pub fn url(&self) -> String {
        if self.path.is_empty() {
            format!("{}://{}", self.scheme, self.host)
        } else {
            format!("{}://{}/{}", self.scheme, self.host, self.path)
        }
    }

    /// `host[/path]`, as CRI-O's registries.conf wants a location.
    pub fn location(&self) -> String {
        if self.path.is_empty() {
            self.host.to_string()
        } else {
            format!("{}/{}", self.host, self.path)
        }
    }
}

/// A Kubernetes node's name, as the API accepts it (a DNS-1123 subdomain: at most 253
/// characters, lowercase letters, digits, `-` and `.`, each dot-separated label starting and
/// ending with a letter or digit). Never begins with `-`, so it cannot be read as an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(s: &str) -> Result<NodeName, String> {
        let shown = s.escape_debug().to_string();
        let bad = |why: &str| {
            Err(format!(
                "`{shown}` is not a node name ({why}; a node name is a DNS-1123 subdomain: lowercase letters, digits, '-' and '.')"
            ))
        };
        if s.is_empty() {
            return bad("it is empty");
        }
        if s.len() > 253 {
            return bad("longer than 253 characters");
        }
        for label in s.split('.') {
            let ok_end =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok_end(label.chars().next()) || !ok_end(label.chars().last()) {
                return bad("each part between dots must start and end with a letter or a digit");
            }
            if !label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return bad("only lowercase letters, digits, '-' and '.' are allowed");
            }
        }
        Ok(NodeName(s.to_string()))
    }
}

checked_name!(NodeName);

/// An image reference as Docker, containerd and CRI-O read one:
/// `[host[:port]/]path[:tag][@digest]`. CRI-O will not start with a config that names anything
/// else as its pause image, so a value read from the node is checked before it is written.
pub fn image_reference(s: &str) -> Result<(), String> {
    s.parse::<oci_spec::distribution::Reference>()
        .map(|_| ())
        .map_err(|_| {
            format!(
                "`{}` is not an image reference (expected e.g. registry.k8s.io/pause:3.9)",
                s.escape_debug()
            )
        })
}

/// A URL with any `user:password@` replaced by `***@`, for messages. Works on any text that
/// may hold URLs (a proxy variable's value, a line of a config).
pub fn redact_url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut from = 0;
    for span in userinfo_spans(s) {
        out.push_str(&s[from..span.start]);
        out.push_str("***");
        from = span.end;
    }
    out.push_str(&s[from..]);
    out
}

/// Where the userinfo (`user:password`, before the `@`) of each URL in a text is: the one
/// reading of URLs that both the redaction and the secrets' registry use.
/// A command line to show a person, each word shell-quoted where it needs it: pasted into a
/// shell, it runs these words and nothing else, whatever a node's data put in them.
pub fn shell_line(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| {
            shlex::try_quote(w)
                .map(|q| q.into_owned())
                // A NUL byte cannot be in an argument: shown escaped, never run as it stands.
                .unwrap_or_else(|_| format!("{w:?}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The SELinux commands that label a moved runtime root `path` as `like`, as one line to
/// paste.
pub fn selinux_label_line(like: &str, path: &str) -> String {
    format!(
        "{} && {} && {}",
        shell_line(&["semanage", "fcontext", "-a", "-e", like, "--", path]),
        shell_line(&["mkdir", "-p", "--", path]),
        shell_line(&["restorecon", "-R", "-v", "--", path])
    )
}

/// A path from a node's settings that may reach a file name, a config value or a program's
/// argument: absolute, with no control character, no `..` and no empty part. `Err` says what
/// is wrong with it.
pub fn node_path_value(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("it is not an absolute path");
    }
    if p.chars().any(char::is_control) {
        return Err("it holds a control character");
    }
    if p.split('/').any(|c| c == "..") {
        return Err("it holds `..`");
    }
    Ok(())
}

pub fn userinfo_spans(s: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while let Some(i) = s[pos..].find("://") {
        let start = pos + i + 3;
        let tail = &s[start..];
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        if let Some(at) = tail[..end].rfind('@') {
            spans.push(start..start + at);
        }
        pos = start + end;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` takes every `ok` and refuses every `bad`.
    fn sorts<T>(parse: fn(&str) -> Result<T, String>, ok: &[&str], bad: &[&str]) {
        for o in ok {
            assert!(parse(o).is_ok(), "{o:?}");
        }
        for b in bad {
            assert!(parse(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn node_names() {
        let ok = ["worker-1", "ip-10-0-0-1.ec2.internal", "a", "n123"];
        let long = "a".repeat(254);
        let bad = [
            "",
            "--selector=kubernetes.io/os=linux",
            "-x",
            "Worker-1",
            "a..b",
            "a.-b",
            "node\n--all",
            "x y",
            &long,
        ];
        sorts(NodeName::parse, &ok, &bad);
    }

    #[test]
    fn registry_names() {
        let ok = [
            "docker.io",
            "registry.corp.local:5000",
            "127.0.0.1:5000",
            "localhost",
            "[::1]:5000",
            "[fd00::1]",
            "my_registry.internal",
        ];
        let bad = [
            "",
            "..",
            "a..b",
            "reg/../x",
            "reg.local/path",
            "reg\"x",
            "reg\nx",
            "re g",
            "reg:0",
            "reg:99999",
            "reg:",
            ":5000",
            "-reg",
            "[::1",
            "[zz]:1",
            "reg.local:5000:1",
        ];
        sorts(RegistryName::parse, &ok, &bad);
    }

    #[test]
    fn urls_lose_their_credentials() {
        let u = RegistryUrl::parse("https://robot:s3cret@mirror.local:5000/v2/").unwrap();
        assert!(u.had_credentials);
        assert_eq!(u.url(), "https://mirror.local:5000/v2");
        let u = RegistryUrl::parse("mirror.local").unwrap();
        assert_eq!(u.url(), "https://mirror.local");
        assert!(RegistryUrl::parse("ftp://x").is_err());
        assert!(RegistryUrl::parse("https://x/../y").is_err());
        let e = RegistryUrl::parse("https://u:p@bad host").unwrap_err();
        assert!(!e.contains(":p@"), "{e}");
    }

    #[test]
    fn redaction_keeps_the_rest() {
        assert_eq!(
            redact_url("HTTPS_PROXY=http://user:pa55@proxy:3128 NO_PROXY=x"),
            "HTTPS_PROXY=http://***@proxy:3128 NO_PROXY=x"
        );
        assert_eq!(redact_url("https://a/b"), "https://a/b");
    }
}
