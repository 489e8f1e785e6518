//! The content-addressed store on disk, and what callers read from it.
//!
//! Layout under the root (default `/var/lib/skiff/images`):
//!
//! ```text
//! blobs/sha256/<hex>      manifests, configs and layer blobs, verified before they land here
//! layers/sha256/<diffid>/ unpacked layers (overlayfs lower dirs), shared by every image using them
//! index.json              reference -> manifest, config, layers (replaced atomically)
//! tmp/                    downloads and unpacks in progress; renamed into place when complete
//! gc.lock                 pulls and imports hold it shared, remove and GC exclusively
//! index.lock              held exclusively around each read-modify-write of index.json
//! ```
//!
//! Everything enters through `tmp/` and a rename, so a blob or layer that exists is complete;
//! two pulls of the same layer race harmlessly (the second rename finds the first's result).
//! Removal takes the GC lock exclusively, so it never deletes a blob that a pull in progress
//! has written but not yet recorded in the index.

use oci_spec::image::ImageConfiguration;
use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::digest::{copy_hashed, Digest};
use super::error::{ImageError, IoContext};
use super::index::{sync_dir, ImageRecord, IndexFile};
use super::manifest::MAX_CONFIG_BYTES;
use super::reference;
use super::unpack::{unpack_layer, UnpackOptions};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/skiff/images";

/// An image ready for the runtime: its configuration and its unpacked layers.
#[derive(Clone, Debug)]
pub struct Image {
    /// Normalised reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// Manifest digest (`sha256:...`): what the pod status reports as the image ID.
    pub digest: String,
    /// The image configuration: entrypoint, cmd, env, working dir, user, ports, volumes.
    pub config: ImageConfiguration,
    /// Unpacked layer directories, bottom first (overlayfs wants them reversed in `lowerdir`).
    pub layers: Vec<PathBuf>,
}

/// A line of `list()`: what `skiff image ls` shows.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// Normalised reference.
    pub reference: String,
    /// Manifest digest.
    pub digest: String,
    /// Config digest (Docker's "image ID").
    pub config_digest: String,
    /// Sum of the compressed blob sizes.
    pub size: u64,
    /// Number of layers.
    pub layers: usize,
    /// When it was stored (Unix seconds).
    pub created: u64,
    /// When it was last used (Unix seconds).
    pub last_used: u64,
}

/// What `remove` did.
#[derive(Clone, Debug, Default)]
pub struct RemoveReport {
    /// References taken out of the index.
    pub removed: Vec<String>,
    /// Bytes of blobs and layers deleted because nothing referenced them any more.
    pub freed_bytes: u64,
}

/// What `garbage_collect` did.
#[derive(Clone, Debug, Default)]
pub struct GcReport {
    /// References removed, least recently used first.
    pub removed: Vec<String>,
    /// Disk use of blobs and layers before.
    pub usage_before: u64,
    /// Disk use after.
    pub usage_after: u64,
}

/// The node's image store. Cheap to clone (a path); every operation opens what it needs, so
/// clones can be moved into blocking tasks, and several processes may share one root.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

/// A held `flock`; released on drop.
pub(crate) struct LockGuard {
    _file: File,
}

/// A temp file or directory that is deleted on drop unless it was moved into place.
pub(crate) struct TempPath {
    path: PathBuf,
    armed: bool,
}

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath { path, armed: true }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// It was renamed into place: nothing to delete.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            let _ = match fs::symlink_metadata(&self.path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&self.path),
                Ok(_) => fs::remove_file(&self.path),
                Err(_) => Ok(()),
            };
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers/sha256", "tmp"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        Ok(ImageStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Where an unpacked layer lives, by diff id.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    /// Whether a blob is in the store (and so complete and verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Whether a layer is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// A fresh path under `tmp/`, unique across threads and processes.
    pub(crate) fn temp_path(&self, kind: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.root
            .join("tmp")
            .join(format!("{kind}-{}-{n}-{nanos}", std::process::id()))
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard, ImageError> {
        let path = self.root.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        let r = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        r.ctx(|| format!("locking {}", path.display()))?;
        Ok(LockGuard { _file: file })
    }

    /// Held by pulls and imports for their whole run: blobs they wrote are safe from GC until
    /// the index names them.
    pub(crate) fn lock_shared(&self) -> Result<LockGuard, ImageError> {
        self.lock("gc.lock", false)
    }

    fn lock_exclusive(&self) -> Result<LockGuard, ImageError> {
        self.lock("gc.lock", true)
    }

    /// Stores `bytes` as a blob, checking them against `expected` when given.
    pub(crate) fn write_blob_bytes(
        &self,
        bytes: &[u8],
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if let Some(want) = expected {
            if *want != digest {
                return Err(ImageError::DigestMismatch {
                    what: what.to_string(),
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut tmp = TempPath::new(self.temp_path("blob"));
        let mut f =
            File::create(tmp.path()).ctx(|| format!("creating {}", tmp.path().display()))?;
        io::Write::write_all(&mut f, bytes)
            .and_then(|_| f.sync_all())
            .ctx(|| format!("writing {}", tmp.path().display()))?;
        self.commit_blob(&mut tmp, &digest)?;
        Ok(digest)
    }

    /// Copies the file at `src` into the store while hashing it (or renames it, when it is
    /// already under `tmp/`), checking it against `expected` when given.
    pub(crate) fn ingest_file(
        &self,
        src: &Path,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64), ImageError> {
        let mut input = File::open(src).ctx(|| format!("opening {}", src.display()))?;
        let mut tmp = TempPath::new(self.temp_path("blob"));
        let mut out =
            File::create(tmp.path()).ctx(|| format!("creating {}", tmp.path().display()))?;
        let (digest, len) = copy_hashed(&mut input, &mut out)
            .ctx(|| format!("copying {} into the store", src.display()))?;
        out.sync_all()
            .ctx(|| format!("writing {}", tmp.path().display()))?;
        drop(out);
        if let Some(want) = expected {
            if *want != digest {
                return Err(ImageError::DigestMismatch {
                    what: what.to_string(),
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        self.commit_blob(&mut tmp, &digest)?;
        Ok((digest, len))
    }

    /// Moves a complete, verified temp file into `blobs/`.
    pub(crate) fn commit_blob(
        &self,
        tmp: &mut TempPath,
        digest: &Digest,
    ) -> Result<(), ImageError> {
        let dst = self.blob_path(digest);
        fs::rename(tmp.path(), &dst).ctx(|| format!("moving blob into {}", dst.display()))?;
        tmp.disarm();
        sync_dir(&self.root.join("blobs/sha256"))
    }

    /// Reads a small blob (manifest or config) whole.
    pub(crate) fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, ImageError> {
        read_limited(&self.blob_path(digest), limit)
    }

    /// An image's config blob, checked against its manifest: one diff id per layer.
    pub(crate) fn read_config(
        &self,
        config_digest: &Digest,
        layers: usize,
    ) -> Result<ImageConfiguration, ImageError> {
        let bytes = self.read_blob(config_digest, MAX_CONFIG_BYTES)?;
        let config: ImageConfiguration = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::malformed(format!("image config {config_digest}"), e))?;
        let diff_ids = config.rootfs().diff_ids().len();
        if diff_ids != layers {
            return Err(ImageError::malformed(
                format!("image config {config_digest}"),
                format!("it lists {diff_ids} diff ids for {layers} layers"),
            ));
        }
        Ok(config)
    }

    /// Unpacks the layer blob `blob` into `layers/sha256/<diff_id>` unless it is there already,
    /// checking that the uncompressed content has that diff id. Returns whether it unpacked.
    pub(crate) fn ensure_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        media_type: &str,
    ) -> Result<bool, ImageError> {
        let dst = self.layer_path(diff_id);
        if dst.is_dir() {
            return Ok(false);
        }
        let mut tmp = TempPath::new(self.temp_path("layer"));
        fs::create_dir(tmp.path()).ctx(|| format!("creating {}", tmp.path().display()))?;
        let src = self.blob_path(blob);
        let f = File::open(&src).ctx(|| format!("opening {}", src.display()))?;
        let stats = unpack_layer(
            io::BufReader::new(f),
            tmp.path(),
            Some(media_type),
            &UnpackOptions::default(),
        )
        .map_err(|source| ImageError::Unpack {
            layer: blob.to_string(),
            source,
        })?;
        if stats.diff_id != *diff_id {
            return Err(ImageError::DigestMismatch {
                what: format!("uncompressed layer {blob} (its diff id in the image config)"),
                expected: diff_id.to_string(),
                actual: stats.diff_id.to_string(),
            });
        }
        syncfs(tmp.path())?;
        match fs::rename(tmp.path(), &dst) {
            Ok(()) => {
                tmp.disarm();
                sync_dir(&self.root.join("layers/sha256"))?;
                tracing::debug!(layer = %blob, diff_id = %diff_id, entries = stats.entries, "layer unpacked");
                Ok(true)
            }
            // Another pull unpacked the same layer first; ours is deleted on drop.
            Err(_) if dst.is_dir() => Ok(false),
            Err(e) => Err(ImageError::io(
                format!("moving layer into {}", dst.display()),
                e,
            )),
        }
    }

    /// Adds or replaces an image in the index.
    pub(crate) fn record(&self, rec: ImageRecord) -> Result<(), ImageError> {
        let _l = self.lock("index.lock", true)?;
        let mut index = IndexFile::load(&self.index_path())?;
        index.images.insert(rec.reference.clone(), rec);
        index.save(&self.index_path(), &self.temp_path("index"))
    }

    fn load_index(&self) -> Result<IndexFile, ImageError> {
        IndexFile::load(&self.index_path())
    }

    /// Every image in the store, by reference.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        Ok(self
            .load_index()?
            .images
            .into_values()
            .map(|r| ImageInfo {
                digest: r.manifest_digest,
                config_digest: r.config_digest,
                size: r.size,
                layers: r.layers.len(),
                created: r.created,
                last_used: r.last_used,
                reference: r.reference,
            })
            .collect())
    }

    /// The index keys `reference` names: a normalised reference, or every image with that
    /// manifest digest when given a bare `sha256:...`.
    fn resolve(index: &IndexFile, reference: &str) -> Result<Vec<String>, ImageError> {
        if let Ok(d) = Digest::parse(reference) {
            let d = d.to_string();
            return Ok(index
                .images
                .values()
                .filter(|r| r.manifest_digest == d)
                .map(|r| r.reference.clone())
                .collect());
        }
        let key = reference::parse(reference)?.whole();
        Ok(index
            .images
            .contains_key(&key)
            .then_some(key)
            .into_iter()
            .collect())
    }

    /// The image `reference` names (normalised like a pull; a bare manifest digest works
    /// too), or `None` when it is not in the store.
    pub fn get(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let _span = tracing::debug_span!("image_get", image = reference).entered();
        let index = self.load_index()?;
        let Some(key) = Self::resolve(&index, reference)?.into_iter().next() else {
            return Ok(None);
        };
        match index.images.get(&key) {
            Some(rec) => self.image_from_record(rec).map(Some),
            None => Ok(None),
        }
    }

    /// Builds the runtime's view of a record: parses the config, checks the layers exist.
    pub(crate) fn image_from_record(&self, rec: &ImageRecord) -> Result<Image, ImageError> {
        let config_digest = Digest::parse(&rec.config_digest)?;
        let bytes = self.read_blob(&config_digest, MAX_CONFIG_BYTES)?;
        let config: ImageConfiguration = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::malformed(format!("image config {config_digest}"), e))?;
        let mut layers = Vec::with_capacity(rec.layers.len());
        for l in &rec.layers {
            let path = self.layer_path(&Digest::parse(&l.diff_id)?);
            if !path.is_dir() {
                return Err(ImageError::malformed(
                    format!("image {}", rec.reference),
                    format!(
                        "unpacked layer {} is missing from the store; pull the image again",
                        path.display()
                    ),
                ));
            }
            layers.push(path);
        }
        Ok(Image {
            reference: rec.reference.clone(),
            digest: rec.manifest_digest.clone(),
            config,
            layers,
        })
    }

    /// Records that a container is starting from `reference`, so GC removes it last.
    pub fn mark_used(&self, reference: &str) -> Result<(), ImageError> {
        let _l = self.lock("index.lock", true)?;
        let mut index = self.load_index()?;
        let keys = Self::resolve(&index, reference)?;
        if keys.is_empty() {
            return Err(ImageError::NotPresent(reference.to_string()));
        }
        let now = now_secs();
        for k in keys {
            if let Some(r) = index.images.get_mut(&k) {
                r.last_used = now;
            }
        }
        index.save(&self.index_path(), &self.temp_path("index"))
    }

    /// Removes `reference` from the index and deletes the blobs and layers no other image
    /// uses. A bare manifest digest removes every reference to that image.
    pub fn remove(&self, reference: &str) -> Result<RemoveReport, ImageError> {
        let _span = tracing::info_span!("image_remove", image = reference).entered();
        let _gc = self.lock_exclusive()?;
        let removed = {
            let _l = self.lock("index.lock", true)?;
            let mut index = self.load_index()?;
            let keys = Self::resolve(&index, reference)?;
            if keys.is_empty() {
                return Err(ImageError::NotPresent(reference.to_string()));
            }
            for k in &keys {
                index.images.remove(k);
            }
            index.save(&self.index_path(), &self.temp_path("index"))?;
            keys
        };
        let freed_bytes = self.sweep()?;
        tracing::debug!(?removed, freed_bytes, "images removed");
        Ok(RemoveReport {
            removed,
            freed_bytes,
        })
    }

    /// Removes images not in `keep` (references, normalised like a pull, or manifest
    /// digests), least recently used first, until blobs and layers use at most
    /// `threshold_bytes` of disk or nothing removable is left.
    pub fn garbage_collect(
        &self,
        threshold_bytes: u64,
        keep: &HashSet<String>,
    ) -> Result<GcReport, ImageError> {
        let _span = tracing::info_span!("image_gc", threshold_bytes).entered();
        let _gc = self.lock_exclusive()?;
        let usage_before = self.disk_usage()?;
        let mut report = GcReport {
            removed: Vec::new(),
            usage_before,
            usage_after: usage_before,
        };
        if usage_before <= threshold_bytes {
            return Ok(report);
        }
        let keep: HashSet<String> = keep
            .iter()
            .map(|k| {
                reference::parse(k)
                    .map(|r| r.whole())
                    .unwrap_or_else(|_| k.clone())
            })
            .collect();
        let mut candidates: Vec<(u64, String)> = self
            .load_index()?
            .images
            .values()
            .filter(|r| !keep.contains(&r.reference) && !keep.contains(&r.manifest_digest))
            .map(|r| (r.last_used, r.reference.clone()))
            .collect();
        candidates.sort();
        let mut usage = usage_before;
        for (_, reference) in candidates {
            if usage <= threshold_bytes {
                break;
            }
            let _span = tracing::info_span!("image_remove", image = %reference).entered();
            {
                let _l = self.lock("index.lock", true)?;
                let mut index = self.load_index()?;
                if index.images.remove(&reference).is_none() {
                    continue;
                }
                index.save(&self.index_path(), &self.temp_path("index"))?;
            }
            self.sweep()?;
            usage = self.disk_usage()?;
            report.removed.push(reference);
        }
        report.usage_after = usage;
        tracing::info!(removed = ?report.removed, usage_before, usage_after = usage, threshold_bytes, "image garbage collection");
        Ok(report)
    }

    /// Deletes blobs and layers the index does not reference, and leftovers in `tmp/`.
    /// Caller holds the GC lock exclusively. Returns the bytes freed.
    fn sweep(&self) -> Result<u64, ImageError> {
        let index = self.load_index()?;
        let blobs = index.referenced_blobs();
        let layers = index.referenced_layers();
        let mut freed = 0;
        let mut seen = HashSet::new();
        for (dir, keep) in [("blobs/sha256", &blobs), ("layers/sha256", &layers)] {
            let dir = self.root.join(dir);
            for entry in fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))? {
                let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&format!("sha256:{name}")) {
                    continue;
                }
                let path = entry.path();
                freed += du(&path, &mut seen)?;
                if path.is_dir() {
                    // Out of sight first, so a half-deleted layer never looks complete.
                    let doomed = self.temp_path("doomed");
                    fs::rename(&path, &doomed).ctx(|| format!("moving {}", path.display()))?;
                    fs::remove_dir_all(&doomed).ctx(|| format!("deleting {}", doomed.display()))?;
                } else {
                    fs::remove_file(&path).ctx(|| format!("deleting {}", path.display()))?;
                }
            }
        }
        // Nothing else runs while the GC lock is held exclusively: tmp/ holds only leftovers
        // of crashed pulls.
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).ctx(|| format!("reading {}", tmp.display()))? {
            let path = entry.ctx(|| format!("reading {}", tmp.display()))?.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
        Ok(freed)
    }

    /// Bytes of disk the blobs and unpacked layers use (allocated blocks; hard links once).
    pub fn disk_usage(&self) -> Result<u64, ImageError> {
        let mut seen = HashSet::new();
        let mut total = 0;
        for dir in ["blobs/sha256", "layers/sha256"] {
            total += du(&self.root.join(dir), &mut seen)?;
        }
        Ok(total)
    }
}

/// Disk use of `path` and everything under it, counting each inode once.
fn du(path: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64, ImageError> {
    let mut total = 0;
    let mut queue = VecDeque::from([path.to_path_buf()]);
    while let Some(p) = queue.pop_front() {
        let m = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ImageError::io(format!("inspecting {}", p.display()), e)),
        };
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in fs::read_dir(&p).ctx(|| format!("reading {}", p.display()))? {
                queue.push_back(e.ctx(|| format!("reading {}", p.display()))?.path());
            }
        }
    }
    Ok(total)
}

/// Flushes the file system holding `path` (one call for a whole unpacked layer, instead of an
/// fsync per file).
fn syncfs(path: &Path) -> Result<(), ImageError> {
    let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: the fd is valid for the lifetime of `f`.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(ImageError::io(
            format!("syncing {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A small file read whole; larger than `limit` is an error, not an allocation.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .ctx(|| format!("reading {}", path.display()))?;
    if buf.len() as u64 > limit {
        return Err(ImageError::TooLarge {
            what: path.display().to_string(),
            limit,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an OCI layout directory with one image per (name, payload size): each has a
    /// single uncompressed layer holding one file of that size.
    fn layout(dir: &Path, images: &[(&str, usize)]) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| -> (String, usize) {
            let d = Digest::of(bytes);
            fs::write(blobs.join(d.hex()), bytes).unwrap();
            (d.to_string(), bytes.len())
        };
        let mut entries = Vec::new();
        for (name, size) in images {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_path(format!("data-{name}")).unwrap();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append(&h, &vec![b'x'; *size][..]).unwrap();
            let tar = b.into_inner().unwrap();
            let (layer, layer_size) = put(&tar);
            let config = format!(
                r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer}"]}}}}"#
            );
            let (config, config_size) = put(config.as_bytes());
            let manifest = format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_size}}}]}}"#
            );
            let (manifest, manifest_size) = put(manifest.as_bytes());
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest}","size":{manifest_size},"annotations":{{"org.opencontainers.image.ref.name":"skiff.test/{name}:v1"}}}}"#
            ));
        }
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        fs::write(
            dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                entries.join(",")
            ),
        )
        .unwrap();
    }

    fn set_last_used(store: &ImageStore, reference: &str, t: u64) {
        let mut index = store.load_index().unwrap();
        index.images.get_mut(reference).unwrap().last_used = t;
        index
            .save(&store.index_path(), &store.temp_path("index"))
            .unwrap();
    }

    #[test]
    fn gc_removes_least_recently_used_until_under_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layout");
        layout(
            &src,
            &[
                ("a", 300_000),
                ("b", 300_000),
                ("c", 300_000),
                ("d", 300_000),
            ],
        );
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        let imported = store.import(&src).unwrap();
        assert_eq!(imported.len(), 4);
        let refs: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| format!("skiff.test/{n}:v1"))
            .collect();
        for (i, r) in refs.iter().enumerate() {
            set_last_used(&store, r, 1000 + i as u64);
        }
        // a is the oldest but kept; b and c are the next oldest.
        store.mark_used(&refs[3]).unwrap();
        let usage = store.disk_usage().unwrap();
        assert!(
            usage > 4 * 2 * 300_000,
            "blob + unpacked copy per image: {usage}"
        );
        let keep: HashSet<String> = [refs[0].clone()].into();
        let report = store
            .garbage_collect(usage - 2 * 600_000 + 1, &keep)
            .unwrap();
        assert_eq!(report.removed, vec![refs[1].clone(), refs[2].clone()]);
        assert!(report.usage_after < report.usage_before);
        let left: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|i| i.reference)
            .collect();
        assert_eq!(left, vec![refs[0].clone(), refs[3].clone()]);
        assert!(store.get(&refs[1]).unwrap().is_none());
        let a = store.get("skiff.test/a:v1").unwrap().unwrap();
        assert_eq!(a.layers.len(), 1);
        assert!(a.layers[0].join("data-a").is_file());
        // Under the threshold already: nothing happens.
        let report = store.garbage_collect(u64::MAX, &HashSet::new()).unwrap();
        assert!(report.removed.is_empty());
        // Nothing kept and a zero threshold: everything goes, blobs and layers too.
        store.garbage_collect(0, &HashSet::new()).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            store.disk_usage().unwrap(),
            fs::metadata(store.root().join("blobs/sha256"))
                .unwrap()
                .blocks()
                * 512
                + fs::metadata(store.root().join("layers/sha256"))
                    .unwrap()
                    .blocks()
                    * 512
        );
    }

    #[test]
    fn get_accepts_references_and_manifest_digests() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layout");
        layout(&src, &[("x", 10)]);
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        let img = store.import(&src).unwrap().remove(0);
        assert_eq!(img.reference, "skiff.test/x:v1");
        assert_eq!(img.config.rootfs().diff_ids().len(), 1);
        let by_digest = store.get(&img.digest).unwrap().unwrap();
        assert_eq!(by_digest.reference, img.reference);
        assert!(store.get("skiff.test/y:v1").unwrap().is_none());
        assert!(matches!(
            store.get("Not/Valid"),
            Err(ImageError::InvalidReference { .. })
        ));
        assert!(matches!(
            store.remove("skiff.test/y:v1"),
            Err(ImageError::NotPresent(_))
        ));
    }

    #[test]
    fn a_corrupt_blob_in_a_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("layout");
        layout(&src, &[("x", 10)]);
        // Flip the layer's content but keep its name (digest).
        for e in fs::read_dir(src.join("blobs/sha256")).unwrap() {
            let p = e.unwrap().path();
            let mut bytes = fs::read(&p).unwrap();
            if bytes.len() > 1000 {
                bytes[600] ^= 1;
                fs::write(&p, bytes).unwrap();
            }
        }
        let store = ImageStore::open(dir.path().join("store")).unwrap();
        let err = store.import(&src).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(store.list().unwrap().is_empty());
    }
}
