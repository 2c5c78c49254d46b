//! Installed packages from the dpkg database (`/var/lib/dpkg/status`), read as text so that a
//! node image under `--root` can be inspected without its package manager.

use crate::node::Node;
use crate::version::Version;
use anyhow::Result;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Packages {
    /// name -> every record of it: (status, version), in file order.
    records: BTreeMap<String, Vec<(String, String)>>,
}

pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// What the database says of a package: the version installed, if one is, and a note when its
/// records are more than one (an interrupted upgrade, a database edited by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    /// None when several records say "installed" with different versions: no way to tell.
    pub version: Option<Version>,
    pub note: Option<String>,
}

impl Packages {
    pub fn read(node: &Node) -> Result<Packages> {
        let text = node.read(DPKG_STATUS)?.unwrap_or_default();
        Ok(Packages::parse(&text))
    }

    pub fn parse(text: &str) -> Packages {
        let mut records: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let text = text.replace("\r\n", "\n");
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
            records.entry(pkg).or_default().push((status, version));
        }
        Packages { records }
    }

    /// The first of `names` that is installed.
    pub fn find(&self, names: &[&str]) -> Option<Found> {
        names.iter().find_map(|n| {
            let records = self.records.get(*n)?;
            let mut installed: Vec<&String> = records
                .iter()
                .filter(|(s, _)| s.ends_with(" installed"))
                .map(|(_, v)| v)
                .collect();
            installed.dedup();
            if installed.is_empty() {
                return None;
            }
            let listed = || {
                records
                    .iter()
                    .map(|(s, v)| format!("{v} ({s})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (version, note) = match installed.as_slice() {
                [one] => (
                    Version::parse(one),
                    (records.len() > 1).then(|| {
                        format!(
                            "the dpkg database has {} records of {n}: {}; the installed one ({one}) counts",
                            records.len(),
                            listed()
                        )
                    }),
                ),
                _ => (
                    None,
                    Some(format!(
                        "the dpkg database says {n} is installed in more than one version: {}; which one runs cannot be told from it",
                        listed()
                    )),
                ),
            };
            Some(Found {
                name: n.to_string(),
                version,
                note,
            })
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
        assert_eq!(
            p.find(&["kubelet"]).unwrap().version,
            Version::parse("1.23.17")
        );
        assert!(p.find(&["docker.io"]).is_none());
    }

    #[test]
    fn several_records_are_said() {
        let p = Packages::parse(
            "Package: kubelet\nStatus: deinstall ok config-files\nVersion: 1.22.1-00\n\nPackage: kubelet\nStatus: install ok installed\nVersion: 1.23.17-00\n",
        );
        let f = p.find(&["kubelet"]).unwrap();
        assert_eq!(f.version, Version::parse("1.23.17"));
        assert!(f.note.unwrap().contains("2 records"));
        let p = Packages::parse(
            "Package: kubelet\r\nStatus: install ok installed\r\nVersion: 1.22.1-00\r\n\r\nPackage: kubelet\r\nStatus: install ok installed\r\nVersion: 1.23.17-00\r\n",
        );
        let f = p.find(&["kubelet"]).unwrap();
        assert_eq!(f.version, None);
        assert!(f.note.unwrap().contains("more than one version"));
    }
}
