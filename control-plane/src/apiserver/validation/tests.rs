//! Validation tests: upstream's causes for common mistakes, immutability on update, strict
//! decoding, and robustness on malformed input.

use serde_json::{json, Value};

use super::super::defaults;
use super::*;

/// Defaults then validates, as the REST layer does; returns `field: message` lines.
fn check(group: &str, kind: &str, mut obj: Value) -> Vec<String> {
    defaults::apply(group, kind, &mut obj);
    validate(group, kind, &obj, None)
        .iter()
        .map(FieldError::to_line)
        .collect()
}

fn check_update(group: &str, kind: &str, mut old: Value, mut new: Value) -> Vec<String> {
    defaults::apply(group, kind, &mut old);
    defaults::apply(group, kind, &mut new);
    validate(group, kind, &new, Some(&old))
        .iter()
        .map(FieldError::to_line)
        .collect()
}

fn deployment(labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}
            }
        }
    })
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

#[test]
fn valid_deployment_has_no_errors() {
    assert_eq!(
        check("apps", "Deployment", deployment(json!({"app": "web"}))),
        Vec::<String>::new()
    );
}

#[test]
fn deployment_selector_mismatch_gives_upstream_cause() {
    let mut obj = deployment(json!({"app": "other"}));
    defaults::apply("apps", "Deployment", &mut obj);
    let errs = validate("apps", "Deployment", &obj, None);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.template.metadata.labels");
    assert_eq!(errs[0].reason(), "FieldValueInvalid");
    assert_eq!(
        errs[0].message(),
        "Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
    );
}

#[test]
fn deployment_without_selector() {
    let mut obj = deployment(json!({"app": "web"}));
    obj["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(
        check("apps", "Deployment", obj),
        vec![
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
}

#[test]
fn deployment_strategy_and_replicas() {
    let mut obj = deployment(json!({"app": "web"}));
    obj["spec"]["replicas"] = json!(-1);
    obj["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
    obj["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    assert_eq!(
        check("apps", "Deployment", obj),
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
        ]
    );
}

#[test]
fn pod_without_containers() {
    assert_eq!(
        check("", "Pod", pod(json!({}))),
        vec!["spec.containers: Required value"]
    );
    assert_eq!(
        check("", "Pod", pod(json!({"containers": []}))),
        vec!["spec.containers: Required value"]
    );
}

#[test]
fn pod_container_mistakes() {
    let errs = check(
        "",
        "Pod",
        pod(json!({
            "restartPolicy": "Sometimes",
            "containers": [
                {"name": "Web", "image": "nginx", "imagePullPolicy": "Sometimes",
                 "ports": [{"containerPort": 70000, "protocol": "TCPX"}],
                 "env": [{"name": "A=B", "value": "x"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                 "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}},
                {"name": "Web", "image": ""}
            ]
        })),
    );
    let expected = [
        "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[0].protocol: Unsupported value: \"TCPX\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
        "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        "spec.containers[1].image: Required value",
        "spec.containers[1].name: Duplicate value: \"Web\"",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
    ];
    for want in expected {
        assert!(
            errs.iter().any(|e| e == want),
            "missing {want}\n got {errs:#?}"
        );
    }
}

#[test]
fn pod_volumes() {
    let errs = check(
        "",
        "Pod",
        pod(json!({
            "volumes": [
                {"name": "a", "emptyDir": {}},
                {"name": "a", "configMap": {"name": "cm", "defaultMode": 4096}},
                {"name": "b", "emptyDir": {}, "hostPath": {"path": "/x"}}
            ],
            "containers": [{"name": "c", "image": "busybox", "volumeMounts": [
                {"name": "a", "mountPath": "/a"}, {"name": "a", "mountPath": "/a"}]}]
        })),
    );
    assert_eq!(
        errs,
        vec![
            "spec.volumes[1].configMap.defaultMode: Invalid value: 4096: must be a number between 0 and 0777 (octal), both inclusive",
            "spec.volumes[1].name: Duplicate value: \"a\"",
            "spec.volumes[2].hostPath: Forbidden: may not specify more than 1 volume type",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
        ]
    );
}

#[test]
fn bad_names() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Bad.Name"}});
    assert_eq!(
        check("", "Namespace", ns),
        vec!["metadata.name: Invalid value: \"Bad.Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1web", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]}});
    assert_eq!(
        check("", "Service", svc),
        vec!["metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
    );
    let role =
        json!({"kind": "Role", "metadata": {"name": "a/b", "namespace": "default"}, "rules": []});
    assert_eq!(
        check("rbac.authorization.k8s.io", "Role", role),
        vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    );
    let role = json!({"kind": "ClusterRole", "metadata": {"name": "system:controller:x"}});
    assert!(check("rbac.authorization.k8s.io", "ClusterRole", role).is_empty());
    let cm =
        json!({"kind": "ConfigMap", "metadata": {"generateName": "cfg-", "namespace": "default"}});
    assert_eq!(
        check("", "ConfigMap", cm),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
    let long = "a".repeat(64);
    let ns = json!({"kind": "Namespace", "metadata": {"name": long}});
    assert_eq!(
        check("", "Namespace", ns),
        vec![
            format!("metadata.name: Invalid value: \"{long}\": must be no more than 63 characters"),
            format!(
                "metadata.labels: Invalid value: \"{long}\": must be no more than 63 characters"
            ),
        ]
    );
    assert!(dns1123_label_errors("abc-1").is_empty());
    assert!(!dns1123_label_errors("a.b").is_empty());
    assert!(dns1123_subdomain_errors("a.b-c").is_empty());
    assert!(!dns1123_subdomain_errors("-a").is_empty());
    assert!(!dns1123_subdomain_errors("").is_empty());
}

#[test]
fn namespace_is_required_for_namespaced_kinds() {
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c"}});
    assert_eq!(
        check("", "ConfigMap", cm),
        vec!["metadata.namespace: Required value"]
    );
}

#[test]
fn labels_and_annotations() {
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default",
        "labels": {"bad key": "v", "ok": "bad value!"},
        "annotations": {"big": "x".repeat(300 * 1024)}}});
    assert_eq!(
        check("", "ConfigMap", cm),
        vec![
            "metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            "metadata.labels: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            "metadata.annotations: Too long: may not be more than 262144 bytes",
        ]
    );
}

#[test]
fn immutable_selector_on_update() {
    let old = deployment(json!({"app": "web"}));
    let mut new = deployment(json!({"app": "b"}));
    new["spec"]["selector"] = json!({"matchLabels": {"app": "b"}});
    let mut old_d = old.clone();
    defaults::apply("apps", "Deployment", &mut old_d);
    defaults::apply("apps", "Deployment", &mut new);
    let errs = validate("apps", "Deployment", &new, Some(&old_d));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].field, "spec.selector");
    assert_eq!(
        errs[0].message(),
        "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    );
    // An unchanged object is a valid update; so is a change of replicas.
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert!(check_update("apps", "Deployment", old.clone(), scaled).is_empty());
    let mut renamed = old.clone();
    renamed["metadata"]["name"] = json!("other");
    assert_eq!(
        check_update("apps", "Deployment", old, renamed),
        vec!["metadata.name: Invalid value: \"other\": field is immutable"]
    );
}

#[test]
fn daemon_set_and_replica_set_and_stateful_set() {
    let mut ds = deployment(json!({"app": "web"}));
    ds["kind"] = json!("DaemonSet");
    assert!(check("apps", "DaemonSet", ds.clone()).is_empty());
    ds["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
    assert_eq!(
        check("apps", "DaemonSet", ds),
        vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
    );
    let mut rs = deployment(json!({"app": "web"}));
    rs["kind"] = json!("ReplicaSet");
    assert!(check("apps", "ReplicaSet", rs).is_empty());
    let mut sts = deployment(json!({"app": "web"}));
    sts["kind"] = json!("StatefulSet");
    sts["spec"]["serviceName"] = json!("web");
    assert!(check("apps", "StatefulSet", sts.clone()).is_empty());
    let mut changed = sts.clone();
    changed["spec"]["serviceName"] = json!("other");
    assert_eq!(
        check_update("apps", "StatefulSet", sts.clone(), changed),
        vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
    );
    let mut scaled = sts.clone();
    scaled["spec"]["replicas"] = json!(3);
    assert!(check_update("apps", "StatefulSet", sts, scaled).is_empty());
}

fn job(restart: Option<&str>) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    json!({"kind": "Job", "metadata": {"name": "pi", "namespace": "default", "uid": "1234"},
        "spec": {"template": {"spec": spec}}})
}

#[test]
fn job_restart_policy_and_selector() {
    assert!(check("batch", "Job", job(Some("Never"))).is_empty());
    assert_eq!(
        check("batch", "Job", job(None)),
        vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
    );
    let mut manual = job(Some("Never"));
    manual["spec"]["manualSelector"] = json!(true);
    assert_eq!(check("batch", "Job", manual), vec!["spec.selector: Required value", "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`"]);
}

#[test]
fn job_template_is_immutable() {
    let old = job(Some("Never"));
    let mut new = job(Some("Never"));
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
    let errs = check_update("batch", "Job", old, new);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.template: Invalid value: "),
        "{errs:?}"
    );
    assert!(errs[0].ends_with(": field is immutable"), "{errs:?}");
}

#[test]
fn cron_job_schedule() {
    let cj = |schedule: &str| {
        json!({"kind": "CronJob", "metadata": {"name": "c", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    };
    assert!(check("batch", "CronJob", cj("*/5 * * * *")).is_empty());
    assert_eq!(
        check("batch", "CronJob", cj("every minute")),
        vec!["spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"]
    );
    assert_eq!(
        check("batch", "CronJob", cj("TZ=UTC 0 * * * *")),
        vec!["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
    );
}

fn service(spec: Value) -> Value {
    json!({"kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

#[test]
fn service_ports_and_type() {
    assert!(check(
        "",
        "Service",
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}))
    )
    .is_empty());
    assert_eq!(
        check("", "Service", service(json!({"ports": [{"port": 80}, {"port": 0, "name": "b"}], "type": "Bogus"}))),
        vec![
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ]
    );
    assert_eq!(
        check("", "Service", service(json!({}))),
        vec!["spec.ports: Required value"]
    );
    assert!(check("", "Service", service(json!({"clusterIP": "None"}))).is_empty());
    assert!(check(
        "",
        "Service",
        service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
    )
    .is_empty());
    assert!(check(
        "",
        "Service",
        service(json!({"type": "ExternalName", "externalName": "example.com"}))
    )
    .is_empty());
}

#[test]
fn service_cluster_ip_is_immutable() {
    let old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}));
    let new = service(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 53}]}));
    assert_eq!(
        check_update("", "Service", old, new),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
        ]
    );
}

#[test]
fn config_map_and_secret() {
    let cm = json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
        "data": {"bad key": "x", "big": "y".repeat(1024 * 1024)}});
    assert_eq!(
        check("", "ConfigMap", cm),
        vec![
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ": Too long: may not be more than 1048576 bytes",
        ]
    );
    let old = json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
        "immutable": true, "data": {"a": "YQ=="}});
    let mut new = old.clone();
    new["data"]["a"] = json!("Yg==");
    assert_eq!(
        check_update("", "Secret", old.clone(), new),
        vec!["data: Forbidden: field is immutable when `immutable` is set"]
    );
    let mut retyped = old.clone();
    retyped["type"] = json!("kubernetes.io/tls");
    retyped["data"] = json!({"tls.crt": "YQ==", "tls.key": "YQ=="});
    assert_eq!(
        check_update("", "Secret", old, retyped),
        vec![
            "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
            "data: Forbidden: field is immutable when `immutable` is set",
        ]
    );
    let tls = json!({"kind": "Secret", "metadata": {"name": "t", "namespace": "default"}, "type": "kubernetes.io/tls"});
    assert_eq!(
        check("", "Secret", tls),
        vec![
            "data[tls.crt]: Required value",
            "data[tls.key]: Required value"
        ]
    );
}

#[test]
fn rbac_rules_and_bindings() {
    let role = json!({"kind": "Role", "metadata": {"name": "r", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
    assert_eq!(
        check("rbac.authorization.k8s.io", "Role", role),
        vec![
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
        ]
    );
    let rb = json!({"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "default"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "User", "name": "alice"}, {"kind": "Robot", "name": "x"}]});
    assert_eq!(
        check("rbac.authorization.k8s.io", "RoleBinding", rb.clone()),
        vec!["subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""]
    );
    let mut changed = rb.clone();
    changed["roleRef"]["name"] = json!("other");
    changed["subjects"] = json!([]);
    let mut old = rb;
    old["subjects"] = json!([]);
    assert_eq!(
        check_update("rbac.authorization.k8s.io", "RoleBinding", old, changed),
        vec!["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"other\"}: cannot change roleRef"]
    );
}

#[test]
fn smaller_kinds() {
    let pc = json!({"kind": "PriorityClass", "metadata": {"name": "high"}, "value": 2_000_000_000});
    assert_eq!(
        check("scheduling.k8s.io", "PriorityClass", pc),
        vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    let lease = json!({"kind": "Lease", "metadata": {"name": "l", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 0}});
    assert_eq!(
        check("coordination.k8s.io", "Lease", lease),
        vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
    let slice = json!({"kind": "EndpointSlice", "metadata": {"name": "s", "namespace": "default"},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["fe80::1"]}],
        "ports": [{"port": 80}]});
    assert_eq!(
        check("discovery.k8s.io", "EndpointSlice", slice),
        vec![
            "endpoints[1].addresses[0]: Invalid value: \"fe80::1\": must be a valid IPv4 address",
            "endpoints[1].addresses[0]: Invalid value: \"fe80::1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ]
    );
    let np = json!({"kind": "NetworkPolicy", "metadata": {"name": "n", "namespace": "default"},
        "spec": {"ingress": [{"from": [{}], "ports": [{"port": 70000}]}]}});
    assert_eq!(
        check("networking.k8s.io", "NetworkPolicy", np),
        vec![
            "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ingress[0].from[0]: Required value: must specify a peer",
        ]
    );
    let ev = json!({"kind": "Event", "metadata": {"name": "e.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}, "reason": "Started"});
    assert_eq!(
        check("", "Event", ev),
        vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
    let pvc = json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "default"}, "spec": {}});
    assert_eq!(
        check("", "PersistentVolumeClaim", pvc),
        vec![
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]
    );
    let quota = json!({"kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "default"},
        "spec": {"hard": {"pods": "1.5", "cpu": "-1"}}});
    assert_eq!(
        check("", "ResourceQuota", quota),
        vec![
            "spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.hard[pods]: Invalid value: \"1500m\": must be an integer",
        ]
    );
}

#[test]
fn pvc_spec_is_immutable() {
    let old = json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let mut new = old.clone();
    new["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let errs = check_update("", "PersistentVolumeClaim", old, new);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"));
}

#[test]
fn pod_updates_are_limited() {
    let old = pod(json!({"containers": [{"name": "c", "image": "nginx:1"}]}));
    let mut image = old.clone();
    image["spec"]["containers"][0]["image"] = json!("nginx:2");
    assert!(check_update("", "Pod", old.clone(), image).is_empty());
    let mut bound = old.clone();
    bound["spec"]["nodeName"] = json!("node-1");
    assert_eq!(
        check_update("", "Pod", old.clone(), bound.clone()).len(),
        1,
        "only pods/binding assigns a node"
    );
    let mut moved = bound.clone();
    moved["spec"]["nodeName"] = json!("node-2");
    assert_eq!(
        check_update("", "Pod", bound, moved).len(),
        1,
        "a bound pod stays"
    );
    let mut ports = old.clone();
    ports["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let errs = check_update("", "Pod", old, ports);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{errs:?}");
}

#[test]
fn messages_and_reasons() {
    let e = |kind, value: Value, detail: &str| FieldError {
        field: "f".into(),
        kind,
        value,
        detail: detail.into(),
    };
    assert_eq!(
        e(FieldErrorKind::Required, Value::Null, "").message(),
        "Required value"
    );
    assert_eq!(
        e(FieldErrorKind::Forbidden, Value::Null, "no").message(),
        "Forbidden: no"
    );
    assert_eq!(
        e(FieldErrorKind::Invalid, json!("Foo"), "bad").message(),
        "Invalid value: \"Foo\": bad"
    );
    assert_eq!(
        e(FieldErrorKind::Invalid, json!(3), "bad").message(),
        "Invalid value: 3: bad"
    );
    assert_eq!(
        e(FieldErrorKind::Duplicate, json!("a\"b"), "").message(),
        "Duplicate value: \"a\\\"b\""
    );
    assert_eq!(
        e(
            FieldErrorKind::TooMany,
            json!(5),
            "must have at most 4 items"
        )
        .message(),
        "Too many: 5: must have at most 4 items"
    );
    assert_eq!(
        e(FieldErrorKind::Invalid, omit(), "x").message(),
        "Invalid value: x"
    );
    let reasons: Vec<&str> = [
        FieldErrorKind::Required,
        FieldErrorKind::Invalid,
        FieldErrorKind::NotSupported,
        FieldErrorKind::Duplicate,
        FieldErrorKind::Forbidden,
        FieldErrorKind::TooLong,
        FieldErrorKind::TooMany,
        FieldErrorKind::NotFound,
    ]
    .into_iter()
    .map(|k| e(k, Value::Null, "").reason())
    .collect();
    assert_eq!(
        reasons,
        [
            "FieldValueRequired",
            "FieldValueInvalid",
            "FieldValueNotSupported",
            "FieldValueDuplicate",
            "FieldValueForbidden",
            "FieldValueTooLong",
            "FieldValueTooMany",
            "FieldValueNotFound",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Strict decoding.

#[test]
fn unknown_fields_are_found_with_upstream_paths() {
    let mut obj = deployment(json!({"app": "web"}));
    obj["spec"]["replicass"] = json!(3);
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("nginx");
    obj["metadata"]["labelz"] = Value::Null;
    assert_eq!(
        unknown_fields("apps", "Deployment", &obj),
        Ok(vec![
            "metadata.labelz".to_string(),
            "spec.replicass".to_string(),
            "spec.template.spec.containers[0].imagee".to_string(),
        ])
    );
}

#[test]
fn valid_full_objects_have_no_unknown_fields() {
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {}, "annotations": null,
            "creationTimestamp": null, "finalizers": [], "ownerReferences": null,
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "time": "2024-01-01T00:00:00Z"}]},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": "web"}, "matchExpressions": []},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                "spec": {
                    "containers": [{"name": "nginx", "image": "nginx", "args": [], "env": [],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": 1, "memory": "128Mi"}, "requests": {}},
                        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "cfg", "configMap": {"name": "c", "items": null}}],
                    "nodeSelector": {}, "tolerations": [], "affinity": null, "securityContext": {}
                }
            }
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
            "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00+02:00"}]}
    });
    assert_eq!(unknown_fields("apps", "Deployment", &deploy), Ok(vec![]));
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {}, "ports": [{"port": 80, "targetPort": "http", "nodePort": null}],
            "clusterIP": null, "ipFamilies": [], "sessionAffinityConfig": {}, "externalIPs": null},
        "status": {"loadBalancer": {}}});
    assert_eq!(unknown_fields("", "Service", &svc), Ok(vec![]));
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": null,
            "resources": {}, "securityContext": {"capabilities": {"add": []}}}],
            "initContainers": [], "overhead": {}, "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}},
        "status": {}});
    assert_eq!(unknown_fields("", "Pod", &p), Ok(vec![]));
    let cr = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "r", "namespace": "default"}, "revision": 1,
        "data": {"spec": {"template": {"anything": ["goes"]}}}});
    assert_eq!(
        unknown_fields("apps", "ControllerRevision", &cr),
        Ok(vec![])
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
        "data": {"a": "YWJj"}, "stringData": {"b": "plain"}});
    assert_eq!(unknown_fields("", "Secret", &secret), Ok(vec![]));
}

#[test]
fn type_mismatches_are_errors() {
    let mut obj = deployment(json!({"app": "web"}));
    obj["spec"]["replicas"] = json!("3");
    assert_eq!(
        unknown_fields("apps", "Deployment", &obj),
        Err("Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32".to_string())
    );
    let mut obj = deployment(json!({"app": "web"}));
    obj["spec"]["template"]["spec"]["containers"] = json!({"name": "x"});
    assert_eq!(
        unknown_fields("apps", "Deployment", &obj),
        Err("Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container".to_string())
    );
    let p = pod(json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "lots"}}}]}));
    assert_eq!(
        unknown_fields("", "Pod", &p),
        Err("Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string())
    );
    let s = json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "not base64!"}});
    assert_eq!(
        unknown_fields("", "Secret", &s),
        Err("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3".to_string())
    );
    let p = pod(json!({"containers": [{"name": "c", "ports": [{"containerPort": 1.5}]}]}));
    assert_eq!(
        unknown_fields("", "Pod", &p),
        Err("Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number 1.5 into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32".to_string())
    );
    let ns = json!({"kind": "Namespace", "metadata": {"labels": {"a": 1}}});
    assert_eq!(
        unknown_fields("", "Namespace", &ns),
        Err("Namespace in version \"v1\" cannot be handled as a Namespace: json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string".to_string())
    );
    assert_eq!(
        unknown_fields("example.com", "Widget", &json!({"x": 1})),
        Ok(vec![])
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness.

fn junk_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(1),
        json!(-1.5),
        json!("x"),
        json!(true),
        json!([]),
        json!([null, 1, "a", {}]),
        json!({}),
        json!({"a": null}),
    ]
}

/// Replaces, one at a time, every value in the object with every kind of junk, and checks
/// that defaulting, validation and strict decoding neither panic nor loop.
#[test]
fn malformed_input_never_panics() {
    // Every kind the API server stores.
    let kinds = super::super::catalog::RESOURCES
        .iter()
        .filter(|r| r.stored)
        .map(|r| (r.group, r.kind));
    let base = json!({
        "metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"}, "annotations": {"a": "b"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "controller": true}]},
        "spec": {
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 1}],
                "resources": {"limits": {"cpu": "1"}}, "livenessProbe": {"httpGet": {"port": 1}},
                "env": [{"name": "a", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "volumes": [{"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}],
            "selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}},
            "ports": [{"port": 1, "targetPort": "x"}], "schedule": "* * * * *",
            "strategy": {"rollingUpdate": {"maxSurge": "1%"}}, "updateStrategy": {"type": "RollingUpdate"},
            "hard": {"cpu": "1"}, "limits": [{"type": "Container", "max": {"cpu": "1"}}],
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
            "taints": [{"key": "k", "effect": "NoSchedule"}], "podCIDRs": ["10.0.0.0/24"]
        },
        "data": {"a": "YQ=="}, "rules": [{"verbs": ["get"]}], "subjects": [{"kind": "User", "name": "u"}],
        "roleRef": {"kind": "Role", "name": "r"}, "subsets": [{"addresses": [{"ip": "1.2.3.4"}]}],
        "endpoints": [{"addresses": ["1.2.3.4"]}], "addressType": "IPv4", "value": 1,
        "involvedObject": {"namespace": "default"}, "eventTime": "2024-01-01T00:00:00.000000Z"
    });
    let mut paths = Vec::new();
    collect_paths(&base, String::new(), &mut paths, 0);
    for (group, kind) in kinds {
        for path in &paths {
            for junk in junk_values() {
                let mut obj = base.clone();
                if let Some(slot) = obj.pointer_mut(path) {
                    *slot = junk.clone();
                }
                let _ = unknown_fields(group, kind, &obj);
                let old = obj.clone();
                defaults::apply(group, kind, &mut obj);
                let _ = validate(group, kind, &obj, None);
                let _ = validate(group, kind, &obj, Some(&old));
                let _ = validate(group, kind, &old, Some(&obj));
            }
        }
        for junk in junk_values() {
            let mut j = junk.clone();
            defaults::apply(group, kind, &mut j);
            let _ = validate(group, kind, &j, None);
            let _ = unknown_fields(group, kind, &j);
        }
    }
}

fn collect_paths(v: &Value, at: String, out: &mut Vec<String>, depth: usize) {
    if depth > 12 {
        return;
    }
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                collect_paths(x, format!("{at}/{k}"), out, depth + 1);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_paths(x, format!("{at}/{i}"), out, depth + 1);
            }
        }
        _ => {}
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let mut v = json!("leaf");
    for _ in 0..5000 {
        v = json!({"spec": v});
    }
    let mut obj = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i", "securityContext": v}]}});
    let _ = unknown_fields("", "Pod", &obj);
    defaults::apply("", "Pod", &mut obj);
    let _ = validate("", "Pod", &obj, None);
    std::mem::forget(obj);
}
