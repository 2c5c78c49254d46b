//! containerd over its own gRPC API (content, images, leases, snapshots, diff), namespaced and
//! bounded: the carry-over's client (src/images/) and inspection's (Docker's leases,
//! src/inspect/manifests.rs), so it lives beside both rather than under either.
//!
//! Its first use: Docker on containerd's image store (`features.containerd-snapshotter`) keeps
//! its images in containerd, in the `moby` namespace. When that containerd is the one the kubelet
//! moves to, each image is shared into `k8s.io` by digest instead of exported: containerd's
//! default content sharing policy ("shared") lets a namespace take a blob another namespace holds
//! without a byte being sent. The image is then unpacked into the CRI snapshotter (snapshots are
//! per namespace), so pods start without waiting for it, and given its names.

use anyhow::{anyhow, bail, Context, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, CreateRequest, DeleteRequest, GetImageRequest, Image, Info,
    InfoRequest, ListImagesRequest, ListRequest, ListResourcesRequest, ReadContentRequest,
    UpdateImageRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::{Descriptor, Mount};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// The lease header containerd reads: what is written under it is safe from garbage collection
/// until the lease goes.
const LEASE_HEADER: &str = "containerd-lease";
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// The longest one metadata call of an inspection may take.
const INSPECT_BOUND: Duration = Duration::from_secs(30);

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The platform the node runs, in OCI words.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    }
}

/// An image's content in the image store: where it points, and the names it must have.
#[derive(Debug, Clone)]
pub struct Content {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

/// Where snapshots are made: a namespace, the lease that holds them, the snapshotter.
#[derive(Clone, Copy)]
pub struct SnapshotScope<'a> {
    pub namespace: &'a str,
    pub lease: &'a str,
    pub snapshotter: &'a str,
}

/// From which namespace to which, under which lease.
struct Route<'a> {
    from: &'a str,
    to: &'a str,
    lease: &'a str,
}

/// containerd's API on its socket, driven by a small runtime that callers on several threads
/// share (`block_on` from each).
pub struct Containerd {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    address: String,
}

fn request<T>(msg: T, namespace: &str, lease: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    // A bound, not a liveness check: one call may write or unpack a layer of many gigabytes.
    r.set_timeout(Duration::from_secs(3600));
    if let Ok(ns) = namespace.parse() {
        r.metadata_mut().insert(NAMESPACE_HEADER, ns);
    }
    if let Some(Ok(l)) = lease.map(str::parse) {
        r.metadata_mut().insert(LEASE_HEADER, l);
    }
    r
}

/// A call's answer, or `None` where containerd says the object is not there; another error
/// names the call (`what`) and its object.
fn found<T>(
    r: Result<T, tonic::Status>,
    what: &str,
    object: impl std::fmt::Display,
) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => bail!("containerd: {what} {object}: {}", s.message()),
    }
}

/// An image config's layers' diff IDs, bottom first (`rootfs.diff_ids`).
pub fn config_diff_ids(config: &serde_json::Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect()
}

/// chain ID of a stack of layers (OCI image spec): the snapshot's name for it.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{:x}",
                Sha256::digest(format!("{parent} {d}").as_bytes())
            ),
        };
        out.push(next);
    }
    out
}

/// A blob's bytes, as one.
async fn read_all(
    c: &mut ContentClient<Channel>,
    namespace: &str,
    digest: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = c
        .read(request(
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            namespace,
            None,
        ))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

impl Containerd {
    pub fn connect(socket: &Path) -> Result<Containerd> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let channel = rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(10), containerd_client::connect(socket))
                    .await
            })
            .map_err(|_| anyhow!("no answer in 10s"))?
            .with_context(|| format!("cannot connect to containerd at {}", socket.display()))?;
        Ok(Containerd {
            rt,
            channel,
            address: socket.display().to_string(),
        })
    }

    /// The names of the images in a namespace.
    pub fn names(&self, namespace: &str) -> Result<BTreeSet<String>> {
        let mut c = ImagesClient::new(self.channel.clone());
        let list = self
            .rt
            .block_on(c.list(request(
                ListImagesRequest { filters: vec![] },
                namespace,
                None,
            )))
            .with_context(|| format!("containerd at {}: list images", self.address))?;
        Ok(list
            .into_inner()
            .images
            .into_iter()
            .map(|i| i.name)
            .collect())
    }

    /// Where an image points in a namespace, or None.
    pub fn image(&self, namespace: &str, name: &str) -> Result<Option<Content>> {
        let mut c = ImagesClient::new(self.channel.clone());
        let ask = GetImageRequest {
            name: name.to_string(),
        };
        let got = self.rt.block_on(c.get(request(ask, namespace, None)));
        let target = found(got, "get image", name)?.and_then(|r| r.into_inner().image?.target);
        Ok(target.map(|t| Content {
            media_type: t.media_type,
            digest: t.digest,
            size: t.size,
        }))
    }

    /// What an image name stands for in a namespace: its target's digest and its config's (this
    /// host's manifest, under an index). None when the name is not there.
    pub fn identity(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let Some(target) = self.image(namespace, name)? else {
            return Ok(None);
        };
        let json = |digest: &str| -> Option<serde_json::Value> {
            serde_json::from_slice(&self.read(namespace, digest).ok()?).ok()
        };
        let mut manifest = json(&target.digest);
        if INDEX_TYPES.contains(&target.media_type.as_str()) {
            let arch = host_architecture();
            manifest = manifest.and_then(|index| {
                let m = index["manifests"].as_array()?.iter().find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch
                })?;
                json(m["digest"].as_str()?)
            });
        }
        let config = manifest.and_then(|m| m["config"]["digest"].as_str().map(str::to_string));
        Ok(Some((target.digest, config)))
    }

    fn info(&self, namespace: &str, digest: &str) -> Result<Option<Info>> {
        let mut c = ContentClient::new(self.channel.clone());
        let ask = InfoRequest {
            digest: digest.to_string(),
        };
        let got = self.rt.block_on(c.info(request(ask, namespace, None)));
        Ok(found(got, "content", digest)?.and_then(|r| r.into_inner().info))
    }

    /// A small blob (a manifest, an index, a config) the namespace holds, or None.
    /// Bounded, as inspection asks it.
    pub fn blob(&self, namespace: &str, digest: &str) -> Result<Option<Vec<u8>>> {
        let mut c = ContentClient::new(self.channel.clone());
        let read = read_all(&mut c, namespace, digest);
        found(
            self.within(&format!("read {digest}"), read)?,
            "read",
            digest,
        )
    }

    /// A small blob (a manifest, an index, a config).
    fn read(&self, namespace: &str, digest: &str) -> Result<Vec<u8>> {
        let mut c = ContentClient::new(self.channel.clone());
        self.rt
            .block_on(read_all(&mut c, namespace, digest))
            .map_err(|s| anyhow!("containerd: read {digest}: {}", s.message()))
    }

    /// Give `to` the blob `from` holds, by digest alone: with the "shared" content policy
    /// containerd commits it without data. Labels (garbage-collection references to children,
    /// the uncompressed digest of a layer) come along.
    fn share_blob(&self, route: &Route, info: &Info) -> Result<()> {
        let Route { from, to, lease } = *route;
        if self.info(to, &info.digest)?.is_some() {
            return Ok(());
        }
        let mut c = ContentClient::new(self.channel.clone());
        let msg = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: format!("cri-migrate-{}-{}", std::process::id(), info.digest),
            total: info.size,
            expected: info.digest.clone(),
            // At the end: a shared writer stands at the blob's size, and an offset of 0 would
            // truncate it (and so ask for the bytes again).
            offset: info.size,
            data: vec![],
            labels: info.labels.clone(),
        };
        let result = self.rt.block_on(async {
            let mut s = c
                .write(request(tokio_stream::iter(vec![msg]), to, Some(lease)))
                .await?
                .into_inner();
            while s.message().await?.is_some() {}
            Ok::<(), tonic::Status>(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => Ok(()),
            Err(s) => bail!(
                "containerd would not share blob {} from namespace {from} into {to} ({}); its content sharing policy may be \"isolated\"",
                info.digest,
                s.message()
            ),
        }
    }

    fn set_label(&self, namespace: &str, digest: &str, key: &str, value: &str) -> Result<()> {
        let mut c = ContentClient::new(self.channel.clone());
        let mut labels = HashMap::new();
        labels.insert(key.to_string(), value.to_string());
        self.rt
            .block_on(c.update(request(
                UpdateRequest {
                    info: Some(Info {
                        digest: digest.to_string(),
                        labels,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec![format!("labels.{key}")],
                    }),
                },
                namespace,
                None,
            )))
            .map_err(|s| anyhow!("containerd: label {digest}: {}", s.message()))?;
        Ok(())
    }

    /// Share `target` and everything under it that `from` has (other platforms' manifests an
    /// index lists are usually absent); returns the manifests found, as (descriptor, JSON).
    fn share_tree(
        &self,
        route: &Route,
        digest: &str,
        media_type: &str,
        platform: Option<&serde_json::Value>,
        manifests: &mut Vec<(Option<serde_json::Value>, serde_json::Value)>,
    ) -> Result<()> {
        let from = route.from;
        let Some(info) = self.info(from, digest)? else {
            return Ok(());
        };
        self.share_blob(route, &info)?;
        let is_index = INDEX_TYPES.contains(&media_type);
        let is_manifest = MANIFEST_TYPES.contains(&media_type);
        if !is_index && !is_manifest {
            return Ok(());
        }
        let doc: serde_json::Value = serde_json::from_slice(&self.read(from, digest)?)
            .with_context(|| format!("{digest} ({media_type}) is not JSON"))?;
        let children: Vec<&serde_json::Value> = if is_index {
            doc["manifests"].as_array().into_iter().flatten().collect()
        } else {
            std::iter::once(&doc["config"])
                .chain(doc["layers"].as_array().into_iter().flatten())
                .collect()
        };
        for child in children {
            let (Some(d), Some(t)) = (child["digest"].as_str(), child["mediaType"].as_str()) else {
                continue;
            };
            self.share_tree(route, d, t, child.get("platform"), manifests)?;
        }
        if is_manifest {
            manifests.push((platform.cloned(), doc));
        }
        Ok(())
    }

    /// Unpack a manifest's layers into `snapshotter` in `namespace`, as containerd's own unpack
    /// does: one snapshot per layer, named by chain ID, the layer applied by the diff service.
    fn unpack(
        &self,
        namespace: &str,
        lease: &str,
        snapshotter: &str,
        manifest: &serde_json::Value,
    ) -> Result<()> {
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("manifest without a config"))?;
        let config: serde_json::Value =
            serde_json::from_slice(&self.read(namespace, config_digest)?)
                .with_context(|| format!("image config {config_digest} is not JSON"))?;
        let diff_ids = config_diff_ids(&config);
        let layers: Vec<Layer> = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| Layer {
                media_type: l["mediaType"].as_str().unwrap_or_default().into(),
                digest: l["digest"].as_str().unwrap_or_default().into(),
                size: l["size"].as_i64().unwrap_or_default(),
            })
            .collect();
        if layers.len() != diff_ids.len() {
            bail!(
                "image config {config_digest} lists {} layers, its manifest {}",
                diff_ids.len(),
                layers.len()
            );
        }
        let chains = chain_ids(&diff_ids);
        for (i, layer) in layers.iter().enumerate() {
            let at = SnapshotScope {
                namespace,
                lease,
                snapshotter,
            };
            self.unpack_layer(&at, &chains, &diff_ids, i, layer)?;
        }
        if let Some(top) = chains.last() {
            self.hold_snapshot(namespace, snapshotter, config_digest, top)?;
        }
        Ok(())
    }

    /// What keeps an image's snapshots from garbage collection while the image exists: a label
    /// on its config naming the top one.
    pub fn hold_snapshot(
        &self,
        namespace: &str,
        snapshotter: &str,
        config: &str,
        top: &str,
    ) -> Result<()> {
        self.set_label(
            namespace,
            config,
            &format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
            top,
        )
    }

    /// Layer `i` of a stack whose layers below it are unpacked: one snapshot, named by its chain
    /// ID. Nothing to do when that snapshot exists (another image has the same base).
    pub fn unpack_layer(
        &self,
        at: &SnapshotScope,
        chains: &[String],
        diff_ids: &[String],
        i: usize,
        layer: &Layer,
    ) -> Result<()> {
        self.new_snapshot(at, chains, i, &mut |mounts| {
            let mut diff = DiffClient::new(self.channel.clone());
            let applied = self
                .rt
                .block_on(diff.apply(request(
                    ApplyRequest {
                        diff: Some(Descriptor {
                            media_type: layer.media_type.clone(),
                            digest: layer.digest.clone(),
                            size: layer.size,
                            annotations: HashMap::new(),
                        }),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                    at.namespace,
                    Some(at.lease),
                )))
                .map_err(|s| anyhow!("containerd: unpack layer {}: {}", layer.digest, s.message()))?
                .into_inner()
                .applied
                .map(|d| d.digest)
                .unwrap_or_default();
            if applied != diff_ids[i] {
                bail!(
                    "layer {} unpacked to {applied}, its image says {}",
                    layer.digest,
                    diff_ids[i]
                );
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// The snapshot of layer `i` of a stack whose lower layers are there, named by its chain ID
    /// and filled by `fill` through the mounts of its active snapshot, as containerd's own unpack
    /// does (the same key shape and `containerd.io/snapshot.ref` label). False when it was there
    /// already (another image has the same base). On any failure the active snapshot is removed.
    pub fn new_snapshot(
        &self,
        at: &SnapshotScope,
        chains: &[String],
        i: usize,
        fill: &mut dyn FnMut(Vec<Mount>) -> Result<()>,
    ) -> Result<bool> {
        let SnapshotScope {
            namespace,
            lease,
            snapshotter,
        } = *at;
        let chain = &chains[i];
        if self.has_snapshot(namespace, snapshotter, chain)? {
            return Ok(false);
        }
        let mut snaps = SnapshotsClient::new(self.channel.clone());
        let parent = if i == 0 {
            String::new()
        } else {
            chains[i - 1].clone()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let key = format!("extract-{nanos}-cri-migrate {chain}");
        let prepared = self.rt.block_on(snaps.prepare(request(
            PrepareSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: key.clone(),
                parent,
                labels: HashMap::from([("containerd.io/snapshot.ref".to_string(), chain.clone())]),
            },
            namespace,
            Some(lease),
        )));
        let mounts = match prepared {
            Ok(r) => r.into_inner().mounts,
            // With the `snapshot.ref` label containerd answers so when the target exists: another
            // image with the same base made it since the Stat above.
            Err(s) if s.code() == Code::AlreadyExists => return Ok(false),
            Err(s) => bail!("containerd: prepare snapshot {chain}: {}", s.message()),
        };
        let remove = |snaps: &mut SnapshotsClient<Channel>| {
            let _ = self.rt.block_on(snaps.remove(request(
                RemoveSnapshotRequest {
                    snapshotter: snapshotter.into(),
                    key: key.clone(),
                },
                namespace,
                Some(lease),
            )));
        };
        if let Err(e) = fill(mounts) {
            remove(&mut snaps);
            return Err(e);
        }
        let commit = self.rt.block_on(snaps.commit(request(
            CommitSnapshotRequest {
                snapshotter: snapshotter.into(),
                name: chain.clone(),
                key: key.clone(),
                ..Default::default()
            },
            namespace,
            Some(lease),
        )));
        match commit {
            Ok(_) => Ok(true),
            // Another image with the same base made it meanwhile.
            Err(s) if s.code() == Code::AlreadyExists => {
                remove(&mut snaps);
                Ok(false)
            }
            Err(s) => {
                remove(&mut snaps);
                bail!("containerd: commit snapshot {chain}: {}", s.message());
            }
        }
    }

    /// Whether a snapshot (committed or active) of this name exists.
    pub fn has_snapshot(&self, namespace: &str, snapshotter: &str, key: &str) -> Result<bool> {
        let mut snaps = SnapshotsClient::new(self.channel.clone());
        let stat = StatSnapshotRequest {
            snapshotter: snapshotter.into(),
            key: key.to_string(),
        };
        let got = self.rt.block_on(snaps.stat(request(stat, namespace, None)));
        Ok(found(got, "snapshot", key)?.is_some())
    }

    /// A lease in `namespace` (expiring in an hour, should this process die): what is written
    /// under it stays until it is dropped, however garbage collection runs meanwhile.
    fn lease(&self, namespace: &str) -> Result<String> {
        let mut leases = LeasesClient::new(self.channel.clone());
        let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        // Images are shared in parallel: two threads may read the same clock, so a counter of
        // the process makes each lease's name its own (a name taken is refused: "already
        // exists").
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self
            .rt
            .block_on(leases.create(request(
                CreateRequest {
                    id: format!("cri-migrate-{}-{nanos}-{seq}", std::process::id()),
                    labels: HashMap::from([(
                        "containerd.io/gc.expire".to_string(),
                        expire.to_string(),
                    )]),
                },
                namespace,
                None,
            )))
            .map_err(|s| anyhow!("containerd: create a lease: {}", s.message()))?
            .into_inner()
            .lease
            .map(|l| l.id)
            .unwrap_or_default())
    }

    /// The leases in `namespace` whose ID starts with `prefix`, each with the content it holds
    /// (digests; snapshots and other resources left out).
    pub fn leased_content(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let mut leases = LeasesClient::new(self.channel.clone());
        let list = self
            .bounded(
                &format!("leases of {namespace}"),
                leases.list(request(ListRequest { filters: vec![] }, namespace, None)),
            )?
            .leases;
        let mut out = BTreeMap::new();
        for lease in list.into_iter().filter(|l| l.id.starts_with(prefix)) {
            let resources = self
                .bounded(
                    &format!("resources of lease {}", lease.id),
                    leases.list_resources(request(
                        ListResourcesRequest {
                            id: lease.id.clone(),
                        },
                        namespace,
                        None,
                    )),
                )?
                .resources;
            let content = resources
                .into_iter()
                .filter(|r| r.r#type == "content")
                .map(|r| r.id)
                .collect();
            out.insert(lease.id, content);
        }
        Ok(out)
    }

    /// One metadata call, bounded: inspection asks these, and a containerd that hangs must not
    /// hang it.
    fn bounded<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        self.within(what, call)?
            .map(tonic::Response::into_inner)
            .map_err(|s| anyhow!("containerd at {}: {what}: {}", self.address, s.message()))
    }

    /// A call within [`INSPECT_BOUND`]: an error when containerd does not answer in time, else
    /// its own result.
    fn within<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<Result<T, tonic::Status>> {
        self.rt
            .block_on(async { tokio::time::timeout(INSPECT_BOUND, call).await })
            .map_err(|_| {
                anyhow!(
                    "containerd at {}: {what}: no answer in {}s",
                    self.address,
                    INSPECT_BOUND.as_secs()
                )
            })
    }

    fn drop_lease(&self, namespace: &str, lease: &str) {
        let mut leases = LeasesClient::new(self.channel.clone());
        let _ = self.rt.block_on(leases.delete(request(
            DeleteRequest {
                id: lease.to_string(),
                sync: false,
            },
            namespace,
            None,
        )));
    }

    /// Run `f` under a lease in `namespace`, dropped after, whatever `f` returns.
    pub fn leased<T>(&self, namespace: &str, f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        let lease = self.lease(namespace)?;
        let result = f(&lease);
        self.drop_lease(namespace, &lease);
        result
    }

    /// Give `to` the image `from` holds at `target`, unpacked for this host, under `names`.
    pub fn share_image(
        &self,
        from: &str,
        to: &str,
        target: &Content,
        names: &[String],
        snapshotter: &str,
    ) -> Result<()> {
        self.leased(to, |lease| {
            self.share_image_leased(from, to, lease, target, names, snapshotter)
        })
    }

    fn share_image_leased(
        &self,
        from: &str,
        to: &str,
        lease: &str,
        target: &Content,
        names: &[String],
        snapshotter: &str,
    ) -> Result<()> {
        if self.info(from, &target.digest)?.is_none() {
            bail!(
                "containerd's {from} namespace does not hold {}",
                target.digest
            );
        }
        let mut manifests = Vec::new();
        self.share_tree(
            &Route { from, to, lease },
            &target.digest,
            &target.media_type,
            None,
            &mut manifests,
        )?;
        // This host's manifest: the one whose platform matches, or the only one.
        let arch = host_architecture();
        let manifest = manifests
            .iter()
            .find(|(p, _)| {
                p.as_ref()
                    .is_some_and(|p| p["os"] == "linux" && p["architecture"] == arch)
            })
            .or_else(|| manifests.iter().find(|(p, _)| p.is_none()))
            .map(|(_, m)| m)
            .ok_or_else(|| {
                anyhow!(
                    "containerd's {from} namespace holds no linux/{arch} manifest for {}",
                    target.digest
                )
            })?;
        self.unpack(to, lease, snapshotter, manifest)?;
        for name in names {
            self.name_image(to, lease, name, target)?;
        }
        Ok(())
    }

    /// Create (or repoint) the image `name` at `target`.
    pub fn name_image(
        &self,
        namespace: &str,
        lease: &str,
        name: &str,
        target: &Content,
    ) -> Result<()> {
        let mut images = ImagesClient::new(self.channel.clone());
        let image = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(Descriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: target.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let created = self.rt.block_on(images.create(request(
            CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            },
            namespace,
            Some(lease),
        )));
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                self.rt
                    .block_on(images.update(request(
                        UpdateImageRequest {
                            image: Some(image),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["target".into()],
                            }),
                            source_date_epoch: None,
                        },
                        namespace,
                        Some(lease),
                    )))
                    .map_err(|s| anyhow!("containerd: update image {name}: {}", s.message()))?;
                Ok(())
            }
            Err(s) => bail!("containerd: create image {name}: {}", s.message()),
        }
    }

    /// Whether `namespace` holds a blob.
    pub fn has_blob(&self, namespace: &str, digest: &str) -> Result<bool> {
        Ok(self.info(namespace, digest)?.is_some())
    }

    /// Write `size` bytes from `data` as a blob in `namespace`, in chunks; returns its digest.
    /// Hashed here too (SHA-NI where the CPU has it), so a blob the namespace has already is
    /// known by its digest when containerd refuses it.
    pub fn ingest(
        &self,
        namespace: &str,
        lease: &str,
        data: &mut dyn std::io::Read,
        size: u64,
        labels: HashMap<String, String>,
    ) -> Result<String> {
        const CHUNK: usize = 1 << 20;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let r#ref = format!("cri-migrate-import-{}-{nanos}", std::process::id());
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let mut c = ContentClient::new(self.channel.clone());
        let req = request(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            namespace,
            Some(lease),
        );
        // The call runs on the runtime's workers while this thread reads and feeds it.
        let call = self.rt.spawn(async move {
            let mut s = c.write(req).await?.into_inner();
            let mut digest = String::new();
            while let Some(m) = s.message().await? {
                if !m.digest.is_empty() {
                    digest = m.digest;
                }
            }
            Ok::<String, tonic::Status>(digest)
        });
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK];
        let mut hash = Sha256::new();
        let fed = (|| -> Result<()> {
            loop {
                let want = CHUNK.min((size - offset) as usize);
                let mut got = 0;
                while got < want {
                    let n = data.read(&mut buf[got..want])?;
                    if n == 0 {
                        bail!(
                            "the stream ended {} bytes short",
                            size - offset - got as u64
                        );
                    }
                    got += n;
                }
                let last = offset + got as u64 == size;
                hash.update(&buf[..got]);
                let msg = WriteContentRequest {
                    action: if last {
                        WriteAction::Commit
                    } else {
                        WriteAction::Write
                    } as i32,
                    r#ref: r#ref.clone(),
                    total: size as i64,
                    expected: if last {
                        format!("sha256:{:x}", hash.clone().finalize())
                    } else {
                        String::new()
                    },
                    offset: offset as i64,
                    data: buf[..got].to_vec(),
                    labels: if last { labels.clone() } else { HashMap::new() },
                };
                offset += got as u64;
                if tx.blocking_send(msg).is_err() {
                    break;
                }
                if last {
                    break;
                }
            }
            Ok(())
        })();
        drop(tx);
        let result = self
            .rt
            .block_on(call)
            .map_err(|e| anyhow!("containerd write: {e}"))?;
        fed?;
        let digest = format!("sha256:{:x}", hash.finalize());
        match result {
            Ok(d) if d == digest => Ok(d),
            Ok(d) => bail!("containerd stored {d} for a blob that hashes to {digest}"),
            Err(s) if s.code() == Code::AlreadyExists => Ok(digest),
            Err(s) => bail!("containerd: write blob {digest}: {}", s.message()),
        }
    }
}

/// One layer as a manifest lists it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_are_the_snapshot_names_containerd_gives() {
        // Read off a real containerd 1.6 (`ctr snapshots ls` after Docker 28 loaded an image of
        // three uncompressed layers: 2fa8.., fd87.., a725..).
        let diff_ids = [
            "sha256:2fa8f3668e90e16540441ae1745bd5a6015189d9c6953ad1532617e4316dc5b2",
            "sha256:fd87c8a30556dcd76ac9d66dca0bccf1f3d9d59cbff31c3a2d49769dfd47f42c",
            "sha256:a725cd35a4e416efb512f2d1ad15a804ac85a9eef845e8355cd40fb749558d36",
        ]
        .map(String::from);
        assert_eq!(
            chain_ids(&diff_ids),
            [
                "sha256:2fa8f3668e90e16540441ae1745bd5a6015189d9c6953ad1532617e4316dc5b2",
                "sha256:9c53cd2119d6a840a45965c65157ca47a8bd1ee98a80af9725fa51ee1e250425",
                "sha256:ae5280b11a649b6e96a94f51878b1e559868800c6b20afee741badf5ad11016f",
            ]
        );
        assert!(chain_ids(&[]).is_empty());
    }
}
