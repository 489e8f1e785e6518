//! What the scheduler writes to the API server, off the decision loop: bindings
//! (`pods/binding`), PodScheduled=False conditions and nominations (`pods/status`),
//! preemption's evictions, and the events about them. Many writes run at once, bounded, and
//! binding outcomes go back to the loop so it can confirm or forget its assumption.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use thiserror::Error;
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use super::fit_error::truncate_for_event;
use super::podinfo::{PodInfo, PodKey};
use crate::events::{Kind, Recorder};

/// Writes in flight at once.
pub const MAX_IN_FLIGHT: usize = 128;

/// A write the decision loop asks for.
#[derive(Debug)]
pub enum Action {
    /// Bind the pod to the node.
    Bind {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The node.
        node: String,
    },
    /// Record that no node fits: condition, event, and the nomination (`Some("")` clears
    /// it, `None` leaves it).
    Unschedulable {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The FitError message.
        message: String,
        /// New `status.nominatedNodeName`.
        nominate: Option<String>,
    },
    /// Evict these pods so the preemptor fits on `node`.
    Preempt {
        /// The pod that preempts.
        preemptor: Arc<PodInfo>,
        /// The node.
        node: String,
        /// The pods to delete.
        victims: Vec<Arc<PodInfo>>,
    },
}

/// How a binding ended, reported back to the loop.
#[derive(Debug)]
pub enum Done {
    /// The pod is bound.
    Bound {
        /// The pod.
        key: PodKey,
    },
    /// The binding failed.
    BindFailed {
        /// The pod.
        key: PodKey,
        /// Its UID.
        uid: String,
        /// Whether the pod is gone or bound elsewhere already (no retry).
        settled: bool,
    },
}

/// Why a write failed.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The API server refused or did not answer.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

impl WriteError {
    fn code(&self) -> Option<u16> {
        match self {
            WriteError::Api(kube::Error::Api(s)) => Some(s.code),
            WriteError::Api(_) => None,
        }
    }
}

/// Runs actions as they come, at most [`MAX_IN_FLIGHT`] at once, until the loop hangs up.
pub async fn execute(
    client: kube::Client,
    recorder: Recorder,
    mut actions: mpsc::Receiver<Action>,
    done: mpsc::UnboundedSender<Done>,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(action) = actions.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let client = client.clone();
        let recorder = recorder.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let _permit = permit;
            run(client, recorder, action, done).await;
        });
    }
}

async fn run(
    client: kube::Client,
    recorder: Recorder,
    action: Action,
    done: mpsc::UnboundedSender<Done>,
) {
    match action {
        Action::Bind { pod, node } => {
            let span = tracing::info_span!("bind", pod = %pod.key, node = %node);
            async {
                let outcome = match bind(&client, &pod, &node).await {
                    Ok(()) => {
                        tracing::debug!("bound");
                        recorder.object(
                            &*pod.pod,
                            Kind::Normal,
                            "Scheduled",
                            format!("Successfully assigned {} to {node}", pod.key),
                        );
                        Done::Bound {
                            key: pod.key.clone(),
                        }
                    }
                    Err(e) => {
                        let settled = matches!(e.code(), Some(404 | 409));
                        tracing::info!(settled, "binding failed: {e}");
                        Done::BindFailed {
                            key: pod.key.clone(),
                            uid: pod.uid.clone(),
                            settled,
                        }
                    }
                };
                let _ = done.send(outcome);
            }
            .instrument(span)
            .await
        }
        Action::Unschedulable {
            pod,
            message,
            nominate,
        } => {
            let span = tracing::info_span!("unschedulable", pod = %pod.key);
            async {
                recorder.object(
                    &*pod.pod,
                    Kind::Warning,
                    "FailedScheduling",
                    truncate_for_event(&message),
                );
                if let Err(e) = set_unschedulable(&client, &pod, &message, nominate).await {
                    tracing::debug!("pod status not updated: {e}");
                }
            }
            .instrument(span)
            .await
        }
        Action::Preempt {
            preemptor,
            node,
            victims,
        } => {
            let span = tracing::info_span!("preempt", pod = %preemptor.key, node = %node);
            async {
                for victim in victims {
                    match evict(&client, &victim).await {
                        Ok(()) => recorder.object(
                            &*victim.pod,
                            Kind::Normal,
                            "Preempted",
                            format!("Preempted by pod {} on node {node}", preemptor.uid),
                        ),
                        Err(e) => tracing::info!(victim = %victim.key, "preemption victim not deleted: {e}"),
                    }
                }
            }
            .instrument(span)
            .await
        }
    }
}

fn pods(client: &kube::Client, pod: &PodInfo) -> Api<Pod> {
    Api::namespaced(client.clone(), &pod.namespace)
}

async fn bind(client: &kube::Client, pod: &PodInfo, node: &str) -> Result<(), WriteError> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    pods(client, pod)
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &binding,
        )
        .await?;
    Ok(())
}

/// Patches PodScheduled=False (Unschedulable) and the nomination, unless they already say so.
async fn set_unschedulable(
    client: &kube::Client,
    pod: &PodInfo,
    message: &str,
    nominate: Option<String>,
) -> Result<(), WriteError> {
    let status = pod.pod.status.as_ref();
    let current = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    let same_condition = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let current_nominated = status
        .and_then(|s| s.nominated_node_name.clone())
        .unwrap_or_default();
    let nomination_changes = nominate.as_ref().is_some_and(|n| *n != current_nominated);
    if same_condition && !nomination_changes {
        return Ok(());
    }
    let transition = current
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    let mut patch = serde_json::json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }]
        }
    });
    if let Some(n) = nominate.filter(|_| nomination_changes) {
        patch["status"]["nominatedNodeName"] = if n.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(n)
        };
    }
    pods(client, pod)
        .patch_status(
            &pod.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
    Ok(())
}

/// Marks a victim with the DisruptionTarget condition, then deletes it with its own grace
/// period, as upstream's preemption does.
async fn evict(client: &kube::Client, victim: &PodInfo) -> Result<(), WriteError> {
    let api = pods(client, victim);
    let condition = serde_json::json!({
        "status": {
            "conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": "default-scheduler: preempting to accommodate a higher priority pod",
                "lastTransitionTime": Time(k8s_openapi::jiff::Timestamp::now()),
            }]
        }
    });
    if let Err(e) = api
        .patch_status(
            &victim.name,
            &PatchParams::default(),
            &Patch::Strategic(&condition),
        )
        .await
    {
        tracing::debug!(victim = %victim.key, "DisruptionTarget not set: {e}");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(victim.uid.clone()).filter(|u| !u.is_empty()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&victim.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
