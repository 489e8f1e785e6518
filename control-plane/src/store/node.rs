//! The Raft Ready loop, on a dedicated OS thread.
//!
//! Everything that touches the `RawNode` happens here, in the order raft-rs prescribes: send
//! what may go early, apply a snapshot, apply committed entries, make new entries and hard state
//! durable (one fdatasync per Ready, so concurrent proposals commit together), then send what
//! had to wait for durability. Async request handlers talk to this thread through a bounded
//! channel and get answers on oneshot channels.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message,
    MessageType,
};
use raft::{RawNode, StateRole};
use raft_proto::ConfChangeI as _;
use skiff_proto::etcdserverpb::{LeaseRevokeRequest, Member};
use skiff_proto::store::{command::Op, Command, MemberAttributes, MemberContext};
use tokio::sync::{oneshot, watch};
use tracing::{debug, error, info, warn};

use super::error::StoreError;
use super::lease::LeaseClocks;
use super::mvcc::{Applied, ApplyGroup, MemberChange, Mvcc};
use super::raft_log::RaftLog;
use super::transport::Transport;

/// How often Raft's logical clock ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks without a heartbeat before a follower campaigns, at the least; also how long a leader
/// goes without hearing from a quorum before it steps down.
pub const ELECTION_TICKS: usize = 8;
/// Upper end (exclusive) of the randomised election timeout. Kept well under twice the minimum so
/// a crashed leader is replaced, and writes flow again, within two seconds.
pub const MAX_ELECTION_TICKS: usize = 14;
/// How long a proposal or read may wait for Raft before the client is told to retry.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests taken off the queue before the next Ready, which bounds a Ready's size.
const MAX_BATCH: usize = 4096;
/// Most requests waiting for Raft at once; beyond that clients are told to back off.
pub const MAX_PENDING: usize = 100_000;

/// Work for the Raft thread.
pub enum Request {
    Propose {
        /// Shared so a retry after "no leader" need not copy the value.
        cmd: Arc<Command>,
        reply: oneshot::Sender<Result<Applied, StoreError>>,
    },
    ConfChange {
        change: ConfChangeSingle,
        context: MemberContext,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Raft(Vec<Message>),
    Unreachable(u64),
    SnapshotSent {
        to: u64,
        ok: bool,
    },
    /// The state machine is durable through this index (sled flushed and fsynced).
    Durable(u64),
    /// A consistent export of the state, with the revision it is at.
    Export {
        reply: oneshot::Sender<Result<(Vec<u8>, i64), StoreError>>,
    },
    TransferLeader(u64),
}

/// What the Raft thread last reported about itself, for status calls and routing.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub id: u64,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub is_leader: bool,
    pub is_learner: bool,
    /// This member was removed from the cluster and serves nothing any more.
    pub removed: bool,
}

/// Knobs for one member's Raft loop.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub id: u64,
    /// Applied entries between durable checkpoints of the state machine (and log compaction).
    pub snapshot_count: u64,
    /// Entries kept in the log behind a checkpoint so slow followers can catch up without one.
    pub catch_up_entries: u64,
    /// Name and client URLs this member publishes through Raft once it has started.
    pub attributes: MemberAttributes,
}

/// Shared state the Raft thread publishes to request handlers.
pub struct Shared {
    pub status: watch::Sender<NodeStatus>,
    pub revision: watch::Sender<i64>,
    pub leases: Mutex<LeaseClocks>,
}

/// Where a proposer waits for what applying its entry produced.
type ApplyReply = oneshot::Sender<Result<Applied, StoreError>>;

/// A proposer's reply channel and what to send it once its entry's group is in sled.
type Reply = (ApplyReply, Result<Applied, StoreError>);

/// A membership change awaiting commit: target member, reply, deadline.
type PendingConfChange = (u64, oneshot::Sender<Result<(), StoreError>>, Instant);

struct PendingRead {
    waiters: Vec<oneshot::Sender<Result<(), StoreError>>>,
    deadline: Instant,
}

struct Loop {
    node: RawNode<RaftLog>,
    mvcc: Mvcc,
    settings: RaftSettings,
    shared: Arc<Shared>,
    transport: Transport,
    rx: flume::Receiver<Request>,
    self_tx: flume::Sender<Request>,
    proposals: HashMap<u64, (oneshot::Sender<Result<Applied, StoreError>>, Instant)>,
    /// Proposals that arrived this round; they go to Raft as one message.
    proposals_new: Vec<(Arc<Command>, ApplyReply)>,
    conf_change: Option<PendingConfChange>,
    /// Reads waiting for a batch's ReadIndex to be confirmed by a quorum.
    reads_unconfirmed: HashMap<u64, PendingRead>,
    /// Reads confirmed at an index, waiting for the state machine to apply up to it.
    reads_confirmed: Vec<(u64, PendingRead)>,
    /// Reads that arrived this round; they share one ReadIndex.
    reads_new: Vec<oneshot::Sender<Result<(), StoreError>>>,
    next_read_ctx: u64,
    last_durable: u64,
    checkpointing: bool,
    leader: u64,
    attributes_published: Option<Instant>,
}

/// Starts the Raft thread. `tx`/`rx` are the request channel the handlers share.
pub fn spawn(
    node: RawNode<RaftLog>,
    mvcc: Mvcc,
    settings: RaftSettings,
    shared: Arc<Shared>,
    transport: Transport,
    tx: flume::Sender<Request>,
    rx: flume::Receiver<Request>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let last_durable = node.store().first_index().saturating_sub(1);
    let mut l = Loop {
        node,
        mvcc,
        settings,
        shared,
        transport,
        rx,
        self_tx: tx,
        proposals: HashMap::new(),
        proposals_new: Vec::new(),
        conf_change: None,
        reads_unconfirmed: HashMap::new(),
        reads_confirmed: Vec::new(),
        reads_new: Vec::new(),
        next_read_ctx: 1,
        last_durable,
        checkpointing: false,
        leader: 0,
        attributes_published: None,
    };
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || l.run())
}

impl Loop {
    fn run(&mut self) {
        let span = tracing::info_span!("raft", member = format_args!("{:x}", self.settings.id));
        let _g = span.enter();
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(req) => {
                    self.handle(req);
                    for _ in 0..MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(req) => self.handle(req),
                            Err(_) => break,
                        }
                    }
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
            self.flush_proposals();
            self.flush_reads();
            let now = Instant::now();
            if now >= next_tick {
                self.node.tick();
                next_tick = now + TICK;
                self.on_tick(now);
            }
            // Advancing can make more work ready (say, entries committed by the append just
            // persisted); handle it now rather than at the next message or tick.
            for _ in 0..4 {
                if !self.node.has_ready() {
                    break;
                }
                if let Err(e) = self.on_ready() {
                    // A storage failure leaves Raft state unknown: stopping is the only safe move.
                    error!(error = %e, "raft storage failed; stopping the member");
                    self.fail_all(StoreError::Stopped);
                    self.shared.status.send_modify(|s| s.removed = true);
                    return;
                }
            }
            if self.shared.status.borrow().removed {
                // A removed member's heartbeats could hold off the election of a new leader.
                info!("stopping raft: this member is no longer part of the cluster");
                self.fail_all(StoreError::Stopped);
                return;
            }
            // Proposals must never be made between `ready()` and `advance()`.
            self.publish_attributes(Instant::now());
        }
    }

    fn handle(&mut self, req: Request) {
        match req {
            Request::Propose { cmd, reply } => self.propose(cmd, reply),
            Request::ConfChange {
                change,
                context,
                reply,
            } => self.propose_conf_change(change, context, reply),
            Request::ReadIndex { reply } => self.reads_new.push(reply),
            Request::Raft(msgs) => {
                for m in msgs {
                    if let Err(e) = self.node.step(m) {
                        debug!(error = %e, "dropped raft message");
                    }
                }
            }
            Request::Unreachable(id) => self.node.report_unreachable(id),
            Request::SnapshotSent { to, ok } => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
            }
            Request::Durable(index) => self.on_durable(index),
            Request::Export { reply } => {
                let out = self
                    .mvcc
                    .export()
                    .and_then(|d| Ok((d, self.mvcc.revision()?)));
                let _ = reply.send(out);
            }
            Request::TransferLeader(to) => self.node.transfer_leader(to),
        }
    }

    fn propose(&mut self, cmd: Arc<Command>, reply: oneshot::Sender<Result<Applied, StoreError>>) {
        if self.proposals.len() + self.proposals_new.len() >= MAX_PENDING {
            let _ = reply.send(Err(StoreError::TooManyRequests));
            return;
        }
        self.proposals_new.push((cmd, reply));
    }

    /// Hands this round's proposals to Raft as one message: the leader appends them together
    /// and a follower forwards them together, instead of one message (and one broadcast) each.
    fn flush_proposals(&mut self) {
        if self.proposals_new.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.proposals_new);
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.settings.id;
        m.set_entries(
            batch
                .iter()
                .map(|(cmd, _)| Entry {
                    data: cmd.encode_to_vec().into(),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
                .into(),
        );
        let outcome = match self.node.step(m) {
            Ok(()) => Ok(()),
            Err(raft::Error::ProposalDropped) => Err(StoreError::NoLeader),
            Err(e) => Err(StoreError::Storage(e.to_string())),
        };
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        for (cmd, reply) in batch {
            match &outcome {
                Ok(()) => {
                    self.proposals.insert(cmd.request_id, (reply, deadline));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn propose_conf_change(
        &mut self,
        change: ConfChangeSingle,
        context: MemberContext,
        reply: oneshot::Sender<Result<(), StoreError>>,
    ) {
        if self.conf_change.is_some() {
            let _ = reply.send(Err(StoreError::Unhealthy));
            return;
        }
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(change.clone());
        match self.node.propose_conf_change(context.encode_to_vec(), cc) {
            Ok(()) => {
                self.conf_change = Some((change.node_id, reply, Instant::now() + REQUEST_TIMEOUT))
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(StoreError::NoLeader));
            }
            Err(e) => {
                let _ = reply.send(Err(StoreError::InvalidArgument(e.to_string())));
            }
        }
    }

    /// Issues one ReadIndex for every read that arrived since the last round.
    fn flush_reads(&mut self) {
        if self.reads_new.is_empty() {
            return;
        }
        // Raft drops a ReadIndex silently when no leader is known, or when the leader has not
        // yet committed an entry of its term; answer the first (callers retry NoLeader) and
        // hold the second until the term's first commit.
        if self.node.raft.leader_id == 0 {
            for w in std::mem::take(&mut self.reads_new) {
                let _ = w.send(Err(StoreError::NoLeader));
            }
            return;
        }
        if self.node.raft.state == StateRole::Leader && !self.node.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let waiters = std::mem::take(&mut self.reads_new);
        self.reads_unconfirmed.insert(
            ctx,
            PendingRead {
                waiters,
                deadline: Instant::now() + REQUEST_TIMEOUT,
            },
        );
        // The leader dedups pending reads by context, so it must be unique cluster-wide.
        let mut rctx = self.settings.id.to_be_bytes().to_vec();
        rctx.extend_from_slice(&ctx.to_be_bytes());
        self.node.read_index(rctx);
    }

    fn on_tick(&mut self, now: Instant) {
        // Requests that Raft silently dropped (no leader, lost forwarding) end in a timeout.
        let expired: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, (_, d))| *d <= now)
            .map(|(k, _)| *k)
            .collect();
        for id in expired {
            if let Some((reply, _)) = self.proposals.remove(&id) {
                let _ = reply.send(Err(StoreError::Timeout));
            }
        }
        if self.conf_change.as_ref().is_some_and(|(_, _, d)| *d <= now) {
            if let Some((_, reply, _)) = self.conf_change.take() {
                let _ = reply.send(Err(StoreError::Timeout));
            }
        }
        let stale: Vec<u64> = self
            .reads_unconfirmed
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for ctx in stale {
            if let Some(r) = self.reads_unconfirmed.remove(&ctx) {
                for w in r.waiters {
                    let _ = w.send(Err(StoreError::Timeout));
                }
            }
        }
        if self.node.raft.state == StateRole::Leader {
            let due = self.shared.leases.lock().due(now);
            for id in due {
                let cmd = Command {
                    request_id: 0,
                    origin: self.settings.id,
                    op: Some(Op::LeaseRevoke(LeaseRevokeRequest { id })),
                };
                info!(lease = format_args!("{id:x}"), "lease expired; revoking");
                let _ = self.node.propose(vec![], cmd.encode_to_vec());
            }
        }
    }

    /// Tells the cluster this member's name and client URLs, once there is a leader.
    fn publish_attributes(&mut self, now: Instant) {
        if self.leader == 0
            || self
                .attributes_published
                .is_some_and(|t| now < t + Duration::from_secs(5))
        {
            return;
        }
        let want = &self.settings.attributes;
        match self.mvcc.member(self.settings.id) {
            Ok(Some(m)) if m.name == want.name && m.client_ur_ls == want.client_urls => {
                self.attributes_published = Some(now + Duration::from_secs(3600 * 24 * 365));
            }
            Ok(Some(_)) => {
                let cmd = Command {
                    request_id: 0,
                    origin: self.settings.id,
                    op: Some(Op::MemberAttributes(want.clone())),
                };
                let _ = self.node.propose(vec![], cmd.encode_to_vec());
                self.attributes_published = Some(now);
            }
            _ => {}
        }
    }

    fn on_ready(&mut self) -> Result<(), StoreError> {
        let mut ready = self.node.ready();
        if let Some(ss) = ready.ss() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.apply_snapshot(ready.snapshot().clone())?;
        }
        self.apply_entries(ready.take_committed_entries())?;
        let mut dirty = false;
        if !ready.entries().is_empty() {
            self.node.mut_store().append(ready.entries());
            dirty = true;
        }
        if let Some(hs) = ready.hs() {
            self.node.mut_store().set_hard_state(hs);
            dirty = dirty || ready.must_sync();
        }
        if dirty {
            self.node.mut_store().persist()?;
        }
        self.transport.send(ready.take_persisted_messages());
        for rs in ready.take_read_states() {
            let ctx = rs
                .request_ctx
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if let Some(r) = self.reads_unconfirmed.remove(&ctx) {
                self.reads_confirmed.push((rs.index, r));
            }
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit);
        }
        self.transport.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.node.advance_apply();
        self.release_reads();
        self.publish_status();
        self.maybe_checkpoint();
        Ok(())
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        if leader != self.leader {
            info!(leader = format_args!("{leader:x}"), ?role, "leader changed");
            // Proposals in flight may be lost with the old leader; clients must retry.
            for (_, (reply, _)) in self.proposals.drain() {
                let _ = reply.send(Err(StoreError::LeaderChanged));
            }
            // ReadIndex requests the old leader had not confirmed may be lost with it (a dead
            // leader never answers, and a deposed one forgets them), which left them waiting out
            // REQUEST_TIMEOUT: every linearizable read on this member, and so every API write,
            // stalled for five seconds and then failed after a leader crash, even though a new
            // leader took over within two. A read changes nothing, so ask again: the next round
            // sends them to the new leader (or answers NoLeader, which callers wait out).
            for (_, r) in self.reads_unconfirmed.drain() {
                self.reads_new.extend(r.waiters);
            }
            if role == StateRole::Leader {
                self.shared.leases.lock().promote();
            }
            self.leader = leader;
        }
    }

    fn apply_snapshot(&mut self, snap: raft::eraftpb::Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        info!(
            index = meta.index,
            term = meta.term,
            "applying snapshot from leader"
        );
        self.mvcc.import(&snap.data)?;
        let cs = meta.get_conf_state().clone();
        self.mvcc.set_applied(
            (meta.index, meta.term),
            &cs.write_to_bytes().unwrap_or_default(),
        )?;
        self.mvcc.make_durable()?;
        self.node
            .mut_store()
            .reset_to_snapshot(meta.index, meta.term, cs);
        self.node.mut_store().persist()?;
        self.last_durable = meta.index;
        self.shared.leases.lock().reset(&self.mvcc.leases()?);
        self.transport.set_members(&self.mvcc.members()?);
        let _ = self.shared.revision.send(self.mvcc.revision()?);
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mvcc = self.mvcc.clone();
        let mut group = ApplyGroup::new(&mvcc)?;
        // Replies wait until the group is in sled, so a client reads its own write.
        let mut replies = Vec::new();
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => group.noop(e.index, e.term),
                EntryType::EntryNormal => self.apply_command(&mut group, &e, &mut replies)?,
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    group.flush()?;
                    self.apply_conf_change(&e)?
                }
            }
        }
        group.flush()?;
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        let _ = self.shared.revision.send(self.mvcc.revision()?);
        Ok(())
    }

    fn apply_command(
        &mut self,
        group: &mut ApplyGroup,
        e: &Entry,
        replies: &mut Vec<Reply>,
    ) -> Result<(), StoreError> {
        let cmd = match Command::decode(e.data.as_ref()) {
            Ok(c) => c,
            Err(err) => {
                warn!(index = e.index, error = %err, "undecodable entry; skipping");
                group.noop(e.index, e.term);
                return Ok(());
            }
        };
        let result = group.apply(e.index, e.term, &cmd);
        if let Err(StoreError::Storage(msg)) = &result {
            return Err(StoreError::Storage(msg.clone()));
        }
        match (&cmd.op, &result) {
            (Some(Op::LeaseGrant(_)), Ok(Applied::LeaseGrant(g))) => {
                self.shared.leases.lock().grant(g.id, g.ttl)
            }
            (Some(Op::LeaseRevoke(r)), _) => self.shared.leases.lock().revoke(r.id),
            _ => {}
        }
        if cmd.origin == self.settings.id && cmd.request_id != 0 {
            if let Some((reply, _)) = self.proposals.remove(&cmd.request_id) {
                replies.push((reply, result));
            }
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<(), StoreError> {
        let cc: ConfChangeV2 = if e.get_entry_type() == EntryType::EntryConfChangeV2 {
            ConfChangeV2::parse_from_bytes(&e.data)
                .map_err(|x| StoreError::Storage(x.to_string()))?
        } else {
            let v1 = raft::eraftpb::ConfChange::parse_from_bytes(&e.data)
                .map_err(|x| StoreError::Storage(x.to_string()))?;
            raft::prelude::ConfChange::into_v2(v1)
        };
        let cs = match self.node.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(err) => {
                warn!(index = e.index, error = %err, "rejected membership change");
                if let Some((_, reply, _)) = self.conf_change.take() {
                    let _ = reply.send(Err(StoreError::InvalidArgument(err.to_string())));
                }
                return self.mvcc.apply_noop(e.index, e.term);
            }
        };
        // RawNode carries the proposal's context on the entry; a V1 change carries it inside.
        let raw_ctx = if e.context.is_empty() {
            cc.get_context()
        } else {
            &e.context[..]
        };
        let ctx = MemberContext::decode(raw_ctx).unwrap_or_default();
        let cs_bytes = cs.write_to_bytes().unwrap_or_default();
        for change in cc.get_changes() {
            let id = change.node_id;
            let member_change = match change.get_change_type() {
                ConfChangeType::AddNode if self.mvcc.member(id)?.is_some_and(|m| m.is_learner) => {
                    MemberChange::Promote(id)
                }
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    MemberChange::Add(Member {
                        id,
                        name: ctx.name.clone(),
                        peer_ur_ls: ctx.peer_urls.clone(),
                        client_ur_ls: vec![],
                        is_learner: change.get_change_type() == ConfChangeType::AddLearnerNode,
                    })
                }
                ConfChangeType::RemoveNode => MemberChange::Remove(id),
            };
            info!(?member_change, "membership changed");
            self.mvcc
                .apply_member_change(e.index, e.term, &member_change, &cs_bytes)?;
            if id == self.settings.id && matches!(member_change, MemberChange::Remove(_)) {
                warn!("this member was removed from the cluster");
                self.shared.status.send_modify(|s| s.removed = true);
            }
        }
        self.node.mut_store().set_conf_state(cs);
        self.transport.set_members(&self.mvcc.members()?);
        if let Some((_, reply, _)) = self.conf_change.take() {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }

    fn release_reads(&mut self) {
        if self.reads_confirmed.is_empty() {
            return;
        }
        let applied = self.node.raft.raft_log.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_confirmed)
            .into_iter()
            .partition(|(i, _)| *i <= applied);
        self.reads_confirmed = waiting;
        for (_, r) in ready {
            for w in r.waiters {
                let _ = w.send(Ok(()));
            }
        }
    }

    fn publish_status(&self) {
        let raft = &self.node.raft;
        let learner = raft.prs().conf().learners().contains(&self.settings.id);
        let next = NodeStatus {
            id: self.settings.id,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            is_leader: raft.state == StateRole::Leader,
            is_learner: learner,
            removed: self.shared.status.borrow().removed,
        };
        self.shared.status.send_if_modified(|s| {
            let changed = s.leader != next.leader
                || s.term != next.term
                || s.applied != next.applied
                || s.is_learner != next.is_learner;
            *s = next;
            changed
        });
    }

    /// Starts a background flush+fsync of the state machine every `snapshot_count` entries.
    fn maybe_checkpoint(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        if self.checkpointing || applied < self.last_durable + self.settings.snapshot_count {
            return;
        }
        self.checkpointing = true;
        let mvcc = self.mvcc.clone();
        let tx = self.self_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let Ok((index, _)) = mvcc.applied() else {
                    return;
                };
                match mvcc.make_durable() {
                    Ok(()) => {
                        let _ = tx.send(Request::Durable(index));
                    }
                    Err(e) => error!(error = %e, "state machine checkpoint failed"),
                }
            });
        if let Err(e) = spawned {
            error!(error = %e, "could not start checkpoint thread");
            self.checkpointing = false;
        }
    }

    fn on_durable(&mut self, index: u64) {
        self.checkpointing = false;
        self.last_durable = self.last_durable.max(index);
        let compact_to = index.saturating_sub(self.settings.catch_up_entries);
        let store = self.node.mut_store();
        if compact_to > store.first_index() {
            debug!(compact_to, "compacting raft log");
            if let Err(e) = store.compact(compact_to).and_then(|_| store.persist()) {
                error!(error = %e, "raft log compaction failed");
            }
        }
    }

    fn fail_all(&mut self, err: StoreError) {
        for (_, (reply, _)) in self.proposals.drain() {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, reply) in self.proposals_new.drain(..) {
            let _ = reply.send(Err(err.clone()));
        }
        if let Some((_, reply, _)) = self.conf_change.take() {
            let _ = reply.send(Err(err.clone()));
        }
    }
}

/// Whether a Raft message carries a snapshot, which the transport must acknowledge.
pub fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}

/// A fresh Raft configuration with these voters.
pub fn conf_state_with_voters(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    }
}
