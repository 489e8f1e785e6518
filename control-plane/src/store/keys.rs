//! Layout of the state machine's single sled tree.
//!
//! Everything lives in one tree so that one `apply_batch` makes a group of applied entries
//! atomic: their changes and the applied index move together or not at all.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m` | meta name | meta value |
//! | `r` | revision | every change made at that revision, in sub-revision order (see `mvcc`) |
//! | `l` | lease id | granted TTL |
//! | `M` | member id | `Member` |
//!
//! One row per revision means a put costs one sled insert. Which revision holds a key's
//! current or past value is kept in memory by [`super::index`] and rebuilt from the `r` rows
//! at start, as etcd rebuilds its tree index from bbolt.

pub const META: u8 = b'm';
pub const REVISION: u8 = b'r';
pub const LEASE: u8 = b'l';
pub const MEMBER: u8 = b'M';

pub const META_APPLIED: &[u8] = b"mapplied";
pub const META_COMPACTED: &[u8] = b"mcompacted";
pub const META_CONF_STATE: &[u8] = b"mconfstate";
pub const META_CLUSTER_ID: &[u8] = b"mclusterid";

/// A store revision paired with the position of a change inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// The row holding every change made at revision `main`; rows sort by revision.
pub fn revision_row(main: i64) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = REVISION;
    out[1..].copy_from_slice(&(main as u64).to_be_bytes());
    out
}

pub fn lease_row(id: i64) -> Vec<u8> {
    prefixed(LEASE, &(id as u64).to_be_bytes())
}

pub fn member_row(id: u64) -> Vec<u8> {
    prefixed(MEMBER, &id.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_rows_sort_by_revision() {
        let rows: Vec<_> = [1i64, 255, 256, 1 << 40].map(revision_row).to_vec();
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(rows, sorted);
        assert!(rows.iter().all(|r| r[0] == REVISION));
    }
}
