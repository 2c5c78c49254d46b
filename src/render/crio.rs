//! CRI-O: one drop-in of our own in `/etc/crio/crio.conf.d/`, applied over crio.conf and the
//! drop-ins before it (runtime-facts §3).

use serde::Serialize;

/// The OCI runtime the drop-in makes CRI-O's default, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciChoice {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Settings {
    pub cgroup_manager: String,
    pub sandbox_image: Option<String>,
    pub cni_conf_dir: String,
    pub cni_bin_dirs: Vec<String>,
    pub root: Option<String>,
    pub storage_driver: Option<String>,
    pub handlers: Vec<super::Handler>,
    pub default_runtime: Option<String>,
    /// `nofile=65536:1048576`
    pub default_ulimits: Vec<String>,
    pub selinux: bool,
    /// The programs CRI-O runs, where the node's config does not say and they are off its
    /// defaults' way (plan::crio_node).
    pub conmon: Option<String>,
    pub pinns_path: Option<String>,
    /// The OCI runtime made the default where the version's default cannot run here.
    pub oci_runtime: Option<OciChoice>,
    /// The node's network by name, where a package's example bridge sorts before it.
    pub cni_default_network: Option<String>,
}

/// A handler as CRI-O's runtimes table takes it.
#[derive(Serialize)]
struct CrioHandler<'a> {
    name: &'a str,
    from: &'a str,
    crio_type: &'static str,
    crio_path: Option<&'a str>,
}

pub fn drop_in(s: &Settings) -> String {
    let handlers: Vec<CrioHandler> = s
        .handlers
        .iter()
        .map(|h| CrioHandler {
            name: &h.name,
            from: &h.from,
            crio_type: h.crio_type(),
            crio_path: h.crio_path(),
        })
        .collect();
    let mut ctx = serde_json::to_value(s).expect("settings serialize");
    ctx["handlers"] = serde_json::to_value(handlers).expect("handlers serialize");
    super::template("crio-dropin.conf", ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in_is_valid_toml_with_the_settings() {
        let text = drop_in(&Settings {
            cgroup_manager: "systemd".into(),
            sandbox_image: Some("registry.local/pause:3.9".into()),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dirs: vec!["/opt/cni/bin".into()],
            root: None,
            storage_driver: None,
            handlers: vec![super::super::Handler {
                name: "kata".into(),
                runtime_type: "io.containerd.kata.v2".into(),
                binary: None,
                shim: Some("/usr/bin/containerd-shim-kata-v2".into()),
                options: Default::default(),
                on_node: true,
                from: "dockerd --add-runtime".into(),
            }],
            default_runtime: Some("kata".into()),
            default_ulimits: vec!["nofile=65536:1048576".into()],
            selinux: true,
            conmon: Some("/usr/libexec/crio/conmon".into()),
            pinns_path: Some("/usr/libexec/crio/pinns".into()),
            oci_runtime: None,
            cni_default_network: Some("k8s-pod-network".into()),
        });
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(
            doc["crio"]["runtime"]["runtimes"]["kata"]["runtime_type"].as_str(),
            Some("vm")
        );
        assert_eq!(
            doc["crio"]["runtime"]["runtimes"]["kata"]["runtime_path"].as_str(),
            Some("/usr/bin/containerd-shim-kata-v2")
        );
        assert_eq!(doc["crio"]["runtime"]["selinux"].as_bool(), Some(true));
        assert_eq!(
            doc["crio"]["runtime"]["default_ulimits"]
                .as_array()
                .unwrap()
                .get(0)
                .and_then(|v| v.as_str()),
            Some("nofile=65536:1048576")
        );
        assert_eq!(
            doc["crio"]["network"]["plugin_dirs"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(doc["crio"].get("root").is_none());
        for (table, key, want) in [
            ("runtime", "default_runtime", "kata"),
            ("runtime", "cgroup_manager", "systemd"),
            ("image", "pause_image", "registry.local/pause:3.9"),
            ("runtime", "pinns_path", "/usr/libexec/crio/pinns"),
            ("network", "cni_default_network", "k8s-pod-network"),
        ] {
            assert_eq!(
                doc["crio"][table][key].as_str(),
                Some(want),
                "{table}.{key}"
            );
        }
    }
}
