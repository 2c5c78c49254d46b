//! The facts of a fixture node (`tests/fixtures/nodes/NAME/node`), for the phases' tests.

use crate::inspect::{inspect, Facts, InspectOptions};
use crate::node::Node;
use crate::system::NoCommands;
use crate::version::Version;

pub fn facts(fixture: &str) -> Facts {
    facts_with(fixture, None)
}

pub fn facts_with(fixture: &str, kubelet_version: Option<&str>) -> Facts {
    let root = format!(
        "{}/tests/fixtures/nodes/{fixture}/node",
        env!("CARGO_MANIFEST_DIR")
    );
    let opts = InspectOptions {
        kubelet_version: kubelet_version.and_then(Version::parse),
        ..Default::default()
    };
    inspect(&Node::new(root), &NoCommands, &opts).expect("the fixture inspects")
}

/// The options of a plain `migrate --to TARGET`.
pub fn opts(target: super::Target) -> super::PlanOptions {
    super::PlanOptions::new(target)
}
