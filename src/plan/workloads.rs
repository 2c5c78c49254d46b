//! Phase 2b: what workloads depend on beyond pulling — Docker's other runtimes (GPU, sandboxed,
//! crun...) as runtime handlers, its default runtime, its default rlimits, SELinux — each with
//! where it came from, and what cannot be carried said.

use super::*;
use crate::inspect::docker::DockerRuntime;
pub use crate::render::Handler;
use std::collections::BTreeMap;

/// A RuntimeClass's `handler` must be a DNS label (RFC 1123): a Docker runtime named
/// otherwise can still be the default, but no RuntimeClass can name it.
pub fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A Docker runtime's options that TOML can hold; those it cannot (a null anywhere in them) are
/// said, not written.
fn toml_options(
    r: &DockerRuntime,
    warnings: &mut Vec<Finding>,
) -> BTreeMap<String, serde_json::Value> {
    let mut options = r.options.clone();
    options.retain(|k, v| {
        let ok = crate::render::toml_value(v).is_some();
        if !ok {
            warnings.push(Finding::warning(
                "runtime-option-not-carried",
                format!(
                    "Docker's runtime {} has option {k} = {v} ({}), which has no TOML form (null)",
                    r.name, r.from
                ),
                "set it in the runtime handler's options by hand if the runtime needs it",
            ));
        }
        ok
    });
    options
}

fn handler_of(r: &DockerRuntime, target: Target, warnings: &mut Vec<Finding>) -> Option<Handler> {
    let name = &r.name;
    if crate::inspect::docker::is_dockers_runc(name) {
        if r.path.is_some() {
            warnings.push(Finding::warning(
                "runtime-not-carried",
                format!("Docker's runtime {name:?} ({}) redefines Docker's own runc name: not carried, the runtime's runc handler stays", r.from),
                "give the runtime another name in daemon.json and run cri-migrate again, or set the runc handler's BinaryName by hand",
            ));
        }
        return None;
    }
    if !r.runtime_args.is_empty() {
        warnings.push(Finding::warning(
            "runtime-args-not-carried",
            format!(
                "Docker runs runtime {name} with runtimeArgs {} ({}): neither containerd nor CRI-O passes arguments to a runtime",
                r.runtime_args.join(" "),
                r.from
            ),
            "set what they do in the runtime's own config file, or point the handler at a wrapper script that adds them",
        ));
    }
    if !dns_label(name) {
        warnings.push(Finding::warning(
            "runtime-handler-name",
            format!("Docker's runtime {name:?} is carried as a handler of that name, but a RuntimeClass handler must be a DNS label (lowercase letters, digits, '-')"),
            "pods can reach it only as the default runtime: rename it (daemon.json and the handler) to use it through a RuntimeClass",
        ));
    }
    let options = toml_options(r, warnings);
    let h = match (&r.shim, &r.runtime_type) {
        // The runtime's own shim is on the node (Kata, gVisor): containerd runs it directly.
        (Some((rt, shim)), _) => Handler {
            name: name.clone(),
            runtime_type: rt.clone(),
            binary: r.binary.clone(),
            shim: Some(shim.clone()),
            options: options.clone(),
            on_node: true,
            from: r.from.clone(),
        },
        // Docker names a shim the node does not have.
        (None, Some(rt)) => {
            warnings.push(Finding::warning(
                "runtime-missing",
                format!("Docker's runtime {name} names the shim {rt} ({}), which is not on this node: the handler is written, and pods that use it fail until the shim is installed", r.from),
                format!("install the shim (containerd-shim-…) before the workloads that use {name} run again"),
            ));
            Handler {
                name: name.clone(),
                runtime_type: rt.clone(),
                binary: None,
                shim: None,
                options: options.clone(),
                on_node: false,
                from: r.from.clone(),
            }
        }
        // A runc-compatible binary (nvidia-container-runtime, crun, youki, sysbox-runc, runsc
        // without its shim): the runc shim runs it, as NVIDIA's own `nvidia-ctk runtime
        // configure` and the EKS AMI write it.
        (None, None) => {
            let binary = r.binary.clone().or_else(|| r.path.clone());
            if r.binary.is_none() {
                warnings.push(Finding::warning(
                    "runtime-missing",
                    format!(
                        "Docker's runtime {name} runs {} ({}), which is not on this node: the handler is written, and pods that use it fail until it is installed",
                        r.path.as_deref().unwrap_or("(no path)"),
                        r.from
                    ),
                    format!("install {} or remove the runtime where it is set", r.path.as_deref().unwrap_or(name)),
                ));
            }
            Handler {
                name: name.clone(),
                runtime_type: "io.containerd.runc.v2".into(),
                binary,
                shim: None,
                options: BTreeMap::new(),
                on_node: r.binary.is_some(),
                from: r.from.clone(),
            }
        }
    };
    if let Err(said) = crate::runtime::registry::of(target).runs_handler(&h) {
        warnings.push(said);
        return None;
    }
    Some(h)
}

/// A runtime root moved beside Docker's data-root on an SELinux node needs the labels of the
/// runtime's default root (container-selinux labels /var/lib/containerd and
/// /var/lib/containers, not /data/...): an equivalence rule and a relabel, said with the exact
/// commands, before the runtime starts there.
fn selinux_labels(
    facts: &Facts,
    target: Target,
    root: Option<&Setting<String>>,
    warnings: &mut Vec<Finding>,
) -> Option<(String, String)> {
    let (Some((mode, read_from)), Some(root)) = (&facts.selinux, root) else {
        return None;
    };
    let (like, path) = crate::runtime::registry::of(target).selinux_like(&root.value);
    if facts
        .selinux_equivalences
        .iter()
        .any(|(p, l)| p.trim_end_matches('/') == path && l.trim_end_matches('/') == like)
    {
        warnings.push(Finding::info(
            "selinux-labels",
            format!("{}'s root moves to {path}, which SELinux already labels as {like} (an equivalence rule the node has)", target.name()),
            "nothing to do",
        ));
        return None;
    }
    let commands = crate::names::selinux_label_line(&like, &path);
    if facts.selinux_tools && facts.live {
        warnings.push(Finding::info(
            "selinux-labels",
            format!("SELinux is {mode} ({read_from}) and {}'s root moves to {path} ({}): the plan labels it as {like} before the runtime starts there (a rollback deletes the rule)", target.name(), root.from),
            "nothing to do",
        ));
        return Some((path, like));
    }
    let fix = if facts.selinux_tools {
        format!("run `{commands}` on the running node before the runtime starts there (an image under --root is not labelled by cri-migrate)")
    } else {
        format!("install policycoreutils (semanage, restorecon: policycoreutils-python-utils on RHEL-like systems), then run `{commands}` before applying")
    };
    warnings.push(Finding::warning(
        "selinux-relabel",
        format!(
            "SELinux is {mode} ({read_from}) and {}'s root moves to {path} ({}): it needs {like}'s file labels",
            target.name(),
            root.from
        ),
        fix,
    ));
    None
}

pub(super) fn workloads(
    facts: &Facts,
    target: Target,
    runtime_root: Option<&Setting<String>>,
    warnings: &mut Vec<Finding>,
) -> Workloads {
    let relabel = selinux_labels(facts, target, runtime_root, warnings);
    let d = &facts.docker.settings;
    let mut w = Workloads::default();
    for r in &d.runtimes {
        if let Some(h) = handler_of(r, target, warnings) {
            let (how, instead) = crate::runtime::registry::of(target).nvidia_hint();
            if h.binary
                .as_deref()
                .is_some_and(|b| b.rsplit('/').next().unwrap_or(b).starts_with("nvidia"))
            {
                warnings.push(Finding::info(
                    "nvidia-runtime",
                    format!(
                        "the {} handler runs {} {}, as NVIDIA's `nvidia-ctk runtime configure` writes it",
                        h.name,
                        h.binary.as_deref().unwrap_or_default(),
                        how
                    ),
                    instead,
                ));
            }
            w.handlers.push(h);
        }
    }
    if let Some(def) = &d.default_runtime {
        if w.handlers.iter().any(|h| &h.name == def) {
            w.default_handler = Some(setting(def.clone(), d.source("default-runtime")));
        } else {
            warnings.push(Finding::warning(
                "default-runtime-not-carried",
                format!("Docker's default runtime {def} ({}) is not one of its runtimes that can be carried: pods run on runc", d.source("default-runtime")),
                "define the runtime (daemon.json's runtimes or --add-runtime), or fix the default's name, and run cri-migrate again",
            ));
        }
    }
    for u in d.default_ulimits.iter().filter(|u| !u.valid()) {
        warnings.push(Finding::warning(
            "ulimit-invalid",
            format!(
                "default ulimit {} ({}) has a soft limit above its hard one (-1 is unlimited): no runtime can set it",
                u.to_flag(),
                u.from
            ),
            "fix it where it is set (soft ≤ hard) and run cri-migrate again",
        ));
    }
    w.ulimits = d
        .default_ulimits
        .iter()
        .filter(|u| u.valid())
        .cloned()
        .collect();
    if d.selinux_enabled {
        w.selinux = Some(setting(true, d.source("selinux-enabled")));
    }
    w.relabel = relabel;
    w
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::facts;
    use super::*;
    use crate::inspect::docker::Ulimit;

    fn runtime(name: &str, path: Option<&str>, binary: bool) -> DockerRuntime {
        DockerRuntime {
            name: name.into(),
            path: path.map(str::to_string),
            binary: binary.then(|| path.unwrap().to_string()),
            from: format!("/etc/docker/daemon.json runtimes.{name}"),
            ..Default::default()
        }
    }

    #[test]
    fn a_runc_compatible_binary_runs_through_the_runc_shim_and_a_shim_directly() {
        let mut w = vec![];
        let h = handler_of(
            &runtime("nvidia", Some("/usr/bin/nvidia-container-runtime"), true),
            Target::Containerd,
            &mut w,
        )
        .unwrap();
        assert_eq!(h.runtime_type, "io.containerd.runc.v2");
        assert_eq!(
            h.binary.as_deref(),
            Some("/usr/bin/nvidia-container-runtime")
        );
        assert!(h.on_node && w.is_empty());
        let mut kata = runtime("kata-runtime", Some("/usr/bin/kata-runtime"), true);
        kata.shim = Some((
            "io.containerd.kata.v2".into(),
            "/usr/bin/containerd-shim-kata-v2".into(),
        ));
        let h = handler_of(&kata, Target::Containerd, &mut w).unwrap();
        assert_eq!(h.runtime_type, "io.containerd.kata.v2");
        assert_eq!(
            (h.crio_type(), h.crio_path()),
            ("vm", Some("/usr/bin/containerd-shim-kata-v2"))
        );
        // Not on the node: written, said, no test pod through it.
        let h = handler_of(
            &runtime("crun", Some("/usr/bin/crun"), false),
            Target::Crio,
            &mut w,
        )
        .unwrap();
        assert!(!h.on_node);
        assert!(w
            .iter()
            .any(|x| x.code == "runtime-missing" && x.message.contains("/usr/bin/crun")));
        // A shim Docker names, not on the node: nothing CRI-O could run.
        let mut shim_only = runtime("wasm", None, false);
        shim_only.runtime_type = Some("io.containerd.wasmtime.v1".into());
        assert!(handler_of(&shim_only, Target::Crio, &mut w).is_none());
        assert!(handler_of(&shim_only, Target::Containerd, &mut w).is_some());
        // Docker's own runc is nothing to carry.
        assert!(handler_of(&runtime("runc", None, false), Target::Containerd, &mut w).is_none());
    }

    #[test]
    fn runtime_args_and_names_no_runtimeclass_can_take_are_said() {
        let mut w = vec![];
        let mut r = runtime("My_Runtime", Some("/usr/bin/crun"), true);
        r.runtime_args = vec!["--debug".into()];
        assert!(handler_of(&r, Target::Containerd, &mut w).is_some());
        assert!(w
            .iter()
            .any(|x| x.code == "runtime-args-not-carried" && x.message.contains("--debug")));
        assert!(w.iter().any(|x| x.code == "runtime-handler-name"));
        assert!(dns_label("kata-qemu") && !dns_label("-a") && !dns_label("A"));
    }

    #[test]
    fn the_default_runtime_ulimits_and_selinux_come_with_their_source() {
        let mut f = facts("kubeadm-1.20-docker");
        let d = &mut f.docker.settings;
        d.runtimes = vec![runtime("crun", Some("/usr/bin/crun"), true)];
        d.default_runtime = Some("crun".into());
        d.default_ulimits = vec![
            Ulimit::parse("nofile=65536:1048576", "x").unwrap(),
            Ulimit::parse("nproc=10:5", "y").unwrap(),
            // Unlimited soft over a finite hard limit: as invalid.
            Ulimit::parse("core=-1:0", "z").unwrap(),
        ];
        d.selinux_enabled = true;
        let mut w = vec![];
        let wl = workloads(&f, Target::Containerd, None, &mut w);
        assert_eq!(wl.default_handler.unwrap().value, "crun");
        assert_eq!(
            wl.ulimits.len(),
            1,
            "the invalid ones are said, not carried"
        );
        assert_eq!(w.iter().filter(|x| x.code == "ulimit-invalid").count(), 2);
        assert!(wl.selinux.unwrap().value);
        // A default that names nothing carried is said.
        f.docker.settings.default_runtime = Some("nvidia".into());
        let mut w = vec![];
        assert!(workloads(&f, Target::Containerd, None, &mut w)
            .default_handler
            .is_none());
        // SELinux on the node and a moved root: the equivalence and relabel, said exactly.
        f.selinux = Some(("enforcing".into(), "/etc/selinux/config".into()));
        let root = setting(
            "/data/containerd".to_string(),
            "beside Docker's data-root /data/docker",
        );
        let mut w = vec![];
        workloads(&f, Target::Containerd, Some(&root), &mut w);
        let s = w.iter().find(|x| x.code == "selinux-relabel").unwrap();
        assert!(
            s.fix
                .contains("semanage fcontext -a -e /var/lib/containerd -- /data/containerd"),
            "{}",
            s.fix
        );
        assert!(s.fix.contains("install policycoreutils"));
        f.selinux_tools = true;
        let mut w = vec![];
        let root = setting("/data/containers/storage".to_string(), "x");
        workloads(&f, Target::Crio, Some(&root), &mut w);
        let s = w.iter().find(|x| x.code == "selinux-relabel").unwrap();
        assert!(
            s.fix.starts_with(
                "run `semanage fcontext -a -e /var/lib/containers -- /data/containers &&"
            ),
            "{}",
            s.fix
        );
        assert!(w.iter().any(|x| x.code == "default-runtime-not-carried"));
    }
}
