//! Defaulting tests: bare objects come out exactly as upstream stores them.

use serde_json::{json, Value};

use super::apply;

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    apply(group, kind, &mut obj);
    obj
}

#[test]
fn bare_deployment_matches_upstream() {
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
        }
    });
    let want = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "image": "nginx",
                        "imagePullPolicy": "Always",
                        "name": "nginx",
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"
                    }],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30
                }
            }
        },
        "status": {}
    });
    assert_eq!(defaulted("apps", "Deployment", obj), want);
}

#[test]
fn bare_pod_matches_upstream() {
    let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let want = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [{
                "image": "busybox:1.36",
                "imagePullPolicy": "IfNotPresent",
                "name": "c",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"}
    });
    assert_eq!(defaulted("", "Pod", obj), want);
}

#[test]
fn defaulting_is_idempotent() {
    for (group, kind, obj) in [
        (
            "apps",
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}),
        ),
        (
            "",
            "Service",
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
        ),
        (
            "batch",
            "CronJob",
            json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}}}),
        ),
    ] {
        let once = defaulted(group, kind, obj);
        assert_eq!(defaulted(group, kind, once.clone()), once, "{kind}");
    }
}

#[test]
fn image_pull_policy() {
    let policy = |image: &str| {
        let p = defaulted(
            "",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": image}]}}),
        );
        p["spec"]["containers"][0]["imagePullPolicy"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(policy("nginx"), "Always");
    assert_eq!(policy("nginx:latest"), "Always");
    assert_eq!(policy("nginx:1.27"), "IfNotPresent");
    assert_eq!(policy("localhost:5000/app"), "Always");
    assert_eq!(
        policy("registry.example.com:5000/team/app:v1"),
        "IfNotPresent"
    );
    assert_eq!(
        policy("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        "IfNotPresent"
    );
    assert_eq!(policy("Nginx"), "IfNotPresent");
    let p = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}),
    );
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
}

#[test]
fn pod_details() {
    let p = defaulted(
        "",
        "Pod",
        json!({"spec": {
            "hostNetwork": true,
            "containers": [{"name": "c", "image": "x:1",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "500m", "memory": "1024Mi"}},
                "readinessProbe": {"httpGet": {"port": 8080}},
                "livenessProbe": {"grpc": {"port": 9000}, "timeoutSeconds": 0},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
            "volumes": [{"name": "a"}, {"name": "b", "secret": {"secretName": "s"}},
                {"name": "c", "configMap": {"name": "c", "defaultMode": 256}},
                {"name": "d", "hostPath": {"path": "/x"}},
                {"name": "e", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]
        }}),
    );
    let c = &p["spec"]["containers"][0];
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(
        c["livenessProbe"]["grpc"],
        json!({"port": 9000, "service": ""})
    );
    assert_eq!(c["livenessProbe"]["timeoutSeconds"], 1);
    assert_eq!(
        c["env"][0]["valueFrom"]["fieldRef"],
        json!({"apiVersion": "v1", "fieldPath": "metadata.name"})
    );
    let v = &p["spec"]["volumes"];
    assert_eq!(v[0], json!({"name": "a", "emptyDir": {}}));
    assert_eq!(
        v[1]["secret"],
        json!({"secretName": "s", "defaultMode": 420})
    );
    assert_eq!(v[2]["configMap"]["defaultMode"], 256);
    assert_eq!(v[3]["hostPath"], json!({"path": "/x", "type": ""}));
    assert_eq!(
        v[4]["projected"],
        json!({"defaultMode": 420, "sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 3600}}]})
    );
    assert_eq!(
        p["status"],
        json!({"phase": "Pending", "qosClass": "Guaranteed"})
    );
    let b = defaulted(
        "",
        "Pod",
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}]}}),
    );
    assert_eq!(b["status"]["qosClass"], "Burstable");
}

#[test]
fn nulls_quantities_and_times_are_normalised() {
    let p = defaulted(
        "",
        "Pod",
        json!({
            "metadata": {"name": "p", "labels": null, "creationTimestamp": "2024-05-01T12:00:00.123+02:00"},
            "spec": {"nodeName": null, "containers": [{"name": "c", "image": "x:1", "args": null,
                "resources": {"requests": {"cpu": 0.5, "memory": "0.5Gi", "ephemeral-storage": "100n"}}}]}
        }),
    );
    assert_eq!(
        p["metadata"],
        json!({"name": "p", "creationTimestamp": "2024-05-01T10:00:00Z"})
    );
    assert!(p["spec"].get("nodeName").is_none());
    assert!(p["spec"]["containers"][0].get("args").is_none());
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1m"})
    );
    let e = defaulted(
        "events.k8s.io",
        "Event",
        json!({"metadata": {"name": "e"}, "eventTime": "2024-05-01T12:00:00.1234567Z"}),
    );
    assert_eq!(e["eventTime"], "2024-05-01T12:00:00.123456Z");
    assert_eq!(e["deprecatedFirstTimestamp"], Value::Null);
    assert_eq!(e["regarding"], json!({}));
}

#[test]
fn workload_defaults() {
    let ds = defaulted(
        "apps",
        "DaemonSet",
        json!({"spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
    let sts = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    );
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0],
        json!({
        "metadata": {"name": "data", "creationTimestamp": null},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"},
        "status": {"phase": "Pending"}})
    );
    let rs = defaulted("apps", "ReplicaSet", json!({"spec": {}}));
    assert_eq!(rs["spec"]["replicas"], 1);
    let recreate = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"strategy": {"type": "Recreate"}}}),
    );
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn job_defaults_and_generated_selector() {
    let j = defaulted(
        "batch",
        "Job",
        json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}
        }),
    );
    let labels = json!({"app": "pi", "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "u-1", "job-name": "pi"});
    assert_eq!(j["metadata"]["labels"], labels);
    assert_eq!(j["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(
        j["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    for (k, v) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manualSelector", json!(false)),
    ] {
        assert_eq!(j["spec"][k], v, "{k}");
    }
    assert!(super::super::validation::validate("batch", "Job", &j, None).is_empty());
    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}}}),
    );
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(
        cj["spec"]["jobTemplate"]["metadata"],
        json!({"creationTimestamp": null})
    );
    assert!(cj["spec"]["jobTemplate"]["spec"]
        .get("backoffLimit")
        .is_none());
}

#[test]
fn service_defaults() {
    let s = defaulted(
        "",
        "Service",
        json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
    );
    assert_eq!(
        s["spec"],
        json!({
            "selector": {"app": "web"},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}],
            "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
            "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
        })
    );
    assert_eq!(s["status"], json!({"loadBalancer": {}}));
    let lb = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(
        lb["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    let headless = defaulted("", "Service", json!({"spec": {"clusterIP": "None"}}));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
    let ext = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "a.b"}}),
    );
    assert!(ext["spec"].get("ipFamilies").is_none());
    assert!(ext["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn core_kind_defaults() {
    let s = defaulted(
        "",
        "Secret",
        json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "hi"}}),
    );
    assert_eq!(
        s,
        json!({"metadata": {"name": "s"}, "data": {"a": "YQ==", "b": "aGk="}, "type": "Opaque"})
    );
    let ns = defaulted(
        "",
        "Namespace",
        json!({"metadata": {"name": "team", "namespace": "x"}}),
    );
    assert_eq!(
        ns,
        json!({"metadata": {"name": "team", "labels": {"kubernetes.io/metadata.name": "team"}}, "status": {"phase": "Active"}})
    );
    let pvc = defaulted(
        "",
        "PersistentVolumeClaim",
        json!({"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}),
    );
    assert_eq!(
        pvc["spec"],
        json!({"resources": {"requests": {"storage": "1Gi"}}, "volumeMode": "Filesystem"})
    );
    assert_eq!(pvc["status"], json!({"phase": "Pending"}));
    let pv = defaulted(
        "",
        "PersistentVolume",
        json!({"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}}),
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["status"], json!({"phase": "Pending"}));
    let node = defaulted(
        "",
        "Node",
        json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4", "memory": "8Gi"}}}),
    );
    assert_eq!(
        node["status"]["allocatable"],
        json!({"cpu": "4", "memory": "8Gi"})
    );
    let lr = defaulted(
        "",
        "LimitRange",
        json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}}),
    );
    assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
    assert_eq!(
        lr["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "2", "memory": "64Mi"})
    );
    let ep = defaulted(
        "",
        "Endpoints",
        json!({"subsets": [{"ports": [{"port": 80}]}]}),
    );
    assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
}

#[test]
fn other_group_defaults() {
    let rb = defaulted(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "User", "name": "u"}, {"kind": "Group", "name": "g"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "");
    assert_eq!(rb["subjects"][1]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][2]["apiGroup"], "rbac.authorization.k8s.io");
    let role = defaulted(
        "rbac.authorization.k8s.io",
        "Role",
        json!({"metadata": {"name": "r"}}),
    );
    assert_eq!(role["rules"], Value::Null);
    assert!(role.as_object().unwrap().contains_key("rules"));
    let np = defaulted(
        "networking.k8s.io",
        "NetworkPolicy",
        json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["podSelector"], json!({}));
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    let slice = defaulted(
        "discovery.k8s.io",
        "EndpointSlice",
        json!({"addressType": "IPv4", "ports": [{"port": 80}]}),
    );
    assert_eq!(
        slice["ports"],
        json!([{"port": 80, "name": "", "protocol": "TCP"}])
    );
    assert_eq!(slice["endpoints"], Value::Null);
    let pc = defaulted(
        "scheduling.k8s.io",
        "PriorityClass",
        json!({"metadata": {"name": "p"}, "value": 10}),
    );
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let ev = defaulted(
        "",
        "Event",
        json!({"metadata": {"name": "e"}, "reason": "r"}),
    );
    assert_eq!(ev["reportingComponent"], "");
    assert_eq!(ev["eventTime"], Value::Null);
    assert_eq!(ev["source"], json!({}));
}
