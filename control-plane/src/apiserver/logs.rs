//! `pods/log`: the container's output, streamed from the pod's node agent
//! (`skiff.agent.v1.Agent/Logs`) and relayed as `text/plain` chunks.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;
use skiff_proto::agent::LogRequest;

use super::agent;
use super::rest::Query;
use super::status::Status;
use crate::store::Store;

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

/// Serves `GET .../pods/<name>/log`.
pub async fn serve(store: &Store, pod: Value, q: &Query) -> Result<Response, Status> {
    let container = agent::container(&pod, q.get("container").map(String::as_str))?;
    let (namespace, name, pod_uid) = agent::pod_identity(&pod);
    let request = LogRequest {
        namespace,
        pod: name,
        pod_uid,
        container,
        follow: flag(q, "follow"),
        previous: flag(q, "previous"),
        timestamps: flag(q, "timestamps"),
        tail_lines: int(q, "tailLines")?,
        since_seconds: int(q, "sinceSeconds")?,
        limit_bytes: int(q, "limitBytes")?,
    };
    let (mut client, node) = agent::connect(store, &pod).await?;
    let stream = client
        .logs(request)
        .await
        .map_err(|s| agent::status_of(&node, &s))?
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
