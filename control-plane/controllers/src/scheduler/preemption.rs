//! Preemption (upstream's DefaultPreemption): when no node fits, find the node where evicting
//! the fewest, least important lower-priority pods makes the pod fit, preferring victims whose
//! PodDisruptionBudgets allow the disruption. Pure: the decision loop carries out the evictions
//! and the nomination.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::cache::{Cache, NodeInfo};
use super::filters::{self, Code, PodContext};
use super::fit_error::{Reasons, NO_VICTIMS, PREEMPTION_NOT_HELPFUL};
use super::podinfo::PodInfo;
use super::selectors::Selector;

/// A node where preemption makes room, and whom it evicts.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to delete, most important first.
    pub victims: Vec<Arc<PodInfo>>,
    /// How many of them their PodDisruptionBudgets do not allow to go.
    pub violations: usize,
}

/// What preemption reads of a PodDisruptionBudget.
#[derive(Clone, Debug)]
pub struct Budget {
    namespace: String,
    selector: Selector,
    allowed: i32,
    /// Pods already evicted under the budget, whose disruption it has counted.
    disrupted: HashSet<String>,
}

/// Budgets by `namespace/name`.
pub type Budgets = HashMap<String, Budget>;

impl Budget {
    /// The budget preemption weighs, or None when its selector is missing or empty (upstream's
    /// preemption counts such a budget as matching nothing).
    pub fn new(pdb: &PodDisruptionBudget) -> Option<Budget> {
        let spec = pdb.spec.as_ref()?;
        let sel = spec.selector.as_ref()?;
        if crate::manager::selector::is_empty(sel) {
            return None;
        }
        let status = pdb.status.clone().unwrap_or_default();
        Some(Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: Selector::new(Some(sel)),
            allowed: status.disruptions_allowed,
            disrupted: status
                .disrupted_pods
                .unwrap_or_default()
                .into_keys()
                .collect(),
        })
    }
}

/// Splits `pods` (most important first) into those whose eviction some budget does not allow
/// and the rest, as upstream's `filterPodsWithPDBViolation`: each pod takes one disruption from
/// every budget selecting it, unless the budget already counts it.
fn split_by_budgets(
    pods: Vec<Arc<PodInfo>>,
    budgets: &Budgets,
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut left: HashMap<&str, i32> = budgets
        .iter()
        .map(|(k, b)| (k.as_str(), b.allowed))
        .collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violated = false;
        if !p.labels.is_empty() {
            for (key, b) in budgets {
                if b.namespace != p.namespace
                    || !b.selector.matches(&p.labels)
                    || b.disrupted.contains(&p.name)
                {
                    continue;
                }
                if let Some(n) = left.get_mut(key.as_str()) {
                    *n -= 1;
                    violated |= *n < 0;
                }
            }
        }
        if violated {
            violating.push(p);
        } else {
            other.push(p);
        }
    }
    (violating, other)
}

/// Upstream checks at least this many potential nodes for candidates...
const MIN_CANDIDATES: usize = 100;
/// ...or this share of them, whichever is more.
const MIN_CANDIDATES_PERCENT: usize = 10;

/// Whether `a` is more important than `b`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.start_time.cmp(&b.start_time))
}

/// Pods of at least the preemptor's priority nominated to `node`, whose room stays reserved.
fn nominated_for(cache: &Cache, node: &str, pod: &PodInfo) -> Vec<Arc<PodInfo>> {
    cache
        .nominated_on(node)
        .iter()
        .filter(|p| p.key != pod.key && p.priority >= pod.priority)
        .cloned()
        .collect()
}

/// The victims on one node and how many of them violate a budget: every lower-priority pod is
/// removed, then as many as possible are reprieved, those a budget protects first, then the
/// rest, most important first. `Err` carries the reasons the node stays infeasible.
pub fn select_victims(
    ctx: &PodContext,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
    budgets: &Budgets,
) -> Result<(Vec<Arc<PodInfo>>, usize), Vec<String>> {
    let pod = ctx.info;
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(vec![NO_VICTIMS.to_string()]);
    }
    let mut what_if = node.without(&potential);
    if let Err(r) = filters::run(ctx, &what_if, nominated) {
        return Err(r.reasons.iter().map(|s| s.to_string()).collect());
    }
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, other) = split_by_budgets(potential, budgets);
    let mut victims = Vec::new();
    let mut violations = 0;
    for (p, protected) in violating
        .into_iter()
        .map(|p| (p, true))
        .chain(other.into_iter().map(|p| (p, false)))
    {
        what_if.push(p.clone());
        if filters::run(ctx, &what_if, nominated).is_err() {
            what_if.take(&p.key);
            violations += usize::from(protected);
            victims.push(p);
        }
    }
    victims.sort_by(|a, b| more_important(a, b));
    if victims.is_empty() {
        return Err(vec![format!(
            "expected at least one victim pod on node {:?}",
            node.name
        )]);
    }
    Ok((victims, violations))
}

/// Upstream's `pickOneNodeForPreemption`: the fewest budget violations, then the lowest
/// highest-priority victim, the lowest priority sum, the fewest victims, and the latest start
/// among the most important victims.
pub fn pick(candidates: &[Candidate]) -> Option<&Candidate> {
    let key = |c: &Candidate| {
        let highest = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_of_highest = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| v.start_time)
            .min()
            .unwrap_or(i64::MAX);
        (
            c.violations,
            highest,
            sum,
            c.victims.len(),
            std::cmp::Reverse(earliest_of_highest),
        )
    };
    // `min_by_key` keeps the first of equals, as upstream keeps the first candidate.
    candidates.iter().min_by_key(|c| key(c))
}

/// Runs preemption for a pod no node fits. `rejected` holds each node's rejection code from
/// the filters. Returns the chosen candidate, or upstream's message for why there is none
/// (without the `preemption: ` prefix).
pub fn preempt(
    ctx: &PodContext,
    cache: &Cache,
    rejected: &HashMap<String, Code>,
    start: usize,
) -> Result<Candidate, String> {
    let pod = ctx.info;
    if pod.preempt_never {
        return Err("not eligible due to preemptionPolicy=Never".into());
    }
    if !pod.nominated_node.is_empty() {
        if let Some(n) = cache.node(&pod.nominated_node) {
            if n.pods
                .iter()
                .any(|p| p.terminating && p.priority < pod.priority)
            {
                return Err("not eligible due to a terminating pod on the nominated node".into());
            }
        }
    }
    let total = cache.node_count();
    let names = cache.node_names();
    let potential: Vec<&str> = (0..names.len())
        .map(|i| names[(start + i) % names.len()].as_str())
        .filter(|n| rejected.get(*n) == Some(&Code::Unschedulable))
        .collect();
    let wanted = (potential.len() * MIN_CANDIDATES_PERCENT / 100)
        .max(MIN_CANDIDATES)
        .min(potential.len());
    let mut candidates = Vec::new();
    let mut reasons = Reasons::default();
    let mut evaluated = 0;
    for name in &potential {
        let Some(node) = cache.node(name) else {
            continue;
        };
        evaluated += 1;
        match select_victims(ctx, node, &nominated_for(cache, name, pod), &cache.budgets) {
            Ok((victims, violations)) => {
                candidates.push(Candidate {
                    node: name.to_string(),
                    victims,
                    violations,
                });
                if candidates.len() >= wanted {
                    break;
                }
            }
            Err(rs) => rs.iter().for_each(|r| reasons.add(r)),
        }
    }
    if let Some(best) = pick(&candidates) {
        return Ok(best.clone());
    }
    reasons.add_n(PREEMPTION_NOT_HELPFUL, total.saturating_sub(evaluated));
    Err(reasons.message(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{bound, node, pod};
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::Pod;

    fn prio(mut p: Pod, priority: i32, start: i64) -> Pod {
        p.spec.as_mut().unwrap().priority = Some(priority);
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(start).unwrap(),
        ));
        p
    }

    fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p), &Priorities::default())
    }

    fn unschedulable_everywhere(c: &Cache) -> HashMap<String, Code> {
        c.node_names()
            .iter()
            .map(|n| (n.clone(), Code::Unschedulable))
            .collect()
    }

    #[test]
    fn victims_are_the_fewest_least_important() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "8Gi", &[]));
        c.add_bound(bound(prio(pod("a", "1", ""), 10, 1), "n1"));
        c.add_bound(bound(prio(pod("b", "1", ""), 5, 2), "n1"));
        c.add_bound(bound(prio(pod("c", "2", ""), 1, 3), "n1"));
        c.add_bound(bound(prio(pod("vip", "0", ""), 1000, 3), "n1"));
        let p = info(prio(pod("p", "2", ""), 100, 4));
        let ctx = PodContext::new(&p);
        let (victims, _) =
            select_victims(&ctx, c.node("n1").unwrap(), &[], &Budgets::new()).unwrap();
        // Removing c (2 cores, lowest priority) alone makes room; a and b are reprieved.
        let names: Vec<&str> = victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["c"]);
    }

    #[test]
    fn candidates_are_picked_by_lowest_highest_victim() {
        let mut c = Cache::default();
        c.set_node(node("n1", "2", "8Gi", &[]));
        c.set_node(node("n2", "2", "8Gi", &[]));
        c.add_bound(bound(prio(pod("a", "2", ""), 50, 1), "n1"));
        c.add_bound(bound(prio(pod("b", "1", ""), 10, 1), "n2"));
        c.add_bound(bound(prio(pod("c", "1", ""), 10, 2), "n2"));
        let p = info(prio(pod("p", "2", ""), 100, 4));
        let ctx = PodContext::new(&p);
        let got = preempt(&ctx, &c, &unschedulable_everywhere(&c), 0).unwrap();
        assert_eq!(got.node, "n2", "two victims of priority 10 beat one of 50");
        assert_eq!(got.victims.len(), 2);
    }

    fn labelled(mut p: Pod, app: &str) -> Pod {
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p
    }

    fn budget(app: &str, allowed: i32, disrupted: &[&str]) -> PodDisruptionBudget {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": app, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 0, "desiredHealthy": 0,
                       "expectedPods": 0,
                       "disruptedPods": disrupted.iter().map(|p| (p.to_string(), "2026-01-01T00:00:00Z")).collect::<HashMap<_, _>>()}
        }))
        .unwrap()
    }

    #[test]
    fn budgets_steer_preemption_to_victims_they_allow() {
        let mut c = Cache::default();
        c.set_node(node("n1", "1", "8Gi", &[]));
        c.set_node(node("n2", "1", "8Gi", &[]));
        c.add_bound(bound(
            labelled(prio(pod("db-0", "1", ""), 10, 1), "db"),
            "n1",
        ));
        c.add_bound(bound(
            labelled(prio(pod("web-0", "1", ""), 10, 1), "web"),
            "n2",
        ));
        let p = info(prio(pod("p", "1", ""), 100, 4));
        let ctx = PodContext::new(&p);
        let everywhere = unschedulable_everywhere(&c);
        let first = preempt(&ctx, &c, &everywhere, 0).unwrap().node;
        let other = if first == "n1" { "n2" } else { "n1" };
        // A budget that allows no disruption of the first choice's victim moves preemption.
        let app = if first == "n1" { "db" } else { "web" };
        c.budgets.insert(
            format!("default/{app}"),
            Budget::new(&budget(app, 0, &[])).unwrap(),
        );
        let got = preempt(&ctx, &c, &everywhere, 0).unwrap();
        assert_eq!((got.node.as_str(), got.violations), (other, 0));
        // A pod the budget already counts as disrupted does not violate it again.
        let victim = if first == "n1" { "db-0" } else { "web-0" };
        c.budgets.insert(
            format!("default/{app}"),
            Budget::new(&budget(app, 0, &[victim])).unwrap(),
        );
        assert_eq!(preempt(&ctx, &c, &everywhere, 0).unwrap().node, first);
        // When every node's victim is protected, preemption still goes ahead, counting it.
        for app in ["db", "web"] {
            c.budgets.insert(
                format!("default/{app}"),
                Budget::new(&budget(app, 0, &[])).unwrap(),
            );
        }
        assert_eq!(preempt(&ctx, &c, &everywhere, 0).unwrap().violations, 1);
        // An empty selector protects nothing.
        let mut empty = budget("db", 0, &[]);
        empty.spec.as_mut().unwrap().selector = Some(Default::default());
        assert!(Budget::new(&empty).is_none());
    }

    #[test]
    fn no_victims_and_policy_never() {
        let mut c = Cache::default();
        c.set_node(node("n1", "1", "8Gi", &[]));
        c.set_node(node("n2", "1", "8Gi", &[]));
        c.add_bound(bound(prio(pod("a", "1", ""), 500, 1), "n1"));
        c.add_bound(bound(prio(pod("b", "1", ""), 500, 1), "n2"));
        let p = info(prio(pod("p", "1", ""), 100, 4));
        let ctx = PodContext::new(&p);
        let mut rejected = unschedulable_everywhere(&c);
        rejected.insert("n2".into(), Code::Unresolvable);
        assert_eq!(
            preempt(&ctx, &c, &rejected, 0).unwrap_err(),
            "0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
        );
        let mut never = prio(pod("p", "1", ""), 100, 4);
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        let n = info(never);
        assert_eq!(
            preempt(&PodContext::new(&n), &c, &rejected, 0).unwrap_err(),
            "not eligible due to preemptionPolicy=Never"
        );
    }

    #[test]
    fn victims_that_do_not_free_enough_leave_the_node_infeasible() {
        let mut c = Cache::default();
        c.set_node(node("n1", "2", "8Gi", &[]));
        c.add_bound(bound(prio(pod("a", "1", ""), 1, 1), "n1"));
        c.add_bound(bound(prio(pod("vip", "1", ""), 1000, 1), "n1"));
        let p = info(prio(pod("p", "2", ""), 100, 4));
        let err = select_victims(
            &PodContext::new(&p),
            c.node("n1").unwrap(),
            &[],
            &Budgets::new(),
        )
        .unwrap_err();
        assert_eq!(err, vec!["Insufficient cpu".to_string()]);
    }
}
