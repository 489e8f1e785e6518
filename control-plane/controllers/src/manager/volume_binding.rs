//! PersistentVolumeClaim binding, upstream's persistentvolume controller simplified: an
//! unbound claim binds to the smallest Available volume that satisfies it (access modes,
//! capacity, storage class, volume mode, selector; a volume pre-bound to the claim first),
//! writing the volume's `claimRef` and phase, then the claim's `volumeName` and status, with
//! upstream's `pv.kubernetes.io/bind-completed` and `bound-by-controller` annotations. A volume
//! whose claim is gone is Released, and deleted when its reclaim policy is Delete and no
//! provisioner owns its deletion.
//!
//! The node agent's local-path provisioner (`node-agent/src/kubelet/local_path.rs`) serves
//! claims of class `local-path` or of no class when a pod first uses them, and removes its own
//! volumes: claims of class `local-path` (and of a class whose StorageClass says
//! `WaitForFirstConsumer`) are left to it, a claim of no class binds here only to an existing
//! volume of no class, and the provisioner's volumes are never touched here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::Instrument;

use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{selector, Context, Error};
use crate::events::{Kind, Recorder};

/// Set on a claim once binding is done.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on whichever side this controller bound (the claim's volumeName, the volume's claimRef).
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set by provisioners on the volumes they made; they delete them too.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node agent's provisioner: its class, its annotation value and its node label.
pub const LOCAL_PATH_CLASS: &str = "local-path";
const LOCAL_PATH_PROVISIONER: &str = "skiff.dev/local-path";
const LOCAL_PATH_NODE_LABEL: &str = "local-path.skiff.dev/node";
/// Most keys waiting in the queue.
const QUEUE_CAPACITY: usize = 100_000;
/// Workers syncing at once.
const WORKERS: usize = 2;
/// How often every claim and volume is looked at again, as upstream's sync period.
const RESYNC: Duration = Duration::from_secs(15);

/// What the queue holds: a claim (namespaced) or a volume (cluster-scoped, empty namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Item {
    /// A PersistentVolumeClaim.
    Claim(ObjectKey),
    /// A PersistentVolume.
    Volume(String),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Claim(k) => write!(f, "claim {k}"),
            Item::Volume(n) => write!(f, "volume {n}"),
        }
    }
}

/// The controller's state: queue and event recorder.
pub struct VolumeBindingController {
    ctx: Arc<Context>,
    queue: Queue<Item>,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let c = Arc::new(VolumeBindingController {
        ctx: ctx.clone(),
        queue: Queue::new("persistentvolume-binder", QUEUE_CAPACITY),
        recorder: Recorder::start(ctx.client.clone(), "persistentvolume-controller", None),
    });
    let q = c.queue.clone();
    ctx.persistentvolumeclaims.on_change(move |change| {
        let pvc = match change {
            Change::Added(p) | Change::Deleted(p) | Change::Updated { new: p, .. } => p,
        };
        if let Some(k) = ObjectKey::of(pvc.as_ref()) {
            q.add(Item::Claim(k));
        }
        // A deleted claim releases its volume.
        if let Change::Deleted(p) = change {
            if let Some(v) = volume_name(p) {
                q.add(Item::Volume(v.to_string()));
            }
        }
    });
    let (q, claims) = (c.queue.clone(), ctx.persistentvolumeclaims.store().clone());
    ctx.persistentvolumes.on_change(move |change| {
        let pv = match change {
            Change::Added(p) | Change::Deleted(p) | Change::Updated { new: p, .. } => p,
        };
        if let Some(n) = pv.metadata.name.clone() {
            q.add(Item::Volume(n));
        }
        // A volume appearing or freed may be what a pending claim waits for.
        if !matches!(change, Change::Deleted(_))
            && pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())
        {
            for pvc in claims.list() {
                if volume_name(&pvc).is_none() {
                    if let Some(k) = ObjectKey::of(pvc.as_ref()) {
                        q.add(Item::Claim(k));
                    }
                }
            }
        }
    });
    let (claims, volumes) = (
        ctx.persistentvolumeclaims.store().clone(),
        ctx.persistentvolumes.store().clone(),
    );
    let resync = super::resync(c.queue.clone(), RESYNC, move || {
        claims
            .keys()
            .into_iter()
            .map(Item::Claim)
            .chain(volumes.keys().into_iter().map(|k| Item::Volume(k.name)))
            .collect()
    });
    let mut all = super::workers(
        "persistentvolume-binder",
        c.queue.clone(),
        WORKERS,
        move |item| {
            let c = c.clone();
            async move { c.sync(item).await }
        },
    );
    all.push(resync);
    all
}

fn volume_name(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
}

fn claim_class(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
}

fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the local-path provisioner made `pv` (it binds and removes those itself).
pub fn is_local_path(pv: &PersistentVolume) -> bool {
    let annotated = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == LOCAL_PATH_PROVISIONER);
    let labelled = pv
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LOCAL_PATH_NODE_LABEL));
    annotated || labelled
}

fn requested_storage(pvc: &PersistentVolumeClaim) -> i64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(skiff_quota::parse)
        .unwrap_or(0)
}

fn capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(skiff_quota::parse)
        .unwrap_or(0)
}

/// Whether `pv`'s claimRef names `pvc` (a pre-binding without uid counts).
pub fn bound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == pvc.metadata.name
        && r.namespace == pvc.metadata.namespace
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == pvc.metadata.uid.as_deref())
}

/// Whether `pv` can serve `pvc`: class, volume mode, access modes, capacity and selector. The
/// volume's claimRef is the caller's concern.
pub fn satisfies(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    if volume_class(pv) != claim_class(pvc).unwrap_or("") {
        return false;
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(vs.volume_mode.as_ref()) != mode(cs.volume_mode.as_ref()) {
        return false;
    }
    let offered = vs.access_modes.clone().unwrap_or_default();
    if !cs
        .access_modes
        .iter()
        .flatten()
        .all(|m| offered.contains(m))
    {
        return false;
    }
    if capacity(pv) < requested_storage(pvc) {
        return false;
    }
    match &cs.selector {
        Some(sel) => selector::matches(sel, pv.metadata.labels.as_ref()),
        None => true,
    }
}

/// The volume `pvc` should bind to: one pre-bound to it if it satisfies the claim, else the
/// smallest Available, unclaimed, satisfying volume (ties by name).
pub fn best_match<'a>(
    pvc: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
) -> Option<&'a Arc<PersistentVolume>> {
    let usable = |pv: &&Arc<PersistentVolume>| {
        pv.metadata.deletion_timestamp.is_none() && !is_local_path(pv) && satisfies(pv, pvc)
    };
    if let Some(pre) = volumes.iter().filter(usable).find(|pv| bound_to(pv, pvc)) {
        return Some(pre);
    }
    volumes
        .iter()
        .filter(usable)
        .filter(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
        .filter(|pv| {
            matches!(
                pv.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Available") | Some("Pending") | None
            )
        })
        .min_by(|a, b| (capacity(a), &a.metadata.name).cmp(&(capacity(b), &b.metadata.name)))
}

fn claim_ref(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: pvc.metadata.name.clone(),
        namespace: pvc.metadata.namespace.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn phase_of_volume(pv: &PersistentVolume) -> Option<&str> {
    pv.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn phase_of_claim(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.status.as_ref().and_then(|s| s.phase.as_deref())
}

impl VolumeBindingController {
    async fn sync(&self, item: Item) -> Result<(), Error> {
        self.ctx.persistentvolumes.wait_synced().await;
        self.ctx.persistentvolumeclaims.wait_synced().await;
        match item {
            Item::Claim(key) => {
                let span =
                    tracing::debug_span!("claim", namespace = %key.namespace, name = %key.name);
                self.sync_claim(&key).instrument(span).await
            }
            Item::Volume(name) => {
                let span = tracing::debug_span!("volume", name = %name);
                self.sync_volume(&name).instrument(span).await
            }
        }
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    async fn set_volume_phase(&self, pv: &PersistentVolume, phase: &str) -> Result<(), Error> {
        if phase_of_volume(pv) == Some(phase) {
            return Ok(());
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        tracing::debug!(volume = %name, phase, "volume phase");
        let patch = json!({"status": {"phase": phase}});
        match self
            .volumes_api()
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if super::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the claim is someone else's to bind: a class binding on first use.
    async fn waits_for_consumer(&self, pvc: &PersistentVolumeClaim) -> Result<bool, Error> {
        match claim_class(pvc) {
            Some(LOCAL_PATH_CLASS) => Ok(true),
            None | Some("") => Ok(false),
            Some(class) => {
                let api: Api<StorageClass> = Api::all(self.ctx.client.clone());
                match api.get_opt(class).await {
                    Ok(Some(sc)) => {
                        Ok(sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
                    }
                    Ok(None) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Says why an unbound claim stays pending, as upstream's events do.
    async fn report_pending(&self, pvc: &PersistentVolumeClaim) -> Result<(), Error> {
        match claim_class(pvc) {
            Some("") => self.recorder.object(
                pvc,
                Kind::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            ),
            None | Some(LOCAL_PATH_CLASS) => self.recorder.object(
                pvc,
                Kind::Normal,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            ),
            Some(class) => {
                let api: Api<StorageClass> = Api::all(self.ctx.client.clone());
                match api.get_opt(class).await {
                    Ok(Some(sc)) => self.recorder.object(
                        pvc,
                        Kind::Normal,
                        "ExternalProvisioning",
                        format!(
                            "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                            sc.provisioner
                        ),
                    ),
                    Ok(None) | Err(_) => self.recorder.object(
                        pvc,
                        Kind::Warning,
                        "ProvisioningFailed",
                        format!("storageclass.storage.k8s.io \"{class}\" not found"),
                    ),
                }
            }
        }
        Ok(())
    }

    async fn sync_claim(&self, key: &ObjectKey) -> Result<(), Error> {
        let Some(pvc) = self.ctx.persistentvolumeclaims.store().get(key) else {
            return Ok(());
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let volumes = self.ctx.persistentvolumes.store().list();
        match volume_name(&pvc) {
            None => {
                if self.waits_for_consumer(&pvc).await? {
                    // Another class's volume may exist, but binding waits for a pod.
                    if claim_class(&pvc) == Some(LOCAL_PATH_CLASS) {
                        return Ok(());
                    }
                    return self.report_pending(&pvc).await;
                }
                match best_match(&pvc, &volumes) {
                    Some(pv) => self.bind(&pvc, pv).await,
                    None => self.report_pending(&pvc).await,
                }
            }
            Some(name) => {
                let Some(pv) = volumes
                    .iter()
                    .find(|v| v.metadata.name.as_deref() == Some(name))
                else {
                    if phase_of_claim(&pvc) == Some("Bound") {
                        // Make sure it is gone, not just not cached yet.
                        if self.volumes_api().get_opt(name).await?.is_none() {
                            self.recorder.object(
                                pvc.as_ref(),
                                Kind::Warning,
                                "ClaimLost",
                                "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
                            );
                            self.set_claim_status(&pvc, json!({"phase": "Lost"}))
                                .await?;
                        }
                    }
                    return Ok(());
                };
                if is_local_path(pv) {
                    return Ok(());
                }
                if pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()) || bound_to(pv, &pvc) {
                    // Pre-bound by the user, or a binding cut short: finish it.
                    return self.bind(&pvc, pv).await;
                }
                self.recorder.object(
                    pvc.as_ref(),
                    Kind::Warning,
                    "FailedBinding",
                    format!("volume \"{name}\" already bound to a different claim."),
                );
                Ok(())
            }
        }
    }

    /// Binds `pvc` and `pv` both ways, each step skipped when already done, so a sync cut short
    /// is finished by the next.
    async fn bind(&self, pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<(), Error> {
        let claim_name = pvc.metadata.name.clone().unwrap_or_default();
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        tracing::debug!(volume = %pv_name, "binding");
        // 1. The volume's claimRef, with the claim's uid.
        let ref_done = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| bound_to(pv, pvc) && r.uid.as_deref().is_some_and(|u| !u.is_empty()));
        let pv = if ref_done {
            pv.clone()
        } else {
            let mut next = pv.clone();
            let controller_set = next.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
            if let Some(spec) = next.spec.as_mut() {
                spec.claim_ref = Some(claim_ref(pvc));
            }
            if controller_set {
                next.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            // Optimistic: a volume someone else just took makes this a 409, and a retry.
            self.volumes_api()
                .replace(&pv_name, &PostParams::default(), &next)
                .await?
        };
        // 2. The volume's phase.
        self.set_volume_phase(&pv, "Bound").await?;
        // 3. The claim's volumeName and annotations.
        let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
        let pvc = if volume_name(pvc) != Some(pv_name.as_str())
            || !annotations.contains_key(BIND_COMPLETED)
        {
            let mut next = pvc.clone();
            let by_controller = volume_name(pvc).is_none();
            if let Some(spec) = next.spec.as_mut() {
                spec.volume_name = Some(pv_name.clone());
            }
            let a = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
            a.insert(BIND_COMPLETED.into(), "yes".into());
            if by_controller {
                a.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            self.claims_api(&ns)
                .replace(&claim_name, &PostParams::default(), &next)
                .await?
        } else {
            pvc.clone()
        };
        // 4. The claim's status.
        let vs = pv.spec.clone().unwrap_or_default();
        let status = pvc.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound")
            || status.access_modes != vs.access_modes
            || status.capacity != vs.capacity
        {
            self.set_claim_status(
                &pvc,
                json!({"phase": "Bound", "accessModes": vs.access_modes, "capacity": vs.capacity}),
            )
            .await?;
            tracing::info!(claim = %format!("{ns}/{claim_name}"), volume = %pv_name, "bound");
        }
        Ok(())
    }

    async fn set_claim_status(
        &self,
        pvc: &PersistentVolumeClaim,
        status: serde_json::Value,
    ) -> Result<(), Error> {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let patch = json!({ "status": status });
        match self
            .claims_api(&ns)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if super::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn sync_volume(&self, name: &str) -> Result<(), Error> {
        let Some(pv) = self.ctx.persistentvolumes.store().get_named("", name) else {
            return Ok(());
        };
        if is_local_path(&pv) || pv.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            return self.set_volume_phase(&pv, "Available").await;
        };
        let uid = r.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            // Pre-bound by the user; the claim's sync binds it when the claim exists.
            if let (Some(ns), Some(n)) = (r.namespace.as_deref(), r.name.as_deref()) {
                self.queue.add(Item::Claim(ObjectKey::new(ns, n)));
            }
            return self.set_volume_phase(&pv, "Available").await;
        }
        let (ns, claim) = (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let cached = self
            .ctx
            .persistentvolumeclaims
            .store()
            .get_named(&ns, &claim);
        // The cache may not have a claim created a moment ago: ask before releasing.
        let current = match cached {
            Some(c) => Some(c),
            None => self.claims_api(&ns).get_opt(&claim).await?.map(Arc::new),
        };
        match current {
            Some(c) if c.metadata.uid.as_deref() == Some(uid.as_str()) => {
                if volume_name(&c) == Some(name) {
                    self.set_volume_phase(&pv, "Bound").await
                } else {
                    // Binding in progress: the claim's sync finishes it.
                    self.queue.add(Item::Claim(ObjectKey::new(&ns, &claim)));
                    Ok(())
                }
            }
            _ => self.reclaim(&pv).await,
        }
    }

    /// The claim of a bound volume is gone: Released, then the reclaim policy.
    async fn reclaim(&self, pv: &PersistentVolume) -> Result<(), Error> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        if phase_of_volume(pv) != Some("Failed") {
            self.set_volume_phase(pv, "Released").await?;
        }
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        let provisioned = pv
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(PROVISIONED_BY));
        match policy {
            "Delete" if !provisioned => {
                tracing::info!(volume = %name, "claim gone; deleting the volume (reclaim policy Delete)");
                match self
                    .volumes_api()
                    .delete(&name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if super::not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            "Recycle" => {
                self.recorder.object(
                    pv,
                    Kind::Warning,
                    "VolumeFailedRecycle",
                    "recycling is not supported; the volume stays Released".into(),
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(v: serde_json::Value) -> Arc<PersistentVolume> {
        Arc::new(serde_json::from_value(v).unwrap_or_default())
    }

    fn pvc(v: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap_or_default()
    }

    fn volume(name: &str, size: &str, class: &str, modes: &[&str]) -> Arc<PersistentVolume> {
        pv(
            json!({"metadata": {"name": name, "labels": {"tier": "gold"}}, "spec": {
            "capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
            "hostPath": {"path": "/tmp/x"}}, "status": {"phase": "Available"}}),
        )
    }

    fn claim(size: &str, class: &str, modes: &[&str]) -> PersistentVolumeClaim {
        pvc(
            json!({"metadata": {"name": "data", "namespace": "ns", "uid": "claim-uid"}, "spec": {
            "accessModes": modes, "storageClassName": class, "resources": {"requests": {"storage": size}}}}),
        )
    }

    #[test]
    fn smallest_satisfying_volume_wins() {
        let vols = vec![
            volume("big", "10Gi", "manual", &["ReadWriteOnce"]),
            volume("small", "1Gi", "manual", &["ReadWriteOnce", "ReadOnlyMany"]),
            volume("tiny", "100Mi", "manual", &["ReadWriteOnce"]),
            volume("other-class", "1Gi", "fast", &["ReadWriteOnce"]),
        ];
        let c = claim("500Mi", "manual", &["ReadWriteOnce"]);
        assert_eq!(
            best_match(&c, &vols).and_then(|v| v.metadata.name.as_deref()),
            Some("small")
        );
        let c = claim("500Mi", "manual", &["ReadWriteMany"]);
        assert!(
            best_match(&c, &vols).is_none(),
            "no volume offers ReadWriteMany"
        );
        let c = claim("20Gi", "manual", &["ReadWriteOnce"]);
        assert!(best_match(&c, &vols).is_none(), "none is large enough");
    }

    #[test]
    fn selector_mode_and_claims_are_respected() {
        let mut taken = (*volume("taken", "1Gi", "", &["ReadWriteOnce"])).clone();
        if let Some(s) = taken.spec.as_mut() {
            s.claim_ref = Some(ObjectReference {
                name: Some("else".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            });
        }
        let block = pv(
            json!({"metadata": {"name": "block"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "volumeMode": "Block"}}),
        );
        let free = volume("free", "2Gi", "", &["ReadWriteOnce"]);
        let vols = vec![Arc::new(taken), block, free];
        let mut c = claim("1Gi", "", &["ReadWriteOnce"]);
        assert_eq!(
            best_match(&c, &vols).and_then(|v| v.metadata.name.as_deref()),
            Some("free")
        );
        if let Some(s) = c.spec.as_mut() {
            s.storage_class_name = None;
            s.selector = serde_json::from_value(json!({"matchLabels": {"tier": "silver"}})).ok();
        }
        assert!(
            best_match(&c, &vols).is_none(),
            "the selector matches no volume"
        );
    }

    #[test]
    fn pre_bound_volumes_come_first_and_local_path_ones_are_never_matched() {
        let mut pre = (*volume("pre", "5Gi", "manual", &["ReadWriteOnce"])).clone();
        if let Some(s) = pre.spec.as_mut() {
            s.claim_ref = Some(ObjectReference {
                name: Some("data".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            });
        }
        let mut lp = (*volume("lp", "1Gi", "manual", &["ReadWriteOnce"])).clone();
        lp.metadata.annotations = Some(
            [(
                PROVISIONED_BY.to_string(),
                LOCAL_PATH_PROVISIONER.to_string(),
            )]
            .into(),
        );
        let vols = vec![
            volume("small", "1Gi", "manual", &["ReadWriteOnce"]),
            Arc::new(pre),
            Arc::new(lp),
        ];
        let c = claim("1Gi", "manual", &["ReadWriteOnce"]);
        assert_eq!(
            best_match(&c, &vols).and_then(|v| v.metadata.name.as_deref()),
            Some("pre")
        );
        assert!(is_local_path(&vols[2]));
    }
}
