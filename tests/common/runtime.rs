//! Support for the container runtime tests: a busybox root filesystem layer built from Debian's
//! busybox-static (no registry), a `Runtime` over temp directories using the built `skiff`
//! binary as shim, and clean-up of containers, mounts and cgroups even when a test fails.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use skiff_node_agent::runtime::cgroup::CgroupLayout;
use skiff_node_agent::runtime::spec::{self, ContainerConfig, ImageDefaults};
use skiff_node_agent::runtime::{
    ContainerHandle, CreateRequest, ExitStatus, LogRotation, Runtime, RuntimeDirs, RuntimeError,
};

use super::cluster::{is_root, require_root, require_tool, TestDir};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Every test's containers live under this cgroup, one child per test environment.
pub const CGROUP_ROOT: &str = "/skiff-test";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Root and busybox-static, or a loud skip.
pub fn require_runtime(test: &str) -> bool {
    if !is_root() {
        eprintln!("\n*** SKIPPING {test}: the container runtime tests need root\n");
    }
    if !require_root(test) {
        return false;
    }
    if !Path::new(BUSYBOX).exists() {
        return require_tool(test, "busybox");
    }
    true
}

/// A read-only layer directory: bin/busybox and a symlink per applet, plus the usual mount
/// points.
pub fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layers/busybox");
    let bin = layer.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
    for d in ["proc", "sys", "dev", "etc", "tmp", "root"] {
        fs::create_dir_all(layer.join(d)).unwrap();
    }
    fs::write(layer.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(layer.join("etc/group"), "root:x:0:\n").unwrap();
    layer
}

/// A runtime over a temp directory, and every container it made deleted on drop.
pub struct RuntimeEnv {
    pub runtime: Option<Runtime>,
    pub layer: PathBuf,
    pub cgroup_parent: String,
    pub logs: PathBuf,
    created: Mutex<Vec<String>>,
    prefix: String,
    // Dropped last (fields drop in order, after Drop::drop).
    pub dir: TestDir,
}

impl RuntimeEnv {
    /// None (after a loud skip message) when not root or without busybox-static.
    pub fn new(label: &str) -> Option<RuntimeEnv> {
        if !require_runtime(label) {
            return None;
        }
        reap_stale_runtime_leftovers();
        let dir = TestDir::new(label);
        let layer = busybox_layer(dir.path());
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("t{}-{n}", std::process::id());
        let runtime = Self::open_runtime(dir.path());
        Some(RuntimeEnv {
            runtime: Some(runtime),
            layer,
            cgroup_parent: format!("{CGROUP_ROOT}/{prefix}"),
            logs: dir.path().join("logs"),
            created: Mutex::new(Vec::new()),
            prefix,
            dir,
        })
    }

    fn open_runtime(dir: &Path) -> Runtime {
        Runtime::new(
            RuntimeDirs::new(&dir.join("run"), &dir.join("data")),
            PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
        )
        .expect("runtime")
    }

    pub fn rt(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime")
    }

    /// Drops the runtime and opens a new one over the same directories (an agent restart).
    pub fn reopen(&mut self) {
        self.runtime = None;
        self.runtime = Some(Self::open_runtime(self.dir.path()));
    }

    /// The container id for a short name (unique across concurrent tests).
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// A container description running `argv`, in this environment's cgroup.
    pub fn config(&self, name: &str, argv: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: argv.iter().map(|s| s.to_string()).collect(),
            cgroup_path: format!("{}/{name}", self.cgroup_parent),
            hostname: Some(name.to_string()),
            ..Default::default()
        }
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(name).join("0.log")
    }

    pub fn try_create(
        &self,
        name: &str,
        cfg: &ContainerConfig,
    ) -> Result<ContainerHandle, RuntimeError> {
        let spec = spec::build(&ImageDefaults::default(), cfg).expect("spec");
        let id = self.id(name);
        self.created.lock().unwrap().push(id.clone());
        self.rt().create_and_start(CreateRequest {
            id,
            spec,
            layers: vec![self.layer.clone()],
            log_path: self.log_path(name),
            log_rotation: LogRotation::default(),
        })
    }

    pub fn create(&self, name: &str, cfg: &ContainerConfig) -> ContainerHandle {
        self.try_create(name, cfg)
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
    }

    pub fn wait(&self, name: &str, timeout: Duration) -> ExitStatus {
        self.rt()
            .wait(&self.id(name), timeout)
            .unwrap_or_else(|e| panic!("wait {name}: {e}"))
    }

    /// Runs a container to completion; returns its exit record and its log's messages.
    pub fn run(&self, name: &str, cfg: &ContainerConfig) -> (ExitStatus, Vec<(String, String)>) {
        self.create(name, cfg);
        let exit = self.wait(name, Duration::from_secs(30));
        (exit, self.log_messages(name))
    }

    /// (stream, message) of each CRI log record; checks the record format on the way.
    pub fn log_messages(&self, name: &str) -> Vec<(String, String)> {
        let text = fs::read_to_string(self.log_path(name)).unwrap_or_default();
        text.lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let ts = parts.next().unwrap_or("");
                let stream = parts.next().unwrap_or("").to_string();
                let tag = parts.next().unwrap_or("");
                let msg = parts.next().unwrap_or("").to_string();
                assert!(
                    ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                    "bad timestamp in {l:?}"
                );
                assert!(
                    stream == "stdout" || stream == "stderr",
                    "bad stream in {l:?}"
                );
                assert!(tag == "F" || tag == "P", "bad tag in {l:?}");
                (stream, msg)
            })
            .collect()
    }

    pub fn stdout_lines(&self, name: &str) -> Vec<String> {
        self.log_messages(name)
            .into_iter()
            .filter(|(s, _)| s == "stdout")
            .map(|(_, m)| m)
            .collect()
    }

    /// A v1 (or v2) controller file of a container's cgroup.
    pub fn cgroup_file(&self, controller: &str, name: &str, file: &str) -> PathBuf {
        let rel = format!("{}/{name}", self.cgroup_parent);
        match self.rt().cgroups() {
            CgroupLayout::V2 { root } => root.join(rel.trim_start_matches('/')).join(file),
            CgroupLayout::V1 { hierarchies } => hierarchies
                .get(controller)
                .unwrap_or_else(|| panic!("no {controller} hierarchy"))
                .join(rel.trim_start_matches('/'))
                .join(file),
        }
    }

    pub fn read_cgroup(&self, controller: &str, name: &str, file: &str) -> String {
        let p = self.cgroup_file(controller, name, file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    pub fn delete(&self, name: &str) {
        self.rt()
            .delete(&self.id(name))
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }
}

impl Drop for RuntimeEnv {
    fn drop(&mut self) {
        if self.runtime.is_none() {
            self.runtime = Some(Self::open_runtime(self.dir.path()));
        }
        let ids: Vec<String> = self.created.lock().map(|v| v.clone()).unwrap_or_default();
        for id in ids {
            if let Err(e) = self.rt().delete(&id) {
                eprintln!("[harness] deleting container {id}: {e}");
            }
        }
        if let Ok(layout) = CgroupLayout::detect() {
            if let Err(e) = layout.remove(&self.cgroup_parent) {
                eprintln!("[harness] removing cgroup {}: {e}", self.cgroup_parent);
            }
        }
        // The shared parent goes with the last environment: rmdir of a cgroup fails while it
        // has children, so this never touches another test's cgroups.
        for hierarchy in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(hierarchy.path().join(CGROUP_ROOT.trim_start_matches('/')));
        }
        let _ =
            fs::remove_dir(Path::new("/sys/fs/cgroup").join(CGROUP_ROOT.trim_start_matches('/')));
        unmount_under(self.dir.path());
    }
}

/// Mount points under `dir` in this mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        eprintln!("[harness] unmounting leftover {}", m.display());
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
}

/// Cleans what crashed test processes left: overlay mounts under their temp dirs (before the
/// shared reaper removes the dirs through them), their shims and containers, and their
/// cgroups under /skiff-test.
pub fn reap_stale_runtime_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !is_root() {
            return;
        }
        let dead = |owner: &str| -> bool {
            owner.parse::<u32>().is_ok_and(|p| {
                p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists()
            })
        };
        let tmp = std::env::temp_dir();
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(owner) = name
                    .strip_prefix("skiff-test-")
                    .and_then(|r| r.split('-').next())
                else {
                    continue;
                };
                if !dead(owner) {
                    continue;
                }
                let run = e.path().join("run");
                if run.exists() {
                    if let Ok(rt) = Runtime::new(
                        RuntimeDirs::new(&run, &e.path().join("data")),
                        PathBuf::from("/bin/false"),
                    ) {
                        for id in rt.list().unwrap_or_default() {
                            let _ = rt.delete(&id);
                        }
                    }
                }
                unmount_under(&e.path());
            }
        }
        if let Ok(layout) = CgroupLayout::detect() {
            for dir in layout.dirs(CGROUP_ROOT) {
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(owner) = name.strip_prefix('t').and_then(|r| r.split('-').next()) {
                        if dead(owner) {
                            let _ = layout.remove(&format!("{CGROUP_ROOT}/{name}"));
                        }
                    }
                }
            }
        }
    });
}

/// Major and minor numbers of a `st_dev`.
pub fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}
