//! Label selectors (pod affinity, topology spread) and node selectors (node affinity), compiled
//! once per pod so matching a node or an existing pod is a few map lookups. Selectors that do
//! not parse match nothing, as upstream's `LabelSelectorAsSelector` errors leave them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One requirement on a label.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(vs), Some(v)) => vs.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), Some(v)) => !vs.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

/// A compiled label selector: objects meeting every requirement (none: every object), or
/// nothing at all, which is what a missing or malformed selector becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector(Option<Vec<Requirement>>);

impl Selector {
    /// The selector matching no object.
    pub const NOTHING: Selector = Selector(None);
}

fn op(operator: &str, values: Vec<String>, numeric: bool) -> Option<Op> {
    Some(match operator {
        "In" if !values.is_empty() => Op::In(values),
        "NotIn" if !values.is_empty() => Op::NotIn(values),
        "Exists" if values.is_empty() => Op::Exists,
        "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
        "Gt" if numeric && values.len() == 1 => Op::Gt(values[0].parse().ok()?),
        "Lt" if numeric && values.len() == 1 => Op::Lt(values[0].parse().ok()?),
        _ => return None,
    })
}

impl Selector {
    /// Compiles a `metav1.LabelSelector`; `None` matches nothing, `{}` everything.
    pub fn new(selector: Option<&LabelSelector>) -> Selector {
        let Some(sel) = selector else {
            return Selector::NOTHING;
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::In(vec![v.clone()]),
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            match op(&e.operator, e.values.clone().unwrap_or_default(), false) {
                Some(op) => reqs.push(Requirement {
                    key: e.key.clone(),
                    op,
                }),
                None => {
                    tracing::debug!(key = %e.key, operator = %e.operator, "invalid label selector requirement; the selector matches nothing");
                    return Selector::NOTHING;
                }
            }
        }
        Selector(Some(reqs))
    }

    /// Adds `key in (value)` (`matchLabelKeys`) or `key notin (value)` (`mismatchLabelKeys`)
    /// for the owning pod's value of `key`, when it has that label.
    pub fn with_key_of(mut self, labels: &Labels, key: &str, mismatch: bool) -> Selector {
        if let (Some(reqs), Some(v)) = (&mut self.0, labels.get(key)) {
            let values = vec![v.clone()];
            reqs.push(Requirement {
                key: key.to_string(),
                op: if mismatch {
                    Op::NotIn(values)
                } else {
                    Op::In(values)
                },
            });
        }
        self
    }

    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        match &self.0 {
            None => false,
            Some(reqs) => reqs
                .iter()
                .all(|r| r.matches(labels.get(&r.key).map(String::as_str))),
        }
    }

    /// Whether this selector matches every object (`{}`).
    pub fn is_everything(&self) -> bool {
        matches!(&self.0, Some(r) if r.is_empty())
    }
}

/// One compiled node selector term: label requirements and `metadata.name` requirements,
/// all of which must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Term {
    /// `None` for terms that do not parse or are empty: they match nothing.
    fn new(t: &NodeSelectorTerm) -> Option<Term> {
        let mut labels = Vec::new();
        for e in t.match_expressions.iter().flatten() {
            labels.push(Requirement {
                key: e.key.clone(),
                op: op(&e.operator, e.values.clone().unwrap_or_default(), true)?,
            });
        }
        let mut fields = Vec::new();
        for e in t.match_fields.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            if e.key != "metadata.name" || values.len() != 1 {
                return None;
            }
            let op = match e.operator.as_str() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                _ => return None,
            };
            fields.push(Requirement {
                key: e.key.clone(),
                op,
            });
        }
        if labels.is_empty() && fields.is_empty() {
            return None;
        }
        Some(Term { labels, fields })
    }

    fn matches(&self, name: &str, labels: &Labels) -> bool {
        self.labels
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(name)))
    }
}

/// A compiled `NodeSelector`: its terms are ORed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelectorMatcher {
    terms: Vec<Term>,
}

impl NodeSelectorMatcher {
    /// Compiles the terms; those that do not parse are dropped (they match nothing).
    pub fn new(selector: &NodeSelector) -> NodeSelectorMatcher {
        NodeSelectorMatcher {
            terms: selector
                .node_selector_terms
                .iter()
                .filter_map(Term::new)
                .collect(),
        }
    }

    /// Whether the node (`name`, `labels`) matches any term.
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        self.terms.iter().any(|t| t.matches(name, labels))
    }
}

/// One preferred node affinity term with its weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedNodeTerm {
    weight: i64,
    term: Term,
}

/// Compiles `preferredDuringSchedulingIgnoredDuringExecution`; zero-weight and unparsable
/// terms are dropped.
pub fn preferred_node_terms(
    terms: &[k8s_openapi::api::core::v1::PreferredSchedulingTerm],
) -> Vec<WeightedNodeTerm> {
    terms
        .iter()
        .filter(|t| t.weight != 0)
        .filter_map(|t| {
            Some(WeightedNodeTerm {
                weight: i64::from(t.weight),
                term: Term::new(&t.preference)?,
            })
        })
        .collect()
}

/// Sum of the weights of the preferred terms the node matches.
pub fn preferred_node_score(terms: &[WeightedNodeTerm], name: &str, labels: &Labels) -> i64 {
    terms
        .iter()
        .filter(|t| t.term.matches(name, labels))
        .map(|t| t.weight)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorRequirement;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn node_req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn label_selectors() {
        assert!(!Selector::new(None).matches(&labels(&[])));
        assert!(Selector::new(Some(&LabelSelector::default())).matches(&labels(&[("a", "b")])));
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        let s = Selector::new(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web")])));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "api")])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "x".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
            ..Default::default()
        };
        assert_eq!(Selector::new(Some(&bad)), Selector::NOTHING);
    }

    #[test]
    fn node_selector_operators() {
        let term = |reqs: Vec<NodeSelectorRequirement>| NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(reqs),
                match_fields: None,
            }],
        };
        let l = labels(&[("zone", "a"), ("cpus", "8")]);
        let m = |reqs| NodeSelectorMatcher::new(&term(reqs)).matches("n1", &l);
        assert!(m(vec![node_req("zone", "In", &["a", "b"])]));
        assert!(!m(vec![node_req("zone", "NotIn", &["a"])]));
        assert!(m(vec![node_req("gpu", "NotIn", &["x"])]));
        assert!(m(vec![node_req("zone", "Exists", &[])]));
        assert!(m(vec![node_req("gpu", "DoesNotExist", &[])]));
        assert!(m(vec![node_req("cpus", "Gt", &["4"])]));
        assert!(!m(vec![node_req("cpus", "Lt", &["4"])]));
        assert!(!m(vec![node_req("zone", "Gt", &["4"])]), "not a number");
        assert!(!m(vec![node_req("cpus", "Gt", &["x"])]), "bad term");
        assert!(!m(vec![]), "an empty term matches nothing");
        let fields = NodeSelector {
            node_selector_terms: vec![
                NodeSelectorTerm {
                    match_expressions: Some(vec![node_req("zone", "In", &["z"])]),
                    match_fields: None,
                },
                NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![node_req("metadata.name", "In", &["n1"])]),
                },
            ],
        };
        let f = NodeSelectorMatcher::new(&fields);
        assert!(f.matches("n1", &l), "terms are ORed");
        assert!(!f.matches("n2", &l));
    }

    #[test]
    fn preferred_terms_sum_weights() {
        let terms = preferred_node_terms(&[
            k8s_openapi::api::core::v1::PreferredSchedulingTerm {
                weight: 5,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![node_req("zone", "In", &["a"])]),
                    match_fields: None,
                },
            },
            k8s_openapi::api::core::v1::PreferredSchedulingTerm {
                weight: 3,
                preference: NodeSelectorTerm {
                    match_expressions: Some(vec![node_req("disk", "Exists", &[])]),
                    match_fields: None,
                },
            },
        ]);
        assert_eq!(
            preferred_node_score(&terms, "n", &labels(&[("zone", "a")])),
            5
        );
        assert_eq!(
            preferred_node_score(&terms, "n", &labels(&[("zone", "a"), ("disk", "")])),
            8
        );
    }
}
