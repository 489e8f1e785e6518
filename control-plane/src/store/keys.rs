//! Layout of the state machine's single sled tree.
//!
//! Everything lives in one tree so that one `apply_batch` makes an applied entry atomic: its
//! key changes, history, events and the applied index move together or not at all.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | meta name | meta value |
//! | `k` | user key | current `KeyValue` |
//! | `h` | escaped user key, revision, sub-revision | `KeyValue` as of that revision (version 0 = deleted) |
//! | `e` | revision, sub-revision | user key (the event; its value is found in `h`) |
//! | `l` | lease id | granted TTL |
//! | `L` | lease id, user key | nothing: keys attached to a lease |
//! | `M` | member id | `Member` |

pub const META: u8 = b'm';
pub const CURRENT: u8 = b'k';
pub const HISTORY: u8 = b'h';
pub const EVENT: u8 = b'e';
pub const LEASE: u8 = b'l';
pub const LEASE_KEY: u8 = b'L';
pub const MEMBER: u8 = b'M';

pub const META_APPLIED: &[u8] = b"mapplied";
pub const META_REVISION: &[u8] = b"mrevision";
pub const META_COMPACTED: &[u8] = b"mcompacted";
pub const META_CONF_STATE: &[u8] = b"mconfstate";
pub const META_CLUSTER_ID: &[u8] = b"mclusterid";

/// A store revision paired with the position of a change inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rev {
    pub main: i64,
    pub sub: u32,
}

impl Rev {
    pub fn encode(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Rev> {
        if b.len() < 12 {
            return None;
        }
        let main = u64::from_be_bytes(b[..8].try_into().ok()?) as i64;
        let sub = u32::from_be_bytes(b[8..12].try_into().ok()?);
        Some(Rev { main, sub })
    }
}

pub fn prefixed(prefix: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(prefix);
    out.extend_from_slice(key);
    out
}

/// Order-preserving escape so that every history row of one key sorts together and before the
/// rows of any longer key: 0x00 becomes 0x00 0xff and the key ends with 0x00 0x01.
pub fn escape_into(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
}

/// The first history row a key can have; every row of keys >= `key` sorts at or after it.
pub fn history_bound(key: &[u8]) -> Vec<u8> {
    let mut out = vec![HISTORY];
    escape_into(&mut out, key);
    out
}

/// The prefix shared by all history rows of exactly `key`.
pub fn history_key_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = history_bound(key);
    out.extend_from_slice(&[0, 1]);
    out
}

pub fn history_row(key: &[u8], rev: Rev) -> Vec<u8> {
    let mut out = history_key_prefix(key);
    out.extend_from_slice(&rev.encode());
    out
}

/// Splits a history row back into its user key and revision.
pub fn parse_history_row(row: &[u8]) -> Option<(Vec<u8>, Rev)> {
    let body = row.strip_prefix(&[HISTORY])?;
    let mut key = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == 0 {
            match body.get(i + 1)? {
                0xff => {
                    key.push(0);
                    i += 2;
                }
                1 => return Some((key, Rev::decode(&body[i + 2..])?)),
                _ => return None,
            }
        } else {
            key.push(body[i]);
            i += 1;
        }
    }
    None
}

pub fn event_row(rev: Rev) -> Vec<u8> {
    prefixed(EVENT, &rev.encode())
}

pub fn lease_row(id: i64) -> Vec<u8> {
    prefixed(LEASE, &(id as u64).to_be_bytes())
}

pub fn lease_key_row(id: i64, key: &[u8]) -> Vec<u8> {
    let mut out = lease_row(id);
    out[0] = LEASE_KEY;
    out.extend_from_slice(key);
    out
}

pub fn member_row(id: u64) -> Vec<u8> {
    prefixed(MEMBER, &id.to_be_bytes())
}

/// The exclusive end of the prefix `p`: the smallest byte string greater than every string
/// starting with `p`, or `None` when no such string exists (all 0xff).
pub fn prefix_end(p: &[u8]) -> Option<Vec<u8>> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rows_roundtrip_and_sort_by_key_then_revision() {
        let keys: [&[u8]; 4] = [b"a", b"a\0", b"a\0b", b"ab"];
        let mut rows = Vec::new();
        for k in keys {
            for main in [3, 1, 2] {
                rows.push(history_row(k, Rev { main, sub: 0 }));
            }
        }
        rows.sort();
        let parsed: Vec<_> = rows.iter().map(|r| parse_history_row(r).unwrap()).collect();
        let mut expected = Vec::new();
        for k in keys {
            for main in [1, 2, 3] {
                expected.push((k.to_vec(), Rev { main, sub: 0 }));
            }
        }
        assert_eq!(parsed, expected);
        assert!(history_bound(b"a\0") <= rows[3]);
        assert!(history_bound(b"ab") > rows[8]);
    }

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
