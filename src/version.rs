//! Versions as the node reports them: `v1.23.17`, `1.23.17-00`, `1.28.2-1.1`,
//! `1.6.20~ds1-1+deb12u3`, `1:1.6.20-1`, `2.1.9+ds1-5`.

use serde::{Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parse the leading `major.minor[.patch]` of a version string, ignoring a Debian epoch,
    /// a leading `v` and any suffix.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = match s.split_once(':') {
            Some((epoch, rest)) if epoch.chars().all(|c| c.is_ascii_digit()) => rest,
            _ => s,
        };
        let s = s.trim_start_matches('v');
        let mut nums = s.split('.').map(|part| {
            let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<u32>().ok()
        });
        let major = nums.next()??;
        let minor = nums.next()??;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// Find the first version-looking word in a program's `--version` output
    /// (`Kubernetes v1.23.17`, `containerd github.com/containerd/containerd 1.6.20~ds1 ...`).
    pub fn find_in(text: &str) -> Option<Version> {
        text.split_whitespace()
            .filter(|w| {
                w.trim_start_matches('v')
                    .starts_with(|c: char| c.is_ascii_digit())
                    && w.contains('.')
            })
            .find_map(Version::parse)
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    pub fn at_least_patch(&self, major: u32, minor: u32, patch: u32) -> bool {
        (self.major, self.minor, self.patch) >= (major, minor, patch)
    }
}

/// The magic that starts a Go binary's build information (`.go.buildinfo`).
pub const GO_BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";

/// The version a Go binary carries in its build information (Go 1.18 and later: after the
/// magic, a pointer size, a flags byte with bit 2 set, padding to 32 bytes, then the Go version
/// and the module information as length-prefixed strings): its main module's version where it
/// is a release (`mod PATH vX.Y.Z`), else a `-X ...version.Version=X` in its recorded
/// `-ldflags`. `after` is what follows the magic. Distribution builds often carry neither.
pub fn from_go_buildinfo(after: &[u8]) -> Option<Version> {
    let flags = *after.get(1)?;
    if flags & 2 == 0 {
        return None; // older layouts point into the data segment: not read
    }
    let mut at = 32 - GO_BUILDINFO_MAGIC.len();
    let mut string = || -> Option<&[u8]> {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let b = *after.get(at)?;
            at += 1;
            n |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b < 0x80 {
                break;
            }
            if shift > 35 {
                return None;
            }
        }
        let s = after.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    let _go = string()?;
    let info = String::from_utf8_lossy(string()?).into_owned();
    for line in info.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.first() == Some(&"mod") && f.len() >= 3 && f[2] != "(devel)" {
            if let Some(v) = Version::parse(f[2].trim_start_matches('v')) {
                return Some(v);
            }
        }
    }
    info.lines()
        .filter(|l| l.starts_with("build\t-ldflags="))
        .flat_map(|l| l.split(['"', '\'', ' ']))
        .find_map(|w| {
            let (var, value) = w.split_once('=')?;
            (var.ends_with("/version.Version") || var.ends_with("/version.gitVersion"))
                .then(|| Version::parse(value.trim_start_matches('v')))
                .flatten()
        })
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_found_on_nodes() {
        for (s, v) in [
            ("v1.23.17", (1, 23, 17)),
            ("1.23.17-00", (1, 23, 17)),
            ("1.28.2-1.1", (1, 28, 2)),
            ("1.6.20~ds1-1+deb12u3", (1, 6, 20)),
            ("1:1.6.20-1", (1, 6, 20)),
            ("2.1.9+ds1-5", (2, 1, 9)),
            ("1.27", (1, 27, 0)),
        ] {
            assert_eq!(Version::parse(s), Some(Version::new(v.0, v.1, v.2)), "{s}");
        }
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse("1"), None);
    }

    #[test]
    fn finds_versions_in_program_output() {
        assert_eq!(
            Version::find_in("Kubernetes v1.23.17"),
            Some(Version::new(1, 23, 17))
        );
        assert_eq!(
            Version::find_in(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            ),
            Some(Version::new(1, 6, 20))
        );
        assert_eq!(
            Version::find_in("crio version 1.29.1"),
            Some(Version::new(1, 29, 1))
        );
    }

    /// A build information blob as Go 1.18+ writes it, after the magic.
    fn buildinfo(modinfo: &str) -> Vec<u8> {
        let mut b = vec![8u8, 2];
        b.resize(32 - GO_BUILDINFO_MAGIC.len(), 0);
        for s in ["go1.22.5", modinfo] {
            let mut n = s.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                b.push(if n > 0 { byte | 0x80 } else { byte });
                if n == 0 {
                    break;
                }
            }
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    #[test]
    fn a_go_binary_says_its_version_in_its_build_information() {
        let release = buildinfo("0w\u{af}path\tgithub.com/containerd/containerd/cmd/containerd\nmod\tgithub.com/containerd/containerd\tv1.6.33\th1:abc=\n");
        assert_eq!(from_go_buildinfo(&release), Version::parse("1.6.33"));
        // A build from a checkout: the module is (devel), the version is in the ldflags.
        let devel = buildinfo("path\tk8s.io/kubernetes/cmd/kubelet\nmod\tk8s.io/kubernetes\t(devel)\t\nbuild\t-ldflags=\"-s -w -X k8s.io/component-base/version.gitVersion=v1.23.17 -X x.y=z\"\n");
        assert_eq!(from_go_buildinfo(&devel), Version::parse("1.23.17"));
        // A distribution's build carries neither (Debian's containerd); an old layout, nothing.
        let debian = buildinfo(
            "path\tgithub.com/containerd/containerd/cmd/containerd\nbuild\t-trimpath=true\n",
        );
        assert_eq!(from_go_buildinfo(&debian), None);
        assert_eq!(from_go_buildinfo(&[8, 0, 0]), None);
        assert_eq!(from_go_buildinfo(&release[..20]), None);
    }
}
