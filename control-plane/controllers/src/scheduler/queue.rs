//! The scheduling queue, as upstream's: an active heap ordered by priority then time queued,
//! a backoff heap (1 s doubling to 10 s per failed attempt), and the unschedulable pods that
//! wait for a cluster event that could help them, or for 5 minutes at most.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::podinfo::{PodInfo, PodKey};

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest stay among the unschedulable pods without a helpful event.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Where a queued pod waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
}

/// A pod waiting to be scheduled.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When it (re-)entered the queue; orders pods of equal priority.
    pub since: Instant,
    /// When the last attempt ended, for backoff.
    last_attempt: Option<Instant>,
    /// Filter plugins that rejected it last time ([`super::filters::Plugin`] bits).
    pub rejected_by: u16,
}

struct Entry {
    pod: QueuedPod,
    stage: Stage,
    /// Bumped whenever the entry moves, so stale heap items are skipped.
    seq: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    since: Instant,
    seq: u64,
    key: PodKey,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then earlier, then queued first.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.since.cmp(&self.since))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct BackoffItem {
    until: std::cmp::Reverse<Instant>,
    seq: std::cmp::Reverse<u64>,
    key: PodKey,
}

/// Pending pods in the three stages, each pod at most once.
#[derive(Default)]
pub struct SchedulingQueue {
    entries: HashMap<PodKey, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<BackoffItem>,
    seq: u64,
}

/// Backoff after `attempts` failed attempts.
pub fn backoff_for(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    /// How many pods wait in any stage.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pod waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys of every queued pod.
    pub fn keys(&self) -> impl Iterator<Item = &PodKey> {
        self.entries.keys()
    }

    /// Whether the pod is queued.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn place(&mut self, key: PodKey, pod: QueuedPod, stage: Stage) {
        let seq = self.next_seq();
        match stage {
            Stage::Active => {
                self.active.push(ActiveItem {
                    priority: pod.info.priority,
                    since: pod.since,
                    seq,
                    key: key.clone(),
                });
            }
            Stage::Backoff(until) => self.backoff.push(BackoffItem {
                until: std::cmp::Reverse(until),
                seq: std::cmp::Reverse(seq),
                key: key.clone(),
            }),
            Stage::Unschedulable(_) => {}
        }
        self.entries.insert(key, Entry { pod, stage, seq });
    }

    /// Adds a new pending pod, or updates a queued one. An update to a pod waiting as
    /// unschedulable moves it on (its spec may now fit), through backoff if still due.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        match self.entries.remove(&key) {
            None => {
                let pod = QueuedPod {
                    info,
                    attempts: 0,
                    since: now,
                    last_attempt: None,
                    rejected_by: 0,
                };
                self.place(key, pod, Stage::Active);
            }
            Some(mut e) => {
                let changed = !same_scheduling_inputs(&e.pod.info, &info);
                e.pod.info = info;
                match e.stage {
                    Stage::Unschedulable(_) if changed => {
                        let stage = self.retry_stage(&e.pod, now);
                        self.place(key, e.pod, stage);
                    }
                    Stage::Active => {
                        // Keep its place; refresh the heap item in case priority changed.
                        self.place(key, e.pod, Stage::Active);
                    }
                    stage => {
                        let seq = e.seq;
                        self.entries.insert(
                            key,
                            Entry {
                                pod: e.pod,
                                stage,
                                seq,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Drops a pod (deleted, bound, or no longer ours).
    pub fn remove(&mut self, key: &str) -> Option<QueuedPod> {
        self.entries.remove(key).map(|e| e.pod)
    }

    fn retry_stage(&self, pod: &QueuedPod, now: Instant) -> Stage {
        match pod.last_attempt {
            Some(t) if t + backoff_for(pod.attempts) > now => {
                Stage::Backoff(t + backoff_for(pod.attempts))
            }
            _ => Stage::Active,
        }
    }

    /// Moves pods whose backoff ended to the active heap, and those unschedulable for longer
    /// than [`MAX_UNSCHEDULABLE`] back to the queue.
    pub fn flush(&mut self, now: Instant) {
        while let Some(top) = self.backoff.peek() {
            if top.until.0 > now {
                break;
            }
            let Some(item) = self.backoff.pop() else {
                break;
            };
            let current = self
                .entries
                .get(&item.key)
                .is_some_and(|e| e.seq == item.seq.0 && matches!(e.stage, Stage::Backoff(_)));
            if current {
                if let Some(e) = self.entries.remove(&item.key) {
                    self.place(item.key, e.pod, Stage::Active);
                }
            }
        }
    }

    /// Moves unschedulable pods that waited longer than [`MAX_UNSCHEDULABLE`] on.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        self.move_where(now, |_, since| {
            now.duration_since(since) >= MAX_UNSCHEDULABLE
        });
    }

    /// A cluster event that could help pods rejected by any of `plugins` (bits): moves them
    /// to backoff or active. `u16::MAX` moves every unschedulable pod.
    pub fn move_for_event(&mut self, plugins: u16, now: Instant) {
        self.move_where(now, |p, _| {
            p.rejected_by == 0 || p.rejected_by & plugins != 0
        });
    }

    /// Moves one unschedulable pod on (e.g. a preemptor whose victims are gone).
    pub fn activate(&mut self, key: &str) {
        if let Some(e) = self.entries.get(key) {
            if matches!(e.stage, Stage::Unschedulable(_) | Stage::Backoff(_)) {
                if let Some(e) = self.entries.remove(key) {
                    self.place(key.to_string(), e.pod, Stage::Active);
                }
            }
        }
    }

    fn move_where(&mut self, now: Instant, pred: impl Fn(&QueuedPod, Instant) -> bool) {
        let keys: Vec<PodKey> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.stage, Stage::Unschedulable(since) if pred(&e.pod, since)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(e) = self.entries.remove(&key) {
                let stage = self.retry_stage(&e.pod, now);
                self.place(key, e.pod, stage);
            }
        }
    }

    /// Takes the next pod to schedule (after moving due backoffs), if any.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        while let Some(item) = self.active.pop() {
            let current = self
                .entries
                .get(&item.key)
                .is_some_and(|e| e.seq == item.seq && e.stage == Stage::Active);
            if current {
                return self.entries.remove(&item.key).map(|e| e.pod);
            }
        }
        None
    }

    /// Puts back a pod no node fits, to wait for a helpful event.
    pub fn requeue_unschedulable(&mut self, mut pod: QueuedPod, rejected_by: u16, now: Instant) {
        pod.attempts += 1;
        pod.last_attempt = Some(now);
        pod.rejected_by = rejected_by;
        pod.since = now;
        let key = pod.info.key.clone();
        self.place(key, pod, Stage::Unschedulable(now));
    }

    /// Puts back a pod whose attempt failed for another reason (API error), after backoff.
    pub fn requeue_backoff(&mut self, mut pod: QueuedPod, now: Instant) {
        pod.attempts += 1;
        pod.last_attempt = Some(now);
        pod.since = now;
        let until = now + backoff_for(pod.attempts);
        let key = pod.info.key.clone();
        self.place(key, pod, Stage::Backoff(until));
    }

    /// When the earliest backoff ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.peek().map(|b| b.until.0)
    }
}

/// Whether an update leaves everything scheduling reads unchanged (status-only updates do).
fn same_scheduling_inputs(a: &PodInfo, b: &PodInfo) -> bool {
    a.uid == b.uid && a.labels == b.labels && a.pod.spec == b.pod.spec && a.priority == b.priority
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::pod;
    use crate::scheduler::podinfo::Priorities;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        let mut p = pod(name, "", "");
        p.spec.as_mut().unwrap().priority = Some(priority);
        Arc::new(PodInfo::new(Arc::new(p), &Priorities::default()))
    }

    #[test]
    fn priority_then_time() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add_or_update(info("low", 0), t);
        q.add_or_update(info("high", 100), t + Duration::from_millis(1));
        q.add_or_update(info("low2", 0), t + Duration::from_millis(2));
        q.add_or_update(info("mid", 50), t + Duration::from_millis(3));
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t + Duration::from_millis(4)))
            .map(|p| p.info.name.clone())
            .collect();
        assert_eq!(order, vec!["high", "mid", "low", "low2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        assert_eq!(backoff_for(1), Duration::from_secs(1));
        assert_eq!(backoff_for(2), Duration::from_secs(2));
        assert_eq!(backoff_for(4), Duration::from_secs(8));
        assert_eq!(backoff_for(5), Duration::from_secs(10));
        assert_eq!(backoff_for(100), Duration::from_secs(10));
    }

    #[test]
    fn errors_back_off_then_return() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        let p = q.pop(t).unwrap();
        q.requeue_backoff(p, t);
        assert!(q.pop(t + Duration::from_millis(500)).is_none());
        assert_eq!(q.next_backoff(), Some(t + Duration::from_secs(1)));
        assert_eq!(q.pop(t + Duration::from_secs(1)).unwrap().attempts, 1);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        let p = q.pop(t).unwrap();
        q.requeue_unschedulable(p, 32, t);
        assert!(q.pop(t + Duration::from_secs(60)).is_none());
        // An event for another plugin does not move it.
        q.move_for_event(4, t + Duration::from_secs(60));
        assert!(q.pop(t + Duration::from_secs(60)).is_none());
        q.move_for_event(32, t + Duration::from_secs(60));
        assert_eq!(q.pop(t + Duration::from_secs(60)).unwrap().info.name, "a");
    }

    #[test]
    fn events_during_backoff_wait_for_it_and_the_periodic_flush_catches_the_rest() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        let p = q.pop(t).unwrap();
        q.requeue_unschedulable(p, 32, t);
        q.move_for_event(u16::MAX, t + Duration::from_millis(100));
        assert!(
            q.pop(t + Duration::from_millis(200)).is_none(),
            "still backing off"
        );
        assert!(q.pop(t + Duration::from_secs(1)).is_some());

        q.add_or_update(info("b", 0), t);
        let p = q.pop(t).unwrap();
        q.requeue_unschedulable(p, 32, t);
        q.flush_unschedulable(t + Duration::from_secs(299));
        assert!(q.pop(t + Duration::from_secs(299)).is_none());
        q.flush_unschedulable(t + MAX_UNSCHEDULABLE);
        assert!(q.pop(t + MAX_UNSCHEDULABLE).is_some());
    }

    #[test]
    fn spec_updates_retry_unschedulable_pods_and_removal_drops_them() {
        let mut q = SchedulingQueue::default();
        let t = Instant::now();
        q.add_or_update(info("a", 0), t);
        let p = q.pop(t).unwrap();
        q.requeue_unschedulable(p, 32, t);
        // A status-only update changes nothing.
        q.add_or_update(info("a", 0), t + Duration::from_secs(5));
        assert!(q.pop(t + Duration::from_secs(5)).is_none());
        q.add_or_update(info("a", 10), t + Duration::from_secs(5));
        assert_eq!(q.pop(t + Duration::from_secs(5)).unwrap().info.priority, 10);
        q.add_or_update(info("b", 0), t);
        assert!(q.remove("default/b").is_some());
        assert!(q.pop(t).is_none());
    }
}
