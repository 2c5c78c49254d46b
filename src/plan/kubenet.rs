//! kubenet, dockershim's built-in network plugin (`--network-plugin=kubenet`: kops, several
//! managed node images), has no CRI equivalent: a runtime only runs the CNI configs it finds.
//! A kubenet node gets the CNI config that does what kubenet did — a `cbr0` bridge with the
//! node's pod CIDR from host-local, the default route through it (host-local's route: the
//! bridge's `isDefaultGateway` would add it a second time), hairpin traffic, host ports —
//! as GKE's and kops's kubenet nodes got when they moved to containerd.

use super::*;

/// The file it is written to, in the CNI config directory.
pub const CONFIG_NAME: &str = "10-cri-migrate-kubenet.conflist";

/// The kubenet CNI config, when the kubelet is on kubenet: `None` otherwise.
pub(super) fn kubenet_files(
    facts: &Facts,
    opts: &PlanOptions,
    settings: &Carried,
) -> Result<Said<Vec<FileChange>>, Failure> {
    let mut warnings = Vec::new();
    let k = &facts.kubelet;
    if !k.on_kubenet() {
        return Ok(Said {
            value: vec![],
            warnings,
        });
    }
    let (cidr, from) = match (&opts.pod_cidr, k.pod_cidr(), &facts.kubenet_pod_cidr) {
        (Some(c), _, _) => (c.clone(), "--pod-cidr".to_string()),
        (None, Some(found), _) => found,
        (None, None, Some(live)) => live.clone(),
        (None, None, None) => {
            return Err(Failure::preflight(
                "the kubelet uses kubenet (--network-plugin=kubenet), which no CRI runtime has, and the node's pod CIDR is not on the node (no --pod-cidr, no podCIDR in the kubelet's config): the CNI config that replaces kubenet needs it",
                "Pass it with --pod-cidr, from the Node object: kubectl get node NAME -o jsonpath='{.spec.podCIDR}' (a live run finds it itself where kubectl reaches the API or kubenet's cbr0 bridge is up).",
            ))
        }
    };
    if !valid_cidr(&cidr) {
        return Err(Failure::preflight(
            format!("the pod CIDR {cidr} ({from}) is not a network in CIDR notation"),
            "Pass the Node's .spec.podCIDR with --pod-cidr, e.g. --pod-cidr 100.96.3.0/24.",
        ));
    }
    let v6 = cidr.contains(':');
    let config = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kubenet",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cbr0",
                "isGateway": true,
                "hairpinMode": true,
                "ipMasq": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr}]],
                    "routes": [{"dst": if v6 { "::/0" } else { "0.0.0.0/0" }}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "externalSetMarkChain": "KUBE-MARK-MASQ"},
        ],
    });
    let dir = &settings.cni_conf_dir.value;
    let path = join(dir, CONFIG_NAME);
    // Any other config in the directory sorts first or last: the runtime takes the first.
    let others: Vec<&String> = facts
        .cni
        .conf_files
        .iter()
        .filter(|f| f.as_str() != CONFIG_NAME)
        .collect();
    if !others.is_empty() {
        warnings.push(Finding::warning(
            "kubenet-beside-cni-configs",
            format!("{dir} already holds {}, which kubenet never read; the runtime takes the first config by name", others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
            format!("remove them, or check that {CONFIG_NAME} is the one the runtime loads"),
        ));
    }
    warnings.push(Finding::info(
        "kubenet-replaced",
        format!("the kubelet uses kubenet, which no CRI runtime has: {path} does what it did (bridge cbr0, host-local addresses from {cidr} ({from}), hairpin, host ports); its masquerade covers traffic leaving the pod CIDR, where kubenet's spared --non-masquerade-cidr"),
        "where pods must keep their addresses towards other networks, run ip-masq-agent (as GKE does) with kubenet's non-masquerade CIDR",
    ));
    let text = serde_json::to_string_pretty(&config).expect("a JSON value") + "\n";
    let value = vec![change(
        facts,
        (FileGroup::Runtime, Format::Json),
        &path,
        text,
        &format!("the CNI config that replaces kubenet (pod CIDR {cidr} from {from})"),
    )];
    Ok(Said { value, warnings })
}

/// `A.B.C.D/N` (N ≤ 32) or an IPv6 network `X::/N` (N ≤ 128).
pub fn valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, opts};
    use super::*;

    fn with_kubenet(pod_cidr: Option<&str>) -> Facts {
        let mut f = facts("kubeadm-1.20-docker");
        for (name, value) in [("network-plugin", Some("kubenet")), ("pod-cidr", pod_cidr)] {
            if let Some(v) = value {
                f.kubelet.flags.push(crate::inspect::kubelet::FoundFlag {
                    name: name.into(),
                    value: Some(v.into()),
                    file: crate::inspect::kubelet::KUBEADM_FLAGS.into(),
                    var: "KUBELET_KUBEADM_ARGS".into(),
                    line: 1,
                });
            }
        }
        f
    }

    #[test]
    fn a_kubenet_node_gets_a_bridge_for_its_pod_cidr() {
        let f = with_kubenet(Some("100.96.3.0/24"));
        let o = opts(Target::Containerd);
        let mut w = vec![];
        let c = super::super::settings::carried(&f, &o, Target::Containerd).said_to(&mut w);
        let files = kubenet_files(&f, &o, &c).unwrap().said_to(&mut w);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, format!("/etc/cni/net.d/{CONFIG_NAME}"));
        let v: serde_json::Value = serde_json::from_str(&files[0].new).unwrap();
        assert_eq!(v["plugins"][0]["type"], "bridge");
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "100.96.3.0/24"
        );
        assert_eq!(v["plugins"][1]["type"], "portmap");
        assert!(w.iter().any(|x| x.code == "kubenet-replaced"));
        // The fixture's calico config is there too: said.
        assert!(w.iter().any(|x| x.code == "kubenet-beside-cni-configs"));
        // --pod-cidr wins; without any, refused naming the way to find it; a bad one refused.
        let mut o2 = opts(Target::Containerd);
        o2.pod_cidr = Some("fd00:10:244:1::/64".into());
        let files = kubenet_files(&f, &o2, &c).unwrap().said_to(&mut w);
        assert!(files[0].new.contains("fd00:10:244:1::/64") && files[0].new.contains("::/0"));
        let e = kubenet_files(&with_kubenet(None), &o, &c).unwrap_err();
        assert!(e.to_string().contains("--pod-cidr"), "{e}");
        // Found on the live node (the Node object, kubenet's bridge): used, and said so.
        let mut live = with_kubenet(None);
        live.kubenet_pod_cidr = Some(("100.96.7.0/24".into(), "kubenet's cbr0 bridge".into()));
        let files = kubenet_files(&live, &o, &c).unwrap().said_to(&mut w);
        assert!(files[0].new.contains("100.96.7.0/24"));
        assert!(
            files[0].why.contains("kubenet's cbr0 bridge"),
            "{}",
            files[0].why
        );
        let e = kubenet_files(&with_kubenet(Some("10.1.2.0")), &o, &c).unwrap_err();
        assert!(e.to_string().contains("CIDR notation"), "{e}");
        // Not on kubenet: nothing.
        assert!(kubenet_files(&facts("kubeadm-1.20-docker"), &o, &c)
            .unwrap()
            .said_to(&mut w)
            .is_empty());
    }
}
