//! The files of configMap, secret, downwardAPI and projected volumes, computed as upstream's
//! `MakePayload`/`CollectData` do: every key (or only the listed items), modes from the item or
//! the volume's default, optional objects and keys skipped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccountTokenProjection, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::atomic_writer::{FileProjection, Payload};
use super::error::SetUpError;
use super::{ObjectSource, TokenRequest};
use crate::kubelet::downward;

/// The API's default file mode (0644) for every volume kind here.
pub(crate) const DEFAULT_MODE: u32 = 0o644;

/// An API mode (`defaultMode`, `mode`) as permission bits.
pub(crate) fn mode_bits(mode: Option<i32>, default: u32) -> u32 {
    mode.map_or(default, |m| (m as u32) & 0o7777)
}

/// Which kind of keyed object a payload comes from, for its error texts.
#[derive(Clone, Copy)]
pub(crate) enum Keyed {
    /// A ConfigMap (`data` and `binaryData`).
    ConfigMap,
    /// A Secret (`data`).
    Secret,
}

/// The request for one keyed object's files.
pub(crate) struct KeyedRef<'a> {
    /// ConfigMap or Secret.
    pub kind: Keyed,
    /// The object's name in the pod's namespace.
    pub name: &'a str,
    /// `items`: only these keys, at these paths.
    pub items: Option<&'a [KeyToPath]>,
    /// A missing object or key is skipped rather than an error.
    pub optional: bool,
    /// The mode of files whose item sets none.
    pub default_mode: u32,
}

/// The files one ConfigMap or Secret contributes.
pub(crate) async fn keyed_payload(
    namespace: &str,
    r: &KeyedRef<'_>,
    source: &dyn ObjectSource,
) -> Result<Payload, SetUpError> {
    let data: Option<BTreeMap<String, Vec<u8>>> = match r.kind {
        Keyed::ConfigMap => source
            .config_map(namespace, r.name)
            .await
            .map_err(SetUpError::from_source)?
            .map(|cm| {
                let mut all: BTreeMap<String, Vec<u8>> = cm
                    .binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                all.extend(
                    cm.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                all
            }),
        Keyed::Secret => source
            .secret(namespace, r.name)
            .await
            .map_err(SetUpError::from_source)?
            .map(|s| {
                let mut all: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                // The API server folds stringData into data; a source that hands the object
                // over unfolded gets the same result, stringData winning as upstream.
                all.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                all
            }),
    };
    let data = match data {
        Some(d) => d,
        None if r.optional => BTreeMap::new(),
        None => {
            return Err(match r.kind {
                Keyed::ConfigMap => SetUpError::ConfigMapNotFound(r.name.to_string()),
                Keyed::Secret => SetUpError::SecretNotFound(r.name.to_string()),
            })
        }
    };
    let mut payload = Payload::new();
    match r.items.filter(|i| !i.is_empty()) {
        None => {
            for (key, bytes) in data {
                let file = FileProjection {
                    data: bytes,
                    mode: r.default_mode,
                };
                payload.insert(key, file);
            }
        }
        Some(items) => {
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    if r.optional {
                        continue;
                    }
                    return Err(match r.kind {
                        Keyed::ConfigMap => SetUpError::MissingConfigMapKey(item.key.clone()),
                        Keyed::Secret => SetUpError::MissingSecretKey(item.key.clone()),
                    });
                };
                let file = FileProjection {
                    data: bytes.clone(),
                    mode: mode_bits(item.mode, r.default_mode),
                };
                payload.insert(item.path.clone(), file);
            }
        }
    }
    Ok(payload)
}

/// The files of downwardAPI items: field values and resource values, as text without a
/// trailing newline.
pub(crate) fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            downward::field_value(pod, &f.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            downward::resource_value(
                pod,
                r.container_name.as_deref().unwrap_or_default(),
                &r.resource,
                r.divisor.as_ref(),
                allocatable,
            )
        } else {
            Ok(String::new())
        };
        match value {
            Ok(v) => {
                let file = FileProjection {
                    data: v.into_bytes(),
                    mode: mode_bits(item.mode, default_mode),
                };
                payload.insert(item.path.clone(), file);
            }
            Err(e) => errors.push(SetUpError::Downward(e)),
        }
    }
    aggregate(errors)?;
    Ok(payload)
}

/// A `serviceAccountToken` source's one file: a token for the pod's service account, bound
/// to the pod, from the object source (which caches and refreshes it as upstream's token
/// manager does).
async fn token_payload(
    pod: &Pod,
    namespace: &str,
    t: &ServiceAccountTokenProjection,
    default_mode: u32,
    source: &dyn ObjectSource,
) -> Result<Payload, SetUpError> {
    let meta = &pod.metadata;
    let service_account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let request = TokenRequest {
        namespace,
        service_account,
        pod_name: meta.name.as_deref().unwrap_or_default(),
        pod_uid: meta.uid.as_deref().unwrap_or_default(),
        audience: t.audience.as_deref().filter(|a| !a.is_empty()),
        expiration_seconds: t
            .expiration_seconds
            .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS),
    };
    let token = source
        .service_account_token(&request)
        .await
        .map_err(|e| SetUpError::Source(format!("failed to fetch token: {e}")))?;
    let mut payload = Payload::new();
    payload.insert(
        t.path.clone(),
        FileProjection {
            data: token.into_bytes(),
            mode: default_mode,
        },
    );
    Ok(payload)
}

/// A projection's token lifetime when it names none (the API's default).
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// The files of a projected volume's sources, later sources overriding earlier ones at the same
/// path.
pub(crate) async fn projected_payload(
    pod: &Pod,
    namespace: &str,
    sources: &[VolumeProjection],
    default_mode: u32,
    allocatable: &BTreeMap<String, Quantity>,
    source: &dyn ObjectSource,
) -> Result<Payload, SetUpError> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for s in sources {
        let part = if let Some(cm) = &s.config_map {
            let r = KeyedRef {
                kind: Keyed::ConfigMap,
                name: &cm.name,
                items: cm.items.as_deref(),
                optional: cm.optional.unwrap_or(false),
                default_mode,
            };
            keyed_payload(namespace, &r, source).await
        } else if let Some(sec) = &s.secret {
            let r = KeyedRef {
                kind: Keyed::Secret,
                name: &sec.name,
                items: sec.items.as_deref(),
                optional: sec.optional.unwrap_or(false),
                default_mode,
            };
            keyed_payload(namespace, &r, source).await
        } else if let Some(d) = &s.downward_api {
            downward_payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                allocatable,
            )
        } else if let Some(t) = &s.service_account_token {
            token_payload(pod, namespace, t, default_mode, source).await
        } else if let Some(b) = &s.cluster_trust_bundle {
            if b.optional.unwrap_or(false) {
                Ok(Payload::new())
            } else {
                Err(SetUpError::Unsupported(
                    "clusterTrustBundle projections are not supported".into(),
                ))
            }
        } else {
            Err(SetUpError::Unsupported(
                "projected volume source of an unknown kind".into(),
            ))
        };
        match part {
            Ok(p) => payload.extend(p),
            Err(e) => errors.push(e),
        }
    }
    aggregate(errors)?;
    Ok(payload)
}

/// Upstream's error aggregate: nothing, the one error, or all of them.
/// Nested aggregates are flattened and repeated texts dropped, as upstream's `Error()` does.
fn aggregate(errors: Vec<SetUpError>) -> Result<(), SetUpError> {
    let mut flat = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<SetUpError> = errors.into_iter().rev().collect();
    while let Some(e) = stack.pop() {
        match e {
            SetUpError::Aggregate(inner) => stack.extend(inner.into_iter().rev()),
            e => {
                if seen.insert(e.to_string()) {
                    flat.push(e);
                }
            }
        }
    }
    let mut errors = flat;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(SetUpError::Aggregate(errors)),
    }
}
