//! One scheduling attempt for one pod, pure over the cache: pre-filters, filters over nodes
//! round-robin until enough feasible ones are found (upstream's adaptive
//! percentageOfNodesToScore), scores, the best node (ties broken at random), and, when
//! nothing fits, the FitError message and preemption.

use std::collections::HashMap;
use std::sync::Arc;

use super::cache::{Cache, NodeInfo};
use super::filters::{self, PodContext};
use super::fit_error::{self, Reasons, NO_NODES};
use super::podinfo::PodInfo;
use super::preemption::{self, Candidate};
use super::{affinity, scores, spread};

/// Nodes always checked before stopping early (upstream's `minFeasibleNodesToFind`).
const MIN_FEASIBLE: usize = 100;
/// Lowest adaptive percentage of nodes to find feasible.
const MIN_PERCENT: usize = 5;

/// What to do with the pod.
#[derive(Debug)]
pub enum Decision {
    /// Bind it to this node.
    Bind(String),
    /// No node fits now.
    Unschedulable {
        /// The PodScheduled condition's and FailedScheduling event's message.
        message: String,
        /// Filter plugins that rejected it, so only relevant events retry it.
        rejected_by: u16,
        /// Room made by evicting these pods, if preemption found any.
        preemption: Option<Candidate>,
    },
}

/// How many feasible nodes to find before scoring: all below 100 nodes, else
/// `50 − nodes/125` percent (at least 5 %), at least 100.
pub fn feasible_to_find(nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE {
        return nodes;
    }
    let percent = 50usize.saturating_sub(nodes / 125).max(MIN_PERCENT);
    (nodes * percent / 100).max(MIN_FEASIBLE)
}

/// The decision maker; keeps the round-robin start and a small random generator for ties.
pub struct Decider {
    next_start: usize,
    rng: u64,
}

impl Default for Decider {
    fn default() -> Self {
        Decider {
            next_start: 0,
            rng: rand::random::<u64>() | 1,
        }
    }
}

impl Decider {
    fn random(&mut self, below: usize) -> usize {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % below.max(1) as u64) as usize
    }

    /// Pods nominated to `node` that keep their room from `pod`.
    fn nominated(cache: &Cache, node: &str, pod: &PodInfo) -> Vec<Arc<PodInfo>> {
        let all = cache.nominated_on(node);
        if all.is_empty() {
            return Vec::new();
        }
        all.iter()
            .filter(|p| p.key != pod.key && p.priority >= pod.priority)
            .cloned()
            .collect()
    }

    /// Decides where `pod` goes.
    pub fn decide(&mut self, pod: &PodInfo, cache: &Cache) -> Decision {
        let total = cache.node_count();
        if total == 0 {
            return Decision::Unschedulable {
                message: NO_NODES.into(),
                rejected_by: 0,
                preemption: None,
            };
        }
        let mut ctx = PodContext::new(pod);
        ctx.spread = spread::prefilter(&ctx, cache);
        ctx.affinity = affinity::prefilter(pod, cache);

        // A node the pod was nominated to (by an earlier preemption) is tried first.
        let nominated_node = cache
            .nominated_node(&pod.key)
            .map(str::to_string)
            .or_else(|| Some(pod.nominated_node.clone()).filter(|n| !n.is_empty()));
        if let Some(name) = nominated_node {
            if let Some(node) = cache.node(&name).filter(|n| n.node.is_some()) {
                if filters::run(&ctx, node, &Self::nominated(cache, &name, pod)).is_ok() {
                    return Decision::Bind(name);
                }
            }
        }

        let names = cache.node_names();
        let to_find = feasible_to_find(total);
        let start = self.next_start % total;
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(to_find.min(total));
        let mut rejections = Vec::new();
        let mut processed = 0;
        for i in 0..total {
            let name = &names[(start + i) % total];
            processed += 1;
            let Some(node) = cache.node(name) else {
                continue;
            };
            match filters::run(&ctx, node, &Self::nominated(cache, name, pod)) {
                Ok(()) => {
                    feasible.push(node);
                    if feasible.len() >= to_find {
                        break;
                    }
                }
                Err(r) => rejections.push((name.as_str(), r)),
            }
        }
        self.next_start = (start + processed) % total;

        match feasible.len() {
            0 => {}
            1 => return Decision::Bind(feasible[0].name.clone()),
            _ => {
                let scores = scores::score(&ctx, cache, &feasible);
                let mut best = 0;
                let mut ties = 1;
                for i in 1..scores.len() {
                    if scores[i] > scores[best] {
                        best = i;
                        ties = 1;
                    } else if scores[i] == scores[best] {
                        ties += 1;
                        if self.random(ties) == 0 {
                            best = i;
                        }
                    }
                }
                tracing::trace!(pod = %pod.key, node = %feasible[best].name, score = scores[best], "scored");
                return Decision::Bind(feasible[best].name.clone());
            }
        }

        // Nothing fits: the FitError, then preemption.
        let mut reasons = Reasons::default();
        let mut rejected_by = 0;
        let mut codes = HashMap::with_capacity(rejections.len());
        for (name, r) in &rejections {
            rejected_by |= r.plugin.bit();
            for reason in &r.reasons {
                reasons.add(reason);
            }
            codes.insert(name.to_string(), r.code);
        }
        let start = self.random(total);
        match preemption::preempt(&ctx, cache, &codes, start) {
            Ok(candidate) => Decision::Unschedulable {
                message: fit_error::message(total, &reasons, None),
                rejected_by,
                preemption: Some(candidate),
            },
            Err(why) => Decision::Unschedulable {
                message: fit_error::message(total, &reasons, Some(&why)),
                rejected_by,
                preemption: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{bound, node, pod};
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::Taint;

    fn info(p: k8s_openapi::api::core::v1::Pod) -> PodInfo {
        PodInfo::new(Arc::new(p), &Priorities::default())
    }

    #[test]
    fn adaptive_share_of_nodes() {
        assert_eq!(feasible_to_find(50), 50);
        assert_eq!(feasible_to_find(100), 100);
        assert_eq!(feasible_to_find(1000), 1000 * 42 / 100);
        assert_eq!(feasible_to_find(5000), 500);
        assert_eq!(feasible_to_find(100_000), 5000);
        assert_eq!(feasible_to_find(150), 100);
    }

    #[test]
    fn picks_the_least_loaded_node() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "8Gi", &[]));
        c.set_node(node("n2", "4", "8Gi", &[]));
        c.add_bound(bound(pod("busy", "3", "6Gi"), "n1"));
        let p = info(pod("p", "500m", "512Mi"));
        let mut d = Decider::default();
        for _ in 0..5 {
            assert!(matches!(d.decide(&p, &c), Decision::Bind(n) if n == "n2"));
        }
    }

    #[test]
    fn fit_error_message_as_upstream() {
        let mut c = Cache::default();
        let mut cp = node("cp", "8", "8Gi", &[]);
        cp.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        c.set_node(cp);
        c.set_node(node("w1", "1", "8Gi", &[]));
        c.set_node(node("w2", "1", "8Gi", &[]));
        let p = info(pod("p", "2", ""));
        let Decision::Unschedulable {
            message,
            rejected_by,
            preemption,
        } = Decider::default().decide(&p, &c)
        else {
            panic!("should not fit")
        };
        assert!(preemption.is_none());
        assert_eq!(
            rejected_by,
            filters::Plugin::TaintToleration.bit() | filters::Plugin::NodeResourcesFit.bit()
        );
        assert_eq!(
            message,
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 \
             nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption \
             victims found for incoming pod.."
        );
    }

    #[test]
    fn no_nodes() {
        let p = info(pod("p", "", ""));
        assert!(matches!(
            Decider::default().decide(&p, &Cache::default()),
            Decision::Unschedulable { message, .. } if message == NO_NODES
        ));
    }

    #[test]
    fn preemption_nominates_and_the_nominated_node_is_reserved() {
        let mut c = Cache::default();
        c.set_node(node("n1", "2", "8Gi", &[]));
        let mut low = pod("low", "2", "");
        low.spec.as_mut().unwrap().priority = Some(1);
        c.add_bound(bound(low, "n1"));
        let mut high = pod("high", "2", "");
        high.spec.as_mut().unwrap().priority = Some(100);
        let high = Arc::new(info(high));
        let Decision::Unschedulable {
            message,
            preemption: Some(cand),
            ..
        } = Decider::default().decide(&high, &c)
        else {
            panic!("expected preemption")
        };
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        assert_eq!(cand.node, "n1");
        assert_eq!(cand.victims[0].name, "low");
        // Once the victim is gone, the room is kept for the preemptor against others.
        c.nominate(high.clone(), "n1");
        c.remove_pod("default/low");
        let other = info(pod("other", "1", ""));
        assert!(matches!(
            Decider::default().decide(&other, &c),
            Decision::Unschedulable { .. }
        ));
        assert!(matches!(Decider::default().decide(&high, &c), Decision::Bind(n) if n == "n1"));
    }

    #[test]
    fn round_robin_spreads_evaluation() {
        let mut c = Cache::default();
        for i in 0..300 {
            c.set_node(node(&format!("n{i:03}"), "4", "8Gi", &[]));
        }
        let p = info(pod("p", "100m", ""));
        let mut d = Decider::default();
        let Decision::Bind(first) = d.decide(&p, &c) else {
            panic!()
        };
        assert_eq!(d.next_start, 144, "48 % of 300 nodes examined");
        assert!(!first.is_empty());
    }
}
