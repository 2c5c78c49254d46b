//! kubectl, for draining the node and the kubeadm CRI socket annotation.

use super::run_ok;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

pub trait Kubectl {
    fn run(&self, args: &[&str]) -> Result<String>;
}

pub struct RealKubectl {
    pub kubeconfig: PathBuf,
    /// Where the kubeconfig came from (`--kubeconfig`, `$KUBECONFIG`...), for the report.
    pub source: String,
}

impl RealKubectl {
    /// One line for the report: which kubeconfig, and why that one.
    pub fn said(&self) -> String {
        format!(
            "kubectl with {} (from {})",
            self.kubeconfig.display(),
            self.source
        )
    }
}

impl Kubectl for RealKubectl {
    fn run(&self, args: &[&str]) -> Result<String> {
        let kc = self.kubeconfig.display().to_string();
        let mut a = vec!["--kubeconfig", kc.as_str()];
        a.extend(args);
        // A drain waits for pods to leave: bounded by its own --timeout, plus a margin.
        run_ok("kubectl", &a, &[], Duration::from_secs(900))
    }
}
