//! Controller-manager failover: three `skiff controllers` processes share one control plane;
//! one of each loop acts at a time. Killing the active controller manager (kill -9) hands its
//! Lease to another process, which carries on without creating duplicate pods.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::*;
use common::control_plane::Init;

const LEASE: &str = "kube-controller-manager";

/// A `skiff controllers` process, killed on drop.
struct Controllers {
    child: Child,
    log: PathBuf,
}

impl Controllers {
    fn start(init: &Init, n: usize) -> Controllers {
        let log = init.dir.path().join(format!("controllers-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(init.kubeconfig())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn skiff controllers");
        Controllers { child, log }
    }

    fn leads(&self, lease: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("became leader") && l.contains(lease))
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pods(init: &Init) -> usize {
    init.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .lines()
        .count()
}

#[test]
fn a_new_controller_manager_takes_over_without_duplicate_pods() {
    let name = "a_new_controller_manager_takes_over_without_duplicate_pods";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start_with(name, &["--no-controllers"]);
    let mut members: Vec<Controllers> = (0..3).map(|n| Controllers::start(&init, n)).collect();
    let leader = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        members
            .iter()
            .position(|m| m.leads(LEASE))
            .ok_or_else(|| "no leader yet".to_string())
    })
    .expect("no controller manager took the lease");

    init.ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.invalid/web:1",
        "--replicas=5",
    ]);
    assert!(
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || pods(&init) == 5
        ),
        "the leader did not create 5 pods"
    );

    // kill -9: no chance to hand the lease over; another member waits out the lease (15 s).
    let killed = Instant::now();
    let _ = members[leader].child.kill();
    let _ = members[leader].child.wait();
    let successor = wait_for(Duration::from_secs(40), Duration::from_millis(100), || {
        members
            .iter()
            .enumerate()
            .position(|(i, m)| i != leader && m.leads(LEASE))
            .ok_or_else(|| "no successor yet".to_string())
    })
    .expect("no member took over the controller manager's lease");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(30), "takeover took {took:?}");
    let holder = init.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        LEASE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!holder.is_empty(), "the lease names no holder");

    init.ok(&["scale", "deployment", "web", "--replicas=8"]);
    assert!(
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || pods(&init) == 8
        ),
        "the new leader did not scale to 8 pods:\n{}",
        std::fs::read_to_string(&members[successor].log).unwrap_or_default()
    );
    // No duplicates: for a few seconds after, still 8 pods and one ReplicaSet.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        assert_eq!(pods(&init), 8, "pods beyond the 8 replicas appeared");
    }
    let sets = init.ok(&["get", "replicasets", "-o", "name"]);
    assert_eq!(sets.lines().count(), 1, "{sets}");
    members.clear();
}
