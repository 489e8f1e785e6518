//! Reaching the node agent that runs a pod, for the subresources it serves (log, exec,
//! portforward) over its gRPC service `skiff.agent.v1.Agent`.
//!
//! The agent is found from the pod's node: the Node's InternalIP (or first address) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, as the kubelet's endpoint is found upstream.

use std::time::Duration;

use serde_json::Value;
use skiff_proto::agent::agent_client::AgentClient;
use tonic::transport::Channel;

use super::catalog;
use super::objects;
use super::registry;
use super::status::Status;
use crate::store::Store;

/// How long reaching an agent may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The container a request names, or the pod's only container.
pub fn container(pod: &Value, asked: Option<&str>) -> Result<String, Status> {
    let name = objects::name_of(pod);
    let names: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(Status::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match main.as_slice() {
                [only] => Ok(only.to_string()),
                many => Err(Status::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                ))),
            }
        }
    }
}

/// The agent endpoint of a Node object.
pub fn endpoint(node: &Value) -> Option<String> {
    let addresses = node["status"]["addresses"].as_array()?;
    let address = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())?["address"]
        .as_str()?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    Some(if address.contains(':') {
        format!("http://[{address}]:{port}")
    } else {
        format!("http://{address}:{port}")
    })
}

/// The answer when the pod's agent cannot be reached.
pub fn unreachable(node: &str, why: &str) -> Status {
    Status::new(
        503,
        "ServiceUnavailable",
        format!("the node agent on {node} is not reachable: {why}"),
    )
}

/// What an agent's refusal means to the API client.
pub fn status_of(node: &str, s: &tonic::Status) -> Status {
    match s.code() {
        tonic::Code::NotFound => Status::new(404, "NotFound", s.message().to_string()),
        tonic::Code::InvalidArgument => Status::bad_request(s.message().to_string()),
        _ => unreachable(node, s.message()),
    }
}

/// A connection to the agent of the node `pod` is bound to, and that node's name.
pub async fn connect(store: &Store, pod: &Value) -> Result<(AgentClient<Channel>, String), Status> {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(Status::bad_request(format!(
            "pod {} does not have a host assigned",
            objects::name_of(pod)
        )));
    }
    let nodes =
        catalog::find("", "v1", "nodes").ok_or_else(|| Status::internal("no nodes".into()))?;
    let node_obj = registry::get(store, &registry::key(nodes, None, &node))
        .await?
        .ok_or_else(|| Status::object_not_found("", "nodes", "nodes", &node))?;
    let address = endpoint(&node_obj).ok_or_else(|| {
        Status::new(
            503,
            "ServiceUnavailable",
            format!("node {node} has no agent endpoint in its status"),
        )
    })?;
    let channel = tonic::transport::Endpoint::from_shared(address)
        .map_err(|e| unreachable(&node, &e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| unreachable(&node, &e.to_string()))?;
    Ok((AgentClient::new(channel), node))
}

/// The pod's phase, for exec and port-forward, which reach into a running container only.
pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

/// The pod's identity as the agent's requests carry it: namespace, name and uid.
pub fn pod_identity(pod: &Value) -> (String, String, String) {
    let meta = &pod["metadata"];
    let text = |f: &str| meta[f].as_str().unwrap_or("").to_string();
    (text("namespace"), text("name"), text("uid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_and_endpoints() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(container(&pod, Some("b")).unwrap(), "b");
        assert_eq!(container(&pod, Some("init")).unwrap(), "init");
        assert_eq!(
            container(&pod, Some("x")).unwrap_err().message,
            "container x is not valid for pod web"
        );
        assert_eq!(
            container(&pod, None).unwrap_err().message,
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        let one = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container(&one, None).unwrap(), "a");
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}});
        assert_eq!(endpoint(&node).unwrap(), "http://10.0.0.5:10250");
        assert!(endpoint(&json!({"status": {}})).is_none());
    }
}
