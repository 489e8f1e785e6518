//! The metrics API (`metrics.k8s.io/v1beta1`) through `skiff init`, its numbers from the node
//! agents' `Stats` (here a stand-in reporting fixed usage): the real `kubectl top pod` and
//! `kubectl top node`, and the raw JSON the Python client reads.

mod common;

use common::agent_standin::{StandInAgent, NODE_CPU_NANOCORES, NODE_MEMORY_BYTES};
use common::cluster::*;
use common::control_plane::{admin_curl, Init};
use std::net::Ipv4Addr;
use std::time::Duration;

const MI: u64 = 1 << 20;

/// A pod bound to `node`, with `labels` and one container per name.
fn pod(namespace: &str, name: &str, node: &str, labels: &str, containers: &[&str]) -> String {
    let containers: Vec<String> = containers
        .iter()
        .map(|c| format!(r#"{{"name":"{c}","image":"registry.local/busybox:1.36"}}"#))
        .collect();
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{namespace}","labels":{{{labels}}}}},
        "spec":{{"nodeName":"{node}","containers":[{}]}}}}"#,
        containers.join(",")
    )
}

fn create(init: &Init, json: &str) {
    check_ok(
        "create",
        &init.kubectl_in(&["create", "-f", "-"], Some(json.as_bytes())),
    );
}

/// kubectl's table output as rows of cells.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// A cluster with node-1 served by the stand-in (2 CPUs and 8 GiB allocatable) and node-2
/// whose agent is unreachable, and pods on both:
/// - default/web on node-1: app 250m / 64Mi, sidecar 5.123456m / 10.5Mi;
/// - other/db on node-1 (app=db): 1 core / 1Gi;
/// - default/quiet on node-1, which the agent does not report;
/// - default/elsewhere on node-2;
/// - and a pod the agent reports that the API server does not know (default/ghost).
fn cluster(name: &str, agent_ip: u8, dead_ip: u8) -> (Init, StandInAgent) {
    let agent = StandInAgent::start(Ipv4Addr::new(127, 0, 0, agent_ip));
    let init = Init::start(name);
    create(&init, &agent.node_json("node-1"));
    init.ok(&[
        "patch",
        "node",
        "node-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"allocatable":{"cpu":"2","memory":"8Gi"},"capacity":{"cpu":"2","memory":"8Gi"}}}"#,
    ]);
    let dead = Ipv4Addr::new(127, 0, 0, dead_ip);
    let dead_port = alloc_port(dead);
    create(
        &init,
        &format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node-2"}},
            "status":{{"addresses":[{{"type":"InternalIP","address":"{dead}"}}],
            "daemonEndpoints":{{"kubeletEndpoint":{{"Port":{dead_port}}}}},
            "allocatable":{{"cpu":"4","memory":"16Gi"}}}}}}"#
        ),
    );
    create(
        &init,
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"other"}}"#,
    );
    create(
        &init,
        &pod(
            "default",
            "web",
            "node-1",
            r#""app":"web""#,
            &["app", "sidecar"],
        ),
    );
    create(
        &init,
        &pod("other", "db", "node-1", r#""app":"db""#, &["app"]),
    );
    create(&init, &pod("default", "quiet", "node-1", "", &["app"]));
    create(&init, &pod("default", "elsewhere", "node-2", "", &["app"]));
    agent.report_pod(
        "default",
        "web",
        &[
            ("app", 250_000_000, 64 * MI),
            ("sidecar", 5_123_456, 10 * MI + 512 * 1024),
        ],
    );
    agent.report_pod("other", "db", &[("app", 1_000_000_000, 1024 * MI)]);
    agent.report_pod("default", "ghost", &[("app", 1, 1)]);
    (init, agent)
}

#[test]
fn kubectl_top_pod_and_node_show_the_agents_usage() {
    let name = "kubectl_top_pod_and_node_show_the_agents_usage";
    if !require_tool(name, "kubectl") {
        return;
    }
    let (init, _agent) = cluster(name, 70, 71);

    // kubectl sums the containers, rounds CPU up to millicores and memory down to MiB:
    // 255.123456m -> 256m, 74.5Mi -> 74Mi. quiet and elsewhere have no metrics; ghost is
    // not a pod the API server knows.
    assert_eq!(
        rows(&init.ok(&["top", "pod"])),
        vec![
            vec!["NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["web", "256m", "74Mi"],
        ]
    );
    assert_eq!(
        rows(&init.ok(&["top", "pod", "--containers"])),
        vec![
            vec!["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["web", "app", "250m", "64Mi"],
            vec!["web", "sidecar", "6m", "10Mi"],
        ]
    );
    assert_eq!(
        rows(&init.ok(&["top", "pod", "-A"])),
        vec![
            vec!["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["default", "web", "256m", "74Mi"],
            vec!["other", "db", "1000m", "1024Mi"],
        ]
    );
    assert_eq!(
        rows(&init.ok(&["top", "pod", "-A", "-l", "app=db"])),
        vec![
            vec!["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(bytes)"],
            vec!["other", "db", "1000m", "1024Mi"],
        ]
    );
    assert_eq!(
        rows(&init.ok(&["top", "pod", "web", "--no-headers"])),
        vec![vec!["web", "256m", "74Mi"]]
    );
    let missing = init.fails(&["top", "pod", "elsewhere"]);
    assert!(
        missing.contains(r#"podmetrics.metrics.k8s.io "default/elsewhere" not found"#),
        "{missing}"
    );
    // `kubectl get` reads metrics-server's Table: the pod's summed usage, exact.
    assert_eq!(
        rows(&init.ok(&["get", "pods.metrics.k8s.io", "web"])),
        vec![
            vec!["NAME", "CPU", "MEMORY", "WINDOW"],
            vec!["web", "255123456n", "76288Ki", "15s"],
        ]
    );
    let nothing = init.fails(&["top", "pod", "nope"]);
    assert!(nothing.contains(r#"pods "nope" not found"#), "{nothing}");

    // node-1: 1.25 of 2 cores (62%), 2 of 8 GiB (25%); node-2's agent is unreachable, so it
    // has no metrics and kubectl, which lists the Nodes too, shows it as unknown.
    assert_eq!(NODE_CPU_NANOCORES, 1_250_000_000);
    assert_eq!(NODE_MEMORY_BYTES, 2048 * MI);
    // (As root, `skiff init` also runs its own node's agent, whose real usage varies: left out.)
    let own = init.node.clone();
    assert_eq!(
        rows(&init.ok(&["top", "node"]))
            .into_iter()
            .filter(|r| r[0] != own)
            .collect::<Vec<_>>(),
        vec![
            vec!["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
            vec!["node-1", "1250m", "62%", "2048Mi", "25%"],
            vec!["node-2", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
        ]
    );
    assert_eq!(
        rows(&init.ok(&["top", "node", "node-1", "--no-headers"])),
        vec![vec!["node-1", "1250m", "62%", "2048Mi", "25%"]]
    );
    let dead = init.fails(&["top", "node", "node-2"]);
    assert!(
        dead.contains(r#"nodemetrics.metrics.k8s.io "node-2" not found"#),
        "{dead}"
    );
}

/// GET as the Python client's CustomObjectsApi sends it: JSON accepted, no body.
fn get_json(init: &Init, path: &str) -> (u16, serde_json::Value) {
    let out = run_with_timeout(
        admin_curl(&init.pki())
            .args([
                "-sS",
                "-w",
                "\n%{http_code}",
                "-H",
                "Accept: application/json",
            ])
            .arg(format!("https://{}{path}", init.api)),
        None,
        Duration::from_secs(30),
    );
    let text = stdout_str(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    (code, json)
}

#[test]
fn pod_metrics_list_as_raw_json() {
    let name = "pod_metrics_list_as_raw_json";
    if !require_tool(name, "curl") {
        return;
    }
    let (init, _agent) = cluster(name, 72, 73);

    let (code, list) = get_json(
        &init,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
    );
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    let web = &items[0];
    assert_eq!(web["kind"], "PodMetrics");
    assert_eq!(web["metadata"]["name"], "web");
    assert_eq!(web["metadata"]["namespace"], "default");
    assert_eq!(web["metadata"]["labels"]["app"], "web");
    assert_eq!(web["window"], "15s");
    let stamp = web["timestamp"].as_str().expect("timestamp");
    assert!(
        stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
    assert_eq!(
        web["containers"],
        serde_json::json!([
            {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
            {"name": "sidecar", "usage": {"cpu": "5123456n", "memory": "10752Ki"}},
        ])
    );

    // Across namespaces, sorted by namespace and name, with a label selector.
    let (_, all) = get_json(&init, "/apis/metrics.k8s.io/v1beta1/pods");
    let names: Vec<String> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap_or(""),
                i["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, ["default/web", "other/db"]);
    let (_, selected) = get_json(
        &init,
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Ddb",
    );
    assert_eq!(
        selected["items"].as_array().map(Vec::len),
        Some(1),
        "{selected}"
    );
    assert_eq!(
        selected["items"][0]["containers"][0]["usage"]["memory"],
        "1Gi"
    );

    // One node and one pod, and the 404 for a pod the agent does not report.
    let (code, node) = get_json(&init, "/apis/metrics.k8s.io/v1beta1/nodes/node-1");
    assert_eq!(code, 200, "{node}");
    assert_eq!(node["kind"], "NodeMetrics");
    assert_eq!(
        node["usage"],
        serde_json::json!({"cpu": "1250m", "memory": "2Gi"})
    );
    let (code, status) = get_json(
        &init,
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/quiet",
    );
    assert_eq!(code, 404, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(
        status["message"],
        r#"podmetrics.metrics.k8s.io "default/quiet" not found"#
    );
}
