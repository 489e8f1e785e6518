//! Deployment arithmetic and bookkeeping shared by the strategies, as upstream's
//! `deployment/util`: maxSurge/maxUnavailable resolution, the pod-template hash, which
//! ReplicaSet is "new", replica counts over sets of ReplicaSets, and sort orders.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::manager::Error;

/// The label (and RS name suffix) carrying the template hash.
pub const HASH_LABEL: &str = "pod-template-hash";
/// The revision of a ReplicaSet, copied to its Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Older revisions a ReplicaSet had, when a rollback made it new again.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Longest `revision-history` annotation kept.
pub const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations never copied to ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// `spec.replicas` (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas` (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sets a ReplicaSet's `spec.replicas`.
pub fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

/// A ReplicaSet's `status.availableReplicas`.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Whether the Deployment uses the Recreate strategy.
pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// `value` of `total`: an int as it is, or a percentage rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "invalid value for IntOrString: invalid value {s:?}"
                    ))
                })?;
            let scaled = pct * i64::from(total);
            let v = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
        }
    }
}

/// maxSurge and maxUnavailable as pod counts for `desired` replicas: surge rounds up,
/// unavailable down, and both zero becomes an unavailable of one, as upstream.
pub fn fenceposts(d: &Deployment, desired: i32) -> Result<(i32, i32), Error> {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let zero = IntOrString::Int(0);
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&zero);
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&zero);
    let surge = scaled_value(surge, desired, true)?;
    let mut unavailable = scaled_value(unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// maxSurge as a pod count (0 for Recreate, or when it cannot be resolved).
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        return 0;
    }
    fenceposts(d, replicas(d)).map(|(s, _)| s).unwrap_or(0)
}

/// maxUnavailable as a pod count, at most the replicas (0 for Recreate).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let want = replicas(d);
    if is_recreate(d) || want == 0 {
        return 0;
    }
    fenceposts(d, want).map(|(_, u)| u.min(want)).unwrap_or(0)
}

/// FNV-1a, 32 bits: what upstream hashes templates with.
fn fnv1a32(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: digits mapped to characters that spell no words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` of a template: FNV-1a over its canonical JSON and the collision
/// count, in upstream's encoding (so names look like `web-5d4b9c7f8`).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv1a32(&bytes, 0x811c_9dc5);
    if let Some(c) = collision_count {
        let mut cc = [0u8; 8];
        cc[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv1a32(&cc, h);
    }
    safe_encode(&h.to_string())
}

/// `template` without the hash label, for comparing templates.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(m) = t.metadata.as_mut() {
        if let Some(l) = m.labels.as_mut() {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                m.labels = None;
            }
        }
    }
    t
}

/// Whether two templates are equal but for the hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The ReplicaSet running the Deployment's current template: the oldest whose template
/// matches, as upstream picks it.
pub fn find_new(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let template = d.spec.as_ref().map(|s| &s.template)?;
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    idx.sort_by(|a, b| by_creation(&rss[*a], &rss[*b]));
    idx.into_iter().find(|i| {
        rss[*i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

/// Oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Larger first; among equals, newer first.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Larger first; among equals, older first.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// The revision annotation as a number (0 when absent or invalid).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Sum of `spec.replicas`.
pub fn spec_replicas(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

/// Sum of `status.replicas`.
pub fn actual_replicas(rss: &[&ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum()
}

/// Sum of `status.readyReplicas`.
pub fn ready_replicas(rss: &[&ReplicaSet]) -> i32 {
    rss.iter()
        .map(|rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum()
}

/// Sum of `status.availableReplicas`.
pub fn available_replicas(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_available(rs)).sum()
}

/// Sets the desired- and max-replicas annotations; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// Copies the Deployment's own annotations (`kubernetes.io/change-cause`, ...) to the
/// ReplicaSet; whether anything changed.
pub fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// The new ReplicaSet's annotations: copied ones, the revision (and, when a rollback makes an
/// old ReplicaSet new again, its earlier revision in the history), and for a ReplicaSet about
/// to be created the replicas annotations. Whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = copy_annotations(d, rs);
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let old = a.get(REVISION).cloned();
    let old_n: i64 = match old.as_deref() {
        None => 0,
        Some(o) => match o.parse() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_n < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut olds: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > MAX_REVISION_HISTORY_CHARS && start < olds.len() {
                total -= olds[start].len() + 1;
                start += 1;
            }
            if total <= MAX_REVISION_HISTORY_CHARS {
                olds.drain(..start);
                olds.push(&old);
                let joined = olds.join(",");
                a.insert(REVISION_HISTORY.into(), joined);
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Whether the ReplicaSet was last scaled for a different Deployment size.
pub fn desired_annotation_differs(rs: &ReplicaSet, want: i32) -> bool {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_REPLICAS))
        .is_some_and(|v| v.parse::<i32>().ok() != Some(want))
}

/// The max-replicas annotation, if valid.
pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAX_REPLICAS))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn deploy(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn percentages_round_as_upstream() {
        let s = |v: &str| IntOrString::String(v.into());
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        let d = deploy(10, s("25%"), s("25%"));
        assert_eq!(fenceposts(&d, 10).ok(), Some((3, 2)));
        // 25% of 1: surge 1, unavailable 0.
        let d = deploy(1, s("25%"), s("25%"));
        assert_eq!(fenceposts(&d, 1).ok(), Some((1, 0)));
        // Both zero: unavailable becomes 1.
        let d = deploy(3, IntOrString::Int(0), IntOrString::Int(0));
        assert_eq!(fenceposts(&d, 3).ok(), Some((0, 1)));
        assert_eq!(max_unavailable(&d), 1);
        assert!(scaled_value(&s("abc"), 10, true).is_err());
        let d = deploy(2, IntOrString::Int(1), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 2);
    }

    #[test]
    fn hash_is_stable_and_changes_with_collisions() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn rollback_keeps_the_old_revision_in_history() {
        let d = Deployment::default();
        let mut rs = ReplicaSet::default();
        rs.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        let a = rs.metadata.annotations.unwrap_or_default();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
    }
}
