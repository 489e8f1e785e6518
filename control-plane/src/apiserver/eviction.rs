//! `pods/eviction`, as upstream's eviction storage: a pod guarded by a PodDisruptionBudget
//! goes only while the budget allows a disruption, and taking one is recorded in the budget's
//! status (`disruptionsAllowed` down by one, the pod in `disruptedPods`) before the pod is
//! deleted, so concurrent evictions cannot overdraw it. A refusal is a 429 that `kubectl
//! drain` retries.

use serde_json::{json, Value};

use super::objects;
use super::registry::{self, ListOptions};
use super::rest::{self, parse_target, Query, Target};
use super::selectors::LabelSelector;
use super::status::Status;
use crate::store::Store;

/// Most pods a budget may have evicted and not yet seen gone (upstream's
/// `MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;
/// The refusal's message, which clients match on.
const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// Evicts the pod `target` names, with the eviction's `deleteOptions`.
pub async fn evict(store: &Store, target: &Target, doc: &Value) -> Result<(), Status> {
    let name = target.name.as_deref().unwrap_or("");
    if let Some(given) = doc["metadata"]["name"].as_str() {
        if given != name {
            return Err(Status::bad_request(
                "name in URL does not match name in Eviction object".into(),
            ));
        }
    }
    let pod_target = Target {
        sub: None,
        ..target.clone()
    };
    let opts = doc
        .get("deleteOptions")
        .filter(|o| o.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let dry_run = opts["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"));
    let mut q = Query::new();
    if dry_run {
        q.insert("dryRun".into(), "All".into());
    }
    let pod = rest::current(store, &pod_target).await?;
    // A pod that is not running, or already going, has nothing left to disrupt.
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let ignores_budgets = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || !pod["metadata"]["deletionTimestamp"].is_null();
    if !ignores_budgets {
        let budgets = budgets_of(store, &pod).await?;
        match budgets.as_slice() {
            [] => {}
            [budget] => {
                if !spare_unhealthy(budget, &pod) {
                    take_disruption(store, budget, name, &q).await?;
                }
            }
            _ => {
                return Err(Status::new(
                    500,
                    "",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
                ))
            }
        }
    }
    if !dry_run {
        mark_disruption_target(store, target).await?;
    }
    rest::delete_one(store, &pod_target, &q, &opts).await?;
    Ok(())
}

/// The budgets in the pod's namespace whose selector selects it (an empty selector selects
/// every pod, a missing one none).
async fn budgets_of(store: &Store, pod: &Value) -> Result<Vec<Value>, Status> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let pdbs = parse_target(
        "policy",
        "v1",
        &format!("namespaces/{ns}/poddisruptionbudgets"),
    )?;
    let labels = &pod["metadata"]["labels"];
    let page = registry::list(store, &pdbs.prefix(), &ListOptions::default(), |b| {
        LabelSelector::from_object(&b["spec"]["selector"]).is_ok_and(|s| s.matches(labels))
    })
    .await?;
    Ok(page.items)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether an unready pod may go without taking a disruption: always under `AlwaysAllow`, and
/// under the default `IfHealthyBudget` while the budget has all the healthy pods it needs.
fn spare_unhealthy(budget: &Value, pod: &Value) -> bool {
    if is_ready(pod) {
        return false;
    }
    let status = &budget["status"];
    let count = |k: &str| status[k].as_i64().unwrap_or(0);
    budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        || (count("currentHealthy") >= count("desiredHealthy") && count("desiredHealthy") > 0)
}

/// The 429 naming why: `cause` goes in the details, where `kubectl drain` reads it.
fn refused(cause: String) -> Status {
    Status {
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})),
        ..Status::new(429, "TooManyRequests", REFUSED.into())
    }
}

/// Takes one disruption from `budget` for `pod`, or refuses: the budget's controller has not
/// caught up with its spec, or it allows none now. A dry run (`q`) only checks.
async fn take_disruption(
    store: &Store,
    budget: &Value,
    pod: &str,
    q: &Query,
) -> Result<(), Status> {
    let ns = budget["metadata"]["namespace"].as_str().unwrap_or("");
    let name = budget["metadata"]["name"].as_str().unwrap_or("");
    let status_target = parse_target(
        "policy",
        "v1",
        &format!("namespaces/{ns}/poddisruptionbudgets/{name}/status"),
    )?;
    let forbidden = |why: &str| {
        Status::forbidden(format!(
            "poddisruptionbudgets.policy \"{name}\" is forbidden: {why}"
        ))
    };
    rest::write(store, &status_target, q, None, |cur| {
        let status = &cur["status"];
        let count = |k: &str| status[k].as_i64().unwrap_or(0);
        if count("observedGeneration") < cur["metadata"]["generation"].as_i64().unwrap_or(0) {
            return Err(refused(format!(
                "The disruption budget {name} is still being processed by the server."
            )));
        }
        let allowed = count("disruptionsAllowed");
        if allowed < 0 {
            return Err(forbidden("pdb disruptions allowed is negative"));
        }
        let disrupted = status["disruptedPods"].as_object().map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_PODS {
            return Err(forbidden(
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(refused(format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                count("desiredHealthy"),
                count("currentHealthy")
            )));
        }
        let mut next = cur.clone();
        next["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if allowed == 1 {
            set_condition(
                &mut next["status"],
                json!({"type": "DisruptionAllowed", "status": "False",
                       "reason": "InsufficientPods", "message": "",
                       "observedGeneration": count("observedGeneration")}),
            );
        }
        if !next["status"]["disruptedPods"].is_object() {
            next["status"]["disruptedPods"] = json!({});
        }
        next["status"]["disruptedPods"][pod] = json!(objects::now_rfc3339());
        Ok(next)
    })
    .await?;
    Ok(())
}

/// Records on the pod why it is going (`DisruptionTarget`), as upstream does before deleting.
async fn mark_disruption_target(store: &Store, pod: &Target) -> Result<(), Status> {
    let status_target = Target {
        sub: pod.res.subresource("status"),
        ..pod.clone()
    };
    let marked = rest::write(store, &status_target, &Query::new(), None, |cur| {
        let mut next = cur.clone();
        set_condition(
            &mut next["status"],
            json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
                   "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}),
        );
        Ok(next)
    })
    .await;
    match marked {
        Err(s) if s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Sets a condition in `status.conditions`, keeping its transition time when its status
/// stays the same.
fn set_condition(status: &mut Value, mut cond: Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(list) = status["conditions"].as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(c) if c["status"] == cond["status"] => {
            cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            *c = cond;
        }
        Some(c) => {
            cond["lastTransitionTime"] = json!(objects::now_rfc3339());
            *c = cond;
        }
        None => {
            cond["lastTransitionTime"] = json!(objects::now_rfc3339());
            list.push(cond);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unready_pod_is_spared_while_the_budget_is_whole() {
        let unready = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let whole = json!({"spec": {}, "status": {"currentHealthy": 2, "desiredHealthy": 2}});
        let short = json!({"spec": {}, "status": {"currentHealthy": 1, "desiredHealthy": 2}});
        assert!(spare_unhealthy(&whole, &unready));
        assert!(!spare_unhealthy(&short, &unready));
        assert!(!spare_unhealthy(&whole, &ready));
        let always = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"},
                            "status": {"currentHealthy": 0, "desiredHealthy": 2}});
        assert!(spare_unhealthy(&always, &unready));
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut status = json!({"conditions": [{"type": "DisruptionTarget", "status": "True",
                                                "lastTransitionTime": "then"}]});
        set_condition(
            &mut status,
            json!({"type": "DisruptionTarget", "status": "True", "reason": "X"}),
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "then");
        assert_eq!(status["conditions"][0]["reason"], "X");
        set_condition(&mut status, json!({"type": "Other", "status": "False"}));
        assert_eq!(status["conditions"].as_array().unwrap().len(), 2);
        assert!(status["conditions"][1]["lastTransitionTime"].is_string());
    }
}
