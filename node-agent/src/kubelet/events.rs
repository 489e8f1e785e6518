//! Events about pods (`Pulled`, `Created`, `Started`, `BackOff`, `Killing`, `Failed`, ...), as
//! `kubectl describe pod` shows them. Emitting never blocks a pod worker: events go through a
//! bounded queue to one writer task, which drops what does not fit (upstream's recorder drops
//! too) and folds a repeat of a recent event into its `count`.

use std::collections::HashMap;
use std::collections::VecDeque;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

/// How many events may wait for the writer.
const QUEUE: usize = 1024;
/// How many recent events are remembered for folding repeats.
const RECENT: usize = 512;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

struct Item {
    object: ObjectReference,
    kind: Kind,
    reason: &'static str,
    message: String,
}

/// Where pod workers send events.
#[derive(Clone, Debug)]
pub struct Events {
    tx: mpsc::Sender<Item>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.reason, self.message)
    }
}

impl Events {
    /// Starts the writer task.
    pub fn start(client: kube::Client, node: String) -> Events {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(client, node, rx));
        Events { tx }
    }

    /// An event about `pod` (and, through `field_path`, one of its containers).
    pub fn pod(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        kind: Kind,
        reason: &'static str,
        message: String,
    ) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        let item = Item {
            object,
            kind,
            reason,
            message,
        };
        if let Err(e) = self.tx.try_send(item) {
            tracing::debug!("event dropped: {e}");
        }
    }
}

/// What makes two events the same: pod uid, field path, reason, message.
type EventKey = (String, String, String, String);

async fn write_events(client: kube::Client, node: String, mut rx: mpsc::Receiver<Item>) {
    // (namespace, event name, count) of recent events.
    let mut recent: HashMap<EventKey, (String, String, i32)> = HashMap::new();
    let mut order: VecDeque<EventKey> = VecDeque::new();
    while let Some(item) = rx.recv().await {
        let namespace = item
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let key = (
            item.object.uid.clone().unwrap_or_default(),
            item.object.field_path.clone().unwrap_or_default(),
            item.reason.to_string(),
            item.message.clone(),
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        if let Some((ns, name, count)) = recent.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({
                "count": *count,
                "lastTimestamp": Time(now),
            });
            let api: Api<Event> = Api::namespaced(client.clone(), ns);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(e) => tracing::debug!("event {name}: {e}; writing a new one"),
            }
        }
        let name = format!(
            "{}.{:x}",
            item.object.name.as_deref().unwrap_or("pod"),
            now.as_nanosecond() as u64
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: item.object,
            reason: Some(item.reason.into()),
            message: Some(item.message),
            type_: Some(
                match item.kind {
                    Kind::Normal => "Normal",
                    Kind::Warning => "Warning",
                }
                .into(),
            ),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if recent.len() >= RECENT {
                    if let Some(old) = order.pop_front() {
                        recent.remove(&old);
                    }
                }
                order.push_back(key.clone());
                recent.insert(key, (namespace, name, 1));
            }
            Err(e) => tracing::debug!("event not written: {e}"),
        }
    }
}
