//! The Node object this agent registers and keeps current, and its Lease heartbeat in
//! `kube-node-lease`, which is how the control plane tells a live node from a dead one.
//!
//! As upstream's kubelet: the Node is created with its labels and full status (or, if it
//! exists, its labels are reconciled); every 10 s the status is recomputed and patched only if
//! it changed or 5 minutes have passed since the last report; the Lease is renewed every 10 s.
//!
//! | module | job |
//! |---|---|
//! | [`machine`] | the host's facts: CPUs, memory, storage, huge pages, ids, kernel, OS |
//! | [`lease`] | the Lease heartbeat |
//! | [`node_ip`] | the default InternalIP: the source address towards the API server |

pub mod lease;
pub mod machine;
pub mod node_ip;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSwapStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::agent::AgentConfig;
use machine::{Machine, KUBELET_VERSION};

/// How often the status is recomputed (upstream's `nodeStatusUpdateFrequency`).
pub const UPDATE_INTERVAL: Duration = Duration::from_secs(10);

/// The longest time between two status reports when nothing changes (upstream's
/// `nodeStatusReportFrequency`); the Lease is the heartbeat in between.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Upstream's annotation saying the attach/detach controller, not the kubelet, attaches volumes.
const CONTROLLER_ATTACH_DETACH: &str = "volumes.kubernetes.io/controller-managed-attach-detach";

/// Who the node is to the API server, apart from the machine's facts: what the status reports
/// as the node's name, addresses and kubelet endpoint. The agent takes it from its
/// configuration; simulated (hollow) nodes make one up per node, so both report through the
/// same functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The Node object's name.
    pub name: String,
    /// The InternalIP.
    pub ip: IpAddr,
    /// The port of the agent's service (`daemonEndpoints.kubeletEndpoint`).
    pub kubelet_port: u16,
}

impl NodeIdentity {
    /// The identity the agent's configuration gives.
    pub fn of(config: &AgentConfig) -> NodeIdentity {
        NodeIdentity {
            name: config.node_name.clone(),
            ip: config.node_ip,
            kubelet_port: config.listen.port(),
        }
    }
}

/// Registers the node, then renews its Lease every 10 s and refreshes its status, until the
/// task is dropped. `config.listen` must be the address the agent's service actually listens
/// on: its port becomes the Node's kubelet endpoint.
pub async fn run(client: kube::Client, config: AgentConfig) {
    let span = tracing::info_span!("node_status", node = %config.node_name);
    let lease = lease::run(client.clone(), config.node_name.clone());
    let status = report(Api::all(client), config);
    async move {
        tokio::join!(lease, status);
    }
    .instrument(span)
    .await
}

/// Doubling retry delays between a floor and a ceiling.
#[derive(Debug)]
pub(crate) struct Backoff {
    floor: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Backoff {
        Backoff {
            floor,
            ceiling,
            next: floor,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        d
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.floor;
    }
}

/// The registration and status loop.
async fn report(nodes: Api<Node>, config: AgentConfig) {
    let mut backoff = Backoff::new(Duration::from_millis(500), UPDATE_INTERVAL);
    let mut registered = false;
    let mut last_report: Option<Instant> = None;
    let id = NodeIdentity::of(&config);
    loop {
        let machine = Machine::read(&config.root_dir);
        let mut result = Ok(());
        if !registered {
            result = register(&nodes, &id, &machine).await.map(drop);
            registered = result.is_ok();
        }
        if result.is_ok() {
            result = update(&nodes, &id, &machine, &mut last_report).await;
        }
        match result {
            Ok(()) => {
                backoff.reset();
                tokio::time::sleep(UPDATE_INTERVAL).await;
            }
            Err(e) => {
                if matches!(&e, kube::Error::Api(s) if s.is_not_found()) {
                    tracing::warn!("the Node is gone; registering it again");
                    registered = false;
                } else {
                    tracing::warn!(error = %e, "updating the Node failed; retrying");
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Creates the Node with its labels and status, or reconciles the labels of an existing one.
/// Returns the status registered with, or `None` when the Node existed.
pub async fn register(
    nodes: &Api<Node>,
    id: &NodeIdentity,
    machine: &Machine,
) -> Result<Option<NodeStatus>, kube::Error> {
    let name = &id.name;
    let labels = labels(name, &machine.architecture);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                CONTROLLER_ATTACH_DETACH.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: None,
        status: Some(status(id, machine, None)),
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {
            tracing::info!("registered the Node");
            return Ok(node.status);
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            let existing = nodes.get(name).await?;
            let have = existing.metadata.labels.unwrap_or_default();
            if labels.iter().any(|(k, v)| have.get(k) != Some(v)) {
                let patch = json!({"metadata": {"labels": labels}});
                nodes
                    .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await?;
            }
            tracing::info!("the Node exists; reconciled its labels");
        }
        Err(e) => return Err(e),
    }
    Ok(None)
}

/// Reads the Node's status as the server has it and patches what the agent reports when that
/// would change it (so someone else's edit is undone within one interval, as upstream's
/// kubelet does) or when the last report is [`REPORT_INTERVAL`] old.
pub async fn update(
    nodes: &Api<Node>,
    id: &NodeIdentity,
    machine: &Machine,
    last_report: &mut Option<Instant>,
) -> Result<(), kube::Error> {
    // The Node itself, not its status subresource: a node may read Nodes, not nodes/status.
    let current = nodes.get(&id.name).await?.status.unwrap_or_default();
    if let Some(next) = next_report(id, machine, &current, *last_report) {
        send_report(nodes, &id.name, &next).await?;
        *last_report = Some(Instant::now());
    }
    Ok(())
}

/// The status to patch, given what the server has (`current`) and when the last report went
/// out; `None` when nothing changed and the last report is younger than [`REPORT_INTERVAL`].
pub fn next_report(
    id: &NodeIdentity,
    machine: &Machine,
    current: &NodeStatus,
    last_report: Option<Instant>,
) -> Option<NodeStatus> {
    let next = status(id, machine, Some(current));
    let due = last_report.is_none_or(|t| t.elapsed() >= REPORT_INTERVAL);
    if !due && same_status(&overlay(current, &next), current) {
        return None;
    }
    Some(next)
}

/// Patches the Node's status with what the agent reports.
pub async fn send_report(
    nodes: &Api<Node>,
    name: &str,
    next: &NodeStatus,
) -> Result<(), kube::Error> {
    // Strategic merge: conditions, capacity entries and addresses others own survive.
    let patch = json!({ "status": next });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    tracing::debug!("reported the Node's status");
    Ok(())
}

/// `current` with the agent's `next` applied as the strategic merge patch applies it.
pub fn overlay(current: &NodeStatus, next: &NodeStatus) -> NodeStatus {
    let merge = |a: &Option<BTreeMap<String, Quantity>>, b: &Option<BTreeMap<String, Quantity>>| {
        let mut out = a.clone().unwrap_or_default();
        out.extend(b.clone().unwrap_or_default());
        Some(out)
    };
    let mut conditions = current.conditions.clone().unwrap_or_default();
    for c in next.conditions.iter().flatten() {
        match conditions.iter_mut().find(|have| have.type_ == c.type_) {
            Some(have) => *have = c.clone(),
            None => conditions.push(c.clone()),
        }
    }
    let mut addresses = current.addresses.clone().unwrap_or_default();
    for a in next.addresses.iter().flatten() {
        match addresses.iter_mut().find(|have| have.type_ == a.type_) {
            Some(have) => *have = a.clone(),
            None => addresses.push(a.clone()),
        }
    }
    NodeStatus {
        capacity: merge(&current.capacity, &next.capacity),
        allocatable: merge(&current.allocatable, &next.allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: next.daemon_endpoints.clone(),
        node_info: next.node_info.clone(),
        ..current.clone()
    }
}

/// The labels upstream's kubelet puts on its Node.
pub fn labels(node: &str, arch: &str) -> BTreeMap<String, String> {
    [
        ("kubernetes.io/hostname", node),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The status to report now. Conditions keep their transition time from `previous` while
/// their status stays the same; every heartbeat time is now.
pub fn status(id: &NodeIdentity, machine: &Machine, previous: Option<&NodeStatus>) -> NodeStatus {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let quantities = |m: BTreeMap<String, String>| -> BTreeMap<String, Quantity> {
        m.into_iter().map(|(k, v)| (k, Quantity(v))).collect()
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        let since = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        NodeCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(since.unwrap_or_else(|| now.clone())),
        }
    };
    NodeStatus {
        capacity: Some(quantities(machine.capacity())),
        allocatable: Some(quantities(machine.allocatable())),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: id.ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: id.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(id.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: machine.machine_id.clone(),
            system_uuid: machine.system_uuid.clone(),
            boot_id: machine.boot_id.clone(),
            kernel_version: machine.kernel_version.clone(),
            os_image: machine.os_image.clone(),
            container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: KUBELET_VERSION.into(),
            operating_system: "linux".into(),
            architecture: machine.architecture.clone(),
            swap: Some(NodeSwapStatus {
                capacity: i64::try_from(machine.swap_bytes).ok(),
            }),
        }),
        ..Default::default()
    }
}

/// Whether two statuses say the same, heartbeat times aside (upstream's
/// `nodeStatusHasChanged`).
pub fn same_status(a: &NodeStatus, b: &NodeStatus) -> bool {
    fn without_heartbeats(s: &NodeStatus) -> Value {
        let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
        if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("lastHeartbeatTime");
            }
        }
        v
    }
    without_heartbeats(a) == without_heartbeats(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeIdentity {
        NodeIdentity::of(&AgentConfig {
            node_name: "n1".into(),
            kubeconfig: "/nonexistent".into(),
            root_dir: "/nonexistent".into(),
            run_dir: "/nonexistent".into(),
            log_dir: "/nonexistent".into(),
            listen: "127.0.0.1:41000".parse().unwrap_or_else(|_| unreachable!()),
            node_ip: [127, 0, 0, 1].into(),
            shim_binary: "/nonexistent".into(),
            cgroup_root: "/skiff".into(),
        })
    }

    #[test]
    fn status_changes_only_when_facts_do() {
        let cfg = config();
        let m = Machine::read(std::path::Path::new("/nonexistent"));
        let first = status(&cfg, &m, None);
        let ready = first
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .cloned();
        assert_eq!(ready.as_ref().map(|c| c.status.as_str()), Some("True"));
        assert_eq!(
            ready.and_then(|c| c.reason),
            Some("KubeletReady".to_string())
        );
        assert_eq!(
            first
                .daemon_endpoints
                .clone()
                .and_then(|d| d.kubelet_endpoint),
            Some(DaemonEndpoint { port: 41000 })
        );
        let mut earlier = first.clone();
        let long_ago = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        for c in earlier.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = Some(long_ago.clone());
            c.last_transition_time = Some(long_ago.clone());
        }
        let second = status(&cfg, &m, Some(&earlier));
        assert!(same_status(&earlier, &second), "only heartbeats moved");
        for c in second.conditions.iter().flatten() {
            assert_ne!(
                c.last_heartbeat_time,
                Some(long_ago.clone()),
                "heartbeat is now"
            );
            assert_eq!(
                c.last_transition_time,
                Some(long_ago.clone()),
                "transition kept"
            );
        }
        let mut bigger = m.clone();
        bigger.memory_ki += 1024;
        assert!(!same_status(&first, &status(&cfg, &bigger, Some(&first))));
    }

    #[test]
    fn edits_by_others_are_undone_but_their_own_fields_kept() {
        let cfg = config();
        let m = Machine::read(std::path::Path::new("/nonexistent"));
        let mut server = overlay(&NodeStatus::default(), &status(&cfg, &m, None));
        server
            .conditions
            .get_or_insert_with(Vec::new)
            .push(NodeCondition {
                type_: "NetworkUnavailable".into(),
                status: "False".into(),
                ..Default::default()
            });
        let next = status(&cfg, &m, Some(&server));
        assert!(
            same_status(&overlay(&server, &next), &server),
            "a condition someone else owns is no change"
        );
        for c in server.conditions.iter_mut().flatten() {
            if c.type_ == "Ready" {
                c.status = "False".into();
            }
        }
        let next = status(&cfg, &m, Some(&server));
        let merged = overlay(&server, &next);
        assert!(
            !same_status(&merged, &server),
            "Ready set to False is undone"
        );
        let types: Vec<_> = merged
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True"),
                ("NetworkUnavailable", "False")
            ]
        );
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn labels_are_upstreams() {
        let l = labels("n1", "amd64");
        assert_eq!(l["kubernetes.io/hostname"], "n1");
        assert_eq!(l["kubernetes.io/arch"], "amd64");
        assert_eq!(l["beta.kubernetes.io/os"], "linux");
        assert_eq!(l.len(), 5);
    }
}
