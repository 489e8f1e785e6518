//! The API server as the kubelet's source of ConfigMaps, Secrets and persistent volumes, and
//! of service-account tokens for projected volumes (the TokenRequest API, bound to the pod),
//! cached and refreshed as upstream's token manager does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest as TokenRequestObject, TokenRequestSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};
use tracing::Instrument;

use super::volumes::{ObjectSource, TokenRequest, VolumeError};

/// Reads objects straight from the API server (no cache: they are read when a container
/// starts or a volume is set up, not in a loop). Tokens are the exception: they are cached
/// until due for renewal ([`TokenCache`]).
#[derive(Clone)]
pub struct ApiSource {
    client: kube::Client,
    allocatable: BTreeMap<String, Quantity>,
    tokens: Arc<TokenCache>,
}

impl ApiSource {
    /// A source over `client`, on a node with `allocatable` resources.
    pub fn new(client: kube::Client, allocatable: BTreeMap<String, Quantity>) -> Self {
        ApiSource {
            client,
            allocatable,
            tokens: Arc::new(TokenCache::default()),
        }
    }
}

/// Most tokens cached at once (a few per pod); past it, expired and then soonest-expiring
/// entries are dropped.
const MAX_CACHED_TOKENS: usize = 4096;
/// A token older than this is renewed whatever its lifetime, as upstream's `maxTTL`.
const MAX_TOKEN_AGE: Duration = Duration::from_secs(24 * 3600);

/// What a cached token was asked for: one per pod, service account, audience and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    namespace: String,
    service_account: String,
    pod_uid: String,
    audience: Option<String>,
    expiration_seconds: i64,
}

/// An issued token and its times.
#[derive(Clone)]
struct CachedToken {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

impl CachedToken {
    /// Whether the token is due for renewal: 80 % of its lifetime gone, or older than a day,
    /// as upstream's token manager decides.
    fn needs_renewal(&self, now: SystemTime) -> bool {
        let lifetime = self.expires.duration_since(self.issued).unwrap_or_default();
        let age = now.duration_since(self.issued).unwrap_or_default();
        age >= lifetime.mul_f64(0.8) || age >= MAX_TOKEN_AGE
    }
}

/// The node's service-account tokens, bounded by [`MAX_CACHED_TOKENS`].
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

impl TokenCache {
    fn get(&self, key: &TokenKey, now: SystemTime) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(key)
            .filter(|t| !t.needs_renewal(now))
            .map(|t| t.token.clone())
    }

    fn insert(&self, key: TokenKey, token: CachedToken, now: SystemTime) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_CACHED_TOKENS && !tokens.contains_key(&key) {
            tokens.retain(|_, t| t.expires > now);
            while tokens.len() >= MAX_CACHED_TOKENS {
                let Some(first) = tokens
                    .iter()
                    .min_by_key(|(_, t)| t.expires)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                tokens.remove(&first);
            }
        }
        tokens.insert(key, token);
    }
}

async fn get_opt<K>(api: Api<K>, name: &str) -> Result<Option<K>, VolumeError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| VolumeError::Source(format!("{name}: {e}")))
}

#[tonic::async_trait]
impl ObjectSource for ApiSource {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, VolumeError> {
        get_opt(Api::namespaced(self.client.clone(), namespace), name).await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, VolumeError> {
        get_opt(Api::namespaced(self.client.clone(), namespace), name).await
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, VolumeError> {
        get_opt(Api::namespaced(self.client.clone(), namespace), name).await
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, VolumeError> {
        get_opt(Api::all(self.client.clone()), name).await
    }

    async fn node_allocatable(&self) -> Result<BTreeMap<String, Quantity>, VolumeError> {
        Ok(self.allocatable.clone())
    }

    async fn service_account_token(&self, r: &TokenRequest<'_>) -> Result<String, VolumeError> {
        let key = TokenKey {
            namespace: r.namespace.to_string(),
            service_account: r.service_account.to_string(),
            pod_uid: r.pod_uid.to_string(),
            audience: r.audience.map(str::to_string),
            expiration_seconds: r.expiration_seconds,
        };
        let now = SystemTime::now();
        if let Some(token) = self.tokens.get(&key, now) {
            return Ok(token);
        }
        let request = TokenRequestObject {
            spec: TokenRequestSpec {
                audiences: r.audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(r.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(r.pod_name.to_string()),
                    uid: Some(r.pod_uid.to_string()).filter(|u| !u.is_empty()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), r.namespace);
        let issued: TokenRequestObject = api
            .create_subresource("token", r.service_account, &PostParams::default(), &request)
            .instrument(tracing::debug_span!(
                "token_request",
                namespace = r.namespace,
                serviceaccount = r.service_account,
                pod = r.pod_name
            ))
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) => VolumeError::Source(s.message),
                e => VolumeError::Source(e.to_string()),
            })?;
        let status = issued.status.ok_or_else(|| {
            VolumeError::Source("the TokenRequest came back without a token".into())
        })?;
        let expires = SystemTime::UNIX_EPOCH
            + Duration::from_secs(status.expiration_timestamp.0.as_second().max(0) as u64);
        tracing::debug!(
            namespace = r.namespace,
            serviceaccount = r.service_account,
            pod = r.pod_name,
            "service-account token issued"
        );
        self.tokens.insert(
            key,
            CachedToken {
                token: status.token.clone(),
                issued: now,
                expires,
            },
            now,
        );
        Ok(status.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> TokenKey {
        TokenKey {
            namespace: "ns".into(),
            service_account: "default".into(),
            pod_uid: n.to_string(),
            audience: None,
            expiration_seconds: 3600,
        }
    }

    #[test]
    fn tokens_renew_at_eighty_percent_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = CachedToken {
            token: "x".into(),
            issued: t0,
            expires: t0 + Duration::from_secs(3600),
        };
        assert!(!t.needs_renewal(t0 + Duration::from_secs(2879)));
        assert!(t.needs_renewal(t0 + Duration::from_secs(2880)));
        let long = CachedToken {
            expires: t0 + Duration::from_secs(365 * 86400),
            ..t.clone()
        };
        assert!(!long.needs_renewal(t0 + Duration::from_secs(86399)));
        assert!(long.needs_renewal(t0 + Duration::from_secs(86400)));
        let cache = TokenCache::default();
        cache.insert(key(1), t, t0);
        assert_eq!(cache.get(&key(1), t0).as_deref(), Some("x"));
        assert!(cache.get(&key(1), t0 + Duration::from_secs(3000)).is_none());
        assert!(cache.get(&key(2), t0).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cache = TokenCache::default();
        for n in 0..MAX_CACHED_TOKENS + 10 {
            let t = CachedToken {
                token: n.to_string(),
                issued: t0,
                expires: t0 + Duration::from_secs(600 + n as u64),
            };
            cache.insert(key(n), t, t0);
        }
        let len = cache.tokens.lock().unwrap().len();
        assert_eq!(len, MAX_CACHED_TOKENS);
        assert!(
            cache.get(&key(0), t0).is_none(),
            "the soonest-expiring went first"
        );
        assert!(cache.get(&key(MAX_CACHED_TOKENS + 9), t0).is_some());
    }
}
