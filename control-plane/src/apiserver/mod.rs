//! The Kubernetes-compatible API server: HTTPS with client-certificate authentication against
//! the cluster CA, serving the Kubernetes REST API from the replicated store.
//!
//! This module accepts connections, authenticates and authorizes each request, and routes it:
//! discovery, OpenAPI and health to their modules, resource paths to the generic REST layer
//! ([`rest`], storing through [`registry`]), and the streaming pod subresources (exec,
//! portforward) to the WebSocket bridges that reach the pod's node agent.

mod agent;
mod authn;
mod authz;
mod body;
mod catalog;
mod channels;
mod defaults;
mod discovery;
mod eviction;
mod exec;
mod logs;
mod managed_fields;
mod metrics;
mod namespaces;
mod objects;
mod openapi;
mod patch;
mod portforward;
mod protobuf;
mod quota;
mod registry;
mod rest;
mod selectors;
mod serviceaccount;
mod services;
mod spdy;
mod status;
mod strategic_merge;
mod table;
mod tls;
mod validation;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, Query, Request};
use axum::http::{HeaderMap, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::pki::{PkiError, PkiPaths};
use crate::store::Store;

pub use status::Status;

/// Why the API server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The service-account signing key could not be loaded.
    #[error("service-account tokens: {0}")]
    ServiceAccounts(#[from] serviceaccount::ServiceAccountError),
}

pub use authn::{TokenFile, User};

/// The user a connection's client certificate names; None when it presented none.
#[derive(Debug, Clone)]
struct CertificateUser(Option<User>);

/// How to reach and run the API server.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    pub listen: SocketAddr,
    /// The address clients are told to use (discovery's serverAddressByClientCIDRs).
    pub advertise: String,
    pub pki: PkiPaths,
    /// Static bearer tokens, if any.
    pub tokens: TokenFile,
}

fn routes(
    cfg: &ApiServerConfig,
    store: Store,
    sas: Arc<serviceaccount::ServiceAccounts>,
) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/healthz", get(discovery::ok))
        .route("/livez", get(discovery::ok))
        .route("/readyz", get(discovery::ok))
        .route("/api", get(discovery::api_versions))
        .route("/apis", get(discovery::api_groups))
        .route("/api/v1", get(|| group_version(String::new(), "v1".into())))
        .route(
            "/apis/:group/:version",
            get(|Path((g, v)): Path<(String, String)>| group_version(g, v)),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            axum::routing::post(discovery::self_subject_review),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            axum::routing::post(self_subject_access_review),
        )
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/*path", get(openapi::document))
        .route("/api/v1/*rest", any(core_rest))
        .route("/apis/:group/:version/*rest", any(group_rest))
        .fallback(discovery::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(authenticate))
        .layer(Extension(Arc::new(cfg.tokens.clone())))
        .layer(Extension(sas))
        .layer(Extension(Arc::new(cfg.advertise.clone())))
        .layer(Extension(store))
}

/// `kubectl auth can-i`: whether the caller may do what the review describes.
async fn self_subject_access_review(
    Extension(store): Extension<Store>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(res) = catalog::find("authorization.k8s.io", "v1", "selfsubjectaccessreviews") else {
        return Status::internal("no selfsubjectaccessreviews".into()).into_response();
    };
    let review = match body::object(&headers, &body, res) {
        Ok(v) => v,
        Err(s) => return s.into_response(),
    };
    let spec = &review["spec"];
    let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let attrs = if spec["nonResourceAttributes"].is_object() {
        let a = &spec["nonResourceAttributes"];
        authz::Attributes::NonResource {
            verb: text(&a["verb"]).unwrap_or_default(),
            path: text(&a["path"]).unwrap_or_default(),
        }
    } else {
        let a = &spec["resourceAttributes"];
        authz::Attributes::Resource {
            verb: text(&a["verb"]).unwrap_or_default(),
            group: text(&a["group"]).unwrap_or_default(),
            resource: text(&a["resource"]).unwrap_or_default(),
            subresource: text(&a["subresource"]),
            namespace: text(&a["namespace"]),
            name: text(&a["name"]),
        }
    };
    let allowed = match authz::allowed(&store, &user, &attrs).await {
        Ok(a) => a,
        Err(s) => return s.into_response(),
    };
    let mut out = review.clone();
    out["apiVersion"] = serde_json::json!("authorization.k8s.io/v1");
    out["kind"] = serde_json::json!("SelfSubjectAccessReview");
    out["metadata"] = serde_json::json!({"creationTimestamp": null});
    out["status"] = serde_json::json!({"allowed": allowed});
    (axum::http::StatusCode::CREATED, Json(out)).into_response()
}

/// Largest request body accepted, as upstream's 3 MiB limit.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// How much of an oversized body is read (and dropped) so the client, still sending, gets its
/// 413 instead of a reset connection; beyond this the connection is cut.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// The request body, up to [`MAX_BODY_BYTES`]; a larger one is 413 after being drained.
async fn read_body(body: Body) -> Result<Bytes, Status> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Status::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY_BYTES {
                kept.extend_from_slice(&data);
            } else if seen > MAX_DRAIN_BYTES {
                break;
            }
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(Status::too_large());
    }
    Ok(Bytes::from(kept))
}

async fn group_version(group: String, version: String) -> Response {
    match discovery::resource_list(&group, &version) {
        Some(list) => Json(list).into_response(),
        None => Status::not_found(&format!("/apis/{group}/{version}")).into_response(),
    }
}

/// One request under `/api/v1/` or `/apis/<group>/<version>/`: what the REST handlers need
/// of it, gathered once for both routes.
struct RestRequest {
    store: Store,
    method: Method,
    query: rest::Query,
    raw_query: Option<String>,
    headers: HeaderMap,
    ws: Option<WebSocketUpgrade>,
    body: Body,
    /// The caller (set by [`authenticate`]).
    user: Option<User>,
    /// Service-account tokens and admission.
    sas: Option<Arc<serviceaccount::ServiceAccounts>>,
}

#[axum::async_trait]
impl<S: Send + Sync> axum::extract::FromRequest<S> for RestRequest {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        use axum::extract::FromRequestParts as _;
        let (mut parts, body) = request.into_parts();
        let Extension(store) = Extension::<Store>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(query) = Query::<rest::Query>::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| Status::bad_request(e.body_text()).into_response())?;
        let ws = WebSocketUpgrade::from_request_parts(&mut parts, state)
            .await
            .ok();
        let user = parts.extensions.get::<User>().cloned();
        let sas = parts
            .extensions
            .get::<Arc<serviceaccount::ServiceAccounts>>()
            .cloned();
        Ok(RestRequest {
            user,
            sas,
            store,
            raw_query: parts.uri.query().map(str::to_string),
            method: parts.method,
            query,
            headers: parts.headers,
            ws,
            body,
        })
    }
}

async fn core_rest(Path(rest): Path<String>, req: RestRequest) -> Response {
    serve_rest(req, "", "v1", &rest).await
}

async fn group_rest(
    Path((group, version, rest)): Path<(String, String, String)>,
    req: RestRequest,
) -> Response {
    serve_rest(req, &group, &version, &rest).await
}

async fn serve_rest(req: RestRequest, group: &str, version: &str, path: &str) -> Response {
    let target = match rest::parse_target(group, version, path) {
        Ok(t) => t,
        Err(s) => return s.into_response(),
    };
    if matches!(target.sub.map(|s| s.name), Some("exec" | "portforward")) {
        return serve_stream(req, target)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let body = match read_body(req.body).await {
        Ok(b) => b,
        Err(s) => return s.into_response(),
    };
    let Some(sas) = req.sas else {
        return Status::internal("service-account tokens are not set up".into()).into_response();
    };
    if target.sub.is_some_and(|s| s.name == "token") && req.method == Method::POST {
        let user = req.user.unwrap_or_default();
        return serviceaccount::token_request::create(
            &req.store,
            &sas,
            &user,
            &target,
            &req.headers,
            &body,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response);
    }
    let handled = rest::handle(req.store, req.method, target, req.query, req.headers, body);
    match serviceaccount::ServiceAccounts::scope(sas, handled).await {
        Ok(r) => r,
        Err(s) => s.into_response(),
    }
}

/// exec and portforward: a WebSocket to a stream the pod's node agent serves.
async fn serve_stream(req: RestRequest, target: rest::Target) -> Result<Response, Status> {
    // Upgrades carry no body; any other is read first, as an answer sent while the client is
    // still sending gets its HTTP/2 stream reset before the client reads it.
    read_body(req.body).await?;
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.raw_query.as_deref().unwrap_or(""))
            .map_err(|e| Status::bad_request(format!("invalid query: {e}")))?;
    let pod = registry::get(&req.store, &target.key())
        .await?
        .ok_or_else(|| target.not_found())?;
    if target.sub.is_some_and(|s| s.name == "exec") {
        exec::serve(&req.store, pod, &params, &req.headers, req.ws).await
    } else {
        portforward::serve(&req.store, pod, &params, &req.headers, req.ws).await
    }
}

/// Attaches the caller's [`User`] to the request; anonymous requests get 401, as the cluster
/// allows no anonymous access.
async fn authenticate(mut request: Request, next: Next) -> Response {
    let from_cert = request
        .extensions()
        .get::<CertificateUser>()
        .and_then(|c| c.0.clone());
    let user = from_cert.or_else(|| {
        let token = request
            .headers()
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim()
            .to_string();
        let ext = request.extensions();
        if let Some(u) = ext.get::<Arc<TokenFile>>().and_then(|f| f.user(&token)) {
            return Some(u.clone());
        }
        let sas = ext.get::<Arc<serviceaccount::ServiceAccounts>>()?;
        sas.authenticate(ext.get::<Store>()?, &token)
    });
    let Some(user) = user else {
        return Status::unauthorized().into_response();
    };
    let attrs = attributes(request.method(), request.uri());
    if let Some(store) = request.extensions().get::<Store>() {
        match authz::allowed(store, &user, &attrs).await {
            Ok(true) => {}
            Ok(false) => return authz::denied(&user, &attrs).into_response(),
            Err(s) => return s.into_response(),
        }
    }
    request.extensions_mut().insert(user);
    next.run(request).await
}

/// What a request asks to do, for authorization: resource paths parse into resource
/// attributes, everything else is a non-resource URL.
fn attributes(method: &Method, uri: &axum::http::Uri) -> authz::Attributes {
    let path = uri.path();
    let non_resource = || authz::Attributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    };
    let parsed = if let Some(rest) = path.strip_prefix("/api/v1/") {
        Some(("", "v1", rest))
    } else if let Some(rest) = path.strip_prefix("/apis/") {
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(g), Some(v), Some(rest)) if !rest.is_empty() => Some((g, v, rest)),
            _ => None,
        }
    } else {
        None
    };
    let Some((group, version, rest)) = parsed else {
        return non_resource();
    };
    let Ok(target) = rest::parse_target(group, version, rest) else {
        return non_resource();
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    authz::Attributes::Resource {
        verb: rest::verb(method, &target, watch)
            .unwrap_or("unknown")
            .to_string(),
        group: group.to_string(),
        resource: target.res.plural.to_string(),
        subresource: target.sub.map(|s| s.name.to_string()),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    }
}

/// Binds the listener; serving starts with [`serve`].
pub async fn bind(cfg: &ApiServerConfig) -> Result<TcpListener, ApiServerError> {
    TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ApiServerError::Listen {
            addr: cfg.listen,
            source,
        })
}

/// Serves HTTPS on `listener` until the task is dropped.
pub async fn serve(
    cfg: ApiServerConfig,
    listener: TcpListener,
    store: Store,
) -> Result<(), ApiServerError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(&cfg.pki)?));
    let sas = Arc::new(serviceaccount::ServiceAccounts::load(&cfg.pki)?);
    if let Err(s) = namespaces::ensure_system(&store).await {
        warn!(error = %s.message, "creating the system namespaces failed; they are retried at the next start");
    }
    if let Err(s) = authz::ensure_bootstrap(&store).await {
        warn!(error = %s.message, "creating the bootstrap RBAC roles failed; they are retried at the next start");
    }
    if let Err(s) = namespaces::ensure_api_service(&store, cfg.listen.port()).await {
        warn!(error = %s.message, "creating the kubernetes service failed; it is retried at the next start");
    }
    let app = routes(&cfg, store, sas);
    info!(listen = %cfg.listen, "API server serving");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        // Responses go out in several writes (headers, then chunks); Nagle would hold the
        // last partial segment for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            // rustls has already checked the chain against the cluster CA.
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|der| authn::from_certificate(der));
            let svc = TowerToHyperService::new(app.layer(Extension(CertificateUser(user))));
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
