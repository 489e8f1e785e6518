//! Expectations, as upstream's `ControllerExpectations`: what a controller has asked the API for
//! and not yet seen in its caches. While a controller's own creations or deletions are still in
//! flight its cache lags, and acting on it would create or delete twice; so a key with unmet
//! expectations is not acted on until the watch catches up, or until the expectations expire
//! (5 minutes, as upstream) in case a watch event was lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store::ObjectKey;

/// How long unmet expectations hold a controller back.
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: HashSet<ObjectKey>,
    set_at: Instant,
}

/// Pending creations (a count) and deletions (the keys asked to go) per controller key.
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<ObjectKey, Expectation>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Expectation>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the controller `key` may act on its cache: nothing is pending, or what is
    /// pending has waited too long.
    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.deletes.is_empty()) || e.set_at.elapsed() > TIMEOUT,
        }
    }

    /// Records that `n` creations were just requested (replacing older expectations).
    pub fn expect_creations(&self, key: &ObjectKey, n: usize) {
        self.lock().insert(
            key.clone(),
            Expectation {
                adds: n as i64,
                deletes: HashSet::new(),
                set_at: Instant::now(),
            },
        );
    }

    /// Records that these objects were just asked to go (replacing older expectations).
    pub fn expect_deletions(&self, key: &ObjectKey, deleted: impl IntoIterator<Item = ObjectKey>) {
        self.lock().insert(
            key.clone(),
            Expectation {
                adds: 0,
                deletes: deleted.into_iter().collect(),
                set_at: Instant::now(),
            },
        );
    }

    /// One creation was observed (or failed, so it will never be observed).
    pub fn creation_observed(&self, key: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// `creations` requested ones will never be observed (they were not sent).
    pub fn lower_creations(&self, key: &ObjectKey, creations: usize) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= creations as i64;
        }
    }

    /// The object `deleted` was observed gone or going (or its deletion failed).
    pub fn deletion_observed(&self, key: &ObjectKey, deleted: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.remove(deleted);
        }
    }

    /// Forgets the controller `key` (it was deleted).
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }

    /// How many controller keys have expectations recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no expectations are recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions_must_be_observed() {
        let e = Expectations::default();
        let rs = ObjectKey::new("ns", "rs");
        assert!(e.satisfied(&rs));
        e.expect_creations(&rs, 2);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs));
        e.lower_creations(&rs, 1);
        assert!(e.satisfied(&rs));
        let p = ObjectKey::new("ns", "p");
        e.expect_deletions(&rs, [p.clone()]);
        assert!(!e.satisfied(&rs));
        e.deletion_observed(&rs, &p);
        assert!(e.satisfied(&rs));
        e.forget(&rs);
        assert!(e.is_empty());
    }
}
