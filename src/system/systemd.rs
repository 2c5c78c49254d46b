//! systemd through `systemctl` (and `journalctl` for a failed unit's last lines).

use super::{run, run_ok};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A unit's state as recorded before the migration and restored by a rollback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnitState {
    pub unit: String,
    /// `is-enabled`: enabled, disabled, static, masked, not-found...
    pub enabled: String,
    /// `is-active`: active, inactive, failed...; `offline` under --root.
    pub active: String,
}

impl UnitState {
    pub fn exists(&self) -> bool {
        self.enabled != "not-found" && !self.enabled.is_empty()
    }
    pub fn was_active(&self) -> bool {
        matches!(self.active.as_str(), "active" | "activating" | "reloading")
    }
}

pub trait Systemd {
    /// `systemctl VERB [UNIT]`: stop, start, restart, enable, disable, daemon-reload.
    fn act(&self, verb: &str, unit: Option<&str>) -> Result<()>;
    /// `is-enabled` and `is-active`; an error when systemctl could not tell (it did not answer
    /// in time, or said nothing): a state that cannot be read is never guessed.
    fn state(&self, unit: &str) -> Result<UnitState>;
    /// The unit's last journal lines, for an error message.
    fn journal(&self, unit: &str, lines: usize) -> String;
}

/// The real systemctl. With a root other than `/` every call gets `--root DIR` (offline:
/// enable and disable only; the caller never starts or stops anything then).
pub struct RealSystemd {
    pub root: Option<PathBuf>,
}

impl RealSystemd {
    fn args<'a>(&'a self, root: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut a = Vec::new();
        if self.root.is_some() {
            a.extend(["--root", root]);
        }
        a.extend(rest);
        a
    }
}

impl Systemd for RealSystemd {
    fn act(&self, verb: &str, unit: Option<&str>) -> Result<()> {
        let root = self
            .root
            .as_ref()
            .map(|r| r.display().to_string())
            .unwrap_or_default();
        let mut rest = vec![verb];
        rest.extend(unit);
        // Stopping Docker with many containers can take a while; never forever.
        run_ok(
            "systemctl",
            &self.args(&root, &rest),
            &[],
            Duration::from_secs(180),
        )
        .map(|_| ())
    }

    fn state(&self, unit: &str) -> Result<UnitState> {
        let root = self
            .root
            .as_ref()
            .map(|r| r.display().to_string())
            .unwrap_or_default();
        let word = |verb: &str| -> Result<String> {
            let r = run(
                "systemctl",
                &self.args(&root, &[verb, unit]),
                &[],
                Duration::from_secs(20),
            )?;
            let w = r.stdout.trim().lines().next().unwrap_or("").to_string();
            if !w.is_empty() {
                Ok(w)
            } else if r.stderr.contains("No such file") || r.stderr.contains("not found") {
                Ok("not-found".to_string())
            } else {
                anyhow::bail!(
                    "`systemctl {verb} {unit}` gave no state ({})",
                    r.stderr.trim()
                )
            }
        };
        let enabled = word("is-enabled")?;
        // Offline (--root) nothing runs: there is no active state to read.
        let active = if self.root.is_some() {
            "offline".to_string()
        } else {
            word("is-active")?
        };
        Ok(UnitState {
            unit: unit.to_string(),
            enabled,
            active,
        })
    }

    fn journal(&self, unit: &str, lines: usize) -> String {
        let n = lines.to_string();
        run(
            "journalctl",
            &["-u", unit, "-n", &n, "--no-pager", "-o", "cat"],
            &[],
            Duration::from_secs(20),
        )
        .map(|r| r.stdout)
        .unwrap_or_default()
    }
}

/// What a failed unit's journal usually means.
pub fn diagnose(journal: &str) -> Vec<&'static str> {
    const HINTS: [(&str, &str); 9] = [
        ("unknown flag", "the kubelet refuses a flag that its version removed: check kubeadm-flags.env and /etc/default/kubelet"),
        ("failed to parse kubelet flag", "the kubelet refuses a flag that its version removed: check kubeadm-flags.env and /etc/default/kubelet"),
        ("container runtime is down", "the kubelet cannot reach the runtime: is its CRI plugin enabled and the endpoint right?"),
        ("validate service connection", "the kubelet cannot reach the runtime: is its CRI plugin enabled and the endpoint right?"),
        ("cgroup driver", "the kubelet's and the runtime's cgroup drivers differ (SystemdCgroup / cgroup_manager)"),
        ("invalid disabled plugin URI", "containerd's disabled_plugins holds a schema-1 short name such as \"cri\""),
        ("failed to load TOML", "containerd cannot parse /etc/containerd/config.toml"),
        ("mirrors` cannot be set when `config_path` is provided", "containerd's config sets registry.mirrors together with config_path"),
        ("address already in use", "another process holds the socket or port"),
    ];
    let lower = journal.to_lowercase();
    let mut out: Vec<&'static str> = HINTS
        .iter()
        .filter(|(k, _)| lower.contains(&k.to_lowercase()))
        .map(|(_, h)| *h)
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_hints() {
        let j = "E1126 kubelet: unknown flag: --network-plugin\n";
        assert_eq!(diagnose(j).len(), 1);
        assert!(diagnose("all good").is_empty());
    }
}
