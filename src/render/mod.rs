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
use std::sync::OnceLock;

const TEMPLATES: [(&str, &str); 6] = [
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
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Values are quoted explicitly with `tojson` (a JSON string is a valid TOML and YAML string).
        env.set_auto_escape_callback(|_| AutoEscape::None);
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
