//! Resource amounts as integers, and what a pod requests, computed once per pod as upstream's
//! `resourcehelper.PodRequests` does: containers summed, init containers by maximum (sidecars,
//! restartable init containers, added to everything after them), plus the pod overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use skiff_quota::quantity;

/// CPU a container without a CPU request counts as when spreading by score (upstream's
/// `DefaultMilliCPURequest`), so best-effort pods do not all pile onto one node.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler fits: CPU in millicores, the rest in whole units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Extended resources and hugepages by name, sorted, without zero entries.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// The amount of a named scalar resource (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.scalar.insert(i, (name.to_string(), 0));
                i
            }
        };
        &mut self.scalar[i].1
    }

    /// Adds `other` to these amounts (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let s = self.scalar_mut(name);
            *s = s.saturating_add(*v);
        }
    }

    /// Subtracts `other` (a pod leaving a node).
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let s = self.scalar_mut(name);
            *s = s.saturating_sub(*v);
        }
        self.scalar.retain(|(_, v)| *v != 0);
    }

    /// Raises each amount to at least `other`'s.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let s = self.scalar_mut(name);
            *s = (*s).max(*v);
        }
    }

    /// Whether nothing is requested at all.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }

    /// Amounts from a resource list (`requests`, `allocatable`); malformed quantities count
    /// as zero, logged, as upstream's parsing would have refused them at admission.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = parse(name, q, true),
                "memory" => r.memory = parse(name, q, false),
                "ephemeral-storage" => r.ephemeral_storage = parse(name, q, false),
                "pods" => {}
                _ if is_scalar(name) => {
                    let v = parse(name, q, false);
                    if v != 0 {
                        *r.scalar_mut(name) = v;
                    }
                }
                _ => {}
            }
        }
        r
    }
}

/// Resources fitted besides CPU, memory and ephemeral storage: extended resources
/// (`example.com/foo`, outside `kubernetes.io/`), hugepages and attachable volumes.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

/// One quantity as millis (`cpu`) or units; 0 (logged) when malformed.
pub fn parse(name: &str, q: &Quantity, millis: bool) -> i64 {
    let parsed = if millis {
        quantity::milli(&q.0)
    } else {
        quantity::units(&q.0)
    };
    match parsed {
        Ok(v) => v.max(0),
        Err(e) => {
            tracing::debug!(resource = name, "ignoring a malformed quantity: {e}");
            0
        }
    }
}

/// A container's requests: `requests`, or `limits` where a request is missing (what the API
/// server's defaulting would have copied).
fn container_requests(c: &Container) -> Resources {
    let Some(res) = c.resources.as_ref() else {
        return Resources::default();
    };
    match (&res.requests, &res.limits) {
        (Some(req), Some(lim)) => {
            let mut merged = lim.clone();
            merged.extend(req.iter().map(|(k, v)| (k.clone(), v.clone())));
            Resources::from_list(&merged)
        }
        (Some(req), None) => Resources::from_list(req),
        (None, Some(lim)) => Resources::from_list(lim),
        (None, None) => Resources::default(),
    }
}

/// The same with CPU and memory defaulted when zero, for scoring.
fn non_zero(mut r: Resources) -> Resources {
    if r.milli_cpu == 0 {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if r.memory == 0 {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// What a pod requests: `(requests, non-zero requests)`. The second has every container's
/// missing CPU and memory request defaulted, as upstream's scoring uses it.
pub fn pod_requests(spec: &PodSpec) -> (Resources, Resources) {
    let mut reqs = Resources::default();
    let mut reqs_nz = Resources::default();
    for c in &spec.containers {
        let r = container_requests(c);
        reqs_nz.add(&non_zero(r.clone()));
        reqs.add(&r);
    }
    let mut init_max = Resources::default();
    let mut init_max_nz = Resources::default();
    let mut sidecars = Resources::default();
    let mut sidecars_nz = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        let r_nz = non_zero(r.clone());
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            reqs_nz.add(&r_nz);
            sidecars.add(&r);
            sidecars_nz.add(&r_nz);
            init_max.max_with(&sidecars);
            init_max_nz.max_with(&sidecars_nz);
        } else {
            let mut with = r;
            with.add(&sidecars);
            let mut with_nz = r_nz;
            with_nz.add(&sidecars_nz);
            init_max.max_with(&with);
            init_max_nz.max_with(&with_nz);
        }
    }
    reqs.max_with(&init_max);
    reqs_nz.max_with(&init_max_nz);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead);
        reqs.add(&o);
        reqs_nz.add(&o);
    }
    (reqs, reqs_nz)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    pub fn container(name: &str, requests: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            image: Some("busybox".into()),
            resources: Some(ResourceRequirements {
                requests: Some(
                    requests
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn containers_sum_and_init_containers_take_the_max() {
        let mut init = container("init", &[("cpu", "2"), ("memory", "1Gi")]);
        init.restart_policy = None;
        let spec = PodSpec {
            containers: vec![
                container("a", &[("cpu", "500m"), ("memory", "128Mi")]),
                container("b", &[("cpu", "250m")]),
            ],
            init_containers: Some(vec![init]),
            overhead: Some([("cpu".to_string(), Quantity("10m".into()))].into()),
            ..Default::default()
        };
        let (r, nz) = pod_requests(&spec);
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(nz.milli_cpu, 2010);
        assert_eq!(nz.memory, 1 << 30);
    }

    #[test]
    fn sidecars_add_up() {
        let mut sidecar = container("side", &[("cpu", "100m")]);
        sidecar.restart_policy = Some("Always".into());
        let init = container("init", &[("cpu", "300m")]);
        let spec = PodSpec {
            containers: vec![container("a", &[("cpu", "200m")])],
            init_containers: Some(vec![sidecar, init]),
            ..Default::default()
        };
        let (r, _) = pod_requests(&spec);
        // Containers 200 + sidecar 100 = 300; the init container runs beside the sidecar: 400.
        assert_eq!(r.milli_cpu, 400);
    }

    #[test]
    fn limits_stand_in_for_requests_and_defaults_for_scoring() {
        let mut c = container("a", &[]);
        if let Some(res) = c.resources.as_mut() {
            res.requests = None;
            res.limits = Some([("memory".to_string(), Quantity("1Gi".into()))].into());
        }
        let spec = PodSpec {
            containers: vec![c, container("b", &[("example.com/gpu", "2")])],
            ..Default::default()
        };
        let (r, nz) = pod_requests(&spec);
        assert_eq!(r.memory, 1 << 30);
        assert_eq!(r.milli_cpu, 0);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(nz.milli_cpu, 2 * DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(nz.memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn malformed_quantities_count_as_zero() {
        let spec = PodSpec {
            containers: vec![container("a", &[("cpu", "lots"), ("memory", "1Mi")])],
            ..Default::default()
        };
        let (r, _) = pod_requests(&spec);
        assert_eq!((r.milli_cpu, r.memory), (0, 1 << 20));
    }
}
