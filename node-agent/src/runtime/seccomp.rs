//! Seccomp profiles for containers. Kubernetes' `seccompProfile` has three types: `Unconfined`
//! (no filter, the default), `RuntimeDefault` (the runtime's own profile) and `Localhost` (a
//! profile file on the node). skiff's runtime default follows Docker's: every syscall is
//! allowed except those that reach beyond the container (kernel modules, keyrings, clocks,
//! mounts and namespaces, tracing other processes, rebooting, ...), which fail with `EPERM`;
//! a capability the container holds lifts the block on the syscalls it governs, as Docker's
//! profile does. Localhost files use the same JSON as Docker's and the OCI spec's
//! `linux.seccomp` (`defaultAction`, `architectures`, `syscalls[].names/action/args`).

use libcontainer::oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder,
};
use libcontainer::oci_spec::OciSpecError;

/// Syscalls the runtime default blocks, and the capability (runc's name, without `CAP_`)
/// that allows them again; `None`: blocked whatever the capabilities.
const BLOCKED: &[(&str, Option<&str>)] = &[
    ("acct", Some("SYS_PACCT")),
    ("add_key", None),
    ("bpf", Some("SYS_ADMIN")),
    ("clock_adjtime", Some("SYS_TIME")),
    ("clock_settime", Some("SYS_TIME")),
    ("settimeofday", Some("SYS_TIME")),
    ("adjtimex", Some("SYS_TIME")),
    ("create_module", Some("SYS_MODULE")),
    ("delete_module", Some("SYS_MODULE")),
    ("finit_module", Some("SYS_MODULE")),
    ("init_module", Some("SYS_MODULE")),
    ("get_kernel_syms", None),
    ("query_module", None),
    ("get_mempolicy", Some("SYS_NICE")),
    ("mbind", Some("SYS_NICE")),
    ("set_mempolicy", Some("SYS_NICE")),
    ("move_pages", Some("SYS_NICE")),
    ("ioperm", Some("SYS_RAWIO")),
    ("iopl", Some("SYS_RAWIO")),
    ("kcmp", Some("SYS_PTRACE")),
    ("process_vm_readv", Some("SYS_PTRACE")),
    ("process_vm_writev", Some("SYS_PTRACE")),
    ("ptrace", Some("SYS_PTRACE")),
    ("kexec_file_load", Some("SYS_BOOT")),
    ("kexec_load", Some("SYS_BOOT")),
    ("reboot", Some("SYS_BOOT")),
    ("keyctl", None),
    ("request_key", None),
    ("lookup_dcookie", Some("SYS_ADMIN")),
    ("mount", Some("SYS_ADMIN")),
    ("umount", Some("SYS_ADMIN")),
    ("umount2", Some("SYS_ADMIN")),
    ("pivot_root", Some("SYS_ADMIN")),
    ("setns", Some("SYS_ADMIN")),
    ("unshare", Some("SYS_ADMIN")),
    ("swapon", Some("SYS_ADMIN")),
    ("swapoff", Some("SYS_ADMIN")),
    ("quotactl", Some("SYS_ADMIN")),
    ("name_to_handle_at", Some("SYS_ADMIN")),
    ("open_by_handle_at", Some("DAC_READ_SEARCH")),
    ("fsopen", Some("SYS_ADMIN")),
    ("fsconfig", Some("SYS_ADMIN")),
    ("fsmount", Some("SYS_ADMIN")),
    ("fspick", Some("SYS_ADMIN")),
    ("move_mount", Some("SYS_ADMIN")),
    ("open_tree", Some("SYS_ADMIN")),
    ("mount_setattr", Some("SYS_ADMIN")),
    ("perf_event_open", Some("PERFMON")),
    ("nfsservctl", None),
    ("sysfs", None),
    ("_sysctl", None),
    ("uselib", None),
    ("userfaultfd", None),
    ("ustat", None),
    ("vm86", None),
    ("vm86old", None),
];

/// EPERM, what a blocked syscall returns.
const EPERM: u32 = 1;

/// The runtime default profile for a container holding `capabilities` (runc's names, e.g.
/// `SYS_ADMIN`; `CAP_` prefixes are accepted).
pub fn runtime_default(capabilities: &[String]) -> Result<LinuxSeccomp, OciSpecError> {
    let held = |cap: &str| {
        capabilities
            .iter()
            .any(|c| c.trim_start_matches("CAP_").eq_ignore_ascii_case(cap))
    };
    let names: Vec<String> = BLOCKED
        .iter()
        .filter(|(_, cap)| !cap.is_some_and(held))
        .map(|(name, _)| name.to_string())
        .collect();
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![Arch::ScmpArchNative])
        .syscalls(vec![LinuxSyscallBuilder::default()
            .names(names)
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(EPERM)
            .build()?])
        .build()
}

/// Why a Localhost profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file is missing or unreadable.
    #[error("failed to load seccomp profile {path:?}: {source}")]
    Read {
        /// The profile's path on the node.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a seccomp profile.
    #[error("seccomp profile {path:?} is not valid: {message}")]
    Invalid {
        /// The profile's path on the node.
        path: std::path::PathBuf,
        /// What the parser said.
        message: String,
    },
}

/// A Localhost profile read from `path`.
pub fn load(path: &std::path::Path) -> Result<LinuxSeccomp, ProfileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ProfileError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(profile: &LinuxSeccomp) -> Vec<String> {
        profile.syscalls().clone().unwrap_or_default()[0]
            .names()
            .clone()
    }

    #[test]
    fn the_default_blocks_mount_unless_sys_admin_is_held() {
        let p = runtime_default(&["CHOWN".into()]).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        let names = blocked(&p);
        for name in [
            "mount",
            "unshare",
            "keyctl",
            "ptrace",
            "reboot",
            "init_module",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not blocked");
        }
        let admin = blocked(&runtime_default(&["CAP_SYS_ADMIN".into()]).unwrap());
        assert!(!admin.iter().any(|n| n == "mount"));
        assert!(admin.iter().any(|n| n == "keyctl"), "keyctl stays blocked");
        assert!(admin.iter().any(|n| n == "ptrace"));
    }

    #[test]
    fn localhost_profiles_use_docker_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny-chmod.json");
        std::fs::write(
            &path,
            br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let p = load(&path).unwrap();
        assert_eq!(blocked(&p), vec!["chmod", "fchmodat"]);
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(load(&path), Err(ProfileError::Invalid { .. })));
        let missing = load(&dir.path().join("nope.json")).unwrap_err().to_string();
        assert!(
            missing.contains("failed to load seccomp profile"),
            "{missing}"
        );
    }
}
