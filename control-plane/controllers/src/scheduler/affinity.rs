//! Inter-pod affinity and anti-affinity (upstream's InterPodAffinity plugin): a pre-filter
//! counts, per topology domain, the existing pods the incoming pod's terms select and the
//! existing pods whose anti-affinity rejects it; the filter and score then only look up the
//! node's domains.

use std::collections::HashMap;

use super::cache::{Cache, NodeInfo};
use super::filters::{reasons, Code, Plugin, Rejection};
use super::podinfo::{AffinityTerm, NamespaceLabels, PodInfo};

/// A topology domain: (label key, value).
type Domain = (String, String);

/// The counts the filter needs for one incoming pod.
#[derive(Debug, Default)]
pub struct AffinityState {
    /// Domains where an existing pod's required anti-affinity selects the incoming pod.
    existing_anti: HashMap<Domain, i64>,
    /// Domains with pods matching all of the incoming pod's required affinity terms.
    affinity: HashMap<Domain, i64>,
    /// Domains with pods matching one of its required anti-affinity terms.
    anti: HashMap<Domain, i64>,
    required: Vec<AffinityTerm>,
    required_anti: Vec<AffinityTerm>,
    /// Whether the pod matches its own required affinity terms (the first of a group may go
    /// anywhere).
    matches_itself: bool,
}

fn domain_of(node: &NodeInfo, key: &str) -> Option<Domain> {
    node.labels.get(key).map(|v| (key.to_string(), v.clone()))
}

/// Builds the filter state; `None` when neither the pod nor any existing pod has required
/// inter-pod terms (the filter then passes every node).
pub fn prefilter(pod: &PodInfo, cache: &Cache) -> Option<AffinityState> {
    let own = &pod.affinity;
    if own.required.is_empty()
        && own.required_anti.is_empty()
        && cache.pods_with_required_anti() == 0
    {
        return None;
    }
    let ns = &cache.namespaces;
    let mut state = AffinityState {
        required: own.required.clone(),
        required_anti: own.required_anti.clone(),
        matches_itself: own.required.iter().all(|t| t.matches(pod, ns)),
        ..Default::default()
    };
    let own_terms = !own.required.is_empty() || !own.required_anti.is_empty();
    for node in cache.nodes() {
        if !own_terms && node.pods_with_required_anti == 0 {
            continue;
        }
        for existing in &node.pods {
            if existing.key == pod.key {
                continue;
            }
            for term in &existing.affinity.required_anti {
                if term.matches(pod, ns) {
                    if let Some(d) = domain_of(node, &term.topology_key) {
                        *state.existing_anti.entry(d).or_default() += 1;
                    }
                }
            }
            if !own.required.is_empty() && own.required.iter().all(|t| t.matches(existing, ns)) {
                for term in &own.required {
                    if let Some(d) = domain_of(node, &term.topology_key) {
                        *state.affinity.entry(d).or_default() += 1;
                    }
                }
            }
            for term in &own.required_anti {
                if term.matches(existing, ns) {
                    if let Some(d) = domain_of(node, &term.topology_key) {
                        *state.anti.entry(d).or_default() += 1;
                    }
                }
            }
        }
    }
    Some(state)
}

impl AffinityState {
    /// The InterPodAffinity filter for one node.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let existing_conflict = self
            .existing_anti
            .iter()
            .any(|((k, v), n)| *n > 0 && node.labels.get(k) == Some(v));
        if existing_conflict {
            return Err(Rejection::new(
                Plugin::InterPodAffinity,
                Code::Unschedulable,
                reasons::EXISTING_ANTI_AFFINITY,
            ));
        }
        if !self.satisfies_affinity(node) {
            return Err(Rejection::new(
                Plugin::InterPodAffinity,
                Code::Unresolvable,
                reasons::AFFINITY,
            ));
        }
        for term in &self.required_anti {
            if let Some(d) = domain_of(node, &term.topology_key) {
                if self.anti.get(&d).copied().unwrap_or(0) > 0 {
                    return Err(Rejection::new(
                        Plugin::InterPodAffinity,
                        Code::Unschedulable,
                        reasons::ANTI_AFFINITY,
                    ));
                }
            }
        }
        Ok(())
    }

    fn satisfies_affinity(&self, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for term in &self.required {
            match domain_of(node, &term.topology_key) {
                Some(d) => {
                    if self.affinity.get(&d).copied().unwrap_or(0) <= 0 {
                        pods_exist = false;
                    }
                }
                None => return false,
            }
        }
        pods_exist || (self.affinity.is_empty() && self.matches_itself)
    }
}

/// Preferred inter-pod affinity as per-domain scores: the incoming pod's preferred terms
/// over existing pods, and existing pods' terms over the incoming pod (required affinity
/// counting with upstream's hardPodAffinityWeight 1). `None` when nothing applies.
pub fn score_state(pod: &PodInfo, cache: &Cache) -> Option<HashMap<Domain, i64>> {
    let own = &pod.affinity;
    let own_preferred = !own.preferred.is_empty() || !own.preferred_anti.is_empty();
    if !own_preferred && cache.pods_with_affinity() == 0 {
        return None;
    }
    let ns: &NamespaceLabels = &cache.namespaces;
    let mut scores: HashMap<Domain, i64> = HashMap::new();
    let mut add = |node: &NodeInfo, key: &str, w: i64| {
        if let Some(d) = domain_of(node, key) {
            *scores.entry(d).or_default() += w;
        }
    };
    for node in cache.nodes() {
        if !own_preferred && node.pods_with_affinity == 0 {
            continue;
        }
        for existing in &node.pods {
            if existing.key == pod.key {
                continue;
            }
            for t in &own.preferred {
                if t.term.matches(existing, ns) {
                    add(node, &t.term.topology_key, t.weight);
                }
            }
            for t in &own.preferred_anti {
                if t.term.matches(existing, ns) {
                    add(node, &t.term.topology_key, -t.weight);
                }
            }
            let theirs = &existing.affinity;
            for t in &theirs.required {
                if t.matches(pod, ns) {
                    add(node, &t.topology_key, 1);
                }
            }
            for t in &theirs.preferred {
                if t.term.matches(pod, ns) {
                    add(node, &t.term.topology_key, t.weight);
                }
            }
            for t in &theirs.preferred_anti {
                if t.term.matches(pod, ns) {
                    add(node, &t.term.topology_key, -t.weight);
                }
            }
        }
    }
    scores.retain(|_, v| *v != 0);
    (!scores.is_empty()).then_some(scores)
}

/// A node's raw preferred inter-pod affinity score: the sum of its domains' scores.
pub fn node_score(scores: &HashMap<Domain, i64>, node: &NodeInfo) -> i64 {
    scores
        .iter()
        .filter(|((k, v), _)| node.labels.get(k) == Some(v))
        .map(|(_, s)| *s)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{bound, node, pod};
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::{
        Affinity, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    fn labelled(name: &str, app: &str) -> Pod {
        let mut p = pod(name, "", "");
        p.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        p
    }

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn cluster() -> Cache {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "8Gi", &[("zone", "a"), ("host", "n1")]));
        c.set_node(node("n2", "4", "8Gi", &[("zone", "a"), ("host", "n2")]));
        c.set_node(node("n3", "4", "8Gi", &[("zone", "b"), ("host", "n3")]));
        c
    }

    fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p), &Priorities::default())
    }

    fn verdicts(state: &AffinityState, c: &Cache) -> Vec<Option<&'static str>> {
        ["n1", "n2", "n3"]
            .iter()
            .map(|n| {
                state
                    .filter(c.node(n).unwrap())
                    .err()
                    .map(|r| match r.reasons[0].as_ref() {
                        reasons::AFFINITY => "affinity",
                        reasons::ANTI_AFFINITY => "anti",
                        reasons::EXISTING_ANTI_AFFINITY => "existing",
                        _ => "other",
                    })
            })
            .collect()
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let mut c = cluster();
        c.add_bound(bound(labelled("db", "db"), "n3"));
        let mut p = labelled("web", "web");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term("db", "zone")]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let i = info(p);
        let s = prefilter(&i, &c).unwrap();
        assert_eq!(
            verdicts(&s, &c),
            vec![Some("affinity"), Some("affinity"), None]
        );
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let c = cluster();
        let mut p = labelled("web", "web");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    "web", "zone",
                )]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let i = info(p);
        let s = prefilter(&i, &c).unwrap();
        assert_eq!(verdicts(&s, &c), vec![None, None, None]);
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut c = cluster();
        // An existing pod refusing company of app=web in its zone.
        let mut guard = labelled("guard", "guard");
        guard.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    "web", "zone",
                )]),
                ..Default::default()
            }),
            ..Default::default()
        });
        c.add_bound(bound(guard, "n1"));
        let i = info(labelled("web", "web"));
        let s = prefilter(&i, &c).unwrap();
        assert_eq!(
            verdicts(&s, &c),
            vec![Some("existing"), Some("existing"), None]
        );

        // The incoming pod refusing another web pod on the same host.
        let mut c = cluster();
        c.add_bound(bound(labelled("web-0", "web"), "n2"));
        let mut p = labelled("web-1", "web");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(
                    "web", "host",
                )]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let i = info(p);
        let s = prefilter(&i, &c).unwrap();
        assert_eq!(verdicts(&s, &c), vec![None, Some("anti"), None]);
    }

    #[test]
    fn no_terms_anywhere_means_no_state() {
        let mut c = cluster();
        c.add_bound(bound(labelled("db", "db"), "n3"));
        assert!(prefilter(&info(labelled("web", "web")), &c).is_none());
        assert!(score_state(&info(labelled("web", "web")), &c).is_none());
    }

    #[test]
    fn preferred_terms_score_domains() {
        let mut c = cluster();
        c.add_bound(bound(labelled("cache", "cache"), "n3"));
        c.add_bound(bound(labelled("noisy", "noisy"), "n1"));
        let mut p = labelled("web", "web");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 10,
                        pod_affinity_term: term("cache", "zone"),
                    },
                ]),
                ..Default::default()
            }),
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 5,
                        pod_affinity_term: term("noisy", "host"),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let i = info(p);
        let s = score_state(&i, &c).unwrap();
        let score = |n: &str| node_score(&s, c.node(n).unwrap());
        assert_eq!((score("n1"), score("n2"), score("n3")), (-5, 0, 10));
    }
}
