//! The exec helper process, `skiff shim exec ...`: single-threaded, it joins the running
//! container with libcontainer's tenant builder, reports on the report pipe, and waits for the
//! command, killing it if the agent closes its end of the pipe.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{setsid, Pid};

use super::fds::{close_fds_above_stdio_except, pidfd_send_signal};
use super::lookpath::{LookPath, NOT_FOUND_IN_PATH};
use super::{EXEC_MODE, EXIT_CANNOT_RUN, EXIT_NOT_FOUND};
use crate::runtime::shim::SUBCOMMAND;
use crate::runtime::sys;

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
