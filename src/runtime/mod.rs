//! The runtimes the kubelet can move to. What each *is* — its names, unit, CRI socket, image
//! store, package, binary — is its [`About`] here, read by every layer (the target choice, the
//! backup's and the undo's unit lists, the package to install, the messages). What each *does*
//! in a migration — the settings it takes, the files it writes, its version rules, its order
//! beside Docker, its image ways — is its module (`containerd.rs`, `crio.rs`) implementing
//! [`target::TargetRuntime`], found through [`registry::of`].
//!
//! A new runtime: a module implementing the trait, its `About` and `Target` variant here, and
//! its line in `registry.rs` (the test-only `third.rs` is one, planned end to end).

pub mod containerd;
pub mod crio;
pub mod registry;
pub mod target;
#[cfg(test)]
mod third;

use serde::Serialize;

/// The runtime to move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Containerd,
    Crio,
    /// A runtime that exists only in the unit tests, to show what adding one takes.
    #[cfg(test)]
    Third,
}

/// The container runtimes a kubelet can be on: Docker Engine (dockershim, cri-dockerd) and
/// the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    Dockershim,
    CriDockerd,
    Containerd,
    Crio,
    Unknown,
}

impl RuntimeKind {
    pub fn from_endpoint(endpoint: &str) -> RuntimeKind {
        if endpoint.ends_with("dockershim.sock") {
            RuntimeKind::Dockershim
        } else if endpoint.contains("cri-dockerd") {
            RuntimeKind::CriDockerd
        } else if endpoint.ends_with("containerd.sock") {
            RuntimeKind::Containerd
        } else if endpoint.ends_with("crio.sock") {
            RuntimeKind::Crio
        } else {
            RuntimeKind::Unknown
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Dockershim => "dockershim (Docker Engine)",
            RuntimeKind::CriDockerd => "cri-dockerd (Docker Engine)",
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::Crio => "CRI-O",
            RuntimeKind::Unknown => "unknown",
        }
    }

    /// Runtimes that are Docker Engine underneath.
    pub fn is_docker(self) -> bool {
        matches!(self, RuntimeKind::Dockershim | RuntimeKind::CriDockerd)
    }
}

/// What one runtime is.
#[derive(Debug)]
pub struct About {
    pub target: Target,
    /// Inspection's name for it, where the kubelet already runs on it.
    pub kind: RuntimeKind,
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
}

pub const CONTAINERD: About = About {
    target: Target::Containerd,
    kind: RuntimeKind::Containerd,
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
    config: "/etc/containerd/config.toml",
};

pub const CRIO: About = About {
    target: Target::Crio,
    kind: RuntimeKind::Crio,
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
    config: "/etc/crio/crio.conf.d/99-cri-migrate.conf",
};

/// Every runtime, in the order they are offered (the first is the default choice).
pub const ALL: [&About; 2] = [&CONTAINERD, &CRIO];

/// Docker's units, and cri-dockerd's: what a migration leaves.
pub const DOCKER_UNITS: [&str; 4] = [
    "docker.socket",
    "docker.service",
    "cri-docker.socket",
    "cri-docker.service",
];

impl Target {
    pub fn about(self) -> &'static About {
        match self {
            Target::Containerd => &CONTAINERD,
            Target::Crio => &CRIO,
            #[cfg(test)]
            Target::Third => &third::ABOUT,
        }
    }
    pub fn name(self) -> &'static str {
        self.about().name
    }
    pub fn endpoint(self) -> &'static str {
        self.about().endpoint
    }
    pub fn unit(self) -> &'static str {
        self.about().unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_runtime_is_described_once_and_found_by_its_target() {
        for r in ALL {
            assert_eq!(r.target.about().unit, r.unit, "{}", r.name);
            assert_eq!(r.target.name(), r.name);
            assert!(r.unit.ends_with(".service") && r.endpoint.starts_with("unix:///"));
        }
        let units: Vec<&str> = ALL.iter().map(|r| r.unit).collect();
        assert_eq!(units, ["containerd.service", "crio.service"]);
    }
}
