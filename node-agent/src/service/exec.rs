//! `Exec`: a command in a running container, as `kubectl exec` asks for it.
//!
//! The first input names the container and the command; the command is started through
//! [`Runtime::exec`] on a blocking thread. Then three kinds of task run until it ends: one
//! per output (stdout and stderr, or the terminal), one writing stdin, and a supervisor that
//! reads the client's inputs (stdin, resizes, end of stdin), waits for the exit and sends
//! the exit code last. Every channel is bounded; a client that goes away kills the command.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use skiff_proto::agent::exec_input::Input;
use skiff_proto::agent::exec_output::Output;
use skiff_proto::agent::{ExecInput, ExecOutput, ExecStart};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{BoxStream, PodDirectory};
use crate::runtime::{ExecProcess, ExecRequest, Runtime, RuntimeError};

/// Outputs waiting for the client; the command is held back when it is full.
const OUTPUT_QUEUE: usize = 16;
/// Client stdin chunks waiting for the command.
const STDIN_QUEUE: usize = 16;
/// Largest output message.
const CHUNK: usize = 32 * 1024;
/// How long output is still relayed after the command exits (descendants may hold the
/// pipes open; they are not waited for beyond this).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// End of file on a terminal (^D), sent when the client closes stdin in tty mode.
const VEOF: u8 = 0x04;

/// Serves one exec stream.
pub async fn serve(
    pods: Arc<dyn PodDirectory>,
    runtime: Arc<Runtime>,
    mut input: Streaming<ExecInput>,
) -> Result<BoxStream<ExecOutput>, Status> {
    let start = match input.message().await? {
        Some(ExecInput {
            input: Some(Input::Start(s)),
        }) => s,
        Some(_) => {
            return Err(Status::invalid_argument(
                "exec: the first message must be the start message",
            ))
        }
        None => {
            return Err(Status::invalid_argument(
                "exec: the stream ended before the start message",
            ))
        }
    };
    if start.command.is_empty() {
        return Err(Status::invalid_argument(
            "you must specify at least one command for the container",
        ));
    }
    let id = container_id(pods.as_ref(), &start).map_err(|e| *e)?;
    let req = ExecRequest {
        argv: start.command.clone(),
        tty: start.tty,
        stdin: start.stdin,
        env: Vec::new(),
    };
    let rt = runtime.clone();
    let exec_id = id.clone();
    let mut proc = tokio::task::spawn_blocking(move || rt.exec(&exec_id, &req))
        .await
        .map_err(|e| Status::internal(format!("exec task failed: {e}")))?
        .map_err(|e| status_of(&start, e))?;
    tracing::debug!(container = %id, pid = proc.pid, command = ?start.command, "exec started");

    let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
    let mut pumps = Vec::new();
    let mut stdin_fd = None;
    let io = (|| -> io::Result<()> {
        if let Some(pty) = &proc.pty {
            pumps.push(pump(
                pty.try_clone()?,
                Stream::Stdout,
                start.stdout,
                tx.clone(),
            )?);
            if start.stdin {
                stdin_fd = Some(pty.try_clone()?);
            }
        } else {
            if let Some(fd) = proc.stdout.take() {
                pumps.push(pump(fd, Stream::Stdout, start.stdout, tx.clone())?);
            }
            if let Some(fd) = proc.stderr.take() {
                pumps.push(pump(fd, Stream::Stderr, start.stderr, tx.clone())?);
            }
            stdin_fd = proc.stdin.take();
        }
        Ok(())
    })();
    if let Err(e) = io {
        discard(proc);
        return Err(Status::internal(format!("exec: setting up its I/O: {e}")));
    }
    let stdin = match stdin_fd.map(|fd| stdin_writer(fd, start.tty)).transpose() {
        Ok(s) => s,
        Err(e) => {
            discard(proc);
            return Err(Status::internal(format!("exec: setting up stdin: {e}")));
        }
    };
    tokio::spawn(supervise(proc, input, stdin, pumps, tx));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The runtime id of the named container's running instance.
fn container_id(pods: &dyn PodDirectory, s: &ExecStart) -> Result<String, Box<Status>> {
    let c = pods
        .container(&s.namespace, &s.pod, &s.pod_uid, &s.container)
        .ok_or_else(|| {
            Box::new(Status::not_found(format!(
                "container {:?} not found in pod {:?} (namespace {:?})",
                s.container, s.pod, s.namespace
            )))
        })?;
    c.id.ok_or_else(|| {
        Box::new(Status::failed_precondition(format!(
            "container {:?} in pod {:?} is not running",
            s.container, s.pod
        )))
    })
}

fn status_of(s: &ExecStart, e: RuntimeError) -> Status {
    match e {
        RuntimeError::NotFound(_) => Status::not_found(format!(
            "container {:?} in pod {:?} not found",
            s.container, s.pod
        )),
        RuntimeError::NotRunning(_) => Status::failed_precondition(format!(
            "container {:?} in pod {:?} is not running",
            s.container, s.pod
        )),
        e @ RuntimeError::ExecStart { .. } => Status::unknown(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// Drops a process (kill and reap may block briefly) off the async workers.
fn discard(proc: ExecProcess) {
    tokio::task::spawn_blocking(move || drop(proc));
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

fn nonblocking(fd: OwnedFd) -> io::Result<AsyncFd<File>> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    register(File::from(fd))
}

/// Hands a descriptor to tokio's reactor.
fn register(file: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: the AsyncFd owns the File, so the descriptor stays open and the same for its
    // whole life, and a File's as_raw_fd never changes.
    Ok(unsafe { AsyncFd::register(file) }?)
}

/// Reads what is there; `Ok(0)` at end of file (a terminal whose other side closed reads
/// as EIO, which is its end of file).
async fn read_some(fd: &AsyncFd<File>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|f| f.get_ref().read(buf)) {
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &AsyncFd<File>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|f| f.get_ref().write(data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Relays one output to the client (or reads and drops it when the client did not ask for
/// it, so the command never blocks on a full pipe).
fn pump(
    fd: OwnedFd,
    stream: Stream,
    wanted: bool,
    tx: mpsc::Sender<Result<ExecOutput, Status>>,
) -> io::Result<JoinHandle<()>> {
    let fd = nonblocking(fd)?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match read_some(&fd, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if !wanted {
                continue;
            }
            let data = buf[..n].to_vec();
            let output = match stream {
                Stream::Stdout => Output::Stdout(data),
                Stream::Stderr => Output::Stderr(data),
            };
            if tx
                .send(Ok(ExecOutput {
                    output: Some(output),
                }))
                .await
                .is_err()
            {
                return;
            }
        }
    }))
}

/// The command's stdin: chunks from the client written in order; the sender's drop is end
/// of file (^D on a terminal).
struct StdinWriter {
    tx: mpsc::Sender<Vec<u8>>,
    task: JoinHandle<()>,
}

fn stdin_writer(fd: OwnedFd, tty: bool) -> io::Result<StdinWriter> {
    let fd = nonblocking(fd)?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STDIN_QUEUE);
    let task = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if write_all(&fd, &data).await.is_err() {
                return;
            }
        }
        if tty {
            let _ = write_all(&fd, &[VEOF]).await;
        }
    });
    Ok(StdinWriter { tx, task })
}

/// Follows the client's inputs until the command exits or the client goes away; then sends
/// the remaining output and the exit code.
async fn supervise(
    mut proc: ExecProcess,
    mut input: Streaming<ExecInput>,
    mut stdin: Option<StdinWriter>,
    pumps: Vec<JoinHandle<()>>,
    tx: mpsc::Sender<Result<ExecOutput, Status>>,
) {
    let exit_fd = match proc
        .exit_fd()
        .try_clone_to_owned()
        .and_then(|fd| register(File::from(fd)))
    {
        Ok(fd) => fd,
        Err(e) => {
            let _ = tx
                .send(Err(Status::internal(format!(
                    "exec: watching the command: {e}"
                ))))
                .await;
            discard(proc);
            return;
        }
    };
    let mut input_open = true;
    let code = loop {
        tokio::select! {
            _ = tx.closed() => break None,
            ready = exit_fd.readable() => {
                match ready {
                    Ok(mut guard) => {
                        guard.clear_ready();
                        match proc.try_wait() {
                            Ok(Some(code)) => break Some(code),
                            Ok(None) => {}
                            Err(_) => break None,
                        }
                    }
                    Err(_) => break None,
                }
            }
            msg = input.message(), if input_open => match msg {
                Ok(Some(ExecInput { input: Some(Input::Stdin(data)) })) => {
                    if let Some(w) = &stdin {
                        // Waits while the command does not read (the client is held back),
                        // but not past the client's going away.
                        tokio::select! {
                            sent = w.tx.send(data) => if sent.is_err() {
                                stdin = None;
                            },
                            _ = tx.closed() => break None,
                        }
                    }
                }
                Ok(Some(ExecInput { input: Some(Input::Resize(size)) })) => {
                    let cols = u16::try_from(size.width).unwrap_or(u16::MAX);
                    let rows = u16::try_from(size.height).unwrap_or(u16::MAX);
                    if let Err(e) = proc.resize(cols, rows) {
                        tracing::debug!("exec resize: {e}");
                    }
                }
                Ok(Some(ExecInput { input: Some(Input::CloseStdin(true)) })) => stdin = None,
                Ok(Some(_)) => {}
                // The client will send nothing more: that is the end of stdin as well.
                Ok(None) => {
                    input_open = false;
                    stdin = None;
                }
                // The client's side broke: it is gone.
                Err(_) => break None,
            },
        }
    };
    let Some(code) = code else {
        tracing::debug!(pid = proc.pid, "exec client went away; killing the command");
        proc.kill();
        for p in pumps {
            p.abort();
        }
        if let Some(w) = stdin {
            w.task.abort();
        }
        discard(proc);
        return;
    };
    drop(stdin);
    let deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
    for mut p in pumps {
        if tokio::time::timeout_at(deadline, &mut p).await.is_err() {
            p.abort();
        }
    }
    let _ = tx
        .send(Ok(ExecOutput {
            output: Some(Output::ExitCode(code)),
        }))
        .await;
    discard(proc);
}
