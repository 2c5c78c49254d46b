//! Docker Engine's HTTP API on its unix socket (hyper): list images and containers, tag, and
//! stream an image export (`docker save`) without writing it to disk.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Docker's API socket, where Docker's packages put it.
pub const SOCKET: &str = "/var/run/docker.sock";

#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "RepoDigests", default)]
    pub repo_digests: Option<Vec<String>>,
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// Where the image points in containerd, when Docker keeps it there (API 1.46+).
    #[serde(rename = "Descriptor", default, skip_serializing)]
    pub descriptor: Option<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

/// The parts of `GET /info` that say where Docker keeps its images.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Info {
    /// The graph driver (`overlay2`, ...), or `overlayfs` on containerd's image store.
    #[serde(rename = "Driver", default)]
    pub driver: String,
    /// Where Docker keeps its data (`/var/lib/docker`, or `/var/lib/docker/<uid>.<gid>` with
    /// userns-remap).
    #[serde(rename = "DockerRootDir", default)]
    pub root_dir: String,
    /// `name=userns` among them: Docker's files are owned by remapped ids.
    #[serde(rename = "SecurityOptions", default)]
    pub security_options: Option<Vec<String>>,
    #[serde(rename = "DriverStatus", default)]
    pub driver_status: Option<Vec<Vec<String>>>,
    #[serde(rename = "Containerd", default)]
    pub containerd: Option<ContainerdInfo>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ContainerdInfo {
    #[serde(rename = "Address", default)]
    pub address: String,
    #[serde(rename = "Namespaces", default)]
    pub namespaces: ContainerdNamespaces,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ContainerdNamespaces {
    #[serde(rename = "Containers", default)]
    pub containers: String,
}

impl Info {
    /// Docker runs with userns-remap: its layers hold remapped owners, not the image's.
    pub fn userns_remap(&self) -> bool {
        self.security_options
            .iter()
            .flatten()
            .any(|o| o.split(',').any(|kv| kv == "name=userns"))
    }

    /// Docker on containerd's image store: (containerd's socket, the namespace of the images).
    pub fn containerd_store(&self) -> Option<(String, String)> {
        let snapshotter = self.driver_status.iter().flatten().any(|kv| {
            kv.first().is_some_and(|k| k == "driver-type")
                && kv
                    .get(1)
                    .is_some_and(|v| v == "io.containerd.snapshotter.v1")
        });
        let c = self.containerd.as_ref()?;
        let ns = if c.namespaces.containers.is_empty() {
            "moby".to_string()
        } else {
            c.namespaces.containers.clone()
        };
        (snapshotter && !c.address.is_empty()).then(|| (c.address.clone(), ns))
    }
}

impl Image {
    /// Tags, without Docker's `<none>:<none>` placeholder. On containerd's image store an image
    /// pulled by digest lists `repo@sha256:..` among its tags: that is a digest, not a tag.
    pub fn tags(&self) -> Vec<String> {
        self.repo_tags
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.starts_with("<none>") && !t.contains('@'))
            .collect()
    }
    pub fn digests(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .repo_digests
            .iter()
            .chain(self.repo_tags.iter())
            .flatten()
            .filter(|t| !t.starts_with("<none>") && t.contains('@'))
            .cloned()
            .collect();
        d.sort();
        d.dedup();
        d
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "ImageID", default)]
    pub image_id: String,
}

/// A container whose processes may still live, as the cutover watches it exit.
#[derive(Debug, Clone)]
pub struct LiveContainer {
    pub id: String,
    /// Its main process on the host (0: none now).
    pub pid: i64,
    /// Between two runs of its restart policy: no process to watch.
    pub restarting: bool,
    /// `HostConfig.PidMode`: "" (its own PID namespace), `host`, or `container:ID`.
    pub pid_mode: String,
    /// Frozen (`docker pause`): a signal waits until it is thawed.
    pub paused: bool,
    /// `HostConfig.RestartPolicy.Name`: "" or `no`, `always`, `unless-stopped`, `on-failure`.
    pub restart_policy: String,
    /// `Config.StopSignal` ("" for SIGTERM) and `Config.StopTimeout` (none: Docker's 10 s; a
    /// negative one: no limit), as `docker stop` and dockerd's shutdown use them.
    pub stop_signal: String,
    pub stop_timeout: Option<i64>,
}

/// The longest Docker may take over a metadata call (list, inspect, tag).
const API_BOUND: Duration = Duration::from_secs(60);
/// The longest an export may go without a byte: Docker 20.10 writes the whole export under its
/// data root before sending the first one.
const EXPORT_IDLE_BOUND: Duration = Duration::from_secs(30 * 60);

/// Docker's socket did not take the connection: Docker is not running (or not there). Typed,
/// so that the advice names Docker, not the runtime the images go to.
#[derive(Debug)]
pub struct DockerUnreachable {
    pub socket: PathBuf,
}

impl std::fmt::Display for DockerUnreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to Docker at {}", self.socket.display())
    }
}

pub struct Docker {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

impl Docker {
    pub fn new(socket: PathBuf) -> Result<Docker> {
        Ok(Docker {
            socket,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Send a request; stream the body's chunks to `each`. Returns the status. Bounded: the
    /// connection and the answer's head within `idle`, and no more than `idle` between two chunks
    /// of the body (an export starts late: Docker 20.10 writes it under its data root first).
    fn call(
        &self,
        method: Method,
        path: &str,
        idle: Duration,
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u16> {
        let late = || {
            anyhow!(
                "Docker did not answer {method} {path} within {}s",
                idle.as_secs()
            )
        };
        self.rt.block_on(async {
            let head = async {
                let stream = tokio::net::UnixStream::connect(&self.socket)
                    .await
                    .with_context(|| DockerUnreachable {
                        socket: self.socket.clone(),
                    })?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let req = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header("Host", "docker")
                    .body(Empty::<Bytes>::new())?;
                anyhow::Ok(sender.send_request(req).await?)
            };
            let mut res = tokio::time::timeout(idle, head)
                .await
                .map_err(|_| late())??;
            let status = res.status().as_u16();
            while let Some(frame) = tokio::time::timeout(idle, res.body_mut().frame())
                .await
                .map_err(|_| late())?
            {
                if let Some(chunk) = frame?.data_ref() {
                    each(chunk)?;
                }
            }
            Ok(status)
        })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T> {
        self.get_json_within(path, API_BOUND)
    }

    fn get_json_within<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        bound: Duration,
    ) -> Result<T> {
        let mut body = Vec::new();
        let status = self.call(Method::GET, path, bound, &mut |c| {
            body.extend_from_slice(c);
            Ok(())
        })?;
        if status != 200 {
            bail!(
                "Docker answered {status} to GET {path}: {}",
                String::from_utf8_lossy(&body).trim()
            );
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("Docker's answer to GET {path} is not what was expected"))
    }

    pub fn info(&self) -> Result<Info> {
        self.get_json("/info")
    }

    pub fn images(&self) -> Result<Vec<Image>> {
        self.get_json("/images/json")
    }

    /// The diff IDs of an image's layers, bottom first (`RootFS.Layers`).
    pub fn diff_ids(&self, id: &str) -> Result<Vec<String>> {
        let v: serde_json::Value = self.get_json(&format!("/images/{id}/json"))?;
        Ok(v["RootFS"]["Layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect())
    }

    pub fn containers(&self) -> Result<Vec<Container>> {
        self.get_json("/containers/json?all=1")
    }

    /// Every container whose processes may live (running, paused or restarting), with its main
    /// process and PID namespace, each call bounded by `bound`: what the cutover watches exit.
    pub fn live_containers(&self, bound: Duration) -> Result<Vec<LiveContainer>> {
        #[derive(Deserialize)]
        struct Listed {
            #[serde(rename = "Id")]
            id: String,
            #[serde(rename = "State", default)]
            state: String,
        }
        let listed: Vec<Listed> = self.get_json_within("/containers/json?all=1", bound)?;
        listed
            .into_iter()
            .filter(|c| matches!(c.state.as_str(), "running" | "paused" | "restarting"))
            .map(|c| {
                let v: serde_json::Value =
                    self.get_json_within(&format!("/containers/{}/json", c.id), bound)?;
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                Ok(LiveContainer {
                    pid: v["State"]["Pid"].as_i64().unwrap_or(0),
                    restarting: c.state == "restarting",
                    paused: c.state == "paused",
                    pid_mode: text(&v["HostConfig"]["PidMode"]),
                    restart_policy: text(&v["HostConfig"]["RestartPolicy"]["Name"]),
                    stop_signal: text(&v["Config"]["StopSignal"]),
                    stop_timeout: v["Config"]["StopTimeout"].as_i64(),
                    id: c.id,
                })
            })
            .collect()
    }

    /// `docker tag`: used to give an untagged image a name for the export, then removed.
    pub fn tag(&self, id: &str, repo: &str, tag: &str) -> Result<()> {
        let path = format!(
            "/images/{id}/tag?{}",
            query(&[("repo", repo), ("tag", tag)])
        );
        let status = self.call(Method::POST, &path, API_BOUND, &mut |_| Ok(()))?;
        if status != 201 {
            bail!("Docker could not tag {id} as {repo}:{tag} ({status})");
        }
        Ok(())
    }

    pub fn untag(&self, reference: &str) -> Result<()> {
        let path = format!(
            "/images/{}?noprune=1",
            form_urlencoded::byte_serialize(reference.as_bytes()).collect::<String>()
        );
        let status = self.call(Method::DELETE, &path, API_BOUND, &mut |_| Ok(()))?;
        if status != 200 {
            bail!("Docker could not remove the temporary tag {reference} ({status})");
        }
        Ok(())
    }

    /// Stream `docker save NAMES` into `sink`; returns the bytes written.
    pub fn export(
        &self,
        names: &[String],
        sink: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| ("names", n.as_str())).collect();
        let path = format!("/images/get?{}", query(&pairs));
        let mut written = 0u64;
        let mut first = Vec::new();
        let status = self.call(Method::GET, &path, EXPORT_IDLE_BOUND, &mut |c| {
            if first.len() < 512 {
                first.extend_from_slice(&c[..c.len().min(512)]);
            }
            sink.write_all(c)
                .map_err(|e| anyhow!("the importer stopped reading: {e}"))?;
            written += c.len() as u64;
            progress(c.len() as u64);
            Ok(())
        })?;
        if status != 200 {
            bail!(
                "Docker answered {status} to the export of {}: {}",
                names.join(" "),
                String::from_utf8_lossy(&first).trim()
            );
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_containerd_store_is_told_by_the_driver_type() {
        // Docker 28.5 with features.containerd-snapshotter, as its /info answers.
        let info: Info = serde_json::from_str(r#"{"Driver":"overlayfs","DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]],"Containerd":{"Address":"/run/containerd/containerd.sock","Namespaces":{"Containers":"moby","Plugins":"plugins.moby"}}}"#).unwrap();
        assert_eq!(
            info.containerd_store(),
            Some(("/run/containerd/containerd.sock".into(), "moby".into()))
        );
        // The classic overlay2 store (Docker 20.10 has no Containerd field at all).
        let info: Info = serde_json::from_str(r#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"],["Supports d_type","true"]]}"#).unwrap();
        assert_eq!(info.containerd_store(), None);
        let info: Info = serde_json::from_str(r#"{"Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"]],"Containerd":{"Address":"/run/containerd/containerd.sock","Namespaces":{"Containers":"moby"}}}"#).unwrap();
        assert_eq!(info.containerd_store(), None);
    }

    #[test]
    fn a_digest_among_the_tags_is_a_digest() {
        // Docker 28 on containerd's store, for an image pulled by digest only.
        let image: Image = serde_json::from_str(r#"{"Id":"sha256:26","RepoTags":["127.0.0.1:5000/test/pinned@sha256:26"],"RepoDigests":["127.0.0.1:5000/test/pinned@sha256:26"],"Size":3}"#).unwrap();
        assert!(image.tags().is_empty());
        assert_eq!(image.digests(), ["127.0.0.1:5000/test/pinned@sha256:26"]);
    }
}
