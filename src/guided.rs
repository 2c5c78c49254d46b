//! The guided mode's questions (dialoguer). Only asked when stdin and stderr are terminals.

use crate::error::Failure;
use crate::inspect::Facts;
use crate::plan::Target;
use anyhow::Result;
use dialoguer::theme::ColorfulTheme;
use dialoguer::{Confirm, Select};

fn theme() -> ColorfulTheme {
    ColorfulTheme::default()
}

/// The runtime to move to; the default is the one installed (containerd when both or neither).
pub fn choose_target(facts: &Facts) -> Result<Target> {
    let installed = |t: Target| crate::runtime::registry::of(t).installed(facts);
    let items: Vec<String> = crate::runtime::ALL
        .iter()
        .map(|r| format!("{} ({})", r.name, installed_word(installed(r.target))))
        .collect();
    // The first installed one, else the first offered.
    let default = crate::runtime::ALL
        .iter()
        .position(|r| installed(r.target).installed)
        .unwrap_or(0);
    let i = Select::with_theme(&theme())
        .with_prompt("Move the kubelet to which runtime?")
        .items(&items)
        .default(default)
        .interact()?;
    Ok(crate::runtime::ALL[i].target)
}

fn installed_word(i: &crate::inspect::Installed) -> String {
    match (i.installed, i.version) {
        (true, Some(v)) => format!("installed, {v}"),
        (true, None) => "installed".into(),
        (false, _) => "not installed".into(),
    }
}

pub fn confirm(prompt: &str, default: bool) -> Result<bool> {
    Ok(Confirm::with_theme(&theme())
        .with_prompt(prompt)
        .default(default)
        .interact()?)
}

/// Ask, and turn a "no" into a cancellation that changes nothing. A question whose yes changes
/// the node passes `default: false` (as `kubeadm reset` does): Enter alone never migrates. The
/// theme echoes the answer on the prompt's line.
pub fn confirm_or_cancel(prompt: &str, cancelled: &str, default: bool) -> Result<()> {
    if confirm(prompt, default)? {
        Ok(())
    } else {
        Err(Failure::Cancelled(cancelled.to_string()).into())
    }
}
