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
}
