//! `/etc/containerd/config.toml`: schema 2 for containerd 1.x, schema 3 for 2.x, merged into the
//! file that is there (Docker's containerd.io ships a schema 1 file with the CRI plugin off).

use super::toml_merge::{get_table_mut, merge, table_at};
use crate::inspect::runtimes::{is_cri_plugin, strings};
use serde::Serialize;
use toml_edit::{DocumentMut, Item, Key, Table, Value};

pub const CERTS_D: &str = "/etc/containerd/certs.d";
pub use crate::inspect::runtimes::CONTAINERD_BASE_SPEC as BASE_SPEC;

/// The capabilities of containerd's default spec (`oci.populateDefaultUnixSpec`).
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The base runtime spec: containerd's default spec (as `ctr oci spec` prints it, and as the EKS
/// AMI ships it) with `process.rlimits` holding Docker's default ulimits — or the node's file
/// with those set. CRI builds every container's spec on it, so each container starts with
/// them. A base spec replaces containerd's default whole, so it must be the default otherwise.
pub fn base_spec(
    existing: Option<&str>,
    ulimits: &[crate::inspect::docker::Ulimit],
    containerd_major: u32,
) -> Result<String, String> {
    let mut spec: serde_json::Value = match existing {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?,
        None => {
            let text = super::template(
                "containerd-base-spec.json",
                serde_json::json!({
                    "oci_version": if containerd_major >= 2 { "1.1.0" } else { "1.0.2-dev" },
                    "capabilities": DEFAULT_CAPS,
                    "rlimits": [],
                }),
            );
            serde_json::from_str(&text).expect("the base spec template is JSON")
        }
    };
    let process = spec
        .as_object_mut()
        .ok_or("not a JSON object")?
        .entry("process")
        .or_insert_with(|| serde_json::json!({}));
    let process = process
        .as_object_mut()
        .ok_or("its `process` is not an object")?;
    let rlimits = process
        .entry("rlimits")
        .or_insert_with(|| serde_json::json!([]));
    let list = rlimits
        .as_array_mut()
        .ok_or("its `process.rlimits` is not a list")?;
    for u in ulimits {
        let t = u.oci_type();
        list.retain(|r| r.get("type").and_then(|x| x.as_str()) != Some(t.as_str()));
        list.push(serde_json::json!({
            "type": t,
            "hard": crate::inspect::docker::Ulimit::oci_value(u.hard),
            "soft": crate::inspect::docker::Ulimit::oci_value(u.soft),
        }));
    }
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&spec).expect("JSON")
    ))
}

/// What the migration owns in containerd's config.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Settings {
    /// The config version to write: 2, 3 or 4.
    pub schema: u8,
    /// Take `registry.configs.<host>.auth` out of the file (containerd 2.x, where they are
    /// deprecated), for the kubelet's config.json.
    pub move_credentials: bool,
    /// containerd 2.1+ takes a list of CNI plugin directories (`bin_dirs`).
    pub cni_bin_dirs_list: bool,
    pub systemd_cgroup: bool,
    pub sandbox_image: Option<String>,
    pub cni_bin_dirs: Vec<String>,
    pub cni_conf_dir: String,
    pub config_path: String,
    pub root: Option<String>,
    pub snapshotter: Option<String>,
    pub max_concurrent_downloads: Option<u64>,
    /// The node lacks CAP_SYS_RESOURCE: pods' oom_score_adj kept at containerd's or above.
    pub restrict_oom_score_adj: bool,
    /// Docker's other runtimes, as handlers beside runc.
    pub handlers: Vec<super::Handler>,
    /// Docker's default runtime: `default_runtime_name`.
    pub default_runtime: Option<String>,
    /// The spec file every handler starts its containers from (Docker's default-ulimits).
    pub base_runtime_spec: Option<String>,
    /// Docker's selinux-enabled: `enable_selinux`.
    pub enable_selinux: bool,
    /// `imports = ["/etc/containerd/conf.d/*.toml"]`, as containerd 2.2's default config has it.
    pub default_imports: bool,
}

/// One registry's TLS settings from `registry.configs.<host>.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MovedTls {
    pub host: String,
    pub ca: Option<String>,
    /// (certificate, key)
    pub client: Option<(String, String)>,
    pub skip_verify: bool,
}

/// What rendering found and did on the way, for the plan.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Deprecated `registry.mirrors` taken out of the file (they conflict with config_path):
    /// (registry, endpoints), to become hosts.toml files.
    pub moved_mirrors: Vec<(String, Vec<String>)>,
    /// Deprecated `registry.configs.<host>.tls` taken out of the file (containerd 2.x ignores
    /// it; hosts.toml is where TLS lives), to become hosts.toml settings.
    pub moved_tls: Vec<MovedTls>,
    /// Credentials taken out of `registry.configs.<host>.auth` (with `move_credentials`): a
    /// docker config.json `auths` entry each.
    pub moved_auths: Vec<(String, serde_json::Value)>,
    /// One line each about what was converted or cannot be kept.
    pub notes: Vec<String>,
}

/// Plugin ids of schema 1's short names (containerd v1.x `services/server/config`).
const V1_IDS: [(&str, &str); 16] = [
    ("cri", "io.containerd.grpc.v1.cri"),
    ("cgroups", "io.containerd.monitor.v1.cgroups"),
    ("linux", "io.containerd.runtime.v1.linux"),
    ("scheduler", "io.containerd.gc.v1.scheduler"),
    ("bolt", "io.containerd.metadata.v1.bolt"),
    ("task", "io.containerd.runtime.v2.task"),
    ("opt", "io.containerd.internal.v1.opt"),
    ("restart", "io.containerd.internal.v1.restart"),
    ("diff-service", "io.containerd.service.v1.diff-service"),
    ("tasks-service", "io.containerd.service.v1.tasks-service"),
    ("aufs", "io.containerd.snapshotter.v1.aufs"),
    ("btrfs", "io.containerd.snapshotter.v1.btrfs"),
    ("devmapper", "io.containerd.snapshotter.v1.devmapper"),
    ("native", "io.containerd.snapshotter.v1.native"),
    ("overlayfs", "io.containerd.snapshotter.v1.overlayfs"),
    ("zfs", "io.containerd.snapshotter.v1.zfs"),
];

const CRI_V2: &str = "io.containerd.grpc.v1.cri";
const IMAGES_V3: &str = "io.containerd.cri.v1.images";
const RUNTIME_V3: &str = "io.containerd.cri.v1.runtime";

/// The merged config, or why it cannot be made (a text that does not parse: the caller names
/// the file).
pub fn render(existing: Option<&str>, s: &Settings) -> Result<Rendered, String> {
    // Schema 4 (containerd 2.3) keeps schema 3's CRI tables; it moved the daemon's own server
    // sections into plugins, which cri-migrate does not write.
    let template = super::template(
        if s.schema >= 3 {
            "containerd-v3.toml"
        } else {
            "containerd-v2.toml"
        },
        s,
    );
    let mut out = Rendered::default();
    let tpl: DocumentMut = template
        .parse()
        .map_err(|e: toml_edit::TomlError| crate::error::toml_problem(&template, &e))?;
    let Some(existing) = existing.filter(|t| !is_blank(t)) else {
        out.text = template;
        return Ok(out);
    };
    let mut doc: DocumentMut = existing
        .parse()
        .map_err(|e: toml_edit::TomlError| crate::error::toml_problem(existing, &e))?;

    let schema = doc.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
    if schema < 2 {
        to_schema_2(&mut doc);
        out.notes
            .push("converted the file from schema 1 (plugin short names) to schema 2".into());
    }
    out.moved_mirrors = take_mirrors(&mut doc, &mut out.notes);
    out.moved_tls = take_tls(
        &mut doc,
        &mut out.notes,
        s.move_credentials,
        &mut out.moved_auths,
    );
    if s.schema >= 3 && schema < 3 {
        to_schema_3(&mut doc);
        out.notes.push(
            "moved the CRI settings from schema 2 to schema 3 tables; `containerd config migrate` shows containerd's own conversion"
                .into(),
        );
    }
    if s.schema >= 4 && schema < 4 && to_schema_4(&mut doc) {
        out.notes.push(
            "moved the daemon's server settings ([grpc], [ttrpc], [debug] address, [metrics]) into their io.containerd.server.v1 plugins, as config version 4 has them"
                .into(),
        );
    }
    enable_cri(&mut doc);
    merge(&mut doc, &tpl);
    if s.cni_bin_dirs_list {
        // bin_dirs replaces bin_dir in 2.1; a leftover bin_dir would add a stale directory.
        let plugin = if s.schema >= 3 { RUNTIME_V3 } else { CRI_V2 };
        if let Some(cni) = get_table_mut(doc.as_table_mut(), &["plugins", plugin, "cni"]) {
            if cni
                .get("bin_dir")
                .and_then(|v| v.as_str())
                .is_some_and(|d| !d.is_empty())
            {
                cni.remove("bin_dir");
            }
        }
    }
    // `version` first, as containerd's own files have it.
    doc.as_table_mut()
        .sort_values_by(|a, _, b, _| (a.get() != "version").cmp(&(b.get() != "version")));
    out.text = doc.to_string();
    Ok(out)
}

/// Config version 4 (containerd 2.3) takes the server settings out of the top-level `[grpc]`,
/// `[ttrpc]`, `[debug]` and `[metrics]` tables into plugins, as containerd's own migration
/// (`serviceMigrate`, cmd/containerd/server/config) does: grpc address, uid, gid and message sizes
/// to `io.containerd.server.v1.grpc`; the TCP listener to `io.containerd.server.v1.grpc-tcp`;
/// ttrpc to `io.containerd.server.v1.ttrpc` (derived from grpc's address when not set, as
/// before version 4); the debug socket to `io.containerd.server.v1.debug` (its level and format
/// stay); the metrics address to `io.containerd.server.v1.metrics`, `grpc_histogram` to
/// `io.containerd.metrics.v1.grpc-prometheus`. Returns whether anything moved.
fn to_schema_4(doc: &mut DocumentMut) -> bool {
    let root = doc.as_table_mut();
    let mut take = |table: &str, key: &str| -> Option<Item> {
        let t = root.get_mut(table)?.as_table_like_mut()?;
        let v = t.remove(key);
        if t.is_empty() {
            root.remove(table);
        }
        v
    };
    // The keys of a table that it sets, taken out of it.
    let mut take_all = |table: &str, keys: &[&'static str]| -> Vec<(&'static str, Item)> {
        keys.iter()
            .filter_map(|k| take(table, k).map(|v| (*k, v)))
            .collect()
    };
    let mut moved: Vec<(&str, Vec<(&str, Item)>)> = Vec::new();
    let grpc = take_all(
        "grpc",
        &[
            "address",
            "uid",
            "gid",
            "max_recv_message_size",
            "max_send_message_size",
        ],
    );
    let grpc_address = grpc
        .iter()
        .find(|(k, _)| *k == "address")
        .and_then(|(_, v)| v.as_str().map(str::to_string));
    let sizes: Vec<(&str, Item)> = grpc
        .iter()
        .filter(|(k, _)| k.starts_with("max_"))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut tcp: Vec<(&str, Item)> = take_all(
        "grpc",
        &[
            "tcp_address",
            "tcp_tls_ca",
            "tcp_tls_cert",
            "tcp_tls_key",
            "tcp_tls_common_name",
        ],
    )
    .into_iter()
    .map(|(k, v)| (k.trim_start_matches("tcp_"), v))
    .collect();
    if !tcp.is_empty() {
        tcp.extend(sizes);
        moved.push(("io.containerd.server.v1.grpc-tcp", tcp));
    }
    let mut ttrpc = take_all("ttrpc", &["address", "uid", "gid"]);
    if !ttrpc.iter().any(|(k, _)| *k == "address") {
        if let Some(a) = &grpc_address {
            // Before version 4 ttrpc listened beside grpc's socket, with its owner.
            ttrpc.push(("address", toml_edit::value(format!("{a}.ttrpc"))));
            for k in ["uid", "gid"] {
                if !ttrpc.iter().any(|(x, _)| *x == k) {
                    if let Some((_, v)) = grpc.iter().find(|(x, _)| *x == k) {
                        ttrpc.push((k, v.clone()));
                    }
                }
            }
        }
    }
    if !grpc.is_empty() {
        moved.push(("io.containerd.server.v1.grpc", grpc));
    }
    if !ttrpc.is_empty() {
        moved.push(("io.containerd.server.v1.ttrpc", ttrpc));
    }
    let debug = take_all("debug", &["address", "uid", "gid"]);
    if !debug.is_empty() {
        moved.push(("io.containerd.server.v1.debug", debug));
    }
    if let Some((_, v)) = take_all("metrics", &["address"]).pop() {
        moved.push(("io.containerd.server.v1.metrics", vec![("address", v)]));
    }
    if let Some((_, v)) = take_all("metrics", &["grpc_histogram"]).pop() {
        moved.push((
            "io.containerd.metrics.v1.grpc-prometheus",
            vec![("grpc_histogram", v)],
        ));
    }
    let any = !moved.is_empty();
    for (plugin, keys) in moved {
        let t = table_at(root, &["plugins", plugin]);
        for (k, v) in keys {
            // A plugin table the file already has wins, as in containerd's migration.
            if t.get(k).is_none() {
                t.insert(k, v);
            }
        }
    }
    any
}

fn is_blank(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

/// Remove the CRI plugin from `disabled_plugins` (Docker's packages disable it), converting
/// short names to full ids: containerd refuses short names in schema 2.
fn enable_cri(doc: &mut DocumentMut) {
    let Some(arr) = doc
        .get_mut("disabled_plugins")
        .and_then(|i| i.as_array_mut())
    else {
        return;
    };
    arr.retain(|v| !v.as_str().is_some_and(is_cri_plugin));
    for v in arr.iter_mut() {
        if let Some(id) = v
            .as_str()
            .and_then(|n| V1_IDS.iter().find(|(short, _)| *short == n))
            .map(|(_, id)| *id)
        {
            let decor = v.decor().clone();
            *v = Value::from(id);
            *v.decor_mut() = decor;
        }
    }
    if arr.is_empty() {
        arr.set_trailing("");
    }
}

fn to_schema_2(doc: &mut DocumentMut) {
    let Some(plugins) = doc.get_mut("plugins").and_then(|p| p.as_table_mut()) else {
        return;
    };
    for (short, id) in V1_IDS {
        if let Some((key, item)) = plugins.remove_entry(short) {
            plugins.insert_formatted(
                &Key::new(id).with_leaf_decor(key.leaf_decor().clone()),
                item,
            );
        }
    }
}

/// Deprecated `registry.mirrors` conflict with `config_path` ("mirrors cannot be set when
/// config_path is provided"): take them out so they become hosts.toml files.
fn take_mirrors(doc: &mut DocumentMut, notes: &mut Vec<String>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    // Schema 2's CRI table, or schema 3's images plugin (a file already written for 2.x).
    for plugin in [CRI_V2, IMAGES_V3] {
        let Some(registry) = get_table_mut(doc.as_table_mut(), &["plugins", plugin, "registry"])
        else {
            continue;
        };
        let Some(mirrors) = registry.remove("mirrors") else {
            continue;
        };
        for (host, m) in mirrors.as_table_like().into_iter().flat_map(|t| t.iter()) {
            let endpoints = strings(m.get("endpoint"));
            out.push((host.to_string(), endpoints));
        }
    }
    if !out.is_empty() {
        notes.push(format!(
            "moved the deprecated registry.mirrors ({}) to hosts.toml files under {CERTS_D}",
            out.iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// `registry.configs.<host>.tls` is deprecated, and containerd 2.x ignores it: TLS settings move
/// to the host's hosts.toml (`ca`, `client`, `skip_verify`). Credentials (`auth`) stay, said.
fn take_tls(
    doc: &mut DocumentMut,
    notes: &mut Vec<String>,
    move_credentials: bool,
    auths: &mut Vec<(String, serde_json::Value)>,
) -> Vec<MovedTls> {
    let mut out = Vec::new();
    let mut kept_auth = Vec::new();
    for plugin in [CRI_V2, IMAGES_V3] {
        let Some(registry) = get_table_mut(doc.as_table_mut(), &["plugins", plugin, "registry"])
        else {
            continue;
        };
        let Some(configs) = registry
            .get_mut("configs")
            .and_then(|c| c.as_table_like_mut())
        else {
            continue;
        };
        let hosts: Vec<String> = configs.iter().map(|(k, _)| k.to_string()).collect();
        for h in hosts {
            let Some(c) = configs.get_mut(&h).and_then(|c| c.as_table_like_mut()) else {
                continue;
            };
            if let Some(tls) = c.remove("tls") {
                let s = |k: &str| {
                    tls.get(k)
                        .and_then(|v| v.as_str())
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                };
                let client = match (s("cert_file"), s("key_file")) {
                    (Some(cert), Some(key)) => Some((cert, key)),
                    (None, None) => None,
                    _ => {
                        notes.push(format!("registry.configs.\"{h}\".tls has a client certificate without its key (or a key without its certificate): not carried; containerd could not use it either"));
                        None
                    }
                };
                out.push(MovedTls {
                    host: h.clone(),
                    ca: s("ca_file"),
                    client,
                    skip_verify: tls
                        .get("insecure_skip_verify")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false),
                });
            }
            if let Some(a) = c.get("auth") {
                match auth_entry(a).filter(|_| move_credentials) {
                    Some(entry) => {
                        c.remove("auth");
                        auths.push((h.clone(), entry));
                    }
                    None => kept_auth.push(h.clone()),
                }
            }
            if c.is_empty() {
                configs.remove(&h);
            }
        }
        if configs.is_empty() {
            registry.remove("configs");
        }
    }
    if !out.is_empty() {
        notes.push(format!(
            "moved the TLS settings of registry.configs ({}) to hosts.toml files under {CERTS_D}: containerd 2.x ignores them there",
            out.iter().map(|t| t.host.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    if !auths.is_empty() {
        notes.push(format!(
            "took the credentials of registry.configs ({}) out of the file (deprecated in containerd 2.x, removal targeted for 2.4) into the kubelet's /var/lib/kubelet/config.json (mode 0600), which the kubelet sends with each pull",
            auths.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    if !kept_auth.is_empty() {
        notes.push(format!(
            "kept the credentials in registry.configs ({}): deprecated, their removal is targeted for containerd 2.4; the kubelet's config.json (/var/lib/kubelet/config.json) is their lasting place",
            kept_auth.join(", ")
        ));
    }
    out
}

/// `registry.configs.<host>.auth` as a docker config.json `auths` entry: `auth` (base64 of
/// user:password) as it is, username and password encoded, or an identity token. None for a
/// table with none of these.
fn auth_entry(a: &Item) -> Option<serde_json::Value> {
    use base64::Engine;
    let s = |k: &str| {
        a.get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut entry = serde_json::Map::new();
    if let Some(auth) = s("auth") {
        entry.insert("auth".into(), auth.into());
    } else if let (Some(u), Some(p)) = (s("username"), s("password")) {
        entry.insert(
            "auth".into(),
            base64::engine::general_purpose::STANDARD
                .encode(format!("{u}:{p}"))
                .into(),
        );
    }
    if let Some(t) = s("identitytoken") {
        entry.insert("identitytoken".into(), t.into());
    }
    let entry = serde_json::Value::Object(entry);
    // The encoded form is a secret of its own: never printed.
    crate::secrets::from_json(&entry);
    (!entry.as_object().is_some_and(|m| m.is_empty())).then_some(entry)
}

/// Split schema 2's CRI table into schema 3's images and runtime plugins; the streaming server
/// stays in `io.containerd.grpc.v1.cri` (containerd v2 `cmd/containerd/server/config/migrate`).
fn to_schema_3(doc: &mut DocumentMut) {
    let root = doc.as_table_mut();
    let Some(Item::Table(mut cri)) =
        get_table_mut(root, &["plugins"]).and_then(|p| p.remove(CRI_V2))
    else {
        return;
    };
    const GRPC_KEYS: [&str; 6] = [
        "disable_tcp_service",
        "stream_server_address",
        "stream_server_port",
        "stream_idle_timeout",
        "enable_tls_streaming",
        "x509_key_pair_streaming",
    ];
    const IMAGE_KEYS: [&str; 5] = [
        "max_concurrent_downloads",
        "image_pull_progress_timeout",
        "image_pull_with_sync_fs",
        "registry",
        "image_decryption",
    ];
    let mut grpc = Table::new();
    let mut images = Table::new();
    let mut runtime = Table::new();
    let names: Vec<String> = cri.iter().map(|(k, _)| k.to_string()).collect();
    // Keys move with their decor, so the operator's comments move with them.
    for name in names {
        let (key, mut item) = cri.remove_entry(&name).unwrap();
        if GRPC_KEYS.contains(&name.as_str()) {
            grpc.insert_formatted(&key, item);
        } else if IMAGE_KEYS.contains(&name.as_str()) {
            images.insert_formatted(&key, item);
        } else if name == "sandbox_image" {
            let sandbox = Key::new("sandbox").with_leaf_decor(key.leaf_decor().clone());
            table_at(&mut images, &["pinned_images"]).insert_formatted(&sandbox, item);
        } else {
            if name == "containerd" {
                if let Some(t) = item.as_table_mut() {
                    for k in ["snapshotter", "discard_unpacked_layers"] {
                        if let Some((k, v)) = t.remove_entry(k) {
                            images.insert_formatted(&k, v);
                        }
                    }
                }
            }
            runtime.insert_formatted(&key, item);
        }
    }
    let plugins = table_at(root, &["plugins"]);
    for (id, table) in [(CRI_V2, grpc), (IMAGES_V3, images), (RUNTIME_V3, runtime)] {
        if !table.is_empty() {
            let dst = table_at(plugins, &[id]);
            let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
            let mut table = table;
            for name in names {
                let (k, v) = table.remove_entry(&name).unwrap();
                dst.insert_formatted(&k, v);
            }
        }
    }
}

/// The drop-in that gives containerd 2.x's containers the open-files limit Docker's unit gave
/// them (containerd 2.0 removed `LimitNOFILE` from its unit: containerd#8924).
pub const LIMITS_DROP_IN: &str =
    "/etc/systemd/system/containerd.service.d/20-cri-migrate-limits.conf";

/// `LimitNOFILE=` values systemd takes: a number, `infinity`, or `SOFT:HARD` of those.
pub fn valid_limit(v: &str) -> bool {
    let one = |x: &str| x == "infinity" || (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()));
    match v.split_once(':') {
        Some((soft, hard)) => one(soft) && one(hard),
        None => one(v),
    }
}

pub fn limits_drop_in(limit: &str, origin: &str) -> String {
    crate::render::template(
        "containerd-limits.conf",
        serde_json::json!({ "limit": limit, "origin": origin }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_are_what_systemd_takes() {
        for ok in ["1048576", "infinity", "1024:524288", "infinity:infinity"] {
            assert!(valid_limit(ok), "{ok}");
        }
        for bad in [
            "",
            "lots",
            "1024:",
            "-1",
            "1e6",
            "1024 ; rm",
            "10\nExecStart=x",
        ] {
            assert!(!valid_limit(bad), "{bad:?}");
        }
        let d = limits_drop_in("1048576", "Docker's unit (docker.service)");
        assert!(d.contains("\n[Service]\nLimitNOFILE=1048576\n"), "{d}");
        assert!(d.lines().all(|l| l.is_empty()
            || l.starts_with('#')
            || l == "[Service]"
            || l.starts_with("LimitNOFILE=")));
    }

    use super::*;

    fn settings(schema: u8) -> Settings {
        Settings {
            schema,
            move_credentials: false,
            cni_bin_dirs_list: schema == 3,
            systemd_cgroup: true,
            sandbox_image: Some("registry.local/pause:3.6".into()),
            cni_bin_dirs: vec!["/opt/cni/bin".into()],
            cni_conf_dir: "/etc/cni/net.d".into(),
            config_path: CERTS_D.into(),
            root: None,
            snapshotter: None,
            max_concurrent_downloads: Some(10),
            restrict_oom_score_adj: false,
            handlers: vec![],
            default_runtime: None,
            base_runtime_spec: None,
            enable_selinux: false,
            default_imports: false,
        }
    }

    #[test]
    fn dockers_runtimes_become_handlers_with_the_default_selinux_and_base_spec() {
        for schema in [2, 3, 4] {
            let mut s = settings(schema);
            s.handlers = vec![
                crate::render::Handler {
                    name: "nvidia".into(),
                    runtime_type: "io.containerd.runc.v2".into(),
                    binary: Some("/usr/bin/nvidia-container-runtime".into()),
                    shim: None,
                    options: Default::default(),
                    on_node: true,
                    from: "/etc/docker/daemon.json runtimes.nvidia".into(),
                },
                crate::render::Handler {
                    name: "kata.qemu".into(),
                    runtime_type: "io.containerd.kata.v2".into(),
                    binary: None,
                    shim: Some("/usr/bin/containerd-shim-kata-v2".into()),
                    options: [(
                        "ConfigPath".to_string(),
                        serde_json::json!(
                            "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"
                        ),
                    )]
                    .into_iter()
                    .collect(),
                    on_node: true,
                    from: "dockerd --add-runtime".into(),
                },
            ];
            s.default_runtime = Some("nvidia".into());
            s.base_runtime_spec = Some(BASE_SPEC.into());
            s.enable_selinux = true;
            // On a new file and merged into containerd.io's (schema 1, CRI off).
            for existing in [None, Some("disabled_plugins = [\"cri\"]\n")] {
                let doc: DocumentMut = render(existing, &s).unwrap().text.parse().unwrap();
                let plugin = if schema >= 3 { RUNTIME_V3 } else { CRI_V2 };
                let rt = |name: &str, key: &[&str]| {
                    let mut p = vec!["plugins", plugin, "containerd", "runtimes", name];
                    p.extend(key);
                    get(&doc, &p).clone()
                };
                assert_eq!(
                    get(
                        &doc,
                        &["plugins", plugin, "containerd", "default_runtime_name"]
                    )
                    .as_str(),
                    Some("nvidia")
                );
                assert_eq!(
                    rt("nvidia", &["options", "BinaryName"]).as_str(),
                    Some("/usr/bin/nvidia-container-runtime")
                );
                assert_eq!(
                    rt("nvidia", &["options", "SystemdCgroup"]).as_bool(),
                    Some(true)
                );
                assert_eq!(
                    rt("kata.qemu", &["runtime_type"]).as_str(),
                    Some("io.containerd.kata.v2")
                );
                assert!(rt("kata.qemu", &["options", "ConfigPath"])
                    .as_str()
                    .is_some());
                for h in ["runc", "nvidia", "kata.qemu"] {
                    assert_eq!(rt(h, &["base_runtime_spec"]).as_str(), Some(BASE_SPEC));
                }
                assert_eq!(
                    get(&doc, &["plugins", plugin, "enable_selinux"]).as_bool(),
                    Some(true)
                );
            }
        }
    }

    #[test]
    fn the_base_spec_is_containerds_default_with_dockers_rlimits() {
        use crate::inspect::docker::Ulimit;
        let u = [
            Ulimit::parse("nofile=65536:1048576", "x").unwrap(),
            Ulimit::parse("memlock=-1:-1", "y").unwrap(),
        ];
        let spec: serde_json::Value =
            serde_json::from_str(&base_spec(None, &u, 1).unwrap()).unwrap();
        let r = spec["process"]["rlimits"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            serde_json::json!({"type": "RLIMIT_NOFILE", "soft": 65536, "hard": 1048576})
        );
        assert_eq!(r[1]["hard"], serde_json::json!(u64::MAX));
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(spec["linux"]["namespaces"].as_array().unwrap().len(), 5);
        // The node's file keeps what it has; the same limit is replaced, not doubled.
        let mine = r#"{"ociVersion":"1.1.0","process":{"rlimits":[{"type":"RLIMIT_NOFILE","soft":1,"hard":2},{"type":"RLIMIT_CORE","soft":0,"hard":0}]},"hooks":{}}"#;
        let spec: serde_json::Value =
            serde_json::from_str(&base_spec(Some(mine), &u[..1], 2).unwrap()).unwrap();
        assert!(spec.get("hooks").is_some());
        let r = spec["process"]["rlimits"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().any(|x| x["type"] == "RLIMIT_CORE"));
        assert!(r.iter().any(|x| x["soft"] == 65536));
        assert!(base_spec(Some("[1]"), &u, 2).is_err());
    }

    /// One registry's mirrors, of one endpoint.
    fn one_mirror(host: &str, endpoint: &str) -> Vec<(String, Vec<String>)> {
        vec![(host.to_string(), vec![endpoint.to_string()])]
    }

    /// runc's `SystemdCgroup` in the CRI plugin's table `plugin`.
    fn runc_systemd_cgroup(doc: &DocumentMut, plugin: &str) -> Option<bool> {
        let path = ["containerd", "runtimes", "runc", "options", "SystemdCgroup"];
        get(doc, &[&["plugins", plugin][..], &path].concat()).as_bool()
    }

    fn get<'a>(doc: &'a DocumentMut, path: &[&str]) -> &'a Item {
        path.iter().fold(doc.as_item(), |i, k| {
            i.get(k).unwrap_or_else(|| panic!("no {k} in {doc}"))
        })
    }

    #[test]
    fn docker_containerd_io_file_is_converted_and_cri_enabled() {
        let existing = "#   Copyright 2018-2022 Docker Inc.\n\ndisabled_plugins = [\"cri\"]\n\n#root = \"/var/lib/containerd\"\n";
        let r = render(Some(existing), &settings(2)).unwrap();
        let doc: DocumentMut = r.text.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        assert_eq!(doc["disabled_plugins"].as_array().unwrap().len(), 0);
        assert!(
            r.text.starts_with("version = 2\n#   Copyright")
                || r.text.contains("Copyright 2018-2022 Docker Inc.")
        );
        assert!(r.text.contains("#root = \"/var/lib/containerd\""));
        let cri = &["plugins", CRI_V2];
        assert_eq!(
            get(&doc, &[cri[0], cri[1], "sandbox_image"]).as_str(),
            Some("registry.local/pause:3.6")
        );
        assert_eq!(runc_systemd_cgroup(&doc, CRI_V2), Some(true));
        assert_eq!(
            get(&doc, &["plugins", CRI_V2, "registry", "config_path"]).as_str(),
            Some(CERTS_D)
        );
    }

    #[test]
    fn schema_3_from_schema_2_moves_cri_keys() {
        let existing = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"old/pause:3.5\"\n  stream_server_address = \"127.0.0.1\"\n  enable_selinux = true\n  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"/usr/lib/cni\"\n";
        let mut s = settings(3);
        s.sandbox_image = None;
        let r = render(Some(existing), &s).unwrap();
        let doc: DocumentMut = r.text.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(3));
        assert_eq!(
            get(&doc, &["plugins", IMAGES_V3, "pinned_images", "sandbox"]).as_str(),
            Some("old/pause:3.5")
        );
        assert_eq!(
            get(&doc, &["plugins", CRI_V2, "stream_server_address"]).as_str(),
            Some("127.0.0.1")
        );
        assert_eq!(
            get(&doc, &["plugins", RUNTIME_V3, "enable_selinux"]).as_bool(),
            Some(true)
        );
        assert!(get(&doc, &["plugins", RUNTIME_V3, "cni"])
            .get("bin_dir")
            .is_none());
        assert_eq!(
            get(&doc, &["plugins", RUNTIME_V3, "cni", "bin_dirs"])
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn deprecated_mirrors_are_taken_out() {
        let existing = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.local\"]\n";
        let r = render(Some(existing), &settings(2)).unwrap();
        assert_eq!(
            r.moved_mirrors,
            one_mirror("docker.io", "https://mirror.local")
        );
        assert!(!r.text.contains("mirrors"));
    }

    #[test]
    fn tls_of_registry_configs_moves_out_and_credentials_stay() {
        let existing = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."reg.corp:5000".tls]
  ca_file = "/etc/certs/corp-ca.pem"
  cert_file = "/etc/certs/client.pem"
  key_file = "/etc/certs/client.key"
[plugins."io.containerd.grpc.v1.cri".registry.configs."reg.corp:5000".auth]
  username = "robot"
  password = "s3cret"
[plugins."io.containerd.grpc.v1.cri".registry.configs."lab.local".tls]
  insecure_skip_verify = true
[plugins."io.containerd.grpc.v1.cri".registry.configs."half.local".tls]
  cert_file = "/etc/certs/only-cert.pem"
"#;
        for schema in [2, 3] {
            let r = render(Some(existing), &settings(schema)).unwrap();
            assert_eq!(
                r.moved_tls,
                vec![
                    MovedTls {
                        host: "reg.corp:5000".into(),
                        ca: Some("/etc/certs/corp-ca.pem".into()),
                        client: Some((
                            "/etc/certs/client.pem".into(),
                            "/etc/certs/client.key".into()
                        )),
                        skip_verify: false,
                    },
                    MovedTls {
                        host: "lab.local".into(),
                        skip_verify: true,
                        ..Default::default()
                    },
                    MovedTls {
                        host: "half.local".into(),
                        ..Default::default()
                    },
                ],
                "schema {schema}"
            );
            assert!(!r.text.contains("tls"), "schema {schema}: {}", r.text);
            assert!(
                !r.text.contains("lab.local"),
                "an emptied host goes: {}",
                r.text
            );
            assert!(
                r.text.contains("s3cret"),
                "credentials stay where containerd reads them"
            );
            assert!(r.notes.iter().any(|n| n.contains("moved the TLS settings")));
            assert!(r.notes.iter().any(|n| n.contains("kept the credentials")));
            assert!(r.notes.iter().any(|n| n.contains("without its key")));
        }
    }

    #[test]
    fn credentials_of_registry_configs_go_to_the_kubelet_on_containerd_2() {
        let existing = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."a.corp".auth]
  username = "robot"
  password = "s3cret"
[plugins."io.containerd.grpc.v1.cri".registry.configs."b.corp".auth]
  auth = "cm9ib3Q6czNjcmV0"
[plugins."io.containerd.grpc.v1.cri".registry.configs."c.corp".auth]
  identitytoken = "tok"
[plugins."io.containerd.grpc.v1.cri".registry.configs."d.corp".auth]
  username = "only-a-name"
"#;
        let mut s = settings(3);
        s.move_credentials = true;
        let r = render(Some(existing), &s).unwrap();
        let hosts: Vec<&str> = r.moved_auths.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(hosts, ["a.corp", "b.corp", "c.corp"]);
        assert_eq!(r.moved_auths[0].1["auth"], "cm9ib3Q6czNjcmV0");
        assert_eq!(r.moved_auths[1].1["auth"], "cm9ib3Q6czNjcmV0");
        assert_eq!(r.moved_auths[2].1["identitytoken"], "tok");
        assert!(
            !r.text.contains("s3cret") && !r.text.contains("tok\""),
            "{}",
            r.text
        );
        // An entry with no usable credential stays where it was, said.
        assert!(r.text.contains("only-a-name"));
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("kept the credentials") && n.contains("d.corp")));
        assert!(crate::secrets::redact("x cm9ib3Q6czNjcmV0 y").contains("<redacted>"));
        // On containerd 1.x (no move asked): all stay.
        let r = render(Some(existing), &settings(2)).unwrap();
        assert!(r.moved_auths.is_empty());
        assert!(r.text.contains("s3cret"));
    }

    #[test]
    fn version_4_is_schema_3_tables_with_the_server_settings_in_plugins() {
        // A fresh file: schema 3's CRI tables under `version = 4`.
        let fresh = render(None, &settings(4)).unwrap().text;
        let doc: DocumentMut = fresh.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(4));
        assert_eq!(runc_systemd_cgroup(&doc, RUNTIME_V3), Some(true));
        // Docker's version 1 file with server settings: moved as containerd's serviceMigrate does.
        let existing = r#"disabled_plugins = ["cri"]
[grpc]
  address = "/run/containerd/containerd.sock"
  uid = 0
  gid = 1000
  max_recv_message_size = 16777216
  tcp_address = "127.0.0.1:7000"
  tcp_tls_cert = "/etc/c.pem"
[debug]
  address = "/run/containerd/debug.sock"
  level = "info"
[metrics]
  address = "127.0.0.1:1338"
  grpc_histogram = true
[plugins.cri]
  enable_selinux = true
"#;
        let r = render(Some(existing), &settings(4)).unwrap();
        let doc: DocumentMut = r.text.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(4));
        // Each server setting in its plugin's table, as TOML writes the value; ttrpc listened
        // beside grpc's socket before version 4, with its owner.
        let server = "io.containerd.server.v1";
        for (plugin, key, want) in [
            ("grpc", "address", r#""/run/containerd/containerd.sock""#),
            ("grpc", "gid", "1000"),
            ("grpc", "max_recv_message_size", "16777216"),
            ("grpc-tcp", "address", r#""127.0.0.1:7000""#),
            ("grpc-tcp", "tls_cert", r#""/etc/c.pem""#),
            ("grpc-tcp", "max_recv_message_size", "16777216"),
            (
                "ttrpc",
                "address",
                r#""/run/containerd/containerd.sock.ttrpc""#,
            ),
            ("ttrpc", "gid", "1000"),
            ("debug", "address", r#""/run/containerd/debug.sock""#),
            ("metrics", "address", r#""127.0.0.1:1338""#),
        ] {
            let got = get(&doc, &["plugins", &format!("{server}.{plugin}"), key]);
            let got = got.as_value().map(|v| v.to_string());
            assert_eq!(got.as_deref().map(str::trim), Some(want), "{plugin}.{key}");
        }
        assert_eq!(
            get(
                &doc,
                &[
                    "plugins",
                    "io.containerd.metrics.v1.grpc-prometheus",
                    "grpc_histogram"
                ]
            )
            .as_bool(),
            Some(true)
        );
        assert!(doc.get("grpc").is_none() && doc.get("metrics").is_none());
        assert_eq!(
            get(&doc, &["debug", "level"]).as_str(),
            Some("info"),
            "the log level stays"
        );
        assert_eq!(
            get(&doc, &["plugins", RUNTIME_V3, "enable_selinux"]).as_bool(),
            Some(true)
        );
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("io.containerd.server.v1")));
        // Rendering a version 4 file again changes nothing.
        assert_eq!(render(Some(&r.text), &settings(4)).unwrap().text, r.text);
    }

    #[test]
    fn a_version_2_file_kept_for_containerd_2_1_takes_a_cni_list() {
        let mut s = settings(2);
        s.cni_bin_dirs_list = true;
        let r = render(
            Some(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/old\"\n",
            ),
            &s,
        )
        .unwrap();
        let doc: DocumentMut = r.text.parse().unwrap();
        assert_eq!(doc["version"].as_integer(), Some(2));
        let cni = get(&doc, &["plugins", CRI_V2, "cni"]);
        assert!(cni.get("bin_dir").is_none(), "{}", r.text);
        assert!(cni.get("bin_dirs").and_then(|v| v.as_array()).is_some());
    }

    #[test]
    fn a_schema_3_file_loses_its_deprecated_registry_tables_too() {
        // A file already written for containerd 2.x, with what 2.2.0-2.2.1 refuse beside
        // config_path (mirrors) and what 2.x ignores (configs TLS).
        let existing = r#"version = 3
[plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io"]
  endpoint = ["https://mirror.corp"]
[plugins."io.containerd.cri.v1.images".registry.configs."mirror.corp".tls]
  ca_file = "/etc/certs/ca.pem"
"#;
        let r = render(Some(existing), &settings(3)).unwrap();
        assert_eq!(
            r.moved_mirrors,
            one_mirror("docker.io", "https://mirror.corp")
        );
        assert_eq!(r.moved_tls[0].ca.as_deref(), Some("/etc/certs/ca.pem"));
        let doc: DocumentMut = r.text.parse().unwrap();
        let registry = get(&doc, &["plugins", IMAGES_V3, "registry"]);
        assert!(
            registry.get("mirrors").is_none() && registry.get("configs").is_none(),
            "{}",
            r.text
        );
        assert_eq!(
            registry.get("config_path").and_then(|v| v.as_str()),
            Some(CERTS_D)
        );
    }

    #[test]
    fn rendering_twice_changes_nothing() {
        let once = render(Some("disabled_plugins = [\"cri\"]\n"), &settings(2))
            .unwrap()
            .text;
        assert_eq!(render(Some(&once), &settings(2)).unwrap().text, once);
        let fresh = render(None, &settings(3)).unwrap().text;
        assert_eq!(render(Some(&fresh), &settings(3)).unwrap().text, fresh);
    }

    #[test]
    fn a_nested_node_keeps_pods_oom_score_adj_at_containerds() {
        for (schema, table) in [
            (2, &["plugins", CRI_V2][..]),
            (3, &["plugins", "io.containerd.cri.v1.runtime"][..]),
        ] {
            let mut s = settings(schema);
            s.restrict_oom_score_adj = true;
            let doc: DocumentMut = render(None, &s).unwrap().text.parse().unwrap();
            let mut path = table.to_vec();
            path.push("restrict_oom_score_adj");
            assert_eq!(get(&doc, &path).as_bool(), Some(true), "schema {schema}");
            s.restrict_oom_score_adj = false;
            assert!(!render(None, &s)
                .unwrap()
                .text
                .contains("restrict_oom_score_adj"));
        }
    }
}
