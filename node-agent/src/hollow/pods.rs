//! The pods of every hollow node, from one pod watch (`spec.nodeName!=`: every bound pod)
//! dispatched by node name. The fake runtime starts a pod at once: init containers completed,
//! every container running, started and ready; the status is what the real agent's
//! [`status::pod_status`] computes from those container states. A pod being deleted is
//! removed with grace 0 and a uid precondition, the kubelet's part of graceful deletion.
//! Work goes through a bounded queue to a bounded number of concurrent writes; a pod already
//! queued for the same work is not queued twice.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Nodes;
use crate::kubelet::resources;
use crate::kubelet::status::{self, Conditions, SlotView, StateView, Terminated};

/// Most pods waiting for a write.
const QUEUE: usize = 8192;
/// Attempts at one write before it is left to the next event about the pod.
const ATTEMPTS: u32 = 3;

/// What a hollow kubelet does with a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// Report it running.
    Start,
    /// Remove the object (it is being deleted).
    Delete,
}

struct Work {
    action: Action,
    node: usize,
    pod: Arc<Pod>,
}

/// Hands pods to the workers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    tx: mpsc::Sender<Work>,
    nodes: Arc<Nodes>,
    queued: Arc<Mutex<HashSet<(String, Action)>>>,
}

/// What a hollow kubelet should do with `pod` now, if anything.
fn action(pod: &Pod) -> Option<Action> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(Action::Delete);
    }
    let st = pod.status.as_ref();
    let phase = st.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let reported = st
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, Vec::len);
    let ready = st
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if phase == Some("Running") && ready && reported == containers {
        None
    } else {
        Some(Action::Start)
    }
}

/// A made-up pod address in 100.64.0.0/10, stable for the pod's uid.
fn pod_ip(uid: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    uid.hash(&mut h);
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let host = (h.finish() % ((1 << 22) - 2)) as u32 + 1;
    Ipv4Addr::from(base + host).to_string()
}

/// The status of `pod` running on a hollow node at `host_ip`, as of `now`: init containers
/// completed, every container running, started and ready.
pub fn running_status(pod: &Pod, host_ip: &str, now: Timestamp) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    let id = |name: &str| format!("hollow://{short}-{name}");
    let spec = pod.spec.as_ref();
    let image_id = |image: &str| format!("{image}@sha256:{:064}", 0);
    let mut views: Vec<SlotView> = Vec::new();
    for c in spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
    {
        let image = c.image.clone().unwrap_or_default();
        views.push(SlotView {
            name: c.name.clone(),
            init: true,
            image_id: image_id(&image),
            image,
            restarts: 0,
            ready: false,
            started: false,
            state: StateView::Terminated(Terminated {
                exit_code: 0,
                signal: None,
                reason: "Completed".into(),
                message: None,
                started_at: now,
                finished_at: now,
                container_id: id(&c.name),
            }),
            last: None,
        });
    }
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        let image = c.image.clone().unwrap_or_default();
        views.push(SlotView {
            name: c.name.clone(),
            init: false,
            image_id: image_id(&image),
            image,
            restarts: 0,
            ready: true,
            started: true,
            state: StateView::Running {
                started_at: now,
                id: id(&c.name),
            },
            last: None,
        });
    }
    let restart = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut conditions = Conditions::default();
    status::pod_status(status::Input {
        pod,
        phase: status::phase(&views, restart),
        views: &views,
        sandbox_ready: true,
        host_ip: host_ip.to_string(),
        pod_ip: Some(if host_network {
            host_ip.to_string()
        } else {
            pod_ip(uid)
        }),
        started_at: now,
        qos: resources::qos_class(pod).as_str(),
        conditions: &mut conditions,
    })
}

impl Dispatcher {
    /// Queues what `pod` needs, if it is bound to a live hollow node of this process.
    pub(crate) async fn offer(&self, pod: Pod) {
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let Some((node, hollow)) = self.nodes.get(node_name) else {
            return;
        };
        if !hollow.alive() {
            return;
        }
        let Some(action) = action(&pod) else {
            return;
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        {
            let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
            if !queued.insert((uid, action)) {
                return;
            }
        }
        let work = Work {
            action,
            node,
            pod: Arc::new(pod),
        };
        if self.tx.send(work).await.is_err() {
            tracing::debug!("hollow pod workers are gone");
        }
    }

    /// Looks at every pod of `node` again (after its heartbeats resume).
    pub(crate) async fn resync_node(&self, client: kube::Client, node: &str) {
        let api: Api<Pod> = Api::all(client);
        let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
        match api.list(&lp).await {
            Ok(list) => {
                for pod in list.items {
                    self.offer(pod).await;
                }
            }
            Err(e) => tracing::warn!(node, "listing the hollow node's pods: {e}"),
        }
    }

    fn done(&self, uid: &str, action: Action) {
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        queued.remove(&(uid.to_string(), action));
    }
}

/// Starts the pod watch and the workers; returns the dispatcher and the tasks.
pub(crate) fn start(
    client: kube::Client,
    nodes: Arc<Nodes>,
    writes: usize,
) -> (Dispatcher, Vec<JoinHandle<()>>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let dispatcher = Dispatcher {
        tx,
        nodes,
        queued: Arc::default(),
    };
    let workers = tokio::spawn(work(client.clone(), dispatcher.clone(), rx, writes));
    let watch = tokio::spawn(watch(client, dispatcher.clone()));
    (dispatcher, vec![workers, watch])
}

/// Every bound pod, dispatched to its node.
async fn watch(client: kube::Client, dispatcher: Dispatcher) {
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default()
        .fields("spec.nodeName!=")
        .page_size(500);
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                dispatcher.offer(pod).await
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("watching pods: {e}"),
        }
    }
}

/// Runs queued work, `writes` at a time.
async fn work(
    client: kube::Client,
    dispatcher: Dispatcher,
    mut rx: mpsc::Receiver<Work>,
    writes: usize,
) {
    let slots = Arc::new(Semaphore::new(writes.max(1)));
    while let Some(w) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, dispatcher) = (client.clone(), dispatcher.clone());
        tokio::spawn(async move {
            let node = dispatcher.nodes.list.get(w.node);
            let node_name = node.map(|n| n.id.name.as_str()).unwrap_or_default();
            let ns = w.pod.metadata.namespace.as_deref().unwrap_or("default");
            let name = w.pod.metadata.name.as_deref().unwrap_or_default();
            let span = tracing::debug_span!("hollow_pod", node = %node_name, pod = %format!("{ns}/{name}"));
            let api: Api<Pod> = Api::namespaced(client, ns);
            let host_ip = node.map(|n| n.id.ip.to_string()).unwrap_or_default();
            async {
                for attempt in 1..=ATTEMPTS {
                    match run_one(&api, &w, &host_ip).await {
                        Ok(()) => {
                            let counter = match w.action {
                                Action::Start => &dispatcher.nodes.pods_started,
                                Action::Delete => &dispatcher.nodes.pods_deleted,
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => break,
                        Err(e) if attempt < ATTEMPTS => {
                            tracing::debug!(?w.action, "hollow pod write failed: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt)))
                                .await;
                        }
                        Err(e) => tracing::warn!(?w.action, "hollow pod write failed: {e}"),
                    }
                }
            }
            .instrument(span)
            .await;
            if let Some(uid) = w.pod.metadata.uid.as_deref() {
                dispatcher.done(uid, w.action);
            }
            drop(permit);
        });
    }
}

async fn run_one(api: &Api<Pod>, w: &Work, host_ip: &str) -> Result<(), kube::Error> {
    let name = w.pod.metadata.name.as_deref().unwrap_or_default();
    match w.action {
        Action::Start => {
            let status = running_status(&w.pod, host_ip, Timestamp::now());
            let patch = json!({ "status": status });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(drop)
        }
        Action::Delete => {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: w.pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            api.delete(name, &dp).await.map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "0123-4567-89ab-cdef"},
            "spec": {
                "nodeName": "hollow-0",
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [
                    {"name": "a", "image": "nginx"},
                    {"name": "b", "image": "redis", "resources": {"requests": {"cpu": "100m"}}}
                ]
            }
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                m.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn a_hollow_pod_runs_at_once() {
        let p = pod(json!({}));
        let s = running_status(&p, "10.64.0.1", Timestamp::UNIX_EPOCH);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["hostIP"], "10.64.0.1");
        assert_eq!(s["qosClass"], "Burstable");
        assert!(s["podIP"].as_str().is_some_and(|ip| ip.starts_with("100.")));
        let statuses = s["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(statuses.len(), 2);
        for c in &statuses {
            assert_eq!(c["ready"], true);
            assert_eq!(c["started"], true);
            assert!(c["state"]["running"]["startedAt"].is_string());
        }
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        let conds = s["conditions"].as_array().cloned().unwrap_or_default();
        for kind in ["Ready", "ContainersReady", "Initialized", "PodScheduled"] {
            assert!(
                conds
                    .iter()
                    .any(|c| c["type"] == kind && c["status"] == "True"),
                "{kind} is True"
            );
        }
        // Reported as it is, the pod needs nothing more; deleted, it needs its final delete.
        let mut reported = p.clone();
        reported.status = serde_json::from_value(s).ok();
        assert_eq!(action(&p), Some(Action::Start));
        assert_eq!(action(&reported), None);
        reported.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        assert_eq!(action(&reported), Some(Action::Delete));
    }

    #[test]
    fn host_network_pods_take_the_node_address() {
        let mut p = pod(json!({}));
        if let Some(s) = p.spec.as_mut() {
            s.host_network = Some(true);
        }
        let s = running_status(&p, "10.64.0.9", Timestamp::UNIX_EPOCH);
        assert_eq!(s["podIP"], "10.64.0.9");
    }

    #[test]
    fn finished_and_unready_pods() {
        let done = pod(json!({"status": {"phase": "Succeeded"}}));
        assert_eq!(action(&done), None);
        let unready = pod(
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        assert_eq!(action(&unready), Some(Action::Start));
        assert_eq!(pod_ip("x"), pod_ip("x"));
    }
}
