//! Doing things inside a pod's network namespace without forking the agent: a dedicated
//! thread joins the namespace (`setns` affects only the calling thread), does its work there
//! and ends, so no tokio worker ever changes namespace. Sockets keep the namespace they were
//! created in, so a connection opened there can be used from anywhere afterwards.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Runs `f` on a new thread inside the network namespace bound at `netns`.
pub fn run_in<T, F>(netns: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let ns = File::open(netns)?;
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            // SAFETY: plain syscall on an fd we own; affects only this thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// [`run_in`] for async callers: the thread is waited for without blocking a tokio worker.
pub async fn run_in_async<T, F>(netns: PathBuf, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || run_in(&netns, f))
        .await
        .map_err(|_| io::Error::other("network namespace task failed"))?
}

/// A TCP connection to `port` on the loopback of the namespace bound at `netns` (as
/// port-forward and probes reach a pod), with a connect timeout.
pub async fn connect_loopback(
    netns: PathBuf,
    port: u16,
    timeout: std::time::Duration,
) -> io::Result<tokio::net::TcpStream> {
    let std_stream = run_in_async(netns, move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .await?;
    tokio::net::TcpStream::from_std(std_stream)
}
