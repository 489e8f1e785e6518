//! core/v1 kinds other than pods: Service, Endpoints, ConfigMap, Secret, Namespace, Node,
//! ServiceAccount, PersistentVolume(Claim), ResourceQuota, LimitRange.

use std::collections::BTreeSet;

use base64::Engine;
use serde_json::Value;

use super::meta::{self, label_name, object_meta};
use super::pod;
use super::quantity::{self, Quantity};
use super::resources::{
    container_resource_name, is_native_resource, is_standard_quota_resource, quantity_value,
    resource_name,
};
use super::{
    arr, at, config_map_key_errors, go, map, parse_cidr_sloppy, qualified_name_errors, s, same,
    Errs, NameRule, P,
};

/// Upper bound on the total size of a Secret's or ConfigMap's data.
const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Namespace: DNS-label name, qualified spec finalizers.
pub(super) fn validate_namespace(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, false, NameRule::Label, e);
    if old.is_none() {
        let fp = P::root("spec").child("finalizers");
        for f in arr(at(obj, "spec"), "finalizers") {
            let f = f.as_str().unwrap_or("");
            e.invalid_each(&fp, f, qualified_name_errors(f));
            meta::kube_finalizer_name(f, &fp, e);
        }
    }
}

/// ServiceAccount: metadata only.
pub(super) fn validate_service_account(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
}

/// Node: taints, resource quantities, pod CIDRs; on update podCIDRs and providerID are set once.
pub(super) fn validate_node(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, false, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let status = at(obj, "status");
    if let Some(old) = old {
        node_resources(status, e);
        let mut seen = Vec::new();
        for (i, a) in arr(status, "addresses").iter().enumerate() {
            if seen.contains(&a) {
                e.duplicate(&P::root("status").child("addresses").index(i), a.clone());
            }
            seen.push(a);
        }
        let ospec = at(old, "spec");
        let old_cidrs = arr(ospec, "podCIDRs");
        if !old_cidrs.is_empty() && !same(at(spec, "podCIDRs"), at(ospec, "podCIDRs")) {
            e.forbidden(
                &P::root("spec").child("podCIDRs"),
                "node updates may not change podCIDR except from \"\" to valid",
            );
        }
        let old_pid = s(ospec, "providerID");
        if !old_pid.is_empty() && old_pid != s(spec, "providerID") {
            e.forbidden(
                &P::root("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            );
        }
        node_taints(spec, e);
        return;
    }
    node_taints(spec, e);
    node_resources(status, e);
    let cidrs = arr(spec, "podCIDRs");
    let cp = P::root("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        super::cidr_errors(&cp.index(i), c.as_str().unwrap_or(""), e);
    }
    if cidrs.len() > 1 {
        let fams: Vec<bool> = cidrs
            .iter()
            .filter_map(|c| parse_cidr_sloppy(c.as_str().unwrap_or("")))
            .map(|(ip, _)| ip.is_ipv4())
            .collect();
        let dual = fams.len() == 2 && fams[0] != fams[1];
        if !dual || cidrs.len() > 2 {
            e.invalid(
                &cp,
                at(spec, "podCIDRs").clone(),
                "may specify no more than one CIDR for each IP family",
            );
        }
    }
}

fn node_resources(status: &Value, e: &mut Errs) {
    for field in ["capacity", "allocatable"] {
        if let Some(m) = map(status, field) {
            for (k, v) in m {
                let p = P::root("status").child(field).child(k);
                quantity_value(k, v, &p, e);
            }
        }
    }
}

fn node_taints(spec: &Value, e: &mut Errs) {
    let p = P::root("metadata").child("taints");
    let mut unique: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let ip = p.index(i);
        label_name(s(t, "key"), &ip.child("key"), e);
        let errs = super::label_value_errors(s(t, "value"));
        if !errs.is_empty() {
            e.invalid(&ip.child("value"), s(t, "value"), &errs.join(";"));
        }
        let effect = s(t, "effect");
        if effect.is_empty() {
            e.required(&ip.child("effect"), "");
        } else {
            pod::taint_effect(effect, &ip.child("effect"), e);
        }
        if !unique.insert((effect.to_string(), s(t, "key").to_string())) {
            e.0.push(super::FieldError {
                field: ip.as_str().to_string(),
                kind: super::FieldErrorKind::Duplicate,
                value: go(format!(
                    "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:<nil>}}",
                    super::go_quote(s(t, "key")),
                    super::go_quote(s(t, "value")),
                    super::go_quote(effect)
                )),
                detail: "taints must be unique by key and effect pair".to_string(),
            });
        }
    }
}

/// ConfigMap: key syntax, no key in both maps, 1 MiB total; immutable when `immutable` is set.
pub(super) fn validate_config_map(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    if let Some(old) = old {
        immutable_data(obj, old, &["data", "binaryData"], e);
    }
    let mut total = 0usize;
    let binary = map(obj, "binaryData");
    if let Some(data) = map(obj, "data") {
        for (k, v) in data {
            let kp = P::root("data").key(k);
            e.invalid_each(&kp, k, config_map_key_errors(k));
            if binary.is_some_and(|b| b.contains_key(k)) {
                e.invalid(&kp, k.as_str(), "duplicate of key present in binaryData");
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if let Some(b) = binary {
        for (k, v) in b {
            e.invalid_each(&P::root("binaryData").key(k), k, config_map_key_errors(k));
            total += decoded_len(v);
        }
    }
    if total > MAX_SECRET_SIZE {
        e.too_long(&P::root(""), MAX_SECRET_SIZE);
    }
}

fn decoded_len(v: &Value) -> usize {
    let text: String = v
        .as_str()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_or(text.len() * 3 / 4, |b| b.len())
}

/// The bytes of a base64 data value, if it decodes.
pub(super) fn decoded(v: Option<&Value>) -> Option<Vec<u8>> {
    let text: String = v?
        .as_str()?
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .ok()
}

fn immutable_data(obj: &Value, old: &Value, fields: &[&str], e: &mut Errs) {
    if at(old, "immutable").as_bool() != Some(true) {
        return;
    }
    let msg = "field is immutable when `immutable` is set";
    if at(obj, "immutable").as_bool() != Some(true) {
        e.forbidden(&P::root("immutable"), msg);
    }
    for f in fields {
        if !same(at(obj, f), at(old, f)) {
            e.forbidden(&P::root(f), msg);
        }
    }
}

/// Secret: key syntax, 1 MiB total, the keys each type requires; type and immutable data fixed.
pub(super) fn validate_secret(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    if let Some(old) = old {
        let ty = s(obj, "type");
        if ty != s(old, "type") {
            e.invalid(&P::root("type"), ty, "field is immutable");
        }
        immutable_data(obj, old, &["data"], e);
    }
    let dp = P::root("data");
    let data = map(obj, "data");
    let mut total = 0usize;
    if let Some(d) = data {
        for (k, v) in d {
            e.invalid_each(&dp.key(k), k, config_map_key_errors(k));
            total += decoded_len(v);
        }
    }
    if total > MAX_SECRET_SIZE {
        e.too_long(&dp, MAX_SECRET_SIZE);
    }
    let present = |k: &str| data.is_some_and(|d| d.contains_key(k));
    match s(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let ann = at(at(obj, "metadata"), "annotations");
            if s(ann, "kubernetes.io/service-account.name").is_empty() {
                e.required(
                    &P::root("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                );
            }
        }
        "kubernetes.io/dockercfg" => json_key(data, ".dockercfg", &dp, e),
        "kubernetes.io/dockerconfigjson" => json_key(data, ".dockerconfigjson", &dp, e),
        "kubernetes.io/basic-auth" if !present("username") && !present("password") => {
            e.required(&dp.key("username"), "");
            e.required(&dp.key("password"), "");
        }
        "kubernetes.io/ssh-auth"
            if decoded(data.and_then(|d| d.get("ssh-privatekey")))
                .as_ref()
                .is_none_or(Vec::is_empty) =>
        {
            e.required(&dp.key("ssh-privatekey"), "");
        }
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !present(k) {
                    e.required(&dp.key(k), "");
                }
            }
        }
        _ => {}
    }
}

fn json_key(data: Option<&serde_json::Map<String, Value>>, key: &str, dp: &P, e: &mut Errs) {
    let Some(raw) = data.and_then(|d| d.get(key)) else {
        e.required(&dp.key(key), "");
        return;
    };
    let bytes = decoded(Some(raw)).unwrap_or_default();
    if let Err(err) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
        e.invalid(&dp.key(key), "<secret contents redacted>", &err.to_string());
    }
}

fn quota_list(list: Option<&serde_json::Map<String, Value>>, p: &P, e: &mut Errs) {
    let Some(list) = list else { return };
    for (k, v) in list {
        let kp = p.key(k);
        if resource_name(k, &kp, e)
            && !k.contains('/')
            && !is_standard_quota_resource(k)
            && !k.starts_with("hugepages-")
            && !k.starts_with("requests.hugepages-")
        {
            e.invalid(&kp, k.as_str(), "must be a standard resource for quota");
        }
        quantity_value(k, v, &kp, e);
    }
}

/// ResourceQuota: resource names and quantities, scopes (immutable on update).
pub(super) fn validate_resource_quota(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    quota_list(map(spec, "hard"), &P::root("spec").child("hard"), e);
    const SCOPES: &[&str] = &[
        "Terminating",
        "NotTerminating",
        "BestEffort",
        "NotBestEffort",
        "PriorityClass",
        "CrossNamespacePodAffinity",
        "VolumeAttributesClass",
    ];
    for scope in arr(spec, "scopes") {
        let scope = scope.as_str().unwrap_or("");
        if !SCOPES.contains(&scope) {
            e.invalid(&P::root("spec").child("scopes"), scope, "unsupported scope");
        }
    }
    if old.is_none() {
        let status = at(obj, "status");
        quota_list(map(status, "hard"), &P::root("status").child("hard"), e);
        quota_list(map(status, "used"), &P::root("status").child("used"), e);
    }
    if let Some(old) = old {
        let scopes = |v: &Value| -> BTreeSet<String> {
            super::str_list(at(v, "spec"), "scopes")
                .into_iter()
                .collect()
        };
        if scopes(obj) != scopes(old) {
            e.invalid(
                &P::root("spec").child("scopes"),
                at(spec, "scopes").clone(),
                "field is immutable",
            );
        }
    }
}

/// LimitRange: types, resource names, and min ≤ default request ≤ default ≤ max.
pub(super) fn validate_limit_range(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let lp = P::root("spec").child("limits");
    let mut types = BTreeSet::new();
    for (i, limit) in arr(at(obj, "spec"), "limits").iter().enumerate() {
        let ip = lp.index(i);
        let ty = s(limit, "type");
        let tp = ip.child("type");
        let errs = qualified_name_errors(ty);
        if !errs.is_empty() {
            e.invalid_each(&tp, ty, errs);
        } else if !ty.contains('/') && !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            e.invalid(&tp, ty, "must be a standard limit type or fully qualified");
        }
        if !types.insert(ty) {
            e.duplicate(&tp, ty);
        }
        let mut keys = BTreeSet::new();
        let mut fields: Vec<&str> = vec!["max", "min"];
        if ty == "Pod" {
            for f in ["default", "defaultRequest"] {
                if map(limit, f).is_some_and(|m| !m.is_empty()) {
                    e.forbidden(&ip.child(f), "may not be specified when `type` is 'Pod'");
                }
            }
        } else {
            fields.extend(["default", "defaultRequest"]);
        }
        fields.push("maxLimitRequestRatio");
        for f in &fields {
            if let Some(m) = map(limit, f) {
                for k in m.keys() {
                    let kp = ip.child(f).key(k);
                    if matches!(ty, "Pod" | "Container") {
                        container_resource_name(k, &kp, e);
                    } else {
                        resource_name(k, &kp, e);
                    }
                    keys.insert(k.clone());
                }
            }
        }
        if ty == "PersistentVolumeClaim"
            && !map(limit, "min").is_some_and(|m| m.contains_key("storage"))
            && !map(limit, "max").is_some_and(|m| m.contains_key("storage"))
        {
            e.required(
                &ip.child("limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            );
        }
        for k in keys {
            limit_range_key(limit, &k, &ip, e);
        }
    }
}

fn limit_range_key(limit: &Value, k: &str, ip: &P, e: &mut Errs) {
    let get = |f: &str| {
        at(limit, f)
            .get(k)
            .and_then(quantity::from_json)
            .and_then(Result::ok)
    };
    let (min, max, def, def_req, ratio) = (
        get("min"),
        get("max"),
        get("default"),
        get("defaultRequest"),
        get("maxLimitRequestRatio"),
    );
    use std::cmp::Ordering::{Greater, Less};
    let c = |q: &Quantity| q.canonical();
    if let (Some(mn), Some(mx)) = (&min, &max) {
        if mn.cmp(mx) == Greater {
            e.invalid(
                &ip.child("min").key(k),
                c(mn),
                &format!("min value {} is greater than max value {}", c(mn), c(mx)),
            );
        }
    }
    if let Some(dr) = &def_req {
        if let Some(mn) = &min {
            if mn.cmp(dr) == Greater {
                e.invalid(
                    &ip.child("defaultRequest").key(k),
                    c(dr),
                    &format!(
                        "min value {} is greater than default request value {}",
                        c(mn),
                        c(dr)
                    ),
                );
            }
        }
        if let Some(mx) = &max {
            if dr.cmp(mx) == Greater {
                e.invalid(
                    &ip.child("defaultRequest").key(k),
                    c(dr),
                    &format!(
                        "default request value {} is greater than max value {}",
                        c(dr),
                        c(mx)
                    ),
                );
            }
        }
        if let Some(d) = &def {
            if dr.cmp(d) == Greater {
                e.invalid(
                    &ip.child("defaultRequest").key(k),
                    c(dr),
                    &format!(
                        "default request value {} is greater than default limit value {}",
                        c(dr),
                        c(d)
                    ),
                );
            }
        }
    }
    if let Some(d) = &def {
        if let Some(mn) = &min {
            if mn.cmp(d) == Greater {
                e.invalid(
                    &ip.child("default").key(k),
                    c(mn),
                    &format!("min value {} is greater than default value {}", c(mn), c(d)),
                );
            }
        }
        if let Some(mx) = &max {
            if d.cmp(mx) == Greater {
                e.invalid(
                    &ip.child("default").key(k),
                    c(mx),
                    &format!("default value {} is greater than max value {}", c(d), c(mx)),
                );
            }
        }
    }
    if let Some(r) = &ratio {
        if Quantity::parse("1").is_ok_and(|one| r.cmp(&one) == Less) {
            e.invalid(
                &ip.child("maxLimitRequestRatio").key(k),
                c(r),
                &format!("ratio {} is less than 1", c(r)),
            );
        }
    }
    let overcommit = is_native_resource(k) && !k.starts_with("hugepages-");
    if let (false, Some(d), Some(dr)) = (overcommit, &def, &def_req) {
        if d.cmp(dr) != std::cmp::Ordering::Equal {
            e.invalid(
                &ip.child("defaultRequest").key(k),
                c(dr),
                &format!(
                    "default value {} must equal to defaultRequest value {} in {k}",
                    c(d),
                    c(dr)
                ),
            );
        }
    }
}
