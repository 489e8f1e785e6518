//! Defaulting of API objects as upstream Kubernetes (v1.33) does it on create and update
//! (`SetDefaults_*` in `pkg/apis/*/v1/defaults.go` plus the generated defaulters), so stored
//! objects look as they do in a real cluster.
//!
//! Besides the per-kind defaults, [`apply`] does what decoding and re-encoding does upstream:
//! `null` fields disappear, quantities are stored in canonical form (`"1000m"` → `"1"`,
//! `"1024Mi"` → `"1Gi"`), resource lists are rounded up to milli precision, timestamps are
//! printed in UTC, and embedded templates carry `creationTimestamp: null`.

mod admission;
mod core;
mod other;
mod workloads;

use serde_json::{Map, Value};

pub use admission::on_create;

use super::validation::quantity::Quantity;
use super::validation::schema::{schemas, Shape, MAX_DEPTH};

/// Fills in what upstream's defaulting fills on create and update, so stored objects look as
/// they do in Kubernetes. Kinds it does not know are only normalised where a schema exists.
///
/// Run it after `metadata.uid` and `metadata.name` are set: a Job's generated selector and
/// labels use the uid, and a Namespace's `kubernetes.io/metadata.name` label uses the name.
/// Run `validation::unknown_fields` on the request body before this.
pub fn apply(group: &str, kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    normalize(group, kind, obj);
    if is_cluster_scoped(group, kind) {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
    }
    match (group, kind) {
        ("", "Pod") => core::pod(obj),
        ("", "PodTemplate") => core::pod_template(obj),
        ("", "Service") => core::service(obj),
        ("", "Secret") => core::secret(obj),
        ("", "Namespace") => core::namespace(obj),
        ("", "Node") => core::node(obj),
        ("", "Endpoints") => core::endpoints(obj),
        ("", "PersistentVolume") => core::persistent_volume(obj),
        ("", "PersistentVolumeClaim") => core::persistent_volume_claim(obj),
        ("", "ResourceQuota") => core::resource_quota(obj),
        ("", "LimitRange") => core::limit_range(obj),
        ("", "Event") => other::core_event(obj),
        ("apps", "Deployment") => workloads::deployment(obj),
        ("apps", "ReplicaSet") => workloads::replica_set(obj),
        ("apps", "DaemonSet") => workloads::daemon_set(obj),
        ("apps", "StatefulSet") => workloads::stateful_set(obj),
        ("batch", "Job") => workloads::job(obj),
        ("batch", "CronJob") => workloads::cron_job(obj),
        ("coordination.k8s.io", "Lease") => other::lease(obj),
        ("discovery.k8s.io", "EndpointSlice") => other::endpoint_slice(obj),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => other::role(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            other::role_binding(obj)
        }
        ("networking.k8s.io", "NetworkPolicy") => other::network_policy(obj),
        ("scheduling.k8s.io", "PriorityClass") => other::priority_class(obj),
        ("policy", "PodDisruptionBudget") => other::pod_disruption_budget(obj),
        ("storage.k8s.io", "StorageClass") => other::storage_class(obj),
        ("events.k8s.io", "Event") => other::events_event(obj),
        _ => {}
    }
}

/// Kinds that live outside namespaces; a namespace sent for them is dropped, as upstream does.
fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace" | "Node" | "PersistentVolume")
            | (
                "rbac.authorization.k8s.io",
                "ClusterRole" | "ClusterRoleBinding"
            )
            | ("scheduling.k8s.io", "PriorityClass")
            | ("storage.k8s.io", "StorageClass")
    )
}

// ---------------------------------------------------------------------------------------------
// Decode/encode normalisation, guided by the kind's schema.

fn normalize(group: &str, kind: &str, obj: &mut Value) {
    let schemas = schemas();
    if let Some(root) = schemas.root(group, kind) {
        walk(root, obj, 0);
    }
}

fn walk(shape: Shape<'_>, v: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let schemas = schemas();
    match shape {
        Shape::Struct(_, props) => {
            let Some(m) = v.as_object_mut() else { return };
            m.retain(|k, x| !(x.is_null() && props.contains_key(k)));
            for (k, x) in m.iter_mut() {
                if let Some(s) = props.get(k) {
                    walk(schemas.shape(s), x, depth + 1);
                }
            }
        }
        Shape::Map(items) => {
            let s = schemas.shape(items);
            if let Some(m) = v.as_object_mut() {
                for x in m.values_mut() {
                    if x.is_null() {
                        match s {
                            Shape::Str => *x = Value::from(""),
                            Shape::Quantity => *x = Value::from("0"),
                            _ => {}
                        }
                    }
                    walk(s, x, depth + 1);
                }
            }
        }
        Shape::List(items) => {
            let s = schemas.shape(items);
            if let Some(a) = v.as_array_mut() {
                for x in a {
                    walk(s, x, depth + 1);
                }
            }
        }
        Shape::Quantity => {
            if let Some(Ok(q)) = super::validation::quantity::from_json(v) {
                *v = Value::from(q.canonical());
            }
        }
        Shape::Time => reformat_time(v, false),
        Shape::MicroTime => reformat_time(v, true),
        _ => {}
    }
}

/// Timestamps are stored in UTC, with seconds (`Time`) or microseconds (`MicroTime`).
fn reformat_time(v: &mut Value, micro: bool) {
    if let Some(t) = v.as_str().and_then(super::validation::parse_time) {
        *v = Value::from(format_time(t, micro));
    }
}

/// A time as Kubernetes writes `metav1.Time` (whole seconds) or, with `micros`,
/// `metav1.MicroTime`: RFC 3339 in UTC, e.g. `2025-05-01T08:00:00Z`.
pub(super) fn format_time(t: time::OffsetDateTime, micros: bool) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if micros {
        s.push_str(&format!(".{:06}", t.microsecond()));
    }
    s.push('Z');
    s
}

// ---------------------------------------------------------------------------------------------
// Helpers for setting defaults on JSON objects. Absent and null both mean "unset".

/// Whether `key` is unset (absent or null).
pub(super) fn unset(v: &Value, key: &str) -> bool {
    v.get(key).is_none_or(Value::is_null)
}

/// Sets `key` when unset (upstream: a nil pointer).
pub(super) fn set(v: &mut Value, key: &str, default: Value) {
    if unset(v, key) {
        if let Some(m) = v.as_object_mut() {
            m.insert(key.to_string(), default);
        }
    }
}

/// Sets a string `key` when unset or empty (upstream: `if x == ""`).
pub(super) fn set_str(v: &mut Value, key: &str, default: &str) {
    let needs = match v.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if needs {
        if let Some(m) = v.as_object_mut() {
            m.insert(key.to_string(), Value::from(default));
        }
    }
}

/// Sets an integer `key` when unset or zero (upstream: `if x == 0`).
pub(super) fn set_int(v: &mut Value, key: &str, default: i64) {
    let current = v.get(key);
    let zero = match current {
        None | Some(Value::Null) => true,
        Some(x) => x.as_i64() == Some(0),
    };
    if zero {
        if let Some(m) = v.as_object_mut() {
            m.insert(key.to_string(), Value::from(default));
        }
    }
}

/// The object at `key`, created empty when unset; None when it holds something else.
pub(super) fn sub<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let m = v.as_object_mut()?;
    let slot = m
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.is_object().then_some(slot)
}

/// The object at `key` if there is one (never created).
pub(super) fn existing<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    v.get_mut(key).filter(|x| x.is_object())
}

/// Calls `f` on every object in the list at `key`.
pub(super) fn each(v: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(a) = v.get_mut(key).and_then(Value::as_array_mut) {
        for x in a.iter_mut().filter(|x| x.is_object()) {
            f(x);
        }
    }
}

/// The string at `key`, or "".
pub(super) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Upstream's `SetDefaults_ResourceList`: quantities rounded up to milli precision.
pub(super) fn round_resource_list(v: &mut Value, key: &str) {
    let Some(m) = v.get_mut(key).and_then(Value::as_object_mut) else {
        return;
    };
    for q in m.values_mut() {
        if let Some(Ok(mut parsed)) = super::validation::quantity::from_json(q) {
            parsed.round_up(-3);
            *q = Value::from(parsed.canonical());
        }
    }
}

/// Parses a quantity value, if it is one.
pub(super) fn quantity(v: &Value) -> Option<Quantity> {
    super::validation::quantity::from_json(v).and_then(Result::ok)
}

#[cfg(test)]
mod tests;
