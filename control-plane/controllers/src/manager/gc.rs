//! The garbage collector, as upstream's: a graph of ownerReferences over every resource that
//! can own or be owned, kept from the informers' metadata, and two queues acting on it.
//!
//! * attempt-to-delete: an object whose owners are all gone (verified by uid against the API
//!   when the graph does not know the owner) is deleted, in the background by default; an
//!   object with some owners still there loses only its references to the gone ones. An owner
//!   being deleted in the foreground (finalizer `foregroundDeletion`) has its dependents
//!   deleted, and loses the finalizer once no dependent with `blockOwnerDeletion` remains.
//! * attempt-to-orphan: an owner being deleted with finalizer `orphan` has its references
//!   removed from every dependent, then loses the finalizer.
//!
//! The API server turns `propagationPolicy` into those finalizers (`rest.rs`), and removes an
//! object being deleted once its last finalizer goes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;
use serde_json::json;
use tracing::Instrument;

use super::informer::{Informer, MetaSource};
use super::queue::Queue;
use super::{conflict, not_found, Context, Error};

/// The finalizer of a foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub const ORPHAN: &str = "orphan";
/// Most uids waiting in each queue.
const QUEUE_CAPACITY: usize = 1_000_000;
/// Workers deleting at once, and orphaning at once.
const DELETE_WORKERS: usize = 8;
const ORPHAN_WORKERS: usize = 2;

/// One resource the collector follows.
#[derive(Clone, Copy, Debug)]
pub struct Resource {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

const fn res(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        namespaced,
    }
}

/// What the collector follows: everything that can own or be owned, except Events (many,
/// never owners) and Namespaces (deleted with their contents by the API server).
pub const RESOURCES: &[Resource] = &[
    res("", "Pod", "pods", true),
    res("apps", "ReplicaSet", "replicasets", true),
    res("apps", "Deployment", "deployments", true),
    res("apps", "DaemonSet", "daemonsets", true),
    res("apps", "StatefulSet", "statefulsets", true),
    res("apps", "ControllerRevision", "controllerrevisions", true),
    res("batch", "Job", "jobs", true),
    res("batch", "CronJob", "cronjobs", true),
    res("discovery.k8s.io", "EndpointSlice", "endpointslices", true),
    res("", "Endpoints", "endpoints", true),
    res("", "Service", "services", true),
    res("", "PersistentVolumeClaim", "persistentvolumeclaims", true),
    res("", "ConfigMap", "configmaps", true),
    res("", "Secret", "secrets", true),
    res("", "ServiceAccount", "serviceaccounts", true),
    res("", "PodTemplate", "podtemplates", true),
    res("", "ResourceQuota", "resourcequotas", true),
    res("", "LimitRange", "limitranges", true),
    res("coordination.k8s.io", "Lease", "leases", true),
    res(
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    res("rbac.authorization.k8s.io", "Role", "roles", true),
    res(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    res(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    res(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    res("", "Node", "nodes", false),
    res("", "PersistentVolume", "persistentvolumes", false),
];

impl Resource {
    fn api_resource(&self) -> ApiResource {
        let api_version = if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version,
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The resource an ownerReference's apiVersion and kind name.
    fn of_reference(r: &OwnerReference) -> Option<&'static Resource> {
        let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        RESOURCES
            .iter()
            .find(|x| x.group == group && x.kind == r.kind)
    }
}

/// One object in the graph.
#[derive(Clone, Debug)]
struct Node {
    resource: &'static Resource,
    namespace: String,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    foreground: bool,
    orphan: bool,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner uid → dependents' uids (owners may not be in `nodes`).
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn unlink(&mut self, uid: &str, owners: &[OwnerReference]) {
        for o in owners {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
    }
}

/// The collector: its graph and queues.
pub struct GarbageCollector {
    client: kube::Client,
    graph: Mutex<Graph>,
    delete_queue: Queue<String>,
    orphan_queue: Queue<String>,
    sources: Vec<Arc<dyn MetaSource>>,
}

/// Drops everything the graph does not need from a GC-only informer's objects.
fn trim_dynamic(obj: &mut DynamicObject) {
    obj.data = serde_json::Value::Null;
    let m = &mut obj.metadata;
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        owner_references: m.owner_references.take(),
        finalizers: m.finalizers.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        ..Default::default()
    };
}

/// Builds the graph's sources (shared informers where they exist, metadata-only ones
/// otherwise) and returns the collector's tasks.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut sources: Vec<(&'static Resource, Arc<dyn MetaSource>)> = Vec::new();
    for r in RESOURCES {
        match ctx.meta_source(r.group, r.kind) {
            Some(s) => sources.push((r, s)),
            None => {
                let inf: Arc<Informer<DynamicObject>> = Informer::new(r.plural, trim_dynamic);
                let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &r.api_resource());
                tasks.push(Box::pin(inf.clone().run(api)));
                sources.push((r, inf));
            }
        }
    }
    let gc = Arc::new(GarbageCollector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        delete_queue: Queue::new("garbage-collector-delete", QUEUE_CAPACITY),
        orphan_queue: Queue::new("garbage-collector-orphan", QUEUE_CAPACITY),
        sources: sources.iter().map(|(_, s)| s.clone()).collect(),
    });
    for (r, s) in &sources {
        let weak = Arc::downgrade(&gc);
        let r: &'static Resource = r;
        s.on_meta_change(Box::new(move |old, new| {
            if let Some(gc) = weak.upgrade() {
                gc.observe(r, old, new);
            }
        }));
    }
    tasks.extend(super::workers(
        "garbage-collector",
        gc.delete_queue.clone(),
        DELETE_WORKERS,
        {
            let gc = gc.clone();
            move |uid| {
                let gc = gc.clone();
                async move { gc.attempt_to_delete(uid).await }
            }
        },
    ));
    tasks.extend(super::workers(
        "garbage-collector-orphan",
        gc.orphan_queue.clone(),
        ORPHAN_WORKERS,
        {
            let gc = gc.clone();
            move |uid| {
                let gc = gc.clone();
                async move { gc.attempt_to_orphan(uid).await }
            }
        },
    ));
    tasks
}

fn has(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

impl GarbageCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the graph current with one change and queues what it may affect.
    fn observe(&self, r: &'static Resource, old: Option<&ObjectMeta>, new: Option<&ObjectMeta>) {
        let mut to_delete: Vec<String> = Vec::new();
        let mut to_orphan: Vec<String> = Vec::new();
        {
            let mut g = self.lock();
            match new {
                Some(meta) => {
                    let Some(uid) = meta.uid.clone() else { return };
                    let owners = meta.owner_references.clone().unwrap_or_default();
                    let node = Node {
                        resource: r,
                        namespace: meta.namespace.clone().unwrap_or_default(),
                        name: meta.name.clone().unwrap_or_default(),
                        owners: owners.clone(),
                        deleting: meta.deletion_timestamp.is_some(),
                        foreground: has(meta, FOREGROUND),
                        orphan: has(meta, ORPHAN),
                    };
                    let previous = g.nodes.insert(uid.clone(), node.clone());
                    if let Some(prev) = &previous {
                        // References dropped: their owners may be waiting on this dependent.
                        for o in &prev.owners {
                            if !owners.iter().any(|n| n.uid == o.uid) {
                                to_delete.push(o.uid.clone());
                            }
                        }
                        g.unlink(&uid, &prev.owners);
                    } else if let Some(old) =
                        old.and_then(|o| o.uid.as_deref()).filter(|o| *o != uid)
                    {
                        // Same name, new object: the old one is gone.
                        if let Some(gone) = g.nodes.remove(old) {
                            g.unlink(old, &gone.owners);
                        }
                    }
                    for o in &owners {
                        g.dependents
                            .entry(o.uid.clone())
                            .or_default()
                            .insert(uid.clone());
                        match g.nodes.get(&o.uid) {
                            None => to_delete.push(uid.clone()),
                            Some(owner) if owner.deleting && owner.foreground => {
                                to_delete.push(uid.clone())
                            }
                            Some(_) => {}
                        }
                    }
                    if node.deleting && node.orphan {
                        to_orphan.push(uid.clone());
                    }
                    if node.deleting && node.foreground {
                        to_delete.push(uid.clone());
                        to_delete.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                    }
                }
                None => {
                    let Some(uid) = old.and_then(|o| o.uid.clone()) else {
                        return;
                    };
                    if let Some(gone) = g.nodes.remove(&uid) {
                        g.unlink(&uid, &gone.owners);
                        // Owners waiting for their dependents look again.
                        to_delete.extend(gone.owners.iter().map(|o| o.uid.clone()));
                    }
                    // Dependents of a gone owner may be garbage now.
                    to_delete.extend(g.dependents.get(&uid).into_iter().flatten().cloned());
                }
            }
        }
        for uid in to_delete {
            self.delete_queue.add(uid);
        }
        for uid in to_orphan {
            self.orphan_queue.add(uid);
        }
    }

    async fn wait_synced(&self) {
        for s in &self.sources {
            s.synced().await;
        }
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.lock().nodes.get(uid).cloned()
    }

    fn dependents(&self, uid: &str) -> Vec<(String, Node)> {
        let g = self.lock();
        g.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| g.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }

    fn api(&self, r: &Resource, namespace: &str) -> Api<DynamicObject> {
        let ar = r.api_resource();
        if r.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        }
    }

    async fn attempt_to_delete(&self, uid: String) -> Result<(), Error> {
        self.wait_synced().await;
        let Some(item) = self.node(&uid) else {
            return Ok(());
        };
        let span = tracing::debug_span!("gc", kind = item.resource.kind, namespace = %item.namespace, name = %item.name);
        self.delete_item(&uid, item).instrument(span).await
    }

    /// Whether an owner exists (`Some(waiting for dependents)`) or is gone (`None`).
    async fn owner_state(&self, item: &Node, r: &OwnerReference) -> Result<Option<bool>, Error> {
        if let Some(owner) = self.node(&r.uid) {
            return Ok(Some(owner.deleting && owner.foreground));
        }
        let Some(res) = Resource::of_reference(r) else {
            // A kind the collector does not follow: never assume it gone.
            return Ok(Some(false));
        };
        if res.namespaced && item.namespace.is_empty() {
            // A cluster-scoped object cannot be owned by a namespaced one.
            return Ok(Some(false));
        }
        match self.api(res, &item.namespace).get_opt(&r.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some(
                o.metadata.deletion_timestamp.is_some() && has(&o.metadata, FOREGROUND),
            )),
            _ => Ok(None),
        }
    }

    async fn delete_item(&self, uid: &str, item: Node) -> Result<(), Error> {
        if item.deleting {
            if item.foreground {
                return self.process_deleting_dependents(uid, &item).await;
            }
            return Ok(());
        }
        if item.owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &item.owners {
            match self.owner_state(&item, r).await? {
                None => dangling.push(r.uid.clone()),
                Some(true) => waiting.push(r.uid.clone()),
                Some(false) => solid.push(r.uid.clone()),
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Still owned: only the references to gone (or going) owners go.
            let refs: Vec<_> = dangling
                .iter()
                .chain(&waiting)
                .map(|u| json!({"$patch": "delete", "uid": u}))
                .collect();
            tracing::debug!(
                ?dangling,
                ?waiting,
                "removing references to owners that are going"
            );
            let patch = json!({"metadata": {"ownerReferences": refs, "uid": uid}});
            return self.patch(&item, &Patch::Strategic(patch)).await;
        }
        let policy = if !waiting.is_empty() && !self.dependents(uid).is_empty() {
            // Its owner waits for it, and it has dependents of its own: they go first.
            PropagationPolicy::Foreground
        } else if item.orphan {
            PropagationPolicy::Orphan
        } else if item.foreground {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::debug!(?policy, "deleting: every owner is gone");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self
            .api(item.resource, &item.namespace)
            .delete(&item.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) || conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A foreground deletion: dependents go first, then the finalizer.
    async fn process_deleting_dependents(&self, uid: &str, item: &Node) -> Result<(), Error> {
        let blocking: Vec<(String, Node)> = self
            .dependents(uid)
            .into_iter()
            .filter(|(_, d)| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
            })
            .collect();
        if blocking.is_empty() {
            tracing::debug!(
                "no blocking dependents left; removing the foregroundDeletion finalizer"
            );
            return self.remove_finalizer(item, FOREGROUND).await;
        }
        for (dep, node) in blocking {
            if !node.deleting {
                self.delete_queue.add(dep);
            }
        }
        Ok(())
    }

    async fn attempt_to_orphan(&self, uid: String) -> Result<(), Error> {
        self.wait_synced().await;
        let Some(item) = self.node(&uid) else {
            return Ok(());
        };
        if !(item.deleting && item.orphan) {
            return Ok(());
        }
        let span = tracing::debug_span!("gc-orphan", kind = item.resource.kind, namespace = %item.namespace, name = %item.name);
        async {
            for (dep_uid, dep) in self.dependents(&uid) {
                let patch = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": uid}],
                    "uid": dep_uid,
                }});
                self.patch(&dep, &Patch::Strategic(patch)).await?;
            }
            self.remove_finalizer(&item, ORPHAN).await
        }
        .instrument(span)
        .await
    }

    async fn patch(&self, item: &Node, patch: &Patch<serde_json::Value>) -> Result<(), Error> {
        match self
            .api(item.resource, &item.namespace)
            .patch(&item.name, &PatchParams::default(), patch)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `finalizer` from the live object (read fresh; retried on conflicts).
    async fn remove_finalizer(&self, item: &Node, finalizer: &str) -> Result<(), Error> {
        let api = self.api(item.resource, &item.namespace);
        for _ in 0..3 {
            let Some(live) = api.get_opt(&item.name).await? else {
                return Ok(());
            };
            let finalizers: Vec<String> = live
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != finalizer)
                .collect();
            if finalizers.len() == live.metadata.finalizers.as_ref().map_or(0, Vec::len) {
                return Ok(());
            }
            let patch = json!({"metadata": {
                "finalizers": finalizers,
                "resourceVersion": live.metadata.resource_version,
            }});
            match api
                .patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) if conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Retry(format!(
            "removing finalizer {finalizer}: conflicts"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_references_resolve_to_followed_resources() {
        let r = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "x".into(),
            uid: "u".into(),
            ..Default::default()
        };
        assert_eq!(
            Resource::of_reference(&r).map(|r| r.plural),
            Some("replicasets")
        );
        let r = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            ..r
        };
        assert!(Resource::of_reference(&r).is_some_and(|r| !r.namespaced));
        let r = OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            ..r
        };
        assert!(Resource::of_reference(&r).is_none());
    }

    #[test]
    fn graph_objects_keep_only_what_the_graph_reads() {
        let mut o = DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some([("a".to_string(), "b".to_string())].into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            data: json!({"spec": {"big": "x"}}),
        };
        trim_dynamic(&mut o);
        assert!(o.metadata.labels.is_none());
        assert_eq!(o.metadata.uid.as_deref(), Some("u"));
        assert!(o.data.is_null());
    }
}
