//! Phase 6: what is said with the plan — the default sandbox image, inspection's risks, and
//! schema 1 images by the target.

use super::versions::Versions;
use super::*;

pub(super) fn closing_warnings(
    facts: &Facts,
    v: &Versions,
    target: Target,
    settings: &Carried,
    warnings: &mut Vec<Finding>,
) {
    let rv = v.rv;
    if settings.sandbox_image.is_none() {
        warnings.push(Finding::info(
            "sandbox-image-default",
            format!("no pause image was configured; {} uses its default ({})", target.name(), default_pause(target, rv)),
            "on a node that cannot reach registry.k8s.io, pass --sandbox-image with the mirror's pause image",
        ));
    }
    // Schema 1 matters by the target: said again here for it, in place of inspection's words.
    let by_target = crate::inspect::manifests::findings(
        &facts.docker_manifests,
        (target == Target::Containerd).then_some(rv),
    );
    warnings.extend(
        facts
            .risks
            .iter()
            .filter(|r| !crate::inspect::manifests::CODES.contains(&r.code))
            .cloned(),
    );
    warnings.extend(by_target);
}

/// The pause image a runtime uses when none is configured (runtime-facts §1).
pub(super) fn default_pause(target: Target, rv: Version) -> String {
    (target.runtime().default_pause)(rv).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::{facts, opts};
    use super::super::versions::versions;
    use super::*;

    #[test]
    fn a_default_pause_image_is_said_and_inspections_risks_carried() {
        let f = facts("kubelet-1.27-cri-dockerd");
        let o = opts(Target::Containerd);
        let mut w = vec![];
        let v = versions(&f, &o, &mut w).unwrap();
        let mut c = super::super::settings::carried(&f, &o, Target::Containerd, &mut w);
        c.sandbox_image = None;
        let mut said = vec![];
        closing_warnings(&f, &v, Target::Containerd, &c, &mut said);
        let pause = said
            .iter()
            .find(|f| f.code == "sandbox-image-default")
            .unwrap();
        assert!(pause
            .message
            .contains(&default_pause(Target::Containerd, v.rv)));
        for r in &f.risks {
            assert!(
                said.iter().any(|s| s.code == r.code),
                "{} not carried",
                r.code
            );
        }
        assert_eq!(
            default_pause(Target::Containerd, Version::new(2, 1, 4)),
            "registry.k8s.io/pause:3.10"
        );
    }
}
