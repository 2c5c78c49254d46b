//! A third runtime, for the tests only: what adding a runtime takes (this module, its `About`
//! and `Target` variant in mod.rs, its line in registry.rs), and that planning, the order and
//! the checks ask the runtime rather than name containerd or CRI-O. It keeps one TOML file of
//! the settings carried, runs any handler, and copies images.

use super::target::{About, Storage, Target, TargetRuntime};
use crate::error::Failure;
use crate::images::Dest;
use crate::inspect::{Facts, Finding, Installed, RuntimeKind};
use crate::node::Node;
use crate::plan::model::{
    change, Carried, FileGroup, Format, Order, Plan, RuntimeFiles, Said, Versions,
};
use crate::version::Version;
use std::sync::LazyLock;

pub const ABOUT: About = About {
    target: Target::Third,
    // Nothing on a node is this runtime before the migration.
    kind: RuntimeKind::Unknown,
    name: "Third",
    unit: "third.service",
    endpoint: "unix:///run/third/third.sock",
    image_store: "/var/lib/third",
    package: |_, _, _| "third".to_string(),
    binary: "third",
    install_hint: "apt-get install third",
    config: "/etc/third/config.toml",
};

/// As if the node had it installed, with its unit.
static INSTALLED: LazyLock<Installed> = LazyLock::new(|| Installed {
    installed: true,
    version: Some(Version::new(1, 0, 0)),
    units: vec!["third.service".into()],
    ..Default::default()
});

pub struct Third;

impl TargetRuntime for Third {
    fn about(&self) -> &'static About {
        &ABOUT
    }
    fn installed<'f>(&self, _: &'f Facts) -> &'f Installed {
        &INSTALLED
    }
    fn default_pause(&self, _: Version) -> &'static str {
        "registry.k8s.io/pause:3.10"
    }
    fn root_beside_docker(&self) -> &'static str {
        "third"
    }
    fn selinux_like(&self, root: &str) -> (String, String) {
        ("/var/lib/third".into(), root.into())
    }
    fn carried_to(&self) -> (&'static str, &'static [(&'static str, &'static str)]) {
        (
            "Third",
            &[
                ("cgroup_driver", "`cgroup_driver`"),
                ("sandbox_image", "`sandbox_image`"),
            ],
        )
    }
    fn storage_driver(&self, docker: &str) -> Storage {
        match docker {
            "overlay2" | "overlay" => Storage::Default,
            _ => Storage::NotReady,
        }
    }
    fn max_concurrent_downloads(&self, n: u64) -> Result<u64, Finding> {
        Ok(n)
    }
    fn nvidia_hint(&self) -> (&'static str, &'static str) {
        ("as its own", "nothing to do")
    }
    fn files(
        &self,
        facts: &Facts,
        _: &Versions,
        s: &Carried,
    ) -> Result<Said<RuntimeFiles>, Failure> {
        let mut doc = toml_edit::DocumentMut::new();
        doc["cgroup_driver"] = toml_edit::value(s.cgroup_driver.value.as_str());
        doc["cni_conf_dir"] = toml_edit::value(s.cni_conf_dir.value.as_str());
        if let Some(p) = &s.sandbox_image {
            doc["sandbox_image"] = toml_edit::value(p.value.as_str());
        }
        if let Some(n) = &s.max_concurrent_downloads {
            doc["max_concurrent_downloads"] = toml_edit::value(n.value as i64);
        }
        Ok(Said::quiet(RuntimeFiles {
            files: vec![change(
                facts,
                (FileGroup::Runtime, Format::Toml),
                ABOUT.config,
                doc.to_string(),
                "Third's settings",
            )],
            registries: vec![],
        }))
    }
    fn planned_handlers(&self, _: &Facts, _: &Plan) -> Vec<String> {
        vec!["runc".into()]
    }
    fn beside_docker(&self, _: &Facts) -> Order {
        Order {
            check_before_cutover: true,
            why: "Third runs beside Docker on its own socket".into(),
        }
    }
    fn image_dest(&self, _: &Facts, _: &Node) -> Result<Dest, Failure> {
        Ok(Dest::ContainersStorage)
    }
    fn carry_fix(&self) -> &'static str {
        "Start Third."
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::test_facts::{facts_with, opts};
    use crate::plan::{plan, Action, FileGroup};
    use crate::runtime::Target;

    #[test]
    fn a_third_runtime_plans_a_docker_node_through_its_module_alone() {
        // EKS's AMI: cgroupfs from its JSON config, a pause image of ECR, Docker's
        // max-concurrent-downloads — carried into Third's own file.
        let f = facts_with("eks-al2-1.22-docker", Some("1.22.17"));
        let p = plan(&f, &opts(Target::Third)).expect("plans");
        assert_eq!(p.target, Target::Third);
        assert_eq!(p.endpoint, "unix:///run/third/third.sock");
        assert_eq!(p.config_schema, None);
        let config = p
            .files
            .iter()
            .find(|x| x.path == "/etc/third/config.toml")
            .expect("its file");
        assert_eq!(config.group, FileGroup::Runtime);
        let doc: toml_edit::DocumentMut = config.new.parse().unwrap();
        assert_eq!(doc["cgroup_driver"].as_str(), Some("cgroupfs"));
        assert!(doc["sandbox_image"].as_str().unwrap().contains(".ecr."));
        assert_eq!(doc["max_concurrent_downloads"].as_integer(), Some(10));
        // Nothing of containerd or CRI-O is written.
        assert!(!p
            .files
            .iter()
            .any(|x| x.path.contains("containerd") || x.path.contains("crio")));
        // The kubelet is pointed at its socket.
        assert!(p.files.iter().any(
            |x| x.group == FileGroup::Kubelet && x.new.contains("unix:///run/third/third.sock")
        ));
        // Its unit is brought up and checked beside Docker, before the kubelet moves.
        let i = |want: &dyn Fn(&Action) -> bool| p.actions.iter().position(want);
        let restart = i(&|a| matches!(a, Action::Restart { unit } if unit == "third.service"));
        let sandbox = i(
            &|a| matches!(a, Action::CheckSandbox { endpoint, .. } if endpoint == "unix:///run/third/third.sock"),
        );
        let kubelet_stop =
            i(&|a| matches!(a, Action::Stop { unit, .. } if unit == "kubelet.service"));
        assert!(p.order.check_before_cutover, "{}", p.order.why);
        assert!(
            restart.is_some() && sandbox.is_some() && kubelet_stop.is_some(),
            "{:?}",
            p.actions
        );
        assert!(
            restart < sandbox && sandbox < kubelet_stop,
            "{:?}",
            p.actions
        );
    }
}
