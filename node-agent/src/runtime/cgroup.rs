//! Finding a container's cgroup directories on this host (cgroup v2, or v1 including hybrid
//! mode), reading its OOM-kill counter and its CPU and memory use, and removing leftover
//! directories. libcontainer creates the cgroups and writes the limits; this covers what it does
//! not: OOM reporting for the exit status, usage for the metrics API, and clean-up when its own
//! state is gone.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// How cgroups are mounted here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupLayout {
    /// The unified hierarchy alone (pure cgroup v2), mounted at `root`.
    V2 {
        /// Mount point of the cgroup2 filesystem.
        root: PathBuf,
    },
    /// v1 controller hierarchies (hybrid mode counts as v1: the controllers that matter are on
    /// v1; a cgroup2 mount with no controllers is listed under `"unified"`).
    V1 {
        /// Controller (or `name=...`, or `unified`) to mount point.
        hierarchies: BTreeMap<String, PathBuf>,
    },
}

impl CgroupLayout {
    /// Reads this process's mount table.
    pub fn detect() -> io::Result<Self> {
        Ok(Self::from_mountinfo(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    /// Parses `/proc/self/mountinfo` text.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut hierarchies = BTreeMap::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = pre.split(' ').nth(4) else {
                continue;
            };
            let mut post = post.split(' ');
            let (Some(fstype), _, Some(opts)) = (post.next(), post.next(), post.next()) else {
                continue;
            };
            match fstype {
                "cgroup2" => v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for opt in opts.split(',') {
                        if opt != "rw"
                            && opt != "ro"
                            && !opt.starts_with("release_agent")
                            && opt != "clone_children"
                        {
                            hierarchies.insert(opt.to_string(), PathBuf::from(mount_point));
                        }
                    }
                }
                _ => {}
            }
        }
        if hierarchies.is_empty() {
            if let Some(root) = v2 {
                return CgroupLayout::V2 { root };
            }
        } else if let Some(root) = v2 {
            hierarchies.insert("unified".into(), root);
        }
        CgroupLayout::V1 { hierarchies }
    }

    /// Every directory that `cgroup_path` (absolute, like `/skiff/pod1/c1`) names, one per
    /// distinct hierarchy.
    pub fn dirs(&self, cgroup_path: &str) -> Vec<PathBuf> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V2 { root } => vec![root.join(rel)],
            CgroupLayout::V1 { hierarchies } => {
                let mut out: Vec<PathBuf> = hierarchies.values().map(|m| m.join(rel)).collect();
                out.sort();
                out.dedup();
                out
            }
        }
    }

    /// The directory of the memory controller for this cgroup.
    pub fn memory_dir(&self, cgroup_path: &str) -> Option<PathBuf> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V2 { root } => Some(root.join(rel)),
            CgroupLayout::V1 { hierarchies } => hierarchies.get("memory").map(|m| m.join(rel)),
        }
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup: `oom_kill` in
    /// `memory.events` (v2) or `memory.oom_control` (v1, Linux 4.13+). `None` if unreadable.
    pub fn oom_kills(&self, cgroup_path: &str) -> Option<u64> {
        let dir = self.memory_dir(cgroup_path)?;
        let file = match self {
            CgroupLayout::V2 { .. } => "memory.events",
            CgroupLayout::V1 { .. } => "memory.oom_control",
        };
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        parse_counter(&text, "oom_kill")
    }

    /// Removes the cgroup's directories (children first) in every hierarchy; directories that
    /// are already gone are fine. Fails if one still holds processes.
    pub fn remove(&self, cgroup_path: &str) -> io::Result<()> {
        let mut first_err = None;
        for dir in self.dirs(cgroup_path) {
            if let Err(e) = remove_tree(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Total CPU time the cgroup's processes have used, in nanoseconds: v1 `cpuacct.usage`, v2
    /// `usage_usec` in `cpu.stat`. A counter: usage is its rate.
    pub fn cpu_usage_ns(&self, cgroup_path: &str) -> Result<u64, CgroupReadError> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            CgroupLayout::V2 { root } => {
                let file = root.join(rel).join("cpu.stat");
                let usec = parse_counter(&read(&file)?, "usage_usec")
                    .ok_or(CgroupReadError::Malformed { file })?;
                Ok(usec.saturating_mul(1000))
            }
            CgroupLayout::V1 { hierarchies } => {
                let mount = hierarchies
                    .get("cpuacct")
                    .ok_or(CgroupReadError::NoController("cpuacct"))?;
                let file = mount.join(rel).join("cpuacct.usage");
                parse_number(&read(&file)?).ok_or(CgroupReadError::Malformed { file })
            }
        }
    }

    /// The cgroup's memory working set in bytes: usage less inactive file pages (which the
    /// kernel reclaims first), as cAdvisor computes it for the kubelet. v1 reads
    /// `memory.usage_in_bytes` and `total_inactive_file` in `memory.stat`; v2 `memory.current`
    /// and `inactive_file`.
    pub fn memory_working_set(&self, cgroup_path: &str) -> Result<u64, CgroupReadError> {
        let dir = self
            .memory_dir(cgroup_path)
            .ok_or(CgroupReadError::NoController("memory"))?;
        let (usage_file, inactive_key) = match self {
            CgroupLayout::V2 { .. } => ("memory.current", "inactive_file"),
            CgroupLayout::V1 { .. } => ("memory.usage_in_bytes", "total_inactive_file"),
        };
        let usage_file = dir.join(usage_file);
        let usage = parse_number(&read(&usage_file)?)
            .ok_or(CgroupReadError::Malformed { file: usage_file })?;
        let stat_file = dir.join("memory.stat");
        let inactive = parse_counter(&read(&stat_file)?, inactive_key)
            .ok_or(CgroupReadError::Malformed { file: stat_file })?;
        Ok(working_set(usage, inactive))
    }

    /// True when the cgroup exists in any hierarchy.
    pub fn exists(&self, cgroup_path: &str) -> bool {
        self.dirs(cgroup_path).iter().any(|d| d.exists())
    }
}

/// Why a cgroup's usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupReadError {
    /// The controller is not mounted on this host.
    #[error("the {0} cgroup controller is not mounted")]
    NoController(&'static str),
    /// The file is missing (the cgroup is gone) or unreadable.
    #[error("reading {}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file did not hold what the kernel writes there.
    #[error("{} does not hold the expected counter", file.display())]
    Malformed {
        /// The file.
        file: PathBuf,
    },
}

fn read(file: &Path) -> Result<String, CgroupReadError> {
    std::fs::read_to_string(file).map_err(|source| CgroupReadError::Io {
        file: file.to_path_buf(),
        source,
    })
}

/// A single-number cgroup file (`cpuacct.usage`, `memory.current`).
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Usage less inactive file pages; never below zero, as the two files are not read at one
/// instant.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

/// Finds `key N` in a flat-keyed cgroup file.
pub fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// rmdir a cgroup and its child cgroups, deepest first (cgroup files cannot be unlinked, and
/// rmdir on a cgroup directory removes its files with it).
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("rmdir {}: {e}", dir.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_is_v1_with_unified() {
        let l = CgroupLayout::from_mountinfo(HYBRID);
        let CgroupLayout::V1 { hierarchies } = &l else {
            panic!("{l:?}")
        };
        assert_eq!(
            hierarchies["memory"],
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            hierarchies["unified"],
            PathBuf::from("/sys/fs/cgroup/unified")
        );
        assert!(hierarchies.contains_key("name=systemd"));
        assert_eq!(
            l.memory_dir("/skiff/p/c"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/skiff/p/c"))
        );
        assert_eq!(l.dirs("/skiff/p/c").len(), 5);
    }

    #[test]
    fn pure_v2() {
        let l = CgroupLayout::from_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            l,
            CgroupLayout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(l.dirs("/a/b"), vec![PathBuf::from("/sys/fs/cgroup/a/b")]);
    }

    #[test]
    fn counters_and_removal_against_a_temp_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let v2 = CgroupLayout::V2 { root: root.clone() };
        let cg = root.join("skiff/pod1/c1");
        std::fs::create_dir_all(cg.join("child")).unwrap();
        std::fs::write(
            cg.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(v2.oom_kills("/skiff/pod1/c1"), Some(1));
        assert_eq!(v2.oom_kills("/skiff/missing"), None);

        let mem = root.join("v1mem");
        let v1 = CgroupLayout::V1 {
            hierarchies: [("memory".to_string(), mem.clone())].into(),
        };
        std::fs::create_dir_all(mem.join("x")).unwrap();
        std::fs::write(
            mem.join("x/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(v1.oom_kills("/x"), Some(3));

        // Ordinary files cannot be rmdir'd, so a temp tree only checks the directory walk.
        std::fs::remove_file(cg.join("memory.events")).unwrap();
        v2.remove("/skiff/pod1/c1").unwrap();
        assert!(!cg.exists());
        assert!(!v2.exists("/skiff/pod1/c1"));
        v2.remove("/skiff/pod1/c1").unwrap();
    }

    #[test]
    fn v2_usage_files() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = CgroupLayout::V2 {
            root: dir.path().to_path_buf(),
        };
        let cg = dir.path().join("skiff/pod1/c1");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(
            cg.join("cpu.stat"),
            "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 0\n",
        )
        .unwrap();
        std::fs::write(cg.join("memory.current"), "10485760\n").unwrap();
        std::fs::write(
            cg.join("memory.stat"),
            "anon 6291456\nfile 4194304\nactive_file 1048576\ninactive_file 3145728\n",
        )
        .unwrap();
        assert_eq!(v2.cpu_usage_ns("/skiff/pod1/c1").unwrap(), 1_234_567_000);
        assert_eq!(
            v2.memory_working_set("/skiff/pod1/c1").unwrap(),
            10_485_760 - 3_145_728
        );
        // A cgroup gone between listing and reading is an I/O error naming the file.
        let gone = v2.cpu_usage_ns("/skiff/pod1/gone").unwrap_err();
        assert!(
            matches!(&gone, CgroupReadError::Io { file, .. } if file.ends_with("gone/cpu.stat")),
            "{gone}"
        );
        std::fs::write(cg.join("cpu.stat"), "user_usec 5\n").unwrap();
        assert!(matches!(
            v2.cpu_usage_ns("/skiff/pod1/c1"),
            Err(CgroupReadError::Malformed { .. })
        ));
    }

    #[test]
    fn v1_usage_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cpuacct, memory) = (dir.path().join("cpuacct"), dir.path().join("memory"));
        let v1 = CgroupLayout::V1 {
            hierarchies: [
                ("cpuacct".to_string(), cpuacct.clone()),
                ("memory".to_string(), memory.clone()),
            ]
            .into(),
        };
        std::fs::create_dir_all(cpuacct.join("p/c")).unwrap();
        std::fs::create_dir_all(memory.join("p/c")).unwrap();
        std::fs::write(cpuacct.join("p/c/cpuacct.usage"), "987654321\n").unwrap();
        std::fs::write(memory.join("p/c/memory.usage_in_bytes"), "8192000\n").unwrap();
        // The hierarchical total, not the cgroup's own `inactive_file`.
        std::fs::write(
            memory.join("p/c/memory.stat"),
            "cache 4096\ninactive_file 4096\ntotal_cache 2048000\ntotal_inactive_file 2000000\n",
        )
        .unwrap();
        assert_eq!(v1.cpu_usage_ns("/p/c").unwrap(), 987_654_321);
        assert_eq!(v1.memory_working_set("/p/c").unwrap(), 6_192_000);
        // More inactive file pages than usage (read at different instants): zero, not a wrap.
        std::fs::write(memory.join("p/c/memory.usage_in_bytes"), "1000\n").unwrap();
        assert_eq!(v1.memory_working_set("/p/c").unwrap(), 0);
        let no_cpuacct = CgroupLayout::V1 {
            hierarchies: [("memory".to_string(), memory)].into(),
        };
        assert!(matches!(
            no_cpuacct.cpu_usage_ns("/p/c"),
            Err(CgroupReadError::NoController("cpuacct"))
        ));
    }
}
