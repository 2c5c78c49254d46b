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
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| facts.kubelet.runtime_endpoint.clone())
        .unwrap_or_else(|| "unix:///run/containerd/containerd.sock".to_string());
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
