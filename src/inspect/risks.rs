//! Risks of the move, each in one line with what to do (runtime-facts §7).

use super::pods::docker_bound;
use super::{Facts, Finding, RuntimeKind};

pub fn assess(f: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    leftovers(f, &mut out);
    kubelet_risks(f, &mut out);
    docker_risks(f, &mut out);
    runtimes_and_cni_risks(f, &mut out);
    out
}

/// The kubelet: its version, what of its files is not read, where it is now, its static pods.
fn kubelet_risks(f: &Facts, out: &mut Vec<Finding>) {
    let k = &f.kubelet;
    if k.installed.installed && k.installed.version.is_none() {
        out.push(Finding::warning(
            "kubelet-version-unknown",
            "the kubelet's version could not be read (no `kubelet --version`, no package)",
            "pass --kubelet-version, e.g. --kubelet-version 1.23.17",
        ));
    }
    for (what, i) in [
        ("kubelet", &k.installed),
        ("containerd", &f.runtimes.containerd),
        ("CRI-O", &f.runtimes.crio),
        ("Docker", &f.runtimes.docker),
    ] {
        if let Some(note) = &i.package_note {
            out.push(Finding::warning(
                "package-records",
                format!("{what}: {note}"),
                if i.version.is_none() {
                    format!("pass the version that runs (e.g. --{}-version)", if what == "kubelet" { "kubelet" } else { "runtime" })
                } else {
                    "check the package database (dpkg --audit) when the version shown is not the one that runs".to_string()
                },
            ));
        }
    }
    for line in &k.ignored_lines {
        out.push(Finding::warning(
            "env-line-ignored",
            format!("{line}: systemd skips it, so the kubelet never had what it sets"),
            "cri-migrate writes the kubelet's runtime flags as a plain KEY=\"value\" assignment, which systemd reads; remove the skipped line (or drop its `export`) once you have checked what it meant to set",
        ));
    }
    if f.current_runtime.kind == RuntimeKind::Unknown {
        out.push(Finding::warning(
            "runtime-unknown",
            format!(
                "cannot tell which runtime the kubelet uses: {}",
                f.current_runtime.reason
            ),
            "check the kubelet's flags and config.yaml",
        ));
    }

    for pod in &f.static_pods {
        let name = pod.name.clone().unwrap_or_else(|| pod.file.clone());
        if let Some(err) = &pod.error {
            out.push(Finding::warning(
                "static-pod-unreadable",
                format!("static pod manifest {} is not valid YAML ({err})", pod.file),
                "fix it; the kubelet skips it too",
            ));
            continue;
        }
        for path in pod.host_paths.iter().filter(|p| docker_bound(p)) {
            let (code, fix) = if path.trim_end_matches('/').starts_with("/var/lib/docker") {
                (
                    "docker-logs-mount",
                    "point it at /var/log/pods (CRI log format) before the move",
                )
            } else {
                (
                    "docker-socket-mount",
                    "it loses Docker after the move: give it the CRI socket or drop the dependency",
                )
            };
            out.push(Finding::warning(
                code,
                format!("static pod {name} ({}) mounts {path}", pod.file),
                fix,
            ));
        }
    }
}

/// Docker: what depends on it, its settings against the kubelet's and against what can be carried.
fn docker_risks(f: &Facts, out: &mut Vec<Finding>) {
    let k = &f.kubelet;
    if f.current_runtime.kind.is_docker() {
        let names: Vec<String> = f
            .static_pods
            .iter()
            .filter_map(|p| p.name.clone())
            .collect();
        if !names.is_empty() {
            out.push(Finding::info(
                "static-pods-move",
                format!("static pods {} run in Docker now and will restart on the new runtime", names.join(", ")),
                "expect a short control-plane outage on this node; migrate control-plane nodes one at a time",
            ));
        }
        out.push(Finding::info(
            "log-format",
            "container logs move from Docker's JSON files in /var/lib/docker/containers to CRI-format files in /var/log/pods",
            "check that DaemonSet log collectors read /var/log/pods and parse the CRI format",
        ));
    }
    for c in &f.docker_containers {
        out.push(Finding::warning(
            "docker-container-mount",
            format!("Docker container {} ({}) mounts {}", c.name, c.image, c.mounts.join(", ")),
            "the pod it belongs to loses Docker after the move: give it the CRI socket or drop the dependency",
        ));
    }

    let d = &f.docker.settings;
    if let (Some(kd), Some(dd)) = (&k.cgroup_driver, &d.cgroup_driver) {
        if kd != dd {
            out.push(Finding::warning(
                "cgroup-driver-mismatch",
                format!("the kubelet uses the {kd} cgroup driver but Docker uses {dd}"),
                format!("cri-migrate sets the runtime to {kd}, the kubelet's; check the node afterwards"),
            ));
        }
    }
    // What becomes of each of Docker's settings is one table (src/inspect/docker_options.rs),
    // which docs/carried-settings.md holds too: a setting pods never saw is passed over, one that
    // is not carried is said with why and what to do.
    use super::docker_options::{by_flag, by_key, Treatment};
    for key in d.other.keys() {
        match by_key(key) {
            Some(o) if o.treatment == Treatment::NotCarried => out.push(Finding::warning(
                "docker-setting-dropped",
                format!("daemon.json \"{key}\" is not carried over"),
                format!("{}; docs/carried-settings.md lists every setting", o.note),
            )),
            Some(_) => {}
            None => out.push(Finding::warning(
                "docker-setting-dropped",
                format!("daemon.json \"{key}\" is not a setting cri-migrate knows (Docker 20.10 to 28): not carried over"),
                "check whether the node relied on it; docs/carried-settings.md lists every setting",
            )),
        }
    }
    for (flag, at) in &d.other_flags {
        let name = flag
            .trim_start_matches('-')
            .split(['=', ' '])
            .next()
            .unwrap_or_default();
        let fix = match by_flag(name) {
            Some(o) if o.treatment == Treatment::NotNeeded => continue,
            Some(o) if o.treatment == Treatment::NotCarried => {
                format!("{}; docs/carried-settings.md lists every setting", o.note)
            }
            _ => {
                "check whether the node relied on it; docs/carried-settings.md lists every setting"
                    .to_string()
            }
        };
        out.push(Finding::warning(
            "docker-flag-dropped",
            format!("dockerd {flag} ({at}) is not carried over"),
            fix,
        ));
    }
    for r in d.insecure_registries.iter().filter(|r| r.contains('/')) {
        out.push(Finding::warning(
            "insecure-cidr",
            format!("insecure registry range {r} cannot be carried over (the runtimes take host names)"),
            "list each registry host:port in daemon.json's insecure-registries and run cri-migrate again",
        ));
    }
    if d.containerd_snapshotter {
        out.push(Finding::info(
            "docker-containerd-store",
            "Docker keeps its images in containerd (containerd-snapshotter)",
            "the images are in containerd's moby namespace already: when that containerd is the target, cri-migrate shares them into k8s.io by digest instead of exporting them",
        ));
    }
}

/// Credentials, containerd's config, schema 1 images, environment files, CNI.
fn runtimes_and_cni_risks(f: &Facts, out: &mut Vec<Finding>) {
    for c in &f.credentials {
        if !c.kubelet_reads && !c.registries.is_empty() {
            out.push(Finding::warning(
                "credentials-not-read",
                format!("{} holds credentials for {}, but the kubelet does not read that file", c.path, c.registries.join(", ")),
                "if pods pull from those registries, copy it to /var/lib/kubelet/config.json (mode 0600)",
            ));
        }
        if !c.helpers.is_empty() {
            out.push(Finding::info(
                "credential-helpers",
                format!(
                    "{} uses credential helpers ({}), which the kubelet does not run",
                    c.path,
                    c.helpers.join(", ")
                ),
                "use a kubelet image credential provider for those registries",
            ));
        }
    }
    if let Some(c) = &f.containerd_config {
        if !c.imports.is_empty() {
            out.push(Finding::info(
                "containerd-imports",
                format!(
                    "{} imports {}; cri-migrate edits only the main file",
                    c.path,
                    c.imports.join(", ")
                ),
                "check that the imported files do not override the CRI settings",
            ));
        }
    }
    out.extend(super::manifests::findings(&f.docker_manifests, None));
    for f in &f.docker.env_files_not_loaded {
        out.push(Finding::info(
            "docker-env-file-not-loaded",
            format!("{f} is not loaded by docker.service (no EnvironmentFile= for it): what it sets is not in effect and is not carried"),
            "nothing to do; if Docker was meant to run with it, carry its settings by hand",
        ));
    }
    // kubenet writes no CNI config of its own (the plan writes the one that replaces it).
    if f.cni.conf_files.is_empty() && !f.kubelet.on_kubenet() {
        out.push(Finding::warning(
            "cni-no-config",
            format!("no CNI configuration in {}", f.cni.conf_dir),
            "pods get no network until a CNI plugin is installed (normally by its DaemonSet)",
        ));
    }
    if f.cni.plugins.is_empty() {
        out.push(Finding::warning(
            "cni-no-plugins",
            format!("no CNI plugins in {}", f.cni.bin_dirs.join(", ")),
            "install the CNI plugins (kubernetes-cni / containernetworking-plugins)",
        ));
    }
    if !f.cni.missing.is_empty() {
        let named: Vec<String> = f
            .cni
            .missing
            .iter()
            .map(|(p, file)| format!("{p} ({file})"))
            .collect();
        out.push(Finding::warning(
            "cni-plugins-missing",
            format!(
                "the CNI config in {} names plugins that no plugin directory the runtime will use ({}) holds: {}; every pod would fail to get its network",
                f.cni.conf_dir,
                f.cni.bin_dirs.join(", "),
                named.join(", ")
            ),
            "install them (the CNI plugins package, or the network add-on's own) into that directory, or point the runtime at the directory that holds them, before migrating",
        ));
    }
}

/// What Docker leaves behind, each with what to do.
fn leftovers(f: &Facts, out: &mut Vec<Finding>) {
    let l = &f.leftovers;
    if l.live_restore {
        out.push(Finding::warning(
            "docker-live-restore",
            "Docker's daemon.json sets live-restore: stopping Docker leaves its containers running (their shims keep mounts under Docker's data root), beside the pods the kubelet starts again on the new runtime",
            "set \"live-restore\": false in /etc/docker/daemon.json and `systemctl reload docker` before migrating (it takes effect without a restart), so that stopping Docker stops its containers",
        ));
    }
    if !l.ipam_reservations.is_empty() {
        let mut nets: Vec<&str> = l
            .ipam_reservations
            .iter()
            .map(|r| r.network.as_str())
            .collect();
        nets.dedup();
        out.push(Finding::info(
            "cni-addresses-held",
            format!(
                "host-local holds {} address(es) in {} for pods Docker ran ({}): {}; those pods will not exist on the new runtime, and nothing frees the addresses (the kubelet stops before Docker, so no CNI DEL runs)",
                l.ipam_reservations.len(),
                super::leftovers::CNI_NETWORKS,
                nets.join(", "),
                first(l.ipam_reservations.iter().map(|r| r.path.as_str()), 3, " ")
            ),
            "the migration releases them once Docker has stopped (each moved into the backup; a rollback puts them back)",
        ));
    }
    if !l.pod_slices.is_empty() {
        out.push(Finding::info(
            "pod-slices",
            format!(
                "{} pod slice(s) are loaded for the pods Docker runs ({}); they outlive Docker's containers",
                l.pod_slices.len(),
                first(l.pod_slices.iter().map(String::as_str), 2, ", ")
            ),
            "the kubelet on the new runtime reuses the slice of each pod that comes back (same UID) and removes the others with their pods; one that stays after the pods are back is stopped with `systemctl stop SLICE`",
        ));
    }
    if !l.iptables_chains.is_empty() {
        out.push(Finding::info(
            "docker-iptables",
            format!(
                "Docker's iptables chains stay once it stops: {}",
                l.iptables_chains.join(", ")
            ),
            "pods on the new runtime do not use them; keep DOCKER-USER if your own rules live there, remove the rest once Docker is gone for good (iptables -t TABLE -F CHAIN; iptables -t TABLE -X CHAIN, after deleting the jumps to them)",
        ));
    }
}

/// The first `n` of a list joined by `sep`, then `...` where there are more.
fn first<'a>(items: impl ExactSizeIterator<Item = &'a str>, n: usize, sep: &str) -> String {
    let more = items.len() > n;
    let mut text = items.take(n).collect::<Vec<_>>().join(sep);
    if more {
        text.push_str(sep);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::first;

    #[test]
    fn a_long_list_is_cut_after_its_first_items() {
        let items = ["a", "b", "c"];
        assert_eq!(first(items.into_iter(), 2, ", "), "a, b, ...");
        assert_eq!(first(items.into_iter(), 3, " "), "a b c");
        assert_eq!(first([].into_iter(), 2, " "), "");
    }
}
