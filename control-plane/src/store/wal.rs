//! Write-ahead log for Raft's entries and hard state.
//!
//! sled's flush is not an fsync, so this log is what stands between an acknowledged write and a
//! crash: every Ready's entries and hard state are appended here and `fdatasync`ed before any
//! message or acknowledgement that depends on them leaves the process.
//!
//! The log is a directory of numbered segment files. Each record is
//! `len u32 | crc32 u32 | kind u8 | payload`, little endian, where `len` covers kind and payload.
//! A torn record at the tail of the newest segment (a crash mid-write) is cut off on open.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

/// Segments roll over past this size so old ones can be deleted after compaction.
const SEGMENT_BYTES: u64 = 64 << 20;
/// A record larger than this is treated as corruption rather than allocated.
const MAX_RECORD_BYTES: usize = 512 << 20;

const KIND_HARD_STATE: u8 = 1;
const KIND_ENTRY: u8 = 2;
const KIND_RESET: u8 = 3;
const KIND_COMPACT: u8 = 4;

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("write-ahead log segment {path} is corrupt at offset {offset}: {why}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What replaying the log recovered: the state Raft was in when the process stopped.
#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// Index and term of the last entry dropped by compaction or snapshot (0 for a new log).
    pub base: (u64, u64),
    /// Entries `base.0 + 1 ..`, contiguous.
    pub entries: Vec<Entry>,
}

struct Segment {
    seq: u64,
    max_index: u64,
}

/// An append-only, fsync-durable log of Raft records.
pub struct Wal {
    dir: PathBuf,
    file: File,
    size: u64,
    segments: Vec<Segment>,
    buf: Vec<u8>,
    /// Last values written, repeated at the head of each new segment so old ones can go.
    hard_state: HardState,
    base: (u64, u64),
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Wal {
    /// Opens (or creates) the log in `dir` and replays it.
    pub fn open(dir: &Path) -> Result<(Wal, Recovered), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut seqs: Vec<u64> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(".wal")?, 16).ok()
            })
            .collect();
        seqs.sort_unstable();

        let mut state = Replay::default();
        let mut segments = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let last = i + 1 == seqs.len();
            let max_index = state.replay_segment(&segment_path(dir, seq), last)?;
            segments.push(Segment { seq, max_index });
        }
        let recovered = state.finish(dir)?;

        let seq = segments.last().map(|s| s.seq).unwrap_or(1);
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        if segments.is_empty() {
            segments.push(Segment { seq, max_index: 0 });
            sync_dir(dir)?;
        }
        let wal = Wal {
            dir: dir.to_path_buf(),
            file,
            size,
            segments,
            buf: Vec::with_capacity(1 << 20),
            hard_state: recovered.hard_state.clone(),
            base: recovered.base,
        };
        Ok((wal, recovered))
    }

    fn push(&mut self, kind: u8, payload: &[u8]) {
        let len = (payload.len() + 1) as u32;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        crc.update(payload);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buf.push(kind);
        self.buf.extend_from_slice(payload);
    }

    /// Queues entries; an entry at index i replaces any earlier entry at i or later.
    pub fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            let bytes = e.write_to_bytes().unwrap_or_default();
            self.push(KIND_ENTRY, &bytes);
            if let Some(seg) = self.segments.last_mut() {
                seg.max_index = seg.max_index.max(e.index);
            }
        }
    }

    /// Queues the hard state (term, vote, commit).
    pub fn set_hard_state(&mut self, hs: &HardState) {
        let bytes = hs.write_to_bytes().unwrap_or_default();
        self.push(KIND_HARD_STATE, &bytes);
        self.hard_state = hs.clone();
    }

    /// Queues a reset: every entry is dropped and the log restarts after `(index, term)`.
    /// Written after a snapshot from the leader has been made durable in the state machine.
    pub fn reset(&mut self, index: u64, term: u64) {
        self.push(KIND_RESET, &encode_pair(index, term));
        self.base = (index, term);
    }

    /// Queues a compaction point: entries up to `index` are no longer needed because the state
    /// machine is durable through it. Old segments wholly below it are deleted at the next sync.
    pub fn compact(&mut self, index: u64, term: u64) {
        if index <= self.base.0 {
            return;
        }
        self.push(KIND_COMPACT, &encode_pair(index, term));
        self.base = (index, term);
    }

    /// Writes everything queued and waits for it to reach the disk.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if !self.buf.is_empty() {
            let path = segment_path(&self.dir, self.active_seq());
            self.file.write_all(&self.buf).map_err(io_err(&path))?;
            self.file.sync_data().map_err(io_err(&path))?;
            self.size += self.buf.len() as u64;
            self.buf.clear();
        }
        if self.size >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.delete_compacted()
    }

    fn active_seq(&self) -> u64 {
        self.segments.last().map(|s| s.seq).unwrap_or(1)
    }

    fn rotate(&mut self) -> Result<(), WalError> {
        let seq = self.active_seq() + 1;
        let path = segment_path(&self.dir, seq);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.size = 0;
        self.segments.push(Segment { seq, max_index: 0 });
        // The head of every segment restates what earlier segments established.
        let (index, term) = self.base;
        self.push(KIND_COMPACT, &encode_pair(index, term));
        let hs = self.hard_state.clone();
        self.set_hard_state(&hs);
        sync_dir(&self.dir)?;
        let path = segment_path(&self.dir, seq);
        self.file.write_all(&self.buf).map_err(io_err(&path))?;
        self.file.sync_data().map_err(io_err(&path))?;
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn delete_compacted(&mut self) -> Result<(), WalError> {
        let active = self.active_seq();
        let base = self.base.0;
        let mut deleted = false;
        while self.segments.len() > 1 {
            let s = &self.segments[0];
            if s.seq == active || s.max_index > base {
                break;
            }
            let path = segment_path(&self.dir, s.seq);
            fs::remove_file(&path).map_err(io_err(&path))?;
            self.segments.remove(0);
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn encode_pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

fn decode_pair(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() != 16 {
        return None;
    }
    let a = u64::from_le_bytes(p[..8].try_into().ok()?);
    let b = u64::from_le_bytes(p[8..].try_into().ok()?);
    Some((a, b))
}

#[derive(Default)]
struct Replay {
    hard_state: HardState,
    base: (u64, u64),
    entries: BTreeMap<u64, Entry>,
}

impl Replay {
    /// Applies one segment's records; returns the highest entry index it holds.
    fn replay_segment(&mut self, path: &Path, last: bool) -> Result<u64, WalError> {
        let mut data = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(io_err(path))?;
        let mut off = 0usize;
        let mut max_index = 0;
        while off < data.len() {
            match self.replay_record(&data[off..]) {
                Ok((used, idx)) => {
                    off += used;
                    max_index = max_index.max(idx);
                }
                Err(why) if last => {
                    tracing::warn!(path = %path.display(), offset = off, %why, "cutting torn tail of write-ahead log");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err(path))?;
                    f.set_len(off as u64).map_err(io_err(path))?;
                    f.sync_all().map_err(io_err(path))?;
                    break;
                }
                Err(why) => {
                    return Err(WalError::Corrupt {
                        path: path.to_path_buf(),
                        offset: off as u64,
                        why,
                    })
                }
            }
        }
        Ok(max_index)
    }

    /// Applies the record at the start of `buf`; returns bytes used and its entry index (or 0).
    fn replay_record(&mut self, buf: &[u8]) -> Result<(usize, u64), String> {
        if buf.len() < 9 {
            return Err("truncated record header".into());
        }
        let len = u32::from_le_bytes(buf[..4].try_into().map_err(|_| "header")?) as usize;
        let crc = u32::from_le_bytes(buf[4..8].try_into().map_err(|_| "header")?);
        if len == 0 || len > MAX_RECORD_BYTES || buf.len() < 8 + len {
            return Err(format!("record length {len} runs past the end"));
        }
        let body = &buf[8..8 + len];
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch".into());
        }
        let (kind, payload) = (body[0], &body[1..]);
        let mut index = 0;
        match kind {
            KIND_HARD_STATE => {
                self.hard_state =
                    HardState::parse_from_bytes(payload).map_err(|e| e.to_string())?;
            }
            KIND_ENTRY => {
                let e = Entry::parse_from_bytes(payload).map_err(|e| e.to_string())?;
                index = e.index;
                drop(self.entries.split_off(&e.index));
                self.entries.insert(e.index, e);
            }
            KIND_RESET => {
                self.base = decode_pair(payload).ok_or("bad reset record")?;
                self.entries.clear();
            }
            KIND_COMPACT => {
                let (i, t) = decode_pair(payload).ok_or("bad compact record")?;
                if i > self.base.0 {
                    self.base = (i, t);
                    self.entries = self.entries.split_off(&(i + 1));
                }
            }
            other => return Err(format!("unknown record kind {other}")),
        }
        Ok((8 + len, index))
    }

    fn finish(self, dir: &Path) -> Result<Recovered, WalError> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for (expect, (i, e)) in (self.base.0 + 1..).zip(self.entries) {
            if i != expect {
                return Err(WalError::Corrupt {
                    path: dir.to_path_buf(),
                    offset: 0,
                    why: format!("entry {i} follows a gap (expected {expect})"),
                });
            }
            entries.push(e);
        }
        Ok(Recovered {
            hard_state: self.hard_state,
            base: self.base,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    #[test]
    fn replays_entries_hard_state_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, rec) = Wal::open(dir.path()).unwrap();
            assert!(rec.entries.is_empty());
            wal.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
            let hs = HardState {
                term: 2,
                commit: 2,
                ..Default::default()
            };
            wal.set_hard_state(&hs);
            // A new leader overwrote index 3.
            wal.append(&[entry(3, 2)]);
            wal.sync().unwrap();
        }
        let (_, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.entries.len(), 3);
        assert_eq!(rec.entries[2].term, 2);
        assert_eq!(rec.hard_state.term, 2);
        assert_eq!(rec.hard_state.commit, 2);
    }

    #[test]
    fn cuts_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&[entry(1, 1), entry(2, 1)]);
            wal.sync().unwrap();
        }
        let path = segment_path(dir.path(), 1);
        let len = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.entries.len(), 1);
        wal.append(&[entry(2, 1)]);
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.entries.len(), 2);
    }

    #[test]
    fn compaction_and_reset_move_the_base() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>());
            wal.compact(6, 1);
            wal.sync().unwrap();
        }
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.base, (6, 1));
        assert_eq!(rec.entries.first().map(|e| e.index), Some(7));
        wal.reset(20, 3);
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.base, (20, 3));
        assert!(rec.entries.is_empty());
    }

    #[test]
    fn old_segments_are_deleted_after_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[entry(1, 1), entry(2, 1)]);
        wal.sync().unwrap();
        wal.rotate().unwrap();
        wal.append(&[entry(3, 1)]);
        wal.compact(2, 1);
        wal.sync().unwrap();
        assert_eq!(wal.segments.len(), 1);
        drop(wal);
        let (_, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.base, (2, 1));
        assert_eq!(rec.entries.len(), 1);
    }
}
