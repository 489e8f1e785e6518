//! The kubelet loop: the pods bound to this node, watched through the API server and made real
//! with the runtime, and their status reported back.
//!
//! | module | job |
//! |---|---|
//! | [`node_status`] | the Node object (capacity, nodeInfo, addresses, conditions) and its Lease heartbeat |
//! | [`volumes`] | a pod's volumes under `<pod_dir>/volumes/` (emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim) and each container's bind mounts |
//! | [`downward`] | downward API values (`fieldRef`, `resourceFieldRef`) and resource quantity arithmetic |

pub mod downward;
pub mod node_status;
pub mod volumes;

use std::path::PathBuf;

use crate::service::{ContainerRef, PodDirectory, PodRef};

/// The pods this node runs, as the agent's service looks them up.
#[derive(Debug, Default)]
pub struct Kubelet {}

impl PodDirectory for Kubelet {
    fn container(&self, _ns: &str, _pod: &str, _uid: &str, _ctr: &str) -> Option<ContainerRef> {
        None
    }

    fn pod_netns(&self, _ns: &str, _pod: &str, _uid: &str) -> Option<PathBuf> {
        None
    }

    fn pods(&self) -> Vec<PodRef> {
        Vec::new()
    }
}
