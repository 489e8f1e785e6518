//! Background removal of deleted containers' writable layers. Removing directories can cost
//! milliseconds each on disk filesystems (ext4 with `discard` frees and trims every directory
//! block synchronously), so delete renames the container's upper/work directory into the trash
//! (one cheap rename on the same filesystem) and a worker thread removes it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// At most this many removals wait in the queue; beyond it, removal happens inline.
const QUEUE: usize = 256;

/// The trash directory and its worker.
#[derive(Debug)]
pub struct Trash {
    dir: PathBuf,
    tx: Option<SyncSender<PathBuf>>,
    worker: Option<JoinHandle<()>>,
    seq: AtomicU64,
}

impl Trash {
    /// Creates the directory, starts the worker and queues whatever an earlier run left there.
    pub fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = sync_channel::<PathBuf>(QUEUE);
        let worker = std::thread::Builder::new()
            .name("skiff-trash".into())
            .spawn(move || {
                for path in rx {
                    if let Err(e) = remove_tree(&path) {
                        tracing::warn!(?path, "removing deleted container files: {e}");
                    }
                }
            })?;
        let trash = Trash {
            dir: dir.to_path_buf(),
            tx: Some(tx),
            worker: Some(worker),
            seq: AtomicU64::new(0),
        };
        for entry in std::fs::read_dir(dir)?.flatten() {
            trash.enqueue(entry.path());
        }
        Ok(trash)
    }

    /// Moves `path` into the trash for background removal; a missing path is fine. Falls back
    /// to removing it inline when it cannot be renamed (another filesystem) or the queue is full.
    pub fn discard(&self, path: &Path) -> io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let target = self.dir.join(format!("{name}.{}.{n}", std::process::id()));
        match std::fs::rename(path, &target) {
            Ok(()) => {
                self.enqueue(target);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(_) => remove_tree(path),
        }
    }

    fn enqueue(&self, path: PathBuf) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(path) {
            Ok(()) => {}
            Err(TrySendError::Full(p)) | Err(TrySendError::Disconnected(p)) => {
                if let Err(e) = remove_tree(&p) {
                    tracing::warn!(path = ?p, "removing deleted container files: {e}");
                }
            }
        }
    }

    /// True when nothing is left to remove.
    pub fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    }
}

impl Drop for Trash {
    /// Finishes the queued removals.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discards_in_the_background_and_picks_up_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let trash_dir = dir.path().join("trash");
        std::fs::create_dir_all(trash_dir.join("left-over/x")).unwrap();
        let victim = dir.path().join("containers/c1");
        std::fs::create_dir_all(victim.join("upper/a/b")).unwrap();
        std::fs::write(victim.join("upper/a/b/f"), "x").unwrap();
        {
            let trash = Trash::new(&trash_dir).unwrap();
            trash.discard(&victim).unwrap();
            assert!(!victim.exists());
            trash.discard(&dir.path().join("missing")).unwrap();
        } // drop waits for the worker
        assert_eq!(std::fs::read_dir(&trash_dir).unwrap().count(), 0);
    }
}
