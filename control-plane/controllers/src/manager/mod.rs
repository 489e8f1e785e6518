//! The controller manager: every controller, run while this instance leads (see
//! [`crate::leader`]). Controllers share informers (one cache per resource) through
//! [`Context`], and each has its own [`queue::Queue`] of keys and workers.
//!
//! Adding a controller: write a module with a `start(&Arc<Context>)` returning its tasks
//! (register handlers on the context's informers, then return the workers), and add it to
//! [`CONTROLLERS`]. A resource the new controller reads gets a field in [`Context`] (and a line
//! in [`Context::informer_tasks`]), so every controller reading it shares the one cache.
//!
//! | module | job |
//! |---|---|
//! | [`store`], [`informer`] | shared caches fed by list+watch, change handlers |
//! | [`queue`] | the de-duplicating, rate-limited work queue |
//! | [`expectations`] | what a controller asked for and has not seen yet |
//! | [`claim`], [`selector`] | controller references: adopt and release; label selectors |
//! | [`replicaset`] | pods to match each ReplicaSet's replicas |
//! | [`deployment`] | ReplicaSets for each Deployment's rollout |
//! | [`gc`] | the garbage collector: dependents follow their owners |
//! | [`node_lifecycle`] | node health from Leases, condition taints, taint-based eviction |
//! | [`job`] | pods run to completion for each Job; finished Jobs' TTL |
//! | [`cronjob`], [`cron`] | Jobs created on each CronJob's schedule |
//! | [`daemonset`] | one pod per eligible node for each DaemonSet |
//! | [`statefulset`] | ordered pods with stable names and claims for each StatefulSet |
//! | [`history`] | ControllerRevisions shared by DaemonSets and StatefulSets |
//! | [`serviceaccounts`] | a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every namespace |
//! | [`endpoints`] | Endpoints and EndpointSlices of every Service with a selector |
//! | [`resourcequota`] (costs counted by `skiff_quota`) | each ResourceQuota's hard and used amounts |
//! | [`volume_binding`] | claims bound to matching volumes; volumes of deleted claims released |
//! | [`disruption`] | each PodDisruptionBudget's healthy, expected and allowed disruption counts |

pub mod claim;
pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod informer;
pub mod job;
pub mod node_lifecycle;
pub mod podutil;
pub mod queue;
pub mod replicaset;
pub mod resourcequota;
pub mod selector;
pub mod serviceaccounts;
pub mod statefulset;
pub mod store;
pub mod volume_binding;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints, Node, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use tokio::task::JoinSet;

use informer::{Informer, MetaSource};
use queue::Queue;

/// Why one sync of one key failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// An object's selector cannot be evaluated.
    #[error(transparent)]
    Selector(#[from] selector::InvalidSelector),
    /// An object is not usable as it is (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// The caches are not current yet; trying again later will do.
    #[error("{0}")]
    Retry(String),
}

impl Error {
    /// Whether this is the API's 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 404)
    }

    /// Whether this is the API's 409 (a stale resourceVersion or a name taken).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api(kube::Error::Api(s)) if s.code == 409)
    }
}

/// Whether a kube error is the API's 404.
pub fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a kube error is the API's 409.
pub fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// What controllers share: the client and the informers (one cache per resource).
pub struct Context {
    /// The API client (the admin's credentials in `skiff init`).
    pub client: kube::Client,
    /// Every pod, trimmed ([`informer::trim_pod`]).
    pub pods: Arc<Informer<Pod>>,
    /// Every ReplicaSet.
    pub replicasets: Arc<Informer<ReplicaSet>>,
    /// Every Deployment.
    pub deployments: Arc<Informer<Deployment>>,
    /// Every Job.
    pub jobs: Arc<Informer<Job>>,
    /// Every CronJob.
    pub cronjobs: Arc<Informer<CronJob>>,
    /// Every DaemonSet.
    pub daemonsets: Arc<Informer<DaemonSet>>,
    /// Every StatefulSet.
    pub statefulsets: Arc<Informer<StatefulSet>>,
    /// Every ControllerRevision (DaemonSet and StatefulSet history).
    pub controllerrevisions: Arc<Informer<ControllerRevision>>,
    /// Every Node.
    pub nodes: Arc<Informer<Node>>,
    /// Every Service.
    pub services: Arc<Informer<Service>>,
    /// Every Endpoints object.
    pub endpoints: Arc<Informer<Endpoints>>,
    /// Every EndpointSlice.
    pub endpointslices: Arc<Informer<EndpointSlice>>,
    /// Every ResourceQuota.
    pub resourcequotas: Arc<Informer<ResourceQuota>>,
    /// Every PersistentVolume.
    pub persistentvolumes: Arc<Informer<PersistentVolume>>,
    /// Every PersistentVolumeClaim.
    pub persistentvolumeclaims: Arc<Informer<PersistentVolumeClaim>>,
    /// Every PodDisruptionBudget.
    pub poddisruptionbudgets: Arc<Informer<PodDisruptionBudget>>,
}

impl Context {
    /// Informers for `client`, not yet running.
    pub fn new(client: kube::Client) -> Context {
        Context {
            client,
            pods: Informer::new("pods", informer::trim_pod),
            replicasets: Informer::new("replicasets", informer::trim_object),
            deployments: Informer::new("deployments", informer::trim_object),
            jobs: Informer::new("jobs", informer::trim_object),
            cronjobs: Informer::new("cronjobs", informer::trim_object),
            daemonsets: Informer::new("daemonsets", informer::trim_object),
            statefulsets: Informer::new("statefulsets", informer::trim_object),
            controllerrevisions: Informer::new("controllerrevisions", informer::trim_object),
            nodes: Informer::new("nodes", informer::trim_object),
            services: Informer::new("services", informer::trim_object),
            endpoints: Informer::new("endpoints", informer::trim_object),
            endpointslices: Informer::new("endpointslices", informer::trim_object),
            resourcequotas: Informer::new("resourcequotas", informer::trim_object),
            persistentvolumes: Informer::new("persistentvolumes", informer::trim_object),
            persistentvolumeclaims: Informer::new("persistentvolumeclaims", informer::trim_object),
            poddisruptionbudgets: Informer::new("poddisruptionbudgets", informer::trim_object),
        }
    }

    /// The list+watch loops of the shared informers.
    fn informer_tasks(&self) -> Vec<BoxFuture<'static, ()>> {
        vec![
            Box::pin(self.pods.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.replicasets.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.deployments.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.jobs.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.cronjobs.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.daemonsets.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.statefulsets.clone().run(Api::all(self.client.clone()))),
            Box::pin(
                self.controllerrevisions
                    .clone()
                    .run(Api::all(self.client.clone())),
            ),
            Box::pin(self.nodes.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.services.clone().run(Api::all(self.client.clone()))),
            Box::pin(self.endpoints.clone().run(Api::all(self.client.clone()))),
            Box::pin(
                self.endpointslices
                    .clone()
                    .run(Api::all(self.client.clone())),
            ),
            Box::pin(
                self.resourcequotas
                    .clone()
                    .run(Api::all(self.client.clone())),
            ),
            Box::pin(
                self.persistentvolumes
                    .clone()
                    .run(Api::all(self.client.clone())),
            ),
            Box::pin(
                self.persistentvolumeclaims
                    .clone()
                    .run(Api::all(self.client.clone())),
            ),
            Box::pin(
                self.poddisruptionbudgets
                    .clone()
                    .run(Api::all(self.client.clone())),
            ),
        ]
    }

    /// The shared informer of `group`/`kind`, for the garbage collector, which follows the
    /// metadata of every kind and should not cache a second copy of those already cached.
    pub fn meta_source(&self, group: &str, kind: &str) -> Option<Arc<dyn MetaSource>> {
        match (group, kind) {
            ("", "Pod") => Some(self.pods.clone()),
            ("apps", "ReplicaSet") => Some(self.replicasets.clone()),
            ("apps", "Deployment") => Some(self.deployments.clone()),
            ("batch", "Job") => Some(self.jobs.clone()),
            ("batch", "CronJob") => Some(self.cronjobs.clone()),
            ("apps", "DaemonSet") => Some(self.daemonsets.clone()),
            ("apps", "StatefulSet") => Some(self.statefulsets.clone()),
            ("apps", "ControllerRevision") => Some(self.controllerrevisions.clone()),
            ("", "Node") => Some(self.nodes.clone()),
            ("", "Service") => Some(self.services.clone()),
            ("discovery.k8s.io", "EndpointSlice") => Some(self.endpointslices.clone()),
            ("", "PersistentVolumeClaim") => Some(self.persistentvolumeclaims.clone()),
            _ => None,
        }
    }
}

/// Starts a controller: registers its handlers on the context's informers and returns its
/// tasks (workers, resyncs, its own informers).
pub type Start = fn(&Arc<Context>) -> Vec<BoxFuture<'static, ()>>;

/// The controllers this manager runs, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", replicaset::start),
    ("deployment", deployment::start),
    ("garbage-collector", gc::start),
    ("node-lifecycle", node_lifecycle::start),
    ("job", job::start),
    ("cronjob", cronjob::start),
    ("daemonset", daemonset::start),
    ("statefulset", statefulset::start),
    ("serviceaccount", serviceaccounts::start),
    ("endpoint", endpoints::subsets::start),
    ("endpointslice", endpoints::slices::start),
    ("resourcequota", resourcequota::start),
    ("persistentvolume-binder", volume_binding::start),
    ("disruption", disruption::start),
];

/// Runs every controller while this instance leads; see [`crate::leader`]. Dropping the
/// future (leadership lost) stops every task it started.
pub async fn run(client: kube::Client) {
    let ctx = Arc::new(Context::new(client));
    let mut tasks = JoinSet::new();
    for (name, start) in CONTROLLERS {
        tracing::info!(controller = name, "starting");
        for task in start(&ctx) {
            tasks.spawn(task);
        }
    }
    for task in ctx.informer_tasks() {
        tasks.spawn(task);
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!("a controller task ended: {e}");
        }
    }
}

/// Runs `workers` workers taking keys from `queue` and calling `sync` on each: a failure puts
/// the key back with backoff, a success forgets its failures.
pub fn workers<T, F, Fut>(
    name: &'static str,
    queue: Queue<T>,
    workers: usize,
    sync: F,
) -> Vec<BoxFuture<'static, ()>>
where
    T: Clone + Eq + std::hash::Hash + Ord + std::fmt::Display + Send + Sync + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    (0..workers)
        .map(|_| {
            let queue = queue.clone();
            let sync = sync.clone();
            let task: BoxFuture<'static, ()> = Box::pin(async move {
                while let Some(key) = queue.get().await {
                    match sync(key.clone()).await {
                        Ok(()) => queue.forget(&key),
                        Err(e) => {
                            let retries = queue.retries(&key);
                            if retries < 5 || e.is_conflict() {
                                tracing::debug!(controller = name, %key, "sync failed: {e}");
                            } else {
                                tracing::warn!(controller = name, %key, retries, "sync failed: {e}");
                            }
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            });
            task
        })
        .collect()
}

/// Every `period`, queues every key `keys` returns: heals keys dropped by a full queue and
/// re-checks time-based conditions upstream's resync would.
pub fn resync<T, F>(queue: Queue<T>, period: Duration, keys: F) -> BoxFuture<'static, ()>
where
    T: Clone + Eq + std::hash::Hash + Ord + std::fmt::Display + Send + 'static,
    F: Fn() -> Vec<T> + Send + 'static,
{
    Box::pin(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            for k in keys() {
                queue.add(k);
            }
        }
    })
}
