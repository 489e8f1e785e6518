//! The node lifecycle controller, as upstream's (`pkg/controller/nodelifecycle` with its taint
//! eviction manager): it tells live nodes from dead ones and moves pods off the dead.
//!
//! - **Health.** A node is heard from when its Lease in `kube-node-lease` is renewed or its
//!   Ready condition's heartbeat moves; both are observed on this controller's own clock, so
//!   clock skew between nodes and the control plane does not matter. A node not heard from
//!   for [`GRACE_PERIOD`] (node-monitor-grace-period, 40 s) gets its Ready, MemoryPressure,
//!   DiskPressure and PIDPressure conditions set to Unknown (`NodeStatusUnknown`, "Kubelet
//!   stopped posting node status."), a `NodeNotReady` event, and its pods' Ready condition
//!   set False (upstream's MarkPodsNotReady).
//! - **Taints.** Conditions become taints: Ready Unknown → `node.kubernetes.io/unreachable`,
//!   Ready False → `node.kubernetes.io/not-ready` (both NoSchedule and NoExecute), pressure
//!   conditions and `spec.unschedulable` → their NoSchedule taints. Adding a NoExecute taint to
//!   a healthy node is rate limited (0.1 nodes/s; 0.01/s when over 55% of a large cluster is
//!   unhealthy, none in a small one), and when every node is unhealthy (the control plane,
//!   not the nodes, is probably cut off) NoExecute taints are removed rather than added, as
//!   upstream's zone states do. A node heard from again loses the taints once its agent posts
//!   Ready True.
//! - **Taint eviction.** A pod on a node with NoExecute taints it does not tolerate is
//!   deleted; one tolerating them all with `tolerationSeconds` is deleted that long after this
//!   controller first saw it there (the smallest of its matching tolerations); tolerating
//!   forever keeps it. Each deletion gets a `DisruptionTarget` condition and a
//!   `TaintManagerEviction` event. ReplicaSets replace the evicted pods, and the scheduler
//!   places the replacements on nodes without the taint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use tracing::Instrument;

use super::informer::{self, Change, Informer};
use super::queue::Queue;
use super::store::ObjectKey;
use super::{Context, Error};
use crate::events::{Kind, Recorder};

/// How long a node may go unheard before it is Unknown (upstream's
/// `--node-monitor-grace-period`).
pub const GRACE_PERIOD: Duration = Duration::from_secs(40);
/// How often every node's health is checked (upstream's `--node-monitor-period`).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Ready False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Ready Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `spec.unschedulable`.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The reason of conditions this controller sets Unknown.
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
/// The message of conditions this controller sets Unknown.
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";

/// The conditions a silent node's agent can no longer vouch for.
const NODE_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Condition (type, status) → the NoSchedule taint it implies (upstream's
/// `nodeConditionToTaintKeyStatusMap`, and Ready's two).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];
/// Most pods waiting for an eviction check.
const QUEUE_CAPACITY: usize = 200_000;
/// Most nodes waiting for their pods to be checked.
const NODE_QUEUE_CAPACITY: usize = 50_000;
/// Workers checking pods.
const WORKERS: usize = 4;
/// NoExecute taints added per second in a healthy cluster (`--node-eviction-rate`).
const EVICTION_RATE: f64 = 0.1;
/// ... and when over [`UNHEALTHY_THRESHOLD`] of the nodes are unhealthy
/// (`--secondary-node-eviction-rate`), in clusters over [`LARGE_CLUSTER`] nodes.
const SECONDARY_EVICTION_RATE: f64 = 0.01;
/// Upstream's `--unhealthy-zone-threshold`.
const UNHEALTHY_THRESHOLD: f64 = 0.55;
/// Upstream's `--large-cluster-size-threshold`.
const LARGE_CLUSTER: usize = 50;

/// What this controller knows of one node between checks.
#[derive(Debug)]
struct Health {
    /// When the node was last heard from, on this controller's clock.
    probe: Instant,
    /// The Lease's renewTime last seen.
    renew: Option<Timestamp>,
    /// The Ready condition's heartbeat last seen.
    heartbeat: Option<Timestamp>,
    /// The Ready status last seen, to act on transitions.
    ready: Option<String>,
}

/// A token bucket: how many nodes may get a new NoExecute taint.
#[derive(Debug)]
struct Limiter {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(1.0);
        if rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The controller's state.
pub struct NodeLifecycleController {
    ctx: Arc<Context>,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    health: Mutex<HashMap<String, Health>>,
    /// Pods (by uid) tolerating their node's NoExecute taints for a while: when first seen so.
    pending: Mutex<HashMap<String, Instant>>,
    pods: Queue<ObjectKey>,
    node_pods: Queue<String>,
    limiter: Mutex<Limiter>,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its tasks: the node Lease informer,
/// the health monitor, and the eviction workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let nlc = Arc::new(NodeLifecycleController {
        ctx: ctx.clone(),
        nodes: ctx.nodes.clone(),
        leases: Informer::new("node-leases", informer::trim_object),
        health: Mutex::default(),
        pending: Mutex::default(),
        pods: Queue::new("taint-eviction", QUEUE_CAPACITY),
        node_pods: Queue::new("taint-eviction-nodes", NODE_QUEUE_CAPACITY),
        limiter: Mutex::new(Limiter {
            tokens: 1.0,
            at: Instant::now(),
        }),
        recorder: Recorder::start(ctx.client.clone(), "node-controller", None),
    });
    let weak = Arc::downgrade(&nlc);
    nlc.nodes.on_change(move |c| {
        if let Some(n) = weak.upgrade() {
            n.node_changed(c)
        }
    });
    let weak = Arc::downgrade(&nlc);
    nlc.leases.on_change(move |c| {
        if let Some(n) = weak.upgrade() {
            n.lease_changed(c)
        }
    });
    let weak = Arc::downgrade(&nlc);
    ctx.pods.on_change(move |c| {
        if let Some(n) = weak.upgrade() {
            n.pod_changed(c)
        }
    });
    let mut tasks: Vec<BoxFuture<'static, ()>> = vec![
        Box::pin(
            nlc.leases
                .clone()
                .run(Api::namespaced(ctx.client.clone(), LEASE_NAMESPACE)),
        ),
        Box::pin(nlc.clone().monitor()),
    ];
    tasks.extend(super::workers(
        "taint-eviction",
        nlc.pods.clone(),
        WORKERS,
        {
            let nlc = nlc.clone();
            move |key| {
                let nlc = nlc.clone();
                async move { nlc.sync_pod(key).await }
            }
        },
    ));
    tasks.extend(super::workers(
        "taint-eviction-nodes",
        nlc.node_pods.clone(),
        1,
        {
            let nlc = nlc.clone();
            move |node: String| {
                let nlc = nlc.clone();
                async move {
                    nlc.queue_pods_of(&node);
                    Ok(())
                }
            }
        },
    ));
    tasks
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A node's condition of `kind`.
fn condition<'a>(status: Option<&'a NodeStatus>, kind: &str) -> Option<&'a NodeCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// The status of a node's Ready condition (`None` when it has none).
fn ready_status(node: &Node) -> Option<&str> {
    condition(node.status.as_ref(), "Ready").map(|c| c.status.as_str())
}

fn no_execute(node: &Node) -> Vec<&Taint> {
    node.spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .filter(|t| t.effect == "NoExecute")
        .collect()
}

/// The conditions to write for a node last heard from `age` ago: every agent-owned condition
/// Unknown (keeping its heartbeat, moving its transition time only when its status changes)
/// once `age` passes the grace period; `None` when nothing is to change.
pub fn stale_conditions(
    status: Option<&NodeStatus>,
    age: Duration,
    grace: Duration,
    now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    if age <= grace {
        return None;
    }
    let mut out = Vec::new();
    for kind in NODE_CONDITIONS {
        match condition(status, kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => out.push(NodeCondition {
                status: "Unknown".into(),
                reason: Some(REASON_UNKNOWN.into()),
                message: Some(MESSAGE_UNKNOWN.into()),
                last_transition_time: Some(Time(now)),
                ..c.clone()
            }),
            None => out.push(NodeCondition {
                type_: kind.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: None,
                last_transition_time: Some(Time(now)),
            }),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What may happen to a node's NoExecute taints this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoExecute {
    /// Add, swap or remove as the Ready condition says.
    Apply,
    /// Swap or remove, but add none to a node without one (the rate limit says wait).
    NoNew,
    /// Remove them all (every node is unhealthy: evicting would only make things worse).
    Clear,
}

/// The taints a node should carry: its own taints, with the ones this controller manages
/// (from conditions and `spec.unschedulable`) set as the node's state says. Taints that stay
/// keep their `timeAdded`; a new NoExecute taint gets `now`.
pub fn desired_taints(node: &Node, mode: NoExecute, now: Timestamp) -> Vec<Taint> {
    let status = node.status.as_ref();
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let managed = |t: &Taint| {
        let key_managed =
            t.key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key);
        let effect_managed = t.effect == "NoSchedule"
            || (t.effect == "NoExecute"
                && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE));
        key_managed && effect_managed
    };
    let mut want: Vec<(&str, &str)> = Vec::new();
    for (kind, value, key) in CONDITION_TAINTS {
        if condition(status, kind).is_some_and(|c| c.status == value) {
            want.push((key, "NoSchedule"));
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let had_no_execute = current.iter().any(|t| {
        t.effect == "NoExecute" && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
    });
    let ne_key = match ready_status(node) {
        Some("False") => Some(TAINT_NOT_READY),
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => None,
    };
    if let Some(key) = ne_key {
        let allowed = match mode {
            NoExecute::Apply => true,
            NoExecute::NoNew => had_no_execute,
            NoExecute::Clear => false,
        };
        if allowed {
            want.push((key, "NoExecute"));
        }
    }
    let mut out: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
    for (key, effect) in want {
        match current.iter().find(|t| t.key == key && t.effect == effect) {
            Some(t) => out.push(t.clone()),
            None => out.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: (effect == "NoExecute").then_some(Time(now)),
            }),
        }
    }
    // Keep the node's order for taints that stay, so an unchanged set compares equal.
    out.sort_by_key(|t| {
        current
            .iter()
            .position(|c| c.key == t.key && c.effect == t.effect)
            .unwrap_or(usize::MAX)
    });
    out
}

/// Whether two taint lists hold the same taints (order aside).
fn same_taints(a: &[Taint], b: &[Taint]) -> bool {
    a.len() == b.len() && a.iter().all(|t| b.contains(t))
}

/// Upstream's `ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// What the taint eviction does with a pod on a node with NoExecute taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// A taint is not tolerated: delete it now.
    Now,
    /// Every taint is tolerated, the shortest for this long.
    After(Duration),
    /// Every taint is tolerated forever.
    Never,
}

/// Upstream's `getMatchingTolerations` + `getMinTolerationTime`.
pub fn eviction(taints: &[&Taint], tolerations: &[Toleration]) -> Eviction {
    if taints.is_empty() {
        return Eviction::Never;
    }
    let mut min: Option<i64> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        for t in matching {
            if let Some(s) = t.toleration_seconds {
                min = Some(min.map_or(s, |m| m.min(s)));
            }
        }
    }
    match min {
        None => Eviction::Never,
        Some(s) if s <= 0 => Eviction::Now,
        Some(s) => Eviction::After(Duration::from_secs(s.unsigned_abs())),
    }
}

/// The rate at which nodes may get new NoExecute taints, and whether to clear them all,
/// given how many of `total` nodes are unhealthy (upstream's zone states, for one zone).
pub fn disruption(unhealthy: usize, total: usize) -> (f64, bool) {
    if total == 0 {
        return (EVICTION_RATE, false);
    }
    if unhealthy == total {
        return (0.0, true);
    }
    if unhealthy > 2 && unhealthy as f64 / total as f64 >= UNHEALTHY_THRESHOLD {
        let rate = if total > LARGE_CLUSTER {
            SECONDARY_EVICTION_RATE
        } else {
            0.0
        };
        return (rate, false);
    }
    (EVICTION_RATE, false)
}

impl NodeLifecycleController {
    fn heard(&self, node: &str, renew: Option<Timestamp>, heartbeat: Option<Timestamp>) {
        let mut health = lock(&self.health);
        let now = Instant::now();
        let h = health.entry(node.to_string()).or_insert(Health {
            probe: now,
            renew: None,
            heartbeat: None,
            ready: None,
        });
        if renew.is_some() && renew != h.renew {
            h.renew = renew;
            h.probe = now;
        }
        if heartbeat.is_some() && heartbeat != h.heartbeat {
            h.heartbeat = heartbeat;
            h.probe = now;
        }
    }

    fn lease_changed(&self, c: &Change<'_, Lease>) {
        let lease = match c {
            Change::Added(l) | Change::Updated { new: l, .. } => l,
            Change::Deleted(_) => return,
        };
        let Some(name) = lease.metadata.name.as_deref() else {
            return;
        };
        let renew = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0);
        self.heard(name, renew, None);
    }

    fn node_changed(&self, c: &Change<'_, Node>) {
        match c {
            Change::Added(n) => {
                if let Some(name) = n.metadata.name.as_deref() {
                    let hb = condition(n.status.as_ref(), "Ready")
                        .and_then(|c| c.last_heartbeat_time.as_ref())
                        .map(|t| t.0);
                    self.heard(name, None, hb);
                    if !no_execute(n).is_empty() {
                        self.node_pods.add(name.to_string());
                    }
                }
            }
            Change::Updated { old, new } => {
                let Some(name) = new.metadata.name.as_deref() else {
                    return;
                };
                let hb = condition(new.status.as_ref(), "Ready")
                    .and_then(|c| c.last_heartbeat_time.as_ref())
                    .map(|t| t.0);
                self.heard(name, None, hb);
                if no_execute(old) != no_execute(new) {
                    self.node_pods.add(name.to_string());
                }
            }
            Change::Deleted(n) => {
                if let Some(name) = n.metadata.name.as_deref() {
                    lock(&self.health).remove(name);
                }
            }
        }
    }

    fn pod_changed(&self, c: &Change<'_, Pod>) {
        let pod = match c {
            Change::Added(p) | Change::Updated { new: p, .. } => p,
            Change::Deleted(p) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    lock(&self.pending).remove(uid);
                }
                return;
            }
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let tainted = self
            .nodes
            .store()
            .get_named("", node)
            .is_some_and(|n| !no_execute(&n).is_empty());
        if tainted {
            if let Some(key) = ObjectKey::of(pod.as_ref()) {
                self.pods.add(key);
            }
        }
    }

    /// Queues every pod bound to `node` for an eviction check.
    fn queue_pods_of(&self, node: &str) {
        for pod in self.ctx.pods.store().list() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) {
                if let Some(key) = ObjectKey::of(pod.as_ref()) {
                    self.pods.add(key);
                }
            }
        }
    }

    /// Checks every node every [`MONITOR_PERIOD`], once the caches are filled.
    async fn monitor(self: Arc<Self>) {
        self.nodes.wait_synced().await;
        self.leases.wait_synced().await;
        self.ctx.pods.wait_synced().await;
        let mut tick = tokio::time::interval(MONITOR_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.monitor_pass().await;
        }
    }

    async fn monitor_pass(&self) {
        let nodes = self.nodes.store().list();
        let now = Instant::now();
        let unhealthy = nodes
            .iter()
            .filter(|n| ready_status(n) != Some("True"))
            .count();
        let (rate, clear) = disruption(unhealthy, nodes.len());
        for node in nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let span = tracing::info_span!("node_lifecycle", node = %name);
            self.check_node(&node, &name, now, rate, clear)
                .instrument(span)
                .await;
        }
    }

    async fn check_node(&self, node: &Node, name: &str, now: Instant, rate: f64, clear: bool) {
        let age = {
            let mut health = lock(&self.health);
            let h = health.entry(name.to_string()).or_insert(Health {
                probe: now,
                renew: None,
                heartbeat: None,
                ready: None,
            });
            now.saturating_duration_since(h.probe)
        };
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let mut ready = ready_status(node).map(str::to_string);
        if let Some(conditions) =
            stale_conditions(node.status.as_ref(), age, GRACE_PERIOD, Timestamp::now())
        {
            let patch = json!({ "status": { "conditions": conditions } });
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(unheard_for = ?age, "node stopped posting status; conditions Unknown");
                    ready = Some("Unknown".into());
                }
                Err(e) => {
                    tracing::warn!("marking the node's conditions Unknown: {e}");
                    return;
                }
            }
        }
        let was = {
            let mut health = lock(&self.health);
            health
                .get_mut(name)
                .and_then(|h| std::mem::replace(&mut h.ready, ready.clone()))
        };
        if was.as_deref() == Some("True") && ready.as_deref() != Some("True") {
            self.recorder.object(
                node,
                Kind::Normal,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            self.mark_pods_not_ready(name).await;
        }
        // Taints follow the (possibly just updated) conditions.
        let mut view = node.clone();
        if ready.as_deref() == Some("Unknown") && ready_status(node) != Some("Unknown") {
            if let Some(c) = view
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Ready"))
            {
                c.status = "Unknown".into();
            } else {
                let st = view.status.get_or_insert_with(Default::default);
                st.conditions
                    .get_or_insert_with(Vec::new)
                    .push(NodeCondition {
                        type_: "Ready".into(),
                        status: "Unknown".into(),
                        ..Default::default()
                    });
            }
        }
        let current = view
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let mut mode = if clear {
            NoExecute::Clear
        } else {
            NoExecute::NoNew
        };
        let limited = desired_taints(&view, mode, Timestamp::now());
        if !clear {
            let full = desired_taints(&view, NoExecute::Apply, Timestamp::now());
            if !same_taints(&full, &limited) && lock(&self.limiter).take(rate, now) {
                mode = NoExecute::Apply;
            }
        }
        if same_taints(&current, &desired_taints(&view, mode, Timestamp::now())) {
            return;
        }
        if let Err(e) = self.write_taints(&api, name, mode).await {
            tracing::warn!("updating the node's taints: {e}");
        }
    }

    /// Reads the node and writes its taints as [`desired_taints`] computes them from what it
    /// reads (a conflict waits for the next pass).
    async fn write_taints(
        &self,
        api: &Api<Node>,
        name: &str,
        mode: NoExecute,
    ) -> Result<(), kube::Error> {
        let mut node = api.get(name).await?;
        let before = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let want = desired_taints(&node, mode, Timestamp::now());
        if same_taints(&before, &want) {
            return Ok(());
        }
        tracing::info!(
            taints = ?want.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(),
            "updating the node's taints"
        );
        let spec = node.spec.get_or_insert_with(Default::default);
        spec.taints = (!want.is_empty()).then_some(want);
        api.replace(name, &PostParams::default(), &node).await?;
        Ok(())
    }

    /// Sets the Ready condition of every pod on `node` False (upstream's MarkPodsNotReady).
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Time(Timestamp::now());
        for pod in self.ctx.pods.store().list() {
            let spec_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if spec_node != Some(node) || !super::podutil::is_ready(&pod) {
                continue;
            }
            let (Some(ns), Some(name)) = (
                pod.metadata.namespace.as_deref(),
                pod.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
            let patch = json!({ "status": { "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now}
            ]}});
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::debug!(pod = %format!("{ns}/{name}"), "marking the pod not ready: {e}");
            }
        }
    }

    /// Evicts the pod at `key` if its node's NoExecute taints say so, or checks it again when
    /// its toleration runs out.
    async fn sync_pod(&self, key: ObjectKey) -> Result<(), Error> {
        let Some(pod) = self.ctx.pods.store().get(&key) else {
            return Ok(());
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let forget = || {
            lock(&self.pending).remove(&uid);
            Ok(())
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return forget();
        }
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return forget();
        };
        let Some(node) = self.nodes.store().get_named("", &node_name) else {
            return forget();
        };
        let taints = no_execute(&node);
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        let now = Instant::now();
        match eviction(&taints, &tolerations) {
            Eviction::Never => forget(),
            Eviction::Now => self.evict(&pod, &node_name).await,
            Eviction::After(d) => {
                let first = {
                    let mut pending = lock(&self.pending);
                    if pending.len() >= QUEUE_CAPACITY && !pending.contains_key(&uid) {
                        now
                    } else {
                        *pending.entry(uid.clone()).or_insert(now)
                    }
                };
                let due = first + d;
                if now >= due {
                    self.evict(&pod, &node_name).await
                } else {
                    self.pods.add_after(key, due - now);
                    Ok(())
                }
            }
        }
    }

    /// Marks the pod as disrupted and deletes it, with an event.
    async fn evict(&self, pod: &Pod, node: &str) -> Result<(), Error> {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return Ok(());
        };
        let span = tracing::info_span!("taint_eviction", node, pod = %format!("{ns}/{name}"));
        async {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
            self.recorder.object(
                pod,
                Kind::Normal,
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{name}"),
            );
            let condition = json!({ "status": { "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Time(Timestamp::now()),
            }]}});
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
                .await
            {
                tracing::debug!("adding the DisruptionTarget condition: {e}");
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(name, &dp).await {
                Ok(_) => {
                    tracing::info!("evicted the pod from its tainted node");
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        lock(&self.pending).remove(uid);
                    }
                    Ok(())
                }
                Err(e) if super::not_found(&e) || super::conflict(&e) => Ok(()),
                Err(e) => Err(Error::Api(e)),
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![
                    NodeCondition {
                        type_: "Ready".into(),
                        status: ready.into(),
                        reason: Some("KubeletReady".into()),
                        last_heartbeat_time: Some(Time(Timestamp::UNIX_EPOCH)),
                        last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                        ..Default::default()
                    },
                    NodeCondition {
                        type_: "MemoryPressure".into(),
                        status: "False".into(),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn keys(ts: &[Taint]) -> Vec<String> {
        ts.iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    #[test]
    fn a_node_goes_unknown_only_after_the_grace_period() {
        let n = node("True", vec![]);
        let now = Timestamp::now();
        let grace = Duration::from_secs(40);
        assert!(stale_conditions(n.status.as_ref(), Duration::from_secs(39), grace, now).is_none());
        let cs = stale_conditions(n.status.as_ref(), Duration::from_secs(41), grace, now)
            .expect("stale");
        let ready = cs.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
        assert_eq!(ready.message.as_deref(), Some(MESSAGE_UNKNOWN));
        assert_eq!(
            ready.last_heartbeat_time,
            Some(Time(Timestamp::UNIX_EPOCH)),
            "the heartbeat is the node's last"
        );
        assert_eq!(ready.last_transition_time, Some(Time(now)));
        // Conditions the node never posted are created Unknown too.
        let disk = cs.iter().find(|c| c.type_ == "DiskPressure").expect("disk");
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(cs.len(), 4);
        // Already Unknown: nothing more to write.
        let mut unknown = n.clone();
        if let Some(st) = unknown.status.as_mut() {
            st.conditions = Some(cs);
        }
        assert!(
            stale_conditions(unknown.status.as_ref(), Duration::from_secs(90), grace, now)
                .is_none()
        );
    }

    #[test]
    fn taints_follow_conditions() {
        let now = Timestamp::now();
        let unknown = node("Unknown", vec![taint("dedicated", "NoSchedule")]);
        let t = desired_taints(&unknown, NoExecute::Apply, now);
        assert_eq!(
            keys(&t),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert!(t[2].time_added.is_some() && t[1].time_added.is_none());
        // Not ready swaps the taints.
        let mut not_ready = unknown.clone();
        if let Some(s) = not_ready.spec.as_mut() {
            s.taints = Some(t.clone());
        }
        if let Some(c) = not_ready
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|cs| cs.first_mut())
        {
            c.status = "False".into();
        }
        let swapped = desired_taints(&not_ready, NoExecute::NoNew, now);
        assert_eq!(
            keys(&swapped),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ],
            "swapping is not adding"
        );
        // Back to Ready: only the node's own taint stays.
        let mut back = node("True", t);
        back.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        assert_eq!(
            keys(&desired_taints(&back, NoExecute::Apply, now)),
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unschedulable:NoSchedule"
            ]
        );
        // Rate limited: no new NoExecute taint; full disruption: none at all.
        let fresh = node("Unknown", vec![]);
        assert_eq!(
            keys(&desired_taints(&fresh, NoExecute::NoNew, now)),
            ["node.kubernetes.io/unreachable:NoSchedule"]
        );
        let mut tainted = fresh.clone();
        tainted.spec.get_or_insert_with(Default::default).taints =
            Some(desired_taints(&fresh, NoExecute::Apply, now));
        assert_eq!(
            keys(&desired_taints(&tainted, NoExecute::Clear, now)),
            ["node.kubernetes.io/unreachable:NoSchedule"]
        );
        // An unchanged set keeps its times, so it compares equal.
        let again = desired_taints(&tainted, NoExecute::Apply, Timestamp::UNIX_EPOCH);
        assert!(same_taints(
            tainted
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .unwrap_or_default(),
            &again
        ));
    }

    fn toleration(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn toleration_seconds_decide_the_eviction() {
        let unreachable = taint(TAINT_UNREACHABLE, "NoExecute");
        let taints = [&unreachable];
        assert_eq!(eviction(&taints, &[]), Eviction::Now);
        assert_eq!(
            eviction(
                &taints,
                &[toleration(
                    TAINT_UNREACHABLE,
                    "Exists",
                    "NoExecute",
                    Some(5)
                )]
            ),
            Eviction::After(Duration::from_secs(5))
        );
        assert_eq!(
            eviction(
                &taints,
                &[
                    toleration(TAINT_UNREACHABLE, "Exists", "NoExecute", Some(300)),
                    toleration("", "Exists", "", Some(30)),
                ]
            ),
            Eviction::After(Duration::from_secs(30)),
            "the shortest matching toleration wins"
        );
        assert_eq!(
            eviction(&taints, &[toleration("", "Exists", "", None)]),
            Eviction::Never
        );
        assert_eq!(
            eviction(
                &taints,
                &[toleration(
                    TAINT_UNREACHABLE,
                    "Exists",
                    "NoExecute",
                    Some(-1)
                )]
            ),
            Eviction::Now
        );
        assert_eq!(
            eviction(
                &taints,
                &[toleration(
                    TAINT_NOT_READY,
                    "Exists",
                    "NoExecute",
                    Some(300)
                )]
            ),
            Eviction::Now,
            "tolerating another taint does not help"
        );
        assert_eq!(
            eviction(
                &taints,
                &[toleration(TAINT_UNREACHABLE, "Exists", "NoSchedule", None)]
            ),
            Eviction::Now
        );
        let mut equal = toleration(TAINT_UNREACHABLE, "Equal", "NoExecute", None);
        assert_eq!(eviction(&taints, &[equal.clone()]), Eviction::Never);
        equal.value = Some("x".into());
        assert_eq!(eviction(&taints, &[equal]), Eviction::Now);
        assert_eq!(eviction(&[], &[]), Eviction::Never);
    }

    #[test]
    fn zone_states() {
        assert_eq!(disruption(0, 10), (EVICTION_RATE, false));
        assert_eq!(disruption(1, 3), (EVICTION_RATE, false));
        assert_eq!(disruption(3, 3), (0.0, true), "full disruption clears");
        assert_eq!(disruption(6, 10), (0.0, false), "small cluster: stop");
        assert_eq!(disruption(60, 100), (SECONDARY_EVICTION_RATE, false));
        assert_eq!(disruption(0, 0), (EVICTION_RATE, false));
    }

    #[test]
    fn the_limiter_lets_one_through_then_refills() {
        let start = Instant::now();
        let mut l = Limiter {
            tokens: 1.0,
            at: start,
        };
        assert!(l.take(0.1, start));
        assert!(!l.take(0.1, start + Duration::from_secs(5)));
        assert!(l.take(0.1, start + Duration::from_secs(11)));
        assert!(!l.take(0.0, start + Duration::from_secs(100)));
    }
}
