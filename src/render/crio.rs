//! CRI-O: one drop-in of our own in `/etc/crio/crio.conf.d/`, applied over crio.conf and the
//! drop-ins before it (runtime-facts §3).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Settings {
    pub cgroup_manager: String,
    pub sandbox_image: Option<String>,
    pub cni_conf_dir: String,
    pub cni_bin_dirs: Vec<String>,
    pub root: Option<String>,
    pub storage_driver: Option<String>,
}

pub fn drop_in(s: &Settings) -> String {
    super::template("crio-dropin.conf", s)
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
        });
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        assert_eq!(
            doc["crio"]["runtime"]["cgroup_manager"].as_str(),
            Some("systemd")
        );
        assert_eq!(
            doc["crio"]["image"]["pause_image"].as_str(),
            Some("registry.local/pause:3.9")
        );
        assert_eq!(
            doc["crio"]["network"]["plugin_dirs"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(doc["crio"].get("root").is_none());
    }
}
