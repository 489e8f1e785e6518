//! Upstream kubelet's atomic writer: a volume's files live in a timestamped directory
//! (`..2026_01_02_15_04_05.123456789`), `..data` is a symlink to the current one, and every
//! top-level name the user sees is a symlink through `..data`. An update writes a new
//! timestamped directory and swaps `..data` with one `rename`, so a reader in the container
//! sees either all old or all new contents, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::SetUpError;
use super::ownership;

/// The symlink naming the current timestamped directory.
pub(crate) const DATA_DIR: &str = "..data";
/// The symlink built next to `..data` and renamed over it.
const DATA_DIR_TMP: &str = "..data_tmp";
/// Upstream's limits on a file path and on one of its names.
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;

/// One file of a volume: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    /// The contents.
    pub data: Vec<u8>,
    /// Permission bits, such as 0o644.
    pub mode: u32,
}

/// A volume's files by relative path.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// Makes `target` hold exactly `payload`, atomically, reusing the current contents when they
/// already match.
/// With `fs_group`, files are group-readable and owned by that group (see `ownership`) before
/// they become visible.
pub(crate) fn write(
    target: &Path,
    payload: &Payload,
    fs_group: Option<u32>,
) -> Result<(), SetUpError> {
    let io = |what: &str, p: &Path, e| SetUpError::io(format!("{what} {}", p.display()), e);
    let mut clean = BTreeMap::new();
    for (path, file) in payload {
        let mut file = file.clone();
        if fs_group.is_some() {
            file.mode = ownership::file_mode(file.mode, true);
        }
        clean.insert(validate_path(path)?, file);
    }

    let data_link = target.join(DATA_DIR);
    let old_ts = match fs::read_link(&data_link) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read link", &data_link, e)),
    };
    let old_paths = match &old_ts {
        Some(ts) => {
            relative_paths(&target.join(ts)).map_err(|e| io("walk", &target.join(ts), e))?
        }
        None => BTreeSet::new(),
    };
    // Paths present before but not now, with every directory that still holds a new file kept.
    let mut keep = BTreeSet::new();
    for p in clean.keys() {
        let mut cur = Some(p.as_path());
        while let Some(c) = cur.filter(|c| !c.as_os_str().is_empty()) {
            keep.insert(c.to_path_buf());
            cur = c.parent();
        }
    }
    let to_remove: Vec<&PathBuf> = old_paths.difference(&keep).collect();

    let changed = match &old_ts {
        None => true,
        Some(ts) => !to_remove.is_empty() || differs(&target.join(ts), &clean),
    };
    if changed {
        let new_ts = new_timestamp_dir(target).map_err(|e| io("create directory in", target, e))?;
        let new_path = target.join(&new_ts);
        for (rel, file) in &clean {
            let path = new_path.join(rel);
            if let Some(parent) = path.parent() {
                create_dirs(parent).map_err(|e| io("create directory", parent, e))?;
            }
            write_file(&path, file).map_err(|e| io("write", &path, e))?;
        }
        if let Some(gid) = fs_group {
            ownership::apply(&new_path, gid, true)
                .map_err(|e| io("set fsGroup on", &new_path, e))?;
        }
        let tmp = target.join(DATA_DIR_TMP);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &tmp, e)),
        }
        std::os::unix::fs::symlink(&new_ts, &tmp).map_err(|e| io("symlink", &tmp, e))?;
        fs::rename(&tmp, &data_link).map_err(|e| io("rename", &tmp, e))?;
    }

    // The names users see: one symlink per top-level entry, through `..data`.
    let tops: BTreeSet<&std::ffi::OsStr> = clean
        .keys()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str())
        .collect();
    for top in &tops {
        let link = target.join(top);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(top), &link)
                .map_err(|e| io("symlink", &link, e))?;
        }
    }
    for gone in to_remove {
        if gone.components().count() == 1 && !tops.contains(gone.as_os_str()) {
            let link = target.join(gone);
            match fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &link, e)),
            }
        }
    }
    remove_stale_timestamp_dirs(target).map_err(|e| io("clean up", target, e))?;
    Ok(())
}

/// Upstream's `validatePath`, returning the cleaned relative path.
fn validate_path(path: &str) -> Result<PathBuf, SetUpError> {
    let bad = |why: String| Err(SetUpError::InvalidPath(format!("invalid path: {why}")));
    if path.is_empty() {
        return bad(format!("must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return bad(format!("must be relative path: {path}"));
    }
    if path.len() > MAX_PATH {
        return bad(format!(
            "must be less than or equal to {MAX_PATH} characters"
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return bad(format!("must not contain '..': {path}"));
        }
        if item.len() > MAX_NAME {
            return bad(format!(
                "filenames must be less than or equal to {MAX_NAME} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return bad(format!("must not start with '..': {path}"));
    }
    let clean: PathBuf = Path::new(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if clean.as_os_str().is_empty() {
        return bad(format!("must not be empty: {path:?}"));
    }
    Ok(clean)
}

/// Whether any file in `dir` differs from the payload in contents or mode.
fn differs(dir: &Path, payload: &BTreeMap<PathBuf, FileProjection>) -> bool {
    payload.iter().any(|(rel, file)| {
        let path = dir.join(rel);
        match (fs::symlink_metadata(&path), fs::read(&path)) {
            (Ok(meta), Ok(bytes)) => {
                !meta.is_file()
                    || meta.permissions().mode() & 0o7777 != file.mode
                    || bytes != file.data
            }
            _ => true,
        }
    })
}

/// Every file and directory below `dir`, relative to it.
fn relative_paths(dir: &Path) -> std::io::Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = match fs::read_dir(dir.join(&rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let child = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(child.clone());
            }
            out.insert(child);
        }
    }
    Ok(out)
}

fn create_dirs(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
}

fn write_file(path: &Path, file: &FileProjection) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(path)?;
    f.write_all(&file.data)?;
    // The umask may have cleared bits the user asked for.
    f.set_permissions(fs::Permissions::from_mode(file.mode))?;
    Ok(())
}

/// Creates `..<UTC timestamp>.<nanoseconds>` under `target` and returns its name.
fn new_timestamp_dir(target: &Path) -> std::io::Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (y, mo, d) = crate::runtime::cri_log::civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let base = format!(
        "..{y:04}_{mo:02}_{d:02}_{:02}_{:02}_{:02}.{:09}",
        t / 3600,
        t / 60 % 60,
        t % 60,
        now.subsec_nanos()
    );
    for n in 0u32..1000 {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}{n}")
        };
        match fs::DirBuilder::new().mode(0o755).create(target.join(&name)) {
            Ok(()) => {
                fs::set_permissions(target.join(&name), fs::Permissions::from_mode(0o755))?;
                return Ok(PathBuf::from(name));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free timestamped directory name",
    ))
}

/// Removes timestamped directories other than the one `..data` names: the previous version,
/// and any left by a write that crashed half-way.
fn remove_stale_timestamp_dirs(target: &Path) -> std::io::Result<()> {
    let current = fs::read_link(target.join(DATA_DIR))?;
    for entry in fs::read_dir(target)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_ts = name.to_string_lossy().starts_with("..")
            && name != DATA_DIR
            && name != DATA_DIR_TMP
            && entry.file_type()?.is_dir();
        if is_ts && Path::new(&name) != current {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn paths_are_validated_as_upstream() {
        let err = |p: &str| validate_path(p).unwrap_err().to_string();
        assert_eq!(
            err("/etc/passwd"),
            "invalid path: must be relative path: /etc/passwd"
        );
        assert_eq!(
            err("a/../../b"),
            "invalid path: must not contain '..': a/../../b"
        );
        assert_eq!(
            err("..data"),
            "invalid path: must not start with '..': ..data"
        );
        assert!(err("").starts_with("invalid path: must not be empty"));
        assert_eq!(validate_path("a//b/./c").unwrap(), PathBuf::from("a/b/c"));
    }

    #[test]
    fn writes_layout_and_swaps_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        let mut p = Payload::new();
        p.insert("a".into(), file("one", 0o644));
        p.insert("sub/b".into(), file("two", 0o400));
        write(t, &p, None).unwrap();

        let ts1 = fs::read_link(t.join(DATA_DIR)).unwrap();
        assert!(ts1.to_string_lossy().starts_with("..20"), "{ts1:?}");
        assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(t.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(t.join("sub/b")).unwrap(), "two");
        let mode = fs::metadata(t.join("sub/b")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o400);

        // Same payload: nothing rewritten.
        write(t, &p, None).unwrap();
        assert_eq!(fs::read_link(t.join(DATA_DIR)).unwrap(), ts1);

        // Changed payload: a new directory, old names gone, old directory removed.
        let mut p2 = Payload::new();
        p2.insert("a".into(), file("uno", 0o644));
        p2.insert("c".into(), file("tres", 0o644));
        write(t, &p2, None).unwrap();
        let ts2 = fs::read_link(t.join(DATA_DIR)).unwrap();
        assert_ne!(ts1, ts2);
        assert!(!t.join(&ts1).exists());
        assert_eq!(fs::read_to_string(t.join("a")).unwrap(), "uno");
        assert_eq!(fs::read_to_string(t.join("c")).unwrap(), "tres");
        assert!(fs::symlink_metadata(t.join("sub")).is_err());
        let names: BTreeSet<String> = fs::read_dir(t)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let expected: BTreeSet<String> = ["..data", "a", "c", ts2.to_str().unwrap()]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(names, expected);

        // A mode change alone is applied too.
        p2.insert("c".into(), file("tres", 0o600));
        write(t, &p2, None).unwrap();
        let mode = fs::metadata(t.join("c")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
    }
}
