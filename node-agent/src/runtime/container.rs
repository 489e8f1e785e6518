//! The agent's side of the runtime: create and start containers through the shim, and query,
//! signal, wait for and delete them. Everything is on disk (see [`super::layout`]), so a
//! restarted agent finds its containers with [`Runtime::list`] and carries on.
//!
//! These calls block (file I/O, libcontainer's load/kill/delete, waiting for the shim); async
//! callers run them in `spawn_blocking`. None of them forks in-process: creation is the shim's
//! job, and libcontainer's load, state, kill and delete do not clone.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::signal::Signal;

use super::cgroup::CgroupLayout;
use super::cri_log::LogRotation;
use super::exec::{self, ExecProcess, ExecRequest};
use super::exit::ExitStatus;
use super::layout::{valid_id, ContainerPaths, RuntimeDirs};
use super::rootfs::{self, Overlay, RootfsError};
use super::shim::{ShimArgs, ShimConfig};
use super::sys;
use super::trash::Trash;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The id cannot name a container.
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    /// A container with this id already exists.
    #[error("container {0} already exists")]
    Exists(String),
    /// No container with this id.
    #[error("container {0} not found")]
    NotFound(String),
    /// The spec has no `linux.cgroupsPath`, or a relative one.
    #[error("the spec needs an absolute linux.cgroupsPath")]
    NoCgroupPath,
    /// The root filesystem could not be set up or removed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// A file operation failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The shim could not be spawned.
    #[error("spawning shim {path:?}: {source}")]
    Spawn {
        /// The shim binary.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The shim reported that creating or starting the container failed.
    #[error("container {id}: {message}{}", log_suffix(.shim_log))]
    StartFailed {
        /// Container id.
        id: String,
        /// The shim's message.
        message: String,
        /// The end of the shim's log (libcontainer's errors).
        shim_log: String,
    },
    /// The shim did not report within the start timeout.
    #[error("container {0}: the shim did not report within {1:?}")]
    StartTimeout(String, Duration),
    /// The container did not exit within the wait timeout.
    #[error("container {0} still running after {1:?}")]
    WaitTimeout(String, Duration),
    /// The shim is gone without recording an exit status.
    #[error("container {0}: shim exited without recording an exit status")]
    ShimGone(String),
    /// The signal number is not valid.
    #[error("invalid signal {0}")]
    BadSignal(i32),
    /// The container has exited, so nothing can be run in it.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// A command could not be started in the container (runc's wording, which the kubelet
    /// shows, e.g. `exec: "x": executable file not found in $PATH`).
    #[error("OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown")]
    ExecStart {
        /// Container id.
        id: String,
        /// Why.
        message: String,
        /// The exit code a shell would give: 127 not found, 126 not runnable.
        exit_code: i32,
    },
    /// A captured command did not finish in time and was killed.
    #[error("command in container {0} timed out after {1:?}")]
    ExecTimeout(String, Duration),
    /// libcontainer failed.
    #[error("container {id}: {op}: {message}")]
    Libcontainer {
        /// Container id.
        id: String,
        /// Which call.
        op: &'static str,
        /// The error chain.
        message: String,
    },
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("\nshim log:\n{log}")
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io { op, path, source }
}

fn lc_err(
    id: &str,
    op: &'static str,
) -> impl FnOnce(libcontainer::error::LibcontainerError) -> RuntimeError {
    let id = id.to_string();
    move |e| {
        let mut message = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cur = c.source();
        }
        RuntimeError::Libcontainer { id, op, message }
    }
}

/// What to create.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// Container id (`[A-Za-z0-9_.-]`, at most 128 characters).
    pub id: String,
    /// The runtime spec (see [`super::spec::build`]); its root is set to the bundle's
    /// `rootfs`, and it must carry an absolute `linux.cgroupsPath`.
    pub spec: Spec,
    /// Image layer directories, bottom (base) first.
    pub layers: Vec<PathBuf>,
    /// The CRI log file, `<log_dir>/<n>.log`.
    pub log_path: PathBuf,
    /// Log rotation.
    pub log_rotation: LogRotation,
}

/// A started container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerHandle {
    /// Container id.
    pub id: String,
    /// The container's init process, as seen from the host.
    pub pid: i32,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The CRI log file.
    pub log_path: PathBuf,
}

/// A container's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created, init not yet started.
    Created,
    /// The init process runs.
    Running,
    /// Frozen.
    Paused,
    /// Exited (or never started).
    Stopped,
    /// Bundle present but no libcontainer state (creation failed part-way).
    Unknown,
}

/// What [`Runtime::state`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Lifecycle state.
    pub status: Status,
    /// Init pid while it runs.
    pub pid: Option<i32>,
    /// How it ended, once it has.
    pub exit: Option<ExitStatus>,
    /// Its cgroup path.
    pub cgroup_path: Option<String>,
    /// The CRI log file.
    pub log_path: Option<PathBuf>,
}

/// Creates and manages containers under one set of directories, through one shim binary.
#[derive(Debug)]
pub struct Runtime {
    dirs: RuntimeDirs,
    shim: PathBuf,
    cgroups: CgroupLayout,
    start_timeout: Duration,
    trash: Trash,
}

/// How long [`Runtime::create_and_start`] waits for the shim by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// A runtime over `dirs` using `shim_binary` (the `skiff` binary; it is run as
    /// `skiff shim ...`). Creates the directories.
    pub fn new(dirs: RuntimeDirs, shim_binary: PathBuf) -> Result<Self, RuntimeError> {
        for d in [&dirs.state, &dirs.bundles, &dirs.rw, &dirs.trash] {
            std::fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let cgroups =
            CgroupLayout::detect().map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
        let trash =
            Trash::new(&dirs.trash).map_err(io_err("start trash worker in", &dirs.trash))?;
        Ok(Runtime {
            dirs,
            shim: shim_binary,
            cgroups,
            start_timeout: DEFAULT_START_TIMEOUT,
            trash,
        })
    }

    /// Changes how long creation waits for the shim to report.
    pub fn with_start_timeout(mut self, t: Duration) -> Self {
        self.start_timeout = t;
        self
    }

    /// The directories in use.
    pub fn dirs(&self) -> &RuntimeDirs {
        &self.dirs
    }

    /// True when deleted containers' writable layers have all been removed from disk.
    pub fn trash_is_empty(&self) -> bool {
        self.trash.is_empty()
    }

    /// The cgroup layout detected at start.
    pub fn cgroups(&self) -> &CgroupLayout {
        &self.cgroups
    }

    fn paths(&self, id: &str) -> Result<ContainerPaths, RuntimeError> {
        if !valid_id(id) {
            return Err(RuntimeError::InvalidId(id.to_string()));
        }
        Ok(self.dirs.container(id))
    }

    /// Writes the bundle, mounts the root filesystem, spawns the shim and waits until the
    /// container runs or the shim reports why it could not. On failure everything created is
    /// removed again.
    pub fn create_and_start(&self, req: CreateRequest) -> Result<ContainerHandle, RuntimeError> {
        let span = tracing::info_span!("create", container = %req.id);
        let _enter = span.enter();
        let paths = self.paths(&req.id)?;
        let cgroup_path = req
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .filter(|p| p.is_absolute())
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or(RuntimeError::NoCgroupPath)?;
        match std::fs::create_dir(&paths.bundle.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::Exists(req.id))
            }
            Err(e) => return Err(io_err("create", &paths.bundle.dir)(e)),
        }
        match self.setup_and_spawn(&req, &paths, cgroup_path) {
            Ok(h) => Ok(h),
            Err(e) => {
                if let Err(c) = self.delete(&req.id) {
                    tracing::warn!("cleaning up after failed create: {c}");
                }
                Err(e)
            }
        }
    }

    fn setup_and_spawn(
        &self,
        req: &CreateRequest,
        paths: &ContainerPaths,
        cgroup_path: String,
    ) -> Result<ContainerHandle, RuntimeError> {
        let bundle = &paths.bundle;
        write_config(&bundle.dir, &req.spec)?;
        let shim_cfg = ShimConfig {
            id: req.id.clone(),
            state_root: self.dirs.state.clone(),
            log_path: req.log_path.clone(),
            log_rotation: req.log_rotation,
            cgroup_path,
            terminal: req
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false),
        };
        let shim_json = serde_json::to_vec(&shim_cfg)
            .map_err(|e| io_err("encode", &bundle.shim_config())(io::Error::other(e)))?;
        std::fs::write(bundle.shim_config(), shim_json)
            .map_err(io_err("write", &bundle.shim_config()))?;

        Overlay {
            layers: req.layers.clone(),
            upper: paths.upper(),
            work: paths.work(),
            target: bundle.rootfs(),
        }
        .mount()?;

        let message = self.spawn_shim(&req.id, &bundle.dir)?;
        match message
            .strip_prefix("ok ")
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            Some(pid) => {
                tracing::info!(pid, "container running");
                Ok(ContainerHandle {
                    id: req.id.clone(),
                    pid,
                    bundle: bundle.dir.clone(),
                    log_path: req.log_path.clone(),
                })
            }
            None => Err(RuntimeError::StartFailed {
                id: req.id.clone(),
                message: message
                    .strip_prefix("error ")
                    .unwrap_or(&message)
                    .trim()
                    .to_string(),
                shim_log: tail(&bundle.shim_log(), 4096),
            }),
        }
    }

    /// Spawns `skiff shim` and returns the line it reports on the ready pipe (empty if it
    /// closed the pipe without a word).
    fn spawn_shim(&self, id: &str, bundle: &Path) -> Result<String, RuntimeError> {
        let (ready_r, ready_w) = sys::pipe_cloexec().map_err(io_err("pipe", bundle))?;
        // The ready pipe becomes the shim's stdout: std then spawns with posix_spawn (no
        // pre-exec hook, no fork of this large multi-threaded process), and no other child
        // can inherit the pipe.
        let args = ShimArgs {
            bundle: bundle.to_path_buf(),
            ready_fd: 1,
        };
        let mut cmd = Command::new(&self.shim);
        cmd.args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(ready_w))
            .stderr(Stdio::null())
            .current_dir("/");
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            path: self.shim.clone(),
            source,
        })?;
        // The command holds our copy of the write end; close it so a dead shim reads as EOF.
        drop(cmd);
        // The spawned process forks the real shim and exits at once.
        let _ = child.wait();

        let mut ready = File::from(ready_r);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if !sys::wait_readable(ready.as_fd(), self.start_timeout)
                .map_err(io_err("poll", bundle))?
            {
                return Err(RuntimeError::StartTimeout(
                    id.to_string(),
                    self.start_timeout,
                ));
            }
            match ready.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.contains(&b'\n') || out.len() > 64 * 1024 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read ready pipe", bundle)(e)),
            }
        }
        let line = String::from_utf8_lossy(&out);
        Ok(line
            .lines()
            .next()
            .unwrap_or("error the shim exited without reporting")
            .to_string())
    }

    fn shim_config(&self, paths: &ContainerPaths) -> Option<ShimConfig> {
        let b = std::fs::read(paths.bundle.shim_config()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The container's state from disk: the exit record if there is one, else libcontainer's.
    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let paths = self.paths(id)?;
        if !paths.bundle.dir.exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        let cfg = self.shim_config(&paths);
        let mut st = ContainerState {
            id: id.to_string(),
            status: Status::Unknown,
            pid: None,
            exit: None,
            cgroup_path: cfg.as_ref().map(|c| c.cgroup_path.clone()),
            log_path: cfg.map(|c| c.log_path),
        };
        st.exit =
            ExitStatus::read(&paths.bundle.exit()).map_err(io_err("read", &paths.bundle.exit()))?;
        if st.exit.is_some() {
            st.status = Status::Stopped;
            return Ok(st);
        }
        if let Ok(c) = Container::load(paths.state_dir.clone()) {
            st.status = match c.status() {
                ContainerStatus::Creating => Status::Unknown,
                ContainerStatus::Created => Status::Created,
                ContainerStatus::Running => Status::Running,
                ContainerStatus::Paused => Status::Paused,
                ContainerStatus::Stopped => Status::Stopped,
            };
            if matches!(
                st.status,
                Status::Running | Status::Created | Status::Paused
            ) {
                st.pid = c.pid().map(|p| p.as_raw());
            }
        }
        Ok(st)
    }

    /// The exit record, once the container has exited.
    pub fn exit_status(&self, id: &str) -> Result<Option<ExitStatus>, RuntimeError> {
        let paths = self.paths(id)?;
        ExitStatus::read(&paths.bundle.exit()).map_err(io_err("read", &paths.bundle.exit()))
    }

    /// Sends `signal` to the container's init. A container that has already exited is left
    /// alone (its pid may belong to someone else by now).
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let span = tracing::info_span!("kill", container = %id, signal);
        let _enter = span.enter();
        let paths = self.paths(id)?;
        if paths.bundle.exit().exists() {
            return Ok(());
        }
        let sig = Signal::try_from(signal).map_err(|_| RuntimeError::BadSignal(signal))?;
        let mut c = Container::load(paths.state_dir.clone())
            .map_err(|_| RuntimeError::NotFound(id.to_string()))?;
        if c.status() == ContainerStatus::Stopped {
            return Ok(());
        }
        c.kill(sig, false).map_err(lc_err(id, "kill"))
    }

    /// Waits until the container has exited and its shim has recorded how, up to `timeout`.
    /// Waits on the shim's pidfd: no polling.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<ExitStatus, RuntimeError> {
        let span = tracing::debug_span!("wait", container = %id);
        let _enter = span.enter();
        let paths = self.paths(id)?;
        if let Some(e) = self.exit_status(id)? {
            return Ok(e);
        }
        if let Some(pidfd) = self.shim_pidfd(&paths) {
            if !sys::wait_readable(pidfd.as_fd(), timeout)
                .map_err(io_err("poll", &paths.bundle.dir))?
            {
                return Err(RuntimeError::WaitTimeout(id.to_string(), timeout));
            }
        }
        self.exit_status(id)?
            .ok_or_else(|| RuntimeError::ShimGone(id.to_string()))
    }

    /// A pidfd for the container's shim if it still runs (checked against its command line,
    /// so a reused pid is not mistaken for it).
    fn shim_pidfd(&self, paths: &ContainerPaths) -> Option<std::os::fd::OwnedFd> {
        let pid: i32 = std::fs::read_to_string(paths.bundle.shim_pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let fd = sys::pidfd_open(pid).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let bundle = paths.bundle.dir.as_os_str().as_encoded_bytes();
        cmdline
            .split(|b| *b == 0)
            .any(|a| a == bundle)
            .then_some(fd)
    }

    /// Kills the container if it still runs, waits for its shim, then removes libcontainer's
    /// state, the cgroup, the root filesystem mount and every directory. Deleting a container
    /// that is not there is not an error.
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let span = tracing::info_span!("delete", container = %id);
        let _enter = span.enter();
        let paths = self.paths(id)?;
        let cfg = self.shim_config(&paths);
        let mut first_err: Option<RuntimeError> = None;

        let loaded = Container::load(paths.state_dir.clone()).ok();
        if let Some(mut c) = loaded {
            if paths.bundle.exit().exists() {
                // The shim has reaped the init; make sure libcontainer does not signal a
                // recycled pid.
                c.set_status(ContainerStatus::Stopped);
            } else if c.status() != ContainerStatus::Stopped {
                if let Err(e) = c.kill(
                    Signal::try_from(libc::SIGKILL).map_err(|_| RuntimeError::BadSignal(9))?,
                    true,
                ) {
                    tracing::warn!("kill before delete: {e}");
                }
            }
            // Let the shim record the exit (it has nothing left to do once it has).
            if !paths.bundle.exit().exists() {
                if let Some(pidfd) = self.shim_pidfd(&paths) {
                    let _ = sys::wait_readable(pidfd.as_fd(), Duration::from_secs(10));
                }
            }
            if let Err(e) = c.delete(true) {
                first_err.get_or_insert(lc_err(id, "delete")(e));
            }
        }
        // Whatever libcontainer left (or never got to): its state dir and the cgroup.
        if let Err(e) = rootfs::remove_dir(&paths.state_dir) {
            first_err.get_or_insert(e.into());
        }
        if let Some(cfg) = &cfg {
            if let Err(e) = self.cgroups.remove(&cfg.cgroup_path) {
                first_err.get_or_insert(RuntimeError::Io {
                    op: "remove cgroup",
                    path: cfg.cgroup_path.clone().into(),
                    source: e,
                });
            }
        }
        let rootfs = paths.bundle.rootfs();
        if let Err(e) = rootfs::unmount(&rootfs).and_then(|()| rootfs::remove_dir(&rootfs)) {
            first_err.get_or_insert(e.into());
        }
        if let Err(e) = self.trash.discard(&paths.rw_dir) {
            first_err.get_or_insert(io_err("remove", &paths.rw_dir)(e));
        }
        if let Err(e) = rootfs::remove_dir(&paths.bundle.dir) {
            first_err.get_or_insert(e.into());
        }
        match first_err {
            // libcontainer's complaints are moot if everything is gone anyway.
            Some(RuntimeError::Libcontainer { .. })
                if !paths.state_dir.exists() && !paths.bundle.dir.exists() =>
            {
                Ok(())
            }
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs a command in a running container through the exec helper (`skiff shim exec`),
    /// with pipes or a terminal; returns once the command runs. Blocks: async callers use
    /// `spawn_blocking`.
    pub fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecProcess, RuntimeError> {
        let mode = if req.tty {
            exec::Stdio3::Tty
        } else {
            exec::Stdio3::Pipes { stdin: req.stdin }
        };
        self.exec_with(id, req, mode)
    }

    /// Runs a command to completion for an exec probe or a hook: its exit code and its
    /// stdout and stderr together, the first [`exec::CAPTURE_LIMIT`] bytes. Killed (and an
    /// error) when it runs longer than `timeout`.
    pub fn exec_capture(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), RuntimeError> {
        let req = ExecRequest {
            argv: argv.to_vec(),
            ..Default::default()
        };
        let proc = self.exec_with(id, &req, exec::Stdio3::Combined)?;
        exec::capture(proc, timeout).map_err(|e| match e {
            None => RuntimeError::ExecTimeout(id.to_string(), timeout),
            Some(source) => RuntimeError::Io {
                op: "read exec output",
                path: self.dirs.state.join(id),
                source,
            },
        })
    }

    fn exec_with(
        &self,
        id: &str,
        req: &ExecRequest,
        mode: exec::Stdio3,
    ) -> Result<ExecProcess, RuntimeError> {
        let span = tracing::debug_span!("exec", container = %id);
        let _enter = span.enter();
        let paths = self.paths(id)?;
        if !paths.bundle.dir.exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        if paths.bundle.exit().exists() {
            return Err(RuntimeError::NotRunning(id.to_string()));
        }
        let cx = exec::SpawnContext {
            shim: &self.shim,
            state_root: &self.dirs.state,
            bundle: &paths.bundle.dir,
            id,
            start_timeout: self.start_timeout,
        };
        exec::spawn(&cx, req, mode)
    }

    /// The ids of every container on disk, for re-adoption after an agent restart.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let entries =
            std::fs::read_dir(&self.dirs.bundles).map_err(io_err("list", &self.dirs.bundles))?;
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| valid_id(id))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// A pidfd that becomes readable once the container's shim has exited (after recording
    /// the container's exit), so async callers can wait without a thread each; `None` when
    /// the shim is already gone.
    pub fn exit_fd(&self, id: &str) -> Result<Option<std::os::fd::OwnedFd>, RuntimeError> {
        let paths = self.paths(id)?;
        Ok(self.shim_pidfd(&paths))
    }

    /// The annotations of the container's spec: what the caller recorded about the container
    /// when it made it (an agent restart reads them back).
    pub fn annotations(
        &self,
        id: &str,
    ) -> Result<std::collections::HashMap<String, String>, RuntimeError> {
        let paths = self.paths(id)?;
        let path = paths.bundle.config();
        let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
        #[derive(serde::Deserialize)]
        struct Annotated {
            #[serde(default)]
            annotations: Option<std::collections::HashMap<String, String>>,
        }
        let spec: Annotated = serde_json::from_slice(&bytes)
            .map_err(|e| io_err("parse", &path)(io::Error::other(e)))?;
        Ok(spec.annotations.unwrap_or_default())
    }

    /// When the container was started (its shim reported it running).
    pub fn started_at(&self, id: &str) -> Result<Option<std::time::SystemTime>, RuntimeError> {
        let paths = self.paths(id)?;
        Ok(std::fs::metadata(paths.bundle.shim_pid())
            .and_then(|m| m.modified())
            .ok())
    }
}

/// Writes `<bundle>/config.json` for `spec` with its root set to the bundle's `rootfs`
/// directory: the file `crun run --bundle` or any OCI runtime accepts as well.
pub fn write_config(bundle: &Path, spec: &Spec) -> Result<(), RuntimeError> {
    let mut spec = spec.clone();
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    spec.set_root(Some(root));
    let path = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| io_err("encode", &path)(io::Error::other(e)))?;
    std::fs::write(&path, json).map_err(io_err("write", &path))
}

/// The last `max` bytes of a file, for error messages.
fn tail(path: &Path, max: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = Vec::new();
    let _ = f.take(max).read_to_end(&mut s);
    String::from_utf8_lossy(&s).trim_end().to_string()
}
