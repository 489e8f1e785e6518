//! Defaults for the smaller groups (RBAC, networking, discovery, scheduling, coordination)
//! and for Events, whose Go encoding always carries some empty fields.

use serde_json::{json, Value};

use super::{each, set, set_str, sub, text};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Role and ClusterRole: `rules` is always encoded, as null when empty.
pub(super) fn role(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry("rules").or_insert(Value::Null);
    }
}

/// RoleBinding and ClusterRoleBinding: roleRef and subject API groups.
pub(super) fn role_binding(obj: &mut Value) {
    if let Some(rr) = sub(obj, "roleRef") {
        set_str(rr, "apiGroup", RBAC_GROUP);
    }
    each(obj, "subjects", |s| {
        if text(s, "apiGroup").is_empty() {
            match text(s, "kind") {
                "ServiceAccount" => set(s, "apiGroup", json!("")),
                "User" | "Group" => set_str(s, "apiGroup", RBAC_GROUP),
                _ => {}
            }
        }
    });
}

/// NetworkPolicy: port protocols TCP; policyTypes Ingress (plus Egress when egress rules
/// exist); podSelector always encoded.
pub(super) fn network_policy(obj: &mut Value) {
    let Some(spec) = sub(obj, "spec") else {
        return;
    };
    set(spec, "podSelector", json!({}));
    for dir in ["ingress", "egress"] {
        each(spec, dir, |rule| {
            each(rule, "ports", |p| set(p, "protocol", json!("TCP")))
        });
    }
    let empty_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if empty_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        if let Some(m) = spec.as_object_mut() {
            m.insert("policyTypes".into(), types);
        }
    }
}

/// EndpointSlice: port names "" and protocols TCP; lists always encoded; conditions present.
pub(super) fn endpoint_slice(obj: &mut Value) {
    each(obj, "ports", |p| {
        set(p, "name", json!(""));
        set(p, "protocol", json!("TCP"));
    });
    each(obj, "endpoints", |e| set(e, "conditions", json!({})));
    if let Some(m) = obj.as_object_mut() {
        m.entry("endpoints").or_insert(Value::Null);
        m.entry("ports").or_insert(Value::Null);
    }
}

/// PriorityClass: preemption policy PreemptLowerPriority; value always encoded.
pub(super) fn priority_class(obj: &mut Value) {
    set(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    set(obj, "value", json!(0));
}

/// PodDisruptionBudget: spec and the status counts are always encoded (none is omitempty).
pub(super) fn pod_disruption_budget(obj: &mut Value) {
    set(obj, "spec", json!({}));
    set(obj, "status", json!({}));
    for count in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        set(&mut obj["status"], count, json!(0));
    }
}

/// StorageClass: volumes are deleted with their claims and bound at once, unless it says
/// otherwise; the provisioner is always encoded.
pub(super) fn storage_class(obj: &mut Value) {
    set(obj, "reclaimPolicy", json!("Delete"));
    set(obj, "volumeBindingMode", json!("Immediate"));
    set(obj, "provisioner", json!(""));
}

/// Lease: spec always encoded.
pub(super) fn lease(obj: &mut Value) {
    set(obj, "spec", json!({}));
}

/// core/v1 Event: the fields Go always encodes.
pub(super) fn core_event(obj: &mut Value) {
    set(obj, "involvedObject", json!({}));
    set(obj, "source", json!({}));
    for f in ["firstTimestamp", "lastTimestamp", "eventTime"] {
        if let Some(m) = obj.as_object_mut() {
            m.entry(f).or_insert(Value::Null);
        }
    }
    set(obj, "reportingComponent", json!(""));
    set(obj, "reportingInstance", json!(""));
}

/// events.k8s.io/v1 Event: the fields Go always encodes.
pub(super) fn events_event(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        for f in [
            "eventTime",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
        ] {
            m.entry(f).or_insert(Value::Null);
        }
    }
    set(obj, "regarding", json!({}));
    set(obj, "deprecatedSource", json!({}));
}
