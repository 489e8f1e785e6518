//! The few mount operations volumes need (tmpfs, bind, unmount) and the mount table lookups
//! that make `prepare` idempotent and `teardown` complete.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Every mount point at or below `root` in this process's mount namespace, deepest first, so
/// they can be unmounted in order. `root` must be canonical, as the mount table's paths are.
pub(crate) fn mount_points_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = parse_mount_points(&text)
        .into_iter()
        .filter(|p| p.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Whether `path` (canonical) is itself a mount point.
pub(crate) fn is_mount_point(path: &Path) -> io::Result<bool> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mount_points(&text).iter().any(|p| p == path))
}

/// The mount point column of `/proc/self/mountinfo`, with the kernel's octal escapes undone.
fn parse_mount_points(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// The kernel writes space, tab, newline and backslash in mount paths as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct.iter().fold(0u32, |a, b| a * 8 + u32::from(b - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts a fresh tmpfs at `path`, limited to `size` bytes when given (memory-backed emptyDir,
/// secret and projected volumes, so their contents never reach a disk).
pub(crate) fn mount_tmpfs(path: &Path, size: Option<i64>) -> io::Result<()> {
    let data = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        data.as_deref(),
    )
    .map_err(io::Error::from)
}

/// Bind-mounts `source` (often `/proc/self/fd/N`, to pin a checked path) onto `target`.
pub(crate) fn bind(source: &Path, target: &Path) -> io::Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Unmounts `path`; when something on the host still holds it busy, detaches it instead so the
/// pod's clean-up is not blocked (the kernel frees it once the last user goes).
pub(crate) fn unmount(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            nix::mount::umount2(path, MntFlags::MNT_DETACH).map_err(io::Error::from)
        }
        Err(nix::errno::Errno::EINVAL) => Ok(()), // not (or no longer) a mount point
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let text = "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 98:0 / /var/lib/x rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mount_points(text),
            vec![
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/var/lib/x")
            ]
        );
    }
}
