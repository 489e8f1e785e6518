//! The built-in local-path provisioner: a claim of class `local-path` (or of no class) that a
//! pod on this node uses is given a volume here, a directory under
//! `<root>/local-path/<volume>`, when the pod starts (upstream's WaitForFirstConsumer). The
//! data outlives pods, as a Docker named volume does; it goes when the claim is deleted
//! (reclaim policy Delete).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Shared;

/// The storage class this provisioner serves.
pub const CLASS: &str = "local-path";
/// The label naming the node that holds a provisioned volume.
pub const NODE_LABEL: &str = "local-path.skiff.dev/node";
/// How often volumes of deleted claims are looked for.
const SWEEP: Duration = Duration::from_secs(10);

fn ours(pvc: &PersistentVolumeClaim) -> bool {
    let class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    matches!(class, None | Some(CLASS))
}

fn volume_dir(shared: &Shared, pv: &str) -> PathBuf {
    shared.config.root_dir.join("local-path").join(pv)
}

/// Binds every unbound claim of ours that `pod` uses to a new volume on this node. Errors are
/// logged; the pod's volume set-up then reports the claim as not bound and is retried.
pub async fn provision_for(shared: &Shared, pod: &Pod) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let claims = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        });
    for claim in claims {
        if let Err(e) = provision(shared, namespace, &claim).await {
            tracing::warn!(claim = %format!("{namespace}/{claim}"), "local-path: {e}");
        }
    }
}

async fn provision(shared: &Shared, namespace: &str, claim: &str) -> Result<(), kube::Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), namespace);
    let Some(pvc) = claims.get_opt(claim).await? else {
        return Ok(());
    };
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    let bound_to = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    if phase == Some("Bound") || !ours(&pvc) {
        return Ok(());
    }
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let name = bound_to.unwrap_or_else(|| format!("pvc-{uid}"));
    let dir = volume_dir(shared, &name);
    std::fs::create_dir_all(&dir).map_err(|e| kube::Error::Service(Box::new(e)))?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let capacity: BTreeMap<String, _> = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "storage")
        .collect();
    let access_modes = spec
        .access_modes
        .clone()
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let node = &shared.config.node_name;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": { NODE_LABEL: node },
            "annotations": { "pv.kubernetes.io/provisioned-by": "skiff.dev/local-path" },
        },
        "spec": {
            "capacity": capacity,
            "accessModes": access_modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "hostPath": { "path": dir, "type": "DirectoryOrCreate" },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": claim,
                "uid": uid,
            },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In", "values": [node],
            }]}]}},
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    let volumes: Api<PersistentVolume> = Api::all(shared.client.clone());
    match volumes.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    let bound = json!({ "status": { "phase": "Bound" } });
    volumes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&bound))
        .await?;
    claims
        .patch(
            claim,
            &PatchParams::default(),
            &Patch::Merge(&json!({
                "metadata": { "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "volume.kubernetes.io/selected-node": node,
                }},
                "spec": { "volumeName": name, "storageClassName": CLASS },
            })),
        )
        .await?;
    claims
        .patch_status(
            claim,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": {
                "phase": "Bound",
                "accessModes": access_modes,
                "capacity": capacity,
            }})),
        )
        .await?;
    tracing::info!(claim = %format!("{namespace}/{claim}"), volume = %name, "local-path volume provisioned");
    Ok(())
}

/// Deletes this node's volumes whose claims are gone, data included.
pub async fn sweep(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(SWEEP);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = sweep_once(&shared).await {
            tracing::debug!("local-path sweep: {e}");
        }
    }
}

async fn sweep_once(shared: &Shared) -> Result<(), kube::Error> {
    let volumes: Api<PersistentVolume> = Api::all(shared.client.clone());
    let selector = format!("{NODE_LABEL}={}", shared.config.node_name);
    for pv in volumes
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let Some(claim) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            continue;
        };
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(
            shared.client.clone(),
            claim.namespace.as_deref().unwrap_or("default"),
        );
        let current = claims.get_opt(claim.name.as_deref().unwrap_or("")).await?;
        let gone = match current {
            None => true,
            Some(c) => c.metadata.uid != claim.uid,
        };
        if !gone {
            continue;
        }
        let dir = volume_dir(shared, &name);
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await;
        if !matches!(removed, Ok(Ok(()))) {
            tracing::warn!(volume = %name, "local-path: could not remove the volume's data");
            continue;
        }
        match volumes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = %name, "local-path volume of a deleted claim removed"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
