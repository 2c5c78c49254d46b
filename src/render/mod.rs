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

/// Whether a string has controls that JSON leaves raw (DEL, C1): not a valid TOML basic string
/// (DEL) nor YAML double-quoted one (both) as JSON writes it.
fn raw_controls(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && (c as u32) >= 0x7f)
}

fn json_safe(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => !raw_controls(s),
        serde_json::Value::Array(a) => a.iter().all(json_safe),
        serde_json::Value::Object(_) => false,
        _ => true,
    }
}

/// A value as TOML writes it: JSON's compact form where that is valid TOML (strings, numbers,
/// booleans and arrays of them: what every file written so far holds, so a node migrated by an
/// earlier version still has nothing to do), else toml_edit's own writer.
/// A TOML key: bare where it can be (`crun`, `kata-qemu`), else quoted.
fn toml_key_filter(v: String) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        v
    } else {
        toml_edit::Key::new(v).display_repr().to_string()
    }
}

fn toml_filter(v: minijinja::Value) -> Result<String, minijinja::Error> {
    let json = serde_json::to_value(&v).map_err(filter_error)?;
    if json_safe(&json) && !json.is_null() {
        return serde_json::to_string(&json).map_err(filter_error);
    }
    let value = toml_value(&json).ok_or_else(|| filter_error("no TOML form for null"))?;
    Ok(value.to_string().trim().to_string())
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

/// Text for a comment line: control characters (a newline would end the comment) shown as `?`.
fn comment_filter(v: String) -> String {
    v.chars()
        .map(|c| if c.is_control() { '?' } else { c })
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
        // What earlier versions wrote, unchanged.
        assert_eq!(
            toml_filter(minijinja::Value::from_serialize(vec!["pull", "resolve"])).unwrap(),
            r#"["pull","resolve"]"#
        );
    }
}
