//! Every setting cri-migrate carries from Docker's node into the target runtime, as one table:
//! where it is read from, where each runtime takes it (its module's `carried_to`), and its line
//! in the plan's "Carried over". The report's lines and docs/carried-settings.md's table are
//! made from it (a test holds the docs to it). A new setting: one row here, its line in each
//! runtime's `carried_to`, its reading (`plan::settings`) and its render.

use crate::runtime::{registry, ALL};
use serde_json::Value;

/// One carried setting.
#[derive(Debug)]
pub struct Row {
    /// Its name in the runtimes' `carried_to`.
    pub key: &'static str,
    /// As the docs name it.
    pub name: &'static str,
    /// Where its value is read from: the first of these that is set.
    pub read_from: &'static str,
    /// Its line in the plan's "Carried over", if it has one.
    pub shown: Option<Shown>,
}

/// A setting's line in the plan's "Carried over": its label, the plan's `settings` field it
/// shows, and how.
#[derive(Debug)]
pub struct Shown {
    pub label: &'static str,
    pub field: &'static str,
    pub form: Form,
    /// Said when the plan carries no value (else the line is left out).
    pub none: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `VALUE (from WHERE)`
    From,
    /// `VALUE (WHERE)`: a value placed beside another, said with it.
    Beside,
    /// The names, without a source (made by the plan from several).
    Listed,
    /// `N in parallel (from WHERE)`
    Parallel,
}

pub const ROWS: &[Row] = &[
    Row {
        key: "cgroup_driver",
        name: "cgroup driver",
        read_from: "kubelet `--cgroup-driver`, `cgroupDriver` in its config.yaml, Docker's `exec-opts native.cgroupdriver`, else `cgroupfs` (the kubelet's default)",
        shown: Some(Shown { label: "cgroup driver", field: "cgroup_driver", form: Form::From, none: None }),
    },
    Row {
        key: "sandbox_image",
        name: "pause (sandbox) image",
        read_from: "`--sandbox-image`, on cri-dockerd its own `--pod-infra-container-image` (its unit and drop-ins: the image pods ran with), the kubelet's `--pod-infra-container-image`, the runtime's existing config (containerd's config.toml, CRI-O's crio.conf and drop-ins), the first that is an image reference (each other one is a warning), else the runtime's default (a note says which)",
        shown: Some(Shown { label: "sandbox image", field: "sandbox_image", form: Form::From, none: Some("the runtime's default") }),
    },
    Row {
        key: "cni_conf_dir",
        name: "CNI config directory",
        read_from: "the kubelet's `--cni-conf-dir`, cri-dockerd's, the runtime's existing config, else `/etc/cni/net.d`",
        shown: Some(Shown { label: "CNI config", field: "cni_conf_dir", form: Form::From, none: None }),
    },
    Row {
        key: "cni_bin_dirs",
        name: "CNI plugin directories",
        read_from: "the kubelet's `--cni-bin-dir`, cri-dockerd's, the runtime's existing config, else the first of `/opt/cni/bin`, `/usr/lib/cni`, `/usr/libexec/cni` that holds plugins",
        shown: Some(Shown { label: "CNI plugins", field: "cni_bin_dirs", form: Form::From, none: None }),
    },
    Row {
        key: "registry_mirrors",
        name: "registry mirrors (Docker Hub)",
        read_from: "daemon.json `registry-mirrors`, dockerd `--registry-mirror`",
        shown: Some(Shown { label: "registries", field: "registries", form: Form::Listed, none: None }),
    },
    Row {
        key: "insecure_registries",
        name: "insecure registries",
        read_from: "daemon.json `insecure-registries`, dockerd `--insecure-registry`",
        shown: None,
    },
    Row {
        key: "registry_certs",
        name: "registry certificates",
        read_from: "`/etc/docker/certs.d/<host>/*.crt`, `*.cert` + `*.key`",
        shown: None,
    },
    Row {
        key: "config_mirrors",
        name: "deprecated `registry.mirrors` in an old config.toml",
        read_from: "the file itself",
        shown: None,
    },
    Row {
        key: "config_tls",
        name: "deprecated `registry.configs.<host>.tls` in an old config.toml",
        read_from: "the file itself",
        shown: None,
    },
    Row {
        key: "config_auths",
        name: "deprecated `registry.configs.<host>.auth`",
        read_from: "the file itself",
        shown: None,
    },
    Row {
        key: "address_reservations",
        name: "host-local address reservations of Docker's pods",
        read_from: "`/var/lib/cni/networks/<net>/<ip>` naming a container in Docker's data root",
        shown: None,
    },
    Row {
        key: "limit_nofile",
        name: "open-files limit (containerd 2.x)",
        read_from: "`LimitNOFILE=` of docker.service (unit and drop-ins)",
        shown: None,
    },
    Row {
        key: "runtime_root",
        name: "data-root",
        read_from: "daemon.json `data-root` (when not `/var/lib/docker`)",
        shown: Some(Shown { label: "runtime root", field: "runtime_root", form: Form::Beside, none: None }),
    },
    Row {
        key: "snapshotter",
        name: "storage driver",
        read_from: "daemon.json `storage-driver` (overlay2 is the default on both sides and is not written)",
        shown: Some(Shown { label: "snapshotter", field: "snapshotter", form: Form::From, none: None }),
    },
    Row {
        key: "max_concurrent_downloads",
        name: "parallel downloads",
        read_from: "daemon.json `max-concurrent-downloads`",
        shown: Some(Shown { label: "downloads", field: "max_concurrent_downloads", form: Form::Parallel, none: None }),
    },
    Row {
        key: "kubenet",
        name: "kubenet (`--network-plugin=kubenet`)",
        read_from: "the kubelet's flags; the pod CIDR from `--pod-cidr` (cri-migrate's), the kubelet's `--pod-cidr`, `podCIDR` in its config, else refused naming `kubectl get node NAME -o jsonpath='{.spec.podCIDR}'`",
        shown: None,
    },
    Row {
        key: "log_rotation",
        name: "log rotation",
        read_from: "Docker's `json-file` or `local` driver's `max-size` and `max-file` (daemon.json `log-opts`, dockerd `--log-opt`; the `local` driver's defaults 20m × 5; `json-file` without `max-file` keeps 1)",
        shown: None,
    },
    Row {
        key: "nested_node",
        name: "nested node",
        read_from: "this node's processes lack CAP_SYS_RESOURCE (bit 24 of `CapBnd` in /proc/self/status; an LXC/LXD or Proxmox container; the live node only)",
        shown: None,
    },
    Row {
        key: "proxy",
        name: "proxy",
        read_from: "daemon.json `proxies` (`http-proxy`, `https-proxy`, `no-proxy`; Docker 23+), else the `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` (and lower-case) variables of docker.service's environment (Docker's documented `docker.service.d/http-proxy.conf`, an `EnvironmentFile=`)",
        shown: None,
    },
    Row {
        key: "handlers",
        name: "Docker's other runtimes",
        read_from: "daemon.json `runtimes` (`path`, `runtimeArgs`, `runtimeType`, `options`), dockerd `--add-runtime NAME=PATH`; the binary looked up on the node as dockerd looks it up (a bare name in its PATH), and the runtime's own containerd shim (`containerd-shim-NAME-v2`/`-v1`, named after the runtime or its binary: `kata-runtime` → `containerd-shim-kata-v2`, `runsc` → `containerd-shim-runsc-v1`)",
        shown: None,
    },
    Row {
        key: "default_handler",
        name: "Docker's default runtime",
        read_from: "daemon.json `default-runtime`, dockerd `--default-runtime` (runc and `io.containerd.runc.v2` are Docker's own: nothing to carry)",
        shown: None,
    },
    Row {
        key: "ulimits",
        name: "default ulimits",
        read_from: "daemon.json `default-ulimits` (`{\"nofile\": {\"Soft\": 65536, \"Hard\": 1048576}}`), dockerd `--default-ulimit nofile=65536:1048576`; -1 is unlimited; a soft limit above its hard one is said, not carried",
        shown: None,
    },
    Row {
        key: "selinux",
        name: "SELinux",
        read_from: "daemon.json `selinux-enabled`, dockerd `--selinux-enabled`; the node's mode from the running kernel (`/sys/fs/selinux/enforce`) or `/etc/selinux/config`",
        shown: None,
    },
    Row {
        key: "endpoint",
        name: "runtime endpoint",
        read_from: "—",
        shown: None,
    },
];

/// The plan's "Carried over" lines, from its `settings` as JSON.
pub fn shown_lines(settings: &Value) -> Vec<String> {
    let text = |v: &Value| match v {
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        v => text_of(v),
    };
    ROWS.iter()
        .filter_map(|r| r.shown.as_ref())
        .filter_map(|s| {
            let v = settings.get(s.field).filter(|v| !v.is_null());
            let value = match (v, s.none) {
                (None, None) => return None,
                (None, Some(none)) => return Some(format!("  {:<15} {none}", s.label)),
                (Some(v), _) => v,
            };
            let (value, from) = match value {
                Value::Object(o) => (
                    o.get("value").map(text).unwrap_or_default(),
                    o.get("from").map(text).unwrap_or_default(),
                ),
                v => (text(v), String::new()),
            };
            let shown = match s.form {
                Form::From => format!("{value} (from {from})"),
                Form::Beside => format!("{value} ({from})"),
                Form::Listed if value.is_empty() => return None,
                Form::Listed => value,
                Form::Parallel => format!("{value} in parallel (from {from})"),
            };
            Some(format!("  {:<15} {shown}", s.label))
        })
        .collect()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The table as docs/carried-settings.md holds it: a column per runtime.
pub fn markdown() -> String {
    let runtimes: Vec<_> = ALL.iter().map(|a| registry::of(a.target)).collect();
    let mut s = String::from("| setting | read from (first that is set) |");
    for r in &runtimes {
        s.push_str(&format!(" {} |", r.carried_to().0));
    }
    s.push_str("\n| --- | --- |");
    for _ in &runtimes {
        s.push_str(" --- |");
    }
    s.push('\n');
    for row in ROWS {
        s.push_str(&format!("| {} | {} |", row.name, row.read_from));
        for r in &runtimes {
            s.push_str(&format!(" {} |", destination(r.carried_to().1, row.key)));
        }
        s.push('\n');
    }
    s
}

/// Where a runtime takes a setting, by its `carried_to`.
pub fn destination(to: &[(&str, &'static str)], key: &str) -> &'static str {
    to.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, d)| *d)
        .unwrap_or("—")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_hold_the_tables_they_are_made_from() {
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/carried-settings.md"
        ))
        .unwrap();
        for (table, from) in [
            (
                markdown(),
                "src/plan/settings_table.rs and the runtimes' carried_to",
            ),
            (
                crate::inspect::docker_options::markdown(),
                "src/inspect/docker_options.rs",
            ),
        ] {
            assert!(
                docs.contains(&table),
                "docs/carried-settings.md must hold the table of {from} as it is:\n{table}"
            );
        }
    }

    #[test]
    fn every_runtime_says_where_each_setting_goes_and_nothing_else() {
        for a in ALL {
            let (_, to) = registry::of(a.target).carried_to();
            let keys: Vec<&str> = to.iter().map(|(k, _)| *k).collect();
            let rows: Vec<&str> = ROWS.iter().map(|r| r.key).collect();
            assert_eq!(keys, rows, "{}'s carried_to, in the table's order", a.name);
        }
    }

    #[test]
    fn a_setting_is_shown_by_its_form() {
        let settings = serde_json::json!({
            "cgroup_driver": {"value": "systemd", "from": "the kubelet's --cgroup-driver"},
            "sandbox_image": null,
            "cni_conf_dir": {"value": "/etc/cni/net.d", "from": "the default"},
            "cni_bin_dirs": {"value": ["/opt/cni/bin", "/usr/lib/cni"], "from": "the default"},
            "registries": [],
            "runtime_root": {"value": "/data/containerd", "from": "beside Docker's data-root /data/docker"},
            "max_concurrent_downloads": {"value": 10, "from": "daemon.json max-concurrent-downloads"},
        });
        assert_eq!(
            shown_lines(&settings),
            [
                "  cgroup driver   systemd (from the kubelet's --cgroup-driver)",
                "  sandbox image   the runtime's default",
                "  CNI config      /etc/cni/net.d (from the default)",
                "  CNI plugins     /opt/cni/bin, /usr/lib/cni (from the default)",
                "  runtime root    /data/containerd (beside Docker's data-root /data/docker)",
                "  downloads       10 in parallel (from daemon.json max-concurrent-downloads)",
            ]
        );
    }
}
