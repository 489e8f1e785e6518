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
//!
//! | module | job |
//! |---|---|
//! | (this) | the agent's side: [`ExecRequest`], spawning the helper, [`ExecProcess`], capture |
//! | [`helper`] | the helper process: arguments, joining the container, supervising the command |
//! | [`lookpath`] | finding the command as runc does, with its error messages |
//! | `fds` | the descriptor plumbing both sides need |

mod fds;
pub mod helper;
pub mod lookpath;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::container::RuntimeError;
use super::sys;
use fds::{dup_inheritable, pidfd_send_signal, recv_fd};
pub use helper::{main, ExecArgs};

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
/// the pty master it made (exec with a terminal, and the shim's terminal containers).
pub(crate) struct ConsoleListener {
    pub(crate) path: PathBuf,
    listener: UnixListener,
}

impl ConsoleListener {
    /// Listens at `<dir>/exec-<pid>-<n>.sock`. Bound through `/proc/self/fd/<dir fd>/...`
    /// because socket addresses are limited to 108 bytes and bundle paths may be longer.
    pub(crate) fn bind(dir: &Path) -> io::Result<ConsoleListener> {
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

    pub(crate) fn receive_master(&self, timeout: Duration) -> io::Result<OwnedFd> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
