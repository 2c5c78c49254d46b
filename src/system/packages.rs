//! The node's package manager, for `--install-runtime`.

use super::run_ok;
use anyhow::{bail, Result};
use std::time::Duration;

pub trait Packages {
    /// apt-get, dnf, yum or zypper, whichever the node has.
    fn manager(&self) -> Option<&'static str>;
    fn install(&self, manager: &str, spec: &[String]) -> Result<()>;
    /// The version the node's package sources would install of a package (apt's candidate,
    /// dnf's latest available), `None` where none is offered or the manager cannot say.
    fn candidate(&self, manager: &str, package: &str) -> Option<String>;
}

pub struct RealPackages;

pub const MANAGERS: [&str; 4] = ["apt-get", "dnf", "yum", "zypper"];

impl Packages for RealPackages {
    fn manager(&self) -> Option<&'static str> {
        MANAGERS.into_iter().find(|m| which::which(m).is_ok())
    }

    fn install(&self, manager: &str, spec: &[String]) -> Result<()> {
        let spec: Vec<&str> = spec.iter().map(String::as_str).collect();
        let mut args: Vec<&str> = match manager {
            "apt-get" => vec!["install", "-y", "--no-install-recommends"],
            "dnf" | "yum" => vec!["install", "-y"],
            "zypper" => vec!["--non-interactive", "install"],
            other => bail!("unknown package manager {other}"),
        };
        args.extend(spec);
        run_ok(
            manager,
            &args,
            &[("DEBIAN_FRONTEND", "noninteractive")],
            Duration::from_secs(1200),
        )
        .map(|_| ())
    }

    fn candidate(&self, manager: &str, package: &str) -> Option<String> {
        let t = Duration::from_secs(120);
        match manager {
            "apt-get" => {
                let out = run_ok("apt-cache", &["policy", "--", package], &[], t).ok()?;
                candidate_of_policy(&out)
            }
            "dnf" | "yum" => run_ok(
                manager,
                &[
                    "-q",
                    "repoquery",
                    "--latest-limit",
                    "1",
                    "--qf",
                    "%{version}",
                    "--",
                    package,
                ],
                &[],
                t,
            )
            .ok()
            .and_then(|o| {
                o.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| l.trim().to_string())
            }),
            _ => None,
        }
    }
}

/// `Candidate: 1.6.20~ds1-1` of `apt-cache policy` (`(none)` is none).
pub fn candidate_of_policy(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_string)
}

/// The package (with a version pattern where the repository can match one) for a runtime.
pub fn runtime_package(
    manager: &str,
    target: crate::runtime::Target,
    docker_repo: bool,
    kubelet_minor: Option<(u32, u32)>,
) -> Vec<String> {
    vec![(target.about().package)(
        manager,
        docker_repo,
        kubelet_minor,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Target;

    #[test]
    fn apts_candidate_is_read() {
        let out = "containerd:\n  Installed: 1.4.13~ds1-1~deb11u4\n  Candidate: 1.6.20~ds1-1+deb12u3\n  Version table:\n";
        assert_eq!(
            candidate_of_policy(out).as_deref(),
            Some("1.6.20~ds1-1+deb12u3")
        );
        assert_eq!(
            candidate_of_policy("x:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
    }

    #[test]
    fn package_names_by_manager_and_repository() {
        for (manager, target, docker_repo, kubelet, want) in [
            ("apt-get", Target::Containerd, false, None, "containerd"),
            ("dnf", Target::Containerd, true, None, "containerd.io"),
            (
                "apt-get",
                Target::Crio,
                false,
                Some((1, 28)),
                "cri-o=1.28.*",
            ),
            ("dnf", Target::Crio, false, Some((1, 28)), "cri-o-1.28.*"),
            ("yum", Target::Crio, false, Some((1, 30)), "cri-o-1.30.*"),
            ("zypper", Target::Crio, false, Some((1, 28)), "cri-o<1.29"),
            ("zypper", Target::Crio, false, None, "cri-o"),
        ] {
            assert_eq!(
                runtime_package(manager, target, docker_repo, kubelet),
                [want],
                "{manager} {target:?} {kubelet:?}"
            );
        }
    }
}
