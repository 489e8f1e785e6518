//! The scheduler's view of the cluster: every node with precomputed aggregates of the pods on
//! it (requested resources, host ports, counts), bound and assumed pods, image spread,
//! namespace labels and nominated pods. Owned by the decision loop alone, so it needs no locks.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::podinfo::{HostPort, NamespaceLabels, PodInfo, PodKey};
use super::resources::{self, Resources};
use super::selectors::Labels;

/// Taint keys upstream's node lifecycle controller puts on nodes that are not Ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint for nodes whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint `spec.unschedulable` stands for.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// One node and the aggregates of the pods on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// The Node object; `None` while only pods naming it are known.
    pub node: Option<Arc<Node>>,
    /// Node labels.
    pub labels: Labels,
    /// Taints, plus a not-ready/unreachable taint when the Ready condition is not True and
    /// the node carries none.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `status.allocatable` (without pods).
    pub allocatable: Resources,
    /// `status.allocatable.pods`.
    pub allowed_pods: i64,
    /// Image name → size, from `status.images`.
    pub images: HashMap<String, i64>,
    /// Sum of the requests of the pods here, assumed ones included.
    pub requested: Resources,
    /// The same with CPU and memory defaulted per container, for scoring.
    pub non_zero_requested: Resources,
    /// The pods here.
    pub pods: Vec<Arc<PodInfo>>,
    /// Host ports in use: (protocol, port) → host IPs (one entry per user).
    ports: HashMap<(String, i32), Vec<String>>,
    /// How many pods here have any inter-pod affinity.
    pub pods_with_affinity: usize,
    /// How many pods here have required anti-affinity.
    pub pods_with_required_anti: usize,
    /// Pods here that are not terminating, by their controller's uid: default spreading
    /// counts a controller's pods per node with one lookup instead of a walk of the pods.
    controlled: HashMap<String, u32>,
}

/// The uid of a pod's controller, for pods that count as live.
fn live_controller(pod: &PodInfo) -> Option<&str> {
    if pod.terminating {
        return None;
    }
    crate::manager::claim::controller_of(&pod.pod.metadata).map(|r| r.uid.as_str())
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Sets the Node object; returns whether anything a filter or score reads changed.
    fn set_node(&mut self, node: Arc<Node>) -> bool {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let mut taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let status = node.status.as_ref();
        let alloc_list = status
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default();
        let allocatable = Resources::from_list(&alloc_list);
        let allowed_pods = alloc_list
            .get("pods")
            .map(|q| resources::parse("pods", q, false))
            .unwrap_or(0);
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        let has_readiness_taint = taints
            .iter()
            .any(|t| t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE);
        if !has_readiness_taint && ready.as_deref() != Some("True") {
            let key = if ready.as_deref() == Some("Unknown") {
                TAINT_UNREACHABLE
            } else {
                TAINT_NOT_READY
            };
            taints.push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                value: None,
                time_added: None,
            });
        }
        let mut images = HashMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            let size = image.size_bytes.unwrap_or(0);
            for name in image.names.iter().flatten() {
                images.insert(name.clone(), size);
            }
        }
        let changed = self.node.is_none()
            || labels != self.labels
            || taints != self.taints
            || unschedulable != self.unschedulable
            || allocatable != self.allocatable
            || allowed_pods != self.allowed_pods;
        self.labels = labels;
        self.taints = taints;
        self.unschedulable = unschedulable;
        self.allocatable = allocatable;
        self.allowed_pods = allowed_pods;
        self.images = images;
        self.node = Some(node);
        changed
    }

    fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero);
        for p in &pod.host_ports {
            self.ports
                .entry((p.protocol.clone(), p.port))
                .or_default()
                .push(p.ip.clone());
        }
        if !pod.affinity.is_empty() {
            self.pods_with_affinity += 1;
        }
        if !pod.affinity.required_anti.is_empty() {
            self.pods_with_required_anti += 1;
        }
        if let Some(uid) = live_controller(&pod) {
            *self.controlled.entry(uid.to_string()).or_insert(0) += 1;
        }
        self.pods.push(pod);
    }

    fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.key == key)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero);
        for p in &pod.host_ports {
            let k = (p.protocol.clone(), p.port);
            if let Some(ips) = self.ports.get_mut(&k) {
                if let Some(j) = ips.iter().position(|ip| *ip == p.ip) {
                    ips.swap_remove(j);
                }
                if ips.is_empty() {
                    self.ports.remove(&k);
                }
            }
        }
        if !pod.affinity.is_empty() {
            self.pods_with_affinity -= 1;
        }
        if !pod.affinity.required_anti.is_empty() {
            self.pods_with_required_anti -= 1;
        }
        if let Some(uid) = live_controller(&pod) {
            if let Some(n) = self.controlled.get_mut(uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.controlled.remove(uid);
                }
            }
        }
        Some(pod)
    }

    /// How many pods here, not terminating, the controller with `uid` controls.
    pub fn controlled_by(&self, uid: &str) -> i64 {
        self.controlled.get(uid).copied().unwrap_or(0) as i64
    }

    /// Whether `want` collides with a host port in use here: a wildcard IP collides with
    /// any use of the protocol and port, a specific IP with itself and the wildcard.
    pub fn port_conflicts(&self, want: &HostPort) -> bool {
        let Some(ips) = self.ports.get(&(want.protocol.clone(), want.port)) else {
            return false;
        };
        want.ip == "0.0.0.0" || ips.iter().any(|ip| *ip == want.ip || ip == "0.0.0.0")
    }

    /// A copy without `victims`, for preemption's what-if checks.
    pub fn without(&self, victims: &[Arc<PodInfo>]) -> NodeInfo {
        let mut n = self.clone();
        for v in victims {
            n.remove_pod(&v.key);
        }
        n
    }

    /// A copy with `pod` added (preemption's reprieve step).
    pub fn with(&self, pod: Arc<PodInfo>) -> NodeInfo {
        let mut n = self.clone();
        n.add_pod(pod);
        n
    }

    /// Adds a pod in place (preemption's what-if copies).
    pub fn push(&mut self, pod: Arc<PodInfo>) {
        self.add_pod(pod);
    }

    /// Removes a pod in place (preemption's what-if copies).
    pub fn take(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        self.remove_pod(key)
    }
}

/// A pod the cache holds on a node.
#[derive(Clone, Debug)]
struct CachedPod {
    info: Arc<PodInfo>,
    node: String,
    assumed: bool,
}

/// The cluster as the scheduler sees it.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    /// Names of nodes with a Node object, in a stable order for round-robin searches.
    order: Vec<String>,
    pods: HashMap<PodKey, CachedPod>,
    /// Image name → how many nodes have it.
    image_nodes: HashMap<String, usize>,
    /// Namespace labels.
    pub namespaces: NamespaceLabels,
    /// PodDisruptionBudgets preemption weighs.
    pub budgets: super::preemption::Budgets,
    /// Node → pending pods nominated to it (by preemption).
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    nominated_node_of: HashMap<PodKey, String>,
    affinity_pods: usize,
    anti_pods: usize,
}

impl Cache {
    /// Adds or updates a node; returns whether scheduling-relevant fields changed.
    pub fn set_node(&mut self, node: Node) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return false;
        }
        let info = self
            .nodes
            .entry(name.clone())
            .or_insert_with(|| NodeInfo::new(&name));
        let had_node = info.node.is_some();
        for image in info.images.keys() {
            if let Some(c) = self.image_nodes.get_mut(image) {
                *c = c.saturating_sub(1);
            }
        }
        let changed = info.set_node(Arc::new(node));
        for image in info.images.keys() {
            *self.image_nodes.entry(image.clone()).or_default() += 1;
        }
        self.image_nodes.retain(|_, c| *c > 0);
        if !had_node {
            self.order.push(name);
        }
        changed
    }

    /// Removes a node (its pods stay known until they are deleted).
    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.get_mut(name) else {
            return;
        };
        for image in info.images.keys() {
            if let Some(c) = self.image_nodes.get_mut(image) {
                *c = c.saturating_sub(1);
            }
        }
        self.image_nodes.retain(|_, c| *c > 0);
        info.node = None;
        info.images.clear();
        if info.pods.is_empty() {
            self.nodes.remove(name);
        }
        self.order.retain(|n| n != name);
    }

    /// Names of all nodes with a Node object, in a stable order.
    pub fn node_names(&self) -> &[String] {
        &self.order
    }

    /// Every node with a Node object, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.node.is_some())
    }

    /// How many pods anywhere have any inter-pod affinity.
    pub fn pods_with_affinity(&self) -> usize {
        self.affinity_pods
    }

    /// How many pods anywhere have required anti-affinity.
    pub fn pods_with_required_anti(&self) -> usize {
        self.anti_pods
    }

    fn count(&mut self, pod: &PodInfo, add: bool) {
        let delta = |c: &mut usize| {
            if add {
                *c += 1
            } else {
                *c = c.saturating_sub(1)
            }
        };
        if !pod.affinity.is_empty() {
            delta(&mut self.affinity_pods);
        }
        if !pod.affinity.required_anti.is_empty() {
            delta(&mut self.anti_pods);
        }
    }

    /// One node's info.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// How many nodes have a Node object.
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// How many nodes have `image`.
    pub fn image_spread(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    /// Records a pod bound to `pod.node_name` (confirming it when it was assumed); returns
    /// the previous info if the pod was known.
    pub fn add_bound(&mut self, pod: Arc<PodInfo>) -> Option<Arc<PodInfo>> {
        let old = self.remove_pod(&pod.key);
        let node = pod.node_name.clone();
        self.nodes
            .entry(node.clone())
            .or_insert_with(|| NodeInfo::new(&node))
            .add_pod(pod.clone());
        self.count(&pod, true);
        self.pods.insert(
            pod.key.clone(),
            CachedPod {
                info: pod,
                node,
                assumed: false,
            },
        );
        old.map(|(p, _)| p)
    }

    /// Places a pod on `node` before its binding is confirmed, so the next decisions see it.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.key);
        self.clear_nomination(&pod.key);
        if let Some(info) = self.nodes.get_mut(node) {
            info.add_pod(pod.clone());
        }
        self.count(&pod, true);
        self.pods.insert(
            pod.key.clone(),
            CachedPod {
                info: pod,
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Undoes [`Cache::assume`] after a failed binding, unless the pod is known bound by now
    /// or belongs to another incarnation (`uid`).
    pub fn forget(&mut self, key: &str, uid: &str) -> bool {
        match self.pods.get(key) {
            Some(p) if p.assumed && p.info.uid == uid => {
                self.remove_pod(key);
                true
            }
            _ => false,
        }
    }

    /// Whether the pod is in the cache (bound or assumed).
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Whether the pod is assumed and not yet seen bound.
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// Removes a pod; returns it and the node it was on.
    pub fn remove_pod(&mut self, key: &str) -> Option<(Arc<PodInfo>, String)> {
        let p = self.pods.remove(key)?;
        self.count(&p.info, false);
        if let Some(info) = self.nodes.get_mut(&p.node) {
            info.remove_pod(key);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(&p.node);
            }
        }
        Some((p.info, p.node))
    }

    /// Every pod currently known on any node, for relists.
    pub fn pod_keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }

    /// Records that a pending pod is nominated to `node` (preemption made room there).
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.clear_nomination(&pod.key);
        if node.is_empty() || self.pods.contains_key(&pod.key) {
            return;
        }
        self.nominated_node_of
            .insert(pod.key.clone(), node.to_string());
        self.nominated
            .entry(node.to_string())
            .or_default()
            .push(pod);
    }

    /// Forgets a pod's nomination.
    pub fn clear_nomination(&mut self, key: &str) {
        if let Some(node) = self.nominated_node_of.remove(key) {
            if let Some(list) = self.nominated.get_mut(&node) {
                list.retain(|p| p.key != key);
                if list.is_empty() {
                    self.nominated.remove(&node);
                }
            }
        }
    }

    /// The node a pod is nominated to.
    pub fn nominated_node(&self, key: &str) -> Option<&str> {
        self.nominated_node_of.get(key).map(String::as_str)
    }

    /// Pending pods nominated to `node`.
    pub fn nominated_on(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::{
        Container, ContainerImage, ContainerPort, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// A Ready node with `cpu` cores, `mem` GiB and room for 110 pods.
    pub fn node(name: &str, cpu: &str, mem: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(crate::scheduler::podinfo::labels_of(labels)),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(mem.into())),
                        ("pods".to_string(), Quantity("110".into())),
                        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
                    ]
                    .into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                images: Some(vec![ContainerImage {
                    names: Some(vec![format!("image-on-{name}:latest")]),
                    size_bytes: Some(100 << 20),
                }]),
                ..Default::default()
            }),
        }
    }

    /// A pod requesting `cpu` and `mem` (empty: none).
    pub fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
        let mut req = Vec::new();
        if !cpu.is_empty() {
            req.push(("cpu", cpu));
        }
        if !mem.is_empty() {
            req.push(("memory", mem));
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![crate::scheduler::resources::tests::container("c", &req)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The pod's info bound to `node`.
    pub fn bound(mut p: Pod, node: &str) -> Arc<PodInfo> {
        if let Some(s) = p.spec.as_mut() {
            s.node_name = Some(node.into());
        }
        Arc::new(PodInfo::new(Arc::new(p), &Priorities::default()))
    }

    #[test]
    fn aggregates_follow_pods() {
        let mut c = Cache::default();
        assert!(c.set_node(node("n1", "4", "8Gi", &[])));
        assert!(
            !c.set_node(node("n1", "4", "8Gi", &[])),
            "no relevant change"
        );
        let p = bound(pod("a", "1", "1Gi"), "n1");
        c.add_bound(p.clone());
        let n = c.node("n1").unwrap();
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.pods.len(), 1);
        // Updating the same pod replaces it.
        c.add_bound(bound(pod("a", "2", "1Gi"), "n1"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 2000);
        c.remove_pod("default/a");
        assert_eq!(c.node("n1").unwrap().requested, Resources::default());
    }

    #[test]
    fn assumed_pods_count_until_forgotten() {
        let mut c = Cache::default();
        c.set_node(node("n1", "4", "8Gi", &[]));
        let p = Arc::new(PodInfo::new(
            Arc::new(pod("a", "500m", "")),
            &Priorities::default(),
        ));
        c.assume(p, "n1");
        assert!(c.is_assumed("default/a"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 500);
        assert!(!c.forget("default/a", "other-uid"));
        assert!(c.forget("default/a", "uid-a"));
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);
        assert!(!c.contains("default/a"));
    }

    #[test]
    fn readiness_becomes_a_taint_and_ports_are_tracked() {
        let mut c = Cache::default();
        let mut n = node("n1", "4", "8Gi", &[]);
        if let Some(s) = n.status.as_mut() {
            s.conditions = None;
        }
        c.set_node(n);
        assert_eq!(c.node("n1").unwrap().taints[0].key, TAINT_NOT_READY);
        let mut p = pod("web", "", "");
        if let Some(s) = p.spec.as_mut() {
            s.containers = vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    container_port: 80,
                    host_port: Some(80),
                    host_ip: Some("10.0.0.1".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }];
        }
        c.add_bound(bound(p, "n1"));
        let info = c.node("n1").unwrap();
        let want = |ip: &str, proto: &str| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port: 80,
        };
        assert!(info.port_conflicts(&want("0.0.0.0", "TCP")));
        assert!(info.port_conflicts(&want("10.0.0.1", "TCP")));
        assert!(!info.port_conflicts(&want("10.0.0.2", "TCP")));
        assert!(!info.port_conflicts(&want("0.0.0.0", "UDP")));
        c.remove_node("n1");
        assert_eq!(c.node_count(), 0);
        assert!(c.node("n1").is_some(), "kept while pods name it");
    }

    #[test]
    fn image_spread_counts_nodes() {
        let mut c = Cache::default();
        c.set_node(node("n1", "1", "1Gi", &[]));
        c.set_node(node("n2", "1", "1Gi", &[]));
        assert_eq!(c.image_spread("image-on-n1:latest"), 1);
        c.remove_node("n1");
        assert_eq!(c.image_spread("image-on-n1:latest"), 0);
        let _ = Pod::default();
    }
}
