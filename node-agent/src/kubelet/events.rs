//! Events about pods (`Pulled`, `Created`, `Started`, `BackOff`, `Killing`, `Failed`, ...), as
//! `kubectl describe pod` shows them, from source `kubelet` on this node. Emitting never blocks
//! a pod worker: see [`skiff_controllers::events`], whose queue and folding of repeats this
//! shares with the control plane's components.

use k8s_openapi::api::core::v1::Pod;
use skiff_controllers::events::{reference, Recorder};

pub use skiff_controllers::events::Kind;

/// Where pod workers send events.
#[derive(Clone, Debug)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// Starts the writer task.
    pub fn start(client: kube::Client, node: String) -> Events {
        Events {
            recorder: Recorder::start(client, "kubelet", Some(node)),
        }
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
        let mut object = reference(pod);
        object.field_path = field_path;
        self.recorder.publish(object, kind, reason, message);
    }
}
