//! emptyDir: a directory that lives as long as the pod, on the node's disk or, with
//! `medium: Memory`, on a tmpfs limited to `sizeLimit`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::error::SetUpError;
use super::mount;
use crate::kubelet::downward;

/// Sets up the emptyDir at `dir`, keeping what an earlier setup (before an agent restart) put
/// there.
/// `memory_size` is the tmpfs size for `medium: Memory` (see [`memory_size`]).
pub(crate) fn set_up(
    dir: &Path,
    source: &EmptyDirVolumeSource,
    memory_size: Option<i64>,
) -> Result<(), SetUpError> {
    match source.medium.as_deref().unwrap_or_default() {
        "" => {
            create_dir(dir)?;
            // World-writable as upstream's, so containers running as any user can use it (an
            // fsGroup's setgid bit, set later, is kept).
            let chmod = |e| SetUpError::io(format!("chmod {}", dir.display()), e);
            let mode = fs::metadata(dir).map_err(chmod)?.permissions().mode() & 0o7777;
            if mode & 0o777 != 0o777 {
                fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o777))
                    .map_err(chmod)?;
            }
            Ok(())
        }
        "Memory" => tmpfs(dir, memory_size),
        other => Err(SetUpError::Unsupported(format!(
            "emptyDir medium {other:?} is not supported"
        ))),
    }
}

/// A directory with a tmpfs mounted on it, unless one already is (the agent restarted). Used by
/// memory-backed emptyDirs and by secret and projected volumes, whose contents stay off disk.
pub(crate) fn tmpfs(dir: &Path, size: Option<i64>) -> Result<(), SetUpError> {
    create_dir(dir)?;
    let mounted =
        mount::is_mount_point(dir).map_err(|e| SetUpError::io("read /proc/self/mountinfo", e))?;
    if !mounted {
        mount::mount_tmpfs(dir, size)
            .map_err(|e| SetUpError::io(format!("mount tmpfs at {}", dir.display()), e))?;
    }
    Ok(())
}

/// Creates a volume's directory (and its parents).
pub(crate) fn create_dir(dir: &Path) -> Result<(), SetUpError> {
    fs::create_dir_all(dir).map_err(|e| SetUpError::io(format!("mkdir {}", dir.display()), e))
}

/// The size of a memory-backed volume, as upstream's `calculateEmptyDirMemorySize`: the node's
/// allocatable memory, lowered to the pod's memory limit (when every container has one) and then
/// to the volume's own `sizeLimit`, each only when positive and smaller. `None` when nothing is
/// known: the kernel's default (half the RAM).
pub(crate) fn memory_size(
    pod: &Pod,
    size_limit: Option<&Quantity>,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<Option<i64>, SetUpError> {
    let mut size = match allocatable.get("memory") {
        Some(q) => Some(downward::quantity_bytes(q)?).filter(|s| *s > 0),
        None => None,
    };
    let lower = |size: Option<i64>, v: i64| match size {
        _ if v <= 0 => size,
        Some(s) if v > s => size,
        _ => Some(v),
    };
    if let Some(limit) = pod_memory_limit(pod)? {
        size = lower(size, limit);
    }
    if let Some(q) = size_limit {
        size = lower(size, downward::quantity_bytes(q)?);
    }
    Ok(size)
}

/// The pod's memory limit as its cgroup gets it: the sum over its containers, or the largest
/// init container's if more; `None` if any container has no memory limit.
fn pod_memory_limit(pod: &Pod) -> Result<Option<i64>, SetUpError> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(None);
    };
    let limit = |c: &Container| -> Result<Option<i64>, SetUpError> {
        match c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
        {
            Some(q) => Ok(Some(downward::quantity_bytes(q)?)),
            None => Ok(None),
        }
    };
    let mut sum: i64 = 0;
    for c in &spec.containers {
        let Some(l) = limit(c)? else {
            return Ok(None);
        };
        sum = sum.saturating_add(l);
    }
    for c in spec.init_containers.iter().flatten() {
        let Some(l) = limit(c)? else {
            return Ok(None);
        };
        sum = sum.max(l);
    }
    Ok(Some(sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    fn pod(limits: &[Option<&str>], init: &[Option<&str>]) -> Pod {
        let c = |l: &Option<&str>| Container {
            resources: Some(ResourceRequirements {
                limits: l.map(|l| BTreeMap::from([("memory".to_string(), q(l))])),
                ..Default::default()
            }),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                containers: limits.iter().map(c).collect(),
                init_containers: Some(init.iter().map(c).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn memory_volumes_are_sized_as_upstream() {
        let alloc = BTreeMap::from([("memory".to_string(), q("8Gi"))]);
        let none = BTreeMap::new();
        let mib = |n: i64| Some(n << 20);
        let limited = pod(&[Some("64Mi"), Some("32Mi")], &[Some("80Mi")]);
        // The containers' sum, or a larger init container.
        assert_eq!(memory_size(&limited, None, &alloc).unwrap(), mib(96));
        let big_init = pod(&[Some("64Mi")], &[Some("128Mi")]);
        assert_eq!(memory_size(&big_init, None, &alloc).unwrap(), mib(128));
        // A smaller sizeLimit wins; a larger or zero one does not.
        assert_eq!(
            memory_size(&limited, Some(&q("1Mi")), &alloc).unwrap(),
            mib(1)
        );
        assert_eq!(
            memory_size(&limited, Some(&q("1Gi")), &alloc).unwrap(),
            mib(96)
        );
        assert_eq!(
            memory_size(&limited, Some(&q("0")), &alloc).unwrap(),
            mib(96)
        );
        // A container without a limit: the node's allocatable, or the kernel default.
        let open = pod(&[Some("64Mi"), None], &[]);
        assert_eq!(memory_size(&open, None, &alloc).unwrap(), Some(8 << 30));
        assert_eq!(memory_size(&open, None, &none).unwrap(), None);
        assert_eq!(memory_size(&open, Some(&q("2Mi")), &none).unwrap(), mib(2));
        // A pod limit above allocatable does not raise the size.
        let huge = pod(&[Some("16Gi")], &[]);
        assert_eq!(memory_size(&huge, None, &alloc).unwrap(), Some(8 << 30));
    }
}
