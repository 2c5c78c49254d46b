//! Phase 3: the runtime's files — containerd's config.toml merged into the node's, its registry
//! host files, the kubelet's credentials moved out of it, a limits drop-in; or CRI-O's drop-in
//! and registries — with the settings they hold.

use super::*;

pub(super) fn runtime_files(
    facts: &Facts,
    v: &Versions,
    target: Target,
    settings: &mut Carried,
    warnings: &mut Vec<Finding>,
) -> Result<Vec<FileChange>, Failure> {
    let mut files = match target {
        Target::Containerd => containerd_files(facts, v, settings, warnings)?,
        Target::Crio => crio_files(facts, v.rv, settings, warnings)?,
    };
    files.extend(proxy_drop_in(facts, target, warnings));
    Ok(files)
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

/// Docker's proxy (its unit's environment, daemon.json's `proxies`) for the new runtime's unit,
/// so that its pulls keep going through it: a drop-in with the same variables, readable by
/// root only when a value holds a credential (never printed: the diff shows it redacted).
fn proxy_drop_in(facts: &Facts, target: Target, warnings: &mut Vec<Finding>) -> Option<FileChange> {
    let proxies = &facts.docker.settings.proxies;
    if proxies.is_empty() {
        return None;
    }
    let path = crate::inspect::runtimes::proxy_drop_in(target.unit());
    let mut text = String::from(
        "# Docker's proxy, carried by cri-migrate so that the runtime's pulls go through it too.\n[Service]\n",
    );
    for (var, value, _) in proxies {
        let word = format!("{var}={value}")
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('%', "%%");
        text.push_str(&format!("Environment=\"{word}\"\n"));
    }
    let from: Vec<String> = proxies
        .iter()
        .map(|(var, _, from)| format!("{var} ({from})"))
        .collect();
    warnings.push(Finding::info(
        "proxy-carried",
        format!("Docker pulls through a proxy: {} go to {path}", from.join(", ")),
        format!("{} pulls through the same proxy; check NO_PROXY covers the node's registries and the cluster's networks", target.name()),
    ));
    // A value with a credential makes the file root's only (`change` reads it so).
    Some(change(
        facts,
        (FileGroup::Runtime, Format::Unit),
        &path,
        text,
        &format!("Docker's proxy for {}", target.unit()),
    ))
}

/// containerd's config.toml merged into the node's, one hosts.toml per registry, the kubelet's
/// credentials (containerd 2 drops them from its config), the limits drop-in.
fn containerd_files(
    facts: &Facts,
    v: &Versions,
    settings: &mut Carried,
    warnings: &mut Vec<Finding>,
) -> Result<Vec<FileChange>, Failure> {
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
    if settings.sandbox_image.is_none() {
        settings.sandbox_image = r
            .existing_sandbox_image
            .clone()
            .map(|v| setting(v, "the existing config.toml"));
    }
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
        let old = facts.files.get(spec.as_str());
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
            format!("Docker's default ulimits {} go to {spec}, the base spec of every containerd handler", limits.join(", ")),
            "nothing to do; a pod's containers start with these limits, as Docker's did",
        ));
        files.push(change(
            facts,
            (FileGroup::Runtime, Format::Json),
            spec,
            text,
            "Docker's default-ulimits: containerd's default spec with process.rlimits set, the base of every container's spec",
        ));
    }
    let carried_hosts = render::registries::containerd_hosts(
        &facts.docker.settings,
        &facts.docker.certs,
        &r.moved_mirrors,
        &r.moved_tls,
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
    settings.registries = hosts.iter().map(|h| h.host.to_string()).collect();
    if !r.moved_auths.is_empty() {
        files.push(kubelet_credentials(facts, &r.moved_auths, warnings)?);
    }
    limits_drop_in(facts, rv, &mut files, warnings);
    Ok(files)
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

/// CRI-O's drop-in, the registries drop-in; what CRI-O cannot take, said.
fn crio_files(
    facts: &Facts,
    rv: Version,
    settings: &mut Carried,
    warnings: &mut Vec<Finding>,
) -> Result<Vec<FileChange>, Failure> {
    let mut files = Vec::new();
    let docker_default = settings
        .workloads
        .default_handler
        .as_ref()
        .map(|s| s.value.clone());
    let node = super::crio_node::crio_node(facts, rv, docker_default.as_deref(), warnings);
    let cs = render::crio::Settings {
        cgroup_manager: settings.cgroup_driver.value.clone(),
        sandbox_image: settings.sandbox_image.as_ref().map(|s| s.value.clone()),
        cni_conf_dir: settings.cni_conf_dir.value.clone(),
        cni_bin_dirs: settings.cni_bin_dirs.value.clone(),
        root: settings.runtime_root.as_ref().map(|s| s.value.clone()),
        storage_driver: settings.snapshotter.as_ref().map(|s| s.value.clone()),
        handlers: settings.workloads.handlers.clone(),
        default_runtime: settings
            .workloads
            .default_handler
            .as_ref()
            .map(|s| s.value.clone()),
        default_ulimits: settings
            .workloads
            .ulimits
            .iter()
            .map(|u| u.to_flag())
            .collect(),
        selinux: settings.workloads.selinux.is_some(),
        conmon: node.conmon,
        pinns_path: node.pinns,
        oci_runtime: node.oci,
        cni_default_network: node.cni_default_network,
    };
    let why = match facts.crio_paths.from.as_slice() {
        [] => "CRI-O drop-in: cgroup manager, pause image, CNI directories".to_string(),
        from => format!(
            "CRI-O drop-in, in the directory its unit gives it ({}): cgroup manager, pause image, CNI directories",
            from.join(", ")
        ),
    };
    files.push(change(
        facts,
        (FileGroup::Runtime, Format::Toml),
        &facts.crio_paths.drop_in,
        render::crio::drop_in(&cs),
        &why,
    ));
    let carried_regs = render::registries::crio_registries(&facts.docker.settings);
    skipped_registries(&carried_regs.skipped, warnings);
    if let Some(text) = carried_regs.value {
        if facts.crio.registries_conf_v1 {
            warnings.push(Finding::warning(
                    "registries-conf-v1",
                    "/etc/containers/registries.conf uses the v1 format, which cannot be mixed with v2 drop-ins: Docker's mirrors and insecure registries are not carried over",
                    "convert registries.conf to the v2 format ([[registry]] tables) and run cri-migrate again",
                ));
        } else {
            files.push(change(
                facts,
                (FileGroup::Runtime, Format::Toml),
                REGISTRIES_DROP_IN,
                text,
                "registry mirrors and insecure registries from daemon.json",
            ));
            settings.registries = render::registries::registry_names(&facts.docker.settings);
        }
    }
    for c in facts
        .docker
        .certs
        .iter()
        .filter(|c| !c.ca.is_empty() || !c.client.is_empty())
    {
        warnings.push(Finding::warning(
            "certs-not-carried",
            format!(
                "certificates for {} in /etc/docker/certs.d are not carried over to CRI-O",
                c.host
            ),
            format!(
                "copy /etc/docker/certs.d/{}/ to /etc/containers/certs.d/{}/ (same file names)",
                c.host, c.host
            ),
        ));
    }
    if rv.at_least(1, 35) {
        for f in &facts.crio.insecure_registries_in {
            warnings.push(Finding::warning(
                "crio-insecure-registries",
                format!("{f} sets insecure_registries, which CRI-O {rv} ignores"),
                "list them in /etc/containers/registries.conf.d/ with insecure = true",
            ));
        }
    }
    Ok(files)
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

/// Registry settings that could not be carried: one warning each, naming the value (never a
/// credential) and why.
fn skipped_registries(skipped: &[String], warnings: &mut Vec<Finding>) {
    for why in skipped {
        warnings.push(Finding::warning(
            "registry-not-carried",
            why.clone(),
            "fix the value on the node (or leave it: the rest is carried), then run cri-migrate again",
        ));
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

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, opts};
    use super::super::versions::versions;
    use super::*;
    use crate::inspect::runtimes::{CONTAINERD_CONFIG, CRIO_DROP_IN};

    fn files_for(fixture: &str, target: Target) -> (Vec<FileChange>, Carried, Vec<Finding>) {
        let f = facts(fixture);
        let mut w = vec![];
        let o = opts(target);
        let v = versions(&f, &o, &mut w).unwrap();
        let mut c = super::super::settings::carried(&f, &o, target, &mut w);
        let files = runtime_files(&f, &v, target, &mut c, &mut w).unwrap();
        (files, c, w)
    }

    #[test]
    fn containerd_gets_its_config_and_a_hosts_file_per_registry() {
        let (files, c, _) = files_for("kubeadm-1.21-registries", Target::Containerd);
        let config = files.iter().find(|f| f.path == CONTAINERD_CONFIG).unwrap();
        assert!(
            config.new.contains("SystemdCgroup = true"),
            "{}",
            config.new
        );
        let hosts: Vec<&str> = files
            .iter()
            .filter(|f| f.path.ends_with("/hosts.toml"))
            .map(|f| f.path.as_str())
            .collect();
        assert!(!hosts.is_empty());
        assert_eq!(
            hosts.len(),
            c.registries.len(),
            "{hosts:?} {:?}",
            c.registries
        );
        // Nothing of CRI-O's.
        assert!(!files.iter().any(|f| f.path == CRIO_DROP_IN));
    }

    #[test]
    fn crio_gets_its_drop_in_and_nothing_of_containerd() {
        let (files, _, _) = files_for("kubelet-1.28-crio", Target::Crio);
        let drop_in = files.iter().find(|f| f.path == CRIO_DROP_IN).unwrap();
        assert!(drop_in.new.contains("cgroup_manager"), "{}", drop_in.new);
        assert!(!files.iter().any(|f| f.path == CONTAINERD_CONFIG));
    }

    #[test]
    fn dockers_proxy_goes_to_the_runtimes_unit() {
        let mut f = facts("kubeadm-1.20-docker");
        crate::secrets::register_proxy("http://robot:Pr0xyPw@proxy.example:3128");
        f.docker.settings.proxies = vec![
            (
                "HTTPS_PROXY".into(),
                "http://robot:Pr0xyPw@proxy.example:3128".into(),
                "/etc/systemd/system/docker.service.d/http-proxy.conf:2".into(),
            ),
            (
                "NO_PROXY".into(),
                "localhost,10.0.0.0/8,%h".into(),
                "/etc/systemd/system/docker.service.d/http-proxy.conf:3".into(),
            ),
        ];
        let mut w = vec![];
        let c = proxy_drop_in(&f, Target::Crio, &mut w).unwrap();
        assert_eq!(
            c.path,
            "/etc/systemd/system/crio.service.d/20-cri-migrate-proxy.conf"
        );
        assert!(c.unit_file && c.mode == 0o600, "{:o}", c.mode);
        assert!(c
            .new
            .contains("Environment=\"HTTPS_PROXY=http://robot:Pr0xyPw@proxy.example:3128\"\n"));
        // systemd expands % specifiers in Environment=: a literal % is doubled.
        assert!(c.new.contains("NO_PROXY=localhost,10.0.0.0/8,%%h"));
        assert!(w
            .iter()
            .any(|x| x.code == "proxy-carried" && !x.message.contains("Pr0xyPw")));
        assert!(!crate::secrets::redact(&c.new).contains("Pr0xyPw"));
        f.docker.settings.proxies.clear();
        assert!(proxy_drop_in(&f, Target::Containerd, &mut w).is_none());
    }

    #[test]
    fn a_node_without_cap_sys_resource_gets_restrict_oom_score_adj() {
        let mut f = facts("kubeadm-1.20-docker");
        let o = opts(Target::Containerd);
        let run = |f: &Facts| {
            let mut w = vec![];
            let v = versions(f, &o, &mut w).unwrap();
            let mut c = super::super::settings::carried(f, &o, Target::Containerd, &mut w);
            let files = runtime_files(f, &v, Target::Containerd, &mut c, &mut w).unwrap();
            let config = files
                .into_iter()
                .find(|x| x.path == CONTAINERD_CONFIG)
                .unwrap();
            (config.new, w)
        };
        f.cap_sys_resource = Some(false);
        let (text, w) = run(&f);
        assert!(text.contains("restrict_oom_score_adj = true"), "{text}");
        assert!(w.iter().any(|x| x.code == "nested-node"));
        // With the capability, or not known (offline), nothing is set.
        for known in [Some(true), None] {
            f.cap_sys_resource = known;
            assert!(!run(&f).0.contains("restrict_oom_score_adj"));
        }
    }

    #[test]
    fn what_containerds_imports_do_to_the_plan_is_said() {
        use crate::inspect::runtimes::Imported;
        let mut f = facts("kubeadm-1.23-nvidia-docker");
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        f.containerd_config.as_mut().unwrap().imported = vec![
            // nvidia-ctk 1.18's drop-in: the nvidia handler, defined there.
            Imported {
                path: "/etc/containerd/conf.d/99-nvidia.toml".into(),
                version: 3,
                values: vec![(
                    format!("{cri}.containerd.runtimes.nvidia.options.BinaryName"),
                    "\"/usr/bin/nvidia-container-runtime\"".into(),
                )],
                plugins: vec!["io.containerd.grpc.v1.cri".into()],
                handlers: vec!["nvidia".into()],
            },
            // An operator's drop-in with another cgroup driver.
            Imported {
                path: "/etc/containerd/conf.d/50-cgroup.toml".into(),
                version: 2,
                values: vec![(
                    format!("{cri}.containerd.runtimes.runc.options.SystemdCgroup"),
                    "false".into(),
                )],
                plugins: vec!["io.containerd.grpc.v1.cri".into()],
                handlers: vec![],
            },
        ];
        let (files, _, w) = {
            let mut w = vec![];
            let o = opts(Target::Containerd);
            let v = versions(&f, &o, &mut w).unwrap();
            let mut c = super::super::settings::carried(&f, &o, Target::Containerd, &mut w);
            let files = runtime_files(&f, &v, Target::Containerd, &mut c, &mut w).unwrap();
            (files, c, w)
        };
        let config = &files
            .iter()
            .find(|x| x.path == CONTAINERD_CONFIG)
            .unwrap()
            .new;
        // The handler the import defines is not written again; the default still names it.
        assert!(!config.contains("runtimes.nvidia]"), "{config}");
        assert!(config.contains("default_runtime_name = \"nvidia\""));
        let said = |code: &str| {
            w.iter()
                .filter(|x| x.code == code)
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(said("runtime-handler-imported").len(), 1);
        assert!(said("containerd-import-version")[0].contains("99-nvidia.toml is config version 3"));
        let overrides = said("containerd-import-overrides");
        assert_eq!(overrides.len(), 1, "{overrides:?}");
        assert!(
            overrides[0].contains("50-cgroup.toml sets")
                && overrides[0].contains("over the planned true")
        );
        // containerd 1.x takes an import's plugin table whole.
        assert_eq!(said("containerd-import-replaces").len(), 2);
    }
}
