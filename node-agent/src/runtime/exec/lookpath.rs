//! Finding the command as runc does (Go's `exec.LookPath`), so a missing command fails with
//! the message users know: `exec: "x": executable file not found in $PATH`.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

pub(super) const NOT_FOUND_IN_PATH: &str = "executable file not found in $PATH";

/// libcontainer executor that looks the command up like runc, so a missing command fails
/// with the message users know (`exec: "x": executable file not found in $PATH`).
#[derive(Clone)]
pub(super) struct LookPath;

impl LookPath {
    fn resolve(spec: &Spec) -> Result<(PathBuf, Vec<String>), String> {
        let process = spec.process().as_ref().ok_or("the spec has no process")?;
        let args = process.args().clone().unwrap_or_default();
        let name = args.first().ok_or("no command given")?;
        let path_var = process
            .env()
            .as_ref()
            .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or("");
        let path = look_path(name, path_var)?;
        Ok((path, args))
    }
}

impl Executor for LookPath {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let (path, args) = Self::resolve(spec).map_err(ExecutorError::Other)?;
        let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| ExecutorError::InvalidArg)?;
        let cargs: Vec<std::ffi::CString> = args
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        let err = nix::unistd::execv(&cpath, &cargs).err();
        Err(ExecutorError::Other(format!(
            "exec: {:?}: {}",
            args.first().map(String::as_str).unwrap_or(""),
            err.map(|e| e.desc().to_lowercase())
                .unwrap_or_else(|| "exec failed".into())
        )))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        Self::resolve(spec)
            .map(|_| ())
            .map_err(ExecutorValidationError::ArgValidationError)
    }
}

/// Go's `exec.LookPath`: a name with a slash is used as is; otherwise the first executable
/// regular file of that name in `PATH`. Errors carry runc's wording.
pub fn look_path(name: &str, path_var: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| -> Result<(), io::Error> {
        let m = std::fs::metadata(p)?;
        if !m.is_dir() && m.permissions().mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        }
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match executable(&p) {
            Ok(()) => Ok(p),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(format!("exec: {name:?}: permission denied"))
            }
            Err(e) => Err(format!("exec: {name:?}: stat {name}: {}", errno_text(&e))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if executable(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(format!("exec: {name:?}: {NOT_FOUND_IN_PATH}"))
}

/// An I/O error as Go prints it (`no such file or directory`), without Rust's
/// ` (os error N)` suffix.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let plain = bin.join("plain");
        std::fs::write(&plain, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", bin.display());
        assert_eq!(look_path("tool", &path).unwrap(), tool);
        assert_eq!(
            look_path("plain", &path).unwrap_err(),
            "exec: \"plain\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("nope", &path).unwrap_err(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path(plain.to_str().unwrap(), "").unwrap_err(),
            format!("exec: {:?}: permission denied", plain.to_str().unwrap())
        );
        assert_eq!(
            look_path("/no/such", "").unwrap_err(),
            "exec: \"/no/such\": stat /no/such: no such file or directory"
        );
        assert_eq!(look_path(tool.to_str().unwrap(), "").unwrap(), tool);
    }
}
