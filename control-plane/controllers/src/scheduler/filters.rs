//! Filters: whether a pod may run on a node, each as upstream's plugin of the same name
//! decides it, with upstream's reasons (they end up verbatim in `FailedScheduling`). The
//! filters run in upstream's default-profile order and stop at the first that rejects.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::affinity::AffinityState;
use super::cache::{NodeInfo, TAINT_UNSCHEDULABLE};
use super::podinfo::PodInfo;
use super::selectors::{preferred_node_terms, NodeSelectorMatcher, WeightedNodeTerm};
use super::spread::SpreadState;

/// How final a rejection is: whether evicting pods could change it (preemption only looks
/// at nodes rejected as `Unschedulable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Removing pods might help.
    Unschedulable,
    /// Removing pods cannot help.
    Unresolvable,
}

/// The filter plugins, as bits so a queued pod remembers which ones rejected it and only
/// cluster events that could change their verdict retry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Plugin {
    /// `spec.unschedulable`.
    NodeUnschedulable = 1,
    /// `spec.nodeName` already set.
    NodeName = 2,
    /// Taints and tolerations.
    TaintToleration = 4,
    /// nodeSelector and required node affinity.
    NodeAffinity = 8,
    /// Host ports.
    NodePorts = 16,
    /// Requests against allocatable.
    NodeResourcesFit = 32,
    /// topologySpreadConstraints.
    PodTopologySpread = 64,
    /// Inter-pod affinity and anti-affinity.
    InterPodAffinity = 128,
}

impl Plugin {
    /// The plugin's bit.
    pub fn bit(self) -> u16 {
        self as u16
    }
}

/// Why a node was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Which filter.
    pub plugin: Plugin,
    /// Whether preemption could help.
    pub code: Code,
    /// Upstream's reason strings (one node may have several, e.g. two insufficient
    /// resources).
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    /// A rejection with one reason.
    pub fn new(plugin: Plugin, code: Code, reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }
}

/// Upstream's reason texts.
pub mod reasons {
    /// NodeUnschedulable.
    pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
    /// NodeName.
    pub const NODE_NAME: &str = "node(s) didn't match the requested node name";
    /// NodeAffinity.
    pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
    /// NodePorts.
    pub const NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
    /// NodeResourcesFit, pods count.
    pub const TOO_MANY_PODS: &str = "Too many pods";
    /// InterPodAffinity: an existing pod's anti-affinity forbids the incoming pod.
    pub const EXISTING_ANTI_AFFINITY: &str =
        "node(s) didn't satisfy existing pods anti-affinity rules";
    /// InterPodAffinity: the pod's required affinity is not met.
    pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
    /// InterPodAffinity: the pod's required anti-affinity is violated.
    pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
    /// PodTopologySpread: skew.
    pub const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
    /// PodTopologySpread: a topology key missing on the node.
    pub const SPREAD_LABEL: &str =
        "node(s) didn't match pod topology spread constraints (missing required label)";
}

/// Whether `t` tolerates `taint` (upstream's `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The compiled, per-pod inputs of the filters and scores; built once per scheduling attempt.
pub struct PodContext<'a> {
    /// The pod.
    pub info: &'a PodInfo,
    /// Its tolerations.
    pub tolerations: &'a [Toleration],
    node_selector: Option<&'a std::collections::BTreeMap<String, String>>,
    required_node_affinity: Option<NodeSelectorMatcher>,
    /// Compiled preferred node affinity terms, for scoring.
    pub preferred_node_terms: Vec<WeightedNodeTerm>,
    /// Inter-pod affinity pre-computation, when it applies.
    pub affinity: Option<AffinityState>,
    /// Topology spread pre-computation, when the pod has DoNotSchedule constraints.
    pub spread: Option<SpreadState>,
}

impl<'a> PodContext<'a> {
    /// Compiles what the node-local filters need; [`PodContext::affinity`] and
    /// [`PodContext::spread`] are filled by their pre-filters.
    pub fn new(info: &'a PodInfo) -> PodContext<'a> {
        let spec = info.spec();
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        PodContext {
            info,
            tolerations: spec.tolerations.as_deref().unwrap_or(&[]),
            node_selector: spec.node_selector.as_ref().filter(|s| !s.is_empty()),
            required_node_affinity: node_affinity
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(NodeSelectorMatcher::new),
            preferred_node_terms: node_affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .as_deref()
                })
                .map(preferred_node_terms)
                .unwrap_or_default(),
            affinity: None,
            spread: None,
        }
    }

    /// nodeSelector and required node affinity (also used by topology spread's
    /// `nodeAffinityPolicy: Honor`).
    pub fn matches_node_affinity(&self, node: &NodeInfo) -> bool {
        if let Some(sel) = self.node_selector {
            if !sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
                return false;
            }
        }
        match &self.required_node_affinity {
            Some(m) => m.matches(&node.name, &node.labels),
            None => true,
        }
    }

    /// The first NoSchedule/NoExecute taint of `node` the pod does not tolerate.
    pub fn untolerated_taint<'n>(&self, node: &'n NodeInfo) -> Option<&'n Taint> {
        node.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !self.tolerations.iter().any(|t| tolerates(t, taint))
        })
    }
}

/// NodeUnschedulable: cordoned nodes, unless the pod tolerates the unschedulable taint.
pub fn node_unschedulable(ctx: &PodContext, node: &NodeInfo) -> Result<(), Rejection> {
    if !node.unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    };
    if ctx.tolerations.iter().any(|t| tolerates(t, &taint)) {
        return Ok(());
    }
    Err(Rejection::new(
        Plugin::NodeUnschedulable,
        Code::Unresolvable,
        reasons::UNSCHEDULABLE,
    ))
}

/// NodeName: a pod naming a node fits only there.
pub fn node_name(ctx: &PodContext, node: &NodeInfo) -> Result<(), Rejection> {
    if ctx.info.node_name.is_empty() || ctx.info.node_name == node.name {
        return Ok(());
    }
    Err(Rejection::new(
        Plugin::NodeName,
        Code::Unresolvable,
        reasons::NODE_NAME,
    ))
}

/// TaintToleration: NoSchedule and NoExecute taints need a toleration.
pub fn taint_toleration(ctx: &PodContext, node: &NodeInfo) -> Result<(), Rejection> {
    match ctx.untolerated_taint(node) {
        None => Ok(()),
        Some(t) => Err(Rejection::new(
            Plugin::TaintToleration,
            Code::Unresolvable,
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ),
        )),
    }
}

/// NodeAffinity: nodeSelector and requiredDuringScheduling node affinity.
pub fn node_affinity(ctx: &PodContext, node: &NodeInfo) -> Result<(), Rejection> {
    if ctx.matches_node_affinity(node) {
        return Ok(());
    }
    Err(Rejection::new(
        Plugin::NodeAffinity,
        Code::Unresolvable,
        reasons::NODE_AFFINITY,
    ))
}

/// NodePorts: the pod's host ports must be free (pods nominated here included).
pub fn node_ports(
    ctx: &PodContext,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
) -> Result<(), Rejection> {
    for want in &ctx.info.host_ports {
        let taken = node.port_conflicts(want)
            || nominated.iter().any(|p| {
                p.host_ports.iter().any(|h| {
                    h.protocol == want.protocol
                        && h.port == want.port
                        && (want.ip == "0.0.0.0" || h.ip == "0.0.0.0" || h.ip == want.ip)
                })
            });
        if taken {
            return Err(Rejection::new(
                Plugin::NodePorts,
                Code::Unschedulable,
                reasons::NODE_PORTS,
            ));
        }
    }
    Ok(())
}

/// NodeResourcesFit: requests (plus those of pods nominated here) against allocatable, and
/// the pod count. Lists every insufficient resource.
pub fn resources_fit(
    ctx: &PodContext,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
) -> Result<(), Rejection> {
    let want = &ctx.info.requests;
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    let pods = node.pods.len() + nominated.len();
    if pods as i64 + 1 > node.allowed_pods {
        reasons.push(reasons::TOO_MANY_PODS.into());
    }
    if !want.is_zero() {
        let mut used = std::borrow::Cow::Borrowed(&node.requested);
        if !nominated.is_empty() {
            let mut sum = node.requested.clone();
            for p in nominated {
                sum.add(&p.requests);
            }
            used = std::borrow::Cow::Owned(sum);
        }
        let alloc = &node.allocatable;
        if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > alloc.memory - used.memory {
            reasons.push("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0
            && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, v) in &want.scalar {
            if *v > 0 && *v > alloc.scalar(name) - used.scalar(name) {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Rejection {
        plugin: Plugin::NodeResourcesFit,
        code: Code::Unschedulable,
        reasons,
    })
}

/// Every filter in upstream's order; the first rejection wins. `nominated` are pods of at
/// least this pod's priority nominated to the node, whose room is kept for them.
pub fn run(ctx: &PodContext, node: &NodeInfo, nominated: &[Arc<PodInfo>]) -> Result<(), Rejection> {
    node_unschedulable(ctx, node)?;
    node_name(ctx, node)?;
    taint_toleration(ctx, node)?;
    node_affinity(ctx, node)?;
    node_ports(ctx, node, nominated)?;
    resources_fit(ctx, node, nominated)?;
    if let Some(s) = &ctx.spread {
        s.filter(ctx.info, node)?;
    }
    if let Some(a) = &ctx.affinity {
        a.filter(node)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{bound, node, pod};
    use crate::scheduler::cache::Cache;
    use crate::scheduler::podinfo::Priorities;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    };

    fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p), &Priorities::default())
    }

    fn one_node(n: k8s_openapi::api::core::v1::Node) -> Cache {
        let mut c = Cache::default();
        c.set_node(n);
        c
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_taints() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        assert!(tolerates(
            &toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            &taint
        ));
        assert!(tolerates(
            &toleration("dedicated", "Exists", "", ""),
            &taint
        ));
        assert!(tolerates(&toleration("", "Exists", "", ""), &taint));
        assert!(!tolerates(
            &toleration("dedicated", "Equal", "cpu", ""),
            &taint
        ));
        assert!(!tolerates(
            &toleration("dedicated", "Exists", "", "NoExecute"),
            &taint
        ));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &taint));
    }

    #[test]
    fn taint_filter_reports_the_first_untolerated_taint() {
        let mut n = node("n1", "4", "8Gi", &[]);
        n.spec.as_mut().unwrap().taints = Some(vec![
            Taint {
                key: "soft".into(),
                value: None,
                effect: "PreferNoSchedule".into(),
                time_added: None,
            },
            Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                value: None,
                effect: "NoSchedule".into(),
                time_added: None,
            },
        ]);
        let c = one_node(n);
        let p = info(pod("p", "", ""));
        let err = taint_toleration(&PodContext::new(&p), c.node("n1").unwrap()).unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
        assert_eq!(err.code, Code::Unresolvable);
        let mut tolerant = pod("p", "", "");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![toleration(
            "node-role.kubernetes.io/control-plane",
            "Exists",
            "",
            "NoSchedule",
        )]);
        let t = info(tolerant);
        assert!(taint_toleration(&PodContext::new(&t), c.node("n1").unwrap()).is_ok());
    }

    #[test]
    fn not_ready_nodes_are_tainted() {
        let mut n = node("n1", "4", "8Gi", &[]);
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        let c = one_node(n);
        let p = info(pod("p", "", ""));
        let err = run(&PodContext::new(&p), c.node("n1").unwrap(), &[]).unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
    }

    #[test]
    fn cordoned_nodes_unless_tolerated() {
        let mut n = node("n1", "4", "8Gi", &[]);
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let c = one_node(n);
        let p = info(pod("p", "", ""));
        let err = node_unschedulable(&PodContext::new(&p), c.node("n1").unwrap()).unwrap_err();
        assert_eq!(err.reasons, vec![reasons::UNSCHEDULABLE]);
        let mut tolerant = pod("p", "", "");
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![toleration(
            TAINT_UNSCHEDULABLE,
            "Exists",
            "",
            "NoSchedule",
        )]);
        let t = info(tolerant);
        assert!(node_unschedulable(&PodContext::new(&t), c.node("n1").unwrap()).is_ok());
    }

    #[test]
    fn node_name_filter() {
        let c = one_node(node("n1", "4", "8Gi", &[]));
        let mut p = pod("p", "", "");
        p.spec.as_mut().unwrap().node_name = Some("n2".into());
        let i = info(p);
        assert_eq!(
            node_name(&PodContext::new(&i), c.node("n1").unwrap())
                .unwrap_err()
                .reasons,
            vec![reasons::NODE_NAME]
        );
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let c = one_node(node("n1", "4", "8Gi", &[("zone", "a"), ("disk", "ssd")]));
        let n = c.node("n1").unwrap();
        let mut p = pod("p", "", "");
        p.spec.as_mut().unwrap().node_selector = Some([("disk".into(), "ssd".into())].into());
        assert!(node_affinity(&PodContext::new(&info(p.clone())), n).is_ok());
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(vec!["b".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let err = node_affinity(&PodContext::new(&info(p.clone())), n).unwrap_err();
        assert_eq!(err.reasons, vec![reasons::NODE_AFFINITY]);
        p.spec.as_mut().unwrap().affinity = None;
        p.spec.as_mut().unwrap().node_selector = Some([("disk".into(), "hdd".into())].into());
        assert!(node_affinity(&PodContext::new(&info(p)), n).is_err());
    }

    #[test]
    fn resources_fit_lists_every_shortfall() {
        let mut c = one_node(node("n1", "2", "4Gi", &[]));
        c.add_bound(bound(pod("a", "1500m", "1Gi"), "n1"));
        let n = c.node("n1").unwrap();
        let fits = info(pod("p", "500m", "3Gi"));
        assert!(resources_fit(&PodContext::new(&fits), n, &[]).is_ok());
        let big = info(pod("p", "600m", "4Gi"));
        let err = resources_fit(&PodContext::new(&big), n, &[]).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(err.code, Code::Unschedulable);
        // A nominated pod's requests are kept free.
        let nominated = vec![Arc::new(info(pod("nom", "500m", "")))];
        let err = resources_fit(&PodContext::new(&fits), n, &nominated).unwrap_err();
        assert_eq!(err.reasons, vec!["Insufficient cpu"]);
    }

    #[test]
    fn pod_count_and_extended_resources() {
        let mut n = node("n1", "2", "4Gi", &[]);
        let alloc = n.status.as_mut().unwrap().allocatable.as_mut().unwrap();
        alloc.insert(
            "pods".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
        let mut c = one_node(n);
        c.add_bound(bound(pod("a", "", ""), "n1"));
        let mut p = pod("p", "", "");
        p.spec.as_mut().unwrap().containers = vec![crate::scheduler::resources::tests::container(
            "c",
            &[("example.com/gpu", "1")],
        )];
        let i = info(p);
        let err = resources_fit(&PodContext::new(&i), c.node("n1").unwrap(), &[]).unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["Too many pods", "Insufficient example.com/gpu"]
        );
    }

    #[test]
    fn host_ports_conflict() {
        let mut c = one_node(node("n1", "2", "4Gi", &[]));
        let with_port = |name: &str, port: i32| {
            let mut p = pod(name, "", "");
            p.spec.as_mut().unwrap().containers[0].ports =
                Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                    container_port: 80,
                    host_port: Some(port),
                    ..Default::default()
                }]);
            p
        };
        c.add_bound(bound(with_port("a", 8080), "n1"));
        let n = c.node("n1").unwrap();
        let same = info(with_port("p", 8080));
        assert_eq!(
            node_ports(&PodContext::new(&same), n, &[])
                .unwrap_err()
                .reasons,
            vec![reasons::NODE_PORTS]
        );
        let other = info(with_port("q", 8081));
        assert!(node_ports(&PodContext::new(&other), n, &[]).is_ok());
    }
}
