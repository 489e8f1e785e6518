//! An in-memory cache of one resource's objects, shared by every controller that reads them,
//! ordered by namespace so "all pods of a namespace" is a range scan instead of a full walk.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use kube::Resource;

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

/// The cached objects of one resource; cheap to clone, readers never block the writer for
/// longer than a map operation.
pub struct Store<K> {
    inner: Arc<RwLock<BTreeMap<ObjectKey, Arc<K>>>>,
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
            inner: Arc::new(RwLock::new(BTreeMap::new())),
        }
    }
}

impl<K> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ObjectKey, Arc<K>>> {
        // A panicking writer cannot leave the map half-changed (every change is one call), so
        // a poisoned lock is still consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ObjectKey, Arc<K>>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached object at `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// The cached object `namespace`/`name`.
    pub fn get_named(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.get(&ObjectKey::new(namespace, name))
    }

    /// Every cached object of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.read()
            .range(start..)
            .take_while(|(k, _)| k.namespace == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// Every cached key.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().keys().cloned().collect()
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Stores `obj` at `key`, returning what it replaced.
    pub(crate) fn insert(&self, key: ObjectKey, obj: Arc<K>) -> Option<Arc<K>> {
        self.write().insert(key, obj)
    }

    /// Removes the object at `key`, returning it.
    pub(crate) fn remove(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.write().remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_one_namespace_by_range() {
        let s: Store<u32> = Store::default();
        s.insert(ObjectKey::new("a", "x"), Arc::new(1));
        s.insert(ObjectKey::new("b", "x"), Arc::new(2));
        s.insert(ObjectKey::new("b", "y"), Arc::new(3));
        s.insert(ObjectKey::new("ba", "x"), Arc::new(4));
        let b: Vec<u32> = s.list_namespace("b").iter().map(|v| **v).collect();
        assert_eq!(b, vec![2, 3]);
        assert_eq!(s.len(), 4);
        assert_eq!(ObjectKey::new("", "n").to_string(), "n");
        assert_eq!(ObjectKey::new("ns", "n").to_string(), "ns/n");
    }
}
