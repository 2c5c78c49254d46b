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
}

impl Image {
    /// Tags, without Docker's `<none>:<none>` placeholder.
    pub fn tags(&self) -> Vec<String> {
        self.repo_tags
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.starts_with("<none>"))
            .collect()
    }
    pub fn digests(&self) -> Vec<String> {
        self.repo_digests
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.starts_with("<none>"))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Container {
    #[serde(rename = "Image", default)]
    pub image: String,
    #[serde(rename = "ImageID", default)]
    pub image_id: String,
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

    /// Send a request; stream the body's chunks to `each`. Returns the status.
    fn call(
        &self,
        method: Method,
        path: &str,
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u16> {
        self.rt.block_on(async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .with_context(|| {
                    format!("cannot connect to Docker at {}", self.socket.display())
                })?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("Host", "docker")
                .body(Empty::<Bytes>::new())?;
            let mut res = sender.send_request(req).await?;
            let status = res.status().as_u16();
            while let Some(frame) = res.body_mut().frame().await {
                if let Some(chunk) = frame?.data_ref() {
                    each(chunk)?;
                }
            }
            Ok(status)
        })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T> {
        let mut body = Vec::new();
        let status = self.call(Method::GET, path, &mut |c| {
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

    pub fn images(&self) -> Result<Vec<Image>> {
        self.get_json("/images/json")
    }

    pub fn containers(&self) -> Result<Vec<Container>> {
        self.get_json("/containers/json?all=1")
    }

    /// `docker tag`: used to give an untagged image a name for the export, then removed.
    pub fn tag(&self, id: &str, repo: &str, tag: &str) -> Result<()> {
        let path = format!(
            "/images/{id}/tag?{}",
            query(&[("repo", repo), ("tag", tag)])
        );
        let status = self.call(Method::POST, &path, &mut |_| Ok(()))?;
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
        let status = self.call(Method::DELETE, &path, &mut |_| Ok(()))?;
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
        let status = self.call(Method::GET, &path, &mut |c| {
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
