//! SELinux file labels for a runtime root moved off its default place: the equivalence rule
//! (`semanage fcontext -e`) that gives it the default root's labels, and the relabel. Run on the
//! live node only, behind a trait the tests swap.

use super::run_ok;
use anyhow::Result;
use std::time::Duration;

pub trait Labels {
    /// `semanage fcontext -a -e LIKE PATH`: PATH gets LIKE's labels.
    fn add_equivalence(&self, path: &str, like: &str) -> Result<()>;
    /// `semanage fcontext -d -e LIKE PATH`, the undo.
    fn remove_equivalence(&self, path: &str, like: &str) -> Result<()>;
    /// Create PATH if missing, then `restorecon -R PATH`.
    fn relabel(&self, path: &str) -> Result<()>;
}

/// The real programs (policycoreutils). Rebuilding the policy can take a while: bounded at five
/// minutes each.
pub struct RealLabels;

const TIMEOUT: Duration = Duration::from_secs(300);

/// `semanage fcontext -a|-d -e LIKE -- PATH`: an equivalence rule added or deleted.
fn equivalence(op: &str, path: &str, like: &str) -> Result<()> {
    run_ok(
        "semanage",
        &["fcontext", op, "-e", like, "--", path],
        &[],
        TIMEOUT,
    )
    .map(|_| ())
}

impl Labels for RealLabels {
    fn add_equivalence(&self, path: &str, like: &str) -> Result<()> {
        equivalence("-a", path, like)
    }
    fn remove_equivalence(&self, path: &str, like: &str) -> Result<()> {
        equivalence("-d", path, like)
    }
    fn relabel(&self, path: &str) -> Result<()> {
        std::fs::create_dir_all(path)?;
        // The path was checked when planned (absolute, no control character); `--` all the
        // same, so that no path is ever read as an option.
        crate::names::node_path_value(path).map_err(|e| anyhow::anyhow!("{path:?}: {e}"))?;
        run_ok("restorecon", &["-R", "--", path], &[], TIMEOUT).map(|_| ())
    }
}
