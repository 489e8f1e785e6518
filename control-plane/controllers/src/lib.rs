//! The control plane's control loops, which act on the cluster only through the Kubernetes API
//! (as upstream's kube-scheduler and kube-controller-manager do), so they run in `skiff init`'s
//! process or anywhere else with a kubeconfig:
//!
//! | module | job |
//! |---|---|
//! | [`events`] | core/v1 Events through a bounded queue, repeats folded into `count` |
//! | [`leader`] | leader election on a `coordination.k8s.io` Lease, so one instance acts |
//! | [`scheduler`] | binds pending pods to nodes: filters, scores, preemption |
//! | [`manager`] | the controller manager: workload, endpoint, node and garbage controllers |

pub mod events;
pub mod leader;
pub mod manager;
pub mod scheduler;

/// Lease names, as upstream's components use them.
const SCHEDULER_LEASE: &str = "kube-scheduler";
const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";

/// Runs the scheduler and the controller manager, each only while this instance (`identity`,
/// unique per process) holds its Lease; several control-plane members can run this at once.
pub async fn run(client: kube::Client, identity: String) {
    let timing = leader::Timing::default();
    let scheduler = leader::run_while_leader(
        client.clone(),
        SCHEDULER_LEASE,
        identity.clone(),
        timing,
        || scheduler::run(client.clone()),
    );
    let manager = leader::run_while_leader(
        client.clone(),
        CONTROLLER_MANAGER_LEASE,
        identity,
        timing,
        || manager::run(client.clone()),
    );
    tokio::join!(scheduler, manager);
}
