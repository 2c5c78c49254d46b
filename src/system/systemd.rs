//! systemd through `systemctl` (and `journalctl` for a failed unit's last lines).

use super::{run, run_ok};
use anyhow::{Context, Result};
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
    /// The units systemd stops with this one (see [`Systemd::dependents`]), as they were when
    /// the state was recorded: a rollback brings them back too, after this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
}

impl UnitState {
    pub fn exists(&self) -> bool {
        self.enabled != "not-found" && !self.enabled.is_empty()
    }
    pub fn was_active(&self) -> bool {
        running(&self.active)
    }
    /// The `systemctl` verb that gives a unit its recorded enablement back: `enable` or
    /// `disable`; none for the states a migration never changes (static, masked, indirect...).
    pub fn link_verb(&self) -> Option<&'static str> {
        match self.enabled.as_str() {
            "enabled" | "enabled-runtime" => Some("enable"),
            "disabled" => Some("disable"),
            _ => None,
        }
    }
}

/// Whether an `ActiveState` (or `is-active` word) means the unit runs or is on its way to:
/// `activating` covers a service between two automatic restarts.
pub fn running(active: &str) -> bool {
    matches!(active, "active" | "activating" | "reloading")
}

/// The properties whose units systemd stops (and restarts) along with a unit: the reverse of
/// `Requires=`, `BindsTo=`, `Requisite=` and `PartOf=` (systemd.unit(5)). `Wants=` and
/// `After=` propagate no stop.
pub const STOPPED_WITH: [&str; 4] = ["RequiredBy", "BoundBy", "RequisiteOf", "ConsistsOf"];

pub trait Systemd {
    /// `systemctl VERB [UNIT]`: stop, start, restart, enable, disable, daemon-reload.
    fn act(&self, verb: &str, unit: Option<&str>) -> Result<()>;
    /// `is-enabled` and `is-active`; an error when systemctl could not tell (it did not answer
    /// in time, or said nothing): a state that cannot be read is never guessed.
    fn state(&self, unit: &str) -> Result<UnitState>;
    /// The unit's last journal lines, for an error message.
    fn journal(&self, unit: &str, lines: usize) -> String;
    /// The units systemd stops with this one when it stops (and restarts with it): those that
    /// require it, are bound to it, have it as a requisite or are part of it ([`STOPPED_WITH`]).
    /// Directly, not transitively; empty offline (nothing is stopped there).
    fn dependents(&self, unit: &str) -> Result<Vec<String>>;
    /// Each unit's `ActiveState`, in the order asked, in one call where it can: taken before and
    /// after each stop and start, so that what systemd did along with it is recorded.
    fn active_states(&self, units: &[String]) -> Result<Vec<String>> {
        units
            .iter()
            .map(|u| self.state(u).map(|s| s.active))
            .collect()
    }
    /// Stop `unit`, and return as soon as `gone()` says what the stop is for has happened (the
    /// stop then goes on, left to [`Systemd::wait_stops`]). True when the stop finished here.
    fn stop_until(&self, unit: &str, gone: &dyn Fn() -> bool) -> Result<bool> {
        let _ = gone;
        self.act("stop", Some(unit)).map(|_| true)
    }
    /// Wait up to `timeout` for every stop [`Systemd::stop_until`] left going; an error names
    /// one that failed or did not end.
    fn wait_stops(&self, timeout: Duration) -> Result<()> {
        let _ = timeout;
        Ok(())
    }
    /// `systemctl start --no-block`: the start job queued, not waited for.
    fn queue_start(&self, unit: &str) -> Result<()> {
        self.act("start", Some(unit))
    }
    /// `systemctl show -p P1,P2 UNIT`: `P=VALUE` lines, as systemd loaded the unit.
    fn show(&self, unit: &str, props: &[&str]) -> Result<String>;
}

/// Every unit of `units` and, transitively, every unit that systemd stops with one of them,
/// with its state; units this tool would never start or stop on their own (targets, slices,
/// scopes, devices) are left out. A state that cannot be read is an error, as for the units
/// themselves: a rollback would not know what to bring back.
pub fn states_with_dependents(systemd: &dyn Systemd, units: &[&str]) -> Result<Vec<UnitState>> {
    let mut queue: std::collections::VecDeque<String> =
        units.iter().map(|u| u.to_string()).collect();
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    while let Some(u) = queue.pop_front() {
        if seen.contains(&u) {
            continue;
        }
        seen.push(u.clone());
        let mut s = systemd.state(&u)?;
        if s.exists() {
            s.dependents = systemd
                .dependents(&u)?
                .into_iter()
                .filter(|d| {
                    ![".target", ".slice", ".scope", ".device"]
                        .iter()
                        .any(|k| d.ends_with(k))
                })
                .collect();
            s.dependents.sort();
            s.dependents.dedup();
            queue.extend(s.dependents.iter().cloned());
        }
        out.push(s);
    }
    Ok(out)
}

/// The values of `systemctl show -p NAME...` for one unit, space-separated lists joined.
fn show_list(text: &str, props: &[&str]) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| props.contains(k))
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
        .collect()
}

/// `ActiveState=` of each unit of a `systemctl show -p ActiveState U1 U2...`, in order.
fn show_active(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ActiveState="))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The real systemctl. With a root other than `/` every call gets `--root DIR` (offline:
/// enable and disable only; the caller never starts or stops anything then).
pub struct RealSystemd {
    pub root: Option<PathBuf>,
    /// `systemctl stop` calls still waiting for their job (see [`Systemd::stop_until`]).
    pub pending: std::sync::Mutex<Vec<(String, std::process::Child)>>,
}

impl RealSystemd {
    pub fn new(root: Option<PathBuf>) -> RealSystemd {
        RealSystemd {
            root,
            pending: Default::default(),
        }
    }
}

/// The longest a stop may take (Docker stopping many containers can take a while; never
/// forever).
const STOP_BOUND: Duration = Duration::from_secs(180);

/// A `systemctl stop` waited for up to `left` (past it, its group is killed: an error), then
/// forgotten by the signal handler; its failure as an error.
fn ended(unit: &str, mut child: std::process::Child, left: Duration) -> Result<()> {
    let status = super::wait_bounded(&mut child, left);
    crate::signals::forget_child(child.id());
    let status = status.with_context(|| format!("`systemctl stop {unit}`"))?;
    stop_result(unit, &mut child, status)
}

/// A finished `systemctl stop`: its failure as an error, with what it said.
fn stop_result(
    unit: &str,
    child: &mut std::process::Child,
    status: std::process::ExitStatus,
) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = (&mut err).take(64 << 10).read_to_string(&mut said);
    }
    anyhow::bail!(
        "`systemctl stop {unit}` failed ({status}){}",
        if said.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", said.trim())
        }
    )
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

    fn stop_until(&self, unit: &str, gone: &dyn Fn() -> bool) -> Result<bool> {
        if self.root.is_some() {
            return self.act("stop", Some(unit)).map(|_| true);
        }
        let path = which::which("systemctl")
            .map_err(|_| anyhow::anyhow!("`systemctl` is not installed (not found on PATH)"))?;
        // In a process group of its own and registered, as every child (`system::run`).
        let mut child = crate::signals::spawn(
            std::process::Command::new(path)
                .args(["stop", unit])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
        )?;
        let deadline = std::time::Instant::now() + STOP_BOUND;
        loop {
            if let Some(status) = child.try_wait()? {
                crate::signals::forget_child(child.id());
                return stop_result(unit, &mut child, status).map(|_| true);
            }
            if gone() {
                crate::sync::locked(&self.pending).push((unit.to_string(), child));
                return Ok(false);
            }
            if std::time::Instant::now() >= deadline {
                return ended(unit, child, Duration::ZERO).map(|_| true);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_stops(&self, timeout: Duration) -> Result<()> {
        let pending = std::mem::take(&mut *crate::sync::locked(&self.pending));
        let deadline = std::time::Instant::now() + timeout;
        let mut first_error = None;
        for (unit, child) in pending {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if let Err(e) = ended(&unit, child, left) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
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
            dependents: vec![],
        })
    }

    fn dependents(&self, unit: &str) -> Result<Vec<String>> {
        if self.root.is_some() {
            return Ok(vec![]);
        }
        Ok(show_list(&self.show(unit, &STOPPED_WITH)?, &STOPPED_WITH))
    }

    fn show(&self, unit: &str, props: &[&str]) -> Result<String> {
        if self.root.is_some() {
            anyhow::bail!("offline (--root): systemd's loaded units cannot be read");
        }
        let props = props.join(",");
        run_ok(
            "systemctl",
            &["show", "-p", &props, "--", unit],
            &[],
            Duration::from_secs(20),
        )
    }

    fn queue_start(&self, unit: &str) -> Result<()> {
        if self.root.is_some() {
            anyhow::bail!("offline (--root): nothing is started");
        }
        run_ok(
            "systemctl",
            &["start", "--no-block", "--", unit],
            &[],
            Duration::from_secs(20),
        )
        .map(|_| ())
    }

    fn active_states(&self, units: &[String]) -> Result<Vec<String>> {
        if self.root.is_some() {
            return Ok(units.iter().map(|_| "offline".to_string()).collect());
        }
        let mut args = vec!["show", "-p", "ActiveState", "--"];
        args.extend(units.iter().map(String::as_str));
        let out = run_ok("systemctl", &args, &[], Duration::from_secs(20))?;
        let states = show_active(&out);
        if states.len() != units.len() {
            anyhow::bail!(
                "`systemctl show -p ActiveState` gave {} state(s) for {} unit(s)",
                states.len(),
                units.len()
            );
        }
        Ok(states)
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
    fn show_output_is_read() {
        let one =
            "RequiredBy=docker.service\nBoundBy=\nRequisiteOf=a.service b.service\nConsistsOf=\n";
        assert_eq!(
            show_list(one, &STOPPED_WITH),
            ["docker.service", "a.service", "b.service"]
        );
        assert!(show_list("RequiredBy=\n", &STOPPED_WITH).is_empty());
        let many = "ActiveState=active\n\nActiveState=inactive\n\nActiveState=activating\n";
        assert_eq!(show_active(many), ["active", "inactive", "activating"]);
        assert!(running("activating") && !running("failed") && !running("offline"));
    }

    #[test]
    fn journal_hints() {
        let j = "E1126 kubelet: unknown flag: --network-plugin\n";
        assert_eq!(diagnose(j).len(), 1);
        assert!(diagnose("all good").is_empty());
    }

    /// A systemd that knows states and `RequiredBy`, nothing else.
    struct Model(Vec<(&'static str, &'static str, Vec<&'static str>)>);
    impl Systemd for Model {
        fn act(&self, _: &str, _: Option<&str>) -> Result<()> {
            Ok(())
        }
        fn state(&self, unit: &str) -> Result<UnitState> {
            let (enabled, active) = self
                .0
                .iter()
                .find(|(u, _, _)| *u == unit)
                .map(|(_, a, _)| ("enabled", *a))
                .unwrap_or(("not-found", "inactive"));
            Ok(UnitState {
                unit: unit.into(),
                enabled: enabled.into(),
                active: active.into(),
                dependents: vec![],
            })
        }
        fn journal(&self, _: &str, _: usize) -> String {
            String::new()
        }
        fn dependents(&self, unit: &str) -> Result<Vec<String>> {
            Ok(self
                .0
                .iter()
                .find(|(u, _, _)| *u == unit)
                .map(|(_, _, d)| d.iter().map(|d| d.to_string()).collect())
                .unwrap_or_default())
        }
        fn show(&self, _: &str, _: &[&str]) -> Result<String> {
            Ok(String::new())
        }
    }

    #[test]
    fn dependents_are_followed_transitively() {
        let m = Model(vec![
            (
                "docker.socket",
                "active",
                vec!["docker.service", "sockets.target"],
            ),
            (
                "docker.service",
                "active",
                vec!["kubelet.service", "app.service"],
            ),
            ("kubelet.service", "active", vec![]),
            ("app.service", "inactive", vec!["docker.socket"]),
        ]);
        let s = states_with_dependents(&m, &["docker.socket", "crio.service"]).unwrap();
        let names: Vec<&str> = s.iter().map(|u| u.unit.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.socket",
                "crio.service",
                "docker.service",
                "app.service",
                "kubelet.service"
            ]
        );
        assert_eq!(s[0].dependents, ["docker.service"], "targets left out");
        assert!(s[1].dependents.is_empty() && !s[1].exists());
        assert_eq!(s[2].dependents, ["app.service", "kubelet.service"]);
    }
}
