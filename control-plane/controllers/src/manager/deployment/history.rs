//! Revision history: old ReplicaSets beyond `revisionHistoryLimit` are deleted, oldest
//! revision first, once they are scaled to zero and settled (what `kubectl rollout history`
//! lists is what is left).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Preconditions};

use super::sync::Sets;
use super::{util, DeploymentController};
use crate::manager::{not_found, Error};

/// Deletes the oldest surplus old ReplicaSets.
pub async fn cleanup(dc: &DeploymentController, d: &Deployment, sets: &Sets) -> Result<(), Error> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return Ok(());
    };
    let mut cleanable: Vec<_> = sets
        .old
        .iter()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let surplus = cleanable.len() as i64 - i64::from(limit.max(0));
    if surplus <= 0 {
        return Ok(());
    }
    cleanable.sort_by(|a, b| {
        util::revision(a)
            .cmp(&util::revision(b))
            .then_with(|| util::by_creation(a, b))
    });
    let api = dc.rs_api(d);
    for rs in cleanable.into_iter().take(surplus as usize) {
        let settled = rs.status.as_ref().is_none_or(|s| s.replicas == 0)
            && util::rs_replicas(rs) == 0
            && rs.metadata.generation <= rs.status.as_ref().and_then(|s| s.observed_generation)
            && rs.metadata.deletion_timestamp.is_none();
        if !settled {
            continue;
        }
        let name = rs.metadata.name.clone().unwrap_or_default();
        tracing::debug!(replicaset = %name, "deleting old replica set beyond the history limit");
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: rs.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(&name, &params).await {
            if !not_found(&e) {
                return Err(e.into());
            }
        }
    }
    Ok(())
}
