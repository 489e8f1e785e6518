//! The Raft-replicated, etcd-compatible key-value store the control plane rests on.
//!
//! Module map:
//! - [`wal`]: fsync-durable log records; [`raft_log`]: raft-rs `Storage` over it.
//! - [`mvcc`] and [`keys`]: the applied state (revision rows, leases, members) in sled;
//!   [`index`]: which revision holds each key, in memory.
//! - [`node`]: the Raft Ready loop thread; [`transport`]: batched peer streams.
//! - [`lease`]: leader-side lease expiry; [`api`]: the etcd v3 gRPC services.
//! - [`backup`]: snapshot files for `snapshot save`/`restore`.

pub mod api;
pub mod backup;
pub mod error;
pub mod index;
pub mod keys;
pub mod lease;
pub mod mvcc;
pub mod node;
pub mod raft_log;
mod raft_logger;
pub mod transport;
pub mod wal;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType};
use skiff_proto::etcdserverpb::{Member, ResponseHeader};
use skiff_proto::raft::raft_transport_client::RaftTransportClient;
use skiff_proto::raft::{LeaseRenewRequest, MembersRequest};
use skiff_proto::store::{command::Op, Command, MemberAttributes, MemberContext};
use tokio::sync::{oneshot, watch};
use tracing::info;

pub use error::StoreError;
use mvcc::{Applied, Mvcc};
use node::{NodeStatus, RaftSettings, Request, Shared};
use raft_log::RaftLog;
use transport::Transport;

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Whether this member starts a new cluster or joins a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// Everything needed to start one store member.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// URL peers use to reach this member, e.g. `http://127.0.0.1:2380`.
    pub peer_url: String,
    /// URL clients use to reach this member, as published in the member list.
    pub client_url: String,
    /// The initial members as (name, peer URL).
    pub initial_cluster: Vec<(String, String)>,
    pub state: ClusterState,
    pub cluster_token: String,
    pub snapshot_count: u64,
    pub max_request_bytes: usize,
}

impl StoreConfig {
    /// A single-member cluster in `data_dir`, listening on the given URLs.
    pub fn single(name: &str, data_dir: &Path, client_url: &str, peer_url: &str) -> StoreConfig {
        StoreConfig {
            name: name.to_string(),
            data_dir: data_dir.to_path_buf(),
            peer_url: peer_url.to_string(),
            client_url: client_url.to_string(),
            initial_cluster: vec![(name.to_string(), peer_url.to_string())],
            state: ClusterState::New,
            cluster_token: "skiff-cluster".into(),
            snapshot_count: 10_000,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// A deterministic member id, so every initial member computes the same ids for the others.
pub fn member_id(name: &str, peer_url: &str, token: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name
        .bytes()
        .chain([0])
        .chain(peer_url.bytes())
        .chain([0])
        .chain(token.bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// The IP a URL names, used to bind outgoing peer connections.
pub fn url_ip(url: &str) -> Option<IpAddr> {
    let uri: tonic::transport::Uri = url.parse().ok()?;
    uri.host()?
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .ok()
}

/// A running store member. Cheap to clone; every clone talks to the same Raft thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    tx: flume::Sender<Request>,
    shared: Arc<Shared>,
    mvcc: Mvcc,
    transport: Transport,
    local_ip: Option<IpAddr>,
    next_request: AtomicU64,
    max_request_bytes: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Storage(format!("{}: {e}", path.display()))
}

impl Store {
    /// Opens or creates the member's data and starts its Raft thread. Must run inside tokio.
    pub async fn start(cfg: StoreConfig) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
        let mvcc = Mvcc::open(&cfg.data_dir.join("state"))?;
        let id_file = cfg.data_dir.join("member_id");
        let mut known_members = mvcc.members()?;
        let id = match std::fs::read_to_string(&id_file) {
            Ok(s) => u64::from_str_radix(s.trim(), 16)
                .map_err(|_| StoreError::Storage(format!("{} is malformed", id_file.display())))?,
            Err(_) => {
                let id = match cfg.state {
                    ClusterState::New => bootstrap(&cfg, &mvcc)?,
                    ClusterState::Existing => {
                        let (id, members) = discover(&cfg).await?;
                        known_members = members;
                        id
                    }
                };
                write_durably(&id_file, format!("{id:x}\n").as_bytes())?;
                id
            }
        };
        if known_members.is_empty() {
            known_members = mvcc.members()?;
        }
        let log = RaftLog::open(&cfg.data_dir.join("wal"), mvcc.clone())?;
        let (applied, _) = mvcc.applied()?;
        let raft_cfg = raft::Config {
            id,
            election_tick: node::ELECTION_TICKS,
            min_election_tick: node::ELECTION_TICKS,
            max_election_tick: node::MAX_ELECTION_TICKS,
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            max_uncommitted_size: 256 << 20,
            ..Default::default()
        };
        raft_cfg
            .validate()
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let logger = raft_logger::logger();
        let mut raw = raft::RawNode::new(&raft_cfg, log, &logger)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let voters = raw
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .collect::<Vec<_>>();
        if voters == [id] {
            // Alone in the cluster: no need to wait an election timeout to lead.
            let _ = raw.campaign();
        }

        let (tx, rx) = flume::bounded(node::MAX_PENDING);
        let local_ip = url_ip(&cfg.peer_url);
        let transport = Transport::new(id, local_ip, tokio::runtime::Handle::current(), tx.clone());
        transport.set_members(&known_members);
        let shared = Arc::new(Shared {
            status: watch::channel(NodeStatus {
                id,
                ..Default::default()
            })
            .0,
            revision: watch::channel(mvcc.revision()?).0,
            leases: Default::default(),
        });
        shared.leases.lock().reset(&mvcc.leases()?);
        let settings = RaftSettings {
            id,
            snapshot_count: cfg.snapshot_count.max(1),
            catch_up_entries: (cfg.snapshot_count / 2).clamp(1, 5000),
            attributes: MemberAttributes {
                id,
                name: cfg.name.clone(),
                client_urls: vec![cfg.client_url.clone()],
            },
        };
        node::spawn(
            raw,
            mvcc.clone(),
            settings,
            shared.clone(),
            transport.clone(),
            tx.clone(),
            rx,
        )
        .map_err(|e| StoreError::Storage(format!("starting raft thread: {e}")))?;
        info!(member = format_args!("{id:x}"), name = %cfg.name, "store member started");
        Ok(Store {
            inner: Arc::new(Inner {
                id,
                tx,
                shared,
                mvcc,
                transport,
                local_ip,
                next_request: AtomicU64::new(1),
                max_request_bytes: cfg.max_request_bytes,
            }),
        })
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn mvcc(&self) -> &Mvcc {
        &self.inner.mvcc
    }

    pub fn status(&self) -> NodeStatus {
        self.inner.shared.status.borrow().clone()
    }

    /// Notified whenever the applied revision moves (watchers wait on this).
    pub fn revisions(&self) -> watch::Receiver<i64> {
        self.inner.shared.revision.subscribe()
    }

    pub fn max_request_bytes(&self) -> usize {
        self.inner.max_request_bytes
    }

    /// The header etcd puts on every response.
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.inner.mvcc.cluster_id().unwrap_or(0),
            member_id: self.inner.id,
            revision,
            raft_term: self.status().term,
        })
    }

    async fn call<T>(
        &self,
        make: impl Fn(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut status = self.inner.shared.status.subscribe();
        loop {
            if status.borrow().removed {
                return Err(StoreError::Stopped);
            }
            let (reply, rx) = oneshot::channel();
            self.inner.tx.try_send(make(reply)).map_err(|e| match e {
                flume::TrySendError::Full(_) => StoreError::TooManyRequests,
                flume::TrySendError::Disconnected(_) => StoreError::Stopped,
            })?;
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(left, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(StoreError::Stopped),
                Err(_) => Err(StoreError::Timeout),
            };
            match result {
                // Raft refused before logging anything, so retrying cannot apply twice.
                Err(StoreError::NoLeader) if Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let wait = status.wait_for(|s| s.leader != 0 || s.removed);
                    if tokio::time::timeout(left.min(Duration::from_millis(500)), wait)
                        .await
                        .is_err()
                    {
                        continue;
                    }
                }
                other => return other,
            }
        }
    }

    /// Replicates a command and returns what applying it produced.
    pub async fn propose(&self, op: Op) -> Result<Applied, StoreError> {
        let cmd = Command {
            request_id: self.inner.next_request.fetch_add(1, Ordering::Relaxed),
            origin: self.inner.id,
            op: Some(op),
        };
        mvcc::validate(&cmd)?;
        if cmd.encoded_len() > self.inner.max_request_bytes {
            return Err(StoreError::TooLarge);
        }
        let cmd = Arc::new(cmd);
        self.call(|reply| Request::Propose {
            cmd: cmd.clone(),
            reply,
        })
        .await
    }

    /// Waits until this member has applied everything committed when the call began (ReadIndex),
    /// so a read served afterwards is linearizable.
    pub async fn read_barrier(&self) -> Result<(), StoreError> {
        self.call(|reply| Request::ReadIndex { reply }).await
    }

    /// Proposes a membership change and waits for it to apply.
    pub async fn change_membership(
        &self,
        ty: ConfChangeType,
        id: u64,
        context: MemberContext,
    ) -> Result<(), StoreError> {
        let mut change = ConfChangeSingle::default();
        change.set_change_type(ty);
        change.node_id = id;
        self.call(|reply| Request::ConfChange {
            change: change.clone(),
            context: context.clone(),
            reply,
        })
        .await
    }

    /// A consistent copy of the state and its revision.
    pub async fn export(&self) -> Result<(Vec<u8>, i64), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send_async(Request::Export { reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Asks the current leader to hand leadership to `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), StoreError> {
        self.inner
            .tx
            .send_async(Request::TransferLeader(to))
            .await
            .map_err(|_| StoreError::Stopped)
    }

    /// Renews a lease (or only reads its TTL) on the leader, which alone keeps lease clocks.
    /// Returns (remaining TTL, granted TTL), or None if the lease does not exist.
    pub async fn lease_clock(
        &self,
        id: i64,
        renew: bool,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let status = self.status();
        if status.is_leader {
            let mut clocks = self.inner.shared.leases.lock();
            if renew && clocks.renew(id).is_none() {
                return Ok(None);
            }
            return Ok(clocks.remaining(id));
        }
        if status.leader == 0 {
            return Err(StoreError::NoLeader);
        }
        let url = self
            .inner
            .transport
            .peer_url(status.leader)
            .ok_or(StoreError::NoLeader)?;
        let channel =
            transport::connect(&url, self.inner.local_ip).map_err(|_| StoreError::NoLeader)?;
        let resp = tokio::time::timeout(
            Duration::from_secs(3),
            RaftTransportClient::new(channel).lease_renew(LeaseRenewRequest { id, renew }),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|s| StoreError::Storage(format!("forwarding to leader: {}", s.message())))?
        .into_inner();
        Ok(resp.found.then_some((resp.ttl, resp.granted_ttl)))
    }

    /// Feeds messages received from a peer into Raft.
    pub async fn step(&self, msgs: Vec<raft::eraftpb::Message>) -> Result<(), StoreError> {
        self.inner
            .tx
            .send_async(Request::Raft(msgs))
            .await
            .map_err(|_| StoreError::Stopped)
    }
}

/// The initial members named by the configuration, this member's id and the cluster id.
fn initial_members(cfg: &StoreConfig) -> Result<(Vec<Member>, u64, u64), StoreError> {
    let members: Vec<Member> = cfg
        .initial_cluster
        .iter()
        .map(|(name, url)| Member {
            id: member_id(name, url, &cfg.cluster_token),
            name: name.clone(),
            peer_ur_ls: vec![url.clone()],
            // Every member must bootstrap identical state; client URLs arrive by publication.
            client_ur_ls: vec![],
            is_learner: false,
        })
        .collect();
    let me = members
        .iter()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "--initial-cluster does not name this member ({})",
                cfg.name
            ))
        })?;
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let cluster_id = member_id(&format!("{ids:?}"), "", &cfg.cluster_token);
    Ok((members, me, cluster_id))
}

/// Writes the state of a new cluster and returns this member's id.
fn bootstrap(cfg: &StoreConfig, mvcc: &Mvcc) -> Result<u64, StoreError> {
    let (members, me, cluster_id) = initial_members(cfg)?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cs = node::conf_state_with_voters(&ids);
    mvcc.bootstrap(
        cluster_id,
        &members,
        (1, 1),
        &cs.write_to_bytes().unwrap_or_default(),
    )?;
    mvcc.make_durable()?;
    info!(
        cluster = format_args!("{cluster_id:x}"),
        members = members.len(),
        "bootstrapped a new cluster"
    );
    Ok(me)
}

/// Seeds a new member's data directory from a snapshot file, as the first member of a new
/// cluster made of `--initial-cluster`. Keys, revisions and leases carry over; membership and
/// the Raft log start afresh. Returns the restored revision.
pub fn restore(cfg: &StoreConfig, snapshot: &[u8]) -> Result<i64, StoreError> {
    let (revision, data) = backup::decode(snapshot)?;
    if cfg.data_dir.exists()
        && std::fs::read_dir(&cfg.data_dir)
            .map_err(io(&cfg.data_dir))?
            .next()
            .is_some()
    {
        return Err(StoreError::InvalidArgument(format!(
            "data directory {} is not empty; restore needs a fresh one",
            cfg.data_dir.display()
        )));
    }
    std::fs::create_dir_all(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
    let (members, me, cluster_id) = initial_members(cfg)?;
    let mvcc = Mvcc::open(&cfg.data_dir.join("state"))?;
    mvcc.import(data)?;
    mvcc.replace_members(cluster_id, &members)?;
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cs = node::conf_state_with_voters(&ids);
    mvcc.set_applied((1, 1), &cs.write_to_bytes().unwrap_or_default())?;
    mvcc.make_durable()?;
    write_durably(
        &cfg.data_dir.join("member_id"),
        format!("{me:x}\n").as_bytes(),
    )?;
    Ok(revision)
}

/// Asks the members listed in `--initial-cluster` who this member is (it was added by
/// `member add` with its peer URL) and who the others are.
async fn discover(cfg: &StoreConfig) -> Result<(u64, Vec<Member>), StoreError> {
    let local_ip = url_ip(&cfg.peer_url);
    for (name, url) in &cfg.initial_cluster {
        if *name == cfg.name {
            continue;
        }
        let Ok(channel) = transport::connect(url, local_ip) else {
            continue;
        };
        let mut client = RaftTransportClient::new(channel);
        let call = client.members(MembersRequest {});
        let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(3), call).await else {
            continue;
        };
        let resp = resp.into_inner();
        if let Some(me) = resp
            .members
            .iter()
            .find(|m| m.peer_ur_ls.contains(&cfg.peer_url))
        {
            return Ok((me.id, resp.members.clone()));
        }
        return Err(StoreError::InvalidArgument(format!(
            "no member with peer URL {} exists; add it first with `member add`",
            cfg.peer_url
        )));
    }
    Err(StoreError::Unhealthy)
}

fn write_durably(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}
