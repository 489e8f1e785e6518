//! The scheduler inside `skiff init`, on hollow nodes (`skiff sim`): each filter and each
//! score on its own, then preemption, as a user sees them through kubectl (the node a pod
//! is bound to, or its PodScheduled=False condition with upstream's message).
//!
//! Four hollow nodes, `sched-0` … `sched-3`, each with 2 CPUs, 8 GiB and room for 4 pods;
//! 0 and 1 in zone a, 2 and 3 in zone b. Any other node (the control plane's own, when the
//! test runs as root) is cordoned, so pods land only on the hollow ones. Pods "pinned" to a
//! node name it in `spec.nodeName`, as load the scheduler must account for. Each scenario
//! starts from no pods and leaves none.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::control_plane::Init;
use common::sim::Sim;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const PREFIX: &str = "sched-";
const NODES: usize = 4;
const ZONE: &str = "topology.kubernetes.io/zone";
const HOSTNAME: &str = "kubernetes.io/hostname";

fn node(i: usize) -> String {
    format!("{PREFIX}{i}")
}

fn get_json(init: &Init, args: &[&str]) -> Option<Value> {
    let out = init.kubectl(&[args, &["-o", "json"]].concat());
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn items(init: &Init, args: &[&str]) -> Vec<Value> {
    get_json(init, args)
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn create(init: &Init, object: &Value) {
    check_ok(
        &format!("create {}", object["metadata"]["name"]),
        &init.kubectl_in(&["create", "-f", "-"], Some(object.to_string().as_bytes())),
    );
}

/// A pod requesting `cpu` and `memory` (either may be empty), with no placement rules.
fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    let mut requests = json!({});
    if !cpu.is_empty() {
        requests["cpu"] = json!(cpu);
    }
    if !memory.is_empty() {
        requests["memory"] = json!(memory);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"test": "scheduler"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "registry.invalid/pause:3.10",
                            "resources": {"requests": requests}}],
        },
    })
}

/// `p` with `spec.nodeName` set: load the scheduler never places but must count.
fn pinned(mut p: Value, node: &str) -> Value {
    p["spec"]["nodeName"] = json!(node);
    p
}

fn with_labels(mut p: Value, labels: Value) -> Value {
    if let (Some(have), Some(add)) = (p["metadata"]["labels"].as_object_mut(), labels.as_object()) {
        have.extend(add.clone());
    }
    p
}

fn in_zone(mut p: Value, zone: &str) -> Value {
    p["spec"]["nodeSelector"] = json!({ZONE: zone});
    p
}

fn on_host(mut p: Value, host: &str) -> Value {
    p["spec"]["nodeSelector"] = json!({HOSTNAME: host});
    p
}

fn node_of(init: &Init, pod: &str) -> String {
    get_json(init, &["get", "pod", pod])
        .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Waits until `pod` is bound and returns its node.
fn bound(init: &Init, pod: &str) -> String {
    let ok = wait_until(T, POLL, || !node_of(init, pod).is_empty());
    assert!(
        ok,
        "{pod} was never bound: {:?}\n{}",
        scheduled_condition(init, pod),
        init.log()
    );
    // The binding sets PodScheduled=True in the same write as the node.
    let c = scheduled_condition(init, pod).unwrap_or_default();
    assert_eq!(
        c["status"], "True",
        "{pod} bound without PodScheduled=True: {c}"
    );
    node_of(init, pod)
}

fn scheduled_condition(init: &Init, pod: &str) -> Option<Value> {
    get_json(init, &["get", "pod", pod]).and_then(|p| {
        p["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .cloned()
    })
}

/// Waits until `pod` is reported unschedulable and returns the message, which must name
/// each of `reasons` (upstream's "<count> <reason>" entries).
fn unschedulable(init: &Init, pod: &str, reasons: &[&str]) -> String {
    let ok = wait_until(T, POLL, || {
        scheduled_condition(init, pod).is_some_and(|c| c["status"] == "False")
    });
    assert!(ok, "{pod} was not reported unschedulable:\n{}", init.log());
    let c = scheduled_condition(init, pod).unwrap_or_default();
    assert_eq!(c["reason"], "Unschedulable", "{c}");
    let message = c["message"].as_str().unwrap_or_default().to_string();
    let nodes = items(init, &["get", "nodes"]).len();
    assert!(
        message.starts_with(&format!("0/{nodes} nodes are available: ")),
        "{message}"
    );
    for r in reasons {
        assert!(message.contains(r), "{pod}: {r:?} not in {message:?}");
    }
    assert_eq!(node_of(init, pod), "", "{pod} is unschedulable yet bound");
    message
}

/// Messages of the events about `pod` with `reason`.
fn events(init: &Init, pod: &str, reason: &str) -> Vec<String> {
    items(init, &["get", "events", "-n", "default"])
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// Removes every test pod (and ReplicaSet) and waits until they are gone.
fn clean(init: &Init) {
    init.ok(&["delete", "replicasets", "--all", "--wait=false"]);
    init.ok(&[
        "delete",
        "pods",
        "--all",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    let ok = wait_until(T, POLL, || {
        items(init, &["get", "pods", "-l", "test=scheduler"]).is_empty()
    });
    assert!(ok, "test pods left over");
}

#[test]
fn scheduler_filters_scores_and_preemption_on_hollow_nodes() {
    let name = "scheduler_filters_scores_and_preemption_on_hollow_nodes";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start("scheduler");
    let sim = Sim::start(&init, PREFIX, NODES, 4);
    let ready = wait_until(T, POLL, || {
        items(&init, &["get", "nodes"])
            .iter()
            .filter(|n| {
                n["metadata"]["name"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(PREFIX))
                    && n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count()
            == NODES
    });
    assert!(ready, "hollow nodes Ready:\n{}", sim.log());
    for n in items(&init, &["get", "nodes"]) {
        let name = n["metadata"]["name"].as_str().unwrap_or_default();
        if !name.starts_with(PREFIX) {
            init.ok(&["cordon", name]);
        }
    }
    init.ok(&["label", "node", &node(0), &node(1), &format!("{ZONE}=a")]);
    init.ok(&["label", "node", &node(2), &node(3), &format!("{ZONE}=b")]);

    resources(&init);
    clean(&init);
    node_selector_and_affinity(&init);
    clean(&init);
    taints_and_tolerations(&init);
    clean(&init);
    host_ports(&init);
    clean(&init);
    unschedulable_nodes(&init);
    clean(&init);
    node_conditions(&init, &sim);
    clean(&init);
    pod_affinity(&init);
    clean(&init);
    topology_spread(&init);
    clean(&init);
    least_allocated(&init);
    clean(&init);
    balanced_allocation(&init);
    clean(&init);
    default_spreading(&init);
    clean(&init);
    image_locality(&init);
    clean(&init);
    preemption(&init);
}

/// CPU, memory and the pod count; the FailedScheduling event carries the message.
fn resources(init: &Init) {
    create(init, &pod("huge-cpu", "3", ""));
    let message = unschedulable(init, "huge-cpu", &["4 Insufficient cpu"]);
    let ok = wait_until(T, POLL, || {
        events(init, "huge-cpu", "FailedScheduling").contains(&message)
    });
    assert!(ok, "no FailedScheduling event with {message:?}");
    // Only pods/binding assigns a node; an ordinary update may not.
    let err = init.fails(&[
        "patch",
        "pod",
        "huge-cpu",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"nodeName":"{}"}}}}"#, node(0)),
    ]);
    assert!(
        err.contains("pod updates may not change fields other than"),
        "{err}"
    );
    create(init, &pod("huge-memory", "", "9Gi"));
    unschedulable(init, "huge-memory", &["4 Insufficient memory"]);

    // Three nodes 3/4 full of CPU: a 1-CPU pod fits only on the fourth.
    for i in 0..3 {
        create(
            init,
            &pinned(pod(&format!("cpu-{i}"), "1500m", ""), &node(i)),
        );
    }
    create(init, &pod("one-cpu", "1", ""));
    assert_eq!(bound(init, "one-cpu"), node(3));

    // A node holding 4 pods takes no fifth.
    for i in 1..4 {
        create(init, &pinned(pod(&format!("pod-{i}"), "", ""), &node(0)));
    }
    create(init, &on_host(pod("fifth", "", ""), &node(0)));
    unschedulable(
        init,
        "fifth",
        &[
            "1 Too many pods",
            "3 node(s) didn't match Pod's node affinity/selector",
        ],
    );
}

/// nodeSelector, required node affinity (filters) and preferred node affinity (a score).
fn node_selector_and_affinity(init: &Init) {
    create(init, &in_zone(pod("zone-b", "", ""), "b"));
    let n = bound(init, "zone-b");
    assert!(n == node(2) || n == node(3), "zone-b on {n}");
    create(init, &in_zone(pod("zone-c", "", ""), "c"));
    unschedulable(
        init,
        "zone-c",
        &["4 node(s) didn't match Pod's node affinity/selector"],
    );

    let mut required = pod("required", "", "");
    required["spec"]["affinity"] = json!({"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{
        "matchExpressions": [
            {"key": ZONE, "operator": "In", "values": ["a"]},
            {"key": HOSTNAME, "operator": "NotIn", "values": [node(0)]},
        ]}]}}});
    create(init, &required);
    assert_eq!(bound(init, "required"), node(1));

    let mut preferred = pod("preferred", "", "");
    preferred["spec"]["affinity"] = json!({"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {
            "matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": [node(2)]}]}}]}});
    create(init, &preferred);
    assert_eq!(bound(init, "preferred"), node(2));
}

/// NoSchedule and NoExecute taints filter unless tolerated; PreferNoSchedule scores.
fn taints_and_tolerations(init: &Init) {
    init.ok(&["taint", "node", &node(0), "dedicated=db:NoSchedule"]);
    init.ok(&["taint", "node", &node(1), "evict=now:NoExecute"]);
    init.ok(&["taint", "node", &node(2), "soft=yes:PreferNoSchedule"]);

    create(init, &on_host(pod("untolerated", "", ""), &node(0)));
    unschedulable(
        init,
        "untolerated",
        &["1 node(s) had untolerated taint {dedicated: db}"],
    );
    let mut tolerating = on_host(pod("tolerating", "", ""), &node(0));
    tolerating["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
    create(init, &tolerating);
    assert_eq!(bound(init, "tolerating"), node(0));

    create(init, &on_host(pod("no-execute", "", ""), &node(1)));
    unschedulable(
        init,
        "no-execute",
        &["1 node(s) had untolerated taint {evict: now}"],
    );

    create(init, &in_zone(pod("prefers-untainted", "", ""), "b"));
    assert_eq!(bound(init, "prefers-untainted"), node(3));

    init.ok(&["taint", "node", &node(0), "dedicated-"]);
    init.ok(&["taint", "node", &node(1), "evict-"]);
    init.ok(&["taint", "node", &node(2), "soft-"]);
}

/// A host port taken on a node keeps another pod wanting it off that node.
fn host_ports(init: &Init) {
    let with_port = |name: &str| {
        let mut p = pod(name, "", "");
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p
    };
    for i in 0..3 {
        create(init, &pinned(with_port(&format!("port-{i}")), &node(i)));
    }
    create(init, &with_port("port-free"));
    assert_eq!(bound(init, "port-free"), node(3));
    create(init, &with_port("port-none"));
    unschedulable(
        init,
        "port-none",
        &["4 node(s) didn't have free ports for the requested pod ports"],
    );
}

/// A cordoned node takes no pods; uncordoned, the waiting pod is retried and bound.
fn unschedulable_nodes(init: &Init) {
    init.ok(&["cordon", &node(3)]);
    create(init, &on_host(pod("wants-3", "", ""), &node(3)));
    // Other nodes than the hollow ones are cordoned too.
    let cordoned = items(init, &["get", "nodes"]).len() - NODES + 1;
    unschedulable(
        init,
        "wants-3",
        &[&format!("{cordoned} node(s) were unschedulable")],
    );
    init.ok(&["uncordon", &node(3)]);
    assert_eq!(bound(init, "wants-3"), node(3));
}

/// A node whose Ready condition is False takes no pods (upstream's not-ready taint); Ready
/// again, the waiting pod is retried and bound.
fn node_conditions(init: &Init, sim: &Sim) {
    let n = node(3);
    // Silence the hollow node first, so it does not report Ready over the test's False.
    sim.stop(&n);
    let silent = wait_until(T, POLL, || {
        sim.log()
            .lines()
            .any(|l| l.contains("stops heartbeating") && l.contains(&n))
    });
    assert!(silent, "the hollow node kept heartbeating:\n{}", sim.log());
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "KubeletNotReady",
        "message": "container runtime is down"}]}});
    let (code, body) = init.request(
        "PATCH",
        &format!("/api/v1/nodes/{n}/status"),
        "application/strategic-merge-patch+json",
        status.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "marking {n} not ready: {body}");
    create(init, &on_host(pod("wants-ready", "", ""), &n));
    unschedulable(
        init,
        "wants-ready",
        &["1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }"],
    );
    sim.resume_all();
    assert_eq!(bound(init, "wants-ready"), n);
}

/// Required pod affinity and anti-affinity filter; preferred affinity scores.
fn pod_affinity(init: &Init) {
    create(
        init,
        &pinned(
            with_labels(pod("db", "", ""), json!({"app": "db"})),
            &node(2),
        ),
    );
    let term = |key: &str, app: &str| json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
    let mut near = pod("near-db", "", "");
    near["spec"]["affinity"] = json!({"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term(HOSTNAME, "db")]}});
    create(init, &near);
    assert_eq!(bound(init, "near-db"), node(2));

    let mut away = pod("away-from-db", "", "");
    away["spec"]["affinity"] = json!({"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term(ZONE, "db")]}});
    create(init, &away);
    let n = bound(init, "away-from-db");
    assert!(n == node(0) || n == node(1), "away-from-db on {n}");

    let mut lonely = pod("near-nothing", "", "");
    lonely["spec"]["affinity"] = json!({"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term(HOSTNAME, "nothing")]}});
    create(init, &lonely);
    unschedulable(
        init,
        "near-nothing",
        &["4 node(s) didn't match pod affinity rules"],
    );

    let mut likes = pod("likes-db", "", "");
    likes["spec"]["affinity"] = json!({"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term(HOSTNAME, "db")}]}});
    create(init, &likes);
    assert_eq!(bound(init, "likes-db"), node(2));
}

/// A DoNotSchedule constraint: with two matching pods in zone a, the next goes to zone b,
/// and a pod held to zone a cannot go anywhere once zone b's pods count too
/// (`nodeAffinityPolicy: Ignore`).
fn topology_spread(init: &Init) {
    let spread = |name: &str| {
        let mut p = with_labels(pod(name, "", ""), json!({"app": "spread"}));
        p["spec"]["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "spread"}}}]);
        p
    };
    for i in 0..2 {
        create(
            init,
            &pinned(
                with_labels(
                    pod(&format!("spread-{i}"), "", ""),
                    json!({"app": "spread"}),
                ),
                &node(i),
            ),
        );
    }
    create(init, &spread("spread-new"));
    let n = bound(init, "spread-new");
    assert!(n == node(2) || n == node(3), "spread-new on {n}");
    let mut held = in_zone(spread("spread-held"), "a");
    held["spec"]["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!("Ignore");
    create(init, &held);
    unschedulable(
        init,
        "spread-held",
        &[
            "2 node(s) didn't match pod topology spread constraints",
            "2 node(s) didn't match Pod's node affinity/selector",
        ],
    );
}

/// With equal balance, the emptier node wins.
fn least_allocated(init: &Init) {
    create(init, &pinned(pod("load", "1", "4Gi"), &node(0)));
    create(init, &in_zone(pod("light", "100m", "256Mi"), "a"));
    assert_eq!(bound(init, "light"), node(1));
}

/// Both nodes end half used on average; the one whose CPU and memory end equally used wins.
fn balanced_allocation(init: &Init) {
    // node 0: 1 CPU and almost no memory in use; node 1: ½ CPU and 2 GiB.
    create(init, &pinned(pod("cpu-heavy", "1", "64Mi"), &node(0)));
    create(init, &pinned(pod("even", "500m", "2Gi"), &node(1)));
    // After ½ CPU and 2 GiB more: node 0 at 75 % CPU and 26 % memory, node 1 at 50 % of
    // both; least-allocated scores them within a point of each other.
    create(init, &in_zone(pod("balancer", "500m", "2Gi"), "a"));
    assert_eq!(bound(init, "balancer"), node(1));
}

/// A ReplicaSet's pods spread over nodes by default, even onto a busier node.
fn default_spreading(init: &Init) {
    let replica = |name: &str| with_labels(pod(name, "10m", "16Mi"), json!({"app": "spread"}));
    // Two pods the ReplicaSet will adopt, on node 0; other load on node 1.
    create(init, &pinned(replica("adopted-0"), &node(0)));
    create(init, &pinned(replica("adopted-1"), &node(0)));
    create(init, &pinned(pod("other-load", "400m", "16Mi"), &node(1)));
    let template = in_zone(replica("unused"), "a");
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "spread", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "spread"}},
            "template": {"metadata": {"labels": template["metadata"]["labels"]},
                         "spec": template["spec"]},
        },
    });
    create(init, &rs);
    let created = || -> Vec<String> {
        items(init, &["get", "pods", "-l", "app=spread"])
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .filter(|n| n.starts_with("spread-"))
            .map(str::to_string)
            .collect()
    };
    let ok = wait_until(T, POLL, || created().len() == 1);
    assert!(ok, "the ReplicaSet made {:?}, not one pod", created());
    let new = created().remove(0);
    assert_eq!(bound(init, &new), node(1), "the third replica");
    let adopted = get_json(init, &["get", "pod", "adopted-0"]).unwrap_or_default();
    assert_eq!(
        adopted["metadata"]["ownerReferences"][0]["name"], "spread",
        "adopted"
    );
}

/// A node that has the pod's (large) image wins over an equal one without it.
fn image_locality(init: &Init) {
    let image = "registry.invalid/big:1";
    let status = json!({"status": {"images": [{"names": [image], "sizeBytes": 900_000_000}]}});
    let (code, body) = init.request(
        "PATCH",
        &format!("/api/v1/nodes/{}/status", node(3)),
        "application/strategic-merge-patch+json",
        status.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "reporting an image on {}: {body}", node(3));
    let mut p = in_zone(pod("big-image", "", ""), "b");
    p["spec"]["containers"][0]["image"] = json!(image);
    create(init, &p);
    assert_eq!(bound(init, "big-image"), node(3));
}

/// A higher-priority pod evicts a lower one that keeps it off the only node it may use.
fn preemption(init: &Init) {
    let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": "sched-test-high"}, "value": 1000});
    create(init, &class);
    create(init, &pinned(pod("filler", "1500m", ""), &node(0)));
    let mut vip = on_host(pod("vip", "1", ""), &node(0));
    vip["spec"]["priorityClassName"] = json!("sched-test-high");
    create(init, &vip);
    let ok = wait_until(T, POLL, || {
        get_json(init, &["get", "pod", "filler"]).is_none()
    });
    assert!(ok, "the filler was not preempted:\n{}", init.log());
    assert_eq!(bound(init, "vip"), node(0));
    let ok = wait_until(T, POLL, || !events(init, "filler", "Preempted").is_empty());
    assert!(ok, "no Preempted event for the filler");
}
