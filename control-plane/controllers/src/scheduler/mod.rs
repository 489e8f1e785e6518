//! The scheduler: binds each pending pod (no `spec.nodeName`, `schedulerName` absent or
//! `default-scheduler`, not terminating) to a node, as upstream's kube-scheduler with its
//! default profile does.
//!
//! | module | job |
//! |---|---|
//! | [`watches`] | Node, Pod, Namespace and PriorityClass watches feeding the loop |
//! | [`decision_loop`] | the loop on its own thread: cache and queue upkeep, one decision at a time |
//! | [`cache`] | nodes with precomputed aggregates of their pods, assumed pods, nominations |
//! | [`queue`] | active (priority, then time), backoff and unschedulable pods |
//! | [`cycle`] | one attempt: pre-filters, filters over an adaptive share of nodes, scores, choice |
//! | [`filters`] | NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit |
//! | [`affinity`], [`spread`] | inter-pod (anti-)affinity and topology spread: pre-filter counts, filter, score |
//! | [`scores`] | the scoring plugins, their normalisation and default-profile weights |
//! | [`preemption`] | victims and the node to preempt on |
//! | [`fit_error`] | upstream's FailedScheduling message |
//! | [`api`] | bindings, status patches, evictions and events, concurrently and off the loop |
//! | [`podinfo`], [`resources`], [`selectors`] (quantities parse with `skiff_quota::quantity`) | what is computed once per pod or node |
//!
//! The decision loop owns all state, so decisions need no locks and each sees every earlier
//! one (assumed pods). Writes go to a bounded executor; binding outcomes come back to the
//! loop, which forgets an assumption whose binding failed and retries the pod after backoff.

pub mod affinity;
pub mod api;
pub mod cache;
pub mod cycle;
pub mod decision_loop;
pub mod filters;
pub mod fit_error;
pub mod podinfo;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod selectors;
pub mod spread;
pub mod watches;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use tokio::sync::{mpsc, oneshot};

use crate::events::Recorder;
use crate::manager::informer::{trim_object, trim_pod};
use watches::{watch, Input};

/// Watch events that may wait for the loop (watches pause when it is full). Enough to keep
/// the loop busy; more only holds decoded objects that the API server would otherwise keep as
/// compact revision rows.
const INPUT_QUEUE: usize = 1024;
/// Writes that may wait for the executor (the loop pauses when it is full).
const ACTION_QUEUE: usize = 4096;

/// Runs the scheduler while this instance leads; see [`crate::leader`]. Restarts its loop
/// (with fresh watches) should the loop's thread ever end.
pub async fn run(client: kube::Client) {
    loop {
        run_once(client.clone()).await;
        tracing::error!("the scheduler's loop ended; restarting it");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run_once(client: kube::Client) {
    let recorder = Recorder::start(client.clone(), decision_loop::SCHEDULER_NAME, None);
    let (input_tx, input_rx) = mpsc::channel::<Input>(INPUT_QUEUE);
    let (action_tx, action_rx) = mpsc::channel(ACTION_QUEUE);
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (ended_tx, ended_rx) = oneshot::channel::<()>();
    let rt = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            decision_loop::DecisionLoop::new(action_tx).run(rt, input_rx, done_rx);
            let _ = ended_tx.send(());
        });
    if let Err(e) = spawned {
        tracing::error!("the scheduler's thread did not start: {e}");
        return;
    }
    let work = async {
        tokio::join!(
            watch(
                Api::<Node>::all(client.clone()),
                input_tx.clone(),
                trim_object,
                |c| Input::Node(Box::new(c))
            ),
            watch(
                Api::<Pod>::all(client.clone()),
                input_tx.clone(),
                trim_pod,
                |c| Input::Pod(Box::new(c))
            ),
            watch(
                Api::<Namespace>::all(client.clone()),
                input_tx.clone(),
                trim_object,
                |c| Input::Namespace(Box::new(c))
            ),
            watch(
                Api::<PriorityClass>::all(client.clone()),
                input_tx.clone(),
                trim_object,
                |c| Input::PriorityClass(Box::new(c))
            ),
            watch(
                Api::<PodDisruptionBudget>::all(client.clone()),
                input_tx,
                trim_object,
                |c| Input::Budget(Box::new(c))
            ),
            api::execute(client.clone(), recorder, action_rx, done_tx),
        )
    };
    tokio::select! {
        _ = work => {}
        _ = ended_rx => {}
    }
}
