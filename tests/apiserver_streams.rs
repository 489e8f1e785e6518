//! Streaming pod subresources through the API server to the node agent's gRPC service, here a
//! stand-in: `kubectl logs` with tail, follow and container checks.

mod common;

use common::agent_standin::StandInAgent;
use common::cluster::*;
use common::control_plane::Init;
use std::net::Ipv4Addr;
use std::time::Duration;

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
  "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"registry.local/busybox:1.36"}]}}"#;

#[test]
fn kubectl_logs_come_from_the_node_agent() {
    let name = "kubectl_logs_come_from_the_node_agent";
    if !require_tool(name, "kubectl") {
        return;
    }
    let agent = StandInAgent::start(Ipv4Addr::new(127, 0, 0, 62));
    let init = Init::start(name);
    let node = agent.node_json("node-1");
    check_ok(
        "node",
        &init.kubectl_in(&["create", "-f", "-"], Some(node.as_bytes())),
    );
    check_ok(
        "pod",
        &init.kubectl_in(&["create", "-f", "-"], Some(POD.as_bytes())),
    );

    assert_eq!(
        init.ok(&["logs", "web"]),
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    assert_eq!(init.ok(&["logs", "web", "--tail=2"]), "line 4\nline 5\n");
    assert!(init
        .ok(&["logs", "web", "--timestamps", "--tail=1"])
        .starts_with("2026-01-01T00:00:05"));
    let bad = init.fails(&["logs", "web", "-c", "nope"]);
    assert!(
        bad.contains("container nope is not valid for pod web"),
        "{bad}"
    );
    let unscheduled = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"idle"},
      "spec":{"containers":[{"name":"app","image":"registry.local/busybox:1.36"}]}}"#;
    check_ok(
        "pod",
        &init.kubectl_in(&["create", "-f", "-"], Some(unscheduled.as_bytes())),
    );
    let idle = init.fails(&["logs", "idle"]);
    assert!(idle.contains("does not have a host assigned"), "{idle}");

    let mut follow = init.kubectl_stream(&["logs", "-f", "web"]);
    follow.expect_lines(
        &[
            "line 1", "line 2", "line 3", "line 4", "line 5", "tick 1", "tick 2",
        ],
        Duration::from_secs(20),
    );
}
