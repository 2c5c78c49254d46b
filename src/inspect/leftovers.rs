//! What Docker leaves behind that can break the node once it runs on another runtime: address
//! reservations of its pods in host-local IPAM, a `live-restore` that keeps its containers
//! running after it stops, its iptables chains.

use crate::node::{join, Node};
use crate::system::Commands;
use serde::Serialize;

/// host-local's reservation directory (its default `dataDir`).
pub const CNI_NETWORKS: &str = "/var/lib/cni/networks";

/// One address host-local holds for a container that Docker ran (a dockershim sandbox).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reservation {
    pub network: String,
    pub ip: String,
    /// The node path of the reservation file.
    pub path: String,
    pub container: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Leftovers {
    /// Reservations whose container is one of Docker's: their pods will not exist on the new
    /// runtime, the addresses stay taken until released.
    pub ipam_reservations: Vec<Reservation>,
    /// Docker keeps its containers running when it stops (`live-restore` in daemon.json).
    pub live_restore: bool,
    /// Docker's iptables chains, `table/chain` (live node, where `iptables-save` runs).
    pub iptables_chains: Vec<String>,
    /// Pod slices systemd has loaded (`kubepods-*pod*.slice`, live node): made for the pods
    /// Docker runs, they outlive its containers.
    pub pod_slices: Vec<String>,
}

/// Docker's container IDs: the directories of its data root.
fn docker_container_ids(node: &Node, data_root: &str) -> Vec<String> {
    node.list(&join(data_root, "containers"))
        .into_iter()
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

pub fn inspect(
    node: &Node,
    cmds: &dyn Commands,
    data_root: Option<&str>,
    daemon_other: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Leftovers {
    let ids = docker_container_ids(node, data_root.unwrap_or("/var/lib/docker"));
    let mut ipam = Vec::new();
    if !ids.is_empty() {
        for net in node.list(CNI_NETWORKS) {
            let dir = join(CNI_NETWORKS, &net);
            for name in node.list(&dir) {
                if name.parse::<std::net::IpAddr>().is_err() {
                    continue; // last_reserved_ip.0, lock
                }
                let path = join(&dir, &name);
                let Ok(Some(text)) = node.read(&path) else {
                    continue;
                };
                let container = text.lines().next().unwrap_or("").trim().to_string();
                if ids.contains(&container) {
                    ipam.push(Reservation {
                        network: net.clone(),
                        ip: name.clone(),
                        path,
                        container,
                    });
                }
            }
        }
    }
    let iptables_chains = if node.is_live() {
        cmds.output("iptables-save", &[])
            .map(|out| docker_chains(&out))
            .unwrap_or_default()
    } else {
        vec![]
    };
    let pod_slices = if node.is_live() {
        cmds.output(
            "systemctl",
            &[
                "list-units",
                "--type=slice",
                "--all",
                "--no-legend",
                "--plain",
                "kubepods-*pod*.slice",
                "kubepods-pod*.slice",
            ],
        )
        .map(|out| pod_slices(&out))
        .unwrap_or_default()
    } else {
        vec![]
    };
    Leftovers {
        pod_slices,
        ipam_reservations: ipam,
        live_restore: daemon_other
            .get("live-restore")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        iptables_chains,
    }
}

/// The slice names from `systemctl list-units --plain --no-legend` output.
pub fn pod_slices(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| u.starts_with("kubepods") && u.contains("pod") && u.ends_with(".slice"))
        .filter(|u| u.matches("pod").count() >= 2) // kubepods-...-pod<uid>, not the QoS slices
        .map(str::to_string)
        .collect()
}

/// `table/chain` for each chain Docker made, from `iptables-save` output.
pub fn docker_chains(save: &str) -> Vec<String> {
    let mut table = "";
    let mut out = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
        } else if let Some(decl) = line.strip_prefix(':') {
            let chain = decl.split_whitespace().next().unwrap_or("");
            if chain == "DOCKER" || chain.starts_with("DOCKER-") {
                out.push(format!("{table}/{chain}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::NoCommands;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn reservations_of_dockers_containers_are_found_and_no_others() {
        let config = format!("/var/lib/docker/containers/{ID}/config.v2.json");
        let ours = format!("{ID}\neth0\n");
        let (_d, node) = crate::node::test_node(&[
            (&config, "{}"),
            ("/var/lib/cni/networks/cbr0/10.244.1.5", &ours),
            (
                "/var/lib/cni/networks/cbr0/10.244.1.6",
                "someone-else\neth0\n",
            ),
            (
                "/var/lib/cni/networks/cbr0/last_reserved_ip.0",
                "10.244.1.6",
            ),
            ("/var/lib/cni/networks/cbr0/lock", ""),
        ]);
        let l = inspect(&node, &NoCommands, None, &Default::default());
        assert_eq!(
            l.ipam_reservations,
            vec![Reservation {
                network: "cbr0".into(),
                ip: "10.244.1.5".into(),
                path: "/var/lib/cni/networks/cbr0/10.244.1.5".into(),
                container: ID.into(),
            }]
        );
        // Docker under another data root: its containers are looked for there.
        let l = inspect(
            &node,
            &NoCommands,
            Some("/data/docker"),
            &Default::default(),
        );
        assert!(l.ipam_reservations.is_empty());
        let other = [("live-restore".to_string(), serde_json::Value::Bool(true))]
            .into_iter()
            .collect();
        assert!(inspect(&node, &NoCommands, None, &other).live_restore);
    }

    #[test]
    fn pod_slices_from_systemctl() {
        let out = "kubepods-besteffort-pod0b5e7a52_1c3d.slice loaded active active libcontainer container kubepods-besteffort-pod0b5e7a52_1c3d.slice\nkubepods-burstable.slice loaded active active slice\nkubepods-pod1_2.slice loaded inactive dead x\n";
        assert_eq!(
            pod_slices(out),
            [
                "kubepods-besteffort-pod0b5e7a52_1c3d.slice",
                "kubepods-pod1_2.slice"
            ]
        );
    }

    #[test]
    fn dockers_chains_from_iptables_save() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A PREROUTING -j DOCKER\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\n:DOCKER-USER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n:KUBE-FORWARD - [0:0]\nCOMMIT\n";
        assert_eq!(
            docker_chains(save),
            [
                "nat/DOCKER",
                "filter/DOCKER-USER",
                "filter/DOCKER-ISOLATION-STAGE-1"
            ]
        );
    }
}
