//! How a container ended, as the shim records it in `exit.json` for the agent: written once,
//! atomically (temp file, fsync, rename), so a reader sees either nothing or the whole record.

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Kubernetes' `terminated.reason` for a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// Non-zero exit code or killed by a signal.
    Error,
    /// The kernel's OOM killer killed a process of the container.
    #[serde(rename = "OOMKilled")]
    OomKilled,
}

/// The recorded end of a container's init process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, or 128 + signal number when killed by a signal (shell convention, as CRI
    /// runtimes report it).
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Completed, Error or OOMKilled.
    pub reason: ExitReason,
    /// When the shim saw it exit (RFC 3339, nanoseconds).
    pub finished_at: String,
}

impl ExitStatus {
    /// Builds the record from a wait status and the cgroup's OOM-kill counter.
    pub fn new(code: Option<i32>, signal: Option<i32>, oom_kills: u64, at: SystemTime) -> Self {
        let exit_code = match (code, signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        };
        let reason = if oom_kills > 0 {
            ExitReason::OomKilled
        } else if exit_code == 0 {
            ExitReason::Completed
        } else {
            ExitReason::Error
        };
        ExitStatus {
            exit_code,
            signal,
            reason,
            finished_at: super::cri_log::rfc3339_nano(at),
        }
    }

    /// Writes the record atomically to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        write_atomic(path, &json)
    }

    /// Reads the record; `Ok(None)` if the container has not exited yet.
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Writes `data` to `path` through a temp file in the same directory, fsynced and renamed.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_codes() {
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(
            ExitStatus::new(Some(0), None, 0, t).reason,
            ExitReason::Completed
        );
        let e = ExitStatus::new(Some(3), None, 0, t);
        assert_eq!((e.exit_code, e.reason), (3, ExitReason::Error));
        let k = ExitStatus::new(None, Some(9), 1, t);
        assert_eq!(
            (k.exit_code, k.signal, k.reason),
            (137, Some(9), ExitReason::OomKilled)
        );
        let s = ExitStatus::new(None, Some(15), 0, t);
        assert_eq!((s.exit_code, s.reason), (143, ExitReason::Error));
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        assert_eq!(ExitStatus::read(&p).unwrap(), None);
        let e = ExitStatus::new(None, Some(9), 2, SystemTime::now());
        e.write(&p).unwrap();
        assert_eq!(ExitStatus::read(&p).unwrap(), Some(e));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"OOMKilled\""), "{text}");
    }
}
