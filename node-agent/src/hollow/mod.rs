//! Hollow nodes: thousands of simulated node agents in one process, for scale tests and
//! benchmarks of the control plane (upstream's kubemark). Each hollow node registers, renews
//! its Lease and reports its status through the same functions as the real agent
//! ([`crate::kubelet::node_status`]), with made-up machine facts; its pods "start" at once on a
//! fake runtime (every container running, started and ready) and their status is computed by
//! the real agent's [`crate::kubelet::status`]. Pods being deleted are removed with grace 0
//! and a uid precondition, as the real kubelet finishes a graceful deletion.
//!
//! What makes thousands cheap: one API client, one pod watch and one Node watch for all hollow
//! nodes (events are dispatched by node name), heartbeats driven by one timer heap rather
//! than a task per node, bounded concurrency for every kind of write, and status reports
//! compared against the last report kept in memory instead of a GET every 10 s (a GET happens
//! only when the Node watch shows someone else changed the node's conditions).
//!
//! | module | job |
//! |---|---|
//! | [`heartbeat`] | registration, Lease renewals and status reports of every hollow node |
//! | [`pods`] | the shared pod watch, the fake runtime's pod status, final deletes |

pub mod heartbeat;
pub mod pods;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::NodeStatus;
use tokio::task::JoinHandle;

use crate::kubelet::node_status::machine::{go_arch, Machine};
use crate::kubelet::node_status::NodeIdentity;

/// The kubelet port hollow nodes report (nothing listens there).
pub const KUBELET_PORT: u16 = 10250;

/// Why hollow nodes could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    /// A quantity flag could not be parsed.
    #[error("invalid quantity {0:?}")]
    Quantity(String),
    /// The configuration asks for something impossible.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No hollow node has that name.
    #[error("no hollow node named {0:?}")]
    UnknownNode(String),
    /// The control file could not be read.
    #[error("reading {path}: {source}")]
    ControlFile {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What hollow nodes to run and how big they claim to be.
#[derive(Clone, Debug)]
pub struct HollowConfig {
    /// Node names are `<prefix><index>`.
    pub prefix: String,
    /// How many nodes.
    pub nodes: usize,
    /// CPUs each node reports.
    pub cpu: u64,
    /// Memory each node reports, in KiB.
    pub memory_ki: u64,
    /// `status.capacity.pods` of each node.
    pub max_pods: u64,
    /// Registrations, Lease renewals and status reports in flight at once (for all nodes).
    pub heartbeat_writes: usize,
    /// Pod status writes and deletes in flight at once (for all nodes).
    pub pod_writes: usize,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            prefix: "hollow-".into(),
            nodes: 1,
            cpu: 4,
            memory_ki: 16 * 1024 * 1024,
            max_pods: 110,
            heartbeat_writes: 32,
            pod_writes: 64,
        }
    }
}

/// Parses a memory quantity (`16Gi`, `512Mi`, `1G`, `1048576`) into KiB.
pub fn parse_memory_ki(s: &str) -> Result<u64, HollowError> {
    let bad = || HollowError::Quantity(s.to_string());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).map(|b| b / 1024).ok_or_else(bad)
}

/// The InternalIP of hollow node `index`: addresses from 10.64.0.1 on, which no real node
/// uses in the test setups.
pub fn node_ip(index: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(10, 64, 0, 0));
    let offset = u32::try_from(index)
        .unwrap_or(u32::MAX - base)
        .saturating_add(1);
    IpAddr::V4(Ipv4Addr::from(base.saturating_add(offset)))
}

/// The facts every hollow node reports: the configured size, fixed ids and this host's
/// kernel and architecture names.
fn machine(config: &HollowConfig) -> Machine {
    Machine {
        cpus: config.cpu,
        memory_ki: config.memory_ki,
        swap_bytes: 0,
        storage_bytes: 100 << 30,
        hugepages: Default::default(),
        machine_id: "hollow".into(),
        system_uuid: "hollow".into(),
        boot_id: "hollow".into(),
        kernel_version: "hollow".into(),
        os_image: "skiff hollow node".into(),
        architecture: go_arch(std::env::consts::ARCH).to_string(),
        max_pods: config.max_pods,
    }
}

/// What the heartbeat loop remembers of one node between its jobs.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    /// The Node exists (created by this process or found).
    registered: bool,
    /// The Lease as the last renewal wrote it.
    lease: Option<Lease>,
    /// The status as last reported (the server's copy, unless someone else edits it).
    reported: Option<NodeStatus>,
    /// When that report went out.
    last_report: Option<Instant>,
    /// The server's conditions differ from the report: read the Node before the next one.
    recheck: bool,
}

/// One simulated node.
#[derive(Debug)]
pub(crate) struct HollowNode {
    id: NodeIdentity,
    heartbeating: AtomicBool,
    state: Mutex<NodeState>,
}

impl HollowNode {
    fn alive(&self) -> bool {
        self.heartbeating.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every hollow node of a process, by index and by name.
#[derive(Debug)]
pub(crate) struct Nodes {
    list: Vec<HollowNode>,
    by_name: HashMap<String, usize>,
    machine: Machine,
    registered: AtomicUsize,
    pods_started: AtomicUsize,
    pods_deleted: AtomicUsize,
}

impl Nodes {
    fn new(config: &HollowConfig) -> Nodes {
        let list: Vec<HollowNode> = (0..config.nodes)
            .map(|i| HollowNode {
                id: NodeIdentity {
                    name: format!("{}{i}", config.prefix),
                    ip: node_ip(i),
                    kubelet_port: KUBELET_PORT,
                },
                heartbeating: AtomicBool::new(true),
                state: Mutex::new(NodeState::default()),
            })
            .collect();
        let by_name = list
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.name.clone(), i))
            .collect();
        Nodes {
            list,
            by_name,
            machine: machine(config),
            registered: AtomicUsize::new(0),
            pods_started: AtomicUsize::new(0),
            pods_deleted: AtomicUsize::new(0),
        }
    }

    fn get(&self, name: &str) -> Option<(usize, &HollowNode)> {
        let i = *self.by_name.get(name)?;
        Some((i, self.list.get(i)?))
    }
}

/// Counters of what the hollow nodes did, for logs and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HollowStats {
    /// Nodes registered.
    pub registered: usize,
    /// Pods reported running.
    pub pods_started: usize,
    /// Pods finally deleted.
    pub pods_deleted: usize,
}

/// A running set of hollow nodes; dropping it stops them all (their Nodes stay and turn
/// NotReady once their Leases expire, as for a dead agent).
pub struct HollowCluster {
    nodes: Arc<Nodes>,
    client: kube::Client,
    pods: pods::Dispatcher,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HollowCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl HollowCluster {
    /// Starts `config.nodes` hollow nodes against the API server `client` reaches. Must be
    /// called inside a tokio runtime; returns at once (registration goes on in the background).
    pub fn start(
        client: kube::Client,
        config: &HollowConfig,
    ) -> Result<HollowCluster, HollowError> {
        if config.nodes == 0 {
            return Err(HollowError::Config("--nodes must be at least 1".into()));
        }
        if config.heartbeat_writes == 0 || config.pod_writes == 0 {
            return Err(HollowError::Config(
                "write concurrency must be at least 1".into(),
            ));
        }
        let nodes = Arc::new(Nodes::new(config));
        let (dispatcher, pod_tasks) = pods::start(client.clone(), nodes.clone(), config.pod_writes);
        let mut tasks = pod_tasks;
        tasks.push(tokio::spawn(heartbeat::run(
            client.clone(),
            nodes.clone(),
            config.heartbeat_writes,
        )));
        tasks.push(tokio::spawn(heartbeat::watch_nodes(
            client.clone(),
            nodes.clone(),
        )));
        tracing::info!(nodes = config.nodes, prefix = %config.prefix, "hollow nodes starting");
        Ok(HollowCluster {
            nodes,
            client,
            pods: dispatcher,
            tasks,
        })
    }

    /// The nodes' names, in index order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.list.iter().map(|n| n.id.name.as_str())
    }

    /// What the nodes did so far.
    pub fn stats(&self) -> HollowStats {
        HollowStats {
            registered: self.nodes.registered.load(Ordering::Relaxed),
            pods_started: self.nodes.pods_started.load(Ordering::Relaxed),
            pods_deleted: self.nodes.pods_deleted.load(Ordering::Relaxed),
        }
    }

    /// Makes `node` behave as a dead agent: no Lease renewals, no status reports, its pods left
    /// alone, so the control plane's node lifecycle controller finds it unreachable.
    pub fn stop_heartbeats(&self, node: &str) -> Result<(), HollowError> {
        let (_, n) = self
            .nodes
            .get(node)
            .ok_or_else(|| HollowError::UnknownNode(node.to_string()))?;
        if n.heartbeating.swap(false, Ordering::Relaxed) {
            tracing::info!(node, "hollow node stops heartbeating");
        }
        Ok(())
    }

    /// Brings a stopped node back: its Lease is renewed again, its status re-read and
    /// reported, and its pods looked at again.
    pub fn resume_heartbeats(&self, node: &str) -> Result<(), HollowError> {
        let (_, n) = self
            .nodes
            .get(node)
            .ok_or_else(|| HollowError::UnknownNode(node.to_string()))?;
        n.state().recheck = true;
        if !n.heartbeating.swap(true, Ordering::Relaxed) {
            tracing::info!(node, "hollow node heartbeats again");
            let pods = self.pods.clone();
            let client = self.client.clone();
            let name = node.to_string();
            tokio::spawn(async move { pods.resync_node(client, &name).await });
        }
        Ok(())
    }

    /// Applies a control file: the nodes it lists (one name per line; `#` starts a comment)
    /// are stopped, every other node heartbeats. A missing file stops nothing. This is how
    /// a test drives `skiff sim` from outside.
    pub fn apply_stop_file(&self, path: &Path) -> Result<(), HollowError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(HollowError::ControlFile {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let stopped: std::collections::HashSet<&str> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .collect();
        for name in stopped.iter() {
            if self.nodes.get(name).is_none() {
                tracing::warn!(
                    node = name,
                    "the stop file names no hollow node of this process"
                );
            }
        }
        let names: Vec<String> = self.names().map(str::to_string).collect();
        for name in names {
            if stopped.contains(name.as_str()) {
                self.stop_heartbeats(&name)?;
            } else if !self.nodes.get(&name).is_some_and(|(_, n)| n.alive()) {
                self.resume_heartbeats(&name)?;
            }
        }
        Ok(())
    }

    /// Re-applies [`HollowCluster::apply_stop_file`] every second, forever.
    pub async fn follow_stop_file(&self, path: &Path) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = self.apply_stop_file(path) {
                tracing::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities() {
        assert_eq!(parse_memory_ki("16Gi").ok(), Some(16 * 1024 * 1024));
        assert_eq!(parse_memory_ki("512Mi").ok(), Some(512 * 1024));
        assert_eq!(parse_memory_ki("1G").ok(), Some(976_562));
        assert_eq!(parse_memory_ki("2048").ok(), Some(2));
        assert!(parse_memory_ki("16GB").is_err());
        assert!(parse_memory_ki("").is_err());
        assert!(parse_memory_ki("99999999999Ti").is_err());
    }

    #[test]
    fn node_addresses_are_distinct() {
        assert_eq!(node_ip(0).to_string(), "10.64.0.1");
        assert_eq!(node_ip(255).to_string(), "10.64.1.0");
        assert_eq!(node_ip(70_000).to_string(), "10.65.17.113");
    }

    #[test]
    fn hollow_nodes_report_their_configured_size() {
        let config = HollowConfig {
            nodes: 3,
            cpu: 8,
            memory_ki: 1024,
            max_pods: 30,
            ..Default::default()
        };
        let nodes = Nodes::new(&config);
        let (i, n) = nodes.get("hollow-2").expect("node 2");
        assert_eq!(i, 2);
        let status = crate::kubelet::node_status::status(&n.id, &nodes.machine, None);
        let cap = status.capacity.unwrap_or_default();
        assert_eq!(cap.get("cpu").map(|q| q.0.as_str()), Some("8"));
        assert_eq!(cap.get("pods").map(|q| q.0.as_str()), Some("30"));
        assert_eq!(cap.get("memory").map(|q| q.0.as_str()), Some("1024Ki"));
        let addresses = status.addresses.unwrap_or_default();
        assert_eq!(addresses[0].address, "10.64.0.3");
        assert_eq!(addresses[1].address, "hollow-2");
        assert!(nodes.get("hollow-3").is_none());
    }
}
