//! Mutating admission that upstream runs on create only, after defaulting: the
//! `DefaultTolerationSeconds` plugin, which lets every pod ride out a short node outage
//! (300 s tolerations of `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable`
//! with effect NoExecute) before the node lifecycle controller evicts it.

use serde_json::{json, Value};

/// The taint the node lifecycle controller puts on a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Upstream's `--default-not-ready-toleration-seconds` and `--default-unreachable-...`.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Runs the create-only mutating admission for `group`/`kind` on `obj`.
pub fn on_create(group: &str, kind: &str, obj: &mut Value) {
    if (group, kind) == ("", "Pod") {
        default_toleration_seconds(obj);
    }
}

/// Whether a toleration (`key`, `effect`) covers the NoExecute taint `taint`, as the plugin
/// decides it: an empty key (with any operator) or the taint's key, and an empty or NoExecute
/// effect.
fn covers(t: &Value, taint: &str) -> bool {
    let key = t.get("key").and_then(Value::as_str).unwrap_or("");
    let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
    (key.is_empty() || key == taint) && (effect.is_empty() || effect == "NoExecute")
}

/// Adds the 300 s not-ready and unreachable tolerations a pod does not already have.
fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if tolerations.is_null() {
        *tolerations = Value::Array(Vec::new());
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for taint in [NOT_READY, UNREACHABLE] {
        if !list.iter().any(|t| covers(t, taint)) {
            list.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
    if list.is_empty() {
        spec.remove("tolerations");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tolerations(pod: &Value) -> Vec<(String, Option<i64>)> {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn a_bare_pod_gets_both_tolerations() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        on_create("", "Pod", &mut pod);
        assert_eq!(
            tolerations(&pod),
            [
                (NOT_READY.to_string(), Some(300)),
                (UNREACHABLE.to_string(), Some(300))
            ]
        );
        assert_eq!(pod["spec"]["tolerations"][0]["operator"], "Exists");
        assert_eq!(pod["spec"]["tolerations"][0]["effect"], "NoExecute");
    }

    #[test]
    fn existing_tolerations_are_kept() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": "other", "operator": "Exists"}
        ]}});
        on_create("", "Pod", &mut pod);
        assert_eq!(
            tolerations(&pod),
            [
                (UNREACHABLE.to_string(), Some(5)),
                ("other".to_string(), None),
                (NOT_READY.to_string(), Some(300))
            ]
        );
        // Tolerating everything (empty key, Exists) covers both.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        on_create("", "Pod", &mut all);
        assert_eq!(tolerations(&all).len(), 1);
        // A NoSchedule toleration does not cover a NoExecute taint.
        let mut ns = json!({"spec": {"tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]}});
        on_create("", "Pod", &mut ns);
        assert_eq!(tolerations(&ns).len(), 3);
    }

    #[test]
    fn other_kinds_and_odd_pods_are_left_alone() {
        let mut d = json!({"spec": {}});
        on_create("apps", "Deployment", &mut d);
        assert_eq!(d, json!({"spec": {}}));
        let mut odd = json!({"spec": {"tolerations": "x"}});
        on_create("", "Pod", &mut odd);
        assert_eq!(odd["spec"]["tolerations"], "x");
        let mut no_spec = json!({"metadata": {}});
        on_create("", "Pod", &mut no_spec);
        assert_eq!(no_spec, json!({"metadata": {}}));
    }
}
