//! Writing limits into cgroups the agent owns itself (pod and QoS cgroups; containers get theirs
//! from libcontainer), and changing a running container's CPUs, the same way on cgroup v1 and
//! v2: one [`CgroupDriver`] trait with a [`V1Files`] and a [`V2Files`] implementation.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::cgroup::CgroupLayout;

/// Limits on a cgroup the kubelet manages (a pod's, or a QoS class parent's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Relative CPU weight in v1 shares (2–262144); v2 gets the equivalent `cpu.weight`.
    pub cpu_shares: u64,
    /// CFS quota per period in microseconds; `None` is unlimited.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: u64,
    /// Memory limit in bytes; `None` is unlimited.
    pub memory_limit: Option<i64>,
}

/// Creates cgroups and sets what the kubelet controls on them, whatever the cgroup version.
pub trait CgroupDriver {
    /// Creates the cgroup and its missing ancestors, ready to hold child cgroups.
    fn create(&self, path: &str) -> io::Result<()>;
    /// Writes CPU weight, CPU quota and memory limit.
    fn set_limits(&self, path: &str, limits: &CgroupLimits) -> io::Result<()>;
    /// Confines the cgroup's tasks to these CPUs (`0-1,3`).
    fn set_cpus(&self, path: &str, cpus: &str) -> io::Result<()>;
}

impl CgroupLayout {
    /// The driver for this host's cgroup version.
    pub fn driver(&self) -> Box<dyn CgroupDriver + '_> {
        match self {
            CgroupLayout::V1 { hierarchies } => Box::new(V1Files { hierarchies }),
            CgroupLayout::V2 { root } => Box::new(V2Files { root }),
        }
    }
}

/// cgroup v1: one directory per controller hierarchy.
pub struct V1Files<'a> {
    /// Controller name to mount point.
    pub hierarchies: &'a BTreeMap<String, PathBuf>,
}

/// The v1 controllers whose hierarchies the kubelet's cgroups are made in.
const V1_CONTROLLERS: [&str; 7] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices",
];

impl V1Files<'_> {
    fn dir(&self, controller: &str, path: &str) -> Option<PathBuf> {
        self.hierarchies
            .get(controller)
            .map(|m| m.join(path.trim_start_matches('/')))
    }
}

impl CgroupDriver for V1Files<'_> {
    fn create(&self, path: &str) -> io::Result<()> {
        for controller in V1_CONTROLLERS {
            let Some(mount) = self.hierarchies.get(controller) else {
                continue;
            };
            if controller == "cpuset" {
                // A new cpuset cgroup starts with no CPUs and no memory nodes, and no task can
                // join it (nor any child cgroup be filled) until they are copied from above.
                let mut dir = mount.clone();
                for part in path
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|p| !p.is_empty())
                {
                    let parent = dir.clone();
                    dir.push(part);
                    mkdir(&dir)?;
                    for file in ["cpuset.cpus", "cpuset.mems"] {
                        if read_trimmed(&dir.join(file))?.is_empty() {
                            write(&dir.join(file), &read_trimmed(&parent.join(file))?)?;
                        }
                    }
                }
            } else {
                std::fs::create_dir_all(mount.join(path.trim_start_matches('/')))
                    .map_err(|e| annotate(e, "mkdir", &mount.join(path)))?;
            }
        }
        Ok(())
    }

    fn set_limits(&self, path: &str, limits: &CgroupLimits) -> io::Result<()> {
        if let Some(dir) = self.dir("cpu", path) {
            write(&dir.join("cpu.shares"), &limits.cpu_shares.to_string())?;
            write(
                &dir.join("cpu.cfs_period_us"),
                &limits.cpu_period.to_string(),
            )?;
            let quota = limits.cpu_quota.unwrap_or(-1);
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(dir) = self.dir("memory", path) {
            let limit = limits.memory_limit.unwrap_or(-1);
            write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
        }
        Ok(())
    }

    fn set_cpus(&self, path: &str, cpus: &str) -> io::Result<()> {
        match self.dir("cpuset", path) {
            Some(dir) => write(&dir.join("cpuset.cpus"), cpus),
            None => Ok(()),
        }
    }
}

/// cgroup v2: the unified hierarchy.
pub struct V2Files<'a> {
    /// Where cgroup2 is mounted.
    pub root: &'a Path,
}

/// The v2 controllers enabled for the kubelet's cgroups' children.
const V2_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

impl CgroupDriver for V2Files<'_> {
    fn create(&self, path: &str) -> io::Result<()> {
        // Controllers reach a cgroup only when every ancestor lists them in
        // cgroup.subtree_control; enable those the root offers, top down, then the new cgroup's
        // own for its children (containers).
        let available = read_trimmed(&self.root.join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        let mut dir = self.root.to_path_buf();
        enable(&dir, &wanted)?;
        for part in path
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
        {
            dir.push(part);
            mkdir(&dir)?;
            enable(&dir, &wanted)?;
        }
        Ok(())
    }

    fn set_limits(&self, path: &str, limits: &CgroupLimits) -> io::Result<()> {
        let dir = self.root.join(path.trim_start_matches('/'));
        write(
            &dir.join("cpu.weight"),
            &shares_to_weight(limits.cpu_shares).to_string(),
        )?;
        let quota = match limits.cpu_quota {
            Some(q) => q.to_string(),
            None => "max".into(),
        };
        write(
            &dir.join("cpu.max"),
            &format!("{quota} {}", limits.cpu_period),
        )?;
        let memory = match limits.memory_limit {
            Some(m) => m.to_string(),
            None => "max".into(),
        };
        write(&dir.join("memory.max"), &memory)
    }

    fn set_cpus(&self, path: &str, cpus: &str) -> io::Result<()> {
        let dir = self.root.join(path.trim_start_matches('/'));
        write(&dir.join("cpuset.cpus"), cpus)
    }
}

/// v1 shares (2–262144) to a v2 weight (1–10000), as runc and the kubelet convert them.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn enable(dir: &Path, controllers: &[String]) -> io::Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let current = read_trimmed(&file).unwrap_or_default();
    for c in controllers {
        if current
            .split_whitespace()
            .any(|have| format!("+{have}") == *c)
        {
            continue;
        }
        // One at a time: a controller the kernel refuses here must not keep the others out.
        if let Err(e) = std::fs::write(&file, c) {
            tracing::debug!("enabling {c} in {}: {e}", file.display());
        }
    }
    Ok(())
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(annotate(e, "mkdir", dir)),
        _ => Ok(()),
    }
}

fn read_trimmed(file: &Path) -> io::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(annotate(e, "read", file)),
    }
}

fn write(file: &Path, value: &str) -> io::Result<()> {
    std::fs::write(file, value).map_err(|e| annotate(e, &format!("write {value:?} to"), file))
}

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn weights_follow_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
    }

    #[test]
    fn v1_writes_per_controller_and_seeds_cpusets() {
        let tmp = tempfile::tempdir().unwrap();
        let mut hierarchies = BTreeMap::new();
        for c in ["cpu", "cpuset", "memory"] {
            let m = tmp.path().join(c);
            std::fs::create_dir_all(&m).unwrap();
            hierarchies.insert(c.to_string(), m);
        }
        std::fs::write(tmp.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(tmp.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let d = V1Files {
            hierarchies: &hierarchies,
        };
        d.create("/skiff/kubepods/podu").unwrap();
        assert_eq!(
            read(&tmp.path().join("cpuset/skiff/kubepods/podu/cpuset.cpus")),
            "0-3"
        );
        assert_eq!(read(&tmp.path().join("cpuset/skiff/cpuset.mems")), "0");
        let limits = CgroupLimits {
            cpu_shares: 512,
            cpu_quota: Some(50_000),
            cpu_period: 100_000,
            memory_limit: None,
        };
        d.set_limits("/skiff/kubepods/podu", &limits).unwrap();
        let cpu = tmp.path().join("cpu/skiff/kubepods/podu");
        assert_eq!(read(&cpu.join("cpu.shares")), "512");
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(
            read(
                &tmp.path()
                    .join("memory/skiff/kubepods/podu/memory.limit_in_bytes")
            ),
            "-1"
        );
        d.set_cpus("/skiff/kubepods/podu", "1").unwrap();
        assert_eq!(
            read(&tmp.path().join("cpuset/skiff/kubepods/podu/cpuset.cpus")),
            "1"
        );
    }

    #[test]
    fn v2_enables_controllers_and_converts_units() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let d = V2Files { root: tmp.path() };
        d.create("/skiff/kubepods/podu").unwrap();
        // A plain directory keeps the last write; the kernel would accumulate them.
        assert_eq!(read(&tmp.path().join("cgroup.subtree_control")), "+pids");
        assert!(tmp.path().join("skiff/kubepods/podu").is_dir());
        let limits = CgroupLimits {
            cpu_shares: 1024,
            cpu_quota: None,
            cpu_period: 100_000,
            memory_limit: Some(64 << 20),
        };
        d.set_limits("/skiff/kubepods/podu", &limits).unwrap();
        let dir = tmp.path().join("skiff/kubepods/podu");
        assert_eq!(read(&dir.join("cpu.weight")), "39");
        assert_eq!(read(&dir.join("cpu.max")), "max 100000");
        assert_eq!(read(&dir.join("memory.max")), "67108864");
    }
}
