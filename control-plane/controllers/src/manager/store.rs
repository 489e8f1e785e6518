//! An in-memory cache of one resource's objects, shared by every controller that reads them,
//! ordered by namespace so "all pods of a namespace" is a range scan instead of a full walk,
//! and indexed by controller so a claim reads what its owner controls plus the orphans rather
//! than every object of the namespace.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use kube::Resource;

use super::claim::controller_of;

/// Where an object lives: its namespace (empty for cluster-scoped objects) and name. Queues
/// carry keys, never objects, so a controller always acts on the newest cached state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The namespace, or `""` for cluster-scoped objects.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// The key of a cached object, `None` for an object without a name.
    pub fn of<K: Resource>(obj: &K) -> Option<ObjectKey> {
        let meta = obj.meta();
        Some(ObjectKey {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
        })
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Where an object stands for claims: its namespace and its controller's uid (`""` for an
/// orphan).
type ClaimKey = (String, String);

fn claim_key<K: Resource>(obj: &K) -> ClaimKey {
    let meta = obj.meta();
    let controller = controller_of(meta)
        .map(|r| r.uid.clone())
        .unwrap_or_default();
    (meta.namespace.clone().unwrap_or_default(), controller)
}

struct Objects<K> {
    by_key: BTreeMap<ObjectKey, Arc<K>>,
    /// The same objects by namespace and controller; kept with `by_key` under the same lock.
    by_controller: HashMap<ClaimKey, BTreeMap<ObjectKey, Arc<K>>>,
}

impl<K: Resource> Objects<K> {
    fn unindex(&mut self, key: &ObjectKey, obj: &K) {
        let ck = claim_key(obj);
        if let Some(keys) = self.by_controller.get_mut(&ck) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_controller.remove(&ck);
            }
        }
    }
}

/// The cached objects of one resource; cheap to clone, readers never block the writer for
/// longer than a map operation.
pub struct Store<K> {
    inner: Arc<RwLock<Objects<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            inner: Arc::new(RwLock::new(Objects {
                by_key: BTreeMap::new(),
                by_controller: HashMap::new(),
            })),
        }
    }
}

impl<K> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects<K>> {
        // A panicking writer cannot leave the map half-changed (every change is one call), so
        // a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects<K>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached object at `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().by_key.get(key).cloned()
    }

    /// The cached object `namespace`/`name`.
    pub fn get_named(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.get(&ObjectKey::new(namespace, name))
    }

    /// Every cached object of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.read()
            .by_key
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// What an owner may claim in `namespace`: the objects whose controller is `owner_uid`,
    /// then the orphans, each in key order. Objects controlled by others are left out, as a claim
    /// never touches them.
    pub fn claimable(&self, namespace: &str, owner_uid: &str) -> Vec<Arc<K>> {
        let objects = self.read();
        let of = |uid: &str| {
            objects
                .by_controller
                .get(&(namespace.to_string(), uid.to_string()))
        };
        let owned = if owner_uid.is_empty() {
            None
        } else {
            of(owner_uid)
        };
        owned
            .into_iter()
            .chain(of(""))
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().by_key.values().cloned().collect()
    }

    /// Every cached key.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().by_key.keys().cloned().collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().by_key.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.read().by_key.is_empty()
    }
}

impl<K: Resource> Store<K> {
    /// Stores `obj` at `key`, returning what it replaced.
    pub(crate) fn insert(&self, key: ObjectKey, obj: Arc<K>) -> Option<Arc<K>> {
        let mut objects = self.write();
        let ck = claim_key(obj.as_ref());
        let old = objects.by_key.insert(key.clone(), obj.clone());
        if let Some(o) = &old {
            objects.unindex(&key, o);
        }
        objects
            .by_controller
            .entry(ck)
            .or_default()
            .insert(key, obj);
        old
    }

    /// Removes the object at `key`, returning it.
    pub(crate) fn remove(&self, key: &ObjectKey) -> Option<Arc<K>> {
        let mut objects = self.write();
        let old = objects.by_key.remove(key);
        if let Some(o) = &old {
            objects.unindex(key, o);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn obj(ns: &str, name: &str, controller: &str) -> Arc<ConfigMap> {
        let mut cm = ConfigMap::default();
        cm.metadata.namespace = Some(ns.into());
        cm.metadata.name = Some(name.into());
        if !controller.is_empty() {
            cm.metadata.owner_references = Some(vec![OwnerReference {
                uid: controller.into(),
                controller: Some(true),
                ..Default::default()
            }]);
        }
        Arc::new(cm)
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        objs.iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn lists_one_namespace_by_range() {
        let s: Store<ConfigMap> = Store::default();
        for (ns, name) in [("a", "x"), ("b", "x"), ("b", "y"), ("ba", "x")] {
            s.insert(ObjectKey::new(ns, name), obj(ns, name, ""));
        }
        assert_eq!(names(s.list_namespace("b")), vec!["x", "y"]);
        assert_eq!(s.len(), 4);
        assert_eq!(ObjectKey::new("", "n").to_string(), "n");
        assert_eq!(ObjectKey::new("ns", "n").to_string(), "ns/n");
    }

    #[test]
    fn claimable_is_what_the_owner_controls_and_the_orphans() {
        let s: Store<ConfigMap> = Store::default();
        let put = |name: &str, ns: &str, controller: &str| {
            s.insert(ObjectKey::new(ns, name), obj(ns, name, controller));
        };
        put("mine-b", "ns", "u1");
        put("orphan", "ns", "");
        put("theirs", "ns", "u2");
        put("mine-a", "ns", "u1");
        put("elsewhere", "other", "");
        assert_eq!(
            names(s.claimable("ns", "u1")),
            vec!["mine-a", "mine-b", "orphan"]
        );
        assert_eq!(names(s.claimable("ns", "")), vec!["orphan"]);
        // Adoption moves an object between owners; deletion drops it from the index.
        put("orphan", "ns", "u2");
        assert_eq!(names(s.claimable("ns", "u1")), vec!["mine-a", "mine-b"]);
        assert_eq!(names(s.claimable("ns", "u2")), vec!["orphan", "theirs"]);
        s.remove(&ObjectKey::new("ns", "theirs"));
        assert_eq!(names(s.claimable("ns", "u2")), vec!["orphan"]);
        assert_eq!(s.len(), 4);
    }
}
