//! The StatefulSet controller, as upstream's: pods with stable names `<sts>-<ordinal>` (labels
//! `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`, hostname the pod's
//! name, subdomain `serviceName`), each with its own PersistentVolumeClaims
//! `<template>-<sts>-<ordinal>` from `volumeClaimTemplates`, created before the pod and kept
//! when the pod goes (unless `persistentVolumeClaimRetentionPolicy` says Delete: whenDeleted
//! makes the StatefulSet their owner, whenScaled makes a condemned pod their owner, and the
//! garbage collector does the rest).
//!
//! `OrderedReady` creates pods one at a time in ordinal order, each once the previous ones are
//! Running and Ready, and removes them in reverse order; `Parallel` creates and removes them all
//! at once. RollingUpdate replaces pods whose revision is not the update revision from the
//! highest ordinal down to `partition`, one at a time, waiting for each to be Ready; OnDelete
//! replaces pods only when they are deleted. Each template is a ControllerRevision
//! (`<sts>-<hash>`), named in the pods' `controller-revision-hash` label and in
//! `status.currentRevision`/`updateRevision`, which `kubectl rollout status sts/x` reads.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::Instrument;

use super::claim::{self, controller_of, Owner};
use super::history::{self, REVISION_LABEL};
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{podutil, Context, Error};
use crate::events::{Kind, Recorder};

/// The label naming a StatefulSet pod.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const QUEUE_CAPACITY: usize = 50_000;
const WORKERS: usize = 2;
const RESYNC: Duration = Duration::from_secs(300);
/// Most pods one Parallel sync creates or deletes.
const BURST: usize = 250;

/// What the controller knows about one ordinal's pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The pod's ordinal.
    pub ordinal: i32,
    /// Whether a pod exists for it.
    pub exists: bool,
    /// Whether it Failed or Succeeded (to be replaced).
    pub finished: bool,
    /// Whether it is being deleted.
    pub terminating: bool,
    /// Whether it is Running and Ready (and available, with minReadySeconds).
    pub healthy: bool,
    /// Whether it runs the update revision.
    pub updated: bool,
}

/// One step of a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the pod (and its claims) of this ordinal.
    Create(i32),
    /// Delete this ordinal's finished pod, to be created again.
    Replace(i32),
    /// Delete this ordinal's pod: it is beyond the replicas.
    Condemn(i32),
    /// Delete this ordinal's pod: it runs an old revision.
    Update(i32),
}

/// The pod-management and update plan (upstream's `updateStatefulSet`): `replicas` are the
/// slots of the wanted ordinals, ascending; `condemned` the existing pods beyond them; `ordered`
/// for OrderedReady; `partition` the first index a RollingUpdate replaces (`None` for OnDelete).
pub fn plan(
    replicas: &[Slot],
    condemned: &[Slot],
    ordered: bool,
    partition: Option<usize>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for s in replicas {
        if s.exists && s.finished && !s.terminating {
            actions.push(Action::Replace(s.ordinal));
            if ordered {
                return actions;
            }
            continue;
        }
        if !s.exists {
            actions.push(Action::Create(s.ordinal));
            if ordered {
                return actions;
            }
            continue;
        }
        if ordered && (s.terminating || !s.healthy) {
            // Wait for this one before the next.
            return actions;
        }
    }
    let all_healthy = replicas
        .iter()
        .all(|s| s.exists && s.healthy && !s.terminating);
    for s in condemned.iter().rev() {
        if s.terminating {
            if ordered {
                return actions;
            }
            continue;
        }
        if ordered && !all_healthy {
            return actions;
        }
        actions.push(Action::Condemn(s.ordinal));
        if ordered {
            return actions;
        }
    }
    if ordered && !actions.is_empty() {
        return actions;
    }
    if let Some(partition) = partition {
        for s in replicas.iter().skip(partition).rev() {
            if s.exists && !s.updated && !s.terminating {
                actions.push(Action::Update(s.ordinal));
                return actions;
            }
            if !s.exists || !s.healthy || s.terminating {
                return actions;
            }
        }
    }
    actions
}

/// The ordinal of pod `pod` of StatefulSet `sts`, if the name is `<sts>-<n>`.
pub fn ordinal_of(sts: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(sts)?.strip_prefix('-')?;
    if rest.is_empty()
        || (rest.len() > 1 && rest.starts_with('0'))
        || !rest.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    rest.parse().ok()
}

/// The controller's state.
pub struct StatefulSetController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let sc = Arc::new(StatefulSetController {
        ctx: ctx.clone(),
        queue: Queue::new("statefulset", QUEUE_CAPACITY),
        recorder: Recorder::start(ctx.client.clone(), "statefulset-controller", None),
    });
    let weak = Arc::downgrade(&sc);
    ctx.statefulsets.on_change(move |c| {
        let Some(sc) = weak.upgrade() else { return };
        if let Change::Added(s) | Change::Updated { new: s, .. } = c {
            if let Some(k) = ObjectKey::of(s.as_ref()) {
                sc.queue.add(k);
            }
        }
    });
    let weak = Arc::downgrade(&sc);
    ctx.pods.on_change(move |c| {
        if let Some(sc) = weak.upgrade() {
            sc.pod_changed(c)
        }
    });
    let store = ctx.statefulsets.store().clone();
    let mut all = super::workers("statefulset", sc.queue.clone(), WORKERS, {
        let sc = sc.clone();
        move |key| {
            let sc = sc.clone();
            async move { sc.sync(key).await }
        }
    });
    all.push(super::resync(sc.queue.clone(), RESYNC, move || {
        store.keys()
    }));
    all
}

fn resolve(ctx: &Context, namespace: &str, r: &OwnerReference) -> Option<Arc<StatefulSet>> {
    if r.kind != "StatefulSet" || !r.api_version.starts_with("apps/") {
        return None;
    }
    let s = ctx.statefulsets.store().get_named(namespace, &r.name)?;
    (s.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(s)
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && podutil::is_ready(pod)
}

impl StatefulSetController {
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
        match controller_of(&pod.metadata) {
            Some(r) => {
                if let Some(k) = resolve(&self.ctx, ns, r).and_then(|s| ObjectKey::of(s.as_ref())) {
                    if let (Change::Updated { old, new }, Some(s)) =
                        (change, resolve(&self.ctx, ns, r))
                    {
                        let mr = s
                            .spec
                            .as_ref()
                            .and_then(|s| s.min_ready_seconds)
                            .unwrap_or(0);
                        if mr > 0 && !podutil::is_ready(old) && podutil::is_ready(new) {
                            self.queue
                                .add_after(k.clone(), Duration::from_secs(mr as u64 + 1));
                        }
                    }
                    self.queue.add(k);
                }
            }
            None => {
                if let Change::Added(_) = change {
                    for s in self.ctx.statefulsets.store().list_namespace(ns) {
                        let sel = s.spec.as_ref().map(|s| &s.selector);
                        if sel.is_some_and(|sel| {
                            !super::selector::is_empty(sel)
                                && super::selector::matches(sel, pod.metadata.labels.as_ref())
                        }) {
                            if let Some(k) = ObjectKey::of(s.as_ref()) {
                                self.queue.add(k);
                            }
                        }
                    }
                }
            }
        }
    }

    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.pods.wait_synced().await;
        self.ctx.statefulsets.wait_synced().await;
        self.ctx.controllerrevisions.wait_synced().await;
        let Some(sts) = self.ctx.statefulsets.store().get(&key) else {
            return Ok(());
        };
        let span =
            tracing::debug_span!("statefulset", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key, sts).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey, sts: Arc<StatefulSet>) -> Result<(), Error> {
        let Some(spec) = sts.spec.as_ref() else {
            return Ok(());
        };
        if let Err(e) = super::selector::validate(&spec.selector) {
            tracing::debug!("not syncing: {e}");
            return Ok(());
        }
        if super::selector::is_empty(&spec.selector) {
            return Ok(());
        }
        let owner = Owner::of(sts.as_ref());
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let sts_api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        // Only pods named like ours are candidates, as upstream's `isMemberOf`.
        let candidates: Vec<Arc<Pod>> = self
            .ctx
            .pods
            .store()
            .claimable(&key.namespace, &owner.uid)
            .into_iter()
            .filter(|p| {
                ordinal_of(&key.name, p.metadata.name.as_deref().unwrap_or_default()).is_some()
            })
            .collect();
        let pods = claim::claim(&pods_api, &owner, &spec.selector, candidates, || async {
            match sts_api.get_opt(&key.name).await? {
                Some(fresh) => Ok(fresh.metadata.uid == sts.metadata.uid
                    && fresh.metadata.deletion_timestamp.is_none()),
                None => Ok(false),
            }
        })
        .await?;
        if sts.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let uid = sts.metadata.uid.clone().unwrap_or_default();
        let revs = history::owned(&self.ctx, &key.namespace, &uid);
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let collisions = sts.status.as_ref().and_then(|s| s.collision_count);
        let (update_rev, collisions) = history::current(
            &self.ctx.client,
            &owner,
            &key.namespace,
            &spec.template,
            labels,
            &revs,
            collisions,
        )
        .await?;
        let update_name = update_rev.metadata.name.clone().unwrap_or_default();
        let current_rev: ControllerRevision = sts
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .and_then(|n| revs.iter().find(|r| r.metadata.name.as_deref() == Some(n)))
            .map(|r| (**r).clone())
            .unwrap_or_else(|| update_rev.clone());
        let current_name = current_rev.metadata.name.clone().unwrap_or_default();

        let replicas = spec.replicas.unwrap_or(1).max(0);
        let start = spec
            .ordinals
            .as_ref()
            .and_then(|o| o.start)
            .unwrap_or(0)
            .max(0);
        let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
        let strategy = spec.update_strategy.as_ref();
        let on_delete = strategy.is_some_and(|s| s.type_.as_deref() == Some("OnDelete"));
        let partition = if on_delete {
            None
        } else {
            Some(
                strategy
                    .and_then(|s| s.rolling_update.as_ref())
                    .and_then(|r| r.partition)
                    .unwrap_or(0)
                    .max(0) as usize,
            )
        };
        let mr = spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();

        let mut by_ord: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
        for p in &pods {
            if let Some(o) = ordinal_of(&key.name, p.metadata.name.as_deref().unwrap_or_default()) {
                by_ord.insert(o, p.clone());
            }
        }
        let slot = |ordinal: i32| -> Slot {
            match by_ord.get(&ordinal) {
                None => Slot {
                    ordinal,
                    exists: false,
                    finished: false,
                    terminating: false,
                    healthy: false,
                    updated: false,
                },
                Some(p) => Slot {
                    ordinal,
                    exists: true,
                    finished: !podutil::is_active(p) && p.metadata.deletion_timestamp.is_none(),
                    terminating: p.metadata.deletion_timestamp.is_some(),
                    healthy: is_running_and_ready(p) && podutil::is_available(p, mr, now),
                    updated: revision_of(p) == Some(update_name.as_str()),
                },
            }
        };
        let end = start.saturating_add(replicas);
        let wanted: Vec<Slot> = (start..end).map(slot).collect();
        let condemned: Vec<Slot> = by_ord
            .keys()
            .filter(|o| **o < start || **o >= end)
            .map(|o| slot(*o))
            .collect();
        let actions = plan(&wanted, &condemned, ordered, partition);

        let current_template =
            history::template_of(&current_rev).unwrap_or_else(|| spec.template.clone());
        let mut result = Ok(());
        for action in actions.into_iter().take(BURST) {
            let r = match action {
                Action::Create(o) => {
                    // Below the partition, a RollingUpdate keeps making the current revision.
                    let idx = (o - start) as usize;
                    let (template, rev) = match partition {
                        Some(p) if idx < p => (&current_template, current_name.as_str()),
                        _ => (&spec.template, update_name.as_str()),
                    };
                    self.create(&sts, o, template, rev, &pods_api).await
                }
                Action::Replace(o) | Action::Update(o) => {
                    self.delete(&sts, &key.name, o, &pods_api).await
                }
                Action::Condemn(o) => {
                    let scaled_delete = spec
                        .persistent_volume_claim_retention_policy
                        .as_ref()
                        .and_then(|p| p.when_scaled.as_deref())
                        == Some("Delete");
                    if scaled_delete {
                        if let Some(p) = by_ord.get(&o) {
                            if let Err(e) = self.claims_owned_by_pod(&sts, o, p).await {
                                tracing::debug!("claims of condemned pod: {e}");
                            }
                        }
                    }
                    self.delete(&sts, &key.name, o, &pods_api).await
                }
            };
            if let Err(e) = r {
                result = Err(e);
                break;
            }
        }

        // Status.
        let mut st = StatefulSetStatus {
            observed_generation: sts.metadata.generation,
            collision_count: collisions,
            current_revision: Some(current_name.clone()),
            update_revision: Some(update_name.clone()),
            ..Default::default()
        };
        for p in by_ord.values() {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            st.replicas += 1;
            if is_running_and_ready(p) {
                st.ready_replicas = Some(st.ready_replicas.unwrap_or(0) + 1);
                if podutil::is_available(p, mr, now) {
                    st.available_replicas = Some(st.available_replicas.unwrap_or(0) + 1);
                }
            }
            if revision_of(p) == Some(current_name.as_str()) {
                st.current_replicas = Some(st.current_replicas.unwrap_or(0) + 1);
            }
            if revision_of(p) == Some(update_name.as_str()) {
                st.updated_replicas = Some(st.updated_replicas.unwrap_or(0) + 1);
            }
        }
        // A rolling update is complete once every pod runs the update revision and is Ready.
        if !on_delete
            && st.updated_replicas.unwrap_or(0) == replicas
            && st.ready_replicas.unwrap_or(0) == replicas
            && st.replicas == replicas
        {
            st.current_revision = Some(update_name.clone());
            st.current_replicas = st.updated_replicas;
        }
        let in_use: HashSet<String> = pods
            .iter()
            .filter_map(|p| revision_of(p).map(str::to_string))
            .collect();
        let keep = [current_name.as_str(), update_name.as_str()];
        if let Err(e) = history::prune(
            &self.ctx.client,
            &key.namespace,
            &revs,
            &in_use,
            &keep,
            spec.revision_history_limit.unwrap_or(10),
        )
        .await
        {
            tracing::debug!("pruning history: {e}");
        }
        self.write_status(&sts, &sts_api, &st).await?;
        if mr > 0 && st.ready_replicas != st.available_replicas {
            self.queue
                .add_after(key.clone(), Duration::from_secs(mr as u64));
        }
        result
    }

    /// Creates the claims of ordinal `o` that do not exist, then its pod.
    async fn create(
        &self,
        sts: &StatefulSet,
        o: i32,
        template: &PodTemplateSpec,
        rev: &str,
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let pod = pod_for(sts, o, template, rev);
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        for claim in claims_for(sts, o) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match pvc_api.get_opt(&name).await? {
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    return Err(Error::Retry(format!("claim {name} is being deleted")));
                }
                Some(_) => {}
                None => match pvc_api.create(&PostParams::default(), &claim).await {
                    Ok(_) => self.recorder.object(
                        sts,
                        Kind::Normal,
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} Pod {pod_name} in StatefulSet {} success",
                            sts.metadata.name.as_deref().unwrap_or_default()
                        ),
                    ),
                    Err(e) if super::conflict(&e) => {}
                    Err(e) => {
                        self.recorder.object(
                            sts,
                            Kind::Warning,
                            "FailedCreate",
                            format!("create Claim {name} for Pod {pod_name} failed: {e}"),
                        );
                        return Err(e.into());
                    }
                },
            }
        }
        let sts_name = sts.metadata.name.as_deref().unwrap_or_default();
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                tracing::debug!(pod = %pod_name, "created");
                self.recorder.object(
                    sts,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!("create Pod {pod_name} in StatefulSet {sts_name} successful"),
                );
                Ok(())
            }
            Err(e) if super::conflict(&e) => Ok(()),
            Err(e) => {
                self.recorder.object(
                    sts,
                    Kind::Warning,
                    "FailedCreate",
                    format!("create Pod {pod_name} in StatefulSet {sts_name} failed error: {e}"),
                );
                Err(e.into())
            }
        }
    }

    async fn delete(
        &self,
        sts: &StatefulSet,
        sts_name: &str,
        o: i32,
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let name = format!("{sts_name}-{o}");
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::debug!(pod = %name, "deleted");
                self.recorder.object(
                    sts,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("delete Pod {name} in StatefulSet {sts_name} successful"),
                );
                Ok(())
            }
            Err(e) if super::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// whenScaled Delete: the condemned pod becomes an owner of its claims, so they go with it.
    async fn claims_owned_by_pod(&self, sts: &StatefulSet, o: i32, pod: &Pod) -> Result<(), Error> {
        let ns = sts.metadata.namespace.clone().unwrap_or_default();
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        };
        for claim in claims_for(sts, o) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            let Some(existing) = pvc_api.get_opt(&name).await? else {
                continue;
            };
            let mut refs = existing
                .metadata
                .owner_references
                .clone()
                .unwrap_or_default();
            if refs.iter().any(|r| r.uid == owner.uid) {
                continue;
            }
            refs.push(owner.clone());
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": existing.metadata.resource_version}});
            pvc_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    async fn write_status(
        &self,
        sts: &StatefulSet,
        api: &Api<StatefulSet>,
        s: &StatefulSetStatus,
    ) -> Result<(), Error> {
        let cur = sts.status.clone().unwrap_or_default();
        let norm = |s: &StatefulSetStatus| {
            (
                s.replicas,
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
                s.current_replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
                s.current_revision.clone(),
                s.update_revision.clone(),
                s.observed_generation,
                s.collision_count,
            )
        };
        if norm(&cur) == norm(s) {
            return Ok(());
        }
        let patch = json!({"status": {
            "replicas": s.replicas,
            "readyReplicas": s.ready_replicas,
            "availableReplicas": s.available_replicas,
            "currentReplicas": s.current_replicas,
            "updatedReplicas": s.updated_replicas,
            "currentRevision": s.current_revision,
            "updateRevision": s.update_revision,
            "observedGeneration": s.observed_generation,
            "collisionCount": s.collision_count,
        }});
        let name = sts.metadata.name.clone().unwrap_or_default();
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

/// The claims of ordinal `o`: `<template>-<sts>-<o>`, labelled with the template's labels and
/// the StatefulSet's selector labels; owned by the StatefulSet when whenDeleted is Delete.
pub fn claims_for(sts: &StatefulSet, o: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = sts.spec.as_ref() else {
        return Vec::new();
    };
    let name = sts.metadata.name.clone().unwrap_or_default();
    let delete_with_set = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            for (k, v) in spec.selector.match_labels.iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            let owner_references = delete_with_set.then(|| {
                let mut r = Owner::of(sts).controller_ref();
                r.controller = None;
                vec![r]
            });
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("{tname}-{name}-{o}")),
                    namespace: sts.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references,
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// Pod `<sts>-<o>` from `template` at revision `rev`: identity labels, hostname and subdomain,
/// and volumes for its claims.
pub fn pod_for(sts: &StatefulSet, o: i32, template: &PodTemplateSpec, rev: &str) -> Pod {
    let name = sts.metadata.name.clone().unwrap_or_default();
    let pod_name = format!("{name}-{o}");
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), o.to_string());
    labels.insert(REVISION_LABEL.into(), rev.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(pod_name.clone());
    if let Some(svc) = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    for t in sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
    {
        let tname = t.metadata.name.clone().unwrap_or_default();
        let vol = Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{tname}-{name}-{o}"),
                read_only: None,
            }),
            ..Default::default()
        };
        let vols = spec.volumes.get_or_insert_with(Vec::new);
        vols.retain(|v| v.name != tname);
        vols.push(vol);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name),
            namespace: sts.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![Owner::of(sts).controller_ref()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(o: i32, updated: bool) -> Slot {
        Slot {
            ordinal: o,
            exists: true,
            finished: false,
            terminating: false,
            healthy: true,
            updated,
        }
    }

    fn missing(o: i32) -> Slot {
        Slot {
            ordinal: o,
            exists: false,
            finished: false,
            terminating: false,
            healthy: false,
            updated: false,
        }
    }

    #[test]
    fn ordered_creation_waits_for_each_pod() {
        let s = [missing(0), missing(1), missing(2)];
        assert_eq!(plan(&s, &[], true, Some(0)), vec![Action::Create(0)]);
        let pending = Slot {
            healthy: false,
            ..healthy(0, true)
        };
        assert_eq!(plan(&[pending, missing(1)], &[], true, Some(0)), vec![]);
        assert_eq!(
            plan(&[healthy(0, true), missing(1)], &[], true, Some(0)),
            vec![Action::Create(1)]
        );
        // Parallel: everything at once.
        assert_eq!(
            plan(&s, &[], false, Some(0)),
            vec![Action::Create(0), Action::Create(1), Action::Create(2)]
        );
    }

    #[test]
    fn scale_down_goes_in_reverse_order() {
        let replicas = [healthy(0, true)];
        let condemned = [healthy(1, true), healthy(2, true)];
        assert_eq!(
            plan(&replicas, &condemned, true, Some(0)),
            vec![Action::Condemn(2)]
        );
        let going = Slot {
            terminating: true,
            ..healthy(2, true)
        };
        assert_eq!(
            plan(&replicas, &[healthy(1, true), going], true, Some(0)),
            vec![]
        );
        assert_eq!(
            plan(&replicas, &condemned, false, Some(0)),
            vec![Action::Condemn(2), Action::Condemn(1)]
        );
    }

    #[test]
    fn rolling_update_from_the_top_down_to_the_partition() {
        let s = [healthy(0, false), healthy(1, false), healthy(2, false)];
        assert_eq!(plan(&s, &[], true, Some(0)), vec![Action::Update(2)]);
        let s2 = [healthy(0, false), healthy(1, false), healthy(2, true)];
        assert_eq!(plan(&s2, &[], true, Some(0)), vec![Action::Update(1)]);
        // The updated pod is not Ready yet: wait.
        let s3 = [
            healthy(0, false),
            healthy(1, false),
            Slot {
                healthy: false,
                ..healthy(2, true)
            },
        ];
        assert_eq!(plan(&s3, &[], false, Some(0)), vec![]);
        // Partition 2: only ordinal 2 is updated.
        assert_eq!(plan(&s2, &[], true, Some(2)), vec![]);
        assert_eq!(plan(&s, &[], true, Some(2)), vec![Action::Update(2)]);
        // OnDelete: nothing.
        assert_eq!(plan(&s, &[], true, None), vec![]);
        // A failed pod is replaced.
        let failed = Slot {
            finished: true,
            healthy: false,
            ..healthy(1, true)
        };
        assert_eq!(
            plan(&[healthy(0, true), failed], &[], true, Some(0)),
            vec![Action::Replace(1)]
        );
    }

    #[test]
    fn ordinals_from_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-99999999999999"), None);
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
            }
        }))
        .unwrap_or_default();
        let t = sts
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let p = pod_for(&sts, 1, &t, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        let l = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l.get(POD_NAME_LABEL).map(String::as_str), Some("web-1"));
        assert_eq!(l.get(POD_INDEX_LABEL).map(String::as_str), Some("1"));
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let claims = claims_for(&sts, 1);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-1"));
        assert!(spec.volumes.iter().flatten().any(|v| v
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == "www-web-1")));
    }
}
