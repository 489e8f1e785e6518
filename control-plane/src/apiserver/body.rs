//! Request bodies: JSON; YAML, as upstream accepts it for objects and server-side apply; or
//! Kubernetes protobuf (the `k8s\0` magic and a `runtime.Unknown` envelope), which client-go's
//! typed clients send for built-in kinds.

use axum::http::HeaderMap;
use prost014::Message as _;
use serde_json::{json, Value};

use super::catalog::ResourceType;
use super::protobuf::ProtobufError;
use super::status::Status;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// The object in a create or update body, as JSON, with apiVersion and kind filled in from the
/// URL when the body leaves them out.
pub fn object(headers: &HeaderMap, body: &[u8], res: &ResourceType) -> Result<Value, Status> {
    let (api_version, kind) = (res.api_version(), res.kind);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mut obj = if content_type.starts_with(PROTOBUF) {
        from_protobuf(body, res)?
    } else if content_type.starts_with("application/json") || content_type.is_empty() {
        json(body)?
    } else if content_type.starts_with("application/yaml") {
        yaml(body)?
    } else {
        return Err(Status::unsupported_media_type(content_type));
    };
    let Some(map) = obj.as_object_mut() else {
        return Err(Status::bad_request(
            "the request body is not a JSON object".into(),
        ));
    };
    map.entry("apiVersion").or_insert(json!(api_version));
    map.entry("kind").or_insert(json!(kind));
    Ok(obj)
}

/// A JSON body, with serde_json's nesting limit guarding against deep documents.
pub fn json(body: &[u8]) -> Result<Value, Status> {
    serde_json::from_slice(body)
        .map_err(|e| Status::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// A YAML body (server-side apply, `application/yaml`) as JSON. JSON is YAML too and is what
/// clients mostly send, so it is tried first. The parser bounds nesting and alias expansion.
pub fn yaml(body: &[u8]) -> Result<Value, Status> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    yaml_serde::from_slice(body)
        .map_err(|e| Status::bad_request(format!("the request body is not valid YAML: {e}")))
}

fn from_protobuf(body: &[u8], res: &ResourceType) -> Result<Value, Status> {
    let bad = |why: String| Status::bad_request(format!("malformed protobuf body: {why}"));
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s\\0 prefix".into()))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest)
        .map_err(|e| bad(e.to_string()))?;
    let raw = unknown.raw.unwrap_or_default();
    super::protobuf::to_json(res.group, res.kind, &raw).map_err(|e| match e {
        ProtobufError::Malformed(_) => Status::bad_request(e.to_string()),
        ProtobufError::UnsupportedKind(_) => Status::unsupported_media_type(&e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_bodies_become_json() {
        assert_eq!(
            yaml(b"kind: ConfigMap\ndata:\n  a: \"1\"\n  b: two\n").unwrap(),
            json!({"kind": "ConfigMap", "data": {"a": "1", "b": "two"}})
        );
        assert_eq!(yaml(br#"{"a": [1]}"#).unwrap(), json!({"a": [1]}));
        assert_eq!(yaml(b"a: [b\n  - : :").unwrap_err().code, 400);
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
        assert_eq!(yaml(bomb.as_bytes()).unwrap_err().code, 400);
        assert_eq!(yaml("[".repeat(100_000).as_bytes()).unwrap_err().code, 400);
        assert_eq!(yaml(b"a: 1\n---\nb: 2\n").unwrap_err().code, 400);
    }
    use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn protobuf_namespace_becomes_json() {
        let ns = k8s_pb::api::core::v1::Namespace {
            metadata: Some(ObjectMeta {
                name: Some("demo".into()),
                labels: [("a".to_string(), "b".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            raw: Some(ns.encode_to_vec()),
            ..Default::default()
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        let mut headers = HeaderMap::new();
        headers.insert("content-type", PROTOBUF.parse().unwrap());
        let ns = crate::apiserver::catalog::find("", "v1", "namespaces").unwrap();
        let obj = object(&headers, &body, ns).unwrap();
        assert_eq!(obj["metadata"]["name"], "demo");
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
        assert_eq!(obj["kind"], "Namespace");
        assert!(object(&headers, b"junk", ns).is_err());
    }
}
