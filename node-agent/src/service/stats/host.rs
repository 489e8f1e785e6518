//! The whole node's CPU and memory from `/proc`: busy CPU time from the first line of
//! `/proc/stat`, and memory in use as MemTotal − MemAvailable from `/proc/meminfo`.

use std::io;
use std::path::PathBuf;

/// Why the node's usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostReadError {
    /// The file could not be read.
    #[error("reading {}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file did not hold the fields the kernel writes there.
    #[error("{file} does not hold {what}")]
    Malformed {
        /// The file.
        file: &'static str,
        /// What was missing.
        what: &'static str,
    },
}

fn read(file: &str) -> Result<String, HostReadError> {
    std::fs::read_to_string(file).map_err(|source| HostReadError::Io {
        file: file.into(),
        source,
    })
}

/// CPU time the node has spent busy, in nanoseconds.
pub fn cpu_busy_ns() -> Result<u64, HostReadError> {
    let ticks = busy_ticks(&read("/proc/stat")?).ok_or(HostReadError::Malformed {
        file: "/proc/stat",
        what: "an aggregate cpu line",
    })?;
    Ok(ticks_to_ns(ticks, clock_ticks_per_second()))
}

/// Memory in use (not available to new work) in bytes.
pub fn memory_working_set() -> Result<u64, HostReadError> {
    used_memory(&read("/proc/meminfo")?).ok_or(HostReadError::Malformed {
        file: "/proc/meminfo",
        what: "MemTotal and MemAvailable",
    })
}

/// Busy ticks on the aggregate `cpu` line: user, nice, system, irq, softirq and steal. Idle
/// and iowait are not work; guest time is already counted in user and nice.
pub fn busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    if fields.len() < 4 {
        return None;
    }
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

/// MemTotal − MemAvailable in bytes.
pub fn used_memory(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let (total, available) = (kib("MemTotal")?, kib("MemAvailable")?);
    Some(total.saturating_sub(available).saturating_mul(1024))
}

/// Clock ticks (USER_HZ) as nanoseconds.
pub fn ticks_to_ns(ticks: u64, per_second: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(per_second.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// USER_HZ, the unit of `/proc/stat`; 100 on every Linux architecture we run on, should
/// `sysconf` fail.
fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; it has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_time() {
        let text = "cpu  3650148 80818 451420 2263046 30375 7 30126 12416 0 0\n\
                    cpu0 1801310 38929 214343 1178828 9098 0 10905 6158 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(
            busy_ticks(text),
            Some(3650148 + 80818 + 451420 + 7 + 30126 + 12416)
        );
        // Old kernels stop after iowait.
        assert_eq!(busy_ticks("cpu  10 20 30 40 50\n"), Some(60));
        assert_eq!(busy_ticks("cpu0 1 2 3 4\n"), None);
        assert_eq!(busy_ticks("cpu  1 x 3 4\n"), None);
        assert_eq!(ticks_to_ns(250, 100), 2_500_000_000);
    }

    #[test]
    fn meminfo_used() {
        let text = "MemTotal:       24684084 kB\nMemFree:         1000000 kB\n\
                    MemAvailable:   24162664 kB\nBuffers:  1 kB\n";
        assert_eq!(used_memory(text), Some((24684084 - 24162664) * 1024));
        assert_eq!(used_memory("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn this_host_reads() {
        // /proc is always there: the readers must agree with the kernel's format.
        assert!(cpu_busy_ns().unwrap() > 0);
        assert!(memory_working_set().unwrap() > 0);
    }
}
