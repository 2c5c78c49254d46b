//! `cri-migrate verify`: CRI Version, Status, a test pull and a test pod, as the kubelet would.

use super::NodeAccess;
use crate::cli::{Output, VerifyArgs};
use crate::cri::{self, sandbox, Verification};
use crate::error::{exit, Failure};
use crate::inspect::{self, InspectOptions};
use anyhow::Result;
use std::io::Write;
use std::time::Duration;

pub fn run(t: &NodeAccess, args: &VerifyArgs, out: &mut dyn Write) -> Result<i32> {
    // A node image's kubelet flags could name any socket of the host (and the image to pull
    // and run there): offline nothing is connected to.
    if !t.live {
        return Err(Failure::Usage(
            "verify talks to the node's runtime through its CRI socket, and under --root nothing is connected to (the socket the image's kubelet flags name could be the host's): run `cri-migrate verify` on the node itself".into(),
        )
        .into());
    }
    let facts = inspect::inspect(t.node, t.commands(), &InspectOptions::default())?;
    let listening: Vec<&str> = crate::runtime::ALL
        .iter()
        .map(|r| r.endpoint)
        .filter(|e| t.node.exists(e.trim_start_matches("unix://")))
        .collect();
    let endpoint = endpoint(
        args.endpoint.clone(),
        facts.kubelet.runtime_endpoint.clone(),
        &listening,
    )?;
    // The node's pause image: the kubelet's flag, else what the runtime is configured with.
    let image = args
        .image
        .clone()
        .or_else(|| facts.kubelet.pod_infra_container_image.clone())
        .or_else(|| {
            facts
                .containerd_config
                .as_ref()
                .and_then(|c| c.sandbox_image.clone())
        })
        .or_else(|| facts.crio.pause_image.clone())
        .unwrap_or_else(|| "registry.k8s.io/pause:3.10".to_string());
    let cred = crate::cri::credentials_for(
        t.node,
        facts.kubelet.credential_providers().as_ref(),
        &image,
    )?;
    let result = cri::wait_ready(&endpoint, Duration::from_secs(args.timeout)).and_then(|c| {
        let mut v = cri::verify(&c, &endpoint, &image, cred.as_ref())?;
        if !args.no_sandbox {
            v.sandbox = Some(sandbox::check_as_kubelet(
                &c,
                &v.conditions,
                facts.kubelet.cgroup_driver.as_deref(),
                &facts.kubelet.cluster_dns,
                facts.kubelet.cluster_domain.as_deref(),
                &image,
                None,
            )?);
        }
        Ok(v)
    });
    match (result, args.output) {
        (Ok(v), Output::Json) => {
            crate::error::write_envelope(
                out,
                "verify",
                serde_json::json!({"result": "ok", "verification": v}),
            )?;
            Ok(exit::OK)
        }
        (Ok(v), Output::Text) => {
            verification_text(out, &v)?;
            Ok(exit::OK)
        }
        (Err(e), output) => {
            let f = Failure::VerifyFailed(format!(
                "verification of {endpoint} with {image} failed: {e:#}"
            ));
            if output == Output::Json {
                writeln!(
                    out,
                    "{}",
                    crate::report::error_json("verify", f.kind(), &f.to_string(), f.exit_code())
                )?;
            }
            Ok(super::report_failure(&f))
        }
    }
}

/// The CRI endpoint to verify: `--endpoint`, else the kubelet's, else the one CRI runtime whose
/// socket is on the node; with several, or none, the operator names it.
fn endpoint(
    given: Option<String>,
    kubelet: Option<String>,
    listening: &[&str],
) -> Result<String, Failure> {
    if let Some(e) = given.or(kubelet) {
        return Ok(e);
    }
    match listening {
        [one] => Ok(one.to_string()),
        [] => Err(Failure::preflight(
            "the kubelet names no CRI endpoint and no CRI runtime's socket is on the node",
            "Start the runtime, or name its socket with --endpoint unix:///PATH.",
        )),
        several => Err(Failure::preflight(
            format!(
                "the kubelet names no CRI endpoint and several runtimes listen: {}",
                several.join(", ")
            ),
            "Name the one to verify with --endpoint.",
        )),
    }
}

/// What the runtime said, the pull and the test pod, as lines for a person.
fn verification_text(out: &mut dyn Write, v: &Verification) -> Result<()> {
    writeln!(
        out,
        "{} {} answers CRI {} on {}",
        v.version.runtime_name,
        v.version.runtime_version,
        v.version.runtime_api_version,
        v.endpoint
    )?;
    for c in &v.conditions {
        writeln!(
            out,
            "  {:<13} {}{}",
            c.kind,
            c.status,
            if c.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.message)
            }
        )?;
    }
    writeln!(
        out,
        "pulled {} in {} ms: {}{}",
        v.pull.image,
        v.pull.duration_ms,
        v.digest.as_deref().unwrap_or(&v.pull.image_ref),
        v.pull
            .credential
            .as_deref()
            .map(|c| format!(" (with the kubelet's credentials for {c})"))
            .unwrap_or_default()
    )?;
    match &v.sandbox {
        Some(r) => {
            writeln!(
                out,
                "test pod: {} under {} ({} cgroup driver, {}), container {} ran; removed ({} ms)",
                r.network,
                r.cgroup_parent,
                r.cgroup_driver.name(),
                r.driver_checked_by,
                r.image,
                r.duration_ms
            )?;
            if let Some(n) = &r.network_note {
                writeln!(out, "  note: {n}")?;
            }
        }
        None => writeln!(out, "test pod: skipped (--no-sandbox)")?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_operators_else_the_kubelets_else_the_one_listening() {
        let (ctd, crio) = (
            crate::runtime::CONTAINERD.endpoint,
            crate::runtime::CRIO.endpoint,
        );
        let e = |given: Option<&str>, kubelet: Option<&str>, listening: &[&str]| {
            endpoint(given.map(Into::into), kubelet.map(Into::into), listening)
        };
        assert_eq!(
            e(Some("unix:///x.sock"), Some(ctd), &[crio]).unwrap(),
            "unix:///x.sock"
        );
        assert_eq!(e(None, Some(ctd), &[crio]).unwrap(), ctd);
        // A CRI-O node whose kubelet names none: CRI-O's, not containerd's.
        assert_eq!(e(None, None, &[crio]).unwrap(), crio);
        let several = e(None, None, &[ctd, crio]).unwrap_err().to_string();
        assert!(
            several.contains("--endpoint") && several.contains(crio),
            "{several}"
        );
        let none = e(None, None, &[]).unwrap_err().to_string();
        assert!(none.contains("--endpoint"), "{none}");
    }
}
