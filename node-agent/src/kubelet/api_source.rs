//! The API server as the kubelet's source of ConfigMaps, Secrets and persistent volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::Api;

use super::volumes::{ObjectSource, VolumeError};

/// Reads objects straight from the API server (no cache: they are read when a container
/// starts or a volume is set up, not in a loop).
#[derive(Clone)]
pub struct ApiSource {
    client: kube::Client,
    allocatable: BTreeMap<String, Quantity>,
}

impl ApiSource {
    /// A source over `client`, on a node with `allocatable` resources.
    pub fn new(client: kube::Client, allocatable: BTreeMap<String, Quantity>) -> Self {
        ApiSource {
            client,
            allocatable,
        }
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
}
