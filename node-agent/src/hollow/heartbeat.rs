//! Registration, Lease renewals and status reports of every hollow node, through the real
//! agent's [`node_status`] functions. One task keeps a heap of due jobs (two per node: its
//! Lease and its status, each every 10 s, spread evenly over the period) and runs them with
//! bounded concurrency, so 5,000 nodes cost 5,000 small records, not 10,000 sleeping tasks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use super::{HollowNode, Nodes};
use crate::kubelet::node_status::{self, lease};

/// A node's two recurring jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    /// Register (first time), then report the status when due.
    Status,
    /// Renew the Lease.
    Lease,
}

/// How long after a failed write the job runs again.
const RETRY: Duration = Duration::from_secs(1);

/// When a node's first jobs run: node `i` of `n` at `i/n` of the period, so the writes of
/// all nodes spread evenly over it.
fn first_due(start: Instant, i: usize, n: usize, period: Duration) -> Instant {
    start + period.mul_f64(i as f64 / n.max(1) as f64)
}

/// The next run of a recurring job that was due at `due`: one period later, or now when the
/// loop has fallen that far behind.
fn next_due(due: Instant, period: Duration, now: Instant) -> Instant {
    (due + period).max(now)
}

/// Runs every node's heartbeat jobs, forever.
pub(crate) async fn run(client: kube::Client, nodes: Arc<Nodes>, writes: usize) {
    let n = nodes.list.len();
    let (tx, mut rx) = mpsc::channel::<(Instant, usize, Job)>(2 * n + 1);
    let slots = Arc::new(Semaphore::new(writes.max(1)));
    let mut heap = BinaryHeap::with_capacity(2 * n);
    let start = Instant::now();
    for i in 0..n {
        let due = first_due(start, i, n, node_status::UPDATE_INTERVAL);
        heap.push(Reverse((due, i, Job::Status)));
        heap.push(Reverse((
            first_due(start, i, n, lease::RENEW_INTERVAL) + RETRY,
            i,
            Job::Lease,
        )));
    }
    loop {
        let due = heap
            .peek()
            .map(|r| r.0 .0)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            Some(item) = rx.recv() => heap.push(Reverse(item)),
            _ = tokio::time::sleep_until(due) => {
                let Some(Reverse((due, i, job))) = heap.pop() else { continue };
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let (client, nodes, tx) = (client.clone(), nodes.clone(), tx.clone());
                tokio::spawn(async move {
                    let next = match nodes.list.get(i) {
                        Some(node) => {
                            let span = tracing::debug_span!("hollow_node", node = %node.id.name);
                            match job {
                                Job::Status => status_job(&client, &nodes, node, due).instrument(span).await,
                                Job::Lease => lease_job(&client, node, due).instrument(span).await,
                            }
                        }
                        None => return,
                    };
                    drop(permit);
                    let _ = tx.send((next, i, job)).await;
                });
            }
        }
    }
}

/// Registers the node the first time, then reports its status when it changed or the report
/// interval passed; reads the server's copy first only when the Node watch saw it differ.
async fn status_job(
    client: &kube::Client,
    nodes: &Nodes,
    node: &HollowNode,
    due: Instant,
) -> Instant {
    let period = node_status::UPDATE_INTERVAL;
    if !node.alive() {
        return next_due(due, period, Instant::now());
    }
    let api: Api<Node> = Api::all(client.clone());
    let (registered, recheck, reported, last_report) = {
        let st = node.state();
        (
            st.registered,
            st.recheck,
            st.reported.clone(),
            st.last_report,
        )
    };
    if !registered {
        return match node_status::register(&api, &node.id, &nodes.machine).await {
            Ok(created) => {
                let mut st = node.state();
                st.registered = true;
                st.recheck = created.is_none();
                st.last_report = created.as_ref().map(|_| std::time::Instant::now());
                st.reported = created;
                nodes.registered.fetch_add(1, Ordering::Relaxed);
                next_due(due, period, Instant::now())
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering the hollow node failed; retrying");
                Instant::now() + RETRY
            }
        };
    }
    let current = if recheck || reported.is_none() {
        match api.get(&node.id.name).await {
            Ok(n) => n.status.unwrap_or_default(),
            Err(e) => return failed(node, e),
        }
    } else {
        reported.unwrap_or_default()
    };
    let next = node_status::next_report(&node.id, &nodes.machine, &current, last_report);
    let reported = match next {
        Some(next) => match node_status::send_report(&api, &node.id.name, &next).await {
            Ok(()) => Some((
                node_status::overlay(&current, &next),
                std::time::Instant::now(),
            )),
            Err(e) => return failed(node, e),
        },
        None => None,
    };
    let mut st = node.state();
    st.recheck = false;
    match reported {
        Some((status, at)) => {
            st.reported = Some(status);
            st.last_report = Some(at);
        }
        None => st.reported = Some(current),
    }
    next_due(due, period, Instant::now())
}

/// A failed status job: a Node that is gone is registered again.
fn failed(node: &HollowNode, e: kube::Error) -> Instant {
    let mut st = node.state();
    if matches!(&e, kube::Error::Api(s) if s.code == 404) {
        tracing::warn!("the hollow Node is gone; registering it again");
        st.registered = false;
        st.reported = None;
        st.lease = None;
    } else {
        tracing::warn!(error = %e, "reporting the hollow node's status failed; retrying");
    }
    Instant::now() + RETRY
}

/// Renews the node's Lease once it is registered.
async fn lease_job(client: &kube::Client, node: &HollowNode, due: Instant) -> Instant {
    let period = lease::RENEW_INTERVAL;
    if !node.alive() {
        return next_due(due, period, Instant::now());
    }
    let latest: Option<Lease> = {
        let mut st = node.state();
        if !st.registered {
            return Instant::now() + RETRY;
        }
        st.lease.take()
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), lease::NAMESPACE);
    let api: Api<Node> = Api::all(client.clone());
    match lease::renew(&leases, &api, &node.id.name, latest).await {
        Ok(l) => {
            node.state().lease = Some(l);
            next_due(due, period, Instant::now())
        }
        Err(e) => {
            tracing::warn!(error = %e, "renewing the hollow node's Lease failed; retrying");
            Instant::now() + RETRY
        }
    }
}

/// Whether the server's copy of a live node's status says something its agent would undo:
/// Ready not True (the node lifecycle controller marks silent nodes Unknown).
fn needs_recheck(status: Option<&NodeStatus>) -> bool {
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    ready != Some("True")
}

/// Watches every Node and flags hollow nodes whose server-side status someone else changed,
/// so their next status job reads it and reports over it (as the real agent's GET would).
pub(crate) async fn watch_nodes(client: kube::Client, nodes: Arc<Nodes>) {
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default().page_size(500))
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let node = match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => n,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("watching nodes: {e}");
                continue;
            }
        };
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        let Some((_, hollow)) = nodes.get(name) else {
            continue;
        };
        if hollow.alive() && needs_recheck(node.status.as_ref()) {
            let mut st = hollow.state();
            if st.registered && !st.recheck {
                tracing::debug!(node = name, "the Node's conditions changed elsewhere");
                st.recheck = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeCondition;

    #[test]
    fn jobs_spread_over_the_period() {
        let start = Instant::now();
        let p = Duration::from_secs(10);
        assert_eq!(first_due(start, 0, 4, p), start);
        assert_eq!(first_due(start, 2, 4, p), start + Duration::from_secs(5));
        assert!(first_due(start, 3, 4, p) < start + p);
        assert_eq!(next_due(start, p, start), start + p);
        let late = start + Duration::from_secs(25);
        assert_eq!(next_due(start, p, late), late, "a late loop runs at once");
    }

    #[test]
    fn ready_not_true_is_rechecked() {
        let with = |s: &str| NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: s.into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(!needs_recheck(Some(&with("True"))));
        assert!(needs_recheck(Some(&with("Unknown"))));
        assert!(needs_recheck(Some(&with("False"))));
        assert!(needs_recheck(None));
    }
}
