//! Scores: how good each feasible node is for a pod, 0–100 per plugin after normalising,
//! then weighted and summed as upstream's default profile does (TaintToleration 3,
//! NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
//! NodeResourcesBalancedAllocation 1, ImageLocality 1).

use super::affinity;
use super::cache::{Cache, NodeInfo};
use super::filters::{tolerates, PodContext};
use super::podinfo::PodInfo;
use super::selectors::preferred_node_score;
use super::spread;

/// The highest score a plugin gives.
pub const MAX_SCORE: i64 = 100;

/// Plugin weights of upstream's default profile.
pub mod weights {
    /// TaintToleration.
    pub const TAINT_TOLERATION: i64 = 3;
    /// NodeAffinity (preferred).
    pub const NODE_AFFINITY: i64 = 2;
    /// PodTopologySpread (ScheduleAnyway).
    pub const POD_TOPOLOGY_SPREAD: i64 = 2;
    /// InterPodAffinity (preferred).
    pub const INTER_POD_AFFINITY: i64 = 2;
    /// NodeResourcesFit with the LeastAllocated strategy.
    pub const LEAST_ALLOCATED: i64 = 1;
    /// NodeResourcesBalancedAllocation.
    pub const BALANCED_ALLOCATION: i64 = 1;
    /// ImageLocality.
    pub const IMAGE_LOCALITY: i64 = 1;
}

/// NodeResourcesFit (LeastAllocated, CPU and memory weighted 1 each): the share left free
/// after placing the pod, by non-zero requests.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let pairs = [
        (
            node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.non_zero_requested.memory + pod.non_zero.memory,
            node.allocatable.memory,
        ),
    ];
    let mut sum = 0;
    let mut weights = 0;
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        let score = if requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_SCORE / capacity
        };
        sum += score;
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        sum / weights
    }
}

/// NodeResourcesBalancedAllocation: how evenly CPU and memory would be used (1 − standard
/// deviation of the used fractions), by actual requests. Pods requesting nothing score 0
/// everywhere (upstream skips them).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
        return 0;
    }
    let pairs = [
        (
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.requested.memory + pod.requests.memory,
            node.allocatable.memory,
        ),
    ];
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(_, cap)| *cap != 0)
        .map(|(req, cap)| (*req as f64 / *cap as f64).min(1.0))
        .collect();
    let std = if fractions.len() == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

/// NodeAffinity's raw score: the summed weights of matching preferred terms.
pub fn node_affinity_raw(ctx: &PodContext, node: &NodeInfo) -> i64 {
    preferred_node_score(&ctx.preferred_node_terms, &node.name, &node.labels)
}

/// TaintToleration's raw score: PreferNoSchedule taints the pod does not tolerate.
pub fn taint_raw(ctx: &PodContext, node: &NodeInfo) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| {
            !ctx.tolerations.iter().any(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                ) && tolerates(t, taint)
            })
        })
        .count() as i64
}

const MB: i64 = 1024 * 1024;
const IMAGE_MIN: i64 = 23 * MB;
const IMAGE_MAX_PER_CONTAINER: i64 = 1000 * MB;

/// An image reference as nodes report it: a tag of `latest` when neither tag nor digest is
/// given.
fn normalized_image(image: &str) -> std::borrow::Cow<'_, str> {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.into()
    } else {
        format!("{image}:latest").into()
    }
}

/// Images per pod, normalised once per attempt.
pub fn pod_images(pod: &PodInfo) -> Vec<String> {
    let spec = pod.spec();
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| normalized_image(c.image.as_deref().unwrap_or("")).into_owned())
        .collect()
}

/// ImageLocality: the sizes of the pod's images already on the node, scaled by how many
/// nodes have them, between 23 MB and 1000 MB per container.
pub fn image_locality(images: &[String], node: &NodeInfo, cache: &Cache) -> i64 {
    if images.is_empty() {
        return 0;
    }
    let total = cache.node_count().max(1) as f64;
    let mut sum: i64 = 0;
    for image in images {
        if let Some(size) = node.images.get(image) {
            let spread = cache.image_spread(image) as f64 / total;
            sum = sum.saturating_add((*size as f64 * spread) as i64);
        }
    }
    let max = IMAGE_MAX_PER_CONTAINER * images.len() as i64;
    let sum = sum.clamp(IMAGE_MIN, max);
    MAX_SCORE * (sum - IMAGE_MIN) / (max - IMAGE_MIN)
}

/// Upstream's `DefaultNormalizeScore`: scaled so the best is 100; `reverse` flips it (fewer
/// is better). All zero stays zero (or 100 when reversed).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_SCORE * *s / max;
        if reverse {
            *s = MAX_SCORE - *s;
        }
    }
}

/// InterPodAffinity's normalisation: min–max scaled to 0–100.
pub fn min_max_normalize(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    let min = scores.iter().copied().min().unwrap_or(0);
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
}

/// Weighted total score of every feasible node, in the order given.
pub fn score(ctx: &PodContext, cache: &Cache, feasible: &[&NodeInfo]) -> Vec<i64> {
    let pod = ctx.info;
    let images = pod_images(pod);
    let mut total: Vec<i64> = feasible
        .iter()
        .map(|n| {
            weights::LEAST_ALLOCATED * least_allocated(pod, n)
                + weights::BALANCED_ALLOCATION * balanced_allocation(pod, n)
                + weights::IMAGE_LOCALITY * image_locality(&images, n, cache)
        })
        .collect();
    let mut add = |scores: Vec<i64>, weight: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += weight * s;
        }
    };
    let mut taints: Vec<i64> = feasible.iter().map(|n| taint_raw(ctx, n)).collect();
    default_normalize(&mut taints, true);
    add(taints, weights::TAINT_TOLERATION);
    if !ctx.preferred_node_terms.is_empty() {
        let mut s: Vec<i64> = feasible.iter().map(|n| node_affinity_raw(ctx, n)).collect();
        default_normalize(&mut s, false);
        add(s, weights::NODE_AFFINITY);
    }
    if let Some(state) = spread::score_state(ctx, cache, feasible) {
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| state.raw(n)).collect();
        add(spread::normalize(&raw), weights::POD_TOPOLOGY_SPREAD);
    }
    if let Some(state) = affinity::score_state(pod, cache) {
        let mut s: Vec<i64> = feasible
            .iter()
            .map(|n| affinity::node_score(&state, n))
            .collect();
        min_max_normalize(&mut s);
        add(s, weights::INTER_POD_AFFINITY);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{bound, node, pod};
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelectorRequirement, NodeSelectorTerm, Pod,
        PreferredSchedulingTerm, Taint, Toleration,
    };
    use std::sync::Arc;

    fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p), &Priorities::default())
    }

    #[test]
    fn least_allocated_prefers_free_nodes() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "4Gi", &[]));
        c.set_node(node("n2", "4", "4Gi", &[]));
        c.add_bound(bound(pod("a", "2", "2Gi"), "n1"));
        let p = info(pod("p", "1", "1Gi"));
        // n1: cpu (4000-3000)/4000 = 25, memory 25 → 25; n2: 75.
        assert_eq!(least_allocated(&p, c.node("n1").unwrap()), 25);
        assert_eq!(least_allocated(&p, c.node("n2").unwrap()), 75);
        // Requests over capacity score 0 for that resource.
        let huge = info(pod("h", "8", "1Gi"));
        assert_eq!(least_allocated(&huge, c.node("n2").unwrap()), 37);
        // Best-effort pods count as 100m / 200Mi.
        let be = info(pod("be", "", ""));
        assert_eq!(least_allocated(&be, c.node("n2").unwrap()), (97 + 95) / 2);
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "4Gi", &[]));
        c.add_bound(bound(pod("a", "2", ""), "n1"));
        let n = c.node("n1").unwrap();
        // cpu 3/4, memory 1/4 → std 0.25 → 75.
        assert_eq!(balanced_allocation(&info(pod("p", "1", "1Gi")), n), 75);
        // cpu 2/4, memory 2/4 → 100.
        assert_eq!(balanced_allocation(&info(pod("p", "", "2Gi")), n), 100);
        assert_eq!(balanced_allocation(&info(pod("p", "", "")), n), 0);
    }

    #[test]
    fn taints_prefer_no_schedule() {
        let mut c = Cache::default();
        let mut n = node("n1", "4", "4Gi", &[]);
        n.spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "spot".into(),
            value: Some("true".into()),
            effect: "PreferNoSchedule".into(),
            time_added: None,
        }]);
        c.set_node(n);
        c.set_node(node("n2", "4", "4Gi", &[]));
        let p = info(pod("p", "", ""));
        let ctx = PodContext::new(&p);
        let mut raw = vec![
            taint_raw(&ctx, c.node("n1").unwrap()),
            taint_raw(&ctx, c.node("n2").unwrap()),
        ];
        assert_eq!(raw, vec![1, 0]);
        default_normalize(&mut raw, true);
        assert_eq!(raw, vec![0, 100]);
        let mut tolerant = pod("p", "", "");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("spot".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }]);
        let t = info(tolerant);
        assert_eq!(taint_raw(&PodContext::new(&t), c.node("n1").unwrap()), 0);
    }

    #[test]
    fn preferred_node_affinity_is_normalised() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "4Gi", &[("zone", "a")]));
        c.set_node(node("n2", "4", "4Gi", &[("zone", "b")]));
        let mut p = pod("p", "", "");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 20,
                        preference: NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "zone".into(),
                                operator: "In".into(),
                                values: Some(vec!["b".into()]),
                            }]),
                            match_fields: None,
                        },
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let i = info(p);
        let ctx = PodContext::new(&i);
        let mut s = vec![
            node_affinity_raw(&ctx, c.node("n1").unwrap()),
            node_affinity_raw(&ctx, c.node("n2").unwrap()),
        ];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 100]);
        let feasible = vec![c.node("n1").unwrap(), c.node("n2").unwrap()];
        let total = score(&ctx, &c, &feasible);
        assert!(total[1] > total[0]);
    }

    #[test]
    fn image_locality_scales_with_spread() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "4Gi", &[]));
        c.set_node(node("n2", "4", "4Gi", &[]));
        let mut p = pod("p", "", "");
        p.spec.as_mut().unwrap().containers[0].image = Some("image-on-n1".into());
        let i = info(p);
        let images = pod_images(&i);
        assert_eq!(images, vec!["image-on-n1:latest"]);
        // 100 MiB × 1/2 nodes = 50 MiB → 100 × (50 − 23) / (1000 − 23) = 2.
        assert_eq!(image_locality(&images, c.node("n1").unwrap(), &c), 2);
        assert_eq!(image_locality(&images, c.node("n2").unwrap(), &c), 0);
        assert_eq!(normalized_image("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(normalized_image("app@sha256:00"), "app@sha256:00");
    }

    #[test]
    fn min_max() {
        let mut s = vec![-5, 0, 10];
        min_max_normalize(&mut s);
        assert_eq!(s, vec![0, 33, 100]);
        let mut same = vec![3, 3];
        min_max_normalize(&mut same);
        assert_eq!(same, vec![0, 0]);
    }
}
