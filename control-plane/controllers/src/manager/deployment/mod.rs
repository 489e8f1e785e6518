//! The Deployment controller, as upstream's: for each Deployment, a ReplicaSet per pod template
//! (`<deployment>-<pod-template-hash>`), rolled over with the RollingUpdate (maxSurge,
//! maxUnavailable) or Recreate strategy; revisions and history cleanup; scaling spread across
//! ReplicaSets in proportion; pause; and the status and conditions `kubectl rollout status`
//! reads.
//!
//! | module | job |
//! |---|---|
//! | [`util`] | fenceposts, the template hash, counts, sort orders, annotations |
//! | [`sync`] | finding or creating the new ReplicaSet, scaling, status |
//! | [`rolling`], [`recreate`] | the two strategies |
//! | [`history`] | revision history cleanup |
//! | [`progress`] | Progressing/Available conditions and the progress deadline |

pub mod history;
pub mod progress;
pub mod recreate;
pub mod rolling;
pub mod sync;
pub mod util;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use tracing::Instrument;

use super::claim::{self, controller_of, Owner};
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{selector, Context, Error};
use crate::events::{Kind, Recorder};

/// Most Deployments waiting in the queue.
const QUEUE_CAPACITY: usize = 100_000;
/// Workers syncing Deployments at once.
const WORKERS: usize = 4;
/// How often every Deployment is looked at again regardless of events.
const RESYNC: Duration = Duration::from_secs(300);

/// The controller's state: queue and event recorder over the shared caches.
pub struct DeploymentController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let dc = Arc::new(DeploymentController {
        ctx: ctx.clone(),
        queue: Queue::new("deployment", QUEUE_CAPACITY),
        recorder: Recorder::start(ctx.client.clone(), "deployment-controller", None),
    });
    let weak = Arc::downgrade(&dc);
    ctx.deployments.on_change(move |c| {
        if let Some(dc) = weak.upgrade() {
            let d = match c {
                Change::Added(d) | Change::Updated { new: d, .. } | Change::Deleted(d) => d,
            };
            if let Some(k) = ObjectKey::of(d.as_ref()) {
                dc.queue.add(k);
            }
        }
    });
    let weak = Arc::downgrade(&dc);
    ctx.replicasets.on_change(move |c| {
        if let Some(dc) = weak.upgrade() {
            dc.replicaset_changed(c)
        }
    });
    let weak = Arc::downgrade(&dc);
    ctx.pods.on_change(move |c| {
        if let (Some(dc), Change::Deleted(pod)) = (weak.upgrade(), c) {
            dc.pod_deleted(pod)
        }
    });
    let store = ctx.deployments.store().clone();
    let resync = super::resync(dc.queue.clone(), RESYNC, move || store.keys());
    let mut tasks = super::workers("deployment", dc.queue.clone(), WORKERS, {
        let dc = dc.clone();
        move |key| {
            let dc = dc.clone();
            async move { dc.sync(key).await }
        }
    });
    tasks.push(resync);
    tasks
}

impl DeploymentController {
    /// The cached Deployment a controller reference points at, if it is that very object.
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<Deployment>> {
        if r.kind != "Deployment" || !r.api_version.starts_with("apps/") {
            return None;
        }
        let d = self.ctx.deployments.store().get_named(namespace, &r.name)?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    fn enqueue_owner(&self, rs: &ReplicaSet) -> bool {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        match controller_of(&rs.metadata) {
            Some(r) => {
                if let Some(k) = self.resolve(ns, r).and_then(|d| ObjectKey::of(d.as_ref())) {
                    self.queue.add(k);
                }
                true
            }
            None => false,
        }
    }

    /// Deployments whose selector matches an orphan ReplicaSet.
    fn enqueue_matching(&self, rs: &ReplicaSet) {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        for d in self.ctx.deployments.store().list_namespace(ns) {
            let Some(spec) = d.spec.as_ref() else {
                continue;
            };
            if selector::is_empty(&spec.selector)
                || !selector::matches(&spec.selector, rs.metadata.labels.as_ref())
            {
                continue;
            }
            if let Some(k) = ObjectKey::of(d.as_ref()) {
                self.queue.add(k);
            }
        }
    }

    fn replicaset_changed(&self, change: &Change<'_, ReplicaSet>) {
        match change {
            Change::Added(rs) => {
                if !self.enqueue_owner(rs) && rs.metadata.deletion_timestamp.is_none() {
                    self.enqueue_matching(rs);
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let (old_ref, new_ref) =
                    (controller_of(&old.metadata), controller_of(&new.metadata));
                if old_ref != new_ref && old_ref.is_some() {
                    self.enqueue_owner(old);
                }
                if !self.enqueue_owner(new)
                    && (old.metadata.labels != new.metadata.labels || old_ref != new_ref)
                {
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(rs) => {
                self.enqueue_owner(rs);
            }
        }
    }

    /// A Recreate rollout waits for old pods to be gone: look again when one goes.
    fn pod_deleted(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            return;
        };
        let Some(rs) = self.ctx.replicasets.store().get_named(ns, &r.name) else {
            return;
        };
        if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
            return;
        }
        if let Some(dr) = controller_of(&rs.metadata) {
            if let Some(d) = self.resolve(ns, dr) {
                if util::is_recreate(&d) {
                    if let Some(k) = ObjectKey::of(d.as_ref()) {
                        self.queue.add(k);
                    }
                }
            }
        }
    }

    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.deployments.wait_synced().await;
        self.ctx.replicasets.wait_synced().await;
        self.ctx.pods.wait_synced().await;
        let Some(d) = self.ctx.deployments.store().get(&key) else {
            return Ok(());
        };
        let span = tracing::debug_span!("deployment", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key, (*d).clone()).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey, mut d: Deployment) -> Result<(), Error> {
        let Some(spec) = d.spec.clone() else {
            return Ok(());
        };
        if selector::is_empty(&spec.selector) {
            self.recorder.object(
                &d,
                Kind::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let observed = d.status.as_ref().and_then(|s| s.observed_generation);
            if observed < d.metadata.generation {
                let mut status = d.status.clone().unwrap_or_default();
                status.observed_generation = d.metadata.generation;
                self.write_status(&mut d, status).await?;
            }
            return Ok(());
        }
        selector::validate(&spec.selector)?;
        let rss = self.claim_replicasets(key, &d).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(&mut d, rss).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if spec.paused == Some(true) {
            return self.sync_scale(&mut d, rss).await;
        }
        if self.is_scaling_event(&d, &rss) {
            return self.sync_scale(&mut d, rss).await;
        }
        if util::is_recreate(&d) {
            recreate::rollout(self, &mut d, rss).await
        } else {
            rolling::rollout(self, &mut d, rss).await
        }
    }

    /// The ReplicaSets this Deployment controls, after adopting and releasing.
    async fn claim_replicasets(
        &self,
        key: &ObjectKey,
        d: &Deployment,
    ) -> Result<Vec<ReplicaSet>, Error> {
        let Some(spec) = d.spec.as_ref() else {
            return Ok(Vec::new());
        };
        let candidates = self.ctx.replicasets.store().claimable(
            &key.namespace,
            d.metadata.uid.as_deref().unwrap_or_default(),
        );
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let d_api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let owner = Owner::of(d);
        let claimed = claim::claim(&rs_api, &owner, &spec.selector, candidates, || async {
            match d_api.get_opt(&key.name).await? {
                Some(fresh) => Ok(fresh.metadata.uid == d.metadata.uid
                    && fresh.metadata.deletion_timestamp.is_none()),
                None => Ok(false),
            }
        })
        .await?;
        Ok(claimed.iter().map(|rs| (**rs).clone()).collect())
    }

    /// Whether the Deployment was scaled (an active ReplicaSet was last sized for another
    /// replica count): then only sizes change, no rollout step.
    fn is_scaling_event(&self, d: &Deployment, rss: &[ReplicaSet]) -> bool {
        let want = util::replicas(d);
        rss.iter()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .any(|rs| util::desired_annotation_differs(rs, want))
    }

    /// Records DeploymentPaused / DeploymentResumed in the Progressing condition.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), Error> {
        if !progress::has_deadline(d) {
            return Ok(());
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let mut status = d.status.clone().unwrap_or_default();
        let reason = progress::get_condition(&status, "Progressing").and_then(|c| c.reason.clone());
        let paused_reason = reason.as_deref() == Some(progress::PAUSED);
        let cond = if paused && !paused_reason {
            progress::condition(
                "Progressing",
                "Unknown",
                progress::PAUSED,
                "Deployment is paused".into(),
            )
        } else if !paused && paused_reason {
            progress::condition(
                "Progressing",
                "Unknown",
                progress::RESUMED,
                "Deployment is resumed".into(),
            )
        } else {
            return Ok(());
        };
        progress::set_condition(&mut status, cond);
        self.write_status(d, status).await
    }

    /// A Deployment being deleted: status only.
    async fn sync_status_only(
        &self,
        d: &mut Deployment,
        rss: Vec<ReplicaSet>,
    ) -> Result<(), Error> {
        let sets = sync::Sets::split(d, rss);
        let status = progress::calculate_status(d, &sets);
        self.write_status_if_changed(d, status).await
    }

    /// Scaling without a rollout (a paused Deployment, or a changed replica count).
    async fn sync_scale(&self, d: &mut Deployment, rss: Vec<ReplicaSet>) -> Result<(), Error> {
        let mut sets = self.get_all_and_sync_revision(d, rss, false).await?;
        self.scale(d, &mut sets).await?;
        if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            history::cleanup(self, d, &sets).await?;
        }
        let status = progress::calculate_status(d, &sets);
        self.write_status_if_changed(d, status).await
    }

    /// The events sink, for the strategies.
    pub(crate) fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The API of ReplicaSets in the Deployment's namespace.
    pub(crate) fn rs_api(&self, d: &Deployment) -> Api<ReplicaSet> {
        Api::namespaced(
            self.ctx.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// The API of Deployments in the Deployment's namespace.
    pub(crate) fn d_api(&self, d: &Deployment) -> Api<Deployment> {
        Api::namespaced(
            self.ctx.client.clone(),
            d.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    /// The cached pods of the given ReplicaSets that still run (for Recreate).
    pub(crate) fn pods_running_for(&self, d: &Deployment, rs_uids: &[String]) -> bool {
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        self.ctx.pods.store().list_namespace(ns).iter().any(|p| {
            controller_of(&p.metadata).is_some_and(|r| rs_uids.contains(&r.uid))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
    }

    /// Queues the Deployment again after `after`.
    pub(crate) fn requeue_after(&self, d: &Deployment, after: Duration) {
        if let Some(k) = ObjectKey::of(d) {
            self.queue.add_after(k, after);
        }
    }
}
