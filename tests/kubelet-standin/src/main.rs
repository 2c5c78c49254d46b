//! A stand-in for the kubelet, for cri-migrate's end-to-end test on a real systemd node (no
//! kubelet binary can be installed there). It is honest about what it checks, which is what a
//! real kubelet would refuse at start:
//!
//! - its flags, against the flag set of the kubelet version it plays (`KUBELET_STANDIN_VERSION`,
//!   or `/etc/kubelet-standin/version`): a flag that version does not know (`--network-plugin`
//!   from 1.24, `--container-runtime` from 1.27, `--pod-infra-container-image` from 1.35, a typo)
//!   ends it with exit 1, as `kubelet` does;
//! - its config.yaml (`--config`): it must parse;
//! - its runtime: below 1.24 without `--container-runtime=remote`, Docker's API must answer on
//!   /var/run/docker.sock (dockershim); otherwise CRI Version and Status on its endpoint (the flag,
//!   or `containerRuntimeEndpoint` from 1.27), RuntimeReady true, and — from the runtime's own
//!   verbose status — the runtime's sandbox image must be the one the node expects and its cgroup
//!   driver must match `cgroupDriver`.
//!
//! Then, on a CRI runtime, it runs the static pods of its manifest directory (`staticPodPath` or
//! `--pod-manifest-path`) as the kubelet would: per pod `RunPodSandbox` (the kubelet's cgroup
//! parent, the pod network where the runtime has CNI config), then per container the image
//! (pulled if missing), `CreateContainer`, `StartContainer`; each pod logged as `pod NS/NAME
//! running` (what the downtime bench times). A pod whose sandbox already exists (the stand-in
//! restarted) is left as it is; a pod that fails is logged and retried at the next round.
//!
//! It stays running, checking the runtime every few seconds, so that systemd reports it
//! active; when a check fails it exits 1 and systemd marks it failed.

use cri_migrate::cri::{self, Cri};
use cri_migrate::version::Version;
use std::io::{Read, Write};
use std::time::Duration;

/// Flags every version from 1.20 on takes (the subset kubeadm nodes use, and common extras).
const COMMON: &[&str] = &[
    "config",
    "kubeconfig",
    "bootstrap-kubeconfig",
    "container-runtime-endpoint",
    "image-service-endpoint",
    "node-labels",
    "node-ip",
    "hostname-override",
    "max-pods",
    "v",
    "cgroup-driver",
    "register-with-taints",
    "fail-swap-on",
    "cloud-provider",
    "provider-id",
    "root-dir",
    "cert-dir",
    "rotate-certificates",
    "resolv-conf",
    "runtime-request-timeout",
    "feature-gates",
    "pod-manifest-path",
    "cluster-dns",
    "cluster-domain",
    "read-only-port",
    "anonymous-auth",
    "authorization-mode",
    "client-ca-file",
    "container-log-max-size",
    "container-log-max-files",
    "eviction-hard",
    "kube-reserved",
    "system-reserved",
    "serialize-image-pulls",
    "volume-plugin-dir",
    // Deprecated for the config file, still taken (kubenet's nodes set it).
    "pod-cidr",
    "image-credential-provider-config",
    "image-credential-provider-bin-dir",
];
/// (flag, first version without it)
const REMOVED: &[(&str, (u32, u32))] = &[
    ("network-plugin", (1, 24)),
    ("cni-bin-dir", (1, 24)),
    ("cni-conf-dir", (1, 24)),
    ("cni-cache-dir", (1, 24)),
    ("network-plugin-mtu", (1, 24)),
    ("docker-endpoint", (1, 24)),
    ("image-pull-progress-deadline", (1, 24)),
    ("experimental-dockershim-root-directory", (1, 24)),
    ("non-masquerade-cidr", (1, 24)),
    ("container-runtime", (1, 27)),
    ("pod-infra-container-image", (1, 35)),
];

fn fail(msg: String) -> ! {
    eprintln!("kubelet-standin: {msg}");
    std::process::exit(1);
}

fn version() -> Version {
    let text = std::env::var("KUBELET_STANDIN_VERSION")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/kubelet-standin/version").ok())
        .unwrap_or_else(|| {
            fail(
                "no version to play: set KUBELET_STANDIN_VERSION or /etc/kubelet-standin/version"
                    .into(),
            )
        });
    Version::parse(&text).unwrap_or_else(|| fail(format!("`{}` is not a version", text.trim())))
}

/// `--a=b`, `--a b`, `--flag`: the kubelet's own forms (pflag).
fn parse(args: &[String], v: Version) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            fail(format!(
                "unexpected argument {a:?}: the kubelet takes no positional arguments"
            ));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => match args.get(i + 1).filter(|n| !n.starts_with('-')) {
                Some(next) => {
                    i += 1;
                    (body.to_string(), Some(next.clone()))
                }
                None => (body.to_string(), None),
            },
        };
        let removed_in = REMOVED.iter().find(|(f, _)| *f == name).map(|(_, r)| *r);
        let known = match removed_in {
            Some((ma, mi)) => !v.at_least(ma, mi),
            None => COMMON.contains(&name.as_str()),
        };
        if !known {
            fail(format!(
                "failed to parse kubelet flag: unknown flag: --{name} (kubelet {v})"
            ));
        }
        out.push((name, value));
        i += 1;
    }
    out
}

fn docker_answers() -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200")
}

fn main() {
    let v = version();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["--version"] {
        println!("Kubernetes v{v}");
        return;
    }
    let flags = parse(&args, v);
    let flag = |n: &str| {
        flags
            .iter()
            .rev()
            .find(|(f, _)| f == n)
            .and_then(|(_, val)| val.clone())
    };

    let config: serde_norway::Value = match flag("config") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                fail(format!("failed to load kubelet config file {path}: {e}"))
            });
            serde_norway::from_str(&text)
                .unwrap_or_else(|e| fail(format!("failed to load kubelet config file {path}: {e}")))
        }
        None => serde_norway::Value::Null,
    };
    let cfg = |k: &str| config.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let cgroup_driver = flag("cgroup-driver")
        .or_else(|| cfg("cgroupDriver"))
        .unwrap_or_else(|| "cgroupfs".into());

    let dockershim = !v.at_least(1, 24) && flag("container-runtime").as_deref() != Some("remote");
    if dockershim {
        if !docker_answers() {
            fail("failed to run Kubelet: dockershim: Docker's API does not answer on /var/run/docker.sock".into());
        }
        println!("kubelet-standin {v}: dockershim, Docker answers on /var/run/docker.sock");
        loop {
            std::thread::sleep(Duration::from_secs(5));
            if !docker_answers() {
                fail("Docker stopped answering on /var/run/docker.sock".into());
            }
        }
    }

    let endpoint = flag("container-runtime-endpoint")
        .or_else(|| {
            v.at_least(1, 27)
                .then(|| cfg("containerRuntimeEndpoint"))
                .flatten()
        })
        .unwrap_or_else(|| "unix:///run/containerd/containerd.sock".into());
    let client = cri::wait_ready(&endpoint, Duration::from_secs(15)).unwrap_or_else(|e| {
        fail(format!(
            "failed to run Kubelet: validate service connection: {e:#}"
        ))
    });
    let rv = client.version().unwrap_or_else(|e| fail(format!("{e:#}")));
    let conditions = client.status().unwrap_or_else(|e| fail(format!("{e:#}")));
    if let Some(c) = conditions
        .iter()
        .find(|c| c.kind == "RuntimeReady" && !c.status)
    {
        fail(format!(
            "container runtime is down: {} {}",
            c.reason, c.message
        ));
    }
    let info = client.status_info().unwrap_or_default();
    if let Some(runtime_config) = info
        .get("config")
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
    {
        // The pause image this node must use: the flag where the version takes it, else the file
        // the test writes.
        let expected = flag("pod-infra-container-image").or_else(|| {
            std::fs::read_to_string("/etc/kubelet-standin/sandbox-image")
                .ok()
                .map(|s| s.trim().to_string())
        });
        // containerd 1.x shows its sandbox image here; 2.x keeps it in its images plugin, which
        // Status does not show (its pods prove it instead).
        let actual = runtime_config.get("sandboxImage").and_then(|s| s.as_str());
        if let (Some(expected), Some(actual)) = (expected, actual) {
            if actual != expected {
                fail(format!("the runtime's sandbox image is {actual:?}, the node's is {expected:?}: pods would not start where the default registry is unreachable"));
            }
        }
        let systemd = runtime_config
            .pointer("/containerd/runtimes/runc/options/SystemdCgroup")
            .and_then(|b| b.as_bool());
        if let Some(systemd) = systemd {
            if systemd != (cgroup_driver == "systemd") {
                fail(format!("misconfiguration: kubelet cgroup driver: {cgroup_driver:?} is different from the runtime's (SystemdCgroup = {systemd})"));
            }
        }
    }
    println!(
        "kubelet-standin {v}: {} {} ready on {endpoint}, cgroup driver {cgroup_driver}",
        rv.runtime_name, rv.runtime_version
    );
    let manifests = flag("pod-manifest-path").or_else(|| cfg("staticPodPath"));
    let dns: Vec<String> = config
        .get("clusterDNS")
        .and_then(|d| d.as_sequence())
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pods = Pods {
        endpoint: endpoint.clone(),
        dir: manifests,
        driver: cri::sandbox::CgroupDriver::of_kubelet(Some(&cgroup_driver)),
        dns,
        domain: cfg("clusterDomain"),
    };
    let mut running: Vec<String> = Vec::new();
    pods.run(&mut running);
    let mut misses = 0;
    loop {
        std::thread::sleep(Duration::from_secs(5));
        pods.run(&mut running);
        match client.version() {
            Ok(_) => misses = 0,
            Err(e) => {
                misses += 1;
                if misses >= 3 {
                    fail(format!("container runtime is down: {e:#}"));
                }
            }
        }
    }
}

/// The static pods of the manifest directory.
struct Pods {
    endpoint: String,
    dir: Option<String>,
    driver: cri::sandbox::CgroupDriver,
    dns: Vec<String>,
    domain: Option<String>,
}

struct Container {
    name: String,
    image: String,
    command: Vec<String>,
}

impl Pods {
    /// Start every pod not running yet, all at once as the kubelet's pod workers do (each on a
    /// connection of its own); `running` holds the ones this process started or found.
    fn run(&self, running: &mut Vec<String>) {
        let mut todo: Vec<(String, String, String, Vec<Container>)> = Vec::new();
        let Some(dir) = &self.dir else { return };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let Ok(pod) = serde_norway::from_str::<serde_norway::Value>(&text) else {
                continue;
            };
            let s = |p: &[&str]| {
                let mut v = &pod;
                for k in p {
                    v = v.get(*k)?;
                }
                v.as_str().map(str::to_string)
            };
            let Some(name) = s(&["metadata", "name"]) else {
                continue;
            };
            let ns = s(&["metadata", "namespace"]).unwrap_or_else(|| "default".into());
            let key = format!("{ns}/{name}");
            if running.contains(&key) {
                continue;
            }
            let containers: Vec<Container> = pod
                .get("spec")
                .and_then(|sp| sp.get("containers"))
                .and_then(|c| c.as_sequence())
                .map(|seq| {
                    seq.iter()
                        .filter_map(|c| {
                            let list = |k: &str| -> Vec<String> {
                                c.get(k)
                                    .and_then(|v| v.as_sequence())
                                    .map(|s| {
                                        s.iter()
                                            .filter_map(|x| x.as_str().map(str::to_string))
                                            .collect()
                                    })
                                    .unwrap_or_default()
                            };
                            Some(Container {
                                name: c.get("name")?.as_str()?.to_string(),
                                image: c.get("image")?.as_str()?.to_string(),
                                command: [list("command"), list("args")].concat(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            todo.push((key, ns, name, containers));
        }
        let done: Vec<Option<String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = todo
                .iter()
                .map(|(key, ns, name, containers)| {
                    scope.spawn(move || {
                        let r = cri::GrpcCri::connect(&self.endpoint, Duration::from_secs(10))
                            .and_then(|client| self.start(&client, ns, name, containers));
                        match r {
                            Ok(Some(id)) => {
                                println!(
                                    "pod {key} running: sandbox {id}, {} container(s)",
                                    containers.len()
                                );
                                Some(key.clone())
                            }
                            Ok(None) => {
                                println!("pod {key} already running");
                                Some(key.clone())
                            }
                            Err(e) => {
                                println!("pod {key} failed: {e:#}");
                                None
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or(None))
                .collect()
        });
        running.extend(done.into_iter().flatten());
    }

    fn start(
        &self,
        client: &cri::GrpcCri,
        ns: &str,
        name: &str,
        containers: &[Container],
    ) -> anyhow::Result<Option<String>> {
        use cri::k8s_cri::v1 as k;
        use cri::sandbox::PodRuntime;
        // A static pod's UID is derived from its name here (the kubelet hashes the manifest).
        let uid = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (ns, name).hash(&mut h);
            let x = h.finish();
            format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                x >> 32,
                (x >> 16) & 0xffff,
                x & 0xfff,
                (x >> 20) & 0xfff,
                x & 0xffff_ffff_ffff
            )
        };
        if !client
            .ready_pod_sandboxes_labelled("io.kubernetes.pod.uid", &uid)?
            .is_empty()
        {
            return Ok(None);
        }
        // A sandbox of this pod that is not ready (stopped, its containers gone): the kubelet
        // starts the pod again with the next attempt number (the runtime reserves the name).
        let attempt = client
            .pod_sandboxes_labelled("io.kubernetes.pod.uid", &uid)?
            .len() as u32;
        let pod_network = client
            .status()?
            .iter()
            .any(|c| c.kind == "NetworkReady" && c.status);
        let labels = |extra: Option<&str>| {
            let mut l: std::collections::HashMap<String, String> = [
                ("io.kubernetes.pod.name", name),
                ("io.kubernetes.pod.namespace", ns),
                ("io.kubernetes.pod.uid", uid.as_str()),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            if let Some(c) = extra {
                l.insert("io.kubernetes.container.name".into(), c.into());
            }
            l
        };
        // The kubelet's namespaces for a pod (the same on the sandbox and each container: CRI-O
        // refuses a container whose options differ from its sandbox's).
        let namespaces = k::NamespaceOption {
            network: if pod_network {
                k::NamespaceMode::Pod
            } else {
                k::NamespaceMode::Node
            } as i32,
            pid: k::NamespaceMode::Container as i32,
            ipc: k::NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let log_directory = format!("/var/log/pods/{ns}_{name}_{uid}");
        // The kubelet makes the pod's log directory and each container's before it asks.
        for c in containers {
            std::fs::create_dir_all(format!("{log_directory}/{}", c.name))?;
        }
        let sandbox = k::PodSandboxConfig {
            metadata: Some(k::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: ns.into(),
                attempt,
            }),
            hostname: if pod_network {
                name.into()
            } else {
                String::new()
            },
            log_directory,
            dns_config: pod_network
                .then(|| cri::sandbox::cluster_first_dns(&self.dns, self.domain.as_deref(), ns))
                .flatten(),
            labels: labels(None),
            linux: Some(k::LinuxPodSandboxConfig {
                cgroup_parent: cri::sandbox::cgroup_parent(self.driver, &uid),
                security_context: Some(k::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = client.run_pod_sandbox(&sandbox, "")?;
        for c in containers {
            if !client.image_present(&c.image)? {
                client.pull(&c.image, None)?;
            }
            let config = k::ContainerConfig {
                metadata: Some(k::ContainerMetadata {
                    name: c.name.clone(),
                    attempt: 0,
                }),
                image: Some(k::ImageSpec {
                    image: c.image.clone(),
                    user_specified_image: c.image.clone(),
                    ..Default::default()
                }),
                command: c.command.clone(),
                log_path: format!("{}/0.log", c.name),
                labels: labels(Some(&c.name)),
                linux: Some(k::LinuxContainerConfig {
                    security_context: Some(k::LinuxContainerSecurityContext {
                        namespace_options: Some(namespaces.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let cid = client.create_container(&id, &config, &sandbox)?;
            client.start_container(&cid)?;
        }
        Ok(Some(id))
    }
}
