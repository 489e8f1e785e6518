//! What the scheduler needs of a pod, computed once when the pod is seen: its requests, host
//! ports, compiled affinity terms and resolved priority. Filters and scores read only these.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, PodStatus};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::resources::{pod_requests, Resources};
use super::selectors::{Labels, Selector};

/// `namespace/name`, the key pods are known by.
pub type PodKey = String;

/// Labels of every namespace, for affinity terms' `namespaceSelector`.
pub type NamespaceLabels = HashMap<String, Labels>;

/// The key of a pod.
pub fn key_of(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// A host port a container asks for. Protocol and IP are defaulted (`TCP`, `0.0.0.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host IP, `0.0.0.0` meaning all.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

/// One pod (anti-)affinity term, compiled relative to the pod that carries it.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Which pods the term is about.
    pub selector: Selector,
    /// Namespaces named outright (the owner's own when neither these nor a selector are
    /// given).
    pub namespaces: Vec<String>,
    /// Namespaces chosen by label.
    pub namespace_selector: Option<Selector>,
    /// The node label defining the topology domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(owner_ns: &str, owner_labels: &Labels, t: &PodAffinityTerm) -> AffinityTerm {
        let mut selector = Selector::new(t.label_selector.as_ref());
        for k in t.match_label_keys.iter().flatten() {
            selector = selector.with_key_of(owner_labels, k, false);
        }
        for k in t.mismatch_label_keys.iter().flatten() {
            selector = selector.with_key_of(owner_labels, k, true);
        }
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        let namespace_selector = t
            .namespace_selector
            .as_ref()
            .map(|s| Selector::new(Some(s)));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(owner_ns.to_string());
        }
        AffinityTerm {
            selector,
            namespaces,
            namespace_selector,
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo, ns_labels: &NamespaceLabels) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.is_everything()
                    || ns_labels
                        .get(&pod.namespace)
                        .is_some_and(|labels| s.matches(labels))
            });
        in_namespace && self.selector.matches(&pod.labels)
    }
}

/// An affinity term with its preference weight.
#[derive(Clone, Debug)]
pub struct WeightedTerm {
    /// `weight` (1–100).
    pub weight: i64,
    /// The term.
    pub term: AffinityTerm,
}

/// A pod's inter-pod affinity, compiled.
#[derive(Clone, Debug, Default)]
pub struct PodAffinity {
    /// Required affinity terms (all must be met).
    pub required: Vec<AffinityTerm>,
    /// Required anti-affinity terms.
    pub required_anti: Vec<AffinityTerm>,
    /// Preferred affinity terms.
    pub preferred: Vec<WeightedTerm>,
    /// Preferred anti-affinity terms.
    pub preferred_anti: Vec<WeightedTerm>,
}

impl PodAffinity {
    /// Whether the pod has any inter-pod affinity at all.
    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.preferred_anti.is_empty()
    }
}

/// Priority classes as the scheduler resolves `priorityClassName` (the API server does not
/// fill `spec.priority`).
#[derive(Clone, Debug, Default)]
pub struct Priorities {
    classes: HashMap<String, (i32, bool)>,
}

/// Upstream's built-in classes, which exist whether or not they were created.
const SYSTEM_CLASSES: [(&str, i32); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

impl Priorities {
    /// Records a PriorityClass (value, `preemptionPolicy`, `globalDefault`).
    pub fn apply(&mut self, pc: &PriorityClass) {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let never = pc.preemption_policy.as_deref() == Some("Never");
        let global = pc.global_default == Some(true);
        self.classes.insert(name.clone(), (pc.value, never));
        if global {
            self.classes.insert(String::new(), (pc.value, never));
            self.classes
                .insert(format!("\0default:{name}"), (pc.value, never));
        } else if self.classes.contains_key(&format!("\0default:{name}")) {
            self.remove_default(&name);
        }
    }

    fn remove_default(&mut self, name: &str) {
        self.classes.remove(&format!("\0default:{name}"));
        self.classes.remove("");
        // Another class might still claim to be the default.
        let other = self
            .classes
            .iter()
            .find(|(k, _)| k.starts_with("\0default:"))
            .map(|(_, v)| *v);
        if let Some(v) = other {
            self.classes.insert(String::new(), v);
        }
    }

    /// Forgets a deleted PriorityClass.
    pub fn remove(&mut self, name: &str) {
        self.classes.remove(name);
        if self.classes.contains_key(&format!("\0default:{name}")) {
            self.remove_default(name);
        }
    }

    /// `(priority, preemptionPolicy is Never)` of a pod: `spec.priority` when set, else its
    /// class's value, else the global default class's, else 0.
    pub fn resolve(&self, pod: &Pod) -> (i32, bool) {
        let Some(spec) = pod.spec.as_ref() else {
            return (0, false);
        };
        let class_name = spec.priority_class_name.as_deref().unwrap_or("");
        let class = if class_name.is_empty() {
            self.classes.get("").copied()
        } else {
            self.classes.get(class_name).copied().or_else(|| {
                SYSTEM_CLASSES
                    .iter()
                    .find(|(n, _)| *n == class_name)
                    .map(|(_, v)| (*v, false))
            })
        };
        let never = match spec.preemption_policy.as_deref() {
            Some(p) => p == "Never",
            None => class.is_some_and(|c| c.1),
        };
        let priority = spec.priority.or(class.map(|c| c.0)).unwrap_or(0);
        (priority, never)
    }
}

/// Everything the scheduler keeps about one pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// The object as last seen.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: PodKey,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, to tell a recreated pod of the same name apart.
    pub uid: String,
    /// Labels.
    pub labels: Labels,
    /// `spec.nodeName` (empty while pending).
    pub node_name: String,
    /// `status.nominatedNodeName` (empty when none).
    pub nominated_node: String,
    /// Resolved priority.
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub preempt_never: bool,
    /// Requests as fitted against allocatable.
    pub requests: Resources,
    /// Requests with CPU and memory defaulted, for scoring.
    pub non_zero: Resources,
    /// Host ports of containers and sidecars.
    pub host_ports: Vec<HostPort>,
    /// Compiled inter-pod affinity.
    pub affinity: PodAffinity,
    /// Whether `deletionTimestamp` is set.
    pub terminating: bool,
    /// Start (or creation) time in seconds since the epoch, for picking victims.
    pub start_time: i64,
}

impl PodInfo {
    /// Computes the summary of `pod`.
    pub fn new(pod: Arc<Pod>, priorities: &Priorities) -> PodInfo {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let labels: Labels = pod.metadata.labels.clone().unwrap_or_default();
        let (priority, preempt_never) = priorities.resolve(&pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let (requests, non_zero) = pod_requests(&spec);
        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        let mut affinity = PodAffinity::default();
        if let Some(a) = spec.affinity.as_ref() {
            let compile = |t: &PodAffinityTerm| AffinityTerm::new(&namespace, &labels, t);
            let weighted = |t: &k8s_openapi::api::core::v1::WeightedPodAffinityTerm| WeightedTerm {
                weight: i64::from(t.weight),
                term: compile(&t.pod_affinity_term),
            };
            if let Some(pa) = a.pod_affinity.as_ref() {
                let req = pa
                    .required_during_scheduling_ignored_during_execution
                    .iter();
                affinity.required = req.flatten().map(compile).collect();
                let pref = pa
                    .preferred_during_scheduling_ignored_during_execution
                    .iter();
                affinity.preferred = pref.flatten().map(weighted).collect();
            }
            if let Some(pa) = a.pod_anti_affinity.as_ref() {
                let req = pa
                    .required_during_scheduling_ignored_during_execution
                    .iter();
                affinity.required_anti = req.flatten().map(compile).collect();
                let pref = pa
                    .preferred_during_scheduling_ignored_during_execution
                    .iter();
                affinity.preferred_anti = pref.flatten().map(weighted).collect();
            }
        }
        let start = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        PodInfo {
            key: format!("{namespace}/{name}"),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            namespace,
            name,
            labels,
            priority,
            preempt_never,
            requests,
            non_zero,
            host_ports,
            affinity,
            start_time: start,
            pod,
        }
    }

    /// The same summary holding only the object's identity, owners and phase: what is read
    /// of a pod once it is bound (events and deletes name it, spreading asks for its
    /// controller). A bound pod is counted by its summary alone, so the cache of every pod
    /// in the cluster keeps no specs or statuses.
    pub fn slimmed(mut self) -> PodInfo {
        let pod = &self.pod;
        let meta = &pod.metadata;
        let slim = Pod {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                owner_references: meta.owner_references.clone(),
                deletion_timestamp: meta.deletion_timestamp.clone(),
                ..Default::default()
            },
            spec: None,
            status: pod.status.as_ref().map(|s| PodStatus {
                phase: s.phase.clone(),
                ..Default::default()
            }),
        };
        self.pod = Arc::new(slim);
        self
    }

    /// The pod's spec (an empty one if the object had none).
    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> =
            std::sync::OnceLock::new();
        self.pod
            .spec
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }
}

/// Labels as an owned map (for tests and callers building pods).
pub fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn class(name: &str, value: i32, global: bool, never: bool) -> PriorityClass {
        PriorityClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            value,
            global_default: Some(global),
            preemption_policy: never.then(|| "Never".to_string()),
            ..Default::default()
        }
    }

    fn pod(class: Option<&str>, priority: Option<i32>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                priority_class_name: class.map(Into::into),
                priority,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn priorities_resolve_from_classes() {
        let mut p = Priorities::default();
        assert_eq!(p.resolve(&pod(None, None)), (0, false));
        p.apply(&class("high", 1000, false, false));
        p.apply(&class("low", -5, true, true));
        assert_eq!(p.resolve(&pod(Some("high"), None)), (1000, false));
        assert_eq!(p.resolve(&pod(None, None)), (-5, true), "global default");
        assert_eq!(
            p.resolve(&pod(Some("high"), Some(7))),
            (7, false),
            "spec wins"
        );
        assert_eq!(
            p.resolve(&pod(Some("system-node-critical"), None)).0,
            2_000_001_000
        );
        p.remove("low");
        assert_eq!(p.resolve(&pod(None, None)), (0, false));
        p.apply(&class("low", -5, true, false));
        p.apply(&class("low", -5, false, false));
        assert_eq!(p.resolve(&pod(None, None)), (0, false), "no longer default");
    }

    #[test]
    fn host_ports_are_defaulted() {
        let mut c = crate::scheduler::resources::tests::container("a", &[]);
        c.ports = Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }]);
        let p = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![c],
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = PodInfo::new(Arc::new(p), &Priorities::default());
        assert_eq!(info.key, "ns/p");
        assert_eq!(
            info.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
    }
}
