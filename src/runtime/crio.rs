//! CRI-O as the target: its drop-in with the settings carried, the registries drop-in, its
//! version rule (its minor follows the kubelet's), its handlers and its image way (skopeo into
//! containers-storage) — and what a real CRI-O node needs beside Docker's settings, which a
//! distribution's package would have configured and a node moved off Docker may lack: the
//! programs CRI-O runs (conmon, pinns, an OCI runtime able to run the specs this CRI-O writes)
//! found where they are, and the CNI network it loads when a package's example bridge sorts
//! before the node's. Each choice is said.

use super::target::{usual_storage, About, Storage, TargetRuntime};
use crate::error::Failure;
use crate::images::Dest;
use crate::inspect::runtimes::REGISTRIES_DROP_IN;
use crate::inspect::{Facts, Finding, Installed};
use crate::node::Node;
use crate::plan::model::{
    change, setting, skipped_registries, Carried, FileGroup, Format, Order, Plan, RuntimeFiles,
    Said, Setting, Versions,
};
use crate::render::crio::OciChoice;
use crate::render::{self, Handler};
use crate::version::Version;

pub struct Crio;

/// Where CRI-O takes each carried setting (docs/carried-settings.md's column).
const CARRIED_TO: &[(&str, &str)] = &[
    ("cgroup_driver", "`cgroup_manager`, `conmon_cgroup = \"pod\"`"),
    ("sandbox_image", "`pause_image`"),
    ("cni_conf_dir", "`network_dir`"),
    ("cni_bin_dirs", "`plugin_dirs`"),
    ("registry_mirrors", "registries.conf.d drop-in: `[[registry]] docker.io` + `[[registry.mirror]]`"),
    ("insecure_registries", "`[[registry]] insecure = true`"),
    ("registry_certs", "used where they are: containers/image reads `/etc/containers/certs.d/<host>/`, else `/etc/docker/certs.d/<host>/` (a note says so); a host with a directory of its own in `/etc/containers/certs.d` is read from it alone (a warning names it)"),
    ("config_mirrors", "—"),
    ("config_tls", "—"),
    ("config_auths", "—"),
    ("address_reservations", "same"),
    ("limit_nofile", "—"),
    ("runtime_root", "`[crio] root`: `/data/containers/storage`"),
    ("snapshotter", "`storage_driver`"),
    ("max_concurrent_downloads", "none (a note)"),
    ("kubenet", "same"),
    ("log_rotation", "same"),
    ("nested_node", "—"),
    ("proxy", "the same under `crio.service.d`"),
    ("handlers", "`[crio.runtime.runtimes.NAME]`: `runtime_type = \"oci\"`, `runtime_path` = the binary; Kata's shim as `runtime_type = \"vm\"` (`runtime_root = \"/run/vc\"`, `privileged_without_host_devices`)"),
    ("default_handler", "`default_runtime`"),
    ("ulimits", "`default_ulimits = [\"nofile=65536:1048576\"]`"),
    ("selinux", "`selinux = true`; `/var/lib/containers` as the equivalence"),
    ("endpoint", "same, `unix:///var/run/crio/crio.sock`"),
];

impl TargetRuntime for Crio {
    fn about(&self) -> &'static About {
        &super::CRIO
    }
    fn installed<'f>(&self, facts: &'f Facts) -> &'f Installed {
        &facts.runtimes.crio
    }

    fn config_schema(&self, _: &Facts, v: &Versions) -> Result<Said<Option<u8>>, Failure> {
        let (rv, kv) = (v.rv, v.kv);
        let mut said = Said::quiet(None);
        if (rv.major, rv.minor) != (kv.major, kv.minor) {
            said.warnings.push(Finding::warning(
                "crio-version-skew",
                format!("CRI-O {rv} does not match kubelet {kv}: CRI-O's minor version follows Kubernetes'"),
                format!("install cri-o {}.{}", kv.major, kv.minor),
            ));
        }
        Ok(said)
    }
    fn default_pause(&self, _: Version) -> &'static str {
        "its built-in pause image"
    }

    // crio.conf and its drop-ins (the last that sets it wins, as in CRI-O).
    fn configured_sandbox_image(&self, facts: &Facts) -> Option<Setting<String>> {
        let image = facts.crio.pause_image.clone()?;
        Some(setting(image, "CRI-O's own config (pause_image)"))
    }
    fn root_beside_docker(&self) -> &'static str {
        "containers/storage"
    }
    // Its storage root is containers/storage under /var/lib/containers.
    fn selinux_like(&self, root: &str) -> (String, String) {
        (
            "/var/lib/containers".to_string(),
            root.strip_suffix("/storage").unwrap_or(root).to_string(),
        )
    }
    // containers/storage has drivers of Docker's names.
    fn carried_to(&self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        ("CRI-O", CARRIED_TO)
    }
    fn storage_driver(&self, docker: &str) -> Storage {
        usual_storage(docker, "vfs")
    }
    fn max_concurrent_downloads(&self, n: u64) -> Result<u64, Finding> {
        Err(Finding::info(
            "max-downloads-dropped",
            format!("daemon.json max-concurrent-downloads ({n}) has no CRI-O equivalent"),
            "nothing to do; CRI-O pulls layers in parallel by default",
        ))
    }
    // CRI-O runs a binary (or Kata's shim as a VM runtime), never a containerd shim.
    fn runs_handler(&self, h: &Handler) -> Result<(), Finding> {
        if h.crio_path().is_some() {
            return Ok(());
        }
        Err(Finding::warning(
            "runtime-not-carried",
            format!("Docker's runtime {} is a containerd shim ({}) with no binary CRI-O can run on this node", h.name, h.runtime_type),
            "configure the runtime for CRI-O by its own documentation ([crio.runtime.runtimes.NAME] with its runtime_path)",
        ))
    }
    fn nvidia_hint(&self) -> (&'static str, &'static str) {
        (
            "as an OCI runtime of CRI-O's",
            "GPU pods keep their devices through it; CRI-O (1.23+) supports CDI, which the device plugin can use instead: `nvidia-ctk cdi generate`, then its cdi-cri strategy",
        )
    }

    fn files(&self, f: &Facts, v: &Versions, s: &Carried) -> Result<Said<RuntimeFiles>, Failure> {
        let mut warnings = Vec::new();
        let value = crio_files(f, v.rv, s, &mut warnings)?;
        Ok(Said { value, warnings })
    }
    // Its own runc and crun.
    fn planned_handlers(&self, _: &Facts, _: &Plan) -> Vec<String> {
        vec!["runc".to_string(), "crun".to_string()]
    }

    fn beside_docker(&self, _: &Facts) -> Order {
        Order {
            check_before_cutover: true,
            why: "CRI-O runs beside Docker on its own socket: it is started with the new config and checked while the kubelet still runs on Docker".into(),
        }
    }

    fn images_blocked(&self, facts: &Facts) -> Option<String> {
        (!facts.skopeo).then(|| "skopeo is not installed, and CRI-O's images are carried with it (apt-get install skopeo); CRI-O pulls them again".into())
    }
    fn image_dest(&self, _: &Facts, _: &Node) -> Result<Dest, Failure> {
        Ok(Dest::ContainersStorage)
    }
    fn links_images(&self) -> Result<(), &'static str> {
        Err("CRI-O's images go through skopeo")
    }
    fn carry_fix(&self) -> &'static str {
        "Check skopeo and /etc/containers/storage.conf, or run with --images none to let CRI-O pull them afterwards."
    }
}

/// Docker's registry certificates stay where they are: CRI-O (containers/image) reads
/// `/etc/containers/certs.d/<host>/`, and Docker's `/etc/docker/certs.d/<host>/` where the first
/// has no directory for the host (same file names: `*.crt`, `*.cert` + `*.key`). A host that has
/// one there is read from it alone: Docker's files are not used for it, said.
fn dockers_certificates(facts: &Facts, warnings: &mut Vec<Finding>) {
    use crate::inspect::runtimes::CONTAINERS_CERTS_D;
    let with_files = facts
        .docker
        .certs
        .iter()
        .filter(|c| !c.ca.is_empty() || !c.client.is_empty());
    for c in with_files {
        let host = &c.host;
        if facts.crio.certs_d.contains(host) {
            warnings.push(Finding::warning(
                "crio-certs-shadowed",
                format!("CRI-O reads the certificates for {host} from {CONTAINERS_CERTS_D}/{host}/, which the node has: Docker's in /etc/docker/certs.d/{host}/ are not used for it (containers/image takes the first of the two directories that exists)"),
                format!("copy the files of /etc/docker/certs.d/{host}/ into {CONTAINERS_CERTS_D}/{host}/ (same names), or remove that directory if Docker's are the ones in force"),
            ));
        } else {
            warnings.push(Finding::info(
                "certs-read-in-place",
                format!("CRI-O reads Docker's certificates for {host} where they are, in /etc/docker/certs.d/{host}/ (containers/image looks there when {CONTAINERS_CERTS_D}/{host}/ does not exist)"),
                "nothing to do; keep /etc/docker/certs.d when Docker's packages go (the files are the node's, not the packages')",
            ));
        }
    }
}

/// CRI-O's drop-in, the registries drop-in; what CRI-O cannot take, said.
fn crio_files(
    facts: &Facts,
    rv: Version,
    settings: &Carried,
    warnings: &mut Vec<Finding>,
) -> Result<RuntimeFiles, Failure> {
    let mut files = Vec::new();
    let docker_default = settings
        .workloads
        .default_handler
        .as_ref()
        .map(|s| s.value.clone());
    let node = crio_node(facts, rv, docker_default.as_deref(), warnings);
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
    let mut registries = vec![];
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
            registries = render::registries::registry_names(&facts.docker.settings);
        }
    }
    dockers_certificates(facts, warnings);
    if rv.at_least(1, 35) {
        for f in &facts.crio.insecure_registries_in {
            warnings.push(Finding::warning(
                "crio-insecure-registries",
                format!("{f} sets insecure_registries, which CRI-O {rv} ignores"),
                "list them in /etc/containers/registries.conf.d/ with insecure = true",
            ));
        }
    }
    Ok(RuntimeFiles { files, registries })
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

fn crio_node(
    facts: &Facts,
    rv: Version,
    docker_default: Option<&str>,
    warnings: &mut Vec<Finding>,
) -> CrioNode {
    let mut out = CrioNode::default();
    let crio = &facts.crio;
    // A program CRI-O runs, found on the node, else said.
    let mut needed = |name: &str, id: &'static str, what: &str, fix: &str| {
        let found = tool(facts, name).map(str::to_string);
        if found.is_none() {
            warnings.push(Finding::warning(id, what, fix));
        }
        found
    };
    // conmon: unless the config names one (or every runtime its own monitor_path).
    let monitors = !crio.runtimes.is_empty() && crio.runtimes.values().all(|r| r.monitor_path);
    if crio.conmon.is_none() && !monitors {
        out.conmon = needed("conmon", "crio-conmon-missing",
            "CRI-O runs every container under conmon, and the node has none (looked in the binary directories and /usr/libexec/crio)",
            "install conmon (the conmon package, or CRI-O's bundle) before applying",
        );
    }
    if crio.pinns_path.is_none() {
        out.pinns = needed(
            "pinns",
            "crio-pinns-missing",
            "CRI-O makes every pod's namespaces with pinns, and the node has none",
            "install CRI-O from its package or bundle (pinns comes with it) before applying",
        );
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
    use crate::render::crio::OciChoice;

    const BUNDLE: &str = "kubelet-1.31-cri-dockerd-to-crio-bundle";

    #[test]
    fn dockers_certificates_are_read_in_place_unless_containers_certs_d_has_the_host() {
        let mut f = facts("kubeadm-1.21-registries");
        let mut w = vec![];
        dockers_certificates(&f, &mut w);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].code, "certs-read-in-place");
        assert!(w[0]
            .message
            .contains("/etc/docker/certs.d/registry.corp.local/"));
        // A directory of its own for the host: CRI-O reads that one alone.
        f.crio.certs_d = vec!["registry.corp.local".into()];
        let mut w = vec![];
        dockers_certificates(&f, &mut w);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].code, "crio-certs-shadowed");
        assert_eq!(w[0].severity, crate::inspect::Severity::Warning);
    }

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
