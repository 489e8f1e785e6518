//! Columns and cells against what upstream prints for the same objects.

use super::*;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

/// The fixed "now" every test measures ages against.
fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2025-06-01T12:00:00Z", &Rfc3339).expect("valid time")
}

/// An RFC 3339 timestamp `secs` seconds before [`now`].
fn ago(secs: i64) -> String {
    (now() - time::Duration::seconds(secs))
        .format(&Rfc3339)
        .expect("formattable")
}

/// The table for these items, as kubectl would request it.
fn render(group: &str, kind: &str, items: &[Value]) -> Value {
    table_at(now(), group, kind, items, "42", None, "Metadata")
}

/// The cells of the only row of `kind`'s table for `item`.
fn cells(group: &str, kind: &str, item: Value) -> Vec<Value> {
    let t = render(group, kind, &[item]);
    t["rows"][0]["cells"].as_array().cloned().expect("cells")
}

/// Column names, upper-cased as kubectl shows them, with their priorities.
fn columns(group: &str, kind: &str) -> Vec<(String, u64)> {
    let t = render(group, kind, &[]);
    t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            let name = c["name"].as_str().expect("name").to_uppercase();
            (name, c["priority"].as_u64().expect("priority"))
        })
        .collect()
}

/// Names of the columns shown without `-o wide`.
fn narrow(group: &str, kind: &str) -> Vec<String> {
    columns(group, kind)
        .into_iter()
        .filter(|(_, p)| *p == 0)
        .map(|(n, _)| n)
        .collect()
}

fn pod(status: Value) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(300)},
        "spec": {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-1"},
        "status": status,
    })
}

#[test]
fn ages_read_like_kubectl() {
    assert_eq!(human_age(5), "5s");
    assert_eq!(human_age(150), "2m30s");
    assert_eq!(human_age(3600), "60m");
    assert_eq!(human_age(4 * 3600 + 60), "4h1m");
    assert_eq!(human_age(30 * 3600), "30h");
    assert_eq!(human_age(3 * 86400), "3d");
    assert_eq!(human_age(400 * 86400), "400d");
    assert_eq!(human_age(-1), "0s");
    assert_eq!(human_age(-5), "<invalid>");
    assert_eq!(human_age(3 * 365 * 86400 + 10 * 86400), "3y10d");
    assert_eq!(human_age(9 * 365 * 86400 + 10 * 86400), "9y");
}

#[test]
fn pod_columns_and_wide_priorities() {
    assert_eq!(
        narrow("", "Pod"),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let wide: Vec<String> = columns("", "Pod")
        .into_iter()
        .filter(|(_, p)| *p == 1)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(wide, ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    let t = render("", "Pod", &[]);
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][3]["type"], "string");
    for (group, kind, wide) in [
        (
            "apps",
            "Deployment",
            vec!["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        ("", "Service", vec!["SELECTOR"]),
        (
            "",
            "Node",
            vec![
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
        (
            "",
            "Event",
            vec!["SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"],
        ),
    ] {
        let got: Vec<String> = columns(group, kind)
            .into_iter()
            .filter(|(_, p)| *p == 1)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got, wide, "{kind}");
    }
}

#[test]
fn running_pod() {
    let p = pod(json!({
        "phase": "Running",
        "podIP": "10.1.0.7",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": ago(290)}}}],
    }));
    assert_eq!(
        cells("", "Pod", p),
        json!(["web", "1/1", "Running", "0", "5m", "10.1.0.7", "node-1", "<none>", "<none>"])
            .as_array()
            .cloned()
            .expect("array")
    );
}

#[test]
fn completed_pod_has_completed_row_condition() {
    let p = pod(json!({
        "phase": "Succeeded",
        "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
    }));
    let t = render("", "Pod", &[p]);
    let row = &t["rows"][0];
    assert_eq!(row["cells"][1], "0/1");
    assert_eq!(row["cells"][2], "Completed");
    assert_eq!(row["cells"][5], "<none>");
    assert_eq!(row["conditions"][0]["type"], "Completed");
    assert_eq!(row["conditions"][0]["reason"], "Succeeded");
}

#[test]
fn crashlooping_pod_shows_restarts_and_when() {
    let p = pod(json!({
        "phase": "Running",
        "containerStatuses": [{"name": "app", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(180)}}}],
    }));
    let c = cells("", "Pod", p);
    assert_eq!(c[1], "0/1");
    assert_eq!(c[2], "CrashLoopBackOff");
    assert_eq!(c[3], "5 (3m ago)");
}

#[test]
fn initializing_pods() {
    let mut p = pod(json!({
        "phase": "Pending",
        "initContainerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
            {"name": "b", "restartCount": 0, "state": {"running": {}}},
        ],
    }));
    p["spec"]["initContainers"] = json!([{"name": "a"}, {"name": "b"}]);
    assert_eq!(cells("", "Pod", p.clone())[2], "Init:1/2");

    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting": {"reason": "CrashLoopBackOff"}});
    p["status"]["initContainerStatuses"][1]["restartCount"] = json!(2);
    let c = cells("", "Pod", p.clone());
    assert_eq!(c[2], "Init:CrashLoopBackOff");
    assert_eq!(c[3], "2");

    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 3}});
    assert_eq!(cells("", "Pod", p)[2], "Init:ExitCode:3");
}

#[test]
fn sidecars_count_as_containers() {
    let mut p = pod(json!({
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}],
        "initContainerStatuses": [{"name": "proxy", "restartCount": 1, "started": true,
            "ready": true, "state": {"running": {}}}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
            "state": {"running": {}}}],
    }));
    p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
    let c = cells("", "Pod", p);
    assert_eq!(c[1], "2/2");
    assert_eq!(c[2], "Running");
    assert_eq!(c[3], "1");
}

#[test]
fn terminating_and_gated_pods() {
    let mut p = pod(json!({"phase": "Running"}));
    p["metadata"]["deletionTimestamp"] = json!(ago(10));
    assert_eq!(cells("", "Pod", p.clone())[2], "Terminating");
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(cells("", "Pod", p)[2], "Unknown");

    let gated = pod(json!({"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}));
    assert_eq!(cells("", "Pod", gated)[2], "SchedulingGated");
}

#[test]
fn readiness_gates_and_nominated_node() {
    let mut p = pod(json!({"phase": "Running", "nominatedNodeName": "node-2",
        "podIPs": [{"ip": "fd00::7"}],
        "conditions": [{"type": "example.com/ready", "status": "True"}]}));
    p["spec"]["readinessGates"] =
        json!([{"conditionType": "example.com/ready"}, {"conditionType": "other"}]);
    let c = cells("", "Pod", p);
    assert_eq!(
        c[5..],
        json!(["fd00::7", "node-1", "node-2", "1/2"])
            .as_array()
            .cloned()
            .expect("a")[..]
    );
}

#[test]
fn node_status_roles_and_addresses() {
    let n = json!({
        "metadata": {"name": "cp-1", "creationTimestamp": ago(3 * 86400),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"},
        },
    });
    assert_eq!(
        narrow("", "Node"),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    let c = cells("", "Node", n);
    let want = json!([
        "cp-1",
        "Ready,SchedulingDisabled",
        "control-plane,master",
        "3d",
        "v1.33.0",
        "192.168.1.10",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0",
        "containerd://1.7.0"
    ]);
    assert_eq!(Value::Array(c), want);

    let bare = cells("", "Node", json!({"metadata": {"name": "n"}}));
    assert_eq!(
        Value::Array(bare),
        json!([
            "n",
            "Unknown",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
}

#[test]
fn services_by_type() {
    let svc = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(7200)},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web", "tier": "fe"}},
    });
    assert_eq!(
        narrow("", "Service"),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert_eq!(
        Value::Array(cells("", "Service", svc)),
        json!([
            "web",
            "NodePort",
            "10.96.0.10",
            "<none>",
            "80:30080/TCP,53/UDP",
            "120m",
            "app=web,tier=fe"
        ])
    );

    let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11",
        "ports": [{"port": 443, "nodePort": 31443}]}});
    let c = cells("", "Service", lb.clone());
    assert_eq!(c[3], "<pending>");
    assert_eq!(c[4], "443:31443/TCP");
    assert_eq!(c[6], "<none>");
    let mut lb = lb;
    lb["status"] = json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}});
    lb["spec"]["externalIPs"] = json!(["198.51.100.1"]);
    assert_eq!(
        cells("", "Service", lb)[3],
        "203.0.113.9,lb.example.com,198.51.100.1"
    );

    let ext = json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}});
    let c = cells("", "Service", ext);
    assert_eq!(c[2], "<none>");
    assert_eq!(c[3], "db.example.com");
    assert_eq!(c[4], "<none>");
}

#[test]
fn deployment_cells() {
    let d = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(86400 * 10)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        narrow("apps", "Deployment"),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(
        Value::Array(cells("apps", "Deployment", d)),
        json!([
            "web",
            "2/3",
            3,
            2,
            "10d",
            "nginx,log",
            "nginx:1.27,busybox",
            "app=web,env in (dev,prod)"
        ])
    );
    let empty = cells("apps", "Deployment", json!({"metadata": {"name": "d"}}));
    assert_eq!(
        Value::Array(empty),
        json!(["d", "0/1", 0, 0, "<unknown>", "", "", ""])
    );
}

#[test]
fn workloads_without_their_own_test() {
    let rs = json!({"metadata": {"name": "rs"}, "spec": {"replicas": 2, "selector": {}}, "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        Value::Array(cells("apps", "ReplicaSet", rs)),
        json!(["rs", 2, 2, 1, "<unknown>", "", "", "<none>"])
    );
    let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3}, "status": {"readyReplicas": 3}});
    assert_eq!(cells("apps", "StatefulSet", sts)[1], "3/3");
    let ds = json!({"metadata": {"name": "ds"}, "spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2}});
    let c = cells("apps", "DaemonSet", ds);
    assert_eq!(c[6], "kubernetes.io/os=linux");
    assert_eq!(c[10], "<none>");
    let cr = json!({"metadata": {"name": "web-7f9", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]}, "revision": 4});
    assert_eq!(
        Value::Array(cells("apps", "ControllerRevision", cr)),
        json!(["web-7f9", "statefulset.apps/web", 4, "<unknown>"])
    );
}

#[test]
fn secret_and_config_map_count_keys() {
    let s = json!({"metadata": {"name": "tls", "creationTimestamp": ago(45)},
        "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eQ=="}});
    assert_eq!(narrow("", "Secret"), ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(
        Value::Array(cells("", "Secret", s)),
        json!(["tls", "kubernetes.io/tls", 2, "45s"])
    );
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
    assert_eq!(cells("", "ConfigMap", cm)[1], 2);
}

#[test]
fn core_events_and_events_v1() {
    assert_eq!(
        narrow("", "Event"),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    let e = json!({
        "metadata": {"name": "web.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "message": "Back-off restarting failed container\n", "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 7,
    });
    assert_eq!(
        Value::Array(cells("", "Event", e)),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web",
            "spec.containers{app}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "10m",
            7,
            "web.17a"
        ])
    );
    let v1 = json!({
        "metadata": {"name": "web.17b"},
        "regarding": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet", "note": "Scaled up", "type": "Normal",
        "eventTime": "2025-06-01T11:58:00.000000Z", "reportingController": "deployment-controller",
        "reportingInstance": "",
    });
    assert_eq!(
        Value::Array(cells("events.k8s.io", "Event", v1)),
        json!([
            "2m",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up",
            "2m",
            1,
            "web.17b"
        ])
    );
    let series = json!({"metadata": {"name": "s"}, "eventTime": ago(900),
        "series": {"count": 4, "lastObservedTime": ago(60)}});
    let c = cells("", "Event", series);
    assert_eq!(
        (c[0].clone(), c[7].clone(), c[8].clone()),
        (json!("60s"), json!("15m"), json!(4))
    );
}

#[test]
fn jobs_and_cronjobs() {
    let job = json!({
        "metadata": {"name": "pi", "creationTimestamp": ago(600)},
        "spec": {"completions": 3, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}},
        "status": {"succeeded": 3, "startTime": ago(600), "completionTime": ago(450),
            "conditions": [{"type": "Complete", "status": "True"}]},
    });
    assert_eq!(
        narrow("batch", "Job"),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    let c = cells("batch", "Job", job);
    assert_eq!(
        c[..5],
        json!(["pi", "Complete", "3/3", "2m30s", "10m"])
            .as_array()
            .cloned()
            .expect("a")[..]
    );
    assert_eq!(c[7], "batch.kubernetes.io/controller-uid=u");
    let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 2},
        "status": {"startTime": ago(90), "succeeded": 1}});
    let c = cells("batch", "Job", running);
    assert_eq!(
        (c[1].clone(), c[2].clone(), c[3].clone()),
        (json!("Running"), json!("1/1 of 2"), json!("90s"))
    );

    let cj = json!({
        "metadata": {"name": "nightly", "creationTimestamp": ago(86400 * 2)},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec":
            {"containers": [{"name": "backup", "image": "restic"}]}}}}},
        "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ago(120)},
    });
    assert_eq!(
        narrow("batch", "CronJob"),
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    assert_eq!(
        Value::Array(cells("batch", "CronJob", cj)),
        json!([
            "nightly",
            "0 3 * * *",
            "<none>",
            "False",
            1,
            "2m",
            "2d",
            "backup",
            "restic",
            "<none>"
        ])
    );
}

#[test]
fn storage_and_quota_quantities() {
    let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1024Mi"},
        "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
        "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        Value::Array(cells("", "PersistentVolume", pv)),
        json!([
            "pv1",
            "1Gi",
            "RWO,RWX",
            "Retain",
            "Bound",
            "default/data",
            "local",
            "<unset>",
            "",
            "<unknown>",
            "Filesystem"
        ])
    );
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local",
        "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
    assert_eq!(
        Value::Array(cells("", "PersistentVolumeClaim", pvc)),
        json!([
            "data",
            "Pending",
            "",
            "",
            "",
            "local",
            "<unset>",
            "<unknown>",
            "Filesystem"
        ])
    );
    let rq = json!({"metadata": {"name": "q"}, "status": {
        "hard": {"requests.cpu": "1", "limits.memory": "2Gi", "pods": "10"},
        "used": {"requests.cpu": "500m", "pods": "3"}}});
    let c = cells("", "ResourceQuota", rq);
    assert_eq!(c[1], "pods: 3/10, requests.cpu: 500m/1");
    assert_eq!(c[2], "limits.memory: 0/2Gi");
}

#[test]
fn quantities_print_canonically() {
    for (given, printed) in [
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("1.5", "1500m"),
        ("0.1", "100m"),
        ("1000m", "1"),
        ("1000", "1k"),
        ("100m", "100m"),
        ("10G", "10G"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        ("2000e3", "2e6"),
        ("512", "512"),
        ("500Ki", "500Ki"),
        ("2048Ki", "2Mi"),
        ("0.5Ki", "512"),
        ("0.5n", "1n"),
        ("-1.5Gi", "-1536Mi"),
        ("0", "0"),
        ("0Gi", "0"),
        ("bogus", "bogus"),
    ] {
        assert_eq!(quantity::quantity(&json!(given)), printed, "{given}");
    }
    assert_eq!(quantity::quantity(&json!(2)), "2");
    assert_eq!(quantity::quantity(&Value::Null), "0");
}

#[test]
fn rbac_and_small_groups() {
    let rb = json!({"metadata": {"name": "admins"}, "roleRef": {"kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "ops"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}, {"kind": "User", "name": "bob"}]});
    assert_eq!(
        Value::Array(cells("rbac.authorization.k8s.io", "RoleBinding", rb)),
        json!([
            "admins",
            "ClusterRole/admin",
            "<unknown>",
            "alice, bob",
            "ops",
            "ci/deployer"
        ])
    );
    let slice = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 8443}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}]});
    let c = cells("discovery.k8s.io", "EndpointSlice", slice);
    assert_eq!(c[2], "80,metrics,* + 1 more...");
    assert_eq!(c[3], "10.0.0.1,10.0.0.2,10.0.0.3");
    let empty = cells(
        "discovery.k8s.io",
        "EndpointSlice",
        json!({"metadata": {"name": "e"}}),
    );
    assert_eq!(
        (empty[2].clone(), empty[3].clone()),
        (json!("<unset>"), json!("<unset>"))
    );
    let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
    assert_eq!(cells("networking.k8s.io", "NetworkPolicy", np)[1], "<none>");
    let pc = json!({"metadata": {"name": "high"}, "value": 1000000, "globalDefault": false});
    assert_eq!(
        Value::Array(cells("scheduling.k8s.io", "PriorityClass", pc)),
        json!(["high", 1000000, false, "<unknown>", "PreemptLowerPriority"])
    );
    let lease = json!({"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}});
    assert_eq!(cells("coordination.k8s.io", "Lease", lease)[1], "node-1");
    let ep = json!({"metadata": {"name": "web"}, "subsets": [{"addresses":
        [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}], "ports": [{"port": 80}, {"port": 443}]}]});
    assert_eq!(
        cells("", "Endpoints", ep)[1],
        "10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more..."
    );
}

#[test]
fn kinds_without_a_printer_get_the_default_table() {
    let role =
        json!({"metadata": {"name": "reader", "creationTimestamp": "2025-05-01T10:00:00.5+02:00"}});
    let t = render("rbac.authorization.k8s.io", "Role", &[role]);
    assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
    assert_eq!(t["columnDefinitions"][1]["type"], "date");
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["reader", "2025-05-01T08:00:00Z"])
    );
    let t = render("", "LimitRange", &[json!({"metadata": {"name": "lr"}})]);
    assert_eq!(t["rows"][0]["cells"], json!(["lr", "0001-01-01T00:00:00Z"]));
}

#[test]
fn include_object_modes_and_list_metadata() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "default", "creationTimestamp": ago(60)}, "status": {"phase": "Active"}});
    let items = [ns.clone()];
    let t = table_at(now(), "", "Namespace", &items, "7", Some("abc"), "Metadata");
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "7", "continue": "abc"})
    );
    assert_eq!(t["rows"][0]["cells"], json!(["default", "Active", "60s"]));
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": ns["metadata"]})
    );
    let t = table_at(now(), "", "Namespace", &items, "7", None, "Object");
    assert_eq!(t["rows"][0]["object"], ns);
    assert_eq!(t["metadata"], json!({"resourceVersion": "7"}));
    let t = table_at(now(), "", "Namespace", &items, "7", None, "None");
    assert!(t["rows"][0].get("object").is_none());
    assert!(
        table("", "Namespace", &items, "7", None, "Metadata")["rows"][0]["object"]["metadata"]
            .is_object()
    );
}

#[test]
fn every_printer_fills_every_column_and_survives_junk() {
    // Every kind the API server stores, and one it does not know.
    let kinds = super::super::catalog::RESOURCES
        .iter()
        .filter(|r| r.stored)
        .map(|r| (r.group, r.kind))
        .chain([("example.com", "Widget")]);
    let junk = [
        json!(null),
        json!(42),
        json!({"metadata": 5, "spec": "x", "status": [1, 2]}),
        json!({"metadata": {"name": 3, "creationTimestamp": "yesterday", "labels": [1]},
            "spec": {"containers": "no", "ports": [{"port": "80", "nodePort": -1}], "replicas": "x",
                "selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}},
            "status": {"conditions": {"Ready": true}, "containerStatuses": [null, 1],
                "initContainerStatuses": [{"state": {"terminated": {}}}], "hard": {"cpu": {}}}}),
    ];
    for (group, kind) in kinds {
        let t = render(group, kind, &junk);
        let width = t["columnDefinitions"].as_array().map_or(0, Vec::len);
        assert!(width >= 2, "{kind}");
        for row in t["rows"].as_array().expect("rows") {
            assert_eq!(
                row["cells"].as_array().map_or(0, Vec::len),
                width,
                "{group}/{kind}"
            );
        }
    }
}
