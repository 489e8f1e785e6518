//! End-to-end: the scheduler inside `skiff init`. Nodes are created by hand (Ready, with
//! allocatable set through `nodes/status`), so no node agent is needed; pods without a
//! nodeName get bound by resources and selectors, an unschedulable pod gets upstream's
//! PodScheduled=False condition and FailedScheduling event, and a higher-priority pod
//! preempts a lower one. Test pods select the hand-made nodes by label, so the control
//! plane's own Node (when running as root) does not take them.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::control_plane::Init;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const LABEL: &str = "skiff-test/scheduler";

/// Posts the node's status with a fresh Ready heartbeat, as a kubelet would.
fn post_status(init: &Init, name: &str) {
    let resources = json!({"cpu": "2", "memory": "4Gi", "pods": "10", "ephemeral-storage": "10Gi"});
    let now = chrono_now();
    let status = json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "ready for the scheduler test",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    let (code, body) = init.request(
        "PATCH",
        &format!("/api/v1/nodes/{name}/status"),
        "application/strategic-merge-patch+json",
        status.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "patching {name}'s status: {body}");
}

/// RFC 3339 UTC time, seconds precision, from `date`.
fn chrono_now() -> String {
    let out = run_with_timeout(
        std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        None,
        Duration::from_secs(5),
    );
    stdout_str(&out).trim().to_string()
}

/// A Ready node with 2 CPUs, 4 GiB and room for 10 pods, in `zone`.
fn create_node(init: &Init, name: &str, zone: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {LABEL: "yes", "zone": zone, "kubernetes.io/hostname": name}},
    });
    check_ok(
        "create node",
        &init.kubectl_in(&["create", "-f", "-"], Some(node.to_string().as_bytes())),
    );
    post_status(init, name);
}

/// A pod asking for `cpu`, on the test's nodes (`zone` narrows it further).
fn create_pod(init: &Init, name: &str, cpu: &str, zone: Option<&str>, class: Option<&str>) {
    let mut selector = json!({LABEL: "yes"});
    if let Some(z) = zone {
        selector["zone"] = json!(z);
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeSelector": selector,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "registry.invalid/pause:3.10",
                            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}],
        },
    });
    if let Some(c) = class {
        pod["spec"]["priorityClassName"] = json!(c);
    }
    check_ok(
        &format!("create pod {name}"),
        &init.kubectl_in(&["create", "-f", "-"], Some(pod.to_string().as_bytes())),
    );
}

fn get_json(init: &Init, args: &[&str]) -> Option<Value> {
    let out = init.kubectl(&[args, &["-o", "json"]].concat());
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn node_of(init: &Init, pod: &str) -> String {
    get_json(init, &["get", "pod", pod])
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn wait_bound(init: &Init, pod: &str, node: &str) {
    let ok = wait_until(T, POLL, || node_of(init, pod) == node);
    assert!(
        ok,
        "{pod} was not bound to {node} (nodeName {:?}):\n{}",
        node_of(init, pod),
        init.log()
    );
}

/// Messages of the events about `pod` with `reason`.
fn events(init: &Init, pod: &str, reason: &str) -> Vec<String> {
    get_json(init, &["get", "events", "-n", "default"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn scheduler_binds_reports_unschedulable_pods_and_preempts() {
    if !require_tool(
        "scheduler_binds_reports_unschedulable_pods_and_preempts",
        "kubectl",
    ) {
        return;
    }
    let init = Init::start("scheduler");
    create_node(&init, "sched-a", "a");
    create_node(&init, "sched-b", "b");
    // Heartbeats, so the node lifecycle controller keeps the hand-made nodes Ready.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = std::time::Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if last.elapsed() >= Duration::from_secs(10) {
                    post_status(&init, "sched-a");
                    post_status(&init, "sched-b");
                    last = std::time::Instant::now();
                }
                std::thread::sleep(POLL);
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&init)));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
}

/// The scenario proper, while the nodes heartbeat.
fn scenario(init: &Init) {
    let nodes = get_json(init, &["get", "nodes"])
        .and_then(|l| l["items"].as_array().map(Vec::len))
        .unwrap_or(0);

    // Bound by selector, with a Scheduled event.
    create_pod(init, "web", "500m", Some("b"), None);
    wait_bound(init, "web", "sched-b");
    let ok = wait_until(T, POLL, || !events(init, "web", "Scheduled").is_empty());
    assert!(ok, "no Scheduled event for web");
    assert_eq!(
        events(init, "web", "Scheduled"),
        vec!["Successfully assigned default/web to sched-b"]
    );

    // Bound by resources: a filler on zone a, then a pod too big for any node.
    create_pod(init, "filler", "1500m", Some("a"), None);
    wait_bound(init, "filler", "sched-a");
    create_pod(init, "huge", "3", None, None);
    let condition = || {
        get_json(init, &["get", "pod", "huge"]).and_then(|p| {
            p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled")
                .cloned()
        })
    };
    let ok = wait_until(T, POLL, || condition().is_some());
    assert!(ok, "huge got no PodScheduled condition:\n{}", init.log());
    let c = condition().unwrap_or_default();
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "Unschedulable");
    let message = c["message"].as_str().unwrap_or_default().to_string();
    if nodes == 2 {
        assert_eq!(
            message,
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
             2 No preemption victims found for incoming pod.."
        );
    } else {
        // The control plane's own node is in the count too, for another reason.
        let head = format!("0/{nodes} nodes are available: ");
        assert!(message.starts_with(&head), "{message}");
        assert!(message.contains("2 Insufficient cpu"), "{message}");
        assert!(
            message.ends_with("2 No preemption victims found for incoming pod.."),
            "{message}"
        );
    }
    assert_eq!(node_of(init, "huge"), "");
    let ok = wait_until(T, POLL, || {
        events(init, "huge", "FailedScheduling").contains(&message)
    });
    assert!(
        ok,
        "no FailedScheduling event with {message:?}: {:?}",
        events(init, "huge", "FailedScheduling")
    );

    // A higher-priority pod preempts the filler and takes its place.
    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": "sched-test-high"}, "value": 1000});
    check_ok(
        "create priority class",
        &init.kubectl_in(&["create", "-f", "-"], Some(class.to_string().as_bytes())),
    );
    create_pod(init, "vip", "1", Some("a"), Some("sched-test-high"));
    let ok = wait_until(T, POLL, || {
        get_json(init, &["get", "pod", "filler"]).is_none()
    });
    assert!(ok, "the filler was not preempted:\n{}", init.log());
    wait_bound(init, "vip", "sched-a");
    let ok = wait_until(T, POLL, || !events(init, "filler", "Preempted").is_empty());
    assert!(ok, "no Preempted event for the filler");
    assert_eq!(node_of(init, "huge"), "", "huge still fits nowhere");
}
