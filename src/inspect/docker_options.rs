//! Every daemon.json option and dockerd flag (Docker 20.10 to 28), and what becomes of it. The
//! warnings say what this table says, and docs/carried-settings.md holds the same table (a test
//! compares them), so that nothing said about a setting is untrue.

/// What cri-migrate does with one of Docker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Carried to the runtime or the kubelet (docs/carried-settings.md says where).
    Carried,
    /// Nothing for pods: Docker's own daemon, API, networking or swarm, or a default dockershim
    /// overrode for every pod.
    NotNeeded,
    /// Not carried: a warning names it, why, and what to do.
    NotCarried,
}

impl Treatment {
    pub fn name(self) -> &'static str {
        match self {
            Treatment::Carried => "carried",
            Treatment::NotNeeded => "not needed",
            Treatment::NotCarried => "not carried",
        }
    }
}

/// One setting: its daemon.json key, its dockerd flag (without `--`; empty where there is
/// none), what becomes of it, and why or what to do.
pub struct DockerOption {
    pub key: &'static str,
    pub flag: &'static str,
    pub treatment: Treatment,
    pub note: &'static str,
}

const fn o(
    key: &'static str,
    flag: &'static str,
    treatment: Treatment,
    note: &'static str,
) -> DockerOption {
    DockerOption {
        key,
        flag,
        treatment,
        note,
    }
}

use Treatment::{Carried as C, NotCarried as X, NotNeeded as N};

pub const OPTIONS: &[DockerOption] = &[
    o("allow-nondistributable-artifacts", "allow-nondistributable-artifacts", N, "pushing: the kubelet only pulls"),
    o("api-cors-header", "api-cors-header", N, "Docker's API"),
    o("authorization-plugins", "authorization-plugin", N, "Docker's API; pods are authorized by the API server"),
    o("bip", "bip", N, "Docker's bridge network; pods use CNI"),
    o("bip6", "bip6", N, "Docker's bridge network; pods use CNI"),
    o("bridge", "bridge", N, "Docker's bridge network; pods use CNI"),
    o("cdi-spec-dirs", "cdi-spec-dir", X, "set containerd's cdi_spec_dirs (CRI-O: cdi_spec_dirs) to the same directories"),
    o("cgroup-parent", "cgroup-parent", N, "dockershim gave every pod the kubelet's cgroup parent"),
    o("containerd", "containerd", N, "the containerd Docker runs on; the kubelet talks to the runtime's own socket"),
    o("containerd-namespace", "containerd-namespace", N, "Docker's namespace in containerd; pods live in k8s.io"),
    o("containerd-plugins-namespace", "containerd-plugins-namespace", N, "Docker's plugins"),
    o("data-root", "data-root", C, "the runtime's root beside it"),
    o("debug", "debug", N, "Docker's own log level"),
    o("default-address-pools", "default-address-pool", N, "Docker's networks; pods use CNI"),
    o("default-cgroupns-mode", "default-cgroupns-mode", N, "the CRI runtimes give pods a private cgroup namespace on cgroup v2 and the host's on v1, as Docker's default"),
    o("default-gateway", "default-gateway", N, "Docker's bridge network; pods use CNI"),
    o("default-gateway-v6", "default-gateway-v6", N, "Docker's bridge network; pods use CNI"),
    o("default-ipc-mode", "default-ipc-mode", N, "dockershim set every pod's IPC namespace"),
    o("default-network-opts", "default-network-opt", N, "Docker's networks; pods use CNI"),
    o("default-runtime", "default-runtime", C, "the runtime's default handler"),
    o("default-shm-size", "default-shm-size", N, "dockershim gave every pod sandbox its own 64 MiB /dev/shm"),
    o("default-ulimits", "default-ulimit", C, "a base runtime spec (containerd), default_ulimits (CRI-O)"),
    o("dns", "dns", N, "the kubelet sets every pod's DNS (clusterDNS, resolvConf)"),
    o("dns-opts", "dns-opt", N, "the kubelet sets every pod's DNS (clusterDNS, resolvConf)"),
    o("dns-search", "dns-search", N, "the kubelet sets every pod's DNS (clusterDNS, resolvConf)"),
    o("exec-opts", "exec-opt", C, "native.cgroupdriver: the runtime's cgroup driver; other exec options are said"),
    o("exec-root", "exec-root", N, "Docker's state directory"),
    o("experimental", "experimental", N, "Docker's own features"),
    o("features", "", C, "containerd-snapshotter: Docker's images shared from containerd; other features are Docker's own"),
    o("fixed-cidr", "fixed-cidr", N, "Docker's bridge network; pods use CNI"),
    o("fixed-cidr-v6", "fixed-cidr-v6", N, "Docker's bridge network; pods use CNI"),
    o("group", "group", N, "the group of Docker's socket"),
    o("host-gateway-ip", "host-gateway-ip", N, "Docker's host-gateway alias; pods use hostAliases"),
    o("hosts", "host", N, "Docker's API sockets"),
    o("icc", "icc", N, "Docker's bridge network; pods use CNI and NetworkPolicy"),
    o("init", "init", X, "the CRI runtimes inject no init process: give the image one (tini) or set shareProcessNamespace"),
    o("init-path", "init-path", X, "the CRI runtimes inject no init process: give the image one (tini)"),
    o("insecure-registries", "insecure-registry", C, "hosts.toml (containerd), registries.conf.d (CRI-O)"),
    o("ip", "ip", N, "Docker's published ports; pods use hostPort through CNI"),
    o("ip-forward", "ip-forward", N, "Docker's networking"),
    o("ip-masq", "ip-masq", N, "Docker's networking"),
    o("ip6tables", "ip6tables", N, "Docker's networking"),
    o("iptables", "iptables", N, "Docker's networking"),
    o("ipv6", "ipv6", N, "Docker's bridge network; pods use CNI"),
    o("labels", "label", N, "Docker's engine labels; the node's are Kubernetes labels"),
    o("live-restore", "live-restore", N, "the runtimes keep containers over their own restarts; a live-restore that would keep Docker's pods running after it stops is said with its fix"),
    o("log-driver", "log-driver", C, "json-file and local: rotation to the kubelet; other drivers are said (pods log to /var/log/pods)"),
    o("log-format", "log-format", N, "Docker's own log"),
    o("log-level", "log-level", N, "Docker's own log"),
    o("log-opts", "log-opt", C, "max-size, max-file: the kubelet's containerLogMaxSize, containerLogMaxFiles"),
    o("max-concurrent-downloads", "max-concurrent-downloads", C, "containerd's max_concurrent_downloads; CRI-O pulls in parallel"),
    o("max-concurrent-uploads", "max-concurrent-uploads", N, "pushing: the kubelet only pulls"),
    o("max-download-attempts", "max-download-attempts", N, "the kubelet retries a failed pull with back-off"),
    o("metrics-addr", "metrics-addr", N, "Docker's own metrics"),
    o("mtu", "mtu", N, "Docker's bridge network; pods use CNI (its config's mtu)"),
    o("no-new-privileges", "no-new-privileges", X, "set allowPrivilegeEscalation: false in the pods (or enforce it with Pod Security admission): CRI sets it per container"),
    o("node-generic-resources", "node-generic-resource", N, "swarm"),
    o("oom-score-adjust", "oom-score-adjust", N, "dockerd's own OOM score; the runtime's unit sets its own"),
    o("pidfile", "pidfile", N, "dockerd's own process"),
    o("proxies", "", C, "a drop-in of the runtime's unit"),
    o("raw-logs", "raw-logs", N, "Docker's own log"),
    o("registry-mirrors", "registry-mirror", C, "hosts.toml (containerd), registries.conf.d (CRI-O)"),
    o("runtimes", "add-runtime", C, "runtime handlers of the same name"),
    o("seccomp-profile", "seccomp-profile", N, "dockershim ran pods without a seccomp profile unless they asked for one; the kubelet's seccompDefault gives them the runtime's"),
    o("selinux-enabled", "selinux-enabled", C, "enable_selinux (containerd), selinux (CRI-O)"),
    o("shutdown-timeout", "shutdown-timeout", N, "the kubelet stops pods with their terminationGracePeriodSeconds"),
    o("storage-driver", "storage-driver", C, "the snapshotter (containerd), storage_driver (CRI-O); overlay2 is both runtimes' default"),
    o("storage-opts", "storage-opt", X, "set the snapshotter's own options (containerd) or storage.conf's (CRI-O) by hand"),
    o("swarm-default-advertise-addr", "swarm-default-advertise-addr", N, "swarm"),
    o("tls", "tls", N, "Docker's API"),
    o("tlscacert", "tlscacert", N, "Docker's API"),
    o("tlscert", "tlscert", N, "Docker's API"),
    o("tlskey", "tlskey", N, "Docker's API"),
    o("tlsverify", "tlsverify", N, "Docker's API"),
    o("userland-proxy", "userland-proxy", N, "Docker's published ports"),
    o("userland-proxy-path", "userland-proxy-path", N, "Docker's published ports"),
    o("userns-remap", "userns-remap", X, "Kubernetes runs pods in user namespaces per pod (hostUsers: false, 1.25+)"),
    o("graph", "graph", C, "data-root's name before Docker 17.05"),
];

pub fn by_key(key: &str) -> Option<&'static DockerOption> {
    OPTIONS.iter().find(|o| o.key == key)
}

pub fn by_flag(flag: &str) -> Option<&'static DockerOption> {
    OPTIONS
        .iter()
        .find(|o| !o.flag.is_empty() && o.flag == flag)
}

/// The table as docs/carried-settings.md holds it.
pub fn markdown() -> String {
    let mut s = String::from(
        "| daemon.json | dockerd flag | | why, or what to do |\n| --- | --- | --- | --- |\n",
    );
    for o in OPTIONS {
        let flag = if o.flag.is_empty() {
            "—".to_string()
        } else {
            format!("`--{}`", o.flag)
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            o.key,
            flag,
            o.treatment.name(),
            o.note
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_are_sorted_and_unique() {
        // (docs/carried-settings.md holds this table: plan::settings_table's test.)
        // Sorted and unique, so that a new option lands where a reader looks for it.
        let keys: Vec<&str> = OPTIONS
            .iter()
            .map(|o| o.key)
            .filter(|k| *k != "graph")
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
    }
}
