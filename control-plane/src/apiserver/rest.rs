//! The generic REST endpoints of every stored resource: URL parsing into a [`Target`], then
//! get, list, watch, create, update, patch, delete and deletecollection over the
//! [`registry`](super::registry), with the server-side rules of [`objects`](super::objects).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tracing::debug;

use super::catalog::{self, ResourceType, Subresource};
use super::objects::{self, Part};
use super::registry::{self, Claims, ListOptions};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::Status;
use super::{body, managed_fields, patch, services, table, watch};
use crate::store::Store;

/// Attempts at a read-modify-write before giving up on a hot object.
const MAX_RETRIES: usize = 16;

/// What a request URL names: a resource, maybe a namespace, maybe an object and subresource.
#[derive(Debug, Clone)]
pub struct Target {
    pub res: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<&'static Subresource>,
}

impl Target {
    /// The store key of the named object.
    pub fn key(&self) -> Vec<u8> {
        registry::key(
            self.res,
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or(""),
        )
    }

    /// The store prefix the target lists.
    pub fn prefix(&self) -> Vec<u8> {
        registry::prefix(self.res, self.namespace.as_deref())
    }

    /// The 404 for this object, named as kubectl prints it.
    pub fn not_found(&self) -> Status {
        Status::object_not_found(
            self.res.group,
            self.res.plural,
            &self.res.qualified(),
            self.name.as_deref().unwrap_or(""),
        )
    }

    fn conflict(&self) -> Status {
        Status::conflict(
            self.res.group,
            self.res.plural,
            &self.res.qualified(),
            self.name.as_deref().unwrap_or(""),
        )
    }
}

/// Parses the path after `/api/v1/` or `/apis/<group>/<version>/`.
pub fn parse_target(group: &str, version: &str, rest: &str) -> Result<Target, Status> {
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let unknown = || Status::not_found(rest);
    let find = |plural: &str| catalog::find(group, version, plural).ok_or_else(unknown);
    let (res, namespace, name, sub) = match segs.as_slice() {
        ["namespaces", ns, plural, tail @ ..]
            if catalog::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let res = find(plural)?;
            match tail {
                [] => (res, Some(*ns), None, None),
                [name] => (res, Some(*ns), Some(*name), None),
                [name, sub] => (res, Some(*ns), Some(*name), Some(*sub)),
                _ => return Err(unknown()),
            }
        }
        [plural] => (find(plural)?, None, None, None),
        [plural, name] => (find(plural)?, None, Some(*name), None),
        [plural, name, sub] => (find(plural)?, None, Some(*name), Some(*sub)),
        _ => return Err(unknown()),
    };
    if res.namespaced && name.is_some() && namespace.is_none() {
        return Err(unknown());
    }
    let sub = match sub {
        Some(s) => Some(res.subresource(s).ok_or_else(unknown)?),
        None => None,
    };
    Ok(Target {
        res,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub,
    })
}

/// Whether the client asked for a Table (as `kubectl get` does).
pub fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

/// The query parameters of one request.
pub type Query = HashMap<String, String>;

fn flag(q: &Query, name: &str) -> bool {
    matches!(q.get(name).map(String::as_str), Some("true" | "1"))
}

/// The Kubernetes verb of a request: what RBAC rules and discovery's verb lists speak of.
pub fn verb(method: &Method, target: &Target, watch: bool) -> Result<&'static str, Status> {
    Ok(match (method, target.name.is_some()) {
        (&Method::GET, _) if watch => "watch",
        // A WebSocket exec or port-forward starts with a GET, but it creates a session: RBAC
        // asks for `create`, as upstream does since 1.31.
        (&Method::GET | &Method::POST, true)
            if matches!(target.sub.map(|s| s.name), Some("exec" | "portforward")) =>
        {
            "create"
        }
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::POST, true) if target.sub.is_some() => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(Status::method_not_allowed(
                method.as_str(),
                &target.res.qualified(),
            ))
        }
    })
}

/// Serves one request to a stored resource.
pub async fn handle(
    store: Store,
    method: Method,
    target: Target,
    q: Query,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Status> {
    let res = target.res;
    let verb = verb(&method, &target, flag(&q, "watch"))?;
    let allowed = match target.sub {
        Some(sub) => sub.verbs.contains(&verb),
        None => res.verbs.contains(&verb),
    };
    if !allowed {
        return Err(Status::method_not_allowed(verb, &res.qualified()));
    }
    debug!(verb, resource = res.plural, namespace = ?target.namespace, name = ?target.name, "request");
    if res.group == "metrics.k8s.io" {
        return super::metrics::serve(&store, &target, verb, &q, &headers).await;
    }
    if !res.stored {
        return not_stored(&target, verb);
    }
    match verb {
        "get" => get(&store, &target, &q, &headers).await,
        "list" => list(&store, &target, &q, &headers).await,
        "watch" => watch::serve(store, target, q, wants_table(&headers)).await,
        "create" if target.sub.is_some() => {
            create_subresource(&store, &target, &headers, &body).await
        }
        "create" => create(&store, &target, &q, &headers, &body).await,
        "update" => update(&store, &target, &q, &headers, &body).await,
        "patch" => patch_object(&store, &target, &q, &headers, &body).await,
        "delete" => delete(&store, &target, &q, &body).await,
        _ => delete_collection(&store, &target, &q, &body).await,
    }
}

/// Read-only resources without storage and without a server of their own.
fn not_stored(target: &Target, verb: &str) -> Result<Response, Status> {
    let res = target.res;
    match verb {
        "list" => Ok(Json(json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": {},
            "items": [],
        }))
        .into_response()),
        _ => Err(target.not_found()),
    }
}

fn object_response(code: StatusCode, obj: Value, warnings: &[String]) -> Response {
    let mut resp = (code, Json(obj)).into_response();
    for w in warnings {
        if let Ok(v) = format!("299 - \"{}\"", w.replace('"', "'")).parse() {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

pub(super) async fn current(store: &Store, target: &Target) -> Result<Value, Status> {
    registry::get(store, &target.key())
        .await?
        .ok_or_else(|| target.not_found())
}

async fn get(
    store: &Store,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, Status> {
    let obj = current(store, target).await?;
    match target.sub.map(|s| s.name) {
        Some("scale") => return Ok(Json(objects::scale_of(&obj)).into_response()),
        Some("log") => return super::logs::serve(store, obj, q).await,
        _ => {}
    }
    if target.sub.is_some_and(|s| s.name != "status") {
        return Err(Status::new(
            503,
            "ServiceUnavailable",
            format!(
                "{} is served by the pod's node agent, which is not reachable",
                target.sub.map(|s| s.name).unwrap_or_default()
            ),
        ));
    }
    if wants_table(headers) {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        let res = target.res;
        return Ok(Json(table::table(
            res.group,
            res.kind,
            &[obj],
            &rv,
            None,
            "Metadata",
        ))
        .into_response());
    }
    Ok(Json(obj).into_response())
}

/// The selectors of a list or watch; bad ones are the client's 400.
pub fn selectors(res: &ResourceType, q: &Query) -> Result<(LabelSelector, FieldSelector), Status> {
    let label = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| Status::bad_request(e.to_string()))?;
    let field = FieldSelector::parse(
        res.group,
        res.kind,
        q.get("fieldSelector").map(String::as_str).unwrap_or(""),
    )
    .map_err(|e| Status::bad_request(e.to_string()))?;
    Ok((label, field))
}

async fn list(
    store: &Store,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response, Status> {
    let res = target.res;
    let (label, field) = selectors(res, q)?;
    let prefix = target.prefix();
    let mut opts = ListOptions {
        limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        serializable: q.get("resourceVersion").is_some_and(|rv| rv == "0"),
        ..Default::default()
    };
    if let Some(token) = q.get("continue").filter(|t| !t.is_empty()) {
        let (rv, start) = registry::parse_continue(token, &prefix)?;
        opts.revision = Some(rv);
        opts.start = Some(start);
    }
    // A selector pinning one name (as client-go's reflectors send) reads that key alone.
    let scan = match field.name() {
        Some(name) if target.namespace.is_some() || !res.namespaced => {
            registry::key(res, target.namespace.as_deref(), name)
        }
        _ => prefix.clone(),
    };
    let page = registry::list(store, &scan, &opts, |o| {
        label.matches(&o["metadata"]["labels"]) && field.matches(o)
    })
    .await
    .map_err(|s| {
        if s.code == 410 {
            Status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into())
        } else {
            s
        }
    })?;
    let rv = page.revision.to_string();
    let token = page
        .next
        .as_ref()
        .map(|n| registry::continue_token(page.revision, n, &prefix));
    if wants_table(headers) {
        let include = q
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(Json(table::table(
            res.group,
            res.kind,
            &page.items,
            &rv,
            token.as_deref(),
            include,
        ))
        .into_response());
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(t) = token {
        meta["continue"] = json!(t);
    }
    Ok(Json(json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": page.items,
    }))
    .into_response())
}

/// Unknown fields per `fieldValidation`: Strict rejects them, Warn (the default) reports them
/// as warnings, Ignore drops the check.
fn field_validation(res: &ResourceType, q: &Query, obj: &Value) -> Result<Vec<String>, Status> {
    let mode = q
        .get("fieldValidation")
        .map(String::as_str)
        .unwrap_or("Warn");
    if mode == "Ignore" {
        return Ok(vec![]);
    }
    let unknown =
        super::validation::unknown_fields(res.group, res.kind, obj).map_err(Status::bad_request)?;
    let messages: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    match mode {
        // Upstream wraps decoding errors as "<Kind> in version <v> cannot be handled as ...".
        "Strict" if !messages.is_empty() => Err(Status::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            messages.join(", "),
            kind = res.kind,
            version = res.version,
        ))),
        "Strict" | "Warn" => Ok(messages),
        other => Err(Status::bad_request(format!(
            "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
        ))),
    }
}

/// Defaults, runs create-only admission, then validates; nothing is stored when any field is
/// wrong.
fn admit(res: &ResourceType, obj: &mut Value, old: Option<&Value>) -> Result<(), Status> {
    super::defaults::apply(res.group, res.kind, obj);
    if old.is_none() {
        // Create-only mutating admission (DefaultTolerationSeconds), after defaulting.
        super::defaults::on_create(res.group, res.kind, obj);
    }
    let errors = super::validation::validate(res.group, res.kind, obj, old);
    if errors.is_empty() {
        return Ok(());
    }
    Err(Status::invalid_fields(
        res.kind,
        res.group,
        objects::name_of(obj),
        errors
            .iter()
            .map(|e| (e.reason(), e.message(), e.field.clone()))
            .collect(),
    ))
}

fn dry_run(q: &Query) -> bool {
    q.get("dryRun").is_some_and(|d| d == "All")
}

async fn namespace_ready(store: &Store, target: &Target) -> Result<(), Status> {
    let Some(ns) = target.namespace.as_deref() else {
        return Ok(());
    };
    let nsres = catalog::find("", "v1", "namespaces")
        .ok_or_else(|| Status::internal("no namespaces".into()))?;
    match registry::get(store, &registry::key(nsres, None, ns)).await? {
        None => Err(Status::object_not_found("", "namespaces", "namespaces", ns)),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(Status::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            target.res.qualified(),
            target.name.as_deref().unwrap_or("")
        ))),
        Some(_) => Ok(()),
    }
}

async fn create(
    store: &Store,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Response, Status> {
    let res = target.res;
    let mut obj = body::object(headers, raw, res)?;
    objects::check_target(res, target.namespace.as_deref(), &mut obj)?;
    let warnings = field_validation(res, q, &obj)?;
    let manager = manager_of(q, headers);
    store_new(store, target, q, obj, &warnings, Some(&manager)).await
}

/// Stores a new object: name generation, server-set fields, defaults and validation,
/// allocations, then the create transaction. `manager`, when given, is recorded as the
/// owner of every field (server-side apply records its own ownership before this).
async fn store_new(
    store: &Store,
    target: &Target,
    q: &Query,
    mut obj: Value,
    warnings: &[String],
    manager: Option<&str>,
) -> Result<Response, Status> {
    let res = target.res;
    let generate = obj["metadata"]["generateName"]
        .as_str()
        .filter(|g| !g.is_empty())
        .map(str::to_string);
    if objects::name_of(&obj).is_empty() {
        match &generate {
            Some(g) => obj["metadata"]["name"] = json!(format!("{g}{}", objects::name_suffix())),
            None => {
                return Err(Status::invalid_fields(
                    res.kind,
                    res.group,
                    "",
                    vec![(
                        "FieldValueRequired",
                        "Required value: name or generateName is required".into(),
                        "metadata.name".into(),
                    )],
                ))
            }
        }
    }
    let target = Target {
        name: Some(objects::name_of(&obj).to_string()),
        ..target.clone()
    };
    namespace_ready(store, &target).await?;
    objects::prepare_create(res, &mut obj);
    super::serviceaccount::admission::on_create(store, res.group, res.kind, &mut obj).await?;
    admit(res, &mut obj, None)?;
    // ResourceQuota admission; the guard holds off other creates charged to the namespace's
    // quotas until this one is stored.
    let _quota = super::quota::admit(store, &target, &obj, None).await?;
    if let Some(m) = manager {
        let now = objects::now_rfc3339();
        managed_fields::track_update(
            res.group,
            res.kind,
            &res.api_version(),
            None,
            &mut obj,
            m,
            &now,
        );
    }
    if dry_run(q) {
        return Ok(object_response(StatusCode::CREATED, obj, warnings));
    }
    let mut requested = obj.clone();
    for _ in 0..MAX_RETRIES {
        let claims = if res.kind == "Service" {
            obj = requested.clone();
            services::allocate(store, &mut obj, None)?
        } else {
            Claims::default()
        };
        let key = registry::key(res, target.namespace.as_deref(), objects::name_of(&obj));
        if let Some(created) = registry::create(store, &key, &obj, &claims).await? {
            return Ok(object_response(StatusCode::CREATED, created, warnings));
        }
        if registry::get(store, &key).await?.is_none() {
            // The object is new; an allocation it asked for is what failed.
            match services::explain_taken(store, &obj, &claims)? {
                Some(s) => return Err(s),
                None => continue,
            }
        }
        match &generate {
            // A generated name collided; draw another, as upstream's client retry would.
            Some(g) => {
                let fresh = format!("{g}{}", objects::name_suffix());
                obj["metadata"]["name"] = json!(fresh);
                requested["metadata"]["name"] = json!(fresh);
            }
            None => break,
        }
    }
    Err(Status::object_exists(
        res.group,
        res.plural,
        &res.qualified(),
        objects::name_of(&obj),
    ))
}

/// What deleting `obj` gives back to the allocators.
fn released(res: &ResourceType, obj: &Value) -> Claims {
    if res.kind == "Service" {
        services::release(obj)
    } else {
        Claims::default()
    }
}

/// The part of the object a subresource writes, or the object itself.
fn part_of(target: &Target) -> Part {
    match target.sub.map(|s| s.name) {
        Some("status") => Part::Status,
        Some("binding") => Part::Binding,
        _ => Part::Main,
    }
}

/// Read-modify-write of one object: `change` turns the current object into the desired one
/// (the client's view already merged in); the write retries while others race it, unless the
/// client pinned a resourceVersion.
pub(super) async fn write(
    store: &Store,
    target: &Target,
    q: &Query,
    manager: Option<&str>,
    mut change: impl FnMut(&Value) -> Result<Value, Status>,
) -> Result<Value, Status> {
    let res = target.res;
    for _ in 0..MAX_RETRIES {
        let cur = current(store, target).await?;
        let mut wanted = change(&cur)?;
        let pinned = wanted["metadata"]["resourceVersion"]
            .as_str()
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        if let Some(rv) = &pinned {
            if Some(rv.as_str()) != cur["metadata"]["resourceVersion"].as_str() {
                return Err(target.conflict());
            }
        }
        wanted["apiVersion"] = json!(res.api_version());
        wanted["kind"] = json!(res.kind);
        let part = part_of(target);
        let mut next = objects::prepare_update(res, part, &cur, wanted)?;
        // As upstream's binding storage, binding skips update validation: `bind` alone decides
        // whether a pod may get a node, and an ordinary update may never set one.
        if part != Part::Binding {
            admit(res, &mut next, Some(&cur))?;
        }
        // Quota admission judges the object, not its subresources, as upstream's plugin; the
        // guard holds off other writes charged to the namespace's quotas until this is stored.
        let _quota = if part == Part::Main {
            Some(super::quota::admit(store, target, &next, Some(&cur)).await?)
        } else {
            None
        };
        if let Some(m) = manager {
            let now = objects::now_rfc3339();
            let api_version = res.api_version();
            managed_fields::track_update(
                res.group,
                res.kind,
                &api_version,
                Some(&cur),
                &mut next,
                m,
                &now,
            );
        }
        if objects::unchanged(&cur, &next) || dry_run(q) {
            return Ok(next);
        }
        let finalized = !next["metadata"]["deletionTimestamp"].is_null()
            && next["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        if finalized {
            // The last finalizer is gone from an object being deleted: it goes now.
            if registry::remove(store, &target.key(), &cur, &released(res, &cur))
                .await?
                .is_some()
            {
                return Ok(next);
            }
            continue;
        }
        let claims = if res.kind == "Service" {
            services::allocate(store, &mut next, Some(&cur))?
        } else {
            Claims::default()
        };
        if let Some(stored) = registry::replace(store, &target.key(), &cur, &next, &claims).await? {
            return Ok(stored);
        }
        if let Some(s) = services::explain_taken(store, &next, &claims)? {
            return Err(s);
        }
        if pinned.is_some() {
            return Err(target.conflict());
        }
    }
    Err(target.conflict())
}

async fn update(
    store: &Store,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Response, Status> {
    let res = target.res;
    let scale = target.sub.is_some_and(|s| s.name == "scale");
    let (given, warnings) = if scale {
        (body::json(raw)?, vec![])
    } else {
        let mut obj = body::object(headers, raw, res)?;
        objects::check_target(res, target.namespace.as_deref(), &mut obj)?;
        let w = field_validation(res, q, &obj)?;
        (obj, w)
    };
    let manager = manager_of(q, headers);
    let out = write(store, target, q, Some(&manager), |cur| {
        if scale {
            objects::apply_scale(cur, &given)
        } else {
            Ok(given.clone())
        }
    })
    .await?;
    let out = if scale { objects::scale_of(&out) } else { out };
    Ok(object_response(StatusCode::OK, out, &warnings))
}

async fn patch_object(
    store: &Store,
    target: &Target,
    q: &Query,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Response, Status> {
    let res = target.res;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let kind = patch::Kind::from_content_type(&content_type)?;
    if kind == patch::Kind::Apply {
        return apply(store, target, q, body::yaml(raw)?).await;
    }
    let doc = body::json(raw)?;
    let scale = target.sub.is_some_and(|s| s.name == "scale");
    let mut warnings = Vec::new();
    let manager = manager_of(q, headers);
    let out = write(store, target, q, Some(&manager), |cur| {
        let base = if scale {
            objects::scale_of(cur)
        } else {
            cur.clone()
        };
        let mut patched = patch::apply(kind, res, &base, &doc)?;
        if scale {
            return objects::apply_scale(cur, &patched);
        }
        // The current resourceVersion the patch was applied to pins nothing: as upstream, a
        // patch is retried against a newer object unless it names a resourceVersion itself.
        if !names_resource_version(kind, &doc) {
            if let Some(meta) = patched["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
        }
        warnings = field_validation(res, q, &patched)?;
        Ok(patched)
    })
    .await?;
    let out = if scale { objects::scale_of(&out) } else { out };
    Ok(object_response(StatusCode::OK, out, &warnings))
}

/// Whether a patch sets `metadata.resourceVersion`, making the write conditional on it.
fn names_resource_version(kind: patch::Kind, doc: &Value) -> bool {
    match kind {
        patch::Kind::Json => doc.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["path"] == "/metadata/resourceVersion")
        }),
        _ => !doc["metadata"]["resourceVersion"].is_null(),
    }
}

/// Who a write is recorded against in managedFields: `?fieldManager=`, else the client's
/// User-Agent up to its first '/', as upstream derives it.
fn manager_of(q: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.chars().take(128).collect();
    }
    headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .chars()
        .take(128)
        .collect()
}

fn apply_error(e: managed_fields::ApplyError) -> Status {
    match &e {
        managed_fields::ApplyError::Conflicts(conflicts) => Status {
            details: Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    "reason": "FieldManagerConflict",
                    "message": c.message(),
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ..Status::new(409, "Conflict", e.to_string())
        },
        managed_fields::ApplyError::Invalid(_) => Status::bad_request(e.to_string()),
    }
}

/// Server-side apply: merges the caller's configuration into the object (creating it when
/// absent), with field ownership and conflicts as upstream's field manager decides them.
async fn apply(
    store: &Store,
    target: &Target,
    q: &Query,
    mut applied: Value,
) -> Result<Response, Status> {
    let res = target.res;
    if target.sub.is_some() {
        return Err(Status::new(
            415,
            "UnsupportedMediaType",
            "server-side apply of a subresource is not supported".into(),
        ));
    }
    let Some(manager) = q.get("fieldManager").filter(|m| !m.is_empty()).cloned() else {
        return Err(Status::invalid_fields(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![(
                "FieldValueRequired",
                "Required value: is required for apply patch".into(),
                "fieldManager".into(),
            )],
        ));
    };
    let force = flag(q, "force");
    if !applied.is_object() {
        return Err(Status::bad_request(
            "an apply configuration must be an object".into(),
        ));
    }
    objects::check_target(res, target.namespace.as_deref(), &mut applied)?;
    if objects::name_of(&applied) != target.name.as_deref().unwrap_or("") {
        return Err(Status::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            objects::name_of(&applied),
            target.name.as_deref().unwrap_or("")
        )));
    }
    let warnings = field_validation(res, q, &applied)?;
    let api_version = res.api_version();
    let now = objects::now_rfc3339();
    match current(store, target).await {
        Err(s) if s.code == 404 => {
            let obj = managed_fields::apply(
                res.group,
                res.kind,
                &api_version,
                None,
                &applied,
                &manager,
                force,
                &now,
            )
            .map_err(apply_error)?;
            store_new(store, target, q, obj, &warnings, None).await
        }
        Err(s) => Err(s),
        Ok(_) => {
            let out = write(store, target, q, None, |cur| {
                managed_fields::apply(
                    res.group,
                    res.kind,
                    &api_version,
                    Some(cur),
                    &applied,
                    &manager,
                    force,
                    &now,
                )
                .map_err(apply_error)
            })
            .await?;
            Ok(object_response(StatusCode::OK, out, &warnings))
        }
    }
}

/// DeleteOptions from the body and the query (the query wins, as upstream).
fn delete_options(q: &Query, raw: &[u8]) -> Result<Value, Status> {
    let mut opts = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::json(raw)?
    };
    if !opts.is_object() {
        return Err(Status::bad_request(
            "DeleteOptions must be an object".into(),
        ));
    }
    if let Some(p) = q.get("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(g) = q
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse::<i64>().ok())
    {
        opts["gracePeriodSeconds"] = json!(g);
    }
    match opts["propagationPolicy"].as_str() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(opts),
        Some(other) => Err(Status::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// Deletes one object: at once when nothing holds it, else by marking it with a
/// deletionTimestamp and leaving its finalizers to their owners.
pub(super) async fn delete_one(
    store: &Store,
    target: &Target,
    q: &Query,
    opts: &Value,
) -> Result<Value, Status> {
    for _ in 0..MAX_RETRIES {
        let cur = current(store, target).await?;
        let pre = &opts["preconditions"];
        if let Some(uid) = pre["uid"].as_str() {
            if Some(uid) != cur["metadata"]["uid"].as_str() {
                return Err(Status::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        cur["metadata"]["uid"].as_str().unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = pre["resourceVersion"].as_str() {
            if Some(rv) != cur["metadata"]["resourceVersion"].as_str() {
                return Err(Status::new(409, "Conflict", format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    cur["metadata"]["resourceVersion"].as_str().unwrap_or("")
                )));
            }
        }
        let mut finalizers: Vec<Value> = cur["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let policy_finalizer = match opts["propagationPolicy"].as_str() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if target.res.kind == "Namespace" {
            return super::namespaces::delete(store, target, cur).await;
        }
        if let Some(f) = policy_finalizer {
            if !finalizers.contains(&json!(f)) {
                finalizers.push(json!(f));
            }
        }
        if dry_run(q) {
            return Ok(cur);
        }
        if let Some(grace) = pod_grace_period(target, &cur, opts) {
            // A pod on a node ends gracefully: its kubelet stops the containers within the
            // grace period, then deletes the object with a grace period of 0.
            let had = cur["metadata"]["deletionGracePeriodSeconds"].as_i64();
            if had.is_some_and(|h| h <= grace) {
                return Ok(cur);
            }
            let mut next = cur.clone();
            next["metadata"]["deletionTimestamp"] = json!(objects::rfc3339_in(grace));
            next["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            if let Some(stored) =
                registry::replace(store, &target.key(), &cur, &next, &Claims::default()).await?
            {
                return Ok(stored);
            }
            continue;
        }
        if finalizers.is_empty() {
            if let Some(gone) =
                registry::remove(store, &target.key(), &cur, &released(target.res, &cur)).await?
            {
                return Ok(gone);
            }
            continue;
        }
        if !cur["metadata"]["deletionTimestamp"].is_null() {
            return Ok(cur);
        }
        let mut next = cur.clone();
        next["metadata"]["deletionTimestamp"] = json!(objects::now_rfc3339());
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        next["metadata"]["finalizers"] = json!(finalizers);
        if let Some(stored) =
            registry::replace(store, &target.key(), &cur, &next, &Claims::default()).await?
        {
            return Ok(stored);
        }
    }
    Err(target.conflict())
}

/// The grace period a pod's deletion gets, or `None` when it goes at once: upstream deletes
/// at once pods not bound to a node, pods that have finished, and deletions with a grace
/// period of 0.
fn pod_grace_period(target: &Target, cur: &Value, opts: &Value) -> Option<i64> {
    if target.res.kind != "Pod" || target.sub.is_some() {
        return None;
    }
    if cur["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
        || matches!(
            cur["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
    {
        return None;
    }
    let grace = opts["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| cur["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    (grace > 0).then_some(grace)
}

async fn delete(store: &Store, target: &Target, q: &Query, raw: &[u8]) -> Result<Response, Status> {
    let opts = delete_options(q, raw)?;
    let out = delete_one(store, target, q, &opts).await?;
    Ok(Json(out).into_response())
}

async fn delete_collection(
    store: &Store,
    target: &Target,
    q: &Query,
    raw: &[u8],
) -> Result<Response, Status> {
    let res = target.res;
    let opts = delete_options(q, raw)?;
    let (label, field) = selectors(res, q)?;
    let page = registry::list(store, &target.prefix(), &ListOptions::default(), |o| {
        label.matches(&o["metadata"]["labels"]) && field.matches(o)
    })
    .await?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let one = Target {
            namespace: obj["metadata"]["namespace"].as_str().map(str::to_string),
            name: Some(objects::name_of(&obj).to_string()),
            ..target.clone()
        };
        match delete_one(store, &one, q, &opts).await {
            Ok(o) => deleted.push(o),
            Err(s) if s.code == 404 => {}
            Err(s) => return Err(s),
        }
    }
    Ok(Json(json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    }))
    .into_response())
}

/// pods/binding as upstream's binding storage: an unassigned pod that is not being deleted (and
/// has the binding's uid, when it names one) gets the node and PodScheduled=True.
fn bind(cur: &Value, node: &str, uid: &str) -> Result<Value, Status> {
    let name = objects::name_of(cur);
    let conflict = |why: String| {
        Err(Status::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on pods/binding \"{name}\": {why}"),
        ))
    };
    let assigned = cur["spec"]["nodeName"].as_str().unwrap_or("");
    if !assigned.is_empty() {
        return conflict(format!(
            "pod {name} is already assigned to node \"{assigned}\""
        ));
    }
    if !cur["metadata"]["deletionTimestamp"].is_null() {
        return conflict(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        ));
    }
    let have = cur["metadata"]["uid"].as_str().unwrap_or("");
    if !uid.is_empty() && uid != have {
        return conflict(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
        ));
    }
    let mut next = cur.clone();
    next["spec"]["nodeName"] = json!(node);
    let mut list = next["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                           "lastTransitionTime": objects::now_rfc3339()});
    match list.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => *c = scheduled,
        None => list.push(scheduled),
    }
    next["status"]["conditions"] = Value::Array(list);
    Ok(next)
}

/// POSTs to subresources: pods/binding assigns a node, pods/eviction deletes the pod if its
/// disruption budget allows ([`super::eviction`]).
async fn create_subresource(
    store: &Store,
    target: &Target,
    _headers: &HeaderMap,
    raw: &[u8],
) -> Result<Response, Status> {
    let doc = body::json(raw)?;
    let q = Query::new();
    match target.sub.map(|s| s.name) {
        Some("binding") => {
            let node = doc["target"]["name"].as_str().unwrap_or("").to_string();
            if node.is_empty() {
                return Err(Status::invalid_fields(
                    "Binding",
                    "",
                    target.name.as_deref().unwrap_or(""),
                    vec![(
                        "FieldValueRequired",
                        "Required value".into(),
                        "target.name".into(),
                    )],
                ));
            }
            let uid = doc["metadata"]["uid"].as_str().unwrap_or("").to_string();
            write(store, target, &q, Some("kube-scheduler"), |cur| {
                bind(cur, &node, &uid)
            })
            .await?;
            Ok((StatusCode::CREATED, Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
            })))
            .into_response())
        }
        Some("eviction") => {
            super::eviction::evict(store, target, &doc).await?;
            Ok((StatusCode::CREATED, Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
            })))
            .into_response())
        }
        _ => Err(Status::new(
            503,
            "ServiceUnavailable",
            "this subresource is served by the pod's node agent, which is not reachable".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_patch_naming_a_resource_version_is_conditional() {
        let json = |v: Value| names_resource_version(patch::Kind::Json, &v);
        let merge = |v: Value| names_resource_version(patch::Kind::Merge, &v);
        assert!(!json(
            json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])
        ));
        assert!(json(
            json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "5"}])
        ));
        assert!(!merge(json!({"metadata": {"labels": {"a": "b"}}})));
        assert!(merge(json!({"metadata": {"resourceVersion": "5"}})));
    }

    #[test]
    fn binding_sets_the_node_and_pod_scheduled() {
        let pending = json!({
            "metadata": {"name": "web", "uid": "u1"},
            "spec": {"containers": []},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]},
        });
        let bound = bind(&pending, "n1", "u1").unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        let conditions = bound["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["status"], "True");
        assert!(conditions[0]["reason"].is_null());
        assert!(conditions[0]["lastTransitionTime"].is_string());

        let bare = json!({"metadata": {"name": "web", "uid": "u1"}, "spec": {}});
        let bound_bare = bind(&bare, "n1", "").unwrap();
        assert_eq!(
            bound_bare["status"]["conditions"][0]["type"],
            "PodScheduled"
        );

        for (pod, uid, why) in [
            (bound.clone(), "u1", "is already assigned to node \"n1\""),
            (
                json!({"metadata": {"name": "web", "uid": "u1",
                                    "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                "u1",
                "is being deleted",
            ),
            (pending.clone(), "u2", "UID in precondition: u2"),
        ] {
            let e = bind(&pod, "n2", uid).unwrap_err();
            assert_eq!(e.code, 409);
            assert!(e.message.contains(why), "{}", e.message);
        }
    }

    #[test]
    fn urls_name_targets() {
        let t = parse_target("", "v1", "namespaces/default/pods/web/status").unwrap();
        assert_eq!(t.res.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("web"));
        assert_eq!(t.sub.unwrap().name, "status");
        let t = parse_target("", "v1", "namespaces/default").unwrap();
        assert_eq!(t.res.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("default"));
        let t = parse_target("", "v1", "namespaces/kube-system/finalize").unwrap();
        assert_eq!(t.sub.unwrap().name, "finalize");
        let t = parse_target("apps", "v1", "deployments").unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(parse_target("apps", "v1", "namespaces/x/deployments/y/nope").is_err());
        assert!(parse_target("", "v1", "pods/web").is_err());
        assert!(parse_target("", "v1", "widgets").is_err());
        assert!(parse_target("", "v1", "namespaces/a/pods/b/c/d").is_err());
    }
}
