//! emptyDir: a directory that lives as long as the pod, on the node's disk or, with
//! `medium: Memory`, on a tmpfs limited to `sizeLimit`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;

use super::error::SetUpError;
use super::mount;
use crate::kubelet::downward;

/// Sets up the emptyDir at `dir`, keeping what an earlier setup (before an agent restart) put
/// there.
pub(crate) fn set_up(dir: &Path, source: &EmptyDirVolumeSource) -> Result<(), SetUpError> {
    match source.medium.as_deref().unwrap_or_default() {
        "" => {
            create_dir(dir)?;
            // World-writable as upstream's, so containers running as any user can use it.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o777))
                .map_err(|e| SetUpError::io(format!("chmod {}", dir.display()), e))
        }
        "Memory" => {
            let size = match &source.size_limit {
                Some(q) => Some(downward::quantity_bytes(q)?).filter(|s| *s > 0),
                None => None,
            };
            tmpfs(dir, size)
        }
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
