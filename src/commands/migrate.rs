//! `cri-migrate migrate`: dry run, guided or unattended; resume of an interrupted run.

use super::{connect_cri, kubectl_ref, report_failure, Console, NodeAccess};
use crate::apply::backup::{Backup, State, StoredPlan, UNITS};
use crate::apply::{self, ApplyOptions, Effects, Progress, Quiet, WalkOutcome};
use crate::cli::{MigrateArgs, Output};
use crate::error::{exit, Failure};
use crate::guided;
use crate::images;
use crate::inspect::{self, Facts, InspectOptions};
use crate::names::NodeName;
use crate::plan::{self, Plan, PlanOptions, Target};
use crate::progress::{Bars, Lines};
use crate::report;
use crate::signals::{self, Phase};
use crate::system::packages::{runtime_package, Packages, RealPackages};
use crate::system::systemd::Systemd;
use anyhow::Result;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    DryRun,
    Guided,
    Unattended,
}

pub fn run(
    t: &NodeAccess,
    args: &MigrateArgs,
    console: Console,
    out: &mut dyn Write,
) -> Result<i32> {
    let mode = decide_mode(args, console)?;
    if args.drain && !t.live && mode != Mode::DryRun {
        return Err(Failure::Usage(
            "--drain talks to the cluster, and under --root nothing does (an image's kubeconfig is never used): drain the node from a machine with cluster access (kubectl drain NODE), then migrate its image without --drain. Nothing was changed.".into(),
        )
        .into());
    }
    if mode == Mode::DryRun {
        let (facts, plan) = make_plan(t, args, mode)?;
        return dry_run(t, &facts, &plan, args, console, out);
    }
    if args.detach {
        return super::detach::run_detached(t, args, out);
    }
    // The lock first: a second run is refused before it reads, plans or asks anything.
    let _lock = apply::preflight::lock(t.node)?;
    // An interrupted run that began its changes is finished (or undone with `rollback`) before
    // anything new starts; one that changed nothing is set aside, and this run plans afresh.
    if let Some(mut b) = Backup::latest(t.node)? {
        if b.manifest.state == State::InProgress {
            if b.began_changes() {
                return resume(t, b, args, mode, out);
            }
            let _ = b.journal("set aside: this run changed nothing; a new run plans afresh");
            b.set_state(State::Abandoned)?;
        }
    }
    let (facts, plan) = make_plan(t, args, mode)?;
    present(&plan, args, mode, console, out)?;
    let applied = execute(t, &facts, &plan, args, mode)?;
    finish(t, &plan, &facts, applied, args, out)
}

/// Dry run, guided (a terminal to ask on) or unattended (`--yes`). Usage errors come out here,
/// before the lock.
fn decide_mode(args: &MigrateArgs, console: Console) -> Result<Mode> {
    if args.to.is_none() && (args.dry_run || args.yes) {
        return Err(Failure::Usage(
            "say which runtime to move to: --to containerd or --to crio".into(),
        )
        .into());
    }
    Ok(if args.dry_run {
        Mode::DryRun
    } else if args.yes {
        Mode::Unattended
    } else if console.interactive() {
        Mode::Guided
    } else {
        return Err(Failure::Usage(
            "there is no terminal to ask on: run with --yes to migrate unattended (every choice from flags), or --dry-run to see the plan. Nothing was changed."
                .into(),
        )
        .into());
    })
}

/// Inspect, choose the target (asking in the guided mode), install the runtime when agreed,
/// and plan.
fn make_plan(t: &NodeAccess, args: &MigrateArgs, mode: Mode) -> Result<(Facts, Plan)> {
    let inspect_opts = InspectOptions {
        kubelet_version: args.kubelet_version,
        talk: t.live,
    };
    let mut facts = inspect::inspect(t.node, t.commands(), &inspect_opts)?;
    if mode == Mode::Guided {
        eprint!("{}", crate::secrets::shown(&report::inspect_text(&facts)));
        eprintln!();
    }
    let target = match (args.to, mode) {
        (Some(to), _) => to,
        (None, Mode::Guided) => guided::choose_target(&facts)?,
        (None, _) => {
            return Err(Failure::Usage(
                "say which runtime to move to: --to containerd or --to crio".into(),
            )
            .into())
        }
    };
    let (runtime_version, upgraded) =
        match upgrade_too_old(t, &RealPackages, args, mode, &facts, target)? {
            Some((finding, to)) => {
                if mode != Mode::DryRun {
                    facts = inspect::inspect(t.node, t.commands(), &inspect_opts)?;
                }
                (args.runtime_version.or(to), Some(finding))
            }
            None => (args.runtime_version, None),
        };
    if mode != Mode::DryRun && !runtime_installed(&facts, target) {
        let consent = args.install_runtime
            || (mode == Mode::Guided
                && guided::confirm(
                    &format!(
                        "{} is not installed. Install it with the node's package manager?",
                        target.name()
                    ),
                    false,
                )?);
        if consent {
            install_runtime(t, &RealPackages, &facts, target)?;
            facts = inspect::inspect(t.node, t.commands(), &inspect_opts)?;
        }
    }
    if args.pod_cidr.is_none() {
        facts.kubenet_pod_cidr = live_pod_cidr(t, &facts, args);
    }
    let mut plan = plan::plan(
        &facts,
        &PlanOptions {
            target,
            runtime_version,
            sandbox_image: args.sandbox_image.clone(),
            timeout_secs: args.timeout,
            no_sandbox: args.no_sandbox,
            images: args.images,
            drain: args.drain,
            pod_cidr: args.pod_cidr.clone(),
        },
    )?;
    plan.warnings.extend(upgraded);
    // The cluster's RuntimeClasses, where kubectl reaches it and the node carries Docker's
    // runtimes (dockershim ran no other handler, so only those can have served pods): a
    // handler the runtime will not have is said before anything changes.
    let carries = !plan.settings.workloads.handlers.is_empty();
    if let Some(k) = t.kubectl(args.kubeconfig.as_ref()).filter(|_| carries) {
        use crate::system::kubectl::Kubectl;
        let listed = k.run(&[
            "get",
            "runtimeclasses.node.k8s.io",
            "--request-timeout=20s",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\" \"}{.handler}{\"\\n\"}{end}",
        ]);
        match listed {
            Ok(text) => {
                let classes: Vec<(String, String)> = text
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(n, h)| (n.to_string(), h.trim().to_string()))
                    .collect();
                let planned = plan::checks::planned_handlers(&facts, &plan);
                plan.warnings
                    .extend(plan::checks::runtime_classes(&classes, &planned));
            }
            Err(e) => plan.warnings.push(crate::inspect::Finding::info(
                "runtimeclasses-not-read",
                format!("the cluster's RuntimeClasses could not be read ({e:#}): their handlers are not checked against the runtime's"),
                "check them by hand: kubectl get runtimeclasses -o wide",
            )),
        }
    }
    Ok((facts, plan))
}

fn dry_run(
    t: &NodeAccess,
    facts: &Facts,
    plan: &Plan,
    args: &MigrateArgs,
    console: Console,
    out: &mut dyn Write,
) -> Result<i32> {
    // --drain: which node and which kubeconfig the run would use (the operator's, said).
    let drain = plan.drain.then(|| {
        if !t.live {
            return "not under --root: nothing talks to the cluster from an offline node"
                .to_string();
        }
        let name = node_name(facts, args.node_name.as_deref())
            .map(|n| format!("node {n}"))
            .unwrap_or_else(|e| format!("{e}"));
        match t.kubectl(args.kubeconfig.as_ref()) {
            Some(k) => format!("{name}, {}", k.said()),
            None => format!("{name}, but no kubectl or kubeconfig here"),
        }
    });
    if let (Some(d), Output::Text) = (&drain, args.output) {
        eprintln!("{}", crate::secrets::shown(&format!("--drain: {d}")));
    }
    match args.output {
        Output::Text => write!(
            out,
            "{}",
            report::plan_text(plan, console.stdout_tty && console::colors_enabled())
        )?,
        Output::Json => {
            let mut doc = report::plan_json(plan, facts, true);
            // What the fleet view shows: whether Docker's images would be carried, else why not.
            doc["images"] = match &plan.images.why_not {
                None => {
                    let way = crate::runtime::registry::of(plan.target)
                        .links_images()
                        .map_err(String::from)
                        .and_then(|()| super::images::carry_way(t, facts, args.copy_images));
                    match way {
                        Ok(()) => {
                            json!({"carried": plan.images.selection, "why": null, "way": "linked", "copy_why": null})
                        }
                        Err(why) => {
                            json!({"carried": plan.images.selection, "why": null, "way": "copied", "copy_why": why})
                        }
                    }
                }
                Some(why) => json!({"carried": "none", "why": why, "way": null, "copy_why": null}),
            };
            if let Some(d) = &drain {
                doc["drain"] = d.as_str().into();
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?
        }
    }
    Ok(exit::OK)
}

/// Show the plan; in the guided mode, ask (a yes that changes the node is never the default).
fn present(
    plan: &Plan,
    args: &MigrateArgs,
    mode: Mode,
    console: Console,
    out: &mut dyn Write,
) -> Result<()> {
    match (mode, args.output) {
        (Mode::Guided, _) => {
            eprint!("{}", crate::secrets::shown(&report::settings_text(plan)));
            guided::confirm_or_cancel("Carry these settings over?", "the settings were not confirmed; pass --sandbox-image or fix the node, then run again", true)?;
            eprint!(
                "{}",
                crate::secrets::shown(&report::changes_text(plan, console::colors_enabled()))
            );
            guided::confirm_or_cancel(
                "Apply these changes now? A backup is made first",
                "nothing was applied",
                false,
            )?;
        }
        (Mode::Unattended, Output::Text) => write!(
            out,
            "{}",
            report::plan_text(plan, console.stdout_tty && console::colors_enabled())
        )?,
        _ => {}
    }
    Ok(())
}

/// Every check that can refuse, then the images, then the backup and the walk.
fn execute(
    t: &NodeAccess,
    facts: &Facts,
    plan: &Plan,
    args: &MigrateArgs,
    mode: Mode,
) -> Result<Applied> {
    let target = plan.target;
    let test_image = args.test_image.clone().unwrap_or_default();
    let mut stored = StoredPlan::from_plan(plan, &test_image);
    apply::preflight::check(t.node, facts, target, &stored, t.live)?;
    let systemd = t.systemd();
    let units = apply::preflight::unit_states(&systemd, &UNITS)?;
    let kubectl = t.kubectl(args.kubeconfig.as_ref());
    let drain = if plan.drain {
        let name = node_name(facts, args.node_name.as_deref())?;
        apply::preflight::drain(kubectl_ref(&kubectl), &name)?;
        if let (Some(k), Output::Text) = (&kubectl, args.output) {
            eprintln!(
                "{}",
                crate::secrets::shown(&format!("--drain: node {name}, {}", k.said()))
            );
        }
        Some(name)
    } else {
        None
    };

    // Docker's images, while Docker still serves and before anything changes.
    let carried = carry_images(t, facts, plan, args, mode)?;
    let missing = images::missing_in_use(&carried);
    if !missing.is_empty() && !args.force {
        let names: Vec<String> = missing
            .iter()
            .map(|c| {
                format!(
                    "{} ({})",
                    c.names.join(" "),
                    c.error.as_deref().unwrap_or("")
                )
            })
            .collect();
        let to = plan.target.name();
        return Err(Failure::preflight(
            format!("in-use image(s) could not be carried over to {to}: {}", names.join("; ")),
            format!("The node's configuration was not changed (the images carried so far stay in {to}'s image store). Fix the cause, or run with --images none to let the runtime pull them, or --force to go ahead without them."),
        )
        .into());
    }
    stored.check_images = carried
        .iter()
        .filter(|c| c.result != images::CarryResult::Failed)
        .flat_map(|c| c.names.clone())
        .collect();

    // From here a signal no longer ends the process: the walk decides.
    signals::set_phase(Phase::Changing);
    let mut backup = Backup::create(t.node, stored, units, t.live)?;
    let started = Instant::now();
    let outcome = walk(
        t,
        &mut backup,
        args,
        mode,
        &systemd,
        kubectl_ref(&kubectl),
        drain,
    );
    Ok(Applied {
        outcome,
        carried,
        started,
    })
}

/// Docker's images carried into the runtime as the plan says (a reason said where they are
/// not), with the progress the mode wants.
fn carry_images(
    t: &NodeAccess,
    facts: &Facts,
    plan: &Plan,
    args: &MigrateArgs,
    mode: Mode,
) -> Result<Vec<images::CarriedImage>> {
    let show = match (args.output, mode) {
        (Output::Json, _) => images::Show::Quiet,
        (_, Mode::Guided) => images::Show::Bar,
        _ => images::Show::Lines,
    };
    let request = super::images::Request {
        target: plan.target,
        pause: plan
            .settings
            .sandbox_image
            .as_ref()
            .map(|s| s.value.clone()),
        root_changes: plan.settings.runtime_root.is_some(),
        selection: plan.images.selection,
        parallel: 2,
        show,
        copy_images: args.copy_images,
    };
    let carried = match super::images::carry(t, facts, request)? {
        Ok(c) => c,
        Err(why) => {
            eprintln!("{}", crate::secrets::shown(&format!("images: {why}")));
            vec![]
        }
    };
    if !carried.is_empty() && args.output == Output::Text {
        eprintln!(
            "{}",
            crate::secrets::shown(&format!("images: {}", super::images::summary(&carried)))
        );
    }
    Ok(carried)
}

/// What a run did: the walk, the images carried before it, since when.
struct Applied {
    outcome: WalkOutcome,
    carried: Vec<images::CarriedImage>,
    started: Instant,
}

fn runtime_installed(facts: &Facts, target: Target) -> bool {
    crate::runtime::registry::of(target)
        .installed(facts)
        .installed
}

/// A runtime installed older than cri-migrate moves a kubelet onto (containerd below 1.6: no
/// CRI v1) is upgraded by `--install-runtime` from the node's own package source (the package
/// it came in: Docker's `containerd.io` or the distribution's `containerd`) before anything else
/// changes; the dry run says it and plans for the version that source offers. Not part of the
/// transaction: a rollback leaves it upgraded (Docker runs on it too), and the plan says so.
/// Returns what is said, and (dry run) the version planned for.
fn upgrade_too_old(
    t: &NodeAccess,
    pm: &dyn Packages,
    args: &MigrateArgs,
    mode: Mode,
    facts: &Facts,
    target: Target,
) -> Result<Option<(inspect::Finding, Option<crate::version::Version>)>> {
    let runtime = crate::runtime::registry::of(target);
    let installed = runtime.installed(facts);
    let (Some(oldest), Some(v)) = (runtime.oldest(), installed.version) else {
        return Ok(None);
    };
    if !installed.installed
        || v >= oldest
        || !args.install_runtime
        || args.runtime_version.is_some()
    {
        return Ok(None);
    }
    let name = target.name();
    if !t.live {
        return Err(Failure::preflight(
            format!("{name} {v} is older than {oldest}, and --install-runtime upgrades it on the live node only"),
            "Upgrade it in the image with its own tools, or pass --runtime-version for the version it will have.",
        )
        .into());
    }
    let manager = pm.manager().ok_or_else(|| {
        Failure::preflight(
            format!("{name} {v} is older than {oldest}, and no package manager was found to upgrade it (apt-get, dnf, yum, zypper)"),
            "Upgrade it by hand, then run cri-migrate again.",
        )
    })?;
    let package = installed.package.clone().unwrap_or_else(|| {
        let docker_repo = facts.runtimes.docker.package.as_deref() == Some("docker-ce");
        runtime_package(manager, target, docker_repo, None).remove(0)
    });
    let candidate = pm.candidate(manager, &package);
    let to = candidate
        .as_deref()
        .and_then(crate::version::Version::parse);
    if !to.is_some_and(|c| c >= oldest) {
        return Err(Failure::preflight(
            format!(
                "{name} {v} is older than {oldest}, and the node's package source offers {package} {}",
                candidate.as_deref().unwrap_or("in no version")
            ),
            format!("Add a package source with {name} {oldest} or later (Docker's repository for containerd.io, or the distribution's newer release), or upgrade it by hand, then run cri-migrate again."),
        )
        .into());
    }
    let to = to.expect("checked");
    let said = format!("{name} {v} is older than {oldest}: --install-runtime upgrades {package} to {to} from the node's package source ({manager}) before anything else changes");
    if mode == Mode::DryRun {
        eprintln!("{}", crate::secrets::shown(&said));
    } else {
        eprintln!("{}", crate::secrets::shown(&said));
        pm.install(manager, std::slice::from_ref(&package))
            .map_err(|e| {
                Failure::preflight(
                    format!("upgrading {package} with {manager} failed: {e:#}"),
                    "Upgrade it by hand, then run cri-migrate again. Nothing else was changed.",
                )
            })?;
        eprintln!(
            "{}",
            crate::secrets::shown(&format!("upgraded {package} to {to}"))
        );
    }
    Ok(Some((
        inspect::Finding::info(
            "runtime-upgraded",
            format!("{name} was upgraded from {v} to {to} ({package} with {manager}) before the migration; a rollback leaves it upgraded (Docker runs on it too)"),
            format!("to go back, install {package} {v} again with {manager} after a rollback"),
        ),
        (mode == Mode::DryRun).then_some(to),
    )))
}

fn install_runtime(t: &NodeAccess, pm: &dyn Packages, facts: &Facts, target: Target) -> Result<()> {
    if !t.live {
        return Err(Failure::preflight(
            "--install-runtime needs the live node",
            "Install the runtime into the image with its own tools.",
        )
        .into());
    }
    let manager = pm.manager().ok_or_else(|| {
        Failure::preflight(
            "no package manager found (apt-get, dnf, yum, zypper)",
            "Install the runtime by hand.",
        )
    })?;
    let docker_repo = facts.runtimes.docker.package.as_deref() == Some("docker-ce");
    let minor = facts.kubelet.installed.version.map(|v| (v.major, v.minor));
    let spec = runtime_package(manager, target, docker_repo, minor);
    eprintln!(
        "{}",
        crate::secrets::shown(&format!("installing {} with {manager}", spec.join(" ")))
    );
    pm.install(manager, &spec).map_err(|e| {
        Failure::preflight(
            format!("installing {} with {manager} failed: {e:#}", spec.join(" ")),
            "Install it by hand, then run cri-migrate again.",
        )
    })?;
    eprintln!(
        "{}",
        crate::secrets::shown(&format!("installed {} with {manager}", spec.join(" ")))
    );
    Ok(())
}

/// A kubenet node's pod CIDR where its files do not say it, on the live node only: the Node
/// object's `.spec.podCIDR` (kubectl, as the run's other API calls), else the network of
/// kubenet's `cbr0` bridge, whose address kubenet sets to the pod CIDR's first one. With where
/// it came from; `None` where neither answers (the plan then asks for --pod-cidr).
fn live_pod_cidr(t: &NodeAccess, facts: &Facts, args: &MigrateArgs) -> Option<(String, String)> {
    let k = &facts.kubelet;
    if !k.on_kubenet() || k.pod_cidr().is_some() || !t.node.is_live() {
        return None;
    }
    if let Some(kubectl) = t.kubectl(args.kubeconfig.as_ref()) {
        use crate::system::kubectl::Kubectl;
        if let Ok(name) = node_name(facts, args.node_name.as_deref()) {
            let spec = kubectl.run(&[
                "get",
                "node",
                "-o",
                "jsonpath={.spec.podCIDR}",
                "--",
                name.as_str(),
            ]);
            if let Some(c) = spec
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| crate::plan::kubenet::valid_cidr(s))
            {
                return Some((
                    c,
                    format!("the Node object {} (.spec.podCIDR)", name.as_str()),
                ));
            }
        }
    }
    let ip = t
        .commands()
        .output("ip", &["-o", "-4", "addr", "show", "dev", "cbr0"])?;
    bridge_network(&ip).map(|c| (c, "kubenet's cbr0 bridge".to_string()))
}

/// The network of the first IPv4 address in `ip -o -4 addr show` output
/// (`5: cbr0    inet 100.96.1.1/24 brd …` gives `100.96.1.0/24`).
fn bridge_network(ip: &str) -> Option<String> {
    let addr = ip.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    let (a, len) = addr.split_once('/')?;
    let a: std::net::Ipv4Addr = a.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| (8..=30).contains(l))?;
    let mask = u32::MAX << (32 - len);
    Some(format!(
        "{}/{len}",
        std::net::Ipv4Addr::from(u32::from(a) & mask)
    ))
}

/// The node's name in the API, checked before it reaches a command line (a DNS-1123
/// subdomain: never an option, never two names): `--node-name`, else the kubelet's
/// `--hostname-override`, else the node's `/etc/hostname` (lowercased, as the kubelet does),
/// else — on the live node only — this machine's name. Under `--root` the host's own name is
/// never taken for the node's.
fn node_name(facts: &Facts, flag: Option<&str>) -> Result<NodeName, Failure> {
    let (value, from) = if let Some(f) = flag {
        (f.to_string(), "--node-name")
    } else if let Some(v) = facts
        .kubelet
        .flag("hostname-override")
        .and_then(|f| f.value.clone())
    {
        (v.trim().to_lowercase(), "the kubelet's --hostname-override")
    } else if let Some((h, from)) = &facts.hostname {
        (h.clone(), *from)
    } else {
        return Err(Failure::preflight(
            "the node's name is unknown: no --hostname-override in the kubelet's flags and no /etc/hostname under --root (the host's own name is never taken for it)",
            "Pass --node-name NAME.",
        ));
    };
    NodeName::parse(&value).map_err(|e| {
        Failure::bad_input(
            from,
            e,
            "Pass the node's name as the API knows it with --node-name NAME.",
        )
    })
}

fn progress_for(mode: Mode, output: Output) -> Box<dyn Progress> {
    match (mode, output) {
        (_, Output::Json) => Box::new(Quiet),
        (Mode::Guided, _) => Box::new(Bars::default()),
        _ => Box::new(Lines),
    }
}

fn walk(
    t: &NodeAccess,
    b: &mut Backup,
    args: &MigrateArgs,
    mode: Mode,
    systemd: &dyn Systemd,
    kubectl: Option<&dyn crate::system::kubectl::Kubectl>,
    drain: Option<NodeName>,
) -> WalkOutcome {
    let exits = crate::system::exits::RealExits::new();
    let fx = Effects {
        systemd,
        kubectl,
        cri: &connect_cri,
        labels: &crate::system::selinux::RealLabels,
        interrupted: &signals::caught,
        exits: &exits,
        gate: &crate::system::gate::RealGate {
            root: t.node.root().to_path_buf(),
        },
    };
    let opts = ApplyOptions {
        live: t.live,
        socket_timeout: Duration::from_secs(args.timeout),
        no_rollback: args.no_rollback,
        cri_endpoint: args.cri_endpoint.clone(),
        drain,
    };
    let mut progress = progress_for(mode, args.output);
    apply::run(t.node, b, &fx, &opts, progress.as_mut())
}

fn finish(
    t: &NodeAccess,
    plan: &Plan,
    facts: &Facts,
    applied: Applied,
    args: &MigrateArgs,
    out: &mut dyn Write,
) -> Result<i32> {
    let o = &applied.outcome;
    let (carried, started) = (applied.carried.as_slice(), applied.started);
    let kubectl = t.kubectl(args.kubeconfig.as_ref());
    let kubeadm = facts
        .kubelet
        .flag_files
        .iter()
        .any(|f| f.path == inspect::kubelet::KUBEADM_FLAGS);
    let record = (o.error.is_none() && t.live && kubeadm).then(|| {
        match node_name(facts, args.node_name.as_deref()) {
            Ok(name) => {
                let said =
                    apply::update_cri_socket_record(kubectl_ref(&kubectl), &name, &plan.endpoint);
                match &kubectl {
                    Some(k) => format!("{said} ({})", k.said()),
                    None => said,
                }
            }
            Err(e) => format!("the kubeadm CRI socket annotation was not updated: {e}"),
        }
    });
    let result = match &o.error {
        None => "migrated",
        Some(f) => f.kind(),
    };
    match args.output {
        Output::Json => {
            crate::error::write_envelope(
                out,
                "migrate",
                json!({
                    "dry_run": false,
                    "result": result,
                    "node": facts.root,
                    "from": plan.from,
                    "target": plan.target,
                    "runtime_version": plan.runtime_version,
                    "endpoint": plan.endpoint,
                    "order": plan.order,
                    "backup": o.backup,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "steps": o.steps,
                    "verification": o.verification,
                    "rollback_steps": o.rollback,
                    "kubeadm_cri_socket": record,
                    "images": carried,
                    "interrupted_after_verification": o.finished_despite,
                    "journal_errors": o.journal_errors,
                    "warnings": plan.warnings,
                    "error": o.error.as_ref().map(Failure::json),
                }),
            )?;
        }
        Output::Text if o.error.is_none() => {
            migrated_text(out, plan, facts, t.live, &applied, record.as_deref())?
        }
        Output::Text => {}
    }
    warn_journal_errors(&o.journal_errors);
    Ok(match &o.error {
        None => exit::OK,
        Some(f) => report_failure(f),
    })
}

/// What a migration that succeeded did, for a person.
fn migrated_text(
    out: &mut dyn Write,
    plan: &Plan,
    facts: &Facts,
    live: bool,
    applied: &Applied,
    record: Option<&str>,
) -> Result<()> {
    let (o, carried, started) = (&applied.outcome, &applied.carried, applied.started);
    writeln!(
        out,
        "\nMigrated to {} {} in {:.1} s.",
        plan.target.name(),
        plan.runtime_version,
        started.elapsed().as_secs_f64()
    )?;
    if let Some(v) = &o.verification {
        let conds: Vec<String> = v
            .conditions
            .iter()
            .map(|c| format!("{}={}", c.kind, c.status))
            .collect();
        writeln!(
            out,
            "  runtime       {} {} ({})",
            v.version.runtime_name,
            v.version.runtime_version,
            conds.join(", ")
        )?;
        writeln!(
            out,
            "  test pull     {} -> {}",
            v.pull.image,
            v.digest.as_deref().unwrap_or(&v.pull.image_ref)
        )?;
    }
    if let Some(sig) = &o.finished_despite {
        writeln!(out, "  interrupted   by {sig} once the kubelet ran verified on the new runtime: the migration finished")?;
    }
    if !live {
        writeln!(
            out,
            "  offline       files written, units enabled/disabled under {}; nothing started",
            facts.root
        )?;
    }
    if let Some(r) = record {
        writeln!(out, "  kubeadm       {r}")?;
    }
    if !carried.is_empty() {
        writeln!(out, "  images        {}", super::images::summary(carried))?;
    }
    writeln!(out, "  backup        {}", o.backup)?;
    writeln!(
        out,
        "To go back: sudo cri-migrate rollback --backup {}",
        o.backup
    )?;
    Ok(())
}

/// Journal writes that failed after the cutover began: the run went on; the record is short.
fn warn_journal_errors(errors: &[String]) {
    for e in errors {
        eprintln!("{}", crate::secrets::shown(&format!("{} the journal could not be written: {e}. The node's state is as reported above; the backup's record of it is incomplete.",
            console::style("warning:").yellow().bold().for_stderr())));
    }
}

/// Finish an interrupted migration from its stored plan (planning again would see a
/// half-migrated node).
fn resume(
    t: &NodeAccess,
    mut b: Backup,
    args: &MigrateArgs,
    mode: Mode,
    out: &mut dyn Write,
) -> Result<i32> {
    let target = b.manifest.plan.target;
    confirm_resume(&b, args, mode)?;
    let systemd = t.systemd();
    let kubectl = t.kubectl(args.kubeconfig.as_ref());
    let started = Instant::now();
    signals::set_phase(Phase::Changing);
    let name = node_to_drain(t, &b, args)?;
    let drain = if args.drain { name } else { None };
    let o = walk(
        t,
        &mut b,
        args,
        mode,
        &systemd,
        kubectl_ref(&kubectl),
        drain,
    );
    let steps_failed = o.error.is_some();
    match args.output {
        Output::Json => crate::error::write_envelope(
            out,
            "migrate",
            json!({
                "dry_run": false,
                "resumed": true,
                "result": o.error.as_ref().map(|f| f.kind()).unwrap_or("migrated"),
                "target": target,
                "backup": o.backup,
                "duration_ms": started.elapsed().as_millis() as u64,
                "steps": o.steps,
                "verification": o.verification,
                "rollback_steps": o.rollback,
                "interrupted_after_verification": o.finished_despite,
                "journal_errors": o.journal_errors,
                "error": o.error.as_ref().map(Failure::json),
            }),
        )?,
        Output::Text if !steps_failed => {
            writeln!(
                out,
                "\nFinished the interrupted migration to {} in {:.1} s.",
                target.name(),
                started.elapsed().as_secs_f64()
            )?;
            writeln!(
                out,
                "To go back: sudo cri-migrate rollback --backup {}",
                o.backup
            )?;
        }
        Output::Text => {}
    }
    warn_journal_errors(&o.journal_errors);
    Ok(match &o.error {
        None => exit::OK,
        Some(f) => report_failure(f),
    })
}

/// A migration to another target than the interrupted one's is refused; otherwise said (or,
/// guided, asked).
fn confirm_resume(b: &Backup, args: &MigrateArgs, mode: Mode) -> Result<()> {
    let target = b.manifest.plan.target;
    if args.to.is_some_and(|to| to != target) {
        return Err(Failure::preflight(
            format!("an interrupted migration to {} is pending (backup {})", target.name(), b.node_dir),
            format!("Finish it with `cri-migrate migrate --to {}`, or undo it with `cri-migrate rollback`.", serde_json::to_value(target)?.as_str().unwrap_or("")),
        )
        .into());
    }
    let msg = format!(
        "An interrupted migration to {} was found ({}): finishing it.",
        target.name(),
        b.node_dir
    );
    if mode == Mode::Guided {
        guided::confirm_or_cancel(
            &format!(
                "An interrupted migration to {} was found ({}). Finish it?",
                target.name(),
                b.node_dir
            ),
            "the interrupted migration was left as it is; `cri-migrate rollback` undoes it",
            false,
        )?;
    } else {
        eprintln!("{}", crate::secrets::shown(&msg));
    }
    Ok(())
}

/// The node to drain on resuming: the one the interrupted run cordoned (checked, drained or
/// not: the backup is the node's file), else, for --drain, the node's name as inspected.
fn node_to_drain(t: &NodeAccess, b: &Backup, args: &MigrateArgs) -> Result<Option<NodeName>> {
    Ok(match b.manifest.cordoned.clone() {
        Some(n) => Some(NodeName::parse(&n).map_err(|e| {
            Failure::bad_input(
                format!("{}/manifest.json", b.node_dir),
                format!("its cordoned node: {e}"),
                "Check the backup: cri-migrate never writes such a name there.",
            )
        })?),
        None if args.drain => Some(node_name(
            &inspect::inspect(
                t.node,
                t.commands(),
                &InspectOptions {
                    kubelet_version: args.kubelet_version,
                    talk: false, // only the node's name is wanted
                },
            )?,
            args.node_name.as_deref(),
        )?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Node;
    use crate::plan::test_facts::facts;
    use clap::Parser;
    use std::cell::RefCell;

    /// A package manager that offers one version and records what it is asked to install.
    struct FakePackages {
        manager: Option<&'static str>,
        offers: Option<&'static str>,
        installed: RefCell<Vec<String>>,
    }

    impl Packages for FakePackages {
        fn manager(&self) -> Option<&'static str> {
            self.manager
        }
        fn install(&self, _: &str, spec: &[String]) -> Result<()> {
            self.installed.borrow_mut().extend(spec.iter().cloned());
            Ok(())
        }
        fn candidate(&self, _: &str, _: &str) -> Option<String> {
            self.offers.map(str::to_string)
        }
    }

    fn offering(manager: Option<&'static str>, offers: Option<&'static str>) -> FakePackages {
        FakePackages {
            manager,
            offers,
            installed: RefCell::new(vec![]),
        }
    }

    /// A fixture node's facts, and the node (its folder).
    fn fixture(name: &str) -> (Facts, Node) {
        let f = facts(name);
        let node = Node::new(std::path::PathBuf::from(&f.root));
        (f, node)
    }

    /// The node, live (the package manager is asked).
    fn live(node: &Node) -> NodeAccess<'_> {
        NodeAccess { node, live: true }
    }

    fn migrate_args(extra: &[&str]) -> MigrateArgs {
        let argv = [&["cri-migrate", "migrate", "--to", "containerd"], extra].concat();
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Migrate(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_containerd_too_old_is_upgraded_from_the_nodes_package_source_only_when_asked() {
        // containerd 1.4 from Docker's repository (containerd.io).
        let (f, node) = fixture("kubeadm-1.20-containerd-1.4");
        let t = live(&node);
        let pm = |offers| offering(Some("apt-get"), offers);
        let asked = migrate_args(&["--install-runtime"]);
        // The dry run says it and plans for the version offered; nothing is installed.
        let dry = pm(Some("1.6.20~ds1-1"));
        let (said, planned) =
            upgrade_too_old(&t, &dry, &asked, Mode::DryRun, &f, Target::Containerd)
                .unwrap()
                .expect("an upgrade");
        assert_eq!(said.code, "runtime-upgraded");
        assert_eq!(planned, crate::version::Version::parse("1.6.20"));
        assert!(dry.installed.borrow().is_empty());
        // The run installs the node's own package.
        let run = pm(Some("1.6.20~ds1-1"));
        upgrade_too_old(&t, &run, &asked, Mode::Unattended, &f, Target::Containerd).unwrap();
        assert_eq!(*run.installed.borrow(), ["containerd.io"]);
        // A source that offers nothing new enough is refused, naming it; so is no manager.
        let old = pm(Some("1.4.13~ds1-1"));
        let e = upgrade_too_old(&t, &old, &asked, Mode::Unattended, &f, Target::Containerd)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offers containerd.io 1.4.13"), "{e}");
        assert!(old.installed.borrow().is_empty());
        let none = offering(None, None);
        assert!(
            upgrade_too_old(&t, &none, &asked, Mode::Unattended, &f, Target::Containerd).is_err()
        );
        // Without --install-runtime, or with the version given, nothing is asked of it.
        let quiet = pm(Some("1.6.20"));
        for args in [
            migrate_args(&[]),
            migrate_args(&["--install-runtime", "--runtime-version", "1.6.20"]),
        ] {
            let r = upgrade_too_old(&t, &quiet, &args, Mode::Unattended, &f, Target::Containerd);
            assert!(r.unwrap().is_none());
        }
        assert!(quiet.installed.borrow().is_empty());
        // Under --root it is refused: the image's packages are its own tools' business.
        let offline = NodeAccess {
            node: &node,
            live: false,
        };
        assert!(upgrade_too_old(
            &offline,
            &dry,
            &asked,
            Mode::Unattended,
            &f,
            Target::Containerd
        )
        .is_err());
    }

    #[test]
    fn a_missing_runtime_is_installed_with_the_package_for_the_node() {
        let (f, node) = fixture("target-not-installed");
        let t = live(&node);
        let pm = offering(Some("apt-get"), None);
        install_runtime(&t, &pm, &f, Target::Crio).unwrap();
        let minor = f.kubelet.installed.version.map(|v| (v.major, v.minor));
        assert_eq!(
            *pm.installed.borrow(),
            runtime_package("apt-get", Target::Crio, false, minor)
        );
        assert!(install_runtime(&t, &offering(None, None), &f, Target::Crio).is_err());
    }

    #[test]
    fn kubenets_bridge_gives_the_pod_cidr() {
        let ip = "5: cbr0    inet 100.96.1.1/24 brd 100.96.1.255 scope global cbr0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(bridge_network(ip).as_deref(), Some("100.96.1.0/24"));
        assert_eq!(
            bridge_network("7: cbr0    inet 10.244.3.1/26 scope global cbr0").as_deref(),
            Some("10.244.3.0/26")
        );
        assert_eq!(bridge_network(""), None);
        assert_eq!(bridge_network("5: cbr0    inet nonsense/24"), None);
        assert_eq!(bridge_network("5: cbr0    inet 10.0.0.1/0"), None);
    }
}
