//! Controller-manager failover on a three-member control plane: three `skiff init` members
//! (each a store member, API server, scheduler and controller manager) bootstrap one cluster;
//! one controller manager acts at a time. Killing the whole member whose controller manager is
//! active (kill -9) hands its Lease to another member, which carries on without creating
//! duplicate pods.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::control_plane::Init;

const LEASE: &str = "kube-controller-manager";

/// Whether `member`'s controller manager has said it leads.
fn leads(member: &Init) -> bool {
    member
        .log()
        .lines()
        .any(|l| l.contains("became leader") && l.contains(LEASE))
}

fn pods(member: &Init) -> usize {
    member
        .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .count()
}

#[test]
fn a_new_controller_manager_takes_over_without_duplicate_pods() {
    let name = "a_new_controller_manager_takes_over_without_duplicate_pods";
    if !require_tool(name, "kubectl") {
        return;
    }
    let mut members = Init::start_members("cm-failover", 3);
    // Every member's API server serves the one cluster, through its own serving certificate.
    for m in &members {
        let ok = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
            m.kubectl(&["get", "namespace", "default"]).status.success()
        });
        assert!(
            ok,
            "member {} does not serve the cluster:\n{}",
            m.api,
            m.log()
        );
    }
    let leader = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        members
            .iter()
            .position(leads)
            .ok_or_else(|| "no leader yet".to_string())
    })
    .expect("no controller manager took the lease");
    let others: Vec<usize> = (0..members.len()).filter(|&i| i != leader).collect();
    let survivor = &members[others[0]];

    // The image is never pulled (nothing listens there): the test counts pods, not containers.
    survivor.ok(&[
        "create",
        "deployment",
        "web",
        "--image=127.0.0.1:9/web:1",
        "--replicas=5",
    ]);
    assert!(
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || pods(survivor) == 5
        ),
        "the leader did not create 5 pods"
    );

    // kill -9 of the whole member: its store member, API server and controllers go at once,
    // with no chance to hand the lease over; another member waits out the lease (15 s).
    let killed = Instant::now();
    members[leader].kill();
    let members = &members;
    let successor = wait_for(Duration::from_secs(40), Duration::from_millis(100), || {
        others
            .iter()
            .copied()
            .find(|&i| leads(&members[i]))
            .ok_or_else(|| "no successor yet".to_string())
    })
    .expect("no member took over the controller manager's lease");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");
    let survivor = &members[others[0]];
    let holder = survivor.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        LEASE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!holder.is_empty(), "the lease names no holder");

    survivor.ok(&["scale", "deployment", "web", "--replicas=8"]);
    assert!(
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || pods(survivor) == 8
        ),
        "the new leader did not scale to 8 pods:\n{}",
        members[successor].log()
    );
    // No duplicates: for a few seconds after, still 8 pods and one ReplicaSet.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        assert_eq!(pods(survivor), 8, "pods beyond the 8 replicas appeared");
    }
    let sets = survivor.ok(&["get", "replicasets", "-o", "name"]);
    assert_eq!(sets.lines().count(), 1, "{sets}");
}
