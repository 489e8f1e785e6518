//! The per-container shim (`skiff shim --bundle DIR --ready-fd N`), in the style of conmon.
//!
//! libcontainer's `build()` clones and runs Rust code in the child, which is only safe in a
//! single-threaded process, and the container's exit status can only be collected by its
//! parent. So the agent never creates containers itself: it spawns its own binary in shim mode.
//! The shim
//!
//! 1. forks once and lets the spawned process exit, so the agent can reap it and the shim
//!    outlives the agent; calls `setsid` and becomes a child subreaper (the container's init is
//!    re-parented to it when libcontainer's intermediate process exits);
//! 2. while still single-threaded, creates and starts the container with libcontainer, its
//!    stdout and stderr on pipes;
//! 3. tells the agent `ok <pid>` or `error <message>` on the ready pipe;
//! 4. copies the pipes into the CRI log, waits for the init, and writes `exit.json` (exit code,
//!    signal, OOMKilled from the cgroup's OOM-kill counter).
//!
//! The shim's own stderr and libcontainer's `tracing` output go to `shim.log` in the bundle, so
//! init failures are visible there. Nothing here may start a thread or an async runtime before
//! `build()` returns.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{dup2, fork, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::cgroup::CgroupLayout;
use super::cri_log::{CriLogWriter, LineSplitter, LogRotation, Stream};
use super::exit::ExitStatus;
use super::layout::BundleFiles;
use super::sys;

/// The subcommand name the agent passes to its own binary.
pub const SUBCOMMAND: &str = "shim";

/// How long the shim keeps copying output after the init exits (for writers that inherited
/// the pipes outside the container's pid namespace).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What the shim needs besides the bundle; written by the agent to `shim.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Container id.
    pub id: String,
    /// libcontainer's state root.
    pub state_root: PathBuf,
    /// The CRI log file (`<log_dir>/<n>.log`).
    pub log_path: PathBuf,
    /// Log rotation.
    pub log_rotation: LogRotation,
    /// The container's cgroup path, for OOM detection.
    pub cgroup_path: String,
    /// The container has a terminal (`process.terminal`): its output comes from the pty
    /// master libcontainer sends over a console socket, as one stream logged as stdout.
    #[serde(default)]
    pub terminal: bool,
}

/// The shim's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The inherited write end of the agent's ready pipe (may be 1: stdout).
    pub ready_fd: RawFd,
}

impl ShimArgs {
    /// The arguments after the binary name: `shim --bundle DIR --ready-fd N`.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            SUBCOMMAND.into(),
            "--bundle".into(),
            self.bundle.clone().into_os_string(),
            "--ready-fd".into(),
            self.ready_fd.to_string().into(),
        ]
    }

    /// Parses the arguments that follow `shim`.
    pub fn parse(args: &[OsString]) -> Result<Self, String> {
        let mut bundle = None;
        let mut ready_fd = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let val = it.next().ok_or_else(|| format!("{a:?} needs a value"))?;
            match a.to_str() {
                Some("--bundle") => bundle = Some(PathBuf::from(val)),
                Some("--ready-fd") => {
                    ready_fd = Some(
                        val.to_str()
                            .and_then(|v| v.parse().ok())
                            .ok_or("bad --ready-fd")?,
                    )
                }
                _ => return Err(format!("unknown argument {a:?}")),
            }
        }
        Ok(ShimArgs {
            bundle: bundle.ok_or("--bundle is required")?,
            ready_fd: ready_fd.ok_or("--ready-fd is required")?,
        })
    }
}

/// Entry point of `skiff shim ...`; returns the process exit code. Must be called before any
/// other thread exists (no tokio runtime, no tracing thread).
/// `skiff shim exec ...` runs the exec helper instead (see [`super::exec`]).
pub fn main(args: &[OsString]) -> i32 {
    if args.first().is_some_and(|a| a == super::exec::EXEC_MODE) {
        return super::exec::main(&args[1..]);
    }
    let args = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff shim: {e}");
            return 2;
        }
    };
    if !sys::fd_is_open(args.ready_fd) {
        eprintln!(
            "skiff shim: --ready-fd {} is not an open descriptor",
            args.ready_fd
        );
        return 2;
    }
    // The agent may pass the pipe as stdout (so it can spawn without a pre-exec hook); move
    // it above stdio, close-on-exec, before stdio is pointed at the shim log.
    let ready = match sys::dup_cloexec_above_stdio(args.ready_fd) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("skiff shim: duplicating --ready-fd {}: {e}", args.ready_fd);
            return 2;
        }
    };
    if args.ready_fd > 2 {
        // SAFETY: the agent passed this descriptor to us alone and it has just been duplicated;
        // nothing else in this process refers to the original number.
        drop(unsafe { OwnedFd::from_raw_fd(args.ready_fd) });
    }

    // Detach from the agent: the spawned process exits at once (the agent reaps it) and the
    // child carries on in its own session.
    // SAFETY: this process is single-threaded here, so the child may run arbitrary code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: _exit skips atexit handlers and destructors, which is what a forked
            // parent that hands over to its child wants.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(&ready, &format!("error fork: {e}"));
            return 1;
        }
    }
    let _ = setsid();
    let bundle = BundleFiles::new(args.bundle.clone());
    if let Err(e) = redirect_stdio(&bundle.shim_log()) {
        report(&ready, &format!("error cannot open shim log: {e}"));
        return 1;
    }
    init_tracing(&bundle.shim_log());
    let code = match run(&bundle, ready) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    };
    let _ = io::stderr().flush();
    code
}

fn report(ready: &OwnedFd, msg: &str) {
    let mut line = msg.replace('\n', " ");
    line.push('\n');
    // The agent may be gone; a failed write is not an error for the shim.
    let _ = nix::unistd::write(ready.as_fd(), line.as_bytes());
}

/// stdin from /dev/null; stdout and stderr into the shim log, so panics land there too.
fn redirect_stdio(log: &Path) -> io::Result<()> {
    let null = File::open("/dev/null")?;
    let log = OpenOptions::new().create(true).append(true).open(log)?;
    dup2(null.as_raw_fd(), 0).map_err(io::Error::from)?;
    dup2(log.as_raw_fd(), 1).map_err(io::Error::from)?;
    dup2(log.as_raw_fd(), 2).map_err(io::Error::from)?;
    Ok(())
}

/// `tracing` to the shim log. `SKIFF_SHIM_LOG` sets an env-filter; without it a
/// fixed filter (info, libcgroups' per-controller "not supported" warnings muted) avoids
/// compiling filter regexes on every container start.
///
/// The writer is a descriptor of its own, not stderr: libcontainer also logs from the
/// container's init after pointing its stdio at the container's pipes, and those lines
/// belong in the shim log, not in the container's output.
fn init_tracing(log: &Path) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let writer = match OpenOptions::new().create(true).append(true).open(log) {
        Ok(f) => std::sync::Mutex::new(Box::new(f) as Box<dyn Write + Send>),
        Err(_) => std::sync::Mutex::new(Box::new(io::stderr()) as Box<dyn Write + Send>),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer);
    let _ = match std::env::var("SKIFF_SHIM_LOG") {
        Ok(f) => tracing_subscriber::registry()
            .with(fmt)
            .with(tracing_subscriber::EnvFilter::new(f))
            .try_init(),
        Err(_) => tracing_subscriber::registry()
            .with(fmt)
            .with(
                tracing_subscriber::filter::Targets::new()
                    .with_default(tracing::Level::INFO)
                    .with_target("libcgroups", tracing::Level::ERROR),
            )
            .try_init(),
    };
}

/// Errors the shim reports before giving up.
#[derive(Debug, thiserror::Error)]
enum ShimError {
    #[error("reading {path:?}: {source}")]
    Config { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Setup(String),
    #[error("create: {0}")]
    Create(String),
    #[error("start: {0}")]
    Start(String),
}

/// libcontainer's errors carry their causes as sources; show the whole chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn run(bundle: &BundleFiles, ready: OwnedFd) -> Result<(), ShimError> {
    let cfg_path = bundle.shim_config();
    let cfg: ShimConfig = std::fs::read(&cfg_path)
        .and_then(|b| serde_json::from_slice(&b).map_err(io::Error::other))
        .map_err(|source| ShimError::Config {
            path: cfg_path.clone(),
            source,
        })?;
    let span = tracing::info_span!("shim", container = %cfg.id);
    let _enter = span.enter();

    let result = create_and_start(bundle, &cfg);
    let (pid, pumps, mut log) = match result {
        Ok(v) => v,
        Err(e) => {
            report(&ready, &format!("error {e}"));
            return Err(e);
        }
    };
    if let Err(e) = std::fs::write(bundle.shim_pid(), std::process::id().to_string()) {
        tracing::warn!("cannot write shim pid: {e}");
    }
    report(&ready, &format!("ok {pid}"));
    drop(ready);
    tracing::info!(pid, "container started");

    let status = supervise(pid, pumps, &mut log);
    let oom_kills = CgroupLayout::detect()
        .ok()
        .and_then(|l| l.oom_kills(&cfg.cgroup_path))
        .unwrap_or(0);
    let (code, sig) = match status {
        Some(WaitStatus::Exited(_, c)) => (Some(c), None),
        Some(WaitStatus::Signaled(_, s, _)) => (None, Some(s as i32)),
        _ => (None, None),
    };
    let exit = ExitStatus::new(code, sig, oom_kills, SystemTime::now());
    tracing::info!(exit_code = exit.exit_code, reason = ?exit.reason, "container exited");
    exit.write(&bundle.exit())
        .map_err(|e| ShimError::Setup(format!("writing {:?}: {e}", bundle.exit())))
}

type Started = (i32, Vec<Pump>, CriLogWriter);

/// How long the shim waits for a terminal container's pty master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(5);

fn create_and_start(bundle: &BundleFiles, cfg: &ShimConfig) -> Result<Started, ShimError> {
    // PR_SET_CHILD_SUBREAPER: the init becomes our child once libcontainer's intermediate
    // process exits, so we can wait for it.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(ShimError::Setup(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            io::Error::last_os_error()
        )));
    }
    let log = CriLogWriter::open(&cfg.log_path, cfg.log_rotation)
        .map_err(|e| ShimError::Setup(format!("opening log {:?}: {e}", cfg.log_path)))?;
    let pipe_err = |e: io::Error| ShimError::Setup(format!("pipe: {e}"));
    // A terminal container's stdio is the pty libcontainer makes; its master arrives on the
    // console socket, queued by the kernel until this single thread accepts it after build().
    let (pipes, console) = if cfg.terminal {
        let console = super::exec::ConsoleListener::bind(&bundle.dir)
            .map_err(|e| ShimError::Setup(format!("console socket: {e}")))?;
        (None, Some(console))
    } else {
        let (out_r, out_w) = sys::pipe_cloexec().map_err(pipe_err)?;
        let (err_r, err_w) = sys::pipe_cloexec().map_err(pipe_err)?;
        (Some((out_r, out_w, err_r, err_w)), None)
    };
    let null = File::open("/dev/null").map_err(|e| ShimError::Setup(format!("/dev/null: {e}")))?;

    // Rust ignores SIGPIPE at start-up, and ignored signals survive exec: give the container
    // the default disposition, then ignore it again for ourselves (the agent may close the
    // ready pipe at any time).
    // SAFETY: setting a signal disposition to SIG_DFL/SIG_IGN installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let (mut readers, writers) = match pipes {
        Some((out_r, out_w, err_r, err_w)) => (
            vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)],
            Some((out_w, err_w)),
        ),
        None => (Vec::new(), None),
    };
    let built = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(&cfg.state_root)
        .map(|b| {
            let b = b.with_stdin(OwnedFd::from(null));
            let b = match writers {
                Some((out_w, err_w)) => b.with_stdout(out_w).with_stderr(err_w),
                None => b.with_console_socket(console.as_ref().map(|c| c.path.as_path())),
            };
            b.as_init(&bundle.dir).with_systemd(false).with_detach(true)
        })
        .and_then(|b| b.build());
    // SAFETY: as above.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
    let mut container: Container = built.map_err(|e| ShimError::Create(chain(&e)))?;
    let pid = container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| ShimError::Create("libcontainer recorded no init pid".into()))?;
    let kill_init = |msg: String| {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        msg
    };
    if let Some(console) = &console {
        let master = console
            .receive_master(CONSOLE_TIMEOUT)
            .map_err(|e| ShimError::Create(kill_init(format!("receiving the terminal: {e}"))))?;
        readers.push((master, Stream::Stdout));
    }
    if let Err(e) = container.start() {
        return Err(ShimError::Start(kill_init(chain(&e))));
    }
    let pumps = readers
        .into_iter()
        .map(|(fd, stream)| Pump::new(fd, stream))
        .collect();
    Ok((pid, pumps, log))
}

/// One output pipe being copied into the log.
struct Pump {
    file: File,
    stream: Stream,
    lines: LineSplitter,
    open: bool,
}

impl Pump {
    fn new(fd: OwnedFd, stream: Stream) -> Self {
        let _ = sys::set_nonblocking(fd.as_fd());
        Pump {
            file: File::from(fd),
            stream,
            lines: LineSplitter::default(),
            open: true,
        }
    }

    /// Reads what is available; marks the pump closed at EOF.
    fn drain(&mut self, log: &mut CriLogWriter) {
        let mut buf = [0u8; 32 * 1024];
        while self.open {
            match self.file.read(&mut buf) {
                Ok(0) => {
                    self.open = false;
                    let stream = self.stream;
                    let _ = self.lines.finish(|m, p| log.write_record(stream, p, m));
                }
                Ok(n) => {
                    let stream = self.stream;
                    if let Err(e) = self
                        .lines
                        .push(&buf[..n], |m, p| log.write_record(stream, p, m))
                    {
                        tracing::warn!("writing container log: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pty master reads EIO once every slave descriptor is closed: its end.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => self.open = false,
                Err(e) => {
                    tracing::warn!("reading container {:?}: {e}", self.stream);
                    self.open = false;
                }
            }
        }
    }
}

/// Copies output until the init has exited and both pipes are closed (or the drain deadline
/// passes); returns the init's wait status.
fn supervise(pid: i32, mut pumps: Vec<Pump>, log: &mut CriLogWriter) -> Option<WaitStatus> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!("pidfd_open({pid}): {e}; relying on the pipes closing");
            None
        }
    };
    let mut status: Option<WaitStatus> = None;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        reap(pid, &mut status);
        if status.is_some() && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + DRAIN_AFTER_EXIT);
        }
        let any_open = pumps.iter().any(|p| p.open);
        if status.is_some() && (!any_open || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        if status.is_none() && !any_open && pidfd.is_none() {
            // Nothing to poll: block in waitpid.
            if let Ok(s) = waitpid(Pid::from_raw(pid), None) {
                status = Some(s);
            }
            continue;
        }
        let timeout = match drain_deadline {
            Some(d) => PollTimeout::from(
                u16::try_from(
                    d.saturating_duration_since(Instant::now())
                        .as_millis()
                        .min(60_000),
                )
                .unwrap_or(60_000),
            ),
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        let mut which: Vec<usize> = Vec::with_capacity(2);
        for (i, p) in pumps.iter().enumerate() {
            if p.open {
                fds.push(PollFd::new(p.file.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if status.is_none() {
            if let Some(fd) = &pidfd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("poll: {e}");
            }
        }
        let ready: Vec<usize> = which
            .iter()
            .zip(fds.iter())
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| *i)
            .collect();
        drop(fds);
        for i in ready {
            pumps[i].drain(log);
        }
    }
    for p in pumps.iter_mut() {
        if p.open {
            p.drain(log);
            let stream = p.stream;
            let _ = p
                .lines
                .finish(|m, partial| log.write_record(stream, partial, m));
        }
    }
    status
}

/// Reaps every exited child (we are a subreaper); records the init's status.
fn reap(pid: i32, status: &mut Option<WaitStatus>) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(s) => {
                if s.pid() == Some(Pid::from_raw(pid))
                    && matches!(s, WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                {
                    *status = Some(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            bundle: "/run/skiff/bundles/c1".into(),
            ready_fd: 5,
        };
        let v = a.to_args();
        assert_eq!(v[0], SUBCOMMAND);
        assert_eq!(ShimArgs::parse(&v[1..]).unwrap(), a);
        assert!(ShimArgs::parse(&["--bundle".into()]).is_err());
        assert!(ShimArgs::parse(&[
            "--ready-fd".into(),
            "x".into(),
            "--bundle".into(),
            "/b".into()
        ])
        .is_err());
        assert!(ShimArgs::parse(&["--what".into(), "x".into()]).is_err());
    }
}
