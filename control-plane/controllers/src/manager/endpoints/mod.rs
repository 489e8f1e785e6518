//! What the Endpoints and EndpointSlice controllers share: which pods back a Service, the
//! address and ports each one offers (named target ports resolved against the pod's own
//! container ports), its readiness, and the wiring that turns Service and pod changes into
//! Service keys. The two controllers ([`subsets`] for core/v1 Endpoints, [`slices`] for
//! discovery.k8s.io/v1 EndpointSlices) differ only in how they publish the same set.
//!
//! Services without a selector are left alone: their Endpoints are the user's (as the
//! `kubernetes` Service's are; the API server does not manage those either).

pub mod slices;
pub mod subsets;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::informer::Change;
use super::queue::Queue;
use super::store::{ObjectKey, Store};
use super::{podutil, Context};

/// The label marking a headless Service's endpoints.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// When the change that led to an endpoints update happened.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// A Service's selector, `None` for a Service whose endpoints someone else manages.
pub fn selector_of(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Whether a selector (`spec.selector`: equality on every key) matches `labels`.
pub fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The labels endpoints of `svc` carry: the Service's own, and the headless marker.
pub fn endpoint_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The pod's IPv4 address, the only family this cluster serves.
pub fn pod_ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .iter()
        .chain(status.pod_ips.iter().flatten().map(|p| &p.ip))
        .find(|ip| ip.parse::<Ipv4Addr>().is_ok())
        .cloned()
}

/// Whether a pod belongs in a Service's endpoints at all: not finished, with an address, and
/// (unless `include_terminating`) not being deleted. Upstream's `ShouldPodBeInEndpoints`.
pub fn should_include(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || pod_ipv4(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// One port an endpoint offers for one Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResolvedPort {
    /// The Service port's name (`""` when it has none).
    pub name: String,
    /// The port on the pod.
    pub port: i32,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The Service port's appProtocol.
    pub app_protocol: Option<String>,
}

/// The pod port a Service port targets: a number as it is, a name looked up among the pod's
/// container ports of the same protocol. `None` when the pod has no such named port.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(0)) => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The ports `pod` offers for `svc`, in the Service's port order; Service ports the pod
/// cannot serve (an unknown named port) are left out.
pub fn pod_ports(svc: &Service, pod: &Pod) -> Vec<ResolvedPort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(ResolvedPort {
                name: sp.name.clone().unwrap_or_default(),
                port: find_port(pod, sp)?,
                protocol: sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Whether the pod's DNS hostname is published: it sets `hostname` and names this Service as
/// its `subdomain`.
pub fn hostname_for(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

/// The reference from an endpoint to its pod.
pub fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// One pod backing a Service, with what both kinds of endpoints publish about it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// The pod.
    pub pod: Arc<Pod>,
    /// Its IPv4 address.
    pub ip: String,
    /// The ports it offers (possibly none).
    pub ports: Vec<ResolvedPort>,
    /// Ready, or the Service publishes unready addresses.
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
    /// Its published hostname, if any.
    pub hostname: Option<String>,
}

/// The pods of `pods` that `svc` selects and that belong in its endpoints, sorted by address.
pub fn backends(svc: &Service, pods: &[Arc<Pod>], include_terminating: bool) -> Vec<Backend> {
    let Some(selector) = selector_of(svc) else {
        return Vec::new();
    };
    let publish_unready = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let mut out: Vec<Backend> = pods
        .iter()
        .filter(|p| selects(selector, p.metadata.labels.as_ref()))
        .filter(|p| should_include(p, include_terminating || publish_unready))
        .filter_map(|p| {
            Some(Backend {
                ip: pod_ipv4(p)?,
                ports: pod_ports(svc, p),
                ready: publish_unready || podutil::is_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                hostname: hostname_for(svc, p),
                pod: p.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, &a.pod.metadata.name).cmp(&(&b.ip, &b.pod.metadata.name)));
    out
}

/// Whether a pod change can change any endpoints: address, readiness, labels, deletion,
/// node, hostname, phase or ports.
pub fn pod_change_matters(old: &Pod, new: &Pod) -> bool {
    let facts = |p: &Pod| {
        let spec = p.spec.as_ref();
        (
            pod_ipv4(p),
            podutil::is_ready(p),
            p.metadata.deletion_timestamp.is_some(),
            spec.and_then(|s| s.node_name.clone()),
            spec.and_then(|s| s.hostname.clone()),
            spec.and_then(|s| s.subdomain.clone()),
            p.status.as_ref().and_then(|s| s.phase.clone()),
        )
    };
    let ports = |p: &Pod| {
        p.spec.as_ref().map(|s| {
            s.containers
                .iter()
                .map(|c| c.ports.clone())
                .collect::<Vec<_>>()
        })
    };
    old.metadata.labels != new.metadata.labels
        || facts(old) != facts(new)
        || ports(old) != ports(new)
}

/// Keys of the Services in the pod's namespace whose selector matches it.
pub fn services_selecting(services: &Store<Service>, pod: &Pod) -> Vec<ObjectKey> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    services
        .list_namespace(ns)
        .iter()
        .filter(|s| selector_of(s).is_some_and(|sel| selects(sel, pod.metadata.labels.as_ref())))
        .filter_map(|s| ObjectKey::of(s.as_ref()))
        .collect()
}

/// Queues a Service's key on every change of it, and the keys of the Services selecting a pod
/// (before and after) on every pod change that matters.
pub fn enqueue_on_changes(ctx: &Arc<Context>, queue: &Queue<ObjectKey>) {
    let q = queue.clone();
    ctx.services.on_change(move |c| {
        let svc = match c {
            Change::Added(s) | Change::Deleted(s) => s,
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                new
            }
        };
        if let Some(k) = ObjectKey::of(svc.as_ref()) {
            q.add(k);
        }
    });
    let q = queue.clone();
    let services = ctx.services.store().clone();
    ctx.pods.on_change(move |c| {
        let (old, new) = match c {
            Change::Added(p) | Change::Deleted(p) => (None, p),
            Change::Updated { old, new } => {
                if !pod_change_matters(old, new) {
                    return;
                }
                (Some(old), new)
            }
        };
        let mut keys = services_selecting(&services, new);
        if let Some(old) = old.filter(|o| o.metadata.labels != new.metadata.labels) {
            keys.extend(services_selecting(&services, old));
        }
        for k in keys {
            q.add(k);
        }
    });
}

/// The time of a change, as upstream writes the trigger-time annotation (RFC 3339, UTC).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn pod(name: &str, ip: &str, ready: bool, labels: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
                ]}]},
                "status": {"phase": "Running", "podIP": ip, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}
                ]}
            }))
            .unwrap_or_default(),
        )
    }

    pub(super) fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"}, "spec": spec}),
        )
        .unwrap_or_default()
    }

    #[test]
    fn named_ports_resolve_per_protocol() {
        let p = pod("a", "10.0.0.1", true, json!({}));
        let sp =
            |v: serde_json::Value| serde_json::from_value::<ServicePort>(v).unwrap_or_default();
        assert_eq!(
            find_port(&p, &sp(json!({"port": 80, "targetPort": "http"}))),
            Some(8080)
        );
        assert_eq!(
            find_port(
                &p,
                &sp(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}))
            ),
            Some(5353)
        );
        assert_eq!(
            find_port(&p, &sp(json!({"port": 53, "targetPort": "dns"}))),
            None,
            "dns is UDP only"
        );
        assert_eq!(
            find_port(&p, &sp(json!({"port": 80, "targetPort": 9090}))),
            Some(9090)
        );
        assert_eq!(find_port(&p, &sp(json!({"port": 80}))), Some(80));
        assert_eq!(
            find_port(&p, &sp(json!({"port": 80, "targetPort": "missing"}))),
            None
        );
    }

    #[test]
    fn backends_follow_selector_address_and_phase() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}),
        );
        let mut done = (*pod("done", "10.0.0.9", false, json!({"app": "web"}))).clone();
        if let Some(s) = done.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        let pods = vec![
            pod("b", "10.0.0.2", false, json!({"app": "web"})),
            pod("a", "10.0.0.1", true, json!({"app": "web"})),
            pod("other", "10.0.0.3", true, json!({"app": "db"})),
            pod("noip", "", true, json!({"app": "web"})),
            Arc::new(done),
        ];
        let b = backends(&svc, &pods, false);
        let got: Vec<(&str, bool)> = b.iter().map(|b| (b.ip.as_str(), b.ready)).collect();
        assert_eq!(got, vec![("10.0.0.1", true), ("10.0.0.2", false)]);
        assert_eq!(b[0].ports[0].port, 8080);
        assert!(backends(&service(json!({"ports": [{"port": 80}]})), &pods, false).is_empty());
    }

    #[test]
    fn hostname_needs_matching_subdomain() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let mut p = (*pod("a", "10.0.0.1", true, json!({"app": "web"}))).clone();
        if let Some(s) = p.spec.as_mut() {
            s.hostname = Some("h".into());
            s.subdomain = Some("web".into());
        }
        assert_eq!(hostname_for(&svc, &p), Some("h".into()));
        if let Some(s) = p.spec.as_mut() {
            s.subdomain = Some("other".into());
        }
        assert_eq!(hostname_for(&svc, &p), None);
        assert_eq!(
            endpoint_labels(&svc)
                .get(HEADLESS_LABEL)
                .map(String::as_str),
            Some("")
        );
    }
}
