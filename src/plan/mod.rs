//! Planning: a pure function from [`Facts`] and the options to a [`Plan`] — the files to write
//! (old and new text) and the ordered service actions. The dry run prints it; apply walks it.
//!
//! [`plan`] is a short sequence of named phases, each a pure function with its tests beside it:
//! the versions (`versions.rs`), the settings carried with where each came from
//! (`settings.rs`), the runtime's files (`runtime_files.rs`), the kubelet's side
//! (`kubelet_files.rs`), the files settled (unchanged ones dropped, each read back), the order
//! and the service actions (`actions.rs`), the checks said with the plan (`checks.rs`), and
//! whether Docker's images are carried (`images.rs`).

mod actions;
pub mod checks;
pub mod images;
mod kubelet_files;
pub mod kubenet;
pub mod model;
mod runtime_files;
mod settings;
pub mod settings_table;
#[cfg(test)]
pub(crate) mod test_facts;
mod versions;
pub mod workloads;

pub use actions::order;
pub use kubelet_files::runtime_flags_owner;

use crate::error::Failure;
use crate::flags::{FileKind, VarsFile};
use crate::inspect::kubelet::{EXEC_START, EXTRA_ARGS_FILES, KUBEADM_FLAGS};
use crate::inspect::runtimes::{CRICTL_YAML, INSTANCE_CONFIG};
use crate::inspect::{require_kubelet, Facts, Finding, RuntimeKind};
use crate::node::join;
use crate::render::{self, kubelet::Rules};
use crate::version::Version;
pub use model::*;

/// The runtime to move to: what each is in `src/runtime/mod.rs`, what each plans in its module.
pub use crate::runtime::Target;

pub fn plan(facts: &Facts, opts: &PlanOptions) -> Result<Plan, Failure> {
    require_kubelet(facts)?;
    let target = opts.target;
    let endpoint = endpoint(facts, target)?;
    // Each phase returns what it found to say: said in the order the phases ran.
    let mut warnings: Vec<Finding> = Vec::new();
    let v = versions::versions(facts, opts)?.said_to(&mut warnings);
    let mut settings = settings::carried(facts, opts, target).said_to(&mut warnings);
    let written =
        runtime_files::runtime_files(facts, &v, target, &settings)?.said_to(&mut warnings);
    // What the report names as the registries: those the runtime's files hold.
    settings.registries = written.registries;
    let mut files = written.files;
    files.extend(kubenet::kubenet_files(facts, opts, &settings)?.said_to(&mut warnings));
    let pause = settings.sandbox_image.as_ref().map(|s| s.value.as_str());
    let to = kubelet_files::KubeletMove {
        kv: v.kv,
        target,
        endpoint: &endpoint,
        pause,
    };
    files.extend(kubelet_files::kubelet_files(facts, &to)?.said_to(&mut warnings));
    checks::cni_plugins(facts, &files)?;
    let files = settle(files, v.from, target, &endpoint)?;
    let decided = actions::Decided {
        facts,
        opts,
        v: &v,
        endpoint: &endpoint,
        files: &files,
        settings: &settings,
    };
    let (order, actions) = actions::service_actions(&decided).said_to(&mut warnings);
    warnings.extend(checks::closing_warnings(facts, &v, target, &settings));
    let images = images::decide(facts, target, opts.images, settings.runtime_root.is_some());
    checks::every_file_is_read(facts, &files, &settings)?;
    Ok(Plan {
        images,
        drain: opts.drain,
        from: v.from,
        target,
        runtime_version: v.rv,
        kubelet_version: v.kv,
        config_schema: v.config_schema,
        endpoint,
        settings,
        files,
        actions,
        order,
        warnings,
    })
}

/// The files settled: those that would not change dropped, each read back as its program reads
/// it; nothing left to write on a node already on the target is "nothing to do".
fn settle(
    mut files: Vec<FileChange>,
    from: RuntimeKind,
    target: Target,
    endpoint: &str,
) -> Result<Vec<FileChange>, Failure> {
    files.retain(|f| f.old.as_deref() != Some(f.new.as_str()));
    for f in &files {
        parse_back(f)?;
    }

    if from == crate::runtime::registry::of(target).kind() && files.is_empty() {
        return Err(Failure::NothingToDo(format!(
            "the kubelet already uses {} ({endpoint}) and every file cri-migrate manages is as it would write it",
            target.name(),
        )));
    }
    Ok(files)
}

/// Every rendered file is read back the way its program reads it before it joins the plan: a
/// value from the node that the format cannot hold is a refusal naming the file, never a file
/// the runtime or systemd would misread.
fn parse_back(f: &FileChange) -> Result<(), Failure> {
    let refuse = |problem: String| {
        Failure::bad_input(
            &f.path,
            format!("the file cri-migrate would write does not read back ({problem})"),
            "A value carried from the node cannot be written in this format: check the values the plan names for it (a control character in a path or a registry name?) and fix them on the node, or pass them as flags.",
        )
    };
    let yaml = |text: &str| {
        serde_norway::from_str::<serde_norway::Value>(text.trim_start_matches('\u{feff}'))
            .map(|_| ())
            .map_err(|e| refuse(e.to_string()))
    };
    match f.format {
        Format::Unit => {
            crate::flags::VarsFile::parse(crate::flags::FileKind::DropIn, &f.new)
                .map_err(refuse)?;
        }
        Format::Yaml => yaml(&f.new)?,
        Format::Toml => {
            f.new
                .parse::<toml_edit::DocumentMut>()
                .map_err(|e| refuse(crate::error::toml_problem(&f.new, &e)))?;
        }
        Format::Json => {
            serde_json::from_str::<serde_json::Value>(&f.new).map_err(|e| refuse(e.to_string()))?;
        }
        Format::EnvFile => {
            crate::flags::VarsFile::parse(crate::flags::FileKind::EnvFile, &f.new)
                .map_err(refuse)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::runtimes::CONTAINERD_CONFIG;

    fn file(path: &str, format: Format, old: Option<&str>, new: &str) -> FileChange {
        FileChange {
            path: path.into(),
            mode: 0o644,
            old: old.map(str::to_string),
            new: new.into(),
            why: String::new(),
            unit_file: format == Format::Unit,
            format,
            group: FileGroup::Runtime,
        }
    }

    #[test]
    fn settling_drops_what_would_not_change_and_reads_the_rest_back() {
        let same = file(CRICTL_YAML, Format::Yaml, Some("a: b\n"), "a: b\n");
        let new = file(CRICTL_YAML, Format::Yaml, None, "a: b\n");
        // Nothing to write on a node already on the target: nothing to do.
        let e = settle(
            vec![same.clone()],
            RuntimeKind::Containerd,
            Target::Containerd,
            Target::Containerd.endpoint(),
        );
        assert!(matches!(e, Err(Failure::NothingToDo(_))));
        // Leaving Docker with every file as it is: the service actions still stand.
        assert!(settle(
            vec![same.clone()],
            RuntimeKind::Dockershim,
            Target::Containerd,
            Target::Containerd.endpoint(),
        )
        .unwrap()
        .is_empty());
        assert_eq!(
            settle(
                vec![same, new.clone()],
                RuntimeKind::Containerd,
                Target::Containerd,
                Target::Containerd.endpoint(),
            )
            .unwrap(),
            [new]
        );
        // A file its program would misread is refused, naming it.
        for bad in [
            file(CONTAINERD_CONFIG, Format::Toml, None, "[plugins\n"),
            file(CRICTL_YAML, Format::Yaml, None, "a: [b\n"),
            file(
                "/etc/systemd/system/kubelet.service.d/x.conf",
                Format::Unit,
                None,
                "Environment=\"A=b\n",
            ),
            file(
                KUBEADM_FLAGS,
                Format::EnvFile,
                None,
                "KUBELET_KUBEADM_ARGS=\"--a\n",
            ),
        ] {
            let e = settle(
                vec![bad.clone()],
                RuntimeKind::Dockershim,
                Target::Containerd,
                Target::Containerd.endpoint(),
            )
            .unwrap_err();
            assert!(e.to_string().contains(&bad.path), "{e}");
        }
    }

    /// Issue 33 point 2: a runtime whose unit moves its socket is pointed at where it listens —
    /// the kubelet's flag, crictl, every check — and a value that is no socket path is refused,
    /// naming where it is set.
    #[test]
    fn a_runtime_on_another_socket_is_followed_there() {
        let mut f = super::test_facts::facts("kubeadm-1.20-docker");
        f.other_sockets = vec![crate::inspect::runtimes::OtherSocket {
            unit: "containerd.service".into(),
            flag: "-a/--address".into(),
            value: "/run/site/containerd.sock".into(),
            at: "/etc/sysconfig/containerd:1 ($OPTS)".into(),
        }];
        let p = plan(&f, &super::test_facts::opts(Target::Containerd)).unwrap();
        let ep = "unix:///run/site/containerd.sock";
        assert_eq!(p.endpoint, ep);
        let flags = p.files.iter().find(|x| x.path == KUBEADM_FLAGS).unwrap();
        assert!(
            flags
                .new
                .contains(&format!("--container-runtime-endpoint={ep}")),
            "{}",
            flags.new
        );
        let crictl = p.files.iter().find(|x| x.path == CRICTL_YAML).unwrap();
        assert!(
            crictl.new.contains(&format!("runtime-endpoint: \"{ep}\"")),
            "{}",
            crictl.new
        );
        for a in &p.actions {
            let json = serde_json::to_value(a).unwrap();
            if let Some(e) = json.get("endpoint") {
                assert_eq!(e, ep, "{a}");
            }
        }
        // (containerd's template shows its default socket in a comment only.)
        for x in &p.files {
            assert!(
                !x.new.lines().any(|l| !l.trim_start().starts_with('#')
                    && l.contains("/run/containerd/containerd.sock")),
                "{}: {}",
                x.path,
                x.new
            );
        }
        // Another runtime's unit is not this target's business.
        if let Ok(p) = plan(&f, &super::test_facts::opts(Target::Crio)) {
            assert_eq!(p.endpoint, "unix:///var/run/crio/crio.sock");
        }
        f.other_sockets[0].value = "/run/x.sock\n--v=9".into();
        let e = plan(&f, &super::test_facts::opts(Target::Containerd)).unwrap_err();
        assert!(e.to_string().contains("/etc/sysconfig/containerd"), "{e}");
        f.other_sockets[0].value = "tcp://10.0.0.1:1234".into();
        assert!(plan(&f, &super::test_facts::opts(Target::Containerd)).is_err());
    }

    /// Issue 33 point 2: a file nothing reads is refused, naming it.
    #[test]
    fn a_file_nothing_reads_is_refused() {
        let f = super::test_facts::facts("kubeadm-1.20-docker");
        let o = super::test_facts::opts(Target::Containerd);
        assert!(plan(&f, &o).is_ok());
        // kubelet.service no longer loads kubeadm-flags.env: its flags would be lost.
        let mut g = f.clone();
        if let Some(kc) = g.kubelet_command.as_mut() {
            kc.env_files.retain(|e| e != KUBEADM_FLAGS);
        }
        let e = plan(&g, &o).unwrap_err().to_string();
        assert!(
            e.contains(KUBEADM_FLAGS) && e.contains("loads no such file"),
            "{e}"
        );
        // containerd loads another file than the one written.
        let mut h = f.clone();
        h.containerd_config_path.path = "/etc/containerd/other.toml".into();
        h.containerd_config_path.from = Some("a test".into());
        let mut files = plan(&f, &o).unwrap().files;
        let settings = plan(&f, &o).unwrap().settings;
        assert!(checks::every_file_is_read(&h, &files, &settings).is_err());
        files.retain(|x| !x.path.starts_with("/etc/containerd/"));
        assert!(checks::every_file_is_read(&h, &files, &settings).is_ok());
    }
}
