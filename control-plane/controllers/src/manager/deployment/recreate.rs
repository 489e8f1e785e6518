//! The Recreate strategy: every old pod goes before any new pod is created, as upstream's
//! `rolloutRecreate`.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::{history, progress, util, DeploymentController};
use crate::manager::Error;

/// One rollout step.
pub async fn rollout(
    dc: &DeploymentController,
    d: &mut Deployment,
    rss: Vec<ReplicaSet>,
) -> Result<(), Error> {
    let mut sets = dc.get_all_and_sync_revision(d, rss.clone(), false).await?;
    // Old sets down to zero first.
    let mut scaled_down = false;
    for rs in sets.old.iter_mut().filter(|rs| util::rs_replicas(rs) > 0) {
        scaled_down |= dc.scale_rs(d, rs, 0).await?;
    }
    if scaled_down {
        return dc.sync_rollout_status(d, &sets).await;
    }
    // Then wait until none of their pods runs.
    let old_actual = util::actual_replicas(&sets.old.iter().collect::<Vec<_>>());
    let old_uids: Vec<String> = sets
        .old
        .iter()
        .filter_map(|rs| rs.metadata.uid.clone())
        .collect();
    if old_actual > 0 || dc.pods_running_for(d, &old_uids) {
        return dc.sync_rollout_status(d, &sets).await;
    }
    if sets.new.is_none() {
        sets = dc.get_all_and_sync_revision(d, rss, true).await?;
    }
    if let Some(new) = sets.new.as_mut() {
        if dc.scale_rs(d, new, util::replicas(d)).await? {
            return dc.sync_rollout_status(d, &sets).await;
        }
    }
    let status = progress::calculate_status(d, &sets);
    if progress::complete(d, &status) {
        history::cleanup(dc, d, &sets).await?;
    }
    dc.sync_rollout_status(d, &sets).await
}
