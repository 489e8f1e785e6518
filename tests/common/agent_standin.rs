//! A stand-in for the node agent's gRPC service (`skiff.agent.v1.Agent`), so the API server's
//! streaming subresources can be tested before the agent exists. The container `missing` does
//! not exist; in every other container:
//! - logs: the container "prints" `line 1` .. `line 5`; `follow` then adds `tick N` every
//!   100 ms until the client goes away;
//! - exec: the command runs as a process on this machine, with real stdin, stdout, stderr and
//!   exit code. With a TTY, stderr joins stdout and each terminal resize is reported on stdout
//!   as `[resize WxH]`;
//! - port-forward: port P of the pod is port P on the stand-in's own address;
//! - stats: the node uses [`NODE_CPU_NANOCORES`] and [`NODE_MEMORY_BYTES`] over a
//!   [`STATS_WINDOW_MS`] window ending now, and the pods it has been told of with
//!   [`StandInAgent::report_pod`] use what they were given.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skiff_proto::agent::agent_server::{Agent, AgentServer};
use skiff_proto::agent::exec_input::Input as ExecIn;
use skiff_proto::agent::exec_output::Output as ExecOut;
use skiff_proto::agent::port_forward_input::Input as ForwardIn;
use skiff_proto::agent::{
    ContainerStats, ExecInput, ExecOutput, LogChunk, LogRequest, PodStats, PortForwardInput,
    PortForwardOutput, StatsRequest, StatsResponse, Usage,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// The node's CPU use the stand-in reports: 1.25 cores.
pub const NODE_CPU_NANOCORES: u64 = 1_250_000_000;
/// The node's memory working set the stand-in reports: 2 GiB.
pub const NODE_MEMORY_BYTES: u64 = 2 << 30;
/// The window the stand-in's usage is averaged over.
pub const STATS_WINDOW_MS: i64 = 15_000;

struct StandIn {
    /// Where the pod's ports are.
    ip: IpAddr,
    /// The pods `stats` reports.
    pods: Arc<Mutex<Vec<PodStats>>>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;
type Outputs<T> = ReceiverStream<Result<T, Status>>;

/// Copies a process's output into the stream as `wrap` makes it.
async fn copy_out(
    mut from: impl AsyncRead + Unpin,
    to: mpsc::Sender<Result<ExecOutput, Status>>,
    wrap: fn(Vec<u8>) -> ExecOut,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let out = ExecOutput {
            output: Some(wrap(buf[..n].to_vec())),
        };
        if to.send(Ok(out)).await.is_err() {
            break;
        }
    }
}

#[tonic::async_trait]
impl Agent for StandIn {
    type LogsStream = ChunkStream;
    type ExecStream = Outputs<ExecOutput>;
    type PortForwardStream = Outputs<PortForwardOutput>;

    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut inputs = request.into_inner();
        let Some(ExecInput {
            input: Some(ExecIn::Start(start)),
        }) = inputs.message().await?
        else {
            return Err(Status::invalid_argument(
                "the first input must name the command",
            ));
        };
        if start.container == "missing" {
            return Err(Status::not_found(format!(
                "container {} not found in pod {}/{}",
                start.container, start.namespace, start.pod
            )));
        }
        let Some((program, args)) = start.command.split_first() else {
            return Err(Status::invalid_argument("no command"));
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(if start.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Status::unknown(format!(
                    "failed to exec in container: exec: \"{program}\": {e}"
                ))
            })?;
        let (tx, rx) = mpsc::channel(16);
        let mut stdin = child.stdin.take();
        let resizes = tx.clone();
        let tty = start.tty;
        tokio::spawn(async move {
            while let Ok(Some(input)) = inputs.message().await {
                match input.input {
                    Some(ExecIn::Stdin(data)) => {
                        if let Some(w) = stdin.as_mut() {
                            let _ = w.write_all(&data).await;
                        }
                    }
                    Some(ExecIn::CloseStdin(_)) => stdin = None,
                    Some(ExecIn::Resize(size)) if tty => {
                        let note = format!("[resize {}x{}]\n", size.width, size.height);
                        let out = ExecOutput {
                            output: Some(ExecOut::Stdout(note.into_bytes())),
                        };
                        let _ = resizes.send(Ok(out)).await;
                    }
                    _ => {}
                }
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        tokio::spawn(async move {
            let err_wrap: fn(Vec<u8>) -> ExecOut = if tty {
                ExecOut::Stdout
            } else {
                ExecOut::Stderr
            };
            tokio::join!(
                copy_out(stdout, tx.clone(), ExecOut::Stdout),
                copy_out(stderr, tx.clone(), err_wrap)
            );
            let code = match child.wait().await {
                Ok(status) => status.code().unwrap_or(128),
                Err(_) => 128,
            };
            let _ = tx
                .send(Ok(ExecOutput {
                    output: Some(ExecOut::ExitCode(code)),
                }))
                .await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn port_forward(
        &self,
        request: Request<Streaming<PortForwardInput>>,
    ) -> Result<Response<Self::PortForwardStream>, Status> {
        let mut inputs = request.into_inner();
        let Some(PortForwardInput {
            input: Some(ForwardIn::Start(start)),
        }) = inputs.message().await?
        else {
            return Err(Status::invalid_argument(
                "the first input must name the port",
            ));
        };
        let port = u16::try_from(start.port).map_err(|_| Status::invalid_argument("bad port"))?;
        let tcp = tokio::net::TcpStream::connect((self.ip, port))
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "failed to connect to localhost:{port} inside namespace of pod {}: {e}",
                    start.pod
                ))
            })?;
        let (mut from_pod, mut to_pod) = tcp.into_split();
        tokio::spawn(async move {
            while let Ok(Some(input)) = inputs.message().await {
                if let Some(ForwardIn::Data(data)) = input.input {
                    if to_pod.write_all(&data).await.is_err() {
                        return;
                    }
                }
            }
            let _ = to_pod.shutdown().await;
        });
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = from_pod.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let out = PortForwardOutput {
                    data: buf[..n].to_vec(),
                };
                if tx.send(Ok(out)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let pods = self
            .pods
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .clone();
        Ok(Response::new(StatsResponse {
            node: Some(Usage {
                cpu_nanocores: NODE_CPU_NANOCORES,
                memory_working_set_bytes: NODE_MEMORY_BYTES,
            }),
            pods,
            timestamp_unix_ms: now_ms,
            window_ms: STATS_WINDOW_MS,
        }))
    }

    async fn logs(&self, request: Request<LogRequest>) -> Result<Response<ChunkStream>, Status> {
        let req = request.into_inner();
        if req.container == "missing" {
            return Err(Status::not_found(format!(
                "container {} of pod {}/{} has no logs",
                req.container, req.namespace, req.pod
            )));
        }
        let mut lines: Vec<String> = (1..=5)
            .map(|i| {
                let stamp = if req.timestamps {
                    format!("2026-01-01T00:00:0{i}.000000000Z ")
                } else {
                    String::new()
                };
                format!("{stamp}line {i}\n")
            })
            .collect();
        if let Some(n) = req.tail_lines {
            let keep = usize::try_from(n.max(0)).unwrap_or(0).min(lines.len());
            lines.drain(..lines.len() - keep);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            for l in lines {
                if tx
                    .send(Ok(LogChunk {
                        data: l.into_bytes(),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if !req.follow {
                return;
            }
            // A container printing a line every 100 ms.
            let mut every = tokio::time::interval(Duration::from_millis(100));
            every.tick().await;
            for tick in 1.. {
                every.tick().await;
                let chunk = LogChunk {
                    data: format!("tick {tick}\n").into_bytes(),
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// A running stand-in agent; it stops when dropped.
pub struct StandInAgent {
    pub addr: SocketAddr,
    pods: Arc<Mutex<Vec<PodStats>>>,
    _runtime: tokio::runtime::Runtime,
}

impl StandInAgent {
    /// Serves on `ip` at a free port.
    pub fn start(ip: Ipv4Addr) -> StandInAgent {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the stand-in agent");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((ip, 0)))
            .expect("bind the stand-in agent");
        let addr = listener.local_addr().expect("its address");
        let pods = Arc::new(Mutex::new(Vec::new()));
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServer::new(StandIn {
                    ip: ip.into(),
                    pods: pods.clone(),
                }))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        StandInAgent {
            addr,
            pods,
            _runtime: runtime,
        }
    }

    /// From now on `stats` reports the pod `namespace/name` (any uid) with these containers:
    /// (name, CPU in nanocores, memory working set in bytes), over the stand-in's window.
    pub fn report_pod(&self, namespace: &str, name: &str, containers: &[(&str, u64, u64)]) {
        let pod = PodStats {
            namespace: namespace.into(),
            name: name.into(),
            uid: String::new(),
            containers: containers
                .iter()
                .map(|&(name, cpu, memory)| ContainerStats {
                    name: name.into(),
                    usage: Some(Usage {
                        cpu_nanocores: cpu,
                        memory_working_set_bytes: memory,
                    }),
                })
                .collect(),
            timestamp_unix_ms: 0,
            window_ms: 0,
        };
        self.pods.lock().expect("the stand-in's pods").push(pod);
    }

    /// A Node object whose agent endpoint is this stand-in.
    pub fn node_json(&self, name: &str) -> String {
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}"}},
            "status":{{"addresses":[{{"type":"InternalIP","address":"{}"}}],
            "daemonEndpoints":{{"kubeletEndpoint":{{"Port":{}}}}},
            "conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}}]}}}}"#,
            self.addr.ip(),
            self.addr.port()
        )
    }
}
