//! The Deployment's status: counts from its ReplicaSets, the Available condition, and the
//! Progressing condition with its deadline (`progressDeadlineSeconds`), as upstream's
//! `syncRolloutStatus` keeps them; `kubectl rollout status` reads exactly these.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::sync::Sets;
use super::util;
use super::DeploymentController;
use crate::manager::Error;

/// Progressing reason: the Deployment was paused.
pub const PAUSED: &str = "DeploymentPaused";
/// Progressing reason: the Deployment was resumed.
pub const RESUMED: &str = "DeploymentResumed";
/// Progressing reason: a new ReplicaSet was created.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Progressing reason: the new ReplicaSet already existed.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Progressing reason: the rollout made progress.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing reason: the rollout is complete.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing reason: no progress within the deadline.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing reason (and event): the new ReplicaSet could not be created.
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";

/// Whether the Deployment has a progress deadline (upstream treats MaxInt32 as none).
pub fn has_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != i32::MAX)
}

/// The condition of type `type_`.
pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// A condition updated and transitioned now.
pub fn condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Time(Timestamp::now());
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Sets a condition: nothing changes when status and reason are the same; the transition time
/// is kept when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get_condition(status, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_.clone());
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

/// Removes the condition of type `type_`.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// Whether two statuses are the same, zero and absent counts alike.
pub fn same_status(a: Option<&DeploymentStatus>, b: &DeploymentStatus) -> bool {
    let default = DeploymentStatus::default();
    let a = a.unwrap_or(&default);
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.observed_generation == b.observed_generation
        && n(a.replicas) == n(b.replicas)
        && n(a.updated_replicas) == n(b.updated_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && n(a.unavailable_replicas) == n(b.unavailable_replicas)
        && a.collision_count == b.collision_count
        && a.conditions.as_ref().filter(|c| !c.is_empty())
            == b.conditions.as_ref().filter(|c| !c.is_empty())
}

/// The status the ReplicaSets give, with Available set from maxUnavailable.
pub fn calculate_status(d: &Deployment, sets: &Sets) -> DeploymentStatus {
    let all = sets.all();
    let available = util::available_replicas(&all);
    let total = util::actual_replicas(&all);
    let updated = sets
        .new
        .as_ref()
        .map_or(0, |rs| util::actual_replicas(&[rs]));
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(util::ready_replicas(&all)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    if available >= util::replicas(d) - util::max_unavailable(d) {
        set_condition(
            &mut status,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut status,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    status
}

/// Whether every replica is updated and available, and the spec is observed.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = util::replicas(d);
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation >= d.metadata.generation
}

/// Whether `new` shows progress over the Deployment's current status.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let default = DeploymentStatus::default();
    let old = d.status.as_ref().unwrap_or(&default);
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn deadline(d: &Deployment) -> i64 {
    i64::from(
        d.spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(0),
    )
}

/// Whether the rollout has made no progress for longer than the deadline.
fn timed_out(d: &Deployment, s: &DeploymentStatus) -> bool {
    if !has_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c.last_update_time.as_ref().is_some_and(|t| {
            t.0.as_second().saturating_add(deadline(d)) < Timestamp::now().as_second()
        }),
    }
}

impl DeploymentController {
    /// Updates the status and the Progressing condition after a rollout step, and queues the
    /// Deployment again for when its deadline would pass.
    pub(crate) async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        sets: &Sets,
    ) -> Result<(), Error> {
        let mut status = calculate_status(d, sets);
        if !has_deadline(d) {
            remove_condition(&mut status, "Progressing");
        }
        let current = get_condition(&status, "Progressing").cloned();
        let is_complete = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if has_deadline(d) && !is_complete {
            let new_name = sets
                .new
                .as_ref()
                .and_then(|rs| rs.metadata.name.clone())
                .unwrap_or_default();
            if complete(d, &status) {
                set_condition(
                    &mut status,
                    condition(
                        "Progressing",
                        "True",
                        NEW_RS_AVAILABLE,
                        format!("ReplicaSet {new_name:?} has successfully progressed."),
                    ),
                );
            } else if progressing(d, &status) {
                let msg = if sets.new.is_some() {
                    format!("ReplicaSet {new_name:?} is progressing.")
                } else {
                    "Deployment is progressing.".into()
                };
                let mut c = condition("Progressing", "True", RS_UPDATED, msg);
                // A fresh update time restarts the deadline; the transition time stays.
                if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut status, "Progressing");
                set_condition(&mut status, c);
            } else if timed_out(d, &status) {
                let msg = if sets.new.is_some() {
                    format!("ReplicaSet {new_name:?} has timed out progressing.")
                } else {
                    format!(
                        "Deployment {:?} has timed out progressing.",
                        d.metadata.name.as_deref().unwrap_or_default()
                    )
                };
                set_condition(
                    &mut status,
                    condition("Progressing", "False", TIMED_OUT, msg),
                );
            }
        }
        // ReplicaFailure mirrors the ReplicaSets' own.
        let failure = sets.all().into_iter().find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .cloned()
        });
        match failure {
            Some(f) => set_condition(
                &mut status,
                condition(
                    "ReplicaFailure",
                    &f.status,
                    f.reason.as_deref().unwrap_or_default(),
                    f.message.unwrap_or_default(),
                ),
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        if same_status(d.status.as_ref(), &status) {
            self.requeue_stuck(d, &status);
            return Ok(());
        }
        self.write_status(d, status).await
    }

    /// A rollout still in progress is looked at again when its deadline would pass.
    fn requeue_stuck(&self, d: &Deployment, status: &DeploymentStatus) {
        if !has_deadline(d) {
            return;
        }
        let Some(c) = get_condition(status, "Progressing") else {
            return;
        };
        if complete(d, status) || c.reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let Some(updated) = c.last_update_time.as_ref() else {
            return;
        };
        let due = updated.0.as_second().saturating_add(deadline(d));
        let left = due - Timestamp::now().as_second();
        let after = if left < 1 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(left as u64 + 1)
        };
        self.requeue_after(d, after);
    }
}
