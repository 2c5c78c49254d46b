//! Installed packages from the dpkg database (`/var/lib/dpkg/status`), read as text so that a
//! node image under `--root` can be inspected without its package manager.

use crate::node::Node;
use crate::version::Version;
use anyhow::Result;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Packages {
    /// name -> version string, installed packages only.
    installed: BTreeMap<String, String>,
}

pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

impl Packages {
    pub fn read(node: &Node) -> Result<Packages> {
        let text = node.read(DPKG_STATUS)?.unwrap_or_default();
        Ok(Packages::parse(&text))
    }

    pub fn parse(text: &str) -> Packages {
        let mut installed = BTreeMap::new();
        for para in text.split("\n\n") {
            let field = |name: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                    .map(|v| v.trim().to_string())
            };
            let (Some(pkg), Some(status), Some(version)) =
                (field("Package"), field("Status"), field("Version"))
            else {
                continue;
            };
            if status.ends_with(" installed") {
                installed.insert(pkg, version);
            }
        }
        Packages { installed }
    }

    /// The first of `names` that is installed, with its parsed version.
    pub fn find(&self, names: &[&str]) -> Option<(String, Option<Version>)> {
        names.iter().find_map(|n| {
            self.installed
                .get(*n)
                .map(|v| (n.to_string(), Version::parse(v)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_installed_packages_count() {
        let p = Packages::parse(
            "Package: kubelet\nStatus: install ok installed\nVersion: 1.23.17-00\n\nPackage: docker.io\nStatus: deinstall ok config-files\nVersion: 20.10.24\n",
        );
        assert_eq!(p.find(&["kubelet"]).unwrap().1, Version::parse("1.23.17"));
        assert!(p.find(&["docker.io"]).is_none());
    }
}
