//! Rendering: pure functions from settings (and a file's current text) to its new text.
//! Templates live in `templates/` and are compiled into the binary.

pub mod containerd;
pub mod crio;
pub mod kubelet;
pub mod registries;
pub mod toml_merge;
pub mod yaml;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A CRI runtime handler carried from one of Docker's runtimes. Both renderers read it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Handler {
    /// Docker's name for the runtime: the handler a RuntimeClass names.
    pub name: String,
    /// containerd's `runtime_type`: the runc shim for a runc-compatible binary
    /// (`io.containerd.runc.v2`), else the runtime's own shim (`io.containerd.kata.v2`).
    pub runtime_type: String,
    /// The runc-compatible binary (containerd's `BinaryName`; CRI-O's `runtime_path`).
    pub binary: Option<String>,
    /// The shim's own binary on the node (CRI-O runs Kata's shim as a `vm` runtime).
    pub shim: Option<String>,
    /// Options Docker gave the shim (`runtimes.NAME.options`).
    pub options: BTreeMap<String, serde_json::Value>,
    /// What it runs is on the node: the check runs a test pod through it.
    pub on_node: bool,
    pub from: String,
}

impl Handler {
    pub fn is_runc_shim(&self) -> bool {
        self.runtime_type == "io.containerd.runc.v2"
    }
    /// CRI-O's `runtime_type`: `vm` for Kata's shim, else `oci`.
    pub fn crio_type(&self) -> &'static str {
        if self.runtime_type.contains("kata") && self.shim.is_some() {
            "vm"
        } else {
            "oci"
        }
    }
    /// CRI-O's `runtime_path`: the shim for a `vm` runtime, else the binary.
    pub fn crio_path(&self) -> Option<&str> {
        if self.crio_type() == "vm" {
            self.shim.as_deref()
        } else {
            self.binary.as_deref()
        }
    }
}

const TEMPLATES: [(&str, &str); 8] = [
    (
        "containerd-base-spec.json",
        include_str!("../../templates/containerd-base-spec.json"),
    ),
    (
        "containerd-v2.toml",
        include_str!("../../templates/containerd-v2.toml"),
    ),
    (
        "containerd-v3.toml",
        include_str!("../../templates/containerd-v3.toml"),
    ),
    ("hosts.toml", include_str!("../../templates/hosts.toml")),
    (
        "crio-dropin.conf",
        include_str!("../../templates/crio-dropin.conf"),
    ),
    (
        "registries.conf",
        include_str!("../../templates/registries.conf"),
    ),
    ("crictl.yaml", include_str!("../../templates/crictl.yaml")),
    (
        "containerd-limits.conf",
        include_str!("../../templates/containerd-limits.conf"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Values are quoted explicitly, each for its format: `toml` and `yaml` (a JSON string is
        // not always a valid TOML or YAML one: DEL and C1 controls stay raw in JSON), and
        // `comment` for text in a comment line.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.add_filter("toml", toml_filter);
        env.add_filter("yaml", yaml_filter);
        env.add_filter("comment", comment_filter);
        env.add_filter("toml_key", toml_key_filter);
        env.set_keep_trailing_newline(true);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect("templates/ compile");
        }
        env
    })
}

/// Render a template. The templates ship with the binary and are tested, so a failure here is a
/// bug, reported as such.
pub fn template(name: &str, ctx: impl Serialize) -> String {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| panic!("template {name} failed to render: {e:#}"))
}

fn filter_error(e: impl std::fmt::Display) -> minijinja::Error {
    minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
}

/// Whether a string has controls that JSON leaves raw (DEL, C1): not a valid YAML
/// double-quoted scalar as JSON writes it.
fn raw_controls(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && (c as u32) >= 0x7f)
}

/// Characters JSON leaves raw that a TOML reader may refuse raw: DEL (TOML forbids it), the C1
/// controls, U+FEFF, and U+FFFD, which the Go TOML reader of CRI-O 1.24 (BurntSushi's, before it
/// told a real U+FFFD from a bad byte) takes for an encoding error and refuses the whole file.
fn toml_escaped(c: char) -> bool {
    (c.is_control() && (c as u32) >= 0x7f) || c == '\u{feff}' || c == '\u{fffd}'
}

/// A TOML basic string: JSON's escapes are TOML's, and what JSON leaves raw that a reader may
/// refuse goes as `\uXXXX`. Plain strings come out byte for byte as JSON writes them, so a node
/// migrated by an earlier version still has nothing to do.
fn toml_string(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string serializes");
    if !json.chars().any(toml_escaped) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if toml_escaped(c) {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A TOML key: bare where it can be (`crun`, `kata-qemu`), else a quoted key (a basic string).
fn toml_key_filter(v: String) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        v
    } else {
        toml_string(&v)
    }
}

/// A value as TOML writes it, in JSON's compact form for strings, numbers, booleans and arrays
/// (what every file written so far holds), inline tables as toml_edit writes them; every string
/// a basic string that every reader of the runtimes takes (`toml_string`).
fn toml_filter(v: minijinja::Value) -> Result<String, minijinja::Error> {
    let json = serde_json::to_value(&v).map_err(filter_error)?;
    toml_text(&json).ok_or_else(|| filter_error("no TOML form for null"))
}

fn toml_text(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(_) | J::Number(_) => v.to_string(),
        J::String(s) => toml_string(s),
        J::Array(a) => {
            let items: Option<Vec<String>> = a.iter().map(toml_text).collect();
            format!("[{}]", items?.join(","))
        }
        J::Object(o) if o.is_empty() => "{}".to_string(),
        J::Object(o) => {
            let items: Option<Vec<String>> = o
                .iter()
                .map(|(k, x)| {
                    Some(format!(
                        "{} = {}",
                        toml_key_filter(k.clone()),
                        toml_text(x)?
                    ))
                })
                .collect();
            format!("{{ {} }}", items?.join(", "))
        }
    })
}

pub fn toml_value(v: &serde_json::Value) -> Option<toml_edit::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => (*b).into(),
        J::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64()?.into(),
        },
        J::String(s) => s.as_str().into(),
        J::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(toml_value(x)?);
            }
            arr.into()
        }
        J::Object(o) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in o {
                t.insert(k, toml_value(x)?);
            }
            t.into()
        }
    })
}

/// A value as YAML writes it: a JSON string (a YAML double-quoted scalar) where JSON escapes
/// everything YAML needs escaped; else serde_norway's own quoting (DEL and C1 controls, which JSON
/// leaves raw and YAML forbids raw).
fn yaml_filter(v: minijinja::Value) -> Result<String, minijinja::Error> {
    let json = serde_json::to_value(&v).map_err(filter_error)?;
    if let serde_json::Value::String(s) = &json {
        if !raw_controls(s) {
            return serde_json::to_string(s).map_err(filter_error);
        }
    }
    let text = serde_norway::to_string(&json).map_err(filter_error)?;
    Ok(text.trim_end().to_string())
}

/// Text for a comment line: control characters (a newline would end the comment), U+FEFF and
/// U+FFFD (`toml_escaped`) shown as `?`.
fn comment_filter(v: String) -> String {
    v.chars()
        .map(|c| {
            if c.is_control() || toml_escaped(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_for_their_format() {
        for s in [
            "plain",
            "quote \" and \\",
            "new\nline",
            "del \u{7f} c1 \u{85}",
            "tab\tbell\u{7}",
            "bom \u{feff} replacement \u{fffd}",
        ] {
            let toml = template("crictl.yaml", serde_json::json!({ "endpoint": s }));
            let y: serde_norway::Value = serde_norway::from_str(&toml).unwrap();
            assert_eq!(y["runtime-endpoint"].as_str(), Some(s), "{toml}");
            let t = toml_filter(minijinja::Value::from(s)).unwrap();
            let doc: toml_edit::DocumentMut = format!("k = {t}\n").parse().unwrap();
            assert_eq!(doc["k"].as_str(), Some(s), "{t}");
            let list = toml_filter(minijinja::Value::from_serialize(vec![s, "x"])).unwrap();
            let doc: toml_edit::DocumentMut = format!("k = {list}\n").parse().unwrap();
            assert_eq!(
                doc["k"].as_array().unwrap().get(0).unwrap().as_str(),
                Some(s)
            );
        }
        assert_eq!(comment_filter("a\nb".into()), "a?b");
        // CRI-O 1.24 refuses a raw U+FFFD (properties.rs, every_crio_plan_…): escaped.
        assert_eq!(toml_string("a\u{fffd}\u{7f}"), r#""a\uFFFD\u007F""#);
        assert_eq!(toml_key_filter("r\u{fffd}".into()), r#""r\uFFFD""#);
        let table = serde_json::json!({"a b": ["\u{85}", 1], "c": {"d": true}});
        let t = toml_text(&table).unwrap();
        assert!(!t.contains('\u{85}'), "{t}");
        let doc: toml_edit::DocumentMut = format!("k = {t}\n").parse().unwrap();
        assert_eq!(doc["k"]["a b"][0].as_str(), Some("\u{85}"));
        assert_eq!(doc["k"]["c"]["d"].as_bool(), Some(true));
        // What earlier versions wrote, unchanged.
        assert_eq!(
            toml_filter(minijinja::Value::from_serialize(vec!["pull", "resolve"])).unwrap(),
            r#"["pull","resolve"]"#
        );
    }
}
