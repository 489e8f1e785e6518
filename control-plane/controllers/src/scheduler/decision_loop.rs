//! The decision loop, on its own thread: applies watch events to the cache and the queue,
//! schedules pods one at a time (assuming each at once, so the next decision sees it), and
//! hands writes to the API executor without waiting for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use super::api::{Action, Done};
use super::cache::Cache;
use super::cycle::{Decider, Decision};
use super::filters::Plugin;
use super::podinfo::{key_of, PodInfo, PodKey, Priorities};
use super::preemption::Budget;
use super::queue::{QueuedPod, SchedulingQueue};
use super::watches::{Change, Input};

/// The scheduler name this scheduler answers to.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How often unschedulable pods are checked for their 5-minute limit.
const FLUSH_EVERY: Duration = Duration::from_secs(30);
/// Inputs applied before scheduling again, so a flood of events cannot starve scheduling.
const INPUTS_PER_ROUND: usize = 4096;
/// Pods scheduled before looking at inputs again.
const PODS_PER_ROUND: usize = 256;

/// Plugins a freed node (pod deleted) can help.
const FREED: u16 = Plugin::NodeResourcesFit as u16
    | Plugin::NodePorts as u16
    | Plugin::PodTopologySpread as u16
    | Plugin::InterPodAffinity as u16;
/// Plugins a newly placed or relabelled pod can help.
const POD_ADDED: u16 = Plugin::PodTopologySpread as u16 | Plugin::InterPodAffinity as u16;

/// Which watches have completed their first list (indices: nodes, pods, namespaces, classes,
/// budgets).
const KINDS: usize = 5;

/// The loop's state.
pub struct DecisionLoop {
    cache: Cache,
    queue: SchedulingQueue,
    decider: Decider,
    priorities: Priorities,
    /// Pods being bound, with their queue state for a retry.
    binding: HashMap<PodKey, QueuedPod>,
    synced: [bool; KINDS],
    relisting: [Option<HashSet<String>>; KINDS],
    actions: mpsc::Sender<Action>,
    last_flush: Instant,
}

/// A budget's key in the cache: `namespace/name`.
fn budget_key(pdb: &k8s_openapi::api::policy::v1::PodDisruptionBudget) -> String {
    format!(
        "{}/{}",
        pdb.metadata.namespace.as_deref().unwrap_or_default(),
        pdb.metadata.name.as_deref().unwrap_or_default()
    )
}

fn is_ours(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    match spec.and_then(|s| s.scheduler_name.as_deref()) {
        None | Some("") => true,
        Some(n) => n == SCHEDULER_NAME,
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

impl DecisionLoop {
    /// A loop sending its writes to `actions`.
    pub fn new(actions: mpsc::Sender<Action>) -> DecisionLoop {
        DecisionLoop {
            cache: Cache::default(),
            queue: SchedulingQueue::default(),
            decider: Decider::default(),
            priorities: Priorities::default(),
            binding: HashMap::new(),
            synced: [false; KINDS],
            relisting: Default::default(),
            actions,
            last_flush: Instant::now(),
        }
    }

    /// Runs until the inputs close. Blocks the calling (dedicated) thread; `rt` is used only
    /// to wait for inputs when idle.
    pub fn run(
        mut self,
        rt: tokio::runtime::Handle,
        mut inputs: mpsc::Receiver<Input>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        loop {
            // Apply what arrived.
            let mut applied = 0;
            while applied < INPUTS_PER_ROUND {
                match inputs.try_recv() {
                    Ok(input) => self.apply(input),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
                applied += 1;
            }
            while let Ok(d) = done.try_recv() {
                self.finished(d);
            }
            let now = Instant::now();
            if now.duration_since(self.last_flush) >= FLUSH_EVERY {
                self.queue.flush_unschedulable(now);
                self.last_flush = now;
            }
            // Schedule.
            let mut scheduled = 0;
            if self.synced.iter().all(|s| *s) {
                while scheduled < PODS_PER_ROUND {
                    let Some(pod) = self.queue.pop(Instant::now()) else {
                        break;
                    };
                    if !self.schedule(pod) {
                        return;
                    }
                    scheduled += 1;
                }
            }
            if applied > 0 || scheduled > 0 {
                continue;
            }
            // Idle: wait for an input, an outcome, a backoff to end or the next flush.
            let wake = self
                .queue
                .next_backoff()
                .unwrap_or(now + FLUSH_EVERY)
                .min(self.last_flush + FLUSH_EVERY);
            let closed = rt.block_on(async {
                tokio::select! {
                    input = inputs.recv() => match input {
                        Some(i) => { self.apply(i); false }
                        None => true,
                    },
                    Some(d) = done.recv() => { self.finished(d); false }
                    _ = tokio::time::sleep_until(wake.into()) => false,
                }
            });
            if closed {
                return;
            }
        }
    }

    /// Schedules one pod; false when the API executor is gone.
    fn schedule(&mut self, pod: QueuedPod) -> bool {
        let info = pod.info.clone();
        let _span = tracing::debug_span!("schedule", pod = %info.key).entered();
        let now = Instant::now();
        match self.decider.decide(&info, &self.cache) {
            Decision::Bind(node) => {
                tracing::debug!(node = %node, "assumed");
                self.cache.assume(info.clone(), &node);
                self.binding.insert(info.key.clone(), pod);
                self.send(Action::Bind { pod: info, node })
            }
            Decision::Unschedulable {
                message,
                rejected_by,
                preemption,
            } => {
                tracing::debug!(%message, "unschedulable");
                let mut nominate = None;
                let mut ok = true;
                if let Some(c) = preemption {
                    tracing::info!(node = %c.node, victims = c.victims.len(), "preempting");
                    self.cache.nominate(info.clone(), &c.node);
                    nominate = Some(c.node.clone());
                    ok &= self.send(Action::Preempt {
                        preemptor: info.clone(),
                        node: c.node,
                        victims: c.victims,
                    });
                } else if !info.nominated_node.is_empty()
                    || self.cache.nominated_node(&info.key).is_some()
                {
                    // Preemption found nothing: the old nomination goes, as upstream clears it.
                    self.cache.clear_nomination(&info.key);
                    nominate = Some(String::new());
                }
                self.queue.requeue_unschedulable(pod, rejected_by, now);
                ok && self.send(Action::Unschedulable {
                    pod: info,
                    message,
                    nominate,
                })
            }
        }
    }

    fn send(&mut self, action: Action) -> bool {
        self.actions.blocking_send(action).is_ok()
    }

    /// A binding's outcome.
    fn finished(&mut self, done: Done) {
        match done {
            Done::Bound { key } => {
                self.binding.remove(&key);
            }
            Done::BindFailed { key, uid, settled } => {
                let forgotten = self.cache.forget(&key, &uid);
                if forgotten {
                    self.queue.move_for_event(FREED, Instant::now());
                }
                if let Some(pod) = self.binding.remove(&key) {
                    if !settled && forgotten {
                        self.queue.requeue_backoff(pod, Instant::now());
                    }
                }
            }
        }
    }

    fn relist_seen(&mut self, kind: usize, name: String) {
        if let Some(seen) = self.relisting[kind].as_mut() {
            seen.insert(name);
        }
    }

    fn apply(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Node(change) => match *change {
                Change::Apply(node) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    self.relist_seen(0, name.clone());
                    if self.cache.set_node(node) {
                        tracing::debug!(node = %name, "node changed");
                        self.queue.move_for_event(u16::MAX, now);
                    }
                }
                Change::Delete(node) => {
                    if let Some(name) = node.metadata.name.as_deref() {
                        self.cache.remove_node(name);
                    }
                }
                Change::Relist => self.relisting[0] = Some(HashSet::new()),
                Change::Listed => {
                    if let Some(seen) = self.relisting[0].take() {
                        let gone: Vec<String> = self
                            .cache
                            .node_names()
                            .iter()
                            .filter(|n| !seen.contains(*n))
                            .cloned()
                            .collect();
                        for n in gone {
                            self.cache.remove_node(&n);
                        }
                    }
                    self.synced[0] = true;
                }
            },
            Input::Pod(change) => match *change {
                Change::Apply(pod) => {
                    let key = key_of(&pod);
                    self.relist_seen(1, key);
                    self.pod_applied(pod, now);
                }
                Change::Delete(pod) => self.pod_deleted(&key_of(&pod), now),
                Change::Relist => self.relisting[1] = Some(HashSet::new()),
                Change::Listed => {
                    if let Some(seen) = self.relisting[1].take() {
                        let gone: Vec<PodKey> = self
                            .cache
                            .pod_keys()
                            .into_iter()
                            .filter(|k| !seen.contains(k) && !self.cache.is_assumed(k))
                            .collect();
                        for k in gone {
                            self.pod_deleted(&k, now);
                        }
                        let gone: Vec<PodKey> = self
                            .queue
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for k in gone {
                            self.pod_deleted(&k, now);
                        }
                    }
                    self.synced[1] = true;
                }
            },
            Input::Namespace(change) => match *change {
                Change::Apply(ns) => {
                    let name = ns.metadata.name.clone().unwrap_or_default();
                    self.relist_seen(2, name.clone());
                    let labels = ns.metadata.labels.clone().unwrap_or_default();
                    if self.cache.namespaces.get(&name) != Some(&labels) {
                        self.cache.namespaces.insert(name, labels);
                        self.queue
                            .move_for_event(Plugin::InterPodAffinity.bit(), now);
                    }
                }
                Change::Delete(ns) => {
                    if let Some(name) = ns.metadata.name.as_deref() {
                        self.cache.namespaces.remove(name);
                    }
                }
                Change::Relist => self.relisting[2] = Some(HashSet::new()),
                Change::Listed => {
                    if let Some(seen) = self.relisting[2].take() {
                        self.cache.namespaces.retain(|k, _| seen.contains(k));
                    }
                    self.synced[2] = true;
                }
            },
            Input::PriorityClass(change) => match *change {
                Change::Apply(pc) => {
                    self.relist_seen(3, pc.metadata.name.clone().unwrap_or_default());
                    self.priorities.apply(&pc);
                }
                Change::Delete(pc) => {
                    if let Some(name) = pc.metadata.name.as_deref() {
                        self.priorities.remove(name);
                    }
                }
                Change::Relist => self.relisting[3] = Some(HashSet::new()),
                Change::Listed => {
                    self.relisting[3] = None;
                    self.synced[3] = true;
                }
            },
            Input::Budget(change) => match *change {
                Change::Apply(pdb) => {
                    let key = budget_key(&pdb);
                    self.relist_seen(4, key.clone());
                    match Budget::new(&pdb) {
                        Some(b) => self.cache.budgets.insert(key, b),
                        None => self.cache.budgets.remove(&key),
                    };
                }
                Change::Delete(pdb) => {
                    self.cache.budgets.remove(&budget_key(&pdb));
                }
                Change::Relist => self.relisting[4] = Some(HashSet::new()),
                Change::Listed => {
                    if let Some(seen) = self.relisting[4].take() {
                        self.cache.budgets.retain(|k, _| seen.contains(k));
                    }
                    self.synced[4] = true;
                }
            },
        }
    }

    fn pod_applied(&mut self, pod: Pod, now: Instant) {
        let info = PodInfo::new(Arc::new(pod), &self.priorities);
        let key = info.key.clone();
        if !info.node_name.is_empty() {
            // Bound (by us or anyone).
            self.queue.remove(&key);
            self.cache.clear_nomination(&key);
            self.binding.remove(&key);
            if is_terminal(&info.pod) {
                if self.cache.remove_pod(&key).is_some() {
                    self.queue.move_for_event(FREED, now);
                }
                return;
            }
            let info = Arc::new(info.slimmed());
            let old = self.cache.add_bound(info.clone());
            let relevant = match &old {
                None => true,
                Some(o) => o.labels != info.labels || o.node_name != info.node_name,
            };
            if relevant {
                self.queue.move_for_event(POD_ADDED, now);
            }
            return;
        }
        if self.cache.is_assumed(&key) {
            // Its binding is in flight; the outcome decides.
            return;
        }
        let info = Arc::new(info);
        if is_terminal(&info.pod) || info.terminating || !is_ours(&info.pod) || is_gated(&info.pod)
        {
            self.queue.remove(&key);
            self.cache.clear_nomination(&key);
            return;
        }
        if !info.nominated_node.is_empty() {
            self.cache
                .nominate(info.clone(), &info.nominated_node.clone());
        } else if let Some(node) = self.cache.nominated_node(&key).map(str::to_string) {
            // Our own nomination, not yet written back: keep it with the fresh object.
            self.cache.nominate(info.clone(), &node);
        }
        self.queue.add_or_update(info, now);
    }

    fn pod_deleted(&mut self, key: &str, now: Instant) {
        self.queue.remove(key);
        self.cache.clear_nomination(key);
        self.binding.remove(key);
        if self.cache.remove_pod(key).is_some() {
            self.queue.move_for_event(FREED, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod};

    fn drain(rx: &mut mpsc::Receiver<Action>) -> Vec<Action> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn synced_loop() -> (DecisionLoop, mpsc::Receiver<Action>) {
        let (tx, rx) = mpsc::channel(1024);
        let mut l = DecisionLoop::new(tx);
        for kind in 0..KINDS {
            l.synced[kind] = true;
        }
        (l, rx)
    }

    /// Schedules everything queued, as if backoffs (at most 2 s here) had passed.
    fn schedule_all(l: &mut DecisionLoop) {
        while let Some(p) = l.queue.pop(Instant::now() + Duration::from_secs(2)) {
            assert!(l.schedule(p));
        }
    }

    #[test]
    fn assumed_pods_fill_nodes_before_binding_is_confirmed() {
        let (mut l, mut rx) = synced_loop();
        l.apply(Input::Node(Box::new(Change::Apply(node(
            "n1",
            "2",
            "8Gi",
            &[],
        )))));
        for i in 0..3 {
            l.apply(Input::Pod(Box::new(Change::Apply(pod(
                &format!("p{i}"),
                "1",
                "",
            )))));
        }
        schedule_all(&mut l);
        let actions = drain(&mut rx);
        let binds = actions
            .iter()
            .filter(|a| matches!(a, Action::Bind { .. }))
            .count();
        assert_eq!(binds, 2);
        let failed: Vec<&String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Unschedulable { message, .. } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(
            failed,
            vec!["0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."]
        );
        // A failed binding frees the room and the waiting pod gets it.
        let bound = actions.iter().find_map(|a| match a {
            Action::Bind { pod, .. } => Some(pod.clone()),
            _ => None,
        });
        let bound = bound.unwrap();
        l.finished(Done::BindFailed {
            key: bound.key.clone(),
            uid: bound.uid.clone(),
            settled: true,
        });
        schedule_all(&mut l);
        let again = drain(&mut rx);
        assert_eq!(again.len(), 1);
        assert!(matches!(&again[0], Action::Bind { node, .. } if node == "n1"));
    }

    #[test]
    fn other_schedulers_and_gated_pods_are_left_alone() {
        let (mut l, mut rx) = synced_loop();
        l.apply(Input::Node(Box::new(Change::Apply(node(
            "n1",
            "2",
            "8Gi",
            &[],
        )))));
        let mut other = pod("other", "", "");
        other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
        l.apply(Input::Pod(Box::new(Change::Apply(other))));
        let mut gated = pod("gated", "", "");
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
                name: "wait".into(),
            }]);
        l.apply(Input::Pod(Box::new(Change::Apply(gated))));
        schedule_all(&mut l);
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn nothing_is_scheduled_before_the_first_lists() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut l = DecisionLoop::new(tx);
        l.apply(Input::Node(Box::new(Change::Apply(node(
            "n1",
            "2",
            "8Gi",
            &[],
        )))));
        l.apply(Input::Pod(Box::new(Change::Apply(pod("p", "", "")))));
        assert!(!l.synced.iter().all(|s| *s));
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn a_deleted_pod_makes_room_for_a_waiting_one() {
        let (mut l, mut rx) = synced_loop();
        l.apply(Input::Node(Box::new(Change::Apply(node(
            "n1",
            "1",
            "8Gi",
            &[],
        )))));
        let mut big = pod("big", "1", "");
        big.spec.as_mut().unwrap().node_name = Some("n1".into());
        l.apply(Input::Pod(Box::new(Change::Apply(big.clone()))));
        l.apply(Input::Pod(Box::new(Change::Apply(pod("p", "1", "")))));
        schedule_all(&mut l);
        assert!(matches!(
            &drain(&mut rx)[..],
            [Action::Unschedulable { .. }]
        ));
        l.apply(Input::Pod(Box::new(Change::Delete(big))));
        // Backoff of the first failure (1 s) must pass.
        let p = l
            .queue
            .pop(Instant::now() + Duration::from_secs(2))
            .unwrap();
        assert!(l.schedule(p));
        assert!(matches!(&drain(&mut rx)[..], [Action::Bind { .. }]));
    }

    #[test]
    fn preemption_deletes_victims_and_nominates() {
        let (mut l, mut rx) = synced_loop();
        l.apply(Input::Node(Box::new(Change::Apply(node(
            "n1",
            "1",
            "8Gi",
            &[],
        )))));
        let mut low = pod("low", "1", "");
        low.spec.as_mut().unwrap().node_name = Some("n1".into());
        l.apply(Input::Pod(Box::new(Change::Apply(low))));
        l.apply(Input::PriorityClass(Box::new(Change::Apply(
            k8s_openapi::api::scheduling::v1::PriorityClass {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some("high".into()),
                    ..Default::default()
                },
                value: 1000,
                ..Default::default()
            },
        ))));
        let mut high = pod("high", "1", "");
        high.spec.as_mut().unwrap().priority_class_name = Some("high".into());
        l.apply(Input::Pod(Box::new(Change::Apply(high))));
        schedule_all(&mut l);
        let actions = drain(&mut rx);
        assert!(matches!(&actions[0], Action::Preempt { node, victims, .. }
            if node == "n1" && victims.len() == 1 && victims[0].name == "low"));
        assert!(
            matches!(&actions[1], Action::Unschedulable { nominate: Some(n), .. } if n == "n1")
        );
        assert_eq!(l.cache.nominated_node("default/high"), Some("n1"));
    }
}
