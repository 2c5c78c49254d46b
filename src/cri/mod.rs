//! CRI over gRPC on the runtime's unix socket, the way the kubelet talks to it: Version,
//! Status, PullImage (with the credentials the kubelet would send), ImageStatus.

pub mod credentials;
pub mod provider;

/// The credential the kubelet would send with a pull of `image`: its docker-style files first,
/// then its image credential providers (run on the live node: the caller's to say).
pub fn credentials_for(
    node: &crate::node::Node,
    providers: Option<&provider::Source>,
    image: &str,
) -> anyhow::Result<Option<credentials::Credential>> {
    if let Some(c) = credentials::lookup(node, image) {
        return Ok(Some(c));
    }
    match providers {
        Some(p) => provider::lookup(node, p, image),
        None => Ok(None),
    }
}
pub mod sandbox;

/// The CRI types, for the kubelet stand-in's pods.
pub use k8s_cri;

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    AuthConfig, ContainerConfig, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    ImageStatusRequest, ListPodSandboxRequest, PodSandboxConfig, PodSandboxFilter,
    PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, RuntimeConfigRequest, StartContainerRequest, StatusRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use serde::Serialize;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// One runtime condition from CRI `Status` (RuntimeReady, NetworkReady).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Condition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PulledImage {
    pub image: String,
    /// What PullImage returned (the image id).
    pub image_ref: String,
    pub repo_digests: Vec<String>,
    pub size: u64,
    /// The registry key of the credential sent, if any (never the secret).
    pub credential: Option<String>,
    pub duration_ms: u64,
}

/// What the migration needs from a CRI runtime; a trait so tests can stand in for it.
pub trait Cri: sandbox::PodRuntime {
    fn version(&self) -> Result<RuntimeVersion>;
    fn status(&self) -> Result<Vec<Condition>>;
    fn pull(&self, image: &str, auth: Option<&credentials::Credential>) -> Result<PulledImage>;
    /// CRI `ImageStatus`: whether the runtime has an image under this name.
    fn image_present(&self, image: &str) -> Result<bool>;
}

/// The real client: a tonic channel over the unix socket, driven by a small tokio runtime.
pub struct GrpcCri {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    timeout: Duration,
}

/// `unix:///run/containerd/containerd.sock` -> `/run/containerd/containerd.sock`.
pub fn socket_path(endpoint: &str) -> Result<String> {
    match endpoint.strip_prefix("unix://") {
        Some(p) => Ok(p.to_string()),
        None if endpoint.starts_with('/') => Ok(endpoint.to_string()),
        None => bail!("CRI endpoint {endpoint} is not a unix socket (unix:///path)"),
    }
}

impl GrpcCri {
    /// Connect, with `timeout` for the connection and for each call.
    pub fn connect(endpoint: &str, timeout: Duration) -> Result<GrpcCri> {
        let path = socket_path(endpoint)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = rt.block_on(async {
            let p = path.clone();
            tokio::time::timeout(
                timeout,
                Endpoint::try_from("http://[::]:50051")?
                    .connect_timeout(timeout)
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let p = p.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(p).await?,
                            ))
                        }
                    })),
            )
            .await
            .map_err(|_| anyhow!("no answer on {path} within {timeout:?}"))?
            .with_context(|| format!("cannot connect to the CRI socket {path}"))
        })?;
        Ok(GrpcCri {
            rt,
            channel,
            timeout,
        })
    }

    fn call<T, F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>>(
        &self,
        what: &str,
        timeout: Duration,
        f: F,
    ) -> Result<T> {
        self.rt.block_on(async {
            match tokio::time::timeout(timeout, f).await {
                Err(_) => bail!("CRI {what} did not answer within {timeout:?}"),
                Ok(Err(status)) => bail!(
                    "CRI {what} failed: {} ({:?})",
                    status.message(),
                    status.code()
                ),
                Ok(Ok(r)) => Ok(r.into_inner()),
            }
        })
    }
}

/// A sandbox filter on one label, ready sandboxes only when asked.
fn labelled(label: &str, value: &str, ready: bool) -> PodSandboxFilter {
    PodSandboxFilter {
        label_selector: [(label.to_string(), value.to_string())]
            .into_iter()
            .collect(),
        state: ready.then_some(k8s_cri::v1::PodSandboxStateValue {
            state: k8s_cri::v1::PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    }
}

fn ids(sandboxes: Vec<k8s_cri::v1::PodSandbox>) -> Vec<String> {
    sandboxes.into_iter().map(|p| p.id).collect()
}

impl GrpcCri {
    /// CRI `ListPodSandbox`.
    fn sandboxes(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<k8s_cri::v1::PodSandbox>> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        Ok(self
            .call(
                "ListPodSandbox",
                self.timeout,
                c.list_pod_sandbox(ListPodSandboxRequest { filter }),
            )?
            .items)
    }

    /// CRI `Status` with `verbose`: the runtime's own view of its configuration (containerd puts
    /// its CRI config, sandbox image and runtimes included, under `config`).
    pub fn status_info(&self) -> Result<std::collections::HashMap<String, String>> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        Ok(self
            .call(
                "Status",
                self.timeout,
                c.status(StatusRequest { verbose: true }),
            )?
            .info)
    }
}

/// Pulls take longer than other calls: a large image over a slow mirror.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// A sandbox start pulls the pause image when it is missing and sets up the network; a stop
/// waits for the container's grace period.
const POD_TIMEOUT: Duration = Duration::from_secs(120);

/// One call of the runtime service, with the bound of pod calls, whose answer the check does not
/// use (the stops and removals of the test pod, a container's start).
macro_rules! pod_call {
    ($self:ident, $what:literal, $method:ident, $req:expr) => {{
        let mut c = RuntimeServiceClient::new($self.channel.clone());
        $self.call($what, POD_TIMEOUT, c.$method($req)).map(|_| ())
    }};
}

impl sandbox::PodRuntime for GrpcCri {
    fn cgroup_driver(&self) -> Result<Option<String>> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        let r = self.rt.block_on(async {
            tokio::time::timeout(self.timeout, c.runtime_config(RuntimeConfigRequest {})).await
        });
        match r {
            Err(_) => bail!("CRI RuntimeConfig did not answer within {:?}", self.timeout),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Ok(None),
            Ok(Err(s)) => bail!("CRI RuntimeConfig failed: {} ({:?})", s.message(), s.code()),
            Ok(Ok(r)) => {
                Ok(r.into_inner().linux.map(|l| {
                    match k8s_cri::v1::CgroupDriver::try_from(l.cgroup_driver) {
                        Ok(k8s_cri::v1::CgroupDriver::Systemd) => "systemd".to_string(),
                        _ => "cgroupfs".to_string(),
                    }
                }))
            }
        }
    }
    fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        Ok(self
            .call(
                "RunPodSandbox",
                POD_TIMEOUT,
                c.run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: handler.to_string(),
                }),
            )?
            .pod_sandbox_id)
    }
    fn pod_sandbox_info(&self, id: &str) -> Result<std::collections::HashMap<String, String>> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        let r = self.call(
            "PodSandboxStatus",
            self.timeout,
            c.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            }),
        )?;
        let mut info = r.info;
        // The pod's address, beside the runtime's own info (under a key no runtime uses).
        if let Some(ip) = r
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
        {
            info.insert(sandbox::POD_IP_KEY.into(), ip);
        }
        Ok(info)
    }
    fn create_container(
        &self,
        pod: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        Ok(self
            .call(
                "CreateContainer",
                POD_TIMEOUT,
                c.create_container(CreateContainerRequest {
                    pod_sandbox_id: pod.into(),
                    config: Some(config.clone()),
                    sandbox_config: Some(sandbox.clone()),
                }),
            )?
            .container_id)
    }
    fn start_container(&self, id: &str) -> Result<()> {
        pod_call!(
            self,
            "StartContainer",
            start_container,
            StartContainerRequest {
                container_id: id.into(),
            }
        )
    }
    fn container_state(&self, id: &str) -> Result<sandbox::ContainerState> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        let s = self
            .call(
                "ContainerStatus",
                self.timeout,
                c.container_status(ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                }),
            )?
            .status
            .ok_or_else(|| anyhow!("the runtime reports no status for container {id}"))?;
        Ok(sandbox::ContainerState {
            state: k8s_cri::v1::ContainerState::try_from(s.state)
                .map(|x| x.as_str_name().to_string())
                .unwrap_or_else(|_| format!("state {}", s.state)),
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
        })
    }
    fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        pod_call!(
            self,
            "StopContainer",
            stop_container,
            StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_secs,
            }
        )
    }
    fn remove_container(&self, id: &str) -> Result<()> {
        pod_call!(
            self,
            "RemoveContainer",
            remove_container,
            RemoveContainerRequest {
                container_id: id.into(),
            }
        )
    }
    fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        pod_call!(
            self,
            "StopPodSandbox",
            stop_pod_sandbox,
            StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }
        )
    }
    fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        pod_call!(
            self,
            "RemovePodSandbox",
            remove_pod_sandbox,
            RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }
        )
    }
    fn pod_sandboxes_labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        Ok(ids(self.sandboxes(Some(labelled(label, value, false)))?))
    }
    fn ready_pod_sandboxes_labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        Ok(ids(self.sandboxes(Some(labelled(label, value, true)))?))
    }
    fn pod_sandboxes_since(&self, since_unix_nanos: i64) -> Result<Vec<String>> {
        let all = self.sandboxes(None)?;
        Ok(ids(all
            .into_iter()
            .filter(|p| p.created_at >= since_unix_nanos)
            .collect()))
    }
    fn remove_pod_cgroup(&self, parent: &str) {
        sandbox::remove_pod_cgroup_dirs(std::path::Path::new("/sys/fs/cgroup"), parent);
    }
    fn make_log_dirs(&self, pod_dir: &str, container: &str) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::path::Path::new(pod_dir).join(container);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .with_context(|| {
                format!(
                    "cannot create the test pod's log directory {}",
                    dir.display()
                )
            })
    }
    fn remove_log_dir(&self, pod_dir: &str) {
        // Only the check's own (its pod's UID is new): never another pod's logs.
        if pod_dir.starts_with("/var/log/pods/") && pod_dir.contains(sandbox::POD_NAMESPACE) {
            let _ = std::fs::remove_dir_all(pod_dir);
        }
    }
}

/// An image as CRI names it.
fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

impl GrpcCri {
    /// CRI `ImageStatus`: the image the runtime has under this name, if any.
    fn image_status(&self, image: &str) -> Result<Option<k8s_cri::v1::Image>> {
        let mut c = ImageServiceClient::new(self.channel.clone());
        let ask = ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self
            .call("ImageStatus", self.timeout, c.image_status(ask))?
            .image)
    }
}

impl Cri for GrpcCri {
    fn image_present(&self, image: &str) -> Result<bool> {
        Ok(self.image_status(image)?.is_some())
    }

    fn version(&self) -> Result<RuntimeVersion> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        let v = self.call(
            "Version",
            self.timeout,
            c.version(VersionRequest {
                version: "v1".into(),
            }),
        )?;
        Ok(RuntimeVersion {
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            runtime_api_version: v.runtime_api_version,
        })
    }

    fn status(&self) -> Result<Vec<Condition>> {
        let mut c = RuntimeServiceClient::new(self.channel.clone());
        let s = self.call(
            "Status",
            self.timeout,
            c.status(StatusRequest { verbose: false }),
        )?;
        Ok(s.status
            .map(|st| {
                st.conditions
                    .into_iter()
                    .map(|c| Condition {
                        kind: c.r#type,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    fn pull(&self, image: &str, auth: Option<&credentials::Credential>) -> Result<PulledImage> {
        let start = Instant::now();
        let mut c = ImageServiceClient::new(self.channel.clone());
        let auth_config = auth.map(|a| AuthConfig {
            username: a.username.clone(),
            password: a.password.clone(),
            // Empty, as the kubelet sends it: containerd parses a non-empty one as a URL, and a
            // config.json key such as `127.0.0.1:5000` is not one ("parse server address").
            server_address: String::new(),
            identity_token: a.identity_token.clone(),
            registry_token: a.registry_token.clone(),
            ..Default::default()
        });
        let pulled = self.call(
            &format!("PullImage of {image}"),
            PULL_TIMEOUT,
            c.pull_image(PullImageRequest {
                image: Some(image_spec(image)),
                auth: auth_config,
                sandbox_config: None,
            }),
        )?;
        let img = self.image_status(image)?.ok_or_else(|| {
            anyhow!("the runtime reports no image {image} right after pulling it")
        })?;
        Ok(PulledImage {
            image: image.to_string(),
            image_ref: pulled.image_ref,
            repo_digests: img.repo_digests,
            size: img.size,
            // Which entry, and where from when a credential provider gave it (never the secret).
            credential: auth.map(|a| {
                match a.file.starts_with("the kubelet's credential provider") {
                    true => format!("{} (from {})", a.registry, a.file),
                    false => a.registry.clone(),
                }
            }),
            duration_ms: start.elapsed().as_millis() as u64,
        })
    }
}

/// The result of `verify`: what the runtime said, and the test pull.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub endpoint: String,
    pub version: RuntimeVersion,
    pub conditions: Vec<Condition>,
    pub pull: PulledImage,
    /// The digest the image resolved to (`sha256:...`), when the runtime reports one.
    pub digest: Option<String>,
    /// The test pod, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<sandbox::SandboxReport>,
}

/// Version, Status, then a pull of `image` with the kubelet's credentials. A runtime that is not
/// ready, a failed pull, or a digest that does not match a pinned image is an error.
pub fn verify(
    cri: &dyn Cri,
    endpoint: &str,
    image: &str,
    cred: Option<&credentials::Credential>,
) -> Result<Verification> {
    let version = cri.version()?;
    let conditions = cri.status()?;
    require_ready(&conditions, endpoint)?;
    let pull = cri.pull(image, cred)?;
    let digest = pull
        .repo_digests
        .iter()
        .find_map(|d| d.split_once('@').map(|(_, d)| d.to_string()));
    if let Some((_, pinned)) = image.split_once('@') {
        if !pull
            .repo_digests
            .iter()
            .any(|d| d.ends_with(&format!("@{pinned}")))
        {
            bail!(
                "{image} is pinned to {pinned} but the runtime resolved it to {}",
                pull.repo_digests.join(", ")
            );
        }
    }
    Ok(Verification {
        endpoint: endpoint.to_string(),
        version,
        conditions,
        pull,
        digest,
        sandbox: None,
    })
}

/// An error naming the runtime's reason when its `RuntimeReady` condition is false.
pub fn require_ready(conditions: &[Condition], endpoint: &str) -> Result<()> {
    match conditions
        .iter()
        .find(|c| c.kind == "RuntimeReady" && !c.status)
    {
        Some(c) => bail!(
            "the runtime at {endpoint} is not ready: {} {}",
            c.reason,
            c.message
        ),
        None => Ok(()),
    }
}

/// Wait until the runtime answers CRI Version, up to `timeout`.
pub fn wait_ready(endpoint: &str, timeout: Duration) -> Result<GrpcCri> {
    let deadline = Instant::now() + timeout;
    let mut last = anyhow!("not tried");
    while Instant::now() < deadline {
        // Short tries: a restarting runtime answers within milliseconds of its socket appearing,
        // and every one of them is downtime.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(2))
            .max(Duration::from_millis(100));
        match GrpcCri::connect(endpoint, left).and_then(|c| c.version().map(|_| c)) {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last.context(format!(
        "CRI did not answer on {endpoint} within {}s",
        timeout.as_secs()
    )))
}
