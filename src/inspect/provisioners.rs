//! What provisions the node again at boot and would put Docker back: an enabled unit that runs
//! a configuration agent or installer (kOps's `nodeup` in kops-configuration.service,
//! ansible-pull, chef-client, puppet, salt-call) or a script that writes Docker's or the
//! kubelet's files; cloud-init's per-boot and per-instance scripts and `bootcmd`; rc.local.
//! Said as a warning with the source of truth to change: a migration they undo is not one.
//!
//! Everything is read from the node's files (never run), each at most [`MAX_FILE_BYTES`], at
//! most [`MAX_UNITS`] enabled units and [`MAX_FILES`] files in all.

use super::Finding;
use crate::node::{join, Node};
use crate::unit::Unit;

const MAX_UNITS: usize = 1000;
/// A unit (file and drop-ins) larger than this is not read here; all of them together at most
/// [`MAX_UNIT_BYTES_TOTAL`].
const MAX_UNIT_BYTES: u64 = 256 << 10;
const MAX_UNIT_BYTES_TOTAL: u64 = 16 << 20;
const MAX_FILES: usize = 64;
const MAX_FILE_BYTES: u64 = 256 << 10;

/// Units of the runtimes and the kubelet: what the migration itself changes.
const OWN_UNITS: [&str; 8] = [
    "docker.service",
    "docker.socket",
    "containerd.service",
    "crio.service",
    "kubelet.service",
    "cri-docker.service",
    "cri-docker.socket",
    "cri-dockerd.service",
];

/// Configuration agents and installers that apply a node's configuration from a source of
/// their own when they run: (program, who, how its source is changed).
const AGENTS: [(&str, &str, &str); 6] = [
    ("nodeup", "kOps", "set `spec.containerRuntime: containerd` in the cluster spec (`kops edit cluster`), then `kops update cluster --yes` and `kops rolling-update cluster --yes`: kOps then moves its nodes itself"),
    ("ansible-pull", "Ansible (ansible-pull)", "change the playbook in its repository so that it installs the new runtime and the kubelet's flags for it"),
    ("chef-client", "Chef", "change the node's run list or cookbook attributes so that they install the new runtime"),
    ("puppet", "Puppet", "change the node's classes or Hiera data so that they install the new runtime"),
    ("salt-call", "Salt", "change the node's states or pillar so that they install the new runtime"),
    ("salt-minion", "Salt", "change the node's states or pillar so that they install the new runtime"),
];

/// What in a provisioning file shows that it installs or configures Docker or the kubelet's
/// Docker-era flags (lower case, as searched).
const MARKERS: [&str; 14] = [
    "daemon.json",
    "docker-ce",
    "docker.io",
    "docker-engine",
    "docker.service",
    "dockerd",
    "dockershim",
    "cri-dockerd",
    "containerruntime: docker",
    "container_manager: docker",
    "--container-runtime=docker",
    "--network-plugin",
    "kubeadm-flags.env",
    "sysconfig/kubelet",
];

struct Budget {
    files: usize,
    /// The bytes of the units read so far (their files, drop-ins and environment files).
    unit_bytes: u64,
}

impl Budget {
    /// Whether a unit of `size` bytes may still be read: at most [`MAX_UNIT_BYTES`] each,
    /// [`MAX_UNIT_BYTES_TOTAL`] in all. Counted when it may.
    fn take_unit(&mut self, size: u64) -> bool {
        if size > MAX_UNIT_BYTES || self.unit_bytes + size > MAX_UNIT_BYTES_TOTAL {
            return false;
        }
        self.unit_bytes += size;
        true
    }

    /// A file's text, lower case, if it is a regular file within the limits.
    fn read(&mut self, node: &Node, path: &str) -> Option<String> {
        if self.files >= MAX_FILES || !path.starts_with('/') {
            return None;
        }
        self.files += 1;
        let bytes = node.read_bytes(path, MAX_FILE_BYTES).ok().flatten()?;
        Some(String::from_utf8_lossy(&bytes).to_lowercase())
    }
}

/// The first marker the text holds.
fn marker(text: &str) -> Option<&'static str> {
    MARKERS.iter().copied().find(|m| text.contains(m))
}

/// The node's re-provisioning units and scripts, each a warning.
pub fn findings(node: &Node) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut budget = Budget {
        files: 0,
        unit_bytes: 0,
    };
    for name in enabled_units(node) {
        if let Some(f) = unit_finding(node, &name, &mut budget) {
            out.push(f);
        }
    }
    out.extend(cloud_init(node, &mut budget));
    if node.is_executable("/etc/rc.local") {
        if let Some(m) = budget
            .read(node, "/etc/rc.local")
            .as_deref()
            .and_then(marker)
        {
            out.push(Finding::warning(
                "reprovisioned-at-boot",
                format!("/etc/rc.local runs at every boot and sets up Docker or the kubelet for it (it holds `{m}`): the next boot may undo the migration"),
                "change /etc/rc.local for the new runtime (or remove what it does for Docker) before the node reboots",
            ));
        }
    }
    out
}

/// Units enabled by `systemctl enable` (links in /etc/systemd/system/*.wants and *.requires),
/// each once, at most [`MAX_UNITS`].
fn enabled_units(node: &Node) -> Vec<String> {
    let dir = "/etc/systemd/system";
    let mut units: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for d in node
        .list(dir)
        .into_iter()
        .filter(|d| d.ends_with(".wants") || d.ends_with(".requires"))
        .take(MAX_UNITS)
    {
        for name in node.list(&join(dir, &d)) {
            if units.len() >= MAX_UNITS {
                break;
            }
            if name.ends_with(".service")
                && !OWN_UNITS.contains(&name.as_str())
                && seen.insert(name.clone())
            {
                units.push(name);
            }
        }
    }
    units
}

/// The bytes of a unit's files where systemd finds them (its file in each unit directory, the
/// drop-ins of its `.d` directories), from their metadata: what reading it would cost. A
/// directory with more than 64 entries counts as too large.
fn unit_size(node: &Node, name: &str) -> u64 {
    let size = |p: &str| node.metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut total = 0;
    for dir in crate::unit::UNIT_DIRS {
        total += size(&join(dir, name));
        let d = join(dir, &format!("{name}.d"));
        let entries = node.list(&d);
        if entries.len() > 64 {
            return u64::MAX;
        }
        total += entries.iter().map(|e| size(&join(&d, e))).sum::<u64>();
    }
    total
}

fn unit_finding(node: &Node, name: &str, budget: &mut Budget) -> Option<Finding> {
    // Its files' sizes first, then (once its file says which) its environment files': a unit
    // is read only within the budget.
    if !budget.take_unit(unit_size(node, name)) {
        return None;
    }
    let unit = Unit::load(node, name).ok().flatten()?;
    // A path with a specifier cannot be measured before it is read: such a unit is passed over.
    let env_bytes = unit
        .env_file_paths()
        .map(|(_, p)| match p.contains('%') {
            true => u64::MAX,
            false => node.metadata(p).map(|m| m.len()).unwrap_or(0),
        })
        .fold(0u64, u64::saturating_add);
    if !budget.take_unit(env_bytes) {
        return None;
    }
    let command = unit.command(node).ok().flatten()?;
    let argv = command.args();
    let program = argv.first()?;
    let base = program.rsplit('/').next().unwrap_or(program);
    let at = unit.fragment.clone().unwrap_or_else(|| name.to_string());
    // The files its command names (`--conf=/opt/kops/conf/kube_env.yaml`, a script).
    let mut evidence = None;
    for word in &argv {
        let path = word.rsplit_once('=').map(|(_, p)| p).unwrap_or(word);
        if let Some(m) = budget.read(node, path).as_deref().and_then(marker) {
            evidence = Some(format!("{path} holds `{m}`"));
            break;
        }
    }
    let joined = argv.join(" ");
    let shown: String = crate::terminal::for_terminal(&joined, false)
        .chars()
        .take(200)
        .collect();
    let shown = if shown.len() < joined.len() {
        format!("{shown}…")
    } else {
        shown
    };
    if let Some((_, who, fix)) = AGENTS.iter().find(|(p, _, _)| *p == base) {
        return Some(Finding::warning(
            "reprovisioned-at-boot",
            format!(
                "{name} ({at}) runs {who} at every boot (`{shown}`), which applies the node's configuration from its own source{}: the next boot puts Docker back",
                evidence.map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            format!("{fix}; or, to keep this node as migrated, disable the unit (`systemctl disable {name}`), knowing {who} no longer manages it"),
        ));
    }
    let evidence = evidence?;
    Some(Finding::warning(
        "reprovisioned-at-boot",
        format!("{name} ({at}) runs `{shown}` at every boot and sets up Docker or the kubelet for it ({evidence}): the next boot may undo the migration"),
        format!("change what it installs to the new runtime, or disable it (`systemctl disable {name}`), before the node reboots"),
    ))
}

/// cloud-init's scripts that run again: per-boot at every boot, per-instance at the first boot
/// of each new instance of the image; `bootcmd` of the instance's cloud-config at every boot.
fn cloud_init(node: &Node, budget: &mut Budget) -> Vec<Finding> {
    let mut out = Vec::new();
    for (dir, when, fix) in [
        ("/var/lib/cloud/scripts/per-boot", "at every boot", "change the script (or the user data that writes it) for the new runtime before the node reboots"),
        ("/var/lib/cloud/scripts/per-instance", "at the first boot of every new instance made from this node's image or user data", "change the user data (the launch template or its equivalent) so that new nodes come up on the new runtime"),
    ] {
        for name in node.list(dir).into_iter().take(MAX_UNITS) {
            let path = join(dir, &name);
            if let Some(m) = budget.read(node, &path).as_deref().and_then(marker) {
                out.push(Finding::warning(
                    "reprovisioned-at-boot",
                    format!("cloud-init runs {path} {when}, and it sets up Docker or the kubelet for it (it holds `{m}`)"),
                    fix,
                ));
            }
        }
    }
    let config = "/var/lib/cloud/instance/cloud-config.txt";
    if let Some(text) = budget.read(node, config) {
        if let Some(i) = text.find("bootcmd:") {
            // The bootcmd list: up to the next top-level key.
            let rest = &text[i + "bootcmd:".len()..];
            let end = rest
                .match_indices('\n')
                .find(|(j, _)| rest[j + 1..].starts_with(|c: char| c.is_ascii_alphabetic()))
                .map(|(j, _)| j)
                .unwrap_or(rest.len());
            if let Some(m) = marker(&rest[..end]) {
                out.push(Finding::warning(
                    "reprovisioned-at-boot",
                    format!("cloud-init runs the bootcmd of {config} at every boot, and it sets up Docker or the kubelet for it (it holds `{m}`)"),
                    "change the user data's bootcmd for the new runtime before the node reboots",
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_node;

    #[test]
    fn kops_nodeup_at_boot_is_said_with_the_source_to_change() {
        let unit = "[Service]\nExecStart=/opt/kops/bin/nodeup --conf=/opt/kops/conf/kube_env.yaml --v=8\nType=oneshot\n\n[Install]\nWantedBy=multi-user.target\n";
        let (_d, n) = test_node(&[
            ("/etc/systemd/system/kops-configuration.service", unit),
            ("/etc/systemd/system/multi-user.target.wants/kops-configuration.service", unit),
            ("/opt/kops/conf/kube_env.yaml", "Assets:\n  amd64:\n  - abc@https://download.docker.com/linux/static/stable/x86_64/docker-20.10.17.tgz\n"),
        ]);
        let f = findings(&n);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].code, "reprovisioned-at-boot");
        assert!(
            f[0].message.contains("kOps") && f[0].message.contains("kube_env.yaml"),
            "{}",
            f[0].message
        );
        assert!(f[0].fix.contains("spec.containerRuntime: containerd"));
    }

    #[test]
    fn a_script_unit_that_installs_docker_is_said_and_one_that_prunes_is_not() {
        let setup = "[Service]\nExecStart=/usr/local/bin/setup-node.sh\n";
        let prune = "[Service]\nExecStart=/usr/bin/docker system prune -f\n";
        let (_d, n) = test_node(&[
            ("/etc/systemd/system/setup-node.service", setup),
            ("/etc/systemd/system/multi-user.target.wants/setup-node.service", setup),
            ("/usr/local/bin/setup-node.sh", "#!/bin/sh\napt-get install -y docker-ce\n"),
            ("/etc/systemd/system/prune.service", prune),
            ("/etc/systemd/system/multi-user.target.wants/prune.service", prune),
            ("/var/lib/cloud/scripts/per-boot/10-kubelet.sh", "#!/bin/sh\necho 'KUBELET_KUBEADM_ARGS=--network-plugin=cni' > /var/lib/kubelet/kubeadm-flags.env\n"),
            ("/var/lib/cloud/instance/cloud-config.txt", "#cloud-config\nbootcmd:\n  - [ sh, -c, 'systemctl start dockerd' ]\nruncmd:\n  - echo hi\n"),
        ]);
        let f = findings(&n);
        let said: Vec<&str> = f.iter().map(|x| x.message.as_str()).collect();
        assert_eq!(f.len(), 3, "{said:#?}");
        assert!(said[0].contains("setup-node.service") && said[0].contains("docker-ce"));
        assert!(said[1].contains("per-boot/10-kubelet.sh") && said[1].contains("every boot"));
        assert!(said[2].contains("bootcmd"));
    }

    /// A hostile image: units too large to be worth reading are skipped, never read.
    #[test]
    fn a_huge_unit_is_not_read() {
        let big = format!(
            "[Service]\nExecStart=/opt/kops/bin/nodeup\n{}",
            "# padding\n".repeat(40_000)
        );
        let (_d, n) = test_node(&[
            ("/etc/systemd/system/big.service", big.as_str()),
            (
                "/etc/systemd/system/multi-user.target.wants/big.service",
                big.as_str(),
            ),
        ]);
        assert!(unit_size(&n, "big.service") > MAX_UNIT_BYTES);
        assert!(findings(&n).is_empty());
        // A small unit whose environment file is large, or cannot be measured: not read either.
        let small =
            "[Service]\nEnvironmentFile=/etc/default/big\nExecStart=/opt/kops/bin/nodeup $A\n";
        let spec = "[Service]\nEnvironmentFile=%E/default/big\nExecStart=/opt/kops/bin/nodeup $A\n";
        let env = format!("A={}\n", "x".repeat(300 << 10));
        // Both units enabled, the environment file as given.
        let with_env = |content: &str| {
            test_node(&[
                ("/etc/systemd/system/small.service", small),
                (
                    "/etc/systemd/system/multi-user.target.wants/small.service",
                    small,
                ),
                ("/etc/systemd/system/spec.service", spec),
                (
                    "/etc/systemd/system/multi-user.target.wants/spec.service",
                    spec,
                ),
                ("/etc/default/big", content),
            ])
        };
        let (_d2, n2) = with_env(&env);
        assert!(findings(&n2).is_empty());
        let (_d3, n3) = with_env("A=--v=2\n");
        let f = findings(&n3);
        assert_eq!(
            f.len(),
            1,
            "the small unit with a small file is read: {f:?}"
        );
        assert!(f[0].message.starts_with("small.service"));
    }
}
