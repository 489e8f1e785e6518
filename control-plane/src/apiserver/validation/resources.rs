//! Compute resources: resource names, quantities, and requests against limits.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::quantity::{self, Quantity};
use super::{arr, dns1123_label_errors, map, opt_s, qualified_name_errors, s, Errs, P};

/// Container resources: names, quantities, requests ≤ limits, claims.
pub(super) fn resource_requirements(r: &Value, claims: &BTreeSet<String>, p: &P, e: &mut Errs) {
    let lim_p = p.child("limits");
    let req_p = p.child("requests");
    let mut cpu_mem = false;
    let mut huge = false;
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    if let Some(m) = map(r, "limits") {
        for (name, q) in m {
            let kp = lim_p.key(name);
            container_resource_name(name, &kp, e);
            if let Some(q) = quantity_value(name, q, &kp, e) {
                limits.insert(name, q);
            }
            huge |= name.starts_with("hugepages-");
            cpu_mem |= name == "cpu" || name == "memory";
        }
    }
    if let Some(m) = map(r, "requests") {
        for (name, q) in m {
            let kp = req_p.key(name);
            container_resource_name(name, &kp, e);
            let Some(q) = quantity_value(name, q, &kp, e) else {
                continue;
            };
            let overcommit = is_native_resource(name) && !name.starts_with("hugepages-");
            match limits.get(name.as_str()) {
                Some(l) => {
                    if q.cmp(l) != Ordering::Equal && !overcommit {
                        e.invalid(
                            &req_p,
                            q.canonical(),
                            &format!("must be equal to {name} limit of {}", l.canonical()),
                        );
                    } else if q.cmp(l) == Ordering::Greater {
                        e.invalid(
                            &req_p,
                            q.canonical(),
                            &format!(
                                "must be less than or equal to {name} limit of {}",
                                l.canonical()
                            ),
                        );
                    }
                }
                None if !overcommit => {
                    e.required(&lim_p, "Limit must be set for non overcommitable resources")
                }
                None => {}
            }
            huge |= name.starts_with("hugepages-");
            cpu_mem |= name == "cpu" || name == "memory";
        }
    }
    if huge && !cpu_mem {
        e.forbidden(p, "HugePages require cpu or memory");
    }
    claims_refs(r, claims, p, e);
}

fn claims_refs(r: &Value, claims: &BTreeSet<String>, p: &P, e: &mut Errs) {
    let mut seen = BTreeSet::new();
    for (i, c) in arr(r, "claims").iter().enumerate() {
        let name = s(c, "name");
        let cp = p.child("claims").index(i);
        if name.is_empty() {
            e.required(&cp, "");
            continue;
        }
        let key = match opt_s(c, "request").filter(|x| !x.is_empty()) {
            Some(req) => {
                e.invalid_each(&cp.child("request"), req, dns1123_label_errors(req));
                format!("{name}/{req}")
            }
            None => name.to_string(),
        };
        if !seen.insert(key.clone()) {
            e.duplicate(&cp, key);
        }
        if !claims.contains(name) {
            let mut detail = "must be one of the names in pod.spec.resourceClaims".to_string();
            if claims.is_empty() {
                detail.push_str(" which is empty");
            } else {
                detail.push_str(": ");
                detail.push_str(&claims.iter().cloned().collect::<Vec<_>>().join(", "));
            }
            e.0.push(super::FieldError {
                field: cp.as_str().to_string(),
                kind: super::FieldErrorKind::NotFound,
                value: Value::from(name),
                detail,
            });
        }
    }
}

/// Parses a quantity and applies `ValidateResourceQuantityValue` (non-negative; whole numbers
/// for countable resources).
pub(super) fn quantity_value(name: &str, v: &Value, p: &P, e: &mut Errs) -> Option<Quantity> {
    let q = match quantity::from_json(v) {
        Some(Ok(q)) => q,
        Some(Err(msg)) => {
            e.invalid(p, v.clone(), msg);
            return None;
        }
        None => {
            e.invalid(p, v.clone(), quantity::FORMAT_ERROR);
            return None;
        }
    };
    if q.is_negative() {
        e.invalid(p, q.canonical(), "must be greater than or equal to 0");
    }
    if is_integer_resource(name) && !q.is_integer() {
        e.invalid(p, q.canonical(), "must be an integer");
    }
    Some(q)
}

/// Upstream's `standardResources` that are not object counts.
const STANDARD_MEASURED_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "storage",
    "requests.storage",
];

/// Upstream's `integerResources`: object counts, the rest of `standardResources`.
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// Whether `name` is in upstream's `standardResources`.
fn is_standard_resource(name: &str) -> bool {
    STANDARD_MEASURED_RESOURCES.contains(&name) || INTEGER_RESOURCES.contains(&name)
}

/// Whether `name` is in upstream's `standardQuotaResources`: the standard resources but
/// `storage`.
pub(super) fn is_standard_quota_resource(name: &str) -> bool {
    name != "storage" && is_standard_resource(name)
}

/// Unprefixed names and `kubernetes.io/` names are the cluster's own resources.
pub(super) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && qualified_name_errors(&format!("requests.{name}")).is_empty()
}

fn is_integer_resource(name: &str) -> bool {
    INTEGER_RESOURCES.contains(&name) || is_extended_resource(name)
}

/// Upstream's `validateResourceName`: qualified, and standard when unprefixed. Returns whether
/// the name passed.
pub(super) fn resource_name(name: &str, p: &P, e: &mut Errs) -> bool {
    let errs = qualified_name_errors(name);
    if !errs.is_empty() {
        e.invalid_each(p, name, errs);
        return false;
    }
    let quota_huge = name.starts_with("hugepages-") || name.starts_with("requests.hugepages-");
    if !name.contains('/') && !is_standard_resource(name) && !quota_huge {
        e.invalid(
            p,
            name,
            "must be a standard resource type or fully qualified",
        );
        return false;
    }
    true
}

/// Upstream's `validateContainerResourceName` (also used for LimitRange Pod/Container items).
pub(super) fn container_resource_name(name: &str, p: &P, e: &mut Errs) {
    resource_name(name, p, e);
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage")
            && !name.starts_with("hugepages-")
        {
            e.invalid(p, name, "must be a standard resource for containers");
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        e.invalid(p, name, "doesn't follow extended resource name standard");
    }
}
