//! Credentials found on the node, kept out of every output. Each parser that reads a file which
//! may hold one registers the secret values it finds *by the file's structure* (a `password`,
//! `auth` or token key at any depth of a JSON or TOML document, inline tables included; the
//! password in a URL's userinfo, wherever a URL is a value), and every output — text, JSON,
//! diffs, errors, the journal — goes through [`redact`], which hides those values, and any URL
//! userinfo, wherever they appear.

use std::sync::Mutex;

/// Keys whose values are secrets, in Docker's config.json, containerd's registry `auths` and
/// `configs.*.auth`, and CRI-O's and the kubelet's credential files.
const SECRET_KEYS: [&str; 8] = [
    "password",
    "auth",
    "identitytoken",
    "identity_token",
    "registrytoken",
    "registry_token",
    "token",
    "secret",
];

/// Shorter values are not registered: replacing every `ab` in the output would hide more than
/// it protects (the key patterns and URL redaction still cover them where they stand).
const MIN_LEN: usize = 4;

static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub const REDACTED: &str = "<redacted>";

/// Remember a secret value (and its JSON-escaped form, as it would appear in JSON output).
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_LEN {
        return;
    }
    let mut known = crate::sync::locked(&KNOWN);
    let mut add = |v: String| {
        if !known.contains(&v) {
            known.push(v);
        }
    };
    add(value.to_string());
    if let Ok(j) = serde_json::to_string(value) {
        add(j.trim_matches('"').to_string());
    }
    // Docker's `auth` is base64 of `user:password`: the password alone is a secret too.
    use base64::Engine;
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value) {
        if let Ok(text) = String::from_utf8(bytes) {
            if let Some((_, pass)) = text.split_once(':') {
                if pass.chars().count() >= MIN_LEN {
                    add(pass.to_string());
                }
            }
        }
    }
    // Longest first, so that a secret containing another is hidden whole.
    known.sort_by_key(|b| std::cmp::Reverse(b.len()));
}

/// Every credential a text holds by the shape of a URL or an address: the userinfo of a URL
/// (`scheme://user:password@host`), a `user:password@host` without a scheme (Docker takes
/// `--insecure-registry=user:pass@host:5000`), and query parameters named like a secret
/// (`?token=`, `&X-Amz-Signature=`, `?access_key=`...).
pub fn register_urls(text: &str) {
    use std::sync::OnceLock;
    static SCHEMELESS: OnceLock<regex::Regex> = OnceLock::new();
    static QUERY: OnceLock<regex::Regex> = OnceLock::new();
    for span in crate::names::userinfo_spans(text) {
        let userinfo = &text[span];
        match userinfo.split_once(':') {
            Some((_, pass)) => register(pass),
            None => register(userinfo),
        }
    }
    if text.contains('@') {
        let re = SCHEMELESS.get_or_init(|| {
            regex::Regex::new(
                r#"(?:^|[\s"'=,\[(])([^\s"'=,/@:\[(]+):([^\s"'/@]+)@[A-Za-z0-9][A-Za-z0-9.\-]*"#,
            )
            .expect("a valid pattern")
        });
        for c in re.captures_iter(text) {
            register(&c[2]);
            register(&format!("{}:{}", &c[1], &c[2]));
        }
    }
    if text.contains('=') && (text.contains('?') || text.contains('&')) {
        let re = QUERY.get_or_init(|| {
            regex::Regex::new(r#"[?&]([A-Za-z0-9_.\-]+)=([^&#\s"']+)"#).expect("a valid pattern")
        });
        for c in re.captures_iter(text) {
            let name = c[1].to_ascii_lowercase();
            if is_secret_key(&name) || matches!(name.as_str(), "sig" | "signature") {
                register(&c[2]);
            }
        }
    }
}

/// A key whose value is a secret: one of [`SECRET_KEYS`], or a name that holds a token, a
/// secret, a password, a credential or a key (`splunk-token`, `api_key`, `clientSecret`) —
/// unless its end says it names a file, a path or a directory (`tls_key_file`).
fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    if SECRET_KEYS.contains(&k.as_str()) {
        return true;
    }
    if ["file", "files", "path", "paths", "dir", "directory"]
        .iter()
        .any(|e| k.ends_with(e))
    {
        return false;
    }
    ["token", "secret", "password", "passwd", "credential", "key"]
        .iter()
        .any(|w| k.contains(w))
}

/// A value of a secret-named key: registered, unless it is plainly a path (Docker's
/// `tlskey` names a file).
fn register_value(k: &str, v: &str) {
    if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) || !v.starts_with('/') {
        register(v);
    }
}

/// HTTP headers that carry credentials (containerd's hosts.toml `[header]` tables).
fn is_secret_header(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["token", "auth", "secret", "key", "password"]
        .iter()
        .any(|w| k.contains(w))
}

/// An environment variable whose name says it holds a secret: a part of it (split at `_`) is
/// SECRET, TOKEN, KEY, PASSWORD, PASSWD, PASS, PWD, CREDENTIAL(S) or AUTH — unless its last part
/// says it names a file (`..._KEY_FILE=/etc/x.key` is a path, not the key).
fn is_secret_variable(name: &str) -> bool {
    let parts: Vec<String> = name.split('_').map(|p| p.to_ascii_uppercase()).collect();
    if parts
        .last()
        .is_some_and(|l| matches!(l.as_str(), "FILE" | "PATH" | "DIR" | "FILES"))
    {
        return false;
    }
    parts.iter().any(|p| {
        matches!(
            p.as_str(),
            "SECRET"
                | "TOKEN"
                | "KEY"
                | "PASSWORD"
                | "PASSWD"
                | "PASS"
                | "PWD"
                | "CREDENTIAL"
                | "CREDENTIALS"
                | "AUTH"
                | "APIKEY"
        )
    })
}

/// A proxy value, with or without a scheme (`http://u:pw@proxy:3128`, `u:pw@proxy:3128`): its
/// password, and the whole user:password.
pub fn register_proxy(value: &str) {
    let v = value.split_once("://").map(|(_, r)| r).unwrap_or(value);
    let v = v.split('/').next().unwrap_or(v);
    if let Some((userinfo, _)) = v.rsplit_once('@') {
        register(userinfo);
        if let Some((_, pass)) = userinfo.split_once(':') {
            register(pass);
        }
    }
}

/// Every `NAME=VALUE` of a text in the forms env files and units write them: a line of an env
/// file (`export` or not), the words of systemd's `Environment=` (quoted or not), a shell
/// assignment. Values of secret-named variables and of proxy variables are registered.
pub fn from_env_text(text: &str) {
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let line = line.strip_prefix("Environment=").unwrap_or(line);
        for word in crate::flags::split_words_lenient(line) {
            let Some((name, value)) = word.text.split_once('=') else {
                continue;
            };
            if !crate::flags::is_var_name(name) {
                continue;
            }
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            if name.to_ascii_lowercase().ends_with("_proxy") {
                register_proxy(value);
            } else if is_secret_variable(name) {
                register(value);
            }
        }
    }
}

/// Every secret of a file read from the node, by the file's structure, whatever its name (a
/// containerd import or a CRI-O drop-in is TOML in a `.conf`): URL userinfo anywhere, env
/// assignments, and for a JSON or TOML document its secret keys and credential headers.
pub fn from_file(text: &str) {
    register_urls(text);
    from_env_text(text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        from_json(&v);
    } else if let Ok(doc) = text.parse::<toml_edit::DocumentMut>() {
        from_toml(doc.as_item());
    }
}

/// Every secret in a JSON document: values of secret keys at any depth, and URL userinfo.
pub fn from_json(v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x {
                    serde_json::Value::String(s) if is_secret_key(k) => register_value(k, s),
                    _ => from_json(x),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(from_json),
        serde_json::Value::String(s) => register_urls(s),
        _ => {}
    }
}

/// Every secret in a TOML document, tables, inline tables and arrays alike.
pub fn from_toml(item: &toml_edit::Item) {
    match item {
        toml_edit::Item::Table(t) => {
            for (k, x) in t.iter() {
                secret_or_descend(k, x);
            }
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for t in a.iter() {
                for (k, x) in t.iter() {
                    secret_or_descend(k, x);
                }
            }
        }
        toml_edit::Item::Value(v) => from_toml_value(None, v),
        toml_edit::Item::None => {}
    }
}

fn secret_or_descend(k: &str, x: &toml_edit::Item) {
    if k.eq_ignore_ascii_case("header") || k.eq_ignore_ascii_case("headers") {
        headers(x);
    }
    match x.as_value() {
        Some(v) => from_toml_value(Some(k), v),
        None => from_toml(x),
    }
}

/// A hosts.toml `header` table (or inline table): the values of credential headers, and the
/// credential after an `Authorization` scheme word (`Basic ...`, `Bearer ...`).
fn headers(x: &toml_edit::Item) {
    let each = |k: &str, v: &toml_edit::Value| {
        if !is_secret_header(k) {
            return;
        }
        let values: Vec<&str> = match v {
            toml_edit::Value::String(s) => vec![s.value().as_str()],
            toml_edit::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
            _ => vec![],
        };
        for value in values {
            register(value);
            if let Some((_, cred)) = value.trim().split_once(' ') {
                register(cred.trim());
            }
            // Cookies: `a=1; b=2`, each value.
            for pair in value.split(';') {
                if let Some((_, v)) = pair.split_once('=') {
                    register(v.trim());
                }
            }
        }
    };
    if let Some(t) = x.as_table_like() {
        for (k, item) in t.iter() {
            if let Some(v) = item.as_value() {
                each(k, v);
            }
        }
    }
}

fn from_toml_value(key: Option<&str>, v: &toml_edit::Value) {
    match v {
        toml_edit::Value::String(s) => {
            if let Some(k) = key.filter(|k| is_secret_key(k)) {
                register_value(k, s.value());
            } else {
                register_urls(s.value());
            }
        }
        toml_edit::Value::InlineTable(t) => {
            for (k, x) in t.iter() {
                from_toml_value(Some(k), x);
            }
        }
        toml_edit::Value::Array(a) => a.iter().for_each(|x| from_toml_value(None, x)),
        _ => {}
    }
}

/// Whether a text holds a credential found on the node (a file that does is written 0600).
pub fn holds(text: &str) -> bool {
    crate::sync::locked(&KNOWN)
        .iter()
        .any(|s| text.contains(s.as_str()))
}

/// Hide every registered secret and any URL userinfo in a text.
pub fn redact(text: &str) -> String {
    let known = crate::sync::locked(&KNOWN);
    let mut out = text.to_string();
    for s in known.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    drop(known);
    crate::names::redact_url(&out)
}

/// Text for stderr, redacted, as [`crate::terminal::for_terminal`] makes it (styles where stderr takes colours).
pub fn shown(s: &str) -> String {
    crate::terminal::for_terminal(&redact(s), console::colors_enabled_stderr())
}

/// A writer that redacts what goes through it, a line at a time (no secret spans lines).
/// Once its reader has gone (`| head`: a broken pipe), the rest is dropped quietly, as Unix
/// tools do, and the command still ends with its own exit code: a migration is never stopped
/// half-way because nobody reads its report any more.
pub struct Redacting<W: std::io::Write> {
    inner: W,
    line: Vec<u8>,
    closed: bool,
    /// Text for people: control characters escaped too (`report::for_terminal`). JSON needs
    /// none of it (it escapes its own), so a JSON report is left as it is.
    escape: bool,
}

impl<W: std::io::Write> Redacting<W> {
    pub fn new(inner: W) -> Self {
        Redacting {
            inner,
            line: Vec::new(),
            closed: false,
            escape: false,
        }
    }

    /// The same, escaping control characters: for text shown to a person.
    pub fn escaping(inner: W) -> Self {
        Redacting {
            inner,
            line: Vec::new(),
            closed: false,
            escape: true,
        }
    }

    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let chunk: Vec<u8> = self.line.drain(..upto).collect();
        if self.closed {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&chunk);
        let text = if self.escape {
            crate::terminal::for_terminal(&redact(&text), console::colors_enabled())
        } else {
            redact(&text)
        };
        match self.inner.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(i) = self.line.iter().position(|b| *b == b'\n') {
            self.emit(i + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.line.is_empty() {
            let n = self.line.len();
            self.emit(n)?;
        }
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
        }
    }
}

impl<W: std::io::Write> Drop for Redacting<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_units_proxies_and_headers_are_read_by_structure() {
        from_file(
            "[Service]\nEnvironment=\"HTTP_PROXY=robot:Pr0xyNoScheme@proxy:3128\" \"NO_PROXY=localhost\"\n",
        );
        from_file(
            "export AWS_SECRET_ACCESS_KEY=AwsS3cr3tValue\nTLS_KEY_FILE=/etc/kubernetes/pki/k.key\nhttps_proxy='u:Sch3mel3ss@p:8080'\nMY_API_TOKEN=\"tok-12345\"\n",
        );
        from_file(
            "server = \"https://r.local\"\n[host.\"https://m.local\".header]\n  Authorization = \"Basic SGVhZGVyQXV0aFZhbHVl\"\n  x-custom = [\"plain\"]\n[header]\n  Cookie = \"session=C00kieValue\"\n",
        );
        // TOML whatever the file's name (a containerd import, a CRI-O drop-in in a `.conf`).
        from_file("[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r\".auth]\npassword = \"T0mlInAConf\"\n");
        let text = "Pr0xyNoScheme AwsS3cr3tValue Sch3mel3ss tok-12345 SGVhZGVyQXV0aFZhbHVl C00kieValue T0mlInAConf /etc/kubernetes/pki/k.key plain localhost";
        let r = redact(text);
        for s in [
            "Pr0xyNoScheme",
            "AwsS3cr3tValue",
            "Sch3mel3ss",
            "tok-12345",
            "SGVhZGVyQXV0aFZhbHVl",
            "C00kieValue",
            "T0mlInAConf",
        ] {
            assert!(!r.contains(s), "{s} in {r}");
        }
        for kept in ["/etc/kubernetes/pki/k.key", "plain", "localhost"] {
            assert!(r.contains(kept), "{kept} hidden: {r}");
        }
        assert!(
            is_secret_variable("AWS_SECRET_ACCESS_KEY")
                && !is_secret_variable("KUBELET_KUBEADM_ARGS")
        );
    }

    #[test]
    fn secrets_are_found_by_structure_and_hidden_everywhere() {
        let doc: toml_edit::DocumentMut = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."reg.local".auth]
  username = "robot"
  password = "pw-in-a-table"
[plugins."io.containerd.grpc.v1.cri".registry.configs."other".tls]
  insecure_skip_verify = true
[plugins."io.containerd.grpc.v1.cri".registry]
  configs2 = { "x" = { auth = { password = "pw-inline" } } }
  mirror = "https://u:pw-in-url@m.local"
"#
        .parse()
        .unwrap();
        from_toml(doc.as_item());
        from_json(
            &serde_json::json!({"auths": {"r": {"auth": "cm9ib3Q6cHctYmFzZTY0"}}, "proxies": {"http-proxy": "http://p:proxy-pw@proxy:3128"}}),
        );
        let text = "a pw-in-a-table b pw-inline c pw-in-url d pw-base64 e proxy-pw f cm9ib3Q6cHctYmFzZTY0 g robot";
        let r = redact(text);
        for s in [
            "pw-in-a-table",
            "pw-inline",
            "pw-in-url",
            "pw-base64",
            "proxy-pw",
            "cm9ib3Q6",
        ] {
            assert!(!r.contains(s), "{s} in {r}");
        }
        assert!(r.contains("robot"), "a user name is not a secret: {r}");
        // Through the writer, across writes.
        let mut buf = Vec::new();
        {
            use std::io::Write;
            let mut w = Redacting::new(&mut buf);
            write!(w, "x pw-in").unwrap();
            writeln!(w, "line y").unwrap();
            write!(w, "tail https://a:pw-inline@h").unwrap();
        }
        let out = String::from_utf8(buf).unwrap();
        assert!(!out.contains("pw-inline"), "{out}");
    }
}
