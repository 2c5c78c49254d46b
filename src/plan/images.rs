//! The images decision: whether Docker's images are carried into the new runtime before the
//! cutover, and if not why — from the facts, so that the dry run says what the run will do.

use super::*;
use crate::images::Selection;

/// `root_changes`: the migration moves the runtime's root, where images carried now would be
/// left behind.
pub fn decide(
    facts: &Facts,
    target: Target,
    selection: Selection,
    root_changes: bool,
) -> ImagesPlan {
    let why_not = if selection == Selection::None {
        Some("--images none: the runtime pulls them".to_string())
    } else if !facts.talk {
        Some("offline (--root): images are not carried; the runtime pulls them".into())
    } else if let Some(why) = crate::runtime::registry::of(target).images_blocked(facts) {
        Some(why)
    } else if root_changes {
        Some("the runtime's root directory changes with this migration, so images carried now would be left behind; the runtime pulls them again".into())
    } else if !facts.docker_socket {
        Some(format!(
            "Docker is not running ({} is missing): nothing to carry",
            crate::images::docker::SOCKET
        ))
    } else {
        None
    };
    ImagesPlan { selection, why_not }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::facts;
    use super::*;

    #[test]
    fn images_are_carried_only_from_a_live_docker_into_a_root_that_stays() {
        let mut f = facts("kubeadm-1.20-docker");
        let d = |f: &Facts, t, s, r| decide(f, t, s, r).why_not.unwrap_or_default();
        assert!(d(&f, Target::Containerd, Selection::InUse, false).starts_with("offline"));
        f.talk = true;
        assert!(
            d(&f, Target::Containerd, Selection::InUse, false).contains("Docker is not running")
        );
        f.docker_socket = true;
        assert!(decide(&f, Target::Containerd, Selection::InUse, false).carried());
        assert!(d(&f, Target::Containerd, Selection::All, true).contains("root directory changes"));
        assert!(d(&f, Target::Crio, Selection::All, false).contains("skopeo"));
        f.skopeo = true;
        assert!(decide(&f, Target::Crio, Selection::All, false).carried());
        assert!(d(&f, Target::Crio, Selection::None, false).starts_with("--images none"));
    }
}
