//! core/v1 Namespaces: create, get, list (as a list or a Table) and delete.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rand::Rng;
use serde_json::json;

use super::body;
use super::registry::{self, Resource};
use super::status::Status;
use super::table;
use crate::store::Store;

const NAMESPACES: Resource = Resource {
    plural: "namespaces",
    kind: "Namespace",
    api_version: "v1",
};

/// A lowercase RFC 1123 label, as Kubernetes requires of namespace names.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn new_uid() -> String {
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

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Whether the client asked for a Table (as `kubectl get` does).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

pub async fn create(
    Extension(store): Extension<Store>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Status> {
    let mut obj = body::object(&headers, &body, NAMESPACES.api_version, NAMESPACES.kind)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !is_dns1123_label(&name) {
        return Err(Status::invalid(
            NAMESPACES.kind,
            &name,
            &[(
                "metadata.name",
                &name,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            )],
        ));
    }
    obj["apiVersion"] = json!(NAMESPACES.api_version);
    obj["kind"] = json!(NAMESPACES.kind);
    let meta = &mut obj["metadata"];
    meta["uid"] = json!(new_uid());
    meta["creationTimestamp"] = json!(now_rfc3339());
    meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
    obj["spec"] = json!({"finalizers": ["kubernetes"]});
    obj["status"] = json!({"phase": "Active"});
    let created = registry::create(&store, &NAMESPACES, &name, &obj).await?;
    Ok((axum::http::StatusCode::CREATED, Json(created)).into_response())
}

pub async fn get(
    Extension(store): Extension<Store>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Status> {
    let obj = registry::get(&store, &NAMESPACES, &name).await?;
    if wants_table(&headers) {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        return Ok(Json(table::namespaces(&[obj], &rv)).into_response());
    }
    Ok(Json(obj).into_response())
}

pub async fn list(
    Extension(store): Extension<Store>,
    headers: HeaderMap,
) -> Result<Response, Status> {
    let (items, revision) = registry::list(&store, &NAMESPACES).await?;
    let rv = revision.to_string();
    if wants_table(&headers) {
        return Ok(Json(table::namespaces(&items, &rv)).into_response());
    }
    Ok(Json(json!({
        "kind": "NamespaceList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv},
        "items": items,
    }))
    .into_response())
}

pub async fn delete(
    Extension(store): Extension<Store>,
    Path(name): Path<String>,
) -> Result<Response, Status> {
    let mut obj = registry::delete(&store, &NAMESPACES, &name).await?;
    obj["status"]["phase"] = json!("Terminating");
    Ok(Json(obj).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_uids() {
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("Bad_Name"));
        assert!(!is_dns1123_label("-x"));
        assert!(!is_dns1123_label(""));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
    }
}
