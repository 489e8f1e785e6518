//! ResourceQuota admission on create and update, as upstream's `ResourceQuota` admission
//! plugin decides it: an object whose cost (counted by `skiff_quota`, the rules the resource-quota controller
//! uses too) would take a quota of its namespace past a hard
//! limit is refused with upstream's 403 (`pods "x" is forbidden: exceeded quota: q, requested:
//! pods=1, used: pods=2, limited: pods=2`), and a pod that does not state a compute resource a
//! quota tracks gets upstream's `failed quota: q: must specify ...`.
//!
//! What is used is computed from the store at request time (the namespace's objects of the
//! created kind, at most [`MAX_SCANNED`]), not taken from `status.used`, which the controller
//! writes only after the fact. Creates charged to the quotas of one namespace are serialised
//! in this process (a lock held until the object is stored), so concurrent creates cannot
//! both take the last unit; another API server process is not covered by that lock.
//! An update is charged what it adds to the object's cost (a Service turned NodePort, a claim
//! asking for more storage), and nothing when it adds nothing. Pod updates are not charged:
//! their resources cannot change, as upstream's pods evaluator handles creates only.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use serde_json::{json, Value};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::catalog::{self, ResourceType};
use super::registry::{self, ListOptions};
use super::rest::Target;
use super::status::Status;
use crate::store::Store;
use skiff_quota::{self as usage, Object, Usage};

/// Most existing objects read to compute what is used; a namespace holding more is judged on
/// the first ones (a quota that large is far beyond what a test or small cluster holds).
pub const MAX_SCANNED: usize = 100_000;
/// Lock stripes: namespaces hash onto these, so the lock table never grows.
const STRIPES: usize = 64;

/// Admission passed; holding this keeps other creates charged to the same namespace's quotas
/// waiting until the object is stored (drop it after the write).
pub struct Admitted {
    _lock: Option<OwnedMutexGuard<()>>,
}

fn stripe(namespace: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Vec<Arc<Mutex<()>>>> = OnceLock::new();
    let locks = LOCKS.get_or_init(|| (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut h);
    locks[(h.finish() as usize) % STRIPES].clone()
}

/// An object decoded as far as the quota rules need.
enum Typed {
    Pod(Box<Pod>),
    Service(Box<Service>),
    Claim(Box<PersistentVolumeClaim>),
    Other,
}

impl Typed {
    fn of(kind: &str, group: &str, v: &Value) -> Typed {
        let decoded = match (group, kind) {
            ("", "Pod") => serde_json::from_value(v.clone())
                .ok()
                .map(|p| Typed::Pod(Box::new(p))),
            ("", "Service") => serde_json::from_value(v.clone())
                .ok()
                .map(|s| Typed::Service(Box::new(s))),
            ("", "PersistentVolumeClaim") => serde_json::from_value(v.clone())
                .ok()
                .map(|c| Typed::Claim(Box::new(c))),
            _ => None,
        };
        decoded.unwrap_or(Typed::Other)
    }

    fn object(&self) -> Object<'_> {
        match self {
            Typed::Pod(p) => Object::Pod(p),
            Typed::Service(s) => Object::Service(s),
            Typed::Claim(c) => Object::Claim(c),
            Typed::Other => Object::Other,
        }
    }
}

fn forbidden(res: &ResourceType, name: &str, why: String) -> Status {
    Status {
        details: Some(json!({"name": name, "group": res.group, "kind": res.plural})),
        ..Status::forbidden(format!(
            "{} \"{name}\" is forbidden: {why}",
            res.qualified()
        ))
    }
}

/// Checks the new object `obj` (defaulted and valid, named) against its namespace's quotas;
/// `old` is the object an update replaces.
pub async fn admit(
    store: &Store,
    target: &Target,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Admitted, Status> {
    let none = Admitted { _lock: None };
    let res = target.res;
    let Some(ns) = target.namespace.as_deref().filter(|_| res.namespaced) else {
        return Ok(none);
    };
    if old.is_some() && (res.group, res.kind) == ("", "Pod") {
        return Ok(none);
    }
    let quota_res = catalog::find("", "v1", "resourcequotas")
        .ok_or_else(|| Status::internal("no resourcequotas resource".into()))?;
    let quota_prefix = registry::prefix(quota_res, Some(ns));
    // The cheap question first: most namespaces have no quota.
    if registry::keys(store, &quota_prefix)?.is_empty() {
        return Ok(none);
    }
    let now = usage::now();
    let typed = Typed::of(res.kind, res.group, obj);
    let mut delta = usage::usage(res.group, res.plural, &typed.object(), now);
    if let Some(old) = old {
        // What the update adds; the stored object's cost is already among what is used.
        let before = Typed::of(res.kind, res.group, old);
        delta = usage::added(
            &delta,
            &usage::usage(res.group, res.plural, &before.object(), now),
        );
        if delta.is_empty() {
            return Ok(none);
        }
    }
    let lock = stripe(ns).lock_owned().await;
    let quotas: Vec<ResourceQuota> =
        registry::list(store, &quota_prefix, &ListOptions::default(), |_| true)
            .await?
            .items
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    // Quotas covering the object and limiting something it costs.
    let relevant: Vec<(&ResourceQuota, Usage, Vec<String>)> = quotas
        .iter()
        .filter(|q| usage::quota_covers(q, &typed.object()))
        .filter_map(|q| {
            let hard = usage::hard(q);
            let keys: Vec<String> = delta
                .keys()
                .filter(|k| hard.contains_key(*k))
                .cloned()
                .collect();
            (!keys.is_empty()).then_some((q, hard, keys))
        })
        .collect();
    if relevant.is_empty() {
        return Ok(none);
    }
    if let Typed::Pod(pod) = &typed {
        for (q, hard, _) in &relevant {
            let tracked: BTreeSet<String> = hard.keys().cloned().collect();
            if let Err(missing) = usage::check_pod_constraints(&tracked, pod) {
                let qname = q.metadata.name.as_deref().unwrap_or_default();
                return Err(forbidden(
                    res,
                    name,
                    format!("failed quota: {qname}: {}", missing.0),
                ));
            }
        }
    }
    let existing = existing_objects(store, res, ns).await?;
    for (q, hard, keys) in &relevant {
        let mut used = Usage::new();
        for o in &existing {
            if usage::quota_covers(q, &o.object()) {
                usage::sum(
                    &mut used,
                    &usage::usage(res.group, res.plural, &o.object(), now),
                );
            }
        }
        let wanted: Usage = keys
            .iter()
            .map(|k| (k.clone(), delta.get(k).copied().unwrap_or(0)))
            .collect();
        let over = usage::exceeded(hard, &used, &wanted);
        if !over.is_empty() {
            let qname = q.metadata.name.as_deref().unwrap_or_default();
            return Err(forbidden(
                res,
                name,
                format!(
                    "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                    usage::pretty(&wanted, &over),
                    usage::pretty(&used, &over),
                    usage::pretty(hard, &over),
                ),
            ));
        }
    }
    Ok(Admitted { _lock: Some(lock) })
}

/// The namespace's objects of the created kind, decoded; plain counts need no values.
async fn existing_objects(
    store: &Store,
    res: &ResourceType,
    ns: &str,
) -> Result<Vec<Typed>, Status> {
    let prefix = registry::prefix(res, Some(ns));
    if !matches!(
        (res.group, res.kind),
        ("", "Pod" | "Service" | "PersistentVolumeClaim")
    ) {
        let n = registry::keys(store, &prefix)?.len().min(MAX_SCANNED);
        return Ok((0..n).map(|_| Typed::Other).collect());
    }
    let opts = ListOptions {
        limit: MAX_SCANNED,
        ..Default::default()
    };
    Ok(registry::list(store, &prefix, &opts, |_| true)
        .await?
        .items
        .iter()
        .map(|v| Typed::of(res.kind, res.group, v))
        .collect())
}
