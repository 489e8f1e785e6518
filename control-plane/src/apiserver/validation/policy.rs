//! `policy/v1`: PodDisruptionBudget, as upstream's `ValidatePodDisruptionBudget` and its
//! status update rules.

use serde_json::Value;

use super::apps::{not_more_than_100_percent, positive_int_or_percent};
use super::meta::{label_selector, object_meta};
use super::{at, go, has, int, opt_s, Errs, NameRule, P};

/// Eviction policies for pods that are running but not ready.
const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// PodDisruptionBudget: at most one of minAvailable and maxUnavailable, each a non-negative
/// count or a percentage up to 100%; a valid selector; a known unhealthy-pod policy; status
/// counts never negative.
pub(super) fn validate_pdb(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    let (min, max) = (at(spec, "minAvailable"), at(spec, "maxUnavailable"));
    if has(spec, "minAvailable") && has(spec, "maxUnavailable") {
        e.invalid(
            &sp,
            go(format!(
                "policy.PodDisruptionBudgetSpec{{MinAvailable:{min}, MaxUnavailable:{max}}}"
            )),
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    for (v, field) in [(min, "minAvailable"), (max, "maxUnavailable")] {
        if !v.is_null() {
            positive_int_or_percent(v, &sp.child(field), e);
            not_more_than_100_percent(v, &sp.child(field), e);
        }
    }
    label_selector(spec.get("selector"), &sp.child("selector"), e);
    if let Some(policy) = opt_s(spec, "unhealthyPodEvictionPolicy") {
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy) {
            e.not_supported(
                &sp.child("unhealthyPodEvictionPolicy"),
                policy,
                UNHEALTHY_POD_EVICTION_POLICIES,
            );
        }
    }
    let st = at(obj, "status");
    let stp = P::root("status");
    for count in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        e.nonnegative(&stp.child(count), int(st, count));
    }
}
