//! The generic REST storage as the real `/usr/bin/kubectl` drives it: every built-in kind is
//! discoverable, and deployments, services, config maps, secrets and nodes go through create,
//! apply, get (tables, selectors, JSONPath), scale, label, annotate, the three patch types,
//! watch and delete with upstream's output.

mod common;

use common::cluster::*;
use common::control_plane::Init;
use std::time::Duration;

fn json(text: &str) -> Json {
    Json::parse(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[test]
fn kubectl_discovers_every_kind() {
    let name = "kubectl_discovers_every_kind";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let resources = init.ok(&["api-resources"]);
    let row = |plural: &str| {
        resources
            .lines()
            .find(|l| l.split_whitespace().next() == Some(plural))
            .map(words)
            .unwrap_or_else(|| panic!("{plural} missing from api-resources:\n{resources}"))
    };
    assert_eq!(row("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        row("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(row("nodes"), ["nodes", "no", "v1", "false", "Node"]);
    assert_eq!(
        row("clusterroles"),
        [
            "clusterroles",
            "rbac.authorization.k8s.io/v1",
            "false",
            "ClusterRole"
        ]
    );
    for plural in [
        "namespaces",
        "services",
        "endpoints",
        "configmaps",
        "secrets",
        "serviceaccounts",
        "events",
        "persistentvolumes",
        "persistentvolumeclaims",
        "resourcequotas",
        "limitranges",
        "replicasets",
        "daemonsets",
        "statefulsets",
        "jobs",
        "cronjobs",
        "leases",
        "endpointslices",
        "roles",
        "rolebindings",
        "clusterrolebindings",
        "networkpolicies",
        "priorityclasses",
    ] {
        row(plural);
    }
    assert_eq!(
        row("storageclasses"),
        [
            "storageclasses",
            "sc",
            "storage.k8s.io/v1",
            "false",
            "StorageClass"
        ]
    );
    let versions = init.ok(&["api-versions"]);
    for gv in [
        "apps/v1",
        "batch/v1",
        "coordination.k8s.io/v1",
        "discovery.k8s.io/v1",
        "events.k8s.io/v1",
        "metrics.k8s.io/v1beta1",
        "networking.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "scheduling.k8s.io/v1",
        "storage.k8s.io/v1",
        "v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing:\n{versions}"
        );
    }
    // The legacy list names subresources: drain finds pods/eviction here.
    let core = json(&init.ok(&["get", "--raw", "/api/v1"]));
    let names: Vec<&str> = core
        .get("resources")
        .and_then(Json::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.get("name").and_then(Json::as_str))
        .collect();
    assert!(
        names.contains(&"pods/eviction") && names.contains(&"pods/log"),
        "{names:?}"
    );
    // The system namespaces exist from the start.
    let ns = init.ok(&["get", "namespaces", "-o", "name"]);
    for n in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(ns.lines().any(|l| l == format!("namespace/{n}")), "{ns}");
    }
}

#[test]
fn kubectl_manages_a_deployment() {
    let name = "kubectl_manages_a_deployment";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    // A protobuf body from client-go's typed client.
    let out = init.ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/busybox:1.36",
        "--replicas=2",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web created");
    let obj = json(&init.ok(&["get", "deployment", "web", "-o", "json"]));
    let spec = |path: &[&str]| obj.path(path).cloned();
    assert_eq!(
        spec(&["spec", "replicas"]).and_then(|v| v.as_u64()),
        Some(2)
    );
    assert_eq!(
        spec(&["spec", "strategy", "type"])
            .as_ref()
            .and_then(Json::as_str),
        Some("RollingUpdate"),
        "defaults are filled in"
    );
    assert_eq!(
        spec(&["metadata", "generation"]).and_then(|v| v.as_u64()),
        Some(1)
    );
    let container = obj
        .path(&["spec", "template", "spec", "containers"])
        .and_then(Json::as_array)
        .and_then(|c| c.first())
        .cloned()
        .expect("a container");
    assert_eq!(
        container.get("imagePullPolicy").and_then(Json::as_str),
        Some("IfNotPresent")
    );
    assert_eq!(
        container.get("image").and_then(Json::as_str),
        Some("registry.local/busybox:1.36")
    );

    let yaml = init.ok(&["get", "deployment", "web", "-o", "yaml"]);
    for want in [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "  name: web",
        "  replicas: 2",
    ] {
        assert!(yaml.lines().any(|l| l == want), "{want:?} missing:\n{yaml}");
    }
    let table = init.ok(&["get", "deployments"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    // The deployment controller has made its ReplicaSet's two pods (Pending: no node here).
    let mut table = table;
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            table = init.ok(&["get", "deployments"]);
            table
                .lines()
                .nth(1)
                .is_some_and(|l| words(l).get(..4) == Some(&["web", "0/2", "2", "0"][..]))
        }),
        "{table}"
    );
    let wide = init.ok(&["get", "deployments", "-o", "wide"]);
    assert!(
        wide.lines().next().is_some_and(|h| h
            .ends_with("CONTAINERS   IMAGES                        SELECTOR")
            || words(h).ends_with(&["CONTAINERS", "IMAGES", "SELECTOR"])),
        "{wide}"
    );

    assert_eq!(
        init.ok(&["scale", "deployment", "web", "--replicas=3"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        init.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}"
        ]),
        "3 2"
    );
    assert_eq!(
        init.ok(&["label", "deployment", "web", "tier=frontend"])
            .trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        init.ok(&["annotate", "deployment", "web", "note=hello"])
            .trim(),
        "deployment.apps/web annotated"
    );
    assert_eq!(
        init.ok(&["get", "deploy", "-l", "tier=frontend", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    let none = init.kubectl(&["get", "deploy", "-l", "tier in (backend)"]);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("No resources found in default namespace."),
        "{}",
        describe(&none)
    );
    let labels = init.ok(&["get", "deploy", "--show-labels"]);
    assert!(labels.contains("app=web,tier=frontend"), "{labels}");
    let all = init.ok(&["get", "deploy", "-A"]);
    assert_eq!(
        words(all.lines().next().unwrap_or(""))[..2],
        ["NAMESPACE", "NAME"],
        "{all}"
    );
    assert!(
        all.lines().any(|l| words(l)[..2] == ["default", "web"]),
        "{all}"
    );

    // The three patch types.
    assert_eq!(
        init.ok(&[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReadySeconds":5}}"#
        ])
        .trim(),
        "deployment.apps/web patched"
    );
    init.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    init.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"busybox","env":[{"name":"MODE","value":"fast"}]}]}}}}"#,
    ]);
    let patched = json(&init.ok(&["get", "deploy", "web", "-o", "json"]));
    assert_eq!(
        patched
            .path(&["spec", "minReadySeconds"])
            .and_then(Json::as_u64),
        Some(5)
    );
    assert_eq!(
        patched.path(&["spec", "replicas"]).and_then(Json::as_u64),
        Some(1)
    );
    let c = patched
        .path(&["spec", "template", "spec", "containers"])
        .and_then(Json::as_array)
        .and_then(|c| c.first())
        .cloned()
        .expect("container");
    // Strategic merge: the container merged by name, keeping its image.
    assert_eq!(
        c.get("image").and_then(Json::as_str),
        Some("registry.local/busybox:1.36")
    );
    assert_eq!(
        c.get("env")
            .and_then(Json::as_array)
            .and_then(|e| e.first())
            .and_then(|e| e.get("value"))
            .and_then(Json::as_str),
        Some("fast")
    );

    // `kubectl edit` round-trips the object through an editor.
    let edited = init.kubectl_env(
        &["edit", "deployment/web"],
        None,
        &[(
            "EDITOR",
            "sed -i 's/minReadySeconds: 5/minReadySeconds: 7/'",
        )],
    );
    assert_eq!(
        check_ok("edit", &edited).trim(),
        "deployment.apps/web edited"
    );
    assert_eq!(
        init.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.minReadySeconds}"
        ]),
        "7"
    );
    // An event about the deployment shows up in describe, matched by involvedObject.uid.
    let uid = init.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"web.1"}},
        "involvedObject":{{"apiVersion":"apps/v1","kind":"Deployment","name":"web","namespace":"default","uid":"{uid}"}},
        "reason":"ScalingReplicaSet","message":"Scaled up replica set web-abc to 3","type":"Normal",
        "source":{{"component":"deployment-controller"}},"count":1,
        "firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:00:00Z"}}"#
    );
    check_ok(
        "event",
        &init.kubectl_in(&["create", "-f", "-"], Some(event.as_bytes())),
    );
    let described = init.ok(&["describe", "deployment", "web"]);
    let events_row = described
        .lines()
        .find(|l| l.contains("ScalingReplicaSet"))
        .map(words)
        .unwrap_or_default();
    assert_eq!(events_row.first(), Some(&"Normal"), "{described}");
    assert!(
        described.contains("deployment-controller  Scaled up replica set web-abc to 3"),
        "{described}"
    );
    for want in [
        "Name:                   web",
        "Selector:               app=web",
        "StrategyType:           RollingUpdate",
        "Events:",
    ] {
        assert!(described.contains(want), "{want:?} missing:\n{described}");
    }
    let explained = init.ok(&["explain", "pod.spec.containers"]);
    assert!(
        explained.starts_with("KIND:       Pod\nVERSION:    v1"),
        "{explained}"
    );
    assert!(
        explained.contains("FIELD: containers <[]Container>"),
        "{explained}"
    );
    assert!(explained.contains("  image\t<string>"), "{explained}");

    // Errors as upstream words them.
    let missing = init.fails(&["get", "deploy", "nope"]);
    assert!(
        missing.contains("Error from server (NotFound): deployments.apps \"nope\" not found"),
        "{missing}"
    );
    let dup = init.fails(&["create", "deployment", "web", "--image=x"]);
    assert!(
        dup.contains("failed to create deployment: deployments.apps \"web\" already exists"),
        "{dup}"
    );

    assert_eq!(
        init.ok(&["delete", "deployment", "web"]).trim(),
        "deployment.apps \"web\" deleted"
    );
    let gone = init.fails(&["get", "deploy", "web"]);
    assert!(gone.contains("NotFound"), "{gone}");
}

const SHOP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: registry.local/busybox:1.36
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: shop
spec:
  selector: {app: api}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-config
  namespace: shop
data:
  mode: slow
---
apiVersion: v1
kind: Secret
metadata:
  name: api-secret
  namespace: shop
data:
  password: aHVudGVyMg==
"#;

#[test]
fn kubectl_applies_a_manifest_twice_then_an_edit() {
    let name = "kubectl_applies_a_manifest";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let apply = |text: &str| {
        check_ok(
            "apply",
            &init.kubectl_in(&["apply", "-f", "-"], Some(text.as_bytes())),
        )
    };
    let first = apply(SHOP);
    assert_eq!(
        first.lines().collect::<Vec<_>>(),
        [
            "namespace/shop created",
            "deployment.apps/api created",
            "service/api created",
            "configmap/api-config created",
            "secret/api-secret created"
        ],
        "{first}"
    );
    let second = apply(SHOP);
    assert_eq!(
        second.lines().collect::<Vec<_>>(),
        [
            "namespace/shop unchanged",
            "deployment.apps/api unchanged",
            "service/api unchanged",
            "configmap/api-config unchanged",
            "secret/api-secret unchanged"
        ],
        "{second}"
    );
    let edited = SHOP
        .replace("replicas: 1", "replicas: 2")
        .replace("mode: slow", "mode: fast");
    let third = apply(&edited);
    assert_eq!(
        third.lines().collect::<Vec<_>>(),
        [
            "namespace/shop unchanged",
            "deployment.apps/api configured",
            "service/api unchanged",
            "configmap/api-config configured",
            "secret/api-secret unchanged"
        ],
        "{third}"
    );
    let deploy = json(&init.ok(&["get", "-n", "shop", "deploy", "api", "-o", "json"]));
    assert_eq!(
        deploy.path(&["spec", "replicas"]).and_then(Json::as_u64),
        Some(2)
    );
    let last = deploy
        .path(&[
            "metadata",
            "annotations",
            "kubectl.kubernetes.io/last-applied-configuration",
        ])
        .and_then(Json::as_str)
        .expect("the last-applied annotation is kept");
    assert!(last.contains("\"replicas\":2"), "{last}");
    assert_eq!(
        init.ok(&[
            "get",
            "-n",
            "shop",
            "cm",
            "api-config",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "fast"
    );
    // stringData is stored as base64 data.
    let plain = "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"plain\",\"namespace\":\"shop\"},\"stringData\":{\"password\":\"hunter2\"}}";
    check_ok(
        "create",
        &init.kubectl_in(&["create", "-f", "-"], Some(plain.as_bytes())),
    );
    assert_eq!(
        init.ok(&[
            "get",
            "-n",
            "shop",
            "secret",
            "plain",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "aHVudGVyMg=="
    );
    let svc = init.ok(&["get", "-n", "shop", "svc"]);
    let lines: Vec<&str> = svc.lines().collect();
    assert_eq!(
        words(lines[0]),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{svc}"
    );
    let row = words(lines[1]);
    assert_eq!(
        (row[0], row[1], row[3], row[4]),
        ("api", "ClusterIP", "<none>", "80/TCP"),
        "{svc}"
    );
    let ip: std::net::Ipv4Addr = row[2].parse().expect("a cluster IP");
    assert!(
        ip.octets()[0] == 10 && (96..=111).contains(&ip.octets()[1]),
        "a cluster IP from 10.96.0.0/12: {svc}"
    );

    let workloads = edited
        .split_once("---\n")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let deleted = check_ok(
        "delete -f",
        &init.kubectl_in(
            &["delete", "-f", "-", "--wait=true"],
            Some(workloads.as_bytes()),
        ),
    );
    assert_eq!(
        deleted.lines().collect::<Vec<_>>(),
        [
            "deployment.apps \"api\" deleted",
            "service \"api\" deleted",
            "configmap \"api-config\" deleted",
            "secret \"api-secret\" deleted"
        ],
        "{deleted}"
    );
    // Deleting a namespace waits until everything in it is gone.
    assert_eq!(
        init.ok(&["delete", "namespace", "shop"]).trim(),
        "namespace \"shop\" deleted"
    );
    let gone = init.fails(&["get", "ns", "shop"]);
    assert!(gone.contains("NotFound"), "{gone}");
}

#[test]
fn kubectl_get_watch_sees_changes() {
    let name = "kubectl_get_watch_sees_changes";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    init.ok(&["create", "configmap", "first", "--from-literal=a=1"]);
    let mut watch = init.kubectl_stream(&["get", "configmaps", "--watch"]);
    let header = watch.next_line(Duration::from_secs(20)).expect("a header");
    assert_eq!(words(&header), ["NAME", "DATA", "AGE"]);
    let mut seen = |want: &str| {
        let found = wait_for(Duration::from_secs(20), Duration::from_millis(1), || {
            watch
                .next_line(Duration::from_millis(200))
                .filter(|l| words(l).first() == Some(&want))
                .ok_or_else(|| format!("no line for {want} yet"))
        });
        found.unwrap_or_else(|e| panic!("watch never showed {want} ({e}): {:?}", watch.seen))
    };
    seen("first");
    init.ok(&[
        "create",
        "configmap",
        "second",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    let line = seen("second");
    assert_eq!(words(&line)[1], "2", "{line}");
}

#[test]
fn kubectl_cordons_a_registered_node() {
    let name = "kubectl_cordons_a_registered_node";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"worker-1","labels":{"kubernetes.io/hostname":"worker-1"}},
        "status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}],
        "nodeInfo":{"kubeletVersion":"v1.33.0","machineID":"m","bootID":"b","systemUUID":"s","kernelVersion":"6","osImage":"Debian","containerRuntimeVersion":"skiff://0.1","kubeProxyVersion":"v1.33.0","operatingSystem":"linux","architecture":"amd64"}}}"#;
    check_ok(
        "create node",
        &init.kubectl_in(&["create", "-f", "-"], Some(node.as_bytes())),
    );
    assert_eq!(
        init.ok(&["cordon", "worker-1"]).trim(),
        "node/worker-1 cordoned"
    );
    let nodes = init.ok(&["get", "nodes"]);
    let row = nodes.lines().nth(1).map(words).unwrap_or_default();
    assert_eq!(
        row[..2],
        ["worker-1", "Ready,SchedulingDisabled"],
        "{nodes}"
    );
    assert_eq!(
        init.ok(&["uncordon", "worker-1"]).trim(),
        "node/worker-1 uncordoned"
    );
    assert_eq!(
        init.ok(&[
            "get",
            "node",
            "worker-1",
            "-o",
            "jsonpath={.spec.unschedulable}"
        ]),
        ""
    );
}

#[test]
fn kubectl_rollout_history_lists_the_deployments_revisions() {
    let name = "kubectl_rollout_history_lists_the_deployments_revisions";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    init.ok(&[
        "create",
        "deployment",
        "web",
        "--image=registry.local/busybox:1.36",
    ]);
    // Each pod template the deployment controller rolls out is a revision: a ReplicaSet
    // carrying the Deployment's change-cause at the time.
    let revisions = |n: usize| {
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            init.ok(&["get", "replicasets", "-o", "name"])
                .lines()
                .count()
                == n
        })
    };
    assert!(revisions(1), "no first revision");
    init.ok(&[
        "set",
        "image",
        "deployment/web",
        "busybox=registry.local/busybox:1.37",
    ]);
    assert!(revisions(2), "no second revision");
    // The change-cause the Deployment is annotated with goes to its current ReplicaSet.
    init.ok(&[
        "annotate",
        "deployment/web",
        "kubernetes.io/change-cause=kubectl set image deployment/web app=busybox:1.37",
    ]);
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            init.ok(&["rollout", "history", "deployment/web"])
                .contains("2         kubectl set image")
        }),
        "the change-cause never reached revision 2"
    );
    let history = init.ok(&["rollout", "history", "deployment/web"]);
    let lines: Vec<Vec<&str>> = history
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["deployment.apps/web"], "{history}");
    assert_eq!(lines[1], ["REVISION", "CHANGE-CAUSE"], "{history}");
    assert_eq!(lines[2], ["1", "<none>"], "{history}");
    assert_eq!(
        lines[3],
        [
            "2",
            "kubectl",
            "set",
            "image",
            "deployment/web",
            "app=busybox:1.37"
        ],
        "{history}"
    );
    assert_eq!(
        lines.iter().filter(|l| !l.is_empty()).count(),
        4,
        "{history}"
    );
    let second = init.ok(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert!(
        second.contains("deployment.apps/web with revision #2"),
        "{second}"
    );
    assert!(
        second.contains("Image:\tregistry.local/busybox:1.37")
            || second.contains("registry.local/busybox:1.37"),
        "{second}"
    );
    let missing = init.fails(&["rollout", "history", "deployment/web", "--revision=9"]);
    assert!(
        missing.contains("unable to find the specified revision"),
        "{missing}"
    );
}

const SSA: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
spec:
  replicas: 3
  selector:
    matchLabels: {app: ssa}
  template:
    metadata:
      labels: {app: ssa}
    spec:
      containers:
      - name: busybox
        image: registry.local/busybox:1.36
"#;

#[test]
fn kubectl_server_side_apply_conflicts_and_forces() {
    let name = "kubectl_server_side_apply";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    init.ok(&[
        "create",
        "deployment",
        "ssa",
        "--image=registry.local/busybox:1.36",
        "--replicas=1",
    ]);
    let conflict = init.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(SSA.as_bytes()));
    assert!(!conflict.status.success(), "{}", describe(&conflict));
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "kubectl's hint: {err}");
    let forced = check_ok(
        "apply --force-conflicts",
        &init.kubectl_in(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(SSA.as_bytes()),
        ),
    );
    assert_eq!(forced.trim(), "deployment.apps/ssa serverside-applied");
    let obj = json(&init.ok(&[
        "get",
        "deploy",
        "ssa",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    assert_eq!(
        obj.path(&["spec", "replicas"]).and_then(Json::as_u64),
        Some(3)
    );
    let managers: Vec<(String, String)> = obj
        .path(&["metadata", "managedFields"])
        .and_then(Json::as_array)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m.get("manager")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
                m.get("operation")
                    .and_then(Json::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("kubectl".into(), "Apply".into())),
        "{managers:?}"
    );
    assert!(
        managers.contains(&("kubectl-create".into(), "Update".into())),
        "{managers:?}"
    );
    // Applying again changes nothing; applying a new object creates it.
    let again = check_ok(
        "apply again",
        &init.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(SSA.as_bytes())),
    );
    assert_eq!(again.trim(), "deployment.apps/ssa serverside-applied");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-cm\ndata:\n  a: \"1\"\n";
    let created = check_ok(
        "apply new",
        &init.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(cm.as_bytes())),
    );
    assert_eq!(created.trim(), "configmap/ssa-cm serverside-applied");
    assert_eq!(
        init.ok(&["get", "cm", "ssa-cm", "-o", "jsonpath={.data.a}"]),
        "1"
    );
}

#[test]
fn yaml_bodies_create_and_apply_objects() {
    let name = "yaml_bodies_create_and_apply_objects";
    if !require_tool(name, "kubectl") || !require_tool(name, "curl") {
        return;
    }
    let init = Init::start(name);
    let collection = "/api/v1/namespaces/default/configmaps";
    let (code, body) = init.request(
        "POST",
        collection,
        "application/yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n  labels: {made: by-yaml}\ndata:\n  answer: \"42\"\n",
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        init.ok(&[
            "get",
            "configmap",
            "from-yaml",
            "-o",
            "jsonpath={.data.answer} {.metadata.labels.made}"
        ]),
        "42 by-yaml"
    );
    // Server-side apply with a YAML body, as `kubectl apply --server-side` would send it.
    let (code, body) = init.request(
        "PATCH",
        &format!("{collection}/from-yaml?fieldManager=yaml-test"),
        "application/apply-patch+yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  extra: yes-please\n",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        init.ok(&[
            "get",
            "configmap",
            "from-yaml",
            "-o",
            "jsonpath={.data.extra}"
        ]),
        "yes-please"
    );
    // Malformed YAML is the client's error, and nothing is stored.
    let (code, body) = init.request(
        "POST",
        collection,
        "application/yaml",
        b"metadata: [name\n  - : :",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not valid YAML"), "{body}");
    // (kube-root-ca.crt is the root CA publisher's, in every namespace, as upstream.)
    assert_eq!(
        init.ok(&[
            "get",
            "configmaps",
            "-o",
            "name",
            "--field-selector=metadata.name!=kube-root-ca.crt"
        ]),
        "configmap/from-yaml\n"
    );
}

#[test]
fn kubectl_prints_conflict_and_strict_decoding_errors_as_upstream() {
    let name = "kubectl_prints_conflict_and_strict_decoding_errors";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    init.ok(&["create", "configmap", "c", "--from-literal=a=1"]);
    // A replace carrying a resourceVersion that another write has since passed: 409.
    let stale = init.ok(&["get", "configmap", "c", "-o", "json"]);
    init.ok(&["label", "configmap", "c", "x=y"]);
    let out = init.kubectl_in(&["replace", "-f", "-"], Some(stale.as_bytes()));
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        "{err}"
    );
    // An unknown field under strict validation: 400, and nothing stored.
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\nspec: {}\n";
    let out = init.kubectl_in(
        &["create", "--validate=strict", "-f", "-"],
        Some(doc.as_bytes()),
    );
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Error from server (BadRequest): error when creating \"STDIN\": ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""
        ),
        "{err}"
    );
    assert!(init
        .fails(&["get", "configmap", "d"])
        .contains("(NotFound)"));
}

#[test]
fn kubectl_manages_storage_classes_as_upstream() {
    let name = "kubectl_manages_storage_classes_as_upstream";
    if !require_tool(name, "kubectl") {
        return;
    }
    let init = Init::start(name);
    let manifest = b"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations:
    storageclass.kubernetes.io/is-default-class: \"true\"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
provisioner: example.com/fast
parameters:
  tier: gold
allowVolumeExpansion: true
";
    let out = init.kubectl_in(&["apply", "-f", "-"], Some(manifest));
    check_ok("kubectl apply", &out);
    let table = init.ok(&["get", "sc"]);
    let mut lines = table.lines();
    assert_eq!(
        words(lines.next().unwrap_or_default()),
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ],
        "{table}"
    );
    let rows: Vec<Vec<&str>> = lines.map(words).collect();
    assert_eq!(
        rows[0][..5],
        ["fast", "example.com/fast", "Delete", "Immediate", "true"],
        "defaults fill what the manifest left out:\n{table}"
    );
    assert_eq!(
        rows[1][..6],
        [
            "local",
            "(default)",
            "kubernetes.io/no-provisioner",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ],
        "{table}"
    );

    // Only metadata, mount options and expansion may change.
    init.ok(&["label", "sc", "fast", "tier=gold"]);
    init.ok(&[
        "patch",
        "sc",
        "fast",
        "--type=merge",
        "-p",
        r#"{"allowVolumeExpansion":false,"mountOptions":["noatime"]}"#,
    ]);
    let err = init.fails(&[
        "patch",
        "sc",
        "fast",
        "--type=merge",
        "-p",
        r#"{"provisioner":"example.com/slow","parameters":{"tier":"silver"},"reclaimPolicy":"Retain"}"#,
    ]);
    for want in [
        "provisioner: Forbidden: updates to provisioner are forbidden.",
        "parameters: Forbidden: updates to parameters are forbidden.",
        "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    let bad = b"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: broken
reclaimPolicy: Recycle
volumeBindingMode: Later
";
    let out = init.kubectl_in(&["create", "-f", "-"], Some(bad));
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "provisioner: Required value",
        "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
        "volumeBindingMode: Unsupported value: \"Later\"",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    assert!(init.fails(&["get", "sc", "broken"]).contains("NotFound"));
    init.ok(&["delete", "sc", "fast", "local"]);
    assert_eq!(init.ok(&["get", "sc", "-o", "name"]), "");
}
