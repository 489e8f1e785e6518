//! OpenAPI v3: the index at `/openapi/v3` and one document per group/version.
//!
//! kubectl reads them for two things: whether a resource's PATCH accepts `fieldValidation`
//! (without that, default `create`/`apply` refuse to run), and the schemas `kubectl explain`
//! prints. The schemas come from k8s-openapi's types, named as upstream names them. PATCH
//! deliberately does not list strategic merge patch, so client-side apply computes its patches
//! from kubectl's compiled-in types, which carry the merge keys these schemas lack.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::Json;
use k8s_openapi::api;
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::catalog::{self, ResourceType};
use super::discovery::KUBERNETES_VERSION;
use super::status::Status;

/// Registers the schema of `kind` in `gen`; false for kinds without a typed schema.
fn register(gen: &mut SchemaGenerator, group: &str, kind: &str) -> bool {
    macro_rules! kinds {
        ($( ($g:literal, $k:literal, $t:ty) ),* $(,)?) => {
            match (group, kind) {
                $( ($g, $k) => { gen.subschema_for::<$t>(); true } )*
                _ => false,
            }
        };
    }
    kinds!(
        ("", "Namespace", api::core::v1::Namespace),
        ("", "Node", api::core::v1::Node),
        ("", "Pod", api::core::v1::Pod),
        ("", "Service", api::core::v1::Service),
        ("", "Endpoints", api::core::v1::Endpoints),
        ("", "ConfigMap", api::core::v1::ConfigMap),
        ("", "Secret", api::core::v1::Secret),
        ("", "ServiceAccount", api::core::v1::ServiceAccount),
        ("", "Event", api::core::v1::Event),
        ("", "PersistentVolume", api::core::v1::PersistentVolume),
        (
            "",
            "PersistentVolumeClaim",
            api::core::v1::PersistentVolumeClaim
        ),
        ("", "ResourceQuota", api::core::v1::ResourceQuota),
        ("", "LimitRange", api::core::v1::LimitRange),
        ("", "PodTemplate", api::core::v1::PodTemplate),
        ("apps", "Deployment", api::apps::v1::Deployment),
        ("apps", "ReplicaSet", api::apps::v1::ReplicaSet),
        ("apps", "DaemonSet", api::apps::v1::DaemonSet),
        ("apps", "StatefulSet", api::apps::v1::StatefulSet),
        (
            "apps",
            "ControllerRevision",
            api::apps::v1::ControllerRevision
        ),
        ("batch", "Job", api::batch::v1::Job),
        ("batch", "CronJob", api::batch::v1::CronJob),
        ("coordination.k8s.io", "Lease", api::coordination::v1::Lease),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            api::discovery::v1::EndpointSlice
        ),
        ("rbac.authorization.k8s.io", "Role", api::rbac::v1::Role),
        (
            "rbac.authorization.k8s.io",
            "ClusterRole",
            api::rbac::v1::ClusterRole
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            api::rbac::v1::RoleBinding
        ),
        (
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            api::rbac::v1::ClusterRoleBinding
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            api::networking::v1::NetworkPolicy
        ),
        (
            "scheduling.k8s.io",
            "PriorityClass",
            api::scheduling::v1::PriorityClass
        ),
        (
            "policy",
            "PodDisruptionBudget",
            api::policy::v1::PodDisruptionBudget
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            api::storage::v1::StorageClass
        ),
        ("events.k8s.io", "Event", api::events::v1::Event),
        (
            "authentication.k8s.io",
            "SelfSubjectReview",
            api::authentication::v1::SelfSubjectReview
        ),
    )
}

/// The schema name upstream gives a kind (`io.k8s.api.apps.v1.Deployment`).
fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let pkg = match group {
        "" => "core".to_string(),
        g => g
            .strip_suffix(".k8s.io")
            .map(|s| s.split('.').next().unwrap_or(s).to_string())
            .unwrap_or_else(|| g.to_string()),
    };
    format!("io.k8s.api.{pkg}.{version}.{kind}")
}

/// The URL path of a group/version's document, relative to `/openapi/v3/`.
fn doc_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gvk(res: &ResourceType) -> Value {
    json!({"group": res.group, "version": res.version, "kind": res.kind})
}

fn operation(id: String, res: &ResourceType, verb: &str, extra_params: &[&str]) -> Value {
    let mut params: Vec<Value> = ["dryRun", "fieldManager"]
        .iter()
        .chain(extra_params)
        .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
        .collect();
    params.push(json!({"name": "pretty", "in": "query", "schema": {"type": "string"}}));
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(res.group, res.version, res.kind))});
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": gvk(res),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
    });
    if verb == "patch" {
        op["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }, "required": true});
    } else if verb == "put" || verb == "post" {
        op["requestBody"] = json!({"content": {"*/*": {"schema": reference}}, "required": true});
    }
    op
}

/// The document of one group/version: its paths (with the operations kubectl inspects) and
/// the schemas of its kinds and everything they reference.
fn build(group: &str, version: &str) -> Option<Value> {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut kinds = Vec::new();
    for res in catalog::in_group_version(group, version) {
        if !register(&mut gen, res.group, res.kind) {
            continue;
        }
        kinds.push(res);
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let collection = if res.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", res.plural)
        } else {
            format!("{base}/{}", res.plural)
        };
        let id = |verb: &str| {
            format!(
                "{verb}{}{}",
                res.api_version().replace(['/', '.'], ""),
                res.kind
            )
        };
        let write = ["fieldValidation"];
        if res.stored {
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({
                    "get": operation(id("read"), res, "get", &[]),
                    "put": operation(id("replace"), res, "put", &write),
                    "patch": operation(id("patch"), res, "patch", &["fieldValidation", "force"]),
                    "delete": operation(id("delete"), res, "delete", &[]),
                }),
            );
        }
        paths.insert(
            collection,
            json!({"post": operation(id("create"), res, "post", &write)}),
        );
    }
    if kinds.is_empty() {
        return None;
    }
    let mut schemas = gen.take_definitions(true);
    for res in kinds {
        let name = schema_name(res.group, res.version, res.kind);
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(res)]));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Built once: the documents only change with the binary.
fn documents() -> &'static HashMap<String, Arc<Value>> {
    static DOCS: OnceLock<HashMap<String, Arc<Value>>> = OnceLock::new();
    DOCS.get_or_init(|| {
        catalog::group_versions()
            .into_iter()
            .filter_map(|(g, v)| build(g, v).map(|d| (doc_path(g, v), Arc::new(d))))
            .collect()
    })
}

/// `/openapi/v3`: where each group/version's document is.
pub async fn index() -> Json<Value> {
    let hash = env!("CARGO_PKG_VERSION").replace('.', "");
    let mut paths = Map::new();
    for path in documents().keys() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    Json(json!({"paths": paths}))
}

/// `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`.
pub async fn document(Path(path): Path<String>) -> Response {
    match documents().get(path.trim_matches('/')) {
        Some(doc) => Json(doc.as_ref().clone()).into_response(),
        None => Status::not_found(&format!("/openapi/v3/{path}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_patch_operations_and_explainable_schemas() {
        assert_eq!(
            schema_name("apps", "v1", "Deployment"),
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            schema_name("rbac.authorization.k8s.io", "v1", "Role"),
            "io.k8s.api.rbac.v1.Role"
        );
        assert_eq!(schema_name("", "v1", "Pod"), "io.k8s.api.core.v1.Pod");
        let doc = build("apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let schema = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["image"]
                .is_object()
        );
        let core = build("", "v1").unwrap();
        assert!(core["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
        assert!(build("metrics.k8s.io", "v1beta1").is_none());
    }
}
