//! Phase 3: the runtime's files — those its module renders (`runtime::containerd`: config.toml
//! merged into the node's, registry host files, the kubelet's credentials moved out of it, a
//! limits drop-in; `runtime::crio`: its drop-in and registries), and Docker's proxy for its
//! unit — with the settings they hold.

use super::*;

pub(super) fn runtime_files(
    facts: &Facts,
    v: &Versions,
    target: Target,
    settings: &Carried,
) -> Result<Said<RuntimeFiles>, Failure> {
    let mut warnings = Vec::new();
    let mut written = crate::runtime::registry::of(target)
        .files(facts, v, settings)?
        .said_to(&mut warnings);
    written
        .files
        .extend(proxy_drop_in(facts, target, &mut warnings));
    Ok(Said {
        value: written,
        warnings,
    })
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
        let v = versions(&f, &o).unwrap().said_to(&mut w);
        let mut c = super::super::settings::carried(&f, &o, target).said_to(&mut w);
        let written = runtime_files(&f, &v, target, &c).unwrap().said_to(&mut w);
        c.registries = written.registries;
        (written.files, c, w)
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
            let v = versions(f, &o).unwrap().said_to(&mut w);
            let c = super::super::settings::carried(f, &o, Target::Containerd).said_to(&mut w);
            let files = runtime_files(f, &v, Target::Containerd, &c)
                .unwrap()
                .said_to(&mut w)
                .files;
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
            let v = versions(&f, &o).unwrap().said_to(&mut w);
            let c = super::super::settings::carried(&f, &o, Target::Containerd).said_to(&mut w);
            let files = runtime_files(&f, &v, Target::Containerd, &c)
                .unwrap()
                .said_to(&mut w)
                .files;
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
