//! A stand-in for the node agent's gRPC service (`skiff.agent.v1.Agent`), so the API server's
//! streaming subresources can be tested before the agent exists. Every container "prints"
//! `line 1` .. `line 5`; `follow` then adds `tick N` every 100 ms until the client goes away;
//! the container `missing` does not exist.

use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use skiff_proto::agent::agent_server::{Agent, AgentServer};
use skiff_proto::agent::{LogChunk, LogRequest};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

struct Logs;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for Logs {
    type LogsStream = ChunkStream;

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
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServer::new(Logs))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        StandInAgent {
            addr,
            _runtime: runtime,
        }
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
