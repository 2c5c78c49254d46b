//! containerd as the target: its config.toml merged into the node's (schema 2, 3 or 4 by
//! version), one hosts.toml per registry, the kubelet's credentials moved out of the config
//! (2.x), a limits drop-in (2.x's unit sets none); its version rules, its order beside Docker
//! (KillMode, Docker's own containerd), its handlers and its image ways.

use super::target::{usual_storage, About, Storage, Target, TargetRuntime};
use crate::error::Failure;
use crate::images::{Ctr, Dest};
use crate::inspect::{Facts, Finding, Installed};
use crate::node::{join, Node};
use crate::plan::model::{
    change, setting, skipped_registries, Carried, FileChange, FileGroup, Format, Order, Plan,
    RuntimeFiles, Said, Setting, Versions,
};
use crate::render;
use crate::version::Version;

pub struct Containerd;

/// The newest config version a containerd of a version reads: 2 for 1.x, 3 for 2.0 to 2.2, 4
/// from 2.3 (containerd RELEASES.md; version 1 is gone from 2.0: containerd#8275).
pub fn config_version(v: Version) -> u8 {
    if v.at_least(2, 3) {
        4
    } else if v.major >= 2 {
        3
    } else {
        2
    }
}

/// The snapshotter CRI unpacks images into: the node's config's, else containerd's default.
pub fn cri_snapshotter(facts: &Facts) -> String {
    facts
        .containerd_config
        .as_ref()
        .and_then(|c| c.snapshotter.clone())
        .unwrap_or_else(|| "overlayfs".into())
}

impl TargetRuntime for Containerd {
    fn about(&self) -> &'static About {
        &super::CONTAINERD
    }
    fn installed<'f>(&self, facts: &'f Facts) -> &'f Installed {
        &facts.runtimes.containerd
    }

    // Below 1.6: no CRI v1, no hosts.toml before 1.5.
    fn oldest(&self) -> Option<Version> {
        Some(Version::new(1, 6, 0))
    }
    fn config_schema(&self, facts: &Facts, v: &Versions) -> Result<Said<Option<u8>>, Failure> {
        let mut warnings = Vec::new();
        let schema = containerd_schema(v, facts.containerd_config.as_ref(), &mut warnings)?;
        Ok(Said {
            value: Some(schema),
            warnings,
        })
    }
    fn default_pause(&self, rv: Version) -> &'static str {
        if rv.major >= 2 {
            "registry.k8s.io/pause:3.10"
        } else if rv.at_least(1, 7) {
            "registry.k8s.io/pause:3.8"
        } else {
            "registry.k8s.io/pause:3.6"
        }
    }

    fn configured_sandbox_image(&self, facts: &Facts) -> Option<Setting<String>> {
        let image = facts.containerd_config.as_ref()?.sandbox_image.clone()?;
        Some(setting(image, "the existing config.toml"))
    }
    fn root_beside_docker(&self) -> &'static str {
        "containerd"
    }
    fn selinux_like(&self, root: &str) -> (String, String) {
        ("/var/lib/containerd".to_string(), root.to_string())
    }
    fn carried_to(&self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        ("containerd (1.x schema 2 / 2.x schema 3)", CARRIED_TO)
    }
    fn storage_driver(&self, docker: &str) -> Storage {
        usual_storage(docker, "native")
    }
    fn max_concurrent_downloads(&self, n: u64) -> Result<u64, Finding> {
        Ok(n)
    }
    fn nvidia_hint(&self) -> (&'static str, &'static str) {
        (
            "through the runc shim, with the kubelet's cgroup driver",
            "GPU pods keep their devices through it; where containerd supports CDI (1.7+ with enable_cdi, on by default from 2.0; not 1.6) the device plugin can use it instead: `nvidia-ctk cdi generate`, then its cdi-cri strategy",
        )
    }

    fn files(&self, f: &Facts, v: &Versions, s: &Carried) -> Result<Said<RuntimeFiles>, Failure> {
        let mut warnings = Vec::new();
        let value = containerd_files(f, v, s, &mut warnings)?;
        Ok(Said { value, warnings })
    }
    // From the planned config (and the files it imports), runc always.
    fn planned_handlers(&self, facts: &Facts, plan: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        let text = plan
            .files
            .iter()
            .find(|f| f.path == facts.containerd_config_path.path)
            .map(|f| f.new.clone())
            .or_else(|| {
                facts
                    .files
                    .get(&facts.containerd_config_path.path)
                    .map(|s| s.content.clone())
            });
        if let Some(doc) = text.and_then(|t| t.parse::<toml_edit::DocumentMut>().ok()) {
            for p in ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"] {
                let runtimes = [p, "containerd", "runtimes"];
                out.extend(crate::inspect::runtimes::keys_at(
                    doc.get("plugins"),
                    &runtimes,
                ));
            }
        }
        if let Some(c) = &facts.containerd_config {
            for i in &c.imported {
                out.extend(i.handlers.iter().cloned());
            }
        }
        out.push("runc".into());
        out
    }

    fn beside_docker(&self, facts: &Facts) -> Order {
        // Docker on the system's containerd passes `--containerd=` (its unit, or daemon.json's
        // `containerd`); without it, dockerd runs a containerd of its own under /run/docker.
        let docker_own_containerd = facts
            .runtimes
            .docker
            .exec_start
            .as_deref()
            .is_some_and(|e| !e.contains("--containerd"))
            && !facts.docker.settings.other.contains_key("containerd");
        match facts.runtimes.containerd.kill_mode.as_deref() {
            Some("process") => Order {
                check_before_cutover: true,
                why: "containerd.service has KillMode=process: Docker's containers (their shims) outlive its restart, so containerd is restarted with the new config and checked while the kubelet still runs on Docker".into(),
            },
            _ if docker_own_containerd => Order {
                check_before_cutover: true,
                why: "Docker runs a containerd of its own (no --containerd in its unit or daemon.json): containerd.service is a separate daemon on its own socket, so it is restarted with the new config and checked while the kubelet still runs on Docker".into(),
            },
            other => Order {
                check_before_cutover: false,
                why: format!(
                    "containerd.service has KillMode={}: restarting it beside Docker would stop Docker's containers",
                    other.unwrap_or("control-group (systemd's default)")
                ),
            },
        }
    }
    // Its support of schema 1 images changes with its version (inspect::manifests).
    fn schema1_judged_by(&self, rv: Version) -> Option<Version> {
        Some(rv)
    }

    fn image_dest(&self, facts: &Facts, node: &Node) -> Result<Dest, Failure> {
        // The socket containerd's unit has it listen on (its default otherwise).
        let endpoint = crate::plan::model::endpoint(facts, Target::Containerd)?;
        Ok(Dest::Containerd(Ctr {
            address: node
                .path(endpoint.trim_start_matches("unix://"))
                .display()
                .to_string(),
            snapshotter: cri_snapshotter(facts),
        }))
    }
    fn links_images(&self) -> Result<(), &'static str> {
        Ok(())
    }
    fn carry_fix(&self) -> &'static str {
        "Start containerd (systemctl start containerd) so that it can take them before the cutover, or run with --images none to let it pull them afterwards."
    }
}

/// Where containerd takes each carried setting (docs/carried-settings.md's column).
const CARRIED_TO: &[(&str, &str)] = &[
    ("cgroup_driver", "`runtimes.runc.options.SystemdCgroup`"),
    ("sandbox_image", "`sandbox_image` / `pinned_images.sandbox`"),
    ("cni_conf_dir", "`cni.conf_dir`"),
    ("cni_bin_dirs", "`cni.bin_dir` (1.x, 2.0) / `cni.bin_dirs` (2.1+)"),
    ("registry_mirrors", "`certs.d/docker.io/hosts.toml`, one `[host]` per mirror, `server = \"https://registry-1.docker.io\"`"),
    ("insecure_registries", "`certs.d/<host:port>/hosts.toml` with an `http://` host and `skip_verify = true` (HTTPS without verification first, then HTTP, as Docker did)"),
    ("registry_certs", "`ca` and `client` in that host's hosts.toml, pointing at Docker's files (which stay)"),
    ("config_mirrors", "moved to hosts.toml files (they conflict with `config_path`; with both, the CRI plugin of containerd 2.2.0–2.2.1 does not load: containerd#12612)"),
    ("config_tls", "moved to hosts.toml: `ca_file` → `ca`, `cert_file` + `key_file` → `client`, `insecure_skip_verify` → `skip_verify`, on every host entry that talks to that host (a hosts.toml of its own when none does); containerd 2.x ignores `configs.*.tls`"),
    ("config_auths", "containerd 2.x: taken out of the file into the kubelet's `/var/lib/kubelet/config.json` (mode 0600, merged: an entry the file has for that registry stays, said), which the kubelet sends with each pull; written with the runtime's files, so the check before the cutover pulls with them. containerd 1.x: kept where it is. Never printed"),
    ("address_reservations", "released once Docker has stopped (moved into the backup's `released/`; a rollback puts them back; a file given out again meanwhile is left alone)"),
    ("limit_nofile", "containerd 2.0 removed `LimitNOFILE` from its unit (containerd#8924; its containers then get a soft limit of 1024): a drop-in `/etc/systemd/system/containerd.service.d/20-cri-migrate-limits.conf` keeps Docker's value; when Docker's unit sets none either (Docker 25+), nothing changes and the plan says so"),
    ("runtime_root", "top-level `root`, beside it: `/data/docker` → `/data/containerd`"),
    ("snapshotter", "`snapshotter`: btrfs, zfs, `native` for vfs"),
    ("max_concurrent_downloads", "`max_concurrent_downloads`"),
    ("kubenet", "`10-cri-migrate-kubenet.conflist` in the CNI config directory: bridge `cbr0` (gateway, default route, hairpin), host-local addresses from the pod CIDR, portmap (host ports, `KUBE-MARK-MASQ`), as GKE's and kops's kubenet nodes got on containerd. Its masquerade covers traffic leaving the pod CIDR, where kubenet spared `--non-masquerade-cidr`: said, with ip-masq-agent as the way to kubenet's exact rule. Other CNI configs beside it are said (the runtime takes the first by name)"),
    ("log_rotation", "the kubelet's config (YAML or JSON): `containerLogMaxSize` in Kubernetes units (`100m` → `100Mi`), `containerLogMaxFiles` at least 2 (the kubelet's minimum, said); a kubelet config that sets its own is kept and said; without a config file, `--container-log-max-size` and `--container-log-max-files` with the runtime flags (a kubelet's own such flags are kept and said); `json-file` without `max-size` (never rotated) is said with the kubelet's defaults (10Mi × 5)"),
    ("nested_node", "`restrict_oom_score_adj = true` (the CRI plugin, or `cri.v1.runtime` from schema 3): runc cannot set a pod's oom_score_adj below containerd's (canonical/lxd#2994); said"),
    ("proxy", "`/etc/systemd/system/containerd.service.d/20-cri-migrate-proxy.conf` with the same variables (`%` doubled for systemd), 0600 when a value holds a credential; values never printed"),
    ("handlers", "a handler of the same name: with the runtime's own shim on the node (Kata, gVisor) or a `runtimeType` Docker named, `runtime_type = \"io.containerd.NAME.vN\"` and Docker's `options`; else the runc shim, `runtime_type = \"io.containerd.runc.v2\"` with `options.BinaryName` = the binary (nvidia-container-runtime, crun, youki, sysbox-runc), `SystemdCgroup` as runc's — what NVIDIA's `nvidia-ctk runtime configure` and the EKS AMI write. `runtimeArgs` cannot be carried (no runtime passes arguments): said. A binary or shim not on the node: written, said, no test pod. A name that is not a DNS label: written, said (no RuntimeClass can name it). The check runs a test pod through every carried handler whose runtime is on the node"),
    ("default_handler", "`default_runtime_name` (the CRI plugin's `containerd` table); the check's test pod runs on it and says which binary ran it"),
    ("ulimits", "`/etc/containerd/base-runtime-spec.json`: containerd's default spec (`ctr oci spec`, as the EKS AL2023 AMI ships it) with `process.rlimits` set, as `base_runtime_spec` of runc and of every carried handler; a node's file there keeps what it holds, the same limit replaced"),
    ("selinux", "`enable_selinux = true`; where SELinux is on and the runtime's root moves beside Docker's data-root, the equivalence rule and relabel are said with the exact commands (`semanage fcontext -a -e /var/lib/containerd /data/containerd && restorecon -R -v /data/containerd`), to run before applying (policycoreutils named where it is missing)"),
    ("endpoint", "kubelet: `--container-runtime-endpoint` below 1.27, `containerRuntimeEndpoint` in config.yaml from 1.27; `/etc/crictl.yaml`"),
];

/// containerd's config.toml merged into the node's, one hosts.toml per registry, the kubelet's
/// credentials (containerd 2 drops them from its config), the limits drop-in.
fn containerd_files(
    facts: &Facts,
    v: &Versions,
    settings: &Carried,
    warnings: &mut Vec<Finding>,
) -> Result<RuntimeFiles, Failure> {
    let (rv, config_schema) = (v.rv, v.config_schema);
    let mut files = Vec::new();
    let schema = config_schema.unwrap();
    // The file containerd's unit loads (`-c`), which may not be config.toml.
    let config_path = facts.containerd_config_path.path.as_str();
    let cs = render::containerd::Settings {
        schema,
        cni_bin_dirs_list: rv.at_least(2, 1),
        move_credentials: rv.major >= 2,
        systemd_cgroup: settings.cgroup_driver.value == "systemd",
        sandbox_image: settings.sandbox_image.as_ref().map(|s| s.value.clone()),
        cni_bin_dirs: settings.cni_bin_dirs.value.clone(),
        cni_conf_dir: settings.cni_conf_dir.value.clone(),
        config_path: render::containerd::CERTS_D.into(),
        root: settings.runtime_root.as_ref().map(|s| s.value.clone()),
        snapshotter: settings.snapshotter.as_ref().map(|s| s.value.clone()),
        max_concurrent_downloads: settings.max_concurrent_downloads.as_ref().map(|s| s.value),
        restrict_oom_score_adj: nested(facts, warnings),
        handlers: handlers_not_imported(facts, &settings.workloads.handlers, warnings),
        default_runtime: settings
            .workloads
            .default_handler
            .as_ref()
            .map(|s| s.value.clone()),
        base_runtime_spec: (!settings.workloads.ulimits.is_empty())
            .then(|| render::containerd::BASE_SPEC.to_string()),
        enable_selinux: settings.workloads.selinux.is_some(),
        // containerd 2.2's default config imports conf.d; a file written where there was none
        // keeps reading it (nvidia-ctk 1.18+ writes its drop-in there).
        default_imports: rv.at_least(2, 2) && !facts.files.contains_key(config_path),
    };
    let old = facts.files.get(config_path);
    let r = render::containerd::render(old.map(|s| s.content.as_str()), &cs).map_err(
            |problem| {
                Failure::bad_input(
                    config_path,
                    format!("the merged config cannot be made: {problem}"),
                    "Fix the file (or the value carried into it), or move it aside so that cri-migrate writes a new one.",
                )
            },
        )?;
    for note in &r.notes {
        warnings.push(Finding::info(
            "containerd-config-converted",
            note.clone(),
            format!("review the diff of {config_path}"),
        ));
    }
    imports_against(facts, rv, schema, &r.text, warnings);
    let why = match &facts.containerd_config_path.from {
        Some(from) => format!("containerd's config, the file its unit loads ({from}): CRI plugin on, cgroup driver, sandbox image, CNI and registry directories"),
        None => "containerd's config: CRI plugin on, cgroup driver, sandbox image, CNI and registry directories".to_string(),
    };
    files.push(change(
        facts,
        (FileGroup::Runtime, Format::Toml),
        config_path,
        r.text,
        &why,
    ));
    if let Some(spec) = &cs.base_runtime_spec {
        files.push(base_spec(facts, spec, rv, settings, warnings)?);
    }
    let moved = (&r.moved_mirrors[..], &r.moved_tls[..]);
    let hosts = hosts_files(facts, moved, &mut files, warnings)?;
    let registries = hosts;
    if !r.moved_auths.is_empty() {
        files.push(kubelet_credentials(facts, &r.moved_auths, warnings)?);
    }
    limits_drop_in(facts, rv, &mut files, warnings);
    Ok(RuntimeFiles { files, registries })
}

/// Docker's default ulimits as containerd's base spec: its default spec (or the node's file)
/// with `process.rlimits` set.
fn base_spec(
    facts: &Facts,
    spec: &str,
    rv: Version,
    settings: &Carried,
    warnings: &mut Vec<Finding>,
) -> Result<FileChange, Failure> {
    let old = facts.files.get(spec);
    let text = render::containerd::base_spec(
        old.map(|s| s.content.as_str()),
        &settings.workloads.ulimits,
        rv.major,
    )
    .map_err(|problem| {
        Failure::bad_input(
            spec,
            problem,
            "Fix the file (it is the spec containerd starts containers from), or move it aside so that cri-migrate writes a new one.",
        )
    })?;
    let limits: Vec<String> = settings
        .workloads
        .ulimits
        .iter()
        .map(|u| format!("{} ({})", u.to_flag(), u.from))
        .collect();
    warnings.push(Finding::info(
        "ulimits-carried",
        format!(
            "Docker's default ulimits {} go to {spec}, the base spec of every containerd handler",
            limits.join(", ")
        ),
        "nothing to do; a pod's containers start with these limits, as Docker's did",
    ));
    Ok(change(
        facts,
        (FileGroup::Runtime, Format::Json),
        spec,
        text,
        "Docker's default-ulimits: containerd's default spec with process.rlimits set, the base of every container's spec",
    ))
}

/// One hosts.toml per registry (Docker's mirrors, insecure registries and certificates, and
/// what an old config.toml held), merged into the node's; the registries written.
fn hosts_files(
    facts: &Facts,
    (moved_mirrors, moved_tls): (&[(String, Vec<String>)], &[render::containerd::MovedTls]),
    files: &mut Vec<FileChange>,
    warnings: &mut Vec<Finding>,
) -> Result<Vec<String>, Failure> {
    let carried_hosts = render::registries::containerd_hosts(
        &facts.docker.settings,
        &facts.docker.certs,
        moved_mirrors,
        moved_tls,
    );
    skipped_registries(&carried_hosts.skipped, warnings);
    let hosts = carried_hosts.value;
    for h in &hosts {
        let path = join(
            &join(render::containerd::CERTS_D, h.host.as_str()),
            "hosts.toml",
        );
        let rendered = render::registries::hosts_toml(h);
        let new = match facts.files.get(&path) {
            Some(old) => merge_toml(&path, &old.content, &rendered)?,
            None => rendered,
        };
        files.push(change(
            facts,
            (FileGroup::Runtime, Format::Toml),
            &path,
            new,
            &format!("registry {} from {}", h.host, h.origin),
        ));
    }
    Ok(hosts.iter().map(|h| h.host.to_string()).collect())
}

/// A handler a file containerd imports defines already (nvidia-ctk 1.18+ writes
/// `/etc/containerd/conf.d/99-nvidia.toml`) stays there, said, instead of being written twice.
fn handlers_not_imported(
    facts: &Facts,
    handlers: &[render::Handler],
    warnings: &mut Vec<Finding>,
) -> Vec<render::Handler> {
    let imported = facts
        .containerd_config
        .as_ref()
        .map(|c| c.imported.as_slice())
        .unwrap_or_default();
    handlers
        .iter()
        .filter(|h| {
            let Some(i) = imported.iter().find(|i| i.handlers.contains(&h.name)) else {
                return true;
            };
            warnings.push(Finding::info(
                "runtime-handler-imported",
                format!("the {} handler is defined by {}, which /etc/containerd/config.toml imports: kept there, not written again", h.name, i.path),
                format!("check that it runs {} as Docker did", h.binary.as_deref().unwrap_or(&h.runtime_type)),
            ));
            false
        })
        .cloned()
        .collect()
}

/// What the files containerd imports do to the planned config, the way containerd merges them:
/// a value they set differently from the plan is named (they win); on containerd 1.x an
/// imported plugin table replaces the main file's table of that plugin whole (containerd#5837,
/// changed in 2.0 by containerd#9982); an import of a higher config version than the main
/// file's is said (containerd 2.3 refuses it: containerd#12891).
fn imports_against(
    facts: &Facts,
    rv: Version,
    schema: u8,
    planned: &str,
    warnings: &mut Vec<Finding>,
) {
    let Some(config) = &facts.containerd_config else {
        return;
    };
    let Ok(doc) = planned.parse::<toml_edit::DocumentMut>() else {
        return;
    };
    let ours = crate::inspect::runtimes::flatten(&doc);
    for i in &config.imported {
        if i.version > schema as i64 {
            warnings.push(Finding::warning(
                "containerd-import-version",
                format!("{} is config version {} and /etc/containerd/config.toml is written as version {schema}: containerd 2.3 refuses an import of a higher version than the main file's (containerd#12891)", i.path, i.version),
                format!("write {} as version {schema} (`containerd config migrate` shows a file's conversion), or remove it from `imports`", i.path),
            ));
        }
        if rv.major < 2 {
            for p in i.plugins.iter().filter(|p| {
                ours.iter().any(|(k, _)| {
                    k.starts_with(&format!(
                        "plugins.{}.",
                        toml_edit::Key::new(p.as_str()).display_repr()
                    ))
                })
            }) {
                warnings.push(Finding::warning(
                    "containerd-import-replaces",
                    format!("{} sets [plugins.\"{p}\"], which containerd {rv} takes instead of the whole table of that plugin in /etc/containerd/config.toml (containerd 1.x merges imports by plugin, not by key: containerd#5837): the planned settings of that plugin would not apply", i.path),
                    format!("move its settings of {p} into /etc/containerd/config.toml (then remove them from the import), and run cri-migrate again"),
                ));
            }
        }
        for (key, value) in &i.values {
            if let Some((_, planned)) = ours.iter().find(|(k, v)| k == key && v != value) {
                warnings.push(Finding::warning(
                    "containerd-import-overrides",
                    format!("{} sets {key} = {value}, over the planned {planned}: containerd applies the import last", i.path),
                    format!("remove {key} from {} (or set it to {planned}) unless the node needs that value", i.path),
                ));
            }
        }
    }
}

/// A node whose bounding set lacks CAP_SYS_RESOURCE (an LXC/LXD or Proxmox container, a nested
/// node): runc cannot lower a pod sandbox's `oom_score_adj` below containerd's own, and every
/// sandbox fails (canonical/lxd#2994) unless containerd keeps it there
/// (`restrict_oom_score_adj`, what rootless setups use). Known on the live node only.
fn nested(facts: &Facts, warnings: &mut Vec<Finding>) -> bool {
    if facts.cap_sys_resource != Some(false) {
        return false;
    }
    warnings.push(Finding::info(
        "nested-node",
        "this node's processes lack CAP_SYS_RESOURCE (a nested container: LXC/LXD, Proxmox): runc could not set a pod's oom_score_adj below containerd's, so containerd gets restrict_oom_score_adj = true",
        "nothing to do; on a node with the capability it is not set",
    ));
    true
}

/// The kubelet's config.json with the credentials taken out of containerd's config added: the
/// kubelet sends them with each pull. An entry the file already has for a registry is kept (it
/// is what the kubelet sent so far), said.
fn kubelet_credentials(
    facts: &Facts,
    moved: &[(String, serde_json::Value)],
    warnings: &mut Vec<Finding>,
) -> Result<FileChange, Failure> {
    use crate::cri::credentials::KUBELET_CONFIG_JSON as PATH;
    let mut doc: serde_json::Value = match facts.files.get(PATH) {
        Some(snap) => serde_json::from_str(&snap.content).map_err(|e| {
            Failure::bad_input(
                PATH,
                format!("not valid JSON ({e})"),
                "Fix it (image pulls that need its credentials fail while it is broken), then run cri-migrate again.",
            )
        })?,
        None => serde_json::json!({}),
    };
    let Some(obj) = doc.as_object_mut() else {
        return Err(Failure::bad_input(
            PATH,
            "not a JSON object",
            "It must be a docker config.json: {\"auths\": {...}}.",
        ));
    };
    let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Failure::bad_input(
            PATH,
            "its `auths` is not an object",
            "Fix it: `auths` maps registry hosts to credentials.",
        ));
    };
    for (host, entry) in moved {
        if auths.contains_key(host) {
            warnings.push(Finding::warning(
                "credentials-kept",
                format!("{PATH} already has credentials for {host}; those stay (the kubelet sent them so far), the ones from containerd's registry.configs are dropped"),
                format!("check that the credentials for {host} in {PATH} are the current ones"),
            ));
        } else {
            auths.insert(host.clone(), entry.clone());
        }
    }
    // With the runtime's files: the check before the cutover pulls with them.
    let mut c = change(
        facts,
        (FileGroup::Runtime, Format::Json),
        PATH,
        format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON")),
        "registry credentials taken out of containerd's config (registry.configs, deprecated in 2.x): the kubelet sends them with each pull",
    );
    // Credentials: root only, whatever the file's mode was.
    c.mode &= 0o600;
    Ok(c)
}

/// containerd 2.x's unit sets no `LimitNOFILE` (containerd#8924): the containers it starts get a
/// soft limit of 1024 open files. Where Docker's unit gave its containers a limit, a drop-in keeps
/// it; where neither sets one, nothing changes for the workloads, and that is said.
fn limits_drop_in(
    facts: &Facts,
    rv: Version,
    files: &mut Vec<FileChange>,
    warnings: &mut Vec<Finding>,
) {
    let containerd = &facts.runtimes.containerd;
    if rv.major < 2 || !containerd.units.iter().any(|u| u == "containerd.service") {
        return;
    }
    // Set already (its unit, a drop-in of the operator's, or ours from an earlier run).
    if containerd.limit_nofile.is_some() {
        return;
    }
    match facts.runtimes.docker.limit_nofile.as_deref() {
        Some(limit) if render::containerd::valid_limit(limit) => {
            warnings.push(Finding::info(
                "containerd-limit-nofile",
                format!("containerd {rv}'s unit sets no LimitNOFILE, so its containers would get a soft limit of 1024 open files; Docker's unit gave them LimitNOFILE={limit}"),
                format!("the plan adds {} keeping Docker's limit", render::containerd::LIMITS_DROP_IN),
            ));
            files.push(change(
                facts,
                (FileGroup::Runtime, Format::Unit),
                render::containerd::LIMITS_DROP_IN,
                render::containerd::limits_drop_in(limit, "Docker's unit (docker.service)"),
                "containerd 2.x's unit sets no LimitNOFILE: keep Docker's open-files limit for the containers",
            ));
        }
        Some(limit) => warnings.push(Finding::warning(
            "containerd-limit-nofile",
            format!("containerd {rv}'s unit sets no LimitNOFILE (containers get a soft limit of 1024 open files), and Docker's LimitNOFILE={limit:?} is not a value cri-migrate can carry"),
            "set LimitNOFILE in a drop-in under /etc/systemd/system/containerd.service.d/",
        )),
        None => warnings.push(Finding::info(
            "containerd-limit-nofile",
            format!("containerd {rv}'s unit sets no LimitNOFILE, nor does Docker's: containers get systemd's default soft limit of 1024 open files, as they did"),
            "workloads that need more open files: a LimitNOFILE drop-in under /etc/systemd/system/containerd.service.d/",
        )),
    }
}

fn merge_toml(path: &str, old: &str, rendered: &str) -> Result<String, Failure> {
    let mut doc: toml_edit::DocumentMut = old.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(
            path,
            crate::error::toml_problem(old, &e),
            "Fix it, or move it aside so that cri-migrate writes a new one.",
        )
    })?;
    let tpl: toml_edit::DocumentMut = rendered.parse().map_err(|e: toml_edit::TomlError| {
        Failure::bad_input(
            path,
            format!(
                "the registry settings do not render as TOML ({})",
                crate::error::toml_problem(rendered, &e)
            ),
            "Check the registry names and URLs carried into it.",
        )
    })?;
    render::toml_merge::merge(&mut doc, &tpl);
    Ok(doc.to_string())
}

fn containerd_schema(
    &Versions { rv, kv, .. }: &Versions,
    existing: Option<&crate::inspect::runtimes::ContainerdConfig>,
    warnings: &mut Vec<Finding>,
) -> Result<u8, Failure> {
    // The newest config version the installed containerd reads (its description).
    let readable = config_version(rv);
    if let Some(c) = existing {
        // A file written for a newer containerd than the one installed: the installed one cannot
        // read it, and rewriting it down would leave the newer tables in, misread.
        if c.schema > i64::from(readable) {
            return Err(Failure::bad_input(
                &c.path,
                format!(
                    "it is written as config version {}, which containerd {rv} cannot read (it reads up to version {readable})",
                    c.schema
                ),
                "Install the containerd the file was written for (or pass --runtime-version if the version was misread), or move the file aside so that cri-migrate writes one for this containerd.",
            ));
        }
    }
    if rv.major >= 3 {
        return Err(Failure::preflight(
            format!("containerd {rv} is newer than cri-migrate knows (config version 2 for 1.x, 3 for 2.0 to 2.2, 4 for 2.3 and later)"),
            "Use a cri-migrate release that knows it, or pass --runtime-version if the version was misread.",
        ));
    }
    if !rv.at_least(1, 5) {
        return Err(Failure::preflight(
            format!("containerd {rv} is too old: registry hosts (config_path) need 1.5"),
            "Run with --install-runtime to upgrade it from the node's package source first, or upgrade containerd to 1.6 or later by hand.",
        ));
    }
    // containerd 2.0 removed CRI v1alpha2; the kubelet speaks CRI v1 from 1.23 (CRI stable).
    if rv.major >= 2 && !kv.at_least(1, 23) {
        return Err(Failure::preflight(
            format!("kubelet {kv} speaks CRI v1alpha2 only, which containerd {rv} no longer serves (removed in containerd 2.0)"),
            "Upgrade the kubelet first (1.23 or later speaks CRI v1; containerd lists 2.x for Kubernetes 1.30 and later), or target containerd 1.7 (install it, or pass --runtime-version 1.7.x for a node where it will be).",
        ));
    }
    if kv.at_least(1, 26) && !rv.at_least(1, 6) {
        return Err(Failure::preflight(
            format!("kubelet {kv} needs CRI v1, which containerd {rv} does not serve"),
            "Run with --install-runtime to upgrade it from the node's package source first, or upgrade containerd to 1.6 or later by hand.",
        ));
    }
    // An existing file keeps its version where the installed containerd reads it (containerd
    // migrates older versions in memory at load); only a version it cannot read, or no file,
    // gets the newest. A file moved to a newer version cannot go back to an older containerd.
    let schema = match existing.map(|c| c.schema) {
        Some(v) if (2..=i64::from(readable)).contains(&v) => v as u8,
        _ => readable,
    };
    // (1.x's version 1 to 2 needs no word: every containerd cri-migrate plans for reads 2.)
    if let Some(c) = existing.filter(|c| c.schema < i64::from(schema) && schema >= 3) {
        let older = if schema == 4 {
            "containerd before 2.3"
        } else {
            "containerd 1.x"
        };
        warnings.push(Finding::info(
            "containerd-config-version",
            format!(
                "{} goes from config version {} to {schema}{}; {older} cannot read version {schema}",
                c.path,
                c.schema.max(1),
                if c.schema < 2 && rv.major >= 2 {
                    format!(" (containerd {rv} no longer reads version 1)")
                } else {
                    String::new()
                }
            ),
            "to put an older containerd back later (a package downgrade), put the file back too: the backup keeps it, and `cri-migrate rollback` restores it",
        ));
    }
    Ok(schema)
}
