//! ControllerRevisions, as upstream's `controller/history`: a DaemonSet or StatefulSet keeps
//! one revision per pod template it has run (`<owner>-<hash>`, data `{"spec":{"template":
//! {..., "$patch":"replace"}}}`), numbered in the order the templates were current, so pods
//! can be told apart by revision and rollbacks find their template again. Old revisions no
//! pod uses are pruned beyond `revisionHistoryLimit`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::claim::{controller_of, Owner};
use super::{Context, Error};

/// The label carrying a pod's revision (the hash for DaemonSets, the revision name for
/// StatefulSets, as upstream).
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// FNV-1a, 32 bits, as upstream hashes revisions.
fn fnv1a32(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: characters that spell no words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The hash naming a revision: FNV-1a over its data and the collision count.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let mut h = fnv1a32(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        h = fnv1a32(&(c as u32).to_le_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// The data a revision of `template` stores.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision stores, if it stores one.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The revisions `owner` controls, oldest revision first.
pub fn owned(ctx: &Context, namespace: &str, owner_uid: &str) -> Vec<Arc<ControllerRevision>> {
    let mut revs: Vec<_> = ctx
        .controllerrevisions
        .store()
        .list_namespace(namespace)
        .into_iter()
        .filter(|r| controller_of(&r.metadata).is_some_and(|c| c.uid == owner_uid))
        .collect();
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    revs
}

/// Finds or creates the revision of `template` among `revs`, making it the newest: returns
/// it and the collision count to record (bumped when another template took the hash's name).
pub async fn current(
    client: &kube::Client,
    owner: &Owner,
    namespace: &str,
    template: &PodTemplateSpec,
    labels: BTreeMap<String, String>,
    revs: &[Arc<ControllerRevision>],
    collision_count: Option<i32>,
) -> Result<(ControllerRevision, Option<i32>), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let data = template_patch(template);
    let max = revs.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(same) = revs
        .iter()
        .filter(|r| r.data.as_ref().map(|d| &d.0) == Some(&data))
        .max_by_key(|r| r.revision)
    {
        if same.revision == max {
            return Ok(((**same).clone(), collision_count));
        }
        // A rollback to an older template: it becomes the newest revision again.
        let name = same.metadata.name.clone().unwrap_or_default();
        let patch = json!({"revision": max + 1});
        let updated = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok((updated, collision_count));
    }
    let mut collisions = collision_count;
    for _ in 0..16 {
        let h = hash(&data, collisions);
        let name = format!("{}-{}", owner.name, h);
        let mut l = labels.clone();
        l.insert(REVISION_LABEL.into(), h.clone());
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(l),
                owner_references: Some(vec![owner.controller_ref()]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: max + 1,
        };
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => return Ok((created, collisions)),
            Err(e) if super::conflict(&e) => {
                // The name exists: ours with the same data (a lagging cache), or a collision.
                if let Some(existing) = api.get_opt(&name).await? {
                    let ours =
                        controller_of(&existing.metadata).is_some_and(|c| c.uid == owner.uid);
                    if ours && existing.data.as_ref().map(|d| &d.0) == Some(&data) {
                        return Ok((existing, collisions));
                    }
                }
                collisions = Some(collisions.unwrap_or(0).saturating_add(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Retry(format!(
        "too many hash collisions for {}",
        owner.name
    )))
}

/// Deletes the oldest revisions beyond `limit` that no live pod's revision label names and
/// that are not in `keep`.
pub async fn prune(
    client: &kube::Client,
    namespace: &str,
    revs: &[Arc<ControllerRevision>],
    in_use: &HashSet<String>,
    keep: &[&str],
    limit: i32,
) -> Result<(), Error> {
    let candidates: Vec<&Arc<ControllerRevision>> = revs
        .iter()
        .filter(|r| {
            let name = r.metadata.name.as_deref().unwrap_or_default();
            let h = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                .map(String::as_str)
                .unwrap_or_default();
            !keep.contains(&name) && !in_use.contains(name) && !in_use.contains(h)
        })
        .collect();
    let surplus = candidates.len().saturating_sub(limit.max(0) as usize);
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    for r in candidates.into_iter().take(surplus) {
        let name = r.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if super::not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_data_round_trips_and_hashes_stably() {
        let t = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let data = template_patch(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let rev = ControllerRevision {
            data: Some(RawExtension(data.clone())),
            ..Default::default()
        };
        assert_eq!(template_of(&rev), Some(t));
        assert_eq!(hash(&data, None), hash(&data, None));
        assert_ne!(hash(&data, None), hash(&data, Some(1)));
    }
}
