//! `pods/log`: the container's output, streamed from the node agent that runs the pod over the
//! agent's gRPC service (`skiff.agent.v1.Agent/Logs`) and relayed as `text/plain` chunks.
//!
//! The agent is found from the pod's node: the Node's InternalIP (or first address) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, as the kubelet's endpoint is found upstream.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use skiff_proto::agent::agent_client::AgentClient;
use skiff_proto::agent::LogRequest;

use super::catalog;
use super::objects;
use super::registry;
use super::rest::Query;
use super::status::Status;
use crate::store::Store;

/// How long reaching an agent may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn int(q: &Query, name: &str) -> Result<Option<i64>, Status> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Status::bad_request(format!(
                "{name}: Invalid value: \"{v}\": must be an integer"
            ))
        }),
    }
}

fn flag(q: &Query, name: &str) -> bool {
    matches!(q.get(name).map(String::as_str), Some("true" | "1"))
}

/// The container a log request names, or the pod's only container.
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
pub fn agent_endpoint(node: &Value) -> Option<String> {
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

/// Serves `GET .../pods/<name>/log`.
pub async fn serve(store: &Store, pod: Value, q: &Query) -> Result<Response, Status> {
    let name = objects::name_of(&pod).to_string();
    let container = container(&pod, q.get("container").map(String::as_str))?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(Status::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes =
        catalog::find("", "v1", "nodes").ok_or_else(|| Status::internal("no nodes".into()))?;
    let node_obj = registry::get(store, &registry::key(nodes, None, node))
        .await?
        .ok_or_else(|| Status::object_not_found("", "nodes", "nodes", node))?;
    let endpoint = agent_endpoint(&node_obj).ok_or_else(|| {
        Status::new(
            503,
            "ServiceUnavailable",
            format!("node {node} has no agent endpoint in its status"),
        )
    })?;
    let request = LogRequest {
        namespace: pod["metadata"]["namespace"].as_str().unwrap_or("").into(),
        pod: name.clone(),
        pod_uid: pod["metadata"]["uid"].as_str().unwrap_or("").into(),
        container,
        follow: flag(q, "follow"),
        previous: flag(q, "previous"),
        timestamps: flag(q, "timestamps"),
        tail_lines: int(q, "tailLines")?,
        since_seconds: int(q, "sinceSeconds")?,
        limit_bytes: int(q, "limitBytes")?,
    };
    let unreachable = |e: String| {
        Status::new(
            503,
            "ServiceUnavailable",
            format!("the node agent on {node} is not reachable: {e}"),
        )
    };
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let stream = AgentClient::new(channel)
        .logs(request)
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound => Status::new(404, "NotFound", s.message().to_string()),
            tonic::Code::InvalidArgument => Status::bad_request(s.message().to_string()),
            _ => unreachable(s.message().to_string()),
        })?
        .into_inner();
    // The agent's stream ends the body; an error midway ends it early, as a broken
    // connection to the kubelet does upstream.
    let body = stream
        .take_while(|item| std::future::ready(item.is_ok()))
        .filter_map(|item| {
            std::future::ready(
                item.ok()
                    .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from(c.data))),
            )
        });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .map_err(|e| Status::internal(e.to_string()))
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
        assert_eq!(agent_endpoint(&node).unwrap(), "http://10.0.0.5:10250");
        assert!(agent_endpoint(&json!({"status": {}})).is_none());
    }
}
