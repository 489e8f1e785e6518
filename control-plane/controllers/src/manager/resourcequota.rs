//! The ResourceQuota controller, as upstream's: keeps every quota's `status.hard` (its
//! `spec.hard`) and `status.used` (what the namespace's objects cost, counted by
//! [`skiff_quota`]) current. Pods, Services and claims come from the
//! shared caches and requeue their namespace's quotas when they change; other counted kinds
//! (`configmaps`, `secrets`, `count/deployments.apps`, ...) are listed through the API at
//! most every [`RECOUNT`]. Admission (the API server's `quota` module) refuses what would
//! exceed a quota; this controller only reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tracing::Instrument;

use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{Context, Error};
use skiff_quota::{self as usage, Object, Usage};

/// How long counts listed through the API are reused before they are listed again.
pub const RECOUNT: Duration = Duration::from_secs(30);
/// Most quotas waiting in the queue.
const QUEUE_CAPACITY: usize = 50_000;
/// Workers syncing quotas at once.
const WORKERS: usize = 2;
/// Objects per page when counting through the API.
const PAGE: u32 = 500;
/// Most objects counted per kind and namespace; a namespace beyond it is reported at it.
const MAX_COUNTED: usize = 1_000_000;

/// Counts listed through the API for one quota, and when.
struct Counted {
    at: Instant,
    hard: BTreeMap<String, String>,
    usage: Usage,
}

/// The controller's state: queue and the API-listed counts being reused.
pub struct ResourceQuotaController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    counted: Mutex<HashMap<ObjectKey, Counted>>,
}

/// Queues every quota of `namespace`.
fn requeue_namespace(ctx: &Context, queue: &Queue<ObjectKey>, namespace: Option<&str>) {
    for q in ctx
        .resourcequotas
        .store()
        .list_namespace(namespace.unwrap_or_default())
    {
        if let Some(k) = ObjectKey::of(q.as_ref()) {
            queue.add(k);
        }
    }
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let c = Arc::new(ResourceQuotaController {
        ctx: ctx.clone(),
        queue: Queue::new("resourcequota", QUEUE_CAPACITY),
        counted: Mutex::new(HashMap::new()),
    });
    let q = c.queue.clone();
    ctx.resourcequotas.on_change(move |change| {
        let quota = match change {
            Change::Added(r) | Change::Deleted(r) | Change::Updated { new: r, .. } => r,
        };
        if let Some(k) = ObjectKey::of(quota.as_ref()) {
            q.add(k);
        }
    });
    let weak = Arc::downgrade(&c);
    ctx.pods.on_change(move |change| {
        let Some(c) = weak.upgrade() else { return };
        let pod = match change {
            Change::Added(p) | Change::Deleted(p) | Change::Updated { new: p, .. } => p,
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if c.ctx.resourcequotas.store().list_namespace(ns).is_empty() {
            return;
        }
        if let Change::Updated { old, new } = change {
            let now = usage::now();
            let facts = |p: &k8s_openapi::api::core::v1::Pod| {
                (
                    usage::pod_counts(p, now),
                    p.metadata.deletion_timestamp.is_some(),
                )
            };
            if facts(old) == facts(new) && old.spec == new.spec {
                return;
            }
        }
        requeue_namespace(&c.ctx, &c.queue, Some(ns));
    });
    let weak = Arc::downgrade(&c);
    ctx.services.on_change(move |change| {
        let Some(c) = weak.upgrade() else { return };
        let svc = match change {
            Change::Added(s) | Change::Deleted(s) => s,
            Change::Updated { old, new } if old.spec == new.spec => return,
            Change::Updated { new, .. } => new,
        };
        requeue_namespace(&c.ctx, &c.queue, svc.metadata.namespace.as_deref());
    });
    let weak = Arc::downgrade(&c);
    ctx.persistentvolumeclaims.on_change(move |change| {
        let Some(c) = weak.upgrade() else { return };
        let pvc = match change {
            Change::Added(s) | Change::Deleted(s) => s,
            Change::Updated { old, new } if old.spec == new.spec && old.status == new.status => {
                return
            }
            Change::Updated { new, .. } => new,
        };
        requeue_namespace(&c.ctx, &c.queue, pvc.metadata.namespace.as_deref());
    });
    let store = ctx.resourcequotas.store().clone();
    let resync = super::resync(c.queue.clone(), RECOUNT, move || store.keys());
    let mut all = super::workers("resourcequota", c.queue.clone(), WORKERS, move |key| {
        let c = c.clone();
        async move { c.sync(key).await }
    });
    all.push(resync);
    all
}

/// What the objects of one cached kind cost under `quota`.
fn cached_usage<K>(
    quota: &ResourceQuota,
    objects: &[Arc<K>],
    plural: &str,
    wrap: for<'a> fn(&'a K) -> Object<'a>,
    now: Timestamp,
) -> Usage {
    let mut total = Usage::new();
    for o in objects {
        let obj = wrap(o);
        if usage::quota_covers(quota, &obj) {
            usage::sum(&mut total, &usage::usage("", plural, &obj, now));
        }
    }
    total
}

/// `status.used`: for every resource of `hard`, its amount in `total` (0 when none).
pub fn used_for(hard: &BTreeSet<String>, total: &Usage) -> Usage {
    hard.iter()
        .map(|k| (k.clone(), total.get(k).copied().unwrap_or(0)))
        .collect()
}

impl ResourceQuotaController {
    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.resourcequotas.wait_synced().await;
        self.ctx.pods.wait_synced().await;
        self.ctx.services.wait_synced().await;
        self.ctx.persistentvolumeclaims.wait_synced().await;
        let span =
            tracing::debug_span!("resourcequota", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key).instrument(span).await
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Counted>> {
        self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sync_one(&self, key: &ObjectKey) -> Result<(), Error> {
        let Some(quota) = self.ctx.resourcequotas.store().get(key) else {
            self.counted().remove(key);
            return Ok(());
        };
        let spec_hard = quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.clone())
            .unwrap_or_default();
        let hard: BTreeSet<String> = spec_hard.keys().cloned().collect();
        let sources: BTreeSet<(String, String)> =
            hard.iter().filter_map(|r| usage::source_of(r)).collect();
        let now = usage::now();
        let ns = key.namespace.as_str();
        let mut total = Usage::new();
        let mut listed: Vec<(String, String)> = Vec::new();
        for (group, plural) in &sources {
            match (group.as_str(), plural.as_str()) {
                ("", "pods") => {
                    let pods = self.ctx.pods.store().list_namespace(ns);
                    usage::sum(
                        &mut total,
                        &cached_usage(&quota, &pods, "pods", |p| Object::Pod(p), now),
                    );
                }
                ("", "services") => {
                    let s = self.ctx.services.store().list_namespace(ns);
                    usage::sum(
                        &mut total,
                        &cached_usage(&quota, &s, "services", |s| Object::Service(s), now),
                    );
                }
                ("", "persistentvolumeclaims") => {
                    let c = self.ctx.persistentvolumeclaims.store().list_namespace(ns);
                    let plural = "persistentvolumeclaims";
                    usage::sum(
                        &mut total,
                        &cached_usage(&quota, &c, plural, |c| Object::Claim(c), now),
                    );
                }
                ("", "resourcequotas") => {
                    let q = self.ctx.resourcequotas.store().list_namespace(ns);
                    let plural = "resourcequotas";
                    usage::sum(
                        &mut total,
                        &cached_usage(&quota, &q, plural, |_| Object::Other, now),
                    );
                }
                _ => listed.push((group.clone(), plural.clone())),
            }
        }
        if !listed.is_empty() && usage::quota_covers(&quota, &Object::Other) {
            usage::sum(
                &mut total,
                &self.listed_usage(key, &spec_hard, &listed).await?,
            );
        }
        let used = used_for(&hard, &total);
        let status = quota.status.clone().unwrap_or_default();
        let current_used = usage::parse_list(status.used.as_ref());
        if status.hard.clone().unwrap_or_default() == spec_hard && current_used == used {
            return Ok(());
        }
        tracing::debug!(used = %usage::pretty(&used, &hard.iter().cloned().collect::<Vec<_>>()), "updating quota status");
        // A merge patch keeps other fields; resources no longer limited are removed by null.
        let mut hard_patch: Map<String, Value> = spec_hard
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.0)))
            .collect();
        let mut used_patch: Map<String, Value> = usage::to_list(&used)
            .into_iter()
            .map(|(k, v)| (k, json!(v.0)))
            .collect();
        for k in status.hard.iter().flatten().map(|(k, _)| k) {
            hard_patch.entry(k.clone()).or_insert(Value::Null);
        }
        for k in status.used.iter().flatten().map(|(k, _)| k) {
            used_patch.entry(k.clone()).or_insert(Value::Null);
        }
        let patch = json!({"status": {"hard": hard_patch, "used": used_patch}});
        let api: Api<ResourceQuota> = Api::namespaced(self.ctx.client.clone(), ns);
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if super::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Counts of the kinds not cached here, listed through the API, reused for [`RECOUNT`]
    /// unless the quota's limits changed.
    async fn listed_usage(
        &self,
        key: &ObjectKey,
        hard: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        kinds: &[(String, String)],
    ) -> Result<Usage, Error> {
        let hard_strings: BTreeMap<String, String> =
            hard.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
        if let Some(c) = self.counted().get(key) {
            if c.hard == hard_strings && c.at.elapsed() < RECOUNT {
                return Ok(c.usage.clone());
            }
        }
        let mut total = Usage::new();
        for (group, plural) in kinds {
            let Some(resource) = self.resolve(group, plural).await else {
                tracing::debug!(%group, %plural, "not served; not counted");
                continue;
            };
            let n = self.count(&key.namespace, &resource).await?;
            let one = usage::usage(group, plural, &Object::Other, usage::now());
            for (k, v) in one {
                total.insert(k, v.saturating_mul(n as i64));
            }
        }
        let mut counted = self.counted();
        if counted.len() >= QUEUE_CAPACITY {
            counted.clear();
        }
        counted.insert(
            key.clone(),
            Counted {
                at: Instant::now(),
                hard: hard_strings,
                usage: total.clone(),
            },
        );
        Ok(total)
    }

    /// The API resource of `group`/`plural`: core kinds directly, others by discovery.
    async fn resolve(&self, group: &str, plural: &str) -> Option<ApiResource> {
        if group.is_empty() {
            return Some(ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: String::new(),
                plural: plural.into(),
            });
        }
        let g = kube::discovery::oneshot::group(&self.ctx.client, group)
            .await
            .ok()?;
        g.recommended_resources()
            .into_iter()
            .map(|(r, _)| r)
            .find(|r| r.plural == plural)
    }

    /// How many objects of `resource` `namespace` holds, a page at a time.
    async fn count(&self, namespace: &str, resource: &ApiResource) -> Result<usize, Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ctx.client.clone(), namespace, resource);
        let mut n = 0;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(e) if super::not_found(&e) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            n += page.items.len();
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() || n >= MAX_COUNTED {
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(v: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).unwrap_or_default())
    }

    #[test]
    fn used_counts_live_pods_and_their_requests() {
        let quota: ResourceQuota = serde_json::from_value(json!({"spec": {"hard": {
            "pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}}}))
        .unwrap_or_default();
        let pods = vec![
            pod(
                json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}}}]}}),
            ),
            pod(
                json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}}}]}}),
            ),
            pod(
                json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "4"}}}]}, "status": {"phase": "Failed"}}),
            ),
        ];
        let total = cached_usage(&quota, &pods, "pods", |p| Object::Pod(p), usage::now());
        let hard: BTreeSet<String> = usage::hard(&quota).into_keys().collect();
        let used = used_for(&hard, &total);
        let list = usage::to_list(&used);
        assert_eq!(list["pods"].0, "2");
        assert_eq!(list["requests.cpu"].0, "500m");
        assert_eq!(list["limits.memory"].0, "512Mi");
        assert_eq!(used.len(), 3, "only limited resources are reported");
    }

    #[test]
    fn scoped_quotas_count_only_their_pods() {
        let quota: ResourceQuota = serde_json::from_value(
            json!({"spec": {"hard": {"pods": "5"}, "scopes": ["BestEffort"]}}),
        )
        .unwrap_or_default();
        let pods = vec![
            pod(json!({"spec": {"containers": [{"name": "a"}]}})),
            pod(
                json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
            ),
        ];
        let total = cached_usage(&quota, &pods, "pods", |p| Object::Pod(p), usage::now());
        assert_eq!(total.get("pods"), Some(&1000));
    }
}
