//! Service accounts as identities: the tokens the API server issues for them and accepts from
//! them, and the admission that gives pods their token volume.
//!
//! | module | job |
//! |---|---|
//! | [`jwt`] | ES256 JWTs: signing, verification, upstream's bound and legacy claims |
//! | [`token_request`] | `POST serviceaccounts/<name>/token` (TokenRequest), bound to a pod, Secret or Node |
//! | [`admission`] | upstream's ServiceAccount admission for pods, and legacy token Secrets filled in |
//!
//! Authentication ([`ServiceAccounts::authenticate`]) checks signature, expiry and audience,
//! then that the service account (and the pod, Secret or Node a token is bound to) still
//! exists with the uid the token names, reading this member's store as upstream reads its
//! informer caches.

pub mod admission;
pub mod jwt;
pub mod token_request;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tracing::debug;

use super::authn::User;
use super::catalog;
use super::registry;
use crate::pki::{PkiError, PkiPaths};
use crate::store::Store;
use jwt::{JwtError, SigningKey, Verified};

/// Why the service-account token machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    /// The key files could not be created or read.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The signing key is unusable.
    #[error(transparent)]
    Key(#[from] JwtError),
}

/// The user name of service account `name` in `namespace`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// What issuing and checking service-account tokens needs: the signing key, the audiences
/// the API server accepts, and the cluster CA handed out next to tokens.
#[derive(Debug)]
pub struct ServiceAccounts {
    key: SigningKey,
    /// Audiences a token must name one of (upstream's `--api-audiences`, default the issuer).
    audiences: Vec<String>,
    /// The cluster CA certificate (PEM), the `ca.crt` of legacy token Secrets.
    ca_pem: String,
}

tokio::task_local! {
    /// The request's [`ServiceAccounts`], for admission deep inside the generic REST layer.
    static CURRENT: Arc<ServiceAccounts>;
}

impl ServiceAccounts {
    /// Loads `sa.key` (creating it if an older data directory lacks it) and the CA.
    pub fn load(pki: &PkiPaths) -> Result<ServiceAccounts, ServiceAccountError> {
        crate::pki::ensure_service_account_key(pki)?;
        let key = SigningKey::from_pem(&crate::pki::read(&pki.sa_key())?)?;
        let ca_pem = crate::pki::read(&pki.ca_cert())?;
        Ok(ServiceAccounts::new(key, ca_pem))
    }

    /// From a key and CA in hand (tests).
    pub fn new(key: SigningKey, ca_pem: String) -> ServiceAccounts {
        ServiceAccounts {
            key,
            audiences: vec![jwt::ISSUER.to_string()],
            ca_pem,
        }
    }

    /// Runs `fut` with `this` as the [`ServiceAccounts`] admission sees.
    pub async fn scope<F: std::future::Future>(this: Arc<ServiceAccounts>, fut: F) -> F::Output {
        CURRENT.scope(this, fut).await
    }

    /// The [`ServiceAccounts`] of the request being served, if any.
    pub fn current() -> Option<Arc<ServiceAccounts>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The audiences tokens default to and must name one of.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The cluster CA (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The service account a bearer token stands for, or None when it is not one of ours or
    /// no longer valid. Never logs the token.
    pub fn authenticate(&self, store: &Store, token: &str) -> Option<User> {
        let _span = tracing::debug_span!("serviceaccount_token").entered();
        let verified = match self.key.verify(token, now(), &self.audiences) {
            Ok(v) => v,
            Err(e) => {
                debug!(error = %e, "bearer token rejected");
                return None;
            }
        };
        match check_binding(store, token, &verified) {
            Ok(user) => Some(user),
            Err(why) => {
                debug!(%why, "service-account token rejected");
                None
            }
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An RFC 3339 timestamp as seconds since the epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// An epoch time in RFC 3339, as Kubernetes writes timestamps.
pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The object at `plural` (core group) `namespace`/`name` as this member has it.
fn lookup(store: &Store, plural: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
    let res = catalog::find("", "v1", plural)?;
    registry::get_local(store, &registry::key(res, namespace, name))
        .ok()
        .flatten()
}

/// The object at `plural` (core group) `namespace`/`name`, read linearizably (for writes and
/// token issuance, which must not act on a stale view).
async fn lookup_linearized(
    store: &Store,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, super::status::Status> {
    let res = catalog::find("", "v1", plural)
        .ok_or_else(|| super::status::Status::internal(format!("no {plural}")))?;
    registry::get(store, &registry::key(res, namespace, name)).await
}

fn uid_of(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

/// Checks that what the token names still exists with the same uid, and builds the user.
fn check_binding(store: &Store, token: &str, verified: &Verified) -> Result<User, String> {
    match verified {
        Verified::Bound(c) => {
            let k = &c.kubernetes;
            let ns = k.namespace.as_str();
            let sa = lookup(store, "serviceaccounts", Some(ns), &k.serviceaccount.name)
                .ok_or("service account is gone")?;
            if uid_of(&sa) != k.serviceaccount.uid {
                return Err("service account uid differs".into());
            }
            let mut extra = BTreeMap::new();
            if let Some(p) = &k.pod {
                let pod = lookup(store, "pods", Some(ns), &p.name).ok_or("bound pod is gone")?;
                if uid_of(&pod) != p.uid {
                    return Err("bound pod uid differs".into());
                }
                if pod["metadata"]["deletionTimestamp"]
                    .as_str()
                    .and_then(parse_rfc3339)
                    .is_some_and(|t| t < now())
                {
                    return Err("bound pod has been deleted".into());
                }
                extra.insert(
                    "authentication.kubernetes.io/pod-name".into(),
                    vec![p.name.clone()],
                );
                extra.insert(
                    "authentication.kubernetes.io/pod-uid".into(),
                    vec![p.uid.clone()],
                );
            }
            if let Some(s) = &k.secret {
                let secret =
                    lookup(store, "secrets", Some(ns), &s.name).ok_or("bound secret is gone")?;
                if uid_of(&secret) != s.uid {
                    return Err("bound secret uid differs".into());
                }
            }
            if let Some(n) = &k.node {
                if k.pod.is_none() {
                    let node = lookup(store, "nodes", None, &n.name).ok_or("bound node is gone")?;
                    if uid_of(&node) != n.uid {
                        return Err("bound node uid differs".into());
                    }
                }
                extra.insert(
                    "authentication.kubernetes.io/node-name".into(),
                    vec![n.name.clone()],
                );
                extra.insert(
                    "authentication.kubernetes.io/node-uid".into(),
                    vec![n.uid.clone()],
                );
            }
            if let Some(j) = &c.jti {
                extra.insert(
                    "authentication.kubernetes.io/credential-id".into(),
                    vec![format!("JTI={j}")],
                );
            }
            Ok(service_account_user(
                ns,
                &k.serviceaccount.name,
                &k.serviceaccount.uid,
                extra,
            ))
        }
        Verified::Legacy(c) => {
            let ns = c.namespace.as_str();
            let secret =
                lookup(store, "secrets", Some(ns), &c.secret_name).ok_or("token secret is gone")?;
            let stored = secret["data"]["token"].as_str().unwrap_or("");
            use base64::Engine as _;
            let stored = base64::engine::general_purpose::STANDARD
                .decode(stored)
                .unwrap_or_default();
            if !constant_time_eq(&stored, token.as_bytes()) {
                return Err("token does not match its secret".into());
            }
            let sa = lookup(store, "serviceaccounts", Some(ns), &c.service_account_name)
                .ok_or("service account is gone")?;
            if uid_of(&sa) != c.service_account_uid {
                return Err("service account uid differs".into());
            }
            let extra = BTreeMap::from([(
                "authentication.kubernetes.io/credential-id".to_string(),
                vec![format!("ServiceAccountTokenSecret={}", c.secret_name)],
            )]);
            Ok(service_account_user(
                ns,
                &c.service_account_name,
                &c.service_account_uid,
                extra,
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The user a service account's token authenticates as, with upstream's groups.
pub fn service_account_user(
    namespace: &str,
    name: &str,
    uid: &str,
    extra: BTreeMap<String, Vec<String>>,
) -> User {
    let mut user = User::new(
        username(namespace, name),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
        ],
    );
    user.uid = Some(uid.to_string()).filter(|u| !u.is_empty());
    user.extra = extra;
    user
}
