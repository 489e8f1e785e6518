//! `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`: the TokenRequest API
//! (`authentication.k8s.io/v1`), as upstream's token REST storage serves it. The token is a
//! JWT for the service account, for the requested audiences (default: the API server's),
//! expiring after `expirationSeconds` (default 3600, at least 600), optionally bound to a Pod,
//! Secret or Node that must exist (and keep its uid) for the token to stay valid.
//!
//! A node (`system:node:<name>`) may only request tokens bound to pods on itself, as upstream's
//! NodeRestriction admission allows.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prost014::Message as _;
use serde_json::{json, Value};
use tracing::info;

use super::jwt::{self, Claims, KubernetesClaims, ObjectRef};
use super::{lookup_linearized, now, rfc3339, uid_of, username, ServiceAccounts};
use crate::apiserver::authn::User;
use crate::apiserver::rest::Target;
use crate::apiserver::status::Status;
use crate::apiserver::{body, objects};
use crate::store::Store;

/// The shortest lifetime a token may be asked for, as upstream.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime when the request names none (upstream's API default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The longest lifetime upstream accepts (2^32 s).
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What a TokenRequest asks for, after defaulting.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    audiences: Vec<String>,
    expiration_seconds: i64,
    bound: Option<BoundRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BoundRef {
    kind: String,
    api_version: String,
    name: String,
    uid: String,
}

impl BoundRef {
    fn to_json(&self) -> Value {
        let mut v = json!({"kind": self.kind, "apiVersion": self.api_version, "name": self.name});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        v
    }
}

fn invalid(name: &str, field: &str, message: String) -> Status {
    Status::invalid_fields(
        "TokenRequest",
        "authentication.k8s.io",
        name,
        vec![("FieldValueInvalid", message, field.to_string())],
    )
}

/// The request body (JSON, YAML or protobuf) as a TokenRequest spec.
fn parse(headers: &HeaderMap, raw: &[u8], sa: &str) -> Result<Spec, Status> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let doc = if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        from_protobuf(raw)?
    } else if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::yaml(raw)?
    };
    if !doc.is_object() {
        return Err(Status::bad_request(
            "a TokenRequest must be an object".into(),
        ));
    }
    let spec = &doc["spec"];
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v.as_i64().ok_or_else(|| {
            Status::bad_request("spec.expirationSeconds must be an integer".into())
        })?,
    };
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            sa,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration_seconds}: may not specify a duration less than 10 minutes"
            ),
        ));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            sa,
            "spec.expirationSeconds",
            format!(
                "Invalid value: {expiration_seconds}: may not specify a duration larger than 2^32 seconds"
            ),
        ));
    }
    let b = &spec["boundObjectRef"];
    let bound = if b.is_object() {
        let text = |k: &str| b[k].as_str().unwrap_or("").to_string();
        Some(BoundRef {
            kind: text("kind"),
            api_version: text("apiVersion"),
            name: text("name"),
            uid: text("uid"),
        })
    } else {
        None
    };
    Ok(Spec {
        audiences,
        expiration_seconds,
        bound,
    })
}

fn from_protobuf(raw: &[u8]) -> Result<Value, Status> {
    let bad = |why: String| Status::bad_request(format!("malformed protobuf body: {why}"));
    let rest = raw
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing the k8s\\0 prefix".into()))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(rest)
        .map_err(|e| bad(e.to_string()))?;
    let tr = k8s_pb::api::authentication::v1::TokenRequest::decode(
        unknown.raw.unwrap_or_default().as_slice(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let spec = tr.spec.unwrap_or_default();
    let mut out = json!({"spec": {"audiences": spec.audiences}});
    if let Some(e) = spec.expiration_seconds {
        out["spec"]["expirationSeconds"] = json!(e);
    }
    if let Some(b) = spec.bound_object_ref {
        out["spec"]["boundObjectRef"] = json!({
            "kind": b.kind.unwrap_or_default(),
            "apiVersion": b.api_version.unwrap_or_default(),
            "name": b.name.unwrap_or_default(),
            "uid": b.u_id.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The node a `system:node:<name>` user in `system:nodes` is, if the caller is a node.
fn node_of(user: &User) -> Option<&str> {
    if !user.groups.iter().any(|g| g == "system:nodes") {
        return None;
    }
    user.name.strip_prefix("system:node:")
}

/// Issues a token for the service account `target` names.
#[tracing::instrument(skip_all, fields(namespace = ?target.namespace, serviceaccount = ?target.name))]
pub async fn create(
    store: &Store,
    sas: &ServiceAccounts,
    user: &User,
    target: &Target,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Response, Status> {
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let mut spec = parse(headers, raw, &name)?;
    if spec.audiences.is_empty() {
        spec.audiences = sas.audiences().to_vec();
    }
    let sa_target = Target {
        sub: None,
        ..target.clone()
    };
    let sa = lookup_linearized(store, "serviceaccounts", Some(&ns), &name)
        .await?
        .ok_or_else(|| sa_target.not_found())?;
    let node = node_of(user);
    let mut claims = KubernetesClaims {
        namespace: ns.clone(),
        serviceaccount: ObjectRef {
            name: name.clone(),
            uid: uid_of(&sa).to_string(),
        },
        ..Default::default()
    };
    match &spec.bound {
        None if node.is_some() => {
            return Err(Status::forbidden(format!(
                "serviceaccounts \"{name}\" is forbidden: node requested token not bound to a pod"
            )))
        }
        None => {}
        Some(b) => bind(store, &ns, &name, node, b, &mut claims).await?,
    }
    let now = now();
    let exp = now + spec.expiration_seconds;
    let token_claims = Claims {
        aud: spec.audiences.clone(),
        exp,
        iat: now,
        iss: jwt::ISSUER.to_string(),
        jti: Some(objects::new_uid()),
        kubernetes: claims,
        nbf: now,
        sub: username(&ns, &name),
    };
    let token = sas
        .key()
        .sign(&token_claims)
        .map_err(|e| Status::internal(e.to_string()))?;
    info!(
        user = %user.name,
        bound = ?spec.bound.as_ref().map(|b| format!("{}/{}", b.kind, b.name)),
        expiration_seconds = spec.expiration_seconds,
        "issued a service-account token"
    );
    let mut spec_json = json!({
        "audiences": spec.audiences,
        "expirationSeconds": spec.expiration_seconds,
        "boundObjectRef": null,
    });
    if let Some(b) = &spec.bound {
        spec_json["boundObjectRef"] = b.to_json();
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": rfc3339(now),
            },
            "spec": spec_json,
            "status": {"token": token, "expirationTimestamp": rfc3339(exp)},
        })),
    )
        .into_response())
}

/// Checks the bound object and records it in the claims, as upstream's token storage does.
async fn bind(
    store: &Store,
    ns: &str,
    sa: &str,
    node: Option<&str>,
    b: &BoundRef,
    claims: &mut KubernetesClaims,
) -> Result<(), Status> {
    let plural = match b.kind.as_str() {
        "Pod" => "pods",
        "Secret" => "secrets",
        "Node" => "nodes",
        other => {
            return Err(Status::bad_request(format!(
                "cannot bind token for serviceaccount \"{sa}\" to object of type {other:?}"
            )))
        }
    };
    if !b.api_version.is_empty() && b.api_version != "v1" {
        return Err(Status::bad_request(format!(
            "cannot bind token to object of apiVersion {:?}",
            b.api_version
        )));
    }
    if node.is_some() && b.kind != "Pod" {
        return Err(Status::forbidden(format!(
            "serviceaccounts \"{sa}\" is forbidden: node requested token not bound to a pod"
        )));
    }
    let obj_ns = (b.kind != "Node").then_some(ns);
    let obj = lookup_linearized(store, plural, obj_ns, &b.name)
        .await?
        .ok_or_else(|| Status::object_not_found("", plural, plural, &b.name))?;
    let uid = uid_of(&obj).to_string();
    if !b.uid.is_empty() && b.uid != uid {
        return Err(Status::new(
            409,
            "Conflict",
            format!(
                "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                b.uid
            ),
        ));
    }
    let this = Some(ObjectRef {
        name: b.name.clone(),
        uid,
    });
    match b.kind.as_str() {
        "Pod" => {
            let pod_sa = obj["spec"]["serviceAccountName"].as_str().unwrap_or("");
            if pod_sa != sa {
                return Err(Status::bad_request(format!(
                    "cannot bind token for serviceaccount \"{sa}\" to pod running with different serviceaccount name."
                )));
            }
            let node_name = obj["spec"]["nodeName"].as_str().unwrap_or("");
            if let Some(n) = node {
                if node_name != n {
                    return Err(Status::forbidden(format!(
                        "serviceaccounts \"{sa}\" is forbidden: node requested token bound to a pod scheduled on a different node"
                    )));
                }
            }
            if !node_name.is_empty() {
                if let Some(n) = lookup_linearized(store, "nodes", None, node_name).await? {
                    claims.node = Some(ObjectRef {
                        name: node_name.to_string(),
                        uid: uid_of(&n).to_string(),
                    });
                }
            }
            claims.pod = this;
        }
        "Secret" => claims.secret = this,
        _ => claims.node = this,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(body: &str) -> Result<Spec, Status> {
        parse(&HeaderMap::new(), body.as_bytes(), "sa")
    }

    #[test]
    fn defaults_and_limits() {
        let s = spec("").unwrap();
        assert_eq!(s.expiration_seconds, 3600);
        assert!(s.audiences.is_empty() && s.bound.is_none());
        let s = spec(r#"{"spec":{"audiences":["a"],"expirationSeconds":600,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"p","uid":"u"}}}"#).unwrap();
        assert_eq!(s.audiences, ["a"]);
        assert_eq!(s.expiration_seconds, 600);
        assert_eq!(s.bound.unwrap().name, "p");
        let e = spec(r#"{"spec":{"expirationSeconds":599}}"#).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("less than 10 minutes"), "{}", e.message);
        assert_eq!(
            spec(r#"{"spec":{"expirationSeconds":4294967297}}"#)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            spec(r#"{"spec":{"expirationSeconds":"x"}}"#)
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(spec("[1]").unwrap_err().code, 400);
        assert_eq!(spec("{").unwrap_err().code, 400);
    }

    #[test]
    fn protobuf_bodies() {
        let tr = k8s_pb::api::authentication::v1::TokenRequest {
            spec: Some(k8s_pb::api::authentication::v1::TokenRequestSpec {
                audiences: vec!["x".into()],
                expiration_seconds: Some(700),
                bound_object_ref: None,
            }),
            ..Default::default()
        };
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            raw: Some(tr.encode_to_vec()),
            ..Default::default()
        };
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown.encode_to_vec());
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/vnd.kubernetes.protobuf".parse().unwrap(),
        );
        let s = parse(&headers, &body, "sa").unwrap();
        assert_eq!((s.audiences, s.expiration_seconds), (vec!["x".into()], 700));
        assert_eq!(parse(&headers, b"junk", "sa").unwrap_err().code, 400);
    }

    #[test]
    fn nodes_are_recognised() {
        let node = User::new("system:node:n1".into(), vec!["system:nodes".into()]);
        assert_eq!(node_of(&node), Some("n1"));
        let fake = User::new("system:node:n1".into(), vec![]);
        assert_eq!(node_of(&fake), None);
    }
}
