//! The replicated state machine: an etcd-style multi-version key-value store on sled.
//!
//! Every member applies the same committed commands in the same order, so everything here is
//! deterministic. Each applied Raft entry becomes one atomic sled batch carrying the applied
//! index, so after a crash the state is exactly "all entries up to the recorded index" and the
//! write-ahead log replays the rest.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use skiff_proto::etcdserverpb::{
    self as pb, compare, request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    TxnRequest, TxnResponse,
};
use skiff_proto::mvccpb::{event::EventType, Event, KeyValue};
use skiff_proto::store::{command::Op, Command, MemberAttributes};

use super::error::StoreError;
use super::keys::{self, Rev};

/// etcd's default limit on operations in one transaction branch.
pub const MAX_TXN_OPS: usize = 128;
/// Shortest lease etcd grants with a one-second election timeout.
pub const MIN_LEASE_TTL: i64 = 2;

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

/// The multi-version store. Cheap to clone: readers share the sled tree with the applier.
#[derive(Clone)]
pub struct Mvcc {
    tree: sled::Tree,
    db: sled::Db,
    /// sled does not expose its directory, and `make_durable` must fsync the files in it.
    dir: std::sync::Arc<std::path::Path>,
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
    /// Opens (or creates) the state machine's sled database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Mvcc, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(Mvcc {
            tree: db.open_tree("state")?,
            db,
            dir: dir.into(),
        })
    }

    /// The newest revision of the keyspace.
    pub fn revision(&self) -> Result<i64, StoreError> {
        Ok(get_i64(&self.tree, keys::META_REVISION)?.max(1))
    }

    /// The revision below which history is gone.
    pub fn compacted(&self) -> Result<i64, StoreError> {
        get_i64(&self.tree, keys::META_COMPACTED)
    }

    /// The last applied Raft entry as (index, term).
    pub fn applied(&self) -> Result<(u64, u64), StoreError> {
        Ok(match self.tree.get(keys::META_APPLIED)? {
            Some(v) if v.len() == 16 => (
                u64::from_be_bytes(v[..8].try_into().unwrap_or_default()),
                u64::from_be_bytes(v[8..].try_into().unwrap_or_default()),
            ),
            _ => (0, 0),
        })
    }

    /// The Raft configuration as of the applied index, encoded as raft's `ConfState`.
    pub fn conf_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(keys::META_CONF_STATE)?.map(|v| v.to_vec()))
    }

    pub fn cluster_id(&self) -> Result<u64, StoreError> {
        Ok(get_i64(&self.tree, keys::META_CLUSTER_ID)? as u64)
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
        b.insert(keys::META_REVISION, &1i64.to_be_bytes());
        b.insert(keys::META_CONF_STATE, conf_state);
        b.insert(keys::META_APPLIED, &applied_bytes(applied));
        self.tree.apply_batch(b)?;
        Ok(())
    }

    /// Records an entry that changes nothing (a leader's empty entry).
    pub fn apply_noop(&self, index: u64, term: u64) -> Result<(), StoreError> {
        self.tree
            .insert(keys::META_APPLIED, &applied_bytes((index, term)))?;
        Ok(())
    }

    /// Applies a committed command. A deterministic rejection (say, an unknown lease) is
    /// returned as an error but still advances the applied index, on every member alike.
    pub fn apply(&self, index: u64, term: u64, cmd: &Command) -> Result<Applied, StoreError> {
        let mut w = Writer::new(self)?;
        let result = w.apply(cmd);
        match result {
            Ok(applied) => {
                w.commit(index, term)?;
                Ok(applied)
            }
            Err(e) => {
                self.apply_noop(index, term)?;
                Err(e)
            }
        }
    }

    /// Applies a committed membership change together with the new Raft configuration.
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
        b.insert(keys::META_APPLIED, &applied_bytes((index, term)));
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
        let prefix = keys::lease_key_row(id, b"");
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            out.push(k[prefix.len()..].to_vec());
        }
        Ok(out)
    }

    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        Ok(match self.tree.get(keys::prefixed(keys::CURRENT, key))? {
            Some(v) => Some(decode_kv(&v)?),
            None => None,
        })
    }

    /// Current key-values in `[key, end)`, in key order.
    fn scan_current(&self, key: &[u8], end: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        if end.is_empty() {
            return Ok(self.current(key)?.into_iter().collect());
        }
        let start = keys::prefixed(keys::CURRENT, key);
        let stop = if end == [0] {
            vec![keys::CURRENT + 1]
        } else {
            keys::prefixed(keys::CURRENT, end)
        };
        if start >= stop {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.tree.range(start..stop) {
            let (_, v) = item?;
            out.push(decode_kv(&v)?);
        }
        Ok(out)
    }

    /// Key-values in `[key, end)` as they were at revision `rev`.
    fn scan_at(&self, key: &[u8], end: &[u8], rev: i64) -> Result<Vec<KeyValue>, StoreError> {
        let (start, stop) = if end.is_empty() {
            let p = keys::history_key_prefix(key);
            let stop = keys::prefix_end(&p).unwrap_or_else(|| vec![keys::HISTORY + 1]);
            (p, stop)
        } else if end == [0] {
            (keys::history_bound(key), vec![keys::HISTORY + 1])
        } else {
            (keys::history_bound(key), keys::history_bound(end))
        };
        if start >= stop {
            return Ok(Vec::new());
        }
        let mut out: Vec<KeyValue> = Vec::new();
        let mut last_key: Option<Vec<u8>> = None;
        let mut latest: Option<KeyValue> = None;
        for item in self.tree.range(start..stop) {
            let (row, v) = item?;
            let Some((k, r)) = keys::parse_history_row(&row) else {
                continue;
            };
            if last_key.as_deref() != Some(&k) {
                out.extend(latest.take().filter(|kv| kv.version > 0));
                last_key = Some(k);
            }
            if r.main <= rev {
                latest = Some(decode_kv(&v)?);
            }
        }
        out.extend(latest.filter(|kv| kv.version > 0));
        Ok(out)
    }

    /// Serves a Range from this member's state; the caller decides whether that is linearizable.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        validate_key(&req.key)?;
        let current = self.revision()?;
        let kvs = self.read_range(req, current, None)?;
        Ok(finish_range(req, kvs, current))
    }

    fn read_range(
        &self,
        req: &RangeRequest,
        current: i64,
        overlay: Option<&BTreeMap<Vec<u8>, Option<KeyValue>>>,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if req.revision > current {
            return Err(StoreError::FutureRevision);
        }
        if req.revision > 0 && req.revision < current {
            let compacted = self.compacted()?;
            if req.revision < compacted {
                return Err(StoreError::Compacted {
                    compact_revision: compacted,
                });
            }
            return self.scan_at(&req.key, &req.range_end, req.revision);
        }
        let mut kvs = self.scan_current(&req.key, &req.range_end)?;
        if let Some(overlay) = overlay {
            let mut merged: BTreeMap<Vec<u8>, KeyValue> =
                kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
            for (k, v) in overlay {
                if in_range(k, &req.key, &req.range_end) {
                    match v {
                        Some(kv) => merged.insert(k.clone(), kv.clone()),
                        None => merged.remove(k),
                    };
                }
            }
            kvs = merged.into_values().collect();
        }
        Ok(kvs)
    }

    /// Events with revisions in `[from, to]`, oldest first, at most `limit` of them.
    /// Fails with `Compacted` when `from` is below the compaction point.
    pub fn events(&self, from: i64, to: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let compacted = self.compacted()?;
        if from < compacted {
            return Err(StoreError::Compacted {
                compact_revision: compacted,
            });
        }
        let start = keys::event_row(Rev { main: from, sub: 0 });
        let stop = keys::event_row(Rev {
            main: to + 1,
            sub: 0,
        });
        let mut out = Vec::new();
        for item in self.tree.range(start..stop) {
            if out.len() >= limit {
                break;
            }
            let (row, key) = item?;
            let Some(rev) = Rev::decode(&row[1..]) else {
                continue;
            };
            if let Some(ev) = self.event_at(&key, rev)? {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn event_at(&self, key: &[u8], rev: Rev) -> Result<Option<Event>, StoreError> {
        let row = keys::history_row(key, rev);
        let Some(v) = self.tree.get(&row)? else {
            return Ok(None);
        };
        let kv = decode_kv(&v)?;
        let prefix = keys::history_key_prefix(key);
        let prev = match self.tree.range(prefix..row).next_back() {
            Some(item) => Some(decode_kv(&item?.1)?).filter(|kv| kv.version > 0),
            None => None,
        };
        let ty = if kv.version == 0 {
            EventType::Delete
        } else {
            EventType::Put
        };
        Ok(Some(Event {
            r#type: ty as i32,
            kv: Some(kv),
            prev_kv: prev,
        }))
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
        self.make_durable()
    }

    /// Overrides the applied index, configuration and (optionally) members, as a restored
    /// backup or a received snapshot needs.
    pub fn set_applied(&self, applied: (u64, u64), conf_state: &[u8]) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.insert(keys::META_CONF_STATE, conf_state);
        b.insert(keys::META_APPLIED, &applied_bytes(applied));
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
        Ok(())
    }

    /// Flushes sled and then fsyncs its files, because sled's own flush is only
    /// `sync_file_range`. After this returns, the write-ahead log may drop entries applied so far.
    pub fn make_durable(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        fsync_tree(&self.dir)
    }
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

fn applied_bytes((index, term): (u64, u64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&index.to_be_bytes());
    out[8..].copy_from_slice(&term.to_be_bytes());
    out
}

fn decode_kv(v: &[u8]) -> Result<KeyValue, StoreError> {
    KeyValue::decode(v).map_err(|e| StoreError::Storage(format!("corrupt key-value: {e}")))
}

fn finish_range(req: &RangeRequest, mut kvs: Vec<KeyValue>, revision: i64) -> RangeResponse {
    kvs.retain(|kv| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    });
    let count = kvs.len() as i64;
    if req.count_only {
        return RangeResponse {
            header: header(revision),
            kvs: vec![],
            more: false,
            count,
        };
    }
    sort_kvs(&mut kvs, req.sort_target, req.sort_order);
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header: header(revision),
        kvs,
        more,
        count,
    }
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

/// Collects one entry's changes so they land in a single atomic batch.
struct Writer<'a> {
    mvcc: &'a Mvcc,
    batch: sled::Batch,
    /// Keys written in this entry, so later operations of a transaction see earlier ones.
    overlay: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Lease rows written in this entry.
    leases: BTreeMap<i64, Option<i64>>,
    base: i64,
    sub: u32,
    meta: Vec<(&'static [u8], Vec<u8>)>,
}

impl<'a> Writer<'a> {
    fn new(mvcc: &'a Mvcc) -> Result<Writer<'a>, StoreError> {
        Ok(Writer {
            mvcc,
            batch: sled::Batch::default(),
            overlay: BTreeMap::new(),
            leases: BTreeMap::new(),
            base: mvcc.revision()?,
            sub: 0,
            meta: Vec::new(),
        })
    }

    /// The revision this entry's changes get.
    fn rev(&self) -> i64 {
        self.base + 1
    }

    /// The store revision as seen after this entry.
    fn visible_rev(&self) -> i64 {
        if self.sub > 0 {
            self.base + 1
        } else {
            self.base
        }
    }

    fn commit(mut self, index: u64, term: u64) -> Result<(), StoreError> {
        if self.sub > 0 {
            self.batch
                .insert(keys::META_REVISION, &self.rev().to_be_bytes());
        }
        for (k, v) in self.meta.drain(..) {
            self.batch.insert(k, v);
        }
        self.batch
            .insert(keys::META_APPLIED, &applied_bytes((index, term)));
        self.mvcc.tree.apply_batch(self.batch)?;
        Ok(())
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

    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.mvcc.current(key),
        }
    }

    fn lease_exists(&self, id: i64) -> Result<bool, StoreError> {
        match self.leases.get(&id) {
            Some(v) => Ok(v.is_some()),
            None => Ok(self.mvcc.lease(id)?.is_some()),
        }
    }

    fn next_rev(&mut self) -> Rev {
        let r = Rev {
            main: self.rev(),
            sub: self.sub,
        };
        self.sub += 1;
        r
    }

    fn write(&mut self, key: &[u8], kv: Option<KeyValue>, prev: Option<&KeyValue>) {
        let rev = self.next_rev();
        let hist = kv.clone().unwrap_or_else(|| KeyValue {
            key: key.to_vec(),
            mod_revision: rev.main,
            ..Default::default()
        });
        self.batch
            .insert(keys::history_row(key, rev), hist.encode_to_vec());
        self.batch.insert(keys::event_row(rev), key);
        let cur = keys::prefixed(keys::CURRENT, key);
        let old_lease = prev.map(|p| p.lease).unwrap_or(0);
        let new_lease = kv.as_ref().map(|k| k.lease).unwrap_or(0);
        if old_lease != 0 && old_lease != new_lease {
            self.batch.remove(keys::lease_key_row(old_lease, key));
        }
        if new_lease != 0 && old_lease != new_lease {
            self.batch.insert(keys::lease_key_row(new_lease, key), &[]);
        }
        match &kv {
            Some(kv) => self.batch.insert(cur, kv.encode_to_vec()),
            None => self.batch.remove(cur),
        }
        self.overlay.insert(key.to_vec(), kv);
    }

    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, StoreError> {
        let prev = self.current(&p.key)?;
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
        self.write(&p.key, Some(kv), prev.as_ref());
        Ok(PutResponse {
            header: header(rev),
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, StoreError> {
        let req = RangeRequest {
            key: d.key.clone(),
            range_end: d.range_end.clone(),
            ..Default::default()
        };
        let victims = self.mvcc.read_range(&req, self.base, Some(&self.overlay))?;
        for kv in &victims {
            self.write(&kv.key, None, Some(kv));
        }
        Ok(DeleteRangeResponse {
            header: header(self.visible_rev()),
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv { victims } else { vec![] },
        })
    }

    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let kvs = self.mvcc.read_range(r, self.base, Some(&self.overlay))?;
        Ok(finish_range(r, kvs, self.visible_rev()))
    }

    fn compare(&self, c: &Compare) -> Result<bool, StoreError> {
        use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let req = RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        };
        let kvs = self.mvcc.read_range(&req, self.base, Some(&self.overlay))?;
        let target = T::try_from(c.target)
            .map_err(|_| StoreError::InvalidArgument("bad compare target".into()))?;
        let result = R::try_from(c.result)
            .map_err(|_| StoreError::InvalidArgument("bad compare result".into()))?;
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
        let tree = &self.mvcc.tree;
        // Only keys that changed since the last compaction can have superseded versions.
        let mut touched = BTreeSet::new();
        let start = keys::event_row(Rev { main: old, sub: 0 });
        let stop = keys::event_row(Rev { main: rev, sub: 0 });
        for item in tree.range(start..stop) {
            let (row, key) = item?;
            touched.insert(key.to_vec());
            self.batch.remove(row);
        }
        for key in touched {
            let prefix = keys::history_key_prefix(&key);
            let stop = keys::history_row(
                &key,
                Rev {
                    main: rev + 1,
                    sub: 0,
                },
            );
            let rows: Vec<_> = tree.range(prefix..stop).collect::<Result<_, _>>()?;
            if let Some((last_row, last)) = rows.last() {
                for (row, _) in &rows[..rows.len() - 1] {
                    self.batch.remove(row.clone());
                }
                if decode_kv(last)?.version == 0 {
                    self.batch.remove(last_row.clone());
                }
            }
        }
        self.meta
            .push((keys::META_COMPACTED, rev.to_be_bytes().to_vec()));
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
        self.batch.insert(keys::lease_row(g.id), &ttl.to_be_bytes());
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
            if let Some(prev) = self.current(&key)? {
                self.write(&key, None, Some(&prev));
            }
        }
        self.batch.remove(keys::lease_row(id));
        self.leases.insert(id, None);
        Ok(pb::LeaseRevokeResponse {
            header: header(self.visible_rev()),
        })
    }

    fn member_attributes(&mut self, a: &MemberAttributes) -> Result<(), StoreError> {
        if let Some(mut m) = self.mvcc.member(a.id)? {
            m.name = a.name.clone();
            m.client_ur_ls = a.client_urls.clone();
            self.batch.insert(keys::member_row(a.id), m.encode_to_vec());
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
        let evs = m.events(2, 4, 100).unwrap();
        assert_eq!(evs.len(), 3);
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
            m.events(2, 4, 100),
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
}
