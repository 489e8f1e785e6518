//! The replicated state machine: an etcd-style multi-version key-value store on sled.
//!
//! Every member applies the same committed commands in the same order, so everything here is
//! deterministic. Changes live in sled rows keyed by the first revision they hold: a row holds
//! whole revisions (a put is one key-value; a transaction or a ranged delete, many), about
//! 4 KiB of them, and a revision's row is the last one starting at or before it. The in-memory
//! [`Index`] says which revision holds each key's value, now or in the past.
//!
//! Committed entries are applied in groups (see [`ApplyGroup`]): a group's rows go to sled
//! before the applied index that covers them, so after a crash the state is exactly "all
//! entries up to the recorded index" and the write-ahead log replays the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use prost::Message;
use skiff_proto::etcdserverpb::{
    self as pb, compare, request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};
use skiff_proto::mvccpb::{event::EventType, Event, KeyValue};
use skiff_proto::store::{command::Op, Command, MemberAttributes};

use super::error::StoreError;
use super::index::{Index, Version};
use super::keys::{self, Rev};

/// etcd's default limit on operations in one transaction branch.
pub const MAX_TXN_OPS: usize = 128;
/// Shortest lease etcd grants with a one-second election timeout.
pub const MIN_LEASE_TTL: i64 = 2;
/// Most key changes a group holds before it goes to sled, which bounds its memory.
const MAX_GROUP_CHANGES: usize = 64 * 1024;
/// Most bytes a group's rows grow to before it goes to sled.
const MAX_GROUP_BYTES: usize = 4 << 20;
/// Bytes past which a group starts a new row (at the next revision). sled rewrites a whole
/// leaf (up to 16 rows) when it consolidates one, and writes any message over a quarter of
/// its 512 KiB segment as a separate blob file; small rows keep both cheap.
const ROW_BYTES: usize = 4 << 10;
/// How often a read retries when a concurrent compaction removed a row it was about to read.
const READ_ATTEMPTS: usize = 3;

/// What applying one command produced, handed back to the member that proposed it.
#[derive(Debug, Clone)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(pb::CompactionResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    Nothing,
}

/// A change to membership, as Raft committed it.
#[derive(Debug, Clone)]
pub enum MemberChange {
    Add(pb::Member),
    Promote(u64),
    Remove(u64),
}

/// Which history events carry the key's previous value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrevKv {
    /// None: etcd watchers that did not ask for `prev_kv`.
    None,
    /// Deletes only, whose event otherwise holds no object; a watcher that selects every
    /// object tells a create from an update by the key's version instead.
    Deletes,
    /// Every event.
    All,
}

/// The multi-version store. Cheap to clone: readers share the sled tree and the index with the
/// applier.
#[derive(Clone)]
pub struct Mvcc {
    tree: sled::Tree,
    db: sled::Db,
    /// sled does not expose its directory, and `make_durable` must fsync the files in it.
    dir: Arc<std::path::Path>,
    /// Updated only after the rows it points to are in sled, so readers never see a dangling
    /// version; its revision is the one readers report.
    index: Arc<RwLock<Index>>,
    /// Read on every response header, so kept out of sled.
    cluster_id: Arc<AtomicU64>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn get_i64(tree: &sled::Tree, key: &[u8]) -> Result<i64, StoreError> {
    Ok(tree
        .get(key)?
        .and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes))
        .unwrap_or(0))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Storage(format!("corrupt revision row: {what}"))
}

/// Appends one change to a row: revision (main, sub), length, then the `KeyValue` (version 0
/// marks a deletion). A row holds the changes of one applied group, keyed by its first revision.
fn push_part(row: &mut Vec<u8>, rev: Rev, kv: &KeyValue) {
    row.extend_from_slice(&(rev.main as u64).to_be_bytes());
    row.extend_from_slice(&rev.sub.to_be_bytes());
    row.extend_from_slice(&(kv.encoded_len() as u32).to_be_bytes());
    kv.encode(row).unwrap_or_default();
}

/// The changes in a row, in revision order, each with its encoded `KeyValue`.
fn row_parts(mut row: &[u8]) -> impl Iterator<Item = Result<(Rev, &[u8]), StoreError>> {
    std::iter::from_fn(move || {
        if row.is_empty() {
            return None;
        }
        let Some((head, rest)) = row.split_first_chunk::<16>() else {
            row = &[];
            return Some(Err(corrupt("truncated header")));
        };
        let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let main = (((word(0) as u64) << 32) | word(4) as u64) as i64;
        let rev = Rev { main, sub: word(8) };
        let len = word(12) as usize;
        if rest.len() < len {
            row = &[];
            return Some(Err(corrupt("truncated key-value")));
        }
        let (part, rest) = rest.split_at(len);
        row = rest;
        Some(Ok((rev, part)))
    })
}

fn decode_kv(v: &[u8]) -> Result<KeyValue, StoreError> {
    KeyValue::decode(v).map_err(|e| StoreError::Storage(format!("corrupt key-value: {e}")))
}

/// Checks what etcd checks before proposing, so nothing malformed is ever replicated.
pub fn validate(cmd: &Command) -> Result<(), StoreError> {
    match &cmd.op {
        Some(Op::Put(p)) => validate_put(p),
        Some(Op::DeleteRange(d)) => validate_key(&d.key),
        Some(Op::Txn(t)) => validate_txn(t),
        Some(Op::LeaseGrant(g)) if g.ttl < 0 => Err(StoreError::InvalidArgument(
            "lease TTL must not be negative".into(),
        )),
        _ => Ok(()),
    }
}

fn validate_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        Err(StoreError::EmptyKey)
    } else {
        Ok(())
    }
}

fn validate_put(p: &PutRequest) -> Result<(), StoreError> {
    validate_key(&p.key)
}

fn validate_txn(t: &TxnRequest) -> Result<(), StoreError> {
    if t.success.len() > MAX_TXN_OPS || t.failure.len() > MAX_TXN_OPS {
        return Err(StoreError::TooManyOps);
    }
    for c in &t.compare {
        validate_compare(c)?;
    }
    for branch in [&t.success, &t.failure] {
        let mut puts = BTreeSet::new();
        let mut deletes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for op in branch {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => validate_key(&r.key)?,
                Some(request_op::Request::RequestPut(p)) => {
                    validate_put(p)?;
                    if !puts.insert(p.key.clone()) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    validate_key(&d.key)?;
                    deletes.push((d.key.clone(), d.range_end.clone()));
                }
                Some(request_op::Request::RequestTxn(inner)) => validate_txn(inner)?,
                None => return Err(StoreError::InvalidArgument("empty operation in txn".into())),
            }
        }
        for key in &puts {
            if deletes.iter().any(|(k, end)| in_range(key, k, end)) {
                return Err(StoreError::DuplicateKey);
            }
        }
    }
    Ok(())
}

fn validate_compare(c: &Compare) -> Result<(), StoreError> {
    validate_key(&c.key)?;
    let target = compare::CompareTarget::try_from(c.target)
        .map_err(|_| StoreError::InvalidArgument(format!("unknown compare target {}", c.target)))?;
    compare::CompareResult::try_from(c.result)
        .map_err(|_| StoreError::InvalidArgument(format!("unknown compare result {}", c.result)))?;
    use compare::{CompareTarget as T, TargetUnion as U};
    let matches = matches!(
        (target, &c.target_union),
        (T::Version, Some(U::Version(_)))
            | (T::Create, Some(U::CreateRevision(_)))
            | (T::Mod, Some(U::ModRevision(_)))
            | (T::Value, Some(U::Value(_)))
            | (T::Lease, Some(U::Lease(_)))
    );
    if matches {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(
            "malformed compare: the target and its value do not match".into(),
        ))
    }
}

/// Whether `key` falls in etcd's range `[start, end)`, where an empty end means just `start`
/// and `"\0"` means "to the end of the keyspace".
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

impl Mvcc {
    /// Opens (or creates) the state machine's sled database in `dir` and indexes it.
    pub fn open(dir: &std::path::Path) -> Result<Mvcc, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .mode(sled::Mode::HighThroughput)
            // Durability comes from the WAL and `make_durable`; timed flushes only cost CPU.
            .flush_every_ms(None)
            .open()?;
        let m = Mvcc {
            tree: db.open_tree("state")?,
            db,
            dir: dir.into(),
            index: Arc::default(),
            cluster_id: Arc::default(),
        };
        m.load_index()?;
        Ok(m)
    }

    /// Rebuilds the index from the stored revision rows.
    fn load_index(&self) -> Result<(), StoreError> {
        let mut ix = Index::default();
        ix.revision = self.applied_meta()?.1;
        ix.compacted = get_i64(&self.tree, keys::META_COMPACTED)?;
        // A group is written row by row with the applied index last, so a crash can leave rows
        // of revisions that were never recorded as applied. The log replays those entries, and
        // they must find no trace of their first attempt.
        let torn = keys::revision_row(ix.revision + 1).to_vec()..vec![keys::REVISION + 1];
        for item in self.tree.range(torn) {
            self.tree.remove(item?.0)?;
        }
        for item in self.tree.scan_prefix([keys::REVISION]) {
            let (_, value) = item?;
            for part in row_parts(&value) {
                let (rev, kv) = part?;
                let kv = decode_kv(kv)?;
                ix.record(&kv.key, Version::of(&kv, rev));
            }
        }
        *self.index.write() = ix;
        self.cluster_id.store(
            get_i64(&self.tree, keys::META_CLUSTER_ID)? as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// The newest revision of the keyspace.
    pub fn revision(&self) -> Result<i64, StoreError> {
        Ok(self.index.read().revision.max(1))
    }

    /// The revision below which history is gone.
    pub fn compacted(&self) -> Result<i64, StoreError> {
        Ok(self.index.read().compacted)
    }

    /// The last applied Raft entry as (index, term).
    pub fn applied(&self) -> Result<(u64, u64), StoreError> {
        Ok(self.applied_meta()?.0)
    }

    /// The applied (index, term) and the revision it brought the keyspace to, which one row
    /// records together so they cannot disagree after a crash.
    fn applied_meta(&self) -> Result<((u64, u64), i64), StoreError> {
        let v = self.tree.get(keys::META_APPLIED)?;
        let word = |i: usize| -> u64 {
            v.as_ref()
                .and_then(|v| v.get(i * 8..i * 8 + 8))
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        };
        Ok(((word(0), word(1)), (word(2) as i64).max(1)))
    }

    /// The Raft configuration as of the applied index, encoded as raft's `ConfState`.
    pub fn conf_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(keys::META_CONF_STATE)?.map(|v| v.to_vec()))
    }

    pub fn cluster_id(&self) -> Result<u64, StoreError> {
        Ok(self.cluster_id.load(Ordering::Relaxed))
    }

    /// Bytes the state takes on disk, for status reports.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Writes the state of a brand-new cluster: its members, configuration and revision 1.
    pub fn bootstrap(
        &self,
        cluster_id: u64,
        members: &[pb::Member],
        applied: (u64, u64),
        conf_state: &[u8],
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for m in members {
            b.insert(keys::member_row(m.id), m.encode_to_vec());
        }
        b.insert(keys::META_CLUSTER_ID, &(cluster_id as i64).to_be_bytes());
        b.insert(keys::META_CONF_STATE, conf_state);
        b.insert(keys::META_APPLIED, &applied_bytes(applied, 1));
        self.tree.apply_batch(b)?;
        self.load_index()
    }

    /// Records an entry that changes nothing (a leader's empty entry).
    pub fn apply_noop(&self, index: u64, term: u64) -> Result<(), StoreError> {
        self.tree.insert(
            keys::META_APPLIED,
            &applied_bytes((index, term), self.revision()?),
        )?;
        Ok(())
    }

    /// Applies one committed command on its own. A deterministic rejection (say, an unknown
    /// lease) is returned as an error but still advances the applied index, on every member.
    pub fn apply(&self, index: u64, term: u64, cmd: &Command) -> Result<Applied, StoreError> {
        let mut group = ApplyGroup::new(self)?;
        let result = group.apply(index, term, cmd);
        group.flush()?;
        result
    }

    pub fn apply_member_change(
        &self,
        index: u64,
        term: u64,
        change: &MemberChange,
        conf_state: &[u8],
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        match change {
            MemberChange::Add(m) => b.insert(keys::member_row(m.id), m.encode_to_vec()),
            MemberChange::Promote(id) => {
                if let Some(mut m) = self.member(*id)? {
                    m.is_learner = false;
                    b.insert(keys::member_row(*id), m.encode_to_vec());
                }
            }
            MemberChange::Remove(id) => b.remove(keys::member_row(*id)),
        }
        b.insert(keys::META_CONF_STATE, conf_state);
        b.insert(
            keys::META_APPLIED,
            &applied_bytes((index, term), self.revision()?),
        );
        self.tree.apply_batch(b)?;
        Ok(())
    }

    pub fn member(&self, id: u64) -> Result<Option<pb::Member>, StoreError> {
        Ok(match self.tree.get(keys::member_row(id))? {
            Some(v) => pb::Member::decode(v.as_ref()).ok(),
            None => None,
        })
    }

    /// All members, ordered by id.
    pub fn members(&self) -> Result<Vec<pb::Member>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([keys::MEMBER]) {
            let (_, v) = item?;
            if let Ok(m) = pb::Member::decode(v.as_ref()) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// All leases as (id, granted TTL).
    pub fn leases(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([keys::LEASE]) {
            let (k, v) = item?;
            if let (Ok(id), Ok(ttl)) = (k[1..].try_into(), v.as_ref().try_into()) {
                out.push((u64::from_be_bytes(id) as i64, i64::from_be_bytes(ttl)));
            }
        }
        Ok(out)
    }

    /// The granted TTL of a lease, if it exists.
    pub fn lease(&self, id: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tree
            .get(keys::lease_row(id))?
            .and_then(|v| v.as_ref().try_into().ok().map(i64::from_be_bytes)))
    }

    /// Keys attached to a lease.
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self.index.read().lease_keys(id))
    }

    /// The key-value stored at `rev`, or None if its row is gone (compacted meanwhile).
    fn fetch(&self, rev: Rev) -> Result<Option<KeyValue>, StoreError> {
        let Some((_, row)) = self.row_holding(rev.main)? else {
            return Ok(None);
        };
        for part in row_parts(&row) {
            let (r, kv) = part?;
            if r == rev {
                return Ok(Some(decode_kv(kv)?));
            }
            if r > rev {
                break;
            }
        }
        Ok(None)
    }

    /// The row whose group could hold revision `main`: the last one starting at or before it.
    fn row_holding(&self, main: i64) -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
        Ok(self
            .tree
            .range(keys::revision_row(0)..=keys::revision_row(main))
            .next_back()
            .transpose()?)
    }

    /// Fills in the values of `items` that only carry metadata. None if a row vanished.
    fn load_values(&self, items: Vec<Item>) -> Result<Option<Vec<KeyValue>>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.stored {
                None => out.push(item.kv),
                Some(rev) => match self.fetch(rev)? {
                    Some(kv) => out.push(kv),
                    None => return Ok(None),
                },
            }
        }
        Ok(Some(out))
    }

    /// Serves a Range from this member's state; the caller decides whether that is linearizable.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        validate_key(&req.key)?;
        for _ in 0..READ_ATTEMPTS {
            let (current, items) = {
                let ix = self.index.read();
                let current = ix.revision.max(1);
                (current, select(&ix, req, current)?)
            };
            if let Some(resp) = self.finish_range(req, items, current)? {
                return Ok(resp);
            }
        }
        Err(StoreError::Storage(
            "range kept racing with compaction".into(),
        ))
    }

    /// Filters, counts, sorts and limits on metadata, then loads only the values it returns.
    /// None if a row vanished under it.
    fn finish_range(
        &self,
        req: &RangeRequest,
        mut items: Vec<Item>,
        revision: i64,
    ) -> Result<Option<RangeResponse>, StoreError> {
        items.retain(|it| {
            let kv = &it.kv;
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        let count = items.len() as i64;
        if req.count_only {
            return Ok(Some(RangeResponse {
                header: header(revision),
                kvs: vec![],
                more: false,
                count,
            }));
        }
        let by_value = req.sort_target == pb::range_request::SortTarget::Value as i32;
        let mut more = false;
        let mut kvs = if by_value {
            let Some(mut kvs) = self.load_values(items)? else {
                return Ok(None);
            };
            sort_kvs(&mut kvs, req.sort_target, req.sort_order);
            kvs
        } else {
            let mut metas: Vec<KeyValue> = Vec::with_capacity(items.len());
            let mut stored = Vec::with_capacity(items.len());
            for it in items {
                stored.push((it.kv.key.clone(), it.stored, it.kv.value.clone()));
                metas.push(it.kv);
            }
            sort_kvs(&mut metas, req.sort_target, req.sort_order);
            let by_key: BTreeMap<Vec<u8>, (Option<Rev>, Vec<u8>)> =
                stored.into_iter().map(|(k, r, v)| (k, (r, v))).collect();
            if req.limit > 0 && metas.len() > req.limit as usize {
                metas.truncate(req.limit as usize);
                more = true;
            }
            if req.keys_only {
                metas
            } else {
                let items = metas
                    .into_iter()
                    .map(|kv| {
                        let (stored, value) = by_key.get(&kv.key).cloned().unwrap_or_default();
                        Item {
                            kv: KeyValue { value, ..kv },
                            stored,
                        }
                    })
                    .collect();
                let Some(kvs) = self.load_values(items)? else {
                    return Ok(None);
                };
                kvs
            }
        };
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(Some(RangeResponse {
            header: header(revision),
            kvs,
            more,
            count,
        }))
    }

    /// Events with revisions in `[from, to]` on keys starting with `prefix` (empty: all keys),
    /// oldest first, whole revisions only, stopping once at least `limit` are collected.
    /// `prev` says which events get their previous key-value, which costs a lookup and a read
    /// per event, so keys outside `prefix` are dropped before it. Fails with `Compacted` when
    /// `from` is below the compaction point.
    pub fn events(
        &self,
        from: i64,
        to: i64,
        limit: usize,
        prev: PrevKv,
        prefix: &[u8],
    ) -> Result<Vec<Event>, StoreError> {
        let compacted = self.compacted()?;
        if from < compacted {
            return Err(StoreError::Compacted {
                compact_revision: compacted,
            });
        }
        let mut out: Vec<Event> = Vec::new();
        let start = match self.row_holding(from)? {
            Some((k, _)) => k.to_vec(),
            None => keys::revision_row(from).to_vec(),
        };
        let mut last_main = 0;
        'rows: for item in self.tree.range(start..=keys::revision_row(to).to_vec()) {
            let (_, value) = item?;
            for part in row_parts(&value) {
                let (rev, kv) = part?;
                if rev.main < from {
                    continue;
                }
                // Whole revisions only, so a watcher never sees half a transaction.
                if rev.main > to || (out.len() >= limit && rev.main != last_main) {
                    break 'rows;
                }
                let kv = decode_kv(kv)?;
                if !kv.key.starts_with(prefix) {
                    continue;
                }
                last_main = rev.main;
                let with_prev = match prev {
                    PrevKv::None => false,
                    PrevKv::Deletes => kv.version == 0,
                    PrevKv::All => true,
                };
                let prev_kv = if with_prev {
                    let prev = self.index.read().previous(&kv.key, rev);
                    match prev {
                        Some(p) => self.fetch(p.rev)?,
                        None => None,
                    }
                } else {
                    None
                };
                let ty = if kv.version == 0 {
                    EventType::Delete
                } else {
                    EventType::Put
                };
                out.push(Event {
                    r#type: ty as i32,
                    kv: Some(kv),
                    prev_kv,
                });
            }
        }
        Ok(out)
    }

    /// Forgets history before `rev` in the index, then returns the row writes that drop what
    /// no version needs any more: rows with nothing left are removed, and rows with at most
    /// half left are rewritten, so old rows never take more than twice the history they hold.
    fn compact_rows(&self, rev: i64) -> Result<Vec<RowWrite>, StoreError> {
        // The index forgets first, so no reader goes looking for what is removed below.
        let needed = {
            let mut ix = self.index.write();
            ix.compact(rev);
            ix.revisions()
        };
        let mut writes = Vec::new();
        for item in self
            .tree
            .range(keys::revision_row(0)..=keys::revision_row(rev))
        {
            let (key, value) = item?;
            let mut kept = Vec::new();
            let mut total = 0;
            for part in row_parts(&value) {
                let (r, kv) = part?;
                total += 1;
                if needed.contains(&r) {
                    kept.push((r, decode_kv(kv)?));
                }
            }
            if kept.is_empty() {
                writes.push((key.to_vec(), None));
            } else if kept.len() * 2 <= total {
                let mut row = Vec::new();
                for (r, kv) in &kept {
                    push_part(&mut row, *r, kv);
                }
                writes.push((key.to_vec(), Some(row)));
            }
        }
        Ok(writes)
    }

    /// A consistent copy of the whole state, for Raft snapshots and backups. The caller must
    /// hold off applies while it runs (the Raft thread calls it between entries).
    pub fn export(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&k);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(&v);
        }
        Ok(out)
    }

    /// Replaces the whole state with an export, then makes it durable.
    pub fn import(&self, data: &[u8]) -> Result<(), StoreError> {
        let rows = parse_export(data)?;
        self.tree.clear()?;
        let mut b = sled::Batch::default();
        for (k, v) in rows {
            b.insert(k, v);
        }
        self.tree.apply_batch(b)?;
        self.load_index()?;
        self.make_durable()
    }

    /// Overrides the applied index, configuration and (optionally) members, as a restored
    /// backup or a received snapshot needs.
    pub fn set_applied(&self, applied: (u64, u64), conf_state: &[u8]) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.insert(keys::META_CONF_STATE, conf_state);
        b.insert(
            keys::META_APPLIED,
            &applied_bytes(applied, self.revision()?),
        );
        self.tree.apply_batch(b)?;
        Ok(())
    }

    /// Replaces the member list (used when restoring a backup into a new cluster).
    pub fn replace_members(
        &self,
        cluster_id: u64,
        members: &[pb::Member],
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for item in self.tree.scan_prefix([keys::MEMBER]) {
            b.remove(item?.0);
        }
        for m in members {
            b.insert(keys::member_row(m.id), m.encode_to_vec());
        }
        b.insert(keys::META_CLUSTER_ID, &(cluster_id as i64).to_be_bytes());
        self.tree.apply_batch(b)?;
        self.cluster_id.store(cluster_id, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes sled and then fsyncs its files, because sled's own flush is only
    /// `sync_file_range`. After this returns, the write-ahead log may drop entries applied so far.
    pub fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        fsync_tree(&self.dir)
    }
}

/// A key-value found by a read: complete, or metadata plus where its value is stored.
struct Item {
    kv: KeyValue,
    /// Where the value is, when `kv` carries none yet.
    stored: Option<Rev>,
}

impl Item {
    fn indexed(key: Vec<u8>, v: Version) -> Item {
        Item {
            kv: v.meta_kv(&key),
            stored: Some(v.rev),
        }
    }
}

/// The index entries a range reads: now, or at a past revision still kept.
fn select(ix: &Index, req: &RangeRequest, current: i64) -> Result<Vec<Item>, StoreError> {
    if req.revision > current {
        return Err(StoreError::FutureRevision);
    }
    let at = if req.revision > 0 && req.revision < current {
        if req.revision < ix.compacted {
            return Err(StoreError::Compacted {
                compact_revision: ix.compacted,
            });
        }
        Some(req.revision)
    } else {
        None
    };
    Ok(ix
        .range(&req.key, &req.range_end, at)
        .into_iter()
        .map(|(k, v)| Item::indexed(k, v))
        .collect())
}

fn fsync_tree(dir: &std::path::Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Storage(format!("fsync {}: {e}", dir.display()));
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if entry.file_type().map_err(io)?.is_dir() {
                stack.push(path);
            } else {
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(io)?;
            }
        }
        std::fs::File::open(&d)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Key-value rows of a state export.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn parse_export(mut data: &[u8]) -> Result<Rows, StoreError> {
    let bad = || StoreError::Storage("snapshot data is malformed".into());
    let mut rows = Vec::new();
    let take = |data: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
        if data.len() < 4 {
            return Err(bad());
        }
        let n = u32::from_le_bytes(data[..4].try_into().map_err(|_| bad())?) as usize;
        if data.len() < 4 + n {
            return Err(bad());
        }
        let out = data[4..4 + n].to_vec();
        *data = &data[4 + n..];
        Ok(out)
    };
    while !data.is_empty() {
        let k = take(&mut data)?;
        let v = take(&mut data)?;
        rows.push((k, v));
    }
    Ok(rows)
}

fn applied_bytes((index, term): (u64, u64), revision: i64) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out[8..16].copy_from_slice(&term.to_be_bytes());
    out[16..].copy_from_slice(&(revision as u64).to_be_bytes());
    out
}

fn sort_kvs(kvs: &mut [KeyValue], target: i32, order: i32) {
    use pb::range_request::{SortOrder, SortTarget};
    let order = SortOrder::try_from(order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(target).unwrap_or(SortTarget::Key);
    if order == SortOrder::None && target == SortTarget::Key {
        return;
    }
    kvs.sort_by(|a, b| {
        let o = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if order == SortOrder::Descend {
            o.reverse()
        } else {
            o
        }
    });
}

/// A write of one sled row; `None` removes it.
type RowWrite = (Vec<u8>, Option<Vec<u8>>);

/// Key states written but not yet in sled or the index: `None` is a deletion.
type Overlay = BTreeMap<Vec<u8>, Option<KeyValue>>;

/// Applies a run of committed entries as one sled batch. sled seals and writes out its log
/// buffer for every batch, so a batch per entry would cost a disk write per entry; a group costs
/// one per Ready. Key writes (put, delete, txn) join the group; anything else is applied alone.
/// Nothing is visible to readers until `flush`, so replies must wait for it.
pub struct ApplyGroup<'a> {
    mvcc: &'a Mvcc,
    /// The group's open row: key changes in revision order, and the revision it starts at.
    row: Vec<u8>,
    row_start: Option<i64>,
    /// Bytes of the group's rows so far, sealed and open.
    bytes: usize,
    /// Row writes in order (`None` removes the row).
    writes: Vec<RowWrite>,
    /// Lease, member or compaction changes are not idempotent, so they go in one sled batch.
    atomic: bool,
    overlay: Overlay,
    /// Index changes to make once the batch is in sled, in revision order.
    changes: Vec<(Vec<u8>, Version)>,
    compact: Option<i64>,
    revision: i64,
    applied: Option<(u64, u64)>,
}

/// Whether a command may share a batch with others. Anything that reads stored state the
/// overlay cannot show (leases, members, history at a past revision, compaction) goes alone.
fn groupable(cmd: &Command) -> bool {
    fn txn_ok(t: &TxnRequest) -> bool {
        t.success
            .iter()
            .chain(&t.failure)
            .all(|op| match &op.request {
                Some(request_op::Request::RequestRange(r)) => r.revision == 0,
                Some(request_op::Request::RequestTxn(t)) => txn_ok(t),
                _ => true,
            })
    }
    match &cmd.op {
        Some(Op::Put(_)) | Some(Op::DeleteRange(_)) | None => true,
        Some(Op::Txn(t)) => txn_ok(t),
        _ => false,
    }
}

impl<'a> ApplyGroup<'a> {
    pub fn new(mvcc: &'a Mvcc) -> Result<ApplyGroup<'a>, StoreError> {
        Ok(ApplyGroup {
            mvcc,
            row: Vec::new(),
            row_start: None,
            bytes: 0,
            writes: Vec::new(),
            atomic: false,
            overlay: Overlay::new(),
            changes: Vec::new(),
            compact: None,
            revision: mvcc.revision()?,
            applied: None,
        })
    }

    /// Applies a committed command; see `Mvcc::apply`.
    pub fn apply(&mut self, index: u64, term: u64, cmd: &Command) -> Result<Applied, StoreError> {
        let alone = !groupable(cmd);
        if alone {
            self.flush()?;
        }
        let mut w = Writer::new(self.mvcc, self.revision, &self.overlay);
        let result = w.apply(cmd);
        if result.is_ok() {
            let staged = w.finish();
            self.stage(staged);
        }
        self.applied = Some((index, term));
        if alone || self.changes.len() >= MAX_GROUP_CHANGES || self.bytes >= MAX_GROUP_BYTES {
            self.flush()?;
        }
        result
    }

    fn stage(&mut self, s: Staged) {
        if !s.row.is_empty() {
            if self.row.len() >= ROW_BYTES {
                self.seal_row();
            }
            self.row_start.get_or_insert(s.revision);
            for (sub, kv) in s.row.iter().enumerate() {
                let rev = Rev {
                    main: s.revision,
                    sub: sub as u32,
                };
                let before = self.row.len();
                push_part(&mut self.row, rev, kv);
                self.bytes += self.row.len() - before;
                self.changes.push((kv.key.clone(), Version::of(kv, rev)));
            }
            self.revision = s.revision;
        }
        self.atomic |= !s.raw.is_empty() || s.compact.is_some();
        self.writes.extend(s.raw);
        self.overlay.extend(s.overlay);
        self.compact = s.compact.or(self.compact);
    }

    /// Queues the open row for writing; the next change starts a new one.
    fn seal_row(&mut self) {
        if let Some(start) = self.row_start.take() {
            self.writes.push((
                keys::revision_row(start).to_vec(),
                Some(std::mem::take(&mut self.row)),
            ));
        }
    }

    /// Records an entry that changes nothing.
    pub fn noop(&mut self, index: u64, term: u64) {
        self.applied = Some((index, term));
    }

    /// Writes the group to sled, then shows it to readers. Plain key changes go row by row with
    /// the applied index last (replaying a torn group rewrites the same rows); anything else
    /// goes as one atomic batch.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let Some(applied) = self.applied.take() else {
            return Ok(());
        };
        self.seal_row();
        self.bytes = 0;
        let mut writes = std::mem::take(&mut self.writes);
        if let Some(rev) = self.compact.take() {
            writes.extend(self.mvcc.compact_rows(rev)?);
            writes.push((
                keys::META_COMPACTED.to_vec(),
                Some(rev.to_be_bytes().to_vec()),
            ));
        }
        let meta = applied_bytes(applied, self.revision);
        let tree = &self.mvcc.tree;
        if std::mem::take(&mut self.atomic) {
            let mut batch = sled::Batch::default();
            for (k, v) in writes {
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            batch.insert(keys::META_APPLIED, &meta);
            tree.apply_batch(batch)?;
        } else {
            for (k, v) in writes {
                match v {
                    Some(v) => tree.insert(k, v)?,
                    None => tree.remove(k)?,
                };
            }
            tree.insert(keys::META_APPLIED, &meta)?;
        }
        let mut ix = self.mvcc.index.write();
        for (key, v) in self.changes.drain(..) {
            ix.record(&key, v);
        }
        ix.revision = self.revision;
        drop(ix);
        self.overlay.clear();
        Ok(())
    }
}

/// What one entry changed, ready to join its group.
struct Staged {
    revision: i64,
    /// The revision row: every key change, in sub-revision order.
    row: Vec<KeyValue>,
    /// Writes to lease and member rows (`None` removes the row).
    raw: Vec<RowWrite>,
    overlay: Overlay,
    compact: Option<i64>,
}

/// Collects one entry's changes, so a rejected entry leaves nothing behind.
struct Writer<'a> {
    mvcc: &'a Mvcc,
    /// Earlier entries of the same group, not yet in sled.
    parent: &'a Overlay,
    /// Keys written in this entry, so later operations of a transaction see earlier ones.
    overlay: Overlay,
    row: Vec<KeyValue>,
    raw: Vec<RowWrite>,
    /// Lease rows written in this entry.
    leases: BTreeMap<i64, Option<i64>>,
    compact: Option<i64>,
    base: i64,
}

impl<'a> Writer<'a> {
    fn new(mvcc: &'a Mvcc, base: i64, parent: &'a Overlay) -> Writer<'a> {
        Writer {
            mvcc,
            parent,
            overlay: Overlay::new(),
            row: Vec::new(),
            raw: Vec::new(),
            leases: BTreeMap::new(),
            compact: None,
            base,
        }
    }

    fn finish(self) -> Staged {
        Staged {
            revision: self.rev(),
            row: self.row,
            raw: self.raw,
            overlay: self.overlay,
            compact: self.compact,
        }
    }

    /// The revision this entry's changes get.
    fn rev(&self) -> i64 {
        self.base + 1
    }

    /// The store revision as seen after this entry.
    fn visible_rev(&self) -> i64 {
        if self.row.is_empty() {
            self.base
        } else {
            self.base + 1
        }
    }

    fn apply(&mut self, cmd: &Command) -> Result<Applied, StoreError> {
        validate(cmd)?;
        Ok(match &cmd.op {
            Some(Op::Put(p)) => Applied::Put(self.put(p)?),
            Some(Op::DeleteRange(d)) => Applied::DeleteRange(self.delete_range(d)?),
            Some(Op::Txn(t)) => Applied::Txn(self.txn(t)?),
            Some(Op::Compaction(c)) => Applied::Compaction(self.compact(c.revision)?),
            Some(Op::LeaseGrant(g)) => Applied::LeaseGrant(self.lease_grant(g)?),
            Some(Op::LeaseRevoke(r)) => Applied::LeaseRevoke(self.lease_revoke(r.id)?),
            Some(Op::MemberAttributes(a)) => {
                self.member_attributes(a)?;
                Applied::Nothing
            }
            None => Applied::Nothing,
        })
    }

    /// A value from the index, which the applier alone changes, so its row must be there.
    fn load(&self, key: &[u8], v: Version) -> Result<KeyValue, StoreError> {
        self.mvcc.fetch(v.rev)?.ok_or_else(|| {
            StoreError::Storage(format!(
                "index points at missing revision {} for {:?}",
                v.rev.main,
                String::from_utf8_lossy(key)
            ))
        })
    }

    /// The current key-value of `key`; its value is left empty unless `with_value`.
    fn current(&self, key: &[u8], with_value: bool) -> Result<Option<KeyValue>, StoreError> {
        if let Some(v) = self.overlay.get(key).or_else(|| self.parent.get(key)) {
            return Ok(v.clone());
        }
        let found = self.mvcc.index.read().current(key);
        match found {
            None => Ok(None),
            Some(v) if with_value => Ok(Some(self.load(key, v)?)),
            Some(v) => Ok(Some(v.meta_kv(key))),
        }
    }

    /// Current key-values in etcd's range `[key, end)`, as this entry sees them, in key order.
    fn scan(&self, key: &[u8], end: &[u8], with_values: bool) -> Result<Vec<KeyValue>, StoreError> {
        let found = self.mvcc.index.read().range(key, end, None);
        let mut merged: BTreeMap<Vec<u8>, KeyValue> = BTreeMap::new();
        for (k, v) in found {
            let kv = if with_values {
                self.load(&k, v)?
            } else {
                v.meta_kv(&k)
            };
            merged.insert(k, kv);
        }
        for overlay in [self.parent, &self.overlay] {
            for (k, v) in overlay.iter() {
                if in_range(k, key, end) {
                    match v {
                        Some(kv) => merged.insert(k.clone(), kv.clone()),
                        None => merged.remove(k),
                    };
                }
            }
        }
        Ok(merged.into_values().collect())
    }

    fn lease_exists(&self, id: i64) -> Result<bool, StoreError> {
        match self.leases.get(&id) {
            Some(v) => Ok(v.is_some()),
            None => Ok(self.mvcc.lease(id)?.is_some()),
        }
    }

    /// Records a change of `key`: the new key-value, or a deletion.
    fn write(&mut self, key: &[u8], kv: Option<KeyValue>) {
        let main = self.rev();
        let stored = kv.clone().unwrap_or_else(|| KeyValue {
            key: key.to_vec(),
            mod_revision: main,
            ..Default::default()
        });
        self.row.push(stored);
        self.overlay.insert(key.to_vec(), kv);
    }

    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, StoreError> {
        let prev = self.current(&p.key, p.prev_kv || p.ignore_value)?;
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(StoreError::KeyNotFound);
        }
        let lease = if p.ignore_lease {
            prev.as_ref().map(|k| k.lease).unwrap_or(0)
        } else {
            p.lease
        };
        if lease != 0 && !self.lease_exists(lease)? {
            return Err(StoreError::LeaseNotFound);
        }
        let value = if p.ignore_value {
            prev.as_ref().map(|k| k.value.clone()).unwrap_or_default()
        } else {
            p.value.clone()
        };
        let rev = self.rev();
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map(|k| k.create_revision).unwrap_or(rev),
            mod_revision: rev,
            version: prev.as_ref().map(|k| k.version).unwrap_or(0) + 1,
            value,
            lease,
        };
        self.write(&p.key, Some(kv));
        Ok(PutResponse {
            header: header(rev),
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, StoreError> {
        let victims = self.scan(&d.key, &d.range_end, d.prev_kv)?;
        for kv in &victims {
            self.write(&kv.key, None);
        }
        Ok(DeleteRangeResponse {
            header: header(self.visible_rev()),
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv { victims } else { vec![] },
        })
    }

    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let current = self.visible_rev();
        if r.revision > 0 && r.revision < current {
            // Only whole groups are in the index, and such a transaction is applied alone.
            return self.mvcc.range(r).map(|mut resp| {
                resp.header = header(current);
                resp
            });
        }
        if r.revision > current {
            return Err(StoreError::FutureRevision);
        }
        let with_values = !r.keys_only && !r.count_only;
        let items = self
            .scan(&r.key, &r.range_end, with_values)?
            .into_iter()
            .map(|kv| Item { kv, stored: None })
            .collect();
        self.mvcc
            .finish_range(r, items, current)?
            .ok_or_else(|| StoreError::Storage("range lost a row while applying".into()))
    }

    fn compare(&self, c: &Compare) -> Result<bool, StoreError> {
        use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let target = T::try_from(c.target)
            .map_err(|_| StoreError::InvalidArgument("bad compare target".into()))?;
        let result = R::try_from(c.result)
            .map_err(|_| StoreError::InvalidArgument("bad compare result".into()))?;
        let kvs = self.scan(&c.key, &c.range_end, target == T::Value)?;
        let check = |kv: &KeyValue| -> bool {
            let ord = match (&c.target_union, target) {
                (Some(U::Version(v)), T::Version) => kv.version.cmp(v),
                (Some(U::CreateRevision(v)), T::Create) => kv.create_revision.cmp(v),
                (Some(U::ModRevision(v)), T::Mod) => kv.mod_revision.cmp(v),
                (Some(U::Value(v)), T::Value) => kv.value.as_slice().cmp(v.as_slice()),
                (Some(U::Lease(v)), T::Lease) => kv.lease.cmp(v),
                _ => return false,
            };
            match result {
                R::Equal => ord.is_eq(),
                R::Greater => ord.is_gt(),
                R::Less => ord.is_lt(),
                R::NotEqual => ord.is_ne(),
            }
        };
        if kvs.is_empty() {
            // A missing key compares as zero everywhere, and never matches on value.
            if target == T::Value {
                return Ok(false);
            }
            return Ok(check(&KeyValue {
                key: c.key.clone(),
                ..Default::default()
            }));
        }
        Ok(kvs.iter().all(check))
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, StoreError> {
        let mut succeeded = true;
        for c in &t.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(self.txn_op(op)?);
        }
        Ok(TxnResponse {
            header: header(self.visible_rev()),
            succeeded,
            responses,
        })
    }

    fn txn_op(&mut self, op: &RequestOp) -> Result<ResponseOp, StoreError> {
        use response_op::Response as Resp;
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => Resp::ResponseRange(self.range(r)?),
            Some(request_op::Request::RequestPut(p)) => Resp::ResponsePut(self.put(p)?),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                Resp::ResponseDeleteRange(self.delete_range(d)?)
            }
            Some(request_op::Request::RequestTxn(t)) => Resp::ResponseTxn(self.txn(t)?),
            None => return Err(StoreError::InvalidArgument("empty operation in txn".into())),
        };
        Ok(ResponseOp {
            response: Some(response),
        })
    }

    fn compact(&mut self, rev: i64) -> Result<pb::CompactionResponse, StoreError> {
        let current = self.base;
        if rev > current {
            return Err(StoreError::FutureRevision);
        }
        let old = self.mvcc.compacted()?;
        if rev <= old {
            return Err(StoreError::Compacted {
                compact_revision: old,
            });
        }
        self.compact = Some(rev);
        Ok(pb::CompactionResponse {
            header: header(current),
        })
    }

    fn lease_grant(
        &mut self,
        g: &pb::LeaseGrantRequest,
    ) -> Result<pb::LeaseGrantResponse, StoreError> {
        if g.id <= 0 {
            return Err(StoreError::InvalidArgument(
                "lease id must be positive".into(),
            ));
        }
        if self.lease_exists(g.id)? {
            return Err(StoreError::LeaseExists);
        }
        let ttl = g.ttl.max(MIN_LEASE_TTL);
        self.raw
            .push((keys::lease_row(g.id), Some(ttl.to_be_bytes().to_vec())));
        self.leases.insert(g.id, Some(ttl));
        Ok(pb::LeaseGrantResponse {
            header: header(self.base),
            id: g.id,
            ttl,
            error: String::new(),
        })
    }

    fn lease_revoke(&mut self, id: i64) -> Result<pb::LeaseRevokeResponse, StoreError> {
        if !self.lease_exists(id)? {
            return Err(StoreError::LeaseNotFound);
        }
        for key in self.mvcc.lease_keys(id)? {
            if self.current(&key, false)?.is_some() {
                self.write(&key, None);
            }
        }
        self.raw.push((keys::lease_row(id), None));
        self.leases.insert(id, None);
        Ok(pb::LeaseRevokeResponse {
            header: header(self.visible_rev()),
        })
    }

    fn member_attributes(&mut self, a: &MemberAttributes) -> Result<(), StoreError> {
        if let Some(mut m) = self.mvcc.member(a.id)? {
            m.name = a.name.clone();
            m.client_ur_ls = a.client_urls.clone();
            self.raw
                .push((keys::member_row(a.id).to_vec(), Some(m.encode_to_vec())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Mvcc) {
        let dir = tempfile::tempdir().unwrap();
        let m = Mvcc::open(dir.path()).unwrap();
        m.bootstrap(1, &[], (1, 1), b"").unwrap();
        (dir, m)
    }

    fn put(key: &str, value: &str) -> Command {
        Command {
            op: Some(Op::Put(PutRequest {
                key: key.into(),
                value: value.into(),
                prev_kv: true,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn get(m: &Mvcc, key: &str, rev: i64) -> Vec<KeyValue> {
        m.range(&RangeRequest {
            key: key.into(),
            revision: rev,
            ..Default::default()
        })
        .unwrap()
        .kvs
    }

    #[test]
    fn put_tracks_revisions_and_versions() {
        let (_d, m) = store();
        m.apply(2, 1, &put("a", "1")).unwrap();
        let Applied::Put(r) = m.apply(3, 1, &put("a", "2")).unwrap() else {
            panic!()
        };
        assert_eq!(r.prev_kv.unwrap().value, b"1");
        let kv = &get(&m, "a", 0)[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        assert_eq!(get(&m, "a", 2)[0].value, b"1");
        assert_eq!(m.revision().unwrap(), 3);
        assert_eq!(m.applied().unwrap(), (3, 1));
    }

    #[test]
    fn txn_compares_and_is_atomic() {
        let (_d, m) = store();
        m.apply(2, 1, &put("k", "v")).unwrap();
        let txn = |expect: &str| Command {
            op: Some(Op::Txn(TxnRequest {
                compare: vec![Compare {
                    key: b"k".to_vec(),
                    target: compare::CompareTarget::Value as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(compare::TargetUnion::Value(expect.into())),
                    range_end: vec![],
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: b"k".to_vec(),
                        value: b"w".to_vec(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            })),
            ..Default::default()
        };
        let Applied::Txn(r) = m.apply(3, 1, &txn("v")).unwrap() else {
            panic!()
        };
        assert!(r.succeeded);
        let Applied::Txn(r) = m.apply(4, 1, &txn("v")).unwrap() else {
            panic!()
        };
        assert!(!r.succeeded);
        assert_eq!(get(&m, "k", 0)[0].value, b"w");
        assert_eq!(m.revision().unwrap(), 3);
    }

    #[test]
    fn malformed_compare_is_rejected() {
        let bad = Command {
            op: Some(Op::Txn(TxnRequest {
                compare: vec![Compare {
                    key: b"k".to_vec(),
                    target: compare::CompareTarget::Version as i32,
                    target_union: Some(compare::TargetUnion::Value(b"x".to_vec())),
                    ..Default::default()
                }],
                ..Default::default()
            })),
            ..Default::default()
        };
        assert!(matches!(
            validate(&bad),
            Err(StoreError::InvalidArgument(_))
        ));
    }

    #[test]
    fn delete_events_and_compaction() {
        let (_d, m) = store();
        m.apply(2, 1, &put("a", "1")).unwrap();
        m.apply(3, 1, &put("a", "2")).unwrap();
        let del = Command {
            op: Some(Op::DeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        m.apply(4, 1, &del).unwrap();
        let evs = m.events(2, 4, 100, PrevKv::All, b"").unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(m.events(2, 4, 100, PrevKv::All, b"a").unwrap().len(), 3);
        assert!(m.events(2, 4, 100, PrevKv::All, b"b").unwrap().is_empty());
        assert_eq!(evs[2].r#type, EventType::Delete as i32);
        assert_eq!(evs[2].prev_kv.as_ref().unwrap().value, b"2");
        let compact = Command {
            op: Some(Op::Compaction(pb::CompactionRequest {
                revision: 3,
                physical: false,
            })),
            ..Default::default()
        };
        m.apply(5, 1, &compact).unwrap();
        assert!(matches!(
            m.events(2, 4, 100, PrevKv::None, b""),
            Err(StoreError::Compacted {
                compact_revision: 3
            })
        ));
        assert_eq!(get(&m, "a", 3)[0].value, b"2");
        assert!(get(&m, "a", 0).is_empty());
    }

    #[test]
    fn lease_revoke_deletes_attached_keys() {
        let (_d, m) = store();
        let grant = Command {
            op: Some(Op::LeaseGrant(pb::LeaseGrantRequest { ttl: 10, id: 7 })),
            ..Default::default()
        };
        m.apply(2, 1, &grant).unwrap();
        let mut p = put("x", "1");
        if let Some(Op::Put(p)) = &mut p.op {
            p.lease = 7;
        }
        m.apply(3, 1, &p).unwrap();
        assert_eq!(m.lease_keys(7).unwrap(), vec![b"x".to_vec()]);
        let revoke = Command {
            op: Some(Op::LeaseRevoke(pb::LeaseRevokeRequest { id: 7 })),
            ..Default::default()
        };
        m.apply(4, 1, &revoke).unwrap();
        assert!(get(&m, "x", 0).is_empty());
        assert!(m.lease(7).unwrap().is_none());
        let mut p = put("y", "1");
        if let Some(Op::Put(p)) = &mut p.op {
            p.lease = 7;
        }
        assert_eq!(m.apply(5, 1, &p).unwrap_err(), StoreError::LeaseNotFound);
        assert_eq!(m.applied().unwrap(), (5, 1));
    }

    #[test]
    fn export_import_roundtrip() {
        let (_d, m) = store();
        m.apply(2, 1, &put("a", "1")).unwrap();
        let data = m.export().unwrap();
        let (_d2, m2) = store();
        m2.import(&data).unwrap();
        assert_eq!(get(&m2, "a", 0)[0].value, b"1");
        assert_eq!(m2.applied().unwrap(), (2, 1));
    }

    #[test]
    fn torn_group_leaves_no_trace_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Mvcc::open(dir.path()).unwrap();
            m.bootstrap(1, &[], (1, 1), b"").unwrap();
            m.apply(2, 1, &put("a", "1")).unwrap();
            // A crash after this row but before the applied index of its group.
            let mut row = Vec::new();
            let kv = KeyValue {
                key: b"a".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"lost".to_vec(),
                lease: 0,
            };
            push_part(&mut row, Rev { main: 3, sub: 0 }, &kv);
            m.tree.insert(keys::revision_row(3), row).unwrap();
            m.make_durable().unwrap();
        }
        let m = Mvcc::open(dir.path()).unwrap();
        assert_eq!(m.revision().unwrap(), 2);
        assert_eq!(m.applied().unwrap(), (2, 1));
        assert_eq!(get(&m, "a", 0)[0].value, b"1");
        // Replaying the entry gives the same revision and version as the first attempt.
        m.apply(3, 1, &put("a", "2")).unwrap();
        let kv = &get(&m, "a", 0)[0];
        assert_eq!(
            (kv.mod_revision, kv.version, kv.value.as_slice()),
            (3, 2, &b"2"[..])
        );
    }

    #[test]
    fn big_groups_split_into_rows_of_whole_revisions() {
        let (_d, m) = store();
        let mut g = ApplyGroup::new(&m).unwrap();
        let value = "v".repeat(1000);
        for i in 0..20u64 {
            g.apply(2 + i, 1, &put(&format!("k{i}"), &value)).unwrap();
        }
        g.flush().unwrap();
        let rows: Vec<usize> = m
            .tree
            .scan_prefix([keys::REVISION])
            .map(|r| r.unwrap().1.len())
            .collect();
        // Four changes of 1 KB take a row past 4 KiB, so the fifth starts the next one.
        assert_eq!(rows.len(), 5, "rows {rows:?}");
        assert!(rows.iter().all(|&n| n < 2 * ROW_BYTES), "rows {rows:?}");
        for i in 0..20i64 {
            let kv = &get(&m, &format!("k{i}"), 0)[0];
            assert_eq!((kv.mod_revision, kv.value.len()), (2 + i, 1000));
            assert_eq!(get(&m, &format!("k{i}"), 2 + i)[0].mod_revision, 2 + i);
        }
        assert_eq!(m.events(2, 21, 100, PrevKv::All, b"").unwrap().len(), 20);
    }

    #[test]
    fn groups_share_a_row_and_compaction_keeps_what_is_needed() {
        let (_d, m) = store();
        let mut g = ApplyGroup::new(&m).unwrap();
        g.apply(2, 1, &put("a", "1")).unwrap();
        g.apply(3, 1, &put("b", "1")).unwrap();
        let two = Command {
            op: Some(Op::Txn(TxnRequest {
                success: vec![
                    RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: b"a".to_vec(),
                            value: b"2".to_vec(),
                            ..Default::default()
                        })),
                    },
                    RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: b"c".to_vec(),
                            value: b"1".to_vec(),
                            ..Default::default()
                        })),
                    },
                ],
                ..Default::default()
            })),
            ..Default::default()
        };
        g.apply(4, 1, &two).unwrap();
        g.flush().unwrap();
        m.apply(5, 1, &put("b", "2")).unwrap();
        assert_eq!(m.tree.scan_prefix([keys::REVISION]).count(), 2);
        // Whole revisions: a limit of one still returns both changes of revision 4.
        let evs = m.events(4, 5, 1, PrevKv::All, b"").unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, b"1");
        assert_eq!(m.events(2, 5, 100, PrevKv::None, b"").unwrap().len(), 5);
        let compact = |rev| Command {
            op: Some(Op::Compaction(pb::CompactionRequest {
                revision: rev,
                physical: false,
            })),
            ..Default::default()
        };
        // At 4, the group row still holds a@4 and c@4 (b@3 is superseded at 5, not yet).
        m.apply(6, 1, &compact(4)).unwrap();
        assert_eq!(get(&m, "b", 4)[0].value, b"1");
        m.apply(7, 1, &compact(5)).unwrap();
        assert_eq!(get(&m, "a", 0)[0].value, b"2");
        assert_eq!(get(&m, "c", 0)[0].value, b"1");
        assert_eq!(get(&m, "b", 0)[0].value, b"2");
        // Reopening rebuilds the same index from the rows.
        let dir = m.dir.clone();
        drop(m);
        let m = Mvcc::open(&dir).unwrap();
        assert_eq!(get(&m, "a", 5)[0].value, b"2");
        assert_eq!(m.events(5, 5, 10, PrevKv::None, b"").unwrap().len(), 1);
    }
}
