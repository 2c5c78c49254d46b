//! Output: the inspection report, the dry-run (unified diffs, actions, warnings), and their JSON
//! forms (docs/json.md). No credential is ever printed: see [`redact`].

use crate::inspect::{Facts, Finding, Installed, Severity};
use crate::plan::Plan;
use console::style;
use regex::Regex;
use serde_json::{json, Value};
use similar::TextDiff;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// Version of the JSON documents' layout (kept with the failures' JSON in error.rs).
pub use crate::error::JSON_SCHEMA_VERSION;

/// Hide secrets in any text we print: every credential the node's parsed files hold and every
/// URL's userinfo (src/secrets.rs), then, as a last net, values of keys such as `password`,
/// `auth`, `token` at the start of TOML, YAML or JSON lines.
pub fn redact(text: &str) -> String {
    let text = &crate::secrets::redact(text);
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"(?im)^([ \t+\-]*["']?(?:password|auth|identitytoken|identity_token|registrytoken|token|secret)["']?[ \t]*[=:][ \t]*).+$"#)
            .unwrap()
    });
    re.replace_all(text, "${1}\"<redacted>\"").into_owned()
}

/// A unified diff of one file, paths as on the node; a new file is shown in full.
pub fn unified_diff(path: &str, old: Option<&str>, new: &str) -> String {
    let old_text = old.unwrap_or("");
    let diff = TextDiff::from_lines(old_text, new);
    let (a, b) = match old {
        Some(_) => (format!("a{path}"), format!("b{path}")),
        None => ("/dev/null".to_string(), format!("b{path}")),
    };
    let mut out = diff
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    redact(&out)
}

fn colour_diff(diff: &str) -> String {
    let mut out = String::new();
    for line in diff.lines() {
        let styled = if line.starts_with("+++") || line.starts_with("---") {
            style(line).bold().to_string()
        } else if line.starts_with('+') {
            style(line).green().to_string()
        } else if line.starts_with('-') {
            style(line).red().to_string()
        } else if line.starts_with("@@") {
            style(line).cyan().to_string()
        } else {
            line.to_string()
        };
        out.push_str(&styled);
        out.push('\n');
    }
    out
}

fn findings(out: &mut String, title: &str, list: &[Finding]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{}", style(title).bold());
    for f in list {
        let mark = match f.severity {
            Severity::Warning => style("warning").yellow().bold().to_string(),
            Severity::Info => style("note").blue().to_string(),
        };
        let _ = writeln!(
            out,
            "  {mark} [{}] {}\n      -> {}",
            f.code, f.message, f.fix
        );
    }
}

fn installed(i: &Installed) -> String {
    if !i.installed {
        return "not installed".into();
    }
    let mut s = match (&i.version, &i.version_source) {
        (Some(v), Some(src)) => format!("{v} ({src})"),
        (Some(v), None) => v.to_string(),
        _ => "installed, version unknown".into(),
    };
    if !i.units.is_empty() {
        let _ = write!(s, "; units {}", i.units.join(", "));
    }
    if let Some(sock) = &i.socket {
        let _ = write!(s, "; socket {sock}");
    }
    s
}

/// Text to print on a terminal from data the node gave: every control character but the
/// newline escaped (`\r`, `\u{1b}`...), so that no escape sequence of a node's file reaches the
/// terminal and no carriage return forges a line. JSON output needs none of this: it is JSON.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The inspection for people. It is built without colours and escaped whole (every value in it
/// comes from the node), then its headings and marks are styled again.
pub fn inspect_text(f: &Facts) -> String {
    let colours = console::colors_enabled();
    console::set_colors_enabled(false);
    let plain = printable(&inspect_text_raw(f));
    console::set_colors_enabled(colours);
    redact(&if colours { restyle(&plain) } else { plain })
}

/// The styles of [`inspect_text_raw`] on its escaped text: headings (lines at the margin,
/// up to a parenthesis) bold, `warning` and `note` marks as [`findings`] colours them.
fn restyle(plain: &str) -> String {
    let mut out = String::new();
    for line in plain.lines() {
        if let Some(rest) = line.strip_prefix("Node ") {
            let _ = writeln!(out, "{} {rest}", style("Node").bold());
        } else if !line.is_empty() && !line.starts_with(' ') && line != "No risks found." {
            let (head, tail) = line.split_at(line.find(" (").unwrap_or(line.len()));
            let _ = writeln!(out, "{}{tail}", style(head).bold());
        } else if let Some(rest) = line.strip_prefix("  warning [") {
            let _ = writeln!(out, "  {} [{rest}", style("warning").yellow().bold());
        } else if let Some(rest) = line.strip_prefix("  note [") {
            let _ = writeln!(out, "  {} [{rest}", style("note").blue());
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn inspect_text_raw(f: &Facts) -> String {
    let mut out = String::new();
    node_and_kubelet_text(&mut out, f);
    runtimes_text(&mut out, f);
    docker_text(&mut out, f);
    runtime_configs_text(&mut out, f);
    findings(&mut out, "Risks", &f.risks);
    if f.risks.is_empty() {
        let _ = writeln!(out, "\nNo risks found.");
    }
    out
}

/// The node and its kubelet.
fn node_and_kubelet_text(out: &mut String, f: &Facts) {
    let _ = writeln!(
        out,
        "{} {}{}",
        style("Node").bold(),
        f.root,
        match (&f.os, f.live) {
            (Some(os), true) => format!(" (live, {os})"),
            (Some(os), false) => format!(" ({os})"),
            (None, true) => " (live)".into(),
            (None, false) => String::new(),
        }
    );
    let k = &f.kubelet;
    let _ = writeln!(out, "\n{}", style("Kubelet").bold());
    let line =
        |out: &mut String, label: &str, value: &dyn std::fmt::Display| field(out, 14, label, value);
    line(out, "version", &installed(&k.installed));
    let now = &f.current_runtime;
    line(
        out,
        "runtime now",
        &format!("{} ({})", now.kind.name(), now.reason),
    );
    let driver = k.cgroup_driver.as_deref().unwrap_or("not set (cgroupfs)");
    line(out, "cgroup driver", &driver);
    let missing = if k.config.exists { "" } else { " (missing)" };
    line(out, "config", &format!("{}{missing}", k.config.path));
    for ff in &k.flag_files {
        let flags: Vec<String> = k
            .flags
            .iter()
            .filter(|fl| fl.file == ff.path)
            .map(|fl| match &fl.value {
                Some(v) => format!("--{}={v}", fl.name),
                None => format!("--{}", fl.name),
            })
            .collect();
        let flags = if flags.is_empty() {
            "(none)".into()
        } else {
            flags.join(" ")
        };
        line(out, "flags", &format!("{}: {flags}", ff.path));
    }
}

/// A line of a section: its label in a column `width` wide, then the value.
fn field(out: &mut String, width: usize, label: &str, value: &dyn std::fmt::Display) {
    let _ = writeln!(out, "  {label:<width$} {value}");
}

/// The runtimes installed.
fn runtimes_text(out: &mut String, f: &Facts) {
    let _ = writeln!(out, "\n{}", style("Runtimes").bold());
    let r = &f.runtimes;
    for (name, i) in [
        ("Docker Engine", &r.docker),
        ("cri-dockerd", &r.cri_dockerd),
        ("containerd", &r.containerd),
        ("CRI-O", &r.crio),
    ] {
        field(out, 14, name, &installed(i));
    }
}

/// Docker's settings, its images' manifests, the registry credentials (names only).
fn docker_text(out: &mut String, f: &Facts) {
    let d = &f.docker.settings;
    if let Some(path) = &f.docker.daemon_json {
        let _ = writeln!(out, "\n{} ({path})", style("Docker settings").bold());
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let line = |out: &mut String, label: &str, value: &dyn std::fmt::Display| {
            field(out, 20, label, value)
        };
        line(out, "registry mirrors", &list(&d.registry_mirrors));
        line(out, "insecure registries", &list(&d.insecure_registries));
        let driver = d.cgroup_driver.as_deref();
        line(
            out,
            "cgroup driver",
            &driver.unwrap_or("default (cgroupfs)"),
        );
        let root = d.data_root.as_deref();
        line(
            out,
            "data-root",
            &root.unwrap_or("default (/var/lib/docker)"),
        );
        if let Some(sd) = &d.storage_driver {
            line(out, "storage driver", sd);
        }
        if let Some(n) = d.max_concurrent_downloads {
            line(out, "parallel downloads", &n);
        }
        if !d.other.is_empty() {
            let keys: Vec<&str> = d.other.keys().map(String::as_str).collect();
            line(out, "other keys", &keys.join(", "));
        }
    }
    for c in &f.docker.certs {
        let _ = writeln!(
            out,
            "  certs.d              {}: {} CA, {} client pair(s)",
            c.host,
            c.ca.len(),
            c.client.len()
        );
    }
    let m = &f.docker_manifests;
    if !m.pulled.is_empty() {
        use crate::inspect::manifests::Schema;
        let count = |s: Schema| m.of(s).len();
        let _ = writeln!(
            out,
            "  pulled images        {} repo digest(s): {} schema 2 or OCI, {} schema 1, {} unknown",
            m.pulled.len(),
            count(Schema::Schema2) + count(Schema::Oci) + count(Schema::List),
            count(Schema::Schema1),
            count(Schema::Unknown)
        );
    }
    if !f.credentials.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style("Registry credentials (names only)").bold()
        );
        for c in &f.credentials {
            let _ = writeln!(
                out,
                "  {}: {}{}",
                c.path,
                if c.registries.is_empty() {
                    "no registries".into()
                } else {
                    c.registries.join(", ")
                },
                if c.kubelet_reads {
                    ""
                } else {
                    " (the kubelet does not read this file)"
                }
            );
        }
    }
}

/// The runtimes' configs, CNI, the static pods.
fn runtime_configs_text(out: &mut String, f: &Facts) {
    if let Some(c) = &f.containerd_config {
        let _ = writeln!(out, "\n{}", style("containerd config").bold());
        let _ = writeln!(
            out,
            "  {} schema {}{}",
            c.path,
            c.schema,
            if c.cri_disabled {
                ", CRI plugin disabled"
            } else {
                ""
            }
        );
    }
    if !f.crio.files.is_empty() {
        let _ = writeln!(out, "\n{}", style("CRI-O config").bold());
        let _ = writeln!(out, "  {}", f.crio.files.join(", "));
    }
    let _ = writeln!(out, "\n{}", style("CNI").bold());
    let _ = writeln!(
        out,
        "  config   {} ({}): {}",
        f.cni.conf_dir,
        f.cni.conf_dir_source,
        if f.cni.conf_files.is_empty() {
            "empty".into()
        } else {
            f.cni.conf_files.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  plugins  {} ({}): {} plugin(s)",
        f.cni.bin_dirs.join(", "),
        f.cni.bin_dir_source,
        f.cni.plugins.len()
    );
    if !f.static_pods.is_empty() {
        let names: Vec<String> = f
            .static_pods
            .iter()
            .map(|p| p.name.clone().unwrap_or_else(|| p.file.clone()))
            .collect();
        let _ = writeln!(
            out,
            "\n{}\n  {}",
            style("Static pods").bold(),
            names.join(", ")
        );
    }
}

/// The plan's first line and the carried-over settings.
pub fn settings_text(p: &Plan) -> String {
    redact(&settings_text_raw(p))
}

fn settings_text_raw(p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} move the kubelet {} from {} to {} {}{} at {}",
        style("Plan:").bold(),
        p.kubelet_version,
        p.from.name(),
        p.target.name(),
        p.runtime_version,
        p.config_schema
            .map(|s| format!(" (config schema {s})"))
            .unwrap_or_default(),
        p.endpoint
    );
    let s = &p.settings;
    let _ = writeln!(out, "\n{}", style("Carried over").bold());
    let settings = serde_json::to_value(s).expect("the settings serialize");
    for line in crate::plan::settings_table::shown_lines(&settings) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The files as diffs, the numbered service actions, the warnings.
pub fn changes_text(p: &Plan, colour: bool) -> String {
    redact(&changes_text_raw(p, colour))
}

fn changes_text_raw(p: &Plan, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{} ({})", style("Files").bold(), p.files.len());
    for f in &p.files {
        let verb = if f.old.is_some() { "modify" } else { "create" };
        let _ = writeln!(
            out,
            "\n{} {} (mode {:04o}): {}",
            style(verb).bold(),
            f.path,
            f.mode,
            f.why
        );
        let diff = unified_diff(&f.path, f.old.as_deref(), &f.new);
        out.push_str(&if colour { colour_diff(&diff) } else { diff });
    }
    let _ = writeln!(out, "\n{}", style("Service actions").bold());
    if p.order.check_before_cutover {
        let _ = writeln!(
            out,
            "  The runtime is checked before the cutover: {}.",
            p.order.why
        );
    }
    for (i, a) in p.actions.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {a}", i + 1);
    }
    findings(&mut out, "Warnings", &p.warnings);
    out
}

pub fn plan_text(p: &Plan, colour: bool) -> String {
    redact(&plan_text_raw(p, colour))
}

fn plan_text_raw(p: &Plan, colour: bool) -> String {
    settings_text(p) + &changes_text(p, colour)
}

pub fn plan_json(p: &Plan, facts: &Facts, dry_run: bool) -> Value {
    let files: Vec<Value> = p
        .files
        .iter()
        .map(|f| {
            json!({
                "path": f.path,
                "mode": format!("{:04o}", f.mode),
                "change": if f.old.is_some() { "modify" } else { "create" },
                "why": f.why,
                "unit_file": f.unit_file,
                "diff": unified_diff(&f.path, f.old.as_deref(), &f.new),
                "content": redact(&f.new),
            })
        })
        .collect();
    crate::error::envelope(
        "migrate",
        json!({
            "dry_run": dry_run,
            "result": "planned",
            "node": facts.root,
            "from": p.from,
            "target": p.target,
            "runtime_version": p.runtime_version,
            "kubelet_version": p.kubelet_version,
            "config_schema": p.config_schema,
            "endpoint": p.endpoint,
            "settings": p.settings,
            "files": files,
            "actions": p.actions,
            "order": p.order,
            "warnings": p.warnings,
            "facts": facts,
        }),
    )
}

pub fn inspect_json(f: &Facts) -> Value {
    crate::error::envelope(
        "inspect",
        json!({
            "facts": f,
        }),
    )
}

/// The JSON form of a failure (it lives with the failures: the signal handler prints it too).
pub use crate::error::error_json;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_headings_styled_again() {
        let hostile = "reg\u{1b}]0;owned\u{7}.local\rNODE  FAKE\tx\u{9b}2J";
        let p = printable(hostile);
        assert!(!p.chars().any(|c| c.is_control()), "{p:?}");
        assert!(p.contains("\\u{1b}]0;owned") && p.contains("\\r"), "{p}");
        assert_eq!(printable("a\nb"), "a\nb");
        // Without colours (as in tests: no terminal) the restyled text is the text.
        let text = "Kubelet\n  runtime  x\n  warning [c] m\nDocker settings (/etc/d.json)\n";
        assert_eq!(restyle(text), text);
    }

    #[test]
    fn secrets_are_redacted() {
        let text = "  [plugins.x.configs.\"r\".auth]\n    password = \"hunter2\"\n    auth = \"dXNlcjpwYXNz\"\n+  \"auth\": \"abc\"\nusername = \"me\"\n";
        let r = redact(text);
        assert!(
            !r.contains("hunter2") && !r.contains("dXNlcjpwYXNz") && !r.contains("abc"),
            "{r}"
        );
        assert!(r.contains("username = \"me\""));
        assert!(r.contains(".auth]"), "table headers stay: {r}");
    }

    #[test]
    fn new_files_diff_from_dev_null() {
        let d = unified_diff("/etc/crictl.yaml", None, "a: 1\n");
        assert!(
            d.starts_with("--- /dev/null\n+++ b/etc/crictl.yaml\n"),
            "{d}"
        );
        assert!(d.contains("+a: 1"));
    }
}
