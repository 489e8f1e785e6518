//! `pods/portforward`: TCP connections to ports in a pod, each opened by the pod's node agent
//! (`skiff.agent.v1.Agent/PortForward`) and relayed to the client over one of two protocols:
//! - the WebSocket channel protocol (`v4.channel.k8s.io`, the Python client's): the ports come
//!   from the query; port i has data channel 2i and error channel 2i+1, and each channel's
//!   first message is the port number, little-endian;
//! - SPDY/3.1 tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl's): the client
//!   opens a data and an error stream per local connection, paired by their `requestID`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use skiff_proto::agent::agent_client::AgentClient;
use skiff_proto::agent::port_forward_input::Input;
use skiff_proto::agent::{PortForwardInput, PortForwardStart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::{debug, info_span, Instrument};

use super::agent;
use super::channels::{self, Incoming};
use super::spdy;
use super::status::Status;
use crate::store::Store;

/// Chunks that may wait in either direction of one connection.
const QUEUE: usize = 16;
/// Connections the SPDY client may have half-opened (one stream of the pair) at once.
const MAX_UNPAIRED: usize = 256;
/// Largest WebSocket message sent to the client.
const CHUNK: usize = 32 * 1024;

/// The pod a session forwards into, as the agent's requests name it.
#[derive(Clone)]
struct Target {
    client: AgentClient<Channel>,
    namespace: String,
    pod: String,
    pod_uid: String,
}

impl Target {
    /// Relays one connection to `port`: bytes from `input` go to the pod until it ends (which
    /// half-closes the connection); bytes from the pod go to `output`. An error is the text for
    /// the client's error stream.
    async fn connection(
        &self,
        port: u16,
        mut input: mpsc::Receiver<Bytes>,
        output: mpsc::Sender<Bytes>,
    ) -> Result<(), String> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let start = PortForwardStart {
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            pod_uid: self.pod_uid.clone(),
            port: port.into(),
        };
        // Cannot fail: the receiver is alive and the queue empty.
        let _ = tx.try_send(PortForwardInput {
            input: Some(Input::Start(start)),
        });
        let forward_input = tokio::spawn(async move {
            while let Some(data) = input.recv().await {
                let msg = PortForwardInput {
                    input: Some(Input::Data(data.to_vec())),
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let why = |s: tonic::Status| {
            format!(
                "error forwarding port {port} to pod {}, uid {}: {}",
                self.pod,
                self.pod_uid,
                s.message()
            )
        };
        let result = async {
            let mut from_pod = self
                .client
                .clone()
                .port_forward(ReceiverStream::new(rx))
                .await
                .map_err(why)?
                .into_inner();
            while let Some(chunk) = from_pod.message().await.map_err(why)? {
                if output.send(Bytes::from(chunk.data)).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        forward_input.abort();
        result
    }
}

/// The ports of a WebSocket port-forward request: `ports=8080,9090` or repeated `ports`.
fn ports(params: &[(String, String)]) -> Result<Vec<u16>, Status> {
    let mut out = Vec::new();
    for p in params
        .iter()
        .filter(|(k, _)| k == "ports")
        .flat_map(|(_, v)| v.split(','))
    {
        let p = p.trim();
        match p.parse::<u16>() {
            Ok(n) if n > 0 => out.push(n),
            _ => {
                return Err(Status::bad_request(format!(
                    "unable to parse \"{p}\" as a port: must be an integer between 1 and 65535"
                )))
            }
        }
    }
    Ok(out)
}

/// Serves `GET .../pods/<name>/portforward` with a WebSocket upgrade.
pub async fn serve(
    store: &Store,
    pod: Value,
    params: &[(String, String)],
    headers: &HeaderMap,
    ws: Option<WebSocketUpgrade>,
) -> Result<Response, Status> {
    let phase = agent::phase(&pod);
    if phase != "Running" {
        return Err(Status::bad_request(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let (ws, protocol) = channels::negotiate(headers, ws, &[channels::SPDY_TUNNEL, channels::V4])?;
    let ports = ports(params)?;
    if protocol == channels::V4 && ports.is_empty() {
        return Err(Status::bad_request(
            "query parameter \"port\" is required".into(),
        ));
    }
    let (client, node) = agent::connect(store, &pod).await?;
    let (namespace, pod_name, pod_uid) = agent::pod_identity(&pod);
    let span = info_span!("portforward", pod = %format!("{namespace}/{pod_name}"), %node);
    let target = Target {
        client,
        namespace,
        pod: pod_name,
        pod_uid,
    };
    Ok(ws.on_upgrade(move |socket| {
        async move {
            if protocol == channels::V4 {
                channel_session(socket, target, ports).await
            } else {
                spdy_session(socket, target).await
            }
        }
        .instrument(span)
    }))
}

/// One WebSocket channel session: one connection per port, for as long as any is open.
async fn channel_session(socket: WebSocket, target: Target, ports: Vec<u16>) {
    let (mut sink, mut source) = socket.split();
    let (frames, mut outgoing) = mpsc::channel::<Message>(QUEUE);
    let mut inputs = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (data_ch, error_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, error_ch] {
            if sink
                .send(channels::frame(ch, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
        let (input_tx, input_rx) = mpsc::channel(QUEUE);
        inputs.push(Some(input_tx));
        let (output_tx, mut output_rx) = mpsc::channel::<Bytes>(QUEUE);
        let frames = frames.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let relay = {
                let frames = frames.clone();
                tokio::spawn(async move {
                    while let Some(data) = output_rx.recv().await {
                        if frames.send(channels::frame(data_ch, &data)).await.is_err() {
                            break;
                        }
                    }
                })
            };
            let result = target.connection(port, input_rx, output_tx).await;
            let _ = relay.await;
            if let Err(message) = result {
                debug!(port, %message, "forwarding failed");
                let _ = frames
                    .send(channels::frame(error_ch, message.as_bytes()))
                    .await;
            }
        });
    }
    drop(frames);
    loop {
        tokio::select! {
            frame = outgoing.recv() => match frame {
                Some(f) => if sink.send(f).await.is_err() { break },
                // Every connection has ended.
                None => break,
            },
            message = source.next() => match message.map(|m| m.map(|m| channels::parse(m, false))) {
                Some(Ok(Incoming::Data(ch, data))) if ch % 2 == 0 => {
                    let i = usize::from(ch / 2);
                    if let Some(Some(tx)) = inputs.get(i) {
                        if tx.send(Bytes::from(data)).await.is_err() {
                            inputs[i] = None;
                        }
                    }
                }
                Some(Ok(Incoming::End)) | Some(Err(_)) | None => {
                    // The client is gone: end every connection's input.
                    inputs.clear();
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.send(channels::normal_close()).await;
}

/// One SPDY session tunnelled in the WebSocket: the WebSocket's binary messages are the byte
/// stream the SPDY frames travel in, in both directions.
async fn spdy_session(socket: WebSocket, target: Target) {
    let (mut sink, mut source) = socket.split();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_ws, mut to_ws) = tokio::io::split(ours);
    let (read, write) = tokio::io::split(theirs);
    let mut streams = spdy::serve(read, write);
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(b) => b,
                Message::Text(t) => t.into_bytes(),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if to_ws.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to_ws.shutdown().await;
    });
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_ws.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(channels::normal_close()).await;
    });
    let mut unpaired: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> =
        HashMap::new();
    while let Some(stream) = streams.next().await {
        let request = stream.header("requestid").unwrap_or("").to_string();
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        debug!(id = stream.id, %request, %kind, "stream opened");
        if unpaired.len() >= MAX_UNPAIRED && !unpaired.contains_key(&request) {
            debug!(%request, "too many half-opened connections; refusing the stream");
            stream.writer.reset().await;
            continue;
        }
        let pair = unpaired.entry(request.clone()).or_default();
        match kind.as_str() {
            "data" if pair.0.is_none() => pair.0 = Some(stream),
            "error" if pair.1.is_none() => pair.1 = Some(stream),
            _ => {
                debug!(%request, %kind, "unexpected stream");
                stream.writer.reset().await;
                continue;
            }
        }
        if matches!(unpaired.get(&request), Some((Some(_), Some(_)))) {
            if let Some((Some(data), Some(error))) = unpaired.remove(&request) {
                tokio::spawn(spdy_connection(target.clone(), data, error));
            }
        }
    }
    inbound.abort();
    let _ = outbound.await;
}

/// Relays one kubectl connection: its data stream to the pod's port and back, and any failure
/// on its error stream, which is closed last so kubectl knows the connection is done.
async fn spdy_connection(target: Target, data: spdy::Stream, error: spdy::Stream) {
    let port = data.header("port").and_then(|p| p.parse::<u16>().ok());
    let Some(port) = port.filter(|p| *p > 0) else {
        let _ = error
            .writer
            .write(Bytes::from(format!(
                "invalid port {:?}",
                data.header("port").unwrap_or("")
            )))
            .await;
        let _ = error.writer.close().await;
        data.writer.reset().await;
        return;
    };
    let spdy::Stream {
        reader: mut data_in,
        writer: data_out,
        ..
    } = data;
    let (input_tx, input_rx) = mpsc::channel(QUEUE);
    let (output_tx, mut output_rx) = mpsc::channel::<Bytes>(QUEUE);
    let reader = tokio::spawn(async move {
        while let Some(chunk) = data_in.read().await {
            if input_tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    let writer = {
        let data_out = data_out.clone();
        tokio::spawn(async move {
            while let Some(chunk) = output_rx.recv().await {
                if data_out.write(chunk).await.is_err() {
                    break;
                }
            }
        })
    };
    let result = target.connection(port, input_rx, output_tx).await;
    let _ = writer.await;
    reader.abort();
    let _ = data_out.close().await;
    if let Err(message) = result {
        debug!(port, %message, "forwarding failed");
        let _ = error.writer.write(Bytes::from(message)).await;
    }
    let _ = error.writer.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        let q = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap();
        assert_eq!(ports(&q("ports=8080,9090")).unwrap(), [8080, 9090]);
        assert_eq!(ports(&q("ports=80&ports=81")).unwrap(), [80, 81]);
        assert!(ports(&q("ports=0")).is_err());
        assert!(ports(&q("ports=http")).is_err());
        assert!(ports(&q("")).unwrap().is_empty());
    }
}
