//! The linked carry-over: Docker's overlay2 layers become containerd overlayfs snapshots by hard
//! links, not by copies. Docker's layer directory is already in overlayfs' own format (whiteouts
//! as 0/0 character devices, opaque directories as `trusted.overlay.opaque`), which is the format
//! of an overlayfs snapshot's upper directory; so, layer by layer from the bottom, a snapshot is
//! prepared on its parent in `k8s.io`, every directory of Docker's layer is made again in its
//! upper directory (owner, mode, extended attributes, times) and everything else — files,
//! symlinks, whiteouts, fifos, devices — is hard-linked, so a file's owner, mode, times,
//! extended attributes (capabilities) and the layer's own hard links are those of the very same
//! inode; then it is committed under its chain ID. The image gets Docker's config as it is, a
//! manifest, and its names. No layer blob is written: like containerd's
//! `discard_unpacked_layers`, CRI runs containers from the snapshots.
//!
//! Nothing of Docker's is written: an inode only gains a link (and so a new ctime). Both
//! runtimes mount these files only as lower layers, which overlayfs never writes (a change goes
//! to the container's own upper directory, copied up); removing an image on either side only
//! unlinks its names for the files.

use super::docker::{Image, Info};
use super::import::{record, Blob, LAYER_TYPE, NAMESPACE};
use crate::containerd::{chain_ids, config_diff_ids, Containerd, SnapshotScope};
use anyhow::{anyhow, bail, Context, Result};
use containerd_client::types::Mount;
use std::collections::HashMap;
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Docker's overlay2 store on disk, where linking applies.
#[derive(Debug, Clone)]
pub struct Store {
    /// Docker's data root (`DockerRootDir`).
    root: PathBuf,
    /// Its graph driver: the layer store is `image/<driver>/`.
    driver: String,
}

/// Why the images cannot be linked here (they are copied instead), or the store to link from.
/// `snapshotter` is the one CRI unpacks into. (A containerd setting that would chown snapshots
/// is the caller's to read: `chowns_snapshots`.)
pub fn probe(info: &Info, snapshotter: &str) -> Result<Store, String> {
    if info.driver != "overlay2" {
        return Err(format!(
            "Docker keeps its images with the {} storage driver, not overlay2",
            if info.driver.is_empty() {
                "(unknown)"
            } else {
                &info.driver
            }
        ));
    }
    if snapshotter != "overlayfs" {
        return Err(format!(
            "containerd's CRI snapshotter is {snapshotter}, not overlayfs"
        ));
    }
    if info.userns_remap() {
        return Err("Docker runs with userns-remap: its layers' files belong to remapped ids, not to the image's".into());
    }
    Store::open(info)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl Store {
    /// Docker's layer store, where it can be read from here (its layers' sizes, whatever the
    /// driver).
    pub fn open(info: &Info) -> Result<Store, String> {
        let store = Store {
            root: PathBuf::from(&info.root_dir),
            driver: info.driver.clone(),
        };
        let layerdb = store.layerdb_dir();
        if info.root_dir.is_empty() || info.driver.is_empty() || !layerdb.is_dir() {
            return Err(format!(
                "Docker's layer store {} cannot be read here",
                layerdb.display()
            ));
        }
        Ok(store)
    }

    fn layerdb_dir(&self) -> PathBuf {
        self.root
            .join("image")
            .join(&self.driver)
            .join("layerdb/sha256")
    }

    /// The directory of Docker's layer with this chain ID: `overlay2/<cache-id>/diff`.
    pub fn diff_dir(&self, chain: &str) -> Result<PathBuf> {
        let meta = self.layerdb_dir().join(hex(chain));
        let cache_id = std::fs::read_to_string(meta.join("cache-id")).with_context(|| {
            format!(
                "Docker's layer {chain} has no cache-id under {}",
                meta.display()
            )
        })?;
        let cache_id = cache_id.trim();
        if cache_id.is_empty() || cache_id.contains('/') || cache_id.starts_with('.') {
            bail!(
                "Docker's layer {chain} has a cache-id that is not a directory name: {cache_id:?}"
            );
        }
        let dir = self.root.join("overlay2").join(cache_id).join("diff");
        if !dir.is_dir() {
            bail!("Docker's layer {chain} has no directory {}", dir.display());
        }
        Ok(dir)
    }

    /// The size of the layer as an uncompressed tar, as Docker would export it: from its
    /// tar-split record (headers and padding as raw segments, files by size); else the size of
    /// its files.
    pub fn tar_size(&self, chain: &str) -> Result<i64> {
        let meta = self.layerdb_dir().join(hex(chain));
        match tar_split_size(&meta.join("tar-split.json.gz")) {
            Ok(n) => Ok(n),
            Err(_) => std::fs::read_to_string(meta.join("size"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| {
                    anyhow!(
                        "Docker's layer {chain} has no size under {}",
                        meta.display()
                    )
                }),
        }
    }

    /// An image's layers' diff IDs, bottom first, from its config.
    pub fn diff_ids(&self, id: &str) -> Result<Vec<String>> {
        Ok(config_diff_ids(&serde_json::from_slice(&self.config(id)?)?))
    }

    /// Docker's image config, as it is (its digest is the image's ID).
    pub fn config(&self, id: &str) -> Result<Vec<u8>> {
        let path = self
            .root
            .join("image")
            .join(&self.driver)
            .join("imagedb/content/sha256")
            .join(hex(id));
        let bytes = std::fs::read(&path)
            .with_context(|| format!("Docker's image config {}", path.display()))?;
        use sha2::Digest;
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&bytes));
        if digest != id {
            bail!(
                "Docker's image config {} does not hash to the image's ID",
                path.display()
            );
        }
        Ok(bytes)
    }
}

/// Bytes of the tar a tar-split record stands for.
fn tar_split_size(path: &Path) -> Result<i64> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "type")]
        kind: u8,
        #[serde(default)]
        size: i64,
        #[serde(default)]
        payload: Option<String>,
    }
    use base64::Engine;
    let file = std::fs::File::open(path)?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut total = 0i64;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_str(&line)?;
        match e.kind {
            // A raw segment: tar headers and padding.
            1 => {
                total += base64::engine::general_purpose::STANDARD
                    .decode(e.payload.unwrap_or_default())?
                    .len() as i64
            }
            // A file's content.
            2 => total += e.size,
            k => bail!("unknown tar-split entry type {k}"),
        }
    }
    Ok(total)
}

/// The upper directory of an active overlayfs snapshot, from its mounts: the bind mount's source
/// (no parent) or overlay's `upperdir=`.
pub fn upper_dir(mounts: &[Mount]) -> Result<PathBuf> {
    let m = mounts
        .first()
        .ok_or_else(|| anyhow!("containerd gave no mount for the new snapshot"))?;
    match m.r#type.as_str() {
        "bind" => Ok(PathBuf::from(&m.source)),
        "overlay" => m
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("containerd's overlay mount has no upperdir")),
        other => bail!("containerd mounts the new snapshot as {other}, not as overlayfs"),
    }
}

/// What a linked layer holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    /// Hard links made (files, symlinks, whiteouts, fifos, devices).
    pub links: u64,
    /// Directories made again.
    pub dirs: u64,
}

impl std::ops::AddAssign for Linked {
    fn add_assign(&mut self, o: Linked) {
        self.links += o.links;
        self.dirs += o.dirs;
    }
}

/// Make `dst` (an empty directory) hold `src`'s tree: directories made with `src`'s owner,
/// mode, extended attributes and times, everything else hard-linked. `src` is only read.
pub fn link_tree(src: &Path, dst: &Path) -> Result<Linked> {
    let (s, d) = (std::fs::metadata(src)?, std::fs::metadata(dst)?);
    if s.dev() != d.dev() {
        bail!(
            "{} and {} are on different file systems: a hard link cannot cross them",
            src.display(),
            dst.display()
        );
    }
    if std::fs::read_dir(dst)?.next().is_some() {
        bail!("{} is not empty", dst.display());
    }
    join_mounts(src, dst)?;
    let (s, d) = (
        open_dir(None, src).map_err(|e| anyhow!("opening {}: {e}", src.display()))?,
        open_dir(None, dst).map_err(|e| anyhow!("opening {}: {e}", dst.display()))?,
    );
    let mut counts = Linked::default();
    walk_at(&s, &d, dst, &mut counts)?;
    copy_attributes(&s, &d, dst)?;
    Ok(counts)
}

/// A mount of /proc/thread-self/mountinfo: its ID, device and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub device: String,
    /// The directory of its file system it shows (a bind mount's source).
    pub root: PathBuf,
    pub point: PathBuf,
}

/// The lines of a mountinfo file (mount points have `\040`-style escapes).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let unescape = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            {
                out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some(MountEntry {
                id: f.first()?.parse().ok()?,
                device: f.get(2)?.to_string(),
                root: PathBuf::from(unescape(f.get(3)?)),
                point: PathBuf::from(unescape(f.get(4)?)),
            })
        })
        .collect()
}

/// The mount a path lives in: the last-mounted of those whose mount point is the path or above.
pub fn mount_of<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .rev()
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
}

/// The bind mounts to take away so that `src` and `dst`, on one file system, are reached through
/// one mount (a hard link cannot cross mounts, even of the same file system): Docker's overlay2
/// driver bind-mounts its directory onto itself (`MakePrivate`). Only such a mount goes: one of
/// the same file system that shows the very directory it covers, so that the same files are
/// reached without it. None when they are on different devices or would stay apart.
pub fn mounts_between(mounts: &[MountEntry], src: &Path, dst: &Path) -> Option<Vec<PathBuf>> {
    let mut mounts = mounts.to_vec();
    let mut away = Vec::new();
    loop {
        let (s, d) = (
            mount_of(&mounts, src)?.clone(),
            mount_of(&mounts, dst)?.clone(),
        );
        if s.id == d.id {
            return Some(away);
        }
        // Only a mount that holds `src` but not `dst` may go.
        if s.device != d.device || dst.starts_with(&s.point) {
            return None;
        }
        let rest: Vec<MountEntry> = mounts.iter().filter(|m| m.id != s.id).cloned().collect();
        let beneath = mount_of(&rest, &s.point)?;
        let shown_beneath = beneath
            .root
            .join(s.point.strip_prefix(&beneath.point).ok()?);
        if beneath.device != s.device || shown_beneath != s.root {
            // A bind of another directory: what lies beneath it is not the same files.
            return None;
        }
        away.push(s.point.clone());
        mounts = rest;
    }
}

/// In this thread only (its own mount namespace, private so that nothing goes back to the
/// host), take away the mounts that keep `src` and `dst` apart. Nothing outside this thread
/// sees it; the thread must do its linking and end.
fn join_mounts(src: &Path, dst: &Path) -> Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    thread_local! {
        /// This thread has its own mount namespace already, with the mounts taken away.
        static JOINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if JOINED.get() {
        return Ok(());
    }
    // The thread's own view (it may have unshared before); a kernel before 3.17 has no
    // thread-self, and then the process's view is the thread's.
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .or_else(|_| std::fs::read_to_string("/proc/self/mountinfo"))?;
    let Some(away) = mounts_between(&parse_mountinfo(&info), src, dst) else {
        bail!(
            "{} and {} are on different file systems: a hard link cannot cross them",
            src.display(),
            dst.display()
        );
    };
    if away.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| anyhow!("a private mount namespace for linking: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| anyhow!("making the linking thread's mounts private: {e}"))?;
    for point in away {
        umount2(&point, MntFlags::MNT_DETACH)
            .map_err(|e| anyhow!("unmounting {} in the linking thread: {e}", point.display()))?;
    }
    JOINED.set(true);
    Ok(())
}

/// A directory opened to work under it (the `*at` calls: no path resolved again per file).
fn open_dir(at: Option<&std::fs::File>, name: &Path) -> nix::Result<std::fs::File> {
    use nix::fcntl::OFlag;
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = nix::fcntl::openat(
        at.map(|f| f.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// `src`'s entries into `dst` (both open directories; `dst_path` names it in errors).
fn walk_at(
    src: &std::fs::File,
    dst: &std::fs::File,
    dst_path: &Path,
    counts: &mut Linked,
) -> Result<()> {
    use nix::dir::Type;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let entries: Vec<(std::ffi::OsString, Option<Type>)> = {
        let fd = nix::unistd::dup(src.as_raw_fd())?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        dir.iter()
            .filter_map(|e| e.ok())
            .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
            .map(|e| {
                (
                    std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_os_string(),
                    e.file_type(),
                )
            })
            .collect()
    };
    for (name, kind) in entries {
        let name = Path::new(&name);
        let is_dir = match kind {
            Some(t) => t == Type::Directory,
            // A file system without d_type: ask.
            None => nix::sys::stat::fstatat(
                Some(src.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map(|st| st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR)
            .unwrap_or(false),
        };
        if is_dir {
            let to = dst_path.join(name);
            nix::sys::stat::mkdirat(
                Some(dst.as_raw_fd()),
                name,
                nix::sys::stat::Mode::from_bits_truncate(0o700),
            )
            .map_err(|e| anyhow!("making {}: {e}", to.display()))?;
            let from_dir = open_dir(Some(src), name)
                .map_err(|e| anyhow!("opening Docker's {}: {e}", name.display()))?;
            let to_dir =
                open_dir(Some(dst), name).map_err(|e| anyhow!("opening {}: {e}", to.display()))?;
            walk_at(&from_dir, &to_dir, &to, counts)?;
            // After its entries: they change its times.
            copy_attributes(&from_dir, &to_dir, &to)?;
            counts.dirs += 1;
        } else {
            // linkat without AT_SYMLINK_FOLLOW: a symlink is linked itself, not its target.
            nix::unistd::linkat(
                Some(src.as_raw_fd()),
                name,
                Some(dst.as_raw_fd()),
                name,
                nix::fcntl::AtFlags::empty(),
            )
            .map_err(|e| anyhow!("cannot hard-link {}: {e}", dst_path.join(name).display()))?;
            counts.links += 1;
        }
    }
    Ok(())
}

/// A directory's owner, mode (setuid/setgid/sticky too), extended attributes and times, from
/// `from` to `to` (open directories; `path` names `to` in errors).
fn copy_attributes(from: &std::fs::File, to: &std::fs::File, path: &Path) -> Result<()> {
    use nix::sys::time::TimeSpec;
    use nix::unistd::{Gid, Uid};
    use std::os::fd::AsRawFd;
    use xattr::FileExt;
    let m = from.metadata()?;
    let err = |what: &str, e: &dyn std::fmt::Display| anyhow!("{what} {}: {e}", path.display());
    nix::unistd::fchown(
        to.as_raw_fd(),
        Some(Uid::from_raw(m.uid())),
        Some(Gid::from_raw(m.gid())),
    )
    .map_err(|e| err("chown", &e))?;
    to.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
        m.mode() & 0o7777,
    ))
    .map_err(|e| err("chmod", &e))?;
    for name in from
        .list_xattr()
        .map_err(|e| err("list the extended attributes of", &e))?
    {
        if let Some(value) = from
            .get_xattr(&name)
            .map_err(|e| err("read an extended attribute of", &e))?
        {
            to.set_xattr(&name, &value)
                .map_err(|e| err(&format!("set {} on", name.to_string_lossy()), &e))?;
        }
    }
    nix::sys::stat::futimens(
        to.as_raw_fd(),
        &TimeSpec::new(m.atime(), m.atime_nsec()),
        &TimeSpec::new(m.mtime(), m.mtime_nsec()),
    )
    .map_err(|e| err("set the times of", &e))?;
    Ok(())
}

/// Link one image into containerd's `k8s.io`: its layers' snapshots (those containerd has
/// already are kept), Docker's config, a manifest, its names; all under one lease.
pub fn carry_image(
    client: &Containerd,
    store: &Store,
    snapshotter: &str,
    image: &Image,
    names: &[String],
) -> Result<Linked> {
    if names.is_empty() {
        bail!("it has no name to give it in containerd");
    }
    // Everything read from Docker first: a missing layer is found before anything is made.
    let config = store.config(&image.id)?;
    let diff_ids = config_diff_ids(
        &serde_json::from_slice(&config)
            .with_context(|| format!("Docker's image config {} is not JSON", image.id))?,
    );
    let chains = chain_ids(&diff_ids);
    let mut sources = Vec::with_capacity(chains.len());
    for chain in &chains {
        sources.push((store.diff_dir(chain)?, store.tar_size(chain)?));
    }
    client.leased(NAMESPACE, |lease| {
        let at = SnapshotScope {
            namespace: NAMESPACE,
            lease,
            snapshotter,
        };
        let mut counts = Linked::default();
        let mut layers: Vec<Blob> = Vec::with_capacity(chains.len());
        for (i, (dir, size)) in sources.iter().enumerate() {
            client.new_snapshot(&at, &chains, i, &mut |mounts| {
                counts += link_tree(dir, &upper_dir(&mounts)?)?;
                Ok(())
            })?;
            layers.push((diff_ids[i].clone(), *size, LAYER_TYPE));
        }
        if !client.has_blob(NAMESPACE, &image.id)? {
            let digest = client.ingest(
                NAMESPACE,
                lease,
                &mut config.as_slice(),
                config.len() as u64,
                HashMap::new(),
            )?;
            if digest != image.id {
                bail!(
                    "Docker's config went into containerd as {digest}, not {}",
                    image.id
                );
            }
        }
        record(
            client,
            &at,
            (&image.id, config.len() as i64),
            &layers,
            false,
            chains.last(),
            names,
        )?;
        Ok(counts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn info(driver: &str, security: &[&str]) -> Info {
        serde_json::from_value(serde_json::json!({
            "Driver": driver,
            "DockerRootDir": "/nonexistent/docker",
            "SecurityOptions": security,
        }))
        .unwrap()
    }

    #[test]
    fn linking_applies_only_where_nothing_can_differ_or_change() {
        let why = |i: &Info, s: &str| probe(i, s).unwrap_err();
        assert!(why(&info("devicemapper", &[]), "overlayfs").contains("devicemapper"));
        assert!(why(&info("overlay2", &[]), "native").contains("native, not overlayfs"));
        assert!(why(
            &info("overlay2", &["name=seccomp,profile=builtin", "name=userns"]),
            "overlayfs"
        )
        .contains("userns-remap"));
        // All fine but Docker's store is not readable from here.
        assert!(why(&info("overlay2", &["name=seccomp"]), "overlayfs")
            .contains("/nonexistent/docker/image/overlay2/layerdb/sha256"));
    }

    #[test]
    fn the_upper_directory_comes_from_the_mounts() {
        let bind = Mount {
            r#type: "bind".into(),
            source: "/var/lib/containerd/snapshots/1/fs".into(),
            options: vec!["rbind".into(), "rw".into()],
            ..Default::default()
        };
        assert_eq!(
            upper_dir(&[bind]).unwrap(),
            Path::new("/var/lib/containerd/snapshots/1/fs")
        );
        let overlay = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "workdir=/s/2/work".into(),
                "upperdir=/s/2/fs".into(),
                "lowerdir=/s/1/fs".into(),
            ],
            ..Default::default()
        };
        assert_eq!(upper_dir(&[overlay]).unwrap(), Path::new("/s/2/fs"));
        assert!(upper_dir(&[]).is_err());
    }

    #[test]
    fn a_tree_is_linked_with_its_directories_made_again() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::fs::write(src.join("d/f"), b"data").unwrap();
        std::fs::hard_link(src.join("d/f"), src.join("g")).unwrap();
        std::os::unix::fs::symlink("d/f", src.join("s")).unwrap();
        nix::unistd::mkfifo(
            &src.join("p"),
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )
        .unwrap();
        std::fs::set_permissions(src.join("d"), std::fs::Permissions::from_mode(0o1750)).unwrap();
        let before = std::fs::symlink_metadata(src.join("d/f")).unwrap();
        let counts = link_tree(&src, &dst).unwrap();
        assert_eq!(counts, Linked { links: 4, dirs: 2 });
        let same = |p: &str| {
            let (a, b) = (
                std::fs::symlink_metadata(src.join(p)).unwrap(),
                std::fs::symlink_metadata(dst.join(p)).unwrap(),
            );
            (
                a.ino() == b.ino(),
                a.mode() == b.mode(),
                a.mtime() == b.mtime(),
            )
        };
        // Files, hard links, symlinks, fifos: the same inodes.
        for p in ["d/f", "g", "s", "p"] {
            assert_eq!(same(p), (true, true, true), "{p}");
        }
        // Directories: new ones, with the same mode (sticky bit too) and times.
        assert_eq!(same("d"), (false, true, true));
        assert_eq!(same("d/e"), (false, true, true));
        // The layer's own hard link stays one: both names, one inode.
        assert_eq!(
            std::fs::metadata(dst.join("g")).unwrap().ino(),
            std::fs::metadata(dst.join("d/f")).unwrap().ino()
        );
        // Docker's file is not changed but for its link count (two names, two new links).
        let after = std::fs::symlink_metadata(src.join("d/f")).unwrap();
        assert_eq!(
            (after.mode(), after.mtime(), after.size(), after.nlink()),
            (
                before.mode(),
                before.mtime(),
                before.size(),
                before.nlink() + 2
            )
        );
        // Linking again into a non-empty directory is refused.
        assert!(link_tree(&src, &dst)
            .unwrap_err()
            .to_string()
            .contains("not empty"));
    }

    #[test]
    fn dockers_own_bind_mount_is_what_keeps_the_two_apart() {
        // Docker's overlay2 driver bind-mounts its directory onto itself.
        let info = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                    90 27 254:0 /var/lib/docker/overlay2 /var/lib/docker/overlay2 rw,relatime - ext4 /dev/vda rw\n\
                    91 27 254:1 / /srv rw - ext4 /dev/vdb rw\n\
                    92 27 254:0 /x /with\\040space rw - ext4 /dev/vda rw\n\
                    93 27 254:0 /data/docker /var/lib/moved rw - ext4 /dev/vda rw\n";
        let mounts = parse_mountinfo(info);
        assert_eq!(mounts[3].point, Path::new("/with space"));
        let docker = Path::new("/var/lib/docker/overlay2/abc/diff");
        let containerd =
            Path::new("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs");
        assert_eq!(
            mounts_between(&mounts, docker, containerd),
            Some(vec![PathBuf::from("/var/lib/docker/overlay2")])
        );
        // One mount already: nothing to take away.
        assert_eq!(
            mounts_between(&mounts, Path::new("/var/lib/docker/image"), containerd),
            Some(vec![])
        );
        // Another file system: no link can cross it.
        assert_eq!(
            mounts_between(&mounts, Path::new("/srv/docker"), containerd),
            None
        );
        // A bind of another directory (Docker's data moved to /data and bind-mounted back):
        // beneath it lie other files, so it stays, and no link is made.
        assert_eq!(
            mounts_between(
                &mounts,
                Path::new("/var/lib/moved/overlay2/abc/diff"),
                containerd
            ),
            None
        );
        assert_eq!(mounts[4].root, Path::new("/data/docker"));
        // Both under Docker's mount: one mount already.
        assert_eq!(
            mounts_between(
                &mounts,
                docker,
                Path::new("/var/lib/docker/overlay2/ctd/fs")
            ),
            Some(vec![])
        );
    }

    #[test]
    fn a_tar_split_record_gives_the_exact_tar_size() {
        use base64::Engine;
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tar-split.json.gz");
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![0u8; n]);
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        writeln!(gz, r#"{{"type":1,"payload":"{}","position":0}}"#, b64(512)).unwrap();
        writeln!(
            gz,
            r#"{{"type":2,"name":"f","size":5,"payload":"x","position":1}}"#
        )
        .unwrap();
        writeln!(
            gz,
            r#"{{"type":1,"payload":"{}","position":2}}"#,
            b64(507 + 1024)
        )
        .unwrap();
        gz.finish().unwrap();
        assert_eq!(tar_split_size(&path).unwrap(), 512 + 5 + 507 + 1024);
    }
}
