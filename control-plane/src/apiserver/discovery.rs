//! `/version`, legacy discovery (`/api`, `/apis`, `/api/v1`) and the health endpoints.
//! Both aggregated discovery (one document for all groups, which kubectl prefers) and the
//! legacy per-group-version lists (which `kubectl drain` and the Python client read) come from
//! the [catalog](super::catalog).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::catalog;
use super::status::Status;
use super::User;

/// The Kubernetes version whose wire format the server speaks; `/usr/bin/kubectl` runs its
/// bundled client of the same minor version.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", go_arch()),
    }))
}

pub async fn ok() -> &'static str {
    "ok"
}

/// The content type that tells clients a discovery document is aggregated.
const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client accepts, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get("accept")?.to_str().ok()?;
    if !accept.contains("as=APIGroupDiscoveryList") {
        return None;
    }
    if accept.contains("v=v2;") || accept.contains("v=v2,") || accept.ends_with("v=v2") {
        Some("v2")
    } else if accept.contains("v=v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

/// An aggregated discovery document for `groups`, answered with the content type clients
/// recognise it by (a plain application/json body would read as empty legacy discovery).
fn aggregated(version: &str, groups: &[&str]) -> Response {
    let mut items = Vec::new();
    for group in groups {
        let versions: Vec<Value> = catalog::group_versions()
            .into_iter()
            .filter(|(g, _)| g == group)
            .map(|(g, v)| {
                let resources: Vec<Value> = catalog::in_group_version(g, v)
                    .map(|r| {
                        json!({
                            "resource": r.plural,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": r.verbs,
                            "shortNames": r.short_names,
                            "categories": r.categories,
                            "subresources": r.subresources.iter().map(|s| json!({
                                "subresource": s.name,
                                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                                "verbs": s.verbs,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions}),
        );
    }
    let content_type = if version == "v2" {
        AGGREGATED_V2
    } else {
        AGGREGATED_V2BETA1
    };
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    ([(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

pub async fn api_versions(
    Extension(advertise): Extension<Arc<String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(v) = aggregated_version(&headers) {
        return aggregated(v, &[""]);
    }
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": *advertise}],
    }))
    .into_response()
}

fn named_groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in catalog::group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    groups
}

pub async fn api_groups(headers: HeaderMap) -> Response {
    let groups = named_groups();
    if let Some(v) = aggregated_version(&headers) {
        return aggregated(v, &groups);
    }
    let list: Vec<Value> = groups
        .iter()
        .map(|g| {
            let versions: Vec<Value> = catalog::group_versions()
                .into_iter()
                .filter(|(gg, _)| gg == g)
                .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions.first()})
        })
        .collect();
    Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})).into_response()
}

/// The legacy APIResourceList of one group/version; subresources are listed as `pods/log`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in catalog::in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group || s.version != r.version {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            resources.push(sub);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `kubectl auth whoami`: the caller as the server sees it.
pub async fn self_subject_review(Extension(user): Extension<User>) -> impl IntoResponse {
    (
        axum::http::StatusCode::CREATED,
        Json(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user_info(&user)},
        })),
    )
}

/// A user as `authentication.k8s.io/v1` UserInfo: uid and extra only when known.
fn user_info(user: &User) -> serde_json::Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if let Some(uid) = &user.uid {
        info["uid"] = json!(uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

pub async fn not_found(request: Request) -> impl IntoResponse {
    Status::not_found(request.uri().path())
}

/// The architecture as Go (and so Kubernetes) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
