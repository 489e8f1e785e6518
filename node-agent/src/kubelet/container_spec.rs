//! One container of a pod → the runtime's [`ContainerConfig`]: command and args with `$(VAR)`
//! expansion, security context (pod-level defaults under container-level settings), the
//! sandbox's namespaces (or the host's for hostNetwork/hostIPC), the files the kubelet
//! manages (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, the termination log) and
//! volumes.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use super::env::expand;
use super::sandbox::Sandbox;
use crate::runtime::spec::{
    BindMount, ContainerConfig, ImageDefaults, NamespaceMode, Namespaces, Resources, Seccomp,
    UserSpec,
};

/// Why a container cannot be configured: the container waits with `CreateContainerConfigError`
/// and this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The files the kubelet writes for a pod and mounts into every container.
#[derive(Clone, Debug)]
pub struct PodFiles {
    /// `/etc/hosts`.
    pub hosts: PathBuf,
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// `/etc/hostname`.
    pub hostname: PathBuf,
}

/// Everything beyond the container's own spec that goes into its configuration.
pub struct Inputs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub container: &'a Container,
    /// What the image says (for runAsNonRoot checks).
    pub image: &'a ImageDefaults,
    /// The resolved environment.
    pub env: Vec<(String, String)>,
    /// Volume mounts.
    pub volumes: Vec<BindMount>,
    /// The pod's namespaces.
    pub sandbox: &'a Sandbox,
    /// The kubelet-managed files.
    pub files: &'a PodFiles,
    /// The file mounted at `terminationMessagePath`.
    pub termination_log: &'a Path,
    /// The container's cgroup.
    pub cgroup_path: String,
    /// Its limits.
    pub resources: Resources,
    /// The PID namespace to join (`shareProcessNamespace`), else a new one.
    pub pid_namespace: Option<PathBuf>,
    /// Where `Localhost` seccomp profiles live (`<root>/seccomp`, as upstream's
    /// `/var/lib/kubelet/seccomp`).
    pub seccomp_dir: &'a Path,
}

/// The security settings that apply: the container's, else the pod's.
struct Security<'a> {
    pod: Option<&'a PodSecurityContext>,
    ctr: Option<&'a SecurityContext>,
}

impl Security<'_> {
    fn run_as_user(&self) -> Option<i64> {
        self.ctr
            .and_then(|c| c.run_as_user)
            .or_else(|| self.pod.and_then(|p| p.run_as_user))
    }
    fn run_as_group(&self) -> Option<i64> {
        self.ctr
            .and_then(|c| c.run_as_group)
            .or_else(|| self.pod.and_then(|p| p.run_as_group))
    }
    fn run_as_non_root(&self) -> bool {
        self.ctr
            .and_then(|c| c.run_as_non_root)
            .or_else(|| self.pod.and_then(|p| p.run_as_non_root))
            .unwrap_or(false)
    }
}

/// The container's `seccompProfile`, else the pod's; `Unconfined` when neither sets one.
fn seccomp(sec: &Security<'_>, dir: &Path) -> Result<Seccomp, ConfigError> {
    let profile = sec
        .ctr
        .and_then(|c| c.seccomp_profile.as_ref())
        .or_else(|| sec.pod.and_then(|p| p.seccomp_profile.as_ref()));
    let Some(profile) = profile else {
        return Ok(Seccomp::Unconfined);
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        "Localhost" => {
            let rel = profile.localhost_profile.as_deref().unwrap_or_default();
            if rel.is_empty() || Path::new(rel).is_absolute() || rel.split('/').any(|c| c == "..") {
                return Err(ConfigError(format!(
                    "localhostProfile {rel:?} must be a relative path below {}",
                    dir.display()
                )));
            }
            let loaded = crate::runtime::seccomp::load(&dir.join(rel))
                .map_err(|e| ConfigError(e.to_string()))?;
            Ok(Seccomp::Profile(Box::new(loaded)))
        }
        _ => Ok(Seccomp::Unconfined),
    }
}

fn id(v: i64, what: &str) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|_| ConfigError(format!("{what} {v} is out of range")))
}

/// Builds the container's configuration.
pub fn build(i: Inputs<'_>) -> Result<ContainerConfig, ConfigError> {
    let c = i.container;
    let spec = i.pod.spec.as_ref();
    let sec = Security {
        pod: spec.and_then(|s| s.security_context.as_ref()),
        ctr: c.security_context.as_ref(),
    };
    let pod_name = i.pod.metadata.name.as_deref().unwrap_or_default();
    let mut user = UserSpec {
        uid: sec.run_as_user().map(|u| id(u, "runAsUser")).transpose()?,
        gid: sec
            .run_as_group()
            .map(|g| id(g, "runAsGroup"))
            .transpose()?,
        additional_gids: Vec::new(),
    };
    if let Some(p) = sec.pod {
        for g in p.supplemental_groups.iter().flatten() {
            user.additional_gids.push(id(*g, "supplementalGroups")?);
        }
        if let Some(g) = p.fs_group {
            user.additional_gids.push(id(g, "fsGroup")?);
        }
    }
    if sec.run_as_non_root() {
        match user.uid {
            Some(0) => {
                return Err(ConfigError(format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod_name}\", container: {})",
                c.name
            )))
            }
            Some(_) => {}
            None => {
                let image_user = i.image.user.as_deref().unwrap_or("").trim();
                let uid = image_user.split(':').next().unwrap_or("");
                if uid.is_empty() || uid == "0" || uid == "root" {
                    return Err(ConfigError(format!(
                        "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", container: {})",
                        c.name
                    )));
                }
                if uid.parse::<u32>().is_err() {
                    return Err(ConfigError(format!(
                        "container has runAsNonRoot and image has non-numeric user ({uid}), cannot verify user is non-root (pod: \"{pod_name}\", container: {})",
                        c.name
                    )));
                }
            }
        }
    }
    let caps = sec.ctr.and_then(|s| s.capabilities.as_ref());
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    // The agent's own namespaces, as seen by the shim it spawns.
    let host = |kind: &str| NamespaceMode::Join(PathBuf::from(format!("/proc/self/ns/{kind}")));
    let namespaces = Namespaces {
        network: if host_network {
            host("net")
        } else {
            NamespaceMode::Join(i.sandbox.net())
        },
        ipc: if host_ipc {
            host("ipc")
        } else {
            NamespaceMode::Join(i.sandbox.ipc())
        },
        uts: if host_network {
            host("uts")
        } else {
            NamespaceMode::Join(i.sandbox.uts())
        },
        pid: if spec.and_then(|s| s.host_pid).unwrap_or(false) {
            host("pid")
        } else {
            match &i.pid_namespace {
                Some(p) => NamespaceMode::Join(p.clone()),
                None => NamespaceMode::New,
            }
        },
    };
    let mut mounts = i.volumes;
    let claimed =
        |p: &str, mounts: &[BindMount]| mounts.iter().any(|m| m.container_path == Path::new(p));
    for (file, target) in [
        (&i.files.hosts, "/etc/hosts"),
        (&i.files.resolv_conf, "/etc/resolv.conf"),
        (&i.files.hostname, "/etc/hostname"),
    ] {
        if !claimed(target, &mounts) {
            mounts.push(BindMount {
                host_path: file.clone(),
                container_path: target.into(),
                read_only: false,
            });
        }
    }
    let termination_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    if termination_path.starts_with('/') && !claimed(&termination_path, &mounts) {
        mounts.push(BindMount {
            host_path: i.termination_log.to_path_buf(),
            container_path: termination_path.into(),
            read_only: false,
        });
    }
    Ok(ContainerConfig {
        command: c
            .command
            .iter()
            .flatten()
            .map(|a| expand(a, &i.env))
            .collect(),
        args: c.args.iter().flatten().map(|a| expand(a, &i.env)).collect(),
        env: i.env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        tty: c.tty.unwrap_or(false),
        hostname: None,
        read_only_rootfs: sec
            .ctr
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        privileged: sec.ctr.and_then(|s| s.privileged).unwrap_or(false),
        seccomp: seccomp(&sec, i.seccomp_dir)?,
        allow_privilege_escalation: sec.ctr.and_then(|s| s.allow_privilege_escalation),
        mounts,
        namespaces,
        cgroup_path: i.cgroup_path,
        resources: i.resources,
    })
}
