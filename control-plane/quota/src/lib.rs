//! What an object costs against a ResourceQuota, as upstream's quota evaluators count it:
//! object counts (`pods`, `services`, `count/deployments.apps`, ...), pod compute resources
//! (`requests.cpu`, `limits.memory`, `cpu`, ...), service node ports and load balancers, claim
//! storage per class, and which quotas an object falls under (scopes). Pure functions, so the
//! resource-quota controller (status.used) and the API server's quota admission count the same
//! way.
//!
//! Amounts are thousandths of the resource's unit in an `i64` (cpu `250m` is 250, `1Gi` is
//! 1073741824000), saturating, so every resource adds and compares the same way.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceQuota, ScopedResourceSelectorRequirement,
    Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

pub mod quantity;

/// Amounts by resource name, in thousandths.
pub type Usage = BTreeMap<String, i64>;

/// An object as the evaluators see it: the kinds with more than a count are typed.
pub enum Object<'a> {
    /// A pod: count, compute resources, scopes.
    Pod(&'a Pod),
    /// A service: count, node ports, load balancers.
    Service(&'a Service),
    /// A claim: count and storage, per storage class too.
    Claim(&'a PersistentVolumeClaim),
    /// Anything else: counted only.
    Other,
}

/// Why a pod cannot be admitted under a quota: a container does not say how much of a
/// quota-tracked compute resource it needs (upstream's backward-compatible constraint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRequests(pub String);

/// The current time, without needing jiff's `std` feature (the API server's build lacks it).
pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanosecond(since.as_nanos() as i128).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A quantity in thousandths, `None` when it is not a quantity.
pub fn parse(q: &Quantity) -> Option<i64> {
    quantity::parse_scaled(&q.0, 3).ok()
}

/// Parses every quantity of a resource list, leaving out malformed ones.
pub fn parse_list(list: Option<&BTreeMap<String, Quantity>>) -> Usage {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| parse(v).map(|n| (k.clone(), n)))
        .collect()
}

/// Whether amounts of `resource` read best in powers of two (memory and storage).
fn binary(resource: &str) -> bool {
    let last = resource.rsplit(['.', '/']).next().unwrap_or(resource);
    matches!(last, "memory" | "storage" | "ephemeral-storage") || last.starts_with("hugepages-")
}

/// Formats an amount of `resource` as upstream's canonical quantity strings do: `500m`, `2`,
/// `1Gi`, `1500M`.
pub fn format(resource: &str, milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let m = milli.unsigned_abs();
    if !m.is_multiple_of(1000) {
        return format!("{sign}{m}m");
    }
    let units = m / 1000;
    if units == 0 {
        return "0".into();
    }
    if binary(resource) && units.is_multiple_of(1024) {
        let mut v = units;
        let mut i = 0;
        while v.is_multiple_of(1024) && i < 6 {
            v /= 1024;
            i += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
        return format!("{sign}{v}{suffix}");
    }
    let mut v = units;
    let mut i = 0;
    while v.is_multiple_of(1000) && i < 6 {
        v /= 1000;
        i += 1;
    }
    let suffix = ["", "k", "M", "G", "T", "P", "E"][i];
    format!("{sign}{v}{suffix}")
}

/// `k=v,...` over `keys` of `usage` (missing ones as 0), as upstream's admission prints them.
pub fn pretty(usage: &Usage, keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{k}={}", format(k, usage.get(k).copied().unwrap_or(0))))
        .collect::<Vec<_>>()
        .join(",")
}

/// Usage as a resource list of canonical quantities.
pub fn to_list(usage: &Usage) -> BTreeMap<String, Quantity> {
    usage
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(format(k, *v))))
        .collect()
}

/// The object-count name of a resource: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The resource a `count/<plural>[.<group>]` name counts, as (group, plural).
pub fn parse_count_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((plural, group)) => (group.to_string(), plural.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// The legacy count name of the core kinds quotas counted before `count/*` existed.
pub fn legacy_name(group: &str, plural: &str) -> Option<&'static str> {
    if !group.is_empty() {
        return None;
    }
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        _ => return None,
    })
}

/// The core resource whose objects a quota resource name is computed from, as (group,
/// plural): `requests.cpu` from pods, `services.nodeports` from services, `count/jobs.batch`
/// from jobs.
pub fn source_of(resource: &str) -> Option<(String, String)> {
    if let Some(gp) = parse_count_name(resource) {
        return Some(gp);
    }
    let core = |p: &str| Some((String::new(), p.to_string()));
    match resource {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "persistentvolumeclaims" | "requests.storage" => core("persistentvolumeclaims"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(resource),
        r if r.starts_with("requests.") || r.starts_with("limits.") => core("pods"),
        r if r.contains(".storageclass.storage.k8s.io/") => core("persistentvolumeclaims"),
        _ => None,
    }
}

/// Whether a pod still holds what it was given: not finished, and not past its deletion
/// deadline (upstream's `QuotaV1Pod`).
pub fn pod_counts(pod: &Pod, now: Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    match &pod.metadata.deletion_timestamp {
        Some(t) => t.0 > now,
        None => true,
    }
}

fn add(u: &mut Usage, k: &str, v: i64) {
    let e = u.entry(k.to_string()).or_insert(0);
    *e = e.saturating_add(v);
}

fn container_lists(c: &Container) -> (Usage, Usage) {
    let r = c.resources.as_ref();
    (
        parse_list(r.and_then(|r| r.requests.as_ref())),
        parse_list(r.and_then(|r| r.limits.as_ref())),
    )
}

/// max(sum of containers, each init container) plus the pod overhead, per resource.
fn pod_totals(pod: &Pod) -> (Usage, Usage) {
    let Some(spec) = pod.spec.as_ref() else {
        return (Usage::new(), Usage::new());
    };
    let (mut req, mut lim) = (Usage::new(), Usage::new());
    for c in &spec.containers {
        let (r, l) = container_lists(c);
        r.iter().for_each(|(k, v)| add(&mut req, k, *v));
        l.iter().for_each(|(k, v)| add(&mut lim, k, *v));
    }
    for c in spec.init_containers.iter().flatten() {
        let (r, l) = container_lists(c);
        for (k, v) in r {
            let e = req.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
        for (k, v) in l {
            let e = lim.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    for (k, v) in parse_list(spec.overhead.as_ref()) {
        add(&mut req, &k, v);
        if lim.contains_key(&k) {
            add(&mut lim, &k, v);
        }
    }
    (req, lim)
}

/// Compute usage of requests and limits, named as quotas name them.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut u = Usage::new();
    for (k, v) in requests {
        match k.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                add(&mut u, k, *v);
                add(&mut u, &format!("requests.{k}"), *v);
            }
            k if k.starts_with("hugepages-") || k.contains('/') => {
                add(&mut u, &format!("requests.{k}"), *v);
            }
            _ => {}
        }
    }
    for (k, v) in limits {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            add(&mut u, &format!("limits.{k}"), *v);
        }
    }
    u
}

/// What one object of `group`/`plural` costs at `now`.
pub fn usage(group: &str, plural: &str, obj: &Object<'_>, now: Timestamp) -> Usage {
    let mut u = Usage::new();
    add(&mut u, &count_name(group, plural), 1000);
    match obj {
        Object::Pod(pod) => {
            if pod_counts(pod, now) {
                add(&mut u, "pods", 1000);
                let (req, lim) = pod_totals(pod);
                for (k, v) in compute_usage(&req, &lim) {
                    add(&mut u, &k, v);
                }
            }
            return u;
        }
        Object::Service(svc) => {
            let spec = svc.spec.as_ref();
            let ports = spec.and_then(|s| s.ports.as_ref()).map_or(0, Vec::len) as i64;
            match spec.and_then(|s| s.type_.as_deref()) {
                Some("NodePort") => add(&mut u, "services.nodeports", ports * 1000),
                Some("LoadBalancer") => {
                    add(&mut u, "services.loadbalancers", 1000);
                    if spec.and_then(|s| s.allocate_load_balancer_node_ports) != Some(false) {
                        add(&mut u, "services.nodeports", ports * 1000);
                    }
                }
                _ => {}
            }
        }
        Object::Claim(pvc) => {
            let requested = pvc
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .and_then(parse)
                .unwrap_or(0);
            let allocated = pvc
                .status
                .as_ref()
                .and_then(|s| s.allocated_resources.as_ref())
                .and_then(|r| r.get("storage"))
                .and_then(parse)
                .unwrap_or(0);
            let storage = requested.max(allocated);
            add(&mut u, "requests.storage", storage);
            if let Some(class) = pvc
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
                .filter(|c| !c.is_empty())
            {
                let prefix = format!("{class}.storageclass.storage.k8s.io/");
                add(&mut u, &format!("{prefix}requests.storage"), storage);
                add(&mut u, &format!("{prefix}persistentvolumeclaims"), 1000);
            }
        }
        Object::Other => {}
    }
    if let Some(legacy) = legacy_name(group, plural) {
        add(&mut u, legacy, 1000);
    }
    u
}

/// Whether a pod is BestEffort: no container asks for or is limited in cpu or memory.
fn best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let (r, l) = container_lists(c);
            ["cpu", "memory"]
                .iter()
                .all(|k| r.get(*k).is_none_or(|v| *v == 0) && l.get(*k).is_none_or(|v| *v == 0))
        })
}

fn scope_matches(scope: &str, pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    match scope {
        "Terminating" => spec
            .and_then(|s| s.active_deadline_seconds)
            .is_some_and(|d| d >= 0),
        "NotTerminating" => spec
            .and_then(|s| s.active_deadline_seconds)
            .is_none_or(|d| d < 0),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        _ => false,
    }
}

fn selector_matches(r: &ScopedResourceSelectorRequirement, pod: &Pod) -> bool {
    if r.scope_name != "PriorityClass" {
        // The other scopes only take Exists (and DoesNotExist, their negation).
        let m = scope_matches(&r.scope_name, pod);
        return if r.operator == "DoesNotExist" { !m } else { m };
    }
    let class = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        .unwrap_or("");
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => values.iter().any(|v| v == class),
        "NotIn" => !values.iter().any(|v| v == class),
        "Exists" => !class.is_empty(),
        "DoesNotExist" => class.is_empty(),
        _ => false,
    }
}

/// Whether `quota` covers `obj`: a quota with scopes covers only pods in every scope.
pub fn quota_covers(quota: &ResourceQuota, obj: &Object<'_>) -> bool {
    let spec = quota.spec.as_ref();
    let scopes: Vec<&String> = spec
        .and_then(|s| s.scopes.as_ref())
        .into_iter()
        .flatten()
        .collect();
    let selector: Vec<&ScopedResourceSelectorRequirement> = spec
        .and_then(|s| s.scope_selector.as_ref())
        .and_then(|s| s.match_expressions.as_ref())
        .into_iter()
        .flatten()
        .collect();
    if scopes.is_empty() && selector.is_empty() {
        return true;
    }
    let Object::Pod(pod) = obj else {
        return false;
    };
    scopes.iter().all(|s| scope_matches(s, pod))
        && selector.iter().all(|r| selector_matches(r, pod))
}

/// The quota's hard limits, parsed.
pub fn hard(quota: &ResourceQuota) -> Usage {
    parse_list(quota.spec.as_ref().and_then(|s| s.hard.as_ref()))
}

/// The compute resources every container must state when a quota tracks them.
const MUST_STATE: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Upstream's pod constraint: when a quota tracks cpu or memory, every container must state
/// them; the error names what is missing for which containers.
pub fn check_pod_constraints(tracked: &BTreeSet<String>, pod: &Pod) -> Result<(), MissingRequests> {
    let required: BTreeSet<&str> = MUST_STATE
        .iter()
        .copied()
        .filter(|r| tracked.contains(*r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let (r, l) = container_lists(c);
        let stated = compute_usage(&r, &l);
        for res in &required {
            if !stated.contains_key(*res) {
                missing.entry(res).or_default().insert(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(MissingRequests(format!(
        "must specify {}",
        parts.join("; ")
    )))
}

/// The resources of `hard` that `used + delta` would exceed, sorted.
pub fn exceeded(hard: &Usage, used: &Usage, delta: &Usage) -> Vec<String> {
    delta
        .iter()
        .filter(|(_, d)| **d > 0)
        .filter_map(|(k, d)| {
            let limit = hard.get(k)?;
            let now = used.get(k).copied().unwrap_or(0);
            (now.saturating_add(*d) > *limit).then(|| k.clone())
        })
        .collect()
}

/// What `new` costs beyond `old`, per resource, leaving out what did not grow: what an update
/// is charged, as upstream's `SubtractWithNonNegativeResult` followed by `RemoveZeros`.
pub fn added(new: &Usage, old: &Usage) -> Usage {
    new.iter()
        .map(|(k, v)| (k.clone(), v - old.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// `a + b` per resource.
pub fn sum(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        add(a, k, *v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn q(v: serde_json::Value) -> ResourceQuota {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn an_update_is_charged_only_what_grew() {
        let old: Usage = [
            ("services".to_string(), 1000),
            ("services.nodeports".to_string(), 0),
        ]
        .into();
        let new: Usage = [
            ("services".to_string(), 1000),
            ("services.nodeports".to_string(), 2000),
        ]
        .into();
        assert_eq!(
            added(&new, &old),
            [("services.nodeports".to_string(), 2000)].into()
        );
        assert!(added(&old, &new).is_empty(), "shrinking adds nothing");
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format("requests.cpu", 500), "500m");
        assert_eq!(format("requests.cpu", 2000), "2");
        assert_eq!(format("pods", 3000), "3");
        assert_eq!(format("requests.memory", 1024 * 1024 * 1024 * 1000), "1Gi");
        assert_eq!(format("requests.memory", 500_000_000_000), "500M");
        assert_eq!(format("requests.storage", 0), "0");
        assert_eq!(format("cpu", 1_000_000), "1k");
    }

    #[test]
    fn pod_usage_sums_containers_and_takes_the_largest_init_container() {
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "150m", "memory": "64Mi"}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
            "overhead": {"cpu": "10m"}
        }}));
        let u = usage("", "pods", &Object::Pod(&p), now());
        assert_eq!(u["pods"], 1000);
        assert_eq!(u["count/pods"], 1000);
        assert_eq!(u["requests.cpu"], 1010);
        assert_eq!(u["cpu"], 1010);
        assert_eq!(u["limits.cpu"], 210);
        assert_eq!(u["requests.memory"], 128 * 1024 * 1024 * 1000);
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn finished_pods_count_only_as_objects() {
        let p =
            pod(json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded"}}));
        let u = usage("", "pods", &Object::Pod(&p), now());
        assert_eq!(u.get("pods"), None);
        assert_eq!(u["count/pods"], 1000);
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let s: Service = serde_json::from_value(
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}),
        )
        .unwrap_or_default();
        let u = usage("", "services", &Object::Service(&s), now());
        assert_eq!(u["services"], 1000);
        assert_eq!(u["services.loadbalancers"], 1000);
        assert_eq!(u["services.nodeports"], 2000);
    }

    #[test]
    fn claims_count_storage_per_class() {
        let c: PersistentVolumeClaim = serde_json::from_value(json!({"spec": {
            "storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap_or_default();
        let u = usage("", "persistentvolumeclaims", &Object::Claim(&c), now());
        assert_eq!(u["persistentvolumeclaims"], 1000);
        assert_eq!(u["requests.storage"], (1i64 << 30) * 1000);
        assert_eq!(
            u["fast.storageclass.storage.k8s.io/persistentvolumeclaims"],
            1000
        );
    }

    #[test]
    fn other_kinds_count_under_both_names() {
        let u = usage("", "configmaps", &Object::Other, now());
        assert_eq!(u["configmaps"], 1000);
        assert_eq!(u["count/configmaps"], 1000);
        let u = usage("apps", "deployments", &Object::Other, now());
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/deployments.apps"]);
        assert_eq!(
            parse_count_name("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            source_of("limits.memory"),
            Some((String::new(), "pods".into()))
        );
        assert_eq!(
            source_of("services.nodeports"),
            Some((String::new(), "services".into()))
        );
        assert_eq!(
            source_of("gold.storageclass.storage.k8s.io/requests.storage"),
            Some((String::new(), "persistentvolumeclaims".into()))
        );
    }

    #[test]
    fn scopes_select_pods() {
        let best = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        let burst = pod(
            json!({"spec": {"activeDeadlineSeconds": 10, "priorityClassName": "high",
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let be = q(json!({"spec": {"scopes": ["BestEffort"]}}));
        assert!(quota_covers(&be, &Object::Pod(&best)));
        assert!(!quota_covers(&be, &Object::Pod(&burst)));
        assert!(
            !quota_covers(&be, &Object::Other),
            "scoped quotas cover only pods"
        );
        let term = q(json!({"spec": {"scopes": ["Terminating", "NotBestEffort"]}}));
        assert!(quota_covers(&term, &Object::Pod(&burst)));
        assert!(!quota_covers(&term, &Object::Pod(&best)));
        let prio = q(json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}));
        assert!(quota_covers(&prio, &Object::Pod(&burst)));
        assert!(!quota_covers(&prio, &Object::Pod(&best)));
        assert!(quota_covers(&q(json!({"spec": {}})), &Object::Other));
    }

    #[test]
    fn exceeded_and_constraints() {
        let hard: Usage = [
            ("pods".to_string(), 2000),
            ("requests.cpu".to_string(), 1000),
        ]
        .into();
        let used: Usage = [("pods".to_string(), 2000)].into();
        let delta: Usage = [
            ("pods".to_string(), 1000),
            ("requests.cpu".to_string(), 500),
        ]
        .into();
        assert_eq!(exceeded(&hard, &used, &delta), vec!["pods".to_string()]);
        assert_eq!(pretty(&delta, &["pods".into()]), "pods=1");
        let tracked: BTreeSet<String> =
            ["limits.memory".to_string(), "requests.cpu".to_string()].into();
        let p = pod(json!({"spec": {"containers": [
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
            {"name": "a"}]}}));
        assert_eq!(
            check_pod_constraints(&tracked, &p),
            Err(MissingRequests(
                "must specify limits.memory for: a,b; requests.cpu for: a".into()
            ))
        );
    }
}
