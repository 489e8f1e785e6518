//! CPU counters turned into rates: per cgroup (or the node), the reading a window starts from
//! and the last rate computed, in a map bounded in size and pruned to what the latest sample saw.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

/// One reading of a cumulative CPU counter.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    /// When it was taken, for the window's length.
    pub at: Instant,
    /// The same moment on the wall clock, for the window's end as reported.
    pub wall: SystemTime,
    /// CPU time used so far, nanoseconds.
    pub cpu_ns: u64,
}

impl Reading {
    /// A reading of `cpu_ns` taken now.
    pub fn now(cpu_ns: u64) -> Self {
        Reading {
            at: Instant::now(),
            wall: SystemTime::now(),
            cpu_ns,
        }
    }
}

/// Average CPU use over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Nanocores: CPU nanoseconds per second (1e9 = one CPU busy all the time).
    pub nanocores: u64,
    /// When the window ended.
    pub end: SystemTime,
    /// Its length.
    pub window: Duration,
}

#[derive(Debug)]
struct Track {
    start: Reading,
    last: Option<Rate>,
}

/// The windows of every counter being followed.
#[derive(Debug)]
pub struct Windows {
    tracks: HashMap<String, Track>,
    capacity: usize,
}

impl Windows {
    /// Follows at most `capacity` counters; more are not tracked (and have no rate).
    pub fn new(capacity: usize) -> Self {
        Windows {
            tracks: HashMap::new(),
            capacity,
        }
    }

    /// Records a reading of the counter `key` and gives its rate: over the window since the
    /// reading the current one started from, when that is at least `min_window` old (the
    /// reading then starts the next window); otherwise the last rate computed, if any. A counter
    /// not seen before, or one that went backwards (the cgroup was made anew), starts over and
    /// has no rate yet.
    pub fn observe(&mut self, key: &str, now: Reading, min_window: Duration) -> Option<Rate> {
        let Some(track) = self.tracks.get_mut(key) else {
            if self.tracks.len() < self.capacity {
                self.tracks.insert(
                    key.to_string(),
                    Track {
                        start: now,
                        last: None,
                    },
                );
            }
            return None;
        };
        if now.cpu_ns < track.start.cpu_ns || now.at < track.start.at {
            *track = Track {
                start: now,
                last: None,
            };
            return None;
        }
        let window = now.at - track.start.at;
        if window < min_window || window.is_zero() {
            return track.last;
        }
        let used = u128::from(now.cpu_ns - track.start.cpu_ns);
        let nanocores = used * 1_000_000_000 / window.as_nanos().max(1);
        let rate = Rate {
            nanocores: u64::try_from(nanocores).unwrap_or(u64::MAX),
            end: now.wall,
            window,
        };
        track.start = now;
        track.last = Some(rate);
        Some(rate)
    }

    /// How long ago the window of `key` started, if it is followed.
    pub fn age(&self, key: &str, now: Instant) -> Option<Duration> {
        self.tracks
            .get(key)
            .map(|t| now.saturating_duration_since(t.start.at))
    }

    /// Forgets `key`, so its next reading starts a new window.
    pub fn forget(&mut self, key: &str) {
        self.tracks.remove(key);
    }

    /// Forgets every counter not in `seen` (containers and pods that are gone).
    pub fn retain(&mut self, seen: &HashSet<String>) {
        self.tracks.retain(|k, _| seen.contains(k));
    }

    /// How many counters are followed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tracks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Reading, ms: u64, cpu_ns: u64) -> Reading {
        Reading {
            at: base.at + Duration::from_millis(ms),
            wall: base.wall + Duration::from_millis(ms),
            cpu_ns,
        }
    }

    #[test]
    fn rates_over_windows() {
        let mut w = Windows::new(8);
        let t0 = Reading::now(1_000);
        let min = Duration::from_secs(1);
        assert_eq!(w.observe("/a", t0, min), None);
        // Too soon: no window yet, and none before it.
        assert_eq!(w.observe("/a", at(t0, 10, 5_000_000), min), None);
        // Two seconds with half a CPU.
        let r = w
            .observe("/a", at(t0, 2_000, 1_000 + 1_000_000_000), min)
            .unwrap();
        assert_eq!(r.nanocores, 500_000_000);
        assert_eq!(r.window, Duration::from_secs(2));
        assert_eq!(r.end, t0.wall + Duration::from_secs(2));
        // Soon after: the same rate again, and the window start is kept.
        assert_eq!(w.observe("/a", at(t0, 2_100, 9_999_999_999), min), Some(r));
        let r2 = w
            .observe(
                "/a",
                at(t0, 3_000, 1_000 + 1_000_000_000 + 2_000_000_000),
                min,
            )
            .unwrap();
        assert_eq!(r2.nanocores, 2_000_000_000);
        // A counter going backwards is a new cgroup: no rate until the next window.
        assert_eq!(w.observe("/a", at(t0, 4_000, 10), min), None);
        assert_eq!(
            w.observe("/a", at(t0, 5_000, 10 + 250_000_000), min)
                .unwrap()
                .nanocores,
            250_000_000
        );
    }

    #[test]
    fn bounded_and_pruned() {
        let mut w = Windows::new(2);
        let t0 = Reading::now(0);
        for key in ["/a", "/b", "/c"] {
            w.observe(key, t0, Duration::ZERO);
        }
        assert_eq!(w.len(), 2);
        // The third was not followed, so it never gets a rate.
        assert_eq!(w.observe("/c", at(t0, 500, 100), Duration::ZERO), None);
        assert!(w.observe("/a", at(t0, 500, 100), Duration::ZERO).is_some());
        w.retain(&["/b".to_string()].into());
        assert_eq!(w.len(), 1);
        assert!(w.age("/a", Instant::now()).is_none());
        assert!(w.age("/b", t0.at + Duration::from_secs(1)).unwrap() >= Duration::from_secs(1));
        w.forget("/b");
        assert_eq!(w.len(), 0);
    }
}
