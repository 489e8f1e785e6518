//! Member-to-member transport: one long-lived gRPC stream per peer carrying batched Raft
//! messages. Messages to a peer that cannot keep up are dropped (Raft retransmits), so a slow
//! or partitioned peer never blocks the Raft thread.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::eraftpb::Message;
use skiff_proto::etcdserverpb::Member;
use skiff_proto::raft::raft_transport_client::RaftTransportClient;
use skiff_proto::raft::RaftBatch;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::debug;

use super::node::{is_snapshot, Request};

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Most messages in one batch on the wire.
const MAX_BATCH: usize = 512;
/// Largest message on the peer stream; snapshots travel whole.
pub const MAX_PEER_MESSAGE: usize = 1 << 30;
/// HTTP/2 flow-control window for peer streams; the 64 KiB default throttles append batches.
pub const PEER_WINDOW: u32 = 16 << 20;

struct Peer {
    url: String,
    tx: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

/// Sends Raft messages to peers; cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    /// Outgoing connections are made from this address, so a member's traffic can be told apart.
    local_ip: Option<IpAddr>,
    runtime: tokio::runtime::Handle,
    raft_tx: flume::Sender<Request>,
    peers: Mutex<HashMap<u64, Peer>>,
}

impl Transport {
    pub fn new(
        id: u64,
        local_ip: Option<IpAddr>,
        runtime: tokio::runtime::Handle,
        raft_tx: flume::Sender<Request>,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                id,
                local_ip,
                runtime,
                raft_tx,
                peers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Points the transport at the current members; peers no longer present are disconnected.
    pub fn set_members(&self, members: &[Member]) {
        let mut peers = self.inner.peers.lock();
        let wanted: HashMap<u64, String> = members
            .iter()
            .filter(|m| m.id != self.inner.id)
            .filter_map(|m| m.peer_ur_ls.first().map(|u| (m.id, u.clone())))
            .collect();
        peers.retain(|id, p| {
            let keep = wanted.get(id) == Some(&p.url);
            if !keep {
                p.task.abort();
            }
            keep
        });
        for (id, url) in wanted {
            if peers.contains_key(&id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let task = self
                .inner
                .runtime
                .spawn(run_peer(self.inner.clone(), id, url.clone(), rx));
            peers.insert(id, Peer { url, tx, task });
        }
    }

    /// The peer URL of a member, if known.
    pub fn peer_url(&self, id: u64) -> Option<String> {
        self.inner.peers.lock().get(&id).map(|p| p.url.clone())
    }

    /// Queues messages for their recipients without blocking.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let peers = self.inner.peers.lock();
        for m in msgs {
            match peers.get(&m.to) {
                Some(p) => {
                    if p.tx.try_send(m).is_err() {
                        debug!("peer queue full; dropping raft message");
                    }
                }
                None => debug!(to = m.to, "no address for raft message recipient"),
            }
        }
    }
}

/// Opens a channel to `url`, binding the local end to `local_ip` when given.
pub fn connect(url: &str, local_ip: Option<IpAddr>) -> Result<Channel, tonic::transport::Error> {
    let ep = Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(PEER_WINDOW)
        .initial_connection_window_size(PEER_WINDOW * 2);
    Ok(match local_ip {
        Some(ip) => {
            ep.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| connect_from(ip, uri)))
        }
        None => ep.connect_lazy(),
    })
}

async fn connect_from(ip: IpAddr, uri: Uri) -> std::io::Result<TokioIo<tokio::net::TcpStream>> {
    let host = uri
        .host()
        .unwrap_or("127.0.0.1")
        .trim_matches(|c| c == '[' || c == ']');
    let port = uri.port_u16().unwrap_or(2380);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "peer address did not resolve")
        })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(stream))
}

async fn run_peer(inner: Arc<Inner>, id: u64, url: String, mut rx: mpsc::Receiver<Message>) {
    let span = tracing::debug_span!("peer", peer = format_args!("{id:x}"), %url);
    let _g = span.enter();
    let mut backoff = Duration::from_millis(50);
    loop {
        let channel = match connect(&url, inner.local_ip) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "bad peer URL");
                return;
            }
        };
        let mut client = RaftTransportClient::new(channel)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
            .max_decoding_message_size(MAX_PEER_MESSAGE);
        let (btx, brx) = mpsc::channel::<RaftBatch>(8);
        let mut call = Box::pin(client.stream(tokio_stream::wrappers::ReceiverStream::new(brx)));
        let mut sent_any = false;
        loop {
            tokio::select! {
                res = &mut call => {
                    debug!(result = ?res.err(), "peer stream ended");
                    break;
                }
                msg = rx.recv() => {
                    let Some(first) = msg else { return };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(m) => batch.push(m),
                            Err(_) => break,
                        }
                    }
                    let snapshots: Vec<u64> = batch.iter().filter(|m| is_snapshot(m)).map(|m| m.to).collect();
                    let messages = batch.iter().filter_map(|m| m.write_to_bytes().ok()).collect();
                    let ok = btx.send(RaftBatch { from: inner.id, messages }).await.is_ok();
                    for to in snapshots {
                        let _ = inner.raft_tx.try_send(Request::SnapshotSent { to, ok });
                    }
                    if !ok {
                        break;
                    }
                    sent_any = true;
                }
            }
        }
        let _ = inner.raft_tx.try_send(Request::Unreachable(id));
        if sent_any {
            backoff = Duration::from_millis(50);
        }
        // Reconnect with backoff; messages queued meanwhile are retransmitted by Raft as needed.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
        while rx.try_recv().is_ok() {}
    }
}

/// Decodes a batch received from a peer.
pub fn decode_batch(batch: &RaftBatch) -> Vec<Message> {
    batch
        .messages
        .iter()
        .filter_map(|b| Message::parse_from_bytes(b).ok())
        .collect()
}
