//! Shared informers: one list+watch per resource (kube-runtime's `watcher`, which relists
//! after a 410 and backs off on errors) feeding one [`Store`], and the change handlers every
//! controller registers on it. Controllers share informers through the manager's context, so
//! 30,000 pods are cached once, not once per controller. Objects are trimmed before caching
//! (managedFields and the last-applied annotation go; pods lose what no controller reads).

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::store::{ObjectKey, Store};

/// Most objects one informer caches; beyond it new objects are left out (and logged), so a
/// runaway creator cannot exhaust the control plane's memory.
pub const MAX_OBJECTS: usize = 1_000_000;

/// One change the informer applied to its store.
pub enum Change<'a, K> {
    /// A new object.
    Added(&'a Arc<K>),
    /// An object changed (or was seen again after a relist).
    Updated {
        /// The cached state before.
        old: &'a Arc<K>,
        /// The cached state now.
        new: &'a Arc<K>,
    },
    /// An object is gone; its last cached state.
    Deleted(&'a Arc<K>),
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// A change reduced to metadata, for consumers that track any kind (the garbage collector).
pub type MetaHandler = Box<dyn Fn(Option<&ObjectMeta>, Option<&ObjectMeta>) + Send + Sync>;

/// The cache and handlers of one resource.
pub struct Informer<K> {
    name: String,
    store: Store<K>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
    trim: fn(&mut K),
}

/// Drops what no controller reads from an object's metadata.
pub fn trim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    shrink(&mut meta.owner_references);
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Gives back a decoded list's spare capacity: a decoder grows a list to four entries for its
/// first (a container status takes 752 bytes), and a cache keeps it for as long as the object.
fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(v) = list.as_mut() {
        v.shrink_to_fit();
    }
}

/// Trims any typed object's metadata.
pub fn trim_object<K: Resource>(obj: &mut K) {
    trim_meta(obj.meta_mut());
}

/// Trims a pod to what the controllers read: metadata, node, phase, conditions, restart counts,
/// container names, images, ports and resources (environment, commands, mounts, probes and
/// volumes go).
pub fn trim_pod(pod: &mut Pod) {
    trim_meta(&mut pod.metadata);
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.env = None;
            c.env_from = None;
            c.command = None;
            c.args = None;
            c.volume_mounts = None;
            c.liveness_probe = None;
            c.readiness_probe = None;
            c.startup_probe = None;
            c.lifecycle = None;
        }
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.shrink_to_fit();
        shrink(&mut spec.init_containers);
        shrink(&mut spec.tolerations);
    }
    if let Some(status) = pod.status.as_mut() {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
        shrink(&mut status.pod_ips);
        shrink(&mut status.host_ips);
        for cs in status
            .container_statuses
            .iter_mut()
            .flatten()
            .chain(status.init_container_statuses.iter_mut().flatten())
        {
            cs.image_id = String::new();
            cs.last_state = None;
        }
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// A new, empty informer; `name` names it in logs, `trim` shrinks each object before it is
    /// cached.
    pub fn new(name: &str, trim: fn(&mut K)) -> Arc<Informer<K>> {
        Arc::new(Informer {
            name: name.to_string(),
            store: Store::default(),
            handlers: RwLock::new(Vec::new()),
            synced: watch::channel(false).0,
            trim,
        })
    }

    /// The cache, for reads.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Calls `handler` for every change from now on (register before [`Informer::run`] to see
    /// the initial list too). Handlers run on the informer's task: they must only enqueue.
    pub fn on_change(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(handler));
    }

    /// Waits until the first complete list is cached.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether the first complete list is cached.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn emit(&self, change: Change<'_, K>) {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        for h in handlers.iter() {
            h(&change);
        }
    }

    fn apply(&self, mut obj: K) -> Option<ObjectKey> {
        (self.trim)(&mut obj);
        let key = ObjectKey::of(&obj)?;
        let new = Arc::new(obj);
        if self.store.len() >= MAX_OBJECTS && self.store.get(&key).is_none() {
            tracing::warn!(informer = %self.name, %key, "cache full; object left out");
            return Some(key);
        }
        match self.store.insert(key.clone(), new.clone()) {
            Some(old) => self.emit(Change::Updated {
                old: &old,
                new: &new,
            }),
            None => self.emit(Change::Added(&new)),
        }
        Some(key)
    }

    fn delete(&self, key: &ObjectKey) {
        if let Some(old) = self.store.remove(key) {
            self.emit(Change::Deleted(&old));
        }
    }

    /// Lists and watches `api` forever, keeping the store current and calling the handlers.
    pub async fn run(self: Arc<Self>, api: Api<K>) {
        let config = watcher::Config::default().page_size(500);
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        // Keys seen during a relist; the others are gone once it completes.
        let mut relist: Option<HashSet<ObjectKey>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(obj)) => {
                    self.apply(obj);
                }
                Ok(Event::Delete(obj)) => {
                    if let Some(key) = ObjectKey::of(&obj) {
                        self.delete(&key);
                    }
                }
                Ok(Event::Init) => relist = Some(HashSet::new()),
                Ok(Event::InitApply(obj)) => {
                    if let (Some(key), Some(seen)) = (self.apply(obj), relist.as_mut()) {
                        seen.insert(key);
                    }
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        for key in self.store.keys() {
                            if !seen.contains(&key) {
                                self.delete(&key);
                            }
                        }
                    }
                    if !self.has_synced() {
                        tracing::debug!(informer = %self.name, objects = self.store.len(), "synced");
                    }
                    self.synced.send_replace(true);
                }
                Err(e) => tracing::debug!(informer = %self.name, "watch: {e}"),
            }
        }
    }
}

/// Anything the garbage collector can follow: the metadata of one resource's objects.
pub trait MetaSource: Send + Sync {
    /// Calls `handler(old, new)` for every change (`new` is `None` once deleted).
    fn on_meta_change(&self, handler: MetaHandler);
    /// Waits until the first complete list is cached.
    fn synced(&self) -> BoxFuture<'_, ()>;
}

impl<K> MetaSource for Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn on_meta_change(&self, handler: MetaHandler) {
        self.on_change(move |c| match c {
            Change::Added(o) => handler(None, Some(o.meta())),
            Change::Updated { old, new } => handler(Some(old.meta()), Some(new.meta())),
            Change::Deleted(o) => handler(Some(o.meta()), None),
        });
    }

    fn synced(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.wait_synced())
    }
}
