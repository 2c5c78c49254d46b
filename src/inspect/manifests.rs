//! Which kind of manifest each image Docker pulled came from: schema 2, OCI, a list, or schema 1,
//! which containerd 2.0 no longer pulls by default and 2.1 cannot pull at all (containerd's
//! RELEASES.md). Docker's own store records no schema. Since 20.10 Docker keeps each manifest it
//! pulls in its containerd's content store (namespace `moby`), under one lease per image
//! (`moby-image-<id>`) that gathers the manifests each pull of the image wrote. A schema 1
//! manifest cannot be kept there (its digest is not its bytes': Docker logs "Error persisting
//! manifest"), so an image whose lease holds no content came from schema 1 pulls only. An image
//! pulled before Docker kept manifests has no lease: it is said as unknown, with how to tell.
//! The leases come from Docker's containerd's API on a live node, else from its `meta.db` on disk
//! (bolt.rs: an offline `--root`, a containerd that does not answer); the manifests from the API,
//! else its content store on disk.

use super::Finding;
use crate::node::{join, Node};
use serde::Serialize;
use std::collections::BTreeMap;

/// What kind of manifest a repo digest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Schema {
    Schema1,
    Schema2,
    Oci,
    /// A manifest list or an OCI index.
    List,
    Unknown,
}

/// One `repo@sha256:..` Docker holds, and what it names.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pulled {
    pub reference: String,
    /// Docker's image ID.
    pub image: String,
    /// The image's tags in the same repository.
    pub tags: Vec<String>,
    pub schema: Schema,
    /// How that was told, or why it could not be.
    pub evidence: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Manifests {
    /// Docker's `repositories.json`, where it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repositories: Option<String>,
    /// Where the leases were read (containerd's socket and namespace), or why they were not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<String>,
    pub pulled: Vec<Pulled>,
    /// Why `repositories.json` could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Manifests {
    pub fn of(&self, schema: Schema) -> Vec<&Pulled> {
        self.pulled.iter().filter(|p| p.schema == schema).collect()
    }
}

/// Where Docker keeps things, as its daemon.json and unit say.
pub struct DockerPlaces<'a> {
    pub data_root: Option<&'a str>,
    pub storage_driver: Option<&'a str>,
    pub exec_root: Option<&'a str>,
    /// daemon.json `containerd` (the socket).
    pub containerd: Option<&'a str>,
    /// daemon.json `containerd-namespace`.
    pub namespace: Option<&'a str>,
    /// dockerd's `ExecStart=` (it may name `--containerd`).
    pub exec_start: Option<&'a str>,
    /// The system containerd's `root` in its config.toml.
    pub containerd_root: Option<&'a str>,
}

const DRIVERS: [&str; 8] = [
    "overlay2",
    "fuse-overlayfs",
    "btrfs",
    "zfs",
    "aufs",
    "overlay",
    "devicemapper",
    "vfs",
];
const LEASE_PREFIX: &str = "moby-image-";
const CONTENT: &str = "io.containerd.content.v1.content/blobs";
const META_DB: &str = "io.containerd.metadata.v1.bolt/meta.db";
/// containerd refuses manifests over 4 MiB (its `MaxManifestSize`).
const MAX_MANIFEST: u64 = 4 << 20;
/// A meta.db past this is not read into memory: its images are then unknown.
const MAX_META_DB: u64 = 512 << 20;

/// Read what Docker pulled and tell each repo digest's schema. `talk`: containerd's API may be
/// asked for the leases (a live node); otherwise schema 1 cannot be told from an old pull.
pub fn inspect(node: &Node, places: &DockerPlaces, talk: bool) -> Manifests {
    let data_root = places.data_root.unwrap_or("/var/lib/docker");
    let Some(path) = repositories_path(node, data_root, places.storage_driver) else {
        return Manifests::default();
    };
    let mut out = Manifests {
        repositories: Some(path.clone()),
        ..Manifests::default()
    };
    let repos = match node.read(&path) {
        Ok(Some(text)) => match parse_repositories(&text) {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(format!("{path} is not Docker's repositories JSON: {e}"));
                return out;
            }
        },
        Ok(None) => return Manifests::default(),
        Err(e) => {
            out.error = Some(format!("{path}: {e:#}"));
            return out;
        }
    };
    if repos.digests.is_empty() {
        return out;
    }
    let roots: Vec<String> = [
        places
            .containerd_root
            .unwrap_or("/var/lib/containerd")
            .to_string(),
        join(data_root, "containerd/daemon"),
    ]
    .into();
    let namespace = places.namespace.unwrap_or("moby");
    let api = if talk {
        api_leases(node, places, namespace)
    } else {
        Err("offline (--root)".to_string())
    };
    // Docker's containerd where it answered, else its content store on disk (an offline node).
    let (answered, api) = match api {
        Ok((source, client, leases)) => (Some(client), Ok((source, leases))),
        Err(why) => (None, Err(why)),
    };
    // Where containerd does not answer (an offline node, a containerd that is stopped), its
    // metadata on disk holds the same leases.
    let leases = api.or_else(|why| {
        on_disk_leases(node, &roots, namespace).ok_or_else(|| {
            format!(
                "{why}, and no containerd metadata (meta.db) with namespace {namespace} under {}",
                roots.join(", ")
            )
        })
    });
    // Bytes count only when they hash to the digest (a file on disk may be half written).
    let manifest = |digest: &str| -> Option<Vec<u8>> {
        let hex = digest.strip_prefix("sha256:")?;
        let whole = |b: &Vec<u8>| {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(b)) == hex
        };
        if let Some(c) = &answered {
            if let Ok(Some(b)) = c.blob(namespace, digest) {
                if whole(&b) {
                    return Some(b);
                }
            }
        }
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        roots.iter().find_map(|root| {
            let p = join(root, &format!("{CONTENT}/sha256/{hex}"));
            let b = node.read_bytes(&p, MAX_MANIFEST).ok()??;
            whole(&b).then_some(b)
        })
    };
    out.leases = Some(match &leases {
        Ok((source, _)) => source.clone(),
        Err(why) => why.clone(),
    });
    let leases = leases.map(|(_, l)| l);
    out.pulled = classify(&repos, &manifest, &leases);
    out
}

/// `<data-root>/image/<driver>/repositories.json`: the configured driver's, else the one there
/// (Docker refuses to start with several and none configured). With userns-remap Docker keeps
/// its data in `<data-root>/<uid>.<gid>`.
fn repositories_path(node: &Node, data_root: &str, driver: Option<&str>) -> Option<String> {
    let remapped = node
        .list(data_root)
        .into_iter()
        .filter(|n| {
            n.split_once('.').is_some_and(|(u, g)| {
                !u.is_empty()
                    && !g.is_empty()
                    && (u.to_owned() + g).bytes().all(|b| b.is_ascii_digit())
            })
        })
        .map(|n| join(data_root, &n));
    std::iter::once(data_root.to_string())
        .chain(remapped)
        .find_map(|root| {
            let file = |d: &str| join(&root, &format!("image/{d}/repositories.json"));
            match driver {
                Some(d) => Some(file(d)).filter(|p| node.exists(p)),
                None => DRIVERS.iter().map(|d| file(d)).find(|p| node.exists(p)),
            }
        })
}

/// Docker's repositories.json: repo digests and tags, each with its image ID.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repositories {
    /// (`repo@sha256:..`, image ID)
    pub digests: Vec<(String, String)>,
    /// (repository, image ID) -> tags
    pub tags: BTreeMap<(String, String), Vec<String>>,
}

pub fn parse_repositories(text: &str) -> Result<Repositories, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(rename = "Repositories", default)]
        repositories: BTreeMap<String, BTreeMap<String, String>>,
    }
    let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Repositories::default();
    for (repo, refs) in file.repositories {
        for (reference, id) in refs {
            if reference.contains('@') {
                out.digests.push((reference, id));
            } else {
                out.tags
                    .entry((repo.clone(), id))
                    .or_default()
                    .push(reference);
            }
        }
    }
    Ok(out)
}

/// The leases of Docker's containerd: lease ID -> content digests.
type Leases = BTreeMap<String, Vec<String>>;

/// Docker's containerd, asked for its leases: (where, a client, the leases). Of the sockets
/// Docker may use, the first whose namespace holds Docker's leases (a containerd installed
/// since Docker started may hold none), else the first that answered.
fn api_leases(
    node: &Node,
    places: &DockerPlaces,
    namespace: &str,
) -> Result<(String, crate::containerd::Containerd, Leases), String> {
    let exec_root = places.exec_root.unwrap_or("/var/run/docker");
    let flag = places.exec_start.and_then(containerd_flag);
    // dockerd uses the system containerd when its socket is there, else starts its own under
    // exec-root.
    let candidates: Vec<String> = places
        .containerd
        .map(str::to_string)
        .or(flag)
        .map(|s| vec![s])
        .unwrap_or_else(|| {
            vec![
                "/run/containerd/containerd.sock".to_string(),
                join(exec_root, "containerd/containerd.sock"),
            ]
        });
    let mut why = Vec::new();
    let mut answered = None;
    for socket in candidates.iter().filter(|s| node.path(s).exists()) {
        let client = match crate::containerd::Containerd::connect(&node.path(socket)) {
            Ok(c) => c,
            Err(e) => {
                why.push(format!(
                    "Docker's containerd at {socket} did not answer: {e:#}"
                ));
                continue;
            }
        };
        match client.leased_content(namespace, LEASE_PREFIX) {
            Err(e) => why.push(format!("{e:#}")),
            Ok(leases) => {
                let source = format!("containerd at {socket}, namespace {namespace}");
                if !leases.is_empty() {
                    return Ok((source, client, leases));
                }
                answered.get_or_insert((source, client, leases));
            }
        }
    }
    answered.ok_or_else(|| {
        if why.is_empty() {
            format!(
                "Docker's containerd is not running (no {}): its leases tell schema 1 pulls",
                candidates.join(", no ")
            )
        } else {
            why.join("; ")
        }
    })
}

/// The leases in containerd's metadata file (`meta.db`) under the first root that has the
/// namespace: (where, leases).
fn on_disk_leases(node: &Node, roots: &[String], namespace: &str) -> Option<(String, Leases)> {
    roots.iter().find_map(|root| {
        let path = join(root, META_DB);
        let bytes = node.read_bytes(&path, MAX_META_DB).ok()??;
        let db = super::bolt::Db::parse(bytes).ok()?;
        let leases = super::bolt::containerd_leases(&db, namespace, LEASE_PREFIX).ok()??;
        Some((
            format!("{path} (containerd's metadata on disk), namespace {namespace}"),
            leases,
        ))
    })
}

/// `--containerd=PATH` or `--containerd PATH` in dockerd's command line.
fn containerd_flag(exec_start: &str) -> Option<String> {
    let mut words = exec_start.split_whitespace();
    while let Some(w) = words.next() {
        if let Some(v) = w.strip_prefix("--containerd=") {
            return Some(v.to_string());
        }
        if w == "--containerd" {
            return words.next().map(str::to_string);
        }
    }
    None
}

/// What a stored manifest is.
fn kind(bytes: &[u8]) -> Option<Schema> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v["schemaVersion"] == 1 {
        return Some(Schema::Schema1);
    }
    let media = v["mediaType"].as_str().unwrap_or_default();
    Some(
        if v.get("manifests").is_some() || media.contains("list") || media.contains("index") {
            Schema::List
        } else if media == "application/vnd.docker.distribution.manifest.v2+json" {
            Schema::Schema2
        } else if v.get("config").is_some() {
            Schema::Oci
        } else {
            return None;
        },
    )
}

/// Each repo digest's schema: from its manifest where one is kept, else from the image's lease.
pub fn classify(
    repos: &Repositories,
    manifest: &dyn Fn(&str) -> Option<Vec<u8>>,
    leases: &Result<Leases, String>,
) -> Vec<Pulled> {
    let mut out: Vec<Pulled> = repos
        .digests
        .iter()
        .map(|(reference, image)| {
            let (repo, digest) = reference.split_once('@').unwrap_or((reference, ""));
            let (schema, evidence) = match manifest(digest).map(|b| kind(&b)) {
                Some(Some(s)) => (s, "its manifest, kept in containerd's content store".to_string()),
                Some(None) => (Schema::Unknown, "the blob of its digest in containerd's content store is not a manifest".to_string()),
                None => match leases {
                    Err(why) => (Schema::Unknown, format!("no manifest kept for it, and its image's lease cannot be read: {why}")),
                    Ok(l) => match l.get(&format!("{LEASE_PREFIX}{image}")) {
                        None => (Schema::Unknown, "no manifest kept for it and no lease on its image: pulled before Docker kept manifests (20.10)".to_string()),
                        Some(content) if content.is_empty() => (Schema::Schema1, "Docker (20.10 or later) pulled its image and kept no manifest for it, as it does for schema 1 only".to_string()),
                        Some(_) => (Schema::Unknown, "no manifest kept for it while other pulls of its image kept theirs: pulled before Docker kept manifests (20.10), or schema 1".to_string()),
                    },
                },
            };
            Pulled {
                reference: reference.clone(),
                image: image.clone(),
                tags: repos
                    .tags
                    .get(&(repo.to_string(), image.clone()))
                    .cloned()
                    .unwrap_or_default(),
                schema,
                evidence,
            }
        })
        .collect();
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    out
}

/// A few references, then how many more.
fn some(pulled: &[&Pulled]) -> String {
    let mut names: Vec<String> = pulled
        .iter()
        .take(5)
        .map(|p| {
            if p.tags.is_empty() {
                p.reference.clone()
            } else {
                format!("{} ({})", p.reference, p.tags.join(", "))
            }
        })
        .collect();
    if pulled.len() > 5 {
        names.push(format!("and {} more", pulled.len() - 5));
    }
    names.join("; ")
}

/// The target's stance on schema 1, when it is containerd: 2.0 pulls it only with an environment
/// variable, 2.1 and later not at all. None for a target that pulls it (containerd 1.x, CRI-O).
pub fn refuses_schema1(containerd: Option<crate::version::Version>) -> Option<&'static str> {
    let v = containerd?;
    if v.at_least(2, 1) {
        Some("cannot be pulled by containerd 2.1 and later")
    } else if v.major >= 2 {
        Some("are not pulled by containerd 2.0 unless its service sets CONTAINERD_ENABLE_DEPRECATED_PULL_SCHEMA_1_IMAGE=1")
    } else {
        None
    }
}

pub const SCHEMA1: &str = "schema1-images";
pub const UNKNOWN: &str = "image-schema-unknown";
const UNREADABLE: &str = "docker-repositories-unreadable";
/// Every code [`findings`] gives.
pub const CODES: [&str; 3] = [SCHEMA1, UNKNOWN, UNREADABLE];

/// What to say of the schemas. `target`: containerd's version when the move goes to containerd
/// (None: inspection alone, or CRI-O). Schema 1 is a warning where the target refuses it.
pub fn findings(m: &Manifests, target: Option<crate::version::Version>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(e) = &m.error {
        out.push(Finding::warning(
            UNREADABLE,
            format!("{e}; the images Docker pulled from schema 1 manifests cannot be listed"),
            "check the file (Docker reads it at start), then run cri-migrate again",
        ));
    }
    let refused = refuses_schema1(target);
    if target.is_some() && refused.is_none() {
        return out; // containerd 1.x still pulls schema 1
    }
    let schema1 = m.of(Schema::Schema1);
    if !schema1.is_empty() {
        let stance = refused.unwrap_or("cannot be pulled by containerd 2.1 and later (2.0: only with CONTAINERD_ENABLE_DEPRECATED_PULL_SCHEMA_1_IMAGE=1)");
        let message = format!(
            "{} image reference(s) Docker pulled from schema 1 manifests {stance}: {}",
            schema1.len(),
            some(&schema1)
        );
        let fix = "keep them on the node: the carry-over brings them into containerd as Docker holds them (`--images all`, or `in-use` when pods use them); then publish them again as schema 2 or OCI before the node must pull them again (`skopeo copy --format v2s2 docker://OLD docker://NEW`, or `docker push` of a new tag from Docker 20.10 or later, which pushes schema 2) and point the pods at the new reference; or move this node to CRI-O or containerd 1.7, which still pull schema 1";
        out.push(if refused.is_some() {
            Finding::warning(SCHEMA1, message, fix)
        } else {
            Finding::info(SCHEMA1, message, fix)
        });
    }
    let unknown = m.of(Schema::Unknown);
    if !unknown.is_empty() {
        out.push(Finding::info(
            UNKNOWN,
            format!(
                "cannot tell whether {} image reference(s) Docker pulled are schema 1 ({}): {}",
                unknown.len(),
                unknown[0].evidence,
                some(&unknown)
            ),
            "on the live node, `docker pull REF` each once (Docker 20.10 or later then keeps a schema 2 manifest, and keeps none of schema 1) and run cri-migrate again; or `skopeo inspect --raw docker://REF` and look for \"schemaVersion\": 1",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOS: &str = r#"{"Repositories":{
        "reg.example/app":{"reg.example/app:1":"sha256:aaa","reg.example/app@sha256:d1":"sha256:aaa"},
        "reg.example/old":{"reg.example/old:v1":"sha256:bbb","reg.example/old@sha256:d2":"sha256:bbb"},
        "reg.example/mixed":{"reg.example/mixed@sha256:d3":"sha256:ccc","reg.example/mixed@sha256:d4":"sha256:ccc"},
        "reg.example/ancient":{"reg.example/ancient@sha256:d5":"sha256:ddd"},
        "local/built":{"local/built:dev":"sha256:eee"}
    }}"#;

    fn manifests(digest: &str) -> Option<Vec<u8>> {
        match digest {
            "sha256:d1" => Some(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#.to_vec()),
            "sha256:d3" => Some(br#"{"schemaVersion":2,"config":{},"layers":[]}"#.to_vec()),
            _ => None,
        }
    }

    fn leases() -> Leases {
        BTreeMap::from([
            (
                "moby-image-sha256:aaa".to_string(),
                vec!["sha256:d1".to_string()],
            ),
            ("moby-image-sha256:bbb".to_string(), vec![]),
            (
                "moby-image-sha256:ccc".to_string(),
                vec!["sha256:d3".to_string()],
            ),
        ])
    }

    fn schemas(pulled: &[Pulled]) -> Vec<(&str, Schema)> {
        pulled
            .iter()
            .map(|p| (p.reference.as_str(), p.schema))
            .collect()
    }

    #[test]
    fn a_lease_without_content_is_schema_1_and_an_image_without_lease_is_unknown() {
        let repos = parse_repositories(REPOS).unwrap();
        let pulled = classify(&repos, &manifests, &Ok(leases()));
        assert_eq!(
            schemas(&pulled),
            [
                ("reg.example/ancient@sha256:d5", Schema::Unknown),
                ("reg.example/app@sha256:d1", Schema::Schema2),
                ("reg.example/mixed@sha256:d3", Schema::Oci),
                // Another pull of the image kept its manifest: this one may be older.
                ("reg.example/mixed@sha256:d4", Schema::Unknown),
                ("reg.example/old@sha256:d2", Schema::Schema1),
            ]
        );
        let old = pulled.iter().find(|p| p.schema == Schema::Schema1).unwrap();
        assert_eq!(old.tags, ["reg.example/old:v1"]);
        assert_eq!(old.image, "sha256:bbb");
    }

    #[test]
    fn without_leases_nothing_is_called_schema_1() {
        let repos = parse_repositories(REPOS).unwrap();
        let pulled = classify(&repos, &manifests, &Err("offline".into()));
        assert!(pulled.iter().all(|p| p.schema != Schema::Schema1));
        assert_eq!(
            pulled
                .iter()
                .filter(|p| p.schema == Schema::Unknown)
                .count(),
            3
        );
        assert!(
            pulled[0].evidence.contains("offline"),
            "{}",
            pulled[0].evidence
        );
    }

    #[test]
    fn stored_manifests_say_their_kind() {
        assert_eq!(
            kind(br#"{"schemaVersion":1,"fsLayers":[]}"#),
            Some(Schema::Schema1)
        );
        assert_eq!(
            kind(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#),
            Some(Schema::List)
        );
        assert_eq!(
            kind(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#),
            Some(Schema::List)
        );
        assert_eq!(
            kind(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#),
            Some(Schema::Oci)
        );
        assert_eq!(kind(b"not json"), None);
        assert_eq!(kind(br#"{"schemaVersion":2}"#), None);
    }

    #[test]
    fn dockerd_names_its_containerd() {
        assert_eq!(
            containerd_flag(
                "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
            )
            .as_deref(),
            Some("/run/containerd/containerd.sock")
        );
        assert_eq!(
            containerd_flag("/usr/bin/dockerd --containerd /x.sock -H fd://").as_deref(),
            Some("/x.sock")
        );
        assert_eq!(containerd_flag("/usr/bin/dockerd -H fd://"), None);
    }

    #[test]
    fn an_offline_node_folder_is_read_through_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        // userns-remap: Docker's data under <data-root>/<uid>.<gid>; containerd's root moved.
        use sha2::Digest;
        let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        let d1 = format!("{:x}", sha2::Sha256::digest(manifest));
        // A blob whose bytes are not its digest's (half written): it tells nothing.
        let d2 = format!("{:x}", sha2::Sha256::digest("another"));
        put(
            "/data/docker/165536.165536/image/overlay2/repositories.json",
            &format!(
                r#"{{"Repositories":{{"r/a":{{"r/a:1":"sha256:aaa","r/a@sha256:{d1}":"sha256:aaa"}},"r/b":{{"r/b@sha256:{d2}":"sha256:bbb"}}}}}}"#
            ),
        );
        let blobs = "/data/containerd/io.containerd.content.v1.content/blobs/sha256";
        put(&format!("{blobs}/{d1}"), manifest);
        put(&format!("{blobs}/{d2}"), &manifest[..20]);
        let node = Node::new(dir.path());
        let places = DockerPlaces {
            data_root: Some("/data/docker"),
            storage_driver: None,
            exec_root: None,
            containerd: None,
            namespace: None,
            exec_start: None,
            containerd_root: Some("/data/containerd"),
        };
        let m = inspect(&node, &places, false);
        assert_eq!(
            m.repositories.as_deref(),
            Some("/data/docker/165536.165536/image/overlay2/repositories.json")
        );
        assert_eq!(
            schemas(&m.pulled),
            [
                (format!("r/a@sha256:{d1}").as_str(), Schema::Schema2),
                (format!("r/b@sha256:{d2}").as_str(), Schema::Unknown)
            ]
        );
        assert_eq!(m.pulled[0].tags, ["r/a:1"]);
        assert!(
            m.leases.as_deref().unwrap().contains(
                "no containerd metadata (meta.db) with namespace moby under /data/containerd, "
            ),
            "{:?}",
            m.leases
        );
        // A FIFO where a blob or containerd's metadata should be is skipped, never waited on.
        let fifo = |path: &str| {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        };
        fifo("/data/containerd/io.containerd.metadata.v1.bolt/meta.db");
        std::fs::remove_file(dir.path().join(format!(
            "data/containerd/io.containerd.content.v1.content/blobs/sha256/{d1}"
        )))
        .unwrap();
        fifo(&format!("{blobs}/{d1}"));
        let m = inspect(&node, &places, false);
        assert_eq!(
            schemas(&m.pulled),
            [
                (format!("r/a@sha256:{d1}").as_str(), Schema::Unknown),
                (format!("r/b@sha256:{d2}").as_str(), Schema::Unknown)
            ]
        );
        // A broken file is said, not a failure.
        put(
            "/data/docker/165536.165536/image/overlay2/repositories.json",
            "{not json",
        );
        let m = inspect(&node, &places, false);
        assert!(m.pulled.is_empty());
        let f = findings(&m, None);
        assert_eq!(f[0].code, UNREADABLE);
        assert!(
            f[0].message.contains("repositories.json"),
            "{}",
            f[0].message
        );
        // No Docker data at all: nothing to say.
        let empty = tempfile::tempdir().unwrap();
        let m = inspect(&Node::new(empty.path()), &places, false);
        assert!(m.repositories.is_none() && m.pulled.is_empty() && findings(&m, None).is_empty());
    }

    fn with(schema: &[(&str, Schema)]) -> Manifests {
        Manifests {
            pulled: schema
                .iter()
                .map(|(r, s)| Pulled {
                    reference: r.to_string(),
                    image: "sha256:x".into(),
                    tags: vec![],
                    schema: *s,
                    evidence: "because".into(),
                })
                .collect(),
            ..Manifests::default()
        }
    }

    #[test]
    fn schema_1_is_a_warning_only_where_the_target_refuses_it() {
        use crate::version::Version;
        let m = with(&[
            ("r@sha256:1", Schema::Schema1),
            ("r@sha256:2", Schema::Schema2),
        ]);
        let code = |f: &[Finding]| f.iter().map(|f| (f.code, f.severity)).collect::<Vec<_>>();
        use super::super::Severity::*;
        assert_eq!(code(&findings(&m, None)), [(SCHEMA1, Info)]);
        let v21 = findings(&m, Some(Version::new(2, 1, 0)));
        assert_eq!(code(&v21), [(SCHEMA1, Warning)]);
        assert!(v21[0].message.contains("r@sha256:1") && !v21[0].message.contains("r@sha256:2"));
        assert!(findings(&m, Some(Version::new(2, 0, 3)))[0]
            .message
            .contains("CONTAINERD_ENABLE_DEPRECATED_PULL_SCHEMA_1_IMAGE"));
        assert!(findings(&m, Some(Version::new(1, 7, 20))).is_empty());
        // CRI-O pulls schema 1: said, not warned.
        assert_eq!(code(&findings(&m, None)), [(SCHEMA1, Info)]);
        let many: Vec<(String, Schema)> = (0..8)
            .map(|i| (format!("r@sha256:{i}"), Schema::Unknown))
            .collect();
        let many: Vec<(&str, Schema)> = many.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        let f = findings(&with(&many), Some(Version::new(2, 1, 0)));
        assert_eq!(code(&f), [(UNKNOWN, Info)]);
        assert!(
            f[0].message.contains("8 image reference(s)") && f[0].message.contains("and 3 more"),
            "{}",
            f[0].message
        );
    }
}
