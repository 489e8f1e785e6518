//! The official Python `kubernetes` client, unmodified, against `skiff init`: the flow in
//! tests/python/client_flow.py (CRUD across namespaces, both patch bodies, watch with a
//! resourceVersion and timeout, relist after 410, pod logs, exec and port-forward through a
//! stand-in node agent).

mod common;

use common::agent_standin::StandInAgent;
use common::cluster::*;
use common::control_plane::Init;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Where `deploy/install-deps.sh` installs the client.
const PYTHON: &str = "/opt/skiff-tests/venv/bin/python3";

#[test]
fn python_client_drives_the_api() {
    let name = "python_client_drives_the_api";
    if !Path::new(PYTHON).exists() {
        eprintln!("\n*** SKIPPING {name}: {PYTHON} is missing; run deploy/install-deps.sh ***\n");
        return;
    }
    if !require_tool(name, "etcdctl") {
        return;
    }
    let agent = StandInAgent::start(Ipv4Addr::new(127, 0, 0, 63));
    let init = Init::start(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_flow.py");
    let out = run_with_timeout(
        Command::new(PYTHON)
            .arg(script)
            .arg(init.kubeconfig())
            .arg(&init.store)
            .arg(agent.addr.ip().to_string())
            .arg(agent.addr.port().to_string()),
        None,
        Duration::from_secs(120),
    );
    let text = stdout_str(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "ok create-read-list",
            "ok patch",
            "ok not-found",
            "ok watch",
            "ok relist-after-410",
            "ok logs",
            "ok exec",
            "ok exec-tty",
            "ok port-forward",
            "ok delete"
        ],
        "{}",
        describe(&out)
    );
}
