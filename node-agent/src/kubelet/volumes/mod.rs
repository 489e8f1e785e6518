//! Placeholder of the volume API (prepare, mounts, teardown, object source).

use std::path::Path;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};

use crate::runtime::spec::BindMount;

/// Why a volume could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VolumeError(pub String);

/// Where volume contents come from.
#[tonic::async_trait]
pub trait ObjectSource: Send + Sync {
    /// A ConfigMap.
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, VolumeError>;
    /// A Secret.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, VolumeError>;
    /// A claim.
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, VolumeError>;
    /// A volume.
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, VolumeError>;
}

/// A pod's volumes.
#[derive(Debug)]
pub struct PodVolumes {}

impl PodVolumes {
    /// Sets up every volume of the pod.
    pub async fn prepare(
        _pod: &Pod,
        _pod_dir: &Path,
        _source: &dyn ObjectSource,
    ) -> Result<PodVolumes, VolumeError> {
        Ok(PodVolumes {})
    }

    /// The bind mounts for one container.
    pub fn mounts(&self, _container: &Container) -> Result<Vec<BindMount>, VolumeError> {
        Ok(Vec::new())
    }
}

/// Removes what prepare made.
pub fn teardown(_pod_dir: &Path) -> Result<(), VolumeError> {
    Ok(())
}

impl VolumeError {
    /// The API server could not be asked.
    pub fn from_api(message: String) -> Self {
        VolumeError(message)
    }
}
