//! Phase 6: what is said with the plan — the default sandbox image, inspection's risks, and
//! schema 1 images by the target.

use super::*;

pub(super) fn closing_warnings(
    facts: &Facts,
    v: &Versions,
    target: Target,
    settings: &Carried,
) -> Vec<Finding> {
    let mut warnings = Vec::new();
    let rv = v.rv;
    if settings.sandbox_image.is_none() {
        warnings.push(Finding::info(
            "sandbox-image-default",
            format!("no pause image was configured; {} uses its default ({})", target.name(), default_pause(target, rv)),
            "on a node that cannot reach registry.k8s.io, pass --sandbox-image with the mirror's pause image",
        ));
    }
    // Schema 1 matters by the target: said again here for it, in place of inspection's words.
    let by_target = crate::inspect::manifests::findings(
        &facts.docker_manifests,
        crate::runtime::registry::of(target).schema1_judged_by(rv),
    );
    warnings.extend(
        facts
            .risks
            .iter()
            .filter(|r| !crate::inspect::manifests::CODES.contains(&r.code))
            .cloned(),
    );
    warnings.extend(by_target);
    warnings
}

/// The pause image a runtime uses when none is configured (runtime-facts §1).
pub(super) fn default_pause(target: Target, rv: Version) -> String {
    crate::runtime::registry::of(target)
        .default_pause(rv)
        .to_string()
}

/// The handlers the runtime will have: those carried, and its own (its module says).
pub fn planned_handlers(facts: &Facts, plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .settings
        .workloads
        .handlers
        .iter()
        .map(|h| h.name.clone())
        .collect();
    out.extend(crate::runtime::registry::of(plan.target).planned_handlers(facts, plan));
    out.sort();
    out.dedup();
    out
}

/// The cluster's RuntimeClasses (name, handler) against the handlers planned: a class whose
/// handler the runtime will not have is a warning (its pods would not start on this node).
pub fn runtime_classes(classes: &[(String, String)], planned: &[String]) -> Vec<Finding> {
    classes
        .iter()
        .filter(|(_, h)| !planned.contains(h))
        .map(|(name, handler)| {
            Finding::warning(
                "runtimeclass-handler-missing",
                format!("RuntimeClass {name} names handler {handler}, which the runtime will not have on this node (it will have {}): its pods would not start here", planned.join(", ")),
                format!("define the {handler} handler in the runtime's config (or keep such pods off this node with the RuntimeClass's scheduling.nodeSelector)"),
            )
        })
        .collect()
}

/// The CNI plugins every pod-network pod needs, checked before anything is written: those the
/// CNI config file the runtime will load names (the first by name: the node's, or one the plan
/// writes, kubenet's) and `loopback`, which containerd and CRI-O run themselves. Every missing
/// one is named, and the plan refused: the runtime's check would fail on one of them (which one
/// varies with the order the runtime tries them) only after its files were written.
pub(super) fn cni_plugins(facts: &Facts, files: &[FileChange]) -> Result<(), Failure> {
    use crate::inspect::cni::{plugin_types_of, LOOPBACK, LOOPBACK_NEED};
    let dir = facts.cni.conf_dir.trim_end_matches('/');
    let is_conf =
        |n: &str| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json");
    let planned = files
        .iter()
        .filter_map(|f| {
            let (d, name) = f.path.rsplit_once('/')?;
            (d == dir && is_conf(name)).then_some((name, f.new.as_str()))
        })
        .min_by_key(|(n, _)| *n);
    let existing = facts.cni.conf_files.iter().min().map(String::as_str);
    let needed: Vec<(String, String)> = match (planned, existing) {
        (Some((name, text)), e) if e.map_or(true, |e| name <= e) => {
            let mut n: Vec<(String, String)> = plugin_types_of(text)
                .into_iter()
                .map(|t| (t, format!("{name}, which the plan writes")))
                .collect();
            if !n.iter().any(|(t, _)| t == LOOPBACK) {
                n.push((LOOPBACK.to_string(), LOOPBACK_NEED.to_string()));
            }
            n
        }
        (_, Some(_)) => facts.cni.needed.clone(),
        _ => return Ok(()),
    };
    let missing: Vec<String> = needed
        .iter()
        .filter(|(t, _)| !facts.cni.available.contains(t))
        .map(|(t, why)| format!("{t} ({why})"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure::preflight(
        format!(
            "the pod network needs CNI plugins that no plugin directory the runtime will use ({}) holds: {}; every pod would fail to start on the new runtime",
            facts.cni.bin_dirs.join(", "),
            missing.join(", ")
        ),
        "Install them into that directory (the CNI plugins package — containernetworking-plugins, kubernetes-cni — or the network add-on's own installer), or point the runtime at the directory that holds them.",
    ))
}

/// Issue 33 point 2: every file of the finished plan is one that what it is for reads — the
/// config file containerd's unit loads, a drop-in in the directory CRI-O's unit reads, a CNI
/// config in the directory the runtime reads, a kubelet flags file that kubelet.service loads.
/// Else the plan is refused naming the file: a setting written where nothing reads it is lost
/// at the cutover, when the kubelet or the runtime comes up without it.
pub(super) fn every_file_is_read(
    facts: &Facts,
    files: &[FileChange],
    settings: &Carried,
) -> Result<(), Failure> {
    let refuse = |path: &str, what: String, fix: &str| Err(Failure::bad_input(path, what, fix));
    // The plan itself put the file there: nothing on the node to fix.
    const BUG: &str =
        "This is a bug in cri-migrate: report it with the plan (--dry-run --output json).";
    let cni_dir = settings.cni_conf_dir.value.trim_end_matches('/');
    let kubelet_env_files: Vec<&str> = facts
        .kubelet
        .flag_files
        .iter()
        .filter(|f| f.kind == crate::flags::FileKind::EnvFile)
        .map(|f| f.path.as_str())
        .chain([crate::inspect::kubelet::KUBEADM_FLAGS])
        .chain(crate::inspect::kubelet::EXTRA_ARGS_FILES)
        .collect();
    for f in files {
        let path = f.path.as_str();
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if dir == "/etc/containerd"
            && name.ends_with(".toml")
            && path != facts.containerd_config_path.path
        {
            return refuse(
                path,
                format!(
                    "the plan writes {path}, but containerd loads {} ({})",
                    facts.containerd_config_path.path,
                    facts
                        .containerd_config_path
                        .from
                        .as_deref()
                        .unwrap_or("its default")
                ),
                BUG,
            );
        }
        if path.starts_with("/etc/crio/")
            && name.ends_with(".conf")
            && dir != facts.crio_paths.conf_dir.trim_end_matches('/')
            && path != facts.crio_paths.conf
        {
            return refuse(
                path,
                format!(
                    "the plan writes {path}, but CRI-O reads {} and the drop-ins in {}",
                    facts.crio_paths.conf, facts.crio_paths.conf_dir
                ),
                BUG,
            );
        }
        if (name.ends_with(".conflist") || (dir.contains("/cni/") && name.ends_with(".conf")))
            && dir != cni_dir
        {
            return refuse(
                path,
                format!("the plan writes the CNI config {path}, but the runtime reads its CNI configs from {cni_dir}"),
                BUG,
            );
        }
        if let Some(kc) = &facts.kubelet_command {
            if kubelet_env_files.contains(&path) && !kc.env_files.iter().any(|e| e == path) {
                return refuse(
                    path,
                    format!("the plan writes the kubelet's flags to {path}, but kubelet.service ({}) loads no such file (no EnvironmentFile= for it): the kubelet would start without them", kc.unit.as_deref().unwrap_or("its unit")),
                    "Make kubelet.service read the file (EnvironmentFile=-PATH in a drop-in, and its variable in ExecStart=), or move the kubelet's flags where the unit reads them, then run cri-migrate again.",
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, opts};
    use super::super::versions::versions;
    use super::*;

    #[test]
    fn a_default_pause_image_is_said_and_inspections_risks_carried() {
        let f = facts("kubelet-1.27-cri-dockerd");
        let o = opts(Target::Containerd);
        let mut w = vec![];
        let v = versions(&f, &o).unwrap().said_to(&mut w);
        let mut c = super::super::settings::carried(&f, &o, Target::Containerd).said_to(&mut w);
        c.sandbox_image = None;
        let mut said = vec![];
        said.extend(closing_warnings(&f, &v, Target::Containerd, &c));
        let pause = said
            .iter()
            .find(|f| f.code == "sandbox-image-default")
            .unwrap();
        assert!(pause
            .message
            .contains(&default_pause(Target::Containerd, v.rv)));
        for r in &f.risks {
            assert!(
                said.iter().any(|s| s.code == r.code),
                "{} not carried",
                r.code
            );
        }
        assert_eq!(
            default_pause(Target::Containerd, Version::new(2, 1, 4)),
            "registry.k8s.io/pause:3.10"
        );
    }

    #[test]
    fn runtime_classes_are_checked_against_the_planned_handlers() {
        let f = super::super::test_facts::facts_with("kubeadm-1.23-nvidia-docker", None);
        let p = crate::plan::plan(&f, &opts(Target::Containerd)).unwrap();
        let planned = planned_handlers(&f, &p);
        assert_eq!(planned, ["nvidia", "runc"]);
        let classes = [
            ("nvidia".to_string(), "nvidia".to_string()),
            ("kata".to_string(), "kata-qemu".to_string()),
        ];
        let w = runtime_classes(&classes, &planned);
        assert_eq!(w.len(), 1);
        assert!(w[0]
            .message
            .contains("RuntimeClass kata names handler kata-qemu"));
    }
}
