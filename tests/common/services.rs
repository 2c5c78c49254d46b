//! Real services for the tests, each on private paths and 127.0.0.1: containerd (Debian's 1.6,
//! or 2.1 from Debian unstable) and Debian's docker-registry with test images pushed by skopeo.
//! Each is stopped when dropped.

use super::repo;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tests that need root and real services are `#[ignore]`d with the reason, so that a plain
/// `cargo test` reports them as ignored; run with `--include-ignored`, a missing part is a
/// failure that says what to install, never a silent pass. Returns false when `ok`.
pub fn skip_unless(ok: bool, why: &str) -> bool {
    assert!(
        ok,
        "this test needs what is missing here: {why}. It is ignored by a plain `cargo test`; `.ci/run` installs everything"
    );
    false
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

pub fn have(program: &str) -> bool {
    which::which(program).is_ok()
}

pub fn containerd_1() -> Option<PathBuf> {
    which::which("containerd").ok()
}

pub fn containerd_2() -> Option<PathBuf> {
    let p = std::env::var_os("CRI_MIGRATE_CONTAINERD2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/var/cache/cri-migrate/containerd2/root/usr/bin/containerd")
        });
    p.exists().then_some(p)
}

/// containerd 2.x is missing (the test then fails with what to fetch, as `skip_unless`).
pub fn containerd_2_missing() -> bool {
    skip_unless(
        containerd_2().is_some(),
        "containerd 2.x is not fetched (tests/tools/fetch-sid.sh containerd2 usr/bin/containerd containerd)",
    )
}

/// Root, containerd 1.x or Docker 20.10 is missing (the test then fails with what to get, as
/// `skip_unless`): what every test of Docker 20.10 on containerd needs.
pub fn docker_20_on_containerd_missing() -> bool {
    skip_unless(is_root(), "not root")
        || skip_unless(
            containerd_1().is_some(),
            "containerd is not installed (apt-get install containerd)",
        )
        || skip_unless(
            dockerd_20().is_some(),
            "Docker 20.10 is not fetched (SUITE=bookworm tests/tools/fetch-sid.sh docker20 usr/sbin/dockerd docker.io)",
        )
}

/// Start a daemon with its output in `dir`/log (what the failure messages show).
fn spawn_logged(cmd: &mut Command, dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("log")).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A containerd on private paths.
pub struct Containerd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    /// Its root is a tmpfs of its own (another file system than Docker's), unmounted on drop.
    tmpfs_root: bool,
}

impl Containerd {
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Make this containerd the node's `/run/containerd/containerd.sock`. Not a symlink to the
    /// host path: cri-migrate resolves a node's links inside its root, as a chroot would. A hard
    /// link to the socket (one file system), else a bind mount.
    pub fn serve_node(&self, root: &Path) {
        let dst = root.join("run/containerd/containerd.sock");
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(self.socket(), &dst).is_ok() {
            return;
        }
        std::fs::write(&dst, b"").unwrap();
        let st = Command::new("mount")
            .arg("--bind")
            .arg(self.socket())
            .arg(&dst)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "cannot bind-mount the containerd socket into the node"
        );
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// `ctr ARGS` on this containerd in `namespace`, as it ended (an error when ctr cannot
    /// run: a drop must not panic over it).
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", namespace])
            .args(args)
            .output()
    }

    /// `ctr ARGS` in `k8s.io` (CRI's namespace); its stdout. Panics with ctr's stderr and
    /// containerd's log when it fails.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = self.ctr_in("k8s.io", args).unwrap();
        assert!(
            out.status.success(),
            "ctr {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Start on `config` with private root, state and sockets; `certs_d` replaces config_path.
    pub fn start(bin: &Path, config: &str, certs_d: Option<&Path>) -> Containerd {
        Containerd::start_with(bin, config, certs_d, false)
    }

    /// The same with its root on a tmpfs of its own: another file system than the machine's.
    pub fn start_on_tmpfs(bin: &Path, config: &str) -> Containerd {
        Containerd::start_with(bin, config, None, true)
    }

    fn start_with(
        bin: &Path,
        config: &str,
        certs_d: Option<&Path>,
        tmpfs_root: bool,
    ) -> Containerd {
        // /var/tmp: on the machine's disk, where overlayfs works (not on a tmpfs or overlay).
        let dir = tempfile::Builder::new()
            .prefix("cri-migrate-ctd")
            .tempdir_in("/var/tmp")
            .unwrap();
        if tmpfs_root {
            let root = dir.path().join("root");
            std::fs::create_dir(&root).unwrap();
            let st = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=512m", "cri-migrate-test"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(st.success(), "cannot mount a tmpfs for containerd's root");
        }
        let path = dir.path().join("config.toml");
        std::fs::write(&path, private_config(config, dir.path(), certs_d)).unwrap();
        let child = spawn_logged(Command::new(bin).arg("--config").arg(&path), dir.path());
        let d = Containerd {
            child,
            dir,
            bin: bin.to_path_buf(),
            tmpfs_root,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not open its socket in 30s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        if self.tmpfs_root {
            let _ = Command::new("umount")
                .arg("--lazy")
                .arg(self.dir.path().join("root"))
                .status();
        }
    }
}

/// Point a config at private paths, keeping everything cri-migrate wrote.
pub fn private_config(config: &str, dir: &Path, certs_d: Option<&Path>) -> String {
    let mut doc: toml_edit::DocumentMut = config.parse().unwrap();
    doc["root"] = toml_edit::value(dir.join("root").display().to_string());
    doc["state"] = toml_edit::value(dir.join("state").display().to_string());
    doc.entry("grpc").or_insert(toml_edit::table())["address"] =
        toml_edit::value(dir.join("containerd.sock").display().to_string());
    doc.entry("ttrpc").or_insert(toml_edit::table())["address"] =
        toml_edit::value(dir.join("ttrpc.sock").display().to_string());
    if let Some(certs) = certs_d {
        let v3 = doc.get("version").and_then(|v| v.as_integer()) == Some(3);
        let plugin = if v3 {
            "io.containerd.cri.v1.images"
        } else {
            "io.containerd.grpc.v1.cri"
        };
        doc["plugins"][plugin]["registry"]["config_path"] =
            toml_edit::value(certs.display().to_string());
    }
    doc.to_string()
}

/// Debian's docker-registry on 127.0.0.1, optionally behind htpasswd.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub addr: String,
    pub auth: Option<(String, String)>,
    /// Directories it serves from (its certificate), removed with it.
    keep: Vec<tempfile::TempDir>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        Registry::start_with(auth, "", "")
    }

    /// A registry that serves HTTPS only, with a certificate for 127.0.0.1 signed by a CA of
    /// its own: (the registry, the CA's certificate in PEM).
    pub fn start_tls() -> (Registry, String) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            super::succeeded(Command::new("openssl").args(args).current_dir(d));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cri-migrate test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            d.join("server.crt").display(),
            d.join("server.key").display()
        );
        let ca = std::fs::read_to_string(d.join("ca.crt")).unwrap();
        let mut r = Registry::start_with(None, &tls, "");
        r.keep.push(dir);
        (r, ca)
    }

    /// A registry that takes schema 1 manifests (`compatibility.schema1.enabled`), as old
    /// registries served them.
    pub fn start_schema1() -> Registry {
        Registry::start_with(None, "", "compatibility:\n  schema1:\n    enabled: true\n")
    }

    /// `http_extra`: more of the `http` section; `extra`: more top-level sections.
    fn start_with(auth: Option<(&str, &str)>, http_extra: &str, extra: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{http_extra}",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        config.push_str(extra);
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = spawn_logged(
            Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml")),
            dir.path(),
        );
        let r = Registry {
            child,
            dir,
            addr,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            keep: vec![],
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&r.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen in 20s:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Copy an image (a skopeo source: `docker-archive:PATH`, `docker://REF`) here as `name` in
    /// a schema 1 manifest (a registry from `start_schema1`), checked to be one. Returns
    /// `addr/name`.
    pub fn put_schema1(&self, source: &str, name: &str) -> String {
        let remote = format!("{}/{name}", self.addr);
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--format", "v2s1"])
            .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(source)
            .arg(format!("docker://{remote}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let raw = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{remote}"))
            .output()
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        assert_eq!(manifest["schemaVersion"], 1, "{manifest}");
        remote
    }

    /// Build an image (busybox plus one layer per label) and push it as `addr/repo:tag`.
    /// Returns the reference and its manifest digest.
    pub fn push(&self, repo: &str, tag: &str, labels: &[&str]) -> (String, String) {
        self.push_cmd(repo, tag, labels, None)
    }

    /// As `push`, with the image's command set (a JSON array), e.g. a pause-like image.
    pub fn push_cmd(
        &self,
        repo: &str,
        tag: &str,
        labels: &[&str],
        image_cmd: Option<&str>,
    ) -> (String, String) {
        let layout = tempfile::tempdir().unwrap();
        let mut make = Command::new(super::repo().join("tests/tools/make-test-image.sh"));
        if let Some(c) = image_cmd {
            make.env("IMAGE_CMD", c);
        }
        super::succeeded(make.arg(layout.path()).arg(tag).args(labels));
        let reference = format!("{}/{repo}:{tag}", self.addr);
        let digest_file = layout.path().join("digest");
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--dest-tls-verify=false", "--digestfile"])
            .arg(&digest_file);
        if let Some((u, p)) = &self.auth {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.path().display()))
            .arg(format!("docker://{reference}"));
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        (
            reference,
            std::fs::read_to_string(digest_file)
                .unwrap()
                .trim()
                .to_string(),
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The fakes directory (systemctl, journalctl, kubectl, package managers) to put first on PATH.
pub fn fakes_path() -> String {
    format!(
        "{}:{}",
        repo().join("tests/fakes").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A node (a copy of a fixture) whose Docker used two local registries, one behind a password;
/// a real containerd started on the config cri-migrate renders for it, with the hosts.toml
/// files it renders; and the images the tests pull.
pub struct World {
    pub node: tempfile::TempDir,
    pub registry: Registry,
    pub private: Registry,
    pub containerd: Containerd,
    pub image: String,
    pub digest: String,
    pub pause: String,
    pub private_image: String,
    _certs: tempfile::TempDir,
}

impl World {
    /// Always Some: a missing part fails the test (see `skip_unless`).
    pub fn new() -> Option<World> {
        let c1 = containerd_1();
        if skip_unless(is_root(), "not root")
            || skip_unless(c1.is_some(), "containerd is not installed (apt-get install containerd)")
            || skip_unless(
                have("docker-registry") && have("skopeo") && have("busybox") && have("htpasswd"),
                "docker-registry, skopeo, busybox-static or apache2-utils (htpasswd) is not installed",
            )
        {
            return None;
        }
        let registry = Registry::start(None);
        let private = Registry::start(Some(("robot", "s3cret")));
        let (image, digest) = registry.push("test/busybox", "1", &["plain"]);
        let (pause, _) = registry.push("pause/pause", "3.9", &["pause"]);
        let (private_image, _) = private.push("private/busybox", "1", &["private"]);

        let node = tempfile::tempdir().unwrap();
        super::copy_tree(
            &repo().join("tests/fixtures/nodes/kubeadm-1.22-private-pause/node"),
            node.path(),
        );
        let w = |p: &str, s: String| {
            let path = node.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, s).unwrap();
        };
        w(
            "etc/docker/daemon.json",
            format!(
                "{{\"exec-opts\": [\"native.cgroupdriver=systemd\"], \"insecure-registries\": [\"{}\", \"{}\"]}}\n",
                registry.addr, private.addr
            ),
        );
        w("var/lib/kubelet/kubeadm-flags.env", format!("KUBELET_KUBEADM_ARGS=\"--network-plugin=cni --pod-infra-container-image={pause}\"\n"));
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
        w(
            "var/lib/kubelet/config.json",
            format!(
                "{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}\n",
                private.addr
            ),
        );
        std::fs::create_dir_all(node.path().join("run/systemd/system")).unwrap();
        // A containerd unit whose restart would stop Docker's containers: these tests walk the
        // cutover-first order (the beside-Docker order has its own tests in apply.rs and the
        // in-process walk tests).
        w(
            "lib/systemd/system/containerd.service",
            "[Unit]\nDescription=containerd\n[Service]\nExecStart=/usr/bin/containerd\nKillMode=control-group\n".into(),
        );

        // What cri-migrate renders for this node, for real.
        let out = super::bin()
            .arg("--root")
            .arg(node.path())
            .args([
                "migrate",
                "--to",
                "containerd",
                "--dry-run",
                "--output",
                "json",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let certs = tempfile::tempdir().unwrap();
        for f in plan["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            if let Some(rest) = path.strip_prefix("/etc/containerd/certs.d/") {
                let dst = certs.path().join(rest);
                std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
                std::fs::write(dst, f["content"].as_str().unwrap()).unwrap();
            }
        }
        let config = super::planned(&plan, "/etc/containerd/config.toml").unwrap();
        let containerd = Containerd::start(&c1.unwrap(), config, Some(certs.path()));
        Some(World {
            node,
            registry,
            private,
            containerd,
            image,
            digest,
            pause,
            private_image,
            _certs: certs,
        })
    }
}

/// A stand-in for Docker's API on a unix socket: canned answers for the image and container
/// lists, and an export that fails (500), to drive the carry-over's failure paths.
pub struct FakeDocker {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeDocker {
    pub fn start(path: &Path, images: &str, containers: &str) -> FakeDocker {
        use std::io::{Read, Write};
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (images, containers, flag) = (images.to_string(), containers.to_string(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let (status, body) = if req.starts_with("GET /images/json") {
                    ("200 OK", images.clone())
                } else if req.starts_with("GET /containers/json") {
                    ("200 OK", containers.clone())
                } else if req.starts_with("GET /images/get") {
                    (
                        "500 Internal Server Error",
                        "{\"message\":\"export failed (fake Docker)\"}".to_string(),
                    )
                } else {
                    ("404 Not Found", "{\"message\":\"not faked\"}".to_string())
                };
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        FakeDocker {
            path: path.to_path_buf(),
            stop,
        }
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Docker 28 from Debian unstable (tests/tools/fetch-sid.sh), which can keep its images in
/// containerd (`features.containerd-snapshotter`); Debian 12's docker.io 20.10 cannot.
pub fn dockerd_28() -> Option<PathBuf> {
    let p = std::env::var_os("CRI_MIGRATE_DOCKERD28")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/cri-migrate/docker28/root/usr/sbin/dockerd"));
    p.exists().then_some(p)
}

/// Debian 12's Docker 20.10 (overlay2), fetched without installing it
/// (`SUITE=bookworm tests/tools/fetch-sid.sh docker20 usr/sbin/dockerd docker.io`).
pub fn dockerd_20() -> Option<PathBuf> {
    let p = std::env::var_os("CRI_MIGRATE_DOCKERD20")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/cri-migrate/docker20/root/usr/sbin/dockerd"));
    p.exists().then_some(p)
}

/// A dockerd on private paths, on a given containerd, answering on `socket`; no networking
/// (no iptables, no bridge), so it leaves the machine as it was.
pub struct Dockerd {
    child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub cli: PathBuf,
}

impl Dockerd {
    pub fn start(bin: &Path, containerd: &Path, socket: &Path, containerd_store: bool) -> Dockerd {
        Dockerd::start_in(bin, containerd, socket, containerd_store, None)
    }

    /// The same with its data root where given (a node's /var/lib/docker), else its own.
    pub fn start_in(
        bin: &Path,
        containerd: &Path,
        socket: &Path,
        containerd_store: bool,
        data_root: Option<&Path>,
    ) -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("cri-migrate-dockerd")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let config = serde_json::json!({
            "features": {"containerd-snapshotter": containerd_store},
            "iptables": false,
            "ip6tables": false,
            "ip-forward": false,
            "bridge": "none",
            "userland-proxy": false,
            "containerd": containerd,
            "data-root": data_root.map_or_else(|| dir.path().join("root"), Path::to_path_buf),
            "exec-root": dir.path().join("exec"),
            "pidfile": dir.path().join("docker.pid"),
            "hosts": [format!("unix://{}", socket.display())],
        });
        let path = dir.path().join("daemon.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let child = spawn_logged(
            Command::new(bin).arg("--config-file").arg(&path),
            dir.path(),
        );
        let mut d = Dockerd {
            child,
            dir,
            socket: socket.to_path_buf(),
            cli: bin.parent().unwrap().join("../bin/docker"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["version"]).status.success() {
            let exited = d.child.try_wait().ok().flatten();
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "dockerd did not answer in 60s ({exited:?}):\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The docker CLI on this daemon.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.cli)
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .unwrap()
    }

    /// The docker CLI; panics with its stderr and the daemon's log when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Where a CRI-O build is: `CRI_MIGRATE_CRIO_124` / `CRI_MIGRATE_CRIO_136` (a directory with
/// `crio` and `pinns`, which `.ci/run` sets), else the shared runtimes beside the repository
/// (`../shared/runtimes/crio-1.24.6`), as the README says.
pub fn crio_dir(var: &str, version: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(format!("../shared/runtimes/crio-{version}")));
    (p.join("crio").exists() && p.join("pinns").exists()).then_some(p)
}

/// The CRI-O build of `version` ("1.24.6", "1.36.3"), or a failure that says where to get it
/// (as `skip_unless`).
pub fn crio_missing(version: &str) -> Option<PathBuf> {
    let var = match version {
        "1.24.6" => "CRI_MIGRATE_CRIO_124",
        _ => "CRI_MIGRATE_CRIO_136",
    };
    let dir = crio_dir(var, version);
    skip_unless(
        dir.is_some(),
        &format!("CRI-O {version} is not here: set {var} to a directory holding its crio and pinns (built from CRI-O's source; ../shared/runtimes/crio-{version} in this workplace)"),
    );
    skip_unless(
        have("conmon") && (have("runc") || have("crun")),
        "conmon and runc/crun are not installed (apt-get install conmon runc crun)",
    );
    dir
}

/// A CRI-O on private paths: its own root, run root, socket, config directory, signature
/// policy and registries file (`CONTAINERS_REGISTRIES_CONF`: the registry on 127.0.0.1 is
/// plain HTTP), with the cgroupfs manager (no systemd as PID 1 here).
pub struct Crio {
    child: Child,
    pub dir: tempfile::TempDir,
    pub version: String,
    registries_dropin: PathBuf,
}

/// CRI-O reads the system's registries.conf.d, which the tests write into: one test of CRI-O at
/// a time (hold this while any runs).
pub fn crio_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Crio {
    pub fn start(bin_dir: &Path, version: &str, registries: &[&str], conf_d: &str) -> Crio {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("crio.conf.d")).unwrap();
        std::fs::write(d.join("crio.conf"), "").unwrap();
        std::fs::write(d.join("crio.conf.d/50-test.conf"), conf_d).unwrap();
        std::fs::write(
            d.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        // CRI-O 1.36 reads only the system's registries.conf(.d) (no flag, no variable): the
        // registries on 127.0.0.1 go into a drop-in of this test's own there, removed on drop.
        let mut reg = String::new();
        for r in registries {
            reg.push_str(&format!(
                "[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"
            ));
        }
        let dropin = PathBuf::from(format!(
            "/etc/containers/registries.conf.d/99-cri-migrate-test-{}.conf",
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches('.')
        ));
        std::fs::create_dir_all(dropin.parent().unwrap()).unwrap();
        std::fs::write(&dropin, reg).unwrap();
        let mut cmd = Command::new(bin_dir.join("crio"));
        cmd.arg("--config")
            .arg(d.join("crio.conf"))
            .arg("--config-dir")
            .arg(d.join("crio.conf.d"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--listen")
            .arg(d.join("crio.sock"))
            .arg("--signature-policy")
            .arg(d.join("policy.json"))
            .arg("--conmon")
            .arg(which::which("conmon").unwrap())
            .arg("--pinns-path")
            .arg(bin_dir.join("pinns"))
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--conmon-cgroup")
            .arg("pod")
            .arg("--storage-driver")
            .arg("overlay")
            .arg("--log-dir")
            .arg(d.join("logs"))
            .arg("--version-file")
            .arg(d.join("version"))
            .arg("--version-file-persist")
            .arg(d.join("version-persist"))
            .arg("--clean-shutdown-file")
            .arg(d.join("clean.shutdown"))
            .arg("--hooks-dir")
            .arg(d.join("hooks"))
            .arg("--container-exits-dir")
            .arg(d.join("exits"))
            .arg("--container-attach-socket-dir")
            .arg(d.join("attach"))
            .arg("--log-level")
            .arg("debug")
            .arg("--namespaces-dir")
            .arg(d.join("ns"));
        let child = spawn_logged(&mut cmd, d);
        let c = Crio {
            child,
            dir,
            version: version.to_string(),
            registries_dropin: dropin,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(c.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "CRI-O {version} did not listen in 60s:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("crio.sock")
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Crio {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = std::fs::remove_file(&self.registries_dropin);
        // Its overlay mounts and namespaces live under its root: unmount them before the
        // directory goes.
        let root = self.dir.path().display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// cri-dockerd's directory (`CRI_MIGRATE_CRI_DOCKERD`, which `.ci/run` sets), else the shared
/// runtimes beside the repository; or a failure that says where to get it (as `skip_unless`).
pub fn cri_dockerd_missing() -> Option<PathBuf> {
    let p = std::env::var_os("CRI_MIGRATE_CRI_DOCKERD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/runtimes/cri-dockerd-0.4.3"));
    let found = p.join("cri-dockerd").exists();
    skip_unless(
        found,
        "cri-dockerd is not here: set CRI_MIGRATE_CRI_DOCKERD to a directory holding its binary (built from cri-dockerd's source; ../shared/runtimes/cri-dockerd-0.4.3 in this workplace)",
    );
    found.then_some(p)
}

/// A real cri-dockerd in front of a dockerd, on private paths, with CNI from `cni_conf`.
pub struct CriDockerd {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl CriDockerd {
    pub fn start(bin_dir: &Path, docker: &Path, cni_conf: &Path, pause: &str) -> CriDockerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut cmd = Command::new(bin_dir.join("cri-dockerd"));
        cmd.arg("--docker-endpoint")
            .arg(format!("unix://{}", docker.display()))
            .arg("--container-runtime-endpoint")
            .arg(format!("unix://{}", d.join("cri-dockerd.sock").display()))
            .arg("--cri-dockerd-root-directory")
            .arg(d.join("root"))
            .arg("--network-plugin=cni")
            .arg("--cni-conf-dir")
            .arg(cni_conf)
            .arg("--cni-bin-dir")
            .arg("/usr/lib/cni")
            .arg("--cni-cache-dir")
            .arg(d.join("cni-cache"))
            .arg("--pod-infra-container-image")
            .arg(pause)
            .arg("--streaming-bind-addr")
            .arg("127.0.0.1:0");
        let child = spawn_logged(&mut cmd, d);
        let c = CriDockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(c.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "cri-dockerd did not listen in 60s:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cri-dockerd.sock")
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for CriDockerd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
