//! ObjectMeta, labels, annotations and label selectors: the checks every kind shares.

use serde_json::Value;

use super::{
    arr, at, go, go_label_selector, has, int, label_value_errors, map, qualified_name_errors, s,
    Errs, NameRule, P,
};

/// Total bytes of annotation keys and values upstream allows.
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Metadata checks: on create the full `ValidateObjectMeta`, on update `ValidateObjectMetaUpdate`
/// (immutability of name, namespace, uid, creationTimestamp, ...).
pub(super) fn object_meta(
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
    rule: NameRule,
    e: &mut Errs,
) {
    let meta = at(obj, "metadata");
    let p = P::root("metadata");
    match old {
        None => create_meta(meta, namespaced, rule, &p, e),
        Some(old) => update_meta(meta, at(old, "metadata"), &p, e),
    }
}

fn create_meta(meta: &Value, namespaced: bool, rule: NameRule, p: &P, e: &mut Errs) {
    let generate = s(meta, "generateName");
    if !generate.is_empty() {
        e.invalid_each(
            &p.child("generateName"),
            generate,
            rule.check(generate, true),
        );
    }
    let name = s(meta, "name");
    if name.is_empty() {
        e.required(&p.child("name"), "name or generateName is required");
    } else {
        e.invalid_each(&p.child("name"), name, rule.check(name, false));
    }
    let ns = s(meta, "namespace");
    if namespaced {
        if ns.is_empty() {
            e.required(&p.child("namespace"), "");
        } else {
            e.invalid_each(&p.child("namespace"), ns, NameRule::Label.check(ns, false));
        }
    } else if !ns.is_empty() {
        e.forbidden(&p.child("namespace"), "not allowed on this type");
    }
    e.nonnegative(&p.child("generation"), int(meta, "generation"));
    labels(meta.get("labels"), &p.child("labels"), e);
    annotations(meta.get("annotations"), &p.child("annotations"), e);
    owner_references(meta, &p.child("ownerReferences"), e);
    finalizers(meta, &p.child("finalizers"), e);
    managed_fields(meta, &p.child("managedFields"), e);
}

fn update_meta(meta: &Value, old: &Value, p: &P, e: &mut Errs) {
    if has(old, "deletionTimestamp") {
        let old_f: Vec<&str> = arr(old, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<String> = arr(meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .map(str::to_string)
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let quoted: Vec<String> = extra.iter().map(|f| super::go_quote(f)).collect();
            e.forbidden(
                &p.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            );
        }
    }
    let (g_new, g_old) = (
        int(meta, "generation").unwrap_or(0),
        int(old, "generation").unwrap_or(0),
    );
    if g_new < g_old {
        e.invalid(&p.child("generation"), g_new, "must not be decremented");
    }
    for field in ["name", "namespace", "uid"] {
        e.immutable(
            &p.child(field),
            at(meta, field),
            at(old, field),
            Value::from(s(meta, field)),
        );
    }
    for field in [
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let shown = match meta.get(field) {
            Some(Value::String(t)) => go(format!("v1.Time{{Time:{t}}}")),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        e.immutable(&p.child(field), at(meta, field), at(old, field), shown);
    }
    labels(meta.get("labels"), &p.child("labels"), e);
    annotations(meta.get("annotations"), &p.child("annotations"), e);
    owner_references(meta, &p.child("ownerReferences"), e);
    managed_fields(meta, &p.child("managedFields"), e);
    for (i, f) in arr(meta, "finalizers").iter().enumerate() {
        kube_finalizer_name(f.as_str().unwrap_or(""), &p.child("finalizers").index(i), e);
    }
}

/// Template metadata (PVC templates): only labels and annotations may be set.
pub(super) fn template_object_meta(meta: &Value, p: &P, e: &mut Errs) {
    annotations(meta.get("annotations"), &p.child("annotations"), e);
    labels(meta.get("labels"), &p.child("labels"), e);
    if let Some(m) = meta.as_object() {
        for (k, v) in m {
            if k == "labels" || k == "annotations" || k == "creationTimestamp" {
                continue;
            }
            if !super::same(v, &Value::Null) {
                e.forbidden(&p.child(k), "cannot be set");
            }
        }
    }
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub(super) fn labels(labels: Option<&Value>, p: &P, e: &mut Errs) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        label_name(k, p, e);
        let v = v.as_str().unwrap_or("");
        e.invalid_each(p, v, label_value_errors(v));
    }
}

/// `ValidateLabelName`.
pub(super) fn label_name(k: &str, p: &P, e: &mut Errs) {
    e.invalid_each(p, k, qualified_name_errors(k));
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitively), total size ≤ 256 KiB.
pub(super) fn annotations(ann: Option<&Value>, p: &P, e: &mut Errs) {
    let Some(m) = ann.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in m {
        e.invalid_each(p, k, qualified_name_errors(&k.to_lowercase()));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        e.too_long(p, TOTAL_ANNOTATION_SIZE);
    }
}

fn owner_references(meta: &Value, p: &P, e: &mut Errs) {
    let mut first_controller = String::new();
    for r in arr(meta, "ownerReferences") {
        let api_version = s(r, "apiVersion");
        let version = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => *v,
            [_, v] => *v,
            _ => "",
        };
        if version.is_empty() {
            e.invalid(
                &p.child("apiVersion"),
                api_version,
                "version must not be empty",
            );
        }
        let kind = s(r, "kind");
        if kind.is_empty() {
            e.invalid(&p.child("kind"), kind, "kind must not be empty");
        }
        if s(r, "name").is_empty() {
            e.invalid(&p.child("name"), "", "name must not be empty");
        }
        if s(r, "uid").is_empty() {
            e.invalid(&p.child("uid"), "", "uid must not be empty");
        }
        if api_version == "v1" && kind == "Event" {
            e.invalid(
                p,
                r.clone(),
                "/v1, Kind=Event is disallowed from being an owner",
            );
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let cur = format!("{kind}/{}", s(r, "name"));
            if first_controller.is_empty() {
                first_controller = cur;
            } else {
                e.invalid(
                    p,
                    at(meta, "ownerReferences").clone(),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first_controller} and {cur}"),
                );
            }
        }
    }
}

fn finalizers(meta: &Value, p: &P, e: &mut Errs) {
    let list = arr(meta, "finalizers");
    let mut orphan = false;
    let mut foreground = false;
    for f in list {
        let f = f.as_str().unwrap_or("");
        e.invalid_each(p, f, qualified_name_errors(f));
        orphan |= f == "orphan";
        foreground |= f == "foregroundDeletion";
    }
    if orphan && foreground {
        e.invalid(
            p,
            at(meta, "finalizers").clone(),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
    for (i, f) in list.iter().enumerate() {
        kube_finalizer_name(f.as_str().unwrap_or(""), &p.index(i), e);
    }
}

/// Unqualified finalizer names must be one of the standard ones.
pub(super) fn kube_finalizer_name(f: &str, p: &P, e: &mut Errs) {
    if !f.contains('/') && !matches!(f, "kubernetes" | "orphan" | "foregroundDeletion") {
        e.invalid(
            p,
            f,
            "name is neither a standard finalizer name nor is it fully qualified",
        );
    }
}

fn managed_fields(meta: &Value, p: &P, e: &mut Errs) {
    for (i, m) in arr(meta, "managedFields").iter().enumerate() {
        let ip = p.index(i);
        let op = s(m, "operation");
        if op != "Apply" && op != "Update" {
            e.invalid(&ip.child("operation"), op, "must be `Apply` or `Update`");
        }
        let ft = s(m, "fieldsType");
        if !ft.is_empty() && ft != "FieldsV1" {
            e.invalid(&ip.child("fieldsType"), ft, "must be `FieldsV1`");
        }
        let manager = s(m, "manager");
        if manager.len() > 128 {
            e.too_long(&ip.child("manager"), 128);
        }
        for (pos, c) in manager.char_indices() {
            if c.is_control() {
                e.invalid(
                    &ip.child("manager"),
                    manager,
                    &format!("invalid character U+{:04X} (at position {pos})", c as u32),
                );
            }
        }
        if s(m, "subresource").len() > 256 {
            e.too_long(&ip.child("subresource"), 256);
        }
    }
}

/// `ValidateLabelSelector` (strict label values).
pub(super) fn label_selector(sel: Option<&Value>, p: &P, e: &mut Errs) {
    let Some(sel) = sel.filter(|v| v.is_object()) else {
        return;
    };
    labels(sel.get("matchLabels"), &p.child("matchLabels"), e);
    for (i, r) in arr(sel, "matchExpressions").iter().enumerate() {
        selector_requirement(r, &p.child("matchExpressions").index(i), false, e);
    }
}

/// One `matchExpressions` entry: its operator and values, a label key and label values, as
/// `ValidateLabelSelectorRequirement` checks it. Node selectors (`gt_lt`) also allow `Gt` and
/// `Lt` with a single value (`ValidateNodeSelectorRequirement`).
pub(super) fn selector_requirement(r: &Value, rp: &P, gt_lt: bool, e: &mut Errs) {
    let values = arr(r, "values");
    match s(r, "operator") {
        "In" | "NotIn" => {
            if values.is_empty() {
                e.required(
                    &rp.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                );
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                e.forbidden(
                    &rp.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                );
            }
        }
        "Gt" | "Lt" if gt_lt => {
            if values.len() != 1 {
                e.required(
                    &rp.child("values"),
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                );
            }
        }
        other => e.invalid(
            &rp.child("operator"),
            other,
            "not a valid selector operator",
        ),
    }
    label_name(s(r, "key"), &rp.child("key"), e);
    for (j, v) in values.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        e.invalid_each(&rp.child("values").index(j), v, label_value_errors(v));
    }
}

/// A label selector converted as upstream's `LabelSelectorAsSelector` does.
pub(super) enum Selector {
    /// A nil selector: matches nothing.
    Nothing,
    /// Requirements `(key, operator, values)`; empty means everything.
    Reqs(Vec<(String, String, Vec<String>)>),
}

impl Selector {
    /// Converts, or Err when upstream's conversion fails (bad operator, key or value).
    pub(super) fn parse(sel: Option<&Value>) -> Result<Selector, ()> {
        let Some(sel) = sel.filter(|v| v.is_object()) else {
            return Ok(Selector::Nothing);
        };
        let mut reqs = Vec::new();
        if let Some(m) = map(sel, "matchLabels") {
            for (k, v) in m {
                let v = v.as_str().unwrap_or("");
                if !qualified_name_errors(k).is_empty() || !label_value_errors(v).is_empty() {
                    return Err(());
                }
                reqs.push((k.clone(), "In".to_string(), vec![v.to_string()]));
            }
        }
        for r in arr(sel, "matchExpressions") {
            let key = s(r, "key");
            let op = s(r, "operator");
            let values: Vec<String> = super::str_list(r, "values");
            let ok = match op {
                "In" | "NotIn" => !values.is_empty(),
                "Exists" | "DoesNotExist" => values.is_empty(),
                _ => false,
            };
            if !ok
                || !qualified_name_errors(key).is_empty()
                || values.iter().any(|v| !label_value_errors(v).is_empty())
            {
                return Err(());
            }
            reqs.push((key.to_string(), op.to_string(), values));
        }
        Ok(Selector::Reqs(reqs))
    }

    /// The check that the template at `tp` carries labels this selector selects.
    pub(super) fn check_template(&self, t: &Value, tp: &P, e: &mut Errs) {
        let labels = at(t, "metadata").get("labels");
        if !self.matches(labels) {
            e.invalid(
                &tp.child("metadata").child("labels"),
                go(super::go_string_map(labels)),
                "`selector` does not match template `labels`",
            );
        }
    }

    /// Whether the labels (a JSON map, or absent) are selected.
    pub(super) fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        match self {
            Selector::Nothing => false,
            Selector::Reqs(reqs) => reqs.iter().all(|(k, op, vals)| match op.as_str() {
                "In" => get(k).is_some_and(|v| vals.iter().any(|x| x == v)),
                "NotIn" => get(k).is_none_or(|v| vals.iter().all(|x| x != v)),
                "Exists" => get(k).is_some(),
                _ => get(k).is_none(),
            }),
        }
    }
}

/// The selector value as upstream prints it in errors.
pub(super) fn shown_selector(sel: Option<&Value>) -> Value {
    match sel.filter(|v| v.is_object()) {
        Some(sel) => go(go_label_selector(sel)),
        None => Value::Null,
    }
}
