//! The Kubernetes-compatible API server: HTTPS with client-certificate authentication against
//! the cluster CA, serving the Kubernetes REST API from the replicated store.
//!
//! So far it serves what every client asks before anything else (`/version`, from which kubectl
//! picks its bundled version; discovery; health) and core/v1 Namespaces, stored through
//! [`registry`] in the replicated store.

mod authn;
mod body;
mod discovery;
mod namespaces;
mod registry;
mod status;
mod table;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
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

fn routes(cfg: &ApiServerConfig, store: Store) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/healthz", get(discovery::ok))
        .route("/livez", get(discovery::ok))
        .route("/readyz", get(discovery::ok))
        .route("/api", get(discovery::api_versions))
        .route("/api/v1", get(discovery::core_v1))
        .route("/apis", get(discovery::api_groups))
        .route(
            "/apis/authentication.k8s.io/v1",
            get(discovery::authentication_v1),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            axum::routing::post(discovery::self_subject_review),
        )
        .route(
            "/api/v1/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/api/v1/namespaces/:name",
            get(namespaces::get).delete(namespaces::delete),
        )
        .fallback(discovery::not_found)
        .layer(middleware::from_fn(authenticate))
        .layer(Extension(Arc::new(cfg.tokens.clone())))
        .layer(Extension(Arc::new(cfg.advertise.clone())))
        .layer(Extension(store))
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
        request
            .extensions()
            .get::<Arc<TokenFile>>()?
            .user(&token)
            .cloned()
    });
    match user {
        Some(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None => Status::unauthorized().into_response(),
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
    let app = routes(&cfg, store);
    info!(listen = %cfg.listen, "API server serving");
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
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
