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
//! Then it stays running, checking the runtime every few seconds, so that systemd reports it
//! active; when a check fails it exits 1 and systemd marks it failed. It runs no pods.

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
    "eviction-hard",
    "kube-reserved",
    "system-reserved",
    "serialize-image-pulls",
    "volume-plugin-dir",
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

    let config: serde_yaml::Value = match flag("config") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                fail(format!("failed to load kubelet config file {path}: {e}"))
            });
            serde_yaml::from_str(&text)
                .unwrap_or_else(|e| fail(format!("failed to load kubelet config file {path}: {e}")))
        }
        None => serde_yaml::Value::Null,
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
        let actual = runtime_config
            .get("sandboxImage")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        if let Some(expected) = expected {
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
    let mut misses = 0;
    loop {
        std::thread::sleep(Duration::from_secs(5));
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
