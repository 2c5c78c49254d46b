//! A read-only reader of bbolt files, enough to walk containerd's `meta.db` on a node that is not
//! running (an offline `--root`): the two meta pages (the valid one of the later transaction),
//! branch and leaf pages, nested and inline buckets. The layout is bbolt's (page.go, db.go,
//! bucket.go), little-endian as on the hosts containerd runs on. No locking: the file is read
//! as it is on disk, so a containerd writing it at the same moment could show a torn state —
//! callers read it only where containerd does not answer.

use std::collections::{BTreeMap, HashSet};

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const BUCKET_LEAF: u32 = 0x01;
/// The meta fields the checksum covers: magic .. txid.
const META_SUMMED: usize = 56;

pub struct Db {
    data: Vec<u8>,
    page_size: usize,
    root: u64,
}

/// A bucket: its root page, or its inline page (a small bucket kept in its parent's value).
#[derive(Clone, Debug)]
pub enum Bucket {
    Page(u64),
    Inline(Vec<u8>),
}

/// One entry of a bucket: a value, or a nested bucket.
#[derive(Clone, Debug)]
pub enum Entry {
    Value(Vec<u8>),
    Bucket(Bucket),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// (page size, root page, txid) of a meta page starting at `at`, when it is valid.
fn meta(data: &[u8], at: usize) -> Option<(usize, u64, u64)> {
    let m = at + PAGE_HEADER;
    let summed = data.get(m..m + META_SUMMED)?;
    if u32_at(data, m)? != MAGIC
        || u32_at(data, m + 4)? != VERSION
        || u64_at(data, m + META_SUMMED)? != fnv1a64(summed)
    {
        return None;
    }
    let page_size = u32_at(data, m + 8)? as usize;
    (page_size >= 512).then_some(())?;
    Some((page_size, u64_at(data, m + 16)?, u64_at(data, m + 48)?))
}

impl Db {
    pub fn parse(data: Vec<u8>) -> Result<Db, String> {
        let first = meta(&data, 0);
        let second = first
            .and_then(|(size, _, _)| meta(&data, size))
            .or_else(|| {
                // The first meta torn: find the second at the usual page sizes.
                [4096, 8192, 16384, 65536]
                    .iter()
                    .find_map(|s| meta(&data, *s).filter(|m| m.0 == *s))
            });
        let (page_size, root, _) = match (first, second) {
            (Some(a), Some(b)) => {
                if b.2 > a.2 {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err("not a bbolt file (no valid meta page)".into()),
        };
        Ok(Db {
            data,
            page_size,
            root,
        })
    }

    pub fn root(&self) -> Bucket {
        Bucket::Page(self.root)
    }

    fn page(&self, id: u64) -> Option<&[u8]> {
        let start = usize::try_from(id).ok()?.checked_mul(self.page_size)?;
        let overflow = u32_at(&self.data, start + 12)? as usize;
        let end = start.checked_add((overflow + 1).checked_mul(self.page_size)?)?;
        self.data.get(start..end.min(self.data.len()))
    }

    /// Every entry of a bucket, by key.
    pub fn entries(&self, bucket: &Bucket) -> Result<BTreeMap<Vec<u8>, Entry>, String> {
        let mut out = BTreeMap::new();
        match bucket {
            Bucket::Inline(page) => self.leaf(page, &mut out)?,
            Bucket::Page(id) => self.walk(*id, &mut out, &mut HashSet::new(), 0)?,
        }
        Ok(out)
    }

    /// A nested bucket by path, or None.
    pub fn bucket(&self, path: &[&[u8]]) -> Result<Option<Bucket>, String> {
        let mut b = self.root();
        for name in path {
            match self.entries(&b)?.remove(*name) {
                Some(Entry::Bucket(next)) => b = next,
                _ => return Ok(None),
            }
        }
        Ok(Some(b))
    }

    /// The leaves under a page. A page reached twice (a torn file's cycle) or a tree deeper
    /// than any bbolt file is an error: a bad file must not keep the reader walking.
    fn walk(
        &self,
        id: u64,
        out: &mut BTreeMap<Vec<u8>, Entry>,
        seen: &mut HashSet<u64>,
        depth: u32,
    ) -> Result<(), String> {
        let torn = || format!("page {id} is out of the file or torn");
        if depth > 64 {
            return Err(format!("page {id}: the tree is deeper than any bbolt file"));
        }
        if !seen.insert(id) {
            return Err(format!("page {id} is reached twice: the file is torn"));
        }
        let page = self.page(id).ok_or_else(torn)?;
        match u16_at(page, 8).ok_or_else(torn)? {
            BRANCH => {
                let count = u16_at(page, 10).ok_or_else(torn)? as usize;
                for i in 0..count {
                    let child = u64_at(page, PAGE_HEADER + i * 16 + 8).ok_or_else(torn)?;
                    self.walk(child, out, seen, depth + 1)?;
                }
                Ok(())
            }
            LEAF => self.leaf(page, out),
            flags => Err(format!(
                "page {id} is neither a branch nor a leaf (flags {flags:#x})"
            )),
        }
    }

    /// The entries of a leaf page (a page of the file, or an inline bucket's).
    fn leaf(&self, page: &[u8], out: &mut BTreeMap<Vec<u8>, Entry>) -> Result<(), String> {
        let torn = || "a leaf page is torn".to_string();
        let count = u16_at(page, 10).ok_or_else(torn)? as usize;
        for i in 0..count {
            let elem = PAGE_HEADER + i * 16;
            let flags = u32_at(page, elem).ok_or_else(torn)?;
            let pos = u32_at(page, elem + 4).ok_or_else(torn)? as usize;
            let ksize = u32_at(page, elem + 8).ok_or_else(torn)? as usize;
            let vsize = u32_at(page, elem + 12).ok_or_else(torn)? as usize;
            let k = elem + pos;
            let key = page.get(k..k + ksize).ok_or_else(torn)?;
            let value = page.get(k + ksize..k + ksize + vsize).ok_or_else(torn)?;
            let entry = if flags & BUCKET_LEAF != 0 {
                let root = u64_at(value, 0).ok_or_else(torn)?;
                Entry::Bucket(if root == 0 {
                    Bucket::Inline(value.get(16..).ok_or_else(torn)?.to_vec())
                } else {
                    Bucket::Page(root)
                })
            } else {
                Entry::Value(value.to_vec())
            };
            out.insert(key.to_vec(), entry);
        }
        Ok(())
    }
}

/// containerd's leases in `namespace` whose ID starts with `prefix`, each with the content it
/// holds (`v1/<namespace>/leases/<id>/content/<digest>`, containerd's metadata/leases.go).
pub fn containerd_leases(
    db: &Db,
    namespace: &str,
    prefix: &str,
) -> Result<Option<BTreeMap<String, Vec<String>>>, String> {
    let Some(leases) = db.bucket(&[b"v1", namespace.as_bytes(), b"leases"])? else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for (id, entry) in db.entries(&leases)? {
        let (Ok(id), Entry::Bucket(lease)) = (String::from_utf8(id), entry) else {
            continue;
        };
        if !id.starts_with(prefix) {
            continue;
        }
        let content = match db.entries(&lease)?.remove(b"content".as_slice()) {
            Some(Entry::Bucket(c)) => db
                .entries(&c)?
                .into_keys()
                .filter_map(|k| String::from_utf8(k).ok())
                .collect(),
            _ => vec![],
        };
        out.insert(id, content);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bbolt file written by hand, page by page: metas (0, 1), the root leaf (2) holding
    /// `v1` as a page bucket (3), which holds `moby` inline, which holds `leases` inline...
    /// Built from the layout, so that the reader is checked against it and not against itself;
    /// tests/manifests_real.rs reads a real containerd's file.
    struct Writer {
        page: usize,
        pages: Vec<Vec<u8>>,
    }

    fn leaf(entries: &[(&[u8], u32, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_HEADER];
        p[8..10].copy_from_slice(&LEAF.to_le_bytes());
        p[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        let elems = PAGE_HEADER + entries.len() * 16;
        let mut data = Vec::new();
        let mut heads = Vec::new();
        for (i, (k, flags, v)) in entries.iter().enumerate() {
            let elem = PAGE_HEADER + i * 16;
            let pos = elems + data.len() - elem;
            heads.extend_from_slice(&flags.to_le_bytes());
            heads.extend_from_slice(&(pos as u32).to_le_bytes());
            heads.extend_from_slice(&(k.len() as u32).to_le_bytes());
            heads.extend_from_slice(&(v.len() as u32).to_le_bytes());
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        p.extend(heads);
        p.extend(data);
        p
    }

    fn inline(page: Vec<u8>) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v.extend(page);
        v
    }

    fn page_bucket(id: u64) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend([0u8; 8]);
        v
    }

    impl Writer {
        fn meta(&self, id: u64, root: u64, txid: u64) -> Vec<u8> {
            let mut p = vec![0u8; PAGE_HEADER];
            p[0..8].copy_from_slice(&id.to_le_bytes());
            p[8..10].copy_from_slice(&0x04u16.to_le_bytes());
            let mut m = Vec::new();
            m.extend(MAGIC.to_le_bytes());
            m.extend(VERSION.to_le_bytes());
            m.extend((self.page as u32).to_le_bytes());
            m.extend(0u32.to_le_bytes());
            m.extend(root.to_le_bytes());
            m.extend(0u64.to_le_bytes()); // sequence
            m.extend(2u64.to_le_bytes()); // freelist
            m.extend((self.pages.len() as u64).to_le_bytes());
            m.extend(txid.to_le_bytes());
            let sum = fnv1a64(&m);
            m.extend(sum.to_le_bytes());
            p.extend(m);
            p
        }
        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            for p in &self.pages {
                let mut p = p.clone();
                assert!(p.len() <= self.page);
                p.resize(self.page, 0);
                out.extend(p);
            }
            out
        }
    }

    fn file(txids: (u64, u64), break_first: bool) -> Vec<u8> {
        let content = leaf(&[(b"sha256:aa", 0, vec![]), (b"sha256:bb", 0, vec![])]);
        let lease_a = leaf(&[
            (b"content", BUCKET_LEAF, inline(content)),
            (b"createdat", 0, b"x".to_vec()),
        ]);
        let lease_b = leaf(&[(b"createdat", 0, b"x".to_vec())]);
        let leases = leaf(&[
            (b"moby-image-sha256:1", BUCKET_LEAF, inline(lease_a)),
            (b"moby-image-sha256:2", BUCKET_LEAF, inline(lease_b)),
            (b"other", BUCKET_LEAF, inline(leaf(&[]))),
        ]);
        let moby = leaf(&[(b"leases", BUCKET_LEAF, inline(leases))]);
        // v1 on its own pages: a branch (4) over two leaves (3, 5).
        let v1_left = leaf(&[(b"k8s.io", BUCKET_LEAF, inline(leaf(&[])))]);
        let v1_right = leaf(&[(b"moby", BUCKET_LEAF, inline(moby))]);
        let mut branch = vec![0u8; PAGE_HEADER];
        branch[8..10].copy_from_slice(&BRANCH.to_le_bytes());
        branch[10..12].copy_from_slice(&2u16.to_le_bytes());
        for (i, (key, id)) in [(b"k8s.io".as_slice(), 3u64), (b"moby".as_slice(), 5)]
            .iter()
            .enumerate()
        {
            let elem = PAGE_HEADER + i * 16;
            let pos = PAGE_HEADER + 2 * 16 + if i == 0 { 0 } else { 6 } - elem;
            branch.extend((pos as u32).to_le_bytes());
            branch.extend((key.len() as u32).to_le_bytes());
            branch.extend(id.to_le_bytes());
        }
        branch.extend(b"k8s.iomoby");
        let root = leaf(&[(b"v1", BUCKET_LEAF, page_bucket(4))]);
        let mut w = Writer {
            page: 4096,
            pages: vec![vec![], vec![], vec![0u8; 16], vec![], vec![], vec![], root],
        };
        w.pages[3] = v1_left;
        w.pages[4] = branch;
        w.pages[5] = v1_right;
        // An older root (a stale tree the other meta points at) in page 2: an empty leaf.
        let mut stale = leaf(&[]);
        stale[0..8].copy_from_slice(&2u64.to_le_bytes());
        w.pages[2] = stale;
        let (old, new) = txids;
        w.pages[0] = w.meta(0, if old > new { 6 } else { 2 }, old);
        w.pages[1] = w.meta(1, if new > old { 6 } else { 2 }, new);
        let mut bytes = w.bytes();
        if break_first {
            bytes[PAGE_HEADER + 20] ^= 0xff; // its root: the checksum no longer matches
        }
        bytes
    }

    fn leases(bytes: Vec<u8>) -> BTreeMap<String, Vec<String>> {
        let db = Db::parse(bytes).unwrap();
        containerd_leases(&db, "moby", "moby-image-")
            .unwrap()
            .unwrap()
    }

    #[test]
    fn leases_and_their_content_are_read_through_branches_and_inline_buckets() {
        let l = leases(file((7, 8), false));
        assert_eq!(
            l,
            BTreeMap::from([
                (
                    "moby-image-sha256:1".to_string(),
                    vec!["sha256:aa".to_string(), "sha256:bb".to_string()]
                ),
                ("moby-image-sha256:2".to_string(), vec![]),
            ])
        );
    }

    #[test]
    fn the_later_valid_meta_wins() {
        // Meta 0 is the later one and points at the real tree.
        assert_eq!(leases(file((9, 8), false)).len(), 2);
        // Meta 0 later but torn: meta 1's (stale, empty) tree is what the file holds.
        let db = Db::parse(file((9, 8), true)).unwrap();
        assert!(containerd_leases(&db, "moby", "moby-image-")
            .unwrap()
            .is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Db::parse(vec![0u8; 100]).is_err());
        assert!(Db::parse(b"not bolt".to_vec()).is_err());
        // A branch page that names itself as its child: an error, not an endless walk.
        let mut bytes = file((7, 8), false);
        let child = 4096 * 4 + PAGE_HEADER + 8; // page 4's first element's page id
        bytes[child..child + 8].copy_from_slice(&4u64.to_le_bytes());
        let db = Db::parse(bytes).unwrap();
        let err = containerd_leases(&db, "moby", "moby-image-").unwrap_err();
        assert!(err.contains("reached twice"), "{err}");
        let mut bytes = file((7, 8), false);
        bytes.truncate(4096 * 6 + 20); // the root page cut short
        let db = Db::parse(bytes).unwrap();
        assert!(containerd_leases(&db, "moby", "moby-image-").is_err());
    }
}
