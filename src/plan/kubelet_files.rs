//! Phase 4: the kubelet's side — crictl's endpoints, the kubelet's flags where they live (the
//! unit model's sources), its unit's dependencies on Docker, its config file, kubeadm's record
//! of the CRI socket.

use super::*;

/// What the kubelet moves to: its version's rules, the runtime, its socket and pause image.
pub(super) struct KubeletMove<'a> {
    pub kv: Version,
    pub target: Target,
    pub endpoint: &'a str,
    pub pause: Option<&'a str>,
}

/// crictl.yaml, the kubelet's flags and config, and kubeadm's instance config, for the new
/// endpoint.
pub(super) fn kubelet_files(
    facts: &Facts,
    to: &KubeletMove,
) -> Result<Said<Vec<FileChange>>, Failure> {
    let mut warnings = Vec::new();
    let endpoint = to.endpoint;
    let mut files = Vec::new();
    // crictl talks to the new runtime.
    let crictl = match facts.files.get(CRICTL_YAML) {
        Some(old) => ["runtime-endpoint", "image-endpoint"]
            .iter()
            .try_fold(old.content.clone(), |text, key| {
                render::yaml::set_top_level(&text, key, endpoint)
            })
            .map_err(|e| {
                Failure::bad_input(
                    CRICTL_YAML,
                    e,
                    "Fix the YAML, or move the file aside so that cri-migrate writes a new one.",
                )
            })?,
        None => render::template("crictl.yaml", serde_json::json!({ "endpoint": endpoint })),
    };
    files.push(change(
        facts,
        (FileGroup::Kubelet, Format::Yaml),
        CRICTL_YAML,
        crictl,
        "crictl talks to the new runtime",
    ));

    files.extend(flags_and_config(facts, to, &mut warnings)?);
    // kubeadm's record of the node's CRI socket, where kubeadm keeps it in a file (1.34+).
    if let Some(old) = facts.files.get(INSTANCE_CONFIG) {
        let new = render::yaml::set_top_level(&old.content, "containerRuntimeEndpoint", endpoint)
            .map_err(|e| {
            Failure::bad_input(
                INSTANCE_CONFIG,
                e,
                "Fix the file, or restore it with `kubeadm upgrade node`.",
            )
        })?;
        files.push(change(
            facts,
            (FileGroup::Kubelet, Format::Yaml),
            INSTANCE_CONFIG,
            new,
            "kubeadm's record of the node's CRI socket",
        ));
    }
    Ok(Said {
        value: files,
        warnings,
    })
}

/// Where the kubelet's runtime flags go: kubeadm's variable where the unit expands it, else
/// where the runtime flags are now, else the distribution's `KUBELET_EXTRA_ARGS`, else the
/// variable that holds the kubelet's own `--kubeconfig`/`--config` (Kubespray's
/// `KUBELET_ARGS`), else the `ExecStart=` line itself. `(file, variable)`; the variable is
/// [`EXEC_START`] for the line.
pub fn runtime_flags_owner(k: &crate::inspect::kubelet::Kubelet) -> Option<(String, String)> {
    let expanded = |var: &str| k.exec_start.is_none() || k.exec_vars.iter().any(|v| v == var);
    let file_of = |var: &str| {
        k.flag_files
            .iter()
            .find(|f| f.vars.iter().any(|v| v == var))
            .map(|f| (f.path.clone(), var.to_string()))
    };
    let kubeadm = k
        .flag_files
        .iter()
        .find(|f| f.path == KUBEADM_FLAGS)
        .filter(|_| expanded("KUBELET_KUBEADM_ARGS"))
        .map(|f| (f.path.clone(), "KUBELET_KUBEADM_ARGS".to_string()));
    let where_flag = |names: &[&str]| {
        k.flags
            .iter()
            .rev()
            .find(|f| names.contains(&f.name.as_str()))
            .map(|f| (f.file.clone(), f.var.clone()))
    };
    let extra = || match k.exec_start {
        // Without a unit, kubeadm's drop-in is assumed: it reads these files.
        None => k
            .flag_files
            .iter()
            .find(|f| EXTRA_ARGS_FILES.contains(&f.path.as_str()))
            .map(|f| (f.path.clone(), "KUBELET_EXTRA_ARGS".to_string())),
        Some(_) => file_of("KUBELET_EXTRA_ARGS"),
    };
    kubeadm
        .or_else(|| where_flag(&["container-runtime-endpoint", "container-runtime"]))
        .or_else(extra)
        .or_else(|| where_flag(&["kubeconfig", "config", "bootstrap-kubeconfig"]))
        .or_else(|| {
            k.exec_start
                .as_ref()
                .map(|o| (o.file.clone(), EXEC_START.to_string()))
        })
}

/// A unit file systemd's packages own (under /usr or /lib): edited through a drop-in in
/// /etc/systemd/system, never in place (systemd.unit(5): "the files in /usr ... are owned by
/// the package").
fn vendor_unit_file(path: &str) -> bool {
    [
        "/usr/lib/systemd/",
        "/lib/systemd/",
        "/usr/local/lib/systemd/",
    ]
    .iter()
    .any(|d| path.starts_with(d))
}

/// The drop-in that carries a package's kubelet unit file's changed flags (`old` → `new`):
/// the variables its `Environment=` lines changed, and its `ExecStart=` (reset first, as
/// systemd.service(5) asks of a drop-in that replaces the command).
fn override_drop_in(
    facts: &Facts,
    path: &str,
    old: &str,
    new: &str,
) -> Result<FileChange, Failure> {
    let bad = |e: String| {
        Failure::bad_input(
            path,
            e,
            "Fix the unit file's Environment= and ExecStart= lines.",
        )
    };
    let vars = |text: &str| {
        VarsFile::parse(FileKind::DropIn, text)
            .map(|f| f.vars())
            .map_err(bad)
    };
    let (before, after) = (vars(old)?, vars(new)?);
    let mut body = String::new();
    for (k, v) in &after {
        if !before.iter().any(|(bk, bv)| bk == k && bv == v) {
            let word = format!("{k}={v}")
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            body.push_str(&format!("Environment=\"{word}\"\n"));
        }
    }
    if let Some(exec) = facts.kubelet.exec_start.as_ref().filter(|o| o.file == path) {
        let value = |text: &str| crate::unit::exec_start_value(text, exec.line).map_err(bad);
        let (was, now) = (value(old)?, value(new)?);
        if was != now {
            body.push_str(&format!("ExecStart=\nExecStart={now}\n"));
        }
    }
    // Last among the unit's drop-ins, so that its settings win.
    let names: Vec<String> = facts
        .kubelet_command
        .iter()
        .flat_map(|c| c.dropins.iter())
        .filter_map(|d| d.rsplit('/').next().map(str::to_string))
        .collect();
    let mut name = String::from("99-cri-migrate.conf");
    // A `z` more each round: after a name's length in `z`s, ours sorts after it.
    while names
        .iter()
        .any(|n| *n > name && !n.ends_with("cri-migrate.conf"))
    {
        name.insert(0, 'z');
    }
    let target = format!("/etc/systemd/system/kubelet.service.d/{name}");
    let text = format!("# Written by cri-migrate: the kubelet's flags for its new runtime, over {path}\n# (a package's file, left as it is). The rollback removes this file.\n[Service]\n{body}");
    Ok(change(
        facts,
        (FileGroup::Kubelet, Format::Unit),
        &target,
        text,
        "kubelet flags",
    ))
}

/// The kubelet's flags files and config.yaml, rewritten for its version.
fn flags_and_config(
    facts: &Facts,
    to: &KubeletMove,
    warnings: &mut Vec<Finding>,
) -> Result<Vec<FileChange>, Failure> {
    let k = &facts.kubelet;
    let kv = to.kv;
    let rotation = log_rotation(facts, warnings);
    let rules = rules(facts, to, rotation.as_ref());
    let needs_flag = rules.runtime_remote_flag || !rules.endpoint_in_config;
    let owner = runtime_flags_owner(k).filter(|_| needs_flag);
    if needs_flag && owner.is_none() {
        return Err(Failure::preflight(
            format!("kubelet {kv} takes its runtime endpoint as a flag, but the node has no kubelet unit and no kubelet flags file ({KUBEADM_FLAGS}, {})", EXTRA_ARGS_FILES.join(", ")),
            "Create /etc/default/kubelet (or /etc/sysconfig/kubelet) with KUBELET_EXTRA_ARGS=\"\" and make the kubelet unit read it with EnvironmentFile=, then run cri-migrate again.",
        ));
    }
    // Each file's new text, edit after edit (a unit file may hold both an Environment= of
    // flags and the ExecStart= line), in the order first met.
    let mut edited: Vec<Edited> = Vec::new();
    rewrite_flags(facts, owner.as_ref(), &rules, &mut edited)?;
    let (unit_files, deps_changed) = follow_the_runtime(facts, to.target, &mut edited);
    let mut out = edited_files(facts, edited, &deps_changed, &unit_files, warnings)?;
    out.extend(config_files(facts, &rules, rotation)?);
    Ok(out)
}

/// A file being edited: its path, its new text, the flags taken out of it.
type Edited = (String, String, Vec<String>);

/// How the kubelet of this version is told its runtime, its pause image and (without a config
/// file) Docker's log rotation.
fn rules(facts: &Facts, to: &KubeletMove, rotation: Option<&Rotation>) -> Rules {
    Rules {
        pause: to.pause.map(str::to_string),
        extra_flags: rotation
            .filter(|r| r.as_flags)
            .map(|r| {
                let mut f = vec![];
                if let Some(s) = &r.size {
                    f.push(("container-log-max-size".to_string(), s.clone()));
                }
                if let Some(n) = r.files {
                    f.push(("container-log-max-files".to_string(), n.to_string()));
                }
                f
            })
            .unwrap_or_default(),
        ..Rules::for_version(to.kv, to.endpoint, facts.kubelet.config.exists)
    }
}

/// Every file that holds the kubelet's flags (and the unit's ExecStart= where the runtime's
/// flags go there), rewritten by the rules; `owner` is the file and variable that takes the
/// runtime's flags.
fn rewrite_flags(
    facts: &Facts,
    owner: Option<&(String, String)>,
    rules: &Rules,
    edited: &mut Vec<Edited>,
) -> Result<(), Failure> {
    let k = &facts.kubelet;
    let mut sources: Vec<(String, FileKind, Vec<String>)> = k
        .flag_files
        .iter()
        .map(|f| (f.path.clone(), f.kind, f.vars.clone()))
        .collect();
    if let (Some((file, var)), Some(_)) = (owner, &k.exec_start) {
        if var == EXEC_START && !sources.iter().any(|s| s.1 == FileKind::ExecStart) {
            sources.push((file.clone(), FileKind::ExecStart, vec![EXEC_START.into()]));
        }
    }
    for (path, kind, vars) in &sources {
        let at = slot(edited, facts, path);
        let text = &edited[at].1;
        let owner_var = owner.filter(|(p, _)| p == path).map(|(_, v)| v.as_str());
        let (new, removed) = match kind {
            FileKind::ExecStart => {
                let line = k.exec_start.as_ref().map(|o| o.line).unwrap_or(0);
                render::kubelet::rewrite_exec_start(
                    text,
                    line,
                    owner_var == Some(EXEC_START),
                    rules,
                )
            }
            _ => render::kubelet::rewrite_flags_file(
                *kind,
                text,
                vars,
                owner_var.filter(|v| *v != EXEC_START),
                rules,
            ),
        }
        .map_err(|e| Failure::bad_input(path, e, "Fix the kubelet's flags."))?;
        edited[at].1 = new;
        edited[at].2.extend(removed);
    }
    Ok(())
}

/// The unit's dependencies on Docker's units follow the runtime: a kubelet that Requires=
/// docker.service would start Docker again, and be stopped with it. The unit's files, and each
/// changed one with what it says.
fn follow_the_runtime(
    facts: &Facts,
    target: Target,
    edited: &mut Vec<Edited>,
) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let unit_files: Vec<String> = facts
        .kubelet_command
        .iter()
        .flat_map(|c| c.unit.iter().chain(&c.dropins))
        .cloned()
        .collect();
    let mut deps_changed: Vec<(String, Vec<String>)> = Vec::new();
    for path in &unit_files {
        if !facts.files.contains_key(path) {
            continue;
        }
        let at = slot(edited, facts, path);
        let (new, said) = crate::unit::replace_dependencies(
            &edited[at].1,
            &crate::runtime::DOCKER_UNITS,
            target.unit(),
        );
        if !said.is_empty() {
            edited[at].1 = new;
            deps_changed.push((path.clone(), said));
        }
    }
    (unit_files, deps_changed)
}

/// The flags files as edited: each written where it is, a package's unit file overridden (a
/// drop-in, or a whole copy where its dependencies change), each said.
fn edited_files(
    facts: &Facts,
    edited: Vec<(String, String, Vec<String>)>,
    deps_changed: &[(String, Vec<String>)],
    unit_files: &[String],
    warnings: &mut Vec<Finding>,
) -> Result<Vec<FileChange>, Failure> {
    let mut out = Vec::new();
    for (path, new, removed) in edited {
        let Some(old) = facts.files.get(&path) else {
            continue;
        };
        if new == old.content {
            continue;
        }
        let deps = deps_changed
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| s);
        let mut why = String::from(if removed.is_empty() && deps.is_none() {
            "kubelet flags for its version"
        } else {
            "kubelet"
        });
        if !removed.is_empty() {
            why.push_str(&format!(
                " flags for its version; removes {}",
                removed.join(" ")
            ));
        }
        if let Some(deps) = deps {
            why.push_str(&format!("; {}", deps.join(", ")));
        }
        if vendor_unit_file(&path) && deps.is_some() {
            // systemd.unit(5): dependencies cannot be reset by a drop-in; the whole file is
            // overridden by a copy in /etc/systemd/system (a drop-in by one of the same name).
            let name = path.rsplit('/').next().unwrap_or_default();
            let copy = match path.rsplit_once("/kubelet.service.d/") {
                Some(_) => format!("/etc/systemd/system/kubelet.service.d/{name}"),
                None => format!("/etc/systemd/system/{name}"),
            };
            warnings.push(Finding::info(
                "kubelet-unit-overridden",
                format!("{path} belongs to a package and its dependencies on Docker change, which only a whole copy can do: {copy} overrides it"),
                format!("after a package upgrade of the kubelet, compare {copy} with {path}"),
            ));
            let mut c = change(
                facts,
                (FileGroup::Kubelet, Format::Unit),
                &copy,
                new,
                &format!("{why} (a copy of {path})"),
            );
            c.mode = old.mode;
            out.push(c);
            continue;
        }
        if vendor_unit_file(&path) {
            let drop_in = override_drop_in(facts, &path, &old.content, &new)?;
            warnings.push(Finding::info(
                "kubelet-unit-overridden",
                format!("{path} belongs to a package: its changed kubelet flags go to {} (a package upgrade keeps them)", drop_in.path),
                "systemd reloads its units",
            ));
            out.push(FileChange {
                why: format!("{why} (overrides {path})"),
                ..drop_in
            });
            continue;
        }
        // A unit file or drop-in of the kubelet's (its flags on `ExecStart=` or in
        // `Environment=`), else an environment file it loads.
        let unit = unit_files.contains(&path)
            || facts
                .kubelet
                .flag_files
                .iter()
                .any(|f| f.path == path && f.kind != crate::flags::FileKind::EnvFile);
        let format = if unit { Format::Unit } else { Format::EnvFile };
        if unit {
            warnings.push(Finding::info(
                "kubelet-drop-in-edited",
                format!(
                    "{path}, a unit file of the kubelet, is edited: {}",
                    why.trim_start_matches("kubelet; ")
                ),
                "systemd reloads its units",
            ));
        }
        out.push(change(
            facts,
            (FileGroup::Kubelet, format),
            &path,
            new,
            &why,
        ));
    }
    Ok(out)
}

/// The kubelet's config files, edit after edit: the endpoint, then Docker's log rotation.
fn config_files(
    facts: &Facts,
    rules: &Rules,
    rotation: Option<Rotation>,
) -> Result<Vec<FileChange>, Failure> {
    let k = &facts.kubelet;
    let mut out = Vec::new();
    let mut configs: Vec<(String, String, Vec<&str>)> = Vec::new();
    let mut edit_config = |path: &str,
                           why: &'static str,
                           f: &dyn Fn(&str) -> Result<String, String>|
     -> Result<(), Failure> {
        let at = slot(&mut configs, facts, path);
        let new = f(&configs[at].1)
            .map_err(|e| Failure::bad_input(path, e, "Fix the KubeletConfiguration file."))?;
        if new != configs[at].1 {
            configs[at].1 = new;
            configs[at].2.push(why);
        }
        Ok(())
    };
    if rules.endpoint_in_config {
        // Where the endpoint in force is set: a --config-dir drop-in wins over the file.
        let path = k
            .config
            .endpoint_file
            .clone()
            .unwrap_or(k.config.path.clone());
        edit_config(
            &path,
            "containerRuntimeEndpoint (a KubeletConfiguration field from 1.27)",
            &|t| render::kubelet::rewrite_config(t, rules),
        )?;
    }
    if let Some(r) = rotation.filter(|r| !r.as_flags) {
        let json = render::kubelet::is_json;
        edit_config(
            &k.config.path,
            "Docker's log rotation (containerLogMaxSize, containerLogMaxFiles)",
            &|t| {
                let t = match &r.size {
                    Some(s) if json(t) => {
                        render::kubelet::set_json_top_level(t, "containerLogMaxSize", s)?
                    }
                    Some(s) => render::yaml::set_top_level(t, "containerLogMaxSize", s)?,
                    None => t.to_string(),
                };
                match r.files {
                    Some(n) if json(&t) => {
                        render::kubelet::set_json_value(&t, "containerLogMaxFiles", &n.into())
                    }
                    Some(n) => render::yaml::set_top_level_int(&t, "containerLogMaxFiles", n),
                    None => Ok(t),
                }
            },
        )?;
    }
    for (path, new, why) in configs {
        if why.is_empty() {
            continue;
        }
        out.push(change(
            facts,
            (FileGroup::Kubelet, Format::Yaml),
            &path,
            new,
            &why.join("; "),
        ));
    }
    Ok(out)
}

/// The place of a file in a list of (path, text so far, what changed it), its text as found
/// when it is new to the list: edits to one file go one after the other.
fn slot<W>(list: &mut Vec<(String, String, Vec<W>)>, facts: &Facts, path: &str) -> usize {
    match list.iter().position(|e| e.0 == path) {
        Some(at) => at,
        None => {
            let old = facts
                .files
                .get(path)
                .map(|s| s.content.clone())
                .unwrap_or_default();
            list.push((path.to_string(), old, vec![]));
            list.len() - 1
        }
    }
}

/// Docker's log rotation, as the kubelet's (which rotates the CRI logs the new runtime writes).
struct Rotation {
    size: Option<String>,
    files: Option<u64>,
    /// The kubelet has no config file: the rotation goes to its flags.
    as_flags: bool,
}

/// Docker's log rotation as the kubelet can take it: its driver, its max-size as Docker wrote
/// it and as a Kubernetes quantity, and how many files (at least the kubelet's 2); none, said,
/// where Docker did not rotate or its driver kept no files.
struct DockersRotation {
    driver: String,
    size: String,
    quantity: String,
    n: u64,
}

fn dockers_rotation(facts: &Facts, warnings: &mut Vec<Finding>) -> Option<DockersRotation> {
    if !facts.current_runtime.kind.is_docker() {
        return None;
    }
    let d = &facts.docker.settings;
    let driver = d.log_driver.as_deref().unwrap_or("json-file");
    let (size, files) = match driver {
        "json-file" => (
            d.log_opts.get("max-size").cloned(),
            d.log_opts.get("max-file").cloned(),
        ),
        // The local driver's defaults: 20m × 5.
        "local" => {
            let opt = |k: &str, default: &str| d.log_opts.get(k).cloned().or(Some(default.into()));
            (opt("max-size", "20m"), opt("max-file", "5"))
        }
        other => {
            warnings.push(Finding::warning(
                "docker-log-driver",
                format!("Docker sent container logs to its {other} driver; on the new runtime they are files under /var/log/pods, which the kubelet rotates (containerLogMaxSize, containerLogMaxFiles; 10Mi and 5 by default)"),
                format!("point the node's log collection at /var/log/pods (CRI format) instead of {other}"),
            ));
            return None;
        }
    };
    let Some(size) = size else {
        warnings.push(Finding::info(
            "docker-logs-unrotated",
            format!("Docker's {driver} logs were not rotated (no max-size); the kubelet rotates CRI logs at its containerLogMaxSize (10Mi by default), keeping containerLogMaxFiles (5)"),
            "set containerLogMaxSize and containerLogMaxFiles in the kubelet's config if the workloads need more",
        ));
        return None;
    };
    let Some(quantity) = kube_quantity(&size) else {
        warnings.push(Finding::warning(
            "docker-log-size",
            format!("Docker's log max-size {size:?} is not a size cri-migrate can carry"),
            "set containerLogMaxSize in the kubelet's config by hand",
        ));
        return None;
    };
    let mut n = files.and_then(|f| f.parse::<u64>().ok()).unwrap_or(1);
    if n < 2 {
        warnings.push(Finding::info(
            "container-log-max-files",
            format!("Docker kept {n} log file per container; the kubelet keeps at least 2: containerLogMaxFiles is 2"),
            "nothing to do",
        ));
        n = 2;
    }
    Some(DockersRotation {
        driver: driver.to_string(),
        size,
        quantity,
        n,
    })
}

/// What of Docker's log settings the kubelet's config takes: its `json-file` or `local`
/// driver's `max-size` and `max-file` (the `local` driver's defaults 20m and 5 included), in
/// Kubernetes units (`100m` → `100Mi`), at least 2 files (the kubelet's minimum). Where the
/// kubelet's config sets them already, or has no file, or Docker did not rotate, said.
fn log_rotation(facts: &Facts, warnings: &mut Vec<Finding>) -> Option<Rotation> {
    let DockersRotation {
        driver,
        size,
        quantity,
        n,
    } = dockers_rotation(facts, warnings)?;
    let k = &facts.kubelet.config;
    if !k.exists {
        // No config file: the kubelet's flags (deprecated for the config file, still read).
        let own = |f: &str| facts.kubelet.flag(f).and_then(|x| x.value.clone());
        if let Some(set) = own("container-log-max-size").or_else(|| own("container-log-max-files"))
        {
            warnings.push(Finding::info(
                "docker-log-rotation",
                format!("Docker rotated container logs at {size} × {n}; the kubelet's own --container-log-max-* flags ({set}) now apply"),
                "nothing to do if the kubelet's values are the ones wanted",
            ));
            return None;
        }
        warnings.push(Finding::info(
            "docker-log-rotation",
            format!("Docker's log rotation ({driver}, max-size {size}, max-file {n}) goes to the kubelet's flags (it has no config file): --container-log-max-size={quantity} --container-log-max-files={n}"),
            "nothing to do",
        ));
        return Some(Rotation {
            size: Some(quantity),
            files: Some(n),
            as_flags: true,
        });
    }
    if k.container_log_max_size.is_some() || k.container_log_max_files.is_some() {
        // The config file, or the drop-in of --config-dir that sets them.
        let file = match k.container_log_max_size {
            Some(_) => k.file_of("containerLogMaxSize"),
            None => k.file_of("containerLogMaxFiles"),
        };
        warnings.push(Finding::info(
            "docker-log-rotation",
            format!(
                "Docker rotated container logs at {size} × {n}; the kubelet's {} sets its own (containerLogMaxSize {}, containerLogMaxFiles {}), which now applies",
                file,
                k.container_log_max_size.as_deref().unwrap_or("10Mi (default)"),
                k.container_log_max_files.map(|f| f.to_string()).unwrap_or_else(|| "5 (default)".into())
            ),
            "nothing to do if the kubelet's values are the ones wanted",
        ));
        return None;
    }
    warnings.push(Finding::info(
        "docker-log-rotation",
        format!("Docker's log rotation ({driver}, max-size {size}, max-file {n}) goes to the kubelet's {}: containerLogMaxSize {quantity}, containerLogMaxFiles {n}", k.path),
        "nothing to do",
    ));
    Some(Rotation {
        size: Some(quantity),
        files: Some(n),
        as_flags: false,
    })
}

/// Docker's size (go-units: `100m`, `1g`, `500k`, bytes; binary multiples) as a Kubernetes
/// quantity (`100Mi`).
fn kube_quantity(size: &str) -> Option<String> {
    let s = size.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: u64 = num.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        "" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        "t" => "Ti",
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::facts_with;
    use super::*;

    /// `text` holds `part`.
    fn has(text: &str, part: &str) {
        assert!(text.contains(part), "{part:?} is not in:\n{text}");
    }

    /// The file written at `path`, which the test expects (`what`).
    fn written<'a>(files: &'a [FileChange], path: &str, what: &str) -> &'a FileChange {
        files.iter().find(|c| c.path == path).expect(what)
    }

    #[test]
    fn the_runtime_flags_go_where_each_layout_keeps_its_flags() {
        let owner =
            |fixture: &str, v: &str| runtime_flags_owner(&facts_with(fixture, Some(v)).kubelet);
        assert_eq!(
            owner("kubeadm-1.20-docker", "1.20.15"),
            Some((KUBEADM_FLAGS.into(), "KUBELET_KUBEADM_ARGS".into()))
        );
        assert_eq!(
            owner("kubespray-2.17-docker", "1.21.5"),
            Some(("/etc/kubernetes/kubelet.env".into(), "KUBELET_ARGS".into()))
        );
        assert_eq!(
            owner("eks-al2-1.22-docker", "1.22.17"),
            Some((
                "/etc/systemd/system/kubelet.service".into(),
                EXEC_START.into()
            ))
        );
    }

    /// The kubelet's side of a move to containerd, and what was said.
    fn side(f: &Facts) -> (Vec<FileChange>, Vec<Finding>) {
        let mut w = vec![];
        let kv = f.kubelet.installed.version.unwrap();
        (
            kubelet_files(
                f,
                &KubeletMove {
                    kv,
                    target: Target::Containerd,
                    endpoint: Target::Containerd.endpoint(),
                    pause: None,
                },
            )
            .unwrap()
            .said_to(&mut w),
            w,
        )
    }

    #[test]
    fn a_packages_unit_is_overridden_never_edited() {
        let f = facts_with("vendor-unit-1.24-cri-dockerd", None);
        let (files, w) = side(&f);
        assert!(
            !files.iter().any(|c| c.path.starts_with("/usr/lib/")),
            "{files:?}"
        );
        // Its dependencies on cri-dockerd change: a whole copy in /etc, said.
        let copy = written(
            &files,
            "/etc/systemd/system/kubelet.service",
            "a copy of the unit",
        );
        assert!(copy.old.is_none() && copy.unit_file);
        assert!(copy
            .new
            .contains("After=network-online.target containerd.service"));
        assert!(copy
            .new
            .contains("--container-runtime-endpoint=unix:///run/containerd/containerd.sock"));
        assert!(!copy.new.contains("--network-plugin"));
        assert!(w.iter().any(|f| f.code == "kubelet-unit-overridden"));
        assert!(files.iter().any(|c| c.path == CRICTL_YAML));
    }

    #[test]
    fn flags_only_over_a_package_unit_go_to_a_drop_in_sorted_last() {
        // The package's unit without dependencies on Docker: only its flags change.
        let mut f = facts_with("vendor-unit-1.24-cri-dockerd", None);
        let unit = "/usr/lib/systemd/system/kubelet.service";
        let snap = f.files.get_mut(unit).unwrap();
        snap.content = snap.content.replace(" cri-docker.service", "");
        let (files, _) = side(&f);
        let d = written(
            &files,
            "/etc/systemd/system/kubelet.service.d/99-cri-migrate.conf",
            "an override drop-in",
        );
        has(&d.new, "\nExecStart=\nExecStart=/usr/bin/kubelet ");
        has(&d.new, "Environment=\"KUBELET_NETWORK_ARGS=\"");
        assert!(!files
            .iter()
            .any(|c| c.path == "/etc/systemd/system/kubelet.service"));
    }

    #[test]
    fn dockers_log_rotation_goes_to_the_kubelets_config() {
        assert_eq!(kube_quantity("100m").as_deref(), Some("100Mi"));
        assert_eq!(kube_quantity("1G").as_deref(), Some("1Gi"));
        assert_eq!(kube_quantity("500kb").as_deref(), Some("500Ki"));
        assert_eq!(kube_quantity("1048576").as_deref(), Some("1048576"));
        assert_eq!(kube_quantity("ten"), None);
        // kubeadm 1.20 on json-file with max-size 100m and no max-file (Docker keeps 1).
        let f = facts_with("kubeadm-1.20-docker", None);
        let (files, w) = side(&f);
        let config = written(
            &files,
            "/var/lib/kubelet/config.yaml",
            "the kubelet's config edited",
        );
        has(
            &config.new,
            "containerLogMaxSize: 100Mi\ncontainerLogMaxFiles: 2\n",
        );
        assert!(w.iter().any(|x| x.code == "container-log-max-files"));
        // The EKS AMI's JSON config: max-size 10m, max-file 10, as JSON numbers and strings.
        let f = facts_with("eks-al2-1.22-docker", Some("1.22.17"));
        let (files, _) = side(&f);
        let c = files
            .iter()
            .find(|c| c.path.ends_with("kubelet-config.json"))
            .expect("the JSON config edited");
        let v: serde_json::Value = serde_json::from_str(&c.new).unwrap();
        assert_eq!(
            (
                v["containerLogMaxSize"].as_str(),
                v["containerLogMaxFiles"].as_u64()
            ),
            (Some("10Mi"), Some(10))
        );
        // Kubespray's config sets its own: kept, said.
        let f = facts_with("kubespray-2.17-docker", Some("1.21.5"));
        let (files, w) = side(&f);
        assert!(!files
            .iter()
            .any(|c| c.path.ends_with("kubelet-config.yaml")));
        assert!(w
            .iter()
            .any(|x| x.code == "docker-log-rotation" && x.message.contains("which now applies")));
        // Set by a drop-in of --config-dir: kept, and the drop-in named.
        let mut f = facts_with("kubeadm-1.20-docker", None);
        let dropin = "/etc/kubernetes/kubelet.conf.d/30-logs.conf";
        f.kubelet.config.container_log_max_files = Some(3);
        f.kubelet
            .config
            .set_in
            .insert("containerLogMaxFiles".into(), dropin.into());
        let (files, w) = side(&f);
        assert!(!files.iter().any(|c| c.new.contains("containerLogMaxSize")));
        let said = w.iter().find(|x| x.code == "docker-log-rotation").unwrap();
        has(
            &said.message,
            &format!("the kubelet's {dropin} sets its own"),
        );
    }

    #[test]
    fn without_a_config_file_the_rotation_goes_to_the_kubelets_flags() {
        let mut f = facts_with("kubeadm-1.20-docker", None);
        f.kubelet.config.exists = false;
        f.files.remove("/var/lib/kubelet/config.yaml");
        let (files, w) = side(&f);
        let flags = written(&files, KUBEADM_FLAGS, "the flags file edited");
        has(&flags.new, "--container-log-max-size=100Mi");
        has(&flags.new, "--container-log-max-files=2");
        assert!(w.iter().any(|x| x.code == "docker-log-rotation"
            && x.message.contains("goes to the kubelet's flags")));
        assert!(!files
            .iter()
            .any(|c| c.path == "/var/lib/kubelet/config.yaml"));
    }
}
