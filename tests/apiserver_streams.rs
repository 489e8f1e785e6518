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
    scheduled_pod(&init, &agent);

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
    // No node matches its selector, so the scheduler leaves it unassigned.
    let unscheduled = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"idle"},
      "spec":{"nodeSelector":{"skiff.test/none":"x"},
      "containers":[{"name":"app","image":"registry.local/busybox:1.36"}]}}"#;
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

/// A Node served by the stand-in agent and a pod `web` bound to it.
fn scheduled_pod(init: &Init, agent: &StandInAgent) {
    let node = agent.node_json("node-1");
    check_ok(
        "node",
        &init.kubectl_in(&["create", "-f", "-"], Some(node.as_bytes())),
    );
    check_ok(
        "pod",
        &init.kubectl_in(&["create", "-f", "-"], Some(POD.as_bytes())),
    );
}

/// [`scheduled_pod`], reported Running as its agent would.
fn running_pod(init: &Init, agent: &StandInAgent) {
    scheduled_pod(init, agent);
    init.ok(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
}

#[test]
fn kubectl_exec_runs_commands_through_the_node_agent() {
    let name = "kubectl_exec_runs_commands_through_the_node_agent";
    if !require_tool(name, "kubectl") {
        return;
    }
    let agent = StandInAgent::start(Ipv4Addr::new(127, 0, 0, 64));
    let init = Init::start(name);
    running_pod(&init, &agent);

    // stdout and stderr apart, and the exit code carried on the error channel.
    let out = init.kubectl(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(stdout_str(&out), "to-stdout\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("to-stderr"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 7"),
        "{stderr}"
    );

    // stdin reaches the command, and its end (v5's close signal) ends `cat`.
    let out = init.kubectl_in(
        &["exec", "-i", "web", "--", "cat"],
        Some(b"first line\nsecond line\n"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout_str(&out), "first line\nsecond line\n");

    // A command that cannot start.
    let missing = init.fails(&["exec", "web", "--", "/nonexistent/tool"]);
    assert!(missing.contains("failed to exec in container"), "{missing}");

    // Pods that are not running are refused.
    let idle = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"idle"},
      "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"registry.local/busybox:1.36"}]}}"#;
    check_ok(
        "pod",
        &init.kubectl_in(&["create", "-f", "-"], Some(idle.as_bytes())),
    );
    let refused = init.fails(&["exec", "idle", "--", "true"]);
    assert!(refused.contains("is not running"), "{refused}");
    let bad = init.fails(&["exec", "web", "-c", "nope", "--", "true"]);
    assert!(
        bad.contains("container nope is not valid for pod web"),
        "{bad}"
    );
}

/// A TCP server on `ip` that answers every line with the line upper-cased, as a process in the
/// pod would; it runs until the test ends.
fn upper_case_server(ip: Ipv4Addr) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the pod's server");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = conn.try_clone().expect("clone the connection");
                for line in BufReader::new(conn).lines().map_while(Result::ok) {
                    if writeln!(out, "{}", line.to_uppercase()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Sends a line through a forwarded local port and returns the answer.
fn round_trip(local: &str, line: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::net::TcpStream::connect(local).expect("connect to the forwarded port");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    writeln!(conn, "{line}").expect("send");
    let mut answer = String::new();
    BufReader::new(conn)
        .read_line(&mut answer)
        .expect("read the answer");
    answer
}

#[test]
fn kubectl_port_forward_reaches_a_port_in_the_pod() {
    let name = "kubectl_port_forward_reaches_a_port_in_the_pod";
    if !require_tool(name, "kubectl") {
        return;
    }
    let pod_ip = Ipv4Addr::new(127, 0, 0, 65);
    let agent = StandInAgent::start(pod_ip);
    let port = upper_case_server(pod_ip);
    let init = Init::start(name);
    running_pod(&init, &agent);

    let remote = format!(":{port}");
    let mut forward = init.kubectl_stream(&[
        "port-forward",
        "--address",
        "127.0.0.66",
        "pod/web",
        &remote,
    ]);
    let line = forward
        .next_line(Duration::from_secs(20))
        .expect("kubectl port-forward prints where it listens");
    let local = line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.strip_suffix(&format!(" -> {port}")))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(local.starts_with("127.0.0.66:"), "{local}");
    // Each local connection is a new pair of streams on the one SPDY connection.
    for i in 0..3 {
        assert_eq!(
            round_trip(&local, &format!("hello {i}")),
            format!("HELLO {i}\n")
        );
    }
    let big = "x".repeat(200_000);
    assert_eq!(
        round_trip(&local, &big),
        format!("{}\n", big.to_uppercase())
    );
    forward.kill();

    // Nothing listens on the port: the agent's refusal comes back on the error stream.
    let closed = std::net::TcpListener::bind((pod_ip, 0)).expect("bind");
    let closed_port = closed.local_addr().expect("address").port();
    drop(closed);
    let log = init.dir.path().join("refused.log");
    let mut refused = LineReader::spawn(
        std::process::Command::new("kubectl")
            .env("HOME", init.dir.path().join("home"))
            .arg("--kubeconfig")
            .arg(init.kubeconfig())
            .args(["port-forward", "--address", "127.0.0.66", "pod/web"])
            .arg(format!(":{closed_port}")),
        Some(log.clone()),
    );
    let line = refused
        .next_line(Duration::from_secs(20))
        .expect("kubectl port-forward prints where it listens");
    let local = line
        .strip_prefix("Forwarding from ")
        .and_then(|l| l.split(' ').next())
        .expect("a local address")
        .to_string();
    let _ = std::net::TcpStream::connect(&local);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("an error occurred forwarding")
        }),
        "kubectl reported no forwarding error:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("failed to connect"), "{text}");
}
