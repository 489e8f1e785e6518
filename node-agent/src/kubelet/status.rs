//! The pod's status as upstream's kubelet computes it: the phase from the containers' states
//! and the restart policy, container statuses with their state and last state, and the
//! conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled)
//! whose transition times change only when their status does.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// How a container instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    /// Exit code (128 + signal when killed).
    pub exit_code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`.
    pub reason: String,
    /// The termination message.
    pub message: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// `skiff://<id>`.
    pub container_id: String,
}

/// A container's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateView {
    /// Not running: reason and message.
    Waiting(String, String),
    /// Running since.
    Running {
        /// When it started.
        started_at: Timestamp,
        /// `skiff://<id>`.
        id: String,
    },
    /// Ended and not restarting.
    Terminated(Terminated),
}

/// What the status needs to know about one container.
#[derive(Clone, Debug)]
pub struct SlotView {
    /// Container name.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// The image as the spec names it.
    pub image: String,
    /// `<reference>@<digest>` of what runs.
    pub image_id: String,
    /// Restart count.
    pub restarts: u32,
    /// Ready (running, and its readiness probe passes).
    pub ready: bool,
    /// Started (running, and its startup probe passed).
    pub started: bool,
    /// Its state.
    pub state: StateView,
    /// Its previous state.
    pub last: Option<Terminated>,
}

/// The pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, not all containers started.
    Pending,
    /// Bound and at least one container runs (or restarts).
    Running,
    /// Every container ended with 0 and none restarts.
    Succeeded,
    /// Every container ended, one with a failure, and none restarts.
    Failed,
}

impl Phase {
    /// The name in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    /// Whether nothing will run any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Upstream's `getPhase`.
pub fn phase(views: &[SlotView], restart_policy: &str) -> Phase {
    let mut pending_init = false;
    for v in views.iter().filter(|v| v.init) {
        match &v.state {
            StateView::Terminated(t) if t.exit_code == 0 => {}
            StateView::Terminated(_) if restart_policy == "Never" => return Phase::Failed,
            _ => pending_init = true,
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for v in views.iter().filter(|v| !v.init) {
        match &v.state {
            StateView::Running { .. } => running += 1,
            StateView::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            StateView::Waiting(..) => {
                if v.last.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if pending_init || waiting > 0 {
        return Phase::Pending;
    }
    if running > 0 {
        return Phase::Running;
    }
    if stopped > 0 {
        return match restart_policy {
            "Always" => Phase::Running,
            _ if stopped == succeeded => Phase::Succeeded,
            "Never" => Phase::Failed,
            _ => Phase::Running,
        };
    }
    Phase::Pending
}

/// Condition statuses and when each last changed.
#[derive(Debug, Default)]
pub struct Conditions {
    seen: HashMap<&'static str, (bool, Timestamp)>,
}

impl Conditions {
    fn set(&mut self, kind: &'static str, ok: bool) -> Timestamp {
        match self.seen.get(kind) {
            Some((was, at)) if *was == ok => *at,
            _ => {
                let now = Timestamp::now();
                self.seen.insert(kind, (ok, now));
                now
            }
        }
    }
}

/// What goes into a status.
pub struct Input<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its containers.
    pub views: &'a [SlotView],
    /// The phase.
    pub phase: Phase,
    /// Whether the sandbox exists.
    pub sandbox_ready: bool,
    /// The node's address.
    pub host_ip: String,
    /// The pod's address, when it has one.
    pub pod_ip: Option<String>,
    /// When the agent accepted the pod.
    pub started_at: Timestamp,
    /// The QoS class.
    pub qos: &'static str,
    /// Condition history.
    pub conditions: &'a mut Conditions,
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "startedAt": time(t.started_at),
        "finishedAt": time(t.finished_at),
        "containerID": t.container_id,
    });
    if let Some(s) = t.signal {
        v["signal"] = json!(s);
    }
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    v
}

fn container_json(v: &SlotView) -> Value {
    let state = match &v.state {
        StateView::Waiting(reason, message) => {
            let mut w = json!({ "reason": reason });
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            json!({ "waiting": w })
        }
        StateView::Running { started_at, .. } => {
            json!({ "running": { "startedAt": time(*started_at) } })
        }
        StateView::Terminated(t) => json!({ "terminated": terminated_json(t) }),
    };
    let mut out = json!({
        "name": v.name,
        "state": state,
        "lastState": v.last.as_ref().map(|t| json!({ "terminated": terminated_json(t) })).unwrap_or_else(|| json!({})),
        "ready": v.ready,
        "restartCount": v.restarts,
        "image": v.image,
        "imageID": v.image_id,
        "started": v.started,
    });
    let id = match &v.state {
        StateView::Running { id, .. } => Some(id.clone()),
        StateView::Terminated(t) => Some(t.container_id.clone()),
        StateView::Waiting(..) => v.last.as_ref().map(|t| t.container_id.clone()),
    };
    if let Some(id) = id {
        out["containerID"] = json!(id);
    }
    out
}

/// The status object to patch.
pub fn pod_status(i: Input<'_>) -> Value {
    let inits: Vec<&SlotView> = i.views.iter().filter(|v| v.init).collect();
    let mains: Vec<&SlotView> = i.views.iter().filter(|v| !v.init).collect();
    let initialized = inits
        .iter()
        .all(|v| matches!(&v.state, StateView::Terminated(t) if t.exit_code == 0));
    let unready: Vec<&str> = mains
        .iter()
        .filter(|v| !v.ready)
        .map(|v| v.name.as_str())
        .collect();
    let incomplete: Vec<&str> = inits
        .iter()
        .filter(|v| !matches!(&v.state, StateView::Terminated(t) if t.exit_code == 0))
        .map(|v| v.name.as_str())
        .collect();
    let terminal = i.phase.is_terminal();
    let containers_ready = unready.is_empty() && !terminal;
    let mut conditions = Vec::new();
    let mut cond = |kind: &'static str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let at = i.conditions.set(kind, ok);
        let mut c = json!({
            "type": kind,
            "status": if ok { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": time(at),
        });
        if !ok {
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            if let Some(m) = message {
                c["message"] = json!(m);
            }
        }
        conditions.push(c);
    };
    cond("PodReadyToStartContainers", i.sandbox_ready, None, None);
    cond(
        "Initialized",
        initialized,
        Some("ContainersNotInitialized"),
        Some(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        )),
    );
    let (reason, message) = if terminal {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    cond("Ready", containers_ready, reason, message.clone());
    cond("ContainersReady", containers_ready, reason, message);
    cond("PodScheduled", true, None, None);
    let mut status = json!({
        "phase": i.phase.as_str(),
        "conditions": conditions,
        "hostIP": i.host_ip,
        "hostIPs": [{ "ip": i.host_ip }],
        "startTime": time(i.started_at),
        "qosClass": i.qos,
        "containerStatuses": mains.iter().map(|v| container_json(v)).collect::<Vec<_>>(),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] =
            json!(inits.iter().map(|v| container_json(v)).collect::<Vec<_>>());
    }
    if let Some(ip) = &i.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    let _ = i.pod;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(init: bool, state: StateView, last: Option<Terminated>) -> SlotView {
        SlotView {
            name: "c".into(),
            init,
            image: "i".into(),
            image_id: String::new(),
            restarts: 0,
            ready: matches!(state, StateView::Running { .. }),
            started: matches!(state, StateView::Running { .. }),
            state,
            last,
        }
    }

    fn done(code: i32) -> Terminated {
        Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: "skiff://x".into(),
        }
    }

    fn running() -> StateView {
        StateView::Running {
            started_at: Timestamp::UNIX_EPOCH,
            id: "skiff://x".into(),
        }
    }

    #[test]
    fn phases_follow_upstream() {
        let waiting = StateView::Waiting("ContainerCreating".into(), String::new());
        assert_eq!(
            phase(&[view(false, waiting.clone(), None)], "Always"),
            Phase::Pending
        );
        assert_eq!(
            phase(&[view(false, running(), None)], "Always"),
            Phase::Running
        );
        let crash = StateView::Waiting("CrashLoopBackOff".into(), String::new());
        assert_eq!(
            phase(&[view(false, crash, Some(done(1)))], "Always"),
            Phase::Running
        );
        let ok = StateView::Terminated(done(0));
        let bad = StateView::Terminated(done(2));
        assert_eq!(
            phase(&[view(false, ok.clone(), None)], "Never"),
            Phase::Succeeded
        );
        assert_eq!(
            phase(&[view(false, bad.clone(), None)], "Never"),
            Phase::Failed
        );
        assert_eq!(
            phase(
                &[view(false, ok.clone(), None), view(false, bad, None)],
                "Never"
            ),
            Phase::Failed
        );
        assert_eq!(
            phase(&[view(false, ok, None)], "OnFailure"),
            Phase::Succeeded
        );
        // An init container still running keeps the pod Pending; a failed one with Never fails it.
        assert_eq!(
            phase(
                &[
                    view(true, running(), None),
                    view(false, waiting.clone(), None)
                ],
                "Always"
            ),
            Phase::Pending
        );
        assert_eq!(
            phase(
                &[
                    view(true, StateView::Terminated(done(1)), None),
                    view(false, waiting, None)
                ],
                "Never"
            ),
            Phase::Failed
        );
    }

    #[test]
    fn transition_times_stay_until_the_status_changes() {
        let mut c = Conditions::default();
        let a = c.set("Ready", false);
        assert_eq!(c.set("Ready", false), a);
        let b = c.set("Ready", true);
        assert!(b >= a);
        assert_eq!(c.set("Ready", true), b);
    }
}
