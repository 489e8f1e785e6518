//! Test images and a real registry for the image store tests.
//!
//! - `busybox_layer()` packages Debian's static busybox (`busybox-static`) as an image layer:
//!   `bin/busybox`, a symlink per applet (`busybox --list`), minimal `etc/passwd` and
//!   `etc/group`; `whiteout_layer()` deletes and hides things on top of it.
//! - `TestImage` turns layer tars into blobs, an OCI config and manifest; it can be written
//!   as an OCI layout archive or a `docker save` archive, or pushed to a registry.
//! - `Registry` runs Debian's `docker-registry serve` on 127.0.0.1:<free port> with its own
//!   storage directory (and, optionally, htpasswd basic auth), and is killed on drop. Its
//!   access log tells which blobs were fetched.
//!
//! All traffic stays on 127.0.0.1.

use super::cluster::*;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The skiff binary under test.
pub fn skiff_bin() -> PathBuf {
    std::env::var_os("SKIFF_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff")))
}

/// Runs `skiff image <args> --root <root>` with a timeout.
pub fn skiff_image(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(skiff_bin());
    cmd.arg("image").args(args).arg("--root").arg(root);
    run_with_timeout(&mut cmd, None, Duration::from_secs(120))
}

pub fn stderr_str(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a command failed cleanly (exit 1, no panic) and returns its stderr.
pub fn check_fails(what: &str, out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{what} succeeded:\n{}",
        describe(out)
    );
    let err = stderr_str(out);
    assert!(
        out.status.code() == Some(1) && !err.contains("panicked"),
        "{what} did not fail cleanly:\n{}",
        describe(out)
    );
    err
}

fn in_ci() -> bool {
    matches!(std::env::var("CI"), Ok(v) if !v.is_empty() && v != "0" && v != "false")
}

/// True when every tool is installed (and root is had, when `root`); otherwise prints a loud
/// `*** SKIPPING` and returns false. Under CI (which runs as root with
/// deploy/install-deps.sh done) a missing piece is a failure instead.
pub fn require(test: &str, root: bool, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if root && !is_root() {
        missing.push("root (whiteout devices, trusted.* xattrs, chown)".to_string());
    }
    for t in tools {
        if !tool_exists(t) {
            missing.push(format!("`{t}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "*** SKIPPING {test}: needs {} (run deploy/install-deps.sh as root)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg} (CI is set, so this is a failure)");
    }
    eprintln!("\n{msg}\n");
    false
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A blob with its media type and digest.
#[derive(Clone)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256(&bytes),
            bytes,
        }
    }

    pub fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }

    fn descriptor(&self) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            self.media_type,
            self.digest,
            self.bytes.len()
        )
    }
}

/// Builds a layer tar entry by entry.
pub struct LayerTar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        LayerTar {
            b: tar::Builder::new(Vec::new()),
        }
    }
}

impl LayerTar {
    fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        // Raw name bytes: the builder's set_path refuses `..`, which the malicious layer needs.
        let name = &mut h.as_old_mut().name;
        assert!(path.len() < name.len(), "{path} too long for the test tar");
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let h = Self::header(path, tar::EntryType::Directory, mode, 0);
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let h = Self::header(path, tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(path, tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// Where Debian's busybox-static puts the binary.
pub fn busybox_path() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox not found (apt-get install busybox-static)");
}

/// A root file system with busybox and every applet as a symlink to it.
pub fn busybox_layer() -> Vec<u8> {
    let bin = busybox_path();
    let busybox = fs::read(&bin).unwrap();
    let list = Command::new(&bin).arg("--list").output().unwrap();
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect();
    applets.sort();
    applets.dedup();
    for must in ["sh", "ls", "cat", "echo", "sleep", "true"] {
        assert!(applets.iter().any(|a| a == must), "busybox lacks {must}");
    }
    let mut t = LayerTar::default()
        .dir("bin/", 0o755)
        .file("bin/busybox", 0o755, &busybox);
    for a in &applets {
        t = t.symlink(&format!("bin/{a}"), "busybox");
    }
    t.dir("etc/", 0o755)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
        .dir("root/", 0o700)
        .dir("tmp/", 0o1777)
        .file("tmp/old", 0o644, b"from the base layer\n")
        .finish()
}

/// A layer on top of `busybox_layer`: deletes etc/group (whiteout), hides the old tmp/
/// contents (opaque), adds files.
pub fn whiteout_layer() -> Vec<u8> {
    LayerTar::default()
        .dir("etc/", 0o755)
        .file("etc/.wh.group", 0o644, b"")
        .file("etc/motd", 0o644, b"hello from layer 2\n")
        .dir("tmp/", 0o1777)
        .file("tmp/.wh..wh..opq", 0o644, b"")
        .file("tmp/new", 0o644, b"from layer 2\n")
        .finish()
}

/// A layer that tries to write outside its root.
pub fn escaping_layer() -> Vec<u8> {
    LayerTar::default()
        .file("ok", 0o644, b"fine\n")
        .file("../escape", 0o644, b"pwned\n")
        .finish()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An OCI image: config, layers (gzip) and manifest.
#[derive(Clone)]
pub struct TestImage {
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// The uncompressed layer tars, bottom first.
    pub tars: Vec<Vec<u8>>,
    pub diff_ids: Vec<String>,
    pub manifest: Blob,
}

impl TestImage {
    /// An image of the given layer tars, gzip-compressed, for this machine's architecture.
    pub fn new(tars: Vec<Vec<u8>>) -> TestImage {
        Self::with_arch(tars, host_arch())
    }

    pub fn with_arch(tars: Vec<Vec<u8>>, arch: &str) -> TestImage {
        Self::build(tars, arch, "0:0")
    }

    /// An image whose config names `user` as its `USER`.
    pub fn with_user(tars: Vec<Vec<u8>>, user: &str) -> TestImage {
        Self::build(tars, host_arch(), user)
    }

    fn build(tars: Vec<Vec<u8>>, arch: &str, user: &str) -> TestImage {
        let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
        let layers: Vec<Blob> = tars
            .iter()
            .map(|t| Blob::new(OCI_LAYER_GZIP, gzip(t)))
            .collect();
        let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hello from busybox"],"Env":["PATH=/bin","GREETING=hi"],"WorkingDir":"/tmp","User":"{user}"}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
            ids.join(",")
        );
        let config = Blob::new(OCI_CONFIG, config.into_bytes());
        let layer_descs: Vec<String> = layers.iter().map(Blob::descriptor).collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            config.descriptor(),
            layer_descs.join(",")
        );
        TestImage {
            config,
            layers,
            tars,
            diff_ids,
            manifest: Blob::new(OCI_MANIFEST, manifest.into_bytes()),
        }
    }

    /// Writes an OCI image layout archive whose index.json names the image `ref_name`.
    pub fn write_oci_archive(&self, path: &Path, ref_name: &str) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{ref_name}"}}}}]}}"#,
            self.manifest.digest,
            self.manifest.bytes.len()
        );
        add("index.json", index.as_bytes());
        for blob in [&self.manifest, &self.config]
            .into_iter()
            .chain(&self.layers)
        {
            add(&format!("blobs/sha256/{}", blob.hex()), &blob.bytes);
        }
        b.into_inner().unwrap().sync_all().unwrap();
    }

    /// Writes a `docker save` archive (manifest.json, `<id>.json` config, uncompressed
    /// `<n>/layer.tar` layers) tagged `repo_tag`.
    pub fn write_docker_save(&self, path: &Path, repo_tag: &str) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        let config_name = format!("{}.json", self.config.hex());
        add(&config_name, &self.config.bytes);
        let mut layer_names = Vec::new();
        for (i, tar) in self.tars.iter().enumerate() {
            let name = format!("layer{i}/layer.tar");
            add(&name, tar);
            layer_names.push(format!("\"{name}\""));
        }
        let manifest = format!(
            r#"[{{"Config":"{config_name}","RepoTags":["{repo_tag}"],"Layers":[{}]}}]"#,
            layer_names.join(",")
        );
        add("manifest.json", manifest.as_bytes());
        b.into_inner().unwrap().sync_all().unwrap();
    }
}

/// An OCI index listing `images` with their architectures.
pub fn index_of(images: &[(&TestImage, &str)]) -> Blob {
    let entries: Vec<String> = images
        .iter()
        .map(|(img, arch)| {
            format!(
                r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                img.manifest.digest,
                img.manifest.bytes.len()
            )
        })
        .collect();
    Blob::new(
        OCI_INDEX,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        )
        .into_bytes(),
    )
}

/// This machine's architecture in OCI terms.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    /// 127.0.0.1:<port>
    pub addr: String,
    pub dir: TestDir,
    log: PathBuf,
    credentials: Option<(String, String)>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- registry log (last 40 lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

impl Registry {
    /// A registry without authentication.
    pub fn start(label: &str) -> Registry {
        Self::start_inner(label, None)
    }

    /// A registry requiring HTTP basic auth (htpasswd, bcrypt) for `user`/`password`.
    pub fn start_with_basic_auth(label: &str, user: &str, password: &str) -> Registry {
        Self::start_inner(label, Some((user.to_string(), password.to_string())))
    }

    fn start_inner(label: &str, credentials: Option<(String, String)>) -> Registry {
        let dir = TestDir::new(label);
        let port = alloc_port(Ipv4Addr::LOCALHOST);
        let addr = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let out = run_with_timeout(
                Command::new("htpasswd").args(["-Bbn", user, password]),
                None,
                Duration::from_secs(30),
            );
            let htpasswd = check_ok("htpasswd", &out);
            fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let log_file = File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawning docker-registry");
        let mut reg = Registry {
            child,
            addr,
            dir,
            log,
            credentials,
        };
        let ready = wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
            if let Ok(Some(st)) = reg.child.try_wait() {
                panic!("docker-registry exited at start: {st}");
            }
            matches!(http_status(&reg.addr, "/v2/"), Some(200 | 401))
        });
        assert!(
            ready,
            "docker-registry did not answer on {} within 30s",
            reg.addr
        );
        reg
    }

    /// The registry's output so far (application log and access log).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times a blob was fetched (GET requests in the access log).
    pub fn blob_fetches(&self, digest: &str) -> usize {
        let needle = format!("/blobs/{digest}");
        self.log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&needle))
            .count()
    }

    /// `127.0.0.1:<port>/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// Pushes the image's blobs and manifest as `<repo>:<tag>` (oci-client's push API).
    pub fn push(&self, repo: &str, tag: &str, image: &TestImage) {
        let blobs: Vec<&Blob> = std::iter::once(&image.config)
            .chain(&image.layers)
            .collect();
        self.push_raw(repo, tag, &blobs, &image.manifest);
    }

    /// Pushes blobs, then `manifest` (an image manifest or an index) under `tag`.
    pub fn push_raw(&self, repo: &str, tag: &str, blobs: &[&Blob], manifest: &Blob) {
        use oci_client::client::{ClientConfig, ClientProtocol};
        use oci_client::secrets::RegistryAuth;
        let reference: oci_client::Reference = self.reference(repo, tag).parse().unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let auth = match &self.credentials {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            client
                .auth(&reference, &auth, oci_client::RegistryOperation::Push)
                .await
                .expect("registry auth for push");
            for b in blobs {
                client
                    .push_blob(&reference, b.bytes.clone(), &b.digest)
                    .await
                    .unwrap_or_else(|e| panic!("pushing blob {}: {e}", b.digest));
            }
            client
                .push_manifest_raw(
                    &reference,
                    manifest.bytes.clone(),
                    http::HeaderValue::from_str(&manifest.media_type).unwrap(),
                )
                .await
                .unwrap_or_else(|e| panic!("pushing manifest {repo}:{tag}: {e}"));
        });
    }
}

/// The HTTP status of `GET path` on `addr`, or None when nothing answers.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = std::str::from_utf8(&buf[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Files and directories under `dir` (recursively), for "nothing was written" checks.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Entries of `<root>/<sub>` (e.g. "blobs/sha256").
pub fn entries(root: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join(sub))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
