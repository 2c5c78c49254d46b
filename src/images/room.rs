//! Room for the carry, checked before it starts: a carry that fills the disk under the runtime's
//! store puts the kubelet into disk pressure on a node that is still serving. The kubelet's
//! default hard eviction threshold is `imagefs.available<15%`, so the carry must leave at least
//! 15 % of the file system free, after it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The share of a file system the carry leaves free (the kubelet's default eviction threshold).
pub const RESERVE_PERCENT: u64 = 15;

/// Whether `need` bytes fit in a file system of `total` bytes with `available` free, leaving
/// the reserve; the bytes missing when not.
pub fn shortfall(need: u64, available: u64, total: u64) -> Option<u64> {
    let reserve = total / 100 * RESERVE_PERCENT;
    let usable = available.saturating_sub(reserve);
    (need > usable).then(|| need - usable)
}

/// The nearest existing directory at or above `path` (the store may not exist yet).
pub fn existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

/// The space of the file system that holds `dir` (or will: the nearest existing directory
/// above it is asked).
pub struct Space {
    pub available: u64,
    pub total: u64,
    /// The directory asked.
    pub at: PathBuf,
}

pub fn space(dir: &Path) -> Result<Space, String> {
    let at = existing(dir);
    let st = nix::sys::statvfs::statvfs(&at)
        .map_err(|e| format!("cannot tell the free space under {} ({e})", at.display()))?;
    // fsblkcnt_t and c_ulong are not u64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    Ok(Space {
        available: st.blocks_available() as u64 * st.fragment_size() as u64,
        total: st.blocks() as u64 * st.fragment_size() as u64,
        at,
    })
}

/// Check every (directory, bytes) need; needs on one file system add up. The reason when the
/// carry does not fit, naming where and how much to free.
pub fn check(needs: &[(PathBuf, u64)]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // By file system (device), with the directories named for the message.
    let mut by_fs: BTreeMap<u64, (Vec<PathBuf>, u64, PathBuf)> = BTreeMap::new();
    for (dir, bytes) in needs {
        let at = existing(dir);
        let dev = std::fs::metadata(&at).map(|m| m.dev()).unwrap_or(0);
        let e = by_fs.entry(dev).or_insert_with(|| (vec![], 0, at.clone()));
        e.0.push(dir.clone());
        e.1 += bytes;
    }
    let mut problems = Vec::new();
    for (_, (dirs, need, probe)) in by_fs {
        let Space {
            available, total, ..
        } = match space(&probe) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if let Some(missing) = shortfall(need, available, total) {
            let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            problems.push(format!(
                "not enough room for the images under {}: they need about {} MB, {} MB are free, and the kubelet starts evicting below {RESERVE_PERCENT} % free ({} MB); free {} MB there (for example `docker image prune -a` for images no container uses, or `--images in-use` instead of all)",
                names.join(" and "),
                need / 1_000_000,
                available / 1_000_000,
                total / 100 * RESERVE_PERCENT / 1_000_000,
                missing.div_ceil(1_000_000),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carry_leaves_the_kubelets_reserve() {
        const G: u64 = 1_000_000_000;
        // 100 GB disk, 40 GB free: 25 GB usable beyond the 15 % reserve.
        assert_eq!(shortfall(25 * G, 40 * G, 100 * G), None);
        assert_eq!(shortfall(26 * G, 40 * G, 100 * G), Some(G));
        // Already below the reserve: nothing fits.
        assert_eq!(shortfall(1, 10 * G, 100 * G), Some(1));
        assert_eq!(shortfall(0, 10 * G, 100 * G), None);
    }

    #[test]
    fn needs_on_one_file_system_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let st = nix::sys::statvfs::statvfs(dir.path()).unwrap();
        #[allow(clippy::unnecessary_cast)]
        let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
        assert!(check(&[(dir.path().join("store/not/yet"), 1)]).is_ok());
        // Each alone would fit in the free space, together they do not.
        let half = avail / 2 + 1;
        let err = check(&[(dir.path().join("a"), half), (dir.path().join("b"), half)]).unwrap_err();
        assert!(
            err.contains("not enough room for the images under"),
            "{err}"
        );
        assert!(err.contains("/a and ") && err.contains("/b"), "{err}");
    }
}
