//! An [`ObjectSource`] over objects handed in up front instead of fetched: for pods that run
//! without an API server (static pods) and for tests that drive volumes directly.

use std::collections::BTreeMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::Metadata;

use super::{ObjectSource, TokenRequest, VolumeError};

/// Objects by `namespace/name` (PersistentVolumes by name), replaceable at any time; the next
/// `prepare` sees the change.
#[derive(Debug, Default)]
pub struct StaticObjects {
    objects: RwLock<Objects>,
}

#[derive(Debug, Default)]
struct Objects {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    claims: BTreeMap<String, PersistentVolumeClaim>,
    volumes: BTreeMap<String, PersistentVolume>,
    allocatable: BTreeMap<String, Quantity>,
    tokens: BTreeMap<String, String>,
}

fn key<T: Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>(
    o: &T,
) -> String {
    let m = o.metadata();
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default()
    )
}

impl StaticObjects {
    /// Adds or replaces a ConfigMap (by its metadata's namespace and name).
    pub fn insert_config_map(&self, cm: ConfigMap) {
        self.with(|o| {
            o.config_maps.insert(key(&cm), cm);
        });
    }

    /// Adds or replaces a Secret.
    pub fn insert_secret(&self, secret: Secret) {
        self.with(|o| {
            o.secrets.insert(key(&secret), secret);
        });
    }

    /// Adds or replaces a PersistentVolumeClaim.
    pub fn insert_claim(&self, claim: PersistentVolumeClaim) {
        self.with(|o| {
            o.claims.insert(key(&claim), claim);
        });
    }

    /// Adds or replaces a PersistentVolume (cluster-scoped: by name).
    pub fn insert_volume(&self, pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.with(|o| {
            o.volumes.insert(name, pv);
        });
    }

    /// Sets the token every pod of service account `namespace/name` gets (tests; static pods
    /// have no service-account tokens upstream).
    pub fn insert_token(&self, namespace: &str, name: &str, token: &str) {
        self.with(|o| {
            o.tokens
                .insert(format!("{namespace}/{name}"), token.to_string());
        });
    }

    /// Sets the node's allocatable resources.
    pub fn set_allocatable(&self, allocatable: BTreeMap<String, Quantity>) {
        self.with(|o| o.allocatable = allocatable);
    }

    fn with(&self, f: impl FnOnce(&mut Objects)) {
        // A panic elsewhere while holding the lock leaves plain data behind; keep using it.
        let mut guard = self.objects.write().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    fn read<T>(&self, f: impl FnOnce(&Objects) -> T) -> T {
        let guard = self.objects.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }
}

#[tonic::async_trait]
impl ObjectSource for StaticObjects {
    async fn service_account_token(&self, r: &TokenRequest<'_>) -> Result<String, VolumeError> {
        self.read(|o| {
            o.tokens
                .get(&format!("{}/{}", r.namespace, r.service_account))
                .cloned()
        })
        .ok_or_else(|| {
            VolumeError::Source(format!(
                "serviceaccounts \"{}\" not found",
                r.service_account
            ))
        })
    }

    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, VolumeError> {
        Ok(self.read(|o| o.config_maps.get(&format!("{ns}/{name}")).cloned()))
    }

    async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, VolumeError> {
        Ok(self.read(|o| o.secrets.get(&format!("{ns}/{name}")).cloned()))
    }

    async fn persistent_volume_claim(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, VolumeError> {
        Ok(self.read(|o| o.claims.get(&format!("{ns}/{name}")).cloned()))
    }

    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, VolumeError> {
        Ok(self.read(|o| o.volumes.get(name).cloned()))
    }

    async fn node_allocatable(&self) -> Result<BTreeMap<String, Quantity>, VolumeError> {
        Ok(self.read(|o| o.allocatable.clone()))
    }
}
