//! End-to-end: node registration. `skiff init` (as root) runs a node agent for its own machine,
//! which registers a Ready Node with its capacity and system info, heartbeats a Lease, and
//! authenticates as `system:node:<name>` with only a kubelet's rights; a standalone `skiff
//! agent` registers a second Node. Needs root; skips loudly otherwise (the non-root refusals
//! are checked by dropping to `nobody`).

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::cluster::*;
use common::control_plane::{unique_node_name, Init};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn skip_unless_root_with_kubectl(name: &str) -> bool {
    if !is_root() {
        eprintln!(
            "\n*** SKIPPED {name}: node registration runs the node agent, which needs root; \
             run the tests as root to include it ***\n"
        );
        return false;
    }
    require_tool(name, "kubectl")
}

/// kubectl with another kubeconfig than the admin's.
fn kubectl_as(init: &Init, kubeconfig: &Path, args: &[&str]) -> Output {
    let home = init.dir.path().join("home-other");
    let _ = std::fs::create_dir_all(&home);
    run_with_timeout(
        Command::new("kubectl")
            .env("HOME", &home)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args),
        None,
        Duration::from_secs(30),
    )
}

/// One request with the node's client certificate: the status code and body.
fn as_node(init: &Init, method: &str, path: &str, body: &str) -> (u16, String) {
    let pki = init.pki();
    let out = run_with_timeout(
        Command::new("curl")
            .arg("--cacert")
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join(format!("kubelet-{}.crt", init.node)))
            .arg("--key")
            .arg(pki.join(format!("kubelet-{}.key", init.node)))
            .args(["-sS", "-w", "\n%{http_code}", "-X", method])
            .args(["-H", "Content-Type: application/strategic-merge-patch+json"])
            .args(["--data-binary", "@-"])
            .arg(format!("https://{}{path}", init.api)),
        Some(body.as_bytes()),
        Duration::from_secs(30),
    );
    let text = stdout_str(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// `kubectl get <what> -o json` as the admin, parsed.
fn get_json(init: &Init, what: &[&str]) -> Result<Value, String> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    let out = init.kubectl(&args);
    if !out.status.success() {
        return Err(describe(&out));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {}", stdout_str(&out)))
}

fn condition<'a>(node: &'a Value, kind: &str) -> Option<&'a Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Waits until Node `name` exists and is Ready; returns it.
fn ready_node(init: &Init, name: &str, log: &dyn Fn() -> String) -> Value {
    wait_for(T, Duration::from_millis(250), || {
        let node = get_json(init, &["node", name])?;
        match condition(&node, "Ready") {
            Some(c) if c["status"] == "True" => Ok(node),
            other => Err(format!("Ready is {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("Node {name} did not become Ready: {e}\n--- log:\n{}", log()))
}

/// Checks what every Node the agent registers carries.
fn check_registered_node(node: &Value, name: &str, ip: &str) {
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], name, "{node}");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["beta.kubernetes.io/os"], "linux");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(node["status"]["nodeInfo"]["architecture"], arch, "{node}");
    assert_eq!(labels["kubernetes.io/arch"], arch);
    assert_eq!(labels["beta.kubernetes.io/arch"], arch);

    let info = &node["status"]["nodeInfo"];
    for field in [
        "machineID",
        "systemUUID",
        "bootID",
        "kernelVersion",
        "osImage",
        "containerRuntimeVersion",
        "kubeletVersion",
        "kubeProxyVersion",
        "operatingSystem",
        "architecture",
    ] {
        let v = info[field].as_str().unwrap_or("");
        assert!(!v.is_empty(), "nodeInfo.{field} is empty: {info}");
    }
    assert_eq!(info["kubeletVersion"], "v1.33.0");
    assert_eq!(info["operatingSystem"], "linux");
    assert!(info["containerRuntimeVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("skiff://")));
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    assert_eq!(info["bootID"], boot_id.trim(), "this host's boot id");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    assert_eq!(info["kernelVersion"], kernel.trim());

    for side in ["capacity", "allocatable"] {
        for key in ["cpu", "memory", "pods", "ephemeral-storage"] {
            let v = node["status"][side][key].as_str().unwrap_or("");
            assert!(!v.is_empty() && !v.starts_with('0'), "{side}.{key}: {node}");
        }
    }
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    assert_eq!(node["status"]["capacity"]["cpu"], cpus.to_string());

    let addresses = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let address = |kind: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .map(str::to_string)
    };
    assert_eq!(address("InternalIP").as_deref(), Some(ip), "{node}");
    assert_eq!(address("Hostname").as_deref(), Some(name));

    for (kind, reason) in [
        ("Ready", "KubeletReady"),
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ] {
        let c = condition(node, kind).unwrap_or_else(|| panic!("no {kind}: {node}"));
        assert_eq!(c["reason"], reason, "{c}");
        assert_eq!(c["status"], if kind == "Ready" { "True" } else { "False" });
        assert!(c["lastHeartbeatTime"].is_string() && c["lastTransitionTime"].is_string());
    }
    assert_eq!(
        condition(node, "Ready").map(|c| c["message"].clone()),
        Some(Value::from("kubelet is posting ready status"))
    );
}

/// The agent's kubelet endpoint, checked to be where its service really listens.
fn check_kubelet_endpoint(node: &Value, ip: &str) {
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        port != 0 && port != 10250,
        "the bound port of --listen :0: {node}"
    );
    assert!(
        TcpStream::connect((ip, port as u16)).is_ok(),
        "nothing listens on the Node's kubelet endpoint {ip}:{port}"
    );
}

fn renew_time(init: &Init, node: &str) -> Result<(String, Value), String> {
    let lease = get_json(init, &["lease", "-n", "kube-node-lease", node])?;
    let t = lease["spec"]["renewTime"]
        .as_str()
        .ok_or_else(|| format!("no renewTime: {lease}"))?
        .to_string();
    Ok((t, lease))
}

#[test]
fn init_registers_its_own_node_with_a_lease_and_a_node_identity() {
    let name = "init_registers_its_own_node_with_a_lease_and_a_node_identity";
    if !skip_unless_root_with_kubectl(name) {
        return;
    }
    let init = Init::start(name);
    let node_name = init.node.clone();
    let node = ready_node(&init, &node_name, &|| init.log());
    check_registered_node(&node, &node_name, "127.0.0.61");
    check_kubelet_endpoint(&node, "127.0.0.61");

    // kubectl's table: NAME STATUS ROLES AGE VERSION.
    let table = init.ok(&["get", "nodes"]);
    let row = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&node_name.as_str()))
        .unwrap_or_else(|| panic!("no row for {node_name}:\n{table}"));
    assert_eq!(row[1], "Ready", "{table}");
    assert_eq!(row.last(), Some(&"v1.33.0"), "{table}");

    // The Lease: held by the node, owned by the Node, and renewed.
    let uid = node["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let (first, lease) = wait_for(T, Duration::from_millis(250), || {
        let (t, lease) = renew_time(&init, &node_name)?;
        match lease["metadata"]["ownerReferences"][0]["uid"].as_str() {
            Some(u) if u == uid => Ok((t, lease)),
            _ => Err(format!("not owned by the Node yet: {lease}")),
        }
    })
    .unwrap_or_else(|e| panic!("the Lease: {e}\n--- log:\n{}", init.log()));
    assert_eq!(lease["spec"]["holderIdentity"], node_name.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let rv = || {
        get_json(&init, &["node", &node_name])
            .map(|n| n["metadata"]["resourceVersion"].clone())
            .unwrap_or_default()
    };
    let renewed = |after: String| {
        wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
            let (t, _) = renew_time(&init, &node_name)?;
            if t != after {
                Ok(t)
            } else {
                Err(format!("renewTime still {t}"))
            }
        })
        .unwrap_or_else(|e| panic!("the Lease was not renewed: {e}\n--- log:\n{}", init.log()))
    };
    // Past the first renewal, registration and the first status report are long done.
    let second = renewed(first);
    let rv_before = rv();
    let third = renewed(second);
    renewed(third);
    // Two renewals span more than one status interval (10 s): with nothing changed on the
    // host, the agent wrote nothing to the Node.
    assert_eq!(rv_before, rv(), "an unchanged status is not rewritten");

    // The node's own identity and what it may do.
    let conf = init.kubelet_conf();
    let whoami = check_ok(
        "auth whoami",
        &kubectl_as(&init, &conf, &["auth", "whoami", "-o", "json"]),
    );
    let review: Value = serde_json::from_str(&whoami).unwrap_or_default();
    assert_eq!(
        review["status"]["userInfo"]["username"],
        format!("system:node:{node_name}"),
        "{whoami}"
    );
    assert!(review["status"]["userInfo"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:nodes")));

    // Patching its own Node's status works; a condition someone else owns (a network plugin's)
    // survives the agent's reports, and a Ready it did not set is put back.
    let patch = r#"{"status":{"conditions":[
        {"type":"NetworkUnavailable","status":"False","reason":"RouteCreated","message":"set by a test"},
        {"type":"Ready","status":"False","reason":"Tampered","message":"set by a test"}]}}"#;
    // (With curl: kubectl would GET nodes/status first, which a node may not, as upstream.)
    let (code, body) = as_node(
        &init,
        "PATCH",
        &format!("/api/v1/nodes/{node_name}/status"),
        patch,
    );
    assert_eq!(
        code, 200,
        "patching its own Node's status as the node: {body}"
    );
    let patched: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        condition(&patched, "Ready").map(|c| c["reason"].clone()),
        Some(Value::from("Tampered"))
    );
    let node = ready_node(&init, &node_name, &|| init.log());
    assert_eq!(
        condition(&node, "Ready").map(|c| c["reason"].clone()),
        Some(Value::from("KubeletReady")),
        "the agent restored Ready"
    );
    assert_eq!(
        condition(&node, "NetworkUnavailable").map(|c| c["reason"].clone()),
        Some(Value::from("RouteCreated")),
        "another owner's condition is kept"
    );

    // But it is no administrator.
    check_ok(
        "namespace",
        &init.kubectl(&["create", "namespace", "scratch"]),
    );
    let denied = kubectl_as(&init, &conf, &["delete", "namespace", "scratch"]);
    assert!(!denied.status.success(), "{}", describe(&denied));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("Forbidden") && err.contains(&format!("system:node:{node_name}")),
        "{err}"
    );
    assert!(
        get_json(&init, &["namespace", "scratch"]).is_ok(),
        "still there"
    );
}

/// A `skiff agent` or `skiff init` started here, killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent_command(kubeconfig: &Path, node: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.arg("agent")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--node-name", node, "--listen", "127.0.0.1:0"])
        .arg("--root-dir")
        .arg(dir.join("root"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--log-dir")
        .arg(dir.join("pods"))
        .args(["--cgroup-root", &format!("/skiff/{node}")]);
    cmd
}

#[test]
fn a_standalone_agent_registers_a_second_node() {
    let name = "a_standalone_agent_registers_a_second_node";
    if !skip_unless_root_with_kubectl(name) {
        return;
    }
    let init = Init::start(name);
    let other = unique_node_name("other");
    let dir = TestDir::new("agent-other");
    let log = dir.path().join("agent.log");
    let child = agent_command(&init.kubeconfig(), &other, dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("log: {e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn skiff agent: {e}"));
    let agent = Process { child, log };

    // The API server is on 127.0.0.61; the kernel routes loopback from 127.0.0.1, the
    // default --node-ip.
    let node = ready_node(&init, &other, &|| agent.log());
    check_registered_node(&node, &other, "127.0.0.1");
    check_kubelet_endpoint(&node, "127.0.0.1");
    ready_node(&init, &init.node, &|| init.log());
    let table = init.ok(&["get", "nodes", "-o", "name"]);
    assert!(
        table.contains(&format!("node/{other}")) && table.contains(&format!("node/{}", init.node)),
        "{table}"
    );
    let (renewed, _) = wait_for(T, Duration::from_millis(250), || renew_time(&init, &other))
        .unwrap_or_else(|e| panic!("no Lease for {other}: {e}\n{}", agent.log()));
    assert!(!renewed.is_empty());
    drop(agent);
    assert!(
        dir.path().join("run").join("runtime").exists(),
        "the agent's run dir"
    );
}

#[test]
fn without_root_the_agent_refuses_and_init_runs_the_control_plane_only() {
    let name = "without_root_the_agent_refuses_and_init_runs_the_control_plane_only";
    if !is_root() {
        eprintln!("\n*** SKIPPED {name}: it drops from root to nobody; run as root ***\n");
        return;
    }
    let dir = TestDir::new("nobody");
    chown_nobody(dir.path());
    let out = run_with_timeout(
        agent_command(Path::new("/nonexistent"), "nobody-node", dir.path())
            .uid(NOBODY)
            .gid(NOBODY),
        None,
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("skiff agent must run as root"), "{err}");

    let ip = Ipv4Addr::new(127, 0, 0, 61);
    let data = dir.path().join("data");
    let log_path = dir.path().join("init.log");
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["init", "--data-dir"])
        .arg(&data)
        .args(["--store-listen", &format!("{ip}:{}", alloc_port(ip))])
        .args(["--store-peer-listen", &format!("{ip}:{}", alloc_port(ip))])
        .args(["--apiserver-listen", &format!("{ip}:{}", alloc_port(ip))])
        .args(["--node-name", &unique_node_name("nobody")])
        .uid(NOBODY)
        .gid(NOBODY)
        .env("HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("log: {e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn skiff init: {e}"));
    let init = Process {
        child,
        log: log_path,
    };
    let up = wait_until(T, Duration::from_millis(100), || {
        data.join("admin.conf").exists()
    });
    assert!(
        up,
        "init as nobody did not write admin.conf:\n{}",
        init.log()
    );
    let log = init.log();
    assert!(
        log.contains("not running as root, so the node agent was NOT started"),
        "{log}"
    );
    assert!(
        !data.join("kubelet.conf").exists(),
        "no node identity is written without an agent"
    );
}

fn chown_nobody(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
}
