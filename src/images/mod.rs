//! Carry Docker's images over to the new runtime before the cutover. To containerd: one export
//! from Docker's API (streamed, never a tarball on disk) read straight into containerd's content
//! store and unpacked on the way (import.rs; `ctr images import` as the fallback), or, when
//! Docker keeps its images in that same containerd, shared from its namespace by digest
//! (containerd.rs). Every tag and repo digest becomes an image name in `k8s.io` (where the
//! kubelet looks); what containerd has is skipped. To CRI-O: skopeo. On an air-gapped node these
//! are the only copies the node has.

use crate::containerd;
pub mod docker;
pub mod import;
pub mod link;
pub mod room;
pub mod ways;

use crate::cri::credentials::repository;
use crate::system::run;
use anyhow::{bail, Context, Result};
use docker::{Docker, Image};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which images to carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    All,
    /// The images of the node's containers, the pause image, and those static pods name.
    #[default]
    InUse,
    None,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CarryResult {
    Imported,
    /// containerd had every name already.
    Present,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct CarriedImage {
    pub id: String,
    /// Every name the image has in containerd's k8s.io namespace (tags and repo digests).
    pub names: Vec<String>,
    pub size: u64,
    pub in_use: bool,
    pub result: CarryResult,
    pub duration_ms: u64,
    /// How it went over: `linked` (Docker's overlay2 layers hard-linked into containerd's
    /// overlayfs snapshots, link.rs), `docker-save` (Docker's export read into containerd),
    /// `ctr-import` (the same export through `ctr images import`, the fallback),
    /// `containerd-share` (Docker keeps it in the same containerd: shared by digest), `skopeo`
    /// (CRI-O).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// Why it was copied (streamed) rather than linked from Docker's layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CarriedImage {
    fn new(
        image: &Image,
        names: Vec<String>,
        in_use: bool,
        via: Option<&'static str>,
    ) -> CarriedImage {
        CarriedImage {
            id: image.id.clone(),
            names,
            size: image.size,
            in_use,
            result: CarryResult::Imported,
            duration_ms: 0,
            via,
            fallback: None,
            error: None,
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        self.result = CarryResult::Failed;
        self.error = Some(format!("{e:#}"));
    }
}

/// `busybox:1` -> `docker.io/library/busybox:1`; `x@sha256:..` keeps its digest; no tag -> latest.
pub fn normalize(reference: &str) -> String {
    let repo = repository(reference);
    if let Some((_, digest)) = reference.split_once('@') {
        return format!("{repo}@{digest}");
    }
    let name = reference.rsplit('/').next().unwrap_or(reference);
    match name.split_once(':') {
        Some((_, tag)) => format!("{repo}:{tag}"),
        None => format!("{repo}:latest"),
    }
}

/// The names an image must have in containerd: its tags and repo digests, normalized.
pub fn names_of(image: &Image) -> Vec<String> {
    let mut names: Vec<String> = image
        .tags()
        .iter()
        .chain(image.digests().iter())
        .map(|r| normalize(r))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What the node uses: image ids and normalized references.
#[derive(Debug, Default, Clone)]
pub struct InUse {
    pub ids: BTreeSet<String>,
    pub refs: BTreeSet<String>,
}

impl InUse {
    pub fn gather(docker: &Docker, extra_refs: &[String]) -> Result<InUse> {
        let mut u = InUse::default();
        for c in docker.containers()? {
            u.ids.insert(c.image_id);
            if !c.image.starts_with("sha256:") {
                u.refs.insert(normalize(&c.image));
            }
        }
        u.refs.extend(extra_refs.iter().map(|r| normalize(r)));
        Ok(u)
    }

    pub fn contains(&self, image: &Image) -> bool {
        self.ids.contains(&image.id) || names_of(image).iter().any(|n| self.refs.contains(n))
    }
}

/// containerd through `ctr` on its socket (the content API, which works while CRI is off).
#[derive(Clone)]
pub struct Ctr {
    pub address: String,
    /// The snapshotter CRI will use: images shared from Docker's namespace are unpacked into it.
    pub snapshotter: String,
}

impl Ctr {
    fn cmd(&self) -> Command {
        let mut c = Command::new("ctr");
        c.args(["--address", &self.address, "--namespace", "k8s.io"]);
        c
    }

    /// `ctr ARGS` in the k8s.io namespace; its stdout, or its stderr as the error.
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["--address", self.address.as_str(), "--namespace", "k8s.io"];
        all.extend(args);
        let out = run("ctr", &all, &[], Duration::from_secs(60))?;
        if !out.success {
            bail!(
                "`ctr {}` on {}: {}",
                args.join(" "),
                self.address,
                out.stderr.trim()
            );
        }
        Ok(out.stdout)
    }

    pub fn names(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .run(&["images", "ls", "-q"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    fn tag(&self, src: &str, dst: &str) -> Result<()> {
        self.run(&["images", "tag", "--force", src, dst])
            .map(|_| ())
    }

    fn remove(&self, name: &str) -> Result<()> {
        self.run(&["images", "rm", name]).map(|_| ())
    }
}

/// Where the images go.
#[derive(Clone)]
pub enum Dest {
    /// containerd's k8s.io namespace, through its API on the socket (`ctr` as the fallback).
    Containerd(Ctr),
    /// CRI-O's containers-storage, through skopeo (`docker-archive:` to `containers-storage:`).
    ContainersStorage,
}

/// An image chosen for the carry-over.
#[derive(Debug, Clone)]
pub struct Selected {
    pub image: Image,
    /// A container or static pod of the node uses it.
    pub in_use: bool,
}

impl Selected {
    /// Its line in the report, by its names, carried `via` a way.
    fn carried(&self, via: Option<&'static str>) -> CarriedImage {
        CarriedImage::new(&self.image, names_of(&self.image), self.in_use, via)
    }
}

pub struct CarryOptions {
    pub docker_socket: PathBuf,
    /// Where the runtime keeps what is carried (a host path): its free space is checked first.
    pub store: PathBuf,
    /// Where an export is spooled on the way (CRI-O: a file per image under /var/tmp).
    pub spool: PathBuf,
    pub dest: Dest,
    pub selection: Selection,
    pub in_use_refs: Vec<String>,
    pub parallel: usize,
    /// A progress bar (terminal) or a log line per image (stderr), or nothing (JSON).
    pub show: Show,
    /// Why Docker's layers must not be linked into containerd here (the operator's `--copy-images`,
    /// a containerd setting that chowns snapshots): they are copied instead.
    pub no_link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Bar,
    Lines,
    Quiet,
}

/// Carry the selected images; one that fails does not stop the others.
pub fn carry(opts: &CarryOptions) -> Result<Vec<CarriedImage>> {
    if opts.selection == Selection::None {
        return Ok(vec![]);
    }
    let docker = Docker::new(opts.docker_socket.clone())?;
    let images = select(&docker, opts)?;
    let bar = bar_for(
        opts,
        images.iter().map(|Selected { image: i, .. }| i.size).sum(),
    );
    let mut out = match &opts.dest {
        Dest::Containerd(ctr) => to_containerd(opts, ctr, images, bar.as_ref())?,
        Dest::ContainersStorage => {
            let cx = ways::Cx {
                opts,
                ctr: None,
                client: None,
                info: None,
                bar: bar.as_ref(),
            };
            ways::through(&[&ways::Skopeo], &cx, images)
        }
    };
    if let Some(b) = bar {
        b.finish_with_message("done");
    }
    if opts.show == Show::Lines {
        for r in &out {
            eprintln!(
                "{}",
                crate::secrets::shown(&format!(
                    "image {:?} {} ({} MB){}",
                    r.result,
                    r.names.join(" "),
                    r.size / 1_000_000,
                    r.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ))
            );
        }
    }
    out.sort_by(|a, b| a.names.cmp(&b.names));
    Ok(out)
}

/// Every image failed for one reason (a carry refused before it starts).
fn refused(images: &[Selected], via: Option<&'static str>, why: &str) -> Vec<CarriedImage> {
    images
        .iter()
        .map(|s| {
            let mut c = s.carried(via);
            c.fail(anyhow::anyhow!("{why}"));
            c
        })
        .collect()
}

/// The images to carry: those the node uses, or all that have a name.
fn select(docker: &Docker, opts: &CarryOptions) -> Result<Vec<Selected>> {
    let in_use = InUse::gather(docker, &opts.in_use_refs)?;
    Ok(docker
        .images()?
        .into_iter()
        .map(|image| Selected {
            in_use: in_use.contains(&image),
            image,
        })
        .filter(|s| s.in_use || opts.selection == Selection::All && !names_of(&s.image).is_empty())
        .collect())
}

fn bar_for(opts: &CarryOptions, total: u64) -> Option<ProgressBar> {
    (opts.show == Show::Bar).then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} images {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    })
}

/// Move the progress bar, if there is one, by `n` bytes.
fn advance(bar: Option<&ProgressBar>, n: u64) {
    if let Some(b) = bar {
        b.inc(n);
    }
}

/// Run `f` over the images, `n` at a time.
fn in_parallel(
    queue: VecDeque<Selected>,
    n: usize,
    f: &(dyn Fn(&Image, bool) -> CarriedImage + Sync),
) -> Vec<CarriedImage> {
    let queue = Mutex::new(queue);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n.max(1) {
            s.spawn(|| loop {
                let Some(Selected { image, in_use }) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let r = f(&image, in_use);
                done.lock().unwrap().push(r);
            });
        }
    });
    done.into_inner().unwrap()
}

fn to_containerd(
    opts: &CarryOptions,
    ctr: &Ctr,
    images: Vec<Selected>,
    bar: Option<&ProgressBar>,
) -> Result<Vec<CarriedImage>> {
    let present = ctr.names().context("containerd must be running (Docker's own containerd is) to take the images before the cutover")?;
    let client = containerd::Containerd::connect(Path::new(&ctr.address)).ok();
    // containerd has these under every name already, each name for this very image: Docker's
    // id is its config's digest (its own store) or its manifest's (containerd's store). A name
    // that stands for another image (a tag moved since) is carried again.
    let same = |image: &Image, name: &str| match &client {
        Some(c) => c
            .identity("k8s.io", name)
            .ok()
            .flatten()
            .is_some_and(|(target, config)| {
                target == image.id || config.is_some_and(|c| c == image.id)
            }),
        None => true,
    };
    let (have, need): (Vec<Selected>, Vec<Selected>) =
        images.into_iter().partition(|Selected { image: i, .. }| {
            let n = names_of(i);
            !n.is_empty() && n.iter().all(|n| present.contains(n) && same(i, n))
        });
    let mut out: Vec<CarriedImage> = have
        .iter()
        .map(|s| {
            if let Some(b) = &bar {
                b.inc(s.image.size);
            }
            let mut c = s.carried(None);
            c.result = CarryResult::Present;
            c
        })
        .collect();
    let info = Docker::new(opts.docker_socket.clone())?.info().ok();
    let cx = ways::Cx {
        opts,
        ctr: Some(ctr),
        client: client.as_ref(),
        info: info.as_ref(),
        bar,
    };
    out.extend(ways::through(
        &[&ways::Share, &ways::Link, &ways::DockerSave],
        &cx,
        need,
    ));
    Ok(out)
}

/// Link each image from Docker's overlay2 layers (link.rs), `parallel` at a time; each one that
/// cannot be, with the reason, for the copy. `client`: containerd's API, when it answered.
fn link_all(
    opts: &CarryOptions,
    ctr: &Ctr,
    client: Option<&containerd::Containerd>,
    info: Option<&docker::Info>,
    need: &[Selected],
    bar: Option<&ProgressBar>,
) -> Vec<Result<CarriedImage, (String, String)>> {
    let store = match (&opts.no_link, info) {
        (Some(why), _) => Err(why.clone()),
        (None, None) => Err("Docker's /info did not answer".to_string()),
        (None, Some(info)) => link::probe(info, &ctr.snapshotter),
    };
    let (store, client) = match (store, client) {
        (Ok(s), Some(c)) => (s, c),
        (Err(why), _) => return every_one(need, &why),
        (Ok(_), None) => {
            return every_one(
                need,
                &format!("containerd's API did not answer on {}", ctr.address),
            )
        }
    };
    // Linking writes only directories and records: a small margin on the store's disk.
    let bytes: u64 = need
        .iter()
        .map(|Selected { image: i, .. }| i.size)
        .sum::<u64>()
        / 100;
    if let Err(why) = room::check(&[(opts.store.clone(), bytes)]) {
        return every_one(need, &why);
    }
    // `parallel` images at a time, each thread its own: linking may take away Docker's bind
    // mount of its overlay2 directory in a private mount namespace (link.rs), which must be
    // that thread's alone. Two images with a layer in common may both link it; containerd keeps
    // the first commit and the other is dropped.
    let done = in_parallel(
        need.iter().cloned().collect(),
        opts.parallel,
        &|image, in_use| {
            let t0 = Instant::now();
            let mut c = CarriedImage::new(image, names_of(image), in_use, Some("linked"));
            let linked = link::carry_image(client, &store, &ctr.snapshotter, image, &c.names);
            c.duration_ms = t0.elapsed().as_millis() as u64;
            match linked {
                Ok(_) => advance(bar, image.size),
                Err(e) => c.fail(e),
            }
            c
        },
    );
    done.into_iter()
        .map(|c| match c.result {
            CarryResult::Failed => Err((c.id, format!("linking: {}", c.error.unwrap_or_default()))),
            _ => Ok(c),
        })
        .collect()
}

/// The same reason for every image.
fn every_one(need: &[Selected], why: &str) -> Vec<Result<CarriedImage, (String, String)>> {
    need.iter()
        .map(|Selected { image: i, .. }| Err((i.id.clone(), why.to_string())))
        .collect()
}

/// The bytes a copy of these images writes: for each layer containerd does not have yet (by
/// chain ID, once however many images share it), its tar in the content store and its unpacked
/// snapshot. Where Docker's layer sizes cannot be read, the images' sizes, twice.
fn copy_need(
    ctr: &Ctr,
    client: Option<&containerd::Containerd>,
    info: Option<&docker::Info>,
    need: &[Selected],
) -> u64 {
    let store = info.and_then(|i| link::Store::open(i).ok());
    let stacks: Vec<Stack> = need
        .iter()
        .map(|Selected { image, .. }| {
            let layers = (|| {
                let store = store.as_ref()?;
                let chains = containerd::chain_ids(&store.diff_ids(&image.id).ok()?);
                chains
                    .into_iter()
                    .map(|c| store.tar_size(&c).ok().map(|s| (c, s.max(0) as u64)))
                    .collect::<Option<Vec<_>>>()
            })();
            (image.size, layers)
        })
        .collect();
    unique_need(&stacks, &|chain| {
        client.is_some_and(|c| {
            c.has_snapshot("k8s.io", &ctr.snapshotter, chain)
                .unwrap_or(false)
        })
    })
}

/// An image's size, and its layers (chain ID, tar size) where Docker's layer store tells them.
type Stack = (u64, Option<Vec<(String, u64)>>);

/// Twice (content and snapshot) the size of each layer not `present` yet, once however many
/// images have it; an image whose layers are not known counts its whole size, twice.
fn unique_need(stacks: &[Stack], present: &dyn Fn(&str) -> bool) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    for (size, layers) in stacks {
        match layers {
            Some(layers) => {
                for (chain, bytes) in layers {
                    if seen.insert(chain.clone()) && !present(chain) {
                        total += bytes;
                    }
                }
            }
            None => total += size,
        }
    }
    total * 2
}

/// The namespace Docker keeps its images in, when that is in the containerd we carry to.
fn shared_store(info: Option<&docker::Info>, ctr: &Ctr) -> Option<String> {
    let (address, namespace) = info?.containerd_store()?;
    same_file(Path::new(&address), Path::new(&ctr.address)).then_some(namespace)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// One image from Docker's namespace into k8s.io, by digest.
fn share(client: &containerd::Containerd, namespace: &str, ctr: &Ctr, image: &Image) -> Result<()> {
    let names = names_of(image);
    if names.is_empty() {
        bail!("it has no name to give it in containerd");
    }
    let target = match &image.descriptor {
        Some(d) => containerd::Content {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
        },
        // Older APIs do not give the descriptor: Docker's own record in its namespace has it.
        None => names
            .iter()
            .find_map(|n| client.image(namespace, n).ok().flatten())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "Docker's namespace {namespace} has no image record for {}",
                    image.id
                )
            })?,
    };
    client.share_image(namespace, "k8s.io", &target, &names, &ctr.snapshotter)
}

/// CRI-O: Docker's export (this crate's client, so any Docker API version) into
/// `skopeo copy docker-archive:FILE containers-storage:TAG`, then the other tags from the store
/// itself. skopeo's own `docker-daemon:` would do, but its Docker client speaks API 1.22, which
/// Docker 25 and later refuse. containers-storage keeps a registry digest only from a pull, so a
/// digest name cannot be given to a copy: an image known to pods only by digest is pulled again
/// by CRI-O.
fn to_storage(
    docker_socket: &Path,
    image: &Image,
    in_use: bool,
    bar: Option<&ProgressBar>,
) -> CarriedImage {
    let t0 = Instant::now();
    let tags: Vec<String> = image.tags().iter().map(|t| normalize(t)).collect();
    let mut c = CarriedImage::new(image, tags.clone(), in_use, Some("skopeo"));
    // The store has this very image under the name: its manifest names Docker's config digest
    // (Docker's id on its own store; on containerd's store the id is the manifest's, which a
    // copy does not keep, so such an image is copied again).
    let inspect = |name: &str| {
        run(
            "skopeo",
            &["inspect", "--raw", &format!("containers-storage:{name}")],
            &[],
            Duration::from_secs(60),
        )
        .ok()
        .filter(|r| r.success)
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.stdout).ok())
        .is_some_and(|m| m["config"]["digest"] == image.id.as_str())
    };
    let result = (|| -> Result<CarryResult> {
        let Some(source) = image.tags().first().cloned() else {
            bail!("it is known only by digest, and containers-storage takes a registry digest only from a pull: CRI-O pulls it again");
        };
        if tags.iter().all(|t| inspect(t)) {
            return Ok(CarryResult::Present);
        }
        let first = &tags[0];
        archive_into_storage(docker_socket, &source, first, bar)?;
        for name in &tags[1..] {
            skopeo_copy(&format!("containers-storage:{first}"), name, 600)?;
        }
        Ok(CarryResult::Imported)
    })();
    match result {
        Ok(o) => c.result = o,
        Err(e) => c.fail(e),
    }
    c.duration_ms = t0.elapsed().as_millis() as u64;
    c
}

/// `docker save SOURCE` into a file that `skopeo copy docker-archive:` reads. Not a stream:
/// skopeo's docker-archive reader takes only a regular file (a FIFO fails with "invalid tar
/// header"), and its `docker-daemon:` source spools to a temp file the same way.
fn archive_into_storage(
    docker_socket: &Path,
    source: &str,
    dest: &str,
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("cri-migrate-export")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())?;
    // Removed by the TempDir on every return, and by the signal handler if a signal ends the
    // process before any change.
    crate::signals::register_temp(dir.path().to_path_buf());
    let result = export_and_copy(docker_socket, dir.path(), source, dest, bar);
    crate::signals::forget_temp(dir.path());
    result
}

fn export_and_copy(
    docker_socket: &Path,
    dir: &Path,
    source: &str,
    dest: &str,
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let path = dir.join("image.tar");
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    Docker::new(docker_socket.to_path_buf())?.export(
        &[source.to_string()],
        &mut file,
        &mut |n| advance(bar, n),
    )?;
    drop(file);
    skopeo_copy(&format!("docker-archive:{}", path.display()), dest, 1800)
}

/// `skopeo copy SOURCE containers-storage:DEST`; skopeo's stderr as the error.
fn skopeo_copy(source: &str, dest: &str, timeout_secs: u64) -> Result<()> {
    let out = run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            source,
            &format!("containers-storage:{dest}"),
        ],
        &[],
        Duration::from_secs(timeout_secs),
    )?;
    if !out.success {
        bail!(
            "skopeo copy to containers-storage:{dest}: {}",
            out.stderr.trim()
        );
    }
    Ok(())
}

/// One image alone (the retry after a failed batch).
fn carry_one(opts: &CarryOptions, ctr: &Ctr, image: &Image, in_use: bool) -> CarriedImage {
    let t0 = Instant::now();
    let mut c = CarriedImage::new(image, names_of(image), in_use, Some("docker-save"));
    match import(opts, ctr, &[image], None) {
        Ok(via) => c.via = Some(via),
        Err(e) => c.fail(e),
    }
    c.duration_ms = t0.elapsed().as_millis() as u64;
    c
}

/// Stream `docker save` of these images into containerd (this crate's importer, or
/// `ctr images import` where that fails), every tag and repo digest a name; check that
/// containerd has every name. Says which way it went.
fn import(
    opts: &CarryOptions,
    ctr: &Ctr,
    images: &[&Image],
    bar: Option<&ProgressBar>,
) -> Result<&'static str> {
    let docker = Docker::new(opts.docker_socket.clone())?;
    // An image known only by digest has no tag to export it under: give it one for the export.
    let mut temps: Vec<String> = Vec::new();
    // The names each image is exported under.
    let mut export_names: Vec<Vec<String>> = Vec::new();
    // The name each image arrives under in containerd, to hang its digests on.
    let mut sources: Vec<String> = Vec::new();
    let mut tagging = Ok(());
    for image in images {
        let tags = image.tags();
        if tags.is_empty() {
            let short: String = image
                .id
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
            let repo = "cri-migrate.invalid/carry";
            if let Err(e) = docker.tag(&image.id, repo, &short) {
                tagging = Err(e);
                break;
            }
            let temp = format!("{repo}:{short}");
            temps.push(temp.clone());
            sources.push(normalize(&temp));
            export_names.push(vec![temp]);
        } else {
            sources.push(normalize(&tags[0]));
            export_names.push(tags);
        }
    }
    // CRI_MIGRATE_IMPORTER=ctr: straight to `ctr images import` (how the tests reach that path;
    // only in a build with the test-hooks feature).
    let ctr_only = cfg!(feature = "test-hooks")
        && std::env::var("CRI_MIGRATE_IMPORTER").is_ok_and(|v| v == "ctr");
    let result = tagging.and_then(|_| {
        let streamed = if ctr_only {
            Err(anyhow::anyhow!("CRI_MIGRATE_IMPORTER=ctr"))
        } else {
            stream_import(opts, ctr, &docker, &export_names, images, bar)
        };
        streamed.map(|_| "docker-save").or_else(|e| {
            if opts.show != Show::Quiet && !ctr_only {
                eprintln!("{}", crate::secrets::shown(&format!("images: streaming into containerd failed ({e:#}); trying ctr images import")));
            }
            // `ctr images import` takes what this importer could not (a layout it does
            // not know, an API it cannot use).
            ctr_import(ctr, &docker, &export_names.concat(), images, &sources, bar)
                .map(|_| "ctr-import")
                .map_err(|e2| anyhow::anyhow!("{e:#}; with ctr images import: {e2:#}"))
        })
    });
    for temp in &temps {
        let _ = docker.untag(temp);
        let _ = ctr.remove(&normalize(temp));
    }
    let via = result?;
    let now = ctr.names()?;
    let missing: Vec<String> = images
        .iter()
        .flat_map(|i| names_of(i))
        .filter(|n| !now.contains(n))
        .collect();
    if !missing.is_empty() {
        bail!("after the import containerd lacks {}", missing.join(", "));
    }
    Ok(via)
}

/// Docker's export read straight into containerd, each layer unpacked as it arrives
/// (import.rs): every name, tags and repo digests, given on the way.
fn stream_import(
    opts: &CarryOptions,
    ctr: &Ctr,
    docker: &Docker,
    export_names: &[Vec<String>],
    images: &[&Image],
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let client = containerd::Containerd::connect(Path::new(&ctr.address))?;
    let mut wanted = Vec::new();
    for (image, exported_as) in images.iter().zip(export_names) {
        wanted.push(import::Wanted {
            image,
            names: names_of(image),
            exported_as: exported_as.clone(),
            diff_ids: docker.diff_ids(&image.id)?,
        });
    }
    let export = import::Export {
        docker_socket: &opts.docker_socket,
        names: &export_names.concat(),
        wanted: &wanted,
        snapshotter: &ctr.snapshotter,
    };
    import::import(&client, &export, &|n| advance(bar, n))
}

/// How long `ctr images import` may take after Docker's export ended.
const CTR_IMPORT_BOUND: Duration = Duration::from_secs(30 * 60);

/// `docker save | ctr images import -`, then the repo digests as names with `ctr images tag`.
fn ctr_import(
    ctr: &Ctr,
    docker: &Docker,
    export_names: &[String],
    images: &[&Image],
    sources: &[String],
    bar: Option<&ProgressBar>,
) -> Result<()> {
    let mut child = crate::signals::spawn(
        ctr.cmd()
            .args(["images", "import", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .context("cannot run ctr (containerd's client)")?;
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let exported = docker.export(export_names, &mut stdin, &mut |n| advance(bar, n));
    drop(stdin);
    // ctr unpacks what it read: bounded, so that a containerd that stops answering cannot hold
    // the migration forever.
    let status = crate::system::wait_bounded(&mut child, CTR_IMPORT_BOUND);
    crate::signals::forget_child(pid);
    let status = status.with_context(|| "ctr images import")?;
    let err = errs.join().unwrap_or_default();
    exported?;
    if !status.success() {
        bail!("ctr images import failed: {}", err.trim());
    }
    // Every repo digest becomes a name too, pointing at the imported image: a pod that pins
    // `image@sha256:...` finds it.
    for (image, source) in images.iter().zip(sources) {
        for name in names_of(image).iter().filter(|n| n.contains('@')) {
            ctr.tag(source, name)?;
        }
    }
    Ok(())
}

/// In-use images that did not make it: the cutover must not go ahead without them.
pub fn missing_in_use(carried: &[CarriedImage]) -> Vec<&CarriedImage> {
    carried
        .iter()
        .filter(|c| c.in_use && c.result == CarryResult::Failed)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_needs_room_for_each_missing_layer_once() {
        let l = |c: &str, n: u64| (c.to_string(), n);
        let stacks = vec![
            // Two images on one base: the base counts once.
            (100, Some(vec![l("base", 50), l("app", 30)])),
            (90, Some(vec![l("base", 50), l("tool", 20)])),
            // containerd has this one's layers already.
            (70, Some(vec![l("there", 70)])),
            // Docker's layer sizes unknown: the image's size.
            (40, None),
        ];
        let need = unique_need(&stacks, &|c| c == "there");
        assert_eq!(need, 2 * (50 + 30 + 20 + 40));
    }

    #[test]
    fn names_are_normalized_as_containerd_stores_them() {
        assert_eq!(normalize("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            normalize("127.0.0.1:5000/test/x:2"),
            "127.0.0.1:5000/test/x:2"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/test/x"),
            "127.0.0.1:5000/test/x:latest"
        );
        assert_eq!(normalize("reg.local/x@sha256:ab"), "reg.local/x@sha256:ab");
        let img = Image {
            id: "sha256:1".into(),
            repo_tags: Some(vec!["busybox:1".into(), "<none>:<none>".into()]),
            repo_digests: Some(vec!["busybox@sha256:ab".into()]),
            size: 1,
            descriptor: None,
        };
        assert_eq!(
            names_of(&img),
            [
                "docker.io/library/busybox:1",
                "docker.io/library/busybox@sha256:ab"
            ]
        );
    }
}
