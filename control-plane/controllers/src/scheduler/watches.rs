//! Watches of the objects the scheduler reads (Nodes, Pods, Namespaces, PriorityClasses,
//! PodDisruptionBudgets),
//! turned into inputs of the decision loop. A restarted watch relists; the loop is told when
//! a relist starts and ends, so it can drop what vanished meanwhile.

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// A change to one kind of object.
#[derive(Debug)]
pub enum Change<K> {
    /// Added or modified.
    Apply(K),
    /// Deleted.
    Delete(K),
    /// A (re)list begins: objects not applied before [`Change::Listed`] are gone.
    Relist,
    /// The (re)list is complete.
    Listed,
}

/// Everything the decision loop hears from the API.
#[derive(Debug)]
pub enum Input {
    /// A Node changed.
    Node(Box<Change<Node>>),
    /// A Pod changed.
    Pod(Box<Change<Pod>>),
    /// A Namespace changed (labels for affinity namespace selectors).
    Namespace(Box<Change<Namespace>>),
    /// A PriorityClass changed.
    PriorityClass(Box<Change<PriorityClass>>),
    /// A PodDisruptionBudget changed (preemption weighs them).
    Budget(Box<Change<PodDisruptionBudget>>),
}

/// Watches one kind until the loop hangs up. Each object is trimmed by `trim` as it arrives,
/// before it waits in the loop's queue, so queued and cached objects carry no managedFields or
/// other fields the scheduler never reads.
pub async fn watch<K>(
    api: Api<K>,
    tx: mpsc::Sender<Input>,
    trim: fn(&mut K),
    wrap: fn(Change<K>) -> Input,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = K::kind(&());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(Event::Apply(mut k)) | Ok(Event::InitApply(mut k)) => {
                trim(&mut k);
                Change::Apply(k)
            }
            Ok(Event::Delete(mut k)) => {
                trim(&mut k);
                Change::Delete(k)
            }
            Ok(Event::Init) => Change::Relist,
            Ok(Event::InitDone) => Change::Listed,
            Err(e) => {
                tracing::warn!(%kind, "scheduler watch: {e}");
                continue;
            }
        };
        if tx.send(wrap(change)).await.is_err() {
            return;
        }
    }
}
