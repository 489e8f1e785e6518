//! hostPath: a path on the node mounted as it is, after upstream's `type` checks (and the
//! creation `DirectoryOrCreate` and `FileOrCreate` ask for).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::SetUpError;

/// Checks (or creates) `path` as `type_` asks and returns the path to bind-mount.
pub(crate) fn check(path: &str, type_: Option<&str>) -> Result<PathBuf, SetUpError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(SetUpError::InvalidPath(format!(
            "hostPath {path:?} is not an absolute path"
        )));
    }
    let fail = |expected| SetUpError::HostPathType {
        path: path.to_string(),
        expected,
    };
    // Follows symlinks, as the bind mount will.
    let meta = fs::metadata(p).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    match type_.unwrap_or_default() {
        "" => {
            // No check; a missing path becomes a directory, as container runtimes do.
            if meta.is_none() {
                make_dir(p)?;
            }
        }
        "DirectoryOrCreate" => {
            if meta.is_none() {
                make_dir(p)?;
            } else if !ft.is_some_and(|t| t.is_dir()) {
                return Err(fail("a directory"));
            }
        }
        "Directory" => {
            if !ft.is_some_and(|t| t.is_dir()) {
                return Err(fail("a directory"));
            }
        }
        "FileOrCreate" => {
            if meta.is_none() {
                // Like upstream, the parent directory is not created.
                fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(p)
                    .map_err(|e| SetUpError::io(format!("create {path}"), e))?;
            } else if !ft.is_some_and(|t| t.is_file()) {
                return Err(fail("a file"));
            }
        }
        "File" => {
            if !ft.is_some_and(|t| t.is_file()) {
                return Err(fail("a file"));
            }
        }
        "Socket" => {
            if !ft.is_some_and(|t| t.is_socket()) {
                return Err(fail("a socket file"));
            }
        }
        "CharDevice" => {
            if !ft.is_some_and(|t| t.is_char_device()) {
                return Err(fail("a character device"));
            }
        }
        "BlockDevice" => {
            if !ft.is_some_and(|t| t.is_block_device()) {
                return Err(fail("a block device"));
            }
        }
        other => return Err(SetUpError::InvalidHostPathType(other.to_string())),
    }
    Ok(p.to_path_buf())
}

fn make_dir(p: &Path) -> Result<(), SetUpError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|e| SetUpError::io(format!("mkdir {}", p.display()), e))
}
