//! The Endpoints, EndpointSlice, ResourceQuota and PersistentVolume binding controllers inside
//! `skiff init`, and the API server's quota admission, as kubectl sees them.
//!
//! Without root `skiff init` runs no node agent, so the test plays the kubelet: pods are created
//! bound to a Node object the test makes, and their address, phase and Ready condition are set
//! through pods/status. Pods set `terminationGracePeriodSeconds: 0`, so a deleted pod goes at
//! once instead of waiting for a kubelet that is not there.

mod common;

use common::cluster::*;
use common::control_plane::Init;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

fn get_json(init: &Init, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = init.kubectl(&all);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn apply(init: &Init, yaml: &str) {
    check_ok(
        "kubectl apply",
        &init.kubectl_in(&["apply", "-f", "-"], Some(yaml.as_bytes())),
    );
}

/// Waits for `f` to give a value, panicking with its last reason and `skiff init`'s log tail.
fn wait<T>(init: &Init, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    wait_for(WAIT, POLL, f).unwrap_or_else(|e| {
        let log = init.log();
        let tail: String = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        panic!("{what}: {e}\n--- skiff init log (tail) ---\n{tail}")
    })
}

fn node(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    kubernetes.io/hostname: {name}
    topology.kubernetes.io/zone: zone-a
"#
    )
}

fn pod(name: &str, node: &str, app: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {app}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: registry.invalid/web:1
    ports:
    - name: http
      containerPort: 8080
"#
    )
}

/// Plays the kubelet: the pod is Running at `ip`, Ready or not.
fn set_pod_status(init: &Init, name: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let status = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{ready}"}},{{"type":"ContainersReady","status":"{ready}"}}]}}}}"#
    );
    init.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
}

fn ips(addresses: &Value) -> Vec<String> {
    let mut v: Vec<String> = addresses
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// (ready, not ready) addresses of the Endpoints `name`, over all subsets.
fn endpoint_addresses(
    init: &Init,
    name: &str,
) -> Result<(Vec<String>, Vec<String>, Value), String> {
    let ep = get_json(init, &["get", "endpoints", name]);
    if ep.is_null() {
        return Err(format!("no endpoints {name}"));
    }
    let subsets = ep["subsets"].as_array().cloned().unwrap_or_default();
    let mut ready: Vec<String> = subsets.iter().flat_map(|s| ips(&s["addresses"])).collect();
    let mut not_ready: Vec<String> = subsets
        .iter()
        .flat_map(|s| ips(&s["notReadyAddresses"]))
        .collect();
    ready.sort();
    not_ready.sort();
    Ok((ready, not_ready, ep))
}

/// The endpoints of every slice of Service `svc`: (address, ready) sorted, and the slices.
fn slice_endpoints(init: &Init, svc: &str) -> (Vec<(String, bool)>, Vec<Value>) {
    let list = get_json(
        init,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ],
    );
    let slices = list["items"].as_array().cloned().unwrap_or_default();
    let mut eps: Vec<(String, bool)> = slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap_or_default().to_string(),
                e["conditions"]["ready"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    eps.sort();
    (eps, slices)
}

#[test]
fn endpoints_and_slices_list_ready_pods_and_move_unready_ones() {
    let name = "endpoints_and_slices_list_ready_pods_and_move_unready_ones";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start("svc-endpoints");
    let node_name = "svc-node-1";
    apply(&init, &node(node_name));
    // A Service without a selector keeps the Endpoints its user wrote.
    apply(
        &init,
        r#"apiVersion: v1
kind: Service
metadata:
  name: manual
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Endpoints
metadata:
  name: manual
subsets:
- addresses:
  - ip: 10.9.9.9
  ports:
  - port: 80
"#,
    );
    apply(
        &init,
        r#"apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    tier: front
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
"#,
    );
    for p in ["web-a", "web-b"] {
        apply(&init, &pod(p, node_name, "web"));
    }
    apply(&init, &pod("other", node_name, "db"));
    set_pod_status(&init, "web-a", "10.244.0.11", true);
    set_pod_status(&init, "web-b", "10.244.0.12", true);
    set_pod_status(&init, "other", "10.244.0.13", true);

    let ep = wait(&init, "both ready pods in the Endpoints", || {
        let (ready, not_ready, ep) = endpoint_addresses(&init, "web")?;
        if ready == ["10.244.0.11", "10.244.0.12"] && not_ready.is_empty() {
            Ok(ep)
        } else {
            Err(format!("ready {ready:?}, not ready {not_ready:?}"))
        }
    });
    let subset = &ep["subsets"][0];
    assert_eq!(
        subset["ports"][0]["port"], 8080,
        "the named target port resolves: {ep}"
    );
    assert_eq!(subset["ports"][0]["name"], "http");
    assert_eq!(subset["addresses"][0]["nodeName"], node_name);
    assert_eq!(subset["addresses"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(subset["addresses"][0]["targetRef"]["name"], "web-a");
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string(),
        "{ep}"
    );
    let table = init.ok(&["get", "endpoints", "web"]);
    assert!(
        table.contains("10.244.0.11:8080,10.244.0.12:8080"),
        "{table}"
    );
    let describe = init.ok(&["describe", "svc", "web"]);
    assert!(
        describe.contains("10.244.0.11:8080,10.244.0.12:8080"),
        "{describe}"
    );

    let slices = wait(&init, "both pods in the EndpointSlices", || {
        let (eps, slices) = slice_endpoints(&init, "web");
        let want = vec![
            ("10.244.0.11".to_string(), true),
            ("10.244.0.12".to_string(), true),
        ];
        if eps == want {
            Ok(slices)
        } else {
            Err(format!("{eps:?}"))
        }
    });
    assert_eq!(slices.len(), 1, "{slices:?}");
    let s = &slices[0];
    assert!(
        s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .starts_with("web-"),
        "{s}"
    );
    assert_eq!(
        s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(s["metadata"]["ownerReferences"][0]["name"], "web");
    assert_eq!(s["addressType"], "IPv4");
    assert_eq!(s["ports"][0]["port"], 8080);
    assert_eq!(s["endpoints"][0]["nodeName"], node_name);
    assert_eq!(s["endpoints"][0]["zone"], "zone-a");
    assert_eq!(s["endpoints"][0]["targetRef"]["name"], "web-a");
    let table = init.ok(&["get", "endpointslices"]);
    assert!(table.contains("10.244.0.11,10.244.0.12"), "{table}");

    // web-b stops being ready.
    set_pod_status(&init, "web-b", "10.244.0.12", false);
    wait(&init, "the unready pod among notReadyAddresses", || {
        let (ready, not_ready, _) = endpoint_addresses(&init, "web")?;
        if ready == ["10.244.0.11"] && not_ready == ["10.244.0.12"] {
            Ok(())
        } else {
            Err(format!("ready {ready:?}, not ready {not_ready:?}"))
        }
    });
    wait(&init, "the unready pod's endpoint not ready", || {
        let (eps, slices) = slice_endpoints(&init, "web");
        let want = vec![
            ("10.244.0.11".to_string(), true),
            ("10.244.0.12".to_string(), false),
        ];
        let b = slices
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .find(|e| e["addresses"][0] == "10.244.0.12");
        let serving = b.as_ref().map(|b| b["conditions"]["serving"].clone());
        if eps == want && serving == Some(Value::Bool(false)) {
            Ok(())
        } else {
            Err(format!("{eps:?}, serving {serving:?}"))
        }
    });

    // Deleting a pod removes it from both.
    init.ok(&["delete", "pod", "web-a"]);
    wait(&init, "the deleted pod gone from the Endpoints", || {
        let (ready, not_ready, _) = endpoint_addresses(&init, "web")?;
        if ready.is_empty() && not_ready == ["10.244.0.12"] {
            Ok(())
        } else {
            Err(format!("ready {ready:?}, not ready {not_ready:?}"))
        }
    });
    wait(&init, "the deleted pod gone from the slices", || {
        let (eps, _) = slice_endpoints(&init, "web");
        if eps == vec![("10.244.0.12".to_string(), false)] {
            Ok(())
        } else {
            Err(format!("{eps:?}"))
        }
    });

    // The selector-less Service's Endpoints are as its user wrote them, and it has no slices.
    let (ready, _, _) = endpoint_addresses(&init, "manual").unwrap_or_default();
    assert_eq!(ready, ["10.9.9.9"]);
    assert!(slice_endpoints(&init, "manual").1.is_empty());

    // Deleting the Service deletes its Endpoints.
    init.ok(&["delete", "service", "web"]);
    wait(
        &init,
        "the Endpoints of a deleted Service gone",
        || match get_json(
            &init,
            &["get", "endpoints", "--field-selector", "metadata.name=web"],
        )["items"]
            .as_array()
        {
            Some(items) if items.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn quota_counts_pods_and_refuses_the_one_over_the_limit() {
    let name = "quota_counts_pods_and_refuses_the_one_over_the_limit";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start("svc-quota");
    init.ok(&["create", "namespace", "limited"]);
    init.ok(&[
        "create",
        "quota",
        "q",
        "-n",
        "limited",
        "--hard=pods=2,configmaps=5,requests.cpu=1",
    ]);
    let used = |init: &Init, key: &str| -> Option<String> {
        let q = get_json(init, &["get", "quota", "q", "-n", "limited"]);
        q["status"]["used"][key].as_str().map(str::to_string)
    };
    wait(&init, "the quota's status", || {
        let q = get_json(&init, &["get", "quota", "q", "-n", "limited"]);
        match (
            q["status"]["hard"]["pods"].as_str(),
            q["status"]["used"]["pods"].as_str(),
        ) {
            (Some("2"), Some("0")) => Ok(()),
            other => Err(format!("{other:?}: {q}")),
        }
    });
    let pod_with_cpu = |name: &str, cpu: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: limited
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: registry.invalid/c:1
    resources:
      requests:
        cpu: {cpu}
"#
        )
    };
    // A pod not stating what the quota tracks is refused as upstream refuses it.
    let out = init.kubectl_in(
        &["apply", "-f", "-"],
        Some(
            br#"apiVersion: v1
kind: Pod
metadata:
  name: bare
  namespace: limited
spec:
  containers:
  - name: c
    image: registry.invalid/c:1
"#,
        ),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"pods "bare" is forbidden: failed quota: q: must specify requests.cpu for: c"#
        ),
        "{err}"
    );
    apply(&init, &pod_with_cpu("p1", "250m"));
    apply(&init, &pod_with_cpu("p2", "250m"));
    wait(&init, "status.used counting both pods", || {
        match (
            used(&init, "pods").as_deref(),
            used(&init, "requests.cpu").as_deref(),
        ) {
            (Some("2"), Some("500m")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let out = init.kubectl_in(
        &["apply", "-f", "-"],
        Some(pod_with_cpu("p3", "100m").as_bytes()),
    );
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"pods "p3" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"#),
        "{err}"
    );
    // Room again once a pod goes; a CPU request beyond what is left is refused by its own name.
    init.ok(&["delete", "pod", "p1", "-n", "limited"]);
    wait(&init, "status.used after the deletion", || {
        match used(&init, "pods").as_deref() {
            Some("1") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let out = init.kubectl_in(
        &["apply", "-f", "-"],
        Some(pod_with_cpu("big", "900m").as_bytes()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exceeded quota: q, requested: requests.cpu=900m, used: requests.cpu=250m, limited: requests.cpu=1"),
        "{err}"
    );
    apply(&init, &pod_with_cpu("p3", "100m"));
    // Other kinds are counted too.
    init.ok(&["create", "configmap", "c1", "-n", "limited"]);
    wait(&init, "configmaps counted", || {
        match used(&init, "configmaps").as_deref() {
            Some("1") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let described = init.ok(&["describe", "quota", "q", "-n", "limited"]);
    assert!(
        described.contains("pods") && described.contains("requests.cpu"),
        "{described}"
    );
    // An update is charged what it adds: a label adds nothing, a Service turned NodePort
    // counts its ports.
    init.ok(&[
        "create",
        "quota",
        "ports",
        "-n",
        "limited",
        "--hard=services.nodeports=1",
    ]);
    init.ok(&[
        "create",
        "service",
        "clusterip",
        "s1",
        "-n",
        "limited",
        "--tcp=80:80,81:81",
    ]);
    init.ok(&["label", "service", "s1", "-n", "limited", "tier=web"]);
    let err = init.fails(&[
        "patch",
        "service",
        "s1",
        "-n",
        "limited",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    assert!(
        err.contains(r#"services "s1" is forbidden: exceeded quota: ports, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"#),
        "{err}"
    );
    let svc = get_json(&init, &["get", "service", "s1", "-n", "limited"]);
    assert_eq!(
        svc["spec"]["type"], "ClusterIP",
        "the refused update changed nothing"
    );
}

#[test]
fn claims_bind_to_the_smallest_matching_volume_and_release_it() {
    let name = "claims_bind_to_the_smallest_matching_volume_and_release_it";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start("svc-volumes");
    let volume = |name: &str, size: &str, class: &str, policy: &str| {
        format!(
            r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
spec:
  capacity:
    storage: {size}
  accessModes: [ReadWriteOnce]
  storageClassName: "{class}"
  persistentVolumeReclaimPolicy: {policy}
  hostPath:
    path: /tmp/skiff-test-{name}
"#
        )
    };
    let claim = |name: &str, size: &str, class: &str| {
        format!(
            r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: "{class}"
  resources:
    requests:
      storage: {size}
"#
        )
    };
    apply(&init, &volume("pv-big", "5Gi", "manual", "Retain"));
    apply(&init, &volume("pv-small", "1Gi", "manual", "Retain"));
    apply(&init, &volume("pv-scratch", "1Gi", "scratch", "Delete"));
    wait(&init, "volumes Available", || {
        let list = get_json(&init, &["get", "pv"]);
        let phases: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                v["status"]["phase"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        if phases.len() == 3 && phases.iter().all(|p| p == "Available") {
            Ok(())
        } else {
            Err(format!("{phases:?}"))
        }
    });
    apply(&init, &claim("data", "500Mi", "manual"));
    let table = wait(&init, "the claim Bound in kubectl get pvc", || {
        let t = init.ok(&["get", "pvc", "data"]);
        if t.contains("Bound") && t.contains("pv-small") && t.contains("1Gi") {
            Ok(t)
        } else {
            Err(t)
        }
    });
    assert!(table.contains("RWO"), "{table}");
    let pvc = get_json(&init, &["get", "pvc", "data"]);
    let pv = get_json(&init, &["get", "pv", "pv-small"]);
    assert_eq!(
        pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"],
        "{pv}"
    );
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], "default");
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(pvc["status"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(
        get_json(&init, &["get", "pv", "pv-big"])["status"]["phase"],
        "Available"
    );

    // No class and no volume: upstream's event says why it waits.
    apply(&init, &claim("lonely", "1Gi", ""));
    wait(&init, "the FailedBinding event", || {
        let t = init.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=lonely",
        ]);
        if t.contains("FailedBinding")
            && t.contains(
                "no persistent volumes available for this claim and no storage class is set",
            )
        {
            Ok(())
        } else {
            Err(t)
        }
    });

    // A deleted claim releases a Retain volume and deletes a Delete one.
    apply(&init, &claim("scratch", "1Gi", "scratch"));
    wait(&init, "the scratch claim Bound", || {
        match get_json(&init, &["get", "pvc", "scratch"])["status"]["phase"].as_str() {
            Some("Bound") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    init.ok(&["delete", "pvc", "data", "scratch"]);
    wait(&init, "pv-small Released", || {
        match get_json(&init, &["get", "pv", "pv-small"])["status"]["phase"].as_str() {
            Some("Released") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait(&init, "pv-scratch deleted", || {
        let list = get_json(
            &init,
            &["get", "pv", "--field-selector", "metadata.name=pv-scratch"],
        );
        match list["items"].as_array() {
            Some(items) if items.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}
