//! The ReplicaSet controller, as upstream's: keeps `spec.replicas` active pods for every
//! ReplicaSet, created from its template (`<rs>-<5 chars>` by generateName, controlled by the
//! ReplicaSet), adopting matching orphans and releasing pods that stopped matching, deleting
//! surplus pods in upstream's preference order, and reporting counts in its status.
//! Expectations keep it from acting twice while its pod cache lags behind its own writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::Instrument;

use super::claim::{self, controller_of, Owner};
use super::expectations::Expectations;
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{podutil, selector, Context, Error};
use crate::events::{Kind, Recorder};

/// Most pods created or deleted in one sync, as upstream's `burstReplicas`.
const BURST: usize = 500;
/// Most ReplicaSets waiting in the queue.
const QUEUE_CAPACITY: usize = 200_000;
/// Workers syncing ReplicaSets at once.
const WORKERS: usize = 4;
/// How often every ReplicaSet is looked at again regardless of events.
const RESYNC: Duration = Duration::from_secs(300);

/// The controller's state: queue, expectations, event recorder.
pub struct ReplicaSetController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let rc = Arc::new(ReplicaSetController {
        ctx: ctx.clone(),
        queue: Queue::new("replicaset", QUEUE_CAPACITY),
        expectations: Expectations::default(),
        recorder: Recorder::start(ctx.client.clone(), "replicaset-controller", None),
    });
    let weak = Arc::downgrade(&rc);
    ctx.replicasets.on_change(move |c| {
        if let Some(rc) = weak.upgrade() {
            rc.replicaset_changed(c)
        }
    });
    let weak = Arc::downgrade(&rc);
    ctx.pods.on_change(move |c| {
        if let Some(rc) = weak.upgrade() {
            rc.pod_changed(c)
        }
    });
    let store = ctx.replicasets.store().clone();
    let resync = super::resync(rc.queue.clone(), RESYNC, move || store.keys());
    let mut all = super::workers("replicaset", rc.queue.clone(), WORKERS, {
        let rc = rc.clone();
        move |key| {
            let rc = rc.clone();
            async move { rc.sync(key).await }
        }
    });
    all.push(resync);
    all
}

fn key_of(rs: &ReplicaSet) -> Option<ObjectKey> {
    ObjectKey::of(rs)
}

fn min_ready(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

impl ReplicaSetController {
    fn replicaset_changed(&self, change: &Change<'_, ReplicaSet>) {
        match change {
            Change::Added(rs) | Change::Updated { new: rs, .. } => {
                if let Some(k) = key_of(rs) {
                    self.queue.add(k);
                }
            }
            Change::Deleted(rs) => {
                if let Some(k) = key_of(rs) {
                    self.expectations.forget(&k);
                    self.queue.add(k);
                }
            }
        }
    }

    /// The cached ReplicaSet a controller reference points at, if it is that very object.
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        if r.kind != "ReplicaSet" || !r.api_version.starts_with("apps/") {
            return None;
        }
        let rs = self.ctx.replicasets.store().get_named(namespace, &r.name)?;
        (rs.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(rs)
    }

    /// ReplicaSets whose selector matches an orphan pod: one of them may adopt it.
    fn matching(&self, pod: &Pod) -> Vec<ObjectKey> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.ctx
            .replicasets
            .store()
            .list_namespace(ns)
            .iter()
            .filter(|rs| {
                rs.spec.as_ref().is_some_and(|s| {
                    !selector::is_empty(&s.selector)
                        && selector::matches(&s.selector, pod.metadata.labels.as_ref())
                })
            })
            .filter_map(|rs| key_of(rs))
            .collect()
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    return self.pod_gone(pod);
                }
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                if let Some(r) = controller_of(&pod.metadata) {
                    if let Some(k) = self.resolve(ns, r).and_then(|rs| key_of(&rs)) {
                        self.expectations.creation_observed(&k);
                        self.queue.add(k);
                    }
                    return;
                }
                for k in self.matching(pod) {
                    self.queue.add(k);
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let labels_changed = old.metadata.labels != new.metadata.labels;
                if new.metadata.deletion_timestamp.is_some() {
                    self.pod_gone(new);
                    if labels_changed {
                        self.pod_gone(old);
                    }
                    return;
                }
                let ns = new.metadata.namespace.as_deref().unwrap_or_default();
                let (old_ref, new_ref) =
                    (controller_of(&old.metadata), controller_of(&new.metadata));
                let ref_changed = old_ref != new_ref;
                if ref_changed {
                    if let Some(k) = old_ref
                        .and_then(|r| self.resolve(ns, r))
                        .and_then(|rs| key_of(&rs))
                    {
                        self.queue.add(k);
                    }
                }
                if let Some(r) = new_ref {
                    if let Some(rs) = self.resolve(ns, r) {
                        if let Some(k) = key_of(&rs) {
                            let min_ready = min_ready(&rs);
                            if min_ready > 0 && !podutil::is_ready(old) && podutil::is_ready(new) {
                                // Available only later: look again once it is.
                                let after = Duration::from_secs(min_ready as u64 + 1);
                                self.queue.add_after(k.clone(), after);
                            }
                            self.queue.add(k);
                        }
                    }
                    return;
                }
                if labels_changed || ref_changed {
                    for k in self.matching(new) {
                        self.queue.add(k);
                    }
                }
            }
            Change::Deleted(pod) => self.pod_gone(pod),
        }
    }

    /// A pod is going or gone: a deletion its controller may be waiting for.
    fn pod_gone(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            return;
        };
        let (Some(k), Some(pod_key)) = (
            self.resolve(ns, r).and_then(|rs| key_of(&rs)),
            ObjectKey::of(pod),
        ) else {
            return;
        };
        self.expectations.deletion_observed(&k, &pod_key);
        self.queue.add(k);
    }

    /// One pass over one ReplicaSet.
    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.pods.wait_synced().await;
        self.ctx.replicasets.wait_synced().await;
        let Some(rs) = self.ctx.replicasets.store().get(&key) else {
            self.expectations.forget(&key);
            return Ok(());
        };
        let span = tracing::debug_span!("replicaset", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key, rs).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey, rs: Arc<ReplicaSet>) -> Result<(), Error> {
        let Some(spec) = rs.spec.as_ref() else {
            return Ok(());
        };
        if let Err(e) = selector::validate(&spec.selector) {
            tracing::debug!("not syncing: {e}");
            return Ok(());
        }
        let needs_sync = self.expectations.satisfied(key);
        let active: Vec<Arc<Pod>> = self
            .ctx
            .pods
            .store()
            .claimable(
                &key.namespace,
                rs.metadata.uid.as_deref().unwrap_or_default(),
            )
            .into_iter()
            .filter(|p| podutil::is_active(p))
            .collect();
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let owner = Owner::of(rs.as_ref());
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let claimed = claim::claim(&pods_api, &owner, &spec.selector, active, || async {
            // Adopt only if this is still the same, live ReplicaSet.
            match rs_api.get_opt(&key.name).await? {
                Some(fresh) => Ok(fresh.metadata.uid == rs.metadata.uid
                    && fresh.metadata.deletion_timestamp.is_none()),
                None => Ok(false),
            }
        })
        .await?;
        let mut manage_error = None;
        let wanted = spec.replicas.unwrap_or(1).max(0) as usize;
        if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            if let Err(e) = self.manage(key, &rs, &claimed, wanted, &pods_api).await {
                manage_error = Some(e);
            }
        }
        let status = calculate_status(&rs, &claimed, manage_error.as_ref(), wanted);
        self.write_status(&rs, &rs_api, status.clone()).await?;
        if let Some(e) = manage_error {
            return Err(e);
        }
        let min_ready = min_ready(&rs);
        if min_ready > 0
            && status.ready_replicas.unwrap_or(0) == wanted as i32
            && status.available_replicas.unwrap_or(0) != wanted as i32
        {
            self.queue
                .add_after(key.clone(), Duration::from_secs(min_ready as u64));
        }
        Ok(())
    }

    /// Creates or deletes pods so `claimed` reaches `wanted`.
    async fn manage(
        &self,
        key: &ObjectKey,
        rs: &ReplicaSet,
        claimed: &[Arc<Pod>],
        wanted: usize,
        pods_api: &Api<Pod>,
    ) -> Result<(), Error> {
        if claimed.len() < wanted {
            let n = (wanted - claimed.len()).min(BURST);
            self.expectations.expect_creations(key, n);
            tracing::debug!(creating = n, "too few replicas");
            let template = pod_from_template(rs)?;
            // Slow start: 1, 2, 4, ... at once, stopping at the first failing batch, so a
            // rejected template costs one request rather than hundreds.
            let mut created = 0;
            let mut batch = 1;
            let mut result = Ok(());
            while created < n {
                let size = batch.min(n - created);
                let outcomes =
                    join_all((0..size).map(|_| self.create_pod(rs, &template, pods_api))).await;
                let ok = outcomes.iter().filter(|r| r.is_ok()).count();
                created += ok;
                if let Some(Err(e)) = outcomes.into_iter().find(|r| r.is_err()) {
                    result = Err(e);
                    break;
                }
                batch *= 2;
            }
            if created < n {
                // Never to be observed: lower the expectations by what was not created.
                self.expectations.lower_creations(key, n - created);
            }
            return result;
        }
        if claimed.len() > wanted {
            let n = (claimed.len() - wanted).min(BURST);
            let mut candidates = claimed.to_vec();
            let related = self.related_pods(rs);
            podutil::sort_for_deletion(&mut candidates, &related, Timestamp::now());
            candidates.truncate(n);
            let keys: Vec<ObjectKey> = candidates
                .iter()
                .filter_map(|p| ObjectKey::of(p.as_ref()))
                .collect();
            self.expectations.expect_deletions(key, keys);
            tracing::debug!(deleting = n, "too many replicas");
            let outcomes = join_all(candidates.iter().map(|p| async move {
                let name = p.metadata.name.clone().unwrap_or_default();
                match pods_api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        self.recorder.object(
                            rs,
                            Kind::Normal,
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        if let Some(pk) = ObjectKey::of(p.as_ref()) {
                            self.expectations.deletion_observed(key, &pk);
                        }
                        if super::not_found(&e) {
                            Ok(())
                        } else {
                            self.recorder.object(
                                rs,
                                Kind::Warning,
                                "FailedDelete",
                                format!("Error deleting: {e}"),
                            );
                            Err(Error::from(e))
                        }
                    }
                }
            }))
            .await;
            return outcomes.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()));
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        rs: &ReplicaSet,
        template: &Pod,
        pods_api: &Api<Pod>,
    ) -> Result<(), Error> {
        match pods_api.create(&PostParams::default(), template).await {
            Ok(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                tracing::debug!(pod = %name, "created");
                self.recorder.object(
                    rs,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                );
                Ok(())
            }
            Err(e) => {
                let text = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.recorder.object(
                    rs,
                    Kind::Warning,
                    "FailedCreate",
                    format!("Error creating: {text}"),
                );
                Err(e.into())
            }
        }
    }

    /// Pods of every ReplicaSet sharing this one's controller: a surplus pod sharing a node
    /// with many of them goes first.
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let Some(owner) = controller_of(&rs.metadata) else {
            return Vec::new();
        };
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let siblings: Vec<String> = self
            .ctx
            .replicasets
            .store()
            .list_namespace(ns)
            .iter()
            .filter(|s| controller_of(&s.metadata).is_some_and(|r| r.uid == owner.uid))
            .filter_map(|s| s.metadata.uid.clone())
            .collect();
        self.ctx
            .pods
            .store()
            .list_namespace(ns)
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
            .collect()
    }

    async fn write_status(
        &self,
        rs: &ReplicaSet,
        api: &Api<ReplicaSet>,
        status: ReplicaSetStatus,
    ) -> Result<(), Error> {
        let current = rs.status.clone().unwrap_or_default();
        if same_status(&current, &status) {
            return Ok(());
        }
        let name = rs.metadata.name.clone().unwrap_or_default();
        // Zero counts are omitted upstream; null removes them from the stored status.
        let patch = json!({"status": {
            "replicas": status.replicas,
            "fullyLabeledReplicas": status.fully_labeled_replicas,
            "readyReplicas": status.ready_replicas,
            "availableReplicas": status.available_replicas,
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions,
        }});
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

fn same_status(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    a.replicas == b.replicas
        && a.fully_labeled_replicas.unwrap_or(0) == b.fully_labeled_replicas.unwrap_or(0)
        && a.ready_replicas.unwrap_or(0) == b.ready_replicas.unwrap_or(0)
        && a.available_replicas.unwrap_or(0) == b.available_replicas.unwrap_or(0)
        && a.observed_generation == b.observed_generation
        && a.conditions.as_ref().filter(|c| !c.is_empty())
            == b.conditions.as_ref().filter(|c| !c.is_empty())
}

fn nonzero(n: usize) -> Option<i32> {
    (n > 0).then_some(n as i32)
}

/// The status `claimed` pods give: counts, observed generation, and ReplicaFailure while pods
/// cannot be created or deleted.
pub fn calculate_status(
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
    manage_error: Option<&Error>,
    wanted: usize,
) -> ReplicaSetStatus {
    let template_labels: BTreeMap<String, String> = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let now = Timestamp::now();
    let min_ready = min_ready(rs);
    let fully_labeled = claimed
        .iter()
        .filter(|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = claimed.iter().filter(|p| podutil::is_ready(p)).count();
    let available = claimed
        .iter()
        .filter(|p| podutil::is_available(p, min_ready, now))
        .count();
    let mut conditions: Vec<ReplicaSetCondition> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_error {
        Some(e) if !has_failure => {
            let reason = if claimed.len() < wanted {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: claimed.len() as i32,
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(ready),
        available_replicas: nonzero(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: None,
    }
}

/// A pod as `rs`'s template makes it: labels, annotations and finalizers from the template,
/// generateName `<rs>-`, and `rs` as its controller.
pub fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, Error> {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or_else(|| Error::Invalid(format!("replica set {name} has no pod template")))?;
    let tmeta = template.metadata.unwrap_or_default();
    if tmeta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err(Error::Invalid("unable to create pods, no labels".into()));
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![Owner::of(rs).controller_ref()]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}
