//! `PortForward`: one TCP connection to a port on the pod's loopback, as `kubectl
//! port-forward` opens one per local connection. The connection is made from a thread inside
//! the pod's network namespace ([`crate::netns::connect_loopback`]) and then relayed both
//! ways; the end of the client's input half-closes it, and the pod's end of it ends the
//! output.

use std::time::Duration;

use skiff_proto::agent::port_forward_input::Input;
use skiff_proto::agent::{PortForwardInput, PortForwardOutput};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{BoxStream, PodDirectory};

/// How long connecting to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunks from the pod waiting for the client.
const OUTPUT_QUEUE: usize = 16;
/// Largest chunk read from the pod.
const CHUNK: usize = 32 * 1024;

/// Serves one forwarded connection.
pub async fn serve(
    pods: &dyn PodDirectory,
    mut input: Streaming<PortForwardInput>,
) -> Result<BoxStream<PortForwardOutput>, Status> {
    let start = match input.message().await? {
        Some(PortForwardInput {
            input: Some(Input::Start(s)),
        }) => s,
        Some(_) => {
            return Err(Status::invalid_argument(
                "port-forward: the first message must be the start message",
            ))
        }
        None => {
            return Err(Status::invalid_argument(
                "port-forward: the stream ended before the start message",
            ))
        }
    };
    let port = u16::try_from(start.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "invalid port {}: must be between 1 and 65535",
                start.port
            ))
        })?;
    let netns = pods
        .pod_netns(&start.namespace, &start.pod, &start.pod_uid)
        .ok_or_else(|| {
            Status::not_found(format!(
                "pod {:?} not found in namespace {:?} on this node",
                start.pod, start.namespace
            ))
        })?;
    let stream = crate::netns::connect_loopback(netns.clone(), port, CONNECT_TIMEOUT)
        .await
        .map_err(|e| {
            Status::unavailable(format!(
                "error forwarding port {port} to pod {}/{}, uid {}: failed to connect to \
                 localhost:{port} inside namespace {:?}, IPv4: dial tcp4 127.0.0.1:{port}: \
                 connect: {}",
                start.namespace,
                start.pod,
                start.pod_uid,
                netns.display().to_string(),
                go_error_text(&e)
            ))
        })?;
    let (mut from_pod, mut to_pod) = stream.into_split();
    let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);

    // Pod → client, until the pod closes its side or the client is gone.
    let out_tx = tx.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = tokio::select! {
                _ = out_tx.closed() => return,
                r = from_pod.read(&mut buf) => match r {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = out_tx
                            .send(Err(Status::aborted(format!("reading from the pod: {e}"))))
                            .await;
                        return;
                    }
                },
            };
            let chunk = PortForwardOutput {
                data: buf[..n].to_vec(),
            };
            if out_tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    drop(tx);

    // Client → pod; the end of the input half-closes the connection.
    tokio::spawn(async move {
        loop {
            match input.message().await {
                Ok(Some(PortForwardInput {
                    input: Some(Input::Data(data)),
                })) => {
                    if to_pod.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let _ = to_pod.shutdown().await;
                    return;
                }
                // The client is gone; dropping the write half closes the connection once
                // the read side ends too.
                Err(_) => return,
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// An I/O error as Go prints a syscall error (`connection refused`), as upstream's message
/// carries it.
fn go_error_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}
