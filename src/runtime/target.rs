//! What a target runtime does in a migration, asked by planning, the checks and the commands:
//! one implementation per runtime (`containerd.rs`, `crio.rs`), found by its [`Target`] in
//! `registry.rs`. What a runtime *is* (names, unit, socket, package) is its
//! [`super::About`], which every layer reads; what it *plans* is here.

use crate::error::Failure;
use crate::images::Dest;
use crate::inspect::{Facts, Finding, Installed, RuntimeKind};
use crate::node::Node;
use crate::plan::model::{Carried, Order, Plan, RuntimeFiles, Said, Setting, Versions};
use crate::render::Handler;
use crate::version::Version;

pub use super::{About, Target};

/// Docker's storage driver in a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Its default (overlay): nothing to write.
    Default,
    /// Its own name for the same driver.
    As(&'static str),
    /// Nothing ready there: said.
    NotReady,
}

/// Docker's storage driver in a runtime of the containers' usual drivers: overlay its default,
/// btrfs and zfs by their names, vfs as `vfs` (containerd's `native`, containers/storage's
/// `vfs`).
pub fn usual_storage(docker: &str, vfs: &'static str) -> Storage {
    match docker {
        "overlay2" | "overlay" => Storage::Default,
        "btrfs" => Storage::As("btrfs"),
        "zfs" => Storage::As("zfs"),
        "vfs" => Storage::As(vfs),
        _ => Storage::NotReady,
    }
}

/// One runtime the kubelet can move to. A new runtime is a module implementing this, an
/// [`About`], a [`Target`] variant and its line in `registry.rs`.
pub trait TargetRuntime: Sync {
    /// What it is: names, unit, socket, package.
    fn about(&self) -> &'static About;
    /// Inspection's name for it (where the kubelet already is).
    fn kind(&self) -> RuntimeKind {
        self.about().kind
    }
    /// What the node has of it.
    fn installed<'f>(&self, facts: &'f Facts) -> &'f Installed;

    // Its versions.
    /// The oldest version cri-migrate moves a kubelet onto (an older one installed is upgraded
    /// by `--install-runtime`); `None` where its version follows the kubelet's instead.
    fn oldest(&self) -> Option<Version> {
        None
    }
    /// The config version written for the runtime's and the kubelet's versions (`v.rv`, `v.kv`;
    /// `None`: its config has none); a pair it cannot serve is refused, a skew said.
    fn config_schema(&self, facts: &Facts, v: &Versions) -> Result<Said<Option<u8>>, Failure> {
        let _ = (facts, v);
        Ok(Said::quiet(None))
    }
    /// The pause image it uses when none is configured (runtime-facts §1).
    fn default_pause(&self, rv: Version) -> &'static str;

    // The settings carried into it.
    /// The pause image its own config on the node sets, where nothing else names one.
    fn configured_sandbox_image(&self, facts: &Facts) -> Option<Setting<String>> {
        let _ = facts;
        None
    }
    /// Its root's directory beside Docker's data-root (under the same parent).
    fn root_beside_docker(&self) -> &'static str;
    /// A root moved to `root` on an SELinux node: (the default root whose labels it takes,
    /// the directory labelled like it).
    fn selinux_like(&self, root: &str) -> (String, String);
    /// Where it takes each carried setting (`plan::settings_table`), by the table's keys, in
    /// its order; and its column's heading in docs/carried-settings.md.
    fn carried_to(&self) -> (&'static str, &'static [(&'static str, &'static str)]);
    /// Docker's storage driver as its own.
    fn storage_driver(&self, docker: &str) -> Storage;
    /// Docker's `max-concurrent-downloads` carried (`Ok`), or what is said instead.
    fn max_concurrent_downloads(&self, n: u64) -> Result<u64, Finding>;
    /// Whether a handler carried from Docker's runtimes runs on it; what is said if not.
    fn runs_handler(&self, h: &Handler) -> Result<(), Finding> {
        let _ = h;
        Ok(())
    }
    /// How a GPU runtime of NVIDIA's runs on it, and what the operator may do instead.
    fn nvidia_hint(&self) -> (&'static str, &'static str);

    // Its files.
    /// The files it reads its settings (`s`) from, rendered (merged into the node's where it
    /// keeps one file), and the registries they hold.
    fn files(&self, f: &Facts, v: &Versions, s: &Carried) -> Result<Said<RuntimeFiles>, Failure>;
    /// The handlers it will have once the plan's files are written.
    fn planned_handlers(&self, facts: &Facts, plan: &Plan) -> Vec<String>;

    // The order of the migration.
    /// Whether it can come up with its new config beside Docker (the kubelet still on it),
    /// once the node's units allow it at all (its unit there, not tied to Docker's).
    fn beside_docker(&self, facts: &Facts) -> Order;
    /// The version whose image support schema 1 manifests are judged by, where that matters.
    fn schema1_judged_by(&self, rv: Version) -> Option<Version> {
        let _ = rv;
        None
    }

    // Docker's images.
    /// Why Docker's images cannot be carried into it on this node, if they cannot.
    fn images_blocked(&self, facts: &Facts) -> Option<String> {
        let _ = facts;
        None
    }
    /// Where the carry-over writes them on this node.
    fn image_dest(&self, facts: &Facts, node: &Node) -> Result<Dest, Failure>;
    /// The carry-over may link Docker's layers rather than copy them (else why not).
    fn links_images(&self) -> Result<(), &'static str> {
        Err("its images are copied")
    }
    /// What to do when the carry-over failed on its side.
    fn carry_fix(&self) -> &'static str;
}
