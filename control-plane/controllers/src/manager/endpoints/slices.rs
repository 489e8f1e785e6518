//! The EndpointSlice controller, as upstream's (simplified reconciler): for every Service with
//! a selector, discovery.k8s.io/v1 EndpointSlices (`<svc>-<5 random>`, labelled with the
//! Service's name and `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`,
//! owned by the Service) holding one endpoint per selected pod with an IPv4 address on a known
//! node: ready/serving/terminating conditions, node, zone, hostname and pod reference. Pods are
//! grouped by the ports they offer, at most 100 to a slice; endpoints stay in the slice they
//! are in, new ones fill existing slices before new slices are made, emptied slices go, and a
//! Service without endpoints keeps one empty placeholder slice.
//!
//! The slice cache may lag behind this controller's own writes; a Service whose last writes
//! are not cached yet waits, so slices are never made twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use tokio::time::Instant;
use tracing::Instrument;

use super::super::informer::Change;
use super::super::queue::Queue;
use super::super::store::ObjectKey;
use super::super::{Context, Error};
use super::{
    backends, endpoint_labels, selector_of, target_ref, Backend, ResolvedPort,
    TRIGGER_TIME_ANNOTATION,
};

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Most endpoints in one slice, as upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The zone label of nodes.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Most Services waiting in the queue.
const QUEUE_CAPACITY: usize = 200_000;
/// Workers syncing Services at once.
const WORKERS: usize = 4;
/// How often every Service is looked at again regardless of events.
const RESYNC: Duration = Duration::from_secs(300);
/// How long the controller waits for its own writes to reach the cache before trusting it
/// anyway (a write the cache never shows, e.g. a full cache).
const STALE_AFTER: Duration = Duration::from_secs(30);

/// What one sync wrote for a Service and has not seen cached yet: slice name → the
/// resourceVersion written, or `None` for a deletion.
struct Pending {
    writes: HashMap<String, Option<u64>>,
    since: Instant,
}

/// The controller's state: queue and the writes not yet cached.
pub struct EndpointSliceController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let c = Arc::new(EndpointSliceController {
        ctx: ctx.clone(),
        queue: Queue::new("endpointslice", QUEUE_CAPACITY),
        pending: Mutex::new(HashMap::new()),
    });
    super::enqueue_on_changes(ctx, &c.queue);
    let q = c.queue.clone();
    ctx.endpointslices.on_change(move |change| {
        let slice = match change {
            Change::Added(s) | Change::Deleted(s) | Change::Updated { new: s, .. } => s,
        };
        if let Some(k) = service_of(slice) {
            q.add(k);
        }
    });
    // A node appearing, going, or changing zone changes which endpoints are published.
    let (q, services) = (c.queue.clone(), ctx.services.store().clone());
    ctx.nodes.on_change(move |change| {
        let relevant = match change {
            Change::Added(_) | Change::Deleted(_) => true,
            Change::Updated { old, new } => {
                let zone = |n: &k8s_openapi::api::core::v1::Node| {
                    n.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(ZONE_LABEL).cloned())
                };
                zone(old) != zone(new)
            }
        };
        if relevant {
            for svc in services.list() {
                if selector_of(&svc).is_some() {
                    if let Some(k) = ObjectKey::of(svc.as_ref()) {
                        q.add(k);
                    }
                }
            }
        }
    });
    let store = ctx.services.store().clone();
    let resync = super::super::resync(c.queue.clone(), RESYNC, move || store.keys());
    let mut all = super::super::workers("endpointslice", c.queue.clone(), WORKERS, move |key| {
        let c = c.clone();
        async move { c.sync(key).await }
    });
    all.push(resync);
    all
}

/// The Service a slice of this controller belongs to.
fn service_of(slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let name = labels.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(slice.metadata.namespace.as_deref()?, name))
}

/// A slice's port set, in the form endpoints are grouped by.
fn ports_key(ports: Option<&Vec<EndpointPort>>) -> Vec<ResolvedPort> {
    let mut key: Vec<ResolvedPort> = ports
        .into_iter()
        .flatten()
        .map(|p| ResolvedPort {
            name: p.name.clone().unwrap_or_default(),
            port: p.port.unwrap_or(0),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    key.sort();
    key
}

fn slice_ports(key: &[ResolvedPort]) -> Vec<EndpointPort> {
    key.iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone()),
            port: Some(p.port),
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        })
        .collect()
}

/// The endpoint a backend becomes (`zone` from its node's label).
pub fn endpoint_of(svc: &Service, b: &Backend, zone: Option<String>) -> Endpoint {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    // `b.ready` already includes publishNotReadyAddresses.
    let serving = b.ready;
    let ready = publish || (serving && !b.terminating);
    Endpoint {
        addresses: vec![b.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(b.terminating),
        }),
        hostname: b.hostname.clone(),
        node_name: b.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(target_ref(&b.pod)),
        zone,
        ..Default::default()
    }
}

/// The writes that bring a Service's slices to the desired endpoints.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices (named by generateName).
    pub create: Vec<EndpointSlice>,
    /// Changed slices, with the resourceVersion they were read at.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete, by name.
    pub delete: Vec<String>,
}

fn controller_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = endpoint_labels(svc);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

fn new_slice(svc: &Service, key: &[ResolvedPort], endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                svc.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![controller_ref(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(slice_ports(key)),
    }
}

fn ip_of(e: &Endpoint) -> Option<&String> {
    e.addresses.first()
}

/// Plans the writes that turn `existing` (the slices labelled for `svc`) into slices holding
/// `desired` (port set → endpoints), moving as few endpoints as possible.
pub fn plan(
    svc: &Service,
    desired: &BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>>,
    existing: &[Arc<EndpointSlice>],
) -> Plan {
    let mut out = Plan::default();
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let labels = slice_labels(svc);
    let owners = Some(vec![controller_ref(svc)]);
    let mut existing: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    // Slices of another address type, or of an earlier Service of the same name, go.
    let (owned, foreign): (Vec<_>, Vec<_>) = existing.into_iter().partition(|s| {
        s.address_type == "IPv4"
            && s.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
    });
    out.delete
        .extend(foreign.iter().filter_map(|s| s.metadata.name.clone()));
    let finish = |out: &mut Plan, original: &EndpointSlice, mut slice: EndpointSlice| {
        slice.metadata.labels = Some(labels.clone());
        slice.metadata.owner_references = owners.clone();
        let same = slice.endpoints == original.endpoints
            && slice.ports.clone().unwrap_or_default()
                == original.ports.clone().unwrap_or_default()
            && slice.metadata.labels == original.metadata.labels
            && slice.metadata.owner_references == original.metadata.owner_references;
        if !same {
            out.update.push(slice);
        }
    };
    if desired.is_empty() {
        // One empty placeholder slice stands for "no endpoints".
        let mut owned = owned.into_iter();
        match owned.next() {
            Some(first) => {
                let mut slice = (**first).clone();
                slice.endpoints = Vec::new();
                slice.ports = Some(Vec::new());
                finish(&mut out, first, slice);
            }
            None => out.create.push(new_slice(svc, &[], Vec::new())),
        }
        out.delete
            .extend(owned.filter_map(|s| s.metadata.name.clone()));
        return out;
    }
    // Keep each still-desired endpoint where it is, refreshed.
    let wanted: HashMap<(&Vec<ResolvedPort>, &String), &Endpoint> = desired
        .iter()
        .flat_map(|(k, eps)| eps.iter().filter_map(move |e| Some(((k, ip_of(e)?), e))))
        .collect();
    let mut placed: HashSet<(Vec<ResolvedPort>, String)> = HashSet::new();
    let mut kept: Vec<(Vec<ResolvedPort>, &Arc<EndpointSlice>, EndpointSlice)> = Vec::new();
    for s in owned {
        let key = ports_key(s.ports.as_ref());
        if !desired.contains_key(&key) {
            out.delete.extend(s.metadata.name.clone());
            continue;
        }
        let mut slice = (**s).clone();
        slice.endpoints = s
            .endpoints
            .iter()
            .filter_map(|e| {
                let ip = ip_of(e)?;
                let fresh = wanted.get(&(&key, ip))?;
                placed
                    .insert((key.clone(), ip.clone()))
                    .then(|| (*fresh).clone())
            })
            .collect();
        slice.endpoints.truncate(MAX_ENDPOINTS_PER_SLICE);
        kept.push((key, s, slice));
    }
    // Fill slices with room, then make new ones.
    for (key, eps) in desired {
        let mut unplaced = eps
            .iter()
            .filter(|e| ip_of(e).is_some_and(|ip| !placed.contains(&(key.clone(), ip.clone()))))
            .cloned();
        for (_, _, slice) in kept.iter_mut().filter(|(k, _, _)| k == key) {
            while slice.endpoints.len() < MAX_ENDPOINTS_PER_SLICE {
                match unplaced.next() {
                    Some(e) => slice.endpoints.push(e),
                    None => break,
                }
            }
        }
        let rest: Vec<Endpoint> = unplaced.collect();
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.create.push(new_slice(svc, key, chunk.to_vec()));
        }
    }
    for (_, original, slice) in kept {
        if slice.endpoints.is_empty() {
            out.delete.extend(original.metadata.name.clone());
        } else {
            finish(&mut out, original, slice);
        }
    }
    out
}

impl EndpointSliceController {
    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.services.wait_synced().await;
        self.ctx.pods.wait_synced().await;
        self.ctx.nodes.wait_synced().await;
        self.ctx.endpointslices.wait_synced().await;
        let span =
            tracing::debug_span!("endpointslices", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key).instrument(span).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the slice cache shows this controller's last writes for `key`.
    fn cache_current(&self, key: &ObjectKey) -> bool {
        let mut pending = self.lock();
        let Some(p) = pending.get(key) else {
            return true;
        };
        let store = self.ctx.endpointslices.store();
        let seen = p.writes.iter().all(|(name, rv)| {
            let cached = store.get_named(&key.namespace, name);
            match rv {
                None => cached.is_none(),
                Some(rv) => cached.is_some_and(|s| {
                    s.metadata
                        .resource_version
                        .as_deref()
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|v| v >= *rv)
                }),
            }
        });
        if seen || p.since.elapsed() > STALE_AFTER {
            pending.remove(key);
            return true;
        }
        false
    }

    /// The slices of this controller for `key`, from the cache.
    fn slices_of(&self, key: &ObjectKey) -> Vec<Arc<EndpointSlice>> {
        self.ctx
            .endpointslices
            .store()
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|s| service_of(s).as_ref() == Some(key))
            .collect()
    }

    async fn sync_one(&self, key: &ObjectKey) -> Result<(), Error> {
        if !self.cache_current(key) {
            return Err(Error::Retry(
                "waiting for the slice cache to show the last writes".into(),
            ));
        }
        let existing = self.slices_of(key);
        let svc = self.ctx.services.store().get(key);
        let svc = match svc {
            Some(s) if selector_of(&s).is_some() && s.metadata.deletion_timestamp.is_none() => s,
            // Gone or not selecting: the garbage collector removes owned slices of a deleted
            // Service; slices of a Service that stopped selecting are removed here.
            other => {
                if other.is_some() {
                    self.write(
                        key,
                        Plan {
                            delete: existing
                                .iter()
                                .filter_map(|s| s.metadata.name.clone())
                                .collect(),
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                return Ok(());
            }
        };
        let pods = self.ctx.pods.store().list_namespace(&key.namespace);
        let nodes = self.ctx.nodes.store();
        let mut desired: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
        let mut skipped = 0;
        for b in backends(&svc, &pods, true) {
            let node_name = b
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            // Upstream leaves out pods on nodes it does not know, and retries later.
            let Some(node) = nodes.get_named("", &node_name) else {
                skipped += 1;
                continue;
            };
            let zone = node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL).cloned());
            let mut ports = b.ports.clone();
            ports.sort();
            ports.dedup();
            desired
                .entry(ports)
                .or_default()
                .push(endpoint_of(&svc, &b, zone));
        }
        if skipped > 0 {
            tracing::debug!(skipped, "pods on unknown nodes left out");
        }
        let plan = plan(&svc, &desired, &existing);
        self.write(key, plan).await
    }

    /// Carries out `plan`, remembering what was written until the cache shows it.
    async fn write(&self, key: &ObjectKey, plan: Plan) -> Result<(), Error> {
        if plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty() {
            return Ok(());
        }
        tracing::debug!(
            create = plan.create.len(),
            update = plan.update.len(),
            delete = plan.delete.len(),
            "writing endpoint slices"
        );
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let mut writes: HashMap<String, Option<u64>> = HashMap::new();
        let rv = |s: &EndpointSlice| {
            s.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
        };
        let trigger = super::now_rfc3339();
        let mut result = Ok(());
        for mut s in plan.update {
            s.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(TRIGGER_TIME_ANNOTATION.into(), trigger.clone());
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.replace(&name, &PostParams::default(), &s).await {
                Ok(done) => {
                    writes.insert(name, rv(&done));
                }
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        if result.is_ok() {
            for mut s in plan.create {
                s.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(TRIGGER_TIME_ANNOTATION.into(), trigger.clone());
                match api.create(&PostParams::default(), &s).await {
                    Ok(done) => {
                        writes.insert(done.metadata.name.clone().unwrap_or_default(), rv(&done));
                    }
                    Err(e) => {
                        result = Err(e.into());
                        break;
                    }
                }
            }
        }
        if result.is_ok() {
            for name in plan.delete {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        writes.insert(name, None);
                    }
                    Err(e) if super::super::not_found(&e) => {
                        writes.insert(name, None);
                    }
                    Err(e) => {
                        result = Err(e.into());
                        break;
                    }
                }
            }
        }
        if !writes.is_empty() {
            self.lock().insert(
                key.clone(),
                Pending {
                    writes,
                    since: Instant::now(),
                },
            );
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pod, service};
    use super::*;
    use serde_json::json;

    fn desired_of(
        svc: &Service,
        n: usize,
        ready: bool,
    ) -> BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> {
        let pods: Vec<_> = (0..n)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.2.{}.{}", i / 250, i % 250 + 1),
                    ready,
                    json!({"app": "web"}),
                )
            })
            .collect();
        let mut desired: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
        for b in backends(svc, &pods, true) {
            desired
                .entry(b.ports.clone())
                .or_default()
                .push(endpoint_of(svc, &b, Some("z1".into())));
        }
        desired
    }

    fn applied(plan: &Plan, existing: &[Arc<EndpointSlice>]) -> Vec<Arc<EndpointSlice>> {
        let mut out: Vec<Arc<EndpointSlice>> = existing
            .iter()
            .filter(|s| {
                !plan
                    .delete
                    .contains(s.metadata.name.as_ref().unwrap_or(&String::new()))
            })
            .filter(|s| {
                !plan
                    .update
                    .iter()
                    .any(|u| u.metadata.name == s.metadata.name)
            })
            .cloned()
            .collect();
        out.extend(plan.update.iter().cloned().map(Arc::new));
        for (i, s) in plan.create.iter().enumerate() {
            let mut s = s.clone();
            s.metadata.name = Some(format!("web-new{i}-{}", out.len()));
            out.push(Arc::new(s));
        }
        out
    }

    #[test]
    fn endpoints_are_sliced_by_hundreds_with_conditions() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
        );
        let desired = desired_of(&svc, 250, true);
        let p = plan(&svc, &desired, &[]);
        assert_eq!(p.create.len(), 3);
        assert_eq!(
            p.create
                .iter()
                .map(|s| s.endpoints.len())
                .collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
        let s = &p.create[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(SERVICE_NAME_LABEL).map(String::as_str),
            Some("web")
        );
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(CONTROLLER_NAME)
        );
        assert_eq!(
            s.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].uid.as_str()),
            Some("svc-uid")
        );
        assert_eq!(s.ports.as_ref().and_then(|p| p[0].port), Some(8080));
        let e = &s.endpoints[0];
        let c = e.conditions.clone().unwrap_or_default();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
        assert_eq!(e.zone.as_deref(), Some("z1"));
        assert_eq!(e.node_name.as_deref(), Some("n1"));
        // Applying the plan and planning again changes nothing.
        let now = applied(&p, &[]);
        let again = plan(&svc, &desired, &now);
        assert!(
            again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(),
            "{again:?}"
        );
    }

    #[test]
    fn readiness_changes_update_in_place_and_removals_shrink_or_delete() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let now = applied(&plan(&svc, &desired_of(&svc, 150, true), &[]), &[]);
        let p = plan(&svc, &desired_of(&svc, 150, false), &now);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 2);
        assert!(p.update[0]
            .endpoints
            .iter()
            .all(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(false)));
        // Only the first slice's endpoints remain desired.
        let first: HashSet<String> = now[0]
            .endpoints
            .iter()
            .filter_map(|e| ip_of(e).cloned())
            .collect();
        let mut fewer = desired_of(&svc, 150, true);
        for eps in fewer.values_mut() {
            eps.retain(|e| ip_of(e).is_some_and(|ip| first.contains(ip)));
        }
        let p = plan(&svc, &fewer, &now);
        assert_eq!(
            p.delete.len(),
            1,
            "the slice holding only removed endpoints goes"
        );
        assert_eq!(p.update.len(), 0, "the others stay where they are");
        assert!(p.create.is_empty());
    }

    #[test]
    fn no_endpoints_keep_one_placeholder_and_terminating_pods_serve() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let p = plan(&svc, &BTreeMap::new(), &[]);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        let mut b = backends(
            &svc,
            &[pod("a", "10.0.0.1", true, json!({"app": "web"}))],
            true,
        );
        b[0].terminating = true;
        let e = endpoint_of(&svc, &b[0], None);
        let c = e.conditions.unwrap_or_default();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn slices_of_a_recreated_service_go() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let mut old = new_slice(&svc, &[], Vec::new());
        old.metadata.name = Some("web-old".into());
        if let Some(o) = old.metadata.owner_references.as_mut() {
            o[0].uid = "previous".into();
        }
        let p = plan(&svc, &desired_of(&svc, 1, true), &[Arc::new(old)]);
        assert_eq!(p.delete, vec!["web-old".to_string()]);
        assert_eq!(p.create.len(), 1);
    }
}
