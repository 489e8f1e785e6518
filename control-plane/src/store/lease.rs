//! Lease expiry clocks. Grants and revocations are replicated; time is not. Only the leader
//! counts down and proposes revocations, and a new leader restarts every clock at full TTL,
//! as etcd does, so a lease never expires early because leadership moved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Clock {
    ttl: i64,
    expires: Instant,
    /// When a revocation was last proposed, so it is not proposed again every tick.
    revoking: Option<Instant>,
}

/// Expiry times of all leases this member knows of.
#[derive(Default)]
pub struct LeaseClocks {
    clocks: HashMap<i64, Clock>,
}

const RETRY_REVOKE: Duration = Duration::from_secs(3);

impl LeaseClocks {
    /// Starts (or restarts) a lease's clock at its full TTL.
    pub fn grant(&mut self, id: i64, ttl: i64) {
        let expires = Instant::now() + Duration::from_secs(ttl.max(0) as u64);
        self.clocks.insert(
            id,
            Clock {
                ttl,
                expires,
                revoking: None,
            },
        );
    }

    pub fn revoke(&mut self, id: i64) {
        self.clocks.remove(&id);
    }

    /// Replaces every clock with the given leases at full TTL (after a snapshot or on promotion).
    pub fn reset(&mut self, leases: &[(i64, i64)]) {
        self.clocks.clear();
        for &(id, ttl) in leases {
            self.grant(id, ttl);
        }
    }

    /// Restarts every clock at full TTL: a new leader cannot know how long the old one counted.
    pub fn promote(&mut self) {
        let now = Instant::now();
        for c in self.clocks.values_mut() {
            c.expires = now + Duration::from_secs(c.ttl.max(0) as u64);
            c.revoking = None;
        }
    }

    /// Renews a lease; returns its TTL, or None if it is unknown.
    pub fn renew(&mut self, id: i64) -> Option<i64> {
        let c = self.clocks.get_mut(&id)?;
        c.expires = Instant::now() + Duration::from_secs(c.ttl.max(0) as u64);
        Some(c.ttl)
    }

    /// Remaining and granted TTL in seconds.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let c = self.clocks.get(&id)?;
        let left = c.expires.saturating_duration_since(Instant::now());
        Some((left.as_secs_f64().ceil() as i64, c.ttl))
    }

    /// Leases past their expiry whose revocation should be proposed now.
    pub fn due(&mut self, now: Instant) -> Vec<i64> {
        let mut out = Vec::new();
        for (id, c) in &mut self.clocks {
            let retry = c.revoking.map(|t| now >= t + RETRY_REVOKE).unwrap_or(true);
            if now >= c.expires && retry {
                c.revoking = Some(now);
                out.push(*id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_leases_are_due_once_until_retry() {
        let mut l = LeaseClocks::default();
        l.grant(1, 0);
        l.grant(2, 100);
        let now = Instant::now();
        assert_eq!(l.due(now), vec![1]);
        assert!(l.due(now).is_empty());
        assert_eq!(l.due(now + RETRY_REVOKE), vec![1]);
        assert_eq!(l.renew(2), Some(100));
        assert!(l.remaining(2).unwrap().0 > 90);
        assert_eq!(l.renew(3), None);
    }
}
