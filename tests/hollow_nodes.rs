//! Hollow nodes (`skiff sim`) against `skiff init`, as kubectl sees them: they register and
//! turn Ready, pods bound to them run at once and are finally deleted by their hollow kubelet,
//! and a node that stops heartbeating is found out by the node lifecycle controller (Ready
//! Unknown 40–45 s after its last Lease renewal, the unreachable taint), its pods evicted after their
//! tolerationSeconds and a ReplicaSet's replaced on the other nodes; heartbeating again, it
//! loses the taint and its evicted pods go.
//!
//! `skiff init` runs here as the current user: control plane only, no real node agent.

mod common;

use common::cluster::*;
use common::control_plane::Init;
use common::sim::Sim;
use serde_json::Value;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(250);

fn json(init: &Init, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = init.kubectl(&all);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn items(init: &Init, args: &[&str]) -> Vec<Value> {
    json(init, args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Seconds since the epoch of an RFC 3339 timestamp (0 when absent or malformed).
fn timestamp(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn node_ready(node: &Value) -> Option<String> {
    condition(node, "Ready").and_then(|c| c["status"].as_str().map(str::to_string))
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

fn wait_ready_nodes(init: &Init, sim: &Sim, prefix: &str, n: usize) {
    let ok = wait_until(Duration::from_secs(60), POLL, || {
        items(init, &["get", "nodes"])
            .iter()
            .filter(|node| {
                node["metadata"]["name"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(prefix))
                    && node_ready(node).as_deref() == Some("True")
            })
            .count()
            == n
    });
    assert!(
        ok,
        "{n} hollow nodes Ready:\n{}\nsim log:\n{}",
        stdout_str(&init.kubectl(&["get", "nodes"])),
        sim.log()
    );
}

/// As root `skiff init` runs a real node agent too; cordoned, the scheduler leaves it out, so
/// every scheduled pod lands on a hollow node.
fn cordon_real_node(init: &Init) {
    if !is_root() {
        return;
    }
    let ok = wait_until(Duration::from_secs(30), POLL, || {
        init.kubectl(&["cordon", &init.node]).status.success()
    });
    assert!(ok, "cordon {}:\n{}", init.node, init.log());
}

fn apply(init: &Init, yaml: &str) {
    check_ok(
        "kubectl apply",
        &init.kubectl_in(&["apply", "-f", "-"], Some(yaml.as_bytes())),
    );
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node["spec"]["taints"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["key"] == key && t["effect"] == effect))
}

#[test]
fn hollow_nodes_register_and_run_pods() {
    let init = Init::start("hollow-run");
    let prefix = "hollow-run-";
    let sim = Sim::start(&init, prefix, 3, 20);
    wait_ready_nodes(&init, &sim, prefix, 3);
    cordon_real_node(&init);

    // What kubectl shows of one node: the configured size, the agent's labels, a Lease.
    let node = json(&init, &["get", "node", &format!("{prefix}1")]);
    assert_eq!(node["status"]["capacity"]["cpu"], "2");
    assert_eq!(node["status"]["capacity"]["memory"], "8Gi");
    assert_eq!(node["status"]["capacity"]["pods"], "20");
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/hostname"],
        format!("{prefix}1")
    );
    let lease = json(
        &init,
        &[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            &format!("{prefix}1"),
        ],
    );
    assert_eq!(lease["spec"]["holderIdentity"], format!("{prefix}1"));
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");

    // A pod bound to a hollow node runs at once; its status is the kubelet's.
    apply(
        &init,
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: bound}}
spec:
  nodeName: {prefix}0
  initContainers: [{{name: setup, image: busybox}}]
  containers: [{{name: app, image: nginx}}, {{name: side, image: redis}}]
"#
        ),
    );
    let ok = wait_until(Duration::from_secs(30), POLL, || {
        running_and_ready(&json(&init, &["get", "pod", "bound"]))
    });
    assert!(ok, "bound pod Running:\n{}", sim.log());
    let pod = json(&init, &["get", "pod", "bound"]);
    assert_eq!(pod["status"]["hostIP"], "10.64.0.1");
    assert_eq!(
        pod["status"]["containerStatuses"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    // The API server added the default 300 s tolerations (DefaultTolerationSeconds).
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        assert!(
            tolerations
                .iter()
                .any(|t| t["key"] == key && t["tolerationSeconds"] == 300),
            "{key} toleration in {tolerations:?}"
        );
    }

    // Graceful deletion: the hollow kubelet removes the object with grace 0 at once.
    let started = Instant::now();
    init.ok(&["delete", "pod", "bound", "--wait=false"]);
    let gone = wait_until(Duration::from_secs(20), POLL, || {
        !init.kubectl(&["get", "pod", "bound"]).status.success()
    });
    assert!(gone, "deleted pod removed by the hollow kubelet");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A Deployment's pods are scheduled onto hollow nodes and run.
    apply(
        &init,
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx, resources: {requests: {cpu: 100m}}}]
"#,
    );
    let ok = wait_until(Duration::from_secs(60), POLL, || {
        let pods = items(&init, &["get", "pods", "-l", "app=web"]);
        pods.len() == 6
            && pods.iter().all(|p| {
                running_and_ready(p)
                    && p["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(prefix))
            })
    });
    assert!(
        ok,
        "deployment pods Running on hollow nodes:\n{}",
        stdout_str(&init.kubectl(&["get", "pods", "-o", "wide"]))
    );
    let ok = wait_until(Duration::from_secs(30), POLL, || {
        json(&init, &["get", "deployment", "web"])["status"]["readyReplicas"] == 6
    });
    assert!(ok, "deployment ready");
}

#[test]
fn a_silent_node_is_tainted_and_its_pods_evicted() {
    let init = Init::start("hollow-death");
    let prefix = "hollow-death-";
    let sim = Sim::start(&init, prefix, 3, 20);
    wait_ready_nodes(&init, &sim, prefix, 3);
    cordon_real_node(&init);
    let victim = format!("{prefix}0");
    let tolerations = |indent: &str| {
        [
            "tolerations:",
            "- {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}",
            "- {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}",
        ]
        .iter()
        .map(|l| format!("\n{indent}{l}"))
        .collect::<String>()
    };
    let (in_template, in_pod) = (tolerations("      "), tolerations("  "));
    // A ReplicaSet's pods, spread by the scheduler, and one pod pinned to the victim.
    apply(
        &init,
        &format!(
            r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: rs}}
spec:
  replicas: 6
  selector: {{matchLabels: {{app: rs}}}}
  template:
    metadata: {{labels: {{app: rs}}}}
    spec:
      containers: [{{name: app, image: nginx}}]{in_template}
---
apiVersion: v1
kind: Pod
metadata: {{name: pinned}}
spec:
  nodeName: {victim}
  containers: [{{name: app, image: nginx}}]{in_pod}
"#
        ),
    );
    let ok = wait_until(Duration::from_secs(60), POLL, || {
        let pods = items(&init, &["get", "pods"]);
        pods.len() == 7 && pods.iter().all(running_and_ready)
    });
    assert!(
        ok,
        "pods Running:\n{}",
        stdout_str(&init.kubectl(&["get", "pods", "-o", "wide"]))
    );
    let on_victim = |init: &Init| -> Vec<String> {
        items(
            init,
            &[
                "get",
                "pods",
                "--field-selector",
                &format!("spec.nodeName={victim}"),
            ],
        )
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
    };
    let doomed = on_victim(&init);
    assert!(doomed.contains(&"pinned".to_string()));

    // The node stops heartbeating. It turns Unknown once its Lease is 40 s stale (the grace
    // period) plus at most one 5 s monitor period: measured from the last renewal, as the
    // Lease's renewTime and the condition's transition time (both server-side) tell it.
    sim.stop(&victim);
    let stopped = Instant::now();
    let unknown = wait_until(Duration::from_secs(70), POLL, || {
        node_ready(&json(&init, &["get", "node", &victim])).as_deref() == Some("Unknown")
    });
    assert!(unknown, "node Unknown:\n{}", init.log());
    let took = stopped.elapsed();
    let lease = json(&init, &["get", "lease", "-n", "kube-node-lease", &victim]);
    let renewed = timestamp(&lease["spec"]["renewTime"]);
    let node = json(&init, &["get", "node", &victim]);
    let marked = condition(&node, "Ready").map_or(0.0, |c| timestamp(&c["lastTransitionTime"]));
    let stale = marked - renewed;
    eprintln!("NotReady {stale:.1} s after the last Lease renewal ({took:?} after the stop)");
    // Transition times have whole seconds, so allow one second below the grace period.
    assert!(
        (39.0..=50.0).contains(&stale),
        "Unknown {stale:.1} s after the last renewal ({took:?} after the stop)"
    );
    let ready = condition(&node, "Ready").cloned().unwrap_or_default();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let tainted = wait_until(Duration::from_secs(15), POLL, || {
        let n = json(&init, &["get", "node", &victim]);
        has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
            && has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule")
    });
    assert!(tainted, "unreachable taints:\n{}", init.log());
    let tainted_at = Instant::now();

    // Its pods are evicted after their 5 s tolerations; the ReplicaSet's are replaced on the
    // other nodes.
    let evicted = wait_until(Duration::from_secs(30), POLL, || {
        on_victim(&init).is_empty()
    });
    assert!(evicted, "pods evicted: still {:?}", on_victim(&init));
    assert!(
        tainted_at.elapsed() >= Duration::from_secs(3),
        "eviction waited for tolerationSeconds"
    );
    let replaced = wait_until(Duration::from_secs(60), POLL, || {
        let pods = items(&init, &["get", "pods", "-l", "app=rs"]);
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        live.len() == 6
            && live
                .iter()
                .all(|p| running_and_ready(p) && p["spec"]["nodeName"] != victim.as_str())
    });
    assert!(
        replaced,
        "replacements running elsewhere:\n{}",
        stdout_str(&init.kubectl(&["get", "pods", "-o", "wide"]))
    );
    let events = stdout_str(&init.kubectl(&["get", "events", "-A"]));
    assert!(events.contains("NodeNotReady"), "events:\n{events}");
    assert!(
        events.contains("TaintManagerEviction")
            && events.contains("Marking for deletion Pod default/pinned"),
        "events:\n{events}"
    );

    // Back: Ready again, taints gone, the evicted pods finally deleted by its kubelet.
    sim.resume_all();
    let back = wait_until(Duration::from_secs(40), POLL, || {
        let n = json(&init, &["get", "node", &victim]);
        node_ready(&n).as_deref() == Some("True")
            && !has_taint(&n, "node.kubernetes.io/unreachable", "NoExecute")
            && !has_taint(&n, "node.kubernetes.io/unreachable", "NoSchedule")
    });
    assert!(back, "node back:\n{}", sim.log());
    let cleaned = wait_until(Duration::from_secs(30), POLL, || {
        items(
            &init,
            &[
                "get",
                "pods",
                "--field-selector",
                &format!("spec.nodeName={victim}"),
            ],
        )
        .is_empty()
    });
    assert!(cleaned, "terminating pods removed once the node is back");
}
