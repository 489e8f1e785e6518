//! Where the runtime keeps things on disk, in one place so the agent and the shim agree:
//!
//! ```text
//! <run>/state/<id>/            libcontainer's state (state.json, youki_config.json, notify socket)
//! <run>/bundles/<id>/          the OCI bundle and the shim's files:
//!     config.json              runtime spec
//!     rootfs/                  overlay mount point
//!     shim.json                what the shim needs (log path, rotation, cgroup)
//!     shim.pid                 the shim's pid, written before it reports ready
//!     shim.log                 the shim's own log, libcontainer's errors included
//!     exit.json                how the container ended (written once, atomically)
//! <data>/containers/<id>/      upper/ and work/ of the overlay (on disk, not tmpfs)
//! <data>/trash/<id>.<n>/       a deleted container's upper/work, being removed in the background
//! ```
//!
//! `<run>` is normally `/run/skiff/runtime` (gone at reboot, as the containers are) and `<data>`
//! `/var/lib/skiff/runtime`.

use std::path::{Path, PathBuf};

/// The runtime's root directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeDirs {
    /// libcontainer's state root.
    pub state: PathBuf,
    /// One bundle directory per container.
    pub bundles: PathBuf,
    /// One directory per container for the overlay's upper and work dirs.
    pub rw: PathBuf,
    /// Deleted containers' upper and work dirs, renamed here and removed in the background
    /// (same filesystem as `rw`).
    pub trash: PathBuf,
}

impl RuntimeDirs {
    /// The standard layout under a run directory (tmpfs is fine) and a data directory (must be
    /// a real filesystem that supports overlay upper dirs).
    pub fn new(run_root: &Path, data_root: &Path) -> Self {
        RuntimeDirs {
            state: run_root.join("state"),
            bundles: run_root.join("bundles"),
            rw: data_root.join("containers"),
            trash: data_root.join("trash"),
        }
    }

    /// The paths of one container.
    pub fn container(&self, id: &str) -> ContainerPaths {
        ContainerPaths {
            bundle: BundleFiles::new(self.bundles.join(id)),
            state_dir: self.state.join(id),
            rw_dir: self.rw.join(id),
        }
    }
}

/// The files in a bundle directory; the shim knows only this directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFiles {
    /// The bundle directory.
    pub dir: PathBuf,
}

impl BundleFiles {
    /// Wraps a bundle directory.
    pub fn new(dir: PathBuf) -> Self {
        BundleFiles { dir }
    }
    /// `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// The overlay mount point.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    /// The shim's configuration.
    pub fn shim_config(&self) -> PathBuf {
        self.dir.join("shim.json")
    }
    /// The shim's pid.
    pub fn shim_pid(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }
    /// The shim's own log.
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
    /// The exit record.
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
}

/// Everything one container has on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPaths {
    /// The bundle and shim files.
    pub bundle: BundleFiles,
    /// libcontainer's state directory for it.
    pub state_dir: PathBuf,
    /// Holds `upper/` and `work/`.
    pub rw_dir: PathBuf,
}

impl ContainerPaths {
    /// The overlay's upper (writable) directory.
    pub fn upper(&self) -> PathBuf {
        self.rw_dir.join("upper")
    }
    /// The overlay's work directory.
    pub fn work(&self) -> PathBuf {
        self.rw_dir.join("work")
    }
}

/// Container ids become path components and cgroup names: 1–128 characters of
/// `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("pod1_ctr-2.x"));
        for bad in ["", ".", "..", "-x", "a/b", "a b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        let d = RuntimeDirs::new(
            Path::new("/run/skiff/runtime"),
            Path::new("/var/lib/skiff/runtime"),
        );
        let c = d.container("c1");
        assert_eq!(
            c.bundle.config(),
            PathBuf::from("/run/skiff/runtime/bundles/c1/config.json")
        );
        assert_eq!(c.state_dir, PathBuf::from("/run/skiff/runtime/state/c1"));
        assert_eq!(
            c.upper(),
            PathBuf::from("/var/lib/skiff/runtime/containers/c1/upper")
        );
    }
}
