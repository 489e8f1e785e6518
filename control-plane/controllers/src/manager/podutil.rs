//! Pod facts controllers share: active, ready, available, and the order in which a controller
//! deletes surplus pods (upstream's `ActivePodsWithRanks`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The annotation lowering or raising a pod's priority for deletion on scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Whether a pod counts towards its controller: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition last became True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            since
                .as_second()
                .saturating_add(i64::from(min_ready_seconds))
                <= now.as_second()
        }
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// `t1` after `t2`, with a missing time first (as upstream's `afterOrZero`).
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (None, _) | (_, None) => t1.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// The log2 bucket of how long ago `t` was; equal buckets count as equally old, so scale-down
/// does not always pick the very newest pods (upstream's LogarithmicScaleDown).
fn log_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.as_nanosecond() - t.as_nanosecond();
    if nanos > 0 {
        (nanos as f64).log2() as i64
    } else {
        -1
    }
}

/// Whether pod `a` goes before pod `b` when time-ordered; `None` when they tie.
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp) -> Option<bool> {
    if a == b {
        return None;
    }
    match (a, b) {
        (Some(x), Some(y)) => {
            let diff = log_bucket(x, now) - log_bucket(y, now);
            if diff == 0 {
                None
            } else {
                Some(diff < 0)
            }
        }
        _ => Some(after_or_zero(a, b)),
    }
}

/// Orders `pods` (all active) for deletion, first to go first, as upstream ranks them:
/// unscheduled before scheduled; Pending before Unknown before Running; not ready before
/// ready; lower `pod-deletion-cost` first; pods sharing a node with more `related` pods first;
/// more recently ready first; more restarts first; newer first; then by uid.
pub fn sort_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut on_node: HashMap<&str, i32> = HashMap::new();
    for p in related {
        if !node(p).is_empty() && is_active(p) {
            *on_node.entry(node(p)).or_insert(0) += 1;
        }
    }
    let rank = |p: &Pod| on_node.get(node(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| {
        let (a, b) = (a.as_ref(), b.as_ref());
        let assigned = (!node(a).is_empty()).cmp(&!node(b).is_empty());
        if assigned != Ordering::Equal {
            return assigned;
        }
        let phase = phase_rank(a).cmp(&phase_rank(b));
        if phase != Ordering::Equal {
            return phase;
        }
        let ready = is_ready(a).cmp(&is_ready(b));
        if ready != Ordering::Equal {
            return ready;
        }
        let cost = deletion_cost(a).cmp(&deletion_cost(b));
        if cost != Ordering::Equal {
            return cost;
        }
        let ranked = rank(b).cmp(&rank(a));
        if ranked != Ordering::Equal {
            return ranked;
        }
        let uid = || a.metadata.uid.cmp(&b.metadata.uid);
        if is_ready(a) && is_ready(b) {
            let (ra, rb) = (ready_since(a).flatten(), ready_since(b).flatten());
            if ra != rb {
                return match newer_first(ra, rb, now) {
                    None => uid(),
                    Some(true) => Ordering::Less,
                    Some(false) => Ordering::Greater,
                };
            }
        }
        let restarts = restarts(b).cmp(&restarts(a));
        if restarts != Ordering::Equal {
            return restarts;
        }
        let (ca, cb) = (
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            b.metadata.creation_timestamp.as_ref().map(|t| t.0),
        );
        match newer_first(ca, cb, now) {
            None => uid(),
            Some(true) => Ordering::Less,
            Some(false) => Ordering::Greater,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created_ago: i64) -> Arc<Pod> {
        let now = Timestamp::now().as_second();
        let t = |ago: i64| Time(Timestamp::from_second(now - ago).unwrap_or(Timestamp::UNIX_EPOCH));
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(name.into());
        p.metadata.creation_timestamp = Some(t(created_ago));
        p.spec = Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(t(created_ago)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn deletion_order_follows_upstream_ranks() {
        let mut pods = vec![
            pod("running-ready-old", "n1", "Running", true, 100_000),
            pod("running-ready-new", "n1", "Running", true, 10),
            pod("running-not-ready", "n1", "Running", false, 50),
            pod("pending", "n1", "Pending", false, 50),
            pod("unscheduled", "", "Pending", false, 50),
        ];
        sort_for_deletion(&mut pods, &[], Timestamp::now());
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "running-not-ready",
                "running-ready-new",
                "running-ready-old"
            ]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", "n", "Running", true, 5);
        let now = Timestamp::now();
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 3, now));
        assert!(!is_available(&p, 60, now));
        assert!(!is_available(&pod("q", "n", "Running", false, 5), 0, now));
    }
}
