//! A single-node control plane (`skiff init`) for API server tests, and kubectl pointed at it.

use super::cluster::*;
use serde_json::Value;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A running `skiff init`, killed on drop.
pub struct Init {
    child: Child,
    pub dir: TestDir,
    /// host:port of the API server.
    pub api: String,
    /// host:port of the store's client endpoint.
    pub store: String,
    /// This control plane's own Node, unique among the tests running at once (as root, `skiff
    /// init` runs a node agent for it, whose run directory is `/run/skiff/<node>`).
    pub node: String,
    /// The command line, for restarts.
    args: Vec<String>,
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Pods the scheduler placed on this node hold their sandbox namespaces by bind mounts in
        // the agent's run directory and their volumes on tmpfs in the test directory: detach
        // both, so neither outlives the test.
        let run = Path::new("/run/skiff").join(&self.node);
        detach_mounts_under(&run);
        detach_mounts_under(self.dir.path());
        if run.exists() {
            let _ = std::fs::remove_dir_all(&run);
        }
    }
}

/// Lazily unmounts every mount point below `dir`, deepest first.
fn detach_mounts_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.reverse();
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: a NUL-terminated path; MNT_DETACH takes no other arguments.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A JSON request to the API server at `api` as the admin (a merge patch when it has a
/// body); `Null` when the answer is not JSON. Usable from threads that hold no `Init`.
pub fn api_json(
    pki: &std::path::Path,
    api: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Value {
    let mut cmd = admin_curl(pki);
    cmd.args(["-sS", "-X", method]);
    if body.is_some() {
        cmd.args([
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            "@-",
        ]);
    }
    cmd.arg(format!("https://{api}{path}"));
    let out = run_with_timeout(&mut cmd, body.map(str::as_bytes), Duration::from_secs(20));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A Node name no other test running now uses: `z-` first so it lists after the Nodes tests
/// create themselves (`node-1`, `worker-1`), then the test's label, pid and a sequence number,
/// within the 63 characters a `kubernetes.io/hostname` label value allows.
pub fn unique_node_name(label: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let suffix = format!(
        "-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63 - 2 - suffix.len())
        .collect();
    format!("z-{}{suffix}", label.trim_matches('-'))
}

/// curl with the admin client certificate of the cluster whose certificates are in `pki`.
pub fn admin_curl(pki: &Path) -> Command {
    let mut c = Command::new("curl");
    c.arg("--cacert")
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"));
    c
}

impl Init {
    pub fn start(label: &str) -> Init {
        Init::start_with(label, &[])
    }

    pub fn start_with(label: &str, extra: &[&str]) -> Init {
        let addrs = MemberAddrs::alloc(Ipv4Addr::new(127, 0, 0, 61));
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        Init::launch(TestDir::new(label), unique_node_name(label), &addrs, &extra)
    }

    /// A control plane of `n` members bootstrapping together, each a whole `skiff init` (store
    /// member, API server, scheduler and controllers, and as root a node agent) on its own
    /// address, 127.0.0.61, .62, ... The others start from the first one's CA and
    /// service-account key, as kubeadm's control-plane members share them.
    pub fn start_members(label: &str, n: u8) -> Vec<Init> {
        let addrs: Vec<MemberAddrs> = (0..n)
            .map(|i| MemberAddrs::alloc(Ipv4Addr::new(127, 0, 0, 61 + i)))
            .collect();
        let nodes: Vec<String> = (0..n).map(|_| unique_node_name(label)).collect();
        let cluster = nodes
            .iter()
            .zip(&addrs)
            .map(|(node, a)| format!("{node}={}", a.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let args = vec!["--initial-cluster".to_string(), cluster];
        let mut members: Vec<Init> = Vec::new();
        for (i, (node, addrs)) in nodes.into_iter().zip(&addrs).enumerate() {
            let dir = TestDir::new(&format!("{label}-{i}"));
            if let Some(first) = members.first() {
                let pki = dir.path().join("data").join("pki");
                std::fs::create_dir_all(&pki).expect("pki directory");
                for file in ["ca.crt", "ca.key", "sa.key", "sa.pub"] {
                    std::fs::copy(first.pki().join(file), pki.join(file))
                        .unwrap_or_else(|e| panic!("copying {file}: {e}"));
                }
            }
            members.push(Init::launch(dir, node, addrs, &args));
        }
        members
    }

    fn launch(dir: TestDir, node: String, addrs: &MemberAddrs, extra: &[String]) -> Init {
        let ip = addrs.ip;
        let mut args: Vec<String> = vec![
            "init".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--store-listen".into(),
            format!("{ip}:{}", addrs.store),
            "--store-peer-listen".into(),
            format!("{ip}:{}", addrs.peer),
            "--apiserver-listen".into(),
            format!("{ip}:{}", addrs.api),
            "--node-name".into(),
            node.clone(),
            "--agent-listen".into(),
            format!("{ip}:0"),
        ];
        args.extend(extra.iter().cloned());
        let child = Self::spawn(&dir, &args);
        let init = Init {
            child,
            dir,
            api: format!("{ip}:{}", addrs.api),
            store: format!("{ip}:{}", addrs.store),
            node,
            args,
        };
        init.wait_serving();
        init
    }

    fn spawn(dir: &TestDir, args: &[String]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("init.log"))
            .expect("log file");
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff init")
    }

    fn wait_serving(&self) {
        let conf = self.kubeconfig();
        let up = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            conf.exists() && TcpStream::connect(&self.api).is_ok()
        });
        assert!(
            up,
            "skiff init did not serve the API within 30 s:\n{}",
            std::fs::read_to_string(self.dir.path().join("init.log")).unwrap_or_default()
        );
    }

    /// Kills `skiff init` (SIGKILL: control plane and node agent at once), leaving everything
    /// it started behind, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `skiff init` again over the same state, after [`Init::kill`].
    pub fn restart(&mut self) {
        self.child = Self::spawn(&self.dir, &self.args);
        self.wait_serving();
    }

    /// The cluster's certificates: ca.crt, admin.crt, admin.key.
    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("data").join("pki")
    }

    /// One HTTPS request as the admin, for what kubectl cannot send (raw and malformed bodies):
    /// the status code (0 when no HTTP answer came back) and the response body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let out = run_with_timeout(
            admin_curl(&self.pki())
                .args(["-sS", "-w", "\n%{http_code}", "-X", method])
                .args(["-H", &format!("Content-Type: {content_type}")])
                .args(["--data-binary", "@-"])
                .arg(format!("https://{}{path}", self.api)),
            Some(body),
            Duration::from_secs(30),
        );
        let text = stdout_str(&out);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{method} {path}: {}", describe(&out)));
        (code, body.to_string())
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.conf")
    }

    /// The node agent's kubeconfig (its own identity, `system:node:<node>`); written only when
    /// `skiff init` runs as root.
    pub fn kubelet_conf(&self) -> PathBuf {
        self.dir.path().join("data").join("kubelet.conf")
    }

    /// `skiff init`'s log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("init.log")).unwrap_or_default()
    }

    /// Runs kubectl with the admin kubeconfig and a private discovery cache.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    /// Runs kubectl with `stdin` fed in (for `apply -f -`).
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.kubectl_env(args, stdin, &[])
    }

    /// Runs kubectl with extra environment (`EDITOR` for `kubectl edit`).
    pub fn kubectl_env(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
        let home = self.dir.path().join("home");
        let _ = std::fs::create_dir_all(&home);
        run_with_timeout(
            Command::new("kubectl")
                .envs(env.iter().copied())
                .env("HOME", &home)
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .args(args),
            stdin,
            Duration::from_secs(30),
        )
    }

    /// Like [`Init::kubectl`], panicking with the output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check_ok(&format!("kubectl {}", args.join(" ")), &self.kubectl(args))
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed:\n{}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A long-running kubectl (`get -w`), its lines read with deadlines.
    pub fn kubectl_stream(&self, args: &[&str]) -> LineReader {
        let home = self.dir.path().join("home");
        let _ = std::fs::create_dir_all(&home);
        LineReader::spawn(
            Command::new("kubectl")
                .env("HOME", &home)
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .args(args),
            Some(
                self.dir
                    .path()
                    .join(format!("stream-{}.log", args.join("-").replace('/', "_"))),
            ),
        )
    }
}

/// The ports one control-plane member listens on.
struct MemberAddrs {
    ip: Ipv4Addr,
    store: u16,
    peer: u16,
    api: u16,
}

impl MemberAddrs {
    fn alloc(ip: Ipv4Addr) -> MemberAddrs {
        MemberAddrs {
            ip,
            store: alloc_port(ip),
            peer: alloc_port(ip),
            api: alloc_port(ip),
        }
    }

    fn peer_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.peer)
    }
}

/// A `skiff store` member joined to an [`Init`]'s store, killed (SIGKILL) on drop.
pub struct StoreMember {
    child: Option<Child>,
    pub name: String,
    /// host:port of its client endpoint.
    pub client: String,
    args: Vec<String>,
    log: PathBuf,
}

impl StoreMember {
    /// Starts (or restarts, on the same data directory) the member process.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("member log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(&self.args)
            .env(OWNER_ENV, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff store");
        self.child = Some(child);
    }

    /// `kill -9`, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StoreMember {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Init {
    /// Adds a voting member named `name` to the store (`etcdctl member add`, retried while the
    /// store refuses reconfiguration) and starts it with `--initial-cluster-state existing`.
    /// Its data and log live in this control plane's directory.
    pub fn add_store_member(&self, name: &str) -> StoreMember {
        let ip = Ipv4Addr::new(127, 0, 0, 61);
        let client = format!("{ip}:{}", alloc_port(ip));
        let peer = format!("http://{ip}:{}", alloc_port(ip));
        let mut tries = 0;
        wait_for(Duration::from_secs(30), Duration::from_millis(500), || {
            tries += 1;
            let out = run_with_timeout(
                Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={}", self.store))
                    .args(["member", "add", name, &format!("--peer-urls={peer}")]),
                None,
                Duration::from_secs(20),
            );
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            if out.status.success() || (tries > 1 && err.contains("already")) {
                Ok(())
            } else {
                Err(describe(&out))
            }
        })
        .unwrap_or_else(|e| panic!("etcdctl member add {name}: {e}"));
        // Joining needs a running member's peer URL: the one inside `skiff init`.
        let (first, first_peer) = self.store_member_peer();
        let cluster = format!("{first}={first_peer},{name}={peer}");
        let data = self.dir.path().join(format!("store-{name}"));
        let mut m = StoreMember {
            child: None,
            name: name.to_string(),
            client: client.clone(),
            args: vec![
                "store".into(),
                "--name".into(),
                name.into(),
                "--data-dir".into(),
                data.to_string_lossy().into_owned(),
                "--listen-client".into(),
                format!("http://{client}"),
                "--listen-peer".into(),
                peer,
                "--initial-cluster".into(),
                cluster,
                "--initial-cluster-state".into(),
                "existing".into(),
            ],
            log: self.dir.path().join(format!("store-{name}.log")),
        };
        m.start();
        m
    }

    /// Name and peer URL of the store member inside `skiff init`, from `etcdctl member list`.
    fn store_member_peer(&self) -> (String, String) {
        let out = run_with_timeout(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.store))
                .args(["member", "list", "-w", "json"]),
            None,
            Duration::from_secs(20),
        );
        let json = Json::parse(check_ok("etcdctl member list", &out).trim()).expect("member list");
        let client = format!("http://{}", self.store);
        let me = json
            .get("members")
            .and_then(Json::as_array)
            .unwrap_or_default()
            .iter()
            .find(|m| {
                m.get("clientURLs")
                    .and_then(Json::as_array)
                    .is_some_and(|u| u.iter().any(|u| u.as_str() == Some(client.as_str())))
            })
            .unwrap_or_else(|| panic!("no member serves {client}: {json:?}"));
        let name = me.get("name").and_then(Json::as_str).unwrap_or_default();
        let peer = me
            .path(&["peerURLs"])
            .and_then(Json::as_array)
            .and_then(|u| u.first())
            .and_then(Json::as_str)
            .expect("peer URL");
        (name.to_string(), peer.to_string())
    }
}
