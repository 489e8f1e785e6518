//! The disruption controller, as upstream's: keeps every PodDisruptionBudget's status true to
//! its pods, so that the eviction API (which takes disruptions from `disruptionsAllowed`) and
//! `kubectl drain` know how many pods may go now.
//!
//! - `expectedPods`: the pods selected, or, for `maxUnavailable` and percentages, the replicas
//!   their controllers (ReplicaSet, the Deployment above it, StatefulSet) want;
//! - `desiredHealthy`: what `minAvailable` or `maxUnavailable` make of that;
//! - `currentHealthy`: selected pods that are Ready, not being deleted and not just evicted;
//! - `disruptedPods`: pods the eviction API let go, dropped once they are gone or when they are
//!   still there [`DELETION_TIMEOUT`] later.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tracing::Instrument;

use super::claim::controller_of;
use super::deployment::util::scaled_value;
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{podutil, selector, Context, Error};
use crate::events::{Kind, Recorder};

/// How long an evicted pod counts as disrupted before the controller stops expecting it gone.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// Most budgets waiting in the queue.
const QUEUE_CAPACITY: usize = 50_000;
/// Workers syncing budgets at once.
const WORKERS: usize = 2;
/// How often every budget is looked at again regardless of events.
const RESYNC: Duration = Duration::from_secs(60);

/// The controller's state: queue and event recorder.
pub struct DisruptionController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let dc = Arc::new(DisruptionController {
        ctx: ctx.clone(),
        queue: Queue::new("disruption", QUEUE_CAPACITY),
        recorder: Recorder::start(ctx.client.clone(), "controllermanager", None),
    });
    let q = dc.queue.clone();
    ctx.poddisruptionbudgets.on_change(move |change| {
        let pdb = match change {
            Change::Added(b) | Change::Deleted(b) | Change::Updated { new: b, .. } => b,
        };
        if let Some(k) = ObjectKey::of(pdb.as_ref()) {
            q.add(k);
        }
    });
    let weak = Arc::downgrade(&dc);
    ctx.pods.on_change(move |change| {
        if let Some(dc) = weak.upgrade() {
            dc.pod_changed(change);
        }
    });
    let store = ctx.poddisruptionbudgets.store().clone();
    let resync = super::resync(dc.queue.clone(), RESYNC, move || store.keys());
    let mut all = super::workers("disruption", dc.queue.clone(), WORKERS, move |key| {
        let dc = dc.clone();
        async move { dc.sync(key).await }
    });
    all.push(resync);
    all
}

/// What about a pod a budget's status depends on.
fn facts(pod: &Pod) -> (Option<&BTreeMap<String, String>>, bool, bool) {
    (
        pod.metadata.labels.as_ref(),
        podutil::is_ready(pod),
        pod.metadata.deletion_timestamp.is_some(),
    )
}

/// Whether the budget's selector selects `pod` (a budget without one selects nothing).
fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| selector::matches(sel, pod.metadata.labels.as_ref()))
}

impl DisruptionController {
    /// Queues the budgets that select the pod, before or after the change.
    fn pod_changed(&self, change: &Change<'_, Pod>) {
        let (old, new) = match change {
            Change::Added(p) | Change::Deleted(p) => (None, p),
            Change::Updated { old, new } => {
                if facts(old) == facts(new) {
                    return;
                }
                (Some(old), new)
            }
        };
        let ns = new.metadata.namespace.as_deref().unwrap_or_default();
        for pdb in self.ctx.poddisruptionbudgets.store().list_namespace(ns) {
            let hit = selects(&pdb, new) || old.is_some_and(|o| selects(&pdb, o));
            if let (true, Some(k)) = (hit, ObjectKey::of(pdb.as_ref())) {
                self.queue.add(k);
            }
        }
    }

    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.poddisruptionbudgets.wait_synced().await;
        self.ctx.pods.wait_synced().await;
        self.ctx.replicasets.wait_synced().await;
        self.ctx.deployments.wait_synced().await;
        self.ctx.statefulsets.wait_synced().await;
        let span = tracing::debug_span!("disruption", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey) -> Result<(), Error> {
        let Some(pdb) = self.ctx.poddisruptionbudgets.store().get(key) else {
            return Ok(());
        };
        let pods: Vec<Arc<Pod>> = self
            .ctx
            .pods
            .store()
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|p| selects(&pdb, p))
            .collect();
        if pods.is_empty() {
            self.recorder.object(
                pdb.as_ref(),
                Kind::Normal,
                "NoPods",
                "No matching pods found".into(),
            );
        }
        let counts = match self.expected(&pdb, &pods) {
            Ok(c) => c,
            Err(why) => {
                self.recorder.object(
                    pdb.as_ref(),
                    Kind::Warning,
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {why}"),
                );
                return self.fail_safe(&pdb, &why).await;
            }
        };
        if counts.unmanaged > 0 {
            self.recorder.object(
                pdb.as_ref(),
                Kind::Normal,
                "UnmanagedPods",
                format!("Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.", shown_selector(&pdb)),
            );
        }
        let now = Timestamp::now();
        let (disrupted, recheck) = self.disrupted_pods(&pdb, &pods, now);
        let healthy = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
            .filter(|p| podutil::is_ready(p))
            .count() as i32;
        self.update_status(&pdb, healthy, counts, disrupted).await?;
        if let Some(at) = recheck {
            let wait = at.duration_since(now).unsigned_abs();
            self.queue.add_after(key.clone(), wait);
        }
        Ok(())
    }

    /// `expectedPods` and `desiredHealthy` as upstream's `getExpectedPodCount`.
    fn expected(&self, pdb: &PodDisruptionBudget, pods: &[Arc<Pod>]) -> Result<Counts, String> {
        let spec = pdb.spec.as_ref();
        let max = spec.and_then(|s| s.max_unavailable.as_ref());
        let min = spec.and_then(|s| s.min_available.as_ref());
        let scaled =
            |v: &IntOrString, total: i32| scaled_value(v, total, true).map_err(|e| e.to_string());
        match (max, min) {
            (Some(max), _) => {
                let (expected, unmanaged) = self.expected_scale(pods)?;
                let desired = (expected - scaled(max, expected)?).max(0);
                Ok(Counts {
                    expected,
                    desired,
                    unmanaged,
                })
            }
            (None, Some(IntOrString::Int(min))) => Ok(Counts {
                expected: pods.len() as i32,
                desired: *min,
                unmanaged: 0,
            }),
            (None, Some(min)) => {
                let (expected, unmanaged) = self.expected_scale(pods)?;
                Ok(Counts {
                    expected,
                    desired: scaled(min, expected)?,
                    unmanaged,
                })
            }
            (None, None) => Ok(Counts::default()),
        }
    }

    /// The replicas the pods' controllers want, each controller counted once, and how many pods
    /// have no controller (they are left out).
    fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<(i32, usize), String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = 0;
        for pod in pods {
            let Some(owner) = controller_of(&pod.metadata) else {
                unmanaged += 1;
                continue;
            };
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let (uid, scale) = self
                .controller_scale(ns, &owner.kind, &owner.name, &owner.uid)
                .ok_or_else(|| format!("found no controllers for pod {name:?}"))?;
            scales.insert(uid, scale);
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The uid and replicas of the controller a pod names (for a ReplicaSet under a
    /// Deployment, the Deployment's), if it is cached and still the same object.
    fn controller_scale(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        uid: &str,
    ) -> Option<(String, i32)> {
        // The cached object, if it is still the one with `uid`.
        let same = |found: &Option<String>, uid: &str| found.as_deref() == Some(uid);
        match kind {
            "ReplicaSet" => {
                let rs = self.ctx.replicasets.store().get_named(ns, name)?;
                if !same(&rs.metadata.uid, uid) {
                    return None;
                }
                if let Some(d) = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment") {
                    let dep = self.ctx.deployments.store().get_named(ns, &d.name)?;
                    if !same(&dep.metadata.uid, &d.uid) {
                        return None;
                    }
                    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((d.uid.clone(), replicas));
                }
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((uid.to_string(), replicas))
            }
            "StatefulSet" => {
                let sts = self.ctx.statefulsets.store().get_named(ns, name)?;
                if !same(&sts.metadata.uid, uid) {
                    return None;
                }
                let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((uid.to_string(), replicas))
            }
            _ => None,
        }
    }

    /// The budget's evicted pods still expected to go, and when the soonest of them stops being
    /// expected. A pod still there after [`DELETION_TIMEOUT`] is dropped with a warning.
    fn disrupted_pods(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> (BTreeMap<String, Time>, Option<Timestamp>) {
        let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
        let mut kept = BTreeMap::new();
        let mut recheck: Option<Timestamp> = None;
        let Some(recorded) = recorded else {
            return (kept, recheck);
        };
        let timeout = SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or(SignedDuration::MAX);
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(at) = recorded.get(&name) else {
                continue;
            };
            let expires = at.0.saturating_add(timeout).unwrap_or(at.0);
            if expires < now {
                self.recorder.object(
                    pod.as_ref(),
                    Kind::Warning,
                    "NotDeleted",
                    format!(
                        "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                        pdb.metadata.namespace.as_deref().unwrap_or_default(),
                        pdb.metadata.name.as_deref().unwrap_or_default()
                    ),
                );
                continue;
            }
            recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
            kept.insert(name, at.clone());
        }
        (kept, recheck)
    }

    async fn update_status(
        &self,
        pdb: &PodDisruptionBudget,
        healthy: i32,
        counts: Counts,
        disrupted: BTreeMap<String, Time>,
    ) -> Result<(), Error> {
        let mut allowed = healthy - counts.desired;
        if counts.expected <= 0 || allowed <= 0 {
            allowed = 0;
        }
        let generation = pdb.metadata.generation.unwrap_or(0);
        let cur = pdb.status.clone().unwrap_or_default();
        let disrupted = (!disrupted.is_empty()).then_some(disrupted);
        let unchanged = cur.current_healthy == healthy
            && cur.desired_healthy == counts.desired
            && cur.expected_pods == counts.expected
            && cur.disruptions_allowed == allowed
            && cur.disrupted_pods.as_ref().filter(|m| !m.is_empty()) == disrupted.as_ref()
            && cur.observed_generation == Some(generation);
        if unchanged && has_condition(&cur, allowed > 0) {
            return Ok(());
        }
        let (status, reason) = if allowed > 0 {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        let mut next = pdb.clone();
        let mut st = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: counts.desired,
            expected_pods: counts.expected,
            disruptions_allowed: allowed,
            disrupted_pods: disrupted,
            observed_generation: Some(generation),
            conditions: cur.conditions.clone(),
        };
        set_condition(&mut st, status, reason, String::new(), generation);
        next.status = Some(st);
        self.replace_status(&next).await
    }

    /// Allows no disruption while the budget cannot be computed.
    async fn fail_safe(&self, pdb: &PodDisruptionBudget, why: &str) -> Result<(), Error> {
        let mut next = pdb.clone();
        let mut st = next.status.take().unwrap_or_default();
        st.disruptions_allowed = 0;
        let observed = st.observed_generation.unwrap_or(0);
        set_condition(&mut st, "False", "SyncFailed", why.to_string(), observed);
        next.status = Some(st);
        self.replace_status(&next).await
    }

    async fn replace_status(&self, pdb: &PodDisruptionBudget) -> Result<(), Error> {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let name = pdb.metadata.name.as_deref().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.ctx.client.clone(), ns);
        match api.replace_status(name, &PostParams::default(), pdb).await {
            Err(e) if super::not_found(&e) => Ok(()),
            other => other.map(|_| ()).map_err(Error::from),
        }
    }
}

/// Whether the budget's `DisruptionAllowed` condition already says `allowed`.
fn has_condition(st: &PodDisruptionBudgetStatus, allowed: bool) -> bool {
    let want = if allowed { "True" } else { "False" };
    st.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionAllowed" && c.status == want && c.reason != "SyncFailed")
}

/// Sets `DisruptionAllowed` as `meta.SetStatusCondition` does: the transition time moves only
/// when the status does.
fn set_condition(
    st: &mut PodDisruptionBudgetStatus,
    status: &str,
    reason: &str,
    message: String,
    generation: i64,
) {
    let conditions = st.conditions.get_or_insert_with(Vec::new);
    let now = Time(Timestamp::now());
    match conditions
        .iter_mut()
        .find(|c| c.type_ == "DisruptionAllowed")
    {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = Some(generation);
        }
        None => conditions.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: Some(generation),
            last_transition_time: now,
        }),
    }
}

/// The budget's selector as upstream's `%v` of a label selector prints it.
fn shown_selector(pdb: &PodDisruptionBudget) -> String {
    let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    let labels = sel
        .and_then(|s| s.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!("&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{}},}}")
}

/// A budget's pod counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    expected: i32,
    desired: i32,
    unmanaged: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_moves_its_transition_time_only_with_its_status() {
        let mut st = PodDisruptionBudgetStatus::default();
        set_condition(&mut st, "True", "SufficientPods", String::new(), 1);
        let first = st.conditions.as_ref().unwrap()[0]
            .last_transition_time
            .clone();
        assert!(has_condition(&st, true));
        assert!(!has_condition(&st, false));
        set_condition(&mut st, "True", "SufficientPods", String::new(), 2);
        let c = &st.conditions.as_ref().unwrap()[0];
        assert_eq!(c.last_transition_time, first);
        assert_eq!(c.observed_generation, Some(2));
        set_condition(&mut st, "False", "SyncFailed", "no".into(), 2);
        assert!(
            !has_condition(&st, false),
            "a failed sync is not a settled condition"
        );
        assert_eq!(st.conditions.as_ref().unwrap().len(), 1);
    }
}
