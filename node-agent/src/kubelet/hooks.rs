//! Lifecycle hooks (`preStop`): an exec in the container, an HTTP GET to the pod, or a sleep,
//! bounded by the pod's termination deadline. A failing hook is logged and an event, and does
//! not stop the termination, as upstream.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::LifecycleHandler;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Shared;

/// Where a hook reaches its container.
#[derive(Clone, Debug)]
pub struct HookTarget {
    /// The container's runtime id.
    pub id: String,
    /// The pod's network namespace (None: the host's).
    pub netns: Option<PathBuf>,
    /// The container's named ports.
    pub ports: Vec<(String, u16)>,
}

/// Runs `hook`, giving up at `deadline`; the error says why it failed.
pub async fn run(
    shared: &Shared,
    target: &HookTarget,
    hook: &LifecycleHandler,
    deadline: Instant,
) -> Result<(), String> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if let Some(s) = &hook.sleep {
        let d = Duration::from_secs(s.seconds.max(0) as u64).min(remaining);
        tokio::time::sleep(d).await;
        return Ok(());
    }
    if let Some(e) = &hook.exec {
        let argv = e.command.clone().unwrap_or_default();
        return exec(shared, &target.id, argv, remaining).await;
    }
    if let Some(h) = &hook.http_get {
        let port = match &h.port {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}"))?,
            IntOrString::String(name) => target
                .ports
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .ok_or_else(|| format!("port {name:?} is not a named port of the container"))?,
        };
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let get = super::probes::http_get(
            target.netns.as_ref(),
            h.host.as_deref(),
            port,
            &path,
            &headers,
            remaining,
        );
        return tokio::time::timeout(remaining, get)
            .await
            .map_err(|_| "the hook did not finish within the grace period".to_string())?;
    }
    if hook.tcp_socket.is_some() {
        return Err("tcpSocket hooks are not supported (deprecated upstream)".into());
    }
    Ok(())
}

/// Runs `argv` in container `id`, passing when it exits 0 within `timeout`; the error carries
/// its output as upstream's messages do.
pub async fn exec(
    shared: &Shared,
    id: &str,
    argv: Vec<String>,
    timeout: Duration,
) -> Result<(), String> {
    let runtime = shared.runtime.clone();
    let id = id.to_string();
    let ran = tokio::task::spawn_blocking(move || runtime.exec_capture(&id, &argv, timeout))
        .await
        .map_err(|e| e.to_string())?;
    match ran {
        Ok((0, _)) => Ok(()),
        Ok((code, out)) => {
            let out = String::from_utf8_lossy(&out).trim_end().to_string();
            Err(format!("command exited with {code}: {out}"))
        }
        Err(crate::runtime::RuntimeError::ExecTimeout(..)) => {
            Err(format!("command timed out after {}s", timeout.as_secs()))
        }
        Err(e) => Err(e.to_string()),
    }
}
