//! Services and Endpoints.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::Value;

use super::container::{port_num_or_name, protocol};
use super::meta::{labels, object_meta};
use super::{
    arr, at, dns1123_label_errors, dns1123_subdomain_errors, enum_field, go, has, int, ip_errors,
    opt_s, parse_ip_sloppy, port_num_errors, qualified_name_errors, s, same, Errs, NameRule, P,
};

fn is_headless(spec: &Value) -> bool {
    let ips = arr(spec, "clusterIPs");
    ips.len() == 1 && ips[0].as_str() == Some("None")
}

/// Service: ports, type-specific fields, cluster IPs and families, traffic policies; IPs fixed on update.
pub(super) fn validate_service(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Dns1035, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    if let Some(old) = old {
        service_update(spec, at(old, "spec"), &sp, e);
    }
    let ty = s(spec, "type");
    let ports = arr(spec, "ports");
    if ports.is_empty() && !is_headless(spec) && ty != "ExternalName" {
        e.required(&sp.child("ports"), "");
    }
    let first_ip = || {
        arr(spec, "clusterIPs")
            .first()
            .cloned()
            .unwrap_or(Value::Null)
    };
    match ty {
        "LoadBalancer" | "NodePort" if is_headless(spec) => e.invalid(
            &sp.child("clusterIPs").index(0),
            first_ip(),
            &format!("may not be set to 'None' for {ty} services"),
        ),
        "ExternalName" => {
            if !arr(spec, "clusterIPs").is_empty() {
                e.forbidden(
                    &sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                );
            }
            if !arr(spec, "ipFamilies").is_empty() {
                e.forbidden(
                    &sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                );
            }
            if has(spec, "ipFamilyPolicy") {
                e.forbidden(
                    &sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                );
            }
            let cname = s(spec, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                e.required(&sp.child("externalName"), "");
            } else {
                e.invalid_each(
                    &sp.child("externalName"),
                    cname,
                    dns1123_subdomain_errors(cname),
                );
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        service_port(
            port,
            ports.len() > 1,
            &mut names,
            &sp.child("ports").index(i),
            e,
        );
    }
    labels(spec.get("selector"), &sp.child("selector"), e);
    match s(spec, "sessionAffinity") {
        "" => e.required(&sp.child("sessionAffinity"), ""),
        "ClientIP" => client_ip_config(spec, &sp.child("sessionAffinityConfig"), e),
        "None" => {
            if has(spec, "sessionAffinityConfig") {
                e.forbidden(
                    &sp.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                );
            }
        }
        other => e.not_supported(&sp.child("sessionAffinity"), other, &["ClientIP", "None"]),
    }
    cluster_ip_fields(spec, old.map(|o| at(o, "spec")), &sp, e);
    let old_ext: Vec<String> = old
        .map(|o| super::str_list(at(o, "spec"), "externalIPs"))
        .unwrap_or_default();
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if old_ext.iter().any(|o| o == ip) {
            continue;
        }
        let ipp = sp.child("externalIPs").index(i);
        if parse_ip_sloppy(ip).is_none() {
            ip_errors(&ipp, ip, e);
        } else {
            endpoint_ip(ip, &ipp, e);
        }
    }
    enum_field(
        spec,
        "type",
        &sp,
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        e,
    );
    if ty == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int(port, "nodePort").unwrap_or(0) != 0 {
                e.forbidden(
                    &sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                );
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let np = int(port, "nodePort").unwrap_or(0);
        if np != 0 && !node_ports.insert((s(port, "protocol"), np)) {
            e.duplicate(&sp.child("ports").index(i).child("nodePort"), np);
        }
    }
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let key = (s(port, "protocol"), int(port, "port").unwrap_or(0));
        if !seen.insert(key) {
            e.duplicate(
                &sp.child("ports").index(i),
                go(format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    super::go_quote(key.0),
                    key.1
                )),
            );
        }
    }
    load_balancer_fields(spec, old.map(|o| at(o, "spec")), &sp, e);
    traffic_policies(spec, &sp, e);
}

fn service_port(
    port: &Value,
    require_name: bool,
    names: &mut BTreeSet<String>,
    p: &P,
    e: &mut Errs,
) {
    let name = s(port, "name");
    if require_name && name.is_empty() {
        e.required(&p.child("name"), "");
    } else if !name.is_empty() {
        e.invalid_each(&p.child("name"), name, dns1123_label_errors(name));
        if !names.insert(name.to_string()) {
            e.duplicate(&p.child("name"), name);
        }
    }
    let num = int(port, "port").unwrap_or(0);
    for m in port_num_errors(num) {
        e.invalid(&p.child("port"), num, &m);
    }
    protocol(port, p, e);
    port_num_or_name(at(port, "targetPort"), &p.child("targetPort"), e);
    if let Some(ap) = opt_s(port, "appProtocol") {
        e.invalid_each(&p.child("appProtocol"), ap, qualified_name_errors(ap));
    }
}

fn client_ip_config(spec: &Value, p: &P, e: &mut Errs) {
    let cfg = at(spec, "sessionAffinityConfig");
    let when = "when session affinity type is ClientIP";
    if !cfg.is_object() {
        return e.required(p, when);
    }
    let cip = at(cfg, "clientIP");
    if !cip.is_object() {
        return e.required(&p.child("clientIP"), when);
    }
    let tp = p.child("clientIP").child("timeoutSeconds");
    match int(cip, "timeoutSeconds") {
        None => e.required(&tp, when),
        Some(t) if t <= 0 || t > 86400 => {
            e.invalid(&tp, t, "must be greater than 0 and less than 86400")
        }
        Some(_) => {}
    }
}

fn cluster_ip_fields(spec: &Value, old: Option<&Value>, sp: &P, e: &mut Errs) {
    if s(spec, "type") == "ExternalName" {
        return;
    }
    let ips_p = sp.child("clusterIPs");
    let ips = super::str_list(spec, "clusterIPs");
    let ips_v = at(spec, "clusterIPs").clone();
    let cip = s(spec, "clusterIP");
    if !cip.is_empty() {
        if ips.is_empty() {
            e.required(&ips_p, "");
        } else if ips[0] != cip {
            e.invalid(&ips_p, ips_v.clone(), "first value must match `clusterIP`");
        }
    } else if !ips.is_empty() {
        e.invalid(
            &ips_p,
            ips_v.clone(),
            "must be empty when `clusterIP` is not specified",
        );
    }
    let mut fams = BTreeSet::new();
    for (i, f) in arr(spec, "ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let fp = sp.child("ipFamilies").index(i);
        if f != "IPv4" && f != "IPv6" {
            e.not_supported(&fp, f, &["IPv4", "IPv6"]);
        }
        if !fams.insert(f) {
            e.duplicate(&fp, f);
        }
    }
    if let Some(pol) = opt_s(spec, "ipFamilyPolicy") {
        if !matches!(pol, "SingleStack" | "PreferDualStack" | "RequireDualStack") {
            e.not_supported(
                &sp.child("ipFamilyPolicy"),
                pol,
                &["PreferDualStack", "RequireDualStack", "SingleStack"],
            );
        }
    }
    let existing: Vec<String> = old
        .map(|o| super::str_list(o, "clusterIPs"))
        .unwrap_or_default();
    let mut bad = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad = true;
                e.invalid(
                    &ips_p,
                    ips_v.clone(),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        if existing.contains(ip) {
            continue;
        }
        if parse_ip_sloppy(ip).is_none() {
            bad = true;
            ip_errors(&ips_p.index(i), ip, e);
        }
    }
    if ips.len() > 2 {
        e.invalid(&ips_p, ips_v.clone(), "may only hold up to 2 values");
    }
    if bad {
        return;
    }
    if ips.len() > 1 {
        let v4: Vec<bool> = ips
            .iter()
            .filter_map(|ip| parse_ip_sloppy(ip))
            .map(|ip| ip.is_ipv4())
            .collect();
        if !(v4.len() == 2 && v4[0] != v4[1]) {
            e.invalid(
                &ips_p,
                ips_v,
                "may specify no more than one IP for each IP family",
            );
        }
    }
    let fam_list = super::str_list(spec, "ipFamilies");
    if !is_headless(spec) {
        for (i, ip) in ips.iter().enumerate() {
            let Some(fam) = fam_list.get(i) else { break };
            let is6 = parse_ip_sloppy(ip).is_some_and(|a| a.is_ipv6());
            if fam == "IPv4" && is6 {
                e.invalid(
                    &ips_p.index(i),
                    ip.as_str(),
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                );
            }
            if fam == "IPv6" && !is6 {
                e.invalid(
                    &ips_p.index(i),
                    ip.as_str(),
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                );
            }
        }
    }
}

fn load_balancer_fields(spec: &Value, old: Option<&Value>, sp: &P, e: &mut Errs) {
    let ty = s(spec, "type");
    let ranges = arr(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        let rp = sp.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            e.forbidden(&rp, "may only be used when `type` is 'LoadBalancer'");
        }
        let existing: Vec<String> = old
            .map(|o| {
                super::str_list(o, "loadBalancerSourceRanges")
                    .iter()
                    .map(|r| r.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        for (i, r) in ranges.iter().enumerate() {
            let r = r.as_str().unwrap_or("").trim();
            if !existing.iter().any(|x| x == r) {
                super::cidr_errors(&rp.index(i), r, e);
            }
        }
    }
    if has(spec, "allocateLoadBalancerNodePorts") && ty != "LoadBalancer" {
        e.forbidden(
            &sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
    if ty == "LoadBalancer" && !has(spec, "allocateLoadBalancerNodePorts") {
        e.required(&P::root("allocateLoadBalancerNodePorts"), "");
    }
    let class_p = sp.child("loadBalancerClass");
    if let Some(old) = old {
        if s(old, "type") == "LoadBalancer"
            && ty == "LoadBalancer"
            && at(old, "loadBalancerClass") != at(spec, "loadBalancerClass")
        {
            e.invalid(
                &class_p,
                at(spec, "loadBalancerClass").clone(),
                "may not change once set",
            );
        }
    }
    if let Some(class) = opt_s(spec, "loadBalancerClass") {
        if ty == "LoadBalancer" {
            e.invalid_each(&class_p, class, qualified_name_errors(class));
        } else {
            e.forbidden(&class_p, "may only be used when `type` is 'LoadBalancer'");
        }
    }
}

fn traffic_policies(spec: &Value, sp: &P, e: &mut Errs) {
    let ty = s(spec, "type");
    let accessible = ty == "LoadBalancer"
        || ty == "NodePort"
        || (ty == "ClusterIP" && !arr(spec, "externalIPs").is_empty());
    let etp = s(spec, "externalTrafficPolicy");
    let etp_p = sp.child("externalTrafficPolicy");
    if !accessible {
        if !etp.is_empty() {
            e.invalid(
                &etp_p,
                etp,
                "may only be set for externally-accessible services",
            );
        }
    } else if etp.is_empty() {
        e.required(&etp_p, "");
    } else if etp != "Cluster" && etp != "Local" {
        e.not_supported(&etp_p, etp, &["Cluster", "Local"]);
    }
    let hc = int(spec, "healthCheckNodePort").unwrap_or(0);
    let hc_p = sp.child("healthCheckNodePort");
    if !(ty == "LoadBalancer" && etp == "Local") {
        if hc != 0 {
            e.invalid(
                &hc_p,
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            );
        }
    } else if hc != 0 {
        // Upstream also requires it here, but allocates it before validating; the REST layer
        // allocates after, so an unset port is left to the allocator.
        for m in port_num_errors(hc) {
            e.invalid(&hc_p, hc, &m);
        }
    }
    let itp_p = sp.child("internalTrafficPolicy");
    match opt_s(spec, "internalTrafficPolicy") {
        None if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") => e.required(&itp_p, ""),
        Some(v) if v != "Cluster" && v != "Local" => {
            e.not_supported(&itp_p, v, &["Cluster", "Local"])
        }
        _ => {}
    }
    if let Some(td) = opt_s(spec, "trafficDistribution") {
        if td != "PreferClose" {
            e.not_supported(&sp.child("trafficDistribution"), td, &["PreferClose"]);
        }
    }
}

fn service_update(spec: &Value, old: &Value, sp: &P, e: &mut Errs) {
    let (ty, old_ty) = (s(spec, "type"), s(old, "type"));
    if ty == "ExternalName" || old_ty == "ExternalName" {
        return;
    }
    let (new_h, old_h) = (is_headless(spec), is_headless(old));
    let new_ips = super::str_list(spec, "clusterIPs");
    let old_ips = super::str_list(old, "clusterIPs");
    let ips_v = at(spec, "clusterIPs").clone();
    let ips_p = sp.child("clusterIPs");
    let single = opt_s(spec, "ipFamilyPolicy") == Some("SingleStack");
    if !(new_h && old_h) {
        if old_ips.len() == new_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    e.invalid(&ips_p.index(i), ips_v.clone(), "may not change once set");
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                e.invalid(
                    &ips_p.index(0),
                    ips_v.clone(),
                    "primary clusterIP can not be unset",
                );
            } else if new_ips[0] != old_ips[0] {
                e.invalid(&ips_p.index(0), ips_v.clone(), "may not change once set");
            }
            if new_ips.len() == 1 && !single {
                e.invalid(
                    &sp.child("ipFamilyPolicy"),
                    at(spec, "ipFamilyPolicy").clone(),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                );
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            e.invalid(&ips_p.index(0), ips_v.clone(), "may not change once set");
        }
    }
    if new_h == old_h && !new_h {
        let nf = super::str_list(spec, "ipFamilies");
        let of = super::str_list(old, "ipFamilies");
        let fp = sp.child("ipFamilies").index(0);
        let fv = at(spec, "ipFamilies").clone();
        if nf.len() == of.len() {
            if nf != of {
                e.invalid(&fp, fv, "may not change once set");
            }
        } else if of.len() > nf.len() {
            if new_ips.is_empty() {
                e.invalid(&fp, fv, "primary ipFamily can not be unset");
            }
            if !nf.is_empty() && nf[0] != of[0] {
                e.invalid(&fp, ips_v.clone(), "may not change once set");
            }
            if nf.len() == 1 && !single {
                e.invalid(
                    &sp.child("ipFamilyPolicy"),
                    at(spec, "ipFamilyPolicy").clone(),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                );
            }
        } else if !of.is_empty() && !nf.is_empty() && nf[0] != of[0] {
            e.invalid(&fp, ips_v, "may not change once set");
        }
    }
    let needs =
        |x: &Value| s(x, "type") == "LoadBalancer" && s(x, "externalTrafficPolicy") == "Local";
    if needs(old)
        && needs(spec)
        && int(spec, "healthCheckNodePort") != int(old, "healthCheckNodePort")
    {
        e.forbidden(&sp.child("healthCheckNodePort"), "field is immutable");
    }
}

/// Addresses that make no sense as endpoints (upstream's `ValidateEndpointIP`).
pub(super) fn endpoint_ip(value: &str, p: &P, e: &mut Errs) {
    let Some(ip) = parse_ip_sloppy(value) else {
        e.invalid(p, value, "must be a valid IP address");
        return;
    };
    if ip.is_unspecified() {
        e.invalid(p, value, &format!("may not be unspecified ({value})"));
    }
    if ip.is_loopback() {
        e.invalid(
            p,
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        );
    }
    let (link_local, ll_multicast) = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (
                o[0] == 169 && o[1] == 254,
                o[0] == 224 && o[1] == 0 && o[2] == 0,
            )
        }
        IpAddr::V6(a) => {
            let s6 = a.segments();
            match a.to_ipv4_mapped() {
                Some(v4) => {
                    let o = v4.octets();
                    (
                        o[0] == 169 && o[1] == 254,
                        o[0] == 224 && o[1] == 0 && o[2] == 0,
                    )
                }
                None => (s6[0] & 0xffc0 == 0xfe80, s6[0] & 0xff0f == 0xff02),
            }
        }
    };
    if link_local {
        e.invalid(
            p,
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        );
    }
    if ll_multicast {
        e.invalid(
            p,
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        );
    }
}

/// Endpoints: addresses and ports of each subset (unchanged subsets are not re-checked on update).
pub(super) fn validate_endpoints(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let mut sub = Errs::default();
    let p = P::root("subsets");
    for (i, ss) in arr(obj, "subsets").iter().enumerate() {
        let ip = p.index(i);
        let (addrs, not_ready) = (arr(ss, "addresses"), arr(ss, "notReadyAddresses"));
        if addrs.is_empty() && not_ready.is_empty() {
            sub.required(&ip, "must specify `addresses` or `notReadyAddresses`");
        }
        for (field, list) in [("addresses", addrs), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let ap = ip.child(field).index(j);
                let addr = s(a, "ip");
                ip_errors(&ap.child("ip"), addr, &mut sub);
                let host = s(a, "hostname");
                if !host.is_empty() {
                    sub.invalid_each(&ap.child("hostname"), host, dns1123_label_errors(host));
                }
                if let Some(n) = opt_s(a, "nodeName") {
                    sub.invalid_each(&ap.child("nodeName"), n, dns1123_subdomain_errors(n));
                }
                endpoint_ip(addr, &ap.child("ip"), &mut sub);
            }
        }
        let ports = arr(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = ip.child("ports").index(j);
            let name = s(port, "name");
            if ports.len() > 1 && name.is_empty() {
                sub.required(&pp.child("name"), "");
            } else if !name.is_empty() {
                sub.invalid_each(&pp.child("name"), name, dns1123_label_errors(name));
            }
            let num = int(port, "port").unwrap_or(0);
            for m in port_num_errors(num) {
                sub.invalid(&pp.child("port"), num, &m);
            }
            protocol(port, &pp, &mut sub);
            if let Some(ap) = opt_s(port, "appProtocol") {
                sub.invalid_each(&pp.child("appProtocol"), ap, qualified_name_errors(ap));
            }
        }
    }
    let unchanged = old.is_some_and(|o| same(at(o, "subsets"), at(obj, "subsets")));
    if !unchanged {
        e.0.extend(sub.0);
    }
}
