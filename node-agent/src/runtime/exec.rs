//! Commands run inside a running container (`kubectl exec`, exec probes, preStop hooks).
//!
//! libcontainer's tenant `build()` clones and runs Rust code in the child, which is unsafe in
//! the multi-threaded agent, so the agent spawns its own binary as a helper,
//! `skiff shim exec --state-root DIR --id ID --report-fd N [--console-socket PATH] -- ARGV`.
//! The helper stays single-threaded, joins the container with libcontainer (namespaces,
//! cgroup, capabilities, user, environment and working directory all come from the
//! container's own process spec), reports `ok <pid>` or `error <code> <message>` on the report
//! pipe, waits for the command and exits with its exit code (128+signal when killed).
//!
//! Standard input and output are the helper's own, inherited by the command: pipes the agent
//! made. With a terminal, libcontainer allocates the pty inside the container (its devpts,
//! the slave as controlling terminal and stdio, as `runc exec -t` does) and sends the master
//! over a console socket the agent listens on; the agent relays and resizes through it.
//!
//! The report pipe also carries the agent's interest: when the agent closes its read end
//! (the [`ExecProcess`] is dropped, or the agent dies), the helper kills the command.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{setsid, Pid};

use super::container::RuntimeError;
use super::shim::SUBCOMMAND;
use super::sys;

/// The word after `shim` that selects the exec helper.
pub const EXEC_MODE: &str = "exec";

/// How much output [`super::Runtime::exec_capture`] keeps: the kubelet's limit for exec
/// probe output (10 KiB); the rest is read and dropped so the command never blocks.
pub const CAPTURE_LIMIT: usize = 10 * 1024;

/// Exit code when the command could not be found, as shells and runc-based runtimes use.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code when the command was found but could not be run.
pub const EXIT_CANNOT_RUN: i32 = 126;

/// What to run in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments; the first is looked up in the container's `PATH`.
    pub argv: Vec<String>,
    /// Run on a terminal (stdout and stderr become one stream).
    pub tty: bool,
    /// Give the command a stdin pipe; without it stdin is `/dev/null`.
    pub stdin: bool,
    /// Variables set over the container's environment.
    pub env: Vec<(String, String)>,
}

/// How the helper's stdio are set up.
pub(super) enum Stdio3 {
    /// Separate pipes (stdin only when asked for).
    Pipes { stdin: bool },
    /// stdout and stderr into one pipe, stdin from /dev/null (exec probes, hooks).
    Combined,
    /// A pty made by libcontainer in the container; the helper's stdio are /dev/null.
    Tty,
}

/// A command running in a container. Dropping it kills the command (and reaps the helper).
#[derive(Debug)]
pub struct ExecProcess {
    /// The command's pid, as seen from the host.
    pub pid: i32,
    /// The command's stdin (pipes mode, when asked for); dropping it is end of file.
    pub stdin: Option<OwnedFd>,
    /// The command's stdout (pipes mode; both streams in capture mode).
    pub stdout: Option<OwnedFd>,
    /// The command's stderr (pipes mode).
    pub stderr: Option<OwnedFd>,
    /// The terminal's master side (tty mode): output from it, input to it.
    pub pty: Option<OwnedFd>,
    helper: Child,
    helper_pidfd: OwnedFd,
    cmd_pidfd: Option<OwnedFd>,
    report: Option<OwnedFd>,
    exit: Option<i32>,
}

impl ExecProcess {
    /// Sets the terminal's size (tty mode), as a client's resize asks.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        let pty = self
            .pty
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a terminal"))?;
        resize_pty(pty.as_fd(), cols, rows)
    }

    /// Readable once the command has finished (a pidfd of the helper, which exits with it).
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        self.helper_pidfd.as_fd()
    }

    /// The exit code (128+signal when killed), if the command has finished.
    pub fn try_wait(&mut self) -> io::Result<Option<i32>> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        if let Some(status) = self.helper.try_wait()? {
            self.exit = Some(exit_code_of(status));
            self.report = None;
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for the command; `None` when it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<i32>> {
        if self.exit.is_none() && !sys::wait_readable(self.helper_pidfd.as_fd(), timeout)? {
            return Ok(None);
        }
        self.try_wait()
    }

    /// Kills the command (SIGKILL) and lets the helper finish; does not wait.
    pub fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        if let Some(fd) = &self.cmd_pidfd {
            let _ = pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        // Closing the report pipe tells the helper to kill the command too, in case the
        // pidfd could not be opened.
        self.report = None;
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        self.kill();
        if !matches!(self.wait_timeout(Duration::from_secs(5)), Ok(Some(_))) {
            tracing::warn!(pid = self.pid, "exec helper did not finish; killing it");
            let _ = self.helper.kill();
            let _ = self.helper.wait();
        }
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 255,
    }
}

/// TIOCSWINSZ on a pty master.
pub fn resize_pty(pty: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    if unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The agent's side.

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Everything [`spawn`] needs from the runtime.
pub(super) struct SpawnContext<'a> {
    pub shim: &'a Path,
    pub state_root: &'a Path,
    pub bundle: &'a Path,
    pub id: &'a str,
    pub start_timeout: Duration,
}

/// Spawns the helper for `req` and waits for its report; returns the running command.
pub(super) fn spawn(
    cx: &SpawnContext<'_>,
    req: &ExecRequest,
    io_mode: Stdio3,
) -> Result<ExecProcess, RuntimeError> {
    if req.argv.is_empty() {
        return Err(RuntimeError::ExecStart {
            id: cx.id.to_string(),
            message: "no command given".into(),
            exit_code: EXIT_CANNOT_RUN,
        });
    }
    let io_err = |op: &'static str| {
        let path = cx.bundle.to_path_buf();
        move |source: io::Error| RuntimeError::Io { op, path, source }
    };
    let (report_r, report_w) = sys::pipe_cloexec().map_err(io_err("pipe"))?;
    // The helper finds the write end at this number; only this copy is inheritable, and
    // the helper closes whatever else it inherits.
    let report_child = dup_inheritable(report_w.as_fd()).map_err(io_err("dup"))?;
    drop(report_w);

    let console = match io_mode {
        Stdio3::Tty => Some(ConsoleListener::bind(cx.bundle).map_err(io_err("console socket"))?),
        _ => None,
    };
    let args = ExecArgs {
        state_root: cx.state_root.to_path_buf(),
        id: cx.id.to_string(),
        report_fd: report_child.as_raw_fd(),
        console_socket: console.as_ref().map(|c| c.path.clone()),
        env: req.env.clone(),
        argv: req.argv.clone(),
    };
    let mut cmd = Command::new(cx.shim);
    cmd.args(args.to_args()).current_dir("/");
    let mut parent_ends: (Option<OwnedFd>, Option<OwnedFd>, Option<OwnedFd>) = (None, None, None);
    match io_mode {
        Stdio3::Pipes { stdin } => {
            if stdin {
                let (r, w) = sys::pipe_cloexec().map_err(io_err("pipe"))?;
                cmd.stdin(Stdio::from(r));
                parent_ends.0 = Some(w);
            } else {
                cmd.stdin(Stdio::null());
            }
            let (r, w) = sys::pipe_cloexec().map_err(io_err("pipe"))?;
            cmd.stdout(Stdio::from(w));
            parent_ends.1 = Some(r);
            let (r, w) = sys::pipe_cloexec().map_err(io_err("pipe"))?;
            cmd.stderr(Stdio::from(w));
            parent_ends.2 = Some(r);
        }
        Stdio3::Combined => {
            let (r, w) = sys::pipe_cloexec().map_err(io_err("pipe"))?;
            let w2 = w.try_clone().map_err(io_err("dup"))?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(w))
                .stderr(Stdio::from(w2));
            parent_ends.1 = Some(r);
        }
        Stdio3::Tty => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
    }
    let spawned = cmd.spawn();
    // Our copies of the child's ends (held by the command) and of the report pipe's write
    // end must go, so end of file and a dead helper are seen.
    drop(cmd);
    drop(report_child);
    let mut helper = spawned.map_err(|source| RuntimeError::Spawn {
        path: cx.shim.to_path_buf(),
        source,
    })?;
    let helper_pidfd = match sys::pidfd_open(helper.id() as i32) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = helper.kill();
            let _ = helper.wait();
            return Err(io_err("pidfd_open")(e));
        }
    };
    let mut proc = ExecProcess {
        pid: 0,
        stdin: parent_ends.0,
        stdout: parent_ends.1,
        stderr: parent_ends.2,
        pty: None,
        helper,
        helper_pidfd,
        cmd_pidfd: None,
        report: Some(report_r),
        exit: None,
    };
    // From here on, dropping `proc` kills and reaps whatever started.
    let line = read_report(&mut proc, cx.start_timeout).map_err(io_err("read exec report"))?;
    match parse_report(&line) {
        Report::Ok(pid) => {
            proc.pid = pid;
            proc.cmd_pidfd = open_child_pidfd(pid, proc.helper.id() as i32);
        }
        Report::Error { code, message } => {
            return Err(RuntimeError::ExecStart {
                id: cx.id.to_string(),
                message,
                exit_code: code,
            })
        }
        Report::Missing => {
            let status = proc.wait_timeout(Duration::from_secs(1)).ok().flatten();
            return Err(RuntimeError::ExecStart {
                id: cx.id.to_string(),
                message: match status {
                    Some(c) => format!("the exec helper exited ({c}) without reporting"),
                    None => format!(
                        "the exec helper did not report within {:?}",
                        cx.start_timeout
                    ),
                },
                exit_code: EXIT_CANNOT_RUN,
            });
        }
    }
    if let Some(console) = console {
        match console.receive_master(Duration::from_secs(5)) {
            Ok(master) => proc.pty = Some(master),
            Err(e) => return Err(io_err("receive terminal")(e)),
        }
    }
    Ok(proc)
}

/// Reads the combined output of a capture-mode process until it exits (keeping the first
/// [`CAPTURE_LIMIT`] bytes), then what is left in the pipe. `Err(None)` when `timeout`
/// passes first: the command is killed.
pub(super) fn capture(
    mut proc: ExecProcess,
    timeout: Duration,
) -> Result<(i32, Vec<u8>), Option<io::Error>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let Some(fd) = proc.stdout.take() else {
        return Err(Some(io::Error::other("no output pipe")));
    };
    let mut pipe = File::from(fd);
    sys::set_nonblocking(pipe.as_fd()).map_err(Some)?;
    let mut buf = [0u8; 8192];
    let keep = |out: &mut Vec<u8>, data: &[u8]| {
        let room = CAPTURE_LIMIT.saturating_sub(out.len());
        out.extend_from_slice(&data[..data.len().min(room)]);
    };
    let mut pipe_open = true;
    loop {
        // Drain what is there.
        while pipe_open {
            match pipe.read(&mut buf) {
                Ok(0) => pipe_open = false,
                Ok(n) => keep(&mut out, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Some(e)),
            }
        }
        if let Some(code) = proc.try_wait().map_err(Some)? {
            // Anything written before the exit is in the pipe now; descendants that keep
            // it open are not waited for.
            if pipe_open {
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => keep(&mut out, &buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            return Ok((code, out));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            proc.kill();
            return Err(None);
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut fds = vec![PollFd::new(proc.helper_pidfd.as_fd(), PollFlags::POLLIN)];
        if pipe_open {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Some(e.into())),
        }
    }
}

/// A pidfd for the command only if it is still the helper's child (so a reused pid is
/// never signalled).
fn open_child_pidfd(pid: i32, helper: i32) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(pid).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let ppid: i32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    (ppid == helper).then_some(fd)
}

/// Reads the helper's one-line report, or returns an empty line if the helper exits or the
/// timeout passes without one.
fn read_report(proc: &mut ExecProcess, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let Some(report) = proc.report.as_ref() else {
        return Ok(String::new());
    };
    let mut file = File::from(report.try_clone()?);
    sys::set_nonblocking(file.as_fd())?;
    let mut helper_gone = false;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.contains(&b'\n') || out.len() > 64 * 1024 {
                    break;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if helper_gone {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut fds = [
            PollFd::new(file.as_fd(), PollFlags::POLLIN),
            PollFd::new(proc.helper_pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) => {
                // One more read after the helper exits: its last words may be in the pipe.
                helper_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

#[derive(Debug, PartialEq, Eq)]
enum Report {
    Ok(i32),
    Error { code: i32, message: String },
    Missing,
}

fn parse_report(line: &str) -> Report {
    if let Some(pid) = line.strip_prefix("ok ").and_then(|p| p.trim().parse().ok()) {
        return Report::Ok(pid);
    }
    if let Some(rest) = line.strip_prefix("error ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        return Report::Error {
            code: code.parse().unwrap_or(EXIT_CANNOT_RUN),
            message: message.to_string(),
        };
    }
    Report::Missing
}

/// The listening side of a console socket: libcontainer's init connects to it and sends
/// the pty master it made.
struct ConsoleListener {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleListener {
    /// Listens at `<dir>/exec-<pid>-<n>.sock`. Bound through `/proc/self/fd/<dir fd>/...`
    /// because socket addresses are limited to 108 bytes and bundle paths may be longer.
    fn bind(dir: &Path) -> io::Result<ConsoleListener> {
        let name = format!(
            "exec-{}-{}.sock",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(&name);
        let dirfd = File::open(dir)?;
        let short = format!("/proc/self/fd/{}/{name}", dirfd.as_raw_fd());
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&short)?;
        listener.set_nonblocking(true)?;
        Ok(ConsoleListener { path, listener })
    }

    fn receive_master(&self, timeout: Duration) -> io::Result<OwnedFd> {
        if !sys::wait_readable(self.listener.as_fd(), timeout)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the container did not send its terminal",
            ));
        }
        let (stream, _) = self.listener.accept()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(timeout))?;
        recv_fd(stream.as_fd())
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// The helper's side.

/// The helper's command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecArgs {
    /// libcontainer's state root.
    pub state_root: PathBuf,
    /// Container id.
    pub id: String,
    /// Inherited write end of the report pipe.
    pub report_fd: RawFd,
    /// Where to send the terminal's master (tty mode).
    pub console_socket: Option<PathBuf>,
    /// Environment set over the container's.
    pub env: Vec<(String, String)>,
    /// The command.
    pub argv: Vec<String>,
}

impl ExecArgs {
    /// The arguments after the binary name: `shim exec ... -- ARGV`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            SUBCOMMAND.into(),
            EXEC_MODE.into(),
            "--state-root".into(),
            self.state_root.clone().into_os_string(),
            "--id".into(),
            self.id.clone().into(),
            "--report-fd".into(),
            self.report_fd.to_string().into(),
        ];
        if let Some(c) = &self.console_socket {
            v.push("--console-socket".into());
            v.push(c.clone().into_os_string());
        }
        for (k, val) in &self.env {
            v.push("--env".into());
            v.push(format!("{k}={val}").into());
        }
        v.push("--".into());
        v.extend(self.argv.iter().map(OsString::from));
        v
    }

    /// Parses the arguments that follow `shim exec`.
    pub fn parse(args: &[OsString]) -> Result<Self, String> {
        let mut state_root = None;
        let mut id = None;
        let mut report_fd = None;
        let mut console_socket = None;
        let mut env = Vec::new();
        let mut it = args.iter();
        let mut argv = Vec::new();
        while let Some(a) = it.next() {
            if a == "--" {
                for rest in it.by_ref() {
                    argv.push(
                        rest.to_str()
                            .ok_or_else(|| format!("argument {rest:?} is not UTF-8"))?
                            .to_string(),
                    );
                }
                break;
            }
            let val = it.next().ok_or_else(|| format!("{a:?} needs a value"))?;
            let text = || {
                val.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{a:?}: value is not UTF-8"))
            };
            match a.to_str() {
                Some("--state-root") => state_root = Some(PathBuf::from(val)),
                Some("--id") => id = Some(text()?),
                Some("--report-fd") => {
                    report_fd = Some(text()?.parse().map_err(|_| "bad --report-fd")?)
                }
                Some("--console-socket") => console_socket = Some(PathBuf::from(val)),
                Some("--env") => {
                    let kv = text()?;
                    let (k, v) = kv.split_once('=').ok_or("--env needs KEY=VALUE")?;
                    env.push((k.to_string(), v.to_string()));
                }
                _ => return Err(format!("unknown argument {a:?}")),
            }
        }
        if argv.is_empty() {
            return Err("no command after --".into());
        }
        Ok(ExecArgs {
            state_root: state_root.ok_or("--state-root is required")?,
            id: id.ok_or("--id is required")?,
            report_fd: report_fd.ok_or("--report-fd is required")?,
            console_socket,
            env,
            argv,
        })
    }
}

/// Entry point of `skiff shim exec ...`; returns the command's exit code. Must run before
/// any other thread exists. Nothing is written to stdout or stderr: they belong to the
/// command.
pub fn main(args: &[OsString]) -> i32 {
    let args = match ExecArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skiff shim exec: {e}");
            return 2;
        }
    };
    if !sys::fd_is_open(args.report_fd) {
        eprintln!(
            "skiff shim exec: --report-fd {} is not an open descriptor",
            args.report_fd
        );
        return 2;
    }
    let report = match sys::dup_cloexec_above_stdio(args.report_fd) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("skiff shim exec: duplicating --report-fd: {e}");
            return 2;
        }
    };
    // Whatever else was inherited (other threads' inheritable descriptors in the agent) must
    // not reach the container or keep the agent's pipes open.
    close_fds_above_stdio_except(report.as_raw_fd());
    // Out of the agent's process group, so signals meant for it do not reach the command.
    let _ = setsid();

    let (code, message) = match start(&args) {
        Ok(pid) => {
            write_report(&report, &format!("ok {pid}"));
            return supervise(pid, &report);
        }
        Err(e) => e,
    };
    write_report(&report, &format!("error {code} {message}"));
    code
}

fn write_report(report: &OwnedFd, line: &str) {
    let mut line = line.replace('\n', " ");
    line.push('\n');
    // The agent may be gone; nothing to do about it here.
    let _ = nix::unistd::write(report.as_fd(), line.as_bytes());
}

/// Joins the container and starts the command; `(exit code, message)` when it cannot.
fn start(args: &ExecArgs) -> Result<i32, (i32, String)> {
    let container_dir = args.state_root.join(&args.id);
    let cannot = |m: String| (EXIT_CANNOT_RUN, m);
    let container = Container::load(container_dir.clone())
        .map_err(|_| cannot(format!("container {} not found", args.id)))?;
    if container.status() != ContainerStatus::Running {
        return Err(cannot(format!(
            "cannot exec in a stopped container {}",
            args.id
        )));
    }
    let bundle = container.bundle().clone();
    let spec = Spec::load(bundle.join("config.json"))
        .map_err(|e| cannot(format!("reading the container's spec: {e}")))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| cannot("the container's spec has no process".into()))?;
    let mut env: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            let key = e.split('=').next().unwrap_or("");
            !args.env.iter().any(|(k, _)| k == key)
        })
        .collect();
    env.extend(args.env.iter().map(|(k, v)| format!("{k}={v}")));
    process
        .set_args(Some(args.argv.clone()))
        .set_env(Some(env))
        .set_terminal(Some(args.console_socket.is_some()))
        .set_console_size(None);
    let process_file = bundle.join(format!("exec-{}.json", std::process::id()));
    let json =
        serde_json::to_vec(&process).map_err(|e| cannot(format!("encoding the process: {e}")))?;
    std::fs::write(&process_file, json)
        .map_err(|e| cannot(format!("writing {process_file:?}: {e}")))?;

    // libcontainer leaves a notify socket (and a console symlink) per exec in the container's
    // state directory; execs in one container are serialised so this one's can be told
    // apart and removed.
    let lock = ExecLock::take(&container_dir);
    let before = tenant_files(&container_dir);

    // Rust ignores SIGPIPE at start-up and ignored signals survive exec: the command gets
    // the default disposition, and the helper ignores it again afterwards.
    // SAFETY: setting a disposition to SIG_DFL/SIG_IGN installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let built = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_executor(LookPath)
        .with_console_socket(args.console_socket.as_ref())
        .with_root_path(&args.state_root)
        .map(|b| {
            b.as_tenant()
                .with_process(Some(&process_file))
                .with_detach(true)
        })
        .and_then(|b| b.build());
    // SAFETY: as above.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
    let _ = std::fs::remove_file(&process_file);
    for name in tenant_files(&container_dir).difference(&before) {
        let _ = std::fs::remove_file(container_dir.join(name));
    }
    drop(lock);
    match built {
        Ok(pid) => Ok(pid.as_raw()),
        Err(e) => {
            let message = chain(&e);
            // Reap libcontainer's intermediate and init processes, which failed.
            while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                if s == WaitStatus::StillAlive {
                    break;
                }
            }
            Err(start_error(&message))
        }
    }
}

/// The exit code and message for a failed start: runc's wording for a missing or
/// unrunnable command (the [`LookPath`] executor's), anything else as libcontainer said it.
fn start_error(message: &str) -> (i32, String) {
    if let Some(at) = message.find("exec: \"") {
        let ours = &message[at..];
        let code = if ours.contains(NOT_FOUND_IN_PATH) || ours.contains("no such file") {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_RUN
        };
        return (code, ours.to_string());
    }
    (EXIT_CANNOT_RUN, message.to_string())
}

/// libcontainer's errors carry their causes as sources; show the whole chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn tenant_files(dir: &Path) -> HashSet<OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.as_bytes().starts_with(b"tenant-"))
        .collect()
}

/// An exclusive `flock` on `<state>/<id>/exec.lock`, released on drop.
struct ExecLock(Option<File>);

impl ExecLock {
    fn take(container_dir: &Path) -> ExecLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(container_dir.join("exec.lock"))
            .ok();
        if let Some(f) = &file {
            // SAFETY: flock on a descriptor we own.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        }
        ExecLock(file)
    }
}

impl Drop for ExecLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: as above.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// Waits for the command; kills it if the agent closes the report pipe. Returns its exit
/// code (128+signal when killed).
fn supervise(pid: i32, report: &OwnedFd) -> i32 {
    let pidfd = sys::pidfd_open(pid).ok();
    let mut killed = false;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
        let Some(pidfd) = &pidfd else {
            // No pidfd: block in waitpid (the agent's going away is not noticed).
            return match waitpid(Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, c)) => c,
                Ok(WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
                _ => 255,
            };
        };
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if !killed {
            // A pipe's write end reports POLLERR once no reader is left.
            fds.push(PollFd::new(report.as_fd(), PollFlags::empty()));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                let _ = waitpid(Pid::from_raw(pid), None);
                return 255;
            }
        }
        let agent_gone = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
        if agent_gone {
            let _ = pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            killed = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Descriptor plumbing.

/// A copy of `fd` numbered 3 or above *without* close-on-exec, so a spawned child inherits
/// it at that number (std spawns with posix_spawn and closes nothing else).
fn dup_inheritable(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Closes every descriptor above 2 except `keep`.
fn close_fds_above_stdio_except(keep: RawFd) {
    let close_range = |first: u32, last: u32| {
        if first <= last {
            // SAFETY: close_range takes two numbers and flags; nothing here refers to the
            // descriptors it closes (this runs first thing in the helper).
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        }
    };
    let keep = keep as u32;
    if keep > 3 {
        close_range(3, keep - 1);
    }
    close_range(keep + 1, u32::MAX);
}

/// Sends `signal` to the process behind a pidfd (never to a reused pid).
fn pidfd_send_signal(fd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one descriptor passed with SCM_RIGHTS on a unix stream.
fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    let mut buf = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut received = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if received.is_none() {
                    received = Some(owned);
                }
            }
        }
    }
    received.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the console socket carried no descriptor",
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Finding the command, as runc does (Go's exec.LookPath), with its error messages.

const NOT_FOUND_IN_PATH: &str = "executable file not found in $PATH";

/// libcontainer executor that looks the command up like runc, so a missing command fails
/// with the message users know (`exec: "x": executable file not found in $PATH`).
#[derive(Clone)]
struct LookPath;

impl LookPath {
    fn resolve(spec: &Spec) -> Result<(PathBuf, Vec<String>), String> {
        let process = spec.process().as_ref().ok_or("the spec has no process")?;
        let args = process.args().clone().unwrap_or_default();
        let name = args.first().ok_or("no command given")?;
        let path_var = process
            .env()
            .as_ref()
            .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or("");
        let path = look_path(name, path_var)?;
        Ok((path, args))
    }
}

impl Executor for LookPath {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let (path, args) = Self::resolve(spec).map_err(ExecutorError::Other)?;
        let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let cargs: Vec<std::ffi::CString> = args
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        let err = nix::unistd::execv(&cpath, &cargs).err();
        Err(ExecutorError::Other(format!(
            "exec: {:?}: {}",
            args.first().map(String::as_str).unwrap_or(""),
            err.map(|e| e.desc().to_lowercase())
                .unwrap_or_else(|| "exec failed".into())
        )))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        Self::resolve(spec)
            .map(|_| ())
            .map_err(ExecutorValidationError::ArgValidationError)
    }
}

/// Go's `exec.LookPath`: a name with a slash is used as is; otherwise the first executable
/// regular file of that name in `PATH`. Errors carry runc's wording.
pub fn look_path(name: &str, path_var: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| -> Result<(), io::Error> {
        let m = std::fs::metadata(p)?;
        if !m.is_dir() && m.permissions().mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        }
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match executable(&p) {
            Ok(()) => Ok(p),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(format!("exec: {name:?}: permission denied"))
            }
            Err(e) => Err(format!("exec: {name:?}: stat {name}: {}", errno_text(&e))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if executable(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(format!("exec: {name:?}: {NOT_FOUND_IN_PATH}"))
}

/// An I/O error as Go prints it (`no such file or directory`), without Rust's
/// ` (os error N)` suffix.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ExecArgs {
            state_root: "/run/skiff/state".into(),
            id: "c1".into(),
            report_fd: 7,
            console_socket: Some("/run/x.sock".into()),
            env: vec![("A".into(), "b=c".into())],
            argv: vec!["sh".into(), "-c".into(), "--".into(), "--id".into()],
        };
        let v = a.to_args();
        assert_eq!(v[0], SUBCOMMAND);
        assert_eq!(v[1], EXEC_MODE);
        assert_eq!(ExecArgs::parse(&v[2..]).unwrap(), a);
        assert!(ExecArgs::parse(&["--id".into(), "x".into()]).is_err());
        let no_cmd: Vec<OsString> = vec![
            "--state-root".into(),
            "/s".into(),
            "--id".into(),
            "x".into(),
            "--report-fd".into(),
            "3".into(),
            "--".into(),
        ];
        assert!(ExecArgs::parse(&no_cmd).is_err());
    }

    #[test]
    fn reports() {
        assert_eq!(parse_report("ok 42"), Report::Ok(42));
        assert_eq!(
            parse_report("error 127 exec: \"nope\": executable file not found in $PATH"),
            Report::Error {
                code: 127,
                message: "exec: \"nope\": executable file not found in $PATH".into()
            }
        );
        assert_eq!(parse_report(""), Report::Missing);
        assert_eq!(parse_report("ok x"), Report::Missing);
    }

    #[test]
    fn look_path_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let plain = bin.join("plain");
        std::fs::write(&plain, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(look_path("tool", &path).unwrap(), tool);
        assert_eq!(
            look_path("plain", &path).unwrap_err(),
            "exec: \"plain\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("nope", &path).unwrap_err(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path(plain.to_str().unwrap(), "").unwrap_err(),
            format!("exec: {:?}: permission denied", plain.to_str().unwrap())
        );
        assert_eq!(
            look_path("/no/such", "").unwrap_err(),
            "exec: \"/no/such\": stat /no/such: no such file or directory"
        );
        assert_eq!(look_path(tool.to_str().unwrap(), "").unwrap(), tool);
    }

    #[test]
    fn start_errors_map_to_exit_codes() {
        let (c, m) = start_error("failed: exec: \"nope\": executable file not found in $PATH");
        assert_eq!(c, EXIT_NOT_FOUND);
        assert_eq!(m, "exec: \"nope\": executable file not found in $PATH");
        let (c, _) = start_error("exec: \"/etc/passwd\": permission denied");
        assert_eq!(c, EXIT_CANNOT_RUN);
        let (c, m) = start_error("cgroup trouble");
        assert_eq!((c, m.as_str()), (EXIT_CANNOT_RUN, "cgroup trouble"));
    }
}
