//! Phase 5: the order (is the runtime checked before the cutover?) and the service actions.

use super::*;

/// What the order and the actions are made from: the node, the options, and what the earlier
/// phases decided (versions, endpoint, files, settings).
#[derive(Clone, Copy)]
pub(super) struct Decided<'a> {
    pub facts: &'a Facts,
    pub opts: &'a PlanOptions,
    pub v: &'a Versions,
    pub endpoint: &'a str,
    pub files: &'a [FileChange],
    pub settings: &'a Carried,
}

/// The order and the actions; `--no-sandbox` takes the test pod out, said.
pub(super) fn service_actions(d: &Decided) -> Said<(Order, Vec<Action>)> {
    let Decided { facts, opts, v, .. } = *d;
    let mut warnings = Vec::new();
    let (target, from) = (opts.target, v.from);
    let order = order(facts, target, from);
    if !order.check_before_cutover && from.is_docker() {
        warnings.push(Finding::info(
            "checked-after-cutover",
            format!(
                "{} is checked after the kubelet and Docker stop: {}",
                target.name(),
                order.why
            ),
            "a failed check then rolls back to Docker; the kubelet is down meanwhile",
        ));
    }
    let actions = actions(d, &order);
    let actions: Vec<Action> = if opts.no_sandbox {
        warnings.push(Finding::info(
            "sandbox-check-skipped",
            "no test pod runs (--no-sandbox): the runtime is checked by Version, Status and a pull, which prove neither the cgroup driver nor CNI nor the sandbox image",
            "run `cri-migrate verify` once the kubelet is back",
        ));
        actions
            .into_iter()
            .filter(|a| !matches!(a, Action::CheckSandbox { .. }))
            .collect()
    } else {
        actions
    };
    Said {
        value: (order, actions),
        warnings,
    }
}

/// Can the target runtime come up with its new config while the kubelet still runs on Docker?
pub fn order(facts: &Facts, target: Target, from: RuntimeKind) -> Order {
    let no = |why: String| Order {
        check_before_cutover: false,
        why,
    };
    if !from.is_docker() {
        return no(format!(
            "the kubelet runs on {}, not Docker: the runtimes cannot be told apart before the cutover",
            from.name()
        ));
    }
    let runtime = crate::runtime::registry::of(target);
    if !runtime
        .installed(facts)
        .units
        .iter()
        .any(|u| u == target.unit())
    {
        return no(format!("{} has no unit on this node yet", target.unit()));
    }
    // Docker's unit tied to the target's (docker-ce 18.09–19.03: `BindsTo=containerd.service`):
    // systemd restarts or stops Docker with it, and every container with Docker, while the
    // kubelet still runs on Docker. The runtime is then (re)started only at the cutover.
    let tie = facts
        .runtimes
        .docker
        .tied_to
        .iter()
        .find(|t| t.unit == target.unit());
    if let Some(tie) = tie {
        return no(format!(
            "docker.service has {tie}: restarting {} beside Docker would make systemd restart Docker and stop every container while the kubelet still runs on it, so {} is restarted with its new config only after Docker stops, at the cutover",
            target.unit(),
            target.name()
        ));
    }
    runtime.beside_docker(facts)
}

/// Docker's units a migration off Docker stops and disables (the socket first, or socket
/// activation starts Docker again), cri-dockerd's before them.
fn docker_units(facts: &Facts, from: RuntimeKind, target: Target) -> Vec<&'static str> {
    let mut units: Vec<&str> = Vec::new();
    if !from.is_docker() || from == crate::runtime::registry::of(target).kind() {
        return units;
    }
    if from == RuntimeKind::CriDockerd {
        units.extend(
            ["cri-docker.socket", "cri-docker.service"]
                .iter()
                .filter(|u| facts.runtimes.cri_dockerd.units.iter().any(|x| x == *u)),
        );
    }
    let present = |u: &str| facts.runtimes.docker.units.iter().any(|x| x == u);
    if present("docker.socket") {
        units.push("docker.socket");
    }
    if present("docker.service") || facts.runtimes.docker.installed {
        units.push("docker.service");
    }
    units
}

/// The stops of the cutover: the kubelet's, Docker's (those in `early` go on once its containers
/// exited), and the release of the addresses Docker's pods held, which nothing else frees once
/// Docker stopped them.
struct Stops {
    kubelet: Action,
    docker: Vec<Action>,
    release: Option<Action>,
}

impl Stops {
    /// Every stop, then the files of `group` (and the reload they need).
    fn then_files(self, group: FileGroup, reload: Option<Action>) -> Vec<Action> {
        let mut a = vec![self.kubelet];
        a.extend(self.docker);
        a.extend(self.release);
        a.push(Action::WriteFiles { group });
        a.extend(reload);
        a
    }
}

fn stops(facts: &Facts, docker_units: &[&str], early: &[String]) -> Stops {
    let stop = |u: &str| Action::Stop {
        unit: u.to_string(),
        until_exited: early
            .iter()
            .any(|e| e == u)
            .then(|| crate::images::docker::SOCKET.to_string()),
    };
    let release =
        (!docker_units.is_empty() && !facts.leftovers.ipam_reservations.is_empty()).then(|| {
            Action::ReleaseAddresses {
                reservations: facts
                    .leftovers
                    .ipam_reservations
                    .iter()
                    .map(|r| (r.path.clone(), r.container.clone()))
                    .collect(),
            }
        });
    Stops {
        kubelet: stop("kubelet.service"),
        docker: docker_units.iter().map(|u| stop(u)).collect(),
        release,
    }
}

/// Version, pull, test pod — everything the kubelet will ask of the runtime — and a test pod
/// through each handler carried from Docker whose runtime is on the node (the default one is
/// proved by the first pod).
fn runtime_checks(
    facts: &Facts,
    opts: &PlanOptions,
    endpoint: &str,
    image: &str,
    settings: &Carried,
) -> Vec<Action> {
    let sandbox = |runtime_handler: Option<String>| Action::CheckSandbox {
        endpoint: endpoint.into(),
        image: image.into(),
        cgroup_driver: crate::cri::sandbox::CgroupDriver::of_kubelet(
            facts.kubelet.cgroup_driver.as_deref(),
        )
        .name()
        .into(),
        cluster_dns: facts.kubelet.cluster_dns.clone(),
        cluster_domain: facts.kubelet.cluster_domain.clone(),
        runtime_handler,
    };
    let mut checks = vec![
        Action::Restart {
            unit: opts.target.unit().to_string(),
        },
        Action::WaitForSocket {
            endpoint: endpoint.into(),
            timeout_secs: opts.timeout_secs,
        },
        Action::VerifyPull {
            endpoint: endpoint.into(),
            image: image.into(),
            providers: facts.kubelet.credential_providers(),
        },
        sandbox(None),
    ];
    let default = settings
        .workloads
        .default_handler
        .as_ref()
        .map(|d| &d.value);
    checks.extend(
        settings
            .workloads
            .handlers
            .iter()
            .filter(|h| h.on_node && Some(&h.name) != default)
            .map(|h| sandbox(Some(h.name.clone()))),
    );
    checks
}

fn actions(d: &Decided, order: &Order) -> Vec<Action> {
    let Decided {
        facts,
        opts,
        v,
        endpoint,
        files,
        settings,
    } = *d;
    let (target, from, rv, timeout) = (opts.target, v.from, v.rv, opts.timeout_secs);
    let unit = |u: &str| u.to_string();
    let docker_units = docker_units(facts, from, target);
    // With the runtime already up and checked, the kubelet may start once Docker's containers
    // have exited (no pod twice at once); dockerd's own shutdown after them then overlaps the
    // kubelet's start instead of adding to the pods' downtime, and is waited for after it.
    let early: Vec<String> = docker_units
        .iter()
        .filter(|u| order.check_before_cutover && u.starts_with("docker."))
        .map(|u| unit(u))
        .collect();
    let stops = stops(facts, &docker_units, &early);
    let reload = |group: FileGroup| {
        files
            .iter()
            .any(|f| f.unit_file && group.contains(f.group))
            .then_some(Action::DaemonReload)
    };
    let image = settings
        .sandbox_image
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(|| super::checks::default_pause(target, rv));
    let checks = runtime_checks(facts, opts, endpoint, &image, settings);
    // The moved root labelled before the runtime starts there.
    let labels: Vec<Action> = settings
        .workloads
        .relabel
        .iter()
        .map(|(path, like)| Action::SelinuxLabels {
            path: path.clone(),
            like: like.clone(),
        })
        .collect();
    let start_kubelet = Action::Start {
        unit: unit("kubelet.service"),
    };
    let wait_kubelet = Action::WaitActive {
        unit: unit("kubelet.service"),
        timeout_secs: timeout * 2,
    };
    let mut a = Vec::new();
    let kubelet = || unit("kubelet.service");
    if order.check_before_cutover {
        // The runtime first, checked while the kubelet still runs on Docker; only then the
        // cutover, which then holds no more than the kubelet's restart on the new socket.
        a.push(Action::WriteFiles {
            group: FileGroup::Runtime,
        });
        a.extend(reload(FileGroup::Runtime));
        a.extend(labels.clone());
        a.extend(checks);
        let held = !early.is_empty();
        if held {
            // The kubelet's start held at a gate (`system::gate`) that opens once Docker's
            // containers have exited: its files are written and its start queued while Docker
            // still stops them, and every start of it waits for them (no pod twice at once).
            // Nothing allocates addresses before the gate opens: Docker's go back before.
            a.push(Action::InstallGate { unit: kubelet() });
            a.push(stops.kubelet);
            a.extend(stops.release);
            a.push(Action::WriteFiles {
                group: FileGroup::Kubelet,
            });
            a.extend(reload(FileGroup::Kubelet));
            a.push(Action::StartHeld { unit: kubelet() });
            // cri-dockerd's stops first (waited for whole), then Docker's containers, then
            // Docker's units.
            let (plain, docker): (Vec<Action>, Vec<Action>) =
                stops.docker.into_iter().partition(|s| {
                    matches!(
                        s,
                        Action::Stop {
                            until_exited: None,
                            ..
                        }
                    )
                });
            a.extend(plain);
            a.push(Action::StopContainers {
                socket: crate::images::docker::SOCKET.to_string(),
            });
            a.extend(docker);
        } else {
            a.extend(stops.then_files(FileGroup::Kubelet, reload(FileGroup::Kubelet)));
        }
        a.push(start_kubelet);
        a.push(Action::CheckRuntime {
            endpoint: endpoint.into(),
        });
        if held {
            a.push(Action::WaitStopped {
                units: early,
                timeout_secs: timeout * 2,
            });
        }
        a.push(wait_kubelet);
        if held {
            a.push(Action::RemoveGate { unit: kubelet() });
        }
    } else {
        // Files change once the kubelet (and Docker) are stopped, so that a kubelet restarting
        // on its own in between never starts on half a migration.
        a.extend(stops.then_files(FileGroup::All, reload(FileGroup::All)));
        a.extend(labels);
        a.extend(checks);
        a.push(start_kubelet);
        a.push(wait_kubelet);
    }
    // What the next boot starts changes once the kubelet is back.
    a.extend(
        docker_units
            .iter()
            .map(|u| Action::Disable { unit: unit(u) }),
    );
    a.push(Action::Enable {
        unit: unit(target.unit()),
    });
    a
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts_with, opts};
    use super::super::versions::versions;
    use super::*;
    const EP: &str = "unix:///run/containerd/containerd.sock";

    fn decided<'a>(
        f: &'a Facts,
        o: &'a PlanOptions,
        v: &'a Versions,
        c: &'a Carried,
    ) -> Decided<'a> {
        Decided {
            facts: f,
            opts: o,
            v,
            endpoint: EP,
            files: &[],
            settings: c,
        }
    }

    #[test]
    fn no_sandbox_takes_the_test_pod_out_and_says_so() {
        let f = facts_with("kubeadm-1.20-docker", None);
        let mut o = opts(Target::Containerd);
        let mut w = vec![];
        let v = versions(&f, &o).unwrap().said_to(&mut w);
        let c = super::super::settings::carried(&f, &o, Target::Containerd).said_to(&mut w);
        let (_, with) = service_actions(&decided(&f, &o, &v, &c)).said_to(&mut w);
        assert!(with
            .iter()
            .any(|a| matches!(a, Action::CheckSandbox { .. })));
        o.no_sandbox = true;
        let (_, without) = service_actions(&decided(&f, &o, &v, &c)).said_to(&mut w);
        assert!(!without
            .iter()
            .any(|a| matches!(a, Action::CheckSandbox { .. })));
        assert_eq!(with.len(), without.len() + 1);
        assert!(w.iter().any(|f| f.code == "sandbox-check-skipped"));
        // Docker's units stop, the runtime's is enabled last.
        assert!(with
            .iter()
            .any(|a| matches!(a, Action::Stop { unit, .. } if unit == "docker.service")));
        assert!(
            matches!(with.last(), Some(Action::Enable { unit }) if unit == "containerd.service")
        );
    }

    #[test]
    fn a_containerd_that_kills_its_shims_is_checked_after_the_cutover() {
        // The EKS fixture's containerd.service has systemd's default KillMode.
        let f = facts_with("eks-al2-1.22-docker", Some("1.22.17"));
        let mut o = opts(Target::Containerd);
        o.runtime_version = Version::parse("1.6.19");
        let mut w = vec![];
        let v = versions(&f, &o).unwrap().said_to(&mut w);
        let c = super::super::settings::carried(&f, &o, Target::Containerd).said_to(&mut w);
        let (order, _) = service_actions(&decided(&f, &o, &v, &c)).said_to(&mut w);
        assert!(!order.check_before_cutover);
        assert!(order.why.contains("KillMode"), "{}", order.why);
        assert!(w.iter().any(|f| f.code == "checked-after-cutover"));
    }

    /// Issue 33 point 5: Docker bound to containerd (docker-ce 18.09–19.03) would be restarted,
    /// its containers stopped, by containerd's restart before the cutover.
    #[test]
    fn docker_bound_to_containerd_means_containerd_waits_for_the_cutover() {
        let mut f = facts_with("kubeadm-1.20-docker", None);
        f.runtimes.containerd.kill_mode = Some("process".into());
        let o = opts(Target::Containerd);
        let mut w = vec![];
        let v = versions(&f, &o).unwrap().said_to(&mut w);
        let c = super::super::settings::carried(&f, &o, Target::Containerd).said_to(&mut w);
        let (before, _) = service_actions(&decided(&f, &o, &v, &c)).said_to(&mut w);
        assert!(before.check_before_cutover, "{}", before.why);
        let tie = |dependency, unit: &str| crate::inspect::runtimes::Tie {
            dependency,
            unit: unit.into(),
            files: vec!["/lib/systemd/system/docker.service".into()],
        };
        f.runtimes.docker.tied_to = vec![tie("BindsTo", "containerd.service")];
        let (order, actions) = service_actions(&decided(&f, &o, &v, &c)).said_to(&mut w);
        assert!(!order.check_before_cutover);
        assert!(
            order.why.contains("BindsTo=containerd.service"),
            "{}",
            order.why
        );
        // containerd's restart comes after Docker's stop.
        let at = |p: &dyn Fn(&Action) -> bool| actions.iter().position(p).unwrap();
        let docker_stops =
            at(&|a| matches!(a, Action::Stop { unit, .. } if unit == "docker.service"));
        let restart = at(
            &|a| matches!(a, Action::Restart { unit } | Action::Start { unit } if unit == "containerd.service"),
        );
        assert!(docker_stops < restart, "{actions:?}");
        // A tie to another runtime's unit does not matter to this target.
        f.runtimes.docker.tied_to = vec![tie("Requires", "crio.service")];
        let (order, _) = service_actions(&decided(&f, &o, &v, &c)).said_to(&mut w);
        assert!(order.check_before_cutover);
    }
}
