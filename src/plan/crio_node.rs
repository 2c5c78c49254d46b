//! What a real CRI-O node needs beside Docker's settings, which a distribution's package would
//! have configured and a node moved off Docker may lack: the programs CRI-O runs (conmon,
//! pinns, an OCI runtime able to run the specs this CRI-O writes) found where they are, and the
//! CNI network it loads when a package's example bridge sorts before the node's. Each choice is
//! said.

use super::*;
use crate::version::Version;

/// The OCI runtime the drop-in makes CRI-O's default, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciChoice {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrioNode {
    pub conmon: Option<String>,
    pub pinns: Option<String>,
    pub oci: Option<OciChoice>,
    pub cni_default_network: Option<String>,
}

/// CRI-O's default OCI runtime by version: crun from 1.31 (its release notes), runc before.
pub fn default_oci(rv: Version) -> &'static str {
    if rv.at_least(1, 31) {
        "crun"
    } else {
        "runc"
    }
}

/// crun before 1.14.3 refuses the OCI runtime spec 1.2 that CRI-O writes from 1.30 ("unknown
/// version specified").
fn crun_too_old(facts: &Facts, rv: Version) -> Option<Version> {
    let v = facts.tools.iter().find(|t| t.name == "crun")?.version?;
    (rv.at_least(1, 30) && !v.at_least_patch(1, 14, 3)).then_some(v)
}

fn tool<'a>(facts: &'a Facts, name: &str) -> Option<&'a str> {
    facts
        .tools
        .iter()
        .find(|t| t.name == name)
        .map(|t| t.path.as_str())
}

pub(super) fn crio_node(
    facts: &Facts,
    rv: Version,
    docker_default: Option<&str>,
    warnings: &mut Vec<Finding>,
) -> CrioNode {
    let mut out = CrioNode::default();
    let crio = &facts.crio;
    // conmon: unless the config names one (or every runtime its own monitor_path).
    let monitors = !crio.runtimes.is_empty() && crio.runtimes.values().all(|r| r.monitor_path);
    if crio.conmon.is_none() && !monitors {
        match tool(facts, "conmon") {
            Some(p) => out.conmon = Some(p.to_string()),
            None => warnings.push(Finding::warning(
                "crio-conmon-missing",
                "CRI-O runs every container under conmon, and the node has none (looked in the binary directories and /usr/libexec/crio)",
                "install conmon (the conmon package, or CRI-O's bundle) before applying",
            )),
        }
    }
    if crio.pinns_path.is_none() {
        match tool(facts, "pinns") {
            Some(p) => out.pinns = Some(p.to_string()),
            None => warnings.push(Finding::warning(
                "crio-pinns-missing",
                "CRI-O makes every pod's namespaces with pinns, and the node has none",
                "install CRI-O from its package or bundle (pinns comes with it) before applying",
            )),
        }
    }
    // The OCI runtime, unless Docker's default runtime is carried as CRI-O's default.
    if docker_default.is_none() {
        let wanted = crio
            .default_runtime
            .clone()
            .unwrap_or_else(|| default_oci(rv).to_string());
        let too_old = crun_too_old(facts, rv);
        let usable = |name: &str| {
            let on_node = match crio.runtimes.get(name) {
                Some(r) if !r.runtime_path.is_empty() => r.present,
                _ => tool(facts, name).is_some(),
            };
            on_node && !(name == "crun" && too_old.is_some())
        };
        if !usable(&wanted) {
            let why = match (wanted.as_str(), too_old) {
                ("crun", Some(v)) if tool(facts, "crun").is_some() => format!(
                    "the node's crun {v} refuses the OCI runtime spec 1.2 that CRI-O {rv} writes (crun 1.14.3 takes it)"
                ),
                _ => format!("{wanted} is not on the node"),
            };
            let alternative = ["runc", "crun"]
                .into_iter()
                .filter(|n| *n != wanted)
                .find(|n| usable(n))
                .and_then(|n| tool(facts, n).map(|p| (n, p)));
            match alternative {
                Some((name, path)) => {
                    warnings.push(Finding::info(
                        "crio-oci-runtime",
                        format!("CRI-O {rv}'s default OCI runtime is {wanted}, and {why}: the drop-in makes {name} ({path}) the default"),
                        "nothing to do",
                    ));
                    out.oci = Some(OciChoice {
                        name: name.to_string(),
                        path: path.to_string(),
                    });
                }
                None => warnings.push(Finding::warning(
                    "crio-oci-runtime-missing",
                    format!("CRI-O {rv} runs containers with {wanted}, and {why}; no other OCI runtime it can use is either"),
                    format!("install runc, or crun{} (the runc or crun package), before applying", if rv.at_least(1, 30) { " 1.14.3 or later" } else { "" }),
                )),
            }
        }
    }
    // The node's network, where a package's example bridge would be loaded before it.
    if let (Some(example), Some((name, file))) = (&facts.cni.shadowed_by, &facts.cni.network) {
        warnings.push(Finding::info(
            "crio-cni-network",
            format!("{example} (a package's example bridge) sorts before the node's network {name} ({file}) in {}: the drop-in selects {name} by name (cni_default_network)", facts.cni.conf_dir),
            "nothing to do (remove the example file when convenient)",
        ));
        out.cni_default_network = Some(name.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::test_facts::facts;

    const BUNDLE: &str = "kubelet-1.31-cri-dockerd-to-crio-bundle";

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn the_programs_crio_runs_are_found_and_a_runtime_that_can_run_its_specs_chosen() {
        let f = facts(BUNDLE);
        let mut w = vec![];
        let n = crio_node(&f, v("1.31.6"), None, &mut w);
        assert_eq!(n.conmon.as_deref(), Some("/usr/bin/conmon"));
        assert_eq!(n.pinns.as_deref(), Some("/usr/local/bin/pinns"));
        // crun 1.8.1 refuses OCI spec 1.2: runc.
        assert_eq!(
            n.oci,
            Some(OciChoice {
                name: "runc".into(),
                path: "/usr/sbin/runc".into()
            })
        );
        assert!(w
            .iter()
            .any(|x| x.code == "crio-oci-runtime" && x.message.contains("crun 1.8.1")));
        assert_eq!(n.cni_default_network.as_deref(), Some("cbr0"));
        // CRI-O 1.24 runs runc by default, which is there: nothing to choose.
        let n = crio_node(&f, v("1.24.6"), None, &mut vec![]);
        assert_eq!(n.oci, None);
        // A newer crun runs CRI-O 1.31's specs.
        let mut f2 = f.clone();
        for t in f2.tools.iter_mut().filter(|t| t.name == "crun") {
            t.version = Version::parse("1.17.0");
        }
        assert_eq!(crio_node(&f2, v("1.31.6"), None, &mut vec![]).oci, None);
        // Docker's default runtime carried: no choice of ours.
        assert_eq!(
            crio_node(&f, v("1.31.6"), Some("nvidia"), &mut vec![]).oci,
            None
        );
        // Nothing to run containers with: said, nothing chosen.
        let mut f3 = f.clone();
        f3.tools.clear();
        let mut w = vec![];
        let n = crio_node(&f3, v("1.31.6"), None, &mut w);
        assert_eq!((n.conmon, n.pinns, n.oci), (None, None, None));
        for code in [
            "crio-conmon-missing",
            "crio-pinns-missing",
            "crio-oci-runtime-missing",
        ] {
            assert!(w.iter().any(|x| x.code == code), "{code}");
        }
    }
}
