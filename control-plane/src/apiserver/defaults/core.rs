//! core/v1 defaults: pods and pod specs (shared with every workload template), services,
//! secrets, namespaces, nodes, volumes and claims, quotas and limit ranges.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::{
    each, existing, quantity, round_resource_list, set, set_int, set_str, sub, text, unset,
};

/// Pod: the PodSpec defaults plus the Pod-only ones (requests from limits, service links,
/// host-network ports) and the status a new pod starts with.
pub(super) fn pod(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        for list in ["containers", "initContainers"] {
            each(spec, list, requests_from_limits);
        }
        set(spec, "enableServiceLinks", Value::Bool(true));
        if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
            for list in ["containers", "initContainers"] {
                each(spec, list, |c| {
                    each(c, "ports", |p| {
                        if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                            let cp = p.get("containerPort").cloned().unwrap_or(Value::Null);
                            if let Some(m) = p.as_object_mut() {
                                m.insert("hostPort".into(), cp);
                            }
                        }
                    })
                });
            }
        }
        pod_spec(spec);
        round_resource_list(spec, "overhead");
    }
    if unset(obj, "status") {
        let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }
}

fn requests_from_limits(c: &mut Value) {
    let Some(res) = existing(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let missing: Vec<(String, Value)> = limits
        .into_iter()
        .filter(|(k, _)| res.get("requests").and_then(|r| r.get(k)).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    if let Some(req) = sub(res, "requests").and_then(Value::as_object_mut) {
        req.extend(missing);
    }
}

/// Upstream's pod QoS class (`GetPodQOS`) for a new pod's status.
fn qos_class(spec: &Value) -> &'static str {
    let mut requests: Map<String, Value> = Map::new();
    let mut limits: Map<String, Value> = Map::new();
    let mut guaranteed = true;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .chain(spec.get("initContainers").and_then(Value::as_array))
        .flatten();
    let add = |acc: &mut Map<String, Value>, name: &str, q: &Value| {
        let sum = match (acc.get(name).and_then(quantity), quantity(q)) {
            (Some(a), Some(b)) => a.add(&b).canonical(),
            (None, Some(b)) => b.canonical(),
            _ => return,
        };
        acc.insert(name.to_string(), Value::from(sum));
    };
    for c in containers {
        let res = c.get("resources").unwrap_or(&Value::Null);
        if let Some(r) = res.get("requests").and_then(Value::as_object) {
            for (name, q) in r {
                if (name == "cpu" || name == "memory")
                    && quantity(q).is_some_and(|q| q.is_positive())
                {
                    add(&mut requests, name, q);
                }
            }
        }
        let mut found = (false, false);
        if let Some(l) = res.get("limits").and_then(Value::as_object) {
            for (name, q) in l {
                if (name == "cpu" || name == "memory")
                    && quantity(q).is_some_and(|q| q.is_positive())
                {
                    if name == "cpu" {
                        found.0 = true;
                    } else {
                        found.1 = true;
                    }
                    add(&mut limits, name, q);
                }
            }
        }
        if !(found.0 && found.1) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            let same = match (limits.get(name).and_then(quantity), quantity(req)) {
                (Some(l), Some(r)) => l.cmp(&r) == std::cmp::Ordering::Equal,
                _ => false,
            };
            if !same {
                guaranteed = false;
                break;
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// PodTemplate: the template's spec gets the PodSpec defaults.
pub(super) fn pod_template(obj: &mut Value) {
    if let Some(t) = sub(obj, "template") {
        pod_template_spec(t);
    }
}

/// A PodTemplateSpec inside a workload: template metadata and PodSpec defaults.
pub(super) fn pod_template_spec(t: &mut Value) {
    template_metadata(t);
    if let Some(spec) = sub(t, "spec") {
        pod_spec(spec);
    }
}

/// Embedded object metadata always carries `creationTimestamp: null` in Go's encoding.
pub(super) fn template_metadata(t: &mut Value) {
    if let Some(m) = sub(t, "metadata").and_then(Value::as_object_mut) {
        m.entry("creationTimestamp").or_insert(Value::Null);
    }
}

/// `SetDefaults_PodSpec` and everything nested in a PodSpec.
pub(super) fn pod_spec(spec: &mut Value) {
    set_str(spec, "dnsPolicy", "ClusterFirst");
    set_str(spec, "restartPolicy", "Always");
    set(spec, "securityContext", json!({}));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set_str(spec, "schedulerName", "default-scheduler");
    each(spec, "volumes", volume);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        each(spec, list, container);
    }
    if let Some(r) = existing(spec, "resources") {
        round_resource_list(r, "limits");
        round_resource_list(r, "requests");
    }
}

fn container(c: &mut Value) {
    if text(c, "imagePullPolicy").is_empty() {
        let policy = if image_tag(text(c, "image")).as_deref() == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        set_str(c, "imagePullPolicy", policy);
    }
    set_str(c, "terminationMessagePath", "/dev/termination-log");
    set_str(c, "terminationMessagePolicy", "File");
    each(c, "ports", |p| set_str(p, "protocol", "TCP"));
    each(c, "env", |e| {
        if let Some(f) = existing(e, "valueFrom").and_then(|v| existing(v, "fieldRef")) {
            set_str(f, "apiVersion", "v1");
        }
    });
    if let Some(r) = sub(c, "resources") {
        round_resource_list(r, "limits");
        round_resource_list(r, "requests");
    }
    for probe_field in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing(c, probe_field) {
            probe(p);
        }
    }
    if let Some(l) = existing(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = existing(l, hook).and_then(|h| existing(h, "httpGet")) {
                http_get(h);
            }
        }
    }
}

fn probe(p: &mut Value) {
    set_int(p, "timeoutSeconds", 1);
    set_int(p, "periodSeconds", 10);
    set_int(p, "successThreshold", 1);
    set_int(p, "failureThreshold", 3);
    if let Some(h) = existing(p, "httpGet") {
        http_get(h);
    }
    if let Some(g) = existing(p, "grpc") {
        set(g, "service", json!(""));
    }
}

fn http_get(h: &mut Value) {
    set_str(h, "path", "/");
    set_str(h, "scheme", "HTTP");
}

/// The tag an image reference pulls, as upstream's `parsers.ParseImageName` sees it: the
/// explicit tag, `latest` when there is neither tag nor digest, "" for digest-only references,
/// None when the reference does not parse.
pub(super) fn image_tag(image: &str) -> Option<String> {
    if image.is_empty() || image.trim() != image {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if digest.is_some_and(|d| !d.contains(':')) {
        return None;
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            parts.remove(0);
        }
    }
    let path_ok = parts.iter().all(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
            && p.as_bytes()[0].is_ascii_alphanumeric()
    });
    if !path_ok {
        return None;
    }
    match tag {
        Some(t) => {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
                && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_');
            ok.then(|| t.to_string())
        }
        None if digest.is_some() => Some(String::new()),
        None => Some("latest".to_string()),
    }
}

fn volume(v: &mut Value) {
    const SOURCES: &[&str] = &[
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    ];
    if SOURCES.iter().all(|s| unset(v, s)) {
        if let Some(m) = v.as_object_mut() {
            m.insert("emptyDir".into(), json!({}));
        }
    }
    if let Some(h) = existing(v, "hostPath") {
        set(h, "type", json!(""));
    }
    if let Some(s) = existing(v, "secret") {
        set(s, "defaultMode", json!(420));
    }
    if let Some(c) = existing(v, "configMap") {
        set(c, "defaultMode", json!(420));
    }
    if let Some(d) = existing(v, "downwardAPI") {
        set(d, "defaultMode", json!(420));
        each(d, "items", field_ref_version);
    }
    if let Some(p) = existing(v, "projected") {
        set(p, "defaultMode", json!(420));
        each(p, "sources", |src| {
            if let Some(d) = existing(src, "downwardAPI") {
                each(d, "items", field_ref_version);
            }
            if let Some(t) = existing(src, "serviceAccountToken") {
                set(t, "expirationSeconds", json!(3600));
            }
        });
    }
    legacy_volume_sources(v);
    if let Some(t) = existing(v, "ephemeral").and_then(|e| existing(e, "volumeClaimTemplate")) {
        if let Some(spec) = sub(t, "spec") {
            pvc_spec(spec);
        }
    }
}

fn field_ref_version(item: &mut Value) {
    if let Some(f) = existing(item, "fieldRef") {
        set_str(f, "apiVersion", "v1");
    }
}

/// Declarative defaults of the in-tree volume plugins (shared by pod volumes and PVs).
fn legacy_volume_sources(v: &mut Value) {
    if let Some(i) = existing(v, "iscsi") {
        set_str(i, "iscsiInterface", "default");
    }
    if let Some(r) = existing(v, "rbd") {
        set_str(r, "pool", "rbd");
        set_str(r, "user", "admin");
        set_str(r, "keyring", "/etc/ceph/keyring");
    }
    if let Some(a) = existing(v, "azureDisk") {
        set(a, "cachingMode", json!("ReadWrite"));
        set(a, "fsType", json!("ext4"));
        set(a, "readOnly", json!(false));
        set(a, "kind", json!("Shared"));
    }
    if let Some(s) = existing(v, "scaleIO") {
        set_str(s, "storageMode", "ThinProvisioned");
        set_str(s, "fsType", "xfs");
    }
}

/// Service: type, session affinity, port protocols and target ports, traffic policies, and the
/// IP family fields the allocator fills in on a single-stack IPv4 cluster.
pub(super) fn service(obj: &mut Value) {
    let Some(spec) = sub(obj, "spec") else {
        return;
    };
    set_str(spec, "sessionAffinity", "None");
    match text(spec, "sessionAffinity") {
        "None" => {
            if let Some(m) = spec.as_object_mut() {
                m.remove("sessionAffinityConfig");
            }
        }
        "ClientIP" => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.get("clientIP"))
                .and_then(|c| c.get("timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                if let Some(m) = spec.as_object_mut() {
                    m.insert(
                        "sessionAffinityConfig".into(),
                        json!({"clientIP": {"timeoutSeconds": 10800}}),
                    );
                }
            }
        }
        _ => {}
    }
    set_str(spec, "type", "ClusterIP");
    each(spec, "ports", |p| {
        set_str(p, "protocol", "TCP");
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(n) => n.as_i64() == Some(0),
        };
        if target_unset {
            let port = p.get("port").cloned().unwrap_or(json!(0));
            if let Some(m) = p.as_object_mut() {
                m.insert("targetPort".into(), port);
            }
        }
    });
    let ty = text(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if ty == "LoadBalancer" || ty == "NodePort" || (ty == "ClusterIP" && has_external_ips) {
        set_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        cluster_ips_and_families(spec);
    }
    if unset(obj, "status") {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }
}

/// `clusterIP` and `clusterIPs` kept in step, and the IP family fields defaulted as the
/// service IP allocator does on a single-stack IPv4 cluster.
fn cluster_ips_and_families(spec: &mut Value) {
    let ip = text(spec, "clusterIP").to_string();
    let mut ips: Vec<String> = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(m) = spec.as_object_mut() {
        if !ip.is_empty() && ips.is_empty() {
            m.insert("clusterIPs".into(), json!([ip]));
            ips.push(ip);
        } else if ip.is_empty() && !ips.is_empty() {
            m.insert("clusterIP".into(), json!(ips[0]));
        }
    }
    let headless = ips.first().is_some_and(|i| i == "None");
    let selectorless = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let mut families: Vec<Value> = spec
        .get("ipFamilies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !headless {
        for ip in ips.iter().skip(families.len()) {
            families.push(json!(if ip.contains(':') { "IPv6" } else { "IPv4" }));
        }
    }
    if families.is_empty() {
        families.push(json!("IPv4"));
    }
    let policy = if (headless && selectorless) || families.len() > 1 {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    set(spec, "ipFamilyPolicy", json!(policy));
    if let Some(m) = spec.as_object_mut() {
        m.insert("ipFamilies".into(), Value::Array(families));
    }
}

/// Secret: `stringData` merged into `data` (base64), type Opaque.
pub(super) fn secret(obj: &mut Value) {
    let string_data = obj
        .as_object_mut()
        .and_then(|m| m.remove("stringData"))
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        });
    if let Some(sd) = string_data {
        if let Some(data) = sub(obj, "data").and_then(Value::as_object_mut) {
            for (k, v) in sd {
                let raw = v.as_str().unwrap_or("");
                data.insert(
                    k,
                    Value::from(base64::engine::general_purpose::STANDARD.encode(raw)),
                );
            }
        }
    }
    set_str(obj, "type", "Opaque");
}

/// Namespace: the `kubernetes.io/metadata.name` label and phase Active.
pub(super) fn namespace(obj: &mut Value) {
    let name = obj
        .get("metadata")
        .map(|m| text(m, "name").to_string())
        .unwrap_or_default();
    if !name.is_empty() {
        if let Some(labels) = sub(obj, "metadata")
            .and_then(|m| sub(m, "labels"))
            .and_then(Value::as_object_mut)
        {
            labels.insert("kubernetes.io/metadata.name".into(), Value::from(name));
        }
    }
    if let Some(status) = sub(obj, "status") {
        set_str(status, "phase", "Active");
    }
}

/// Node: allocatable defaults to capacity; resource lists rounded.
pub(super) fn node(obj: &mut Value) {
    set(obj, "spec", json!({}));
    let Some(status) = existing(obj, "status") else {
        return;
    };
    if unset(status, "allocatable") {
        if let Some(cap) = status.get("capacity").filter(|c| c.is_object()).cloned() {
            if let Some(m) = status.as_object_mut() {
                m.insert("allocatable".into(), cap);
            }
        }
    }
    round_resource_list(status, "capacity");
    round_resource_list(status, "allocatable");
}

/// Endpoints: port protocols.
pub(super) fn endpoints(obj: &mut Value) {
    each(obj, "subsets", |s| {
        each(s, "ports", |p| set_str(p, "protocol", "TCP"))
    });
}

/// PersistentVolume: reclaim policy Retain, volume mode Filesystem, phase Pending.
pub(super) fn persistent_volume(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        set_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        set(spec, "volumeMode", json!("Filesystem"));
        round_resource_list(spec, "capacity");
        if let Some(h) = existing(spec, "hostPath") {
            set(h, "type", json!(""));
        }
        legacy_volume_sources(spec);
    }
    if let Some(status) = sub(obj, "status") {
        set_str(status, "phase", "Pending");
    }
}

/// PersistentVolumeClaim: volume mode Filesystem, phase Pending.
pub(super) fn persistent_volume_claim(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        pvc_spec(spec);
    }
    if let Some(status) = sub(obj, "status") {
        set_str(status, "phase", "Pending");
        round_resource_list(status, "capacity");
        round_resource_list(status, "allocatedResources");
    }
}

/// `SetDefaults_PersistentVolumeClaimSpec` and its resource lists.
pub(super) fn pvc_spec(spec: &mut Value) {
    set(spec, "volumeMode", json!("Filesystem"));
    if let Some(r) = sub(spec, "resources") {
        round_resource_list(r, "limits");
        round_resource_list(r, "requests");
    }
}

/// ResourceQuota: resource lists rounded.
pub(super) fn resource_quota(obj: &mut Value) {
    if let Some(spec) = sub(obj, "spec") {
        round_resource_list(spec, "hard");
    }
    if let Some(status) = sub(obj, "status") {
        round_resource_list(status, "hard");
        round_resource_list(status, "used");
    }
}

/// LimitRange: container items get default limits from max and default requests from the
/// default limits or min.
pub(super) fn limit_range(obj: &mut Value) {
    let Some(spec) = existing(obj, "spec") else {
        return;
    };
    each(spec, "limits", |item| {
        for f in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            round_resource_list(item, f);
        }
        if text(item, "type") != "Container" {
            return;
        }
        let get = |item: &Value, f: &str| {
            item.get(f)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let mut default_request = get(item, "defaultRequest");
        for (k, v) in default.clone() {
            default_request.entry(k).or_insert(v);
        }
        for (k, v) in min {
            default_request.entry(k).or_insert(v);
        }
        if let Some(m) = item.as_object_mut() {
            if !default.is_empty() {
                m.insert("default".into(), Value::Object(default));
            }
            if !default_request.is_empty() {
                m.insert("defaultRequest".into(), Value::Object(default_request));
            }
        }
    });
}
