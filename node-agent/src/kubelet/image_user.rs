//! The image's `USER` as numbers, as runc resolves it: a name (or `name:group`) is looked up in
//! the image's own `/etc/passwd` and `/etc/group`; a numeric user takes its primary group from
//! `/etc/passwd` when listed there, else group 0. The files are read from the unpacked layers,
//! top layer first, honouring overlayfs whiteouts and opaque directories.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// A user or group the image names that its files do not list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageUserError {
    /// No `/etc/passwd` entry.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// No `/etc/group` entry.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, ...) against the image's files, to
/// `uid:gid` (or `uid` when nothing names a group). `None`, empty and `root` stay as they are.
pub fn resolve(user: Option<&str>, layers: &[PathBuf]) -> Result<Option<String>, ImageUserError> {
    let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_from_layers(layers, "etc/passwd").unwrap_or_default();
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let by_uid = |uid: &str| entries.iter().find(|f| f[2] == uid);
    let (uid, primary_gid) = if u.parse::<u32>().is_ok() {
        (u.to_string(), by_uid(u).map(|f| f[3].to_string()))
    } else {
        match entries.iter().find(|f| f[0] == u) {
            Some(f) => (f[2].to_string(), Some(f[3].to_string())),
            None => return Err(ImageUserError::NoUser(u.to_string())),
        }
    };
    let gid = match g {
        Some(g) if g.parse::<u32>().is_ok() => Some(g.to_string()),
        Some(g) => {
            let groups = read_from_layers(layers, "etc/group").unwrap_or_default();
            let found = groups.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 3 && f[0] == g).then(|| f[2].to_string())
            });
            Some(found.ok_or_else(|| ImageUserError::NoGroup(g.to_string()))?)
        }
        None => primary_gid,
    };
    Ok(Some(match gid {
        Some(gid) => format!("{uid}:{gid}"),
        None => uid,
    }))
}

/// A file as the container's root filesystem will show it: from the topmost layer that has it,
/// unless a layer above deletes it (a whiteout) or hides its directory (opaque).
fn read_from_layers(layers: &[PathBuf], rel: &str) -> Option<String> {
    let rel = Path::new(rel);
    for layer in layers.iter().rev() {
        let path = layer.join(rel);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_char_device() {
                return None; // whiteout
            }
            if meta.is_file() {
                return std::fs::read_to_string(&path).ok();
            }
        }
        let opaque = rel
            .ancestors()
            .skip(1)
            .filter(|a| !a.as_os_str().is_empty())
            .any(|dir| is_opaque(&layer.join(dir)));
        if opaque {
            return None;
        }
    }
    None
}

fn is_opaque(dir: &Path) -> bool {
    xattr_is_y(dir, "trusted.overlay.opaque")
}

fn xattr_is_y(path: &Path, name: &str) -> bool {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    let mut buf = [0u8; 2];
    // SAFETY: both strings are NUL-terminated and the buffer's length is passed.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = root.join(name);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn names_resolve_through_the_top_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let base = layer(
            tmp.path(),
            "base",
            &[
                (
                    "etc/passwd",
                    "root:x:0:0::/root:/bin/sh\nold:x:5:5::/:/bin/sh\n",
                ),
                ("etc/group", "root:x:0:\nstaff:x:50:\n"),
            ],
        );
        let top = layer(
            tmp.path(),
            "top",
            &[(
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
            )],
        );
        let layers = vec![base, top];
        let r = |u: &str| resolve(Some(u), &layers);
        assert_eq!(r("app"), Ok(Some("1000:1001".into())));
        assert_eq!(r("app:staff"), Ok(Some("1000:50".into())));
        assert_eq!(r("app:7"), Ok(Some("1000:7".into())));
        assert_eq!(r("1000"), Ok(Some("1000:1001".into())));
        assert_eq!(r("4242"), Ok(Some("4242".into())));
        assert_eq!(r("old"), Err(ImageUserError::NoUser("old".into())));
        assert_eq!(
            r("app:nogroup"),
            Err(ImageUserError::NoGroup("nogroup".into()))
        );
        assert_eq!(resolve(Some(" "), &layers), Ok(None));
        assert_eq!(resolve(None, &layers), Ok(None));
    }
}
