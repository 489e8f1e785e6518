//! Raft's log as raft-rs sees it: an in-memory tail over the fsync-durable write-ahead log.
//!
//! The tail holds only entries since the last compaction, so memory stays bounded by the
//! snapshot interval. Snapshots are never stored here: they are cut from the state machine on
//! demand, which always sits at a compaction point or later.

use std::collections::VecDeque;
use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::error::StoreError;
use super::mvcc::Mvcc;
use super::wal::{Wal, WalError};

impl From<WalError> for StoreError {
    fn from(e: WalError) -> Self {
        StoreError::Storage(e.to_string())
    }
}

/// The durable Raft log plus the state machine it snapshots from.
pub struct RaftLog {
    wal: Wal,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the entry just before `entries[0]`.
    base: (u64, u64),
    entries: VecDeque<Entry>,
    mvcc: Mvcc,
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl RaftLog {
    /// Opens the log in `dir`, reconciling it with what the state machine has applied.
    pub fn open(dir: &Path, mvcc: Mvcc) -> Result<RaftLog, StoreError> {
        let (wal, rec) = Wal::open(dir)?;
        let mut log = RaftLog {
            wal,
            hard_state: rec.hard_state,
            conf_state: ConfState::default(),
            base: rec.base,
            entries: rec.entries.into(),
            mvcc,
        };
        if let Some(cs) = log.mvcc.conf_state()? {
            log.conf_state =
                ConfState::parse_from_bytes(&cs).map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        // A snapshot made durable in the state machine just before a crash may not have reached
        // the log yet: the state machine is then ahead of the log, which restarts after it.
        let (applied, applied_term) = log.mvcc.applied()?;
        if applied > log.last() {
            log.entries.clear();
            log.base = (applied, applied_term);
            log.wal.reset(applied, applied_term);
        }
        if log.hard_state.commit < applied {
            log.hard_state.commit = applied;
        }
        if log.hard_state.term < log.base.1 {
            log.hard_state.term = log.base.1;
        }
        let hs = log.hard_state.clone();
        log.wal.set_hard_state(&hs);
        log.wal.sync()?;
        Ok(log)
    }

    fn first(&self) -> u64 {
        self.base.0 + 1
    }

    fn last(&self) -> u64 {
        self.base.0 + self.entries.len() as u64
    }

    /// Queues new entries; conflicting entries from the same index on are replaced.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        if first.index <= self.base.0 {
            // Already compacted: only the part after the base is new.
            let skip = (self.base.0 + 1 - first.index) as usize;
            if skip >= ents.len() {
                return;
            }
            return self.append(&ents[skip..]);
        }
        let keep = (first.index - self.first()) as usize;
        self.entries.truncate(keep.min(self.entries.len()));
        self.entries.extend(ents.iter().cloned());
        self.wal.append(ents);
    }

    pub fn set_hard_state(&mut self, hs: &HardState) {
        self.hard_state = hs.clone();
        self.wal.set_hard_state(hs);
    }

    pub fn set_commit(&mut self, commit: u64) {
        if commit > self.hard_state.commit {
            let mut hs = self.hard_state.clone();
            hs.commit = commit;
            self.set_hard_state(&hs);
        }
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Restarts the log after a snapshot that the state machine has already made durable.
    pub fn reset_to_snapshot(&mut self, index: u64, term: u64, cs: ConfState) {
        self.entries.clear();
        self.base = (index, term);
        self.conf_state = cs;
        self.wal.reset(index, term);
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        if self.hard_state.term < term {
            self.hard_state.term = term;
        }
        let hs = self.hard_state.clone();
        self.wal.set_hard_state(&hs);
    }

    /// Drops entries up to `index`; the state machine must be durable through it.
    pub fn compact(&mut self, index: u64) -> Result<(), StoreError> {
        if index <= self.base.0 || index > self.last() {
            return Ok(());
        }
        let term = self
            .term(index)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let drop = (index - self.base.0) as usize;
        self.entries.drain(..drop);
        self.base = (index, term);
        self.wal.compact(index, term);
        Ok(())
    }

    /// Makes everything queued durable.
    pub fn persist(&mut self) -> Result<(), StoreError> {
        Ok(self.wal.sync()?)
    }

    pub fn last_index(&self) -> u64 {
        self.last()
    }

    pub fn first_index(&self) -> u64 {
        self.first()
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for i in low..high {
            let e = &self.entries[(i - self.first()) as usize];
            size += e.compute_size() as u64;
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.base.0 {
            return Ok(self.base.1);
        }
        if idx < self.base.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let (index, term) = self.mvcc.applied().map_err(store_err)?;
        if index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot {
            data: self.mvcc.export().map_err(store_err)?.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        if let Some(cs) = self.mvcc.conf_state().map_err(store_err)? {
            *meta.mut_conf_state() = ConfState::parse_from_bytes(&cs).map_err(store_err)?;
        }
        Ok(snap)
    }
}
