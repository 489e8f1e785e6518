//! The RollingUpdate strategy: scale the new ReplicaSet up within maxSurge, and the old ones
//! down within maxUnavailable, one step per sync, as upstream's `rolloutRolling`.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::sync::{new_rs_new_replicas, Sets};
use super::{history, progress, util, DeploymentController};
use crate::manager::Error;

/// One rollout step.
pub async fn rollout(
    dc: &DeploymentController,
    d: &mut Deployment,
    rss: Vec<ReplicaSet>,
) -> Result<(), Error> {
    let mut sets = dc.get_all_and_sync_revision(d, rss, true).await?;
    if reconcile_new(dc, d, &mut sets).await? {
        return dc.sync_rollout_status(d, &sets).await;
    }
    if reconcile_old(dc, d, &mut sets).await? {
        return dc.sync_rollout_status(d, &sets).await;
    }
    let status = progress::calculate_status(d, &sets);
    if progress::complete(d, &status) {
        history::cleanup(dc, d, &sets).await?;
    }
    dc.sync_rollout_status(d, &sets).await
}

/// Scales the new ReplicaSet towards the Deployment's replicas; whether it scaled.
async fn reconcile_new(
    dc: &DeploymentController,
    d: &Deployment,
    sets: &mut Sets,
) -> Result<bool, Error> {
    let Some(new) = sets.new.as_ref() else {
        return Ok(false);
    };
    let want = util::replicas(d);
    let have = util::rs_replicas(new);
    let to = if have == want {
        return Ok(false);
    } else if have > want {
        want
    } else {
        new_rs_new_replicas(d, &sets.all(), new)?
    };
    let Some(new) = sets.new.as_mut() else {
        return Ok(false);
    };
    dc.scale_rs(d, new, to).await
}

/// Scales old ReplicaSets down as far as maxUnavailable allows: unhealthy replicas first, then
/// by age. Whether anything scaled.
async fn reconcile_old(
    dc: &DeploymentController,
    d: &Deployment,
    sets: &mut Sets,
) -> Result<bool, Error> {
    let old_count = util::spec_replicas(&sets.old.iter().collect::<Vec<_>>());
    if old_count == 0 {
        return Ok(false);
    }
    let all_count = util::spec_replicas(&sets.all());
    let min_available = util::replicas(d) - util::max_unavailable(d);
    let new_unavailable = sets
        .new
        .as_ref()
        .map_or(0, |rs| util::rs_replicas(rs) - util::rs_available(rs));
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(false);
    }
    let cleaned = cleanup_unhealthy(dc, d, sets, max_scaled_down).await?;
    let scaled = scale_down_old(dc, d, sets).await?;
    Ok(cleaned + scaled > 0)
}

fn old_order(sets: &Sets) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sets.old.len()).collect();
    idx.sort_by(|a, b| util::by_creation(&sets.old[*a], &sets.old[*b]));
    idx
}

/// Removes old replicas that are not available (they add nothing to availability), oldest
/// sets first, at most `max` of them; how many went.
async fn cleanup_unhealthy(
    dc: &DeploymentController,
    d: &Deployment,
    sets: &mut Sets,
    max: i32,
) -> Result<i32, Error> {
    let mut total = 0;
    for i in old_order(sets) {
        if total >= max {
            break;
        }
        let rs = &mut sets.old[i];
        let size = util::rs_replicas(rs);
        let available = util::rs_available(rs);
        if size == 0 || size == available {
            continue;
        }
        let down = (max - total).min(size - available);
        let to = size - down;
        if to > size {
            return Err(Error::Invalid(format!("when cleaning up unhealthy replicas, got invalid request to scale down {:?} {size} -> {to}", rs.metadata.name)));
        }
        dc.scale_rs(d, rs, to).await?;
        total += down;
    }
    Ok(total)
}

/// Scales old ReplicaSets down while availability stays at or above the minimum; how many
/// replicas went.
async fn scale_down_old(
    dc: &DeploymentController,
    d: &Deployment,
    sets: &mut Sets,
) -> Result<i32, Error> {
    let min_available = util::replicas(d) - util::max_unavailable(d);
    let available = util::available_replicas(&sets.all());
    if available <= min_available {
        return Ok(0);
    }
    let budget = available - min_available;
    let mut total = 0;
    for i in old_order(sets) {
        if total >= budget {
            break;
        }
        let rs = &mut sets.old[i];
        let size = util::rs_replicas(rs);
        if size == 0 {
            continue;
        }
        let down = size.min(budget - total);
        dc.scale_rs(d, rs, size - down).await?;
        total += down;
    }
    Ok(total)
}
