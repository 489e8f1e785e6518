//! persistentVolumeClaim (and generic ephemeral) volumes: the claim must be Bound, and its
//! PersistentVolume's `hostPath` or `local.path` is what the containers mount. The volume's data
//! belongs to the PersistentVolume, so nothing here ever deletes it.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use super::error::SetUpError;
use super::{host_path, ObjectSource};

/// Which claim a volume uses.
pub(crate) struct ClaimRef<'a> {
    /// The claim's name in the pod's namespace.
    pub name: &'a str,
    /// A generic ephemeral volume's claim, which must be owned by the pod.
    pub ephemeral: bool,
}

/// The host path the claim's volume provides.
pub(crate) async fn resolve(
    pod: &Pod,
    namespace: &str,
    claim: ClaimRef<'_>,
    source: &dyn ObjectSource,
) -> Result<PathBuf, SetUpError> {
    let pvc = source
        .persistent_volume_claim(namespace, claim.name)
        .await
        .map_err(SetUpError::from_source)?
        .ok_or_else(|| SetUpError::ClaimNotFound(claim.name.to_string()))?;
    if claim.ephemeral && !owned_by(&pvc, pod) {
        return Err(SetUpError::NotOwner {
            namespace: namespace.to_string(),
            claim: claim.name.to_string(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
        });
    }
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|n| !n.is_empty());
    let Some(volume_name) = volume_name.filter(|_| bound) else {
        return Err(SetUpError::ClaimNotBound(claim.name.to_string()));
    };
    let pv = source
        .persistent_volume(volume_name)
        .await
        .map_err(SetUpError::from_source)?
        .ok_or_else(|| SetUpError::VolumeNotFound(volume_name.to_string()))?;
    let spec = pv.spec.unwrap_or_default();
    if let Some(r) = &spec.claim_ref {
        let uid_differs = matches!((&r.uid, &pvc.metadata.uid), (Some(a), Some(b)) if a != b);
        if r.name.as_deref() != Some(claim.name)
            || r.namespace.as_deref().is_some_and(|n| n != namespace)
            || uid_differs
        {
            return Err(SetUpError::ClaimRefMismatch {
                volume: volume_name.to_string(),
                claim: format!("{namespace}/{}", claim.name),
            });
        }
    }
    if let Some(hp) = &spec.host_path {
        host_path::check(&hp.path, hp.type_.as_deref())
    } else if let Some(local) = &spec.local {
        // A local volume is provisioned by an administrator: it must already exist.
        host_path::check(&local.path, Some("Directory"))
    } else {
        Err(SetUpError::UnsupportedPersistentVolume(
            volume_name.to_string(),
        ))
    }
}

/// Whether the pod is the claim's controlling owner (upstream's `VolumeIsForPod`).
fn owned_by(pvc: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let Some(uid) = pod.metadata.uid.as_deref() else {
        return false;
    };
    pvc.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}
