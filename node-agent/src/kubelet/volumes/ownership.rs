//! fsGroup: volume contents owned by the pod's `securityContext.fsGroup`, group-readable (and
//! group-writable unless the volume is read-only), with directories setgid so new files inherit
//! the group, so containers running as non-root users in that group can use them. This is
//! upstream's `SetVolumeOwnership` (fsGroupChangePolicy `Always` for files written here,
//! `OnRootMismatch` for emptyDir data).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The mode a file gets under an fsGroup.
pub(crate) fn file_mode(mode: u32, read_only: bool) -> u32 {
    mode | if read_only { RO_MASK } else { RW_MASK }
}

/// The mode a directory gets under an fsGroup.
fn dir_mode(mode: u32, read_only: bool) -> u32 {
    file_mode(mode, read_only) | EXEC_MASK | SETGID
}

/// Whether `root` already carries the group (and setgid), so a walk can be skipped.
pub(crate) fn root_matches(root: &Path, gid: u32) -> io::Result<bool> {
    let meta = fs::metadata(root)?;
    Ok(meta.gid() == gid && meta.mode() & SETGID != 0)
}

/// Gives everything at and below `root` the group `gid` and the group permissions above.
/// Symlinks get the group but keep their (meaningless) mode; nothing is followed out of `root`.
pub(crate) fn apply(root: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, None, Some(gid))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let want = if ft.is_dir() {
            dir_mode(mode, read_only)
        } else {
            file_mode(mode, read_only)
        };
        if want != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(want))?;
        }
        if ft.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_modes_follow_upstream_masks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("sub/f"), "x").unwrap();
        fs::set_permissions(root.join("sub/f"), fs::Permissions::from_mode(0o400)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        // Our own group: no privilege needed to set it.
        let gid = fs::metadata(dir.path()).unwrap().gid();

        apply(&root, gid, true).unwrap();
        let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&root.join("sub/f")), 0o440);
        assert_eq!(mode(&root.join("sub")), 0o2755 | 0o440 | 0o110);
        assert!(root_matches(&root, gid).unwrap());
        // The symlink's target is untouched.
        assert_eq!(
            fs::read_link(root.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );

        apply(&root, gid, false).unwrap();
        assert_eq!(mode(&root.join("sub/f")), 0o660);
    }
}
