//! A pod's volumes, set up under `<pod_dir>/volumes/<plugin>/<name>` as upstream's kubelet lays
//! them out, and the bind mounts each container's volumeMounts become.
//!
//! | module | job |
//! |---|---|
//! | [`error`] | [`VolumeError`] and [`SetUpError`], with upstream's event texts |
//! | `empty_dir` | emptyDir on disk or on a sized tmpfs (`medium: Memory`) |
//! | `host_path` | hostPath `type` checks and creation |
//! | `claim` | persistentVolumeClaim and generic ephemeral volumes: Bound claim → PV's hostPath/local path |
//! | `projection` | the files of configMap, secret, downwardAPI and projected volumes |
//! | `atomic_writer` | those files written as upstream's `..data` / timestamped-directory layout, swapped atomically |
//! | `subpath` | subPath/subPathExpr: resolved inside the volume, opened without following symlinks, bind-pinned |
//! | `ownership` | fsGroup: group ownership and group permissions of volume contents |
//! | `mount` | tmpfs, bind and unmount; mount table lookups |
//! | [`StaticObjects`] | an [`ObjectSource`] over objects handed in (static pods, tests) |

mod atomic_writer;
mod claim;
mod empty_dir;
pub mod error;
mod host_path;
mod mount;
mod ownership;
mod projection;
mod static_objects;
mod subpath;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub use error::{SetUpError, VolumeError};
pub use static_objects::StaticObjects;

use crate::runtime::spec::BindMount;
use atomic_writer::Payload;
use projection::{Keyed, KeyedRef, DEFAULT_MODE};

/// The directory under a pod's directory that holds its volumes.
pub const VOLUMES_DIR: &str = "volumes";

/// Where volume contents come from (the API server in the agent; a map in tests).
#[tonic::async_trait]
pub trait ObjectSource: Send + Sync {
    /// A ConfigMap, or `None` if it does not exist.
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, VolumeError>;
    /// A Secret, or `None` if it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, VolumeError>;
    /// A PersistentVolumeClaim, or `None` if it does not exist.
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, VolumeError>;
    /// A PersistentVolume, or `None` if it does not exist.
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, VolumeError>;
    /// The node's allocatable resources, which downwardAPI `resourceFieldRef` files report for
    /// unset limits. The default (nothing) makes those files read 0; the agent overrides it.
    async fn node_allocatable(&self) -> Result<BTreeMap<String, Quantity>, VolumeError> {
        Ok(BTreeMap::new())
    }
    /// A service-account token bound to the pod (projected `serviceAccountToken` sources),
    /// fresh enough to write out. The default issues none: sources without an API server
    /// cannot.
    async fn service_account_token(
        &self,
        request: &TokenRequest<'_>,
    ) -> Result<String, VolumeError> {
        Err(VolumeError::Source(format!(
            "no token issuer for service account \"{}\"",
            request.service_account
        )))
    }
}

/// What a projected `serviceAccountToken` source asks of [`ObjectSource::service_account_token`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's `serviceAccountName`.
    pub service_account: &'a str,
    /// The pod the token is bound to.
    pub pod_name: &'a str,
    /// Its uid.
    pub pod_uid: &'a str,
    /// The audience; `None` is the API server's own.
    pub audience: Option<&'a str>,
    /// The lifetime asked for (the projection's `expirationSeconds`, default 3600).
    pub expiration_seconds: i64,
}

/// One set-up volume: what containers bind-mount, and whether it must be read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prepared {
    path: PathBuf,
    read_only: bool,
}

/// A pod's volumes, set up under `<pod_dir>/volumes/`.
#[derive(Debug)]
pub struct PodVolumes {
    pod: Pod,
    pod_dir: PathBuf,
    volumes: BTreeMap<String, Prepared>,
}

impl PodVolumes {
    /// Sets up every volume of the pod (idempotent: a second call after an agent restart reuses
    /// what exists, refreshing configMap/secret/downwardAPI/projected contents).
    ///
    /// Call it again whenever the pod or its objects may have changed (upstream resyncs about
    /// once a minute): running containers see the new files. One call per pod at a time; the
    /// filesystem work is small and done inline.
    pub async fn prepare(
        pod: &Pod,
        pod_dir: &Path,
        source: &dyn ObjectSource,
    ) -> Result<PodVolumes, VolumeError> {
        std::fs::create_dir_all(pod_dir.join(VOLUMES_DIR)).map_err(|e| VolumeError::PodDir {
            path: pod_dir.join(VOLUMES_DIR),
            source: e,
        })?;
        // The mount table speaks in canonical paths.
        let pod_dir = std::fs::canonicalize(pod_dir).map_err(|e| VolumeError::PodDir {
            path: pod_dir.to_path_buf(),
            source: e,
        })?;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let pod_volumes: Vec<&Volume> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .collect();
        // Asked once per pod, and only when a volume needs it: memory-backed volumes are sized
        // by it and downwardAPI files report it for unset limits.
        let allocatable = if pod_volumes.iter().any(|v| needs_allocatable(v)) {
            source.node_allocatable().await?
        } else {
            BTreeMap::new()
        };
        let ctx = SetUpContext {
            pod,
            namespace,
            pod_dir: &pod_dir,
            allocatable: &allocatable,
            source,
        };
        let mut volumes = BTreeMap::new();
        for volume in pod_volumes {
            check_name(&volume.name)?;
            let prepared = set_up(&ctx, volume)
                .await
                .map_err(|cause| VolumeError::SetUp {
                    volume: volume.name.clone(),
                    cause,
                })?;
            volumes.insert(volume.name.clone(), prepared);
        }
        Ok(PodVolumes {
            pod: pod.clone(),
            pod_dir,
            volumes,
        })
    }

    /// The bind mounts for one container's volumeMounts (subPath, subPathExpr optional,
    /// readOnly; a mount naming an unknown volume is an error).
    ///
    /// Sub-paths are bind-mounted here, under `<pod_dir>/volume-subpaths/`, so the container
    /// gets the checked file even if the volume changes afterwards; that needs root. Call it just
    /// before creating the container; calling it again for a restart reuses those binds.
    pub fn mounts(&self, container: &Container) -> Result<Vec<BindMount>, VolumeError> {
        let mut out = Vec::new();
        for (index, m) in container.volume_mounts.iter().flatten().enumerate() {
            let volume = self
                .volumes
                .get(&m.name)
                .ok_or_else(|| VolumeError::UnknownVolume {
                    volume: m.name.clone(),
                    container: container.name.clone(),
                })?;
            let sub = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
                (Some(s), _) if !s.is_empty() => Some(s.to_string()),
                (_, Some(e)) if !e.is_empty() => Some(subpath::expand(e, &self.pod, container)?),
                _ => None,
            };
            let host_path = match sub.filter(|s| !s.is_empty()) {
                None => volume.path.clone(),
                Some(sub) => {
                    subpath::validate(&sub)?;
                    check_name(&container.name)?;
                    let target = self
                        .pod_dir
                        .join(subpath::SUBPATHS_DIR)
                        .join(&m.name)
                        .join(&container.name)
                        .join(index.to_string());
                    subpath::prepare(&subpath::SubPathMount {
                        volume_root: &volume.path,
                        sub: &sub,
                        target,
                        mount_name: &m.name,
                        container: &container.name,
                    })?
                }
            };
            let container_path = if m.mount_path.starts_with('/') {
                PathBuf::from(&m.mount_path)
            } else {
                Path::new("/").join(&m.mount_path)
            };
            out.push(BindMount {
                host_path,
                container_path,
                read_only: m.read_only.unwrap_or(false) || volume.read_only,
            });
        }
        Ok(out)
    }

    /// The host directory (or file) a volume provides, for callers that need more than mounts.
    pub fn host_path(&self, volume: &str) -> Option<&Path> {
        self.volumes.get(volume).map(|p| p.path.as_path())
    }
}

/// Unmounts and removes what prepare made for the pod (tmpfs mounts, emptyDir data, projected
/// files); never touches hostPath or persistent volume data.
///
/// Call it once the pod's containers are gone (they would see their emptyDir data vanish). It
/// is idempotent, and a pod directory that does not exist is already torn down.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    let pod_dir = match std::fs::canonicalize(pod_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(VolumeError::TearDown {
                path: pod_dir.to_path_buf(),
                source,
            })
        }
    };
    // Sub-path binds first: they may pin hostPath or claim data, which must survive.
    for dir in [subpath::SUBPATHS_DIR, VOLUMES_DIR] {
        let root = pod_dir.join(dir);
        let err = |path: &Path, source| VolumeError::TearDown {
            path: path.to_path_buf(),
            source,
        };
        for point in mount::mount_points_under(&root).map_err(|e| err(&root, e))? {
            mount::unmount(&point).map_err(|e| err(&point, e))?;
        }
        // Never delete through a mount that is still there.
        if let Some(left) = mount::mount_points_under(&root)
            .map_err(|e| err(&root, e))?
            .first()
        {
            return Err(err(
                left,
                std::io::Error::other("still mounted after unmount"),
            ));
        }
        if dir == VOLUMES_DIR {
            // Only the kinds prepare creates; hostPath and claims have nothing here.
            for plugin in PLUGIN_DIRS {
                remove_all(&root.join(plugin)).map_err(|e| err(&root.join(plugin), e))?;
            }
            match std::fs::remove_dir(&root) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(err(&root, e)),
            }
        } else {
            remove_all(&root).map_err(|e| err(&root, e))?;
        }
    }
    Ok(())
}

fn remove_all(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Upstream's plugin directory names (`kubernetes.io/empty-dir` with `/` escaped as `~`).
const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";
const PLUGIN_DIRS: [&str; 5] = [EMPTY_DIR, CONFIG_MAP, SECRET, DOWNWARD_API, PROJECTED];

/// Volume and container names become path components.
fn check_name(name: &str) -> Result<(), VolumeError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(VolumeError::InvalidPod(format!(
            "name {name:?} cannot be used as a directory name"
        )));
    }
    Ok(())
}

/// The pod's `securityContext.fsGroup`.
fn fs_group(pod: &Pod) -> Result<Option<u32>, SetUpError> {
    let gid = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group);
    gid.map(|g| u32::try_from(g).map_err(|_| SetUpError::InvalidFsGroup(g)))
        .transpose()
}

/// Whether setting up the volume uses the node's allocatable resources.
fn needs_allocatable(v: &Volume) -> bool {
    v.empty_dir
        .as_ref()
        .is_some_and(|e| e.medium.as_deref() == Some("Memory"))
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

/// What every volume's set-up shares.
struct SetUpContext<'a> {
    pod: &'a Pod,
    namespace: &'a str,
    pod_dir: &'a Path,
    allocatable: &'a BTreeMap<String, Quantity>,
    source: &'a dyn ObjectSource,
}

/// Sets up one volume by kind.
async fn set_up(ctx: &SetUpContext<'_>, volume: &Volume) -> Result<Prepared, SetUpError> {
    let SetUpContext {
        pod,
        namespace,
        pod_dir,
        allocatable,
        source,
    } = *ctx;
    // Memory-backed volumes are sized as upstream's: the pod's memory limit or the node's
    // allocatable memory, or the emptyDir's sizeLimit when smaller.
    let memory_size = |limit: Option<&Quantity>| empty_dir::memory_size(pod, limit, allocatable);
    let dir = |plugin: &str| pod_dir.join(VOLUMES_DIR).join(plugin).join(&volume.name);
    let writable = |path: PathBuf| Prepared {
        path,
        read_only: false,
    };
    let fs_group = fs_group(pod)?;
    // The volume's own directory gets the fsGroup as upstream's wrapping emptyDir does.
    let own_root = |path: &Path, read_only: bool| -> Result<(), SetUpError> {
        let Some(gid) = fs_group else {
            return Ok(());
        };
        let what = || format!("set fsGroup on {}", path.display());
        if !ownership::root_matches(path, gid).map_err(|e| SetUpError::io(what(), e))? {
            ownership::apply(path, gid, read_only).map_err(|e| SetUpError::io(what(), e))?;
        }
        Ok(())
    };
    // configMap, secret, downwardAPI and projected volumes are always mounted read-only.
    let files = |path: PathBuf, payload: &Payload| -> Result<Prepared, SetUpError> {
        own_root(&path, true)?;
        atomic_writer::write(&path, payload, fs_group)?;
        Ok(Prepared {
            path,
            read_only: true,
        })
    };
    if let Some(src) = &volume.empty_dir {
        let path = dir(EMPTY_DIR);
        empty_dir::set_up(&path, src, memory_size(src.size_limit.as_ref())?)?;
        own_root(&path, false)?;
        Ok(writable(path))
    } else if let Some(src) = &volume.host_path {
        Ok(writable(host_path::check(&src.path, src.type_.as_deref())?))
    } else if let Some(src) = &volume.config_map {
        let r = KeyedRef {
            kind: Keyed::ConfigMap,
            name: &src.name,
            items: src.items.as_deref(),
            optional: src.optional.unwrap_or(false),
            default_mode: projection::mode_bits(src.default_mode, DEFAULT_MODE),
        };
        let payload = projection::keyed_payload(namespace, &r, source).await?;
        let path = dir(CONFIG_MAP);
        empty_dir::create_dir(&path)?;
        files(path, &payload)
    } else if let Some(src) = &volume.secret {
        let r = KeyedRef {
            kind: Keyed::Secret,
            name: src.secret_name.as_deref().unwrap_or_default(),
            items: src.items.as_deref(),
            optional: src.optional.unwrap_or(false),
            default_mode: projection::mode_bits(src.default_mode, DEFAULT_MODE),
        };
        let payload = projection::keyed_payload(namespace, &r, source).await?;
        let path = dir(SECRET);
        empty_dir::tmpfs(&path, memory_size(None)?)?;
        files(path, &payload)
    } else if let Some(src) = &volume.downward_api {
        let payload = projection::downward_payload(
            pod,
            src.items.as_deref().unwrap_or_default(),
            projection::mode_bits(src.default_mode, DEFAULT_MODE),
            allocatable,
        )?;
        let path = dir(DOWNWARD_API);
        empty_dir::create_dir(&path)?;
        files(path, &payload)
    } else if let Some(src) = &volume.projected {
        let payload = projection::projected_payload(
            pod,
            namespace,
            src.sources.as_deref().unwrap_or_default(),
            projection::mode_bits(src.default_mode, DEFAULT_MODE),
            allocatable,
            source,
        )
        .await?;
        let path = dir(PROJECTED);
        empty_dir::tmpfs(&path, memory_size(None)?)?;
        files(path, &payload)
    } else if let Some(src) = &volume.persistent_volume_claim {
        let claim = claim::ClaimRef {
            name: &src.claim_name,
            ephemeral: false,
        };
        Ok(Prepared {
            path: claim::resolve(pod, namespace, claim, source).await?,
            read_only: src.read_only.unwrap_or(false),
        })
    } else if volume.ephemeral.is_some() {
        // The ephemeral volume controller names the claim `<pod>-<volume>`.
        let name = format!(
            "{}-{}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            volume.name
        );
        let claim = claim::ClaimRef {
            name: &name,
            ephemeral: true,
        };
        Ok(writable(
            claim::resolve(pod, namespace, claim, source).await?,
        ))
    } else {
        Err(SetUpError::Unsupported(format!(
            "{} volumes are not supported on this node",
            volume_kind(volume)
        )))
    }
}

/// The volume's source field name (`nfs`, `csi`, ...), for the unsupported-kind error.
fn volume_kind(volume: &Volume) -> String {
    serde_json::to_value(volume)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| o.keys().find(|k| k.as_str() != "name").cloned())
        })
        .unwrap_or_else(|| "sourceless".to_string())
}

#[cfg(test)]
mod tests;
