//! A work queue of keys with upstream's (client-go `workqueue`) semantics: a key waiting is
//! queued once however often it is added; a key being processed is never handed to a second
//! worker, and if it is added meanwhile it is processed again after [`Queue::done`]; failed keys
//! come back after a per-key exponential backoff, capped by an overall token bucket; delayed
//! adds keep the earliest deadline. The number of distinct keys is bounded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-key backoff: 5 ms doubling up to 1000 s, as upstream's default controller rate limiter.
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);
/// The overall bucket: 10 retries a second, bursts of 100.
const BUCKET_QPS: f64 = 10.0;
const BUCKET_BURST: f64 = 100.0;

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// Earliest deadline of each delayed key; the heap may hold stale entries.
    delayed: HashMap<T, Instant>,
    heap: BinaryHeap<Reverse<(Instant, u64, T)>>,
    seq: u64,
    failures: HashMap<T, u32>,
    tokens: f64,
    refilled: Instant,
    shut_down: bool,
    dropped: u64,
}

struct Inner<T> {
    name: &'static str,
    capacity: usize,
    state: Mutex<State<T>>,
    notify: Notify,
}

/// A bounded, de-duplicating, rate-limited queue of keys; cheap to clone.
pub struct Queue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Ord + std::fmt::Display + Send + 'static> Queue<T> {
    /// An empty queue holding at most `capacity` distinct keys (waiting or delayed); more are
    /// dropped with a warning, and the owning controller's periodic resync brings them back.
    pub fn new(name: &'static str, capacity: usize) -> Queue<T> {
        Queue {
            inner: Arc::new(Inner {
                name,
                capacity,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    delayed: HashMap::new(),
                    heap: BinaryHeap::new(),
                    seq: 0,
                    failures: HashMap::new(),
                    tokens: BUCKET_BURST,
                    refilled: Instant::now(),
                    shut_down: false,
                    dropped: 0,
                }),
                notify: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_locked(&self, s: &mut State<T>, item: T) -> bool {
        if s.shut_down || s.dirty.contains(&item) {
            return false;
        }
        if s.dirty.len() + s.delayed.len() >= self.inner.capacity {
            s.dropped += 1;
            if s.dropped.is_power_of_two() {
                tracing::warn!(
                    queue = self.inner.name,
                    dropped = s.dropped,
                    "work queue full; key dropped"
                );
            }
            return false;
        }
        s.dirty.insert(item.clone());
        if !s.processing.contains(&item) {
            s.queue.push_back(item);
            return true;
        }
        false
    }

    /// Queues `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let woke = {
            let mut s = self.lock();
            self.add_locked(&mut s, item)
        };
        if woke {
            self.inner.notify.notify_one();
        }
    }

    /// Queues `item` once `delay` has passed (at once for a zero delay); an earlier pending
    /// deadline for the same key wins.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let at = Instant::now() + delay;
        {
            let mut s = self.lock();
            if s.shut_down {
                return;
            }
            match s.delayed.get(&item) {
                Some(existing) if *existing <= at => return,
                Some(_) => {}
                None if s.dirty.len() + s.delayed.len() >= self.inner.capacity => {
                    s.dropped += 1;
                    return;
                }
                None => {}
            }
            s.delayed.insert(item.clone(), at);
            s.seq += 1;
            let seq = s.seq;
            s.heap.push(Reverse((at, seq, item)));
            if s.heap.len() > 2 * s.delayed.len() + 1024 {
                let fresh: BinaryHeap<_> = s
                    .delayed
                    .iter()
                    .enumerate()
                    .map(|(i, (k, at))| Reverse((*at, i as u64, k.clone())))
                    .collect();
                s.heap = fresh;
            }
        }
        // A waiting worker recomputes its sleep.
        self.inner.notify.notify_one();
    }

    /// Queues `item` again after its backoff: the larger of its own exponential delay and the
    /// overall bucket's.
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut s = self.lock();
            let n = s.failures.entry(item.clone()).or_insert(0);
            let exp = BASE_DELAY
                .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
            *n = n.saturating_add(1);
            let now = Instant::now();
            let elapsed = now.duration_since(s.refilled).as_secs_f64();
            s.tokens = (s.tokens + elapsed * BUCKET_QPS).min(BUCKET_BURST);
            s.refilled = now;
            s.tokens -= 1.0;
            let bucket = if s.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.tokens / BUCKET_QPS)
            };
            exp.max(bucket)
        };
        self.add_after(item, delay);
    }

    /// Forgets `item`'s failures, so its next backoff starts small again.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How often `item` has been retried since it was last forgotten.
    pub fn retries(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// Moves delayed keys whose time has come into the queue; returns the next deadline.
    fn promote_due(&self, s: &mut State<T>) -> Option<Instant> {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = s.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, _, item))) = s.heap.pop() else {
                break;
            };
            // Stale entries (a later add moved the deadline) are skipped.
            if s.delayed.get(&item) == Some(&at) {
                s.delayed.remove(&item);
                self.add_locked(s, item);
            }
        }
        s.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next key to process, waiting for one; `None` once the queue is shut down. The key
    /// is the caller's until it calls [`Queue::done`].
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.inner.notify.notified();
            let deadline = {
                let mut s = self.lock();
                if s.shut_down {
                    return None;
                }
                let next = self.promote_due(&mut s);
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        self.inner.notify.notify_one();
                    }
                    return Some(item);
                }
                next
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `item` processed; if it was added meanwhile it is queued again.
    pub fn done(&self, item: &T) {
        let requeued = {
            let mut s = self.lock();
            s.processing.remove(item);
            if s.dirty.contains(item) {
                s.queue.push_back(item.clone());
                true
            } else {
                false
            }
        };
        if requeued {
            self.inner.notify.notify_one();
        }
    }

    /// Keys waiting (not delayed, not being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; every waiting [`Queue::get`] returns `None`.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.inner.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_waiting_keys() {
        let q: Queue<String> = Queue::new("t", 100);
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        assert_eq!(q.get().await.as_deref(), Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_in_processing_is_handed_out_again_only_after_done() {
        let q: Queue<String> = Queue::new("t", 100);
        q.add("a".into());
        let a = q.get().await.unwrap_or_default();
        q.add("a".into());
        // Not queued while processing.
        assert!(q.is_empty());
        let second = tokio::time::timeout(Duration::from_millis(50), q.get()).await;
        assert!(
            second.is_err(),
            "a processing key must not be handed out twice"
        );
        q.done(&a);
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn delayed_keys_arrive_after_their_delay_and_earliest_wins() {
        let q: Queue<String> = Queue::new("t", 100);
        let start = Instant::now();
        q.add_after("a".into(), Duration::from_millis(400));
        q.add_after("a".into(), Duration::from_millis(50));
        assert_eq!(q.get().await.as_deref(), Some("a"));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_millis(350));
    }

    #[tokio::test]
    async fn backoff_grows_per_key_and_forget_resets_it() {
        let q: Queue<String> = Queue::new("t", 100);
        for _ in 0..3 {
            q.add_rate_limited("a".into());
        }
        assert_eq!(q.retries(&"a".to_string()), 3);
        q.forget(&"a".to_string());
        assert_eq!(q.retries(&"a".to_string()), 0);
    }

    #[tokio::test]
    async fn capacity_bounds_distinct_keys() {
        let q: Queue<u32> = Queue::new("t", 3);
        for i in 0..10 {
            q.add(i);
        }
        assert_eq!(q.len(), 3);
    }

    #[tokio::test]
    async fn shut_down_wakes_workers() {
        let q: Queue<u32> = Queue::new("t", 3);
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(h.await.ok().flatten(), None);
    }
}
