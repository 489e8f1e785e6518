//! Pod topology spread (upstream's PodTopologySpread): `DoNotSchedule` constraints filter by
//! skew, `ScheduleAnyway` ones score. Matching pods are counted per domain once per
//! scheduling attempt, over the nodes the constraint's policies admit.
//!
//! A pod with no constraints of its own that a ReplicaSet, ReplicationController or
//! StatefulSet controls gets upstream's system defaults (hostname with maxSkew 3, zone with
//! maxSkew 5, both `ScheduleAnyway`), so replicas spread over nodes and zones. Upstream
//! selects the pods to count with the selectors of the pod's controller and Services; here
//! they are the pods the same controller controls.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use super::cache::{Cache, NodeInfo};
use super::filters::{reasons, Code, Plugin, PodContext, Rejection};
use super::podinfo::PodInfo;
use super::selectors::Selector;
use crate::manager::claim::controller_of;

/// The label that names a node's own domain.
const HOSTNAME: &str = "kubernetes.io/hostname";

/// The label that names a node's zone.
const ZONE: &str = "topology.kubernetes.io/zone";

/// Upstream's system default constraints: (topology key, maxSkew).
const SYSTEM_DEFAULTS: [(&str, i64); 2] = [(HOSTNAME, 3), (ZONE, 5)];

/// Controllers whose pods get the system default constraints.
const SPREAD_OWNERS: [&str; 3] = ["ReplicaSet", "ReplicationController", "StatefulSet"];

/// Which pods a constraint counts.
#[derive(Debug)]
enum Counted {
    /// Those its label selector matches.
    Selected(Selector),
    /// Those the controller with this UID controls (system defaults).
    ControlledBy(String),
}

impl Counted {
    fn matches(&self, pod: &PodInfo) -> bool {
        match self {
            Counted::Selected(s) => s.matches(&pod.labels),
            Counted::ControlledBy(uid) => controller_uid(pod) == Some(uid.as_str()),
        }
    }
}

/// The UID of the controller owning `pod`, if any.
fn controller_uid(pod: &PodInfo) -> Option<&str> {
    controller(pod).map(|(_, uid)| uid)
}

/// (kind, uid) of the pod's controller reference.
fn controller(pod: &PodInfo) -> Option<(&str, &str)> {
    controller_of(&pod.pod.metadata).map(|r| (r.kind.as_str(), r.uid.as_str()))
}

/// One compiled constraint.
#[derive(Debug)]
struct Constraint {
    max_skew: i64,
    key: String,
    counted: Counted,
    min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
}

fn constraints(pod: &PodInfo, hard: bool) -> Vec<Constraint> {
    let spec = pod.spec();
    if !hard
        && spec
            .topology_spread_constraints
            .as_ref()
            .is_none_or(Vec::is_empty)
    {
        return system_defaults(pod);
    }
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .filter(|c| (c.when_unsatisfiable == "DoNotSchedule") == hard)
        .map(|c: &TopologySpreadConstraint| {
            let mut selector = Selector::new(c.label_selector.as_ref());
            for k in c.match_label_keys.iter().flatten() {
                selector = selector.with_key_of(&pod.labels, k, false);
            }
            Constraint {
                max_skew: i64::from(c.max_skew.max(1)),
                key: c.topology_key.clone(),
                counted: Counted::Selected(selector),
                min_domains: i64::from(c.min_domains.unwrap_or(1).max(1)),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

/// The system default constraints for a pod its controller should spread; none otherwise.
fn system_defaults(pod: &PodInfo) -> Vec<Constraint> {
    let Some((kind, uid)) = controller(pod) else {
        return Vec::new();
    };
    if !SPREAD_OWNERS.contains(&kind) {
        return Vec::new();
    }
    SYSTEM_DEFAULTS
        .iter()
        .map(|(key, max_skew)| Constraint {
            max_skew: *max_skew,
            key: key.to_string(),
            counted: Counted::ControlledBy(uid.to_string()),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        })
        .collect()
}

/// Pods on `node` in the pod's namespace, not terminating, that `c` selects.
fn matching(pod: &PodInfo, c: &Constraint, node: &NodeInfo) -> i64 {
    if let Counted::ControlledBy(uid) = &c.counted {
        // A controller's pods share its namespace. The pod itself is only here when it is
        // already placed on this node.
        let itself = pod.node_name == node.name
            && !pod.terminating
            && controller_uid(pod) == Some(uid.as_str())
            && node.pods.iter().any(|p| p.key == pod.key);
        return node.controlled_by(uid) - i64::from(itself);
    }
    node.pods
        .iter()
        .filter(|p| {
            !p.terminating
                && p.namespace == pod.namespace
                && p.key != pod.key
                && c.counted.matches(p)
        })
        .count() as i64
}

/// Whether `node` takes part in counting for `c`.
fn eligible(ctx: &PodContext, c: &Constraint, node: &NodeInfo) -> bool {
    (!c.honor_affinity || ctx.matches_node_affinity(node))
        && (!c.honor_taints || ctx.untolerated_taint(node).is_none())
}

/// Counts for the filter.
#[derive(Debug)]
pub struct SpreadState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value → matching pods.
    counts: Vec<HashMap<String, i64>>,
}

/// Builds the filter state; `None` without `DoNotSchedule` constraints.
pub fn prefilter(ctx: &PodContext, cache: &Cache) -> Option<SpreadState> {
    let constraints = constraints(ctx.info, true);
    if constraints.is_empty() {
        return None;
    }
    let mut counts = vec![HashMap::new(); constraints.len()];
    for node in cache.nodes() {
        if !constraints.iter().all(|c| node.labels.contains_key(&c.key)) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !eligible(ctx, c, node) {
                continue;
            }
            let value = node.labels.get(&c.key).cloned().unwrap_or_default();
            *counts[i].entry(value).or_insert(0) += matching(ctx.info, c, node);
        }
    }
    Some(SpreadState {
        constraints,
        counts,
    })
}

impl SpreadState {
    /// The PodTopologySpread filter for one node.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.key) else {
                return Err(Rejection::new(
                    Plugin::PodTopologySpread,
                    Code::Unresolvable,
                    reasons::SPREAD_LABEL,
                ));
            };
            let counts = &self.counts[i];
            let self_match = i64::from(c.counted.matches(pod));
            let here = counts.get(value).copied().unwrap_or(0);
            let min = if (counts.len() as i64) < c.min_domains {
                0
            } else {
                counts
                    .values()
                    .copied()
                    .min()
                    .unwrap_or(i64::from(i32::MAX))
            };
            if here + self_match - min > c.max_skew {
                return Err(Rejection::new(
                    Plugin::PodTopologySpread,
                    Code::Unschedulable,
                    reasons::SPREAD,
                ));
            }
        }
        Ok(())
    }
}

/// Counts for scoring `ScheduleAnyway` constraints over the feasible nodes.
#[derive(Debug)]
pub struct SpreadScore {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    /// Whether a node must carry every topology key to count (not so for system defaults,
    /// which skip the keys a node lacks).
    require_all: bool,
}

/// Builds the score state; `None` without `ScheduleAnyway` constraints.
pub fn score_state(ctx: &PodContext, cache: &Cache, feasible: &[&NodeInfo]) -> Option<SpreadScore> {
    let constraints = constraints(ctx.info, false);
    if constraints.is_empty() {
        return None;
    }
    let require_all = !matches!(constraints[0].counted, Counted::ControlledBy(_));
    let counts_on = |node: &NodeInfo| {
        if require_all {
            constraints.iter().all(|c| node.labels.contains_key(&c.key))
        } else {
            constraints.iter().any(|c| node.labels.contains_key(&c.key))
        }
    };
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    let mut considered = 0usize;
    for node in feasible {
        if !counts_on(node) {
            continue;
        }
        considered += 1;
        for (i, c) in constraints.iter().enumerate() {
            if let Some(v) = node.labels.get(&c.key) {
                counts[i].entry(v.clone()).or_insert(0);
            }
        }
    }
    let weights = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let size = if c.key == HOSTNAME {
                considered
            } else {
                counts[i].len()
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    for node in cache.nodes() {
        if !counts_on(node) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if !eligible(ctx, c, node) {
                continue;
            }
            let Some(v) = node.labels.get(&c.key) else {
                continue;
            };
            if let Some(n) = counts[i].get_mut(v) {
                *n += matching(ctx.info, c, node);
            }
        }
    }
    Some(SpreadScore {
        constraints,
        counts,
        weights,
        require_all,
    })
}

impl SpreadScore {
    /// Raw score (lower is better, as upstream's before normalising); `None` for nodes
    /// missing a topology key (they score 0 after normalising).
    pub fn raw(&self, node: &NodeInfo) -> Option<i64> {
        let mut score = 0f64;
        let mut counted = false;
        for (i, c) in self.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.key) else {
                if self.require_all {
                    return None;
                }
                continue;
            };
            counted = true;
            let n = self.counts[i].get(v).copied().unwrap_or(0);
            score += n as f64 * self.weights[i] + (c.max_skew - 1) as f64;
        }
        counted.then_some(score.round() as i64)
    }
}

/// Upstream's PodTopologySpread normalisation: fewer matching pods score higher; ignored
/// nodes (`None`) score 0.
pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let present = raw.iter().flatten();
    let min = present.clone().copied().min().unwrap_or(0);
    let max = present.copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => 100,
            Some(s) => 100 * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{bound, node, pod};
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn web(name: &str) -> Pod {
        let mut p = pod(name, "", "");
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p
    }

    fn spread(mut p: Pod, key: &str, skew: i32, when: &str, min_domains: Option<i32>) -> Pod {
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: skew,
                topology_key: key.into(),
                when_unsatisfiable: when.into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                }),
                min_domains,
                ..Default::default()
            }]);
        p
    }

    fn cluster() -> Cache {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "8Gi", &[("zone", "a")]));
        c.set_node(node("n2", "4", "8Gi", &[("zone", "b")]));
        c.set_node(node("n3", "4", "8Gi", &[]));
        c.add_bound(bound(web("w1"), "n1"));
        c
    }

    #[test]
    fn skew_filters_and_missing_labels_are_unresolvable() {
        let c = cluster();
        let i = PodInfo::new(
            Arc::new(spread(web("new"), "zone", 1, "DoNotSchedule", None)),
            &Priorities::default(),
        );
        let ctx = PodContext::new(&i);
        let s = prefilter(&ctx, &c).unwrap();
        let err = s.filter(&i, c.node("n1").unwrap()).unwrap_err();
        assert_eq!(err.reasons, vec![reasons::SPREAD]);
        assert_eq!(err.code, Code::Unschedulable);
        assert!(s.filter(&i, c.node("n2").unwrap()).is_ok());
        let err = s.filter(&i, c.node("n3").unwrap()).unwrap_err();
        assert_eq!(err.reasons, vec![reasons::SPREAD_LABEL]);
        assert_eq!(err.code, Code::Unresolvable);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let mut c = cluster();
        c.add_bound(bound(web("w2"), "n2"));
        // Two domains with one pod each: skew 1 → fits anywhere with maxSkew 1...
        let i = PodInfo::new(
            Arc::new(spread(web("new"), "zone", 1, "DoNotSchedule", None)),
            &Priorities::default(),
        );
        let s = prefilter(&PodContext::new(&i), &c).unwrap();
        assert!(s.filter(&i, c.node("n1").unwrap()).is_ok());
        // ...but with minDomains 3 the global minimum is 0, so 1 + 1 - 0 > 1.
        let i = PodInfo::new(
            Arc::new(spread(web("new"), "zone", 1, "DoNotSchedule", Some(3))),
            &Priorities::default(),
        );
        let s = prefilter(&PodContext::new(&i), &c).unwrap();
        assert!(s.filter(&i, c.node("n1").unwrap()).is_err());
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let c = cluster();
        let i = PodInfo::new(
            Arc::new(spread(web("new"), "zone", 1, "ScheduleAnyway", None)),
            &Priorities::default(),
        );
        let ctx = PodContext::new(&i);
        assert!(prefilter(&ctx, &c).is_none(), "no hard constraints");
        let feasible: Vec<&NodeInfo> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| c.node(n).unwrap())
            .collect();
        let s = score_state(&ctx, &c, &feasible).unwrap();
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| s.raw(n)).collect();
        // ln(4) ≈ 1.39 for the pod in zone a.
        assert_eq!(raw, vec![Some(1), Some(0), None]);
        assert_eq!(normalize(&raw), vec![0, 100, 0]);
    }

    fn owned(mut p: Pod, kind: &str, uid: &str) -> Pod {
        p.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                kind: kind.into(),
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            },
        ]);
        p
    }

    #[test]
    fn replicas_spread_by_default_over_nodes() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "8Gi", &[(HOSTNAME, "n1")]));
        c.set_node(node("n2", "4", "8Gi", &[(HOSTNAME, "n2")]));
        c.add_bound(bound(owned(pod("r1", "", ""), "ReplicaSet", "rs-1"), "n1"));
        c.add_bound(bound(owned(pod("r2", "", ""), "ReplicaSet", "rs-1"), "n1"));
        // Another controller's pods on n2 do not count.
        c.add_bound(bound(owned(pod("o1", "", ""), "ReplicaSet", "rs-2"), "n2"));
        let feasible: Vec<&NodeInfo> = ["n1", "n2"].iter().map(|n| c.node(n).unwrap()).collect();
        let i = PodInfo::new(
            Arc::new(owned(pod("new", "", ""), "ReplicaSet", "rs-1")),
            &Priorities::default(),
        );
        let ctx = PodContext::new(&i);
        assert!(prefilter(&ctx, &c).is_none(), "defaults never filter");
        let s = score_state(&ctx, &c, &feasible).unwrap();
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| s.raw(n)).collect();
        // Nodes lack the zone key, so only hostname counts: 2·ln(4) + 2 ≈ 5 against 2.
        assert_eq!(raw, vec![Some(5), Some(2)]);
        assert_eq!(normalize(&raw), vec![40, 100]);

        // Bare pods and Jobs' pods get no default constraints.
        for p in [pod("bare", "", ""), owned(pod("j", "", ""), "Job", "job-1")] {
            let i = PodInfo::new(Arc::new(p), &Priorities::default());
            assert!(score_state(&PodContext::new(&i), &c, &feasible).is_none());
        }
    }
}
