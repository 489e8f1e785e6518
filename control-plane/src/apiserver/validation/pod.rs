//! Pods, pod templates and the pod-level parts of a PodSpec (scheduling, DNS, security
//! context, updates of running pods).

use std::collections::BTreeSet;

use serde_json::Value;

use super::container::{self, Ctx};
use super::meta::{self, label_name, labels, object_meta};
use super::resources;
use super::volume;
use super::{
    arr, at, boolean, dns1123_label_errors, dns1123_subdomain_errors, enum_field, has, int,
    label_value_errors, opt_s, qualified_name_errors, range_error, s, same, Errs, NameRule, P,
};

/// Pod: metadata, spec, and on update the narrow set of mutable spec fields.
pub(super) fn validate_pod(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    pod_annotations(at(at(obj, "metadata"), "annotations"), e);
    pod_spec(spec, &sp, true, e);
    if s(spec, "serviceAccountName").is_empty() {
        for (vi, vol) in arr(spec, "volumes").iter().enumerate() {
            for (si, src) in arr(at(vol, "projected"), "sources").iter().enumerate() {
                if has(src, "serviceAccountToken") {
                    e.forbidden(
                        &sp.child("volumes")
                            .index(vi)
                            .child("projected")
                            .child("sources")
                            .index(si)
                            .child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    );
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in arr(spec, list).iter().enumerate() {
            let image = s(c, "image");
            if image.trim() != image {
                e.invalid(
                    &sp.child(list).index(i).child("image"),
                    image,
                    "must not have leading or trailing whitespace",
                );
            }
        }
    }
    if let Some(old) = old {
        pod_update(spec, at(old, "spec"), &sp, e);
    }
}

fn pod_annotations(ann: &Value, e: &mut Errs) {
    let p = P::root("metadata").child("annotations");
    if let Some(cost) = opt_s(ann, "controller.kubernetes.io/pod-deletion-cost") {
        if cost.parse::<i32>().is_err() {
            e.invalid(
                &p.key("controller.kubernetes.io/pod-deletion-cost"),
                cost,
                "must be a 32bit integer",
            );
        }
    }
}

/// The fields of a running pod that may change: images, activeDeadlineSeconds, tolerations
/// (additions), schedulingGates (removals), terminationGracePeriodSeconds (negative → 1).
fn pod_update(spec: &Value, old: &Value, sp: &P, e: &mut Errs) {
    for list in ["containers", "initContainers"] {
        let (new_c, old_c) = (arr(spec, list), arr(old, list));
        if new_c.len() != old_c.len() {
            e.forbidden(
                &sp.child(list),
                "pod updates may not add or remove containers",
            );
            return;
        }
        for (i, c) in new_c.iter().enumerate() {
            if s(c, "image").is_empty() {
                e.required(&sp.child(list).index(i).child("image"), "");
            }
        }
    }
    let ads = sp.child("activeDeadlineSeconds");
    match (
        int(spec, "activeDeadlineSeconds"),
        int(old, "activeDeadlineSeconds"),
    ) {
        (Some(new), old_v) => {
            if !(0..=i64::from(i32::MAX)).contains(&new) {
                e.invalid(&ads, new, &range_error(0, i64::from(i32::MAX)));
                return;
            }
            if old_v.is_some_and(|o| o < new) {
                e.invalid(&ads, new, "must be less than or equal to previous value");
                return;
            }
        }
        (None, Some(_)) => e.invalid(
            &ads,
            Value::Null,
            "must not update from a positive integer to nil value",
        ),
        (None, None) => {}
    }
    only_added_tolerations(arr(spec, "tolerations"), arr(old, "tolerations"), sp, e);
    let old_gates: BTreeSet<&str> = arr(old, "schedulingGates")
        .iter()
        .map(|g| s(g, "name"))
        .collect();
    for (i, g) in arr(spec, "schedulingGates").iter().enumerate() {
        if !old_gates.contains(s(g, "name")) {
            e.forbidden(
                &sp.child("schedulingGates").index(i).child("name"),
                &format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    s(g, "name")
                ),
            );
        }
    }
    let mut munged = spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                for (i, c) in cs.iter_mut().enumerate() {
                    if let (Some(c), Some(o)) = (c.as_object_mut(), arr(old, list).get(i)) {
                        c.insert("image".into(), at(o, "image").clone());
                    }
                }
            }
        }
        for f in ["activeDeadlineSeconds", "tolerations", "schedulingGates"] {
            m.insert(f.into(), at(old, f).clone());
        }
        if int(old, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
            && int(spec, "terminationGracePeriodSeconds") == Some(1)
        {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                at(old, "terminationGracePeriodSeconds").clone(),
            );
        }
    }
    if !same(&munged, old) {
        e.forbidden(
            sp,
            &format!(
                "pod updates may not change fields other than {}\n{}",
                [
                    "`spec.containers[*].image`",
                    "`spec.initContainers[*].image`",
                    "`spec.activeDeadlineSeconds`",
                    "`spec.tolerations` (only additions to existing tolerations)",
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ]
                .join(","),
                spec_diff("core.PodSpec", old, &munged)
            ),
        );
    }
}

/// A short diff of two specs in the spirit of upstream's `cmp.Diff`: one `-`/`+` pair per
/// changed top-level field.
pub(super) fn spec_diff(type_name: &str, old: &Value, new: &Value) -> String {
    let mut keys: BTreeSet<&String> = BTreeSet::new();
    if let Some(m) = old.as_object() {
        keys.extend(m.keys());
    }
    if let Some(m) = new.as_object() {
        keys.extend(m.keys());
    }
    let mut out = format!("  {type_name}{{\n");
    for k in keys {
        let (a, b) = (at(old, k), at(new, k));
        if same(a, b) {
            continue;
        }
        let field = go_field_name(k);
        out.push_str(&format!("- \t{field}: {a},\n+ \t{field}: {b},\n"));
    }
    out.push_str("  }\n");
    out
}

fn go_field_name(k: &str) -> String {
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn only_added_tolerations(new: &[Value], old: &[Value], sp: &P, e: &mut Errs) {
    let p = sp.child("tolerations");
    for o in old {
        let found = new.iter().any(|n| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.insert(
                    "tolerationSeconds".into(),
                    at(n, "tolerationSeconds").clone(),
                );
            }
            same(&o, n)
        });
        if !found {
            e.forbidden(
                &p,
                "existing toleration can not be modified except its tolerationSeconds",
            );
            return;
        }
    }
    tolerations(new, &p, e);
}

/// PodTemplate: metadata and the template.
pub(super) fn validate_pod_template(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    pod_template_spec(at(obj, "template"), &P::root("template"), e);
}

/// Upstream's `ValidatePodTemplateSpec` (note its paths: `<template>.labels`, not
/// `<template>.metadata.labels`).
pub(super) fn pod_template_spec(t: &Value, p: &P, e: &mut Errs) {
    let m = at(t, "metadata");
    labels(m.get("labels"), &p.child("labels"), e);
    meta::annotations(m.get("annotations"), &p.child("annotations"), e);
    pod_spec(at(t, "spec"), &p.child("spec"), false, e);
    if !arr(at(t, "spec"), "ephemeralContainers").is_empty() {
        e.forbidden(
            &p.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        );
    }
}

/// Upstream's `ValidatePodSpec`.
fn pod_spec(spec: &Value, p: &P, is_pod: bool, e: &mut Errs) {
    if !has(spec, "terminationGracePeriodSeconds") {
        e.required(&p.child("terminationGracePeriodSeconds"), "");
    }
    let grace = int(spec, "terminationGracePeriodSeconds");
    let vols = volume::volumes(arr(spec, "volumes"), &p.child("volumes"), e);
    let claims: BTreeSet<String> = arr(spec, "resourceClaims")
        .iter()
        .map(|c| s(c, "name").to_string())
        .collect();
    let ctx = Ctx {
        vols: &vols,
        claims: &claims,
        grace,
        os: s(at(spec, "os"), "name"),
    };
    container::containers(arr(spec, "containers"), &p.child("containers"), &ctx, e);
    container::init_containers(spec, &p.child("initContainers"), &ctx, e);
    container::ephemeral_containers(spec, &p.child("ephemeralContainers"), &ctx, e);
    if boolean(spec, "hostNetwork") {
        for (i, c) in arr(spec, "containers").iter().enumerate() {
            for (j, port) in arr(c, "ports").iter().enumerate() {
                let (hp, cp) = (
                    int(port, "hostPort").unwrap_or(0),
                    int(port, "containerPort").unwrap_or(0),
                );
                if (is_pod || hp != 0) && hp != cp {
                    e.invalid(
                        &p.child("containers")
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    );
                }
            }
        }
    }
    enum_field(
        spec,
        "restartPolicy",
        p,
        &["Always", "OnFailure", "Never"],
        e,
    );
    enum_field(
        spec,
        "dnsPolicy",
        p,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        e,
    );
    labels(spec.get("nodeSelector"), &p.child("nodeSelector"), e);
    pod_security_context(at(spec, "securityContext"), &p.child("securityContext"), e);
    for (i, s_) in arr(spec, "imagePullSecrets").iter().enumerate() {
        if s_
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k != "name"))
        {
            e.invalid(
                &p.child("imagePullSecrets").index(i),
                s_.clone(),
                "only name may be set",
            );
        }
    }
    affinity(at(spec, "affinity"), &p.child("affinity"), e);
    dns_config(spec, &p.child("dnsConfig"), e);
    for (i, g) in arr(spec, "readinessGates").iter().enumerate() {
        let ct = s(g, "conditionType");
        let gp = p.child("readinessGates").index(i).child("conditionType");
        e.invalid_each(&gp, ct, qualified_name_errors(ct));
    }
    let mut gates = BTreeSet::new();
    for (i, g) in arr(spec, "schedulingGates").iter().enumerate() {
        let name = s(g, "name");
        let gp = p.child("schedulingGates").index(i);
        e.invalid_each(&gp, name, qualified_name_errors(name));
        if !gates.insert(name) {
            e.duplicate(&gp, name);
        }
    }
    topology_spread(
        arr(spec, "topologySpreadConstraints"),
        &p.child("topologySpreadConstraints"),
        e,
    );
    for (field, rule) in [
        ("serviceAccountName", NameRule::Subdomain),
        ("nodeName", NameRule::Subdomain),
    ] {
        let v = s(spec, field);
        if !v.is_empty() {
            e.invalid_each(&p.child(field), v, rule.check(v, false));
        }
    }
    if let Some(v) = int(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&v) {
            e.invalid(
                &p.child("activeDeadlineSeconds"),
                v,
                &range_error(1, i64::from(i32::MAX)),
            );
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = s(spec, field);
        if !v.is_empty() {
            e.invalid_each(&p.child(field), v, dns1123_label_errors(v));
        }
    }
    tolerations(arr(spec, "tolerations"), &p.child("tolerations"), e);
    for (i, ha) in arr(spec, "hostAliases").iter().enumerate() {
        let hp = p.child("hostAliases").index(i);
        super::ip_errors(&hp.child("ip"), s(ha, "ip"), e);
        for (j, h) in arr(ha, "hostnames").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            e.invalid_each(
                &hp.child("hostnames").index(j),
                h,
                dns1123_subdomain_errors(h),
            );
        }
    }
    for field in ["priorityClassName", "runtimeClassName"] {
        let v = s(spec, field);
        if !v.is_empty() {
            e.invalid_each(&p.child(field), v, dns1123_subdomain_errors(v));
        }
    }
    if has(spec, "preemptionPolicy") {
        enum_field(
            spec,
            "preemptionPolicy",
            p,
            &["PreemptLowerPriority", "Never"],
            e,
        );
    }
    if let Some(overhead) = spec.get("overhead").filter(|v| v.is_object()) {
        let mut req = serde_json::Map::new();
        req.insert("limits".into(), overhead.clone());
        resources::resource_requirements(&Value::Object(req), &claims, &p.child("overhead"), e);
    }
    if let Some(os) = spec.get("os").filter(|v| v.is_object()) {
        let name = s(os, "name");
        if name.is_empty() {
            e.required(&p.child("os").child("name"), "cannot be empty");
        } else if !matches!(name, "linux" | "windows") {
            e.not_supported(&p.child("os"), name, &["linux", "windows"]);
        }
    }
}

/// A seccomp profile: type, and a localhost profile exactly when type is Localhost.
pub(super) fn seccomp(sp: &Value, p: &P, e: &mut Errs) {
    if !sp.is_object() {
        return;
    }
    let ty = s(sp, "type");
    match ty {
        "Localhost" => {
            if s(sp, "localhostProfile").is_empty() {
                e.required(
                    &p.child("localhostProfile"),
                    "must be set when seccomp type is Localhost",
                );
            }
        }
        "RuntimeDefault" | "Unconfined" => {
            if has(sp, "localhostProfile") {
                e.invalid(
                    &p.child("localhostProfile"),
                    s(sp, "localhostProfile"),
                    "can only be set when seccomp type is Localhost",
                );
            }
        }
        "" => e.required(&p.child("type"), ""),
        other => e.not_supported(
            &p.child("type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        ),
    }
}

fn pod_security_context(sc: &Value, p: &P, e: &mut Errs) {
    if !sc.is_object() {
        return;
    }
    for f in ["fsGroup", "runAsUser", "runAsGroup"] {
        if let Some(v) = int(sc, f) {
            if !(0..=i64::from(i32::MAX)).contains(&v) {
                e.invalid(&p.child(f), v, &range_error(0, i64::from(i32::MAX)));
            }
        }
    }
    for (i, g) in arr(sc, "supplementalGroups").iter().enumerate() {
        let g = g.as_i64().unwrap_or(0);
        if !(0..=i64::from(i32::MAX)).contains(&g) {
            e.invalid(
                &p.child("supplementalGroups").index(i),
                g,
                &range_error(0, i64::from(i32::MAX)),
            );
        }
    }
    if let Some(pol) = opt_s(sc, "fsGroupChangePolicy") {
        if pol != "OnRootMismatch" && pol != "Always" {
            e.not_supported(
                &p.child("fsGroupChangePolicy"),
                pol,
                &["Always", "OnRootMismatch"],
            );
        }
    }
    seccomp(at(sc, "seccompProfile"), &p.child("seccompProfile"), e);
    for (i, sysctl) in arr(sc, "sysctls").iter().enumerate() {
        if s(sysctl, "name").is_empty() {
            e.required(&p.child("sysctls").index(i).child("name"), "");
        }
    }
}

/// Node and pod (anti-)affinity terms.
pub(super) fn affinity(a: &Value, p: &P, e: &mut Errs) {
    if !a.is_object() {
        return;
    }
    let na = at(a, "nodeAffinity");
    let np = p.child("nodeAffinity");
    let req = at(na, "requiredDuringSchedulingIgnoredDuringExecution");
    if req.is_object() {
        let rp = np
            .child("requiredDuringSchedulingIgnoredDuringExecution")
            .child("nodeSelectorTerms");
        let terms = arr(req, "nodeSelectorTerms");
        if terms.is_empty() {
            e.required(&rp, "must have at least one node selector term");
        }
        for (i, t) in terms.iter().enumerate() {
            node_selector_term(t, &rp.index(i), e);
        }
    }
    for (i, pref) in arr(na, "preferredDuringSchedulingIgnoredDuringExecution")
        .iter()
        .enumerate()
    {
        let pp = np
            .child("preferredDuringSchedulingIgnoredDuringExecution")
            .index(i);
        weight(pref, &pp, e);
        node_selector_term(at(pref, "preference"), &pp.child("preference"), e);
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let pa = at(a, kind);
        let kp = p.child(kind);
        for (i, term) in arr(pa, "requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            pod_affinity_term(
                term,
                &kp.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
                e,
            );
        }
        for (i, w) in arr(pa, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let wp = kp
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            weight(w, &wp, e);
            pod_affinity_term(at(w, "podAffinityTerm"), &wp.child("podAffinityTerm"), e);
        }
    }
}

/// A preferred scheduling term's `weight`: 1 to 100.
fn weight(term: &Value, p: &P, e: &mut Errs) {
    let w = int(term, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        e.invalid(&p.child("weight"), w, &range_error(1, 100));
    }
}

fn pod_affinity_term(t: &Value, p: &P, e: &mut Errs) {
    meta::label_selector(t.get("labelSelector"), &p.child("labelSelector"), e);
    meta::label_selector(t.get("namespaceSelector"), &p.child("namespaceSelector"), e);
    for (i, ns) in arr(t, "namespaces").iter().enumerate() {
        let ns = ns.as_str().unwrap_or("");
        e.invalid_each(
            &p.child("namespaces").index(i),
            ns,
            dns1123_label_errors(ns),
        );
    }
    let key = s(t, "topologyKey");
    if key.is_empty() {
        e.required(&p.child("topologyKey"), "can not be empty");
    } else {
        label_name(key, &p.child("topologyKey"), e);
    }
}

fn node_selector_term(t: &Value, p: &P, e: &mut Errs) {
    for (j, r) in arr(t, "matchExpressions").iter().enumerate() {
        meta::selector_requirement(r, &p.child("matchExpressions").index(j), true, e);
    }
    for (j, r) in arr(t, "matchFields").iter().enumerate() {
        let rp = p.child("matchFields").index(j);
        match s(r, "operator") {
            "In" | "NotIn" => {
                if arr(r, "values").len() != 1 {
                    e.required(
                        &rp.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    );
                }
            }
            other => e.invalid(
                &rp.child("operator"),
                other,
                "not a valid selector operator",
            ),
        }
        if s(r, "key") != "metadata.name" {
            e.invalid(
                &rp.child("key"),
                s(r, "key"),
                "not a valid field selector key",
            );
        } else {
            for (k, v) in arr(r, "values").iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                e.invalid_each(&rp.child("values").index(k), v, dns1123_subdomain_errors(v));
            }
        }
    }
}

fn dns_config(spec: &Value, p: &P, e: &mut Errs) {
    let cfg = at(spec, "dnsConfig");
    if s(spec, "dnsPolicy") == "None" {
        if !cfg.is_object() {
            e.required(p, "must provide `dnsConfig` when `dnsPolicy` is None");
            return;
        }
        if arr(cfg, "nameservers").is_empty() {
            e.required(
                &p.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            );
            return;
        }
    }
    if !cfg.is_object() {
        return;
    }
    let ns = arr(cfg, "nameservers");
    if ns.len() > 3 {
        e.invalid(
            &p.child("nameservers"),
            at(cfg, "nameservers").clone(),
            "must not have more than 3 nameservers",
        );
    }
    for (i, n) in ns.iter().enumerate() {
        super::ip_errors(
            &p.child("nameservers").index(i),
            n.as_str().unwrap_or(""),
            e,
        );
    }
    let searches = super::str_list(cfg, "searches");
    if searches.len() > 32 {
        e.invalid(
            &p.child("searches"),
            at(cfg, "searches").clone(),
            "must not have more than 32 search paths",
        );
    }
    if searches.join(" ").len() > 2048 {
        e.invalid(
            &p.child("searches"),
            at(cfg, "searches").clone(),
            "must not have more than 2048 characters (including spaces) in the search list",
        );
    }
    for (i, search) in searches.iter().enumerate() {
        if search == "." {
            continue;
        }
        let trimmed = search.trim_end_matches('.');
        let relaxed = trimmed.replace('_', "a");
        if !dns1123_subdomain_errors(&relaxed).is_empty() || trimmed.len() > 253 {
            let mut msgs = Vec::new();
            if trimmed.len() > 253 {
                msgs.push(super::max_len_error(253));
            }
            if !dns1123_subdomain_errors(&relaxed).is_empty() {
                msgs.push(super::regex_error(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
                    "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
                    &["example.com"],
                ));
            }
            e.invalid_each(&p.child("searches").index(i), trimmed, msgs);
        }
    }
    for (i, o) in arr(cfg, "options").iter().enumerate() {
        if s(o, "name").is_empty() {
            e.required(&p.child("options").index(i), "must not be empty");
        }
    }
}

fn topology_spread(list: &[Value], p: &P, e: &mut Errs) {
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        let skew = int(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            e.invalid(&cp.child("maxSkew"), skew, "must be greater than zero");
        }
        let key = s(c, "topologyKey");
        if key.is_empty() {
            e.required(&cp.child("topologyKey"), "can not be empty");
        }
        let action = s(c, "whenUnsatisfiable");
        if action != "DoNotSchedule" && action != "ScheduleAnyway" {
            e.not_supported(
                &cp.child("whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            );
        }
        if list[i + 1..]
            .iter()
            .any(|o| s(o, "topologyKey") == key && s(o, "whenUnsatisfiable") == action)
        {
            e.duplicate(
                &cp.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{key}, {action}}}"),
            );
        }
        if let Some(md) = int(c, "minDomains") {
            if md <= 0 {
                e.invalid(&cp.child("minDomains"), md, "must be greater than zero");
            }
            if action != "DoNotSchedule" {
                e.invalid(
                    &cp.child("minDomains"),
                    md,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                );
            }
        }
        for f in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(v) = opt_s(c, f) {
                if v != "Honor" && v != "Ignore" {
                    e.not_supported(&cp.child(f), v, &["Honor", "Ignore"]);
                }
            }
        }
        meta::label_selector(c.get("labelSelector"), &cp.child("labelSelector"), e);
    }
}

/// `ValidateTolerations`.
pub(super) fn tolerations(list: &[Value], p: &P, e: &mut Errs) {
    for (i, t) in list.iter().enumerate() {
        let ip = p.index(i);
        let key = s(t, "key");
        if !key.is_empty() {
            label_name(key, &ip.child("key"), e);
        }
        let op = s(t, "operator");
        if key.is_empty() && op != "Exists" {
            e.invalid(
                &ip.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        let effect = s(t, "effect");
        if has(t, "tolerationSeconds") && effect != "NoExecute" {
            e.invalid(
                &ip.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        let value = s(t, "value");
        match op {
            "Equal" | "" => {
                let errs = label_value_errors(value);
                if !errs.is_empty() {
                    e.invalid(&ip.child("operator"), value, &errs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    e.invalid(
                        &ip.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => e.not_supported(&ip.child("operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() {
            taint_effect(effect, &ip.child("effect"), e);
        }
    }
}

/// A taint effect: NoSchedule, PreferNoSchedule or NoExecute.
pub(super) fn taint_effect(effect: &str, p: &P, e: &mut Errs) {
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        e.not_supported(p, effect, &["NoSchedule", "PreferNoSchedule", "NoExecute"]);
    }
}
