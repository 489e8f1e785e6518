//! subPath and subPathExpr: a part of a volume mounted instead of its root. As upstream, the
//! sub-path is resolved inside the volume, opened component by component without following
//! symlinks, and that open file is bind-mounted onto a per-container target, so a container
//! that swaps a directory for a symlink in a shared volume cannot redirect the mount to the host.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::error::VolumeError;
use super::mount;
use crate::kubelet::downward;

/// Where a sub-path's bind mount for one container's mount lives:
/// `<pod_dir>/volume-subpaths/<volume>/<container>/<index>`, as upstream.
pub(crate) const SUBPATHS_DIR: &str = "volume-subpaths";

/// Expands `$(VAR)` in a subPathExpr from the container's env (plain values and fieldRefs); a
/// variable without a value is an error, as upstream's.
pub(crate) fn expand(expr: &str, pod: &Pod, container: &Container) -> Result<String, VolumeError> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container.env.iter().flatten() {
        let value = if let Some(v) = &var.value {
            Some(expand_with(v, &mut |k| env.get(k).cloned()).0)
        } else if let Some(f) = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) {
            downward::field_value(pod, &f.field_path).ok()
        } else {
            None
        };
        if let Some(v) = value {
            env.insert(var.name.clone(), v);
        }
    }
    let (out, missing) = expand_with(expr, &mut |k| env.get(k).cloned().filter(|v| !v.is_empty()));
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(VolumeError::SubPath(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, unknown variables are kept as written
/// and reported.
fn expand_with(
    s: &str,
    lookup: &mut dyn FnMut(&str) -> Option<String>,
) -> (String, std::collections::BTreeSet<String>) {
    let mut out = String::with_capacity(s.len());
    let mut missing = std::collections::BTreeSet::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            missing.insert(name.to_string());
                            out.push_str(&format!("$({name})"));
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    (out, missing)
}

/// Upstream's checks on a subPath: relative, without `..`.
pub(crate) fn validate(sub: &str) -> Result<(), VolumeError> {
    if Path::new(sub).is_absolute() {
        return Err(VolumeError::SubPath(format!(
            "error SubPath `{sub}` must not be an absolute path"
        )));
    }
    if Path::new(sub)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(VolumeError::SubPath(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        )));
    }
    Ok(())
}

/// What one volumeMount with a sub-path needs.
pub(crate) struct SubPathMount<'a> {
    /// The volume's directory on the host.
    pub volume_root: &'a Path,
    /// The validated sub-path.
    pub sub: &'a str,
    /// The bind target (`<pod_dir>/volume-subpaths/<volume>/<container>/<index>`).
    pub target: PathBuf,
    /// For error texts: the volumeMount's and the container's names.
    pub mount_name: &'a str,
    /// The container's name.
    pub container: &'a str,
}

/// Creates the sub-path if missing (as a directory with the volume root's mode), checks it stays
/// inside the volume, and bind-mounts it onto the target; returns the target. A target already
/// bound to the same file (the container restarted) is reused; one bound to another is replaced.
pub(crate) fn prepare(m: &SubPathMount<'_>) -> Result<PathBuf, VolumeError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        // Upstream keeps host details out of the pod's status; the log has them.
        tracing::warn!(
            volume_mount = m.mount_name,
            container = m.container,
            "{what}: {e}"
        );
        VolumeError::SubPath(format!(
            "failed to prepare subPath for volumeMount \"{}\" of container \"{}\"",
            m.mount_name, m.container
        ))
    };
    let base = fs::canonicalize(m.volume_root).map_err(|e| failed("volume root", &e))?;
    let full = base.join(m.sub);
    if fs::symlink_metadata(&full).is_err() {
        make_dirs(&base, m.sub).map_err(|e| {
            tracing::warn!(volume_mount = m.mount_name, "create subPath: {e}");
            VolumeError::SubPath(format!(
                "failed to create subPath directory for volumeMount \"{}\" of container \"{}\"",
                m.mount_name, m.container
            ))
        })?;
    }
    let resolved = fs::canonicalize(&full).map_err(|e| failed("resolve", &e))?;
    let Ok(rel) = resolved.strip_prefix(&base) else {
        return Err(VolumeError::SubPath(format!(
            "subpath \"{}\" not within volume path \"{}\"",
            resolved.display(),
            base.display()
        )));
    };
    let file = safe_open(&base, rel).map_err(|e| failed("open", &e))?;
    let meta = file.metadata().map_err(|e| failed("stat", &e))?;
    if mount::is_mount_point(&m.target).map_err(|e| failed("mountinfo", &e))? {
        // Bound before (the container restarted): keep it if it is the same file, as upstream.
        let bound = fs::metadata(&m.target).map_err(|e| failed("stat", &e))?;
        if (bound.dev(), bound.ino()) == (meta.dev(), meta.ino()) {
            return Ok(m.target.clone());
        }
        mount::unmount(&m.target).map_err(|e| failed("unmount stale", &e))?;
    }
    let is_dir = meta.is_dir();
    if let Some(parent) = m.target.parent() {
        fs::create_dir_all(parent).map_err(|e| failed("target", &e))?;
    }
    let made = if is_dir {
        fs::create_dir(&m.target)
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&m.target)
            .map(drop)
    };
    match made {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed("target", &e)),
    }
    let source = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    mount::bind(&source, &m.target).map_err(|e| failed("bind mount", &e))?;
    Ok(m.target.clone())
}

/// Opens `base/rel` one component at a time, refusing symlinks, so what is opened is inside
/// `base` even if the tree changes meanwhile (upstream's `doSafeOpen`).
fn safe_open(base: &Path, rel: &Path) -> std::io::Result<File> {
    let mut cur = open_path(base)?;
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            return Err(std::io::Error::other(format!(
                "unexpected path component in {rel:?}"
            )));
        };
        let next = open_path(&fd_path(&cur).join(name))?;
        if next.metadata()?.file_type().is_symlink() {
            return Err(std::io::Error::other(format!(
                "{} is a symlink",
                base.join(rel).display()
            )));
        }
        cur = next;
    }
    Ok(cur)
}

/// Creates the missing directories of `base/sub` (upstream's `SafeMakeDir`): the existing part
/// must resolve inside `base`, and new directories are made under opened, checked parents.
fn make_dirs(base: &Path, sub: &str) -> std::io::Result<()> {
    let perm = fs::metadata(base)?.permissions().mode() & 0o7777;
    let comps: Vec<_> = Path::new(sub)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    // The longest prefix that exists.
    let mut existing = 0;
    while existing < comps.len() {
        let p: PathBuf = comps[..=existing].iter().collect();
        if fs::symlink_metadata(base.join(&p)).is_err() {
            break;
        }
        existing += 1;
    }
    let prefix: PathBuf = comps[..existing].iter().collect();
    let resolved = fs::canonicalize(base.join(&prefix))?;
    let rel = resolved.strip_prefix(base).map_err(|_| {
        std::io::Error::other(format!("{} is outside the volume", resolved.display()))
    })?;
    let mut parent = safe_open(base, rel)?;
    for comp in &comps[existing..] {
        let path = fd_path(&parent).join(comp.as_os_str());
        match fs::DirBuilder::new().mode(perm).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let next = open_path(&path)?;
        if !next.metadata()?.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                comp.as_os_str().to_string_lossy()
            )));
        }
        parent = next;
    }
    Ok(())
}

/// An `O_PATH` handle that does not follow a final symlink.
fn open_path(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The path of an open handle, through which names are resolved relative to it, as `openat`.
fn fd_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let mut env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        let (out, missing) = expand_with("$(A)/$$(A)/$(B)/$A/$(", &mut |k| env.get(k).cloned());
        assert_eq!(out, "x/$(A)/$(B)/$A/$(");
        assert_eq!(
            missing.into_iter().collect::<Vec<_>>(),
            vec!["B".to_string()]
        );
        env.clear();
    }

    #[test]
    fn absolute_and_backstep_sub_paths_are_refused() {
        assert_eq!(
            validate("/etc").unwrap_err().to_string(),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            validate("a/../../b").unwrap_err().to_string(),
            "unable to provision SubPath `a/../../b`: must not contain '..'"
        );
        assert!(validate("a/b").is_ok());
    }
}
