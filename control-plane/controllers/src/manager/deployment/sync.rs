//! Finding (or creating) the new ReplicaSet and keeping revisions in step, scaling ReplicaSets
//! with their annotations and events, and writing the Deployment's status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::progress;
use super::util::{self, HASH_LABEL, REVISION};
use super::DeploymentController;
use crate::events::Kind;
use crate::manager::claim::{controller_of, Owner};
use crate::manager::Error;

/// A Deployment's ReplicaSets: the one running its current template, and the rest.
#[derive(Clone, Debug, Default)]
pub struct Sets {
    /// The ReplicaSet whose template is the Deployment's, if it exists yet.
    pub new: Option<ReplicaSet>,
    /// Every other ReplicaSet the Deployment controls.
    pub old: Vec<ReplicaSet>,
}

impl Sets {
    /// Splits claimed ReplicaSets into new and old.
    pub fn split(d: &Deployment, mut rss: Vec<ReplicaSet>) -> Sets {
        let new = util::find_new(d, &rss).map(|i| rss.remove(i));
        Sets { new, old: rss }
    }

    /// Old ones, then the new one.
    pub fn all(&self) -> Vec<&ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }

    /// Old ones with pods wanted.
    pub fn active_old(&self) -> Vec<&ReplicaSet> {
        self.old
            .iter()
            .filter(|rs| util::rs_replicas(rs) > 0)
            .collect()
    }
}

/// How many replicas the new ReplicaSet should have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: &ReplicaSet,
) -> Result<i32, Error> {
    let want = util::replicas(d);
    if util::is_recreate(d) {
        return Ok(want);
    }
    let (surge, _) = util::fenceposts(d, want)?;
    let current = util::spec_replicas(all);
    let max_total = want + surge;
    let new_now = util::rs_replicas(new);
    if current >= max_total {
        return Ok(new_now);
    }
    let up = (max_total - current).min(want - new_now);
    Ok(new_now + up)
}

fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

impl DeploymentController {
    /// Splits the ReplicaSets, brings the new one's annotations and the Deployment's revision
    /// up to date, and creates the new ReplicaSet when `create` and it does not exist yet.
    pub(crate) async fn get_all_and_sync_revision(
        &self,
        d: &mut Deployment,
        rss: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Sets, Error> {
        let mut sets = Sets::split(d, rss);
        let max_old = sets.old.iter().map(util::revision).max().unwrap_or(0);
        let new_revision = max_old + 1;
        sets.new = self.get_new(d, &sets, new_revision, create).await?;
        Ok(sets)
    }

    async fn get_new(
        &self,
        d: &mut Deployment,
        sets: &Sets,
        new_revision: i64,
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let d_min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(existing) = sets.new.as_ref() {
            let mut rs = existing.clone();
            let annotations = util::set_new_rs_annotations(d, &mut rs, new_revision, true);
            let spec = rs.spec.get_or_insert_with(Default::default);
            if annotations || spec.min_ready_seconds.unwrap_or(0) != d_min_ready.unwrap_or(0) {
                spec.min_ready_seconds = d_min_ready;
                let name = rs.metadata.name.clone().unwrap_or_default();
                let updated = self
                    .rs_api(d)
                    .replace(&name, &PostParams::default(), &rs)
                    .await?;
                return Ok(Some(updated));
            }
            let rev = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            self.sync_revision(d, &rev).await?;
            let mut status = d.status.clone().unwrap_or_default();
            if progress::has_deadline(d)
                && progress::get_condition(&status, "Progressing").is_none()
            {
                let msg = format!(
                    "Found new replica set {:?}",
                    rs.metadata.name.as_deref().unwrap_or_default()
                );
                progress::set_condition(
                    &mut status,
                    progress::condition("Progressing", "True", progress::FOUND_NEW_RS, msg),
                );
                self.write_status(d, status).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let Some(spec) = d.spec.clone() else {
            return Ok(None);
        };
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let d_name = d.metadata.name.clone().unwrap_or_default();
        let name = format!("{d_name}-{hash}");
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![Owner::of(&*d).controller_ref()]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: d_min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = sets.all().into_iter().chain([&rs]).collect();
        let count = new_rs_new_replicas(d, &all, &rs)?;
        util::set_rs_replicas(&mut rs, count);
        util::set_new_rs_annotations(d, &mut rs, new_revision, false);
        let api = self.rs_api(d);
        let (created, already) = match api.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(e) if is_already_exists(&e) => {
                let existing = api.get(&name).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(r.uid.as_str()) == d.metadata.uid.as_deref());
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if ours && same {
                    (existing, true)
                } else {
                    // A different template hashed to this name: hash again with a new count.
                    let mut status = d.status.clone().unwrap_or_default();
                    status.collision_count =
                        Some(status.collision_count.unwrap_or(0).saturating_add(1));
                    self.write_status(d, status).await?;
                    return Err(Error::Retry(format!(
                        "hash collision on replica set {name}"
                    )));
                }
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                if progress::has_deadline(d) {
                    let mut status = d.status.clone().unwrap_or_default();
                    progress::set_condition(
                        &mut status,
                        progress::condition(
                            "Progressing",
                            "False",
                            progress::FAILED_RS_CREATE,
                            msg.clone(),
                        ),
                    );
                    self.write_status(d, status).await?;
                }
                self.recorder()
                    .object(&*d, Kind::Warning, progress::FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        if !already && count > 0 {
            self.recorder().object(
                &*d,
                Kind::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {count}"),
            );
        }
        self.sync_revision(d, &new_revision.to_string()).await?;
        if !already && progress::has_deadline(d) {
            let mut status = d.status.clone().unwrap_or_default();
            progress::set_condition(
                &mut status,
                progress::condition(
                    "Progressing",
                    "True",
                    progress::NEW_RS_CREATED,
                    format!("Created new replica set {name:?}"),
                ),
            );
            self.write_status(d, status).await?;
        }
        Ok(Some(created))
    }

    /// Sets the Deployment's revision annotation to the new ReplicaSet's.
    async fn sync_revision(&self, d: &mut Deployment, revision: &str) -> Result<(), Error> {
        let current = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        if current.map(String::as_str) == Some(revision) || revision.is_empty() {
            return Ok(());
        }
        let name = d.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        let updated = self
            .d_api(d)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        d.metadata.annotations = updated.metadata.annotations;
        d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Writes `status` (zero counts omitted, as upstream serialises them).
    pub(crate) async fn write_status(
        &self,
        d: &mut Deployment,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        let nz = |v: Option<i32>| v.filter(|n| *n != 0);
        let patch = json!({"status": {
            "observedGeneration": status.observed_generation,
            "replicas": nz(status.replicas),
            "updatedReplicas": nz(status.updated_replicas),
            "readyReplicas": nz(status.ready_replicas),
            "availableReplicas": nz(status.available_replicas),
            "unavailableReplicas": nz(status.unavailable_replicas),
            "conditions": status.conditions,
            "collisionCount": status.collision_count,
        }});
        let name = d.metadata.name.clone().unwrap_or_default();
        match self
            .d_api(d)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                d.status = Some(status);
                Ok(())
            }
            Err(e) if crate::manager::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `status` unless the Deployment already has it.
    pub(crate) async fn write_status_if_changed(
        &self,
        d: &mut Deployment,
        status: DeploymentStatus,
    ) -> Result<(), Error> {
        if progress::same_status(d.status.as_ref(), &status) {
            return Ok(());
        }
        self.write_status(d, status).await
    }

    /// Scales `rs` to `to` (recording a ScalingReplicaSet event); whether its size changed.
    pub(crate) async fn scale_rs(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        to: i32,
    ) -> Result<bool, Error> {
        let from = util::rs_replicas(rs);
        if from == to {
            return Ok(false);
        }
        self.scale_rs_annotated(d, rs, to).await
    }

    /// Sets `rs`'s size and replicas annotations; whether its size changed.
    async fn scale_rs_annotated(
        &self,
        d: &Deployment,
        rs: &mut ReplicaSet,
        to: i32,
    ) -> Result<bool, Error> {
        let from = util::rs_replicas(rs);
        let size = from != to;
        let mut next = rs.clone();
        let want = util::replicas(d);
        let annotations =
            util::set_replicas_annotations(&mut next, want, want + util::max_surge(d));
        if !size && !annotations {
            return Ok(false);
        }
        util::set_rs_replicas(&mut next, to);
        let name = next.metadata.name.clone().unwrap_or_default();
        *rs = self
            .rs_api(d)
            .replace(&name, &PostParams::default(), &next)
            .await?;
        if size {
            let op = if from < to { "up" } else { "down" };
            self.recorder().object(
                d,
                Kind::Normal,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {from} to {to}"),
            );
        }
        Ok(size)
    }

    /// Scales the Deployment's ReplicaSets to its replica count without a rollout step: all to
    /// the one active set, or in proportion when several are active mid-rollout.
    pub(crate) async fn scale(&self, d: &Deployment, sets: &mut Sets) -> Result<(), Error> {
        let want = util::replicas(d);
        // One active (or the latest) ReplicaSet takes everything.
        if let Some(target) = active_or_latest(sets) {
            let rs = match target {
                Target::New => sets.new.as_mut(),
                Target::Old(i) => sets.old.get_mut(i),
            };
            if let Some(rs) = rs {
                if util::rs_replicas(rs) != want {
                    self.scale_rs_annotated(d, rs, want).await?;
                }
            }
            return Ok(());
        }
        // The new one is saturated: the old ones go.
        if let Some(new) = sets.new.as_ref() {
            let saturated = !util::desired_annotation_differs(new, want)
                && new
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(util::DESIRED_REPLICAS))
                && util::rs_replicas(new) == want
                && util::rs_available(new) == want;
            if saturated {
                for rs in sets.old.iter_mut().filter(|rs| util::rs_replicas(rs) > 0) {
                    self.scale_rs(d, rs, 0).await?;
                }
                return Ok(());
            }
        }
        if util::is_recreate(d) {
            return Ok(());
        }
        // Mid-rollout: spread the difference in proportion to each set's share.
        let mut active: Vec<&mut ReplicaSet> = sets
            .old
            .iter_mut()
            .chain(sets.new.as_mut())
            .filter(|rs| util::rs_replicas(rs) > 0)
            .collect();
        let current: i32 = active.iter().map(|rs| util::rs_replicas(rs)).sum();
        let allowed = if want > 0 {
            want + util::max_surge(d)
        } else {
            0
        };
        let to_add = allowed - current;
        if to_add > 0 {
            active.sort_by(|a, b| util::by_size_newer(a, b));
        } else {
            active.sort_by(|a, b| util::by_size_older(a, b));
        }
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
        for rs in active.iter() {
            let mut size = util::rs_replicas(rs);
            if to_add != 0 {
                let p = proportion(rs, want, util::max_surge(d), status_replicas, to_add, added);
                size += p;
                added += p;
            }
            sizes.push(size);
        }
        if to_add != added {
            if let Some(first) = sizes.first_mut() {
                *first = (*first + to_add - added).max(0);
            }
        }
        for (rs, size) in active.into_iter().zip(sizes) {
            self.scale_rs_annotated(d, rs, size).await?;
        }
        Ok(())
    }
}

enum Target {
    New,
    Old(usize),
}

/// The only active ReplicaSet, or the latest when none is active; `None` with several active.
fn active_or_latest(sets: &Sets) -> Option<Target> {
    let mut active = sets
        .old
        .iter()
        .enumerate()
        .filter(|(_, rs)| util::rs_replicas(rs) > 0)
        .map(|(i, _)| Target::Old(i))
        .collect::<Vec<_>>();
    if sets
        .new
        .as_ref()
        .is_some_and(|rs| util::rs_replicas(rs) > 0)
    {
        active.push(Target::New);
    }
    match active.len() {
        0 => {
            if sets.new.is_some() {
                return Some(Target::New);
            }
            // The newest old one.
            let newest = (0..sets.old.len())
                .max_by(|a, b| util::by_creation(&sets.old[*a], &sets.old[*b]))?;
            Some(Target::Old(newest))
        }
        1 => active.pop(),
        _ => None,
    }
}

/// How many replicas `rs` gains (or loses) when a scale of `to_add` is spread in proportion.
fn proportion(
    rs: &ReplicaSet,
    want: i32,
    surge: i32,
    status_replicas: i32,
    to_add: i32,
    added: i32,
) -> i32 {
    let size = util::rs_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if want == 0 {
        -size
    } else {
        let annotated = util::max_replicas_annotation(rs).unwrap_or(status_replicas);
        if annotated == 0 {
            0
        } else {
            let target = f64::from(size) * f64::from(want + surge) / f64::from(annotated);
            target.round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}
