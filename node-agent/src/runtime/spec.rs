//! The OCI runtime spec (`config.json`) for one container, built from the image's defaults and
//! the pod's container description with Kubernetes semantics and runc's defaults.
//!
//! [`build`] is a pure function: everything it needs comes in through its arguments, so the
//! same inputs always give the same bundle, and unit tests can compare fields.

use std::collections::HashSet;
use std::path::PathBuf;

use libcontainer::oci_spec::runtime::{
    Capabilities, Capability, LinuxBlockIoBuilder, LinuxBuilder, LinuxCapabilitiesBuilder,
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use libcontainer::oci_spec::OciSpecError;

/// What the image's config says about how to run it; the image store fills this from the image
/// config (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// The image's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The image's `Cmd`.
    pub cmd: Vec<String>,
    /// The image's `Env`, as `KEY=value` strings.
    pub env: Vec<String>,
    /// The image's `WorkingDir`; empty or `None` means `/`.
    pub working_dir: Option<String>,
    /// The image's `User`: `uid`, `uid:gid` (numeric; names are resolved by the image store).
    pub user: Option<String>,
}

/// Who the container's process runs as (Kubernetes `runAsUser`, `runAsGroup`,
/// `supplementalGroups`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserSpec {
    /// `runAsUser`; `None` keeps the image's user.
    pub uid: Option<u32>,
    /// `runAsGroup`; `None` keeps the image's group (or 0).
    pub gid: Option<u32>,
    /// `supplementalGroups`.
    pub additional_gids: Vec<u32>,
}

/// A host path bind-mounted into the container (a volume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host.
    pub host_path: PathBuf,
    /// Absolute path inside the container.
    pub container_path: PathBuf,
    /// Mount it read-only.
    pub read_only: bool,
}

/// How a namespace is obtained: a new one per container, or joined from a path (the pod
/// sandbox's namespaces, such as `/run/skiff/netns/<pod>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    /// A new namespace for this container.
    #[default]
    New,
    /// Join the namespace bound at this path.
    Join(PathBuf),
}

/// The namespaces a pod may share between its containers; the mount namespace is always new.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// The network namespace.
    pub network: NamespaceMode,
    /// The IPC namespace.
    pub ipc: NamespaceMode,
    /// The UTS namespace; the hostname is only set when it is new.
    pub uts: NamespaceMode,
    /// The PID namespace: new (the container's process is PID 1) or another container's
    /// (`shareProcessNamespace`).
    pub pid: NamespaceMode,
}

/// Bandwidth and IOPS limits on one block device, by `major:minor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkioThrottle {
    /// Device major number.
    pub major: i64,
    /// Device minor number.
    pub minor: i64,
    /// Bytes per second read.
    pub read_bps: Option<u64>,
    /// Bytes per second written.
    pub write_bps: Option<u64>,
    /// Read operations per second.
    pub read_iops: Option<u64>,
    /// Write operations per second.
    pub write_iops: Option<u64>,
}

/// Resource limits, in the units the OCI spec uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Relative CPU weight (`cpu.shares`).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// CPUs the container may run on (`0-1`, `3`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    pub cpuset_mems: Option<String>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Memory plus swap limit in bytes; defaults to the memory limit (no swap), as the kubelet
    /// does.
    pub memory_swap: Option<i64>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
    /// Per-device block I/O throttles.
    pub blkio: Vec<BlkioThrottle>,
}

/// The CFS period the kubelet and docker use, in microseconds.
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

impl Resources {
    /// Sets quota and period for a CPU count (`--cpus 0.2` → 20000/100000), as `docker run
    /// --cpus` and the kubelet's CPU limit do.
    pub fn with_cpus(mut self, cpus: f64) -> Self {
        self.cpu_period = Some(DEFAULT_CPU_PERIOD);
        // Truncation is intended; the kernel's minimum quota is 1000 µs.
        self.cpu_quota = Some(((cpus * DEFAULT_CPU_PERIOD as f64) as i64).max(1000));
        self
    }

    /// CPU shares for a Kubernetes CPU request in millicores (minimum 2), as the kubelet
    /// computes them.
    pub fn shares_from_millicpu(milli: u64) -> u64 {
        (milli * 1024 / 1000).max(2)
    }
}

/// The pod's description of one container: everything that varies per container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Kubernetes `command`: replaces the image's Entrypoint and drops its Cmd.
    pub command: Vec<String>,
    /// Kubernetes `args`: replaces the image's Cmd.
    pub args: Vec<String>,
    /// Environment, merged over the image's (same key: the pod wins).
    pub env: Vec<(String, String)>,
    /// `workingDir`; `None` keeps the image's.
    pub working_dir: Option<String>,
    /// User and groups.
    pub user: UserSpec,
    /// Allocate a terminal: the container's stdio is a pty whose output the shim logs.
    pub tty: bool,
    /// Hostname, set when the UTS namespace is new.
    pub hostname: Option<String>,
    /// `readOnlyRootFilesystem`.
    pub read_only_rootfs: bool,
    /// Capabilities added to runc's default set (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub capabilities_add: Vec<String>,
    /// Capabilities dropped from it (`ALL` drops every one, then adds apply).
    pub capabilities_drop: Vec<String>,
    /// All capabilities, no masked or read-only paths, writable /sys, every device allowed,
    /// no seccomp filter.
    pub privileged: bool,
    /// The seccomp filter (Kubernetes `seccompProfile`).
    pub seccomp: Seccomp,
    /// `allowPrivilegeEscalation`; `Some(false)` sets no_new_privs.
    pub allow_privilege_escalation: Option<bool>,
    /// Volumes.
    pub mounts: Vec<BindMount>,
    /// Shared or new network, IPC and UTS namespaces.
    pub namespaces: Namespaces,
    /// Absolute cgroup path, such as `/skiff/pod<uid>/<ctr>`.
    pub cgroup_path: String,
    /// Resource limits.
    pub resources: Resources,
}

/// Kubernetes' seccomp profile types, as the runtime applies them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// No filter (Kubernetes' default).
    #[default]
    Unconfined,
    /// The runtime's default profile (see [`super::seccomp`]), fitted to the capabilities.
    RuntimeDefault,
    /// A profile read from the node (`Localhost`).
    Profile(Box<libcontainer::oci_spec::runtime::LinuxSeccomp>),
}

/// Why a spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the image nor the pod names a program to run.
    #[error(
        "no command: the image has no Entrypoint or Cmd and the container sets no command or args"
    )]
    NoCommand,
    /// The image's user is not numeric.
    #[error("image user {0:?} is not numeric (uid or uid:gid); names are not resolved here")]
    UserNotNumeric(String),
    /// A capability name is not known.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// The cgroup path is not absolute.
    #[error("cgroup path {0:?} must be absolute")]
    CgroupPathNotAbsolute(String),
    /// A mount destination is not absolute.
    #[error("mount destination {0:?} must be absolute")]
    MountNotAbsolute(PathBuf),
    /// A namespace path is not absolute.
    #[error("namespace path {0:?} must be absolute")]
    NamespacePathNotAbsolute(PathBuf),
    /// An environment variable name is empty or contains `=`.
    #[error("invalid environment variable name {0:?}")]
    BadEnvName(String),
    /// oci-spec's builders refused a value.
    #[error("OCI spec: {0}")]
    Oci(#[from] OciSpecError),
}

/// PATH when the image sets none, as containerd and runc's `spec` use.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// runc's (and containerd's) default capability set for unprivileged containers.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability up to CAP_CHECKPOINT_RESTORE (Linux 5.9), for `ALL` and privileged.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// runc's masked paths: hidden from unprivileged containers.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's read-only /proc paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The argv Kubernetes runs: `command` replaces Entrypoint and drops Cmd; `args` replace Cmd.
pub fn resolve_argv(
    image: &ImageDefaults,
    ctr: &ContainerConfig,
) -> Result<Vec<String>, SpecError> {
    let argv: Vec<String> = match (ctr.command.is_empty(), ctr.args.is_empty()) {
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
        (true, false) => image.entrypoint.iter().chain(&ctr.args).cloned().collect(),
        (false, true) => ctr.command.clone(),
        (false, false) => ctr.command.iter().chain(&ctr.args).cloned().collect(),
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// The image's environment with the pod's merged over it: a key the pod sets replaces the
/// image's value in place, new keys follow in the pod's order; PATH is added if neither sets it.
pub fn merge_env(image: &[String], pod: &[(String, String)]) -> Result<Vec<String>, SpecError> {
    let mut out: Vec<String> = image.to_vec();
    for (k, v) in pod {
        if k.is_empty() || k.contains('=') {
            return Err(SpecError::BadEnvName(k.clone()));
        }
        let entry = format!("{k}={v}");
        match out.iter_mut().find(|e| env_key(e) == k) {
            Some(slot) => *slot = entry,
            None => out.push(entry),
        }
    }
    if !out.iter().any(|e| env_key(e) == "PATH") {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    Ok(out)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Parses a numeric image user (`uid` or `uid:gid`); empty means root.
pub fn parse_image_user(user: Option<&str>) -> Result<(u32, Option<u32>), SpecError> {
    let user = user.unwrap_or("").trim();
    if user.is_empty() || user == "root" {
        return Ok((0, None));
    }
    let bad = || SpecError::UserNotNumeric(user.to_string());
    match user.split_once(':') {
        Some((u, g)) => Ok((
            u.parse().map_err(|_| bad())?,
            Some(g.parse().map_err(|_| bad())?),
        )),
        None => Ok((user.parse().map_err(|_| bad())?, None)),
    }
}

/// Parses a capability name with or without `CAP_`, in any case.
pub fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL") || name.eq_ignore_ascii_case("CAP_ALL")
}

/// runc's default set with drops then adds applied (docker and containerd's order: `ALL` in
/// drop empties the set first, so explicit adds survive).
pub fn resolve_capabilities(ctr: &ContainerConfig) -> Result<Capabilities, SpecError> {
    let parse_all = |names: &[&str]| -> Result<HashSet<Capability>, SpecError> {
        names.iter().map(|n| parse_capability(n)).collect()
    };
    if ctr.privileged {
        return parse_all(ALL_CAPABILITIES);
    }
    let mut caps = parse_all(DEFAULT_CAPABILITIES)?;
    for d in &ctr.capabilities_drop {
        if is_all(d) {
            caps.clear();
        } else {
            caps.remove(&parse_capability(d)?);
        }
    }
    for a in &ctr.capabilities_add {
        if is_all(a) {
            caps.extend(parse_all(ALL_CAPABILITIES)?);
        } else {
            caps.insert(parse_capability(a)?);
        }
    }
    Ok(caps)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// runc's default mounts, plus the pod's bind mounts. `/sys` is read-only unless privileged.
fn mounts(ctr: &ContainerConfig) -> Result<Vec<Mount>, SpecError> {
    let sys_mode = if ctr.privileged { "rw" } else { "ro" };
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
    ];
    for m in &ctr.mounts {
        if !m.container_path.is_absolute() {
            return Err(SpecError::MountNotAbsolute(m.container_path.clone()));
        }
        let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
        opts.push(if m.read_only { "ro" } else { "rw" }.to_string());
        out.push(
            MountBuilder::default()
                .destination(&m.container_path)
                .typ("bind")
                .source(&m.host_path)
                .options(opts)
                .build()?,
        );
    }
    Ok(out)
}

fn namespace(
    typ: LinuxNamespaceType,
    mode: &NamespaceMode,
) -> Result<libcontainer::oci_spec::runtime::LinuxNamespace, SpecError> {
    let b = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match mode {
        NamespaceMode::New => b.build()?,
        NamespaceMode::Join(p) if p.is_absolute() => b.path(p.clone()).build()?,
        NamespaceMode::Join(p) => return Err(SpecError::NamespacePathNotAbsolute(p.clone())),
    })
}

fn resources(
    r: &Resources,
    privileged: bool,
) -> Result<libcontainer::oci_spec::runtime::LinuxResources, SpecError> {
    // Device cgroup: deny everything by default; libcontainer adds the standard devices
    // (null, zero, full, tty, random, urandom, ptmx, pts) itself. Privileged allows all.
    let devices = vec![LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()?];
    let mut b = LinuxResourcesBuilder::default().devices(devices);

    if r.cpu_shares.is_some()
        || r.cpu_quota.is_some()
        || r.cpu_period.is_some()
        || r.cpuset_cpus.is_some()
        || r.cpuset_mems.is_some()
    {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(v) = r.cpu_shares {
            cpu = cpu.shares(v);
        }
        if let Some(v) = r.cpu_quota {
            cpu = cpu.quota(v);
        }
        if let Some(v) = r.cpu_period {
            cpu = cpu.period(v);
        }
        if let Some(v) = &r.cpuset_cpus {
            cpu = cpu.cpus(v.clone());
        }
        if let Some(v) = &r.cpuset_mems {
            cpu = cpu.mems(v.clone());
        }
        b = b.cpu(cpu.build()?);
    }
    if let Some(limit) = r.memory_limit {
        b = b.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(r.memory_swap.unwrap_or(limit))
                .build()?,
        );
    }
    if let Some(limit) = r.pids_limit {
        b = b.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    if !r.blkio.is_empty() {
        let pick = |f: fn(&BlkioThrottle) -> Option<u64>| -> Result<Vec<_>, SpecError> {
            r.blkio
                .iter()
                .filter_map(|t| f(t).map(|rate| (t, rate)))
                .map(|(t, rate)| {
                    Ok(LinuxThrottleDeviceBuilder::default()
                        .major(t.major)
                        .minor(t.minor)
                        .rate(rate)
                        .build()?)
                })
                .collect()
        };
        b = b.block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(pick(|t| t.read_bps)?)
                .throttle_write_bps_device(pick(|t| t.write_bps)?)
                .throttle_read_iops_device(pick(|t| t.read_iops)?)
                .throttle_write_iops_device(pick(|t| t.write_iops)?)
                .build()?,
        );
    }
    Ok(b.build()?)
}

/// OCI's absent `noNewPrivileges` means false. Spell it that way: libcontainer loads a seccomp
/// filter while the process still has its capabilities only when the field is absent (an
/// explicit `false` makes it load the filter after dropping them, which the kernel refuses
/// without no_new_privs).
fn process_without_false_nnp(
    mut process: libcontainer::oci_spec::runtime::Process,
    no_new_privs: bool,
) -> libcontainer::oci_spec::runtime::Process {
    if !no_new_privs {
        process.set_no_new_privileges(None);
    }
    process
}

/// Builds the runtime spec for a bundle whose root filesystem is the directory `rootfs` next to
/// `config.json`.
pub fn build(image: &ImageDefaults, ctr: &ContainerConfig) -> Result<Spec, SpecError> {
    if !ctr.cgroup_path.starts_with('/') {
        return Err(SpecError::CgroupPathNotAbsolute(ctr.cgroup_path.clone()));
    }
    let argv = resolve_argv(image, ctr)?;
    let env = merge_env(&image.env, &ctr.env)?;
    let cwd = ctr
        .working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .or(image.working_dir.as_deref().filter(|w| !w.is_empty()))
        .unwrap_or("/")
        .to_string();

    let (image_uid, image_gid) = parse_image_user(image.user.as_deref())?;
    let mut user = UserBuilder::default()
        .uid(ctr.user.uid.unwrap_or(image_uid))
        .gid(ctr.user.gid.or(image_gid).unwrap_or(0));
    if !ctr.user.additional_gids.is_empty() {
        user = user.additional_gids(ctr.user.additional_gids.clone());
    }

    let caps = resolve_capabilities(ctr)?;
    let seccomp = match (&ctr.seccomp, ctr.privileged) {
        (_, true) | (Seccomp::Unconfined, _) => None,
        (Seccomp::RuntimeDefault, _) => {
            let names: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            Some(super::seccomp::runtime_default(&names)?)
        }
        (Seccomp::Profile(p), _) => Some((**p).clone()),
    };
    // As runc: the set goes into bounding, effective and permitted; inheritable and ambient
    // stay empty, so a non-root user keeps none across exec.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;

    let mut process = ProcessBuilder::default()
        .terminal(ctr.tty)
        .user(user.build()?)
        .args(argv)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()?]);
    let no_new_privs = ctr.allow_privilege_escalation == Some(false) && !ctr.privileged;
    process = process.no_new_privileges(no_new_privs);

    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, &ctr.namespaces.pid)?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
        namespace(LinuxNamespaceType::Network, &ctr.namespaces.network)?,
        namespace(LinuxNamespaceType::Ipc, &ctr.namespaces.ipc)?,
        namespace(LinuxNamespaceType::Uts, &ctr.namespaces.uts)?,
    ];

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&ctr.cgroup_path))
        .resources(resources(&ctr.resources, ctr.privileged)?);
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    if ctr.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(ctr.read_only_rootfs)
                .build()?,
        )
        .process(process_without_false_nnp(process.build()?, no_new_privs))
        .mounts(mounts(ctr)?)
        .linux(linux.build()?);
    if ctr.namespaces.uts == NamespaceMode::New {
        if let Some(h) = &ctr.hostname {
            spec = spec.hostname(h.clone());
        }
    }
    let mut spec = spec.build()?;
    // oci-spec's builders start from `Spec::default()`, whose hostname is "youki".
    if ctr.namespaces.uts != NamespaceMode::New || ctr.hostname.is_none() {
        spec.set_hostname(None);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["a".into(), "b".into()],
            env: vec!["PATH=/bin".into(), "A=image".into(), "B=image".into()],
            working_dir: Some("/work".into()),
            user: Some("1000:1001".into()),
        }
    }

    fn ctr() -> ContainerConfig {
        ContainerConfig {
            cgroup_path: "/skiff/podabc/c1".into(),
            ..Default::default()
        }
    }

    fn caps_of(spec: &Spec) -> Capabilities {
        spec.process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap()
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let img = image();
        let mut c = ctr();
        assert_eq!(resolve_argv(&img, &c).unwrap(), ["/entry", "a", "b"]);
        c.args = vec!["x".into()];
        assert_eq!(resolve_argv(&img, &c).unwrap(), ["/entry", "x"]);
        c.command = vec!["/cmd".into()];
        assert_eq!(resolve_argv(&img, &c).unwrap(), ["/cmd", "x"]);
        c.args.clear();
        // command alone drops the image's Cmd too
        assert_eq!(resolve_argv(&img, &c).unwrap(), ["/cmd"]);
        let empty = ImageDefaults::default();
        assert!(matches!(
            resolve_argv(&empty, &ctr()),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn env_merges_image_then_pod() {
        let env = merge_env(
            &image().env,
            &[("B".into(), "pod".into()), ("C".into(), "x=y".into())],
        )
        .unwrap();
        assert_eq!(env, ["PATH=/bin", "A=image", "B=pod", "C=x=y"]);
        let env = merge_env(&[], &[]).unwrap();
        assert_eq!(env, [DEFAULT_PATH]);
        assert!(merge_env(&[], &[("A=B".into(), "x".into())]).is_err());
    }

    #[test]
    fn process_fields() {
        let mut c = ctr();
        c.env = vec![("A".into(), "pod".into())];
        c.user.uid = Some(7);
        c.user.additional_gids = vec![10, 11];
        c.allow_privilege_escalation = Some(false);
        let spec = build(&image(), &c).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/entry", "a", "b"]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/bin", "A=pod", "B=image"]
        );
        assert_eq!(p.cwd(), &PathBuf::from("/work"));
        assert_eq!(p.user().uid(), 7);
        assert_eq!(p.user().gid(), 1001);
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[10, 11]);
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(p.terminal(), Some(false));

        c.working_dir = Some("/override".into());
        c.allow_privilege_escalation = None;
        let spec = build(
            &ImageDefaults {
                user: None,
                ..image()
            },
            &c,
        )
        .unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.cwd(), &PathBuf::from("/override"));
        assert_eq!(p.user().gid(), 0);
        assert_eq!(p.no_new_privileges(), None);
        assert!(build(
            &ImageDefaults {
                user: Some("nobody".into()),
                ..image()
            },
            &ctr()
        )
        .is_err());
    }

    #[test]
    fn capabilities_add_drop() {
        let spec = build(&image(), &ctr()).unwrap();
        let caps = caps_of(&spec);
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(caps.contains(&Capability::NetRaw));
        assert!(!caps.contains(&Capability::SysAdmin));

        let mut c = ctr();
        c.capabilities_drop = vec!["NET_RAW".into(), "cap_chown".into()];
        c.capabilities_add = vec!["CAP_SYS_ADMIN".into()];
        let caps = caps_of(&build(&image(), &c).unwrap());
        assert!(!caps.contains(&Capability::NetRaw));
        assert!(!caps.contains(&Capability::Chown));
        assert!(caps.contains(&Capability::SysAdmin));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len() - 1);

        c.capabilities_drop = vec!["ALL".into()];
        c.capabilities_add = vec!["NET_BIND_SERVICE".into()];
        let caps = caps_of(&build(&image(), &c).unwrap());
        assert_eq!(
            caps.into_iter().collect::<Vec<_>>(),
            vec![Capability::NetBindService]
        );

        c.capabilities_add = vec!["NOT_A_CAP".into()];
        assert!(matches!(
            build(&image(), &c),
            Err(SpecError::UnknownCapability(_))
        ));
    }

    #[test]
    fn privileged_and_default_paths() {
        let spec = build(&image(), &ctr()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.masked_paths().as_ref().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));

        let c = ContainerConfig {
            privileged: true,
            allow_privilege_escalation: Some(false),
            ..ctr()
        };
        let spec = build(&image(), &c).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().is_empty());
        assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
        assert_eq!(caps_of(&spec).len(), ALL_CAPABILITIES.len());
        assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), None);
        let dev = &linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()[0];
        assert!(dev.allow());
    }

    #[test]
    fn mounts_and_rootfs() {
        let mut c = ctr();
        c.read_only_rootfs = true;
        c.mounts = vec![BindMount {
            host_path: "/var/lib/vol".into(),
            container_path: "/data".into(),
            read_only: true,
        }];
        let spec = build(&image(), &c).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(
            spec.root().as_ref().unwrap().path(),
            &PathBuf::from("rootfs")
        );
        let dests: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().clone())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/data",
        ] {
            assert!(dests.contains(&PathBuf::from(d)), "{d} missing");
        }
        let data = spec.mounts().as_ref().unwrap().last().unwrap();
        assert_eq!(
            data.source().as_ref().unwrap(),
            &PathBuf::from("/var/lib/vol")
        );
        assert_eq!(
            data.options().as_ref().unwrap(),
            &["rbind", "rprivate", "ro"]
        );

        c.mounts[0].container_path = "relative".into();
        assert!(matches!(
            build(&image(), &c),
            Err(SpecError::MountNotAbsolute(_))
        ));
    }

    #[test]
    fn namespaces_and_hostname() {
        let mut c = ctr();
        c.hostname = Some("web-0".into());
        let spec = build(&image(), &c).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert_eq!(ns.len(), 5);
        assert!(ns.iter().all(|n| n.path().is_none()));

        c.namespaces.network = NamespaceMode::Join("/run/skiff/netns/pod1".into());
        c.namespaces.uts = NamespaceMode::Join("/run/skiff/utsns/pod1".into());
        let spec = build(&image(), &c).unwrap();
        assert_eq!(spec.hostname(), &None);
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_ref().unwrap(),
            &PathBuf::from("/run/skiff/netns/pod1")
        );
        let ipc = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Ipc)
            .unwrap();
        assert!(ipc.path().is_none());

        // No hostname asked for: none written (oci-spec's defaults would say "youki").
        let spec = build(&image(), &ctr()).unwrap();
        assert_eq!(spec.hostname(), &None);
        assert!(!spec
            .process()
            .as_ref()
            .unwrap()
            .env()
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("TERM=")));

        c.namespaces.ipc = NamespaceMode::Join("rel".into());
        assert!(build(&image(), &c).is_err());
        c.namespaces.ipc = NamespaceMode::New;
        c.cgroup_path = "skiff/pod".into();
        assert!(matches!(
            build(&image(), &c),
            Err(SpecError::CgroupPathNotAbsolute(_))
        ));
    }

    #[test]
    fn resources_fields() {
        let mut c = ctr();
        c.resources = Resources {
            cpu_shares: Some(Resources::shares_from_millicpu(200)),
            cpuset_cpus: Some("0".into()),
            memory_limit: Some(64 << 20),
            pids_limit: Some(32),
            blkio: vec![BlkioThrottle {
                major: 254,
                minor: 0,
                write_bps: Some(1 << 20),
                read_iops: Some(100),
                ..Default::default()
            }],
            ..Default::default()
        }
        .with_cpus(0.2);
        let spec = build(&image(), &c).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_ref().unwrap(),
            &PathBuf::from("/skiff/podabc/c1")
        );
        let r = linux.resources().as_ref().unwrap();
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.quota(), Some(20_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.shares(), Some(204));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        let mem = r.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(64 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 32);
        let bio = r.block_io().as_ref().unwrap();
        let w = &bio.throttle_write_bps_device().as_ref().unwrap()[0];
        assert_eq!((w.major(), w.minor(), w.rate()), (254, 0, 1 << 20));
        assert!(bio.throttle_read_bps_device().as_ref().unwrap().is_empty());
        assert_eq!(
            bio.throttle_read_iops_device().as_ref().unwrap()[0].rate(),
            100
        );
        assert_eq!(Resources::shares_from_millicpu(1), 2);
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = build(&image(), &ctr()).unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        assert!(json.contains("\"cgroupsPath\":\"/skiff/podabc/c1\""));
    }

    #[test]
    fn seccomp_profiles_go_into_the_spec_unless_privileged() {
        let seccomp_of = |c: &ContainerConfig| {
            build(&image(), c)
                .unwrap()
                .linux()
                .as_ref()
                .unwrap()
                .seccomp()
                .clone()
        };
        assert_eq!(seccomp_of(&ctr()), None);
        let mut c = ctr();
        c.seccomp = Seccomp::RuntimeDefault;
        let p = seccomp_of(&c).expect("a filter");
        let names = p.syscalls().clone().unwrap()[0].names().clone();
        assert!(names.iter().any(|n| n == "unshare"));
        c.capabilities_add = vec!["SYS_ADMIN".into()];
        let names = seccomp_of(&c).unwrap().syscalls().clone().unwrap()[0]
            .names()
            .clone();
        assert!(
            !names.iter().any(|n| n == "unshare"),
            "SYS_ADMIN allows unshare"
        );
        c.privileged = true;
        assert_eq!(seccomp_of(&c), None);
    }
}
