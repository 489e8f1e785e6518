//! Label selectors (`matchLabels` and `matchExpressions`) evaluated against cached objects, as
//! upstream's `metav1.LabelSelectorAsSelector` then `Matches` do.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector that cannot be evaluated (an unknown operator, or values where none belong).
#[derive(Debug, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct InvalidSelector(pub String);

/// Whether `selector` has no requirements (it then selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
}

/// Checks that `selector` can be evaluated.
pub fn validate(selector: &LabelSelector) -> Result<(), InvalidSelector> {
    for r in selector.match_expressions.iter().flatten() {
        let n = r.values.as_ref().map_or(0, Vec::len);
        match r.operator.as_str() {
            "In" | "NotIn" if n == 0 => {
                return Err(InvalidSelector(format!(
                    "{}: values must be non-empty for {}",
                    r.key, r.operator
                )))
            }
            "Exists" | "DoesNotExist" if n != 0 => {
                return Err(InvalidSelector(format!(
                    "{}: values must be empty for {}",
                    r.key, r.operator
                )))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => return Err(InvalidSelector(format!("{other} is not a valid operator"))),
        }
    }
    Ok(())
}

/// Whether `labels` satisfy `selector` (an invalid selector matches nothing).
pub fn matches(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    if validate(selector).is_err() {
        return false;
    }
    let get = |k: &str| labels.and_then(|l| l.get(k));
    for (k, v) in selector.match_labels.iter().flatten() {
        if get(k) != Some(v) {
            return false;
        }
    }
    for r in selector.match_expressions.iter().flatten() {
        let values = r.values.as_deref().unwrap_or_default();
        let ok = match r.operator.as_str() {
            "In" => get(&r.key).is_some_and(|v| values.contains(v)),
            "NotIn" => get(&r.key).is_none_or(|v| !values.contains(v)),
            "Exists" => get(&r.key).is_some(),
            "DoesNotExist" => get(&r.key).is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert!(matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "a")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "c")]))
        ));
        assert!(!matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "a"), ("canary", "1")]))
        ));
        assert!(!matches(&sel, None));
        assert!(matches(&LabelSelector::default(), None));
        assert!(is_empty(&LabelSelector::default()));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "x".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(validate(&bad).is_err());
        assert!(!matches(&bad, Some(&labels(&[("x", "1")]))));
    }
}
