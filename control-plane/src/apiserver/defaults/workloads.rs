//! apps/v1 and batch/v1 defaults: replica counts, update strategies, history limits, job
//! completion settings, and the pod template defaults inside each.

use serde_json::{json, Map, Value};

use super::core::{pod_template_spec, pvc_spec, template_metadata};
use super::{each, existing, set, set_str, sub, text, unset};

/// Workload kinds start with an empty status.
fn empty_status(obj: &mut Value) {
    set(obj, "status", json!({}));
}

/// An update strategy that defaults to RollingUpdate, with these rollingUpdate defaults.
fn rolling_update(strategy: &mut Value, max_unavailable: Value, max_surge: Value) {
    set_str(strategy, "type", "RollingUpdate");
    if text(strategy, "type") == "RollingUpdate" {
        if let Some(ru) = sub(strategy, "rollingUpdate") {
            set(ru, "maxUnavailable", max_unavailable);
            set(ru, "maxSurge", max_surge);
        }
    }
}

/// Deployment: replicas 1, RollingUpdate 25%/25%, history 10, progress deadline 600s.
pub(super) fn deployment(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        set(spec, "replicas", json!(1));
        if let Some(strategy) = sub(spec, "strategy") {
            rolling_update(strategy, json!("25%"), json!("25%"));
        }
        set(spec, "revisionHistoryLimit", json!(10));
        set(spec, "progressDeadlineSeconds", json!(600));
        if let Some(t) = sub(spec, "template") {
            pod_template_spec(t);
        }
    }
    empty_status(obj);
}

/// ReplicaSet: replicas 1.
pub(super) fn replica_set(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        set(spec, "replicas", json!(1));
        if let Some(t) = sub(spec, "template") {
            pod_template_spec(t);
        }
    }
    empty_status(obj);
}

/// DaemonSet: RollingUpdate with maxUnavailable 1 and maxSurge 0, history 10.
pub(super) fn daemon_set(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        if let Some(us) = sub(spec, "updateStrategy") {
            rolling_update(us, json!(1), json!(0));
        }
        set(spec, "revisionHistoryLimit", json!(10));
        if let Some(t) = sub(spec, "template") {
            pod_template_spec(t);
        }
    }
    empty_status(obj);
}

/// StatefulSet: OrderedReady, RollingUpdate partition 0, Retain/Retain claim policy,
/// replicas 1, history 10; claim templates get PVC defaults.
pub(super) fn stateful_set(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        set_str(spec, "podManagementPolicy", "OrderedReady");
        if let Some(us) = sub(spec, "updateStrategy") {
            if text(us, "type").is_empty() {
                set_str(us, "type", "RollingUpdate");
                sub(us, "rollingUpdate");
            }
            if text(us, "type") == "RollingUpdate" {
                if let Some(ru) = existing(us, "rollingUpdate") {
                    set(ru, "partition", json!(0));
                }
            }
        }
        if let Some(policy) = sub(spec, "persistentVolumeClaimRetentionPolicy") {
            set_str(policy, "whenDeleted", "Retain");
            set_str(policy, "whenScaled", "Retain");
        }
        set(spec, "replicas", json!(1));
        set(spec, "revisionHistoryLimit", json!(10));
        if let Some(t) = sub(spec, "template") {
            pod_template_spec(t);
        }
        each(spec, "volumeClaimTemplates", |claim| {
            template_metadata(claim);
            if let Some(s) = sub(claim, "spec") {
                pvc_spec(s);
            }
            if let Some(status) = sub(claim, "status") {
                set_str(status, "phase", "Pending");
            }
        });
    }
    empty_status(obj);
}

/// Job: completions/parallelism 1, backoffLimit 6, NonIndexed, not suspended, pod replacement
/// policy, manualSelector false; labels from the template; and, once the job has a uid, the
/// generated selector and pod labels upstream's Job strategy adds on create.
pub(super) fn job(obj: &mut Value) {
    let template_labels = obj
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    let job_labels_empty = obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let labels_follow_template = template_labels.is_some() && job_labels_empty;
    if let Some(spec) = sub(obj, "spec") {
        job_spec(spec);
        set(spec, "manualSelector", json!(false));
    }
    generate_selector(obj);
    if labels_follow_template {
        let labels = obj
            .get("spec")
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .cloned()
            .or(template_labels);
        if let (Some(labels), Some(meta)) = (labels, sub(obj, "metadata")) {
            if let Some(m) = meta.as_object_mut() {
                m.insert("labels".into(), labels);
            }
        }
    }
    empty_status(obj);
}

/// The JobSpec defaults that also apply inside a CronJob's template: none of `SetDefaults_Job`,
/// only the pod template and pod-failure-policy pattern defaults.
fn job_template_spec(spec: &mut Value) {
    if let Some(t) = sub(spec, "template") {
        pod_template_spec(t);
    }
    pod_failure_policy(spec);
}

fn job_spec(spec: &mut Value) {
    if unset(spec, "completions") && unset(spec, "parallelism") {
        set(spec, "completions", json!(1));
    }
    set(spec, "parallelism", json!(1));
    let limit = if unset(spec, "backoffLimitPerIndex") {
        6
    } else {
        i64::from(i32::MAX)
    };
    set(spec, "backoffLimit", json!(limit));
    set(spec, "completionMode", json!("NonIndexed"));
    set(spec, "suspend", json!(false));
    let replacement = if unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set(spec, "podReplacementPolicy", json!(replacement));
    job_template_spec(spec);
}

fn pod_failure_policy(spec: &mut Value) {
    if let Some(pfp) = existing(spec, "podFailurePolicy") {
        each(pfp, "rules", |rule| {
            each(rule, "onPodConditions", |c| set_str(c, "status", "True"));
        });
    }
}

/// What upstream's Job strategy does on create when the selector is not manual: the pod
/// template gets `controller-uid`/`job-name` labels (legacy and `batch.kubernetes.io/`
/// prefixed) and the selector matches the uid.
fn generate_selector(obj: &mut Value) {
    let Some(meta) = obj.get("metadata") else {
        return;
    };
    let uid = text(meta, "uid").to_string();
    let name = text(meta, "name").to_string();
    let Some(spec) = existing(obj, "spec") else {
        return;
    };
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if manual || uid.is_empty() || !unset(spec, "selector") {
        return;
    }
    if let Some(labels) = sub(spec, "template")
        .and_then(|t| sub(t, "metadata"))
        .and_then(|m| sub(m, "labels"))
        .and_then(Value::as_object_mut)
    {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels
                .entry(key)
                .or_insert_with(|| Value::from(name.clone()));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels
                .entry(key)
                .or_insert_with(|| Value::from(uid.clone()));
        }
    }
    if let Some(m) = spec.as_object_mut() {
        m.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

/// CronJob: Allow, not suspended, history limits 3 and 1; the job template's pod template
/// gets its defaults.
pub(super) fn cron_job(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        set_str(spec, "concurrencyPolicy", "Allow");
        set(spec, "suspend", json!(false));
        set(spec, "successfulJobsHistoryLimit", json!(3));
        set(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(jt) = sub(spec, "jobTemplate") {
            template_metadata(jt);
            if let Some(js) = sub(jt, "spec") {
                job_template_spec(js);
            }
        }
    }
    empty_status(obj);
}
