//! The smaller groups: Events (core and events.k8s.io), Lease, EndpointSlice, RBAC,
//! NetworkPolicy and PriorityClass.

use std::collections::BTreeSet;

use serde_json::Value;

use super::meta::{self, labels, object_meta};
use super::service::endpoint_ip;
use super::{
    arr, at, dns1123_label_errors, dns1123_subdomain_errors, enum_field, go, go_quote, has, int,
    label_value_errors, map, opt_s, parse_cidr_sloppy, parse_ip_sloppy, port_name_errors,
    port_num_errors, qualified_name_errors, s, same, Errs, NameRule, P,
};

// ---------------------------------------------------------------------------------------------
// Events.

/// Upstream's `legacyValidateEvent`, on either Event version: `regarding`, `controller` and
/// `message` are that version's names for the involved object, the reporting controller and
/// the message.
fn legacy_event(obj: &Value, regarding: &str, controller: &str, message: &str, e: &mut Errs) {
    let namespace = s(at(obj, "metadata"), "namespace");
    let involved_ns = s(at(obj, regarding), "namespace");
    let reporting_controller = s(obj, controller);
    let inv = P::root("involvedObject").child("namespace");
    let mismatch = "does not match event.namespace";
    if !has(obj, "eventTime") {
        if involved_ns.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                e.invalid(&inv, involved_ns, mismatch);
            }
        } else if namespace != involved_ns {
            e.invalid(&inv, involved_ns, mismatch);
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            e.invalid(&inv, involved_ns, mismatch);
        }
        let cp = P::root(controller);
        if reporting_controller.is_empty() {
            e.required(&cp, "");
        }
        e.invalid_each(
            &cp,
            reporting_controller,
            qualified_name_errors(reporting_controller),
        );
        for field in ["reportingInstance", "action", "reason"] {
            let value = s(obj, field);
            if value.is_empty() {
                e.required(&P::root(field), "");
            }
            if value.len() > 128 {
                e.invalid(&P::root(field), "", "can have at most 128 characters");
            }
        }
        if s(obj, message).len() > 1024 {
            e.invalid(&P::root("message"), "", "can have at most 1024 characters");
        }
    }
    e.invalid_each(
        &P::root("namespace"),
        namespace,
        dns1123_subdomain_errors(namespace),
    );
}

/// core/v1 Event: only the legacy checks, as upstream does for this version.
pub(super) fn validate_core_event(obj: &Value, _old: Option<&Value>, e: &mut Errs) {
    legacy_event(obj, "involvedObject", "reportingComponent", "message", e);
}

/// events.k8s.io/v1 Event: legacy checks, metadata, and the stricter new-style rules.
pub(super) fn validate_events_event(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    legacy_event(obj, "regarding", "reportingController", "note", e);
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let series_changed = old.is_none_or(|o| !same(at(o, "series"), at(obj, "series")));
    if series_changed && at(obj, "series").is_object() {
        let series = at(obj, "series");
        if int(series, "count").unwrap_or(0) < 2 {
            e.invalid(&P::root("series.count"), "", "should be at least 2");
        }
        if !has(series, "lastObservedTime") {
            e.required(&P::root("series.lastObservedTime"), "");
        }
    }
    if let Some(old) = old {
        for (json, path) in [
            ("regarding", "involvedObject"),
            ("reason", "reason"),
            ("note", "message"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"),
            ("type", "type"),
            ("eventTime", "eventTime"),
            ("action", "action"),
            ("related", "related"),
            ("reportingController", "reportingController"),
            ("reportingInstance", "reportingInstance"),
        ] {
            e.immutable(
                &P::root(path),
                at(obj, json),
                at(old, json),
                at(obj, json).clone(),
            );
        }
        return;
    }
    if !has(obj, "eventTime") {
        e.required(&P::root("eventTime"), "");
    }
    let ty = s(obj, "type");
    if ty != "Normal" && ty != "Warning" {
        e.invalid(&P::root("type"), "", &format!("has invalid value: {ty}"));
    }
    for (json, path) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
    ] {
        if has(obj, json) {
            e.invalid(&P::root(path), "", "needs to be unset");
        }
    }
    if int(obj, "deprecatedCount").unwrap_or(0) != 0 {
        e.invalid(&P::root("count"), "", "needs to be unset");
    }
    let src = at(obj, "deprecatedSource");
    if !s(src, "component").is_empty() || !s(src, "host").is_empty() {
        e.invalid(&P::root("source"), "", "needs to be unset");
    }
}

// ---------------------------------------------------------------------------------------------
// Lease.

/// Lease: positive duration, non-negative transitions, holder preference needs a strategy.
pub(super) fn validate_lease(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    if let Some(d) = int(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        e.invalid(
            &sp.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        );
    }
    if let Some(t) = int(spec, "leaseTransitions").filter(|t| *t < 0) {
        e.invalid(
            &sp.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        );
    }
    let strategy = s(spec, "strategy");
    if has(spec, "strategy") && strategy != "OldestEmulationVersion" && !strategy.contains('/') {
        e.not_supported(&sp.child("strategy"), strategy, &["OldestEmulationVersion"]);
    }
    if !s(spec, "preferredHolder").is_empty() && strategy.is_empty() {
        e.forbidden(
            &sp.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// EndpointSlice.

/// EndpointSlice: address type (immutable), addresses per type, ports.
pub(super) fn validate_endpoint_slice(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let at_p = P::root("addressType");
    let addr_type = s(obj, "addressType");
    enum_field(
        obj,
        "addressType",
        &P::root(""),
        &["FQDN", "IPv4", "IPv6"],
        e,
    );
    let ep = P::root("endpoints");
    let endpoints = arr(obj, "endpoints");
    if endpoints.len() > 1000 {
        e.too_many(&ep, endpoints.len(), 1000);
    } else {
        for (i, endpoint) in endpoints.iter().enumerate() {
            slice_endpoint(endpoint, addr_type, &ep.index(i), e);
        }
    }
    let pp = P::root("ports");
    let ports = arr(obj, "ports");
    if ports.len() > 20000 {
        e.too_many(&pp, ports.len(), 20000);
    } else {
        let mut names = BTreeSet::new();
        for (i, port) in ports.iter().enumerate() {
            let ip = pp.index(i);
            let name = s(port, "name");
            if !name.is_empty() {
                e.invalid_each(&ip.child("name"), name, dns1123_label_errors(name));
            }
            if !names.insert(name) {
                e.duplicate(&ip.child("name"), name);
            }
            match opt_s(port, "protocol") {
                None => e.required(&ip.child("protocol"), ""),
                Some("TCP" | "UDP" | "SCTP") => {}
                Some(other) => {
                    e.not_supported(&ip.child("protocol"), other, &["SCTP", "TCP", "UDP"])
                }
            }
            if let Some(ap) = opt_s(port, "appProtocol") {
                e.invalid_each(&ip.child("appProtocol"), ap, qualified_name_errors(ap));
            }
        }
    }
    if let Some(old) = old {
        let old_type = s(old, "addressType");
        if old_type != addr_type {
            e.invalid(&at_p, addr_type, "field is immutable");
        }
    }
}

fn slice_endpoint(endpoint: &Value, addr_type: &str, p: &P, e: &mut Errs) {
    let ap = p.child("addresses");
    let addrs = arr(endpoint, "addresses");
    if addrs.is_empty() {
        e.required(&ap, "must contain at least 1 address");
    } else if addrs.len() > 100 {
        e.too_many(&ap, addrs.len(), 100);
    }
    for (i, a) in addrs.iter().enumerate() {
        let a = a.as_str().unwrap_or("");
        let ip = ap.index(i);
        match addr_type {
            "IPv4" | "IPv6" => {
                let want_v4 = addr_type == "IPv4";
                let parsed = parse_ip_sloppy(a);
                let ok = parsed.is_some_and(|x| {
                    let v4 = x.is_ipv4()
                        || matches!(x, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
                    v4 == want_v4
                });
                if !ok {
                    e.invalid(&ip, a, &format!("must be a valid {addr_type} address"));
                }
                endpoint_ip(a, &ip, e);
            }
            "FQDN" => fqdn(a, &ip, e),
            _ => {}
        }
    }
    if let Some(n) = opt_s(endpoint, "nodeName") {
        e.invalid_each(&p.child("nodeName"), n, dns1123_subdomain_errors(n));
    }
    let tp = p.child("deprecatedTopology");
    if let Some(t) = map(endpoint, "deprecatedTopology") {
        if t.len() > 16 {
            e.too_many(&tp, t.len(), 16);
        }
    }
    labels(endpoint.get("deprecatedTopology"), &tp, e);
    if let Some(h) = opt_s(endpoint, "hostname") {
        e.invalid_each(&p.child("hostname"), h, dns1123_label_errors(h));
    }
    let hints = at(endpoint, "hints");
    if hints.is_object() {
        let zp = p.child("hints").child("forZones");
        let zones = arr(hints, "forZones");
        if zones.len() > 8 {
            e.too_many(&zp, zones.len(), 8);
        } else {
            let mut seen = BTreeSet::new();
            for (i, z) in zones.iter().enumerate() {
                let name = s(z, "name");
                let np = zp.index(i).child("name");
                if !seen.insert(name) {
                    e.duplicate(&np, name);
                }
                e.invalid_each(&np, name, label_value_errors(name));
            }
        }
    }
}

fn fqdn(name: &str, p: &P, e: &mut Errs) {
    if name.is_empty() {
        e.required(p, "");
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let errs = dns1123_subdomain_errors(name);
    if !errs.is_empty() {
        e.invalid(p, name, &errs.join(","));
        return;
    }
    if name.split('.').count() < 2 {
        e.invalid(
            p,
            name,
            "should be a domain with at least two segments separated by dots",
        );
        return;
    }
    for label in name.split('.') {
        let errs = dns1123_label_errors(label);
        if !errs.is_empty() {
            e.invalid(p, label, &errs.join(","));
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC.

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Role and ClusterRole: rules (and a ClusterRole's aggregation rule).
pub(super) fn validate_role(obj: &Value, old: Option<&Value>, namespaced: bool, e: &mut Errs) {
    object_meta(obj, old, namespaced, NameRule::PathSegment, e);
    for (i, rule) in arr(obj, "rules").iter().enumerate() {
        policy_rule(rule, namespaced, &P::root("rules").index(i), e);
    }
    let agg = at(obj, "aggregationRule");
    if !namespaced && agg.is_object() {
        let ap = P::root("aggregationRule").child("clusterRoleSelectors");
        let sels = arr(agg, "clusterRoleSelectors");
        if sels.is_empty() {
            e.required(
                &ap,
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            );
        }
        for (i, sel) in sels.iter().enumerate() {
            meta::label_selector(Some(sel), &ap.index(i), e);
            if meta::Selector::parse(Some(sel)).is_err() {
                e.invalid(
                    &ap.index(i),
                    meta::shown_selector(Some(sel)),
                    "invalid label selector.",
                );
            }
        }
    }
}

fn policy_rule(rule: &Value, namespaced: bool, p: &P, e: &mut Errs) {
    if arr(rule, "verbs").is_empty() {
        e.required(&p.child("verbs"), "verbs must contain at least one value");
    }
    let urls = arr(rule, "nonResourceURLs");
    if !urls.is_empty() {
        let shown = at(rule, "nonResourceURLs").clone();
        if namespaced {
            e.invalid(
                &p.child("nonResourceURLs"),
                shown.clone(),
                "namespaced rules cannot apply to non-resource URLs",
            );
        }
        if !arr(rule, "apiGroups").is_empty()
            || !arr(rule, "resources").is_empty()
            || !arr(rule, "resourceNames").is_empty()
        {
            e.invalid(
                &p.child("nonResourceURLs"),
                shown,
                "rules cannot apply to both regular resources and non-resource URLs",
            );
        }
        return;
    }
    if arr(rule, "apiGroups").is_empty() {
        e.required(
            &p.child("apiGroups"),
            "resource rules must supply at least one api group",
        );
    }
    if arr(rule, "resources").is_empty() {
        e.required(
            &p.child("resources"),
            "resource rules must supply at least one resource",
        );
    }
}

/// RoleBinding and ClusterRoleBinding: roleRef (immutable) and subjects.
pub(super) fn validate_role_binding(
    obj: &Value,
    old: Option<&Value>,
    namespaced: bool,
    e: &mut Errs,
) {
    object_meta(obj, old, namespaced, NameRule::PathSegment, e);
    let rr = at(obj, "roleRef");
    let rp = P::root("roleRef");
    let group = s(rr, "apiGroup");
    if group != RBAC_GROUP {
        e.not_supported(&rp.child("apiGroup"), group, &[RBAC_GROUP]);
    }
    let kind = s(rr, "kind");
    if namespaced && kind != "Role" && kind != "ClusterRole" {
        e.not_supported(&rp.child("kind"), kind, &["Role", "ClusterRole"]);
    } else if !namespaced && kind != "ClusterRole" {
        e.not_supported(&rp.child("kind"), kind, &["ClusterRole"]);
    }
    let name = s(rr, "name");
    if name.is_empty() {
        e.required(&rp.child("name"), "");
    } else {
        e.invalid_each(
            &rp.child("name"),
            name,
            NameRule::PathSegment.check(name, false),
        );
    }
    for (i, subject) in arr(obj, "subjects").iter().enumerate() {
        rbac_subject(subject, namespaced, &P::root("subjects").index(i), e);
    }
    if let Some(old) = old {
        let orr = at(old, "roleRef");
        if s(orr, "apiGroup") != group || s(orr, "kind") != kind || s(orr, "name") != name {
            e.invalid(
                &rp,
                go(format!(
                    "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                    go_quote(group),
                    go_quote(kind),
                    go_quote(name)
                )),
                "cannot change roleRef",
            );
        }
    }
}

fn rbac_subject(subject: &Value, namespaced: bool, p: &P, e: &mut Errs) {
    let name = s(subject, "name");
    if name.is_empty() {
        e.required(&p.child("name"), "");
    }
    let group = s(subject, "apiGroup");
    match s(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                e.invalid_each(&p.child("name"), name, dns1123_subdomain_errors(name));
            }
            if !group.is_empty() {
                e.not_supported(&p.child("apiGroup"), group, &[""]);
            }
            if !namespaced && s(subject, "namespace").is_empty() {
                e.required(&p.child("namespace"), "");
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                e.not_supported(&p.child("apiGroup"), group, &[RBAC_GROUP]);
            }
        }
        other => e.not_supported(
            &p.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicy.

/// NetworkPolicy: selectors, ports, peers and policy types.
pub(super) fn validate_network_policy(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    meta::label_selector(spec.get("podSelector"), &sp.child("podSelector"), e);
    for (dir, peers_field) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr(spec, dir).iter().enumerate() {
            let rp = sp.child(dir).index(i);
            for (j, port) in arr(rule, "ports").iter().enumerate() {
                np_port(port, &rp.child("ports").index(j), e);
            }
            for (j, peer) in arr(rule, peers_field).iter().enumerate() {
                np_peer(peer, &rp.child(peers_field).index(j), e);
            }
        }
    }
    let types = arr(spec, "policyTypes");
    let tp = sp.child("policyTypes");
    if types.len() > 2 {
        e.invalid(
            &tp,
            at(spec, "policyTypes").clone(),
            "may not specify more than two policyTypes",
        );
        return;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if t != "Ingress" && t != "Egress" {
            e.not_supported(&tp.index(i), t, &["Ingress", "Egress"]);
        }
    }
}

fn np_port(port: &Value, p: &P, e: &mut Errs) {
    if let Some(proto) = opt_s(port, "protocol") {
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            e.not_supported(&p.child("protocol"), proto, &["TCP", "UDP", "SCTP"]);
        }
    }
    let end = int(port, "endPort");
    match at(port, "port") {
        Value::Null => {
            if let Some(end) = end {
                e.invalid(
                    &p.child("endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                );
            }
        }
        Value::String(name) => {
            if let Some(end) = end {
                e.invalid(
                    &p.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                );
            }
            e.invalid_each(&p.child("port"), name, port_name_errors(name));
        }
        other => {
            let n = other.as_i64().unwrap_or(0);
            for m in port_num_errors(n) {
                e.invalid(&p.child("port"), n, &m);
            }
            if let Some(end) = end {
                if end < n {
                    e.invalid(
                        &p.child("endPort"),
                        n,
                        "must be greater than or equal to `port`",
                    );
                }
                for m in port_num_errors(end) {
                    e.invalid(&p.child("endPort"), end, &m);
                }
            }
        }
    }
}

fn np_peer(peer: &Value, p: &P, e: &mut Errs) {
    let mut n = 0;
    for sel in ["podSelector", "namespaceSelector"] {
        if at(peer, sel).is_object() {
            n += 1;
            meta::label_selector(peer.get(sel), &p.child(sel), e);
        }
    }
    let block = at(peer, "ipBlock");
    if block.is_object() {
        n += 1;
        ip_block(block, &p.child("ipBlock"), e);
    }
    if n == 0 {
        e.required(p, "must specify a peer");
    } else if n > 1 && block.is_object() {
        e.forbidden(p, "may not specify both ipBlock and another peer");
    }
}

fn ip_block(block: &Value, p: &P, e: &mut Errs) {
    let cidr = s(block, "cidr");
    if cidr.is_empty() {
        e.required(&p.child("cidr"), "");
        return;
    }
    super::cidr_errors(&p.child("cidr"), cidr, e);
    let Some((net, len)) = parse_cidr_sloppy(cidr) else {
        return;
    };
    for (i, ex) in arr(block, "except").iter().enumerate() {
        let ex = ex.as_str().unwrap_or("");
        let xp = p.child("except").index(i);
        super::cidr_errors(&xp, ex, e);
        let Some((xip, xlen)) = parse_cidr_sloppy(ex) else {
            continue;
        };
        if !cidr_contains(net, len, xip) || len >= xlen {
            e.invalid(&xp, ex, "must be a strict subset of `cidr`");
        }
    }
}

fn cidr_contains(net: std::net::IpAddr, len: u8, ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr::{V4, V6};
    match (net, ip) {
        (V4(n), V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (V6(n), V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// PriorityClass.

/// PriorityClass: user values up to 1e9, reserved `system-` names; value and preemption policy fixed.
pub(super) fn validate_priority_class(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, false, NameRule::Subdomain, e);
    let name = s(at(obj, "metadata"), "name");
    let value = int(obj, "value").unwrap_or(0);
    if let Some(old) = old {
        if int(old, "value").unwrap_or(0) != value {
            e.forbidden(&P::root("value"), "may not be changed in an update.");
        }
        if at(old, "preemptionPolicy") != at(obj, "preemptionPolicy") {
            e.invalid(
                &P::root("preemptionPolicy"),
                at(obj, "preemptionPolicy").clone(),
                "field is immutable",
            );
        }
        return;
    }
    if name.starts_with("system-") {
        let global = at(obj, "globalDefault").as_bool().unwrap_or(false);
        let err = match name {
            "system-node-critical" | "system-cluster-critical" => {
                let want = if name == "system-node-critical" {
                    2000001000
                } else {
                    2000000000
                };
                if value != want {
                    Some(format!("value of {name} PriorityClass must be {want}"))
                } else if global {
                    Some(format!(
                        "globalDefault of {name} PriorityClass must be false"
                    ))
                } else {
                    None
                }
            }
            _ => Some(format!("{name} is not a known system priority class")),
        };
        if let Some(err) = err {
            e.forbidden(
                &P::root("metadata").child("name"),
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {err}"),
            );
        }
    } else if value > 1_000_000_000 {
        e.forbidden(
            &P::root("value"),
            "maximum allowed value of a user defined priority is 1000000000",
        );
    }
    if has(obj, "preemptionPolicy") {
        enum_field(
            obj,
            "preemptionPolicy",
            &P::root(""),
            &["PreemptLowerPriority", "Never"],
            e,
        );
    }
}
