//! Phase 2: the settings carried over, each with where its value came from (the kubelet's flags
//! and config, daemon.json and dockerd, the runtime's own config, the node's CNI).

use super::*;
use crate::runtime::target::{Storage, TargetRuntime};

pub(super) fn carried(facts: &Facts, opts: &PlanOptions, target: Target) -> Said<Carried> {
    let mut warnings = Vec::new();
    let runtime = crate::runtime::registry::of(target);
    // In this order: each may say something, and the plan says it in the order it was found.
    let runtime_root = runtime_root(facts, runtime, &mut warnings);
    let snapshotter = snapshotter(facts, runtime, &mut warnings);
    let max_concurrent_downloads = max_concurrent_downloads(facts, runtime, &mut warnings);
    let workloads =
        super::workloads::workloads(facts, target, runtime_root.as_ref(), &mut warnings);
    let value = Carried {
        cgroup_driver: cgroup_driver(facts),
        sandbox_image: sandbox_image(facts, opts, runtime, &mut warnings),
        cni_conf_dir: setting(
            facts.cni.conf_dir.clone(),
            facts.cni.conf_dir_source.clone(),
        ),
        // Never empty: the renderers name the first.
        cni_bin_dirs: if facts.cni.bin_dirs.is_empty() {
            setting(vec!["/opt/cni/bin".to_string()], "the default".to_string())
        } else {
            setting(facts.cni.bin_dirs.clone(), facts.cni.bin_dir_source.clone())
        },
        registries: vec![],
        runtime_root,
        snapshotter,
        max_concurrent_downloads,
        workloads,
    };
    Said { value, warnings }
}

/// Where Docker's value of a key came from: dockerd's flag where it was one, else `default`
/// (daemon.json).
fn docker_source(facts: &Facts, key: &str, default: String) -> String {
    facts
        .docker
        .settings
        .from
        .get(key)
        .cloned()
        .unwrap_or(default)
}

/// The kubelet's own, else Docker's (a dockershim kubelet without one followed it), else the
/// kubelet's default.
fn cgroup_driver(facts: &Facts) -> Setting<String> {
    let k = &facts.kubelet;
    match (&k.cgroup_driver, &facts.docker.settings.cgroup_driver) {
        (Some(c), _) if k.flag("cgroup-driver").is_some() => {
            setting(c.clone(), "the kubelet's --cgroup-driver")
        }
        (Some(c), _) => setting(
            c.clone(),
            format!("cgroupDriver in {}", k.config.file_of("cgroupDriver")),
        ),
        (None, Some(c)) => setting(
            c.clone(),
            format!(
                "{} (the kubelet sets none)",
                docker_source(
                    facts,
                    "exec-opts",
                    "daemon.json exec-opts native.cgroupdriver".into()
                )
            ),
        ),
        (None, None) => setting(
            "cgroupfs".to_string(),
            "the kubelet's default (nothing sets a cgroup driver)",
        ),
    }
}

/// `--sandbox-image`, else the image pods ran with (on cri-dockerd its own
/// `--pod-infra-container-image`; the kubelet's, where set, only keeps the image from garbage
/// collection), else the kubelet's, else the runtime's own config's: the first that is an image
/// reference (a runtime refuses a config naming anything else; each other one is said).
fn sandbox_image(
    facts: &Facts,
    opts: &PlanOptions,
    runtime: &dyn TargetRuntime,
    warnings: &mut Vec<Finding>,
) -> Option<Setting<String>> {
    let cri_dockerd = facts.current_runtime.kind == crate::inspect::RuntimeKind::CriDockerd;
    let candidates = [
        opts.sandbox_image
            .clone()
            .map(|v| setting(v, "--sandbox-image")),
        cri_dockerd
            .then(|| {
                let flags = facts.cri_dockerd_flags.iter().rev();
                flags
                    .filter(|f| f.name == "pod-infra-container-image")
                    .find_map(|f| f.value.clone())
            })
            .flatten()
            .map(|v| setting(v, "cri-dockerd's --pod-infra-container-image")),
        facts
            .kubelet
            .pod_infra_container_image
            .clone()
            .map(|v| setting(v, "the kubelet's --pod-infra-container-image")),
        runtime.configured_sandbox_image(facts),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|c| match crate::names::image_reference(&c.value) {
            Ok(()) => true,
            Err(why) => {
                warnings.push(Finding::warning(
                    "sandbox-image-invalid",
                    format!("the pause image of {} is not carried over: {why}", c.from),
                    "correct it there, or name the pause image with --sandbox-image",
                ));
                false
            }
        })
}

/// The runtime's root beside a Docker data-root that is not the default. A data-root that is no
/// plain absolute path is not carried (it would reach containerd's root and, on an SELinux
/// node, semanage's and restorecon's arguments).
fn runtime_root(
    facts: &Facts,
    runtime: &dyn TargetRuntime,
    warnings: &mut Vec<Finding>,
) -> Option<Setting<String>> {
    let d = &facts.docker.settings;
    let data_root = d.data_root.as_deref().filter(|r| match crate::names::node_path_value(r) {
        Ok(()) => true,
        Err(why) => {
            warnings.push(Finding::warning(
                "data-root-not-carried",
                format!(
                    "Docker's data-root {r:?} ({}) is not carried: {why}",
                    d.from.get("data-root").map(String::as_str).unwrap_or("daemon.json")
                ),
                "dockerd needs an absolute path there too: fix the setting; the runtime keeps its default root",
            ));
            false
        }
    });
    let parent = data_root
        .map(|r| r.trim_end_matches('/'))
        .filter(|r| *r != "/var/lib/docker" && !r.is_empty())
        .and_then(|r| {
            std::path::Path::new(r)
                .parent()
                .map(|p| p.display().to_string())
        })?;
    Some(setting(
        join(&parent, runtime.root_beside_docker()),
        format!(
            "beside Docker's data-root {}{}",
            d.data_root.as_deref().unwrap_or_default(),
            d.from
                .get("data-root")
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        ),
    ))
}

/// Docker's storage driver as the runtime's (overlay, both runtimes' default, is not written).
fn snapshotter(
    facts: &Facts,
    runtime: &dyn TargetRuntime,
    warnings: &mut Vec<Finding>,
) -> Option<Setting<String>> {
    let sd = facts.docker.settings.storage_driver.as_deref()?;
    let mapped = match runtime.storage_driver(sd) {
        Storage::Default => return None,
        Storage::As(mapped) => mapped,
        Storage::NotReady => {
            warnings.push(Finding::warning(
                "storage-driver-dropped",
                format!(
                    "Docker's storage driver {sd} has no ready equivalent in {}",
                    runtime.about().name
                ),
                "the runtime uses overlay; configure its snapshotter by hand if the node needs another",
            ));
            return None;
        }
    };
    Some(setting(
        mapped.to_string(),
        docker_source(
            facts,
            "storage-driver",
            format!("daemon.json storage-driver {sd}"),
        ),
    ))
}

fn max_concurrent_downloads(
    facts: &Facts,
    runtime: &dyn TargetRuntime,
    warnings: &mut Vec<Finding>,
) -> Option<Setting<u64>> {
    let n = facts.docker.settings.max_concurrent_downloads?;
    match runtime.max_concurrent_downloads(n) {
        Ok(n) => Some(setting(
            n,
            docker_source(
                facts,
                "max-concurrent-downloads",
                "daemon.json max-concurrent-downloads".into(),
            ),
        )),
        Err(said) => {
            warnings.push(said);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, facts_with, opts};
    use super::*;

    #[test]
    fn the_pause_image_is_decided_here_before_any_file_is_rendered() {
        // Nothing names one but containerd's own config: this phase takes it (the renderers
        // and the kubelet's phase read it from here).
        let mut f = facts_with("kubelet-1.30-containerd2-schema2", None);
        f.kubelet.pod_infra_container_image = None;
        let mut w = vec![];
        let c = carried(&f, &opts(Target::Containerd), Target::Containerd).said_to(&mut w);
        let pause = c.sandbox_image.expect("containerd's own");
        assert_eq!(
            (pause.value.as_str(), pause.from.as_str()),
            ("registry.k8s.io/pause:3.6", "the existing config.toml")
        );
        // CRI-O does not read containerd's config; its own pause_image is taken.
        let c = carried(&f, &opts(Target::Crio), Target::Crio).said_to(&mut w);
        assert!(c.sandbox_image.is_none());
        f.crio.pause_image = Some("registry.local/pause:3.9".into());
        let c = carried(&f, &opts(Target::Crio), Target::Crio).said_to(&mut w);
        let pause = c.sandbox_image.expect("CRI-O's own");
        assert_eq!(
            (pause.value.as_str(), pause.from.as_str()),
            (
                "registry.local/pause:3.9",
                "CRI-O's own config (pause_image)"
            )
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_pause_image_that_is_no_image_reference_is_said_and_the_next_source_taken() {
        let mut f = facts_with("kubelet-1.30-containerd2-schema2", None);
        f.kubelet.pod_infra_container_image = Some("registry.local/pause:3.9\n[crio]".into());
        f.crio.pause_image = Some("Not An Image".into());
        let mut w = vec![];
        // The kubelet's is refused; containerd's own config's is taken.
        let c = carried(&f, &opts(Target::Containerd), Target::Containerd).said_to(&mut w);
        assert_eq!(c.sandbox_image.unwrap().value, "registry.k8s.io/pause:3.6");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].code, "sandbox-image-invalid");
        assert!(w[0]
            .message
            .contains("the kubelet's --pod-infra-container-image"));
        assert!(w[0].message.contains(r"3.9\n[crio]"), "{}", w[0].message);
        // Both refused: nothing is carried, the runtime's default stands.
        let mut w = vec![];
        let c = carried(&f, &opts(Target::Crio), Target::Crio).said_to(&mut w);
        assert!(c.sandbox_image.is_none());
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn each_setting_says_where_it_came_from_whatever_the_layout() {
        let mut w = vec![];
        // Kubespray: the cgroup driver from its kubelet-config.yaml, the pause image from
        // KUBELET_ARGS in kubelet.env, the CNI directories from KUBELET_NETWORK_PLUGIN.
        let f = facts_with("kubespray-2.17-docker", Some("1.21.5"));
        let c = carried(&f, &opts(Target::Containerd), Target::Containerd).said_to(&mut w);
        assert_eq!(c.cgroup_driver.value, "systemd");
        assert_eq!(
            c.cgroup_driver.from,
            "cgroupDriver in /etc/kubernetes/kubelet-config.yaml"
        );
        assert_eq!(
            c.sandbox_image.as_ref().unwrap().value,
            "k8s.gcr.io/pause:3.3"
        );
        assert_eq!(c.cni_conf_dir.from, "the kubelet's --cni-conf-dir");
        // The EKS AMI: cgroupfs from its JSON config; the pause image from a drop-in's
        // Environment=; Docker's max-concurrent-downloads.
        let f = facts_with("eks-al2-1.22-docker", Some("1.22.17"));
        let c = carried(&f, &opts(Target::Containerd), Target::Containerd).said_to(&mut w);
        assert_eq!(c.cgroup_driver.value, "cgroupfs");
        assert!(c.cgroup_driver.from.ends_with("kubelet-config.json"));
        assert!(c.sandbox_image.unwrap().value.contains(".ecr."));
        assert_eq!(c.max_concurrent_downloads.unwrap().value, 10);
        // On cri-dockerd, its own pause image and CNI directories (a drop-in of its unit).
        let f = facts_with("vendor-unit-1.24-cri-dockerd", None);
        let c = carried(&f, &opts(Target::Containerd), Target::Containerd).said_to(&mut w);
        let pause = c.sandbox_image.unwrap();
        assert_eq!(
            (pause.value.as_str(), pause.from.as_str()),
            (
                "registry.k8s.io/pause:3.9",
                "cri-dockerd's --pod-infra-container-image"
            )
        );
        assert_eq!(c.cni_conf_dir.from, "cri-dockerd's --cni-conf-dir");
        // --sandbox-image wins over the node's.
        let mut o = opts(Target::Containerd);
        o.sandbox_image = Some("registry.local/pause:3.9".into());
        let c =
            carried(&facts("kubeadm-1.22-private-pause"), &o, Target::Containerd).said_to(&mut w);
        assert_eq!(c.sandbox_image.unwrap().value, "registry.local/pause:3.9");
    }
}
