//! Phase 1: the versions the plan is for — the kubelet's (within what cri-migrate knows), the
//! runtime's (installed, or given), where the kubelet is now, and containerd's config schema.

use super::*;

/// The oldest kubelet cri-migrate plans for, and the newest whose flag rules it knows.
const OLDEST_KUBELET: Version = Version::new(1, 20, 0);
const NEWEST_KNOWN_KUBELET: (u32, u32) = (1, 35);

pub(super) fn versions(
    facts: &Facts,
    opts: &PlanOptions,
    warnings: &mut Vec<Finding>,
) -> Result<Versions, Failure> {
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

    let installed = facts.runtimes.of(target);
    let install_hint = target.runtime().install_hint;
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
                    target.runtime().binary
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
    let config_schema = match target {
        Target::Containerd => Some(containerd_schema(
            rv,
            kv,
            facts.containerd_config.as_ref(),
            warnings,
        )?),
        Target::Crio => {
            if (rv.major, rv.minor) != (kv.major, kv.minor) {
                warnings.push(Finding::warning(
                    "crio-version-skew",
                    format!("CRI-O {rv} does not match kubelet {kv}: CRI-O's minor version follows Kubernetes'"),
                    format!("install cri-o {}.{}", kv.major, kv.minor),
                ));
            }
            None
        }
    };
    Ok(Versions {
        kv,
        rv,
        from,
        config_schema,
    })
}

fn containerd_schema(
    rv: Version,
    kv: Version,
    existing: Option<&crate::inspect::runtimes::ContainerdConfig>,
    warnings: &mut Vec<Finding>,
) -> Result<u8, Failure> {
    // The newest config version the installed containerd reads (its description).
    let readable: u8 = (crate::runtime::CONTAINERD.config_version)(rv).unwrap_or(2);
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

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, facts_with, opts};
    use super::*;

    #[test]
    fn versions_of_a_kubeadm_node_and_the_refusals() {
        let mut w = vec![];
        let v = versions(
            &facts("kubeadm-1.20-docker"),
            &opts(Target::Containerd),
            &mut w,
        )
        .unwrap();
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
        let e = versions(
            &facts("unknown-kubelet-version"),
            &opts(Target::Containerd),
            &mut w,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--kubelet-version"), "{e}");
        // The runtime missing: refused; given a version, planned with a warning.
        let f = facts("target-not-installed");
        assert!(versions(&f, &opts(Target::Containerd), &mut w).is_err());
        let mut o = opts(Target::Containerd);
        o.runtime_version = Version::parse("1.7.2");
        let v = versions(&f, &o, &mut w).unwrap();
        assert_eq!(v.rv, Version::new(1, 7, 2));
        assert!(w.iter().any(|f| f.code == "runtime-not-installed"));
    }

    #[test]
    fn kubelets_out_of_range_and_crio_skew() {
        let mut w = vec![];
        let old = facts_with("kubeadm-1.20-docker", Some("1.19.16"));
        let e = versions(&old, &opts(Target::Containerd), &mut w).unwrap_err();
        assert!(e.to_string().contains("older than 1.20.0"), "{e}");
        let new = facts_with("kubeadm-1.20-docker", Some("1.40.0"));
        let mut o = opts(Target::Containerd);
        o.runtime_version = Version::parse("2.1.4");
        versions(&new, &o, &mut w).unwrap();
        assert!(
            w.iter().any(|f| f.code == "kubelet-newer-than-known"),
            "{w:?}"
        );
        let mut w = vec![];
        let v = versions(&facts("kubelet-1.28-crio"), &opts(Target::Crio), &mut w).unwrap();
        assert_eq!(v.config_schema, None);
        let skew = w.iter().any(|f| f.code == "crio-version-skew");
        assert_eq!(skew, (v.rv.major, v.rv.minor) != (v.kv.major, v.kv.minor));
    }
}
