//! Events (`Scheduled`, `FailedScheduling`, `SuccessfulCreate`, `ScalingReplicaSet`, `Pulled`,
//! ...), as `kubectl describe` and `kubectl events` show them. Emitting never blocks a control
//! loop: events go through a bounded queue to one writer task, which drops what does not fit
//! (upstream's recorder drops too) and folds a repeat of a recent event into its `count`.

use std::collections::{HashMap, VecDeque};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
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

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

struct Item {
    object: ObjectReference,
    kind: Kind,
    reason: &'static str,
    message: String,
}

/// Where a component sends its events; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Item>,
}

/// The reference an event about `object` carries, as upstream's `ref.GetReference` builds it.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// Starts the writer task. `component` is the event source (`kubelet`, `default-scheduler`,
    /// `deployment-controller`, ...); `host` the node it runs on, when it runs on one.
    pub fn start(client: kube::Client, component: &str, host: Option<String>) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let source = EventSource {
            component: Some(component.into()),
            host,
        };
        tokio::spawn(write_events(client, source, rx));
        Recorder { tx }
    }

    /// Records an event about `object` (for a container: a reference with a `field_path`).
    pub fn publish(
        &self,
        object: ObjectReference,
        kind: Kind,
        reason: &'static str,
        message: String,
    ) {
        let item = Item {
            object,
            kind,
            reason,
            message,
        };
        if let Err(e) = self.tx.try_send(item) {
            tracing::debug!("event dropped: {}", e.into_inner().reason);
        }
    }

    /// Records an event about a typed object.
    pub fn object<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        kind: Kind,
        reason: &'static str,
        message: String,
    ) {
        self.publish(reference(object), kind, reason, message)
    }
}

/// What makes two events the same: object uid, field path, reason, message.
type EventKey = (String, String, &'static str, String);

async fn write_events(client: kube::Client, source: EventSource, mut rx: mpsc::Receiver<Item>) {
    // (namespace, event name, count) of recent events.
    let mut recent: HashMap<EventKey, (String, String, i32)> = HashMap::new();
    let mut order: VecDeque<EventKey> = VecDeque::new();
    while let Some(item) = rx.recv().await {
        // Events about cluster-scoped objects live in `default`, as upstream puts them.
        let namespace = item
            .object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = (
            item.object.uid.clone().unwrap_or_default(),
            item.object.field_path.clone().unwrap_or_default(),
            item.reason,
            item.message.clone(),
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        if let Some((ns, name, count)) = recent.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({ "count": *count, "lastTimestamp": Time(now) });
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
            item.object.name.as_deref().unwrap_or("object"),
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
            type_: Some(item.kind.as_str().into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(source.clone()),
            reporting_component: source.component.clone(),
            reporting_instance: source.host.clone().or_else(|| source.component.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
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
