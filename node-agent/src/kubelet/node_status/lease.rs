//! The node's Lease in `kube-node-lease`: renewed every 10 s, it is the cheap heartbeat the
//! control plane watches to tell a live node from a dead one (upstream's node lease controller).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::PostParams;
use kube::Api;

use super::Backoff;

/// The namespace holding every node's Lease.
pub const NAMESPACE: &str = "kube-node-lease";

/// How long a Lease holds without renewal (upstream's `nodeLeaseDurationSeconds`).
pub const DURATION_SECONDS: i32 = 40;

/// Upstream renews at a quarter of the duration.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(DURATION_SECONDS as u64 / 4);

/// Renews the Lease of `node` forever.
pub async fn run(client: kube::Client, node: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let mut backoff = Backoff::new(Duration::from_millis(200), RENEW_INTERVAL);
    // The last Lease written, so a renewal is one PUT rather than a GET and a PUT.
    let mut latest: Option<Lease> = None;
    loop {
        match renew(&leases, &nodes, &node, latest.take()).await {
            Ok(lease) => {
                latest = Some(lease);
                backoff.reset();
                tokio::time::sleep(RENEW_INTERVAL).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the node lease failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

/// Creates or renews the Lease; `latest` is what the previous renewal wrote (`None`: read it
/// first). The agent's loop and simulated nodes both renew through this.
pub async fn renew(
    leases: &Api<Lease>,
    nodes: &Api<Node>,
    node: &str,
    latest: Option<Lease>,
) -> Result<Lease, kube::Error> {
    let lease = match latest {
        Some(lease) => lease,
        None => match leases.get_opt(node).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(node.to_string()),
                        namespace: Some(NAMESPACE.to_string()),
                        owner_references: owner(nodes, node).await?,
                        ..Default::default()
                    },
                    spec: Some(spec(node, None)),
                };
                return leases.create(&PostParams::default(), &lease).await;
            }
        },
    };
    let mut next = lease.clone();
    next.spec = Some(spec(node, lease.spec.as_ref()));
    if next
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        next.metadata.owner_references = owner(nodes, node).await?;
    }
    // A conflict means someone else wrote it: the next attempt starts from a fresh GET.
    leases.replace(node, &PostParams::default(), &next).await
}

/// The Lease's spec, renewed now, keeping what others set that the agent does not own.
fn spec(node: &str, old: Option<&LeaseSpec>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some(DURATION_SECONDS),
        renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        ..old.cloned().unwrap_or_default()
    }
}

/// The Node as the Lease's owner, so deleting the Node deletes its Lease (as upstream does);
/// none while the Node does not exist yet, to be set on a later renewal.
async fn owner(nodes: &Api<Node>, node: &str) -> Result<Option<Vec<OwnerReference>>, kube::Error> {
    Ok(nodes.get_opt(node).await?.and_then(|n| {
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.to_string(),
            uid: n.metadata.uid?,
            ..Default::default()
        }])
    }))
}
