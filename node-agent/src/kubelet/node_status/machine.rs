//! What this host is and has, read from the kernel and the usual files, for the Node's
//! capacity and nodeInfo. Reading never fails: a missing file yields a fallback, since a Node
//! with an approximate field beats no Node at all.

use std::collections::BTreeMap;
use std::path::Path;

/// The kubelet version the agent reports: the API server's, so clients see one cluster version.
pub const KUBELET_VERSION: &str = "v1.33.0";

/// Upstream's default `--max-pods`.
pub const MAX_PODS: u64 = 110;

/// Upstream's default hard eviction threshold `memory.available<100Mi`, held back from
/// allocatable memory.
const EVICTION_MEMORY_KI: u64 = 100 * 1024;

/// Upstream's default hard eviction threshold `nodefs.available<10%`, held back from allocatable
/// ephemeral storage.
const EVICTION_NODEFS_PERCENT: u64 = 10;

/// The host's facts at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: u64,
    /// `MemTotal`, in KiB.
    pub memory_ki: u64,
    /// `SwapTotal`, in bytes.
    pub swap_bytes: u64,
    /// Size of the filesystem holding the agent's root directory, in bytes.
    pub storage_bytes: u64,
    /// Huge page sizes the kernel offers (`"2Mi"`, `"1Gi"`) and the bytes reserved in each.
    pub hugepages: BTreeMap<String, u64>,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The DMI product UUID, or the machine id where there is no DMI.
    pub system_uuid: String,
    /// Changes on every boot, so the control plane can tell a reboot.
    pub boot_id: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os_image: String,
    /// Go's name for the architecture (`amd64`, `arm64`), as node labels and images use it.
    pub architecture: String,
    /// The most pods the node takes (`status.capacity.pods`): [`MAX_PODS`] for a real host;
    /// simulated nodes choose their own.
    pub max_pods: u64,
}

impl Machine {
    /// Reads the facts; `root_dir` (or its nearest existing ancestor) picks the filesystem whose
    /// size is the node's ephemeral storage.
    pub fn read(root_dir: &Path) -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let machine_id = first_line(&["/etc/machine-id", "/var/lib/dbus/machine-id"]);
        let boot_id = first_line(&["/proc/sys/kernel/random/boot_id"]);
        let system_uuid = first_line(&["/sys/class/dmi/id/product_uuid"]);
        Machine {
            cpus: online_cpus(),
            memory_ki: meminfo_ki(&meminfo, "MemTotal").unwrap_or(0),
            swap_bytes: meminfo_ki(&meminfo, "SwapTotal").unwrap_or(0) * 1024,
            storage_bytes: filesystem_bytes(root_dir),
            hugepages: hugepages(Path::new("/sys/kernel/mm/hugepages")),
            system_uuid: or_else(system_uuid, || machine_id.clone()),
            machine_id: or_else(machine_id, || boot_id.clone()),
            boot_id: or_else(boot_id, || "unknown".into()),
            kernel_version: or_else(first_line(&["/proc/sys/kernel/osrelease"]), || {
                "unknown".into()
            }),
            os_image: os_image(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            max_pods: MAX_PODS,
        }
    }

    /// `status.capacity`: what the host has.
    pub fn capacity(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([
            ("cpu".to_string(), self.cpus.to_string()),
            ("memory".to_string(), format!("{}Ki", self.memory_ki)),
            ("pods".to_string(), self.max_pods.to_string()),
            (
                "ephemeral-storage".to_string(),
                format!("{}Ki", self.storage_bytes / 1024),
            ),
        ]);
        for (size, bytes) in &self.hugepages {
            out.insert(format!("hugepages-{size}"), bytes.to_string());
        }
        out
    }

    /// `status.allocatable`: capacity less what upstream's default eviction thresholds hold
    /// back (no system or kube reservations are configured), and less reserved huge pages.
    pub fn allocatable(&self) -> BTreeMap<String, String> {
        let mut out = self.capacity();
        let huge_ki: u64 = self.hugepages.values().sum::<u64>() / 1024;
        let memory = self
            .memory_ki
            .saturating_sub(EVICTION_MEMORY_KI)
            .saturating_sub(huge_ki);
        out.insert("memory".into(), format!("{memory}Ki"));
        let storage = self.storage_bytes - self.storage_bytes * EVICTION_NODEFS_PERCENT / 100;
        out.insert("ephemeral-storage".into(), storage.to_string());
        out
    }
}

fn or_else(s: String, f: impl FnOnce() -> String) -> String {
    if s.is_empty() {
        f()
    } else {
        s
    }
}

/// The first non-empty first line of the given files.
fn first_line(paths: &[&str]) -> String {
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

fn online_cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(1)
}

/// A `/proc/meminfo` field in KiB.
fn meminfo_ki(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Total bytes of the filesystem holding `path`, or of its nearest existing ancestor.
fn filesystem_bytes(path: &Path) -> u64 {
    path.ancestors()
        .find_map(|p| nix::sys::statvfs::statvfs(p).ok())
        .map(|s| {
            #[allow(clippy::useless_conversion)] // the field types differ between targets
            let (blocks, size) = (u64::from(s.blocks()), u64::from(s.fragment_size()));
            blocks.saturating_mul(size)
        })
        .unwrap_or(0)
}

/// Huge page sizes from `/sys/kernel/mm/hugepages/hugepages-<n>kB/nr_hugepages`, named as
/// Kubernetes resources (`2Mi`, `1Gi`), with the bytes reserved.
fn hugepages(dir: &Path) -> BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let pages: u64 = std::fs::read_to_string(e.path().join("nr_hugepages"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((
                binary_size(kb),
                pages.saturating_mul(kb).saturating_mul(1024),
            ))
        })
        .collect()
}

/// KiB as the largest exact binary unit: 2048 → `2Mi`, 1048576 → `1Gi`.
fn binary_size(kb: u64) -> String {
    if kb.is_multiple_of(1024 * 1024) {
        format!("{}Gi", kb / (1024 * 1024))
    } else if kb.is_multiple_of(1024) {
        format!("{}Mi", kb / 1024)
    } else {
        format!("{kb}Ki")
    }
}

/// `PRETTY_NAME` from os-release text, unquoted; upstream's fallback when it is missing.
fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

/// Rust's architecture names as Go (and so Kubernetes and OCI) spells them.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_files() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:  1 kB\nSwapTotal:  2048 kB\n";
        assert_eq!(meminfo_ki(meminfo, "MemTotal"), Some(16318412));
        assert_eq!(meminfo_ki(meminfo, "SwapTotal"), Some(2048));
        assert_eq!(meminfo_ki(meminfo, "Mem"), None);
        assert_eq!(
            os_image("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_image("NAME=x\n"), "Linux");
        assert_eq!(binary_size(2048), "2Mi");
        assert_eq!(binary_size(1048576), "1Gi");
        assert_eq!(binary_size(64), "64Ki");
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }

    #[test]
    fn this_host_has_every_fact() {
        let m = Machine::read(Path::new("/nonexistent/agent/root"));
        assert!(m.cpus >= 1);
        assert!(m.memory_ki > 0, "{m:?}");
        assert!(
            m.storage_bytes > 0,
            "statvfs of the nearest ancestor, /: {m:?}"
        );
        for (what, v) in [
            ("machine", &m.machine_id),
            ("uuid", &m.system_uuid),
            ("boot", &m.boot_id),
            ("kernel", &m.kernel_version),
            ("os", &m.os_image),
            ("arch", &m.architecture),
        ] {
            assert!(!v.is_empty(), "{what}: {m:?}");
        }
        let cap = m.capacity();
        assert_eq!(cap["pods"], "110");
        assert_eq!(cap["memory"], format!("{}Ki", m.memory_ki));
        let alloc = m.allocatable();
        let ki = |s: &str| s.trim_end_matches("Ki").parse::<u64>().unwrap_or(0);
        assert!(ki(&alloc["memory"]) < m.memory_ki);
        let storage: u64 = alloc["ephemeral-storage"].parse().unwrap_or(u64::MAX);
        assert!(storage < m.storage_bytes && storage >= m.storage_bytes / 10 * 9 - 1);
    }
}
