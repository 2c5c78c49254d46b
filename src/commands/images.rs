//! `cri-migrate images`, and the carry-over `migrate` runs before the cutover.

use super::NodeAccess;
use crate::cli::{ImagesArgs, Output};
use crate::error::{exit, Failure};
use crate::images::{self, CarriedImage, CarryOptions, Selection, Show};
use crate::inspect::{self, Facts, InspectOptions};
use crate::plan::Target;
use anyhow::Result;
use serde_json::json;
use std::io::Write;

pub const DOCKER_SOCKET: &str = crate::images::docker::SOCKET;
/// Where containerd keeps its images (its default `root`).
const CONTAINERD_ROOT: &str = crate::runtime::CONTAINERD.image_store;

/// What to carry where.
pub struct Request {
    pub target: Target,
    /// The node's pause image: always in use.
    pub pause: Option<String>,
    /// The migration moves containerd's root: images imported now would be left behind.
    pub root_changes: bool,
    pub selection: Selection,
    pub parallel: usize,
    pub show: Show,
    /// `--copy-images`: never link Docker's layers.
    pub copy_images: bool,
}

/// How a carry to containerd would go here: linked from Docker's overlay2 layers, or copied and
/// why (the dry run says it; the carry decides per image and may still copy one that fails to
/// link).
pub fn carry_way(t: &NodeAccess, facts: &Facts, copy_images: bool) -> Result<(), String> {
    if let Some(why) = no_link(facts, copy_images) {
        return Err(why);
    }
    let info = images::docker::Docker::new(t.node.path(DOCKER_SOCKET))
        .and_then(|d| d.info())
        .map_err(|e| format!("Docker's /info did not answer: {e:#}"))?;
    if info.containerd_store().is_some() {
        return Err("Docker keeps its images in containerd's image store: they are shared from its namespace by digest instead".into());
    }
    images::link::probe(&info, &crate::runtime::containerd::cri_snapshotter(facts))?;
    let dev = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(images::room::existing(p))
            .ok()
            .map(|m| m.dev())
    };
    let (docker, containerd) = (
        std::path::PathBuf::from(&info.root_dir),
        t.node.path(CONTAINERD_ROOT),
    );
    if dev(&docker) != dev(&containerd) {
        return Err(format!(
            "Docker's data root ({}) and containerd's ({}) are on different file systems",
            docker.display(),
            containerd.display()
        ));
    }
    Ok(())
}

/// Why Docker's layers must not be linked here whatever the node holds: the operator's
/// `--copy-images`, or a containerd setting that chowns snapshots.
fn no_link(facts: &Facts, copy_images: bool) -> Option<String> {
    if copy_images {
        return Some("--copy-images".into());
    }
    facts
        .containerd_config
        .as_ref()
        .and_then(|c| c.chowns_snapshots.clone())
        .map(|setting| format!("containerd is set to chown snapshots ({setting}): a chown must never reach Docker's files"))
}

/// Carry the selected images; a reason instead when it cannot be done here.
pub fn carry(
    t: &NodeAccess,
    facts: &Facts,
    r: Request,
) -> Result<Result<Vec<CarriedImage>, String>> {
    let Request {
        target,
        pause,
        root_changes,
        selection,
        parallel,
        show,
        copy_images,
    } = r;
    if selection == Selection::None {
        return Ok(Ok(vec![]));
    }
    if let Some(why) = crate::plan::images::decide(facts, target, selection, root_changes).why_not {
        return Ok(Err(why));
    }
    let docker = t.node.path(DOCKER_SOCKET);
    let mut refs: Vec<String> = pause.into_iter().collect();
    refs.extend(facts.static_pods.iter().flat_map(|p| p.images.clone()));
    let opts = CarryOptions {
        docker_socket: docker,
        store: t.node.path(target.about().image_store),
        spool: t.node.path("/var/tmp"),
        dest: crate::runtime::registry::of(target).image_dest(facts, t.node)?,
        selection,
        in_use_refs: refs,
        parallel,
        show,
        no_link: no_link(facts, copy_images),
    };
    images::carry(&opts).map(Ok).map_err(|e| {
        Failure::preflight(
            format!(
                "Docker's images could not be carried over to {}: {e:#}",
                target.name()
            ),
            carry_fix(target, &e),
        )
        .into()
    })
}

/// What to do when the carry failed as a whole: start the side that did not answer.
fn carry_fix(target: Target, e: &anyhow::Error) -> &'static str {
    if e.downcast_ref::<images::docker::DockerUnreachable>()
        .is_some()
    {
        return "Start Docker (systemctl start docker.socket docker.service) so that its images can be read before the cutover, or run with --images none to let the runtime pull them afterwards.";
    }
    crate::runtime::registry::of(target).carry_fix()
}

pub fn summary(carried: &[CarriedImage]) -> String {
    let count = |o: images::CarryResult| carried.iter().filter(|c| c.result == o).count();
    let bytes: u64 = carried
        .iter()
        .filter(|c| c.result == images::CarryResult::Imported)
        .map(|c| c.size)
        .sum();
    let linked = carried
        .iter()
        .filter(|c| c.result == images::CarryResult::Imported && c.via == Some("linked"))
        .count();
    let copied = carried
        .iter()
        .filter(|c| c.result == images::CarryResult::Imported && c.fallback.is_some())
        .count();
    let how = match (linked, copied) {
        (0, 0) => String::new(),
        (l, 0) => format!("; {l} linked from Docker's layers, no copy"),
        (0, c) => format!("; {c} copied, not linked (see each image's fallback)"),
        (l, c) => {
            format!("; {l} linked from Docker's layers, {c} copied (see each image's fallback)")
        }
    };
    format!(
        "{} image(s) carried over ({} MB{how}), {} already there, {} failed",
        count(images::CarryResult::Imported),
        bytes / 1_000_000,
        count(images::CarryResult::Present),
        count(images::CarryResult::Failed)
    )
}

pub fn run(
    t: &NodeAccess,
    args: &ImagesArgs,
    console: super::Console,
    out: &mut dyn Write,
) -> Result<i32> {
    // The lock first: a carry while a migration restarts the runtime would fail half-way.
    let _lock = crate::apply::preflight::lock(t.node)?;
    let facts = inspect::inspect(
        t.node,
        t.commands(),
        &InspectOptions {
            talk: t.live,
            ..Default::default()
        },
    )?;
    let pause = facts.kubelet.pod_infra_container_image.clone().or_else(|| {
        facts
            .containerd_config
            .as_ref()
            .and_then(|c| c.sandbox_image.clone())
    });
    let show = match (args.output, console.stderr_tty) {
        (Output::Json, _) => Show::Quiet,
        (_, true) => Show::Bar,
        _ => Show::Lines,
    };
    let request = Request {
        target: args.to,
        pause,
        root_changes: false,
        selection: args.images,
        parallel: args.parallel,
        show,
        copy_images: args.copy_images,
    };
    let carried = match carry(t, &facts, request)? {
        Ok(c) => c,
        Err(why) => {
            return Err(Failure::preflight(
                format!("images cannot be carried: {why}"),
                "Nothing to do here.",
            )
            .into())
        }
    };
    let failed = carried
        .iter()
        .any(|c| c.result == images::CarryResult::Failed);
    match args.output {
        Output::Json => crate::error::write_envelope(
            out,
            "images",
            json!({"result": if failed { "partial" } else { "ok" }, "images": carried}),
        )?,
        Output::Text => {
            for c in &carried {
                writeln!(
                    out,
                    "{:<9} {} ({} MB{}){}",
                    format!("{:?}", c.result).to_lowercase(),
                    c.names.join(" "),
                    c.size / 1_000_000,
                    match (c.via, &c.fallback) {
                        (Some(via), None) => format!(", {via}"),
                        (Some(via), Some(why)) => format!(", {via}: not linked: {why}"),
                        _ => String::new(),
                    },
                    c.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )?;
            }
            writeln!(out, "{}", summary(&carried))?;
        }
    }
    Ok(if failed {
        exit::IMAGES_FAILED
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use images::CarryResult;

    fn carried(via: &'static str, fallback: Option<&str>, result: CarryResult) -> CarriedImage {
        CarriedImage {
            id: "sha256:1".into(),
            names: vec!["x:1".into()],
            size: 2_000_000,
            in_use: true,
            result,
            duration_ms: 1,
            via: Some(via),
            fallback: fallback.map(str::to_string),
            error: None,
        }
    }

    #[test]
    fn the_summary_says_how_many_were_linked_and_copied() {
        let all = [
            carried("linked", None, CarryResult::Imported),
            carried("docker-save", Some("--copy-images"), CarryResult::Imported),
            carried("linked", None, CarryResult::Present),
        ];
        assert_eq!(
            summary(&all),
            "2 image(s) carried over (4 MB; 1 linked from Docker's layers, 1 copied (see each image's fallback)), 1 already there, 0 failed"
        );
        assert_eq!(
            summary(&all[..1]),
            "1 image(s) carried over (2 MB; 1 linked from Docker's layers, no copy), 0 already there, 0 failed"
        );
    }

    #[test]
    fn docker_not_answering_is_told_to_start_docker_not_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let e = images::docker::Docker::new(dir.path().join("docker.sock"))
            .unwrap()
            .info()
            .unwrap_err()
            .context("listing Docker's images");
        assert!(
            format!("{e:#}").contains("cannot connect to Docker at"),
            "{e:#}"
        );
        assert!(carry_fix(Target::Containerd, &e).starts_with("Start Docker (systemctl start"));
        assert!(carry_fix(Target::Crio, &e).starts_with("Start Docker"));
        let other = anyhow::anyhow!("cannot reach containerd");
        assert!(carry_fix(Target::Containerd, &other).starts_with("Start containerd"));
    }
}
