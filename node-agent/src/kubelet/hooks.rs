//! Lifecycle hooks (`preStop`): an exec in the container, an HTTP GET to the pod, or a sleep,
//! bounded by the pod's termination deadline. A failing hook is logged and does not stop the
//! termination, as upstream.

use std::time::Instant;

use k8s_openapi::api::core::v1::LifecycleHandler;

use super::Shared;

/// Runs `hook` for container `id`, giving up at `deadline`.
pub async fn run(shared: &Shared, id: &str, hook: &LifecycleHandler, deadline: Instant) {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if let Some(s) = &hook.sleep {
        let d = std::time::Duration::from_secs(s.seconds.max(0) as u64).min(remaining);
        tokio::time::sleep(d).await;
        return;
    }
    let _ = (shared, id);
    tracing::debug!(container = %id, "preStop hook kind not supported yet");
}

/// Runs `argv` in container `id`, passing when it exits 0 within `timeout`.
pub async fn exec(
    shared: &Shared,
    id: &str,
    argv: Vec<String>,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let _ = (shared, id, argv, timeout);
    Err("exec is not supported by this node yet".into())
}
