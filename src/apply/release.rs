//! host-local's address reservations of the pods Docker ran: released once Docker has stopped
//! (nothing else frees them: the kubelet stops first, so no CNI DEL runs), by moving each file
//! into the backup, so that a rollback puts back exactly what was there.

use crate::node::{join, Node};
use anyhow::{Context, Result};

/// Where a released file goes: `<backup>/released/<its path>`.
fn kept_at(backup_dir: &str, path: &str) -> String {
    join(&join(backup_dir, "released"), path.trim_start_matches('/'))
}

/// Move each reservation that still names its container into the backup. A file gone, or
/// naming another container now (the address was given out again), is left alone.
pub fn release(node: &Node, backup_dir: &str, reservations: &[(String, String)]) -> Result<String> {
    let (mut moved, mut left) = (0, 0);
    for (path, container) in reservations {
        let still = node
            .read(path)
            .ok()
            .flatten()
            .is_some_and(|t| t.lines().next().map(str::trim) == Some(container.as_str()));
        if !still {
            left += 1;
            continue;
        }
        let to = kept_at(backup_dir, path);
        node.rename(path, &to)
            .with_context(|| format!("cannot release {path}"))?;
        moved += 1;
    }
    Ok(if left > 0 {
        format!("{moved} released; {left} already gone or given out again, left alone")
    } else {
        format!("{moved} released")
    })
}

/// Put back every released file that is not at its place (a new reservation there wins).
pub fn put_back(node: &Node, backup_dir: &str, paths: &[String]) -> Result<Option<String>> {
    let mut back = 0;
    for path in paths {
        let kept = kept_at(backup_dir, path);
        if !node.exists(&kept) || node.exists(path) {
            continue;
        }
        node.rename(&kept, path)
            .with_context(|| format!("cannot put back {path}"))?;
        back += 1;
    }
    Ok(Some(format!("{back} put back")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_then_put_back_exactly() {
        let (_d, node) = crate::node::test_node(&[
            ("/var/lib/cni/networks/cbr0/10.0.0.5", "aaa\neth0\n"),
            (
                "/var/lib/cni/networks/cbr0/10.0.0.6",
                "now-someone-else\neth0\n",
            ),
        ]);
        let backup = "/var/lib/cri-migrate/backups/b1";
        let r = release(
            &node,
            backup,
            &[
                ("/var/lib/cni/networks/cbr0/10.0.0.5".into(), "aaa".into()),
                ("/var/lib/cni/networks/cbr0/10.0.0.6".into(), "bbb".into()),
                ("/var/lib/cni/networks/cbr0/10.0.0.7".into(), "ccc".into()),
            ],
        )
        .unwrap();
        assert_eq!(
            r,
            "1 released; 2 already gone or given out again, left alone"
        );
        assert!(!node.exists("/var/lib/cni/networks/cbr0/10.0.0.5"));
        assert!(node.exists("/var/lib/cni/networks/cbr0/10.0.0.6"));
        assert!(node.exists(&format!(
            "{backup}/released/var/lib/cni/networks/cbr0/10.0.0.5"
        )));
        let paths = vec![
            "/var/lib/cni/networks/cbr0/10.0.0.5".to_string(),
            "/var/lib/cni/networks/cbr0/10.0.0.6".to_string(),
        ];
        put_back(&node, backup, &paths).unwrap();
        assert_eq!(
            node.read("/var/lib/cni/networks/cbr0/10.0.0.5")
                .unwrap()
                .as_deref(),
            Some("aaa\neth0\n")
        );
        // Twice is harmless.
        put_back(&node, backup, &paths).unwrap();
        assert_eq!(
            node.read("/var/lib/cni/networks/cbr0/10.0.0.6")
                .unwrap()
                .as_deref(),
            Some("now-someone-else\neth0\n")
        );
    }
}
