//! Reading fields out of stored objects and formatting them the way upstream's printers do:
//! times, label maps, label selectors and container lists. Every reader tolerates missing or
//! mistyped fields, answering what an unset Go field would print.

use serde_json::Value;
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// A string field, "" when unset or not a string.
pub(super) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A string field, or `default` when unset or empty (fields the API defaults on write).
pub(super) fn s_or<'a>(v: &'a Value, default: &'a str) -> &'a str {
    match s(v) {
        "" => default,
        x => x,
    }
}

/// An integer field, 0 when unset or not a number.
pub(super) fn int(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

/// A boolean field, false when unset.
pub(super) fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// An array field, empty when unset.
pub(super) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// How many entries a map field has, 0 when unset.
pub(super) fn map_len(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

/// Whether an optional (pointer) field is set.
pub(super) fn present(v: &Value) -> bool {
    !v.is_null()
}

/// The object's name.
pub(super) fn name(obj: &Value) -> &str {
    s(&obj["metadata"]["name"])
}

/// A metav1.Time or MicroTime; `None` for unset, malformed or Go's zero time, which upstream
/// all treats as "never".
pub(super) fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    let t = super::super::validation::parse_time(v.as_str()?)?;
    (t.year() > 1 || t.ordinal() > 1 || t.time() != time::Time::MIDNIGHT).then_some(t)
}

/// Upstream's `labels.FormatLabels`: sorted `k=v` pairs, "<none>" when there are none.
pub(super) fn format_labels(v: &Value) -> String {
    let pairs: BTreeSet<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    if pairs.is_empty() {
        return "<none>".into();
    }
    pairs.into_iter().collect::<Vec<_>>().join(",")
}

/// Upstream's `metav1.FormatLabelSelector`: the selector's string, "<none>" when it selects
/// everything or is unset, "<error>" when malformed.
pub(super) fn format_selector(v: &Value) -> String {
    match selector_string(v) {
        Some(l) if l.is_empty() => "<none>".into(),
        Some(l) => l,
        None => "<error>".into(),
    }
}

/// `LabelSelectorAsSelector(v).String()`: requirements sorted by key, "" for an unset or empty
/// selector, `None` when an operator or its values are invalid.
pub(super) fn selector_string(v: &Value) -> Option<String> {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, val) in v["matchLabels"].as_object().into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", s(val))));
    }
    for e in arr(&v["matchExpressions"]) {
        let key = s(&e["key"]);
        let mut values: Vec<&str> = arr(&e["values"]).iter().map(s).collect();
        values.sort_unstable();
        let req = match s(&e["operator"]) {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(","))
}

/// Upstream's `layoutContainerCells`: container names and images, each comma-joined.
pub(super) fn containers(pod_spec: &Value) -> (String, String) {
    let list = arr(&pod_spec["containers"]);
    let names: Vec<&str> = list.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = list.iter().map(|c| s(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// Up to three entries and a "+ N more..." tail, "<unset>" when empty (upstream's
/// `listWithMoreString`).
pub(super) fn list_with_more(items: impl Iterator<Item = String>) -> String {
    const MAX: usize = 3;
    let all: Vec<String> = items.collect();
    let shown = all[..all.len().min(MAX)].join(",");
    match all.len() {
        0 => "<unset>".into(),
        n if n > MAX => format!("{shown} + {} more...", n - MAX),
        _ => shown,
    }
}
