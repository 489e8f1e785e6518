//! `/version`, legacy discovery (`/api`, `/apis`, `/api/v1`) and the health endpoints.
//! Aggregated discovery is not offered yet, so clients fall back to the legacy documents.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{json, Value};

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

pub async fn api_versions(Extension(advertise): Extension<Arc<String>>) -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": *advertise}],
    }))
}

pub async fn api_groups() -> Json<Value> {
    let gv = json!({"groupVersion": "authentication.k8s.io/v1", "version": "v1"});
    Json(json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [{
            "name": "authentication.k8s.io",
            "versions": [gv],
            "preferredVersion": gv,
        }],
    }))
}

pub async fn authentication_v1() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "authentication.k8s.io/v1",
        "resources": [{
            "name": "selfsubjectreviews",
            "singularName": "selfsubjectreview",
            "namespaced": false,
            "kind": "SelfSubjectReview",
            "verbs": ["create"],
        }],
    }))
}

/// `kubectl auth whoami`: the caller as the server sees it.
pub async fn self_subject_review(Extension(user): Extension<User>) -> impl IntoResponse {
    (
        axum::http::StatusCode::CREATED,
        Json(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": user.name, "groups": user.groups}},
        })),
    )
}

pub async fn core_v1() -> Json<Value> {
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "v1",
        "resources": [{
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": false,
            "kind": "Namespace",
            "verbs": ["create", "delete", "get", "list"],
            "shortNames": ["ns"],
        }],
    }))
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
