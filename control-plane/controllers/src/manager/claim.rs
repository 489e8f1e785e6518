//! Controller references, as upstream's `ControllerRefManager`: an owner claims the objects its
//! selector matches. It keeps those it already controls, adopts matching orphans (after
//! checking, uncached, that it is itself still alive), and releases objects it controls that no
//! longer match. Objects controlled by someone else are never touched.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{selector, Error};

/// The owner side of a claim.
#[derive(Clone, Debug)]
pub struct Owner {
    /// `apps/v1`, ...
    pub api_version: String,
    /// `ReplicaSet`, `Deployment`, ...
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// The owner's uid.
    pub uid: String,
    /// Whether the owner is being deleted (it then adopts nothing and releases nothing).
    pub deleting: bool,
}

impl Owner {
    /// The owner of a typed object.
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Owner {
        let meta = obj.meta();
        Owner {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// The controller reference dependents carry: `controller` and `blockOwnerDeletion` set.
    pub fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

/// The reference to an object's controller, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether a failed adopt or release can be ignored: the object is gone or being deleted.
fn ignorable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 422)
}

/// Claims `candidates` for `owner`: returns those it controls after adopting and releasing.
/// `can_adopt` checks, against the API rather than a cache, that the owner is still the same
/// live object; it runs at most once, and only if there is an orphan to adopt.
pub async fn claim<K, F, Fut>(
    api: &Api<K>,
    owner: &Owner,
    selector: &LabelSelector,
    candidates: Vec<Arc<K>>,
    can_adopt: F,
) -> Result<Vec<Arc<K>>, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let mut can_adopt = Some(can_adopt);
    let mut adoption_allowed: Option<bool> = None;
    let mut claimed = Vec::new();
    let mut first_error: Option<Error> = None;
    for obj in candidates {
        let meta = obj.meta();
        let name = meta.name.as_deref().unwrap_or_default();
        let matches = || selector::matches(selector, meta.labels.as_ref());
        match controller_of(meta) {
            Some(r) if r.uid != owner.uid => continue,
            Some(_) if matches() => claimed.push(obj),
            Some(_) => {
                if owner.deleting {
                    continue;
                }
                if let Err(e) = release(api, owner, name, meta.uid.as_deref()).await {
                    if !ignorable(&e) {
                        first_error.get_or_insert(e.into());
                    }
                }
            }
            None => {
                if owner.deleting || meta.deletion_timestamp.is_some() || !matches() {
                    continue;
                }
                let allowed = match adoption_allowed {
                    Some(a) => a,
                    None => {
                        let a = match can_adopt.take() {
                            Some(check) => check().await?,
                            None => false,
                        };
                        adoption_allowed = Some(a);
                        a
                    }
                };
                if !allowed {
                    continue;
                }
                match adopt(api, owner, name, meta.uid.as_deref()).await {
                    Ok(()) => claimed.push(obj),
                    Err(e) if ignorable(&e) => {}
                    Err(e) => {
                        first_error.get_or_insert(e.into());
                    }
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

async fn adopt<K>(api: &Api<K>, owner: &Owner, name: &str, uid: Option<&str>) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    tracing::debug!(%name, owner = %owner.name, "adopting");
    let patch = json!({"metadata": {"ownerReferences": [owner.controller_ref()], "uid": uid}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
}

async fn release<K>(api: &Api<K>, owner: &Owner, name: &str, uid: Option<&str>) -> kube::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    tracing::debug!(%name, owner = %owner.name, "releasing");
    let patch = json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner.uid}],
        "uid": uid,
    }});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
}
