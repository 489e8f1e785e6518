//! The container runtime core: OCI specs, overlay root filesystems, and containers run by a
//! per-container shim on youki's libcontainer.
//!
//! | module | job |
//! |---|---|
//! | [`spec`] | image defaults + container description → OCI runtime spec |
//! | [`rootfs`] | overlayfs mount of the image layers with a per-container upper dir |
//! | [`seccomp`] | the runtime default seccomp profile and Localhost profile files |
//! | [`shim`] | `skiff shim`: creates, starts and supervises one container, logs, exit record |
//! | [`container`] | the agent's API: create/start, state, kill, wait, delete, list, exec |
//! | [`exec`] | `skiff shim exec`: a command run inside a running container, pipes or a pty |
//! | [`cri_log`] | CRI-format log lines and size-based rotation |
//! | [`exit`] | the exit record the shim writes and the agent reads |
//! | [`cgroup`] | cgroup v1/v2 layout, OOM-kill counter, leftover removal |
//! | [`cgroup_driver`] | limits and CPUs on agent-owned cgroups, one trait over v1 and v2 |
//! | [`layout`] | where everything lives on disk |
//! | [`trash`] | background removal of deleted containers' writable layers |

pub mod cgroup;
pub mod cgroup_driver;
pub mod container;
pub mod cri_log;
pub mod exec;
pub mod exit;
pub mod layout;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod spec;
mod sys;
pub mod trash;

pub use container::{
    ContainerHandle, ContainerState, CreateRequest, Runtime, RuntimeError, Status,
};
pub use cri_log::LogRotation;
pub use exec::{ExecProcess, ExecRequest};
pub use exit::{ExitReason, ExitStatus};
pub use layout::RuntimeDirs;
/// The OCI spec types libcontainer uses, re-exported so callers link only one version.
pub use libcontainer::oci_spec;
pub use spec::{ContainerConfig, ImageDefaults};
