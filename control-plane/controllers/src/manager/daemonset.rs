//! The DaemonSet controller, as upstream's: one pod on every node the DaemonSet's pods may run
//! on (its nodeSelector, required node affinity, and the node's taints against the template's
//! tolerations plus those upstream adds to daemon pods). Pods are created without a node, with
//! the required node affinity replaced by `matchFields metadata.name In [<node>]`, and the
//! scheduler binds them. Extra pods on a node, failed pods, and pods on nodes they should not
//! run on (an untolerated NoExecute taint, or a node that is gone) are deleted.
//!
//! Each template the DaemonSet runs is a ControllerRevision (`<ds>-<hash>`); pods carry its hash
//! in `controller-revision-hash`. RollingUpdate replaces old pods at most `maxUnavailable` at a
//! time (or, with `maxSurge`, starts the new pod first and deletes the old one once the new one
//! is available); OnDelete waits for pods to be deleted by hand. Status counts what
//! `kubectl rollout status ds/x` reads.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::Instrument;

use super::claim::{self, controller_of, Owner};
use super::expectations::Expectations;
use super::history::{self, REVISION_LABEL};
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{podutil, Context, Error};
use crate::events::{Kind, Recorder};

const BURST: usize = 250;
const QUEUE_CAPACITY: usize = 50_000;
const WORKERS: usize = 2;
const RESYNC: Duration = Duration::from_secs(300);

/// The tolerations upstream adds to every daemon pod (`util.AddOrUpdateDaemonPodTolerations`),
/// so node conditions do not evict or block them; network-unavailable only for hostNetwork.
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// Whether `tol` tolerates `taint`, as upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && tol.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `node` satisfies a required node selector: any term whose expressions (labels) and
/// fields (`metadata.name`) all match; a term with neither matches nothing.
pub fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref();
    sel.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
    })
}

/// Upstream's `NodeShouldRunDaemonPod` for a daemon pod spec (tolerations already added):
/// whether a pod should be started on `node`, and whether one already there may stay
/// (an untolerated NoSchedule taint keeps it, an untolerated NoExecute one does not).
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    let labels = node.metadata.labels.as_ref();
    for (k, v) in spec.node_selector.iter().flatten() {
        if labels.and_then(|l| l.get(k)) != Some(v) {
            return (false, false);
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(sel) = required {
        if !node_selector_matches(sel, node) {
            return (false, false);
        }
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let mut run = true;
    for taint in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
    {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if tolerations.iter().any(|t| tolerates(t, taint)) {
            continue;
        }
        if taint.effect == "NoExecute" {
            return (false, false);
        }
        run = false;
    }
    (run, true)
}

/// The daemon pod spec for `node`: the template's spec with the daemon tolerations and the
/// required node affinity replaced by the node's name (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pod_spec_for(template: &PodSpec, node: Option<&str>) -> PodSpec {
    let mut spec = template.clone();
    let host_network = spec.host_network.unwrap_or(false);
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for t in daemon_tolerations(host_network) {
        let present = tols.iter().any(|x| {
            x.key == t.key && x.effect == t.effect && x.operator.as_deref() == Some("Exists")
        });
        if !present {
            tols.push(t);
        }
    }
    if let Some(node) = node {
        let term = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        };
        let affinity = spec.affinity.get_or_insert_with(Affinity::default);
        let na = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: vec![term],
        });
    }
    spec
}

/// The node a daemon pod is for: its node, or the one its affinity names.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let v = r.values.as_deref().unwrap_or_default();
            (r.key == "metadata.name" && r.operator == "In" && v.len() == 1).then(|| v[0].clone())
        })
    })
}

/// Resolves maxSurge/maxUnavailable against `total` (percentages round up, as upstream).
pub fn scaled(v: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => (*i).max(0),
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct.max(0) * i64::from(total.max(0)) + 99) / 100).min(i64::from(i32::MAX)) as i32
        }
    }
}

/// What one node holds for a rolling update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePods {
    /// An up-to-date pod is there; whether it is available.
    pub new: Option<bool>,
    /// An old pod is there; whether it is available.
    pub old: Option<bool>,
}

/// The rolling-update plan over eligible nodes (upstream's `rollingUpdate`): indexes of nodes
/// whose old pod to delete, and of nodes to start a surge pod on.
pub fn plan_rolling(
    nodes: &[NodePods],
    max_unavailable: i32,
    max_surge: i32,
) -> (Vec<usize>, Vec<usize>) {
    let mut delete = Vec::new();
    let mut surge_on = Vec::new();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            match (n.new, n.old) {
                (None, None) => unavailable += 1,
                (Some(a), None) => {
                    if !a {
                        unavailable += 1
                    }
                }
                (Some(_), Some(_)) => {}
                (None, Some(false)) => delete.push(i),
                (None, Some(true)) => candidates.push(i),
            }
        }
        // Unavailable old pods are replaced at once; they count against the budget.
        unavailable += delete.len() as i32;
        let room = (max_unavailable - unavailable).max(0) as usize;
        delete.extend(candidates.into_iter().take(room));
        return (delete, surge_on);
    }
    let mut surging = 0;
    let mut candidates = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match (n.new, n.old) {
            (Some(true), Some(_)) => delete.push(i),
            (Some(false), Some(_)) => surging += 1,
            (None, Some(false)) => surge_on.push(i),
            (None, Some(true)) => candidates.push(i),
            _ => {}
        }
    }
    let room = (max_surge - surging - surge_on.len() as i32).max(0) as usize;
    surge_on.extend(candidates.into_iter().take(room));
    (delete, surge_on)
}

/// The controller's state.
pub struct DaemonSetController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let dc = Arc::new(DaemonSetController {
        ctx: ctx.clone(),
        queue: Queue::new("daemonset", QUEUE_CAPACITY),
        expectations: Expectations::default(),
        recorder: Recorder::start(ctx.client.clone(), "daemonset-controller", None),
    });
    let weak = Arc::downgrade(&dc);
    ctx.daemonsets.on_change(move |c| {
        if let Some(dc) = weak.upgrade() {
            match c {
                Change::Added(d) | Change::Updated { new: d, .. } => {
                    if let Some(k) = ObjectKey::of(d.as_ref()) {
                        dc.queue.add(k)
                    }
                }
                Change::Deleted(d) => {
                    if let Some(k) = ObjectKey::of(d.as_ref()) {
                        dc.expectations.forget(&k);
                    }
                }
            }
        }
    });
    let weak = Arc::downgrade(&dc);
    ctx.pods.on_change(move |c| {
        if let Some(dc) = weak.upgrade() {
            dc.pod_changed(c)
        }
    });
    let weak = Arc::downgrade(&dc);
    ctx.nodes.on_change(move |c| {
        let Some(dc) = weak.upgrade() else { return };
        let relevant = match c {
            Change::Added(_) | Change::Deleted(_) => true,
            Change::Updated { old, new } => {
                old.metadata.labels != new.metadata.labels
                    || old.spec.as_ref().map(|s| &s.taints) != new.spec.as_ref().map(|s| &s.taints)
            }
        };
        if relevant {
            for k in dc.ctx.daemonsets.store().keys() {
                dc.queue.add(k);
            }
        }
    });
    let store = ctx.daemonsets.store().clone();
    let mut all = super::workers("daemonset", dc.queue.clone(), WORKERS, {
        let dc = dc.clone();
        move |key| {
            let dc = dc.clone();
            async move { dc.sync(key).await }
        }
    });
    all.push(super::resync(dc.queue.clone(), RESYNC, move || {
        store.keys()
    }));
    all
}

fn resolve(ctx: &Context, namespace: &str, r: &OwnerReference) -> Option<Arc<DaemonSet>> {
    if r.kind != "DaemonSet" || !r.api_version.starts_with("apps/") {
        return None;
    }
    let ds = ctx.daemonsets.store().get_named(namespace, &r.name)?;
    (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(ds)
}

fn min_ready(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn revision_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn creation(p: &Pod) -> Option<Timestamp> {
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

impl DaemonSetController {
    fn pod_changed(&self, change: &Change<'_, Pod>) {
        let pod = match change {
            Change::Added(p) | Change::Deleted(p) => *p,
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                *new
            }
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            // An orphan: a DaemonSet whose selector matches may adopt it.
            if let Change::Added(_) = change {
                for ds in self.ctx.daemonsets.store().list_namespace(ns) {
                    let sel = ds.spec.as_ref().map(|s| &s.selector);
                    if sel.is_some_and(|s| {
                        !super::selector::is_empty(s)
                            && super::selector::matches(s, pod.metadata.labels.as_ref())
                    }) {
                        if let Some(k) = ObjectKey::of(ds.as_ref()) {
                            self.queue.add(k);
                        }
                    }
                }
            }
            return;
        };
        let Some(ds) = resolve(&self.ctx, ns, r) else {
            return;
        };
        let Some(k) = ObjectKey::of(ds.as_ref()) else {
            return;
        };
        match change {
            Change::Added(_) => self.expectations.creation_observed(&k),
            Change::Deleted(_) => {
                if let Some(pk) = ObjectKey::of(pod.as_ref()) {
                    self.expectations.deletion_observed(&k, &pk);
                }
            }
            Change::Updated { old, new } => {
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                {
                    if let Some(pk) = ObjectKey::of(pod.as_ref()) {
                        self.expectations.deletion_observed(&k, &pk);
                    }
                }
                let mr = min_ready(&ds);
                if mr > 0 && !podutil::is_ready(old) && podutil::is_ready(new) {
                    self.queue
                        .add_after(k.clone(), Duration::from_secs(mr as u64 + 1));
                }
            }
        }
        self.queue.add(k);
    }

    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.pods.wait_synced().await;
        self.ctx.daemonsets.wait_synced().await;
        self.ctx.nodes.wait_synced().await;
        self.ctx.controllerrevisions.wait_synced().await;
        let Some(ds) = self.ctx.daemonsets.store().get(&key) else {
            self.expectations.forget(&key);
            return Ok(());
        };
        let span = tracing::debug_span!("daemonset", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key, ds).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey, ds: Arc<DaemonSet>) -> Result<(), Error> {
        let Some(spec) = ds.spec.as_ref() else {
            return Ok(());
        };
        if let Err(e) = super::selector::validate(&spec.selector) {
            tracing::debug!("not syncing: {e}");
            return Ok(());
        }
        if super::selector::is_empty(&spec.selector) {
            return Ok(());
        }
        let owner = Owner::of(ds.as_ref());
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let ds_api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let candidates = self.ctx.pods.store().claimable(&key.namespace, &owner.uid);
        let pods = claim::claim(&pods_api, &owner, &spec.selector, candidates, || async {
            match ds_api.get_opt(&key.name).await? {
                Some(fresh) => Ok(fresh.metadata.uid == ds.metadata.uid
                    && fresh.metadata.deletion_timestamp.is_none()),
                None => Ok(false),
            }
        })
        .await?;
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        // The current revision.
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let revs = history::owned(&self.ctx, &key.namespace, &uid);
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let (current, collisions) = history::current(
            &self.ctx.client,
            &owner,
            &key.namespace,
            &spec.template,
            labels,
            &revs,
            collisions,
        )
        .await?;
        let hash = current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_LABEL))
            .cloned()
            .unwrap_or_default();

        let template_spec = spec.template.spec.clone().unwrap_or_default();
        let eligibility_spec = pod_spec_for(&template_spec, None);
        let nodes = self.ctx.nodes.store().list();
        let node_names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut stray = Vec::new();
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            match target_node(p) {
                Some(n) if node_names.contains(&n) => by_node.entry(n).or_default().push(p.clone()),
                _ => stray.push(p.clone()),
            }
        }
        for list in by_node.values_mut() {
            list.sort_by_key(|p| creation(p));
        }
        let strategy = spec.update_strategy.as_ref();
        let rolling = strategy.is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
        let ru = strategy.and_then(|s| s.rolling_update.as_ref());
        let now = Timestamp::now();
        let mr = min_ready(&ds);

        let mut create_on: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = stray;
        let mut failed_seen = Vec::new();
        let mut eligible: Vec<(String, Vec<Arc<Pod>>)> = Vec::new();
        let mut status = DaemonSetStatus {
            observed_generation: ds.metadata.generation,
            collision_count: collisions,
            ..Default::default()
        };
        for node in &nodes {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let (run, keep) = should_run(&eligibility_spec, node);
            let mut on = by_node.remove(&name).unwrap_or_default();
            if run {
                status.desired_number_scheduled += 1;
            }
            if !on.is_empty() {
                if run {
                    status.current_number_scheduled += 1;
                } else {
                    status.number_misscheduled += 1;
                }
            }
            if !keep {
                delete.extend(on);
                continue;
            }
            // Failed pods go; a replacement follows.
            let (failed, live): (Vec<_>, Vec<_>) =
                on.drain(..).partition(|p| !podutil::is_active(p));
            for p in &failed {
                failed_seen.push((p.clone(), name.clone()));
            }
            delete.extend(failed);
            let on = live;
            if !run {
                continue;
            }
            if on.is_empty() {
                create_on.push(name.clone());
            } else {
                // One pod per node, or an old and a new one while surging.
                let surge = rolling && scaled(ru.and_then(|r| r.max_surge.as_ref()), 1, 0) > 0;
                let (mut new, mut old): (Vec<_>, Vec<_>) = on
                    .iter()
                    .cloned()
                    .partition(|p| revision_hash(p) == Some(hash.as_str()));
                if surge {
                    delete.extend(new.drain(..).skip(1));
                    delete.extend(old.drain(..).skip(1));
                } else {
                    delete.extend(on.iter().skip(1).cloned());
                }
                let ready = on.iter().any(|p| podutil::is_ready(p));
                let available = on.iter().any(|p| podutil::is_available(p, mr, now));
                if ready {
                    status.number_ready += 1;
                }
                if available {
                    status.number_available = Some(status.number_available.unwrap_or(0) + 1);
                }
                if on.iter().any(|p| revision_hash(p) == Some(hash.as_str())) {
                    status.updated_number_scheduled =
                        Some(status.updated_number_scheduled.unwrap_or(0) + 1);
                }
            }
            eligible.push((name, on));
        }
        // Pods on nodes no longer in the cache.
        for (_, pods) in by_node {
            delete.extend(pods);
        }
        for (p, node) in &failed_seen {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            self.recorder.object(
                ds.as_ref(),
                Kind::Warning,
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {}/{name} on node {node}, will try to kill it",
                    key.namespace
                ),
            );
        }
        let unavailable = status.desired_number_scheduled - status.number_available.unwrap_or(0);
        status.number_unavailable = (unavailable > 0).then_some(unavailable);

        let mut result = Ok(());
        if self.expectations.satisfied(key) {
            if !create_on.is_empty() || !delete.is_empty() {
                result = self
                    .apply(
                        key,
                        &ds,
                        &spec_template(&ds, &hash),
                        &create_on,
                        &delete,
                        &pods_api,
                    )
                    .await;
            } else if rolling {
                let desired = status.desired_number_scheduled;
                let mut max_surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, 0);
                let mut max_unavailable =
                    scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
                if max_surge == 0 && max_unavailable == 0 {
                    max_unavailable = 1;
                }
                if max_surge > 0 {
                    max_unavailable = 0;
                } else {
                    max_surge = 0;
                }
                let view: Vec<NodePods> = eligible
                    .iter()
                    .map(|(_, on)| {
                        let newest = |want_new: bool| {
                            on.iter()
                                .find(|p| (revision_hash(p) == Some(hash.as_str())) == want_new)
                                .map(|p| podutil::is_available(p, mr, now))
                        };
                        NodePods {
                            new: newest(true),
                            old: newest(false),
                        }
                    })
                    .collect();
                let (del, surge_on) = plan_rolling(&view, max_unavailable, max_surge);
                let del_pods: Vec<Arc<Pod>> = del
                    .iter()
                    .filter_map(|i| eligible.get(*i))
                    .filter_map(|(_, on)| {
                        on.iter()
                            .find(|p| revision_hash(p) != Some(hash.as_str()))
                            .cloned()
                    })
                    .collect();
                let surge_nodes: Vec<String> = surge_on
                    .iter()
                    .filter_map(|i| eligible.get(*i))
                    .map(|(n, _)| n.clone())
                    .collect();
                if !del_pods.is_empty() || !surge_nodes.is_empty() {
                    tracing::debug!(
                        deleting = del_pods.len(),
                        surging = surge_nodes.len(),
                        "rolling update"
                    );
                    result = self
                        .apply(
                            key,
                            &ds,
                            &spec_template(&ds, &hash),
                            &surge_nodes,
                            &del_pods,
                            &pods_api,
                        )
                        .await;
                }
            }
        }

        // Old revisions no pod uses go.
        let in_use: HashSet<String> = pods
            .iter()
            .filter_map(|p| revision_hash(p).map(str::to_string))
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10);
        let cur_name = current.metadata.name.clone().unwrap_or_default();
        if let Err(e) = history::prune(
            &self.ctx.client,
            &key.namespace,
            &revs,
            &in_use,
            &[cur_name.as_str()],
            limit,
        )
        .await
        {
            tracing::debug!("pruning history: {e}");
        }
        self.write_status(&ds, &ds_api, &status).await?;
        if mr > 0 && status.number_ready != status.number_available.unwrap_or(0) {
            self.queue
                .add_after(key.clone(), Duration::from_secs(mr as u64));
        }
        result
    }

    async fn apply(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        template: &Pod,
        create_on: &[String],
        delete: &[Arc<Pod>],
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let create_on = &create_on[..create_on.len().min(BURST)];
        let delete = &delete[..delete.len().min(BURST)];
        if !delete.is_empty() {
            let keys: Vec<ObjectKey> = delete
                .iter()
                .filter_map(|p| ObjectKey::of(p.as_ref()))
                .collect();
            self.expectations.expect_deletions(key, keys);
        } else {
            self.expectations.expect_creations(key, create_on.len());
        }
        let mut first_err = None;
        if !delete.is_empty() {
            // Deletions first, creations on the next pass (once the deletions are observed).
            let outcomes = join_all(delete.iter().map(|p| async move {
                let name = p.metadata.name.clone().unwrap_or_default();
                let r = api.delete(&name, &DeleteParams::default()).await;
                (p, name, r)
            }))
            .await;
            for (p, name, r) in outcomes {
                match r {
                    Ok(_) => self.recorder.object(
                        ds,
                        Kind::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    ),
                    Err(e) => {
                        if let Some(pk) = ObjectKey::of(p.as_ref()) {
                            self.expectations.deletion_observed(key, &pk);
                        }
                        if !super::not_found(&e) {
                            first_err.get_or_insert(Error::from(e));
                        }
                    }
                }
            }
            return first_err.map_or(Ok(()), Err);
        }
        let mut created = 0;
        let mut batch = 1;
        let mut idx = 0;
        while idx < create_on.len() {
            let chunk = &create_on[idx..(idx + batch).min(create_on.len())];
            idx += chunk.len();
            let outcomes = join_all(chunk.iter().map(|node| {
                let mut p = template.clone();
                if let Some(s) = p.spec.as_ref() {
                    p.spec = Some(pod_spec_for(s, Some(node)));
                }
                async move { api.create(&PostParams::default(), &p).await }
            }))
            .await;
            for o in outcomes {
                match o {
                    Ok(p) => {
                        created += 1;
                        let name = p.metadata.name.unwrap_or_default();
                        self.recorder.object(
                            ds,
                            Kind::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        let text = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        self.recorder.object(
                            ds,
                            Kind::Warning,
                            "FailedCreate",
                            format!("Error creating: {text}"),
                        );
                        first_err.get_or_insert(Error::from(e));
                    }
                }
            }
            if first_err.is_some() {
                break;
            }
            batch *= 2;
        }
        if created < create_on.len() {
            self.expectations
                .lower_creations(key, create_on.len() - created);
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn write_status(
        &self,
        ds: &DaemonSet,
        api: &Api<DaemonSet>,
        s: &DaemonSetStatus,
    ) -> Result<(), Error> {
        let cur = ds.status.clone().unwrap_or_default();
        let norm = |s: &DaemonSetStatus| {
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_misscheduled,
                s.number_ready,
                s.number_available.unwrap_or(0),
                s.number_unavailable.unwrap_or(0),
                s.updated_number_scheduled.unwrap_or(0),
                s.observed_generation,
                s.collision_count,
            )
        };
        if norm(&cur) == norm(s) {
            return Ok(());
        }
        let patch = json!({"status": {
            "desiredNumberScheduled": s.desired_number_scheduled,
            "currentNumberScheduled": s.current_number_scheduled,
            "numberMisscheduled": s.number_misscheduled,
            "numberReady": s.number_ready,
            "numberAvailable": s.number_available,
            "numberUnavailable": s.number_unavailable,
            "updatedNumberScheduled": s.updated_number_scheduled,
            "observedGeneration": s.observed_generation,
            "collisionCount": s.collision_count,
        }});
        let name = ds.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if super::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// A daemon pod before its node is chosen: the template's metadata with the revision hash,
/// `<ds>-` generateName, the DaemonSet as controller.
fn spec_template(ds: &DaemonSet, hash: &str) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.into());
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![Owner::of(ds).controller_ref()]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: k.to_string(),
                        effect: e.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        n
    }

    #[test]
    fn eligibility_follows_selectors_affinity_and_taints() {
        let base = pod_spec_for(&PodSpec::default(), None);
        assert_eq!(should_run(&base, &node("a", &[], &[])), (true, true));
        // Daemon tolerations: cordoned, not-ready and pressured nodes still run daemons.
        let cordoned = node(
            "b",
            &[],
            &[
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
                ("node.kubernetes.io/not-ready", "NoExecute"),
            ],
        );
        assert_eq!(should_run(&base, &cordoned), (true, true));
        assert_eq!(
            should_run(&base, &node("c", &[], &[("dedicated", "NoSchedule")])),
            (false, true)
        );
        assert_eq!(
            should_run(&base, &node("d", &[], &[("dedicated", "NoExecute")])),
            (false, false)
        );
        assert_eq!(
            should_run(&base, &node("e", &[], &[("soft", "PreferNoSchedule")])),
            (true, true)
        );
        // network-unavailable is tolerated only with hostNetwork.
        let net = node(
            "f",
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
        );
        assert!(!should_run(&base, &net).0);
        let host = pod_spec_for(
            &PodSpec {
                host_network: Some(true),
                ..Default::default()
            },
            None,
        );
        assert!(should_run(&host, &net).0);
        let mut sel = base.clone();
        sel.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert!(should_run(&sel, &node("g", &[("disk", "ssd")], &[])).0);
        assert_eq!(should_run(&sel, &node("h", &[], &[])), (false, false));
        let pinned = pod_spec_for(&base, Some("a"));
        assert!(should_run(&pinned, &node("a", &[], &[])).0);
        assert!(!should_run(&pinned, &node("b", &[], &[])).0);
        let p = Pod {
            spec: Some(pinned),
            ..Default::default()
        };
        assert_eq!(target_node(&p).as_deref(), Some("a"));
        let gt = NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "cores".into(),
                    operator: "Gt".into(),
                    values: Some(vec!["4".into()]),
                }]),
                match_fields: None,
            }],
        };
        assert!(node_selector_matches(
            &gt,
            &node("x", &[("cores", "8")], &[])
        ));
        assert!(!node_selector_matches(
            &gt,
            &node("x", &[("cores", "2")], &[])
        ));
    }

    #[test]
    fn tolerations_match_keys_values_and_effects() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tol = |k: Option<&str>, op: &str, v: Option<&str>, e: Option<&str>| Toleration {
            key: k.map(Into::into),
            operator: Some(op.into()),
            value: v.map(Into::into),
            effect: e.map(Into::into),
            ..Default::default()
        };
        assert!(tolerates(&tol(Some("k"), "Equal", Some("v"), None), &taint));
        assert!(!tolerates(
            &tol(Some("k"), "Equal", Some("w"), None),
            &taint
        ));
        assert!(tolerates(&tol(None, "Exists", None, None), &taint));
        assert!(!tolerates(
            &tol(Some("k"), "Exists", None, Some("NoExecute")),
            &taint
        ));
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_surge() {
        let old = |a| NodePods {
            new: None,
            old: Some(a),
        };
        let new = |a| NodePods {
            new: Some(a),
            old: None,
        };
        // Three available old pods, maxUnavailable 1: one at a time.
        assert_eq!(
            plan_rolling(&[old(true), old(true), old(true)], 1, 0),
            (vec![0], vec![])
        );
        // One new pod still unavailable: the budget is used up.
        assert_eq!(
            plan_rolling(&[new(false), old(true), old(true)], 1, 0),
            (vec![], vec![])
        );
        // An unavailable old pod is replaced regardless.
        assert_eq!(
            plan_rolling(&[new(false), old(false), old(true)], 1, 0),
            (vec![1], vec![])
        );
        assert_eq!(
            plan_rolling(&[old(true), old(true), old(true)], 2, 0)
                .0
                .len(),
            2
        );
        // Surge: start new pods first, delete old ones once the new one is available.
        assert_eq!(
            plan_rolling(&[old(true), old(true)], 0, 1),
            (vec![], vec![0])
        );
        let both = |a| NodePods {
            new: Some(a),
            old: Some(true),
        };
        assert_eq!(
            plan_rolling(&[both(false), old(true)], 0, 1),
            (vec![], vec![])
        );
        assert_eq!(
            plan_rolling(&[both(true), old(true)], 0, 1),
            (vec![0], vec![1])
        );
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 3, 1), 1);
        assert_eq!(scaled(Some(&IntOrString::String("50%".into())), 5, 1), 3);
        assert_eq!(scaled(None, 5, 1), 1);
    }
}
