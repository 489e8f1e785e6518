//! A container's root filesystem: an overlay of the image's read-only layer directories with a
//! per-container upper (writable) and work directory; torn down completely on delete.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Why the root filesystem could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// No layers were given.
    #[error("an overlay needs at least one layer")]
    NoLayers,
    /// A path cannot be expressed in overlayfs mount options.
    #[error("path {0:?} contains a ',' or a newline, which overlayfs options cannot express")]
    BadPath(PathBuf),
    /// The options string does not fit in the page the kernel copies mount data into.
    #[error(
        "overlay mount options are {len} bytes for {layers} layers, over the {limit}-byte page \
         limit; use shorter layer paths or fewer layers"
    )]
    OptionsTooLong {
        /// Length of the options string.
        len: usize,
        /// Number of lower layers.
        layers: usize,
        /// The limit (page size minus the terminating NUL).
        limit: usize,
    },
    /// A directory could not be created or removed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// mount(2) or umount(2) failed.
    #[error("{op} {path:?}: {source}")]
    Mount {
        /// What was being done.
        op: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The error.
        source: nix::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { op, path, source }
}

/// The directories of one container's overlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    /// Read-only image layers, bottom (base) first.
    pub layers: Vec<PathBuf>,
    /// The container's writable layer.
    pub upper: PathBuf,
    /// overlayfs's scratch directory; must be on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Where the merged tree is mounted (the bundle's `rootfs`).
    pub target: PathBuf,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

/// Escapes a path for an overlay option: `\` and `:` are backslash-escaped (overlayfs splits
/// lowerdir on unescaped colons); commas cannot be escaped at all.
fn escape(path: &Path) -> Result<String, RootfsError> {
    let s = path.to_string_lossy();
    if s.contains(',') || s.contains('\n') || s != path.as_os_str().to_str().unwrap_or("") {
        return Err(RootfsError::BadPath(path.to_path_buf()));
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

impl Overlay {
    /// The overlayfs options string: `lowerdir=top:...:bottom,upperdir=..,workdir=..`, checked
    /// against the one-page limit of mount data.
    pub fn options(&self) -> Result<String, RootfsError> {
        if self.layers.is_empty() {
            return Err(RootfsError::NoLayers);
        }
        let lower = self
            .layers
            .iter()
            .rev()
            .map(|l| escape(l))
            .collect::<Result<Vec<_>, _>>()?
            .join(":");
        // volatile: no syncs of the upper filesystem (on umount either). A container's
        // writable layer never outlives a reboot, so there is nothing to keep consistent.
        let opts = format!(
            "lowerdir={lower},upperdir={},workdir={},volatile",
            escape(&self.upper)?,
            escape(&self.work)?
        );
        let limit = page_size() - 1;
        if opts.len() > limit {
            return Err(RootfsError::OptionsTooLong {
                len: opts.len(),
                layers: self.layers.len(),
                limit,
            });
        }
        Ok(opts)
    }

    /// Creates upper, work and target directories and mounts the overlay on the target.
    pub fn mount(&self) -> Result<(), RootfsError> {
        let opts = self.options()?;
        for dir in [&self.upper, &self.work, &self.target] {
            std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        tracing::debug!(target = ?self.target, %opts, "mounting overlay");
        mount(
            Some("overlay"),
            &self.target,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|source| RootfsError::Mount {
            op: "mount overlay on",
            path: self.target.clone(),
            source,
        })
    }
}

/// Unmounts whatever is mounted at `target` (lazily if it is busy); a path that is not a mount
/// point, or does not exist, is fine.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    loop {
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue, // stacked mounts: take them all off
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                return umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(
                    |source| RootfsError::Mount {
                        op: "lazy unmount",
                        path: target.to_path_buf(),
                        source,
                    },
                )
            }
            Err(source) => {
                return Err(RootfsError::Mount {
                    op: "unmount",
                    path: target.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Removes a directory tree; one that is already gone is fine.
pub fn remove_dir(dir: &Path) -> Result<(), RootfsError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", dir)(e)),
    }
}

/// True when `path` is a mount point in this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(&*want))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push((v & 0xff) as u8);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(layers: &[&str]) -> Overlay {
        Overlay {
            layers: layers.iter().map(PathBuf::from).collect(),
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            target: "/b/rootfs".into(),
        }
    }

    #[test]
    fn lowerdir_is_top_first() {
        assert_eq!(
            ov(&["/l/base", "/l/mid", "/l/top"]).options().unwrap(),
            "lowerdir=/l/top:/l/mid:/l/base,upperdir=/c/upper,workdir=/c/work,volatile"
        );
    }

    #[test]
    fn escapes_and_rejects() {
        assert_eq!(
            ov(&["/l/a:b"]).options().unwrap(),
            "lowerdir=/l/a\\:b,upperdir=/c/upper,workdir=/c/work,volatile"
        );
        assert!(matches!(
            ov(&["/l/a,b"]).options(),
            Err(RootfsError::BadPath(_))
        ));
        assert!(matches!(ov(&[]).options(), Err(RootfsError::NoLayers)));
    }

    #[test]
    fn options_must_fit_a_page() {
        let long: Vec<String> = (0..200)
            .map(|i| format!("/var/lib/skiff/layers/sha256/{i:064}"))
            .collect();
        let refs: Vec<&str> = long.iter().map(|s| s.as_str()).collect();
        match ov(&refs).options() {
            Err(RootfsError::OptionsTooLong { layers: 200, .. }) => {}
            other => panic!("expected OptionsTooLong, got {other:?}"),
        }
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }
}
