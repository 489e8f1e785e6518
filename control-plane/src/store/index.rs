//! The in-memory key index: for every user key, the revisions that changed it since the last
//! compaction. It answers "which revision holds this key's value, now or at revision N", so sled
//! only stores one row per revision and a put costs one insert. Like etcd's tree index, it is
//! rebuilt from the stored revisions at start; its size follows the live keyspace and history.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use skiff_proto::mvccpb::KeyValue;

use super::keys::Rev;

/// One change of a key: where it is stored and the metadata reads need without its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub rev: Rev,
    pub create: i64,
    /// Zero marks a deletion.
    pub version: i64,
    pub lease: i64,
}

impl Version {
    pub fn is_live(&self) -> bool {
        self.version > 0
    }

    /// The key-value this version describes, without its value.
    pub fn meta_kv(&self, key: &[u8]) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            create_revision: self.create,
            mod_revision: self.rev.main,
            version: self.version,
            lease: self.lease,
            value: Vec::new(),
        }
    }

    /// The metadata of a stored key-value at `rev`.
    pub fn of(kv: &KeyValue, rev: Rev) -> Version {
        Version {
            rev,
            create: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// Versions per key, keys attached to each lease, and the revisions the index is at.
#[derive(Debug, Default)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    leases: HashMap<i64, BTreeSet<Vec<u8>>>,
    /// The newest revision whose changes are in the index.
    pub revision: i64,
    /// The revision below which history is gone.
    pub compacted: i64,
}

impl Index {
    /// The live version of `key` now.
    pub fn current(&self, key: &[u8]) -> Option<Version> {
        self.keys.get(key)?.last().copied().filter(Version::is_live)
    }

    /// The live version of `key` as of revision `rev`.
    pub fn at(&self, key: &[u8], rev: i64) -> Option<Version> {
        let versions = self.keys.get(key)?;
        let n = versions.partition_point(|v| v.rev.main <= rev);
        versions[..n].last().copied().filter(Version::is_live)
    }

    /// The live version of `key` just before the change at `rev`, for an event's prev_kv.
    pub fn previous(&self, key: &[u8], rev: Rev) -> Option<Version> {
        let versions = self.keys.get(key)?;
        let n = versions.partition_point(|v| v.rev < rev);
        versions[..n].last().copied().filter(Version::is_live)
    }

    /// Live keys in etcd's range `[start, end)` (empty end: just `start`; `"\0"`: to the end),
    /// now (`at` = None) or as of a past revision.
    pub fn range(&self, start: &[u8], end: &[u8], at: Option<i64>) -> Vec<(Vec<u8>, Version)> {
        let pick = |k: &[u8]| match at {
            None => self.current(k),
            Some(rev) => self.at(k, rev),
        };
        if end.is_empty() {
            return pick(start)
                .map(|v| (start.to_vec(), v))
                .into_iter()
                .collect();
        }
        let upper = if end == [0] {
            Bound::Unbounded
        } else if start >= end {
            return Vec::new();
        } else {
            Bound::Excluded(end)
        };
        self.keys
            .range::<[u8], _>((Bound::Included(start), upper))
            .filter_map(|(k, _)| pick(k).map(|v| (k.clone(), v)))
            .collect()
    }

    /// Keys attached to a lease now.
    pub fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Records a change of `key`; changes must arrive in revision order.
    pub fn record(&mut self, key: &[u8], v: Version) {
        let old_lease = self.current(key).map(|o| o.lease).unwrap_or(0);
        let new_lease = if v.is_live() { v.lease } else { 0 };
        if old_lease != new_lease {
            if old_lease != 0 {
                if let Some(set) = self.leases.get_mut(&old_lease) {
                    set.remove(key);
                    if set.is_empty() {
                        self.leases.remove(&old_lease);
                    }
                }
            }
            if new_lease != 0 {
                self.leases
                    .entry(new_lease)
                    .or_default()
                    .insert(key.to_vec());
            }
        }
        match self.keys.get_mut(key) {
            Some(versions) => versions.push(v),
            None => {
                self.keys.insert(key.to_vec(), vec![v]);
            }
        }
    }

    /// Forgets history older than `rev`, keeping each key's version as of `rev` unless it is a
    /// deletion.
    pub fn compact(&mut self, rev: i64) {
        self.keys.retain(|_, versions| {
            let n = versions.partition_point(|v| v.rev.main <= rev);
            if n > 0 {
                let keep_from = if versions[n - 1].is_live() { n - 1 } else { n };
                versions.drain(..keep_from);
            }
            !versions.is_empty()
        });
        self.compacted = rev;
    }

    /// Every stored change some read may still need.
    pub fn revisions(&self) -> HashSet<Rev> {
        self.keys.values().flatten().map(|v| v.rev).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(main: i64, sub: u32, version: i64, lease: i64) -> Version {
        Version {
            rev: Rev { main, sub },
            create: 1,
            version,
            lease,
        }
    }

    #[test]
    fn versions_are_found_now_and_in_the_past() {
        let mut ix = Index::default();
        ix.record(b"a", v(2, 0, 1, 0));
        ix.record(b"b", v(3, 0, 1, 0));
        ix.record(b"a", v(4, 0, 0, 0));
        ix.record(b"a", v(5, 0, 1, 0));
        assert_eq!(ix.current(b"a").map(|x| x.rev.main), Some(5));
        assert_eq!(ix.at(b"a", 3).map(|x| x.rev.main), Some(2));
        assert_eq!(ix.at(b"a", 4), None);
        assert_eq!(ix.at(b"a", 1), None);
        assert_eq!(ix.previous(b"a", Rev { main: 5, sub: 0 }), None);
        assert_eq!(
            ix.previous(b"a", Rev { main: 4, sub: 0 })
                .map(|x| x.rev.main),
            Some(2)
        );
        let keys = |r: Vec<(Vec<u8>, Version)>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(ix.range(b"a", b"c", None)),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(keys(ix.range(b"a", b"c", Some(4))), vec![b"b".to_vec()]);
        assert_eq!(keys(ix.range(b"b", b"\0", None)), vec![b"b".to_vec()]);
        assert!(ix.range(b"c", b"a", None).is_empty());
    }

    #[test]
    fn compaction_keeps_what_reads_at_the_compacted_revision_need() {
        let mut ix = Index::default();
        ix.record(b"a", v(2, 0, 1, 0));
        ix.record(b"b", v(2, 1, 1, 0));
        ix.record(b"a", v(3, 0, 2, 0));
        ix.record(b"b", v(4, 0, 0, 0));
        // a moved on at 3 and b was deleted at 4: only a's version at 3 is still needed.
        ix.compact(4);
        assert_eq!(ix.revisions(), HashSet::from([Rev { main: 3, sub: 0 }]));
        assert_eq!(ix.at(b"a", 4).map(|x| x.rev.main), Some(3));
        assert!(ix.range(b"a", b"\0", Some(4)).len() == 1);
        assert_eq!(ix.compacted, 4);
    }

    #[test]
    fn leases_track_attached_keys() {
        let mut ix = Index::default();
        ix.record(b"a", v(2, 0, 1, 7));
        ix.record(b"b", v(3, 0, 1, 7));
        ix.record(b"a", v(4, 0, 2, 8));
        assert_eq!(ix.lease_keys(7), vec![b"b".to_vec()]);
        ix.record(b"b", v(5, 0, 0, 0));
        assert!(ix.lease_keys(7).is_empty());
        assert_eq!(ix.lease_keys(8), vec![b"a".to_vec()]);
    }
}
