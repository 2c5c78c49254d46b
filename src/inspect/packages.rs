//! Installed packages from the dpkg database (`/var/lib/dpkg/status`), read as text so that a
//! node image under `--root` can be inspected without its package manager, and from the rpm
//! database (RHEL, Rocky, Amazon Linux), read by this machine's own `rpm` (its `sqlite` or
//! read-only `bdb_ro` backend, `--dbpath` at the node's database: nothing of the node runs).

use crate::node::{join, Node};
use crate::version::Version;
use anyhow::Result;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct Packages {
    /// name -> every record of it: (status, version), in file order.
    records: BTreeMap<String, Vec<(String, String)>>,
    /// The databases read, said ("/var/lib/dpkg/status", "the rpm database /var/lib/rpm").
    pub databases: Vec<String>,
    /// What could not be read, said (an rpm database without `rpm` here to read it).
    pub notes: Vec<String>,
}

pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Where an rpm database may be (rpm 4.17+ moved it under /usr), and the file that tells its
/// format, with the backend that reads it and the files of the database that backend reads.
const RPM_DBS: [&str; 2] = ["/usr/lib/sysimage/rpm", "/var/lib/rpm"];
const RPM_FORMATS: [(&str, &str, &[&str]); 3] = [
    (
        "rpmdb.sqlite",
        "sqlite",
        &["rpmdb.sqlite", "rpmdb.sqlite-wal"],
    ),
    ("Packages", "bdb_ro", &["Packages"]),
    ("Packages.db", "ndb", &["Packages.db", "Index.db"]),
];

/// The most an rpm database's files may hold together: a large server's is a few hundred MiB.
pub const MAX_RPM_DB_BYTES: u64 = 1 << 30;

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
        let dpkg = node.read(DPKG_STATUS)?;
        let mut p = Packages::parse(dpkg.as_deref().unwrap_or_default());
        if dpkg.is_some() {
            p.databases.push(DPKG_STATUS.to_string());
        }
        p.read_rpm(node);
        Ok(p)
    }

    /// The databases looked at, for a message: "/var/lib/dpkg/status" or "the rpm database
    /// /var/lib/rpm", or what there was none of.
    pub fn said(&self) -> String {
        if self.databases.is_empty() {
            format!(
                "no package database on the node ({DPKG_STATUS}, an rpm database in {})",
                RPM_DBS.join(" or ")
            )
        } else {
            self.databases.join(" and ")
        }
    }

    /// The node's rpm database, through this machine's `rpm`. The node's path is never given
    /// to rpm: rpm expands macros (`%(...)`, `%{lua:...}`) in its `--dbpath` and follows links
    /// on the host. The database's files are copied (regular files only, opened inside the root
    /// as every node file is, bounded in size, streamed) into a private directory of the tool's
    /// own, whose path holds only plain characters, and rpm reads that copy.
    fn read_rpm(&mut self, node: &Node) {
        let Some((db, backend, files)) = RPM_DBS.iter().find_map(|d| {
            RPM_FORMATS
                .iter()
                .find(|(f, _, _)| node.is_file(&join(d, f)))
                .map(|(_, b, files)| (*d, *b, *files))
        }) else {
            return;
        };
        let said = format!("the rpm database {db}");
        let copy = match copy_rpm_db(node, db, files) {
            Ok(dir) => dir,
            Err(e) => {
                self.notes.push(format!(
                    "{said} was not read: {}",
                    crate::secrets::redact(&format!("{e:#}"))
                ));
                return;
            }
        };
        let dbpath = copy.path().display().to_string();
        let backend = format!("_db_backend {backend}");
        let ran = crate::system::run(
            "rpm",
            &[
                "--dbpath",
                &dbpath,
                "--define",
                &backend,
                "-qa",
                "--qf",
                "%{NAME}\\t%{VERSION}-%{RELEASE}\\n",
            ],
            &[],
            std::time::Duration::from_secs(60),
        );
        match ran {
            Ok(r) if r.success => {
                for line in r.stdout.lines() {
                    if let Some((name, version)) = line.split_once('\t') {
                        self.records
                            .entry(name.to_string())
                            .or_default()
                            .push(("install ok installed".into(), version.to_string()));
                    }
                }
                self.databases.push(said);
            }
            Ok(r) => self.notes.push(format!(
                "{said} could not be read: {}",
                r.stderr.lines().next().unwrap_or("rpm failed")
            )),
            Err(_) => self.notes.push(format!(
                "{said} is there, and rpm is not installed here to read it (apt-get install rpm)"
            )),
        }
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
        Packages {
            records,
            ..Default::default()
        }
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
                            "the package database has {} records of {n}: {}; the installed one ({one}) counts",
                            records.len(),
                            listed()
                        )
                    }),
                ),
                _ => (
                    None,
                    Some(format!(
                        "the package database says {n} is installed in more than one version: {}; which one runs cannot be told from it",
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

/// The files of the node's rpm database `db` copied into a new private directory (0700) whose
/// path has only plain characters (no `%` for rpm to expand, no blank), at most
/// [`MAX_RPM_DB_BYTES`] in all.
fn copy_rpm_db(node: &Node, db: &str, files: &[&str]) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("cri-migrate-rpmdb.")
        .tempdir_in(plain_temp_dir())?;
    let path = dir.path().display().to_string();
    anyhow::ensure!(
        is_plain_path(&path),
        "the temporary directory {path} holds characters rpm would expand"
    );
    let mut left = MAX_RPM_DB_BYTES;
    for f in files {
        let from = join(db, f);
        let to = dir.path().join(f);
        if node.copy_out(&from, &to, left)? {
            left = left.saturating_sub(std::fs::metadata(&to)?.len());
        }
    }
    Ok(dir)
}

/// The temporary directory when its path is plain, else /tmp.
fn plain_temp_dir() -> std::path::PathBuf {
    let t = std::env::temp_dir();
    if is_plain_path(&t.display().to_string()) {
        t
    } else {
        "/tmp".into()
    }
}

/// An absolute path of letters, digits and `/._-` only: nothing a program could read as a
/// macro, an option or a second word.
fn is_plain_path(p: &str) -> bool {
    p.starts_with('/')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
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

    /// An rpm database under a node root, made with this machine's rpmbuild and rpm (CI
    /// installs them: the `rpm` package), holding `name-version-release` records only.
    fn rpm_node(packages: &[(&str, &str, &str)]) -> tempfile::TempDir {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let top = work.path().join("build");
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap_or_else(|e| panic!("{} ({e}): apt-get install rpm", args[0]));
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let root_s = root.display().to_string();
        // `rpm` on the node's database under the root.
        let rpm_db = |more: &[&str]| {
            let mut args = vec!["rpm", "--root", &root_s, "--dbpath", "/var/lib/rpm"];
            args.extend(more);
            run(&args);
        };
        rpm_db(&["--initdb"]);
        for (name, version, release) in packages {
            let spec = work.path().join(format!("{name}.spec"));
            std::fs::write(&spec, format!("Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: t\nLicense: MIT\nBuildArch: noarch\n%description\nt\n%files\n")).unwrap();
            run(&[
                "rpmbuild",
                "--quiet",
                "--define",
                &format!("_topdir {}", top.display()),
                "-bb",
                &spec.display().to_string(),
            ]);
            let rpm = top.join(format!("RPMS/noarch/{name}-{version}-{release}.noarch.rpm"));
            rpm_db(&[
                "-i",
                "--justdb",
                "--nodeps",
                "--noscripts",
                &rpm.display().to_string(),
            ]);
        }
        work
    }

    #[test]
    #[ignore = "needs rpm and rpmbuild (apt-get install rpm; .ci/run installs them): cargo test -- --include-ignored"]
    fn an_rpm_node_is_read_through_its_rpm_database_and_said() {
        let work = rpm_node(&[
            ("containerd.io", "1.6.21", "3.1.el8"),
            ("docker-ce", "20.10.24", "3.el8"),
        ]);
        let n = Node::new(work.path().join("root"));
        let p = Packages::read(&n).unwrap();
        assert_eq!(p.databases, ["the rpm database /var/lib/rpm"]);
        assert_eq!(
            p.find(&["containerd.io"]).unwrap().version,
            Version::parse("1.6.21")
        );
        assert_eq!(
            p.find(&["docker-ce"]).unwrap().version,
            Version::parse("20.10.24")
        );
        assert!(p.find(&["kubelet"]).is_none());
        assert_eq!(p.said(), "the rpm database /var/lib/rpm");
        // Neither database: said so, naming both.
        let empty = tempfile::tempdir().unwrap();
        let p = Packages::read(&Node::new(empty.path())).unwrap();
        assert!(p.said().starts_with("no package database on the node (/var/lib/dpkg/status, an rpm database in /usr/lib/sysimage/rpm or /var/lib/rpm)"), "{}", p.said());
    }
}
