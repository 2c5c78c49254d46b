//! Docker's export stream read entry by entry straight into containerd's content store, each
//! layer unpacked as soon as it and the layers under it have arrived, while the stream goes on.
//! It does what `docker save | ctr images import -` does, without ctr's own copy and hash of
//! every byte, and with the unpacking overlapped with the transfer instead of after it.

use super::docker::{Docker, Image};
use crate::containerd::{chain_ids, Containerd, Content, Layer, SnapshotScope};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub(super) const NAMESPACE: &str = "k8s.io";
/// `docker save` writes layers uncompressed from Docker's own store; from containerd's image
/// store as they were pulled (gzip, zstd), which the first bytes tell.
pub(super) const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// One image to bring: Docker's record, the names it gets in containerd, its layers' diff IDs.
pub struct Wanted<'a> {
    pub image: &'a Image,
    pub names: Vec<String>,
    /// The names it is exported under (its tags, or a temporary one): manifest.json says them.
    pub exported_as: Vec<String>,
    pub diff_ids: Vec<String>,
}

/// The entries of `manifest.json` in a `docker save` stream (legacy and OCI layouts alike).
#[derive(serde::Deserialize)]
struct SavedImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Layers unpacked so far, image by image (how many of each stack, from the bottom).
struct Unpacker<'a> {
    client: &'a Containerd,
    at: SnapshotScope<'a>,
    stacks: Vec<(Vec<String>, Vec<String>)>,
    done: Vec<usize>,
    arrived: HashMap<String, i64>,
}

impl Unpacker<'_> {
    /// Unpack every layer whose blob is here and whose lower layers are unpacked.
    fn advance(&mut self) -> Result<()> {
        for (k, (diff_ids, chains)) in self.stacks.iter().enumerate() {
            while let Some(diff_id) = diff_ids.get(self.done[k]) {
                let Some(size) = self.arrived.get(diff_id) else {
                    break;
                };
                let layer = Layer {
                    media_type: LAYER_TYPE.into(),
                    digest: diff_id.clone(),
                    size: *size,
                };
                self.client
                    .unpack_layer(&self.at, chains, diff_ids, self.done[k], &layer)?;
                self.done[k] += 1;
            }
        }
        Ok(())
    }
}

/// A path inside the stream, `./` and `..` resolved (a layer Docker already wrote once comes
/// again as a symlink to the first).
fn clean(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// What is streamed out of Docker into containerd: `docker save NAMES` from Docker's socket, the
/// images wanted from it, the snapshotter they are unpacked into.
pub struct Export<'a> {
    pub docker_socket: &'a Path,
    pub names: &'a [String],
    pub wanted: &'a [Wanted<'a>],
    pub snapshotter: &'a str,
}

/// Stream the export into containerd's k8s.io namespace and give each wanted image its names
/// there, unpacked; all under one lease, so that nothing written is collected before the image
/// that holds it exists.
pub fn import(client: &Containerd, x: &Export, progress: &(dyn Fn(u64) + Sync)) -> Result<()> {
    client.leased(NAMESPACE, |lease| import_leased(client, lease, x, progress))
}

fn import_leased(
    client: &Containerd,
    lease: &str,
    x: &Export,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let wanted = x.wanted;
    let scope = SnapshotScope {
        namespace: NAMESPACE,
        lease,
        snapshotter: x.snapshotter,
    };
    let unpacker = Unpacker {
        client,
        at: scope,
        stacks: wanted
            .iter()
            .map(|w| (w.diff_ids.clone(), chain_ids(&w.diff_ids)))
            .collect(),
        done: vec![0; wanted.len()],
        arrived: HashMap::new(),
    };
    let ((blobs, manifest), unpacker) = export_and_unpack(lease, x, unpacker, progress)?;

    let manifest = manifest.ok_or_else(|| anyhow!("Docker's export has no manifest.json"))?;
    let saved: Vec<SavedImage> = serde_json::from_slice(&manifest)
        .context("Docker's manifest.json is not what was expected")?;
    let blob = |path: &str| -> Result<Blob> {
        blobs
            .get(path)
            .cloned()
            .ok_or_else(|| anyhow!("Docker's export names {path}, which it does not hold"))
    };
    let mut missing = Vec::new();
    for (k, w) in wanted.iter().enumerate() {
        let found = saved.iter().find(|s| {
            blob(&s.config).is_ok_and(|(d, _, _)| d == w.image.id)
                || s.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| w.exported_as.contains(t))
        });
        let Some(saved) = found else {
            missing.push(w.image.id.clone());
            continue;
        };
        let (config, config_size, _) = blob(&saved.config)?;
        let mut layers = Vec::new();
        for l in &saved.layers {
            layers.push(blob(l)?);
        }
        if layers.len() != w.diff_ids.len() {
            bail!(
                "Docker exported {} with {} layers, its record lists {}",
                w.image.id,
                layers.len(),
                w.diff_ids.len()
            );
        }
        // Compressed layers (known by their digests only once here) are unpacked now; the
        // diff service checks each against its diff ID.
        let chains = &unpacker.stacks[k].1;
        for (i, (digest, size, media_type)) in layers.iter().enumerate().skip(unpacker.done[k]) {
            let layer = Layer {
                media_type: media_type.to_string(),
                digest: digest.clone(),
                size: *size,
            };
            client.unpack_layer(&scope, chains, &w.diff_ids, i, &layer)?;
        }
        record(
            client,
            &scope,
            (&config, config_size),
            &layers,
            true,
            unpacker.stacks[k].1.last(),
            &w.names,
        )?;
    }
    if !missing.is_empty() {
        bail!("Docker's export does not hold {}", missing.join(", "));
    }
    Ok(())
}

/// Docker's export of the images streamed into containerd's content store (`read_stream`),
/// each layer unpacked as it arrives while later ones still travel; the blobs, the export's
/// manifest.json, and the unpacker with what it has done.
fn export_and_unpack<'a>(
    lease: &str,
    x: &Export,
    mut unpacker: Unpacker<'a>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Read, Unpacker<'a>)> {
    let client = unpacker.client;
    let (reader, writer) = nix::unistd::pipe().context("a pipe for Docker's export")?;
    let (reader, mut writer) = (std::fs::File::from(reader), std::fs::File::from(writer));
    let (tx, rx) = mpsc::channel::<(String, i64)>();
    let (exported, unpacked, read) = std::thread::scope(|s| {
        let export = s.spawn(move || {
            let docker = Docker::new(PathBuf::from(x.docker_socket))?;
            docker.export(x.names, &mut writer, &mut |n| progress(n))
            // The writer drops here: the reader sees the end of the stream.
        });
        let unpack = s.spawn(move || -> Result<Unpacker> {
            while let Ok((digest, size)) = rx.recv() {
                unpacker.arrived.insert(digest, size);
                unpacker.advance()?;
            }
            Ok(unpacker)
        });
        let read = read_stream(client, lease, reader, &tx);
        drop(tx);
        (
            export
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the export thread panicked"))),
            unpack
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the unpack thread panicked"))),
            read,
        )
    });
    // Docker's own error says most (the stream stops short when it fails).
    exported.context("Docker's export")?;
    let read = read?;
    let mut unpacker = unpacked?;
    unpacker.advance()?;
    Ok((read, unpacker))
}

/// A blob of the stream in containerd: digest, size, media type (for a layer).
pub(super) type Blob = (String, i64, &'static str);

/// The image record in k8s.io for a config already there and its layers' snapshots: a manifest
/// for them (`layers_held`: its layers are in the content store too, so garbage-collection
/// references keep them), the config's reference to the top snapshot, and every name.
pub(super) fn record(
    client: &Containerd,
    at: &SnapshotScope,
    (config, config_size): (&str, i64),
    layers: &[Blob],
    layers_held: bool,
    top: Option<&String>,
    names: &[String],
) -> Result<()> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config, "size": config_size},
        "layers": layers.iter().map(|(d, size, t)| serde_json::json!({
            "mediaType": t, "digest": d, "size": size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&doc)?;
    // What keeps the config (and the layers, where they are there) while the manifest exists.
    let mut labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        config.to_string(),
    )]);
    if layers_held {
        for (i, (d, _, _)) in layers.iter().enumerate() {
            labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), d.clone());
        }
    }
    let size = bytes.len();
    let digest = client.ingest(
        at.namespace,
        at.lease,
        &mut bytes.as_slice(),
        size as u64,
        labels,
    )?;
    if let Some(top) = top {
        client.hold_snapshot(at.namespace, at.snapshotter, config, top)?;
    }
    let target = Content {
        media_type: MANIFEST_TYPE.into(),
        digest,
        size: size as i64,
    };
    for name in names {
        client.name_image(at.namespace, at.lease, name, &target)?;
    }
    Ok(())
}
type Read = (HashMap<String, Blob>, Option<Vec<u8>>);

/// Every file of the stream into containerd (but Docker's v1 leftovers); the blobs by path, and
/// manifest.json.
fn read_stream(
    client: &Containerd,
    lease: &str,
    reader: std::fs::File,
    arrived: &mpsc::Sender<(String, i64)>,
) -> Result<Read> {
    let mut archive = tar::Archive::new(reader);
    let mut blobs: HashMap<String, Blob> = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut manifest = None;
    for entry in archive.entries().context("reading Docker's export")? {
        let mut e = entry.context("reading Docker's export")?;
        let path = clean(&e.path()?);
        let kind = e.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = e.link_name()? {
                let base = if kind.is_symlink() {
                    Path::new(&path)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(target)
                } else {
                    target.into_owned()
                };
                links.push((path, clean(&base)));
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(&path);
        if path == "manifest.json" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf)?;
            manifest = Some(buf);
            continue;
        }
        // Docker's v1 metadata and the OCI layout's own files: nothing containerd needs.
        if matches!(path.as_str(), "repositories" | "index.json" | "oci-layout")
            || (path.contains('/') && matches!(name, "json" | "VERSION"))
        {
            continue;
        }
        let size = e.header().size()?;
        let mut head = [0u8; 4];
        let n = std::io::Read::read(&mut e, &mut head)?;
        let mut head = &head[..n];
        let kind = match head {
            [0x1f, 0x8b, ..] => LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => LAYER_ZSTD,
            _ => LAYER_TYPE,
        };
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest = format!("sha256:{hex}");
            if client.has_blob(NAMESPACE, &digest)? {
                blobs.insert(path, (digest.clone(), size as i64, kind));
                let _ = arrived.send((digest, size as i64));
                continue;
            }
        }
        let mut rest = std::io::Read::chain(&mut head, &mut e);
        let digest = client
            .ingest(NAMESPACE, lease, &mut rest, size, HashMap::new())
            .with_context(|| format!("{path} from Docker's export"))?;
        let _ = arrived.send((digest.clone(), size as i64));
        blobs.insert(path, (digest, size as i64, kind));
    }
    for (path, target) in links {
        if let Some(b) = blobs.get(&target).cloned() {
            blobs.insert(path, b);
        }
    }
    Ok((blobs, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_paths_are_resolved_like_the_links_in_it() {
        assert_eq!(clean(Path::new("./manifest.json")), "manifest.json");
        assert_eq!(clean(Path::new("abc/../def/layer.tar")), "def/layer.tar");
        assert_eq!(
            clean(&Path::new("abc").join("../def/layer.tar")),
            "def/layer.tar"
        );
    }
}
