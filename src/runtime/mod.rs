//! What each runtime the kubelet can move to *is*, described once: its names, unit, CRI socket,
//! image store, the package that installs it. The target choice, the unit lists of the backup
//! and the undo, the package to install and the messages read from here, so that a third
//! runtime is one description (and its render module), not a dozen edits.

use crate::version::Version;
use serde::Serialize;

/// The runtime to move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Containerd,
    Crio,
}

/// One runtime, described.
#[derive(Debug)]
pub struct Runtime {
    pub target: Target,
    /// As people call it.
    pub name: &'static str,
    /// Its systemd unit.
    pub unit: &'static str,
    /// Its CRI socket, as the kubelet names it.
    pub endpoint: &'static str,
    /// Where it keeps images (the carry-over's destination, whose room is checked).
    pub image_store: &'static str,
    /// The package that installs it, for a package manager, from Docker's repository or not,
    /// for the kubelet's minor version (CRI-O's follows Kubernetes').
    pub package: fn(manager: &str, docker_repo: bool, kubelet_minor: Option<(u32, u32)>) -> String,
    /// Its daemon's binary, as PATH finds it.
    pub binary: &'static str,
    /// How to install it, for a message.
    pub install_hint: &'static str,
    /// The file cri-migrate writes the runtime's settings to (containerd's config, merged;
    /// CRI-O's drop-in of its own).
    pub config: &'static str,
    /// The newest config version the runtime of a version reads; `None` where its config has
    /// no version.
    pub config_version: fn(Version) -> Option<u8>,
    /// The pause image it uses when none is configured (runtime-facts §1).
    pub default_pause: fn(Version) -> &'static str,
    /// The oldest version cri-migrate moves a kubelet onto: an older one installed is
    /// upgraded by `--install-runtime` (containerd below 1.6: no CRI v1, no hosts.toml before
    /// 1.5). `None` where the version follows the kubelet's instead (CRI-O).
    pub oldest: Option<Version>,
}

pub const CONTAINERD: Runtime = Runtime {
    target: Target::Containerd,
    name: "containerd",
    unit: "containerd.service",
    endpoint: "unix:///run/containerd/containerd.sock",
    image_store: "/var/lib/containerd",
    // Docker's repository calls it containerd.io; the distributions call it containerd.
    package: |_, docker_repo, _| {
        if docker_repo {
            "containerd.io"
        } else {
            "containerd"
        }
        .to_string()
    },
    binary: "containerd",
    install_hint: "apt-get install containerd (Debian, Ubuntu), dnf install containerd.io (Docker's repository)",
    oldest: Some(Version::new(1, 6, 0)),
    config: "/etc/containerd/config.toml",
    // 2 for 1.x, 3 for 2.0 to 2.2, 4 from 2.3 (containerd RELEASES.md; version 1 is gone
    // from 2.0: containerd#8275).
    config_version: |v| {
        Some(if v.at_least(2, 3) {
            4
        } else if v.major >= 2 {
            3
        } else {
            2
        })
    },
    default_pause: |v| {
        if v.major >= 2 {
            "registry.k8s.io/pause:3.10"
        } else if v.at_least(1, 7) {
            "registry.k8s.io/pause:3.8"
        } else {
            "registry.k8s.io/pause:3.6"
        }
    },
};

pub const CRIO: Runtime = Runtime {
    target: Target::Crio,
    name: "CRI-O",
    unit: "crio.service",
    endpoint: "unix:///var/run/crio/crio.sock",
    image_store: "/var/lib/containers/storage",
    package: |manager, _, kubelet_minor| match (manager, kubelet_minor) {
        ("apt-get", Some((ma, mi))) => format!("cri-o={ma}.{mi}.*"),
        ("dnf" | "yum", Some((ma, mi))) => format!("cri-o-{ma}.{mi}.*"),
        ("zypper", Some((ma, mi))) => format!("cri-o<{ma}.{}", mi + 1),
        _ => "cri-o".to_string(),
    },
    binary: "crio",
    install_hint:
        "the cri-o package matching the kubelet's minor version, from the CRI-O repositories",
    oldest: None,
    config: "/etc/crio/crio.conf.d/99-cri-migrate.conf",
    config_version: |_| None,
    default_pause: |_| "its built-in pause image",
};

/// Every runtime, in the order they are offered (the first is the default choice).
pub const ALL: [&Runtime; 2] = [&CONTAINERD, &CRIO];

/// Docker's units, and cri-dockerd's: what a migration leaves.
pub const DOCKER_UNITS: [&str; 4] = [
    "docker.socket",
    "docker.service",
    "cri-docker.socket",
    "cri-docker.service",
];

impl Target {
    pub fn runtime(self) -> &'static Runtime {
        match self {
            Target::Containerd => &CONTAINERD,
            Target::Crio => &CRIO,
        }
    }
    pub fn name(self) -> &'static str {
        self.runtime().name
    }
    pub fn endpoint(self) -> &'static str {
        self.runtime().endpoint
    }
    pub fn unit(self) -> &'static str {
        self.runtime().unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_runtime_is_described_once_and_found_by_its_target() {
        for r in ALL {
            assert_eq!(r.target.runtime().unit, r.unit, "{}", r.name);
            assert_eq!(r.target.name(), r.name);
            assert!(r.unit.ends_with(".service") && r.endpoint.starts_with("unix:///"));
        }
        let units: Vec<&str> = ALL.iter().map(|r| r.unit).collect();
        assert_eq!(units, ["containerd.service", "crio.service"]);
    }
}
