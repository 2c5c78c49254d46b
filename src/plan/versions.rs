//! Phase 1: the versions the plan is for — the kubelet's (within what cri-migrate knows), the
//! runtime's (installed, or given), where the kubelet is now, and containerd's config schema.

use super::*;

/// The oldest kubelet cri-migrate plans for, and the newest whose flag rules it knows.
const OLDEST_KUBELET: Version = Version::new(1, 20, 0);
const NEWEST_KNOWN_KUBELET: (u32, u32) = (1, 35);

pub(super) fn versions(facts: &Facts, opts: &PlanOptions) -> Result<Said<Versions>, Failure> {
    let mut warnings = Vec::new();
    let target = opts.target;

    let kv = facts.kubelet.installed.version.ok_or_else(|| {
        Failure::preflight(
            match &facts.kubelet.installed.package_note {
                Some(note) => format!("cannot tell the kubelet's version: {note}"),
                None => format!(
                    "cannot tell the kubelet's version (no `kubelet --version` on this node{}, no kubelet package in {}, no version in {})",
                    if facts.live { "" } else { ": under --root nothing of the node runs" },
                    facts.package_databases,
                    facts.kubelet.installed.binary.as_deref().map(|b| format!("{b}'s Go build information")).unwrap_or_else(|| "a kubelet binary (none found)".into()),
                ),
            },
            "Pass it with --kubelet-version, e.g. --kubelet-version 1.23.17 (`kubelet --version` on the node tells it).",
        )
    })?;
    if kv < OLDEST_KUBELET {
        return Err(Failure::preflight(
            format!("kubelet {kv} is older than {OLDEST_KUBELET}, the oldest cri-migrate supports"),
            "Upgrade the node's Kubernetes first (kubeadm upgrade), or pass the right --kubelet-version if it was misread.",
        ));
    }
    let (major, minor) = NEWEST_KNOWN_KUBELET;
    if kv.at_least(major, minor + 1) {
        warnings.push(Finding::warning(
            "kubelet-newer-than-known",
            format!("kubelet {kv} is newer than the flag rules cri-migrate knows (up to {major}.{minor}); the {major}.{minor} rules are used"),
            "check the kubelet's changelog for removed flags before applying",
        ));
    }
    let from = facts.current_runtime.kind;
    if from == RuntimeKind::Unknown {
        return Err(Failure::preflight(
            format!("cannot tell which runtime the kubelet uses now: {}", facts.current_runtime.reason),
            "Check the kubelet's --container-runtime-endpoint flag and config.yaml; pass --kubelet-version if the version is missing.",
        ));
    }

    let runtime = crate::runtime::registry::of(target);
    let installed = runtime.installed(facts);
    let install_hint = target.about().install_hint;
    let rv = match (opts.runtime_version, installed.version, installed.installed) {
        (Some(v), _, true) => v,
        (Some(v), _, false) => {
            warnings.push(Finding::warning(
                "runtime-not-installed",
                format!("{} is not installed; the plan assumes version {v}", target.name()),
                format!("install it before applying: {install_hint}"),
            ));
            v
        }
        (None, Some(v), true) => v,
        (None, None, true) => {
            return Err(Failure::preflight(
                format!(
                    "{} is installed but its version cannot be read (not from {}{})",
                    target.name(),
                    facts.package_databases,
                    installed
                        .binary
                        .as_deref()
                        .map(|b| format!(", nor from {b}'s Go build information"))
                        .unwrap_or_default()
                ),
                format!(
                    "Pass it with --runtime-version, e.g. --runtime-version 1.6.20 (`{} --version` on the node tells it).",
                    target.about().binary
                ),
            ))
        }
        (None, _, false) => {
            return Err(Failure::preflight(
                format!("{} is not installed on this node (no binary, no package)", target.name()),
                format!("Install it first ({install_hint}), or pass --runtime-version to plan for a node where it will be."),
            ))
        }
    };
    let mut value = Versions {
        kv,
        rv,
        from,
        config_schema: None,
    };
    value.config_schema = runtime.config_schema(facts, &value)?.said_to(&mut warnings);
    Ok(Said { value, warnings })
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, facts_with, opts};
    use super::*;

    #[test]
    fn versions_of_a_kubeadm_node_and_the_refusals() {
        let mut w = vec![];
        let v = versions(&facts("kubeadm-1.20-docker"), &opts(Target::Containerd))
            .unwrap()
            .said_to(&mut w);
        assert_eq!(
            (v.kv, v.rv, v.from, v.config_schema),
            (
                Version::new(1, 20, 15),
                Version::new(1, 6, 21),
                RuntimeKind::Dockershim,
                Some(2)
            )
        );
        assert!(w.is_empty(), "{w:?}");
        // No version to be read: refused, naming the flag that gives it.
        let e = versions(&facts("unknown-kubelet-version"), &opts(Target::Containerd)).unwrap_err();
        assert!(e.to_string().contains("--kubelet-version"), "{e}");
        // The runtime missing: refused; given a version, planned with a warning.
        let f = facts("target-not-installed");
        assert!(versions(&f, &opts(Target::Containerd)).is_err());
        let mut o = opts(Target::Containerd);
        o.runtime_version = Version::parse("1.7.2");
        let v = versions(&f, &o).unwrap().said_to(&mut w);
        assert_eq!(v.rv, Version::new(1, 7, 2));
        assert!(w.iter().any(|f| f.code == "runtime-not-installed"));
    }

    #[test]
    fn kubelets_out_of_range_and_crio_skew() {
        let mut w = vec![];
        let old = facts_with("kubeadm-1.20-docker", Some("1.19.16"));
        let e = versions(&old, &opts(Target::Containerd)).unwrap_err();
        assert!(e.to_string().contains("older than 1.20.0"), "{e}");
        let new = facts_with("kubeadm-1.20-docker", Some("1.40.0"));
        let mut o = opts(Target::Containerd);
        o.runtime_version = Version::parse("2.1.4");
        versions(&new, &o).unwrap().said_to(&mut w);
        assert!(
            w.iter().any(|f| f.code == "kubelet-newer-than-known"),
            "{w:?}"
        );
        let mut w = vec![];
        let v = versions(&facts("kubelet-1.28-crio"), &opts(Target::Crio))
            .unwrap()
            .said_to(&mut w);
        assert_eq!(v.config_schema, None);
        let skew = w.iter().any(|f| f.code == "crio-version-skew");
        assert_eq!(skew, (v.rv.major, v.rv.minor) != (v.kv.major, v.kv.minor));
    }
}
