//! Service cluster IPs from the service CIDR and node ports from 30000–32767.
//!
//! Each allocation is a key (`/registry/core/ranges/...`) created in the same store
//! transaction as the Service that holds it and deleted with it, so two Services can never
//! hold the same address, and a failed write leaves nothing allocated.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use super::objects;
use super::registry::{self, Claims};
use super::status::Status;
use crate::store::Store;

/// The service CIDR, 10.96.0.0/12 as kubeadm's default.
const CIDR_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const CIDR_BITS: u32 = 12;
/// The address of the `kubernetes` Service in `default`.
pub const API_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// Kept for the cluster DNS service, as kubeadm does.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

const IP_PREFIX: &str = "/registry/core/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/core/ranges/servicenodeports/";

fn ip_key(ip: Ipv4Addr) -> Vec<u8> {
    format!("{IP_PREFIX}{ip}").into_bytes()
}

fn port_key(port: u16) -> Vec<u8> {
    format!("{PORT_PREFIX}{port}").into_bytes()
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - CIDR_BITS);
    (u32::from(ip) & mask) == CIDR_BASE
}

fn owner(obj: &Value) -> Vec<u8> {
    format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        objects::name_of(obj)
    )
    .into_bytes()
}

/// Whether the Service type gets a cluster IP, and node ports.
fn wants(obj: &Value) -> (bool, bool) {
    let ty = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
    let ip = ty != "ExternalName" && obj["spec"]["clusterIP"].as_str() != Some("None");
    (ip, matches!(ty, "NodePort" | "LoadBalancer"))
}

/// The cluster IP a Service holds, if any.
fn held_ip(obj: &Value) -> Option<Ipv4Addr> {
    obj["spec"]["clusterIP"].as_str()?.parse().ok()
}

/// The node ports a Service holds.
fn held_ports(obj: &Value) -> Vec<u16> {
    obj["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

fn invalid(obj: &Value, field: &str, value: &str, why: &str) -> Status {
    Status::invalid_fields(
        "Service",
        "",
        objects::name_of(obj),
        vec![(
            "FieldValueInvalid",
            format!("Invalid value: {value}: {why}"),
            field.to_string(),
        )],
    )
}

fn taken(store: &Store, prefix: &str) -> Result<HashSet<String>, Status> {
    Ok(registry::keys(store, prefix.as_bytes())?
        .into_iter()
        .filter_map(|k| {
            String::from_utf8(k)
                .ok()
                .and_then(|k| k.strip_prefix(prefix).map(str::to_string))
        })
        .collect())
}

/// Fills in the cluster IP and node ports `obj` needs beyond what `old` (on update) already
/// holds, and returns the claims to write with it. Addresses the client asked for are checked;
/// the rest are drawn at random from what is free.
pub fn allocate(store: &Store, obj: &mut Value, old: Option<&Value>) -> Result<Claims, Status> {
    let mut claims = Claims::default();
    let (wants_ip, wants_ports) = wants(obj);
    let old_ip = old.and_then(held_ip);
    let old_ports: Vec<u16> = old.map(held_ports).unwrap_or_default();
    let me = owner(obj);

    if wants_ip {
        let ip = match obj["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()) {
            Some(given) => {
                let ip: Ipv4Addr = given.parse().map_err(|_| {
                    invalid(
                        obj,
                        "spec.clusterIPs[0]",
                        &format!("{given:?}"),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )
                })?;
                if !in_cidr(ip) {
                    return Err(invalid(obj, "spec.clusterIPs", &format!("[]string{{{given:?}}}"), "failed to allocate IP: the provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"));
                }
                ip
            }
            None => {
                let used = taken(store, IP_PREFIX)?;
                let mut rng = rand::thread_rng();
                let size = 1u32 << (32 - CIDR_BITS);
                let mut pick = None;
                for _ in 0..64 {
                    let ip = Ipv4Addr::from(CIDR_BASE + rng.gen_range(2..size - 1));
                    if ip != DNS_SERVICE_IP && !used.contains(&ip.to_string()) {
                        pick = Some(ip);
                        break;
                    }
                }
                pick.ok_or_else(|| Status::internal("the service IP range is full".into()))?
            }
        };
        obj["spec"]["clusterIP"] = json!(ip.to_string());
        obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
        if old_ip != Some(ip) {
            claims.take.push((ip_key(ip), me.clone()));
        }
    } else if obj["spec"]["clusterIP"].as_str() == Some("None") {
        obj["spec"]["clusterIPs"] = json!(["None"]);
    }
    if let Some(ip) = old_ip.filter(|ip| Some(*ip) != held_ip(obj)) {
        claims.release.push(ip_key(ip));
    }

    let mut used: Option<HashSet<String>> = None;
    let mut mine: Vec<u16> = Vec::new();
    if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
        for (i, p) in ports.iter_mut().enumerate() {
            if !wants_ports {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
                continue;
            }
            let port = match p["nodePort"].as_u64().filter(|n| *n != 0) {
                Some(n) => {
                    let n = u16::try_from(n).ok().filter(|n| NODE_PORTS.contains(n)).ok_or_else(|| {
                        Status::invalid_fields("Service", "", &String::from_utf8_lossy(&me), vec![(
                            "FieldValueInvalid",
                            format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is 30000-32767"),
                            format!("spec.ports[{i}].nodePort"),
                        )])
                    })?;
                    n
                }
                None => {
                    if used.is_none() {
                        used = Some(taken(store, PORT_PREFIX)?);
                    }
                    let used = used.clone().unwrap_or_default();
                    let mut rng = rand::thread_rng();
                    let mut pick = None;
                    for _ in 0..256 {
                        let n = rng.gen_range(NODE_PORTS);
                        if !used.contains(&n.to_string()) && !mine.contains(&n) {
                            pick = Some(n);
                            break;
                        }
                    }
                    pick.ok_or_else(|| Status::internal("the node port range is full".into()))?
                }
            };
            p["nodePort"] = json!(port);
            mine.push(port);
            if !old_ports.contains(&port) {
                claims.take.push((port_key(port), me.clone()));
            }
        }
    }
    for port in old_ports.iter().filter(|p| !mine.contains(p)) {
        claims.release.push(port_key(*port));
    }
    Ok(claims)
}

/// What a deleted Service gives back.
pub fn release(obj: &Value) -> Claims {
    let mut claims = Claims::default();
    if let Some(ip) = held_ip(obj) {
        claims.release.push(ip_key(ip));
    }
    for p in held_ports(obj) {
        claims.release.push(port_key(p));
    }
    claims
}

/// Why a Service write whose claims failed did not go through: a specific address the client
/// asked for is taken (422), else None (a random pick raced another writer: retry).
pub fn explain_taken(
    store: &Store,
    obj: &Value,
    claims: &Claims,
) -> Result<Option<Status>, Status> {
    let ips = taken(store, IP_PREFIX)?;
    let ports = taken(store, PORT_PREFIX)?;
    for (key, _) in &claims.take {
        let key = String::from_utf8_lossy(key);
        if let Some(ip) = key.strip_prefix(IP_PREFIX) {
            if ips.contains(ip) {
                return Ok(Some(invalid(
                    obj,
                    "spec.clusterIPs",
                    &format!("[]string{{{ip:?}}}"),
                    &format!("failed to allocate IP {ip}: provided IP is already allocated"),
                )));
            }
        }
        if let Some(port) = key.strip_prefix(PORT_PREFIX) {
            if ports.contains(port) {
                return Ok(Some(invalid(
                    obj,
                    "spec.ports[0].nodePort",
                    port,
                    "provided port is already allocated",
                )));
            }
        }
    }
    Ok(None)
}

/// The `kubernetes` Service in `default`, pointing at the API server.
pub fn api_service(port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": API_SERVICE_IP.to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(in_cidr(Ipv4Addr::new(10, 96, 0, 1)));
        assert!(in_cidr(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!in_cidr(Ipv4Addr::new(10, 112, 0, 1)));
        let svc = json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"type": "NodePort", "clusterIP": "10.96.3.4", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert_eq!(wants(&svc), (true, true));
        assert_eq!(held_ports(&svc), [30080]);
        let r = release(&svc);
        assert_eq!(r.release.len(), 2);
        assert_eq!(
            wants(&json!({"spec": {"clusterIP": "None"}})),
            (false, false)
        );
        assert_eq!(
            wants(&json!({"spec": {"type": "ExternalName"}})),
            (false, false)
        );
    }
}
