//! What the server decides about an object's metadata and status on create and update, the
//! parts upstream's registry strategies own: uid, timestamps, generation, the status split
//! between an object and its status subresource, and the Scale view.

use rand::Rng;
use serde_json::{json, Map, Value};

use super::catalog::ResourceType;
use super::selectors::LabelSelector;
use super::status::Status;

/// Metadata only the server sets; a client's values are dropped on create.
const SERVER_SET: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "selfLink",
];

/// A random v4 UUID for metadata.uid.
pub fn new_uid() -> String {
    let v: u128 = rand::thread_rng().gen();
    let b = v.to_be_bytes();
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-4{}-a{}-{}",
        h(0..4),
        h(4..6),
        &h(6..8)[1..],
        &h(8..10)[1..],
        h(10..16)
    )
}

/// Now, to the second, as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    rfc3339_in(0)
}

/// The time `secs` seconds from now, in RFC 3339 (a graceful deletion's deadline).
pub fn rfc3339_in(secs: i64) -> String {
    let now = (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The suffix upstream appends to generateName: five characters that avoid vowels and
/// look-alikes.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj["metadata"].as_object_mut() {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// The object's name, or "" when it has none yet.
pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// Checks the body against the URL (kind, group, namespace) and fills what the URL implies.
pub fn check_target(
    res: &ResourceType,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<(), Status> {
    let api_version = res.api_version();
    if obj["apiVersion"] != json!(api_version) {
        return Err(Status::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({api_version})",
            obj["apiVersion"].as_str().unwrap_or("")
        )));
    }
    if obj["kind"] != json!(res.kind) {
        return Err(Status::bad_request(format!(
            "the kind in the data ({}) does not match the expected kind ({})",
            obj["kind"].as_str().unwrap_or(""),
            res.kind
        )));
    }
    if !obj["metadata"].is_object() && !obj["metadata"].is_null() {
        return Err(Status::bad_request(
            "metadata must be an object".to_string(),
        ));
    }
    let meta = meta_mut(obj);
    match namespace {
        Some(ns) => match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(Status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        },
        None => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// Metadata and status of a new object, as the server sets them on create.
pub fn prepare_create(res: &ResourceType, obj: &mut Value) {
    let tracks = res.tracks_generation();
    let meta = meta_mut(obj);
    for field in SERVER_SET {
        meta.remove(*field);
    }
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    if tracks {
        meta.insert("generation".into(), json!(1));
    }
    match res.kind {
        "Namespace" => {
            let name = name_of(obj).to_string();
            meta_mut(obj)
                .entry("labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|l| l.insert("kubernetes.io/metadata.name".into(), json!(name)));
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            obj["status"] = json!({"phase": "Active"});
        }
        // Defaulting gives a new pod its Pending status and QoS class.
        "Pod" => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        "PersistentVolumeClaim" | "PersistentVolume" => obj["status"] = json!({"phase": "Pending"}),
        "Node" => {}
        _ if res.has_status() => obj["status"] = json!({}),
        _ => {}
    }
}

/// Which part of the object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object: everything but status, for resources with a status subresource.
    Main,
    /// `/status`: only status.
    Status,
    /// `pods/binding`: the node and the status (its PodScheduled condition), nothing else.
    Binding,
}

/// The object an update stores: the client's version of the part it may change, the server's
/// metadata carried over from `old`, and generation bumped when the spec changed.
pub fn prepare_update(
    res: &ResourceType,
    part: Part,
    old: &Value,
    mut new: Value,
) -> Result<Value, Status> {
    if name_of(&new) != name_of(old) {
        return Err(Status::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            name_of(&new),
            name_of(old)
        )));
    }
    let mut out = match part {
        Part::Status => {
            let mut out = old.clone();
            out["status"] = new["status"].take();
            // Status writers may still touch labels, annotations and finalizers upstream.
            out
        }
        Part::Binding => {
            let mut out = old.clone();
            out["spec"]["nodeName"] = new["spec"]["nodeName"].take();
            out["status"] = new["status"].take();
            out
        }
        Part::Main => {
            if res.has_status() {
                new["status"] = old["status"].clone();
            }
            new
        }
    };
    let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
    let meta = meta_mut(&mut out);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.insert(
        "resourceVersion".into(),
        old_meta
            .get("resourceVersion")
            .cloned()
            .unwrap_or(Value::Null),
    );
    if res.tracks_generation() && spec_of(&out) != spec_of(old) {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        meta_mut(&mut out).insert("generation".into(), json!(generation));
    }
    Ok(out)
}

/// Everything but metadata and status: what generation tracks.
fn spec_of(obj: &Value) -> Value {
    let mut o = obj.as_object().cloned().unwrap_or_default();
    o.remove("metadata");
    o.remove("status");
    Value::Object(o)
}

/// Whether an update would change nothing, so the write can be skipped as upstream does.
pub fn unchanged(old: &Value, new: &Value) -> bool {
    old == new
}

/// The `autoscaling/v1` Scale view of a scalable object.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj["status"]["selector"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            LabelSelector::from_object(&obj["spec"]["selector"])
                .map(|s| s.to_string())
                .unwrap_or_default()
        });
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// Applies a Scale written by a client to the object it views.
pub fn apply_scale(obj: &Value, scale: &Value) -> Result<Value, Status> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(Status::invalid_fields(
            "Scale",
            "autoscaling",
            name_of(obj),
            vec![(
                "FieldValueInvalid",
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                "spec.replicas".into(),
            )],
        ));
    }
    let mut out = obj.clone();
    out["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
        out["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::catalog::find;

    #[test]
    fn create_sets_server_fields() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "client", "resourceVersion": "9"},
            "spec": {"replicas": 2}, "status": {"replicas": 7}});
        check_target(deploy, Some("default"), &mut obj).unwrap();
        prepare_create(deploy, &mut obj);
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert_ne!(obj["metadata"]["uid"], "client");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj["metadata"]["resourceVersion"].is_null());
        assert_eq!(obj["status"], json!({}));
        let mut wrong_ns =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "x"}});
        assert_eq!(
            check_target(deploy, Some("default"), &mut wrong_ns)
                .unwrap_err()
                .code,
            400
        );
        let mut wrong_kind = json!({"apiVersion": "v1", "kind": "Pod"});
        assert_eq!(
            check_target(deploy, Some("default"), &mut wrong_kind)
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(name_suffix().len(), 5);
    }

    #[test]
    fn update_bumps_generation_on_spec_change_only() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let old = json!({"metadata": {"name": "web", "uid": "u", "generation": 1, "resourceVersion": "5"},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let same = prepare_update(deploy, Part::Main, &old, json!({"metadata": {"name": "web", "labels": {"a": "b"}}, "spec": {"replicas": 1}, "status": {"replicas": 9}})).unwrap();
        assert_eq!(same["metadata"]["generation"], 1);
        assert_eq!(same["status"]["replicas"], 1);
        assert_eq!(same["metadata"]["uid"], "u");
        let bumped = prepare_update(
            deploy,
            Part::Main,
            &old,
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}}),
        )
        .unwrap();
        assert_eq!(bumped["metadata"]["generation"], 2);
        let status = prepare_update(deploy, Part::Status, &old, json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}, "status": {"replicas": 3}})).unwrap();
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 3);
        assert!(prepare_update(
            deploy,
            Part::Main,
            &old,
            json!({"metadata": {"name": "other"}})
        )
        .is_err());
    }

    #[test]
    fn scale_view_round_trips() {
        let obj = json!({"metadata": {"name": "web", "resourceVersion": "3"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 1}});
        let s = scale_of(&obj);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        let out = apply_scale(&obj, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(
            apply_scale(&obj, &json!({"spec": {"replicas": -1}}))
                .unwrap_err()
                .code,
            422
        );
    }
}
